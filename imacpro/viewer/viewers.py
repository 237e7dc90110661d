"""A running machine's viewers, started when asked (at power-on by `boot --vnc/--display web`,
later by `imacpro view`): the screen feed they share (screen.py), the VNC server (vnc.py) and
the page (page.py). All of them run in the machine's run loop and end with it."""

from __future__ import annotations

import json
import secrets

from imacpro.errors import UserError
from imacpro.files import atomic_write
from imacpro.overview import list_row

VNC_FILE = "vnc.json"      # in the bundle while the machine serves VNC: port and password


class Viewers:
    def __init__(self, machine, events, running, machine_bundle):
        self.machine, self.events, self.running = machine, events, running
        self.bundle = machine_bundle
        self._feed = None
        self.vnc = None
        self.page = None

    @property
    def feed(self):
        if self._feed is None:
            from imacpro.viewer.screen import ScreenFeed
            self._feed = ScreenFeed(self.machine)
        return self._feed

    def serve_vnc(self, port: int) -> str:
        """VNC on 127.0.0.1:`port` (0: any free one) with a new random password, both in the
        bundle's vnc.json (mode 0600) while the machine runs. Says where."""
        if self.vnc is None:
            from imacpro.viewer.vnc import VncServer
            password = secrets.token_urlsafe(6)[:8]
            try:
                self.vnc = VncServer(self.feed, self.events, port, self.bundle.name, password)
            except OSError as exc:
                raise UserError(f"cannot serve VNC on 127.0.0.1:{port}: {exc.strerror}") \
                    from None
            atomic_write(self.bundle.path / VNC_FILE, json.dumps(
                {"host": "127.0.0.1", "port": self.vnc.port, "password": password}).encode())
        return f"VNC on 127.0.0.1:{self.vnc.port}, password in {self.bundle.path / VNC_FILE}"

    def serve_page(self, port: int = 0) -> str:
        """The page on 127.0.0.1:`port` (0: any free one); its URL. A page already served is
        the one given, whatever the port asked."""
        if self.page is None:
            from imacpro.viewer.page import PageError, PageServer
            config = self.bundle.config()
            row = list_row(self.bundle.name, config)
            describe = {"configuration": {key: row[key] for key in
                                          ("cpu", "processor", "threads", "memory_gb",
                                           "graphics", "storage")},
                        "pointer": config.pointer}
            try:
                self.page = PageServer(self.feed, self.events, self.running, port,
                                       self.bundle.name, lambda: describe)
            except PageError as exc:
                raise UserError(str(exc)) from None
            except OSError as exc:
                raise UserError(f"cannot serve the page on 127.0.0.1:{port}: "
                                f"{exc.strerror}") from None
        return self.page.url

    def describe(self) -> dict:
        return {"vnc": {"host": "127.0.0.1", "port": self.vnc.port} if self.vnc else None,
                "page": self.page.url if self.page else None}

    def close(self) -> None:
        if self.page is not None:
            self.page.close()
        if self.vnc is not None:
            self.vnc.close()
            (self.bundle.path / VNC_FILE).unlink(missing_ok=True)
        if self._feed is not None:
            self._feed.close()
