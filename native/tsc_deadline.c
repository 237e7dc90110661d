/*
 * The local APIC timer's TSC-deadline mode (SDM 10.5.4.1): IA32_TSC_DEADLINE's writes arm
 * it, its reads say what is armed, and the deadlines fall due here, in C.
 *
 * Why C: Linux on a Xeon W runs every CPU's tick and every hrtimer on this timer, and
 * re-arms it on most entries to idle and exits from it. With 16 vCPUs reading the SSD at
 * random, counted (2026-12-05): 26,010 WRMSRs of the deadline per 20,000 reads, each an
 * exit to Python for its GIL and the machine's lock, and each firing another trip through
 * the main thread's timers.
 *
 * lapic.py keeps the LVT and tells the core what it needs: whether the MSR is served here
 * (`deadline_mode`: the APIC hardware-enabled with its timer in TSC-deadline mode), what
 * firing delivers (`deadline_vector`, -1 while the LVT is masked; a vector under 16 sets
 * ESR's "received illegal vector" in `esr_pending`, as lapic.py's accept does, and raises
 * the LVT error's `error_vector`), and this CPU's TSC rate and IA32_TSC_ADJUST.
 *
 * An arm computes the guest ns the TSC reaches the deadline (the first ns at or after it),
 * lowers the bus's `next_deadline_ns` and, in real time, ends the running slice by then (the
 * engine's `cut_slice`: it is the CPU's own thread, and a slice that ends sooner is left
 * alone), so the run loop fires it after that slice. A deadline already past fires at once, as a read
 * of the MSR does that finds it past (the guest then sees its interrupt pending).
 *
 * Firing (apic_bus_fire_deadlines): the multi-threaded run loop after each slice and before
 * it sleeps (run_loop.c: every slice and every sleep of its workers ends by the bus's next
 * deadline), Python's Clock.run_due on either loop. A CPU's spin lock orders an arm and a
 * fire on two threads; the bus's next deadline is lowered with atomic operations, and a
 * fire sets it to "none" before it looks at the cores, so an arm it races with is seen.
 */
#include "apic_core.h"

#define NONE INT64_MAX

enum { IA32_TSC_DEADLINE = 0x6E0, RECEIVE_ILLEGAL_VECTOR = 1 << 6 };

static void lock(int32_t *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        __builtin_ia32_pause();
    }
}

