"""The machine's page in a browser: a small HTTP and WebSocket server on 127.0.0.1, served by
the machine's run loop (host_events.py) like the control socket and VNC.

Every path starts with the page's token, a random string made when the page is first served;
a request without it is refused (403), as is one whose Host is not this address (a page of
another site that points a name of its own at 127.0.0.1 cannot read ours). The URL the user
is given is http://127.0.0.1:PORT/TOKEN/, and everything under it:

    GET  TOKEN/                 the page (page/index.html, viewer.js, viewer.css) and its
         TOKEN/vendor/...       vendor files: noVNC's RFB client and xterm.js, which
                                tools/build-web fetches with npm at the versions
                                web/package-lock.json pins
    WS   TOKEN/rfb              RFB (peer.py) over binary WebSocket messages: noVNC's own
                                transport, so noVNC needs no bridge; the token was the
                                authentication, so the session offers no password
    WS   TOKEN/machine          the machine: text messages out are its status as JSON (name,
                                configuration, state) on connecting and every second; binary
                                messages out are COM1's output (its recent output first),
                                binary messages in are typed into COM1; a text message in
                                {"power": "press"} presses the power button (the guest's
                                clean shutdown), {"power": "off"} cuts the power
    GET  TOKEN/status           the status as JSON
    GET  TOKEN/screenshot.png   what `imacpro screenshot` writes (16 bits per channel, the
                                panel's 5120 × 2880, Display P3), made by that command in a
                                process of its own so that the machine spends only the copy
                                of its framebuffer

HTTP parsing and WebSocket framing are the `websockets` library's, in its sans-I/O form
(websockets.server.ServerProtocol), which bounds request lines, headers and message sizes;
what reaches the machine from a client is checked here before it is used. A client that
breaks either protocol, or falls more than MAX_BACKLOG behind, is disconnected; the machine
runs on.
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from imacpro.host_events import GONE, WAITING, accept, listen_local, receive, send_some
from imacpro.viewer.peer import RfbPeer
from imacpro.viewer.screen import ScreenFeed

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).parent / "page"
RECV_SIZE = 65536
MAX_MESSAGE = 1 << 20                # what a client may send in one WebSocket message
MAX_BACKLOG = 64 << 20               # output a slow client may fall behind by, then it goes
STATUS_EVERY_NS = 1_000_000_000
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),          # the token stays in this page
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; frame-ancestors 'none'"),
]
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
         ".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8",
         ".json": "application/json"}


class PageError(Exception):
    """The page cannot be served (its vendor files are not built, the port is taken)."""


def page_files() -> dict[str, Path]:
    """Every file the page may be given, by its path under the token: nothing else is served
    (no path from a request is ever joined to a directory)."""
    if not (PAGE_DIR / "vendor" / "novnc" / "core" / "rfb.js").exists():
        raise PageError("the page's vendor files are not built: run tools/build-web "
                        "(make run and make test do)")
    files = {path.relative_to(PAGE_DIR).as_posix(): path
             for path in PAGE_DIR.rglob("*") if path.is_file()}
    files[""] = PAGE_DIR / "index.html"
    return files


class PageServer:
    """`machine` is the running machine's host side (boot.py's RunningMachine): status(),
    stop(force), attach_console(c) / detach_console(c) with c.send(bytes), and
    console_input(bytes). `describe()` gives the machine's name and configuration."""

    def __init__(self, feed: ScreenFeed, events, machine, port: int, name: str,
                 describe: Callable[[], dict]):
        self.files = page_files()
        self.feed, self.events, self.machine = feed, events, machine
        self.name, self.describe = name, describe
        self.token = secrets.token_urlsafe(24)
        self.connections: set[HttpConnection] = set()
        self.channels: set[MachineChannel] = set()
        self.screenshot = Screenshotter(self)
        self.sock = listen_local(port)
        self.port = self.sock.getsockname()[1]
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        events.add_reader(self.sock, self._accept)
        self.timer = feed.machine.clock.timer(self._tell_status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.token}/"

    def status(self) -> dict:
        status = self.machine.status()
        return {"name": self.name, **self.describe(),
                "state": "running" if status.get("guest_ready") else "starting",
                "uptime_s": status.get("uptime_s"), "boots": status.get("boots")}

    def _accept(self) -> None:
        sock = accept(self.sock)
        if sock is not None:
            self.connections.add(HttpConnection(self, sock))

    def _tell_status(self) -> None:
        if not self.channels:
            return
        message = json.dumps({"status": self.status()})
        for channel in list(self.channels):
            channel.connection.send_text(message)
        self.timer.arm(self.feed.machine.clock.now_ns() + STATUS_EVERY_NS)

    def channel_opened(self, channel: MachineChannel) -> None:
        if not self.channels:
            self.timer.arm(self.feed.machine.clock.now_ns() + STATUS_EVERY_NS)
        self.channels.add(channel)

    def close(self) -> None:
        self.timer.cancel()
        self.screenshot.close()
        for connection in list(self.connections):
            connection.close()
        self.events.remove(self.sock)
        self.sock.close()


