"""USB mass storage (bulk-only) and its SCSI disk, driven as Linux's usb-storage and sd drive
them: enumeration on endpoint 0, CBWs on 0x02, data and CSWs on 0x81, clearing halts."""

import os
import random
import struct

import pytest

from imacpro.devices.contract import StateError
from imacpro.devices.usb import device as usb
from imacpro.devices.usb.device import Setup, Stall
from imacpro.devices.usb.sdreader import SdCardReader
from imacpro.devices.usb.storage import UsbFlashDrive

MiB = 1 << 20
BLOCKS = 64 * MiB // 512
IN, OUT = 0x81, 0x02


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "stick.img"
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    return path


class Host:
    """usb-storage's side of the bulk-only transport."""

    def __init__(self, dev, packet=512):
        self.dev, self.packet, self.tag = dev, packet, 0
        self.ready = []
        dev.on_ready = self.ready.append
        dev.reset()
        dev.control(Setup(0x00, usb.SET_ADDRESS, 5, 0, 0), b"")
        dev.control(Setup(0x00, usb.SET_CONFIGURATION, 1, 0, 0), b"")

    def clear_halt(self, ep):
        self.dev.control(Setup(0x02, usb.CLEAR_FEATURE, usb.FEATURE_ENDPOINT_HALT, ep, 0), b"")

    def reset_recovery(self):
        self.dev.control(Setup(0x21, 0xFF, 0, 0, 0), b"")
        self.clear_halt(IN)
        self.clear_halt(OUT)

    def bulk_in(self, length):
        """One IN transfer of up to `length` bytes: (data, how it ended)."""
        data = b""
        while len(data) < length:
            try:
                chunk = self.dev.data_in(IN, length - len(data))
            except Stall:
                return data, "stall"
            if chunk is None:
                return data, "nak"
            data += chunk
            if len(chunk) % self.packet or not chunk:
                break                                   # a short packet ends it
        return data, "ok"

    def cbw(self, cdb, length=0, data_in=True, lun=0, tag=None, signature=0x43425355):
        self.tag = self.tag + 1 if tag is None else tag
        return struct.pack("<IIIBBB16s", signature, self.tag, length, 0x80 if data_in else 0,
                           lun, len(cdb), bytes(cdb))

    def csw(self):
        """Read the CSW as usb-storage does: on a stall, clear the halt and read again."""
        data, how = self.bulk_in(13)
        if how == "stall":
            self.clear_halt(IN)
            data, how = self.bulk_in(13)
        assert how == "ok" and len(data) == 13, (data, how)
        signature, tag, residue, status = struct.unpack("<IIIB", data)
        assert signature == 0x53425355 and tag == self.tag
        return status, residue

    def command(self, cdb, length=0, data_in=True, out=b""):
        """CBW, data stage, CSW: (data, how the data stage ended, status, residue)."""
        assert self.dev.data_out(OUT, self.cbw(cdb, length, data_in))
        data, how = b"", "none"
        if length and data_in:
            data, how = self.bulk_in(length)
            if how == "stall":
                self.clear_halt(IN)
        elif length:
            try:
                self.dev.data_out(OUT, out)
                how = "ok"
            except Stall:
                how = "stall"
                self.clear_halt(OUT)
        status, residue = self.csw()
        return data, how, status, residue

    def sense(self):
        data, _, status, _ = self.command(bytes((0x03, 0, 0, 0, 18, 0)), 18)
        assert status == 0
        return data


def read10(lba, count):
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, count, 0)


def write10(lba, count, fua=False):
    return struct.pack(">BBIBHB", 0x2A, 0x08 if fua else 0, lba, 0, count, 0)


INQUIRY = bytes((0x12, 0, 0, 0, 36, 0))
TUR = bytes(6)


def test_descriptors_of_the_flash_drive(image):
    dev = UsbFlashDrive(image)
    device = dev.device_descriptor()
    assert struct.unpack_from("<HBBBBHHH", device, 2) == (0x0200, 0, 0, 0, 64, 0x1209, 0x0001,
                                                          0x0100)
    config = dev.configuration_descriptor()
    assert config[9:18] == bytes((9, 4, 0, 0, 2, 0x08, 0x06, 0x50, 0))
    assert config[18:25] == bytes((7, 5, 0x81, 2, 0x00, 0x02, 0))
    assert config[25:32] == bytes((7, 5, 0x02, 2, 0x00, 0x02, 0))
    serial = dev.string_descriptor(3, 0x409)[2:].decode("utf-16-le")
    assert len(serial) == 24 and int(serial, 16) >= 0


