"""The vector differential harness (vecharness.py) checked on itself: legacy SSE instructions,
which the engine executes today, agree between the engine and the host over a few hundred
random states; faults come out as the same vector on both sides; compare() notices a change
in any part of the state; and, on the host alone, VEX/EVEX instructions see the ZMM and k
state they were given.

Known engine differences in legacy SSE that these tests step around (each test says which):
  - MXCSR exception flags (IE DE ZE OE UE PE) are never set by the engine;
  - with two NaN operands the engine returns the one with the larger significand (x87
    rule), x86 SSE returns the first source operand;
  - FTZ does not flush tiny results; with DAZ, MINPS/MAXPS return denormal inputs unflushed;
  - PCMPISTRI/PCMPESTRI miss an equal-ordered match cut off by the end of the string;
    PCMPESTRx with a length of -2^31 in EAX/EDX crashes the engine (the whole process);
  - a 16-byte access that crosses into an unmapped page does its first 8 bytes first (a
    load updates half the register, a store writes half the bytes) before the #PF;
  - legacy SSE memory operands are never alignment-checked (MOVAPS, MOVDQA, ADDPS m128,
    MOVNTDQ: no #GP); LDMXCSR does not #GP on reserved bits; unmasked SIMD exceptions raise
    no #XM.
"""

from __future__ import annotations

import random
import struct

import pytest

import vecharness as vh
from vecharness import State, compare, random_state, run_engine, run_host, sweep

STATES = 300
pytestmark = pytest.mark.skipif(not vh.host_available(), reason="no host reference runner")


@pytest.fixture(scope="module")
def states() -> list[State]:
    rng = random.Random(20261130)
    return [random_state(rng) for _ in range(STATES)]


def code_of(line: str) -> bytes:
    return vh.assemble([line])[0]


def unchanged(state: State, caps: vh.Caps, fault: int | None = None) -> vh.Outcome:
    """The outcome of an instruction that changed nothing (to compare others against)."""
    return vh.Outcome(state.copy(), fault, caps)


# --- the harness on its own ---------------------------------------------------------------

def test_assemble_gives_each_line_its_bytes():
    lines = ["paddd %xmm1,%xmm2", "ud2", "vpaddd %zmm1,%zmm2,%zmm3{%k1}", "nop",
             "movups %xmm6,16(%rsi)"]
    assert vh.assemble(lines) == [bytes.fromhex("660ffed1"), bytes.fromhex("0f0b"),
                                  bytes.fromhex("62f16d49fed9"), bytes.fromhex("90"),
                                  bytes.fromhex("0f117610")]
    assert vh.assemble(["ud2", "ud2"]) == [b"\x0f\x0b"] * 2


def test_assemble_keeps_its_results_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(vh, "_ASSEMBLED", {})
    lines = [f"paddw {i}(%rdi),%xmm{i % 16}" for i in range(300)]
    first = vh.assemble(lines)
    assert len(list((tmp_path / "imacpro" / "vecref" / "asm").iterdir())) == 1
    monkeypatch.setattr(vh, "_run_as", lambda lines: pytest.fail("GNU as ran again"))
    monkeypatch.setattr(vh, "_ASSEMBLED", {})
    assert vh.assemble(lines) == first


def test_assemble_names_the_line_gnu_as_rejects():
    with pytest.raises(vh.AssemblerError, match="frobnicate"):
        vh.assemble(["nop", "frobnicate %xmm1", "ud2"])


@pytest.mark.parametrize("run", [run_host, run_engine], ids=["host", "engine"])
def test_nop_gives_back_the_state_it_was_given(run, states):
    """The state goes in and comes out unchanged: every register, flag and byte reaches the
    instruction and is read back (RSI/RDI as offsets)."""
    nop = code_of("nop")
    for state in states[:100]:
        outcome = run(nop, state)
        assert outcome.fault is None
        assert not compare(outcome, unchanged(state, outcome.caps))


