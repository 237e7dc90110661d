"""The BCM4364 driven the way Linux 6.1's brcmfmac probes it (pcie.c: brcmf_pcie_probe up to
brcmf_fw_get_firmwares, chip.c: brcmf_chip_attach; and brcmf_pcie_remove, which runs when the
firmware is missing), and by a hostile guest."""

import random
import struct

import pytest

from imacpro.bus.pci import (BAR0, CMD_BUS_MASTER, CMD_MEMORY, COMMAND, PciBus,
                             PciMemoryWindow)
from imacpro.devices.contract import StateError
from imacpro.devices.wifi import bcm4364 as B
from imacpro.irq import IrqLine

BAR0_AT, BAR2_AT = 0x9040_0000, 0x9000_0000

# brcmfmac's constants (pcie.c, chip.c, bcma_regs.h), as the driver uses them.
BAR0_WINDOW, LINK_STATUS_CTRL, ASPM_ENABLE = 0x80, 0xBC, 3
MAILBOXINT, MAILBOXMASK, CONFIGADDR, CONFIGDATA = 0x48, 0x4C, 0x120, 0x124
IOCTL, RESET_CTL, IOCTL_CLK, IOCTL_FGC, RESET = 0x408, 0x800, 1, 2, 1
CPUHALT, PHYCLOCKEN, PHYRESET = 0x20, 0x04, 0x08
CC_WATCHDOG, CC_CAPS, CC_CAPS_EXT, CC_EROMPTR, PMU_CAPS = 0x80, 0x04, 0xAC, 0xFC, 0x604
CR4_CAP, CR4_BANKIDX, CR4_BANKINFO = 0x04, 0x40, 0x44
CHIPCOMMON, D11, ARM_CR4, PCIE2, PMU, GCI = 0x800, 0x812, 0x83E, 0x83C, 0x827, 0x840
RESTORED_CONFIG = (0x4, 0x4C, 0x58, 0x5C, 0x60, 0x64, 0xDC, 0x228, 0x248, 0x4E0, 0x4F4)
# brcmf_pcie_fwnames' entry for the 4364 and brcmf_chip_tcm_rambase's answer for it.
FIRMWARE_4364 = (0x4364, 0xFFFF_FFFF, "brcm/brcmfmac4364-pcie")
RAMBASE_4364 = 0x160000
BOARD_TYPE = "Apple Inc.-iMacPro1,1"          # brcmf_dmi_probe: sys_vendor-product_name


