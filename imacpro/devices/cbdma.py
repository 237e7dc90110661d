"""One Crystal Beach DMA engine of the Xeon W (CBDMA, Intel QuickData Technology 3.3): PCI
00:04.0 to 00:04.7 are eight of these, Intel 8086:2021 rev 04, class 088000, subsystem
8086:0000. Each function is one DMA channel that copies memory to memory, as Linux's ioatdma
drives it (drivers/dma/ioat in Linux 6.1: init.c, dma.c, prep.c).

The PCI function
    BAR0   64-bit, 16 KiB, non-prefetchable: the registers below, the MSI-X table at 0x2000
           and the PBA at 0x3000 (where the Xeon datasheets put them: TABLEOFF_BIR and
           PBAOFF_BIR of device 4; capability offsets too, from the same).
    [80]   MSI-X, one vector (the channel's).
    [90]   PCI Express, root complex integrated endpoint (no link); device control writable.
    [e0]   power management 3, D0 and D3hot, no PME; the power state is stored, nothing more.
    INTA#  level: the channel wants attention (ATTNSTATUS) and interrupts are on (INTRCTRL),
           while neither MSI-X nor MSI is enabled.
The part signals by MSI-X or INTx only and has no MSI capability (the driver's "msi" style
falls back to INTx, as there); `msi=True` adds one at [e8] for software that wants it.

Registers (BAR0; any width, any alignment: an access takes the bytes of each register it
covers; what the table leaves out reads 0 and ignores writes):

    | off | bits | register      | model                                                   |
    |-----|------|---------------|---------------------------------------------------------|
    | 00  | 8    | CHANCNT       | 1: one channel per function (RO)                        |
    | 01  | 8    | XFERCAP       | 20: a descriptor moves at most 1 MiB (RO)               |
    | 02  | 8    | GENCTRL       | bit 0 (debug) stored                                    |
    | 03  | 8    | INTRCTRL      | 0 master interrupt enable, 3 MSI-X vector control (RW); |
    |     |      |               | 1 ATTNSTATUS is non-zero, 2 = bits 1 and 0 (RO)         |
    | 04  | 32   | ATTNSTATUS    | bit 0: the channel raised an interrupt; a read clears it|
    | 08  | 8    | CBVER         | 0x33 (RO; Linux takes SKX's 3.3 for 3.2)                |
    | 0C  | 16   | INTRDELAY     | 13:0 stored, no delay applied; 15 (coalescing) 0        |
    | 0E  | 16   | CS_STATUS     | 0 (RO)                                                  |
    | 10  | 32   | DMACAPABILITY | 0: plain copies only, no XOR/PQ/fill/DCA/DWBES (RO)     |
    | 14  | 16   | DCAOFFSET     | 0: no DCA registers (RO)                                |
    | 80  | 16   | CHANCTRL      | 0 interrupt re-arm, 2 error completion write, 4 error   |
    |     |      |               | interrupt; 3 abort on any error (every error halts      |
    |     |      |               | here), 5 snoop control, 9 completion DCA: stored; 8 in  |
    |     |      |               | use: the first read after it was cleared sets it        |
    | 82  | 16   | DMACOMP       | 2: version 2 chains, DMACOUNT as the doorbell (RO)      |
    | 84  | 8    | CHANCMD       | 5 reset, 3 abort, 2 suspend, 4 resume: done at once,    |
    |     |      |               | reads 0; 1 and 0 (version 1 start/append) are ignored   |
    | 86  | 16   | DMACOUNT      | the doorbell: descriptors handed over, modulo 2^16      |
    | 88  | 64   | CHANSTS       | 63:6 last completed descriptor, 2:0 state: 0 active,    |
    |     |      |               | 1 done, 2 suspended, 3 halted, 4 armed (RO)             |
    | 90  | 64   | CHAINADDR     | a new chain's first descriptor: the channel is armed    |
    | 98  | 64   | CHANCMP       | where completions are written; bits 2:0 read 0          |
    | A0  | 64   | CDAR          | the descriptor fetched last (RO)                        |
    | A8  | 32   | CHANERR       | the error that halted the channel (write 1 to clear)    |
    | AC  | 32   | CHANERRMSK    | stored, no effect                                       |
    | B0  | 32   | DCACTRL       | 16:0 stored, no effect (no DCA)                         |

Descriptors (64 bytes, 64-byte aligned; hw.h `struct ioat_dma_descriptor`): +00 size, +04
control (0 interrupt, 3 completion write, 4 fence, 5 null, 31:24 operation: 0 copy), +08
source, +10 destination, +18 next descriptor; the rest is the driver's.

The engine. CHAINADDR arms the channel at a chain's first descriptor, with no descriptor done
yet. A DMACOUNT write runs, at once, the descriptors between those done and the count (at
most 65535, so at most 64 GiB moved: a chain that loops back on itself ends there),
following the next pointers (a descriptor's is taken when it is done: the driver's ring is
linked once, work is appended by the count alone). A copy moves `size` bytes (1 to 1 MiB)
from source to destination (memmove: they may overlap); a null descriptor moves nothing.
Each done descriptor becomes CHANSTS's address; one with the completion bit writes CHANSTS
(its address, state active or, for the doorbell's last, done) as 8 bytes to CHANCMP; one
with the interrupt bit interrupts. The channel then reads done.
Suspended, halted (and so after a reset) it keeps the count and runs nothing until CHAINADDR
(or RESUME, when suspended).

Errors halt the channel with one CHANERR bit (the driver's ioat_eh stops the machine when a
recoverable bit comes with another): a descriptor outside RAM, 0x10 for the chain's first
and 0x4 after it; one not 64-byte aligned 0x8; an operation other than copy 0x400; a size of
0 or over 1 MiB 0x800; a source outside RAM 0x100 and a destination 0x200 (read and write
data errors, which the driver recovers from); the completion address outside RAM 0x1000.
CHANSTS keeps the last descriptor that was done (the driver resumes from the one after), with
state halted; CHANCTRL's error completion bit writes that to CHANCMP and its error interrupt
bit interrupts. Bus mastering off reaches no memory: the first descriptor fails so.

Interrupts. The channel interrupts when CHANCTRL's re-arm bit is set and clears it (the
driver re-arms after each cleanup); one that comes while disarmed waits and goes when
software re-arms. It sets ATTNSTATUS and, with INTRCTRL's master enable, sends MSI-X vector 0
(or the MSI), or else asserts INTA# until ATTNSTATUS is read.

Reset (CHANCMD bit 5): halted, DMACOUNT, the chain, CHANSTS and CHANCMP zero; CHANCTRL and
CHANERR stay (the driver clears CHANERR itself and writes CHANCMP again).

What the model leaves out: XOR, P+Q, block fill, CRC and DIF operations (not offered:
DMACAPABILITY 0, so the driver registers memcpy and interrupt only); DCA (the CPU's CPUID
offers none, so the driver never looks: DCAOFFSET 0); interrupt coalescing (INTRDELAY),
priorities, snoop and prefetch controls; function level reset and D3hot's effect; the
internal-error registers of configuration space (0x148-0x18C read 0: the driver only reads
CHANERR_INT to write it back). Copies take no time: CHANSTS never reads active (completions
written in the middle of a doorbell's work do say active).

Saved state: configuration space, the MSI-X table and PBA, every register above and the
engine's place in its chain (next descriptor, descriptors done, a waiting interrupt).
"""

