/*
 * What ops_*.c files share: table-entry macros and element loops.
 *
 * An entry names its operands by kind and size (vector.h). The macros below spell the
 * common forms; `E` is the general one:
 *   E(name, enc, map, opcode, pp, w, lengths, esize, feature, flags, modrm_reg,
 *     dst, dsize, src1, s1size, src2, s2size, src3, s3size, fn)
 */
#ifndef IMACPRO_VECTOR_OPS_H
#define IMACPRO_VECTOR_OPS_H

#include "vector/vector.h"

#define P_NONE 0
#define P_66   1
#define P_F3   2
#define P_F2   3
#define WIG    (-1)
#define NOREG  (-1)

#define E(nm, en, mp, opc, p, wv, len, esz, feat, fl, mreg, D, DS, A, AS, B_, BS, C_, CS, f) \
    { .name = nm, .enc = en, .map = mp, .opcode = opc, .pp = p, .w = wv, .lengths = len,     \
      .modrm_reg = mreg, .esize = esz, .feature = feat, .flags = fl,                          \
      .dst = D, .dsize = DS, .src1 = A, .s1size = AS, .src2 = B_, .s2size = BS,               \
      .src3 = C_, .s3size = CS, .fn = f }

/* dst = op(vvvv, rm): the three-operand form of most arithmetic. */
#define VHW(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, fl, NOREG, O_V, S_VL, O_H, S_VL, O_W, S_VL, \
      O_NONE, 0, f)
/* dst = op(rm). */
#define VW(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, fl, NOREG, O_V, S_VL, O_W, S_VL, O_NONE, 0, \
      O_NONE, 0, f)
/* rm = reg (stores). */
#define WV(nm, en, mp, opc, p, wv, len, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, len, esz, feat, fl, NOREG, O_W, S_VL, O_V, S_VL, O_NONE, 0, \
      O_NONE, 0, f)
/* Scalar: dst[0] = op(vvvv[0], rm[0]), dst[127:n] = vvvv[127:n]. */
#define VHWS(nm, en, mp, opc, p, wv, esz, feat, fl, f) \
    E(nm, en, mp, opc, p, wv, LIG, esz, feat, (fl) | F_SCALAR, NOREG, O_V, S_128, O_H, \
      S_128, O_W, S_ELEM, O_NONE, 0, f)

/* Element loops over the whole vector length; masking is the write-back's. */
#define FOR_ELEMS(c, i) for (unsigned i = 0; i < (c)->nelem; i++)
/* Floating point computes live elements only (masked-off ones raise no flags). */
#define FOR_LIVE(c, i) for (unsigned i = 0; i < (c)->nelem; i++) if (vec_live(c, i))

#endif
