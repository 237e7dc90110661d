"""ACPI tables for the machine (ACPI 6.4): RSDP, RSDT/XSDT, FADT, FACS, DSDT, MADT, HPET, MCFG.

`build()` lays every table out in one blob that the firmware copies to guest-physical `base`
(and marks ACPI-reclaimable, e820 type 3); it returns the RSDP's address, for
boot_params.acpi_rsdp_addr. The RSDP's 36 bytes hold only absolute addresses, so the firmware
may also copy them to a 16-byte boundary in the 0xE0000-0xFFFFF BIOS area where Linux scans.

    base  RSDP (36 bytes, 16-byte aligned)
          FACS (64-byte aligned, ACPI 6.4 §5.2.10)
          DSDT, FADT, MADT, HPET, MCFG, RSDT (when everything is below 4 GiB), XSDT

Identity: Apple's firmware tables say OEM ID "APPLE ", OEM table ID "Apple00" and creator
"Loki" revision 0x5F (what `acpidump` shows on Intel Macs of the iMac Pro's generation, for the
tables Apple's firmware generates rather than compiles). We use them for every table, the DSDT
included: its AML is generated here, not compiled by iasl, so iasl's "INTL" creator (which
Apple's compiled DSDTs carry) would be untrue.

The DSDT is AML produced by a small encoder in this file (names, scopes, devices, packages,
buffers, integers, strings, resource descriptors) rather than ASL assembled by `iasl` at build
time: the namespace is static data with no methods, the encoder is ~100 lines with no build
dependency, and the processor devices follow the CPU count without templating ASL. The tests
disassemble the result with `iasl -d` when it is installed, as an independent check.

What the namespace holds and why (Linux 6.1 is the reference OS):
  \\_S0, \\_S5       sleep packages; SLP_TYP values are the PCH's (devices/acpi_pm.py). No
                    \\_S3/\\_S4: we cannot sleep, so the OS is not offered it.
  \\_SB.PCI0         PCIe host bridges (PNP0A08/PNP0A03), one per root bus of the board
  \\_SB.PCF0         (board.RootBus), segment 0: PCI0 for buses 00-ef with the I/O ports around
                    0xCF8-0xCFF, its share of the 32-bit memory window (memory/layout.py) and
                    the 64-bit window above RAM; PCF0 for buses f0-ff (the GPU) with its
                    shares. _PRT routes each root-bus device's INTA# to its I/O APIC pin (the
                    board's PCI rows; no PCI link devices). No _OSC: Linux then keeps the
                    platform's PCIe features off (ASPM, native hot-plug, AER), which is right
                    for a model whose links need no management.
  \\_SB.PCI0.LPCB    the PCH's LPC bridge (0:1F.0 by _ADR; its PCI function is not modelled yet)
                    with the board's rows under "LPCB": COM1 (PNP0501), the CMOS RTC
                    (PNP0B00) and the HPET (PNP0103), each with the row's resources. No
                    PS/2 controller: the iMac Pro has none (its keyboard is USB or Bluetooth),
                    so neither the DSDT nor the FADT's 8042 flag offers one and Linux does not
                    probe ports 0x60/0x64 (they still decode, for the i8042 reset pulse).
  \\_SB.MBRD         motherboard resources (PNP0C02): the board's rows under "MBRD" (the ACPI PM
                    ports and the ECAM window), so
                    Linux accepts MMCONFIG and never hands those ranges to a PCI BAR.
  \\_SB.Cnnn         one processor device (ACPI0007) per logical CPU, _UID = the MADT's ACPI
                    processor UID (the CPU's index).
The power button is the FADT's fixed-feature button (PWR_BUTTON flag clear): no PNP0C0C.
"""

from __future__ import annotations

import struct

from imacpro.board import HIGH, IMAC_PRO, LEVEL, LOW, Board, IsaIrq, RootBus, Row
from imacpro.devices import acpi_pm
from imacpro.devices.hpet import CAPABILITIES as HPET_CAPABILITIES
from imacpro.memory import layout

# --- identity (ACPI 6.4 §5.2.6, System Description Table Header) ---------------------------
OEM_ID = b"APPLE "
OEM_TABLE_ID = b"Apple00 "        # 8 bytes: "Apple00" padded with a space
OEM_REVISION = 1
CREATOR_ID = b"Loki"
CREATOR_REVISION = 0x5F
HEADER_SIZE = 36

# --- RSDP (§5.2.5.3) -------------------------------------------------------------------------
RSDP_SIGNATURE = b"RSD PTR "
RSDP_REVISION = 2                 # ACPI 2.0+: has the XSDT address and the extended checksum
RSDP_V1_LENGTH = 20               # the first checksum covers these bytes
RSDP_LENGTH = 36

