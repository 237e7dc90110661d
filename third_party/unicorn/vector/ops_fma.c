/*
 * Fused multiply-add (FMA3 and its EVEX forms): VFMADD, VFMSUB, VFNMADD, VFNMSUB,
 * VFMADDSUB, VFMSUBADD in their 132, 213 and 231 orders, packed and scalar.
 *
 * The three digits name which operands are the multiplicand, the multiplier and the addend
 * (SDM Vol. 1 14.5.1): operand 1 is the destination (ModRM.reg, its old value in c->d),
 * operand 2 is vvvv (c->s1), operand 3 is ModRM.rm or memory (c->s2, the one that may be
 * broadcast). So 132 computes d*s2 + s1, 213 s1*d + s2, 231 s1*s2 + d.
 *
 * One rounding: softfloat's muladd, with its negation flags for the subtracting and negated
 * forms (so a zero result's sign is IEEE's, SDM Vol. 1 Table 14-16). NaNs follow SDM Vol. 1
 * Table 14-17, decided here before softfloat sees the operands: with x the multiplicand, y the
 * multiplier and z the addend, the result is x quieted if x is a NaN, else y quieted, else
 * z quieted, whatever the negations; any SNaN is invalid; 0 * inf + QNaN is the QNaN without
 * invalid. MXCSR.DE: a denormal operand, unless DAZ, and unless the element's exception is of
 * higher priority (a NaN operand or an invalid operation, SDM Vol. 1 4.9.2 / 11.5.2).
 *
 * Results go through vec_f32_element/vec_f64_element (exec.c): tininess after rounding, FZ as
 * the masked response to underflow, and with underflow or overflow unmasked UE for any tiny
 * result (exact or not) and PE only when the result rounded with an unbounded exponent is
 * inexact (SDM Vol. 1 4.9.1.4, 4.9.1.5). That rounding is decided exactly in a wider format:
 * the product of two elements is exact there, and the sum rounded to odd keeps every bit the
 * narrower rounding looks at.
 */
#include "vector/ops.h"

enum { ORDER_132, ORDER_213, ORDER_231 };
enum { K_ADD, K_SUB, K_NADD, K_NSUB, K_ADDSUB, K_SUBADD };

/* softfloat's negations for element i of a kind. */
static int negations(int kind, unsigned i)
{
    switch (kind) {
    case K_SUB:
        return float_muladd_negate_c;
    case K_NADD:
        return float_muladd_negate_product;
    case K_NSUB:
        return float_muladd_negate_product | float_muladd_negate_c;
    case K_ADDSUB:                  /* odd elements add, even ones subtract */
        return (i & 1) ? 0 : float_muladd_negate_c;
    case K_SUBADD:                  /* odd elements subtract, even ones add */
        return (i & 1) ? float_muladd_negate_c : 0;
    default:
        return 0;
    }
}

static bool f32_denormal(VecCtx *c, float32 a)
{
    return !get_flush_inputs_to_zero(&c->fp) && float32_is_zero_or_denormal(a)
           && !float32_is_zero(a);
}

static bool f64_denormal(VecCtx *c, float64 a)
{
    return !get_flush_inputs_to_zero(&c->fp) && float64_is_zero_or_denormal(a)
           && !float64_is_zero(a);
}

/* A denormal operand read as a zero of its sign under MXCSR.DAZ (as softfloat does). */
static float32 f32_daz(VecCtx *c, float32 a)
{
    return get_flush_inputs_to_zero(&c->fp) && float32_is_zero_or_denormal(a)
           ? float32_set_sign(float32_zero, float32_is_neg(a)) : a;
}

static float64 f64_daz(VecCtx *c, float64 a)
{
    return get_flush_inputs_to_zero(&c->fp) && float64_is_zero_or_denormal(a)
           ? float64_set_sign(float64_zero, float64_is_neg(a)) : a;
}

