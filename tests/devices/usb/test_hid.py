"""HID class, Magic Keyboard, keymap, Magic Mouse 2 and Magic Trackpad 2: descriptors as a
host parses them, class requests, the report queue, the bytes hid-apple and hid-magicmouse
read, saved state."""

import pytest

from imacpro.devices.contract import StateError, is_plain
from imacpro.devices.usb import hid, keymap
from imacpro.devices.usb.device import FULL, Identity, Setup, Stall
from imacpro.devices.usb.keyboard import MagicKeyboard
from imacpro.devices.usb.pointer import MagicMouse2, MagicTrackpad2

# --- a host's side --------------------------------------------------------------------------


def request(dev, request_type, req, value=0, index=0, length=0, data=b""):
    return dev.control(Setup(request_type, req, value, index, length), data)


def configure(dev):
    dev.reset()
    request(dev, 0x00, 5, 1)                       # SET_ADDRESS 1
    request(dev, 0x00, 9, 1)                       # SET_CONFIGURATION 1
    return dev


def get_report(dev, kind, report_id, length=64):
    return request(dev, 0xA1, hid.GET_REPORT, kind << 8 | report_id, 0, length)


def set_report(dev, kind, report_id, data):
    return request(dev, 0x21, hid.SET_REPORT, kind << 8 | report_id, 0, len(data), data)


def set_protocol(dev, protocol):
    request(dev, 0x21, hid.SET_PROTOCOL, protocol)


def drain(dev):
    reports = []
    while (report := dev.data_in(0x81, 64)) is not None:
        reports.append(report)
    return reports


def walk_configuration(blob):
    """[(type, bytes)] of a configuration descriptor, checking each length."""
    out, offset = [], 0
    while offset < len(blob):
        length = blob[offset]
        assert length >= 2 and offset + length <= len(blob)
        out.append((blob[offset + 1], blob[offset:offset + length]))
        offset += length
    return out


def parse_report_descriptor(blob):
    """A small HID 1.11 §6.2.2 item walker: the main items as fields, each with its report
    type, ID, bit offset (after the ID), size, count, usage page, usages, flags, logical
    range; and each report's length in bits. Collections must balance."""
    glob = {"page": 0, "lmin": 0, "lmax": 0, "size": 0, "count": 0, "id": 0}
    usages, ranges, depth, fields, bits = [], [], 0, [], {}
    offset = 0
    while offset < len(blob):
        prefix = blob[offset]
        assert prefix != 0xFE, "no long items"
        size = (0, 1, 2, 4)[prefix & 3]
        raw = int.from_bytes(blob[offset + 1:offset + 1 + size], "little")
        signed = raw - (1 << 8 * size) if size and raw >> (8 * size - 1) else raw
        kind, tag = prefix >> 2 & 3, prefix >> 4
        offset += 1 + size
        assert offset <= len(blob)
        if kind == 0:                                    # main
            if tag == 0xA:
                depth += 1
            elif tag == 0xC:
                depth -= 1
                assert depth >= 0
            elif tag in (0x8, 0x9, 0xB):
                report = {0x8: "input", 0x9: "output", 0xB: "feature"}[tag]
                key = (report, glob["id"])
                full = [u if u > 0xFFFF else glob["page"] << 16 | u for u in usages]
                for low, high in ranges:
                    full += [glob["page"] << 16 | u for u in range(low, high + 1)]
                fields.append({"report": report, "id": glob["id"], "offset": bits.get(key, 0),
                               "size": glob["size"], "count": glob["count"],
                               "page": glob["page"], "usages": full, "flags": raw,
                               "lmin": glob["lmin"], "lmax": glob["lmax"]})
                bits[key] = bits.get(key, 0) + glob["size"] * glob["count"]
            usages, ranges = [], []
        elif kind == 1:                                  # global
            name = {0: "page", 1: "lmin", 2: "lmax", 7: "size", 8: "id", 9: "count"}.get(tag)
            assert name, f"unexpected global item {tag:#x}"
            glob[name] = signed if name in ("lmin",) else raw
            if name == "lmax" and glob["lmin"] < 0:
                glob["lmax"] = signed
        elif kind == 2:                                  # local
            if tag == 0:
                usages.append(raw)
            elif tag == 1:
                ranges.append([raw, None])
            elif tag == 2:
                ranges[-1][1] = raw
    assert depth == 0
    return fields, bits


