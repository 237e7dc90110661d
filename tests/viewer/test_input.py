"""A viewer's input as the machine's USB devices take it: Shift held for shifted symbols,
the trackpad when there is no mouse, and input a device has no room for dropped rather than
ending the machine's run loop."""

from imacpro.devices.usb import keymap
from imacpro.devices.usb.hid import QueueFull
from imacpro.viewer.input import MachineInput


class Device:
    def __init__(self, full=False):
        self.configuration = 1
        self.full = full
        self.events = []

    def _record(self, *event):
        if self.full:
            raise QueueFull("no room")
        self.events.append(event)

    def key_event(self, usage, down):
        self._record("key", usage, down)

    def move(self, dx, dy):
        self._record("move", dx, dy)

    def button(self, which, down):
        self._record("button", which, down)

    def scroll(self, clicks):
        self._record("scroll", clicks)


class Usb:
    def __init__(self, keyboard=None, mouse=None, trackpad=None):
        self.keyboard, self.mouse, self.trackpad = keyboard, mouse, trackpad


class Machine:
    def __init__(self, usb):
        self.usb = usb


def test_a_shifted_symbol_gets_shift_held_for_it():
    keyboard = Device()
    viewer = MachineInput(Machine(Usb(keyboard=keyboard)))
    viewer.key(ord("A"), True)
    viewer.key(ord("A"), False)
    assert keyboard.events == [("key", keymap.LEFT_SHIFT, True), ("key", 0x04, True),
                               ("key", 0x04, False), ("key", keymap.LEFT_SHIFT, False)]


def test_the_pointer_moves_the_mouse_by_differences_or_else_the_trackpad():
    mouse = Device()
    viewer = MachineInput(Machine(Usb(mouse=mouse)))
    viewer.pointer(100, 100, 0)
    viewer.pointer(110, 95, 1)
    viewer.pointer(110, 95, 8)
    assert mouse.events == [("move", 10, -5), ("button", "left", True),
                            ("button", "left", False), ("scroll", 1)]
    trackpad = Device()
    viewer = MachineInput(Machine(Usb(trackpad=trackpad)))
    viewer.pointer(0, 0, 0)
    viewer.pointer(3, 4, 0)
    assert trackpad.events == [("move", 3, 4)]


def test_input_a_device_has_no_room_for_is_dropped():
    viewer = MachineInput(Machine(Usb(keyboard=Device(full=True), mouse=Device(full=True))))
    for _ in range(100):
        viewer.key(ord("x"), True)
        viewer.key(ord("X"), True)
        viewer.pointer(5, 5, 1)
        viewer.pointer(9, 9, 0)