def test_compare_reports_any_change():
    """With what an AVX-512 machine observes, whatever this host has."""
    caps = vh.Caps("avx512", 512, 32, 64, frozenset({"avx512f", "avx512bw"}))
    rng = random.Random(5)
    state = random_state(rng)
    base = unchanged(state, caps)

    def changed(edit) -> list[str]:
        other = unchanged(state, caps)
        edit(other)
        return compare(base, other)

    assert compare(base, unchanged(state, caps)) == []
    diffs = changed(lambda o: o.state.zmm.__setitem__(2, o.state.zmm[2] ^ 1 << 70))
    assert len(diffs) == 1 and diffs[0].startswith("zmm2[1]")
    assert changed(lambda o: o.state.zmm.__setitem__(31, o.state.zmm[31] ^ 1 << 511))
    assert changed(lambda o: o.state.gpr.__setitem__("r15", o.state.gpr["r15"] ^ 4))
    assert changed(lambda o: setattr(o.state, "rflags", o.state.rflags ^ 0x40))
    assert changed(lambda o: setattr(o.state, "mxcsr", o.state.mxcsr ^ 0x20))
    assert changed(lambda o: setattr(o.state, "mem", o.state.mem[:-1] + b"\x5a"
                                     if o.state.mem[-1] != 0x5A else o.state.mem[:-1]
                                     + b"\x00"))
    assert changed(lambda o: setattr(o, "fault", 13))
    assert changed(lambda o: o.state.k.__setitem__(7, o.state.k[7] ^ 1))


def test_compare_stays_within_what_both_sides_observed():
    state = random_state(random.Random(6))
    ymm_only = vh.Caps("old host", 256, 16, 0)
    a, b = unchanged(state, vh.host_caps()), unchanged(state, ymm_only)
    b.state.zmm[3] ^= 1 << 300          # above YMM: not observed by b's side
    b.state.zmm[20] ^= 1                # ZMM20: not observed either
    b.state.k[1] ^= 1
    assert compare(a, b) == []
    b.state.zmm[3] ^= 1 << 200
    assert compare(a, b) == ["ymm3[3] (64-bit lane): "
                             f"{a.state.zmm[3] >> 192 & vh.MASK64:016x} vs "
                             f"{b.state.zmm[3] >> 192 & vh.MASK64:016x}"]
    assert compare(a, b, vl_regs=(128, 16)) == []


def test_fp_approx_accepts_close_lanes_only():
    one, near, far = struct.unpack("<3I", struct.pack("<3f", 1.0, 1.0001, 1.01))
    state = State.blank()
    a, b = unchanged(state, vh.host_caps()), unchanged(state, vh.host_caps())
    a.state.zmm[0], b.state.zmm[0] = one, near
    assert compare(a, b) and not compare(a, b, fp_approx=("f32", 2**-11))
    b.state.zmm[0] = far
    assert compare(a, b, fp_approx=("f32", 2**-11))


def test_engine_xcr0_and_caps():
    assert vh.engine_xcr0() in (vh.XCR0_FULL, vh.XCR0_LEGACY)
    caps = vh.engine_caps()
    assert (caps.vector_bits, caps.vector_regs) == (512, 32) and caps.k_bits in (0, 64)


# --- the engine and the host agree ---------------------------------------------------------

INTEGER_SSE = [
    "paddd %xmm1,%xmm2", "psubb (%rsi),%xmm2", "pmaddwd %xmm1,%xmm2", "pcmpgtd %xmm1,%xmm2",
    "psrad %xmm1,%xmm2", "pslldq $5,%xmm2", "punpcklbw %xmm1,%xmm2", "packsswb %xmm1,%xmm2",
    "pshufd $0x1b,%xmm1,%xmm2", "pmovmskb %xmm7,%eax", "pextrw $3,%xmm1,%eax",
    "pinsrd $2,%eax,%xmm1", "movq %xmm1,%rax", "ptest %xmm1,%xmm2", "pminsd %xmm1,%xmm2",
    "movups %xmm6,16(%rsi)", "movups 48(%rdi),%xmm9", "movaps %xmm14,(%rdi)",
    "andps %xmm1,%xmm2", "shufps $0x4e,%xmm1,%xmm2", "pclmulqdq $0x11,%xmm1,%xmm2",
    "aesenc %xmm1,%xmm2", "mpsadbw $5,%xmm1,%xmm2",
]


@pytest.mark.parametrize("line", INTEGER_SSE + ["pshufb (%rsi),%xmm3", "pshufb %xmm1,%xmm3"])
def test_integer_sse_agrees(line, states):
    """All of ZMM0-31 compared: legacy SSE keeps bits 128-511 of its destination (the engine
    once overwrote them in PSHUFB and MPSADBW)."""
    assert not sweep(code_of(line), states)


