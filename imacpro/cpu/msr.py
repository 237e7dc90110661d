"""Model-specific registers of the Xeon W-21xxB that the machine answers.

The engine keeps the MSRs its translator depends on (EFER, STAR/LSTAR/CSTAR/FMASK, FS/GS/kernel
GS base, TSC_AUX, SYSENTER, TSC, PAT, MTRRs, microcode revision, IA32_XSS): `ENGINE_MSRS`. This module
answers the platform's: the APIC base and TSC deadline (to the local APIC), IA32_TSC_ADJUST
(which offsets this CPU's TSC, SDM 17.17.3; a write to IA32_TSC itself is the engine's and
does not move it), MISC_ENABLE, PLATFORM_INFO, turbo ratios, feature control, the P-state
and HWP MSRs (cpu/hwp.py), the package's machine-check banks (cpu/mca.py) and its uncore
performance-monitoring MSRs (UncoreMsrs). Any other MSR raises #GP, as on hardware, so
guests that probe with rdmsr_safe see what is really there.
"""

from __future__ import annotations

from typing import Callable

from imacpro.catalog.data import Processor
from imacpro.cpu import hwp
from imacpro.cpu.mca import MCG_CAP, MachineCheckBanks
from imacpro.devices import _state
from imacpro.devices.contract import StateError, load_fields, save_fields

IA32_TSC = 0x10
IA32_PLATFORM_ID = 0x17
IA32_APIC_BASE = 0x1B
IA32_FEATURE_CONTROL = 0x3A
IA32_TSC_ADJUST = 0x3B
IA32_BIOS_SIGN_ID = 0x8B
MSR_SMI_COUNT = 0x34
MSR_CORE_THREAD_COUNT = 0x35
MSR_PLATFORM_INFO = 0xCE
IA32_MCG_CAP = 0x179
IA32_MCG_STATUS = 0x17A
IA32_MISC_ENABLE = 0x1A0
MSR_TURBO_RATIO_LIMIT = 0x1AD
IA32_TSC_DEADLINE = 0x6E0
MISC_ENABLE = (1 << 0) | (1 << 11) | (1 << 12)  # fast strings; BTS and PEBS unavailable
FEATURE_CONTROL_LOCKED = 1  # locked, VMX off (the engine has no VMX)

# Microcode revision for CPUID 0x50654 (Skylake-SP/W H0), in IA32_BIOS_SIGN_ID[63:32]: the
# revision of Intel's 2021-06 microcode release, the generation Apple's last iMac Pro firmware
# (IMP11.88Z...2107050205, 2021-07) would carry (an assumption; Apple does not publish it).
# Linux needs at least 0x2000014 on this stepping before it trusts the TSC-deadline timer.
MICROCODE_REVISION = 0x0200_6B06

IA32_XSS = 0xDA0

ENGINE_MSRS = frozenset(
    {IA32_TSC, 0x174, 0x175, 0x176, 0x277, 0x2FF, 0xFE, IA32_XSS,
     *range(0x200, 0x214), 0x250, 0x258, 0x259, *range(0x268, 0x270),
     *range(0xC0000080, 0xC0000085), *range(0xC0000100, 0xC0000104)})

# Skylake-SP uncore MSRs: one set per package, shared by its logical CPUs (UncoreMsrs).
SKX_MSR_CPU_BUS_NUMBER = 0x300     # CPUBUSNO: the IIO stacks' root bus numbers, read-only
BUS_NUMBER_VALID = 1 << 63
IIO_STACKS = 6                     # CSTACK (DMI), PSTACK0-2, MCP0-1: a byte each
MSR_UNCORE_RATIO_LIMIT = 0x620     # the mesh's frequency limits: max ratio 6:0, min 14:8
MSR_UNCORE_PERF_STATUS = 0x621     # its current ratio, 6:0, read-only
# The W-2100's mesh runs from 1.2 to 2.4 GHz (ratios of 100 MHz), as on Skylake-SP parts; the
# iMac Pro's own limits are not published (an assumption).
UNCORE_MIN_RATIO, UNCORE_MAX_RATIO = 12, 24
UNCORE_PMON = (range(0x703, 0x70A),    # UBOX: UCLK fixed counter and its control, CTL0-1, CTR0-1
               range(0x710, 0x71B),    # PCU: box control, CTL0-3, filter, status, CTR0-3
               range(0xA40, 0xB00),    # IIO 0-5 and IRP 0-5 boxes: controls and counters
               range(0xB00, 0xB60),    # IIO free-running bandwidth and utilisation counters
               (MSR_UNCORE_RATIO_LIMIT,))
CHA_MSRS, CHA_STRIDE = 0xE00, 0x10   # CHA n: box control 0xE00 + 0x10n, CTL0-3, filters, CTR0-3

HANDLED, ENGINE, GP_FAULT = 1, 0, -1
_SAVED = ("misc_enable", "tsc_adjust", "mcg_status")   # the engine keeps the rest


