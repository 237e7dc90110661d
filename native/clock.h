/* A clock's reading in nanoseconds: CLOCK_MONOTONIC for intervals, CLOCK_THREAD_CPUTIME_ID
 * for the calling thread's CPU time. Shared by the native modules that time things. */
#ifndef IMACPRO_CLOCK_H
#define IMACPRO_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
