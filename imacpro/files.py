"""Files that must never be half-written: atomic replacement, TOML reading with clear errors;
and the pread/pwrite loops and owned descriptors of the disk images (raw disks, USB drives,
the SSD's store)."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import tomllib
from pathlib import Path

import tomli_w

from imacpro.errors import UserError


def atomic_write(path: Path, content: bytes) -> None:
    """Replace `path` with `content` so that a crash leaves the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_toml(path: Path, content: dict) -> None:
    atomic_write(path, tomli_w.dumps(content).encode())


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"damaged machine bundle: {path} is missing") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"damaged machine bundle: cannot read {path}: {exc}") from None


def pread_full(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset` (pread may return less); zeros past the file's end (a file
    that shrank while open)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            return data + bytes(size - len(data))
        data += more
    return data


def pwrite_all(fd: int, data, offset: int, name: str = "") -> None:
    """All of `data` at `offset` (pwrite may write less); a write that makes no progress
    is ENOSPC."""
    with memoryview(data) as source, source.cast("B") as view:
        done = 0
        while done < view.nbytes:
            written = os.pwrite(fd, view[done:], offset + done)
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name or None)
            done += written


class OwnedFd:
    """A file descriptor `_fd` (-1: none) an object owns: closed once by `close()`, or when
    the object is collected."""

    _fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            self.close()
