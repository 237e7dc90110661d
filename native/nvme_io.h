/* The NVMe controller's I/O fast path (nvme_io.c), as nvme_doorbell.c and Python use it. */
#ifndef NVME_IO_H
#define NVME_IO_H

#include <stdint.h>

#include "ssd_dma.h"

/* What the controller hands over (imacpro/devices/nvme_io.py's _NvmeIo has the same). */
struct nvme_io {
    int32_t fd;                 /* the store's image */
    uint32_t sector_size;       /* = the LBA size */
    uint64_t sectors;
    void **decrypt;             /* this thread's cipher contexts (ssd_pool.c's parts) */
    uint64_t ndecrypt;
    void **encrypt;
    uint64_t nencrypt;
    const struct ram_range *ram;
    uint64_t nram;
    uint32_t nsid;              /* the one namespace */
    uint32_t max_transfer;      /* bytes */
    uint32_t write_cache;       /* a write completes without a flush */
    uint32_t sqid;
    uint64_t sq_base;
    uint32_t sq_size, sq_head, sq_tail, sq_entry_size;
    uint64_t cq_base;
    uint32_t cq_size, cq_head, cq_tail, cq_phase, cq_reserved;
    /* counted here, added to the controller's statistics */
    uint64_t reads, read_bytes, writes, write_bytes, posted;
};

/* What nvme_io_run says of the queue it stopped at. */
enum { IO_EMPTY = 0, IO_CQ_FULL = 1, IO_PYTHON = 2 };

int nvme_io_run(struct nvme_io *io);

#endif
