"""Apple's internal SDXC card reader: a USB 3 mass-storage device, USB 05ac:8408, manufacturer
"APPLE", product "SD Card Reader"; Linux probes it as "APPLE SD Card Reader" (the SCSI vendor
and product of its INQUIRY data). Bulk-only transport, SuperSpeed (storage.py).

The slot is empty unless an image is given (or inserted later): an empty reader answers NOT
READY, MEDIUM NOT PRESENT, and Linux shows /dev/sdX with size 0 as it does for a real empty
reader. A card inserted later raises the unit attention 06/28/00 on the next command; Linux
sends one when it polls the removable unit with TEST UNIT READY (media polling: the block
device's events_poll_msecs, which udisks turns on) or when the disk is opened.

Ours, not measured on the real reader: bcdDevice 1.00, the serial number (the transport needs a
unique one of 12 digits or more), the SCSI revision "3.00" (what Apple's earlier USB readers
report, as far as we know, not checked on this one), 504 mA, the burst of 16 packets.
"""

from __future__ import annotations

import os

from imacpro.devices.usb import scsi
from imacpro.devices.usb.device import SUPER, Identity
from imacpro.devices.usb.storage import MassStorage

VENDOR_APPLE, PRODUCT_SD_READER = 0x05AC, 0x8408


class SdCardReader(MassStorage):
    def __init__(self, image: str | os.PathLike | None = None, read_only: bool = False,
                 serial: str = "000000000001", speed: int = SUPER):
        identity = Identity(VENDOR_APPLE, PRODUCT_SD_READER, 0x0100, "APPLE", "SD Card Reader",
                            serial, usb=0x0300 if speed == SUPER else 0x0200,
                            max_power_ma=504)
        disk = scsi.ScsiDisk("APPLE", "SD Card Reader", "3.00", serial)
        if image is not None:
            disk.insert(image, read_only)
            disk.unit_attention = False      # in the slot from power-on: no change to report
        super().__init__(identity, disk, speed)
