/*
 * helper_vector: runs one decoded VEX/EVEX instruction (see vector.h for the whole path).
 *
 * Order of events, as the SDM has them for AVX and AVX-512:
 *   1. #UD if CR4.OSXSAVE is clear or XCR0 does not enable the state the instruction uses;
 *      then #NM if CR0.TS is set.
 *   2. Sources are read. A memory source is read whole, except under a mask for entries
 *      with F_MEMMASK (an element whose mask bit is clear is not read and cannot fault),
 *      or as one element repeated when EVEX.b asks for a broadcast. F_ALIGN operands not
 *      aligned to their size are #GP(0).
 *   3. The entry's function computes the result (all elements; masked-off ones are not
 *      computed for floating point, so they raise no flags).
 *   4. MXCSR: flags of the live elements are ORed in; an unmasked one is #XM (#UD when
 *      CR4.OSXMMEXCPT is clear) and nothing is written. EVEX.b on registers with F_ER/F_SAE
 *      suppresses them all.
 *   5. Write-back: merge or zero masking per element; a register destination is zeroed
 *      above the vector length (VEX.128 zeroes bits 128-511, as EVEX does above its VL);
 *      a store first checks every page it writes, so a fault leaves memory unchanged.
 */
#include "vector/vector.h"
#include "exec/exec-all.h"
#include "exec/cpu_ldst.h"
#include "exec/helper-proto.h"

#define XCR0_AVX     (XSTATE_SSE_MASK | XSTATE_YMM_MASK)
#define XCR0_AVX512  (XCR0_AVX | XSTATE_OPMASK_MASK | XSTATE_ZMM_Hi256_MASK \
                      | XSTATE_Hi16_ZMM_MASK)

#define MXCSR_IE 0x01
#define MXCSR_DE 0x02
#define MXCSR_ZE 0x04
#define MXCSR_OE 0x08
#define MXCSR_UE 0x10
#define MXCSR_PE 0x20

static void check_state(CPUX86State *env, const VecOp *op, const VecInsn *in, uintptr_t ra)
{
    uint64_t need = (in->evex || op->feature >= X_AVX512F) ? XCR0_AVX512 : XCR0_AVX;

    if (!(env->cr[4] & CR4_OSXSAVE_MASK) || (env->xcr0 & need) != need) {
        raise_exception_ra(env, EXCP06_ILLOP, ra);
    }
    if (env->cr[0] & CR0_TS_MASK) {
        raise_exception_ra(env, EXCP07_PREX, ra);
    }
}

/* ---- memory ------------------------------------------------------------------------- */

static void load_bytes(VecCtx *c, target_ulong addr, uint8_t *out, unsigned n)
{
    CPUX86State *env = c->env;
    unsigned i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = cpu_ldq_data_ra(env, addr + i, c->ra);
        memcpy(out + i, &v, 8);          /* the VecReg byte order is the host's: little */
    }
    for (; i + 4 <= n; i += 4) {
        uint32_t v = cpu_ldl_data_ra(env, addr + i, c->ra);
        memcpy(out + i, &v, 4);
    }
    for (; i + 2 <= n; i += 2) {
        uint16_t v = cpu_lduw_data_ra(env, addr + i, c->ra);
        memcpy(out + i, &v, 2);
    }
    for (; i < n; i++) {
        out[i] = cpu_ldub_data_ra(env, addr + i, c->ra);
    }
}

static void store_bytes(VecCtx *c, target_ulong addr, const uint8_t *in, unsigned n)
{
    CPUX86State *env = c->env;
    unsigned i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, in + i, 8);
        cpu_stq_data_ra(env, addr + i, v, c->ra);
    }
    for (; i + 4 <= n; i += 4) {
        uint32_t v;
        memcpy(&v, in + i, 4);
        cpu_stl_data_ra(env, addr + i, v, c->ra);
    }
    for (; i < n; i++) {
        cpu_stb_data_ra(env, addr + i, in[i], c->ra);
    }
}

