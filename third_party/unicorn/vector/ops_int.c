/*
 * Integer arithmetic and logic on vector elements (SDM Vol. 2 instruction pages):
 * logic and VPTERNLOG, add/subtract (wrapping and saturating), compares (into vectors for
 * VEX, into opmasks for EVEX), min/max/abs/sign/average, multiplies and sums of absolute
 * differences, horizontal add/subtract, shifts and rotates (by imm8, by an xmm count, per
 * element), byte shifts, opmask/vector conversions, VPLZCNT, VPCONFLICT, VPBROADCASTM,
 * VPMOVMSKB and VPTEST.
 *
 * Operations compute every element of the vector length; masking and zeroing above the
 * length are the write-back's. Where an operation works on any element size it reads the
 * size from its entry (esize).
 */
#include "vector/ops.h"
#include "qemu/host-utils.h"

/* ---- element access by size ---------------------------------------------------------- */

static inline uint64_t get(const VecReg *r, unsigned i, unsigned esize)
{
    switch (esize) {
    case 1: return U8(r, i);
    case 2: return U16(r, i);
    case 4: return U32(r, i);
    default: return U64(r, i);
    }
}

static inline void put(VecReg *r, unsigned i, unsigned esize, uint64_t v)
{
    switch (esize) {
    case 1: U8(r, i) = v; break;
    case 2: U16(r, i) = v; break;
    case 4: U32(r, i) = v; break;
    default: U64(r, i) = v; break;
    }
}

static inline int64_t sext(uint64_t v, unsigned esize)
{
    unsigned sh = 64 - 8 * esize;
    return (int64_t)(v << sh) >> sh;
}

static inline int64_t sat_signed(int64_t v, unsigned esize)
{
    int64_t max = (int64_t)((1ull << (8 * esize - 1)) - 1), min = -max - 1;
    return v > max ? max : v < min ? min : v;
}

static inline uint64_t sat_unsigned(int64_t v, unsigned esize)
{
    int64_t max = (int64_t)((1ull << (8 * esize)) - 1);
    return v > max ? max : v < 0 ? 0 : v;
}

#define BINARY(name, T, ACC, expr)                                    \
    static void name(VecCtx *c)                                       \
    {                                                                 \
        FOR_ELEMS(c, i) {                                             \
            T a = ACC(&c->s1, i), b = ACC(&c->s2, i);                 \
            ACC(&c->d, i) = (expr);                                   \
        }                                                             \
    }

/*
 * An element-wise operation at the entry's element size: a, b the elements zero-extended,
 * sa, sb sign-extended, es the size in bytes.
 */
#define ELEMENTS(name, expr)                                                   \
    static void name(VecCtx *c)                                                \
    {                                                                          \
        unsigned es = c->op->esize;                                            \
        FOR_ELEMS(c, i) {                                                      \
            uint64_t a = get(&c->s1, i, es), b = get(&c->s2, i, es);           \
            int64_t sa = sext(a, es), sb = sext(b, es);                        \
            (void)a; (void)b; (void)sa; (void)sb;                              \
            put(&c->d, i, es, (expr));                                         \
        }                                                                      \
    }

/* ---- logic --------------------------------------------------------------------------- */

/* Bitwise operations work on 64-bit lanes whatever the element size. */
static void bitwise_lanes(VecCtx *c, int kind)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        uint64_t a = U64(&c->s1, i), b = U64(&c->s2, i);
        U64(&c->d, i) = kind == 0 ? a & b : kind == 1 ? ~a & b : kind == 2 ? a | b : a ^ b;
    }
}
static void and(VecCtx *c) { bitwise_lanes(c, 0); }
static void andn(VecCtx *c) { bitwise_lanes(c, 1); }
static void or(VecCtx *c) { bitwise_lanes(c, 2); }
static void xor(VecCtx *c) { bitwise_lanes(c, 3); }

/* vpternlogd/q: each result bit is imm8[(dest << 2) | (vvvv << 1) | rm] of the three
 * sources' bits; dest's old value is the first source. */
static void ternlog(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        uint64_t a = U64(&c->d, i), b = U64(&c->s1, i), x = U64(&c->s2, i), r = 0;
        for (unsigned k = 0; k < 8; k++) {
            if ((imm >> k) & 1) {
                r |= (k & 4 ? a : ~a) & (k & 2 ? b : ~b) & (k & 1 ? x : ~x);
            }
        }
        U64(&c->d, i) = r;
    }
}

/* ---- add, subtract ------------------------------------------------------------------- */

BINARY(add8, uint8_t, U8, a + b)
BINARY(add16, uint16_t, U16, a + b)
BINARY(add32, uint32_t, U32, a + b)
BINARY(add64, uint64_t, U64, a + b)
BINARY(sub8, uint8_t, U8, a - b)
BINARY(sub16, uint16_t, U16, a - b)
BINARY(sub32, uint32_t, U32, a - b)
BINARY(sub64, uint64_t, U64, a - b)
ELEMENTS(adds, sat_signed(sa + sb, es))
ELEMENTS(addus, sat_unsigned((int64_t)(a + b), es))
ELEMENTS(subs, sat_signed(sa - sb, es))
ELEMENTS(subus, sat_unsigned((int64_t)a - (int64_t)b, es))

/* ---- compares ------------------------------------------------------------------------ */

/* VEX: all ones or zero per element. */
ELEMENTS(cmpeq, a == b ? ~0ull : 0)
ELEMENTS(cmpgt, sa > sb ? ~0ull : 0)

/* The VPCMP predicates (imm8[2:0]): EQ LT LE FALSE NEQ NLT NLE TRUE. */
static bool predicate(unsigned pred, bool lt, bool eq)
{
    switch (pred & 7) {
    case 0: return eq;
    case 1: return lt;
    case 2: return lt || eq;
    case 3: return false;
    case 4: return !eq;
    case 5: return !lt;
    case 6: return !lt && !eq;
    default: return true;
    }
}

