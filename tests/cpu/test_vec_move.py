"""The vector unit's moves (third_party/unicorn/vector/ops_move.c), engine against silicon.

Every encoding of the group, in every vector length, register and memory forms, VEX and
EVEX, EVEX unmasked, merge-masked {k} and zero-masked {k}{z}:
  whole-vector moves (VMOVUPS/UPD/APS/APD/DQU/DQA, VMOVDQU8/16/32/64, VMOVDQA32/64),
  VMOVNTPS/PD/DQ, VMOVNTDQA, VLDDQU; VMOVSS/SD; VMOVHLPS/LHPS, VMOVLPS/HPS/LPD/HPD;
  VMOVSHDUP/SLDUP/DDUP; VMOVD/VMOVQ (all four directions), VMOVMSKPS/PD; VPEXTRB/W/D/Q
  (both VPEXTRW opcodes), VEXTRACTPS, VPINSRB/W/D/Q, VINSERTPS; the broadcasts (VEX, EVEX,
  from general registers); VINSERT*/VEXTRACT* of 128- and 256-bit lanes; VMASKMOVPS/PD,
  VPMASKMOVD/Q, VMASKMOVDQU; VPMOVZX/SX; VPMOV{,S,US}{QB,QW,QD,DB,DW,WB}; compress and
  expand; VZEROUPPER/VZEROALL.

Memory operands carry a displacement that is a multiple of the SDM's disp8*N unit, so GNU
as compresses it and a wrong N in the engine reads the wrong bytes.

Two references:
  known answers  the outcomes an AVX-512 CPU gave for a seeded set of cases, recorded in
                 vectors/move.json.gz (IMACPRO_RECORD_VECTORS=1 on such a host rewrites it);
                 checked on every host.
  live host      a further seeded set run on this host's CPU, when it has AVX-512
                 F/BW/DQ/VL.
Faults: alignment #GP of the aligned forms, #PF at the guard page after the data area,
elements masked off (EVEX opmask, VMASKMOV mask, compress/expand counts) in the guard page
that must not fault, and #UD for encodings the SDM does not define (the other W where it is
not ignored, lengths the instruction lacks, vvvv not 1111b, {z} on a store, masks on
instructions without them, EVEX.b).

Where the reference CPU (AMD Zen 4) departs from the SDM the case is left out of both
comparisons and checked against the SDM on the engine alone:
  - EVEX aligned moves (VMOVAPS/APD/DQA32/DQA64) with a misaligned address and no live
    element: the SDM's exception class E1 raises #GP(0) for the misalignment whatever the
    mask; Zen 4 raises nothing.
VMASKMOVDQU checks its whole m128 even under an all-zero mask, as Zen 4 does (the SDM leaves
that case to the implementation).

The harness runs 64-bit code only: W being ignored outside 64-bit code (VMOVD/VMOVQ,
VPEXTRD/Q, VPINSRD/Q, VPBROADCASTD/Q from a register), VZEROUPPER/VZEROALL there and
VMASKMOVDQU's EDI/DI are checked on a 32-bit engine alone (test_outside_64_bit_code_...).

These tests rely on engine behaviour outside ops_move.c: a #GP after an earlier #GP is not
a #DF in the bare engine (accel/tcg/cpu-exec.c resets the exception in flight once a hook
took it), a store reaching unmapped memory faults before it writes anything (vector/exec.c,
probe_store), and the framework's F_OWNMEM and F_RDI (operations addressing their memory
operand themselves; VMASKMOVDQU's DS:rDI).
"""

from __future__ import annotations

import functools
import importlib
import random
import re
from dataclasses import dataclass

import pytest

import vecharness as vh
from vecharness import State, compare, describe, known_answers, run_engine, run_host

GROUP = "move"
KNOWN_STATES = 3        # per line, recorded
LIVE_STATES = 8         # per line, on this host's CPU
GUARD = vh.DATA_SIZE    # the guard page's offset from the data area


@dataclass(frozen=True)
class Line:
    """One instruction: its source (or its bytes, for encodings GNU as cannot be asked for)
    and the alignment its memory operand needs (0: none)."""

    text: str
    code: bytes | None = None
    align: int = 0
    expect: object = "any"          # fault cases: the vector (or None) they are built for


# --- the catalogue of lines -------------------------------------------------------------------

VL = {"x": 16, "y": 32, "z": 64}
MASKS = ("", "{%k1}", "{%k1}{z}")


def reg(kind: str, n: int) -> str:
    return f"%{kind}mm{n}"


