"""SMBIOS 3 tables that describe the configured iMac Pro (DMTF DSP0134 3.1.1).

`build(config, identity, table_address)` returns (entry_point, structure_table):
  - the 64-bit SMBIOS 3.0 entry point (DSP0134 §5.2.2, anchor "_SM3_", 0x18 bytes, checksum,
    structure table maximum size, structure table address = `table_address`);
  - the structure table (§6.1): each structure is a formatted area (type, length, handle, fields)
    followed by its string set (§6.1.3: NUL-terminated strings, one more NUL after the last; a
    structure with no strings ends in two NULs). Strings are referred to by 1-based number; 0
    means "none" (dmidecode prints "Not Specified", Linux an empty sysfs file).

Where the tables go: the firmware (firmware/boot.py) writes the structure table at
`table_address` and the entry point at a 16-byte boundary in the BIOS area 0xF0000-0xFFFFF, which
Linux scans (drivers/firmware/dmi_scan.c, dmi_scan_machine) when it was not booted through EFI.
A later EFI boot path hands the same entry point over as the SMBIOS3_TABLE_GUID configuration
table instead; the bytes do not change.

Structures, in table order (handles are assigned in that order from 0):
    type 0    BIOS Information                 §7.1
    type 1    System Information               §7.2   (UUID byte order §7.2.1)
    type 2    Baseboard Information            §7.3
    type 3    System Enclosure or Chassis      §7.4
    type 7    Cache Information ×3 (L1-L3)     §7.8
    type 4    Processor Information            §7.5
    type 16   Physical Memory Array            §7.17
    type 17   Memory Device ×4                 §7.18
    type 19   Memory Array Mapped Address      §7.20  (one per RAM range of memory/layout.py)
    type 8    Port Connector Information ×6    §7.9
    type 11   OEM Strings                      §7.12
    type 32   System Boot Information          §7.33
    type 127  End-of-Table                     §7.46

Facts come from the catalog (catalog/data.py), the identity (identity.py), the memory map
(memory/layout.py) and the CPUID this machine answers (cpu/cpuid.py), so the processor's ID and
characteristics claim exactly what the engine executes. Values that no catalog record holds are
named constants below, each with where it comes from. "Intel Macs" below means what dmidecode
prints on real Intel Macs (public dmidecode listings of iMac14,1, iMac15,1, MacBookAir7,2 and
MacBookPro6,2): Apple's firmware fills its strings the same way across models. "The real
iMac Pro" means the three dmidecode dumps of real iMacPro1,1 (linux-hardware.org probes): where
they show what Apple's firmware says, the tables say the same, even where it is odd (a
"Pentium D" of a "Laptop" in an "LGA2011-3" socket); docs/LINUX.md lists those choices.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from datetime import datetime

from imacpro.catalog import Configuration, data
from imacpro.cpu import cpuid
from imacpro.identity import UNIT_CODES, Identity
from imacpro.memory import layout

# --- Entry point (§5.2.2) ------------------------------------------------------------------------
ANCHOR = b"_SM3_"
ENTRY_POINT_LENGTH = 0x18
SMBIOS_MAJOR, SMBIOS_MINOR, SMBIOS_DOCREV = 3, 1, 1   # the structure lengths below are 3.1's
ENTRY_POINT_REVISION = 0x01                           # 3.0 entry point format
ENTRY_POINT_FORMAT = "<5sBBBBBBBIQ"

# --- Structure types and lengths (formatted area, header included) -------------------------------
BIOS, SYSTEM, BASEBOARD, CHASSIS, PROCESSOR, CACHE = 0, 1, 2, 3, 4, 7
MEMORY_ARRAY, MEMORY_DEVICE, MEMORY_ARRAY_MAPPED, BOOT_INFO, END = 16, 17, 19, 32, 127
HEADER_FORMAT = "<BBH"          # type, length, handle
NOT_PROVIDED = 0xFFFE           # handle fields: "no such structure" (§7.5 cache handles, §7.17)

# --- Strings every Apple structure carries -------------------------------------------------------
APPLE = "Apple Inc."
SYSTEM_VERSION = "1.0"                          # Intel Macs: System "Version: 1.0"
SYSTEM_SKU = "System SKU#"                      # Intel Macs: Apple leaves this placeholder
BOARD_ASSET_TAG = "Base Board Asset Tag#"       # Intel Macs
BOARD_LOCATION = "Part Component"               # Intel Macs
INTEL = "Intel(R) Corporation"

# --- Type 0, BIOS (§7.1) -------------------------------------------------------------------------
# The real iMac Pro's firmware (T2 era) gives its own version and the bridgeOS (iBridge) one as
# the BIOS version, and the older boot ROM ID in an OEM string (type 11). Which firmware goes
# with the catalog's boot ROM ID is not published: this is the version one real dump shows.
BIOS_VERSION = "1554.80.3.0.0 (iBridge: 18.16.14347.0.0,0)"
OEM_ROM_VERSION = "Apple ROM Version.  BIOS ID: {}"
BIOS_ROM_SIZE = 8 << 20          # Intel Macs report "ROM Size: 8192 kB" (MacBookAir7,2); not in
                                 # the catalog for the iMac Pro, whose firmware the T2 serves
BIOS_RELEASE = (0, 1)            # Intel Macs report "BIOS Revision: 0.1"
EC_RELEASE_NONE = 0xFF           # no embedded controller firmware release (§7.1)
BIOS_STARTING_SEGMENT = 0        # no legacy runtime BIOS in the 0xE0000 area (dmidecode skips it)
# BIOS characteristics (§7.1.1): only what this machine's firmware does. Not claimed: boot from
# CD, selectable boot, BIOS flash upgrade, shadowing (Apple's firmware claims those).
CHAR_PCI = 1 << 7
# Extension byte 1 (§7.1.2.1) and 2 (§7.1.2.2).
EXT1_ACPI = 1 << 0               # firmware/acpi.py builds the ACPI tables
EXT2_UEFI = 1 << 3               # not set: the guest is loaded by the Linux boot protocol
EXT2_VIRTUAL_MACHINE = 1 << 4    # not set: the machine presents as bare metal (like CPUID's
                                 # hypervisor bit, cpu/cpuid.py)

# --- Type 1, System (§7.2) -----------------------------------------------------------------------
WAKE_UP_POWER_SWITCH = 0x06      # §7.2.2

# --- Type 2, Baseboard (§7.3) --------------------------------------------------------------------
BOARD_HOSTING = 1 << 0           # feature flags §7.3.1 (Intel Macs: "Board is a hosting board")
BOARD_TYPE_MOTHERBOARD = 0x0A    # §7.3.2
BOARD_SERIAL_LENGTH = 17         # Apple logic-board serials are 17 characters (Intel Macs)

# --- Type 3, Chassis (§7.4) ----------------------------------------------------------------------
# §7.4.1. Apple's own database calls the iMac Pro an all-in-one (0x0D), but its firmware says
# "Laptop" in every real dump, and that is what software reads.
CHASSIS_LAPTOP = 0x09
STATE_SAFE = 0x03                # boot-up, power supply, thermal state §7.4.2
SECURITY_NONE = 0x03             # §7.4.3
POWER_CORDS = 1                  # the iMac Pro has one AC inlet

# --- Type 4, Processor (§7.5) --------------------------------------------------------------------
PROCESSOR_CENTRAL = 0x03         # §7.5.1
# §7.5.2: Apple's firmware reports the Xeon W as a "Pentium D" (0xBB) in every real dump.
FAMILY_PENTIUM_D = 0xBB
SOCKET_DESIGNATION = "LGA2011-3" # the real dumps' (the W-2100's socket is LGA2066)
EXTERNAL_CLOCK_MHZ = 25          # the real dumps' (the core crystal, cpu/cpuid.py)
STATUS_POPULATED_ENABLED = 0x41  # §7.5: bit 6 socket populated, bits 2:0 = 1 CPU enabled
UPGRADE_BY_SOCKET = {"LGA2066": 0x39}  # §7.5.5 "Socket LGA2066"
VOLTAGE_UNKNOWN = 0x00           # §7.5.4: legacy mode, no voltage bit set
# Processor characteristics (§7.5.9).
CPU_64BIT = 1 << 2
CPU_MULTI_CORE = 1 << 3
CPU_HARDWARE_THREAD = 1 << 4
CPU_EXECUTE_PROTECTION = 1 << 5
CPU_ENHANCED_VIRTUALIZATION = 1 << 6
CPU_POWER_PERFORMANCE_CONTROL = 1 << 7
# CPUID bits those characteristics stand for (Intel SDM vol. 2A, CPUID).
CPUID_1_ECX_VMX = 1 << 5
CPUID_1_ECX_EIST = 1 << 7
CPUID_X1_EDX_NX = 1 << 20
CPUID_X1_EDX_LM = 1 << 29

# --- Type 8, Port Connectors (§7.9) --------------------------------------------------------------
# The real dumps' six internal reference designators; their connector and port types (not in
# the probes we have) are what those connectors are.
CONNECTOR_NONE, CONNECTOR_USB, CONNECTOR_MINI_JACK, CONNECTOR_OTHER = 0x00, 0x12, 0x1F, 0xFF
PORT_USB, PORT_AUDIO, PORT_OTHER = 0x10, 0x1D, 0xFF
PORT_CONNECTORS = (("USB0", CONNECTOR_USB, PORT_USB), ("USB1", CONNECTOR_USB, PORT_USB),
                   ("Audio Line In", CONNECTOR_MINI_JACK, PORT_AUDIO),
                   ("Thunderbolt", CONNECTOR_OTHER, PORT_OTHER),
                   ("Microphone", CONNECTOR_NONE, PORT_AUDIO),
                   ("Speaker", CONNECTOR_NONE, PORT_AUDIO))
PORT_CONNECTOR, OEM_STRINGS = 8, 11

# --- Type 7, Cache (§7.8) ------------------------------------------------------------------------
L1_PER_CORE = 64 * 1024          # 32 KiB instruction + 32 KiB data (cpu/cpuid.py leaf 4), one
                                 # structure for both as real Intel firmware reports L1
CACHE_ENABLED = 1 << 7           # cache configuration §7.8: bit 7 enabled
CACHE_WRITE_BACK = 0b01 << 8     # bits 9:8 operational mode; bits 6:5 = 00 internal; bit 3 = 0
SRAM_SYNCHRONOUS = 1 << 5        # §7.8.2
# Error correction (§7.8.3), system cache type (§7.8.4), associativity (§7.8.5): what Intel
# platform firmware reports for Skylake-SP/W; ways as cpu/cpuid.py's leaf 4 (L3 is 11-way,
# which §7.8.5 cannot name: "Other").
ECC_PARITY, ECC_SINGLE_BIT, ECC_MULTI_BIT = 0x04, 0x05, 0x06
CACHE_TYPE_OTHER, CACHE_TYPE_UNIFIED = 0x01, 0x05
ASSOC_OTHER, ASSOC_8_WAY, ASSOC_16_WAY = 0x01, 0x07, 0x08
CACHE_SIZE_64K_GRANULE = 1 << 15  # Maximum/Installed Size: bit 15 set = 64 KiB units
CACHE_SIZE2_64K_GRANULE = 1 << 31  # the 3.1 "Size 2" DWORD fields

# --- Type 16 / 17 / 19, memory (§7.17, §7.18, §7.20) ---------------------------------------------
LOCATION_SYSTEM_BOARD = 0x03     # §7.17.1
USE_SYSTEM_MEMORY = 0x03         # §7.17.2
# §7.17.3. DDR4 ECC on 72-bit channels is SECDED: single-bit errors corrected (multi-bit
# detected only), hence "Single-bit ECC"; without ECC, "None".
ERROR_CORRECTION_SINGLE_BIT, ERROR_CORRECTION_NONE = 0x05, 0x03
CAPACITY_USE_EXTENDED = 0x8000_0000  # type 16 Maximum Capacity: "see Extended Maximum Capacity"
FORM_FACTOR_DIMM = 0x09          # §7.18.1
MEMORY_TYPES = {"DDR4": 0x1A}    # §7.18.2
# Type detail (§7.18.3): synchronous only. Whether Apple's modules are registered or unbuffered
# is in no catalog record, so neither bit is claimed.
DETAIL_SYNCHRONOUS = 1 << 7
DDR4_MILLIVOLTS = 1200           # JEDEC DDR4 VDD (JESD79-4)
DATA_WIDTH = 64
ECC_WIDTH = 8
SIZE_USE_EXTENDED = 0x7FFF       # type 17 Size: "see Extended Size" (≥ 32 GiB - 1 MiB)
SLOT_LOCATOR = "CPU1_DIMM_{}0"   # the real machine's slot names: CPU1_DIMM_A0 ... D0,
BANK_LOCATOR = "NODE 1"          # all in bank "NODE 1" (dmidecode of real iMacPro1,1)
APPLE_MEMORY_VENDOR = "Apple"    # the modules' maker is not in the catalog: name who supplied them
THIRD_PARTY_MEMORY_VENDOR = "Third-party"
ADDRESS_USE_EXTENDED = 0xFFFF_FFFF  # type 19: address in KiB does not fit a DWORD (≥ 4 TiB)

# --- Type 32 (§7.33) -----------------------------------------------------------------------------
BOOT_NO_ERRORS = 0x00

# --- Handles (§6.1.2), in table order; types 19, 8, 11, 32 and 127 follow the DIMMs ---------------
(H_BIOS, H_SYSTEM, H_BASEBOARD, H_CHASSIS, H_L1, H_L2, H_L3, H_PROCESSOR,
 H_MEMORY_ARRAY, H_FIRST_DIMM) = range(10)


class _Strings:
    """One structure's string set: `add(text)` returns the string number (0 for none)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []

    def add(self, text: str | None) -> int:
        if not text:
            return 0
        raw = text.encode("ascii")
        if b"\0" in raw:
            raise ValueError(f"SMBIOS string with a NUL: {text!r}")
        self.items.append(raw)
        return len(self.items)

    def encode(self) -> bytes:
        if not self.items:
            return b"\0\0"
        return b"".join(item + b"\0" for item in self.items) + b"\0"