/* Fault now, before anything is written, if any byte of [addr, addr+n) is not writable. */
static void probe_store(VecCtx *c, target_ulong addr, unsigned n)
{
    int mmu_idx = cpu_mmu_index(c->env, false);
    while (n) {
        unsigned in_page = -(addr | TARGET_PAGE_MASK);
        unsigned len = MIN(n, in_page);
        probe_write(c->env, addr, len, mmu_idx, c->ra);
        addr += len;
        n -= len;
    }
}

static void check_align(VecCtx *c, target_ulong addr, unsigned n)
{
    if ((c->op->flags & F_ALIGN) && (addr & (n - 1))) {
        raise_exception_err_ra(c->env, EXCP0D_GPF, 0, c->ra);
    }
}

/* A memory source of `n` bytes into `out` (zeroed above n). */
static void load_source(VecCtx *c, unsigned n, VecReg *out)
{
    const VecOp *op = c->op;
    uint8_t *bytes = (uint8_t *)out;

    memset(out, 0, sizeof(*out));
    if (c->in.b) {                        /* embedded broadcast: one element, repeated */
        unsigned elem = op->bsize ? op->bsize : n / c->nelem;
        if ((op->flags & F_MEMMASK) && c->in.aaa && !c->mask) {
            return;                       /* every element masked off: nothing is read */
        }
        load_bytes(c, c->addr, bytes, elem);
        for (unsigned i = elem; i < n; i += elem) {
            memcpy(bytes + i, bytes, elem);
        }
        return;
    }
    check_align(c, c->addr, n);
    if ((op->flags & F_MEMMASK) && c->in.aaa && (op->flags & F_SCALAR)) {
        if (vec_live(c, 0)) {               /* a scalar: element 0 or nothing */
            load_bytes(c, c->addr, bytes, n);
        }
        return;
    }
    if ((op->flags & F_MEMMASK) && c->in.aaa) {
        unsigned elem = n / c->nelem;
        for (unsigned i = 0; i < c->nelem; i++) {
            if (vec_live(c, i)) {
                load_bytes(c, c->addr + i * elem, bytes + i * elem, elem);
            }
        }
        return;
    }
    load_bytes(c, c->addr, bytes, n);
}

/* ---- operands ----------------------------------------------------------------------- */

static unsigned gpr_bytes(VecCtx *c, unsigned size)
{
    return vec_size_bytes(c->op, &c->in, size);
}

static void fetch(VecCtx *c, unsigned kind, unsigned size, VecReg *out)
{
    CPUX86State *env = c->env;
    const VecInsn *in = &c->in;
    unsigned n = vec_size_bytes(c->op, in, size);

    switch (kind) {
    case O_NONE:
        return;
    case O_V:
        *out = env->xmm_regs[in->reg];
        return;
    case O_H:
        *out = env->xmm_regs[in->vvvv];
        return;
    case O_L:
        *out = env->xmm_regs[(in->imm >> 4) & (in->code64 ? 15 : 7)];
        return;
    case O_U:
        *out = env->xmm_regs[in->rm];
        return;
    case O_W: case O_M:
        if (in->mem && (c->op->flags & F_OWNMEM)) {
            memset(out, 0, sizeof(*out));   /* the operation reads it (c->addr) */
        } else if (in->mem) {
            load_source(c, n, out);
        } else {
            *out = env->xmm_regs[in->rm];
        }
        return;
    case O_G: case O_B: case O_R: case O_E: {
        unsigned r = kind == O_G ? in->reg : kind == O_B ? in->vvvv : in->rm;
        memset(out, 0, sizeof(*out));
        if (kind == O_E && in->mem) {
            load_source(c, n, out);
            return;
        }
        U64(out, 0) = env->regs[r & 15] & (n == 8 ? ~0ull : 0xffffffffull);
        return;
    }
    case O_KV: case O_KH: case O_KW: {
        unsigned r = kind == O_KV ? in->reg : kind == O_KH ? in->vvvv : in->rm;
        memset(out, 0, sizeof(*out));
        U64(out, 0) = env->opmask_regs[r & 7];
        return;
    }
    case O_X:
        return;                             /* gathers and scatters address it themselves */
    }
    g_assert_not_reached();
}

/* The address of a VSIB element: base + displacement (from the translator) + the index
 * element scaled, wrapped to 32 bits under a 32-bit address size, plus the segment base
 * (in 64-bit code only FS and GS have one). */
