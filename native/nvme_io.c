/*
 * The NVMe controller's I/O fast path (imacpro/devices/nvme.py keeps the controller): the
 * reads and writes an I/O submission queue holds, run from its head while each is the
 * plain case, with their data moved by ssd_dma.c and their completions posted.
 *
 * Why C: a 4 KiB read cost some 60 µs of Python inside a running machine (the SQE parse,
 * the PRPs, the store's checks, the completion; 6 µs when measured alone, the rest the
 * caches the guest's code had taken), which made a random read take twice QEMU's time.
 *
 * The plain case: opcode Read or Write, no fused operation or SGL, namespace 1, the LBAs in
 * range, at most MDTS, PRPs that resolve to RAM, a write that needs no flush (the volatile
 * write cache on, no FUA), a completion slot in RAM, and the store's transfer succeeding.
 * Anything else stops the run with that command at the head: the controller runs it in
 * Python, which gives every error its status, then calls here again. So this path never
 * chooses a status but success; a transfer it gave up is redone whole by Python (a read or
 * a write of the same sectors again).
 *
 * Everything it reads comes from a guest: the SQE is copied out of guest RAM once, before
 * it is looked at; a PRP list is read entry by entry into the page list; nothing outside
 * the RAM ranges is touched. A completion's phase word is written after the rest of the
 * entry, so a CPU polling the queue from another thread never sees half of one.
 */
#include <stdint.h>
#include <string.h>

#include "nvme_io.h"
#include "ssd_dma.h"

#define PAGE 4096u
#define CQE_SIZE 16u
#define SQE_USED 64u            /* 128-byte SQEs carry the command in their first 64 */
#define MAX_PAGES 257           /* MDTS's 256 pages, and one more for an unaligned start */
#define OP_WRITE 0x01
#define OP_READ 0x02

static uint32_t le32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The pages `length` bytes at PRP1/PRP2 name, into pages[] (NVMe 1.4 §4.3, as nvme.py's
 * _dma_pages): their count, or -1 for anything Python must judge. */
static int prp_pages(const struct nvme_io *io, uint64_t prp1, uint64_t prp2, uint64_t length,
                     uint64_t *pages)
{
    if (prp1 & 3) {
        return -1;
    }
    int n = 0;
    pages[n++] = prp1;
    uint64_t first = PAGE - prp1 % PAGE;
    uint64_t remaining = length > first ? length - first : 0;
    if (remaining == 0) {
        return n;
    }
    if (remaining <= PAGE) {
        pages[n++] = prp2;
        return n;
    }
    uint64_t count = (remaining + PAGE - 1) / PAGE, pointer = prp2;
    for (int lists = 1; lists <= MAX_PAGES; lists++) {
        if (pointer & 7) {
            return -1;
        }
        uint64_t slots = (PAGE - pointer % PAGE) / 8;
        const unsigned char *list = ssd_host_address(io->ram, io->nram, pointer, slots * 8);
        if (list == NULL) {
            return -1;
        }
        uint64_t take = count <= slots ? count : slots - 1;
        if (n + take > MAX_PAGES) {
            return -1;
        }
        for (uint64_t i = 0; i < take; i++) {
            pages[n++] = le64(list + 8 * i);
        }
        count -= take;
        if (count == 0) {
            return n;
        }
        pointer = le64(list + 8 * (slots - 1));
    }
    return -1;                  /* a list that loops */
}

/* Runs the command `sqe` (a copy) if it is the plain case; 0 if done, -1 if Python must. */
static int run_command(struct nvme_io *io, const unsigned char *sqe)
{
    uint8_t opcode = sqe[0], flags = sqe[1];
    if ((opcode != OP_READ && opcode != OP_WRITE) || (flags & 0xC3) ||
        le32(sqe + 4) != io->nsid) {
        return -1;
    }
    uint64_t lba = le64(sqe + 40);
    uint32_t cdw12 = le32(sqe + 48);
    uint64_t count = (cdw12 & 0xFFFF) + 1;
    if (lba > io->sectors || count > io->sectors - lba) {
        return -1;
    }
    uint64_t length = count * io->sector_size;
    if (length > io->max_transfer) {
        return -1;
    }
    if (opcode == OP_WRITE && ((cdw12 >> 30 & 1) || !io->write_cache)) {
        return -1;              /* FUA or no write cache: the completion waits for a flush */
    }
    uint64_t pages[MAX_PAGES];
    int npages = prp_pages(io, le64(sqe + 24), le64(sqe + 32), length, pages);
    if (npages < 0) {
        return -1;
    }
    int status = opcode == OP_READ ?
        ssd_dma_read(io->fd, lba, io->sector_size, io->decrypt, io->ndecrypt, io->ram, io->nram,
                     pages, (size_t)npages, length) :
        ssd_dma_write(io->fd, lba, io->sector_size, io->encrypt, io->nencrypt, io->ram,
                      io->nram, pages, (size_t)npages, length);
    if (status != SSD_OK) {
        return -1;
    }
    if (opcode == OP_READ) {
        io->reads++;
        io->read_bytes += length;
    } else {
        io->writes++;
        io->write_bytes += length;
    }
    return 0;
}

static int cq_full(const struct nvme_io *io)
{
    return (io->cq_tail + io->cq_size - io->cq_head) % io->cq_size + io->cq_reserved >=
           io->cq_size - 1;
}

int nvme_io_run(struct nvme_io *io)
{
    if (io->sq_size == 0 || io->cq_size == 0 || io->sq_entry_size < SQE_USED ||
        (io->sq_base | io->cq_base) % CQE_SIZE) {
        return IO_PYTHON;
    }
    while (io->sq_head != io->sq_tail) {
        if (cq_full(io)) {
            return IO_CQ_FULL;
        }
        const unsigned char *entry = ssd_host_address(
            io->ram, io->nram, io->sq_base + (uint64_t)io->sq_head * io->sq_entry_size, SQE_USED);
        unsigned char *slot = ssd_host_address(
            io->ram, io->nram, io->cq_base + (uint64_t)io->cq_tail * CQE_SIZE, CQE_SIZE);
        if (entry == NULL || slot == NULL) {
            return IO_PYTHON;
        }
        unsigned char sqe[SQE_USED];
        memcpy(sqe, entry, SQE_USED);
        if (run_command(io, sqe) < 0) {
            return IO_PYTHON;
        }
        io->sq_head = (io->sq_head + 1) % io->sq_size;
        /* DW0 result, DW1 reserved, DW2 SQ head and SQ ID, DW3 CID and status with phase */
        uint32_t dw[3] = {0, 0, io->sq_head | io->sqid << 16};
        memcpy(slot, dw, sizeof dw);
        uint16_t cid = (uint16_t)(sqe[2] | sqe[3] << 8), phase = (uint16_t)io->cq_phase;
        memcpy(slot + 12, &cid, 2);
        __atomic_store_n((uint16_t *)(slot + 14), phase, __ATOMIC_RELEASE);
        io->cq_tail = (io->cq_tail + 1) % io->cq_size;
        if (io->cq_tail == 0) {
            io->cq_phase ^= 1;
        }
        io->posted++;
    }
    return IO_EMPTY;
}
