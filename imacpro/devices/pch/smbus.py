"""The PCH's SMBus host controller, 00:1f.4: Intel 8086:a2a3 rev 00, class 0c0500, subsystem
8086:7270 (the 200-series / C422 PCH's SMBus), as Linux 6.1's i2c-i801 drives it.

Configuration space: BAR0 a 64-bit memory BAR (256 bytes on silicon; 4 KiB here, the smallest
BAR the bus models) that mirrors the I/O registers at 00-1F (the rest reads 0); BAR4 the
32-byte I/O BAR the driver uses (0x2000 on the real machine); INTA#; no capabilities (the
real function has none). PCH-private registers:

    | off | register | value | model                                                          |
    |-----|----------|-------|----------------------------------------------------------------|
    | 40  | HOSTC    | 11    | bit0 HST_EN (the host runs commands only while set), bit1      |
    |     |          |       | SMB_SMI_EN (completion goes to SMI#, not modelled, instead of  |
    |     |          |       | INTx), bit2 I2C_EN (block writes send no byte count), bit3     |
    |     |          |       | SSRESET (aborts the host's transaction, clears its status,     |
    |     |          |       | self-clears), bit4 SPD_WD (set-only until reset: writes to     |
    |     |          |       | 50h-57h fail with DEV_ERR and no bus cycle)                    |
    | 50  | TCOBASE  | 1     | RO: never programmed, and locked                               |
    | 54  | TCOCTL   | 1     | RO: TCO_BASE_LOCK set, TCO_BASE_EN (bit 8) clear               |

HOSTC is what Apple's firmware plausibly leaves (as Intel's reference code does): the host
enabled, SPD writes disabled, interrupts to INTx, not SMI#. The emulator's firmware does not
program PCH-private registers, so these are the reset values. TCO decoding is off and locked
so: i2c-i801 registers no iTCO_wdt (the real one would reach the TCO's NO_REBOOT bit through
the P2SB bridge, which is not modelled).

I/O registers (8-bit; wider accesses are byte accesses, low byte first):

    | off | register  | model                                                               |
    |-----|-----------|---------------------------------------------------------------------|
    | 00  | HST_STS   | 0 HOST_BUSY (RO), 1 INTR, 2 DEV_ERR, 3 BUS_ERR, 4 FAILED,          |
    |     |           | 5 SMBALERT_STS, 7 BYTE_DONE: write 1 to clear; 6 INUSE_STS: a read  |
    |     |           | returns it and sets it, writing 1 clears it (a semaphore)          |
    | 02  | HST_CNT   | 0 INTREN, 1 KILL, 4:2 command, 5 LAST_BYTE, 6 START (reads 0),      |
    |     |           | 7 PEC_EN; reading it resets the block buffer's index               |
    | 03  | HST_CMD   | the command byte                                                    |
    | 04  | HST_ADD   | 7:1 target address, 0 read (1) / write (0)                         |
    | 05/06 | DAT0/1  | data; DAT0 the block byte count                                     |
    | 07  | BLKDAT    | E32B set: the 32-byte buffer at an index that steps on each access  |
    |     |           | (wrapping); clear: the byte-by-byte data register                  |
    | 08  | PEC       | the PEC byte sent (AAC clear) or received                          |
    | 0C  | AUXSTS    | 0 CRCE (write 1 to clear), 1 STCO (0)                              |
    | 0D  | AUXCTL    | 0 AAC (the host appends and checks the PEC), 1 E32B                 |
    | 0E/0F | SMLC/SMBC | pin control: 2 clock drive (RW, 1), 1 data and 0 clock lines (RO) |
    | 10  | SLVSTS    | 0 HST_NTFY_STS (write 1 to clear; no target ever notifies)         |
    | 11  | SLVCMD    | 0 HST_NTFY_INTREN, 1 HST_NTFY_WKEN, 2 SMBALERT_DIS                  |
    | 14-17 | NTFD*   | notify address and data: read 0                                    |
    | others |        | read 0, writes ignored                                              |

Commands (HST_CNT 4:2), each the SMBus 3.0 wire sequence, run at once when START is written
(the status is set before the write returns): 0 quick, 1 byte (send/receive), 2 byte data, 3
word data, 4 process call, 5 block (E32B: through the buffer; otherwise byte by byte), 6 I2C
read (byte by byte, the command in DAT1), 7 block process call (E32B only; without it
DEV_ERR, the "invalid command" error). A PEC phase follows every command but quick and I2C
read while AAC or PEC_EN is set: CRC-8 over the wire's bytes, addresses included; a bad one
received sets CRCE and DEV_ERR. A target that does not answer its address, or refuses a byte,
ends the command with DEV_ERR, as a NACK does on the bus.

Byte by byte: the host moves one byte, sets BYTE_DONE and stays busy; software reads or
writes BLKDAT and clears BYTE_DONE to move the next. A write sends DAT0 bytes; a block read
takes the count byte's number (1 to 32 bytes; DAT0 holds the count as received, so the
driver sees a bad one); an I2C read goes on until LAST_BYTE was set when a byte began.
Clearing BYTE_DONE after the last byte ends the command with INTR. KILL ends any command
with FAILED and holds the host until cleared.

INTx is asserted while HST_CNT.INTREN is set and HST_STS has INTR, DEV_ERR, BUS_ERR, FAILED
or BYTE_DONE (not while SMB_SMI_EN routes them to SMI#), or while SLVCMD.HST_NTFY_INTREN and
HST_NTFY_STS are both set.

Targets (`SmbusTarget`) attach at 7-bit addresses and see the wire: start (and repeated
start) with the direction, bytes written, bytes read, stop. By default none is attached: the
iMac Pro's DIMMs hang off the Xeon's memory-controller SMBus, not the PCH's. Linux's SPD
scan (i2c_register_spd: DMI has 4 DDR4 DIMMs in 4 slots, so ee1004 at 50h-53h) then finds
nothing: each receive-byte probe ends in DEV_ERR.

Not modelled: bus timing (commands take no time), SMBALERT# (never asserted), host notify
(no target sends one), the SMBus slave interface and SMLink, SMI#, the TCO registers, the
10-bit-address and PEC-on-I2C corners the datasheet leaves undefined.
"""