class HttpConnection:
    """One TCP connection: an HTTP request answered (then closed), or a WebSocket."""

    def __init__(self, server: PageServer, sock: socket.socket):
        self.server, self.sock = server, sock
        self.protocol = ServerProtocol(max_size=MAX_MESSAGE)
        self.outbox = bytearray()
        self.hang_up_when_sent = False
        self.channel = None                # after the upgrade: what the WebSocket carries
        self.fragments: list[bytes] = []
        self.fragment_kind: Opcode | None = None
        server.events.add_reader(sock, self._readable)

    # --- input ----------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            self._serve()
        except Exception:             # a bug of ours: this client goes, the machine runs on
            log.exception("page connection dropped after an internal error")
            self.close()

    def _serve(self) -> None:
        data = receive(self.sock, RECV_SIZE)
        if data is None:
            return
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if self.sock is None:
                return
            if isinstance(event, Request):
                self._request(event)
            else:
                self._frame(event)
        self._flush()
        if not data or self.protocol.state is State.CLOSED and not self.outbox:
            self.close()

    def _request(self, request: Request) -> None:
        parts = request.path.split("?", 1)[0].split("/", 2)
        token = parts[1] if len(parts) > 1 else ""
        rest = parts[2] if len(parts) > 2 else None
        host = request.headers.get("Host", "")
        if host not in self.server.hosts or rest is None or \
                not hmac.compare_digest(token.encode(), self.server.token.encode()):
            self.respond(403, "text/plain; charset=utf-8", b"Forbidden\n")
            return
        if rest in ("rfb", "machine"):
            response = self.protocol.accept(request)
            self.protocol.send_response(response)
            if response.status_code == 101:
                self.channel = RfbChannel(self) if rest == "rfb" else MachineChannel(self)
            return
        if rest == "status":
            self.respond(200, TYPES[".json"], json.dumps(self.server.status()).encode())
        elif rest == "screenshot.png":
            self.server.screenshot.request(self)
        elif rest in self.server.files:
            path = self.server.files[rest]
            kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or \
                "application/octet-stream"
            self.respond(200, kind, path.read_bytes())
        else:
            self.respond(404, "text/plain; charset=utf-8", b"Not found\n")

    def _frame(self, frame) -> None:
        if self.channel is None or frame.opcode not in (Opcode.TEXT, Opcode.BINARY,
                                                         Opcode.CONT):
            return                           # pings, pongs and close: the protocol's
        if frame.opcode != Opcode.CONT:
            self.fragment_kind, self.fragments = frame.opcode, []
        self.fragments.append(bytes(frame.data))
        if frame.fin and self.fragment_kind is not None:
            kind, data = self.fragment_kind, b"".join(self.fragments)
            self.fragment_kind, self.fragments = None, []
            self.channel.message(kind == Opcode.TEXT, data)

    # --- output ---------------------------------------------------------------------------

    def respond(self, status: int, kind: str, body: bytes) -> None:
        """An HTTP response, then the connection ends (a reply waited for, such as the
        screenshot, may find its client gone)."""
        if self.sock is None:
            return
        phrase = {200: "OK", 403: "Forbidden", 404: "Not Found",
                  500: "Internal Server Error"}.get(status, "")
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))),
                           ("Connection", "close"), *SECURITY_HEADERS])
        self.protocol.send_response(Response(status, phrase, headers, body))
        self._flush()

    def send_binary(self, data: bytes) -> None:
        if self.sock is not None and self.protocol.state is State.OPEN:
            self.protocol.send_binary(data)
            self._flush()

    def send_text(self, text: str) -> None:
        if self.sock is not None and self.protocol.state is State.OPEN:
            self.protocol.send_text(text.encode())
            self._flush()

    def _flush(self) -> None:
        if self.sock is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                self.outbox += data
            else:
                self.hang_up_when_sent = True         # the protocol's end of the stream
        outcome = send_some(self.sock, self.outbox)
        if outcome == GONE or outcome == WAITING and len(self.outbox) > MAX_BACKLOG:
            self.close()
        elif outcome == WAITING:
            self.server.events.want_write(self.sock, self._flush)
        else:
            self.server.events.want_write(self.sock, None)
            if self.hang_up_when_sent:
                self.close()

    def close(self) -> None:
        if self.sock is None:
            return
        self.server.events.remove(self.sock)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.sock = None
        self.server.connections.discard(self)
        if self.channel is not None:
            self.channel.closed()


