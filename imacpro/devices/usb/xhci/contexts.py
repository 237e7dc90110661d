"""Device, input, slot and endpoint contexts (xHCI 1.1 §6.2), 32 bytes each (HCCPARAMS1.CSZ 0).

The Device Context Base Address Array (DCBAAP) holds, for slot n, the address of its output
device context: the slot context, then endpoint contexts 1 to 31 (DCI 1 is the default
control endpoint; DCI 2n is OUT endpoint n, 2n + 1 IN endpoint n). Commands give an input
context: an input control context (drop flags D2-D31 in dword 0, add flags A0-A31 in
dword 1), then a slot context and endpoint contexts laid out as in the device context.

Slot context:
    | dword | fields                                                                      |
    |-------|-----------------------------------------------------------------------------|
    | 0     | route string 19:0, speed 23:20, MTT 25, hub 26, context entries 31:27      |
    | 1     | max exit latency 15:0, root hub port number 23:16, number of ports 31:24   |
    | 2     | TT hub slot 7:0, TT port 15:8, TTT 17:16, interrupter target 31:22         |
    | 3     | USB device address 7:0, slot state 31:27 (written by the controller)       |

Endpoint context:
    | dword | fields                                                                      |
    |-------|-----------------------------------------------------------------------------|
    | 0     | state 2:0 (written by the controller), mult 9:8, max streams 14:10,        |
    |       | interval 23:16                                                              |
    | 1     | CErr 2:1, type 5:3, max burst 15:8, max packet size 31:16                  |
    | 2-3   | TR dequeue pointer 63:4, dequeue cycle state 0                             |
    | 4     | average TRB length 15:0, max ESIT payload 31:16                             |
"""

from __future__ import annotations

import struct

SIZE = 32
ENTRIES = 32                       # slot context + 31 endpoint contexts
DEVICE_CONTEXT = SIZE * ENTRIES
INPUT_CONTEXT = SIZE * (ENTRIES + 1)

# Slot states (dword 3, 31:27).
SLOT_DISABLED, SLOT_DEFAULT, SLOT_ADDRESSED, SLOT_CONFIGURED = 0, 1, 2, 3
# Endpoint states (dword 0, 2:0).
EP_DISABLED, EP_RUNNING, EP_HALTED, EP_STOPPED, EP_ERROR = 0, 1, 2, 3, 4
# Endpoint types (dword 1, 5:3).
ISOCH_OUT, BULK_OUT, INTERRUPT_OUT, CONTROL = 1, 2, 3, 4
ISOCH_IN, BULK_IN, INTERRUPT_IN = 5, 6, 7


def dwords(raw: bytes) -> list[int]:
    return list(struct.unpack("<8I", raw[:SIZE]))


def pack(words: list[int]) -> bytes:
    return struct.pack("<8I", *(w & 0xFFFF_FFFF for w in words))


def dci_address(dci: int) -> int:
    """The USB endpoint address of device context index `dci` (2 to 31)."""
    return dci >> 1 | (0x80 if dci & 1 else 0)


# --- slot context --------------------------------------------------------------------------

def route_string(slot: list[int]) -> int:
    return slot[0] & 0xFFFFF


def context_entries(slot: list[int]) -> int:
    return slot[0] >> 27


def root_port(slot: list[int]) -> int:
    return slot[1] >> 16 & 0xFF


def interrupter_target(slot: list[int]) -> int:
    return slot[2] >> 22


def slot_state(slot: list[int]) -> int:
    return slot[3] >> 27


def set_slot_state(slot: list[int], state: int, address: int) -> None:
    slot[3] = (slot[3] & 0x07FF_FF00) | state << 27 | address & 0xFF


def set_context_entries(slot: list[int], entries: int) -> None:
    slot[0] = slot[0] & 0x07FF_FFFF | entries << 27


# --- endpoint context ----------------------------------------------------------------------

def ep_state(ep: list[int]) -> int:
    return ep[0] & 7


def set_ep_state(ep: list[int], state: int) -> None:
    ep[0] = ep[0] & ~7 | state


def ep_type(ep: list[int]) -> int:
    return ep[1] >> 3 & 7


def service_interval_ns(ep: list[int]) -> int:
    """An interrupt endpoint's service interval, 125 us x 2^Interval (§6.2.3.6); 0 for the
    other types, which run as fast as their TDs come."""
    if ep_type(ep) not in (INTERRUPT_IN, INTERRUPT_OUT):
        return 0
    return 125_000 << min(ep[0] >> 16 & 0xFF, 15)


def max_packet(ep: list[int]) -> int:
    return ep[1] >> 16


def dequeue(ep: list[int]) -> tuple[int, int]:
    """(TR dequeue pointer, dequeue cycle state)."""
    value = ep[2] | ep[3] << 32
    return value & ~0xF, value & 1


def set_dequeue(ep: list[int], pointer: int, cycle: int) -> None:
    value = pointer & ~0xF | cycle & 1
    ep[2], ep[3] = value & 0xFFFF_FFFF, value >> 32
