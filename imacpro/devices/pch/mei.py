"""The PCH's Management Engine Interface (HECI #1), 00:16.0: Intel 8086:a2ba rev 00, class
078000, subsystem 8086:7270, the 200-series ("Kaby Point") PCH's window onto the Management
Engine's firmware (CSME 11), as Linux 6.1's mei_me driver drives it (pci-me.c with the
MEI_ME_PCH8_CFG configuration, hw-me.c, hbm.c, init.c, interrupt.c).

Configuration space: BAR0 is 4 KiB of 64-bit memory; capabilities at 50 (power management,
version 3, D0/D3hot, NoSoftRst) and 8C (MSI, 64-bit, one vector; the driver takes MSI when
offered, INTA# otherwise). The firmware status registers the driver reads (HFS_1..HFS_6) are
read-only config dwords, those of a healthy ME in normal operation:

    | off | register | value    | meaning                                                     |
    |-----|----------|----------|-------------------------------------------------------------|
    | 40  | HFS_1    | 80000245 | working state 5 (normal), operation state 1 (M0 with UMA),  |
    |     |          |          | init complete (bit 9), no error (15:12 = 0), operation mode |
    |     |          |          | 0 (normal, so no SPS/recovery quirk applies), bit 31: D0i3  |
    |     |          |          | supported (mei_me then uses H_D0I3C for runtime PM)         |
    | 48  | HFS_2    | 00000000 | no power-management event, no progress code pending         |
    | 60  | HFS_3    | 00000020 | FW SKU (6:4) = 2, consumer firmware                         |
    | 64  | HFS_4..6 | 00000000 | (64, 68, 6C) nothing to report; no Boot Guard (the T2       |
    |     |          |          | verifies the Mac's boot)                                    |

BAR0 (32-bit accesses; others read 0 and are ignored):

    | off | register  | model                                                                |
    |-----|-----------|----------------------------------------------------------------------|
    | 000 | H_CB_WW   | W: a slot into the host circular buffer at H_CBWP; dropped when the  |
    |     |           | buffer is full or the host holds H_RST. Reads 0                      |
    | 004 | H_CSR     | 31:24 H_CBD = 128 slots, 23:16 H_CBWP, 15:8 H_CBRP (RO); 6 D0i3 IS   |
    |     |           | (RW1C, never set), 5 D0i3 IE, 4 H_RST, 3 H_RDY, 0 H_IE (RW); 2 H_IG  |
    |     |           | (W: the doorbell, reads 0); 1 H_IS (RW1C: the ME's interrupt)       |
    | 008 | ME_CB_RW  | R: the next slot of the ME circular buffer (0 when it is empty)      |
    | 00C | ME_CSR_HA | RO: 31:24 ME_CBD = 128, 23:16 ME_CBWP, 15:8 ME_CBRP, 3 ME_RDY,       |
    |     |           | 0 ME_IE. ME_RST, ME_IS, ME_IG and ME_PGIC read 0                     |
    | 010 | H_HPG_CSR | 1:0 PGI, PGIHEXR: kept (legacy power gating, unused with D0i3)       |
    | 800 | H_D0I3C   | 2 I3, 1 IR (RW); 0 CIP reads 0: D0i3 entry and exit complete at once |

The ME's side, all of it done within the host's register write:
  - Link reset: H_RST going 1 (the driver's hw_reset) clears H_RDY and both circular buffers
    and forgets the HBM session; the ME is ready again at once (ME_RDY) and says so with H_IS.
    The driver then drops H_RST and sets H_RDY (hw_start).
  - The doorbell (H_IG) while the link is up (H_RDY, not H_RST): the ME takes the whole
    messages in the host buffer, in order, answering each into the ME buffer, and raises H_IS
    when it took or wrote anything (the driver learns that its buffer is free again only from
    that interrupt). It takes a message only while its own buffer has room for the largest
    answer: a host that does not read stalls its own writes, and nothing queues up. A header
    whose length runs past what the host wrote discards the buffer (a protocol error).
  - Host bus messages (me_addr = host_addr = 0), HBM version 2.0 (ME 11's: the driver's 2.2
    is answered "not supported, ME max 2.0", which turns off the DMA ring, the capabilities
    message and vtags; power gating, dynamic and fixed-address clients and notifications stay):
    HOST_START; HOST_STOP (the session stops until the next reset); HOST_ENUM (the client
    bitmap); HOST_CLIENT_PROPERTIES (CLIENT_NOT_FOUND for an address without a client);
    CLIENT_CONNECT, CLIENT_DISCONNECT and NOTIFY (NOT_FOUND: no dynamic client exists);
    FLOW_CONTROL (nothing to credit); PG_ISOLATION_ENTRY (granted). Anything else, or a
    request before HOST_START, is dropped. `request_stop()` sends ME_STOP_REQ.
  - Clients: none by default, so the driver's client bus stays empty. With `mkhi=True` the ME
    has the fixed-address MKHI client (55213584-9a29-4916-badf-0fb7ed682aeb at address 7),
    which answers GET_FW_VERSION with FW_VERSIONS (sysfs fw_ver: 0:11.12.50.1400,
    0:11.12.50.1400, 0:11.0.0.1180) and takes SET_OS_VER without an answer.
  - Interrupt: (H_IS and H_IE) or (D0i3 IS and D0i3 IE). Under MSI each rising edge sends the
    vector, if bus mastering is on (the driver's quick handler clears H_IE and its thread sets
    it again, which is an edge when the ME spoke meanwhile); otherwise INTA# follows the level.

Not modelled, and why: the DMA ring, vtags and client DMA (HBM 2.1+: not offered); host
messages in fragments (msg_complete 0) or split over doorbells: dropped (HBM messages never
are, the MKHI requests fit one message, and no other client exists);
legacy power gating (H_HPG_CSR is kept, nothing acts: a D0i3-capable ME is never asked);
D0i3 transition interrupts (no transition is ever in progress); the ME's own resets (it never
fails); the PCI power state (D3hot keeps every register, NoSoftRst); ME_TRC (PCH15 only).

Saved state: the configuration space, both circular buffers with their pointers, the control
bits, the HBM session, the interrupt level (MSI edges continue where they were).
"""

