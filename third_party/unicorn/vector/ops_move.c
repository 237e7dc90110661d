/*
 * Moves: whole vectors, non-temporal moves, scalars and halves, general registers,
 * broadcasts, lane and element inserts/extracts, masked moves (VMASKMOV, VPMASKMOV,
 * VMASKMOVDQU), widening (VPMOVZX/SX) and narrowing (VPMOV*, with saturation),
 * compress/expand, VZEROUPPER/VZEROALL.
 *
 * A load or register move is `copy`: the operand fetch has already sized the source (a
 * scalar load arrives zero-extended), and the write-back masks and zero-extends.
 *
 * Fault suppression follows the SDM's exception classes (Vol. 2A 2.8): the classes without
 * "NF" suppress faults of masked-off elements, so those entries read memory per element
 * (F_MEMMASK) or themselves (F_OWNMEM: the operation addresses c->addr); the "NF" ones
 * (VMOVSHDUP/VMOVSLDUP E4NF, VMOVDDUP E5NF, VINSERTx/VEXTRACTx E6NF, VMOVNT* E1NF) access
 * the whole operand whatever the mask.
 *
 * Destinations narrower than the vector length (VEXTRACTx to a register, VPMOVxx narrowing)
 * are masked per destination element and zeroed above the destination's size: dest_size()
 * tells the write-back so.
 */
#include "vector/ops.h"

static void copy(VecCtx *c)
{
    c->d = c->s1;
}

/*
 * The write-back merges (or zeroes) c->nelem elements and zeroes from byte c->vlbytes up:
 * an operation whose register destination is `bytes` wide (an xmm/ymm extracted from a wider
 * source, a narrowed vector) sets both to the destination's size. Stores are sized by the
 * entry's dsize already.
 */
static void dest_size(VecCtx *c, unsigned bytes)
{
    c->vlbytes = bytes;
    c->nelem = bytes / c->op->esize;
}

/* The most significant bit of element i of r, for elements of e bytes (a mask element). */
static bool msb(const VecReg *r, unsigned i, unsigned e)
{
    return (U8(r, i * e + e - 1) >> 7) & 1;
}

/* ---- scalars and halves ------------------------------------------------------------- */

/* vmovss/vmovsd between registers: dst = vvvv with element 0 from rm (or reg for stores). */
static void merge_scalar32(VecCtx *c)
{
    c->d = c->s1;
    U32(&c->d, 0) = U32(&c->s2, 0);
}

/* Also vmovlps/vmovlpd loads: dst[63:0] = m64, dst[127:64] = vvvv[127:64]. */
static void merge_scalar64(VecCtx *c)
{
    c->d = c->s1;
    U64(&c->d, 0) = U64(&c->s2, 0);
}

/* EVEX vmovss/vmovsd xmm{k}, m: element 0 loaded only if live (a masked-off one is not
 * read and cannot fault); bits above it are zeroed. */
static void load_scalar(VecCtx *c)
{
    memset(&c->d, 0, sizeof(c->d));
    if (vec_live(c, 0)) {
        vec_load(c, c->addr, &c->d, c->op->esize);
    }
}

/* vmovq xmm, xmm/m64 and vmovq xmm/m64, xmm: the low quadword, zero-extended. */
static void low64(VecCtx *c)
{
    memset(&c->d, 0, sizeof(c->d));
    U64(&c->d, 0) = U64(&c->s1, 0);
}

/* vmovhlps: dst[63:0] = rm[127:64], dst[127:64] = vvvv[127:64]. */
static void movhlps(VecCtx *c)
{
    c->d = c->s1;
    U64(&c->d, 0) = U64(&c->s2, 1);
}

/* vmovlhps and vmovhps/vmovhpd loads: dst[63:0] = vvvv[63:0], dst[127:64] = rm[63:0]. */
static void movlhps(VecCtx *c)
{
    c->d = c->s1;
    U64(&c->d, 1) = U64(&c->s2, 0);
}

/* vmovhps/vmovhpd stores: m64 = reg[127:64]. */
static void high64(VecCtx *c)
{
    memset(&c->d, 0, sizeof(c->d));
    U64(&c->d, 0) = U64(&c->s1, 1);
}

static void movshdup(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        U32(&c->d, 2 * i) = U32(&c->d, 2 * i + 1) = U32(&c->s1, 2 * i + 1);
    }
}

static void movsldup(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        U32(&c->d, 2 * i) = U32(&c->d, 2 * i + 1) = U32(&c->s1, 2 * i);
    }
}

static void movddup(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 16; i++) {
        U64(&c->d, 2 * i) = U64(&c->d, 2 * i + 1) = U64(&c->s1, 2 * i);
    }
}

/* ---- general registers -------------------------------------------------------------- */

/* To a general register or memory: the low 32 or 64 bits. */
static void to_gpr(VecCtx *c)
{
    c->g = U64(&c->s1, 0);
}

/* vmovmskps/vmovmskpd: the sign bit of each element into a general register. */
static void movmsk(VecCtx *c)
{
    unsigned e = c->op->esize;
    uint64_t m = 0;
    for (unsigned i = 0; i < c->vlbytes / e; i++) {
        m |= (uint64_t)msb(&c->s1, i, e) << i;
    }
    c->g = m;
}

/* vpextrb/w/d/q, vextractps: element imm (modulo the count in 128 bits) of src1. */
static void extract_elem(VecCtx *c)
{
    unsigned e = c->op->esize;
    unsigned i = c->in.imm & (16 / e - 1);
    c->g = 0;
    memcpy(&c->g, (const uint8_t *)&c->s1 + i * e, e);
}

/* vpinsrb/w/d/q: vvvv with element imm replaced by the low bytes of r/m. */
static void insert_elem(VecCtx *c)
{
    unsigned e = c->op->esize;
    unsigned i = c->in.imm & (16 / e - 1);
    c->d = c->s1;
    memcpy((uint8_t *)&c->d + i * e, &c->s2, e);
}

/* vinsertps: imm[7:6] source element (registers only), imm[5:4] destination element,
 * imm[3:0] elements zeroed. */
static void insertps(VecCtx *c)
{
    unsigned imm = c->in.imm;
    uint32_t v = U32(&c->s2, c->in.mem ? 0 : (imm >> 6) & 3);
    c->d = c->s1;
    U32(&c->d, (imm >> 4) & 3) = v;
    for (unsigned i = 0; i < 4; i++) {
        if ((imm >> i) & 1) {
            U32(&c->d, i) = 0;
        }
    }
}

/* ---- broadcasts ---------------------------------------------------------------------- */

/*
 * The block a broadcast repeats is its source operand's memory size: one element
 * (vbroadcastss, vpbroadcastb...), or 2, 4 or 8 of them (vbroadcastf32x2, ...x4, ...x8,
 * vbroadcastf128). From a register, the low bytes of that size. An EVEX memory form
 * (F_OWNMEM) reads a block element only if some live destination element takes it, so
 * masked-off elements cannot fault (exception class E6).
 */
