"""The vector unit's AES and carry-less multiplication group (third_party/unicorn/vector/
ops_aes.c) against silicon and against FIPS-197.

VAESENC, VAESENCLAST, VAESDEC, VAESDECLAST, VAESIMC, VAESKEYGENASSIST and VPCLMULQDQ in their
VEX.128 forms (the only ones the Xeon W has), register and memory operands (unaligned: VEX
forms do not check alignment), registers 8-15 and a register as every operand, every
VPCLMULQDQ quadword selection (and imm8 bits that do not select), round constants for
VAESKEYGENASSIST. The engine is compared with:
  - the recorded answers in vectors/aes.json.gz (always; recorded on an AVX-512 host with
    IMACPRO_RECORD_VECTORS=1), and
  - the live host for a further seeded set, when it has AES and PCLMULQDQ with AVX;
  - independently of any host: the engine's instructions, chained, encrypt and decrypt
    FIPS-197's AES-128 example (key expansion with VAESKEYGENASSIST, decryption keys with
    VAESIMC), and VPCLMULQDQ agrees with a carry-less product computed here.
Faults, on both sides: #PF for a memory operand reaching into the guard page; #UD for
VAESIMC/VAESKEYGENASSIST with VEX.L=1 and for vvvv not 1111b where unused.

Deviation left out of the host comparison: the 256-bit VEX forms of VAESENC, VAESENCLAST,
VAESDEC, VAESDECLAST and VPCLMULQDQ (VAES, VPCLMULQDQ) and every EVEX form are later than
Skylake-SP, whose CPUID has neither feature: they must be #UD on the engine, while a newer
host runs them. The engine's #UD is checked alone.
"""

from __future__ import annotations

import contextlib
import functools
import random
from dataclasses import dataclass

import pytest

import vecharness as vh
from vecharness import State, compare, known_answers, run_engine

GROUP = "aes"
RECORDED_STATES = 4       # per line, in vectors/aes.json.gz
HOST_STATES = 6           # per line, further states against the live host
HOST_FEATURES = ("aes", "pclmulqdq", "avx")
KINDS = ("bits", "bits", "int8", "int32", "int64")


@dataclass(frozen=True)
class Line:
    mnemonic: str
    text: str
    mem_reg: str = ""
    disp: int = 0


CLMUL_IMMS = (0x00, 0x01, 0x10, 0x11, 0xEE, 0xFF, 0x0E, 0xF1)
RCON_IMMS = (0x01, 0x00, 0x02, 0x1B, 0x36, 0x80, 0xFF, 0x5A)


@functools.cache
def lines() -> tuple[Line, ...]:
    out: list[Line] = []
    for m in ("vaesenc", "vaesenclast", "vaesdec", "vaesdeclast"):
        out += [Line(m, f"{m} %xmm1, %xmm2, %xmm3"), Line(m, f"{m} %xmm13, %xmm9, %xmm10"),
                Line(m, f"{m} %xmm4, %xmm4, %xmm4"),
                Line(m, f"{m} 16(%rsi), %xmm2, %xmm3", "rsi", 16),
                Line(m, f"{m} -7(%rdi), %xmm12, %xmm5", "rdi", -7)]
    m = "vaesimc"
    out += [Line(m, f"{m} %xmm1, %xmm3"), Line(m, f"{m} %xmm14, %xmm9"),
            Line(m, f"{m} %xmm6, %xmm6"), Line(m, f"{m} 5(%rsi), %xmm2", "rsi", 5)]
    m = "vaeskeygenassist"
    for n, imm in enumerate(RCON_IMMS):
        out.append(Line(m, f"{m} ${imm}, %xmm1, %xmm3"))
        if n == 0:
            out += [Line(m, f"{m} ${imm}, %xmm11, %xmm8"),
                    Line(m, f"{m} ${imm}, 33(%rdi), %xmm2", "rdi", 33)]
    m = "vpclmulqdq"
    for n, imm in enumerate(CLMUL_IMMS):
        out.append(Line(m, f"{m} ${imm}, %xmm1, %xmm2, %xmm3"))
        if n < 4:
            out += [Line(m, f"{m} ${imm}, 24(%rsi), %xmm12, %xmm3", "rsi", 24)]
        if n == 0:
            out += [Line(m, f"{m} ${imm}, %xmm15, %xmm9, %xmm8"),
                    Line(m, f"{m} ${imm}, %xmm7, %xmm7, %xmm7")]
    return tuple(out)