def field(fields, report, report_id, usage, offset=None):
    found = [f for f in fields if f["report"] == report and f["id"] == report_id
             and usage in f["usages"] and offset in (None, f["offset"])]
    assert len(found) == 1, (report, report_id, hex(usage))
    return found[0]


def sign(value, bits):
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


# --- descriptors ----------------------------------------------------------------------------


@pytest.mark.parametrize("make, subclass, protocol", [
    (MagicKeyboard, 1, 1), (MagicMouse2, 1, 2), (MagicTrackpad2, 1, 2)])
def test_configuration_descriptor_carries_the_hid_descriptor(make, subclass, protocol):
    dev = configure(make())
    config = request(dev, 0x80, 6, 0x0200, 0, 255)
    items = walk_configuration(config)
    assert [kind for kind, _ in items] == [2, 4, 0x21, 5]
    assert int.from_bytes(config[2:4], "little") == len(config)
    interface, hid_desc, endpoint = items[1][1], items[2][1], items[3][1]
    assert interface[4] == 1 and interface[5:8] == bytes((3, subclass, protocol))
    report = request(dev, 0x81, 6, 0x2200, 0, 1024)
    assert report == dev.report_descriptor
    assert hid_desc[0] == 9 and hid_desc[5:7] == b"\x01\x22"
    assert int.from_bytes(hid_desc[7:9], "little") == len(report)
    assert request(dev, 0x81, 6, 0x2100, 0, 9) == hid_desc
    assert endpoint[2] == 0x81 and endpoint[3] == 3     # interrupt IN
    with pytest.raises(Stall):
        request(dev, 0x81, 6, 0x2200, 1, 1024)           # no interface 1


def test_keyboard_identity_and_hid_descriptor_bytes():
    dev = configure(MagicKeyboard())
    device = request(dev, 0x80, 6, 0x0100, 0, 18)
    assert device[8:12] == bytes((0xAC, 0x05, 0x6C, 0x02))
    assert dev.speed == FULL
    product = request(dev, 0x80, 6, 0x0300 | device[15], 0x409, 255)
    assert product[2:].decode("utf-16-le") == "Magic Keyboard with Numeric Keypad"
    manufacturer = request(dev, 0x80, 6, 0x0300 | device[14], 0x409, 255)
    assert manufacturer[2:].decode("utf-16-le") == "Apple Inc."
    length = len(dev.report_descriptor)
    assert dev.interfaces[0].extra == bytes((9, 0x21, 0x10, 0x01, 33, 1, 0x22, length, 0))


def test_keyboard_report_descriptor_matches_hid_apple():
    desc = MagicKeyboard().report_descriptor
    fields, bits = parse_report_descriptor(desc)
    assert bits == {("input", 1): 72, ("output", 1): 8}
    modifiers = field(fields, "input", 1, 0x000700E0, offset=0)
    assert (modifiers["offset"], modifiers["size"], modifiers["count"]) == (0, 1, 8)
    assert modifiers["usages"] == [0x00070000 | u for u in range(0xE0, 0xE8)]
    keys = field(fields, "input", 1, 0x00070004)
    assert (keys["offset"], keys["size"], keys["count"], keys["flags"] & 2) == (16, 8, 6, 0)
    assert keys["lmax"] == 255
    fn = field(fields, "input", 1, keymap.FN)               # HID_UP_CUSTOM | 0x0003
    assert (fn["offset"], fn["size"], fn["count"], fn["flags"] & 3) == (64, 1, 1, 2)
    leds = field(fields, "output", 1, 0x00080001)
    assert (leds["offset"], leds["count"]) == (0, 5)
    # apple_report_fixup's rewrites must not fire on it.
    assert len(desc) != 83
    assert not (len(desc) >= 71 and desc[64] == 0x65 and desc[70] == 0x65)


