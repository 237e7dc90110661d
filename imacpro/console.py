"""The serial console: COM1 on the user's terminal, or a scripted session for `--exec`.

Interactive: the terminal goes to raw mode; keys go to COM1's receiver, its output to the
terminal. Ctrl-A X powers the machine off, Ctrl-A Ctrl-A sends a Ctrl-A (as QEMU's -serial
mon:stdio does). Input is read on a thread into a queue that the run loop drains between
slices, because devices belong to the run loop's thread.

Attached (`imacpro console NAME`): the same, through a running machine's control socket
(`attach_terminal`); Ctrl-A D detaches and leaves the machine running.

Scripted (`--exec CMD`, `imacpro exec`): once the guest prints its ready marker, type the command into its
shell between two markers and collect what it prints until the exit marker, whose value is the
command's exit status. The markers are typed split (IMAC""PRO-…) so the shell's echo of the
typed line never matches them; only the guest's own output does.
"""

from __future__ import annotations

import os
import queue
import re
import select
import sys
import threading
from typing import Callable

READY_MARKER = b"IMACPRO-READY"
BEGIN_MARKER = b"IMACPRO-BEGIN"
EXIT_MARKER = re.compile(rb"IMACPRO-EXIT=(\d+)\r?\n")
MARKER_OVERLAP = 32     # longer than any marker with its line ending and status
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

    def __init__(self, fd: int, on_input=lambda: None):
        """`on_input()`: called from the reading thread when keys arrive (wakes the run loop)."""
        self.fd = fd
        self.on_input = on_input
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
            self.on_input()

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


def attach_terminal(client, stop) -> str:
    """`imacpro console`: this terminal on a running machine's COM1 through its control
    socket (already switched to the console). Ctrl-A D detaches, Ctrl-A X calls `stop()`
    (power off), Ctrl-A Ctrl-A sends a Ctrl-A. Returns how it ended, for one line."""
    sock = client.sock
    stdin, stdout = sys.stdin.fileno(), sys.stdout.buffer
    first = client.take_buffered()
    escape = False
    with RawTerminal():
        if first:
            stdout.write(first)
            stdout.flush()
        while True:
            readable, _, _ = select.select([stdin, sock], [], [])
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    return "the machine powered off"
                stdout.write(data)
                stdout.flush()
            if stdin in readable:
                data = os.read(stdin, 1024)
                if not data:
                    return "detached (end of input)"
                out = bytearray()
                for byte in data:
                    if escape:
                        escape = False
                        if byte in (ord("d"), ord("D")):
                            sock.sendall(bytes(out))
                            return "detached; the machine runs on"
                        if byte in (ord("x"), ord("X")):
                            sock.sendall(bytes(out))
                            stop()
                            return "powered off"
                        if byte == CTRL_A:
                            out.append(CTRL_A)
                        continue
                    if byte == CTRL_A:
                        escape = True
                        continue
                    out.append(byte)
                if out:
                    sock.sendall(bytes(out))


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
    """Types commands into the guest's shell, one after another, and collects their output and
    exit statuses.

    A command during which the guest reboots (`reboot`) completes, with status 0, once the
    rebooted guest is ready again; the next command then runs in the new boot. A command
    typed that the guest's shell never began before the reset is typed again in the new
    boot. A command during which the guest powers off (`poweroff`) completes with status 0. `status` is the
    last command's status once every command has completed.
    """

    ready_marker = READY_MARKER       # what the guest prints when its shell waits

    def __init__(self, commands: str | list[str]):
        self.commands = [commands] if isinstance(commands, str) else list(commands)
        self.error: str | None = None   # why the commands could not run (a refused login)
        self.output = bytearray()       # everything the guest printed, across reboots
        self.results: list[bytes] = []
        self.statuses: list[int] = []
        self.on_result: Callable[[bytes], None] | None = None   # each command's, as it ends
        self.sent = False               # the current command is typed
        self._ready = False             # the shell waits for a command
        self._start = 0                 # where the current command's output begins
        self._rebooting: bytes | None = None   # what the command printed before its reboot
        self._begin_at = -1             # where the running command's BEGIN marker is
        self.powering_off_since: float | None = None

    @property
    def status(self) -> int | None:
        return self.statuses[-1] if len(self.statuses) == len(self.commands) else None

    @staticmethod
    def line(command: str) -> bytes:
        # A subshell, so that `exit N` ends the command, not the guest's shell.
        return f'echo IMAC""PRO-BEGIN; (\n{command}\n); echo IMAC""PRO-EXIT=$?\n'.encode()

    def feed_output(self, data: bytes) -> None:
        # Markers are looked for only in the new bytes (and a marker's length before them):
        # a command may print megabytes, a few bytes at a time.
        scan = max(self._start, len(self.output) - MARKER_OVERLAP)
        self.output.extend(data)
        if not self._ready and self.output.find(self.ready_marker, scan) >= 0:
            self._ready = True
            if self._rebooting is not None:
                self._complete(self._rebooting, 0)
                scan = self._start
        if self.sent and self.status is None:
            if self._begin_at < 0:
                self._begin_at = self._begin(scan)
                scan = max(scan, self._begin_at)
            if self._begin_at >= 0:
                match = EXIT_MARKER.search(self.output, scan)
                if match:
                    start = self.output.index(b"\n", self._begin_at) + 1
                    self._complete(bytes(self.output[start:match.start()]), int(match.group(1)))

    def _begin(self, scan: int) -> int:
        for ending in (b"\r\n", b"\n"):
            at = self.output.find(BEGIN_MARKER + ending, scan)
            if at >= 0:
                return at
        return -1

    def _complete(self, body: bytes, status: int) -> None:
        self.results.append(body.replace(b"\r\n", b"\n"))
        self.statuses.append(status)
        self.sent, self._rebooting, self._begin_at = False, None, -1
        self._start = len(self.output)
        if self.on_result is not None:
            self.on_result(self.results[-1])

    def mark_ready(self) -> None:
        """The guest's shell already waits for a command (its ready marker came before this
        session began: a machine already running)."""
        self._ready = True

    def rebooted(self) -> None:
        """The machine reset: wait for the new boot's ready marker before typing again. A
        command that had begun completes there (it ran into the reboot); one typed into a
        shell that never began it (the shell was going down with the system, e.g. after
        `sudo reboot` returned at once) is typed again in the new boot."""
        if self.sent:
            if self._begin_at >= 0:
                self._rebooting = self._so_far()
            self.sent = self._begin_at >= 0
            self._begin_at = -1
        self._ready = False
        self._start = len(self.output)

    def powered_off(self) -> None:
        """The machine powered off: a command running completes; none after it can run."""
        if self.sent and self.status is None:
            self._complete(self._so_far(), 0)

    def poll(self, serial_input: SerialInput) -> None:
        if self._ready and not self.sent and self.status is None:
            serial_input.type(self.line(self.commands[len(self.statuses)]))
            self.sent = True

    def result(self) -> bytes:
        """What the commands printed, without the markers and the shell's echo (a command cut
        short by a timeout contributes what it printed so far)."""
        done = b"".join(self.results)
        if self.sent and self.status is None:
            done += self._so_far().replace(b"\r\n", b"\n")
        return done

    def _so_far(self) -> bytes:
        """The running command's output until now."""
        if self._begin_at < 0:
            return b""
        return bytes(self.output[self.output.index(b"\n", self._begin_at) + 1:])


