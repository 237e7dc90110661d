"""`imacpro bless`: the guest's own kernel and initrd, read from its ext4 root partition on the
encrypted SSD, signed as a new version and written into the ESP beside its other files; the
T2 refuses the changed image before and boots it after. The root file systems are made by
mke2fs -d from small trees, as the installer makes Debian's."""

import random

import pytest

from imacpro.disk import DiskError, esp, gpt, rootfs
from imacpro.disk.bless import bless
from imacpro.disk.block import SECTOR_SIZE, RawDiskImage
from imacpro.disk.install import install, mke2fs_args
from imacpro.disk.tools import run
from imacpro.t2.secure_boot import BootImage, Settings, evaluate
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.signing import SigningServer
from imacpro.t2.storage import EncryptedStore

ECID = 0x0012_3456_789A_BCDE
CAPACITY = 1 << 30
OLD_KERNEL, NEW_KERNEL = random.Random(1).randbytes(2 << 20), random.Random(2).randbytes(3 << 20)
OLD_INITRD, NEW_INITRD = random.Random(3).randbytes(1 << 20), random.Random(4).randbytes(5 << 19)
CMDLINE = "root=UUID=0f0e ro console=ttyS0,115200"
FIRST_VERSION = 61192003


@pytest.fixture
def signer(tmp_path):
    return SigningServer.load_or_create(tmp_path / "keys")


def root_maker(tree_of):
    """A RootMaker writing the ext4 image of the tree `tree_of(directory)` fills in."""
    def make(image, part):
        tree = image.parent / "tree"
        tree.mkdir()
        tree_of(tree)
        with open(image, "wb") as f:
            f.truncate(part.sectors * SECTOR_SIZE)
        run("mke2fs", *mke2fs_args(installed=True), "-d", str(tree), str(image))
    return make