def test_mouse_report_descriptor_describes_hid_magicmouse_bytes():
    fields, bits = parse_report_descriptor(MagicMouse2().report_descriptor)
    assert bits == {("input", 0x12): 21 * 8}                # 22 bytes with the ID: 14 + 8
    buttons = field(fields, "input", 0x12, 0x00090001)
    assert buttons["usages"] == [0x00090001, 0x00090002]
    assert (buttons["offset"], buttons["count"]) == (0, 2)
    x, y = field(fields, "input", 0x12, 0x00010030), field(fields, "input", 0x12, 0x00010031)
    assert x is y and (x["offset"], x["size"], x["count"]) == (8, 16, 2)
    assert x["flags"] & 4 and x["lmin"] == -32767            # relative, signed
    wheel = field(fields, "input", 0x12, 0x00010038)
    assert (wheel["offset"], wheel["size"], wheel["flags"] & 4) == (40, 8, 4)


def test_trackpad_report_descriptor():
    fields, bits = parse_report_descriptor(MagicTrackpad2().report_descriptor)
    assert bits == {("input", 1): 48, ("input", 2): 47 * 8, ("feature", 2): 8}
    assert field(fields, "input", 1, 0x00010030)["flags"] & 4
    assert field(fields, "input", 2, 0xFF000002)["count"] == 47   # 12 + 9 * 4 with the ID


# --- keymap ---------------------------------------------------------------------------------


def test_every_printable_ascii_character_maps_to_a_stroke_and_back():
    text = "".join(map(chr, range(0x20, 0x7F))) + "\n\t\b"
    strokes = keymap.text_to_strokes(text)
    assert len(strokes) == len(text)
    for char, (modifiers, usage) in zip(text, strokes):
        assert modifiers <= {keymap.LEFT_SHIFT} and 0x04 <= usage <= 0x38
        assert keymap.stroke_to_text(modifiers, usage) == char
    table = dict(zip(text, strokes))
    shift = frozenset({keymap.LEFT_SHIFT})
    assert table["a"] == (frozenset(), 0x04) and table["Z"] == (shift, 0x1D)
    assert table["0"] == (frozenset(), 0x27) and table["!"] == (shift, 0x1E)
    assert table["~"] == (shift, 0x35) and table["|"] == (shift, 0x31)
    assert table[" "][1] == 0x2C and table["\n"][1] == 0x28 and table["\b"][1] == 0x2A
    assert table["?"] == (shift, 0x38) and table['"'] == (shift, 0x34)


@pytest.mark.parametrize("char", ["é", "\r", "\x00", "\x7f"])
def test_untypable_characters_raise(char):
    with pytest.raises(ValueError, match="cannot type"):
        keymap.text_to_strokes("ok" + char)


@pytest.mark.parametrize("combo, modifiers, usage", [
    ("ctrl+alt+f2", {0xE0, 0xE2}, 0x3B),
    ("Cmd+Shift+3", {0xE3, 0xE1}, 0x20),
    ("control+option+delete", {0xE0, 0xE2}, 0x4C),
    ("meta+space", {0xE3}, 0x2C),
    ("super+tab", {0xE3}, 0x2B),
    ("fn+left", {keymap.FN}, 0x50),
    ("ctrl+A", {0xE0}, 0x04),
    ("ctrl+!", {0xE0, 0xE1}, 0x1E),
    ("ctrl++", {0xE0, 0xE1}, 0x2E),
    ("+", {0xE1}, 0x2E),
    ("/", set(), 0x38),
    ("return", set(), 0x28), ("esc", set(), 0x29), ("backspace", set(), 0x2A),
    ("pageup", set(), 0x4B), ("pagedown", set(), 0x4E), ("home", set(), 0x4A),
    ("end", set(), 0x4D), ("insert", set(), 0x49), ("capslock", set(), 0x39),
    ("up", set(), 0x52), ("down", set(), 0x51), ("right", set(), 0x4F),
    ("f1", set(), 0x3A), ("f12", set(), 0x45), ("f13", set(), 0x68), ("f19", set(), 0x6E),
    ("kp0", set(), 0x62), ("kp1", set(), 0x59), ("kp9", set(), 0x61),
    ("kp_enter", set(), 0x58), ("kp_plus", set(), 0x57), ("kp_minus", set(), 0x56),
    ("kp_multiply", set(), 0x55), ("kp_divide", set(), 0x54), ("kp_dot", set(), 0x63),
    ("kp_equal", set(), 0x67), ("numlock", set(), 0x53), ("clear", set(), 0x53),
    ("cmd", set(), 0xE3), ("rshift+x", {0xE5}, 0x1B),
])
def test_combos_parse(combo, modifiers, usage):
    assert keymap.parse_combo(combo) == (frozenset(modifiers), usage)