def _structure(kind: int, handle: int, fields: bytes, strings: _Strings | None = None) -> bytes:
    header = struct.pack(HEADER_FORMAT, kind, struct.calcsize(HEADER_FORMAT) + len(fields), handle)
    return header + fields + (strings or _Strings()).encode()


def release_date(boot_rom_version: str) -> str:
    """MM/DD/YYYY from the build stamp YYMMDDhhmm ending Apple's boot ROM version."""
    stamp = boot_rom_version.rsplit(".", 1)[-1]
    return datetime.strptime(stamp, "%y%m%d%H%M").strftime("%m/%d/%Y")


def board_serial(identity: Identity) -> str:
    """The logic board's 17-character serial, derived from the identity (no randomness).

    Shaped like Apple's: plant (the system serial's), year digit and two-digit ISO week of
    manufacture, then 11 characters from SHA-256 of the system serial and hardware UUID in the
    serial alphabet. Apple's own scheme for the tail is not public; this is ours.
    """
    made = identity.manufactured
    head = f"{identity.serial_number[:3]}{made.year % 10}{made.isocalendar().week:02d}"
    digest = hashlib.sha256(f"{identity.serial_number}/{identity.hardware_uuid}".encode()).digest()
    tail = "".join(UNIT_CODES[b % len(UNIT_CODES)] for b in digest)
    return (head + tail)[:BOARD_SERIAL_LENGTH]