from __future__ import annotations

from imacpro.bus.pci import IoBar, MemoryBar, PciFunction
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.lpc import ByteRegisters
from imacpro.irq import IrqLine

# --- identity -----------------------------------------------------------------------------
VENDOR_INTEL, DEVICE_SMBUS = 0x8086, 0xA2A3
CLASS_SMBUS = 0x0C0500
REVISION = 0x00
SUBSYSTEM = (0x8086, 0x7270)
IO_SIZE, MMIO_SIZE = 32, 4096

# --- configuration registers --------------------------------------------------------------
HOSTC, TCOBASE, TCOCTL = 0x40, 0x50, 0x54
HST_EN, SMB_SMI_EN, I2C_EN, SSRESET, SPD_WD = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
HOSTC_FIRMWARE = HST_EN | SPD_WD
TCOBASE_VALUE = 0x0000_0001              # IOS (I/O space) bit; base never programmed
TCOCTL_VALUE = 0x0000_0001               # TCO_BASE_LOCK; TCO_BASE_EN (bit 8) clear
SPD_ADDRESSES = range(0x50, 0x58)

# --- I/O registers ------------------------------------------------------------------------
HST_STS, HST_CNT, HST_CMD, HST_ADD, HST_DAT0, HST_DAT1, BLKDAT, PEC = 0, 2, 3, 4, 5, 6, 7, 8
AUXSTS, AUXCTL, SMLC, SMBC, SLVSTS, SLVCMD = 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11

HOST_BUSY, INTR, DEV_ERR, BUS_ERR, FAILED = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
SMBALERT_STS, INUSE_STS, BYTE_DONE = 1 << 5, 1 << 6, 1 << 7
STATUS_W1C = INTR | DEV_ERR | BUS_ERR | FAILED | SMBALERT_STS | INUSE_STS | BYTE_DONE
INTERRUPTING = INTR | DEV_ERR | BUS_ERR | FAILED | BYTE_DONE