from __future__ import annotations

import logging
import struct

from imacpro.bus.msi import Msi, MsiX
from imacpro.bus.pci import MemoryBar, PciFunction
from imacpro.bus.pcie import CAP_PCI_EXPRESS, PCIE_CAP_VERSION, ROLE_BASED_ERRORS
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# --- identity -----------------------------------------------------------------------------
VENDOR_INTEL, DEVICE_CBDMA = 0x8086, 0x2021
CLASS_SYSTEM_PERIPHERAL = 0x088000
REVISION = 0x04
SUBSYSTEM = (0x8086, 0x0000)
FUNCTIONS = 8

# --- the function ---------------------------------------------------------------------------
BAR_SIZE = 16 * 1024
MSIX_TABLE, MSIX_PBA = 0x2000, 0x3000
MSIX_CAP, PCIE_CAP, PM_CAP = 0x80, 0x90, 0xE0          # where lspci shows them on the part
CAP_PM = 0x01
RC_INTEGRATED_ENDPOINT = 0x9                           # PCIe device/port type
PM_VERSION_3, PM_NO_SOFT_RESET, PM_STATE = 0x0003, 1 << 3, 0x0003

# --- device registers ---------------------------------------------------------------------
CHANCNT, XFERCAP, GENCTRL, INTRCTRL, ATTNSTATUS = 0x00, 0x01, 0x02, 0x03, 0x04
CBVER, INTRDELAY, CS_STATUS, DMACAPABILITY, DCAOFFSET = 0x08, 0x0C, 0x0E, 0x10, 0x14
CHANNELS, XFERCAP_LOG2, VERSION = 1, 20, 0x33
MAX_TRANSFER = 1 << XFERCAP_LOG2
GENCTRL_DEBUG = 1 << 0
MASTER_INT_EN, INT_STATUS, INT, MSIX_VECTOR_CONTROL = 1 << 0, 1 << 1, 1 << 2, 1 << 3
INTRDELAY_MASK = 0x3FFF

