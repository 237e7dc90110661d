/*
 * The vector unit's instruction tables: lookup at translation time, operand sizes, and the
 * packing of decoded fields into the helper's 64-bit argument.
 */
#include "vector/vector.h"

static const VecOp *const tables[] = {
    vec_ops_move, vec_ops_int, vec_ops_shuffle, vec_ops_fp, vec_ops_fma, vec_ops_convert,
    vec_ops_mask, vec_ops_gather, vec_ops_aes, vec_ops_string,
};

static unsigned kind_needs_reg(unsigned kind)
{
    return kind == O_U || kind == O_R || kind == O_KW;
}

static unsigned kind_needs_mem(unsigned kind)
{
    return kind == O_M || kind == O_X;
}

static bool form_fits(const VecOp *op, unsigned mod_is_reg)
{
    const uint8_t kinds[4] = { op->dst, op->src1, op->src2, op->src3 };
    for (int i = 0; i < 4; i++) {
        if (mod_is_reg && kind_needs_mem(kinds[i])) {
            return false;
        }
        if (!mod_is_reg && kind_needs_reg(kinds[i])) {
            return false;
        }
    }
    return true;
}

const VecOp *vec_lookup(unsigned evex, unsigned map, unsigned opcode, unsigned pp, unsigned w,
                        unsigned vl, unsigned mod_is_reg, unsigned modrm_reg, unsigned code64)
{
    unsigned enc = evex ? ENC_EVEX : ENC_VEX;

    for (size_t t = 0; t < ARRAY_SIZE(tables); t++) {
        for (const VecOp *op = tables[t]; op->name; op++) {
            unsigned ow = w;
            if (!(op->enc & enc) || op->map != map || op->opcode != opcode || op->pp != pp) {
                continue;
            }
            if ((op->flags & F_W64) && !code64) {
                ow = 0;             /* W selects 64-bit general operands in 64-bit code only */
            }
            if (op->w >= 0 && (unsigned)op->w != ow) {
                continue;
            }
            if (!(op->lengths & LIG) && (vl > VL512 || !(op->lengths & (1 << vl)))) {
                continue;
            }
            if (op->modrm_reg >= 0 && (unsigned)op->modrm_reg != modrm_reg) {
                continue;
            }
            if (!form_fits(op, mod_is_reg)) {
                continue;
            }
            return op;
        }
    }
    return NULL;
}

unsigned vec_size_bytes(const VecOp *op, const VecInsn *in, unsigned size)
{
    unsigned vlbytes = 16u << in->vl;

    switch (size) {
    case S_VL:      return vlbytes;
    case S_HALF:    return vlbytes / 2;
    case S_QUARTER: return vlbytes / 4;
    case S_EIGHTH:  return vlbytes / 8;
    case S_ELEM:    return op->esize;
    case S_8:       return 1;
    case S_16:      return 2;
    case S_32:      return 4;
    case S_64:      return 8;
    case S_128:     return 16;
    case S_256:     return 32;
    case S_512:     return 64;
    case S_OSZ:     return (in->w && in->code64) ? 8 : 4;
    default:        g_assert_not_reached();
    }
}

/*
 * The elements masking covers: those of the vector length, or of the destination when it is
 * a fraction of the vector length (a conversion to a narrower format, VCVTPD2PS, VPMOVQD:
 * the mask has a bit per destination element, and a broadcast source element is the
 * source's size over that count).
 */
unsigned vec_nelem(const VecOp *op, const VecInsn *in)
{
    unsigned bytes = 16u << in->vl;

    if (!op->esize) {
        return 1;
    }
    if (op->dst == O_V || op->dst == O_H || op->dst == O_U || op->dst == O_W
        || op->dst == O_M) {
        switch (op->dsize) {
        case S_HALF: case S_QUARTER: case S_EIGHTH:
            bytes = vec_size_bytes(op, in, op->dsize);
            break;
        }
    }
    return bytes >= op->esize ? bytes / op->esize : 1;
}

/*
 * EVEX's compressed displacement: disp8 counts units of N bytes, N being the memory
 * operand's size (the SDM's tuple types all reduce to this), or one element when the
 * operand is a broadcast or a VSIB element.
 */
unsigned vec_disp8_scale(const VecOp *op, const VecInsn *in)
{
    const uint8_t kinds[4] = { op->dst, op->src1, op->src2, op->src3 };
    const uint8_t sizes[4] = { op->dsize, op->s1size, op->s2size, op->s3size };

    for (int i = 0; i < 4; i++) {
        switch (kinds[i]) {
        case O_X:
            return op->esize;
        case O_W: case O_M: case O_E:
            if (in->b) {        /* one element, the size exec.c's broadcast reads */
                return op->bsize ? op->bsize
                                 : vec_size_bytes(op, in, sizes[i]) / vec_nelem(op, in);
            }
            return vec_size_bytes(op, in, sizes[i]);
        }
    }
    return 1;
}

/* Field layout of the helper's 64-bit argument. */
#define FIELDS(X) \
    X(reg, 0, 5) X(vvvv, 5, 5) X(rm, 10, 5) X(mem, 15, 1) X(vl, 16, 2) X(w, 18, 1) \
    X(evex, 19, 1) X(aaa, 20, 3) X(z, 23, 1) X(b, 24, 1) X(rc, 25, 2) X(imm, 27, 8) \
    X(code64, 35, 1) X(vsib_index, 36, 5) X(vsib_scale, 41, 2) X(aflag32, 43, 1) X(seg, 44, 3)

uint64_t vec_pack(const VecInsn *in)
{
    uint64_t bits = 0;
#define PACK(f, at, n) bits |= (uint64_t)(in->f & ((1u << n) - 1)) << at;
    FIELDS(PACK)
#undef PACK
    return bits;
}

void vec_unpack(uint64_t bits, VecInsn *in)
{
#define UNPACK(f, at, n) in->f = (bits >> at) & ((1u << n) - 1);
    FIELDS(UNPACK)
#undef UNPACK
}
