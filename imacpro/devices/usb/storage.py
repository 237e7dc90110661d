"""USB mass storage, Bulk-Only Transport (USB Mass Storage Class Bulk-Only Transport 1.0):
interface class 08h, subclass 06h (SCSI transparent), protocol 50h (BBB), one logical unit
(scsi.ScsiDisk) behind bulk IN 0x81 and bulk OUT 0x02: 1024-byte packets in bursts of 16 at
SuperSpeed, 512 at high speed, 64 at full speed.

    CBW, 31 bytes, host to device on 0x02 (little-endian):
        0  dCBWSignature 43425355h ("USBC")   4  dCBWTag (echoed in the CSW)
        8  dCBWDataTransferLength (the host's Hi/Ho/Hn)   12  bmCBWFlags (bit 7: IN)
       13  bCBWLUN (3:0)   14  bCBWCBLength (4:0, 1..16)   15  CBWCB[16]
    CSW, 13 bytes, device to host on 0x81:
        0  dCSWSignature 53425355h ("USBS")   4  dCSWTag   8  dCSWDataResidue
       12  bCSWStatus: 0 passed, 1 failed, 2 phase error

Class requests on endpoint 0: GET MAX LUN (A1h FEh, answers 0) and Bulk-Only Mass Storage
Reset (21h FFh: ready for a CBW; halts stay until the host clears them, §3.1).

A CBW that is not valid (§6.2.1: not 31 bytes, a wrong signature, or sent while a command is
still under way) stalls both bulk endpoints until a Reset Recovery (§6.6.1: the reset, then
CLEAR_FEATURE(ENDPOINT_HALT) on both; clearing a halt without the reset stalls again). A valid
CBW that is not meaningful (§6.2.2: reserved bits, a LUN other than 0, a CB length outside
1..16) ends in a phase error. A meaningful one runs, and the host's expectation (Hn: no data,
Hi: receive, Ho: send dCBWDataTransferLength bytes) meets the device's (Dn, Di, Do) as §6.7
says, numbered as its thirteen cases:

    Hn: 1 Dn  status, residue 0        2 Di, 3 Do  phase error
    Hi: 4 Dn  STALL IN, residue Hi     5 Di < Hi  the data, STALL IN, residue Hi - Di
        6 Di = Hi  the data            7 Di > Hi  Hi bytes, phase error
        8 Do  STALL IN, phase error
    Ho: 9 Dn  STALL OUT, residue Ho    10 Di  STALL OUT, phase error
       11 Do < Ho  Do bytes taken (the rest of that transfer dropped), STALL OUT if
                   more comes, residue Ho - Do
       12 Do = Ho  the data            13 Do > Ho  STALL OUT, phase error

A command that fails once its data has started (the medium pulled out, a host I/O error)
stalls the pipe of its data and reports failed with the residue of what did not move; the
host reads the sense with REQUEST SENSE. "STALL" is the endpoint halted (UsbDevice.halt): the
host clears it with CLEAR_FEATURE(ENDPOINT_HALT) and reads the CSW, which stays ready. An IN
before a CBW or during an OUT data stage is NAKed; `on_ready(0x81)` says when the data or
CSW is there.

`UsbFlashDrive` is the drive for a disk image the user attaches: 1209:0001, pid.codes's "Test
PID" (1209 is the vendor ID pid.codes shares among open projects; 0001 names no product, and
lsusb shows "Generic pid.codes Test PID"; pid.codes asks that it not ship in distributed
devices, so a product ID of our own from them should replace it), manufacturer "imacpro",
product "imacpro USB flash drive", SCSI "imacpro " / "USB Flash Drive" / "1.00", a serial of
24 hex digits derived from the image's path (the transport asks for a unique one of at least
12, §4.1.1). These are our values, not a real drive's. The Apple SD reader is sdreader.py.

Saved state: the transport's phase with the CBW's tag, length and direction, the bytes moved,
the CSW's status, and the logical unit's own state (scsi.py).
"""

from __future__ import annotations

import hashlib
import os
import struct

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.usb import scsi
from imacpro.devices.usb.device import (BULK, FULL, HIGH, LOW, SUPER, TO_INTERFACE, TYPE_CLASS,
                                        Endpoint, Identity, Interface, Setup, Stall, UsbDevice)

BULK_IN, BULK_OUT = 0x81, 0x02
CLASS_MASS_STORAGE, SUBCLASS_SCSI, PROTOCOL_BULK_ONLY = 0x08, 0x06, 0x50
GET_MAX_LUN, MASS_STORAGE_RESET = 0xFE, 0xFF
CBW_SIGNATURE, CSW_SIGNATURE = 0x43425355, 0x53425355
CBW_LENGTH, CSW_LENGTH = 31, 13
PASSED, FAILED, PHASE_ERROR = 0, 1, 2
SUPER_BURST = 15                        # bMaxBurst: 16 packets per burst

# Transport phases.
COMMAND, DATA_IN, DATA_OUT, STATUS, RECOVERY = range(5)
PHASES = ("command", "data in", "data out", "status", "reset recovery")