class UncoreMsrs:
    """The package's uncore MSRs (Intel Xeon Scalable uncore performance monitoring
    reference; Linux's arch/x86/events/intel/uncore_snbep.c, "SKX"), shared by every logical
    CPU of the package:

    | MSR           | what                                                              |
    |---------------|-------------------------------------------------------------------|
    | 0x300         | CPUBUSNO: bit 63 valid, byte n the root bus of IIO stack n (RO)    |
    | 0x620         | UNCORE_RATIO_LIMIT: the mesh's max (6:0) and min (14:8) ratios     |
    | 0x621         | UNCORE_PERF_STATUS: its current ratio, the max (RO)                |
    | 0x703-0x709   | UBOX: UCLK fixed counter control and counter, CTL0-1, CTR0-1       |
    | 0x710-0x71A   | PCU: box control, CTL0-3, filter, status, CTR0-3                   |
    | 0xA40-0xAFF   | IIO 0-5 (box control 0xA40 + 0x20n, CTR0-3, IOCLK, CTL0-3) and     |
    |               | IRP 0-5 (box control 0xA58 + 0x20n, CTR0-1, CTL0-1)                 |
    | 0xB00-0xB5F   | IIO free-running bandwidth and utilisation counters                |
    | 0xE00 + 0x10n | CHA n (one per core): box control, CTL0-3, filters, status, CTR0-3 |

    Linux's intel_uncore writes the box controls as each CPU comes online and reads CPUBUSNO
    to map IIO stacks to PCI root buses, and intel_uncore_frequency reads the ratio limits;
    without them they log "unchecked MSR access error" (the real Xeon W has them). Registers hold what software writes and count nothing: there
    is no performance-monitoring model, so counters read back what was written (0 from
    reset). The stacks' bus numbers are the board's root buses in order; stacks without
    one read 0xFF. There is a CHA box per core: Linux counts them from the PCU's CAPID6
    PCI register (devices/uncore_registers.py sets it so).

    Saved state: the registers written (`values`)."""

    def __init__(self, root_buses: tuple[int, ...] = (0,), chas: int = 0):
        buses = list(root_buses[:IIO_STACKS]) + [0xFF] * (IIO_STACKS - len(root_buses))
        self.bus_number = BUS_NUMBER_VALID | int.from_bytes(bytes(buses), "little")
        self.chas = range(CHA_MSRS, CHA_MSRS + CHA_STRIDE * chas)
        self.reset()

    def reset(self) -> None:
        self.values: dict[int, int] = {
            MSR_UNCORE_RATIO_LIMIT: UNCORE_MIN_RATIO << 8 | UNCORE_MAX_RATIO}

    def holds(self, index: int) -> bool:
        return index in (SKX_MSR_CPU_BUS_NUMBER, MSR_UNCORE_PERF_STATUS) or \
            index in self.chas or any(index in r for r in UNCORE_PMON)

    def read(self, index: int) -> int:
        if index == SKX_MSR_CPU_BUS_NUMBER:
            return self.bus_number
        if index == MSR_UNCORE_PERF_STATUS:
            return UNCORE_MAX_RATIO
        return self.values.get(index, 0)

    def write(self, index: int, value: int) -> int:
        if index in (SKX_MSR_CPU_BUS_NUMBER, MSR_UNCORE_PERF_STATUS):
            return GP_FAULT
        self.values[index] = value & (1 << 64) - 1
        return HANDLED

    def save(self) -> dict:
        return {"values": [[index, value] for index, value in sorted(self.values.items())]}

    def load(self, state) -> None:
        where = "UncoreMsrs"
        saved = _state.list_field(_state.mapping(state, where), "values", where)
        values = {}
        for n, pair in enumerate(saved):
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                    and self.holds(pair[0])
                    and pair[0] not in (SKX_MSR_CPU_BUS_NUMBER, MSR_UNCORE_PERF_STATUS)
                    and 0 <= pair[1] < 1 << 64):
                raise StateError(f"{where}.values[{n}]: not an uncore MSR and its value")
            values[pair[0]] = pair[1]
        self.values = values