# --- table revisions (ACPI 6.4) --------------------------------------------------------------
RSDT_REVISION = 1                 # §5.2.7
XSDT_REVISION = 1                 # §5.2.8
FADT_REVISION, FADT_MINOR_REVISION = 6, 4   # §5.2.9: 276 bytes
DSDT_REVISION = 2                 # §5.2.11.1: 2 = 64-bit AML integers
MADT_REVISION = 5                 # §5.2.12
HPET_REVISION = 1                 # IA-PC HPET specification 1.0a, §3.2.4
MCFG_REVISION = 1                 # PCI Firmware Specification 3.2, §4.1.2
FACS_VERSION = 2                  # §5.2.10
FADT_LENGTH = 276
FACS_LENGTH = 64
FACS_ALIGN = 64                   # §5.2.10: the FACS is 64-byte aligned
TABLE_ALIGN = 16

# --- Generic Address Structure (§5.2.3.2) -----------------------------------------------------
GAS_SYSTEM_MEMORY, GAS_SYSTEM_IO = 0, 1
ACCESS_UNDEFINED, ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD, ACCESS_QWORD = range(5)

# --- FADT fields (§5.2.9, Tables 5.9-5.11) ----------------------------------------------------
PM_PROFILE_DESKTOP = 1            # Preferred_PM_Profile: the iMac is a desktop
P_LVL2_LAT_NONE = 101             # > 100: no C2 through the P_LVL2 register
P_LVL3_LAT_NONE = 1001            # > 1000: no C3
RTC_CENTURY_INDEX = 0x32          # CMOS byte holding the century (devices/rtc.py)
RESET_OFFSET = 1                  # the reset control register: the byte after CONFIG_ADDRESS
RESET_VALUE = 0x06                # SYS_RST | RST_CPU: a platform reset
# Fixed feature flags (Table 5.10).
FADT_WBINVD = 1 << 0
FADT_PROC_C1 = 1 << 2
FADT_PWR_BUTTON = 1 << 4          # set = control-method button; clear = fixed feature (ours)
FADT_SLP_BUTTON = 1 << 5          # set = no fixed-feature sleep button (we have none)
FADT_FIX_RTC = 1 << 6             # set = no RTC wake status in the PM1 block (we have none)
FADT_TMR_VAL_EXT = 1 << 8
FADT_RESET_REG_SUP = 1 << 10
FADT_FLAGS = (FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_RESET_REG_SUP
              | (FADT_TMR_VAL_EXT if acpi_pm.TMR_VAL_EXT else 0))
# IA-PC boot architecture flags (Table 5.11).
BOOT_LEGACY_DEVICES = 1 << 0      # ISA devices the OS may probe (COM1, RTC, PIT, PIC)
BOOT_8042 = 1 << 1                # an i8042 to probe: clear, the iMac Pro has no PS/2 ports
BOOT_VGA_NOT_PRESENT = 1 << 2     # no VGA at 0xA0000/0x3C0 (the legacy hole is plain RAM)
IAPC_BOOT_ARCH = BOOT_LEGACY_DEVICES | BOOT_VGA_NOT_PRESENT

# --- MADT (§5.2.12) -------------------------------------------------------------------------
MADT_PCAT_COMPAT = 1 << 0         # there are 8259s too (Linux masks them)
MADT_LOCAL_APIC, MADT_IO_APIC, MADT_INTERRUPT_OVERRIDE = 0, 1, 2      # Table 5.21
MADT_LOCAL_APIC_NMI, MADT_LOCAL_X2APIC = 4, 9
LAPIC_ENABLED = 1 << 0            # Table 5.23
# MPS INTI flags (Table 5.26): polarity 1:0, trigger mode 3:2.
POLARITY_CONFORMS, POLARITY_HIGH, POLARITY_LOW = 0b00, 0b01, 0b11
TRIGGER_CONFORMS, TRIGGER_EDGE, TRIGGER_LEVEL = 0b00 << 2, 0b01 << 2, 0b11 << 2
ISA_BUS = 0
POLARITY_FLAGS = {HIGH: POLARITY_HIGH, LOW: POLARITY_LOW}
TRIGGER_FLAGS = {LEVEL: TRIGGER_LEVEL}
ALL_PROCESSORS = 0xFF
NMI_LINT = 1                      # LINT1 is wired to NMI on PCs
NMI_FLAGS = POLARITY_HIGH | TRIGGER_EDGE

