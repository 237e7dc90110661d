"""The boot framebuffer's modes: what the firmware hands the OS as its GOP mode.

Apple's firmware drives the 5K panel natively only for macOS; any other OS gets one
single-stream mode. Both live at the start of the GPU's VRAM aperture (BAR0):

    | mode   | size        | pixel (little endian 32 bits)  | stride | Linux's efifb says         |
    |--------|-------------|--------------------------------|--------|----------------------------|
    | compat | 3840 × 2160 | XRGB8888: x 31:24, r 23:16,    | 15360  | mode is 3840x2160x32,      |
    |        |             |   g 15:8, b 7:0                |        |   linelength=15360         |
    | native | 5120 × 2880 | x2r10g10b10: x 31:30, r 29:20, | 20480  | mode is 5120x2880x32,      |
    |        |             |   g 19:10, b 9:0               |        |   linelength=20480         |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    width: int
    height: int
    bits: int                  # per channel: 8 (XRGB8888) or 10 (x2r10g10b10)

    @property
    def stride(self) -> int:
        return self.width * 4

    @property
    def size(self) -> int:
        return self.stride * self.height

    @property
    def channels(self) -> tuple[tuple[int, int], ...]:
        """(size, position) of red, green, blue and the unused bits, as screen_info has them."""
        b = self.bits
        return (b, 2 * b), (b, b), (b, 0), (32 - 3 * b, 3 * b)

    @property
    def drm_format(self) -> str:
        return "XRGB8888" if self.bits == 8 else "XRGB2101010"


COMPAT = Mode("compat", 3840, 2160, 8)
NATIVE = Mode("native", 5120, 2880, 10)
MODES = {mode.name: mode for mode in (COMPAT, NATIVE)}
