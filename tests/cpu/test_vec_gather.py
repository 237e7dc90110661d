"""The vector unit's gathers and scatters (third_party/unicorn/vector/ops_gather.c) against
silicon.

Every gather in its VEX (AVX2: a vector mask in vvvv) and EVEX (an opmask) forms at every
vector length, and every scatter (EVEX) at every length: vgatherdps/dpd/qps/qpd,
vpgatherdd/dq/qd/qq, vscatterdps/dpd/qps/qpd, vpscatterdd/dq/qd/qq. The VSIB operand takes
RSI or RDI as base, no displacement, a compressed EVEX disp8*N (N = the element size, at its
largest) and disp32, each scale, index registers 8-31 (EVEX.X and V'), negative dword indices
(sign-extended), 32-bit addressing (0x67: the address wraps at 4 GiB) and no base register
(these two need the host's data area at its fixed address). States: indices within the data
area, now and then few distinct ones (scatters: overlapping addresses, the later element's
store remains), mask elements with their top bit set or clear (VEX; the other bits random),
random opmasks (all set, none set, random), unaligned elements (scale 1). The engine is
compared with:
  - the recorded answers in vectors/gather.json.gz (always; recorded on an AVX-512 host with
    IMACPRO_RECORD_VECTORS=1), and
  - the live host for a further seeded set, when it has AVX2 and AVX-512 F/VL.
Faults, on both sides: an element reaching into the guard page after the data area (or the
one before it) is a #PF after the elements before it are done: those are loaded (stored) and
their mask bits cleared, the rest of the mask and destination as they were (the SDM's
partial completion); a masked-off element there does not fault; #UD for VEX gathers whose
destination, index and mask registers are not all different, EVEX gathers whose destination
is the index, EVEX gathers and scatters with k0 (aaa = 0), zeroing, EVEX.b, vvvv not 1111b or
L'L = 3, and for a register or a non-VSIB memory operand.

Deviations left out of the comparison, for gathers that fault:
  - EVEX.128/256: AMD's silicon has cleared the destination above the gathered elements
    (above VL, and above the data of a qd/qps gather), where the SDM's operation clears
    those bits only after the last element (and allows it earlier only for the unused half
    of a qd/qps destination): those destination bits are not compared.
  - VEX: the SDM's operation first makes every mask element all ones or all zeros by its top
    bit (MASK[i+31:i] <- FFFFFFFFH or 0), then gathers; AMD's silicon leaves the elements not
    yet done as they were. Of those elements only the top bit is compared.

Scatters with a live element at the guard page are an expected failure: the bare engine's
stores into unmapped memory do not fault (exec.c's probe_store does not see unmapped pages),
so the scatter goes on past that element; a framework matter.
"""

from __future__ import annotations

import contextlib
import functools
import random
from dataclasses import dataclass, replace

import pytest

import vecharness as vh
from vecharness import State, compare, known_answers, run_engine

GROUP = "gather"
RECORDED_STATES = 3       # per line, in vectors/gather.json.gz
HOST_STATES = 4           # per line, further states against the live host
HOST_FEATURES = ("avx2", "avx512f", "avx512vl")
LETTER = {16: "x", 32: "y", 64: "z"}
#               mnemonic: (index size, element size)
GATHERS = {"vpgatherdd": (4, 4), "vpgatherdq": (4, 8), "vpgatherqd": (8, 4),
           "vpgatherqq": (8, 8), "vgatherdps": (4, 4), "vgatherdpd": (4, 8),
           "vgatherqps": (8, 4), "vgatherqpd": (8, 8)}
SCATTERS = {"vpscatterdd": (4, 4), "vpscatterdq": (4, 8), "vpscatterqd": (8, 4),
            "vpscatterqq": (8, 8), "vscatterdps": (4, 4), "vscatterdpd": (4, 8),
            "vscatterqps": (8, 4), "vscatterqpd": (8, 8)}


