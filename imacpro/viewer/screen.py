"""The machine's screen as its viewers see it: the boot framebuffer read where it is, and one
feed of what changed on it, shared by every RFB client of the machine (VNC and the page).

    MachineScreen  the framebuffer at its own size (3840 × 2160, or 5120 × 2880 whose 10-bit
                   channels are given as their top 8 bits) as XRGB8888; black while the
                   machine has no picture
    ScreenFeed     every 1/30 s of machine time while a client is watching: the engines'
                   dirty log (devices/display/changes.py) names the rows drawn on; the feed
                   compares them with the picture it last gave out, narrows each band to the
                   columns that differ, and finds a scroll (the picture moved up or down by
                   some rows) so that clients copy what they have instead of being sent it
                   again. Each client's `tick(update)` then gets the same Update. With no
                   client watching nothing is looked at or kept.

One feed, not one per client: the dirty log is read by looking (a look clears it), so two
readers would take each other's changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imacpro.devices.display.changes import ScreenChanges

TICK_NS = 33_333_333                 # how often changes are looked for
MIN_SCROLL_ROWS = 64                 # a moved band shorter than this is sent, not copied


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

    def region(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        raw = self.raw()
        if raw is None:
            return np.zeros((h, w), dtype=np.uint32)
        part = raw[y:y + h, x:x + w]
        if self.mode.bits == 8:
            return part & 0xFFFFFF
        return ((part >> 22 & 0xFF) << 16) | ((part >> 12 & 0xFF) << 8) | (part >> 2 & 0xFF)


@dataclass
class Update:
    """What changed since the last tick: `copies` (x, y, w, h, from_x, from_y) to be done
    first, in order, then `rects` (x, y, w, h) to be sent."""
    copies: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    rects: list[tuple[int, int, int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.copies or self.rects)


class ScreenFeed:
    def __init__(self, machine):
        self.machine = machine
        self.screen = MachineScreen(machine)
        self.changes = ScreenChanges(machine)
        self.clients: set = set()
        self.shown: np.ndarray | None = None      # the picture as the clients were last given it
        self.timer = machine.clock.timer(self._tick)

    def add(self, client) -> None:
        if not self.clients:
            # Drawn on while nobody watched: a new client asks for the whole screen anyway.
            self.changes.bands(self.screen.mode)
            self.shown = None
            self.timer.arm(self.machine.clock.now_ns() + TICK_NS)
        self.clients.add(client)

    def remove(self, client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self.shown = None                     # 59 MB at 5K, kept only while watched

    def _tick(self) -> None:
        """Look for changes while anyone watches; with no client the log is left alone
        (its pages stay marked, so the guest's stores never take the slow path)."""
        if not self.clients:
            return
        update = self.look()
        for client in list(self.clients):
            client.tick(update)
        self.timer.arm(self.machine.clock.now_ns() + TICK_NS)

    def look(self) -> Update:
        mode = self.screen.mode
        bands = self.changes.bands(mode)
        raw = self.screen.raw()
        if raw is None:
            return Update()
        if self.shown is None or self.shown.shape != raw.shape:
            # The first look, or a new mode: every band whole, and a picture to compare with.
            self.shown = raw.copy()
            return Update(rects=[(0, start, mode.width, end - start) for start, end in bands])
        update = Update()
        for start, end in bands:
            scroll = self._scroll(raw, start, end)
            if scroll is not None:
                to, source, rows = scroll
                update.copies.append((0, to, mode.width, rows, 0, source))
                self.shown[to:to + rows] = self.shown[source:source + rows]
            now, before = raw[start:end], self.shown[start:end]
            differ = now != before
            if not differ.any():
                continue
            rows = np.flatnonzero(differ.any(axis=1))
            columns = np.flatnonzero(differ.any(axis=0))
            x0, x1 = int(columns[0]), int(columns[-1]) + 1
            y0, y1 = start + int(rows[0]), start + int(rows[-1]) + 1
            update.rects.append((x0, y0, x1 - x0, y1 - y0))
            self.shown[y0:y1, x0:x1] = raw[y0:y1, x0:x1]
        return update

    def _scroll(self, raw, start: int, end: int) -> tuple[int, int, int] | None:
        """Whether the band [start, end) is, for the most part, what was shown some rows
        below or above it (a console scrolling): (to row, from row, rows) of the part that
        moved, or None. Rows of it that differ after all (a cursor, a new line) are found
        by the comparison that follows the copy."""
        height = end - start
        if height < 2 * MIN_SCROLL_ROWS:
            return None
        for probe in (start + height // 2, start + height // 4, start + 3 * height // 4):
            row = raw[probe]
            if not row.any() or np.array_equal(row, self.shown[probe]):
                continue                     # a blank row matches anywhere; this one stayed
            # Where the row came from: rows shown that equal it (whole rows: a scroll moves
            # every column).
            candidates = np.flatnonzero((self.shown[start:end] == row).all(axis=1)) + start
            for source_row in candidates[:8]:
                shift = int(source_row) - probe               # >0: the content moved up
                to, source = (start, start + shift) if shift > 0 else (start - shift, start)
                rows = height - abs(shift)
                if rows < MIN_SCROLL_ROWS:
                    continue
                same = (raw[to:to + rows] == self.shown[source:source + rows]).all(axis=1)
                if same.mean() >= 0.9:
                    return to, source, rows
            return None
        return None

    def close(self) -> None:
        self.timer.cancel()
        self.changes.close()
