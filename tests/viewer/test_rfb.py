"""The RFB session driven by a client written here from RFC 6143: handshake, both security
types, updates in raw and zlib in the client's pixel format, input, and hostile bytes."""

import struct
import zlib

import numpy as np
import pytest

from imacpro.viewer import rfb


class Screen:
    def __init__(self, width=64, height=48):
        self.width, self.height = width, height
        rng = np.random.default_rng(1)
        self.pixels = rng.integers(0, 1 << 24, size=(height, width), dtype=np.uint32)

    def region(self, x, y, w, h):
        return self.pixels[y:y + h, x:x + w]


def session(password=None, screen=None):
    events = []
    s = rfb.RfbSession(screen or Screen(), lambda k, d: events.append(("key", k, d)),
                       lambda x, y, b: events.append(("pointer", x, y, b)), "pro", password)
    return s, events


def take(s, n):
    out = bytes(s.outgoing[:n])
    del s.outgoing[:n]
    return out


def connect(s, password=None):
    assert take(s, 12) == b"RFB 003.008\n"
    s.receive(b"RFB 003.008\n")
    count, kind = take(s, 2)
    assert count == 1
    s.receive(bytes((kind,)))
    if kind == rfb.SECURITY_VNC:
        challenge = take(s, 16)
        s.receive(rfb.vnc_response(challenge, password))
    assert take(s, 4) == b"\0\0\0\0"
    s.receive(b"\x01")
    width, height = struct.unpack(">HH", take(s, 4))
    pixel_format = rfb.PixelFormat.unpack(take(s, 16))
    name = take(s, struct.unpack(">I", take(s, 4))[0])
    return width, height, pixel_format, name


def read_update(s):
    """The rectangles' headers of an update (for updates of one rectangle, or of
    DesktopSize, which has no data)."""
    kind, count = struct.unpack(">BxH", take(s, 4))
    assert kind == 0
    rects = []
    for _ in range(count):
        x, y, w, h, encoding = struct.unpack(">HHHHi", take(s, 12))
        rects.append((x, y, w, h, encoding))
    return rects


def test_handshake_without_a_password_and_a_raw_update():
    s, _ = session()
    width, height, pixel_format, name = connect(s)
    assert (width, height, name) == (64, 48, b"pro")
    assert pixel_format == rfb.PixelFormat()
    s.receive(struct.pack(">BBHHHH", 3, 0, 0, 0, 64, 48))       # the whole screen
    kind, count = struct.unpack(">BxH", take(s, 4))
    assert (kind, count) == (0, 1)
    assert struct.unpack(">HHHHi", take(s, 12)) == (0, 0, 64, 48, rfb.RAW)
    got = np.frombuffer(take(s, 64 * 48 * 4), dtype="<u4").reshape(48, 64)
    assert np.array_equal(got, s.screen.pixels)
    assert not s.outgoing


def test_vnc_authentication_takes_the_right_password_only():
    s, _ = session("sEcret12")
    assert connect(s, "sEcret12")[3] == b"pro"
    wrong, _ = session("sEcret12")
    take(wrong, 12)
    wrong.receive(b"RFB 003.008\n")
    take(wrong, 2)
    wrong.receive(bytes((rfb.SECURITY_VNC,)))
    challenge = take(wrong, 16)
    with pytest.raises(rfb.RfbError):
        wrong.receive(rfb.vnc_response(challenge, "guess"))
    assert take(wrong, 4) == b"\0\0\0\x01" and b"failed" in bytes(wrong.outgoing)