# --- HPET table (IA-PC HPET 1.0a §3.2.4) -------------------------------------------------------
HPET_BLOCK_ID = HPET_CAPABILITIES & 0xFFFF_FFFF   # GCAP_ID bits 31:0: 0x8086A201
HPET_NUMBER = 0
HPET_MIN_TICK = 0x80              # minimum periodic tick, in counter ticks (as Intel firmware)
HPET_PAGE_PROTECTION = 0          # no guarantee about the rest of the 4 KiB page

# --- MCFG (PCI Firmware Specification 3.2 §4.1.2) --------------------------------------------
PCI_SEGMENT = 0
PCI_BUS_FIRST, PCI_BUS_LAST = 0, 255

# --- PCI host bridge windows (DSDT) ------------------------------------------------------------
# The legacy ports below the PCI share (the LPC bus's) belong to the first host bridge.
CONFIG_PORTS = (0x0CF8, 0x0CFF)

# --- DSDT values -------------------------------------------------------------------------------
STA_PRESENT = 0x0F                # present, enabled, shown in UI, functioning
PROCESSOR_HID = "ACPI0007"        # §8.4: processor device (the Processor op is deprecated)


# === helpers ==================================================================================

def checksum(data: bytes) -> int:
    """The byte that makes `data` plus it sum to 0 mod 256 (§5.2.6, Checksum)."""
    return -sum(data) & 0xFF


def sdt(signature: bytes, revision: int, body: bytes, oem_table_id: bytes = OEM_TABLE_ID) -> bytes:
    """A system description table: the 36-byte header (§5.2.6, Table 5.4) and `body`."""
    assert len(signature) == 4 and len(oem_table_id) == 8
    length = HEADER_SIZE + len(body)
    header = struct.pack("<4sIBB6s8sI4sI", signature, length, revision, 0, OEM_ID, oem_table_id,
                         OEM_REVISION, CREATOR_ID, CREATOR_REVISION)
    table = bytearray(header + body)
    table[9] = checksum(table)
    return bytes(table)


def gas(space: int, bit_width: int, address: int, access: int = ACCESS_UNDEFINED,
        bit_offset: int = 0) -> bytes:
    """Generic Address Structure (§5.2.3.2, Table 5.1), 12 bytes."""
    return struct.pack("<BBBBQ", space, bit_width, bit_offset, access, address)


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


# === RSDP, RSDT, XSDT, FACS ===================================================================

def rsdp(xsdt_address: int, rsdt_address: int = 0) -> bytes:
    """Root System Description Pointer (§5.2.5.3, Table 5.3), 36 bytes, both checksums."""
    data = bytearray(struct.pack("<8sB6sBIIQB3s", RSDP_SIGNATURE, 0, OEM_ID, RSDP_REVISION,
                                 rsdt_address, RSDP_LENGTH, xsdt_address, 0, bytes(3)))
    data[8] = checksum(data[:RSDP_V1_LENGTH])
    data[32] = checksum(data)
    return bytes(data)


def rsdt(addresses: list[int]) -> bytes:
    """Root System Description Table (§5.2.7): 32-bit table pointers."""
    return sdt(b"RSDT", RSDT_REVISION, b"".join(struct.pack("<I", a) for a in addresses))


def xsdt(addresses: list[int]) -> bytes:
    """Extended System Description Table (§5.2.8): 64-bit table pointers."""
    return sdt(b"XSDT", XSDT_REVISION, b"".join(struct.pack("<Q", a) for a in addresses))


def facs() -> bytes:
    """Firmware ACPI Control Structure (§5.2.10, Table 5.14): no checksum, 64 bytes. No waking
    vector (we never sleep), global lock free, no S4BIOS, hardware signature 0."""
    table = struct.pack("<4sIIIIIQB3sI24s", b"FACS", FACS_LENGTH, 0, 0, 0, 0, 0, FACS_VERSION,
                        bytes(3), 0, bytes(24))
    assert len(table) == FACS_LENGTH
    return table


# === FADT =====================================================================================

def _low32(address: int) -> int:
    """A 32-bit pointer field: the address when it fits, else 0 (the X_ field carries it)."""
    return address if address < 1 << 32 else 0