# --- channel registers (channel 0 at 0x80) -------------------------------------------------
CHANNEL = 0x80
CHANCTRL, DMACOMP, CHANCMD, DMACOUNT = CHANNEL + 0x00, CHANNEL + 0x02, CHANNEL + 0x04, \
    CHANNEL + 0x06
CHANSTS, CHAINADDR, CHANCMP, CDAR = CHANNEL + 0x08, CHANNEL + 0x10, CHANNEL + 0x18, \
    CHANNEL + 0x20
CHANERR, CHANERRMSK, DCACTRL = CHANNEL + 0x28, CHANNEL + 0x2C, CHANNEL + 0x30
INT_REARM, ERR_COMPLETION_EN, ANY_ERR_ABORT_EN, ERR_INT_EN = 1 << 0, 1 << 2, 1 << 3, 1 << 4
IN_USE = 1 << 8
CHANCTRL_WRITABLE = 0x033D
DMA_COMP_V2 = 0x0002
CMD_RESET, CMD_RESUME, CMD_ABORT, CMD_SUSPEND = 0x20, 0x10, 0x08, 0x04
ACTIVE, DONE, SUSPENDED, HALTED, ARMED = 0, 1, 2, 3, 4
DCACTRL_MASK = 0x0001_FFFF
COUNT_MASK = 0xFFFF

# CHANERR: the one bit each error sets.
CHAIN_ADDR_ERR, NEXT_ADDR_ERR, DESCRIPTOR_ALIGN_ERR = 0x0010, 0x0004, 0x0008
READ_DATA_ERR, WRITE_DATA_ERR, CONTROL_ERR = 0x0100, 0x0200, 0x0400
LENGTH_ERR, COMPLETION_ADDR_ERR = 0x0800, 0x1000
ERRORS = {CHAIN_ADDR_ERR: "the chain's first descriptor is outside memory",
          NEXT_ADDR_ERR: "a next descriptor is outside memory",
          DESCRIPTOR_ALIGN_ERR: "a descriptor is not 64-byte aligned",
          READ_DATA_ERR: "a copy's source is outside memory",
          WRITE_DATA_ERR: "a copy's destination is outside memory",
          CONTROL_ERR: "a descriptor asks for an operation other than copy",
          LENGTH_ERR: "a copy of 0 bytes or more than 1 MiB",
          COMPLETION_ADDR_ERR: "the completion address is outside memory"}

