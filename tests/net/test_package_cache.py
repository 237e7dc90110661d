"""The package cache's proxy (net/package_cache.py) between a guest's apt and an archive
served here by http.server, as Debian's would be."""

import functools
import http.client
import http.server
import os
import socket
import threading
import time

import pytest

from imacpro.net import package_cache
from imacpro.net.package_cache import Proxy, attach, answering

PACKAGE = "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
INDEX = "/debian/dists/bookworm/InRelease"


class Archive:
    """Debian's archive, as files in a directory served over HTTP; `stop` takes it away."""

    def __init__(self, root):
        self.root = root
        handler = functools.partial(Quiet, directory=str(root))
        self.server = QuietServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass                            # the proxy leaving mid-file, when its client did


@pytest.fixture
def archive(tmp_path):
    served = Archive(tmp_path / "archive")
    yield served
    served.stop()


@pytest.fixture
def proxy(tmp_path, archive):
    server = Proxy(("127.0.0.1", 0), tmp_path / "cache", {"deb.debian.org": archive.url})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def get(proxy, url: str, conn=None) -> tuple[int, bytes]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    conn.request("GET", url)
    response = conn.getresponse()
    return response.status, response.read()


def raw_status(proxy, url: str) -> int:
    """The status of a request line sent as it is (http.client refuses some of them)."""
    with socket.create_connection(("127.0.0.1", proxy.server_address[1]), timeout=10) as s:
        s.sendall(b"GET " + url.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return int(s.recv(100).split()[1])


def test_a_package_is_fetched_once_and_then_served_from_the_cache(proxy, archive):
    data = os.urandom(300_000)
    archive.put(PACKAGE, data)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    assert get(proxy, "http://deb.debian.org" + PACKAGE, conn) == (200, data)
    assert (proxy.archives / "hello_2.10-3_amd64.deb").read_bytes() == data
    archive.stop()                                  # the archive gone: the cache serves it,
    assert get(proxy, "http://deb.debian.org" + PACKAGE, conn) == (200, data)   # same connection
    assert [p.name for p in proxy.archives.iterdir()] == ["hello_2.10-3_amd64.deb"]


def test_indexes_are_fetched_each_time_and_kept_for_when_the_archive_is_away(proxy, archive):
    assert get(proxy, "http://deb.debian.org" + INDEX)[0] == 404        # the archive's answer
    assert get(proxy, "http://deb.debian.org" + INDEX)[0] == 404
    archive.put(INDEX, b"first")
    assert get(proxy, "http://deb.debian.org" + INDEX) == (200, b"first")
    archive.put(INDEX, b"second")
    assert get(proxy, "http://deb.debian.org" + INDEX) == (200, b"second")
    archive.stop()
    assert get(proxy, "http://deb.debian.org" + INDEX) == (200, b"second")
    status, _ = get(proxy, "http://deb.debian.org/debian/dists/trixie/InRelease")
    assert status == 502                            # nothing kept, nowhere to fetch it


@pytest.mark.parametrize("url, status", [
    ("http://example.com/debian/dists/bookworm/InRelease", 403),      # not Debian's archive
    ("http://deb.debian.org/debian/../../etc/passwd", 400),
    ("http://deb.debian.org/debian/./dists/bookworm/InRelease", 400),
    ("http://deb.debian.org//etc/passwd", 400),
    ("http://deb.debian.org/debian/dists/bookworm/InRelease?x=1", 400),
    ("http://deb.debian.org:8080/debian/dists/bookworm/InRelease", 400),
    ("http://user@deb.debian.org/debian/dists/bookworm/InRelease", 400),
    ("https://deb.debian.org/debian/dists/bookworm/InRelease", 400),
    ("/debian/dists/bookworm/InRelease", 400),                        # not a proxy's request
    ("http://deb.debian.org/debian/README", 403),                     # neither package nor index
    ("http://deb.debian.org/debian/pool/main/h/hello/hello.dsc", 403),
    ("http://deb.debian.org/debian/pool/main/h/hello/%2e%2e.deb", 403),
    ("http://deb.debian.org/debian/dists/bookworm/\x00", 400),
    ("http://[::1/debian/dists/bookworm/InRelease", 400),
])
def test_what_is_not_debians_archive_is_refused(proxy, archive, url, status):
    archive.put(INDEX, b"index")
    assert raw_status(proxy, url) == status
    assert get(proxy, "http://deb.debian.org" + INDEX) == (200, b"index")   # and it goes on


def test_requests_that_are_not_http_are_answered_and_the_proxy_goes_on(proxy, archive):
    archive.put(INDEX, b"index")
    port = proxy.server_address[1]
    for raw in (b"CONNECT deb.debian.org:443 HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\r\n\r\n",
                b"GET " + b"A" * 70000 + b" HTTP/1.1\r\n\r\n",
                b"GET http://deb.debian.org/ HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            answer = s.recv(100)        # an error (a page alone, to a line not HTTP's)
            assert b"HTTP/1.1 4" in answer or b"HTTP/1.1 5" in answer or b"Error" in answer
    assert get(proxy, "http://deb.debian.org" + INDEX) == (200, b"index")


def test_a_client_gone_mid_download_leaves_nothing_in_the_cache(proxy, archive):
    archive.put(PACKAGE, os.urandom(16 << 20))
    with socket.create_connection(("127.0.0.1", proxy.server_address[1]), timeout=10) as s:
        s.sendall(f"GET http://deb.debian.org{PACKAGE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    for _ in range(package_cache.MAX_CLIENTS):      # every handler done: it found the client
        assert proxy.clients.acquire(timeout=30)    # gone and cleaned up
    assert list(proxy.archives.iterdir()) == []


def test_the_proxy_serves_while_a_machine_holds_it_and_exits_after(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = tmp_path / "cache"
    first = attach(cache, port)
    deadline = time.monotonic() + 30
    while not answering(port):
        assert time.monotonic() < deadline, (cache / package_cache.LOG_FILE).read_text()
        time.sleep(0.05)
    second = attach(cache, port)        # a second machine: the same proxy
    first.close()
    time.sleep(3 * package_cache.IDLE_CHECK_S)
    assert answering(port)              # the second still holds it
    second.close()
    deadline = time.monotonic() + 30
    while answering(port):
        assert time.monotonic() < deadline, "the proxy outlived its machines"
        time.sleep(0.05)
