"""What is on a disk: the GPT, the EFI System Partition, the Linux root partition.

A disk here is any block device with 4096-byte sectors and `read(lba, count)` (plus `write`,
`trim`, `flush` to install onto it): the machine's internal SSD (imacpro.t2.storage
.EncryptedStore, whose sectors are plaintext to us and ciphertext on the host) or a plain disk
image file (block.RawDiskImage, for external disks). Apple's SSDs are 4K-native, so are ours.

The layout `install` writes (UEFI 2.10 §5.3; everything aligned to 1 MiB):

    LBA 0            protective MBR
    LBA 1            GPT header;  LBA 2..5  partition entries (128 × 128 bytes)
    1 MiB            partition 1, "EFI System Partition": FAT32, 4096-byte logical sectors,
                     300 MiB, holding /EFI/imacpro/{vmlinuz,initrd.img,cmdline.txt,boot.manifest}
    301 MiB .. end   partition 2, "Linux root": ext2, label "imacpro-root"
    last 5 sectors   backup partition entries, backup GPT header

The firmware finds the boot image with `find_boot_image`, which reads the GPT, the ESP's FAT and
the four files, and nothing else.

Modules:
    block.py     the block-device interface, RawDiskImage, byte views of a partition,
                 copying a sparse host image onto a disk
    gpt.py       GUID Partition Table: write, read with CRC checks and the backup header
    fat.py       read-only FAT32 (the ESP as the firmware sees it), hostile-input safe
    tools.py     the host's mkfs.fat, mtools, mke2fs, run with clear errors
    esp.py       the ESP's files: the boot image on disk, `find_boot_image`
    install.py   `install`: the whole layout onto a disk

Why a package of its own rather than part of firmware/: the same code serves the installer (a
host-side command writing a disk) and the firmware (reading it at power-on), and like t2/ it
needs nothing from the CPU or device code, so it is testable on its own.
"""

from imacpro.errors import UserError


class DiskError(UserError):
    """A disk's layout is missing, damaged or unusable; the message names what and where."""
