"""Debian installed on the SSD: a whole system built on the host from Debian's own packages.

    tar = root_tar(release, packages, progress)       # cached in ~/.cache/imacpro/debian
    system = DebianSystem.read(tar)                    # its kernel and initrd, from /boot
    make_root(image, part, tar, Setup(...), progress)  # the root partition's ext4 image

How, and why with these tools:
- **mmdebstrap** builds the system (Debian's own bootstrapper; the packages' maintainer
  scripts run as on a real installation). Its tarball keeps every file's owner and the device
  nodes whatever the host user: in its unshare mode a user who is not root gets a user
  namespace where the files' owners are real. The tarball is the cache: its name is a hash
  of what it is made from (release, mirrors, package list, RECIPE), so a second machine
  installs without a build. The .debs it downloads are kept in ~/.cache/imacpro/debian/
  archives and handed back to the next build (mmdebstrap's sync-in/sync-out hooks), so a
  build with a warm cache downloads only the package lists, and a build for another package
  list only what it adds.
- **fakeroot** turns the tarball into the ext4 file system without root: inside one
  fakeroot session tar extracts it (owners and device nodes recorded by fakeroot), this
  machine's own files are written (`imacpro.guest.debian_setup`: hostname, fstab, the user,
  the serial console), and mke2fs -d copies the tree into the image as fakeroot shows it, so
  the image has root's files owned by root, setuid bits, and /dev's nodes.

The system: mmdebstrap's "important" variant (what a Debian installation has before tasks)
plus systemd, udev, D-Bus and logind's PAM module (what systemd recommends: without them
`systemctl` as a user and logind's seats do not work), the stock kernel (linux-image-amd64)
and initramfs-tools, whose initrd finds the root file system by UUID on the NVMe SSD,
systemd-resolved (the DNS servers the 10GbE port's DHCP lease gives systemd-networkd), sshd,
sudo and the tools that show the hardware (PACKAGES). apt's sources are Debian's mirrors for the release, its updates and
its security updates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from imacpro.disk import gpt
from imacpro.disk.block import SECTOR_SIZE
from imacpro.disk.tools import find, run
from imacpro.errors import UserError
from imacpro.guest.build import Progress, _locked, cache_dir, image_version

RELEASES = ("bookworm",)   # the releases whose kernel the boot image versions fit
DEFAULT_RELEASE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools",
            "openssh-server", "sudo", "dmidecode", "pciutils", "usbutils", "nvme-cli",
            "lm-sensors", "util-linux", "kmod", "procps", "less", "dbus", "libpam-systemd",
            "dosfstools", "systemd-resolved")
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
RECIPE = 1                 # bump when the build below changes what a tarball holds
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
KERNEL_IMAGE = re.compile(r"boot/vmlinuz-(\d[^/]*)")


def debian_dir() -> Path:
    return cache_dir() / "debian"


def sources(release: str) -> list[str]:
    return [f"deb {MIRROR} {release} main", f"deb {MIRROR} {release}-updates main",
            f"deb {SECURITY_MIRROR} {release}-security main"]


def packages_of(extra: str | None) -> tuple[str, ...]:
    """The package list: PACKAGES and the user's comma-separated extra ones, checked."""
    wanted = list(PACKAGES)
    for name in (extra or "").split(","):
        name = name.strip()
        if not name:
            continue
        if not PACKAGE_NAME.fullmatch(name):
            raise UserError(f"{name!r} is not a Debian package name")
        if name not in wanted:
            wanted.append(name)
    return tuple(wanted)


def tar_key(release: str, packages: tuple[str, ...]) -> str:
    what = json.dumps({"recipe": RECIPE, "release": release, "sources": sources(release),
                       "packages": sorted(packages)}, sort_keys=True)
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def root_tar(release: str, packages: tuple[str, ...], progress: Progress,
             rebuild: bool = False) -> Path:
    """The tarball of the system for `release` with `packages`: the cached one, else built."""
    if release not in RELEASES:
        raise UserError(f"Debian {release!r} cannot be installed: the releases imacpro "
                        f"installs are {', '.join(RELEASES)}")
    directory = debian_dir()
    path = directory / f"{release}-{tar_key(release, packages)}.tar"
    with _locked(directory):
        if path.exists() and not rebuild:
            progress(f"debian: using the system built before ({path.name}, "
                     f"{path.stat().st_size / 1e6:.0f} MB)")
            return path
        _mmdebstrap(release, packages, path, directory / "archives", progress)
    return path


