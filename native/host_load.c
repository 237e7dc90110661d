/*
 * Whether other work on the host wants its cores, from how long this process's threads
 * wait for one: the run delay the kernel counts for a thread that is ready but not running
 * (the second field of /proc/thread-self/schedstat).
 *
 * Why: an idle worker watches for work for a while before it sleeps (run_loop.c's
 * poll_for_work), because waking a sleeping thread takes 20-90 us on a VM host, longer than
 * a random SSD read. That pays only while the watching thread has a core to itself. When
 * another program keeps a core busy, the watcher takes a share of the cores from the thread
 * running the vCPUs, and a thread that never sleeps gets none of the kernel's preference for
 * a thread waking from sleep. Measured on the 2-core development host with one busy loop
 * beside the machine (docs/PERFORMANCE.md): one random 4 KiB reader did 2.5-3.8k IOPS with
 * the watch and 5.9-6.3k without it; alone on the host, 11.8-16.5k with it and 5k without.
 * So a worker watches only while the host is not busy, as KVM's halt polling stops when
 * another task is runnable on its core.
 *
 * Judged per thread over windows of WINDOW_NS: one in which the thread waited for a core
 * more than BUSY_PERCENT of the time marks the host busy for HOLD_NS (no thread watches
 * meanwhile, so none is delayed by it: the hold, not the delay, says when to try again).
 * On the development host, windows of 20 ms with the machine alone waited 10% or more of
 * the time in 3% of them; with one busy loop beside it, 25% or more in three quarters.
 * A host without schedstat (a kernel built without it) is never judged busy.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "host_load.h"

#define WINDOW_NS 20000000
#define BUSY_PERCENT 20
#define HOLD_NS 100000000

/* This thread's window: when it began and the run delay then (0: none yet). */
static __thread int64_t window_start;
static __thread int64_t window_delay;

/* The calling thread's run delay in ns so far; -1 if the kernel does not say. */
static int64_t run_delay_ns(void)
{
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    char text[96];
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) {
        return -1;
    }
    text[got] = 0;
    long long on_cpu, delay;
    return sscanf(text, "%lld %lld", &on_cpu, &delay) == 2 ? delay : -1;
}

/* A window of `wall_ns` in which the thread waited `delay_ns` for a core, ending at
 * `now_ns`: 1 if it marks the host busy. */
int host_load_judge(struct host_load *h, int64_t now_ns, int64_t wall_ns, int64_t delay_ns)
{
    if (wall_ns <= 0 || delay_ns * 100 <= wall_ns * BUSY_PERCENT) {
        return 0;
    }
    __atomic_store_n(&h->busy_until, now_ns + HOLD_NS, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->busy_windows, 1, __ATOMIC_RELAXED);
    return 1;
}

static int window_over(int64_t now)
{
    return !window_start || now - window_start >= WINDOW_NS;
}

/* Whether the calling thread's window is over (a clock read): host_load_note would read the
 * run delay now. */
int host_load_due(void)
{
    return window_over(clock_ns(CLOCK_MONOTONIC));
}

/* Any thread, often: when the calling thread's window is over, judge it and begin the next
 * (costs a clock read otherwise). */
void host_load_note(struct host_load *h)
{
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    if (!window_over(now)) {
        return;
    }
    int64_t delay = run_delay_ns();
    if (delay < 0) {
        return;
    }
    if (window_start) {
        host_load_judge(h, now, now - window_start, delay - window_delay);
    }
    window_start = now;
    window_delay = delay;
}

int host_load_busy(const struct host_load *h)
{
    return clock_ns(CLOCK_MONOTONIC) < __atomic_load_n(&h->busy_until, __ATOMIC_RELAXED);
}
