"""The ways a PC resets itself: port 0xCF9, the i8042 keyboard controller, port 0x92."""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError, load_fields, save_fields
from imacpro.devices.lpc import ByteRegisters
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)


class ResetControl(ByteRegisters):
    """Reset Control Register at port 0xCF9 (Intel PCH datasheet, "RST_CNT", I/O CF9h).

    | bit | name     | meaning                                                          |
    |-----|----------|------------------------------------------------------------------|
    | 1   | SYS_RST  | with RST_CPU: platform reset instead of a CPU-only (INIT) reset  |
    | 2   | RST_CPU  | writing 1 resets; the write-once bit always reads 0              |
    | 3   | FULL_RST | with RST_CPU: drop power (full reset)                            |

    Any write with bit 2 set calls `on_reset()` (the machine makes no difference between the
    reset kinds; they are kept in `value` for it to look at). Reads return the last written
    byte with bit 2 clear. One byte at offset 0: bytes beyond it read 0xFF, sizes other than
    1, 2, 4, 8 read 0 and are ignored. `reset()` clears the register (core well).
    Saved state: the register.
    """

    SYS_RST, RST_CPU, FULL_RST = 0x02, 0x04, 0x08

    def __init__(self, on_reset: Callable[[], None]):
        self._on_reset = on_reset
        self.value = 0

    def reset(self) -> None:
        self.value = 0

    def save(self) -> dict:
        return save_fields(self, ("value",))

    def load(self, state: dict) -> None:
        value = _state.int_field(state, "value", "ResetControl", 0, 0xFF)
        if value & self.RST_CPU:
            raise StateError("ResetControl: RST_CPU is write-once and never stored")
        load_fields(self, state, ("value",))

    def _read_byte(self, offset: int) -> int:
        if offset != 0:
            log.debug("cf9: read of offset %#x outside the register", offset)
            return 0xFF
        return self.value

    def _write_byte(self, offset: int, value: int) -> None:
        if offset != 0:
            log.debug("cf9: write %#x to offset %#x ignored", value, offset)
            return
        self.value = value & ~self.RST_CPU
        if value & self.RST_CPU:
            log.info("reset requested through port 0xCF9 (%#04x)", value)
            self._on_reset()


# i8042 status register bits.
STAT_OBF, STAT_IBF, STAT_SYS, STAT_CMD, STAT_UNLOCKED, STAT_AUX, STAT_TIMEOUT = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40)
# Command byte (controller RAM byte 0) bits.
CTR_KBDINT, CTR_AUXINT, CTR_SYS, CTR_KBDDIS, CTR_AUXDIS = 0x01, 0x02, 0x04, 0x10, 0x20
# Output port bits.
OUT_RESET, OUT_A20, OUT_KBD_OBF, OUT_AUX_OBF = 0x01, 0x02, 0x10, 0x20
OUT_POWER_ON = 0xCF  # reset line high (inactive), A20 on, clock/data lines idle high

DEVICE_TIMEOUT = 0xFE  # what the controller reports when nothing answers on a PS/2 port
QUEUE_MAX = 16


