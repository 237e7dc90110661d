"""Read-only FAT32 on a file system made by mkfs.fat and mtools; damage ends in FatError, fast."""

import collections
import random
import struct
import uuid

import pytest

from imacpro.disk import gpt
from imacpro.disk.block import SECTOR_SIZE, ByteView, RawDiskImage
from imacpro.disk.fat import Fat32, FatError
from imacpro.disk.install import ESP_SECTORS, make_esp

FILES = {"/EFI/imacpro/vmlinuz": random.Random(1).randbytes(3 * SECTOR_SIZE - 100),
         "/EFI/imacpro/boot.manifest": b"version = 1\n",
         "/EFI/imacpro/empty": b"",
         "/EFI/Other/A Long File Name.txt": b"long\n",
         "/top.txt": b"top"}
KERNEL = "/EFI/imacpro/vmlinuz"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fat")
    image = tmp / "esp.img"
    make_esp(image, gpt.Partition(gpt.EFI_SYSTEM, uuid.uuid4(), 256, 256 + ESP_SECTORS - 1,
                                  "ESP"), FILES, tmp)
    return image


@pytest.fixture
def image(pristine, tmp_path):
    """A private copy (sparse: only the first MiB and the FATs hold data)."""
    copy = tmp_path / "esp.img"
    with open(pristine, "rb") as src, open(copy, "wb") as dst:
        dst.truncate(pristine.stat().st_size)
        head = src.read(4 << 20)            # boot sector, FATs, the first data clusters
        dst.write(head)
    return copy


def mount(image):
    disk = RawDiskImage(image)
    return Fat32(ByteView(disk, 0, disk.sectors, "the ESP"))


def poke(image, offset, data):
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(data)


def fat_entry_offset(fs, cluster):
    return fs.fat_offset + 4 * cluster


def dirent_offset(fs, directory_path, short_name):
    """Where the 32-byte entry with this 11-byte short name is, in the directory's first
    cluster."""
    directory = fs.lookup(directory_path) if directory_path != "/" else None
    cluster = directory.cluster if directory else fs.root_cluster
    start = fs.data_offset + (cluster - 2) * fs.cluster_size
    raw = fs.view.read(start, fs.cluster_size)
    for at in range(0, len(raw), 32):
        if raw[at:at + 11] == short_name:
            return start + at
    raise AssertionError(f"{short_name!r} not in {directory_path}")


def test_reads_every_file_case_insensitively(image):
    fs = mount(image)
    assert (fs.sector_size, fs.cluster_size) == (4096, 4096) and fs.clusters >= 65525
    for path, contents in FILES.items():
        entry = fs.lookup(path)
        assert entry is not None and not entry.is_directory, path
        assert fs.read(entry, path) == contents
    assert fs.lookup("/efi/IMACPRO/VMLINUZ").name == "vmlinuz"
    assert fs.lookup("/EFI/Other/a long file name.TXT").short_name == "ALONGF~1.TXT"
    assert fs.lookup("/EFI/Other/ALONGF~1.TXT").name == "A Long File Name.txt"
    assert fs.lookup("/EFI/imacpro/BOOT.MANIFEST").name == "boot.manifest"
    assert fs.lookup("/EFI").is_directory
    for missing in ("/EFI/imacpro/initrd.img", "/nothing/vmlinuz", "/top.txt/x", "/EFI/x/y"):
        assert fs.lookup(missing) is None
    with pytest.raises(FatError, match="is a directory"):
        fs.read(fs.lookup("/EFI"), "/EFI")


def test_a_long_name_with_a_wrong_checksum_is_ignored(image):
    fs = mount(image)
    at = dirent_offset(fs, "/EFI/Other", b"ALONGF~1TXT")
    poke(image, at - 32 + 13, b"\x00")          # the long name's last part (ordinal 1)
    fs = mount(image)
    assert fs.lookup("/EFI/Other/A Long File Name.txt") is None
    assert fs.lookup("/EFI/Other/ALONGF~1.TXT").name == "ALONGF~1.TXT"


def test_loop_in_a_files_cluster_chain(image):
    fs = mount(image)
    first = fs.lookup(KERNEL).cluster
    poke(image, fat_entry_offset(fs, first + 1), struct.pack("<I", first))
    with pytest.raises(FatError, match=r"^the ESP: damaged FAT32 file system: "
                       r"/EFI/imacpro/vmlinuz: its cluster chain loops"):
        fs = mount(image)
        fs.read(fs.lookup(KERNEL), KERNEL)


