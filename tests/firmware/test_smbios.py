"""SMBIOS 3 tables (imacpro/firmware/smbios.py), read back with a parser of the test's own.

The parser walks the structure table the way Linux's dmi_scan.c does: formatted area by its
length byte, then the string set up to the double NUL; it rejects empty strings and overruns.
When dmidecode is installed, it decodes a dump in its --dump-bin layout too.
"""

import shutil
import struct
import subprocess
import uuid
from dataclasses import dataclass
from datetime import date

import pytest

from imacpro.catalog import configure, data
from imacpro.cpu import cpuid
from imacpro.firmware import smbios
from imacpro.identity import UNIT_CODES, Identity
from imacpro.memory import layout

GiB = 1 << 30
TABLE_ADDRESS = 0xF1000


@dataclass
class Structure:
    type: int
    handle: int
    raw: bytes          # formatted area, header included
    strings: list[str]

    def byte(self, offset):
        return self.raw[offset]

    def word(self, offset):
        return struct.unpack_from("<H", self.raw, offset)[0]

    def dword(self, offset):
        return struct.unpack_from("<I", self.raw, offset)[0]

    def qword(self, offset):
        return struct.unpack_from("<Q", self.raw, offset)[0]

    def string(self, offset):
        number = self.raw[offset]
        return None if number == 0 else self.strings[number - 1]


def parse(table: bytes) -> list[Structure]:
    out, pos = [], 0
    while True:
        assert pos + 4 <= len(table), "table ends inside a header"
        kind, length, handle = struct.unpack_from("<BBH", table, pos)
        assert length >= 4 and pos + length <= len(table)
        raw = table[pos:pos + length]
        end = table.index(b"\0\0", pos + length)
        area = table[pos + length:end]
        strings = area.decode("ascii").split("\0") if area else []
        assert all(strings), f"empty string in type {kind}"
        out.append(Structure(kind, handle, raw, strings))
        pos = end + 2
        if kind == smbios.END:
            assert pos == len(table), "bytes after the end-of-table structure"
            return out


def by_type(structures, kind):
    return [s for s in structures if s.type == kind]


def one(structures, kind):
    (found,) = by_type(structures, kind)
    return found


IDENTITY = Identity(serial_number="C02W1234HX87",
                    hardware_uuid="12345678-9ABC-DEF0-1122-334455667788",
                    t2_ecid=0x0123456789ABCDEF, ethernet_mac="00:03:93:00:00:01",
                    wifi_mac="00:03:93:00:00:02", bluetooth_mac="00:03:93:00:00:03",
                    manufactured=date(2019, 6, 3))

CONFIGS = {
    "8-core, 32 GB": configure(cpu=8, memory=32, as_of=date(2018, 1, 10)),
    "18-core, 256 GB": configure(cpu=18, memory=256, as_of=date(2020, 1, 10)),
}


@pytest.fixture(params=list(CONFIGS), scope="module")
def machine(request):
    config = CONFIGS[request.param]
    entry, table = smbios.build(config, IDENTITY, TABLE_ADDRESS)
    return config, entry, table, parse(table)


def test_entry_point(machine):
    _, entry, table, _ = machine
    assert len(entry) == 0x18 and entry[:5] == b"_SM3_"
    assert sum(entry) & 0xFF == 0
    assert entry[6] == 0x18                           # entry point length
    assert (entry[7], entry[8]) == (3, 1)             # SMBIOS 3.1
    assert entry[10] == 1                             # entry point revision: 3.0 format
    assert struct.unpack_from("<I", entry, 0x0C)[0] == len(table)
    assert struct.unpack_from("<Q", entry, 0x10)[0] == TABLE_ADDRESS


def test_table_shape(machine):
    _, _, _, structures = machine
    handles = [s.handle for s in structures]
    assert len(set(handles)) == len(handles)
    assert all(h < 0xFEFF for h in handles)
    assert structures[-1].type == 127 and len(structures[-1].raw) == 4
    assert [s.type for s in structures[:9]] == [0, 1, 2, 3, 7, 7, 7, 4, 16]
    # Structure lengths of SMBIOS 3.1.
    lengths = {0: 0x1A, 1: 0x1B, 2: 0x0F, 3: 0x16, 4: 0x30, 7: 0x1B, 16: 0x17, 17: 0x28,
               19: 0x1F, 8: 0x09, 11: 0x05, 32: 0x0B, 127: 0x04}
    for s in structures:
        assert len(s.raw) == lengths[s.type], f"type {s.type}"


