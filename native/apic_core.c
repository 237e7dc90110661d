/*
 * The local APIC's interrupt core: what every interrupt passes through, in C.
 *
 * imacpro/devices/lapic.py is the local APIC; this file holds the part of it that every
 * interrupt touches, so that taking one costs no Python: the vectors' state (IRR, ISR, TMR),
 * the task priority, the INTA cycle, the EOI, the INTR pin, and the page's reads of ID, TPR,
 * PPR, ISR, TMR and IRR. Measured before it (bench/interrupts.py, docs/PERFORMANCE.md): an
 * IPI's round trip between two CPUs sleeping in HLT spent 85% of its host time in Python.
 *
 * One `struct apic_core` per CPU, allocated by Python (imacpro/devices/apic_core.py mirrors
 * its layout). Python keeps everything else (LVTs, timers, the ICR's sending, SVR, LDR/DFR,
 * ESR, saved state) and tells the core what it needs: whether the APIC is enabled, whether
 * an ExtINT is pending (the PIC answers that INTA), which vectors' EOIs Python must see.
 *
 * Threads: the CPU's own thread runs INTA, EOI and TPR writes here without the machine's
 * lock; any thread may accept a vector (under the lock, from Python). IRR is changed with
 * atomic operations; ISR and TPR only by the CPU's own thread (or with the CPU stopped).
 * The pin is raised by whoever makes a vector deliverable; a thread that lowers it looks
 * again afterwards, so a raise between its look and its lowering is never lost.
 *
 * Page accesses served here (aligned 32-bit, APIC hardware-enabled): reads of ID (020),
 * TPR (080), PPR (0A0), ISR (100-170), TMR (180-1F0), IRR (200-270), ICR (300, 310);
 * writes of TPR (080), EOI (0B0), ICR high (310) and ICR low (300) when it sends a fixed IPI
 * of vector 16-255 to a physical APIC ID (not the broadcast) or by shorthand: the cores of
 * the machine's `struct apic_bus` accept it, and a CPU halted in HLT is woken through the
 * bus's `wake` (Python's run loop). Everything else goes to Python's `slow_read`/
 * `slow_write`: other delivery modes, logical destinations, broadcasts, an APIC ID that two
 * APICs share.
 *
 * A CPU that halts sets its core's `halted` and then looks at IRR; a sender sets IRR and then
 * looks at `halted`: one of the two sees the other's write, so no wake-up is lost.
 */
#include "apic_core.h"
#include "clock.h"

enum { ID = 0x20, TPR = 0x80, PPR = 0xA0, EOI = 0xB0, ISR = 0x100, TMR = 0x180, IRR = 0x200,
       ICR_LOW = 0x300, ICR_HIGH = 0x310 };
enum { ICR_WRITABLE = 0x000CCFFF, ICR_LOGICAL = 1 << 11,
       SHORTHAND_NONE = 0, SHORTHAND_SELF = 1, SHORTHAND_ALL = 2, SHORTHAND_OTHERS = 3 };
enum { MORE_PENDING = 0x100 };

int64_t apic_clock_now(const struct apic_clock *k)
{
    if (!k->realtime) {
        return __atomic_load_n(&k->virtual_ns, __ATOMIC_RELAXED);
    }
    return clock_ns(CLOCK_MONOTONIC) + __atomic_load_n(&k->offset_ns, __ATOMIC_RELAXED);
}

static int64_t guest_ns(const struct apic_core *c)
{
    return apic_clock_now(c->clock);
}

/* Highest set vector of a 256-bit register, or -1. */
static int top(const uint32_t *bits)
{
    for (int w = 7; w >= 0; w--) {
        uint32_t word = __atomic_load_n(&bits[w], __ATOMIC_SEQ_CST);
        if (word) {
            return w * 32 + 31 - __builtin_clz(word);
        }
    }
    return -1;
}

static int test_bit(const uint32_t *bits, int v)
{
    return __atomic_load_n(&bits[v >> 5], __ATOMIC_SEQ_CST) >> (v & 31) & 1;
}

/* PPR (SDM 10.8.3.1): TPR if its class is at least ISR's highest, else that class. */
uint32_t apic_core_ppr(const struct apic_core *c)
{
    int isrv = top(c->isr);
    uint32_t isr_class = isrv < 0 ? 0 : (uint32_t)isrv & 0xF0;
    return (c->tpr >> 4) >= (isr_class >> 4) ? c->tpr : isr_class;
}

/* The highest IRR vector whose class beats PPR's, or -1. */
int apic_core_deliverable(const struct apic_core *c)
{
    if (!c->sw_enabled) {
        return -1;
    }
    int v = top(c->irr);
    return v >= 0 && (uint32_t)(v >> 4) > (apic_core_ppr(c) >> 4) ? v : -1;
}

/* Drive INTR: up if a vector is deliverable, an ExtINT is pending or `extra` (Python's
 * PIC) asks; lowering looks again after, so a vector made deliverable meanwhile by another
 * thread (which raises the pin itself) is not lost. Returns the level. */
