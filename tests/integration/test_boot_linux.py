"""The stock Debian kernel on the virtual iMac Pro, as a user runs it: `imacpro boot --exec`.

Boots take a minute or two each; the guest comes from the tests' own cache (built on first use
from Debian's archive, ~72 MB) and is signed again for each test's installation key.
"""

import re
import time

from imacpro.guest.kernel_warnings import WARNINGS_SH, unexpected, warnings_in
from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)

PROBE = ("grep -m1 'model name' /proc/cpuinfo; nproc; grep MemTotal /proc/meminfo; "
         "cat /sys/class/dmi/id/product_name /sys/class/dmi/id/board_name "
         "/sys/class/dmi/id/sys_vendor; "
         "cat /sys/devices/system/clocksource/clocksource0/current_clocksource; date -u +%s; "
         f"{WARNINGS_SH}; "
         "exit 7")


def test_debian_boots_reboots_and_sees_an_imac_pro(signed_guest, tmp_path):
    """`reboot` in the guest restarts the machine (through the T2 again: tests/test_boot.py);
    the probe runs in the second boot."""
    create("pro", "--cpu", "8")
    log = tmp_path / "serial.log"
    result = imacpro("boot", "pro", "--exec", "reboot; sleep 60", "--exec", PROBE,
                     "--serial-log", str(log), "--timeout", "900")
    host_now = time.time()
    assert result.returncode == 7, (result.stderr, log.read_text(errors="replace")[-3000:])
    console = log.read_text(errors="replace")
    assert console.count("IMACPRO-READY") == 2 and "reboot: Restarting system" in console
    lines = result.stdout.split("reboot: Restarting system\n")[-1].splitlines()
    assert lines[0].split(":", 1)[1].strip() == "Intel(R) Xeon(R) W-2140B CPU @ 3.20GHz"
    assert lines[1] == "16"
    mem_kib = int(re.search(r"(\d+) kB", lines[2]).group(1))
    assert abs(mem_kib * 1024 - 32 * 2**30) / (32 * 2**30) < 0.03
    assert lines[3:6] == ["iMacPro1,1", "Mac-7BA5B2D9E42DDD94", "Apple Inc."]
    assert lines[6] in ("tsc", "hpet")
    assert abs(int(lines[7]) - host_now) < 120            # the guest's clock is the host's
    for bad in ("Oops", "Kernel panic", "BUG:", "soft lockup"):
        assert bad not in console, bad
    warnings = warnings_in("\n".join(lines))
    assert any(w.startswith("integrity: Reading UEFI Secure Boot Certs") for w in warnings)
    assert not unexpected(warnings), unexpected(warnings)
    assert "reboot: Power down" in console                  # powered off through ACPI S5


def test_full_security_refuses_a_tampered_kernel_before_it_runs(signed_guest, tmp_path):
    assert imacpro("create", "pro").returncode == 0
    tampered = tmp_path / "vmlinuz"
    data = bytearray(signed_guest.kernel.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    log = tmp_path / "serial.log"
    result = imacpro("boot", "pro", "--kernel", str(tampered), "--initrd",
                     str(signed_guest.initrd), "--append", signed_guest.cmdline,
                     "--manifest", str(signed_guest.manifest), "--exec", "true",
                     "--serial-log", str(log))
    assert result.returncode == 1
    assert "kernel digest" in result.stderr and "REFUSED" in result.stderr
    assert log.read_bytes() == b""                          # not one instruction ran
    unsigned = imacpro("boot", "pro", "--kernel", str(tampered), "--exec", "true")
    assert unsigned.returncode == 1 and "not signed" in unsigned.stderr


def test_no_security_boots_an_image_nobody_signed(signed_guest):
    assert imacpro("create", "pro").returncode == 0
    assert imacpro("security", "pro", "--policy", "none").returncode == 0
    result = imacpro("boot", "pro", "--kernel", str(signed_guest.kernel), "--initrd",
                     str(signed_guest.initrd), "--append",
                     signed_guest.cmdline + " imacpro.unsigned=1",
                     "--exec", "cat /proc/cmdline; poweroff; sleep 60", "--timeout", "600")
    assert result.returncode == 0, result.stderr          # `poweroff` in the guest: exit 0
    assert "imacpro.unsigned=1" in result.stdout
    assert "reboot: Power down" in result.stdout            # through ACPI S5


def test_an_external_disk_boots_only_when_the_policy_allows(signed_guest, tmp_path):
    assert imacpro("create", "pro").returncode == 0
    disk = tmp_path / "external.img"
    assert imacpro("install", "pro", "--disk", str(disk), "--size", "2").returncode == 0
    refused = imacpro("boot", "pro", "--disk", str(disk), "--exec", "true")
    assert refused.returncode == 1 and "external boot" in refused.stderr
    assert imacpro("security", "pro", "--external-boot", "allow").returncode == 0
    result = imacpro("boot", "pro", "--disk", str(disk), "--exec", "cat /proc/cmdline",
                     "--timeout", "600")
    assert result.returncode == 0, result.stderr
    assert signed_guest.cmdline in result.stdout
