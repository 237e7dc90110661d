"""The US ANSI layout as HID usages (HID Usage Tables, Keyboard/Keypad page 0x07): text to
key strokes, and key combinations by name.

A stroke is (modifiers, usage): the modifier usages held (a frozenset) and the key pressed.
Usages of the Keyboard/Keypad page are plain ints (0x04 'a' ... 0xE7 Right GUI); Apple's Fn
key, which is on no standard page, is FN = 0x00FF0003 (usage page 0x00FF, Apple's vendor
"top case" page, usage 0x03: what Linux's hid-apple maps to KEY_FN).

The layout (US ANSI, as printed on the Magic Keyboard with Numeric Keypad):
    letters a-z   0x04-0x1D (upper case: with Left Shift)
    digits 1-9 0  0x1E-0x27, shifted ! @ # $ % ^ & * ( )
    Enter 0x28, Escape 0x29, Backspace 0x2A (Apple's "delete"), Tab 0x2B, Space 0x2C
    - = [ ] \\      0x2D-0x31, shifted _ + { } |
    ; ' ` , . /   0x33-0x38 ('`' is 0x35), shifted : " ~ < > ?
    Caps Lock 0x39, F1-F12 0x3A-0x45, F13-F19 0x68-0x6E
    Print Screen 0x46, Scroll Lock 0x47, Pause 0x48 (no such keys on this keyboard)
    Insert 0x49, Home 0x4A, Page Up 0x4B, Delete (forward) 0x4C, End 0x4D, Page Down 0x4E
    Right 0x4F, Left 0x50, Down 0x51, Up 0x52
    keypad: Num Lock/Clear 0x53, / 0x54, * 0x55, - 0x56, + 0x57, Enter 0x58,
            1-9 0x59-0x61, 0 0x62, . 0x63, = 0x67
    modifiers: Left Control 0xE0, Left Shift 0xE1, Left Alt/Option 0xE2, Left GUI/Command
               0xE3, and the right ones 0xE4-0xE7
`text_to_strokes` covers printable ASCII (0x20-0x7E), '\\n' (Enter), '\\t' (Tab) and '\\b'
(Backspace); text is typed with the unshifted or Left-Shift form of a key.

Names `parse_combo` takes ("ctrl+alt+f2", "cmd+shift+3", "fn+left"), case-insensitive:
    modifiers   ctrl control, shift, alt option, cmd command meta super, fn;
                rctrl rshift ralt roption rcmd (the right-hand keys)
    keys        enter return, esc escape, tab, space, backspace, delete (forward delete),
                insert, capslock, up down left right, home end pageup pagedown,
                f1 ... f19, printscreen, scrolllock, pause,
                kp0 ... kp9, kp_enter, kp_plus, kp_minus, kp_multiply, kp_divide, kp_dot,
                kp_equal, numlock clear
    characters  a letter (either case: "ctrl+A" is Control+a, not Control+Shift+a), a digit,
                or a punctuation character; one that needs Shift brings it ("ctrl+!" is
                Control+Shift+1). "+" itself is written last: "ctrl++".
Every name but the last must be a modifier; the last may be one too ("cmd" alone taps it).

Note for Linux guests: hid-apple's default for Apple keyboards (fnmode 1) turns F1-F12 into
media keys (brightness, volume...) unless Fn is held, as on a Mac; the default guest boots
with hid_apple.fnmode=2, F-keys first, so "ctrl+alt+f2" is KEY_F2 there and "fn+f2" the
media key. The usages themselves are what the real keyboard sends.
"""

from __future__ import annotations

FN = 0x00FF0003

LEFT_CTRL, LEFT_SHIFT, LEFT_ALT, LEFT_GUI = 0xE0, 0xE1, 0xE2, 0xE3
RIGHT_CTRL, RIGHT_SHIFT, RIGHT_ALT, RIGHT_GUI = 0xE4, 0xE5, 0xE6, 0xE7
MODIFIERS = frozenset(range(0xE0, 0xE8)) | {FN}

ENTER, ESCAPE, BACKSPACE, TAB, SPACE = 0x28, 0x29, 0x2A, 0x2B, 0x2C
CAPS_LOCK, F1, F13 = 0x39, 0x3A, 0x68
NUM_LOCK = 0x53

Stroke = tuple[frozenset, int]

_NONE: frozenset = frozenset()
_SHIFT = frozenset({LEFT_SHIFT})


