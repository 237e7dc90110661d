"""Apple's System Management Controller, inside the T2: its keys, through the memory-mapped
key window that ACPI device APP0001 describes (what Linux's applesmc uses on T2 Macs when the
SMC's key LDKN is 2 or more), in place of the older Macs' I/O ports.

    | offset | register                                                                     |
    |--------|------------------------------------------------------------------------------|
    | 0x00   | data, 32 bytes: a read's value, a write's; a key's info (type 0-3, length 5, |
    |        | flags 6); a key by index: its name                                          |
    | 0x78   | key: the name's four characters in order (by index: the index, big endian) |
    | 0x7D   | data length: a write's, set by a read to the key's                           |
    | 0x7E   | SMC id (0)                                                                   |
    | 0x7F   | command: 0x10 read, 0x11 write, 0x12 key by index, 0x13 key info; a write    |
    |        | covering it starts the command it holds; once done, the result (0: success) |
    | 0x4005 | status: 0x20 = the command is done; the host writes 0 to clear it            |

The window is 64 KiB at layout.SMC_BASE (Linux's driver needs at least 0x4006 bytes); what
is not a register above reads as zero. Commands complete at once.

Results, as the SMC reports them: 0x82 bad command, 0x84 no such key, 0x85 not readable,
0x86 not writable, 0x87 a write of the wrong length, 0xB8 an index past the last key.

Keys are sorted (the driver finds a key by bisecting the indices) and typed: ui8/ui16/ui32
big endian, `flt ` an IEEE float in the host's order (the T2's fan keys), `sp78` a signed 8.8
fixed-point big-endian temperature, `ch8*` characters. Flags: 0x80 readable, 0x40 writable.
The real SMC has 638 keys; the model has those the probes show and Linux reads: the key count,
FNum (2 fans), each fan's actual/minimum/maximum/target speed and manual mode (F0Ac, F0Mn,
F0Mx, F0Tg, F0Md and F1's), LDKN 3, the platform RPlt "j137", the CPU proximity, GPU and
memory temperatures (TC0P, TG0P, TM0P). Their values come from the thermal model
(devices/thermal.py); the owner's writes to F*Mn, F*Md and F*Tg steer its fans.

The legacy I/O ports 0x300-0x31F stay in APP0001's resources (the driver requires them) but
the T2 does not serve the old protocol there: they read 0xFF (on a real iMac Pro no applesmc
sensors appear with a stock kernel: its driver tries those ports only).

Saved state: the window's registers and status; the thermal model saves its own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from imacpro.devices import _state, thermal
from imacpro.devices.contract import StateError
from imacpro.devices.thermal import ThermalModel

SIZE = 0x10000
DATA, KEY, DATA_LENGTH, SMC_ID, COMMAND, STATUS = 0x00, 0x78, 0x7D, 0x7E, 0x7F, 0x4005
REGISTERS = 0x80                 # the bytes at 0x00-0x7F
DATA_MAX = 32
STATUS_DONE = 0x20
READ, WRITE, KEY_BY_INDEX, KEY_INFO = 0x10, 0x11, 0x12, 0x13
SUCCESS, BAD_COMMAND, NOT_FOUND, NOT_READABLE, NOT_WRITABLE, SIZE_MISMATCH, INDEX_RANGE = (
    0x00, 0x82, 0x84, 0x85, 0x86, 0x87, 0xB8)
READABLE, WRITABLE = 0x80, 0x40
LDKN = 3                         # the real iMac Pro's: the MMIO interface is there
PLATFORM = b"j137"


@dataclass(frozen=True)
class Key:
    name: bytes                  # four characters
    type: bytes                  # four characters
    length: int
    flags: int
    read: Callable[[], bytes]
    write: Callable[[bytes], None] | None = None


def sp78(celsius: float) -> bytes:
    return struct.pack(">h", max(-32768, min(32767, round(celsius * 256))))


def flt(value: float) -> bytes:
    return struct.pack("<f", value)


def from_flt(data: bytes) -> float:
    return struct.unpack("<f", data)[0]


class LegacyPorts:
    """0x300-0x31F: nothing answers the old port protocol there (see the module's text)."""

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        pass


class AppleSmc:
    def __init__(self, model: ThermalModel):
        self.thermal = model
        self.legacy_ports = LegacyPorts()
        self.keys = sorted(self._key_table(), key=lambda k: k.name)
        self.by_name = {k.name: k for k in self.keys}
        self.reset()

    def _key_table(self) -> list[Key]:
        model = self.thermal
        keys = [
            Key(b"#KEY", b"ui32", 4, READABLE, lambda: struct.pack(">I", len(self.keys))),
            Key(b"FNum", b"ui8 ", 1, READABLE, lambda: bytes([thermal.FANS])),
            Key(b"LDKN", b"ui8 ", 1, READABLE, lambda: bytes([LDKN])),
            Key(b"RPlt", b"ch8*", 8, READABLE, lambda: PLATFORM.ljust(8, b"\0")),
            Key(b"TC0P", b"sp78", 2, READABLE, lambda: sp78(self.thermal.readings()["cpu_c"])),
            Key(b"TG0P", b"sp78", 2, READABLE, lambda: sp78(self.thermal.readings()["gpu_c"])),
            Key(b"TM0P", b"sp78", 2, READABLE, lambda: sp78(self.thermal.readings()["memory_c"])),
        ]
        for fan in range(thermal.FANS):
            keys += self._fan_keys(fan, model)
        return keys

    def _fan_keys(self, fan: int, model: ThermalModel) -> list[Key]:
        def prefix(suffix: str) -> bytes:
            return f"F{fan}{suffix}".encode()

        def set_min(data: bytes) -> None:
            model.update()
            model.fan_min[fan] = min(thermal.FAN_MAX_RPM, max(0.0, _finite(from_flt(data))))

        def set_manual(data: bytes) -> None:
            model.update()
            model.fan_manual[fan] = bool(data[0] & 1)

        def set_target(data: bytes) -> None:
            model.update()
            model.fan_target_manual[fan] = min(thermal.FAN_MAX_RPM,
                                               max(0.0, _finite(from_flt(data))))

        rw = READABLE | WRITABLE
        return [
            Key(prefix("Ac"), b"flt ", 4, READABLE,
                lambda: flt(self.thermal.readings()["fans"][fan]["rpm"])),
            Key(prefix("Md"), b"ui8 ", 1, rw, lambda: bytes([int(model.fan_manual[fan])]),
                set_manual),
            Key(prefix("Mn"), b"flt ", 4, rw, lambda: flt(model.fan_min[fan]), set_min),
            Key(prefix("Mx"), b"flt ", 4, READABLE, lambda: flt(thermal.FAN_MAX_RPM)),
            Key(prefix("Tg"), b"flt ", 4, rw,
                lambda: flt(self.thermal.readings()["fans"][fan]["target"]), set_target),
        ]

    def reset(self) -> None:
        self.registers = bytearray(REGISTERS)
        self.status = 0
        self.thermal.reset()

    # --- the window -------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        value = 0
        for n in range(size):
            at = offset + n
            if at < REGISTERS:
                byte = self.registers[at]
            else:
                byte = self.status if at == STATUS else 0
            value |= byte << (8 * n)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        command = False
        for n in range(size):
            at, byte = offset + n, (value >> (8 * n)) & 0xFF
            if at < REGISTERS:
                self.registers[at] = byte
                command = command or at == COMMAND
            elif at == STATUS:
                self.status = byte & STATUS_DONE
        # A write that covers the command byte with 0 (the driver's 32-bit write of the SMC
        # id at 0x7E reaches it) starts nothing.
        if command and self.registers[COMMAND]:
            self.registers[COMMAND] = self._run(self.registers[COMMAND])
            self.status = STATUS_DONE

    def _run(self, command: int) -> int:
        name = bytes(self.registers[KEY:KEY + 4])
        if command == KEY_BY_INDEX:
            index = int.from_bytes(name, "big")
            if index >= len(self.keys):
                return INDEX_RANGE
            return self._answer(self.keys[index].name)
        if command not in (READ, WRITE, KEY_INFO):
            return BAD_COMMAND
        key = self.by_name.get(name)
        if key is None:
            return NOT_FOUND
        if command == KEY_INFO:
            return self._answer(key.type + bytes([0, key.length, key.flags]))
        if command == READ:
            if not key.flags & READABLE:
                return NOT_READABLE
            return self._answer(key.read())
        if key.write is None:
            return NOT_WRITABLE
        if self.registers[DATA_LENGTH] != key.length:
            return SIZE_MISMATCH
        key.write(bytes(self.registers[DATA:DATA + key.length]))
        return SUCCESS

    def _answer(self, data: bytes) -> int:
        self.registers[DATA:DATA + DATA_MAX] = data.ljust(DATA_MAX, b"\0")
        self.registers[DATA_LENGTH] = len(data)
        return SUCCESS

    # --- the host's view ----------------------------------------------------------------------

    def sensors(self) -> dict:
        """What `imacpro sensors` shows: the model's readings, with the SMC's key names."""
        reading = self.thermal.readings()
        return {"temperatures": {"TC0P": reading["cpu_c"], "TG0P": reading["gpu_c"],
                                 "TM0P": reading["memory_c"]},
                "package_w": reading["package_w"], "fans": reading["fans"]}

    # --- saved state --------------------------------------------------------------------------

    def save(self) -> dict:
        return {"registers": bytes(self.registers), "status": self.status,
                "thermal": self.thermal.save()}

    def load(self, state: dict) -> None:
        where = "AppleSmc"
        registers = _state.bytes_field(state, "registers", where, REGISTERS)
        status = _state.int_field(state, "status", where, 0, STATUS_DONE)
        if status not in (0, STATUS_DONE):
            raise StateError(f"{where}.status: {status:#x} is not a status the SMC shows")
        self.thermal.load(_state.field(state, "thermal", where))
        self.registers[:] = registers
        self.status = status


def _finite(value: float) -> float:
    """A float the guest wrote: NaN and infinities count as 0."""
    return value if value == value and abs(value) != float("inf") else 0.0
