"""The control socket's messages (docs/CONTROL.md): one JSON object per line, UTF-8.

A request: {"version": 1, "command": NAME, ...arguments}. A reply: {"version": 1, "ok": true,
...results} or {"version": 1, "ok": false, "error": "one line"}. A client may send several
requests on one connection; each gets its reply in order. `console` turns the connection into
a byte stream (the guest's COM1) after its reply.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

VERSION = 1
SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20          # a request longer than this is refused and the connection closed
UNIX_PATH_MAX = 107         # sun_path holds 108 bytes with its NUL


class ProtocolError(Exception):
    """A message that is not a request or reply of this protocol."""


def encode(message: dict) -> bytes:
    return json.dumps({"version": VERSION, **message}, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict:
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message is a JSON object")
    if message.get("version") != VERSION:
        raise ProtocolError(f"protocol version {message.get('version')!r} is not {VERSION}")
    return message


def socket_path(bundle_path: Path) -> Path:
    return bundle_path / SOCKET_NAME


def address(path: Path) -> tuple[str, int | None]:
    """What to bind or connect to for `path`, and a directory descriptor to close after. A
    path longer than sun_path is reached through /proc/self/fd/N of its directory."""
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{path.name}", fd
