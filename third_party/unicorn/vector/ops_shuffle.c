/*
 * Shuffles, permutes, blends, unpacks, packs and alignment (SDM Vol. 2 instruction pages).
 *
 * Most 256- and 512-bit forms repeat the 128-bit operation in each 128-bit lane with the
 * same control; the ones that cross lanes say so (vshuff32x4 and kin move whole lanes,
 * valignd/q, vpermd/q/w/ps/pd and vpermi2/vpermt2 index the whole vector, vpermq/vpermpd
 * with imm8 work per 256-bit half, vperm2f128/vperm2i128 pick lanes).
 *
 * Every operation computes all elements of the vector length into c->d; the write-back
 * applies EVEX masking, except for the vblendm family, whose mask selects between the
 * sources (see blendm).
 */
#include "vector/ops.h"

/* Element i of size `size` bytes (1, 2, 4, 8), endian-safe through the lane macros. */
static uint64_t get(const VecReg *r, unsigned size, unsigned i)
{
    switch (size) {
    case 1: return U8(r, i);
    case 2: return U16(r, i);
    case 4: return U32(r, i);
    default: return U64(r, i);
    }
}

static void put(VecReg *r, unsigned size, unsigned i, uint64_t v)
{
    switch (size) {
    case 1: U8(r, i) = v; break;
    case 2: U16(r, i) = v; break;
    case 4: U32(r, i) = v; break;
    default: U64(r, i) = v; break;
    }
}

/* 128-bit lane j of r into lane i of d. */
static void copy_lane(VecReg *d, unsigned i, const VecReg *r, unsigned j)
{
    U64(d, 2 * i) = U64(r, 2 * j);
    U64(d, 2 * i + 1) = U64(r, 2 * j + 1);
}

/* ---- shuffles within 128-bit lanes ------------------------------------------------------ */

/* vpshufb: each byte picks a byte of its lane of src1 by src2's low 4 bits; bit 7 zeroes. */
static void pshufb(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes; i++) {
        uint8_t ctl = U8(&c->s2, i);
        U8(&c->d, i) = (ctl & 0x80) ? 0 : U8(&c->s1, (i & ~15u) + (ctl & 15));
    }
}

/* vpshufd: dword i of a lane is dword imm8[2i+1:2i] of that lane. */
static void pshufd(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned i = 0; i < c->vlbytes / 4; i++) {
        U32(&c->d, i) = U32(&c->s1, (i & ~3u) + ((imm >> 2 * (i & 3)) & 3));
    }
}

/* vpshufhw: the high four words of each lane shuffled by imm8, the low quadword copied. */
static void pshufhw(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned i = 0; i < c->vlbytes / 2; i++) {
        unsigned k = i & 7;
        U16(&c->d, i) = k < 4 ? U16(&c->s1, i)
                              : U16(&c->s1, (i & ~7u) + 4 + ((imm >> 2 * (k - 4)) & 3));
    }
}

/* vpshuflw: the low four words of each lane shuffled by imm8, the high quadword copied. */
static void pshuflw(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned i = 0; i < c->vlbytes / 2; i++) {
        unsigned k = i & 7;
        U16(&c->d, i) = k >= 4 ? U16(&c->s1, i)
                               : U16(&c->s1, (i & ~7u) + ((imm >> 2 * k) & 3));
    }
}

/* vshufps: in each lane, dwords 0-1 from src1 and 2-3 from src2, each chosen by 2 imm8 bits
 * (the same imm8 for every lane). */
static void shufps(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned i = 0; i < c->vlbytes / 4; i++) {
        const VecReg *src = (i & 3) < 2 ? &c->s1 : &c->s2;
        U32(&c->d, i) = U32(src, (i & ~3u) + ((imm >> 2 * (i & 3)) & 3));
    }
}

/* vshufpd: in each lane, qword 0 from src1 and qword 1 from src2; element i is chosen by
 * imm8 bit i (bits 0-1 for the first lane, 2-3 for the second, ...). */
static void shufpd(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        const VecReg *src = (i & 1) ? &c->s2 : &c->s1;
        U64(&c->d, i) = U64(src, (i & ~1u) + ((imm >> i) & 1));
    }
}