from __future__ import annotations

import logging
import struct
import uuid
from array import array

from imacpro.bus.msi import Msi
from imacpro.bus.pci import MemoryBar, PciFunction
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# --- identity -----------------------------------------------------------------------------
VENDOR_INTEL, DEVICE_KBP_MEI = 0x8086, 0xA2BA
SUBSYSTEM = (0x8086, 0x7270)
CLASS_COMMUNICATION_OTHER = 0x078000
REVISION = 0x00

# --- configuration space ------------------------------------------------------------------
HFS = {0x40: 0x8000_0245, 0x48: 0, 0x60: 0x20, 0x64: 0, 0x68: 0, 0x6C: 0}
HFS_1 = 0x40
PM_CAPABILITY, MSI_CAPABILITY = 0x50, 0x8C
CAP_PM = 0x01
PMC = 0xC803                      # version 3; PME from D0, D3hot, D3cold
PMCSR_NO_SOFT_RESET = 1 << 3
PMCSR_WRITABLE = 0x0103           # power state 1:0, PME enable 8
BAR_SIZE = 4096

# --- registers ----------------------------------------------------------------------------
H_CB_WW, H_CSR, ME_CB_RW, ME_CSR_HA, H_HPG_CSR = 0x000, 0x004, 0x008, 0x00C, 0x010
H_D0I3C = 0x800
H_IE, H_IS, H_IG, H_RDY, H_RST = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
H_D0I3C_IE, H_D0I3C_IS = 1 << 5, 1 << 6
ME_IE_HRA, ME_RDY_HRA = 1 << 0, 1 << 3
HPG_BITS = 0x3                    # PGIHEXR, PGI
D0I3C_IR, D0I3C_I3 = 1 << 1, 1 << 2
D0I3C_BITS = D0I3C_IR | D0I3C_I3
DEPTH = 128                       # slots (dwords) in each circular buffer
POINTER = 0xFF                    # the read and write pointers count modulo 256