def debian_tree(tree):
    """/boot with two kernels and linux-base's links to the newer one, as after an upgrade."""
    (tree / "boot").mkdir()
    for version, kernel, initrd in (("6.1.0-56-amd64", OLD_KERNEL, OLD_INITRD),
                                    ("6.1.0-57-amd64", NEW_KERNEL, NEW_INITRD)):
        (tree / f"boot/vmlinuz-{version}").write_bytes(kernel)
        (tree / f"boot/initrd.img-{version}").write_bytes(initrd)
    (tree / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-57-amd64")
    (tree / "initrd.img").symlink_to("boot/initrd.img-6.1.0-57-amd64")
    (tree / "etc").mkdir()
    (tree / "etc/hostname").write_text("pro\n")


@pytest.fixture
def store(tmp_path, signer):
    """The SSD as installed with the old kernel, signed; the guest has since installed the
    new one (its root's links point there)."""
    t2 = tmp_path / "t2"
    sep = SecureEnclave.create(t2, ECID)
    manifest = tmp_path / "boot.manifest"
    signer.sign(OLD_KERNEL, OLD_INITRD, CMDLINE, FIRST_VERSION).save(manifest)
    with EncryptedStore.create(t2, CAPACITY, sep) as store:
        install(store, OLD_KERNEL, OLD_INITRD, CMDLINE, manifest, root=root_maker(debian_tree))
        yield store


def verdict(store, signer, policy="full", floor=FIRST_VERSION):
    found = esp.find_boot_image(store)
    image = BootImage(found.kernel, found.initrd, found.cmdline, found.manifest)
    return evaluate(image, Settings(policy=policy, highest_version=floor), signer.public_key,
                    ECID, signer.personalize)


def esp_partition(store):
    return gpt.read(store, "ssd").find(gpt.EFI_SYSTEM)


def hooks_copy_new_kernel(store):
    """What the guest's kernel hook does after the upgrade: the new files onto the ESP."""
    esp.replace_files(store, esp_partition(store), {esp.KERNEL: NEW_KERNEL,
                                                    esp.INITRD: NEW_INITRD})


def test_the_upgraded_kernel_is_refused_until_blessed_and_boots_after(store, signer, tmp_path):
    assert verdict(store, signer).allowed
    hooks_copy_new_kernel(store)
    refused = verdict(store, signer)
    assert not refused.allowed
    assert refused.reason == "kernel digest: the kernel differs from the signed one"
    assert not verdict(store, signer, policy="medium").allowed     # a signature is required
    assert verdict(store, signer, policy="none").allowed           # anything boots

    done = bless(store, signer, floor=FIRST_VERSION)
    assert done.changed and done.version == FIRST_VERSION + 1
    assert (done.kernel_path, done.initrd_path) == ("/boot/vmlinuz-6.1.0-57-amd64",
                                                    "/boot/initrd.img-6.1.0-57-amd64")
    assert (done.kernel_size, done.cmdline) == (len(NEW_KERNEL), CMDLINE)
    allowed = verdict(store, signer)
    assert allowed.allowed and allowed.version == FIRST_VERSION + 1
    found = esp.find_boot_image(store)
    assert (found.kernel, found.initrd, found.cmdline) == (NEW_KERNEL, NEW_INITRD, CMDLINE)

    again = bless(store, signer, floor=FIRST_VERSION + 1)     # nothing new: nothing written
    assert not again.changed and again.version == FIRST_VERSION + 1


def test_bless_reads_the_root_not_the_esp(store, signer):
    """Without the hooks' copy (an ESP the guest did not update, or changed otherwise) the
    blessed image is still the root's current kernel."""
    bless(store, signer, floor=FIRST_VERSION)
    assert esp.find_boot_image(store).kernel == NEW_KERNEL
    assert verdict(store, signer).allowed


def test_the_new_version_is_above_the_rollback_floor(store, signer):
    hooks_copy_new_kernel(store)
    done = bless(store, signer, floor=FIRST_VERSION + 40)
    assert done.version == FIRST_VERSION + 41
    assert verdict(store, signer, floor=FIRST_VERSION + 40).allowed


def test_the_esp_keeps_its_other_files_and_checks_clean(store, signer, tmp_path):
    part = esp_partition(store)
    esp.replace_files(store, part, {"/EFI/other/notes.txt": b"kept\n"})
    bless(store, signer, floor=FIRST_VERSION)
    copy = tmp_path / "esp.img"
    with open(copy, "wb") as f:
        f.write(store.read(part.first_lba, part.sectors))
    run("fsck.fat", "-n", str(copy))
    assert run("mtype", "-i", str(copy), "::/EFI/other/notes.txt") == "kept\n"


def test_without_an_installed_system_bless_says_so(tmp_path, signer):
    with RawDiskImage.create(tmp_path / "disk.img", CAPACITY) as disk:
        with pytest.raises(DiskError, match="has no GPT"):
            bless(disk, signer, floor=0)
        manifest = tmp_path / "m"
        signer.sign(OLD_KERNEL, OLD_INITRD, CMDLINE, 1).save(manifest)
        install(disk, OLD_KERNEL, OLD_INITRD, CMDLINE, manifest)   # an empty root
        with pytest.raises(rootfs.RootFsError, match="has no /vmlinuz"):
            bless(disk, signer, floor=0)


def test_a_link_loop_in_the_root_is_an_error(tmp_path, signer):
    def looping(tree):
        (tree / "vmlinuz").symlink_to("boot/../vmlinuz")
        (tree / "boot").mkdir()
    manifest = tmp_path / "m"
    signer.sign(OLD_KERNEL, OLD_INITRD, CMDLINE, 1).save(manifest)
    with RawDiskImage.create(tmp_path / "disk.img", CAPACITY) as disk:
        install(disk, OLD_KERNEL, OLD_INITRD, CMDLINE, manifest, root=root_maker(looping))
        with pytest.raises(rootfs.RootFsError, match="more than 8 symbolic links"):
            bless(disk, signer, floor=0)


def test_sizes_are_checked_before_reading(store):
    root = rootfs.open_root(store, gpt.read(store, "ssd").find(gpt.LINUX_ROOT_X86_64), "root")
    with pytest.raises(rootfs.RootFsError, match="more than the 1000 it may be"):
        root.read_file("/vmlinuz", 1000)
    with pytest.raises(rootfs.RootFsError, match="/boot is not a regular file"):
        root.read_file("/boot", 1 << 30)
    assert root.read_file("/etc/hostname", 100) == (b"pro\n", "/etc/hostname")


def test_a_damaged_root_file_system_is_an_error_not_a_crash(store, signer):
    """Random damage to the root's superblock and group descriptors (its first 8 KiB) gives
    a DiskError or a result, nothing else."""
    root = gpt.read(store, "ssd").find(gpt.LINUX_ROOT_X86_64)
    pristine = bytes(store.read(root.first_lba, 2))
    rng = random.Random(12)
    outcomes = set()
    for _ in range(40):
        damaged = bytearray(pristine)
        for _ in range(rng.randrange(1, 16)):
            damaged[rng.randrange(1024, 8192)] = rng.randrange(256)
        store.write(root.first_lba, bytes(damaged))
        try:
            volume = rootfs.open_root(store, root, "root")
            volume.read_file("/vmlinuz", 1 << 30)
            outcomes.add("read")
        except DiskError:
            outcomes.add("error")
    assert "error" in outcomes