/* EVEX: one opmask bit per element (the write-back clears masked-off ones). */
static void kcompare(VecCtx *c, unsigned pred, bool sign)
{
    unsigned es = c->op->esize;
    uint64_t m = 0;
    FOR_ELEMS(c, i) {
        uint64_t a = get(&c->s1, i, es), b = get(&c->s2, i, es);
        bool lt = sign ? sext(a, es) < sext(b, es) : a < b;
        m |= (uint64_t)predicate(pred, lt, a == b) << i;
    }
    c->g = m;
}
static void kcmpeq(VecCtx *c) { kcompare(c, 0, false); }
static void kcmpgt(VecCtx *c) { kcompare(c, 6, true); }
static void kcmp(VecCtx *c) { kcompare(c, c->in.imm, true); }
static void kcmpu(VecCtx *c) { kcompare(c, c->in.imm, false); }

/* vptestm/vptestnm: whether (vvvv AND rm) is nonzero / zero per element. */
static void ktest(VecCtx *c, bool want_nonzero)
{
    unsigned es = c->op->esize;
    uint64_t m = 0;
    FOR_ELEMS(c, i) {
        bool nonzero = (get(&c->s1, i, es) & get(&c->s2, i, es)) != 0;
        m |= (uint64_t)(nonzero == want_nonzero) << i;
    }
    c->g = m;
}
static void testm(VecCtx *c) { ktest(c, true); }
static void testnm(VecCtx *c) { ktest(c, false); }

/* ---- min, max, abs, sign, average ------------------------------------------------------ */

ELEMENTS(mins, sa < sb ? a : b)
ELEMENTS(minu, a < b ? a : b)
ELEMENTS(maxs, sa > sb ? a : b)
ELEMENTS(maxu, a > b ? a : b)
ELEMENTS(avg, (a + b + 1) >> 1)
/* vpsign: vvvv's element negated, zeroed or kept as rm's is negative, zero or positive. */
ELEMENTS(sign, sb < 0 ? -a : b == 0 ? 0 : a)

/* vpabs (one source, in s1): |x|, the most negative value staying itself (unsigned). */
static void abs_(VecCtx *c)
{
    unsigned es = c->op->esize;
    FOR_ELEMS(c, i) {
        int64_t v = sext(get(&c->s1, i, es), es);
        put(&c->d, i, es, v < 0 ? -(uint64_t)v : (uint64_t)v);
    }
}

/* ---- multiplies ---------------------------------------------------------------------- */

ELEMENTS(mullo, a * b)                                      /* vpmullw, vpmulld, vpmullq */
ELEMENTS(mulhs, (uint64_t)(sa * sb) >> (8 * es))            /* vpmulhw */
ELEMENTS(mulhu, (a * b) >> (8 * es))                        /* vpmulhuw */
/* vpmulhrsw: bits 16:1 of ((a * b) >> 14) + 1. */
ELEMENTS(mulhrs, (uint64_t)((((sa * sb) >> 14) + 1) >> 1))
/* vpmuludq, vpmuldq: the low doublewords of each quadword, to a quadword product. */
BINARY(muludq, uint64_t, U64, (uint64_t)(uint32_t)a * (uint32_t)b)
BINARY(muldq, uint64_t, U64, (uint64_t)((int64_t)(int32_t)a * (int32_t)b))

/* vpmaddwd: doubleword i = the sum of the products of signed words 2i and 2i+1 (wraps only
 * for 4 times -32768). */
static void maddwd(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 4; i++) {
        int64_t p = (int64_t)(int16_t)U16(&c->s1, 2 * i) * (int16_t)U16(&c->s2, 2 * i)
                  + (int64_t)(int16_t)U16(&c->s1, 2 * i + 1) * (int16_t)U16(&c->s2, 2 * i + 1);
        U32(&c->d, i) = p;
    }
}

/* vpmaddubsw: word i = signed saturation of the sum of the products of vvvv's unsigned
 * bytes 2i, 2i+1 and rm's signed bytes 2i, 2i+1. */
static void maddubsw(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 2; i++) {
        int64_t p = (int64_t)U8(&c->s1, 2 * i) * (int8_t)U8(&c->s2, 2 * i)
                  + (int64_t)U8(&c->s1, 2 * i + 1) * (int8_t)U8(&c->s2, 2 * i + 1);
        U16(&c->d, i) = sat_signed(p, 2);
    }
}

static inline unsigned absdiff(unsigned a, unsigned b)
{
    return a > b ? a - b : b - a;
}

/* vpsadbw: each quadword = the sum of the 8 byte absolute differences (in bits 15:0). */
static void sadbw(VecCtx *c)
{
    for (unsigned q = 0; q < c->vlbytes / 8; q++) {
        unsigned sum = 0;
        for (unsigned k = 0; k < 8; k++) {
            sum += absdiff(U8(&c->s1, 8 * q + k), U8(&c->s2, 8 * q + k));
        }
        U64(&c->d, q) = sum;
    }
}

/* vmpsadbw: per 128-bit lane, 8 sums of absolute differences between the 4-byte block of
 * rm at dword imm8[1:0] and the 4-byte windows of vvvv starting at byte 4*imm8[2] + j. The
 * upper lane of VEX.256 takes imm8[4:3] and imm8[5]. */
static void mpsadbw(VecCtx *c)
{
    for (unsigned lane = 0; lane < c->vlbytes / 16; lane++) {
        unsigned imm = c->in.imm >> (3 * lane);
        unsigned o1 = 16 * lane + ((imm >> 2) & 1) * 4, o2 = 16 * lane + (imm & 3) * 4;
        for (unsigned j = 0; j < 8; j++) {
            unsigned sum = 0;
            for (unsigned k = 0; k < 4; k++) {
                sum += absdiff(U8(&c->s1, o1 + j + k), U8(&c->s2, o2 + k));
            }
            U16(&c->d, 8 * lane + j) = sum;
        }
    }
}

/* vdbpsadbw: rm's dwords are first shuffled within each 128-bit lane by imm8 (two bits per
 * dword); then in each quadword of vvvv, words 0 and 1 are the SADs of vvvv's low 4 bytes
 * against the shuffled bytes at offsets 0 and 1, words 2 and 3 those of its high 4 bytes
 * against offsets 2 and 3. */
