"""The cable between the machine's 10GbE port and its network backend.

The NIC (devices/net/aqc107.py) and the backend (net/passt.py) know nothing of each other;
this joins them in the run loop's thread, through HostEvents:

    guest TX ring -> Aqc107.send -> Passt.send -> (outbox) -> passt's socket
    passt's socket -> reader thread's ring -> Passt.deliver -> Aqc107.receive -> guest RX ring

Flow control both ways, so neither side buffers without bound:
- passt's frames are taken from its reader (net/stream_reader.py) only while the NIC takes
  them (`wants_frames`); when its queue is full they wait there until the guest gives RX
  buffers back (`on_rx_room`), and when the reader's ring is full, in passt's socket.
- When the outbox to passt is full, `can_send` says no and the NIC leaves its TX rings as
  they are; once the socket has drained (`_writable`), `tx_ready` runs them again.

While the machine runs it holds the host's package cache proxy (net/package_cache.py), which
an installed Debian's apt uses at the gateway's port 3142.

After a resume the backend is a new passt: the guest's connections from before are reset
(net/stale.py). passt going away (it crashed, or was killed) is the cable pulled: the link
goes down in the guest, and the machine runs on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from imacpro.devices.net.aqc107 import Aqc107
from imacpro.errors import UserError
from imacpro.guest.debian import debian_dir
from imacpro.host_events import HostEvents
from imacpro.net import package_cache
from imacpro.net.passt import Forward, Passt
from imacpro.net.stale import StaleFlows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Network:
    """What `imacpro boot` asked for: `user` (passt) or `none` (no cable: the link stays
    down); `required` when the user asked for it by name or gave forwards, so that a host
    without passt is an error rather than a notice."""
    mode: str = "user"
    forwards: tuple[Forward, ...] = ()
    required: bool = False


def start(network: Network, events: HostEvents,
          notice: Callable[[str], None]) -> NetworkLink | None:
    """The machine's backend, started before its first boot; None for no network."""
    if network.mode == "none":
        return None
    backend = Passt(network.forwards)
    try:
        backend.start()
    except UserError as exc:
        if network.required:
            raise
        notice(f"no network: {exc}")
        return None
    link = NetworkLink(backend, events)
    try:
        link.package_cache = package_cache.attach(debian_dir())
    except OSError as exc:
        notice(f"no package cache for the guest's apt: {exc.strerror or exc}")
    return link


class NetworkLink:
    def __init__(self, backend: Passt, events: HostEvents):
        self.backend, self.events = backend, events
        self.nic: Aqc107 | None = None
        self.stale: StaleFlows | None = None
        self.reading = True
        self.writing = False
        self.connected = False
        self.package_cache = None         # this machine's hold on the package cache's proxy

    def plug(self, nic: Aqc107, resumed: bool = False) -> None:
        """Join the port and the backend (at power-on, and again on resume, where the
        loaded NIC state has no cable; then the guest's connections from before the suspend
        are answered with resets, net/stale.py)."""
        self.nic = nic
        self.stale = StaleFlows() if resumed else None
        self.backend.on_frame = self.nic.receive
        self.backend.accepts = self.nic.wants_frames
        self.nic.connect(self._send, self.backend.can_send, self._rx_room)
        self.connected = True
        self.reading = self.nic.wants_frames()
        self._watch()

    def _send(self, frame: bytes) -> None:
        reset = self.stale.reset_for(frame) if self.stale is not None else None
        if reset is not None:
            self.nic.receive(reset)
            return
        self.backend.send(frame)
        if self.backend.backlog and not self.writing:
            self.writing = True
            self._watch()

    def _readable(self) -> None:
        if not self.backend.deliver():
            self._gone()
            return
        if not self.nic.wants_frames():
            self.reading = False        # the guest's buffers are full: leave it in passt
            self._watch()               # until `_rx_room`

    def _rx_room(self) -> None:
        """The guest gave RX buffers back: hand on what waits in the reader (it may be all
        passt sent, with nothing new to make the reader readable), and wait on the reader
        again while the NIC wants more."""
        if not self.connected:
            return
        if not self.backend.deliver():
            self._gone()
            return
        reading = self.nic.wants_frames()
        if reading != self.reading:
            self.reading = reading
            self._watch()

    def _writable(self) -> None:
        if self.backend.flush():
            self.writing = False
            self._watch()
            self.nic.tx_ready()

    def _watch(self) -> None:
        self.events.watch(self.backend.reader, self._readable if self.reading else None, None)
        self.events.watch(self.backend, None, self._writable if self.writing else None)

    def _gone(self) -> None:
        log.warning("the network backend (passt) has gone: the link is down")
        self.unplug()

    def unplug(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self.reading = self.writing = False
        self.events.remove(self.backend.reader)
        self.events.remove(self.backend)
        self.nic.unplug()
        self.backend.on_frame = lambda frame: None

    def describe(self) -> dict:
        """For `imacpro status`: the backend, the link as the guest sees it, the forwards,
        frames each way, resets given to connections from before a resume."""
        return {"backend": "passt", "link_up": bool(self.nic and self.nic.link_up),
                "connected": self.connected,
                "forwards": [{"host": "127.0.0.1", "host_port": f.host_port,
                              "guest_port": f.guest_port} for f in self.backend.forwards],
                "frames_to_guest": self.backend.frames_in,
                "frames_from_guest": self.backend.frames_out,
                "resets_after_resume": self.stale.resets if self.stale else 0}

    def close(self) -> None:
        self.unplug()
        self.backend.close()
        if self.package_cache is not None:
            self.package_cache.close()
            self.package_cache = None
