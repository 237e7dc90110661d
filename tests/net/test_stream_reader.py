"""The readers of the network backend's socket (imacpro/net/stream_reader.py)."""

import os
import select
import socket
import threading
import time

import pytest

from imacpro.net import stream_reader
from imacpro.net.stream_reader import SocketReader, ThreadReader

READERS = [pytest.param(ThreadReader, id="thread"), pytest.param(SocketReader, id="socket")]


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def take_all(reader, until_bytes: int, timeout=30.0) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < until_bytes:
        assert time.monotonic() < deadline, f"only {len(got)} of {until_bytes} bytes came"
        data = reader.take(100_000)
        assert data is not None, "the stream ended early"
        got += data
        if not data:                # all taken: the reader is readable when more comes
            select.select([reader], [], [], 1.0)
    return bytes(got)


def test_the_native_reader_is_built():
    assert stream_reader._native is not None, "make builds imacpro/net/_lib/libstreamreader.so"


@pytest.mark.parametrize("kind", READERS)
def test_bytes_come_in_order_and_the_end_is_said_once_all_are_taken(pair, kind):
    ours, theirs = pair
    reader = kind(ours) if kind is SocketReader else kind(ours, ring_size=64 * 1024)
    payload = os.urandom(3 << 20)
    writer = threading.Thread(target=lambda: (theirs.sendall(payload),
                                              theirs.shutdown(socket.SHUT_WR)))
    writer.start()
    try:
        assert take_all(reader, len(payload)) == payload
        writer.join()
        select.select([reader], [], [], 10.0)
        assert reader.take(4096) is None
    finally:
        writer.join()
        reader.close()


def test_the_thread_drains_the_socket_while_the_run_loop_is_busy(pair):
    """The writer's socket never fills while the ring has room, though nobody takes: a peer
    that drops what does not fit (passt) loses nothing to a run loop busy with the guest."""
    ours, theirs = pair
    reader = ThreadReader(ours, ring_size=8 << 20)
    theirs.setblocking(False)
    payload = os.urandom(6 << 20)
    sent, deadline = 0, time.monotonic() + 30
    try:
        while sent < len(payload):
            assert time.monotonic() < deadline, f"the socket stayed full after {sent} bytes"
            try:
                sent += theirs.send(payload[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.001)
        assert take_all(reader, len(payload)) == payload
    finally:
        reader.close()


def test_a_full_ring_holds_the_writer_back_and_close_stops_its_thread(pair):
    ours, theirs = pair
    reader = ThreadReader(ours, ring_size=4096)
    theirs.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sent += theirs.send(b"x" * 65536)
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += theirs.send(b"x" * 65536)
            except BlockingIOError:
                break
    assert sent < 4 << 20, "the reader took without bound"
    assert select.select([reader], [], [], 5.0)[0]
    assert 0 < len(reader.take(1 << 20)) <= 4096
    reader.close()                  # its thread is waiting on the socket or for room: it ends


def test_readable_only_while_there_is_something_to_take(pair):
    ours, theirs = pair
    reader = ThreadReader(ours)
    try:
        assert not select.select([reader], [], [], 0.1)[0]
        theirs.sendall(b"frame")
        assert select.select([reader], [], [], 5.0)[0]
        assert reader.take(100) == b"frame"
        assert not select.select([reader], [], [], 0.1)[0]
        assert reader.take(100) == b""
    finally:
        reader.close()