class Driver:
    """brcmfmac's steps on the card, as configuration and BAR accesses."""

    def __init__(self):
        self.intx = IrqLine("inta")
        self.card = B.Bcm4364(intx=self.intx)
        self.bus = PciBus()
        self.bus.attach(0, 0, self.card.pci)
        self.bar0 = PciMemoryWindow(self.bus, BAR0_AT)
        self.tcm = PciMemoryWindow(self.bus, BAR2_AT)
        self.cores = []                     # (id, rev, base, wrapper), EROM order
        self.resets_looped = 0

    # --- the PCI core's part -----------------------------------------------------------

    def config(self, offset, size=4):
        return self.bus.read(0, 0, 0, offset, size)

    def set_config(self, offset, value, size=4):
        self.bus.write(0, 0, 0, offset, size, value)

    def assign_bars(self):
        for offset, address in ((BAR0, BAR0_AT), (BAR0 + 8, BAR2_AT)):
            self.set_config(offset, address)
            self.set_config(offset + 4, 0)

    def enable(self):                       # pci_enable_device, pci_set_master
        self.set_config(COMMAND, self.config(COMMAND, 2) | CMD_MEMORY, 2)
        self.set_config(COMMAND, self.config(COMMAND, 2) | CMD_BUS_MASTER, 2)

    # --- brcmf_pcie_buscore_ops ----------------------------------------------------------

    def read32(self, address):
        self.set_config(BAR0_WINDOW, address & ~0xFFF)
        return self.bar0.read(address & 0xFFF, 4)

    def write32(self, address, value):
        self.set_config(BAR0_WINDOW, address & ~0xFFF)
        self.bar0.write(address & 0xFFF, 4, value)

    def core(self, core_id, unit=0):
        found = [c for c in self.cores if c[0] == core_id]
        return found[unit] if unit < len(found) else None

    def select_core(self, core_id):
        base = self.core(core_id)[2]
        self.set_config(BAR0_WINDOW, base)
        if self.config(BAR0_WINDOW) != base:
            self.set_config(BAR0_WINDOW, base)

    # --- chip.c ----------------------------------------------------------------------

    def recognise(self):
        chipid = self.read32(B.ENUM_BASE)
        chip, rev, soci = chipid & 0xFFFF, chipid >> 16 & 0xF, chipid >> 28
        fmt = "BCM%d/%u" if chip > 0xA000 or chip < 0x4000 else "BCM%x/%u"
        return chip, rev, soci, fmt % (chip, rev)

    def erom_scan(self):
        """brcmf_chip_dmp_erom_scan and brcmf_chip_dmp_get_regaddr."""
        address = self.read32(B.ENUM_BASE + CC_EROMPTR)

        def descriptor():
            nonlocal address
            value = self.read32(address)
            address += 4
            kind = value & 0xF
            return value, 5 if kind & ~8 == 5 else kind

        kind = None
        for _ in range(10000):              # the driver has no bound: a wrong EROM hangs it
            if kind == 0xF:
                break
            value, kind = descriptor()
            if not value & 1 or kind != 1:
                continue
            core_id = value >> 8 & 0xFFF
            value, kind = descriptor()
            assert value & 0xF == 1, "WARN_ON: a component's second descriptor"
            nmw, nsw, rev = value >> 14 & 0x1F, value >> 19 & 0x1F, value >> 24
            if nmw + nsw == 0 and core_id not in (PMU, GCI):
                continue
            value, kind = descriptor()
            if kind == 3:
                wraptype = 3
            elif kind == 5:
                address -= 4
                wraptype = 2
            else:
                address -= 4
                continue
            base = wrap = 0
            failed = False
            while not (base and wrap):
                while True:
                    value, kind = descriptor()
                    if kind == 0xF:
                        address -= 4
                        failed = True
                        break
                    if kind in (5, 1):
                        break
                if failed or kind == 1:
                    if kind == 1:
                        address -= 4
                    break
                if value & 8:
                    descriptor()
                size_type = value >> 4 & 3
                if size_type == 3:
                    size = self.read32(address)
                    address += 4
                    if size & 8:
                        descriptor()
                if size_type not in (0, 1):
                    continue
                slave_type = value >> 6 & 3
                if not base and slave_type == 0:
                    base = value & 0xFFFF_F000
                if not wrap and slave_type == wraptype:
                    wrap = value & 0xFFFF_F000
            if failed:
                continue
            self.cores.append((core_id, rev, base, wrap))
        else:
            raise AssertionError("the EROM scan did not end")

    def coredisable(self, wrap, prereset, reset):
        if not self.read32(wrap + RESET_CTL) & RESET:
            self.write32(wrap + IOCTL, prereset | IOCTL_FGC | IOCTL_CLK)
            self.read32(wrap + IOCTL)
            self.write32(wrap + RESET_CTL, RESET)
            for _ in range(300):            # SPINWAIT(... != RESET, 300 us)
                if self.read32(wrap + RESET_CTL) == RESET:
                    break
            else:
                raise AssertionError("the core never went into reset")
        self.write32(wrap + IOCTL, reset | IOCTL_FGC | IOCTL_CLK)
        self.read32(wrap + IOCTL)

    def resetcore(self, core, prereset, reset, postreset):
        wraps = [core[3]]
        if core[0] == D11 and self.core(D11, 1):
            wraps.append(self.core(D11, 1)[3])        # "found two d11 cores, reset both"
        for wrap in wraps:
            self.coredisable(wrap, prereset, reset)
        for wrap in wraps:
            count = 0
            while self.read32(wrap + RESET_CTL) & RESET:
                self.write32(wrap + RESET_CTL, 0)
                count += 1
                self.resets_looped += 1
                if count > 50:
                    break
        for wrap in wraps:
            self.write32(wrap + IOCTL, postreset | IOCTL_CLK)
            self.read32(wrap + IOCTL)

    def iscoreup(self, core):
        ioctl = self.read32(core[3] + IOCTL)
        return ioctl & (IOCTL_FGC | IOCTL_CLK) == IOCTL_CLK and \
            not self.read32(core[3] + RESET_CTL) & RESET

    def set_passive(self):                  # brcmf_chip_cr4_set_passive
        cr4 = self.core(ARM_CR4)
        halt = self.read32(cr4[3] + IOCTL) & CPUHALT
        self.resetcore(cr4, halt, CPUHALT, CPUHALT)
        self.resetcore(self.core(D11), PHYRESET | PHYCLOCKEN, PHYCLOCKEN, PHYCLOCKEN)

    def tcm_ramsize(self):
        base = self.core(ARM_CR4)[2]
        cap = self.read32(base + CR4_CAP)
        size = 0
        for index in range((cap & 0xF) + (cap >> 4 & 0xF)):
            self.write32(base + CR4_BANKIDX, index)
            size += ((self.read32(base + CR4_BANKINFO) & 0x3F) + 1) * 8192
        return size

    # --- pcie.c ----------------------------------------------------------------------

    def reset_device(self):                 # brcmf_pcie_reset_device
        self.select_core(PCIE2)
        lsc = self.config(LINK_STATUS_CTRL)
        self.set_config(LINK_STATUS_CTRL, lsc & ~ASPM_ENABLE)
        self.select_core(CHIPCOMMON)
        self.bar0.write(CC_WATCHDOG, 4, 4)
        self.select_core(PCIE2)
        self.set_config(LINK_STATUS_CTRL, lsc)
        if self.core(PCIE2)[1] <= 13:
            self.restore_config()

    def restore_config(self):
        for offset in RESTORED_CONFIG:
            self.bar0.write(CONFIGADDR, 4, offset)
            self.bar0.write(CONFIGDATA, 4, self.bar0.read(CONFIGDATA, 4))

    def buscore_reset(self):
        self.reset_device()
        assert self.core(PCIE2)[1] < 64     # brcmf_reginfo_default's mailbox registers
        value = self.bar0.read(MAILBOXINT, 4)
        if value != 0xFFFF_FFFF:
            self.bar0.write(MAILBOXINT, 4, value)

    def probe(self):
        """brcmf_pcie_probe up to its firmware request; what the driver learned."""
        self.assign_bars()
        self.enable()
        assert self.config(BAR0 + 8) & ~0xF == BAR2_AT          # "BAR1 Not enabled" otherwise
        chip, rev, soci, name = self.recognise()
        assert soci == 1                                        # AXI: SB chips fail here
        self.erom_scan()
        assert self.cores[0][0] == CHIPCOMMON                   # brcmf_chip_get_chipcommon
        assert self.core(ARM_CR4), "CPU core not detected"
        self.set_passive()
        self.buscore_reset()
        self.set_passive()
        ramsize = self.tcm_ramsize()
        assert 0 < ramsize <= 4 << 20                           # "RAM size is incorrect"
        caps = self.read32(B.ENUM_BASE + CC_CAPS)
        caps_ext = self.read32(B.ENUM_BASE + CC_CAPS_EXT)
        pmu_base = B.ENUM_BASE
        if self.cores[0][1] >= 35 and caps_ext & 0x40 and self.core(PMU):
            pmu_base = self.core(PMU)[2]
        pmurev = self.read32(pmu_base + PMU_CAPS) & 0xFF if caps & 1 << 28 else 0
        return {"chip": chip, "rev": rev, "name": name, "ramsize": ramsize, "pmurev": pmurev}

    def remove(self):                       # brcmf_pcie_remove after the firmware failed
        self.bar0.write(MAILBOXMASK, 4, 0)  # brcmf_pcie_intr_disable, whatever the window
        self.reset_device()
        self.set_config(COMMAND, self.config(COMMAND, 2) & ~CMD_BUS_MASTER, 2)


