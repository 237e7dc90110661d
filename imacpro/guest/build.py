"""The default guest: Debian bookworm's stock kernel and busybox, with an initramfs of our own.

    imacpro guest fetch          build it (downloads ~72 MB from Debian's archive once)
    imacpro boot NAME            boots it when no --kernel is given

Where (the cache; nothing here is precious, delete it at will):

    $IMACPRO_CACHE                   (default: $XDG_CACHE_HOME/imacpro, ~/.cache/imacpro)
      guest/
        vmlinuz        the kernel: /boot/vmlinuz-<release> of linux-image-<release>
        initrd.img     the initramfs: newc cpio, gzip-compressed, built here (see below)
        cmdline        the default kernel command line (one line of text)
        boot.manifest  the boot image signed by this installation's signing server
        guest.toml     what was built: package versions, sizes and SHA-384 of the files above
        downloads/     the .deb files, kept (checked against the archive's SHA-256) for rebuilds

The packages come with `apt-get download` (no root, nothing installed on the host) through the
host's apt configuration, so the host must be Debian bookworm (as the project's machines are):
`linux-image-amd64` is a metapackage whose dependency names the real kernel package
(linux-image-6.1.0-NN-amd64), `busybox-static` brings a static /bin/busybox and
`e2fsck-static` a static e2fsck (busybox makes ext2 file systems but cannot check them). They are
unpacked with `dpkg-deb -x` into a temporary directory under the cache. If apt has no package
lists (or stale ones: a download fails), `apt-get update` is run once when we are root.

The initramfs (built in Python, `make_initramfs`):
    /init                  the shell script from `init_script()`, run by the kernel as PID 1
    /bin/busybox, /bin/sh  busybox and the link that lets /init start; every other applet is
                           linked by `busybox --install -s` at boot
    /sbin/e2fsck           e2fsck.static, also as fsck.ext2, fsck.ext3 and fsck.ext4
    /etc/inittab           busybox init's table: acpid, the console script once, unmount at
                           shutdown
    /etc/acpi/PWRF/00000080  what busybox acpid runs when the power button is pressed
                           (`imacpro stop`): poweroff, a clean shutdown
    /etc/imacpro/console   the script from `console_script()`
    /etc/imacpro/network   brings up the 10GbE port (eth0) and runs busybox udhcpc on it,
    /etc/udhcpc/default.script  which sets the lease's address, route and resolver
    /lib/modules/*.ko      the NVMe driver (nvme.ko), atlantic (the 10GbE port), the USB and
                           input drivers, and the modules they need, in the order
                           /init loads them with insmod (Debian's 6.1 modules are plain .ko;
                           .ko.xz and .ko.gz would be decompressed here)
    /dev/console, /dev /proc /sys /tmp /root /etc (passwd, group, profile), /usr/{bin,sbin}, /sbin

/init mounts proc, sysfs and devtmpfs, installs the applets, loads the modules with the options
the kernel command line gives them (`module.option=value`, as modprobe would; a failure is
reported and boot goes on) and becomes busybox init (`exec busybox init`), so that `poweroff`
and `reboot` in the guest work as on any Linux system: they signal PID 1, which stops the
processes, unmounts, and asks the kernel to power off (ACPI S5) or restart. Init runs the
console script once; it prints the ready marker line `IMACPRO-READY`, then:
  - with `imacpro.exec=<base64>` on the kernel command line (standard base64 alphabet, as
    Python's base64.b64encode writes it; `exec_option()` makes the option), decodes the
    command with busybox `base64 -d`, prints `IMACPRO-BEGIN`, runs it with `sh -c` (its stdin
    is the console), prints `IMACPRO-EXIT=<status>` and powers off (`poweroff -f`). The kernel
    command line holds at most 2048 bytes on x86, so the command is limited to about 1.4 KB.
  - otherwise, an interactive shell on the console (`setsid cttyhack sh`: a controlling
    terminal, so job control and Ctrl-C work); leaving it powers the machine off.

The default command line, `DEFAULT_CMDLINE`, is
"console=tty0 console=ttyS0,115200 panic=-1 quiet loglevel=4 hid_apple.fnmode=2": the kernel's messages on the
screen (tty1, on the boot framebuffer) and on COM1 (the machine's serial port), which is also
/dev/console (the last named), where the shell runs; reboot at once on a panic (the T2 checks
the image again and a scripted run ends instead of hanging), and only warnings and worse from
the kernel so a session's output is the guest's own; and Apple's keyboard's F1-F12 as
function keys, its media keys with Fn held (`hid_apple.fnmode=2`, the choice most Linux
users of Apple keyboards make; Linux's default for them is the other way round, as macOS's).
The boot command appends its own options.

Busybox init also keeps a login shell on tty1, the screen, for a person at the keyboard
(respawned when it exits).

The manifest's version (anti-rollback) comes from the kernel package version, `image_version()`:
"6.1.192-2" → 61192002, i.e. ((major × 10 + minor) × 1000 + patch) × 1000 + Debian revision,
so every later bookworm kernel has a larger number (it needs minor < 10, patch and revision
< 1000: true of every 6.1 kernel; anything else is refused).

Every file is written atomically; guest.toml, written last, is what says a guest is complete:
`load()` accepts the directory only if each file is present with the size and SHA-384 that
guest.toml records and the manifest describes those files. Two builds at once wait on a lock.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import hashlib
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from imacpro.errors import UserError
from imacpro.files import atomic_write
from imacpro.guest.cpio import CpioWriter
from imacpro.t2.signing import Manifest, fingerprint, load_public_key, sha384, verify

KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
E2FSCK_PACKAGE = "e2fsck-static"  # busybox has mke2fs but no checker
KERNEL_PACKAGE = re.compile(r"linux-image-(\d[^\s]*-amd64)")   # group 1: the kernel release
# Loaded at boot, with what they depend on (from .modinfo): the SSD's driver, and ext4 (which
# mounts ext2 too) with the crc32c it asks the crypto API for (a soft dependency, so named);
# the ACPI power button and evdev, whose /dev/input event busybox acpid turns into a poweroff;
# USB: the xHCI's driver, HID with Apple's keyboard and mouse/trackpad drivers, USB storage.
# The 10GbE port's driver, atlantic. The platform drivers udev loads by the CPU's model: the
# memory controllers' EDAC (skx_edac) and the uncore's performance monitoring (intel_uncore).
MODULES = ("nvme", "crc32c_generic", "ext4", "button", "evdev", "xhci_pci", "usbhid",
           "hid_generic", "hid_apple", "hid_magicmouse", "usb_storage", "sd_mod", "atlantic",
           "skx_edac", "intel_uncore", "ioatdma", "mei_me", "intel_lpss_pci", "i2c_i801")
DEFAULT_CMDLINE = "console=tty0 console=ttyS0,115200 panic=-1 quiet loglevel=4 " \
                  "hid_apple.fnmode=2"
READY_MARKER = "IMACPRO-READY"   # imacpro/console.py waits for it
EXEC_OPTION = "imacpro.exec"
CONSOLE_SCRIPT = "/etc/imacpro/console"
GUEST_FORMAT = 1

KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
CMDLINE_FILE = "cmdline"
MANIFEST_FILE = "boot.manifest"
GUEST_FILE = "guest.toml"
DOWNLOADS_DIR = "downloads"
HASHED_FILES = (KERNEL_FILE, INITRD_FILE, CMDLINE_FILE)

Progress = Callable[[str], None]


def print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Guest:
    """A built guest. `kernel_version` is the kernel release (`uname -r`, "6.1.0-56-amd64");
    `package_version` its Debian package version ("6.1.192-2"); `version` the manifest's."""

    directory: Path
    kernel: Path
    initrd: Path
    cmdline: str
    manifest: Path
    kernel_version: str
    package_version: str = ""
    version: int = 0


