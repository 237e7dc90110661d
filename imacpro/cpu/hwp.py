"""Turbo Boost as Linux's intel_pstate and turbostat see it: the P-state MSRs of one logical CPU,
Hardware P-states (HWP, Intel SDM vol. 3B 14.4) and the APERF/MPERF frequency counters.

    | MSR   | what                                                                         |
    |-------|------------------------------------------------------------------------------|
    | 0xE7  | IA32_MPERF: counts at the TSC's rate while the CPU is in C0 (not halted)      |
    | 0xE8  | IA32_APERF: counts at the CPU's actual clock while in C0                      |
    | 0x198 | IA32_PERF_STATUS (RO): the current ratio in 15:8                              |
    | 0x199 | IA32_PERF_CTL: the requested ratio in 15:8 (before HWP is on)                 |
    | 0x1AA | MSR_MISC_PWR_MGMT: 0 (bits 8 and 18 clear: the OS, not the platform, runs   |
    |       | P-states, so intel_pstate takes them)                                        |
    | 0x770 | IA32_PM_ENABLE: HWP on (bit 0; once set, only a reset clears it)              |
    | 0x771 | IA32_HWP_CAPABILITIES (RO): highest (turbo) 7:0, guaranteed (base) 15:8,      |
    |       | most efficient 23:16, lowest 31:24                                           |
    | 0x772 | IA32_HWP_REQUEST_PKG (the package's)                                          |
    | 0x773 | IA32_HWP_INTERRUPT: change and excursion notifications (none ever happen)     |
    | 0x774 | IA32_HWP_REQUEST: minimum 7:0, maximum 15:8, desired 23:16, EPP 31:24,        |
    |       | activity window 41:32, package control 42                                     |
    | 0x777 | IA32_HWP_STATUS: 0 (no guaranteed-performance change or excursion)            |

Ratios are of the 100 MHz bus: the SKU's base (W-2140B 32) is guaranteed, its turbo (42) the
highest, 12 (1.2 GHz) the lowest and most efficient (as MSR_PLATFORM_INFO says).

The clock a CPU runs at: with HWP on, the maximum of its request (HWP_REQUEST, or the package's
with package control), within the capabilities; before, PERF_CTL's ratio (the base at reset).
A real CPU turbos less with more cores active and with its temperature; the machine has no
thermal model yet and Intel does not publish the per-active-core turbo bins of these
Apple-only SKUs, so every CPU runs at its request. APERF and MPERF then say that clock:
MPERF counts the guest time a CPU spent out of HLT at the TSC's rate, APERF the same time at
the CPU's clock, so APERF/MPERF × base is the frequency it ran at. Two reads one after the
other (APERF then MPERF, as Linux's tick and turbostat read them, with no interrupt, HLT or
counter write between) are one sample, however long the vCPU or the whole emulator was
stopped between them (read() says why).

Saved state: the registers software writes and the counters' values.
"""

from __future__ import annotations

import ctypes

from imacpro.devices.contract import StateError

IA32_MPERF, IA32_APERF = 0xE7, 0xE8
IA32_PERF_STATUS, IA32_PERF_CTL = 0x198, 0x199
MSR_MISC_PWR_MGMT = 0x1AA
IA32_PM_ENABLE, IA32_HWP_CAPABILITIES, IA32_HWP_REQUEST_PKG = 0x770, 0x771, 0x772
IA32_HWP_INTERRUPT, IA32_HWP_REQUEST, IA32_HWP_STATUS = 0x773, 0x774, 0x777
LOWEST_RATIO = 12
EPP_DEFAULT = 0x80
PACKAGE_CONTROL = 1 << 42
REQUEST_BITS = (1 << 43) - 1
MSRS = frozenset({IA32_MPERF, IA32_APERF, IA32_PERF_STATUS, IA32_PERF_CTL, MSR_MISC_PWR_MGMT,
                  IA32_PM_ENABLE, IA32_HWP_CAPABILITIES, IA32_HWP_REQUEST_PKG,
                  IA32_HWP_INTERRUPT, IA32_HWP_REQUEST, IA32_HWP_STATUS})
HANDLED, GP_FAULT = 1, -1
U64 = (1 << 64) - 1
SAVED = ("pm_enable", "perf_ctl", "hwp_request", "hwp_interrupt", "mperf", "aperf")


class PackageHwp:
    """What the package's CPUs share: HWP_REQUEST_PKG."""

    def __init__(self):
        self.members: list[PerformanceState] = []    # the package's CPUs
        self.reset()

    def reset(self) -> None:
        self.request = 0
        self.changed()

    def changed(self) -> None:
        """The request changed: the clock of the CPUs under package control with it."""
        for member in self.members:
            member.clock_changed()

    def save(self) -> dict:
        return {"request": self.request}

    def load(self, state) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("request"), int) \
                or not 0 <= state["request"] <= REQUEST_BITS:
            raise StateError("PackageHwp: not a package HWP request")
        self.request = state["request"]
        self.changed()