def _bios() -> bytes:
    s = _Strings()
    rom_id = data.MODEL["boot_rom_version"].value
    rom_blocks = BIOS_ROM_SIZE // (64 * 1024) - 1   # 64 KiB × (n + 1); < 16 MiB: no extended size
    fields = struct.pack("<BBHBBQBBBBBBH", s.add(APPLE), s.add(BIOS_VERSION),
                         BIOS_STARTING_SEGMENT, s.add(release_date(rom_id)), rom_blocks,
                         CHAR_PCI, EXT1_ACPI,
                         0,  # extension byte 2: neither EXT2_UEFI nor EXT2_VIRTUAL_MACHINE
                         *BIOS_RELEASE, EC_RELEASE_NONE, EC_RELEASE_NONE, 0)
    return _structure(BIOS, H_BIOS, fields, s)


def _system(identity: Identity) -> bytes:
    s = _Strings()
    fields = struct.pack("<BBBB16sBBB", s.add(APPLE), s.add(data.MODEL["model_identifier"].value),
                         s.add(SYSTEM_VERSION), s.add(identity.serial_number),
                         uuid.UUID(identity.hardware_uuid).bytes_le, WAKE_UP_POWER_SWITCH,
                         s.add(SYSTEM_SKU), s.add(data.MODEL["model_name"].value))
    return _structure(SYSTEM, H_SYSTEM, fields, s)


