"""ACPI tables (firmware/acpi.py) and the ACPI PM block they describe (devices/acpi_pm.py)."""

import random
import shutil
import struct
import subprocess

import pytest

from imacpro.board import IMAC_PRO
from imacpro.catalog import configure
from imacpro.clock import NS_PER_S, Clock
from imacpro.devices import acpi_pm
from imacpro.devices.acpi_pm import AcpiPm
from imacpro.firmware import acpi
from imacpro.irq import IrqLine
from imacpro.memory import layout

BASE = 0x7FF0_0000
GiB = 1 << 30


# --- reading the blob back -------------------------------------------------------------------

class Tables:
    """The blob walked as an OS does: RSDP -> XSDT -> tables, FADT -> FACS and DSDT."""

    def __init__(self, base, rsdp_address, blob):
        self.base, self.blob = base, blob
        self.rsdp = self.at(rsdp_address, acpi.RSDP_LENGTH)
        self.xsdt_address = struct.unpack_from("<Q", self.rsdp, 24)[0]
        self.rsdt_address = struct.unpack_from("<I", self.rsdp, 16)[0]
        self.xsdt = self.table(self.xsdt_address)
        count = (len(self.xsdt) - 36) // 8
        self.addresses = list(struct.unpack_from(f"<{count}Q", self.xsdt, 36))
        self.by_signature = {}
        for address in self.addresses:
            table = self.table(address)
            self.by_signature[table[:4]] = table
        self.fadt = self.by_signature[b"FACP"]
        self.dsdt = self.table(struct.unpack_from("<Q", self.fadt, 140)[0])
        self.facs_address = struct.unpack_from("<Q", self.fadt, 132)[0]
        self.facs = self.at(self.facs_address, acpi.FACS_LENGTH)

    def at(self, address, length):
        offset = address - self.base
        assert 0 <= offset and offset + length <= len(self.blob), hex(address)
        return self.blob[offset:offset + length]

    def table(self, address):
        length = struct.unpack("<I", self.at(address + 4, 4))[0]
        return self.at(address, length)

    def with_checksums(self):
        """Every table that carries a checksum (all but the FACS)."""
        tables = [self.xsdt, self.dsdt, *self.by_signature.values()]
        if self.rsdt_address:
            tables.append(self.table(self.rsdt_address))
        return tables


def build(cpus=36, apic_ids=None, base=BASE, cpu=18, memory=None):
    config = configure(cpu=cpu, memory=memory)
    ids = list(range(cpus)) if apic_ids is None else apic_ids
    rsdp_address, blob = acpi.build(config, cpus, base, ids, ioapic_id=cpus)
    return Tables(base, rsdp_address, blob)


def madt_entries(madt):
    entries, offset = [], 44
    while offset < len(madt):
        kind, length = madt[offset], madt[offset + 1]
        assert length >= 2
        entries.append((kind, madt[offset:offset + length]))
        offset += length
    assert offset == len(madt)
    return entries


# --- RSDP, checksums, XSDT ---------------------------------------------------------------------

@pytest.mark.parametrize("cpus", [16, 36])
def test_every_checksum_is_zero(cpus):
    t = build(cpus)
    assert sum(t.rsdp[:20]) % 256 == 0 and sum(t.rsdp) % 256 == 0
    for table in t.with_checksums():
        assert sum(table) % 256 == 0, table[:4]
        assert struct.unpack_from("<I", table, 4)[0] == len(table)
        assert table[10:16] == b"APPLE " and table[16:24] == b"Apple00 "
        assert table[28:32] == b"Loki"


def test_rsdp():
    t = build()
    r = t.rsdp
    assert r[:8] == b"RSD PTR " and r[15] == 2 and r[9:15] == b"APPLE "
    assert struct.unpack_from("<I", r, 20)[0] == 36
    assert (t.xsdt_address - BASE) % 16 == 0
    assert t.xsdt[:4] == b"XSDT"
    # It begins the blob (16-byte aligned), and holds no address of its own: copyable.
    assert t.blob[:8] == b"RSD PTR "