def test_bios(machine):
    _, _, _, structures = machine
    bios = one(structures, 0)
    assert bios.string(0x04) == "Apple Inc."
    assert bios.string(0x05) == "1554.80.3.0.0 (iBridge: 18.16.14347.0.0,0)"   # the real one's
    assert bios.string(0x08) == "07/05/2021"          # the boot ROM ID's build date
    assert bios.word(0x06) == 0                       # no legacy runtime BIOS segment
    assert (bios.byte(0x09) + 1) * 64 * 1024 == 8 << 20
    characteristics = bios.qword(0x0A)
    assert characteristics == smbios.CHAR_PCI         # PCI; no CD boot, no flash upgrade
    assert bios.byte(0x12) == smbios.EXT1_ACPI
    assert bios.byte(0x13) & (smbios.EXT2_UEFI | smbios.EXT2_VIRTUAL_MACHINE) == 0
    assert (bios.byte(0x14), bios.byte(0x15)) == (0, 1)
    assert (bios.byte(0x16), bios.byte(0x17)) == (0xFF, 0xFF)


def test_system(machine):
    _, _, _, structures = machine
    system = one(structures, 1)
    assert system.string(0x04) == "Apple Inc."
    assert system.string(0x05) == "iMacPro1,1"
    assert system.string(0x06) == "1.0"
    assert system.string(0x07) == IDENTITY.serial_number
    raw_uuid = system.raw[0x08:0x18]
    # SMBIOS 2.6+: time_low, time_mid, time_hi little-endian, the rest as written.
    assert raw_uuid[:4] == bytes.fromhex("78563412")
    assert raw_uuid[4:8] == bytes.fromhex("BC9AF0DE")
    assert raw_uuid[8:] == bytes.fromhex("1122334455667788")
    assert str(uuid.UUID(bytes_le=raw_uuid)).upper() == IDENTITY.hardware_uuid
    assert system.byte(0x18) == 0x06                  # power switch
    assert system.string(0x19) == "System SKU#"
    assert system.string(0x1A) == "iMac Pro"


def test_baseboard(machine):
    _, _, _, structures = machine
    board = one(structures, 2)
    assert board.string(0x04) == "Apple Inc."
    assert board.string(0x05) == "Mac-7BA5B2D9E42DDD94" == data.MODEL["board_id"].value
    assert board.string(0x06) == "iMacPro1,1"
    assert board.string(0x07) == smbios.board_serial(IDENTITY)
    assert board.byte(0x09) & 1                       # hosting board
    assert board.word(0x0B) == one(structures, 3).handle
    assert board.byte(0x0D) == 0x0A                   # motherboard
    assert board.byte(0x0E) == 0


def test_board_serial_is_derived():
    serial = smbios.board_serial(IDENTITY)
    assert len(serial) == 17
    assert serial[:6] == "C02923"                     # plant, 2019, ISO week 23
    assert all(c in UNIT_CODES for c in serial[6:])
    assert smbios.board_serial(IDENTITY) == serial
    other = Identity(**{**IDENTITY.__dict__, "serial_number": "C02W1235HX87"})
    assert smbios.board_serial(other) != serial


def test_chassis(machine):
    _, _, _, structures = machine
    chassis = one(structures, 3)
    assert chassis.string(0x04) == "Apple Inc."
    assert chassis.byte(0x05) == 0x09                 # "Laptop", as Apple's firmware says
    assert chassis.string(0x06) == "Mac-7BA5B2D9E42DDD94"
    assert chassis.string(0x07) == IDENTITY.serial_number
    assert [chassis.byte(o) for o in (0x09, 0x0A, 0x0B, 0x0C)] == [3, 3, 3, 3]
    assert chassis.byte(0x13) == 0                    # no contained elements


def test_processor(machine):
    config, _, _, structures = machine
    p = config.processor
    cpu = one(structures, 4)
    assert cpu.string(0x04) == "LGA2011-3"            # Apple's firmware's (really LGA2066)
    assert cpu.byte(0x05) == 0x03                     # central processor
    assert cpu.byte(0x06) == 0xBB and cpu.word(0x28) == 0xBB   # "Pentium D", as Apple's
    assert cpu.string(0x07) == "Intel(R) Corporation"
    assert cpu.dword(0x08) == 0x00050654              # family 6, model 0x55, stepping 4
    assert cpu.dword(0x0C) == cpuid.cpuid_table(p, 0)[1, 0][3]
    assert cpu.string(0x10) == p.brand_string
    assert cpu.string(0x10).startswith("Intel(R) Xeon(R) W-21")
    assert cpu.word(0x12) == 25                       # external clock, as Apple's
    assert cpu.word(0x14) == round(p.turbo_ghz * 1000)
    assert cpu.word(0x16) == round(p.base_ghz * 1000)
    assert cpu.byte(0x18) == 0x41                     # populated, enabled
    assert cpu.byte(0x19) == 0x39                     # socket LGA2066
    caches = {s.handle: s for s in by_type(structures, 7)}
    for offset, level in ((0x1A, 1), (0x1C, 2), (0x1E, 3)):
        cache = caches[cpu.word(offset)]
        assert cache.word(0x05) & 7 == level - 1
    assert (cpu.byte(0x23), cpu.byte(0x24), cpu.byte(0x25)) == (p.cores, p.cores, p.threads)
    assert (cpu.word(0x2A), cpu.word(0x2C), cpu.word(0x2E)) == (p.cores, p.cores, p.threads)
    assert p.threads == config.logical_cpus
    chars = cpu.word(0x26)
    for bit in (smbios.CPU_64BIT, smbios.CPU_MULTI_CORE, smbios.CPU_HARDWARE_THREAD,
                smbios.CPU_EXECUTE_PROTECTION):
        assert chars & bit
    # The engine has no VMX (cpuid.LEFT_OUT), so no enhanced virtualization is claimed.
    assert "VMX" in cpuid.LEFT_OUT
    assert not chars & smbios.CPU_ENHANCED_VIRTUALIZATION