LOGIN_PROMPT = b"login: "
PASSWORD_PROMPT = re.compile(rb"[Pp]assword: ?$")
SHELL_PROMPT = re.compile(rb"[$#] ?$")
LOGIN_REFUSED = b"Login incorrect"
SHELL_MARKER = b"IMACPRO-SHELL"
LOGOUT = b"exit\n"
# A shell set up for commands whose output is read, not looked at: no pager, no colours, and
# no echo of what is typed.
SHELL_SETUP = (b"export PAGER=cat SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 TERM=dumb; "
               b"stty -echo; echo IMAC\"\"PRO-SHELL\n")


class LoginExecSession(ExecSession):
    """An ExecSession on an installed system (docs/DEBIAN.md): it logs in at the serial
    console's getty with the installation's credentials, sets the shell up, runs the commands
    as ExecSession does, and logs out after the last. A reboot during a command brings the
    next boot's login prompt: it logs in again there. A refused login ends the session with
    `error` set and every command's status 255."""

    ready_marker = LOGIN_PROMPT

    def __init__(self, commands: str | list[str], user: str, password: str):
        super().__init__(commands)
        self.user, self.password = user, password
        self.stage = "prompt"   # prompt → user → password → setup → shell → out

    def feed_output(self, data: bytes) -> None:
        scan = max(0, len(self.output) - MARKER_OVERLAP)
        super().feed_output(data)
        tail = bytes(self.output[-MARKER_OVERLAP:]).rstrip(b"\r\n") if self.stage in (
            "user", "password") else b""
        if self.stage == "user" and PASSWORD_PROMPT.search(tail):
            self.stage = "password-due"
        elif self.stage == "password":
            if self.output.find(LOGIN_REFUSED, scan) >= 0:
                self._refused()
            elif SHELL_PROMPT.search(tail):
                self.stage = "setup-due"
        elif self.stage == "setup" and self.output.find(SHELL_MARKER, scan) >= 0:
            self.stage = "shell"

    def poll(self, serial_input: SerialInput) -> None:
        if self.status is not None:
            if self.stage == "shell":
                serial_input.type(LOGOUT)
                self.stage = "out"
            return
        if not self._ready:
            return
        typed = {"prompt": (self.user.encode() + b"\n", "user"),
                 "password-due": (self.password.encode() + b"\n", "password"),
                 "setup-due": (SHELL_SETUP, "setup")}.get(self.stage)
        if typed is not None:
            serial_input.type(typed[0])
            self.stage = typed[1]
        elif self.stage == "shell":
            super().poll(serial_input)

    def rebooted(self) -> None:
        super().rebooted()
        self.stage = "prompt"

    def _refused(self) -> None:
        self.error = (f"the guest refused the login of {self.user!r} on its serial console: "
                      "is the system on the SSD the one imacpro installed?")
        while self.status is None:
            self._complete(b"", 255)
        self.stage = "out"