def test_loop_in_a_directorys_cluster_chain(image):
    fs = mount(image)
    directory = fs.lookup("/EFI/imacpro").cluster
    poke(image, fat_entry_offset(fs, directory), struct.pack("<I", directory))
    with pytest.raises(FatError, match="directory /EFI/imacpro: its cluster chain loops"):
        mount(image).lookup(KERNEL)


def test_a_directory_chain_that_never_ends(image):
    """A chain through every cluster: 2 MiB of directory is all a reader takes."""
    fs = mount(image)
    root = fs.root_cluster
    chain = b"".join(struct.pack("<I", n + 1) for n in range(root, root + 1000))
    poke(image, fat_entry_offset(fs, root), chain)
    with pytest.raises(FatError, match="longer than 2097152 bytes"):
        mount(image).lookup("/none")


@pytest.mark.parametrize("value, message", [
    (0x0FFF_FFF0, "cluster 0xffffff0 is out of range"),
    (0x0000_0001, "cluster 0x1 is out of range"),
    (0x0FFF_FFF7, "bad cluster"),
    (0x0FFF_FFFF, "ends after 1 of 3 clusters")])
def test_bad_next_cluster(image, value, message):
    fs = mount(image)
    first = fs.lookup(KERNEL).cluster
    poke(image, fat_entry_offset(fs, first), struct.pack("<I", value))
    with pytest.raises(FatError, match=message):
        fs = mount(image)
        fs.read(fs.lookup(KERNEL), KERNEL)


def test_out_of_range_first_cluster_and_huge_size(image):
    fs = mount(image)
    at = dirent_offset(fs, "/EFI/imacpro", b"VMLINUZ    ")
    poke(image, at + 20, struct.pack("<H", 0x7FFF))           # first cluster, high half
    with pytest.raises(FatError, match="out of range"):
        fs.read(mount(image).lookup(KERNEL), KERNEL)
    poke(image, at + 20, bytes(2))
    poke(image, at + 28, struct.pack("<I", 0xFFFF_FFFF))
    with pytest.raises(FatError, match="claims 4294967295 bytes"):
        fs.read(mount(image).lookup(KERNEL), KERNEL)


@pytest.mark.parametrize("offset, data, message", [
    (510, b"\0\0", "no 55 AA"),
    (0, b"\0", "no jump"),
    (11, struct.pack("<H", 3000), "3000-byte sectors"),
    (13, b"\x03", "3 a cluster"),
    (22, b"\x01\x00", "not FAT32"),
    (32, struct.pack("<I", 0xFFFF_FFF0), "do not fit"),
    (36, struct.pack("<I", 1), "too small"),
    (36, struct.pack("<I", 0x7FFF_FFF0), "do not fit|no data area"),
    (44, struct.pack("<I", 0x0FFF_FFFF), "the root directory: cluster"),
    (40, b"\x85\x00", "no data area"),                     # active FAT 5 of 2
])
def test_damaged_boot_sector(image, offset, data, message):
    poke(image, offset, data)
    with pytest.raises(FatError, match=message):
        mount(image)


def test_directory_garbage_is_fatError_or_nothing(image):
    fs = mount(image)
    directory = fs.lookup("/EFI/imacpro").cluster
    start = fs.data_offset + (directory - 2) * fs.cluster_size
    rng = random.Random(7)
    for _ in range(200):
        poke(image, start, rng.randbytes(fs.cluster_size))
        fs = mount(image)
        try:
            entry = fs.lookup(KERNEL)
            if entry is not None and not entry.is_directory:
                fs.read(entry, KERNEL)
        except FatError:
            pass


def test_random_damage_is_fatError_or_data(image):
    """Noise over the boot sector, the FAT's used entries, the directories and files: FatError
    or a result, never another exception, a hang or a giant read."""
    fs = mount(image)
    regions = [(0, 512), (fs.fat_offset, 256), (fs.data_offset, 16 * fs.cluster_size)]
    pristine = [(start, fs.view.read(start, length)) for start, length in regions]
    rng = random.Random(11)
    outcomes = collections.Counter()
    for _ in range(600):
        with open(image, "r+b") as f:
            for start, data in pristine:
                f.seek(start)
                f.write(data)
            for _ in range(rng.randint(1, 3)):
                start, length = rng.choice(regions)
                f.seek(start + rng.randrange(0, length, 4))
                f.write(rng.randbytes(rng.choice([1, 4, 32])))
        try:
            fs = mount(image)
            for path in FILES:
                entry = fs.lookup(path)
                if entry is not None and not entry.is_directory:
                    fs.read(entry, path)
            outcomes["read"] += 1
        except FatError:
            outcomes["FatError"] += 1
    assert outcomes["read"] > 100 and outcomes["FatError"] > 20   # both paths exercised
