"""The xHCI's register map and fixed parameters (xHCI 1.1 chapter 5), as the iMac Pro's PCH
controller (Intel 200-series/C422 xHCI, 8086:a2af) presents them to Linux.

BAR0, 64 KiB, 64-bit:

    | offset          | block                                                           |
    |-----------------|-----------------------------------------------------------------|
    | 0x0000          | capability registers (read-only)                                |
    | 0x0080          | operational registers; ports at 0x0480 + 0x10 × (port - 1)      |
    | 0x2000 (RTSOFF) | runtime: MFINDEX, interrupters at 0x2020 + 0x20 × n            |
    | 0x3000 (DBOFF)  | doorbells: 0 the command ring, n slot n's endpoints             |
    | 0x8000 (xECP)   | extended capabilities: legacy support, supported protocols      |

Capability registers:

    | off | register   | value                                                              |
    |-----|------------|--------------------------------------------------------------------|
    | 00  | CAPLENGTH  | 0x80; HCIVERSION (02) 1.0.0, as Intel's PCH xHCIs report           |
    | 04  | HCSPARAMS1 | MaxSlots 64, MaxIntrs 8, MaxPorts 26                               |
    | 08  | HCSPARAMS2 | IST 2 microframes, ERST Max 2^4 segments, no scratchpad buffers    |
    | 0C  | HCSPARAMS3 | U1 exit latency 0, U2 exit latency 0                               |
    | 10  | HCCPARAMS1 | AC64, 32-byte contexts, no port power control, MaxPSASize 0,      |
    |     |            | xECP 0x8000                                                        |
    | 14  | DBOFF      | 0x3000                                                             |
    | 18  | RTSOFF     | 0x2000                                                             |
    | 1C  | HCCPARAMS2 | 0                                                                  |

Ports: 1-16 speak USB 2 and 17-26 USB 3 (the PCH's 16 USB 2 and 10 USB 3 lanes); which of
them the iMac Pro wires to what is the board's business (devices/usb/xhci/controller.py).

Operational registers (offset from 0x80):

    | off | register | fields                                                              |
    |-----|----------|---------------------------------------------------------------------|
    | 00  | USBCMD   | R/S 0, HCRST 1, INTE 2, HSEE 3, CSS 8, CRS 9, EWE 10               |
    | 04  | USBSTS   | HCH 0, HSE 2 (RW1C), EINT 3 (RW1C), PCD 4 (RW1C), SSS 8, RSS 9,    |
    |     |          | SRE 10 (RW1C), CNR 11, HCE 12                                       |
    | 08  | PAGESIZE | 1 (4 KiB pages)                                                     |
    | 14  | DNCTRL   | notification enables (kept)                                         |
    | 18  | CRCR     | RCS 0, CS 1, CA 2, CRR 3 (RO), command ring pointer 63:6; reads 0  |
    |     |          | but CRR                                                             |
    | 30  | DCBAAP   | device context base address array pointer 63:6                     |
    | 38  | CONFIG   | MaxSlotsEn 7:0, U3E 8, CIE 9                                        |

Interrupter n (runtime base + 0x20 + 0x20 × n): IMAN (IP 0 RW1C, IE 1), IMOD (interval
15:0, counter 31:16), ERSTSZ (15:0), ERSTBA (8 bytes, 63:6), ERDP (8 bytes: DESI 2:0,
EHB 3 RW1C, pointer 63:4).

Extended capabilities: USB Legacy Support (ID 1) at 0x8000 with USBLEGSUP (BIOS-owned
semaphore 16, OS-owned 24) and USBLEGCTLSTS; Supported Protocol (ID 2) for USB 2.0 at 0x8020
(ports 1-16) and USB 3.0 at 0x8030 (ports 17-26), with the default speed IDs and slot type 0.
"""

from __future__ import annotations

import struct

BAR_SIZE = 64 * 1024
CAPLENGTH = 0x80
HCIVERSION = 0x0100
MAX_SLOTS, MAX_INTERRUPTERS = 64, 8
USB2_PORTS = range(1, 17)
USB3_PORTS = range(17, 27)
MAX_PORTS = 26
ERST_MAX = 4                                   # up to 16 event ring segments
IST = 2
RTSOFF, DBOFF, XECP = 0x2000, 0x3000, 0x8000
LEGACY_SUPPORT, USB2_PROTOCOL, USB3_PROTOCOL, XECP_END = 0x8000, 0x8020, 0x8030, 0x8040

HCSPARAMS1 = MAX_PORTS << 24 | MAX_INTERRUPTERS << 8 | MAX_SLOTS
HCSPARAMS2 = ERST_MAX << 4 | IST
HCSPARAMS3 = 0
HCCPARAMS1 = (XECP // 4) << 16 | 1             # AC64
HCCPARAMS2 = 0

# Operational registers (offsets from CAPLENGTH).
USBCMD, USBSTS, PAGESIZE, DNCTRL, CRCR, DCBAAP, CONFIG = 0x00, 0x04, 0x08, 0x14, 0x18, 0x30, 0x38
PORTS = 0x400
RUN, HCRST, INTE, HSEE, CSS, CRS, EWE = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 8, 1 << 9, 1 << 10
USBCMD_WRITABLE = RUN | INTE | HSEE | EWE | 1 << 11 | 1 << 13   # EU3S, CME: kept
HCH, HSE, EINT, PCD, SSS, RSS, SRE, CNR, HCE = (1 << 0, 1 << 2, 1 << 3, 1 << 4, 1 << 8,
                                                 1 << 9, 1 << 10, 1 << 11, 1 << 12)
USBSTS_W1C = HSE | EINT | PCD | SRE
CRCR_RCS, CRCR_CS, CRCR_CA, CRCR_CRR = 1 << 0, 1 << 1, 1 << 2, 1 << 3

# Interrupter registers (offsets within an interrupter's 0x20 bytes).
IMAN, IMOD, ERSTSZ, ERSTBA, ERDP = 0x00, 0x04, 0x08, 0x10, 0x18
IMAN_IP, IMAN_IE = 1 << 0, 1 << 1
ERDP_EHB = 1 << 3
IMOD_DEFAULT = 4000                            # 1 ms in 250 ns units (the reset value)

# USBLEGSUP semaphores.
BIOS_OWNED, OS_OWNED = 1 << 16, 1 << 24


CAPABILITY_REGISTERS = struct.pack("<BBHIIIIIII", CAPLENGTH, 0, HCIVERSION, HCSPARAMS1,
                                   HCSPARAMS2, HCSPARAMS3, HCCPARAMS1, DBOFF, RTSOFF,
                                   HCCPARAMS2)


def _protocol(major: int, ports: range, next_dwords: int) -> bytes:
    return struct.pack("<I4sII", major << 24 | next_dwords << 8 | 2, b"USB ",
                       len(ports) << 8 | ports.start, 0)


# 0x8000-0x803F: legacy support (its registers are live: see the controller), then the two
# Supported Protocol capabilities.
EXTENDED_CAPABILITIES = struct.pack(
    "<II", (USB2_PROTOCOL - LEGACY_SUPPORT) // 4 << 8 | 1, 0).ljust(
        USB2_PROTOCOL - LEGACY_SUPPORT, b"\0") + \
    _protocol(0x02, USB2_PORTS, (USB3_PROTOCOL - USB2_PROTOCOL) // 4) + \
    _protocol(0x03, USB3_PORTS, 0)
