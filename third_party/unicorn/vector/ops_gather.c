/*
 * Gathers and scatters (VSIB addressing).
 *
 *   VEX (AVX2) gathers    vgatherdps/dpd/qps/qpd, vpgatherdd/dq/qd/qq: dest = ModRM.reg,
 *                         mask = VEX.vvvv (an element is loaded when its mask element's top
 *                         bit is set), index = the VSIB index register.
 *   EVEX gathers          the same mnemonics with an opmask k1-k7 (aaa = 0 is #UD).
 *   EVEX scatters         vscatterdps/dpd/qps/qpd, vpscatterdd/dq/qd/qq: source = ModRM.reg.
 *
 * Elements are done in order from element 0, and each one's completion is written to the
 * architectural registers before the next element's access: the destination element, and
 * its mask element (VEX: all of it) or opmask bit cleared. A fault on element i therefore
 * leaves elements 0..i-1 done and their mask bits clear and nothing else changed (but for
 * the VEX mask's elements, made all ones or all zeros by their top bit first, as the SDM's
 * operation does): the SDM's partial completion, from which the instruction can restart.
 * Only after the last element are the parts beyond the elements cleared: the destination
 * above the gathered elements (bits MAXVL-1:VL, and the upper half of the destination when
 * the index elements are wider than the data), the whole VEX mask register, and the whole
 * opmask.
 * A scatter stores element by element, so with overlapping addresses the later element's
 * store is the one that remains.
 *
 * The number of elements is the vector length over the wider of the data and index
 * element: vgatherdpd ymm reads four dword indices from an xmm, vgatherqps xmm reads four
 * qword indices from a ymm. The data element size is the entry's esize (also disp8*N);
 * the index size is the operation's.
 *
 * The destination (and scatter source) is ModRM.reg, read and written here directly: the
 * entries name only their VSIB operand (and VEX's mask in vvvv) for the generic code.
 */
#include "vector/ops.h"

static void undefined(VecCtx *c)
{
    raise_exception_ra(c->env, EXCP06_ILLOP, c->ra);
}

static int64_t index_of(const VecReg *index, unsigned isize, unsigned i)
{
    return isize == 4 ? (int64_t)(int32_t)U32(index, i) : (int64_t)U64(index, i);
}

static uint64_t element(const VecReg *r, unsigned esize, unsigned i)
{
    return esize == 4 ? U32(r, i) : U64(r, i);
}

static void set_element(VecReg *r, unsigned esize, unsigned i, uint64_t v)
{
    if (esize == 4) {
        U32(r, i) = v;
    } else {
        U64(r, i) = v;
    }
}

static void gather(VecCtx *c, unsigned isize)
{
    CPUX86State *env = c->env;
    const VecInsn *in = &c->in;
    unsigned esize = c->op->esize;
    unsigned n = c->vlbytes / MAX(esize, isize);
    VecReg index = env->xmm_regs[in->vsib_index];
    VecReg *dest = &env->xmm_regs[in->reg];

    /* #UD: VEX, any two of destination, index and mask the same; EVEX, the destination the
     * same as the index (no opmask, k0, is the translator's #UD: F_K0ALL). */
    if (in->evex ? in->reg == in->vsib_index
                 : (in->reg == in->vsib_index || in->reg == in->vvvv
                    || in->vvvv == in->vsib_index)) {
        undefined(c);
    }

    /* VEX: first, each mask element becomes all ones or all zeros by its top bit (the SDM's
     * operation does this before the first element, so a fault shows it). */
    if (!in->evex) {
        VecReg *mask = &env->xmm_regs[in->vvvv];
        for (unsigned i = 0; i < n; i++) {
            bool top = element(mask, esize, i) >> (esize * 8 - 1);
            set_element(mask, esize, i, top ? ~0ull : 0);
        }
    }

    for (unsigned i = 0; i < n; i++) {
        bool live;
        if (in->evex) {
            live = (env->opmask_regs[in->aaa] >> i) & 1;
        } else {
            live = element(&env->xmm_regs[in->vvvv], esize, i) >> (esize * 8 - 1);
        }
        if (live) {
            target_ulong addr = vec_vsib_address(c, index_of(&index, isize, i));
            if (esize == 4) {
                uint32_t v;
                vec_load(c, addr, &v, 4);
                U32(dest, i) = v;
            } else {
                uint64_t v;
                vec_load(c, addr, &v, 8);
                U64(dest, i) = v;
            }
        }
        /* The element is complete: its mask says so. */
        if (in->evex) {
            env->opmask_regs[in->aaa] &= ~(1ull << i);
        } else {
            set_element(&env->xmm_regs[in->vvvv], esize, i, 0);
        }
    }
    memset((uint8_t *)dest + n * esize, 0, sizeof(*dest) - n * esize);
    if (in->evex) {
        env->opmask_regs[in->aaa] = 0;
    } else {
        memset(&env->xmm_regs[in->vvvv], 0, sizeof(VecReg));
    }
}

