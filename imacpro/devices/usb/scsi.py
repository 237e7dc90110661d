"""A SCSI direct-access logical unit (SBC-3 over SPC-4) on a disk image file: what a USB
mass-storage device carries, answering what Linux's sd and usb-storage send.

One logical unit, 512-byte logical blocks; block n is bytes 512n .. 512n+511 of the file (a
trailing partial block is not used). The medium is removable: `insert(path)` and `eject()` at
run time; an empty slot answers NOT READY, MEDIUM NOT PRESENT (02/3A/00), and an insert sets
the unit attention NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED (06/28/00), which the
next command other than INQUIRY, REPORT LUNS and REQUEST SENSE reports (SPC-4 §5.9). A file
(or block device) that cannot be opened for writing is a write-protected medium.

Commands (CDB bytes big-endian; any other opcode: 05/20/00 INVALID COMMAND OPERATION CODE):

    | op | command                      | what it does here                                  |
    |----|------------------------------|----------------------------------------------------|
    | 00 | TEST UNIT READY              | GOOD with a medium, else 02/3A/00                  |
    | 03 | REQUEST SENSE                | fixed-format sense (18 bytes), then clears it      |
    | 12 | INQUIRY                      | standard data (36 bytes); VPD 00, 80, 83, B0, B1   |
    | 1A | MODE SENSE(6)                | header (WP bit), block descriptor, caching page 08 |
    | 5A | MODE SENSE(10)               | the same, LLBAA giving the 16-byte descriptor      |
    | 1B | START STOP UNIT              | LOEJ with START 0 ejects (unless prevented)        |
    | 1E | PREVENT ALLOW MEDIUM REMOVAL | prevents the guest's own eject, not the user's     |
    | 25 | READ CAPACITY(10)            | last LBA (FFFFFFFFh past 2 TiB), 512               |
    | 9E | READ CAPACITY(16) (SA 10h)   | last LBA, 512, nothing else set                    |
    | 08 28 88 | READ(6/10/16)          | from the file, read as the host asks for it        |
    | 0A 2A 8A | WRITE(6/10/16)         | to the file as it arrives; FUA: fdatasync after    |
    | 35 91 | SYNCHRONIZE CACHE(10/16)| fdatasync of the image                             |
    | A0 | REPORT LUNS                  | LUN 0                                              |

The caching page says WCE=1: writes reach the host's page cache, not its disk, until the guest
asks for SYNCHRONIZE CACHE, which is what a write-back cache is (Linux then flushes). Errors
are CHECK CONDITION with sense, never an exception: 05/24/00 INVALID FIELD IN CDB (with the
field pointer), 05/21/00 LBA OUT OF RANGE, 07/27/00 WRITE PROTECTED, 05/53/02 MEDIUM REMOVAL
PREVENTED, and MEDIUM ERROR 03/11/00 (read) or 03/0C/00 (write) with the failing LBA in the
INFORMATION field when the host's file fails.

A command runs as `begin(cdb)` -> (direction, length), then `send(n)` or `receive(data)` for
its data, then `end()` -> status; `abort()` drops it (the transport's phase error or reset).
READ and WRITE move their data as the transport asks for it, a few KiB at a time: a guest can
ask for a 2 TiB READ(16) without this process holding more than a transfer. A medium ejected
while a READ or WRITE is under way fails that command with 02/3A/00 at its next transfer.

Saved state: the medium (path, blocks, read-only), the pending sense and unit attention, the
prevent flag and the command in flight. Loading a state whose medium is not the one inserted
opens the saved path (same size, or StateError).
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.disk import DiskError
from imacpro.files import OwnedFd, pread_full, pwrite_all

BLOCK = 512
MAX_TRANSFER = 0xFFFF            # blocks per command (Block Limits VPD; larger: 05/24/00)

# Status (SAM-5 Table 33).
GOOD, CHECK_CONDITION = 0x00, 0x02
# Data direction of a command.
NONE, IN, OUT = 0, 1, 2

# Sense keys (SPC-4 Table 47) and the additional sense codes used here.
NO_SENSE, NOT_READY, MEDIUM_ERROR, ILLEGAL_REQUEST = 0x0, 0x2, 0x3, 0x5
UNIT_ATTENTION, DATA_PROTECT = 0x6, 0x7
WRITE_ERROR = (0x0C, 0x00)
UNRECOVERED_READ_ERROR = (0x11, 0x00)
INVALID_OPCODE = (0x20, 0x00)
LBA_OUT_OF_RANGE = (0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
WRITE_PROTECTED = (0x27, 0x00)
MEDIUM_CHANGED = (0x28, 0x00)
SAVING_NOT_SUPPORTED = (0x39, 0x00)
MEDIUM_NOT_PRESENT = (0x3A, 0x00)
REMOVAL_PREVENTED = (0x53, 0x02)

# Operation codes.
TEST_UNIT_READY, REQUEST_SENSE, READ_6, WRITE_6 = 0x00, 0x03, 0x08, 0x0A
INQUIRY, MODE_SENSE_6, START_STOP_UNIT, PREVENT_ALLOW = 0x12, 0x1A, 0x1B, 0x1E
READ_CAPACITY_10, READ_10, WRITE_10, SYNCHRONIZE_CACHE_10 = 0x25, 0x28, 0x2A, 0x35
MODE_SENSE_10, READ_16, WRITE_16, SYNCHRONIZE_CACHE_16 = 0x5A, 0x88, 0x8A, 0x91
SERVICE_ACTION_IN_16, READ_CAPACITY_16, REPORT_LUNS = 0x9E, 0x10, 0xA0

# Commands that a pending unit attention does not stop (SPC-4 §5.9, SAM-5 §5.14).
UA_EXEMPT = (INQUIRY, REPORT_LUNS, REQUEST_SENSE)
CACHING_PAGE = 0x08
SENSE_LENGTH = 18


def sense_data(key: int, code: tuple[int, int], information: int | None = None,
               field: int | None = None) -> bytes:
    """Fixed-format sense (SPC-4 §4.5.3): VALID and INFORMATION when `information` fits in
    32 bits; for a CDB error, the sense-key specific field pointer (SKSV, C/D=1) to byte
    `field`."""
    sense = bytearray(SENSE_LENGTH)
    sense[0] = 0x70
    sense[2] = key
    if information is not None and information <= 0xFFFF_FFFF:
        sense[0] |= 0x80
        struct.pack_into(">I", sense, 3, information)
    sense[7] = SENSE_LENGTH - 8                 # additional sense length
    sense[12], sense[13] = code
    if field is not None:
        sense[15] = 0xC0                        # SKSV, C/D: the error is in the CDB
        struct.pack_into(">H", sense, 16, field)
    return bytes(sense)


class _Check(Exception):
    """The command ends in CHECK CONDITION with this sense."""

    def __init__(self, key: int, code: tuple[int, int], information: int | None = None,
                 field: int | None = None):
        super().__init__()
        self.sense = sense_data(key, code, information, field)


def _invalid(field: int) -> _Check:
    return _Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, field=field)


def _ascii(text: str, width: int, what: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > width or not all(0x20 <= c < 0x7F for c in raw):
        raise ValueError(f"{what} {text!r}: not printable ASCII of at most {width} characters")
    return raw.ljust(width, b" ")


class Medium(OwnedFd):
    """An image file as 512-byte blocks, read and written with pread/pwrite."""

    def __init__(self, path: str | os.PathLike, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._fd = -1
        try:
            if self.path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            try:
                self._fd = os.open(self.path, os.O_RDONLY if read_only else os.O_RDWR)
            except OSError as exc:
                if read_only or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                self._fd = os.open(self.path, os.O_RDONLY)   # ours to read, not to write:
                self.read_only = True                         # a write-protected medium
            size = os.lseek(self._fd, 0, os.SEEK_END)         # files and block devices alike
        except OSError as exc:
            self.close()
            raise DiskError(f"cannot use {self.path} as a disk image: {exc.strerror}") from None
        self.blocks = size // BLOCK
        if self.blocks == 0:
            self.close()
            raise DiskError(f"{self.path} ({size} bytes) is smaller than one {BLOCK}-byte "
                            f"block")

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes at byte `offset`; zeros past the file's end (a file that shrank)."""
        return pread_full(self._fd, size, offset)

    def write(self, offset: int, data: bytes) -> None:
        pwrite_all(self._fd, data, offset, str(self.path))

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def describe(self) -> dict:
        return {"path": str(self.path), "blocks": self.blocks, "read_only": self.read_only}