def test_incremental_updates_wait_for_changes_and_use_zlib_in_the_clients_format():
    s, _ = session()
    connect(s)
    bgr565 = rfb.PixelFormat(16, 16, True, True, 31, 63, 31, 0, 5, 11)
    s.receive(b"\0\0\0\0" + bgr565.pack())
    s.receive(struct.pack(">BxHi", 2, 1, rfb.ZLIB))
    s.receive(struct.pack(">BBHHHH", 3, 1, 0, 0, 64, 48))
    assert not s.outgoing                                     # nothing changed yet
    s.changed([(60, 40, 10, 10)])                            # clipped to the screen
    kind, count = struct.unpack(">BxH", take(s, 4))
    x, y, w, h, encoding, length = struct.unpack(">HHHHiI", take(s, 16))
    assert (count, x, y, w, h, encoding) == (1, 60, 40, 4, 8, rfb.ZLIB)
    raw = zlib.decompressobj().decompress(take(s, length))
    got = np.frombuffer(raw, dtype=">u2").reshape(8, 4)
    px = s.screen.pixels[40:48, 60:64]
    want = (((px >> 16 & 0xFF) * 31 + 127) // 255) | \
        (((px >> 8 & 0xFF) * 63 + 127) // 255) << 5 | (((px & 0xFF) * 31 + 127) // 255) << 11
    assert np.array_equal(got, want.astype(np.uint16))
    s.changed([(0, 0, 1, 1)])                                # no request outstanding
    assert not s.outgoing


def test_key_pointer_and_cut_text_reach_their_handlers():
    s, events = session()
    connect(s)
    s.receive(struct.pack(">BBxxI", 4, 1, 0x61) + struct.pack(">BBHH", 5, 1, 10, 500)
              + struct.pack(">BxxxI", 6, 5) + b"hello" + struct.pack(">BBxxI", 4, 0, 0x61))
    assert events == [("key", 0x61, True), ("pointer", 10, 47, 1), ("key", 0x61, False)]


def test_messages_split_anywhere_are_read_whole():
    s, events = session()
    connect(s)
    message = struct.pack(">BBxxI", 4, 1, 0xFF0D) * 3
    for byte in message:
        s.receive(bytes((byte,)))
    assert events == [("key", 0xFF0D, True)] * 3


@pytest.mark.parametrize("bad", [
    b"\x09",                                                 # no such message
    b"\x00\0\0\0" + rfb.PixelFormat(24).pack(),              # 24 bits per pixel
    b"\x00\0\0\0" + rfb.PixelFormat(true_colour=False).pack(),
    b"\x00\0\0\0" + rfb.PixelFormat(red_max=300).pack(),
    struct.pack(">BxH", 2, 5000),                            # too many encodings
    struct.pack(">BxxxI", 6, 1 << 30),                       # a gigabyte to paste
])
def test_hostile_clients_end_their_session(bad):
    s, _ = session()
    connect(s)
    with pytest.raises(rfb.RfbError):
        s.receive(bad)


def test_wrong_version_and_security_type_are_refused():
    s, _ = session()
    with pytest.raises(rfb.RfbError):
        s.receive(b"RFB 003.003\n")
    s, _ = session()
    s.receive(b"RFB 003.008\n")
    with pytest.raises(rfb.RfbError):
        s.receive(bytes((rfb.SECURITY_VNC,)))                # not offered


def test_a_resize_is_a_desktop_size_rectangle_then_the_whole_screen():
    screen = Screen()
    s, _ = session(screen=screen)
    connect(s)
    s.receive(struct.pack(">BxHii", 2, 2, rfb.RAW, rfb.DESKTOP_SIZE))
    s.receive(struct.pack(">BBHHHH", 3, 1, 0, 0, 64, 48))
    screen.width, screen.height = 32, 24
    screen.pixels = screen.pixels[:24, :32].copy()
    s.flush()
    assert read_update(s) == [(0, 0, 32, 24, rfb.DESKTOP_SIZE)]
    s.receive(struct.pack(">BBHHHH", 3, 1, 0, 0, 32, 24))
    assert read_update(s) == [(0, 0, 32, 24, rfb.RAW)]


def test_vnc_des_follows_the_protocols_bit_order():
    """A known answer: VNC's stored-password key (d3des bytes 23 82 107 6 35 78 88 7, which
    bit-reversed is DES key e84ad660c4721ae0) turns "password" into dbd83cfd727a1458, the
    value every VNC password file of "password" holds."""
    key = "".join(chr(b) for b in (23, 82, 107, 6, 35, 78, 88, 7))
    assert rfb.vnc_response(b"password" + bytes(8), key)[:8].hex() == "dbd83cfd727a1458"


def test_keysyms_name_the_keys_of_the_us_layout():
    from imacpro.devices.usb import keymap
    from imacpro.viewer.keysyms import usage
    assert usage(ord("a")) == usage(ord("A")) == 0x04
    assert usage(ord("!")) == usage(ord("1")) == 0x1E
    assert usage(ord("~")) == usage(ord("`")) == 0x35
    assert usage(0xFF0D) == keymap.ENTER and usage(0xFF08) == keymap.BACKSPACE
    assert usage(0xFFBE) == keymap.F1 and usage(0xFFC9) == keymap.F1 + 11
    assert usage(0xFFB5) == keymap.KEY_NAMES["kp5"] and usage(0xFF8D) == 0x58
    assert usage(0xFFE3) == keymap.LEFT_CTRL and usage(0xFFEB) == keymap.LEFT_GUI
    for char in map(chr, range(0x20, 0x7F)):
        assert usage(ord(char)) == keymap.TEXT[char][1]
    assert usage(0x20AC) is None and usage(0xE9) is None      # the euro sign, é: no key


def test_changes_that_pile_up_are_merged_into_one_rectangle_per_band():
    s, _ = session()
    connect(s)
    s.changed([(0, 10, 64, 5), (0, 12, 64, 6), (0, 10, 64, 5), (0, 30, 64, 2), (0, 18, 64, 1)])
    s.receive(struct.pack(">BBHHHH", 3, 1, 0, 0, 64, 48))
    kind, count = struct.unpack(">BxH", take(s, 4))
    rects = []
    for _ in range(count):
        x, y, w, h, encoding = struct.unpack(">HHHHi", take(s, 12))
        take(s, w * h * 4)
        rects.append((x, y, w, h))
    assert rects == [(0, 10, 64, 9), (0, 30, 64, 2)]
    assert not s.outgoing


def test_needs_shift_follows_the_layout():
    from imacpro.viewer.keysyms import needs_shift
    assert needs_shift(ord("A")) and needs_shift(ord("!")) and needs_shift(ord(">"))
    assert not needs_shift(ord("a")) and not needs_shift(ord(".")) and not needs_shift(0xFF0D)
