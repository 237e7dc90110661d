"""Every VEX and EVEX encoding: the engine runs exactly what a Xeon W-2100B runs, and raises #UD
for the rest (an instruction it does not implement can never compute a wrong answer).

The space is every opcode of maps 0F, 0F38 and 0F3A with each prefix (none, 66, F3, F2), W,
vector length and ModRM form (register or memory; each ModRM.reg of the group opcodes), with
vvvv = 1111b and no masking. The reference is silicon: the set of these encodings that ran
without #UD on a CPU with AVX-512 F/CD/BW/DQ/VL, recorded in tests/cpu/vectors/coverage.json.gz
(IMACPRO_RECORD_VECTORS=1 records it again; on such a host the test also checks the record
against the live CPU). That CPU (an AMD Zen 4) also has extensions later than Skylake-SP,
which the Xeon W lacks and the engine must refuse (LATER below), and runs one encoding the SDM
makes #UD (SDM_UD below); both are taken out of the reference.
"""

import gzip
import json
import os
import random

import pytest

import vecharness as vh

MAPS = [(enc, m) for enc in ("vex", "evex") for m in (1, 2, 3)]
IMM8 = {(1, op) for op in (0x70, 0x71, 0x72, 0x73, 0xC2, 0xC4, 0xC5, 0xC6)}
GROUPS = {(1, 0x71), (1, 0x72), (1, 0x73), (1, 0xAE)}      # ModRM.reg selects the operation
RECORD = vh.VECTORS_DIR / "coverage.json.gz"

# Later than Skylake-SP: (enc, map, opcode, pp, W or None for both, L or None for all).
LATER = [
    # AVX512_VNNI, AVX512_BITALG/VPOPCNTDQ, AVX512_VBMI2 (expand/compress, double shifts)
    *[("evex", 2, op, 1, None, None) for op in (0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x62, 0x63,
                                                0x70, 0x71, 0x72, 0x73)],
    *[("evex", 3, op, 1, None, None) for op in (0x70, 0x71, 0x72, 0x73)],
    # AVX512_BF16
    ("evex", 2, 0x72, 2, None, None), ("evex", 2, 0x72, 3, None, None),
    ("evex", 2, 0x52, 2, None, None),
    # AVX512_VBMI: vpermb, vpermi2b, vpermt2b (W0; W1 are the BW word forms), vpmultishiftqb
    ("evex", 2, 0x8D, 1, 0, None), ("evex", 2, 0x75, 1, 0, None), ("evex", 2, 0x7D, 1, 0, None),
    ("evex", 2, 0x83, 1, 1, None),
    # AVX512_BITALG vpshufbitqmb; AVX512_IFMA
    ("evex", 2, 0x8F, 1, 0, None), ("evex", 2, 0xB4, 1, 1, None), ("evex", 2, 0xB5, 1, 1, None),
    # GFNI, VAES and VPCLMULQDQ (EVEX, and the 256-bit VEX forms)
    ("evex", 2, 0xCF, 1, None, None), ("evex", 3, 0xCE, 1, None, None),
    ("evex", 3, 0xCF, 1, None, None), ("vex", 2, 0xCF, 1, None, None),
    ("vex", 3, 0xCE, 1, None, None), ("vex", 3, 0xCF, 1, None, None),
    *[("evex", 2, op, 1, None, None) for op in (0xDC, 0xDD, 0xDE, 0xDF)],
    *[("vex", 2, op, 1, None, 1) for op in (0xDC, 0xDD, 0xDE, 0xDF)],
    ("evex", 3, 0x44, 1, None, None), ("vex", 3, 0x44, 1, None, 1),
]
# The SDM's #UD where that CPU runs the instruction: VPERMQ/VPERMPD imm8 are VEX.256.W1 only.
SDM_UD = [("vex", 3, 0x00, 1, 0, None), ("vex", 3, 0x01, 1, 0, None)]


