"""The screen feed: the dirty log's bands narrowed to the pixels that differ from what was
given out, scrolls found and given as copies, and RFB sessions that send those copies first
as CopyRect, or as changes to a client that does not take them."""

import struct

import numpy as np
import pytest

from imacpro.devices.display.framebuffer import Mode
from imacpro.viewer import rfb, screen
from tests.viewer.test_rfb import connect, take


class Aperture:
    def __init__(self, mode):
        self.view = memoryview(bytearray(mode.size))


class Timer:
    def arm(self, deadline_ns):
        self.deadline_ns = deadline_ns

    def cancel(self):
        self.deadline_ns = None


class Clock:
    def timer(self, callback):
        return Timer()

    def now_ns(self):
        return 0


class Machine:
    def __init__(self, mode):
        self.display_mode = mode
        self.devices = {"gpu": type("Gpu", (), {"aperture": Aperture(mode)})()}
        self.clock = Clock()

    @property
    def pixels(self):
        mode = self.display_mode
        return np.frombuffer(self.devices["gpu"].aperture.view, dtype="<u4").reshape(
            mode.height, mode.width)


class Changes:
    """The dirty log as the test says it is: the bands it gives next."""
    def __init__(self, machine):
        self.next = []

    def bands(self, mode):
        bands, self.next = self.next, []
        return bands


@pytest.fixture
def feed(monkeypatch):
    monkeypatch.setattr(screen, "ScreenChanges", Changes)
    machine = Machine(Mode("test", 320, 256, 8))
    feed = screen.ScreenFeed(machine)
    return feed, machine


def text_lines(rng, rows, width, line=16):
    """A console's picture: lines of 'text' (random pixels) with blank gaps."""
    picture = np.zeros((rows, width), dtype=np.uint32)
    for top in range(0, rows, line):
        picture[top:top + line - 4] = rng.integers(1, 1 << 24, size=(line - 4, width))
    return picture


def test_a_band_is_narrowed_to_the_pixels_that_differ(feed):
    feed, machine = feed
    feed.changes.next = [(0, 256)]
    assert feed.look().rects == [(0, 0, 320, 256)]         # the first look: bands whole
    machine.pixels[40:43, 100:110] = 0xABCDEF
    feed.changes.next = [(32, 64)]                          # the log names whole rows
    update = feed.look()
    assert update.copies == [] and update.rects == [(100, 40, 10, 3)]
    feed.changes.next = [(0, 256)]                          # written, but the same again
    assert not feed.look()


def test_a_scroll_is_a_copy_then_the_new_lines(feed):
    feed, machine = feed
    rng = np.random.default_rng(2)
    machine.pixels[:] = text_lines(rng, 256, 320)
    feed.changes.next = [(0, 256)]
    feed.look()
    before = machine.pixels.copy()
    machine.pixels[:-16] = before[16:]                     # up one line of 16 rows
    machine.pixels[-16:] = text_lines(rng, 16, 320)        # and a new one at the bottom
    feed.changes.next = [(0, 256)]
    update = feed.look()
    assert update.copies == [(0, 0, 320, 240, 0, 16)]
    assert update.rects == [(0, 240, 320, 12)]             # only the new line's text
    assert np.array_equal(feed.shown, machine.pixels)

    for _ in range(3):                                      # again and again, as consoles do
        machine.pixels[:-16] = machine.pixels[16:].copy()
        machine.pixels[-16:] = text_lines(rng, 16, 320)
        feed.changes.next = [(0, 256)]
        update = feed.look()
        assert update.copies == [(0, 0, 320, 240, 0, 16)]
        assert update.rects == [(0, 240, 320, 12)]

    machine.pixels[16:] = machine.pixels[:-16].copy()      # down a line: the other way
    machine.pixels[:16] = 0
    feed.changes.next = [(0, 256)]
    update = feed.look()
    assert update.copies == [(0, 16, 320, 240, 0, 0)]
    assert update.rects == [(0, 0, 320, 12)]


def test_a_scroll_caught_halfway_is_a_copy_of_what_moved_so_far(feed):
    feed, machine = feed
    rng = np.random.default_rng(4)
    machine.pixels[:] = text_lines(rng, 256, 320)
    feed.changes.next = [(0, 256)]
    feed.look()
    before = machine.pixels.copy()
    machine.pixels[:128] = before[16:144]                  # the guest's memmove, half done
    feed.changes.next = [(0, 256)]
    update = feed.look()
    assert update.copies == [(0, 0, 320, 128, 0, 16)] and update.rects == []


