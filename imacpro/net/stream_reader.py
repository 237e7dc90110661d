"""Reading a network backend's stream socket: from a thread of its own, or in the run loop.

Two readers with one interface, `fileno()` (readable when there are bytes to take, or the
stream has ended) and `take(size)`:
  ThreadReader  `native/stream_reader.c`, built by make into `_lib/libstreamreader.so`: a
                thread outside the interpreter drains the socket into a bounded ring as soon
                as the peer writes, and signals an eventfd. passt drops the frames that do not
                fit its socket's buffer (net/passt.py), so a socket read only between vCPU
                slices overflows under a bulk transfer into the guest; this one does not.
  SocketReader  the socket itself, read in the run loop (a duplicate of its descriptor, so the
                run loop's selector can wait to read it and to write it separately). What
                runs when the library is not built.
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

from imacpro.host_events import receive

LIBRARY = Path(__file__).with_name("_lib") / "libstreamreader.so"
RING_SIZE = 16 << 20       # more than a guest's TCP window: what passt sends at once


def _load_native():
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError:
        return None
    lib.reader_new.restype = ctypes.c_void_p
    lib.reader_new.argtypes = [ctypes.c_int, ctypes.c_size_t]
    lib.reader_notify_fd.restype = ctypes.c_int
    lib.reader_notify_fd.argtypes = [ctypes.c_void_p]
    lib.reader_take.restype = ctypes.c_long
    lib.reader_take.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.reader_free.argtypes = [ctypes.c_void_p]
    return lib


_native = _load_native()


class ThreadReader:
    def __init__(self, sock: socket.socket, ring_size: int = RING_SIZE):
        if _native is None:
            raise RuntimeError(f"{LIBRARY} is not built (make builds it)")
        self._reader = _native.reader_new(sock.fileno(), ring_size)
        if not self._reader:
            raise OSError("cannot start the network reader thread")
        self._notify_fd = _native.reader_notify_fd(self._reader)
        self._buffer = ctypes.create_string_buffer(0)

    def fileno(self) -> int:
        return self._notify_fd

    def take(self, size: int) -> bytes | None:
        """Up to `size` bytes the peer sent: b"" if none are waiting, None once the stream
        has ended (the peer closed, or the socket failed) and all it sent has been taken."""
        if len(self._buffer) < size:
            self._buffer = ctypes.create_string_buffer(size)
        count = _native.reader_take(self._reader, self._buffer, size)
        if count < 0:
            return None
        return ctypes.string_at(self._buffer, count) if count else b""

    def close(self) -> None:
        """Stop the thread (the socket stays open: its owner closes it after this)."""
        if self._reader:
            _native.reader_free(self._reader)
            self._reader = None


class SocketReader:
    def __init__(self, sock: socket.socket):
        self._socket = socket.socket(fileno=os.dup(sock.fileno()))
        self._socket.setblocking(False)

    def fileno(self) -> int:
        return self._socket.fileno()

    def take(self, size: int) -> bytes | None:
        data = receive(self._socket, size)
        if data is None:
            return b""
        return data or None

    def close(self) -> None:
        self._socket.close()


def open_reader(sock: socket.socket) -> ThreadReader | SocketReader:
    return ThreadReader(sock) if _native is not None else SocketReader(sock)
