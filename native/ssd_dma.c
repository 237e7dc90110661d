/*
 * The SSD store's data path for a device's DMA: the sectors of one request read from the
 * T2's encrypted image straight into the guest pages a command names and decrypted there,
 * or gathered from them, encrypted and written, in one call.
 *
 * Why C: done in Python, a 1 MiB NVMe command cost a memory view and a slice copy per 4 KiB
 * page (256 of them) plus a fresh 1 MiB buffer, more than the AES itself. Here the page list
 * is resolved against the guest's RAM ranges once, the host reads with one preadv into the
 * pages and libgcrypt decrypts them in place (xts_sectors.c); a write is encrypted straight
 * out of the guest's pages into a staging buffer and written with one pwrite. A request of
 * 128 KiB or more is cut into parts of whole sectors (64 KiB or more, at most 16) that the
 * calling thread and helpers on the host's other cores share (ssd_pool.c).
 * imacpro/t2/storage.py keeps the same path in Python for when this is not built; the tests
 * compare the two.
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

#include "ssd_dma.h"
#include "ssd_pool.h"

int xts_sectors(void *ctx, unsigned char *buf, uint64_t lba, size_t count,
                size_t sector_size, int skip_zero_sectors);
int xts_sectors_to(void *ctx, unsigned char *out, const unsigned char *in, uint64_t lba,
                   size_t count, size_t sector_size);

#define PAGE 4096u
#define MAX_PARTS 16
#define MIN_PART (64u << 10)    /* a smaller part costs more to hand over than it saves */

/* Per thread: the request's host pieces, its parts' pieces and their copies for preadv, and
 * a buffer for gathered, bounced or encrypted sectors. */
static __thread struct iovec *pieces;
static __thread size_t pieces_room;
static __thread struct iovec *part_pieces;
static __thread size_t part_pieces_room;
static __thread unsigned char *bounce;
static __thread size_t bounce_room;