def test_xsdt_and_rsdt_list_the_tables():
    t = build()
    assert set(t.by_signature) == {b"FACP", b"APIC", b"HPET", b"MCFG"}
    rsdt = t.table(t.rsdt_address)
    assert rsdt[:4] == b"RSDT"
    assert list(struct.unpack_from("<4I", rsdt, 36)) == t.addresses
    for address in t.addresses + [t.xsdt_address]:
        assert address % 16 == 0


def test_tables_above_4g_have_no_32bit_pointers():
    base = 0x2_0000_0000
    t = build(base=base)
    assert t.rsdt_address == 0
    assert struct.unpack_from("<II", t.fadt, 36) == (0, 0)    # FIRMWARE_CTRL, DSDT
    assert t.dsdt[:4] == b"DSDT" and t.facs[:4] == b"FACS"


def test_unaligned_base_is_padded():
    rsdp_address, blob = acpi.build(configure(cpu=8), 16, BASE + 4, list(range(16)), 16)
    assert rsdp_address == BASE + 16 and blob[12:20] == b"RSD PTR "
    t = Tables(BASE + 4, rsdp_address, blob)
    assert t.facs_address % 64 == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        acpi.build(configure(cpu=8), 16, BASE, list(range(15)), 16)


# --- FADT, FACS ----------------------------------------------------------------------------------

def gas(table, offset):
    return struct.unpack_from("<BBBBQ", table, offset)


def test_fadt():
    t = build()
    f = t.fadt
    assert len(f) == 276 and f[8] == 6 and f[131] == acpi.FADT_MINOR_REVISION
    assert struct.unpack_from("<H", f, 46)[0] == 9                 # SCI_INT
    assert struct.unpack_from("<I", f, 48)[0] == 0                 # SMI_CMD: ACPI mode only
    pm1a_evt, pm1b_evt, pm1a_cnt, pm1b_cnt, pm2, tmr, gpe0, gpe1 = struct.unpack_from("<8I", f, 56)
    assert (pm1a_evt, pm1a_cnt, tmr) == (0x600, 0x604, 0x608)
    assert (pm1b_evt, pm1b_cnt, pm2, gpe0, gpe1) == (0, 0, 0, 0, 0)
    assert tuple(f[88:92]) == (4, 2, 0, 4)                         # PM1_EVT/CNT, PM2, PM_TMR lens
    assert f[108] == 0x32                                          # CENTURY
    boot = struct.unpack_from("<H", f, 109)[0]
    assert boot & acpi.BOOT_LEGACY_DEVICES and not boot & acpi.BOOT_8042   # no PS/2
    flags = struct.unpack_from("<I", f, 112)[0]
    assert flags & acpi.FADT_WBINVD and flags & acpi.FADT_PROC_C1
    assert flags & acpi.FADT_RESET_REG_SUP and flags & acpi.FADT_SLP_BUTTON
    assert not flags & acpi.FADT_PWR_BUTTON                        # fixed-feature power button
    assert not flags & (1 << 20)                                   # not HW_REDUCED_ACPI
    assert bool(flags & acpi.FADT_TMR_VAL_EXT) == acpi_pm.TMR_VAL_EXT
    assert gas(f, 116) == (1, 8, 0, 1, 0xCF9) and f[128] == 0x06   # RESET_REG, RESET_VALUE
    assert gas(f, 148) == (1, 32, 0, 2, 0x600)                     # X_PM1a_EVT_BLK
    assert gas(f, 172) == (1, 16, 0, 2, 0x604)                     # X_PM1a_CNT_BLK
    assert gas(f, 208) == (1, 32, 0, 3, 0x608)                     # X_PM_TMR_BLK
    for offset in (160, 184, 196, 220, 232, 244, 256):            # PM1b, PM2, GPEs, sleep regs
        assert gas(f, offset) == (0, 0, 0, 0, 0)
    facs32, dsdt32 = struct.unpack_from("<II", f, 36)
    x_facs, x_dsdt = struct.unpack_from("<QQ", f, 132)
    assert facs32 == x_facs and dsdt32 == x_dsdt
    assert t.dsdt[:4] == b"DSDT" and t.dsdt[8] == 2


