"""The boot image on a disk: four files in the EFI System Partition, found by the firmware.

    /EFI/imacpro/vmlinuz        the kernel (a bzImage)
    /EFI/imacpro/initrd.img     the initramfs (may be empty)
    /EFI/imacpro/cmdline.txt    the kernel command line, UTF-8, one line (a final newline, LF or
                                CRLF, is not part of it, so the file can be edited by hand)
    /EFI/imacpro/boot.manifest  optional: the signed manifest, TOML as
                                imacpro.t2.signing.Manifest.save writes it

`/EFI/<vendor>/` is where UEFI 2.10 §13.3.1.3 puts a vendor's files on the ESP. The ESP is the
first partition of type EFI System (GPT). Names are matched case-insensitively, as FAT does.

`find_boot_image` reads only the GPT, the FAT's boot sector and the sectors of the chains it
follows. Anything missing or damaged is a BootImageError (a DiskError, so a UserError) with a
one-line message naming the disk and what is wrong; the T2 then judges what was found.

`replace_files` writes new boot files into an ESP that has other files too (the installed
Debian mounts it at /boot/efi): mtools changes a copy of the partition, and the sectors that
changed are written back.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import tomllib
from pathlib import Path
from typing import NamedTuple

from imacpro.disk import DiskError, gpt
from imacpro.disk.block import (SECTOR_SIZE, BlockDevice, ByteView, RawDiskImage,
                                WritableBlockDevice)
from imacpro.disk.fat import Fat32
from imacpro.errors import UserError
from imacpro.disk.tools import run
from imacpro.t2.signing import Manifest

DIRECTORY = "/EFI/imacpro"
KERNEL = f"{DIRECTORY}/vmlinuz"
INITRD = f"{DIRECTORY}/initrd.img"
CMDLINE = f"{DIRECTORY}/cmdline.txt"
MANIFEST = f"{DIRECTORY}/boot.manifest"
INTERNAL_SSD = "the internal SSD"
# Larger files are damage, not boot images: a kernel and an initramfs must fit in guest RAM
# beside everything else; x86 Linux takes a command line of at most 2048 bytes; a manifest
# is a few hundred bytes of TOML.
MAX_SIZE = {KERNEL: 1 << 30, INITRD: 1 << 30, CMDLINE: 4096, MANIFEST: 64 << 10}


class BootImageError(DiskError):
    """No usable boot image on the disk: no ESP, or a file missing or unreadable."""


class DiskBootImage(NamedTuple):
    kernel: bytes
    initrd: bytes
    cmdline: str
    manifest: Manifest | None


def find_boot_image(device: BlockDevice, name: str | None = None) -> DiskBootImage:
    """The boot image on `device`; `name` defaults to the device's `name` attribute (a
    RawDiskImage has one) or "the internal SSD"."""
    name = name or getattr(device, "name", INTERNAL_SSD)
    table = gpt.read(device, name)
    esp = table.find(gpt.EFI_SYSTEM)
    if esp is None:
        raise BootImageError(f"no EFI System Partition on {name}")
    where = f"the EFI System Partition on {name}"
    fs = Fat32(ByteView(device, esp.first_lba, esp.sectors, where))

    def read(path: str, required: bool = True) -> bytes | None:
        entry = fs.lookup(path)
        if entry is None or entry.is_directory:
            if not required:
                return None
            raise BootImageError(f"{where} has no {path}")
        if entry.size > MAX_SIZE[path]:
            raise BootImageError(f"{where}: {path} is {entry.size} bytes, more than a boot "
                                 f"image's {MAX_SIZE[path]}")
        return fs.read(entry, path)

    kernel, initrd = read(KERNEL), read(INITRD)
    try:
        cmdline = read(CMDLINE).decode()
    except UnicodeDecodeError:
        raise BootImageError(f"{where}: {CMDLINE} is not UTF-8 text") from None
    cmdline = cmdline.removesuffix("\n").removesuffix("\r")
    raw_manifest = read(MANIFEST, required=False)
    manifest = None
    if raw_manifest is not None:
        try:
            manifest = Manifest.from_fields(tomllib.loads(raw_manifest.decode()),
                                            f"{where}: {MANIFEST}")
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise BootImageError(f"{where}: {MANIFEST} is not a manifest ({exc})") from None
        except UserError as exc:
            raise BootImageError(str(exc)) from None
    return DiskBootImage(kernel, initrd, cmdline, manifest)


REWRITE_CHUNK = 64            # sectors compared and written back as one piece (256 KiB)


def replace_files(device: WritableBlockDevice, part: gpt.Partition, files: dict[str, bytes],
                  workdir: Path | None = None) -> int:
    """Write `files` (ESP path → contents) into the FAT file system of partition `part`,
    keeping every other file on it; returns the bytes written to the device.

    The partition is copied into a sparse temporary image (holes where it reads as zeros),
    mcopy replaces the files there, and the pieces that changed go back in ascending order,
    then a flush. An interruption part-way can leave the boot files' chains pointing at
    clusters not yet written: the T2 then finds digests that do not match and refuses the
    image; it never boots something else. Running the same update again repairs it."""
    where = f"the EFI System Partition on {getattr(device, 'name', INTERNAL_SSD)}"
    chunk_bytes = REWRITE_CHUNK * SECTOR_SIZE
    zeros = bytes(chunk_bytes)
    digests = {}
    with tempfile.TemporaryDirectory(prefix=".imacpro-esp-", dir=workdir) as tmp:
        image = Path(tmp) / "esp.img"
        with open(image, "wb") as f:
            f.truncate(part.sectors * SECTOR_SIZE)
            for first in range(0, part.sectors, REWRITE_CHUNK):
                count = min(REWRITE_CHUNK, part.sectors - first)
                data = device.read(part.first_lba + first, count)
                if data != zeros[:len(data)]:
                    os.pwrite(f.fileno(), data, first * SECTOR_SIZE)
                    digests[first] = hashlib.sha256(data).digest()
        _make_directories(image, part.sectors, files, where)
        for path, contents in files.items():
            source = Path(tmp) / "file"
            source.write_bytes(contents)
            run("mcopy", "-o", "-i", str(image), str(source), f"::{path}")
        written = 0
        with open(image, "rb") as f:
            for first in range(0, part.sectors, REWRITE_CHUNK):
                count = min(REWRITE_CHUNK, part.sectors - first)
                data = os.pread(f.fileno(), count * SECTOR_SIZE, first * SECTOR_SIZE)
                old = digests.get(first)
                if old is None and data == zeros[:len(data)]:
                    continue
                if old != hashlib.sha256(data).digest():
                    device.write(part.first_lba + first, data)
                    written += len(data)
    device.flush()
    return written


def _make_directories(image: Path, sectors: int, files: dict[str, bytes], where: str) -> None:
    """mmd the directories `files` need that the FAT image lacks (mmd fails on one that
    exists, so each is looked up first)."""
    for directory in sorted({os.path.dirname(path.rstrip("/")) for path in files}):
        parts = directory.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            path = "/" + "/".join(parts[:depth])
            with RawDiskImage(image) as copy:
                entry = Fat32(ByteView(copy, 0, sectors, where)).lookup(path)
            if entry is None:
                run("mmd", "-i", str(image), f"::{path}")
            elif not entry.is_directory:
                raise DiskError(f"{where}: {path} is a file, not a directory")
