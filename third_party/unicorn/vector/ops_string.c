/*
 * The SSE4.2 string compares in their VEX forms: VPCMPESTRI, VPCMPESTRM, VPCMPISTRI,
 * VPCMPISTRM (VEX.128.66.0F3A.WIG 61, 60, 63, 62 /r ib), and the core they share with the
 * legacy PCMPxSTRx helpers (ops_sse.h), so both encodings compute the same thing.
 *
 * The operation, as SDM Vol. 2 4.1 ("Imm8 Control Byte Operation for PCMPESTRI /
 * PCMPESTRM / PCMPISTRI / PCMPISTRM") and the four instruction pages define it. Naming the
 * operands as the SDM does: A = xmm1 (ModRM.reg), B = xmm2/m128 (ModRM.rm).
 *   imm8[1:0]  source format: unsigned bytes, unsigned words, signed bytes, signed words
 *              (n = 16 or 8 elements).
 *   Lengths    explicit (PCMPESTRx): |EAX| for A and |EDX| for B (RAX, RDX with REX.W or
 *              VEX.W1 in 64-bit code), the absolute value saturated to n; implicit
 *              (PCMPISTRx): the index of the first null element, or n. Elements below the
 *              length are valid.
 *   imm8[3:2]  aggregation into IntRes1 (bit j, one per element of B), from the pairwise
 *              results BoolRes[j,i] (B[j] against A[i]); an invalid element forces BoolRes
 *              (Table 4-7): both invalid: false, false, true, true (equal any, ranges,
 *              equal each, equal ordered); A[i] invalid, B[j] valid: false, false, false,
 *              true; A[i] valid, B[j] invalid: false for all four.
 *                00 equal any      IntRes1[j] = OR over i of B[j] == A[i]
 *                01 ranges         IntRes1[j] = OR over even i of A[i] <= B[j] <= A[i+1]
 *                10 equal each     IntRes1[j] = B[j] == A[j]
 *                11 equal ordered  IntRes1[j] = AND over i = 0..n-1-j of B[j+i] == A[i]:
 *                                  A (the substring) is compared only as far as the end of
 *                                  the register, so a match that runs past element n-1 of B
 *                                  counts (a partial match at the end).
 *   imm8[5:4]  polarity: IntRes2 = IntRes1, its complement, IntRes1 again, or IntRes1 with
 *              the bits of valid B elements complemented.
 *   imm8[6]    index forms: ECX = the least (0) or most (1) significant set bit of IntRes2,
 *              n if none. Mask forms: XMM0 = IntRes2 zero-extended (0), or each bit
 *              expanded to an element of ones or zeros (1); the VEX forms zero bits 128 up.
 *   Flags      CF = IntRes2 != 0, ZF = B's length < n, SF = A's length < n,
 *              OF = IntRes2[0], AF = PF = 0.
 *   imm8[7]    reserved, ignored.
 */
#include "vector/ops.h"
#include "qemu/host-utils.h"

/* Element i of r in the format imm8[1:0] names. */
static int32_t element(const VecReg *r, unsigned i, unsigned imm)
{
    switch (imm & 3) {
    case 0: return U8(r, i);
    case 1: return U16(r, i);
    case 2: return (int8_t)U8(r, i);
    default: return (int16_t)U16(r, i);
    }
}

/* An explicit length: the absolute value of the register, saturated to n. */
static unsigned explicit_length(uint64_t reg, bool len64, unsigned n)
{
    int64_t v = len64 ? (int64_t)reg : (int64_t)(int32_t)reg;
    uint64_t magnitude = v < 0 ? -(uint64_t)v : (uint64_t)v;   /* INT64_MIN: 2^63 */
    return magnitude > n ? n : (unsigned)magnitude;
}

/* An implicit length: the index of the first null element, or n. */
static unsigned implicit_length(const VecReg *r, unsigned imm, unsigned n)
{
    unsigned len = 0;
    while (len < n && element(r, len, imm) != 0) {
        len++;
    }
    return len;
}