static void dbpsadbw(VecCtx *c)
{
    static const uint8_t s1_off[4] = { 0, 0, 4, 4 };
    VecReg t;
    for (unsigned lane = 0; lane < c->vlbytes / 16; lane++) {
        for (unsigned j = 0; j < 4; j++) {
            U32(&t, 4 * lane + j) = U32(&c->s2, 4 * lane + ((c->in.imm >> (2 * j)) & 3));
        }
    }
    for (unsigned q = 0; q < c->vlbytes / 8; q++) {
        for (unsigned w = 0; w < 4; w++) {
            unsigned sum = 0;
            for (unsigned k = 0; k < 4; k++) {
                sum += absdiff(U8(&c->s1, 8 * q + s1_off[w] + k), U8(&t, 8 * q + w + k));
            }
            U16(&c->d, 4 * q + w) = sum;
        }
    }
}

/* ---- horizontal (VEX only) ---------------------------------------------------------------- */

/* Per 128-bit lane: the low half of the result from adjacent pairs of vvvv's elements, the
 * high half from rm's. kind: 0 add, 1 add with signed saturation, 2 subtract, 3 subtract
 * with signed saturation (first minus second). */
static void horizontal(VecCtx *c, unsigned es, int kind)
{
    unsigned per_lane = 16 / es, half = per_lane / 2;
    VecReg r;
    for (unsigned lane = 0; lane < c->vlbytes / 16; lane++) {
        for (unsigned j = 0; j < per_lane; j++) {
            const VecReg *s = j < half ? &c->s1 : &c->s2;
            unsigned at = lane * per_lane + 2 * (j % half);
            int64_t x = sext(get(s, at, es), es), y = sext(get(s, at + 1, es), es);
            int64_t v = kind < 2 ? x + y : x - y;
            put(&r, lane * per_lane + j, es, kind & 1 ? sat_signed(v, es) : v);
        }
    }
    memcpy(&c->d, &r, c->vlbytes);
}
static void phaddw(VecCtx *c) { horizontal(c, 2, 0); }
static void phaddd(VecCtx *c) { horizontal(c, 4, 0); }
static void phaddsw(VecCtx *c) { horizontal(c, 2, 1); }
static void phsubw(VecCtx *c) { horizontal(c, 2, 2); }
static void phsubd(VecCtx *c) { horizontal(c, 4, 2); }
static void phsubsw(VecCtx *c) { horizontal(c, 2, 3); }

/* vphminposuw: the least unsigned word in bits 15:0, its (lowest) index in bits 18:16, the
 * rest zero. */
static void phminposuw(VecCtx *c)
{
    unsigned min = U16(&c->s1, 0), at = 0;
    for (unsigned j = 1; j < 8; j++) {
        if (U16(&c->s1, j) < min) {
            min = U16(&c->s1, j);
            at = j;
        }
    }
    memset(&c->d, 0, sizeof(c->d));
    U16(&c->d, 0) = min;
    U16(&c->d, 1) = at;
}

/* ---- shifts and rotates --------------------------------------------------------------- */

enum { SH_LL, SH_RL, SH_RA, SH_ROL, SH_ROR };

/* One element of `bits` bits (zero-extended in v) shifted by an unsigned count: logical
 * shifts by more than bits-1 give 0, arithmetic ones the sign; rotates count modulo bits. */
static uint64_t shift1(uint64_t v, uint64_t n, unsigned bits, int kind)
{
    uint64_t m = bits == 64 ? ~0ull : (1ull << bits) - 1;
    int64_t s;

    switch (kind) {
    case SH_LL:
        return n >= bits ? 0 : (v << n) & m;
    case SH_RL:
        return n >= bits ? 0 : v >> n;
    case SH_RA:
        s = sext(v, bits / 8);
        return (uint64_t)(s >> (n >= bits ? bits - 1 : n)) & m;
    case SH_ROL:
        n %= bits;
        return n ? ((v << n) | (v >> (bits - n))) & m : v;
    default:
        n %= bits;
        return n ? ((v >> n) | (v << (bits - n))) & m : v;
    }
}

/* how: 0 by imm8 (source in s1), 1 by the low quadword of s2 (an xmm count; source in s1),
 * 2 by s2's element (per element). */
static void shift(VecCtx *c, int kind, int how)
{
    unsigned es = c->op->esize;
    FOR_ELEMS(c, i) {
        uint64_t n = how == 0 ? c->in.imm : how == 1 ? U64(&c->s2, 0) : get(&c->s2, i, es);
        put(&c->d, i, es, shift1(get(&c->s1, i, es), n, 8 * es, kind));
    }
}
#define SHIFT(name, kind, how) static void name(VecCtx *c) { shift(c, kind, how); }
SHIFT(sll_i, SH_LL, 0) SHIFT(srl_i, SH_RL, 0) SHIFT(sra_i, SH_RA, 0)
SHIFT(rol_i, SH_ROL, 0) SHIFT(ror_i, SH_ROR, 0)
SHIFT(sll_x, SH_LL, 1) SHIFT(srl_x, SH_RL, 1) SHIFT(sra_x, SH_RA, 1)
SHIFT(sll_v, SH_LL, 2) SHIFT(srl_v, SH_RL, 2) SHIFT(sra_v, SH_RA, 2)
SHIFT(rol_v, SH_ROL, 2) SHIFT(ror_v, SH_ROR, 2)

/* vpslldq/vpsrldq: each 128-bit lane shifted by imm8 bytes (more than 15: zero). */
static void bytes_shift(VecCtx *c, bool left)
{
    unsigned n = c->in.imm;
    for (unsigned lane = 0; lane < c->vlbytes / 16; lane++) {
        for (unsigned j = 0; j < 16; j++) {
            unsigned from = left ? j - n : j + n;       /* wraps when out of the lane */
            U8(&c->d, 16 * lane + j) = n < 16 && from < 16 ? U8(&c->s1, 16 * lane + from) : 0;
        }
    }
}
static void slldq(VecCtx *c) { bytes_shift(c, true); }
static void srldq(VecCtx *c) { bytes_shift(c, false); }

/* ---- opmask conversions, leading zeros, conflicts ------------------------------------- */