def test_superspeed_bulk_endpoints_have_1024_byte_packets_and_a_burst(image):
    dev = UsbFlashDrive(image, speed=usb.SUPER)
    config = dev.configuration_descriptor()
    assert config[18:31] == bytes((7, 5, 0x81, 2, 0x00, 0x04, 0, 6, 48, 15, 0, 0, 0))
    assert struct.unpack_from("<H", dev.device_descriptor(), 2)[0] == 0x0300


def test_get_max_lun_and_a_wrong_one(image):
    host = Host(UsbFlashDrive(image))
    assert host.dev.control(Setup(0xA1, 0xFE, 0, 0, 1), b"") == b"\x00"
    with pytest.raises(Stall):
        host.dev.control(Setup(0xA1, 0xFE, 0, 0, 2), b"")
    with pytest.raises(Stall):
        host.dev.control(Setup(0xA1, 0xFE, 0, 1, 1), b"")     # no interface 1


def test_inquiry_is_36_bytes_of_a_removable_spc4_disk(image):
    host = Host(UsbFlashDrive(image))
    data, how, status, residue = host.command(INQUIRY, 36)
    assert data == bytes((0, 0x80, 6, 2, 31, 0, 0, 0)) + b"imacpro USB Flash Drive 1.00"
    assert (how, status, residue) == ("ok", 0, 0)
    assert host.ready == [IN]                   # the data was there once the CBW arrived


def test_vpd_pages(image):
    host = Host(UsbFlashDrive(image, serial="ABCDEF012345"))
    data, _, status, _ = host.command(bytes((0x12, 1, 0x00, 0, 255, 0)), 255)
    assert data == bytes((0, 0, 0, 5, 0x00, 0x80, 0x83, 0xB0, 0xB1)) and status == 0
    data, _, _, _ = host.command(bytes((0x12, 1, 0x80, 0, 255, 0)), 255)
    assert data == bytes((0, 0x80, 0, 12)) + b"ABCDEF012345"
    data, _, _, _ = host.command(bytes((0x12, 1, 0x83, 0, 255, 0)), 255)
    assert data == bytes((0, 0x83, 0, 40, 2, 1, 0, 36)) + b"imacpro USB Flash Drive ABCDEF012345"
    data, _, _, _ = host.command(bytes((0x12, 1, 0xB1, 0, 255, 0)), 255)
    assert data[:6] == bytes((0, 0xB1, 0, 0x3C, 0, 1))


def test_read_capacity_of_a_64_mib_image(image):
    host = Host(UsbFlashDrive(image))
    data, _, status, residue = host.command(bytes((0x25,)) + bytes(9), 8)
    assert data == bytes((0, 1, 0xFF, 0xFF, 0, 0, 2, 0)) and (status, residue) == (0, 0)
    rc16 = bytes((0x9E, 0x10)) + bytes(8) + struct.pack(">I", 32) + bytes(2)
    data, _, status, _ = host.command(rc16, 32)
    assert data == struct.pack(">QI", BLOCKS - 1, 512) + bytes(20) and status == 0


def test_write_then_read_back(image):
    host = Host(UsbFlashDrive(image))
    payload = bytes(range(256)) * 16                            # 8 blocks
    _, how, status, residue = host.command(write10(100, 8, fua=True), 4096, False, payload)
    assert (how, status, residue) == ("ok", 0, 0)
    with open(image, "rb") as f:
        f.seek(100 * 512)
        assert f.read(4096) == payload
    data, how, status, residue = host.command(read10(100, 8), 4096)
    assert data == payload and (how, status, residue) == ("ok", 0, 0)
    # The same data taken in pieces: 512, then 3 × 1024 + 512.
    assert host.dev.data_out(OUT, host.cbw(write10(200, 8), 4096, False))
    for at, size in ((0, 512), (512, 1024), (1536, 1024), (2560, 1024), (3584, 512)):
        assert host.dev.data_out(OUT, payload[at:at + size])
    assert host.csw() == (0, 0)
    data, _, _, _ = host.command(read10(200, 8), 4096)
    assert data == payload