def test_fadt_blocks_are_where_the_board_puts_the_device():
    f = build().fadt
    base = IMAC_PRO["acpi_pm"].ports[0].base
    assert struct.unpack_from("<I", f, 56)[0] == base + acpi_pm.PM1_STS
    assert struct.unpack_from("<I", f, 64)[0] == base + acpi_pm.PM1_CNT
    assert struct.unpack_from("<I", f, 76)[0] == base + acpi_pm.PM_TMR
    assert IMAC_PRO["acpi_pm"].ports[0].count == acpi_pm.PM_IO_SIZE
    assert struct.unpack_from("<H", f, 46)[0] == IMAC_PRO.isa_irq("acpi_pm") == 9


def test_facs():
    t = build()
    assert t.facs_address % 64 == 0
    sig, length, _hw_sig, waking, lock, flags, x_waking, version = struct.unpack_from(
        "<4sIIIIIQB", t.facs)
    assert (sig, length, version) == (b"FACS", 64, 2)
    assert (waking, lock, flags, x_waking) == (0, 0, 0, 0)


# --- MADT ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cpus", [16, 36])
def test_madt(cpus):
    ids = [2 * n + 1 for n in range(cpus)]          # not the indexes: they must come from apic_ids
    t = build(cpus, apic_ids=ids)
    m = t.by_signature[b"APIC"]
    assert m[8] == acpi.MADT_REVISION
    assert struct.unpack_from("<II", m, 36) == (0xFEE0_0000, 1)     # LAPIC address, PCAT_COMPAT
    entries = madt_entries(m)
    lapics = [struct.unpack("<BBBBI", e) for k, e in entries if k == 0]
    assert len(lapics) == cpus
    assert [(uid, apic_id) for _, _, uid, apic_id, _ in lapics] == list(enumerate(ids))
    assert all(flags == 1 for *_, flags in lapics)
    ioapics = [struct.unpack("<BBBBII", e) for k, e in entries if k == 1]
    assert ioapics == [(1, 12, cpus, 0, 0xFEC0_0000, 0)]
    overrides = {e[3]: struct.unpack_from("<IH", e, 4) for k, e in entries if k == 2}
    assert overrides == {0: (2, 0x0000), 9: (9, 0x000D)}             # IRQ9: level, active high
    nmis = [struct.unpack("<BBBHB", e) for k, e in entries if k == 4]
    assert nmis == [(4, 6, 0xFF, 0x0005, 1)]
    assert {k for k, _ in entries} == {0, 1, 2, 4}


def test_madt_uses_x2apic_entries_for_wide_ids():
    t = build(4, apic_ids=[0, 1, 0x100, 0x101])
    entries = madt_entries(t.by_signature[b"APIC"])
    assert [k for k, _ in entries if k in (0, 9)] == [0, 0, 9, 9]
    x2 = [struct.unpack("<BBHIII", e) for k, e in entries if k == 9]
    assert [(apic_id, uid, flags) for _, _, _, apic_id, flags, uid in x2] == [
        (0x100, 2, 1), (0x101, 3, 1)]


def test_sci_override_matches_the_device_polarity():
    # The device drives its IrqLine True while the SCI is asserted: active high at the pin.
    overrides = [struct.unpack("<BBBBIH", e) for k, e in
                 madt_entries(build().by_signature[b"APIC"]) if k == 2]
    sci = [(irq, gsi, flags) for _, _, _, irq, gsi, flags in overrides if irq == 9]
    assert sci == [(9, 9, acpi.POLARITY_HIGH | acpi.TRIGGER_LEVEL)]
    clock, sci = Clock(realtime=False), IrqLine("sci")
    pm = AcpiPm(clock, sci)
    pm.write(acpi_pm.PM1_EN, 2, acpi_pm.PWRBTN_EN)
    pm.press_power_button()
    assert sci.level is True


# --- HPET, MCFG ---------------------------------------------------------------------------------