@pytest.mark.parametrize("combo, token", [
    ("ctrl+foo", "foo"), ("a+b", "a"), ("ctrl+f25", "f25"), ("hyper+x", "hyper"),
    ("ctrl+", ""), ("", ""), ("ctrl+kp10", "kp10"),
])
def test_bad_combos_raise_naming_the_token(combo, token):
    with pytest.raises(ValueError) as info:
        keymap.parse_combo(combo)
    message = str(info.value)
    assert "\n" not in message
    assert (repr(token) in message) if token else ("empty" in message)


# --- keyboard reports -----------------------------------------------------------------------


def test_key_press_and_release_reports_exact_bytes():
    kbd = configure(MagicKeyboard())
    kbd.press(0x04)
    kbd.key_event(0xE1, True)
    kbd.release(0x04)
    kbd.key_event(0xE1, False)
    assert drain(kbd) == [bytes((1, 0, 0, 4, 0, 0, 0, 0, 0, 0)),
                          bytes((1, 2, 0, 4, 0, 0, 0, 0, 0, 0)),
                          bytes((1, 2, 0, 0, 0, 0, 0, 0, 0, 0)),
                          bytes((1,)) + bytes(9)]


def test_type_text_presses_shift_only_as_needed():
    kbd = configure(MagicKeyboard())
    kbd.type_text("Hi")
    assert [r.hex() for r in drain(kbd)] == [
        "01020000000000000000", "0102000b000000000000", "01020000000000000000",
        "01000000000000000000", "0100000c000000000000", "01000000000000000000"]
    kbd.send_combo("ctrl+alt+f2")
    assert [r[1:4].hex() for r in drain(kbd)] == [
        "010000", "050000", "05003b", "050000", "040000", "000000"]


def test_rollover_fn_and_bad_usages():
    kbd = configure(MagicKeyboard())
    kbd.press(*range(0x04, 0x0B))                  # seven keys: ErrorRollOver
    assert drain(kbd) == [bytes((1, 0, 0, 1, 1, 1, 1, 1, 1, 0))]
    kbd.release_all()
    kbd.press(keymap.FN, 0x50)
    assert drain(kbd) == [bytes((1,)) + bytes(9),
                          bytes((1, 0, 0, 0x50, 0, 0, 0, 0, 0, 1))]
    for bad in (0x00, 0x03, 0xE8, 0x100, -1, True):
        with pytest.raises(ValueError):
            kbd.press(bad)
    assert drain(kbd) == []


def test_nak_then_on_ready():
    kbd = configure(MagicKeyboard())
    ready = []
    kbd.on_ready = ready.append
    kbd.press(0x04)                                 # nobody waiting: no call
    assert ready == []
    assert kbd.data_in(0x81, 16) == bytes((1, 0, 0, 4, 0, 0, 0, 0, 0, 0))
    assert kbd.data_in(0x81, 16) is None            # NAK
    kbd.release(0x04)
    assert ready == [0x81]
    assert kbd.data_in(0x81, 16) == bytes((1,)) + bytes(9)
    kbd.press(0x05)
    assert ready == [0x81]                          # not waiting any more: no second call


def test_nothing_is_queued_before_configuration():
    kbd = MagicKeyboard()
    kbd.press(0x04)
    assert len(kbd.queue) == 0 and kbd.held.keys == [0x04]
    configure(kbd)
    with pytest.raises(Stall):
        request(MagicKeyboard(), 0xA1, hid.GET_IDLE, 0, 0, 1)   # not configured