def bulk_packet(speed: int) -> int:
    if speed == LOW:
        raise ValueError("bulk endpoints do not exist at low speed (USB 2.0 §5.8.3)")
    return {SUPER: 1024, HIGH: 512, FULL: 64}[speed]


def storage_interface(speed: int) -> Interface:
    packet, burst = bulk_packet(speed), SUPER_BURST if speed == SUPER else 0
    return Interface(0, CLASS_MASS_STORAGE, SUBCLASS_SCSI, PROTOCOL_BULK_ONLY, (
        Endpoint(BULK_IN, BULK, packet, max_burst=burst),
        Endpoint(BULK_OUT, BULK, packet, max_burst=burst)))


class MassStorage(UsbDevice):
    """A bulk-only mass-storage device with one logical unit (see the module docstring)."""

    def __init__(self, identity: Identity, disk: scsi.ScsiDisk, speed: int = HIGH):
        super().__init__(identity, (storage_interface(speed),), speed)
        self.disk = disk
        self._idle()

    def _idle(self) -> None:
        self.phase = COMMAND
        self.tag = 0
        self.host_length = 0             # dCBWDataTransferLength
        self.host_in = False             # bmCBWFlags bit 7
        self.device_length = 0           # what the device moves in the data stage
        self.moved = 0                   # bytes of data the device sent or took
        self.offered = 0                 # bytes the host sent in a data-out stage
        self.csw_status = PASSED

    # --- the medium -------------------------------------------------------------------------

    def insert(self, path: str | os.PathLike, read_only: bool = False) -> None:
        self.disk.insert(path, read_only)

    def eject(self) -> None:
        self.disk.eject()

    # --- endpoint 0 -------------------------------------------------------------------------

    def class_request(self, setup: Setup, data: bytes) -> bytes:
        if setup.kind != TYPE_CLASS or setup.recipient != TO_INTERFACE or setup.index != 0 \
                or not self.configuration or setup.value != 0:
            raise Stall
        if setup.request == GET_MAX_LUN and setup.device_to_host and setup.length == 1:
            return b"\x00"
        if setup.request == MASS_STORAGE_RESET and not setup.device_to_host \
                and setup.length == 0:
            self.disk.abort()
            self._idle()
            return b""
        raise Stall

    def configured(self, value: int) -> None:
        self.disk.abort()
        self._idle()

    def device_reset(self) -> None:
        self.disk.reset()
        self._idle()

    # --- bulk OUT: CBWs and data-out stages -------------------------------------------------

    def endpoint_out(self, address: int, data: bytes) -> bool:
        if self.phase == RECOVERY:
            self.halt(BULK_OUT)             # §6.6.1: until the Reset Recovery
            raise Stall
        if self.phase == COMMAND:
            self._command(bytes(data))
        elif self.phase == DATA_OUT:
            self._data_out(data)
        else:
            self._invalid_cbw()             # a CBW before the CSW is not valid (§6.2.1)
        return True

    def _invalid_cbw(self) -> None:
        self.disk.abort()
        self._idle()
        self.phase = RECOVERY
        self.halt(BULK_IN)
        self.halt(BULK_OUT)

    def _command(self, cbw: bytes) -> None:
        if len(cbw) != CBW_LENGTH or struct.unpack_from("<I", cbw)[0] != CBW_SIGNATURE:
            self._invalid_cbw()
            return
        tag, length, flags, lun, cb_length = struct.unpack_from("<IIBBB", cbw, 4)
        self.tag, self.host_length, self.host_in = tag, length, bool(flags & 0x80)
        if flags & 0x7F or lun != 0 or cb_length & 0xE0 or not 1 <= cb_length <= 16:
            self._phase_error(stall=True)  # not meaningful (§6.2.2)
            return
        direction, device_length = self.disk.begin(cbw[15:15 + cb_length])
        self._dispatch(direction, device_length)
        self.on_ready(BULK_IN)

    def _dispatch(self, direction: int, device_length: int) -> None:
        """The thirteen cases (§6.7) at the CBW: start the data stage or go to status."""
        host = 0 if self.host_length == 0 else (scsi.IN if self.host_in else scsi.OUT)
        if direction == scsi.NONE:                      # cases 1, 4, 9
            self._finish(self.disk.end(), stall=host != 0)
        elif host == 0 or host != direction:            # cases 2, 3, 8, 10
            self._phase_error(stall=host != 0)
        elif direction == scsi.OUT and device_length > self.host_length:   # case 13
            self._phase_error(stall=True)
        else:                                           # cases 5, 6, 7, 11, 12
            self.device_length = min(device_length, self.host_length)
            self.phase = DATA_IN if direction == scsi.IN else DATA_OUT
            if direction == scsi.IN and device_length > self.host_length:
                self.csw_status = PHASE_ERROR           # case 7: Hi bytes, then the error

    def _phase_error(self, stall: bool) -> None:
        self.disk.abort()
        self.csw_status = PHASE_ERROR
        self.phase = STATUS
        if stall and self.host_length:
            self.halt(BULK_IN if self.host_in else BULK_OUT)

    def _finish(self, status: int, stall: bool) -> None:
        """The command is over: the CSW is next; `stall` ends the host's data stage early."""
        self.csw_status = PASSED if status == scsi.GOOD else FAILED
        self.phase = STATUS
        if stall:
            self.halt(BULK_IN if self.host_in else BULK_OUT)

    def _data_out(self, data: bytes) -> None:
        want = self.device_length - self.moved
        self.offered += len(data)
        ok = self.disk.receive(data[:want])
        if ok:
            self.moved += min(want, len(data))
        if not ok or self.moved == self.device_length:
            # Done (or failed): the rest of Ho, if any, is refused with a stall (case 11).
            self._finish(self.disk.end(), stall=self.offered < self.host_length)
            self.on_ready(BULK_IN)

    # --- bulk IN: data-in stages and CSWs ---------------------------------------------------

    def endpoint_in(self, address: int, length: int) -> bytes | None:
        if self.phase == DATA_IN:
            return self._data_in(length)
        if self.phase == STATUS:
            residue = max(0, self.host_length - self.moved)
            csw = struct.pack("<IIIB", CSW_SIGNATURE, self.tag, residue, self.csw_status)
            self._idle()
            return csw[:length]
        if self.phase == RECOVERY:
            self.halt(BULK_IN)              # §6.6.1: until the Reset Recovery
            raise Stall
        return None                          # nothing to send yet: NAK

    def _data_in(self, length: int) -> bytes:
        want = min(length, self.device_length - self.moved)
        chunk = self.disk.send(want)
        self.moved += len(chunk)
        failed = len(chunk) < want
        if failed or self.moved == self.device_length:
            if self.csw_status == PHASE_ERROR:              # case 7
                self.disk.abort()
                self.phase = STATUS
                if self.moved < self.host_length:           # (the read failed early)
                    self.halt(BULK_IN)
            else:                                           # cases 5, 6; a failed read
                self._finish(self.disk.end(), stall=self.moved < self.host_length)
        if not chunk and self.phase == STATUS and BULK_IN in self.halted:
            raise Stall                      # nothing sent in this transfer: it ends stalled
        return chunk

    def endpoint_reset(self, address: int) -> None:
        # A cleared halt changes no phase: the CSW waiting behind a stall stays ready, and a
        # device waiting for its Reset Recovery stalls again (endpoint_in / endpoint_out).
        pass

    # --- state ------------------------------------------------------------------------------

    def save_extra(self) -> dict:
        return {"phase": self.phase, "tag": self.tag, "host_length": self.host_length,
                "host_in": self.host_in, "device_length": self.device_length,
                "moved": self.moved, "offered": self.offered, "csw_status": self.csw_status,
                "scsi": self.disk.save()}

    def check_extra(self, state: dict) -> object:
        where = type(self).__name__
        phase = _state.int_field(state, "phase", where, 0, len(PHASES) - 1)
        tag = _state.int_field(state, "tag", where, 0, _state.U32)
        host_length = _state.int_field(state, "host_length", where, 0, _state.U32)
        host_in = _state.bool_field(state, "host_in", where)
        device_length = _state.int_field(state, "device_length", where, 0, host_length)
        moved = _state.int_field(state, "moved", where, 0, device_length)
        offered = _state.int_field(state, "offered", where, 0, None)
        csw_status = _state.int_field(state, "csw_status", where, 0, PHASE_ERROR)
        disk = self.disk.check(_state.field(state, "scsi", where))
        task = disk[-1]
        in_data = phase in (DATA_IN, DATA_OUT)
        if in_data != (task is not None) or (
                in_data and (task.direction == scsi.IN) != (phase == DATA_IN)):
            if disk[0] is not self.disk.medium and disk[0] is not None:
                disk[0].close()             # opened by the check: not kept
            raise StateError(f"{where}: the {PHASES[phase]} phase does not fit the saved "
                             f"command")
        return (phase, tag, host_length, host_in, device_length, moved, offered, csw_status,
                disk)

    def apply_extra(self, checked: object) -> None:
        (self.phase, self.tag, self.host_length, self.host_in, self.device_length, self.moved,
         self.offered, self.csw_status, disk) = checked
        self.disk.apply(disk)


def serial_for(path: str | os.PathLike) -> str:
    """24 hex digits naming an image file, stable across runs."""
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:24].upper()


class UsbFlashDrive(MassStorage):
    """A user's disk image as a USB flash drive (our identity: see the module docstring)."""

    VENDOR, PRODUCT = 0x1209, 0x0001

    def __init__(self, path: str | os.PathLike | None = None, speed: int = HIGH,
                 read_only: bool = False, serial: str | None = None):
        serial = serial or (serial_for(path) if path is not None else "0" * 24)
        identity = Identity(self.VENDOR, self.PRODUCT, 0x0100, "imacpro",
                            "imacpro USB flash drive", serial,
                            usb=0x0300 if speed == SUPER else 0x0200, max_power_ma=200)
        disk = scsi.ScsiDisk("imacpro", "USB Flash Drive", "1.00", serial)
        if path is not None:
            disk.insert(path, read_only)
            disk.unit_attention = False      # there from power-on: no change to report
        super().__init__(identity, disk, speed)
