"""The xHCI's rings: the command and transfer rings it consumes, the event rings it produces
(xHCI 1.1 §4.9).

A consumer ring is a dequeue pointer and a cycle state: the TRB at the pointer belongs to the
controller when its cycle bit equals the state. Link TRBs move the pointer to another segment
and, with Toggle Cycle, flip the state. The controller never writes these rings.

An event ring is described by its Event Ring Segment Table (ERSTSZ entries at ERSTBA, each a
64-byte aligned segment base and a size of 16 to 4096 TRBs), read when software writes ERSTBA.
The controller writes events at its enqueue pointer with its producer cycle state (1 at first,
flipped at each wrap to segment 0); software says what it consumed by writing ERDP. The ring is
full when the slot after the enqueue pointer is ERDP's: an event that does not fit waits, in
order, until software frees a slot (events are never dropped while the guest is merely slow;
a guest that stops reading for good gets `MAX_WAITING` of them held, then the Event Ring Full
error, and the rest are lost).

The guest owns every byte here: a ring that loops through Link TRBs only, a TD longer than any
driver writes, a segment that is not RAM end in RingError, which the controller turns into a
completion code or a host controller error, never a hang.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from imacpro.devices.usb.xhci import trb as T

MAX_LINKS = 32            # consecutive Link TRBs before the ring is judged a loop
MAX_TD_TRBS = 4096        # TRBs in one TD (Linux's largest are a few hundred)
MAX_SEGMENT_TRBS, MIN_SEGMENT_TRBS = 4096, 16
MAX_WAITING = 1024        # events held while the event ring is full

Read = Callable[[int, int], "bytes | None"]       # DMA: (address, length) -> bytes or None


class RingError(Exception):
    """The ring cannot be read as a ring: `code` is the completion code to report, or None
    when the memory itself failed (a host system error)."""

    def __init__(self, message: str, code: int | None = T.TRB_ERROR):
        super().__init__(message)
        self.code = code


class ConsumerRing:
    """A command or transfer ring as the controller reads it."""

    def __init__(self, dequeue: int = 0, cycle: int = 1):
        self.dequeue = dequeue & ~0xF
        self.cycle = cycle & 1

    def set(self, dequeue: int, cycle: int) -> None:
        self.dequeue = dequeue & ~0xF
        self.cycle = cycle & 1

    def _next(self, read: Read, address: int, cycle: int) -> tuple[int, T.Trb, int] | None:
        """The TRB at `address` or after the Link TRBs from there: (its address, it, the
        cycle state it was read with); None when the controller does not own it yet."""
        for _ in range(MAX_LINKS):
            raw = read(address, T.SIZE)
            if raw is None:
                raise RingError(f"ring TRB at {address:#x} is not in memory", None)
            t = T.Trb.unpack(raw)
            if t.cycle != cycle:
                return None
            if t.type != T.LINK:
                return address, t, cycle
            address = t.parameter & ~0xF
            if t.has(T.TOGGLE_CYCLE):
                cycle ^= 1
        raise RingError("the ring loops through Link TRBs")

    def peek(self, read: Read) -> tuple[int, T.Trb] | None:
        """The next TRB the controller owns, not consumed (commands come one at a time)."""
        found = self._next(read, self.dequeue, self.cycle)
        if found is None:
            return None
        address, t, cycle = found
        self.dequeue, self.cycle = address, cycle     # the Link TRBs before it are consumed
        return address, t

    def consume(self) -> None:
        """Past the TRB `peek` returned."""
        self.dequeue += T.SIZE

    def next_td(self, read: Read, address: int | None = None, cycle: int | None = None
                ) -> tuple[list[tuple[int, T.Trb]], int, int] | None:
        """The next whole TD (from the dequeue pointer, or from `address` with `cycle`): its TRBs (address, TRB) and the dequeue pointer and cycle after
        it, or None when the controller does not own all of it yet. The ring does not move
        until `advance`."""
        if address is None:
            address, cycle = self.dequeue, self.cycle
        trbs: list[tuple[int, T.Trb]] = []
        while True:
            found = self._next(read, address, cycle)
            if found is None:
                return None
            address, t, cycle = found
            trbs.append((address, t))
            address += T.SIZE
            if not t.has(T.CHAIN):
                return trbs, address, cycle
            if len(trbs) >= MAX_TD_TRBS:
                raise RingError(f"a TD of more than {MAX_TD_TRBS} TRBs")

    def advance(self, dequeue: int, cycle: int) -> None:
        self.dequeue, self.cycle = dequeue, cycle

    def save(self) -> dict:
        return {"dequeue": self.dequeue, "cycle": self.cycle}


class EventRing:
    """One interrupter's event ring, as the controller writes it."""

    def __init__(self):
        self.segments: list[tuple[int, int]] = []     # (base, TRBs)
        self.segment = self.index = 0
        self.cycle = 1
        self.waiting: deque[T.Trb] = deque()
        self.lost = 0
        self.full_reported = False

    def configure(self, read: Read, table: int, count: int) -> None:
        """Software wrote ERSTBA: read the segment table; the enqueue pointer goes to the
        start of segment 0 with cycle 1. A bad table leaves no segments (events then wait
        until a good one is written). Raises RingError(None) if the table is not memory."""
        self.segments, self.segment, self.index, self.cycle = [], 0, 0, 1
        self.waiting.clear()
        self.full_reported = False
        if count == 0:
            return
        raw = read(table, 16 * count)
        if raw is None:
            raise RingError(f"event ring segment table at {table:#x} is not memory", None)
        segments = []
        for n in range(count):
            base = int.from_bytes(raw[16 * n:16 * n + 8], "little") & ~0x3F
            size = int.from_bytes(raw[16 * n + 8:16 * n + 10], "little")
            if not MIN_SEGMENT_TRBS <= size <= MAX_SEGMENT_TRBS:
                return
            segments.append((base, size))
        self.segments = segments

    @property
    def enqueue(self) -> int:
        if not self.segments:
            return 0
        base, _ = self.segments[self.segment]
        return base + T.SIZE * self.index

    def _following(self) -> int:
        base, size = self.segments[self.segment]
        if self.index + 1 < size:
            return base + T.SIZE * (self.index + 1)
        return self.segments[(self.segment + 1) % len(self.segments)][0]

    def _full(self, dequeue: int) -> bool:
        return self._following() == dequeue & ~0xF

    def post(self, event: T.Trb, dequeue: int, write: Callable[[int, bytes], bool]) -> bool:
        """Queue `event`; write what fits. True if anything was written (the interrupter's
        pending bit is set for it)."""
        if len(self.waiting) >= MAX_WAITING:
            self.lost += 1
            if not self.full_reported:
                self.full_reported = True
                self.waiting.append(T.event(T.HOST_CONTROLLER_EVENT, code=T.EVENT_RING_FULL))
            return self.flush(dequeue, write)
        self.waiting.append(event)
        return self.flush(dequeue, write)

    def flush(self, dequeue: int, write: Callable[[int, bytes], bool]) -> bool:
        """Write the waiting events while the ring has room (after software moved ERDP)."""
        wrote = False
        while self.waiting and self.segments and not self._full(dequeue):
            e = self.waiting[0]
            raw = T.Trb(e.parameter, e.status, e.control & ~T.CYCLE | self.cycle).pack()
            if not write(self.enqueue, raw):
                raise RingError(f"event ring at {self.enqueue:#x} is not memory", None)
            self.waiting.popleft()
            wrote = True
            self.index += 1
            if self.index == self.segments[self.segment][1]:
                self.index = 0
                self.segment += 1
                if self.segment == len(self.segments):
                    self.segment = 0
                    self.cycle ^= 1
        if not self.waiting:
            self.full_reported = False
        return wrote

    def has_events_after(self, dequeue: int) -> bool:
        """Whether events software has not consumed lie between `dequeue` and the enqueue
        pointer."""
        return bool(self.segments) and dequeue & ~0xF != self.enqueue