def cache_dir() -> Path:
    """imacpro's cache: $IMACPRO_CACHE, else $XDG_CACHE_HOME/imacpro (~/.cache/imacpro)."""
    if os.environ.get("IMACPRO_CACHE"):
        return Path(os.environ["IMACPRO_CACHE"])
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache_home) / "imacpro"


def guest_dir() -> Path:
    return cache_dir() / "guest"


# --- what goes into the initramfs -------------------------------------------------------------

def image_version(package_version: str) -> int:
    """The manifest version of a kernel package version: "6.1.192-2" → 61192002."""
    m = re.fullmatch(r"(?:\d+:)?(\d+)\.(\d+)\.(\d+)-(\d+)\D?.*", package_version)
    if not m:
        raise UserError(f"cannot make a boot image version of kernel package version "
                        f"{package_version!r} (expected like 6.1.192-2)")
    major, minor, patch, revision = map(int, m.groups())
    if minor >= 10 or patch >= 1000 or revision >= 1000:
        raise UserError(f"kernel package version {package_version!r} does not fit the boot "
                        "image version scheme (a bookworm 6.1 kernel is expected)")
    return ((major * 10 + minor) * 1000 + patch) * 1000 + revision


def exec_option(command: str) -> str:
    """The kernel command line option that makes /init run `command` and power off."""
    return f"{EXEC_OPTION}={base64.b64encode(command.encode()).decode()}"


