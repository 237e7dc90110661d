"""The serial console: COM1 on the user's terminal, or a scripted session for `--exec`.

Interactive: the terminal goes to raw mode; keys go to COM1's receiver, its output to the
terminal. Ctrl-A X powers the machine off, Ctrl-A Ctrl-A sends a Ctrl-A (as QEMU's -serial
mon:stdio does). Input is read on a thread into a queue that the run loop drains between
slices, because devices belong to the run loop's thread.

Scripted (`--exec CMD`): once the guest prints its ready marker, type the command into its
shell between two markers and collect what it prints until the exit marker, whose value is the
command's exit status. The markers are typed split (IMAC""PRO-…) so the shell's echo of the
typed line never matches them; only the guest's own output does.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading

READY_MARKER = b"IMACPRO-READY"
BEGIN_MARKER = b"IMACPRO-BEGIN"
EXIT_MARKER = re.compile(rb"IMACPRO-EXIT=(\d+)")
CTRL_A = 0x01


class SerialInput:
    """Bytes waiting for COM1's receiver, handed over no faster than its FIFO takes them (a
    real terminal is paced by the line rate; an overrun would lose characters)."""

    def __init__(self):
        self.buffer = bytearray()

    def type(self, data: bytes) -> None:
        self.buffer.extend(data)

    def pump(self, uart) -> None:
        if self.buffer:
            room = uart.rx_free()
            if room:
                uart.feed(bytes(self.buffer[:room]))
                del self.buffer[:room]


class Keyboard:
    """Terminal input on a thread; `drain()` passes it on from the run loop's thread."""

    def __init__(self, fd: int):
        self.fd = fd
        self.pending: queue.Queue[bytes] = queue.Queue()
        self.quit = False
        self._escape = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.quit:
            try:
                data = os.read(self.fd, 256)
            except OSError:
                return
            if not data:
                return
            self.pending.put(data)

    def drain(self, serial_input: SerialInput) -> None:
        while True:
            try:
                data = self.pending.get_nowait()
            except queue.Empty:
                return
            out = bytearray()
            for byte in data:
                if self._escape:
                    self._escape = False
                    if byte in (ord("x"), ord("X")):
                        self.quit = True
                        break
                    if byte == CTRL_A:
                        out.append(CTRL_A)
                    continue
                if byte == CTRL_A:
                    self._escape = True
                    continue
                out.append(byte)
            if out:
                serial_input.type(bytes(out))


class RawTerminal:
    """stdin in raw mode for the duration of a `with` block (no-op when not a terminal)."""

    def __enter__(self):
        self.saved = None
        if sys.stdin.isatty():
            import termios
            import tty
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


class ExecSession:
    """Types one command into the guest's shell and collects its output and exit status."""

    def __init__(self, command: str):
        self.command = command
        self.output = bytearray()       # everything the guest printed
        self.sent = False
        self.status: int | None = None
        self.powering_off_since: float | None = None

    def line(self) -> bytes:
        # A subshell, so that `exit N` ends the command, not the guest's shell.
        return (f'echo IMAC""PRO-BEGIN; (\n{self.command}\n); echo IMAC""PRO-EXIT=$?\n'
                ).encode()

    def feed_output(self, data: bytes) -> None:
        self.output.extend(data)
        if self.status is None:
            match = EXIT_MARKER.search(self.output, self._begin())
            if match and self._begin() >= 0:
                self.status = int(match.group(1))

    def _begin(self) -> int:
        at = self.output.find(BEGIN_MARKER + b"\r\n")
        if at < 0:
            at = self.output.find(BEGIN_MARKER + b"\n")
        return -1 if at < 0 else at

    def poll(self, serial_input: SerialInput) -> None:
        if not self.sent and READY_MARKER in self.output:
            serial_input.type(self.line())
            self.sent = True

    def result(self) -> bytes:
        """What the command printed, without the markers and the shell's echo."""
        begin = self._begin()
        if begin < 0:
            return b""
        start = self.output.index(b"\n", begin) + 1
        match = EXIT_MARKER.search(self.output, start)
        end = match.start() if match else len(self.output)
        return bytes(self.output[start:end]).replace(b"\r\n", b"\n")