# --- descriptors --------------------------------------------------------------------------
DESCRIPTOR_SIZE = 64
DESC_INT_EN, DESC_COMPL_WRITE, DESC_NULL = 1 << 0, 1 << 3, 1 << 5
OP_COPY = 0x00

U32, U64 = 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
GUEST_ERRORS_LOGGED = 10

# Every register: offset -> width in bytes (an access covers a part of one or several).
REGISTERS = sorted({CHANCNT: 1, XFERCAP: 1, GENCTRL: 1, INTRCTRL: 1, ATTNSTATUS: 4, CBVER: 1,
                    INTRDELAY: 2, CS_STATUS: 2, DMACAPABILITY: 4, DCAOFFSET: 2,
                    CHANCTRL: 2, DMACOMP: 2, CHANCMD: 1, DMACOUNT: 2, CHANSTS: 8,
                    CHAINADDR: 8, CHANCMP: 8, CDAR: 8, CHANERR: 4, CHANERRMSK: 4,
                    DCACTRL: 4}.items())
CONSTANTS = {CHANCNT: CHANNELS, XFERCAP: XFERCAP_LOG2, CBVER: VERSION, CS_STATUS: 0,
             DMACAPABILITY: 0, DCAOFFSET: 0, DMACOMP: DMA_COMP_V2, CHANCMD: 0}


