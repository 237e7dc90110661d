/*
 * Floating-point arithmetic, comparison and the AVX-512 special operations: packed and
 * scalar, single and double precision, VEX and EVEX.
 *
 * Every operation is written once for both formats: an element is a uint64_t holding a
 * float32 or a float64 as the Fmt says, and softfloat is called for the right width.
 *
 * The SDM's rules that shape the code (Vol. 1 4.8.3.5, 4.9.2, 11.5.2, 11.5.3; Vol. 2 pages):
 *   - NaN operands: the first NaN source, quieted; an SNaN is invalid (IE). A QNaN operand
 *     takes precedence over every exception below it: no DE with a NaN operand.
 *   - Invalid operations (0*inf, inf-inf, 0/0, inf/inf, sqrt of a negative) and divide by
 *     zero rank above the denormal operand: an element that has one does not set DE.
 *   - A denormal operand sets DE unless MXCSR.DAZ, which reads it as a zero of its sign.
 *   - Results go through vec_f32_element/vec_f64_element (exec.c): tininess after rounding,
 *     FZ, unmasked underflow and overflow.
 *   - Masked-off elements are not computed, so they raise nothing.
 */
#include "vector/ops.h"
#include "qemu/host-utils.h"

/* ---- formats -------------------------------------------------------------------------- */

typedef struct Fmt {
    unsigned bits;          /* 32 or 64 */
    unsigned fbits;         /* fraction bits: 23 or 52 */
    int bias;               /* 127 or 1023 */
    uint64_t sign, emask, fmask, qbit;
    uint64_t indefinite;    /* the QNaN indefinite */
    uint64_t one, half, ninety, pi_2, max;
} Fmt;

static const Fmt fmt32 = {
    32, 23, 127, 0x80000000u, 0x7f800000u, 0x007fffffu, 0x00400000u, 0xffc00000u,
    0x3f800000u, 0x3f000000u, 0x42b40000u, 0x3fc90fdbu, 0x7f7fffffu,
};
static const Fmt fmt64 = {
    64, 52, 1023, 1ull << 63, 0x7ffull << 52, (1ull << 52) - 1, 1ull << 51,
    0xfff8000000000000ull, 0x3ff0000000000000ull, 0x3fe0000000000000ull,
    0x4056800000000000ull, 0x3ff921fb54442d18ull, 0x7fefffffffffffffull,
};
#define F32 (&fmt32)
#define F64 (&fmt64)

static uint64_t get(const VecReg *r, const Fmt *f, unsigned i)
{
    return f->bits == 32 ? U32(r, i) : U64(r, i);
}

static void put(VecReg *r, const Fmt *f, unsigned i, uint64_t v)
{
    if (f->bits == 32) {
        U32(r, i) = v;
    } else {
        U64(r, i) = v;
    }
}

static bool is_nan(const Fmt *f, uint64_t a)
{
    return (a & f->emask) == f->emask && (a & f->fmask);
}

static bool is_snan(const Fmt *f, uint64_t a)
{
    return is_nan(f, a) && !(a & f->qbit);
}

static bool is_inf(const Fmt *f, uint64_t a)
{
    return (a & ~f->sign) == f->emask;
}

static bool is_zero(const Fmt *f, uint64_t a)
{
    return !(a & ~f->sign);
}

static bool is_denormal(const Fmt *f, uint64_t a)
{
    return !(a & f->emask) && (a & f->fmask);
}

static bool is_neg(const Fmt *f, uint64_t a)
{
    return (a & f->sign) != 0;
}

static uint64_t quiet(const Fmt *f, uint64_t a)
{
    return a | f->qbit;
}

static uint32_t mxcsr(const VecCtx *c)
{
    return c->env->mxcsr;
}

static bool daz(const VecCtx *c)
{
    return (mxcsr(c) & (1 << 6)) != 0;
}

static bool ftz(const VecCtx *c)
{
    return (mxcsr(c) & (1 << 15)) != 0;
}

/* An operand as the operation reads it: a denormal is a zero of its sign under DAZ. */
static uint64_t daz_in(const VecCtx *c, const Fmt *f, uint64_t a)
{
    return daz(c) && is_denormal(f, a) ? a & f->sign : a;
}

/* EVEX.b on registers: all exceptions suppressed (masked responses, no flags). */
static bool suppressed(const VecCtx *c)
{
    return c->in.evex && c->in.b && !c->in.mem;
}

static void check_denormal(VecCtx *c, const Fmt *f, uint64_t a)
{
    if (f->bits == 32) {
        vec_f32_check_denormal(c, a);
    } else {
        vec_f64_check_denormal(c, a);
    }
}

static void raise_flag(VecCtx *c, int flag)
{
    float_raise(flag, &c->fp);
}

/* One NaN operand: quieted, an SNaN is invalid. */
static uint64_t nan1(VecCtx *c, const Fmt *f, uint64_t a)
{
    if (is_snan(f, a)) {
        raise_flag(c, float_flag_invalid);
    }
    return quiet(f, a);
}

/* Two operands, at least one NaN: the first NaN, quieted (vec_f32_nan/vec_f64_nan). */
static uint64_t nan2(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return f->bits == 32 ? vec_f32_nan(c, a, b) : vec_f64_nan(c, a, b);
}

/* A private status: the given rounding, no flags, no flushing. */
static float_status plain_status(int rounding)
{
    float_status st;
    memset(&st, 0, sizeof(st));
    set_float_rounding_mode(rounding, &st);
    set_float_detect_tininess(float_tininess_after_rounding, &st);
    return st;
}

static const int rounding_modes[4] = {
    float_round_nearest_even, float_round_down, float_round_up, float_round_to_zero,
};

/* ---- arithmetic ---------------------------------------------------------------------- */

enum { A_ADD, A_SUB, A_MUL, A_DIV, A_SQRT };

static uint64_t sf32(int op, float32 a, float32 b, float_status *st)
{
    switch (op) {
    case A_ADD: return float32_add(a, b, st);
    case A_SUB: return float32_sub(a, b, st);
    case A_MUL: return float32_mul(a, b, st);
    case A_DIV: return float32_div(a, b, st);
    default:    return float32_sqrt(a, st);
    }
}

static uint64_t sf64(int op, float64 a, float64 b, float_status *st)
{
    switch (op) {
    case A_ADD: return float64_add(a, b, st);
    case A_SUB: return float64_sub(a, b, st);
    case A_MUL: return float64_mul(a, b, st);
    case A_DIV: return float64_div(a, b, st);
    default:    return float64_sqrt(a, st);
    }
}

static float128 sf128(int op, float128 a, float128 b, float_status *st)
{
    switch (op) {
    case A_ADD: return float128_add(a, b, st);
    case A_SUB: return float128_sub(a, b, st);
    case A_MUL: return float128_mul(a, b, st);
    case A_DIV: return float128_div(a, b, st);
    default:    return float128_sqrt(a, st);
    }
}

/*
 * Whether the result rounded to the format's precision with an unbounded exponent is
 * inexact (the PE of an unmasked overflow or underflow): the operation in the next wider
 * format, rounded to odd, keeps every bit the narrower rounding looks at.
 */