def firmware_names(chip, rev):
    """brcmf_fw_alloc_request and brcmf_fw_get_firmwares: the files asked for, in order,
    until the first missing .bin ends the request."""
    chip_id, revmask, base = FIRMWARE_4364
    assert chip == chip_id and revmask & 1 << rev
    return [f"{base}.{BOARD_TYPE}.bin", f"{base}.bin"]


@pytest.fixture
def driver():
    return Driver()


def test_the_function_is_the_real_cards(driver):
    fn = driver.card.pci
    assert struct.unpack_from("<HH", fn.config, 0) == (0x14E4, 0x4464)
    assert fn.read_config(0x08, 4) == 0x0280_0003
    assert struct.unpack_from("<HH", fn.config, 0x2C) == (0x106B, 0x07BF)
    assert fn.config[0x3D] == 1 and fn.config[0x0E] == 0
    # BAR sizing as the PCI core does it: all ones, read back the size mask.
    for offset, size in ((BAR0, 32 << 10), (BAR0 + 8, 4 << 20)):
        driver.set_config(offset, 0xFFFF_FFFF)
        assert driver.config(offset) == (~(size - 1) & 0xFFFF_FFFF) | 0b100   # 64-bit, non-pf
    assert driver.config(BAR0 + 16) == 0 and driver.config(0x30) == 0
    chain, at = [], fn.config[0x34]
    while at:
        chain.append((at, fn.config[at]))
        at = fn.config[at + 1]
    assert chain == [(0x48, 0x01), (0x58, 0x05), (0x68, 0x09), (0xAC, 0x10)]
    assert fn.read_config(0x4A, 2) == 0xC803 and fn.config[0x6A] == 0x44
    assert fn.read_config(0x5A, 2) == 0x0088                   # 64-bit, 16 vectors offered
    assert fn.read_config(0xAE, 2) & 0xF0 == 0x00              # an endpoint
    assert fn.read_config(0xAC + 0x12, 2) & 0x3FF == 0x12      # link up at 5 GT/s x1
    assert fn.read_config(BAR0_WINDOW, 4) == B.ENUM_BASE


