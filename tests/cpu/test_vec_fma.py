"""The vector unit's fused multiply-add group (third_party/unicorn/vector/ops_fma.c) against
silicon: VFMADD, VFMSUB, VFNMADD, VFNMSUB 132/213/231 PS/PD/SS/SD and VFMADDSUB, VFMSUBADD
132/213/231 PS/PD, VEX (FMA) and EVEX (AVX-512F).

Every entry runs in each of its lengths, register and memory forms (misaligned ones too),
EVEX merge and zero masking, broadcasts, embedded rounding and high registers, over seeded
random states of the instruction's format (random k masks; random MXCSR rounding, DAZ, FZ,
exception masks, OM and UM included, and sticky flags, so #XM with unmasked exceptions is
covered):
  - the engine against the outcomes recorded on an AVX-512 host (vectors/fma.json.gz; record
    with IMACPRO_RECORD_VECTORS=1);
  - the engine against the live host for a further seeded set, when the host has the features.
Directed states enumerate the special operands of the SDM's FMA table (Vol. 1 Table 14-17:
the first NaN of multiplicand, multiplier, addend; 0 * inf; inf - inf; signed zeros) lane by
lane in each order. Directed range states (`range_cases`) put results at the edges of the
format, for PS PD SS SD, VEX and EVEX, with and without embedded rounding, under MXCSR values
that unmask OM or UM or set FZ: exact tiny results (UE with UM unmasked, nothing masked), tiny
results exact only with an unbounded exponent, overflows whose unbounded result is exact (OE
without PE when unmasked) or not, the tininess boundary, a denormal operand, and lanes that mix
them (SDM Vol. 1 4.9.1.4, 4.9.1.5). Faults: #PF at the guard page after the data area (loads,
broadcasts, scalars), masked-off elements there that must not fault (memory fault
suppression), and #UD for EVEX.L'L=3, a broadcast on a scalar, and EVEX.z without a mask.
"""

from __future__ import annotations

import functools
import random
import re
import struct
from fractions import Fraction

import pytest

import vecharness as vh
from vecharness import DATA_SIZE, FORMATS, State, fp_bits

GROUP = "fma"
KNOWN_PER_LINE = 6      # recorded cases per line
LIVE_PER_LINE = 6       # further cases per line against the live host
POOL = 48               # random states per format to draw from

OPERATIONS = ("fmadd", "fmsub", "fnmadd", "fnmsub")      # also scalar
ALTERNATING = ("fmaddsub", "fmsubadd")                   # packed only
ORDERS = ("132", "213", "231")
ROUNDINGS = ("rn-sae", "rd-sae", "ru-sae", "rz-sae")


def esize(mnemonic: str) -> int:
    return 4 if mnemonic[-1] == "s" else 8


def fmt(mnemonic: str) -> str:
    return "f32" if esize(mnemonic) == 4 else "f64"


def packed_mnemonics() -> list[str]:
    return [f"v{op}{order}{t}" for op in OPERATIONS + ALTERNATING for order in ORDERS
            for t in ("ps", "pd")]


def scalar_mnemonics() -> list[str]:
    return [f"v{op}{order}{t}" for op in OPERATIONS for order in ORDERS for t in ("ss", "sd")]


# Each line with the CPU features it needs on the host: (line, features).
VEX = ("fma",)
EVEX = ("avx512f", "avx512vl")