static bool wide_inexact(VecCtx *c, const Fmt *f, int op, uint64_t a, uint64_t b)
{
    float_status w = plain_status(float_round_to_odd);

    a = daz_in(c, f, a);
    b = daz_in(c, f, b);
    if (f->bits == 32) {
        float64 r = sf64(op, float32_to_float64(a, &w), float32_to_float64(b, &w), &w);
        return (get_float_exception_flags(&w) & float_flag_inexact)
               || (r & ((1ull << 29) - 1));
    } else {
        float128 r = sf128(op, float64_to_float128(a, &w), float64_to_float128(b, &w), &w);
        return (get_float_exception_flags(&w) & float_flag_inexact)
               || (r.low & ((1ull << 60) - 1));
    }
}

static uint64_t element_done(VecCtx *c, const Fmt *f, float_status *st, uint64_t r,
                             bool inexact)
{
    return f->bits == 32 ? vec_f32_element(c, st, r, inexact)
                         : vec_f64_element(c, st, r, inexact);
}

/* One element of ADD, SUB, MUL, DIV or SQRT (b unused). */
static uint64_t arith(VecCtx *c, const Fmt *f, int op, uint64_t a, uint64_t b)
{
    bool unary = op == A_SQRT;
    float_status st;
    uint64_t r;
    int flags;
    bool inexact = false;

    if (is_nan(f, a) || (!unary && is_nan(f, b))) {
        return unary ? nan1(c, f, a) : nan2(c, f, a, b);
    }
    st = vec_fp_element(c);
    r = f->bits == 32 ? sf32(op, a, b, &st) : sf64(op, a, b, &st);
    flags = get_float_exception_flags(&st);
    if (!(flags & (float_flag_invalid | float_flag_divbyzero))) {
        check_denormal(c, f, a);
        if (!unary) {
            check_denormal(c, f, b);
        }
    }
    if ((flags & (float_flag_overflow | float_flag_underflow)) || is_denormal(f, r)) {
        inexact = wide_inexact(c, f, op, a, b);
    }
    return element_done(c, f, &st, r, inexact);
}

static uint64_t add_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return arith(c, f, A_ADD, a, b);
}

static uint64_t sub_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return arith(c, f, A_SUB, a, b);
}

static uint64_t mul_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return arith(c, f, A_MUL, a, b);
}

static uint64_t div_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return arith(c, f, A_DIV, a, b);
}

static uint64_t sqrt_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    return arith(c, f, A_SQRT, a, 0);
}

/*
 * MIN and MAX: the second source when either is a NaN (SNaN or QNaN, returned as it is,
 * with IE) or when both are zeros of either sign; DE for a denormal; DAZ reads denormals as
 * zeros (and returns them so, also as the second source beside a NaN).
 */
static uint64_t minmax(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b, bool max)
{
    float_status st = plain_status(float_round_nearest_even);
    int rel;

    if (is_nan(f, a) || is_nan(f, b)) {
        raise_flag(c, float_flag_invalid);
        return daz_in(c, f, b);
    }
    check_denormal(c, f, a);
    check_denormal(c, f, b);
    a = daz_in(c, f, a);
    b = daz_in(c, f, b);
    rel = f->bits == 32 ? float32_compare_quiet(a, b, &st) : float64_compare_quiet(a, b, &st);
    if (max) {
        return rel == float_relation_greater ? a : b;
    }
    return rel == float_relation_less ? a : b;
}

static uint64_t min_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return minmax(c, f, a, b, false);
}

static uint64_t max_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    return minmax(c, f, a, b, true);
}

/* ---- element loops ------------------------------------------------------------------- */

typedef uint64_t Unary(VecCtx *c, const Fmt *f, uint64_t a);
typedef uint64_t Binary(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b);

/* dst[i] = fn(src1[i]) for live elements (VW forms: the source is s1). */
static void packed1(VecCtx *c, const Fmt *f, Unary *fn)
{
    FOR_LIVE(c, i) {
        put(&c->d, f, i, fn(c, f, get(&c->s1, f, i)));
    }
}

/* dst[i] = fn(src1[i], src2[i]) for live elements. */
static void packed2(VecCtx *c, const Fmt *f, Binary *fn)
{
    FOR_LIVE(c, i) {
        put(&c->d, f, i, fn(c, f, get(&c->s1, f, i), get(&c->s2, f, i)));
    }
}

/* Scalar: dst = src1 with element 0 = fn(src2[0]) (one-source operations). */
static void scalar1(VecCtx *c, const Fmt *f, Unary *fn)
{
    c->d = c->s1;
    if (vec_live(c, 0)) {
        put(&c->d, f, 0, fn(c, f, get(&c->s2, f, 0)));
    }
}

/* Scalar: dst = src1 with element 0 = fn(src1[0], src2[0]). */
static void scalar2(VecCtx *c, const Fmt *f, Binary *fn)
{
    c->d = c->s1;
    if (vec_live(c, 0)) {
        put(&c->d, f, 0, fn(c, f, get(&c->s1, f, 0), get(&c->s2, f, 0)));
    }
}

/* The four forms of a two-source operation: ps, pd, ss, sd. */
#define FORMS2(name, e)                                                            \
    static void name##ps(VecCtx *c) { packed2(c, F32, e); }                        \
    static void name##pd(VecCtx *c) { packed2(c, F64, e); }                        \
    static void name##ss(VecCtx *c) { scalar2(c, F32, e); }                        \
    static void name##sd(VecCtx *c) { scalar2(c, F64, e); }
/* ... of a one-source operation (packed VW, scalar VHW). */
#define FORMS1(name, e)                                                            \
    static void name##ps(VecCtx *c) { packed1(c, F32, e); }                        \
    static void name##pd(VecCtx *c) { packed1(c, F64, e); }                        \
    static void name##ss(VecCtx *c) { scalar1(c, F32, e); }                        \
    static void name##sd(VecCtx *c) { scalar1(c, F64, e); }

FORMS2(add, add_e)
FORMS2(sub, sub_e)
FORMS2(mul, mul_e)
FORMS2(div, div_e)
FORMS2(min, min_e)
FORMS2(max, max_e)
FORMS1(sqrt, sqrt_e)

/* ---- horizontal and mixed ----------------------------------------------------------- */

/* VADDSUBPS/PD: even elements subtract, odd elements add. */
static void addsub(VecCtx *c, const Fmt *f)
{
    FOR_LIVE(c, i) {
        uint64_t a = get(&c->s1, f, i), b = get(&c->s2, f, i);
        put(&c->d, f, i, (i & 1) ? add_e(c, f, a, b) : sub_e(c, f, a, b));
    }
}

static void addsubps(VecCtx *c) { addsub(c, F32); }
static void addsubpd(VecCtx *c) { addsub(c, F64); }

/* VHADD/VHSUB: per 128-bit lane, the pairs of src1 then the pairs of src2. */
static void horizontal(VecCtx *c, const Fmt *f, Binary *fn)
{
    unsigned per_lane = 128 / f->bits, half = per_lane / 2;
    VecReg r = c->d;

    for (unsigned lane = 0; lane < c->vlbytes / 16; lane++) {
        unsigned base = lane * per_lane;
        for (unsigned j = 0; j < per_lane; j++) {
            const VecReg *src = j < half ? &c->s1 : &c->s2;
            unsigned k = base + 2 * (j % half);
            put(&r, f, base + j, fn(c, f, get(src, f, k), get(src, f, k + 1)));
        }
    }
    c->d = r;
}

static void haddps(VecCtx *c) { horizontal(c, F32, add_e); }
static void haddpd(VecCtx *c) { horizontal(c, F64, add_e); }
static void hsubps(VecCtx *c) { horizontal(c, F32, sub_e); }
static void hsubpd(VecCtx *c) { horizontal(c, F64, sub_e); }