/* vpmovm2b/w/d/q: each element all ones or zero as its opmask bit. */
static void movm2v(VecCtx *c)
{
    unsigned es = c->op->esize;
    uint64_t k = U64(&c->s1, 0);
    FOR_ELEMS(c, i) {
        put(&c->d, i, es, (k >> i) & 1 ? ~0ull : 0);
    }
}

/* vpmovb2m/w2m/d2m/q2m: each element's top bit into the opmask (above: zero). */
static void movv2m(VecCtx *c)
{
    unsigned es = c->op->esize;
    uint64_t m = 0;
    FOR_ELEMS(c, i) {
        m |= (get(&c->s1, i, es) >> (8 * es - 1)) << i;
    }
    c->g = m;
}

/* vpbroadcastmb2q / vpbroadcastmw2d: the opmask's low 8 / 16 bits, zero-extended, into
 * every element. */
static void broadcastm(VecCtx *c)
{
    unsigned es = c->op->esize;
    uint64_t v = U64(&c->s1, 0) & (es == 8 ? 0xff : 0xffff);
    FOR_ELEMS(c, i) {
        put(&c->d, i, es, v);
    }
}

static void lzcnt(VecCtx *c)
{
    unsigned es = c->op->esize;
    FOR_ELEMS(c, i) {
        put(&c->d, i, es, es == 4 ? clz32(U32(&c->s1, i)) : clz64(U64(&c->s1, i)));
    }
}

/* vpconflictd/q: element i gets bit j set (j < i) where source elements j and i are equal. */
static void conflict(VecCtx *c)
{
    unsigned es = c->op->esize;
    FOR_ELEMS(c, i) {
        uint64_t v = get(&c->s1, i, es), r = 0;
        for (unsigned j = 0; j < i; j++) {
            r |= (uint64_t)(get(&c->s1, j, es) == v) << j;
        }
        put(&c->d, i, es, r);
    }
}

/* ---- to general registers and flags ----------------------------------------------------- */

/* vpmovmskb: the top bit of each byte into a general register. */
static void movmsk8(VecCtx *c)
{
    uint64_t m = 0;
    for (unsigned i = 0; i < c->vlbytes; i++) {
        m |= (uint64_t)(U8(&c->s1, i) >> 7) << i;
    }
    c->g = m;
}

/* vptest: ZF = (src1 & src2) == 0, CF = (~src1 & src2) == 0; the other flags clear. */
static void ptest(VecCtx *c)
{
    uint64_t and_any = 0, andn_any = 0;
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        and_any |= U64(&c->s1, i) & U64(&c->s2, i);
        andn_any |= ~U64(&c->s1, i) & U64(&c->s2, i);
    }
    c->eflags = (and_any ? 0 : CC_Z) | (andn_any ? 0 : CC_C);
}

/* vtestps/vtestpd: vptest on the elements' sign bits only (mask: each element's top bit). */
static void sign_test(VecCtx *c, uint64_t signs)
{
    uint64_t and_any = 0, andn_any = 0;
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        and_any |= U64(&c->s1, i) & U64(&c->s2, i) & signs;
        andn_any |= ~U64(&c->s1, i) & U64(&c->s2, i) & signs;
    }
    c->eflags = (and_any ? 0 : CC_Z) | (andn_any ? 0 : CC_C);
}
static void testps(VecCtx *c) { sign_test(c, 0x8000000080000000ull); }
static void testpd(VecCtx *c) { sign_test(c, 0x8000000000000000ull); }

/* ---- the table ------------------------------------------------------------------------- */

#define AVX X_AVX
#define AVX2 X_AVX2
#define F512 X_AVX512F
#define BW512 X_AVX512BW
#define DQ512 X_AVX512DQ
#define CD512 X_AVX512CD

/*
 * Memory fault suppression: most masked EVEX forms here are the SDM's exception type E4
 * (a masked-off element's memory is not read and cannot fault): F_MEMMASK. The E4NF ones
 * (VPMADDWD, VPMADDUBSW, VDBPSADBW, VPCONFLICT, the xmm-count shifts) read the whole
 * operand.
 */
#define MB  (F_MASK | F_MEMMASK)                 /* byte and word elements: no broadcast */
#define MD  (F_MASK | F_MEMMASK | F_BCST)        /* dword and qword elements */
#define KB  (F_KDEST | F_MEMMASK)                /* compares into an opmask */
#define KD  (F_KDEST | F_MEMMASK | F_BCST)

/* VEX: 128 bits are AVX, 256 bits AVX2 (the integer instructions). */
#define VX(nm, mp, opc, wv, esz, f)                                        \
    VHW(nm, ENC_VEX, mp, opc, P_66, wv, L128, esz, AVX, 0, f),             \
    VHW(nm, ENC_VEX, mp, opc, P_66, wv, L256, esz, AVX2, 0, f)
#define VX1(nm, mp, opc, wv, esz, f)                                       \
    VW(nm, ENC_VEX, mp, opc, P_66, wv, L128, esz, AVX, 0, f),              \
    VW(nm, ENC_VEX, mp, opc, P_66, wv, L256, esz, AVX2, 0, f)
/* EVEX three-operand forms: BW (byte/word, WIG) and F/DQ/CD (dword W0, qword W1). */
#define EB(nm, mp, opc, esz, f) \
    VHW(nm, ENC_EVEX, mp, opc, P_66, WIG, LALL, esz, BW512, MB, f)
#define ED(nm, mp, opc, wv, esz, feat, f) \
    VHW(nm, ENC_EVEX, mp, opc, P_66, wv, LALL, esz, feat, MD, f)
#define ED1(nm, mp, opc, wv, esz, feat, f) \
    VW(nm, ENC_EVEX, mp, opc, P_66, wv, LALL, esz, feat, MD, f)
/* EVEX compares into ModRM.reg's opmask. */
#define EK(nm, mp, opc, p, wv, esz, feat, fl, f)                                        \
    E(nm, ENC_EVEX, mp, opc, p, wv, LALL, esz, feat, fl, NOREG,                          \
      O_KV, S_64, O_H, S_VL, O_W, S_VL, O_NONE, 0, f)
/* Shifts by imm8 (0F 71-73 groups): the destination is vvvv, the source ModRM.rm (a
 * register for VEX, also memory for EVEX). */