def packed_lines(m: str, index: int) -> list[tuple[str, tuple[str, ...]]]:
    n = 64 // esize(m)                      # elements of a zmm
    e = esize(m)
    rc = ROUNDINGS[index % 4]
    return [
        (f"{m} %xmm3, %xmm2, %xmm1", VEX),
        (f"{m} %ymm13, %ymm12, %ymm11", VEX),
        (f"{m} 16(%rsi), %xmm2, %xmm1", VEX),
        (f"{m} -29(%rdi), %ymm5, %ymm4", VEX),                       # misaligned
        (f"{m} %xmm19, %xmm2, %xmm1{{%k1}}", EVEX),
        (f"{m} 32(%rsi), %ymm22, %ymm17{{%k2}}{{z}}", EVEX),           # disp8 * 32
        (f"{m} %zmm3, %zmm2, %zmm1", EVEX),
        (f"{m} -128(%rdi), %zmm2, %zmm31{{%k1}}{{z}}", EVEX),          # disp8 * 64
        (f"{m} {e}(%rsi){{1to{n}}}, %zmm2, %zmm1{{%k1}}", EVEX),       # disp8 * esize
        (f"{m} -{e}(%rdi){{1to{n // 4}}}, %xmm2, %xmm1{{%k3}}{{z}}", EVEX),
        (f"{m} 3(%rsi){{1to{n // 2}}}, %ymm2, %ymm1", EVEX),
        (f"{m} {{{rc}}}, %zmm3, %zmm2, %zmm1{{%k1}}", EVEX),
        (f"{m} {{{ROUNDINGS[(index + 1) % 4]}}}, %zmm30, %zmm21, %zmm20{{%k5}}{{z}}", EVEX),
    ]


def scalar_lines(m: str, index: int) -> list[tuple[str, tuple[str, ...]]]:
    e = esize(m)
    return [
        (f"{m} %xmm3, %xmm2, %xmm1", VEX),
        (f"{m} {e + 1}(%rsi), %xmm12, %xmm11", VEX),
        (f"{m} %xmm19, %xmm2, %xmm1{{%k1}}", EVEX),
        (f"{m} {e}(%rsi), %xmm2, %xmm17{{%k2}}{{z}}", EVEX),          # disp8 * esize
        (f"{{evex}} {m} %xmm3, %xmm2, %xmm1", EVEX),
        (f"{m} {{{ROUNDINGS[index % 4]}}}, %xmm3, %xmm2, %xmm1{{%k1}}{{z}}", EVEX),
    ]


def all_lines() -> list[tuple[str, str, tuple[str, ...]]]:
    """(line, format of its lanes, host features)."""
    lines = []
    for i, m in enumerate(packed_mnemonics()):
        lines += [(line, fmt(m), feats) for line, feats in packed_lines(m, i)]
    for i, m in enumerate(scalar_mnemonics()):
        lines += [(line, fmt(m), feats) for line, feats in scalar_lines(m, i)]
    return lines


# --- states ---------------------------------------------------------------------------------

# Exceptions the states unmask: all six (IM DM ZM OM UM PM).
UNMASKABLE = (1 << 7, 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12)


def random_mxcsr(rng: random.Random) -> int:
    """Rounding, FZ and DAZ at random; sometimes some exceptions unmasked (#XM) and some
    flags already set (they stay set)."""
    value = 0x1F80 | rng.randrange(4) << 13
    if rng.random() < 0.3:
        value |= 1 << 15
    if rng.random() < 0.3:
        value |= 1 << 6
    if rng.random() < 0.2:
        value &= ~sum(bit for bit in UNMASKABLE if rng.random() < 0.5)
    if rng.random() < 0.2:
        value |= rng.getrandbits(6)
    return value


def state_pool(seed: str, lane_format: str, count: int = POOL) -> list[State]:
    rng = random.Random(seed)
    return [vh.random_state(rng, kinds=(lane_format,), mxcsr=random_mxcsr(rng))
            for _ in range(count)]


# Special operands of Table 14-17, with distinct NaN payloads so the chosen one shows.
SPECIAL_F32 = (0x00000000, 0x80000000, 0x3F800000, 0xBFC00000, 0x7F800000, 0xFF800000,
               0x7FC00011, 0xFFC00022, 0x7F800033, 0x00000005, 0x80400000)
