/*
 * imacpro's vector unit: the VEX (AVX, AVX2, FMA, F16C) and EVEX (AVX-512 F, CD, BW, DQ,
 * VL) instructions of the Xeon W, added to Unicorn's x86 engine (QEMU 5.0's TCG, which has
 * neither).
 *
 * How an instruction runs:
 *   translate.c.inc  decodes the VEX/EVEX prefix, ModRM, address and immediate at translation
 *                    time and looks the instruction up in the tables (table.c). An encoding
 *                    that is not in a table raises #UD: the engine never runs an instruction
 *                    it does not implement. It emits one call of helper_vector with the
 *                    table entry, the decoded fields packed in 64 bits, the address and imm8.
 *   exec.c           helper_vector: the checks the SDM orders (#UD for CR4/XCR0, #NM), the
 *                    operands fetched (registers, memory with fault suppression under a mask,
 *                    embedded broadcast), the entry's function run, then the write-back
 *                    (merge or zero masking, zeroing above the vector length, stores that
 *                    fault before they write), and MXCSR flags or #XM.
 *   ops_*.c          the operations by kind, each with its table entries beside it.
 *
 * Every operation computes on whole 512-bit values (VecReg); the vector length, element size
 * and mask say which elements are live.
 */
#ifndef IMACPRO_VECTOR_H
#define IMACPRO_VECTOR_H

#include "qemu/osdep.h"
#include "cpu.h"
#include "fpu/softfloat.h"

typedef ZMMReg VecReg;

/* Lanes of a VecReg, little-endian element numbering on any host. */
#define U8(r, i) ((r)->ZMM_B(i))
#define U16(r, i) ((r)->ZMM_W(i))
#define U32(r, i) ((r)->ZMM_L(i))
#define U64(r, i) ((r)->ZMM_Q(i))

/* Encodings an entry accepts. */
enum { ENC_VEX = 1, ENC_EVEX = 2, ENC_BOTH = 3 };

/* Vector lengths, as the VL field encodes them (VEX.L; EVEX.L'L). */
enum { VL128 = 0, VL256 = 1, VL512 = 2 };
#define L128 (1 << VL128)
#define L256 (1 << VL256)
#define L512 (1 << VL512)
#define LVEX (L128 | L256)
#define LALL (L128 | L256 | L512)
#define LIG  0x80           /* length ignored (scalar and fixed-size operands) */

/*
 * Operand kinds: where an operand lives. The letters follow the SDM's opcode tables.
 *   V  ModRM.reg vector     H  VEX/EVEX.vvvv vector     W  ModRM.rm vector or memory
 *   U  ModRM.rm vector only M  memory only              L  vector in imm8[7:4] (VEX is4)
 *   G  ModRM.reg general    B  vvvv general             E  ModRM.rm general or memory
 *   R  ModRM.rm general only
 *   KV ModRM.reg opmask     KH vvvv opmask              KW ModRM.rm opmask (register only)
 *   X  VSIB memory (gathers, scatters)
 */
enum {
    O_NONE, O_V, O_H, O_W, O_U, O_M, O_L, O_G, O_B, O_E, O_R, O_KV, O_KH, O_KW, O_X,
};

/*
 * Operand sizes, relative to the vector length where they say so.
 *   S_VL   the vector length             S_HALF, S_QUARTER, S_EIGHTH   that fraction of it
 *   S_ELEM one element (entry's esize)   S_8 .. S_512   fixed sizes in bits
 *   S_OSZ  32 or 64 bits by VEX/EVEX.W (general registers; W ignored outside 64-bit code)
 */
enum {
    S_VL, S_HALF, S_QUARTER, S_EIGHTH, S_ELEM, S_8, S_16, S_32, S_64, S_128, S_256, S_512, S_OSZ,
};