static void broadcast(VecCtx *c)
{
    unsigned n = vec_size_bytes(c->op, &c->in, c->op->s1size);
    uint8_t block[64];
    uint8_t *d = (uint8_t *)&c->d;

    if (c->in.mem && (c->op->flags & F_OWNMEM)) {
        unsigned e = c->op->esize, per = n / e;
        memset(block, 0, sizeof(block));
        for (unsigned i = 0; i < per; i++) {
            bool needed = false;
            for (unsigned j = i; j < c->nelem; j += per) {
                needed |= vec_live(c, j);
            }
            if (needed) {
                vec_load(c, c->addr + i * e, block + i * e, e);
            }
        }
    } else {
        memcpy(block, &c->s1, n);
    }
    for (unsigned i = 0; i < c->vlbytes; i += n) {
        memcpy(d + i, block, n);
    }
}

/* vpbroadcastb/w/d/q from a general register: its low element, repeated. */
static void broadcast_gpr(VecCtx *c)
{
    unsigned e = c->op->esize;
    for (unsigned i = 0; i < c->vlbytes; i += e) {
        memcpy((uint8_t *)&c->d + i, &c->s1, e);
    }
}

/* ---- lanes --------------------------------------------------------------------------- */

/* vinsert*: src1 with the 128- or 256-bit lane imm (modulo the lanes) taken from src2. */
static void insert_lane(VecCtx *c)
{
    unsigned n = vec_size_bytes(c->op, &c->in, c->op->s2size);
    unsigned k = c->in.imm & (c->vlbytes / n - 1);
    c->d = c->s1;
    memcpy((uint8_t *)&c->d + k * n, &c->s2, n);
}

/*
 * vextract*: the lane imm of src1, into an xmm/ymm register (masked per element, zeroed
 * above) or memory. The EVEX memory form (F_OWNMEM) writes only the live elements, but has
 * no fault suppression (class E6NF): the whole destination is checked first.
 */
static void extract_lane(VecCtx *c)
{
    unsigned n = vec_size_bytes(c->op, &c->in, c->op->dsize);
    unsigned k = c->in.imm & (c->vlbytes / n - 1);
    unsigned e = c->op->esize;

    memset(&c->d, 0, sizeof(c->d));
    memcpy(&c->d, (const uint8_t *)&c->s1 + k * n, n);
    dest_size(c, n);
    if (c->in.mem && (c->op->flags & F_OWNMEM)) {
        vec_probe_store(c, c->addr, n);
        for (unsigned i = 0; i < n / e; i++) {
            if (vec_live(c, i)) {
                vec_store(c, c->addr + i * e, (const uint8_t *)&c->d + i * e, e);
            }
        }
    }
}

/* ---- masked moves (VEX) -------------------------------------------------------------- */

/*
 * vmaskmovps/pd, vpmaskmovd/q loads: element i from memory where the mask element's (vvvv)
 * top bit is set, else 0; masked-off elements are not read, so they cannot fault.
 */
static void maskmov_load(VecCtx *c)
{
    unsigned e = c->op->esize;
    memset(&c->d, 0, sizeof(c->d));
    for (unsigned i = 0; i < c->vlbytes / e; i++) {
        if (msb(&c->s1, i, e)) {
            vec_load(c, c->addr + i * e, (uint8_t *)&c->d + i * e, e);
        }
    }
}

/* src2's elements whose mask element (src1) has its top bit set, to c->addr. */
static void store_selected(VecCtx *c)
{
    unsigned e = c->op->esize, n = c->vlbytes / e;
    for (unsigned i = 0; i < n; i++) {
        if (msb(&c->s1, i, e)) {
            vec_store(c, c->addr + i * e, (const uint8_t *)&c->s2 + i * e, e);
        }
    }
}

/*
 * vmaskmovps/pd, vpmaskmovd/q stores: every page a live element writes is checked first, so
 * a fault writes nothing; masked-off elements are not accessed and cannot fault (SDM).
 */
static void maskmov_store(VecCtx *c)
{
    unsigned e = c->op->esize, n = c->vlbytes / e;
    for (unsigned i = 0; i < n; i++) {
        if (msb(&c->s1, i, e)) {
            vec_probe_store(c, c->addr + i * e, e);
        }
    }
    store_selected(c);
}

/*
 * vmaskmovdqu xmm1, xmm2: the bytes of xmm1 (reg) whose xmm2 (rm) byte has its top bit set,
 * to DS:rDI (c->addr, from the translator's F_RDI). Its memory operand is the m128 at rDI:
 * the 16 bytes are checked whatever the mask (with an all-zero mask the SDM leaves that to
 * the implementation; Zen 4 does too), then only the selected bytes are written.
 */
static void maskmovdqu(VecCtx *c)
{
    vec_probe_store(c, c->addr, 16);
    store_selected(c);
}

/* ---- widening and narrowing --------------------------------------------------------- */

/* vpmovzx/vpmovsx: each destination element from the source element of the same index. */
#define EXTEND(name, ST, SACC, DT, DACC)                        \
    static void name(VecCtx *c)                                 \
    {                                                           \
        FOR_ELEMS(c, i) {                                       \
            DACC(&c->d, i) = (DT)(ST)SACC(&c->s1, i);           \
        }                                                       \
    }

EXTEND(zxbw, uint8_t, U8, uint16_t, U16)
EXTEND(zxbd, uint8_t, U8, uint32_t, U32)
EXTEND(zxbq, uint8_t, U8, uint64_t, U64)
EXTEND(zxwd, uint16_t, U16, uint32_t, U32)
EXTEND(zxwq, uint16_t, U16, uint64_t, U64)
EXTEND(zxdq, uint32_t, U32, uint64_t, U64)
EXTEND(sxbw, int8_t, U8, uint16_t, U16)
EXTEND(sxbd, int8_t, U8, uint32_t, U32)
EXTEND(sxbq, int8_t, U8, uint64_t, U64)
EXTEND(sxwd, int16_t, U16, uint32_t, U32)
EXTEND(sxwq, int16_t, U16, uint64_t, U64)
EXTEND(sxdq, int32_t, U32, uint64_t, U64)

enum { TRUNCATE, SIGNED_SAT, UNSIGNED_SAT };

/*
 * vpmov{,s,us}{qb,qw,qd,db,dw,wb}: each source element (reg, `from` bytes) narrowed to `to`
 * bytes (the entry's esize) by truncation, signed saturation, or unsigned saturation (the
 * source taken as unsigned). The result is vlbytes/from elements; the register destination
 * is zeroed above them.
 */