def _mmdebstrap(release: str, packages: tuple[str, ...], path: Path, archives: Path,
                progress: Progress) -> None:
    if any(c.isspace() for c in str(archives)):
        raise UserError(f"the cache directory {archives.parent} has white space in its path, "
                        "which mmdebstrap's hooks cannot take: set IMACPRO_CACHE to another")
    archives.mkdir(parents=True, exist_ok=True)
    progress(f"debian: building {release} with {len(packages)} packages and what they need "
             f"(mmdebstrap; {len(list(archives.glob('*.deb')))} packages cached)")
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)      # what an interrupted build left
    # sync-in before the first package is fetched, sync-out before mmdebstrap's cleanup
    # removes the .debs; essential/unlink kept: the essential set's .debs would be gone.
    command = [find_mmdebstrap(), "--variant=important", "--components=main", "--format=tar",
               "--include=" + ",".join(packages), "--skip=essential/unlink",
               "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
               f"--setup-hook=sync-in {archives} /var/cache/apt/archives/",
               f"--customize-hook=sync-out /var/cache/apt/archives {archives}",
               "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
               release, str(partial), *sources(release)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, "LC_ALL": "C"}) as proc:
        last = []
        for line in proc.stderr:
            line = line.rstrip()
            if not line:
                continue
            last = (last + [line])[-5:]
            if line.startswith(("I: ", "W: ", "E: ")):
                progress("debian: " + line[3:])
        status = proc.wait()
    if status != 0:
        partial.unlink(missing_ok=True)
        raise UserError(f"mmdebstrap failed (exit status {status}): "
                        f"{last[-1] if last else 'no output'}")
    partial.rename(path)
    for deb in archives.glob("*.deb"):   # the archive only: partial downloads are gone
        if deb.stat().st_size == 0:
            deb.unlink()


def find_mmdebstrap() -> str:
    path = shutil.which("mmdebstrap")
    if path is None:
        raise UserError("mmdebstrap is not installed: imacpro builds Debian systems with it "
                        "(apt-get install mmdebstrap fakeroot)")
    return path


@dataclass(frozen=True)
class DebianSystem:
    """What the installer takes from a system's tarball for the boot image."""
    kernel: bytes
    initrd: bytes
    kernel_release: str        # "6.1.0-57-amd64"
    kernel_version: str        # the package version, "6.1.192-3"

    @property
    def image_version(self) -> int:
        return image_version(self.kernel_version)

    @classmethod
    def read(cls, tar_path: Path) -> DebianSystem:
        with tarfile.open(tar_path) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            releases = sorted((m.group(1) for name in members
                               if (m := KERNEL_IMAGE.fullmatch(name))), key=_version_key)
            if not releases:
                raise UserError(f"{tar_path.name} holds no kernel in /boot")
            release = releases[-1]
            kernel = _member(tar, members, f"boot/vmlinuz-{release}")
            initrd = _member(tar, members, f"boot/initrd.img-{release}")
            status = _member(tar, members, "var/lib/dpkg/status").decode()
        version = package_version(status, f"linux-image-{release}")
        return cls(kernel, initrd, release, version)


def _member(tar: tarfile.TarFile, members: dict, name: str) -> bytes:
    member = members.get(name)
    if member is None or not member.isfile():
        raise UserError(f"the system's tarball has no file /{name}")
    return tar.extractfile(member).read()


def _version_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", release)]


def package_version(dpkg_status: str, package: str) -> str:
    """The installed version of `package` in a dpkg status file."""
    for stanza in dpkg_status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if fields.get("Package") == package and "installed" in fields.get("Status", ""):
            return fields["Version"]
    raise UserError(f"package {package} is not installed in the system")


@dataclass(frozen=True)
class Setup:
    """What makes a built system this machine's (imacpro.guest.debian_setup writes it)."""
    hostname: str
    user: str
    password_hash: str | None   # crypt(3) SHA-512 hash; None: no password login
    ssh_key: str | None         # a line for ~/.ssh/authorized_keys
    root_uuid: str
    esp_volume_id: int          # the ESP's FAT volume ID: fstab's UUID=XXXX-XXXX for /boot/efi


def command_line(root_uuid: str) -> str:
    """The kernel command line of an installed system: its root by UUID, consoles on the
    screen and on COM1 (the last one named is /dev/console: the serial one, where systemd
    starts a getty of its own), `quiet` as Debian's installer sets it (GRUB's default), and
    amdgpu kept from loading. amdgpu cannot drive the emulated Vega (docs/DISPLAY.md) and
    udev would load it: checking its 13 MB module's signature, SHA-256 in the vector unit
    with preemption off, took one vCPU of sixteen on a shared host thread over a minute (a
    soft lockup). Without `quiet` every kernel message is drawn on the 5K screen's text
    console too, by a CPU holding the console with interrupts off (docs/DEBIAN.md)."""
    return (f"root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200 quiet "
            "modprobe.blacklist=amdgpu")