int apic_core_update_pin(struct apic_core *c, int extra)
{
    int level = extra || apic_core_deliverable(c) >= 0;
    if (c->set_irq == NULL) {
        c->pin = level;
        return level;
    }
    if (level) {
        __atomic_store_n(&c->pin, 1, __ATOMIC_SEQ_CST);
        c->set_irq(c->uc, 1);
        return 1;
    }
    __atomic_store_n(&c->pin, 0, __ATOMIC_SEQ_CST);
    c->set_irq(c->uc, 0);
    if (apic_core_deliverable(c) >= 0) {
        __atomic_store_n(&c->pin, 1, __ATOMIC_SEQ_CST);
        c->set_irq(c->uc, 1);
        return 1;
    }
    return 0;
}

/* A fixed vector arrives (16-255; Python checks the range and the enables): IRR, TMR for a
 * level-triggered one, its arrival time; the pin goes up if it is deliverable now. */
void apic_core_accept(struct apic_core *c, int vector, int level_triggered)
{
    uint32_t bit = 1u << (vector & 31);
    int w = (vector >> 5) & 7;
    if (level_triggered) {
        __atomic_fetch_or(&c->tmr[w], bit, __ATOMIC_SEQ_CST);
    } else {
        __atomic_fetch_and(&c->tmr[w], ~bit, __ATOMIC_SEQ_CST);
    }
    uint32_t was = __atomic_fetch_or(&c->irr[w], bit, __ATOMIC_SEQ_CST);
    if (!(was & bit)) {
        __atomic_store_n(&c->pending_since[vector & 0xFF], guest_ns(c), __ATOMIC_RELAXED);
    }
    if (c->set_irq != NULL && apic_core_deliverable(c) >= 0) {
        __atomic_store_n(&c->pin, 1, __ATOMIC_SEQ_CST);
        c->set_irq(c->uc, 1);
    }
}

/* A fixed, edge-triggered vector sent here (an IPI, an MSI, the TSC deadline's timer):
 * accepted by an enabled APIC; its CPU woken if halted. */
void apic_core_send(struct apic_core *target, int vector)
{
    if (target == NULL || !target->hw_enabled || !target->sw_enabled) {
        return;   /* as lapic.py: a disabled APIC drops a fixed message */
    }
    apic_core_accept(target, vector, 0);
    struct apic_bus *bus = target->bus;
    if (__atomic_load_n(&target->halted, __ATOMIC_SEQ_CST) && bus->wake != NULL) {
        bus->wake(bus->wake_context, target->index);
    }
}

/* ICR low written: a fixed IPI this file can send, sent (1), or 0 for Python to send. */
static int send_ipi(struct apic_core *c, uint32_t icr)
{
    struct apic_bus *bus = c->bus;
    int vector = icr & 0xFF, shorthand = (icr >> 18) & 3;
    if (bus == NULL || (icr >> 8 & 7) != 0 || vector < 16) {
        return 0;   /* not fixed, or an illegal vector (ESR): Python's */
    }
    if (shorthand == SHORTHAND_NONE) {
        int dest = c->icr_high >> 24;
        if (icr & ICR_LOGICAL || dest == 0xFF || !bus->ids_unique) {
            return 0;
        }
        apic_core_send(bus->by_id[dest], vector);
    } else if (shorthand == SHORTHAND_SELF) {
        apic_core_send(c, vector);
    } else {
        for (int i = 0; i < bus->count; i++) {
            if (shorthand == SHORTHAND_ALL || bus->all[i] != c) {
                apic_core_send(bus->all[i], vector);
            }
        }
    }
    return 1;
}

/* A fixed, edge-triggered message to the APIC of physical ID `dest` (a device's MSI): sent
 * (1), or 0 for Python to deliver (an illegal vector, a broadcast, IDs that are not unique,
 * no APIC of that ID). */
int apic_bus_send_fixed(struct apic_bus *bus, int dest, int vector)
{
    if (vector < 16 || vector > 255 || dest < 0 || dest >= 0xFF || !bus->ids_unique ||
        bus->by_id[dest] == NULL) {
        return 0;
    }
    apic_core_send(bus->by_id[dest], vector);
    return 1;
}

/* The CPU halts (1) or runs (0). Halting, it then looks at IRR: 1 if a vector is
 * deliverable already (a sender that saw it running did not wake it: the caller does). */
int apic_core_halt(struct apic_core *c, int halted)
{
    __atomic_store_n(&c->halted, halted, __ATOMIC_SEQ_CST);
    return halted && apic_core_deliverable(c) >= 0;
}

