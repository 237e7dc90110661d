/*
 * Conversions between integer, single, double and half precision (AVX, F16C, AVX-512 F/DQ).
 *
 * Element counts: an entry's esize is its DESTINATION element size and its dsize the
 * destination's size, so that the mask has one bit per converted element (vec_nelem):
 *   - widening (VCVTDQ2PD, VCVTPS2PD, VCVTPH2PS, VCVTPS2QQ, ...): a source of half the
 *     vector length (S_HALF); a broadcast repeats one source-sized element;
 *   - narrowing (VCVTPD2PS, VCVTPD2DQ, VCVTQQ2PS, VCVTPS2PH, ...): a destination of half
 *     the vector length, the rest of the register zeroed (VEX.256 VCVTPD2PS writes an xmm).
 * Element i of the destination comes from element i of the source in every case.
 *
 * Floating point to integer (SDM: "integer indefinite"): a NaN, an infinity or a value out of
 * range after rounding is invalid and gives 80000000h / 8000000000000000h for signed results,
 * FFFFFFFFh / FFFFFFFFFFFFFFFFh for unsigned ones; a negative value that rounds to 0 converts
 * to 0 (inexact) for the unsigned forms. These conversions report invalid and precision only
 * (no DE; DAZ turns a denormal into 0, exactly).
 * Float to float: DE for a denormal source (unless DAZ) in VCVTPS2PD, VCVTPD2PS, VCVTSS2SD,
 * VCVTSD2SS and VCVTPS2PH; an SNaN is invalid and quieted, NaN payloads are kept.
 * VCVTPH2PS ignores DAZ and reports no DE; VCVTPS2PH rounds by imm8 (bits 1:0, or MXCSR.RC
 * when bit 2 is set) and ignores FZ (tiny results are half-precision denormals).
 * The narrowing ones (VCVTPD2PS, VCVTSD2SS, VCVTPS2PH) overflow and underflow: with OE or UE
 * unmasked an element reports PE only when its result rounded with an unbounded exponent is
 * inexact, and UE for any tiny result, exact or not (SDM Vol. 1 4.9.1.4, 4.9.1.5).
 */
#include "vector/ops.h"
#include "qemu/host-utils.h"

typedef uint64_t Conv(VecCtx *c, uint64_t a);

/* ---- elements ----------------------------------------------------------------------- */

/* An element converted with its own flags, so that an invalid one can be replaced. */
static float_status elem_begin(VecCtx *c)
{
    float_status s = c->fp;
    set_float_exception_flags(0, &s);
    return s;
}

static uint64_t elem_end(VecCtx *c, float_status *s, uint64_t r, uint64_t indefinite)
{
    int f = get_float_exception_flags(s);
    float_raise(f, &c->fp);
    return (f & float_flag_invalid) ? indefinite : r;
}

#define TO_INT(name, sf, FT, RT, indefinite)                              \
    static uint64_t name(VecCtx *c, uint64_t a)                           \
    {                                                                     \
        float_status s = elem_begin(c);                                   \
        RT r = sf((FT)a, &s);                                             \
        return elem_end(c, &s, (uint64_t)r, indefinite);                  \
    }

#define I32_INDEF 0x80000000ull
#define I64_INDEF 0x8000000000000000ull
#define U32_INDEF 0xffffffffull
#define U64_INDEF 0xffffffffffffffffull