def test_probe_recognises_the_chip_and_reaches_the_firmware_request(driver):
    found = driver.probe()
    assert found == {"chip": 0x4364, "rev": 3, "name": "BCM4364/3", "ramsize": 0x140000,
                     "pmurev": 28}
    assert driver.cores == [(CHIPCOMMON, 56, 0x1800_0000, 0x1810_0000),
                            (D11, 61, 0x1800_1000, 0x1810_1000),
                            (ARM_CR4, 13, 0x1800_2000, 0x1810_2000),
                            (PCIE2, 19, 0x1800_3000, 0x1810_3000),
                            (D11, 61, 0x1800_4000, 0x1810_4000)]
    # set_passive after the bus reset: the ARM halted, both 802.11 cores out of reset with
    # their PHY clocks on; every "while in reset" loop ended at its first write.
    card = driver.card
    assert card.core_state("arm_cr4") == (CPUHALT | IOCTL_CLK, 0)
    assert card.core_state("d11") == card.core_state("d11_aux") == (PHYCLOCKEN | IOCTL_CLK, 0)
    assert card.core_state("chipcommon") == card.core_state("pcie2") == (IOCTL_CLK, 0)
    assert driver.resets_looped == 6                # ARM and 802.11 pair, twice: one write each
    assert card.chip_resets == 1                    # the watchdog of brcmf_pcie_reset_device
    assert RAMBASE_4364 + found["ramsize"] <= B.TCM_SIZE     # the RAM is inside BAR2
    assert firmware_names(found["chip"], found["rev"]) == [
        "brcm/brcmfmac4364-pcie.Apple Inc.-iMacPro1,1.bin", "brcm/brcmfmac4364-pcie.bin"]
    assert driver.intx.level is False and not card.msi.enabled