#define VSI(nm, opc, reg, esz, f)                                                        \
    E(nm, ENC_VEX, 1, opc, P_66, WIG, L128, esz, AVX, F_IMM, reg,                         \
      O_H, S_VL, O_U, S_VL, O_NONE, 0, O_NONE, 0, f),                                     \
    E(nm, ENC_VEX, 1, opc, P_66, WIG, L256, esz, AVX2, F_IMM, reg,                        \
      O_H, S_VL, O_U, S_VL, O_NONE, 0, O_NONE, 0, f)
#define ESI(nm, opc, reg, wv, esz, feat, fl, f)                                          \
    E(nm, ENC_EVEX, 1, opc, P_66, wv, LALL, esz, feat, F_IMM | (fl), reg,                 \
      O_H, S_VL, O_W, S_VL, O_NONE, 0, O_NONE, 0, f)
/* Shifts by the low quadword of xmm/m128. */
#define VSX(nm, opc, esz, f)                                                             \
    E(nm, ENC_VEX, 1, opc, P_66, WIG, L128, esz, AVX, 0, NOREG,                           \
      O_V, S_VL, O_H, S_VL, O_W, S_128, O_NONE, 0, f),                                    \
    E(nm, ENC_VEX, 1, opc, P_66, WIG, L256, esz, AVX2, 0, NOREG,                          \
      O_V, S_VL, O_H, S_VL, O_W, S_128, O_NONE, 0, f)
#define ESX(nm, opc, wv, esz, feat, f)                                                   \
    E(nm, ENC_EVEX, 1, opc, P_66, wv, LALL, esz, feat, F_MASK, NOREG,                     \
      O_V, S_VL, O_H, S_VL, O_W, S_128, O_NONE, 0, f)

