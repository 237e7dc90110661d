"""Installing onto the encrypted SSD and finding the boot image again; host tools check the
result (fdisk reads the GPT, fsck.fat and mtools the ESP, e2fsck the root file system)."""

import os
import random
import re

import pytest

from imacpro.disk import DiskError, esp, gpt, tools
from imacpro.disk.block import SECTOR_SIZE, RawDiskImage, copy_sparse
from imacpro.disk.esp import BootImageError, find_boot_image
from imacpro.disk.fat import FatError
from imacpro.disk.install import ESP_NAME, ROOT_LABEL, install, layout, make_esp
from imacpro.errors import UserError
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.signing import SigningServer
from imacpro.t2.storage import IMAGE_FILE, EncryptedStore

ECID = 0x0012_3456_789A_BCDE
CAPACITY = 1 << 30
KERNEL = random.Random(1).randbytes(3 * 2**20 + 123)
INITRD = random.Random(2).randbytes(5 * 2**20 + 7)
CMDLINE = "console=ttyS0,115200 panic=-1 quiet"
MiB = 1 << 20


@pytest.fixture
def store(tmp_path):
    t2 = tmp_path / "t2"
    sep = SecureEnclave.create(t2, ECID)
    with EncryptedStore.create(t2, CAPACITY, sep) as store:
        yield store


@pytest.fixture
def manifest(tmp_path):
    signed = SigningServer.load_or_create(tmp_path / "keys").sign(KERNEL, INITRD, CMDLINE, 7)
    path = tmp_path / "boot.manifest"
    signed.save(path)
    return path


@pytest.fixture
def installed(store, manifest):
    lines = []
    table = install(store, KERNEL, INITRD, CMDLINE, manifest, lines.append)
    return store, table, lines


def decrypt(device, first_lba, sectors, path):
    """The plaintext of some sectors as a sparse host file (zero MiBs left as holes)."""
    step = MiB // SECTOR_SIZE
    with open(path, "wb") as f:
        f.truncate(sectors * SECTOR_SIZE)
        for lba in range(first_lba, first_lba + sectors, step):
            count = min(step, first_lba + sectors - lba)
            data = device.read(lba, count)
            if data.count(0) != len(data):
                f.seek((lba - first_lba) * SECTOR_SIZE)
                f.write(data)
    return path


class CountingDevice:
    """A device that counts the sectors read through it."""

    def __init__(self, device):
        self.device, self.sectors_read = device, 0
        self.SECTOR_SIZE, self.sectors = device.SECTOR_SIZE, device.sectors

    def read(self, lba, count):
        self.sectors_read += count
        return self.device.read(lba, count)