def fadt(facs_address: int, dsdt_address: int, board: Board = IMAC_PRO) -> bytes:
    """Fixed ACPI Description Table, revision 6 (§5.2.9, Table 5.9), 276 bytes: legacy PM
    hardware (not hardware-reduced), the PM blocks of devices/acpi_pm.py where the board puts
    them, the SCI's IRQ, reset through the reset control register (0xCF9)."""
    pm = acpi_pm
    pm_base = board["acpi_pm"].ports[0].base
    pm1a_evt, pm1a_cnt, pm_tmr = pm_base + pm.PM1_STS, pm_base + pm.PM1_CNT, pm_base + pm.PM_TMR
    body = bytearray(FADT_LENGTH - HEADER_SIZE)

    def put(offset: int, fmt: str, *values) -> None:
        struct.pack_into("<" + fmt, body, offset - HEADER_SIZE, *values)

    put(36, "II", _low32(facs_address), _low32(dsdt_address))   # FIRMWARE_CTRL, DSDT
    put(45, "B", PM_PROFILE_DESKTOP)
    put(46, "H", board.isa_irq("acpi_pm"))
    put(48, "IBBBB", 0, 0, 0, 0, 0)       # SMI_CMD 0: always in ACPI mode; no S4BIOS, no PSTATE_CNT
    put(56, "IIIIIIII", pm1a_evt, 0, pm1a_cnt, 0, 0, pm_tmr, 0, 0)
    put(88, "BBBBBBBB", pm.PM1_EVT_LEN, pm.PM1_CNT_LEN, 0, pm.PM_TMR_LEN, 0, 0, 0, 0)
    put(96, "HHHH", P_LVL2_LAT_NONE, P_LVL3_LAT_NONE, 0, 0)  # FLUSH_SIZE/STRIDE: WBINVD works
    put(104, "BBBBB", 0, 0, 0, 0, RTC_CENTURY_INDEX)           # no duty cycle, no RTC alarms
    put(109, "H", IAPC_BOOT_ARCH)
    put(112, "I", FADT_FLAGS)
    body[116 - HEADER_SIZE:128 - HEADER_SIZE] = gas(GAS_SYSTEM_IO, 8, reset_port(board),
                                                           ACCESS_BYTE)
    put(128, "BHB", RESET_VALUE, 0, FADT_MINOR_REVISION)     # ARM_BOOT_ARCH 0
    put(132, "QQ", facs_address, dsdt_address)                 # X_FIRMWARE_CTRL, X_DSDT
    blocks = (
        (148, pm1a_evt, pm.PM1_EVT_LEN, ACCESS_WORD),    # X_PM1a_EVT_BLK
        (172, pm1a_cnt, pm.PM1_CNT_LEN, ACCESS_WORD),    # X_PM1a_CNT_BLK
        (208, pm_tmr, pm.PM_TMR_LEN, ACCESS_DWORD),      # X_PM_TMR_BLK
    )
    for offset, port, length, access in blocks:
        body[offset - HEADER_SIZE:offset - HEADER_SIZE + 12] = gas(GAS_SYSTEM_IO, 8 * length,
                                                                   port, access)
    # X_PM1b_*, X_PM2_CNT, X_GPE0/1, SLEEP_CONTROL/STATUS (hardware-reduced only) and the
    # hypervisor vendor identity stay zero.
    return sdt(b"FACP", FADT_REVISION, bytes(body))


def reset_port(board: Board = IMAC_PRO) -> int:
    """The PCH's reset control register (devices/reset.py), beside CONFIG_ADDRESS."""
    return board["pci_config"].ports[0].base + RESET_OFFSET


# === MADT =====================================================================================

def madt_local_apic(uid: int, apic_id: int) -> bytes:
    """Processor Local APIC (§5.2.12.2), or Processor Local x2APIC (§5.2.12.12) when the APIC
    ID or UID does not fit a byte."""
    if apic_id < 0xFF and uid < 0xFF:
        return struct.pack("<BBBBI", MADT_LOCAL_APIC, 8, uid, apic_id, LAPIC_ENABLED)
    return struct.pack("<BBHIII", MADT_LOCAL_X2APIC, 16, 0, apic_id, LAPIC_ENABLED, uid)


def madt_io_apic(ioapic_id: int, address: int = layout.IOAPIC_BASE, gsi_base: int = 0) -> bytes:
    """I/O APIC (§5.2.12.3)."""
    return struct.pack("<BBBBII", MADT_IO_APIC, 12, ioapic_id, 0, address, gsi_base)


def madt_override(irq: int, gsi: int, flags: int) -> bytes:
    """Interrupt Source Override (§5.2.12.5) for ISA IRQ `irq`."""
    return struct.pack("<BBBBIH", MADT_INTERRUPT_OVERRIDE, 10, ISA_BUS, irq, gsi, flags)