def encodings(enc: str, mmap: int):
    """(key, bytes) of every encoding of one map."""
    for op in range(256):
        if enc == "vex" and ((mmap == 2 and op >= 0xF0) or (mmap == 3 and op == 0xF0)):
            continue                        # BMI1/BMI2 on general registers: not vector
        imm = mmap == 3 or (mmap, op) in IMM8
        for pp in range(4):
            for w in (0, 1):
                for vl in ((0, 1) if enc == "vex" else (0, 1, 2)):
                    for mod in ("r", "m"):
                        for reg in (range(8) if (mmap, op) in GROUPS else (1,)):
                            if mmap == 1 and op == 0x77 and (mod == "m" or reg != 1):
                                continue    # VZEROUPPER/VZEROALL: no ModRM
                            modrm = (0xC0 | reg << 3 | 1) if mod == "r" else (reg << 3 | 6)
                            if enc == "vex":
                                code = bytes([0xC4, 0xE0 | mmap, w << 7 | 0xF << 3 | vl << 2 | pp,
                                              op])
                            else:
                                code = bytes([0x62, 0xF0 | mmap, w << 7 | 0xF << 3 | 4 | pp,
                                              vl << 5 | 0x08, op])
                            if not (mmap == 1 and op == 0x77):
                                code += bytes([modrm]) + (b"\0" if imm else b"")
                            yield f"{enc}{mmap}{op:02x}{pp}{w}{vl}{mod}{reg}", code


def _excluded(key: str) -> bool:
    enc, mmap, op, pp, w, vl = key[:-8], int(key[-8]), int(key[-7:-5], 16), int(key[-5]), \
        int(key[-4]), int(key[-3])
    return any(e == enc and m == mmap and o == op and p == pp and (ww is None or ww == w)
               and (ll is None or ll == vl) for e, m, o, p, ww, ll in LATER + SDM_UD)


def _state() -> vh.State:
    state = vh.random_state(random.Random(5))
    state.gpr.update(rsi=64, rdi=128)
    for name in ("rax", "rbx", "rcx", "rdx", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
                 "r14", "r15"):
        state.gpr[name] = 8                # small lengths and counts, in-range addresses
    state.k = [0xFFFF] * 8
    return state


def _silicon_runs(enc: str, mmap: int) -> set[str]:
    """Recorded (or, with IMACPRO_RECORD_VECTORS=1 on an AVX-512 host, recorded now)."""
    try:
        record = json.loads(gzip.decompress(RECORD.read_bytes()))
    except FileNotFoundError:
        record = {}
    name = f"{enc}{mmap}"
    if name not in record or os.environ.get(vh.RECORD_ENV) == "1":
        if os.environ.get(vh.RECORD_ENV) != "1" or not _host_ready():
            pytest.fail(f"{RECORD} has no {name}: record it with {vh.RECORD_ENV}=1 on a host "
                        "with AVX-512 F, CD, BW, DQ and VL")
        record[name] = sorted(_host_runs(enc, mmap))
        vh._write_atomically(RECORD, gzip.compress(json.dumps(record, sort_keys=True).encode(),
                                                   9, mtime=0))
    return set(record[name])


def _host_ready() -> bool:
    caps = vh.host_caps()
    return vh.host_available() and caps.k_bits == 64 and caps.has(
        "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def _host_runs(enc: str, mmap: int) -> set[str]:
    state = _state()
    return {key for key, code in encodings(enc, mmap) if vh.run_host(code, state).fault != 6}


@pytest.mark.parametrize("enc,mmap", MAPS, ids=[f"{e}-map{m}" for e, m in MAPS])
def test_the_engine_runs_what_the_xeon_w_runs_and_nothing_else(enc, mmap):
    silicon = _silicon_runs(enc, mmap)
    if _host_ready():
        assert _host_runs(enc, mmap) == silicon, "the record no longer matches this CPU"
    expected = {key for key in silicon if not _excluded(key)}
    state = _state()
    engine = {key for key, code in encodings(enc, mmap) if vh.run_engine(code, state).fault != 6}
    assert not sorted(engine - expected), "runs, but #UD on the Xeon W"
    assert not sorted(expected - engine), "#UD, but the Xeon W runs it"
