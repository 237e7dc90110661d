"""Screenshots as files: 16 bits per channel PNG with the panel's colour space embedded.

The PNG is written by pypng (Pillow writes no 16-bit-per-channel RGB), with an iCCP chunk
holding a Display P3 ICC profile, which Little CMS (liblcms2, through ctypes) builds from the
colour space's definition: D65 white, the P3 primaries and the sRGB transfer curve.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import zlib
from pathlib import Path

import numpy as np
import png

from imacpro.errors import UserError

PROFILE_NAME = "Display P3"
D65 = (0.3127, 0.3290)
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
# The sRGB curve as Little CMS's parametric type 4: Y = (aX + b)^g for X >= d, else cX.
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)


class _xyY(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double), ("Y", ctypes.c_double)]


@functools.cache
def display_p3_profile() -> bytes:
    """The ICC profile of Display P3 (Little CMS's own v4 matrix/TRC profile)."""
    name = ctypes.util.find_library("lcms2")
    if name is None:
        raise UserError("Little CMS (liblcms2) is needed for screenshots: install liblcms2-2")
    lcms = ctypes.CDLL(name)
    lcms.cmsBuildParametricToneCurve.restype = ctypes.c_void_p
    lcms.cmsBuildParametricToneCurve.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                 ctypes.POINTER(ctypes.c_double)]
    lcms.cmsCreateRGBProfile.restype = ctypes.c_void_p
    lcms.cmsCreateRGBProfile.argtypes = [ctypes.POINTER(_xyY), ctypes.POINTER(_xyY * 3),
                                         ctypes.POINTER(ctypes.c_void_p * 3)]
    lcms.cmsMLUalloc.restype = ctypes.c_void_p
    lcms.cmsMLUalloc.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lcms.cmsMLUsetASCII.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_char_p]
    lcms.cmsWriteTag.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
    lcms.cmsSaveProfileToMem.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.POINTER(ctypes.c_uint32)]
    lcms.cmsCloseProfile.argtypes = [ctypes.c_void_p]
    lcms.cmsFreeToneCurve.argtypes = [ctypes.c_void_p]
    lcms.cmsMLUfree.argtypes = [ctypes.c_void_p]

    params = (ctypes.c_double * 5)(*SRGB_CURVE)
    curve = lcms.cmsBuildParametricToneCurve(None, 4, params)
    white = _xyY(*D65, 1.0)
    primaries = (_xyY * 3)(*(_xyY(x, y, 1.0) for x, y in P3_PRIMARIES))
    curves = (ctypes.c_void_p * 3)(curve, curve, curve)
    profile = lcms.cmsCreateRGBProfile(ctypes.byref(white), ctypes.byref(primaries),
                                       ctypes.byref(curves))
    try:
        for signature, text in ((0x64657363, PROFILE_NAME),            # 'desc'
                                (0x63707274, "No copyright, use freely")):  # 'cprt'
            mlu = lcms.cmsMLUalloc(None, 1)
            lcms.cmsMLUsetASCII(mlu, b"en", b"US", text.encode())
            lcms.cmsWriteTag(profile, signature, mlu)
            lcms.cmsMLUfree(mlu)
        size = ctypes.c_uint32()
        lcms.cmsSaveProfileToMem(profile, None, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        lcms.cmsSaveProfileToMem(profile, buffer, ctypes.byref(size))
        return buffer.raw[:size.value]
    finally:
        lcms.cmsCloseProfile(profile)
        lcms.cmsFreeToneCurve(curve)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write height × width × RGB 16-bit `pixels` as a 48-bit PNG tagged Display P3."""
    height, width, _ = pixels.shape
    rows = pixels.astype(">u2").reshape(height, width * 3)
    encoded = io.BytesIO()
    png.Writer(width, height, greyscale=False, bitdepth=16, compression=6).write_packed(
        encoded, (row.tobytes() for row in rows))
    chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
    iccp = PROFILE_NAME.encode("latin-1") + b"\0\0" + zlib.compress(display_p3_profile())
    chunks.insert(1, (b"iCCP", iccp))                       # after IHDR, before IDAT
    try:
        with open(path, "wb") as f:
            png.write_chunks(f, chunks)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