class KeyboardController(ByteRegisters):
    """Intel 8042-compatible PS/2 controller with nothing plugged into either port.

    Ports 0x60-0x64 as one device (offset 0 = 0x60 data, offset 4 = 0x64 status/command;
    offsets 1-3 read 0xFF, writes there are ignored). Follows the IBM PS/2 Hardware Interface
    Technical Reference (keyboard/auxiliary device controller) and what Linux's i8042.c probes.

    Status (read 0x64): OBF, IBF (always 0: commands complete at once), SYS (set by a self
    test or by command-byte bit 2), CMD/DATA (last write went to 0x64), UNLOCKED (no keylock),
    AUX (the output byte is from the aux port), TIMEOUT (the output byte is a device time-out).

    Commands (write 0x64): 0x20-0x3F read RAM byte n (0x20: command byte), 0x60-0x7F write it
    (next data byte), 0xA7/0xA8 disable/enable aux, 0xA9 aux interface test -> 00, 0xAA self
    test -> 55 (sets SYS), 0xAB keyboard interface test -> 00, 0xAD/0xAE disable/enable
    keyboard, 0xD0 read output port, 0xD1 write output port (bit 0 = 0 resets, bit 1 = A20),
    0xD2/0xD3 write the keyboard/aux output buffer (echo), 0xD4 send the next byte to the aux
    device, 0xDD/0xDF A20 off/on, 0xF0-0xFF pulse output-port bits 3:0 (a 0 bit pulses; bit 0
    = reset, so 0xFE resets). Other commands are logged and ignored.

    No keyboard and no mouse (the iMac Pro has no PS/2 devices): a byte sent to either device
    (a data write outside a command, or after 0xD4) is answered by the controller with 0xFE
    and TIMEOUT set, as a PS/2 controller reports a device that never clocks. Linux's
    atkbd/psmouse then fail their probes at once instead of waiting for time-outs. The
    controller itself passes every test, so i8042.c registers its ports without errors.

    Output bytes queue (up to 16) and raise `kbd_irq` (IRQ 1) or `aux_irq` (IRQ 12) while
    the byte waits and command-byte bit 0/1 enables it; reading 0x60 without a byte returns
    the last one. A20 is recorded in `a20` only (the CPU runs in long mode; nothing masks
    address bit 20). Sizes other than 1, 2, 4, 8 read 0 and are ignored.

    Saved state: the 32 bytes of controller RAM (command byte first), the status flags, the
    output queue as [byte, AUX/TIMEOUT flags] pairs, the last byte read, the command waiting
    for its data byte and the output port. `load()` drives IRQ 1 and 12 from the queue's head.
    """

    DATA, STATUS = 0, 4

    def __init__(self, on_reset: Callable[[], None], kbd_irq: IrqLine | None = None,
                 aux_irq: IrqLine | None = None):
        self._on_reset = on_reset
        self._kbd_irq = kbd_irq or IrqLine("i8042-kbd")
        self._aux_irq = aux_irq or IrqLine("i8042-aux")
        self.reset()

    def reset(self) -> None:
        self.ram = bytearray(32)
        self.ram[0] = CTR_KBDINT | CTR_AUXINT
        self.status = STAT_UNLOCKED  # the flag bits; OBF/AUX/TIMEOUT come from `queue`
        self.queue: list[tuple[int, int]] = []  # (byte, STAT_AUX|STAT_TIMEOUT bits)
        self.last = 0
        self.pending = 0  # the command waiting for its data byte, or 0
        self.outport = OUT_POWER_ON
        self._update_irq()

    @property
    def a20(self) -> bool:
        return bool(self.outport & OUT_A20)

    def save(self) -> dict:
        return save_fields(self, _KBC_SAVED)

    def load(self, state: dict) -> None:
        where = "KeyboardController"
        _state.ranges(state, where, {"status": (0, 0xFF), "last": (0, 0xFF),
                                     "pending": (0, 0xFF), "outport": (0, 0xFF)})
        if state["status"] & (STAT_OBF | STAT_IBF | STAT_AUX | STAT_TIMEOUT):
            raise StateError(f"{where}: status bits that come from the queue")
        queue = []
        for n, item in enumerate(_state.list_field(state, "queue", where, max_length=QUEUE_MAX)):
            if not isinstance(item, list) or len(item) != 2:
                raise StateError(f"{where}.queue[{n}]: not a [byte, flags] pair")
            byte = _state.integer(item[0], f"{where}.queue[{n}]", 0, 0xFF)
            flags = _state.integer(item[1], f"{where}.queue[{n}]", 0, 0xFF)
            if flags & ~(STAT_AUX | STAT_TIMEOUT):
                raise StateError(f"{where}.queue[{n}]: flags {flags:#x}")
            queue.append((byte, flags))
        load_fields(self, state, [name for name in _KBC_SAVED if name != "queue"])
        self.queue = queue
        self._update_irq()

    def _read_byte(self, offset: int) -> int:
        if offset == self.DATA:
            if self.queue:
                self.last = self.queue.pop(0)[0]
                self._kbd_irq.set(False)  # each queued byte is a new edge
                self._aux_irq.set(False)
                self._update_irq()
            return self.last
        if offset == self.STATUS:
            if not self.queue:
                return self.status
            return self.status | STAT_OBF | self.queue[0][1]
        log.debug("i8042: read of unknown offset %#x", offset)
        return 0xFF

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == self.DATA:
            self.status &= ~STAT_CMD
            command, self.pending = self.pending, 0
            if command:
                self._command_data(command, value)
            else:
                self._to_device(value, aux=False)
        elif offset == self.STATUS:
            self.status |= STAT_CMD
            self.pending = 0
            self._command(value)
        else:
            log.debug("i8042: write %#x to unknown offset %#x ignored", value, offset)

    def _command(self, cmd: int) -> None:
        ctr = self.ram[0]
        if 0x20 <= cmd <= 0x3F:
            self._output(self.ram[cmd & 0x1F])
        elif 0x60 <= cmd <= 0x7F or cmd in (0xD1, 0xD2, 0xD3, 0xD4):
            self.pending = cmd
        elif cmd in (0xA7, 0xA8):
            self.ram[0] = ctr | CTR_AUXDIS if cmd == 0xA7 else ctr & ~CTR_AUXDIS
        elif cmd in (0xA9, 0xAB):
            self._output(0x00)  # interface test: no clock or data line stuck
        elif cmd == 0xAA:
            self.status |= STAT_SYS
            self._output(0x55)
        elif cmd in (0xAD, 0xAE):
            self.ram[0] = ctr | CTR_KBDDIS if cmd == 0xAD else ctr & ~CTR_KBDDIS
        elif cmd == 0xD0:
            obf = OUT_AUX_OBF if self.queue and self.queue[0][1] & STAT_AUX else OUT_KBD_OBF
            self._output(self.outport & ~(OUT_KBD_OBF | OUT_AUX_OBF) | (obf if self.queue else 0))
        elif cmd in (0xDD, 0xDF):
            self.outport = self.outport | OUT_A20 if cmd == 0xDF else self.outport & ~OUT_A20
        elif cmd >= 0xF0:
            if not cmd & OUT_RESET:
                log.info("reset requested through the i8042 (command %#04x)", cmd)
                self._on_reset()
        else:
            log.debug("i8042: unsupported command %#04x ignored", cmd)
        self._update_irq()

    def _command_data(self, cmd: int, value: int) -> None:
        if 0x60 <= cmd <= 0x7F:
            self.ram[cmd & 0x1F] = value
            if cmd == 0x60:
                self.status = self.status | STAT_SYS if value & CTR_SYS else self.status & ~STAT_SYS
            self._update_irq()
        elif cmd == 0xD1:
            self.outport = value | OUT_RESET  # the reset line is pulsed, not held
            if not value & OUT_RESET:
                log.info("reset requested through the i8042 output port (%#04x)", value)
                self._on_reset()
        elif cmd in (0xD2, 0xD3):
            self._output(value, STAT_AUX if cmd == 0xD3 else 0)
        else:  # 0xD4
            self._to_device(value, aux=True)

    def _to_device(self, value: int, aux: bool) -> None:
        log.debug("i8042: %#04x to the absent %s device", value, "aux" if aux else "keyboard")
        self._output(DEVICE_TIMEOUT, STAT_TIMEOUT | (STAT_AUX if aux else 0))

    def _output(self, value: int, flags: int = 0) -> None:
        if len(self.queue) >= QUEUE_MAX:
            log.debug("i8042: output queue full, %#04x dropped", value)
            return
        self.queue.append((value, flags))
        self._update_irq()

    def _update_irq(self) -> None:
        head = self.queue[0][1] if self.queue else None
        ctr = self.ram[0]
        self._kbd_irq.set(head is not None and not head & STAT_AUX and bool(ctr & CTR_KBDINT))
        self._aux_irq.set(head is not None and bool(head & STAT_AUX) and bool(ctr & CTR_AUXINT))