/* Entry flags. */
#define F_IMM     0x0001    /* an imm8 follows ModRM */
#define F_FP      0x0002    /* computes in floating point: MXCSR flags, #XM, DE */
#define F_BCST    0x0004    /* EVEX.b with a memory operand broadcasts one element */
#define F_ER      0x0008    /* EVEX.b with register operands: embedded rounding (and SAE) */
#define F_SAE     0x0010    /* EVEX.b with register operands: suppress all exceptions */
#define F_MASK    0x0020    /* EVEX.aaa masks the destination's elements */
#define F_NOZERO  0x0040    /* EVEX.z is #UD (stores, opmask destinations) */
#define F_ALIGN   0x0080    /* the memory operand must be aligned to its size, else #GP */
#define F_SCALAR  0x0100    /* masking applies to element 0 only */
#define F_MEMMASK 0x0200    /* memory source elements load only where the mask is set */
#define F_FLAGS   0x0400    /* writes RFLAGS (CC_SRC, CC_OP_EFLAGS) */
#define F_K0ALL   0x0800    /* EVEX.aaa = 0 is #UD (gathers and scatters need a mask) */
#define F_KDEST   0x1000    /* destination is an opmask: masking zeroes, z is #UD */
#define F_W64     0x2000    /* W selects 64-bit general operands only in 64-bit code */
#define F_NOVEC   0x4000    /* touches no vector registers (opmask instructions) */
#define F_OWNMEM  0x8000    /* the operation reads or writes its memory operand itself, at
                               c->addr (masked moves, compress/expand, element-wise fault
                               suppression): fetch and write-back leave it alone */
#define F_RDI     0x10000   /* register form with an implicit DS:rDI memory operand
                               (VMASKMOVDQU): c->addr is its address */

/* Features an entry belongs to; XCR0 and CPUID gate them. */
enum { X_AVX, X_AVX2, X_FMA, X_F16C, X_AES, X_PCLMUL, X_AVX512F, X_AVX512CD, X_AVX512BW,
       X_AVX512DQ };

struct VecCtx;
typedef void VecFn(struct VecCtx *c);

typedef struct VecOp {
    const char *name;       /* the SDM mnemonic */
    uint8_t enc;            /* ENC_* */
    uint8_t map;            /* 1 = 0F, 2 = 0F38, 3 = 0F3A */
    uint8_t opcode;
    uint8_t pp;             /* 0 none, 1 66, 2 F3, 3 F2 */
    int8_t w;               /* 0, 1, or -1 (ignored) */
    uint8_t lengths;        /* L128 | L256 | L512 | LIG */
    int8_t modrm_reg;       /* ModRM.reg for group opcodes, -1 otherwise */
    uint8_t esize;          /* element size in bytes (masking, broadcast, disp8*N) */
    uint8_t bsize;          /* EVEX.b: the broadcast element's size in bytes where it is not
                               esize (VPACKSSDW: m32bcst, word elements); 0 = esize */
    uint8_t feature;        /* X_* */
    uint32_t flags;         /* F_* */
    uint8_t dst, src1, src2, src3;      /* O_* */
    uint8_t dsize, s1size, s2size, s3size; /* S_* */
    VecFn *fn;
} VecOp;

/* The decoded fields the translator hands the helper, packed into 64 bits. */
typedef struct VecInsn {
    unsigned reg;           /* ModRM.reg with R (and EVEX R'): 0-31 */
    unsigned vvvv;          /* with EVEX V': 0-31 */
    unsigned rm;            /* ModRM.rm with B (and EVEX X for registers): 0-31 */
    unsigned mem;           /* rm is memory */
    unsigned vl;            /* VL128, VL256, VL512 */
    unsigned w;
    unsigned evex;
    unsigned aaa, z, b;     /* EVEX mask register, zeroing, broadcast/rounding */
    unsigned rc;            /* EVEX.L'L when b is set on registers (rounding control) */
    unsigned imm;
    unsigned code64;        /* 64-bit code: W chooses 64-bit general operands */
    unsigned vsib_index;    /* VSIB: the index vector (0-31) */
    unsigned vsib_scale;
    unsigned aflag32;       /* 32-bit addressing (VSIB addresses wrap) */
    unsigned seg;           /* VSIB: segment register of the access */
} VecInsn;

uint64_t vec_pack(const VecInsn *in);
void vec_unpack(uint64_t bits, VecInsn *in);