target_ulong vec_vsib_address(VecCtx *c, int64_t index)
{
    CPUX86State *env = c->env;
    target_ulong a = c->addr + ((target_ulong)index << c->in.vsib_scale);
    unsigned seg = c->in.seg;

    if (c->in.aflag32) {
        a = (uint32_t)a;
    }
    if (!c->in.code64 || seg == R_FS || seg == R_GS) {
        a += env->segs[seg].base;
    }
    return c->in.code64 ? a : (uint32_t)a;
}

/* Loads and stores for operations that address memory themselves (gathers, scatters). */
void vec_load(VecCtx *c, target_ulong addr, void *out, unsigned n)
{
    load_bytes(c, addr, out, n);
}

void vec_store(VecCtx *c, target_ulong addr, const void *in, unsigned n)
{
    probe_store(c, addr, n);
    store_bytes(c, addr, in, n);
}

void vec_probe_store(VecCtx *c, target_ulong addr, unsigned n)
{
    probe_store(c, addr, n);
}

/* ---- write-back --------------------------------------------------------------------- */

static void merge(VecCtx *c, const VecReg *old, VecReg *res)
{
    unsigned esize = c->op->esize;
    unsigned last = (c->op->flags & F_SCALAR) ? 1 : c->nelem;
    uint8_t *r = (uint8_t *)res;
    const uint8_t *o = (const uint8_t *)old;

    if (!c->in.evex || !c->in.aaa) {
        return;
    }
    for (unsigned i = 0; i < last; i++) {
        if (!vec_live(c, i)) {
            if (c->in.z) {
                memset(r + i * esize, 0, esize);
            } else {
                memcpy(r + i * esize, o + i * esize, esize);
            }
        }
    }
}

/* Straight into the register, in sizes the compiler makes whole vector moves of (building
 * the value on the stack with a byte-sized clear and copying it cost a store-forwarding
 * stall, most of a simple instruction's time). */
static void write_vector(VecCtx *c, unsigned r, const VecReg *old)
{
    uint8_t *dst = (uint8_t *)&c->env->xmm_regs[r];

    merge(c, old, &c->d);
    switch (c->vlbytes) {
    case 16:
        memcpy(dst, &c->d, 16);
        memset(dst + 16, 0, 48);
        break;
    case 32:
        memcpy(dst, &c->d, 32);
        memset(dst + 32, 0, 32);
        break;
    default:
        memcpy(dst, &c->d, 64);
    }
}

/* A vector store's faults, before anything is written: alignment, then the pages of the
 * bytes it writes (masked: of the live elements only; the others cannot fault). */
static void probe_vector(VecCtx *c, unsigned n)
{
    unsigned esize = c->op->esize;

    check_align(c, c->addr, n);
    if (!(c->in.evex && c->in.aaa)) {
        probe_store(c, c->addr, n);
        return;
    }
    for (unsigned i = 0; i < n / esize; i++) {
        if (vec_live(c, i)) {
            probe_store(c, c->addr + i * esize, esize);
        }
    }
}

static void store_vector(VecCtx *c, unsigned n)
{
    const uint8_t *bytes = (const uint8_t *)&c->d;
    unsigned esize = c->op->esize;

    probe_vector(c, n);
    if (!(c->in.evex && c->in.aaa)) {
        store_bytes(c, c->addr, bytes, n);
        return;
    }
    for (unsigned i = 0; i < n / esize; i++) {
        if (vec_live(c, i)) {
            store_bytes(c, c->addr + i * esize, bytes + i * esize, esize);
        }
    }
}

