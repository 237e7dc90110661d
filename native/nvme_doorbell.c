/*
 * The NVMe controller's doorbells of its I/O queues, served on the vCPU's thread without
 * Python, its GIL or the machine's lock (imacpro/devices/nvme_doorbell.py binds it;
 * imacpro/devices/nvme.py is the controller).
 *
 * Why C: with the I/O commands themselves in C (nvme_io.c), a doorbell still cost its
 * vCPU the machine's lock, Python's GIL and some 20-25 µs of Python (the MMIO callback,
 * the register decode, copying the queue in and out, the MSI through the APIC bus), on
 * the path of every read and write the guest waits for.
 *
 * The page of doorbells (BAR0 + 1000h) is mapped into each engine with these accessors.
 * A 32-bit write of an I/O SQ's tail or CQ's head is served here while the controller is
 * "armed": the queue exists, the value is in range; the SQ's plain reads and writes then
 * run (nvme_io_run) and the completion interrupt goes to the CPU through the APICs' C
 * (apic_bus_send_fixed) when the CQ's message is a fixed, physical, edge one. Anything
 * else is Python's: the admin queue, an unknown queue or value (an asynchronous event), a
 * command that is not plain at an SQ's head (after the plain ones before it ran here), a
 * message the APICs' C cannot send, another width. Python is then handed the same write
 * (its `slow_write`), which is idempotent for a tail or head already set: it runs what is
 * left from the queue's head. An interrupt this side cannot send goes to `slow_interrupt`.
 *
 * State and locking: `mu` guards `s`. Python "takes" the state before it does anything to
 * the controller (a register or configuration write, a timer, save, load, reset): the
 * queues' heads, tails and phases come back to its objects, and the doorbells wait on `mu`
 * meanwhile; it "gives" the state back when it is done, armed or not. Lock order: the
 * machine's lock, then `mu`. Nothing here takes the machine's lock or the GIL while it
 * holds `mu`, nor sends an interrupt (waking a CPU may call Python): the slow calls and
 * the messages come after `mu` is let go.
 *
 * Everything here comes from a guest: the offset and value of the write are checked
 * against the queues' sizes before they are used; nvme_io_run checks the commands.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "nvme_io.h"

#define QUEUES 17               /* the admin queue and nvme.py's MAX_IO_QUEUES (16) */
#define IO_SQE_SIZE 128u        /* Apple's I/O submission entries (nvme.py's IO_SQE) */

typedef void (*mmio_write_fn)(void *uc, uint64_t offset, unsigned size, uint64_t value,
                              void *opaque);
typedef int (*send_fixed_fn)(void *bus, int dest, int vector);
typedef void (*slow_interrupt_fn)(int cqid);

/* How a CQ's completions are signalled. */
enum { IRQ_NONE = 0, IRQ_FIXED = 1, IRQ_PYTHON = 2 };

struct nvme_db_queue {          /* an SQ's or a CQ's */
    uint64_t base;
    uint32_t size;              /* entries; 0: no such queue */
    uint32_t head, tail;
    uint32_t cqid;              /* an SQ's CQ */
    uint32_t phase, reserved;   /* a CQ's */
    int32_t irq;                /* a CQ's: IRQ_NONE, IRQ_FIXED, IRQ_PYTHON */
    int32_t dest, vector;       /* IRQ_FIXED: the APIC ID and the vector */
    uint32_t pad;
};

/* The state Python takes and gives (nvme_doorbell.py's State has the same layout). */
struct nvme_db_state {
    int32_t armed;              /* the doorbells are served here */
    int32_t fd;
    void **decrypt;
    uint64_t ndecrypt;
    void **encrypt;
    uint64_t nencrypt;
    const struct ram_range *ram;
    uint64_t nram;
    uint64_t sectors;
    uint32_t sector_size, nsid, max_transfer, write_cache;
    void *bus;                  /* the APICs' struct apic_bus; NULL: no IRQ_FIXED */
    send_fixed_fn send_fixed;
    struct nvme_db_queue sq[QUEUES], cq[QUEUES];
    /* what ran here since Python last took the state */
    uint64_t reads, read_bytes, writes, write_bytes;
};

struct nvme_doorbell {
    pthread_mutex_t mu;
    struct nvme_db_state s;
    uint64_t served;            /* doorbell writes served here, ever (atomic) */
    mmio_write_fn slow_write;
    slow_interrupt_fn slow_interrupt;
};

struct nvme_doorbell *nvme_doorbell_new(mmio_write_fn slow_write,
                                        slow_interrupt_fn slow_interrupt)
{
    struct nvme_doorbell *db = calloc(1, sizeof *db);
    if (db != NULL) {
        pthread_mutex_init(&db->mu, NULL);
        db->slow_write = slow_write;
        db->slow_interrupt = slow_interrupt;
    }
    return db;
}

void nvme_doorbell_free(struct nvme_doorbell *db)
{
    if (db != NULL) {
        pthread_mutex_destroy(&db->mu);
        free(db);
    }
}

/* Python takes the state into `out`: the doorbells wait until it gives it back. The counts
 * of what ran here start again from zero. */
void nvme_doorbell_take(struct nvme_doorbell *db, struct nvme_db_state *out)
{
    pthread_mutex_lock(&db->mu);
    *out = db->s;
    db->s.reads = db->s.read_bytes = db->s.writes = db->s.write_bytes = 0;
}