/* What an operation sees. */
typedef struct VecCtx {
    CPUX86State *env;
    const VecOp *op;
    VecInsn in;
    unsigned vlbytes;       /* 16, 32 or 64 */
    unsigned nelem;         /* elements masked (vec_nelem): vlbytes / esize, or the
                               destination's when it is a fraction of vlbytes */
    uint64_t mask;          /* live elements (all ones without masking) */
    VecReg d;               /* destination: its old value in, the result out */
    VecReg s1, s2, s3;      /* sources (vector or the low bits of a general/opmask value) */
    uint64_t g;             /* general-register or opmask result, where dst is G/E/K* */
    uint64_t eflags;        /* F_FLAGS: the new arithmetic flags */
    float_status fp;        /* rounding and flags for F_FP operations */
    uint8_t denormal;       /* a denormal operand was seen (MXCSR.DE) */
    uintptr_t ra;           /* for faults raised inside an operation */
    target_ulong addr;      /* the memory operand's address (gathers, scatters) */
} VecCtx;

/* Tables: each ops_*.c file defines one, ended by an entry with name NULL. */
extern const VecOp vec_ops_move[];
extern const VecOp vec_ops_int[];
extern const VecOp vec_ops_shuffle[];
extern const VecOp vec_ops_fp[];
extern const VecOp vec_ops_fma[];
extern const VecOp vec_ops_convert[];
extern const VecOp vec_ops_mask[];
extern const VecOp vec_ops_gather[];
extern const VecOp vec_ops_aes[];
extern const VecOp vec_ops_string[];

const VecOp *vec_lookup(unsigned evex, unsigned map, unsigned opcode, unsigned pp, unsigned w,
                        unsigned vl, unsigned mod_is_reg, unsigned modrm_reg, unsigned code64);
unsigned vec_disp8_scale(const VecOp *op, const VecInsn *in);
unsigned vec_size_bytes(const VecOp *op, const VecInsn *in, unsigned size);
unsigned vec_nelem(const VecOp *op, const VecInsn *in);

/* Floating point helpers for ops (exec.c). */
float32 vec_f32_nan(VecCtx *c, float32 a, float32 b);
float64 vec_f64_nan(VecCtx *c, float64 a, float64 b);
void vec_f32_check_denormal(VecCtx *c, float32 a);
void vec_f64_check_denormal(VecCtx *c, float64 a);
float_status vec_fp_element(VecCtx *c);
float32 vec_f32_element(VecCtx *c, float_status *st, float32 r, bool inexact);
float64 vec_f64_element(VecCtx *c, float_status *st, float64 r, bool inexact);
void vec_fp_element_flags(VecCtx *c, float_status *st, bool tiny, bool inexact);
bool vec_fp_step(VecCtx *c);

/* Memory for operations that address it themselves (exec.c). */
target_ulong vec_vsib_address(VecCtx *c, int64_t index);
void vec_load(VecCtx *c, target_ulong addr, void *out, unsigned n);
void vec_store(VecCtx *c, target_ulong addr, const void *in, unsigned n);
void vec_probe_store(VecCtx *c, target_ulong addr, unsigned n);

/*
 * The SSE4.2 string compares (ops_string.c), shared by the VEX forms and the legacy
 * helpers: PCMPxSTRx of map 0F3A `opcode` (0x60 ESTRM, 0x61 ESTRI, 0x62 ISTRM, 0x63 ISTRI)
 * under imm8, on a = xmm1 and b = xmm2/m128. The explicit lengths are RAX/RDX when len64
 * (REX.W or VEX.W1 in 64-bit code), else EAX/EDX. Writes ECX or XMM0 (bits 128-511 zeroed
 * when vex, kept otherwise) and returns CF ZF SF OF as CC_* bits (AF, PF clear).
 */
uint32_t vec_pcmpstr(CPUX86State *env, const VecReg *a, const VecReg *b, unsigned opcode,
                     unsigned imm, bool len64, bool vex);

static inline bool vec_live(const VecCtx *c, unsigned i)
{
    return (c->mask >> i) & 1;
}

#endif