class RfbChannel:
    """TOKEN/rfb: the screen, keyboard and mouse, as noVNC speaks RFB over a WebSocket."""

    def __init__(self, connection: HttpConnection):
        server = connection.server
        self.peer = RfbPeer(server.feed, server.name, None, connection.send_binary,
                            connection.close)
        self.peer.start()

    def message(self, text: bool, data: bytes) -> None:
        self.peer.received(data)

    def closed(self) -> None:
        self.peer.closed()


class MachineChannel:
    """TOKEN/machine: the status, COM1 both ways, and the power button."""

    def __init__(self, connection: HttpConnection):
        self.connection = connection
        server = self.server = connection.server
        connection.send_text(json.dumps({"status": server.status()}))
        server.channel_opened(self)
        server.machine.attach_console(self)

    def send(self, data: bytes) -> None:
        """COM1's output (the running machine's consoles are sent to this way)."""
        self.connection.send_binary(data)

    def message(self, text: bool, data: bytes) -> None:
        if not text:
            self.server.machine.console_input(data)
            return
        try:
            request = json.loads(data)
        except ValueError:
            request = None
        power = request.get("power") if isinstance(request, dict) else None
        if power in ("press", "off"):
            result = self.server.machine.stop(force=power == "off")
            self.connection.send_text(json.dumps({"power": power, **result}))
        else:
            self.connection.send_text(json.dumps({"error": "not a message the page sends"}))

    def closed(self) -> None:
        self.server.channels.discard(self)
        self.server.machine.detach_console(self)


class Screenshotter:
    """TOKEN/screenshot.png: `imacpro screenshot NAME` run in a process of its own (nice 10,
    as that command sets itself), its PNG sent to every request that waited for it."""

    def __init__(self, server: PageServer):
        self.server = server
        self.waiting: list[HttpConnection] = []
        self.process: subprocess.Popen | None = None
        self.directory: str | None = None

    def request(self, connection: HttpConnection) -> None:
        self.waiting.append(connection)
        if self.process is not None:
            return                          # one in the making: this request shares it
        self.directory = tempfile.mkdtemp(prefix="imacpro-page-")
        output = os.path.join(self.directory, "screen.png")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imacpro", "screenshot", self.server.name, "-o", output],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.set_blocking(self.process.stdout.fileno(), False)
        self.server.events.add_reader(self.process.stdout, self._output)

    def _output(self) -> None:
        try:
            if os.read(self.process.stdout.fileno(), 65536):
                return
        except BlockingIOError:
            return
        self.server.events.remove(self.process.stdout)
        self.process.stdout.close()
        status = self.process.wait()
        path = Path(self.directory) / "screen.png"
        if status == 0 and path.exists():
            reply = (200, "image/png", path.read_bytes())
        else:
            reply = (500, "text/plain; charset=utf-8", b"the screenshot failed\n")
        self._finish()
        for connection in self.waiting:
            connection.respond(*reply)
        self.waiting = []

    def _finish(self) -> None:
        self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def close(self) -> None:
        if self.process is not None:
            self.server.events.remove(self.process.stdout)
            self.process.kill()
            self.process.wait()
            self.process.stdout.close()
        self._finish()