static void write_back(VecCtx *c, const VecReg *old)
{
    CPUX86State *env = c->env;
    const VecOp *op = c->op;
    const VecInsn *in = &c->in;

    switch (op->dst) {
    case O_NONE:
        break;
    case O_V:
        write_vector(c, in->reg, old);
        break;
    case O_H:
        write_vector(c, in->vvvv, old);
        break;
    case O_U:
        write_vector(c, in->rm, old);
        break;
    case O_W: case O_M:
        if (in->mem) {
            if (!(op->flags & F_OWNMEM)) {  /* else the operation has written it */
                store_vector(c, vec_size_bytes(op, in, op->dsize));
            }
        } else {
            write_vector(c, in->rm, old);
        }
        break;
    case O_G: case O_R: case O_E: {
        unsigned r = op->dst == O_G ? in->reg : in->rm;
        unsigned n = gpr_bytes(c, op->dsize);
        if (op->dst == O_E && in->mem) {
            probe_store(c, c->addr, n);
            store_bytes(c, c->addr, (const uint8_t *)&c->g, n);
        } else {
            env->regs[r & 15] = n == 8 ? c->g : (uint32_t)c->g;
        }
        break;
    }
    case O_KV: case O_KH: case O_KW: {
        unsigned r = op->dst == O_KV ? in->reg : op->dst == O_KH ? in->vvvv : in->rm;
        /* An element result into an opmask: masked-off and absent elements are 0. */
        env->opmask_regs[r & 7] = (op->flags & F_KDEST) ? c->g & c->mask : c->g;
        break;
    }
    default:
        g_assert_not_reached();
    }
    if (op->flags & F_FLAGS) {
        CC_SRC = c->eflags & (CC_O | CC_S | CC_Z | CC_A | CC_P | CC_C);
    }
}

/* ---- floating point ----------------------------------------------------------------- */

static const int rounding[4] = {
    float_round_nearest_even, float_round_down, float_round_up, float_round_to_zero,
};

static bool suppress_all(const VecCtx *c)
{
    return c->in.evex && c->in.b && !c->in.mem && (c->op->flags & (F_ER | F_SAE));
}

/* An exception is handled by its masked response: masked in MXCSR, or all suppressed. */
static bool fp_masked(const VecCtx *c, uint32_t mxcsr_flag)
{
    return suppress_all(c) || (c->env->mxcsr & (mxcsr_flag << 7));
}

static void fp_setup(VecCtx *c)
{
    uint32_t mxcsr = c->env->mxcsr;
    unsigned rc = (mxcsr >> 13) & 3;

    memset(&c->fp, 0, sizeof(c->fp));
    if (suppress_all(c) && (c->op->flags & F_ER)) {
        rc = c->in.rc;
    }
    set_float_rounding_mode(rounding[rc], &c->fp);
    set_float_detect_tininess(float_tininess_after_rounding, &c->fp);   /* SDM 4.9.1.5 */
    set_flush_inputs_to_zero((mxcsr & (1 << 6)) != 0, &c->fp);     /* DAZ */
    /* FZ is the masked response to underflow only (SDM Vol. 1 10.2.3.3). */
    set_flush_to_zero((mxcsr & (1 << 15)) && fp_masked(c, MXCSR_UE), &c->fp);
}

/* The MXCSR flags the instruction has raised so far. */
static uint32_t fp_flags(VecCtx *c)
{
    int f = get_float_exception_flags(&c->fp);
    uint32_t flags = 0;

    flags |= (f & float_flag_invalid) ? MXCSR_IE : 0;
    flags |= (f & float_flag_divbyzero) ? MXCSR_ZE : 0;
    flags |= (f & float_flag_overflow) ? MXCSR_OE : 0;
    flags |= (f & float_flag_underflow) ? MXCSR_UE : 0;
    flags |= (f & float_flag_inexact) ? MXCSR_PE : 0;
    /* A tiny result flushed to zero (MXCSR.FZ) is an underflow and inexact. */
    flags |= (f & float_flag_output_denormal) ? MXCSR_UE | MXCSR_PE : 0;
    flags |= c->denormal ? MXCSR_DE : 0;
    return flags;
}

/* MXCSR's flags from this instruction; true if one is unmasked (#XM). */
static bool fp_finish(VecCtx *c)
{
    CPUX86State *env = c->env;
    uint32_t flags, unmasked;

    if (suppress_all(c)) {
        return false;
    }
    flags = fp_flags(c);
    unmasked = flags & ~(env->mxcsr >> 7) & 0x3f;
    /* An unmasked pre-computation exception (invalid, denormal, divide-by-zero) is taken
     * before the results are computed: no overflow, underflow or precision flag is set
     * (SDM Vol. 1 11.5.2). */
    if (unmasked & (MXCSR_IE | MXCSR_DE | MXCSR_ZE)) {
        flags &= MXCSR_IE | MXCSR_DE | MXCSR_ZE;
    }
    env->mxcsr |= flags;
    return unmasked != 0;
}