_KBC_SAVED = ("ram", "status", "queue", "last", "pending", "outport")


class FastA20Port(ByteRegisters):
    """System Control Port A at port 0x92 (Intel PCH datasheet, "PORT92").

    | bit | name         | meaning                                                     |
    |-----|--------------|-------------------------------------------------------------|
    | 0   | INIT_NOW     | a 0 -> 1 transition resets the CPU ("fast reset")           |
    | 1   | ALT_A20_GATE | A20 (recorded in `a20`; nothing masks address bit 20)       |

    Bits 7:2 are reserved and read 0. Reads return bits 1:0 as last written. One byte at
    offset 0: bytes beyond it read 0xFF, sizes other than 1, 2, 4, 8 read 0 and are ignored.
    Saved state: bits 1:0 (INIT_NOW as last written: the next 0 -> 1 resets).
    """

    INIT_NOW, A20 = 0x01, 0x02

    def __init__(self, on_reset: Callable[[], None]):
        self._on_reset = on_reset
        self.value = 0

    def reset(self) -> None:
        self.value = 0

    def save(self) -> dict:
        return save_fields(self, ("value",))

    def load(self, state: dict) -> None:
        _state.int_field(state, "value", "FastA20Port", 0, self.INIT_NOW | self.A20)
        load_fields(self, state, ("value",))

    @property
    def a20(self) -> bool:
        return bool(self.value & self.A20)

    def _read_byte(self, offset: int) -> int:
        if offset != 0:
            log.debug("port92: read of offset %#x outside the register", offset)
            return 0xFF
        return self.value

    def _write_byte(self, offset: int, value: int) -> None:
        if offset != 0:
            log.debug("port92: write %#x to offset %#x ignored", value, offset)
            return
        old, self.value = self.value, value & (self.INIT_NOW | self.A20)
        if value & self.INIT_NOW and not old & self.INIT_NOW:
            log.info("reset requested through port 0x92")
            self._on_reset()