/* IntRes1: the aggregation imm8[3:2] of B's elements against A's. */
static uint32_t aggregate(const VecReg *a, const VecReg *b, unsigned la, unsigned lb,
                          unsigned imm, unsigned n)
{
    uint32_t res = 0;

    for (unsigned j = 0; j < n; j++) {
        bool bit = false;
        switch ((imm >> 2) & 3) {
        case 0:             /* equal any: invalid elements never match */
            for (unsigned i = 0; j < lb && i < la && !bit; i++) {
                bit = element(b, j, imm) == element(a, i, imm);
            }
            break;
        case 1:             /* ranges: a pair with an invalid bound never matches */
            for (unsigned i = 0; j < lb && i + 1 < la && !bit; i += 2) {
                int32_t v = element(b, j, imm);
                bit = element(a, i, imm) <= v && v <= element(a, i + 1, imm);
            }
            break;
        case 2:             /* equal each: two invalid elements are equal */
            if (j < la && j < lb) {
                bit = element(b, j, imm) == element(a, j, imm);
            } else {
                bit = j >= la && j >= lb;
            }
            break;
        case 3:             /* equal ordered: A invalid matches anything; A valid, B not,
                               fails; elements past the register's end are not compared */
            bit = true;
            for (unsigned i = 0; i + j < n && i < la && bit; i++) {
                bit = i + j < lb && element(b, i + j, imm) == element(a, i, imm);
            }
            break;
        }
        res |= (uint32_t)bit << j;
    }
    return res;
}

uint32_t vec_pcmpstr(CPUX86State *env, const VecReg *a, const VecReg *b, unsigned opcode,
                     unsigned imm, bool len64, bool vex)
{
    unsigned n = (imm & 1) ? 8 : 16;
    uint32_t all = (1u << n) - 1, res;
    unsigned la, lb;
    bool implicit = opcode & 2, index = opcode & 1;

    if (implicit) {
        la = implicit_length(a, imm, n);
        lb = implicit_length(b, imm, n);
    } else {
        la = explicit_length(env->regs[R_EAX], len64, n);
        lb = explicit_length(env->regs[R_EDX], len64, n);
    }

    res = aggregate(a, b, la, lb, imm, n);
    switch ((imm >> 4) & 3) {
    case 1:                 /* negative polarity */
        res ^= all;
        break;
    case 3:                 /* masked negative: only B's valid elements */
        res ^= (1u << lb) - 1;
        break;
    }

    if (index) {
        unsigned ecx = n;
        if (res) {
            ecx = (imm & 0x40) ? 31 - clz32(res) : ctz32(res);
        }
        env->regs[R_ECX] = ecx;     /* zero-extended to RCX in 64-bit code */
    } else {
        VecReg mask;
        memset(&mask, 0, sizeof(mask));
        if (imm & 0x40) {
            for (unsigned i = 0; i < n; i++) {
                if (n == 16) {
                    U8(&mask, i) = (res >> i) & 1 ? 0xff : 0;
                } else {
                    U16(&mask, i) = (res >> i) & 1 ? 0xffff : 0;
                }
            }
        } else {
            U64(&mask, 0) = res;
        }
        if (vex) {          /* VEX.128: bits 128 and up of ZMM0 zeroed */
            env->xmm_regs[0] = mask;
        } else {            /* legacy SSE: bits 128 and up kept */
            U64(&env->xmm_regs[0], 0) = U64(&mask, 0);
            U64(&env->xmm_regs[0], 1) = U64(&mask, 1);
        }
    }

    return (res ? CC_C : 0) | (lb < n ? CC_Z : 0) | (la < n ? CC_S : 0)
           | ((res & 1) ? CC_O : 0);
}

/* The VEX forms: the result goes to ECX or XMM0, which no operand names (dst O_NONE). */
static void pcmpstr(VecCtx *c)
{
    c->eflags = vec_pcmpstr(c->env, &c->s1, &c->s2, c->op->opcode, c->in.imm,
                            c->in.w && c->in.code64, true);
}

/* VEX.L must be 0 (L128 only: VEX.256 has no entry, so #UD); vvvv must be 1111b (no vvvv
 * operand); W is ignored but for the explicit lengths' size. No memory alignment needed. */
#define STR(nm, opc) \
    E(nm, ENC_VEX, 3, opc, P_66, WIG, L128, 16, X_AVX, F_IMM | F_FLAGS, NOREG, \
      O_NONE, 0, O_V, S_128, O_W, S_128, O_NONE, 0, pcmpstr)

const VecOp vec_ops_string[] = {
    STR("vpcmpestrm", 0x60),
    STR("vpcmpestri", 0x61),
    STR("vpcmpistrm", 0x62),
    STR("vpcmpistri", 0x63),
    { .name = NULL },
};
