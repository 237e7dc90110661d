"""The Broadcom BCM4364 Wi-Fi card (PCI 14e4:4464 rev 03, class 028000, subsystem 106b:07bf),
01:00.0 behind the PCH's root port 00:1b.0, as Linux 6.1's brcmfmac probes it (pcie.c, chip.c,
firmware.c).

What the model is for: on the real iMac Pro, stock Debian has no firmware for this chip (Apple's
is not redistributable), so brcmfmac recognises the chip, asks for its firmware, fails, and
unbinds. The model answers everything the driver reads and writes up to that request, so the
same happens here with the same kernel messages. No dongle CPU runs: there is no Wi-Fi.

The function (PCI header and capabilities at the real card's offsets; pcie.c hard-codes some):

    | off | what                                                                            |
    |-----|---------------------------------------------------------------------------------|
    | 10  | BAR0: 32 KiB, 64-bit, non-prefetchable: the register windows (below)            |
    | 18  | BAR2: 4 MiB, 64-bit, non-prefetchable: the dongle's TCM address space, bytes    |
    | 3D  | interrupt pin INTA# (never asserted: only firmware raises interrupts)           |
    | 48  | power management, version 3, PME from D0/D3hot/D3cold; PMCSR 4C: state 1:0 (RW) |
    | 58  | MSI, 64-bit, 16 vectors, no masking (never sent: brcmfmac enables MSI only      |
    |     | after the firmware is running)                                                  |
    | 68  | vendor specific, 44h bytes: Broadcom's configuration registers:                 |
    |     |   70 BAR0 window 2: backplane page at BAR0+1000 (31:12 RW)                       |
    |     |   80 BAR0 window: backplane page at BAR0+0000 (31:12 RW), 1800_0000 at reset    |
    |     |   90 interrupt status, 94 mask, 98 mailbox to the dongle: read 0, writes ignored |
    | AC  | PCI Express v2 endpoint, 5 GT/s x1; link control at BC (pcie.c clears ASPM here) |

BAR0 (32-bit registers; 1-, 2- and 8-byte reads are assembled from them, narrow writes are
ignored: the driver writes dwords):

    | off       | what                                                                  |
    |-----------|-----------------------------------------------------------------------|
    | 0000-0FFF | the backplane page config 80 selects (how chip.c reaches every core)  |
    | 1000-1FFF | the backplane page config 70 selects                                   |
    | 2000-2FFF | the PCIe2 core's registers, always                                     |
    | 3000-3FFF | ChipCommon's registers, always                                         |
    | 4000-7FFF | read 0, writes ignored                                                 |

The backplane (AXI; addresses from SI_ENUM_BASE 1800_0000), as chip.c finds it through the
enumeration ROM (EROM) ChipCommon points to:

    | core            | id  | rev | registers | wrapper   |                                |
    |-----------------|-----|-----|-----------|-----------|--------------------------------|
    | ChipCommon      | 800 | 56  | 1800_0000 | 1810_0000 | slave wrapper                  |
    | 802.11 (main)   | 812 | 61  | 1800_1000 | 1810_1000 | master wrapper                 |
    | ARM Cortex-R4   | 83E | 13  | 1800_2000 | 1810_2000 | master wrapper                 |
    | PCIe Gen2       | 83C | 19  | 1800_3000 | 1810_3000 | master wrapper                 |
    | 802.11 (aux)    | 812 | 61  | 1800_4000 | 1810_4000 | master wrapper                 |
    EROM at 1810_B000: the descriptors of the cores above, then end of table.

    ChipCommon: 000 chip ID 1503_4364 (AXI, 5 cores, package 0, revision 3, chip 4364),
    004 capabilities (PMU present), 080 watchdog (any non-zero write resets the chip at once),
    0AC capabilities 2 (no always-on backplane: the PMU is ChipCommon's), 0FC EROM address,
    604 PMU capabilities (PMU rev 28).
    ARM CR4: 004 capabilities (2 ATCM + 8 BTCM banks), 040 bank index (RW), 044 bank info
    (128 KiB each: 1.25 MiB of RAM, which brcmfmac places at 16_0000 for chip 4364), 04C bank
    PDA (RW).
    PCIe2: 024 interrupt mask (RW), 048 mailbox interrupts (write 1 to clear; nothing sets
    them), 04C mailbox mask (RW), 120 config address (RW, 11:2), 124 config data (this
    function's configuration dword at 120, as the host sees it and with its writable bits),
    140/144 doorbells to the dongle (read 0: nothing listens).
    Wrappers (DMP agents): 408 ioctrl (15:0 RW), 500 iostatus (0), 800 resetctrl (bit 0 RW:
    in reset; takes effect at once), 804 resetstatus (0). At power-on (and after a watchdog
    reset) the ARM runs its ROM (ioctrl clock on, out of reset), the 802.11 cores are held in
    reset, the others are out of reset with their clocks on.
    Everything else on the backplane (the 802.11 cores' registers, gaps) reads 0 and ignores
    writes; on a real chip such reads may end in a bus error instead.

The probe this gives (brcmfmac, Linux 6.1): chip BCM4364/3 on an AXI backplane; cores as
above; the ARM halted and the 802.11 cores reset (set_passive); the PCIe bus reset (ASPM off
through config BC, ChipCommon watchdog, ASPM back, mailbox interrupts cleared; PCIe2 rev 19 is
above 13, so pcie.c skips its config space re-write through 120/124, which works all the same);
RAM 0x140000 bytes at 0x160000; then the firmware request for "brcm/brcmfmac4364-pcie" (first
"brcm/brcmfmac4364-pcie.Apple Inc.-iMacPro1,1.bin", from the DMI board type, then
"brcm/brcmfmac4364-pcie.bin"). Both are missing, so the driver unbinds: it writes 0 to BAR0
+4C meaning the mailbox mask (the window still on ChipCommon, where nothing answers), resets
the chip again by the watchdog (left as at power-on, the ARM running its ROM) and disables the
function; nothing retries. The .txt (NVRAM) and .clm_blob names are only asked for once a .bin
is found.

Not modelled, and why: everything the firmware would do (no dongle CPU, no shared ring
structures, no Wi-Fi); the 802.11 cores' registers; the chip's other cores (GCI, Bluetooth:
brcmfmac's PCIe path uses none, so the EROM lists only the five above); OTP/SROM (brcmfmac
reads no OTP for this chip); the PCI Express extended capabilities of the real card (AER,
serial number, LTR, L1 PM substates, resizable BAR: Linux's probe needs none, and pcie.c
reaches them only through 120/124 on PCIe2 revisions up to 13, where they would read 0); power
states (PMCSR stores the state, nothing changes with it).
The core revisions, package, PMU revision and EROM address are the model's choice: no register
dump of this chip is published, and the driver's path depends only on what is said above.

A hostile guest: every register access is bounded work; the windows reach only the backplane
map above; BAR2 keeps at most its 4 MiB (stored as the 4 KiB pages written).
"""