/*
 * VDPPS/VDPPD, per 128-bit lane: the products selected by imm8[7:4] (others +0.0) summed
 * pairwise, the sum written where imm8[3:0] says (+0.0 elsewhere). Each multiply and add
 * is an operation of its own for flags, in the SDM's order: the multiplies, then each add;
 * a step with an unmasked exception ends the instruction (#XM) with the flags so far.
 */
static void dot(VecCtx *c, const Fmt *f)
{
    unsigned n = 128 / f->bits, imm = c->in.imm, lanes = c->vlbytes / 16;
    uint64_t t[4][4], lo[4], hi[4];
    VecReg r = c->d;

    for (unsigned lane = 0; lane < lanes; lane++) {         /* the multiplies */
        for (unsigned j = 0; j < n; j++) {
            t[lane][j] = (imm >> (4 + j)) & 1
                         ? mul_e(c, f, get(&c->s1, f, lane * n + j),
                                 get(&c->s2, f, lane * n + j))
                         : 0;
        }
    }
    if (vec_fp_step(c)) {
        return;
    }
    for (unsigned lane = 0; lane < lanes; lane++) {
        lo[lane] = add_e(c, f, t[lane][0], t[lane][1]);
    }
    if (n == 4) {
        if (vec_fp_step(c)) {
            return;
        }
        for (unsigned lane = 0; lane < lanes; lane++) {
            hi[lane] = add_e(c, f, t[lane][2], t[lane][3]);
        }
        if (vec_fp_step(c)) {
            return;
        }
        for (unsigned lane = 0; lane < lanes; lane++) {
            lo[lane] = add_e(c, f, lo[lane], hi[lane]);
        }
    }
    for (unsigned lane = 0; lane < lanes; lane++) {
        for (unsigned j = 0; j < n; j++) {
            put(&r, f, lane * n + j, (imm >> j) & 1 ? lo[lane] : 0);
        }
    }
    c->d = r;
}

static void dpps(VecCtx *c) { dot(c, F32); }
static void dppd(VecCtx *c) { dot(c, F64); }

/* ---- logic ------------------------------------------------------------------------------ */

static void logic(VecCtx *c, int kind)
{
    for (unsigned i = 0; i < c->vlbytes / 8; i++) {
        uint64_t a = U64(&c->s1, i), b = U64(&c->s2, i);
        U64(&c->d, i) = kind == 0 ? a & b : kind == 1 ? ~a & b : kind == 2 ? a | b : a ^ b;
    }
}

static void andp(VecCtx *c) { logic(c, 0); }
static void andnp(VecCtx *c) { logic(c, 1); }
static void orp(VecCtx *c) { logic(c, 2); }
static void xorp(VecCtx *c) { logic(c, 3); }

/* ---- compares ------------------------------------------------------------------------- */

enum { R_LT = 1, R_EQ = 2, R_GT = 4, R_UN = 8 };

/*
 * The 32 predicates of VCMPPS/PD/SS/SD (imm8[4:0]): for predicates 0-15, which relations
 * make the result true, and whether the predicate signals on a QNaN; 16-31 are 0-15 with
 * the signaling flipped.
 */
static const uint8_t predicate_true[16] = {
    R_EQ,                   /* EQ_OQ */
    R_LT,                   /* LT_OS */
    R_LT | R_EQ,            /* LE_OS */
    R_UN,                   /* UNORD_Q */
    R_LT | R_GT | R_UN,     /* NEQ_UQ */
    R_EQ | R_GT | R_UN,     /* NLT_US */
    R_GT | R_UN,            /* NLE_US */
    R_LT | R_EQ | R_GT,     /* ORD_Q */
    R_EQ | R_UN,            /* EQ_UQ */
    R_LT | R_UN,            /* NGE_US */
    R_LT | R_EQ | R_UN,     /* NGT_US */
    0,                      /* FALSE_OQ */
    R_LT | R_GT,            /* NEQ_OQ */
    R_GT | R_EQ,            /* GE_OS */
    R_GT,                   /* GT_OS */
    R_LT | R_EQ | R_GT | R_UN, /* TRUE_UQ */
};
static const uint16_t predicate_signals = 0x6666;     /* 1, 2, 5, 6, 9, 10, 13, 14 */

/* The relation of a and b; IE for an SNaN, or for any NaN when `signal_qnan`; DE. */
static int relation(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b, bool signal_qnan)
{
    float_status st = plain_status(float_round_nearest_even);
    int rel;

    if (is_nan(f, a) || is_nan(f, b)) {
        if (signal_qnan || is_snan(f, a) || is_snan(f, b)) {
            raise_flag(c, float_flag_invalid);
        }
        return R_UN;
    }
    check_denormal(c, f, a);
    check_denormal(c, f, b);
    a = daz_in(c, f, a);
    b = daz_in(c, f, b);
    rel = f->bits == 32 ? float32_compare_quiet(a, b, &st) : float64_compare_quiet(a, b, &st);
    return rel == float_relation_less ? R_LT : rel == float_relation_equal ? R_EQ : R_GT;
}

static bool compare(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    unsigned p = c->in.imm & 31;
    bool signals = ((predicate_signals >> (p & 15)) & 1) ^ (p >> 4);
    return (predicate_true[p & 15] & relation(c, f, a, b, signals)) != 0;
}

/* VEX: all-ones or zero elements. */
static void cmp_vec(VecCtx *c, const Fmt *f)
{
    uint64_t ones = f->bits == 32 ? 0xffffffffu : ~0ull;
    FOR_LIVE(c, i) {
        put(&c->d, f, i, compare(c, f, get(&c->s1, f, i), get(&c->s2, f, i)) ? ones : 0);
    }
}

static void cmp_vec_scalar(VecCtx *c, const Fmt *f)
{
    uint64_t ones = f->bits == 32 ? 0xffffffffu : ~0ull;
    c->d = c->s1;
    put(&c->d, f, 0, compare(c, f, get(&c->s1, f, 0), get(&c->s2, f, 0)) ? ones : 0);
}

/* EVEX: one bit per element into an opmask (masked-off elements 0: the write-back's). */
static void cmp_mask(VecCtx *c, const Fmt *f)
{
    uint64_t k = 0;
    FOR_LIVE(c, i) {
        k |= (uint64_t)compare(c, f, get(&c->s1, f, i), get(&c->s2, f, i)) << i;
    }
    c->g = k;
}

static void cmp_mask_scalar(VecCtx *c, const Fmt *f)
{
    c->g = vec_live(c, 0) && compare(c, f, get(&c->s1, f, 0), get(&c->s2, f, 0));
}

static void cmpps(VecCtx *c) { cmp_vec(c, F32); }
static void cmppd(VecCtx *c) { cmp_vec(c, F64); }
static void cmpss(VecCtx *c) { cmp_vec_scalar(c, F32); }
static void cmpsd(VecCtx *c) { cmp_vec_scalar(c, F64); }
static void cmpps_k(VecCtx *c) { cmp_mask(c, F32); }
static void cmppd_k(VecCtx *c) { cmp_mask(c, F64); }
static void cmpss_k(VecCtx *c) { cmp_mask_scalar(c, F32); }
static void cmpsd_k(VecCtx *c) { cmp_mask_scalar(c, F64); }

/*
 * VCOMISS/SD (IE for any NaN) and VUCOMISS/SD (IE for an SNaN): ZF PF CF = 111 unordered,
 * 000 greater, 001 less, 100 equal; OF SF AF cleared.
 */