static float_status odd_status(void)
{
    float_status w;

    memset(&w, 0, sizeof(w));
    set_float_rounding_mode(float_round_to_odd, &w);
    return w;
}

/*
 * Whether x * y + z (finite operands, the kind's negations) rounded to single precision with
 * an unbounded exponent is inexact: in double precision the product is exact (48 bits, the
 * exponent within range) and the sum rounded to odd is exact or has its last bit set, so
 * single precision's rounding is inexact iff double's was or its 29 extra bits are not 0.
 */
static bool fma32_inexact(VecCtx *c, float32 x, float32 y, float32 z, int neg)
{
    float_status w = odd_status();
    float64 p, r;

    p = float64_mul(float32_to_float64(f32_daz(c, x), &w),
                    float32_to_float64(f32_daz(c, y), &w), &w);
    if (neg & float_muladd_negate_product) {
        p = float64_chs(p);
    }
    z = f32_daz(c, z);
    if (neg & float_muladd_negate_c) {
        z = float32_chs(z);
    }
    r = float64_add(p, float32_to_float64(z, &w), &w);
    return (get_float_exception_flags(&w) & float_flag_inexact) || (r & ((1ull << 29) - 1));
}

/* The same for double precision, in quadruple precision (a 106-bit product; 60 extra bits). */
static bool fma64_inexact(VecCtx *c, float64 x, float64 y, float64 z, int neg)
{
    float_status w = odd_status();
    float128 p, r;

    p = float128_mul(float64_to_float128(f64_daz(c, x), &w),
                     float64_to_float128(f64_daz(c, y), &w), &w);
    if (neg & float_muladd_negate_product) {
        p = float128_chs(p);
    }
    z = f64_daz(c, z);
    if (neg & float_muladd_negate_c) {
        z = float64_chs(z);
    }
    r = float128_add(p, float64_to_float128(z, &w), &w);
    return (get_float_exception_flags(&w) & float_flag_inexact)
           || (r.low & ((1ull << 60) - 1));
}

/* One element: x * y + z with the kind's negations. */
static float32 fma32(VecCtx *c, float32 x, float32 y, float32 z, int neg)
{
    float_status s;
    float32 r;
    bool den, inexact = false;
    int f;

    if (float32_is_any_nan(x) || float32_is_any_nan(y) || float32_is_any_nan(z)) {
        if (float32_is_signaling_nan(x, &c->fp) || float32_is_signaling_nan(y, &c->fp)
            || float32_is_signaling_nan(z, &c->fp)) {
            float_raise(float_flag_invalid, &c->fp);
        }
        r = float32_is_any_nan(x) ? x : float32_is_any_nan(y) ? y : z;
        return float32_silence_nan(r, &c->fp);
    }
    den = f32_denormal(c, x) || f32_denormal(c, y) || f32_denormal(c, z);
    s = vec_fp_element(c);
    r = float32_muladd(x, y, z, neg, &s);
    f = get_float_exception_flags(&s);
    if (den && !(f & float_flag_invalid)) {
        c->denormal = 1;
    }
    if ((f & (float_flag_overflow | float_flag_underflow)) || float32_is_denormal(r)) {
        inexact = fma32_inexact(c, x, y, z, neg);
    }
    return vec_f32_element(c, &s, r, inexact);
}

