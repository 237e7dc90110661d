"""The control socket, served by the machine's process from its run loop (host_events.py).

Owner-only (mode 0600, in the owner's bundle). Each connection is a `Connection`: requests are
handled one at a time in the order they came (a request waits while an `exec` before it runs);
replies that do not fit the socket buffer wait in the connection, never in the machine. A
connection that sends something other than the protocol gets an error reply and is closed; a
client that goes away mid-command loses its reply and nothing else (an `exec` it started
still runs to its end in the guest, and the next one waits for it).

What the commands do is the handler's (boot.py's running machine):
    status() -> dict                       exec(command, reply)     stop(force) -> dict
    screenshot(path) -> dict               type_text(text) -> dict  key(combo) -> dict
    pointer(device, dx, dy, button, down, scroll) -> dict
    usb(action, path, read_only) -> dict    view(port) -> dict
    inject(kind, dimm, address) -> dict     sensors() -> dict
    suspend(reply)                         attach_console(connection)
    detach_console(connection)
    console_input(bytes)
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from pathlib import Path

from imacpro.control.protocol import MAX_LINE, ProtocolError, address, decode, encode
from imacpro.errors import UserError
from imacpro.host_events import GONE, WAITING, HostEvents, accept, receive, send_some

log = logging.getLogger(__name__)

RECV_SIZE = 65536
CONSOLE_BACKLOG = 4 << 20   # console output a slow client may fall behind by; older is dropped


class Connection:
    def __init__(self, server: ControlServer, sock: socket.socket):
        self.server = server
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.requests: deque[bytes] = deque()
        self.busy = False            # an exec of this connection is running
        self.console = False         # the connection is the guest's COM1 now
        self.closed = False
        self.closing = False         # close once the outbox is sent
        server.events.add_reader(sock, self._readable)

    # --- input ------------------------------------------------------------------------------

    def _readable(self) -> None:
        data = receive(self.sock, RECV_SIZE)
        if data is None:
            return
        if not data:
            self.close()
            return
        if self.console:
            self.server.handler.console_input(data)
            return
        self.inbox += data
        while b"\n" in self.inbox:
            line, _, rest = self.inbox.partition(b"\n")
            self.inbox = bytearray(rest)
            self.requests.append(bytes(line))
        if len(self.inbox) > MAX_LINE:
            self.inbox.clear()
            self.fail(f"a request is longer than {MAX_LINE} bytes")
            return
        self._next()

    def _next(self) -> None:
        while self.requests and not self.busy and not self.closed and not self.closing:
            self._handle(self.requests.popleft())

    def _handle(self, line: bytes) -> None:
        handler = self.server.handler
        try:
            request = decode(line)
            command = request.get("command")
            if command == "status":
                self.reply({"ok": True, **handler.status()})
            elif command == "exec":
                text = request.get("command_line")
                if not isinstance(text, str) or not text.strip():
                    raise ProtocolError("exec needs a non-empty \"command_line\" string")
                self.busy = True
                handler.exec(text, self._exec_done)
            elif command == "stop":
                force = request.get("force", False)
                if not isinstance(force, bool):
                    raise ProtocolError("\"force\" is true or false")
                self.reply({"ok": True, **handler.stop(force)})
            elif command == "suspend":
                self.busy = True
                handler.suspend(self._suspended)
            elif command == "screenshot":
                path = request.get("path")
                if not isinstance(path, str) or not os.path.isabs(path):
                    raise ProtocolError("screenshot needs an absolute \"path\" to write")
                self.reply({"ok": True, **handler.screenshot(path)})
            elif command == "type":
                text = request.get("text")
                if not isinstance(text, str) or not text:
                    raise ProtocolError("type needs a non-empty \"text\" string")
                self.reply({"ok": True, **handler.type_text(text)})
            elif command == "key":
                combo = request.get("combo")
                if not isinstance(combo, str) or not combo:
                    raise ProtocolError("key needs a \"combo\" string such as ctrl+alt+f2")
                self.reply({"ok": True, **handler.key(combo)})
            elif command == "pointer":
                self.reply({"ok": True, **handler.pointer(**_pointer_arguments(request))})
            elif command == "usb":
                action, path = request.get("action"), request.get("path")
                if action not in ("attach", "detach", "list"):
                    raise ProtocolError("usb's \"action\" is attach, detach or list")
                if action != "list" and (not isinstance(path, str) or not path):
                    raise ProtocolError(f"usb {action} needs a \"path\"")
                read_only = request.get("read_only", False)
                if not isinstance(read_only, bool):
                    raise ProtocolError("\"read_only\" is true or false")
                self.reply({"ok": True, **handler.usb(action, path, read_only)})
            elif command == "view":
                port = request.get("port", 0)
                if not isinstance(port, int) or isinstance(port, bool) or \
                        not 0 <= port <= 65535:
                    raise ProtocolError("view's \"port\" is a TCP port number (0: any)")
                self.reply({"ok": True, **handler.view(port)})
            elif command == "inject":
                kind, dimm, address = (request.get(k) for k in ("kind", "dimm", "address"))
                if not isinstance(kind, str) or not isinstance(dimm, str):
                    raise ProtocolError("inject needs \"kind\" and \"dimm\" strings")
                if address is not None and (not isinstance(address, int)
                                            or isinstance(address, bool)
                                            or not 0 <= address < 1 << 52):
                    raise ProtocolError("inject's \"address\" is a physical address")
                self.reply({"ok": True, **handler.inject(kind, dimm, address)})
            elif command == "sensors":
                self.reply({"ok": True, **handler.sensors()})
            elif command == "console":
                self.reply({"ok": True})
                self.console = True
                self.inbox.clear()
                handler.attach_console(self)
            else:
                raise ProtocolError(f"unknown command {command!r}")
        except ProtocolError as exc:
            self.fail(str(exc))
        except UserError as exc:      # the request could not be done: say why, run on
            self.reply({"ok": False, "error": str(exc)})
        except Exception as exc:      # a bug of ours: the client hears of it, the machine runs
            log.exception("control request failed")
            self.reply({"ok": False, "error": f"internal error: {exc}"})

    def _suspended(self, result: dict) -> None:
        self.busy = False
        if not self.closed:
            self.reply(result)
            self._next()

    def _exec_done(self, result: dict) -> None:
        self.busy = False
        if not self.closed:
            self.reply({"ok": True, **result})
            self._next()

    # --- output -----------------------------------------------------------------------------

    def reply(self, message: dict) -> None:
        self.send(encode(message))

    def fail(self, error: str) -> None:
        """A request that is not of the protocol: say why, then close the connection."""
        self.reply({"ok": False, "error": error})
        self.closing = True
        self.requests.clear()
        if not self.outbox:
            self.close()

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.console and len(self.outbox) + len(data) > CONSOLE_BACKLOG:
            del self.outbox[:len(self.outbox) + len(data) - CONSOLE_BACKLOG]
        self.outbox += data
        self._flush()

    def _flush(self) -> None:
        outcome = send_some(self.sock, self.outbox)
        if outcome == WAITING:
            self.server.events.want_write(self.sock, self._flush)
            return
        if outcome == GONE:
            self.close()
            return
        self.server.events.want_write(self.sock, None)
        if self.closing:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.console:
            self.server.handler.detach_console(self)
        self.server.events.remove(self.sock)
        self.server.connections.discard(self)
        self.sock.close()


def _pointer_arguments(request: dict) -> dict:
    """The pointer request's fields, checked: device "mouse" or "trackpad"; dx, dy, scroll
    integers of at most 32767 each way; button "left" or "right"; down true, false or absent
    (a click)."""
    device = request.get("device", "mouse")
    if device not in ("mouse", "trackpad"):
        raise ProtocolError("pointer's \"device\" is mouse or trackpad")
    out = {"device": device}
    for name in ("dx", "dy", "scroll"):
        value = request.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 32767:
            raise ProtocolError(f"pointer's \"{name}\" is an integer from -32767 to 32767")
        out[name] = value
    button, down = request.get("button"), request.get("down")
    if button not in (None, "left", "right"):
        raise ProtocolError("pointer's \"button\" is left or right")
    if down is not None and (not isinstance(down, bool) or button is None):
        raise ProtocolError("pointer's \"down\" is true or false, with a button")
    out["button"], out["down"] = button, down
    return out


class ControlServer:
    def __init__(self, path: Path, events: HostEvents, handler):
        self.path = path
        self.events = events
        self.handler = handler
        self.connections: set[Connection] = set()
        target, dir_fd = address(path)
        try:
            try:
                os.unlink(target)          # a socket left by a killed process
            except FileNotFoundError:
                pass
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            old_umask = os.umask(0o177)    # created owner-only, never briefly open to others
            try:
                self.sock.bind(target)
            finally:
                os.umask(old_umask)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        self.sock.listen(16)
        self.sock.setblocking(False)
        events.add_reader(self.sock, self._accept)

    def _accept(self) -> None:
        sock = accept(self.sock)
        if sock is not None:
            self.connections.add(Connection(self, sock))

    def close(self) -> None:
        for connection in list(self.connections):
            connection._flush()
            connection.close()
        self.events.remove(self.sock)
        self.sock.close()
        target, dir_fd = address(self.path)
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