def test_get_report_set_idle_leds_and_protocol():
    kbd = configure(MagicKeyboard())
    kbd.press(0xE0, 0x06)
    assert get_report(kbd, hid.INPUT, 1) == bytes((1, 1, 0, 6, 0, 0, 0, 0, 0, 0))
    assert len(kbd.queue) == 1                      # GET_REPORT does not dequeue
    with pytest.raises(Stall):
        get_report(kbd, hid.INPUT, 2)
    with pytest.raises(Stall):
        get_report(kbd, hid.FEATURE, 1)
    assert request(kbd, 0xA1, hid.GET_IDLE, 0, 0, 1) == bytes((125,))  # 500 ms default
    request(kbd, 0x21, hid.SET_IDLE, 0x0000)
    request(kbd, 0x21, hid.SET_IDLE, 25 << 8 | 1)
    assert request(kbd, 0xA1, hid.GET_IDLE, 1, 0, 1) == bytes((25,))
    assert request(kbd, 0xA1, hid.GET_IDLE, 0, 0, 1) == bytes((0,))
    set_report(kbd, hid.OUTPUT, 1, bytes((1, 0x02)))
    assert kbd.caps_lock and kbd.leds == 2
    with pytest.raises(Stall):
        set_report(kbd, hid.OUTPUT, 3, bytes((3, 0x02)))
    assert request(kbd, 0xA1, hid.GET_PROTOCOL, 0, 0, 1) == bytes((1,))
    set_protocol(kbd, 0)
    assert request(kbd, 0xA1, hid.GET_PROTOCOL, 0, 0, 1) == bytes((0,))
    with pytest.raises(Stall):
        set_protocol(kbd, 2)
    with pytest.raises(Stall):
        request(kbd, 0x41, hid.GET_REPORT, 0x0101, 0, 10)            # vendor: stall


def test_boot_protocol_reports():
    kbd = configure(MagicKeyboard())
    set_protocol(kbd, hid.BOOT_PROTOCOL)
    kbd.press(0xE1, 0x1E)
    assert drain(kbd) == [bytes((2, 0, 0x1E, 0, 0, 0, 0, 0))]
    assert get_report(kbd, hid.INPUT, 0) == bytes((2, 0, 0x1E, 0, 0, 0, 0, 0))
    set_report(kbd, hid.OUTPUT, 0, bytes((0x01,)))                    # boot LEDs: no ID
    assert kbd.leds == 1
    kbd.reset()                                     # a port reset: report protocol again
    configure(kbd)
    assert request(kbd, 0xA1, hid.GET_PROTOCOL, 0, 0, 1) == bytes((1,)) and kbd.leds == 0


class _Plain(hid.HidDevice):
    """A bare HID interface, no boot protocol, to test the queue by itself."""

    def __init__(self):
        super().__init__(Identity(0x1234, 0x5678, 1, "t", "t"), FULL, bytes((0xC0,)))


def test_protocol_requests_stall_on_a_non_boot_interface():
    dev = configure(_Plain())
    with pytest.raises(Stall):
        request(dev, 0xA1, hid.GET_PROTOCOL, 0, 0, 1)
    with pytest.raises(Stall):
        set_protocol(dev, 0)


def test_queue_drops_oldest_motion_never_state():
    dev = configure(_Plain())
    dev.queue_report(b"\x01state")
    for n in range(hid.MOTION_LIMIT + 8):
        dev.queue_report(bytes((2, n)), motion=True)
    dev.queue_report(b"\x01later")
    reports = drain(dev)
    assert reports[0] == b"\x01state" and reports[-1] == b"\x01later"
    assert reports[1:-1] == [bytes((2, n)) for n in range(8, hid.MOTION_LIMIT + 8)]
    for n in range(hid.QUEUE_LIMIT):
        dev.queue_report(bytes((3, n & 0xFF)))
    assert dev.room == 0
    dev.queue_report(b"\x02m", motion=True)        # no motion to drop but itself
    with pytest.raises(hid.QueueFull):
        dev.queue_report(b"\x01lost?")
    reports = drain(dev)
    assert len(reports) == hid.QUEUE_LIMIT and reports[-1] == bytes((3, 0xFF))


def test_keyboard_refuses_what_does_not_fit_before_changing_anything():
    kbd = configure(MagicKeyboard())
    for n in range(hid.QUEUE_LIMIT - 3):
        kbd.queue_report(bytes((1,)) + bytes(9))
    with pytest.raises(hid.QueueFull):
        kbd.type_text("A")                          # 4 reports, 3 places
    assert kbd.held.keys == [] and kbd.held.modifiers == 0 and kbd.room == 3
    kbd.type_text("a")
    assert kbd.room == 1