static float64 fma64(VecCtx *c, float64 x, float64 y, float64 z, int neg)
{
    float_status s;
    float64 r;
    bool den, inexact = false;
    int f;

    if (float64_is_any_nan(x) || float64_is_any_nan(y) || float64_is_any_nan(z)) {
        if (float64_is_signaling_nan(x, &c->fp) || float64_is_signaling_nan(y, &c->fp)
            || float64_is_signaling_nan(z, &c->fp)) {
            float_raise(float_flag_invalid, &c->fp);
        }
        r = float64_is_any_nan(x) ? x : float64_is_any_nan(y) ? y : z;
        return float64_silence_nan(r, &c->fp);
    }
    den = f64_denormal(c, x) || f64_denormal(c, y) || f64_denormal(c, z);
    s = vec_fp_element(c);
    r = float64_muladd(x, y, z, neg, &s);
    f = get_float_exception_flags(&s);
    if (den && !(f & float_flag_invalid)) {
        c->denormal = 1;
    }
    if ((f & (float_flag_overflow | float_flag_underflow)) || float64_is_denormal(r)) {
        inexact = fma64_inexact(c, x, y, z, neg);
    }
    return vec_f64_element(c, &s, r, inexact);
}

/* Element i in the instruction's order: d, s1, s2 are operands 1, 2, 3. */
static float32 elem32(VecCtx *c, int order, int kind, unsigned i)
{
    float32 d = U32(&c->d, i), a = U32(&c->s1, i), b = U32(&c->s2, i);
    int neg = negations(kind, i);

    switch (order) {
    case ORDER_132:
        return fma32(c, d, b, a, neg);
    case ORDER_213:
        return fma32(c, a, d, b, neg);
    default:
        return fma32(c, a, b, d, neg);
    }
}

static float64 elem64(VecCtx *c, int order, int kind, unsigned i)
{
    float64 d = U64(&c->d, i), a = U64(&c->s1, i), b = U64(&c->s2, i);
    int neg = negations(kind, i);

    switch (order) {
    case ORDER_132:
        return fma64(c, d, b, a, neg);
    case ORDER_213:
        return fma64(c, a, d, b, neg);
    default:
        return fma64(c, a, b, d, neg);
    }
}

/* Packed: every live element; scalar: element 0, the rest of the destination unchanged. */
static void packed32(VecCtx *c, int order, int kind)
{
    FOR_LIVE(c, i) {
        U32(&c->d, i) = elem32(c, order, kind, i);
    }
}

static void packed64(VecCtx *c, int order, int kind)
{
    FOR_LIVE(c, i) {
        U64(&c->d, i) = elem64(c, order, kind, i);
    }
}

static void scalar32(VecCtx *c, int order, int kind)
{
    if (vec_live(c, 0)) {
        U32(&c->d, 0) = elem32(c, order, kind, 0);
    }
}

static void scalar64(VecCtx *c, int order, int kind)
{
    if (vec_live(c, 0)) {
        U64(&c->d, 0) = elem64(c, order, kind, 0);
    }
}

#define FN(name, shape, order, kind) \
    static void name(VecCtx *c) { shape(c, order, kind); }