def _build_text_table() -> dict[str, Stroke]:
    table: dict[str, Stroke] = {}
    for n, letter in enumerate("abcdefghijklmnopqrstuvwxyz"):
        table[letter] = (_NONE, 0x04 + n)
        table[letter.upper()] = (_SHIFT, 0x04 + n)
    for n, (digit, shifted) in enumerate(zip("1234567890", "!@#$%^&*()")):
        table[digit] = (_NONE, 0x1E + n)
        table[shifted] = (_SHIFT, 0x1E + n)
    for usage, plain, shifted in ((0x2D, "-", "_"), (0x2E, "=", "+"), (0x2F, "[", "{"),
                                  (0x30, "]", "}"), (0x31, "\\", "|"), (0x33, ";", ":"),
                                  (0x34, "'", '"'), (0x35, "`", "~"), (0x36, ",", "<"),
                                  (0x37, ".", ">"), (0x38, "/", "?")):
        table[plain] = (_NONE, usage)
        table[shifted] = (_SHIFT, usage)
    table[" "] = (_NONE, SPACE)
    table["\n"] = (_NONE, ENTER)
    table["\t"] = (_NONE, TAB)
    table["\b"] = (_NONE, BACKSPACE)
    return table


TEXT = _build_text_table()
_CHAR_OF = {stroke: char for char, stroke in TEXT.items()}

MODIFIER_NAMES = {
    "ctrl": LEFT_CTRL, "control": LEFT_CTRL, "shift": LEFT_SHIFT,
    "alt": LEFT_ALT, "option": LEFT_ALT,
    "cmd": LEFT_GUI, "command": LEFT_GUI, "meta": LEFT_GUI, "super": LEFT_GUI,
    "fn": FN,
    "rctrl": RIGHT_CTRL, "rshift": RIGHT_SHIFT, "ralt": RIGHT_ALT, "roption": RIGHT_ALT,
    "rcmd": RIGHT_GUI,
}

KEY_NAMES = {
    "enter": ENTER, "return": ENTER, "esc": ESCAPE, "escape": ESCAPE, "tab": TAB,
    "space": SPACE, "backspace": BACKSPACE, "delete": 0x4C, "insert": 0x49,
    "capslock": CAPS_LOCK, "printscreen": 0x46, "scrolllock": 0x47, "pause": 0x48,
    "home": 0x4A, "pageup": 0x4B, "end": 0x4D, "pagedown": 0x4E,
    "right": 0x4F, "left": 0x50, "down": 0x51, "up": 0x52,
    "numlock": NUM_LOCK, "clear": NUM_LOCK,
    "kp_divide": 0x54, "kp_multiply": 0x55, "kp_minus": 0x56, "kp_plus": 0x57,
    "kp_enter": 0x58, "kp_dot": 0x63, "kp_equal": 0x67,
    **{f"kp{n}": 0x59 + n - 1 for n in range(1, 10)}, "kp0": 0x62,
    **{f"f{n}": F1 + n - 1 for n in range(1, 13)},
    **{f"f{n}": F13 + n - 13 for n in range(13, 20)},
}


def text_to_strokes(text: str) -> list[Stroke]:
    """The strokes that type `text` on a US ANSI keyboard; ValueError names a character
    the layout cannot type."""
    strokes = []
    for char in text:
        stroke = TEXT.get(char)
        if stroke is None:
            raise ValueError(f"cannot type {char!r} on a US ANSI keyboard")
        strokes.append(stroke)
    return strokes


def stroke_to_text(modifiers: frozenset, usage: int) -> str | None:
    """The character a stroke types (the inverse of text_to_strokes), or None."""
    return _CHAR_OF.get((frozenset(modifiers), usage))


def parse_combo(combo: str) -> Stroke:
    """'ctrl+alt+f2' -> (frozenset({LEFT_CTRL, LEFT_ALT}), F2) (names in the docstring);
    ValueError with one line naming the bad token."""
    text = combo.strip()
    if text == "+":
        head, last = "", "+"
    elif text.endswith("++"):                      # "ctrl++": the '+' key, last
        head, last = text[:-2], "+"
    else:
        head, _, last = text.rpartition("+")
    names = head.split("+") if head else []
    modifiers = set()
    for name in names:
        token = name.strip().lower()
        if token not in MODIFIER_NAMES:
            raise ValueError(f"{name.strip()!r} is not a modifier name (in combo {combo!r})")
        modifiers.add(MODIFIER_NAMES[token])
    token = last.strip()
    if not token:
        raise ValueError(f"empty key name in combo {combo!r}")
    name = token.lower()
    if name in MODIFIER_NAMES:
        usage = MODIFIER_NAMES[name]
    elif name in KEY_NAMES:
        usage = KEY_NAMES[name]
    elif len(token) == 1 and name in TEXT:
        shift, usage = TEXT[name]                  # letters either case: the plain key
        modifiers |= shift
    else:
        raise ValueError(f"unknown key name {token!r} (in combo {combo!r})")
    return frozenset(modifiers), usage