def test_out_of_range_lba_fails_with_sense(image):
    host = Host(UsbFlashDrive(image))
    data, how, status, residue = host.command(read10(BLOCKS, 1), 512)      # case 4
    assert (data, how, status, residue) == (b"", "stall", 1, 512)
    assert host.sense() == bytes((0xF0, 0, 5, 0, 2, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0))
    # A transfer that starts inside the disk and ends past it is out of range too.
    _, _, status, _ = host.command(read10(BLOCKS - 1, 2), 1024)
    assert status == 1 and host.sense()[12:14] == bytes((0x21, 0))
    # The sense is read once; after that, no sense.
    assert host.sense()[2] == 0 and host.sense()[12] == 0


def test_invalid_cdb_field_and_opcode(image):
    host = Host(UsbFlashDrive(image))
    _, _, status, _ = host.command(bytes((0x12, 0, 0x80, 0, 36, 0)), 36)   # page, no EVPD
    assert status == 1
    assert host.sense() == bytes((0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0,
                                  0xC0, 0, 2))
    _, _, status, _ = host.command(bytes((0xC7, 0, 0, 0, 0, 0)))
    assert status == 1 and host.sense()[12:14] == bytes((0x20, 0))


def test_mode_sense_all_pages_has_the_caching_page(image):
    host = Host(UsbFlashDrive(image))
    data, how, status, residue = host.command(bytes((0x1A, 0, 0x3F, 0, 192, 0)), 192)  # case 5
    assert data == bytes((31, 0, 0, 8)) + struct.pack(">II", BLOCKS, 512) + \
        bytes((8, 18, 4)) + bytes(17)
    assert (how, status, residue) == ("ok", 0, 192 - 32)
    ten = struct.pack(">BBBBBBBHB", 0x5A, 0x18, 0x08, 0, 0, 0, 0, 255, 0)   # DBD, page 8
    data, _, status, _ = host.command(ten, 255)
    assert data == bytes((0, 26, 0, 0, 0, 0, 0, 0)) + bytes((8, 18, 4)) + bytes(17)


def test_write_protected_medium(image):
    host = Host(UsbFlashDrive(image, read_only=True))
    data, _, _, _ = host.command(bytes((0x1A, 0, 0x3F, 0, 192, 0)), 192)
    assert data[:4] == bytes((31, 0, 0x80, 8))                  # WP
    _, how, status, residue = host.command(write10(0, 1), 512, False, bytes(512))   # case 9
    assert (how, status, residue) == ("stall", 1, 512)
    assert host.sense() == bytes((0x70, 0, 7, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x27, 0, 0, 0, 0, 0))
    with open(image, "rb") as f:
        assert f.read(512) == bytes(512)


def test_report_luns_and_prevent_blocking_eject(image):
    host = Host(UsbFlashDrive(image))
    data, _, status, _ = host.command(struct.pack(">BBBBBBIBB", 0xA0, 0, 0, 0, 0, 0, 16, 0, 0),
                                      16)
    assert data == bytes((0, 0, 0, 8)) + bytes(12) and status == 0
    _, _, status, _ = host.command(bytes((0x1E, 0, 0, 0, 1, 0)))
    assert status == 0
    _, _, status, _ = host.command(bytes((0x1B, 0, 0, 0, 0x02, 0)))          # eject
    assert status == 1 and host.sense()[12:14] == bytes((0x53, 0x02))
    host.command(bytes((0x1E, 0, 0, 0, 0, 0)))
    _, _, status, _ = host.command(bytes((0x1B, 0, 0, 0, 0x02, 0)))
    assert status == 0 and not host.dev.disk.present
    _, _, status, _ = host.command(TUR)
    assert status == 1 and host.sense()[12] == 0x3A


