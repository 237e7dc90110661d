/*
 * AES-256-XTS over a run of 4 KiB sectors in one call, for the T2's SSD store.
 *
 * OpenSSL does all the cryptography (EVP, AES-256-XTS). This loop only gives each sector its
 * own tweak (its LBA, little-endian) and skips all-zero stored sectors on decryption (they
 * are unwritten and read as zeros). Python's `cryptography` needs a new cipher context per
 * sector, which costs more than the AES itself; one call per request here lets sequential
 * I/O run at OpenSSL's speed.
 *
 * Declared without OpenSSL's headers (a stable ABI) so that only the runtime libcrypto.so.3
 * is needed to build.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
extern EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);
extern void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx);
extern const EVP_CIPHER *EVP_aes_256_xts(void);
extern int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, void *engine,
                             const unsigned char *key, const unsigned char *iv, int enc);
extern int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                            const unsigned char *in, int inl);

/* A context for one 512-bit media key; encrypt = 1 or decrypt = 0. NULL on failure. */
void *xts_new(const unsigned char *key, int encrypt)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_xts(), NULL, key, NULL, encrypt) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void xts_free(void *ctx)
{
    EVP_CIPHER_CTX_free(ctx);
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
    unsigned char tweak[16] = {0};
    int outl;
    for (int b = 0; b < 8; b++) {
        tweak[b] = (unsigned char)(n >> (8 * b));
    }
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, tweak, -1) != 1 ||
        EVP_CipherUpdate(ctx, out, &outl, in, (int)sector_size) != 1) {
        return -1;
    }
    return 0;
}

/* In place over `count` sectors starting at `lba`. 0 on success, -1 on an OpenSSL error. */
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