def test_caches(machine):
    config, _, _, structures = machine
    p = config.processor
    expected = {1: 64 * p.cores, 2: p.l2_per_core_kib * p.cores, 3: p.l3_kib}   # KiB
    caches = by_type(structures, 7)
    assert [c.string(0x04) for c in caches] == ["L1 Cache", "L2 Cache", "L3 Cache"]
    for level, cache in enumerate(caches, 1):
        configuration = cache.word(0x05)
        assert configuration & 7 == level - 1
        assert configuration & (1 << 7)               # enabled
        assert configuration & (3 << 5) == 0          # internal
        assert (configuration >> 8) & 3 == 1          # write back
        assert cache.word(0x07) == cache.word(0x09) == expected[level]   # 1 KiB granularity
        assert cache.dword(0x13) == cache.dword(0x17) == expected[level]
        assert cache.byte(0x10) in (0x04, 0x05, 0x06)
    assert [c.byte(0x12) for c in caches] == [0x07, 0x08, 0x01]   # 8-way, 16-way, other (11)
    assert [c.byte(0x11) for c in caches][1:] == [0x05, 0x05]     # L2, L3 unified


def test_cache_size_granularity():
    assert smbios._cache_size_fields(24 * 1024 * 1024 + 768 * 1024) == (25344, 25344)
    assert smbios._cache_size_fields(64 << 20) == (0x8000 | 1024, 64 * 1024)
    assert smbios._cache_size_fields(4 << 30) == (0xFFFF, 4 << 20)      # Size 2 in KiB
    assert smbios._cache_size_fields(4 << 40) == (0xFFFF, (1 << 31) | (4 << 24))  # 64 KiB units


def test_memory_array(machine):
    _, _, _, structures = machine
    array = one(structures, 16)
    assert array.byte(0x04) == 0x03                   # system board
    assert array.byte(0x05) == 0x03                   # system memory
    assert array.byte(0x06) == 0x05                   # single-bit ECC (DDR4 ECC, SECDED)
    assert array.dword(0x07) * 1024 == 512 * GiB      # fits the KiB field: no extended value
    assert array.qword(0x0F) == 0
    assert array.word(0x0B) == 0xFFFE
    assert array.word(0x0D) == 4 == data.MEMORY_SLOTS


def test_memory_devices(machine):
    config, _, _, structures = machine
    array = one(structures, 16)
    dimms = by_type(structures, 17)
    assert len(dimms) == 4
    dimm_bytes = config.memory_option.dimm_gb * GiB
    assert dimm_bytes * 4 == config.memory_option.size_bytes
    for slot, dimm in enumerate(dimms):
        assert dimm.word(0x04) == array.handle
        assert (dimm.word(0x08), dimm.word(0x0A)) == (72, 64)
        if dimm_bytes >> 20 < 0x7FFF:
            assert dimm.word(0x0C) << 20 == dimm_bytes and dimm.dword(0x1C) == 0
        else:
            assert dimm.word(0x0C) == 0x7FFF and dimm.dword(0x1C) << 20 == dimm_bytes
        assert dimm.byte(0x0E) == 0x09                # DIMM
        assert dimm.string(0x10) == f"CPU1_DIMM_{'ABCD'[slot]}0"   # the real machine's
        assert dimm.string(0x11) == "NODE 1"
        assert dimm.byte(0x12) == 0x1A                # DDR4
        assert dimm.word(0x13) == 1 << 7              # synchronous (buffering not claimed)
        assert dimm.word(0x15) == dimm.word(0x20) == 2666
        assert dimm.string(0x17) == "Apple"
        assert [dimm.word(o) for o in (0x22, 0x24, 0x26)] == [1200] * 3