static void narrow(VecCtx *c, unsigned from, int how)
{
    unsigned to = c->op->esize, count = c->vlbytes / from;
    unsigned tbits = to * 8, fbits = from * 8;
    uint8_t *d = (uint8_t *)&c->d;

    memset(&c->d, 0, sizeof(c->d));
    for (unsigned i = 0; i < count; i++) {
        uint64_t v = 0;
        memcpy(&v, (const uint8_t *)&c->s1 + i * from, from);
        if (how == SIGNED_SAT) {
            int64_t s = fbits == 64 ? (int64_t)v : (int64_t)(v << (64 - fbits)) >> (64 - fbits);
            int64_t max = (INT64_C(1) << (tbits - 1)) - 1, min = -max - 1;
            v = s > max ? (uint64_t)max : s < min ? (uint64_t)min : (uint64_t)s;
        } else if (how == UNSIGNED_SAT) {
            uint64_t max = (UINT64_C(1) << tbits) - 1;
            v = v > max ? max : v;
        }
        memcpy(d + i * to, &v, to);            /* the low `to` bytes (little-endian) */
    }
    dest_size(c, count * to);
}

#define NARROW(name, from, how) \
    static void name(VecCtx *c) { narrow(c, from, how); }

NARROW(movqb, 8, TRUNCATE)
NARROW(movqw, 8, TRUNCATE)
NARROW(movqd, 8, TRUNCATE)
NARROW(movdb, 4, TRUNCATE)
NARROW(movdw, 4, TRUNCATE)
NARROW(movwb, 2, TRUNCATE)
NARROW(movsqb, 8, SIGNED_SAT)
NARROW(movsqw, 8, SIGNED_SAT)
NARROW(movsqd, 8, SIGNED_SAT)
NARROW(movsdb, 4, SIGNED_SAT)
NARROW(movsdw, 4, SIGNED_SAT)
NARROW(movswb, 2, SIGNED_SAT)
NARROW(movusqb, 8, UNSIGNED_SAT)
NARROW(movusqw, 8, UNSIGNED_SAT)
NARROW(movusqd, 8, UNSIGNED_SAT)
NARROW(movusdb, 4, UNSIGNED_SAT)
NARROW(movusdw, 4, UNSIGNED_SAT)
NARROW(movuswb, 2, UNSIGNED_SAT)

/* ---- compress and expand ------------------------------------------------------------- */

/*
 * vcompressps/pd, vpcompressd/q: the live elements of reg, packed to the low end. To memory
 * (F_OWNMEM) only those elements are written, contiguously (nothing else is touched or can
 * fault). To a register the elements above them keep the destination's old value (merge)
 * or are zeroed ({z}); that result is final, so the write-back's per-element masking is
 * turned off by making every element live.
 */
static void compress(VecCtx *c)
{
    unsigned e = c->op->esize, k = 0;
    uint8_t packed[64];

    for (unsigned i = 0; i < c->nelem; i++) {
        if (vec_live(c, i)) {
            memcpy(packed + k * e, (const uint8_t *)&c->s1 + i * e, e);
            k++;
        }
    }
    if (c->in.mem) {
        if (k) {
            vec_store(c, c->addr, packed, k * e);
        }
        return;
    }
    /* c->d holds the destination's old value. */
    memcpy(&c->d, packed, k * e);
    if (c->in.evex && c->in.aaa && c->in.z) {
        memset((uint8_t *)&c->d + k * e, 0, c->vlbytes - k * e);
    }
    c->mask = ~0ull;
}

/*
 * vexpandps/pd, vpexpandd/q: live destination elements take consecutive source elements
 * (from the low end of rm; from memory only as many as are live are read, so nothing else
 * can fault); the write-back merges or zeroes the others.
 */
static void expand(VecCtx *c)
{
    unsigned e = c->op->esize, k = 0;
    uint8_t *d = (uint8_t *)&c->d;

    for (unsigned i = 0; i < c->nelem; i++) {
        if (vec_live(c, i)) {
            if (c->in.mem) {
                vec_load(c, c->addr + k * e, d + i * e, e);
            } else {
                memcpy(d + i * e, (const uint8_t *)&c->s1 + k * e, e);
            }
            k++;
        }
    }
}

/* ---- VZEROUPPER, VZEROALL ------------------------------------------------------------ */

/* VZEROUPPER (L=0) clears bits 128-511 of registers 0-15 (0-7 outside 64-bit code);
 * VZEROALL (L=1) clears them whole. Registers 16-31 are untouched. */
static void zero_upper(VecCtx *c)
{
    unsigned n = c->in.code64 ? 16 : 8;
    for (unsigned r = 0; r < n; r++) {
        uint8_t *bytes = (uint8_t *)&c->env->xmm_regs[r];
        memset(bytes + 16, 0, 48);
    }
}

static void zero_all(VecCtx *c)
{
    unsigned n = c->in.code64 ? 16 : 8;
    for (unsigned r = 0; r < n; r++) {
        memset(&c->env->xmm_regs[r], 0, sizeof(VecReg));
    }
}

/* ---- the table ----------------------------------------------------------------------- */

#define AVX X_AVX
#define AVX2 X_AVX2
#define F512 X_AVX512F
#define BW512 X_AVX512BW
#define DQ512 X_AVX512DQ
#define MM (F_MASK | F_MEMMASK)
#define OWN (F_MASK | F_OWNMEM)

/* dst(kind, size) = f(src(kind, size)): the two-operand forms. */
#define E2(nm, en, mp, opc, p, wv, len, esz, feat, fl, D, DS, A, AS, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, fl, NOREG, D, DS, A, AS, O_NONE, 0, O_NONE, 0, f)
/* dst = f(vvvv, rm), with sizes. */
#define E3(nm, en, mp, opc, p, wv, len, esz, feat, fl, D, DS, A, AS, B_, BS, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, fl, NOREG, D, DS, A, AS, B_, BS, O_NONE, 0, f)

/* vpmovzx/sx: VEX.128 (AVX), VEX.256 (AVX2), EVEX (W ignored except for the dq forms). */
#define WIDEN(nm, opc, esz, ssize, ewv, efeat, f)                                             \
    E2(nm, ENC_VEX, 2, opc, P_66, WIG, L128, esz, AVX, 0, O_V, S_VL, O_W, ssize, f),         \
    E2(nm, ENC_VEX, 2, opc, P_66, WIG, L256, esz, AVX2, 0, O_V, S_VL, O_W, ssize, f),        \
    E2(nm, ENC_EVEX, 2, opc, P_66, ewv, LALL, esz, efeat, MM, O_V, S_VL, O_W, ssize, f)

/* vpmov{,s,us}xy: EVEX.F3.0F38.W0, reg narrowed into rm (an xmm/ymm or memory). */
#define NAR(nm, opc, esz, dsize, feat, f) \
    E2(nm, ENC_EVEX, 2, opc, P_F3, 0, LALL, esz, feat, F_MASK, O_W, dsize, O_V, S_VL, f)