def test_bad_cbw_stalls_both_pipes_until_reset_recovery(image):
    host = Host(UsbFlashDrive(image))
    assert host.dev.data_out(OUT, host.cbw(TUR, signature=0x12345678))
    with pytest.raises(Stall):
        host.dev.data_in(IN, 13)
    with pytest.raises(Stall):
        host.dev.data_out(OUT, host.cbw(TUR))
    # Clearing the halts alone is not enough (§6.6.1).
    host.clear_halt(IN)
    host.clear_halt(OUT)
    with pytest.raises(Stall):
        host.dev.data_out(OUT, host.cbw(TUR))
    halted = Setup(0x82, usb.GET_STATUS, 0, OUT, 2)
    assert host.dev.control(halted, b"") == b"\x01\x00"     # halted again, not just refused
    host.reset_recovery()
    assert host.dev.control(halted, b"") == b"\x00\x00"
    _, _, status, residue = host.command(TUR)
    assert (status, residue) == (0, 0)


def test_short_cbw_is_not_valid(image):
    host = Host(UsbFlashDrive(image))
    assert host.dev.data_out(OUT, host.cbw(TUR)[:30])
    with pytest.raises(Stall):
        host.dev.data_in(IN, 13)
    host.reset_recovery()
    assert host.command(TUR)[2] == 0


def test_lun_out_of_range_is_a_phase_error(image):
    host = Host(UsbFlashDrive(image))
    assert host.dev.data_out(OUT, host.cbw(INQUIRY, 36, lun=1))
    data, how = host.bulk_in(36)
    assert how == "stall"
    host.clear_halt(IN)
    assert host.csw()[0] == 2
    host.reset_recovery()
    assert host.command(INQUIRY, 36)[2] == 0


def test_the_thirteen_cases(image):
    host = Host(UsbFlashDrive(image))
    # 2: Hn < Di; 3: Hn < Do.
    assert host.command(INQUIRY, 0)[2:] == (2, 0)
    assert host.command(write10(0, 1), 0)[2:] == (2, 0)
    # 5: Hi > Di (and not a multiple of the packet): the data, a stall, the residue.
    assert host.dev.data_out(OUT, host.cbw(INQUIRY, 100))
    data, how = host.bulk_in(100)
    assert (len(data), how) == (36, "ok")           # ended by its short packet
    with pytest.raises(Stall):                      # then the pipe stalls
        host.dev.data_in(IN, 13)
    host.clear_halt(IN)
    assert host.csw() == (0, 64)
    # 5 with Di a multiple of the packet: the stall itself ends the data stage.
    data, how, status, residue = host.command(read10(0, 1), 1024)
    assert (len(data), how, status, residue) == (512, "stall", 0, 512)
    # 7: Hi < Di: Hi bytes, then a phase error.
    data, how, status, _ = host.command(read10(0, 2), 512)
    assert (len(data), how, status) == (512, "ok", 2)
    # 8: Hi <> Do.
    assert host.command(write10(0, 1), 512, True)[1:3] == ("stall", 2)
    # 9: Ho > Dn (TEST UNIT READY with data).
    assert host.command(TUR, 512, False, bytes(512))[1:] == ("stall", 0, 512)
    # 10: Ho <> Di.
    assert host.command(INQUIRY, 36, False, bytes(36))[1:3] == ("stall", 2)
    # 11: Ho > Do, all of it in one transfer: Do taken, the rest dropped.
    assert host.command(write10(5, 1), 1024, False, b"\xAA" * 1024)[1:] == ("ok", 0, 512)
    assert host.command(read10(5, 2), 1024)[0] == b"\xAA" * 512 + bytes(512)
    # 13: Ho < Do.
    assert host.command(write10(0, 2), 512, False, bytes(512))[1:3] == ("stall", 2)


def test_an_in_before_the_cbw_is_naked(image):
    host = Host(UsbFlashDrive(image))
    assert host.dev.data_in(IN, 13) is None
    assert host.dev.data_out(OUT, host.cbw(TUR))
    assert host.ready == [IN]
    assert host.csw() == (0, 0)


def test_empty_sd_reader_reports_medium_not_present(tmp_path):
    reader = SdCardReader()
    assert struct.unpack_from("<HHH", reader.device_descriptor(), 8) == (0x05AC, 0x8408, 0x0100)
    assert reader.string_descriptor(1, 0x409)[2:].decode("utf-16-le") == "APPLE"
    assert reader.string_descriptor(2, 0x409)[2:].decode("utf-16-le") == "SD Card Reader"
    host = Host(reader, packet=1024)
    data, _, status, _ = host.command(INQUIRY, 36)
    assert data[8:] == b"APPLE   SD Card Reader  3.00" and status == 0
    _, _, status, _ = host.command(TUR)
    assert status == 1
    assert host.sense() == bytes((0x70, 0, 2, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3A, 0, 0, 0, 0, 0))
    data, how, status, residue = host.command(bytes((0x25,)) + bytes(9), 8)
    assert (data, how, status, residue) == (b"", "stall", 1, 8)