def _state(rng: random.Random) -> State:
    st = vh.random_state(rng, kinds=KINDS)
    # Carry-less products of edge values: 0, 1, all ones, the top bit.
    for r in (1, 2, 7, 9, 12, 15):
        if rng.random() < 0.3:
            q = [rng.choice((0, 1, vh.MASK64, 1 << 63, rng.getrandbits(64))) for _ in range(8)]
            st.zmm[r] = sum(v << 64 * i for i, v in enumerate(q))
    return st


def _states(line: Line, count: int, salt: str) -> list[State]:
    rng = random.Random(f"{GROUP}-{salt}-{line.text}")
    return [_state(rng) for _ in range(count)]


# --- faults and #UD ---------------------------------------------------------------------------

def fault_cases() -> list[tuple[Line, State, str]]:
    out = []
    for line in lines():
        if not line.mem_reg:
            continue
        st = _states(line, 1, "fault")[0]
        for offset, expect in ((8, "#PF"), (1, "#PF"), (16, "no fault")):
            s = st.copy()
            s.gpr[line.mem_reg] = vh.DATA_SIZE - line.disp - offset
            out.append((line, s, expect))
    return out


def _vex3(text: str) -> bytearray:
    code = bytearray(vh.assemble(["{vex3} " + text])[0])
    assert code[0] == 0xC4, text
    return code


def _ud_encodings() -> list[tuple[str, bytes]]:
    """#UD on every CPU: the SDM lists these instructions as VEX.128 only, and vvvv must be
    1111b where it is unused."""
    out = []
    for text in ("vaesimc %xmm1, %xmm3", "vaeskeygenassist $1, %xmm1, %xmm3",
                 "vaesimc (%rsi), %xmm3"):
        code = _vex3(text)
        code[2] |= 0x04
        out.append((f"VEX.256 {text}", bytes(code)))
        code = _vex3(text)
        code[2] &= ~0x30
        out.append((f"vvvv {text}", bytes(code)))
    code = _vex3("vaesenc %xmm1, %xmm2, %xmm3")
    out.append(("LOCK vaesenc", b"\xf0" + bytes(code)))
    return out


# Later than Skylake-SP (VAES, VPCLMULQDQ): #UD on the engine, run by newer hosts.
NOT_SKYLAKE = (
    "vaesenc %ymm1, %ymm2, %ymm3", "vaesenclast (%rsi), %ymm2, %ymm3",
    "vaesdec %ymm11, %ymm12, %ymm13", "vaesdeclast %ymm1, %ymm2, %ymm3",
    "vpclmulqdq $0x11, %ymm1, %ymm2, %ymm3", "vpclmulqdq $0, (%rsi), %ymm2, %ymm3",
    "vaesenc %zmm1, %zmm2, %zmm3", "vaesdec %xmm17, %xmm2, %xmm3",
    "vaesenclast %ymm21, %ymm22, %ymm23", "vaesdeclast (%rsi), %zmm2, %zmm3",
    "vpclmulqdq $1, %zmm1, %zmm2, %zmm3", "vpclmulqdq $0x10, %xmm17, %xmm18, %xmm19",
    "{evex} vaesenc %xmm1, %xmm2, %xmm3", "{evex} vpclmulqdq $0, %xmm1, %xmm2, %xmm3",
)


# --- all cases, recorded once -------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    tag: str
    text: str
    code: bytes
    state: State
    expect: str = ""