static void comis(VecCtx *c, const Fmt *f, bool signal_qnan)
{
    int rel = relation(c, f, get(&c->s1, f, 0), get(&c->s2, f, 0), signal_qnan);
    c->eflags = rel == R_UN ? CC_Z | CC_P | CC_C : rel == R_LT ? CC_C : rel == R_EQ ? CC_Z : 0;
}

static void comiss(VecCtx *c) { comis(c, F32, true); }
static void comisd(VecCtx *c) { comis(c, F64, true); }
static void ucomiss(VecCtx *c) { comis(c, F32, false); }
static void ucomisd(VecCtx *c) { comis(c, F64, false); }

/* ---- approximations ------------------------------------------------------------------- */

/*
 * The approximations are computed exactly (to the format's precision, truncated), which is
 * within every bound the SDM gives: 1.5*2^-12 for VRCPPS/VRSQRTPS, 2^-14 for VRCP14 and
 * VRSQRT14. Their exact bits on Intel silicon (for VRCP14/VRSQRT14, Intel's reference code
 * the SDM points to, a table of coefficients) are not reproduced. The special inputs and
 * outputs follow the SDM's tables. None of them touches MXCSR's flags or uses its rounding.
 */
static uint64_t recip(const Fmt *f, uint64_t a)
{
    float_status st = plain_status(float_round_to_zero);
    uint64_t r = f->bits == 32 ? float32_div(float32_one, a, &st)
                               : float64_div(float64_one, a, &st);
    if (get_float_exception_flags(&st) & float_flag_overflow) {
        r = (a & f->sign) | f->emask;           /* |a| <= 2^-(emax+1): an infinity */
    }
    return r;
}

static uint64_t recip_sqrt(const Fmt *f, uint64_t a)
{
    float_status st = plain_status(float_round_nearest_even);
    if (f->bits == 32) {
        float64 s = float64_sqrt(float32_to_float64(a, &st), &st);
        float_status tz = plain_status(float_round_to_zero);
        return float64_to_float32(float64_div(float64_one, s, &st), &tz);
    }
    set_float_rounding_mode(float_round_to_zero, &st);
    return float64_div(float64_one, float64_sqrt(a, &st), &st);
}

/* VRCPPS/SS: a denormal operand is a zero; a tiny result is flushed to zero. */
static uint64_t rcp12_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    uint64_t r;

    if (is_nan(f, a)) {
        return quiet(f, a);
    }
    if (is_zero(f, a) || is_denormal(f, a)) {
        return (a & f->sign) | f->emask;
    }
    if (is_inf(f, a)) {
        return a & f->sign;
    }
    r = recip(f, a);
    return is_denormal(f, r) ? r & f->sign : r;
}

/* VRSQRTPS/SS: a denormal operand is a zero; a negative one gives the QNaN indefinite. */
static uint64_t rsqrt12_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    if (is_nan(f, a)) {
        return quiet(f, a);
    }
    if (is_zero(f, a) || is_denormal(f, a)) {
        return (a & f->sign) | f->emask;
    }
    if (is_neg(f, a)) {
        return f->indefinite;
    }
    if (is_inf(f, a)) {
        return 0;
    }
    return recip_sqrt(f, a);
}

/* VRCP14: denormal operands are numbers (zeros under DAZ); tiny results flushed under FZ. */
static uint64_t rcp14_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    uint64_t r;

    if (is_nan(f, a)) {
        return quiet(f, a);
    }
    a = daz_in(c, f, a);
    if (is_zero(f, a)) {
        return (a & f->sign) | f->emask;
    }
    if (is_inf(f, a)) {
        return a & f->sign;
    }
    r = recip(f, a);
    if (is_denormal(f, r) && ftz(c)) {
        r &= f->sign;
    }
    return r;
}

static uint64_t rsqrt14_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    if (is_nan(f, a)) {
        return quiet(f, a);
    }
    a = daz_in(c, f, a);
    if (is_zero(f, a)) {
        return (a & f->sign) | f->emask;
    }
    if (is_neg(f, a)) {
        return f->indefinite;
    }
    if (is_inf(f, a)) {
        return 0;
    }
    return recip_sqrt(f, a);
}

static void rcpps(VecCtx *c) { packed1(c, F32, rcp12_e); }
static void rcpss(VecCtx *c) { scalar1(c, F32, rcp12_e); }
static void rsqrtps(VecCtx *c) { packed1(c, F32, rsqrt12_e); }
static void rsqrtss(VecCtx *c) { scalar1(c, F32, rsqrt12_e); }
FORMS1(rcp14, rcp14_e)
FORMS1(rsqrt14, rsqrt14_e)

/* ---- rounding ----------------------------------------------------------------------------- */

/*
 * 2^-M * round(2^M * a) in rounding mode `rc`, exactly (the scaling has an unbounded
 * exponent: a number already integral at that scale is returned as it is). *inexact says
 * whether the rounding changed the value. `a` is a number (not a NaN).
 */
static uint64_t round_scaled(const Fmt *f, uint64_t a, unsigned m, int rc, bool *inexact)
{
    float_status st = plain_status(rc);
    int exp = (int)((a & f->emask) >> f->fbits) - f->bias;
    uint64_t r;

    *inexact = false;
    if (is_inf(f, a) || is_zero(f, a) || exp >= (int)f->fbits - (int)m) {
        return a;
    }
    if (f->bits == 32) {
        r = float32_scalbn(float32_round_to_int(float32_scalbn(a, m, &st), &st), -(int)m, &st);
    } else {
        r = float64_scalbn(float64_round_to_int(float64_scalbn(a, m, &st), &st), -(int)m, &st);
    }
    *inexact = r != a;
    return r;
}

/* The rounding mode imm8 selects: imm8[1:0], or MXCSR.RC when imm8[2] is set. */
static int imm_rounding(const VecCtx *c)
{
    unsigned imm = c->in.imm;
    return rounding_modes[(imm & 4) ? (mxcsr(c) >> 13) & 3 : imm & 3];
}

/*
 * VROUND (M = 0) and VRNDSCALE (M = imm8[7:4]): IE for an SNaN; PE when the value changed,
 * unless imm8[3]; DAZ reads a denormal as zero; no DE.
 */
static uint64_t rndscale_m(VecCtx *c, const Fmt *f, uint64_t a, unsigned m)
{
    bool inexact;
    uint64_t r;

    if (is_nan(f, a)) {
        return nan1(c, f, a);
    }
    r = round_scaled(f, daz_in(c, f, a), m, imm_rounding(c), &inexact);
    if (inexact && !(c->in.imm & 8)) {
        raise_flag(c, float_flag_inexact);
    }
    return r;
}

static uint64_t round_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    return rndscale_m(c, f, a, 0);
}

static uint64_t rndscale_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    return rndscale_m(c, f, a, c->in.imm >> 4);
}

FORMS1(round, round_e)
FORMS1(rndscale, rndscale_e)

/*
 * VREDUCE: a - 2^-M * round(2^M * a), the subtraction in the same rounding (a zero is +0, or
 * -0 rounding down); +0 for an infinity; IE for an SNaN. PE (unless imm8[3]) when the
 * rounding was inexact: the SDM's ROUND() signals it as VRNDSCALE does. A denormal result
 * is flushed to zero under FZ (underflow masked), with no UE; DAZ reads a denormal as zero.
 */