# The part of /init that finds and decodes the command; tests run it on the host.
EXEC_FUNCTION = r"""
# exec_command CMDLINE: print the command given as imacpro.exec=<base64> in CMDLINE (the
# kernel command line), decoded; fail if there is none.
exec_command() {
    set -f
    for arg in $1; do
        case "$arg" in
            imacpro.exec=*) set +f; printf '%s\n' "${arg#imacpro.exec=}" | base64 -d; return ;;
        esac
    done
    set +f
    return 1
}
"""


def init_script(modules: list[str]) -> str:
    """/init: the guest's PID 1 until it hands over to busybox init (see the module docstring).
    `modules`: names, in load order."""
    return f"""#!/bin/sh
# /init of imacpro's default guest (written by imacpro/guest/build.py), run by the kernel as
# PID 1: prepare the system, then become busybox init, which runs {CONSOLE_SCRIPT} on the
# console and carries out poweroff and reboot.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=vt100
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname imacpro
# A module's options from the kernel command line (module.option=value), as modprobe
# passes them; insmod does not look.
options() {{
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1".*=*) echo "${{word#$1.}}";; esac
    done
}}
for module in {' '.join(modules)}; do
    insmod /lib/modules/$module.ko $(options "$(echo $module | tr - _)") 2>/dev/null ||
        echo "init: could not load $module"
done
exec /bin/busybox init
"""


def console_script() -> str:
    """What busybox init runs once on the console: the ready marker, then the command given on
    the kernel command line or an interactive shell; either way the machine powers off after."""
    return f"""#!/bin/sh
{EXEC_FUNCTION}
echo {READY_MARKER}
if command=$(exec_command "$(cat /proc/cmdline)"); then
    echo IMACPRO-BEGIN
    sh -c "$command"
    echo "IMACPRO-EXIT=$?"
    poweroff -f
else
    # A shell in a session of its own with the console as its controlling terminal.
    setsid cttyhack sh -l
    poweroff
fi
"""


