/*
 * Whether the host's cores are wanted by other work (host_load.c): the run loop asks before
 * an idle worker watches for work (run_loop.c).
 */
#ifndef IMACPRO_HOST_LOAD_H
#define IMACPRO_HOST_LOAD_H

#include <stdint.h>

struct host_load {
    int64_t busy_until;          /* CLOCK_MONOTONIC ns: the host counts as busy until then */
    uint64_t busy_windows;       /* windows in which a thread waited too long for a core */
};

int host_load_due(void);
void host_load_note(struct host_load *h);
int host_load_busy(const struct host_load *h);
int host_load_judge(struct host_load *h, int64_t now_ns, int64_t wall_ns, int64_t delay_ns);

#endif
