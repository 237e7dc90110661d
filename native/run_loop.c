/*
 * The multi-threaded run loop's core: which vCPU a host thread runs next, its slice, and
 * the sleep and wake-up of threads with nothing to run, in C.
 *
 * imacpro/host_threads.py is the loop; this file holds what it does on every turn, so that
 * a turn costs no Python: the pick (the CPUs queued ahead first, then the round), the
 * engine's slice, what its status says (HLT, a spin on PAUSE, the CPUs that may look again
 * after a slice that did something), and a halted CPU's wake-up by an interrupt, which an
 * IPI sent by the local APIC's core (apic_core.c) delivers here without Python. Measured
 * before it (docs/PERFORMANCE.md): a 16-vCPU boot ran about 100,000 turns at some 35 us of
 * Python each, most of them a CPU woken from HLT by an IPI that ran its handler for 30 us
 * and halted again, and each turn handed Python's GIL and the machine's lock between the
 * two host threads.
 *
 * A worker (a Python thread) calls run_loop_serve without the machine's lock and without
 * the GIL. It returns only when Python has work: timers due (the clock's next deadline has
 * passed), a CPU whose engine must be made ready first (its TSC anchored again after guest
 * time moved, the PCI windows remapped after a BAR moved), a slice that ended in something
 * Python handles (a triple fault, an engine error, an INIT or SIPI that came while it ran, a
 * hook's exception), or the end of the run. The CPU stays claimed meanwhile: Python hands it
 * back (run it, or let it go).
 *
 * The local APICs' TSC deadlines (tsc_deadline.c) fall due here: before a pick and after a
 * slice the due ones fire, every slice ends by the bus's next deadline, and a worker with
 * nothing to run sleeps until then at most. So the CPU that armed one, or whichever another
 * worker runs, takes its interrupt on time without the main thread, and a slice that a
 * deadline ended goes on for the rest of its turn.
 *
 * Locking: `mu` guards the queues and every CPU's claim and run state between slices; it is
 * a leaf (nothing here calls Python holding it), so Python may call in holding the machine's
 * lock. A CPU's engine runs only on the thread that claimed it. The pin and IRR are the APIC
 * core's (atomic): a sender that sees `halted` wakes the CPU through run_loop_wake.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apic_core.h"
#include "clock.h"
#include "host_load.h"

enum { RUNNING, HALTED, WAIT_FOR_SIPI, SHUTDOWN };              /* cpu/vcpu.py's State */
enum { STATUS_HALTED = 1, STATUS_TRIPLE_FAULT = 2, STATUS_PAUSE_EXIT = 4 };  /* engine.py */
enum { RFLAGS_IF = 1 << 9 };

/* run_loop_serve's answers */
enum { SERVE_STOP = 0, SERVE_TIMERS = 1, SERVE_PREPARE = 2, SERVE_AFTER = 3 };
/* and what Python hands back with the CPU it had */
enum { HAND_NONE = 0, HAND_RUN = 1, HAND_RELEASE = 2 };

#define MAX_CPUS 256

typedef int (*engine_run_fn)(void *uc, uint64_t timeout_us, int64_t end_ns);
typedef int64_t (*engine_since_fn)(void *uc);
typedef int (*engine_reg_read_fn)(void *uc, int regid, void *value);

struct run_state {               /* one vCPU's (cpu/vcpu.py mirrors it) */
    int32_t state;               /* RUNNING, HALTED, WAIT_FOR_SIPI, SHUTDOWN */
    int32_t unmaskable;          /* an NMI or machine check is on its way */
    int32_t spinning;            /* its last slice ended spinning on PAUSE */
    int32_t progressed;          /* its last slice did something but wait */
    int64_t spinning_since;      /* CLOCK_MONOTONIC ns its spin loop began */
    int64_t queued_since;        /* and its place in the queue it waits in */
    int64_t running_on;          /* the host thread whose CPU it is now; 0 none */
    int32_t attention;           /* Python must look at it before it runs again */
    int32_t index;
    int64_t tsc_generation;      /* the clock's generation at its TSC's last anchor */
    int64_t windows_generation;  /* the PCI windows' generation its engine maps */
    int32_t status;              /* the engine's status after its last slice (<0: error) */
    int32_t claimed;             /* a worker has it (running, or in Python's hands) */
    void *uc;
    struct apic_core *core;
    struct c0_time *c0;
};