@dataclass
class _Task:
    """The command in flight: an IN reply held in memory ("data"), or a READ or WRITE of
    `length` bytes from block `lba`, `done` bytes of which have moved; `partial`: the bytes
    of a WRITE's next block received so far; `error`: the sense it ends with (medium gone,
    I/O error), after which no more data moves."""
    kind: str
    length: int
    done: int = 0
    data: bytes = b""
    lba: int = 0
    fua: bool = False
    partial: bytes = b""
    error: bytes = b""

    @property
    def direction(self) -> int:
        return OUT if self.kind == "write" else IN

    def save(self) -> dict:
        return {"kind": self.kind, "length": self.length, "done": self.done, "data": self.data,
                "lba": self.lba, "fua": self.fua, "partial": self.partial, "error": self.error}


class ScsiDisk:
    """The logical unit (see the module docstring)."""

    def __init__(self, vendor: str, product: str, revision: str, serial: str,
                 removable: bool = True):
        self.vendor = _ascii(vendor, 8, "SCSI vendor")
        self.product = _ascii(product, 16, "SCSI product")
        self.revision = _ascii(revision, 4, "SCSI revision")
        self.serial = _ascii(serial, 64, "serial number").rstrip(b" ")
        self.removable = removable
        self.medium: Medium | None = None
        self.sense = b""                     # sense of the last CHECK CONDITION, until read
        self.unit_attention = False          # a medium was inserted: 06/28/00 pending
        self.prevent = False                 # PREVENT ALLOW MEDIUM REMOVAL
        self.status = GOOD                   # of the command that moved no data
        self.task: _Task | None = None

    # --- the medium (the user's side) -------------------------------------------------------

    def insert(self, path: str | os.PathLike, read_only: bool = False) -> None:
        """Put an image in the slot (replacing any): DiskError if it cannot be used."""
        medium = Medium(path, read_only)
        self._drop_medium()
        self.medium = medium
        self.unit_attention = True

    def eject(self) -> None:
        """Take the medium out (the user can, whatever the guest prevented); a READ or WRITE
        under way fails at its next transfer."""
        self._drop_medium()
        self.unit_attention = False          # not ready now: 02/3A/00 says it instead

    def _drop_medium(self) -> None:
        if self.task is not None and self.task.kind in ("read", "write") and \
                not self.task.error:
            self.task.error = sense_data(NOT_READY, MEDIUM_NOT_PRESENT)
        if self.medium is not None:
            self.medium.close()
            self.medium = None

    @property
    def present(self) -> bool:
        return self.medium is not None

    @property
    def blocks(self) -> int:
        return self.medium.blocks if self.medium else 0

    @property
    def read_only(self) -> bool:
        return bool(self.medium and self.medium.read_only)

    def close(self) -> None:
        """Close the image (the machine is going away); the slot is empty afterwards."""
        self._drop_medium()

    # --- commands (the transport's side) ----------------------------------------------------

    def begin(self, cdb: bytes) -> tuple[int, int]:
        """Start the command `cdb`: (direction, length) of the data it moves. One that moves
        none has finished already; `end` gives its status."""
        self.task = None
        self.status = GOOD
        try:
            reply = self._dispatch(bytes(cdb))
        except _Check as check:
            self.sense, self.status = check.sense, CHECK_CONDITION
            return NONE, 0
        if isinstance(reply, bytes):
            reply = _Task("data", len(reply), data=reply) if reply else None
        self.task = reply
        return (NONE, 0) if reply is None else (reply.direction, reply.length)

    def send(self, count: int) -> bytes:
        """Up to `count` bytes of an IN command's data: fewer (b"" at the end) when there is
        no more, or when it failed (then `end` says CHECK CONDITION)."""
        task = self.task
        if task is None or task.direction != IN or task.error:
            return b""
        count = max(0, min(count, task.length - task.done))
        if task.kind == "data":
            chunk = task.data[task.done:task.done + count]
        else:
            offset = task.lba * BLOCK + task.done
            try:
                chunk = self.medium.read(offset, count)
            except OSError:
                task.error = sense_data(MEDIUM_ERROR, UNRECOVERED_READ_ERROR,
                                        information=offset // BLOCK)
                return b""
        task.done += len(chunk)
        return chunk

    def receive(self, data: bytes) -> bool:
        """Bytes of an OUT command's data, in order; False once it failed (the rest is not
        wanted). Whole blocks are written as they complete."""
        task = self.task
        if task is None or task.direction != OUT or task.error:
            return False
        data = bytes(data[:task.length - task.done])
        buffer = task.partial + data
        whole = len(buffer) // BLOCK * BLOCK
        lba = task.lba + (task.done - len(task.partial)) // BLOCK
        if whole:
            try:
                self.medium.write(lba * BLOCK, buffer[:whole])
            except OSError:
                task.error = sense_data(MEDIUM_ERROR, WRITE_ERROR, information=lba)
                return False
        task.partial = buffer[whole:]
        task.done += len(data)
        return True

    def end(self) -> int:
        """Finish the command in flight: GOOD or CHECK_CONDITION (with its sense kept)."""
        task, self.task = self.task, None
        if task is None:
            return self.status
        if not task.error and task.kind == "write" and task.fua and task.done:
            try:
                self.medium.sync()
            except OSError:
                task.error = sense_data(MEDIUM_ERROR, WRITE_ERROR, information=task.lba)
        if task.error:
            self.sense = task.error
            return CHECK_CONDITION
        return GOOD

    def abort(self) -> None:
        """Drop the command in flight (what moved stays moved)."""
        self.task = None
        self.status = GOOD

    def reset(self) -> None:
        """A logical unit reset (the transport's port reset): no command, no sense, removal
        allowed; the medium and a pending medium-change attention stay."""
        self.task = None
        self.status = GOOD
        self.sense = b""
        self.prevent = False

    # --- the commands -----------------------------------------------------------------------

    def _dispatch(self, cdb: bytes) -> bytes | _Task | None:
        if not cdb:
            raise _Check(ILLEGAL_REQUEST, INVALID_OPCODE)
        op = cdb[0]
        handler = self._HANDLERS.get(op)
        if op != REQUEST_SENSE:
            self.sense = b""                  # sense lasts until the next command (SPC-4)
        if self.unit_attention and op not in UA_EXEMPT:
            self.unit_attention = False
            raise _Check(UNIT_ATTENTION, MEDIUM_CHANGED)
        if handler is None:
            raise _Check(ILLEGAL_REQUEST, INVALID_OPCODE, field=0)
        # The group code (SPC-4 §4.2.5.1) fixes the CDB's length; the control byte's NACA and
        # (obsolete) LINK bits ask for what a USB disk does not do.
        size = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}[op >> 5]
        if len(cdb) < size:
            raise _invalid(len(cdb) - 1)
        if cdb[size - 1] & 0x05:
            raise _invalid(size - 1)
        return handler(self, cdb[:size])

    def _need_medium(self) -> Medium:
        if self.medium is None:
            raise _Check(NOT_READY, MEDIUM_NOT_PRESENT)
        return self.medium

    def _test_unit_ready(self, cdb: bytes) -> None:
        self._need_medium()

    def _request_sense(self, cdb: bytes) -> bytes:
        if cdb[1] & 0x01:                      # DESC: descriptor format is not supported
            raise _invalid(1)
        if self.sense:
            sense = self.sense
        elif self.unit_attention:
            self.unit_attention = False
            sense = sense_data(UNIT_ATTENTION, MEDIUM_CHANGED)
        else:
            sense = sense_data(NO_SENSE, (0, 0))
        self.sense = b""
        return sense[:cdb[4]]

    def _inquiry(self, cdb: bytes) -> bytes:
        evpd, page, allocation = cdb[1] & 0x01, cdb[2], struct.unpack_from(">H", cdb, 3)[0]
        if cdb[1] & 0xFE:                      # CMDDT (obsolete) and reserved bits
            raise _invalid(1)
        if not evpd:
            if page:
                raise _invalid(2)
            data = bytes((0x00,                # qualifier 0, direct-access block device
                          0x80 if self.removable else 0x00,
                          0x06,                # VERSION: SPC-4
                          0x02,                # RESPONSE DATA FORMAT 2
                          36 - 5, 0, 0, 0)) + self.vendor + self.product + self.revision
            return data[:allocation]
        pages = {0x00: self._vpd_pages, 0x80: self._vpd_serial, 0x83: self._vpd_identification,
                 0xB0: self._vpd_block_limits, 0xB1: self._vpd_characteristics}
        if page not in pages:
            raise _invalid(2)
        body = pages[page]()
        return (struct.pack(">BBH", 0x00, page, len(body)) + body)[:allocation]

    def _vpd_pages(self) -> bytes:
        return bytes((0x00, 0x80, 0x83, 0xB0, 0xB1))

    def _vpd_serial(self) -> bytes:
        return self.serial

    def _vpd_identification(self) -> bytes:
        # One designator, T10 vendor ID based (SPC-4 §7.8.6.4): ASCII, the logical unit:
        # vendor, product, serial. An NAA name would need an IEEE company ID we do not own.
        text = self.vendor + self.product + self.serial
        return bytes((0x02, 0x01, 0x00, len(text))) + text

    def _vpd_block_limits(self) -> bytes:
        body = bytearray(0x3C)                 # SBC-3 §6.5.3, page length 3Ch
        struct.pack_into(">I", body, 4, MAX_TRANSFER)  # MAXIMUM TRANSFER LENGTH (blocks)
        return bytes(body)

    def _vpd_characteristics(self) -> bytes:
        body = bytearray(0x3C)                 # SBC-3 §6.5.2
        struct.pack_into(">H", body, 0, 1)     # MEDIUM ROTATION RATE 1: non-rotating
        return bytes(body)

    def _mode_sense(self, cdb: bytes) -> bytes:
        ten = cdb[0] == MODE_SENSE_10
        dbd, llbaa = cdb[1] & 0x08, ten and cdb[1] & 0x10
        control, page, subpage = cdb[2] >> 6, cdb[2] & 0x3F, cdb[3]
        allocation = struct.unpack_from(">H", cdb, 7)[0] if ten else cdb[4]
        if control == 3:
            raise _Check(ILLEGAL_REQUEST, SAVING_NOT_SUPPORTED, field=2)
        if page not in (CACHING_PAGE, 0x3F):
            raise _invalid(2)
        if subpage not in (0x00, 0xFF) or (subpage == 0xFF and page != 0x3F):
            raise _invalid(3)
        # Caching page (SBC-3 §6.4.5): WCE; nothing is changeable (PC 1: all zeros).
        caching = bytearray(20)
        caching[0], caching[1] = CACHING_PAGE, 18
        if control != 1:
            caching[2] = 0x04                  # WCE: writes sit in the host's page cache
        blocks = self.blocks
        if dbd:
            descriptor = b""
        elif llbaa:
            descriptor = struct.pack(">QII", blocks, 0, BLOCK)
        else:
            descriptor = struct.pack(">II", min(blocks, 0xFFFF_FFFF), BLOCK)
        device_specific = 0x80 if self.read_only else 0x00     # WP
        body = descriptor + bytes(caching)
        if ten:
            header = struct.pack(">HBBBBH", 6 + len(body), 0, device_specific,
                                 0x01 if llbaa and descriptor else 0x00, 0,
                                 len(descriptor))
        else:
            header = struct.pack(">BBBB", 3 + len(body), 0, device_specific, len(descriptor))
        return (header + body)[:allocation]

    def _start_stop(self, cdb: bytes) -> None:
        condition, loej, start = cdb[4] >> 4, cdb[4] & 0x02, cdb[4] & 0x01
        if condition or not loej:
            return                             # no spindle, no power states: nothing to do
        if start:
            self._need_medium()                # "load": only what is in the slot
        elif self.medium is not None:
            if self.prevent:
                raise _Check(ILLEGAL_REQUEST, REMOVAL_PREVENTED)
            self.eject()

    def _prevent_allow(self, cdb: bytes) -> None:
        if cdb[4] & 0x03 > 1:                  # 10b, 11b: obsolete (medium changers)
            raise _invalid(4)
        self.prevent = bool(cdb[4] & 0x01)

    def _read_capacity_10(self, cdb: bytes) -> bytes:
        lba, pmi = struct.unpack_from(">I", cdb, 2)[0], cdb[8] & 0x01
        if lba and not pmi:
            raise _invalid(2)
        last = self._need_medium().blocks - 1
        return struct.pack(">II", min(last, 0xFFFF_FFFF), BLOCK)

    def _service_action_in(self, cdb: bytes) -> bytes:
        if cdb[1] & 0x1F != READ_CAPACITY_16:
            raise _invalid(1)
        allocation = struct.unpack_from(">I", cdb, 10)[0]
        last = self._need_medium().blocks - 1
        return (struct.pack(">QI", last, BLOCK) + bytes(20))[:allocation]

    def _transfer(self, cdb: bytes) -> _Task | None:
        op = cdb[0]
        if op in (READ_6, WRITE_6):
            lba = struct.unpack_from(">I", cdb, 0)[0] & 0x1F_FFFF
            count = cdb[4] or 256              # 0 means 256 blocks here (SBC-3 §5.14)
            flags = 0
        elif op in (READ_10, WRITE_10):
            lba, count = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
            flags = cdb[1]
        else:
            lba, count = struct.unpack_from(">QI", cdb, 2)
            flags = cdb[1]
        write = op in (WRITE_6, WRITE_10, WRITE_16)
        if flags & 0xE0:                       # RDPROTECT / WRPROTECT: no protection info
            raise _invalid(1)
        if count > MAX_TRANSFER:
            raise _invalid(10 if op == READ_16 or op == WRITE_16 else 7)
        medium = self._need_medium()
        if write and medium.read_only:
            raise _Check(DATA_PROTECT, WRITE_PROTECTED)
        if lba >= medium.blocks or lba + count > medium.blocks:
            raise _Check(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE, information=lba)
        if count == 0:
            return None
        return _Task("write" if write else "read", count * BLOCK, lba=lba,
                     fua=write and bool(flags & 0x08))

    def _synchronize_cache(self, cdb: bytes) -> None:
        if cdb[0] == SYNCHRONIZE_CACHE_10:
            lba, count = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        else:
            lba, count = struct.unpack_from(">QI", cdb, 2)
        medium = self._need_medium()
        if lba >= medium.blocks or lba + count > medium.blocks:
            raise _Check(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE, information=lba)
        try:
            medium.sync()
        except OSError:
            raise _Check(MEDIUM_ERROR, WRITE_ERROR) from None

    def _report_luns(self, cdb: bytes) -> bytes:
        allocation = struct.unpack_from(">I", cdb, 6)[0]
        if cdb[2] > 2:                         # SELECT REPORT 00h..02h
            raise _invalid(2)
        if allocation < 16:                    # SPC-4 §6.33: at least 16
            raise _invalid(6)
        return (struct.pack(">II", 8, 0) + bytes(8))[:allocation]   # one LUN: 0

    _HANDLERS = {
        TEST_UNIT_READY: _test_unit_ready, REQUEST_SENSE: _request_sense, INQUIRY: _inquiry,
        MODE_SENSE_6: _mode_sense, MODE_SENSE_10: _mode_sense, START_STOP_UNIT: _start_stop,
        PREVENT_ALLOW: _prevent_allow, READ_CAPACITY_10: _read_capacity_10,
        SERVICE_ACTION_IN_16: _service_action_in, READ_6: _transfer, READ_10: _transfer,
        READ_16: _transfer, WRITE_6: _transfer, WRITE_10: _transfer, WRITE_16: _transfer,
        SYNCHRONIZE_CACHE_10: _synchronize_cache, SYNCHRONIZE_CACHE_16: _synchronize_cache,
        REPORT_LUNS: _report_luns,
    }

    # --- state ------------------------------------------------------------------------------

    def save(self) -> dict:
        return {"medium": self.medium.describe() if self.medium else None,
                "sense": self.sense, "unit_attention": self.unit_attention,
                "prevent": self.prevent, "status": self.status,
                "task": self.task.save() if self.task else None}

    def check(self, state: dict) -> tuple:
        """The saved state checked (StateError) and staged; a medium that is not the one in
        the slot is opened here. `apply` makes it current."""
        where = "ScsiDisk"
        _state.mapping(state, where)
        saved = _state.field(state, "medium", where)
        medium, opened = self.medium, False
        if saved is None:
            medium = None
        else:
            _state.mapping(saved, f"{where}.medium")
            path = _state.field(saved, "path", f"{where}.medium")
            blocks = _state.int_field(saved, "blocks", f"{where}.medium", 1)
            read_only = _state.bool_field(saved, "read_only", f"{where}.medium")
            if not isinstance(path, str):
                raise StateError(f"{where}.medium.path: not a string")
            if medium is None or medium.describe() != saved:
                try:
                    medium, opened = Medium(path, read_only), True
                except DiskError as exc:
                    raise StateError(f"{where}.medium: {exc}") from None
                if medium.blocks != blocks or medium.read_only != read_only:
                    medium.close()
                    raise StateError(f"{where}.medium: {path} is not the saved medium "
                                     f"({blocks} blocks{', read-only' if read_only else ''})")
        try:
            staged = self._check_rest(state, where, medium)
        except StateError:
            if opened:
                medium.close()
            raise
        return (medium,) + staged

    def _check_rest(self, state: dict, where: str, medium: Medium | None) -> tuple:
        sense = _state.field(state, "sense", where)
        if not isinstance(sense, bytes) or len(sense) not in (0, SENSE_LENGTH):
            raise StateError(f"{where}.sense: not 0 or {SENSE_LENGTH} bytes")
        attention = _state.bool_field(state, "unit_attention", where)
        prevent = _state.bool_field(state, "prevent", where)
        status = _state.int_field(state, "status", where, 0, 0xFF)
        if status not in (GOOD, CHECK_CONDITION):
            raise StateError(f"{where}.status: {status} is not a status")
        saved = _state.field(state, "task", where)
        task = None if saved is None else self._check_task(saved, f"{where}.task", medium)
        return sense, attention, prevent, status, task

    @staticmethod
    def _check_task(saved: dict, where: str, medium: Medium | None) -> _Task:
        _state.mapping(saved, where)
        kind = _state.field(saved, "kind", where)
        if kind not in ("data", "read", "write"):
            raise StateError(f"{where}.kind: {kind!r}")
        length = _state.int_field(saved, "length", where, 1)
        done = _state.int_field(saved, "done", where, 0, length)
        lba = _state.int_field(saved, "lba", where, 0)
        fua = _state.bool_field(saved, "fua", where)
        values = {}
        for name in ("data", "partial", "error"):
            values[name] = _state.field(saved, name, where)
            if not isinstance(values[name], bytes):
                raise StateError(f"{where}.{name}: not bytes")
        if kind == "data" and len(values["data"]) != length:
            raise StateError(f"{where}.data: not {length} bytes")
        if kind != "data":
            if length % BLOCK or length // BLOCK > MAX_TRANSFER:
                raise StateError(f"{where}.length: not a transfer this device accepts")
            # A medium ejected under a command leaves it failed; otherwise it must fit.
            if not values["error"] and (medium is None or
                                        lba + length // BLOCK > medium.blocks):
                raise StateError(f"{where}: blocks beyond the medium")
        if kind == "write" and (len(values["partial"]) != done % BLOCK):
            raise StateError(f"{where}.partial: does not match the bytes received")
        if values["error"] and len(values["error"]) != SENSE_LENGTH:
            raise StateError(f"{where}.error: not {SENSE_LENGTH} bytes of sense")
        return _Task(kind, length, done, values["data"], lba, fua, values["partial"],
                     values["error"])

    def apply(self, staged: tuple) -> None:
        medium, self.sense, self.unit_attention, self.prevent, self.status, self.task = staged
        if medium is not self.medium and self.medium is not None:
            self.medium.close()
        self.medium = medium

    def load(self, state: dict) -> None:
        self.apply(self.check(state))