def test_clients_are_given_the_picture_the_feed_compares_with(feed):
    feed, machine = feed
    machine.pixels[0, :4] = [0x10, 0x20, 0x30, 0x40]
    feed.changes.next = [(0, 256)]
    feed.look()
    machine.pixels[0, :4] = 0                              # drawn on since: not given yet
    assert feed.region(0, 0, 4, 1).tolist() == [[0x10, 0x20, 0x30, 0x40]]
    feed.changes.next = [(0, 1)]
    assert feed.look().rects == [(0, 0, 4, 1)]
    assert feed.region(0, 0, 4, 1).tolist() == [[0, 0, 0, 0]]


def test_ten_bit_channels_are_given_as_their_top_eight_bits(monkeypatch):
    monkeypatch.setattr(screen, "ScreenChanges", Changes)
    machine = Machine(Mode("deep", 64, 32, 10))
    machine.pixels[0, 0] = (0x3FF << 20) | (0x201 << 10) | 0x0FF
    feed = screen.ScreenFeed(machine)
    feed.add(object())
    assert hex(int(feed.region(0, 0, 1, 1)[0, 0])) == hex(0xFF803F)


def test_text_whose_rows_repeat_still_names_the_distance_it_scrolled(feed):
    feed, machine = feed
    rng = np.random.default_rng(5)
    stroke = rng.integers(1, 1 << 24, size=(6, 320), dtype=np.uint32)

    def lines(count):
        picture = text_lines(rng, 16 * count, 320)
        for top in range(0, 16 * count, 16):
            picture[top:top + 6] = stroke          # the same first rows on every line
        return picture
    machine.pixels[:] = lines(16)
    feed.changes.next = [(0, 256)]
    feed.look()
    machine.pixels[:-80] = machine.pixels[80:].copy()      # five lines at once
    machine.pixels[-80:] = lines(5)
    feed.changes.next = [(0, 256)]
    update = feed.look()
    assert update.copies == [(0, 0, 320, 176, 0, 80)]
    assert np.array_equal(feed.shown, machine.pixels)


def test_what_only_looks_like_a_scroll_is_sent(feed):
    feed, machine = feed
    rng = np.random.default_rng(3)
    machine.pixels[:] = text_lines(rng, 256, 320)
    feed.changes.next = [(0, 256)]
    feed.look()
    machine.pixels[:] = text_lines(rng, 256, 320)          # a new picture altogether
    feed.changes.next = [(0, 256)]
    update = feed.look()
    assert update.copies == [] and update.rects == [(0, 0, 320, 252)]


class Screen:
    def __init__(self, pixels):
        self.pixels = pixels
        self.height, self.width = pixels.shape

    def region(self, x, y, w, h):
        return self.pixels[y:y + h, x:x + w]


def update_request(incremental=1, w=64, h=48):
    return struct.pack(">BBHHHH", 3, incremental, 0, 0, w, h)


def test_copies_go_first_as_copyrect_to_a_client_that_takes_them():
    pixels = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64)
    session = rfb.RfbSession(Screen(pixels), lambda *a: None, lambda *a: None, "pro")
    connect(session)
    session.receive(struct.pack(">BxHii", 2, 2, rfb.COPYRECT, rfb.RAW))
    session.receive(update_request())
    session.changed([(0, 40, 64, 8)], copies=[(0, 0, 64, 40, 0, 8)])
    kind, count = struct.unpack(">BxH", take(session, 4))
    assert (kind, count) == (0, 2)
    assert struct.unpack(">HHHHiHH", take(session, 16)) == (0, 0, 64, 40, rfb.COPYRECT, 0, 8)
    assert struct.unpack(">HHHHi", take(session, 12)) == (0, 40, 64, 8, rfb.RAW)
    assert take(session, 64 * 8 * 4) == pixels[40:48].astype("<u4").tobytes()
    assert not session.outgoing


def test_copies_are_changes_to_a_client_without_copyrect_or_not_waiting():
    pixels = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64)
    session = rfb.RfbSession(Screen(pixels), lambda *a: None, lambda *a: None, "pro")
    connect(session)
    session.changed([], copies=[(0, 0, 64, 40, 0, 8)])     # no request outstanding
    session.receive(update_request())
    kind, count = struct.unpack(">BxH", take(session, 4))
    assert count == 1
    assert struct.unpack(">HHHHi", take(session, 12)) == (0, 0, 64, 40, rfb.RAW)


def test_novncs_pixel_format_is_the_channels_moved():
    novnc = rfb.PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)
    xrgb = np.array([[0x123456, 0xFF0080]], dtype=np.uint32)
    assert novnc.encode(xrgb) == np.array([0x563412, 0x8000FF], dtype="<u4").tobytes()