struct queue {                   /* CPUs in the order they came, each at most once */
    int32_t n;
    int32_t at[MAX_CPUS];
    uint8_t in[MAX_CPUS];
};

struct run_loop {
    pthread_mutex_t mu;
    pthread_cond_t work;         /* idle workers wait here */
    pthread_cond_t quiet;        /* run_loop_wait_quiet waits here */
    int32_t count;
    struct run_state *cpus[MAX_CPUS];
    int32_t round;
    struct queue queues[2];
    struct queue *next;          /* to run ahead of the round: woken, spinners */
    struct queue *batch;         /* those queued before the round's last pick */
    int32_t stopping;            /* the run ends */
    int32_t hold;                /* a reset or power-off is under way: pick none */
    int32_t idle_workers;
    int32_t firing;              /* workers firing TSC deadlines (`mu` let go meanwhile) */
    uint64_t signals;            /* work signalled so far: what a polling worker watches */
    int32_t claimed;
    int wake_fd;                 /* writing a byte wakes the main thread */
    int32_t wake_when_idle;      /* and it wants that whenever every CPU waits (a warp) */
    int32_t rflags_reg;
    struct apic_clock *clock;
    struct apic_bus *bus;        /* the CPUs' APIC cores' (their TSC deadlines); NULL none */
    int64_t windows_generation;
    int64_t max_overrun_ns;      /* the latest end of a turn past its time */
    int64_t max_overrun_cpu_ns;  /* the thread's CPU time in that turn */
    uint64_t turns;
    int32_t *trace;              /* the slices' starts and ends, for tests (NULL: none) */
    int64_t trace_capacity, trace_length;
    engine_run_fn run;
    engine_since_fn wait_since;
    engine_since_fn queued_since;
    engine_reg_read_fn reg_read;
    int (*idle_help)(void);      /* host work an idle worker may do while it watches; NULL */
    struct host_load load;       /* whether other work on the host wants its cores */
};

/* A slice of `index` starts (1) or ends (0): entry index * 2 + starts. */
static void trace(struct run_loop *l, int index, int starts)
{
    if (l->trace != NULL && l->trace_length < l->trace_capacity) {
        l->trace[l->trace_length++] = index * 2 + starts;
    }
}

static void push(struct queue *q, int index)
{
    if (!q->in[index]) {
        q->in[index] = 1;
        q->at[q->n++] = index;
    }
}

static void main_wake(struct run_loop *l)
{
    char byte = 0;
    if (l->wake_fd >= 0 && write(l->wake_fd, &byte, 1) < 0 && errno != EAGAIN) {
        /* a full pipe already holds a wake-up */
    }
}

/* As Vcpu.runnable(): running, or halted with an interrupt it takes (`mu` held, or the
 * CPU not claimed by anyone who runs it: its RFLAGS are read). */