def override_flags(line: IsaIrq) -> int:
    """MPS INTI flags of an ISA interrupt line (conforming unless the board says otherwise)."""
    return (POLARITY_FLAGS.get(line.polarity, POLARITY_CONFORMS)
            | TRIGGER_FLAGS.get(line.trigger, TRIGGER_CONFORMS))


def madt_lapic_nmi(uid: int = ALL_PROCESSORS, lint: int = NMI_LINT,
                   flags: int = NMI_FLAGS) -> bytes:
    """Local APIC NMI (§5.2.12.7)."""
    return struct.pack("<BBBHB", MADT_LOCAL_APIC_NMI, 6, uid, flags, lint)


def madt(apic_ids: list[int], ioapic_id: int, board: Board = IMAC_PRO) -> bytes:
    """Multiple APIC Description Table (§5.2.12): a LAPIC per logical CPU (UID = index), the
    I/O APIC at GSI 0, an override for each ISA IRQ the board wires otherwise than the ISA
    default (IRQ 0 to pin 2, the SCI level and active high), NMI on every CPU's LINT1."""
    entries = [madt_local_apic(uid, apic_id) for uid, apic_id in enumerate(apic_ids)]
    entries.append(madt_io_apic(ioapic_id, board["ioapic"].mmio.base))
    entries += [madt_override(line.irq, line.pin, override_flags(line))
                for line in board.interrupt_overrides()]
    entries.append(madt_lapic_nmi())
    body = struct.pack("<II", board["lapic"].mmio.base, MADT_PCAT_COMPAT) + b"".join(entries)
    return sdt(b"APIC", MADT_REVISION, body)


# === HPET, MCFG ===============================================================================

def hpet(board: Board = IMAC_PRO) -> bytes:
    """IA-PC HPET Description Table (HPET spec 1.0a §3.2.4, Table 3), 56 bytes."""
    body = (struct.pack("<I", HPET_BLOCK_ID)
            + gas(GAS_SYSTEM_MEMORY, 64, board["hpet"].mmio.base)
            + struct.pack("<BHB", HPET_NUMBER, HPET_MIN_TICK, HPET_PAGE_PROTECTION))
    return sdt(b"HPET", HPET_REVISION, body)


def mcfg(board: Board = IMAC_PRO) -> bytes:
    """PCI Express memory-mapped configuration space (PCI Firmware 3.2 §4.1.2), 60 bytes."""
    body = bytes(8) + struct.pack("<QHBBI", board["ecam"].mmio.base, PCI_SEGMENT, PCI_BUS_FIRST,
                                  PCI_BUS_LAST, 0)
    return sdt(b"MCFG", MCFG_REVISION, body)


# === AML encoder (ACPI 6.4 §20.2, AML grammar) ==================================================

ZERO_OP, ONE_OP, ONES_OP = 0x00, 0x01, 0xFF
BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, STRING_PREFIX, QWORD_PREFIX = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E
NAME_OP, SCOPE_OP, BUFFER_OP, PACKAGE_OP = 0x08, 0x10, 0x11, 0x12
EXT_OP_PREFIX, DEVICE_OP = 0x5B, 0x82
ROOT_CHAR, DUAL_NAME_PREFIX, MULTI_NAME_PREFIX = 0x5C, 0x2E, 0x2F


def aml_pkg_length(body_length: int) -> bytes:
    """PkgLength (§20.2.4) for a package whose contents after the PkgLength are
    `body_length` bytes; the encoded length counts the PkgLength bytes themselves."""
    if body_length + 1 < 1 << 6:
        return bytes([body_length + 1])
    for extra in (1, 2, 3):
        total = body_length + 1 + extra
        if total < 1 << (4 + 8 * extra):
            out = [extra << 6 | total & 0x0F]
            out += [(total >> (4 + 8 * i)) & 0xFF for i in range(extra)]
            return bytes(out)
    raise ValueError(f"AML package too long: {body_length} bytes")


def aml_name_seg(seg: str) -> bytes:
    """A NameSeg: up to four of [A-Z0-9_], padded with '_' (§20.2.2)."""
    if not 1 <= len(seg) <= 4 or not (seg[0].isupper() or seg[0] == "_") or any(
            not (c.isupper() or c.isdigit() or c == "_") or not c.isascii() for c in seg):
        raise ValueError(f"bad AML name segment {seg!r}")
    return seg.ljust(4, "_").encode("ascii")


