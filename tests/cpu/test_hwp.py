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



def test_the_work_done_counts_as_aperf_does_and_changes_no_counter():
    """The thermal model's work (`work_s`): C0 time at the clock it ran at, in base-clock
    seconds, the time not yet counted included at the ratio the counters use; a look from
    another thread, so neither counter nor the uncounted time moves."""
    state, time = cpu()
    state.write(hwp.IA32_PM_ENABLE, 1)                       # the request's 42: 4.2 GHz
    time.ns = 1_000_000_000
    counters = (state.mperf, state.aperf, state.c0.c0_ns, state.c0.in_c0_since)
    assert state.work_s() == pytest.approx(42 / 32, abs=1e-9)
    assert (state.mperf, state.aperf, state.c0.c0_ns, state.c0.in_c0_since) == counters
    state.write(hwp.IA32_HWP_REQUEST, 12 | 20 << 8)          # counted, then 2.0 GHz
    state.halted(True)
    time.ns = 3_000_000_000                                  # HLT does no work
    state.halted(False)
    time.ns = 3_500_000_000
    assert state.work_s() == pytest.approx(42 / 32 + 0.5 * 20 / 32, abs=1e-9)
    assert state.read(hwp.IA32_APERF) / TSC_HZ == pytest.approx(state.work_s(), abs=1e-8)

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


class Tick:
    """Linux's arch_scale_freq_tick() on one CPU: reads APERF then MPERF and keeps them, the
    deltas since its last tick are the sample."""

    def __init__(self, state):
        self.state = state
        self.aperf, self.mperf = state.read(hwp.IA32_APERF), state.read(hwp.IA32_MPERF)

    def after_idle(self, time, held_ns: int) -> tuple[int, int]:
        """A tick right after an idle stretch, held `held_ns` of guest time between its two
        reads: (acnt, mcnt)."""
        self.state.halted(True)
        time.ns += 500_000_000                # idle
        self.state.halted(False)
        time.ns += 10_000                     # 10 µs of C0: the wake-up, the tick's entry
        aperf = self.state.read(hwp.IA32_APERF)
        time.ns += held_ns
        mperf = self.state.read(hwp.IA32_MPERF)
        sample = aperf - self.aperf, mperf - self.mperf
        self.aperf, self.mperf = aperf, mperf
        return sample


def test_a_cpu_descheduled_between_its_two_reads_still_reads_one_sample():
    """The tick reads APERF, then MPERF. Right after an idle stretch (little C0 time since
    the last tick), a vCPU descheduled for 30 ms between the two reads found MPERF moved by
    those 30 ms and APERF not: APERF/MPERF near zero, freq_scale 0, "went wobbly" in a CI
    boot. The pair is one sample now."""
    state, time = cpu()
    tick = Tick(state)
    assert freq_scale(*tick.after_idle(time, 30_000_000)) > 0
    # The wait is counted, in the next sample.
    assert tick.after_idle(time, 0)[1] >= 30_000_000 * TSC_HZ // 10**9


@pytest.mark.parametrize("held_s", [2, 30, 3600])
def test_a_machine_stopped_between_the_two_reads_still_reads_one_sample(held_s):
    """The soak's cycle 71 (SIGSTOP of the emulator for seconds, host under load, 36 vCPUs)
    logged "went wobbly": the emulator was stopped, or a vCPU waited that long for a host
    core, between a tick's two reads; guest time follows the host's, so MPERF had moved by
    the stop and APERF not."""
    state, time = cpu()
    tick = Tick(state)
    assert freq_scale(*tick.after_idle(time, held_s * 1_000_000_000)) > 0
    aperf, mperf = tick.after_idle(time, 0)
    assert freq_scale(aperf, mperf) > 0
    assert mperf >= held_s * TSC_HZ           # the stop is counted, in the next sample


def test_an_interrupt_between_two_reads_makes_them_two_samples():
    """A lone MPERF read (a tool's), then an interrupt (the tick): the tick's APERF is read
    now, not paired with that MPERF."""
    taken = [0]
    time = FakeTime()
    state = hwp.PerformanceState(32, 42, TSC_HZ, time, interrupts_taken=lambda: taken[0])
    mperf = state.read(hwp.IA32_MPERF)
    time.ns += 1_000_000_000
    taken[0] += 1
    aperf = state.read(hwp.IA32_APERF)
    assert aperf >= TSC_HZ and state.read(hwp.IA32_MPERF) >= mperf + TSC_HZ
    # Without an interrupt between, the same two reads are one sample.
    mperf = state.read(hwp.IA32_MPERF)
    time.ns += 1_000_000_000
    assert state.read(hwp.IA32_APERF) == aperf + 1


def test_a_vcpus_pairs_end_at_the_interrupts_its_apic_delivers():
    """The machine's vCPU counts the interrupts its APIC core delivers (apic_core_count) and
    its counters pair across a stop of its clock, not across an interrupt."""
    m = Machine(configure(cpu=8, memory=32), clock=Clock(), cpus=1)
    vcpu = m.vcpus[0]

    def read(index):
        status, value = vcpu.msrs.access(False, index, 0)
        assert status == hwp.HANDLED
        return value

    aperf = read(hwp.IA32_APERF)
    m.clock.advance(5_000_000_000)            # the emulator stopped for five seconds
    mperf = read(hwp.IA32_MPERF)
    assert mperf < 5 * TSC_HZ // 2            # the value at APERF's read
    read(hwp.IA32_MPERF)
    m.clock.advance(1_000_000_000)
    vcpu.core.count(0x20)                     # an interrupt taken
    assert read(hwp.IA32_APERF) > aperf + 5 * vcpu.tsc_hz


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


COUNTER_READS = r"""
main:
    xor %r12, %r12                  # the reads in which MPERF did not move
    xor %r13, %r13                  # nor APERF
    mov $0xe8, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r14                  # the last APERF
    mov $0xe7, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r15                  # the last MPERF
    mov $READS, %ebx
1:  mov $0xe8, %ecx                 # each read alone: the pair of the last reads is done
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    cmp %r14, %rax
    ja 2f
    inc %r13
2:  mov %rax, %r14
    mov $0xe7, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    cmp %r15, %rax
    ja 3f
    inc %r12
3:  mov %rax, %r15
    dec %ebx
    jnz 1b
    PRINT aperf_still, %r13
    PRINT mperf_still, %r12
    PRINT mperf, %r15
    jmp finish
"""


def test_the_guests_reads_of_the_counters_are_served_in_c(monkeypatch):
    """Linux's tick reads APERF and MPERF on every busy CPU: the engine's MSR callback serves
    them in C (native/freq_counters.c) and never asks Python. Two reads in a row are a pair
    (the second gives its counter's value at the first), so a pair's MPERF does not move;
    from one pair to the next both do."""
    from baremetal import run_program
    from imacpro.cpu.vcpu import Vcpu
    asked = []
    on_msr = Vcpu._on_msr
    monkeypatch.setattr(Vcpu, "_on_msr", lambda self, is_write, index, value: (
        asked.append(index), on_msr(self, is_write, index, value))[1])
    reads = 1000
    values, output, machine, result = run_program(COUNTER_READS.replace("READS", str(reads)))
    assert "DONE" in output, (result, output[-500:])
    assert hwp.IA32_APERF not in asked and hwp.IA32_MPERF not in asked
    # APERF opens a pair and moves; MPERF closes it with its value at APERF's read, which
    # moved from the last pair's.
    assert int(values["aperf_still"], 16) == 0 and int(values["mperf_still"], 16) == 0
    assert int(values["mperf"], 16) >= reads
