"""Debian installed on the SSD (`imacpro install --os debian`), booted through systemd, as a
user runs it: execs log in on the serial console with the installation's credentials.

The system is built once from Debian's archive by mmdebstrap (~2 minutes, ~130 MB of
packages) into the tests' cache and reused: later runs install it in ~30 s without the
network. A boot to multi-user.target takes 2 to 3 minutes on the 8-core machine.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imacpro import bundle
from imacpro.disk import gpt, tools
from imacpro.disk.block import SECTOR_SIZE, _data_extents
from imacpro.t2.storage import IMAGE_FILE
from imacpro.guest.kernel_warnings import WARNINGS_SH, unexpected, warnings_in
import real_imac_pro
from machines import imacpro, tests_cache  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.network, pytest.mark.longest]

PASSWORD = "correct horse battery"
# A guard against a hung machine, not a speed limit: on a loaded 2-core host each of this
# test's boot phases has taken from 10 to more than 25 minutes.
HANG_GUARD_S = 3600

SEES = "; ".join([
    "systemctl is-system-running --wait",
    "echo ==product; sudo dmidecode -s system-product-name",
    "echo ==lscpu; lscpu",
    "echo ==nvme; sudo nvme list",
    "echo ==lspci; lspci -nn",
    "echo ==free; free -g",
    "echo ==tty1; sudo cat /dev/vcs1; echo",
    "echo ==ttyS0; systemctl is-active serial-getty@ttyS0",
    f"echo ==warnings; sudo {WARNINGS_SH}",
])


def sections(output: str) -> dict[str, str]:
    parts = re.split(r"^==(\w+)\n", output, flags=re.M)
    found = {"state": parts[0].strip()}
    found.update((name, text) for name, text in zip(parts[1::2], parts[2::2]))
    return found


def install(name: str, tmp_path, *options: str) -> None:
    """Install Debian with the password (for the console's logins) and an SSH key,
    tmp_path / "key", for logins over the network."""
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")],
                   check=True)
    assert imacpro("create", name, *options).returncode == 0
    done = imacpro("install", name, "--os", "debian", "--password-file", str(password),
                   "--ssh-key", str(tmp_path / "key.pub"), "--yes", timeout=1800)
    assert done.returncode == 0, done.stderr
    assert "installed Debian bookworm" in done.stdout


class RunLoopWatch:
    """`imacpro status NAME --json` every STATUS_EVERY_S while a boot runs: the run loop's
    statistics at the last look (the longest IRR→INTA wait, the longest busy vCPU without a
    tick, the worst turn overrun and its thread's CPU time), for a failure's message. A
    lockup's report alone does not say whether the guest's CPUs spun for want of turns or the
    host did not run the machine's threads."""
    STATUS_EVERY_S = 30

    def __init__(self, name: str):
        self.name = name
        self.last = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(self.STATUS_EVERY_S):
            seen = imacpro("status", self.name, "--json", timeout=120)
            report = json.loads(seen.stdout) if seen.returncode == 0 else {}
            if report.get("state") == "running":
                self.last = report["interrupts"]

    def __enter__(self) -> "RunLoopWatch":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join()


def check_sees_an_imac_pro(output: str, model: str, cores: int, memory_gb: int,
                           run_loop: RunLoopWatch | None = None) -> None:
    seen = sections(output)
    assert seen["state"].splitlines()[-1] == "running", output[-3000:]
    assert seen["product"].strip() == "iMacPro1,1"
    lscpu = {key.strip(): value.strip() for key, value in
             (line.split(":", 1) for line in seen["lscpu"].splitlines() if ":" in line)}
    assert lscpu["Model name"].startswith(f"Intel(R) Xeon(R) {model} CPU @ ")
    assert int(lscpu["Core(s) per socket"]) == cores
    assert int(lscpu["Thread(s) per core"]) == 2 and int(lscpu["CPU(s)"]) == 2 * cores
    assert "APPLE SSD AP" in seen["nvme"]
    assert "[106b:2005]" in seen["lspci"] and "Xeon" not in seen["lspci"]
    # pciutils' lspci lists the real machine's functions (tests/real_imac_pro.py) with their
    # IDs and classes, at their addresses.
    listed = {m[1]: (int(m[3], 16), int(m[4], 16), int(m[2], 16)) for m in re.finditer(
        r"^(\S+) .*\[([0-9a-f]{4})\]: .*\[([0-9a-f]{4}):([0-9a-f]{4})\]", seen["lspci"], re.M)}
    for address, (vendor, device, class_code) in real_imac_pro.real_functions(cores).items():
        if address not in real_imac_pro.ABSENT:
            assert listed.get(address) == (vendor, device, class_code >> 8), (address, listed)
    total_gb = int(seen["free"].splitlines()[1].split()[1])
    # The kernel's page structures take 1/64 of memory (64 bytes per 4 KiB page), its code
    # and reserved ranges a little more, and free -g rounds down: 256 GB shows as 251.
    assert memory_gb * 63 // 64 - 2 <= total_gb <= memory_gb
    assert " login: " in seen["tty1"]               # the screen's first console
    assert seen["ttyS0"].strip() == "active"
    warnings = warnings_in(seen["warnings"])
    # The message in full, one warning a line (a list's repr is cut short): a lockup's report
    # names the function it spun in only in its RIP line.
    assert not unexpected(warnings), "\n".join(
        unexpected(warnings) + [f"run loop at the last look: {run_loop and run_loop.last}"])


def test_debian_installs_boots_to_multi_user_and_keeps_its_files(tests_cache, tmp_path):
    """One installation through its life: it boots and sees an iMac Pro, keeps files across
    a reboot, upgrades its initrd and is killed while it writes; the changed initrd is
    refused by the T2 until blessed (and started under No Security without); the blessed
    boot replays the journal (synced files intact, fsck clean) and installs a package copied
    in on a USB drive and another with apt, through the host's package cache."""
    install("deb", tmp_path, "--cpu", "8")
    write = ("mkdir -p ~/data && for i in 1 2 3; do head -c 1M /dev/urandom > ~/data/f$i; "
             "done && (cd ~/data && sha256sum f1 f2 f3 > sums) && sync")
    log = tmp_path / "serial.log"
    synced = [f"synced{i}" for i in range(1, 5)]
    # `sudo reboot` returns at once (systemd reboots behind it): the sleep keeps the command
    # running until the machine resets, so it completes at the next boot's login prompt;
    # ignoring SIGTERM keeps systemd's stop of the login session from ending it before.
    # Each command's output is printed as it ends, so the last one's kill loses none.
    booted = subprocess.Popen(
        [sys.executable, "-m", "imacpro", "boot", "deb", "--exec", SEES, "--exec", write,
         "--exec", "trap '' TERM; sudo reboot; sleep 600",
         "--exec", "cd ~/data && sha256sum -c sums && systemctl is-system-running --wait",
         "--exec", "sudo update-initramfs -u",
         "--exec", "mkdir -p ~/kill && cd ~/kill && for f in " + " ".join(synced) + "; do "
         "head -c 8M /dev/urandom > $f; done && sha256sum synced* > sums && sync && "
         "echo ALL-SYNCED && i=0; while :; do i=$((i+1)); head -c 4M /dev/urandom > "
         "unsynced$i; done",
         "--serial-log", str(log), "--timeout", str(HANG_GUARD_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    out, err = kill_once_synced(booted, log, HANG_GUARD_S)
    console = log.read_text(errors="replace")
    check_sees_an_imac_pro(out.split("f1: OK")[0], "W-2140B", 8, 32)
    assert "f1: OK\nf2: OK\nf3: OK\nrunning" in out, (err, console[-3000:])
    assert "the boot image on the EFI System Partition is now vmlinuz-" in out   # the hook
    assert console.count(" login: ") >= 2          # both boots' serial gettys (quiet: no status)
    check_console(console)

    check_a_changed_initrd_is_refused_until_blessed(tmp_path, synced)


def test_debian_on_the_largest_machine_reaches_multi_user_and_sees_it(tests_cache, tmp_path):
    """The 18-core, 256 GB machine (36 logical CPUs) boots the installed system through
    systemd to multi-user, sees itself as the iMac Pro it is, and powers off cleanly at the
    power button."""
    install("max", tmp_path, "--cpu", "18", "--memory", "256")
    log = tmp_path / "serial.log"
    with RunLoopWatch("max") as run_loop:
        booted = imacpro("boot", "max", "--exec", SEES,
                         "--serial-log", str(log), "--timeout", str(HANG_GUARD_S),
                         timeout=HANG_GUARD_S + 300)
    console = log.read_text(errors="replace")
    assert booted.returncode == 0, (booted.stderr, console[-3000:])
    print("run loop at the last look:", run_loop.last)
    check_sees_an_imac_pro(booted.stdout, "W-2191B", 18, 256, run_loop)
    assert " login: " in console
    check_console(console)


def kill_once_synced(booted: subprocess.Popen, log: Path, timeout_s: float) -> tuple[str, str]:
    """Wait for the guest's ALL-SYNCED on the console, let it go on writing, kill -9 the
    machine's process; what it printed (read as it comes: a full pipe would stop it)."""
    printed = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda f=f, k=k: printed[k].append(f.read()))
               for f, k in ((booted.stdout, "out"), (booted.stderr, "err"))]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while b"ALL-SYNCED\r\n" not in (log.read_bytes() if log.exists() else b""):
            assert booted.poll() is None, (b"".join(printed["err"]).decode(errors="replace"),
                                           log.read_text(errors="replace")[-3000:])
            assert time.monotonic() < deadline, \
                ("never synced", log.read_text(errors="replace")[-3000:])
            time.sleep(1)
        time.sleep(5)                     # it goes on writing
        os.kill(booted.pid, signal.SIGKILL)
    finally:
        booted.kill()
        booted.wait()
        for reader in readers:
            reader.join()
    assert booted.returncode == -signal.SIGKILL
    return tuple(b"".join(printed[k]).decode(errors="replace") for k in ("out", "err"))


def check_console(console: str) -> None:
    for bad in ("Oops", "Kernel panic", "BUG:", "soft lockup"):
        assert bad not in console, bad


def check_a_changed_initrd_is_refused_until_blessed(tmp_path, synced: list[str]) -> None:
    refused = imacpro("boot", "deb", "--exec", "true")
    assert refused.returncode == 1, refused.stderr
    assert "refused: initrd digest: the initrd differs from the signed one" in refused.stderr
    assert "approve it with 'imacpro bless deb'" in refused.stderr

    # No Security starts it without: --detach returns once the firmware has handed over to
    # the kernel, and the power is cut there (the root file system is not mounted yet).
    assert imacpro("security", "deb", "--policy", "none").returncode == 0
    started = imacpro("boot", "deb", "--detach", timeout=300)
    assert started.returncode == 0, started.stderr
    stopped = imacpro("stop", "deb", "--force", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert imacpro("security", "deb", "--policy", "full").returncode == 0
    assert imacpro("boot", "deb", "--exec", "true").returncode == 1       # still refused

    blessed = imacpro("bless", "deb", "--json")
    assert blessed.returncode == 0, blessed.stderr
    report = json.loads(blessed.stdout)
    assert report["changed"] and report["kernel"].startswith("/boot/vmlinuz-6.1.0-")
    assert report["version"] == json.loads(imacpro("security", "deb", "--json").stdout)[
        "highest_booted_version"] + 1
    check_blessed_boot(tmp_path, report, synced)


def check_blessed_boot(tmp_path, report: dict, synced: list[str]) -> None:
    """Full Security boots the blessed image: the journal replayed by the initramfs's fsck,
    the synced files intact, a package copied in on a USB drive installed, another with apt
    through the host's package cache; with the system up, the host logs in over ssh through
    a forward of the 10GbE port."""
    stick = usb_drive_with_a_package(tmp_path)
    log = tmp_path / "after.log"
    port = free_port()
    booted = subprocess.Popen(
        [sys.executable, "-m", "imacpro", "boot", "deb", "--usb", str(stick),
         "--forward", f"tcp:{port}:22", "--serial-log", str(log),
         "--exec", "sudo cat /run/initramfs/fsck.log; sudo dmesg | grep EXT4-fs",
         "--exec", "cd ~/kill && sha256sum -c sums && cd ~/data && sha256sum -c sums",
         # By its label: the empty SD card reader and the stick race for sda and sdb.
         "--exec", "for i in $(seq 300); do [ -b /dev/disk/by-label/PACKAGES ] && break; "
         "sleep 1; done; sudo mount -o ro /dev/disk/by-label/PACKAGES /mnt && "
         "sudo dpkg -i /mnt/imacpro-hello_1.0_all.deb"
         " && imacpro-hello && sudo umount /mnt",
         # apt through the host's package cache (net/package_cache.py), which keeps what it
         # fetched for the next machine.
         "--exec", "/usr/lib/imacpro/apt-proxy http://deb.debian.org && "
         "sudo apt-get update -q && sudo apt-get install -y -q hello && hello",
         # The sleep loop ends when the host's ssh session has left its mark.
         "--exec", "systemctl is-system-running --wait; echo SSH-\"\"NOW; "
         "while [ ! -e /tmp/ssh-was-here ]; do sleep 1; done",
         "--timeout", str(HANG_GUARD_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while b"SSH-NOW" not in (log.read_bytes() if log.exists() else b""):
            assert booted.poll() is None, booted.communicate()
            assert time.monotonic() < deadline, \
                ("the system never came up", log.read_text(errors="replace")[-3000:])
            time.sleep(1)
        ssh = subprocess.run(
            ["ssh", "-p", str(port), "-i", str(tmp_path / "key"), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=120", "imacpro@127.0.0.1",
             "echo logged-in-over-ssh; cat /sys/class/net/enp4s0/speed; "
             "ip -4 -o addr show enp4s0; touch /tmp/ssh-was-here"],
            capture_output=True, text=True, timeout=300)
        out, err = booted.communicate(timeout=900)
    finally:
        booted.kill()
        booted.wait()
    console = log.read_text(errors="replace")
    assert booted.returncode == 0, (err, console[-3000:])
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.splitlines()[:2] == ["logged-in-over-ssh", "10000"], ssh.stdout
    assert "10.0.2.15/24" in ssh.stdout
    security = json.loads(imacpro("security", "deb", "--json").stdout)
    assert security["policy"] == "full"                 # booted under Full Security, and
    assert security["highest_booted_version"] == report["version"]   # the blessed version
    assert "recovering journal" in out and "clean," in out, out[:3000]   # replayed, then clean
    for name in synced:
        assert f"{name}: OK" in out
    assert "f3: OK" in out, out
    assert "hello from a package copied in" in out, out
    assert "http://10.0.2.2:3142\n" in out and "Hello, world!" in out     # apt, through the cache
    assert list((Path(os.environ["IMACPRO_CACHE"]) / "debian/archives").glob("hello_*.deb"))
    assert "running" in out.splitlines()
    check_console(console)
    assert root_fsck(tmp_path) == 0        # after its clean shutdown: a full, forced check


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def usb_drive_with_a_package(tmp_path: Path) -> Path:
    """A FAT USB drive holding a Debian package built here (dpkg-deb)."""
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN/control").write_text(
        "Package: imacpro-hello\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: imacpro tests <tests@imacpro.invalid>\n"
        "Description: a package copied in on a USB drive\n")
    (package / "usr/bin").mkdir(parents=True)
    script = package / "usr/bin/imacpro-hello"
    script.write_text("#!/bin/sh\necho hello from a package copied in\n")
    script.chmod(0o755)
    deb = tmp_path / "imacpro-hello_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(package), str(deb)],
                   check=True, capture_output=True)
    stick = tmp_path / "stick.img"
    with open(stick, "wb") as f:
        f.truncate(64 << 20)
    tools.run("mkfs.fat", "-n", "PACKAGES", str(stick))
    tools.run("mcopy", "-i", str(stick), str(deb), "::/")
    return stick


def root_fsck(tmp_path: Path) -> int:
    """e2fsck -f -n of the SSD's root file system, decrypted by the machine's T2 into a
    sparse copy (only the sectors ever written: holes read as zeros)."""
    machine = bundle.open_bundle("deb")
    copy = tmp_path / "root.img"
    with machine.t2().open_storage() as store:
        root = gpt.read(store, "ssd").find(gpt.LINUX_ROOT_X86_64)
        start, end = root.first_lba * SECTOR_SIZE, (root.last_lba + 1) * SECTOR_SIZE
        fd = os.open(machine.path / "t2" / IMAGE_FILE, os.O_RDONLY)
        try:
            extents = list(_data_extents(fd, end))
        finally:
            os.close(fd)
        with open(copy, "wb") as out:
            out.truncate(end - start)
            for first, last in extents:
                first, last = max(first, start), min(last, end)
                for at in range(first - first % SECTOR_SIZE, last, 1 << 24):
                    count = -(-min(1 << 24, last - at) // SECTOR_SIZE)
                    out.seek(at - start)
                    out.write(store.read(at // SECTOR_SIZE, count))
    done = subprocess.run([tools.find("e2fsck"), "-f", "-n", str(copy)], capture_output=True,
                          text=True)
    copy.unlink()
    assert done.returncode == 0, done.stdout + done.stderr
    return done.returncode
