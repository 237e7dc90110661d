/*
 * A numeric workload for the vector units, as compilers and libraries use them.
 *
 * Built static three ways: -O3 -march=skylake-avx512 (the compiler's AVX-512 code, glibc's
 * EVEX string functions, and the intrinsics below: gathers, scatters, compress, ternary
 * logic, conflict detection, two-table permutes, getexp/fixupimm/range, 64-bit integer
 * conversions, opmask arithmetic), -O3 -march=haswell (AVX2, FMA, F16C), and -O2 with
 * target_clones (GCC's function multi-versioning, which picks a clone by CPU model).
 *
 * Each kernel prints a hash of its results' bytes. The same binary run on the host CPU and
 * in the guest must print the same lines: the engine computes what silicon computes.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#define N 4096

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ull;
    }
    return h;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float fa[N], fb[N], fc[N];
static double da[N], db[N], dc[N];
static int32_t ia[N], ib[N], ic[N];
static int8_t ba[N], bb[N], bc[N];
static char text[N + 1];

static void report(const char *name, const void *p, size_t n)
{
    printf("%-10s %016llx\n", name, (unsigned long long)fnv(p, n, 0xcbf29ce484222325ull));
}

static void fill(void)
{
    for (int i = 0; i < N; i++) {
        fa[i] = (float)((int64_t)(next() % 2000001) - 1000000) / 1024.0f;
        fb[i] = (float)((int64_t)(next() % 2001) - 1000) / 7.0f;
        da[i] = (double)((int64_t)(next() % 2000001) - 1000000) / 3.0;
        db[i] = ldexp((double)(next() % 1000 + 1), (int)(next() % 40) - 20);
        ia[i] = (int32_t)next();
        ib[i] = (int32_t)(next() % 4096);
        ba[i] = (int8_t)next();
        bb[i] = (int8_t)next();
        text[i] = (char)('a' + next() % 26);
    }
    text[N] = 0;
}

static void matmul(void)
{
    enum { M = 48 };
    static float a[M][M], b[M][M], c[M][M];
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < M; j++) {
            a[i][j] = fa[i * M + j];
            b[i][j] = fb[i * M + j];
            c[i][j] = 0;
        }
    }
    for (int i = 0; i < M; i++) {
        for (int k = 0; k < M; k++) {
            for (int j = 0; j < M; j++) {
                c[i][j] += a[i][k] * b[k][j];
            }
        }
    }
    report("matmul", c, sizeof c);
}

static void stencil(void)
{
    for (int i = 1; i < N - 1; i++) {
        dc[i] = sqrt(fabs(da[i - 1] * 0.25 + da[i] * 0.5 + da[i + 1] * 0.25)) / db[i];
    }
    report("stencil", dc, sizeof dc);
    for (int i = 0; i < N; i++) {
        fc[i] = fminf(fa[i], fb[i]) + fmaxf(fa[i], -fb[i]) * (float)da[i];
    }
    report("minmax", fc, sizeof fc);
}

static void integers(void)
{
    for (int i = 0; i < N; i++) {
        ic[i] = (ia[i] >> (ib[i] & 31)) * 3 + (ia[i] & 0xffff) * (ib[i] | 1);
        int s = ba[i] + bb[i];
        bc[i] = s > 127 ? 127 : s < -128 ? -128 : s;
    }
    report("integers", ic, sizeof ic);
    report("saturate", bc, sizeof bc);
    static int32_t hist[4096];
    memset(hist, 0, sizeof hist);
    for (int i = 0; i < N; i++) {
        hist[ib[i]] += ia[i] & 7;
    }
    report("histogram", hist, sizeof hist);
}

static void convert(void)
{
    static int32_t out[N];
    static float back[N];
    for (int i = 0; i < N; i++) {
        out[i] = (int32_t)fa[i] ^ (int32_t)lrint(da[i]);
        back[i] = (float)da[i] + (float)out[i];
    }
    report("convert", out, sizeof out);
    report("narrow", back, sizeof back);
}

static int by_value(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static void strings(void)
{
    static int32_t sorted[N];
    size_t total = 0;
    char copy[N + 1];
    memcpy(sorted, ia, sizeof sorted);
    qsort(sorted, N, sizeof sorted[0], by_value);
    report("qsort", sorted, sizeof sorted);
    for (int i = 0; i < N; i += 97) {
        memcpy(copy, text + i, N + 1 - i);
        total += strlen(copy) + (size_t)(strchr(copy, 'q') ? strchr(copy, 'q') - copy : -1);
        total += memcmp(copy, text + i, N - i) == 0;
        total += (size_t)(memchr(copy, 'z', N - i) ? 1 : 0) + (size_t)strspn(copy, "abcdefgh");
    }
    report("strings", &total, sizeof total);
}

__attribute__((target_clones("default", "avx2", "avx512f")))
static double clone_dot(const double *a, const double *b, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        sum += a[i] * b[i];
    }
    return sum;
}

__attribute__((target_clones("default", "avx2", "avx512f")))
static void clone_axpy(float *y, const float *x, float a, int n)
{
    for (int i = 0; i < n; i++) {
        y[i] = a * x[i] + y[i];
    }
}

static void clones(void)
{
    static double small[N];
    for (int i = 0; i < N; i++) {
        small[i] = (double)(ib[i] - 2048);    /* exact: sums of integers below 2^53 */
    }
    double dot = clone_dot(small, small, N);
    memcpy(fc, fb, sizeof fc);
    clone_axpy(fc, fb, 2.0f, N);
    report("clone-dot", &dot, sizeof dot);
    report("clone-axpy", fc, sizeof fc);
}