def test_remove_after_the_missing_firmware_leaves_the_chip_as_at_power_on(driver):
    driver.probe()
    driver.remove()
    card = driver.card
    assert card.chip_resets == 2
    assert card.core_state("arm_cr4") == (IOCTL_CLK, 0)         # running its ROM again
    assert card.core_state("d11") == (0, RESET)
    assert not card.pci.bus_master and card.pci.command & CMD_MEMORY
    # A rebind (echo > bind) probes the same way.
    driver.cores.clear()
    assert driver.probe()["name"] == "BCM4364/3"


def test_the_windows(driver):
    driver.assign_bars()
    driver.enable()
    driver.set_config(BAR0_WINDOW, 0x1810_2FFF)
    assert driver.config(BAR0_WINDOW) == 0x1810_2000            # select_core's read-back
    assert driver.bar0.read(IOCTL, 4) == IOCTL_CLK              # the ARM's wrapper
    driver.set_config(0x70, 0x1810_1000)                        # window 2: the 802.11 wrapper
    assert driver.bar0.read(0x1000 + RESET_CTL, 4) == RESET
    assert driver.bar0.read(0x3000, 4) == 0x1503_4364           # ChipCommon, always at +3000
    driver.bar0.write(0x2000 + MAILBOXMASK, 4, 0xFF0300)        # PCIe2, always at +2000
    assert driver.read32(B.PCIE2_BASE + MAILBOXMASK) == 0xFF0300
    assert driver.bar0.read(0x3002, 2) == 0x1503 and driver.bar0.read(0x3000, 1) == 0x64
    assert driver.bar0.read(0x2FFE, 4) == 0x4364_0000           # across two windows
    assert driver.bar0.read(0x4000, 4) == 0 and driver.read32(0x1800_1000) == 0


def test_core_reset_follows_what_chip_c_checks(driver):
    driver.assign_bars()
    driver.enable()
    driver.erom_scan()
    d11 = driver.core(D11)
    assert not driver.iscoreup(d11)                             # held in reset at power-on
    driver.resetcore(d11, 0, 0, 0)
    assert driver.iscoreup(d11) and driver.iscoreup(driver.core(D11, 1))
    driver.coredisable(d11[3], 0, 0)
    assert driver.read32(d11[3] + RESET_CTL) == RESET           # SPINWAIT's condition
    assert driver.read32(d11[3] + IOCTL) == IOCTL_FGC | IOCTL_CLK
    assert not driver.iscoreup(d11)


def test_the_watchdog_resets_the_chip_but_not_the_function(driver):
    driver.probe()
    driver.tcm.write(RAMBASE_4364, 4, 0xC0DE)
    config = bytes(driver.card.pci.config)
    driver.write32(B.ENUM_BASE + CC_WATCHDOG, 0)                # 0: the watchdog is off
    assert driver.card.chip_resets == 1
    driver.write32(B.PCIE2_BASE + MAILBOXMASK, 0x300)
    driver.write32(B.ENUM_BASE + CC_WATCHDOG, 4)
    assert driver.card.chip_resets == 2
    assert bytes(driver.card.pci.config) == config              # BARs, windows, command
    assert driver.card.core_state("arm_cr4") == (IOCTL_CLK, 0)
    assert driver.read32(B.PCIE2_BASE + MAILBOXMASK) == 0
    assert driver.tcm.read(RAMBASE_4364, 4) == 0xC0DE           # the RAM keeps its contents


