"""The vector unit's floating-point group (ops_fp.c) against silicon.

Instructions, VEX (AVX) and EVEX (AVX-512 F; DQ where marked), packed and scalar, single and
double precision, in every form the SDM lists:
  VADD VSUB VMUL VDIV VMIN VMAX (PS PD SS SD), VSQRT (PS PD SS SD), VRCPPS/SS and
  VRSQRTPS/SS (VEX), VRCP14 and VRSQRT14 (PS PD SS SD), VAND VANDN VOR VXOR (PS PD; EVEX is
  DQ), VCMP (PS PD SS SD, all 32 predicates; EVEX into an opmask), VCOMISS/SD and
  VUCOMISS/SD, VROUND (VEX) and VRNDSCALE (EVEX) (PS PD SS SD), VADDSUBPS/PD, VHADDPS/PD,
  VHSUBPS/PD, VDPPS, VDPPD, VGETEXP, VGETMANT, VSCALEF, VFIXUPIMM (PS PD SS SD), and the DQ
  VRANGE, VREDUCE (PS PD SS SD) and VFPCLASS (PS PD SS SD, into an opmask).

Forms: VEX 128/256 register and memory; EVEX 128/256/512 register and memory, no mask,
merge masking {%k1}, zeroing {%k1}{z}, broadcast {1toN}, embedded rounding {rn,rd,ru,rz-sae}
or {sae} where the instruction has them; scalar forms likewise. States: lanes of the
instruction's format (edge values often: zeros, infinities, QNaN/SNaN, denormals, extremes),
random k1, and an MXCSR with a random rounding mode, DAZ and FZ sometimes, some exceptions
unmasked sometimes (so #XM happens) and sticky flags already set sometimes.

Two references: the outcomes recorded from silicon in vectors/fp.json.gz (always; record
with IMACPRO_RECORD_VECTORS=1 on a host with AVX-512 F/CD/BW/DQ/VL), and the live host for a
further seeded set of states when it has AVX-512 (or AVX for the VEX forms).

Where the host (an AMD Zen 4 when recorded) may differ from the SDM and the Xeon W:
  - VRCPPS/SS, VRSQRTPS/SS (SDM: relative error <= 1.5*2^-12) and VRCP14/VRSQRT14 (< 2^-14)
    are approximations whose exact bits are implementation-specific: those lines compare
    within the bound (NaN matches NaN), and test_approximations_are_within_the_sdm_bound
    checks the engine against the exact values.
  - VRCPPS/SS: inputs between 1.11111111110100000000000B*2^125 and
    1.00000000000110000000001B*2^126 in magnitude may or may not give a tiny (flushed)
    result, depending on the implementation (SDM); the states avoid them.
  - VREDUCE: the SDM's ROUND() signals PE whenever the rounding is inexact (unless imm8[3]);
    the host only when the result is: MXCSR.PE is left out there, PE kept masked
    (test_reduce_signals_precision_as_the_sdm_says checks the SDM's rule).
  - VFIXUPIMM: the SDM treats every exception as masked (no #XM); the host raises #XM for an
    unmasked IE/ZE report: those states keep IE and ZE masked (test_fixupimm_never_raises_xm).
  - EVEX.b on register operands of instructions that cannot raise #XF (VAND.., VRCP14,
    VRSQRT14, VFPCLASS) is #UD by the SDM (Table 2-36); the host ignores it
    (test_sdm_faults_where_the_host_deviates).

Directed cases (test_directed_cases_match_silicon) add what random states seldom reach:
tininess after rounding, FZ, unmasked underflow and overflow (PE only for a significand that
was rounded), exception precedence (QNaN over DE, divide-by-zero and invalid over DE,
unmasked pre-computation exceptions hiding post-computation flags), VDPPS's step order,
page faults at the guard page and EVEX fault suppression of masked-off elements, and #UD
encodings (wrong W, L'L = 11b, vvvv not 1111b, masking or zeroing where forbidden).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

import vecharness as vh
from vecharness import State, compare, run_engine, run_host

SEED = 20261201
KNOWN_STATES = 4        # recorded states per line
HOST_STATES = 12        # further states per line against the live host
POOL = 64               # states per pool (each line samples from its pool)


# --- lines ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    group: str                  # the test that checks it
    asm: str
    kind: str                   # lane format of the states: "f32" or "f64"
    approx: float | None = None # relative tolerance (approximations), else bit-exact
    evex: bool = False
    pool: str = "fp"            # "fp": lanes of the format; "mix": with random-bit registers
    force: int = 0              # MXCSR bits set in every state (exceptions kept masked)
    ignore: int = 0             # MXCSR bits left out of the comparison


def _imm(value: int | None) -> str:
    return "" if value is None else f"${value:#x}, "


def _vex_packed(group, mn, kind, nsrc=2, imm=None, lengths=("xmm", "ymm"), approx=None):
    out = []
    i = _imm(imm)
    for x in lengths:
        srcs = f"%{x}2, " if nsrc == 2 else ""
        out.append(Line(group, f"{mn} {i}%{x}1, {srcs}%{x}3", kind, approx))
        out.append(Line(group, f"{mn} {i}{16 if x == 'xmm' else 24}(%rsi), {srcs}%{x}3",
                        kind, approx))
    return out


def _vex_scalar(group, mn, kind, imm=None, approx=None):
    i = _imm(imm)
    size = 4 if kind == "f32" else 8
    return [Line(group, f"{mn} {i}%xmm1, %xmm2, %xmm3", kind, approx),
            Line(group, f"{mn} {i}{3 * size}(%rsi), %xmm2, %xmm3", kind, approx)]


def _evex_packed(group, mn, kind, nsrc=2, imm=None, rounding=None, approx=None, pool="fp",
                 bcst=True, suffix=""):
    """rounding: "er" (embedded rounding), "sae", or None. suffix: the memory form's size
    suffix (vfpclass)."""
    out = []
    i = _imm(imm)
    n = 4 if kind == "f32" else 8
    for x, count in (("xmm", 16 // n), ("ymm", 32 // n), ("zmm", 64 // n)):
        def srcs(a):
            return f"%{x}{a}, " if nsrc == 2 else ""
        msuf = {"xmm": "x", "ymm": "y", "zmm": "z"}[x] if suffix else ""
        out += [
            Line(group, f"{{evex}} {mn} {i}%{x}1, {srcs(2)}%{x}3", kind, approx, True, pool),
            Line(group, f"{mn} {i}%{x}17, {srcs(18)}%{x}19{{%k1}}", kind, approx, True, pool),
            Line(group, f"{mn} {i}%{x}1, {srcs(22)}%{x}3{{%k1}}{{z}}", kind, approx, True,
                 pool),
            Line(group, f"{mn}{msuf} {i}{2 * 64 if x == 'zmm' else 40}(%rsi), {srcs(2)}"
                        f"%{x}30{{%k1}}", kind, approx, True, pool),
        ]
        if bcst:
            out.append(Line(group, f"{mn} {i}{3 * n}(%rsi){{1to{count}}}, {srcs(2)}"
                                   f"%{x}3{{%k1}}{{z}}", kind, approx, True, pool))
    if rounding == "er":
        for rc in ("rn", "rd", "ru", "rz"):
            out.append(Line(group, f"{mn} {i}{{{rc}-sae}}, %zmm1, {'%zmm2, ' if nsrc == 2 else ''}"
                                   f"%zmm3{{%k1}}", kind, approx, True, pool))
    elif rounding == "sae":
        out.append(Line(group, f"{mn} {i}{{sae}}, %zmm1, {'%zmm2, ' if nsrc == 2 else ''}"
                               f"%zmm3", kind, approx, True, pool))
        out.append(Line(group, f"{mn} {i}{{sae}}, %zmm9, {'%zmm2, ' if nsrc == 2 else ''}"
                               f"%zmm3{{%k1}}{{z}}", kind, approx, True, pool))
    return out


def _evex_scalar(group, mn, kind, imm=None, rounding=None, approx=None, pool="fp"):
    i = _imm(imm)
    size = 4 if kind == "f32" else 8
    out = [
        Line(group, f"{{evex}} {mn} {i}%xmm1, %xmm2, %xmm3", kind, approx, True, pool),
        Line(group, f"{mn} {i}%xmm17, %xmm18, %xmm19{{%k1}}", kind, approx, True, pool),
        Line(group, f"{mn} {i}%xmm1, %xmm2, %xmm3{{%k1}}{{z}}", kind, approx, True, pool),
        Line(group, f"{mn} {i}{5 * size}(%rsi), %xmm2, %xmm3{{%k1}}", kind, approx, True, pool),
    ]
    if rounding == "er":
        for rc in ("rn", "rd", "ru", "rz"):
            out.append(Line(group, f"{mn} {i}{{{rc}-sae}}, %xmm1, %xmm2, %xmm3{{%k1}}", kind,
                            approx, True, pool))
    elif rounding == "sae":
        out.append(Line(group, f"{mn} {i}{{sae}}, %xmm1, %xmm2, %xmm3{{%k1}}{{z}}", kind,
                        approx, True, pool))
    return out


def _four(group, base, *, vex=True, evex=True, nsrc=2, imm=None, rounding=None,
          approx=None, evex_approx=None, prefix="v", pool="fp"):
    """ps, pd, ss, sd forms of `base` (mnemonic without v and suffix)."""
    out = []
    for suffix, kind in (("ps", "f32"), ("pd", "f64")):
        if vex:
            out += _vex_packed(group, f"{prefix}{base}{suffix}", kind, nsrc, imm,
                               approx=approx)
        if evex:
            out += _evex_packed(group, f"{prefix}{base}{suffix}", kind, nsrc, imm, rounding,
                                evex_approx, pool)
    for suffix, kind in (("ss", "f32"), ("sd", "f64")):
        if vex:
            out += _vex_scalar(group, f"{prefix}{base}{suffix}", kind, imm, approx)
        if evex:
            out += _evex_scalar(group, f"{prefix}{base}{suffix}", kind, imm, rounding,
                                evex_approx, pool)
    return out


def _compares(rng: random.Random) -> list[Line]:
    out = []
    for p in range(32):             # every predicate: VEX and EVEX, packed and scalar
        out += [Line("cmp", f"vcmpps ${p}, %ymm1, %ymm2, %ymm3", "f32"),
                Line("cmp", f"vcmppd ${p}, %xmm1, %xmm2, %xmm3", "f64"),
                Line("cmp", f"vcmpss ${p}, %xmm1, %xmm2, %xmm3", "f32"),
                Line("cmp", f"vcmpsd ${p}, 8(%rsi), %xmm2, %xmm3", "f64"),
                Line("cmp", f"vcmpps ${p}, %zmm1, %zmm2, %k2{{%k1}}", "f32", evex=True),
                Line("cmp", f"vcmppd ${p}, (%rsi), %zmm2, %k2", "f64", evex=True),
                Line("cmp", f"vcmpss ${p}, %xmm1, %xmm2, %k2{{%k1}}", "f32", evex=True),
                Line("cmp", f"vcmpsd ${p}, %xmm1, %xmm2, %k2", "f64", evex=True)]
    for mn, kind, n in (("vcmpps", "f32", 4), ("vcmppd", "f64", 8)):
        out += _vex_packed("cmp", mn, kind, imm=rng.randrange(32))
        for x, count in (("xmm", 16 // n), ("ymm", 32 // n), ("zmm", 64 // n)):
            p = rng.randrange(32)
            out += [Line("cmp", f"vcmp{mn[4:]} ${p}, %{x}17, %{x}18, %k2", kind, evex=True),
                    Line("cmp", f"vcmp{mn[4:]} ${p}, 24(%rsi), %{x}2, %k3{{%k1}}", kind,
                         evex=True),
                    Line("cmp", f"vcmp{mn[4:]} ${p}, {n}(%rsi){{1to{count}}}, %{x}2, "
                                f"%k2{{%k1}}", kind, evex=True)]
        out.append(Line("cmp", f"vcmp{mn[4:]} ${rng.randrange(32)}, {{sae}}, %zmm1, %zmm2, "
                               f"%k2{{%k1}}", kind, evex=True))
    for mn, kind in (("vcmpss", "f32"), ("vcmpsd", "f64")):
        out += _vex_scalar("cmp", mn, kind, imm=rng.randrange(32))
        out += [Line("cmp", f"vcmp{mn[4:]} ${rng.randrange(32)}, 12(%rsi), %xmm2, %k2{{%k1}}",
                     kind, evex=True),
                Line("cmp", f"vcmp{mn[4:]} ${rng.randrange(32)}, {{sae}}, %xmm1, %xmm2, %k2",
                     kind, evex=True)]
    return out


def _comis() -> list[Line]:
    out = []
    for mn, kind in (("comiss", "f32"), ("comisd", "f64"), ("ucomiss", "f32"),
                     ("ucomisd", "f64")):
        out += [Line("comis", f"v{mn} %xmm1, %xmm2", kind),
                Line("comis", f"v{mn} 8(%rsi), %xmm2", kind),
                Line("comis", f"{{evex}} v{mn} %xmm17, %xmm2", kind, evex=True),
                Line("comis", f"{{evex}} v{mn} 16(%rsi), %xmm30", kind, evex=True),
                Line("comis", f"v{mn} {{sae}}, %xmm1, %xmm2", kind, evex=True)]
    return out


def _imm_lines(group, mn, kind, imms, maker):
    out = []
    for imm in imms:
        out += maker(group, mn, kind, imm)
    return out


@functools.cache
def all_lines() -> tuple[Line, ...]:
    rng = random.Random(SEED)
    out: list[Line] = []
    for op in ("add", "sub", "mul", "div"):
        out += _four("arith", op, rounding="er")
    for op in ("min", "max"):
        out += _four("minmax", op, rounding="sae")
    out += _four("sqrt", "sqrt", nsrc=1, rounding="er")
    for i, (suffix, kind) in enumerate((("ps", "f32"), ("pd", "f64"))):
        for op in ("and", "andn", "or", "xor"):
            out += _vex_packed("logic", f"v{op}{suffix}", kind)
            out += _evex_packed("logic", f"v{op}{suffix}", kind)
    # Approximations: within the SDM's bound of each other (see the module docstring).
    r12 = 1.5 * 2**-12 + 2**-22
    r14 = 2**-14 + 2**-22
    for op in ("rcp", "rsqrt"):
        out += _vex_packed("approx", f"v{op}ps", "f32", nsrc=1, approx=r12)
        out += _vex_scalar("approx", f"v{op}ss", "f32", approx=r12)
        for suffix, kind in (("ps", "f32"), ("pd", "f64")):
            out += _evex_packed("approx", f"v{op}14{suffix}", kind, nsrc=1, approx=r14)
        for suffix, kind in (("ss", "f32"), ("sd", "f64")):
            out += _evex_scalar("approx", f"v{op}14{suffix}", kind, approx=r14)
    out += _compares(rng)
    out += _comis()
    # VROUND: every rounding control, with and without the precision suppression bit.
    for suffix, kind in (("ps", "f32"), ("pd", "f64")):
        for imm in range(16):
            out.append(Line("round", f"vround{suffix} ${imm}, %ymm1, %ymm3", kind))
        out += _vex_packed("round", f"vround{suffix}", kind, nsrc=1, imm=rng.randrange(16))
    for suffix, kind in (("ss", "f32"), ("sd", "f64")):
        for imm in range(16):
            out.append(Line("round", f"vround{suffix} ${imm}, %xmm1, %xmm2, %xmm3", kind))
        out += _vex_scalar("round", f"vround{suffix}", kind, imm=rng.randrange(16))
    # VRNDSCALE and VREDUCE: fraction bits (imm8[7:4]), rounding controls, SPE.
    for op, group in (("rndscale", "round"), ("reduce", "reduce")):
        for suffix, kind in (("ps", "f32"), ("pd", "f64")):
            for imm in rng.sample(range(256), 12):
                out.append(Line(group, f"v{op}{suffix} ${imm:#x}, %zmm1, %zmm3{{%k1}}", kind,
                                evex=True))
            out += _evex_packed(group, f"v{op}{suffix}", kind, 1, rng.randrange(256), "sae")
        for suffix, kind in (("ss", "f32"), ("sd", "f64")):
            for imm in rng.sample(range(256), 6):
                out.append(Line(group, f"v{op}{suffix} ${imm:#x}, %xmm1, %xmm2, %xmm3", kind,
                                evex=True))
            out += _evex_scalar(group, f"v{op}{suffix}", kind, rng.randrange(256), "sae")
    # Reserved immediate bits are ignored: VROUND imm8[7:4], VGETMANT/VRANGE imm8[7:4],
    # VCMP imm8[7:5].
    out += [Line("round", "vroundps $0xf3, %ymm1, %ymm3", "f32"),
            Line("round", "vroundsd $0x5c, %xmm1, %xmm2, %xmm3", "f64"),
            Line("getmant", "vgetmantps $0xf5, %zmm1, %zmm3", "f32", evex=True),
            Line("range", "vrangepd $0xf5, %zmm1, %zmm2, %zmm3", "f64", evex=True),
            Line("cmp", "vcmpps $0xe3, %ymm1, %ymm2, %ymm3", "f32"),
            Line("cmp", "vcmppd $0x67, %zmm1, %zmm2, %k2", "f64", evex=True)]
    for op in ("addsub", "hadd", "hsub"):
        for suffix, kind in (("ps", "f32"), ("pd", "f64")):
            out += _vex_packed("horizontal", f"v{op}{suffix}", kind)
    for imm in rng.sample(range(256), 10) + [0xff, 0xf1]:
        out.append(Line("dot", f"vdpps ${imm:#x}, %ymm1, %ymm2, %ymm3", "f32"))
    out += _vex_packed("dot", "vdpps", "f32", imm=rng.randrange(256))
    for imm in (0x31, 0x32, 0x33, 0x13, 0x23, 0x03, 0x30, 0xff):
        out.append(Line("dot", f"vdppd ${imm:#x}, %xmm1, %xmm2, %xmm3", "f64"))
    out.append(Line("dot", "vdppd $0x33, 16(%rsi), %xmm2, %xmm3", "f64"))
    out += _four("getexp", "getexp", vex=False, nsrc=1, rounding="sae")
    for imm in range(16):           # every interval and sign control
        out.append(Line("getmant", f"vgetmantps ${imm}, %zmm1, %zmm3{{%k1}}", "f32", evex=True))
        out.append(Line("getmant", f"vgetmantpd ${imm}, %zmm1, %zmm3", "f64", evex=True))
        out.append(Line("getmant", f"vgetmantss ${imm}, %xmm1, %xmm2, %xmm3", "f32", evex=True))
        out.append(Line("getmant", f"vgetmantsd ${imm}, %xmm1, %xmm2, %xmm3", "f64", evex=True))
    out += _four("getmant", "getmant", vex=False, nsrc=1, imm=rng.randrange(16),
                 rounding="sae")
    out += _four("scalef", "scalef", vex=False, rounding="er")
    for _ in range(6):
        out += _four("fixupimm", "fixupimm", vex=False, imm=rng.randrange(256),
                     rounding="sae", pool="mix")
    for imm in range(16):           # every operation and sign control
        out.append(Line("range", f"vrangeps ${imm}, %zmm1, %zmm2, %zmm3{{%k1}}", "f32",
                        evex=True))
        out.append(Line("range", f"vrangepd ${imm}, %zmm1, %zmm2, %zmm3", "f64", evex=True))
        out.append(Line("range", f"vrangess ${imm}, %xmm1, %xmm2, %xmm3", "f32", evex=True))
        out.append(Line("range", f"vrangesd ${imm}, %xmm1, %xmm2, %xmm3{{%k1}}", "f64",
                        evex=True))
    out += _four("range", "range", vex=False, imm=rng.randrange(16), rounding="sae")
    for suffix, kind in (("ps", "f32"), ("pd", "f64")):
        for imm in (1, 2, 4, 8, 16, 32, 64, 128, 0xff, rng.randrange(256)):
            out.append(Line("fpclass", f"vfpclass{suffix} ${imm:#x}, %zmm1, %k2{{%k1}}", kind,
                            evex=True))
        n = 4 if kind == "f32" else 8
        for x, count in (("xmm", 16 // n), ("ymm", 32 // n), ("zmm", 64 // n)):
            imm = rng.randrange(256)
            out += [Line("fpclass", f"vfpclass{suffix} ${imm:#x}, %{x}17, %k2", kind,
                         evex=True),
                    Line("fpclass", f"vfpclass{suffix}{x[0]} ${imm:#x}, 64(%rsi), %k3{{%k1}}",
                         kind, evex=True),
                    Line("fpclass", f"vfpclass{suffix} ${imm:#x}, {n}(%rsi){{1to{count}}}, "
                                    f"%k2{{%k1}}", kind, evex=True)]
    for suffix, kind in (("ss", "f32"), ("sd", "f64")):
        for imm in (1, 2, 4, 8, 16, 32, 64, 128, 0xff):
            out.append(Line("fpclass", f"vfpclass{suffix} ${imm:#x}, %xmm1, %k2{{%k1}}", kind,
                            evex=True))
        out.append(Line("fpclass", f"vfpclass{suffix} $0xa5, 8(%rsi), %k2", kind, evex=True))
    return tuple(_adjusted(line) for line in out)


# SDM Vol. 2 VREDUCE: "ROUND(2^M*SRC, SPE, ...)" signals PE when the rounding is inexact
# (unless imm8[3] = 1, SPE), as VRNDSCALE does; the host sets PE only when the reduced result
# itself is inexact. Those lines keep PE masked and leave MXCSR.PE out.
_REDUCE = dict(force=0x1000, ignore=0x20)
# SDM Vol. 2 VFIXUPIMM: "MXCSR mask bits are ignored and are treated as if all mask bits are
# set to masked response": no #XM for the IE and ZE imm8 reports; the host raises #XM when
# they are unmasked. Those lines keep IE and ZE masked (test_fixupimm_never_raises_xm).
_FIXUPIMM = dict(force=0x280)


def _adjusted(line: Line) -> Line:
    if line.asm.startswith("vreduce") or " vreduce" in line.asm:
        return dataclasses.replace(line, **_REDUCE)
    if "vfixupimm" in line.asm:
        return dataclasses.replace(line, **_FIXUPIMM)
    return line


GROUPS = ("arith", "minmax", "sqrt", "logic", "approx", "cmp", "comis", "round", "reduce",
          "horizontal", "dot", "getexp", "getmant", "scalef", "fixupimm", "range", "fpclass")


# --- states ------------------------------------------------------------------------------------

def fp_mxcsr(rng: random.Random) -> int:
    """A random rounding mode; FZ and DAZ sometimes; some exceptions unmasked sometimes (so
    #XM happens); sticky flags already set sometimes."""
    mxcsr = rng.randrange(4) << 13 | 0x1F80
    if rng.random() < 0.3:
        mxcsr |= 1 << 15
    if rng.random() < 0.3:
        mxcsr |= 1 << 6
    if rng.random() < 0.25:
        mxcsr &= ~(rng.getrandbits(6) << 7)
    if rng.random() < 0.15:
        mxcsr |= rng.getrandbits(6)
    return mxcsr


_RCP_BAND = (0x7E7FE800, 0x7E800C02)    # VRCPPS: |x| in [1.1111111111010B*2^125, ...]


def _tame(state: State) -> State:
    """Moves f32 lanes out of VRCPPS's implementation-defined band (module docstring)."""
    def fix(word: int) -> int:
        return word ^ 0x04000000 if _RCP_BAND[0] <= word & 0x7FFFFFFF < _RCP_BAND[1] else word

    for r in range(32):
        v = state.zmm[r]
        lanes = [fix(v >> (32 * i) & 0xFFFFFFFF) for i in range(16)]
        state.zmm[r] = sum(lane << (32 * i) for i, lane in enumerate(lanes))
    mem = bytearray(state.mem)
    for off in range(0, len(mem), 4):
        word = int.from_bytes(mem[off:off + 4], "little")
        mem[off:off + 4] = fix(word).to_bytes(4, "little")
    state.mem = bytes(mem)
    return state


@functools.cache
def pool(name: str, kind: str, seed: int) -> tuple[State, ...]:
    rng = random.Random(f"{seed}-{name}-{kind}")
    kinds = (kind,) if name == "fp" else (kind, kind, "bits", "int32")
    return tuple(_tame(vh.random_state(rng, kinds=kinds, mxcsr=fp_mxcsr(rng)))
                 for _ in range(POOL))


def states_for(index: int, line: Line, seed: int, count: int) -> list[State]:
    rng = random.Random(f"{seed}-{index}-{line.asm}")
    states = rng.sample(pool(line.pool, line.kind, seed), count)
    if line.force:
        states = [dataclasses.replace(s.copy(), mxcsr=s.mxcsr | line.force) for s in states]
    return states


def adjusted_reference(line: Line, reference: vh.Outcome, engine: vh.Outcome) -> vh.Outcome:
    """The reference with the MXCSR bits the line leaves out taken from the engine."""
    if not line.ignore:
        return reference
    state = reference.state.copy()
    state.mxcsr = (state.mxcsr & ~line.ignore) | (engine.state.mxcsr & line.ignore)
    return dataclasses.replace(reference, state=state)


@functools.cache
def assembled() -> dict[str, bytes]:
    lines = all_lines()
    return dict(zip((line.asm for line in lines), vh.assemble([line.asm for line in lines])))


def options(line: Line) -> dict:
    opts = {"lane_bits": 32 if line.kind == "f32" else 64}
    if line.approx:
        opts["fp_approx"] = (line.kind, line.approx)
    return opts


# --- directed cases: the boundaries random states seldom reach, faults, #UD -------------------

@dataclass(frozen=True)
class Special:
    name: str
    asm: str | None             # assembled, or raw `code`
    state: State = field(compare=False)
    lane_bits: int = 32
    evex: bool = True
    code: bytes = b""
    sdm_fault: int | None = None    # the SDM's fault where the host deviates (not recorded)


def _f32(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _f64(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _lanes(values, width: int) -> int:
    """A 512-bit register from lane values (repeated to fill it)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    count = 512 // width
    return sum((values[i % len(values)] & ((1 << width) - 1)) << (width * i)
               for i in range(count))


def _value_state(a, b, mxcsr, width, c=0, k1=0xFFFF) -> State:
    state = State.blank()
    state.zmm[1], state.zmm[2], state.zmm[3] = (_lanes(a, width), _lanes(b, width),
                                                _lanes(c, width))
    state.zmm[9] = _lanes(0x5A5A5A5A5A5A5A5A, 64)
    state.mxcsr = mxcsr
    state.k[1] = k1
    return state


# MXCSR values: all masked, FZ, DAZ, and one exception unmasked.
ALL, FZ, DAZ = 0x1F80, 0x9F80, 0x1FC0
NO_IM, NO_DM, NO_ZM, NO_OM, NO_UM, NO_PM = (0x1F80 & ~(1 << b) for b in range(7, 13))


def _value_cases() -> list[Special]:
    """(name, instruction, src1 lanes (xmm2), src2 lanes (xmm1), MXCSR values): xmm3 gets
    the result. Lane values are repeated across the register."""
    table = [
        # Tininess after rounding: the exact product (1 - 2^-25) * 2^-126 rounds to the
        # smallest normal: not tiny, so no UE, and FZ does not flush it.
        ("tiny-boundary-f32", "vmulps %zmm1, %zmm2, %zmm3", 32, 0x3A918E00, 0x05612000,
         (ALL, FZ, NO_UM, 0x9780)),
        ("tiny-boundary-f64", "vmulpd %zmm1, %zmm2, %zmm3", 64, 0x3E08000000000000,
         0x01F5555555555555, (ALL, FZ, NO_UM)),
        # An exact tiny result: no UE when masked; UE (#XM) when unmasked; FZ flushes it.
        ("tiny-exact-f32", "vaddps %zmm1, %zmm2, %zmm3", 32, 1, 1,
         (ALL, FZ, NO_UM, NO_UM | 0x8000)),
        ("tiny-exact-f64", "vaddpd %zmm1, %zmm2, %zmm3", 64, 1, 1, (ALL, FZ, NO_UM)),
        # Tiny and inexact: UE and PE masked; unmasked, UE alone (exact with an unbounded
        # exponent) or UE and PE.
        ("tiny-inexact-f32", "vmulps %zmm1, %zmm2, %zmm3", 32, 0x1C800000, 0x1C800001,
         (ALL, FZ, NO_UM, NO_UM | 0x8000, NO_PM)),
        ("tiny-inexact-f32b", "vmulps %zmm1, %zmm2, %zmm3", 32, 0x1C800001, 0x1C800001,
         (ALL, NO_UM)),
        ("tiny-inexact-f64", "vmulpd %zmm1, %zmm2, %zmm3", 64, 0x1E30000000000000,
         0x1E30000000000001, (ALL, FZ, NO_UM)),
        ("tiny-inexact-f64b", "vdivpd %zmm1, %zmm2, %zmm3", 64, 0x4008000000000000,
         0x0010000000000001, (ALL, NO_UM, NO_UM | 0x8000)),
        # Overflow: unmasked, OE with PE only when the significand was rounded.
        ("overflow-f32", "vmulps %zmm1, %zmm2, %zmm3", 32, [0x71800000, 0x71800001],
         [0x71800000, 0x71800001], (ALL, NO_OM, NO_OM | 0x6000, NO_PM)),
        ("overflow-f64", "vmulpd %zmm1, %zmm2, %zmm3", 64, [0x6570000000000000,
         0x6570000000000001], [0x6570000000000000, 0x6570000000000001], (ALL, NO_OM)),
        ("overflow-add-f64", "vaddpd %zmm1, %zmm2, %zmm3", 64, 0x7FEFFFFFFFFFFFFF,
         [0x7CA0000000000000, 0x7CA0000000000001, 0x0000000000000001], (ALL, NO_OM)),
        ("sqrt-tiny-f64", "vsqrtpd %zmm1, %zmm3", 64, 0, [1, 0x0000000000000007], (ALL,)),
        # Precedence: a QNaN or SNaN operand hides DE; divide by zero and invalid hide DE.
        ("nan-denormal", "vaddps %zmm1, %zmm2, %zmm3", 32, [1, 0x7FC00000, 1, 0x7F800001],
         [0x7FC00000, 1, 0x7F800001, 2], (ALL, NO_DM)),
        ("denormal-by-zero", "vdivps %zmm1, %zmm2, %zmm3", 32, [1, 0, 0x7F800000], 0,
         (ALL, DAZ, NO_ZM)),
        ("sqrt-negative-denormal", "vsqrtps %zmm1, %zmm3", 32, 0, 0x80000001, (ALL, DAZ)),
        ("inf-times-denormal", "vmulpd %zmm1, %zmm2, %zmm3", 64, 0x7FF0000000000000, 1,
         (ALL, DAZ)),
        # Pre-computation exceptions unmasked: their flags alone (no PE from other lanes).
        ("unmasked-pre", "vaddps %zmm1, %zmm2, %zmm3", 32, [1, 0x3F800000, 0x7F800001],
         [0x3F800000, 0x30800001, 0], (NO_DM, NO_IM, NO_PM)),
        ("unmasked-pre-post", "vmulps %zmm1, %zmm2, %zmm3", 32, [0, 0x71800001],
         [0x7F800000, 0x71800001], (NO_OM, NO_IM, 0x1F80 & ~0x480)),
        # MIN/MAX: the second source beside a NaN, flushed under DAZ.
        ("minmax-daz", "vminps %zmm1, %zmm2, %zmm3", 32, [0x7FC00000, 0x80000001, 0, 0x80000000],
         [0x80000001, 0x7F800001, 0x80000000, 0], (ALL, DAZ, NO_IM)),
        # Embedded rounding suppresses every exception (masked responses: FZ flushes).
        ("er-suppress", "vmulps {rz-sae}, %zmm1, %zmm2, %zmm3", 32, [0x7F800001, 0x1C800000],
         [0, 0x1C800001], (0x0000, 0x8000, 0x9780)),
        ("sae-compare", "vcmpps $0x11, {sae}, %zmm1, %zmm2, %k2", 32, 0x7FC00000, 1,
         (0x0000,)),
        # VSCALEF: the scaled significand is exact: unmasked OE/UE without PE.
        ("scalef-range", "vscalefps %zmm1, %zmm2, %zmm3", 32, [0x3FC00001, 0x3FC00000],
         [_f32(200.0), _f32(-140.0)], (ALL, NO_OM, NO_UM, FZ)),
        ("scalef-nan-inf", "vscalefpd %zmm1, %zmm2, %zmm3", 64,
         [0x7FF8000000000001, 0x7FF8000000000001, 0x7FF0000000000001, 0, 0x7FF0000000000000,
          0x0000000000000003, 0xFFF0000000000000, 0],
         [0x7FF0000000000000, 0xFFF0000000000000, 0xFFF0000000000000, 0x7FF0000000000000,
          0xFFF0000000000000, 0x8000000000000001, 0x4000000000000000, 0x7FF4000000000000],
         (ALL, DAZ)),
        # COMIS signals a QNaN, UCOMIS only an SNaN.
        ("comis-qnan", "vcomiss %xmm1, %xmm2", 32, 1, 0x7FC00000, (ALL, NO_IM, NO_DM)),
        ("ucomis-qnan", "vucomisd %xmm1, %xmm2", 64, 1, 0x7FF8000000000000, (NO_IM, NO_DM)),
        ("ucomis-snan", "vucomisd %xmm1, %xmm2", 64, 1, 0x7FF0000000000001, (NO_IM,)),
        # VDPPS: each step's flags, in order (an intermediate denormal is an operand).
        ("dpps-steps", "vdpps $0xff, %xmm1, %xmm2, %xmm3", 32,
         [0x1C800000, 0x3F800000, 0x7F800000, 0], [0x1C800000, 0x3F800000, 0, 0x3F800000],
         (ALL, NO_IM, NO_UM, NO_DM, DAZ, FZ)),
    ]
    out = []
    for name, asm, width, b, a, mxcsrs in table:
        for m in mxcsrs:
            out.append(Special(f"{name}@{m:#06x}", asm, _value_state(a, b, m, width),
                               width, evex="zmm" in asm or "{" in asm or "%k" in asm))
    return out


def _fault_cases() -> list[Special]:
    """Page faults at the guard page after the data area, and none from masked-off
    elements (EVEX fault suppression)."""
    g = vh.DATA_SIZE
    table = [
        ("vaddps (%rsi), %ymm2, %ymm3", g - 16, 0, False),
        ("vaddss (%rsi), %xmm2, %xmm3", g - 4, 0, False),
        ("vaddss (%rsi), %xmm2, %xmm3", g - 2, 0, False),
        ("vcomisd (%rsi), %xmm2", g - 4, 0, False),
        ("vdpps $0xff, (%rsi), %xmm2, %xmm3", g - 8, 0, False),
        ("vsqrtpd (%rsi), %ymm3", g - 24, 0, False),
    ]
    for mask in (0x00FF, 0xFF00, 0x0100, 0):
        table += [("vaddps -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vmulps -32(%rsi), %zmm2, %zmm3{%k1}{z}", g, mask, True),
                  ("vcmpps $1, -32(%rsi), %zmm2, %k2{%k1}", g, mask, True),
                  ("vfpclasspsz $0x81, -32(%rsi), %k2{%k1}", g, mask, True),
                  ("vgetmantps $5, -32(%rsi), %zmm3{%k1}", g, mask, True),
                  ("vrangeps $5, -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vreduceps $0x48, -32(%rsi), %zmm3{%k1}", g, mask, True),
                  ("vfixupimmps $0x11, -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vscalefps -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vrcp14ps -32(%rsi), %zmm3{%k1}", g, mask, True),
                  ("vandnps -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vsqrtps -32(%rsi), %zmm3{%k1}{z}", g, mask, True),
                  ("vgetexpps -32(%rsi), %zmm3{%k1}", g, mask, True)]
    for mask in (0x0F, 0xF0, 0):
        table += [("vmulpd -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vrndscalepd $1, -32(%rsi), %zmm3{%k1}", g, mask, True),
                  ("vmaxpd -32(%rsi), %zmm2, %zmm3{%k1}", g, mask, True)]
    for mask in (0, 1, 0xFE):
        table += [("vaddsd (%rsi), %xmm2, %xmm3{%k1}", g, mask, True),
                  ("vmulpd (%rsi){1to8}, %zmm2, %zmm3{%k1}", g, mask, True),
                  ("vcmpss $0, (%rsi), %xmm2, %k2{%k1}", g, mask, True),
                  ("vfpclasssd $0xff, (%rsi), %k2{%k1}", g, mask, True),
                  ("vgetexpss (%rsi), %xmm2, %xmm3{%k1}", g, mask, True),
                  ("vrsqrt14sd (%rsi), %xmm2, %xmm3{%k1}{z}", g, mask, True)]
    out = []
    for asm, rsi, mask, evex in table:
        state = State.blank(rsi=rsi)
        state.k[1] = mask
        state.zmm[2] = _lanes(0x3FC00000, 32)
        out.append(Special(f"fault:{asm}@{rsi:#x}/{mask:#x}", asm, state, 32, evex))
    return out


def _patched(asm: str, **fields) -> bytes:
    """The encoding of `asm` with prefix fields changed: for EVEX (62) w, vvvv (4 bits,
    uninverted), ll, z, b, aaa; for a three-byte VEX (C4, assemble with {vex3}) w, l, vvvv."""
    code = bytearray(vh.assemble([asm])[0])
    if code[0] == 0x62:
        p1, p2 = code[2], code[3]
        if "w" in fields:
            p1 = (p1 & 0x7F) | fields["w"] << 7
        if "vvvv" in fields:
            p1 = (p1 & 0x87) | (~fields["vvvv"] & 15) << 3
        if "ll" in fields:
            p2 = (p2 & 0x9F) | fields["ll"] << 5
        if "z" in fields:
            p2 = (p2 & 0x7F) | fields["z"] << 7
        if "b" in fields:
            p2 = (p2 & 0xEF) | fields["b"] << 4
        if "aaa" in fields:
            p2 = (p2 & 0xF8) | fields["aaa"]
        code[2], code[3] = p1, p2
    else:
        assert code[0] == 0xC4, asm
        b2 = code[2]
        if "w" in fields:
            b2 = (b2 & 0x7F) | fields["w"] << 7
        if "vvvv" in fields:
            b2 = (b2 & 0x87) | (~fields["vvvv"] & 15) << 3
        if "l" in fields:
            b2 = (b2 & 0xFB) | fields["l"] << 2
        code[2] = b2
    return bytes(code)


def _encoding_cases() -> list[Special]:
    """Encodings the SDM makes #UD, and VEX.W ignored (WIG)."""
    table = [
        ("vaddps W1", "vaddps %zmm1, %zmm2, %zmm3", dict(w=1)),
        ("vaddpd W0", "vaddpd %zmm1, %zmm2, %zmm3", dict(w=0)),
        ("vaddss W1", "vaddss %xmm1, %xmm2, %xmm3{%k1}", dict(w=1)),
        ("vsqrtps W1", "vsqrtps %zmm1, %zmm3", dict(w=1)),
        ("vcmpps W1", "vcmpps $1, %zmm1, %zmm2, %k2", dict(w=1)),
        ("vcomiss W1", "vcomiss {sae}, %xmm1, %xmm2", dict(w=1)),
        ("vgetexppd W0 is vgetexpps", "vgetexppd %zmm1, %zmm3", dict(w=0)),
        ("vaddps L'L=3", "vaddps 64(%rsi), %zmm2, %zmm3", dict(ll=3)),
        ("vaddss L'L=3", "vaddss %xmm1, %xmm2, %xmm3{%k1}", dict(ll=3)),
        ("vsqrtsd L'L=3", "{evex} vsqrtsd 8(%rsi), %xmm2, %xmm3", dict(ll=3)),
        ("vcomisd L'L=3", "{evex} vcomisd %xmm1, %xmm2", dict(ll=3)),
        ("vfpclassss L'L=3", "vfpclassss $1, %xmm1, %k2", dict(ll=3)),
        ("vgetmantsd L'L=3", "vgetmantsd $1, %xmm1, %xmm2, %xmm3", dict(ll=3)),
        ("vaddss mem b=1", "vaddss 8(%rsi), %xmm2, %xmm3{%k1}", dict(b=1)),
        ("vcmpss mem b=1", "vcmpss $0, 8(%rsi), %xmm2, %k2", dict(b=1)),
        ("vsqrtps vvvv", "vsqrtps %zmm1, %zmm3", dict(vvvv=5)),
        ("vrcp14ps vvvv", "vrcp14ps %zmm1, %zmm3", dict(vvvv=2)),
        ("vgetmantps vvvv", "vgetmantps $1, %zmm1, %zmm3", dict(vvvv=1)),
        ("vfpclassps vvvv", "vfpclassps $1, %zmm1, %k2", dict(vvvv=3)),
        ("vcomiss vvvv", "{evex} vcomiss %xmm1, %xmm2", dict(vvvv=3)),
        ("vcomiss mask", "{evex} vcomiss %xmm1, %xmm2", dict(aaa=1)),
        ("vcmpps zeroing", "vcmpps $1, %zmm1, %zmm2, %k2{%k1}", dict(z=1)),
        ("vfpclassps zeroing", "vfpclassps $1, %zmm1, %k2{%k1}", dict(z=1)),
        ("vsqrtps vex vvvv", "{vex3} vsqrtps %ymm1, %ymm3", dict(vvvv=4)),
        ("vroundps vex vvvv", "vroundps $1, %ymm1, %ymm3", dict(vvvv=4)),
        ("vucomisd vex vvvv", "{vex3} vucomisd %xmm1, %xmm2", dict(vvvv=1)),
        ("vdppd L1", "vdppd $0x31, %xmm1, %xmm2, %xmm3", dict(l=1)),
        ("vaddps vex W1", "{vex3} vaddps %ymm1, %ymm2, %ymm3", dict(w=1)),
        ("vcmpsd vex W1 L1", "{vex3} vcmpsd $3, %xmm1, %xmm2, %xmm3", dict(w=1, l=1)),
        ("vdpps vex W1", "vdpps $0x7f, %ymm1, %ymm2, %ymm3", dict(w=1)),
    ]
    out = []
    for name, asm, fields in table:
        state = _value_state([0x3FC00000, 0x7FC00000], [0x40400000, 0x3F800001], ALL, 32,
                             k1=0x5555)
        out.append(Special(f"encoding:{name}", None, state, 32, asm.startswith("v")
                           and "zmm" in asm or "%k" in asm or "{evex}" in asm,
                           _patched(asm, **fields)))
    # SDM Vol. 2 2.6.11, Table 2-36: EVEX.b with register operands is "SAE control" for FP
    # instructions that can cause #XF and static rounding for those with rounding semantic;
    # for other instructions it "must be 0 (otherwise #UD)". The host ignores it for these
    # (no #XF possible: logic, approximations, VFPCLASS), so they are checked on the engine.
    for name, asm in (("vandps sae", "vandps %zmm1, %zmm2, %zmm3"),
                      ("vxorpd sae", "vxorpd %zmm1, %zmm2, %zmm3"),
                      ("vrcp14ps sae", "vrcp14ps %zmm1, %zmm3"),
                      ("vrsqrt14sd sae", "vrsqrt14sd %xmm1, %xmm2, %xmm3"),
                      ("vfpclassps sae", "vfpclassps $1, %zmm1, %k2")):
        state = _value_state(0x3FC00000, 0x40400000, ALL, 32)
        out.append(Special(f"encoding:{name}", None, state, 32, True, _patched(asm, b=1),
                           sdm_fault=6))
    # No EVEX form: VADDSUBPS, VHADDPD, VDPPS; no VEX form: VRCP14PS (VEX 0F38 4C).
    for name, raw in (("evex vaddsubps", "62f16f48d0d9"), ("evex vhaddpd", "62f1ed487cd9"),
                      ("evex vdpps", "62f36d4840d9ff"), ("vex vrcp14ps", "c4e2794cd9"),
                      ("evex vrcpps", "62f17c4853d9"), ("evex vrsqrtss", "62f17e0852d9")):
        state = _value_state(0x3FC00000, 0x40400000, ALL, 32)
        out.append(Special(f"encoding:{name}", None, state, 32, raw.startswith("62"),
                           bytes.fromhex(raw)))
    return out


@functools.cache
def specials() -> tuple[Special, ...]:
    cases = _value_cases() + _fault_cases() + _encoding_cases()
    codes = vh.assemble([c.asm for c in cases if c.asm])
    it = iter(codes)
    return tuple(dataclasses.replace(c, code=next(it)) if c.asm else c for c in cases)


def recorded_specials() -> list[Special]:
    return [s for s in specials() if s.sdm_fault is None]


# --- references ---------------------------------------------------------------------------------

@functools.cache
def known() -> tuple[dict[int, list], list]:
    """Every line's and every directed case's recorded outcome (one known_answers call: the
    file holds exactly these cases)."""
    lines, code = all_lines(), assembled()
    cases, owners = [], []
    for index, line in enumerate(lines):
        for state in states_for(index, line, SEED, KNOWN_STATES):
            cases.append((code[line.asm], state))
            owners.append(index)
    for special in recorded_specials():
        cases.append((special.code, special.state))
    outcomes = vh.known_answers("fp", cases)
    by_line: dict[int, list] = {}
    for owner, (_, state), outcome in zip(owners, cases, outcomes):
        by_line.setdefault(owner, []).append((state, outcome))
    return by_line, outcomes[len(owners):]


def host_has(evex: bool) -> bool:
    if not vh.host_available():
        return False
    caps = vh.host_caps()
    if evex:
        return caps.k_bits == 64 and caps.has("avx512f", "avx512dq", "avx512vl")
    return caps.has("avx")


def _failures(line: Line, code: bytes, pairs, opts) -> list[str]:
    out = []
    for state, reference in pairs:
        engine = run_engine(code, state)
        reference = adjusted_reference(line, reference, engine)
        diffs = compare(reference, engine, **opts)
        if diffs:
            out.append(vh.describe(code, state, (reference, engine), diffs) + "\n  "
                       + "\n  ".join(diffs))
            if len(out) >= 3:
                break
    return out


@pytest.mark.parametrize("group", GROUPS)
def test_group_matches_silicon(group):
    lines, code = all_lines(), assembled()
    recorded, failures, checked = known()[0], [], 0
    for index, line in enumerate(lines):
        if line.group != group:
            continue
        opts = options(line)
        pairs = list(recorded[index])
        if host_has(line.evex):
            pairs += [(s, run_host(code[line.asm], s))
                      for s in states_for(index, line, SEED + 1, HOST_STATES)]
        checked += len(pairs)
        for failure in _failures(line, code[line.asm], pairs, opts):
            failures.append(f"{line.asm}: {failure}")
        if len(failures) >= 6:
            break
    assert checked
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("kind", ["value", "fault", "encoding"])
def test_directed_cases_match_silicon(kind):
    """Tininess after rounding, FZ, unmasked underflow/overflow, exception precedence (value);
    page faults and EVEX fault suppression (fault); #UD encodings and VEX.W ignored
    (encoding): engine against the recording and, when it can, the live host."""
    recorded, failures, checked = known()[1], [], 0
    for special, reference in zip(recorded_specials(), recorded):
        if not (special.name.startswith(kind + ":") or
                (kind == "value" and ":" not in special.name)):
            continue
        references = [reference]
        if host_has(special.evex):
            references.append(run_host(special.code, special.state))
        engine = run_engine(special.code, special.state)
        for ref in references:
            checked += 1
            diffs = compare(ref, engine, lane_bits=special.lane_bits)
            if diffs:
                failures.append(f"{special.name}: "
                                + vh.describe(special.code, special.state, (ref, engine), diffs)
                                + "\n  " + "\n  ".join(diffs))
    assert checked
    assert not failures, "\n\n".join(failures[:8])


def test_sdm_faults_where_the_host_deviates():
    """Encodings the SDM makes #UD and the host (AMD) executes (see _encoding_cases)."""
    cases = [s for s in specials() if s.sdm_fault is not None]
    assert cases
    for special in cases:
        outcome = run_engine(special.code, special.state)
        assert outcome.fault == special.sdm_fault, (special.name, vh.vector_name(outcome.fault))
        assert outcome.state == special.state, special.name


# --- the SDM's rules checked on the engine alone --------------------------------------------------

def _engine_lanes(asm: str, lanes: list[int], width: int, mxcsr: int = ALL, dst: int = 3):
    code = vh.assemble([asm])[0]
    state = _value_state(lanes, 0, mxcsr, width)
    state.zmm[1] = sum(v << (width * i) for i, v in enumerate(lanes))
    outcome = run_engine(code, state)
    assert outcome.fault is None, (asm, vh.vector_name(outcome.fault))
    value = outcome.state.zmm[dst]
    return [value >> (width * i) & ((1 << width) - 1) for i in range(len(lanes))], outcome


def _as_fraction(bits: int, width: int) -> Fraction:
    return Fraction(_value(bits, width))


def _value(bits: int, width: int) -> float:
    return struct.unpack("<f" if width == 32 else "<d",
                         bits.to_bytes(width // 8, "little"))[0]


@pytest.mark.parametrize("mnemonic,width,bound,sqrt", [
    ("vrcpps", 32, 1.5 * 2**-12, False), ("vrsqrtps", 32, 1.5 * 2**-12, True),
    ("vrcp14ps", 32, 2**-14, False), ("vrsqrt14ps", 32, 2**-14, True),
    ("vrcp14pd", 64, 2**-14, False), ("vrsqrt14pd", 64, 2**-14, True),
])
def test_approximations_are_within_the_sdm_bound(mnemonic, width, bound, sqrt):
    """Positive normal inputs of every binade the result stays normal for: the engine's
    result is within the SDM's relative error of the exact value (the host's results are only
    compared within the bound, so this is what checks the engine's precision)."""
    rng = random.Random(f"{SEED}-{mnemonic}")
    frac_bits, emax = (23, 127) if width == 32 else (52, 1023)
    reg = "ymm" if mnemonic in ("vrcpps", "vrsqrtps") else "zmm"
    per = (256 if reg == "ymm" else 512) // width
    for _ in range(24):
        lanes = []
        for _ in range(per):
            e = rng.randint(-emax + 3, emax - 3)
            lanes.append((e + emax) << frac_bits | rng.getrandbits(frac_bits))
        results, _ = _engine_lanes(f"{mnemonic} %{reg}1, %{reg}3", lanes, width)
        for x, r in zip(lanes, results):
            fx = _as_fraction(x, width)
            exact = 1 / fx
            got = _as_fraction(r, width)
            if sqrt:
                # |got - 1/sqrt(x)| <= bound/sqrt(x)  <=>  (got*sqrt(x) - 1)^2 <= bound^2
                err = got * got * fx
                low, high = (1 - bound) ** 2, (1 + bound) ** 2
                assert Fraction(low) <= err <= Fraction(high), (mnemonic, hex(x), hex(r))
            else:
                assert abs(got - exact) <= Fraction(bound) * abs(exact), (mnemonic, hex(x),
                                                                           hex(r))


def test_approximation_special_cases():
    """The SDM's special cases: zeros, infinities, NaNs, negatives, denormals, DAZ and FZ
    (VRCPPS/VRSQRTPS: a denormal is a zero, a tiny result is zero; VRCP14: a denormal is a
    number unless DAZ, |x| <= 2^-128 gives an infinity, tiny results are flushed only under
    FZ; VRSQRT14: negatives give the QNaN indefinite)."""
    inf, ninf, qnan, snan = 0x7F800000, 0xFF800000, 0x7FC00001, 0x7F800001
    lanes = [0, 0x80000000, inf, ninf, snan, qnan, 0x00000001, 0x80200000,
             0x00200001, 0x7E800C01, 0x7F000000, 0xBF800000, 0x3F800000, 0x00400000]
    rcp, _ = _engine_lanes("vrcpps %ymm1, %ymm3", lanes[:8], 32)
    assert rcp == [inf, ninf, 0, 0x80000000, 0x7FC00001, qnan, inf, ninf]
    rcp, _ = _engine_lanes("vrcpps %ymm1, %ymm3", lanes[8:] + [0, 0], 32)
    assert rcp == [inf, 0, 0, 0xBF800000, 0x3F800000, inf, inf, inf]
    rcp14, out = _engine_lanes("vrcp14ps %zmm1, %zmm3", lanes + [0, 0], 32)
    assert rcp14[:8] == [inf, ninf, 0, 0x80000000, 0x7FC00001, qnan, inf, ninf]
    assert rcp14[8] & 0x7F800000 == 0x7F000000         # 1/(2^-128 + 2^-149) is finite
    assert 0 < rcp14[9] < 0x00800000 and rcp14[10] == 0x00400000    # denormal, 2^-127
    assert rcp14[11] == 0xBF800000 and rcp14[13] == 0x7F000000
    assert out.state.mxcsr == ALL                        # no flags
    ftz, _ = _engine_lanes("vrcp14ps %zmm1, %zmm3", lanes + [0, 0], 32, mxcsr=FZ | 0x40)
    assert ftz[6] == inf and ftz[9] == 0 and ftz[10] == 0   # DAZ: denormal = 0; FZ
    rsq, _ = _engine_lanes("vrsqrt14ps %zmm1, %zmm3", lanes + [0, 0], 32)
    assert rsq[:6] == [inf, ninf, 0, 0xFFC00000, 0x7FC00001, qnan]
    assert rsq[7] == 0xFFC00000 and rsq[11] == 0xFFC00000 and rsq[12] == 0x3F800000
    rsq12, _ = _engine_lanes("vrsqrtps %ymm1, %ymm3", lanes[:8], 32)
    assert rsq12 == [inf, ninf, 0, 0xFFC00000, 0x7FC00001, qnan, inf, ninf]


def test_reduce_signals_precision_as_the_sdm_says():
    """VREDUCE: the SDM's ROUND() signals PE when the rounding is inexact, unless imm8[3]
    (SPE); the host sets it only for an inexact result (see _REDUCE)."""
    lanes = [_f32(1.25), _f32(3.0), _f32(-0.75), 0x7FC00000]
    _, out = _engine_lanes("vreduceps $0x00, %xmm1, %xmm3", lanes, 32)
    assert out.state.mxcsr == ALL | 0x20
    _, out = _engine_lanes("vreduceps $0x08, %xmm1, %xmm3", lanes, 32)
    assert out.state.mxcsr == ALL
    _, out = _engine_lanes("vreduceps $0x20, %xmm1, %xmm3", lanes[1:2] * 4, 32)
    assert out.state.mxcsr == ALL                        # exact: no PE


def test_fixupimm_never_raises_xm():
    """VFIXUPIMM reports IE/ZE by imm8 as if every exception were masked (SDM), even
    unmasked; EVEX.b (SAE) suppresses the report."""
    lanes = [0, 0x3F800000, 0x7F800001, 0xFF800000]
    table = 0x77777777
    for asm, flags in (("vfixupimmps $0xff, %xmm2, %xmm1, %xmm3", 0x05),
                       ("vfixupimmps $0xff, {sae}, %zmm2, %zmm1, %zmm3", 0)):
        code = vh.assemble([asm])[0]
        state = _value_state(lanes, table, 0x0000, 32)
        state.zmm[1] = sum(v << (32 * i) for i, v in enumerate(lanes))
        outcome = run_engine(code, state)
        assert outcome.fault is None, asm
        assert outcome.state.mxcsr == flags, (asm, hex(outcome.state.mxcsr))