#ifdef __AVX512F__
static void intrinsics(void)
{
    static int32_t out[N];
    static float fout[N];
    __m512i acc = _mm512_setzero_si512();
    for (int i = 0; i + 16 <= N; i += 16) {
        __m512i idx = _mm512_and_si512(_mm512_loadu_si512(ia + i), _mm512_set1_epi32(N - 1));
        __m512 g = _mm512_i32gather_ps(idx, fa, 4);
        __mmask16 k = _mm512_cmp_ps_mask(g, _mm512_loadu_ps(fb + i), _CMP_LT_OQ);
        _mm512_mask_compressstoreu_epi32(out + i, k, idx);
        _mm512_mask_i32scatter_ps(fout, k, idx, g, 4);
        __m512i t = _mm512_ternarylogic_epi32(idx, _mm512_loadu_si512(ib + i), acc, 0x96);
        acc = _mm512_add_epi32(_mm512_conflict_epi32(_mm512_srli_epi32(idx, 8)),
                               _mm512_lzcnt_epi32(t));
        __m512 p = _mm512_permutex2var_ps(g, _mm512_loadu_si512(ib + i), _mm512_loadu_ps(fb + i));
        __m512 e = _mm512_getexp_ps(p);
        __m512 r = _mm512_range_ps(e, _mm512_loadu_ps(fa + i), 5);
        r = _mm512_fixupimm_ps(r, p, _mm512_set1_epi32(0x12345678), 0);
        _mm512_storeu_ps(fout + ((i + 4096 / 2) & (N - 1)), _mm512_maskz_mov_ps(~k, r));
        __m512d d = _mm512_cvtepi64_pd(_mm512_loadu_si512(ia + (i & ~15)));
        acc = _mm512_xor_si512(acc, _mm512_castpd_si512(_mm512_roundscale_pd(d, 0x13)));
        __mmask16 m = _kor_mask16(_knot_mask16(k), _kshiftli_mask16(k, 3));
        acc = _mm512_mask_sub_epi32(acc, m, acc, _mm512_set1_epi32(_mm512_mask2int(m)));
    }
    _mm512_storeu_si512(out, acc);
    report("avx512", out, sizeof out);
    report("scatter", fout, sizeof fout);
}
#endif

int main(void)
{
    fill();
    matmul();
    stencil();
    integers();
    convert();
    strings();
    clones();
#ifdef __AVX512F__
    intrinsics();
#endif
    return 0;
}