from __future__ import annotations

import logging
import struct

from imacpro.bus.msi import Msi
from imacpro.bus.pci import MemoryBar, PciFunction
from imacpro.bus.pcie import CAP_PCI_EXPRESS, ENDPOINT, pcie_capability
from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

# --- identity -----------------------------------------------------------------------------
VENDOR_BROADCOM, DEVICE_BCM4364 = 0x14E4, 0x4464
SUBSYSTEM = (0x106B, 0x07BF)              # Apple
CLASS_NETWORK_OTHER = 0x028000            # what brcmfmac's ID table matches
REVISION = 0x03
CHIP, CHIP_REVISION, PACKAGE, SOCI_AI = 0x4364, 3, 0, 1
MSI_VECTORS = 16
LINK = (5.0, 1)                           # GT/s, lanes

# --- geometry -----------------------------------------------------------------------------
REGISTERS_SIZE = 32 * 1024
TCM_SIZE = 4 * 1024 * 1024
PAGE = 0x1000
RAM_BASE, RAM_BANKS, RAM_BANK_SIZE = 0x160000, 10, 128 * 1024
RAM_SIZE = RAM_BANKS * RAM_BANK_SIZE      # 0x140000
ATCM_BANKS, BTCM_BANKS = 2, 8

# --- configuration space --------------------------------------------------------------------
CAP_PM, CAP_VENDOR = 0x01, 0x09
PM_OFFSET, MSI_OFFSET, VENDOR_OFFSET, PCIE_OFFSET = 0x48, 0x58, 0x68, 0xAC
VENDOR_LENGTH = 0x44
PMC = 0xC803                              # version 3; PME from D0, D3hot, D3cold
PMCSR = 0x4008                            # D0, no soft reset, data scale 2
CFG_BAR0_WINDOW2, CFG_BAR0_WINDOW = 0x70, 0x80
WINDOW_MASK = 0xFFFF_F000

