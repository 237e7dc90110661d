"""One RFB client of the machine, whatever carries its bytes (a TCP connection for VNC, a
WebSocket for the page): its session (rfb.py) fed by the screen feed (screen.py), its input
going to the USB devices (input.py).

The carrier makes the peer, then calls `start()`. It gives `transmit(bytes)`, which sends (or queues) what the session wrote, and
`hang_up()`, which ends the connection; it calls `received(bytes)` with what came in and
`closed()` when it has gone. A client that breaks the protocol is hung up on; the machine
runs on.
"""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.viewer.input import MachineInput
from imacpro.viewer.rfb import RfbError, RfbSession
from imacpro.viewer.screen import ScreenFeed, Update

log = logging.getLogger(__name__)


class RfbPeer:
    def __init__(self, feed: ScreenFeed, name: str, password: str | None,
                 transmit: Callable[[bytes], None], hang_up: Callable[[], None]):
        self.feed = feed
        self.transmit, self.hang_up = transmit, hang_up
        self.input = MachineInput(feed.machine)
        self.session = RfbSession(feed, self.input.key, self.input.pointer, name, password)

    def start(self) -> None:
        """Watch the screen and greet the client (once the carrier can hang up)."""
        self.feed.add(self)
        self._send()

    def received(self, data: bytes) -> None:
        try:
            with self.feed.serving():
                self.session.receive(data)
        except RfbError as exc:
            log.info("RFB client dropped: %s", exc)
            self._send()
            self.hang_up()
            return
        except Exception:             # a bug of ours: this client goes, the machine runs on
            log.exception("RFB client dropped after an internal error")
            self.hang_up()
            return
        self._send()

    def tick(self, update: Update) -> None:
        if update:
            self.session.changed(update.rects, update.copies)
        else:
            self.session.flush()
        self._send()

    def _send(self) -> None:
        if self.session.outgoing:
            # Handed over, not copied: a whole 5K frame is 59 MB.
            data, self.session.outgoing = self.session.outgoing, bytearray()
            self.transmit(data)

    def closed(self) -> None:
        self.feed.remove(self)
