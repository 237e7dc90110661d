/*
 * Floating-point arithmetic: packed and scalar, single and double precision.
 * NaNs follow x86's rule (the first NaN source, quieted) before softfloat sees the operands;
 * a denormal operand sets MXCSR.DE unless DAZ is on.
 */
#include "vector/ops.h"

#define ARITH32(name, sf)                                                       \
    static float32 name##_1(VecCtx *c, float32 a, float32 b)                    \
    {                                                                           \
        vec_f32_check_denormal(c, a);                                           \
        vec_f32_check_denormal(c, b);                                           \
        if (float32_is_any_nan(a) || float32_is_any_nan(b)) {                   \
            return vec_f32_nan(c, a, b);                                        \
        }                                                                       \
        return sf(a, b, &c->fp);                                                \
    }                                                                           \
    static void name##ps(VecCtx *c)                                             \
    {                                                                           \
        FOR_LIVE(c, i) {                                                        \
            U32(&c->d, i) = name##_1(c, U32(&c->s1, i), U32(&c->s2, i));           \
        }                                                                       \
    }                                                                           \
    static void name##ss(VecCtx *c)                                             \
    {                                                                           \
        c->d = c->s1;                                                           \
        if (vec_live(c, 0)) {                                                   \
            U32(&c->d, 0) = name##_1(c, U32(&c->s1, 0), U32(&c->s2, 0));           \
        }                                                                       \
    }

#define ARITH64(name, sf)                                                       \
    static float64 name##_1d(VecCtx *c, float64 a, float64 b)                   \
    {                                                                           \
        vec_f64_check_denormal(c, a);                                           \
        vec_f64_check_denormal(c, b);                                           \
        if (float64_is_any_nan(a) || float64_is_any_nan(b)) {                   \
            return vec_f64_nan(c, a, b);                                        \
        }                                                                       \
        return sf(a, b, &c->fp);                                                \
    }                                                                           \
    static void name##pd(VecCtx *c)                                             \
    {                                                                           \
        FOR_LIVE(c, i) {                                                        \
            U64(&c->d, i) = name##_1d(c, U64(&c->s1, i), U64(&c->s2, i));          \
        }                                                                       \
    }                                                                           \
    static void name##sd(VecCtx *c)                                             \
    {                                                                           \
        c->d = c->s1;                                                           \
        if (vec_live(c, 0)) {                                                   \
            U64(&c->d, 0) = name##_1d(c, U64(&c->s1, 0), U64(&c->s2, 0));          \
        }                                                                       \
    }

ARITH32(add, float32_add)
ARITH32(sub, float32_sub)
ARITH32(mul, float32_mul)
ARITH32(div, float32_div)
ARITH64(add, float64_add)
ARITH64(sub, float64_sub)
ARITH64(mul, float64_mul)
ARITH64(div, float64_div)

static void xorp(VecCtx *c)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        U64(&c->d, i) = U64(&c->s1, i) ^ U64(&c->s2, i);
    }
}

#define AVX X_AVX
#define F512 X_AVX512F
#define ERM (F_FP | F_MASK | F_BCST | F_ER)

/* One arithmetic opcode in all its forms: ps, pd, ss, sd; VEX and EVEX. */
#define ARITH(nm, opc, f)                                                              \
    VHW("v" nm "ps", ENC_VEX, 1, opc, P_NONE, WIG, LVEX, 4, AVX, F_FP, f##ps),         \
    VHW("v" nm "pd", ENC_VEX, 1, opc, P_66, WIG, LVEX, 8, AVX, F_FP, f##pd),           \
    VHWS("v" nm "ss", ENC_VEX, 1, opc, P_F3, WIG, 4, AVX, F_FP, f##ss),                \
    VHWS("v" nm "sd", ENC_VEX, 1, opc, P_F2, WIG, 8, AVX, F_FP, f##sd),                \
    VHW("v" nm "ps", ENC_EVEX, 1, opc, P_NONE, 0, LALL, 4, F512, ERM, f##ps),          \
    VHW("v" nm "pd", ENC_EVEX, 1, opc, P_66, 1, LALL, 8, F512, ERM, f##pd),            \
    VHWS("v" nm "ss", ENC_EVEX, 1, opc, P_F3, 0, 4, F512, F_FP | F_MASK | F_ER, f##ss), \
    VHWS("v" nm "sd", ENC_EVEX, 1, opc, P_F2, 1, 8, F512, F_FP | F_MASK | F_ER, f##sd)

const VecOp vec_ops_fp[] = {
    ARITH("add", 0x58, add),
    ARITH("mul", 0x59, mul),
    ARITH("sub", 0x5c, sub),
    ARITH("div", 0x5e, div),
    VHW("vxorps", ENC_VEX, 1, 0x57, P_NONE, WIG, LVEX, 4, AVX, 0, xorp),
    VHW("vxorpd", ENC_VEX, 1, 0x57, P_66, WIG, LVEX, 8, AVX, 0, xorp),
    { .name = NULL },
};