static void scatter(VecCtx *c, unsigned isize)
{
    CPUX86State *env = c->env;
    const VecInsn *in = &c->in;
    unsigned esize = c->op->esize;
    unsigned n = c->vlbytes / MAX(esize, isize);
    VecReg index = env->xmm_regs[in->vsib_index];
    const VecReg *src = &c->s1;
    uint64_t *k = &env->opmask_regs[in->aaa];

    for (unsigned i = 0; i < n; i++) {
        if ((*k >> i) & 1) {
            target_ulong addr = vec_vsib_address(c, index_of(&index, isize, i));
            if (esize == 4) {
                uint32_t v = U32(src, i);
                vec_store(c, addr, &v, 4);
            } else {
                uint64_t v = U64(src, i);
                vec_store(c, addr, &v, 8);
            }
            *k &= ~(1ull << i);
        }
    }
    *k = 0;
}

static void gather_d(VecCtx *c) { gather(c, 4); }
static void gather_q(VecCtx *c) { gather(c, 8); }
static void scatter_d(VecCtx *c) { scatter(c, 4); }
static void scatter_q(VecCtx *c) { scatter(c, 8); }

#define AVX2 X_AVX2
#define F512 X_AVX512F
/* EVEX: an opmask is required (F_K0ALL: aaa = 0 is the translator's #UD), zeroing is #UD. */
#define KM (F_MASK | F_NOZERO | F_K0ALL)

/* VEX gather: the VSIB operand and the mask (vvvv). */
#define VG(nm, opc, wv, esz, f) \
    E(nm, ENC_VEX, 2, opc, P_66, wv, LVEX, esz, AVX2, 0, NOREG, \
      O_NONE, 0, O_X, S_ELEM, O_H, S_VL, O_NONE, 0, f)
/* EVEX gather: the VSIB operand; the opmask is aaa. */
#define EG(nm, opc, wv, esz, f) \
    E(nm, ENC_EVEX, 2, opc, P_66, wv, LALL, esz, F512, KM, NOREG, \
      O_NONE, 0, O_X, S_ELEM, O_NONE, 0, O_NONE, 0, f)
/* EVEX scatter: the source (ModRM.reg) and the VSIB operand. */
#define ES(nm, opc, wv, esz, f) \
    E(nm, ENC_EVEX, 2, opc, P_66, wv, LALL, esz, F512, KM, NOREG, \
      O_NONE, 0, O_V, S_VL, O_X, S_ELEM, O_NONE, 0, f)

const VecOp vec_ops_gather[] = {
    VG("vpgatherdd", 0x90, 0, 4, gather_d), VG("vpgatherdq", 0x90, 1, 8, gather_d),
    VG("vpgatherqd", 0x91, 0, 4, gather_q), VG("vpgatherqq", 0x91, 1, 8, gather_q),
    VG("vgatherdps", 0x92, 0, 4, gather_d), VG("vgatherdpd", 0x92, 1, 8, gather_d),
    VG("vgatherqps", 0x93, 0, 4, gather_q), VG("vgatherqpd", 0x93, 1, 8, gather_q),

    EG("vpgatherdd", 0x90, 0, 4, gather_d), EG("vpgatherdq", 0x90, 1, 8, gather_d),
    EG("vpgatherqd", 0x91, 0, 4, gather_q), EG("vpgatherqq", 0x91, 1, 8, gather_q),
    EG("vgatherdps", 0x92, 0, 4, gather_d), EG("vgatherdpd", 0x92, 1, 8, gather_d),
    EG("vgatherqps", 0x93, 0, 4, gather_q), EG("vgatherqpd", 0x93, 1, 8, gather_q),

    ES("vpscatterdd", 0xa0, 0, 4, scatter_d), ES("vpscatterdq", 0xa0, 1, 8, scatter_d),
    ES("vpscatterqd", 0xa1, 0, 4, scatter_q), ES("vpscatterqq", 0xa1, 1, 8, scatter_q),
    ES("vscatterdps", 0xa2, 0, 4, scatter_d), ES("vscatterdpd", 0xa2, 1, 8, scatter_d),
    ES("vscatterqps", 0xa3, 0, 4, scatter_q), ES("vscatterqpd", 0xa3, 1, 8, scatter_q),
    { .name = NULL },
};