INTREN, KILL, LAST_BYTE, START, PEC_EN = 1 << 0, 1 << 1, 1 << 5, 1 << 6, 1 << 7
QUICK, BYTE, BYTE_DATA, WORD_DATA, PROC_CALL, BLOCK, I2C_READ, BLOCK_PROC = range(8)

CRCE = 1 << 0
AAC, E32B = 1 << 0, 1 << 1
PIN_CLOCK_DRIVE = 1 << 2                 # SMLC/SMBC: 1 = the clock line is released
HST_NTFY_STS = 1 << 0
HST_NTFY_INTREN = 1 << 0
SLVCMD_BITS = 0x07

BLOCK_MAX = 32

# Byte-by-byte phases.
IDLE, READING, WRITING = 0, 1, 2


class SmbusTarget:
    """A device on the bus, at the wire level. The controller calls `start(read)` for a START
    or repeated START addressed to it (True: it acknowledges), `write(byte)` for each byte the
    host sends (True: acknowledged), `read()` for each byte the host takes, and `stop()` when
    the host releases the bus. Targets are wiring, not the controller's state: each saves its
    own. The defaults are a device that acknowledges everything and returns 0xFF."""

    def start(self, read: bool) -> bool:
        return True

    def write(self, byte: int) -> bool:
        return True

    def read(self) -> int:
        return 0xFF

    def stop(self) -> None:
        pass


class _Nack(Exception):
    """The target left a byte or its address unacknowledged: the command ends in DEV_ERR."""


class _PecMismatch(Exception):
    """The PEC received is not the CRC of what was on the wire."""