def test_insert_raises_a_unit_attention_once(image):
    host = Host(SdCardReader(), packet=1024)
    host.dev.insert(image)
    assert host.command(INQUIRY, 36)[2] == 0          # INQUIRY does not report it
    _, _, status, _ = host.command(TUR)
    assert status == 1
    assert host.sense() == bytes((0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x28, 0, 0, 0, 0, 0))
    assert host.command(TUR)[2] == 0
    data, _, status, _ = host.command(bytes((0x25,)) + bytes(9), 8)
    assert data == bytes((0, 1, 0xFF, 0xFF, 0, 0, 2, 0)) and status == 0


def test_eject_during_a_read_fails_it_cleanly(image):
    with open(image, "r+b") as f:
        f.write(b"\x5A" * 8192)
    host = Host(SdCardReader(image), packet=1024)
    assert host.dev.data_out(OUT, host.cbw(read10(0, 16), 8192))
    first, how = host.bulk_in(1024)
    assert first == b"\x5A" * 1024 and how == "ok"
    host.dev.eject()
    data, how = host.bulk_in(8192 - 1024)
    assert (data, how) == (b"", "stall")
    host.clear_halt(IN)
    assert host.csw() == (1, 8192 - 1024)
    _, _, status, _ = host.command(TUR)
    assert status == 1 and host.sense()[12:14] == bytes((0x3A, 0))


def test_eject_during_a_read_sense(image):
    host = Host(SdCardReader(image), packet=1024)
    assert host.dev.data_out(OUT, host.cbw(read10(0, 16), 8192))
    host.bulk_in(1024)
    host.dev.eject()
    host.bulk_in(8192)
    host.clear_halt(IN)
    host.csw()
    assert host.sense() == bytes((0x70, 0, 2, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3A, 0, 0, 0, 0, 0))


def test_a_host_write_error_is_a_medium_error(image, monkeypatch):
    host = Host(UsbFlashDrive(image))

    def failing(fd, data, offset):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "pwrite", failing)
    _, how, status, residue = host.command(write10(7, 2), 1024, False, bytes(1024))
    assert (how, status, residue) == ("ok", 1, 1024)
    monkeypatch.undo()
    assert host.sense() == bytes((0xF0, 0, 3, 0, 0, 0, 7, 10, 0, 0, 0, 0, 0x0C, 0, 0, 0, 0, 0))


def test_save_and_load_in_the_middle_of_a_read(image):
    with open(image, "r+b") as f:
        f.write(bytes(range(256)) * 8)
    first = Host(UsbFlashDrive(image))
    assert first.dev.data_out(OUT, first.cbw(read10(0, 4), 2048, tag=77))
    head, _ = first.bulk_in(512)
    state = first.dev.save()
    second = UsbFlashDrive(image)
    second.load(state)
    host = Host.__new__(Host)
    host.dev, host.packet, host.tag, host.ready = second, 512, 77, []
    rest, how = host.bulk_in(1536)
    assert head + rest == (bytes(range(256)) * 8) and how == "ok"
    assert host.csw() == (0, 0)
    assert second.save()["address"] == 5


def test_load_of_another_image_opens_it(image, tmp_path):
    other = tmp_path / "other.img"
    with open(other, "wb") as f:
        f.truncate(MiB)
    saved = UsbFlashDrive(other).save()
    dev = UsbFlashDrive(image)
    dev.load(saved)
    assert dev.disk.blocks == MiB // 512 and dev.disk.medium.path == other