/* VEX vmaskmov/vpmaskmov: load (vvvv = mask, rm = memory) and store (rm = memory,
 * vvvv = mask, reg = data). */
#define MASKMOV(nm, opc_ld, opc_st, wv, esz, feat)                                          \
    E3(nm, ENC_VEX, 2, opc_ld, P_66, wv, LVEX, esz, feat, F_OWNMEM,                          \
       O_V, S_VL, O_H, S_VL, O_M, S_VL, maskmov_load),                                       \
    E3(nm, ENC_VEX, 2, opc_st, P_66, wv, LVEX, esz, feat, F_OWNMEM,                          \
       O_M, S_VL, O_H, S_VL, O_V, S_VL, maskmov_store)

const VecOp vec_ops_move[] = {
    /* Whole vectors (VEX). */
    VW("vmovups", ENC_VEX, 1, 0x10, P_NONE, WIG, LVEX, 4, AVX, 0, copy),
    WV("vmovups", ENC_VEX, 1, 0x11, P_NONE, WIG, LVEX, 4, AVX, 0, copy),
    VW("vmovupd", ENC_VEX, 1, 0x10, P_66, WIG, LVEX, 8, AVX, 0, copy),
    WV("vmovupd", ENC_VEX, 1, 0x11, P_66, WIG, LVEX, 8, AVX, 0, copy),
    VW("vmovaps", ENC_VEX, 1, 0x28, P_NONE, WIG, LVEX, 4, AVX, F_ALIGN, copy),
    WV("vmovaps", ENC_VEX, 1, 0x29, P_NONE, WIG, LVEX, 4, AVX, F_ALIGN, copy),
    VW("vmovapd", ENC_VEX, 1, 0x28, P_66, WIG, LVEX, 8, AVX, F_ALIGN, copy),
    WV("vmovapd", ENC_VEX, 1, 0x29, P_66, WIG, LVEX, 8, AVX, F_ALIGN, copy),
    VW("vmovdqu", ENC_VEX, 1, 0x6f, P_F3, WIG, LVEX, 1, AVX, 0, copy),
    WV("vmovdqu", ENC_VEX, 1, 0x7f, P_F3, WIG, LVEX, 1, AVX, 0, copy),
    VW("vmovdqa", ENC_VEX, 1, 0x6f, P_66, WIG, LVEX, 1, AVX, F_ALIGN, copy),
    WV("vmovdqa", ENC_VEX, 1, 0x7f, P_66, WIG, LVEX, 1, AVX, F_ALIGN, copy),

    /* Whole vectors (EVEX): masked loads do not touch masked-off elements. */
    VW("vmovups", ENC_EVEX, 1, 0x10, P_NONE, 0, LALL, 4, F512, MM, copy),
    WV("vmovups", ENC_EVEX, 1, 0x11, P_NONE, 0, LALL, 4, F512, F_MASK, copy),
    VW("vmovupd", ENC_EVEX, 1, 0x10, P_66, 1, LALL, 8, F512, MM, copy),
    WV("vmovupd", ENC_EVEX, 1, 0x11, P_66, 1, LALL, 8, F512, F_MASK, copy),
    VW("vmovaps", ENC_EVEX, 1, 0x28, P_NONE, 0, LALL, 4, F512, MM | F_ALIGN, copy),
    WV("vmovaps", ENC_EVEX, 1, 0x29, P_NONE, 0, LALL, 4, F512, F_MASK | F_ALIGN, copy),
    VW("vmovapd", ENC_EVEX, 1, 0x28, P_66, 1, LALL, 8, F512, MM | F_ALIGN, copy),
    WV("vmovapd", ENC_EVEX, 1, 0x29, P_66, 1, LALL, 8, F512, F_MASK | F_ALIGN, copy),
    VW("vmovdqu32", ENC_EVEX, 1, 0x6f, P_F3, 0, LALL, 4, F512, MM, copy),
    WV("vmovdqu32", ENC_EVEX, 1, 0x7f, P_F3, 0, LALL, 4, F512, F_MASK, copy),
    VW("vmovdqu64", ENC_EVEX, 1, 0x6f, P_F3, 1, LALL, 8, F512, MM, copy),
    WV("vmovdqu64", ENC_EVEX, 1, 0x7f, P_F3, 1, LALL, 8, F512, F_MASK, copy),
    VW("vmovdqu8", ENC_EVEX, 1, 0x6f, P_F2, 0, LALL, 1, BW512, MM, copy),
    WV("vmovdqu8", ENC_EVEX, 1, 0x7f, P_F2, 0, LALL, 1, BW512, F_MASK, copy),
    VW("vmovdqu16", ENC_EVEX, 1, 0x6f, P_F2, 1, LALL, 2, BW512, MM, copy),
    WV("vmovdqu16", ENC_EVEX, 1, 0x7f, P_F2, 1, LALL, 2, BW512, F_MASK, copy),
    VW("vmovdqa32", ENC_EVEX, 1, 0x6f, P_66, 0, LALL, 4, F512, MM | F_ALIGN, copy),
    WV("vmovdqa32", ENC_EVEX, 1, 0x7f, P_66, 0, LALL, 4, F512, F_MASK | F_ALIGN, copy),
    VW("vmovdqa64", ENC_EVEX, 1, 0x6f, P_66, 1, LALL, 8, F512, MM | F_ALIGN, copy),
    WV("vmovdqa64", ENC_EVEX, 1, 0x7f, P_66, 1, LALL, 8, F512, F_MASK | F_ALIGN, copy),

    /* Non-temporal moves (the hint changes nothing here): aligned, memory only, no masking. */
    E2("vmovntps", ENC_VEX, 1, 0x2b, P_NONE, WIG, LVEX, 4, AVX, F_ALIGN, O_M, S_VL, O_V, S_VL, copy),
    E2("vmovntpd", ENC_VEX, 1, 0x2b, P_66, WIG, LVEX, 8, AVX, F_ALIGN, O_M, S_VL, O_V, S_VL, copy),
    E2("vmovntdq", ENC_VEX, 1, 0xe7, P_66, WIG, LVEX, 1, AVX, F_ALIGN, O_M, S_VL, O_V, S_VL, copy),
    E2("vmovntdqa", ENC_VEX, 2, 0x2a, P_66, WIG, L128, 1, AVX, F_ALIGN, O_V, S_VL, O_M, S_VL, copy),
    E2("vmovntdqa", ENC_VEX, 2, 0x2a, P_66, WIG, L256, 1, AVX2, F_ALIGN, O_V, S_VL, O_M, S_VL, copy),
    E2("vmovntps", ENC_EVEX, 1, 0x2b, P_NONE, 0, LALL, 4, F512, F_ALIGN, O_M, S_VL, O_V, S_VL, copy),
    E2("vmovntpd", ENC_EVEX, 1, 0x2b, P_66, 1, LALL, 8, F512, F_ALIGN, O_M, S_VL, O_V, S_VL, copy),
    E2("vmovntdq", ENC_EVEX, 1, 0xe7, P_66, 0, LALL, 4, F512, F_ALIGN, O_M, S_VL, O_V, S_VL, copy),
    E2("vmovntdqa", ENC_EVEX, 2, 0x2a, P_66, 0, LALL, 4, F512, F_ALIGN, O_V, S_VL, O_M, S_VL, copy),
    /* vlddqu: an unaligned load. */
    E2("vlddqu", ENC_VEX, 1, 0xf0, P_F2, WIG, LVEX, 1, AVX, 0, O_V, S_VL, O_M, S_VL, copy),

    /* Scalars: a load zero-extends, a register form merges into vvvv. */
    E2("vmovss", ENC_VEX, 1, 0x10, P_F3, WIG, LIG, 4, AVX, 0, O_V, S_128, O_M, S_32, copy),
    E3("vmovss", ENC_VEX, 1, 0x10, P_F3, WIG, LIG, 4, AVX, 0,
       O_V, S_128, O_H, S_128, O_U, S_128, merge_scalar32),
    E2("vmovss", ENC_VEX, 1, 0x11, P_F3, WIG, LIG, 4, AVX, 0, O_M, S_32, O_V, S_128, copy),
    E3("vmovss", ENC_VEX, 1, 0x11, P_F3, WIG, LIG, 4, AVX, 0,
       O_U, S_128, O_H, S_128, O_V, S_128, merge_scalar32),
    E2("vmovsd", ENC_VEX, 1, 0x10, P_F2, WIG, LIG, 8, AVX, 0, O_V, S_128, O_M, S_64, copy),
    E3("vmovsd", ENC_VEX, 1, 0x10, P_F2, WIG, LIG, 8, AVX, 0,
       O_V, S_128, O_H, S_128, O_U, S_128, merge_scalar64),
    E2("vmovsd", ENC_VEX, 1, 0x11, P_F2, WIG, LIG, 8, AVX, 0, O_M, S_64, O_V, S_128, copy),
    E3("vmovsd", ENC_VEX, 1, 0x11, P_F2, WIG, LIG, 8, AVX, 0,
       O_U, S_128, O_H, S_128, O_V, S_128, merge_scalar64),
    /* EVEX: element 0 masked; a masked load or store of a masked-off element does not
     * access memory (class E10). */
    E2("vmovss", ENC_EVEX, 1, 0x10, P_F3, 0, LIG, 4, F512, OWN | F_SCALAR,
       O_V, S_128, O_M, S_32, load_scalar),
    E3("vmovss", ENC_EVEX, 1, 0x10, P_F3, 0, LIG, 4, F512, F_MASK | F_SCALAR,
       O_V, S_128, O_H, S_128, O_U, S_128, merge_scalar32),
    E2("vmovss", ENC_EVEX, 1, 0x11, P_F3, 0, LIG, 4, F512, F_MASK | F_SCALAR,
       O_M, S_32, O_V, S_128, copy),
    E3("vmovss", ENC_EVEX, 1, 0x11, P_F3, 0, LIG, 4, F512, F_MASK | F_SCALAR,
       O_U, S_128, O_H, S_128, O_V, S_128, merge_scalar32),
    E2("vmovsd", ENC_EVEX, 1, 0x10, P_F2, 1, LIG, 8, F512, OWN | F_SCALAR,
       O_V, S_128, O_M, S_64, load_scalar),
    E3("vmovsd", ENC_EVEX, 1, 0x10, P_F2, 1, LIG, 8, F512, F_MASK | F_SCALAR,
       O_V, S_128, O_H, S_128, O_U, S_128, merge_scalar64),
    E2("vmovsd", ENC_EVEX, 1, 0x11, P_F2, 1, LIG, 8, F512, F_MASK | F_SCALAR,
       O_M, S_64, O_V, S_128, copy),
    E3("vmovsd", ENC_EVEX, 1, 0x11, P_F2, 1, LIG, 8, F512, F_MASK | F_SCALAR,
       O_U, S_128, O_H, S_128, O_V, S_128, merge_scalar64),

    /* Halves: 0F 12/16 are vmovhlps/vmovlhps between registers and vmovlps/vmovhps (66:
     * vmovlpd/vmovhpd) loads; 0F 13/17 the stores. 128-bit only, no masking. */
#define HALVES(en, wps, wpd, feat)                                                          \
    E3("vmovhlps", en, 1, 0x12, P_NONE, wps, L128, 8, feat, 0,                               \
       O_V, S_128, O_H, S_128, O_U, S_128, movhlps),                                         \
    E3("vmovlps", en, 1, 0x12, P_NONE, wps, L128, 8, feat, 0,                                \
       O_V, S_128, O_H, S_128, O_M, S_64, merge_scalar64),                                   \
    E3("vmovlpd", en, 1, 0x12, P_66, wpd, L128, 8, feat, 0,                                  \
       O_V, S_128, O_H, S_128, O_M, S_64, merge_scalar64),                                   \
    E2("vmovlps", en, 1, 0x13, P_NONE, wps, L128, 8, feat, 0, O_M, S_64, O_V, S_128, copy),  \
    E2("vmovlpd", en, 1, 0x13, P_66, wpd, L128, 8, feat, 0, O_M, S_64, O_V, S_128, copy),    \
    E3("vmovlhps", en, 1, 0x16, P_NONE, wps, L128, 8, feat, 0,                               \
       O_V, S_128, O_H, S_128, O_U, S_128, movlhps),                                         \
    E3("vmovhps", en, 1, 0x16, P_NONE, wps, L128, 8, feat, 0,                                \
       O_V, S_128, O_H, S_128, O_M, S_64, movlhps),                                          \
    E3("vmovhpd", en, 1, 0x16, P_66, wpd, L128, 8, feat, 0,                                  \
       O_V, S_128, O_H, S_128, O_M, S_64, movlhps),                                          \
    E2("vmovhps", en, 1, 0x17, P_NONE, wps, L128, 8, feat, 0, O_M, S_64, O_V, S_128, high64), \
    E2("vmovhpd", en, 1, 0x17, P_66, wpd, L128, 8, feat, 0, O_M, S_64, O_V, S_128, high64)
    HALVES(ENC_VEX, WIG, WIG, AVX),
    HALVES(ENC_EVEX, 0, 1, F512),
#undef HALVES

    /* Duplicates: vmovddup's 128-bit form reads an m64. */
    VW("vmovsldup", ENC_VEX, 1, 0x12, P_F3, WIG, LVEX, 4, AVX, 0, movsldup),
    VW("vmovshdup", ENC_VEX, 1, 0x16, P_F3, WIG, LVEX, 4, AVX, 0, movshdup),
    E2("vmovddup", ENC_VEX, 1, 0x12, P_F2, WIG, L128, 8, AVX, 0, O_V, S_VL, O_W, S_64, movddup),
    E2("vmovddup", ENC_VEX, 1, 0x12, P_F2, WIG, L256, 8, AVX, 0, O_V, S_VL, O_W, S_VL, movddup),
    VW("vmovsldup", ENC_EVEX, 1, 0x12, P_F3, 0, LALL, 4, F512, F_MASK, movsldup),
    VW("vmovshdup", ENC_EVEX, 1, 0x16, P_F3, 0, LALL, 4, F512, F_MASK, movshdup),
    E2("vmovddup", ENC_EVEX, 1, 0x12, P_F2, 1, L128, 8, F512, F_MASK,
       O_V, S_VL, O_W, S_64, movddup),
    E2("vmovddup", ENC_EVEX, 1, 0x12, P_F2, 1, L256 | L512, 8, F512, F_MASK,
       O_V, S_VL, O_W, S_VL, movddup),

    /* General registers: W selects 64 bits in 64-bit code only (ignored elsewhere). */
#define GPRMOVES(en, feat)                                                                  \
    E2("vmovd", en, 1, 0x6e, P_66, 0, L128, 4, feat, F_W64, O_V, S_128, O_E, S_32, copy),    \
    E2("vmovq", en, 1, 0x6e, P_66, 1, L128, 8, feat, F_W64, O_V, S_128, O_E, S_64, copy),    \
    E2("vmovd", en, 1, 0x7e, P_66, 0, L128, 4, feat, F_W64, O_E, S_32, O_V, S_128, to_gpr),  \
    E2("vmovq", en, 1, 0x7e, P_66, 1, L128, 8, feat, F_W64, O_E, S_64, O_V, S_128, to_gpr)
    GPRMOVES(ENC_VEX, AVX),
    GPRMOVES(ENC_EVEX, F512),
#undef GPRMOVES
    E2("vmovq", ENC_VEX, 1, 0x7e, P_F3, WIG, L128, 8, AVX, 0, O_V, S_128, O_W, S_64, low64),
    E2("vmovq", ENC_VEX, 1, 0xd6, P_66, WIG, L128, 8, AVX, 0, O_W, S_64, O_V, S_128, low64),
    E2("vmovq", ENC_EVEX, 1, 0x7e, P_F3, 1, L128, 8, F512, 0, O_V, S_128, O_W, S_64, low64),
    E2("vmovq", ENC_EVEX, 1, 0xd6, P_66, 1, L128, 8, F512, 0, O_W, S_64, O_V, S_128, low64),
    E2("vmovmskps", ENC_VEX, 1, 0x50, P_NONE, WIG, LVEX, 4, AVX, 0, O_G, S_32, O_U, S_VL, movmsk),
    E2("vmovmskpd", ENC_VEX, 1, 0x50, P_66, WIG, LVEX, 8, AVX, 0, O_G, S_32, O_U, S_VL, movmsk),

    /* Elements to and from general registers or memory (VEX.W1/EVEX.W1 of the b and w
     * forms is ignored; of the d form it is the q form in 64-bit code). */
#define ELEMS(en, feat_bw, feat_dq, wb, wins)                                                \
    E2("vpextrb", en, 3, 0x14, P_66, wb, L128, 1, feat_bw, F_IMM, O_E, S_8, O_V, S_128,       \
       extract_elem),                                                                        \
    E2("vpextrw", en, 3, 0x15, P_66, wb, L128, 2, feat_bw, F_IMM, O_E, S_16, O_V, S_128,      \
       extract_elem),                                                                        \
    E2("vpextrw", en, 1, 0xc5, P_66, wb, L128, 2, feat_bw, F_IMM, O_G, S_32, O_U, S_128,      \
       extract_elem),                                                                        \
    E2("vpextrd", en, 3, 0x16, P_66, 0, L128, 4, feat_dq, F_IMM | F_W64, O_E, S_32, O_V,      \
       S_128, extract_elem),                                                                 \
    E2("vpextrq", en, 3, 0x16, P_66, 1, L128, 8, feat_dq, F_IMM | F_W64, O_E, S_64, O_V,      \
       S_128, extract_elem),                                                                 \
    E2("vextractps", en, 3, 0x17, P_66, WIG, L128, 4, feat_dq == AVX ? AVX : F512, F_IMM,     \
       O_E, S_32, O_V, S_128, extract_elem),                                                 \
    E3("vpinsrb", en, 3, 0x20, P_66, wb, L128, 1, feat_bw, F_IMM, O_V, S_128, O_H, S_128,     \
       O_E, S_8, insert_elem),                                                               \
    E3("vpinsrw", en, 1, 0xc4, P_66, wb, L128, 2, feat_bw, F_IMM, O_V, S_128, O_H, S_128,     \
       O_E, S_16, insert_elem),                                                              \
    E3("vpinsrd", en, 3, 0x22, P_66, 0, L128, 4, feat_dq, F_IMM | F_W64, O_V, S_128, O_H,     \
       S_128, O_E, S_32, insert_elem),                                                       \
    E3("vpinsrq", en, 3, 0x22, P_66, 1, L128, 8, feat_dq, F_IMM | F_W64, O_V, S_128, O_H,     \
       S_128, O_E, S_64, insert_elem),                                                       \
    E3("vinsertps", en, 3, 0x21, P_66, wins, L128, 4, feat_dq == AVX ? AVX : F512, F_IMM,     \
       O_V, S_128, O_H, S_128, O_W, S_32, insertps)
    ELEMS(ENC_VEX, AVX, AVX, WIG, WIG),
    ELEMS(ENC_EVEX, BW512, DQ512, WIG, 0),
#undef ELEMS

    /* Broadcasts (VEX): from memory (AVX) or a register (AVX2). */
    E2("vbroadcastss", ENC_VEX, 2, 0x18, P_66, 0, LVEX, 4, AVX, 0, O_V, S_VL, O_M, S_32, broadcast),
    E2("vbroadcastss", ENC_VEX, 2, 0x18, P_66, 0, LVEX, 4, AVX2, 0, O_V, S_VL, O_U, S_32, broadcast),
    E2("vbroadcastsd", ENC_VEX, 2, 0x19, P_66, 0, L256, 8, AVX, 0, O_V, S_VL, O_M, S_64, broadcast),
    E2("vbroadcastsd", ENC_VEX, 2, 0x19, P_66, 0, L256, 8, AVX2, 0, O_V, S_VL, O_U, S_64, broadcast),
    E2("vbroadcastf128", ENC_VEX, 2, 0x1a, P_66, 0, L256, 4, AVX, 0, O_V, S_VL, O_M, S_128,
       broadcast),
    E2("vpbroadcastb", ENC_VEX, 2, 0x78, P_66, 0, LVEX, 1, AVX2, 0, O_V, S_VL, O_W, S_8, broadcast),
    E2("vpbroadcastw", ENC_VEX, 2, 0x79, P_66, 0, LVEX, 2, AVX2, 0, O_V, S_VL, O_W, S_16, broadcast),
    E2("vpbroadcastd", ENC_VEX, 2, 0x58, P_66, 0, LVEX, 4, AVX2, 0, O_V, S_VL, O_W, S_32, broadcast),
    E2("vpbroadcastq", ENC_VEX, 2, 0x59, P_66, 0, LVEX, 8, AVX2, 0, O_V, S_VL, O_W, S_64, broadcast),
    E2("vbroadcasti128", ENC_VEX, 2, 0x5a, P_66, 0, L256, 4, AVX2, 0, O_V, S_VL, O_M, S_128,
       broadcast),

    /* Broadcasts (EVEX): masked per element; memory elements that no live element takes
     * are not read. */
#define BC(nm, opc, wv, len, esz, feat, size) \
    E2(nm, ENC_EVEX, 2, opc, P_66, wv, len, esz, feat, OWN, O_V, S_VL, O_W, size, broadcast)
/* The 128- and 256-bit blocks come from memory only (a register form is #UD). */
#define BCM(nm, opc, wv, len, esz, feat, size) \
    E2(nm, ENC_EVEX, 2, opc, P_66, wv, len, esz, feat, OWN, O_V, S_VL, O_M, size, broadcast)
    BC("vbroadcastss", 0x18, 0, LALL, 4, F512, S_32),
    BC("vbroadcastsd", 0x19, 1, L256 | L512, 8, F512, S_64),
    BC("vbroadcastf32x2", 0x19, 0, L256 | L512, 4, DQ512, S_64),
    BCM("vbroadcastf32x4", 0x1a, 0, L256 | L512, 4, F512, S_128),
    BCM("vbroadcastf64x2", 0x1a, 1, L256 | L512, 8, DQ512, S_128),
    BCM("vbroadcastf32x8", 0x1b, 0, L512, 4, DQ512, S_256),
    BCM("vbroadcastf64x4", 0x1b, 1, L512, 8, F512, S_256),
    BC("vpbroadcastb", 0x78, 0, LALL, 1, BW512, S_8),
    BC("vpbroadcastw", 0x79, 0, LALL, 2, BW512, S_16),
    BC("vpbroadcastd", 0x58, 0, LALL, 4, F512, S_32),
    BC("vpbroadcastq", 0x59, 1, LALL, 8, F512, S_64),
    BC("vbroadcasti32x2", 0x59, 0, LALL, 4, DQ512, S_64),
    BCM("vbroadcasti32x4", 0x5a, 0, L256 | L512, 4, F512, S_128),
    BCM("vbroadcasti64x2", 0x5a, 1, L256 | L512, 8, DQ512, S_128),
    BCM("vbroadcasti32x8", 0x5b, 0, L512, 4, DQ512, S_256),
    BCM("vbroadcasti64x4", 0x5b, 1, L512, 8, F512, S_256),
#undef BC
    /* From a general register (EVEX only; W1 of 7C is vpbroadcastq in 64-bit code). */
    E2("vpbroadcastb", ENC_EVEX, 2, 0x7a, P_66, 0, LALL, 1, BW512, F_MASK, O_V, S_VL, O_R, S_32,
       broadcast_gpr),
    E2("vpbroadcastw", ENC_EVEX, 2, 0x7b, P_66, 0, LALL, 2, BW512, F_MASK, O_V, S_VL, O_R, S_32,
       broadcast_gpr),
    E2("vpbroadcastd", ENC_EVEX, 2, 0x7c, P_66, 0, LALL, 4, F512, F_MASK | F_W64, O_V, S_VL,
       O_R, S_32, broadcast_gpr),
    E2("vpbroadcastq", ENC_EVEX, 2, 0x7c, P_66, 1, LALL, 8, F512, F_MASK | F_W64, O_V, S_VL,
       O_R, S_64, broadcast_gpr),

    /* Lanes. VEX: 256-bit only. EVEX: the 128-bit lane forms at 256 and 512 bits, the
     * 256-bit lane forms at 512; masked (no fault suppression: class E6NF). */
#define INS(nm, en, opc, wv, len, esz, feat, lane)                                          \
    E(nm, en, 3, opc, P_66, wv, len, esz, feat, (en) == ENC_EVEX ? F_IMM | F_MASK : F_IMM, \
      NOREG, O_V, S_VL, O_H, S_VL, O_W, lane, O_NONE, 0, insert_lane)
#define EXT_(nm, en, opc, wv, len, esz, feat, lane)                                         \
    E(nm, en, 3, opc, P_66, wv, len, esz, feat,                                             \
      (en) == ENC_EVEX ? F_IMM | F_MASK | F_OWNMEM : F_IMM,                                 \
      NOREG, O_W, lane, O_V, S_VL, O_NONE, 0, O_NONE, 0, extract_lane)
    INS("vinsertf128", ENC_VEX, 0x18, 0, L256, 4, AVX, S_128),
    EXT_("vextractf128", ENC_VEX, 0x19, 0, L256, 4, AVX, S_128),
    INS("vinserti128", ENC_VEX, 0x38, 0, L256, 4, AVX2, S_128),
    EXT_("vextracti128", ENC_VEX, 0x39, 0, L256, 4, AVX2, S_128),
    INS("vinsertf32x4", ENC_EVEX, 0x18, 0, L256 | L512, 4, F512, S_128),
    INS("vinsertf64x2", ENC_EVEX, 0x18, 1, L256 | L512, 8, DQ512, S_128),
    INS("vinsertf32x8", ENC_EVEX, 0x1a, 0, L512, 4, DQ512, S_256),
    INS("vinsertf64x4", ENC_EVEX, 0x1a, 1, L512, 8, F512, S_256),
    INS("vinserti32x4", ENC_EVEX, 0x38, 0, L256 | L512, 4, F512, S_128),
    INS("vinserti64x2", ENC_EVEX, 0x38, 1, L256 | L512, 8, DQ512, S_128),
    INS("vinserti32x8", ENC_EVEX, 0x3a, 0, L512, 4, DQ512, S_256),
    INS("vinserti64x4", ENC_EVEX, 0x3a, 1, L512, 8, F512, S_256),
    EXT_("vextractf32x4", ENC_EVEX, 0x19, 0, L256 | L512, 4, F512, S_128),
    EXT_("vextractf64x2", ENC_EVEX, 0x19, 1, L256 | L512, 8, DQ512, S_128),
    EXT_("vextractf32x8", ENC_EVEX, 0x1b, 0, L512, 4, DQ512, S_256),
    EXT_("vextractf64x4", ENC_EVEX, 0x1b, 1, L512, 8, F512, S_256),
    EXT_("vextracti32x4", ENC_EVEX, 0x39, 0, L256 | L512, 4, F512, S_128),
    EXT_("vextracti64x2", ENC_EVEX, 0x39, 1, L256 | L512, 8, DQ512, S_128),
    EXT_("vextracti32x8", ENC_EVEX, 0x3b, 0, L512, 4, DQ512, S_256),
    EXT_("vextracti64x4", ENC_EVEX, 0x3b, 1, L512, 8, F512, S_256),
#undef INS
#undef EXT_

    /* Masked moves (VEX): the mask is the top bit of each vvvv element. */
    MASKMOV("vmaskmovps", 0x2c, 0x2e, 0, 4, AVX),
    MASKMOV("vmaskmovpd", 0x2d, 0x2f, 0, 8, AVX),
    MASKMOV("vpmaskmovd", 0x8c, 0x8e, 0, 4, AVX2),
    MASKMOV("vpmaskmovq", 0x8c, 0x8e, 1, 8, AVX2),
    /* vmaskmovdqu xmm1, xmm2: bytes of xmm1 where xmm2's byte has its top bit set, to
     * DS:rDI (F_RDI: the translator makes c->addr). */
    E("vmaskmovdqu", ENC_VEX, 1, 0xf7, P_66, WIG, L128, 1, AVX, F_RDI, NOREG,
      O_NONE, 0, O_U, S_128, O_V, S_128, O_NONE, 0, maskmovdqu),

    /* Widening. */
    WIDEN("vpmovzxbw", 0x30, 2, S_HALF, WIG, BW512, zxbw),
    WIDEN("vpmovzxbd", 0x31, 4, S_QUARTER, WIG, F512, zxbd),
    WIDEN("vpmovzxbq", 0x32, 8, S_EIGHTH, WIG, F512, zxbq),
    WIDEN("vpmovzxwd", 0x33, 4, S_HALF, WIG, F512, zxwd),
    WIDEN("vpmovzxwq", 0x34, 8, S_QUARTER, WIG, F512, zxwq),
    WIDEN("vpmovzxdq", 0x35, 8, S_HALF, 0, F512, zxdq),
    WIDEN("vpmovsxbw", 0x20, 2, S_HALF, WIG, BW512, sxbw),
    WIDEN("vpmovsxbd", 0x21, 4, S_QUARTER, WIG, F512, sxbd),
    WIDEN("vpmovsxbq", 0x22, 8, S_EIGHTH, WIG, F512, sxbq),
    WIDEN("vpmovsxwd", 0x23, 4, S_HALF, WIG, F512, sxwd),
    WIDEN("vpmovsxwq", 0x24, 8, S_QUARTER, WIG, F512, sxwq),
    WIDEN("vpmovsxdq", 0x25, 8, S_HALF, 0, F512, sxdq),

    /* Narrowing (EVEX.F3.0F38.W0): truncate, signed and unsigned saturation. */
    NAR("vpmovqb", 0x32, 1, S_EIGHTH, F512, movqb),
    NAR("vpmovsqb", 0x22, 1, S_EIGHTH, F512, movsqb),
    NAR("vpmovusqb", 0x12, 1, S_EIGHTH, F512, movusqb),
    NAR("vpmovqw", 0x34, 2, S_QUARTER, F512, movqw),
    NAR("vpmovsqw", 0x24, 2, S_QUARTER, F512, movsqw),
    NAR("vpmovusqw", 0x14, 2, S_QUARTER, F512, movusqw),
    NAR("vpmovqd", 0x35, 4, S_HALF, F512, movqd),
    NAR("vpmovsqd", 0x25, 4, S_HALF, F512, movsqd),
    NAR("vpmovusqd", 0x15, 4, S_HALF, F512, movusqd),
    NAR("vpmovdb", 0x31, 1, S_QUARTER, F512, movdb),
    NAR("vpmovsdb", 0x21, 1, S_QUARTER, F512, movsdb),
    NAR("vpmovusdb", 0x11, 1, S_QUARTER, F512, movusdb),
    NAR("vpmovdw", 0x33, 2, S_HALF, F512, movdw),
    NAR("vpmovsdw", 0x23, 2, S_HALF, F512, movsdw),
    NAR("vpmovusdw", 0x13, 2, S_HALF, F512, movusdw),
    NAR("vpmovwb", 0x30, 1, S_HALF, BW512, movwb),
    NAR("vpmovswb", 0x20, 1, S_HALF, BW512, movswb),
    NAR("vpmovuswb", 0x10, 1, S_HALF, BW512, movuswb),

    /* Compress and expand: memory forms access only the live elements (disp8*N: N is the
     * element size, tuple T1S). */
    E2("vcompressps", ENC_EVEX, 2, 0x8a, P_66, 0, LALL, 4, F512, OWN, O_W, S_ELEM, O_V, S_VL,
       compress),
    E2("vcompresspd", ENC_EVEX, 2, 0x8a, P_66, 1, LALL, 8, F512, OWN, O_W, S_ELEM, O_V, S_VL,
       compress),
    E2("vpcompressd", ENC_EVEX, 2, 0x8b, P_66, 0, LALL, 4, F512, OWN, O_W, S_ELEM, O_V, S_VL,
       compress),
    E2("vpcompressq", ENC_EVEX, 2, 0x8b, P_66, 1, LALL, 8, F512, OWN, O_W, S_ELEM, O_V, S_VL,
       compress),
    E2("vexpandps", ENC_EVEX, 2, 0x88, P_66, 0, LALL, 4, F512, OWN, O_V, S_VL, O_W, S_ELEM,
       expand),
    E2("vexpandpd", ENC_EVEX, 2, 0x88, P_66, 1, LALL, 8, F512, OWN, O_V, S_VL, O_W, S_ELEM,
       expand),
    E2("vpexpandd", ENC_EVEX, 2, 0x89, P_66, 0, LALL, 4, F512, OWN, O_V, S_VL, O_W, S_ELEM,
       expand),
    E2("vpexpandq", ENC_EVEX, 2, 0x89, P_66, 1, LALL, 8, F512, OWN, O_V, S_VL, O_W, S_ELEM,
       expand),

    /* VZEROUPPER, VZEROALL. */
    E("vzeroupper", ENC_VEX, 1, 0x77, P_NONE, WIG, L128, 0, AVX, 0, NOREG,
      O_NONE, 0, O_NONE, 0, O_NONE, 0, O_NONE, 0, zero_upper),
    E("vzeroall", ENC_VEX, 1, 0x77, P_NONE, WIG, L256, 0, AVX, 0, NOREG,
      O_NONE, 0, O_NONE, 0, O_NONE, 0, O_NONE, 0, zero_all),
    { .name = NULL },
};