class MsrFile:
    """The platform MSRs of one logical CPU. `access()` is the engine's MSR callback."""

    def __init__(self, processor: Processor, lapic, tsc_hz: int,
                 on_tsc_adjust: Callable[[], None] = lambda: None,
                 uncore: UncoreMsrs | None = None, mca: MachineCheckBanks | None = None,
                 now_ns: Callable[[], int] = lambda: 0,
                 package_hwp: hwp.PackageHwp | None = None,
                 interrupts_taken: Callable[[], int] = lambda: 0):
        """`on_tsc_adjust()`: IA32_TSC_ADJUST changed, the CPU's TSC moves with it.
        `uncore`, `mca`, `package_hwp`: the package's uncore MSRs, machine-check banks and
        HWP request (the machine's, shared; its own if None). `now_ns()`: guest time, which
        the frequency counters count, and `interrupts_taken()`, a count of the CPU's
        interrupts, which ends a pair of counter reads (cpu/hwp.py)."""
        self.lapic = lapic
        lapic.tsc_hz = tsc_hz                   # its TSC deadline counts in this CPU's TSC
        self.uncore = uncore if uncore is not None else UncoreMsrs()
        self.mca = mca if mca is not None else MachineCheckBanks()
        self.tsc_hz = tsc_hz
        self.on_tsc_adjust = on_tsc_adjust
        base_ratio = round(processor.base_ghz * 10)
        turbo_ratio = round(processor.turbo_ghz * 10)
        self.perf = hwp.PerformanceState(base_ratio, turbo_ratio, tsc_hz, now_ns, package_hwp,
                                         interrupts_taken)
        self._fixed = {
            IA32_PLATFORM_ID: 0,
            IA32_FEATURE_CONTROL: FEATURE_CONTROL_LOCKED,
            MSR_SMI_COUNT: 0,
            MSR_CORE_THREAD_COUNT: processor.cores << 16 | processor.threads,
            MSR_PLATFORM_INFO: base_ratio << 8 | 12 << 40,  # max efficiency ratio: 1.2 GHz
            IA32_MCG_CAP: MCG_CAP,
            MSR_TURBO_RATIO_LIMIT: int.from_bytes(bytes([turbo_ratio] * 8), "little"),
            IA32_BIOS_SIGN_ID: MICROCODE_REVISION << 32,
        }
        self.reset()

    def reset(self) -> None:
        self.misc_enable = MISC_ENABLE
        self.tsc_adjust = 0
        self.mcg_status = 0
        self.perf.reset()

    @property
    def tsc_adjust(self) -> int:
        return self._tsc_adjust

    @tsc_adjust.setter
    def tsc_adjust(self, value: int) -> None:
        self._tsc_adjust = value
        self.lapic.tsc_offset = self.tsc_offset  # its TSC deadline moves with the TSC

    @property
    def tsc_offset(self) -> int:
        """IA32_TSC_ADJUST as the signed amount this CPU's TSC is ahead of the machine's."""
        return self._tsc_adjust - (1 << 64 if self._tsc_adjust >> 63 else 0)

    def save(self) -> dict:
        return save_fields(self, _SAVED) | {"perf": self.perf.save()}

    def load(self, state: dict) -> None:
        if not isinstance(state, dict) or "perf" not in state:
            raise StateError("MsrFile: saved state without the P-state registers")
        self.perf.check(state["perf"])
        load_fields(self, {k: v for k, v in state.items() if k != "perf"}, _SAVED)
        self.perf.load(state["perf"])

    def access(self, is_write: bool, index: int, value: int) -> tuple[int, int | None]:
        if index in ENGINE_MSRS:
            return ENGINE, None
        try:
            return (self._write(index, value), None) if is_write else self._read(index)
        except Exception:  # a bug here must not take the machine down: fault the guest
            return GP_FAULT, None

    def _read(self, index: int) -> tuple[int, int | None]:
        if index in self._fixed:
            return HANDLED, self._fixed[index]
        if index == IA32_APIC_BASE:
            return HANDLED, self.lapic.apic_base
        if index == IA32_TSC_DEADLINE:
            return HANDLED, self.lapic.read_tsc_deadline()
        if index == IA32_MISC_ENABLE:
            return HANDLED, self.misc_enable
        if index == IA32_TSC_ADJUST:
            return HANDLED, self.tsc_adjust
        if index == IA32_MCG_STATUS:
            return HANDLED, self.mcg_status
        if self.mca.holds(index):
            return HANDLED, self.mca.read(index)
        if index in hwp.MSRS:
            return HANDLED, self.perf.read(index)
        if self.uncore.holds(index):
            return HANDLED, self.uncore.read(index)
        return GP_FAULT, None

    def _write(self, index: int, value: int) -> int:
        if index == IA32_APIC_BASE:
            self.lapic.apic_base = value
        elif index == IA32_TSC_DEADLINE:
            self.lapic.write_tsc_deadline(value)   # its rate and offset are the core's
        elif index == IA32_MISC_ENABLE:
            # Only the fast-strings bit is the OS's to change; the rest reflect the hardware.
            self.misc_enable = (self.misc_enable & ~1) | (value & 1)
        elif index == IA32_TSC_ADJUST:
            # SDM 17.17.3: the TSC moves by what the adjustment moves (a signed 64-bit value).
            self.tsc_adjust = value
            self.on_tsc_adjust()
        elif index == IA32_MCG_STATUS:
            self.mcg_status = value
        elif index == IA32_FEATURE_CONTROL:
            return GP_FAULT  # locked by firmware
        elif index == IA32_BIOS_SIGN_ID:
            pass             # software writes 0 before CPUID to latch the revision
        elif self.uncore.holds(index):
            return self.uncore.write(index, value)
        elif self.mca.holds(index):
            return self.mca.write(index, value, self.lapic.apic_id)
        elif index in hwp.MSRS:
            return self.perf.write(index, value)
        else:
            return GP_FAULT
        return HANDLED
