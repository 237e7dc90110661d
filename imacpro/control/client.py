"""The client side of the control socket: what `imacpro status|exec|console|stop` use."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from imacpro.control.protocol import MAX_LINE, ProtocolError, address, decode, encode, \
    socket_path
from imacpro.errors import UserError


class NotRunning(UserError):
    """The machine has no process serving its control socket."""


class ControlClient:
    def __init__(self, bundle_path: Path, name: str):
        self.name = name
        path = socket_path(bundle_path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        target, dir_fd = address(path) if path.parent.is_dir() else (str(path), None)
        try:
            self.sock.connect(target)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            from imacpro.suspend import state_path
            if state_path(bundle_path).exists():
                raise NotRunning(f"machine {name!r} is suspended ('imacpro boot {name}' "
                                 "resumes it)") from None
            raise NotRunning(f"machine {name!r} is not running") from None
        except OSError as exc:
            self.sock.close()
            raise UserError(f"cannot reach machine {name!r}: {exc.strerror}") from None
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        self._buffer = bytearray()

    def request(self, command: str, **arguments) -> dict:
        """Send one request and wait for its reply; an error reply raises UserError."""
        try:
            self.sock.sendall(encode({"command": command, **arguments}))
            reply = self._read_line()
        except OSError as exc:
            raise UserError(f"machine {self.name!r}: the control socket failed: "
                            f"{exc.strerror or exc}") from None
        if reply is None:
            raise UserError(f"machine {self.name!r} stopped before it answered")
        try:
            message = decode(reply)
        except ProtocolError as exc:
            raise UserError(f"machine {self.name!r} answered something else: {exc}") from None
        if not message.get("ok"):
            raise UserError(f"machine {self.name!r}: {message.get('error', 'request refused')}")
        return message

    def _read_line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
            if len(self._buffer) > 64 * MAX_LINE:
                raise UserError(f"machine {self.name!r} sent an endless reply")
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        return bytes(line)

    def take_buffered(self) -> bytes:
        """Bytes already read past the last reply (the console's first output)."""
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

