"""The machine's VNC server: RFB sessions (peer.py) on a TCP port of 127.0.0.1, served by the
machine's run loop (host_events.py) like the control socket, fed by the machine's screen feed
(screen.py).

Each connection's output waits in the connection when the client reads slowly, never in the
machine; a client that falls more than MAX_BACKLOG behind is dropped. RFB asks each update of
the client first, so a client that reads keeps its backlog small by itself.
"""

from __future__ import annotations

import socket

from imacpro.host_events import GONE, WAITING, accept, listen_local, receive, send_some
from imacpro.viewer.peer import RfbPeer
from imacpro.viewer.screen import ScreenFeed

RECV_SIZE = 65536
MAX_BACKLOG = 64 << 20               # output a slow client may fall behind by, then it goes


class Connection:
    def __init__(self, server: VncServer, sock: socket.socket):
        self.server, self.sock = server, sock
        self.outbox = bytearray()
        server.events.add_reader(sock, self._readable)
        self.peer = RfbPeer(server.feed, server.name, server.password, self._transmit,
                            self.close)
        self.peer.start()

    def _readable(self) -> None:
        data = receive(self.sock, RECV_SIZE)
        if data is None:
            return
        if not data:
            self.close()
            return
        self.peer.received(data)

    def _transmit(self, data: bytes) -> None:
        self.outbox += data
        self._flush()

    def _flush(self) -> None:
        if self.sock is None:
            return
        outcome = send_some(self.sock, self.outbox)
        if outcome == GONE or outcome == WAITING and len(self.outbox) > MAX_BACKLOG:
            self.close()
        else:
            self.server.events.want_write(self.sock, self._flush if outcome == WAITING else None)

    def close(self) -> None:
        if self.sock is None:
            return
        self.server.events.remove(self.sock)
        self.sock.close()
        self.sock = None
        self.peer.closed()
        self.server.connections.discard(self)


class VncServer:
    def __init__(self, feed: ScreenFeed, events, port: int, name: str,
                 password: str | None = None):
        self.feed, self.events = feed, events
        self.name, self.password = name, password
        self.connections: set[Connection] = set()
        self.sock = listen_local(port)
        self.port = self.sock.getsockname()[1]
        events.add_reader(self.sock, self._accept)

    def _accept(self) -> None:
        sock = accept(self.sock)
        if sock is not None:
            self.connections.add(Connection(self, sock))

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close()
        self.events.remove(self.sock)
        self.sock.close()