def test_install_then_find_the_boot_image(installed, manifest, tmp_path):
    store, table, lines = installed
    found = find_boot_image(store)
    assert found == (KERNEL, INITRD, CMDLINE, found.manifest)
    assert found.manifest.version == 7 and found.manifest == type(found.manifest).load(manifest)
    esp_part, root = table.partitions
    assert (esp_part.name, esp_part.type_guid, esp_part.first_lba, esp_part.sectors) == \
        (ESP_NAME, gpt.EFI_SYSTEM, 256, 300 * MiB // SECTOR_SIZE)
    assert (root.name, root.type_guid, root.first_lba) == \
        ("Linux root", gpt.LINUX_ROOT_X86_64, 256 + 300 * 256)
    assert (root.last_lba + 1) % 256 == 0 and store.sectors - root.last_lba < 256 + 6
    assert gpt.read(store, "the SSD") == table
    assert lines[0].startswith("erasing the disk") and lines[-1] == "partition table (GPT)"


def test_the_ssd_stays_sparse(installed):
    store = installed[0]
    allocated = os.stat(store.directory / IMAGE_FILE).st_blocks * 512
    assert allocated < len(KERNEL) + len(INITRD) + 16 * MiB, allocated


def test_finding_reads_only_the_sectors_it_needs(installed):
    device = CountingDevice(installed[0])
    find_boot_image(device)
    files = -(-len(KERNEL) // SECTOR_SIZE) - (-len(INITRD) // SECTOR_SIZE)
    assert files <= device.sectors_read <= files + 40, device.sectors_read


def test_the_esp_passes_fsck_fat_and_mtools_reads_it(installed, tmp_path):
    store, table, _ = installed
    part = table.partitions[0]
    image = decrypt(store, part.first_lba, part.sectors, tmp_path / "esp.img")
    tools.run("fsck.fat", "-n", str(image))      # a DiskError if it finds anything wrong
    listing = tools.run("mdir", "-b", "-i", str(image), "::/EFI/imacpro")
    assert sorted(line.rsplit("/", 1)[-1] for line in listing.split()) == \
        ["boot.manifest", "cmdline.txt", "initrd.img", "vmlinuz"]
    assert tools.run("mtype", "-i", str(image), "::/EFI/imacpro/cmdline.txt") == CMDLINE + "\n"
    assert "4096 bytes per logical sector" in tools.run("fsck.fat", "-vn", str(image))


def test_the_root_partition_passes_e2fsck(installed, tmp_path):
    store, table, _ = installed
    part = table.partitions[1]
    image = decrypt(store, part.first_lba, part.sectors, tmp_path / "root.img")
    tools.run("e2fsck", "-fn", str(image))
    assert tools.run("e2label", str(image)).strip() == ROOT_LABEL
    features = tools.run("dumpe2fs", "-h", str(image))
    assert "has_journal" in features and "extent" in features     # ext4, journalled


def test_fdisk_reads_the_gpt(installed, tmp_path):
    store, table, _ = installed
    disk = decrypt(store, 0, store.sectors, tmp_path / "disk.img")
    listing = tools.run("fdisk", "-l", "-b", "4096", str(disk))
    assert "Disklabel type: gpt" in listing
    assert f"Disk identifier: {str(table.disk_guid).upper()}" in listing
    assert re.search(r"disk\.img1 +256 +77055 +76800 +300M EFI System\n", listing)
    assert "Linux root (x86-64)" in listing
    assert "corrupt" not in listing.lower() and "mismatch" not in listing.lower()


def test_reinstalling_replaces_everything(installed):
    store, first, _ = installed
    esp_part = first.partitions[0]
    store.write(esp_part.last_lba, b"stale" * 800 + bytes(96))   # past every file
    second = install(store, b"new kernel", b"", "quiet", None)
    assert find_boot_image(store) == (b"new kernel", b"", "quiet", None)
    assert store.read(esp_part.last_lba, 1) == bytes(SECTOR_SIZE)
    assert second.disk_guid != first.disk_guid


def test_a_blank_or_half_installed_ssd(store, tmp_path):
    with pytest.raises(gpt.GptError, match="^the internal SSD has no GPT"):
        find_boot_image(store)
    esp_part, root = layout(store.sectors)
    gpt.write(store, [root])
    with pytest.raises(BootImageError, match="^no EFI System Partition on the internal SSD$"):
        find_boot_image(store)
    gpt.write(store, [esp_part, root])
    with pytest.raises(FatError, match="^the EFI System Partition on the internal SSD: "
                       "damaged FAT32 file system: no FAT boot sector"):
        find_boot_image(store)


def write_esp(store, tmp_path, files):
    esp_part, root = layout(store.sectors)
    store.trim(0, store.sectors)
    make_esp(tmp_path / "esp.img", esp_part, files, tmp_path)
    copy_sparse(tmp_path / "esp.img", store, esp_part.first_lba, esp_part.sectors)
    gpt.write(store, [esp_part, root])


@pytest.mark.parametrize("missing", [esp.KERNEL, esp.INITRD, esp.CMDLINE])
def test_a_missing_file(store, tmp_path, missing):
    files = {esp.KERNEL: b"k", esp.INITRD: b"i", esp.CMDLINE: b"c\n"}
    del files[missing]
    write_esp(store, tmp_path, files)
    with pytest.raises(BootImageError, match=f"^the EFI System Partition on the internal SSD "
                                             f"has no {missing}$"):
        find_boot_image(store)


@pytest.mark.parametrize("path, contents, message", [
    (esp.CMDLINE, b"\xff\xfe", "is not UTF-8 text"),
    (esp.CMDLINE, b"x" * 5000, "is 5000 bytes, more than a boot image's 4096"),
    (esp.MANIFEST, b"version = [", "is not a manifest"),
    (esp.MANIFEST, b"version = 1\n", "is not a boot image manifest"),
    (esp.MANIFEST, b"\x80", "is not a manifest")])
def test_an_unusable_file(store, tmp_path, path, contents, message):
    files = {esp.KERNEL: b"k", esp.INITRD: b"i", esp.CMDLINE: b"c\n", path: contents}
    write_esp(store, tmp_path, files)
    with pytest.raises(BootImageError, match=message):
        find_boot_image(store)


def test_command_line_endings(store, tmp_path):
    write_esp(store, tmp_path, {esp.KERNEL: b"k", esp.INITRD: b"", esp.CMDLINE: b"a b \r\n"})
    assert find_boot_image(store) == (b"k", b"", "a b ", None)


def test_an_external_disk_image(tmp_path, manifest):
    path = tmp_path / "external.img"
    with RawDiskImage.create(path, CAPACITY) as disk:
        install(disk, KERNEL, INITRD, CMDLINE, manifest)
    assert os.stat(path).st_blocks * 512 < len(KERNEL) + len(INITRD) + 16 * MiB
    with RawDiskImage(path) as disk:
        found = find_boot_image(disk)
        assert found[:3] == (KERNEL, INITRD, CMDLINE) and found.manifest.version == 7
    with RawDiskImage.create(path, CAPACITY) as disk, \
            pytest.raises(gpt.GptError, match=f"^the disk image {path} has no GPT"):
        find_boot_image(disk)


def test_too_small_a_disk(tmp_path):
    with RawDiskImage.create(tmp_path / "small.img", 256 * MiB) as disk, \
            pytest.raises(DiskError, match="too small to install onto"):
        install(disk, KERNEL, INITRD, CMDLINE, None)


def test_a_missing_host_tool_is_named_with_its_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "SBIN", ())
    with RawDiskImage.create(tmp_path / "disk.img", CAPACITY) as disk, \
            pytest.raises(tools.ToolMissing,
                          match=r"^mkfs.fat is not installed: .*Debian package dosfstools"):
        install(disk, KERNEL, INITRD, CMDLINE, None)


def test_errors_are_user_errors():
    for cls in (DiskError, gpt.GptError, FatError, BootImageError, tools.ToolMissing):
        assert issubclass(cls, UserError)


def test_copy_sparse_writes_only_data(tmp_path):
    source = tmp_path / "source.img"
    with open(source, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(10 * MiB + 4096)
        f.write(b"x" * 5000)
        f.seek(20 * MiB)
        f.write(bytes(2 * MiB))             # written zeros: data to lseek, nothing to copy
        f.seek(40 * MiB)
        f.write(b"y")
    with RawDiskImage.create(tmp_path / "disk.img", 128 * MiB) as disk:
        written = copy_sparse(source, disk, 256, 64 * MiB // SECTOR_SIZE)
        assert written == 3 * SECTOR_SIZE       # the data's host blocks: 2 for x, 1 for y
        assert disk.read(256 + 10 * 256 + 1, 2)[:5001] == b"x" * 5000 + b"\0"
        assert disk.read(256 + 40 * 256, 1)[:2] == b"y\0"
    assert os.stat(tmp_path / "disk.img").st_blocks * 512 <= 256 * 1024