@dataclass(frozen=True)
class Line:
    """One gather or scatter: its registers (dst: the destination or scatter source; mask:
    the VEX mask register or the opmask), its VSIB operand and its shape."""

    mnemonic: str
    evex: bool
    vl: int                   # bytes: the longer of the data and the index vectors
    dst: int
    idx: int
    mask: int
    base: str = "rsi"         # "" for none (then disp is the data area's absolute address)
    disp: int = 0
    scale: int = 1
    addr32: bool = False

    @property
    def isize(self) -> int:
        return (GATHERS | SCATTERS)[self.mnemonic][0]

    @property
    def esize(self) -> int:
        return (GATHERS | SCATTERS)[self.mnemonic][1]

    @property
    def scatter(self) -> bool:
        return self.mnemonic in SCATTERS

    @property
    def n(self) -> int:
        return self.vl // max(self.isize, self.esize)

    @property
    def fixed(self) -> bool:
        """Needs the data area at DATA_BASE (absolute or 32-bit addresses)."""
        return not self.base or self.addr32

    @property
    def text(self) -> str:
        d = LETTER[self.n * self.esize] if self.n * self.esize >= 16 else "x"
        i = LETTER[self.n * self.isize] if self.n * self.isize >= 16 else "x"
        base = f"%{'e' if self.addr32 else 'r'}{self.base[1:]}" if self.base else ""
        disp = f"{self.disp:#x}" if not self.base else (str(self.disp) if self.disp else "")
        mem = f"{disp}({base},%{i}mm{self.idx},{self.scale})"
        if self.scatter:
            return f"{self.mnemonic} %{d}mm{self.dst}, {mem}{{%k{self.mask}}}"
        if self.evex:
            return f"{self.mnemonic} {mem}, %{d}mm{self.dst}{{%k{self.mask}}}"
        return f"{self.mnemonic} %{d}mm{self.mask}, {mem}, %{d}mm{self.dst}"


@functools.cache
def lines() -> tuple[Line, ...]:
    out: list[Line] = []
    for m in GATHERS:
        for vl in (16, 32):
            out += [Line(m, False, vl, 3, 1, 2, "rsi", 8, 4),
                    Line(m, False, vl, 14, 9, 12, "rdi", -264, 1),
                    Line(m, False, vl, 6, 7, 5, "rsi", 0, 8)]
    for m in GATHERS:
        es = GATHERS[m][1]
        for vl in (16, 32, 64):
            out += [Line(m, True, vl, 3, 1, 1, "rsi", 64, 4),
                    Line(m, True, vl, 25, 17, 7, "rdi", -301, 2),
                    Line(m, True, vl, 9, 30, 2, "rsi", 127 * es, 8)]
    for m in SCATTERS:
        es = SCATTERS[m][1]
        for vl in (16, 32, 64):
            out += [Line(m, True, vl, 3, 1, 1, "rsi", 64, 4),
                    Line(m, True, vl, 25, 17, 7, "rdi", -301, 2),
                    Line(m, True, vl, 9, 30, 2, "rsi", 127 * es, 8)]
        out.append(Line(m, True, 64, 17, 17, 3, "rdi", 16, 1))   # source = index: allowed
    out += [Line("vgatherdps", False, 32, 3, 1, 2, "rsi", 8, 4, addr32=True),
            Line("vpgatherqq", False, 32, 3, 1, 2, "rdi", 0, 8, addr32=True),
            Line("vgatherdps", True, 64, 3, 1, 1, "rsi", 8, 4, addr32=True),
            Line("vpgatherqd", True, 64, 3, 1, 1, "rdi", -64, 2, addr32=True),
            Line("vpscatterdq", True, 64, 3, 1, 1, "rsi", 8, 8, addr32=True),
            Line("vscatterqps", True, 64, 3, 1, 1, "rdi", 0, 4, addr32=True),
            Line("vpgatherdd", False, 32, 3, 1, 2, "", vh.DATA_BASE, 4),
            Line("vgatherqpd", True, 64, 3, 1, 1, "", vh.DATA_BASE + 64, 8),
            Line("vpscatterqq", True, 32, 3, 1, 1, "", vh.DATA_BASE, 1)]
    return tuple(out)