@functools.cache
def cases() -> tuple[Case, ...]:
    all_lines = lines()
    codes = dict(zip([ln.text for ln in all_lines], vh.assemble([ln.text for ln in all_lines])))
    out = []
    for line in all_lines:
        for st in _states(line, RECORDED_STATES, "recorded"):
            out.append(Case(line.mnemonic, line.text, codes[line.text], st))
    for line, st, expect in fault_cases():
        out.append(Case("faults", line.text, codes[line.text], st, expect))
    rng = random.Random(f"{GROUP}-ud")
    for name, code in _ud_encodings():
        out.append(Case("ud", name, code, _state(rng), "#UD"))
    return tuple(out)


@functools.cache
def recorded() -> tuple[vh.Outcome, ...]:
    return tuple(known_answers(GROUP, [(c.code, c.state) for c in cases()]))





def _check(picked, *, expect: bool = False) -> list[str]:
    failures = []
    for case, answer in picked:
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


@pytest.mark.parametrize("tag", ["faults", "ud"])
def test_faults_match_recorded_answers_and_the_sdm(tag):
    picked = [(c, o) for c, o in zip(cases(), recorded()) if c.tag == tag]
    assert picked
    failures = _check(picked, expect=True)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("text", NOT_SKYLAKE)
def test_later_forms_are_invalid(text):
    """VAES and VPCLMULQDQ (256-bit VEX, every EVEX form) are not Skylake-SP's: #UD, nothing
    changed."""
    code = vh.assemble([text])[0]
    st = _states(Line("", text), 1, "later")[0]
    outcome = run_engine(code, st)
    assert outcome.fault == 6, (text, vh.vector_name(outcome.fault))
    assert not compare(vh.Outcome(st, 6, outcome.caps), outcome)


def _host_ready() -> bool:
    return vh.host_available() and vh.host_caps().has(*HOST_FEATURES)


@pytest.mark.parametrize("mnemonic", MNEMONICS)
def test_engine_matches_live_host(mnemonic):
    if not _host_ready():
        pytest.skip("the host lacks AES/PCLMULQDQ with AVX")
    picked = [ln for ln in lines() if ln.mnemonic == mnemonic]
    codes = vh.assemble([ln.text for ln in picked])
    failures = []
    for line, code in zip(picked, codes):
        failures += [f"{line.text}: {f}" for f in vh.sweep(code, _states(line, HOST_STATES,
                                                                         "host"))]
        if len(failures) >= 4:
            break
    assert not failures, "\n".join(failures)


# --- FIPS-197 and carry-less products, without a host -----------------------------------------

def _xmm(value: bytes) -> int:
    return int.from_bytes(value, "little")


def _engine_op(text: str, **regs: int) -> int:
    """xmm0 after `text`, run on the engine with the given xmm registers (xmmN=...)."""
    st = State.blank()
    for name, value in regs.items():
        st.zmm[int(name[3:])] = value
    out = run_engine(vh.assemble([text])[0], st)
    assert out.fault is None, (text, out.detail)
    assert out.state.zmm[0] >> 128 == 0, text          # VEX.128 zeroes the rest
    return out.state.zmm[0]


def _expand_key(key: bytes) -> list[int]:
    """AES-128's round keys, with VAESKEYGENASSIST doing SubWord/RotWord/Rcon (FIPS-197 5.2:
    w[i] = w[i-4] ^ RotWord(SubWord(w[i-1])) ^ Rcon for the first word of each round key)."""
    keys = [_xmm(key)]
    rcon = 1
    for _ in range(10):
        prev = keys[-1]
        assist = _engine_op(f"vaeskeygenassist ${rcon}, %xmm1, %xmm0", xmm1=prev)
        t = assist >> 96 & 0xFFFF_FFFF                  # RotWord(SubWord(w3)) ^ rcon
        words = [prev >> 32 * i & 0xFFFF_FFFF for i in range(4)]
        w0 = words[0] ^ t
        w1 = words[1] ^ w0
        w2 = words[2] ^ w1
        w3 = words[3] ^ w2
        keys.append(w0 | w1 << 32 | w2 << 64 | w3 << 96)
        rcon = (rcon << 1) ^ (0x11B if rcon & 0x80 else 0)
    return keys


