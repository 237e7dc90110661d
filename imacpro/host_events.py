"""The host side of a running machine: file descriptors the run loop serves between slices.

The run loop owns the devices, so everything that reaches them from the host (the control
socket and its clients, the terminal, later the display viewer, USB input and the network
backend) is a reader registered here. The loop calls `poll(0)` after each round of slices and,
when every vCPU is idle, `poll(wait)` instead of sleeping: host input then wakes an idle
machine at once. Another thread that has work for the loop calls `wake()`; one that arms a
timer sooner than the loop's wait moves the wait's end with `wake_at()`, which wakes no one
until then (a CLOCK_MONOTONIC timerfd, timerfd_create(2)).
"""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
from typing import Callable

GONE, WAITING, SENT = "gone", "waiting", "sent"


class HostEvents:
    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self._drain_wake, None))
        self._timer_fd = _timerfd()
        if self._timer_fd is not None:
            self._selector.register(self._timer_fd, selectors.EVENT_READ,
                                    (self._drain_timer, None))
        self.stop_reason: str | None = None     # set by a handler: the run loop ends

    def add_reader(self, fileobj, callback: Callable[[], None]) -> None:
        """`callback()` runs in the run loop's thread whenever `fileobj` is readable."""
        self._selector.register(fileobj, selectors.EVENT_READ, (callback, None))

    def want_write(self, fileobj, callback: Callable[[], None] | None) -> None:
        """While `callback` is set, it runs whenever the reader `fileobj` is also writable
        (a client's replies that did not fit its socket buffer)."""
        key = self._selector.get_key(fileobj)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if callback else 0)
        self._selector.modify(fileobj, events, (key.data[0], callback))

    def watch(self, fileobj, on_read: Callable[[], None] | None,
              on_write: Callable[[], None] | None) -> None:
        """Serve `fileobj` with whichever of the two callbacks is set, registering it or
        changing what it waits for; with neither, stop serving it. For a backend that
        pauses reading while the guest has no buffers, or waits to write."""
        events = (selectors.EVENT_READ if on_read else 0) | \
            (selectors.EVENT_WRITE if on_write else 0)
        if not events:
            self.remove(fileobj)
        elif fileobj in self._selector.get_map():
            self._selector.modify(fileobj, events, (on_read, on_write))
        else:
            self._selector.register(fileobj, events, (on_read, on_write))

    def remove(self, fileobj) -> None:
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    @property
    def wake_fd(self) -> int:
        """A byte written here (from any thread, or C) is a `wake()`."""
        return self._wake_w

    def wake(self) -> None:
        """From any thread: an idle run loop looks at its readers now."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass            # a wake is already pending

    def wake_at(self, host_monotonic_ns: int) -> None:
        """From any thread: the loop's wait ends by host CLOCK_MONOTONIC `host_monotonic_ns`
        (now, if that has passed). The thread that calls it is not held up by a context
        switch to the loop's: the kernel wakes it then. Without a timerfd, a `wake()`."""
        if self._timer_fd is None:
            self.wake()
            return
        at = _ItimerSpec()
        at.value_s, at.value_ns = divmod(max(1, host_monotonic_ns), 1_000_000_000)
        if _libc.timerfd_settime(self._timer_fd, TFD_TIMER_ABSTIME, ctypes.byref(at), None):
            self.wake()

    def _drain_timer(self) -> None:
        try:
            os.read(self._timer_fd, 8)
        except BlockingIOError:
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.wake()

    def poll(self, timeout: float, unlocked=None) -> None:
        """Run the callbacks of what is readable, waiting at most `timeout` seconds; while
        waiting, inside `unlocked()` (the machine's lock let go, host_threads.py)."""
        if unlocked is None:
            ready = self._selector.select(max(0.0, timeout))
        else:
            with unlocked():
                ready = self._selector.select(max(0.0, timeout))
        for key, mask in ready:
            on_read, on_write = key.data
            if mask & selectors.EVENT_WRITE and on_write is not None:
                on_write()
            if mask & selectors.EVENT_READ and self._selector.get_map().get(key.fd) is key:
                on_read()

    def close(self) -> None:
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._timer_fd is not None:
            os.close(self._timer_fd)


CLOCK_MONOTONIC, TFD_TIMER_ABSTIME = 1, 1
TFD_NONBLOCK, TFD_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC     # as timerfd.h defines them


class _ItimerSpec(ctypes.Structure):
    _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)


def _timerfd() -> int | None:
    """A non-blocking CLOCK_MONOTONIC timerfd, or None where the C library has none."""
    create = getattr(_libc, "timerfd_create", None)
    if create is None or not hasattr(_libc, "timerfd_settime"):
        return None
    fd = create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
    return fd if fd >= 0 else None


def receive(sock, size: int = 65536) -> bytes | None:
    """What a non-blocking socket has: its bytes; b"" when the peer has gone or the socket
    failed; None when nothing is there yet."""
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def send_some(sock, outbox: bytearray) -> str:
    """Send what the socket takes of `outbox`, removing it: SENT (all of it), WAITING (the
    rest waits for the socket to be writable) or GONE (the socket failed)."""
    while outbox:
        try:
            sent = sock.send(outbox)
        except (BlockingIOError, InterruptedError):
            return WAITING
        except OSError:
            return GONE
        del outbox[:sent]
    return SENT


def listen_local(port: int) -> socket.socket:
    """A non-blocking TCP server socket on 127.0.0.1:`port` (0: any free port)."""
    sock = socket.create_server(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def accept(server: socket.socket) -> socket.socket | None:
    """A client of `server`, non-blocking (and, over TCP, without Nagle's delay: viewers
    send small input messages and expect their pictures at once); None if there is none
    now or accepting failed."""
    try:
        sock, _ = server.accept()
    except OSError:
        return None
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
