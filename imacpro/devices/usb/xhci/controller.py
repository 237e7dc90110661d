"""The PCH's xHCI controller (PCI 00:14.0, 8086:a2af, class 0c0330, subsystem 8086:7270),
which Linux's xhci_hcd drives.

The register map is in registers.py, the rings in rings.py, the contexts in contexts.py, the
root hub's ports in ports.py; this file is the PCI function, the register file and the
interrupters, and commands.py and transfers.py are what the command ring and the doorbells
run. A guide to the whole is docs/USB.md.

Timing: commands and transfers run when their doorbell is written, and their events are
written and the interrupt sent before the write returns; a device that has nothing to send
(a keyboard between key presses) leaves its TD pending until it calls `on_ready`. Port
resets complete at once.

Interrupts: MSI (one message, for interrupter 0's events; Linux asks for one) or INTA#,
which is asserted while interrupter 0's pending bit is set and its interrupts are enabled.
An interrupter's moderation interval (IMOD) is kept but not applied: events from one doorbell
write are posted together, and the pending bit stays set until software clears it, so they
cost one interrupt.

A hostile guest: rings, contexts and TRBs end in completion codes (TRB Error, Context State
Error, Parameter Error, ...) when they are wrong, and in a host system error (USBSTS.HSE,
the controller halts) when a ring or a context lies outside memory, which is what a real
controller's master abort gives; a data buffer outside memory ends its TD with Data Buffer
Error. Nothing the guest writes raises out of the device or makes it loop.
"""

from __future__ import annotations

import logging
import struct

from imacpro.bus.msi import Msi
from imacpro.bus.pci import MemoryBar, PciFunction
from imacpro.devices.usb.device import UsbDevice
from imacpro.devices.usb.xhci import registers as R
from imacpro.devices.usb.xhci import state
from imacpro.devices.usb.xhci import trb as T
from imacpro.devices.usb.xhci.commands import Commands
from imacpro.devices.usb.xhci.ports import Port
from imacpro.devices.usb.xhci.rings import ConsumerRing, EventRing, RingError
from imacpro.devices.usb.xhci.transfers import Transfers
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

VENDOR_INTEL, DEVICE_XHCI = 0x8086, 0xA2AF
SUBSYSTEM = (0x8086, 0x7270)
CLASS_XHCI = 0x0C0330
REVISION = 0x00
SBRN = 0x60                     # serial bus release number register (PCI config): USB 3.0
FLADJ = 0x61                    # frame length adjustment (PCI config): the default 0x20


class Interrupter:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.pending = False          # IMAN.IP
        self.enabled = False          # IMAN.IE
        self.imod = R.IMOD_DEFAULT
        self.erstsz = 0
        self.erstba = 0
        self.erdp = 0
        self.busy = False             # ERDP.EHB
        self.ring = EventRing()


