"""A writer for the "newc" cpio format, the format of Linux's initramfs.

Each entry is a 110-byte ASCII header, the path name (NUL-terminated), padding to a multiple of
4 bytes, the data, and padding to a multiple of 4 again; the archive ends with the entry named
"TRAILER!!!". The header is "070701" followed by 13 fields of 8 hexadecimal digits:

    ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check

(Documentation/driver-api/early-userspace/buffer-format.rst in the kernel, and cpio(5).)
A symlink's data is its target, without a NUL. Names are relative ("bin/busybox"): that is how
the kernel's unpacker and GNU cpio expect them. Parent directories are added before the entries
that need them (the kernel does not create missing parents). Every entry belongs to root, and
all timestamps are `mtime` (0 by default), so the same content gives the same bytes.
"""

from __future__ import annotations

import stat

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    def __init__(self, mtime: int = 0):
        self.mtime = mtime
        self._parts: list[bytes] = []
        self._names: set[str] = set()
        self._ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1,
               rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.strip("/")
        if not name or name in self._names or ".." in name.split("/"):
            raise ValueError(f"bad or duplicate cpio entry name {name!r}")
        if "/" in name:
            self._ensure_directory(name.rsplit("/", 1)[0])
        self._names.add(name)
        self._ino += 1
        self._parts.append(_header(self._ino, mode, len(data), nlink, self.mtime, rdev, name))
        self._parts.append(data + _pad(len(data)))

    def _ensure_directory(self, name: str) -> None:
        if name not in self._names:
            self.directory(name)

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        """The archive: the entries, then the trailer."""
        trailer = _header(0, 0, 0, 1, 0, (0, 0), TRAILER)
        return b"".join(self._parts) + trailer


def _header(ino: int, mode: int, size: int, nlink: int, mtime: int, rdev: tuple[int, int],
            name: str) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = MAGIC + b"".join(b"%08X" % f for f in fields)
    assert len(header) == HEADER_SIZE
    return header + encoded + _pad(HEADER_SIZE + len(encoded))
