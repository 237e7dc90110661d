"""Turbo Boost as intel_pstate drives it: HWP capabilities with the SKU's ratios, enabling HWP,
requests per CPU and per package, and APERF/MPERF that count C0 time at the TSC's rate and at
the clock the CPU runs at."""

import pytest

from imacpro.catalog import configure
from imacpro.clock import Clock
from imacpro.cpu import cpuid, hwp
from imacpro.devices.contract import StateError
from imacpro.machine import Machine

TSC_HZ = 3_200_000_000


class FakeTime:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def cpu(package=None):
    time = FakeTime()
    return hwp.PerformanceState(32, 42, TSC_HZ, time, package), time


@pytest.mark.parametrize("sku, base, turbo", [(8, 32, 42), (10, 30, 45), (14, 25, 43),
                                               (18, 23, 43)])
def test_the_skus_ratios_in_cpuid_and_the_hwp_capabilities(sku, base, turbo):
    m = Machine(configure(cpu=sku, memory=32), clock=Clock(), cpus=1)
    msrs = m.vcpus[0].msrs
    assert msrs.access(False, 0x771, 0) == (1, turbo | base << 8 | 12 << 16 | 12 << 24)
    assert msrs.access(False, 0x1AA, 0) == (1, 0)          # P-states are the OS's
    eax, _, ecx, _ = cpuid.cpuid_table(m.processor, 0)[6, 0]
    assert eax & cpuid.LEAF6_TURBO and eax >> 7 & 0x1F == 0x1F and ecx & 1


def test_aperf_and_mperf_say_the_clock_the_request_gives_and_stop_in_hlt():
    state, time = cpu()
    assert state.read(hwp.IA32_PERF_STATUS) == 32 << 8     # before HWP: PERF_CTL's, the base
    assert state.write(hwp.IA32_PM_ENABLE, 1) == hwp.HANDLED
    request = state.read(hwp.IA32_HWP_REQUEST)
    assert request & 0xFF == 12 and (request >> 8) & 0xFF == 42 and request >> 24 == 0x80
    time.ns = 1_000_000_000                                  # a second at the turbo ratio
    # Each read moves the counters by at least one count (RDMSR takes cycles).
    assert abs(state.read(hwp.IA32_MPERF) - TSC_HZ) <= 2
    assert abs(state.read(hwp.IA32_APERF) - TSC_HZ * 42 // 32) <= 2
    state.write(hwp.IA32_HWP_REQUEST, 12 | 20 << 8)          # max 2.0 GHz from now
    state.halted(True)
    time.ns = 3_000_000_000                                  # two seconds in HLT: nothing
    state.halted(False)
    time.ns = 4_000_000_000                                  # one more at 2.0 GHz
    assert abs(state.read(hwp.IA32_MPERF) - 2 * TSC_HZ) <= 4
    assert abs(state.read(hwp.IA32_APERF) - (TSC_HZ * 42 // 32 + TSC_HZ * 20 // 32)) <= 4
    assert state.read(hwp.IA32_PERF_STATUS) == 20 << 8
    assert state.write(hwp.IA32_PM_ENABLE, 0) == hwp.HANDLED and state.pm_enable == 1


def test_the_counters_move_between_any_two_reads_of_a_running_cpu():
    """Linux's frequency-invariance tick turns itself off (patching kernel text on every CPU)
    on a zero MPERF delta: a CPU that reads them is running, so they always move."""
    state, time = cpu()
    state.write(hwp.IA32_PM_ENABLE, 1)
    state.write(hwp.IA32_HWP_REQUEST, 12 | 12 << 8)   # 1.2 GHz: APERF runs slower than MPERF
    state.halted(True)                  # the bookkeeping says halted, yet the CPU reads them
    counts = [(state.read(hwp.IA32_APERF), state.read(hwp.IA32_MPERF)) for _ in range(3)]
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in zip(counts, counts[1:]))


def freq_scale(acnt: int, mcnt: int, max_ratio: int = 42 * 1024 // 32) -> int:
    """Linux's scale_freq_tick(): 0 makes it log "went wobbly" and turn invariance off."""
    return (acnt << 20) // (mcnt * max_ratio)


def test_a_cpu_descheduled_between_its_two_reads_still_reads_one_sample():
    """The tick reads APERF, then MPERF. Right after an idle stretch (little C0 time since
    the last tick), a vCPU descheduled for 30 ms between the two reads found MPERF moved by
    those 30 ms and APERF not: APERF/MPERF near zero, freq_scale 0, "went wobbly" in a CI
    boot. The pair is one sample now."""
    state, time = cpu()
    previous = (state.read(hwp.IA32_APERF), state.read(hwp.IA32_MPERF))
    state.halted(True)
    time.ns += 500_000_000                    # idle
    state.halted(False)
    time.ns += 10_000                         # 10 µs of C0: the wake-up, the tick's entry
    aperf = state.read(hwp.IA32_APERF)
    time.ns += 30_000_000                     # the other vCPUs' turns
    mperf = state.read(hwp.IA32_MPERF)
    assert freq_scale(aperf - previous[0], mperf - previous[1]) > 0
    later = (state.read(hwp.IA32_APERF), state.read(hwp.IA32_MPERF))
    assert later[0] > aperf and later[1] > mperf + 30_000_000 * TSC_HZ // 10**9 // 2


def test_package_control_and_what_software_cannot_write():
    package = hwp.PackageHwp()
    state, _ = cpu(package)
    state.write(hwp.IA32_PM_ENABLE, 1)
    assert state.write(hwp.IA32_HWP_REQUEST_PKG, 12 | 25 << 8) == hwp.HANDLED
    state.write(hwp.IA32_HWP_REQUEST, 12 | 40 << 8 | hwp.PACKAGE_CONTROL)
    assert state.ratio() == 25
    state.write(hwp.IA32_HWP_REQUEST, 12 | 99 << 8)         # above the highest: clipped
    assert state.ratio() == 42
    for index, value in ((hwp.IA32_HWP_CAPABILITIES, 0), (hwp.IA32_PERF_STATUS, 0),
                         (hwp.IA32_HWP_STATUS, 1), (hwp.IA32_PM_ENABLE, 2),
                         (hwp.IA32_HWP_REQUEST, 1 << 50), (hwp.IA32_HWP_INTERRUPT, 8),
                         (hwp.IA32_HWP_REQUEST_PKG, hwp.PACKAGE_CONTROL)):
        assert state.write(index, value) == hwp.GP_FAULT, hex(index)


def test_saved_and_loaded_and_bad_states_refused():
    state, time = cpu()
    state.write(hwp.IA32_PM_ENABLE, 1)
    time.ns = 500_000_000
    saved = state.save()
    other, other_time = cpu()
    other_time.ns = 10**12
    other.load(saved)
    other_time.ns += 500_000_000
    assert other.read(hwp.IA32_MPERF) == TSC_HZ and other.pm_enable == 1
    for bad in ({**saved, "pm_enable": 2}, {**saved, "mperf": -1}, {**saved, "halted": 1},
                {k: v for k, v in saved.items() if k != "aperf"}, None):
        with pytest.raises(StateError):
            other.load(bad)