def exact_floats(rng: random.Random, fmt: str, count: int, nan: bool) -> int:
    """Lanes whose sums and comparisons are exact and raise no exception flag (small
    integers, zeros of both signs, +infinity, a QNaN only if `nan`): the engine does not
    set MXCSR's flags (a known difference), so the FP tests avoid raising any."""
    values = [float(rng.randint(-1 << 20, 1 << 20)) for _ in range(count)]
    for i in range(count):
        pick = rng.randrange(10)
        values[i] = {0: 0.0, 1: -0.0, 2: float("inf"), 3: float("nan") if nan else 1.0
                     }.get(pick, values[i])
    return int.from_bytes(struct.pack(f"<{count}{fmt}", *values), "little")


def fp_states(states: list[State], fmt: str, regs: tuple[int, int], seed: int) -> list[State]:
    """The random states with two registers made of exact lanes; the QNaN (whose propagation
    is fine) only in the first, since with two NaNs the engine picks the wrong one (known)."""
    rng = random.Random(seed)
    out = []
    for state in states:
        state = state.copy()
        lanes = 4 if fmt == "f" else 2
        high = ~((1 << 128) - 1)
        for reg, nan in zip(regs, (True, False)):
            state.zmm[reg] = state.zmm[reg] & high | exact_floats(rng, fmt, lanes, nan)
        out.append(state)
    return out


def test_addps_agrees_on_exact_values(states):
    assert not sweep(code_of("addps %xmm4,%xmm5"), fp_states(states, "f", (4, 5), 1))


def test_ucomisd_agrees_on_flags(states):
    # Unordered (QNaN), equal, less and greater; no SNaN or denormal: no MXCSR flag.
    tests = fp_states(states, "d", (1, 2), 2)
    assert not sweep(code_of("ucomisd %xmm1,%xmm2"), tests)
    outcomes = {run_host(code_of("ucomisd %xmm1,%xmm2"), s).state.rflags & 0x45
                for s in tests}
    assert outcomes == {0x00, 0x01, 0x40, 0x45}       # >, <, =, unordered all seen


def test_cvtsi2sd_agrees_on_exact_integers(states):
    # Integers of up to 53 bits convert exactly: no PE flag, which the engine does not set.
    rng = random.Random(3)
    tests = []
    for state in states:
        state = state.copy()
        state.gpr["rax"] = rng.randint(-(1 << 53), 1 << 53) & vh.MASK64
        tests.append(state)
    assert not sweep(code_of("cvtsi2sd %rax,%xmm1"), tests)


def test_rcpps_agrees_within_its_precision(states):
    # RCPPS is an approximation whose bits differ between implementations (AMD, Intel, the
    # engine's exact division): lanes compared within 2^-11. Normal inputs only: hardware
    # takes a denormal input as zero (result infinity), the engine does not (known).
    rng = random.Random(4)
    tests = []
    for state in states:
        state = state.copy()
        lanes = [rng.getrandbits(1) << 31 | rng.randint(127 - 60, 127 + 60) << 23
                 | rng.getrandbits(23) for _ in range(4)]
        state.zmm[4] = state.zmm[4] & ~((1 << 128) - 1) | int.from_bytes(
            struct.pack("<4I", *lanes), "little")
        tests.append(state)
    assert not sweep(code_of("rcpps %xmm4,%xmm5"), tests, fp_approx=("f32", 2**-11))


def test_rip_relative_operands_reach_the_same_bytes(states):
    """The instruction sits at the same address on both sides, so RIP-relative operands
    address the data area alike."""
    if not vh._host().caps.fixed_addresses:
        pytest.skip("the host could not map the code and data at their fixed addresses")
    disp = vh.DATA_BASE + 0x40 - vh.CODE_END
    code = code_of(f"paddq {disp:#x}(%rip),%xmm3")
    assert not sweep(code, states)
    after = run_host(code, states[0]).state.zmm[3]
    low = states[0].zmm[3] & vh.MASK64
    assert after & vh.MASK64 == (low + int.from_bytes(states[0].mem[0x40:0x48], "little")) \
        & vh.MASK64


# --- faults -------------------------------------------------------------------------------