def test_a_bad_state_raises_and_changes_nothing(image, tmp_path):
    host = Host(UsbFlashDrive(image))
    before = host.dev.save()
    for change in ({"phase": 9}, {"moved": -1}, {"tag": "x"}, {"phase": 1},
                   {"scsi": {**before["scsi"], "sense": b"x"}},
                   {"scsi": {**before["scsi"], "medium": {"path": str(tmp_path / "none"),
                                                          "blocks": 1, "read_only": False}}},
                   {"scsi": {**before["scsi"], "task": {"kind": "read", "length": 512,
                                                        "done": 0, "data": b"", "lba": BLOCKS,
                                                        "fua": False, "partial": b"",
                                                        "error": b""}}}):
        with pytest.raises(StateError):
            host.dev.load({**before, **change})
        assert host.dev.save() == before
    assert host.command(TUR)[2] == 0


def test_load_with_a_missing_medium_file_is_a_state_error(image, tmp_path):
    gone = tmp_path / "gone.img"
    with open(gone, "wb") as f:
        f.truncate(MiB)
    state = UsbFlashDrive(gone).save()
    os.unlink(gone)
    dev = UsbFlashDrive(image)
    with pytest.raises(StateError):
        dev.load(state)
    assert dev.disk.medium.path == image


def test_request_sense_of_96_bytes_as_linux_asks_an_spc4_device(image):
    host = Host(UsbFlashDrive(image))
    host.command(TUR)
    data, how, status, residue = host.command(bytes((0x03, 0, 0, 0, 96, 0)), 96)
    assert (len(data), how, status, residue) == (18, "ok", 0, 78)


def test_hostile_cbws_end_in_stalls_or_statuses_never_exceptions(image):
    rng = random.Random(1)
    host = Host(UsbFlashDrive(image))
    opcodes = [0x00, 0x03, 0x08, 0x0A, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A, 0x35, 0x5A,
               0x88, 0x8A, 0x91, 0x9E, 0xA0, 0xFF]
    for _ in range(400):
        cdb = bytes((rng.choice(opcodes),)) + rng.randbytes(rng.randrange(0, 16))
        length = rng.choice((0, 1, 13, 36, 512, 4096, rng.randrange(1 << 32)))
        cbw = host.cbw(cdb, length, rng.random() < 0.5, lun=rng.choice((0, 0, 0, 1)))
        if rng.random() < 0.1:
            cbw = cbw[:rng.randrange(40)]
        try:
            host.dev.data_out(OUT, cbw)
            for _ in range(3):
                if rng.random() < 0.5:
                    host.dev.data_in(IN, rng.choice((13, 512, 4096)))
                else:
                    host.dev.data_out(OUT, rng.randbytes(rng.choice((13, 512, 1000))))
        except Stall:
            pass
        if rng.random() < 0.3:
            host.reset_recovery()
    host.reset_recovery()
    assert host.command(TUR)[2:] in ((0, 0), (1, 0))
    assert host.dev.load(host.dev.save()) is None


def test_sixteen_byte_commands_and_their_limits(image):
    host = Host(UsbFlashDrive(image))
    block = b"\x11" * 512
    write16 = struct.pack(">BBQIBB", 0x8A, 0, BLOCKS - 1, 1, 0, 0)
    assert host.command(write16, 512, False, block)[1:] == ("ok", 0, 0)
    read16 = struct.pack(">BBQIBB", 0x88, 0, BLOCKS - 1, 1, 0, 0)
    assert host.command(read16, 512) == (block, "ok", 0, 0)
    huge = struct.pack(">BBQIBB", 0x88, 0, 0, 0x10000, 0, 0)          # past MAX_TRANSFER
    assert host.command(huge, 512)[1:3] == ("stall", 1)
    assert host.sense()[12:18] == bytes((0x24, 0, 0, 0xC0, 0, 10))
    sync = struct.pack(">BBIBHB", 0x35, 0, 0, 0, 0, 0)
    assert host.command(sync)[2:] == (0, 0)
    read6 = bytes((0x08, 0, 0, 0, 1, 0))
    assert host.command(read6, 512) == (bytes(512), "ok", 0, 0)


def test_images_that_cannot_be_used(tmp_path):
    from imacpro.disk import DiskError
    small = tmp_path / "small.img"
    small.write_bytes(bytes(100))
    for path in (tmp_path, small, tmp_path / "missing.img"):
        with pytest.raises(DiskError):
            SdCardReader(path)
    reader = SdCardReader()
    with pytest.raises(DiskError):
        reader.insert(small)
    assert not reader.disk.present
