"""A small xHCI driver for tests: it programs the controller the way Linux's xhci_hcd does
(rings, contexts, doorbells, events), over RAM and the controller's registers alone."""

from __future__ import annotations

import struct

from imacpro.bus.pci import CMD_BUS_MASTER, CMD_MEMORY, COMMAND, PciBus
from imacpro.devices.usb.device import Setup
from imacpro.devices.usb.xhci import contexts as C
from imacpro.devices.usb.xhci import registers as R
from imacpro.devices.usb.xhci import trb as T
from imacpro.devices.usb.xhci.controller import XhciController
from imacpro.memory.ram import Ram

OP = R.CAPLENGTH
IR0 = R.RTSOFF + 0x20
RING_TRBS = 64
EVENT_TRBS = 64


class Ring:
    """A producer ring of RING_TRBS TRBs whose last is a Link TRB back, toggling the cycle."""

    def __init__(self, driver: XhciDriver, base: int):
        self.driver, self.base = driver, base
        self.index, self.cycle = 0, 1

    def put(self, parameter: int, status: int, control: int) -> int:
        address = self.base + T.SIZE * self.index
        self.driver.ram.write(address, T.Trb(parameter, status, control | self.cycle).pack())
        self.index += 1
        if self.index == RING_TRBS - 1:
            link = self.base + T.SIZE * self.index
            self.driver.ram.write(link, T.Trb(self.base, 0, T.LINK << 10 | T.TOGGLE_CYCLE
                                              | self.cycle).pack())
            self.index, self.cycle = 0, self.cycle ^ 1
        return address


