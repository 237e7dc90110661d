"""The 27-inch Retina 5K panel: 5120 × 2880 pixels, Display P3, 10 bits per channel.

What the panel shows of the boot framebuffer (framebuffer.py), as 16 bits per channel:
  - native mode (5120 × 2880, x2r10g10b10): the framebuffer's pixels one for one, each 10-bit
    channel widened by repeating its top bits (v << 6 | v >> 4: 0 → 0, 1023 → 65535);
  - compat mode (3840 × 2160, XRGB8888): each 8-bit channel widened × 257 (0 → 0, 255 → 65535),
    the picture then scaled by 4/3 to fill the panel, bilinear (Pillow's BILINEAR filter on
    each 16-bit channel). The real panel's scaler is not documented; bilinear is the usual
    choice of display scalers and keeps a flat area exactly its colour.
A machine that is off or suspended shows black.

`framebuffer_pixels` gives the framebuffer's own pixels (a screenshot's --native-size).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imacpro.devices.display.framebuffer import Mode

WIDTH, HEIGHT = 5120, 2880


def framebuffer_pixels(raw: bytes, mode: Mode) -> np.ndarray:
    """The framebuffer's pixels (`mode.size` bytes) as height × width × RGB, 16 bits each."""
    words = np.frombuffer(raw, dtype="<u4", count=mode.width * mode.height)
    words = words.reshape(mode.height, mode.width)
    bits = mode.bits
    mask = (1 << bits) - 1
    out = np.empty((mode.height, mode.width, 3), dtype=np.uint16)
    for i, shift in enumerate((2 * bits, bits, 0)):
        channel = ((words >> shift) & mask).astype(np.uint16)
        if bits == 8:
            out[..., i] = channel * 257
        else:
            out[..., i] = (channel << (16 - bits)) | (channel >> (2 * bits - 16))
    return out


def panel_pixels(raw: bytes, mode: Mode) -> np.ndarray:
    """What the panel shows: HEIGHT × WIDTH × RGB, 16 bits per channel."""
    pixels = framebuffer_pixels(raw, mode)
    if (mode.width, mode.height) == (WIDTH, HEIGHT):
        return pixels
    out = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint16)
    for i in range(3):
        channel = Image.fromarray(np.ascontiguousarray(pixels[..., i]))     # mode I;16
        scaled = channel.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
        out[..., i] = np.asarray(scaled, dtype=np.uint16)
    return out


def black(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint16)