unsigned char *ssd_host_address(const struct ram_range *ram, size_t nram, uint64_t guest,
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
 * SSD_ error. */
static long resolve(const struct ram_range *ram, size_t nram, const uint64_t *pages,
                    size_t npages, size_t length)
{
    if (grow((void **)&pieces, &pieces_room, (npages + 1) * sizeof(struct iovec))) {
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
        unsigned char *host = ssd_host_address(ram, nram, address, chunk);
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

/* One part of a request, whole sectors, run by one thread with its own cipher context (a
 * context is never shared by threads; ssd_pool.c). */
struct part {
    int fd;
    uint64_t lba;               /* its first sector */
    size_t sector_size;
    struct iovec *iov;          /* its guest pieces, whole sectors each */
    size_t count;
    size_t length;
    struct iovec *scratch;      /* a read: room for `count` pieces, the copy preadv moves */
    unsigned char *staging;     /* a write: room for `length` bytes of ciphertext */
    int status;
    int error;                  /* errno, when status is SSD_IO_ERROR */
};

static int write_all(int fd, const unsigned char *data, size_t length, uint64_t offset)
{
    for (size_t done = 0; done < length;) {
        ssize_t put = pwrite(fd, data + done, length - done, (off_t)(offset + done));
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

static void read_part(void *opaque, void *xts)
{
    struct part *p = opaque;
    memcpy(p->scratch, p->iov, p->count * sizeof(struct iovec));
    p->status = read_pieces(p->fd, p->lba * p->sector_size, p->scratch, p->count);
    p->error = errno;
    uint64_t sector = p->lba;
    for (size_t i = 0; i < p->count && p->status == SSD_OK; i++) {
        size_t sectors = p->iov[i].iov_len / p->sector_size;
        if (xts_sectors(xts, p->iov[i].iov_base, sector, sectors, p->sector_size, 1)) {
            p->status = SSD_CRYPTO;
        }
        sector += sectors;
    }
}

/* Encrypted straight from the guest's pages into the staging buffer, then written. */
static void write_part(void *opaque, void *xts)
{
    struct part *p = opaque;
    size_t at = 0;
    uint64_t sector = p->lba;
    for (size_t i = 0; i < p->count; i++) {
        size_t sectors = p->iov[i].iov_len / p->sector_size;
        if (xts_sectors_to(xts, p->staging + at, p->iov[i].iov_base, sector, sectors,
                           p->sector_size)) {
            p->status = SSD_CRYPTO;
            return;
        }
        at += p->iov[i].iov_len;
        sector += sectors;
    }
    p->status = write_all(p->fd, p->staging, p->length, p->lba * p->sector_size);
    p->error = errno;
}

/* How many parts: none under MIN_PART, at most MAX_PARTS, and one alone when only one context
 * is given (no other thread could take a part). An idle worker may take parts even on a host
 * with no pool helper (ssd_pool.c's outside helpers). */
static int part_count(size_t nxts, size_t length, size_t sector_size)
{
    size_t n = length / MIN_PART;
    if (n > MAX_PARTS) {
        n = MAX_PARTS;
    }
    if (n > length / sector_size) {
        n = length / sector_size;
    }
    if (n < 2 || nxts < 2) {
        return 1;
    }
    return (int)n;
}

/* The request's `count` pieces (whole sectors, `length` bytes from `lba` of the image `fd`)
 * as `n` parts of nearly equal whole-sector lengths; a piece a boundary falls in is split
 * in two. A write's parts put their ciphertext in `staging`, one after the other. */
static int make_parts(struct part *parts, int n, int fd, size_t count, uint64_t lba,
                      size_t length, size_t sector_size, unsigned char *staging)
{
    if (grow((void **)&part_pieces, &part_pieces_room,
             2 * (count + (size_t)n) * sizeof(struct iovec))) {
        return SSD_NO_MEMORY;
    }
    size_t sectors = length / sector_size, used = 0, piece = 0, into = 0, start = 0;
    for (int k = 0; k < n; k++) {
        size_t end = sectors * (size_t)(k + 1) / (size_t)n;
        struct part *p = &parts[k];
        p->fd = fd;
        p->sector_size = sector_size;
        p->lba = lba + start;
        p->length = (end - start) * sector_size;
        p->staging = staging ? staging + start * sector_size : NULL;
        p->iov = part_pieces + used;
        p->scratch = part_pieces + count + (size_t)n + used;
        p->count = 0;
        for (size_t left = p->length; left;) {
            size_t chunk = pieces[piece].iov_len - into;
            if (chunk > left) {
                chunk = left;
            }
            p->iov[p->count].iov_base = (unsigned char *)pieces[piece].iov_base + into;
            p->iov[p->count].iov_len = chunk;
            p->count++;
            left -= chunk;
            into += chunk;
            if (into == pieces[piece].iov_len) {
                piece++;
                into = 0;
            }
        }
        used += p->count;
        start = end;
    }
    return SSD_OK;
}

/* The parts run on the pool; the first failure is the request's, with its errno. */
static int run_parts(struct part *parts, int n, ssd_part_work work, void **xts, size_t nxts)
{
    ssd_pool_run(work, parts, sizeof(struct part), n, xts, (int)nxts);
    for (int k = 0; k < n; k++) {
        if (parts[k].status != SSD_OK) {
            errno = parts[k].error;
            return parts[k].status;
        }
    }
    return SSD_OK;
}

/* `length` bytes of sectors from `lba` into the guest pages `pages`, decrypted with the
 * decryption contexts `xts` (one per thread that may take part, ssd_pool_parts(); at least
 * one). Unwritten sectors read as zeros. */
int ssd_dma_read(int fd, uint64_t lba, size_t sector_size, void **xts, size_t nxts,
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
        struct part parts[MAX_PARTS];
        int n = part_count(nxts, length, sector_size);
        int status = make_parts(parts, n, fd, (size_t)count, lba, length, sector_size, NULL);
        return status ? status : run_parts(parts, n, read_part, xts, nxts);
    }
    if (grow((void **)&bounce, &bounce_room, length)) {
        return SSD_NO_MEMORY;
    }
    struct iovec whole = {bounce, length};
    int status = read_pieces(fd, offset, &whole, 1);
    if (status) {
        return status;
    }
    if (xts_sectors(xts[0], bounce, lba, length / sector_size, sector_size, 1)) {
        return SSD_CRYPTO;
    }
    size_t at = 0;
    for (long i = 0; i < count; i++) {
        memcpy(pieces[i].iov_base, bounce + at, pieces[i].iov_len);
        at += pieces[i].iov_len;
    }
    return SSD_OK;
}

/* `length` bytes of the guest pages `pages`, encrypted with the encryption contexts `xts`
 * (as for a read), written as the sectors from `lba`. The guest's pages are not changed. */
int ssd_dma_write(int fd, uint64_t lba, size_t sector_size, void **xts, size_t nxts,
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
    if (whole_sectors((size_t)count, sector_size)) {
        struct part parts[MAX_PARTS];
        int n = part_count(nxts, length, sector_size);
        int status = make_parts(parts, n, fd, (size_t)count, lba, length, sector_size, bounce);
        return status ? status : run_parts(parts, n, write_part, xts, nxts);
    }
    /* A first page that starts inside its page: gathered, then encrypted in place. */
    size_t at = 0;
    for (long i = 0; i < count; i++) {
        memcpy(bounce + at, pieces[i].iov_base, pieces[i].iov_len);
        at += pieces[i].iov_len;
    }
    if (xts_sectors(xts[0], bounce, lba, length / sector_size, sector_size, 0)) {
        return SSD_CRYPTO;
    }
    return write_all(fd, bounce, length, lba * sector_size);
}
