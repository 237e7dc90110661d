/*
 * Helper threads for the SSD's data path: a large request's sectors are split into parts,
 * and the parts are read and decrypted (or encrypted and written) on several host cores at
 * once, as a real SSD spreads a command over its flash channels.
 *
 * Why: a 1 MiB read spends about 0.2 ms in the host kernel's copy out of its page cache and
 * 0.1 ms in OpenSSL's AES, one after the other on the vCPU's thread, while the guest waits
 * for the completion with its other CPUs idle. Two parts on two cores take half as long.
 *
 * One pool per process, started on first use: one helper per host core beyond the first, at
 * most MAX_HELPERS. One request uses the pool at a time (the devices run under the machine's
 * lock, so there is rarely a second); a request that finds it busy runs all its parts
 * itself. The helpers block every signal, so Python's handlers keep running on its own
 * threads. A child process made by fork() has no helpers: it runs its parts itself.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <signal.h>
#include <stddef.h>
#include <unistd.h>

#define MAX_HELPERS 7
#define WATCH_NS 1000000        /* a helper watches for its next part this long */
#define WAIT_NS 200000          /* the caller watches for the helpers' parts this long */

struct helper {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    void (*work)(void *);
    void *arg;                  /* the part it has been given; NULL when it has none */
    int busy;
};

static struct helper helpers[MAX_HELPERS];
static int helper_count;
static pid_t pool_pid;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pool_in_use = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Watches `busy` until it is `until_busy` or `ns` pass, yielding the core to any other
 * thread that wants it. A helper watches for its next part this way before it sleeps, and
 * the caller for the helpers' parts: in a VM a thread sleeping on an idle core takes ~90 µs
 * to wake (the core halted, the hypervisor must bring it back), as long as a 1 MiB
 * request's whole part, and a stream of requests comes every few hundred µs. */
static void watch(const int *busy, int until_busy, uint64_t ns)
{
    uint64_t until = now_ns() + ns;
    while (__atomic_load_n(busy, __ATOMIC_ACQUIRE) != until_busy) {
        for (int i = 0; i < 64 && __atomic_load_n(busy, __ATOMIC_ACQUIRE) != until_busy; i++) {
            __builtin_ia32_pause();
        }
        if (now_ns() >= until) {
            return;
        }
        sched_yield();
    }
}

static void *helper_main(void *opaque)
{
    struct helper *h = opaque;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->busy) {
            pthread_cond_wait(&h->changed, &h->lock);
        }
        pthread_mutex_unlock(&h->lock);
        h->work(h->arg);
        pthread_mutex_lock(&h->lock);
        h->busy = 0;
        pthread_cond_broadcast(&h->changed);
        pthread_mutex_unlock(&h->lock);
        watch(&h->busy, 1, WATCH_NS);
        pthread_mutex_lock(&h->lock);
    }
    return NULL;
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
        pthread_cond_init(&h->changed, NULL);
        if (pthread_create(&h->thread, NULL, helper_main, h) != 0) {
            break;
        }
        pthread_detach(h->thread);
        helper_count = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pool_pid = getpid();
}

/* How many parts a request may be split into: the calling thread and the helpers. */
int ssd_pool_parts(void)
{
    pthread_once(&pool_once, start_pool);
    return pool_pid == getpid() ? 1 + helper_count : 1;
}

/* work(args[i]) for every i < n: args[0] on the calling thread, the others on the helpers
 * when the pool is free, else on the calling thread too. Returns when all are done. */
void ssd_pool_run(void (*work)(void *), void **args, int n)
{
    int given = 0;
    if (n > 1 && ssd_pool_parts() > 1 && pthread_mutex_trylock(&pool_in_use) == 0) {
        for (; given < n - 1 && given < helper_count; given++) {
            struct helper *h = &helpers[given];
            pthread_mutex_lock(&h->lock);
            h->work = work;
            h->arg = args[given + 1];
            h->busy = 1;
            pthread_cond_signal(&h->changed);
            pthread_mutex_unlock(&h->lock);
        }
        if (given == 0) {
            pthread_mutex_unlock(&pool_in_use);
        }
    }
    work(args[0]);
    for (int i = given + 1; i < n; i++) {
        work(args[i]);
    }
    if (given == 0) {
        return;
    }
    for (int i = 0; i < given; i++) {
        struct helper *h = &helpers[i];
        watch(&h->busy, 0, WAIT_NS);        /* its part is about as long as ours was */
        pthread_mutex_lock(&h->lock);
        while (h->busy) {
            pthread_cond_wait(&h->changed, &h->lock);
        }
        pthread_mutex_unlock(&h->lock);
    }
    pthread_mutex_unlock(&pool_in_use);
}