/*
 * For operations made of dependent steps (VDPPS/VDPPD: "exceptions are determined separately
 * for each add and multiply operation, in the order of their execution"): ends a step. If
 * its flags make #XM, they are left for the end of the instruction, which raises it, and
 * true is returned: the operation stops there. Otherwise they go to MXCSR now.
 */
bool vec_fp_step(VecCtx *c)
{
    uint32_t flags;

    if (suppress_all(c)) {
        return false;
    }
    flags = fp_flags(c);
    if (flags & ~(c->env->mxcsr >> 7) & 0x3f) {
        return true;
    }
    c->env->mxcsr |= flags;
    set_float_exception_flags(0, &c->fp);
    c->denormal = 0;
    return false;
}

/*
 * Exact MXCSR semantics for one element's result, for operations that compute element by
 * element: compute the element with the status vec_fp_element returns (flags clear, no
 * flush-to-zero), then pass its result to vec_f32_element/vec_f64_element, which add the
 * element's flags to c->fp and return what the element gets:
 *   - a tiny result (after rounding) with underflow masked and MXCSR.FZ set is a zero of the
 *     result's sign, with UE and PE (SDM Vol. 1 10.2.3.3);
 *   - with underflow unmasked, any tiny result, exact or not, is UE (SDM Vol. 1 4.9.1.5);
 *   - an unmasked overflow or underflow delivers no result, and reports PE only when the
 *     result rounded to the format's precision with an unbounded exponent is inexact: the
 *     caller says whether it is (`inexact`; only looked at in those two cases).
 * Without this path (softfloat's own flags and flush-to-zero), an exact tiny result with
 * underflow unmasked raises nothing, and an unmasked overflow or underflow always has PE.
 */
float_status vec_fp_element(VecCtx *c)
{
    float_status st = c->fp;
    set_float_exception_flags(0, &st);
    set_flush_to_zero(false, &st);
    return st;
}

static int fp_element_flags(VecCtx *c, int f, bool tiny, bool inexact, bool fz)
{
    if (tiny && !fp_masked(c, MXCSR_UE)) {
        f = (f & ~(float_flag_underflow | float_flag_inexact)) | float_flag_underflow
            | (inexact ? float_flag_inexact : 0);
    } else if ((f & float_flag_overflow) && !fp_masked(c, MXCSR_OE)) {
        f = (f & ~float_flag_inexact) | (inexact ? float_flag_inexact : 0);
    } else if (tiny && fz) {
        f |= float_flag_underflow | float_flag_inexact;
    }
    return f;
}

float32 vec_f32_element(VecCtx *c, float_status *st, float32 r, bool inexact)
{
    int f = get_float_exception_flags(st);
    bool tiny = (f & float_flag_underflow) || float32_is_denormal(r);

    f = fp_element_flags(c, f, tiny, inexact, c->env->mxcsr & (1 << 15));
    if (tiny && fp_masked(c, MXCSR_UE) && (c->env->mxcsr & (1 << 15))) {
        r = float32_set_sign(float32_zero, float32_is_neg(r));
    }
    float_raise(f, &c->fp);
    return r;
}

float64 vec_f64_element(VecCtx *c, float_status *st, float64 r, bool inexact)
{
    int f = get_float_exception_flags(st);
    bool tiny = (f & float_flag_underflow) || float64_is_denormal(r);

    f = fp_element_flags(c, f, tiny, inexact, c->env->mxcsr & (1 << 15));
    if (tiny && fp_masked(c, MXCSR_UE) && (c->env->mxcsr & (1 << 15))) {
        r = float64_set_sign(float64_zero, float64_is_neg(r));
    }
    float_raise(f, &c->fp);
    return r;
}

/*
 * The same for an element of a format without its own function, where MXCSR.FZ does not
 * apply (VCVTPS2PH's half precision): the caller says whether the rounded result is tiny.
 * Adds the element's flags to c->fp; the result is the caller's.
 */
