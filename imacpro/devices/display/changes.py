"""What changed on the boot framebuffer since the last look, for a viewer's updates.

Every vCPU's engine joins one dirty log of the VRAM aperture (cpu/engine.py's DirtyLog): the
first store to a 4 KiB page after a look takes the engine's slow path once and marks it, and
further stores run at full speed, so a screen nobody draws on costs nothing and a viewer sends
only what was drawn. A look turns the marked pages into bands of whole framebuffer rows (a
page is part of one row, or the end of one and the start of the next: 4096 bytes against a
stride of 15360 or 20480); a viewer compares a band with what it sent last to narrow it to
the columns that differ.

Only the CPUs' stores are logged. What the host writes into the aperture itself (the firmware
clearing it, a resumed machine's saved picture) is not: a viewer sends the whole screen when
it starts, after a resume, and when the mode changes. Look between time slices (the run loop's
thread), as the log asks.
"""

from __future__ import annotations

import numpy as np

from imacpro.cpu.engine import DirtyLog
from imacpro.devices.display.framebuffer import Mode

PAGE = 4096


class ScreenChanges:
    def __init__(self, machine):
        aperture = machine.devices["gpu"].aperture
        self.log = DirtyLog(aperture.host_address, aperture.size)
        for vcpu in machine.vcpus:
            vcpu.engine.join_dirty_log(self.log)

    def bands(self, mode: Mode) -> list[tuple[int, int]]:
        """The rows [start, end) written since the last call, merged into bands, top down."""
        bits = np.unpackbits(np.frombuffer(self.log.collect(), dtype=np.uint8),
                             bitorder="little")
        pages = np.flatnonzero(bits[:-(-mode.size // PAGE)])
        if pages.size == 0:
            return []
        first = pages * PAGE // mode.stride
        last = np.minimum((pages + 1) * PAGE - 1, mode.size - 1) // mode.stride
        rows = np.zeros(mode.height + 1, dtype=np.int32)
        np.add.at(rows, first, 1)
        np.add.at(rows, last + 1, -1)
        covered = np.cumsum(rows[:-1]) > 0
        edges = np.flatnonzero(np.diff(np.concatenate(([False], covered, [False]))
                                       .astype(np.int8)))
        return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2])]

    def close(self) -> None:
        self.log.close()
