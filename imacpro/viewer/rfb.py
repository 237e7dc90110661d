"""The RFB protocol (RFC 6143, version 3.8), server side: one client's session, as a state
machine over bytes, so that the socket, the screen and the input are someone else's.

    handshake   "RFB 003.008\\n" both ways (3.7 accepted too); security types: VNC
                authentication (2) when the session has a password, else None (1); the
                security result with its reason (3.8); ClientInit; ServerInit with the
                screen's size, our pixel format and the machine's name
    client      SetPixelFormat (0), SetEncodings (2), FramebufferUpdateRequest (3),
                KeyEvent (4), PointerEvent (5), ClientCutText (6, read and ignored)
    server      FramebufferUpdate (0): Raw (0) or zlib (6) rectangles, CopyRect (1) when the
                caller says a part moved, DesktopSize (-223) when the screen's size changes

Pixels come from `screen.region(x, y, w, h)`: XRGB8888 as a (h, w) uint32 array. They go out
in the pixel format the client asked for (true colour of 8, 16 or 32 bits, either byte
order, any channel maxima and shifts; colour maps are refused). The session sends an update
only while the client has a request outstanding, as the protocol asks; `changed(rects)`
collects what to send meanwhile.

Why write this at all: the Python RFB servers on PyPI are test doubles or unmaintained, and
this one is the machine's: a hostile client's bytes (lengths, counts, sizes) are checked
before anything is allocated or sent, and a violation ends the session (RfbError), never the
machine.

VNC authentication is DES of a 16-byte challenge with the password's first 8 bytes as the
key, each byte's bits reversed (RFC 6143 §7.2.2; DES itself from `cryptography`).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

VERSION = b"RFB 003.008\n"
ACCEPTED_VERSIONS = (b"RFB 003.008\n", b"RFB 003.007\n")
SECURITY_NONE, SECURITY_VNC = 1, 2
RAW, COPYRECT, ZLIB, DESKTOP_SIZE = 0, 1, 6, -223
MAX_CUT_TEXT = 1 << 20                  # what a client may paste at once
MAX_ENCODINGS = 1024


class RfbError(Exception):
    """The client broke the protocol: the session ends."""


@dataclass(frozen=True)
class PixelFormat:
    bits: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    STRUCT = struct.Struct(">BBBBHHHBBB3x")

    def pack(self) -> bytes:
        return self.STRUCT.pack(self.bits, self.depth, self.big_endian, self.true_colour,
                                self.red_max, self.green_max, self.blue_max,
                                self.red_shift, self.green_shift, self.blue_shift)

    @classmethod
    def unpack(cls, raw: bytes) -> PixelFormat:
        bits, depth, big, true, rm, gm, bm, rs, gs, bs = cls.STRUCT.unpack(raw)
        if bits not in (8, 16, 32):
            raise RfbError(f"{bits} bits per pixel: only 8, 16 and 32 exist")
        if not true:
            raise RfbError("colour maps are not supported: ask for true colour")
        for maximum, shift in ((rm, rs), (gm, gs), (bm, bs)):
            if maximum == 0 or maximum & (maximum + 1) or shift + maximum.bit_length() > bits:
                raise RfbError("a channel's maximum and shift do not fit the pixel")
        return cls(bits, depth, bool(big), True, rm, gm, bm, rs, gs, bs)

    def encode(self, xrgb: np.ndarray) -> bytes:
        """XRGB8888 pixels in this format."""
        if self == PixelFormat():
            return xrgb.astype("<u4", copy=False).tobytes()
        if self.bits == 32 and (self.red_max, self.green_max, self.blue_max) == (255,) * 3 \
                and (self.red_shift, self.green_shift, self.blue_shift) == (0, 8, 16):
            # noVNC's: the bytes R, G, B, 0, which are XRGB's bytes (B, G, R, X) reversed
            # and moved down one.
            swapped = xrgb.astype(np.uint32).byteswap()
            swapped >>= 8
            return swapped.astype(">u4" if self.big_endian else "<u4", copy=False).tobytes()
        if self.bits == 32 and (self.red_max, self.green_max, self.blue_max) == (255,) * 3:
            # 8-bit channels moved to other bytes (noVNC asks for red in the lowest):
            # shifts only, no scaling.
            px = xrgb.astype(np.uint32, copy=False)
            out = ((px >> 16 & 0xFF) << self.red_shift) | ((px >> 8 & 0xFF) << self.green_shift) \
                | ((px & 0xFF) << self.blue_shift)
            return out.astype(">u4" if self.big_endian else "<u4", copy=False).tobytes()
        px = xrgb.astype(np.uint32)
        out = np.zeros(px.shape, dtype=np.uint32)
        for shift_in, maximum, shift in ((16, self.red_max, self.red_shift),
                                         (8, self.green_max, self.green_shift),
                                         (0, self.blue_max, self.blue_shift)):
            channel = (px >> shift_in) & 0xFF
            out |= ((channel * maximum + 127) // 255) << shift
        kind = {8: "u1", 16: "u2", 32: "u4"}[self.bits]
        return out.astype((">" if self.big_endian else "<") + kind).tobytes()


def vnc_response(challenge: bytes, password: str) -> bytes:
    """What a client answers to `challenge` knowing `password` (RFC 6143 §7.2.2)."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode()[:8].ljust(8, b"\0"))
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()   # K, K, K: DES
    return encryptor.update(challenge) + encryptor.finalize()