# --- messages (drivers/misc/mei/hw.h) -----------------------------------------------------
HDR_LENGTH_SHIFT, HDR_LENGTH_MASK = 16, 0x1FF
HDR_UNSUPPORTED = 0x7 << 25 | 1 << 28 | 1 << 29    # reserved, extended header, DMA ring
HDR_COMPLETE = 1 << 31
HBM_VERSION = (2, 0)              # (major, minor): ME 11's
HOST_START_REQ, HOST_STOP_REQ, ME_STOP_REQ, HOST_ENUM_REQ = 0x01, 0x02, 0x03, 0x04
HOST_CLIENT_PROPERTIES_REQ, CLIENT_CONNECT_REQ, CLIENT_DISCONNECT_REQ = 0x05, 0x06, 0x07
FLOW_CONTROL, PG_ISOLATION_ENTRY_REQ, PG_ISOLATION_EXIT_RES = 0x08, 0x0A, 0x8B
CLIENT_DISCONNECT_RES, ADD_CLIENT_RES, NOTIFY_REQ = 0x87, 0x8F, 0x10
RESPONSE = 0x80
HBMS_SUCCESS, HBMS_CLIENT_NOT_FOUND = 0, 1
PROPERTIES_SIZE = 24              # struct mei_client_properties
MAX_REPLY_SLOTS = 1 + (4 + 32 + 3) // 4    # the enumeration answer, the largest

# --- the MKHI client (drivers/misc/mei/mkhi.h, bus-fixup.c) -------------------------------
MKHI_ADDRESS = 7
MKHI_UUID = uuid.UUID("55213584-9a29-4916-badf-0fb7ed682aeb")
MKHI_PROPERTIES = struct.pack("<16sBBBBI", MKHI_UUID.bytes_le, 1, 1, MKHI_ADDRESS, 0, 2048)
MKHI_GEN_GROUP, MKHI_GET_FW_VERSION = 0xFF, 0x02
MKHI_FWCAPS_GROUP, MKHI_SET_OS_VER = 0x03, 0x06
# (major, minor, hotfix, build): the code, recovery and FITC images of an ME 11.12.
FW_VERSIONS = ((11, 12, 50, 1400), (11, 12, 50, 1400), (11, 0, 0, 1180))

IDLE, STARTED, STOPPED = "idle", "started", "stopped"       # the HBM session
GUEST_ERRORS_LOGGED = 10
U32 = 0xFFFF_FFFF


