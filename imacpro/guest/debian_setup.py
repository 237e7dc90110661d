"""Make a freshly built Debian tree one machine's: run inside fakeroot by imacpro/guest/debian.py.

    python -m imacpro.guest.debian_setup TREE SETUP.json

Writes, as Debian's installer would: /etc/hostname and /etc/hosts; /etc/fstab with the root
file system and the EFI System Partition (at /boot/efi) by UUID; the user (the first free ID
from 1000, in the groups Debian's installer gives its first user that exist here: sudo, adm,
systemd-journal…), its home from /etc/skel, its password hash and SSH key, and sudo without a
password, as Debian's cloud images give their first user (imacpro's execs run commands as
that user: dmidecode and nvme need root, and a sudo that asked would wait on the console for
ever); a getty on the serial console (ttyS0) beside tty1's; the kernel and initramfs hooks
that put the current kernel and initrd on the ESP, where the T2 reads the boot image
(ESP_HOOK: the T2 then refuses them until the owner approves them with `imacpro bless`,
disk/bless.py); sshd's host keys made anew; initrds made in the machine hold the modules its
hardware needs (INITRAMFS_CONF); applesmc, which cannot reach this machine's SMC, is not
loaded (MODPROBE_CONF); apt uses the host's package cache when it answers (APT_PROXY_CONF);
the 10GbE port on DHCP (NETWORK_FILE); systemd's waits (SYSTEMD_CONF). Files are given
owners with os.chown, which fakeroot records for the mke2fs -d that follows.
Only the standard library: this runs in its own interpreter, before anything else is set up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIRST_UID = 1000
# The ESP is mounted when it appears but the boot does not wait on it (`nofail`): nothing
# needs it until a kernel upgrade. On a host whose cores are all taken, udev's first pass
# over every device can outlast systemd's 90 s wait for a device, and without nofail that
# sent the boot to the emergency shell. The wait is made long enough for any such host.
ESP_OPTIONS = "umask=0077,nofail,x-systemd.device-timeout=10min"
USER_GROUPS = ("adm", "sudo", "systemd-journal", "dialout", "cdrom", "plugdev", "video",
               "audio", "users")
SERIAL_GETTY = "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
# systemd's waits are host time, as the guest's clock is: on a host whose cores are all busy a
# boot takes many minutes, and its default 90 s for a device (ttyS0, the ESP) or a service to
# start ran out (the serial getty, systemd-networkd: no login on the console). The machine
# waits as long as it takes, within reason.
SYSTEMD_CONF = "etc/systemd/system.conf.d/imacpro.conf"
SYSTEMD_SETTINGS = """\
# imacpro: a busy host makes a boot slow; wait for devices and services (docs/DEBIAN.md)
[Manager]
DefaultTimeoutStartSec=10min
DefaultDeviceTimeoutSec=10min
"""
# Run by the kernel packages after an install or upgrade (after initramfs-tools' own hook
# has made the initrd: run-parts goes in name order) and by update-initramfs after it writes
# an initrd. /vmlinuz and /initrd.img are linux-base's links to the newest kernel.
ESP_HOOKS = ("etc/kernel/postinst.d/zz-imacpro-esp", "etc/initramfs/post-update.d/imacpro-esp")
# initramfs-tools(5): MODULES=dep puts in the initrds the system makes (kernel upgrades,
# update-initramfs) the modules this machine's hardware needs instead of Debian's "most": its
# hardware never changes, and in the machine "most" takes 8 minutes to build and is 37 MB
# against 2 minutes and 8 MB. (The installed initrd is mmdebstrap's, "most": it was built in
# a chroot on the host, where "dep" would describe the host.)
# systemd-networkd brings the 10GbE port up with DHCP as soon as udev names it enp4s0
# (predictable naming: the AQC107 at 04:00.0), and systemd-resolved takes the lease's DNS
# servers. Not ifupdown (in Debian's "important" set, left unconfigured): on a busy host its
# two paths both failed in our boots, the `allow-hotplug` one (udev starting ifup@enp4s0:
# exit status 1) and the `auto` one (networking.service after a `udevadm settle` that gives
# up after 120 s, while udev waits out applesmc's minute-long probe of the legacy SMC ports).
NETWORK_FILE = "etc/systemd/network/20-imacpro-10gbe.network"
NETWORK_TEXT = """\
# imacpro: the iMac Pro's 10 Gigabit Ethernet (Aquantia AQC107, atlantic)
[Match]
Name=enp4s0