/* Statistics of an interrupt the CPU took (its vector from the APIC or the PIC). */
void apic_core_count(struct apic_core *c, int vector)
{
    int64_t now = guest_ns(c);
    c->interrupts++;
    c->last_interrupt_ns = now;
    if (vector == c->timer_vector) {
        if (c->last_tick_ns >= 0 && now - c->last_tick_ns > c->max_busy_tick_gap_ns) {
            c->max_busy_tick_gap_ns = now - c->last_tick_ns;
        }
        c->last_tick_ns = now;
    }
}

/* INTA from the APIC: the deliverable vector moves from IRR to ISR; -1 if none is. */
int apic_core_acknowledge(struct apic_core *c)
{
    int v = apic_core_deliverable(c);
    if (v < 0) {
        return -1;
    }
    /* Its arrival time is read before IRR lets go of it, and cleared only if no new arrival
     * (another thread's apic_core_accept, once the bit is clear) stored its own meanwhile:
     * clearing it whatever came left a pending vector without one, which the watchdog took
     * for a vector waiting since power-on ("held", three times in a soak of 66 cycles). */
    int64_t since = __atomic_load_n(&c->pending_since[v], __ATOMIC_SEQ_CST);
    __atomic_fetch_and(&c->irr[v >> 5], ~(1u << (v & 31)), __ATOMIC_SEQ_CST);
    __atomic_fetch_or(&c->isr[v >> 5], 1u << (v & 31), __ATOMIC_SEQ_CST);
    if (since) {
        int64_t waited = guest_ns(c) - since;
        if (waited > c->max_latency_ns) {
            c->max_latency_ns = waited;
        }
        __atomic_compare_exchange_n(&c->pending_since[v], &since, 0, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
    }
    return v;
}

/* The engine's INTA callback (its opaque is the core): the vector, with MORE_PENDING if
 * the pin stays up, or -1 if nothing is deliverable any more. An ExtINT goes to Python. */
int apic_core_intack(void *opaque)
{
    struct apic_core *c = opaque;
    if (__atomic_load_n(&c->extint, __ATOMIC_SEQ_CST)) {
        return c->slow_intack(c);
    }
    int v = apic_core_acknowledge(c);
    if (v < 0) {
        apic_core_update_pin(c, 0);
        return -1;
    }
    apic_core_count(c, v);
    return v | (apic_core_deliverable(c) >= 0 ? MORE_PENDING : 0);
}

/* EOI: the highest ISR bit is cleared; -1 if ISR was empty. Python's `slow_eoi` hears of
 * a level-triggered vector (TMR) or one in `eoi_notify`. */
int apic_core_eoi(struct apic_core *c)
{
    int v = top(c->isr);
    if (v < 0) {
        return -1;
    }
    __atomic_fetch_and(&c->isr[v >> 5], ~(1u << (v & 31)), __ATOMIC_SEQ_CST);
    return v;
}

static int served(const struct apic_core *c, uint64_t offset, unsigned size)
{
    return size == 4 && !(offset & 0xF) && offset < 0x1000 && c->hw_enabled;
}

uint64_t apic_core_mmio_read(void *uc, uint64_t offset, unsigned size, void *opaque)
{
    struct apic_core *c = opaque;
    if (served(c, offset, size)) {
        if (offset == ID) {
            return c->id_reg;
        }
        if (offset == TPR) {
            return c->tpr;
        }
        if (offset == PPR) {
            return apic_core_ppr(c);
        }
        if (offset == ICR_LOW) {
            return c->icr_low;
        }
        if (offset == ICR_HIGH) {
            return c->icr_high;
        }
        if (offset >= ISR && offset < IRR + 0x80) {
            const uint32_t *bits = offset < TMR ? c->isr : offset < IRR ? c->tmr : c->irr;
            return __atomic_load_n(&bits[(offset & 0x70) >> 4], __ATOMIC_SEQ_CST);
        }
    }
    return c->slow_read(uc, offset, size, opaque);
}

void apic_core_mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value,
                          void *opaque)
{
    struct apic_core *c = opaque;
    if (served(c, offset, size)) {
        if (offset == EOI) {
            int v = apic_core_eoi(c);
            if (v >= 0 && (test_bit(c->tmr, v) || test_bit(c->eoi_notify, v))) {
                c->slow_eoi(v);    /* Python re-drives the pin */
            } else if (v >= 0) {
                apic_core_update_pin(c, __atomic_load_n(&c->extint, __ATOMIC_SEQ_CST));
            }
            return;
        }
        if (offset == TPR) {
            c->tpr = (uint32_t)value & 0xFF;
            apic_core_update_pin(c, __atomic_load_n(&c->extint, __ATOMIC_SEQ_CST));
            return;
        }
        if (offset == ICR_HIGH) {
            c->icr_high = (uint32_t)value & 0xFF000000u;
            return;
        }
        if (offset == ICR_LOW) {
            uint32_t icr = (uint32_t)value & ICR_WRITABLE;
            if (send_ipi(c, icr)) {
                c->icr_low = icr;
                return;
            }
        }
    }
    c->slow_write(uc, offset, size, value, opaque);
}
