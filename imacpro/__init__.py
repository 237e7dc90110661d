"""imacpro: a full-system emulator of Apple's iMac Pro (iMacPro1,1)."""

__version__ = "0.1.0"
