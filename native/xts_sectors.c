/*
 * AES-256-XTS over a run of 4 KiB sectors in one call, for the T2's SSD store.
 *
 * libgcrypt does all the cryptography (AES-256 in XTS mode). This loop only gives each
 * sector its own tweak (its LBA, little-endian) and skips all-zero stored sectors on
 * decryption (they are unwritten and read as zeros). Python's `cryptography` needs a new
 * cipher context per sector, which costs more than the AES itself; one call per request here
 * lets sequential I/O run at the library's speed.
 *
 * Why libgcrypt and not OpenSSL: OpenSSL 3.0 (Debian 12's, Ubuntu 22.04's) runs XTS with
 * AES-NI on 128-bit registers, 171 µs per MiB on the development host; libgcrypt 1.10 runs
 * it with VAES on 256-bit registers (AVX2) in ~100 µs. The cipher is most of what a large
 * SSD read costs. Every Debian and Ubuntu system has libgcrypt (systemd links it);
 * tests/t2/test_xts.py checks these bytes against the `cryptography` library's (OpenSSL's)
 * sector by sector.
 *
 * Declared without libgcrypt's header (its stable ABI: libgcrypt.so.20) so that only the
 * runtime library is needed to build.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct gcry_cipher_handle *gcry_cipher_hd_t;
typedef unsigned int gcry_error_t;
extern const char *gcry_check_version(const char *req_version);
extern gcry_error_t gcry_control(int cmd, ...);
extern gcry_error_t gcry_cipher_open(gcry_cipher_hd_t *handle, int algo, int mode,
                                     unsigned int flags);
extern void gcry_cipher_close(gcry_cipher_hd_t h);
extern gcry_error_t gcry_cipher_setkey(gcry_cipher_hd_t h, const void *key, size_t keylen);
extern gcry_error_t gcry_cipher_setiv(gcry_cipher_hd_t h, const void *iv, size_t ivlen);
extern gcry_error_t gcry_cipher_encrypt(gcry_cipher_hd_t h, void *out, size_t outsize,
                                        const void *in, size_t inlen);
extern gcry_error_t gcry_cipher_decrypt(gcry_cipher_hd_t h, void *out, size_t outsize,
                                        const void *in, size_t inlen);

#define GCRY_CIPHER_AES256 9
#define GCRY_CIPHER_MODE_XTS 13
#define GCRYCTL_DISABLE_SECMEM 37
#define GCRYCTL_INITIALIZATION_FINISHED 38
#define MEDIA_KEY_BYTES 64

/* A context: the library's handle and the direction it runs. */
struct xts {
    gcry_cipher_hd_t handle;
    int encrypt;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_ready;

/* libgcrypt wants its version checked before any other call. Its secure memory (for keys
 * it must never swap) is off: the media key lives in the SEP's Python objects anyway. */
static void start_library(void)
{
    if (gcry_check_version("1.8.0") != NULL) {
        gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
        gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
        library_ready = 1;
    }
}

void xts_free(void *ctx);

/* A context for one 512-bit media key; encrypt = 1 or decrypt = 0. NULL on failure. */
void *xts_new(const unsigned char *key, int encrypt)
{
    pthread_once(&library_once, start_library);
    if (!library_ready) {
        return NULL;
    }
    struct xts *x = calloc(1, sizeof *x);
    if (x == NULL) {
        return NULL;
    }
    if (gcry_cipher_open(&x->handle, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS, 0) != 0) {
        free(x);
        return NULL;
    }
    x->encrypt = encrypt;
    if (gcry_cipher_setkey(x->handle, key, MEDIA_KEY_BYTES) != 0) {
        xts_free(x);
        return NULL;
    }
    return x;
}

void xts_free(void *ctx)
{
    struct xts *x = ctx;
    if (x != NULL) {
        gcry_cipher_close(x->handle);
        free(x);
    }
}

static int all_zero(const unsigned char *p, size_t n)
{
    static const unsigned char zeros[4096];
    for (size_t done = 0; done < n; done += sizeof(zeros)) {
        size_t chunk = n - done < sizeof(zeros) ? n - done : sizeof(zeros);
        if (memcmp(p + done, zeros, chunk) != 0) {
            return 0;
        }
    }
    return 1;
}

static int one_sector(void *ctx, unsigned char *out, const unsigned char *in, uint64_t n,
                      size_t sector_size)
{
    struct xts *x = ctx;
    unsigned char tweak[16] = {0};
    for (int b = 0; b < 8; b++) {
        tweak[b] = (unsigned char)(n >> (8 * b));
    }
    if (gcry_cipher_setiv(x->handle, tweak, sizeof tweak) != 0) {
        return -1;
    }
    /* libgcrypt works in place when given no input */
    const void *from = in == out ? NULL : in;
    size_t length = in == out ? 0 : sector_size;
    gcry_error_t error = x->encrypt ?
        gcry_cipher_encrypt(x->handle, out, sector_size, from, length) :
        gcry_cipher_decrypt(x->handle, out, sector_size, from, length);
    return error != 0 ? -1 : 0;
}

/* In place over `count` sectors starting at `lba`. 0 on success, -1 on a library error. */
int xts_sectors(void *ctx, unsigned char *buf, uint64_t lba, size_t count,
                size_t sector_size, int skip_zero_sectors)
{
    for (size_t i = 0; i < count; i++) {
        unsigned char *sector = buf + i * sector_size;
        if (skip_zero_sectors && all_zero(sector, sector_size)) {
            continue;
        }
        if (one_sector(ctx, sector, sector, lba + i, sector_size)) {
            return -1;
        }
    }
    return 0;
}

/* From `in` to `out` (which must not overlap) over `count` sectors starting at `lba`: a
 * write's encryption straight out of the guest's pages, with no copy before it. */
int xts_sectors_to(void *ctx, unsigned char *out, const unsigned char *in, uint64_t lba,
                   size_t count, size_t sector_size)
{
    for (size_t i = 0; i < count; i++) {
        if (one_sector(ctx, out + i * sector_size, in + i * sector_size, lba + i,
                       sector_size)) {
            return -1;
        }
    }
    return 0;
}
