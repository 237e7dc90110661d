"""Files of the guest's root file system (ext4), read on the host without mounting it.

    volume = open_root(device, partition)        # the Linux root partition of the SSD
    data, path = read_file(volume, "/vmlinuz")   # symlinks followed; the final path

`imacpro bless` reads the kernel and initrd an installed Debian made for itself this way
(disk/bless.py). The reading is done by the `ext4` library (read-only, fuzzed by its
authors): its stream is the partition through the T2's decryption (block.ByteView), so only
the blocks of the files read are decrypted.

The file system is the guest's to write, so everything here is hostile input: symlinks are
followed at most MAX_LINKS times and resolved by this module (a link is text the guest
chose), sizes are checked before anything is read, and anything the library cannot make
sense of is a DiskError naming the partition, never an exception from inside it.
"""

from __future__ import annotations

import io
import posixpath

import ext4

from imacpro.disk import DiskError, gpt
from imacpro.disk.block import BlockDevice, ByteView

MAX_LINKS = 8           # symlinks followed for one path (Linux's limit is 40; Debian's are 1)
READ_BUFFER = 1 << 16


class RootFsError(DiskError):
    """A file that cannot be read from the root file system: missing, too large, damaged."""


class _PartitionStream(io.RawIOBase):
    """A ByteView as the seekable binary stream the ext4 library reads."""

    def __init__(self, view: ByteView):
        self.view, self.position = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.view.size}
        self.position = max(0, base[whence] + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        length = max(0, min(len(buffer), self.view.size - self.position))
        buffer[:length] = self.view.read(self.position, length)
        self.position += length
        return length


class RootVolume:
    """An ext4 file system on one partition, opened read-only."""

    def __init__(self, volume, where: str):
        self._volume, self.where = volume, where

    def read_file(self, path: str, max_size: int) -> tuple[bytes, str]:
        """The contents of regular file `path` (absolute; symlinks followed) and the path it
        resolved to. RootFsError if it is missing, not a file, or larger than `max_size`."""
        resolved = self.resolve(path)
        inode = self._inode(resolved)
        if not isinstance(inode, ext4.File):
            raise RootFsError(f"{self.where}: {resolved} is not a regular file")
        size = inode.i_size
        if size > max_size:
            raise RootFsError(f"{self.where}: {resolved} is {size} bytes, more than the "
                              f"{max_size} it may be")
        data = self._guarded(lambda: inode.open().read(size + 1), resolved)
        if len(data) != size:
            raise RootFsError(f"{self.where}: {resolved}: read {len(data)} bytes of its "
                              f"{size} (damaged file system)")
        return bytes(data), resolved

    def resolve(self, path: str) -> str:
        """`path` with every symlink on the way replaced by its target, one component at a
        time as the kernel does (a link's target is text the guest chose)."""
        remaining = [part for part in path.split("/") if part not in ("", ".")]
        current, hops = "/", 0
        while remaining:
            name = remaining.pop(0)
            if name == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, name)
            inode = self._inode(candidate)
            if not isinstance(inode, ext4.SymbolicLink):
                current = candidate
                continue
            hops += 1
            if hops > MAX_LINKS:
                raise RootFsError(f"{self.where}: {path}: more than {MAX_LINKS} symbolic links")
            target = self._guarded(inode.readlink, candidate)
            target = target.decode("utf-8", "replace") if isinstance(target, bytes) \
                else str(target)
            if target.startswith("/"):
                current = "/"
            remaining[:0] = [part for part in target.split("/") if part not in ("", ".")]
        return current

    def exists(self, path: str) -> bool:
        try:
            self._inode(self.resolve(path))
            return True
        except RootFsError:
            return False

    def _inode(self, path: str):
        # `path` has no symlink before its last component (resolve makes it so).
        try:
            return self._volume.inode_at(path)
        except FileNotFoundError:
            raise RootFsError(f"{self.where} has no {path}") from None
        except DiskError:
            raise
        except Exception as exc:       # the library's view of a damaged file system
            raise RootFsError(f"{self.where}: cannot read {path}: {_describe(exc)}") from None

    def _guarded(self, read, path: str):
        try:
            return read()
        except DiskError:
            raise
        except Exception as exc:
            raise RootFsError(f"{self.where}: cannot read {path}: {_describe(exc)}") from None


def open_root(device: BlockDevice, partition: gpt.Partition, where: str) -> RootVolume:
    """The ext4 file system on `partition` of `device`; RootFsError if it is not one."""
    view = ByteView(device, partition.first_lba, partition.sectors, where)
    stream = io.BufferedReader(_PartitionStream(view), READ_BUFFER)
    try:
        return RootVolume(ext4.Volume(stream, offset=0), where)
    except DiskError:
        raise
    except Exception as exc:
        raise RootFsError(f"{where} does not hold an ext4 file system: {_describe(exc)}") \
            from None


def _describe(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
