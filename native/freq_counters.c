/*
 * The APERF and MPERF frequency counters (imacpro/cpu/hwp.py keeps the rest of a CPU's
 * P-state MSRs, and says what the counters mean), and the engine's RDMSR/WRMSR callback
 * that serves their reads before it hands every other MSR to Python.
 *
 * Why C: Linux's scheduler tick reads both on every tick of a busy CPU (frequency
 * invariance), two exits to Python each time, for the GIL and the machine's lock: with 16
 * vCPUs reading the SSD at random, one read in six of the CPUs' sampled time sat in a
 * counter read. Python's reads call the same functions, so there is one implementation.
 *
 * Threads: a CPU's counters are read here on its own thread, and written by Python on that
 * thread too (its own MSR writes) or while it does not run (reset, load). The run loop's
 * HLT and wake-up marks come between its slices. `ratio` Python may change from another
 * CPU's thread (a package request): it only says the clock of the time not yet counted.
 */
#include "apic_core.h"

enum { IA32_MPERF = 0xE7, IA32_APERF = 0xE8, IA32_TSC_DEADLINE = 0x6E0 };

/* The C0 time not counted yet, as TSC ticks. */
static uint64_t uncounted_ticks(const struct c0_time *c0, int64_t now)
{
    int64_t ns = c0->c0_ns, since = c0->in_c0_since;
    if (since >= 0 && now > since) {
        ns += now - since;
    }
    return (uint64_t)((unsigned __int128)ns * (uint64_t)c0->tsc_hz / 1000000000u);
}

/* TSC ticks of C0 as APERF counts them: at the clock's ratio to the base clock. */
static uint64_t at_ratio(const struct c0_time *c0, uint64_t ticks)
{
    return (uint64_t)((unsigned __int128)ticks * (uint32_t)c0->ratio / (uint32_t)c0->base);
}

/* Add the C0 time since the last account to the counters at today's ratio (at least
 * `at_least` TSC ticks of it, when in C0). */
void c0_account(struct c0_time *c0, int64_t now, uint64_t at_least)
{
    if (c0->in_c0_since < 0 && c0->c0_ns == 0) {
        return;
    }
    uint64_t ticks = uncounted_ticks(c0, now);
    c0->c0_ns = 0;
    if (c0->in_c0_since >= 0) {
        c0->in_c0_since = now;
    }
    uint64_t scaled = at_ratio(c0, ticks);
    c0->mperf += ticks > at_least ? ticks : at_least;
    c0->aperf += scaled > at_least ? scaled : at_least;
}

/* APERF as it would read now, without counting (the thermal model's work, from any thread
 * while the CPU's own RDMSR may be counting: a look, not an account). */
uint64_t c0_aperf_now(const struct c0_time *c0, int64_t now)
{
    return c0->aperf + at_ratio(c0, uncounted_ticks(c0, now));
}

/* RDMSR of MPERF or APERF (hwp.py's PerformanceState.read says why reads pair up). */
uint64_t c0_read_counter(struct c0_time *c0, int64_t now, uint64_t interrupts,
                         uint32_t index)
{
    int32_t first = c0->pair_index;
    c0->pair_index = 0;
    if (first != 0 && (uint32_t)first != index && c0->pair_interrupts == interrupts &&
        c0->pair_transitions == c0->transitions) {
        return index == IA32_MPERF ? c0->pair_mperf : c0->pair_aperf;
    }
    if (c0->in_c0_since < 0) {
        c0->in_c0_since = now;               /* a CPU that reads them is in C0 */
    }
    c0_account(c0, now, 1);
    c0->pair_index = (int32_t)index;
    c0->pair_interrupts = interrupts;
    c0->pair_transitions = c0->transitions;
    c0->pair_mperf = c0->mperf;
    c0->pair_aperf = c0->aperf;
    return index == IA32_MPERF ? c0->mperf : c0->aperf;
}

/* The engine's MSR callback, its opaque argument the CPU's APIC core: 1 handled, 0 the
 * engine's own, -1 #GP (cpu/engine.py). IA32_TSC_DEADLINE is tsc_deadline.c's while the
 * timer is in its mode. */
int apic_core_msr(void *opaque, int is_write, uint32_t index, uint64_t *value)
{
    struct apic_core *c = opaque;
    if (!is_write && (index == IA32_MPERF || index == IA32_APERF) && c->c0 != NULL &&
        c->c0->base > 0) {
        *value = c0_read_counter(c->c0, apic_clock_now(c->clock),
                                 __atomic_load_n(&c->interrupts, __ATOMIC_RELAXED), index);
        return 1;
    }
    if (index == IA32_TSC_DEADLINE && __atomic_load_n(&c->deadline_mode, __ATOMIC_SEQ_CST)) {
        return apic_core_tsc_deadline_msr(c, is_write, value);
    }
    return c->slow_msr != NULL ? c->slow_msr(opaque, is_write, index, value) : 0;
}
