/*
 * Integer arithmetic and logic on vector elements.
 */
#include "vector/ops.h"

#define BINARY(name, T, ACC, expr)                                    \
    static void name(VecCtx *c)                                       \
    {                                                                 \
        FOR_ELEMS(c, i) {                                             \
            T a = ACC(&c->s1, i), b = ACC(&c->s2, i);                 \
            ACC(&c->d, i) = (expr);                                   \
        }                                                             \
    }

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

BINARY(add8, uint8_t, U8, a + b)
BINARY(add16, uint16_t, U16, a + b)
BINARY(add32, uint32_t, U32, a + b)
BINARY(add64, uint64_t, U64, a + b)
BINARY(sub8, uint8_t, U8, a - b)
BINARY(sub16, uint16_t, U16, a - b)
BINARY(sub32, uint32_t, U32, a - b)
BINARY(sub64, uint64_t, U64, a - b)
BINARY(cmpeq8, uint8_t, U8, a == b ? 0xff : 0)
BINARY(cmpeq16, uint16_t, U16, a == b ? 0xffff : 0)
BINARY(cmpeq32, uint32_t, U32, a == b ? 0xffffffffu : 0)
BINARY(cmpeq64, uint64_t, U64, a == b ? ~0ull : 0)
BINARY(minu8, uint8_t, U8, a < b ? a : b)
BINARY(maxu8, uint8_t, U8, a > b ? a : b)

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

#define AVX X_AVX
#define VI(nm, opc, esz, f) VHW(nm, ENC_VEX, 1, opc, P_66, WIG, LVEX, esz, AVX, 0, f)
#define EI(nm, opc, wv, esz, feat, f) \
    VHW(nm, ENC_EVEX, 1, opc, P_66, wv, LALL, esz, feat, F_MASK | F_BCST, f)
#define EB(nm, opc, esz, f) \
    VHW(nm, ENC_EVEX, 1, opc, P_66, WIG, LALL, esz, X_AVX512BW, F_MASK, f)

const VecOp vec_ops_int[] = {
    VI("vpand", 0xdb, 8, and), VI("vpandn", 0xdf, 8, andn),
    VI("vpor", 0xeb, 8, or), VI("vpxor", 0xef, 8, xor),
    EI("vpandd", 0xdb, 0, 4, X_AVX512F, and), EI("vpandq", 0xdb, 1, 8, X_AVX512F, and),
    EI("vpandnd", 0xdf, 0, 4, X_AVX512F, andn), EI("vpandnq", 0xdf, 1, 8, X_AVX512F, andn),
    EI("vpord", 0xeb, 0, 4, X_AVX512F, or), EI("vporq", 0xeb, 1, 8, X_AVX512F, or),
    EI("vpxord", 0xef, 0, 4, X_AVX512F, xor), EI("vpxorq", 0xef, 1, 8, X_AVX512F, xor),

    VI("vpaddb", 0xfc, 1, add8), VI("vpaddw", 0xfd, 2, add16),
    VI("vpaddd", 0xfe, 4, add32), VI("vpaddq", 0xd4, 8, add64),
    VI("vpsubb", 0xf8, 1, sub8), VI("vpsubw", 0xf9, 2, sub16),
    VI("vpsubd", 0xfa, 4, sub32), VI("vpsubq", 0xfb, 8, sub64),
    EB("vpaddb", 0xfc, 1, add8), EB("vpaddw", 0xfd, 2, add16),
    EI("vpaddd", 0xfe, 0, 4, X_AVX512F, add32), EI("vpaddq", 0xd4, 1, 8, X_AVX512F, add64),
    EB("vpsubb", 0xf8, 1, sub8), EB("vpsubw", 0xf9, 2, sub16),
    EI("vpsubd", 0xfa, 0, 4, X_AVX512F, sub32), EI("vpsubq", 0xfb, 1, 8, X_AVX512F, sub64),

    VI("vpcmpeqb", 0x74, 1, cmpeq8), VI("vpcmpeqw", 0x75, 2, cmpeq16),
    VI("vpcmpeqd", 0x76, 4, cmpeq32),
    VHW("vpcmpeqq", ENC_VEX, 2, 0x29, P_66, WIG, LVEX, 8, AVX, 0, cmpeq64),
    VI("vpminub", 0xda, 1, minu8), VI("vpmaxub", 0xde, 1, maxu8),
    EB("vpminub", 0xda, 1, minu8), EB("vpmaxub", 0xde, 1, maxu8),

    E("vpmovmskb", ENC_VEX, 1, 0xd7, P_66, WIG, LVEX, 1, AVX, 0, NOREG,
      O_G, S_32, O_U, S_VL, O_NONE, 0, O_NONE, 0, movmsk8),
    E("vptest", ENC_VEX, 2, 0x17, P_66, WIG, LVEX, 8, AVX, F_FLAGS, NOREG,
      O_NONE, 0, O_V, S_VL, O_W, S_VL, O_NONE, 0, ptest),
    { .name = NULL },
};