# --- the backplane ------------------------------------------------------------------------
ENUM_BASE = 0x1800_0000
EROM_BASE = 0x1810_B000
CORE_CHIPCOMMON, CORE_80211, CORE_ARM_CR4, CORE_PCIE2 = 0x800, 0x812, 0x83E, 0x83C
DESIGNER_BROADCOM = 0x4BF


class Core:
    """A core on the backplane: its ID and revision, where its registers and its wrapper (the
    DMP agent with ioctrl/resetctrl; 0: none) are, and whether it masters the bus (its wrapper
    is a master wrapper in the EROM)."""

    def __init__(self, name: str, core_id: int, rev: int, base: int, wrapper: int,
                 master: bool, in_reset: bool = False):
        self.name, self.id, self.rev, self.base, self.wrapper = name, core_id, rev, base, wrapper
        self.master, self.in_reset = master, in_reset


CORES = (
    Core("chipcommon", CORE_CHIPCOMMON, 56, ENUM_BASE, 0x1810_0000, master=False),
    Core("d11", CORE_80211, 61, 0x1800_1000, 0x1810_1000, master=True, in_reset=True),
    Core("arm_cr4", CORE_ARM_CR4, 13, 0x1800_2000, 0x1810_2000, master=True),
    Core("pcie2", CORE_PCIE2, 19, 0x1800_3000, 0x1810_3000, master=True),
    Core("d11_aux", CORE_80211, 61, 0x1800_4000, 0x1810_4000, master=True, in_reset=True),
)
WRAPPED = tuple(core for core in CORES if core.wrapper)
CHIPCOMMON_BASE, _, ARM_CR4_BASE, PCIE2_BASE, _ = (core.base for core in CORES)

# EROM descriptors (ARM PL-368 DMP, as chip.c reads them).
DESC_COMPONENT, DESC_MASTER_PORT, DESC_ADDRESS, DESC_END = 0x1, 0x3, 0x5, 0xF
SLAVE, SLAVE_WRAPPER, MASTER_WRAPPER = 0, 2, 3
SIZE_4K = 0

# ChipCommon registers.
CC_CHIPID, CC_CAPABILITIES, CC_WATCHDOG, CC_CAPABILITIES_EXT, CC_EROMPTR = \
    0x000, 0x004, 0x080, 0x0AC, 0x0FC
