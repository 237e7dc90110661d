"""The USB HID class (Device Class Definition for HID 1.11) on the device framework: one HID
interface with one interrupt IN endpoint, fed from a bounded queue of input reports.

Descriptors (HID 1.11 §6.2):
    HID descriptor (0x21), in the configuration after the interface and before its endpoint:
        bLength 9, bDescriptorType 0x21, bcdHID, bCountryCode, bNumDescriptors 1,
        bDescriptorType 0x22, wDescriptorLength (the report descriptor's length)
    report descriptor (0x22): GET_DESCRIPTOR to the interface (bmRequestType 0x81,
        wValue 0x2200, wIndex the interface); 0x2100 gives the HID descriptor again.

Class requests (HID 1.11 §7.2; bmRequestType 0xA1 in, 0x21 out, wIndex the interface):
    GET_REPORT   0x01  wValue type << 8 | report ID (type 1 input, 2 output, 3 feature);
                       the current state as that report (an input report is not dequeued)
    GET_IDLE     0x02  wValue report ID; one byte, the idle rate in 4 ms units (0: never)
    GET_PROTOCOL 0x03  one byte: 0 boot, 1 report (boot-subclass interfaces only)
    SET_REPORT   0x09  the data stage is the report, its ID first when IDs are used
    SET_IDLE     0x0A  wValue duration << 8 | report ID (0: every report)
    SET_PROTOCOL 0x0B  wValue 0 boot, 1 report (boot-subclass interfaces only)

Reports reach the interrupt endpoint through a queue. A model queues each report with
`queue_report`, tagged motion (relative movement, a touch that only moved) or not (a key or
button that went down or up, a touch that began or ended). `data_in` hands out the oldest,
or NAKs (None) when there is none and calls `on_ready` at the next report. In boot protocol
each report goes out in its boot form (`boot_report`: keyboard 8 bytes, mouse 3+), or is
skipped when it has none.

Why the queue is bounded the way it is: a guest that stops reading must not make the
emulator grow without end, but a key report is the whole key state, so dropping one loses a
press or a release (a stuck key, a missing letter). So motion and state are bounded apart:
  - motion: at most MOTION_LIMIT queued; past it the oldest motion report is dropped (a
    model can first coalesce a new motion report into the unsent one before it,
    `merge_motion`, as a real mouse adds up its counts between two polls);
  - state: never dropped; the queue grows to QUEUE_LIMIT reports (about half a minute of
    typing at 8 ms a report), and past that `queue_report` raises QueueFull, so the caller
    (who can wait for the guest) learns it instead of a key being lost. `room` tells in
    advance how many more state reports fit, so a model checks before it changes anything.
Nothing is queued while the device is unconfigured: there is no host to read it, as on a
real bus (the model's state, e.g. a key held, still changes).

The idle rate is kept and answered (GET_IDLE) but nothing repeats reports on a timer: the
device has no clock, and the guest's USB HID drivers set idle 0 (report only on change)
anyway; keyboard autorepeat is the host's job.

Saved state: the queue (each report and its motion tag), the idle rates, the protocol, and
whether the host is waiting on a NAK; plus the model's (`save_model`/`check_model`/
`apply_model`).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.usb.device import (
    DIR_IN, INTERRUPT, TO_INTERFACE, TYPE_CLASS, Endpoint, Identity, Interface, Setup,
    Stall, UsbDevice)

# Class descriptor types (HID 1.11 §7.1).
HID_DESCRIPTOR, REPORT_DESCRIPTOR = 0x21, 0x22

# Class requests (HID 1.11 §7.2).
GET_REPORT, GET_IDLE, GET_PROTOCOL = 0x01, 0x02, 0x03
SET_REPORT, SET_IDLE, SET_PROTOCOL = 0x09, 0x0A, 0x0B

# Report types, wValue's high byte in GET_REPORT/SET_REPORT.
INPUT, OUTPUT, FEATURE = 1, 2, 3

# Protocols (GET/SET_PROTOCOL) and the interface's subclass and protocol codes.
BOOT_PROTOCOL, REPORT_PROTOCOL = 0, 1
CLASS_HID, SUBCLASS_BOOT = 3, 1
NO_BOOT, BOOT_KEYBOARD, BOOT_MOUSE = 0, 1, 2

COUNTRY_NONE, COUNTRY_US = 0, 33       # bCountryCode (HID 1.11 §6.2.1)

HID_ENDPOINT = 0x81                    # the one interrupt IN endpoint
QUEUE_LIMIT = 4096                     # reports queued at most
MOTION_LIMIT = 32                      # of them, motion reports at most
MAX_REPORT = 64                        # a report fits one full-speed interrupt packet


class QueueFull(OverflowError):
    """The guest has not read the reports queued: a key or button change cannot be
    queued without losing one (see the module docstring)."""


def hid_descriptor(report_length: int, country: int = COUNTRY_NONE,
                   bcd_hid: int = 0x0111) -> bytes:
    return struct.pack("<BBHBBBH", 9, HID_DESCRIPTOR, bcd_hid, country, 1, REPORT_DESCRIPTOR,
                       report_length)


@dataclass
class _Checked:
    queue: list
    idle: dict
    protocol: int
    waiting: bool
    model: object


class HidDevice(UsbDevice):
    """A device whose interface 0 is a HID interface (see the module docstring).

    A model passes its report descriptor and, for a boot-subclass interface, which boot
    protocol it speaks (BOOT_KEYBOARD or BOOT_MOUSE), and overrides what it answers:
    `input_report`, `boot_report`, `set_output_report`, `feature_report`,
    `set_feature_report`, `merge_motion`, `hid_reset`, and its saved state."""

    boot_report_id = 0             # the report whose boot form GET_REPORT gives in boot

    def __init__(self, identity: Identity, speed: int, report_descriptor: bytes, *,
                 boot: int = NO_BOOT, country: int = COUNTRY_NONE, bcd_hid: int = 0x0111,
                 max_packet: int = 64, interval: int = 8, default_idle: int = 0,
                 interface_name: str = ""):
        if boot not in (NO_BOOT, BOOT_KEYBOARD, BOOT_MOUSE):
            raise ValueError(f"unknown boot protocol {boot}")
        self.report_descriptor = bytes(report_descriptor)
        endpoint = Endpoint(HID_ENDPOINT, INTERRUPT, max_packet, interval)
        interface = Interface(0, CLASS_HID, SUBCLASS_BOOT if boot else 0, boot, (endpoint,),
                              hid_descriptor(len(self.report_descriptor), country, bcd_hid),
                              interface_name)
        super().__init__(identity, (interface,), speed)
        self.boot = boot
        self.default_idle = default_idle
        self.queue: deque[tuple[bytes, bool]] = deque()  # (report, motion), oldest first
        self.motions = 0                             # motion reports in the queue
        self.idle: dict[int, int] = {0: default_idle}
        self.protocol = REPORT_PROTOCOL              # HID 1.11 §7.2.6: the power-on default
        self.waiting = False                         # the host has a NAKed IN pending

    # --- queue --------------------------------------------------------------------------

    @property
    def room(self) -> int:
        """How many more state (non-motion) reports can be queued."""
        if not self.configuration:
            return QUEUE_LIMIT                       # nothing is queued: nothing to refuse
        return QUEUE_LIMIT - (len(self.queue) - self.motions)

    def queue_report(self, report: bytes, *, motion: bool = False) -> None:
        """Queue an input report (report-protocol form, ID first when IDs are used)."""
        report = bytes(report)
        if not 0 < len(report) <= MAX_REPORT:
            raise ValueError(f"a report is 1 to {MAX_REPORT} bytes, not {len(report)}")
        if not self.configuration:
            return
        if motion and self.queue and self.queue[-1][1]:
            merged = self.merge_motion(self.queue[-1][0], report)
            if merged is not None:
                self.queue[-1] = (merged, True)      # not sent yet: no need to wake anyone
                return
        if not motion and self.room <= 0:
            raise QueueFull(f"{type(self).__name__}: {QUEUE_LIMIT} reports queued and none "
                            "read")
        self.queue.append((report, motion))
        self.motions += motion
        if self.motions > MOTION_LIMIT or len(self.queue) > QUEUE_LIMIT:
            self._drop_oldest_motion()
        if self.waiting:
            self.waiting = False
            self.on_ready(HID_ENDPOINT)              # last: the host may read at once

    def _drop_oldest_motion(self) -> None:
        for n, (_, motion) in enumerate(self.queue):
            if motion:
                del self.queue[n]
                self.motions -= 1
                return

    def _set_queue(self, items) -> None:
        self.queue = deque(items)
        self.motions = sum(1 for _, motion in self.queue if motion)

    def endpoint_in(self, address: int, length: int) -> bytes | None:
        while self.queue:
            report, motion = self.queue.popleft()
            self.motions -= motion
            if self.protocol == BOOT_PROTOCOL:
                report = self.boot_report(report)
                if report is None:                   # no boot form: skipped
                    continue
            # Longer than the host asked: cut (a real device would babble).
            return report[:length]
        self.waiting = True
        return None

    # --- descriptors and class requests -------------------------------------------------

    def class_descriptor(self, setup: Setup) -> bytes:
        kind = setup.value >> 8
        if setup.recipient != TO_INTERFACE or setup.index != self.interfaces[0].number:
            raise Stall
        if kind == REPORT_DESCRIPTOR:
            return self.report_descriptor
        if kind == HID_DESCRIPTOR:
            return self.interfaces[0].extra
        raise Stall

    def class_request(self, setup: Setup, data: bytes) -> bytes:
        if (setup.kind != TYPE_CLASS or setup.recipient != TO_INTERFACE
                or setup.index != self.interfaces[0].number or not self.configuration):
            raise Stall
        request, kind, report_id = setup.request, setup.value >> 8, setup.value & 0xFF
        reading = bool(setup.request_type & DIR_IN)
        if request == GET_REPORT and reading:
            reply = self._get_report(kind, report_id)
            if reply is None:
                raise Stall
            return reply
        if request == SET_REPORT and not reading:
            if kind == OUTPUT:
                self.set_output_report(report_id, data)
            elif kind == FEATURE:
                self.set_feature_report(report_id, data)
            else:
                raise Stall
            return b""
        if request == GET_IDLE and reading:
            return bytes((self.idle.get(report_id, self.idle.get(0, 0)),))
        if request == SET_IDLE and not reading:
            if report_id == 0:                       # every report: one rate for all
                self.idle = {0: kind}
            else:
                self.idle[report_id] = kind
            return b""
        if request in (GET_PROTOCOL, SET_PROTOCOL) and self.boot:
            if request == GET_PROTOCOL and reading:
                return bytes((self.protocol,))
            if request == SET_PROTOCOL and not reading and setup.value in (0, 1):
                self.protocol = setup.value
                return b""
        raise Stall

    def _get_report(self, kind: int, report_id: int) -> bytes | None:
        if kind == INPUT and self.protocol == BOOT_PROTOCOL:
            if report_id != 0:                       # boot reports have no ID
                return None
            report = self.input_report(self.boot_report_id)
            return None if report is None else self.boot_report(report)
        if kind == INPUT:
            return self.input_report(report_id)
        if kind == FEATURE:
            return self.feature_report(report_id)
        return None

    # --- what a model overrides ---------------------------------------------------------

    def input_report(self, report_id: int) -> bytes | None:
        """The current state as input report `report_id`, report-protocol form (in boot
        protocol, report `boot_report_id` through `boot_report`); None: stall."""
        return None

    def boot_report(self, report: bytes) -> bytes | None:
        """A queued report's boot-protocol form, or None if it has none."""
        return None

    def set_output_report(self, report_id: int, data: bytes) -> None:
        raise Stall

    def feature_report(self, report_id: int) -> bytes | None:
        return None

    def set_feature_report(self, report_id: int, data: bytes) -> None:
        raise Stall

    def merge_motion(self, older: bytes, newer: bytes) -> bytes | None:
        """Two motion reports as one (the older not sent yet), or None to keep both."""
        return None

    def hid_reset(self) -> None:
        """A port reset: the model's device-side state returns to power-on (what the user
        holds down stays held)."""

    def save_model(self) -> dict:
        return {}

    def check_model(self, state: dict) -> object:
        return None

    def apply_model(self, checked: object) -> None:
        pass

    # --- framework hooks ----------------------------------------------------------------

    def configured(self, value: int) -> None:
        self._set_queue(())
        self.waiting = False

    def endpoint_reset(self, address: int) -> None:
        self.waiting = False

    def device_reset(self) -> None:
        self._set_queue(())
        self.idle = {0: self.default_idle}
        self.protocol = REPORT_PROTOCOL
        self.waiting = False
        self.hid_reset()

    def save_extra(self) -> dict:
        return {"queue": [[report, motion] for report, motion in self.queue],
                "idle": [[report_id, rate] for report_id, rate in sorted(self.idle.items())],
                "protocol": self.protocol, "waiting": self.waiting, **self.save_model()}

    def check_extra(self, state: dict) -> object:
        where = type(self).__name__
        queue = []
        for n, item in enumerate(_state.list_field(state, "queue", where,
                                                   max_length=QUEUE_LIMIT)):
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes)
                    or not 0 < len(item[0]) <= MAX_REPORT or not isinstance(item[1], bool)):
                raise StateError(f"{where}.queue[{n}]: not [report bytes, motion bool]")
            queue.append((item[0], item[1]))
        if sum(1 for _, motion in queue if motion) > MOTION_LIMIT:
            raise StateError(f"{where}.queue: more than {MOTION_LIMIT} motion reports")
        idle = {}
        for n, item in enumerate(_state.list_field(state, "idle", where, max_length=256)):
            if not isinstance(item, list) or len(item) != 2:
                raise StateError(f"{where}.idle[{n}]: not [report ID, rate]")
            report_id = _state.integer(item[0], f"{where}.idle[{n}]", 0, 0xFF)
            idle[report_id] = _state.integer(item[1], f"{where}.idle[{n}]", 0, 0xFF)
        protocol = _state.int_field(state, "protocol", where, 0, 1)
        if protocol == BOOT_PROTOCOL and not self.boot:
            raise StateError(f"{where}.protocol: boot protocol on a non-boot interface")
        waiting = _state.bool_field(state, "waiting", where)
        return _Checked(queue, idle, protocol, waiting, self.check_model(state))

    def apply_extra(self, checked: object) -> None:
        assert isinstance(checked, _Checked)
        self._set_queue(checked.queue)
        self.idle = dict(checked.idle)
        self.protocol = checked.protocol
        self.waiting = checked.waiting
        self.apply_model(checked.model)