[Network]
DHCP=ipv4
"""
# What `systemctl enable systemd-networkd` links (its [Install] section and Also=).
NETWORKD_LINKS = {
    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service":
        "/lib/systemd/system/systemd-networkd.service",
    "etc/systemd/system/sockets.target.wants/systemd-networkd.socket":
        "/lib/systemd/system/systemd-networkd.socket",
    "etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service":
        "/lib/systemd/system/systemd-networkd-wait-online.service",
    "etc/systemd/system/dbus-org.freedesktop.network1.service":
        "/lib/systemd/system/systemd-networkd.service",
}
# Debian's applesmc is loaded by its DMI match ("iMac") and probes the legacy SMC ports,
# where the iMac Pro has no SMC: the T2 keeps it (ACPI APP0001, which the stock kernel has no
# driver for). Its probe fails after a minute, as on real T2 Macs, once at boot and again when
# udev replays the event; a udev worker stuck in it holds up shutdown until systemd kills it.
# A module that cannot work on this machine is not loaded (docs/DEBIAN.md).
MODPROBE_CONF = "etc/modprobe.d/imacpro.conf"
MODPROBE_SETTINGS = """\
# imacpro: the iMac Pro's SMC is behind the T2, not on the ports applesmc probes (docs/DEBIAN.md)
blacklist applesmc
"""
# apt fetches through the host's package cache (net/package_cache.py) when its proxy answers
# at the gateway's port 3142, and straight from Debian's archive when not (apt runs the script
# for each host it fetches from: it prints the proxy or DIRECT).
APT_PROXY_CONF = "etc/apt/apt.conf.d/30imacpro-package-cache"
APT_PROXY_SETTINGS = """\
// imacpro: the host's package cache, when it answers (imacpro's docs/DEBIAN.md)
Acquire::http::Proxy-Auto-Detect "/usr/lib/imacpro/apt-proxy";
"""
APT_PROXY_SCRIPT = "usr/lib/imacpro/apt-proxy"
# 10.0.2.2 is net/passt.py's GATEWAY, 3142 net/package_cache.py's PORT and the hosts its
# UPSTREAMS (written out: this module imports nothing of imacpro's).
APT_PROXY_CHECK = """\
#!/bin/bash
# imacpro: apt's proxy for $1 (Proxy-Auto-Detect): for Debian's archive, the host's package
# cache at the gateway's port 3142 when something answers there; else none.
case "$1" in
    http://deb.debian.org|http://deb.debian.org/*|http://security.debian.org|http://security.debian.org/*)
        if timeout 3 bash -c 'exec 3<>/dev/tcp/10.0.2.2/3142' 2>/dev/null; then
            echo http://10.0.2.2:3142
            exit 0
        fi;;
esac
echo DIRECT
"""
INITRAMFS_CONF = "etc/initramfs-tools/conf.d/imacpro"
INITRAMFS_SETTINGS = """\
# imacpro: the modules this machine needs, not Debian's "most" (imacpro's docs/DEBIAN.md)
MODULES=dep
"""
ESP_HOOK = r"""#!/bin/sh
# imacpro: put the system's current kernel and initrd on the EFI System Partition, where the
# iMac Pro's T2 reads the boot image. The T2 checks them against the signed manifest there:
# under Full and Medium Security it refuses a changed kernel or initrd until the machine's
# owner approves it, on the host, with the machine off:  imacpro bless @NAME@
set -e
esp=/boot/efi/EFI/imacpro
if ! mountpoint -q /boot/efi || [ ! -d "$esp" ]; then
    echo "imacpro: $esp is not there: the EFI System Partition keeps its boot image" >&2
    exit 0
fi
kernel=$(readlink -f /vmlinuz) initrd=$(readlink -f /initrd.img)
[ -f "$kernel" ] && [ -f "$initrd" ] || exit 0
changed=
for pair in "$kernel vmlinuz" "$initrd initrd.img"; do
    set -- $pair
    if ! cmp -s "$1" "$esp/$2"; then
        cp "$1" "$esp/$2.new" && mv -f "$esp/$2.new" "$esp/$2"
        changed=1
    fi