TO_INT(f32_i32, float32_to_int32, float32, uint32_t, I32_INDEF)
TO_INT(f32_i32t, float32_to_int32_round_to_zero, float32, uint32_t, I32_INDEF)
TO_INT(f32_i64, float32_to_int64, float32, uint64_t, I64_INDEF)
TO_INT(f32_i64t, float32_to_int64_round_to_zero, float32, uint64_t, I64_INDEF)
TO_INT(f32_u32, float32_to_uint32, float32, uint32_t, U32_INDEF)
TO_INT(f32_u32t, float32_to_uint32_round_to_zero, float32, uint32_t, U32_INDEF)
TO_INT(f32_u64, float32_to_uint64, float32, uint64_t, U64_INDEF)
TO_INT(f32_u64t, float32_to_uint64_round_to_zero, float32, uint64_t, U64_INDEF)
TO_INT(f64_i32, float64_to_int32, float64, uint32_t, I32_INDEF)
TO_INT(f64_i32t, float64_to_int32_round_to_zero, float64, uint32_t, I32_INDEF)
TO_INT(f64_i64, float64_to_int64, float64, uint64_t, I64_INDEF)
TO_INT(f64_i64t, float64_to_int64_round_to_zero, float64, uint64_t, I64_INDEF)
TO_INT(f64_u32, float64_to_uint32, float64, uint32_t, U32_INDEF)
TO_INT(f64_u32t, float64_to_uint32_round_to_zero, float64, uint32_t, U32_INDEF)
TO_INT(f64_u64, float64_to_uint64, float64, uint64_t, U64_INDEF)
TO_INT(f64_u64t, float64_to_uint64_round_to_zero, float64, uint64_t, U64_INDEF)

#define FROM_INT(name, sf, IT)                                            \
    static uint64_t name(VecCtx *c, uint64_t a)                           \
    {                                                                     \
        return sf((IT)a, &c->fp);                                         \
    }

FROM_INT(i32_f32, int32_to_float32, int32_t)
FROM_INT(i64_f32, int64_to_float32, int64_t)
FROM_INT(u32_f32, uint32_to_float32, uint32_t)
FROM_INT(u64_f32, uint64_to_float32, uint64_t)
FROM_INT(i32_f64, int32_to_float64, int32_t)
FROM_INT(i64_f64, int64_to_float64, int64_t)
FROM_INT(u32_f64, uint32_to_float64, uint32_t)
FROM_INT(u64_f64, uint64_to_float64, uint64_t)

static uint64_t f32_f64(VecCtx *c, uint64_t a)
{
    vec_f32_check_denormal(c, a);
    return float32_to_float64(a, &c->fp);
}

/*
 * Whether a narrowing conversion's result rounded with an unbounded exponent is inexact (the
 * PE of an unmasked overflow or underflow): the source's significand has more significant
 * bits than the destination's precision `bits`. `sig` is the significand with its implicit
 * bit (0 for a zero: exact).
 */
static bool narrow_inexact(uint64_t sig, unsigned bits)
{
    return sig && (sig >> ctz64(sig)) >> bits;
}

/* Double to single (VCVTPD2PS, VCVTSD2SS): overflow and underflow as arithmetic has them
 * (vec_f32_element: FZ, unmasked UE for any tiny result, PE of the unbounded result). */
static uint64_t f64_f32(VecCtx *c, uint64_t a)
{
    float_status s;
    float32 r;
    uint64_t sig;
    bool inexact = false;

    vec_f64_check_denormal(c, a);
    s = vec_fp_element(c);
    r = float64_to_float32(a, &s);
    if ((get_float_exception_flags(&s) & (float_flag_overflow | float_flag_underflow))
        || float32_is_denormal(r)) {
        sig = extract64(a, 0, 52);
        if (extract64(a, 52, 11)) {
            sig |= 1ull << 52;
        } else if (get_flush_inputs_to_zero(&s)) {
            sig = 0;                                    /* DAZ: a zero */
        }
        inexact = narrow_inexact(sig, 24);
    }
    return vec_f32_element(c, &s, r, inexact);
}

/* Half to single: exact; DAZ ignored, no DE; an SNaN is invalid. */
static uint64_t f16_f32(VecCtx *c, uint64_t a)
{
    float_status s = c->fp;
    float32 r;

    set_flush_inputs_to_zero(false, &s);
    r = float16_to_float32(a, true, &s);
    set_float_exception_flags(get_float_exception_flags(&s), &c->fp);
    return r;
}

/* Single to half: rounding from imm8, FZ ignored, DAZ and DE as usual. */
static const int imm_rounding[4] = {
    float_round_nearest_even, float_round_down, float_round_up, float_round_to_zero,
};