def make_root(image: Path, part: gpt.Partition, tar_path: Path, setup: Setup,
              progress: Progress) -> None:
    """The root partition's ext4 image: the tarball's system with `setup` applied."""
    from imacpro.disk.install import mke2fs_args
    fakeroot = shutil.which("fakeroot")
    if fakeroot is None:
        raise UserError("fakeroot is not installed: imacpro needs it to write a Debian system "
                        "without root (apt-get install fakeroot)")
    with tempfile.TemporaryDirectory(prefix=".imacpro-debian-", dir=image.parent) as tmp:
        tree, state = Path(tmp) / "root", Path(tmp) / "fakeroot.state"
        tree.mkdir()
        config = Path(tmp) / "setup.json"
        config.write_text(json.dumps(asdict(setup)))
        config.chmod(0o600)
        with open(image, "wb") as f:
            f.truncate(part.sectors * SECTOR_SIZE)
        progress("debian: unpacking the system and making it this machine's")
        _fakeroot(fakeroot, state, ["tar", "-xpf", str(tar_path), "-C", str(tree),
                                    "--numeric-owner"])
        _fakeroot(fakeroot, state, [sys.executable, "-m", "imacpro.guest.debian_setup",
                                    str(tree), str(config)])
        progress(f"debian: writing the root file system ({part.sectors * SECTOR_SIZE / 1e9:.1f}"
                 " GB, ext4)")
        _fakeroot(fakeroot, state, [find("mke2fs"), *mke2fs_args(setup.root_uuid, installed=True),
                                    "-d", str(tree), str(image)])
        run("e2fsck", "-f", "-n", str(image))   # what was written is a clean file system


def _fakeroot(fakeroot: str, state: Path, command: list[str]) -> None:
    args = [fakeroot, "-s", str(state)]
    if state.exists():
        args[1:1] = ["-i", str(state)]
    result = subprocess.run([*args, "--", *command], capture_output=True, text=True,
                            env={**os.environ, "LC_ALL": "C"})
    if result.returncode:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise UserError(f"{Path(command[0]).name} failed: "
                        f"{lines[-1] if lines else f'exit status {result.returncode}'}")


# --- one machine's installation --------------------------------------------------------------

LOGIN_FILE = "guest-login.toml"   # in the machine's bundle, 0600
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
RESERVED_USERS = ("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail",
                  "news", "uucp", "proxy", "www-data", "backup", "list", "irc", "nobody",
                  "systemd-network", "systemd-timesync", "messagebus", "sshd", "_apt")


@dataclass(frozen=True)
class Login:
    """How imacpro logs in on an installed system's serial console (boot --exec, exec):
    the user and the password given at installation (or made then, when only an SSH key was
    given: the console has no other way in)."""
    system: str
    user: str
    password: str


def check_user(user: str) -> str:
    if not USER_NAME.fullmatch(user) or user in RESERVED_USERS:
        raise UserError(f"{user!r} cannot be the user's name: lower-case letters, digits, "
                        "'_' and '-', starting with a letter, and not a system account")
    return user


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the {what} {path}: {exc}") from None


def read_password(path: Path) -> str:
    lines = _read_text(path, "password file").splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise UserError(f"the password file {path} is empty: its first line is the password")
    return password


def read_ssh_key(path: Path) -> str:
    key = _read_text(path, "SSH key").strip()
    if "\n" in key or not re.match(r"(ssh-|ecdsa-|sk-)", key):
        raise UserError(f"{path} is not an SSH public key (one line, like "
                        "'ssh-ed25519 AAAA… user@host'): give the .pub file")
    return key


def password_hash(password: str) -> str:
    """crypt(3) SHA-512, what Debian's chpasswd writes: made by OpenSSL, the password on
    its standard input (never on a command line)."""
    result = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                            capture_output=True, text=True)
    if result.returncode or not result.stdout.startswith("$6$"):
        raise UserError(f"openssl passwd failed: {result.stderr.strip() or 'no hash'}")
    return result.stdout.strip()


def save_login(bundle_path: Path, login: Login) -> None:
    from imacpro.files import write_toml
    write_toml(bundle_path / LOGIN_FILE, asdict(login))


def load_login(bundle_path: Path) -> Login | None:
    """The installed system's login, or None when the SSD holds the default guest."""
    from imacpro.files import read_toml
    path = bundle_path / LOGIN_FILE
    if not path.exists():
        return None
    data = read_toml(path)
    try:
        login = Login(**{k: data[k] for k in ("system", "user", "password")})
    except KeyError as exc:
        raise UserError(f"damaged machine bundle: {path} has no {exc.args[0]}") from None
    if not all(isinstance(v, str) for v in asdict(login).values()):
        raise UserError(f"damaged machine bundle: {path} has a value that is not a string")
    return login


def forget_login(bundle_path: Path) -> None:
    (bundle_path / LOGIN_FILE).unlink(missing_ok=True)