/* vpalignr: per lane, (src1 lane : src2 lane) shifted right by imm8 bytes (32+: zero). */
static void palignr(VecCtx *c)
{
    unsigned imm = c->in.imm;
    for (unsigned lane = 0; lane < c->vlbytes; lane += 16) {
        for (unsigned k = 0; k < 16; k++) {
            unsigned at = imm + k;
            U8(&c->d, lane + k) = at < 16 ? U8(&c->s2, lane + at)
                                : at < 32 ? U8(&c->s1, lane + at - 16) : 0;
        }
    }
}

/* Unpacks: per lane, the low (or high) halves of src1 and src2 interleaved, src1 first. */
static void unpack(VecCtx *c, unsigned size, bool high)
{
    unsigned per_lane = 16 / size, half = per_lane / 2;
    for (unsigned lane = 0; lane < c->vlbytes / size; lane += per_lane) {
        unsigned from = lane + (high ? half : 0);
        for (unsigned k = 0; k < half; k++) {
            put(&c->d, size, lane + 2 * k, get(&c->s1, size, from + k));
            put(&c->d, size, lane + 2 * k + 1, get(&c->s2, size, from + k));
        }
    }
}
static void unpcklbw(VecCtx *c) { unpack(c, 1, false); }
static void unpcklwd(VecCtx *c) { unpack(c, 2, false); }
static void unpckldq(VecCtx *c) { unpack(c, 4, false); }
static void unpcklqdq(VecCtx *c) { unpack(c, 8, false); }
static void unpckhbw(VecCtx *c) { unpack(c, 1, true); }
static void unpckhwd(VecCtx *c) { unpack(c, 2, true); }
static void unpckhdq(VecCtx *c) { unpack(c, 4, true); }
static void unpckhqdq(VecCtx *c) { unpack(c, 8, true); }

/* Packs: per lane, src1's elements narrowed with saturation, then src2's. */
static int64_t saturate(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void pack(VecCtx *c, unsigned size, int64_t lo, int64_t hi)
{
    unsigned out = size / 2, per_lane = 16 / size;     /* source elements per lane */
    for (unsigned lane = 0; lane < c->vlbytes / 16; lane++) {
        for (unsigned k = 0; k < per_lane; k++) {
            unsigned from = lane * per_lane + k, to = lane * 2 * per_lane + k;
            int64_t a = size == 2 ? (int16_t)U16(&c->s1, from) : (int32_t)U32(&c->s1, from);
            int64_t b = size == 2 ? (int16_t)U16(&c->s2, from) : (int32_t)U32(&c->s2, from);
            put(&c->d, out, to, saturate(a, lo, hi));
            put(&c->d, out, to + per_lane, saturate(b, lo, hi));
        }
    }
}
static void packsswb(VecCtx *c) { pack(c, 2, INT8_MIN, INT8_MAX); }
static void packuswb(VecCtx *c) { pack(c, 2, 0, UINT8_MAX); }
static void packssdw(VecCtx *c) { pack(c, 4, INT16_MIN, INT16_MAX); }
static void packusdw(VecCtx *c) { pack(c, 4, 0, UINT16_MAX); }

/* ---- lanes and whole-vector shuffles ---------------------------------------------------- */

/* vshuff32x4/vshuff64x2/vshufi32x4/vshufi64x2: the low half of the destination's 128-bit
 * lanes from src1, the high half from src2, each lane chosen by imm8 (1 bit per lane at
 * 256 bits, 2 bits at 512). */
static void shuf_lanes(VecCtx *c)
{
    unsigned lanes = c->vlbytes / 16, bits = lanes == 2 ? 1 : 2, imm = c->in.imm;
    VecReg d = c->d;
    for (unsigned j = 0; j < lanes; j++) {
        const VecReg *src = j < lanes / 2 ? &c->s1 : &c->s2;
        copy_lane(&d, j, src, (imm >> (j * bits)) & (lanes - 1));
    }
    c->d = d;
}

/* valignd/valignq: (src1 : src2) shifted right by imm8 elements, imm8 taken modulo the
 * element count of the vector length. */
static void align(VecCtx *c)
{
    unsigned size = c->op->esize, n = c->nelem, shift = c->in.imm & (n - 1);
    for (unsigned i = 0; i < n; i++) {
        unsigned at = i + shift;
        put(&c->d, size, i, at < n ? get(&c->s2, size, at) : get(&c->s1, size, at - n));
    }
}

/* ---- blends ----------------------------------------------------------------------------- */

/* vblendps/vblendpd/vpblendd: element i from src2 where imm8 bit i is set. */
static void blend_imm(VecCtx *c)
{
    unsigned size = c->op->esize;
    for (unsigned i = 0; i < c->nelem; i++) {
        put(&c->d, size, i, get((c->in.imm >> i) & 1 ? &c->s2 : &c->s1, size, i));
    }
}

/* vpblendw: word i of each lane from src2 where imm8 bit i is set (the same imm8 for every
 * lane). */
static void pblendw(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 2; i++) {
        U16(&c->d, i) = (c->in.imm >> (i & 7)) & 1 ? U16(&c->s2, i) : U16(&c->s1, i);
    }
}