static uint64_t reduce_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    int rc = imm_rounding(c);
    float_status st = plain_status(rc);
    bool inexact;
    uint64_t r;

    if (is_nan(f, a)) {
        return nan1(c, f, a);
    }
    if (is_inf(f, a)) {
        return 0;
    }
    a = daz_in(c, f, a);
    r = round_scaled(f, a, c->in.imm >> 4, rc, &inexact);
    r = f->bits == 32 ? float32_sub(a, r, &st) : float64_sub(a, r, &st);
    if (is_denormal(f, r) && ftz(c) && (suppressed(c) || (mxcsr(c) & (1 << 11)))) {
        r &= f->sign;
    }
    if (inexact && !(c->in.imm & 8)) {
        raise_flag(c, float_flag_inexact);
    }
    return r;
}

FORMS1(reduce, reduce_e)

/* ---- AVX-512 specials --------------------------------------------------------------------- */

/* The unbiased exponent of a nonzero finite number, denormals normalized. */
static int exponent_of(const Fmt *f, uint64_t a)
{
    uint64_t frac = a & f->fmask;
    if (a & f->emask) {
        return (int)((a & f->emask) >> f->fbits) - f->bias;
    }
    return (63 - clz64(frac)) - (int)f->fbits - f->bias + 1;
}

/* VGETEXP: floor(log2|a|) as a float; +inf for an infinity, -inf for a zero. */
static uint64_t getexp_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    float_status st = plain_status(float_round_nearest_even);
    int e;

    if (is_nan(f, a)) {
        return nan1(c, f, a);
    }
    a &= ~f->sign;
    if (is_inf(f, a)) {
        return a;
    }
    if (is_zero(f, daz_in(c, f, a))) {
        return f->sign | f->emask;
    }
    check_denormal(c, f, a);
    e = exponent_of(f, a);
    return f->bits == 32 ? int32_to_float32(e, &st) : int32_to_float64(e, &st);
}

FORMS1(getexp, getexp_e)

/*
 * VGETMANT (SDM's getmant_fp32/fp64): the significand in the interval imm8[1:0] selects,
 * the sign by imm8[3:2]; IE (and the QNaN indefinite) for a negative number when imm8[3].
 */
static uint64_t getmant_e(VecCtx *c, const Fmt *f, uint64_t a)
{
    unsigned sc = (c->in.imm >> 2) & 3, interval = c->in.imm & 3;
    uint64_t one = f->one, sign, frac;
    int exp;

    if (is_nan(f, a)) {
        return nan1(c, f, a);
    }
    a = daz_in(c, f, a);
    if (!is_neg(f, a) && (is_zero(f, a) || is_inf(f, a))) {
        return one;
    }
    if (is_neg(f, a)) {
        if (is_zero(f, a)) {
            return (sc & 1) ? one : one | f->sign;
        }
        if (sc & 2) {
            raise_flag(c, float_flag_invalid);
            return f->indefinite;
        }
        if (is_inf(f, a)) {
            return (sc & 1) ? one : one | f->sign;
        }
    }
    sign = (sc & 1) ? 0 : a & f->sign;
    check_denormal(c, f, a);
    exp = exponent_of(f, a);
    frac = a & f->fmask;
    if (!(a & f->emask)) {                      /* normalize a denormal */
        frac = (frac << (f->fbits - (63 - clz64(frac)))) & f->fmask;
    }
    switch (interval) {
    case 0:                                     /* [1, 2) */
        exp = 0;
        break;
    case 1:                                     /* [1/2, 2): k = -1 for an odd exponent */
        exp = (exp & 1) ? -1 : 0;
        break;
    case 2:                                     /* [1/2, 1) */
        exp = -1;
        break;
    default:                                    /* [3/4, 3/2) */
        exp = (frac >> (f->fbits - 1)) ? -1 : 0;
        break;
    }
    return sign | ((uint64_t)(exp + f->bias) << f->fbits) | frac;
}

FORMS1(getmant, getmant_e)

/*
 * VSCALEF: a * 2^floor(b), rounded as an arithmetic result (MXCSR or embedded rounding,
 * FZ, OE/UE/PE); the SDM's Table 5-29 for NaNs and infinities. DE for a denormal a only.
 */
static uint64_t scalef_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    float_status st, fl = plain_status(float_round_down);
    int64_t n;
    uint64_t r;

    if (is_snan(f, a) || is_snan(f, b)) {
        raise_flag(c, float_flag_invalid);
    }
    if (is_nan(f, a)) {
        /* Table 5-29's QNaN row: +INF beside +inf, +0 beside -inf. */
        if (!is_snan(f, a) && is_inf(f, b)) {
            return is_neg(f, b) ? 0 : f->emask;
        }
        return quiet(f, a);
    }
    if (is_nan(f, b)) {
        return quiet(f, b);
    }
    b = daz_in(c, f, b);
    if (is_inf(f, b)) {
        uint64_t az = daz_in(c, f, a);
        bool plus = !is_neg(f, b);
        if ((plus && is_zero(f, az)) || (!plus && is_inf(f, a))) {
            raise_flag(c, float_flag_invalid);
            return f->indefinite;
        }
        check_denormal(c, f, a);
        return (a & f->sign) | (plus ? f->emask : 0);
    }
    check_denormal(c, f, a);
    /* floor(b), clamped where any larger scale gives the same result. */
    if (f->bits == 32) {
        n = float32_to_int32(float32_round_to_int(b, &fl), &fl);
    } else {
        n = float64_to_int32(float64_round_to_int(b, &fl), &fl);
    }
    n = MIN(MAX(n, -4096), 4096);
    st = vec_fp_element(c);
    r = f->bits == 32 ? float32_scalbn(a, n, &st) : float64_scalbn(a, n, &st);
    /* The scaled significand is exact with an unbounded exponent. */
    return element_done(c, f, &st, r, false);
}

FORMS2(scalef, scalef_e)

/*
 * VFIXUPIMM: the first source's class (token) picks a 4-bit response from the table
 * (second source); imm8 says which classes report ZE or IE. MXCSR's masks are ignored (no
 * #XM), EVEX.b on registers suppresses the flags, DAZ reads a denormal source as zero.
 */
static uint64_t fixup(VecCtx *c, const Fmt *f, uint64_t dst, uint64_t a, uint64_t table,
                      uint32_t *flags)
{
    unsigned imm = c->in.imm, token, response;

    if (daz(c) && !(a & f->emask)) {
        a &= f->sign;                           /* a zero of its sign */
    }
    if (is_nan(f, a)) {
        token = is_snan(f, a) ? 1 : 0;
    } else if (is_zero(f, a)) {
        token = 2;
    } else if (a == f->one) {
        token = 3;
    } else if (is_inf(f, a)) {
        token = is_neg(f, a) ? 4 : 5;
    } else {
        token = is_neg(f, a) ? 6 : 7;
    }
    if (token == 2) {
        *flags |= ((imm & 1) ? 4 : 0) | ((imm & 2) ? 1 : 0);        /* ZE, IE */
    }
    if (token == 3) {
        *flags |= ((imm & 4) ? 4 : 0) | ((imm & 8) ? 1 : 0);
    }
    if ((token == 1 && (imm & 0x10)) || (token == 4 && (imm & 0x20))
        || (token == 6 && (imm & 0x40)) || (token == 5 && (imm & 0x80))) {
        *flags |= 1;
    }
    response = (table >> (4 * token)) & 15;
    switch (response) {
    case 0:  return dst;
    case 1:  return a;
    case 2:  return quiet(f, a) | (is_nan(f, a) ? 0 : f->emask);
    case 3:  return f->indefinite;
    case 4:  return f->sign | f->emask;
    case 5:  return f->emask;
    case 6:  return (a & f->sign) | f->emask;
    case 7:  return f->sign;
    case 8:  return 0;
    case 9:  return f->sign | f->one;
    case 10: return f->one;
    case 11: return f->half;
    case 12: return f->ninety;
    case 13: return f->pi_2;
    case 14: return f->max;
    default: return f->sign | f->max;
    }
}