class Mei:
    """The function and the ME's firmware behind it. `mkhi`: the ME has its fixed-address
    MKHI client (the driver's bus fixup reads the firmware version through it)."""

    def __init__(self, intx: IrqLine | None = None, mkhi: bool = False):
        self.mkhi = mkhi
        self.guest_errors = 0
        self.pci = _Function(self)
        self.pci.place_next_capability(PM_CAPABILITY)
        self.pci.add_capability(CAP_PM, struct.pack("<HHBB", PMC, PMCSR_NO_SOFT_RESET, 0, 0),
                                struct.pack("<HH", 0, PMCSR_WRITABLE))
        self.pci.place_next_capability(MSI_CAPABILITY)
        self.msi = Msi(self.pci, 1)
        self.pci.add_memory_bar(MemoryBar(0, BAR_SIZE, self))
        for offset, value in HFS.items():
            struct.pack_into("<I", self.pci.config, offset, value)
        if intx is not None:
            self.pci.set_interrupt_pin(intx)
        self.pci.mark_reset_state()
        self._power_on()

    # --- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Platform reset: the function and the interface; the ME comes up ready."""
        self.pci.reset()
        self._power_on()

    def _power_on(self) -> None:
        self.host_buffer = array("I", bytes(4 * DEPTH))
        self.me_buffer = array("I", bytes(4 * DEPTH))
        self.h_wp = self.h_rp = self.me_wp = self.me_rp = 0
        self.h_ie = self.h_is = self.h_rdy = self.h_rst = False
        self.d0i3_ie = self.d0i3_is = False
        self.me_ready = True
        self.hpg = 0
        self.d0i3c = 0
        self.session = IDLE
        self.irq_level = False
        self._update_interrupt()

    # --- registers ------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size != 4 or offset & 3:
            return 0
        if offset == H_CSR:
            return self._h_csr()
        if offset == ME_CSR_HA:
            return (DEPTH << 24 | self.me_wp << 16 | self.me_rp << 8
                    | (ME_RDY_HRA | ME_IE_HRA if self.me_ready else 0))
        if offset == ME_CB_RW:
            return self._pop_me_slot()
        if offset == H_HPG_CSR:
            return self.hpg
        if offset == H_D0I3C:
            return self.d0i3c
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset & 3:
            return
        value &= U32
        if offset == H_CB_WW:
            self._push_host_slot(value)
        elif offset == H_CSR:
            self._write_h_csr(value)
        elif offset == H_HPG_CSR:
            self.hpg = value & HPG_BITS
        elif offset == H_D0I3C:
            self.d0i3c = value & D0I3C_BITS     # the transition is done: CIP stays 0

    def _h_csr(self) -> int:
        return (DEPTH << 24 | self.h_wp << 16 | self.h_rp << 8 | self.h_rst * H_RST
                | self.h_rdy * H_RDY | self.h_is * H_IS | self.h_ie * H_IE
                | self.d0i3_ie * H_D0I3C_IE | self.d0i3_is * H_D0I3C_IS)

    def _write_h_csr(self, value: int) -> None:
        was_in_reset = self.h_rst
        if value & H_IS:
            self.h_is = False
        if value & H_D0I3C_IS:
            self.d0i3_is = False
        self.h_ie, self.d0i3_ie = bool(value & H_IE), bool(value & H_D0I3C_IE)
        self.h_rdy, self.h_rst = bool(value & H_RDY), bool(value & H_RST)
        if self.h_rst and not was_in_reset:
            self._link_reset()
        elif value & H_IG:
            self._doorbell()
        self._update_interrupt()

    # --- the circular buffers -------------------------------------------------------------

    def _host_filled(self) -> int:
        return (self.h_wp - self.h_rp) & POINTER

    def _me_filled(self) -> int:
        return (self.me_wp - self.me_rp) & POINTER

    def _push_host_slot(self, value: int) -> None:
        if self.h_rst or self._host_filled() >= DEPTH:
            self._guest_error("host buffer write while full or in reset: dropped")
            return
        self.host_buffer[self.h_wp % DEPTH] = value
        self.h_wp = (self.h_wp + 1) & POINTER

    def _pop_me_slot(self) -> int:
        if not self._me_filled():
            return 0
        value = self.me_buffer[self.me_rp % DEPTH]
        self.me_rp = (self.me_rp + 1) & POINTER
        return value

    def _send(self, payload: bytes, me_addr: int = 0, host_addr: int = 0) -> None:
        """A whole message into the ME buffer (the caller checked the room), and H_IS."""
        slots = -(-len(payload) // 4)
        if self._me_filled() + 1 + slots > DEPTH:
            return
        header = me_addr | host_addr << 8 | len(payload) << HDR_LENGTH_SHIFT | HDR_COMPLETE
        data = payload.ljust(4 * slots, b"\0")
        for value in (header, *struct.unpack(f"<{slots}I", data)):
            self.me_buffer[self.me_wp % DEPTH] = value
            self.me_wp = (self.me_wp + 1) & POINTER
        self.h_is = True

    # --- the ME's side of the link --------------------------------------------------------

    def _link_reset(self) -> None:
        """The host asserted H_RST: both buffers and the session go; the ME, reset at once,
        is ready and interrupts the host, which then releases H_RST and sets H_RDY."""
        self.h_rdy = False
        self.h_wp = self.h_rp = self.me_wp = self.me_rp = 0
        self.session = IDLE
        self.me_ready = True
        self.h_is = True

    def _doorbell(self) -> None:
        """H_IG: take the host's messages while the ME has room for an answer."""
        if self.h_rst or not self.h_rdy or not self.me_ready:
            return
        took = False
        while self._host_filled() and DEPTH - self._me_filled() >= MAX_REPLY_SLOTS:
            header = self.host_buffer[self.h_rp % DEPTH]
            length = header >> HDR_LENGTH_SHIFT & HDR_LENGTH_MASK
            slots = 1 + -(-length // 4)
            took = True
            if slots > self._host_filled():
                self._guest_error(f"message header {header:#010x} longer than the buffer "
                                  "holds: buffer discarded")
                self.h_rp = self.h_wp
                break
            data = b"".join(struct.pack("<I", self.host_buffer[(self.h_rp + n) % DEPTH])
                            for n in range(1, slots))
            self.h_rp = (self.h_rp + slots) & POINTER
            self._message(header, data[:length])
        if took:
            self.h_is = True

    def _message(self, header: int, payload: bytes) -> None:
        me_addr, host_addr = header & 0xFF, header >> 8 & 0xFF
        if header & HDR_UNSUPPORTED or not header & HDR_COMPLETE:
            self._guest_error(f"message header {header:#010x}: unsupported flags, dropped")
        elif me_addr == 0 and host_addr == 0:
            self._host_bus_message(payload)
        elif self.session != STARTED:
            self._guest_error("client message before HOST_START: dropped")
        elif self.mkhi and me_addr == MKHI_ADDRESS and host_addr == 0:
            self._mkhi(payload)
        else:
            log.debug("MEI: message for no connection (%d, %d) dropped", me_addr, host_addr)

    def _host_bus_message(self, payload: bytes) -> None:
        if not payload:
            self._guest_error("empty host bus message")
            return
        command = payload[0]
        body = payload.ljust(8, b"\0")
        if command == HOST_START_REQ:
            host_version = (body[3], body[2])
            supported = host_version <= HBM_VERSION
            self.session = STARTED
            self._send(bytes((HOST_START_REQ | RESPONSE, supported, HBM_VERSION[1],
                              HBM_VERSION[0])))
            return
        if self.session != STARTED:
            self._guest_error(f"host bus message {command:#04x} before HOST_START")
            return
        me_addr, host_addr = body[1], body[2]
        if command == HOST_STOP_REQ:
            self.session = STOPPED
            self._send(bytes((HOST_STOP_REQ | RESPONSE, 0, 0, 0)))
        elif command == HOST_ENUM_REQ:
            valid = (1 << MKHI_ADDRESS) if self.mkhi else 0
            self._send(bytes((HOST_ENUM_REQ | RESPONSE, 0, 0, 0)) + valid.to_bytes(32, "little"))
        elif command == HOST_CLIENT_PROPERTIES_REQ:
            if self.mkhi and me_addr == MKHI_ADDRESS:
                status, properties = HBMS_SUCCESS, MKHI_PROPERTIES
            else:
                status, properties = HBMS_CLIENT_NOT_FOUND, bytes(PROPERTIES_SIZE)
            self._send(bytes((HOST_CLIENT_PROPERTIES_REQ | RESPONSE, me_addr, status, 0))
                       + properties)
        elif command in (CLIENT_CONNECT_REQ, CLIENT_DISCONNECT_REQ):
            # No dynamic client exists (the MKHI client has a fixed address: no connection).
            self._send(bytes((command | RESPONSE, me_addr, host_addr, HBMS_CLIENT_NOT_FOUND)))
        elif command == NOTIFY_REQ:
            self._send(bytes((command | RESPONSE, me_addr, host_addr, HBMS_CLIENT_NOT_FOUND,
                              body[3], 0, 0, 0)))
        elif command == PG_ISOLATION_ENTRY_REQ:
            self._send(bytes((PG_ISOLATION_ENTRY_REQ | RESPONSE, 0, 0, 0)))
        elif command in (FLOW_CONTROL, CLIENT_DISCONNECT_RES, PG_ISOLATION_EXIT_RES,
                         ADD_CLIENT_RES):
            pass                   # credits for no connection; answers to nothing asked
        else:
            self._guest_error(f"unknown host bus message {command:#04x}")

    def _mkhi(self, payload: bytes) -> None:
        group, command = payload.ljust(2, b"\0")[:2]
        if (group, command) == (MKHI_GEN_GROUP, MKHI_GET_FW_VERSION):
            blocks = b"".join(struct.pack("<HBBHH", minor, major, 0, build, hotfix)
                              for major, minor, hotfix, build in FW_VERSIONS)
            self._send(bytes((group, command | RESPONSE, 0, 0)) + blocks, MKHI_ADDRESS)
        elif (group, command) != (MKHI_FWCAPS_GROUP, MKHI_SET_OS_VER):
            log.debug("MEI: MKHI command %#04x/%#04x not modelled", group, command)

    def request_stop(self) -> None:
        """The ME asks the host to stop the session (ME_STOP_REQ), as before a power
        transition; the driver answers HOST_STOP_REQ and, once stopped, resets the link."""
        if self.session == STARTED and DEPTH - self._me_filled() >= MAX_REPLY_SLOTS:
            self._send(bytes((ME_STOP_REQ, 0, 0, 0)))
            self._update_interrupt()

    # --- interrupts -----------------------------------------------------------------------

    def _update_interrupt(self) -> None:
        level = (self.h_is and self.h_ie) or (self.d0i3_is and self.d0i3_ie)
        if self.msi.enabled:
            self.pci.set_intx(False)
            if level and not self.irq_level and self.pci.bus_master:
                self.msi.send(0)
        else:
            self.pci.set_intx(level)
        self.irq_level = level

    def _guest_error(self, what: str) -> None:
        """Logged the first GUEST_ERRORS_LOGGED times, then only counted."""
        self.guest_errors += 1
        if self.guest_errors <= GUEST_ERRORS_LOGGED:
            log.warning("MEI: %s%s", what, " (further ones are counted, not logged)"
                        if self.guest_errors == GUEST_ERRORS_LOGGED else "")

    # --- saved state ----------------------------------------------------------------------

    FLAGS = ("h_ie", "h_is", "h_rdy", "h_rst", "d0i3_ie", "d0i3_is", "me_ready", "irq_level")
    POINTERS = ("h_wp", "h_rp", "me_wp", "me_rp")

    def save(self) -> dict:
        return {"pci": self.pci.save(), "msi": self.msi.save(),
                "host_buffer": self.host_buffer.tobytes(), "me_buffer": self.me_buffer.tobytes(),
                "hpg": self.hpg, "d0i3c": self.d0i3c, "session": self.session,
                "guest_errors": self.guest_errors,
                **{name: getattr(self, name) for name in self.FLAGS + self.POINTERS}}

    def load(self, state: dict) -> None:
        where = "Mei"
        pci = self.pci.check_state(_state.field(state, "pci", where))
        msi = self.msi.check_state(_state.field(state, "msi", where))
        buffers = [_state.bytes_field(state, name, where, 4 * DEPTH)
                   for name in ("host_buffer", "me_buffer")]
        flags = {name: _state.bool_field(state, name, where) for name in self.FLAGS}
        pointers = {name: _state.int_field(state, name, where, 0, POINTER)
                    for name in self.POINTERS}
        if ((pointers["h_wp"] - pointers["h_rp"]) & POINTER > DEPTH
                or (pointers["me_wp"] - pointers["me_rp"]) & POINTER > DEPTH):
            raise StateError(f"{where}: a circular buffer holds more than its depth")
        hpg = _state.int_field(state, "hpg", where, 0, HPG_BITS)
        d0i3c = _state.int_field(state, "d0i3c", where, 0, D0I3C_BITS)
        if d0i3c & ~D0I3C_BITS:
            raise StateError(f"{where}.d0i3c: bits that read 0")
        session = _state.field(state, "session", where)
        if session not in (IDLE, STARTED, STOPPED):
            raise StateError(f"{where}.session: {session!r} is no HBM session state")
        errors = _state.int_field(state, "guest_errors", where, 0)
        self.pci.apply_state(pci)
        self.msi.apply_state(msi)
        self.host_buffer, self.me_buffer = (array("I", data) for data in buffers)
        for name, value in {**flags, **pointers}.items():
            setattr(self, name, value)
        self.hpg, self.d0i3c, self.session, self.guest_errors = hpg, d0i3c, session, errors


class _Function(PciFunction):
    """00:16.0's configuration space: its capabilities sit where the real function has them,
    around the firmware status dwords; a config write may turn MSI on or off."""

    def __init__(self, mei: Mei):
        super().__init__(VENDOR_INTEL, DEVICE_KBP_MEI, CLASS_COMMUNICATION_OTHER, REVISION,
                         subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        self.mei = mei

    def config_written(self, offset: int, size: int) -> None:
        self.mei._update_interrupt()
