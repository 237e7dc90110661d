"""Apple's Magic Mouse 2 (05ac:0269) and Magic Trackpad 2 (05ac:0265) on their Lightning
cable, made for Linux's hid-magicmouse (drivers/hid/hid-magicmouse.c, as in 6.1) and, when
that module is not loaded, hid-generic.

What hid-magicmouse does over USB (read from its source):
  - It binds every HID interface of 05ac:0269 and 05ac:0265 (HID_USB_DEVICE entries).
  - Magic Mouse 2: probe returns right after hid_hw_start, so it registers no report and
    sends no feature report over USB. magicmouse_raw_event takes report MOUSE2_REPORT_ID
    (0x12) of 8 or 14 + 8n bytes: byte 1 the clicks (bit 0 left, bit 1 right), bytes 2-3
    and 4-5 X and Y as little-endian int16 (REL_X, REL_Y), bytes 14... n touches of 8
    bytes; magicmouse_event then stops hid-input from handling report 0x12's fields again.
    Scrolling is its emulate_scroll_wheel: a touch starting (state 0x30) and dragged
    (0x40) gives REL_WHEEL every (64 - scroll_speed 32) * 7 = 224 units of travel, and
    REL_WHEEL_HI_RES once it has moved 90 units, 120 per 10 * 22 units.
  - Magic Trackpad 2: only the interface hid-core typed HID_TYPE_USBMOUSE (usbhid sets it
    for bInterfaceProtocol 2, mouse) goes on: it registers TRACKPAD2_USB_REPORT_ID (0x02)
    and sends SET_REPORT(feature, 0x02, [0x02, 0x01]) to switch to multitouch. Then report
    0x02 is 12 + 9n bytes: byte 1 bit 0 the click (BTN_MOUSE), bytes 12... n touches of 9
    bytes. Its relative fields are refused (input_mapping returns -1): the pointer moves
    only by touches, through the touchpad driver of user space (libinput), like a laptop
    touchpad (INPUT_MT_POINTER, INPUT_PROP_BUTTONPAD).
  - usbhid sizes its interrupt URB to the largest input report the descriptor declares:
    every report sent here is declared at its largest size (shorter ones are zero-padded
    by hid-core for its fields; hid-magicmouse looks at the real length).

Report layouts. Magic Mouse 2, report 0x12 (the same bytes serve both drivers):
    0 ID 0x12 | 1 bits 0-1 left, right | 2-3 X int16 | 4-5 Y int16 | 6 wheel int8 (for
    hid-generic; hid-magicmouse skips it) | 7-13 0 | 14-21 one touch (scrolls only):
      0 X bits 0-7 | 1 X bits 8-11, Y bits 0-3 | 2 Y bits 4-11 (12-bit signed each, Y
      pointing up) | 3 major | 4 minor | 5 size bits 0-5, id bits 0-1 at 6-7 |
      6 id bits 2-3 at 0-1, orientation + 32 at 2-7 | 7 state (0x30 start, 0x40 drag, 0 up)
    Sent as 8 bytes (no touch) or 22 (one touch); declared 22.
Magic Trackpad 2, report 0x01 (mouse mode, before the switch or under hid-generic):
    0 ID 1 | 1 bits 0-2 buttons | 2-3 X int16 | 4-5 Y int16 | 6 wheel int8
  report 0x02 (multitouch): 0 ID 2 | 1 bit 0 click | 2-11 0 | 12... 9 bytes a touch:
      0 X bits 0-7 | 1 X bits 8-12 at 0-4, Y bits 0-2 at 5-7 | 2 Y bits 3-10 |
      3 Y bits 11-12 at 0-1, 0x80 touching | 4 major | 5 minor | 6 size | 7 pressure |
      8 id at 0-3, orientation + 4 at 5-7  (13-bit signed, Y pointing up)
    declared 48 bytes (four touches); feature report 0x02, one byte: multitouch on.
Boot protocol (firmware): both are boot mice, [buttons, X int8, Y int8, wheel int8].

How the calls become events:
  Mouse  move(dx, dy): REL_X/REL_Y (split to fit int16, or int8 in boot protocol; an
         unsent move is merged into the next, as a real mouse adds up its counts).
         button(left/right, down): BTN_LEFT/BTN_RIGHT (hid-magicmouse's middle-button
         emulation only looks at a touch, and no touch is down then).
         scroll(dy): a one-finger stroke on the mouse's top, dy detents, 16 at most a
         stroke: start, one 100-unit drag (turns on the high-resolution wheel), then a
         220-unit drag per detent, each carrying the wheel byte too, then up. Under
         hid-magicmouse each detent is one REL_WHEEL and 120 REL_WHEEL_HI_RES; under
         hid-generic the wheel byte gives the same.
  Trackpad (multitouch) move(dx, dy): a finger on the pad, moved in steps of at most 40
         units (about 0.85 mm; the pad is 7612 x 5065 units, 160 x 115 mm). The finger
         stays after the move, as a hand rests (a finger put down and lifted at once would
         be a tap, a click where tapping is on); at the edge of the middle region it is
         lifted and put back in the middle. dx, dy are pad units: the pointer moves by
         what libinput's acceleration makes of them, not by pixels.
         button(left, down): the click with one finger down (libinput's clickfinger, its
         default for Apple touchpads, makes BTN_LEFT); button(right, down): with two
         fingers (BTN_RIGHT). While it is held, moves drag the fingers (no lift: at the
         edge they stop).
         scroll(dy): two fingers put down and moved 200 units a detent (up for dy > 0),
         then lifted: libinput's two-finger scrolling (its amount is libinput's choice).
  Trackpad (mouse mode) move/button/scroll: report 0x01, REL and BTN events.
Touch sizes and pressure are chosen inside the ranges libinput's quirks give the Magic
Trackpad 2 (AttrTouchSizeRange 20:10, palm size 900, thumb 800, palm pressure 190).

Faithful: IDs, the boot-mouse interface the trackpad needs, the report IDs, byte layouts and
feature report hid-magicmouse uses. Chosen: the report descriptors (the real ones were not
found; each describes the bytes above so that hid-generic gives REL_X/REL_Y/REL_WHEEL and
BTN_LEFT/BTN_RIGHT), one interface per device (the real ones have more), bcdDevice, the
strings' wording, 64-byte packets every 8 ms, and the gestures that stand for the calls.
"""