done
[ -n "$changed" ] || exit 0
sync -f "$esp"
echo "imacpro: the boot image on the EFI System Partition is now $(basename "$kernel") with"      "$(basename "$initrd"). Under Full or Medium Security the T2 refuses to boot it until it"      "is approved on the host with: imacpro bless @NAME@" >&2
"""


def write(tree: Path, name: str, text: str, mode: int = 0o644) -> None:
    path = tree / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, 0, 0)
    os.chmod(path, mode)


def enable(tree: Path, link: str, unit: str) -> None:
    """What `systemctl enable` makes: `link` pointing at the unit file `unit`."""
    path = tree / link
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_symlink():
        path.symlink_to(unit)


def append_line(tree: Path, name: str, line: str) -> None:
    path = tree / name
    text = path.read_text()
    path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")


def add_member(tree: Path, name: str, group: str, user: str, field: int) -> bool:
    """Add `user` to `group`'s member list (field 3 in /etc/group, 3 in /etc/gshadow)."""
    path = tree / name
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == group and len(fields) > field:
            members = [m for m in fields[field].split(",") if m]
            if user not in members:
                fields[field] = ",".join(members + [user])
            lines[i] = ":".join(fields)
            path.write_text("\n".join(lines) + "\n")
            return True
    return False


def free_id(tree: Path) -> int:
    used = set()
    for name in ("etc/passwd", "etc/group"):
        for line in (tree / name).read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                used.add(int(fields[2]))
    uid = FIRST_UID
    while uid in used:
        uid += 1
    return uid


def add_user(tree: Path, user: str, password_hash: str | None, ssh_key: str | None) -> None:
    uid = free_id(tree)
    home = tree / "home" / user
    append_line(tree, "etc/passwd", f"{user}:x:{uid}:{uid}:{user}:/home/{user}:/bin/bash")
    days = int(time.time() // 86400)
    append_line(tree, "etc/shadow", f"{user}:{password_hash or '!'}:{days}:0:99999:7:::")
    append_line(tree, "etc/group", f"{user}:x:{uid}:")
    append_line(tree, "etc/gshadow", f"{user}:!::")
    for group in USER_GROUPS:
        if add_member(tree, "etc/group", group, user, 3):
            add_member(tree, "etc/gshadow", group, user, 3)
    shutil.copytree(tree / "etc/skel", home, symlinks=True)
    if ssh_key:
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh/authorized_keys").write_text(ssh_key.strip() + "\n")
    for path in [home, *home.rglob("*")]:
        os.lchown(path, uid, uid)
    os.chmod(home, 0o700)
    if ssh_key:
        os.chmod(home / ".ssh/authorized_keys", 0o600)


def new_host_keys(tree: Path) -> None:
    """sshd's host keys, this machine's own: the ones openssh-server made when the cached
    system was built would be every machine's built from it."""
    ssh = tree / "etc/ssh"
    if not ssh.is_dir():
        return
    for old in ssh.glob("ssh_host_*"):
        old.unlink()
    subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(tree)], check=True,
                   stdout=subprocess.DEVNULL)


def main(tree: Path, setup: dict) -> None:
    hostname = setup["hostname"]
    write(tree, "etc/hostname", hostname + "\n")
    write(tree, "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n"
          "::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\n"
          "ff02::2\t\tip6-allrouters\n")
    volume = setup["esp_volume_id"]
    write(tree, "etc/fstab", "# <file system> <mount point> <type> <options> <dump> <pass>\n"
          f"UUID={setup['root_uuid']}\t/\text4\terrors=remount-ro\t0\t1\n"
          f"UUID={volume >> 16:04X}-{volume & 0xFFFF:04X}\t/boot/efi\tvfat\t{ESP_OPTIONS}\t0\t1\n")
    (tree / "boot/efi").mkdir(parents=True, exist_ok=True)
    write(tree, INITRAMFS_CONF, INITRAMFS_SETTINGS)
    write(tree, MODPROBE_CONF, MODPROBE_SETTINGS)
    write(tree, APT_PROXY_CONF, APT_PROXY_SETTINGS)
    write(tree, APT_PROXY_SCRIPT, APT_PROXY_CHECK, 0o755)
    write(tree, SYSTEMD_CONF, SYSTEMD_SETTINGS)
    write(tree, NETWORK_FILE, NETWORK_TEXT)
    for link, unit in NETWORKD_LINKS.items():
        enable(tree, link, unit)
    for hook in ESP_HOOKS:
        write(tree, hook, ESP_HOOK.replace("@NAME@", hostname), 0o755)
    add_user(tree, setup["user"], setup["password_hash"], setup["ssh_key"])
    write(tree, f"etc/sudoers.d/imacpro-{setup['user']}",
          f"{setup['user']} ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440)
    new_host_keys(tree)
    enable(tree, SERIAL_GETTY, "/lib/systemd/system/serial-getty@.service")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m imacpro.guest.debian_setup TREE SETUP.json")
    main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