def crc8(crc: int, byte: int) -> int:
    """SMBus PEC: CRC-8, polynomial x^8 + x^2 + x + 1, one byte folded in."""
    crc ^= byte
    for _ in range(8):
        crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class SmbusController(ByteRegisters):
    """The host controller; `.pci` is its PCI function, `attach(address, target)` puts a
    target on the bus."""

    def __init__(self, intx: IrqLine | None = None):
        self.targets: dict[int, SmbusTarget] = {}
        self.pci = _Function(self)
        self.pci.add_memory_bar(MemoryBar(0, MMIO_SIZE, _Mirror(self)))
        self.pci.add_io_bar(IoBar(4, IO_SIZE, self))
        # The real function has INTA#; without a line from the board it still says so.
        self.pci.set_interrupt_pin(intx if intx is not None else IrqLine("smbus-intx"))
        self._power_on()

    # --- wiring ---------------------------------------------------------------------------

    def attach(self, address: int, target: SmbusTarget) -> None:
        if not 0 <= address <= 0x7F or address in self.targets:
            raise ValueError(f"SMBus address {address:#x} is not free")
        self.targets[address] = target

    def detach(self, address: int) -> None:
        self.targets.pop(address, None)

    # --- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        self._release()
        self.pci.reset()
        self._power_on()

    def _power_on(self) -> None:
        self.status = self.control = self.command = self.address = 0
        self.data0 = self.data1 = self.blkdat = self.pec = 0
        self.aux_status = self.aux_control = 0
        self.smlink_pins = self.smbus_pins = PIN_CLOCK_DRIVE
        self.slave_status = self.slave_command = 0
        self.block = bytearray(BLOCK_MAX)
        self.block_index = 0
        self._idle_transfer()
        self._update_intx()

    def _idle_transfer(self) -> None:
        self.phase = IDLE                 # byte by byte: IDLE, READING or WRITING
        self.done = 0                     # bytes moved so far
        self.total = 0                    # bytes to move (0: until LAST_BYTE, an I2C read)
        self.last = False                 # the byte in BLKDAT is the last
        self.crc = 0                      # PEC over the wire so far
        self.held = None                  # the address of the target holding the bus

    def soft_reset(self) -> None:
        """HOSTC.SSRESET: the host's state machine starts over."""
        self._release()
        self._idle_transfer()
        self.status &= INUSE_STS
        self.aux_status = 0
        self._update_intx()

    # --- registers --------------------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        if offset == HST_STS:
            value = self.status
            self.status |= INUSE_STS      # the semaphore: whoever read 0 owns the host
            return value
        if offset == HST_CNT:
            self.block_index = 0
            return self.control
        if offset == BLKDAT:
            if self.aux_control & E32B:
                value = self.block[self.block_index]
                self.block_index = (self.block_index + 1) % BLOCK_MAX
                return value
            return self.blkdat
        if offset in (SMLC, SMBC):
            drive = self.smlink_pins if offset == SMLC else self.smbus_pins
            return drive | 0b10 | (1 if drive & PIN_CLOCK_DRIVE else 0)
        return {HST_CMD: self.command, HST_ADD: self.address, HST_DAT0: self.data0,
                HST_DAT1: self.data1, PEC: self.pec, AUXSTS: self.aux_status,
                AUXCTL: self.aux_control, SLVSTS: self.slave_status,
                SLVCMD: self.slave_command}.get(offset, 0)

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == HST_STS:
            byte_done_cleared = value & self.status & BYTE_DONE
            self.status &= ~(value & STATUS_W1C)
            if byte_done_cleared and self.phase != IDLE:
                self._next_byte()
        elif offset == HST_CNT:
            self._write_control(value)
        elif offset == BLKDAT:
            if self.aux_control & E32B:
                self.block[self.block_index] = value
                self.block_index = (self.block_index + 1) % BLOCK_MAX
            else:
                self.blkdat = value
        elif offset == AUXSTS:
            self.aux_status &= ~(value & CRCE)
        elif offset == AUXCTL:
            self.aux_control = value & (AAC | E32B)
        elif offset in (SMLC, SMBC):
            setattr(self, "smlink_pins" if offset == SMLC else "smbus_pins",
                    value & PIN_CLOCK_DRIVE)
        elif offset == SLVSTS:
            self.slave_status &= ~(value & HST_NTFY_STS)
        elif offset == SLVCMD:
            self.slave_command = value & SLVCMD_BITS
        else:
            name = {HST_CMD: "command", HST_ADD: "address", HST_DAT0: "data0",
                    HST_DAT1: "data1", PEC: "pec"}.get(offset)
            if name is not None:
                setattr(self, name, value)
        self._update_intx()

    def _write_control(self, value: int) -> None:
        self.control = value & ~START
        if value & KILL:
            self._release()
            self._idle_transfer()
            self.status = (self.status & ~HOST_BUSY) | FAILED
        elif value & START and not self.status & HOST_BUSY and self.pci.hostc & HST_EN:
            self._start((value >> 2) & 7)

    # --- the bus ----------------------------------------------------------------------------

    def _begin(self, read: bool) -> None:
        """START (or repeated START) to HST_ADD's target in direction `read`."""
        address = self.address >> 1
        self.crc = crc8(self.crc, address << 1 | read)
        target = self.targets.get(address)
        if target is None:
            raise _Nack
        self.held = address
        if not target.start(read):
            raise _Nack

    def _holder(self) -> SmbusTarget:
        target = self.targets.get(self.held) if self.held is not None else None
        if target is None:                 # (a state loaded without its target)
            raise _Nack
        return target

    def _send(self, byte: int) -> None:
        self.crc = crc8(self.crc, byte)
        if not self._holder().write(byte):
            raise _Nack

    def _receive(self) -> int:
        byte = self._holder().read() & 0xFF
        self.crc = crc8(self.crc, byte)
        return byte

    def _release(self) -> None:
        """STOP: the target holding the bus lets go."""
        target = self.targets.get(self.held) if self.held is not None else None
        self.held = None
        if target is not None:
            target.stop()

    def _pec_phase(self, kind: int, read: bool) -> None:
        if not (self.aux_control & AAC or self.control & PEC_EN) or kind in (QUICK, I2C_READ):
            return
        if read:
            expected, self.pec = self.crc, self._receive()
            if self.aux_control & AAC and self.pec != expected:
                raise _PecMismatch
        else:
            self._send(self.crc if self.aux_control & AAC else self.pec)

    def _end(self, status: int) -> None:
        self._release()
        self._idle_transfer()
        self.status = (self.status & ~HOST_BUSY) | status

    # --- commands ---------------------------------------------------------------------------

    def _start(self, kind: int) -> None:
        self.status |= HOST_BUSY
        self.block_index = 0
        self.crc = 0
        write = not self.address & 1
        if self.pci.hostc & SPD_WD and write and self.address >> 1 in SPD_ADDRESSES:
            self._end(DEV_ERR)                   # refused before any bus cycle
        elif kind == BLOCK_PROC and not self.aux_control & E32B:
            self._end(DEV_ERR)                   # invalid command
        elif kind == I2C_READ or (kind == BLOCK and not self.aux_control & E32B):
            self._guarded(lambda: self._first_byte(kind))
        else:
            self._guarded(lambda: self._at_once(kind))

    def _guarded(self, step) -> None:
        """Run a bus step; a NACK or a bad PEC ends the command with DEV_ERR."""
        try:
            step()
        except _Nack:
            self._end(DEV_ERR)
        except _PecMismatch:
            self.aux_status |= CRCE
            self._end(DEV_ERR)

    def _at_once(self, kind: int) -> None:
        read = bool(self.address & 1)
        if kind == QUICK:
            self._begin(read)
        elif kind == BYTE:
            self._begin(read)
            if read:
                self.data0 = self._receive()
            else:
                self._send(self.command)
        elif kind in (BYTE_DATA, WORD_DATA):
            self._begin(False)
            self._send(self.command)
            if read:
                self._begin(True)
                self.data0 = self._receive()
                if kind == WORD_DATA:
                    self.data1 = self._receive()
            else:
                self._send(self.data0)
                if kind == WORD_DATA:
                    self._send(self.data1)
        elif kind == PROC_CALL:
            read = True
            self._begin(False)
            for byte in (self.command, self.data0, self.data1):
                self._send(byte)
            self._begin(True)
            self.data0, self.data1 = self._receive(), self._receive()
        else:                                      # BLOCK or BLOCK_PROC through the buffer
            self._begin(False)
            self._send(self.command)
            if kind == BLOCK_PROC or not read:
                self._send_block()
            if kind == BLOCK_PROC or read:
                read = True
                self._begin(True)
                self.data0 = self._receive()
                for i in range(min(self.data0, BLOCK_MAX)):
                    self.block[i] = self._receive()
        self._pec_phase(kind, read)
        self._end(INTR)

    def _send_block(self) -> None:
        if not self.pci.hostc & I2C_EN:
            self._send(self.data0)
        for i in range(min(self.data0, BLOCK_MAX)):
            self._send(self.block[i])

    def _first_byte(self, kind: int) -> None:
        """Byte by byte: the address and command phases, then the first byte."""
        read = kind == I2C_READ or bool(self.address & 1)
        self._begin(False)
        self._send(self.data1 if kind == I2C_READ else self.command)
        if read:
            self.phase = READING
            self._begin(True)
            if kind == BLOCK:
                self.data0 = self._receive()
                self.total = min(max(self.data0, 1), BLOCK_MAX)
            self._read_next()
        else:
            self.phase = WRITING
            self.total = self.data0
            if not self.pci.hostc & I2C_EN:
                self._send(self.data0)
            if self.total == 0:
                self._finish()
            else:
                self._write_next()

    def _next_byte(self) -> None:
        """BYTE_DONE cleared: the next byte, or the end of the command."""
        if self.phase == READING and not self.last:
            self._guarded(self._read_next)
        elif self.phase == WRITING and self.done < self.total:
            self._guarded(self._write_next)
        else:
            self._guarded(self._finish)

    def _read_next(self) -> None:
        self.last = bool(self.control & LAST_BYTE) or self.done + 1 == self.total
        self.blkdat = self._receive()
        self.done = min(self.done + 1, 0xFF)    # an I2C read may go on without end
        self.status |= BYTE_DONE

    def _write_next(self) -> None:
        self._send(self.blkdat)
        self.done += 1
        self.status |= BYTE_DONE

    def _finish(self) -> None:
        kind = (self.control >> 2) & 7
        self._pec_phase(kind, self.phase == READING)
        self._end(INTR)

    # --- interrupt ------------------------------------------------------------------------

    def _update_intx(self) -> None:
        host = (self.control & INTREN and self.status & INTERRUPTING
                and not self.pci.hostc & SMB_SMI_EN)
        notify = self.slave_command & HST_NTFY_INTREN and self.slave_status & HST_NTFY_STS
        self.pci.set_intx(bool(host or notify))

    # --- saved state ----------------------------------------------------------------------

    REGISTERS = {"status": 0xFF, "control": 0xFF & ~START, "command": 0xFF, "address": 0xFF,
                 "data0": 0xFF, "data1": 0xFF, "blkdat": 0xFF, "pec": 0xFF,
                 "aux_status": CRCE, "aux_control": AAC | E32B,
                 "smlink_pins": PIN_CLOCK_DRIVE, "smbus_pins": PIN_CLOCK_DRIVE,
                 "slave_status": HST_NTFY_STS, "slave_command": SLVCMD_BITS,
                 "block_index": BLOCK_MAX - 1, "phase": 0x03, "done": 0xFF, "total": 0xFF,
                 "crc": 0xFF}

    def save(self) -> dict:
        """Targets save their own state (they are the board's devices)."""
        return {"pci": self.pci.save(), "block": bytes(self.block), "last": self.last,
                "held": self.held, **{name: getattr(self, name) for name in self.REGISTERS}}

    def load(self, state: dict) -> None:
        where = "SmbusController"
        config = self.pci.check_state(_state.field(state, "pci", where))
        for name, bits in self.REGISTERS.items():
            value = _state.int_field(state, name, where, 0, 0xFF)
            if value & ~bits or (name == "phase" and value > WRITING):
                raise StateError(f"{where}.{name}: {value:#x} has bits the register lacks")
        block = _state.bytes_field(state, "block", where, BLOCK_MAX)
        last = _state.bool_field(state, "last", where)
        held = _state.int_field(state, "held", where, 0, 0x7F, none=True)
        busy = bool(state["status"] & HOST_BUSY)
        if busy != (state["phase"] != IDLE) or (busy and not state["status"] & BYTE_DONE):
            raise StateError(f"{where}: busy without a byte-by-byte command waiting")
        if config[0][HOSTC] & SSRESET:
            raise StateError(f"{where}: HOSTC.SSRESET is set")
        self.pci.apply_state(config)
        self.block[:] = block
        self.last, self.held = last, held
        for name in self.REGISTERS:
            setattr(self, name, state[name])
        self._update_intx()