from __future__ import annotations

import struct

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.usb.device import FULL, Identity, Stall
from imacpro.devices.usb.hid import BOOT_MOUSE, BOOT_PROTOCOL, REPORT_PROTOCOL, HidDevice, \
    QueueFull

VENDOR_APPLE = 0x05AC
PRODUCT_MAGIC_MOUSE_2 = 0x0269
PRODUCT_MAGIC_TRACKPAD_2 = 0x0265

MOUSE2_REPORT_ID = 0x12                # hid-magicmouse's names
TRACKPAD2_USB_REPORT_ID = 0x02
TRACKPAD_MOUSE_REPORT_ID = 0x01        # chosen

BUTTONS = {"left": 1, "right": 2}

TOUCH_START, TOUCH_DRAG, TOUCH_UP = 0x30, 0x40, 0x00    # Magic Mouse touch states
TOUCHING = 0x80                                        # Magic Trackpad 2: touch down

# The Magic Mouse's scroll stroke (see the module docstring).
SCROLL_ARM = 100                       # > 90: the first drag turns hi-res scrolling on
SCROLL_DETENT = 220                    # 10 hi-res steps of 22: 120, and one 224 detent
SCROLL_PER_STROKE = 16                 # 100 + 16 * 220 from one end: inside 12 bits
SCROLL_START = 1800                    # where a stroke starts (up from there for dy > 0)

# The Magic Trackpad 2's surface (TRACKPAD2_MIN/MAX_X/Y, Y pointing down as Linux reports
# it) and the gestures on it.
PAD_X, PAD_Y = (-3678, 3934), (-2478, 2587)
REGION_X, REGION_Y = 3000, 2000        # fingers stay within +-these (clear of the edges)
STEP = 40                              # pad units a frame at most
RIGHT_SPREAD = 700                     # the second finger of a right click, to the right
SCROLL_SPREAD = 350                    # two scrolling fingers: +-this in X
PAD_DETENT = 200                       # two-finger travel per scroll detent
PAD_SCROLL_START = 1500
MAX_FINGERS = 4
TOUCH_MAJOR, TOUCH_MINOR, TOUCH_SIZE, TOUCH_PRESSURE = 0x30, 0x28, 0x40, 0x40
MOUSE_TOUCH_SIZE = 24                  # 6 bits on the mouse; >= 8 is a "firm" touch