def catalogue() -> list[Line]:
    rng = random.Random("move-lines")
    lines: list[Line] = []

    def add(text, **kw):
        lines.append(Line(text, **kw))

    def vregs(k=3):
        return [rng.randrange(16) for _ in range(k)]

    def evregs(k=3):
        """EVEX registers: at least one of 16-31, so GNU as must use EVEX."""
        r = [rng.randrange(32) for _ in range(k)]
        r[rng.randrange(k)] = rng.randrange(16, 32)
        return r

    # Whole vectors, VEX.
    for op, aligned in (("vmovups", 0), ("vmovupd", 0), ("vmovaps", 1), ("vmovapd", 1),
                        ("vmovdqu", 0), ("vmovdqa", 1)):
        for k in "xy":
            a, b = vregs(2)
            n = VL[k]
            add(f"{op} {reg(k, a)}, {reg(k, b)}")
            add(f"{{store}} {op} {reg(k, a)}, {reg(k, b)}")
            add(f"{op} {3 * n}(%rsi), {reg(k, b)}", align=n if aligned else 0)
            add(f"{op} {reg(k, a)}, {-2 * n}(%rdi)", align=n if aligned else 0)
    # Whole vectors, EVEX.
    for op, aligned, esize in (("vmovups", False, 4), ("vmovupd", False, 8),
                               ("vmovaps", True, 4), ("vmovapd", True, 8),
                               ("vmovdqu8", False, 1), ("vmovdqu16", False, 2),
                               ("vmovdqu32", False, 4), ("vmovdqu64", False, 8),
                               ("vmovdqa32", True, 4), ("vmovdqa64", True, 8)):
        for k in "xyz":
            n = VL[k]
            for m in MASKS:
                a, b = evregs(2)
                add(f"{op} {reg(k, a)}, {reg(k, b)}{m}")
                add(f"{{store}} {op} {reg(k, a)}, {reg(k, b)}{m}")
                add(f"{op} {2 * n}(%rsi), {reg(k, b)}{m}", align=n if aligned else 0)
                if "z" not in m:
                    add(f"{op} {reg(k, a)}, {n}(%rdi){m}", align=n if aligned else 0)
            add(f"{{evex}} {op} {n}(%rsi), {reg(k, 3)}", align=n if aligned else 0)

    # Non-temporal moves and VLDDQU.
    for k in "xy":
        n = VL[k]
        for op in ("vmovntps", "vmovntpd", "vmovntdq"):
            add(f"{op} {reg(k, vregs(1)[0])}, {n}(%rsi)", align=n)
        add(f"vmovntdqa {2 * n}(%rsi), {reg(k, vregs(1)[0])}", align=n)
        add(f"vlddqu {n + 3}(%rsi), {reg(k, vregs(1)[0])}")
    for k in "xyz":
        n = VL[k]
        for op in ("vmovntps", "vmovntpd", "vmovntdq"):
            add(f"{op} {reg(k, evregs(1)[0])}, {3 * n}(%rsi)", align=n)
        add(f"vmovntdqa {-n}(%rdi), {reg(k, evregs(1)[0])}", align=n)

    # Scalars.
    for op, n in (("vmovss", 4), ("vmovsd", 8)):
        a, b, c = vregs(3)
        add(f"{op} %xmm{a}, %xmm{b}, %xmm{c}")
        add(f"{{store}} {op} %xmm{a}, %xmm{b}, %xmm{c}")
        add(f"{op} {5 * n}(%rsi), %xmm{c}")
        add(f"{op} %xmm{a}, {3 * n + 1}(%rdi)")
        for m in MASKS:
            a, b, c = evregs(3)
            add(f"{op} %xmm{a}, %xmm{b}, %xmm{c}{m}")
            add(f"{{store}} {op} %xmm{a}, %xmm{b}, %xmm{c}{m}")
            add(f"{op} {3 * n}(%rsi), %xmm{c}{m}")
            if "z" not in m:
                add(f"{op} %xmm{a}, {7 * n}(%rdi){m}")

    # Halves.
    for evex in (False, True):
        pick = evregs if evex else vregs
        for op in ("vmovhlps", "vmovlhps"):
            a, b, c = pick(3)
            add(f"{op} %xmm{a}, %xmm{b}, %xmm{c}")
        for op in ("vmovlps", "vmovhps", "vmovlpd", "vmovhpd"):
            a, b, c = pick(3)
            add(f"{op} {3 * 8}(%rsi), %xmm{b}, %xmm{c}")
            add(f"{op} %xmm{a}, {-5 * 8}(%rdi)")

    # Duplicates.
    for op in ("vmovsldup", "vmovshdup", "vmovddup"):
        for k in "xy":
            a, b = vregs(2)
            n = 8 if op == "vmovddup" and k == "x" else VL[k]
            add(f"{op} {reg(k, a)}, {reg(k, b)}")
            add(f"{op} {2 * n}(%rsi), {reg(k, b)}")
        for k in "xyz":
            n = 8 if op == "vmovddup" and k == "x" else VL[k]
            for m in MASKS:
                a, b = evregs(2)
                add(f"{op} {reg(k, a)}, {reg(k, b)}{m}")
                add(f"{op} {3 * n}(%rsi), {reg(k, b)}{m}")

    # General registers.
    for evex in (False, True):
        x = (lambda: f"%xmm{evregs(1)[0]}") if evex else (lambda: f"%xmm{vregs(1)[0]}")
        pre = "{evex} " if evex else ""
        add(f"{pre}vmovd %ecx, {x()}")
        add(f"{pre}vmovd %r9d, {x()}")
        add(f"{pre}vmovd {3 * 4}(%rsi), {x()}")
        add(f"{pre}vmovq %rdx, {x()}")
        add(f"{pre}vmovq %r14, {x()}")
        add(f"{pre}vmovd {x()}, %eax")
        add(f"{pre}vmovd {x()}, %r11d")
        add(f"{pre}vmovd {x()}, {5 * 4}(%rdi)")
        add(f"{pre}vmovq {x()}, %rbx")
        add(f"{pre}vmovq {x()}, {3 * 8}(%rdi)")        # 66 0F 7E W1
        add(f"{pre}vmovq {x()}, {x()}")                     # F3 0F 7E
        add(f"{pre}vmovq {2 * 8}(%rsi), {x()}")
        add(f"{pre}{{store}} vmovq {x()}, {x()}")            # 66 0F D6, register form
    add("vmovq %xmm5, 24(%rsi)  # 66 0F D6, memory", code=bytes.fromhex("c5f9d66e18"))
    add("{evex} vmovq %xmm17, 24(%rsi)  # EVEX 66 0F D6 W1 (disp8*8)",
        code=bytes.fromhex("62e1fd08d64e03"))
    add("{evex} vmovq %xmm2, %xmm25  # EVEX 66 0F D6 W1, register",
        code=bytes.fromhex("6291fd08d6d1"))
    for op in ("vmovmskps", "vmovmskpd"):
        for k in "xy":
            add(f"{op} {reg(k, vregs(1)[0])}, %eax")
            add(f"{op} {reg(k, vregs(1)[0])}, %r10")

    # Elements to and from general registers and memory.
    for evex in (False, True):
        x = (lambda: f"%xmm{evregs(1)[0]}") if evex else (lambda: f"%xmm{vregs(1)[0]}")
        pre = "{evex} " if evex else ""
        for op, n, imms in (("vpextrb", 1, (0, 13, 0xff)), ("vpextrw", 2, (3, 7, 0xfa)),
                            ("vpextrd", 4, (1, 0x7e)), ("vpextrq", 8, (1, 0x80)),
                            ("vextractps", 4, (2, 0xff))):
            gpr = "%rcx" if n == 8 else "%ecx"
            for imm in imms:
                add(f"{pre}{op} ${imm}, {x()}, {gpr}")
                add(f"{pre}{op} ${imm}, {x()}, {3 * n}(%rdi)")
            if op == "vpextrw":            # the 0F3A 15 register form
                add(f"{pre}{{store}} vpextrw $5, {x()}, %r8d")
        for op, n, imms in (("vpinsrb", 1, (0, 9, 0xf7)), ("vpinsrw", 2, (2, 0xf9)),
                            ("vpinsrd", 4, (3, 0x55)), ("vpinsrq", 8, (1, 0xfe))):
            gpr = "%rsi" if n == 8 else "%edx"
            for imm in imms:
                add(f"{pre}{op} ${imm}, {gpr}, {x()}, {x()}")
                add(f"{pre}{op} ${imm}, {5 * n}(%rsi), {x()}, {x()}")
        for imm in (0x00, 0x4e, 0xb5, 0xff, 0x30):
            add(f"{pre}vinsertps ${imm}, {x()}, {x()}, {x()}")
            add(f"{pre}vinsertps ${imm}, {3 * 4}(%rsi), {x()}, {x()}")

    # Broadcasts, VEX.
    for op, n, lengths, reg_ok in (("vbroadcastss", 4, "xy", True), ("vbroadcastsd", 8, "y", True),
                                   ("vbroadcastf128", 16, "y", False),
                                   ("vbroadcasti128", 16, "y", False),
                                   ("vpbroadcastb", 1, "xy", True), ("vpbroadcastw", 2, "xy", True),
                                   ("vpbroadcastd", 4, "xy", True), ("vpbroadcastq", 8, "xy", True)):
        for k in lengths:
            a, b = vregs(2)
            add(f"{op} {3 * n}(%rsi), {reg(k, b)}")
            if reg_ok:
                add(f"{op} %xmm{a}, {reg(k, b)}")
    # Broadcasts, EVEX.
    for op, n, esize, lengths in (
            ("vbroadcastss", 4, 4, "xyz"), ("vbroadcastsd", 8, 8, "yz"),
            ("vbroadcastf32x2", 8, 4, "yz"), ("vbroadcastf32x4", 16, 4, "yz"),
            ("vbroadcastf64x2", 16, 8, "yz"), ("vbroadcastf32x8", 32, 4, "z"),
            ("vbroadcastf64x4", 32, 8, "z"), ("vpbroadcastb", 1, 1, "xyz"),
            ("vpbroadcastw", 2, 2, "xyz"), ("vpbroadcastd", 4, 4, "xyz"),
            ("vpbroadcastq", 8, 8, "xyz"), ("vbroadcasti32x2", 8, 4, "xyz"),
            ("vbroadcasti32x4", 16, 4, "yz"), ("vbroadcasti64x2", 16, 8, "yz"),
            ("vbroadcasti32x8", 32, 4, "z"), ("vbroadcasti64x4", 32, 8, "z")):
        for k in lengths:
            for m in MASKS:
                a, b = evregs(2)
                add(f"{op} {3 * n}(%rsi), {reg(k, b)}{m}")
                if n <= 8:
                    add(f"{op} %xmm{a}, {reg(k, b)}{m}")
            add(f"{{evex}} {op} {n}(%rsi), {reg(k, 2)}")
    for op, gprs in (("vpbroadcastb", ("%eax", "%r12d")), ("vpbroadcastw", ("%edx", "%esi")),
                     ("vpbroadcastd", ("%ecx", "%r15d")), ("vpbroadcastq", ("%rbx", "%r8"))):
        for k in "xyz":
            for m in MASKS:
                add(f"{op} {rng.choice(gprs)}, {reg(k, evregs(1)[0])}{m}")
            add(f"{{evex}} {op} {gprs[0]}, {reg(k, 4)}")

    # Lanes.
    for op, imms in (("vinsertf128", (0, 1, 0xfe)), ("vinserti128", (1, 0x80))):
        for imm in imms:
            a, b, c = vregs(3)
            add(f"{op} ${imm}, %xmm{a}, %ymm{b}, %ymm{c}")
            add(f"{op} ${imm}, 32(%rsi), %ymm{b}, %ymm{c}")
    for op, imms in (("vextractf128", (0, 1, 0xff)), ("vextracti128", (1, 0x7e))):
        for imm in imms:
            a, b = vregs(2)
            add(f"{op} ${imm}, %ymm{a}, %xmm{b}")
            add(f"{op} ${imm}, %ymm{a}, 48(%rdi)")
    for lane, ops in ((16, ("f32x4", "f64x2", "i32x4", "i64x2")),
                      (32, ("f32x8", "f64x4", "i32x8", "i64x4"))):
        lk = "x" if lane == 16 else "y"
        for suffix in ops:
            esize = 4 if "32x" in suffix else 8
            for k in ("yz" if lane == 16 else "z"):
                imm = rng.choice((0, 1, 2, 3, 0xfd, 0x12))
                for m in MASKS:
                    a, b, c = evregs(3)
                    add(f"vinsert{suffix} ${imm}, {reg(lk, a)}, {reg(k, b)}, {reg(k, c)}{m}")
                    add(f"vinsert{suffix} ${imm + 1 & 0xff}, {2 * lane}(%rsi), {reg(k, b)}, "
                        f"{reg(k, c)}{m}")
                    add(f"vextract{suffix} ${imm}, {reg(k, a)}, {reg(lk, b)}{m}")
                    if "z" not in m:
                        add(f"vextract{suffix} ${imm + 1 & 0xff}, {reg(k, a)}, {3 * lane}(%rdi){m}")

    # Masked moves (VEX).
    for op, n in (("vmaskmovps", 4), ("vmaskmovpd", 8), ("vpmaskmovd", 4), ("vpmaskmovq", 8)):
        for k in "xy":
            a, b, c = vregs(3)
            add(f"{op} {VL[k]}(%rsi), {reg(k, a)}, {reg(k, b)}")
            add(f"{op} {reg(k, a)}, {reg(k, b)}, -{VL[k]}(%rdi)")
    for prefix in ("", "", "addr32 "):       # addr32: EDI, the 32-bit address size
        a, b = vregs(2)
        add(f"{prefix}vmaskmovdqu %xmm{a}, %xmm{b}")

    # Widening.
    for src, ratio in (("bw", 2), ("bd", 4), ("bq", 8), ("wd", 2), ("wq", 4), ("dq", 2)):
        for sz in ("zx", "sx"):
            op = f"vpmov{sz}{src}"
            for k in "xy":
                a, b = vregs(2)
                n = VL[k] // ratio
                add(f"{op} %xmm{a}, {reg(k, b)}")
                add(f"{op} {3 * n}(%rsi), {reg(k, b)}")
            for k in "xyz":
                n = VL[k] // ratio
                sk = "x" if n <= 16 else "y"
                for m in MASKS:
                    a, b = evregs(2)
                    add(f"{op} {reg(sk, a)}, {reg(k, b)}{m}")
                    add(f"{op} {2 * n}(%rsi), {reg(k, b)}{m}")

    # Narrowing.
    for pair, ratio in (("qb", 8), ("qw", 4), ("qd", 2), ("db", 4), ("dw", 2), ("wb", 2)):
        for sat in ("", "s", "us"):
            op = f"vpmov{sat}{pair}"
            for k in "xyz":
                n = VL[k] // ratio
                dk = "x" if n <= 16 else "y"
                for m in MASKS:
                    a, b = evregs(2)
                    add(f"{op} {reg(k, a)}, {reg(dk, b)}{m}")
                    if "z" not in m:
                        add(f"{op} {reg(k, a)}, {3 * n}(%rdi){m}")

    # Compress and expand.
    for op, esize in (("vcompressps", 4), ("vcompresspd", 8), ("vpcompressd", 4),
                      ("vpcompressq", 8)):
        for k in "xyz":
            for m in MASKS:
                a, b = evregs(2)
                add(f"{op} {reg(k, a)}, {reg(k, b)}{m}")
                if "z" not in m:
                    add(f"{op} {reg(k, a)}, {3 * esize}(%rdi){m}")
    for op, esize in (("vexpandps", 4), ("vexpandpd", 8), ("vpexpandd", 4), ("vpexpandq", 8)):
        for k in "xyz":
            for m in MASKS:
                a, b = evregs(2)
                add(f"{op} {reg(k, a)}, {reg(k, b)}{m}")
                add(f"{op} {5 * esize}(%rsi), {reg(k, b)}{m}")

    add("vzeroupper")
    add("vzeroall")
    return lines


