/*
 * The opmask instructions (kmov, kand, kandn, kor, kxor, kxnor, knot, kadd, kunpck,
 * kortest, ktest, kshiftl, kshiftr): VEX-encoded, on k0-k7 (the k register fields use three
 * bits; VEX.R, VEX.B and vvvv[3] do not select registers). They need the AVX-512 XCR0 state
 * like EVEX (their features are AVX-512 ones), and touch no vector register.
 *
 * An entry's esize is the operation's width in bytes (1 for the b forms, 2 w, 4 d, 8 q);
 * results are zero-extended to 64 bits.
 */
#include "vector/ops.h"

static uint64_t width_mask(const VecCtx *c)
{
    unsigned bits = c->op->esize * 8;
    return bits >= 64 ? ~0ull : (1ull << bits) - 1;
}

static uint64_t k1(const VecCtx *c) { return U64(&c->s1, 0); }
static uint64_t k2(const VecCtx *c) { return U64(&c->s2, 0); }

static void kand(VecCtx *c) { c->g = k1(c) & k2(c) & width_mask(c); }
static void kandn(VecCtx *c) { c->g = ~k1(c) & k2(c) & width_mask(c); }
static void kor(VecCtx *c) { c->g = (k1(c) | k2(c)) & width_mask(c); }
static void kxor(VecCtx *c) { c->g = (k1(c) ^ k2(c)) & width_mask(c); }
static void kxnor(VecCtx *c) { c->g = ~(k1(c) ^ k2(c)) & width_mask(c); }
static void kadd(VecCtx *c) { c->g = (k1(c) + k2(c)) & width_mask(c); }
static void knot(VecCtx *c) { c->g = ~k1(c) & width_mask(c); }

/* kmov to k or to a general register: the low bits, zero-extended. */
static void kmov(VecCtx *c) { c->g = k1(c) & width_mask(c); }

/* kmov to memory: the write-back stores the low dsize bytes of d. */
static void kmov_store(VecCtx *c)
{
    memset(&c->d, 0, sizeof(c->d));
    U64(&c->d, 0) = k1(c) & width_mask(c);
}

/* kunpck: the low halves of vvvv (high) and rm (low) side by side; esize is the result. */
static void kunpck(VecCtx *c)
{
    unsigned half = c->op->esize * 4;
    uint64_t m = (1ull << half) - 1;
    c->g = (k1(c) & m) << half | (k2(c) & m);
}

/* kshiftl/kshiftr by imm8 (all 8 bits count: a count of the width or more gives 0). */
static void kshiftl(VecCtx *c)
{
    unsigned n = c->in.imm & 0xff;
    c->g = n >= c->op->esize * 8u ? 0 : (k1(c) << n) & width_mask(c);
}

static void kshiftr(VecCtx *c)
{
    unsigned n = c->in.imm & 0xff;
    c->g = n >= c->op->esize * 8u ? 0 : (k1(c) & width_mask(c)) >> n;
}

/* kortest: ZF if the OR is all zeros, CF if all ones; ktest: ZF if src1 AND src2 is zero,
 * CF if NOT src1 AND src2 is zero. OF SF AF PF are cleared. */
static void kortest(VecCtx *c)
{
    uint64_t m = width_mask(c), t = (k1(c) | k2(c)) & m;
    c->eflags = (t == 0 ? CC_Z : 0) | (t == m ? CC_C : 0);
}

static void ktest(VecCtx *c)
{
    uint64_t m = width_mask(c);
    c->eflags = ((k1(c) & k2(c) & m) == 0 ? CC_Z : 0) | ((~k1(c) & k2(c) & m) == 0 ? CC_C : 0);
}

#define F512 X_AVX512F
#define DQ512 X_AVX512DQ
#define BW512 X_AVX512BW
#define NV F_NOVEC

/* k1 = op(k2 (vvvv), k3 (rm)): VEX.L1. */
#define K3(nm, opc, p, wv, bytes, feat, f) \
    E(nm, ENC_VEX, 1, opc, p, wv, L256, bytes, feat, NV, NOREG, \
      O_KV, S_64, O_KH, S_64, O_KW, S_64, O_NONE, 0, f)
/* The four widths of one opcode: w (none, W0), b (66, W0), q (none, W1), d (66, W1). */
#define K3ALL(nm, opc, fw, fb, fdq, f) \
    K3(nm "w", opc, P_NONE, 0, 2, fw, f), K3(nm "b", opc, P_66, 0, 1, fb, f), \
    K3(nm "q", opc, P_NONE, 1, 8, fdq, f), K3(nm "d", opc, P_66, 1, 4, fdq, f)

/* k1 = op(k2 (rm)): VEX.L0, vvvv 1111b. */
#define K2(nm, opc, p, wv, bytes, feat, f) \
    E(nm, ENC_VEX, 1, opc, p, wv, L128, bytes, feat, NV, NOREG, \
      O_KV, S_64, O_KW, S_64, O_NONE, 0, O_NONE, 0, f)