static int runnable(struct run_loop *l, struct run_state *s)
{
    if (s->attention) {
        return 1;                              /* Python has something for it first */
    }
    int state = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
    if (state == RUNNING) {
        return 1;
    }
    if (state != HALTED) {
        return 0;
    }
    if (__atomic_load_n(&s->unmaskable, __ATOMIC_SEQ_CST)) {
        return 1;
    }
    if (apic_core_deliverable(s->core) < 0 &&
        !__atomic_load_n(&s->core->extint, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    uint64_t rflags = 0;
    l->reg_read(s->uc, l->rflags_reg, &rflags);
    return (rflags & RFLAGS_IF) != 0;
}

/* The first CPU of `q` that may run now; those before it leave the queue. */
static struct run_state *first(struct run_loop *l, struct queue *q)
{
    int taken = 0;
    struct run_state *found = NULL;
    while (taken < q->n && found == NULL) {
        int index = q->at[taken++];
        q->in[index] = 0;
        struct run_state *s = l->cpus[index];
        if (!s->claimed && runnable(l, s)) {
            found = s;
        }
    }
    memmove(q->at, q->at + taken, (size_t)(q->n - taken) * sizeof q->at[0]);
    q->n -= taken;
    return found;
}

/* host_threads.py's pick: the CPUs queued ahead run once each between two picks of the
 * round (queued ahead every time, they kept the round from moving, and a CPU preempted in
 * its turn holding a lock with interrupts off waited for all of them again and again). */
static struct run_state *pick(struct run_loop *l)
{
    struct run_state *s = first(l, l->batch);
    if (s != NULL) {
        return s;
    }
    for (int k = 0; k < l->count; k++) {
        s = l->cpus[(l->round + k) % l->count];
        if (!s->claimed && runnable(l, s)) {
            l->round = (l->round + k + 1) % l->count;
            struct queue *swap = l->batch;     /* empty: `first` took all it held */
            l->batch = l->next;
            l->next = swap;
            return s;
        }
    }
    return first(l, l->next);                  /* nothing in the round: no one to wait for */
}

/* After a slice that did something, the CPUs whose last slice ended spinning look again,
 * in the order they queued (a queued spinlock goes to the first to have queued). */
static void queue_spinners(struct run_loop *l, struct run_state *after)
{
    struct run_state *found[MAX_CPUS];
    int n = 0;
    for (int i = 0; i < l->count; i++) {
        struct run_state *s = l->cpus[i];
        if (s != after && s->spinning) {
            int j = n++;
            while (j > 0 && found[j - 1]->queued_since > s->queued_since) {
                found[j] = found[j - 1];
                j--;
            }
            found[j] = s;
        }
    }
    for (int i = 0; i < n; i++) {
        push(l->next, found[i]->index);
    }
}

static void c0_enter(struct run_loop *l, struct run_state *s)
{
    struct c0_time *c0 = s->c0;
    if (c0 != NULL && c0->in_c0_since < 0) {
        c0->in_c0_since = apic_clock_now(l->clock);
        c0->transitions++;
    }
}

static void c0_leave(struct run_loop *l, struct run_state *s)
{
    struct c0_time *c0 = s->c0;
    if (c0 != NULL && c0->in_c0_since >= 0) {
        int64_t ran = apic_clock_now(l->clock) - c0->in_c0_since;
        c0->c0_ns += ran > 0 ? ran : 0;
        c0->in_c0_since = -1;
        c0->transitions++;
    }
}

/* Work for the workers (`mu` held): one that polls sees the count move, one that sleeps
 * is woken (`all`: every one). */
static void tell_workers(struct run_loop *l, int all)
{
    __atomic_add_fetch(&l->signals, 1, __ATOMIC_SEQ_CST);
    if (all) {
        pthread_cond_broadcast(&l->work);
    } else {
        pthread_cond_signal(&l->work);
    }
}

/* Python must see `s` before it runs: its TSC's anchor or its windows are old, or timers
 * fell due (the CPU must not read a clock past them before their interrupts are raised). */
static int needs_python_first(struct run_loop *l, struct run_state *s)
{
    struct apic_clock *k = l->clock;
    return s->tsc_generation != __atomic_load_n(&k->generation, __ATOMIC_SEQ_CST) ||
           s->windows_generation != __atomic_load_n(&l->windows_generation, __ATOMIC_SEQ_CST) ||
           apic_clock_now(k) >= __atomic_load_n(&k->next_timer_ns, __ATOMIC_SEQ_CST) ||
           s->attention;
}

/* CLOCK_MONOTONIC ns by which the bus's next TSC deadline falls due; 0: none, or guest
 * time that does not follow the host's (a virtual clock moves only when the CPUs wait). */
static int64_t deadline_host_ns(struct run_loop *l)
{
    if (l->bus == NULL || !l->clock->realtime) {
        return 0;
    }
    int64_t next = __atomic_load_n(&l->bus->next_deadline_ns, __ATOMIC_SEQ_CST);
    if (next == INT64_MAX) {
        return 0;
    }
    int64_t host = next - __atomic_load_n(&l->clock->offset_ns, __ATOMIC_RELAXED);
    return host > 0 ? host : 1;
}

/* The TSC deadlines due fire (any thread; not holding `mu`: a firing wakes a halted CPU
 * through run_loop_wake). 1 if any was due. */
static int fire_deadlines(struct run_loop *l)
{
    struct apic_bus *bus = l->bus;
    if (bus == NULL) {
        return 0;
    }
    int64_t now = apic_clock_now(l->clock);
    if (now < __atomic_load_n(&bus->next_deadline_ns, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    apic_bus_fire_deadlines(bus, now);
    return 1;
}

/* No CPU is claimed and no deadline is being fired while the loop holds its picks: Python
 * may save or change every CPU's state (`mu` held). */
static void tell_if_quiet(struct run_loop *l)
{
    if (l->hold && !l->claimed && !l->firing) {
        pthread_cond_broadcast(&l->quiet);
    }
}

/* As fire_deadlines, with `mu` held on entry and return; none while the loop holds its
 * picks (a suspend saves the APICs meanwhile: a firing would change them). */
static void fire_deadlines_locked(struct run_loop *l)
{
    if (l->bus != NULL && !l->hold && !l->stopping && apic_clock_now(l->clock) >=
            __atomic_load_n(&l->bus->next_deadline_ns, __ATOMIC_SEQ_CST)) {
        l->firing++;
        pthread_mutex_unlock(&l->mu);
        fire_deadlines(l);
        pthread_mutex_lock(&l->mu);
        l->firing--;
        tell_if_quiet(l);
    }
}

/* A cut slice shorter than this ends the turn instead (machine.py's MIN_SLICE_US). */
#define MIN_SLICE_NS 20000

/* After a run of `s` that ended with `status` before its turn's end: whether the turn goes
 * on. It does when a TSC deadline ended it (they fire now) and nothing else wants the CPU
 * or the thread: not an HLT, a spin, an error, a hold or the run's end, nor anything Python
 * must see before the CPU runs again (needs_python_first: its TSC's anchor or its PCI
 * windows grown old, Python's timers due, an INIT or SIPI). Any other early end (Python stopped the engine, a TSC read
 * past the slice's end) ends the turn, as before there were deadlines here. */
static int turn_goes_on(struct run_loop *l, struct run_state *s, int status, int64_t turn_end)
{
    if (status != 0 || __atomic_load_n(&l->stopping, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&l->hold, __ATOMIC_SEQ_CST) ||
        clock_ns(CLOCK_MONOTONIC) >= turn_end - MIN_SLICE_NS || needs_python_first(l, s)) {
        return 0;
    }
    return fire_deadlines(l);
}

/* An idle worker watches for work this long before it sleeps (`mu` let go meanwhile): being
 * woken from a sleep took 20-30 µs on the development host, a random SSD read's round trip
 * between two CPUs twice over. Not while other work on the host wants its cores
 * (host_load.c): the watch would take their time from the vCPUs' threads. */
#define POLL_NS 200000

/* 1 if work was signalled within POLL_NS (`mu` held on entry and return; every signal is
 * given with `mu` held, so one given after the return finds this worker asleep). */
static int poll_for_work(struct run_loop *l)
{
    uint64_t seen = __atomic_load_n(&l->signals, __ATOMIC_SEQ_CST);
    int64_t until = clock_ns(CLOCK_MONOTONIC) + POLL_NS;
    pthread_mutex_unlock(&l->mu);
    host_load_note(&l->load);                  /* now and then a file's read: not under `mu` */
    if (host_load_busy(&l->load)) {
        until = 0;                             /* no watch: straight to sleep */
    }
    int signalled = 0;
    while (!signalled && clock_ns(CLOCK_MONOTONIC) < until) {
        if (l->idle_help != NULL && l->idle_help()) {
            until = clock_ns(CLOCK_MONOTONIC) + POLL_NS;   /* the guest's next step is near */
        }
        for (int i = 0; i < 64 && !signalled; i++) {
            __builtin_ia32_pause();
            signalled = __atomic_load_n(&l->signals, __ATOMIC_SEQ_CST) != seen;
        }
    }
    pthread_mutex_lock(&l->mu);
    /* Signalled after the last look but before `mu` was taken again: the signaller's
     * broadcast found no sleeper, so this worker must not go to sleep now. */
    return signalled || __atomic_load_n(&l->signals, __ATOMIC_SEQ_CST) != seen;
}

/* `help` (NULL: none) does a piece of the host's pending work for the machine and says
 * whether there was any: the SSD pool's parts (ssd_pool.c's ssd_pool_help). */
void run_loop_set_idle_help(struct run_loop *l, int (*help)(void))
{
    l->idle_help = help;
}

/* A halted CPU got an interrupt: it runs ahead of the round. Any thread; `mu` not held. */
void run_loop_wake(void *context, int index)
{
    struct run_loop *l = context;
    if (index < 0 || index >= l->count) {
        return;
    }
    pthread_mutex_lock(&l->mu);
    push(l->next, index);
    tell_workers(l, 0);
    pthread_mutex_unlock(&l->mu);
}

/* One slice of `s` (claimed; `mu` held, let go while the engine runs). Returns 1 if Python
 * must see the CPU after it (SERVE_AFTER), 0 if it was let go. */
static int run_slice(struct run_loop *l, struct run_state *s, int64_t thread, int slice_us)
{
    if (s->state == HALTED) {
        c0_enter(l, s);                        /* woken: its frequency counters run again */
    }
    s->state = RUNNING;
    s->unmaskable = 0;
    __atomic_store_n(&s->core->halted, 0, __ATOMIC_SEQ_CST);
    s->running_on = thread;
    l->turns++;
    trace(l, s->index, 1);
    pthread_mutex_unlock(&l->mu);

    int64_t started = clock_ns(CLOCK_MONOTONIC);
    int64_t turn_end = started + (int64_t)slice_us * 1000;
    int64_t turn_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    int status;
    do {
        int64_t due = deadline_host_ns(l);
        status = l->run(s->uc, (uint64_t)slice_us, due && due < turn_end ? due : turn_end);
    } while (turn_goes_on(l, s, status, turn_end));
    int64_t ended = clock_ns(CLOCK_MONOTONIC);
    int64_t overrun = ended - started - (int64_t)slice_us * 1000;
    int spinning = status >= 0 && (status & STATUS_PAUSE_EXIT);
    int64_t since = spinning ? l->wait_since(s->uc) : 0;
    int64_t queued = spinning ? l->queued_since(s->uc) : 0;
    int64_t cpu_ns = overrun > l->max_overrun_ns ?
        clock_ns(CLOCK_THREAD_CPUTIME_ID) - turn_cpu : 0;

    pthread_mutex_lock(&l->mu);
    trace(l, s->index, 0);
    if (overrun > l->max_overrun_ns) {
        l->max_overrun_ns = overrun;
        l->max_overrun_cpu_ns = cpu_ns;
    }
    s->status = status;
    s->spinning = spinning;
    if (spinning) {
        s->spinning_since = since;
        s->queued_since = queued;
    }
    /* A slice that ends spinning in a wait begun within it did something first. */
    s->progressed = !spinning || since >= started;
    if (status < 0 || (status & STATUS_TRIPLE_FAULT)) {
        s->spinning = 0;
        return 1;                              /* Python shuts it down, saying why */
    }
    if (status & STATUS_HALTED) {
        s->state = HALTED;
        c0_leave(l, s);
        s->core->last_tick_ns = -1;            /* idle: the next tick's gap is not a busy one */
        if (apic_core_halt(s->core, 1)) {      /* an IPI came as it halted */
            push(l->next, s->index);
        }
    }
    if (s->attention) {
        return 1;                              /* an INIT or SIPI came while it ran */
    }
    return 0;
}

/* Let go of a claimed CPU after its slice. */
static void release(struct run_loop *l, struct run_state *s)
{
    s->running_on = 0;
    s->claimed = 0;
    l->claimed--;
    if (s->progressed) {
        queue_spinners(l, s);
    }
    if (s->state == SHUTDOWN) {
        main_wake(l);
    }
    if (runnable(l, s)) {
        tell_workers(l, 0);                    /* another worker may be waiting for it */
    }
    tell_if_quiet(l);
}

/* A worker's turns until Python has work (see the top of the file). `handed`: the CPU
 * Python had from the last call (-1 none), and what to do with it (`hand`); `*cpu`: the CPU
 * Python gets now (-1 none). */
int run_loop_serve(struct run_loop *l, int64_t thread, int slice_us, int handed, int hand,
                   int32_t *cpu)
{
    *cpu = -1;
    pthread_mutex_lock(&l->mu);
    struct run_state *s = NULL;
    if (handed >= 0 && handed < l->count && l->cpus[handed]->claimed) {
        s = l->cpus[handed];
        if (hand == HAND_RELEASE || l->stopping || l->hold || !runnable(l, s)) {
            release(l, s);
            s = NULL;
        }
    }
    for (;;) {
        fire_deadlines_locked(l);              /* their CPUs are woken before the pick */
        if (s == NULL) {
            if (l->stopping) {
                pthread_mutex_unlock(&l->mu);
                return SERVE_STOP;
            }
            s = l->hold ? NULL : pick(l);
            if (s == NULL) {
                if (!l->claimed && l->wake_when_idle) {
                    main_wake(l);              /* every CPU waits: time may pass now */
                }
                if (!l->stopping && poll_for_work(l)) {
                    continue;
                }
                l->idle_workers++;
                int64_t due = deadline_host_ns(l);
                if (due) {                     /* until the next TSC deadline at most */
                    struct timespec until = {due / 1000000000, due % 1000000000};
                    pthread_cond_timedwait(&l->work, &l->mu, &until);
                } else {
                    pthread_cond_wait(&l->work, &l->mu);
                }
                l->idle_workers--;
                continue;
            }
            s->claimed = 1;
            l->claimed++;
            if (needs_python_first(l, s)) {
                *cpu = s->index;
                pthread_mutex_unlock(&l->mu);
                return SERVE_PREPARE;
            }
        }
        if (run_slice(l, s, thread, slice_us)) {
            *cpu = s->index;
            pthread_mutex_unlock(&l->mu);
            return SERVE_AFTER;
        }
        release(l, s);
        s = NULL;
        if (host_load_due()) {
            /* How long this thread waited for a core: a file's read, with no CPU held (a CPU
             * held meanwhile would wait for it) and `mu` let go. */
            pthread_mutex_unlock(&l->mu);
            host_load_note(&l->load);
            pthread_mutex_lock(&l->mu);
        }
        if (apic_clock_now(l->clock) >= __atomic_load_n(&l->clock->next_timer_ns,
                                                         __ATOMIC_SEQ_CST)) {
            pthread_mutex_unlock(&l->mu);
            return SERVE_TIMERS;
        }
    }
}

/* An INIT or SIPI for `index`, from Python on another thread than the CPU's (holding the
 * machine's lock), which rewrites the CPU's registers. 1: a worker has the CPU, and hands
 * it to Python before it runs again (Python stops its engine); 0: the CPU is held for
 * Python, which applies it now and lets go with run_loop_unhold. */
int run_loop_defer(struct run_loop *l, int index)
{
    pthread_mutex_lock(&l->mu);
    struct run_state *s = l->cpus[index];
    int deferred = s->claimed;
    if (deferred) {
        s->attention = 1;
    } else {
        s->claimed = 1;
        l->claimed++;
    }
    pthread_mutex_unlock(&l->mu);
    return deferred;
}

void run_loop_unhold(struct run_loop *l, int index)
{
    pthread_mutex_lock(&l->mu);
    struct run_state *s = l->cpus[index];
    s->claimed = 0;
    l->claimed--;
    if (runnable(l, s)) {
        tell_workers(l, 0);
    }
    tell_if_quiet(l);
    pthread_mutex_unlock(&l->mu);
}

/* The main thread's look (every pass of its loop): whether any CPU is claimed or runnable;
 * idle workers are told of a CPU that became runnable unannounced. */
int run_loop_busy(struct run_loop *l)
{
    pthread_mutex_lock(&l->mu);
    int waiting = 0;
    for (int i = 0; i < l->count; i++) {
        struct run_state *s = l->cpus[i];
        waiting += !s->claimed && runnable(l, s);
    }
    if (waiting) {
        tell_workers(l, 1);                    /* sleeping or watching for work */
    }
    int busy = l->claimed || waiting;
    pthread_mutex_unlock(&l->mu);
    return busy;
}

void run_loop_set_hold(struct run_loop *l, int hold)
{
    pthread_mutex_lock(&l->mu);
    l->hold = hold;
    tell_workers(l, 1);
    pthread_mutex_unlock(&l->mu);
}

/* Wait until no CPU is claimed and no deadline is being fired (the caller set the hold and
 * stopped the engines; it must not hold what a worker needs to hand its CPU back, the
 * machine's lock). Then nothing here changes a CPU or an APIC until the hold is let go. */
void run_loop_wait_quiet(struct run_loop *l)
{
    pthread_mutex_lock(&l->mu);
    while (l->hold && (l->claimed || l->firing)) {
        pthread_cond_wait(&l->quiet, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
}

void run_loop_set_windows_generation(struct run_loop *l, int64_t generation)
{
    __atomic_store_n(&l->windows_generation, generation, __ATOMIC_SEQ_CST);
}

/* The run ends: every worker returns from run_loop_serve once its slice is over. */
void run_loop_stop(struct run_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->stopping = 1;
    tell_workers(l, 1);
    pthread_mutex_unlock(&l->mu);
}

/* The worst overrun so far and the CPU time of its turn (ns), and the turns run. */
void run_loop_stats(struct run_loop *l, int64_t *overrun_ns, int64_t *overrun_cpu_ns,
                    uint64_t *turns)
{
    pthread_mutex_lock(&l->mu);
    *overrun_ns = l->max_overrun_ns;
    *overrun_cpu_ns = l->max_overrun_cpu_ns;
    *turns = l->turns;
    pthread_mutex_unlock(&l->mu);
}

/* Record the slices' starts and ends in `buffer` (capacity entries; NULL: stop): how many
 * were recorded. Tests read the order the loop ran CPUs in. */
int64_t run_loop_trace(struct run_loop *l, int32_t *buffer, int64_t capacity)
{
    pthread_mutex_lock(&l->mu);
    int64_t length = l->trace_length;
    l->trace = buffer;
    l->trace_capacity = capacity;
    l->trace_length = 0;
    pthread_mutex_unlock(&l->mu);
    return length;
}

struct run_loop *run_loop_new(struct apic_clock *clock, int wake_fd, int rflags_reg,
                              engine_run_fn run, engine_since_fn wait_since,
                              engine_since_fn queued_since, engine_reg_read_fn reg_read)
{
    struct run_loop *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t monotonic;             /* timed sleeps count CLOCK_MONOTONIC */
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&l->work, &monotonic);
    pthread_cond_init(&l->quiet, NULL);
    pthread_condattr_destroy(&monotonic);
    l->next = &l->queues[0];
    l->batch = &l->queues[1];
    l->clock = clock;
    l->wake_fd = wake_fd;
    l->wake_when_idle = 1;
    l->rflags_reg = rflags_reg;
    l->run = run;
    l->wait_since = wait_since;
    l->queued_since = queued_since;
    l->reg_read = reg_read;
    return l;
}

/* Whether the main thread is woken each time every CPU waits: when it skips idle time (a
 * warp) it must look at once; else it sleeps until its next timer, which it set itself. */
void run_loop_set_wake_when_idle(struct run_loop *l, int on)
{
    pthread_mutex_lock(&l->mu);
    l->wake_when_idle = on;
    pthread_mutex_unlock(&l->mu);
}

/* The CPUs, in index order, before any worker starts. 0: too many. */
int run_loop_add(struct run_loop *l, struct run_state *s)
{
    if (l->count >= MAX_CPUS) {
        return 0;
    }
    s->index = l->count;
    s->claimed = 0;
    if (l->bus == NULL && s->core != NULL) {
        l->bus = s->core->bus;
    }
    s->running_on = 0;
    l->cpus[l->count++] = s;
    return 1;
}

void run_loop_free(struct run_loop *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->quiet);
    free(l);
}