const VecOp vec_ops_int[] = {
    /* Logic. */
    VX("vpand", 1, 0xdb, WIG, 8, and), VX("vpandn", 1, 0xdf, WIG, 8, andn),
    VX("vpor", 1, 0xeb, WIG, 8, or), VX("vpxor", 1, 0xef, WIG, 8, xor),
    ED("vpandd", 1, 0xdb, 0, 4, F512, and), ED("vpandq", 1, 0xdb, 1, 8, F512, and),
    ED("vpandnd", 1, 0xdf, 0, 4, F512, andn), ED("vpandnq", 1, 0xdf, 1, 8, F512, andn),
    ED("vpord", 1, 0xeb, 0, 4, F512, or), ED("vporq", 1, 0xeb, 1, 8, F512, or),
    ED("vpxord", 1, 0xef, 0, 4, F512, xor), ED("vpxorq", 1, 0xef, 1, 8, F512, xor),
    E("vpternlogd", ENC_EVEX, 3, 0x25, P_66, 0, LALL, 4, F512, MD | F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_NONE, 0, ternlog),
    E("vpternlogq", ENC_EVEX, 3, 0x25, P_66, 1, LALL, 8, F512, MD | F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_NONE, 0, ternlog),

    /* Add, subtract. */
    VX("vpaddb", 1, 0xfc, WIG, 1, add8), VX("vpaddw", 1, 0xfd, WIG, 2, add16),
    VX("vpaddd", 1, 0xfe, WIG, 4, add32), VX("vpaddq", 1, 0xd4, WIG, 8, add64),
    VX("vpsubb", 1, 0xf8, WIG, 1, sub8), VX("vpsubw", 1, 0xf9, WIG, 2, sub16),
    VX("vpsubd", 1, 0xfa, WIG, 4, sub32), VX("vpsubq", 1, 0xfb, WIG, 8, sub64),
    VX("vpaddsb", 1, 0xec, WIG, 1, adds), VX("vpaddsw", 1, 0xed, WIG, 2, adds),
    VX("vpaddusb", 1, 0xdc, WIG, 1, addus), VX("vpaddusw", 1, 0xdd, WIG, 2, addus),
    VX("vpsubsb", 1, 0xe8, WIG, 1, subs), VX("vpsubsw", 1, 0xe9, WIG, 2, subs),
    VX("vpsubusb", 1, 0xd8, WIG, 1, subus), VX("vpsubusw", 1, 0xd9, WIG, 2, subus),
    EB("vpaddb", 1, 0xfc, 1, add8), EB("vpaddw", 1, 0xfd, 2, add16),
    ED("vpaddd", 1, 0xfe, 0, 4, F512, add32), ED("vpaddq", 1, 0xd4, 1, 8, F512, add64),
    EB("vpsubb", 1, 0xf8, 1, sub8), EB("vpsubw", 1, 0xf9, 2, sub16),
    ED("vpsubd", 1, 0xfa, 0, 4, F512, sub32), ED("vpsubq", 1, 0xfb, 1, 8, F512, sub64),
    EB("vpaddsb", 1, 0xec, 1, adds), EB("vpaddsw", 1, 0xed, 2, adds),
    EB("vpaddusb", 1, 0xdc, 1, addus), EB("vpaddusw", 1, 0xdd, 2, addus),
    EB("vpsubsb", 1, 0xe8, 1, subs), EB("vpsubsw", 1, 0xe9, 2, subs),
    EB("vpsubusb", 1, 0xd8, 1, subus), EB("vpsubusw", 1, 0xd9, 2, subus),

    /* Compares: VEX into a vector, EVEX into an opmask. */
    VX("vpcmpeqb", 1, 0x74, WIG, 1, cmpeq), VX("vpcmpeqw", 1, 0x75, WIG, 2, cmpeq),
    VX("vpcmpeqd", 1, 0x76, WIG, 4, cmpeq), VX("vpcmpeqq", 2, 0x29, WIG, 8, cmpeq),
    VX("vpcmpgtb", 1, 0x64, WIG, 1, cmpgt), VX("vpcmpgtw", 1, 0x65, WIG, 2, cmpgt),
    VX("vpcmpgtd", 1, 0x66, WIG, 4, cmpgt), VX("vpcmpgtq", 2, 0x37, WIG, 8, cmpgt),
    EK("vpcmpeqb", 1, 0x74, P_66, WIG, 1, BW512, KB, kcmpeq),
    EK("vpcmpeqw", 1, 0x75, P_66, WIG, 2, BW512, KB, kcmpeq),
    EK("vpcmpeqd", 1, 0x76, P_66, 0, 4, F512, KD, kcmpeq),
    EK("vpcmpeqq", 2, 0x29, P_66, 1, 8, F512, KD, kcmpeq),
    EK("vpcmpgtb", 1, 0x64, P_66, WIG, 1, BW512, KB, kcmpgt),
    EK("vpcmpgtw", 1, 0x65, P_66, WIG, 2, BW512, KB, kcmpgt),
    EK("vpcmpgtd", 1, 0x66, P_66, 0, 4, F512, KD, kcmpgt),
    EK("vpcmpgtq", 2, 0x37, P_66, 1, 8, F512, KD, kcmpgt),
    EK("vpcmpb", 3, 0x3f, P_66, 0, 1, BW512, KB | F_IMM, kcmp),
    EK("vpcmpw", 3, 0x3f, P_66, 1, 2, BW512, KB | F_IMM, kcmp),
    EK("vpcmpub", 3, 0x3e, P_66, 0, 1, BW512, KB | F_IMM, kcmpu),
    EK("vpcmpuw", 3, 0x3e, P_66, 1, 2, BW512, KB | F_IMM, kcmpu),
    EK("vpcmpd", 3, 0x1f, P_66, 0, 4, F512, KD | F_IMM, kcmp),
    EK("vpcmpq", 3, 0x1f, P_66, 1, 8, F512, KD | F_IMM, kcmp),
    EK("vpcmpud", 3, 0x1e, P_66, 0, 4, F512, KD | F_IMM, kcmpu),
    EK("vpcmpuq", 3, 0x1e, P_66, 1, 8, F512, KD | F_IMM, kcmpu),
    EK("vptestmb", 2, 0x26, P_66, 0, 1, BW512, KB, testm),
    EK("vptestmw", 2, 0x26, P_66, 1, 2, BW512, KB, testm),
    EK("vptestmd", 2, 0x27, P_66, 0, 4, F512, KD, testm),
    EK("vptestmq", 2, 0x27, P_66, 1, 8, F512, KD, testm),
    EK("vptestnmb", 2, 0x26, P_F3, 0, 1, BW512, KB, testnm),
    EK("vptestnmw", 2, 0x26, P_F3, 1, 2, BW512, KB, testnm),
    EK("vptestnmd", 2, 0x27, P_F3, 0, 4, F512, KD, testnm),
    EK("vptestnmq", 2, 0x27, P_F3, 1, 8, F512, KD, testnm),

    /* Min, max. */
    VX("vpminsb", 2, 0x38, WIG, 1, mins), VX("vpminsw", 1, 0xea, WIG, 2, mins),
    VX("vpminsd", 2, 0x39, WIG, 4, mins),
    VX("vpminub", 1, 0xda, WIG, 1, minu), VX("vpminuw", 2, 0x3a, WIG, 2, minu),
    VX("vpminud", 2, 0x3b, WIG, 4, minu),
    VX("vpmaxsb", 2, 0x3c, WIG, 1, maxs), VX("vpmaxsw", 1, 0xee, WIG, 2, maxs),
    VX("vpmaxsd", 2, 0x3d, WIG, 4, maxs),
    VX("vpmaxub", 1, 0xde, WIG, 1, maxu), VX("vpmaxuw", 2, 0x3e, WIG, 2, maxu),
    VX("vpmaxud", 2, 0x3f, WIG, 4, maxu),
    EB("vpminsb", 2, 0x38, 1, mins), EB("vpminsw", 1, 0xea, 2, mins),
    ED("vpminsd", 2, 0x39, 0, 4, F512, mins), ED("vpminsq", 2, 0x39, 1, 8, F512, mins),
    EB("vpminub", 1, 0xda, 1, minu), EB("vpminuw", 2, 0x3a, 2, minu),
    ED("vpminud", 2, 0x3b, 0, 4, F512, minu), ED("vpminuq", 2, 0x3b, 1, 8, F512, minu),
    EB("vpmaxsb", 2, 0x3c, 1, maxs), EB("vpmaxsw", 1, 0xee, 2, maxs),
    ED("vpmaxsd", 2, 0x3d, 0, 4, F512, maxs), ED("vpmaxsq", 2, 0x3d, 1, 8, F512, maxs),
    EB("vpmaxub", 1, 0xde, 1, maxu), EB("vpmaxuw", 2, 0x3e, 2, maxu),
    ED("vpmaxud", 2, 0x3f, 0, 4, F512, maxu), ED("vpmaxuq", 2, 0x3f, 1, 8, F512, maxu),

    /* Abs, sign, average. */
    VX1("vpabsb", 2, 0x1c, WIG, 1, abs_), VX1("vpabsw", 2, 0x1d, WIG, 2, abs_),
    VX1("vpabsd", 2, 0x1e, WIG, 4, abs_),
    VW("vpabsb", ENC_EVEX, 2, 0x1c, P_66, WIG, LALL, 1, BW512, MB, abs_),
    VW("vpabsw", ENC_EVEX, 2, 0x1d, P_66, WIG, LALL, 2, BW512, MB, abs_),
    ED1("vpabsd", 2, 0x1e, 0, 4, F512, abs_), ED1("vpabsq", 2, 0x1f, 1, 8, F512, abs_),
    VX("vpsignb", 2, 0x08, WIG, 1, sign), VX("vpsignw", 2, 0x09, WIG, 2, sign),
    VX("vpsignd", 2, 0x0a, WIG, 4, sign),
    VX("vpavgb", 1, 0xe0, WIG, 1, avg), VX("vpavgw", 1, 0xe3, WIG, 2, avg),
    EB("vpavgb", 1, 0xe0, 1, avg), EB("vpavgw", 1, 0xe3, 2, avg),

    /* Multiplies, sums of absolute differences. */
    VX("vpmullw", 1, 0xd5, WIG, 2, mullo), VX("vpmulhw", 1, 0xe5, WIG, 2, mulhs),
    VX("vpmulhuw", 1, 0xe4, WIG, 2, mulhu), VX("vpmulhrsw", 2, 0x0b, WIG, 2, mulhrs),
    VX("vpmulld", 2, 0x40, WIG, 4, mullo),
    VX("vpmuludq", 1, 0xf4, WIG, 8, muludq), VX("vpmuldq", 2, 0x28, WIG, 8, muldq),
    VX("vpmaddwd", 1, 0xf5, WIG, 4, maddwd), VX("vpmaddubsw", 2, 0x04, WIG, 2, maddubsw),
    VX("vpsadbw", 1, 0xf6, WIG, 8, sadbw),
    EB("vpmullw", 1, 0xd5, 2, mullo), EB("vpmulhw", 1, 0xe5, 2, mulhs),
    EB("vpmulhuw", 1, 0xe4, 2, mulhu), EB("vpmulhrsw", 2, 0x0b, 2, mulhrs),
    ED("vpmulld", 2, 0x40, 0, 4, F512, mullo), ED("vpmullq", 2, 0x40, 1, 8, DQ512, mullo),
    ED("vpmuludq", 1, 0xf4, 1, 8, F512, muludq), ED("vpmuldq", 2, 0x28, 1, 8, F512, muldq),
    VHW("vpmaddwd", ENC_EVEX, 1, 0xf5, P_66, WIG, LALL, 4, BW512, F_MASK, maddwd),
    VHW("vpmaddubsw", ENC_EVEX, 2, 0x04, P_66, WIG, LALL, 2, BW512, F_MASK, maddubsw),
    VHW("vpsadbw", ENC_EVEX, 1, 0xf6, P_66, WIG, LALL, 8, BW512, 0, sadbw),
    E("vmpsadbw", ENC_VEX, 3, 0x42, P_66, WIG, L128, 2, AVX, F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_NONE, 0, mpsadbw),
    E("vmpsadbw", ENC_VEX, 3, 0x42, P_66, WIG, L256, 2, AVX2, F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_NONE, 0, mpsadbw),
    E("vdbpsadbw", ENC_EVEX, 3, 0x42, P_66, 0, LALL, 2, BW512, F_MASK | F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_NONE, 0, dbpsadbw),

    /* Horizontal (VEX only). */
    VX("vphaddw", 2, 0x01, WIG, 2, phaddw), VX("vphaddd", 2, 0x02, WIG, 4, phaddd),
    VX("vphaddsw", 2, 0x03, WIG, 2, phaddsw),
    VX("vphsubw", 2, 0x05, WIG, 2, phsubw), VX("vphsubd", 2, 0x06, WIG, 4, phsubd),
    VX("vphsubsw", 2, 0x07, WIG, 2, phsubsw),
    VW("vphminposuw", ENC_VEX, 2, 0x41, P_66, WIG, L128, 2, AVX, 0, phminposuw),

    /* Shifts and rotates by imm8: 0F 71 (words), 72 (dwords; EVEX qwords too), 73
     * (qwords and 128-bit lanes by bytes). */
    VSI("vpsrlw", 0x71, 2, 2, srl_i), VSI("vpsraw", 0x71, 4, 2, sra_i),
    VSI("vpsllw", 0x71, 6, 2, sll_i),
    VSI("vpsrld", 0x72, 2, 4, srl_i), VSI("vpsrad", 0x72, 4, 4, sra_i),
    VSI("vpslld", 0x72, 6, 4, sll_i),
    VSI("vpsrlq", 0x73, 2, 8, srl_i), VSI("vpsrldq", 0x73, 3, 1, srldq),
    VSI("vpsllq", 0x73, 6, 8, sll_i), VSI("vpslldq", 0x73, 7, 1, slldq),
    ESI("vpsrlw", 0x71, 2, WIG, 2, BW512, MB, srl_i),
    ESI("vpsraw", 0x71, 4, WIG, 2, BW512, MB, sra_i),
    ESI("vpsllw", 0x71, 6, WIG, 2, BW512, MB, sll_i),
    ESI("vprord", 0x72, 0, 0, 4, F512, MD, ror_i), ESI("vprorq", 0x72, 0, 1, 8, F512, MD, ror_i),
    ESI("vprold", 0x72, 1, 0, 4, F512, MD, rol_i), ESI("vprolq", 0x72, 1, 1, 8, F512, MD, rol_i),
    ESI("vpsrld", 0x72, 2, 0, 4, F512, MD, srl_i),
    ESI("vpsrad", 0x72, 4, 0, 4, F512, MD, sra_i), ESI("vpsraq", 0x72, 4, 1, 8, F512, MD, sra_i),
    ESI("vpslld", 0x72, 6, 0, 4, F512, MD, sll_i),
    ESI("vpsrlq", 0x73, 2, 1, 8, F512, MD, srl_i),
    ESI("vpsrldq", 0x73, 3, WIG, 1, BW512, 0, srldq),
    ESI("vpsllq", 0x73, 6, 1, 8, F512, MD, sll_i),
    ESI("vpslldq", 0x73, 7, WIG, 1, BW512, 0, slldq),

    /* Shifts by an xmm/m128 count. */
    VSX("vpsrlw", 0xd1, 2, srl_x), VSX("vpsrld", 0xd2, 4, srl_x), VSX("vpsrlq", 0xd3, 8, srl_x),
    VSX("vpsraw", 0xe1, 2, sra_x), VSX("vpsrad", 0xe2, 4, sra_x),
    VSX("vpsllw", 0xf1, 2, sll_x), VSX("vpslld", 0xf2, 4, sll_x), VSX("vpsllq", 0xf3, 8, sll_x),
    ESX("vpsrlw", 0xd1, WIG, 2, BW512, srl_x), ESX("vpsrld", 0xd2, 0, 4, F512, srl_x),
    ESX("vpsrlq", 0xd3, 1, 8, F512, srl_x),
    ESX("vpsraw", 0xe1, WIG, 2, BW512, sra_x), ESX("vpsrad", 0xe2, 0, 4, F512, sra_x),
    ESX("vpsraq", 0xe2, 1, 8, F512, sra_x),
    ESX("vpsllw", 0xf1, WIG, 2, BW512, sll_x), ESX("vpslld", 0xf2, 0, 4, F512, sll_x),
    ESX("vpsllq", 0xf3, 1, 8, F512, sll_x),

    /* Shifts and rotates per element. */
    VX("vpsrlvd", 2, 0x45, 0, 4, srl_v), VX("vpsrlvq", 2, 0x45, 1, 8, srl_v),
    VX("vpsravd", 2, 0x46, 0, 4, sra_v),
    VX("vpsllvd", 2, 0x47, 0, 4, sll_v), VX("vpsllvq", 2, 0x47, 1, 8, sll_v),
    ED("vpsrlvd", 2, 0x45, 0, 4, F512, srl_v), ED("vpsrlvq", 2, 0x45, 1, 8, F512, srl_v),
    ED("vpsravd", 2, 0x46, 0, 4, F512, sra_v), ED("vpsravq", 2, 0x46, 1, 8, F512, sra_v),
    ED("vpsllvd", 2, 0x47, 0, 4, F512, sll_v), ED("vpsllvq", 2, 0x47, 1, 8, F512, sll_v),
    VHW("vpsrlvw", ENC_EVEX, 2, 0x10, P_66, 1, LALL, 2, BW512, MB, srl_v),
    VHW("vpsravw", ENC_EVEX, 2, 0x11, P_66, 1, LALL, 2, BW512, MB, sra_v),
    VHW("vpsllvw", ENC_EVEX, 2, 0x12, P_66, 1, LALL, 2, BW512, MB, sll_v),
    ED("vprorvd", 2, 0x14, 0, 4, F512, ror_v), ED("vprorvq", 2, 0x14, 1, 8, F512, ror_v),
    ED("vprolvd", 2, 0x15, 0, 4, F512, rol_v), ED("vprolvq", 2, 0x15, 1, 8, F512, rol_v),

    /* Opmask/vector conversions (no masking). */
    E("vpmovm2b", ENC_EVEX, 2, 0x28, P_F3, 0, LALL, 1, BW512, 0, NOREG,
      O_V, S_VL, O_KW, S_64, O_NONE, 0, O_NONE, 0, movm2v),
    E("vpmovm2w", ENC_EVEX, 2, 0x28, P_F3, 1, LALL, 2, BW512, 0, NOREG,
      O_V, S_VL, O_KW, S_64, O_NONE, 0, O_NONE, 0, movm2v),
    E("vpmovm2d", ENC_EVEX, 2, 0x38, P_F3, 0, LALL, 4, DQ512, 0, NOREG,
      O_V, S_VL, O_KW, S_64, O_NONE, 0, O_NONE, 0, movm2v),
    E("vpmovm2q", ENC_EVEX, 2, 0x38, P_F3, 1, LALL, 8, DQ512, 0, NOREG,
      O_V, S_VL, O_KW, S_64, O_NONE, 0, O_NONE, 0, movm2v),
    E("vpmovb2m", ENC_EVEX, 2, 0x29, P_F3, 0, LALL, 1, BW512, 0, NOREG,
      O_KV, S_64, O_U, S_VL, O_NONE, 0, O_NONE, 0, movv2m),
    E("vpmovw2m", ENC_EVEX, 2, 0x29, P_F3, 1, LALL, 2, BW512, 0, NOREG,
      O_KV, S_64, O_U, S_VL, O_NONE, 0, O_NONE, 0, movv2m),
    E("vpmovd2m", ENC_EVEX, 2, 0x39, P_F3, 0, LALL, 4, DQ512, 0, NOREG,
      O_KV, S_64, O_U, S_VL, O_NONE, 0, O_NONE, 0, movv2m),
    E("vpmovq2m", ENC_EVEX, 2, 0x39, P_F3, 1, LALL, 8, DQ512, 0, NOREG,
      O_KV, S_64, O_U, S_VL, O_NONE, 0, O_NONE, 0, movv2m),

    /* Conflict detection (CD). */
    ED1("vplzcntd", 2, 0x44, 0, 4, CD512, lzcnt), ED1("vplzcntq", 2, 0x44, 1, 8, CD512, lzcnt),
    VW("vpconflictd", ENC_EVEX, 2, 0xc4, P_66, 0, LALL, 4, CD512, F_MASK | F_BCST, conflict),
    VW("vpconflictq", ENC_EVEX, 2, 0xc4, P_66, 1, LALL, 8, CD512, F_MASK | F_BCST, conflict),
    E("vpbroadcastmb2q", ENC_EVEX, 2, 0x2a, P_F3, 1, LALL, 8, CD512, 0, NOREG,
      O_V, S_VL, O_KW, S_64, O_NONE, 0, O_NONE, 0, broadcastm),
    E("vpbroadcastmw2d", ENC_EVEX, 2, 0x3a, P_F3, 0, LALL, 4, CD512, 0, NOREG,
      O_V, S_VL, O_KW, S_64, O_NONE, 0, O_NONE, 0, broadcastm),

    /* To a general register, to the flags. */
    E("vpmovmskb", ENC_VEX, 1, 0xd7, P_66, WIG, L128, 1, AVX, 0, NOREG,
      O_G, S_32, O_U, S_VL, O_NONE, 0, O_NONE, 0, movmsk8),
    E("vpmovmskb", ENC_VEX, 1, 0xd7, P_66, WIG, L256, 1, AVX2, 0, NOREG,
      O_G, S_32, O_U, S_VL, O_NONE, 0, O_NONE, 0, movmsk8),
    E("vptest", ENC_VEX, 2, 0x17, P_66, WIG, LVEX, 8, AVX, F_FLAGS, NOREG,
      O_NONE, 0, O_V, S_VL, O_W, S_VL, O_NONE, 0, ptest),
    E("vtestps", ENC_VEX, 2, 0x0e, P_66, 0, LVEX, 4, AVX, F_FLAGS, NOREG,
      O_NONE, 0, O_V, S_VL, O_W, S_VL, O_NONE, 0, testps),
    E("vtestpd", ENC_VEX, 2, 0x0f, P_66, 0, LVEX, 8, AVX, F_FLAGS, NOREG,
      O_NONE, 0, O_V, S_VL, O_W, S_VL, O_NONE, 0, testpd),
    { .name = NULL },
};
