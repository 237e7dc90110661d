"""The package cache's proxy: Debian's packages for the guests' apt from the host's cache.

A machine with a network starts it (`attach`); an installed Debian's apt asks through it
when it answers at the gateway's port 3142 (docs/DEBIAN.md: apt's Proxy-Auto-Detect runs a
script that checks), which is the host's 127.0.0.1:3142 through passt (net/passt.py). What
it serves, from $IMACPRO_CACHE/debian (guest/debian.py's cache):

    archives/NAME_VERSION_ARCH.deb   packages: the ones `imacpro install --os debian` fetched
                                     (mmdebstrap's), and every one a guest fetched through
                                     here. Served from the cache when there; else fetched from
                                     Debian's archive, stored, and served as it arrives.
    lists/HOST/PATH                  the archive's indexes (dists/...): fetched each time, the
                                     stored copy served when the archive cannot be reached, so
                                     a guest's `apt-get update` works offline once it has run.

apt checks everything it is given (the indexes' signatures, each package's SHA-256 from the
signed index), so the cache needs no trust of its own: a wrong file is refused by the guest,
as from any mirror. The proxy only asks Debian's archive hosts (UPSTREAMS) for indexes and
packages: any other request is refused. Requests come from guests, so every part of one is
checked, a client gets at most REQUEST_TIMEOUT_S between bytes, and at most MAX_CLIENTS are
served at once.

Port 3142 is apt-cacher-ng's: where one runs on the host, the guests use it instead, as they
use another machine's proxy. One proxy serves every running machine of the user (from the
cache of the machine that started it): a machine holds a shared lock on the port's users
file (`users_file`) while it runs (its process's death lets go), and the proxy exits once
no machine holds it.

    python -m imacpro.net.package_cache CACHE_DIR [PORT]   (what `attach` starts)
"""

from __future__ import annotations

import fcntl
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

PORT = 3142
UPSTREAMS = {"deb.debian.org": "http://deb.debian.org",
             "security.debian.org": "http://security.debian.org"}
LOG_FILE = "package-cache.log"
MAX_CLIENTS = 32
REQUEST_TIMEOUT_S = 60
UPSTREAM_TIMEOUT_S = 30
CHUNK = 64 * 1024
IDLE_CHECK_S = 2.0
# What a path of Debian's archive is made of; a package's file name (its version may hold
# an epoch's colon as %3a, apt's way in its own cache).
PATH_CHARS = re.compile(r"/[A-Za-z0-9._~+%/-]*")
PACKAGE_FILE = re.compile(r"[a-z0-9][a-z0-9+.-]*_[A-Za-z0-9.+~%:-]+_[a-z0-9-]+\.deb")


