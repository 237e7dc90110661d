"""The machine's USB devices, plugged into its connectors (board.py's `usb`), and what the
host does with them: typing, pointing, attaching and detaching drives.

    | connector        | lane  | device                                                     |
    |------------------|-------|------------------------------------------------------------|
    | USB-A 1          | USB 2 | Magic Keyboard with Numeric Keypad (05ac:026c), full speed |
    | USB-A 2          | USB 2 | Magic Mouse 2 (05ac:0269), or Magic Trackpad 2 (05ac:0265) |
    | USB-A 3          | USB 2 | Magic Trackpad 2, when the machine came with both          |
    | USB-A 3, 4       | USB 3 | drives the user attaches (`--usb`, `imacpro usb attach`)   |
    | SDXC card reader | USB 3 | Apple's SD Card Reader (05ac:8408); empty unless `--sd`    |
    | internal hub     | USB 2 | Apple's hub (05ac:100e)                                    |

A drive goes into the first external connector with nothing in it (one plug per connector,
as on the real machine) and is a USB 3 flash drive. Host input goes only to a device the guest
has configured: before the guest's USB driver has set the keyboard up, typing is refused with
a reason, not lost.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from imacpro.devices.usb.device import SUPER, UsbDevice
from imacpro.devices.usb.hid import QueueFull
from imacpro.devices.usb.hub import UsbHub
from imacpro.devices.usb.keyboard import MagicKeyboard
from imacpro.devices.usb.keymap import parse_combo
from imacpro.devices.usb.pointer import MagicMouse2, MagicTrackpad2
from imacpro.disk import DiskError
from imacpro.devices.usb.sdreader import SdCardReader
from imacpro.devices.usb.storage import UsbFlashDrive
from imacpro.errors import UserError

KEYBOARD_CONNECTOR = "USB-A 1"
POINTER_CONNECTORS = ("USB-A 2", "USB-A 3")
CARD_READER, INTERNAL_HUB = "SDXC card reader", "internal hub"


class Peripherals:
    def __init__(self, xhci, connectors, pointers: tuple[str, ...] = ("mouse",),
                 sd_image: str | os.PathLike | None = None):
        self.xhci = xhci
        self.connectors = {c.name: c for c in connectors}
        self.plugged: dict[str, UsbDevice] = {}       # connector name -> device
        self.keyboard = MagicKeyboard()
        self.mouse = MagicMouse2() if "mouse" in pointers else None
        self.trackpad = MagicTrackpad2() if "trackpad" in pointers else None
        self.hub = UsbHub()
        self.card_reader = SdCardReader(sd_image)
        self._plug(KEYBOARD_CONNECTOR, self.keyboard)
        for name, device in zip(POINTER_CONNECTORS,
                                [d for d in (self.mouse, self.trackpad) if d is not None]):
            self._plug(name, device)
        self._plug(CARD_READER, self.card_reader)
        self._plug(INTERNAL_HUB, self.hub)
        self.drives: dict[str, UsbFlashDrive] = {}    # connector name -> attached drive
        self.images: dict[str, Path] = {}             # connector name -> its image

    def _plug(self, name: str, device: UsbDevice) -> None:
        connector = self.connectors[name]
        port = connector.usb3 if device.speed == SUPER else connector.usb2
        self.xhci.plug(port, device)
        self.plugged[name] = device

    # --- input from the host ---------------------------------------------------------------

    @contextlib.contextmanager
    def _input(self, device, what: str):
        """Input for `device` (called `what`): refused with a reason when the machine has
        none or the guest has not set it up; a full buffer or a key the layout lacks is a
        UserError too."""
        if device is None:
            raise UserError(f"this machine has no {what}")
        if not device.configuration:
            raise UserError(f"the guest has not set up the {what} yet (no USB driver "
                            "running in it)")
        try:
            yield device
        except QueueFull:
            raise UserError(f"the {what}'s buffer is full: the guest is not reading it") \
                from None
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def type_text(self, text: str) -> None:
        with self._input(self.keyboard, "keyboard") as keyboard:
            keyboard.type_text(text)

    def key(self, combo: str) -> None:
        try:
            parse_combo(combo)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        with self._input(self.keyboard, "keyboard") as keyboard:
            keyboard.send_combo(combo)

    def pointer(self, device: str, dx: int = 0, dy: int = 0, button: str | None = None,
                down: bool | None = None, scroll: int = 0) -> None:
        """Move, press or release a button, or scroll the mouse or the trackpad."""
        target = {"mouse": self.mouse, "trackpad": self.trackpad}.get(device)
        with self._input(target, device) as target:
            if dx or dy:
                target.move(dx, dy)
            if button is not None:
                if down is None:                      # a click
                    target.button(button, True)
                    target.button(button, False)
                else:
                    target.button(button, down)
            if scroll:
                target.scroll(scroll)

    # --- drives ---------------------------------------------------------------------------

    def attach_drive(self, path: str | os.PathLike, read_only: bool = False) -> str:
        """Plug a USB 3 flash drive holding the image at `path`; the connector's name."""
        path = Path(path).resolve()
        if path in self.images.values():
            raise UserError(f"{path} is attached already")
        for name, connector in self.connectors.items():
            if connector.internal or name in self.plugged or connector.usb3 is None:
                continue
            try:
                drive = UsbFlashDrive(path, speed=SUPER, read_only=read_only)
            except DiskError as exc:
                raise UserError(str(exc)) from None
            self._plug(name, drive)
            self.drives[name], self.images[name] = drive, path
            return name
        raise UserError("no free USB port: the machine has four, and a drive takes one")

    def detach_drive(self, which: str | os.PathLike) -> str:
        """Unplug the drive in connector `which`, or the one holding image `which`."""
        name = self._drive_connector(which)
        drive = self.drives.pop(name)
        del self.images[name]
        connector = self.connectors[name]
        self.xhci.unplug(connector.usb3)
        del self.plugged[name]
        drive.disk.close()
        return name

    def _drive_connector(self, which: str | os.PathLike) -> str:
        if str(which) in self.drives:
            return str(which)
        path = Path(which).resolve()
        for name, image in self.images.items():
            if image == path:
                return name
        raise UserError(f"no USB drive {which} is attached")

    def describe(self) -> list[dict]:
        out = []
        for name, device in self.plugged.items():
            ident = device.identity
            item = {"connector": name, "vendor": f"{ident.vendor:04x}",
                    "product": f"{ident.product:04x}", "name": ident.product_name}
            if name in self.drives:
                item["image"] = str(self.images[name])
            out.append(item)
        return out

    def close(self) -> None:
        for drive in self.drives.values():
            drive.disk.close()
        self.card_reader.disk.close()