/* vblendvps/vblendvpd/vpblendvb: element i from src2 where the top bit of element i of the
 * register in imm8[7:4] is set. */
static void blendv(VecCtx *c)
{
    unsigned size = c->op->esize, top = size * 8 - 1;
    for (unsigned i = 0; i < c->nelem; i++) {
        bool pick = (get(&c->s3, size, i) >> top) & 1;
        put(&c->d, size, i, get(pick ? &c->s2 : &c->s1, size, i));
    }
}

/*
 * vblendmps/pd, vpblendmb/w/d/q: the opmask selects src2 where set; where clear, src1 with
 * merging, zero with {z}. The mask is not a write mask here, so the operation applies it
 * and leaves every element live for the write-back (which then writes all of them).
 */
static void blendm(VecCtx *c)
{
    unsigned size = c->op->esize;
    for (unsigned i = 0; i < c->nelem; i++) {
        uint64_t v = vec_live(c, i) ? get(&c->s2, size, i)
                   : c->in.z ? 0 : get(&c->s1, size, i);
        put(&c->d, size, i, v);
    }
    c->mask = c->nelem >= 64 ? ~0ull : (1ull << c->nelem) - 1;
}

/* ---- permutes --------------------------------------------------------------------------- */

/* vpermilps imm8: dword i of a lane is dword imm8[2i+1:2i] of that lane of src1. */
static void permilps_imm(VecCtx *c)
{
    pshufd(c);
}

/* vpermilpd imm8: qword i is qword imm8[i] of its lane of src1. */
static void permilpd_imm(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        U64(&c->d, i) = U64(&c->s1, (i & ~1u) + ((c->in.imm >> i) & 1));
    }
}

/* vpermilps variable: dword i is the dword of its lane of src1 named by bits 1:0 of src2's
 * dword i. */
static void permilps_var(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 4; i++) {
        U32(&c->d, i) = U32(&c->s1, (i & ~3u) + (U32(&c->s2, i) & 3));
    }
}

/* vpermilpd variable: qword i is the qword of its lane of src1 named by bit 1 of src2's
 * qword i. */
static void permilpd_var(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        U64(&c->d, i) = U64(&c->s1, (i & ~1u) + ((U64(&c->s2, i) >> 1) & 1));
    }
}

/* vperm2f128/vperm2i128: each 128-bit half picks src1.lo, src1.hi, src2.lo or src2.hi by
 * imm8[1:0] (low half) and imm8[5:4] (high half); imm8[3] and imm8[7] zero the half. */
static void perm2x128(VecCtx *c)
{
    VecReg d = c->d;
    for (unsigned h = 0; h < 2; h++) {
        unsigned ctl = c->in.imm >> (4 * h);
        if (ctl & 8) {
            U64(&d, 2 * h) = U64(&d, 2 * h + 1) = 0;
        } else {
            copy_lane(&d, h, (ctl & 2) ? &c->s2 : &c->s1, ctl & 1);
        }
    }
    c->d = d;
}

/* vpermq/vpermpd imm8: in each 256-bit half, qword i is qword imm8[2i+1:2i] of that half. */
static void permq_imm(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        U64(&c->d, i) = U64(&c->s1, (i & ~3u) + ((c->in.imm >> 2 * (i & 3)) & 3));
    }
}

/* vpermd/vpermps/vpermq/vpermpd/vpermw (variable): element i is the element of the whole
 * vector src2 named by the low bits of src1's element i. */
static void perm_var(VecCtx *c)
{
    unsigned size = c->op->esize, n = c->nelem;
    for (unsigned i = 0; i < n; i++) {
        put(&c->d, size, i, get(&c->s2, size, get(&c->s1, size, i) & (n - 1)));
    }
}

/* vpermi2w/d/q/ps/pd: the destination holds the indices and is overwritten; an index picks
 * from src1 (the vvvv table) or, with its bit log2(n) set, from src2 (the rm table). */