# --- states ------------------------------------------------------------------------------------

def _set_lane(reg: int, size: int, i: int, value: int) -> int:
    """reg with its element i (of `size` bytes) replaced by value (two's complement)."""
    lane = (1 << 8 * size) - 1
    return reg & ~(lane << 8 * size * i) | (value & lane) << 8 * size * i


def _pack(values, size: int, old: int = 0) -> int:
    """`values` as little-endian elements of `size` bytes over the low part of `old`."""
    for i, v in enumerate(values):
        old = _set_lane(old, size, i, v)
    return old


def _origin(line: Line, base: int) -> int:
    """The data offset an index of 0 reaches: base register + displacement."""
    return line.disp - vh.DATA_BASE if not line.base else base + line.disp


def _index_for(line: Line, origin: int, target: int) -> int:
    """The index reaching data offset `target` (a multiple of the scale away from origin);
    with 32-bit addressing, one that reaches it only by wrapping at 4 GiB when it can."""
    idx = (target - origin) // line.scale
    if line.addr32:
        wrapped = idx + (1 << 32) // line.scale * (1 if idx < 0 else -1)
        if line.isize == 8 or -(1 << 31) <= wrapped < 1 << 31:
            idx = wrapped
    return idx


def _valid_targets(line: Line, origin: int) -> tuple[int, int]:
    """The range of indices whose element lies inside the data area."""
    lo = -(origin // line.scale) if origin >= 0 else (-origin + line.scale - 1) // line.scale
    hi = (vh.DATA_SIZE - line.esize - origin) // line.scale
    return lo, hi


def _state(rng: random.Random, line: Line) -> State:
    st = vh.random_state(rng, kinds=("bits", "int32", "int64", "f32", "f64"))
    base = rng.randrange(0, vh.DATA_SIZE)
    if line.base:
        st.gpr[line.base] = base
    origin = _origin(line, base)
    lo, hi = _valid_targets(line, origin)
    if rng.random() < 0.3:                        # few distinct addresses
        pool = [rng.randint(lo, hi) for _ in range(rng.choice((1, 2, 3)))]
        picks = [rng.choice(pool) for _ in range(line.n)]
    else:
        picks = [rng.randint(lo, hi) for _ in range(line.n)]
    indices = [_index_for(line, origin, origin + p * line.scale) for p in picks]
    st.zmm[line.idx] = _pack(indices, line.isize, st.zmm[line.idx])
    if line.evex:
        st.k[line.mask] = rng.choice((rng.getrandbits(64), rng.getrandbits(64),
                                      rng.getrandbits(64), vh.MASK64, 0))
    else:
        top = 1 << (8 * line.esize - 1)
        how = rng.choice(("all", "random", "random", "none"))
        els = []
        for _ in range(line.n):
            v = rng.getrandbits(8 * line.esize) & ~top
            if how == "all" or (how == "random" and rng.random() < 0.5):
                v |= top
            els.append(v)
        st.zmm[line.mask] = _pack(els, line.esize, st.zmm[line.mask])
    return st


def _states(line: Line, count: int, salt: str) -> list[State]:
    rng = random.Random(f"{GROUP}-{salt}-{line.text}")
    return [_state(rng, line) for _ in range(count)]


def _set_live(st: State, line: Line, i: int, live: bool) -> None:
    if line.evex:
        st.k[line.mask] = st.k[line.mask] & ~(1 << i) | (int(live) << i)
    else:
        bits = 8 * line.esize
        top = 1 << (bits - 1)
        el = st.zmm[line.mask] >> bits * i & ((1 << bits) - 1)
        el = el | top if live else el & ~top
        st.zmm[line.mask] = _set_lane(st.zmm[line.mask], line.esize, i, el)


def _with_element_at(st: State, line: Line, i: int, below: bool) -> State:
    """A copy of st whose element i reaches into the guard page after the data area (or, with
    below, lies in the one before it)."""
    st = st.copy()
    base = st.gpr[line.base] if line.base else 0
    origin = _origin(line, base)
    if below:
        steps = (-line.esize - origin) // line.scale
        target = origin + steps * line.scale
        assert -16 < target <= -line.esize
    else:
        first_bad = vh.DATA_SIZE - line.esize + 1       # its last byte in the guard page
        steps = -((origin - first_bad) // line.scale)
        target = origin + steps * line.scale
        assert vh.DATA_SIZE - line.esize < target <= vh.DATA_SIZE + 8
    st.zmm[line.idx] = _set_lane(st.zmm[line.idx], line.isize, i,
                                 _index_for(line, origin, target))
    return st


# --- fault cases -------------------------------------------------------------------------------

def fault_cases() -> list[tuple[Line, State, str, str]]:
    """(line, state, the SDM's outcome, tag)."""
    out = []
    for line in lines():
        rng = random.Random(f"{GROUP}-fault-{line.text}")
        st = _state(rng, line)
        i = rng.randrange(line.n)
        for j in range(line.n):                # some live elements on either side
            _set_live(st, line, j, rng.random() < 0.7)
        live = _with_element_at(st, line, i, below=False)
        _set_live(live, line, i, True)
        out.append((line, live, "#PF", "scatter-fault" if line.scatter else "faults"))
        dead = live.copy()
        _set_live(dead, line, i, False)
        out.append((line, dead, "no fault", "faults"))
        if line.base == "rdi" and not line.addr32:
            j = rng.randrange(line.n)
            below = _with_element_at(st, line, j, below=True)
            _set_live(below, line, j, True)
            out.append((line, below, "#PF", "scatter-fault" if line.scatter else "faults"))
    return out


def _code(text: str, vex3: bool = False) -> bytearray:
    return bytearray(vh.assemble([("{vex3} " if vex3 else "") + text])[0])


def _ud_encodings() -> list[tuple[str, bytes]]:
    out = []
    # VEX: destination, index and mask must all differ.
    for text in ("vpgatherdd %xmm2, (%rsi,%xmm3,4), %xmm3",
                 "vgatherdpd %ymm2, (%rsi,%xmm3,4), %ymm3",
                 "vgatherdps %ymm3, (%rsi,%ymm1,4), %ymm3",
                 "vpgatherqd %xmm1, (%rsi,%ymm1,4), %xmm3",
                 "vgatherqpd %ymm11, 8(%rdi,%ymm11,8), %ymm3"):
        out.append((f"VEX registers {text}", bytes(_code(text, True))))
    # EVEX: the destination must not be the index; k0 is not a completion mask.
    for text in ("vpgatherdd (%rsi,%zmm3,4), %zmm3{%k1}",
                 "vgatherdpd 8(%rsi,%ymm19,4), %zmm19{%k2}",
                 "vgatherqps (%rsi,%zmm21,4), %ymm21{%k1}"):
        out.append((f"EVEX dest = index {text}", bytes(_code(text))))
    evex_lines = ("vgatherdps 64(%rsi,%zmm1,4), %zmm3{%k1}",
                  "vpgatherqq (%rsi,%ymm17,8), %ymm3{%k1}",
                  "vpscatterdd %zmm3, 64(%rsi,%zmm1,4){%k1}",
                  "vscatterqpd %xmm3, (%rsi,%xmm17,8){%k1}")
    fields = (("aaa=0", 3, 0, 0x07), ("z", 3, 0x80, 0), ("EVEX.b", 3, 0x10, 0),
              ("vvvv", 2, 0, 0x40), ("L'L=3", 3, 0x60, 0))
    for text in evex_lines:
        for name, at, setb, clear in fields:
            code = _code(text)
            code[at] = (code[at] | setb) & ~clear & 0xFF
            out.append((f"{name} {text}", bytes(code)))
    # A register operand, or memory without a SIB byte.
    for text, vex3 in (("vpgatherdd %xmm2, (%rsi,%xmm1,4), %xmm3", True),
                       ("vgatherdps (%rsi,%zmm1,4), %zmm3{%k1}", False),
                       ("vpscatterqq %zmm3, (%rsi,%zmm1,4){%k1}", False)):
        code = _code(text, vex3)
        at = 4 if vex3 else 5
        assert code[at] & 7 == 4
        register = bytes([0xC0 | code[at] & 0x38 | 1])
        no_sib = bytes([code[at] & 0x38 | 6])
        out.append((f"register operand {text}", bytes(code[:at] + register + code[at + 2:])))
        out.append((f"no SIB {text}", bytes(code[:at] + no_sib + code[at + 2:])))
    return out


# --- all cases, recorded once -------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    tag: str
    line: Line | None
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
            out.append(Case(line.mnemonic, line, line.text, codes[line.text], st))
    for line, st, expect, tag in fault_cases():
        out.append(Case(tag, line, line.text, codes[line.text], st, expect))
    rng = random.Random(f"{GROUP}-ud")
    for name, code in _ud_encodings():
        out.append(Case("ud", None, name, code, vh.random_state(rng), "#UD"))
    return tuple(out)


@functools.cache
def recorded() -> tuple[vh.Outcome, ...]:
    return tuple(known_answers(GROUP, [(c.code, c.state) for c in cases()]))




def _blind(answer: vh.Outcome, engine: vh.Outcome, line: Line | None) -> vh.Outcome:
    """The engine's outcome with what the host may not show of a gather that faulted taken
    from the answer (see the module's note): EVEX, the destination bits above the gathered
    elements; VEX, the bits below the top bit of the mask elements not yet done."""
    if line is None or line.scatter or answer.fault is None:
        return engine
    st = engine.state.copy()
    if line.evex:
        keep = (1 << 8 * line.n * line.esize) - 1
        st.zmm[line.dst] = st.zmm[line.dst] & keep | answer.state.zmm[line.dst] & ~keep
    else:
        bits = 8 * line.esize
        low = (1 << bits - 1) - 1
        for i in range(line.n):
            host = answer.state.zmm[line.mask] >> bits * i & (1 << bits) - 1
            ours = st.zmm[line.mask] >> bits * i & (1 << bits) - 1
            if host:                                   # not done: compare the top bit
                st.zmm[line.mask] = _set_lane(st.zmm[line.mask], line.esize, i,
                                              ours & ~low | host & low)
    return replace(engine, state=st)



def _check(picked, *, expect: bool = False) -> list[str]:
    failures = []
    for case, answer in picked:
        engine = run_engine(case.code, case.state)
        diffs = compare(answer, _blind(answer, engine, case.line))
        if expect:
            diffs += vh.sdm_notes(answer, case.expect, guard_page=False)
        if diffs:
            failures.append(vh.failure(case.text, case.code, case.state, (answer, engine),
                                       diffs))
            if len(failures) >= 4:
                break
    return failures


def _picked(tag: str):
    picked = [(c, o) for c, o in zip(cases(), recorded()) if c.tag == tag]
    assert picked
    return picked


MNEMONICS = sorted({ln.mnemonic for ln in lines()})


@pytest.mark.parametrize("mnemonic", MNEMONICS)
def test_engine_matches_recorded_answers(mnemonic):
    failures = _check(_picked(mnemonic))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("tag", ["faults", "ud"])
def test_faults_match_recorded_answers_and_the_sdm(tag):
    failures = _check(_picked(tag), expect=True)
    assert not failures, "\n".join(failures)


def test_scatter_faults_leave_the_later_elements_undone():
    failures = _check(_picked("scatter-fault"), expect=True)
    assert not failures, "\n".join(failures)


def test_partial_completion_is_exercised():
    """The recorded faults of gathers complete some elements before the faulting one (so the
    comparison above sees a partial update) and leave some live ones after it."""
    before = after = 0
    for case, answer in _picked("faults"):
        if answer.fault != 14 or case.line.scatter:
            continue
        line = case.line
        if line.evex:
            done = case.state.k[line.mask] & ~answer.state.k[line.mask]
            left = bin(answer.state.k[line.mask] & ((1 << line.n) - 1)).count("1") > 1
        else:
            bits = 8 * line.esize
            tops = [(v >> (bits * i + bits - 1)) & 1 for v in (case.state.zmm[line.mask],
                                                              answer.state.zmm[line.mask])
                    for i in range(line.n)]
            done = any(a and not b for a, b in zip(tops[:line.n], tops[line.n:]))
            left = sum(tops[line.n:]) > 1
        before += bool(done)
        after += bool(left)
    assert before > 50 and after > 50, (before, after)


def test_vex_mask_elements_are_all_ones_or_zeros_at_a_fault():
    """The SDM's VEX gathers make each mask element all ones or all zeros by its top bit
    before gathering: at a fault, the engine's mask elements are 0 (done, or not to be
    loaded) or all ones (still to be loaded), with the input's top bit where not done."""
    checked = 0
    for case, answer in _picked("faults"):
        line = case.line
        if line.evex or answer.fault != 14:
            continue
        engine = run_engine(case.code, case.state)
        bits = 8 * line.esize
        full = (1 << bits) - 1
        for i in range(line.n):
            before = case.state.zmm[line.mask] >> bits * i & full
            after = engine.state.zmm[line.mask] >> bits * i & full
            host = answer.state.zmm[line.mask] >> bits * i & full
            assert after in (0, full), (case.text, i, hex(after))
            if host:                                        # not done on the host either
                assert after == (full if before >> bits - 1 else 0), (case.text, i)
        checked += 1
    assert checked > 20


def _host_ready() -> bool:
    caps = vh.host_caps()
    return vh.host_available() and caps.k_bits == 64 and caps.has(*HOST_FEATURES)


@pytest.mark.parametrize("mnemonic", MNEMONICS)
def test_engine_matches_live_host(mnemonic):
    if not _host_ready():
        pytest.skip("the host lacks AVX2 and AVX-512 F/VL")
    fixed = vh.run_host(b"\x90", State.blank()).caps.fixed_addresses
    picked = [ln for ln in lines() if ln.mnemonic == mnemonic and (fixed or not ln.fixed)]
    codes = vh.assemble([ln.text for ln in picked])
    failures = []
    for line, code in zip(picked, codes):
        failures += [f"{line.text}: {f}" for f in vh.sweep(code, _states(line, HOST_STATES,
                                                                         "host"))]
        if len(failures) >= 4:
            break
    assert not failures, "\n".join(failures)


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


def test_state_requirements():
    """VEX gathers need XCR0's SSE and AVX state, EVEX gathers and scatters the AVX-512
    state as well: #UD without it."""
    if vh.engine_xcr0() != vh.XCR0_FULL:
        pytest.skip("the engine does not accept the AVX-512 XCR0")
    vex = Line("vpgatherdd", False, 32, 3, 1, 2, "rsi", 8, 4)
    evex = [Line("vpgatherdd", True, 64, 3, 1, 1, "rsi", 64, 4),
            Line("vscatterqpd", True, 32, 3, 1, 1, "rsi", 64, 4)]
    runs = [(ln, vh.assemble([ln.text])[0], _states(ln, 1, "xcr0")[0]) for ln in [vex, *evex]]
    with engine_xcr0(0x3):
        for line, code, st in runs:
            assert run_engine(code, st).fault == 6, line.text
    with engine_xcr0(0x7):
        for line, code, st in runs:
            assert run_engine(code, st).fault == (None if line is vex else 6), line.text
    for line, code, st in runs:
        assert run_engine(code, st).fault is None, line.text


def test_every_mnemonic_of_the_group_is_tested():
    assert set(MNEMONICS) == set(GATHERS) | set(SCATTERS)
    shapes = {(ln.mnemonic, ln.evex, ln.vl) for ln in lines()}
    assert all((m, False, vl) in shapes for m in GATHERS for vl in (16, 32))
    assert all((m, True, vl) in shapes for m in GATHERS | SCATTERS for vl in (16, 32, 64))
