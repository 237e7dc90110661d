"""Apple's Magic Keyboard with Numeric Keypad (A1843, black "space grey" or silver) on its
Lightning cable: USB 05ac:026c, which Linux's hid-ids.h names
USB_DEVICE_ID_APPLE_MAGIC_KEYBOARD_NUMPAD_2015 and hid-apple binds with APPLE_HAS_FN |
APPLE_ISO_TILDE_QUIRK | APPLE_RDESC_BATTERY. Full speed, "Apple Inc.", "Magic Keyboard with
Numeric Keypad", 500 mA, remote wake-up.

One HID interface, boot keyboard (subclass 1, protocol 1), bCountryCode 33 (US), interrupt
IN 0x81 (16 bytes, every 8 ms). Its input report, report ID 1 (report protocol):
    byte 0      report ID 1
    byte 1      modifiers: bit n is usage 0xE0+n (LCtrl LShift LAlt LGUI RCtrl RShift RAlt
                RGUI)
    byte 2      reserved, 0
    bytes 3-8   up to six keys held, Keyboard/Keypad usages in press order, 0 for none;
                seven or more: all six 0x01 (ErrorRollOver), as HID 1.11 App. C asks
    byte 9      bit 0 Fn (usage page 0x00FF usage 0x03), bits 1-7 0
In boot protocol the report is bytes 1-8 (8 bytes, no ID). Output report 1 (SET_REPORT,
[1, LEDs]; boot protocol [LEDs]): bit 0 Num Lock, 1 Caps Lock, 2 Scroll Lock, 3 Compose,
4 Kana (the keyboard has a Caps Lock light only).

What hid-apple needs and how it is met: apple_input_mapping (drivers/hid/hid-apple.c) makes
KEY_FN of a usage equal to HID_UP_CUSTOM | 0x0003 (0x00FF0003), or the MS/HP vendor pages'
0x0003, and with none found it logs "Fn key not found" and drops Fn handling; here Fn is
0x00FF0003, Apple's own "top case" page (AppleHIDUsageTables.h kHIDPage_AppleVendorTopCase,
kHIDUsage_AV_TopCase_KeyboardFn), as Apple's USB keyboards describe it. hid-generic ignores
that page (HID_UP_CUSTOM: ignore), so the rest works without hid-apple. apple_report_fixup's
two rewrites do not touch this descriptor: the battery one wants 83 bytes (that is the real
keyboard's other, "Device Management" interface, not modelled), and the JIS one wants 0x65
at offsets 64 and 70.

Faithful: the IDs, strings, boot-keyboard interface, US country code, Fn's usage. Chosen:
the report layout around Fn (a report ID 1 boot report plus a byte, the form Apple's USB
keyboards are described as sending; the exact descriptor of the A1843 was not found, so its
other interfaces, the "Device Management" one with the battery, are left out), bcdDevice
8.05 (that of the A1644, its keypad-less sibling 05ac:0267, from a public lsusb dump).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.usb import keymap
from imacpro.devices.usb.device import FULL, Identity, Stall
from imacpro.devices.usb.hid import BOOT_KEYBOARD, COUNTRY_US, HidDevice, QueueFull

VENDOR_APPLE = 0x05AC
PRODUCT_MAGIC_KEYBOARD_NUMPAD = 0x026C
REPORT_ID = 1
ERROR_ROLL_OVER = 0x01
MAX_HELD = 64                          # keys held at once that a saved state may list

REPORT_DESCRIPTOR = bytes((
    0x05, 0x01,        # Usage Page (Generic Desktop)
    0x09, 0x06,        # Usage (Keyboard)
    0xA1, 0x01,        # Collection (Application)
    0x85, 0x01,        #   Report ID (1)
    0x05, 0x07,        #   Usage Page (Keyboard/Keypad)
    0x19, 0xE0,        #   Usage Minimum (Left Control)
    0x29, 0xE7,        #   Usage Maximum (Right GUI)
    0x15, 0x00,        #   Logical Minimum (0)
    0x25, 0x01,        #   Logical Maximum (1)
    0x75, 0x01,        #   Report Size (1)
    0x95, 0x08,        #   Report Count (8)
    0x81, 0x02,        #   Input (Data,Var,Abs)            byte 1: modifiers
    0x95, 0x01,        #   Report Count (1)
    0x75, 0x08,        #   Report Size (8)
    0x81, 0x01,        #   Input (Const)                   byte 2: reserved
    0x95, 0x05,        #   Report Count (5)
    0x75, 0x01,        #   Report Size (1)
    0x05, 0x08,        #   Usage Page (LEDs)
    0x19, 0x01,        #   Usage Minimum (Num Lock)
    0x29, 0x05,        #   Usage Maximum (Kana)
    0x91, 0x02,        #   Output (Data,Var,Abs)           the LEDs
    0x95, 0x01,        #   Report Count (1)
    0x75, 0x03,        #   Report Size (3)
    0x91, 0x01,        #   Output (Const)                  padding
    0x95, 0x06,        #   Report Count (6)
    0x75, 0x08,        #   Report Size (8)
    0x15, 0x00,        #   Logical Minimum (0)
    0x26, 0xFF, 0x00,  #   Logical Maximum (255)
    0x05, 0x07,        #   Usage Page (Keyboard/Keypad)
    0x19, 0x00,        #   Usage Minimum (0)
    0x2A, 0xFF, 0x00,  #   Usage Maximum (255)
    0x81, 0x00,        #   Input (Data,Array,Abs)          bytes 3-8: keys
    0x05, 0xFF,        #   Usage Page (0x00FF: Apple's vendor "top case" page)
    0x09, 0x03,        #   Usage (0x03: Fn)
    0x15, 0x00,        #   Logical Minimum (0)
    0x25, 0x01,        #   Logical Maximum (1)
    0x95, 0x01,        #   Report Count (1)
    0x75, 0x01,        #   Report Size (1)
    0x81, 0x02,        #   Input (Data,Var,Abs)            byte 9 bit 0: Fn
    0x75, 0x07,        #   Report Size (7)
    0x81, 0x01,        #   Input (Const)                   byte 9 bits 1-7
    0xC0,              # End Collection
))


def _is_key(usage: int) -> bool:
    return 0x04 <= usage <= 0xDD


def _check_usage(usage: object) -> int:
    if isinstance(usage, bool) or not isinstance(usage, int) or not (
            _is_key(usage) or usage in keymap.MODIFIERS):
        raise ValueError(f"not a key of this keyboard: {usage!r}")
    return usage


@dataclass
class _Keys:
    """What is held down: keys in press order, the modifier bits, Fn."""
    keys: list
    modifiers: int = 0
    fn: bool = False

    def copy(self) -> _Keys:
        return _Keys(list(self.keys), self.modifiers, self.fn)

    def set(self, usage: int, down: bool) -> bool:
        """Press or release `usage`; True if anything changed."""
        if usage == keymap.FN:
            changed, self.fn = self.fn != down, down
        elif usage in keymap.MODIFIERS:
            bit = 1 << (usage - 0xE0)
            changed = bool(self.modifiers & bit) != down
            self.modifiers = self.modifiers | bit if down else self.modifiers & ~bit
        elif down:
            changed = usage not in self.keys
            if changed:
                self.keys.append(usage)
        else:
            changed = usage in self.keys
            if changed:
                self.keys.remove(usage)
        return changed

    def report(self) -> bytes:
        keys = [ERROR_ROLL_OVER] * 6 if len(self.keys) > 6 else \
            self.keys + [0] * (6 - len(self.keys))
        return bytes((REPORT_ID, self.modifiers, 0, *keys, int(self.fn)))


class MagicKeyboard(HidDevice):
    """The keyboard (module docstring). Usages are keymap's: Keyboard/Keypad page ints,
    keymap.FN for Fn. A method that cannot queue all its reports raises QueueFull before
    it changes anything."""

    boot_report_id = REPORT_ID

    def __init__(self, serial: str = ""):
        identity = Identity(VENDOR_APPLE, PRODUCT_MAGIC_KEYBOARD_NUMPAD, 0x0805, "Apple Inc.",
                            "Magic Keyboard with Numeric Keypad", serial,
                            max_power_ma=500, remote_wakeup=True)
        super().__init__(identity, FULL, REPORT_DESCRIPTOR, boot=BOOT_KEYBOARD,
                         country=COUNTRY_US, bcd_hid=0x0110, max_packet=16, interval=8,
                         default_idle=125,           # HID 1.11 §7.2.4: 500 ms for keyboards
                         interface_name="Keyboard / Boot")
        self.held = _Keys([])
        self.leds = 0

    # --- the user's side ----------------------------------------------------------------

    def press(self, *usages: int) -> None:
        """Press keys together: one report."""
        self._events([(usage, True) for usage in usages], together=True)

    def release(self, *usages: int) -> None:
        self._events([(usage, False) for usage in usages], together=True)

    def key_event(self, usage: int, down: bool) -> None:
        self._events([(usage, down)])

    def release_all(self) -> None:
        self._events([(usage, False) for usage in self._held_usages()], together=True)

    def tap(self, usage: int, modifiers: Iterable[int] = ()) -> None:
        """Modifiers down, the key down and up, the modifiers up again (those that were not
        already held)."""
        self._strokes([(frozenset(modifiers), usage)])

    def type_text(self, text: str) -> None:
        """Type `text` (keymap.text_to_strokes: US ANSI), Shift pressed only as needed."""
        self._strokes(keymap.text_to_strokes(text))

    def send_combo(self, combo: str) -> None:
        """Tap a combination by name, e.g. "ctrl+alt+f2" (keymap.parse_combo)."""
        modifiers, usage = keymap.parse_combo(combo)
        self._strokes([(modifiers, usage)])

    @property
    def caps_lock(self) -> bool:
        return bool(self.leds & 2)

    # --- reports ------------------------------------------------------------------------

    def _held_usages(self) -> list[int]:
        mods = [0xE0 + n for n in range(8) if self.held.modifiers >> n & 1]
        return list(self.held.keys) + mods + ([keymap.FN] if self.held.fn else [])

    def _strokes(self, strokes: list) -> None:
        """Each stroke's modifiers held (pressed if not yet), its key down and up; the
        modifiers pressed here are released when the next stroke does not use them and at
        the end, those held before are left alone."""
        events: list[tuple[int, bool]] = []
        state = self.held.copy()
        pressed_here: set[int] = set()
        for modifiers, usage in strokes:
            for modifier in sorted(pressed_here - set(modifiers)):
                events.append((modifier, False))
                state.set(modifier, False)
                pressed_here.discard(modifier)
            for modifier in sorted(modifiers):
                if state.set(modifier, True):
                    events.append((modifier, True))
                    pressed_here.add(modifier)
            if usage in state.keys:                 # held already: it must come up first
                events.append((usage, False))
                state.set(usage, False)
            events += [(usage, True), (usage, False)]
        events += [(modifier, False) for modifier in sorted(pressed_here)]
        self._events(events)

    def _events(self, events: list[tuple[int, bool]], together: bool = False) -> None:
        for usage, _ in events:
            _check_usage(usage)
        state = self.held.copy()
        reports = []
        for usage, down in events:
            if state.set(usage, down) and not together:
                reports.append(state.report())
        if together and state != self.held:
            reports.append(state.report())
        if len(reports) > self.room:
            raise QueueFull(f"MagicKeyboard: {len(reports)} reports, room for {self.room}")
        self.held = state
        for report in reports:
            self.queue_report(report)

    def input_report(self, report_id: int) -> bytes | None:
        return self.held.report() if report_id == REPORT_ID else None

    def boot_report(self, report: bytes) -> bytes | None:
        return report[1:9] if report[0] == REPORT_ID else None

    def set_output_report(self, report_id: int, data: bytes) -> None:
        if report_id == REPORT_ID and len(data) >= 2 and data[0] == REPORT_ID:
            self.leds = data[1] & 0x1F
        elif report_id == 0 and len(data) >= 1:      # boot protocol: no ID
            self.leds = data[0] & 0x1F
        else:
            raise Stall

    def hid_reset(self) -> None:
        self.leds = 0

    # --- state --------------------------------------------------------------------------

    def save_model(self) -> dict:
        return {"keys": list(self.held.keys), "modifiers": self.held.modifiers,
                "fn": self.held.fn, "leds": self.leds}

    def check_model(self, state: dict) -> object:
        where = type(self).__name__
        keys = _state.int_list(state, "keys", where, 0x04, 0xDD, max_length=MAX_HELD)
        if len(set(keys)) != len(keys):
            raise StateError(f"{where}.keys: a key held twice")
        modifiers = _state.int_field(state, "modifiers", where, 0, 0xFF)
        fn = _state.bool_field(state, "fn", where)
        leds = _state.int_field(state, "leds", where, 0, 0x1F)
        return _Keys(keys, modifiers, fn), leds

    def apply_model(self, checked: object) -> None:
        self.held, self.leds = checked