class XhciDriver:
    def __init__(self, controller: XhciController | None = None, ram: Ram | None = None):
        self.ram = ram or Ram(64 << 20)
        self.xhci = controller or XhciController()
        self.bus = PciBus(memory=self.ram)
        self.bus.attach(0x14, 0, self.xhci.pci)
        self.xhci.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
        self.next_free = 0x100000
        self.slot_rings: dict[tuple[int, int], Ring] = {}
        self.events_seen: list[T.Trb] = []

    # --- memory -----------------------------------------------------------------------------

    def alloc(self, size: int, align: int = 64) -> int:
        self.next_free = (self.next_free + align - 1) & ~(align - 1)
        address = self.next_free
        self.next_free += size
        self.ram.write(address, bytes(size))
        return address

    def r32(self, offset: int) -> int:
        return self.xhci.read(offset, 4)

    def w32(self, offset: int, value: int) -> None:
        self.xhci.write(offset, 4, value)

    def w64(self, offset: int, value: int) -> None:
        self.w32(offset, value & 0xFFFF_FFFF)
        self.w32(offset + 4, value >> 32)

    # --- start ------------------------------------------------------------------------------

    def start(self, slots: int = 64) -> None:
        self.w32(OP + R.USBCMD, R.HCRST)
        self.w32(OP + R.CONFIG, slots)
        self.dcbaa = self.alloc(8 * 256)
        self.w64(OP + R.DCBAAP, self.dcbaa)
        self.commands = Ring(self, self.alloc(T.SIZE * RING_TRBS))
        self.w64(OP + R.CRCR, self.commands.base | 1)
        self.event_base = self.alloc(T.SIZE * EVENT_TRBS)
        erst = self.alloc(16)
        self.ram.write(erst, struct.pack("<QII", self.event_base, EVENT_TRBS, 0))
        self.w32(IR0 + R.ERSTSZ, 1)
        self.w64(IR0 + R.ERDP, self.event_base)
        self.w64(IR0 + R.ERSTBA, erst)
        self.event_index, self.event_cycle = 0, 1
        self.w32(IR0 + R.IMAN, R.IMAN_IE)
        self.w32(OP + R.USBCMD, R.RUN | R.INTE)

    # --- events -----------------------------------------------------------------------------

    def events(self) -> list[T.Trb]:
        """The events written since the last call; ERDP moves past them (EHB cleared)."""
        out = []
        while True:
            raw = self.ram.read(self.event_base + T.SIZE * self.event_index, T.SIZE)
            event = T.Trb.unpack(raw)
            if event.cycle != self.event_cycle:
                break
            out.append(event)
            self.event_index += 1
            if self.event_index == EVENT_TRBS:
                self.event_index, self.event_cycle = 0, self.event_cycle ^ 1
        if out:
            self.w32(IR0 + R.IMAN, R.IMAN_IP | R.IMAN_IE)
            self.w64(IR0 + R.ERDP, self.event_base + T.SIZE * self.event_index | R.ERDP_EHB)
        self.events_seen += out
        return out

    def command(self, parameter: int, kind: int, control: int = 0) -> T.Trb:
        address = self.commands.put(parameter, 0, kind << 10 | control)
        self.w32(R.DBOFF, 0)
        completions = [e for e in self.events() if e.type == T.COMMAND_COMPLETION]
        assert len(completions) == 1, completions
        assert completions[0].parameter == address
        return completions[0]

    # --- devices ----------------------------------------------------------------------------

    def portsc(self, port: int) -> int:
        return self.r32(OP + R.PORTS + 0x10 * (port - 1))

    def reset_port(self, port: int) -> None:
        self.w32(OP + R.PORTS + 0x10 * (port - 1), 1 << 4 | 1 << 9)

    def enable_slot(self) -> int:
        done = self.command(0, T.ENABLE_SLOT)
        assert done.status >> 24 == T.SUCCESS, done
        return done.slot

    def address_device(self, slot: int, port: int, speed: int, route: int = 0,
                       max_packet: int = 64, block: bool = False) -> T.Trb:
        output = self.alloc(C.DEVICE_CONTEXT)
        self.ram.write(self.dcbaa + 8 * slot, struct.pack("<Q", output))
        self.output = getattr(self, "output", {})
        self.output[slot] = output
        ring = Ring(self, self.alloc(T.SIZE * RING_TRBS))
        self.slot_rings[slot, 1] = ring
        context = self.alloc(C.INPUT_CONTEXT)
        self.ram.write(context, struct.pack("<II", 0, 3))
        self.ram.write(context + 32, struct.pack("<IIII", route | speed << 20 | 1 << 27,
                                                 port << 16, 0, 0))
        self.ram.write(context + 64, struct.pack("<IIQ", 0, 3 << 1 | C.CONTROL << 3
                                                 | max_packet << 16, ring.base | 1))
        return self.command(context, T.ADDRESS_DEVICE, slot << 24 | (T.BSR if block else 0))

    def context(self, slot: int, index: int) -> list[int]:
        return C.dwords(self.ram.read(self.output[slot] + C.SIZE * index, C.SIZE))

    def configure(self, slot: int, endpoints: list[tuple[int, int, int]]) -> T.Trb:
        """Add endpoints: (USB address, context type, max packet)."""
        context = self.alloc(C.INPUT_CONTEXT)
        add = 1
        for address, kind, size in endpoints:
            dci = (address & 0xF) * 2 + (1 if address & 0x80 else 0)
            add |= 1 << dci
            ring = Ring(self, self.alloc(T.SIZE * RING_TRBS))
            self.slot_rings[slot, dci] = ring
            self.ram.write(context + 32 * (dci + 1),
                           struct.pack("<IIQ", 0, 3 << 1 | kind << 3 | size << 16,
                                       ring.base | 1))
        self.ram.write(context, struct.pack("<II", 0, add))
        self.ram.write(context + 32, struct.pack("<I", 31 << 27))
        return self.command(context, T.CONFIGURE_ENDPOINT, slot << 24)

    def control(self, slot: int, setup: Setup, data: bytes = b"") -> tuple[int, bytes]:
        """A control transfer as Linux queues it; (completion code, IN data)."""
        ring = self.slot_rings[slot, 1]
        ring.put(int.from_bytes(setup.pack(), "little"), 8,
                 T.SETUP << 10 | T.IDT | (3 if setup.device_to_host else 2) << 16
                 if setup.length else T.SETUP << 10 | T.IDT)
        buffer = 0
        if setup.length:
            buffer = self.alloc(max(setup.length, 1))
            if not setup.device_to_host:
                self.ram.write(buffer, data)
            ring.put(buffer, setup.length, T.DATA << 10 | T.ISP
                     | (T.DIR_IN if setup.device_to_host else 0))
        status_in = not setup.length or not setup.device_to_host
        ring.put(0, 0, T.STATUS << 10 | T.IOC | (T.DIR_IN if status_in else 0))
        self.w32(R.DBOFF + 4 * slot, 1)
        events = [e for e in self.events() if e.type == T.TRANSFER_EVENT]
        assert events, "no transfer event"
        code = events[-1].status >> 24
        moved = setup.length
        for e in events:
            if e.status >> 24 == T.SHORT_PACKET:
                moved = setup.length - (e.status & 0xFFFFFF)
            elif e.status >> 24 != T.SUCCESS:
                code = e.status >> 24
        if setup.device_to_host and buffer:
            return code, self.ram.read(buffer, moved)
        return code, b""

    def queue_in(self, slot: int, dci: int, length: int) -> int:
        buffer = self.alloc(length)
        self.slot_rings[slot, dci].put(buffer, length, T.NORMAL << 10 | T.ISP | T.IOC)
        self.w32(R.DBOFF + 4 * slot, dci)
        return buffer