_MOUSE_BUTTONS_AND_MOTION = (
    0x09, 0x01,        #   Usage (Pointer)
    0xA1, 0x00,        #   Collection (Physical)
    0x05, 0x09,        #     Usage Page (Button)
    0x19, 0x01,        #     Usage Minimum (1)
    0x15, 0x00,        #     Logical Minimum (0)
    0x25, 0x01,        #     Logical Maximum (1)
    0x75, 0x01,        #     Report Size (1)
)
_MOTION = (
    0x05, 0x01,        #     Usage Page (Generic Desktop)
    0x09, 0x30,        #     Usage (X)
    0x09, 0x31,        #     Usage (Y)
    0x16, 0x01, 0x80,  #     Logical Minimum (-32767)
    0x26, 0xFF, 0x7F,  #     Logical Maximum (32767)
    0x75, 0x10,        #     Report Size (16)
    0x95, 0x02,        #     Report Count (2)
    0x81, 0x06,        #     Input (Data,Var,Rel)            bytes 2-5: X, Y
    0x09, 0x38,        #     Usage (Wheel)
    0x15, 0x81,        #     Logical Minimum (-127)
    0x25, 0x7F,        #     Logical Maximum (127)
    0x75, 0x08,        #     Report Size (8)
    0x95, 0x01,        #     Report Count (1)
    0x81, 0x06,        #     Input (Data,Var,Rel)            byte 6: wheel
    0xC0,              #   End Collection
)

MOUSE_REPORT_DESCRIPTOR = bytes((
    0x05, 0x01,        # Usage Page (Generic Desktop)
    0x09, 0x02,        # Usage (Mouse)
    0xA1, 0x01,        # Collection (Application)
    0x85, 0x12,        #   Report ID (0x12)
    *_MOUSE_BUTTONS_AND_MOTION,
    0x29, 0x02,        #     Usage Maximum (2)
    0x95, 0x02,        #     Report Count (2)
    0x81, 0x02,        #     Input (Data,Var,Abs)            byte 1 bits 0-1
    0x95, 0x06,        #     Report Count (6)
    0x81, 0x01,        #     Input (Const)                   byte 1 bits 2-7
    *_MOTION,
    0x95, 0x0F,        #   Report Count (15)
    0x81, 0x01,        #   Input (Const)                     bytes 7-21: header, a touch
    0xC0,              # End Collection
))

TRACKPAD_REPORT_DESCRIPTOR = bytes((
    0x05, 0x01,        # Usage Page (Generic Desktop)
    0x09, 0x02,        # Usage (Mouse)
    0xA1, 0x01,        # Collection (Application)
    0x85, 0x01,        #   Report ID (1)
    *_MOUSE_BUTTONS_AND_MOTION,
    0x29, 0x03,        #     Usage Maximum (3)
    0x95, 0x03,        #     Report Count (3)
    0x81, 0x02,        #     Input (Data,Var,Abs)            byte 1 bits 0-2
    0x95, 0x05,        #     Report Count (5)
    0x81, 0x01,        #     Input (Const)                   byte 1 bits 3-7
    *_MOTION,
    0xC0,              # End Collection
    0x06, 0x00, 0xFF,  # Usage Page (Vendor 0xFF00)
    0x09, 0x01,        # Usage (1)
    0xA1, 0x01,        # Collection (Application)
    0x85, 0x02,        #   Report ID (2)
    0x09, 0x02,        #   Usage (2)
    0x15, 0x00,        #   Logical Minimum (0)
    0x26, 0xFF, 0x00,  #   Logical Maximum (255)
    0x75, 0x08,        #   Report Size (8)
    0x95, 0x2F,        #   Report Count (47)
    0x81, 0x02,        #   Input (Data,Var,Abs)              bytes 1-47: multitouch frame
    0x09, 0x03,        #   Usage (3)
    0x95, 0x01,        #   Report Count (1)
    0xB1, 0x02,        #   Feature (Data,Var,Abs)            multitouch on (1) or off
    0xC0,              # End Collection
))