CC_PMU_CAPABILITIES = 0x604
CC_CAP_PMU = 1 << 28
PMU_REV, PMU_RESOURCES = 28, 31
# ARM CR4 registers.
CR4_CAP, CR4_BANKIDX, CR4_BANKINFO, CR4_BANKPDA = 0x04, 0x40, 0x44, 0x4C
# PCIe2 core registers.
PCIE_INTMASK, PCIE_MAILBOXINT, PCIE_MAILBOXMASK = 0x024, 0x048, 0x04C
PCIE_CONFIGADDR, PCIE_CONFIGDATA = 0x120, 0x124
# Wrapper (agent) registers.
AGENT_IOCTRL, AGENT_IOSTATUS, AGENT_RESETCTRL, AGENT_RESETSTATUS = 0x408, 0x500, 0x800, 0x804
IOCTRL_CLK, IOCTRL_MASK, RESETCTRL_RESET = 0x0001, 0xFFFF, 0x0001

U32 = 0xFFFF_FFFF
UNMODELLED_LOGGED = 16


def chip_id_register() -> int:
    return (SOCI_AI << 28 | len(CORES) << 24 | PACKAGE << 20 | CHIP_REVISION << 16 | CHIP)


def erom() -> tuple[int, ...]:
    """The enumeration ROM: per core its two component descriptors, a master port descriptor
    if it masters, its register range and its wrapper's; then the end of the table."""
    words = []
    for port, core in enumerate(CORES):
        masters = 1 if core.master else 0
        slave_wrappers = 1 if core.wrapper and not core.master else 0
        words.append(DESIGNER_BROADCOM << 20 | core.id << 8 | DESC_COMPONENT)
        words.append(core.rev << 24 | slave_wrappers << 19 | masters << 14 | 1 << 9
                     | masters << 4 | DESC_COMPONENT)
        if core.master:
            words.append(port << 8 | DESC_MASTER_PORT)
        words.append(core.base | SLAVE << 6 | SIZE_4K << 4 | DESC_ADDRESS)
        if core.wrapper:
            kind = MASTER_WRAPPER if core.master else SLAVE_WRAPPER
            words.append(core.wrapper | kind << 6 | SIZE_4K << 4 | DESC_ADDRESS)
    words.append(DESC_END)
    return tuple(words)


EROM = erom()


