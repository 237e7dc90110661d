"""The installed Debian's pieces that need no network: the user's input checked, the system's
boot files read from a tarball, and a tree made one machine's under fakeroot."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from imacpro.errors import UserError
from imacpro.guest import debian
from imacpro.guest.debian_setup import (APT_PROXY_CONF, APT_PROXY_SCRIPT, ESP_HOOKS,
                                        INITRAMFS_CONF, MODPROBE_CONF, NETWORK_FILE,
                                        SERIAL_GETTY, SYSTEMD_CONF)

STATUS = """Package: linux-image-6.1.0-57-amd64
Status: install ok installed
Version: 6.1.192-3

Package: linux-image-6.1.0-50-amd64
Status: deinstall ok config-files
Version: 6.1.150-1
"""


def test_the_users_input_is_checked():
    assert debian.packages_of("vim, git,,vim") == debian.PACKAGES + ("vim", "git")
    for bad in ("vim;rm", "Vim", "../x"):
        with pytest.raises(UserError, match="not a Debian package name"):
            debian.packages_of(bad)
    assert debian.check_user("alice") == "alice"
    for bad in ("root", "sshd", "Alice", "1x", "a" * 40, "al ice"):
        with pytest.raises(UserError):
            debian.check_user(bad)
    with pytest.raises(UserError, match="releases imacpro installs are bookworm"):
        debian.root_tar("sid", debian.PACKAGES, print)
    assert debian.tar_key("bookworm", ("a", "b")) == debian.tar_key("bookworm", ("b", "a"))
    assert debian.tar_key("bookworm", ("a",)) != debian.tar_key("bookworm", ("a", "b"))


def test_keys_and_passwords_files(tmp_path):
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3Nza alice@host\n")
    assert debian.read_ssh_key(key) == "ssh-ed25519 AAAAC3Nza alice@host"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n")
    with pytest.raises(UserError, match="give the .pub file"):
        debian.read_ssh_key(key)
    password = tmp_path / "pw"
    password.write_text("")
    with pytest.raises(UserError, match="is empty"):
        debian.read_password(password)
    password.write_text("s3cret\nignored\n")
    assert debian.read_password(password) == "s3cret"
    hashed = debian.password_hash("s3cret")
    check = subprocess.run(["openssl", "passwd", "-6", "-salt", hashed.split("$")[2], "-stdin"],
                           input="s3cret\n", capture_output=True, text=True)
    assert hashed.startswith("$6$") and check.stdout.strip() == hashed


def test_the_newest_installed_kernel_and_its_initrd_come_from_the_tarball(tmp_path):
    tar_path = tmp_path / "system.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (("./boot/vmlinuz-6.1.0-50-amd64", b"old kernel"),
                           ("./boot/vmlinuz-6.1.0-57-amd64", b"kernel"),
                           ("./boot/initrd.img-6.1.0-57-amd64", b"initrd"),
                           ("./var/lib/dpkg/status", STATUS.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    system = debian.DebianSystem.read(tar_path)
    assert (system.kernel, system.initrd) == (b"kernel", b"initrd")
    assert system.kernel_release == "6.1.0-57-amd64" and system.image_version == 61192003


@pytest.mark.skipif(shutil.which("fakeroot") is None, reason="fakeroot is installed by make")
def test_a_tree_is_made_the_machines_under_fakeroot(tmp_path):
    tree = tmp_path / "root"
    for directory in ("etc/skel", "home", "lib/systemd/system"):
        (tree / directory).mkdir(parents=True)
    (tree / "etc/skel/.bashrc").write_text("# bash\n")
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "imacpro:x:1000:1000::/nonexistent:/bin/false\n")
    (tree / "etc/shadow").write_text("root:*:20000:0:99999:7:::\n")
    (tree / "etc/group").write_text("root:x:0:\nsudo:x:27:\nadm:x:4:bob\n")
    (tree / "etc/gshadow").write_text("root:*::\nsudo:*::\nadm:*::bob\n")
    (tree / "etc/sudoers.d").mkdir()
    (tree / "etc/ssh").mkdir()
    (tree / "etc/ssh/ssh_host_ed25519_key").write_text("the cached system's key\n")
    setup = tmp_path / "setup.json"
    setup.write_text(json.dumps({"hostname": "pro", "user": "alice", "password_hash": "$6$x$y",
                                 "ssh_key": "ssh-ed25519 AAAA alice", "root_uuid": "1234",
                                 "esp_volume_id": 0x1A2B3C4D}))
    script = (f"{sys.executable} -m imacpro.guest.debian_setup {tree} {setup} && "
              f"stat -c '%u:%g %a %n' {tree}/home/alice {tree}/home/alice/.ssh/authorized_keys "
              f"{tree}/etc/sudoers.d/imacpro-alice {tree}/home/alice/.bashrc")
    done = subprocess.run(["fakeroot", "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    owners = done.stdout.split()
    assert owners[0:2] == ["1001:1001", "700"]          # 1000 was taken
    assert owners[3:5] == ["1001:1001", "600"]
    assert owners[6:8] == ["0:0", "440"]
    assert owners[9] == "1001:1001"
    assert (tree / "etc/hostname").read_text() == "pro\n"
    fstab = (tree / "etc/fstab").read_text()
    assert "UUID=1234\t/\text4" in fstab
    assert "UUID=1A2B-3C4D\t/boot/efi\tvfat\tumask=0077" in fstab and (tree / "boot/efi").is_dir()
    for hook in ESP_HOOKS:      # the kernel's and update-initramfs's: executable, this machine's
        assert (tree / hook).stat().st_mode & 0o777 == 0o755
        assert "imacpro bless pro" in (tree / hook).read_text()
    assert "MODULES=dep" in (tree / INITRAMFS_CONF).read_text()
    assert "Name=enp4s0" in (tree / NETWORK_FILE).read_text()      # the 10GbE port, by DHCP
    assert "DefaultDeviceTimeoutSec=10min" in (tree / SYSTEMD_CONF).read_text()
    assert "blacklist applesmc" in (tree / MODPROBE_CONF).read_text().splitlines()
    assert f'Proxy-Auto-Detect "/{APT_PROXY_SCRIPT}";' in (tree / APT_PROXY_CONF).read_text()
    assert (tree / APT_PROXY_SCRIPT).stat().st_mode & 0o777 == 0o755   # the host's cache, port 3142
    assert "10.0.2.2:3142" in (tree / APT_PROXY_SCRIPT).read_text()
    key = (tree / "etc/ssh/ssh_host_ed25519_key").read_text()     # sshd's keys, its own
    assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (tree / "etc/ssh/ssh_host_rsa_key.pub").exists()
    networkd = tree / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    assert os.readlink(networkd) == "/lib/systemd/system/systemd-networkd.service"
    assert "alice:x:1001:1001:alice:/home/alice:/bin/bash" in (tree / "etc/passwd").read_text()
    assert "alice:$6$x$y:" in (tree / "etc/shadow").read_text()
    group = (tree / "etc/group").read_text()
    assert "sudo:x:27:alice" in group and "adm:x:4:bob,alice" in group
    assert "alice:x:1001:" in group
    assert "sudo:*::alice" in (tree / "etc/gshadow").read_text()
    getty = tree / SERIAL_GETTY
    assert getty.is_symlink() and str(getty.readlink()).endswith("serial-getty@.service")