class CbdmaChannel:
    """CBDMA function `function` (0-7 of device 4): one channel. `intx` is its INTA#."""

    def __init__(self, function: int, intx: IrqLine | None = None, *, msi: bool = False):
        if not 0 <= function < FUNCTIONS:
            raise ValueError(f"CBDMA has functions 0 to {FUNCTIONS - 1}, not {function}")
        self.function = function
        self.guest_errors = 0
        self.pci = _Function(self)
        self.pci.place_next_capability(MSIX_CAP)
        self.msix = MsiX(self.pci, 1, bir=0, table_offset=MSIX_TABLE, pba_offset=MSIX_PBA)
        self.pci.place_next_capability(PCIE_CAP)
        self.pci.add_capability(CAP_PCI_EXPRESS, *_integrated_endpoint_capability())
        self.pci.place_next_capability(PM_CAP)
        self.pci.add_capability(CAP_PM, struct.pack("<HHH", PM_VERSION_3, PM_NO_SOFT_RESET, 0),
                                struct.pack("<HH", 0, PM_STATE))
        self.msi = Msi(self.pci) if msi else None
        self.pci.add_memory_bar(MemoryBar(0, BAR_SIZE, self))
        if intx is not None:
            self.pci.set_interrupt_pin(intx)
        self._power_on()

    # --- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Platform reset: the function, its MSI-X table, every register."""
        self.pci.reset()
        self._power_on()

    def _power_on(self) -> None:
        self.genctrl = 0
        self.intrctrl = 0                 # its writable bits: master enable, vector control
        self.attention = False            # ATTNSTATUS bit 0
        self.intrdelay = 0
        self.chanctrl = 0
        self.chanerr = 0
        self.chanerrmsk = 0
        self.dcactrl = 0
        self._reset_channel()

    def _reset_channel(self) -> None:
        self.state = HALTED
        self.dmacount = 0                 # the doorbell, as written
        self.done_count = 0               # descriptors done since the chain began, mod 2^16
        self.chainaddr = 0
        self.next_descriptor = 0          # what the channel fetches next
        self.completed = 0                # CHANSTS's address: the last descriptor done
        self.current = 0                  # CDAR: the last descriptor fetched
        self.chancmp = 0
        self.interrupt_pending = False    # an interrupt that came while disarmed
        self._update_intx()

    # --- registers ------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if self.msix.holds(offset):
            return self.msix.read(offset, size)
        value = 0
        for start, width in REGISTERS:
            if start < offset + size and offset < start + width:
                register = self._read_register(start)
                shift = 8 * (start - offset)
                value |= register << shift if shift >= 0 else register >> -shift
        return value & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if self.msix.holds(offset):
            self.msix.write(offset, size, value)
            return
        for start, width in REGISTERS:
            low, high = max(start, offset), min(start + width, offset + size)
            if low < high:
                # The bytes of this register the access wrote, in the register's place.
                field = (1 << 8 * (high - low)) - 1
                written = field << 8 * (low - start)
                data = (value >> 8 * (low - offset) & field) << 8 * (low - start)
                self._write_register(start, data, written)

    def _read_register(self, offset: int) -> int:
        if offset in CONSTANTS:
            return CONSTANTS[offset]
        if offset == GENCTRL:
            return self.genctrl
        if offset == INTRCTRL:
            status = INT_STATUS if self.attention else 0
            fired = INT if self.attention and self.intrctrl & MASTER_INT_EN else 0
            return self.intrctrl | status | fired
        if offset == ATTNSTATUS:
            attention, self.attention = self.attention, False     # read to clear
            self._update_intx()
            return int(attention)
        if offset == INTRDELAY:
            return self.intrdelay
        if offset == CHANCTRL:
            value = self.chanctrl
            self.chanctrl |= IN_USE       # the first reader claims the channel
            return value
        if offset == DMACOUNT:
            return self.dmacount
        if offset == CHANSTS:
            return self.completed | self.state
        if offset == CHAINADDR:
            return self.chainaddr
        if offset == CHANCMP:
            return self.chancmp
        if offset == CDAR:
            return self.current
        if offset == CHANERR:
            return self.chanerr
        if offset == CHANERRMSK:
            return self.chanerrmsk
        if offset == DCACTRL:
            return self.dcactrl
        return 0

    def _write_register(self, offset: int, data: int, written: int) -> None:
        """`data`: the bytes written, in place; `written`: which bits they are."""
        def merged(old: int) -> int:
            return old & ~written | data

        if offset == GENCTRL:
            self.genctrl = merged(self.genctrl) & GENCTRL_DEBUG
        elif offset == INTRCTRL:
            self.intrctrl = merged(self.intrctrl) & (MASTER_INT_EN | MSIX_VECTOR_CONTROL)
            self._update_intx()
        elif offset == INTRDELAY:
            self.intrdelay = merged(self.intrdelay) & INTRDELAY_MASK
        elif offset == CHANCTRL:
            self.chanctrl = merged(self.chanctrl) & CHANCTRL_WRITABLE
            if self.chanctrl & INT_REARM and self.interrupt_pending:
                self._interrupt()
        elif offset == CHANCMD:
            self._command(data)
        elif offset == DMACOUNT:
            self.dmacount = merged(self.dmacount)
            self._run()
        elif offset == CHAINADDR:
            self.chainaddr = merged(self.chainaddr)
            self._arm()
        elif offset == CHANCMP:
            self.chancmp = merged(self.chancmp) & ~7
        elif offset == CHANERR:
            self.chanerr &= ~data                                  # write 1 to clear
        elif offset == CHANERRMSK:
            self.chanerrmsk = merged(self.chanerrmsk)
        elif offset == DCACTRL:
            self.dcactrl = merged(self.dcactrl) & DCACTRL_MASK
        # The rest is read-only (ATTNSTATUS clears when read, not written).

    def _command(self, command: int) -> None:
        if command & CMD_RESET:
            self._reset_channel()
        elif command & CMD_ABORT:
            self.done_count = self.dmacount        # what was handed over is dropped
            self.state = HALTED
        elif command & CMD_SUSPEND:
            if self.state in (ACTIVE, DONE, ARMED):
                self.state = SUSPENDED
        elif command & CMD_RESUME and self.state == SUSPENDED:
            self.state = ARMED if self.done_count == 0 else DONE
            self._run()

    # --- the engine -----------------------------------------------------------------------

    def _arm(self) -> None:
        """CHAINADDR: a new chain starts there, nothing of it done yet."""
        self.next_descriptor = self.chainaddr
        self.done_count = 0
        self.completed = 0
        self.state = ARMED

    def _run(self) -> None:
        """The doorbell: run what was handed over, at most 65535 descriptors."""
        if self.state not in (ARMED, DONE):
            return                                  # suspended or halted: the count waits
        todo = (self.dmacount - self.done_count) & COUNT_MASK
        if not todo:
            return
        self.state = ACTIVE
        for left in range(todo - 1, -1, -1):
            error = self._execute(last=left == 0)
            if error:
                self._halt(error)
                return
        self.state = DONE

    def _execute(self, last: bool) -> int:
        """Fetch and do the next descriptor; the CHANERR bit of what stopped it, or 0."""
        address = self.next_descriptor
        self.current = address
        if address % DESCRIPTOR_SIZE:
            return DESCRIPTOR_ALIGN_ERR
        raw = self.pci.dma_read(address, DESCRIPTOR_SIZE)
        if raw is None:
            return CHAIN_ADDR_ERR if self.done_count == 0 else NEXT_ADDR_ERR
        size, control, source, destination, following = struct.unpack_from("<IIQQQ", raw)
        if control >> 24 != OP_COPY:
            return CONTROL_ERR
        if not control & DESC_NULL:
            if not 0 < size <= MAX_TRANSFER:
                return LENGTH_ERR
            data = self.pci.dma_window(source, size)
            if data is None:
                return READ_DATA_ERR
            target = self.pci.dma_window(destination, size)
            if target is None:
                return WRITE_DATA_ERR
            target[:] = data                        # memoryview assignment: memmove
        self.completed = address
        self.next_descriptor = following
        self.done_count = (self.done_count + 1) & COUNT_MASK
        if control & DESC_COMPL_WRITE and not self._write_completion(DONE if last else ACTIVE):
            return COMPLETION_ADDR_ERR
        if control & DESC_INT_EN:
            self._interrupt()
        return 0

    def _write_completion(self, state: int) -> bool:
        return self.pci.dma_write(self.chancmp, struct.pack("<Q", self.completed | state))

    def _halt(self, error: int) -> None:
        self.chanerr |= error
        self.state = HALTED
        self._guest_error(f"{ERRORS[error]} (descriptor at {self.current:#x}); halted")
        if self.chanctrl & ERR_COMPLETION_EN:
            self._write_completion(HALTED)
        if self.chanctrl & ERR_INT_EN:
            self._interrupt()

    # --- interrupts -----------------------------------------------------------------------

    def _interrupt(self) -> None:
        """The channel's interrupt: sent if armed (and it disarms), else kept for the
        re-arm."""
        if not self.chanctrl & INT_REARM:
            self.interrupt_pending = True
            return
        self.chanctrl &= ~INT_REARM
        self.interrupt_pending = False
        self.attention = True
        if self.intrctrl & MASTER_INT_EN:
            if self.msix.enabled:
                self.msix.signal(0)
            elif self.msi is not None and self.msi.enabled:
                self.msi.send(0)
        self._update_intx()

    def _update_intx(self) -> None:
        messages = self.msix.enabled or (self.msi is not None and self.msi.enabled)
        self.pci.set_intx(self.attention and bool(self.intrctrl & MASTER_INT_EN)
                          and not messages)

    def config_changed(self) -> None:
        """A configuration write: MSI-X may be unmasked, message modes turned on or off."""
        self.msix.unmasked()
        self._update_intx()

    def _guest_error(self, what: str) -> None:
        """A descriptor the guest got wrong: logged the first GUEST_ERRORS_LOGGED times, then
        only counted (a hostile guest must not fill the host's log)."""
        self.guest_errors += 1
        if self.guest_errors <= GUEST_ERRORS_LOGGED:
            log.warning("CBDMA 00:04.%d: %s%s", self.function, what,
                        " (further ones are counted, not logged)"
                        if self.guest_errors == GUEST_ERRORS_LOGGED else "")

    # --- saved state ----------------------------------------------------------------------

    SAVED = {"genctrl": GENCTRL_DEBUG, "intrctrl": MASTER_INT_EN | MSIX_VECTOR_CONTROL,
             "intrdelay": INTRDELAY_MASK, "chanctrl": CHANCTRL_WRITABLE | IN_USE,
             "state": 0x7, "dmacount": COUNT_MASK, "done_count": COUNT_MASK,
             "chainaddr": U64, "next_descriptor": U64, "completed": U64 & ~0x3F,
             "current": U64, "chancmp": U64 & ~7, "chanerr": U32, "chanerrmsk": U32,
             "dcactrl": DCACTRL_MASK}
    FLAGS = ("attention", "interrupt_pending")

    def save(self) -> dict:
        return {"pci": self.pci.save(), "msix": self.msix.save(),
                "msi": None if self.msi is None else self.msi.save(),
                **{name: getattr(self, name) for name in (*self.SAVED, *self.FLAGS)}}

    def load(self, state: dict) -> None:
        where = "CbdmaChannel"
        pci = self.pci.check_state(_state.field(state, "pci", where))
        msix = self.msix.check_state(_state.field(state, "msix", where))
        saved_msi = _state.field(state, "msi", where)
        if (saved_msi is None) != (self.msi is None):
            raise StateError(f"{where}: saved with{'out' if saved_msi is None else ''} an MSI "
                             "capability, this function has "
                             f"{'none' if self.msi is None else 'one'}")
        msi = None if self.msi is None else self.msi.check_state(saved_msi)
        for name, mask in self.SAVED.items():
            value = _state.int_field(state, name, where, 0, U64)
            if value & ~mask:
                raise StateError(f"{where}.{name}: {value:#x} has bits that read 0")
        if state["state"] > ARMED:
            raise StateError(f"{where}.state: {state['state']} is no channel state")
        flags = {name: _state.bool_field(state, name, where) for name in self.FLAGS}
        self.pci.apply_state(pci)
        self.msix.apply_state(msix)
        if self.msi is not None:
            self.msi.apply_state(msi)
        for name in self.SAVED:
            setattr(self, name, state[name])
        for name, value in flags.items():
            setattr(self, name, value)
        self._update_intx()


def _integrated_endpoint_capability() -> tuple[bytes, bytes]:
    """The PCI Express capability of an integrated endpoint: no link, no slot; 128-byte
    payloads; device control writable (Linux clears relaxed ordering there)."""
    body, writable = bytearray(0x3A), bytearray(0x3A)
    struct.pack_into("<H", body, 0x00, PCIE_CAP_VERSION | RC_INTEGRATED_ENDPOINT << 4)
    struct.pack_into("<I", body, 0x02, ROLE_BASED_ERRORS)
    struct.pack_into("<H", writable, 0x06, 0x7CFF)
    return bytes(body), bytes(writable)


class _Function(PciFunction):
    """The function: configuration writes may enable MSI-X or MSI, or unmask the vector."""

    def __init__(self, channel: CbdmaChannel):
        super().__init__(VENDOR_INTEL, DEVICE_CBDMA, CLASS_SYSTEM_PERIPHERAL, REVISION,
                         subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        self.channel = channel

    def config_written(self, offset: int, size: int) -> None:
        self.channel.config_changed()

    def reset(self) -> None:
        super().reset()
        self.channel.msix.reset()
