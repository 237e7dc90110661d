"""The machine's screen as its viewers see it: the boot framebuffer read where it is, and one
feed of what changed on it, shared by every RFB client of the machine (VNC and the page).

    MachineScreen  the framebuffer's words where they are, at its own size (3840 × 2160
                   XRGB8888, or 5120 × 2880 XRGB2101010)
    ScreenFeed     every 1/30 s of machine time while a client is watching: the engines'
                   dirty log (devices/display/changes.py) names the rows drawn on; the feed
                   compares them with the picture it last gave out, narrows each band to the
                   columns that differ, and finds a scroll (the picture moved up or down by
                   some rows) so that clients copy what they have instead of being sent it
                   again. Each client's `tick(update)` then gets the same Update, and reads
                   its pixels from the feed (as XRGB8888: 10-bit channels as their top 8
                   bits; black while the machine has no picture). With no client watching
                   nothing is looked at or kept.

One feed, not one per client: the dirty log is read by looking (a look clears it), so two
readers would take each other's changes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from imacpro.devices.display.changes import ScreenChanges

TICK_NS = 33_333_333                 # how often changes are looked for
MIN_SCROLL_ROWS = 64                 # a moved band shorter than this is sent, not copied
PROBES = 32                          # rows of a band that vote for where it scrolled from


class MachineScreen:
    """The boot framebuffer, read where it is."""

    def __init__(self, machine):
        self.machine = machine

    @property
    def mode(self):
        return self.machine.display_mode

    @property
    def width(self) -> int:
        return self.mode.width

    @property
    def height(self) -> int:
        return self.mode.height

    def raw(self) -> np.ndarray | None:
        """The framebuffer's words as they are, (height, width); None: no GPU."""
        gpu = self.machine.devices.get("gpu")
        if gpu is None:
            return None
        mode = self.mode
        pixels = np.frombuffer(gpu.aperture.view, dtype="<u4", count=mode.width * mode.height)
        return pixels.reshape(mode.height, mode.width)