def test_fips197_aes128_example():
    """FIPS-197 Appendix C.1: key 000102..0f, plaintext 00112233..ff, ciphertext
    69c4e0d86a7b0430d8cdb78070b4c55a; and back with the Equivalent Inverse Cipher."""
    key = bytes(range(16))
    plain = bytes.fromhex("00112233445566778899aabbccddeeff")
    cipher = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
    keys = _expand_key(key)
    assert keys[10] == _xmm(bytes.fromhex("13111d7fe3944a17f307a78b4d2b30c5"))
    state = _xmm(plain) ^ keys[0]
    for r in range(1, 10):
        state = _engine_op("vaesenc %xmm2, %xmm1, %xmm0", xmm1=state, xmm2=keys[r])
    state = _engine_op("vaesenclast %xmm2, %xmm1, %xmm0", xmm1=state, xmm2=keys[10])
    assert state == _xmm(cipher)
    state ^= keys[10]
    for r in range(9, 0, -1):
        dkey = _engine_op("vaesimc %xmm1, %xmm0", xmm1=keys[r])
        state = _engine_op("vaesdec %xmm2, %xmm1, %xmm0", xmm1=state, xmm2=dkey)
    state = _engine_op("vaesdeclast %xmm2, %xmm1, %xmm0", xmm1=state, xmm2=keys[0])
    assert state == _xmm(plain)


def _clmul(a: int, b: int) -> int:
    out = 0
    for i in range(64):
        if b >> i & 1:
            out ^= a << i
    return out


def test_vpclmulqdq_is_the_carry_less_product():
    rng = random.Random(f"{GROUP}-clmul")
    for _ in range(40):
        a, b = rng.getrandbits(128), rng.getrandbits(128)
        imm = rng.choice(CLMUL_IMMS)
        got = _engine_op(f"vpclmulqdq ${imm}, %xmm2, %xmm1, %xmm0", xmm1=a, xmm2=b)
        qa = a >> 64 * (imm & 1) & vh.MASK64
        qb = b >> 64 * (imm >> 4 & 1) & vh.MASK64
        assert got == _clmul(qa, qb), (hex(a), hex(b), imm)


@contextlib.contextmanager
def engine_xcr0(value: int):
    """The engine with XCR0 = value (set by an executed XSETBV), restored afterwards."""
    def xsetbv(xcr0: int) -> None:
        out = run_engine(b"\x0f\x01\xd1", State.blank(rax=xcr0, rcx=0, rdx=0))
        assert out.fault is None, (hex(xcr0), out.detail)
    full = vh.engine_xcr0()
    xsetbv(value)
    try:
        yield
    finally:
        xsetbv(full)


def test_vex_forms_need_the_avx_state():
    """VEX-encoded AES and PCLMULQDQ need XCR0's SSE and AVX state: #UD with x87/SSE only;
    the AVX-512 state is not needed."""
    texts = ["vaesenc %xmm1, %xmm2, %xmm3", "vaesimc %xmm1, %xmm3",
             "vaeskeygenassist $1, %xmm1, %xmm3", "vpclmulqdq $0, %xmm1, %xmm2, %xmm3"]
    codes = vh.assemble(texts)
    st = _states(Line("", "xcr0"), 1, "xcr0")[0]
    with engine_xcr0(0x3):
        for text, code in zip(texts, codes):
            assert run_engine(code, st).fault == 6, text
    with engine_xcr0(0x7):
        for text, code in zip(texts, codes):
            assert run_engine(code, st).fault is None, text


def test_every_mnemonic_of_the_group_is_tested():
    assert set(MNEMONICS) == {"vaesenc", "vaesenclast", "vaesdec", "vaesdeclast", "vaesimc",
                              "vaeskeygenassist", "vpclmulqdq"}