def cache_paths(cache: Path) -> tuple[Path, Path]:
    return cache / "archives", cache / "lists"


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = MAX_CLIENTS

    def __init__(self, address: tuple[str, int], cache: Path,
                 upstreams: dict[str, str] | None = None):
        self.cache = cache
        self.archives, self.lists = cache_paths(cache)
        self.upstreams = dict(UPSTREAMS if upstreams is None else upstreams)
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self.clients.acquire(blocking=False):
            self.shutdown_request(request)          # full: the client may try again
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):     # OSError: a client gone
            super().handle_error(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.clients.release()


class Handler(http.server.BaseHTTPRequestHandler):
    """GET of a Debian package or index, by a proxy's request (`GET http://HOST/PATH`)."""

    protocol_version = "HTTP/1.1"       # apt keeps its connection for the next file
    timeout = REQUEST_TIMEOUT_S
    server: Proxy

    def log_request(self, code="-", size="-"):
        pass                # the log keeps errors only: it lives in the cache for ever

    def do_GET(self):
        target = self._target()
        if target is None:
            return
        host, path = target
        name = path.rsplit("/", 1)[-1]
        if "/pool/" in path and PACKAGE_FILE.fullmatch(name):
            self._package(host, path, self.server.archives / name)
        elif "/dists/" in path:
            self._index(host, path, self.server.lists / host / path.lstrip("/"))
        else:
            self._refuse(403, "only Debian's packages and indexes")

    def _target(self) -> tuple[str, str] | None:
        try:
            url = urlsplit(self.path)
        except ValueError:
            url = None
        if url is None or url.scheme != "http" or url.query or url.fragment or \
                url.username or url.password or url.port not in (None, 80):
            self._refuse(400, "a proxy's request for an http:// URL")
            return None
        host, path = (url.hostname or "").lower(), url.path
        if host not in self.server.upstreams:
            self._refuse(403, "only Debian's archive")
            return None
        parts = path.split("/")
        if not PATH_CHARS.fullmatch(path) or any(p in (".", "..") for p in parts) or \
                "//" in path or len(path) > 1024:
            self._refuse(400, "not a path of Debian's archive")
            return None
        return host, path

    def _package(self, host: str, path: str, stored: Path) -> None:
        if stored.is_file():
            self._send_file(stored)
        else:
            self._fetch(host, path, stored)

    def _index(self, host: str, path: str, stored: Path) -> None:
        if "/by-hash/" in path and stored.is_file():       # named by its content
            self._send_file(stored)
            return
        if self._fetch(host, path, stored, fallback=True):
            return
        if stored.is_file():
            self._send_file(stored)
        else:
            self._refuse(502, "the archive cannot be reached and the cache has no copy")

    def _fetch(self, host: str, path: str, stored: Path, fallback: bool = False) -> bool:
        """Fetch from the archive into `stored` while sending it on; False (nothing sent)
        when the archive could not be reached and `fallback` lets the caller serve a
        stored copy."""
        request = urllib.request.Request(self.server.upstreams[host] + path,
                                         headers={"User-Agent": "imacpro-package-cache"})
        try:
            upstream = urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            exc.close()
            if fallback and exc.code >= 500:
                return False
            self._refuse(exc.code if exc.code in (403, 404, 410) else 502,
                         f"the archive answered {exc.code}")
            return True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if fallback:
                return False
            self._refuse(502, f"the archive cannot be reached ({exc})")
            return True
        with upstream:
            length = upstream.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if upstream.headers.get("Last-Modified"):
                self.send_header("Last-Modified", upstream.headers["Last-Modified"])
            if length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self._relay(upstream, stored, length)
        return True

    def _relay(self, upstream, stored: Path, length: int | None) -> None:
        """Send the archive's bytes on as they come, keeping them in a partial file that
        becomes `stored` once all of them came: before the client has the last of them, so
        a client that has the whole file finds it in the cache."""
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_name(f".{stored.name}.{os.getpid()}.{threading.get_ident()}")
        done = 0
        try:
            with open(partial, "wb") as out:
                while True:
                    chunk = upstream.read(CHUNK)
                    out.write(chunk)
                    done += len(chunk)
                    if not chunk or done == length:
                        break
                    self.wfile.write(chunk)
            if length is None or done == length:
                os.replace(partial, stored)
                self.wfile.write(chunk)
            else:
                self.close_connection = True          # the client counts a short body
        except OSError:
            self.close_connection = True              # the client or the archive went away
        finally:
            partial.unlink(missing_ok=True)

    def _send_file(self, path: Path) -> None:
        try:
            source = open(path, "rb")
        except OSError:
            self._refuse(404, "not in the cache")
            return
        with source:
            size = os.fstat(source.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                shutil.copyfileobj(source, self.wfile, CHUNK)
            except OSError:
                self.close_connection = True

    def _refuse(self, code: int, why: str) -> None:
        self.send_error(code, explain=why)


# --- the machines' side ------------------------------------------------------------------

def users_file(port: int) -> Path:
    """The lock the machines using the proxy on `port` hold: the user's, whatever cache
    each machine has."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("XDG_CACHE_HOME") or \
        str(Path.home() / ".cache")
    return Path(base) / f"imacpro-package-cache-{port}.users"


def answering(port: int = PORT) -> bool:
    """Whether something accepts connections on the host's 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def attach(cache: Path, port: int = PORT):
    """A running machine's hold on the proxy: start it unless something answers on the
    port already. The returned file is the machine's lock; closing it (or the process
    ending) lets the proxy go once no other machine holds one."""
    cache.mkdir(parents=True, exist_ok=True)
    users_file(port).parent.mkdir(parents=True, exist_ok=True)
    users = open(users_file(port), "a+")
    # Blocks only while a proxy that found no machines closes its port and exits.
    fcntl.flock(users, fcntl.LOCK_SH)
    if not answering(port):
        with open(cache / LOG_FILE, "ab") as log:
            subprocess.Popen([sys.executable, "-m", "imacpro.net.package_cache", str(cache),
                              str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    return users


def serve(cache: Path, port: int = PORT, upstreams: dict[str, str] | None = None) -> int:
    """Serve until no machine holds the port's users file; 0 also when the port is taken (then
    something else serves there: another proxy, or apt-cacher-ng)."""
    cache.mkdir(parents=True, exist_ok=True)
    try:
        proxy = Proxy(("127.0.0.1", port), cache, upstreams)
    except OSError as exc:
        print(f"package cache: port {port}: {exc.strerror}", file=sys.stderr)
        return 0
    server = threading.Thread(target=proxy.serve_forever, daemon=True)
    server.start()
    with open(users_file(port), "a+") as users:
        stop = threading.Event()
        while not stop.wait(IDLE_CHECK_S):
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            # No machine holds it: close the port while still holding it, so a machine
            # starting now waits and then starts a proxy of its own.
            proxy.shutdown()
            proxy.server_close()
            return 0
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and not sys.argv[2].isdigit()):
        sys.exit("usage: python -m imacpro.net.package_cache CACHE_DIR [PORT]")
    sys.exit(serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else PORT))