class C0Time(ctypes.Structure):
    """native/apic_core.h's struct c0_time: when the CPU has been in C0 since (guest ns; -1
    halted), the C0 time of stretches HLT ended not yet counted, how many HLTs and wake-ups
    there were (the multi-threaded run loop's C marks them too, run_loop_core.py), the
    counters, the clock they count at and the open pair of reads (`read()`). RDMSR of APERF
    and MPERF is served in C from here (native/freq_counters.c); Python's reads and
    accounts call the same C."""
    _fields_ = [("in_c0_since", ctypes.c_int64), ("c0_ns", ctypes.c_int64),
                ("transitions", ctypes.c_uint64), ("mperf", ctypes.c_uint64),
                ("aperf", ctypes.c_uint64), ("tsc_hz", ctypes.c_int64),
                ("ratio", ctypes.c_int32), ("base", ctypes.c_int32),
                ("pair_index", ctypes.c_int32), ("pair_pad", ctypes.c_int32),
                ("pair_interrupts", ctypes.c_uint64), ("pair_transitions", ctypes.c_uint64),
                ("pair_mperf", ctypes.c_uint64), ("pair_aperf", ctypes.c_uint64)]


def _bind():
    from imacpro.devices.apic_core import _lib
    _lib.c0_account.restype = None
    _lib.c0_account.argtypes = [ctypes.POINTER(C0Time), ctypes.c_int64, ctypes.c_uint64]
    _lib.c0_aperf_now.restype = ctypes.c_uint64
    _lib.c0_aperf_now.argtypes = [ctypes.POINTER(C0Time), ctypes.c_int64]
    _lib.c0_read_counter.restype = ctypes.c_uint64
    _lib.c0_read_counter.argtypes = [ctypes.POINTER(C0Time), ctypes.c_int64, ctypes.c_uint64,
                                     ctypes.c_uint32]
    return _lib


_lib = _bind()