def aml_name_string(path: str) -> bytes:
    """A NameString: optional root '\\', segments separated by '.' (§20.2.2)."""
    prefix = b""
    if path.startswith("\\"):
        prefix, path = bytes([ROOT_CHAR]), path[1:]
    segs = [aml_name_seg(s) for s in path.split(".")] if path else []
    if len(segs) == 0:
        return prefix + b"\x00"                              # NullName
    if len(segs) == 1:
        return prefix + segs[0]
    if len(segs) == 2:
        return prefix + bytes([DUAL_NAME_PREFIX]) + b"".join(segs)
    return prefix + bytes([MULTI_NAME_PREFIX, len(segs)]) + b"".join(segs)


def aml_integer(value: int) -> bytes:
    """The shortest ComputationalData for `value` (§20.2.3)."""
    if value == 0:
        return bytes([ZERO_OP])
    if value == 1:
        return bytes([ONE_OP])
    for prefix, fmt, limit in ((BYTE_PREFIX, "<B", 1 << 8), (WORD_PREFIX, "<H", 1 << 16),
                               (DWORD_PREFIX, "<I", 1 << 32), (QWORD_PREFIX, "<Q", 1 << 64)):
        if 0 <= value < limit:
            return bytes([prefix]) + struct.pack(fmt, value)
    raise ValueError(f"AML integer out of range: {value}")


def aml_string(text: str) -> bytes:
    return bytes([STRING_PREFIX]) + text.encode("ascii") + b"\x00"


def eisa_id(text: str) -> int:
    """A compressed EISA ID as ASL's EisaId() makes it: "PNP0A08" -> 0x080AD041."""
    if len(text) != 7 or not text[:3].isalpha() or not text[:3].isupper():
        raise ValueError(f"bad EISA ID {text!r}")
    raw = ((ord(text[0]) - 0x40) << 26 | (ord(text[1]) - 0x40) << 21
           | (ord(text[2]) - 0x40) << 16 | int(text[3:], 16))
    return int.from_bytes(raw.to_bytes(4, "big"), "little")


def aml_name(name: str, data: bytes) -> bytes:
    """Name (name, data): DefName (§20.2.5.1)."""
    return bytes([NAME_OP]) + aml_name_string(name) + data


def aml_scope(name: str, *terms: bytes) -> bytes:
    body = aml_name_string(name) + b"".join(terms)
    return bytes([SCOPE_OP]) + aml_pkg_length(len(body)) + body


def aml_device(name: str, *terms: bytes) -> bytes:
    body = aml_name_string(name) + b"".join(terms)
    return bytes([EXT_OP_PREFIX, DEVICE_OP]) + aml_pkg_length(len(body)) + body


def aml_package(*elements: bytes) -> bytes:
    body = bytes([len(elements)]) + b"".join(elements)
    return bytes([PACKAGE_OP]) + aml_pkg_length(len(body)) + body


def aml_buffer(data: bytes) -> bytes:
    body = aml_integer(len(data)) + data
    return bytes([BUFFER_OP]) + aml_pkg_length(len(body)) + body


# --- resource descriptors (§6.4) --------------------------------------------------------------

RES_IRQ_NO_FLAGS, RES_IO, RES_END = 0x22, 0x47, 0x79           # small items (tag byte)
RES_MEMORY32_FIXED, RES_DWORD_SPACE, RES_WORD_SPACE, RES_QWORD_SPACE = 0x86, 0x87, 0x88, 0x8A
SPACE_MEMORY, SPACE_IO, SPACE_BUS = 0, 1, 2
# General flags (Table 6.42): producer, positive decode, min and max fixed.
PRODUCER_FIXED = 1 << 2 | 1 << 3
IO_ENTIRE_RANGE = 0b11               # I/O type-specific flags (Table 6.50)
MEM_READ_WRITE, MEM_NON_CACHEABLE = 1, 0 << 1                  # memory type-specific (Table 6.49)


def res_io(port: int, length: int, alignment: int = 1) -> bytes:
    """IO (Decode16, port, port, alignment, length) (§6.4.2.5)."""
    return struct.pack("<BBHHBB", RES_IO, 1, port, port, alignment, length)


def res_irq(*irqs: int) -> bytes:
    """IRQNoFlags () {irqs}: edge, active high, exclusive (§6.4.2.1)."""
    return struct.pack("<BH", RES_IRQ_NO_FLAGS, sum(1 << n for n in irqs))


def res_memory32_fixed(base: int, length: int, writable: bool = True) -> bytes:
    """Memory32Fixed (§6.4.3.4)."""
    return struct.pack("<BHBII", RES_MEMORY32_FIXED, 9, int(writable), base, length)