class Bcm4364:
    """The card. `intx`: INTA# as the board routes it (never asserted)."""

    SAVED = ("bankidx", "bankpda", "pcie_intmask", "pcie_mailboxint", "pcie_mailboxmask",
             "pcie_configaddr", "chip_resets")

    def __init__(self, intx: IrqLine | None = None):
        self.pci = PciFunction(VENDOR_BROADCOM, DEVICE_BCM4364, CLASS_NETWORK_OTHER, REVISION,
                               subsystem_vendor=SUBSYSTEM[0], subsystem=SUBSYSTEM[1])
        self._build_capabilities()
        self.tcm = Tcm()
        self.pci.add_memory_bar(MemoryBar(0, REGISTERS_SIZE, self))
        self.pci.add_memory_bar(MemoryBar(2, TCM_SIZE, self.tcm))
        if intx is not None:
            self.pci.set_interrupt_pin(intx)
        self.unmodelled = 0           # accesses to backplane addresses nothing answers
        self.chip_resets = 0          # watchdog resets since power-on
        self._power_on_backplane()

    def _build_capabilities(self) -> None:
        # The real card's capabilities are at 48h, 58h, 68h and ACh, and pcie.c writes
        # config BCh as the link control register.
        fn = self.pci
        fn.place_next_capability(PM_OFFSET)
        fn.add_capability(CAP_PM, struct.pack("<HHBB", PMC, PMCSR, 0, 0),
                          struct.pack("<HHBB", 0, 0x0003, 0, 0))
        fn.place_next_capability(MSI_OFFSET)
        self.msi = Msi(fn, MSI_VECTORS)
        body, writable = bytearray(VENDOR_LENGTH - 2), bytearray(VENDOR_LENGTH - 2)
        body[0] = VENDOR_LENGTH
        at = VENDOR_OFFSET + 2
        struct.pack_into("<I", body, CFG_BAR0_WINDOW - at, ENUM_BASE)
        for register in (CFG_BAR0_WINDOW2, CFG_BAR0_WINDOW):
            struct.pack_into("<I", writable, register - at, WINDOW_MASK)
        fn.add_capability(CAP_VENDOR, bytes(body), bytes(writable))
        fn.add_capability(CAP_PCI_EXPRESS, *pcie_capability(ENDPOINT, *LINK))
        offsets = (self.msi.offset, fn.config[VENDOR_OFFSET + 1])
        if offsets != (MSI_OFFSET, PCIE_OFFSET):
            raise AssertionError(f"capabilities at {offsets}, not the card's")

    # --- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on (PERST#): the function, the chip, and the RAM's contents."""
        self.pci.reset()
        self.tcm.clear()
        self.chip_resets = 0
        self._power_on_backplane()

    def _power_on_backplane(self) -> None:
        """The chip as it comes out of reset (power-on or watchdog): the ARM runs its ROM,
        the 802.11 cores are held in reset. The RAM keeps its contents."""
        self.ioctrl = [0 if core.in_reset else IOCTRL_CLK for core in WRAPPED]
        self.resetctrl = [RESETCTRL_RESET if core.in_reset else 0 for core in WRAPPED]
        self.bankidx = self.bankpda = 0
        self.pcie_intmask = self.pcie_mailboxint = self.pcie_mailboxmask = 0
        self.pcie_configaddr = 0

    # --- BAR0 -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8) or offset < 0 or offset + size > REGISTERS_SIZE:
            return 0
        first = offset & ~3
        raw = b"".join(self._read_dword(at).to_bytes(4, "little")
                       for at in range(first, offset + size, 4))
        start = offset - first
        return int.from_bytes(raw[start:start + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8 and not offset & 3:
            self.write(offset, 4, value & U32)
            self.write(offset + 4, 4, value >> 32 & U32)
            return
        if size != 4 or offset & 3 or not 0 <= offset < REGISTERS_SIZE:
            return
        address = self._backplane_address(offset)
        if address is not None:
            self.backplane_write(address, value & U32)

    def _read_dword(self, offset: int) -> int:
        address = self._backplane_address(offset)
        return 0 if address is None else self.backplane_read(address)

    def _backplane_address(self, offset: int) -> int | None:
        page, inside = offset & ~(PAGE - 1), offset & (PAGE - 1)
        if page == 0x0000:
            return self._window(CFG_BAR0_WINDOW) + inside
        if page == 0x1000:
            return self._window(CFG_BAR0_WINDOW2) + inside
        if page == 0x2000:
            return PCIE2_BASE + inside
        if page == 0x3000:
            return CHIPCOMMON_BASE + inside
        return None

    def _window(self, register: int) -> int:
        return struct.unpack_from("<I", self.pci.config, register)[0] & WINDOW_MASK

    # --- the backplane --------------------------------------------------------------------

    def backplane_read(self, address: int) -> int:
        """The 32-bit register at backplane `address` (dword aligned)."""
        page, offset = address & ~(PAGE - 1), address & (PAGE - 1) & ~3
        if page == CHIPCOMMON_BASE:
            return self._chipcommon_read(offset)
        if page == ARM_CR4_BASE:
            return self._cr4_read(offset)
        if page == PCIE2_BASE:
            return self._pcie_read(offset)
        if page == EROM_BASE:
            return EROM[offset // 4] if offset // 4 < len(EROM) else 0
        index = _WRAPPER_INDEX.get(page)
        if index is not None:
            return self._agent_read(index, offset)
        self._unmodelled("read", address)
        return 0

    def backplane_write(self, address: int, value: int) -> None:
        page, offset = address & ~(PAGE - 1), address & (PAGE - 1) & ~3
        if page == CHIPCOMMON_BASE:
            if offset == CC_WATCHDOG and value:
                self._watchdog_reset()
        elif page == ARM_CR4_BASE:
            if offset == CR4_BANKIDX:
                self.bankidx = value & 0x1F
            elif offset == CR4_BANKPDA:
                self.bankpda = value
        elif page == PCIE2_BASE:
            self._pcie_write(offset, value)
        elif page in _WRAPPER_INDEX:
            index = _WRAPPER_INDEX[page]
            if offset == AGENT_IOCTRL:
                self.ioctrl[index] = value & IOCTRL_MASK
            elif offset == AGENT_RESETCTRL:
                self.resetctrl[index] = value & RESETCTRL_RESET
        else:
            self._unmodelled("write", address)

    def _chipcommon_read(self, offset: int) -> int:
        return {CC_CHIPID: chip_id_register(), CC_CAPABILITIES: CC_CAP_PMU,
                CC_CAPABILITIES_EXT: 0, CC_EROMPTR: EROM_BASE,
                CC_PMU_CAPABILITIES: PMU_RESOURCES << 8 | PMU_REV}.get(offset, 0)

    def _cr4_read(self, offset: int) -> int:
        if offset == CR4_CAP:
            return BTCM_BANKS << 4 | ATCM_BANKS
        if offset == CR4_BANKIDX:
            return self.bankidx
        if offset == CR4_BANKINFO:
            return RAM_BANK_SIZE // 8192 - 1 if self.bankidx < RAM_BANKS else 0
        if offset == CR4_BANKPDA:
            return self.bankpda
        return 0

    def _pcie_read(self, offset: int) -> int:
        if offset == PCIE_CONFIGDATA:
            return self.pci.read_config(self.pcie_configaddr, 4)
        return {PCIE_INTMASK: self.pcie_intmask, PCIE_MAILBOXINT: self.pcie_mailboxint,
                PCIE_MAILBOXMASK: self.pcie_mailboxmask,
                PCIE_CONFIGADDR: self.pcie_configaddr}.get(offset, 0)

    def _pcie_write(self, offset: int, value: int) -> None:
        if offset == PCIE_INTMASK:
            self.pcie_intmask = value
        elif offset == PCIE_MAILBOXINT:
            self.pcie_mailboxint &= ~value
        elif offset == PCIE_MAILBOXMASK:
            self.pcie_mailboxmask = value
        elif offset == PCIE_CONFIGADDR:
            self.pcie_configaddr = value & 0xFFC
        elif offset == PCIE_CONFIGDATA:
            # The core's side of the function's configuration space: the same registers
            # and writable bits the host has (pcie.c re-writes what it reads back here).
            self.pci.write_config(self.pcie_configaddr, 4, value)

    def _agent_read(self, index: int, offset: int) -> int:
        if offset == AGENT_IOCTRL:
            return self.ioctrl[index]
        if offset == AGENT_RESETCTRL:
            return self.resetctrl[index]
        return 0                          # iostatus, resetstatus, the rest

    def _watchdog_reset(self) -> None:
        """The watchdog fires: the whole chip resets. The timeout is a few ticks and brcmfmac
        waits 100 ms, so it happens at once. The PCI function (its link, BARs and windows)
        stays as the host set it, as the driver expects."""
        self.chip_resets += 1
        self._power_on_backplane()

    def _unmodelled(self, access: str, address: int) -> None:
        self.unmodelled += 1
        if self.unmodelled <= UNMODELLED_LOGGED:
            log.debug("BCM4364: %s at backplane %#010x: nothing there%s", access, address,
                      " (further ones are not logged)" if self.unmodelled == UNMODELLED_LOGGED
                      else "")

    # --- what a test or a status line may ask ----------------------------------------------

    def core_state(self, name: str) -> tuple[int, int]:
        """(ioctrl, resetctrl) of the wrapped core `name`."""
        index = next(n for n, core in enumerate(WRAPPED) if core.name == name)
        return self.ioctrl[index], self.resetctrl[index]

    # --- saved state ----------------------------------------------------------------------

    def save(self) -> dict:
        return {"pci": self.pci.save(), "msi": self.msi.save(),
                "ioctrl": list(self.ioctrl), "resetctrl": list(self.resetctrl),
                "tcm": self.tcm.save(),
                **{name: getattr(self, name) for name in self.SAVED}}

    def load(self, state: dict) -> None:
        where = "Bcm4364"
        pci = self.pci.check_state(_state.field(state, "pci", where))
        msi = self.msi.check_state(_state.field(state, "msi", where))
        ioctrl = _state.int_list(state, "ioctrl", where, 0, IOCTRL_MASK, length=len(WRAPPED))
        resetctrl = _state.int_list(state, "resetctrl", where, 0, RESETCTRL_RESET,
                                    length=len(WRAPPED))
        tcm = self.tcm.check_state(_state.field(state, "tcm", where))
        _state.ranges(state, where, {"bankidx": (0, 0x1F), "bankpda": (0, U32),
                                     "pcie_intmask": (0, U32), "pcie_mailboxint": (0, U32),
                                     "pcie_mailboxmask": (0, U32),
                                     "pcie_configaddr": (0, 0xFFC), "chip_resets": (0, None)})
        if state["pcie_configaddr"] & 3:
            raise StateError(f"{where}.pcie_configaddr: not dword aligned")
        self.pci.apply_state(pci)
        self.msi.apply_state(msi)
        self.ioctrl, self.resetctrl = ioctrl, resetctrl
        self.tcm.apply_state(tcm)
        for name in self.SAVED:
            setattr(self, name, state[name])


_WRAPPER_INDEX = {core.wrapper: n for n, core in enumerate(WRAPPED)}


class Tcm:
    """BAR2: the dongle's TCM address space (the RAM is RAM_SIZE bytes at RAM_BASE), plain
    bytes. Kept as the 4 KiB pages ever written with something other than zeros."""

    def __init__(self):
        self.pages: dict[int, bytearray] = {}

    def clear(self) -> None:
        self.pages.clear()

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8) or offset < 0 or offset + size > TCM_SIZE:
            return 0
        return int.from_bytes(self.read_bytes(offset, size), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4, 8) or offset < 0 or offset + size > TCM_SIZE:
            return
        self.write_bytes(offset, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))

    def read_bytes(self, offset: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            number, inside = divmod(offset, PAGE)
            take = min(length, PAGE - inside)
            page = self.pages.get(number)
            out += page[inside:inside + take] if page is not None else bytes(take)
            offset, length = offset + take, length - take
        return bytes(out)

    def write_bytes(self, offset: int, data: bytes) -> None:
        while data:
            number, inside = divmod(offset, PAGE)
            take = min(len(data), PAGE - inside)
            piece, data = data[:take], data[take:]
            page = self.pages.get(number)
            if page is None:
                if not any(piece):
                    offset += take
                    continue          # zeros over zeros: no page needed
                page = self.pages[number] = bytearray(PAGE)
            page[inside:inside + take] = piece
            offset += take

    def save(self) -> dict:
        return {str(number): bytes(page) for number, page in sorted(self.pages.items())}

    def check_state(self, state) -> dict[int, bytearray]:
        pages = {}
        for key, page in _state.mapping(state, "Bcm4364.tcm").items():
            if not key.isdigit() or not 0 <= int(key) < TCM_SIZE // PAGE or str(int(key)) != key:
                raise StateError(f"Bcm4364.tcm: {key!r} is not a page of BAR2")
            if not isinstance(page, bytes) or len(page) != PAGE:
                raise StateError(f"Bcm4364.tcm[{key}]: not {PAGE} bytes")
            pages[int(key)] = bytearray(page)
        return pages

    def apply_state(self, pages: dict[int, bytearray]) -> None:
        self.pages = pages
