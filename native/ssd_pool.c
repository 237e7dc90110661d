/*
 * Helper threads for the SSD's data path: a large request's sectors are cut into parts, and
 * the calling thread and the helpers take the parts one at a time until none is left, each
 * reading and decrypting (or encrypting and writing) its own, as a real SSD spreads a
 * command over its flash channels.
 *
 * Why: a 1 MiB read spends about 0.1 ms in the host kernel's copy out of its page cache and
 * 0.1 ms in the AES, one after the other on the vCPU's thread, while the guest waits
 * for the completion with its other CPUs idle. On two cores it takes half as long.
 *
 * Why parts taken one at a time rather than one half each: a helper the host does not run
 * at once (its cores busy with other work) would hold its half back for milliseconds, and
 * the request with it. Here the calling thread takes every part no helper has taken yet, so
 * a request waits at most for parts a helper is in the middle of (64 KiB, ~15 µs of work).
 *
 * One pool per process, started on first use: one helper per host core beyond the first, at
 * most MAX_HELPERS. One request uses the pool at a time (the devices run under the machine's
 * lock, so there is rarely a second); a request that finds it busy runs its parts itself.
 * The helpers run at the host's idle priority (SCHED_IDLE) and block every signal, so Python's
 * handlers keep running on its own threads. A child process made by fork() has no helpers:
 * it runs its parts itself.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ssd_pool.h"

#define MAX_HELPERS 7
#define OUTSIDE_HELPERS 2       /* threads of their own that help while they wait for work */
#define WATCH_NS 1000000        /* a helper watches for the next request this long */
#define CLOSED 0xFFFFFFFFu      /* a claim's next part while its request is being set up */

struct helper {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t called;
    int wanted;                 /* a request came since the helper last looked */
    int executor;               /* its number among the threads of a request (1, 2, ...) */
};

/* The request in progress. `claim` is (generation << 32 | next part): a thread takes a part
 * by moving it on with a compare-and-swap, so it never takes a part of a request that has
 * ended, and the other fields are only used after such a take. A new request first closes
 * the claim (next part CLOSED) and only then changes the fields: a thread that read the old
 * claim and some new fields fails its compare-and-swap, rather than taking a part of the
 * new request by the old claim. */
static struct {
    uint64_t claim;
    int count;
    ssd_part_work work;
    char *parts;
    size_t part_size;
    void **contexts;
    int ncontexts;
    int done;
    uint64_t outside;           /* (generation << 32 | outside helpers that joined it) */
} request;

static struct helper helpers[MAX_HELPERS];
static int helper_count;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pool_in_use = PTHREAD_MUTEX_INITIALIZER;

/* Parts of the current request, taken one at a time while any is left; `executor` says
 * which of the request's cipher contexts this thread uses. Only parts of request
 * `generation` when it is not 0: an outside helper's executor is its for that one request. */
static int take_parts(int executor, uint64_t generation)
{
    int taken = 0;
    for (;;) {
        uint64_t claim = __atomic_load_n(&request.claim, __ATOMIC_ACQUIRE);
        uint32_t next = (uint32_t)claim;
        if (next >= (uint32_t)__atomic_load_n(&request.count, __ATOMIC_RELAXED) ||
            executor >= __atomic_load_n(&request.ncontexts, __ATOMIC_RELAXED) ||
            (generation && claim >> 32 != generation)) {
            return taken;
        }
        ssd_part_work work = __atomic_load_n(&request.work, __ATOMIC_RELAXED);
        char *parts = __atomic_load_n(&request.parts, __ATOMIC_RELAXED);
        size_t size = __atomic_load_n(&request.part_size, __ATOMIC_RELAXED);
        void **contexts = __atomic_load_n(&request.contexts, __ATOMIC_RELAXED);
        /* Had any of those come from a new request, its closed claim fails this take. */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!__atomic_compare_exchange_n(&request.claim, &claim, claim + 1, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            continue;                   /* another thread took it, or a new request began */
        }
        work(parts + next * size, contexts[executor]);
        __atomic_add_fetch(&request.done, 1, __ATOMIC_RELEASE);
        taken = 1;
    }
}

/* Watches `*flag` until it is `value` or `ns` pass, yielding the core to any other thread
 * that wants it: in a VM a thread asleep on an idle core takes ~90 µs to wake (the core
 * halted, the hypervisor must bring it back), and a guest streaming I/O sends a command
 * every few hundred µs. */
static void watch(const int *flag, int value, uint64_t ns)
{
    int64_t until = clock_ns(CLOCK_MONOTONIC) + (int64_t)ns;
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != value) {
        for (int i = 0; i < 64 && __atomic_load_n(flag, __ATOMIC_ACQUIRE) != value; i++) {
            __builtin_ia32_pause();
        }
        if (clock_ns(CLOCK_MONOTONIC) >= until) {
            return;
        }
        sched_yield();
    }
}