class _Function(PciFunction):
    """00:1f.4's configuration space: HOSTC's bits act on the controller."""

    def __init__(self, controller: SmbusController):
        super().__init__(VENDOR_INTEL, DEVICE_SMBUS, CLASS_SMBUS, REVISION,
                         subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        self.controller = controller
        self.config[HOSTC] = HOSTC_FIRMWARE
        self.writable[HOSTC] = HST_EN | SMB_SMI_EN | I2C_EN | SSRESET | SPD_WD
        self.config[TCOBASE:TCOBASE + 4] = TCOBASE_VALUE.to_bytes(4, "little")
        self.config[TCOCTL:TCOCTL + 4] = TCOCTL_VALUE.to_bytes(4, "little")
        self.mark_reset_state()

    @property
    def hostc(self) -> int:
        return self.config[HOSTC]

    def write_config(self, offset: int, size: int, value: int) -> None:
        spd_wd = self.config[HOSTC] & SPD_WD
        super().write_config(offset, size, value)
        if offset <= HOSTC < offset + size:
            self.config[HOSTC] |= spd_wd          # SPD_WD: once set, only a reset clears it
            if self.config[HOSTC] & SSRESET:
                self.config[HOSTC] &= ~SSRESET
                self.controller.soft_reset()
            self.controller._update_intx()       # SMB_SMI_EN moves the interrupt to SMI#


class _Mirror:
    """BAR0: the I/O registers again at 00-1F; the rest of the 4 KiB reads 0."""

    def __init__(self, controller: SmbusController):
        self.controller = controller

    def read(self, offset: int, size: int) -> int:
        if 0 <= offset and offset + size <= IO_SIZE:
            return self.controller.read(offset, size)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if 0 <= offset and offset + size <= IO_SIZE:
            self.controller.write(offset, size, value)