/*
 * Overflow and underflow as arithmetic has them, with FZ ignored (vec_fp_element_flags:
 * unmasked UE for any tiny result, PE of the result rounded with an unbounded exponent), and
 * the SDM's VCVTPS2PH rule for a denormal source (unless DAZ): with DE masked and UE or PE
 * unmasked, #XM with DE, UE and PE, so its unbounded result counts as inexact.
 */
static uint64_t f32_f16(VecCtx *c, uint64_t a)
{
    float_status s = vec_fp_element(c);
    float16 r;
    uint64_t sig;
    bool tiny, inexact = false;
    int f;

    if (!(c->in.imm & 4)) {
        set_float_rounding_mode(imm_rounding[c->in.imm & 3], &s);
    }
    vec_f32_check_denormal(c, a);
    r = float32_to_float16(a, true, &s);
    f = get_float_exception_flags(&s);
    tiny = (f & float_flag_underflow) || (!(r & 0x7c00) && (r & 0x3ff));
    if (tiny || (f & float_flag_overflow)) {
        sig = extract64(a, 0, 23);
        if (extract64(a, 23, 8)) {
            inexact = narrow_inexact(sig | 1u << 23, 11);
        } else {
            inexact = sig && !get_flush_inputs_to_zero(&s);
        }
    }
    vec_fp_element_flags(c, &s, tiny, inexact);
    return r;
}

/* ---- shapes ------------------------------------------------------------------------- */

static uint64_t get(const VecReg *r, unsigned size, unsigned i)
{
    return size == 2 ? U16(r, i) : size == 4 ? U32(r, i) : U64(r, i);
}

static void put(VecReg *r, unsigned size, unsigned i, uint64_t v)
{
    if (size == 2) {
        U16(r, i) = v;
    } else if (size == 4) {
        U32(r, i) = v;
    } else {
        U64(r, i) = v;
    }
}

/* Packed: destination element i from source element i; bytes past the destination are 0. */
static void packed(VecCtx *c, Conv *f, unsigned dsz, unsigned ssz)
{
    VecReg r;

    memset(&r, 0, sizeof(r));
    FOR_LIVE(c, i) {
        put(&r, dsz, i, f(c, get(&c->s1, ssz, i)));
    }
    c->d = r;
}

/* Scalar into a vector: element 0 from rm, the rest of the low 128 bits from vvvv. */
static void scalar(VecCtx *c, Conv *f, unsigned dsz, unsigned ssz)
{
    c->d = c->s1;
    if (vec_live(c, 0)) {
        put(&c->d, dsz, 0, f(c, get(&c->s2, ssz, 0)));
    }
}

/* A general register from the source's element 0 (32 or 64 bits by the operand size). */
static unsigned gpr_size(VecCtx *c)
{
    return vec_size_bytes(c->op, &c->in, S_OSZ);
}

static void to_gpr(VecCtx *c, Conv *f32, Conv *f64, unsigned ssz)
{
    c->g = (gpr_size(c) == 8 ? f64 : f32)(c, get(&c->s1, ssz, 0));
}

/* A vector's element 0 from a general register or memory (32 or 64 bits). */
static void from_gpr(VecCtx *c, Conv *f32, Conv *f64, unsigned dsz)
{
    c->d = c->s1;
    put(&c->d, dsz, 0, (gpr_size(c) == 8 ? f64 : f32)(c, U64(&c->s2, 0)));
}

#define PACKED(name, f, dsz, ssz) \
    static void name(VecCtx *c) { packed(c, f, dsz, ssz); }
#define SCALAR(name, f, dsz, ssz) \
    static void name(VecCtx *c) { scalar(c, f, dsz, ssz); }
#define TO_GPR(name, f32, f64, ssz) \
    static void name(VecCtx *c) { to_gpr(c, f32, f64, ssz); }
#define FROM_GPR(name, f32, f64, dsz) \
    static void name(VecCtx *c) { from_gpr(c, f32, f64, dsz); }