def test_dimm_size_fields():
    assert smbios.dimm_size_fields(8 * GiB) == (8192, 0)
    assert smbios.dimm_size_fields(16 * GiB) == (16384, 0)
    assert smbios.dimm_size_fields(32 * GiB) == (0x7FFF, 32768)
    assert smbios.dimm_size_fields(128 * GiB) == (0x7FFF, 131072)


def test_third_party_memory():
    config = configure(cpu=18, memory=512, third_party_memory=True)
    _, table = smbios.build(config, IDENTITY, TABLE_ADDRESS)
    dimms = by_type(parse(table), 17)
    assert {d.string(0x17) for d in dimms} == {"Third-party"}
    assert {d.dword(0x1C) for d in dimms} == {128 * 1024}


def test_mapped_addresses(machine):
    config, _, _, structures = machine
    array = one(structures, 16)
    ranges = layout.ram_ranges(config.memory_option.size_bytes)
    mapped = by_type(structures, 19)
    assert len(mapped) == len(ranges) == 2
    for m, ram in zip(mapped, ranges):
        assert m.dword(0x04) * 1024 == ram.guest_start
        assert (m.dword(0x08) + 1) * 1024 == ram.guest_start + ram.size
        assert m.word(0x0C) == array.handle
        assert m.byte(0x0E) == 4
        assert m.qword(0x0F) == m.qword(0x17) == 0
    assert sum(r.size for r in ranges) == config.memory_option.size_bytes


def test_mapped_address_extended_fields():
    # KiB fields cover addresses below 4 TiB; beyond, FFFFFFFFh and byte addresses.
    assert smbios.mapped_address_fields(1 << 32, 254 * GiB) == (
        1 << 22, ((1 << 32) + 254 * GiB - 1) >> 10, 0, 0)
    start = 4 << 40
    assert smbios.mapped_address_fields(start, GiB) == (
        0xFFFFFFFF, 0xFFFFFFFF, start, start + GiB - 1)


def test_boot_information(machine):
    _, _, _, structures = machine
    boot = one(structures, 32)
    assert boot.raw[4:10] == bytes(6) and boot.byte(0x0A) == 0


def test_release_date():
    assert smbios.release_date("IMP11.88Z.F000.B00.2107050205") == "07/05/2021"
    assert smbios.release_date("MBA71.88Z.0166.B00.1502131457") == "02/13/2015"


def test_dmidecode_decodes_the_dump(tmp_path):
    assert shutil.which("dmidecode"), "dmidecode is needed (Debian package dmidecode; make installs it)"
    # dmidecode --dump-bin layout: entry point at offset 0, its table address 0x20, table there.
    config = configure(cpu=8, memory=32, as_of=date(2018, 1, 10))
    entry, table = smbios.build(config, IDENTITY, 0x20)
    dump = tmp_path / "smbios.bin"
    dump.write_bytes(entry.ljust(0x20, b"\0") + table)
    result = subprocess.run([shutil.which("dmidecode"), "--from-dump", str(dump)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("SMBIOS 3.1.1 present", "Product Name: iMacPro1,1",
                 "Product Name: Mac-7BA5B2D9E42DDD94", "Manufacturer: Apple Inc.",
                 "Version: Intel(R) Xeon(R) W-2140B CPU @ 3.20GHz", "Type: DDR4",
                 "Speed: 2666 MT/s", "Release Date: 07/05/2021", "Type: Laptop",
                 "Version: 1554.80.3.0.0 (iBridge: 18.16.14347.0.0,0)", "Family: Pentium D",
                 "ID: 54 06 05 00", "External Clock: 25 MHz", "Socket Designation: LGA2011-3",
                 "Locator: CPU1_DIMM_A0", "Locator: CPU1_DIMM_D0", "Bank Locator: NODE 1",
                 "Internal Reference Designator: USB0", "Internal Reference Designator: Speaker",
                 "String 1: Apple ROM Version.  BIOS ID: IMP11.88Z.F000.B00.2107050205",
                 "Total Width: 72 bits", "Data Width: 64 bits",
                 "Error Correction Type: Single-bit ECC",
                 f"Serial Number: {IDENTITY.serial_number}",
                 f"UUID: {IDENTITY.hardware_uuid.lower()}", "Upgrade: Socket LGA2066",
                 "Core Count: 8", "Thread Count: 16", "Size: 8 GB", "Maximum Capacity: 512 GB",
                 "Status: No errors detected", "End Of Table"):
        assert text in out, text
    for complaint in ("Invalid", "Wrong", "truncated", "<OUT OF SPEC>", "Unknown Type"):
        assert complaint not in out + result.stderr, complaint