static void fixup_flags(VecCtx *c, uint32_t flags)
{
    if (!suppressed(c)) {
        c->env->mxcsr |= flags;
    }
}

static void fixupimm(VecCtx *c, const Fmt *f)
{
    uint32_t flags = 0;
    FOR_LIVE(c, i) {
        put(&c->d, f, i, fixup(c, f, get(&c->d, f, i), get(&c->s1, f, i), get(&c->s2, f, i),
                               &flags));
    }
    fixup_flags(c, flags);
}

static void fixupimm_scalar(VecCtx *c, const Fmt *f)
{
    uint32_t flags = 0;
    uint64_t old = get(&c->d, f, 0);

    c->d = c->s1;
    put(&c->d, f, 0, old);
    if (vec_live(c, 0)) {
        put(&c->d, f, 0, fixup(c, f, old, get(&c->s1, f, 0), get(&c->s2, f, 0), &flags));
    }
    fixup_flags(c, flags);
}

static void fixupimmps(VecCtx *c) { fixupimm(c, F32); }
static void fixupimmpd(VecCtx *c) { fixupimm(c, F64); }
static void fixupimmss(VecCtx *c) { fixupimm_scalar(c, F32); }
static void fixupimmsd(VecCtx *c) { fixupimm_scalar(c, F64); }

/*
 * VRANGE (SDM's RangeSP/RangeDP): min, max, min-abs or max-abs (imm8[1:0]), then the sign
 * by imm8[3:2]. An SNaN gives itself quieted with IE (sign control ignored); a QNaN loses to
 * the other operand; opposite-signed zeros and equal magnitudes follow Tables 5-14, 5-15.
 */
static uint64_t range_e(VecCtx *c, const Fmt *f, uint64_t a, uint64_t b)
{
    unsigned op = c->in.imm & 3, sc = (c->in.imm >> 2) & 3;
    float_status st = plain_status(float_round_nearest_even);
    uint64_t t;

    if (is_snan(f, a) || is_snan(f, b)) {
        raise_flag(c, float_flag_invalid);
        return quiet(f, is_snan(f, a) ? a : b);
    }
    if (is_denormal(f, a) && !is_nan(f, b)) {
        check_denormal(c, f, a);
    }
    if (is_denormal(f, b) && !is_nan(f, a)) {
        check_denormal(c, f, b);
    }
    a = daz_in(c, f, a);
    b = daz_in(c, f, b);
    if (is_nan(f, b)) {
        t = a;
    } else if (is_nan(f, a)) {
        t = b;
    } else if ((a & ~f->sign) == (b & ~f->sign) && a != b) {
        /* Opposite signs, equal magnitude (zeros too): the min's pick the negative one. */
        t = (op == 0 || op == 2) == is_neg(f, a) ? a : b;
    } else {
        uint64_t x = a, y = b;
        bool le;
        if (op & 2) {
            x &= ~f->sign;
            y &= ~f->sign;
        }
        le = f->bits == 32 ? float32_le_quiet(x, y, &st) : float64_le_quiet(x, y, &st);
        t = (op & 1) ? (le ? b : a) : (le ? a : b);
    }
    switch (sc) {
    case 0:  return (a & f->sign) | (t & ~f->sign);
    case 1:  return t;
    case 2:  return t & ~f->sign;
    default: return t | f->sign;
    }
}

FORMS2(range, range_e)

/*
 * VFPCLASS: imm8 selects classes (0 QNaN, 1 +0, 2 -0, 3 +inf, 4 -inf, 5 denormal,
 * 6 finite negative, 7 SNaN); a denormal is a zero under DAZ. No flags.
 */
static bool fpclass_1(VecCtx *c, const Fmt *f, uint64_t a)
{
    unsigned imm = c->in.imm, classes = 0;
    bool neg = is_neg(f, a);

    a = daz_in(c, f, a);
    if (is_nan(f, a)) {
        classes = is_snan(f, a) ? 0x80 : 0x01;
    } else if (is_zero(f, a)) {
        classes = neg ? 0x04 : 0x02;
    } else if (is_inf(f, a)) {
        classes = neg ? 0x10 : 0x08;
    } else {
        classes = (is_denormal(f, a) ? 0x20 : 0) | (neg ? 0x40 : 0);
    }
    return (classes & imm) != 0;
}

static void fpclass(VecCtx *c, const Fmt *f)
{
    uint64_t k = 0;
    FOR_LIVE(c, i) {
        k |= (uint64_t)fpclass_1(c, f, get(&c->s1, f, i)) << i;
    }
    c->g = k;
}

static void fpclassps(VecCtx *c) { fpclass(c, F32); }
static void fpclasspd(VecCtx *c) { fpclass(c, F64); }
static void fpclassss(VecCtx *c) { c->g = vec_live(c, 0) && fpclass_1(c, F32, U32(&c->s1, 0)); }
static void fpclasssd(VecCtx *c) { c->g = vec_live(c, 0) && fpclass_1(c, F64, U64(&c->s1, 0)); }

/* ---- tables ----------------------------------------------------------------------------- */

#define AVX X_AVX
#define F512 X_AVX512F
#define DQ X_AVX512DQ
/* EVEX loads suppress the faults of masked-off elements (F_MEMMASK): SDM Vol. 1 15.4.1. */
#define MM (F_MASK | F_MEMMASK)
#define ERM (F_FP | MM | F_BCST | F_ER)             /* packed, embedded rounding */
#define SAEM (F_FP | MM | F_BCST | F_SAE)           /* packed, exceptions suppressible */
#define ERS (F_FP | MM | F_ER)                      /* scalar, embedded rounding */
#define SAES (F_FP | MM | F_SAE)                    /* scalar, exceptions suppressible */

/* dst = op(rm) (+ imm8). */
#define VWI(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, (fl) | F_IMM, NOREG, O_V, S_VL, O_W, S_VL, \
      O_NONE, 0, O_NONE, 0, f)
#define VHWI(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    VHW(nm, en, mp, opc, p, wv, len, esz, feat, (fl) | F_IMM, f)
#define VHWSI(nm, en, mp, opc, p, wv, esz, feat, fl, f) \
    VHWS(nm, en, mp, opc, p, wv, esz, feat, (fl) | F_IMM, f)