SPECIAL_F64 = (0, 1 << 63, 0x3FF0000000000000, 0xBFF8000000000000, 0x7FF0000000000000,
               0xFFF0000000000000, 0x7FF8000000000011, 0xFFF8000000000022,
               0x7FF0000000000033, 5, 0x8008000000000000)


def directed_states(lane_format: str, seed: str) -> list[State]:
    """Lanes of zmm1, zmm2, zmm3 running through every triple of special values."""
    specials = SPECIAL_F32 if lane_format == "f32" else SPECIAL_F64
    width = 32 if lane_format == "f32" else 64
    lanes = 512 // width
    triples = [(a, b, c) for a in specials for b in specials for c in specials]
    rng = random.Random(seed)
    states = []
    for start in range(0, len(triples), lanes):
        chunk = triples[start:start + lanes]
        state = vh.random_state(rng, kinds=(lane_format,), mxcsr=random_mxcsr(rng) | 0x1F80)
        for reg in range(3):
            state.zmm[1 + reg] = sum(t[reg] << (width * i) for i, t in enumerate(chunk))
        states.append(state)
    return states


DIRECTED = ["vfmadd132ps", "vfmadd213ps", "vfmadd231ps", "vfnmsub132ps", "vfnmsub213ps",
            "vfnmsub231ps", "vfmaddsub231ps", "vfmsub132pd", "vfnmadd213pd", "vfmadd231pd",
            "vfmsubadd132pd"]


# --- directed range states: x * y + z at the edges of the format ----------------------------