# --- Magic Mouse 2 --------------------------------------------------------------------------


def magicmouse_scroll(reports):
    """hid-magicmouse's emulate_scroll_wheel for one touch, on report 0x12 as its raw_event
    reads it (defaults: scroll_speed 32, no acceleration): (REL_WHEEL, REL_WHEEL_HI_RES)."""
    wheel = hires = 0
    touch = {}
    step, step_hr = (64 - 32) * 7, max((64 - 32) * 7 // 10, 1)
    for data in reports:
        assert data[0] == 0x12 and (len(data) == 8 or (len(data) - 14) % 8 == 0)
        for n in range((len(data) - 14) // 8 if len(data) > 8 else 0):
            t = data[14 + 8 * n:22 + 8 * n]
            y = -sign((t[1] >> 4) | t[2] << 4, 12)
            state = t[7] & 0xF0
            if state == 0x30:
                touch = {"y": y, "y_hr": y, "active": False}
            elif state == 0x40:
                dy = int((touch["y"] - y) / step)
                if dy:
                    touch["y"] -= dy * step
                    wheel += dy
                dy_hr = touch["y_hr"] - y
                if not touch["active"] and abs(dy_hr) > 90:
                    touch["active"], touch["y_hr"], dy_hr = True, y, 0
                dy_hr = int(dy_hr / step_hr)
                if dy_hr and touch["active"]:
                    touch["y_hr"] -= dy_hr * step_hr
                    hires += dy_hr * 12
    return wheel, hires


def rel(data):
    """(buttons, dx, dy, wheel) as hid-magicmouse (bytes 1-5) and the descriptor read it."""
    return data[1], sign(data[2] | data[3] << 8, 16), sign(data[4] | data[5] << 8, 16), \
        sign(data[6], 8)


def test_mouse_move_and_buttons_exact_bytes():
    mouse = configure(MagicMouse2())
    mouse.move(5, -3)
    assert drain(mouse) == [bytes((0x12, 0, 5, 0, 0xFD, 0xFF, 0, 0))]
    mouse.move(5, 0)
    mouse.move(3, 2)                                # unsent: added up, as a mouse does
    assert [rel(r) for r in drain(mouse)] == [(0, 8, 2, 0)]
    mouse.button("left", True)
    mouse.move(1, 1)
    mouse.button("right", True)
    mouse.button("left", False)
    mouse.button("right", False)
    assert [rel(r) for r in drain(mouse)] == [(1, 0, 0, 0), (1, 1, 1, 0), (3, 0, 0, 0),
                                              (2, 0, 0, 0), (0, 0, 0, 0)]
    mouse.move(40000, -70000)                       # int16 steps, in a straight line
    assert [rel(r) for r in drain(mouse)] == [
        (0, 13333, -23334, 0), (0, 13333, -23333, 0), (0, 13334, -23333, 0)]
    with pytest.raises(ValueError):
        mouse.button("middle", True)


@pytest.mark.parametrize("detents", [1, 3, 16, 17, -2, -40])
def test_mouse_scroll_is_a_stroke_hid_magicmouse_turns_into_wheel_detents(detents):
    mouse = configure(MagicMouse2())
    mouse.scroll(detents)
    reports = drain(mouse)
    assert magicmouse_scroll(reports) == (detents, 120 * detents)
    assert sum(rel(r)[3] for r in reports) == detents            # hid-generic's wheel
    assert all(rel(r)[:3] == (0, 0, 0) for r in reports)
    strokes = -(-abs(detents) // 16)
    assert len(reports) == abs(detents) + 3 * strokes
    assert all(len(r) == 22 for r in reports)
    states = [r[21] for r in reports]
    assert states.count(0x30) == strokes and states.count(0x00) == strokes
    assert all(r[19] & 0x3F >= 8 and r[19] >> 6 == 0 and r[20] == 0x80 for r in reports)


def test_mouse_boot_protocol():
    mouse = configure(MagicMouse2())
    set_protocol(mouse, hid.BOOT_PROTOCOL)
    mouse.move(300, -1)
    mouse.button("left", True)
    assert drain(mouse) == [bytes((0, 100, 0xFF, 0)), bytes((0, 100, 0, 0)),
                            bytes((0, 100, 0, 0)), bytes((1, 0, 0, 0))]
    mouse.scroll(-1)
    assert [r[3] for r in drain(mouse)] == [0, 0, 0xFF, 0]
    assert get_report(mouse, hid.INPUT, 0) == bytes((1, 0, 0, 0))


def test_mouse_acknowledges_the_multitouch_feature_report():
    mouse = configure(MagicMouse2())
    set_report(mouse, hid.FEATURE, 0xF1, bytes((0xF1, 0x02, 0x01)))
    with pytest.raises(Stall):
        set_report(mouse, hid.FEATURE, 0xD7, bytes((0xD7, 0x01)))


# --- Magic Trackpad 2 -----------------------------------------------------------------------


def touches(frame):
    """hid-magicmouse's TRACKPAD2_USB_REPORT_ID parse: (clicks, [(id, x, y, down)])."""
    assert frame[0] == 0x02 and (len(frame) - 12) % 9 == 0
    out = []
    for n in range((len(frame) - 12) // 9):
        t = frame[12 + 9 * n:21 + 9 * n]
        x = sign(t[0] | (t[1] & 0x1F) << 8, 13)
        y = -sign(t[1] >> 5 | t[2] << 3 | (t[3] & 3) << 11, 13)
        assert t[4] << 2 > 20 and t[4] << 2 < 800 and t[7] < 190   # libinput's quirks
        out.append((t[8] & 0xF, x, y, t[3] & 0xC0 == 0x80))
    return frame[1] & 1, out


def test_trackpad_mouse_mode_until_the_driver_switches_it():
    pad = configure(MagicTrackpad2())
    pad.move(10, -2)
    pad.button("right", True)
    pad.scroll(2)
    assert [r.hex() for r in drain(pad)] == ["01000a00feff00", "01020000000000",
                                             "01020000000002"]
    assert get_report(pad, hid.FEATURE, 2) == bytes((2, 0))
    set_report(pad, hid.FEATURE, 2, bytes((0x02, 0x01)))     # magicmouse_enable_multitouch
    assert pad.multitouch and get_report(pad, hid.FEATURE, 2) == bytes((2, 1))
    with pytest.raises(Stall):
        set_report(pad, hid.FEATURE, 0xF1, bytes((0xF1, 0x02, 0x01)))


def multitouch_pad():
    pad = configure(MagicTrackpad2())
    set_report(pad, hid.FEATURE, 2, bytes((0x02, 0x01)))
    return pad


def test_trackpad_move_is_a_one_finger_drag():
    pad = multitouch_pad()
    pad.move(100, -50)
    frames = [touches(f) for f in drain(pad)]
    assert frames == [(0, [(0, 0, 0, True)]), (0, [(0, 33, -17, True)]),
                      (0, [(0, 66, -34, True)]), (0, [(0, 100, -50, True)])]
    pad.move(-4000, 0)                              # past the middle region: lift, again
    frames = [touches(f) for f in drain(pad)]
    assert frames[0] == (0, [(0, 60, -50, True)])
    lift = frames.index((0, []))
    assert frames[lift - 1] == (0, [(0, -2980, -50, True)])
    assert frames[lift + 1] == (0, [(0, 0, 0, True)])
    assert frames[-1] == (0, [(0, -920, 0, True)]) and pad.fingers == [(-920, 0)]
    assert len(frames) == 100 + 2
    pad.lift()
    assert [touches(f) for f in drain(pad)] == [(0, [])]
    assert pad.input_report(2) == bytes((2,)) + bytes(11)


def test_trackpad_clicks_with_one_and_two_fingers():
    pad = multitouch_pad()
    pad.button("left", True)
    pad.button("left", False)
    assert [touches(f) for f in drain(pad)] == [
        (0, [(0, 0, 0, True)]), (1, [(0, 0, 0, True)]), (0, [(0, 0, 0, True)])]
    pad.button("right", True)
    pad.move(40, 0)                                 # a drag moves both fingers
    pad.button("right", False)
    assert [touches(f) for f in drain(pad)] == [
        (0, [(0, 0, 0, True), (1, 700, 0, True)]),
        (1, [(0, 0, 0, True), (1, 700, 0, True)]),
        (1, [(0, 40, 0, True), (1, 740, 0, True)]),
        (0, [(0, 40, 0, True), (1, 740, 0, True)]),
        (0, [(0, 40, 0, True)])]


def test_trackpad_scroll_is_a_two_finger_drag():
    pad = multitouch_pad()
    pad.move(1, 0)
    drain(pad)
    pad.scroll(2)
    frames = [touches(f) for f in drain(pad)]
    assert frames[0] == (0, []) and frames[-1] == (0, [])          # resting finger up first
    assert frames[1] == (0, [(0, -350, 1500, True), (1, 350, 1500, True)])
    assert frames[-2] == (0, [(0, -350, 1100, True), (1, 350, 1100, True)])
    steps = [f[1][0][2] for f in frames[1:-1]]
    assert all(0 < a - b <= 40 for a, b in zip(steps, steps[1:]))
    pad.button("left", True)
    with pytest.raises(ValueError):
        pad.scroll(1)


def test_trackpad_encodes_the_whole_surface():
    pad = multitouch_pad()
    for x, y in ((-3678, -2478), (3934, 2587), (-1, 1), (4095, 4095), (-4096, -4095)):
        _, [(_, dx, dy, down)] = touches(pad._frame([(x, y)]))
        assert (dx, dy, down) == (x, y, True)


def test_trackpad_boot_protocol_skips_touch_frames():
    pad = multitouch_pad()
    pad.move(10, 0)
    set_protocol(pad, hid.BOOT_PROTOCOL)
    assert drain(pad) == []
    pad.move(10, 0)
    assert drain(pad) == [bytes((0, 10, 0, 0))]


# --- saved state ----------------------------------------------------------------------------


def busy_keyboard():
    kbd = configure(MagicKeyboard())
    kbd.type_text("Hello")
    kbd.press(0xE3, 0x06)
    request(kbd, 0x21, hid.SET_IDLE, 0x0A03)
    set_report(kbd, hid.OUTPUT, 1, bytes((1, 3)))
    kbd.data_in(0x81, 16)
    return kbd


def test_keyboard_save_load_round_trip():
    kbd = busy_keyboard()
    state = kbd.save()
    assert is_plain(state)
    copy = MagicKeyboard()
    copy.load(state)
    assert copy.save() == state
    assert drain(copy) == drain(kbd)
    assert copy.held == kbd.held and copy.leds == 3


@pytest.mark.parametrize("key, value", [
    ("queue", [[b"", False]]), ("queue", [[b"\x01", 1]]), ("queue", "x"),
    ("queue", [[b"\x02", True]] * (hid.MOTION_LIMIT + 1)),
    ("idle", [[300, 1]]), ("protocol", 2), ("waiting", 0),
    ("keys", [0x03]), ("keys", [4, 4]), ("modifiers", 256), ("fn", 1), ("leds", 32),
])
def test_keyboard_bad_state_raises_and_changes_nothing(key, value):
    kbd = busy_keyboard()
    before = kbd.save()
    bad = dict(before, **{key: value})
    with pytest.raises(StateError):
        kbd.load(bad)
    assert kbd.save() == before
    missing = dict(before)
    del missing[key]
    with pytest.raises(StateError):
        kbd.load(missing)
    assert kbd.save() == before


def test_pointer_save_load_round_trip_and_bad_state():
    pad = multitouch_pad()
    pad.button("right", True)
    state = pad.save()
    copy = MagicTrackpad2()
    copy.load(state)
    assert copy.save() == state and copy.fingers == [(0, 0), (700, 0)]
    for key, value in (("fingers", [[5000, 0]]), ("fingers", [[0]] * 1), ("buttons", 4),
                       ("multitouch", None)):
        with pytest.raises(StateError):
            copy.load(dict(state, **{key: value}))
        assert copy.save() == state
    mouse = configure(MagicMouse2())
    mouse.button("left", True)
    mouse.move(3, 4)
    state = mouse.save()
    other = MagicMouse2()
    other.load(state)
    assert drain(other) == [bytes((0x12, 1, 0, 0, 0, 0, 0, 0)),
                            bytes((0x12, 1, 3, 0, 4, 0, 0, 0))]
    with pytest.raises(StateError):
        other.load(dict(state, protocol=0, buttons=9))