@pytest.mark.parametrize("line, rsi", [
    ("movq (%rsi),%xmm0", vh.DATA_SIZE),            # inside the guard page after the data
    ("movups %xmm1,(%rsi)", vh.DATA_SIZE + 16),
    ("movd %xmm2,(%rsi)", -4),                      # the guard page before the data
    ("pinsrw $1,(%rsi),%xmm3", vh.DATA_SIZE + 4094),
])
def test_guard_page_access_is_a_page_fault_on_both(line, rsi, states):
    # Accesses wholly inside a guard page: one crossing into it is a known difference (the
    # engine does its first 8 bytes before faulting).
    code = code_of(line)
    for state in states[:50]:
        state = state.copy()
        state.gpr["rsi"] = rsi & vh.MASK64
        host, engine = run_host(code, state), run_engine(code, state)
        assert host.fault == 14 and host.fault_addr == rsi, host.detail
        assert not compare(host, engine), vh.describe(code, state, (host, engine))
        assert not compare(host, unchanged(state, host.caps, 14))   # nothing changed


def test_ud2_is_an_invalid_opcode_on_both(states):
    code = code_of("ud2")
    for state in states[:50]:
        host, engine = run_host(code, state), run_engine(code, state)
        assert host.fault == engine.fault == 6
        assert not compare(host, engine)


def test_host_reports_gp_for_a_misaligned_movaps():
    # The engine does not check MOVAPS alignment (known): the host side only.
    outcome = run_host(code_of("movaps 8(%rsi),%xmm1"), State.blank())
    assert outcome.fault == 13 and outcome.fault_addr is None


# --- the host side with VEX and EVEX instructions -----------------------------------------

def test_host_vex_sees_ymm_state(states):
    if not vh.host_caps().has("avx2"):
        pytest.skip("host without AVX2")
    code = code_of("vpaddd %ymm1,%ymm2,%ymm3")
    lanes = [(i, (1 << 32) - 1) for i in range(8)]
    for state in states[:50]:
        after = run_host(code, state).state
        expected = sum(((state.zmm[1] >> 32 * i) + (state.zmm[2] >> 32 * i) & mask) << 32 * i
                       for i, mask in lanes)
        assert after.zmm[3] & ((1 << 256) - 1) == expected
        if vh.host_caps().vector_bits == 512:
            assert after.zmm[3] >> 256 == 0                 # VEX zeroes above bit 255


def test_host_evex_sees_zmm_and_k_state(states):
    if not vh.host_caps().has("avx512f", "avx512bw"):
        pytest.skip("host without AVX-512F/BW")
    code = code_of("vpaddd %zmm17,%zmm30,%zmm3{%k5}")
    for state in states[:50]:
        after = run_host(code, state).state
        for i in range(16):
            lane = lambda v: v >> 32 * i & 0xFFFFFFFF   # noqa: E731
            want = (lane(state.zmm[17]) + lane(state.zmm[30])) & 0xFFFFFFFF \
                if state.k[5] >> i & 1 else lane(state.zmm[3])
            assert lane(after.zmm[3]) == want
    kadd = code_of("kaddq %k1,%k2,%k7")
    for state in states[:20]:
        assert run_host(kadd, state).state.k[7] == (state.k[1] + state.k[2]) & vh.MASK64


def test_host_evex_masked_load_suppresses_faults_in_the_guard_page():
    """A masked-off element in the guard page does not fault; an enabled one does, with the
    registers (ZMM and k) taken from the signal frame unchanged."""
    if not vh.host_caps().has("avx512f", "avx512bw"):
        pytest.skip("host without AVX-512F/BW")
    code = code_of("vmovdqu8 (%rsi),%zmm0{%k1}")
    state = random_state(random.Random(8), rsi=vh.DATA_SIZE - 32)
    state.k[1] = (1 << 32) - 1                          # the 32 bytes before the guard
    outcome = run_host(code, state)
    assert outcome.fault is None
    loaded = int.from_bytes(state.mem[-32:], "little")
    assert outcome.state.zmm[0] & ((1 << 256) - 1) == loaded
    state.k[1] |= 1 << 40                               # byte 40: DATA_SIZE + 8
    outcome = run_host(code, state)
    assert outcome.fault == 14 and vh.DATA_SIZE <= outcome.fault_addr <= vh.DATA_SIZE + 8
    assert not compare(outcome, unchanged(state, outcome.caps, 14))