class RfbSession:
    """One client. Feed it what the client sent (`receive`); send what it queued
    (`outgoing`). `screen` has width, height and region(x, y, w, h); `keys(keysym, down)`
    and `pointer(x, y, buttons)` take the client's input."""

    def __init__(self, screen, keys, pointer, name: str, password: str | None = None):
        self.screen, self.keys, self.pointer = screen, keys, pointer
        self.name = name
        self.password = password
        self.outgoing = bytearray(VERSION)
        self._inbox = bytearray()
        self._state = "version"
        self._challenge = b""
        self.format = PixelFormat()
        self.encodings: list[int] = [RAW]
        self.request: tuple[bool, int, int, int, int] | None = None
        self.pending: list[tuple[int, int, int, int]] = []
        self._copies: list[tuple[int, int, int, int, int, int]] = []
        self._zlib = zlib.compressobj(1)
        self._size = (screen.width, screen.height)
        self.authenticated = False

    # --- input ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        self._inbox += data
        while self._step():
            pass

    def _take(self, n: int) -> bytes | None:
        if len(self._inbox) < n:
            return None
        out = bytes(self._inbox[:n])
        del self._inbox[:n]
        return out

    def _peek(self, n: int) -> bytes | None:
        return bytes(self._inbox[:n]) if len(self._inbox) >= n else None

    def _step(self) -> bool:
        handler = getattr(self, f"_on_{self._state}")
        return handler()

    def _on_version(self) -> bool:
        version = self._take(12)
        if version is None:
            return False
        if version not in ACCEPTED_VERSIONS:
            raise RfbError(f"protocol version {version!r} is not 3.7 or 3.8")
        self._security = SECURITY_VNC if self.password is not None else SECURITY_NONE
        self.outgoing += bytes((1, self._security))
        self._state = "security"
        return True

    def _on_security(self) -> bool:
        chosen = self._take(1)
        if chosen is None:
            return False
        if chosen[0] != self._security:
            raise RfbError(f"security type {chosen[0]} was not offered")
        if self._security == SECURITY_VNC:
            self._challenge = os.urandom(16)
            self.outgoing += self._challenge
            self._state = "response"
        else:
            self.outgoing += struct.pack(">I", 0)
            self.authenticated = True
            self._state = "client_init"
        return True

    def _on_response(self) -> bool:
        response = self._take(16)
        if response is None:
            return False
        if response != vnc_response(self._challenge, self.password):
            reason = b"authentication failed"
            self.outgoing += struct.pack(">II", 1, len(reason)) + reason
            raise RfbError("wrong password")
        self.outgoing += struct.pack(">I", 0)
        self.authenticated = True
        self._state = "client_init"
        return True

    def _on_client_init(self) -> bool:
        if self._take(1) is None:                         # the shared flag: all share
            return False
        name = self.name.encode()
        self.outgoing += struct.pack(">HH", self.screen.width, self.screen.height) + \
            self.format.pack() + struct.pack(">I", len(name)) + name
        self._state = "messages"
        return True

    def _on_messages(self) -> bool:
        kind = self._peek(1)
        if kind is None:
            return False
        handler = {0: self._set_pixel_format, 2: self._set_encodings,
                   3: self._update_request, 4: self._key, 5: self._pointer,
                   6: self._cut_text}.get(kind[0])
        if handler is None:
            raise RfbError(f"unknown client message {kind[0]}")
        return handler()

    def _set_pixel_format(self) -> bool:
        raw = self._take(20)
        if raw is None:
            return False
        self.format = PixelFormat.unpack(raw[4:])
        return True

    def _set_encodings(self) -> bool:
        head = self._peek(4)
        if head is None:
            return False
        count = struct.unpack(">H", head[2:])[0]
        if count > MAX_ENCODINGS:
            raise RfbError(f"{count} encodings")
        raw = self._take(4 + 4 * count)
        if raw is None:
            return False
        self.encodings = list(struct.unpack(f">{count}i", raw[4:]))
        return True

    def _update_request(self) -> bool:
        raw = self._take(10)
        if raw is None:
            return False
        incremental, x, y, w, h = struct.unpack(">BHHHH", raw[1:])
        self.request = (bool(incremental), x, y, w, h)
        if not incremental:
            self.pending.append((x, y, w, h))
        self.flush()
        return True

    def _key(self) -> bool:
        raw = self._take(8)
        if raw is None:
            return False
        down, keysym = struct.unpack(">B2xI", raw[1:])
        self.keys(keysym, bool(down))
        return True

    def _pointer(self) -> bool:
        raw = self._take(6)
        if raw is None:
            return False
        buttons, x, y = struct.unpack(">BHH", raw[1:])
        self.pointer(min(x, self.screen.width - 1), min(y, self.screen.height - 1), buttons)
        return True

    def _cut_text(self) -> bool:
        head = self._peek(8)
        if head is None:
            return False
        length = struct.unpack(">I", head[4:])[0]
        if length > MAX_CUT_TEXT:
            raise RfbError(f"{length} bytes of cut text")
        return self._take(8 + length) is not None

    # --- output ---------------------------------------------------------------------------

    def changed(self, rects: list[tuple[int, int, int, int]],
                copies: list[tuple[int, int, int, int, int, int]] = ()) -> None:
        """Parts of the screen that changed, sent with the next update. `copies` (x, y, w,
        h, from_x, from_y) moved a part of the picture the client has (a scroll): they go
        first as CopyRect when the client takes it and is waiting for an update, so that
        its picture is the one they were found on; otherwise they are changes too."""
        if copies and COPYRECT in self.encodings and self.request is not None \
                and self._state == "messages" and not self._resized():
            self._copies += copies
        else:
            self.pending += [copy[:4] for copy in copies]
        self.pending += rects
        self.flush()

    def flush(self) -> None:
        """Send an update if the client asked for one and something is to be sent."""
        if self.request is None or self._state != "messages":
            return
        if self._resized() and DESKTOP_SIZE in self.encodings:
            self._size = (self.screen.width, self.screen.height)
            self.pending, self._copies = [(0, 0, *self._size)], []
            self.outgoing += struct.pack(">BxH", 0, 1) + \
                struct.pack(">HHHHi", 0, 0, *self._size, DESKTOP_SIZE)
            self.request = None
            return
        rects = self._clip(self.pending)
        copies, self._copies = self._copies, []
        if not rects and not copies:
            return
        self.pending, self.request = [], None
        body = bytearray()
        for x, y, w, h, from_x, from_y in copies:
            body += struct.pack(">HHHHiHH", x, y, w, h, COPYRECT, from_x, from_y)
        for x, y, w, h in rects:
            body += self._rect(x, y, w, h)
        self.outgoing += struct.pack(">BxH", 0, len(copies) + len(rects)) + body

    def _resized(self) -> bool:
        return (self.screen.width, self.screen.height) != self._size

    def _clip(self, rects) -> list[tuple[int, int, int, int]]:
        """The rectangles inside the request and the screen, those of the same columns
        that touch or overlap merged (changes pile up while the client is not asking)."""
        _, rx, ry, rw, rh = self.request
        width, height = self.screen.width, self.screen.height
        clipped = []
        for x, y, w, h in rects:
            x0, y0 = max(x, rx, 0), max(y, ry, 0)
            x1, y1 = min(x + w, rx + rw, width), min(y + h, ry + rh, height)
            if x1 > x0 and y1 > y0:
                clipped.append((x0, x1, y0, y1))
        out: list[tuple[int, int, int, int]] = []
        for x0, x1, y0, y1 in sorted(clipped):
            if out and out[-1][0] == x0 and out[-1][2] == x1 - x0 and y0 <= out[-1][1] + \
                    out[-1][3]:
                px, py, pw, ph = out[-1]
                out[-1] = (px, py, pw, max(py + ph, y1) - py)
            else:
                out.append((x0, y0, x1 - x0, y1 - y0))
        return out

    def _rect(self, x: int, y: int, w: int, h: int) -> bytes:
        data = self.format.encode(self.screen.region(x, y, w, h))
        if ZLIB in self.encodings:
            packed = self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            return struct.pack(">HHHHiI", x, y, w, h, ZLIB, len(packed)) + packed
        return struct.pack(">HHHHi", x, y, w, h, RAW) + data