PACKED(cvtdq2ps, i32_f32, 4, 4)
PACKED(cvtudq2ps, u32_f32, 4, 4)
PACKED(cvtqq2ps, i64_f32, 4, 8)
PACKED(cvtuqq2ps, u64_f32, 4, 8)
PACKED(cvtdq2pd, i32_f64, 8, 4)
PACKED(cvtudq2pd, u32_f64, 8, 4)
PACKED(cvtqq2pd, i64_f64, 8, 8)
PACKED(cvtuqq2pd, u64_f64, 8, 8)
PACKED(cvtps2dq, f32_i32, 4, 4)
PACKED(cvttps2dq, f32_i32t, 4, 4)
PACKED(cvtps2udq, f32_u32, 4, 4)
PACKED(cvttps2udq, f32_u32t, 4, 4)
PACKED(cvtps2qq, f32_i64, 8, 4)
PACKED(cvttps2qq, f32_i64t, 8, 4)
PACKED(cvtps2uqq, f32_u64, 8, 4)
PACKED(cvttps2uqq, f32_u64t, 8, 4)
PACKED(cvtpd2dq, f64_i32, 4, 8)
PACKED(cvttpd2dq, f64_i32t, 4, 8)
PACKED(cvtpd2udq, f64_u32, 4, 8)
PACKED(cvttpd2udq, f64_u32t, 4, 8)
PACKED(cvtpd2qq, f64_i64, 8, 8)
PACKED(cvttpd2qq, f64_i64t, 8, 8)
PACKED(cvtpd2uqq, f64_u64, 8, 8)
PACKED(cvttpd2uqq, f64_u64t, 8, 8)
PACKED(cvtps2pd, f32_f64, 8, 4)
PACKED(cvtpd2ps, f64_f32, 4, 8)
PACKED(cvtph2ps, f16_f32, 4, 2)
PACKED(cvtps2ph, f32_f16, 2, 4)

SCALAR(cvtss2sd, f32_f64, 8, 4)
SCALAR(cvtsd2ss, f64_f32, 4, 8)

TO_GPR(cvtss2si, f32_i32, f32_i64, 4)
TO_GPR(cvttss2si, f32_i32t, f32_i64t, 4)
TO_GPR(cvtsd2si, f64_i32, f64_i64, 8)
TO_GPR(cvttsd2si, f64_i32t, f64_i64t, 8)
TO_GPR(cvtss2usi, f32_u32, f32_u64, 4)
TO_GPR(cvttss2usi, f32_u32t, f32_u64t, 4)
TO_GPR(cvtsd2usi, f64_u32, f64_u64, 8)
TO_GPR(cvttsd2usi, f64_u32t, f64_u64t, 8)

FROM_GPR(cvtsi2ss, i32_f32, i64_f32, 4)
FROM_GPR(cvtsi2sd, i32_f64, i64_f64, 8)
FROM_GPR(cvtusi2ss, u32_f32, u64_f32, 4)
FROM_GPR(cvtusi2sd, u32_f64, u64_f64, 8)

/* ---- entries ------------------------------------------------------------------------ */

#define AVX X_AVX
#define F512 X_AVX512F
#define DQ512 X_AVX512DQ
/* EVEX packed: masking (masked-off memory elements are not read: SDM memory fault
 * suppression), broadcast, and embedded rounding (ER) or SAE on registers. */
#define PER (F_FP | F_MASK | F_MEMMASK | F_BCST | F_ER)
#define PSAE (F_FP | F_MASK | F_MEMMASK | F_BCST | F_SAE)

/* dst (ModRM.reg) = f(rm), sizes relative to the vector length. */
#define CV(nm, en, mp, opc, p, wv, len, esz, feat, fl, ds, ss, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, fl, NOREG, O_V, ds, O_W, ss, O_NONE, 0, \
      O_NONE, 0, f)
/* Scalar into a vector: dst = vvvv with element 0 converted from rm. */
#define CVS(nm, en, opc, p, wv, esz, feat, fl, ss, f) \
    E(nm, en, 1, opc, p, wv, LIG, esz, feat, (fl) | F_FP | F_SCALAR, NOREG, O_V, S_128, \
      O_H, S_128, O_W, ss, O_NONE, 0, f)