class PerformanceState:
    """One logical CPU's P-state MSRs and frequency counters. `now_ns()`: the machine's
    guest time; `interrupts_taken()`: a count of the interrupts the CPU has taken."""

    def __init__(self, base_ratio: int, turbo_ratio: int, tsc_hz: int, now_ns,
                 package: PackageHwp | None = None, interrupts_taken=lambda: 0):
        self.base, self.highest = base_ratio, turbo_ratio
        self.tsc_hz = tsc_hz
        self.now_ns = now_ns
        self.interrupts_taken = interrupts_taken
        self.package = package if package is not None else PackageHwp()
        self.capabilities = (turbo_ratio | base_ratio << 8 | LOWEST_RATIO << 16
                             | LOWEST_RATIO << 24)
        self.c0 = C0Time(in_c0_since=-1, tsc_hz=tsc_hz, base=base_ratio, ratio=base_ratio)
        self.package.members.append(self)
        self.reset()

    mperf = property(lambda self: self.c0.mperf,
                     lambda self, value: setattr(self.c0, "mperf", value))
    aperf = property(lambda self: self.c0.aperf,
                     lambda self, value: setattr(self.c0, "aperf", value))

    def clock_changed(self) -> None:
        """The registers that set the CPU's clock changed (counted up to now before)."""
        self.c0.ratio = self.ratio()

    @property
    def _in_c0_since(self) -> int | None:
        since = self.c0.in_c0_since
        return None if since < 0 else since

    @_in_c0_since.setter
    def _in_c0_since(self, since: int | None) -> None:
        self.c0.in_c0_since = -1 if since is None else since

    @property
    def _c0_ns(self) -> int:
        return self.c0.c0_ns

    @_c0_ns.setter
    def _c0_ns(self, ns: int) -> None:
        self.c0.c0_ns = ns

    def reset(self) -> None:
        self.pm_enable = 0
        self.perf_ctl = self.base << 8
        self.hwp_request = (LOWEST_RATIO | self.highest << 8 | EPP_DEFAULT << 24)
        self.hwp_interrupt = 0
        self.mperf = self.aperf = 0
        self._in_c0_since: int | None = self.now_ns()
        self._c0_ns = 0     # C0 time of the stretches ended by HLT, not yet counted
        self.c0.pair_index = 0            # no pair of reads open (see read())
        self.clock_changed()

    # --- the clock the CPU runs at -----------------------------------------------------------

    def ratio(self) -> int:
        if not self.pm_enable:
            wanted = (self.perf_ctl >> 8) & 0xFF
        else:
            request = self.package.request if self.hwp_request & PACKAGE_CONTROL \
                else self.hwp_request
            wanted = (request >> 8) & 0xFF
        return max(LOWEST_RATIO, min(self.highest, wanted))

    def _account(self) -> None:
        """Add the C0 time since the last account to the counters, at the clock's ratio
        (native/freq_counters.c: the CPU's own RDMSR counts the same way)."""
        _lib.c0_account(self.c0, self.now_ns(), 0)

    def work_s(self) -> float:
        """The work done so far: seconds in C0 at the base clock's worth (APERF over the
        TSC's rate), for the thermal model (devices/thermal.py). Only reads the counters:
        it is asked from any thread, while the CPU's own RDMSR may be counting."""
        return _lib.c0_aperf_now(self.c0, self.now_ns()) / self.tsc_hz

    def halted(self, halted: bool) -> None:
        """The CPU entered (True) or left HLT: its counters stop or go on."""
        self.c0.pair_index = 0
        self.c0.transitions += 1
        if halted:
            # Counted at the next read or ratio change (every MSR write counts first): each
            # HLT of an idle CPU is on the path of every interrupt it takes.
            if self._in_c0_since is not None:
                self._c0_ns += max(0, self.now_ns() - self._in_c0_since)
                self._in_c0_since = None
        elif self._in_c0_since is None:
            self._in_c0_since = self.now_ns()

    # --- the MSRs --------------------------------------------------------------------------

    def read(self, index: int) -> int:
        if index in (IA32_MPERF, IA32_APERF):
            # A CPU that reads them is in C0, whatever the bookkeeping says, and the counters
            # move between two reads (RDMSR takes cycles): Linux's frequency-invariance tick
            # takes a zero MPERF delta for a broken counter, logs "Scheduler frequency
            # invariance went wobbly" and patches kernel text on every CPU to turn it off.
            # Read as a pair (APERF then MPERF, one after the other), they are one sample:
            # guest time goes on while a vCPU waits for a host core, and while the whole
            # emulator is stopped (SIGSTOP, a host suspend). A tick that came right after an
            # idle stretch and was held between its two reads would find MPERF moved by that
            # wait and APERF not: APERF/MPERF near zero, freq_scale 0, "went wobbly". So the
            # second read of a pair gives that counter's value at the first, however much
            # guest time passed. The tick reads them with interrupts off: an interrupt taken
            # between two reads (or an HLT, or a write) means they are not one sample, as a
            # lone MPERF read and a later tick's APERF are not.
            # The CPU's own RDMSR is served in C (native/freq_counters.c): this is the same.
            return _lib.c0_read_counter(self.c0, self.now_ns(), self.interrupts_taken(), index)
        return {IA32_PERF_STATUS: self.ratio() << 8, IA32_PERF_CTL: self.perf_ctl,
                MSR_MISC_PWR_MGMT: 0, IA32_PM_ENABLE: self.pm_enable,
                IA32_HWP_CAPABILITIES: self.capabilities,
                IA32_HWP_REQUEST_PKG: self.package.request,
                IA32_HWP_INTERRUPT: self.hwp_interrupt, IA32_HWP_REQUEST: self.hwp_request,
                IA32_HWP_STATUS: 0}[index]

    def write(self, index: int, value: int) -> int:
        value &= U64
        if index in (IA32_PERF_STATUS, IA32_HWP_CAPABILITIES):
            return GP_FAULT                                   # read-only
        self._account()                                       # the old clock up to now
        self.c0.pair_index = 0
        if index == IA32_MPERF:
            self.mperf = value
        elif index == IA32_APERF:
            self.aperf = value
        elif index == IA32_PERF_CTL:
            self.perf_ctl = value & 0xFFFF
        elif index == IA32_PM_ENABLE:
            if value & ~1:
                return GP_FAULT
            self.pm_enable |= value                           # sticky until reset
        elif index in (IA32_HWP_REQUEST, IA32_HWP_REQUEST_PKG):
            if value & ~REQUEST_BITS or (index == IA32_HWP_REQUEST_PKG
                                         and value & PACKAGE_CONTROL):
                return GP_FAULT
            if index == IA32_HWP_REQUEST:
                self.hwp_request = value
            else:
                self.package.request = value
                self.package.changed()
        elif index == IA32_HWP_INTERRUPT:
            if value & ~0x7:
                return GP_FAULT
            self.hwp_interrupt = value
        elif index == IA32_HWP_STATUS:
            if value:
                return GP_FAULT                               # status bits: write 0 to clear
        self.clock_changed()
        return HANDLED                                        # MISC_PWR_MGMT: ignored

    def save(self) -> dict:
        self._account()
        return {name: getattr(self, name) for name in SAVED} | {
            "halted": self._in_c0_since is None}

    def load(self, state) -> None:
        self.check(state)
        for name in SAVED:
            setattr(self, name, state[name])
        self._in_c0_since = None if state["halted"] else self.now_ns()
        self._c0_ns = 0
        self.c0.pair_index = 0
        self.clock_changed()

    @staticmethod
    def check(state) -> None:
        if not isinstance(state, dict) or set(state) != set(SAVED) | {"halted"} \
                or not isinstance(state["halted"], bool) \
                or not all(isinstance(state[n], int) and not isinstance(state[n], bool)
                           and 0 <= state[n] <= U64 for n in SAVED) \
                or state["pm_enable"] > 1 or state["hwp_request"] > REQUEST_BITS \
                or state["hwp_interrupt"] > 7 or state["perf_ctl"] > 0xFFFF:
            raise StateError("PerformanceState: not a CPU's P-state registers")