/* One two-source arithmetic opcode in all its forms: ps, pd, ss, sd; VEX and EVEX. */
#define ARITH(nm, opc, f, eflags, sflags)                                              \
    VHW("v" nm "ps", ENC_VEX, 1, opc, P_NONE, WIG, LVEX, 4, AVX, F_FP, f##ps),         \
    VHW("v" nm "pd", ENC_VEX, 1, opc, P_66, WIG, LVEX, 8, AVX, F_FP, f##pd),           \
    VHWS("v" nm "ss", ENC_VEX, 1, opc, P_F3, WIG, 4, AVX, F_FP, f##ss),                \
    VHWS("v" nm "sd", ENC_VEX, 1, opc, P_F2, WIG, 8, AVX, F_FP, f##sd),                \
    VHW("v" nm "ps", ENC_EVEX, 1, opc, P_NONE, 0, LALL, 4, F512, eflags, f##ps),       \
    VHW("v" nm "pd", ENC_EVEX, 1, opc, P_66, 1, LALL, 8, F512, eflags, f##pd),         \
    VHWS("v" nm "ss", ENC_EVEX, 1, opc, P_F3, 0, 4, F512, sflags, f##ss),              \
    VHWS("v" nm "sd", ENC_EVEX, 1, opc, P_F2, 1, 8, F512, sflags, f##sd)

/* A logic opcode: VEX (AVX) and EVEX (AVX512DQ). */
#define LOGIC(nm, opc, f)                                                              \
    VHW("v" nm "ps", ENC_VEX, 1, opc, P_NONE, WIG, LVEX, 4, AVX, 0, f),                \
    VHW("v" nm "pd", ENC_VEX, 1, opc, P_66, WIG, LVEX, 8, AVX, 0, f),                  \
    VHW("v" nm "ps", ENC_EVEX, 1, opc, P_NONE, 0, LALL, 4, DQ, MM | F_BCST, f),        \
    VHW("v" nm "pd", ENC_EVEX, 1, opc, P_66, 1, LALL, 8, DQ, MM | F_BCST, f)

/* EVEX map 2/3 ops with ps/pd (W0/W1) and ss/sd forms, all 66. */
#define EVEX1(nm, mp, opc_p, opc_s, feat, pfl, sfl, f)                                \
    VW("v" nm "ps", ENC_EVEX, mp, opc_p, P_66, 0, LALL, 4, feat, pfl, f##ps),          \
    VW("v" nm "pd", ENC_EVEX, mp, opc_p, P_66, 1, LALL, 8, feat, pfl, f##pd),          \
    VHWS("v" nm "ss", ENC_EVEX, mp, opc_s, P_66, 0, 4, feat, sfl, f##ss),              \
    VHWS("v" nm "sd", ENC_EVEX, mp, opc_s, P_66, 1, 8, feat, sfl, f##sd)
#define EVEX1I(nm, opc_p, opc_s, feat, pfl, sfl, f)                                   \
    VWI("v" nm "ps", ENC_EVEX, 3, opc_p, P_66, 0, LALL, 4, feat, pfl, f##ps),          \
    VWI("v" nm "pd", ENC_EVEX, 3, opc_p, P_66, 1, LALL, 8, feat, pfl, f##pd),          \
    VHWSI("v" nm "ss", ENC_EVEX, 3, opc_s, P_66, 0, 4, feat, sfl, f##ss),              \
    VHWSI("v" nm "sd", ENC_EVEX, 3, opc_s, P_66, 1, 8, feat, sfl, f##sd)
#define EVEX2(nm, mp, opc_p, opc_s, feat, pfl, sfl, f)                                \
    VHW("v" nm "ps", ENC_EVEX, mp, opc_p, P_66, 0, LALL, 4, feat, pfl, f##ps),         \
    VHW("v" nm "pd", ENC_EVEX, mp, opc_p, P_66, 1, LALL, 8, feat, pfl, f##pd),         \
    VHWS("v" nm "ss", ENC_EVEX, mp, opc_s, P_66, 0, 4, feat, sfl, f##ss),              \
    VHWS("v" nm "sd", ENC_EVEX, mp, opc_s, P_66, 1, 8, feat, sfl, f##sd)
#define EVEX2I(nm, opc_p, opc_s, feat, pfl, sfl, f)                                   \
    VHWI("v" nm "ps", ENC_EVEX, 3, opc_p, P_66, 0, LALL, 4, feat, pfl, f##ps),         \
    VHWI("v" nm "pd", ENC_EVEX, 3, opc_p, P_66, 1, LALL, 8, feat, pfl, f##pd),         \
    VHWSI("v" nm "ss", ENC_EVEX, 3, opc_s, P_66, 0, 4, feat, sfl, f##ss),              \
    VHWSI("v" nm "sd", ENC_EVEX, 3, opc_s, P_66, 1, 8, feat, sfl, f##sd)

/* Compares: VEX into vectors, EVEX into an opmask. */
#define KCMP(nm, p, wv, len, esz, fl, s1, s2, f) \
    E(nm, ENC_EVEX, 1, 0xc2, p, wv, len, esz, F512,                                      \
      (fl) | F_FP | F_KDEST | F_MEMMASK | F_SAE | F_IMM,                                   \
      NOREG, O_KV, 0, O_H, s1, O_W, s2, O_NONE, 0, f)
/* Ordered/unordered scalar compares into RFLAGS. */
#define COMIS(nm, en, opc, p, wv, esz, feat, fl, f) \
    E(nm, en, 1, opc, p, wv, LIG, esz, feat, (fl) | F_FP | F_FLAGS, NOREG, \
      O_NONE, 0, O_V, S_128, O_W, S_ELEM, O_NONE, 0, f)
/* VFPCLASS into an opmask. */
#define FPCLASS(nm, opc, wv, len, esz, fl, s, f) \
    E(nm, ENC_EVEX, 3, opc, P_66, wv, len, esz, DQ, (fl) | F_KDEST | F_MEMMASK | F_IMM, NOREG, \
      O_KV, 0, O_W, s, O_NONE, 0, O_NONE, 0, f)

/* VLDMXCSR and VSTMXCSR (VEX.LZ 0F AE /2 and /3): MXCSR from and to memory; reserved
 * bits (31:16) set are #GP(0). */
static void ldmxcsr(VecCtx *c)
{
    uint32_t value = U32(&c->s1, 0);
    if (value >> 16) {
        raise_exception_err_ra(c->env, EXCP0D_GPF, 0, c->ra);
    }
    cpu_set_mxcsr(c->env, value);
}

static void stmxcsr(VecCtx *c)
{
    memset(&c->d, 0, sizeof(c->d));
    U32(&c->d, 0) = c->env->mxcsr;
}

const VecOp vec_ops_fp[] = {
    ARITH("add", 0x58, add, ERM, ERS),
    ARITH("mul", 0x59, mul, ERM, ERS),
    ARITH("sub", 0x5c, sub, ERM, ERS),
    ARITH("min", 0x5d, min, SAEM, SAES),
    ARITH("div", 0x5e, div, ERM, ERS),
    ARITH("max", 0x5f, max, SAEM, SAES),

    /* Square root: packed forms have one source (vvvv 1111b), scalar forms two. */
    VW("vsqrtps", ENC_VEX, 1, 0x51, P_NONE, WIG, LVEX, 4, AVX, F_FP, sqrtps),
    VW("vsqrtpd", ENC_VEX, 1, 0x51, P_66, WIG, LVEX, 8, AVX, F_FP, sqrtpd),
    VHWS("vsqrtss", ENC_VEX, 1, 0x51, P_F3, WIG, 4, AVX, F_FP, sqrtss),
    VHWS("vsqrtsd", ENC_VEX, 1, 0x51, P_F2, WIG, 8, AVX, F_FP, sqrtsd),
    VW("vsqrtps", ENC_EVEX, 1, 0x51, P_NONE, 0, LALL, 4, F512, ERM, sqrtps),
    VW("vsqrtpd", ENC_EVEX, 1, 0x51, P_66, 1, LALL, 8, F512, ERM, sqrtpd),
    VHWS("vsqrtss", ENC_EVEX, 1, 0x51, P_F3, 0, 4, F512, ERS, sqrtss),
    VHWS("vsqrtsd", ENC_EVEX, 1, 0x51, P_F2, 1, 8, F512, ERS, sqrtsd),

    /* Approximations (no MXCSR flags): VEX 12-bit, EVEX 14-bit. */
    VW("vrsqrtps", ENC_VEX, 1, 0x52, P_NONE, WIG, LVEX, 4, AVX, 0, rsqrtps),
    VHWS("vrsqrtss", ENC_VEX, 1, 0x52, P_F3, WIG, 4, AVX, 0, rsqrtss),
    VW("vrcpps", ENC_VEX, 1, 0x53, P_NONE, WIG, LVEX, 4, AVX, 0, rcpps),
    VHWS("vrcpss", ENC_VEX, 1, 0x53, P_F3, WIG, 4, AVX, 0, rcpss),
    EVEX1("rcp14", 2, 0x4c, 0x4d, F512, MM | F_BCST, MM, rcp14),
    EVEX1("rsqrt14", 2, 0x4e, 0x4f, F512, MM | F_BCST, MM, rsqrt14),

    LOGIC("and", 0x54, andp),
    LOGIC("andn", 0x55, andnp),
    LOGIC("or", 0x56, orp),
    LOGIC("xor", 0x57, xorp),

    /* Compares. */
    VHWI("vcmpps", ENC_VEX, 1, 0xc2, P_NONE, WIG, LVEX, 4, AVX, F_FP, cmpps),
    VHWI("vcmppd", ENC_VEX, 1, 0xc2, P_66, WIG, LVEX, 8, AVX, F_FP, cmppd),
    VHWSI("vcmpss", ENC_VEX, 1, 0xc2, P_F3, WIG, 4, AVX, F_FP, cmpss),
    VHWSI("vcmpsd", ENC_VEX, 1, 0xc2, P_F2, WIG, 8, AVX, F_FP, cmpsd),
    KCMP("vcmpps", P_NONE, 0, LALL, 4, F_BCST, S_VL, S_VL, cmpps_k),
    KCMP("vcmppd", P_66, 1, LALL, 8, F_BCST, S_VL, S_VL, cmppd_k),
    KCMP("vcmpss", P_F3, 0, LIG, 4, F_SCALAR, S_128, S_ELEM, cmpss_k),
    KCMP("vcmpsd", P_F2, 1, LIG, 8, F_SCALAR, S_128, S_ELEM, cmpsd_k),
    COMIS("vucomiss", ENC_VEX, 0x2e, P_NONE, WIG, 4, AVX, 0, ucomiss),
    COMIS("vucomisd", ENC_VEX, 0x2e, P_66, WIG, 8, AVX, 0, ucomisd),
    COMIS("vcomiss", ENC_VEX, 0x2f, P_NONE, WIG, 4, AVX, 0, comiss),
    COMIS("vcomisd", ENC_VEX, 0x2f, P_66, WIG, 8, AVX, 0, comisd),
    COMIS("vucomiss", ENC_EVEX, 0x2e, P_NONE, 0, 4, F512, F_SAE, ucomiss),
    COMIS("vucomisd", ENC_EVEX, 0x2e, P_66, 1, 8, F512, F_SAE, ucomisd),
    COMIS("vcomiss", ENC_EVEX, 0x2f, P_NONE, 0, 4, F512, F_SAE, comiss),
    COMIS("vcomisd", ENC_EVEX, 0x2f, P_66, 1, 8, F512, F_SAE, comisd),

    /* Rounding: VEX VROUND, EVEX VRNDSCALE (the same opcodes in map 3). */
    VWI("vroundps", ENC_VEX, 3, 0x08, P_66, WIG, LVEX, 4, AVX, F_FP, roundps),
    VWI("vroundpd", ENC_VEX, 3, 0x09, P_66, WIG, LVEX, 8, AVX, F_FP, roundpd),
    VHWSI("vroundss", ENC_VEX, 3, 0x0a, P_66, WIG, 4, AVX, F_FP, roundss),
    VHWSI("vroundsd", ENC_VEX, 3, 0x0b, P_66, WIG, 8, AVX, F_FP, roundsd),
    VWI("vrndscaleps", ENC_EVEX, 3, 0x08, P_66, 0, LALL, 4, F512, SAEM, rndscaleps),
    VWI("vrndscalepd", ENC_EVEX, 3, 0x09, P_66, 1, LALL, 8, F512, SAEM, rndscalepd),
    VHWSI("vrndscaless", ENC_EVEX, 3, 0x0a, P_66, 0, 4, F512, SAES, rndscaless),
    VHWSI("vrndscalesd", ENC_EVEX, 3, 0x0b, P_66, 1, 8, F512, SAES, rndscalesd),

    /* Horizontal and mixed (VEX only). */
    VHW("vaddsubpd", ENC_VEX, 1, 0xd0, P_66, WIG, LVEX, 8, AVX, F_FP, addsubpd),
    VHW("vaddsubps", ENC_VEX, 1, 0xd0, P_F2, WIG, LVEX, 4, AVX, F_FP, addsubps),
    VHW("vhaddpd", ENC_VEX, 1, 0x7c, P_66, WIG, LVEX, 8, AVX, F_FP, haddpd),
    VHW("vhaddps", ENC_VEX, 1, 0x7c, P_F2, WIG, LVEX, 4, AVX, F_FP, haddps),
    VHW("vhsubpd", ENC_VEX, 1, 0x7d, P_66, WIG, LVEX, 8, AVX, F_FP, hsubpd),
    VHW("vhsubps", ENC_VEX, 1, 0x7d, P_F2, WIG, LVEX, 4, AVX, F_FP, hsubps),
    VHWI("vdpps", ENC_VEX, 3, 0x40, P_66, WIG, LVEX, 4, AVX, F_FP, dpps),
    VHWI("vdppd", ENC_VEX, 3, 0x41, P_66, WIG, L128, 8, AVX, F_FP, dppd),

    /* AVX-512 F specials. */
    EVEX1("getexp", 2, 0x42, 0x43, F512, SAEM, SAES, getexp),
    EVEX2("scalef", 2, 0x2c, 0x2d, F512, ERM, ERS, scalef),
    EVEX1I("getmant", 0x26, 0x27, F512, SAEM, SAES, getmant),
    EVEX2I("fixupimm", 0x54, 0x55, F512, MM | F_BCST | F_SAE, MM | F_SAE, fixupimm),

    /* AVX-512 DQ specials. */
    EVEX2I("range", 0x50, 0x51, DQ, SAEM, SAES, range),
    EVEX1I("reduce", 0x56, 0x57, DQ, SAEM, SAES, reduce),
    FPCLASS("vfpclassps", 0x66, 0, LALL, 4, F_BCST, S_VL, fpclassps),
    FPCLASS("vfpclasspd", 0x66, 1, LALL, 8, F_BCST, S_VL, fpclasspd),
    FPCLASS("vfpclassss", 0x67, 0, LIG, 4, F_SCALAR, S_ELEM, fpclassss),
    FPCLASS("vfpclasssd", 0x67, 1, LIG, 8, F_SCALAR, S_ELEM, fpclasssd),
    E("vldmxcsr", ENC_VEX, 1, 0xae, P_NONE, WIG, L128, 4, X_AVX, 0, 2,
      O_NONE, 0, O_M, S_32, O_NONE, 0, O_NONE, 0, ldmxcsr),
    E("vstmxcsr", ENC_VEX, 1, 0xae, P_NONE, WIG, L128, 4, X_AVX, 0, 3,
      O_M, S_32, O_NONE, 0, O_NONE, 0, O_NONE, 0, stmxcsr),
    { .name = NULL },
};