def test_config_space_through_the_pcie2_core(driver):
    """What pcie.c does on PCIe2 cores up to rev 13 (re-writing config dwords it reads through
    the core), and a write that reaches the function."""
    driver.probe()
    driver.select_core(PCIE2)
    before = bytes(driver.card.pci.config)
    driver.restore_config()
    assert bytes(driver.card.pci.config) == before
    driver.bar0.write(CONFIGADDR, 4, 0x70)
    driver.bar0.write(CONFIGDATA, 4, 0x1810_3ABC)
    assert driver.config(0x70) == 0x1810_3000
    driver.bar0.write(CONFIGADDR, 4, 0x00)
    assert driver.bar0.read(CONFIGDATA, 4) == 0x4464_14E4
    driver.bar0.write(CONFIGDATA, 4, 0)                         # IDs are read-only
    assert driver.config(0) == 0x4464_14E4
    driver.bar0.write(CONFIGADDR, 4, 0xFFFF_FFFF)
    assert driver.bar0.read(CONFIGADDR, 4) == 0xFFC


def test_mailbox_interrupts(driver):
    driver.probe()
    card = driver.card
    card.pcie_mailboxint = 0x30000                              # as if the dongle rang
    driver.select_core(PCIE2)
    assert driver.bar0.read(MAILBOXINT, 4) == 0x30000
    driver.bar0.write(MAILBOXINT, 4, 0x10000)                   # write 1 to clear
    assert driver.bar0.read(MAILBOXINT, 4) == 0x20000
    driver.bar0.write(MAILBOXMASK, 4, 0xFF0300)                 # brcmf_pcie_intr_enable
    assert driver.bar0.read(MAILBOXMASK, 4) == 0xFF0300
    assert driver.intx.level is False


def test_the_tcm_is_plain_bytes(driver):
    driver.probe()
    driver.tcm.write(0, 4, 0x0016_0000)                         # activate: the reset vector
    assert driver.tcm.read(0, 4) == 0x0016_0000
    data = bytes(range(256)) * 20
    start = RAMBASE_4364 + 0xF80                                # across a page boundary
    for n in range(0, len(data), 8):
        driver.tcm.write(start + n, 8, int.from_bytes(data[n:n + 8], "little"))
    assert driver.card.tcm.read_bytes(start, len(data)) == data
    assert driver.tcm.read(start + 1, 2) == 0x0201
    assert driver.tcm.read(B.TCM_SIZE - 4, 4) == 0
    pages = len(driver.card.tcm.pages)
    driver.tcm.write(0x300000, 4, 0)                            # zeros need no page
    assert len(driver.card.tcm.pages) == pages == 4            # pages 0, 160, 161, 162


