"""The builder: wires an iMac Pro from a validated Configuration, and runs it.

    ISA IRQ n ──► IrqLine ──► 8259 PIC input n ──► (INTR) ──► BSP LAPIC LINT0 (virtual wire)
                         └──► IOAPIC pin GSI(n) ──► APIC bus ──► LAPICs ──► vCPU INTR pins

Port map:  0x20/0xA0 PIC, 0x40 PIT, 0x60/0x64 i8042, 0x61 port B, 0x70-0x73 CMOS RTC,
           0x92 fast A20/reset, 0x3F8 COM1, 0x4D0 ELCR, 0x600-0x60F ACPI PM (SCI: IRQ 9),
           0xCF8-0xCFF PCI config + reset.
MMIO map:  see memory/layout.py (PCI BARs decode inside the PCI memory windows).

    SSD: NVMe controller (PCI 00:04.0) ──► T2 encrypted store; its interrupts: MSI-X/MSI as
         APIC bus messages (or memory writes), INTA# ──► IOAPIC pin 16 (active low)

The run loop is single-threaded: each runnable vCPU runs a slice in turn, timers due on the
machine clock fire between slices, and when every CPU is halted the loop sleeps until the next
timer (idle="sleep", guest time follows the host's) or jumps to it (idle="warp").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from imacpro.bus.mmio import MmioBus
from imacpro.bus.pci import Ecam, PciBus, PciConfigPorts, PciMemoryWindow, host_bridge
from imacpro.bus.pio import PortIoBus
from imacpro.catalog import Configuration
from imacpro.clock import Clock
from imacpro.cpu.vcpu import State, Vcpu
from imacpro.devices.acpi_pm import PM_BASE, PM_IO_SIZE, SCI_IRQ, AcpiPm
from imacpro.devices.apic_bus import ApicBus
from imacpro.devices.hpet import Hpet
from imacpro.devices.ioapic import IoApic
from imacpro.devices.lapic import LocalApic
from imacpro.devices.nvme import NvmeController
from imacpro.devices.pic import Pic8259Pair
from imacpro.devices.pit import Pit8254, SystemControlPortB
from imacpro.devices.reset import FastA20Port, KeyboardController, ResetControl
from imacpro.devices.rtc import CmosRtc
from imacpro.devices.uart16550 import Uart16550
from imacpro.irq import IrqLine
from imacpro.memory import layout
from imacpro.memory.ram import Ram

log = logging.getLogger(__name__)

COM1_PORT, COM1_IRQ = 0x3F8, 4
RTC_IRQ = 8
ISA_IRQS = 16
IOAPIC_PINS = 24
# ISA IRQ 0 (PIT / HPET legacy timer 0) reaches IOAPIC pin 2; the rest are identity mapped.
# The ACPI MADT carries the same interrupt source override.
ISA_TO_GSI = {0: 2}
SLICE_US = 2000     # host time a vCPU runs before the others get their turn
IDLE_POLL_S = 0.01  # an idle machine still looks at `stop` (console input) this often
MIN_SLICE_US = 20   # a slice cut short by a timer still runs at least this long


def apic_id_of(index: int) -> int:
    """Logical CPU `index` → APIC ID: core = index // 2, thread = index % 2, SMT in bit 0."""
    return index


@dataclass
class RunResult:
    reason: str                       # "poweroff", "reset", "halted", "timeout", "stopped"
    detail: str = ""
    shutdowns: list[str] = field(default_factory=list)