static void *helper_main(void *opaque)
{
    struct helper *h = opaque;
    /* Only a core nothing else wants: the helpers' watching must not take time from the
     * vCPUs' threads or anything else on a busy host (the calling thread takes the parts a
     * helper does not get to). */
    struct sched_param idle = {0};
    sched_setscheduler(0, SCHED_IDLE, &idle);
    for (;;) {
        watch(&h->wanted, 1, WATCH_NS);
        pthread_mutex_lock(&h->lock);
        while (!h->wanted) {
            pthread_cond_wait(&h->called, &h->lock);
        }
        __atomic_store_n(&h->wanted, 0, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&h->lock);
        take_parts(h->executor, 0);
    }
    return NULL;
}

/* A child of fork() has the caller's thread alone: it does every part itself. */
static void forget_helpers(void)
{
    helper_count = 0;
}

static void start_pool(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int wanted = cores > 1 ? (int)(cores - 1) : 0;
    if (wanted > MAX_HELPERS) {
        wanted = MAX_HELPERS;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < wanted; i++) {
        struct helper *h = &helpers[i];
        pthread_mutex_init(&h->lock, NULL);
        pthread_cond_init(&h->called, NULL);
        h->executor = i + 1;
        if (pthread_create(&h->thread, NULL, helper_main, h) != 0) {
            break;
        }
        pthread_detach(h->thread);
        helper_count = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_atfork(NULL, NULL, forget_helpers);
}

int ssd_pool_helpers(void)
{
    pthread_once(&pool_once, start_pool);
    return helper_count;
}

int ssd_pool_parts(void)
{
    return 1 + ssd_pool_helpers() + OUTSIDE_HELPERS;
}

/* Parts of the request in progress, taken by a thread that is not the pool's: the run
 * loop's idle workers call this while they watch for guest work (run_loop.c). The helpers
 * run at the host's idle priority, so a worker watching on a core keeps them off it, and a
 * 1 MiB read's decryption then ran on the vCPU's thread alone. Returns whether it did any.
 * Costs two loads when there is nothing to do. */
int ssd_pool_help(void)
{
    uint64_t claim = __atomic_load_n(&request.claim, __ATOMIC_ACQUIRE);
    if ((uint32_t)claim >= (uint32_t)__atomic_load_n(&request.count, __ATOMIC_RELAXED)) {
        return 0;
    }
    /* A seat among the request's outside helpers: one executor (and its cipher context) is
     * never used by two threads, and a seat is good for this request only. */
    uint64_t generation = claim >> 32;
    uint64_t seats = __atomic_load_n(&request.outside, __ATOMIC_ACQUIRE);
    uint64_t taken;
    do {
        taken = seats >> 32 == generation ? (uint32_t)seats : 0;
        if (taken >= OUTSIDE_HELPERS) {
            return 0;
        }
    } while (!__atomic_compare_exchange_n(&request.outside, &seats,
                                          generation << 32 | (taken + 1), 0,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    return take_parts(1 + helper_count + (int)taken, generation);
}

void ssd_pool_run(ssd_part_work work, void *parts, size_t part_size, int count,
                  void **contexts, int ncontexts)
{
    pthread_once(&pool_once, start_pool);
    if (count < 2 || ncontexts < 2 || pthread_mutex_trylock(&pool_in_use) != 0) {
        for (int i = 0; i < count; i++) {
            work((char *)parts + i * part_size, contexts[0]);
        }
        return;
    }
    uint64_t generation = (__atomic_load_n(&request.claim, __ATOMIC_RELAXED) >> 32) + 1;
    __atomic_store_n(&request.claim, generation << 32 | CLOSED, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);    /* closed before any field changes */
    __atomic_store_n(&request.count, count, __ATOMIC_RELAXED);
    __atomic_store_n(&request.work, work, __ATOMIC_RELAXED);
    __atomic_store_n(&request.parts, (char *)parts, __ATOMIC_RELAXED);
    __atomic_store_n(&request.part_size, part_size, __ATOMIC_RELAXED);
    __atomic_store_n(&request.contexts, contexts, __ATOMIC_RELAXED);
    __atomic_store_n(&request.ncontexts, ncontexts, __ATOMIC_RELAXED);
    __atomic_store_n(&request.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&request.claim, generation << 32, __ATOMIC_RELEASE);
    for (int i = 0; i < helper_count && i + 1 < ncontexts; i++) {
        struct helper *h = &helpers[i];
        pthread_mutex_lock(&h->lock);
        __atomic_store_n(&h->wanted, 1, __ATOMIC_RELEASE);
        pthread_cond_signal(&h->called);
        pthread_mutex_unlock(&h->lock);
    }
    take_parts(0, 0);
    /* What is left is parts helpers are in the middle of. */
    while (__atomic_load_n(&request.done, __ATOMIC_ACQUIRE) < count) {
        __builtin_ia32_pause();
        sched_yield();
    }
    pthread_mutex_unlock(&pool_in_use);
}
