/* The SSD store's data path for a device's DMA (ssd_dma.c), as nvme_io.c uses it. */
#ifndef SSD_DMA_H
#define SSD_DMA_H

#include <stddef.h>
#include <stdint.h>

/* A guest-physical RAM range and where the host has it (memory/ram.py's RamRange). */
struct ram_range {
    uint64_t guest_start;
    uint64_t size;
    unsigned char *host;
};

/* The statuses (imacpro/t2/xts.py has them as DMA_OK and the rest). */
enum {
    SSD_OK = 0,
    SSD_OUTSIDE_RAM = -1,   /* a page is not RAM: the device's data transfer error */
    SSD_MISALIGNED = -2,    /* a page after the first does not start a page */
    SSD_IO_ERROR = -3,      /* the host's read or write failed: errno says why */
    SSD_SHORT_IMAGE = -4,   /* the image ended before the request did */
    SSD_CRYPTO = -5,        /* the cipher failed */
    SSD_NO_MEMORY = -6,
};

/* Where the host has [guest, guest + length), if all of it is in one RAM range; else NULL. */
unsigned char *ssd_host_address(const struct ram_range *ram, size_t nram, uint64_t guest,
                                uint64_t length);

int ssd_dma_read(int fd, uint64_t lba, size_t sector_size, void **xts, size_t nxts,
                 const struct ram_range *ram, size_t nram,
                 const uint64_t *pages, size_t npages, size_t length);
int ssd_dma_write(int fd, uint64_t lba, size_t sector_size, void **xts, size_t nxts,
                  const struct ram_range *ram, size_t nram,
                  const uint64_t *pages, size_t npages, size_t length);

#endif
