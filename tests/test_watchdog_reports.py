"""Where the watchdog's reports go: `imacpro boot`'s stderr and `imacpro status`.

(tests/cpu/test_watchdog.py makes the machine lose an interrupt and checks what is found.)"""

import json

import pytest

from imacpro import cli
from imacpro.boot import RunningMachine
from imacpro.host_events import HostEvents
from imacpro.watchdog import Finding, Report, format_report

STATE = {"now_s": 42.0, "timers_armed": 3,
         "cpus": [{"cpu": 0, "state": "halted", "rip": 0xFFFFFFFF81000000, "if": True,
                   "irr": 0, "isr": 0, "tmr": 0, "tpr": 0, "ppr": 0, "svr": 0x1FF,
                   "lvt_timer": 0x400EC, "timer": "tsc-deadline, not armed",
                   "interrupts": 1234, "last_interrupt_s": 10.5}],
         "ioapic": {"entries": [0x10000] * 9 + [0xC021] + [0x10000] * 14,
                    "levels": [False] * 9 + [True] + [False] * 14}}


def a_report() -> Report:
    report = Report(42_000_000_000, [Finding("lost-eoi", ("lost-eoi", 9),
                                             "I/O APIC pin 9 has waited 31.5 s for the EOI of "
                                             "vector 0x21, which no local APIC holds")], STATE)
    report.text = format_report(report)
    return report


def test_a_report_goes_to_stderr_and_into_status(capsys):
    running = RunningMachine("pro", None, None, None, HostEvents())
    running.watchdog_report(a_report())
    err = capsys.readouterr().err
    assert "watchdog at 42.000 s of guest time" in err
    assert "I/O APIC pin 9 has waited 31.5 s" in err
    assert "ioapic pin  9: vector=0x21 dest=0x0 level unmasked remote_irr=1 wire=1" in err
    assert "cpu  0: halted" in err and "timer=tsc-deadline, not armed" in err
    status = running.status()
    assert status["watchdog"][0]["findings"][0]["kind"] == "lost-eoi"
    assert status["watchdog"][0]["state"]["cpus"][0]["interrupts"] == 1234
    json.dumps(status)                                  # plain data, for the socket


class FakeClient:
    def __init__(self, reply):
        self.reply = reply

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def request(self, command):
        return dict(self.reply, version=1, ok=True)


def test_status_names_what_the_watchdog_found(capsys, monkeypatch):
    running = RunningMachine("pro", None, None, None, HostEvents())
    running.watchdog_report(a_report())
    capsys.readouterr()
    monkeypatch.setattr(cli, "_client", lambda name: FakeClient(running.status()))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["status", "pro"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "watchdog:     I/O APIC pin 9 has waited 31.5 s for the EOI of vector 0x21" in out
