"""The vector unit's shuffle group (third_party/unicorn/vector/ops_shuffle.c) against silicon.

Every entry of the group: vpshufb/d/hw/lw, vshufps/pd, vshuff32x4/64x2, vshufi32x4/64x2,
vpalignr, valignd/q, the unpacks and packs, the blends (imm8, is4 variable, opmask), the
permutes (vpermilps/pd in both forms, vperm2f128/i128, vpermq/pd imm8 and variable,
vpermd/ps/w, vpermi2*/vpermt2*). Each runs in its VEX and EVEX forms at every vector length
the SDM gives it, register forms (registers 8-31 too, so R/R'/B/X/V' are exercised, and
registers named twice) and memory forms (displacements that compress as disp8*N and ones
that do not, unaligned), EVEX merge masking {%kN}, zeroing {%kN}{z} and embedded broadcast
{1toN} where the SDM allows them, several imm8 values (the special ones: vperm2f128's zeroing
bits, vpalignr's shifts of 16 and 32 bytes and more, valign counts above the element count).
The engine is compared with:
  - the answers recorded from silicon in vectors/shuffle.json.gz (always; recorded on an
    AVX-512 host with IMACPRO_RECORD_VECTORS=1), and
  - the live host for a further seeded set, when it has AVX-512 F/BW/DQ/VL.
Faults, on both sides: #PF for an operand reaching into the guard page after the data area;
for masked-off elements there, no fault for the vblendm family (the SDM's exception type E4
suppresses them) but #PF for everything else (E4NF: shuffles read their whole operand),
also with every element masked off; no #GP for unaligned operands (none of these needs
alignment); #UD for the encodings the SDM forbids (wrong W, wrong length, EVEX.b on
registers or on a form without broadcast, vvvv not 1111b where unused, VEX-only
instructions in EVEX).

Where this host (AMD Zen 4) is not the Xeon W, the cases are checked against the SDM's
outcome only (the fault, nothing changed; Case.sdm_only names the rule), neither recorded nor
compared with the live host:
  - VEX.W0 of vpermq/vpermpd imm8 (0F3A 00/01): the SDM (and Intel's XED) have W1 only, #UD;
    Zen 4 runs them;
  - EVEX.b on register forms of instructions that have a broadcast form: #UD by the SDM
    (Table 2-36: EVEX.b is broadcast for memory operands, rounding/SAE for FP reg-reg, else
    reserved); Zen 4 ignores it;
  - EVEX.W0 of 0F38 8D, 75, 7D (vpermb, vpermi2b, vpermt2b): AVX512_VBMI, which the
    Skylake-SP core lacks (#UD); Zen 4 has it.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass

import pytest

import vecharness as vh
from vecharness import State, compare, known_answers, run_engine

GROUP = "shuffle"
RECORDED_STATES = 3       # per masked line (one fewer unmasked), recorded
HOST_STATES = 4           # per line, further states against the live host
HOST_FEATURES = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2")
VL = {"x": 16, "y": 32, "z": 64}


@dataclass(frozen=True)
class Line:
    """One assembly line: its mnemonic (the test's name), its masking element size, and for
    memory forms the register and displacement, the bytes read (a broadcast's element size),
    whether it broadcasts, whether it is masked, and whether the SDM's exception type is
    E4NF (no fault suppression for masked-off elements)."""

    mnemonic: str
    text: str
    esize: int
    mem_reg: str = ""
    disp: int = 0
    size: int = 0
    bcst: bool = False
    masked: bool = False
    nf: bool = True
    evex: bool = False


# --- the forms ---------------------------------------------------------------------------------

def _reg(L: str, n: int) -> str:
    return f"%{L}mm{n}"


def _text(m: str, shape: str, L: str, imm, dst: str, src1: str, src2: str, r4: int = 4) -> str:
    """AT&T operand order (the reverse of the SDM's): shapes rvm (dst, vvvv, rm), rmi (dst,
    rm, imm8), rvmi (dst, vvvv, rm, imm8), rvmr (dst, vvvv, rm, register in imm8[7:4])."""
    if shape == "rvm":
        return f"{m} {src2}, {src1}, {dst}"
    if shape == "rmi":
        return f"{m} ${imm:#x}, {src2}, {dst}"
    if shape == "rvmi":
        return f"{m} ${imm:#x}, {src2}, {src1}, {dst}"
    if shape == "rvmr":
        return f"{m} {_reg(L, r4)}, {src2}, {src1}, {dst}"
    raise ValueError(shape)


def _vex(m: str, shape: str, es: int, lens: str = "xy", imms=(None,)) -> list[Line]:
    """VEX.128/256: low and high registers, two memory forms, every imm8."""
    out = []
    for L in lens:
        size = VL[L]
        for imm in imms if L == lens[-1] else imms[:1]:     # every imm8 at one length
            out.append(Line(m, _text(m, shape, L, imm, _reg(L, 2), _reg(L, 1), _reg(L, 3)), es))
        imm1, imm2 = imms[1 % len(imms)], imms[2 % len(imms)]
        out.append(Line(m, _text(m, shape, L, imm1, _reg(L, 10), _reg(L, 9), _reg(L, 13),
                                 r4=12), es))
        out.append(Line(m, _text(m, shape, L, imm2, _reg(L, 2), _reg(L, 1), "32(%rsi)",
                                 r4=7), es, "rsi", 32, size))
        out.append(Line(m, _text(m, shape, L, imms[0], _reg(L, 11), _reg(L, 14), "-0x24(%rdi)",
                                 r4=15), es, "rdi", -0x24, size))
    return out


def _evex(m: str, shape: str, es: int, lens: str = "xyz", imms=(None,), bcst: int = 0,
          nf: bool = True) -> list[Line]:
    """EVEX.128/256/512 (forced with {evex}): registers 0-31 unmasked, merging and zeroing;
    memory forms with compressed and full displacements; broadcasts (bcst: the element
    size) where allowed. Every form at the widest length, a selection at the others."""
    out = []
    pick = itertools.cycle(imms)
    for L in lens:
        size = VL[L]
        widest = L == lens[-1]
        r = functools.partial(_reg, L)

        def add(dst, src1, src2, mem_reg="", disp=0, msize=0, bc=False, imm=None, all_=False):
            if not (widest or all_):
                return
            t = _text(m, shape, L, next(pick) if imm is None else imm, dst, src1, src2)
            masked = "{%k" in dst
            out.append(Line(m, "{evex} " + t, es, mem_reg, disp, msize, bc, masked,
                            nf if masked and mem_reg else True, evex=True))

        add(r(2), r(1), r(3), all_=True)
        add(r(30) + "{%k1}", r(17), r(25), all_=True)
        add(r(5) + "{%k6}{z}", r(22), r(8))
        for imm in imms[3:]:                                  # every imm8 at one length
            add(r(4) + "{%k1}", r(6), r(19), imm=imm)
        add(r(2), r(1), f"{size}(%rsi)", "rsi", size, size)
        add(r(29) + "{%k1}", r(12), "0x24(%rdi)", "rdi", 0x24, size)
        add(r(3) + "{%k1}{z}", r(18), f"{-2 * size}(%rdi)", "rdi", -2 * size, size,
            all_=True)
        if bcst:
            n = size // bcst
            add(r(2), r(1), f"{3 * bcst}(%rsi){{1to{n}}}", "rsi", 3 * bcst, bcst, True)
            add(r(21) + "{%k1}{z}", r(9), f"{bcst}(%rdi){{1to{n}}}", "rdi", bcst, bcst, True,
                all_=True)
            add(r(7) + "{%k1}", r(27), f"0x22(%rsi){{1to{n}}}", "rsi", 0x22, bcst, True)
    return out


SHUF_IMMS = (0x1B, 0xE4, 0x00, 0x4E, 0xB1, 0xFF, 0x93, 0x6C)
PD_IMMS = (0x55, 0xAA, 0x00, 0xFF, 0x96, 0x3C)
LANE_IMMS = (0x1B, 0x4E, 0x00, 0xFF, 0xB1, 0x02, 0x01)
PALIGNR_IMMS = (5, 0, 16, 31, 32, 1, 15, 17, 0xFF, 8)
VALIGN_IMMS = (3, 0, 1, 5, 7, 15, 0xFF, 9)
BLEND_IMMS = (0x5A, 0x00, 0xFF, 0x81, 0x3C, 0xC6)
PERM2_IMMS = (0x31, 0x20, 0x00, 0x13, 0x02, 0x88, 0x08, 0x80, 0xFF, 0x37, 0x5B)
PERMQ_IMMS = (0x1B, 0x4E, 0x00, 0xFF, 0xD8, 0x93)

# mnemonic -> (element size, broadcast element size or 0)
UNPACKS = {"vpunpcklbw": (1, 0), "vpunpcklwd": (2, 0), "vpunpckldq": (4, 4),
           "vpunpcklqdq": (8, 8), "vpunpckhbw": (1, 0), "vpunpckhwd": (2, 0),
           "vpunpckhdq": (4, 4), "vpunpckhqdq": (8, 8)}
FP_UNPACKS = {"vunpcklps": (4, 4), "vunpcklpd": (8, 8), "vunpckhps": (4, 4),
              "vunpckhpd": (8, 8)}
PACKS = {"vpacksswb": (1, 0), "vpackssdw": (2, 4), "vpackuswb": (1, 0), "vpackusdw": (2, 4)}
BLENDM = {"vblendmps": (4, 4), "vblendmpd": (8, 8), "vpblendmd": (4, 4), "vpblendmq": (8, 8),
          "vpblendmb": (1, 0), "vpblendmw": (2, 0)}
PERM_VAR = {"vpermd": (4, 4), "vpermps": (4, 4), "vpermq": (8, 8), "vpermpd": (8, 8)}
PERM2 = {"w": (2, 0), "d": (4, 4), "q": (8, 8), "ps": (4, 4), "pd": (8, 8)}


@functools.cache
def lines() -> tuple[Line, ...]:
    out: list[Line] = []
    out += _vex("vpshufb", "rvm", 1) + _evex("vpshufb", "rvm", 1)
    for m, es, bc in (("vpshufd", 4, 4), ("vpshufhw", 2, 0), ("vpshuflw", 2, 0)):
        out += _vex(m, "rmi", es, imms=SHUF_IMMS) + _evex(m, "rmi", es, imms=SHUF_IMMS, bcst=bc)
    out += _vex("vshufps", "rvmi", 4, imms=SHUF_IMMS)
    out += _evex("vshufps", "rvmi", 4, imms=SHUF_IMMS, bcst=4)
    out += _vex("vshufpd", "rvmi", 8, imms=PD_IMMS)
    out += _evex("vshufpd", "rvmi", 8, imms=PD_IMMS, bcst=8)
    for m, es in (("vshuff32x4", 4), ("vshuff64x2", 8), ("vshufi32x4", 4), ("vshufi64x2", 8)):
        out += _evex(m, "rvmi", es, lens="yz", imms=LANE_IMMS, bcst=es)
    out += _vex("vpalignr", "rvmi", 1, imms=PALIGNR_IMMS)
    out += _evex("vpalignr", "rvmi", 1, imms=PALIGNR_IMMS)
    out += _evex("valignd", "rvmi", 4, imms=VALIGN_IMMS, bcst=4)
    out += _evex("valignq", "rvmi", 8, imms=VALIGN_IMMS, bcst=8)
    for m, (es, bc) in {**UNPACKS, **FP_UNPACKS, **PACKS}.items():
        out += _vex(m, "rvm", es) + _evex(m, "rvm", es, bcst=bc)
    # Blends.
    for m, es in (("vblendps", 4), ("vblendpd", 8), ("vpblendw", 2), ("vpblendd", 4)):
        out += _vex(m, "rvmi", es, imms=BLEND_IMMS)
    for m, es in (("vblendvps", 4), ("vblendvpd", 8), ("vpblendvb", 1)):
        out += _vex(m, "rvmr", es)
    for m, (es, bc) in BLENDM.items():
        out += _evex(m, "rvm", es, bcst=bc, nf=False)
    # Permutes.
    for m, es in (("vpermilps", 4), ("vpermilpd", 8)):
        out += _vex(m, "rvm", es) + _evex(m, "rvm", es, bcst=es)
        out += _vex(m, "rmi", es, imms=SHUF_IMMS) + _evex(m, "rmi", es, imms=SHUF_IMMS, bcst=es)
    for m in ("vperm2f128", "vperm2i128"):
        out += _vex(m, "rvmi", 16, lens="y", imms=PERM2_IMMS)
    for m in ("vpermq", "vpermpd"):
        out += _vex(m, "rmi", 8, lens="y", imms=PERMQ_IMMS)
        out += _evex(m, "rmi", 8, lens="yz", imms=PERMQ_IMMS, bcst=8)
    for m in ("vpermd", "vpermps"):
        out += _vex(m, "rvm", 4, lens="y")
    for m, (es, bc) in PERM_VAR.items():
        out += _evex(m, "rvm", es, lens="yz", bcst=bc)
    out += _evex("vpermw", "rvm", 2)
    for kind in ("i2", "t2"):
        for suffix, (es, bc) in PERM2.items():
            out += _evex(f"vperm{kind}{suffix}", "rvm", es, bcst=bc)
    # A register named twice (the destination read as a source, or sources alike).
    for m, text, es in (
            ("vpermi2d", "vpermi2d %zmm3, %zmm3, %zmm3{%k1}", 4),
            ("vpermi2q", "vpermi2q %zmm1, %zmm3, %zmm3", 8),
            ("vpermt2w", "vpermt2w %zmm2, %zmm3, %zmm3{%k2}{z}", 2),
            ("vpermt2ps", "vpermt2ps %ymm3, %ymm1, %ymm3", 4),
            ("vpshufb", "vpshufb %ymm2, %ymm2, %ymm2", 1),
            ("vpermd", "vpermd %zmm5, %zmm5, %zmm5", 4),
            ("vpalignr", "vpalignr $5, %xmm1, %xmm1, %xmm1", 1),
            ("vpunpcklbw", "vpunpcklbw %zmm1, %zmm1, %zmm5{%k1}", 1),
            ("vshuff32x4", "vshuff32x4 $0x1b, %zmm4, %zmm4, %zmm4", 4),
            ("vblendvps", "vblendvps %ymm2, %ymm2, %ymm1, %ymm2", 4),
            ("vperm2f128", "vperm2f128 $0x21, %ymm3, %ymm3, %ymm3", 16)):
        out.append(Line(m, text, es, masked="{%k" in text))
    return tuple({ln.text: ln for ln in out}.values())


def _widest(line: Line) -> bool:
    """The fault cases use the widest form of each encoding: ZMM, or YMM for VEX."""
    return "zmm" in line.text or ("ymm" in line.text and not line.evex)


# --- states ------------------------------------------------------------------------------------

def _state(rng: random.Random) -> State:
    st = vh.random_state(rng)
    for k in (1, 2, 6):                       # mostly random masks (some all-ones, 0, 0xFFFF)
        if rng.random() < 0.7:
            st.k[k] = rng.getrandbits(64)
    return st


def _states(line_text: str, count: int, salt: str) -> list[State]:
    rng = random.Random(f"{GROUP}-{salt}-{line_text}")
    return [_state(rng) for _ in range(count)]


# --- fault cases -------------------------------------------------------------------------------

def _at(line: Line, st: State, offset: int) -> State:
    """The state with the memory operand starting `offset` bytes before the guard page."""
    st = st.copy()
    st.gpr[line.mem_reg] = (vh.DATA_SIZE - line.disp - offset) & vh.MASK64
    return st


def _mask_reg(line: Line) -> int:
    return 6 if "{%k6}" in line.text else 1


# Where this host (AMD Zen 4) departs from the SDM: such cases are checked against the SDM's
# outcome only (the fault, nothing changed), not against silicon.
VEX_W0_VPERMQ = ("the SDM's opcode is VEX.256.66.0F3A.W1 00/01 (so is Intel XED's): W0 is "
                 "#UD; Zen 4 runs it")
EVEX_B_REGISTERS = ("EVEX.b on a register form without rounding or SAE is #UD (SDM Vol. 2 "
                    "Table 2-36, 'Other'; XED decodes these forms only with EVEX.b=0); Zen 4 "
                    "ignores it where the instruction has a broadcast form")
NO_VBMI = ("the Xeon W (Skylake-SP) has no AVX512_VBMI: EVEX.W0 of 0F38 8D/75/7D (vpermb, "
           "vpermi2b, vpermt2b) is #UD; Zen 4 has VBMI")


def fault_cases() -> list[tuple[Line, State, str, str]]:
    """Memory forms of the widest length near the guard page: (line, state, the SDM's
    outcome, the SDM rule silicon departs from or ""). Unmasked: reaching into the guard page
    faults, ending at it does not. Masked: only elements before the guard page live, or
    none: #PF for E4NF, no fault for E4."""
    out = []
    for line in lines():
        if not line.mem_reg or not _widest(line):
            continue
        rng = random.Random(f"{GROUP}-fault-{line.text}")
        base = _state(rng)
        k = _mask_reg(line)
        if line.masked:
            st = _at(line, base, line.size // 2 if line.bcst else line.size // 4)
            st.k[k] = 0                                 # every element masked off
            out.append((line, st, "#PF" if line.nf else "no fault", ""))
            if not line.bcst:                           # the upper half in the guard page,
                st = _at(line, base, line.size // 2)    # some of the lower half live
                st.k[k] = rng.getrandbits(64) & ((1 << line.size // 2 // line.esize) - 1) | 1
                out.append((line, st, "#PF" if line.nf else "no fault", ""))
            continue
        st = _at(line, base, line.size // 2)            # straddling the guard page
        out.append((line, st, "#PF", ""))
        st = _at(line, base, line.size)                 # ending where the guard page starts
        out.append((line, st, "no fault", ""))
    return out


def unaligned_cases() -> list[tuple[Line, State]]:
    """Memory operands at odd addresses: none of these instructions checks alignment."""
    out = []
    for line in lines():
        if line.mem_reg == "rsi" and not line.bcst and _widest(line):
            st = _states(line.text, 1, "unaligned")[0]
            st.gpr["rsi"] += 7
            out.append((line, st))
    return out


# --- encodings the SDM forbids, and ones it allows that the assembler does not make --------------

W, LBIT = 0x80, 0x04


def _evex_code(text: str) -> bytearray:
    code = bytearray(vh.assemble(["{evex} " + text])[0])
    assert code[0] == 0x62, text
    return code


def _vex3_code(text: str) -> bytearray:
    code = bytearray(vh.assemble(["{vex3} " + text])[0])
    assert code[0] == 0xC4, text
    return code


def _evex_edit(text: str, *, p1_set=0, p1_clear=0, p2_set=0, p2_clear=0,
               modrm=None, imm=None) -> bytes:
    """EVEX bytes: 62 P0 P1 P2 opcode ModRM ...; P1 = W vvvv(inverted) 1 pp, P2 = z L'L b
    V'(inverted) aaa."""
    code = _evex_code(text)
    code[2] = (code[2] | p1_set) & ~p1_clear
    code[3] = (code[3] | p2_set) & ~p2_clear
    if modrm is not None:
        code[5] = modrm(code[5])
    if imm is not None:
        code[-1] = imm
    return bytes(code)


def _vex_edit(text: str, *, set_=0, clear=0, imm=None) -> bytes:
    """VEX3 bytes: C4 RXBmmmmm WvvvvLpp opcode ModRM ...; vvvv inverted."""
    code = _vex3_code(text)
    code[2] = (code[2] | set_) & ~clear
    if imm is not None:
        code[-1] = imm
    return bytes(code)


def _as_evex(vex3: bytes) -> bytes:
    """A VEX3 instruction (registers 0-15) as EVEX with the same fields and length."""
    rxb_map, wvlp = vex3[1], vex3[2]
    p0 = (rxb_map & 0xE0) | 0x10 | (rxb_map & 0x03)          # R X B R'(inverted) 0 0 mm
    p1 = (wvlp & 0xF8) | 0x04 | (wvlp & 0x03)                # W vvvv 1 pp
    p2 = 0x08 | (wvlp & LBIT) << 3                           # V'=1, L'L from VEX.L
    return bytes([0x62, p0, p1, p2]) + vex3[3:]


def ud_encodings() -> list[tuple[str, bytes, str]]:
    """(name, bytes, the SDM rule silicon departs from or "")."""
    out: list[tuple[str, bytes, str]] = []
    # VEX.W1 where the SDM has W0 only.
    for text in ("vpermilps %ymm1, %ymm2, %ymm3", "vpermilpd %xmm1, %xmm2, %xmm3",
                 "vpermilps $0x1b, %ymm1, %ymm3", "vpermilpd $5, %xmm1, %xmm3",
                 "vblendvps %ymm4, %ymm1, %ymm2, %ymm3", "vblendvpd %xmm4, %xmm1, %xmm2, %xmm3",
                 "vpblendvb %ymm4, %ymm1, %ymm2, %ymm3", "vpblendd $0x5a, %ymm1, %ymm2, %ymm3",
                 "vperm2f128 $0x31, %ymm1, %ymm2, %ymm3",
                 "vperm2i128 $0x31, %ymm1, %ymm2, %ymm3", "vpermd %ymm1, %ymm2, %ymm3",
                 "vpermps %ymm1, %ymm2, %ymm3"):
        out.append((f"VEX.W1 {text}", _vex_edit(text, set_=W), ""))
    for text in ("vpermq $0x1b, %ymm1, %ymm3", "vpermpd $0x1b, %ymm1, %ymm3"):
        out.append((f"VEX.W0 {text}", _vex_edit(text, clear=W), VEX_W0_VPERMQ))
    # VEX.128 where the SDM has VEX.256 only.
    for text in ("vperm2f128 $0x31, %ymm1, %ymm2, %ymm3", "vperm2i128 $0x31, %ymm1, %ymm2, %ymm3",
                 "vpermq $0x1b, %ymm1, %ymm3", "vpermpd $0x1b, %ymm1, %ymm3",
                 "vpermd %ymm1, %ymm2, %ymm3", "vpermps %ymm1, %ymm2, %ymm3"):
        out.append((f"VEX.128 {text}", _vex_edit(text, clear=LBIT), ""))
    # VEX.vvvv not 1111b where there is no vvvv operand.
    for text in ("vpshufd $0x1b, %xmm1, %xmm3", "vpshufhw $0x1b, %ymm1, %ymm3",
                 "vpshuflw $0x1b, %xmm1, %xmm3", "vpermilps $0x1b, %xmm1, %xmm3",
                 "vpermilpd $1, %ymm1, %ymm3", "vpermq $0x1b, %ymm1, %ymm3"):
        out.append((f"VEX.vvvv {text}", _vex_edit(text, clear=0x20), ""))
    # EVEX.W the SDM does not list.
    for text in ("vpshufd $0x1b, %zmm1, %zmm3", "vshufps $0x1b, %zmm1, %zmm2, %zmm3",
                 "vunpcklps %zmm1, %zmm2, %zmm3", "vunpckhps %zmm1, %zmm2, %zmm3",
                 "vpunpckldq %zmm1, %zmm2, %zmm3", "vpunpckhdq %zmm1, %zmm2, %zmm3",
                 "vpackssdw %zmm1, %zmm2, %zmm3", "vpackusdw %zmm1, %zmm2, %zmm3",
                 "vpermilps %zmm1, %zmm2, %zmm3", "vpermilps $0x1b, %zmm1, %zmm3"):
        out.append((f"EVEX.W1 {text}", _evex_edit(text, p1_set=W), ""))
    for text in ("vshufpd $0x55, %zmm1, %zmm2, %zmm3", "vunpcklpd %zmm1, %zmm2, %zmm3",
                 "vunpckhpd %zmm1, %zmm2, %zmm3", "vpunpcklqdq %zmm1, %zmm2, %zmm3",
                 "vpunpckhqdq %zmm1, %zmm2, %zmm3", "vpermilpd %zmm1, %zmm2, %zmm3",
                 "vpermilpd $0x55, %zmm1, %zmm3", "vpermq $0x1b, %zmm1, %zmm3",
                 "vpermpd $0x1b, %zmm1, %zmm3"):
        out.append((f"EVEX.W0 {text}", _evex_edit(text, p1_clear=W), ""))
    # EVEX.128 where the SDM has 256 and 512 only; L'L = 3.
    for text in ("vshuff32x4 $1, %ymm1, %ymm2, %ymm3", "vshuff64x2 $1, %ymm1, %ymm2, %ymm3",
                 "vshufi32x4 $1, %ymm1, %ymm2, %ymm3", "vshufi64x2 $1, %ymm1, %ymm2, %ymm3",
                 "vpermq $0x1b, %ymm1, %ymm3{%k1}", "vpermpd $0x1b, %ymm1, %ymm3{%k1}",
                 "vpermd %ymm1, %ymm2, %ymm3{%k1}", "vpermps %ymm1, %ymm2, %ymm3{%k1}",
                 "vpermq %ymm1, %ymm2, %ymm3", "vpermpd %ymm1, %ymm2, %ymm3"):
        out.append((f"EVEX.128 {text}", _evex_edit(text, p2_clear=0x60), ""))
    for text in ("vpshufb %zmm1, %zmm2, %zmm3", "vpermi2d %zmm1, %zmm2, %zmm3"):
        out.append((f"EVEX L'L=3 {text}", _evex_edit(text, p2_set=0x60), ""))
    # EVEX.b on registers (no rounding in this group).
    for text in ("vpshufb %zmm1, %zmm2, %zmm3", "vpshufd $1, %zmm1, %zmm3",
                 "vshufps $1, %zmm1, %zmm2, %zmm3", "valignd $1, %zmm1, %zmm2, %zmm3",
                 "vpunpckldq %zmm1, %zmm2, %zmm3", "vpackssdw %zmm1, %zmm2, %zmm3",
                 "vblendmps %zmm1, %zmm2, %zmm3{%k1}", "vpermd %zmm1, %zmm2, %zmm3",
                 "vpermi2d %zmm1, %zmm2, %zmm3", "vpermilps %zmm1, %zmm2, %zmm3"):
        out.append((f"EVEX.b on registers {text}", _evex_edit(text, p2_set=0x10),
                    "" if text.startswith("vpshufb") else EVEX_B_REGISTERS))
    # EVEX.b on memory for forms without broadcast (byte and word elements).
    for text in ("vpshufb (%rsi), %zmm2, %zmm3", "vpshufhw $1, (%rsi), %zmm3",
                 "vpalignr $1, (%rsi), %zmm2, %zmm3", "vpunpcklbw (%rsi), %zmm2, %zmm3",
                 "vpacksswb (%rsi), %zmm2, %zmm3", "vpblendmb (%rsi), %zmm2, %zmm3{%k1}",
                 "vpblendmw (%rsi), %zmm2, %zmm3{%k1}", "vpermw (%rsi), %zmm2, %zmm3",
                 "vpermi2w (%rsi), %zmm2, %zmm3", "vpermt2w (%rsi), %zmm2, %zmm3"):
        out.append((f"EVEX.b on memory {text}", _evex_edit(text, p2_set=0x10), ""))
    # EVEX.vvvv or V' not 1111b where there is no vvvv operand.
    for text in ("vpshufd $1, %zmm1, %zmm3", "vpshufhw $1, %ymm1, %ymm3",
                 "vpermilps $1, %zmm1, %zmm3", "vpermq $1, %zmm1, %zmm3",
                 "vpermpd $1, %ymm1, %ymm3"):
        out.append((f"EVEX.vvvv {text}", _evex_edit(text, p1_clear=0x08), ""))
        out.append((f"EVEX.V' {text}", _evex_edit(text, p2_clear=0x08), ""))
    # VEX-only instructions in EVEX form (nothing at these opcodes in AVX-512).
    for text in ("vblendps $5, %ymm1, %ymm2, %ymm3", "vblendpd $5, %xmm1, %xmm2, %xmm3",
                 "vpblendw $5, %ymm1, %ymm2, %ymm3", "vpblendd $5, %xmm1, %xmm2, %xmm3",
                 "vblendvps %ymm4, %ymm1, %ymm2, %ymm3", "vpblendvb %xmm4, %xmm1, %xmm2, %xmm3",
                 "vperm2f128 $1, %ymm1, %ymm2, %ymm3", "vperm2i128 $1, %ymm1, %ymm2, %ymm3"):
        out.append((f"EVEX form of {text}", _as_evex(_vex3_code(text)), ""))
    # EVEX.W0 of vpermw, vpermi2w, vpermt2w: AVX512_VBMI's vpermb, vpermi2b, vpermt2b.
    for text in ("vpermw %zmm1, %zmm2, %zmm3", "vpermi2w %ymm1, %ymm2, %ymm3",
                 "vpermt2w (%rsi), %xmm2, %xmm3"):
        out.append((f"EVEX.W0 {text}", _evex_edit(text, p1_clear=W), NO_VBMI))
    return out


def wig_encodings() -> list[tuple[str, bytes]]:
    """Encodings the SDM allows that GNU as does not emit: W1 where W is ignored, and the low
    bits of the is4 byte (ignored)."""
    out = []
    for text in ("vpshufb %ymm1, %ymm2, %ymm3", "vpunpcklbw %xmm1, %xmm2, %xmm3",
                 "vpshufd $0x1b, %ymm1, %ymm3", "vpalignr $3, (%rsi), %xmm2, %xmm3",
                 "vpackusdw %ymm1, %ymm2, %ymm3", "vblendps $0x5a, %ymm1, %ymm2, %ymm3",
                 "vshufps $0x1b, %xmm1, %xmm2, %xmm3", "vunpckhpd %ymm1, %ymm2, %ymm3"):
        out.append((f"VEX.W1 {text}", _vex_edit(text, set_=W)))
    for text in ("vpshufb %zmm1, %zmm2, %zmm3{%k1}", "vpshufhw $0x1b, %zmm1, %zmm3",
                 "vpshuflw $0x1b, (%rsi), %ymm3{%k1}{z}", "vpalignr $7, %zmm1, %zmm2, %zmm3",
                 "vpunpcklbw %zmm1, %zmm2, %zmm3", "vpunpckhwd %zmm1, %zmm2, %zmm3",
                 "vpacksswb %zmm1, %zmm2, %zmm3", "vpackuswb %ymm1, %ymm2, %ymm3{%k1}"):
        out.append((f"EVEX.W1 {text}", _evex_edit(text, p1_set=W)))
    for text in ("vblendvps %ymm12, %ymm1, %ymm2, %ymm3", "vpblendvb %xmm9, (%rsi), %xmm2, %xmm3"):
        code = _vex3_code(text)
        out.append((f"is4 low bits {text}", bytes(code[:-1]) + bytes([code[-1] | 0x0F])))
    return out


# --- all cases, recorded once -------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    tag: str
    text: str
    code: bytes
    state: State
    expect: str = ""          # for fault cases: the SDM's outcome
    sdm_only: str = ""        # the SDM rule silicon departs from: not compared with it


@functools.cache
def cases() -> tuple[Case, ...]:
    all_lines = lines()
    texts = sorted({ln.text for ln in all_lines})
    codes = dict(zip(texts, vh.assemble(texts)))
    out = []
    for line in all_lines:
        count = RECORDED_STATES if line.masked else RECORDED_STATES - 1
        for st in _states(line.text, count, "recorded"):
            out.append(Case(line.mnemonic, line.text, codes[line.text], st))
    for line, st, expect, deviation in fault_cases():
        out.append(Case("faults", line.text, codes[line.text], st, expect, deviation))
    for line, st in unaligned_cases():
        out.append(Case("unaligned", line.text, codes[line.text], st, "no fault"))
    rng = random.Random(f"{GROUP}-encodings")
    for name, code, deviation in ud_encodings():
        out.append(Case("ud", name, code, _state(rng), "#UD", deviation))
    for name, code in wig_encodings():
        for _ in range(2):
            out.append(Case("wig", name, code, _state(rng), "no fault"))
    return tuple(out)


@functools.cache
def recorded() -> tuple[vh.Outcome | None, ...]:
    """Silicon's outcome of each case (None for the cases checked against the SDM only)."""
    kept = [c for c in cases() if not c.sdm_only]
    answers = iter(known_answers(GROUP, [(c.code, c.state) for c in kept]))
    return tuple(None if c.sdm_only else next(answers) for c in cases())


def _sdm_outcome(case: Case) -> vh.Outcome:
    """A fault the SDM gives: nothing changed (for #PF, at the guard page's start)."""
    fault = vh.EXPECTED_FAULT[case.expect]
    assert fault is not None, case.text
    return vh.Outcome(case.state.copy(), fault, vh.RECORDED_CAPS,
                      vh.DATA_SIZE if fault == 14 else None, f"the SDM: {case.sdm_only}")




def _check(picked, *, expect: bool = False) -> list[str]:
    """The engine against the recorded outcomes (and, with expect, silicon against the SDM's
    outcome named in the case)."""
    failures = []
    for case, answer in picked:
        if case.sdm_only:
            answer = _sdm_outcome(case)
        engine = run_engine(case.code, case.state)
        diffs = compare(answer, engine)
        if expect:
            diffs += vh.sdm_notes(answer, case.expect)
        if diffs:
            failures.append(vh.failure(case.text, case.code, case.state, (answer, engine),
                                       diffs))
            if len(failures) >= 4:
                break
    return failures


MNEMONICS = sorted({ln.mnemonic for ln in lines()})


@pytest.mark.parametrize("mnemonic", MNEMONICS)
def test_engine_matches_recorded_answers(mnemonic):
    picked = [(c, o) for c, o in zip(cases(), recorded()) if c.tag == mnemonic]
    assert picked
    failures = _check(picked)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("tag", ["faults", "unaligned", "ud", "wig"])
def test_faults_and_encodings_match_recorded_answers_and_the_sdm(tag):
    picked = [(c, o) for c, o in zip(cases(), recorded()) if c.tag == tag]
    assert picked
    failures = _check(picked, expect=True)
    assert not failures, "\n".join(failures)


def _host_ready() -> bool:
    caps = vh.host_caps()
    return vh.host_available() and caps.k_bits == 64 and caps.has(*HOST_FEATURES)


@pytest.mark.parametrize("mnemonic", MNEMONICS)
def test_engine_matches_live_host(mnemonic):
    if not _host_ready():
        pytest.skip("the host lacks AVX-512 F/BW/DQ/VL")
    picked = [ln for ln in lines() if ln.mnemonic == mnemonic]
    codes = vh.assemble([ln.text for ln in picked])
    failures = []
    for line, code in zip(picked, codes):
        failures += [f"{line.text}: {f}" for f in vh.sweep(code, _states(line.text, HOST_STATES,
                                                                         "host"))]
        if len(failures) >= 4:
            break
    assert not failures, "\n".join(failures)


def test_faults_and_encodings_match_live_host():
    if not _host_ready():
        pytest.skip("the host lacks AVX-512 F/BW/DQ/VL")
    failures = []
    for case in cases():
        if case.tag in ("faults", "unaligned", "ud", "wig") and not case.sdm_only:
            failures += [f"{case.text}: {f}" for f in vh.sweep(case.code, [case.state])]
            if len(failures) >= 4:
                break
    assert not failures, "\n".join(failures)


def test_cases_reach_every_outcome():
    """The recorded answers are not all faults or all unchanged: each fault kind the cases
    expect occurs, and the register forms changed their destinations."""
    seen = {c.expect: 0 for c in cases() if c.expect}
    for c, o in zip(cases(), recorded()):
        if c.expect and o and o.fault == vh.EXPECTED_FAULT[c.expect]:
            seen[c.expect] += 1
    assert all(seen.values()), seen
    changed = sum(o.state.zmm != c.state.zmm for c, o in zip(cases(), recorded())
                  if not c.expect)
    assert changed > 0.9 * sum(1 for c in cases() if not c.expect)


def test_every_mnemonic_of_the_group_is_tested():
    wanted = {"vpshufb", "vpshufd", "vpshufhw", "vpshuflw", "vshufps", "vshufpd",
              "vshuff32x4", "vshuff64x2", "vshufi32x4", "vshufi64x2", "vpalignr", "valignd",
              "valignq", "vblendps", "vblendpd", "vpblendw", "vpblendd", "vblendvps",
              "vblendvpd", "vpblendvb", "vpermilps", "vpermilpd", "vperm2f128", "vperm2i128",
              "vpermw"} | set(UNPACKS) | set(FP_UNPACKS) | set(PACKS) | set(BLENDM) \
        | set(PERM_VAR) | {f"vperm{k}{s}" for k in ("i2", "t2") for s in PERM2}
    assert wanted == set(MNEMONICS)
