"""X11 keysyms, what RFB's KeyEvent and the browser's RFB client send, as the Magic Keyboard's
HID usages (X11's keysymdef.h for the keysyms; the usages are devices/usb/keymap.py's).

A keysym names a symbol, not a key: "!" arrives with the client's Shift already down, so a
printable keysym maps to the key that carries it on the US ANSI layout, and the Shift it may
need is the client's business. The keys:

    | keysyms                    | keys                                                 |
    |----------------------------|------------------------------------------------------|
    | 0x20-0x7E                  | the printable characters' keys                       |
    | FF08 FF09 FF0D FF1B FFFF   | Backspace, Tab, Return, Escape, Delete (forward)     |
    | FF50-FF57                  | Home, Left, Up, Right, Down, Page Up, Page Down, End |
    | FF63 FF7F FFE5             | Insert, Num Lock, Caps Lock                          |
    | FF8D FFAA-FFB9 FFBD        | the keypad: Enter, * + , - . / 0-9, =                |
    | FFBE-FFD0                  | F1-F19                                               |
    | FFE1-FFEC, FE03            | Shift, Control, Meta, Alt, Super (left and right),   |
    |                            | ISO Level 3 Shift (AltGr) as Right Alt               |
Anything else has no key on this keyboard and is dropped.

Some clients (scripted ones such as vncdotool) send "A" or "!" without pressing Shift first;
`needs_shift` says which keysyms the layout types with Shift, so the server can hold it for
them.
"""

from __future__ import annotations

from imacpro.devices.usb import keymap

_SPECIAL = {
    0xFF08: keymap.BACKSPACE, 0xFF09: keymap.TAB, 0xFF0D: keymap.ENTER,
    0xFF1B: keymap.ESCAPE, 0xFFFF: keymap.KEY_NAMES["delete"],
    0xFF50: keymap.KEY_NAMES["home"], 0xFF51: keymap.KEY_NAMES["left"],
    0xFF52: keymap.KEY_NAMES["up"], 0xFF53: keymap.KEY_NAMES["right"],
    0xFF54: keymap.KEY_NAMES["down"], 0xFF55: keymap.KEY_NAMES["pageup"],
    0xFF56: keymap.KEY_NAMES["pagedown"], 0xFF57: keymap.KEY_NAMES["end"],
    0xFF63: keymap.KEY_NAMES["insert"], 0xFF7F: keymap.NUM_LOCK, 0xFFE5: keymap.CAPS_LOCK,
    0xFF8D: keymap.KEY_NAMES["kp_enter"], 0xFFAA: keymap.KEY_NAMES["kp_multiply"],
    0xFFAB: keymap.KEY_NAMES["kp_plus"], 0xFFAD: keymap.KEY_NAMES["kp_minus"],
    0xFFAE: keymap.KEY_NAMES["kp_dot"], 0xFFAF: keymap.KEY_NAMES["kp_divide"],
    0xFFBD: keymap.KEY_NAMES["kp_equal"],
    **{0xFFB0 + n: keymap.KEY_NAMES[f"kp{n}"] for n in range(10)},
    **{0xFFBE + n: keymap.KEY_NAMES[f"f{n + 1}"] for n in range(19)},
    0xFFE1: keymap.LEFT_SHIFT, 0xFFE2: keymap.RIGHT_SHIFT,
    0xFFE3: keymap.LEFT_CTRL, 0xFFE4: keymap.RIGHT_CTRL,
    0xFFE7: keymap.LEFT_GUI, 0xFFE8: keymap.RIGHT_GUI,          # Meta: the Command keys
    0xFFE9: keymap.LEFT_ALT, 0xFFEA: keymap.RIGHT_ALT,
    0xFFEB: keymap.LEFT_GUI, 0xFFEC: keymap.RIGHT_GUI,          # Super
    0xFE03: keymap.RIGHT_ALT,
}


def usage(keysym: int) -> int | None:
    """The HID usage of the key that sends `keysym`, or None."""
    if keysym in _SPECIAL:
        return _SPECIAL[keysym]
    if 0x20 <= keysym <= 0x7E:
        stroke = keymap.TEXT.get(chr(keysym).lower())
        return None if stroke is None else stroke[1]
    return None


SHIFTS = (0xFFE1, 0xFFE2)


def needs_shift(keysym: int) -> bool:
    """Whether the US layout types this printable keysym with Shift held."""
    stroke = keymap.TEXT.get(chr(keysym)) if 0x20 <= keysym <= 0x7E else None
    return stroke is not None and keymap.LEFT_SHIFT in stroke[0]