LINES = catalogue()


def codes_of(lines: list[Line]) -> list[bytes]:
    texts = [line.text for line in lines if line.code is None]
    assembled = dict(zip(texts, vh.assemble(texts)))
    return [line.code if line.code is not None else assembled[line.text] for line in lines]


CODES = codes_of(LINES)


# --- states -------------------------------------------------------------------------------

_POOL: list[State] = []


def pool() -> list[State]:
    """Random states (making one is slow: they are drawn once and copied)."""
    if not _POOL:
        rng = random.Random("move-pool")
        _POOL.extend(vh.random_state(rng) for _ in range(40))
    return _POOL


def state_for(line: Line, rng: random.Random) -> State:
    """A random state whose address registers suit the line: RSI/RDI at aligned offsets for
    aligned forms, anywhere in the first 2 KiB of their page otherwise; k1 random."""
    state = rng.choice(pool()).copy()
    step = 64 if line.align else 1
    state.gpr["rsi"] = step * rng.randrange(2048 // step)
    state.gpr["rdi"] = vh.PAGE + step * rng.randrange(2048 // step)
    state.k[1] = rng.choice((0, vh.MASK64, rng.getrandbits(64), rng.getrandbits(8),
                             rng.getrandbits(64) & rng.getrandbits(64)))
    if line.text.startswith("addr32"):
        # The 32-bit address size (67h) truncates RDI: an offset with bits above 31 set.
        state.gpr["rdi"] += 0xABC << 32
    return state


def cases_for(lines: list[Line], codes: list[bytes], seed: str, per_line: int):
    rng = random.Random(seed)
    return [(line, code, state_for(line, rng))
            for line, code in zip(lines, codes) for _ in range(per_line)]


def mismatches(cases, reference) -> list[str]:
    failures = []
    for (line, code, state), ref in zip(cases, reference):
        engine = run_engine(code, state)
        diffs = compare(ref, engine)
        if diffs:
            # describe() names registers from the differences; it cannot parse a "#PF
            # address" or "... more" line (vecharness), so those stay out of it.
            named = [d for d in diffs if re.match(r"[xyz]mm\d|k\d|\w+:", d)]
            failures.append(f"{line.text}\n" + describe(code, state, (ref, engine), named)
                            + "\n  " + "\n  ".join(diffs[:8]))
    return failures


def live_host() -> bool:
    caps = vh.host_caps()
    return (vh.host_available() and caps.vector_bits == 512 and caps.k_bits == 64
            and caps.has("avx512f", "avx512bw", "avx512dq", "avx512vl"))


needs_host = pytest.mark.skipif(not live_host(), reason="host without AVX-512 F/BW/DQ/VL")


# --- the faults ---------------------------------------------------------------------------

def fault_cases() -> list[tuple[Line, bytes, State]]:
    """Alignment, the guard page, masked-off elements in the guard page, #UD encodings."""
    rng = random.Random("move-faults")
    out = []

    def case(text, state_edit, code=None, expect="any"):
        line = Line(text, expect=expect)
        code = code or vh.assemble([text])[0]
        state = rng.choice(pool()).copy()
        state_edit(state)
        out.append((line, code, state))

    def at(rsi=None, rdi=None, **k):
        def edit(state):
            if rsi is not None:
                state.gpr["rsi"] = rsi
            if rdi is not None:
                state.gpr["rdi"] = rdi
            for name, value in k.items():
                state.k[int(name[1:])] = value
        return edit

    # Alignment: #GP(0) for the aligned forms off their size (EVEX ones with a live element:
    # with none, see test_misaligned_evex_aligned_moves_fault_whatever_the_mask).
    for text, rsi in (("vmovaps 8(%rsi), %xmm1", 0), ("vmovapd %ymm2, 16(%rsi)", 0),
                      ("vmovdqa 4(%rsi), %ymm3", 0), ("vmovntps %ymm1, 16(%rsi)", 0),
                      ("vmovntdq %xmm1, 8(%rsi)", 0), ("vmovntdqa 16(%rsi), %ymm4", 0),
                      ("vmovaps 32(%rsi), %zmm1", 0), ("vmovapd %zmm1, 8(%rsi)", 0),
                      ("vmovdqa32 16(%rsi), %ymm17", 0), ("vmovdqa64 (%rsi), %zmm1", 8),
                      ("vmovdqa64 (%rsi), %zmm1", 32), ("vmovdqa32 %xmm20, 4(%rsi){%k1}", 0),
                      ("vmovaps 8(%rsi), %zmm2{%k1}{z}", 0), ("vmovntpd %zmm3, 32(%rsi)", 0),
                      ("vmovntdqa 32(%rsi), %zmm30", 0), ("vmovdqa %ymm9, 1(%rdi)", 0)):
        for _ in range(2):
            case(text, at(rsi=64 * rng.randrange(16) + rsi, k1=rng.getrandbits(64) | 1), expect=13)
    # The unaligned forms do not care.
    for text in ("vmovups 8(%rsi), %zmm1", "vmovdqu8 %zmm1, 1(%rsi){%k1}", "vlddqu 3(%rsi), %ymm2",
                 "vmovdqu 7(%rsi), %ymm5", "vbroadcastf32x4 8(%rsi), %zmm3{%k1}"):
        case(text, at(rsi=64 * rng.randrange(16), k1=rng.getrandbits(64)), expect=None)

    # #PF: an unmasked access reaching into the guard page, and nothing written.
    for text, n in (("vmovups (%rsi), %ymm1", 32), ("vmovdqu64 %zmm2, (%rsi)", 64),
                    ("vmovq (%rsi), %xmm3", 8), ("vpbroadcastq (%rsi), %zmm3", 8),
                    ("vbroadcastf64x4 (%rsi), %zmm3", 32), ("vpmovzxbq (%rsi), %zmm3", 8),
                    ("vpmovqb %zmm1, (%rsi)", 8), ("vpextrd $1, %xmm2, (%rsi)", 4),
                    ("vpinsrq $1, (%rsi), %xmm2, %xmm3", 8), ("vmovhps %xmm3, (%rsi)", 8),
                    ("vextractf64x4 $1, %zmm3, (%rsi)", 32), ("vmovss %xmm1, (%rsi)", 4),
                    ("vmovsd (%rsi), %xmm1", 8), ("vcompresspd %zmm1, (%rsi)", 64),
                    ("vexpandps (%rsi), %zmm1", 64), ("vmovntdqa (%rsi), %zmm1", 64),
                    ("vinsertps $0x10, (%rsi), %xmm2, %xmm3", 4)):
        for off in sorted({n // 2, 1, n - 1}):
            case(text, at(rsi=GUARD - n + off), expect=13 if "ntdqa" in text else 14)
    # Classes without fault suppression: a masked-off element still faults (E4NF, E5NF,
    # E6NF, E9NF, E1NF).
    for text, n in (("vmovshdup (%rsi), %zmm1{%k1}", 64), ("vmovddup (%rsi), %xmm1{%k1}", 8),
                    ("vinsertf32x4 $1, (%rsi), %zmm2, %zmm1{%k1}", 16),
                    ("vextracti64x2 $1, %zmm1, (%rsi){%k1}", 16)):
        case(text, at(rsi=GUARD - n // 2, k1=0), expect=14)

    # Masked-off elements in the guard page: no fault; live ones before it are accessed.
    def masked(text, esize, live):
        """`live` live elements before the guard page and the rest masked off; then one more
        live (in the guard page: #PF)."""
        case(text, at(rsi=GUARD - live * esize, k1=(1 << live) - 1), expect=None)
        case(text, at(rsi=GUARD - live * esize, k1=(2 << live) - 1), expect=14)

    for text, n, e in (("vmovups (%rsi), %zmm1{%k1}", 64, 4), ("vmovdqu8 (%rsi), %zmm1{%k1}{z}", 64, 1),
                       ("vmovdqu16 %ymm20, (%rsi){%k1}", 32, 2), ("vmovupd %zmm3, (%rsi){%k1}", 64, 8),
                       ("vmovdqu32 (%rsi), %xmm3{%k1}", 16, 4),
                       ("vpmovzxbw (%rsi), %zmm1{%k1}", 32, 1), ("vpmovsxdq (%rsi), %zmm1{%k1}{z}", 32, 4),
                       ("vpmovzxwq (%rsi), %ymm1{%k1}", 8, 2),
                       ("vpmovqb %zmm2, (%rsi){%k1}", 8, 1), ("vpmovusdw %zmm2, (%rsi){%k1}", 32, 2),
                       ("vpmovswb %zmm2, (%rsi){%k1}", 32, 1)):
        for live in (0, 1, n // e // 2):
            masked(text, e, live)
    for text in ("vmovss (%rsi), %xmm1{%k1}", "vmovsd (%rsi), %xmm1{%k1}{z}",
                 "vmovss %xmm1, (%rsi){%k1}", "vmovsd %xmm2, (%rsi){%k1}"):
        case(text, at(rsi=GUARD - 2, k1=rng.getrandbits(64) & ~1), expect=None)
        case(text, at(rsi=GUARD - 2, k1=1), expect=14)
    # Broadcasts: only the memory elements some live element takes are read.
    for text, n, e in (("vbroadcastss (%rsi), %zmm1{%k1}", 4, 4),
                       ("vpbroadcastb (%rsi), %ymm1{%k1}{z}", 1, 1),
                       ("vbroadcastf32x4 (%rsi), %zmm1{%k1}", 16, 4),
                       ("vbroadcasti64x2 (%rsi), %ymm1{%k1}", 16, 8),
                       ("vbroadcasti32x2 (%rsi), %xmm1{%k1}", 8, 4),
                       ("vbroadcastf64x4 (%rsi), %zmm1{%k1}{z}", 32, 8)):
        per = n // e
        for live in range(per):
            # Element `live` of the block is the first in the guard page: mask off every
            # destination element taking it or a later one.
            keep = sum(1 << j for j in range(64) if j % per < live)
            case(text, at(rsi=GUARD - live * e, k1=keep & rng.getrandbits(64) | (keep & 1)),
                 expect=None)
            case(text, at(rsi=GUARD - live * e, k1=keep | 1 << live), expect=14)  # one more
    # Compress and expand: only as many elements as are live are accessed.
    for text, e in (("vcompressps %zmm1, (%rsi){%k1}", 4), ("vpcompressq %ymm1, (%rsi){%k1}", 8),
                    ("vexpandpd (%rsi), %zmm1{%k1}", 8), ("vpexpandd (%rsi), %xmm1{%k1}{z}", 4)):
        for live in (0, 1, 3):
            k1 = 0
            positions = rng.sample(range(4), live)
            for p in positions:
                k1 |= 1 << p
            case(text, at(rsi=GUARD - live * e, k1=k1), expect=None)
            case(text, at(rsi=GUARD - live * e + e, k1=k1 | 1 << 5 if live else 1), expect=14)
    # VMASKMOV/VPMASKMOV: the mask is vvvv's element top bits.
    for text, n, e, mreg in (("vmaskmovps (%rsi), %ymm1, %ymm2", 32, 4, 1),
                             ("vmaskmovpd %xmm3, %xmm4, (%rsi)", 16, 8, 4),
                             ("vpmaskmovd %ymm5, %ymm6, (%rsi)", 32, 4, 6),
                             ("vpmaskmovq (%rsi), %ymm7, %ymm8", 32, 8, 7)):
        for live in (0, 1, n // e - 1):
            def edit(state, live=live, e=e, n=n, mreg=mreg):
                state.gpr["rsi"] = GUARD - live * e
                value = state.zmm[mreg] & ~((1 << 256) - 1)
                for i in range(n // e):
                    top = (i < live) and rng.random() < 0.7 or i == 0 and live
                    lane = rng.getrandbits(8 * e - 1) | (top << (8 * e - 1))
                    value |= lane << (8 * e * i)
                state.zmm[mreg] = value
            case(text, edit, expect=None)
        def edit_all(state, e=e, n=n, mreg=mreg):
            state.gpr["rsi"] = GUARD - e
            state.zmm[mreg] |= sum(1 << (8 * e * i + 8 * e - 1) for i in range(n // e))
        case(text, edit_all, expect=14)                      # one live in the guard
    # VMASKMOVDQU to DS:rDI: in AT&T order the mask (ModRM.rm) comes first.
    def maskdqu(mask_reg, rdi, live_bytes):
        def edit(state):
            state.gpr["rdi"] = rdi
            mask = sum((0x80 | rng.getrandbits(7)) << 8 * i if i in live_bytes
                       else rng.getrandbits(7) << 8 * i for i in range(16))
            state.zmm[mask_reg] = (state.zmm[mask_reg] >> 128 << 128) | mask
        return edit

    case("vmaskmovdqu %xmm1, %xmm2", maskdqu(1, GUARD - 16, {0, 4, 7, 15}), expect=None)
    case("vmaskmovdqu %xmm1, %xmm2", maskdqu(1, GUARD - 4, {0, 3, 15}), expect=14)
    # The m128 at rDI is checked whatever the mask, even all zeros (implementation-specific
    # by the SDM; the engine does as Zen 4 does): #PF when it reaches the guard page.
    for live in (1, 8, 15):
        case("vmaskmovdqu %xmm1, %xmm2", maskdqu(1, GUARD - live, set(range(live))), expect=14)
    case("vmaskmovdqu %xmm1, %xmm2", maskdqu(1, GUARD - 4, {0, 3}), expect=14)
    case("vmaskmovdqu %xmm1, %xmm2", maskdqu(1, GUARD - 9, set()), expect=14)
    case("vmaskmovdqu %xmm1, %xmm2", maskdqu(1, GUARD - 16, set()), expect=None)
    case("addr32 vmaskmovdqu %xmm3, %xmm2", maskdqu(3, (1 << 32) + 100, {0, 5, 9}), expect=None)

    # #UD: encodings the SDM does not define.
    for code in ud_codes():
        case(f"#UD {code.hex()}", at(rsi=64), code=code, expect=6)
    return out


def _vex3(code: bytes) -> bytes:
    """A 2-byte VEX prefix as the equivalent 3-byte one (to reach W and mmmmm)."""
    if code[0] == 0xC5:
        return bytes([0xC4, (code[1] & 0x80) | 0x61, code[1] & 0x7F]) + code[2:]
    return code


def with_w(code: bytes, w: int) -> bytes:
    c = bytearray(code if code[0] == 0x62 else _vex3(code))
    c[2] = (c[2] & 0x7F) | w << 7
    return bytes(c)


def with_l(code: bytes, length: int) -> bytes:
    c = bytearray(code)
    if c[0] == 0x62:
        c[3] = (c[3] & 0x9F) | length << 5
    else:
        i = 1 if c[0] == 0xC5 else 2
        c[i] = (c[i] & 0xFB) | length << 2
    return bytes(c)


def with_vvvv(code: bytes, v: int) -> bytes:
    c = bytearray(code)
    i = 1 if c[0] == 0xC5 else 2
    c[i] = (c[i] & 0x87) | (~v & 15) << 3
    return bytes(c)


def with_p2(code: bytes, bits: int) -> bytes:
    c = bytearray(code)
    c[3] |= bits
    return bytes(c)


def ud_codes() -> list[bytes]:
    one = lambda text: vh.assemble([text])[0]   # noqa: E731
    codes = []
    # The other W where the SDM fixes it (EVEX W0/W1 opcodes; VEX W0 broadcasts, lanes,
    # masked moves).
    for text, w in (("vmovups %zmm1, %zmm2", 1), ("vmovupd %zmm1, %zmm2", 0),
                    ("vmovaps (%rsi), %ymm17", 1), ("vmovss %xmm1, %xmm2, %xmm17", 1),
                    ("vmovsd (%rsi), %xmm17", 0), ("vmovshdup %zmm1, %zmm2", 1),
                    ("vmovddup %zmm1, %zmm2", 0), ("vmovntps %zmm1, (%rsi)", 1),
                    ("vmovntpd %zmm1, (%rsi)", 0), ("vmovntdq %zmm1, (%rsi)", 1),
                    ("vmovntdqa (%rsi), %zmm1", 1), ("vmovhlps %xmm17, %xmm2, %xmm3", 1),
                    ("vmovlpd (%rsi), %xmm18, %xmm3", 0), ("vmovq %xmm17, %xmm2", 0),
                    ("vbroadcastss %xmm1, %ymm2", 1), ("vbroadcastsd (%rsi), %ymm2", 1),
                    ("vbroadcastf128 (%rsi), %ymm2", 1), ("vpbroadcastb %xmm1, %ymm2", 1),
                    ("vpbroadcastd (%rsi), %xmm2", 1), ("vbroadcasti128 (%rsi), %ymm2", 1),
                    ("vbroadcastss %xmm1, %zmm2", 1), ("vpbroadcastb %xmm1, %zmm2", 1),
                    ("vpbroadcastw %eax, %zmm2", 1), ("vpbroadcastb %eax, %zmm2", 1),
                    ("vinsertf128 $1, %xmm1, %ymm2, %ymm3", 1),
                    ("vextracti128 $1, %ymm1, %xmm2", 1), ("vmaskmovps (%rsi), %xmm1, %xmm2", 1),
                    ("vmaskmovpd %ymm1, %ymm2, (%rsi)", 1), ("vinsertps $1, %xmm17, %xmm2, %xmm3", 1),
                    ("vpmovzxdq %ymm1, %zmm2", 1), ("vpmovsxdq (%rsi), %xmm17", 1),
                    ("vpmovqb %zmm1, %xmm2", 1), ("vpmovuswb %zmm1, (%rsi)", 1)):
        codes.append(with_w(one(text), w))
    # Lengths the instruction lacks.
    for text, length in (("vmovhlps %xmm1, %xmm2, %xmm3", 1), ("vmovlps (%rsi), %xmm2, %xmm3", 1),
                         ("vmovlhps %xmm17, %xmm2, %xmm3", 2), ("vmovd %eax, %xmm1", 1),
                         ("vmovq %xmm17, %rax", 1), ("vmovq %xmm1, %xmm2", 1),
                         ("vpextrb $1, %xmm1, %eax", 1), ("vpinsrw $1, %eax, %xmm17, %xmm2", 2),
                         ("vextractps $1, %xmm17, %eax", 1), ("vinsertps $1, %xmm1, %xmm2, %xmm3", 1),
                         ("vbroadcastsd %xmm1, %ymm2", 0), ("vbroadcastf128 (%rsi), %ymm2", 0),
                         ("vbroadcastsd %xmm1, %zmm2", 0), ("vbroadcastf32x4 (%rsi), %zmm2", 0),
                         ("vbroadcastf64x4 (%rsi), %zmm2", 1), ("vbroadcasti32x8 (%rsi), %zmm2", 0),
                         ("vinsertf128 $1, %xmm1, %ymm2, %ymm3", 0),
                         ("vextractf32x4 $1, %zmm1, %xmm2", 0), ("vinserti64x4 $1, %ymm1, %zmm2, %zmm3", 1),
                         ("vmaskmovdqu %xmm1, %xmm2", 1), ("vmovups %zmm1, %zmm2", 3),
                         ("vpmovzxbw %ymm1, %zmm2", 3)):
        codes.append(with_l(one(text), length))
    # VEX.vvvv / EVEX.vvvv (and V') not 1111b where the instruction has no vvvv operand.
    for text in ("vmovups %xmm1, %xmm2", "vmovss (%rsi), %xmm1", "vmovd %eax, %xmm1",
                 "vbroadcastss %xmm1, %ymm2", "vpmovzxbw %xmm1, %ymm2", "vmaskmovdqu %xmm1, %xmm2",
                 "vpextrd $1, %xmm1, %eax", "vextractf128 $1, %ymm1, %xmm2", "vmovmskps %ymm1, %eax",
                 "vmovups %zmm1, %zmm2", "vpbroadcastd %eax, %zmm2", "vpmovqb %zmm1, %xmm2",
                 "vcompressps %zmm1, (%rsi)"):
        codes.append(with_vvvv(one(text), 5))
    codes.append(bytes.fromhex("62f17c0010d1"))            # EVEX vmovups, V' = 0 (vvvv 16)
    # Masking where there is none; {z} on a store; EVEX.b (no broadcast, no rounding).
    for text in ("vmovntps %zmm1, (%rsi)", "vmovntdqa (%rsi), %zmm1", "vmovd %eax, %xmm17",
                 "vpextrd $1, %xmm17, %eax", "vinsertps $1, %xmm17, %xmm2, %xmm3",
                 "vmovhlps %xmm17, %xmm2, %xmm3", "vmovq %xmm17, %xmm2"):
        codes.append(with_p2(one(text), 0x01))             # aaa = 1
    for text in ("vmovups %zmm1, (%rsi){%k1}", "vmovss %xmm1, (%rsi){%k1}",
                 "vpmovqb %zmm1, (%rsi){%k1}", "vcompressps %zmm1, (%rsi){%k1}",
                 "vextractf32x4 $1, %zmm1, (%rsi){%k1}"):
        codes.append(with_p2(one(text), 0x80))             # z on a memory destination
    for text in ("vmovups (%rsi), %zmm1", "vmovups %zmm1, %zmm2", "vbroadcastss (%rsi), %zmm1",
                 "vpmovzxbw %ymm1, %zmm2", "vexpandps (%rsi), %zmm1", "vmovss (%rsi), %xmm17",
                 "vinsertf32x4 $1, (%rsi), %zmm2, %zmm3"):
        codes.append(with_p2(one(text), 0x10))             # EVEX.b
    # Memory forms that do not exist, register forms that do not exist.
    codes += [bytes.fromhex(h) for h in (
        "c5f813c1",          # vmovlps with a register destination
        "c5f817c1",          # vmovhps with a register destination
        "c4e2792ac1",        # vmovntdqa from a register
        "c5f92bc1",          # vmovntpd to a register
        "c5fbf0c1",          # vlddqu from a register
        "c5f9f70e",          # vmaskmovdqu with a memory operand
        "c5f8500e",          # vmovmskps from memory
        "c4e27d1ac1",        # vbroadcastf128 from a register
        "c4e2712cc2",        # vmaskmovps with a register "memory" operand
        "62f17d08c50e01",    # EVEX vpextrw 0F C5 with memory
        "62f27d487a06",      # EVEX vpbroadcastb from a general register: memory form
        "62f2fd487c06",      # EVEX vpbroadcastq from a general register: memory form
        "c5f9c50e01",        # vpextrw 0F C5 with memory
    )]
    return codes


FAULT_CASES = fault_cases()


# --- the tests ----------------------------------------------------------------------------

def test_catalogue_covers_the_group():
    texts = " ".join(line.text for line in LINES)
    for name in ("vmovdqu8", "vmovdqa64", "vmovntdqa", "vlddqu", "vmovhlps", "vmovhpd",
                 "vmovddup", "vmovmskpd", "vpextrq", "vpinsrb", "vinsertps", "vextractps",
                 "vbroadcastf32x8", "vbroadcasti32x2", "vinserti64x4", "vextractf64x2",
                 "vpmaskmovq", "vmaskmovdqu", "vpmovsxwq", "vpmovusqb", "vpcompressq",
                 "vexpandpd", "vzeroall"):
        assert name in texts
    assert len(LINES) > 900


@functools.cache
def recorded():
    """All the recorded cases (every line, KNOWN_STATES random states each, then the fault
    cases) and their recorded outcomes."""
    cases = cases_for(LINES, CODES, "move-known", KNOWN_STATES) + FAULT_CASES
    return cases, known_answers(GROUP, [(code, state) for _, code, state in cases])


def test_fault_cases_are_what_they_are_built_for():
    """The fault cases' recorded outcomes are the faults they were built to provoke (so a
    setup mistake cannot turn them into trivial agreements)."""
    cases, reference = recorded()
    wrong = [f"{line.text}: {vh.vector_name(ref.fault)}, built for {vh.vector_name(line.expect)}"
             for (line, _, _), ref in zip(cases, reference)
             if line.expect != "any" and ref.fault != line.expect]
    assert not wrong, "\n".join(wrong)
    assert all(line.expect != "any" for line, _, _ in FAULT_CASES)


def test_known_answers():
    """The engine against the recorded outcomes."""
    failures = mismatches(*recorded())
    assert not failures, f"{len(failures)} cases differ:\n" + "\n".join(failures[:5])


@needs_host
def test_live_host():
    """A further LIVE_STATES states per line, and the fault cases, on this host's CPU."""
    cases = cases_for(LINES, CODES, "move-live", LIVE_STATES) + FAULT_CASES
    failures = mismatches(cases, [run_host(code, state) for _, code, state in cases])
    assert not failures, f"{len(failures)} cases differ:\n" + "\n".join(failures[:5])


def test_misaligned_evex_aligned_moves_fault_whatever_the_mask():
    """SDM exception class E1: an EVEX aligned move's misaligned operand is #GP(0) even when
    no element is live (the reference CPU, Zen 4, raises nothing: engine only). Several in a
    row: the bare engine once reported the second as #DF (a #GP left "in flight")."""
    rng = random.Random("move-e1")
    for text, rsi in (("vmovdqa64 (%rsi), %zmm1{%k1}", 8), ("vmovaps %zmm3, (%rsi){%k1}", 16),
                      ("vmovapd 16(%rsi), %ymm20{%k1}{z}", 64), ("vmovdqa32 %xmm2, 4(%rsi){%k1}", 0),
                      ("vmovdqa64 (%rsi), %zmm1", 8)):
        code = vh.assemble([text])[0]
        for k1 in (0, 0xFFFF_FFFF_FFFF_FF00 if "xmm" in text else 0, 1):
            state = rng.choice(pool()).copy()
            state.gpr["rsi"], state.k[1] = rsi, k1
            outcome = run_engine(code, state)
            assert outcome.fault == 13, (text, k1, outcome.detail)
            assert not compare(outcome, vh.Outcome(state, 13, outcome.caps)), text



# --- 32-bit code (engine only: the harness runs 64-bit code) --------------------------------

class Engine32:
    """A bare engine in 32-bit protected mode (flat segments), AVX-512 state enabled like
    vecharness's 64-bit one: RAM at 0-128 KiB, the instruction at CODE, data at DATA."""

    CODE, DATA = 0x8000, 0x10000

    def __init__(self) -> None:
        importlib.import_module("imacpro.cpu.engine")   # first: the binding to our library
        import unicorn
        from unicorn import x86_const as x

        self.x = x
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        self.uc.ctl_set_cpu_model(x.UC_CPU_X86_SKYLAKE_SERVER)
        self.uc.mem_map(0, 0x20000)
        self.uc.reg_write(x.UC_X86_REG_CR0, (self.uc.reg_read(x.UC_X86_REG_CR0) | 0x22) & ~0xC)
        self.uc.reg_write(x.UC_X86_REG_CR4, self.uc.reg_read(x.UC_X86_REG_CR4) | 0x40600)
        self.run(b"\x0f\x01\xd1", eax=vh.XCR0_FULL, edx=0, ecx=0)         # xsetbv

    def run(self, code: bytes, **regs: int) -> None:
        x = self.x
        self.uc.mem_write(self.CODE, code)
        for name, value in regs.items():
            self.uc.reg_write(getattr(x, f"UC_X86_REG_{name.upper()}"), value)
        self.uc.emu_start(self.CODE, self.CODE + len(code), 0, 1)

    # ZMM0-15 through memory at SCRATCH (Unicorn reads ZMM registers in 64-bit mode only):
    # vmovdqu64 [SCRATCH + 64n], zmmN and back (EVEX, ModRM [disp32]).
    SCRATCH = 0x18000

    def _zmm_move(self, opcode: int, n: int) -> None:
        self.run(bytes([0x62, 0xF1 if n < 8 else 0x71, 0xFE, 0x48, opcode, (n & 7) << 3 | 5])
                 + (self.SCRATCH + 64 * n).to_bytes(4, "little"))

    def zmm(self, n: int) -> int:
        self._zmm_move(0x7F, n)
        return int.from_bytes(self.uc.mem_read(self.SCRATCH + 64 * n, 64), "little")

    def set_zmm(self, n: int, value: int) -> None:
        self.uc.mem_write(self.SCRATCH + 64 * n, value.to_bytes(64, "little"))
        self._zmm_move(0x6F, n)

    def reg(self, name: str) -> int:
        return self.uc.reg_read(getattr(self.x, f"UC_X86_REG_{name.upper()}"))


def test_outside_64_bit_code_w_is_ignored():
    """SDM: VEX.W1/EVEX.W1 of VMOVQ (6E/7E), VPEXTRQ, VPINSRQ and VPBROADCASTQ r64 act as
    their W0 forms (VMOVD, VPEXTRD, VPINSRD, VPBROADCASTD) outside 64-bit code; VZEROUPPER and
    VZEROALL work there (that they leave XMM8-15 alone cannot be seen: 32-bit code reaches
    only XMM0-7, and so does Unicorn's register access); VMASKMOVDQU's EDI/DI follows the
    address size."""
    if vh.engine_xcr0() != vh.XCR0_FULL:
        pytest.skip("engine without AVX-512 state")
    e = Engine32()
    big = (1 << 512) - 1
    x1 = 0x0123456789ABCDEF_FEDCBA9876543210_1111222233334444_5555666677778888
    eax = 0x89ABCDEF

    e.set_zmm(1, big)
    for code in ("c4e1f96ec8", "62f1fd086ec8"):                  # vmovq %eax, %xmm1 (W1)
        e.set_zmm(1, big)
        e.run(bytes.fromhex(code), eax=eax)
        assert e.zmm(1) == eax, code
    for code in ("c4e1f97ec8", "62f1fd087ec8"):                  # vmovq %xmm1, %eax (W1)
        e.set_zmm(1, x1)
        e.run(bytes.fromhex(code), eax=0)
        assert e.reg("eax") == x1 & 0xFFFFFFFF, code
    e.uc.mem_write(e.DATA, bytes(range(1, 17)))
    e.set_zmm(1, big)
    e.run(bytes.fromhex("c4e1f96e0e"), esi=e.DATA)                # vmovq (%esi), %xmm1 (W1)
    assert e.zmm(1) == 0x04030201
    e.set_zmm(1, x1)
    e.run(bytes.fromhex("c4e1f97e0e"), esi=e.DATA)                # vmovq %xmm1, (%esi) (W1)
    assert e.uc.mem_read(e.DATA, 16) == (x1 & 0xFFFFFFFF).to_bytes(4, "little") + bytes(
        range(5, 17))
    for code in ("c4e3f916c801", "62f3fd0816c801"):              # vpextrq $1, %xmm1, %eax
        e.set_zmm(1, x1)
        e.run(bytes.fromhex(code), eax=0)
        assert e.reg("eax") == x1 >> 32 & 0xFFFFFFFF, code
    for code in ("c4e3e922c801", "62f3ed0822c801"):              # vpinsrq $1, %eax, %xmm2, %xmm1
        e.set_zmm(2, x1)
        e.run(bytes.fromhex(code), eax=eax)
        want = x1 & ((1 << 128) - 1) & ~(0xFFFFFFFF << 32) | eax << 32
        assert e.zmm(1) == want, code
    e.set_zmm(1, big)
    e.run(bytes.fromhex("62f2fd487cc8"), eax=eax)                 # vpbroadcastq %eax, %zmm1
    assert e.zmm(1) == sum(eax << 32 * i for i in range(16))

    for code, upper_kept in (("c5f877", True), ("c5fc77", False)):   # vzeroupper, vzeroall
        for n in range(8):
            e.set_zmm(n, big)
        e.run(bytes.fromhex(code))
        for n in range(8):
            assert e.zmm(n) == ((1 << 128) - 1 if upper_kept else 0), (code, n)

    # vmaskmovdqu %xmm1, %xmm2 to [EDI], then with 67h to [DI].
    e.set_zmm(1, sum(0x80 << 8 * i for i in (0, 2, 15)))
    e.set_zmm(2, int.from_bytes(bytes(range(0xA0, 0xB0)), "little"))
    for code, edi, at in (("c5f9f7d1", e.DATA + 0x100, e.DATA + 0x100),
                          ("67c5f9f7d1", 0x5432_1200, 0x1200)):
        e.uc.mem_write(at, bytes(16))
        e.run(bytes.fromhex(code), edi=edi)
        got = e.uc.mem_read(at, 16)
        assert got == bytes(0xA0 + i if i in (0, 2, 15) else 0 for i in range(16)), code
