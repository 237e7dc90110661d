/* The SSD's helper threads (ssd_pool.c): a request's parts shared by the calling thread and
 * the helpers. */
#ifndef SSD_POOL_H
#define SSD_POOL_H

#include <stddef.h>

/* Runs one part with the cipher context of the thread that took it. */
typedef void (*ssd_part_work)(void *part, void *context);

/* The pool's own helper threads (none in a child of fork()). */
int ssd_pool_helpers(void);

/* How many threads may share a request: the calling thread, the helpers and the threads of
 * the process's own that help while they wait (ssd_pool_help). */
int ssd_pool_parts(void);

/* Parts of the request in progress, taken by a thread that waits for work of its own (the
 * run loop's idle workers); whether it took any. */
int ssd_pool_help(void);

/* work(part i, context) for each of the `count` parts (`part_size` bytes apart from
 * `parts`); the calling thread uses contexts[0], the n-th helper contexts[n], the outside
 * helpers those after, and only threads with a context take part. Returns when every part
 * is done. */
void ssd_pool_run(ssd_part_work work, void *parts, size_t part_size, int count,
                  void **contexts, int ncontexts);

#endif
