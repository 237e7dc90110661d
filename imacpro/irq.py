"""Interrupt lines between devices and interrupt controllers.

A device holds an `IrqLine` and drives it: `set(True/False)` for a level-triggered source,
`pulse()` for an edge. The line forwards level changes to its sinks, callables taking the new
level, e.g. the 8259 PIC input and the IOAPIC pin that share an ISA IRQ. Lines are plain objects
so a device can be tested with a line wired to nothing.
"""

from __future__ import annotations

from typing import Callable

Sink = Callable[[bool], None]


class IrqLine:
    __slots__ = ("name", "level", "_sinks")

    def __init__(self, name: str = "", *sinks: Sink):
        self.name = name
        self.level = False
        self._sinks = list(sinks)

    def connect(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def set(self, level: bool) -> None:
        level = bool(level)
        if level == self.level:
            return
        self.level = level
        for sink in self._sinks:
            sink(level)

    def pulse(self) -> None:
        """A rising edge, then low again: what an edge-triggered ISA device produces."""
        self.set(False)
        self.set(True)
        self.set(False)
