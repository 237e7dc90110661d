"""A viewer's keyboard and pointer as the machine's USB devices (devices/usb/peripherals.py).

    keyboard  keysyms (keysyms.py) pressed and released on the Magic Keyboard; a shifted
              symbol sent without Shift (as scripted clients and some browsers' synthetic
              events do) gets Shift held for it
    pointer   the Magic Mouse 2 (the Magic Trackpad 2, touched and dragged, on a machine
              that has no mouse) moved by the difference between the viewer's pointer
              positions (a real mouse is relative: the guest's pointer follows with its own
              acceleration, as it would under a person's hand), buttons 1 and 3 as left and
              right, 4 and 5 (the wheel) as scrolls

Input reaches the devices only once the guest has set them up; before that it is dropped, as
a keyboard's keys are when nothing reads it. So is input a device has no room for. One MachineInput per viewer: the Shift keys it
holds and its last pointer position are its own.
"""

from __future__ import annotations

import contextlib
import logging

from imacpro.devices.usb import keymap
from imacpro.devices.usb.hid import QueueFull
from imacpro.viewer import keysyms

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _dropped_if_refused(what: str):
    """A device whose buffer is full (the guest is not reading it) or that cannot do what is
    asked (scroll a clicked trackpad) drops the input, as a real one would: a viewer's input
    never stops the machine."""
    try:
        yield
    except (QueueFull, ValueError) as exc:
        log.info("%s input dropped: %s", what, exc)


class MachineInput:
    def __init__(self, machine):
        self.machine = machine
        self.last_pointer: tuple[int, int] | None = None
        self.buttons = 0
        self.shifts: set[int] = set()         # the viewer's Shift keys held
        self.held_for: set[int] = set()       # keysyms we hold Shift for

    def key(self, keysym: int, down: bool) -> None:
        with _dropped_if_refused("keyboard"):
            self._key(keysym, down)

    def pointer(self, x: int, y: int, buttons: int) -> None:
        with _dropped_if_refused("pointer"):
            self._pointer(x, y, buttons)

    def _key(self, keysym: int, down: bool) -> None:
        usage = keysyms.usage(keysym)
        usb = self.machine.usb
        if usage is None or usb is None or not usb.keyboard.configuration:
            return
        keyboard = usb.keyboard
        if keysym in keysyms.SHIFTS:
            self.shifts = self.shifts | {keysym} if down else self.shifts - {keysym}
        if keysyms.needs_shift(keysym) and not self.shifts:
            # A shifted symbol from a viewer that pressed no Shift: hold it for the key.
            if down:
                keyboard.key_event(keymap.LEFT_SHIFT, True)
                self.held_for.add(keysym)
            keyboard.key_event(usage, down)
            if not down and keysym in self.held_for:
                self.held_for.discard(keysym)
                keyboard.key_event(keymap.LEFT_SHIFT, False)
            return
        keyboard.key_event(usage, down)

    def _pointer(self, x: int, y: int, buttons: int) -> None:
        usb = self.machine.usb
        # The mouse; on a machine that came with the trackpad alone, a finger on it.
        mouse = (usb.mouse or usb.trackpad) if usb is not None else None
        if mouse is None or not mouse.configuration:
            self.last_pointer, self.buttons = (x, y), buttons
            return
        if self.last_pointer is not None and (x, y) != self.last_pointer:
            mouse.move(x - self.last_pointer[0], y - self.last_pointer[1])
        self.last_pointer = (x, y)
        for bit, name in ((1, "left"), (4, "right")):
            if (buttons ^ self.buttons) & bit:
                mouse.button(name, bool(buttons & bit))
        for bit, clicks in ((8, 1), (16, -1)):
            if buttons & bit and not self.buttons & bit:
                mouse.scroll(clicks)
        self.buttons = buttons
