"""The machine's watchdog: notices a guest that can no longer make progress, and says why.

The run loop calls `check()` after each round of slices and while idle; it looks at the
machine about once a second of host time (a few comparisons per CPU). What it names:

  stuck       every CPU is halted with nothing deliverable (or waits for a SIPI, or shut
              down) and no timer is armed on the machine clock: only host input could wake
              the guest.
  silent CPU  an online CPU (running or halted, not waiting for a SIPI) has taken no
              interrupt for `stall_s` seconds of guest time. A Linux guest takes one on
              every online CPU at least every 4 s (the soft-lockup detector's hrtimer), so
              this is a lost wakeup: a timer interrupt or an IPI that never arrived.
  lost EOI    an I/O APIC level pin has held Remote IRR for `stall_s` while its vector is in
              no local APIC's IRR or ISR: the interrupt was lost between the I/O APIC and
              the CPU, or its EOI never reached the I/O APIC; the pin is dead until then.
  held        a deliverable vector has waited in a CPU's IRR for `stall_s` (a CPU that no
              longer takes interrupts).

Each finding is reported once per episode (it is reported again only after it cleared), with
the interrupt state of the whole machine (`interrupt_state()`): every vCPU's run state,
RIP and RFLAGS.IF, its LAPIC's IRR, ISR, TMR, TPR/PPR and timer, and the I/O APIC's
redirection entries with their Remote IRR bits. Guest time, not host time, measures the
stall: a host that stops the process (SIGSTOP, a suspended laptop) is no guest stall.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from imacpro.machine import Machine

NS_PER_S = 1_000_000_000
CHECK_EVERY_S = 1.0      # host time between looks
DEFAULT_STALL_S = 30.0   # guest time before a silent CPU or a held interrupt is reported


@dataclass
class Finding:
    kind: str            # "stuck", "silent-cpu", "lost-eoi", "held"
    key: tuple           # what it is about (a CPU, a pin): reported once per episode
    text: str


@dataclass
class Report:
    at_ns: int                     # guest time of the report
    findings: list[Finding]
    state: dict                    # interrupt_state() when it was made
    text: str = ""

    def as_dict(self) -> dict:
        return {"at_s": self.at_ns / NS_PER_S,
                "findings": [{"kind": f.kind, "text": f.text} for f in self.findings],
                "state": self.state}


@dataclass
class Watchdog:
    machine: Machine
    stall_s: float = DEFAULT_STALL_S
    on_report: Callable[[Report], None] | None = None
    reports: list[Report] = field(default_factory=list)
    _next_check: float = 0.0
    _open: set = field(default_factory=set)          # keys of findings still standing
    _eoi_wait: dict = field(default_factory=dict)    # pin → guest ns Remote IRR was first seen

    def check(self, force: bool = False) -> Report | None:
        now_host = time.monotonic()
        if not force and now_host < self._next_check:
            return None
        self._next_check = now_host + CHECK_EVERY_S
        findings = self._findings()
        keys = {f.key for f in findings}
        new = [f for f in findings if f.key not in self._open]
        self._open = keys
        if not new:
            return None
        state = interrupt_state(self.machine)
        report = Report(self.machine.clock.now_ns(), new, state)
        report.text = format_report(report)
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)
        return report

    def _findings(self) -> list[Finding]:
        m = self.machine
        now = m.clock.now_ns()
        stall_ns = int(self.stall_s * NS_PER_S)
        out = []
        if not any(cpu.runnable() for cpu in m.vcpus) and m.clock.next_deadline() is None \
                and not m.reset_requested and not m.poweroff_requested:
            out.append(Finding("stuck", ("stuck",),
                               "no CPU can run and no timer is armed to wake one"))
        for cpu in m.vcpus:
            if not cpu.online:
                continue
            quiet_ns = now - cpu.last_interrupt_ns
            if quiet_ns >= stall_ns:
                out.append(Finding("silent-cpu", ("silent", cpu.index),
                                   f"CPU {cpu.index} ({cpu.state.value}) has taken no "
                                   f"interrupt for {quiet_ns / NS_PER_S:.1f} s"))
            held = cpu.lapic.oldest_pending()
            if held is not None and now - held[1] >= stall_ns:
                out.append(Finding("held", ("held", cpu.index, held[0]),
                                   f"vector {held[0]:#04x} has waited in CPU {cpu.index}'s "
                                   f"IRR for {(now - held[1]) / NS_PER_S:.1f} s"))
        held_vectors = 0
        for lapic in m.lapics:
            held_vectors |= lapic.irr | lapic.isr
        waiting = {}
        for pin, entry in enumerate(m.ioapic.entries):
            vector = entry & 0xFF
            if entry & (1 << 14) and not held_vectors >> vector & 1:
                waiting[pin] = since = self._eoi_wait.get(pin, now)
                if now - since >= stall_ns:
                    out.append(Finding("lost-eoi", ("lost-eoi", pin),
                                       f"I/O APIC pin {pin} has waited "
                                       f"{(now - since) / NS_PER_S:.1f} s for the EOI of vector "
                                       f"{vector:#04x}, which no local APIC holds"))
        self._eoi_wait = waiting
        return out


def interrupt_state(machine: Machine) -> dict:
    """Every vCPU and its LAPIC, and the I/O APIC, as plain data (for reports and status)."""
    cpus = []
    for cpu, lapic in zip(machine.vcpus, machine.lapics):
        cpus.append({
            "cpu": cpu.index, "state": cpu.state.value, "rip": cpu.rip(),
            "if": cpu.interrupts_enabled(), "irr": lapic.irr, "isr": lapic.isr,
            "tmr": lapic.tmr, "tpr": lapic.tpr, "ppr": lapic.processor_priority(),
            "svr": lapic.svr, "lvt_timer": lapic.lvt[0x320], "timer": lapic.timer_summary(),
            "interrupts": cpu.interrupts, "last_interrupt_s": cpu.last_interrupt_ns / NS_PER_S})
    ioapic = machine.ioapic
    return {"now_s": machine.clock.now_ns() / NS_PER_S, "cpus": cpus,
            "ioapic": {"entries": list(ioapic.entries), "levels": list(ioapic.levels)},
            "timers_armed": machine.clock.pending()}


def interrupt_stats(machine: Machine) -> dict:
    """Since power-on: interrupts taken, the longest any waited between its local APIC's
    IRR and the CPU's INTA, and the longest a busy CPU (no HLT between) went without a timer
    interrupt, and the longest a time slice ran past its end (device work inside it, or the
    host not running the process), with the CPU time the run loop's thread had during that
    turn (about the turn's length: work; far less: the thread waited on the host). For
    `imacpro status` and the soak (bench/soak.py)."""
    return {"taken": sum(cpu.interrupts for cpu in machine.vcpus),
            "max_latency_ms": max(l.max_latency_ns for l in machine.lapics) / 1e6,
            "max_busy_tick_gap_ms": max(c.max_busy_tick_gap_ns for c in machine.vcpus) / 1e6,
            "max_slice_overrun_ms": machine.max_slice_overrun_ns / 1e6,
            "max_slice_overrun_cpu_ms": machine.max_slice_overrun_cpu_ns / 1e6,
            "guest_time_s": machine.clock.now_ns() / NS_PER_S}


def _vectors(bits: int) -> str:
    return ",".join(f"{v:#04x}" for v in range(256) if bits >> v & 1) or "-"


def format_report(report: Report) -> str:
    """The report as lines of text: the findings, then the state they were found in."""
    state = report.state
    lines = [f"watchdog at {report.at_ns / NS_PER_S:.3f} s of guest time: the machine may be "
             "hung"]
    lines += [f"  {finding.text}" for finding in report.findings]
    lines.append(f"  timers armed: {state['timers_armed']}")
    for cpu in state["cpus"]:
        lines.append(
            f"  cpu {cpu['cpu']:2}: {cpu['state']:13} rip={cpu['rip']:#x} "
            f"if={int(cpu['if'])} irr={_vectors(cpu['irr'])} isr={_vectors(cpu['isr'])} "
            f"tmr={_vectors(cpu['tmr'])} tpr={cpu['tpr']:#x} ppr={cpu['ppr']:#x} "
            f"svr={cpu['svr']:#x} lvt_timer={cpu['lvt_timer']:#x} timer={cpu['timer']} "
            f"interrupts={cpu['interrupts']} last={cpu['last_interrupt_s']:.3f}s")
    for pin, entry in enumerate(state["ioapic"]["entries"]):
        if entry & (1 << 16) and not entry & (1 << 14):
            continue                                  # masked and idle: nothing to say
        lines.append(
            f"  ioapic pin {pin:2}: vector={entry & 0xFF:#04x} dest={entry >> 56:#x} "
            f"{'level' if entry >> 15 & 1 else 'edge'} "
            f"{'masked' if entry >> 16 & 1 else 'unmasked'} "
            f"remote_irr={entry >> 14 & 1} wire={int(state['ioapic']['levels'][pin])}")
    return "\n".join(lines)