# The 10GbE port (eth0: no udev here to name it enp4s0) is brought up; once it has a carrier
# (a backend is plugged in), busybox udhcpc asks for an address, waiting for it at most about
# 5 s before going on in the background (-b), so that --exec commands find the network
# ready. With no carrier after 2 s (--network none, or a machine with no backend) udhcpc
# asks in the background from the start: the boot does not wait out its 5 s for a cable
# that is not there. The DHCP script sets the address, the default route and the resolver
# from the lease.
NETWORK_SCRIPT = "/etc/imacpro/network"
NETWORK = """#!/bin/sh
[ -e /sys/class/net/eth0 ] || exit 0
ip link set eth0 up
n=0
while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $n -lt 20 ]; do
    sleep 0.1; n=$((n + 1))
done
dhcp="udhcpc -i eth0 -b -q -t 5 -T 1 -A 3 -s /etc/udhcpc/default.script"
if [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; then
    exec $dhcp >/tmp/udhcpc.log 2>&1
fi
$dhcp >/tmp/udhcpc.log 2>&1 </dev/null &
"""
DHCP_SCRIPT = "/etc/udhcpc/default.script"
DHCP = """#!/bin/sh
# busybox udhcpc's hook: $1 is the event; $interface, $ip, $subnet, $router, $dns, $mtu its lease.
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" ${mtu:+mtu $mtu}
    while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
    for gateway in $router; do route add default gw "$gateway" dev "$interface"; break; done
    : > /etc/resolv.conf
    for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
    ;;
esac
exit 0
"""

# busybox init's table (busybox's examples/inittab): the console script once, and on poweroff
# or reboot (`poweroff`, `reboot`: signals to PID 1) unmount, or at least make read-only, what
# the guest mounted, before the kernel's power-off or restart (the initramfs root and devtmpfs
# cannot be unmounted: their complaints go nowhere).
INITTAB = f"""::sysinit:/bin/busybox acpid -l /tmp/acpid.log
::sysinit:{NETWORK_SCRIPT}
::once:{CONSOLE_SCRIPT}
tty1::respawn:-/bin/sh
::shutdown:/bin/umount -a -r 2>/dev/null
"""
# busybox acpid maps the power button's KEY_POWER event to the action PWRF/00000080 and runs
# /etc/acpi/PWRF/00000080: a clean shutdown through init, as a desktop's power button does.
POWER_BUTTON_ACTION = "etc/acpi/PWRF/00000080"
POWER_BUTTON_SCRIPT = "#!/bin/sh\nexec /bin/busybox poweroff\n"
SCRIPTS = {POWER_BUTTON_ACTION: POWER_BUTTON_SCRIPT, NETWORK_SCRIPT.lstrip("/"): NETWORK,
           DHCP_SCRIPT.lstrip("/"): DHCP}

ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/hostname": "imacpro\n",
    "etc/inittab": INITTAB,
    # An interactive shell ignores SIGTERM; this one ends when init stops every process for a
    # poweroff or reboot, like a login shell whose terminal goes away.
    "etc/profile": "export PS1='\\u@\\h:\\w\\$ '\n"
                   "trap 'exit 143' TERM\n"
                   "echo \"imacpro default guest: Linux $(uname -r), busybox.\"\n"
                   "[ \"$(tty)\" = /dev/tty1 ] || "
                   "echo 'Leave the shell (exit or Ctrl-D) to power off.'\n",
}


def recipe() -> str:
    """A digest of how this code builds the guest: a cached guest built by other code (another
    /init, other modules or command line) is rebuilt, from the downloaded packages."""
    parts = [init_script(["MODULES"]), console_script(), repr(sorted(ETC_FILES.items())),
             repr(sorted(SCRIPTS.items())),
             repr(MODULES), DEFAULT_CMDLINE, str(GUEST_FORMAT), E2FSCK_PACKAGE]
    return sha384("\0".join(parts).encode())


