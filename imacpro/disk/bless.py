"""`imacpro bless`: the owner approves the kernel and initrd the installed system has now.

An installed Debian keeps its kernels in /boot, and its kernel and initramfs hooks copy the
current one onto the EFI System Partition (guest/debian_setup.py), as a distribution's boot
loader integration does. After `apt-get install` of a new kernel or `update-initramfs`, the
ESP's kernel or initrd no longer has the digest its signed manifest names, and the T2 refuses
it under Full and Medium Security ("initrd digest: the initrd differs from the signed one"),
as a T2 Mac refuses a boot loader Apple did not sign. Blessing, with the machine off:

 1. reads the guest's current kernel and initrd from the root partition: /vmlinuz and
    /initrd.img, the links Debian's kernel packages keep pointing at the newest kernel
    (rootfs.py; the guest's file system is read as hostile input);
 2. keeps the ESP's command line (cmdline.txt) as it is: it is shown, and signed with them;
 3. signs the three as version max(the ESP's manifest's, the anti-rollback floor) + 1 with
    the installation's platform key, so Full Security's rollback check takes it and any
    older image stays refused;
 4. writes kernel, initrd and manifest into the ESP (esp.replace_files), keeping its other
    files.

What is on the ESP is not read for the kernel: the owner approves the system's own files, and
an ESP changed by something other than the hooks is replaced with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from imacpro.disk import DiskError, esp, gpt
from imacpro.disk.block import WritableBlockDevice
from imacpro.disk.rootfs import open_root
from imacpro.t2.signing import SigningServer, sha384, verify

KERNEL_LINK = "/vmlinuz"       # linux-base keeps these at the root (Debian's default)
INITRD_LINK = "/initrd.img"


@dataclass(frozen=True)
class Blessed:
    kernel_path: str           # in the guest's file system, "/boot/vmlinuz-6.1.0-57-amd64"
    initrd_path: str
    kernel_size: int
    initrd_size: int
    cmdline: str
    version: int               # the manifest's now
    changed: bool              # False: the ESP already held these, signed (nothing written)


def bless(device: WritableBlockDevice, signer: SigningServer, floor: int) -> Blessed:
    """Sign the guest's current kernel and initrd on `device` and put them on its ESP.
    `floor`: the T2's anti-rollback floor (the highest version booted under Full Security)."""
    name = getattr(device, "name", esp.INTERNAL_SSD)
    table = gpt.read(device, name)
    esp_part, root_part = table.find(gpt.EFI_SYSTEM), table.find(gpt.LINUX_ROOT_X86_64)
    if esp_part is None or root_part is None:
        raise DiskError(f"{name} has no installed system (no EFI System Partition and Linux "
                        "root partition): 'imacpro install' writes one")
    current = esp.find_boot_image(device, name)
    root = open_root(device, root_part, f"the Linux root partition on {name}")
    kernel, kernel_path = root.read_file(KERNEL_LINK, esp.MAX_SIZE[esp.KERNEL])
    initrd, initrd_path = root.read_file(INITRD_LINK, esp.MAX_SIZE[esp.INITRD])
    signed = current.manifest
    if (signed is not None and signed.signer == signer.fingerprint
            and verify(signer.public_key, signed.signature, signed.payload())
            and signed.version >= floor
            and (signed.kernel_sha384, signed.initrd_sha384, signed.cmdline_sha384)
            == (sha384(kernel), sha384(initrd), sha384(current.cmdline.encode()))
            and (current.kernel, current.initrd) == (kernel, initrd)):
        return Blessed(kernel_path, initrd_path, len(kernel), len(initrd), current.cmdline,
                       signed.version, changed=False)
    version = max(signed.version if signed is not None else 0, floor) + 1
    manifest = signer.sign(kernel, initrd, current.cmdline, version)
    esp.replace_files(device, esp_part, {esp.KERNEL: kernel, esp.INITRD: initrd,
                                         esp.MANIFEST: manifest.to_toml().encode()},
                      workdir=getattr(device, "directory", None))
    return Blessed(kernel_path, initrd_path, len(kernel), len(initrd), current.cmdline,
                   version, changed=True)