def res_word_space(space: int, minimum: int, maximum: int, type_flags: int = 0) -> bytes:
    """WordBusNumber / WordIO producer with fixed bounds (§6.4.3.5.3)."""
    return struct.pack("<BHBBBHHHHH", RES_WORD_SPACE, 13, space, PRODUCER_FIXED, type_flags, 0,
                       minimum, maximum, 0, maximum - minimum + 1)


def res_dword_memory(minimum: int, maximum: int) -> bytes:
    """DWordMemory producer, non-cacheable, read-write, fixed bounds (§6.4.3.5.2)."""
    return struct.pack("<BHBBBIIIII", RES_DWORD_SPACE, 23, SPACE_MEMORY, PRODUCER_FIXED,
                       MEM_READ_WRITE | MEM_NON_CACHEABLE, 0, minimum, maximum, 0,
                       maximum - minimum + 1)


def res_qword_memory(minimum: int, maximum: int) -> bytes:
    """QWordMemory producer, non-cacheable, read-write, fixed bounds (§6.4.3.5.1)."""
    return struct.pack("<BHBBBQQQQQ", RES_QWORD_SPACE, 43, SPACE_MEMORY, PRODUCER_FIXED,
                       MEM_READ_WRITE | MEM_NON_CACHEABLE, 0, minimum, maximum, 0,
                       maximum - minimum + 1)


def resource_template(*descriptors: bytes) -> bytes:
    """ResourceTemplate () {...}: a buffer of descriptors and the end tag (checksum 0 = none)."""
    return aml_buffer(b"".join(descriptors) + bytes([RES_END, 0]))


# === DSDT =====================================================================================

def _sleep_package(slp_typ: int) -> bytes:
    """\\_Sx: {SLP_TYPa, SLP_TYPb, reserved, reserved} (§7.4.2)."""
    return aml_package(aml_integer(slp_typ), aml_integer(slp_typ), aml_integer(0), aml_integer(0))


def _host_bridge_crs(root: RootBus, first: bool, ram_bytes: int, board: Board) -> bytes:
    """A host bridge's resources: its bus numbers, I/O ports and memory windows. The first
    also decodes the legacy ports (all below its PCI share but the configuration ports) and
    the 64-bit window."""
    descriptors = [res_word_space(SPACE_BUS, root.bus, root.last_bus)]
    io = [root.io]
    if first:
        config = board["pci_config"].ports[0]
        descriptors.append(res_io(config.base, config.count))
        io = [(0, CONFIG_PORTS[0]), (CONFIG_PORTS[1] + 1, root.io[1])]
    descriptors += [res_word_space(SPACE_IO, lo, hi - 1, IO_ENTIRE_RANGE) for lo, hi in io]
    descriptors.append(res_dword_memory(root.memory[0], root.memory[1] - 1))
    if first:
        descriptors.append(res_qword_memory(*layout.pci64_window(ram_bytes)))
    return resource_template(*descriptors)


def _routing_table(root: RootBus, board: Board) -> bytes:
    """_PRT (§6.2.13): {address 0xDDDDFFFF (any function), pin (0 = INTA#), source 0, GSI}
    for every routed interrupt pin of a device on this root bus."""
    return aml_package(*(aml_package(aml_integer(device << 16 | 0xFFFF), aml_integer(pin - 1),
                                     aml_integer(0), aml_integer(gsi))
                         for (bus, device, pin), gsi
                         in sorted(board.pci_interrupt_routes().items()) if bus == root.bus))


def _host_bridges(ram_bytes: int, board: Board) -> list[bytes]:
    out = []
    for uid, root in enumerate(board.root_buses):
        first = uid == 0
        terms = [aml_name("_HID", aml_integer(eisa_id("PNP0A08"))),
                 aml_name("_CID", aml_integer(eisa_id("PNP0A03"))),
                 aml_name("_UID", aml_integer(uid)),
                 aml_name("_SEG", aml_integer(PCI_SEGMENT)),
                 aml_name("_BBN", aml_integer(root.bus)),
                 aml_name("_CRS", _host_bridge_crs(root, first, ram_bytes, board)),
                 aml_name("_PRT", _routing_table(root, board))]
        if first:
            terms.append(_legacy_devices(board))
        out.append(aml_device(root.name, *terms))
    return out


def _resources(row: Row) -> list[bytes]:
    """A row's ports, MMIO range and ISA IRQs as resource descriptors."""
    out = [res_io(p.base, p.count) for p in row.ports]
    if row.mmio is not None:
        out.append(res_memory32_fixed(row.mmio.base, row.mmio.size, not row.mmio.read_only))
    if row.irqs:
        out.append(res_irq(*(line.irq for line in row.irqs)))
    return out