/* Python gives the state back, as it now is. */
void nvme_doorbell_give(struct nvme_doorbell *db, const struct nvme_db_state *in)
{
    db->s = *in;
    db->s.reads = db->s.read_bytes = db->s.writes = db->s.write_bytes = 0;
    pthread_mutex_unlock(&db->mu);
}

/* The SQ's plain commands from its head, into its CQ: nvme_io_run's answer, and in
 * `posted` the bit of the CQ if any completion was posted. */
static int run_sq(struct nvme_db_state *s, int qid, uint32_t *posted)
{
    struct nvme_db_queue *sq = &s->sq[qid];
    if (sq->cqid == 0 || sq->cqid >= QUEUES) {
        return IO_PYTHON;
    }
    struct nvme_db_queue *cq = &s->cq[sq->cqid];
    struct nvme_io io = {
        .fd = s->fd, .sector_size = s->sector_size, .sectors = s->sectors,
        .decrypt = s->decrypt, .ndecrypt = s->ndecrypt,
        .encrypt = s->encrypt, .nencrypt = s->nencrypt,
        .ram = s->ram, .nram = s->nram, .nsid = s->nsid, .max_transfer = s->max_transfer,
        .write_cache = s->write_cache, .sqid = (uint32_t)qid,
        .sq_base = sq->base, .sq_size = sq->size, .sq_head = sq->head, .sq_tail = sq->tail,
        .sq_entry_size = IO_SQE_SIZE,
        .cq_base = cq->base, .cq_size = cq->size, .cq_head = cq->head, .cq_tail = cq->tail,
        .cq_phase = cq->phase, .cq_reserved = cq->reserved,
    };
    int answer = nvme_io_run(&io);
    sq->head = io.sq_head;
    cq->tail = io.cq_tail;
    cq->phase = io.cq_phase;
    s->reads += io.reads;
    s->read_bytes += io.read_bytes;
    s->writes += io.writes;
    s->write_bytes += io.write_bytes;
    if (io.posted) {
        *posted |= 1u << sq->cqid;
    }
    return answer;
}

/* The doorbell page's reads: doorbells read 0 (nvme.py's read). */
uint64_t nvme_doorbell_mmio_read(void *uc, uint64_t offset, unsigned size, void *opaque)
{
    return 0;
}

void nvme_doorbell_mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value,
                              void *opaque)
{
    struct nvme_doorbell *db = opaque;
    struct nvme_db_state *s = &db->s;
    uint64_t index = offset / 4, qid = index / 2;
    int is_cq = (int)(index % 2);
    if (size != 4 || offset % 4 || qid == 0 || qid >= QUEUES) {
        db->slow_write(uc, offset, size, value, opaque);
        return;
    }
    pthread_mutex_lock(&db->mu);
    struct nvme_db_queue *q = is_cq ? &s->cq[qid] : &s->sq[qid];
    if (!s->armed || q->size == 0 || value >= q->size) {
        pthread_mutex_unlock(&db->mu);
        db->slow_write(uc, offset, size, value, opaque);
        return;
    }
    __atomic_add_fetch(&db->served, 1, __ATOMIC_RELAXED);
    uint32_t posted = 0;        /* the CQs that got completions, by bit */
    int python = 0;
    if (is_cq) {
        q->head = (uint32_t)value;
        for (int sqid = 1; sqid < QUEUES; sqid++) {
            struct nvme_db_queue *sq = &s->sq[sqid];
            if (sq->size && sq->cqid == qid && sq->head != sq->tail) {
                python |= run_sq(s, sqid, &posted) == IO_PYTHON;
            }
        }
    } else {
        q->tail = (uint32_t)value;
        python = run_sq(s, (int)qid, &posted) == IO_PYTHON;
    }
    /* The messages go after `mu` is let go: waking a halted CPU may call Python (the
     * single-threaded loop's wake takes the machine's lock, which a thread waiting for `mu`
     * may hold). A message sent late is only late; none is lost. */
    struct { int cqid, irq, dest, vector; } send[QUEUES];
    int nsend = 0;
    for (int cqid = 1; cqid < QUEUES; cqid++) {
        struct nvme_db_queue *cq = &s->cq[cqid];
        if (posted >> cqid & 1 && cq->irq != IRQ_NONE) {
            send[nsend].cqid = cqid;
            send[nsend].irq = cq->irq;
            send[nsend].dest = cq->dest;
            send[nsend].vector = cq->vector;
            nsend++;
        }
    }
    void *bus = s->bus;
    send_fixed_fn send_fixed = s->send_fixed;
    pthread_mutex_unlock(&db->mu);
    for (int i = 0; i < nsend; i++) {
        if (send[i].irq != IRQ_FIXED || send_fixed == NULL ||
            !send_fixed(bus, send[i].dest, send[i].vector)) {
            db->slow_interrupt(send[i].cqid);
        }
    }
    if (python) {
        db->slow_write(uc, offset, size, value, opaque);
    }
}

/* Doorbell writes served here so far (for the tests; any thread, `mu` held or not). */
uint64_t nvme_doorbell_served(struct nvme_doorbell *db)
{
    return __atomic_load_n(&db->served, __ATOMIC_RELAXED);
}
