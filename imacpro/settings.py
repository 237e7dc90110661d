"""A machine's settings: what its owner chooses beside the hardware, in the bundle's
settings.toml (absent: every setting at its default).

    [display]
    mode = "compat"    # the boot framebuffer the firmware hands the OS (devices/display/
                       # framebuffer.py): "compat", 3840 × 2160 at 8 bits per channel, what
                       # Apple's firmware gives any OS but macOS; or "native", the panel's own
                       # 5120 × 2880 at 10 bits. It takes effect at the next boot.
"""

from __future__ import annotations

from imacpro.bundle import Bundle
from imacpro.devices.display.framebuffer import MODES
from imacpro.errors import UserError
from imacpro.files import read_toml, write_toml

SETTINGS_FILE = "settings.toml"
DEFAULT_DISPLAY_MODE = "compat"


def _read(machine_bundle: Bundle) -> dict:
    path = machine_bundle.path / SETTINGS_FILE
    return read_toml(path) if path.exists() else {}


def display_mode(machine_bundle: Bundle) -> str:
    mode = _read(machine_bundle).get("display", {}).get("mode", DEFAULT_DISPLAY_MODE)
    if mode not in MODES:
        raise UserError(f"damaged machine bundle: {machine_bundle.path / SETTINGS_FILE}: "
                        f"display mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def set_display_mode(machine_bundle: Bundle, mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown display mode {mode!r}: use {' or '.join(MODES)}")
    settings = _read(machine_bundle)
    settings.setdefault("display", {})["mode"] = mode
    write_toml(machine_bundle.path / SETTINGS_FILE, settings)