/* To a general register (ModRM.reg) from an xmm or memory. */
#define CVG(nm, en, opc, p, ss, fl, f) \
    E(nm, en, 1, opc, p, WIG, LIG, 0, en == ENC_VEX ? AVX : F512, (fl) | F_FP, NOREG, \
      O_G, S_OSZ, O_W, ss, O_NONE, 0, O_NONE, 0, f)
/* From a general register or memory: dst = vvvv with element 0 converted. */
#define CVI(nm, en, opc, p, esz, fl, f) \
    E(nm, en, 1, opc, p, WIG, LIG, esz, en == ENC_VEX ? AVX : F512, (fl) | F_FP, NOREG, \
      O_V, S_128, O_H, S_128, O_E, S_OSZ, O_NONE, 0, f)

const VecOp vec_ops_convert[] = {
    /* VEX (AVX). */
    CV("vcvtdq2ps", ENC_VEX, 1, 0x5b, P_NONE, WIG, LVEX, 4, AVX, F_FP, S_VL, S_VL, cvtdq2ps),
    CV("vcvtps2dq", ENC_VEX, 1, 0x5b, P_66, WIG, LVEX, 4, AVX, F_FP, S_VL, S_VL, cvtps2dq),
    CV("vcvttps2dq", ENC_VEX, 1, 0x5b, P_F3, WIG, LVEX, 4, AVX, F_FP, S_VL, S_VL, cvttps2dq),
    CV("vcvtdq2pd", ENC_VEX, 1, 0xe6, P_F3, WIG, LVEX, 8, AVX, F_FP, S_VL, S_HALF, cvtdq2pd),
    CV("vcvtpd2dq", ENC_VEX, 1, 0xe6, P_F2, WIG, LVEX, 4, AVX, F_FP, S_HALF, S_VL, cvtpd2dq),
    CV("vcvttpd2dq", ENC_VEX, 1, 0xe6, P_66, WIG, LVEX, 4, AVX, F_FP, S_HALF, S_VL,
       cvttpd2dq),
    CV("vcvtps2pd", ENC_VEX, 1, 0x5a, P_NONE, WIG, LVEX, 8, AVX, F_FP, S_VL, S_HALF, cvtps2pd),
    CV("vcvtpd2ps", ENC_VEX, 1, 0x5a, P_66, WIG, LVEX, 4, AVX, F_FP, S_HALF, S_VL, cvtpd2ps),
    CVS("vcvtss2sd", ENC_VEX, 0x5a, P_F3, WIG, 8, AVX, 0, S_32, cvtss2sd),
    CVS("vcvtsd2ss", ENC_VEX, 0x5a, P_F2, WIG, 4, AVX, 0, S_64, cvtsd2ss),
    CVI("vcvtsi2ss", ENC_VEX, 0x2a, P_F3, 4, 0, cvtsi2ss),
    CVI("vcvtsi2sd", ENC_VEX, 0x2a, P_F2, 8, 0, cvtsi2sd),
    CVG("vcvttss2si", ENC_VEX, 0x2c, P_F3, S_32, 0, cvttss2si),
    CVG("vcvttsd2si", ENC_VEX, 0x2c, P_F2, S_64, 0, cvttsd2si),
    CVG("vcvtss2si", ENC_VEX, 0x2d, P_F3, S_32, 0, cvtss2si),
    CVG("vcvtsd2si", ENC_VEX, 0x2d, P_F2, S_64, 0, cvtsd2si),

    /* VEX (F16C): W1 is #UD. */
    CV("vcvtph2ps", ENC_VEX, 2, 0x13, P_66, 0, LVEX, 4, X_F16C, F_FP, S_VL, S_HALF, cvtph2ps),
    E("vcvtps2ph", ENC_VEX, 3, 0x1d, P_66, 0, LVEX, 2, X_F16C, F_FP | F_IMM, NOREG,
      O_W, S_HALF, O_V, S_VL, O_NONE, 0, O_NONE, 0, cvtps2ph),

    /* EVEX (AVX512F): 0F 5B, E6, 5A. */
    CV("vcvtdq2ps", ENC_EVEX, 1, 0x5b, P_NONE, 0, LALL, 4, F512, PER, S_VL, S_VL, cvtdq2ps),
    CV("vcvtps2dq", ENC_EVEX, 1, 0x5b, P_66, 0, LALL, 4, F512, PER, S_VL, S_VL, cvtps2dq),
    CV("vcvttps2dq", ENC_EVEX, 1, 0x5b, P_F3, 0, LALL, 4, F512, PSAE, S_VL, S_VL, cvttps2dq),
    /* exact: EVEX.b on registers is ignored (XED: "ignores rc/sae"), the length is 512 */
    CV("vcvtdq2pd", ENC_EVEX, 1, 0xe6, P_F3, 0, LALL, 8, F512, PSAE, S_VL, S_HALF, cvtdq2pd),
    CV("vcvtpd2dq", ENC_EVEX, 1, 0xe6, P_F2, 1, LALL, 4, F512, PER, S_HALF, S_VL, cvtpd2dq),
    CV("vcvttpd2dq", ENC_EVEX, 1, 0xe6, P_66, 1, LALL, 4, F512, PSAE, S_HALF, S_VL,
       cvttpd2dq),
    CV("vcvtps2pd", ENC_EVEX, 1, 0x5a, P_NONE, 0, LALL, 8, F512, PSAE, S_VL, S_HALF, cvtps2pd),
    CV("vcvtpd2ps", ENC_EVEX, 1, 0x5a, P_66, 1, LALL, 4, F512, PER, S_HALF, S_VL, cvtpd2ps),
    CVS("vcvtss2sd", ENC_EVEX, 0x5a, P_F3, 0, 8, F512, F_MASK | F_MEMMASK | F_SAE, S_32, cvtss2sd),
    CVS("vcvtsd2ss", ENC_EVEX, 0x5a, P_F2, 1, 4, F512, F_MASK | F_MEMMASK | F_ER, S_64, cvtsd2ss),

    /* EVEX (AVX512DQ): 0F 5B W1, F3 0F E6 W1. */
    CV("vcvtqq2ps", ENC_EVEX, 1, 0x5b, P_NONE, 1, LALL, 4, DQ512, PER, S_HALF, S_VL, cvtqq2ps),
    CV("vcvtqq2pd", ENC_EVEX, 1, 0xe6, P_F3, 1, LALL, 8, DQ512, PER, S_VL, S_VL, cvtqq2pd),

    /* EVEX (AVX512F): unsigned, 0F 78-7B. */
    CV("vcvttps2udq", ENC_EVEX, 1, 0x78, P_NONE, 0, LALL, 4, F512, PSAE, S_VL, S_VL,
       cvttps2udq),
    CV("vcvttpd2udq", ENC_EVEX, 1, 0x78, P_NONE, 1, LALL, 4, F512, PSAE, S_HALF, S_VL,
       cvttpd2udq),
    CV("vcvtps2udq", ENC_EVEX, 1, 0x79, P_NONE, 0, LALL, 4, F512, PER, S_VL, S_VL, cvtps2udq),
    CV("vcvtpd2udq", ENC_EVEX, 1, 0x79, P_NONE, 1, LALL, 4, F512, PER, S_HALF, S_VL,
       cvtpd2udq),
    CV("vcvtudq2pd", ENC_EVEX, 1, 0x7a, P_F3, 0, LALL, 8, F512, PSAE, S_VL, S_HALF, cvtudq2pd),
    CV("vcvtudq2ps", ENC_EVEX, 1, 0x7a, P_F2, 0, LALL, 4, F512, PER, S_VL, S_VL, cvtudq2ps),

    /* EVEX (AVX512DQ): quadwords, 66 0F 78-7B and F3/F2 0F 7A W1. */
    CV("vcvttps2uqq", ENC_EVEX, 1, 0x78, P_66, 0, LALL, 8, DQ512, PSAE, S_VL, S_HALF,
       cvttps2uqq),
    CV("vcvttpd2uqq", ENC_EVEX, 1, 0x78, P_66, 1, LALL, 8, DQ512, PSAE, S_VL, S_VL,
       cvttpd2uqq),
    CV("vcvtps2uqq", ENC_EVEX, 1, 0x79, P_66, 0, LALL, 8, DQ512, PER, S_VL, S_HALF, cvtps2uqq),
    CV("vcvtpd2uqq", ENC_EVEX, 1, 0x79, P_66, 1, LALL, 8, DQ512, PER, S_VL, S_VL, cvtpd2uqq),
    CV("vcvttps2qq", ENC_EVEX, 1, 0x7a, P_66, 0, LALL, 8, DQ512, PSAE, S_VL, S_HALF,
       cvttps2qq),
    CV("vcvttpd2qq", ENC_EVEX, 1, 0x7a, P_66, 1, LALL, 8, DQ512, PSAE, S_VL, S_VL, cvttpd2qq),
    CV("vcvtps2qq", ENC_EVEX, 1, 0x7b, P_66, 0, LALL, 8, DQ512, PER, S_VL, S_HALF, cvtps2qq),
    CV("vcvtpd2qq", ENC_EVEX, 1, 0x7b, P_66, 1, LALL, 8, DQ512, PER, S_VL, S_VL, cvtpd2qq),
    CV("vcvtuqq2pd", ENC_EVEX, 1, 0x7a, P_F3, 1, LALL, 8, DQ512, PER, S_VL, S_VL, cvtuqq2pd),
    CV("vcvtuqq2ps", ENC_EVEX, 1, 0x7a, P_F2, 1, LALL, 4, DQ512, PER, S_HALF, S_VL,
       cvtuqq2ps),

    /* EVEX (AVX512F): scalars with general registers; no masking. W0 forms of the exact
     * int32-to-double conversions ignore EVEX.b (SDM), hence F_ER on them too. */
    CVI("vcvtsi2ss", ENC_EVEX, 0x2a, P_F3, 4, F_ER, cvtsi2ss),
    CVI("vcvtsi2sd", ENC_EVEX, 0x2a, P_F2, 8, F_ER, cvtsi2sd),
    CVI("vcvtusi2ss", ENC_EVEX, 0x7b, P_F3, 4, F_ER, cvtusi2ss),
    CVI("vcvtusi2sd", ENC_EVEX, 0x7b, P_F2, 8, F_ER, cvtusi2sd),
    CVG("vcvttss2si", ENC_EVEX, 0x2c, P_F3, S_32, F_SAE, cvttss2si),
    CVG("vcvttsd2si", ENC_EVEX, 0x2c, P_F2, S_64, F_SAE, cvttsd2si),
    CVG("vcvtss2si", ENC_EVEX, 0x2d, P_F3, S_32, F_ER, cvtss2si),
    CVG("vcvtsd2si", ENC_EVEX, 0x2d, P_F2, S_64, F_ER, cvtsd2si),
    CVG("vcvttss2usi", ENC_EVEX, 0x78, P_F3, S_32, F_SAE, cvttss2usi),
    CVG("vcvttsd2usi", ENC_EVEX, 0x78, P_F2, S_64, F_SAE, cvttsd2usi),
    CVG("vcvtss2usi", ENC_EVEX, 0x79, P_F3, S_32, F_ER, cvtss2usi),
    CVG("vcvtsd2usi", ENC_EVEX, 0x79, P_F2, S_64, F_ER, cvtsd2usi),

    /* EVEX (AVX512F): half precision; no broadcast; a store merges only (z is #UD). */
    CV("vcvtph2ps", ENC_EVEX, 2, 0x13, P_66, 0, LALL, 4, F512,
       F_FP | F_MASK | F_MEMMASK | F_SAE,
       S_VL, S_HALF, cvtph2ps),
    E("vcvtps2ph", ENC_EVEX, 3, 0x1d, P_66, 0, LALL, 2, F512, F_FP | F_MASK | F_SAE | F_IMM,
      NOREG, O_W, S_HALF, O_V, S_VL, O_NONE, 0, O_NONE, 0, cvtps2ph),
    { .name = NULL },
};
