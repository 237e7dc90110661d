"""Power-on sequencing: every boot, and every guest reboot, goes through the T2 first."""

import pytest

from imacpro import boot, bundle
from imacpro.catalog import configure
from imacpro.bus.guest_errors import GuestErrors
from imacpro.devices.net.aqc107 import Aqc107
from imacpro.machine import RunResult
from imacpro.net.link import Network

NO_NETWORK = Network("none")       # a fake machine: no passt, no package cache

KERNEL, INITRD, CMDLINE, VERSION = b"kernel image", b"initramfs", "console=ttyS0", 61192002


class FakeMachine:
    """Stands in for the machine: each run ends as `script` says, doing `during` first."""
    script: list = []
    built = 0
    resets = 0

    def __init__(self, config, serial_output=None, cpus=None, ssd=None, ssd_serial="",
                 guest_error_log=None, on_watchdog=None, sd_card=None, ethernet_mac=b"",
                 host_threads=1):
        FakeMachine.built += 1
        self.uart = None
        self.usb = None
        self.nic = Aqc107(ethernet_mac or bytes(6))
        self.vcpus = []
        self.guest_errors = GuestErrors()

    def quiesce(self):
        pass

    def close(self):
        pass

    def reset(self):
        FakeMachine.resets += 1

    def run(self, timeout_s=None, stop=None, events=None):
        during, reason = FakeMachine.script.pop(0)
        during()
        return RunResult(reason)


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.setattr(boot, "Machine", FakeMachine)
    monkeypatch.setattr(boot.firmware, "install", lambda *args: None)
    FakeMachine.built = FakeMachine.resets = 0
    machine = bundle.create("pro", configure())
    manifest = bundle.signing_server().sign(KERNEL, INITRD, CMDLINE, VERSION)
    return machine, boot.BootSource(KERNEL, INITRD, CMDLINE, manifest)


def test_a_guest_reboot_is_checked_by_the_t2_again(machine):
    bundle_, source = machine
    FakeMachine.script = [(lambda: None, "reset"), (lambda: None, "poweroff")]
    outcome = boot.power_on(bundle_, source, interactive=False, network=NO_NETWORK)
    assert outcome.reason == "poweroff" and FakeMachine.built == 1 and FakeMachine.resets == 1
    assert [v.allowed for v in outcome.verdicts] == [True, True]


def test_a_reboot_is_refused_when_the_t2_no_longer_allows_the_image(machine):
    bundle_, source = machine

    def newer_system_booted():              # the rollback floor rises while the guest runs
        chip = bundle_.t2()
        settings = chip.settings()
        settings.highest_version = VERSION + 1
        chip.nvram.save(settings)

    FakeMachine.script = [(newer_system_booted, "reset")]
    with pytest.raises(boot.BootRefused) as refused:
        boot.power_on(bundle_, source, interactive=False, network=NO_NETWORK)
    assert FakeMachine.built == 1 and "rollback" in refused.value.verdict.reason
