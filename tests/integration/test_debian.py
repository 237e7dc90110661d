"""Debian installed on the SSD (`imacpro install --os debian`), booted through systemd, as a
user runs it: execs log in on the serial console with the installation's credentials.

The system is built once from Debian's archive by mmdebstrap (~2 minutes, ~130 MB of
packages) into the tests' cache and reused: later runs install it in ~30 s without the
network. A boot to multi-user.target takes 2 to 3 minutes on the 8-core machine.
"""

import re

import pytest

from imacpro.guest.kernel_warnings import WARNINGS_SH, unexpected, warnings_in
from machines import imacpro, tests_cache  # noqa: F401 (a fixture)

pytestmark = pytest.mark.network

PASSWORD = "correct horse battery"

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
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    assert imacpro("create", name, *options).returncode == 0
    done = imacpro("install", name, "--os", "debian", "--password-file", str(password),
                   "--yes", timeout=1800)
    assert done.returncode == 0, done.stderr
    assert "installed Debian bookworm" in done.stdout


def check_sees_an_imac_pro(output: str, model: str, cores: int, memory_gb: int) -> None:
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
    assert "[8086:a2af]" in seen["lspci"] and "[1002:" in seen["lspci"]
    total_gb = int(seen["free"].splitlines()[1].split()[1])
    assert memory_gb - 2 <= total_gb <= memory_gb
    assert " login: " in seen["tty1"]               # the screen's first console
    assert seen["ttyS0"].strip() == "active"
    warnings = warnings_in(seen["warnings"])
    assert not unexpected(warnings), unexpected(warnings)


def test_debian_installs_boots_to_multi_user_and_keeps_its_files(tests_cache, tmp_path):
    install("deb", tmp_path, "--cpu", "8")
    write = ("mkdir -p ~/data && for i in 1 2 3; do head -c 1M /dev/urandom > ~/data/f$i; "
             "done && (cd ~/data && sha256sum f1 f2 f3 > sums) && sync")
    log = tmp_path / "serial.log"
    # `sudo reboot` returns at once (systemd reboots behind it): the sleep keeps the command
    # running until the machine resets, so it completes at the next boot's login prompt.
    result = imacpro("boot", "deb", "--exec", SEES, "--exec", write,
                     "--exec", "sudo reboot; sleep 600",
                     "--exec", "cd ~/data && sha256sum -c sums && "
                     "systemctl is-system-running --wait",
                     "--serial-log", str(log), "--timeout", "1500", timeout=1800)
    console = log.read_text(errors="replace")
    assert result.returncode == 0, (result.stderr, console[-3000:])
    first, second = result.stdout.split("f1: OK")[0], result.stdout
    check_sees_an_imac_pro(first, "W-2140B", 8, 32)
    assert "f1: OK\nf2: OK\nf3: OK\nrunning" in second
    assert console.count("Reached target") and console.count(" login: ") >= 2
    for bad in ("Oops", "Kernel panic", "BUG:", "soft lockup"):
        assert bad not in console, bad
