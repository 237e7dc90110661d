"""Differential testing of x86 vector instructions: the engine against the host CPU.

One instruction runs with one register and memory state on two sides and the results are
compared bit for bit:

  host    the CPU this process runs on, through native/vecref.c (compiled on first use into
          cache_dir(), named by the source's hash, called through ctypes): the instruction is
          copied between a prologue that loads the state with plain moves (ZMM0-31 and k0-k7
          with AVX-512, else YMM0-15 or XMM0-15) and an epilogue that stores it back;
          SIGILL/SIGSEGV/SIGBUS/SIGFPE/SIGTRAP are caught, the exception vector is the trap
          number in the signal frame, and the state at the fault is read from that frame.
  engine  imacpro's patched Unicorn (the library imacpro.cpu selects: _lib, or
          $IMACPRO_ENGINE_DIR) as a bare engine in 64-bit mode with the machine's CPU model,
          without uc_imacpro_enable (plain Unicorn exception reporting: #UD as
          UC_ERR_INSN_INVALID, accesses to the unmapped guard pages as UC_ERR_*_UNMAPPED,
          other exceptions through UC_HOOK_INTR). CR0.MP|NE, CR4.OSFXSR|OSXMMEXCPT|OSXSAVE,
          and XCR0 set by an executed XSETBV (0xE7, or 0x3 while the engine refuses it). One
          instance per process, reset by each run; a run stops after one instruction.

The state (`State`) is ZMM0-31, k0-k7, MXCSR, the fifteen general registers (not RSP),
the arithmetic flags and a data area of DATA_SIZE bytes. The data area sits at DATA_BASE on
both sides, between two unmapped guard pages, so an access past its end is a #PF on both
sides. RSI and RDI hold OFFSETS into the data area in a State: each side adds its data base
before running and subtracts it afterwards, so `movups (%rsi),%xmm0` with rsi=16 reads bytes
16..31 of State.mem. The instruction ends at CODE_END on both sides (the same address when
the host could map it there), so RIP-relative operands reach the same bytes too.

What a side can observe is described by a `Caps`: a host without AVX-512 loads and stores
YMM0-15 only and no k registers; an engine that does not yet support K0-K7 through
reg_read/reg_write skips them. Fields a side cannot observe keep their input values, and
`compare` only compares what both sides observed.

    lines = ["paddd %xmm1,%xmm2", "movups %xmm6,16(%rsi)"]
    rng = random.Random(1)
    states = [random_state(rng) for _ in range(300)]
    for code in assemble(lines):                 # one run of GNU as for all the lines
        assert not sweep(code, states)           # [] or readable differences

Limits: one run at a time per process (the runner has global state); the instruction must
leave RSP and the stack alone; an engine crash takes the process with it (run instructions
known to crash it in a subprocess); the bare engine has no paging, so a non-canonical address
is a #PF there where the host has #GP; RIP-relative operands need Caps.fixed_addresses.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gzip
import hashlib
import json
import math
import operator
import os
import platform
import random
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
NATIVE_SOURCE = REPO / "native" / "vecref.c"
CFLAGS = ("-O1", "-shared", "-fPIC")

PAGE = 4096
DATA_PAGES = 2
DATA_SIZE = DATA_PAGES * PAGE     # State.mem; the guard page starts at offset DATA_SIZE
CODE_BASE = 0x6A000000            # the code page, on both sides (when the host allows)
CODE_END = CODE_BASE + 0x800      # the instruction ends here; the run stops here
DATA_BASE = 0x6A010000            # the data area; a guard page on either side of it
PAGE_TABLES = 0x1000              # the engine's page tables (the host runs with its own)

# The state block shared with vecref.c (its ST_* offsets).
ST_K, ST_GPR, ST_RFLAGS, ST_MXCSR, ST_SIZE = 2048, 2112, 2240, 2248, 2256

GPR_ORDER = ("rax", "rcx", "rdx", "rbx", None, "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")   # encoding order, no rsp
GPRS = tuple(name for name in GPR_ORDER if name)
ADDRESS_REGS = ("rsi", "rdi")     # offsets into the data area in a State
FLAGS = {"CF": 0, "PF": 2, "AF": 4, "ZF": 6, "SF": 7, "OF": 11}
FLAGS_MASK = sum(1 << bit for bit in FLAGS.values())   # 0x8d5: the flags compared
MXCSR_BITS = ("IE", "DE", "ZE", "OE", "UE", "PE", "DAZ", "IM", "DM", "ZM", "OM", "UM", "PM",
              "RC0", "RC1", "FTZ")
VECTOR_NAMES = {0: "#DE", 1: "#DB", 3: "#BP", 6: "#UD", 7: "#NM", 12: "#SS", 13: "#GP",
                14: "#PF", 16: "#MF", 17: "#AC", 19: "#XM"}
MASK64 = (1 << 64) - 1


class HostUnavailable(RuntimeError):
    """The host side cannot run here (not x86-64 Linux, no C compiler, mapping refused)."""


class AssemblerError(ValueError):
    """GNU as rejected some lines; the message names them."""


def cache_dir() -> Path:
    """Where the compiled runner and assembled lines are kept ($XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imacpro" / "vecref"


def _write_atomically(path: Path, data: bytes) -> None:
    """Concurrent test processes may race for the same cache file: the last rename wins whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --- the state ------------------------------------------------------------------------------

@dataclass
class State:
    """Everything an instruction under test reads or writes.

    zmm: 32 unsigned 512-bit ints; k: 8 unsigned 64-bit ints; gpr: name -> unsigned 64-bit
    (rax..r15 without rsp; rsi and rdi are offsets into mem); rflags: only CF PF AF ZF SF OF
    are loaded and compared; mem: the DATA_SIZE-byte data area.
    """

    zmm: list[int]
    k: list[int]
    mxcsr: int
    gpr: dict[str, int]
    rflags: int
    mem: bytes

    @classmethod
    def blank(cls, **gpr: int) -> State:
        """All zeros, MXCSR at its reset value 0x1F80, RSI at the data area's start and RDI
        at its second page; registers can be given by name. For hand-made reproducers."""
        regs = dict.fromkeys(GPRS, 0)
        regs.update(rsi=0, rdi=PAGE)
        regs.update(gpr)
        return cls([0] * 32, [0] * 8, 0x1F80, regs, 0, bytes(DATA_SIZE))

    def copy(self) -> State:
        return State(list(self.zmm), list(self.k), self.mxcsr, dict(self.gpr), self.rflags,
                     bytes(self.mem))

    def pack(self, data_base: int) -> bytes:
        """The vecref.c state block, RSI/RDI made absolute with this side's data base."""
        if self.mxcsr >> 16:
            raise ValueError(f"MXCSR {self.mxcsr:#x} has reserved bits set: the host could not "
                             "load it (test LDMXCSR's #GP with an ldmxcsr instruction)")
        gpr = [0 if name is None else self.gpr.get(name, 0) for name in GPR_ORDER]
        for name in ADDRESS_REGS:
            index = GPR_ORDER.index(name)
            gpr[index] = (gpr[index] + data_base) & MASK64
        return b"".join((
            b"".join(v.to_bytes(64, "little") for v in self.zmm),
            b"".join((v & MASK64).to_bytes(8, "little") for v in self.k),
            b"".join((v & MASK64).to_bytes(8, "little") for v in gpr),
            ((self.rflags & FLAGS_MASK) | 0x202).to_bytes(8, "little"),
            self.mxcsr.to_bytes(4, "little"), bytes(4),
        ))

    @classmethod
    def unpack(cls, block: bytes, mem: bytes, data_base: int) -> State:
        """The inverse of pack: RSI/RDI back to offsets, RFLAGS reduced to the compared flags."""
        zmm = [int.from_bytes(block[64 * i:64 * i + 64], "little") for i in range(32)]
        k = list(struct.unpack_from("<8Q", block, ST_K))
        regs = struct.unpack_from("<16Q", block, ST_GPR)
        gpr = {name: regs[i] for i, name in enumerate(GPR_ORDER) if name}
        for name in ADDRESS_REGS:
            gpr[name] = (gpr[name] - data_base) & MASK64
        rflags, mxcsr = struct.unpack_from("<QI", block, ST_RFLAGS)
        return cls(zmm, k, mxcsr, gpr, rflags & FLAGS_MASK, bytes(mem))

    def padded_mem(self) -> bytes:
        if len(self.mem) > DATA_SIZE:
            raise ValueError(f"State.mem is {len(self.mem)} bytes, the data area {DATA_SIZE}")
        return bytes(self.mem) + bytes(DATA_SIZE - len(self.mem))


@dataclass(frozen=True)
class Caps:
    """What one side loads and stores: the low vector_bits of vector_regs registers, and k
    registers of k_bits (0: none). flags: the CPU's feature flags (host: /proc/cpuinfo)."""

    side: str
    vector_bits: int
    vector_regs: int
    k_bits: int
    flags: frozenset[str] = frozenset()
    fixed_addresses: bool = True   # code and data at CODE_BASE/DATA_BASE (RIP-relative works)

    def has(self, *flags: str) -> bool:
        return all(flag in self.flags for flag in flags)


@dataclass
class Outcome:
    """The state after the instruction (or at its fault), and the fault's vector or None.

    fault_addr: for #PF, the faulting address as an offset from the data area's start (the
    guard page after it is at DATA_SIZE). signal: the host's signal number, if any. detail:
    the signal or engine error, for messages.
    """

    state: State
    fault: int | None
    caps: Caps
    fault_addr: int | None = None
    detail: str = ""
    signal: int | None = None


def vector_name(vector: int | None) -> str:
    return "no fault" if vector is None else VECTOR_NAMES.get(vector, f"vector {vector}")


# --- random states ----------------------------------------------------------------------------

def _f32(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def _f64(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


# Floating-point formats: (width, exponent bits, mantissa bits, values near integer limits and
# rounding ties: the largest floats below 2^31/2^63, 2^31, 2^63, 2^64, x.5).
_FORMATS = {
    # 65504 (the largest), 32768, 32752, -32768, 0.5, 1.5, 2.5, -0.5
    "f16": (16, 5, 10, (0x7BFF, 0x7800, 0x77FF, 0xF800, 0x3800, 0x3E00, 0x4100, 0xB800)),
    "f32": (32, 8, 23, tuple(_f32(v) for v in (
        2.0**31, -2.0**31, 2.0**31 - 128, -2.0**31 - 256, 2.0**32, 2.0**63, -2.0**63,
        2.0**63 - 2**39, 2.0**64, 32767.5, -32768.5, 65535.0, 0.5, 1.5, 2.5, -0.5, -1.5))),
    "f64": (64, 11, 52, tuple(_f64(v) for v in (
        2.0**31 - 1, 2.0**31, -2.0**31, -2.0**31 - 1, 2.0**31 - 0.5, -2.0**31 - 0.5,
        2.0**32 - 1, 2.0**32, 2.0**63, -2.0**63, 2.0**63 - 1024, -2.0**63 - 2048, 2.0**64,
        0.5, 1.5, 2.5, -0.5, -2.5, 4503599627370495.5))),
}


def _fp_lane(rng: random.Random, kind: str) -> int:
    """One floating-point lane: mostly ordinary numbers, often an edge case (zeros of both
    signs, infinities, QNaN/SNaN, denormals, extremes, values near integer limits), sometimes
    a small integer (whose sums and products are exact, so no inexact flag)."""
    width, ebits, mbits, near_limits = _FORMATS[kind]
    sign = rng.getrandbits(1) << (width - 1)
    emax = (1 << ebits) - 1
    bias = emax >> 1
    quiet = 1 << (mbits - 1)
    pick = rng.randrange(20)
    if pick < 7:                                        # a normal number of moderate size
        exp = bias + rng.randint(-min(bias - 1, 20), min(bias, 20))
        return sign | exp << mbits | rng.getrandbits(mbits)
    if pick < 9:                                        # a small integer
        limit = 1 << min(mbits, 20)
        value = float(rng.randint(-limit, limit))
        return {"f16": lambda v: struct.unpack("<H", struct.pack("<e", v))[0],
                "f32": _f32, "f64": _f64}[kind](value)
    return sign | rng.choice((
        0,                                              # zero
        emax << mbits,                                  # infinity
        emax << mbits | quiet,                          # the default QNaN
        emax << mbits | quiet | rng.getrandbits(mbits - 1),   # a QNaN with payload
        emax << mbits | (rng.getrandbits(mbits - 1) or 1),    # an SNaN
        rng.getrandbits(mbits) or 1,                    # a denormal
        1,                                              # the smallest denormal
        1 << mbits,                                     # the smallest normal
        (emax - 1) << mbits | ((1 << mbits) - 1),       # the largest finite
        bias << mbits,                                  # 1.0
        rng.choice(near_limits) & ~(1 << (width - 1)),  # near a limit (random sign)
    ))


def _int_lane(rng: random.Random, width: int) -> int:
    """An integer lane at or near the signed and unsigned limits, or random."""
    top = 1 << (width - 1)
    return rng.choice((0, 1, 2, top - 1, top, top + 1, (1 << width) - 1, (1 << width) - 2,
                       rng.getrandbits(width), rng.getrandbits(width), rng.getrandbits(4)))


VECTOR_KINDS = ("bits", "f16", "f32", "f64", "int8", "int16", "int32", "int64")
_LANE_FORMAT = {8: "B", 16: "H", 32: "I", 64: "Q"}
_POOL_SIZE = 4096


@functools.cache
def _lane_pool(kind: str) -> tuple[int, ...]:
    """Lane values of one kind, drawn once (from a fixed seed) from _fp_lane/_int_lane:
    picking from a pool is what keeps random_state quick enough for thousands of states."""
    rng = random.Random(f"vecharness-{kind}")
    if kind in _FORMATS:
        pool = tuple(_fp_lane(rng, kind) for _ in range(_POOL_SIZE))
    else:
        pool = tuple(_int_lane(rng, int(kind[3:])) for _ in range(_POOL_SIZE))
    return pool * (65536 // _POOL_SIZE)     # indexed by any 16-bit number


def _lane_width(kind: str) -> int:
    return _FORMATS[kind][0] if kind in _FORMATS else int(kind[3:])


def random_bytes(rng: random.Random, kind: str | None = None, size: int = 64) -> bytes:
    """`size` bytes of lanes of one kind (VECTOR_KINDS; random if None), little-endian."""
    kind = kind or rng.choice(VECTOR_KINDS)
    if kind == "bits":
        return rng.randbytes(size)
    width = _lane_width(kind)
    count = size * 8 // width
    picks = operator.itemgetter(*memoryview(rng.randbytes(2 * count)).cast("H"))(_lane_pool(kind))
    if count == 1:
        picks = (picks,)
    return struct.pack(f"<{count}{_LANE_FORMAT[width]}", *picks)


def random_vector(rng: random.Random, kind: str | None = None, bits: int = 512) -> int:
    """A vector of `bits` bits filled with one kind of lane (VECTOR_KINDS; random if None)."""
    return int.from_bytes(random_bytes(rng, kind, bits // 8), "little")


def random_gpr(rng: random.Random) -> int:
    return rng.choice((rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(32),
                       rng.getrandbits(8), 0, MASK64, 1 << 63, 0x7FFFFFFF, 0x80000000,
                       0xFFFFFFFF))


def random_mxcsr(rng: random.Random) -> int:
    """All exceptions masked, no flags set, a random rounding mode; FTZ and DAZ sometimes."""
    mxcsr = 0x1F80 | rng.randrange(4) << 13
    if rng.random() < 0.25:
        mxcsr |= 1 << 15
    if rng.random() < 0.25:
        mxcsr |= 1 << 6
    return mxcsr


def random_state(rng: random.Random, *, kinds: Sequence[str] = VECTOR_KINDS,
                 mxcsr: int | None = None, rsi: int | None = None, rdi: int | None = None,
                 **gpr: int) -> State:
    """A state whose vector registers and data area are made of `kinds` lanes (one kind per
    register and per 256-byte stretch of memory). RSI defaults to a 64-aligned offset in the first
    half of the first data page and RDI to one in the first half of the second, so
    displacements up to 2 KiB stay inside the data area; other registers can be given by name.
    """
    zmm = [random_vector(rng, rng.choice(kinds)) for _ in range(32)]
    mem = b"".join(random_bytes(rng, rng.choice(kinds), 256) for _ in range(DATA_SIZE // 256))
    k = [rng.choice((0, MASK64, 0xFFFF, rng.getrandbits(64), rng.getrandbits(16)))
         for _ in range(8)]
    regs = {name: random_gpr(rng) for name in GPRS}
    regs["rsi"] = rsi if rsi is not None else 64 * rng.randrange(PAGE // 128)
    regs["rdi"] = rdi if rdi is not None else PAGE + 64 * rng.randrange(PAGE // 128)
    regs.update(gpr)
    return State(zmm, k, random_mxcsr(rng) if mxcsr is None else mxcsr, regs,
                 rng.getrandbits(12) & FLAGS_MASK, mem)


# --- the host side -----------------------------------------------------------------------------

class _VecrefResult(ctypes.Structure):
    _fields_ = [("signal", ctypes.c_int32), ("code", ctypes.c_int32), ("addr", ctypes.c_uint64),
                ("trapno", ctypes.c_uint64), ("err", ctypes.c_uint64), ("rip", ctypes.c_uint64),
                ("in_code", ctypes.c_int32), ("pad", ctypes.c_int32)]


class _VecrefInfo(ctypes.Structure):
    _fields_ = [("code_base", ctypes.c_uint64), ("data_base", ctypes.c_uint64),
                ("data_size", ctypes.c_uint64), ("host_mxcsr", ctypes.c_uint32),
                ("xsave_frame", ctypes.c_int32)]


def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return frozenset(match.group(1).split()) if match else frozenset()


@functools.cache
def host_caps() -> Caps:
    """What the host side can check, from /proc/cpuinfo: ZMM0-31 and k0-k7 with AVX-512F
    (64-bit k with AVX-512BW, else 16-bit), YMM0-15 with AVX, XMM0-15 otherwise."""
    flags = _cpu_flags()
    if "avx512f" in flags:
        return Caps("host", 512, 32, 64 if "avx512bw" in flags else 16, flags)
    if "avx" in flags:
        return Caps("host", 256, 16, 0, flags)
    return Caps("host", 128, 16, 0, flags)


def _host_mode(caps: Caps) -> int:
    """vecref.c's mode for these caps."""
    if caps.vector_bits == 512:
        return 3 if caps.k_bits == 64 else 2
    return 1 if caps.vector_bits == 256 else 0


def _build_library() -> Path:
    """Compile vecref.c into the cache once per source version (named by its hash)."""
    source = NATIVE_SOURCE.read_bytes()
    digest = hashlib.sha256(source + b"\0" + " ".join(CFLAGS).encode()).hexdigest()
    target = cache_dir() / f"{digest}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise HostUnavailable("no C compiler (cc) to build native/vecref.c")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{digest}.", suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run([compiler, *CFLAGS, "-o", tmp, str(NATIVE_SOURCE)],
                              capture_output=True, text=True)
        if done.returncode:
            raise HostUnavailable(f"building vecref.c failed:\n{done.stderr}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


# The host is a reference only on the CPUs the recordings were checked against: AMD family
# 0x19 (Zen 4, where they were recorded) and the Xeon W's own generation (Intel family 6,
# model 0x55: Skylake and Cascade Lake servers). A later Intel core runs what neither does
# (AVX512-FP16, ...) and differs where the SDM leaves room: DPPS's and VREDUCEPS's flags in
# corner cases, CR2 of a masked store's fault (the first masked-in byte, not the element's
# start). On other hosts the recordings alone are the reference; IMACPRO_VECTOR_HOST=any
# uses the host anyway.
REFERENCE_CPUS = {("AuthenticAMD", 0x19, None), ("GenuineIntel", 6, 0x55)}
HOST_ENV = "IMACPRO_VECTOR_HOST"


def host_cpu() -> tuple[str, int, int] | None:
    """(vendor, family, model) of this host's CPU, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    fields = [re.search(rf"^{name}\s*:\s*(\S+)", text, re.M)
              for name in ("vendor_id", "cpu family", "model")]
    if not all(fields):
        return None
    return fields[0].group(1), int(fields[1].group(1)), int(fields[2].group(1))


def _is_reference(cpu: tuple[str, int, int] | None) -> bool:
    return cpu is not None and any(
        cpu[:2] == ref[:2] and ref[2] in (None, cpu[2]) for ref in REFERENCE_CPUS)


class _Host:
    """The loaded runner and its buffers (one per process: vecref.c has global state)."""

    def __init__(self) -> None:
        if platform.machine() not in ("x86_64", "AMD64") or not Path("/proc").exists():
            raise HostUnavailable("the host side needs x86-64 Linux")
        cpu = host_cpu()
        if not _is_reference(cpu) and os.environ.get(HOST_ENV) != "any":
            raise HostUnavailable(f"this host's CPU ({cpu}) is not one the recordings were "
                                  f"checked on: they are the reference ({HOST_ENV}=any uses "
                                  "it anyway)")
        self.lib = ctypes.CDLL(str(_build_library()))
        self.lib.vecref_init.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32,
                                         ctypes.c_int, ctypes.POINTER(_VecrefInfo)]
        self.lib.vecref_run.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_void_p,
                                        ctypes.c_char_p, ctypes.c_void_p,
                                        ctypes.POINTER(_VecrefResult)]
        info = _VecrefInfo()
        caps = host_caps()
        status = self.lib.vecref_init(CODE_BASE, DATA_BASE, DATA_PAGES, _host_mode(caps),
                                      ctypes.byref(info))
        if status:
            raise HostUnavailable(f"vecref_init failed ({status}) for {caps}")
        self.data_base = info.data_base
        fixed = info.code_base == CODE_BASE and info.data_base == DATA_BASE
        self.caps = dataclasses.replace(caps, fixed_addresses=fixed)
        self.block = ctypes.create_string_buffer(ST_SIZE)
        self.mem_out = ctypes.create_string_buffer(DATA_SIZE)
        self.result = _VecrefResult()

    def run(self, code: bytes, state: State) -> Outcome:
        ctypes.memmove(self.block, state.pack(self.data_base), ST_SIZE)
        if self.lib.vecref_run(code, len(code), self.block, state.padded_mem(), self.mem_out,
                               ctypes.byref(self.result)):
            raise ValueError(f"vecref_run refused a {len(code)}-byte instruction")
        after = State.unpack(self.block.raw, self.mem_out.raw, self.data_base)
        return self._outcome(after)

    def _outcome(self, after: State) -> Outcome:
        r = self.result
        if not r.signal:
            return Outcome(after, None, self.caps)
        detail = (f"signal {r.signal} si_code {r.code} addr {r.addr:#x} trapno {r.trapno} "
                  f"err {r.err:#x} rip {r.rip:#x}")
        if not r.in_code:
            raise RuntimeError(f"the host runner itself faulted: {detail}")
        vector = _signal_vector(r.signal, r.code, r.trapno)
        fault_addr = r.addr - self.data_base if vector == 14 else None
        return Outcome(after, vector, self.caps, fault_addr, detail, r.signal)


# The vectors each signal can stand for; outside these the trap number is not believed.
_SIGNAL_VECTORS = {4: {6}, 11: {10, 11, 12, 13, 14}, 7: {12, 13, 17}, 8: {0, 16, 19},
                   5: {1, 3}}


def _signal_vector(signal: int, si_code: int, trapno: int) -> int:
    """The x86 exception behind a signal: Linux's trap number from the signal frame, else
    the usual mapping (SIGILL #UD; SIGSEGV #PF for a page fault, #GP otherwise; SIGBUS #AC
    for misalignment; SIGFPE #XM)."""
    if trapno in _SIGNAL_VECTORS.get(signal, ()):
        return trapno
    if signal == 4:
        return 6
    if signal == 11:
        return 14 if si_code in (1, 2, 4) else 13       # SEGV_MAPERR/ACCERR/PKUERR
    if signal == 7:
        return 17 if si_code == 1 else 13               # BUS_ADRALN
    if signal == 5:
        return 3
    return 19


@functools.cache
def _host() -> _Host:
    return _Host()


def host_available() -> bool:
    try:
        _host()
    except HostUnavailable:
        return False
    return True


def run_host(code: bytes, state: State) -> Outcome:
    """Run one instruction on the host CPU (raises HostUnavailable where it cannot)."""
    return _host().run(code, state)


# --- the engine side ---------------------------------------------------------------------------

XCR0_FULL = 0xE7     # x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM
XCR0_LEGACY = 0x3    # x87 SSE: what an engine without AVX accepts


class _Engine:
    """A bare Unicorn x86-64 engine on imacpro's library, set up once and reset every run."""

    def __init__(self) -> None:
        from imacpro.cpu.engine import uclib   # first: points the binding at our library
        import unicorn
        from unicorn import x86_const as x

        self.unicorn, self.x, self.uclib = unicorn, x, uclib
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.uc.ctl_set_cpu_model(x.UC_CPU_X86_SKYLAKE_SERVER)   # the machine's model
        self.uc.mem_map(CODE_BASE, PAGE)
        self.uc.mem_map(DATA_BASE - PAGE, DATA_SIZE + 2 * PAGE)   # guard pages: not present
        self.uc.mem_write(CODE_BASE, b"\xcc" * PAGE)
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_interrupt)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self._set_control_registers()
        self._set_page_tables()
        self.xcr0 = self._set_xcr0()
        self.k_supported = self._k_registers_work()
        self.caps = Caps("engine", 512, 32, 64 if self.k_supported else 0,
                         frozenset(), True)
        self._make_batches()
        self.last_code = b""
        self.fault: int | None = None
        self.fault_addr: int | None = None

    def _set_control_registers(self) -> None:
        """CR0.MP|NE, TS and EM clear; CR4.OSFXSR|OSXMMEXCPT|OSXSAVE: SSE and XSETBV usable,
        SIMD FP exceptions as #XM."""
        x = self.x
        cr0 = (self.uc.reg_read(x.UC_X86_REG_CR0) | 0x22) & ~0xC
        self.uc.reg_write(x.UC_X86_REG_CR0, cr0)
        cr4 = self.uc.reg_read(x.UC_X86_REG_CR4) | 1 << 9 | 1 << 10 | 1 << 18
        self.uc.reg_write(x.UC_X86_REG_CR4, cr4)

    def _set_page_tables(self) -> None:
        """Paging on, as in the machine: the code and data pages identity-mapped, the guard
        pages mapped in RAM but not present in the page tables, so an access to them is a
        #PF through the CPU's own page walk (probes before stores, partial completion) and
        not an access to unmapped memory, which the engine reports differently."""
        x, uc = self.x, self.uc
        uc.mem_map(PAGE_TABLES, 4 * PAGE)
        pml4, pdpt, pd, pt = (PAGE_TABLES + i * PAGE for i in range(4))
        entry = lambda table, address, bits: uc.mem_write(  # noqa: E731
            table + 8 * bits, struct.pack("<Q", address | 0x7))   # present, writable, user
        entry(pml4, pdpt, (CODE_BASE >> 39) & 511)
        entry(pdpt, pd, (CODE_BASE >> 30) & 511)
        entry(pd, pt, (CODE_BASE >> 21) & 511)
        for page in [CODE_BASE] + [DATA_BASE + i * PAGE for i in range(DATA_PAGES)]:
            assert page >> 21 == CODE_BASE >> 21, "one page table covers code and data"
            entry(pt, page, (page >> 12) & 511)
        uc.reg_write(x.UC_X86_REG_CR3, pml4)
        uc.reg_write(x.UC_X86_REG_CR4, uc.reg_read(x.UC_X86_REG_CR4) | 1 << 5)      # PAE
        uc.reg_write(x.UC_X86_REG_CR0, uc.reg_read(x.UC_X86_REG_CR0) | 1 << 31 | 1)  # PG, PE

    def _set_xcr0(self) -> int:
        """XCR0 through an executed XSETBV: the full AVX-512 set if the engine accepts it."""
        x = self.x
        for xcr0 in (XCR0_FULL, XCR0_LEGACY):
            self.uc.mem_write(CODE_END - 3, b"\x0f\x01\xd1")       # xsetbv
            for reg, value in ((x.UC_X86_REG_RAX, xcr0), (x.UC_X86_REG_RDX, 0),
                               (x.UC_X86_REG_RCX, 0)):
                self.uc.reg_write(reg, value)
            self.fault = None
            try:
                self.uc.emu_start(CODE_END - 3, CODE_END, 0, 1)
            except self.unicorn.UcError:
                continue
            if self.fault is None:
                return xcr0
        raise RuntimeError("the engine refused XSETBV with XCR0=3")

    def _k_registers_work(self) -> bool:
        """Whether reg_write/reg_read of K0-K7 reach the registers (older builds ignore them,
        with a warning that UC_IGNORE_REG_BREAK silences)."""
        x = self.x
        saved = os.environ.get("UC_IGNORE_REG_BREAK")
        os.environ["UC_IGNORE_REG_BREAK"] = "1"
        try:
            self.uc.reg_write(x.UC_X86_REG_K1, 0x8000_0001_A5A5_0003)
            works = self.uc.reg_read(x.UC_X86_REG_K1) == 0x8000_0001_A5A5_0003
        except self.unicorn.UcError:
            works = False
        finally:
            if saved is None:
                del os.environ["UC_IGNORE_REG_BREAK"]
            else:
                os.environ["UC_IGNORE_REG_BREAK"] = saved
        return works

    def _make_batches(self) -> None:
        """Register ids and pointers into two state blocks (laid out as vecref.c's), so one
        uc_reg_write_batch loads a whole State and one uc_reg_read_batch stores it."""
        x = self.x
        slots = [(x.UC_X86_REG_ZMM0 + i, 64 * i) for i in range(32)]
        if self.k_supported:
            slots += [(x.UC_X86_REG_K0 + i, ST_K + 8 * i) for i in range(8)]
        slots += [(getattr(x, f"UC_X86_REG_{name.upper()}"), ST_GPR + 8 * i)
                  for i, name in enumerate(GPR_ORDER) if name]
        slots += [(x.UC_X86_REG_RFLAGS, ST_RFLAGS), (x.UC_X86_REG_MXCSR, ST_MXCSR)]
        self.count = len(slots)
        self.ids = (ctypes.c_int * self.count)(*(reg for reg, _ in slots))
        self.block_in = ctypes.create_string_buffer(ST_SIZE)
        self.block_out = ctypes.create_string_buffer(ST_SIZE)
        base_in, base_out = ctypes.addressof(self.block_in), ctypes.addressof(self.block_out)
        self.ptrs_in = (ctypes.c_void_p * self.count)(*(base_in + off for _, off in slots))
        self.ptrs_out = (ctypes.c_void_p * self.count)(*(base_out + off for _, off in slots))

    def _on_interrupt(self, uc, vector: int, _data) -> None:
        self.fault = vector
        uc.emu_stop()

    def _on_unmapped(self, uc, _access, address: int, _size, _value, _data) -> bool:
        if self.fault_addr is None:         # the first access that failed
            self.fault_addr = address - DATA_BASE
        return False

    def _load_code(self, code: bytes) -> int:
        """Put the instruction so that it ends at CODE_END (rewritten only when it changes, so
        repeated runs reuse the translation)."""
        start = CODE_END - len(code)
        if code != self.last_code:
            self.uc.mem_write(CODE_END - 64, b"\xcc" * (64 - len(code)) + code)
            self.uc.ctl_remove_cache(CODE_END - 64, CODE_END + 16)
            self.last_code = code
        return start

    def run(self, code: bytes, state: State) -> Outcome:
        if not 0 < len(code) <= 64:
            raise ValueError(f"a {len(code)}-byte instruction")
        start = self._load_code(code)
        block = state.pack(DATA_BASE)
        ctypes.memmove(self.block_in, block, ST_SIZE)
        ctypes.memmove(self.block_out, block, ST_SIZE)  # what is not read back stays as given
        uch = self.uc._uch
        self._check(self.uclib.uc_reg_write_batch(uch, self.ids, self.ptrs_in, self.count))
        self._check(self.uclib.uc_mem_write(uch, DATA_BASE, state.padded_mem(), DATA_SIZE))
        self.fault = self.fault_addr = None
        detail = ""
        try:
            self.uc.emu_start(start, CODE_END, 0, 1)
        except self.unicorn.UcError as error:
            self.fault, detail = self._error_vector(error), str(error)
        self._check(self.uclib.uc_reg_read_batch(uch, self.ids, self.ptrs_out, self.count))
        mem = self.uc.mem_read(DATA_BASE, DATA_SIZE)
        after = State.unpack(self.block_out.raw, mem, DATA_BASE)
        if self.fault == 14 and self.fault_addr is None:
            self.fault_addr = self.uc.reg_read(self.x.UC_X86_REG_CR2) - DATA_BASE
        fault_addr = self.fault_addr if self.fault == 14 else None
        if self.fault is not None and not detail:
            detail = f"interrupt hook: vector {self.fault}"
        return Outcome(after, self.fault, self.caps, fault_addr, detail)

    def _error_vector(self, error) -> int:
        """Unicorn's errors as exceptions: an invalid instruction is #UD, an access to
        unmapped memory (the guard pages) #PF; anything else is a harness problem."""
        u = self.unicorn
        if error.errno == u.UC_ERR_INSN_INVALID:
            return 6
        if error.errno in (u.UC_ERR_READ_UNMAPPED, u.UC_ERR_WRITE_UNMAPPED,
                           u.UC_ERR_FETCH_UNMAPPED):
            return 14
        raise error

    def _check(self, status: int) -> None:
        if status:
            raise self.unicorn.UcError(status)


@functools.cache
def _engine() -> _Engine:
    return _Engine()


def run_engine(code: bytes, state: State) -> Outcome:
    """Run one instruction on the engine (one reused instance per process)."""
    return _engine().run(code, state)


def engine_xcr0() -> int:
    """The XCR0 active on the engine: XCR0_FULL (0xE7) once it accepts it, else XCR0_LEGACY."""
    return _engine().xcr0


def engine_caps() -> Caps:
    return _engine().caps


# --- comparing ---------------------------------------------------------------------------------

_FP_WIDTH = {"f16": 16, "f32": 32, "f64": 64}


def _fp_value(bits: int, kind: str) -> float:
    fmt = {"f16": "<e", "f32": "<f", "f64": "<d"}[kind]
    size = _FP_WIDTH[kind] // 8
    return struct.unpack(fmt, bits.to_bytes(size, "little"))[0]


def _fp_close(a: int, b: int, kind: str, rel: float) -> bool:
    """Lanes equal within a relative tolerance; NaNs match NaNs, infinities need the sign."""
    fa, fb = _fp_value(a, kind), _fp_value(b, kind)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    if math.isinf(fa) or math.isinf(fb):
        return fa == fb
    return abs(fa - fb) <= rel * max(abs(fa), abs(fb))


def _vector_name(bits: int) -> str:
    return {128: "xmm", 256: "ymm", 512: "zmm"}[bits]


def _compare_vectors(a: State, b: State, bits: int, count: int, lane_bits: int,
                     fp_approx: tuple[str, float] | None) -> list[str]:
    width = _FP_WIDTH[fp_approx[0]] if fp_approx else lane_bits
    mask, lane_mask, digits = (1 << bits) - 1, (1 << width) - 1, width // 4
    name = _vector_name(bits)
    diffs = []
    for reg in range(count):
        va, vb = a.zmm[reg] & mask, b.zmm[reg] & mask
        if va == vb:
            continue
        for lane in range(bits // width):
            la, lb = va >> (lane * width) & lane_mask, vb >> (lane * width) & lane_mask
            if la == lb or (fp_approx and _fp_close(la, lb, fp_approx[0], fp_approx[1])):
                continue
            diffs.append(f"{name}{reg}[{lane}] ({width}-bit lane): "
                         f"{la:0{digits}x} vs {lb:0{digits}x}")
    return diffs


def _bit_names(value: int, names: dict[str, int] | Sequence[str]) -> str:
    items = names.items() if isinstance(names, dict) else ((n, i) for i, n in enumerate(names))
    return "|".join(name for name, bit in items if value >> bit & 1) or "-"


def _compare_mem(a: bytes, b: bytes, limit: int = 16) -> list[str]:
    """Differing 8-byte-aligned chunks, as offset and both values (bytes in memory order)."""
    if a == b:
        return []
    diffs = []
    for off in range(0, min(len(a), len(b)), 8):
        ca, cb = a[off:off + 8], b[off:off + 8]
        if ca != cb:
            diffs.append(f"mem[{off:#06x}..+8]: {ca.hex()} vs {cb.hex()}")
    if len(diffs) > limit:
        diffs[limit:] = [f"... and {len(diffs) - limit} more differing 8-byte chunks"]
    return diffs


def compare(a: Outcome, b: Outcome, *, vl_regs: tuple[int, int] | None = None,
            fp_approx: tuple[str, float] | None = None, lane_bits: int = 64,
            fault_addr: bool = True, mem: bool = True) -> list[str]:
    """The differences between two outcomes, one readable line each ([] if they agree).

    vl_regs=(bits, count): compare the low `bits` of the first `count` vector registers;
    default and upper bound: what both sides observed (their Caps). k registers are compared
    when both sides observed them. fp_approx=("f32", 2**-11): vector lanes of that format
    only need to agree within that relative error (NaN matches any NaN), for approximations
    like RCPPS whose results are implementation-specific; None is bit-exact. lane_bits: the
    lane size differences are reported in. fault_addr: compare #PF addresses too.
    """
    diffs = []
    if a.fault != b.fault:
        diffs.append(f"fault: {vector_name(a.fault)} vs {vector_name(b.fault)} "
                     f"({a.detail or '-'} / {b.detail or '-'})")
    elif fault_addr and a.fault == 14 and None not in (a.fault_addr, b.fault_addr) \
            and a.fault_addr != b.fault_addr:
        diffs.append(f"#PF address (data offset): {a.fault_addr:#x} vs {b.fault_addr:#x}")
    bits = min(a.caps.vector_bits, b.caps.vector_bits)
    count = min(a.caps.vector_regs, b.caps.vector_regs)
    if vl_regs:
        bits, count = min(bits, vl_regs[0]), min(count, vl_regs[1])
    sa, sb = a.state, b.state
    diffs += _compare_vectors(sa, sb, bits, count, lane_bits, fp_approx)
    k_bits = min(a.caps.k_bits, b.caps.k_bits)
    for i in range(8 if k_bits else 0):
        ka, kb = sa.k[i] & ((1 << k_bits) - 1), sb.k[i] & ((1 << k_bits) - 1)
        if ka != kb:
            diffs.append(f"k{i}: {ka:#x} vs {kb:#x}")
    for name in GPRS:
        if sa.gpr[name] != sb.gpr[name]:
            diffs.append(f"{name}: {sa.gpr[name]:#018x} vs {sb.gpr[name]:#018x}")
    fa, fb = sa.rflags & FLAGS_MASK, sb.rflags & FLAGS_MASK
    if fa != fb:
        diffs.append(f"rflags: {fa:#x} ({_bit_names(fa, FLAGS)}) vs "
                     f"{fb:#x} ({_bit_names(fb, FLAGS)})")
    if sa.mxcsr != sb.mxcsr:
        diffs.append(f"mxcsr: {sa.mxcsr:#06x} vs {sb.mxcsr:#06x} "
                     f"(differing: {_bit_names(sa.mxcsr ^ sb.mxcsr, MXCSR_BITS)})")
    if mem:
        diffs += _compare_mem(sa.mem, sb.mem)
    return diffs


def describe(code: bytes, state: State, outcomes: Sequence[Outcome],
             diffs: Sequence[str] = ()) -> str:
    """A reproducer for a failure message: the bytes, the control inputs, each outcome's
    fault, and the input value of every register the differences name."""
    lines = [f"code {code.hex()}  mxcsr {state.mxcsr:#06x}  rflags {state.rflags:#x}  "
             f"rsi {state.gpr['rsi']:#x}  rdi {state.gpr['rdi']:#x}"]
    for outcome in outcomes:
        lines.append(f"{outcome.caps.side}: {vector_name(outcome.fault)} {outcome.detail}".rstrip())
    matches = (re.match(r"[xyz]mm(\d+)|k(\d)|(\w+):", d) for d in diffs)
    named = dict.fromkeys(m.group(0) for m in matches if m)   # fault lines name no register
    for name in named:
        if name[1:3] == "mm":
            lines.append(f"input zmm{name[3:]}: {state.zmm[int(name[3:])]:#0130x}")
        elif name[0] == "k" and name[1:].isdigit():
            lines.append(f"input {name}: {state.k[int(name[1:])]:#018x}")
        elif name.rstrip(":") in state.gpr:
            lines.append(f"input {name} {state.gpr[name.rstrip(':')]:#018x}")
    return "\n".join(lines)


# --- assembling --------------------------------------------------------------------------------

_ASSEMBLED: dict[str, bytes] = {}


@functools.cache
def _as_version() -> str:
    tool = shutil.which("as")
    if not tool:
        raise AssemblerError("GNU as is not installed")
    return subprocess.run([tool, "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def assemble(lines: Sequence[str]) -> list[bytes]:
    """Each AT&T-syntax line's machine code. The lines not seen before in this process are
    assembled together in ONE run of `as --64` (or found in the on-disk cache, keyed by
    their hash), each between two labels read back from the object's symbol table."""
    lines = [line.strip() for line in lines]
    missing = sorted({line for line in lines if line not in _ASSEMBLED})
    if missing:
        _ASSEMBLED.update(zip(missing, _assemble_cached(missing)))
    return [_ASSEMBLED[line] for line in lines]


def _assemble_cached(lines: list[str]) -> list[bytes]:
    key = hashlib.sha256("\n".join([_as_version(), *lines]).encode()).hexdigest()
    path = cache_dir() / "asm" / f"{key}.json"
    try:
        return [bytes.fromhex(h) for h in json.loads(path.read_text())]
    except (OSError, ValueError):
        pass
    codes = _run_as(lines)
    _write_atomically(path, json.dumps([c.hex() for c in codes]).encode())
    return codes


def _run_as(lines: list[str]) -> list[bytes]:
    for line in lines:
        if "\n" in line or not line:
            raise AssemblerError(f"not one instruction: {line!r}")
    source = [".text"]
    for i, line in enumerate(lines):
        source += [f"__vh_{i}:", f"    {line}"]          # the line is source line 2i+3
    source.append(f"__vh_{len(lines)}:")
    with tempfile.TemporaryDirectory(prefix="vecharness-") as tmp:
        src, obj = Path(tmp, "lines.s"), Path(tmp, "lines.o")
        src.write_text("\n".join(source) + "\n")
        done = subprocess.run(["as", "--64", "-o", str(obj), str(src)], capture_output=True,
                              text=True)
        if done.returncode:
            raise AssemblerError(_as_errors(done.stderr, lines))
        text, symbols, relocated = _read_elf(obj.read_bytes())
    offsets = [symbols[f"__vh_{i}"] for i in range(len(lines) + 1)]
    bad = [lines[i] for i in range(len(lines))
           if any(offsets[i] <= r < offsets[i + 1] for r in relocated)]
    if bad:
        raise AssemblerError(f"lines that need relocations (symbols): {bad}")
    return [text[offsets[i]:offsets[i + 1]] for i in range(len(lines))]


def _as_errors(stderr: str, lines: list[str]) -> str:
    """GNU as's messages with the offending input lines named."""
    out = []
    for message in stderr.splitlines():
        match = re.match(r".*?:(\d+): (.*)", message)
        if match and int(match.group(1)) >= 3:
            index = (int(match.group(1)) - 3) // 2
            if index < len(lines):
                out.append(f"{lines[index]!r}: {match.group(2)}")
                continue
        out.append(message)
    return "GNU as rejected:\n" + "\n".join(out)


def _read_elf(data: bytes) -> tuple[bytes, dict[str, int], list[int]]:
    """From an ELF64 relocatable object: .text's bytes, its symbols' offsets, and the
    offsets .rela.text patches."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    names_off = sections[shstrndx][4]

    def cstr(offset: int) -> str:
        return data[offset:data.index(b"\0", offset)].decode()

    by_name = {cstr(names_off + s[0]): (i, s) for i, s in enumerate(sections)}
    text_index, text = by_name[".text"]
    code = data[text[4]:text[4] + text[5]]
    _, symtab = by_name[".symtab"]
    strtab_off = sections[symtab[6]][4]
    symbols = {}
    for off in range(symtab[4], symtab[4] + symtab[5], 24):
        name, _info, _other, shndx, value, _size = struct.unpack_from("<IBBHQQ", data, off)
        if shndx == text_index and name:
            symbols[cstr(strtab_off + name)] = value
    relocated = []
    if ".rela.text" in by_name:
        _, rela = by_name[".rela.text"]
        relocated = [struct.unpack_from("<Q", data, off)[0]
                     for off in range(rela[4], rela[4] + rela[5], 24)]
    return code, symbols, relocated


# --- running both ------------------------------------------------------------------------------

# The SDM's outcome a fault case is built for, by name.
EXPECTED_FAULT = {"#PF": 14, "#UD": 6, "no fault": None}


def sdm_notes(answer: Outcome, expect: str, *, guard_page: bool = True) -> list[str]:
    """How a recorded (silicon) outcome departs from the SDM's outcome `expect` ("#PF", "#UD"
    or "no fault"); with guard_page, a #PF must be at the guard page's first byte."""
    notes = []
    if answer.fault != EXPECTED_FAULT[expect]:
        notes.append(f"silicon gave {vector_name(answer.fault)}, the SDM {expect}")
    if guard_page and answer.fault == 14 and answer.fault_addr != DATA_SIZE:
        notes.append(f"#PF at {answer.fault_addr:#x}, not at the guard page's start")
    return notes


def failure(text: str, code: bytes, state: State, outcomes: Sequence[Outcome],
            diffs: Sequence[str]) -> str:
    """One failed case for an assertion message: its line, a reproducer, the differences."""
    return f"{text}: " + describe(code, state, outcomes, diffs) + "\n  " + "\n  ".join(diffs)


def differential(code: bytes, state: State, **compare_options) -> list[str]:
    """Run on both sides and compare (host first, then engine, in each message)."""
    return compare(run_host(code, state), run_engine(code, state), **compare_options)


def sweep(code: bytes, states: Sequence[State], *, stop_after: int = 3,
          **compare_options) -> list[str]:
    """Differential runs over many states (host first, then engine, in each message); the
    first few disagreements, with reproducers. Empty when all agree."""
    failures = []
    for index, state in enumerate(states):
        host, engine = run_host(code, state), run_engine(code, state)
        diffs = compare(host, engine, **compare_options)
        if diffs:
            failures.append(f"state #{index}: " + describe(code, state, (host, engine), diffs)
                            + "\n  " + "\n  ".join(diffs))
            if len(failures) >= stop_after:
                break
    return failures


# --- known answers ------------------------------------------------------------------------------

VECTORS_DIR = REPO / "tests" / "cpu" / "vectors"
RECORD_ENV = "IMACPRO_RECORD_VECTORS"
RECORDED_CAPS = Caps("recorded", 512, 32, 64)


def _digest(code: bytes, state: State) -> str:
    """Names a case by its code and whole input state."""
    h = hashlib.sha256(code)
    h.update(state.pack(0))
    h.update(state.padded_mem())
    return h.hexdigest()[:24]


def _delta(before: State, outcome: Outcome) -> dict:
    """What the instruction changed: small enough to keep thousands of cases in the tree."""
    after = outcome.state
    mem = []
    for off in range(0, DATA_SIZE, 64):
        if after.mem[off:off + 64] != before.mem[off:off + 64]:
            mem.append([off, after.mem[off:off + 64].hex()])
    return {
        "fault": outcome.fault, "fault_addr": outcome.fault_addr,
        "zmm": {i: f"{v:x}" for i, v in enumerate(after.zmm) if v != before.zmm[i]},
        "k": {i: v for i, v in enumerate(after.k) if v != before.k[i]},
        "gpr": {n: v for n, v in after.gpr.items() if v != before.gpr[n]},
        "rflags": after.rflags, "mxcsr": after.mxcsr, "mem": mem,
    }


def _applied(before: State, delta: dict) -> Outcome:
    after = before.copy()
    for i, v in delta["zmm"].items():
        after.zmm[int(i)] = int(v, 16)
    for i, v in delta["k"].items():
        after.k[int(i)] = v
    after.gpr.update(delta["gpr"])
    after.rflags, after.mxcsr = delta["rflags"], delta["mxcsr"]
    mem = bytearray(after.padded_mem())
    for off, chunk in delta["mem"]:
        mem[off:off + 64] = bytes.fromhex(chunk)
    after.mem = bytes(mem)
    return Outcome(after, delta["fault"], RECORDED_CAPS, delta["fault_addr"], "recorded")


def known_answers(name: str, cases: Sequence[tuple[bytes, State]]) -> list[Outcome]:
    """The outcomes silicon gave for these cases, recorded in tests/cpu/vectors/NAME.json.gz.

    The reference for hosts without AVX-512: the cases (code and input state, from a seeded
    generator) ran once on a CPU with AVX-512 F, CD, BW, DQ and VL, and what each changed
    was kept. A case not in the file is recorded when IMACPRO_RECORD_VECTORS=1 on such a
    host (the file is then rewritten with exactly these cases); otherwise it is an error:
    the vectors must be recorded and committed with the test that makes the cases.
    """
    path = VECTORS_DIR / f"{name}.json.gz"
    try:
        stored = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        stored = {}
    digests = [_digest(code, state) for code, state in cases]
    missing = [i for i, d in enumerate(digests) if d not in stored]
    if missing:
        caps = host_caps()
        if os.environ.get(RECORD_ENV) != "1":
            raise HostUnavailable(f"{len(missing)} of {len(cases)} cases are not in {path}: "
                                  f"record them with {RECORD_ENV}=1 on a host with AVX-512")
        if not (host_available() and caps.k_bits == 64 and caps.vector_regs == 32
                and caps.has("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")):
            raise HostUnavailable("recording needs a host with AVX-512 F, CD, BW, DQ and VL")
        for i in missing:
            code, state = cases[i]
            stored[digests[i]] = _delta(state, run_host(code, state))
        kept = {d: stored[d] for d in digests}
        VECTORS_DIR.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, gzip.compress(json.dumps(kept, sort_keys=True).encode(), 9,
                                              mtime=0))
    return [_applied(state, stored[d]) for (_, state), d in zip(cases, digests)]


__all__ = [
    "AssemblerError", "CODE_BASE", "CODE_END", "Caps", "DATA_BASE", "DATA_SIZE",
    "EXPECTED_FAULT", "failure", "sdm_notes",
    "HostUnavailable", "Outcome", "State", "VECTOR_KINDS", "XCR0_FULL", "XCR0_LEGACY",
    "assemble", "cache_dir", "compare", "describe", "differential", "engine_caps",
    "engine_xcr0", "host_available", "host_caps", "known_answers", "random_state",
    "random_vector",
    "run_engine", "run_host", "sweep", "vector_name",
]


# Exact encodings of values a floating-point format holds, for directed range states.
FORMATS = {"f16": (16, 10, 15), "f32": (32, 23, 127), "f64": (64, 52, 1023)}  # bits, fraction


def fp_bits(lane_format: str, value: Fraction) -> int:
    """The exact encoding of a value the format holds (normal, denormal or zero)."""
    width, fbits, bias = FORMATS[lane_format]
    sign = 1 << (width - 1) if value < 0 else 0
    value = abs(value)
    if value == 0:
        return sign
    exp = value.numerator.bit_length() - value.denominator.bit_length()
    if Fraction(2) ** exp > value:
        exp -= 1
    exp = max(exp, 1 - bias)                            # denormals: the smallest exponent
    sig = value / Fraction(2) ** (exp - fbits)
    assert sig.denominator == 1 and sig < 2 << fbits, (lane_format, value)
    biased = exp + bias if int(sig) >> fbits else 0
    assert biased < (1 << (width - fbits - 1)) - 1, (lane_format, value)
    return sign | biased << fbits | (int(sig) & ((1 << fbits) - 1))
