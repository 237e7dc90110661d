"""MMIO dispatch: guest-physical ranges owned by devices, mapped into every vCPU.

Unicorn calls back on each access to an `mmio_map`ped range; the callback forwards to the
device's read/write with the offset inside its range. Ranges are page aligned (Unicorn maps
whole pages); a device smaller than its page sees offsets past its end and ignores them, as
its own docstring says. The local APIC is per CPU and mapped by the vCPU itself. A device's
exception on an access is the guard's (guest_errors.py): reads return all ones.

A window (a PCI memory window) is a range whose contents move: its device decodes each access,
and the parts that are plain memory (a BAR backed by host memory, such as a framebuffer) are
mapped into the engines directly, so the guest reaches them at memory speed with no Python
call; so are pages a device serves with C accessors of its own (`NativeAccess`: the SSD's
doorbells), which the engine calls without Python, its GIL or the machine's lock. `direct()`
says where those parts are now; each vCPU's `MappedWindows` maps the window as device pieces
around them and follows them when `generation` moves (a BAR moved, decoding turned on or
off): the engine that made the change at once, the others before they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from imacpro.big_lock import BigLock
from imacpro.bus.guest_errors import GuestErrors

PAGE = 0x1000
PROT_ALL = 7                 # Unicorn's UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC


@dataclass(frozen=True)
class MmioRegion:
    base: int
    size: int
    device: object


@dataclass(frozen=True)
class MmioWindow:
    base: int
    size: int
    device: object
    # (address, size, host address or NativeAccess)
    direct: Callable[[], list[tuple[int, int, int | NativeAccess]]]


@dataclass(frozen=True)
class NativeAccess:
    """A page served by C accessors: Unicorn's MMIO read and write callbacks and the opaque
    argument they are given, as addresses. They run on the vCPU's thread without the GIL
    and without the machine's lock: the device's C guards its own state."""
    read: int
    write: int
    opaque: int


@dataclass(frozen=True)
class Piece:
    """A part of a window as an engine maps it: the window's device from `start` (offsets
    relative to the window), host memory at `host`, or a device's C accessors (`native`)."""
    start: int
    end: int
    window: MmioWindow
    host: int | None = None
    native: NativeAccess | None = None


class MmioBus:
    def __init__(self, errors: GuestErrors | None = None, lock: BigLock | None = None):
        """`lock`: the machine's, taken by every access an engine calls back for."""
        self.lock = lock or BigLock()
        self.regions: list[MmioRegion | MmioWindow] = []
        self.windows: list[MmioWindow] = []
        self.errors = errors or GuestErrors()
        self.generation = 0          # moves when a window's direct parts move
        self._pieces: list[Piece] = []

    def register(self, base: int, size: int, device) -> None:
        self.regions.append(MmioRegion(*self._check(base, size, device), device))

    def add_window(self, base: int, size: int, device,
                   direct: Callable[[], list[tuple[int, int, int | NativeAccess]]]) -> None:
        """A window at `base` decoded by `device`, with `direct()` giving its memory parts
        and its pages served in C."""
        window = MmioWindow(*self._check(base, size, device), device, direct)
        self.regions.append(window)
        self.windows.append(window)
        self.moved()

    def _check(self, base: int, size: int, device) -> tuple[int, int]:
        size = (size + PAGE - 1) & ~(PAGE - 1)
        if base % PAGE:
            raise ValueError(f"MMIO base {base:#x} is not page aligned")
        for r in self.regions:
            if base < r.base + r.size and r.base < base + size:
                raise ValueError(f"MMIO {base:#x}+{size:#x} overlaps {r.device!r}")
        return base, size

    def moved(self) -> bool:
        """The windows' direct parts may have changed: if they did, engines remap before
        they run on. Returns whether they did."""
        pieces = self.pieces()
        if pieces == self._pieces:
            return False
        self._pieces = pieces
        self.generation += 1
        return True

    def map_into(self, uc) -> MappedWindows:
        """Map every region into an engine; returns what keeps its windows up to date."""
        for r in self.regions:
            if isinstance(r, MmioRegion):
                map_device(uc, r.base, r.size, r.device, self.errors, self.lock)
        return MappedWindows(uc, self)

    def pieces(self) -> list[Piece]:
        """Every window cut into device pieces around its direct parts. A part that is not
        page aligned, leaves its window or overlaps another stays with the device."""
        out = []
        for w in self.windows:
            cursor, end = w.base, w.base + w.size
            for address, size, target in sorted(w.direct(), key=lambda part: part[:2]):
                if address < cursor or address + size > end or (address | size) % PAGE:
                    continue
                if address > cursor:
                    out.append(Piece(cursor, address, w))
                native = target if isinstance(target, NativeAccess) else None
                out.append(Piece(address, address + size, w,
                                 host=None if native else target, native=native))
                cursor = address + size
            if cursor < end:
                out.append(Piece(cursor, end, w))
        return out