@dataclass
class Update:
    """What changed since the last tick: `copies` (x, y, w, h, from_x, from_y) to be done
    first, in order, then `rects` (x, y, w, h) to be sent."""
    copies: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    rects: list[tuple[int, int, int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.copies or self.rects)


class ScreenFeed:
    """What every client is given: `width`, `height` and `region()` read the picture as the
    feed last gave it out (`shown`), never the framebuffer as it is at that moment, so that
    what a client has is always what the feed compares with. (A client served later than
    the look, reading a framebuffer that had moved on, could be left with a picture the feed
    never knew: a blinking cursor caught off, then on again, would never be sent again.)"""

    def __init__(self, machine):
        self.machine = machine
        self.screen = MachineScreen(machine)
        self.changes = ScreenChanges(machine)
        self.clients: set = set()
        self.shown: np.ndarray | None = None      # the picture given out, framebuffer words
        self.bits = self.screen.mode.bits
        self.timer = machine.clock.timer(self._tick)
        self.spent_ns = 0                         # host time spent on the clients, this tick
        self._last_shift = 0                      # the last scroll's distance in rows

    # --- the picture, as the clients have it -------------------------------------------------

    @property
    def width(self) -> int:
        return self.shown.shape[1] if self.shown is not None else self.screen.width

    @property
    def height(self) -> int:
        return self.shown.shape[0] if self.shown is not None else self.screen.height

    def region(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """XRGB8888, (h, w)."""
        if self.shown is None:
            return np.zeros((h, w), dtype=np.uint32)
        part = self.shown[y:y + h, x:x + w]
        if self.bits == 8:
            return part & 0xFFFFFF
        return (part >> 6 & 0xFF0000) | (part >> 4 & 0xFF00) | (part >> 2 & 0xFF)

    # --- clients -----------------------------------------------------------------------------

    def add(self, client) -> None:
        if not self.clients:
            # Drawn on while nobody watched: a new client asks for the whole screen anyway.
            self.changes.bands(self.screen.mode)
            self._snapshot()
            self.timer.arm(self.machine.clock.now_ns() + TICK_NS)
        self.clients.add(client)

    def remove(self, client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self.shown = None                     # 59 MB at 5K, kept only while watched

    def _snapshot(self) -> None:
        raw = self.screen.raw()
        self.shown = None if raw is None else raw.copy()
        self.bits = self.screen.mode.bits

    def _tick(self) -> None:
        """Look for changes while anyone watches; with no client the log is left alone
        (its pages stay marked, so the guest's stores never take the slow path). The next
        look waits at least TICK_NS, and longer when the clients cost more than a quarter
        of the run loop's time (a screen redrawn whole at 5K, 30 times a second, would
        otherwise take all of it from the vCPUs)."""
        if not self.clients:
            return
        started = time.perf_counter_ns()
        update = self.look()
        for client in list(self.clients):
            client.tick(update)
        self.spent_ns += time.perf_counter_ns() - started
        delay = max(TICK_NS, 3 * self.spent_ns)
        self.spent_ns = 0
        self.timer.arm(self.machine.clock.now_ns() + delay)

    @contextlib.contextmanager
    def serving(self):
        """Time spent serving a client between looks (its requests, encoded when they
        come) counts towards the next look's delay: `with feed.serving(): ...`."""
        started = time.perf_counter_ns()
        try:
            yield
        finally:
            self.spent_ns += time.perf_counter_ns() - started

    # --- looking -----------------------------------------------------------------------------

    def look(self) -> Update:
        mode = self.screen.mode
        bands = self.changes.bands(mode)
        raw = self.screen.raw()
        if raw is None:
            return Update()
        if self.shown is None or self.shown.shape != raw.shape or self.bits != mode.bits:
            # A new mode: the whole of it, and a picture to compare with.
            self._snapshot()
            return Update(rects=[(0, 0, mode.width, mode.height)])
        update = Update()
        for start, end in bands:
            parts = [(start, end)]
            scroll = self._scroll(raw, start, end)
            if scroll is not None:
                to, source, rows = scroll
                update.copies.append((0, to, mode.width, rows, 0, source))
                # Those rows, copied, are the framebuffer's own (_scroll compared them).
                self.shown[to:to + rows] = raw[to:to + rows]
                parts = [(start, to), (to + rows, end)]
            for top, bottom in parts:
                rect = self._changed(raw, top, bottom)
                if rect is not None:
                    x, y, w, h = rect
                    update.rects.append(rect)
                    self.shown[y:y + h, x:x + w] = raw[y:y + h, x:x + w]
        return update

    def _changed(self, raw, top: int, bottom: int) -> tuple[int, int, int, int] | None:
        """The rectangle of the pixels of rows [top, bottom) that differ from the picture
        given out, or None."""
        if bottom <= top:
            return None
        rows = np.flatnonzero((raw[top:bottom] != self.shown[top:bottom]).any(axis=1))
        if rows.size == 0:
            return None
        y0, y1 = top + int(rows[0]), top + int(rows[-1]) + 1
        columns = np.flatnonzero((raw[y0:y1] != self.shown[y0:y1]).any(axis=0))
        x0, x1 = int(columns[0]), int(columns[-1]) + 1
        return x0, y0, x1 - x0, y1 - y0

    def _scroll(self, raw, start: int, end: int) -> tuple[int, int, int] | None:
        """Whether a part of the band [start, end) is what was shown some rows below or
        above it (a console scrolling): (to row, from row, rows) of the longest run of rows
        that moved, or None. The guest may be caught halfway through its scroll (the top
        moved, the bottom not yet): the run is what moved so far. Rows in it that differ
        after all are found by the comparison that follows the copy."""
        height = end - start
        if height < 2 * MIN_SCROLL_ROWS:
            return None
        # A console scrolls by the same distance again and again: that one is tried first,
        # before looking for where a row came from.
        # (Most of the band, so that blank rows, which match at any distance, do not pass.)
        if self._last_shift and (moved := self._moved(raw, start, end, self._last_shift)) \
                and 2 * moved[2] >= height:
            return moved
        # Where rows came from: each of PROBES rows across the band votes for the distances
        # at which the picture shown had a row like it (alike by a sum of its words; the
        # copy is then checked pixel for pixel). Text repeats rows (a digit's stroke, the
        # gap between lines), so one row alone would name many distances; the true one
        # gets the most votes. Blank rows, which match anywhere, and rows that stayed do
        # not vote.
        shown = _row_sums(self.shown[start:end])
        probes = np.linspace(0, height - 1, PROBES).astype(np.int64)
        now = _row_sums(raw[start:end][probes])
        votes: dict[int, int] = {}
        for probe, value in zip(probes.tolist(), now.tolist()):
            if value == 0 or value == shown[probe]:
                continue
            for source in np.flatnonzero(shown == value)[:64].tolist():
                votes[source - probe] = votes.get(source - probe, 0) + 1
        for shift in sorted(votes, key=votes.get, reverse=True)[:3]:
            moved = self._moved(raw, start, end, shift)
            if moved:
                self._last_shift = shift
                return moved
        return None

    def _moved(self, raw, start: int, end: int, shift: int) -> tuple[int, int, int] | None:
        """The longest run of rows of [start, end) that are the picture shown `shift` rows
        below (> 0: the content moved up) or above, if it is long enough to copy."""
        to, source = (start, start + shift) if shift > 0 else (start - shift, start)
        rows = end - start - abs(shift)
        if rows < MIN_SCROLL_ROWS:
            return None
        same = (raw[to:to + rows] == self.shown[source:source + rows]).all(axis=1)
        run = _longest_run(same)
        if run is None or run[1] - run[0] < MIN_SCROLL_ROWS:
            return None
        first, last = run
        return to + first, source + first, last - first

    def close(self) -> None:
        self.timer.cancel()
        self.changes.close()


def _row_sums(rows: np.ndarray) -> np.ndarray:
    """Each row's words summed (wrapping): alike rows have alike sums."""
    words = rows.view(np.uint64) if rows.shape[1] % 2 == 0 else rows
    return words.sum(axis=1, dtype=np.uint64)


def _longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    """[first, last) of the longest run of True in `flags`, or None if there is none."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flags, [False])).astype(np.int8)))
    if edges.size == 0:
        return None
    starts, ends = edges[::2], edges[1::2]
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best])
