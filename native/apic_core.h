/*
 * The local APIC's interrupt core and the machine clock as C reads them: shared by
 * apic_core.c and run_loop.c (imacpro/devices/apic_core.py and imacpro/clock.py mirror the
 * layouts).
 */
#ifndef IMACPRO_APIC_CORE_H
#define IMACPRO_APIC_CORE_H

#include <stdint.h>
#include <time.h>

struct apic_clock {              /* the machine clock (imacpro/clock.py) as C reads it */
    int64_t realtime;            /* 1: guest ns = CLOCK_MONOTONIC ns + offset_ns */
    int64_t offset_ns;
    int64_t virtual_ns;          /* 0 realtime: the virtual clock's now */
    int64_t generation;          /* moves when guest time's relation to the host's changes */
    int64_t next_timer_ns;       /* no timer is due before this (INT64_MAX: none armed) */
    uint64_t cuts;               /* slices a TSC deadline armed in them ended sooner */
};

/* A CPU's frequency counters and the clock they count (imacpro/cpu/hwp.py's C0Time): the
 * run loop marks its HLTs and wake-ups here, freq_counters.c serves RDMSR of APERF and
 * MPERF from it, and Python keeps `ratio` (the clock the CPU runs at) up to date. */
struct c0_time {
    int64_t in_c0_since;         /* guest ns it has been in C0 since; -1: halted */
    int64_t c0_ns;               /* C0 time of stretches HLT ended, not yet counted */
    uint64_t transitions;        /* HLTs and wake-ups: a pair of reads spans none */
    uint64_t mperf, aperf;
    int64_t tsc_hz;
    int32_t ratio, base;         /* the CPU's clock and the base clock, in 100 MHz */
    int32_t pair_index;          /* the MSR a pair's first read was; 0: no pair open */
    int32_t pair_pad;
    uint64_t pair_interrupts, pair_transitions;   /* what the pair's first read saw */
    uint64_t pair_mperf, pair_aperf;
};

typedef void (*set_irq_fn)(void *uc, int level);
typedef int (*slow_msr_fn)(void *core, int is_write, uint32_t index, uint64_t *value);
typedef int (*slow_intack_fn)(void *core);
typedef uint64_t (*slow_read_fn)(void *uc, uint64_t offset, unsigned size, void *core);
typedef void (*slow_write_fn)(void *uc, uint64_t offset, unsigned size, uint64_t value,
                              void *core);
typedef void (*slow_eoi_fn)(int vector);
typedef void (*wake_fn)(void *context, int cpu_index);
typedef void (*cut_slice_fn)(void *uc, uint64_t timeout_ns);

struct apic_core;

struct apic_bus {                /* the machine's local APICs, for IPIs sent here */
    struct apic_core *by_id[256];  /* physical destination -> core; NULL none */
    struct apic_core *all[256];    /* every core, by CPU index */
    int32_t count;
    int32_t ids_unique;          /* 0: two APICs share an ID: physical IPIs go to Python */
    wake_fn wake;                /* a halted CPU has an interrupt: run it (NULL: none) */
    void *wake_context;          /* `wake`'s first argument (the run loop) */
    int64_t next_deadline_ns;    /* no TSC deadline falls due before this (INT64_MAX: none) */
};

struct apic_core {
    uint32_t irr[8], isr[8], tmr[8];   /* vector n: word n / 32, bit n % 32 */
    uint32_t eoi_notify[8];  /* edge vectors whose EOI Python must see (I/O APIC, LINT) */
    uint32_t tpr;            /* 7:0 */
    uint32_t id_reg;         /* the ID register as read: APIC ID in 31:24 */
    uint32_t icr_high;       /* destination in 31:24 */
    uint32_t icr_low;        /* as written, the writable bits */
    int32_t hw_enabled;      /* IA32_APIC_BASE.EN: the page answers */
    int32_t sw_enabled;      /* and SVR.8: vectors are accepted and delivered */
    int32_t extint;          /* an ExtINT is pending: INTA asks Python (the PIC) */
    int32_t timer_vector;    /* LVT timer's vector, for the tick statistics; -1 none */
    int32_t pin;             /* the INTR level this core last drove */
    int32_t halted;          /* the CPU waits in HLT (Python sets it) */
    int32_t index;           /* the CPU's index, for `wake` */
    /* statistics (guest ns) for the watchdog and the soak */
    uint64_t interrupts;
    int64_t last_interrupt_ns;
    int64_t last_tick_ns;    /* -1: none since the CPU last halted */
    int64_t max_busy_tick_gap_ns;
    int64_t max_latency_ns;
    int64_t pending_since[256];   /* when each vector in IRR got there */
    /* wiring */
    struct apic_clock *clock;
    struct apic_bus *bus;    /* NULL: IPIs go to Python */
    void *uc;                /* NULL: no CPU attached (the pin is not driven) */
    set_irq_fn set_irq;
    slow_intack_fn slow_intack;
    slow_read_fn slow_read;
    slow_write_fn slow_write;
    slow_eoi_fn slow_eoi;
    slow_msr_fn slow_msr;    /* RDMSR/WRMSR freq_counters.c does not serve */
    struct c0_time *c0;      /* NULL: every MSR goes to slow_msr */
    /* the LVT timer in TSC-deadline mode (tsc_deadline.c; lapic.py keeps the LVT) */
    int32_t deadline_mode;   /* 1: IA32_TSC_DEADLINE is served here (the APIC enabled) */
    int32_t deadline_vector; /* what firing delivers: the LVT timer's vector; -1 masked */
    int32_t error_vector;    /* the LVT error's vector, for an illegal timer vector; -1 */
    int32_t deadline_lock;   /* orders an arm and a fire on two threads */
    uint32_t esr_pending;    /* ESR bits firing set, for Python's ESR (atomic) */
    int32_t deadline_pad;
    uint64_t tsc_deadline;   /* as the guest wrote it; 0: disarmed */
    int64_t deadline_ns;     /* guest ns it falls due; INT64_MAX: disarmed */
    int64_t tsc_hz;
    int64_t tsc_offset;      /* IA32_TSC_ADJUST: this CPU's TSC minus the clock's count */
    cut_slice_fn cut_slice;  /* the engine's uc_imacpro_cut_slice; NULL: none */
};

int64_t apic_clock_now(const struct apic_clock *k);
int apic_core_deliverable(const struct apic_core *c);
int apic_core_halt(struct apic_core *c, int halted);
void apic_core_send(struct apic_core *target, int vector);
int apic_bus_fire_deadlines(struct apic_bus *bus, int64_t now);
int apic_core_tsc_deadline_msr(struct apic_core *c, int is_write, uint64_t *value);
void c0_account(struct c0_time *c0, int64_t now, uint64_t at_least);
uint64_t c0_aperf_now(const struct c0_time *c0, int64_t now);
uint64_t c0_read_counter(struct c0_time *c0, int64_t now, uint64_t interrupts,
                         uint32_t index);

#endif