/* flags = op(k1 (reg), k2 (rm)): VEX.L0. */
#define KT(nm, opc, p, wv, bytes, feat, f) \
    E(nm, ENC_VEX, 1, opc, p, wv, L128, bytes, feat, NV | F_FLAGS, NOREG, \
      O_NONE, 0, O_KV, S_64, O_KW, S_64, O_NONE, 0, f)
#define KTALL(nm, opc, fw, fb, fdq, f) \
    KT(nm "w", opc, P_NONE, 0, 2, fw, f), KT(nm "b", opc, P_66, 0, 1, fb, f), \
    KT(nm "q", opc, P_NONE, 1, 8, fdq, f), KT(nm "d", opc, P_66, 1, 4, fdq, f)

/* k1 = shift(k2 (rm), imm8): VEX.L0.66.0F3A. */
#define KSH(nm, opc, wv, bytes, feat, f) \
    E(nm, ENC_VEX, 3, opc, P_66, wv, L128, bytes, feat, NV | F_IMM, NOREG, \
      O_KV, S_64, O_KW, S_64, O_NONE, 0, O_NONE, 0, f)

/* kmov in its four directions. */
#define KMOV(nm, p, wv, bytes, msize, feat)                                              \
    K2(nm, 0x90, p, wv, bytes, feat, kmov),                                              \
    E(nm, ENC_VEX, 1, 0x90, p, wv, L128, bytes, feat, NV, NOREG,                         \
      O_KV, S_64, O_M, msize, O_NONE, 0, O_NONE, 0, kmov),                               \
    E(nm, ENC_VEX, 1, 0x91, p, wv, L128, bytes, feat, NV, NOREG,                         \
      O_M, msize, O_KV, S_64, O_NONE, 0, O_NONE, 0, kmov_store)
/* k <- r32/r64 (92) and r32/r64 <- k (93): ModRM.rm and ModRM.reg are the general
 * registers; register forms only. KMOVQ's r64 forms exist in 64-bit code only (F_W64: W1
 * matches no entry elsewhere). */
#define KMOVG(nm, p, wv, bytes, gsize, feat, fl)                                         \
    E(nm, ENC_VEX, 1, 0x92, p, wv, L128, bytes, feat, NV | (fl), NOREG,                  \
      O_KV, S_64, O_R, gsize, O_NONE, 0, O_NONE, 0, kmov),                               \
    E(nm, ENC_VEX, 1, 0x93, p, wv, L128, bytes, feat, NV | (fl), NOREG,                  \
      O_G, gsize, O_KW, S_64, O_NONE, 0, O_NONE, 0, kmov)

const VecOp vec_ops_mask[] = {
    KMOV("kmovw", P_NONE, 0, 2, S_16, F512),
    KMOV("kmovb", P_66, 0, 1, S_8, DQ512),
    KMOV("kmovq", P_NONE, 1, 8, S_64, BW512),
    KMOV("kmovd", P_66, 1, 4, S_32, BW512),
    KMOVG("kmovw", P_NONE, 0, 2, S_32, F512, 0),
    KMOVG("kmovb", P_66, 0, 1, S_32, DQ512, 0),
    KMOVG("kmovd", P_F2, 0, 4, S_32, BW512, 0),
    KMOVG("kmovq", P_F2, 1, 8, S_OSZ, BW512, F_W64),

    K3ALL("kand", 0x41, F512, DQ512, BW512, kand),
    K3ALL("kandn", 0x42, F512, DQ512, BW512, kandn),
    K3ALL("kor", 0x45, F512, DQ512, BW512, kor),
    K3ALL("kxnor", 0x46, F512, DQ512, BW512, kxnor),
    K3ALL("kxor", 0x47, F512, DQ512, BW512, kxor),
    K3ALL("kadd", 0x4a, DQ512, DQ512, BW512, kadd),
    K3("kunpckbw", 0x4b, P_66, 0, 2, F512, kunpck),
    K3("kunpckwd", 0x4b, P_NONE, 0, 4, BW512, kunpck),
    K3("kunpckdq", 0x4b, P_NONE, 1, 8, BW512, kunpck),

    K2("knotw", 0x44, P_NONE, 0, 2, F512, knot),
    K2("knotb", 0x44, P_66, 0, 1, DQ512, knot),
    K2("knotq", 0x44, P_NONE, 1, 8, BW512, knot),
    K2("knotd", 0x44, P_66, 1, 4, BW512, knot),

    KTALL("kortest", 0x98, F512, DQ512, BW512, kortest),
    KTALL("ktest", 0x99, DQ512, DQ512, BW512, ktest),

    KSH("kshiftrb", 0x30, 0, 1, DQ512, kshiftr),
    KSH("kshiftrw", 0x30, 1, 2, F512, kshiftr),
    KSH("kshiftrd", 0x31, 0, 4, BW512, kshiftr),
    KSH("kshiftrq", 0x31, 1, 8, BW512, kshiftr),
    KSH("kshiftlb", 0x32, 0, 1, DQ512, kshiftl),
    KSH("kshiftlw", 0x32, 1, 2, F512, kshiftl),
    KSH("kshiftld", 0x33, 0, 4, BW512, kshiftl),
    KSH("kshiftlq", 0x33, 1, 8, BW512, kshiftl),
    { .name = NULL },
};