/* The three orders of one kind and shape. */
#define ORDERS(name, shape, kind)                       \
    FN(name##132, shape, ORDER_132, kind)               \
    FN(name##213, shape, ORDER_213, kind)               \
    FN(name##231, shape, ORDER_231, kind)

ORDERS(fmaddps, packed32, K_ADD)
ORDERS(fmaddpd, packed64, K_ADD)
ORDERS(fmaddss, scalar32, K_ADD)
ORDERS(fmaddsd, scalar64, K_ADD)
ORDERS(fmsubps, packed32, K_SUB)
ORDERS(fmsubpd, packed64, K_SUB)
ORDERS(fmsubss, scalar32, K_SUB)
ORDERS(fmsubsd, scalar64, K_SUB)
ORDERS(fnmaddps, packed32, K_NADD)
ORDERS(fnmaddpd, packed64, K_NADD)
ORDERS(fnmaddss, scalar32, K_NADD)
ORDERS(fnmaddsd, scalar64, K_NADD)
ORDERS(fnmsubps, packed32, K_NSUB)
ORDERS(fnmsubpd, packed64, K_NSUB)
ORDERS(fnmsubss, scalar32, K_NSUB)
ORDERS(fnmsubsd, scalar64, K_NSUB)
ORDERS(fmaddsubps, packed32, K_ADDSUB)
ORDERS(fmaddsubpd, packed64, K_ADDSUB)
ORDERS(fmsubaddps, packed32, K_SUBADD)
ORDERS(fmsubaddpd, packed64, K_SUBADD)

/*
 * Entries. All are 66 0F38 with W0 for single and W1 for double precision; the opcode's low
 * nibble picks the operation, its high nibble the order (9x 132, Ax 213, Bx 231).
 *   VEX (FMA): packed 128/256, scalar LIG.
 *   EVEX (AVX512F): packed 128/256/512 with masking, broadcast and embedded rounding on
 *   512-bit register forms; scalar with masking and embedded rounding. A memory operand's
 *   masked-off elements are not read (SDM: memory fault suppression).
 */
#define PK(nm, opc, w, esz, f)                                                           \
    VHW(nm, ENC_VEX, 2, opc, P_66, w, LVEX, esz, X_FMA, F_FP, f),                        \
    VHW(nm, ENC_EVEX, 2, opc, P_66, w, LALL, esz, X_AVX512F,                             \
        F_FP | F_MASK | F_MEMMASK | F_BCST | F_ER, f)
#define SC(nm, opc, w, esz, f)                                                           \
    E(nm, ENC_VEX, 2, opc, P_66, w, LIG, esz, X_FMA, F_FP | F_SCALAR, NOREG,             \
      O_V, S_128, O_H, S_128, O_W, S_ELEM, O_NONE, 0, f),                                \
    E(nm, ENC_EVEX, 2, opc, P_66, w, LIG, esz, X_AVX512F,                                \
      F_FP | F_SCALAR | F_MASK | F_MEMMASK | F_ER, NOREG, O_V, S_128, O_H, S_128, O_W, S_ELEM,       \
      O_NONE, 0, f)

/* One operation in its three orders: packed at opc, scalar at opc + 1 (if it has one). */
#define PACKED3(nm, opc, f)                                                              \
    PK("v" nm "132ps", 0x90 + (opc), 0, 4, f##ps132),                                    \
    PK("v" nm "213ps", 0xa0 + (opc), 0, 4, f##ps213),                                    \
    PK("v" nm "231ps", 0xb0 + (opc), 0, 4, f##ps231),                                    \
    PK("v" nm "132pd", 0x90 + (opc), 1, 8, f##pd132),                                    \
    PK("v" nm "213pd", 0xa0 + (opc), 1, 8, f##pd213),                                    \
    PK("v" nm "231pd", 0xb0 + (opc), 1, 8, f##pd231)
#define SCALAR3(nm, opc, f)                                                              \
    SC("v" nm "132ss", 0x90 + (opc), 0, 4, f##ss132),                                    \
    SC("v" nm "213ss", 0xa0 + (opc), 0, 4, f##ss213),                                    \
    SC("v" nm "231ss", 0xb0 + (opc), 0, 4, f##ss231),                                    \
    SC("v" nm "132sd", 0x90 + (opc), 1, 8, f##sd132),                                    \
    SC("v" nm "213sd", 0xa0 + (opc), 1, 8, f##sd213),                                    \
    SC("v" nm "231sd", 0xb0 + (opc), 1, 8, f##sd231)

const VecOp vec_ops_fma[] = {
    PACKED3("fmaddsub", 0x6, fmaddsub),
    PACKED3("fmsubadd", 0x7, fmsubadd),
    PACKED3("fmadd", 0x8, fmadd),
    SCALAR3("fmadd", 0x9, fmadd),
    PACKED3("fmsub", 0xa, fmsub),
    SCALAR3("fmsub", 0xb, fmsub),
    PACKED3("fnmadd", 0xc, fnmadd),
    SCALAR3("fnmadd", 0xd, fnmadd),
    PACKED3("fnmsub", 0xe, fnmsub),
    SCALAR3("fnmsub", 0xf, fnmsub),
    { .name = NULL },
};