static void permi2(VecCtx *c)
{
    unsigned size = c->op->esize, n = c->nelem;
    VecReg idx = c->d;
    for (unsigned i = 0; i < n; i++) {
        uint64_t x = get(&idx, size, i);
        put(&c->d, size, i, get((x & n) ? &c->s2 : &c->s1, size, x & (n - 1)));
    }
}

/* vpermt2w/d/q/ps/pd: src1 (vvvv) holds the indices; an index picks from the destination
 * (the first table, overwritten) or, with its bit log2(n) set, from src2 (the rm table). */
static void permt2(VecCtx *c)
{
    unsigned size = c->op->esize, n = c->nelem;
    VecReg table = c->d;
    for (unsigned i = 0; i < n; i++) {
        uint64_t x = get(&c->s1, size, i);
        put(&c->d, size, i, get((x & n) ? &c->s2 : &table, size, x & (n - 1)));
    }
}

/* ---- tables ----------------------------------------------------------------------------- */

#define AVX X_AVX
#define AVX2 X_AVX2
#define F512 X_AVX512F
#define BW512 X_AVX512BW
#define MB (F_MASK | F_BCST)
/* Exception type E4 (element-wise, so masked-off memory elements are not read and cannot
 * fault): the vblendm family. Everything else here is E4NF (the whole operand is read). */
#define MM (F_MASK | F_MEMMASK)
#define MBM (MB | F_MEMMASK)

/* dst = op(rm, imm8). */
#define VWI(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, (fl) | F_IMM, NOREG, O_V, S_VL, O_W, S_VL, \
      O_NONE, 0, O_NONE, 0, f)
/* dst = op(vvvv, rm, imm8). */
#define VHWI(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, (fl) | F_IMM, NOREG, O_V, S_VL, O_H, S_VL, \
      O_W, S_VL, O_NONE, 0, f)
/* dst = op(vvvv, rm, the register in imm8[7:4]): VEX's is4 blends. */
#define VHWL(nm, opc, esz, feat, f) \
    E(nm, ENC_VEX, 3, opc, P_66, 0, LVEX, esz, feat, F_IMM, NOREG, O_V, S_VL, O_H, S_VL, \
      O_W, S_VL, O_L, S_VL, f)

/* VEX integer forms: AVX at 128 bits, AVX2 at 256. */
#define VINT(nm, mp, opc, p, esz, f) \
    VHW(nm, ENC_VEX, mp, opc, p, WIG, L128, esz, AVX, 0, f), \
    VHW(nm, ENC_VEX, mp, opc, p, WIG, L256, esz, AVX2, 0, f)
#define VINTI(nm, mp, opc, p, esz, f) \
    VWI(nm, ENC_VEX, mp, opc, p, WIG, L128, esz, AVX, 0, f), \
    VWI(nm, ENC_VEX, mp, opc, p, WIG, L256, esz, AVX2, 0, f)
#define VINTHI(nm, mp, opc, p, esz, f) \
    VHWI(nm, ENC_VEX, mp, opc, p, WIG, L128, esz, AVX, 0, f), \
    VHWI(nm, ENC_VEX, mp, opc, p, WIG, L256, esz, AVX2, 0, f)

/* EVEX forms whose broadcast element (m32bcst) is not the masking element (words):
 * vpackssdw, vpackusdw. */
#define VHW_BCST32(nm, mp, opc, f) \
    { .name = nm, .enc = ENC_EVEX, .map = mp, .opcode = opc, .pp = P_66, .w = 0,            \
      .lengths = LALL, .modrm_reg = NOREG, .esize = 2, .bsize = 4, .feature = BW512,        \
      .flags = MB, .dst = O_V, .dsize = S_VL, .src1 = O_H, .s1size = S_VL, .src2 = O_W,     \
      .s2size = S_VL, .src3 = O_NONE, .s3size = 0, .fn = f }

