"""Plain data (devices/contract.py) as bytes and back: JSON, with bytes as {"$bytes": base64}.

JSON keeps the state files' structure readable by any tool once decrypted and needs no code
to load (unlike pickle, which would run what a file says); the one tag is unambiguous because
no state dict has a "$bytes" key. Decoding checks that what comes back is plain data.
"""

from __future__ import annotations

import base64
import json

from imacpro.devices.contract import is_plain

BYTES_TAG = "$bytes"


def _default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"not plain data: {type(value).__name__}")


def _hook(obj: dict):
    if len(obj) == 1 and BYTES_TAG in obj:
        text = obj[BYTES_TAG]
        if not isinstance(text, str):
            raise ValueError("a bytes value that is not base64 text")
        return base64.b64decode(text, validate=True)
    return obj


def encode(value) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":"),
                      allow_nan=False).encode()


def decode(data: bytes):
    """The value, or ValueError if `data` is not plain data of this encoding."""
    try:
        value = json.loads(data, object_hook=_hook)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not plain data: {exc}") from None
    if not is_plain(value):
        raise ValueError("not plain data (a float, or another type)")
    return value