def make_initramfs(busybox: bytes, modules: dict[str, bytes], init_script: str,
                   e2fsck: bytes | None = None) -> bytes:
    """The gzip-compressed newc initramfs. `modules`: name ("nvme-core") → .ko bytes,
    stored as /lib/modules/<name>.ko. Same input, same bytes (timestamps are 0)."""
    cpio = CpioWriter()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root",
              "etc", "etc/imacpro", "etc/acpi", "etc/acpi/PWRF", "etc/udhcpc", "lib/modules"):
        cpio.directory(d, 0o1777 if d == "tmp" else 0o700 if d == "root" else 0o755)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.symlink("bin/sh", "busybox")
    if e2fsck is not None:
        cpio.file("sbin/e2fsck", e2fsck, 0o755)
        for name in ("fsck.ext2", "fsck.ext3", "fsck.ext4"):
            cpio.symlink(f"sbin/{name}", "e2fsck")
    for name, ko in modules.items():
        cpio.file(f"lib/modules/{name}.ko", ko)
    for path, text in ETC_FILES.items():
        cpio.file(path, text.encode())
    for path, text in SCRIPTS.items():
        cpio.file(path, text.encode(), 0o755)
    cpio.file("init", init_script.encode(), 0o755)
    cpio.file(CONSOLE_SCRIPT.lstrip("/"), console_script().encode(), 0o755)
    return gzip.compress(cpio.finish(), compresslevel=9, mtime=0)


# --- kernel modules ---------------------------------------------------------------------------

def modinfo(ko: bytes) -> dict[str, str]:
    """The key=value strings of a module's .modinfo ELF section (name, depends, vermagic…)."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2 or ko[5] != 1:
        raise ValueError("not a little-endian ELF64 module")
    shoff, = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    _, strtab, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if ko[strtab + name:ko.index(b"\0", strtab + name)] == b".modinfo":
            info = {}
            for item in ko[offset:offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
            return info
    raise ValueError("no .modinfo section")


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    return data


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0]


def collect_modules(modules_root: Path, wanted: tuple[str, ...] = MODULES) -> dict[str, bytes]:
    """`wanted` and every module they depend on (their modinfo `depends=`), decompressed,
    in an order insmod can follow (dependencies first). Built-in ones are skipped."""
    index: dict[str, Path] = {}
    for path in (modules_root / "kernel").rglob("*.ko*"):
        if re.search(r"\.ko(\.xz|\.gz)?$", path.name):
            index[_module_name(path).replace("-", "_")] = path
    builtin = set()
    with contextlib.suppress(OSError):
        builtin = {_module_name(Path(line)).replace("-", "_")
                   for line in (modules_root / "modules.builtin").read_text().split()}
    ordered: dict[str, bytes] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in chain:
            raise UserError(f"kernel modules depend on each other in a cycle: {chain}")
        path = index.get(key)
        if path is None:
            if key in builtin:
                return
            raise UserError(f"the kernel package has no module {name!r} ({modules_root})")
        if _module_name(path) in ordered:
            return
        ko = _read_module(path)
        for dep in filter(None, modinfo(ko).get("depends", "").split(",")):
            visit(dep, chain + (key,))
        ordered[_module_name(path)] = ko

    for name in wanted:
        visit(name, ())
    return ordered


# --- Debian packages --------------------------------------------------------------------------

def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False,
                              env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise UserError(f"'{args[0]}' is not available: the default guest is fetched from "
                        "Debian's archive with apt (a Debian bookworm host); give the boot "
                        "command a kernel of your own instead") from None


def _last_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or [f"exit status {result.returncode}"])[-1]


class _Apt:
    """apt-cache and apt-get download, with one `apt-get update` when lists are missing."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.updated = False

    def update(self, why: str) -> bool:
        if self.updated:
            return False
        if os.geteuid() != 0:
            raise UserError(f"{why}; run 'apt-get update' as root, then try again")
        self.progress(f"guest: {why}: updating the package lists (apt-get update)")
        result = _run(["apt-get", "update"])
        if result.returncode != 0:
            raise UserError(f"apt-get update failed: {_last_error(result)}")
        self.updated = True
        return True

    def show(self, package: str) -> dict[str, str]:
        """The candidate version's fields (Version, Depends, SHA256, Size…)."""
        while True:
            result = _run(["apt-cache", "show", "--no-all-versions", package])
            if result.returncode == 0 and result.stdout.strip():
                return _stanza(result.stdout)
            if not self.update(f"apt knows no package {package} ({_last_error(result)})"):
                raise UserError(f"apt knows no package {package}: {_last_error(result)} "
                                "(is this host's apt set up for Debian bookworm?)")

    def download(self, package: str, fields: dict[str, str], directory: Path) -> Path:
        """The package's .deb in `directory`: reused if its SHA-256 is the archive's."""
        version, arch, sha256 = fields["Version"], fields.get("Architecture", "amd64"), \
            fields.get("SHA256", "")
        path = directory / f"{package}_{version.replace(':', '%3a')}_{arch}.deb"
        size = f"{int(fields.get('Size', 0)) / 1e6:.1f} MB"
        if path.exists() and _sha256(path) == sha256:
            self.progress(f"guest: using the downloaded {package} {version} ({size})")
            return path
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob(f"{package}_*.deb"):
            old.unlink()
        self.progress(f"guest: downloading {package} {version} ({size}) from Debian's archive")
        args = ["apt-get", "download", f"{package}={version}"]
        if os.geteuid() == 0:   # apt's _apt user could not write here; it would warn
            args[1:1] = ["-o", "APT::Sandbox::User=root"]
        while True:
            result = _run(args, cwd=directory)
            if result.returncode == 0:
                break
            if not self.update(f"downloading {package} failed ({_last_error(result)})"):
                raise UserError(f"cannot download {package} {version}: {_last_error(result)}")
        if not path.exists():
            raise UserError(f"apt-get download of {package} did not write {path}")
        if sha256 and _sha256(path) != sha256:
            path.unlink()
            raise UserError(f"the downloaded {path.name} does not have the archive's SHA-256")
        return path


