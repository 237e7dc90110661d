/*
 * The SSD store's data path for a device's DMA: the sectors of one request read from the
 * T2's encrypted image straight into the guest pages a command names and decrypted there,
 * or gathered from them, encrypted and written, in one call.
 *
 * Why C: done in Python, a 1 MiB NVMe command cost a memory view and a slice copy per 4 KiB
 * page (256 of them) plus a fresh 1 MiB buffer, more than the AES itself. Here the page list
 * is resolved against the guest's RAM ranges once, the host reads with one preadv into the
 * pages and OpenSSL decrypts them in place (xts_sectors.c). imacpro/t2/storage.py keeps the
 * same path in Python for when this is not built; the tests compare the two.
 *
 * Everything it is given comes from a guest: each page must lie wholly inside one RAM range
 * and every page after the first must be page-aligned; nothing outside the ranges is
 * touched. A request whose pages do not hold whole sectors (a first page that starts inside
 * its page) goes through a per-thread buffer instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

int xts_sectors(void *ctx, unsigned char *buf, uint64_t lba, size_t count,
                size_t sector_size, int skip_zero_sectors);

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
    SSD_CRYPTO = -5,        /* OpenSSL failed */
    SSD_NO_MEMORY = -6,
};

#define PAGE 4096u

/* Per thread: the request's host pieces, and a buffer for gathered or bounced sectors. */
static __thread struct iovec *pieces;
static __thread size_t pieces_room;
static __thread unsigned char *bounce;
static __thread size_t bounce_room;

static unsigned char *host_address(const struct ram_range *ram, size_t nram, uint64_t guest,
                                   uint64_t length)
{
    for (size_t i = 0; i < nram; i++) {
        if (guest >= ram[i].guest_start && guest - ram[i].guest_start <= ram[i].size &&
            length <= ram[i].size - (guest - ram[i].guest_start)) {
            return ram[i].host + (guest - ram[i].guest_start);
        }
    }
    return NULL;
}

static int grow(void **buffer, size_t *room, size_t needed)
{
    if (needed <= *room) {
        return 0;
    }
    void *larger = realloc(*buffer, needed);
    if (larger == NULL) {
        return -1;
    }
    *buffer = larger;
    *room = needed;
    return 0;
}

/* The host pieces `length` bytes at the guest pages cover: pages[0] may start inside its
 * page, every later one starts a page; adjacent host memory is merged. The count, or an
 * SSD_ error. `pieces` has room for twice the count: a read gives preadv a copy. */
static long resolve(const struct ram_range *ram, size_t nram, const uint64_t *pages,
                    size_t npages, size_t length)
{
    if (grow((void **)&pieces, &pieces_room, 2 * (npages + 1) * sizeof(struct iovec))) {
        return SSD_NO_MEMORY;
    }
    size_t count = 0, left = length;
    for (size_t i = 0; i < npages && left; i++) {
        uint64_t address = pages[i];
        if (i > 0 && address % PAGE) {
            return SSD_MISALIGNED;
        }
        size_t chunk = PAGE - address % PAGE;
        if (chunk > left) {
            chunk = left;
        }
        unsigned char *host = host_address(ram, nram, address, chunk);
        if (host == NULL) {
            return SSD_OUTSIDE_RAM;
        }
        if (count && (unsigned char *)pieces[count - 1].iov_base + pieces[count - 1].iov_len
                     == host) {
            pieces[count - 1].iov_len += chunk;
        } else {
            pieces[count].iov_base = host;
            pieces[count].iov_len = chunk;
            count++;
        }
        left -= chunk;
    }
    return left ? SSD_MISALIGNED : (long)count;
}

static int whole_sectors(size_t count, size_t sector_size)
{
    for (size_t i = 0; i < count; i++) {
        if (pieces[i].iov_len % sector_size) {
            return 0;
        }
    }
    return 1;
}