def test_hpet_table():
    h = build().by_signature[b"HPET"]
    assert len(h) == 56 and h[8] == 1
    block_id = struct.unpack_from("<I", h, 36)[0]
    assert block_id == 0x8086A201
    assert block_id >> 16 == 0x8086                     # vendor
    assert (block_id >> 8) & 0x1F == 2                  # last comparator: 3 comparators
    assert block_id & 1 << 13 and block_id & 1 << 15    # 64-bit counter, legacy replacement
    assert gas(h, 40) == (0, 64, 0, 0, 0xFED0_0000)
    assert struct.unpack_from("<BHB", h, 52) == (0, 0x80, 0)


def test_mcfg():
    m = build().by_signature[b"MCFG"]
    assert len(m) == 60 and m[36:44] == bytes(8)
    assert struct.unpack_from("<QHBBI", m, 44) == (0xE000_0000, 0, 0, 255, 0)
    assert layout.ECAM_SIZE == 256 << 20              # 1 MiB per bus, 256 buses


# --- DSDT and the AML encoder -------------------------------------------------------------------

def eisa(text):
    return struct.pack("<BI", 0x0C, acpi.eisa_id(text))


def test_dsdt_contents():
    t = build(cpus=36)
    aml = t.dsdt[36:]
    # \_S5 = Package (4) {7, 7, 0, 0}
    s5 = aml.index(b"\x08\\_S5_")
    assert aml[s5 + 6:s5 + 6 + 9] == bytes([0x12, 0x08, 4, 0x0A, acpi_pm.SLP_TYP_S5,
                                            0x0A, acpi_pm.SLP_TYP_S5, 0, 0])
    assert b"\\_S3_" not in aml and b"\\_S4_" not in aml
    for name in (b"PCI0", b"LPCB", b"COM1", b"RTC_", b"HPET", b"MBRD", b"C000", b"C023"):
        assert name in aml, name
    assert b"C024" not in aml and b"PS2K" not in aml and eisa("PNP0303") not in aml
    for hid in ("PNP0A08", "PNP0A03", "PNP0501", "PNP0B00", "PNP0103", "PNP0C02"):
        assert eisa(hid) in aml, hid
    assert aml.count(b"\x0DACPI0007\x00") == 36
    # Resources: COM1 IO 0x3F8/8 + IRQ 4, RTC IO 0x70/4 + IRQ 8, HPET memory, ECAM, PM ports.
    assert acpi.res_io(0x3F8, 8) + acpi.res_irq(4) in aml
    assert acpi.res_io(0x70, 4) + acpi.res_irq(8) in aml
    assert acpi.res_memory32_fixed(0xFED0_0000, 0x400, False) in aml
    assert acpi.res_memory32_fixed(0xE000_0000, 0x1000_0000) in aml
    assert acpi.res_io(0x600, 0x10) in aml
    # Four host bridges split the buses, the 32-bit window and the PCI I/O ports.
    assert b"PC03" in aml and b"PC05" in aml and b"PCF0" in aml
    assert acpi.res_dword_memory(0x8000_0000, 0xAFFF_FFFF) in aml
    assert acpi.res_dword_memory(0xB000_0000, 0xB7FF_FFFF) in aml
    assert acpi.res_dword_memory(0xB800_0000, 0xBFFF_FFFF) in aml
    assert acpi.res_dword_memory(0xC000_0000, 0xDFFF_FFFF) in aml
    assert acpi.res_word_space(acpi.SPACE_BUS, 0, 0x02) in aml
    assert acpi.res_word_space(acpi.SPACE_BUS, 0x03, 0x04) in aml
    assert acpi.res_word_space(acpi.SPACE_BUS, 0x05, 0xEF) in aml
    assert acpi.res_word_space(acpi.SPACE_BUS, 0xF0, 0xFF) in aml
    assert acpi.res_word_space(acpi.SPACE_IO, 0, 0xCF7, acpi.IO_ENTIRE_RANGE) in aml
    assert acpi.res_word_space(acpi.SPACE_IO, 0xD00, 0xCFFF, acpi.IO_ENTIRE_RANGE) in aml
    assert acpi.res_word_space(acpi.SPACE_IO, 0xD000, 0xD7FF, acpi.IO_ENTIRE_RANGE) in aml
    assert acpi.res_word_space(acpi.SPACE_IO, 0xD800, 0xDFFF, acpi.IO_ENTIRE_RANGE) in aml
    assert acpi.res_word_space(acpi.SPACE_IO, 0xE000, 0xFFFF, acpi.IO_ENTIRE_RANGE) in aml