def _stanza(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.split("\n\n")[0].splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kernel_package(metapackage_fields: dict[str, str]) -> str:
    """The real kernel package a metapackage's Depends names (linux-image-6.1.0-NN-amd64)."""
    for alternatives in metapackage_fields.get("Depends", "").split(","):
        for dependency in alternatives.split("|"):
            name = dependency.strip().split(" ")[0]
            if KERNEL_PACKAGE.fullmatch(name):
                return name
    raise UserError(f"{KERNEL_METAPACKAGE} depends on no kernel image package "
                    f"(Depends: {metapackage_fields.get('Depends', '')!r})")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _unpack(deb: Path, into: Path) -> None:
    result = _run(["dpkg-deb", "-x", str(deb), str(into)])
    if result.returncode != 0:
        raise UserError(f"cannot unpack {deb}: {_last_error(result)}")


# --- build and load ---------------------------------------------------------------------------

def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@contextlib.contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(force: bool = False, progress: Progress = print_to_stderr) -> Guest:
    """Build the default guest in the cache (network: Debian's archive), or return the one
    there. A guest already built and intact is kept unless `force`; its manifest is signed
    again (no download) if another installation's key signed it (caches are per user,
    signing keys per $IMACPRO_HOME). With `force`, packages already downloaded are reused
    when their SHA-256 is still the archive's (a newer kernel in the archive is fetched)."""
    from imacpro.bundle import signing_server
    directory = guest_dir()
    with _locked(directory):
        server = signing_server()
        existing = None if force else load()
        if existing is not None:
            ensure_signed(existing, progress)
            return existing
        return _build(directory, server, progress)


def manifest_path() -> Path:
    """The guest's signed manifest belongs to the installation ($IMACPRO_HOME), not to the
    cache: several installations share one user's cache, each signing with its own key."""
    from imacpro.bundle import home
    return home() / "guest" / MANIFEST_FILE


def ensure_signed(guest: Guest, progress: Progress = print_to_stderr) -> Path:
    """This installation's manifest for the cached guest, signed now if missing or stale
    (no download: the files are in the cache)."""
    from imacpro.bundle import signing_server
    server = signing_server()
    kernel, initrd = guest.kernel.read_bytes(), guest.initrd.read_bytes()
    try:
        manifest = Manifest.load(guest.manifest)
        current = (manifest.signer == server.fingerprint
                   and verify(server.public_key, manifest.signature, manifest.payload())
                   and (manifest.kernel_sha384, manifest.initrd_sha384, manifest.cmdline_sha384,
                        manifest.version) == (sha384(kernel), sha384(initrd),
                                              sha384(guest.cmdline.encode()), guest.version))
    except (OSError, UserError):
        current = False
    if not current:
        progress(f"guest: signing the boot image with this installation's platform key "
                 f"{server.fingerprint[:16]}…")
        _sign(server, kernel, initrd, guest.cmdline, guest.version, guest.manifest)
    return guest.manifest


def _sign(server, kernel: bytes, initrd: bytes, cmdline: str, version: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    server.sign(kernel, initrd, cmdline, version).save(path)


def _build(directory: Path, server, progress: Progress) -> Guest:
    with contextlib.suppress(FileNotFoundError):
        (directory / GUEST_FILE).unlink()     # from here until the end, the guest is incomplete
    apt = _Apt(progress)
    meta = apt.show(KERNEL_METAPACKAGE)
    kernel_pkg = kernel_package(meta)
    kernel_fields = apt.show(kernel_pkg)
    busybox_fields = apt.show(BUSYBOX_PACKAGE)
    e2fsck_fields = apt.show(E2FSCK_PACKAGE)
    release = KERNEL_PACKAGE.fullmatch(kernel_pkg).group(1)
    version = image_version(kernel_fields["Version"])
    progress(f"guest: {KERNEL_METAPACKAGE} {meta['Version']} is {kernel_pkg} "
             f"{kernel_fields['Version']}")
    downloads = directory / DOWNLOADS_DIR
    kernel_deb = apt.download(kernel_pkg, kernel_fields, downloads)
    busybox_deb = apt.download(BUSYBOX_PACKAGE, busybox_fields, downloads)
    e2fsck_deb = apt.download(E2FSCK_PACKAGE, e2fsck_fields, downloads)

    work = Path(tempfile.mkdtemp(prefix=".unpack.", dir=directory))
    try:
        progress(f"guest: unpacking {kernel_deb.name}, {busybox_deb.name} and "
                 f"{e2fsck_deb.name}")
        _unpack(kernel_deb, work / "kernel")
        _unpack(busybox_deb, work / "busybox")
        _unpack(e2fsck_deb, work / "e2fsck")
        vmlinuz = work / "kernel" / "boot" / f"vmlinuz-{release}"
        busybox_path = work / "busybox" / "bin" / "busybox"
        e2fsck_path = work / "e2fsck" / "sbin" / "e2fsck.static"
        for path in (vmlinuz, busybox_path, e2fsck_path):
            if not path.is_file():
                raise UserError(f"the package has no {path.relative_to(work)}")
        kernel = vmlinuz.read_bytes()
        if kernel[0x202:0x206] != b"HdrS":
            raise UserError(f"{vmlinuz.name} is not a bzImage (no HdrS signature at 0x202)")
        busybox = busybox_path.read_bytes()
        e2fsck = e2fsck_path.read_bytes()
        modules = collect_modules(work / "kernel" / "lib" / "modules" / release)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    initrd = make_initramfs(busybox, modules, init_script(list(modules)), e2fsck)
    cmdline = DEFAULT_CMDLINE
    progress(f"guest: kernel {release}: {_mb(len(kernel))}; initramfs: busybox "
             f"{_mb(len(busybox))}, modules {', '.join(modules)}: {_mb(len(initrd))} compressed")
    contents = {KERNEL_FILE: kernel, INITRD_FILE: initrd, CMDLINE_FILE: (cmdline + "\n").encode()}
    for name, data in contents.items():
        atomic_write(directory / name, data)
    _sign(server, kernel, initrd, cmdline, version, manifest_path())
    progress(f"guest: signed boot image version {version} with platform key "
             f"{server.fingerprint[:16]}…")
    record = {
        "format": GUEST_FORMAT,
        "recipe": recipe(),
        "built": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel_release": release,
        "version": version,
        "cmdline": cmdline,
        "modules": list(modules),
        "packages": {
            KERNEL_METAPACKAGE: {"version": meta["Version"]},
            kernel_pkg: {"version": kernel_fields["Version"],
                         "sha256": kernel_fields.get("SHA256", "")},
            BUSYBOX_PACKAGE: {"version": busybox_fields["Version"],
                              "sha256": busybox_fields.get("SHA256", "")},
            E2FSCK_PACKAGE: {"version": e2fsck_fields["Version"],
                             "sha256": e2fsck_fields.get("SHA256", "")},
        },
        "files": {name: {"size": len(data), "sha384": sha384(data)}
                  for name, data in contents.items()},
    }
    atomic_write(directory / GUEST_FILE, tomli_w.dumps(record).encode())
    for old in downloads.glob("*.deb"):
        if old not in (kernel_deb, busybox_deb, e2fsck_deb):
            old.unlink()
    guest = load()
    if guest is None:
        raise UserError(f"the guest just built in {directory} does not check out")
    progress(f"guest: built in {directory}")
    return guest


def record() -> dict | None:
    """guest.toml of the cached guest, or None if there is none that can be read."""
    try:
        with open(guest_dir() / GUEST_FILE, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None


def load() -> Guest | None:
    """The cached guest if it is built and intact: every file present, with the size and
    SHA-384 guest.toml records, and a manifest that describes them. Whose key signed the
    manifest is not checked here (see `build`)."""
    directory = guest_dir()
    info = record()
    try:
        if info is None or info.get("format") != GUEST_FORMAT or info.get("recipe") != recipe():
            return None
        digests = {}
        for name in HASHED_FILES:
            expected = info["files"][name]
            data = (directory / name).read_bytes()
            if len(data) != expected["size"] or sha384(data) != expected["sha384"]:
                return None
            digests[name] = expected["sha384"]
        cmdline = (directory / CMDLINE_FILE).read_text().rstrip("\n")
        release = info["kernel_release"]
        package_version = info["packages"][f"linux-image-{release}"]["version"]
    except (OSError, KeyError, TypeError, UnicodeDecodeError, UserError):
        return None
    return Guest(directory=directory, kernel=directory / KERNEL_FILE,
                 initrd=directory / INITRD_FILE, cmdline=cmdline,
                 manifest=manifest_path(), kernel_version=release,
                 package_version=package_version, version=info["version"])


def _ours(manifest: Manifest) -> bool:
    """Whether this installation's platform key signed the manifest (no key: False)."""
    from imacpro.bundle import KEYS_DIR, home
    from imacpro.t2.signing import PUBLIC_KEY_FILE
    try:
        key = load_public_key((home() / KEYS_DIR / PUBLIC_KEY_FILE).read_bytes())
    except (OSError, UserError):
        return False
    return fingerprint(key) == manifest.signer and \
        verify(key, manifest.signature, manifest.payload())


def report() -> dict:
    """What `imacpro guest info` shows: the cached guest, or that there is none."""
    directory = guest_dir()
    guest = load()
    if guest is None:
        return {"built": False, "directory": str(directory)}
    info = record() or {}
    try:
        manifest = Manifest.load(guest.manifest)
    except UserError:
        manifest = None    # signed for this installation at its first boot
    return {
        "built": True,
        "directory": str(directory),
        "kernel": str(guest.kernel),
        "initrd": str(guest.initrd),
        "manifest": str(guest.manifest),
        "kernel_release": guest.kernel_version,
        "kernel_package_version": guest.package_version,
        "version": guest.version,
        "cmdline": guest.cmdline,
        "modules": info.get("modules", []),
        "packages": {name: p.get("version") for name, p in info.get("packages", {}).items()},
        "sizes": {name: f["size"] for name, f in info.get("files", {}).items()},
        "signer": manifest.signer if manifest else None,
        "signed_by_this_installation": bool(manifest) and _ours(manifest),
        "built_at": info.get("built"),
    }
