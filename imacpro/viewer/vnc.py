"""The machine's VNC server: RFB sessions (rfb.py) on a TCP port of 127.0.0.1, served by the
machine's run loop (host_events.py) like the control socket.

    screen    the boot framebuffer as it is, at its own size (3840 × 2160, or 5120 × 2880
              whose 10-bit channels are sent as their top 8 bits); black while the machine
              has no picture
    changes   every 1/30 s of machine time while a client is connected, the engines' dirty
              log (devices/display/changes.py) gives the rows drawn on; each session is sent
              those bands when it has asked for an update, and nothing when nothing was
              drawn; with no client connected nothing is looked at
    keyboard  keysyms (keysyms.py) pressed and released on the Magic Keyboard; a shifted
              symbol sent without Shift (as scripted clients do) gets Shift held for it
    pointer   the Magic Mouse 2 moved by the difference between the client's pointer
              positions (a real mouse is relative: the guest's pointer follows with its own
              acceleration, as it would under a person's hand), buttons 1 and 3 as left and
              right, 4 and 5 (the wheel) as scrolls

Input reaches the devices only once the guest has set them up; before that it is dropped, as
a keyboard's keys are when nothing reads it. A client that breaks the protocol, or a password
that is wrong, closes that connection; the machine runs on.
"""

from __future__ import annotations

import logging
import socket

import numpy as np

from imacpro.devices.display.changes import ScreenChanges
from imacpro.host_events import GONE, WAITING, receive, send_some
from imacpro.devices.usb import keymap
from imacpro.viewer import keysyms
from imacpro.viewer.rfb import RfbError, RfbSession

log = logging.getLogger(__name__)

TICK_NS = 33_333_333                 # how often changes are looked for
RECV_SIZE = 65536
MAX_BACKLOG = 64 << 20               # output a slow client may fall behind by, then it goes


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

    def region(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        mode = self.mode
        gpu = self.machine.devices.get("gpu")
        if gpu is None:
            return np.zeros((h, w), dtype=np.uint32)
        pixels = np.frombuffer(gpu.aperture.view, dtype="<u4", count=mode.width * mode.height)
        part = pixels.reshape(mode.height, mode.width)[y:y + h, x:x + w]
        if mode.bits == 8:
            return part & 0xFFFFFF
        return ((part >> 22 & 0xFF) << 16) | ((part >> 12 & 0xFF) << 8) | (part >> 2 & 0xFF)


class Connection:
    def __init__(self, server: VncServer, sock: socket.socket):
        self.server, self.sock = server, sock
        self.last_pointer: tuple[int, int] | None = None
        self.buttons = 0
        self.shifts: set[int] = set()         # the client's Shift keys held
        self.held_for: set[int] = set()       # keysyms we hold Shift for
        self.session = RfbSession(server.screen, self._key, self._pointer, server.name,
                                  server.password)
        server.events.add_reader(sock, self._readable)
        self._flush()

    def _readable(self) -> None:
        data = receive(self.sock, RECV_SIZE)
        if data is None:
            return
        if not data:
            self.close()
            return
        try:
            self.session.receive(data)
        except RfbError as exc:
            log.info("VNC client dropped: %s", exc)
            self._flush()
            self.close()
            return
        self._flush()

    def tick(self, bands) -> None:
        if bands:
            width = self.server.screen.width
            self.session.changed([(0, start, width, end - start) for start, end in bands])
        else:
            self.session.flush()
        self._flush()

    def _flush(self) -> None:
        if self.sock is None:
            return
        outcome = send_some(self.sock, self.session.outgoing)
        if outcome == GONE or outcome == WAITING and len(self.session.outgoing) > MAX_BACKLOG:
            self.close()
        else:
            self.server.events.want_write(self.sock, self._flush if outcome == WAITING else None)

    def close(self) -> None:
        if self.sock is None:
            return
        self.server.events.remove(self.sock)
        self.sock.close()
        self.sock = None
        self.server.connections.discard(self)

    # --- input ----------------------------------------------------------------------------

    def _key(self, keysym: int, down: bool) -> None:
        usage = keysyms.usage(keysym)
        usb = self.server.machine.usb
        if usage is None or usb is None or not usb.keyboard.configuration:
            return
        keyboard = usb.keyboard
        if keysym in keysyms.SHIFTS:
            self.shifts = self.shifts | {keysym} if down else self.shifts - {keysym}
        if keysyms.needs_shift(keysym) and not self.shifts:
            # A shifted symbol from a client that pressed no Shift: hold it for the key.
            if down:
                keyboard.key_event(keymap.LEFT_SHIFT, True)
                self.held_for.add(keysym)
            keyboard.key_event(usage, down)
            if not down and keysym in self.held_for:
                self.held_for.discard(keysym)
                keyboard.key_event(keymap.LEFT_SHIFT, False)
            return
        keyboard.key_event(usage, down)

    def _pointer(self, x: int, y: int, buttons: int) -> None:
        usb = self.server.machine.usb
        mouse = usb.mouse if usb is not None else None
        if mouse is None or not mouse.configuration:
            self.last_pointer, self.buttons = (x, y), buttons
            return
        if self.last_pointer is not None and (x, y) != self.last_pointer:
            mouse.move(x - self.last_pointer[0], y - self.last_pointer[1])
        self.last_pointer = (x, y)
        for bit, name in ((1, "left"), (4, "right")):
            if (buttons ^ self.buttons) & bit:
                mouse.button(name, bool(buttons & bit))
        for bit, clicks in ((8, 1), (16, -1)):
            if buttons & bit and not self.buttons & bit:
                mouse.scroll(clicks)
        self.buttons = buttons


class VncServer:
    def __init__(self, machine, events, port: int, name: str, password: str | None = None):
        self.machine, self.events = machine, events
        self.name, self.password = name, password
        self.screen = MachineScreen(machine)
        self.changes = ScreenChanges(machine)
        self.connections: set[Connection] = set()
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        events.add_reader(self.sock, self._accept)
        self.timer = machine.clock.timer(self._tick)

    def _accept(self) -> None:
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, OSError):
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.connections:
            # Drawn on while nobody watched: the client asks for the whole screen anyway.
            self.changes.bands(self.screen.mode)
            self.timer.arm(self.machine.clock.now_ns() + TICK_NS)
        self.connections.add(Connection(self, sock))

    def _tick(self) -> None:
        """Look for changes while anyone watches; with no client the log is left alone
        (its pages stay marked, so the guest's stores never take the slow path)."""
        if not self.connections:
            return
        bands = self.changes.bands(self.screen.mode)
        for connection in list(self.connections):
            connection.tick(bands)
        self.timer.arm(self.machine.clock.now_ns() + TICK_NS)

    def close(self) -> None:
        self.timer.cancel()
        for connection in list(self.connections):
            connection.close()
        self.events.remove(self.sock)
        self.sock.close()
        self.changes.close()
