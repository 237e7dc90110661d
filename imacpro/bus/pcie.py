"""The PCI Express capability (PCIe Base 4.0 §7.5.3), as ports and endpoints carry it.

It tells the OS what a function is (root port, switch upstream or downstream port, endpoint)
and what its link runs at:

    | off | register                                                                        |
    |-----|---------------------------------------------------------------------------------|
    | 02  | PCIe capabilities: version 2, device/port type 7:4, slot implemented 8          |
    | 04  | device capabilities: max payload 2:0, role-based error reporting 15 (every      |
    |     | PCIe 1.1 and later device; Linux keeps ASPM off for a device without it);       |
    |     | 08 device control (RW), 0A status                                               |
    | 0C  | link capabilities: max speed 3:0, max width 9:4, DLL active reporting 20,       |
    |     | port number 31:24; 10 link control (RW); 12 link status: speed, width, DLL up   |
    | 14  | slot capabilities; 18 slot control (RW); 1A slot status: presence detect 6      |
    | 1C  | root control (RW, root ports), root capabilities, 20 root status                |
    | 24  | device capabilities 2; 28 device control 2 (RW)                                 |
    | 2C  | link capabilities 2: supported speeds 7:1; 30 link control 2: target speed (RW) |

Links here are always up at their full width and speed: there is no link training, no
hot-plug and no power management to model.
"""

from __future__ import annotations

import struct

# PCI Express capability: the device/port type (bits 7:4 of its capabilities register).
CAP_PCI_EXPRESS = 0x10
ENDPOINT, ROOT_PORT, SWITCH_UPSTREAM, SWITCH_DOWNSTREAM = 0x0, 0x4, 0x5, 0x6
PCIE_CAP_VERSION = 2
SLOT_IMPLEMENTED = 1 << 8
LINK_SPEED = {2.5: 1, 5.0: 2, 8.0: 3}       # GT/s -> the link speed encoding
DLL_LINK_ACTIVE = 1 << 13                   # link status: the data link layer is up
DLL_ACTIVE_REPORTING = 1 << 20              # link capabilities: ports that report it
PRESENCE_DETECT = 1 << 6                    # slot status
ROLE_BASED_ERRORS = 1 << 15                 # device capabilities: PCIe 1.1 and later


def pcie_capability(port_type: int, gts: float, width: int, port_number: int = 0,
                    max_payload: int = 256) -> tuple[bytes, bytes]:
    """The PCI Express capability's body (after ID and next pointer, 0x3A bytes) and its
    writable mask, for a link up at `gts` GT/s × `width`."""
    speed = LINK_SPEED[gts]
    downstream = port_type in (ROOT_PORT, SWITCH_DOWNSTREAM)
    capabilities = PCIE_CAP_VERSION | port_type << 4 | (SLOT_IMPLEMENTED if downstream else 0)
    device_caps = ((max_payload.bit_length() - 8) & 0x7) | ROLE_BASED_ERRORS  # 128 << n
    link_caps = (speed | width << 4 | (DLL_ACTIVE_REPORTING if downstream else 0)
                 | port_number << 24)
    link_status = speed | width << 4 | (DLL_LINK_ACTIVE if downstream else 0)
    slot_status = PRESENCE_DETECT if downstream else 0
    link_caps2 = sum(2 << i for i in range(speed))              # supported speeds vector
    body = bytearray(0x3A)
    struct.pack_into("<H", body, 0x00, capabilities)
    struct.pack_into("<I", body, 0x02, device_caps)
    struct.pack_into("<I", body, 0x0A, link_caps)
    struct.pack_into("<H", body, 0x10, link_status)
    struct.pack_into("<H", body, 0x18, slot_status)
    struct.pack_into("<I", body, 0x2A, link_caps2)
    struct.pack_into("<H", body, 0x2E, speed)                   # link control 2: target speed
    writable = bytearray(0x3A)
    struct.pack_into("<H", writable, 0x06, 0x7CFF)              # device control
    struct.pack_into("<H", writable, 0x0E, 0x0DC3)              # link control
    if downstream:
        struct.pack_into("<H", writable, 0x16, 0x1FFF)          # slot control
    if port_type == ROOT_PORT:
        struct.pack_into("<H", writable, 0x1A, 0x001F)          # root control
    struct.pack_into("<H", writable, 0x26, 0x07FF)              # device control 2
    struct.pack_into("<H", writable, 0x2E, 0x0FFF)              # link control 2
    return bytes(body), bytes(writable)
