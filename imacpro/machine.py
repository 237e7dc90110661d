"""The builder: makes an iMac Pro from its board (board.py) and a Configuration, and runs it.

    ISA IRQ n ──► IrqLine ──► 8259 PIC input n ──► (INTR) ──► BSP LAPIC LINT0 (virtual wire)
                         └──► IOAPIC pin (the board's) ──► APIC bus ──► LAPICs ──► vCPU INTR pins
    PCI INTA# ──► (active low) ──► IOAPIC pin (the board's)
    MSI/MSI-X ──► PCI bus send_msi ──► APIC bus messages (or memory writes)

Every device is a row of the board: the builder constructs it (`_make_<name>`), registers its
ports and MMIO range, attaches its PCI function and wires its interrupts from the row. The
devices are `machine.devices` (name → device, in board order) and attributes of the same
names. `reset()` puts the board and every CPU back to power-on in place (a guest reboot).

The run loop is single-threaded by default (`host_threads=1`): each runnable vCPU runs a
slice in turn, timers due on the machine clock fire between slices (a slice ends early at the
next timer, even one the guest arms during the slice), a halted CPU that an interrupt wakes
runs after the slice in progress, and when every CPU is halted the loop sleeps until the next
timer (idle="sleep", guest time follows the host's) or jumps to it (idle="warp"). With more
host threads, host_threads.py runs the vCPUs at the same time. Either way the machine's
Python runs under its big lock (big_lock.py), which the loop lets go while an engine runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from imacpro.board import IMAC_PRO, IOAPIC_PINS, ISA_IRQS, Board, Row
from imacpro.big_lock import BigLock
from imacpro.bus.guest_errors import GuestErrors
from imacpro.bus.mmio import MmioBus
from imacpro.bus.mmio import Offset
from imacpro.bus.pci import Ecam, PciBus, PciConfigPorts, PciFunction, PciIoWindow, \
    PciMemoryWindow, host_bridge
from imacpro.bus.pci_bridge import PciBridge
from imacpro.bus.pio import PORT_COUNT
from imacpro.bus.pcie import ROOT_PORT, SWITCH_DOWNSTREAM, SWITCH_UPSTREAM
from imacpro.devices.display import vega
from imacpro.devices.display.framebuffer import COMPAT, Mode
from imacpro.bus.pio import PortIoBus
from imacpro.catalog import Configuration
from imacpro.clock import Clock
from imacpro.cpu.hwp import PackageHwp
from imacpro.cpu.mca import MachineCheckBanks
from imacpro.cpu.msr import UncoreMsrs
from imacpro.cpu.vcpu import State, Vcpu
from imacpro.devices.acpi_pm import AcpiPm
from imacpro.devices.apic_bus import ApicBus
from imacpro.devices.contract import StateError
from imacpro.devices.hpet import Hpet, hpet_routes
from imacpro.devices.ioapic import IoApic
from imacpro.devices.lapic import LocalApic
from imacpro.devices.net.aqc107 import Aqc107
from imacpro.devices.nvme import NvmeController
from imacpro.devices import uncore_registers
from imacpro.devices.t2_functions import t2_function
from imacpro.devices.usb.peripherals import Peripherals
from imacpro.devices.usb.xhci.controller import XhciController
from imacpro.devices.pic import Pic8259Pair
from imacpro.devices.pit import Pit8254, SystemControlPortB
from imacpro.devices.reset import FastA20Port, KeyboardController, ResetControl
from imacpro.devices.rtc import CmosRtc
from imacpro.devices.smc import AppleSmc
from imacpro.devices.thermal import ThermalModel
from imacpro.devices.uart16550 import Uart16550
from imacpro.errors import UserError
from imacpro.host_events import HostEvents
from imacpro.host_threads import HostThreads, default_count
from imacpro.devices.cbdma import CbdmaChannel
from imacpro.devices.pch.lpss_uart import LpssUart
from imacpro.devices.pch.mei import Mei
from imacpro.devices.pch.smbus import SmbusController
from imacpro.devices.wifi.bcm4364 import Bcm4364
from imacpro.irq import IrqLine, SharedLine
from imacpro.memory import layout
from imacpro.memory.ram import Ram
from imacpro.watchdog import DEFAULT_STALL_S, Report, Watchdog

log = logging.getLogger(__name__)

# The 10GbE port's MAC when the caller gives none (benches, tests): a locally administered
# address. A machine's own comes from its identity (identity.py).
DEFAULT_MAC = bytes.fromhex("020000c0ffee")
PORT_TYPES = {"root": ROOT_PORT, "upstream": SWITCH_UPSTREAM, "downstream": SWITCH_DOWNSTREAM}
SLICE_US = 2000     # host time a vCPU runs before the others get their turn
IDLE_POLL_S = 0.01  # an idle machine still looks at `stop` (console input) this often
MIN_SLICE_US = 20   # a slice cut short by a timer still runs at least this long
# A turn that ends with the CPU's interrupts off goes on until they are on again, for at most
# this long (Machine._leave_interrupts_off). Off (0) by default: with 1000 a 20-vCPU boot of the
# default guest took 74 s of guest time to its shell against 45 s (52 s with 100), 2026-12-01;
# why it costs that much is not known yet (docs/RELIABILITY.md).
IRQS_OFF_MAX_US = 0
# A CPU whose last slice ended spinning on PAUSE runs again after each other CPU's slice that
# did something else than wait (Vcpu.progressed), ahead of its turn (Machine._run_spinners):
# what it waits for may have just happened. Off only for the test that shows what it prevents (tests/cpu/test_lock_convoy.py).
SPINNERS_LOOK_AGAIN = True


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
                 ssd=None, ssd_serial: str = "", board: Board = IMAC_PRO,
                 guest_error_log: Callable[[str], None] | None = None,
                 watchdog_s: float | None = DEFAULT_STALL_S,
                 on_watchdog: Callable[[Report], None] | None = None,
                 display_mode: Mode = COMPAT, sd_card: str | None = None,
                 ethernet_mac: bytes = DEFAULT_MAC, host_threads: int | None = 1):
        """`ssd`: the T2's encrypted store (t2/storage.py) the NVMe controller serves, or None
        for a machine without a readable SSD; `ssd_serial`: the controller's serial number;
        `guest_error_log(text)`: where the bus guard writes (bus/guest_errors.py);
        `watchdog_s`: guest seconds of silence before the watchdog reports (watchdog.py;
        None: no watchdog), `on_watchdog(report)`: where its reports go; `display_mode`: the
        boot framebuffer's mode (devices/display/framebuffer.py); `ethernet_mac`: the 10GbE
        port's address (6 bytes); `sd_card`: an image in the
        SDXC card reader; `host_threads`: how many host threads run the vCPUs (1: the
        single-threaded loop, the deterministic reference; None: one per host core, no more
        than the vCPUs, as `imacpro boot --host-threads auto`)."""
        self.config = config
        self.board = board
        self.display_mode = display_mode
        self.processor = p = config.processor
        self.clock = clock or Clock(realtime=True)
        self.idle = idle
        self.tsc_hz = round(p.base_ghz * 1000) * 1_000_000
        self.ram = Ram(config.memory_option.size_bytes)
        self.guest_errors = GuestErrors(guest_error_log)
        self.clock.on_error = lambda timer: self.guest_errors.record(
            getattr(timer.callback, "__self__", timer), "timer", 0)
        self.lock = BigLock()
        self.pio = PortIoBus(self.guest_errors)
        self.mmio = MmioBus(self.guest_errors, self.lock)
        self.reset_requested = False
        self.poweroff_requested = False
        self._serial_output = serial_output
        self._ssd, self._ssd_serial = ssd, ssd_serial
        self._sd_card = sd_card
        self._ethernet_mac = ethernet_mac
        self.usb: Peripherals | None = None

        # Interrupt controllers and the lines that feed them: ISA IRQs to the 8259 input of
        # the same number and to the I/O APIC pin the board names; the other pins alone.
        self.apic_bus = ApicBus()
        self.ioapic_id = p.threads       # the first ID after the logical CPUs'
        self.pic = Pic8259Pair()
        self.ioapic = IoApic(self.apic_bus, apic_id=self.ioapic_id)
        self.irq = [IrqLine(f"irq{n}", self.pic.input(n), self.ioapic.input(board.isa_pin(n)))
                    for n in range(ISA_IRQS)]
        self.gsi = {n: IrqLine(f"gsi{n}", self.ioapic.input(n))
                    for n in range(ISA_IRQS, IOAPIC_PINS)}
        self.pci = PciBus(send_msi=self.message_interrupt, memory=self.ram,
                          root_buses=tuple(root.bus for root in board.root_buses))
        self.reset_control = ResetControl(self.request_reset)
        self._pci_wires: dict[int, SharedLine] = {}     # GSI → the PCI devices sharing it

        # The board's devices, in its order; the uncore functions with the registers that
        # describe this configuration (devices/uncore_registers.py).
        self._uncore_registers = uncore_registers.registers(
            self.ram.size, p.cores, [root.bus for root in board.root_buses])
        self.devices: dict[str, object] = {}
        for row in board.rows:
            device = self._build(row)
            setattr(self, row.name, device)
            if device is not None:
                self.devices[row.name] = device
                self._attach(row, device)
        # HPET legacy replacement takes IRQ 0 from the PIT (ACPI HPET spec, LEG_RT_CNF).
        self.hpet.on_legacy_change = lambda on: self.pit.set_irq0_enabled(not on)
        # Each timer interrupt the guest takes lets the PIT, or the HPET, give back a tick the
        # host made it miss (on IRQ 0 whichever drives it; on the HPET's own routes).
        self.pic.ack_listeners[0] = self._irq0_acked
        self.ioapic.add_ack_listener(board.isa_pin(0), self._irq0_acked)
        for pin in hpet_routes():
            self.ioapic.add_ack_listener(pin, functools.partial(self.hpet.acked, self.gsi[pin]))
        pci64_start, pci64_last = layout.pci64_window(self.ram.size)
        for start, end in ((layout.PCI_MMIO_START, layout.PCI_MMIO_END),
                           (pci64_start, pci64_last + 1)):
            self.mmio.add_window(start, end - start, PciMemoryWindow(self.pci, start),
                                 self.pci.direct_ranges)
        self.pio.register(layout.PCI_IO_START, PORT_COUNT - layout.PCI_IO_START,
                          PciIoWindow(self.pci, layout.PCI_IO_START))

        # Logical CPUs, each with its local APIC; the PIC's INTR reaches the BSP's LINT0.
        count = cpus or p.threads
        self.host_threads = host_threads = host_threads or default_count(count)
        self.lapics = [LocalApic(apic_id_of(i), self.clock, self.apic_bus, bsp=(i == 0))
                       for i in range(count)]
        for lapic in self.lapics:
            self.apic_bus.attach(lapic)
        self.pic.on_intr_change = lambda level: self.lapics[0].set_lint(0, level)
        # The package's uncore MSRs, shared by its logical CPUs (cpu/msr.py).
        self.uncore = UncoreMsrs(tuple(root.bus for root in board.root_buses), chas=p.cores)
        by_apic_id = {lapic.apic_id: lapic for lapic in self.lapics}
        self.mca = MachineCheckBanks(cmci_of=lambda apic_id: by_apic_id[apic_id].signal_cmci())
        self.hwp = PackageHwp()
        self.vcpus = [Vcpu(i, apic_id_of(i), p, self.ram, self.pio, self.mmio, self.lapics[i],
                           self.pic, self.clock, self.tsc_hz, bsp=(i == 0),
                           uncore=self.uncore, mca=self.mca, package_hwp=self.hwp)
                      for i in range(count)]
        self.bsp = self.vcpus[0]
        if host_threads > 1:
            for vcpu in self.vcpus:
                vcpu.engine.set_parallel(True)
        self.pci.on_decode_change = self._bars_moved
        self._woken: dict[Vcpu, None] = {}     # halted CPUs an interrupt came for, in order
        for vcpu in self.vcpus:
            vcpu.on_wake = self._woken.setdefault
        self.apic_bus.cores.wake = self._ipi_woke   # an IPI the APICs' cores sent in C
        self.run_loop = None            # the multi-threaded loop's C core while it runs
        self._running = self.bsp
        self._cut = False
        self.clock.on_slice_cut = self._cut_slice
        self.max_slice_overrun_ns = 0
        self.max_slice_overrun_cpu_ns = 0  # the thread's CPU time in that turn
        self.irqs_off_runs = 0             # turns run on by _leave_interrupts_off,
        self.irqs_off_capped = 0           # and those IRQS_OFF_MAX_US ended
        self.watchdog = None if watchdog_s is None else \
            Watchdog(self, stall_s=watchdog_s, on_report=on_watchdog)

    # --- building from the board ------------------------------------------------------------

    def _build(self, row: Row):
        if row.min_cores > self.processor.cores:
            return None                        # a function of larger dies (the CHAs)
        make = getattr(self, f"_make_{row.name}", None)
        if make is None:
            if row.function is not None:
                return self._function(row)
            if row.mmio is not None and row.mmio.per_cpu:
                return None                    # built with its CPU (the local APIC)
            raise ValueError(f"the builder cannot make board row {row.name!r}")
        return make(row)

    def _function(self, row: Row) -> PciFunction:
        """A function made from its row's data: a bridge when the row says where to, else
        its configuration space alone."""
        f = row.function
        if row.pci.bridge_to is not None:
            return PciBridge(f.vendor, f.device, row.pci.bridge_to, PORT_TYPES[f.port.kind],
                             f.port.gts, f.port.width, revision=f.revision)
        fn = PciFunction(f.vendor, f.device, f.class_code, f.revision,
                         subsystem_vendor=f.subsystem[0], subsystem=f.subsystem[1])
        slot = (row.pci.bus, row.pci.device, row.pci.function)
        for offset, value in self._uncore_registers.get(slot, {}).items():
            fn.config[offset:offset + 4] = value.to_bytes(4, "little")
        fn.mark_reset_state()
        return fn

    def _attach(self, row: Row, device) -> None:
        for ports in row.ports:
            target = getattr(device, ports.view) if ports.view else device
            if ports.offset:
                target = Offset(target, ports.offset)
            self.pio.register(ports.base, ports.count, target)
        if row.mmio is not None and not row.mmio.per_cpu:
            self.mmio.register(row.mmio.base, row.mmio.size, device)
        if row.pci is not None:
            self.pci.attach(row.pci.device, row.pci.function, getattr(device, "pci", device),
                            bus=row.pci.bus)

    def _isa(self, row: Row, index: int = 0) -> IrqLine:
        return self.irq[row.irqs[index].irq]

    def _intx(self, row: Row) -> IrqLine:
        """A PCI function's interrupt pin, as its own input of the shared wire it reaches:
        asserted drives that I/O APIC pin low (PCI wires are active low, idle high, and
        wired-OR among the devices that share them). Behind a root port the pin is swizzled
        by device number to the port's (PCI-to-PCI Bridge 1.2 §9.1), whose row routes it."""
        slot, pin = row.pci, row.pci.pin
        while slot.gsi is None:
            pin = (pin - 1 + slot.device) % 4 + 1
            slot = next(r.pci for r in self.board.pci_rows() if r.pci.bridge_to == slot.bus)
            if pin != slot.pin:
                raise ValueError(f"{row.name}: its pin reaches INT{'ABCD'[pin - 1]}# of a "
                                 "port that routes only its own")
        if slot.gsi not in self._pci_wires:
            wire = self._gsi_line(slot.gsi)
            wire.set(True)
            self._pci_wires[slot.gsi] = SharedLine(lambda asserted: wire.set(not asserted))
        return self._pci_wires[slot.gsi].input(f"{row.name}-int{'abcd'[row.pci.pin - 1]}")

    def _make_pic(self, row):
        return self.pic

    def _make_pit(self, row):
        return Pit8254(self.clock, self._isa(row))

    def _make_port_b(self, row):
        return SystemControlPortB(self.pit)

    def _make_kbc(self, row):
        return KeyboardController(self.request_reset, kbd_irq=self._isa(row, 0),
                                  aux_irq=self._isa(row, 1))

    def _make_rtc(self, row):
        rtc = CmosRtc(self.clock, self._isa(row))
        below = min(self.ram.size, layout.RAM_BELOW_4G_END)
        rtc.set_memory_size(below, self.ram.size - below)
        return rtc

    def _make_fast_a20(self, row):
        return FastA20Port(self.request_reset)

    def _make_uart(self, row):
        return Uart16550(self._isa(row), output=self._serial_output)

    def _make_pci_config(self, row):
        return PciConfigPorts(self.pci, self.reset_control)

    def _make_acpi_pm(self, row):
        return AcpiPm(self.clock, self._isa(row), on_poweroff=self.request_poweroff)

    def _make_ioapic(self, row):
        return self.ioapic

    def _make_hpet(self, row):
        return Hpet(self.clock, self._gsi_line, legacy_irq0=self.irq[0],
                    legacy_irq8=self.irq[self.board.isa_irq("rtc")])

    def _make_smc(self, row):
        p = self.processor
        return AppleSmc(ThermalModel(
            p.tdp_w, p.cores, p.turbo_ghz / p.base_ghz,
            work_s=lambda: sum(cpu.msrs.perf.work_s() for cpu in getattr(self, "vcpus", ())),
            now_ns=self.clock.now_ns))

    def _make_ecam(self, row):
        return Ecam(self.pci)

    def _make_host_bridge(self, row):
        return host_bridge()

    # The GPU's path from root bus f0: the Xeon's root port, the Vega package's PCIe switch.
    def _make_gpu_port(self, row):
        return PciBridge(0x8086, 0x2030, row.pci.bridge_to, ROOT_PORT, *vega.LINK,
                         revision=0x04)

    def _make_gpu_switch_up(self, row):
        return PciBridge(vega.VENDOR_AMD, 0x1470, row.pci.bridge_to, SWITCH_UPSTREAM, *vega.LINK)

    def _make_gpu_switch_down(self, row):
        return PciBridge(vega.VENDOR_AMD, 0x1471, row.pci.bridge_to, SWITCH_DOWNSTREAM,
                         *vega.LINK)

    def _make_net_port(self, row):
        return PciBridge(0x8086, 0x2030, row.pci.bridge_to, ROOT_PORT, 5.0, 4, revision=0x04)

    def _make_nic(self, row):
        """The AQC107; its INTA# reaches the I/O APIC through its root port's route."""
        return Aqc107(self._ethernet_mac, intx=self._intx(row))

    def _make_gpu(self, row):
        return vega.Vega(self.config.graphics_option)

    def _make_gpu_audio(self, row):
        return vega.VegaAudio(self.config.graphics_option)

    def _make_nvme(self, row):
        if self._ssd is None:
            return None
        controller = NvmeController(self._ssd, self._ssd_serial, intx=self._intx(row),
                                    clock=self.clock)
        # Its I/O doorbells in C, on the vCPU's thread, completions to the APICs' C.
        controller.serve_doorbells_in_c(self.mmio.lock, self.apic_bus.cores)
        return controller

    def _make_t2_bridge(self, row):
        """The T2's other functions, when its function 0 (the SSD) is there to be found."""
        return t2_function(row.pci.function) if self._ssd is not None else None

    _make_t2_sep = _make_t2_audio = _make_t2_bridge

    def _make_cbdma0(self, row):
        return CbdmaChannel(row.pci.function, intx=self._intx(row))

    _make_cbdma1 = _make_cbdma2 = _make_cbdma3 = _make_cbdma4 = _make_cbdma5 = _make_cbdma6 = \
        _make_cbdma7 = _make_cbdma0

    def _make_mei(self, row):
        return Mei(intx=self._intx(row))

    def _make_lpss_uart0(self, row):
        """Nothing is wired to the Serial IO UARTs on this machine."""
        return LpssUart(row.pci.function, intx=self._intx(row))

    _make_lpss_uart1 = _make_lpss_uart0

    def _make_smbus(self, row):
        return SmbusController(intx=self._intx(row))

    def _make_wifi(self, row):
        return Bcm4364(intx=self._intx(row))

    def _make_xhci(self, row):
        xhci = XhciController(self.clock, intx=self._intx(row))
        self.usb = Peripherals(xhci, self.board.usb, self.config.pointer_option.devices,
                               sd_image=self._sd_card)
        return xhci

    def inject_memory_error(self, dimm: str, address: int | None = None, *,
                            uncorrected: bool = False) -> dict:
        """An ECC error on DIMM `dimm` ("A0"-"D0"), at physical `address` (which must be on
        that DIMM) or at a line of it (devices/uncore_registers.py), logged in its channel's
        machine-check bank (cpu/mca.py). A corrected one signals the bank's CMCI; an
        uncorrected one (the patrol scrubber's find) a machine-check exception on every
        started CPU, as the package broadcasts it."""
        if dimm not in uncore_registers.DIMMS:
            raise UserError(f"no DIMM {dimm!r}: the slots are "
                            + ", ".join(uncore_registers.DIMMS))
        if address is None:
            address = uncore_registers.address_on(dimm, self.ram.size)
        where = uncore_registers.locate(address, self.ram.size)
        if where is None or where[0] != dimm:
            raise UserError(f"address {address:#x} is not on DIMM {dimm}" + (
                f" (it is on {where[0]})" if where else " (it is not RAM)"))
        imc, channel = uncore_registers.DIMMS[dimm]
        if uncorrected:
            bank = self.mca.uncorrected_memory_error(imc, channel, address)
            for cpu in self.vcpus:
                cpu.machine_check()
        else:
            bank = self.mca.corrected_memory_error(imc, channel, address)
        return {"dimm": dimm, "address": address, "bank": bank, "rank": where[1],
                "uncorrected": uncorrected}

    def reset(self) -> None:
        """Platform reset, in place (a guest reboot): every device of the board, every PCI
        function, every CPU back to power-on; RAM zero. The clock runs on."""
        self.reset_requested = self.poweroff_requested = False
        for device in self.devices.values():
            device.reset()
        self.reset_control.reset()
        self.uncore.reset()
        self.mca.reset()
        self.hwp.reset()
        self.pci.reset()
        for vcpu in self.vcpus:
            vcpu.reset()
        self.ram.clear()

    def memories(self):
        """RAM and the devices' memories (the GPU's VRAM aperture), as suspend.py saves them."""
        from imacpro.suspend import Memories
        gpu = self.devices.get("gpu")
        return Memories(self.ram, *([gpu.aperture] if gpu is not None else []))

    def close(self) -> None:
        """Let go of the host files the machine's devices hold open (USB drives, the SD
        card)."""
        if self.usb is not None:
            self.usb.close()

    def quiesce(self) -> None:
        """Wait for the host work devices have in flight (the SSD's fsyncs on their worker)
        and complete it: before the host side closes what they use."""
        if self.nvme is not None:
            self.nvme.settle()

    # --- device state ---------------------------------------------------------------------

    # Interrupt controllers load after the devices that drive their inputs: each keeps its
    # own record of its input levels (whether the next change is an edge depends on it), and
    # a driver's load re-drives its line. The LAPICs come last: their load raises the CPUs'
    # pins from what is pending.
    _CONTROLLERS = ("pic", "ioapic")

    def save_devices(self) -> dict:
        """Every device's state (devices/contract.py), the LAPICs' included: plain data."""
        return {"devices": {name: device.save() for name, device in self.devices.items()},
                "reset_control": self.reset_control.save(),
                "uncore": self.uncore.save(),
                "mca": self.mca.save(),
                "hwp": self.hwp.save(),
                "lapics": [lapic.save() for lapic in self.lapics]}

    def load_devices(self, state: dict) -> None:
        """The state of `save_devices` from a machine built the same way. A StateError part
        way leaves the machine unusable: the caller discards it (resume builds a new one)."""
        devices = state.get("devices") if isinstance(state, dict) else None
        lapics = state.get("lapics") if isinstance(state, dict) else None
        if not isinstance(devices, dict) or devices.keys() != self.devices.keys():
            raise StateError(f"saved devices {sorted(devices or {})} are not this machine's "
                             f"{sorted(self.devices)}")
        if not isinstance(lapics, list) or len(lapics) != len(self.lapics):
            raise StateError(f"saved state has {len(lapics or [])} local APICs, "
                             f"this machine {len(self.lapics)}")
        order = [name for name in self.devices if name not in self._CONTROLLERS] + \
            [name for name in self._CONTROLLERS if name in self.devices]
        for name in order:
            self.devices[name].load(devices[name])
        self.reset_control.load(state.get("reset_control"))
        self.uncore.load(state.get("uncore"))
        self.mca.load(state.get("mca"))
        self.hwp.load(state.get("hwp"))
        for lapic, saved in zip(self.lapics, lapics):
            lapic.load(saved)

    def _ipi_woke(self, index: int) -> None:
        """A CPU's APIC core sent an IPI to CPU `index`, halted (from the sender's thread,
        inside its slice)."""
        with self.lock:
            self.vcpus[index]._wake()

    def _irq0_acked(self) -> None:
        self.pit.irq0_acked()
        self.hpet.acked(self.irq[0])

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

    def _bars_moved(self) -> None:
        """A BAR moved or decoding changed. The running engine remaps the PCI windows at
        once, so its next access already sees the change (this comes from a configuration
        write, through ECAM or the CF8/CFC ports, never from inside a window, whose pieces
        the remap replaces); the others remap before they run again (on other host threads,
        a slice of theirs still under way ends with the old mapping)."""
        if self.mmio.moved():
            if self.run_loop is not None:
                self.run_loop.windows_moved(self.mmio.generation)
            here = threading.get_ident()
            for cpu in self.vcpus:
                if cpu.running_on == here:
                    cpu.remap_windows()

    def request_reset(self) -> None:
        self.reset_requested = True
        self._stop_cpus()

    def request_poweroff(self) -> None:
        self.poweroff_requested = True
        self._stop_cpus()

    def _stop_cpus(self) -> None:
        if self.run_loop is not None:
            self.run_loop.hold(True)        # no CPU is picked again this run
        for cpu in self.vcpus:
            cpu.uc.emu_stop()

    @contextlib.contextmanager
    def cpus_stopped(self, run_after: bool = True):
        """For the block, no vCPU runs and no TSC deadline fires: the CPUs, the APICs and RAM
        hold still for a look at all of them (a suspend's save). The caller holds the
        machine's lock. On the multi-threaded loop the workers run guest code and fire the
        local APICs' deadlines without that lock, so they are held and waited for (the lock
        let go meanwhile: a worker may need it to hand its CPU back); the single-threaded
        loop runs nothing while its own thread is here. Without `run_after` they stay held
        after a block that did not raise (a suspend: what they did next would be lost)."""
        loop = self.run_loop
        if loop is None:
            yield
            return
        self._stop_cpus()
        with self.lock.released():
            loop.wait_quiet()
        try:
            yield
        except BaseException:
            run_after = True
            raise
        finally:
            if run_after:
                loop.hold(self.reset_requested or self.poweroff_requested)

    # --- running --------------------------------------------------------------------------

    def run(self, timeout_s: float | None = None, stop: Callable[[], bool] | None = None,
            slice_us: int = SLICE_US, events: HostEvents | None = None) -> RunResult:
        """Run until the guest resets or powers off, every CPU stops for good, `stop()` says
        so, a host event handler asks (`events.stop_reason`), or `timeout_s` of host time
        passes. `events`' readers are served after each round of slices and while idle."""
        if self.host_threads > 1:
            return HostThreads(self, self.host_threads).run(timeout_s, stop, slice_us, events)
        with self.lock:
            return self._run_one_thread(timeout_s, stop, slice_us, events)

    def _run_one_thread(self, timeout_s, stop, slice_us, events) -> RunResult:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            ran = False
            for cpu in self.vcpus:
                turn = cpu.runnable()
                if turn:
                    self._run_slice(cpu, slice_us)
                    ran = True
                self.clock.run_due()
                if self._woken:
                    ran = self._run_woken(slice_us) or ran
                if turn and cpu.progressed and SPINNERS_LOOK_AGAIN:
                    self._run_spinners(cpu, slice_us)
                ended = self.guest_ended()
                if ended is not None:
                    return ended
            if events is not None:
                events.poll(0)
            ended = self.host_ended(events, stop, deadline)
            if ended is not None:
                return ended
            if ran:
                continue
            if self.bsp.state is State.SHUTDOWN:
                return RunResult("shutdown", self.bsp.shutdown_reason)
            if not self._idle(deadline, poll=stop is not None or events is not None,
                              events=events):
                return RunResult("halted", "every CPU is halted and no timer is armed")

    def guest_ended(self) -> RunResult | None:
        """The guest reset or powered the machine off: the run ends (either loop)."""
        if self.reset_requested:
            return RunResult("reset")
        if self.poweroff_requested:
            return RunResult("poweroff")
        return None

    def host_ended(self, events: HostEvents | None, stop: Callable[[], bool] | None,
                   deadline: float | None) -> RunResult | None:
        """After the watchdog's look: the host's reasons to end the run, a handler's, the
        caller's `stop()` or the deadline passing (either loop)."""
        if self.watchdog is not None:
            self.watchdog.check()
        if events is not None and events.stop_reason is not None:
            return RunResult("stopped", events.stop_reason)
        if stop is not None and stop():
            return RunResult("stopped")
        if deadline is not None and time.monotonic() >= deadline:
            return RunResult("timeout")
        return None

    def _run_woken(self, slice_us: int) -> bool:
        """The CPUs an interrupt woke from HLT since the last slice run now, ahead of their
        turn: an idle CPU's timer interrupt or IPI waits for the slice in progress, not for
        every busy CPU's. Only those woken so far: a CPU they wake in turn waits for the
        next slice of the round, so busy CPUs are never starved."""
        woken = list(self._woken)
        self._woken.clear()
        ran = False
        for cpu in woken:
            if cpu.runnable():
                self._run_slice(cpu, slice_us)
                ran = True
            self.clock.run_due()
            if self.reset_requested or self.poweroff_requested:
                break
        return ran

    def _run_spinners(self, after: Vcpu, slice_us: int) -> None:
        """The CPUs whose last slice ended spinning on PAUSE run again now, once each,
        in the order they queued: `after`'s slice may have done what they wait for. A queued spinlock hands
        itself to the next waiter in the holder's turn; a waiter that took it only in its
        own turn kept it busy through the turns between, and a CPU whose turn came first
        found it taken: Linux's RCU notes each grace period with a trylock of its node's
        lock, and two CPUs that queued for it in every turn kept each other's trylocks
        failing for 21 s (tests/cpu/test_lock_convoy.py). A spinner still waiting leaves
        again after 16 PAUSEs."""
        for cpu in self.spinners(after):
            if cpu.runnable():
                self._run_slice(cpu, slice_us)
                self.clock.run_due()
                if self.reset_requested or self.poweroff_requested:
                    break

    def spinners(self, after: Vcpu) -> list[Vcpu]:
        """The CPUs but `after` whose last slice ended spinning, in the order they queued
        (Vcpu.queued_since): a queued spinlock is handed on in the order its waiters came,
        so the one it goes to next is most often the first to have queued."""
        return sorted((cpu for cpu in self.vcpus if cpu.spinning and cpu is not after),
                      key=lambda cpu: cpu.queued_since)

    def _run_slice(self, cpu: Vcpu, slice_us: int) -> None:
        """One turn of `cpu`. A timer the guest arms during it that falls due first ends
        the slice then (its interrupt is on time); the timer runs, and the CPU goes on with
        what is left of its turn, rather than waiting for every other CPU's."""
        # Timers that fell due while the last ones ran (a device's callback the host
        # stalled) fire first: the CPU must not run on, reading a clock that has jumped,
        # before the interrupts of that time are raised (as KVM injects before VM entry).
        self.clock.run_due()
        host_ns = time.monotonic_ns()
        timeout_us = self._slice(slice_us, host_ns)
        slice_end = turn_end = host_ns + timeout_us * 1000
        turn_cpu = time.thread_time_ns()
        while True:
            self._run_until(cpu, timeout_us, slice_end)
            if not self._cut or self.reset_requested or self.poweroff_requested:
                break
            self.clock.run_due()
            left_us = (turn_end - time.monotonic_ns()) // 1000
            if left_us < MIN_SLICE_US or not cpu.runnable():
                break
            host_ns = time.monotonic_ns()
            timeout_us = self._slice(left_us, host_ns)
            slice_end = host_ns + timeout_us * 1000
        # Its time ran out (not HLT, not PAUSE): the last run reached its end, or a timer cut
        # it with too little of the turn left to go on.
        ran_out = IRQS_OFF_MAX_US > 0 and \
            time.monotonic_ns() >= min(slice_end, turn_end - MIN_SLICE_US * 1000)
        self.note_turn_end(turn_end, turn_cpu)
        if ran_out:
            self._leave_interrupts_off(cpu)

    def note_turn_end(self, turn_end_ns: int, turn_cpu_ns: int) -> None:
        """A turn that was to end at host CLOCK_MONOTONIC `turn_end_ns` has ended, on a
        thread whose CPU time was `turn_cpu_ns` when it began (either loop). How far it ran
        past its time: device work done inside it (a big DMA), or the host not running the
        thread, or a host call blocking it (a write the host's page cache throttles), or, on
        several threads, a callback waiting for the big lock. CPUs waiting for a thread
        waited that long: the watchdog's statistics show the worst, with the CPU time the
        thread had in that turn, which tells them apart."""
        overrun = time.monotonic_ns() - turn_end_ns
        if overrun > self.max_slice_overrun_ns:
            self.max_slice_overrun_ns = overrun
            self.max_slice_overrun_cpu_ns = time.thread_time_ns() - turn_cpu_ns

    def _run_until(self, cpu: Vcpu, timeout_us: int, end_ns: int) -> None:
        """Run `cpu` for `timeout_us`, and no later than host CLOCK_MONOTONIC `end_ns`: the
        slice ends when the next timer is due, as `_slice` read the clock, so a host that
        stalls the thread before the engine starts does not move it."""
        self._cut = False
        self._running = cpu
        cuts = self.clock.view.cuts             # C's, for a TSC deadline armed in the slice
        if self.clock.realtime:
            self.clock.slice_end_ns = self.clock.at_host(end_ns)
        try:
            cpu.run(timeout_us, end_ns if self.clock.realtime else None)
        finally:
            self.clock.slice_end_ns = None
            self._cut = self._cut or self.clock.view.cuts != cuts

    def _leave_interrupts_off(self, cpu: Vcpu) -> None:
        """A CPU whose time ran out with its interrupts off (Linux holds a spinlock taken
        with irqsave, or a run queue's lock, or is between CLI and STI) runs on until the
        instruction that turns them on, for at most IRQS_OFF_MAX_US more, when another CPU
        could run. Descheduled there, it would hold its lock through a round of every
        runnable CPU's turn, and every CPU wanting the lock would spin through its own turns
        meanwhile: lock-holder preemption, the shape of the RCU stalls of 21 s Linux reported
        (docs/RELIABILITY.md; tests/cpu/test_lock_holder.py). A CPU that halts or spins on
        PAUSE meanwhile is waiting, not holding: its turn ends there."""
        if cpu.state is not State.RUNNING or cpu.interrupts_enabled() or \
                not any(other.runnable() for other in self.vcpus if other is not cpu):
            return
        self.clock.run_due()
        end_ns = time.monotonic_ns() + IRQS_OFF_MAX_US * 1000
        cpu.engine.until_interrupts_on(True)
        try:
            self._run_until(cpu, IRQS_OFF_MAX_US, end_ns)
        finally:
            cpu.engine.until_interrupts_on(False)
        self.irqs_off_runs += 1
        if time.monotonic_ns() >= end_ns and cpu.state is State.RUNNING and \
                not cpu.interrupts_enabled():
            self.irqs_off_capped += 1      # still off: the guest's doing, or the host's

    def _cut_slice(self, deadline_ns: int) -> None:
        """A timer armed during the running slice falls due before it ends: end it then."""
        self._cut = True
        self._running.engine.cut_slice(deadline_ns - self.clock.now_ns())

    def _slice(self, slice_us: int, host_ns: int | None = None) -> int:
        """A slice ends at the next timer, so its interrupt arrives on time (Linux's
        timer check spins for ticks and panics if they come late). Its length from host
        CLOCK_MONOTONIC `host_ns` (now if None), from which the engine holds it to its end."""
        if host_ns is None:
            host_ns = time.monotonic_ns()
        next_ns = self.clock.next_deadline()
        if next_ns is None or not self.clock.realtime:
            timeout_us = slice_us
        else:
            until_us = (next_ns - self.clock.at_host(host_ns)) // 1000
            timeout_us = max(MIN_SLICE_US, min(slice_us, until_us))
        return timeout_us

    def _idle(self, run_deadline: float | None, poll: bool = False,
              events: HostEvents | None = None) -> bool:
        """Every CPU waits: let time pass to the next timer, or until host input comes.
        False if nothing can wake them."""
        wait = events.poll if events is not None else time.sleep
        next_ns = self.clock.next_deadline()
        if next_ns is None:
            if not poll:
                return False
            wait(IDLE_POLL_S)         # nothing armed, but console input may still come
            return True
        if self.idle == "warp":
            self.clock.warp_to(next_ns)
        else:
            wait_s = max(0.0, (next_ns - self.clock.now_ns()) / 1e9)
            if run_deadline is not None:
                wait_s = min(wait_s, max(0.0, run_deadline - time.monotonic()))
            if poll:
                wait_s = min(wait_s, IDLE_POLL_S)
            wait(wait_s)
        self.clock.run_due()
        return True