class XhciController(Commands, Transfers):
    def __init__(self, clock=None, intx: IrqLine | None = None):
        self.clock = clock
        self.pci = _XhciFunction(self)
        self.msi = Msi(self.pci)
        self.pci.add_memory_bar(MemoryBar(0, R.BAR_SIZE, self))
        if intx is not None:
            self.pci.set_interrupt_pin(intx)
        self.ports = [Port(n, usb3=n in R.USB3_PORTS) for n in range(1, R.MAX_PORTS + 1)]
        self.interrupters = [Interrupter() for _ in range(R.MAX_INTERRUPTERS)]
        self.command_ring = ConsumerRing()
        self.legacy = 0
        self.legacy_control = 0
        self._reset_registers()

    # --- the devices on the root ports --------------------------------------------------------

    def plug(self, port: int, device: UsbDevice) -> None:
        """Attach `device` to root port `port` (1-based); the guest sees a connect."""
        device.on_ready = lambda address, d=device: self.device_ready(d, address)
        if hasattr(device, "on_child_ready"):      # a hub: the devices behind it too
            device.on_child_ready = self.device_ready
        self._port_changed(self.ports[port - 1], self.ports[port - 1].attach(device))

    def unplug(self, port: int) -> UsbDevice | None:
        device, changed = self.ports[port - 1].detach()
        if device is not None:
            device.on_ready = lambda address: None
            if hasattr(device, "on_child_ready"):
                device.on_child_ready = lambda d, address: None
            self._port_changed(self.ports[port - 1], changed)
        return device

    # --- reset -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Platform reset: the PCI function and the controller."""
        self.pci.reset()
        self.legacy = self.legacy_control = 0
        self._reset_registers()

    def _reset_registers(self) -> None:
        """HCRST (and power-on): every register to its default; slots disabled; the ports
        retrain, so connected devices show as connects."""
        self.usbcmd = 0
        self.usbsts = R.HCH
        self.dnctrl = 0
        self.crcr_low = 0
        self.command_ring = ConsumerRing()
        self.command_running = False
        self.dcbaap = 0
        self.config = 0
        for interrupter in self.interrupters:
            interrupter.reset()
        self.slots: dict = {}
        for port in self.ports:
            port.reset()
        self._update_intx()

    def save(self) -> dict:
        return state.save(self)

    def load(self, saved: dict) -> None:
        state.load(self, saved)

    # --- registers -------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size == 8:
            return self.read(offset, 4) | self.read(offset + 4, 4) << 32
        base = offset & ~3
        value = self._read_dword(base)
        return value >> 8 * (offset - base) & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            self.write(offset, 4, value & 0xFFFF_FFFF)
            self.write(offset + 4, 4, value >> 32)
            return
        if size != 4 or offset & 3:
            return                 # the xHCI's registers are written as dwords (§5.1)
        try:
            self._write_dword(offset, value)
        except RingError as exc:
            self.host_system_error(str(exc))

    def _read_dword(self, offset: int) -> int:
        if offset < R.CAPLENGTH:
            caps = R.CAPABILITY_REGISTERS
            return struct.unpack_from("<I", caps, offset)[0] if offset < len(caps) else 0
        if offset < R.RTSOFF:
            return self._read_operational(offset - R.CAPLENGTH)
        if offset < R.DBOFF:
            return self._read_runtime(offset - R.RTSOFF)
        if offset < R.XECP:
            return 0                                     # doorbells read 0
        if offset == R.LEGACY_SUPPORT:
            return struct.unpack_from("<I", R.EXTENDED_CAPABILITIES, 0)[0] | self.legacy
        if offset == R.LEGACY_SUPPORT + 4:
            return self.legacy_control
        if offset < R.XECP_END:
            return struct.unpack_from("<I", R.EXTENDED_CAPABILITIES, offset - R.XECP)[0]
        return 0

    def _write_dword(self, offset: int, value: int) -> None:
        if offset < R.CAPLENGTH:
            return
        if offset < R.RTSOFF:
            self._write_operational(offset - R.CAPLENGTH, value)
        elif offset < R.DBOFF:
            self._write_runtime(offset - R.RTSOFF, value)
        elif offset < R.DBOFF + 4 * (R.MAX_SLOTS + 1):
            self._doorbell((offset - R.DBOFF) // 4, value)
        elif offset == R.LEGACY_SUPPORT:
            self.legacy = value & (R.BIOS_OWNED | R.OS_OWNED)
        elif offset == R.LEGACY_SUPPORT + 4:
            self.legacy_control = value & 0x0000_E01F      # the SMI enables; no SMIs here

    def _read_operational(self, offset: int) -> int:
        if offset == R.USBCMD:
            return self.usbcmd
        if offset == R.USBSTS:
            return self.usbsts
        if offset == R.PAGESIZE:
            return 1
        if offset == R.DNCTRL:
            return self.dnctrl
        if offset == R.CRCR:
            return R.CRCR_CRR if self.command_running else 0
        if offset == R.DCBAAP:
            return self.dcbaap & 0xFFFF_FFFF
        if offset == R.DCBAAP + 4:
            return self.dcbaap >> 32
        if offset == R.CONFIG:
            return self.config
        if R.PORTS <= offset < R.PORTS + 0x10 * R.MAX_PORTS:
            port = self.ports[(offset - R.PORTS) // 0x10]
            register = offset & 0xF
            if register == 0:
                return port.portsc
            return {4: port.pmsc, 8: 0, 0xC: port.hlpmc}[register]
        return 0

    def _write_operational(self, offset: int, value: int) -> None:
        if offset == R.USBCMD:
            self._write_usbcmd(value)
        elif offset == R.USBSTS:
            self.usbsts &= ~(value & R.USBSTS_W1C)
            self._update_intx()
        elif offset == R.DNCTRL:
            self.dnctrl = value & 0xFFFF
        elif offset == R.CRCR:
            self._write_crcr_low(value)
        elif offset == R.CRCR + 4:
            if not self.command_running:
                self.command_ring.set((value << 32) | (self.crcr_low & ~0x3F),
                                      self.crcr_low & R.CRCR_RCS)
        elif offset == R.DCBAAP:
            self.dcbaap = (self.dcbaap & ~0xFFFF_FFFF) | (value & ~0x3F)
        elif offset == R.DCBAAP + 4:
            self.dcbaap = (self.dcbaap & 0xFFFF_FFFF) | value << 32
        elif offset == R.CONFIG:
            self.config = (min(value & 0xFF, R.MAX_SLOTS)) | (value & 0x300)
        elif R.PORTS <= offset < R.PORTS + 0x10 * R.MAX_PORTS:
            port = self.ports[(offset - R.PORTS) // 0x10]
            register = offset & 0xF
            if register == 0:
                self._port_changed(port, port.write_portsc(value))
            elif register == 4:
                port.pmsc = value
            elif register == 0xC:
                port.hlpmc = value

    def _write_usbcmd(self, value: int) -> None:
        if value & R.HCRST:
            self._reset_registers()
            return
        was_running, was_enabled = self.usbcmd & R.RUN, self.usbcmd & R.INTE
        self.usbcmd = value & R.USBCMD_WRITABLE
        if self.usbcmd & R.INTE and not was_enabled:
            self._signal(0)
        if self.usbcmd & R.RUN and not was_running:
            self.usbsts &= ~R.HCH
            for port in self.ports:              # connects seen while halted
                if port.changes:
                    self._post_port_event(port)
        elif not self.usbcmd & R.RUN and was_running:
            self.usbsts |= R.HCH
            self.command_running = False
        # Save and restore state (suspend): this controller's state is all in its registers
        # and the guest's memory, so both complete at once and restore never fails.
        self.usbsts &= ~(R.SSS | R.RSS | R.SRE)
        self._update_intx()

    def _write_crcr_low(self, value: int) -> None:
        if self.command_running:
            if value & (R.CRCR_CS | R.CRCR_CA):
                self.command_running = False
                self._post(T.event(T.COMMAND_COMPLETION, self.command_ring.dequeue,
                                   T.COMMAND_RING_STOPPED))
            return
        self.crcr_low = value

    def _read_runtime(self, offset: int) -> int:
        if offset == 0:                                         # MFINDEX
            if not self.usbcmd & R.RUN or self.clock is None:
                return 0
            return self.clock.now_ns() // 125_000 & 0x3FFF
        if offset < 0x20 or offset >= 0x20 + 0x20 * R.MAX_INTERRUPTERS:
            return 0
        ir = self.interrupters[(offset - 0x20) // 0x20]
        register = offset & 0x1F
        if register == R.IMAN:
            return (R.IMAN_IP if ir.pending else 0) | (R.IMAN_IE if ir.enabled else 0)
        if register == R.IMOD:
            return ir.imod
        if register == R.ERSTSZ:
            return ir.erstsz
        if register in (R.ERSTBA, R.ERSTBA + 4):
            return ir.erstba >> (32 if register & 4 else 0) & 0xFFFF_FFFF
        if register in (R.ERDP, R.ERDP + 4):
            value = ir.erdp | (R.ERDP_EHB if ir.busy else 0)
            return value >> (32 if register & 4 else 0) & 0xFFFF_FFFF
        return 0

    def _write_runtime(self, offset: int, value: int) -> None:
        if offset < 0x20 or offset >= 0x20 + 0x20 * R.MAX_INTERRUPTERS:
            return
        n = (offset - 0x20) // 0x20
        ir = self.interrupters[n]
        register = offset & 0x1F
        if register == R.IMAN:
            if value & R.IMAN_IP:
                ir.pending = False
            was_enabled, ir.enabled = ir.enabled, bool(value & R.IMAN_IE)
            if ir.enabled and not was_enabled and ir.pending:
                self._signal(n)
            self._update_intx()
        elif register == R.IMOD:
            ir.imod = value
        elif register == R.ERSTSZ:
            ir.erstsz = value & 0xFFFF
        elif register == R.ERSTBA:
            # The table is read when the high half is written (software writes the 64-bit
            # register low half first, as xHCI 1.1 §5.1 asks).
            ir.erstba = (ir.erstba & ~0xFFFF_FFFF) | (value & ~0x3F)
        elif register == R.ERSTBA + 4:
            ir.erstba = (ir.erstba & 0xFFFF_FFFF) | value << 32
            count = min(ir.erstsz, 1 << R.ERST_MAX)
            ir.ring.configure(self._dma_read, ir.erstba, count)
        elif register == R.ERDP:
            ir.erdp = (ir.erdp & ~0xFFFF_FFFF) | (value & ~0xF)
            self._consumed(n, handled=bool(value & R.ERDP_EHB))
        elif register == R.ERDP + 4:
            ir.erdp = (ir.erdp & 0xFFFF_FFFF) | value << 32
            self._consumed(n, handled=False)

    # --- DMA -------------------------------------------------------------------------------

    def _dma_read(self, address: int, length: int) -> bytes | None:
        return self.pci.dma_read(address, length)

    def _dma_write(self, address: int, data: bytes) -> bool:
        return self.pci.dma_write(address, data)

    def host_system_error(self, why: str) -> None:
        """A DMA to or from somewhere that is not memory: HSE, and the controller halts."""
        log.info("xHCI: host system error: %s", why)
        self.usbsts |= R.HSE | R.HCH
        self.usbcmd &= ~R.RUN
        self.command_running = False
        if self.usbcmd & R.HSEE:
            self._update_intx()

    @property
    def running(self) -> bool:
        return bool(self.usbcmd & R.RUN) and not self.usbsts & R.HSE

    # --- events and interrupts -------------------------------------------------------------

    def _post(self, event: T.Trb, interrupter: int = 0) -> None:
        if not 0 <= interrupter < R.MAX_INTERRUPTERS:
            interrupter = 0
        ir = self.interrupters[interrupter]
        if ir.ring.post(event, ir.erdp, self._dma_write):
            self._raise(interrupter)

    def _consumed(self, n: int, handled: bool) -> None:
        """Software moved ERDP: events waiting for room go in. `handled`: the write cleared
        Event Handler Busy (the end of an interrupt handler); events it has not consumed
        then make a new interrupt (§4.17.2). A write that leaves EHB alone (setting the
        pointer up) raises nothing."""
        ir = self.interrupters[n]
        if handled:
            ir.busy = False
        try:
            wrote = ir.ring.flush(ir.erdp, self._dma_write)
        except RingError as exc:
            self.host_system_error(str(exc))
            return
        if wrote or handled and ir.ring.has_events_after(ir.erdp):
            self._raise(n)

    def _raise(self, n: int) -> None:
        """New events on interrupter n's ring. While its handler is busy (EHB) they wait
        for the handler's ERDP write; otherwise the pending bit goes up (§4.17.2)."""
        ir = self.interrupters[n]
        if ir.busy:
            return
        ir.busy = ir.pending = True
        self.usbsts |= R.EINT
        self._signal(n)
        self._update_intx()

    def _signal(self, n: int) -> None:
        """Interrupter n's pending bit went up (or its enable did): with MSI, the message,
        which clears the pending bit once it is written (§5.5.2.1)."""
        ir = self.interrupters[n]
        if n == 0 and self.usbcmd & R.INTE and ir.enabled and ir.pending \
                and self.msi.enabled:
            ir.pending = False
            self.msi.send()

    def _update_intx(self) -> None:
        ir = self.interrupters[0]
        asserted = not self.msi.enabled and bool(
            self.usbcmd & R.INTE and ir.enabled and ir.pending
            or self.usbcmd & R.HSEE and self.usbsts & R.HSE)
        self.pci.set_intx(asserted)

    def _port_changed(self, port: Port, new_changes: int) -> None:
        if not new_changes:
            return
        self.usbsts |= R.PCD
        if self.running:
            self._post_port_event(port)

    def _post_port_event(self, port: Port) -> None:
        self._post(T.event(T.PORT_STATUS_CHANGE, port.number << 24))


class _XhciFunction(PciFunction):
    def __init__(self, controller: XhciController):
        super().__init__(VENDOR_INTEL, DEVICE_XHCI, CLASS_XHCI, REVISION,
                         subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        # The registers the capabilities added next take into their power-on copy.
        self.config[SBRN] = 0x30
        self.config[FLADJ] = 0x20
        self.writable[FLADJ] = 0x3F
        self.controller = controller

    def config_written(self, offset: int, size: int) -> None:
        self.controller._update_intx()