def range_values(lane_format: str) -> list[tuple[str, list[tuple[Fraction, ...]]]]:
    """(name, lanes of (x, y, z)): the lanes compute x * y + z, repeated across the
    register."""
    _, fbits, bias = FORMATS[lane_format]
    p, emin, emax = fbits + 1, 1 - bias, bias           # precision, exponent range
    two, one = Fraction(2), Fraction(1)
    ulp1 = two ** (1 - p)                               # 1 + ulp1 is the next after 1
    q = p // 2 + 2                                      # 2^-2q is below half an ulp
    a = (emin - 10) // 2
    b = emin - 10 - a
    big = two ** ((emax + 10) // 2)
    cases = [
        # 2^(emin-10): tiny and exact (a denormal).
        ("tiny-exact", [(two ** a, two ** b, 0)]),
        # 1.5 * 2^emin - 2^emin = 2^(emin-1): exact, from normal operands.
        ("tiny-exact-cancel", [(Fraction(3, 2), two ** emin, -two ** emin)]),
        # The addend cancels the product's high bits: exact because the rounding is fused.
        ("tiny-exact-fused", [(1 + ulp1, (1 + ulp1) * two ** (emin + p + 4),
                               -(1 + 2 * ulp1) * two ** (emin + p + 4))]),
        # p significant bits: exact with an unbounded exponent, inexact as a denormal.
        ("tiny-unbounded-exact", [((1 + ulp1) * two ** a, two ** b, 0)]),
        ("tiny-inexact", [((1 + ulp1) * two ** a, (1 + ulp1) * two ** b, 0)]),
        # 2^emin * (1 - 2^-2q): rounds to the smallest normal number, so it is not tiny
        # (after rounding), unless rounding down or toward zero.
        ("tiny-boundary", [(1 - two ** -q, (1 + two ** -q) * two ** emin, 0)]),
        # A denormal operand (DE) and an exact tiny result.
        ("denormal-operand", [(two ** (emin - 10), one, 0)]),
        ("overflow-exact", [(big, big, 0)]),
        ("overflow-inexact", [((1 + ulp1) * big, (1 + ulp1) * big, 0)]),
        # 2^(emax+1) * (1 - 2^-2q): overflows when rounding to nearest or up.
        ("overflow-rounding", [(2 * (1 - two ** -q), (1 + two ** -q) * two ** emax, 0)]),
        # The largest number plus its ulp: exactly 2^(emax+1).
        ("overflow-add", [(two ** (emax - p), 2 * one, (2 - ulp1) * two ** emax)]),
        # Lanes of each kind together: the flags of all elements.
        ("mixed", [(big, big, 0), (1 + ulp1, 1 + ulp1, 0), (two ** a, two ** b, 0),
                   (one, one, one), ((1 + ulp1) * two ** a, two ** b, 0)]),
    ]
    return [(name, [tuple(Fraction(v) for v in lane) for lane in lanes])
            for name, lanes in cases]


ALL, FZ, DAZ, RD, RZ = 0x1F80, 0x8000, 0x0040, 0x2000, 0x6000
NO_OM, NO_UM, NO_PM = ALL & ~(1 << 10), ALL & ~(1 << 11), ALL & ~(1 << 12)
RANGE_MXCSRS = (ALL, ALL | FZ, NO_UM, NO_UM | FZ, NO_UM | RZ | DAZ, NO_OM, NO_OM | RZ,
                NO_PM | FZ, NO_OM & NO_UM | RD)


def range_lines(t: str) -> list[tuple[str, str, str, tuple]]:
    """(line, kind, order, registers (dest, vvvv, rm)) for ps, pd, ss or sd; an rm of "mem"
    is the data at RSI."""
    n = 64 // esize(t)
    if t in ("ps", "pd"):
        return [
            (f"vfmadd231{t} %xmm3, %xmm2, %xmm1", "fmadd", "231", (1, 2, 3)),
            (f"vfnmsub132{t} %ymm3, %ymm2, %ymm1", "fnmsub", "132", (1, 2, 3)),
            (f"vfmsub213{t} %xmm19, %xmm2, %xmm1{{%k1}}", "fmsub", "213", (1, 2, 19)),
            (f"vfmsub213{t} %zmm3, %zmm2, %zmm1{{%k1}}", "fmsub", "213", (1, 2, 3)),
            (f"vfnmadd231{t} (%rsi){{1to{n}}}, %zmm2, %zmm1", "fnmadd", "231", (1, 2, "mem")),
            (f"vfmadd132{t} 64(%rsi), %ymm2, %ymm1{{%k1}}{{z}}", "fmadd", "132",
             (1, 2, "mem")),
            (f"vfmadd231{t} {{rn-sae}}, %zmm3, %zmm2, %zmm1", "fmadd", "231", (1, 2, 3)),
            (f"vfmsub132{t} {{rz-sae}}, %zmm3, %zmm2, %zmm1{{%k1}}{{z}}", "fmsub", "132",
             (1, 2, 3)),
        ]
    return [
        (f"vfmadd231{t} %xmm3, %xmm2, %xmm1", "fmadd", "231", (1, 2, 3)),
        (f"vfnmsub213{t} 8(%rsi), %xmm2, %xmm1", "fnmsub", "213", (1, 2, "mem")),
        (f"{{evex}} vfmsub132{t} %xmm3, %xmm2, %xmm1", "fmsub", "132", (1, 2, 3)),
        (f"vfnmadd231{t} %xmm3, %xmm22, %xmm1{{%k1}}", "fnmadd", "231", (1, 22, 3)),
        (f"vfmadd231{t} {{rn-sae}}, %xmm3, %xmm2, %xmm1", "fmadd", "231", (1, 2, 3)),
        (f"vfmsub213{t} {{ru-sae}}, %xmm3, %xmm2, %xmm1{{%k1}}{{z}}", "fmsub", "213",
         (1, 2, 3)),
    ]


def range_state(t: str, kind: str, order: str, regs: tuple, lanes, mxcsr: int) -> State:
    """x, y, z in the registers the order reads them from (the memory operand's at RSI, and
    64 bytes on), z negated for the kinds that subtract it, so every kind computes
    +-(x * y + z)."""
    lane_format = "f32" if t[1] == "s" else "f64"
    width = FORMATS[lane_format][0]
    flip = -1 if kind in ("fmsub", "fnmadd") else 1
    roles = {"132": "xzy", "213": "yxz", "231": "zxy"}[order]   # dest, vvvv, rm
    state = State.blank()
    state.mxcsr = mxcsr
    state.k[1] = 0xA5F3A5F3A5F3A5F3
    for reg, role in zip(regs, roles):
        index = "xyz".index(role)
        sign = flip if role == "z" else 1
        value = sum(fp_bits(lane_format, lanes[i % len(lanes)][index] * sign) << (width * i)
                    for i in range(512 // width))
        if reg == "mem":
            state.mem = value.to_bytes(64, "little") * 2 + bytes(DATA_SIZE - 128)
        else:
            state.zmm[reg] = value
    return state


def range_cases() -> list[tuple[str, bytes, State]]:
    cases = []
    for t in ("ps", "pd", "ss", "sd"):
        lines = range_lines(t)
        codes = vh.assemble([line for line, _, _, _ in lines])
        for (line, kind, order, regs), code in zip(lines, codes):
            for name, lanes in range_values("f32" if t[1] == "s" else "f64"):
                for mxcsr in RANGE_MXCSRS:
                    cases.append((f"range {name} {line}", code,
                                  range_state(t, kind, order, regs, lanes, mxcsr)))
    return cases


# --- the cases ------------------------------------------------------------------------------

def with_bytes(code: bytes, p2_set: int = 0, p2_clear: int = 0) -> bytes:
    """An EVEX instruction with bits of P2 (z L'L b V' aaa) changed."""
    assert code[0] == 0x62
    return code[:3] + bytes([(code[3] | p2_set) & ~p2_clear & 0xFF]) + code[4:]


def fault_cases(rng: random.Random) -> list[tuple[str, bytes, State]]:
    """#PF at the guard page, suppression under a mask, #UD encodings; several states each."""
    pool = state_pool("fma-faults", "f32", 16)
    cases = []

    def add(label: str, line: str, count: int = 4, **fields) -> None:
        code = vh.assemble([line])[0]
        for state in rng.sample(pool, count):
            state = state.copy()
            state.mxcsr |= 0x1F80                       # exceptions masked: only the #PF
            for name, value in fields.items():
                if name.startswith("k"):
                    state.k[int(name[1:])] = value(rng) if callable(value) else value
                else:
                    state.gpr[name] = value
            cases.append((label, code, state))

    top = DATA_SIZE
    add("#PF zmm load", "vfmadd231ps (%rsi), %zmm2, %zmm1", rsi=top - 32)
    add("#PF ymm load VEX", "vfmadd132pd (%rsi), %ymm2, %ymm1", rsi=top - 16)
    add("#PF scalar", "vfnmsub213ss (%rsi), %xmm2, %xmm1", rsi=top - 2)
    add("#PF scalar EVEX", "vfmsub231sd (%rsi), %xmm2, %xmm1{%k1}", rsi=top - 4,
        k1=lambda r: r.getrandbits(16) | 1)
    add("#PF broadcast", "vfmadd132ps (%rsi){1to16}, %zmm2, %zmm1{%k1}", rsi=top,
        k1=lambda r: r.getrandbits(16) | 1 << r.randrange(16))
    add("#PF live element", "vfmaddsub231ps (%rsi), %zmm2, %zmm1{%k1}", rsi=top - 32,
        k1=lambda r: r.getrandbits(16) | 1 << 8)
    add("suppressed: masked-off elements", "vfmadd231ps (%rsi), %zmm2, %zmm1{%k1}",
        rsi=top - 32, k1=lambda r: r.getrandbits(8))
    add("suppressed: zeroing", "vfnmadd231pd (%rsi), %zmm2, %zmm1{%k1}{z}", rsi=top - 32,
        k1=lambda r: r.getrandbits(4))
    add("suppressed: ymm", "vfmsubadd213ps 16(%rsi), %ymm2, %ymm1{%k1}", rsi=top - 32,
        k1=lambda r: r.getrandbits(4))
    add("suppressed: broadcast, no element", "vfmadd132pd (%rsi){1to8}, %zmm2, %zmm1{%k1}",
        rsi=top, k1=0)
    add("suppressed: broadcast, k1 of other lengths", "vfmadd132ps (%rsi){1to4}, %xmm2, "
        "%xmm1{%k1}", rsi=top, k1=lambda r: r.getrandbits(16) & ~0xF)
    add("suppressed: scalar", "vfmsub231sd (%rsi), %xmm2, %xmm1{%k1}", rsi=top,
        k1=lambda r: r.getrandbits(16) & ~1)

    zmm, ss = vh.assemble(["vfmadd231ps %zmm3, %zmm2, %zmm1",
                           "{evex} vfmadd231ss (%rsi), %xmm2, %xmm1"])
    for label, code in [
        ("#UD EVEX.L'L=3", with_bytes(zmm, 0x60)),
        ("#UD broadcast on a scalar", with_bytes(ss, 0x10)),
        ("#UD EVEX.z without a mask", with_bytes(zmm, 0x80)),
    ]:
        for state in rng.sample(pool, 2):
            cases.append((label, code, state))
    # VEX.L=1 on a scalar (LIG) runs.
    for state in rng.sample(pool, 3):
        cases.append(("VEX.L=1 scalar", bytes.fromhex("c4e26db9ca"), state))
    return cases


@functools.cache
def known_cases() -> list[tuple[str, bytes, State]]:
    rng = random.Random("fma-known")
    pools = {f: state_pool(f"fma-known-{f}", f) for f in ("f32", "f64")}
    lines = all_lines()
    codes = vh.assemble([line for line, _, _ in lines])
    cases = []
    for (line, lane_format, _), code in zip(lines, codes):
        for state in rng.sample(pools[lane_format], KNOWN_PER_LINE):
            cases.append((line, code, state))
    for m in DIRECTED:
        line = f"{m} %zmm3, %zmm2, %zmm1"
        code = vh.assemble([line])[0]
        for state in directed_states(fmt(m), f"fma-directed-{m}"):
            cases.append(("directed " + line, code, state))
    cases += range_cases()
    cases += fault_cases(rng)
    return cases


@functools.cache
def recorded() -> list[vh.Outcome]:
    return vh.known_answers(GROUP, [(code, state) for _, code, state in known_cases()])


def explain(label: str, code: bytes, state: State, outcomes, diffs: list[str]) -> str:
    """A failure's reproducer (vh.describe names the registers of the differences; it cannot
    parse the memory and #PF-address ones, so they are only listed)."""
    named = [d for d in diffs if re.match(r"[xyz]mm\d+|k\d|\w+:", d)]
    return (f"{label}\n" + vh.describe(code, state, outcomes, named) + "\n  "
            + "\n  ".join(diffs))


def check(cases, references, limit: int = 5) -> list[str]:
    """Engine against reference outcomes (recorded, or None for the live host)."""
    failures = []
    for (label, code, state), ref in zip(cases, references):
        ref = ref or vh.run_host(code, state)
        engine = vh.run_engine(code, state)
        diffs = vh.compare(ref, engine)
        if diffs:
            failures.append(explain(label, code, state, (ref, engine), diffs))
            if len(failures) >= limit:
                break
    return failures


# --- tests ----------------------------------------------------------------------------------

def test_every_entry_is_covered():
    """Each mnemonic has VEX and EVEX lines in every length, memory, masking, broadcast and
    rounding forms (the list is built, not typed: this pins its shape)."""
    lines = [line for line, _, _ in all_lines()]
    assert len(packed_mnemonics()) == 36 and len(scalar_mnemonics()) == 24
    for m in packed_mnemonics():
        mine = [line for line in lines if line.split()[0] == m]
        for needle in ("%xmm", "%ymm", "%zmm", "(%rsi)", "{%k1}", "{z}", "{1to", "-sae}"):
            assert any(needle in line for line in mine), (m, needle)
    for m in scalar_mnemonics():
        mine = [line for line in lines if m in line.split()[:2]]
        for needle in ("(%rsi)", "{%k1}", "{z}", "-sae}", "{evex}"):
            assert any(needle in line for line in mine), (m, needle)


def part_of(label: str) -> str:
    if label.startswith(("#", "suppressed", "VEX.L")):
        return "faults"
    return label.split()[0] if label.startswith(("directed", "range")) else "random"


@pytest.mark.parametrize("part", ["random", "directed", "range", "faults"])
def test_engine_matches_recorded_silicon(part):
    cases, refs = known_cases(), recorded()
    chosen = [(c, r) for c, r in zip(cases, refs) if part_of(c[0]) == part]
    assert chosen
    failures = check([c for c, _ in chosen], [r for _, r in chosen])
    assert not failures, "\n\n".join(failures)


def test_recorded_outcomes_cover_the_special_cases():
    """The recorded states reach what the tests are for: every fault kind, #XM from an
    unmasked exception, each MXCSR flag, and results of all rounding modes."""
    faults = {ref.fault for ref in recorded()}
    assert {None, 6, 14, 19} <= faults
    flags = 0
    for (_, _, state), ref in zip(known_cases(), recorded()):
        if ref.fault is None:
            flags |= ref.state.mxcsr & ~state.mxcsr & 0x3F
    assert flags == 0x3B                # IE DE OE UE PE (a multiply-add divides by nothing)
    # #XM from unmasked overflow and underflow, with and without PE.
    xm = {ref.state.mxcsr & ~state.mxcsr & 0x38 for (_, _, state), ref
          in zip(known_cases(), recorded()) if ref.fault == 19}
    assert {0x08, 0x28, 0x10, 0x30} <= xm


def test_range_cases_reach_their_edges():
    """The directed range states do what their names say (engine only, the SDM's rules): UE
    with UM unmasked for an exact tiny result, no PE for an unmasked overflow or underflow
    whose unbounded result is exact, a zero for FZ with UM masked, and nothing at all from
    the embedded-rounding forms (every exception suppressed: no #XM, MXCSR unchanged)."""
    expect = {      # (name, MXCSR): (fault, new flags)
        ("tiny-exact", ALL): (None, 0), ("tiny-exact", ALL | FZ): (None, 0x30),
        ("tiny-exact", NO_UM): (19, 0x10), ("tiny-exact-cancel", NO_UM): (19, 0x10),
        ("tiny-exact-fused", NO_UM): (19, 0x10), ("tiny-exact-fused", ALL): (None, 0),
        ("tiny-unbounded-exact", NO_UM): (19, 0x10), ("tiny-unbounded-exact", ALL): (None, 0x30),
        ("tiny-inexact", NO_UM): (19, 0x30), ("tiny-boundary", NO_UM): (None, 0x20),
        ("tiny-boundary", NO_UM | RZ | DAZ): (19, 0x30), ("denormal-operand", NO_UM): (19, 0x12),
        ("overflow-exact", NO_OM): (19, 0x08), ("overflow-exact", ALL): (None, 0x28),
        ("overflow-inexact", NO_OM): (19, 0x28), ("overflow-rounding", NO_OM): (19, 0x28),
        ("overflow-rounding", NO_OM | RZ): (None, 0x20), ("overflow-add", NO_OM): (19, 0x08),
    }
    seen = set()
    for label, code, state in range_cases():
        name = label.split()[1]
        out = vh.run_engine(code, state)
        if "-sae}" in label:
            assert out.fault is None and out.state.mxcsr == state.mxcsr, label
            continue
        if (name, state.mxcsr) in expect:
            seen.add((name, state.mxcsr))
            assert (out.fault, out.state.mxcsr & 0x3F) == expect[name, state.mxcsr], (
                label, hex(state.mxcsr))
        if name == "tiny-exact" and state.mxcsr == ALL | FZ and "%k1" not in label:
            bits = 8 * esize(next(w for w in label.split()[2:] if w.startswith("v")))
            assert out.state.zmm[1] << 1 & ((1 << bits) - 1) == 0, label  # lane 0: a zero
    assert seen == set(expect)


def host_can(features: tuple[str, ...]) -> bool:
    caps = vh.host_caps()
    return vh.host_available() and caps.has(*features) and (
        "avx512f" not in features or caps.k_bits == 64)


@pytest.mark.skipif(not vh.host_available(), reason="no host reference runner")
def test_engine_matches_live_host():
    rng = random.Random("fma-live")
    pools = {f: state_pool(f"fma-live-{f}", f) for f in ("f32", "f64")}
    lines = [entry for entry in all_lines() if host_can(entry[2])]
    if not lines:
        pytest.skip("the host has neither FMA nor AVX-512")
    codes = vh.assemble([line for line, _, _ in lines])
    cases = [(line, code, state) for (line, lane_format, _), code in zip(lines, codes)
             for state in rng.sample(pools[lane_format], LIVE_PER_LINE)]
    failures = check(cases, [None] * len(cases))
    assert not failures, "\n\n".join(failures)


def test_nan_operand_order_and_zero_signs():
    """A few hand-checked lanes (SDM Vol. 1 Tables 14-16 and 14-17), engine only: the NaN
    chosen is the multiplicand's, then the multiplier's, then the addend's, whatever the
    order digits and negations; 0 * inf + QNaN is the QNaN with no invalid; (+0 * 1) - (+0)
    is -0 only when rounding down; a denormal operand sets DE, but not beside a NaN."""
    f32 = lambda v: struct.unpack("<I", struct.pack("<f", v))[0]       # noqa: E731
    qa, qb, qc, inf = 0x7FC00001, 0x7FC00002, 0x7FC00003, 0x7F800000

    def run(line: str, x1: int, x2: int, x3: int, mxcsr: int = 0x1F80) -> tuple[int, int]:
        state = State.blank()
        state.zmm[1], state.zmm[2], state.zmm[3], state.mxcsr = x1, x2, x3, mxcsr
        out = vh.run_engine(vh.assemble([line])[0], state)
        assert out.fault is None
        return out.state.zmm[1] & 0xFFFFFFFF, out.state.mxcsr & 0x3F

    # vfmaddXYZ %xmm3, %xmm2, %xmm1: operand 1 = xmm1, 2 = xmm2, 3 = xmm3.
    assert run("vfmadd132ss %xmm3, %xmm2, %xmm1", qa, qb, qc) == (qa, 0)      # x = op1
    assert run("vfmadd132ss %xmm3, %xmm2, %xmm1", f32(1), qb, qc) == (qc, 0)  # y = op3
    assert run("vfmadd213ss %xmm3, %xmm2, %xmm1", qa, qb, qc) == (qb, 0)      # x = op2
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", qa, f32(1), qc) == (qc, 0)  # y = op3
    assert run("vfnmsub231ss %xmm3, %xmm2, %xmm1", qa, f32(1), f32(2)) == (qa, 0)
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", 0x7F800001, qb, qc) == (qb, 1)
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", qa, 0, inf) == (qa, 0)
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", f32(1), 0, inf) == (0xFFC00000, 1)
    assert run("vfmsub231ss %xmm3, %xmm2, %xmm1", 0, 0, f32(1)) == (0, 0)
    assert run("vfmsub231ss %xmm3, %xmm2, %xmm1", 0, 0, f32(1), 0x3F80) == (0x80000000, 0)
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", f32(1), 5, f32(1)) == (f32(1), 0x22)
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", qa, 5, f32(1)) == (qa, 0)
    assert run("vfmadd231ss %xmm3, %xmm2, %xmm1", 0xFF800000, 5, inf) == (0xFFC00000, 1)