def _acpi_device(row: Row) -> bytes:
    node = row.acpi
    terms = [aml_name("_HID", aml_integer(eisa_id(node.hid)))]
    if node.uid is not None:
        terms.append(aml_name("_UID", aml_integer(node.uid)))
    if node.status:
        terms.append(aml_name("_STA", aml_integer(STA_PRESENT)))
    terms.append(aml_name("_CRS", resource_template(*_resources(row))))
    return aml_device(node.name, *terms)


def _legacy_devices(board: Board) -> bytes:
    """The LPC bridge and the ISA devices behind it."""
    return aml_device("LPCB", aml_name("_ADR", aml_integer(board.lpc_bridge.address)),
                      *(_acpi_device(row) for row in board.acpi_rows("LPCB")))


def _motherboard_resources(board: Board) -> bytes:
    """The resources of the board's MBRD rows (reserved: the OS assigns nothing there). The
    SCI's IRQ is the FADT's, not a resource."""
    resources = [descriptor for row in board.acpi_rows("MBRD")
                 for descriptor in _resources(row) if descriptor[0] != RES_IRQ_NO_FLAGS]
    return aml_device("MBRD",
                      aml_name("_HID", aml_integer(eisa_id("PNP0C02"))),
                      aml_name("_UID", aml_integer(0)),
                      aml_name("_CRS", resource_template(*resources)))


def processor_name(index: int) -> str:
    return f"C{index:03X}"


def _processors(cpus: int) -> list[bytes]:
    return [aml_device(processor_name(n), aml_name("_HID", aml_string(PROCESSOR_HID)),
                       aml_name("_UID", aml_integer(n)))
            for n in range(cpus)]


def dsdt_aml(ram_bytes: int, cpus: int, board: Board = IMAC_PRO) -> bytes:
    """The DSDT's AML (the definition block's contents)."""
    return (aml_name("\\_S0", _sleep_package(acpi_pm.SLP_TYP_S0))
            + aml_name("\\_S5", _sleep_package(acpi_pm.SLP_TYP_S5))
            + aml_scope("\\_SB", *_host_bridges(ram_bytes, board),
                        _motherboard_resources(board), *_processors(cpus)))


def dsdt(ram_bytes: int, cpus: int, board: Board = IMAC_PRO) -> bytes:
    """Differentiated System Description Table (§5.2.11.1)."""
    return sdt(b"DSDT", DSDT_REVISION, dsdt_aml(ram_bytes, cpus, board))


# === the blob =================================================================================

class _Blob:
    """Tables placed one after another from guest-physical `base`."""

    def __init__(self, base: int):
        self.base = base
        self.data = bytearray()

    def place(self, table: bytes, alignment: int = TABLE_ALIGN) -> int:
        address = _align(self.base + len(self.data), alignment)
        self.data += bytes(address - self.base - len(self.data)) + table
        return address

    def patch(self, address: int, data: bytes) -> None:
        offset = address - self.base
        self.data[offset:offset + len(data)] = data


def build(config, cpus: int, base: int, apic_ids: list[int], ioapic_id: int,
          board: Board = IMAC_PRO) -> tuple[int, bytes]:
    """Every ACPI table in one blob for guest-physical `base`: returns (RSDP address, blob).

    `config` is the machine's Configuration (its memory size places the 64-bit PCI window);
    `apic_ids[i]` is logical CPU i's APIC ID (MADT and DSDT processor UID = i)."""
    if len(apic_ids) != cpus or cpus < 1:
        raise ValueError(f"{cpus} CPUs but {len(apic_ids)} APIC IDs")
    if base < 0:
        raise ValueError(f"bad ACPI base {base:#x}")
    ram_bytes = config.memory_option.size_bytes
    blob = _Blob(base)
    rsdp_address = blob.place(bytes(RSDP_LENGTH))        # filled in last
    facs_address = blob.place(facs(), FACS_ALIGN)
    dsdt_address = blob.place(dsdt(ram_bytes, cpus, board))
    tables = [blob.place(fadt(facs_address, dsdt_address, board)),
              blob.place(madt(apic_ids, ioapic_id, board)),
              blob.place(hpet(board)),
              blob.place(mcfg(board))]
    rsdt_address = 0
    if base + len(blob.data) + HEADER_SIZE + 4 * len(tables) + TABLE_ALIGN <= 1 << 32:
        rsdt_address = blob.place(rsdt(tables))
    xsdt_address = blob.place(xsdt(tables))
    blob.patch(rsdp_address, rsdp(xsdt_address, rsdt_address))
    return rsdp_address, bytes(blob.data)