def test_a_hostile_guest_cannot_break_it(driver):
    driver.probe()
    rng = random.Random(4364)
    windows = [core.base for core in B.CORES] + [core.wrapper for core in B.CORES] + \
        [B.EROM_BASE, 0, 0xFFFF_F000, 0x1800_5000]
    for _ in range(6000):
        roll = rng.random()
        size = rng.choice((1, 2, 4, 8))
        if roll < 0.25:
            offset = rng.randrange(0, 0x100, size if size < 8 else 4)
            if BAR0 <= offset < BAR0 + 24 or size == 8:
                continue                      # keep the BARs where the test reaches them
            driver.set_config(offset, rng.getrandbits(8 * size), size)
        elif roll < 0.35:
            driver.set_config(rng.choice((0x70, 0x80)), rng.choice(windows) | rng.getrandbits(12))
        elif roll < 0.65:
            driver.bar0.write(rng.randrange(0, B.REGISTERS_SIZE - 8), size, rng.getrandbits(64))
        elif roll < 0.8:
            driver.bar0.read(rng.randrange(0, B.REGISTERS_SIZE - 8), size)
        elif roll < 0.95:
            driver.tcm.write(rng.randrange(0, B.TCM_SIZE - 8), size, rng.getrandbits(64))
        else:
            driver.card.read(rng.randrange(-16, B.REGISTERS_SIZE + 16), rng.choice((0, 3, 4, 16)))
            driver.card.write(rng.randrange(-16, B.REGISTERS_SIZE + 16), 4, -1)
            driver.card.tcm.write(rng.randrange(-16, B.TCM_SIZE + 16), 8, 1 << 70)
            driver.card.tcm.read(rng.randrange(-16, B.TCM_SIZE + 16), 5)
        driver.set_config(COMMAND, driver.config(COMMAND, 2) | CMD_MEMORY, 2)
    assert len(driver.card.tcm.pages) <= B.TCM_SIZE // B.PAGE
    assert driver.card.save()                                   # still whole
    B.Bcm4364(intx=IrqLine()).load(driver.card.save())
    # The driver can still probe it from the state the guest left.
    driver.cores.clear()
    driver.set_config(COMMAND, 0, 2)
    assert driver.probe()["name"] == "BCM4364/3"


def test_reset_is_power_on(driver):
    driver.probe()
    driver.tcm.write(RAMBASE_4364, 4, 1)
    driver.card.reset()
    fresh = B.Bcm4364(intx=IrqLine())
    assert driver.card.save() == fresh.save()
    assert driver.card.pci.config == fresh.pci.config


def test_save_and_load_round_trip(driver):
    driver.probe()
    driver.tcm.write(RAMBASE_4364 + 0x10, 8, 0x1122_3344_5566_7788)
    driver.set_config(0x70, 0x1810_2000)                        # window 2: the ARM's wrapper
    saved = driver.card.save()
    other = B.Bcm4364(intx=IrqLine())
    other.load(saved)
    assert other.save() == saved
    assert other.pci.config == driver.card.pci.config
    assert other.core_state("arm_cr4") == (CPUHALT | IOCTL_CLK, 0)
    assert other.tcm.read(RAMBASE_4364 + 0x10, 8) == 0x1122_3344_5566_7788
    assert other.read(0, 4) == driver.bar0.read(0, 4)
    assert other.read(0x1000 + IOCTL, 4) == CPUHALT | IOCTL_CLK


@pytest.mark.parametrize("change", [
    {"ioctrl": [1, 2]},
    {"resetctrl": [2, 0, 0, 0, 0]},
    {"bankidx": 32},
    {"pcie_configaddr": 0x122},
    {"pcie_configaddr": 0x1000},
    {"chip_resets": -1},
    {"tcm": {"1024": bytes(4096)}},
    {"tcm": {"01": bytes(4096)}},
    {"tcm": {"3": bytes(10)}},
    {"tcm": [1]},
    {"msi": {"x": 1}},
    {"pcie_mailboxmask": "all"},
])
def test_a_bad_state_is_refused_and_changes_nothing(driver, change):
    driver.probe()
    driver.tcm.write(RAMBASE_4364, 4, 7)
    saved = driver.card.save()
    before = driver.card.save()
    with pytest.raises(StateError):
        driver.card.load({**saved, **change})
    assert driver.card.save() == before


def test_a_state_missing_a_field_or_with_foreign_config_is_refused(driver):
    saved = driver.card.save()
    for name in saved:
        with pytest.raises(StateError):
            driver.card.load({k: v for k, v in saved.items() if k != name})
    config = bytearray(saved["pci"]["config"])
    config[0x2E] = 0x00                                         # another subsystem
    with pytest.raises(StateError):
        driver.card.load({**saved, "pci": {**saved["pci"], "config": bytes(config)}})
    assert driver.card.save() == saved
