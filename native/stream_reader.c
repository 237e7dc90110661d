/*
 * A thread that drains a stream socket into a bounded ring, outside Python's interpreter.
 *
 * Why: passt (net/passt.py) writes the guest's incoming frames to a UNIX stream socket whose
 * buffer holds about 208 KiB, and what does not fit it drops (its TCP then sends again from
 * the gap). The run loop reads that socket only between vCPU slices, so a bulk transfer into
 * the guest overflows it and crawls. A Python thread cannot keep it drained either: it needs
 * the interpreter's lock, which the run loop holds while devices run. This thread needs no
 * lock but the ring's own, so the socket is read as soon as passt writes, and the run loop
 * takes whole runs of frames from the ring when it gets to them.
 *
 * It only moves bytes: the frames are parsed in Python (Passt.deliver), which bounds each
 * one. The ring is bounded: when it is full the thread stops reading until the consumer
 * takes some, so the socket fills and passt's own flow control (dropping) applies again.
 *
 * One producer (the thread) and one consumer (the run loop). The producer reads into the
 * ring's free space without the lock (the consumer never touches it) and publishes under
 * it; the consumer copies out under it. `notify_fd` (an eventfd) becomes readable when the
 * ring goes from empty to not empty, or when the stream ends, for the run loop's selector.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct reader {
    int fd, notify_fd, stop_fd;
    unsigned char *ring;
    size_t capacity, head, used;   /* head: the next byte to take; used: bytes held */
    int ended;                     /* the stream closed or failed: nothing more will come */
    int stopping;
    pthread_mutex_t lock;
    pthread_cond_t room;
    pthread_t thread;
};

static void signal_fd(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* Wait until the ring has room (or we are stopping); the free run after the held bytes. */
static size_t wait_for_room(struct reader *r, size_t *start)
{
    pthread_mutex_lock(&r->lock);
    while (r->used == r->capacity && !r->stopping)
        pthread_cond_wait(&r->room, &r->lock);
    size_t tail = (r->head + r->used) % r->capacity;
    size_t run = r->used == r->capacity ? 0
                 : (tail >= r->head ? r->capacity - tail : r->head - tail);
    int stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    *start = tail;
    return stopping ? 0 : run;
}

static void *drain(void *arg)
{
    struct reader *r = arg;
    struct pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->stop_fd, POLLIN, 0}};
    for (;;) {
        size_t start, run = wait_for_room(r, &start);
        if (run == 0)
            return NULL;                       /* stopping */
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            return NULL;
        ssize_t n = recv(r->fd, r->ring + start, run, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n <= 0)
            break;                             /* the peer closed, or the socket failed */
        pthread_mutex_lock(&r->lock);
        int was_empty = r->used == 0;
        r->used += (size_t)n;
        pthread_mutex_unlock(&r->lock);
        if (was_empty)
            signal_fd(r->notify_fd);
    }
    pthread_mutex_lock(&r->lock);
    r->ended = 1;
    pthread_mutex_unlock(&r->lock);
    signal_fd(r->notify_fd);
    return NULL;
}

void reader_free(struct reader *r);

/* A reader of `fd` (left open and owned by the caller) with a ring of `capacity` bytes, its
 * thread running. NULL if it cannot be made. */
struct reader *reader_new(int fd, size_t capacity)
{
    struct reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->fd = fd;
    r->capacity = capacity;
    r->ring = malloc(capacity);
    r->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->room, NULL);
    if (!r->ring || capacity == 0 || r->notify_fd < 0 || r->stop_fd < 0
        || pthread_create(&r->thread, NULL, drain, r) != 0) {
        r->stopping = -1;                      /* no thread to join */
        reader_free(r);
        return NULL;
    }
    return r;
}

int reader_notify_fd(struct reader *r)
{
    return r->notify_fd;
}

/* Copy up to `size` held bytes to `out`: the count; 0 when none are held and the stream
 * goes on; -1 when none are held and the stream has ended. */
long reader_take(struct reader *r, unsigned char *out, size_t size)
{
    uint64_t count;
    while (read(r->notify_fd, &count, sizeof count) > 0)
        ;                                      /* the run loop has looked: clear the signal */
    pthread_mutex_lock(&r->lock);
    size_t n = r->used < size ? r->used : size;
    size_t first = r->capacity - r->head < n ? r->capacity - r->head : n;
    memcpy(out, r->ring + r->head, first);
    memcpy(out + first, r->ring, n - first);
    r->head = (r->head + n) % r->capacity;
    r->used -= n;
    long result = n ? (long)n : (r->ended ? -1 : 0);
    pthread_cond_signal(&r->room);
    pthread_mutex_unlock(&r->lock);
    return result;
}

/* Stop the thread and free the reader (the socket stays open). */
void reader_free(struct reader *r)
{
    if (!r)
        return;
    if (r->stopping != -1) {
        pthread_mutex_lock(&r->lock);
        r->stopping = 1;
        pthread_cond_signal(&r->room);
        pthread_mutex_unlock(&r->lock);
        signal_fd(r->stop_fd);
        pthread_join(r->thread, NULL);
    }
    if (r->notify_fd >= 0)
        close(r->notify_fd);
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->room);
    free(r->ring);
    free(r);
}