def test_pci64_window_is_above_ram():
    config = configure(cpu=18, memory=256)
    top = layout.HIGH_RAM_START + config.memory_option.size_bytes - layout.RAM_BELOW_4G_END
    low, high = layout.pci64_window(config.memory_option.size_bytes)
    assert low >= top and low % GiB == 0 and high - low + 1 == layout.PCI64_SIZE
    assert high < 1 << 46
    t = build(memory=256)
    assert acpi.res_qword_memory(low, high) in t.dsdt


def test_aml_encoder():
    assert acpi.eisa_id("PNP0A03") == 0x030AD041
    assert acpi.eisa_id("PNP0A08") == 0x080AD041
    assert acpi.aml_pkg_length(62) == bytes([63])
    assert acpi.aml_pkg_length(63) == bytes([0x41, 0x04])           # 65 = 0x41: 2 bytes
    assert acpi.aml_pkg_length(4093) == bytes([0x4F, 0xFF])         # 4095: last 2-byte length
    assert acpi.aml_pkg_length(4094) == bytes([0x81, 0x00, 0x01])   # 4097 = 0x1001
    assert acpi.aml_name_string("\\_SB") == b"\\_SB_"
    assert acpi.aml_name_string("\\_SB.PCI0") == b"\\\x2E_SB_PCI0"
    assert acpi.aml_name_string("\\_SB.PCI0.LPCB") == b"\\\x2F\x03_SB_PCI0LPCB"
    assert acpi.aml_integer(0) == b"\x00" and acpi.aml_integer(1) == b"\x01"
    assert acpi.aml_integer(0x1234) == b"\x0B\x34\x12"
    assert acpi.aml_integer(1 << 40) == b"\x0E" + (1 << 40).to_bytes(8, "little")
    with pytest.raises(ValueError):
        acpi.aml_name_seg("pci0")
    with pytest.raises(ValueError):
        acpi.aml_name_seg("TOOLONG")


def test_large_dsdt_uses_long_package_lengths():
    # A scope over 4095 bytes needs a 3-byte PkgLength; decode it as an AML parser would.
    body = b"".join(acpi.aml_device(f"D{n:03X}", acpi.aml_name("_UID", acpi.aml_integer(n)))
                    for n in range(400))
    scope = acpi.aml_scope("\\_SB", body)
    lead = scope[1]
    extra = lead >> 6
    length = lead & 0x0F
    for i in range(extra):
        length |= scope[2 + i] << (4 + 8 * i)
    assert extra == 2 and length == len(scope) - 1


IASL = shutil.which("iasl")


