"""Transfer Request Blocks: the 16-byte unit of every xHCI ring (xHCI 1.1 §6.4).

    | dword | bits                                                                        |
    |-------|-----------------------------------------------------------------------------|
    | 0-1   | parameter: a data buffer pointer, the immediate data, a context pointer    |
    | 2     | status: transfer length 16:0 (TD size 21:17), interrupter target 31:22;    |
    |       | in an event: the completion parameter 23:0 and completion code 31:24       |
    | 3     | control: cycle 0, ENT/TC 1, ISP 2, NS 3, CH 4, IOC 5, IDT 6, BEI 9,        |
    |       | TRB type 15:10, and per type: DIR 16, TRT 17:16, slot ID 31:24, ...       |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SIZE = 16
_LAYOUT = struct.Struct("<QII")

# TRB types (Table 6-91).
NORMAL, SETUP, DATA, STATUS, ISOCH, LINK, EVENT_DATA, TR_NOOP = 1, 2, 3, 4, 5, 6, 7, 8
ENABLE_SLOT, DISABLE_SLOT, ADDRESS_DEVICE, CONFIGURE_ENDPOINT = 9, 10, 11, 12
EVALUATE_CONTEXT, RESET_ENDPOINT, STOP_ENDPOINT, SET_TR_DEQUEUE = 13, 14, 15, 16
RESET_DEVICE, FORCE_EVENT, NEGOTIATE_BANDWIDTH, SET_LATENCY_TOLERANCE = 17, 18, 19, 20
GET_PORT_BANDWIDTH, FORCE_HEADER, COMMAND_NOOP = 21, 22, 23
TRANSFER_EVENT, COMMAND_COMPLETION, PORT_STATUS_CHANGE = 32, 33, 34
HOST_CONTROLLER_EVENT, MFINDEX_WRAP = 37, 39

# Completion codes (Table 6-90).
SUCCESS, DATA_BUFFER_ERROR, BABBLE, TRANSACTION_ERROR, TRB_ERROR, STALL = 1, 2, 3, 4, 5, 6
RESOURCE_ERROR, NO_SLOTS, SLOT_NOT_ENABLED, ENDPOINT_NOT_ENABLED = 7, 9, 11, 12
SHORT_PACKET, PARAMETER_ERROR, CONTEXT_STATE_ERROR, EVENT_RING_FULL = 13, 17, 19, 21
INCOMPATIBLE_DEVICE, COMMAND_RING_STOPPED, COMMAND_ABORTED, STOPPED = 22, 24, 25, 26
STOPPED_LENGTH_INVALID = 27

# Control bits.
CYCLE, TOGGLE_CYCLE, ENT = 1 << 0, 1 << 1, 1 << 1
ISP, CHAIN, IOC, IDT, BEI = 1 << 2, 1 << 4, 1 << 5, 1 << 6, 1 << 9
DIR_IN = 1 << 16
EVENT_DATA_FLAG = 1 << 2        # in a transfer event: the parameter is an Event Data TRB's
BSR = 1 << 9                    # Address Device: block SET_ADDRESS
DECONFIGURE = 1 << 9            # Configure Endpoint
TSP = 1 << 9                    # Reset Endpoint: transfer state preserve


@dataclass(frozen=True)
class Trb:
    parameter: int
    status: int
    control: int

    @classmethod
    def unpack(cls, raw: bytes) -> Trb:
        return cls(*_LAYOUT.unpack(raw))

    def pack(self) -> bytes:
        return _LAYOUT.pack(self.parameter, self.status, self.control)

    @property
    def type(self) -> int:
        return self.control >> 10 & 0x3F

    @property
    def cycle(self) -> int:
        return self.control & CYCLE

    @property
    def length(self) -> int:
        """A transfer TRB's buffer length."""
        return self.status & 0x1FFFF

    @property
    def slot(self) -> int:
        """A command's slot ID."""
        return self.control >> 24

    @property
    def endpoint(self) -> int:
        """A command's endpoint ID (the DCI)."""
        return self.control >> 16 & 0x1F

    def has(self, flag: int) -> bool:
        return bool(self.control & flag)


def event(kind: int, parameter: int = 0, code: int = SUCCESS, completion: int = 0,
          slot: int = 0, endpoint: int = 0, flags: int = 0) -> Trb:
    """An event TRB without its cycle bit (the event ring sets it)."""
    return Trb(parameter, code << 24 | completion & 0xFFFFFF,
               slot << 24 | endpoint << 16 | kind << 10 | flags)