class MappedWindows:
    """One engine's mapping of the bus's windows, redone when the bus's generation moves.
    Never call `update()` from inside a window's callback: unmapping frees the callbacks of
    the pieces it replaces."""

    def __init__(self, uc, bus: MmioBus):
        self.uc = uc
        self.bus = bus
        self.pieces: list[Piece] = []
        self.generation = -1
        self.update()

    def update(self) -> None:
        if self.generation == self.bus.generation:
            return
        self.generation = self.bus.generation
        wanted = self.bus.pieces()
        for piece in self.pieces:
            self.uc.mem_unmap(piece.start, piece.end - piece.start)
        for piece in wanted:
            size = piece.end - piece.start
            if piece.host is not None:
                self.uc.mem_map_ptr(piece.start, size, PROT_ALL, piece.host)
            elif piece.native is not None:
                map_native(self.uc, piece.start, size, piece.native)
            else:
                device = Offset(piece.window.device, piece.start - piece.window.base)
                map_device(self.uc, piece.start, size, device, self.bus.errors,
                           self.bus.lock)
        self.pieces = wanted


class Offset:
    """A device seen from `delta` bytes into it: a window's piece, or a register of a device
    whose ports are not contiguous (machine.py)."""

    def __init__(self, device, delta: int):
        self.device = device
        self.delta = delta

    def read(self, offset: int, size: int) -> int:
        return self.device.read(self.delta + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.device.write(self.delta + offset, size, value)

    def __repr__(self) -> str:
        return repr(self.device)


def guarded(device, base: int, errors: GuestErrors, lock: BigLock):
    """`device`'s read(offset, size) and write(offset, size, value) as the engine calls them,
    on the thread that runs it: under `lock`, a device's exception recorded (and a read
    answering all ones) rather than raised into the engine."""
    def read(offset, size):
        with lock:
            try:
                return device.read(offset, size)
            except Exception:
                errors.record(device, "read", base + offset, size)
                return (1 << (8 * size)) - 1

    def write(offset, size, value):
        with lock:
            try:
                device.write(offset, size, value)
            except Exception:
                errors.record(device, "write", base + offset, size)

    return read, write


def map_device(uc, base: int, size: int, device, errors: GuestErrors, lock: BigLock) -> None:
    """The engine calls back for each access (see `guarded`)."""
    read, write = guarded(device, base, errors, lock)
    uc.mmio_map(base, size, lambda _uc, offset, size, _data: read(offset, size), None,
                lambda _uc, offset, size, value, _data: write(offset, size, value), None)


def map_native(uc, base: int, size: int, access: NativeAccess) -> None:
    """The engine calls `access`'s C accessors for each access, with no Python between."""
    from unicorn import UcError
    from unicorn.unicorn_py3.unicorn import uclib
    status = uclib.uc_mmio_map(uc._uch, base, size, access.read, access.opaque, access.write,
                               access.opaque)
    if status:
        raise UcError(status)