@pytest.mark.parametrize("cpus", [16, 36])
def test_iasl_disassembles_every_table(tmp_path, cpus):
    assert IASL, "iasl is needed (Debian package acpica-tools; make installs it)"
    t = build(cpus)
    files = {"dsdt": t.dsdt, "facs": t.facs, "xsdt": t.xsdt,
             "rsdt": t.table(t.rsdt_address)}
    for signature, table in t.by_signature.items():
        files[signature.decode().lower()] = table
    for name, table in files.items():
        path = tmp_path / f"{name}.dat"
        path.write_bytes(table)
        run = subprocess.run([IASL, "-d", path.name], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, check=False)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        assert "error" not in output.lower().replace("errors", ""), output
        assert (tmp_path / f"{name}.dsl").exists()
    dsl = (tmp_path / "dsdt.dsl").read_text()
    for text in ("_S5", "PCI0", "PCF0", "PNP0501", "PNP0B00", "PNP0103", "PNP0A08", "PNP0C02"):
        assert text in dsl, text
    assert "ResourceTemplate" in dsl and "Memory32Fixed" in dsl
    # The compiler, stricter than the disassembler (resource descriptors, names), accepts it.
    run = subprocess.run([IASL, "-p", "recompiled", "dsdt.dsl"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and "0 Errors, 0 Warnings" in run.stdout, run.stdout + run.stderr
    madt = (tmp_path / "apic.dsl").read_text()
    assert madt.count("[Processor Local APIC]") == cpus
    assert "[Interrupt Source Override]" in madt and "[Local APIC NMI]" in madt


# --- the ACPI PM device -------------------------------------------------------------------------

class PowerOff:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def make_pm():
    clock, sci, off = Clock(realtime=False), IrqLine("sci"), PowerOff()
    return AcpiPm(clock, sci, off), clock, sci, off


def test_pm_timer_counts_at_3579545_hz():
    pm, clock, _, _ = make_pm()
    assert pm.read(acpi_pm.PM_TMR, 4) == 0
    clock.advance(NS_PER_S)
    assert pm.read(acpi_pm.PM_TMR, 4) == 3_579_545
    clock.advance(NS_PER_S // 1000)
    assert pm.read(acpi_pm.PM_TMR, 4) == 3_579_545 + 3_579           # 3579.545 ticks per ms
    # Byte and word reads see the same count.
    value = pm.read(acpi_pm.PM_TMR, 4)
    assert pm.read(acpi_pm.PM_TMR, 2) == value & 0xFFFF
    assert pm.read(acpi_pm.PM_TMR + 2, 1) == (value >> 16) & 0xFF
    assert pm.read(acpi_pm.PM_TMR + 3, 1) == 0                        # bits 31:24 reserved (24-bit)


def test_pm_timer_wraps_at_24_bits_and_sets_tmr_sts():
    pm, clock, sci, _ = make_pm()
    wrap_ns = (1 << 24) * NS_PER_S // 3_579_545 + 1
    clock.advance(wrap_ns)
    assert pm.read(acpi_pm.PM_TMR, 4) < 10
    assert pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.TMR_STS
    pm.write(acpi_pm.PM1_STS, 2, acpi_pm.TMR_STS)                     # write 1 to clear
    assert not pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.TMR_STS
    assert sci.level is False


def test_pm_timer_32bit_variant():
    clock = Clock(realtime=False)
    pm = AcpiPm(clock, timer_32bit=True)
    clock.advance(10 * NS_PER_S)
    assert pm.read(acpi_pm.PM_TMR, 4) == 35_795_450


def test_tmr_en_raises_the_sci_on_time():
    pm, clock, sci, _ = make_pm()
    pm.write(acpi_pm.PM1_EN, 2, acpi_pm.TMR_EN)
    half_period_ns = (1 << 23) * NS_PER_S // 3_579_545          # bit 23 changes every ~2.34 s
    clock.advance(half_period_ns - 1000)
    clock.run_due()
    assert sci.level is False
    clock.warp_to(clock.next_deadline())
    clock.run_due()
    assert sci.level is True and pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.TMR_STS
    pm.write(acpi_pm.PM1_STS, 2, acpi_pm.TMR_STS)
    assert sci.level is False
    assert clock.next_deadline() is not None                        # armed for the next change
    # Disabling SCI_EN keeps the status but drops the line.
    clock.warp_to(clock.next_deadline())
    clock.run_due()
    assert sci.level is True
    pm.write(acpi_pm.PM1_CNT, 2, 0)
    assert sci.level is False and pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.TMR_STS


def test_repeated_writes_do_not_pile_up_timers():
    pm, clock, _, _ = make_pm()
    pm.write(acpi_pm.PM1_EN, 2, acpi_pm.TMR_EN)
    for _ in range(1000):
        pm.write(acpi_pm.PM1_EN, 2, acpi_pm.TMR_EN)
    assert clock.pending() == 1 and len(clock._timers) <= 2


def test_s5_powers_off():
    pm, _, _, off = make_pm()
    s5 = acpi_pm.SLP_TYP_S5 << acpi_pm.SLP_TYP_SHIFT
    pm.write(acpi_pm.PM1_CNT, 2, s5 | acpi_pm.SCI_EN)              # what ACPICA writes first
    assert off.count == 0
    assert pm.read(acpi_pm.PM1_CNT, 2) == s5 | acpi_pm.SCI_EN
    pm.write(acpi_pm.PM1_CNT, 2, s5 | acpi_pm.SCI_EN | acpi_pm.SLP_EN)
    assert off.count == 1
    assert not pm.read(acpi_pm.PM1_CNT, 2) & acpi_pm.SLP_EN         # write-only
    # The high byte alone (an 8-bit write of SLP_TYP|SLP_EN) works too.
    pm.write(acpi_pm.PM1_CNT + 1, 1, (s5 | acpi_pm.SLP_EN) >> 8)
    assert off.count == 2


def test_other_sleep_states_are_ignored_and_wake_at_once():
    pm, _, _, off = make_pm()
    for slp_typ in (acpi_pm.SLP_TYP_S1, acpi_pm.SLP_TYP_S3, acpi_pm.SLP_TYP_S4, 2, 3, 4):
        pm.write(acpi_pm.PM1_STS, 2, acpi_pm.WAK_STS)
        pm.write(acpi_pm.PM1_CNT, 2, slp_typ << acpi_pm.SLP_TYP_SHIFT | acpi_pm.SLP_EN)
        assert off.count == 0
        assert pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.WAK_STS
    pm.write(acpi_pm.PM1_CNT, 2, acpi_pm.SLP_EN)                    # S0: nothing
    assert off.count == 0


def test_power_button():
    pm, _, sci, _ = make_pm()
    assert pm.read(acpi_pm.PM1_CNT, 2) & acpi_pm.SCI_EN              # ACPI mode from power-on
    pm.press_power_button()
    assert pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.PWRBTN_STS
    assert sci.level is False                                        # not enabled yet
    pm.write(acpi_pm.PM1_EN, 2, acpi_pm.PWRBTN_EN)
    assert sci.level is True
    # A 4-byte access reaches STS and EN together; clearing the status drops the SCI.
    assert pm.read(acpi_pm.PM1_STS, 4) >> 16 == acpi_pm.PWRBTN_EN
    pm.write(acpi_pm.PM1_STS + 1, 1, acpi_pm.PWRBTN_STS >> 8)
    assert sci.level is False and not pm.read(acpi_pm.PM1_STS, 2) & acpi_pm.PWRBTN_STS
    pm.press_power_button()
    assert sci.level is True
    pm.reset()
    assert sci.level is False and pm.read(acpi_pm.PM1_STS, 4) == 0


def test_reserved_and_odd_accesses():
    pm, _, _, _ = make_pm()
    assert pm.read(6, 2) == 0 and pm.read(0xC, 4) == 0
    assert pm.read(0x10, 1) == 0xFF and pm.read(-1, 1) == 0xFF
    assert pm.read(0, 3) == 0 and pm.read(0, 0) == 0
    pm.write(0x8, 4, 0xFFFF_FFFF)                                   # PM_TMR is read-only
    assert pm.read(acpi_pm.PM_TMR, 4) == 0
    pm.write(acpi_pm.PM1_EN, 2, 0xFFFF)
    assert pm.read(acpi_pm.PM1_EN, 2) == acpi_pm.EN_WRITABLE


def test_pm_fuzz_never_raises():
    pm, clock, _, _ = make_pm()
    rng = random.Random(7)
    for n in range(25_000):
        offset = rng.randrange(-4, 24) if rng.random() < 0.95 else rng.randrange(-1 << 20, 1 << 20)
        size = rng.choice((1, 2, 4, 8, 3, 0, 16))
        if rng.random() < 0.5:
            value = pm.read(offset, size)
            assert 0 <= value < 1 << (8 * max(size, 1)) or size not in (1, 2, 4, 8)
        else:
            pm.write(offset, size, rng.choice((0, 0xFF, 0xFFFF, 0x3C01, rng.getrandbits(64))))
        if n % 50 == 0:
            clock.advance(rng.randrange(0, 3 * NS_PER_S))
            clock.run_due()
        if n % 997 == 0:
            pm.press_power_button()
    assert len(clock._timers) < 100


def test_blob_fits_the_bios_area():
    # firmware/boot.py places the tables at 0xE0000 with 64 KiB to spare.
    rsdp_address, blob = acpi.build(configure(cpu=18), 36, 0xE0000, list(range(36)), 36)
    assert rsdp_address == 0xE0000 and len(blob) < 0x10000