def _baseboard(identity: Identity) -> bytes:
    s = _Strings()
    # Intel Macs: product = board-id, version = model identifier.
    model = data.MODEL["model_identifier"].value
    fields = struct.pack("<BBBBBBBHBB", s.add(APPLE), s.add(data.MODEL["board_id"].value),
                         s.add(model), s.add(board_serial(identity)),
                         s.add(BOARD_ASSET_TAG), BOARD_HOSTING, s.add(BOARD_LOCATION), H_CHASSIS,
                         BOARD_TYPE_MOTHERBOARD, 0)
    return _structure(BASEBOARD, H_BASEBOARD, fields, s)


def _chassis(identity: Identity) -> bytes:
    s = _Strings()
    # Intel Macs: version = board-id, serial = the system serial.
    fields = struct.pack("<BBBBBBBBBIBBBBB", s.add(APPLE), CHASSIS_LAPTOP,
                         s.add(data.MODEL["board_id"].value), s.add(identity.serial_number), 0,
                         STATE_SAFE, STATE_SAFE, STATE_SAFE, SECURITY_NONE, 0, 0, POWER_CORDS,
                         0, 0, 0)
    return _structure(CHASSIS, H_CHASSIS, fields, s)


def _cache_size_fields(size: int) -> tuple[int, int]:
    """(the WORD size field, the 3.1 DWORD "Size 2" field) for `size` bytes (§7.8)."""
    kib = size // 1024
    size2 = kib if kib < CACHE_SIZE2_64K_GRANULE else CACHE_SIZE2_64K_GRANULE | (kib // 64)
    if kib < CACHE_SIZE_64K_GRANULE:
        return kib, size2
    if kib // 64 < CACHE_SIZE_64K_GRANULE:
        return CACHE_SIZE_64K_GRANULE | (kib // 64), size2
    return 0xFFFF, size2                           # too big for the WORD: see Size 2


def cache_sizes(p: data.Processor) -> dict[int, int]:
    """Bytes of each cache level over all cores."""
    return {1: L1_PER_CORE * p.cores, 2: p.l2_per_core_kib * 1024 * p.cores, 3: p.l3_kib * 1024}


CACHE_TRAITS = {  # level: (error correction, system cache type, associativity)
    1: (ECC_PARITY, CACHE_TYPE_OTHER, ASSOC_8_WAY),
    2: (ECC_SINGLE_BIT, CACHE_TYPE_UNIFIED, ASSOC_16_WAY),
    3: (ECC_MULTI_BIT, CACHE_TYPE_UNIFIED, ASSOC_OTHER),
}


def _cache(level: int, size: int, handle: int) -> bytes:
    s = _Strings()
    configuration = CACHE_WRITE_BACK | CACHE_ENABLED | (level - 1)
    word, dword = _cache_size_fields(size)
    ecc, kind, ways = CACHE_TRAITS[level]
    fields = struct.pack("<BHHHHHBBBBII", s.add(f"L{level} Cache"), configuration, word, word,
                         SRAM_SYNCHRONOUS, SRAM_SYNCHRONOUS, 0, ecc, kind, ways, dword, dword)
    return _structure(CACHE, handle, fields, s)


def processor_id(p: data.Processor) -> tuple[int, int]:
    """(EAX, EDX) of CPUID leaf 1 as this machine's CPUs answer it."""
    eax, _, _, edx = cpuid.cpuid_table(p, 0)[1, 0]
    return eax, edx


def processor_characteristics(p: data.Processor) -> int:
    """§7.5.9 bits, each from the CPUID the engine answers (cpu/cpuid.py)."""
    table = cpuid.cpuid_table(p, 0)
    ecx1 = table[1, 0][2]
    edx_ext = table[0x80000001, 0][3]
    bits = 0
    bits |= CPU_64BIT if edx_ext & CPUID_X1_EDX_LM else 0
    bits |= CPU_MULTI_CORE if p.cores > 1 else 0
    bits |= CPU_HARDWARE_THREAD if p.threads > p.cores else 0
    bits |= CPU_EXECUTE_PROTECTION if edx_ext & CPUID_X1_EDX_NX else 0
    bits |= CPU_ENHANCED_VIRTUALIZATION if ecx1 & CPUID_1_ECX_VMX else 0
    bits |= CPU_POWER_PERFORMANCE_CONTROL if ecx1 & CPUID_1_ECX_EIST else 0
    return bits


def _processor(p: data.Processor) -> bytes:
    s = _Strings()
    eax, edx = processor_id(p)
    fields = struct.pack(
        "<BBBBIIBBHHHBBHHHBBBBBBHHHHH",
        s.add(SOCKET_DESIGNATION), PROCESSOR_CENTRAL, FAMILY_PENTIUM_D, s.add(INTEL), eax, edx,
        s.add(p.brand_string), VOLTAGE_UNKNOWN, EXTERNAL_CLOCK_MHZ, round(p.turbo_ghz * 1000),
        round(p.base_ghz * 1000), STATUS_POPULATED_ENABLED, UPGRADE_BY_SOCKET[p.socket],
        H_L1, H_L2, H_L3, 0, 0, 0, p.cores, p.cores, p.threads, processor_characteristics(p),
        FAMILY_PENTIUM_D, p.cores, p.cores, p.threads)
    return _structure(PROCESSOR, H_PROCESSOR, fields, s)


def _port_connector(handle: int, designator: str, connector: int, port: int) -> bytes:
    s = _Strings()
    fields = struct.pack("<BBBBB", s.add(designator), connector, 0, CONNECTOR_NONE, port)
    return _structure(PORT_CONNECTOR, handle, fields, s)


def _oem_strings(handle: int) -> bytes:
    s = _Strings()
    s.add(OEM_ROM_VERSION.format(data.MODEL["boot_rom_version"].value))
    return _structure(OEM_STRINGS, handle, bytes([len(s.items)]), s)


def _memory_array() -> bytes:
    max_bytes = max(m.size_bytes for m in data.MEMORY.values())   # 512 GB (third-party modules)
    max_kib = max_bytes // 1024
    capacity, extended = (max_kib, 0) if max_kib < CAPACITY_USE_EXTENDED else (
        CAPACITY_USE_EXTENDED, max_bytes)
    ecc = ERROR_CORRECTION_SINGLE_BIT if data.MEMORY_ECC else ERROR_CORRECTION_NONE
    fields = struct.pack("<BBBIHHQ", LOCATION_SYSTEM_BOARD, USE_SYSTEM_MEMORY, ecc, capacity,
                         NOT_PROVIDED, data.MEMORY_SLOTS, extended)
    return _structure(MEMORY_ARRAY, H_MEMORY_ARRAY, fields)


def dimm_size_fields(size_bytes: int) -> tuple[int, int]:
    """(Size, Extended Size) of a type 17 structure (§7.18), both in MiB."""
    mib = size_bytes >> 20
    return (mib, 0) if mib < SIZE_USE_EXTENDED else (SIZE_USE_EXTENDED, mib)


def _memory_device(config: Configuration, slot: int) -> bytes:
    s = _Strings()
    size, extended = dimm_size_fields(config.memory_option.dimm_gb << 30)
    total_width = DATA_WIDTH + (ECC_WIDTH if data.MEMORY_ECC else 0)
    vendor = THIRD_PARTY_MEMORY_VENDOR if config.third_party_memory else APPLE_MEMORY_VENDOR
    speed = data.MEMORY_SPEED_MTS
    fields = struct.pack(
        "<HHHHHBBBBBHHBBBBBIHHHH",
        H_MEMORY_ARRAY, NOT_PROVIDED, total_width, DATA_WIDTH, size, FORM_FACTOR_DIMM, 0,
        s.add(SLOT_LOCATOR.format("ABCD"[slot])), s.add(BANK_LOCATOR),
        MEMORY_TYPES[data.MEMORY_TYPE], DETAIL_SYNCHRONOUS, speed, s.add(vendor), 0, 0, 0,
        0,  # attributes: rank unknown
        extended, speed, DDR4_MILLIVOLTS, DDR4_MILLIVOLTS, DDR4_MILLIVOLTS)
    return _structure(MEMORY_DEVICE, H_FIRST_DIMM + slot, fields, s)


def mapped_address_fields(start: int, size: int) -> tuple[int, int, int, int]:
    """(start KiB, end KiB, extended start, extended end) of a type 19 structure (§7.20).

    The KiB fields hold addresses below 4 TiB; beyond that both are FFFFFFFFh and the byte
    addresses go in the extended (3.x) fields.
    """
    end = start + size - 1
    if (end >> 10) < ADDRESS_USE_EXTENDED:
        return start >> 10, end >> 10, 0, 0
    return ADDRESS_USE_EXTENDED, ADDRESS_USE_EXTENDED, start, end


def _mapped_address(ram: layout.RamRange, handle: int) -> bytes:
    start_kib, end_kib, ext_start, ext_end = mapped_address_fields(ram.guest_start, ram.size)
    fields = struct.pack("<IIHBQQ", start_kib, end_kib, H_MEMORY_ARRAY, data.MEMORY_SLOTS,
                         ext_start, ext_end)
    return _structure(MEMORY_ARRAY_MAPPED, handle, fields)


def _boot_information(handle: int) -> bytes:
    return _structure(BOOT_INFO, handle, bytes(6) + bytes([BOOT_NO_ERRORS]))


def _end(handle: int) -> bytes:
    return _structure(END, handle, b"")


def structure_table(config: Configuration, identity: Identity) -> bytes:
    p = config.processor
    sizes = cache_sizes(p)
    parts = [_bios(), _system(identity), _baseboard(identity), _chassis(identity),
             _cache(1, sizes[1], H_L1), _cache(2, sizes[2], H_L2), _cache(3, sizes[3], H_L3),
             _processor(p), _memory_array()]
    parts += [_memory_device(config, slot) for slot in range(data.MEMORY_SLOTS)]
    handle = H_FIRST_DIMM + data.MEMORY_SLOTS
    for ram in layout.ram_ranges(config.memory_option.size_bytes):
        parts.append(_mapped_address(ram, handle))
        handle += 1
    for designator, connector, port in PORT_CONNECTORS:
        parts.append(_port_connector(handle, designator, connector, port))
        handle += 1
    parts.append(_oem_strings(handle))
    handle += 1
    parts += [_boot_information(handle), _end(handle + 1)]
    return b"".join(parts)


def entry_point(table_length: int, table_address: int) -> bytes:
    """The SMBIOS 3.0 (64-bit) entry point structure (§5.2.2), checksummed."""
    raw = bytearray(struct.pack(ENTRY_POINT_FORMAT, ANCHOR, 0, ENTRY_POINT_LENGTH, SMBIOS_MAJOR,
                                SMBIOS_MINOR, SMBIOS_DOCREV, ENTRY_POINT_REVISION, 0,
                                table_length, table_address))
    raw[5] = -sum(raw) & 0xFF
    return bytes(raw)


def build(config: Configuration, identity: Identity, table_address: int) -> tuple[bytes, bytes]:
    """(entry point, structure table) for a table placed at guest-physical `table_address`."""
    table = structure_table(config, identity)
    return entry_point(len(table), table_address), table