const VecOp vec_ops_shuffle[] = {
    /* vpshufb, vpshufd, vpshufhw, vpshuflw. */
    VINT("vpshufb", 2, 0x00, P_66, 1, pshufb),
    VHW("vpshufb", ENC_EVEX, 2, 0x00, P_66, WIG, LALL, 1, BW512, F_MASK, pshufb),
    VINTI("vpshufd", 1, 0x70, P_66, 4, pshufd),
    VWI("vpshufd", ENC_EVEX, 1, 0x70, P_66, 0, LALL, 4, F512, MB, pshufd),
    VINTI("vpshufhw", 1, 0x70, P_F3, 2, pshufhw),
    VWI("vpshufhw", ENC_EVEX, 1, 0x70, P_F3, WIG, LALL, 2, BW512, F_MASK, pshufhw),
    VINTI("vpshuflw", 1, 0x70, P_F2, 2, pshuflw),
    VWI("vpshuflw", ENC_EVEX, 1, 0x70, P_F2, WIG, LALL, 2, BW512, F_MASK, pshuflw),

    /* vshufps, vshufpd, vshuff32x4, vshuff64x2, vshufi32x4, vshufi64x2. */
    VHWI("vshufps", ENC_VEX, 1, 0xc6, P_NONE, WIG, LVEX, 4, AVX, 0, shufps),
    VHWI("vshufps", ENC_EVEX, 1, 0xc6, P_NONE, 0, LALL, 4, F512, MB, shufps),
    VHWI("vshufpd", ENC_VEX, 1, 0xc6, P_66, WIG, LVEX, 8, AVX, 0, shufpd),
    VHWI("vshufpd", ENC_EVEX, 1, 0xc6, P_66, 1, LALL, 8, F512, MB, shufpd),
    VHWI("vshuff32x4", ENC_EVEX, 3, 0x23, P_66, 0, L256 | L512, 4, F512, MB, shuf_lanes),
    VHWI("vshuff64x2", ENC_EVEX, 3, 0x23, P_66, 1, L256 | L512, 8, F512, MB, shuf_lanes),
    VHWI("vshufi32x4", ENC_EVEX, 3, 0x43, P_66, 0, L256 | L512, 4, F512, MB, shuf_lanes),
    VHWI("vshufi64x2", ENC_EVEX, 3, 0x43, P_66, 1, L256 | L512, 8, F512, MB, shuf_lanes),

    /* vpalignr, valignd, valignq. */
    VINTHI("vpalignr", 3, 0x0f, P_66, 1, palignr),
    VHWI("vpalignr", ENC_EVEX, 3, 0x0f, P_66, WIG, LALL, 1, BW512, F_MASK, palignr),
    VHWI("valignd", ENC_EVEX, 3, 0x03, P_66, 0, LALL, 4, F512, MB, align),
    VHWI("valignq", ENC_EVEX, 3, 0x03, P_66, 1, LALL, 8, F512, MB, align),

    /* Unpacks. */
    VINT("vpunpcklbw", 1, 0x60, P_66, 1, unpcklbw),
    VINT("vpunpcklwd", 1, 0x61, P_66, 2, unpcklwd),
    VINT("vpunpckldq", 1, 0x62, P_66, 4, unpckldq),
    VINT("vpunpcklqdq", 1, 0x6c, P_66, 8, unpcklqdq),
    VINT("vpunpckhbw", 1, 0x68, P_66, 1, unpckhbw),
    VINT("vpunpckhwd", 1, 0x69, P_66, 2, unpckhwd),
    VINT("vpunpckhdq", 1, 0x6a, P_66, 4, unpckhdq),
    VINT("vpunpckhqdq", 1, 0x6d, P_66, 8, unpckhqdq),
    VHW("vpunpcklbw", ENC_EVEX, 1, 0x60, P_66, WIG, LALL, 1, BW512, F_MASK, unpcklbw),
    VHW("vpunpcklwd", ENC_EVEX, 1, 0x61, P_66, WIG, LALL, 2, BW512, F_MASK, unpcklwd),
    VHW("vpunpckldq", ENC_EVEX, 1, 0x62, P_66, 0, LALL, 4, F512, MB, unpckldq),
    VHW("vpunpcklqdq", ENC_EVEX, 1, 0x6c, P_66, 1, LALL, 8, F512, MB, unpcklqdq),
    VHW("vpunpckhbw", ENC_EVEX, 1, 0x68, P_66, WIG, LALL, 1, BW512, F_MASK, unpckhbw),
    VHW("vpunpckhwd", ENC_EVEX, 1, 0x69, P_66, WIG, LALL, 2, BW512, F_MASK, unpckhwd),
    VHW("vpunpckhdq", ENC_EVEX, 1, 0x6a, P_66, 0, LALL, 4, F512, MB, unpckhdq),
    VHW("vpunpckhqdq", ENC_EVEX, 1, 0x6d, P_66, 1, LALL, 8, F512, MB, unpckhqdq),
    VHW("vunpcklps", ENC_VEX, 1, 0x14, P_NONE, WIG, LVEX, 4, AVX, 0, unpckldq),
    VHW("vunpcklpd", ENC_VEX, 1, 0x14, P_66, WIG, LVEX, 8, AVX, 0, unpcklqdq),
    VHW("vunpckhps", ENC_VEX, 1, 0x15, P_NONE, WIG, LVEX, 4, AVX, 0, unpckhdq),
    VHW("vunpckhpd", ENC_VEX, 1, 0x15, P_66, WIG, LVEX, 8, AVX, 0, unpckhqdq),
    VHW("vunpcklps", ENC_EVEX, 1, 0x14, P_NONE, 0, LALL, 4, F512, MB, unpckldq),
    VHW("vunpcklpd", ENC_EVEX, 1, 0x14, P_66, 1, LALL, 8, F512, MB, unpcklqdq),
    VHW("vunpckhps", ENC_EVEX, 1, 0x15, P_NONE, 0, LALL, 4, F512, MB, unpckhdq),
    VHW("vunpckhpd", ENC_EVEX, 1, 0x15, P_66, 1, LALL, 8, F512, MB, unpckhqdq),

    /* Packs: masking is per destination element (bytes, words). */
    VINT("vpacksswb", 1, 0x63, P_66, 1, packsswb),
    VINT("vpackssdw", 1, 0x6b, P_66, 2, packssdw),
    VINT("vpackuswb", 1, 0x67, P_66, 1, packuswb),
    VINT("vpackusdw", 2, 0x2b, P_66, 2, packusdw),
    VHW("vpacksswb", ENC_EVEX, 1, 0x63, P_66, WIG, LALL, 1, BW512, F_MASK, packsswb),
    VHW_BCST32("vpackssdw", 1, 0x6b, packssdw),
    VHW("vpackuswb", ENC_EVEX, 1, 0x67, P_66, WIG, LALL, 1, BW512, F_MASK, packuswb),
    VHW_BCST32("vpackusdw", 2, 0x2b, packusdw),

    /* Blends. */
    VHWI("vblendps", ENC_VEX, 3, 0x0c, P_66, WIG, LVEX, 4, AVX, 0, blend_imm),
    VHWI("vblendpd", ENC_VEX, 3, 0x0d, P_66, WIG, LVEX, 8, AVX, 0, blend_imm),
    VINTHI("vpblendw", 3, 0x0e, P_66, 2, pblendw),
    VHWI("vpblendd", ENC_VEX, 3, 0x02, P_66, 0, LVEX, 4, AVX2, 0, blend_imm),
    VHWL("vblendvps", 0x4a, 4, AVX, blendv),
    VHWL("vblendvpd", 0x4b, 8, AVX, blendv),
    E("vpblendvb", ENC_VEX, 3, 0x4c, P_66, 0, L128, 1, AVX, F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_L, S_VL, blendv),
    E("vpblendvb", ENC_VEX, 3, 0x4c, P_66, 0, L256, 1, AVX2, F_IMM, NOREG,
      O_V, S_VL, O_H, S_VL, O_W, S_VL, O_L, S_VL, blendv),
    VHW("vblendmps", ENC_EVEX, 2, 0x65, P_66, 0, LALL, 4, F512, MBM, blendm),
    VHW("vblendmpd", ENC_EVEX, 2, 0x65, P_66, 1, LALL, 8, F512, MBM, blendm),
    VHW("vpblendmd", ENC_EVEX, 2, 0x64, P_66, 0, LALL, 4, F512, MBM, blendm),
    VHW("vpblendmq", ENC_EVEX, 2, 0x64, P_66, 1, LALL, 8, F512, MBM, blendm),
    VHW("vpblendmb", ENC_EVEX, 2, 0x66, P_66, 0, LALL, 1, BW512, MM, blendm),
    VHW("vpblendmw", ENC_EVEX, 2, 0x66, P_66, 1, LALL, 2, BW512, MM, blendm),

    /* vpermilps, vpermilpd: variable (table vvvv, control rm) and imm8 forms. */
    VHW("vpermilps", ENC_VEX, 2, 0x0c, P_66, 0, LVEX, 4, AVX, 0, permilps_var),
    VHW("vpermilpd", ENC_VEX, 2, 0x0d, P_66, 0, LVEX, 8, AVX, 0, permilpd_var),
    VHW("vpermilps", ENC_EVEX, 2, 0x0c, P_66, 0, LALL, 4, F512, MB, permilps_var),
    VHW("vpermilpd", ENC_EVEX, 2, 0x0d, P_66, 1, LALL, 8, F512, MB, permilpd_var),
    VWI("vpermilps", ENC_VEX, 3, 0x04, P_66, 0, LVEX, 4, AVX, 0, permilps_imm),
    VWI("vpermilpd", ENC_VEX, 3, 0x05, P_66, 0, LVEX, 8, AVX, 0, permilpd_imm),
    VWI("vpermilps", ENC_EVEX, 3, 0x04, P_66, 0, LALL, 4, F512, MB, permilps_imm),
    VWI("vpermilpd", ENC_EVEX, 3, 0x05, P_66, 1, LALL, 8, F512, MB, permilpd_imm),

    /* vperm2f128, vperm2i128. */
    VHWI("vperm2f128", ENC_VEX, 3, 0x06, P_66, 0, L256, 16, AVX, 0, perm2x128),
    VHWI("vperm2i128", ENC_VEX, 3, 0x46, P_66, 0, L256, 16, AVX2, 0, perm2x128),

    /* vpermq, vpermpd with imm8 (per 256-bit half). */
    VWI("vpermq", ENC_VEX, 3, 0x00, P_66, 1, L256, 8, AVX2, 0, permq_imm),
    VWI("vpermpd", ENC_VEX, 3, 0x01, P_66, 1, L256, 8, AVX2, 0, permq_imm),
    VWI("vpermq", ENC_EVEX, 3, 0x00, P_66, 1, L256 | L512, 8, F512, MB, permq_imm),
    VWI("vpermpd", ENC_EVEX, 3, 0x01, P_66, 1, L256 | L512, 8, F512, MB, permq_imm),

    /* Variable permutes across the whole vector: indices vvvv, table rm. */
    VHW("vpermd", ENC_VEX, 2, 0x36, P_66, 0, L256, 4, AVX2, 0, perm_var),
    VHW("vpermps", ENC_VEX, 2, 0x16, P_66, 0, L256, 4, AVX2, 0, perm_var),
    VHW("vpermd", ENC_EVEX, 2, 0x36, P_66, 0, L256 | L512, 4, F512, MB, perm_var),
    VHW("vpermq", ENC_EVEX, 2, 0x36, P_66, 1, L256 | L512, 8, F512, MB, perm_var),
    VHW("vpermps", ENC_EVEX, 2, 0x16, P_66, 0, L256 | L512, 4, F512, MB, perm_var),
    VHW("vpermpd", ENC_EVEX, 2, 0x16, P_66, 1, L256 | L512, 8, F512, MB, perm_var),
    VHW("vpermw", ENC_EVEX, 2, 0x8d, P_66, 1, LALL, 2, BW512, F_MASK, perm_var),

    /* Two-table permutes. */
    VHW("vpermi2w", ENC_EVEX, 2, 0x75, P_66, 1, LALL, 2, BW512, F_MASK, permi2),
    VHW("vpermi2d", ENC_EVEX, 2, 0x76, P_66, 0, LALL, 4, F512, MB, permi2),
    VHW("vpermi2q", ENC_EVEX, 2, 0x76, P_66, 1, LALL, 8, F512, MB, permi2),
    VHW("vpermi2ps", ENC_EVEX, 2, 0x77, P_66, 0, LALL, 4, F512, MB, permi2),
    VHW("vpermi2pd", ENC_EVEX, 2, 0x77, P_66, 1, LALL, 8, F512, MB, permi2),
    VHW("vpermt2w", ENC_EVEX, 2, 0x7d, P_66, 1, LALL, 2, BW512, F_MASK, permt2),
    VHW("vpermt2d", ENC_EVEX, 2, 0x7e, P_66, 0, LALL, 4, F512, MB, permt2),
    VHW("vpermt2q", ENC_EVEX, 2, 0x7e, P_66, 1, LALL, 8, F512, MB, permt2),
    VHW("vpermt2ps", ENC_EVEX, 2, 0x7f, P_66, 0, LALL, 4, F512, MB, permt2),
    VHW("vpermt2pd", ENC_EVEX, 2, 0x7f, P_66, 1, LALL, 8, F512, MB, permt2),
    { .name = NULL },
};
