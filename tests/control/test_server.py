"""The control socket's server, with a stand-in for the running machine: every bad request
gets a clear answer and leaves the server serving."""

import json
import os
import socket
import stat
import threading

import pytest

from imacpro.control import protocol
from imacpro.control.client import ControlClient, NotRunning
from imacpro.control.server import ControlServer
from imacpro.errors import UserError
from imacpro.host_events import HostEvents


class Handler:
    def __init__(self):
        self.pending = []          # exec replies not sent yet
        self.typed = bytearray()
        self.consoles = set()
        self.stops = []

    def status(self):
        return {"state": "running", "pid": os.getpid()}

    def exec(self, command_line, reply):
        self.pending.append((command_line, reply))

    def stop(self, force):
        self.stops.append(force)
        return {"pressed": not force}

    def attach_console(self, connection):
        self.consoles.add(connection)

    def detach_console(self, connection):
        self.consoles.discard(connection)

    def console_input(self, data):
        self.typed += data


@pytest.fixture
def served(tmp_path):
    """A server on its own thread (as the run loop would serve it), and its handler."""
    events, handler = HostEvents(), Handler()
    server = ControlServer(protocol.socket_path(tmp_path), events, handler)
    running = threading.Event()
    running.set()

    def loop():
        while running.is_set():
            events.poll(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield tmp_path, handler, events
    running.clear()
    thread.join()
    server.close()
    events.close()


def raw(path):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(protocol.socket_path(path)))
    sock.settimeout(10)
    return sock


def read_reply(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data) if data else None


def test_socket_is_owner_only_and_answers_status(served):
    path, _, _ = served
    mode = os.stat(protocol.socket_path(path)).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    with ControlClient(path, "pro") as client:
        reply = client.request("status")
    assert reply["version"] == protocol.VERSION and reply["state"] == "running"


@pytest.mark.parametrize("line, error", [
    (b"{not json\n", "not JSON"),
    (b"[1, 2]\n", "JSON object"),
    (b'{"version": 99, "command": "status"}\n', "protocol version 99"),
    (b'{"version": 1, "command": "reboot-the-host"}\n', "unknown command"),
    (b'{"version": 1, "command": "exec"}\n', "command_line"),
    (b'{"version": 1, "command": "stop", "force": "yes"}\n', "true or false"),
    (b"\xff\xfe\n", "not JSON"),
])
def test_a_bad_request_is_answered_and_the_connection_closed(served, line, error):
    path, _, _ = served
    sock = raw(path)
    sock.sendall(line)
    reply = read_reply(sock)
    assert reply["ok"] is False and error in reply["error"]
    assert sock.recv(1) == b""                      # closed after the error
    with ControlClient(path, "pro") as client:      # and the server serves on
        assert client.request("status")["ok"]


def test_an_endless_line_is_refused(served):
    path, _, _ = served
    sock = raw(path)
    try:
        sock.sendall(b"x" * (protocol.MAX_LINE + 70000))
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = read_reply(sock)
    assert reply is None or "longer than" in reply["error"]
    with ControlClient(path, "pro") as client:
        assert client.request("status")["ok"]


def test_requests_on_one_connection_wait_for_an_exec_before_them(served):
    path, handler, events = served
    sock = raw(path)
    sock.sendall(protocol.encode({"command": "exec", "command_line": "true"})
                 + protocol.encode({"command": "status"}))
    for _ in range(200):
        if handler.pending:
            break
        threading.Event().wait(0.01)
    command_line, reply = handler.pending.pop()
    assert command_line == "true"
    sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        sock.recv(1)                                # status waits behind the exec
    sock.settimeout(10)
    reply({"status": 0, "output": ""})
    events.wake()
    first, second = read_reply_lines(sock, 2)
    assert first["status"] == 0 and second["state"] == "running"


def read_reply_lines(sock, count):
    data = b""
    while data.count(b"\n") < count:
        data += sock.recv(65536)
    return [json.loads(line) for line in data.splitlines()[:count]]


def test_a_client_gone_mid_exec_loses_only_its_reply(served):
    path, handler, events = served
    sock = raw(path)
    sock.sendall(protocol.encode({"command": "exec", "command_line": "sleep 1"}))
    for _ in range(200):
        if handler.pending:
            break
        threading.Event().wait(0.01)
    sock.close()
    threading.Event().wait(0.1)
    handler.pending.pop()[1]({"status": 0, "output": ""})   # the reply goes nowhere
    with ControlClient(path, "pro") as client:
        assert client.request("status")["ok"]


def test_console_is_a_byte_stream_both_ways(served):
    path, handler, _ = served
    client = ControlClient(path, "pro")
    client.request("console")
    client.sock.sendall(b"ls\r")
    for _ in range(200):
        if handler.typed and handler.consoles:
            break
        threading.Event().wait(0.01)
    assert bytes(handler.typed) == b"ls\r"
    next(iter(handler.consoles)).send(b"bin dev etc\r\n")
    assert client.sock.recv(100) == b"bin dev etc\r\n"
    client.close()
    for _ in range(200):
        if not handler.consoles:
            break
        threading.Event().wait(0.01)
    assert not handler.consoles


def test_a_machine_without_a_process_is_not_running(tmp_path):
    with pytest.raises(NotRunning, match="not running"):
        ControlClient(tmp_path, "pro")
    protocol.socket_path(tmp_path).write_bytes(b"")     # a file left behind, nobody serving
    with pytest.raises(UserError):
        ControlClient(tmp_path, "pro")


def test_a_long_bundle_path_still_gets_its_socket(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    events, handler = HostEvents(), Handler()
    server = ControlServer(protocol.socket_path(deep), events, handler)
    try:
        assert protocol.socket_path(deep).exists()
        thread = threading.Thread(target=lambda: [events.poll(0.01) for _ in range(100)])
        thread.start()
        with ControlClient(deep, "pro") as client:
            assert client.request("status")["ok"]
        thread.join()
    finally:
        server.close()
        events.close()
    assert not protocol.socket_path(deep).exists()