static void unlock(int32_t *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* No deadline on the bus falls due before `ns` any more. */
static void lower_next(struct apic_bus *bus, int64_t ns)
{
    int64_t next = __atomic_load_n(&bus->next_deadline_ns, __ATOMIC_SEQ_CST);
    while (ns < next && !__atomic_compare_exchange_n(&bus->next_deadline_ns, &next, ns, 0,
                                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
}

/* The first guest ns at which this CPU's TSC reads `tsc` or more. */
static int64_t tsc_to_ns(const struct apic_core *c, uint64_t tsc)
{
    __int128 hz = c->tsc_hz > 0 ? c->tsc_hz : 1;
    __int128 scaled = ((__int128)tsc - c->tsc_offset) * 1000000000;
    __int128 ns = scaled >= 0 ? (scaled + hz - 1) / hz : -(-scaled / hz);
    return ns >= NONE ? NONE - 1 : (int64_t)ns;    /* armed, if never reached */
}

/* The timer's interrupt, as lapic.py's `_local_deliver` of the LVT timer. */
static void deliver(struct apic_core *c, int vector)
{
    if (vector < 0 || !c->hw_enabled || !c->sw_enabled) {
        return;                                /* masked: it expires silently */
    }
    if (vector < 16) {
        __atomic_fetch_or(&c->esr_pending, RECEIVE_ILLEGAL_VECTOR, __ATOMIC_SEQ_CST);
        if (c->error_vector >= 16) {
            apic_core_send(c, c->error_vector);
        }
        return;
    }
    apic_core_send(c, vector);
}

/* Fire `c`'s deadline if it is due by `now`: 1 if it fired. */
static int fire_if_due(struct apic_core *c, int64_t now)
{
    if (__atomic_load_n(&c->deadline_ns, __ATOMIC_SEQ_CST) > now) {
        return 0;
    }
    lock(&c->deadline_lock);
    int fired = c->deadline_ns <= now;
    int vector = c->deadline_vector;
    if (fired) {
        __atomic_store_n(&c->deadline_ns, NONE, __ATOMIC_SEQ_CST);
        __atomic_store_n(&c->tsc_deadline, 0, __ATOMIC_SEQ_CST);
    }
    unlock(&c->deadline_lock);
    if (fired) {
        deliver(c, vector);
    }
    return fired;
}

/* WRMSR: armed at `tsc` (0 disarms), at once if that has passed. */
static void arm(struct apic_core *c, uint64_t tsc)
{
    int64_t now = apic_clock_now(c->clock);
    int64_t ns = tsc ? tsc_to_ns(c, tsc) : NONE;
    lock(&c->deadline_lock);
    __atomic_store_n(&c->tsc_deadline, tsc, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->deadline_ns, ns, __ATOMIC_SEQ_CST);
    unlock(&c->deadline_lock);
    if (ns == NONE) {
        return;
    }
    if (ns <= now) {
        fire_if_due(c, now);
        return;
    }
    if (c->bus != NULL) {
        lower_next(c->bus, ns);
    }
    if (c->clock->realtime && c->cut_slice != NULL && c->uc != NULL) {
        c->cut_slice(c->uc, (uint64_t)(ns - now));
        __atomic_add_fetch(&c->clock->cuts, 1, __ATOMIC_SEQ_CST);
    }
}

/* IA32_TSC_DEADLINE read or written (the caller checked `deadline_mode`): 1, handled. */
int apic_core_tsc_deadline_msr(struct apic_core *c, int is_write, uint64_t *value)
{
    if (is_write) {
        arm(c, *value);
    } else {
        fire_if_due(c, apic_clock_now(c->clock));
        *value = __atomic_load_n(&c->tsc_deadline, __ATOMIC_SEQ_CST);
    }
    return 1;
}

/* Disarmed (a mode change, INIT, a load), or armed at a saved deadline: `tsc` as the guest
 * wrote it, `ns` when it falls due (NONE: disarmed). */
void apic_core_set_deadline(struct apic_core *c, uint64_t tsc, int64_t ns)
{
    lock(&c->deadline_lock);
    __atomic_store_n(&c->tsc_deadline, ns == NONE ? 0 : tsc, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->deadline_ns, ns, __ATOMIC_SEQ_CST);
    unlock(&c->deadline_lock);
    if (ns != NONE && c->bus != NULL) {
        lower_next(c->bus, ns);
    }
}

/* Every deadline on the bus due by `now` fires: how many did. */
int apic_bus_fire_deadlines(struct apic_bus *bus, int64_t now)
{
    if (now < __atomic_load_n(&bus->next_deadline_ns, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    __atomic_store_n(&bus->next_deadline_ns, NONE, __ATOMIC_SEQ_CST);
    int fired = 0;
    for (int i = 0; i < bus->count; i++) {
        struct apic_core *c = bus->all[i];
        fired += fire_if_due(c, now);
        int64_t left = __atomic_load_n(&c->deadline_ns, __ATOMIC_SEQ_CST);
        if (left != NONE) {
            lower_next(bus, left);
        }
    }
    return fired;
}

/* The earliest deadline armed on the bus (NONE: none), and how many are armed. */
int64_t apic_bus_next_deadline(struct apic_bus *bus, int32_t *armed)
{
    int64_t next = NONE;
    int32_t n = 0;
    for (int i = 0; i < bus->count; i++) {
        int64_t ns = __atomic_load_n(&bus->all[i]->deadline_ns, __ATOMIC_SEQ_CST);
        n += ns != NONE;
        next = ns < next ? ns : next;
    }
    *armed = n;
    return next;
}

/* The ESR bits firing set since the last call (lapic.py's ESR takes them). */
uint32_t apic_core_take_esr(struct apic_core *c)
{
    return __atomic_exchange_n(&c->esr_pending, 0, __ATOMIC_SEQ_CST);
}