def split(dx: int, dy: int, limit: int) -> list[tuple[int, int]]:
    """(dx, dy) as steps of at most `limit` in each axis, in a straight line."""
    n = max(1, -(-abs(dx) // limit), -(-abs(dy) // limit))
    return [(dx * (i + 1) // n - dx * i // n, dy * (i + 1) // n - dy * i // n)
            for i in range(n) if (dx, dy) != (0, 0)]


def _clamp8(value: int) -> int:
    return max(-127, min(127, value))


def _button_bit(which: str) -> int:
    if which not in BUTTONS:
        raise ValueError(f"unknown button {which!r}: left or right")
    return BUTTONS[which]


class _ApplePointer(HidDevice):
    """What the two have in common: a boot mouse with a relative report (ID, buttons,
    X int16, Y int16, wheel int8), buttons held, the merging of unsent moves."""

    rel_report_id = 0
    rel_length = 7

    def __init__(self, product: int, name: str, descriptor: bytes, serial: str):
        identity = Identity(VENDOR_APPLE, product, 0x0100, "Apple Inc.", name, serial,
                            max_power_ma=500)
        super().__init__(identity, FULL, descriptor, boot=BOOT_MOUSE, max_packet=64,
                         interval=8, interface_name=name)
        self.buttons = 0

    @property
    def boot_report_id(self) -> int:
        return self.rel_report_id

    def _limit(self) -> int:
        return 127 if self.protocol == BOOT_PROTOCOL else 32767

    def _rel(self, dx: int = 0, dy: int = 0, wheel: int = 0) -> bytes:
        body = struct.pack("<BBhhb", self.rel_report_id, self.buttons, dx, dy, wheel)
        return body + bytes(self.rel_length - len(body))

    def _queue_all(self, reports: list[bytes]) -> None:
        if len(reports) > self.room:
            raise QueueFull(f"{type(self).__name__}: {len(reports)} reports, room for "
                            f"{self.room}")
        for report in reports:
            self.queue_report(report)

    def _move_rel(self, dx: int, dy: int) -> None:
        for step_x, step_y in split(dx, dy, self._limit()):
            self.queue_report(self._rel(step_x, step_y), motion=True)

    def _wheel_rel(self, dy: int) -> None:
        self._queue_all([self._rel(wheel=wheel) for _, wheel in split(0, dy, 127)])

    def merge_motion(self, older: bytes, newer: bytes) -> bytes | None:
        if len(older) != self.rel_length or len(newer) != self.rel_length:
            return None
        id_a, buttons_a, x_a, y_a, wheel_a = struct.unpack_from("<BBhhb", older)
        id_b, buttons_b, x_b, y_b, wheel_b = struct.unpack_from("<BBhhb", newer)
        limit = self._limit()
        if (id_a, buttons_a, wheel_a, wheel_b) != (id_b, buttons_b, 0, 0) \
                or abs(x_a + x_b) > limit or abs(y_a + y_b) > limit:
            return None
        return struct.pack("<BBhhb", id_a, buttons_a, x_a + x_b, y_a + y_b, 0) + \
            older[7:]

    def boot_report(self, report: bytes) -> bytes | None:
        if report[0] != self.rel_report_id or len(report) < 7:
            return None
        _, buttons, dx, dy, wheel = struct.unpack_from("<BBhhb", report)
        return bytes((buttons & 7,)) + struct.pack("<bbb", _clamp8(dx), _clamp8(dy), wheel)

    def input_report(self, report_id: int) -> bytes | None:
        return self._rel() if report_id == self.rel_report_id else None

    def save_model(self) -> dict:
        return {"buttons": self.buttons}

    def _check_buttons(self, state: dict) -> int:
        return _state.int_field(state, "buttons", type(self).__name__, 0, 3)


class MagicMouse2(_ApplePointer):
    """Magic Mouse 2 (module docstring): move, button, scroll."""

    rel_report_id = MOUSE2_REPORT_ID
    rel_length = 8                     # hid-magicmouse: 8 bytes, or 14 + 8 a touch

    def __init__(self, serial: str = ""):
        super().__init__(PRODUCT_MAGIC_MOUSE_2, "Magic Mouse 2", MOUSE_REPORT_DESCRIPTOR,
                         serial)

    def move(self, dx: int, dy: int) -> None:
        self._move_rel(dx, dy)

    def button(self, which: str, down: bool) -> None:
        bit = _button_bit(which)
        buttons = self.buttons | bit if down else self.buttons & ~bit
        if buttons != self.buttons:
            if self.room < 1:
                raise QueueFull("MagicMouse2: no room for a button report")
            self.buttons = buttons
            self.queue_report(self._rel())

    def scroll(self, dy: int) -> None:
        """dy wheel detents, > 0 away from the user (REL_WHEEL > 0)."""
        reports = []
        sign = 1 if dy > 0 else -1
        left = abs(dy)
        while left:
            n = min(left, SCROLL_PER_STROKE)
            left -= n
            # Input Y (the driver's, pointing down) falls as the wheel goes up: start low.
            y = sign * SCROLL_START
            reports.append(self._touch_report(y, TOUCH_START))
            y -= sign * SCROLL_ARM
            reports.append(self._touch_report(y, TOUCH_DRAG))
            for _ in range(n):
                y -= sign * SCROLL_DETENT
                reports.append(self._touch_report(y, TOUCH_DRAG, wheel=sign))
            reports.append(self._touch_report(y, TOUCH_UP))
        self._queue_all(reports)

    def _touch_report(self, y: int, state: int, wheel: int = 0) -> bytes:
        """A 22-byte report: the header, and touch 0 at X 0, input Y `y` (sent as -y)."""
        raw_y = -y & 0xFFF
        touch = bytes((0, (raw_y & 0xF) << 4, raw_y >> 4, TOUCH_MAJOR, TOUCH_MINOR,
                       MOUSE_TOUCH_SIZE, 32 << 2, state))
        header = self._rel(wheel=wheel) + bytes(6)
        return header + touch

    def set_feature_report(self, report_id: int, data: bytes) -> None:
        # Kernels that switch the mouse to multitouch over USB send [0xF1, 0x02, 0x01]; its
        # reports are the same either way here, so it is only acknowledged.
        if report_id != 0xF1 or data[:1] != b"\xf1":
            raise Stall

    def check_model(self, state: dict) -> object:
        return self._check_buttons(state)

    def apply_model(self, checked: object) -> None:
        self.buttons = checked


class MagicTrackpad2(_ApplePointer):
    """Magic Trackpad 2 (module docstring): move, button, scroll, lift. `fingers` are the
    fingers resting on the pad, (x, y) in pad units, Y pointing down, (0, 0) the middle."""

    rel_report_id = TRACKPAD_MOUSE_REPORT_ID
    rel_length = 7

    def __init__(self, serial: str = ""):
        super().__init__(PRODUCT_MAGIC_TRACKPAD_2, "Magic Trackpad 2",
                         TRACKPAD_REPORT_DESCRIPTOR, serial)
        self.multitouch = False
        self.fingers: list[tuple[int, int]] = []

    @property
    def touching(self) -> bool:
        """Reports are touches: the driver switched multitouch on, report protocol."""
        return self.multitouch and self.protocol == REPORT_PROTOCOL

    def move(self, dx: int, dy: int) -> None:
        if not self.touching:
            self._move_rel(dx, dy)
            return
        fingers, frames = list(self.fingers), []
        if not fingers:
            fingers = [(0, 0)]
            frames.append(self._frame(fingers))
        for step_x, step_y in split(dx, dy, STEP):
            moved = [(x + step_x, y + step_y) for x, y in fingers]
            if not all(abs(x) <= REGION_X and abs(y) <= REGION_Y for x, y in moved):
                if self.buttons:               # clicked: cannot lift, so it stops here
                    break
                frames.append(self._frame([]))          # lift, and down in the middle
                moved = [(step_x, step_y)]
                frames.append(self._frame([(0, 0)]))
            fingers = moved
            frames.append(self._frame(fingers))
        self._commit(frames, fingers)

    def button(self, which: str, down: bool) -> None:
        bit = _button_bit(which)
        buttons = self.buttons | bit if down else self.buttons & ~bit
        if buttons == self.buttons:
            return
        if not self.touching:
            if self.room < 1:
                raise QueueFull("MagicTrackpad2: no room for a button report")
            self.buttons = buttons
            self.queue_report(self._rel())
            return
        fingers, frames = list(self.fingers), []
        if down:
            wanted = 2 if bit == BUTTONS["right"] else 1
            if not fingers:
                fingers = [(0, 0)]
            if len(fingers) < wanted:
                x, y = fingers[0]
                fingers.append((x + RIGHT_SPREAD if x + RIGHT_SPREAD <= REGION_X
                                else x - RIGHT_SPREAD, y))
            if fingers != self.fingers:
                frames.append(self._frame(fingers))
            frames.append(self._frame(fingers, clicked=True))
        else:
            frames.append(self._frame(fingers, clicked=bool(buttons)))
            if bit == BUTTONS["right"] and len(fingers) > 1:
                fingers = fingers[:1]                   # the second finger comes up
                frames.append(self._frame(fingers, clicked=bool(buttons)))
        self._commit(frames, fingers, buttons)

    def scroll(self, dy: int) -> None:
        """dy detents, > 0 away from the user: two fingers moved up (down for dy < 0)."""
        if not self.touching or dy == 0:
            self._wheel_rel(dy)
            return
        if self.buttons:
            raise ValueError("MagicTrackpad2: cannot scroll with the pad clicked")
        frames = [self._frame([])] if self.fingers else []
        sign = 1 if dy > 0 else -1
        left = abs(dy) * PAD_DETENT
        while left:
            travel = min(left, 2 * PAD_SCROLL_START)
            left -= travel
            fingers = [(-SCROLL_SPREAD, sign * PAD_SCROLL_START),
                       (SCROLL_SPREAD, sign * PAD_SCROLL_START)]
            frames.append(self._frame(fingers))
            for _, step_y in split(0, -sign * travel, STEP):
                fingers = [(x, y + step_y) for x, y in fingers]
                frames.append(self._frame(fingers))
            frames.append(self._frame([]))
        self._commit(frames, [])

    def lift(self) -> None:
        """Lift the resting fingers (not while clicked)."""
        if self.fingers and not self.buttons and self.touching:
            self._commit([self._frame([])], [])

    def _commit(self, frames: list[bytes], fingers: list, buttons: int | None = None) -> None:
        self._queue_all(frames)
        self.fingers = list(fingers)
        if buttons is not None:
            self.buttons = buttons

    def _frame(self, fingers: list, clicked: bool | None = None) -> bytes:
        """A multitouch report: the click, and each finger as a 9-byte touch."""
        if clicked is None:
            clicked = bool(self.buttons)
        body = bytes((TRACKPAD2_USB_REPORT_ID, int(clicked))) + bytes(10)
        for finger_id, (x, y) in enumerate(fingers):
            x13, y13 = x & 0x1FFF, -y & 0x1FFF            # the pad's Y points up
            body += bytes((x13 & 0xFF, x13 >> 8 | (y13 & 7) << 5, y13 >> 3 & 0xFF,
                           y13 >> 11 | TOUCHING, TOUCH_MAJOR, TOUCH_MINOR, TOUCH_SIZE,
                           TOUCH_PRESSURE, finger_id | 4 << 5))
        return body

    def input_report(self, report_id: int) -> bytes | None:
        if report_id == TRACKPAD2_USB_REPORT_ID:
            return self._frame(self.fingers)
        return super().input_report(report_id)

    def boot_report(self, report: bytes) -> bytes | None:
        return super().boot_report(report) if report[0] == self.rel_report_id else None

    def feature_report(self, report_id: int) -> bytes | None:
        if report_id == TRACKPAD2_USB_REPORT_ID:
            return bytes((TRACKPAD2_USB_REPORT_ID, int(self.multitouch)))
        return None

    def set_feature_report(self, report_id: int, data: bytes) -> None:
        # hid-magicmouse's magicmouse_enable_multitouch: [0x02, 0x01].
        if report_id != TRACKPAD2_USB_REPORT_ID or len(data) < 2 or data[0] != report_id:
            raise Stall
        self.multitouch = data[1] != 0
        self.fingers = []

    def hid_reset(self) -> None:
        self.multitouch = False
        self.fingers = []

    def save_model(self) -> dict:
        return {**super().save_model(), "multitouch": self.multitouch,
                "fingers": [[x, y] for x, y in self.fingers]}

    def check_model(self, state: dict) -> object:
        where = type(self).__name__
        buttons = self._check_buttons(state)
        multitouch = _state.bool_field(state, "multitouch", where)
        fingers = []
        for n, item in enumerate(_state.list_field(state, "fingers", where,
                                                   max_length=MAX_FINGERS)):
            if not isinstance(item, list) or len(item) != 2:
                raise StateError(f"{where}.fingers[{n}]: not [x, y]")
            fingers.append((_state.integer(item[0], f"{where}.fingers[{n}]", *PAD_X),
                            _state.integer(item[1], f"{where}.fingers[{n}]", *PAD_Y)))
        return buttons, multitouch, fingers

    def apply_model(self, checked: object) -> None:
        self.buttons, self.multitouch, fingers = checked
        self.fingers = list(fingers)
