"""Install a boot image onto a disk: the GPT, a FAT32 ESP holding it, an ext4 root partition.

    install(store, kernel, initrd, cmdline, manifest_path, progress)

The layout (imacpro/disk/__init__.py draws it): the ESP at 1 MiB, 300 MiB; the Linux root
partition from there to the last whole MiB before the backup GPT. Sizes and why:
- 1 MiB alignment, as every partitioning tool since 2010 uses: a multiple of any erase block.
- 300 MiB ESP, as Apple's 4K-native Macs have (diskutil shows 314.6 MB; 512-byte-sector Macs
  have 209.7 MB). FAT32 needs at least 65525 clusters (fatgen103 §3.5); with 4096-byte
  sectors and clusters that is 256 MiB before the FATs, so the usual 200 MiB cannot be FAT32.
- Root: the rest. ext4 as Debian makes it, with a 64 MiB journal (so a machine killed while
  the guest writes comes back with a consistent file system after the journal's replay),
  4 KiB blocks, one inode per 4 MiB (`-i 4194304`): a 4 TB partition gets a million inodes.
  Inode tables and journal are zeroed here (`lazy_itable_init=0`: the guest's kernel then has
  no background initialisation to do) and zeros never reach the disk, so its metadata
  (bitmaps, superblocks, group descriptors: ~64 MiB a TB) is all that is written. It is
  empty, labelled "imacpro-root": the default guest runs from its initramfs and mounts no root
  disk, and copying its tree there as a non-root user would give every file the user's owner
  and lose the device nodes (mke2fs -d copies owners as it finds them).

How: each file system is made by Debian's tools (mkfs.fat, mmd, mcopy, mke2fs; tools.py) in a
sparse temporary image beside the disk's own files, then copied onto the disk with
block.copy_sparse (data extents only, zeros skipped). The disk is trimmed first (the old GPT and
everything else read as zeros: nothing stale shows through the skipped zeros), and the GPT is
written last, so a crash part-way leaves a disk with no partition table rather than one
pointing at half-made file systems.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from imacpro.disk import DiskError, esp, gpt
from imacpro.disk.block import SECTOR_SIZE, WritableBlockDevice, copy_sparse
from imacpro.disk.tools import run

MiB = 1 << 20
ALIGNMENT = 1 * MiB // SECTOR_SIZE          # sectors
ESP_SECTORS = 300 * MiB // SECTOR_SIZE
MIN_ROOT_SECTORS = 64 * MiB // SECTOR_SIZE  # below this a root file system is of no use
ESP_NAME, ROOT_NAME = "EFI System Partition", "Linux root"
ESP_LABEL = "EFI"                           # the volume label Apple's ESPs have
ROOT_LABEL = "imacpro-root"
BYTES_PER_INODE = 4 * MiB
ROOT_BLOCK = 4096
JOURNAL_MIB = 64

Progress = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


def layout(sectors: int) -> list[gpt.Partition]:
    """The ESP and the root partition for a disk of `sectors` (new random GUIDs)."""
    first_usable, last_usable = gpt.usable_sectors(sectors)
    esp_first = -(-first_usable // ALIGNMENT) * ALIGNMENT
    root_first = esp_first + ESP_SECTORS
    root_end = (last_usable + 1) // ALIGNMENT * ALIGNMENT      # exclusive
    if root_end - root_first < MIN_ROOT_SECTORS:
        need = (root_first + MIN_ROOT_SECTORS + ALIGNMENT) * SECTOR_SIZE
        raise DiskError(f"the disk is too small to install onto: {sectors * SECTOR_SIZE} "
                        f"bytes, at least {need} are needed")
    return [gpt.Partition(gpt.EFI_SYSTEM, uuid.uuid4(), esp_first, root_first - 1, ESP_NAME),
            gpt.Partition(gpt.LINUX_ROOT_X86_64, uuid.uuid4(), root_first, root_end - 1,
                          ROOT_NAME)]


RootMaker = Callable[[Path, gpt.Partition], None]


def install(store: WritableBlockDevice, kernel: bytes, initrd: bytes, cmdline: str,
            manifest_path: Path | None, progress: Progress = _quiet,
            workdir: Path | None = None, root: RootMaker | None = None,
            esp_volume_id: int | None = None) -> gpt.PartitionTable:
    """Replace everything on `store` with the layout above holding this boot image; flushed
    when it returns. Temporary images go in `workdir` (default: the directory holding the
    store's files, else the system's temporary directory). `root(image, partition)` makes
    the root partition's image instead of the empty file system (an installed system,
    imacpro/guest/debian.py). `esp_volume_id`: the FAT volume ID (32 bits) the ESP gets, for a
    system that mounts it by that UUID (random if None)."""
    if store.SECTOR_SIZE != SECTOR_SIZE:
        raise DiskError(f"cannot install onto a disk of {store.SECTOR_SIZE}-byte sectors")
    esp_part, root_part = layout(store.sectors)
    manifest = Path(manifest_path).read_bytes() if manifest_path is not None else None
    workdir = workdir or getattr(store, "directory", None)
    with tempfile.TemporaryDirectory(prefix=".imacpro-install-", dir=workdir) as tmp:
        tmp = Path(tmp)
        progress(f"erasing the disk ({store.sectors * SECTOR_SIZE / 1e9:.1f} GB)")
        store.trim(0, store.sectors)

        progress(f"EFI System Partition: FAT32, {esp_part.sectors * SECTOR_SIZE // MiB} MiB")
        files = {esp.KERNEL: kernel, esp.INITRD: initrd,
                 esp.CMDLINE: cmdline.encode() + b"\n"}
        if manifest is not None:
            files[esp.MANIFEST] = manifest
        image = tmp / "esp.img"
        make_esp(image, esp_part, files, tmp, esp_volume_id)
        copy_sparse(image, store, esp_part.first_lba, esp_part.sectors)
        image.unlink()

        size_gb = root_part.sectors * SECTOR_SIZE / 1e9
        progress(f"Linux root partition: ext4, {size_gb:.1f} GB")
        image = tmp / "root.img"
        (root or make_root)(image, root_part)
        copy_sparse(image, store, root_part.first_lba, root_part.sectors)
        image.unlink()

        progress("partition table (GPT)")
        table = gpt.write(store, [esp_part, root_part])
        store.flush()
    return table


def make_esp(image: Path, part: gpt.Partition, files: dict[str, bytes], tmp: Path,
             volume_id: int | None = None) -> None:
    """A FAT32 image of the partition's size holding `files` (ESP path → contents)."""
    with open(image, "wb") as f:
        f.truncate(part.sectors * SECTOR_SIZE)
    # -S 4096 -s 1: 4 KiB logical sectors and clusters; -h: the sectors before the partition
    # (BPB_HiddSec, in logical sectors); --mbr=n: no fake MBR inside the partition.
    volume = ["-i", f"{volume_id:08X}"] if volume_id is not None else []
    run("mkfs.fat", "-F", "32", "-S", str(SECTOR_SIZE), "-s", "1", "-n", ESP_LABEL,
        "-h", str(part.first_lba), "--mbr=n", *volume, str(image))
    directories = set()
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        directories.update("/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    for directory in sorted(directories):        # parents sort before their children
        run("mmd", "-i", str(image), f"::{directory}")
    for path, contents in files.items():
        source = tmp / os.path.basename(path)
        source.write_bytes(contents)
        run("mcopy", "-i", str(image), str(source), f"::{path}")
        source.unlink()


def make_root(image: Path, part: gpt.Partition) -> None:
    """An empty ext4 image of the partition's size, labelled ROOT_LABEL, owned by root."""
    with open(image, "wb") as f:
        f.truncate(part.sectors * SECTOR_SIZE)
    run("mke2fs", *mke2fs_args(), str(image))


def mke2fs_args(fs_uuid: str | None = None, installed: bool = False) -> list[str]:
    """mke2fs's options for the root file system (the module's docstring says why). An
    installed system's (`installed`) has as many inodes as Debian's mke2fs.conf gives a
    partition of its size (one per 16 to 64 KiB): its files need them."""
    args = ["-q", "-F", "-t", "ext4", "-b", str(ROOT_BLOCK)]
    if not installed:
        args += ["-i", str(BYTES_PER_INODE)]
    args += ["-J", f"size={JOURNAL_MIB}", "-L", ROOT_LABEL,
             "-E", "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0"]
    if fs_uuid is not None:
        args += ["-U", fs_uuid]
    return args
