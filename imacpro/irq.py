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


class SharedLine:
    """A shareable level-triggered line, as PCI's INTx# wires are (open drain, wired-OR):
    asserted while any of its inputs is. `input(name)` gives a device its own line; `output`
    gets the combined level on each change."""

    def __init__(self, output: Sink):
        self._output = output
        self._inputs: set[str] = set()
        self._asserting: set[str] = set()

    def input(self, name: str) -> IrqLine:
        if name in self._inputs:
            raise ValueError(f"{name}: already an input of this line")
        self._inputs.add(name)
        return IrqLine(name, lambda level: self._set(name, level))

    def _set(self, name: str, level: bool) -> None:
        was = bool(self._asserting)
        if level:
            self._asserting.add(name)
        else:
            self._asserting.discard(name)
        if bool(self._asserting) != was:
            self._output(not was)