/* Read all of [offset, offset + length) into the pieces (preadv takes at most IOV_MAX). */
static int read_pieces(int fd, uint64_t offset, struct iovec *iov, size_t count)
{
    while (count) {
        int batch = count > 1024 ? 1024 : (int)count;
        ssize_t got = preadv(fd, iov, batch, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return SSD_IO_ERROR;
        }
        if (got == 0) {
            return SSD_SHORT_IMAGE;
        }
        offset += (uint64_t)got;
        while (count && (size_t)got >= iov->iov_len) {
            got -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count && got) {
            iov->iov_base = (unsigned char *)iov->iov_base + got;
            iov->iov_len -= (size_t)got;
        }
    }
    return SSD_OK;
}

static int hole(int fd, uint64_t offset, size_t length)
{
    off_t data = lseek(fd, (off_t)offset, SEEK_DATA);
    if (data < 0) {
        return errno == ENXIO;          /* no data after offset (EINVAL etc.: just read) */
    }
    return (uint64_t)data >= offset + length;
}

/* `length` bytes of sectors from `lba` (at byte `offset` of the image) into the guest pages
 * `pages`, decrypted with the decryption context `xts`. Unwritten sectors read as zeros. */
int ssd_dma_read(int fd, uint64_t lba, size_t sector_size, void *xts,
                 const struct ram_range *ram, size_t nram,
                 const uint64_t *pages, size_t npages, size_t length)
{
    uint64_t offset = lba * sector_size;
    long count = resolve(ram, nram, pages, npages, length);
    if (count < 0) {
        return (int)count;
    }
    if (hole(fd, offset, length)) {
        for (long i = 0; i < count; i++) {
            memset(pieces[i].iov_base, 0, pieces[i].iov_len);
        }
        return SSD_OK;
    }
    if (whole_sectors((size_t)count, sector_size)) {
        /* read_pieces moves the pieces along as it goes: it gets a copy, and the pieces
         * stay for the decryption. */
        size_t n = (size_t)count;
        memcpy(pieces + n, pieces, n * sizeof(struct iovec));
        int status = read_pieces(fd, offset, pieces + n, n);
        if (status) {
            return status;
        }
        uint64_t sector = lba;
        for (size_t i = 0; i < n; i++) {
            size_t sectors = pieces[i].iov_len / sector_size;
            if (xts_sectors(xts, pieces[i].iov_base, sector, sectors, sector_size, 1)) {
                return SSD_CRYPTO;
            }
            sector += sectors;
        }
        return SSD_OK;
    }
    if (grow((void **)&bounce, &bounce_room, length)) {
        return SSD_NO_MEMORY;
    }
    struct iovec whole = {bounce, length};
    int status = read_pieces(fd, offset, &whole, 1);
    if (status) {
        return status;
    }
    if (xts_sectors(xts, bounce, lba, length / sector_size, sector_size, 1)) {
        return SSD_CRYPTO;
    }
    size_t at = 0;
    for (long i = 0; i < count; i++) {
        memcpy(pieces[i].iov_base, bounce + at, pieces[i].iov_len);
        at += pieces[i].iov_len;
    }
    return SSD_OK;
}

/* `length` bytes of the guest pages `pages`, encrypted with the encryption context `xts`,
 * written as the sectors from `lba`. The guest's pages are not changed. */
int ssd_dma_write(int fd, uint64_t lba, size_t sector_size, void *xts,
                  const struct ram_range *ram, size_t nram,
                  const uint64_t *pages, size_t npages, size_t length)
{
    long count = resolve(ram, nram, pages, npages, length);
    if (count < 0) {
        return (int)count;
    }
    if (grow((void **)&bounce, &bounce_room, length)) {
        return SSD_NO_MEMORY;
    }
    size_t at = 0;
    for (long i = 0; i < count; i++) {
        memcpy(bounce + at, pieces[i].iov_base, pieces[i].iov_len);
        at += pieces[i].iov_len;
    }
    if (xts_sectors(xts, bounce, lba, length / sector_size, sector_size, 0)) {
        return SSD_CRYPTO;
    }
    uint64_t offset = lba * sector_size;
    for (size_t done = 0; done < length;) {
        ssize_t put = pwrite(fd, bounce + done, length - done, (off_t)(offset + done));
        if (put < 0) {
            if (errno == EINTR) {
                continue;
            }
            return SSD_IO_ERROR;
        }
        if (put == 0) {
            errno = ENOSPC;
            return SSD_IO_ERROR;
        }
        done += (size_t)put;
    }
    return SSD_OK;
}