void vec_fp_element_flags(VecCtx *c, float_status *st, bool tiny, bool inexact)
{
    float_raise(fp_element_flags(c, get_float_exception_flags(st), tiny, inexact, false),
                &c->fp);
}

static bool daz(const VecCtx *c)
{
    return (c->env->mxcsr & (1 << 6)) != 0;
}

void vec_f32_check_denormal(VecCtx *c, float32 a)
{
    if (!daz(c) && float32_is_zero_or_denormal(a) && !float32_is_zero(a)) {
        c->denormal = 1;
    }
}

void vec_f64_check_denormal(VecCtx *c, float64 a)
{
    if (!daz(c) && float64_is_zero_or_denormal(a) && !float64_is_zero(a)) {
        c->denormal = 1;
    }
}

/* x86's NaN rule for two sources: the first NaN source, quieted; an SNaN is invalid. */
float32 vec_f32_nan(VecCtx *c, float32 a, float32 b)
{
    if (float32_is_signaling_nan(a, &c->fp) || float32_is_signaling_nan(b, &c->fp)) {
        float_raise(float_flag_invalid, &c->fp);
    }
    return float32_is_any_nan(a) ? float32_silence_nan(a, &c->fp)
                                 : float32_silence_nan(b, &c->fp);
}

float64 vec_f64_nan(VecCtx *c, float64 a, float64 b)
{
    if (float64_is_signaling_nan(a, &c->fp) || float64_is_signaling_nan(b, &c->fp)) {
        float_raise(float_flag_invalid, &c->fp);
    }
    return float64_is_any_nan(a) ? float64_silence_nan(a, &c->fp)
                                 : float64_silence_nan(b, &c->fp);
}

/* ---- the helper --------------------------------------------------------------------- */

void helper_vector(CPUX86State *env, void *opp, uint64_t bits, target_ulong addr)
{
    const VecOp *op = opp;
    VecCtx c;
    VecReg old_copy;
    const VecReg *old = &old_copy;
    unsigned dst_reg = 0;

    c.env = env;
    c.op = op;
    c.ra = GETPC();
    c.addr = addr;
    c.g = 0;
    c.eflags = 0;
    c.denormal = 0;
    vec_unpack(bits, &c.in);
    check_state(env, op, &c.in, c.ra);

    c.vlbytes = 16u << c.in.vl;
    c.nelem = vec_nelem(op, &c.in);
    c.mask = c.nelem >= 64 ? ~0ull : (1ull << c.nelem) - 1;
    if (c.in.evex && c.in.aaa) {
        c.mask &= env->opmask_regs[c.in.aaa];
    }

    /* The old destination: merged into under a mask, and read by some operations. */
    switch (op->dst) {
    case O_V: dst_reg = c.in.reg; break;
    case O_H: dst_reg = c.in.vvvv; break;
    case O_U: case O_W: dst_reg = c.in.rm; break;
    }
    if (op->dst == O_V || op->dst == O_H || op->dst == O_U
        || (op->dst == O_W && !c.in.mem)) {
        c.d = env->xmm_regs[dst_reg];
        if (c.in.evex && c.in.aaa) {
            old_copy = c.d;                 /* merge masking takes masked-off elements here */
        }
    } else {
        memset(&c.d, 0, sizeof(c.d));
        old_copy = c.d;
    }

    fetch(&c, op->src1, op->s1size, &c.s1);
    fetch(&c, op->src2, op->s2size, &c.s2);
    fetch(&c, op->src3, op->s3size, &c.s3);

    if (op->flags & F_FP) {
        fp_setup(&c);
    }
    op->fn(&c);
    /* A store's faults come before its SIMD exceptions, and leave MXCSR as it was. */
    if ((op->flags & F_FP) && (op->dst == O_W || op->dst == O_M) && c.in.mem
        && !(op->flags & F_OWNMEM)) {
        probe_vector(&c, vec_size_bytes(op, &c.in, op->dsize));
    }
    if ((op->flags & F_FP) && fp_finish(&c)) {
        raise_exception_ra(env, (env->cr[4] & CR4_OSXMMEXCPT_MASK) ? 19 /* #XM */
                                                                   : EXCP06_ILLOP, c.ra);
    }
    write_back(&c, old);
}