class Machine:
    def __init__(self, config: Configuration, *, serial_output: Callable[[bytes], None] = None,
                 clock: Clock | None = None, idle: str = "sleep", cpus: int | None = None,
                 ssd=None, ssd_serial: str = ""):
        """`ssd`: the T2's encrypted store (t2/storage.py) the NVMe controller serves, or None
        for a machine without a readable SSD; `ssd_serial`: the controller's serial number."""
        self.config = config
        self.processor = p = config.processor
        self.clock = clock or Clock(realtime=True)
        self.idle = idle
        self.tsc_hz = round(p.base_ghz * 1000) * 1_000_000
        self.ram = Ram(config.memory_option.size_bytes)
        self.pio = PortIoBus()
        self.mmio = MmioBus()
        self.reset_requested = False
        self.poweroff_requested = False

        # Interrupt controllers and the ISA IRQ lines that feed both.
        self.apic_bus = ApicBus()
        self.ioapic_id = p.threads       # the first ID after the logical CPUs'
        self.ioapic = IoApic(self.apic_bus, apic_id=self.ioapic_id)
        self.pic = Pic8259Pair()
        self.irq = [IrqLine(f"irq{n}", self.pic.input(n), self.ioapic.input(ISA_TO_GSI.get(n, n)))
                    for n in range(ISA_IRQS)]
        self.gsi = {n: IrqLine(f"gsi{n}", self.ioapic.input(n))
                    for n in range(ISA_IRQS, IOAPIC_PINS)}

        # Legacy platform devices.
        self.pit = Pit8254(self.clock, self.irq[0])
        self.port_b = SystemControlPortB(self.pit)
        self.rtc = CmosRtc(self.clock, self.irq[RTC_IRQ])
        below = min(self.ram.size, layout.RAM_BELOW_4G_END)
        self.rtc.set_memory_size(below, self.ram.size - below)
        self.uart = Uart16550(self.irq[COM1_IRQ], output=serial_output)
        self.hpet = Hpet(self.clock, self._gsi_line, legacy_irq0=self.irq[0],
                         legacy_irq8=self.irq[RTC_IRQ])
        # HPET legacy replacement takes IRQ 0 from the PIT (ACPI HPET spec, LEG_RT_CNF).
        self.hpet.on_legacy_change = lambda on: self.pit.set_irq0_enabled(not on)
        self.acpi_pm = AcpiPm(self.clock, self.irq[SCI_IRQ], on_poweroff=self.request_poweroff)
        self.reset_control = ResetControl(self.request_reset)
        self.kbc = KeyboardController(self.request_reset, kbd_irq=self.irq[1], aux_irq=self.irq[12])
        self.fast_a20 = FastA20Port(self.request_reset)
        self.pci = PciBus(send_msi=self.message_interrupt)
        self.pci.attach(0, 0, host_bridge())
        self.nvme = None
        if ssd is not None:
            wire = self.gsi[layout.PCI_INTA_GSI[layout.NVME_DEVICE]]
            wire.set(True)                     # PCI interrupt wires are active low: idle high
            inta = IrqLine("nvme-inta", lambda asserted: wire.set(not asserted))
            self.nvme = NvmeController(self.ram, ssd, ssd_serial, intx=inta)
            self.pci.attach(layout.NVME_DEVICE, 0, self.nvme.pci)

        for base, size, dev in (
            (0x20, 2, self.pic.master_ports), (0xA0, 2, self.pic.slave_ports),
            (0x4D0, 2, self.pic.elcr_ports), (0x40, 4, self.pit), (0x61, 1, self.port_b),
            (0x60, 1, _Window(self.kbc, 0)), (0x64, 1, _Window(self.kbc, 4)),
            (0x70, 4, self.rtc), (0x92, 1, self.fast_a20), (COM1_PORT, 8, self.uart),
            (0xCF8, 8, PciConfigPorts(self.pci, self.reset_control)),
            (PM_BASE, PM_IO_SIZE, self.acpi_pm),
        ):
            self.pio.register(base, size, dev)
        self.mmio.register(layout.IOAPIC_BASE, layout.IOAPIC_SIZE, self.ioapic)
        self.mmio.register(layout.HPET_BASE, layout.HPET_SIZE, self.hpet)
        self.mmio.register(layout.ECAM_BASE, layout.ECAM_SIZE, Ecam(self.pci))
        pci64_start, pci64_last = layout.pci64_window(self.ram.size)
        for start, end in ((layout.PCI_MMIO_START, layout.PCI_MMIO_END),
                           (pci64_start, pci64_last + 1)):
            self.mmio.register(start, end - start, PciMemoryWindow(self.pci, start))

        # Logical CPUs, each with its local APIC; the PIC's INTR reaches the BSP's LINT0.
        count = cpus or p.threads
        self.lapics = [LocalApic(apic_id_of(i), self.clock, self.apic_bus, bsp=(i == 0))
                       for i in range(count)]
        for lapic in self.lapics:
            self.apic_bus.attach(lapic)
        self.pic.on_intr_change = lambda level: self.lapics[0].set_lint(0, level)
        self.vcpus = [Vcpu(i, apic_id_of(i), p, self.ram, self.pio, self.mmio, self.lapics[i],
                           self.pic, self.clock, self.tsc_hz, bsp=(i == 0))
                      for i in range(count)]
        self.bsp = self.vcpus[0]

    def _gsi_line(self, gsi: int) -> IrqLine:
        if gsi < ISA_IRQS:
            return self.irq[gsi]
        return self.gsi[gsi]

    def message_interrupt(self, address: int, data: int) -> None:
        """A PCI function's MSI: a write of `data` to `address`. At 0xFEEx_xxxx it is an
        interrupt message (SDM 10.11); anywhere else, an ordinary memory write."""
        if not self.apic_bus.deliver_msi(address, data):
            window = self.ram.window(address, 4)
            if window is not None:
                window[:] = (data & 0xFFFF_FFFF).to_bytes(4, "little")

    def request_reset(self) -> None:
        self.reset_requested = True
        for cpu in self.vcpus:
            cpu.uc.emu_stop()

    def request_poweroff(self) -> None:
        self.poweroff_requested = True
        for cpu in self.vcpus:
            cpu.uc.emu_stop()

    # --- running --------------------------------------------------------------------------

    def run(self, timeout_s: float | None = None, stop: Callable[[], bool] | None = None,
            slice_us: int = SLICE_US) -> RunResult:
        """Run until the guest resets or powers off, every CPU stops for good, `stop()` says
        so, or `timeout_s` of host time passes."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            ran = False
            for cpu in self.vcpus:
                if cpu.runnable():
                    cpu.run(self._slice(slice_us))
                    ran = True
                self.clock.run_due()
                if self.reset_requested:
                    return RunResult("reset")
                if self.poweroff_requested:
                    return RunResult("poweroff")
            if stop is not None and stop():
                return RunResult("stopped")
            if deadline is not None and time.monotonic() >= deadline:
                return RunResult("timeout")
            if ran:
                continue
            if self.bsp.state is State.SHUTDOWN:
                return RunResult("shutdown", self.bsp.shutdown_reason)
            if not self._idle(deadline, poll=stop is not None):
                return RunResult("halted", "every CPU is halted and no timer is armed")

    def _slice(self, slice_us: int) -> int:
        """A slice ends at the next timer, so its interrupt arrives on time (Linux's
        timer check spins for ticks and panics if they come late)."""
        next_ns = self.clock.next_deadline()
        if next_ns is None or not self.clock.realtime:
            return slice_us
        until_us = (next_ns - self.clock.now_ns()) // 1000
        return max(MIN_SLICE_US, min(slice_us, until_us))

    def _idle(self, run_deadline: float | None, poll: bool = False) -> bool:
        """Every CPU waits: let time pass to the next timer. False if nothing can wake them."""
        next_ns = self.clock.next_deadline()
        if next_ns is None:
            if not poll:
                return False
            time.sleep(IDLE_POLL_S)   # nothing armed, but console input may still come
            return True
        if self.idle == "warp":
            self.clock.warp_to(next_ns)
        else:
            wait_s = max(0.0, (next_ns - self.clock.now_ns()) / 1e9)
            if run_deadline is not None:
                wait_s = min(wait_s, max(0.0, run_deadline - time.monotonic()))
            if poll:
                wait_s = min(wait_s, IDLE_POLL_S)
            time.sleep(wait_s)
        self.clock.run_due()
        return True


class _Window:
    """A view of a device's register at `offset`, for devices whose ports are not contiguous."""

    def __init__(self, device, offset: int):
        self.device = device
        self.offset = offset

    def read(self, offset: int, size: int) -> int:
        return self.device.read(self.offset + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.device.write(self.offset + offset, size, value)
