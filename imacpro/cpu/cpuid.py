"""CPUID of the configured Xeon W-21xxB, as one logical CPU sees it.

Identity, topology, caches and frequencies come from the catalog. Instruction-set feature bits
are honest: each one is the engine's own answer (what Unicorn's TCG executes for its Skylake-Server
model, probed once per process by running CPUID with no hook) and never more. What a real
Xeon W has and the engine lacks is therefore absent, and listed in `LEFT_OUT` for the docs.

Changes to the engine's answer, each because of the machine rather than the instruction set:
  leaf 1  ECX.hypervisor cleared (an iMac Pro runs on bare metal); ECX.TSC-deadline set (our
          local APIC implements that timer mode); EDX.HTT set (two threads per core);
          EBX = CLFLUSH size, logical-processor count and the initial APIC ID.
  leaf 4, 0xB             cache and x2APIC topology: cores × 2 threads, one package.
  leaf 7  EBX.TSC_ADJUST set (the MSR is the machine's, msr.py; with it and the invariant
          TSC, Linux trusts the TSC as on the real machine and does not watch it against
          the HPET, a check that fails when a vCPU is descheduled between its reads).
  leaf 6                  ARAT (our APIC timer runs in every C-state), Turbo Boost, HWP with
                          notification, activity window, EPP and package requests, and
                          APERF/MPERF (cpu/hwp.py); no energy-performance bias MSR.
  leaf 0xA                no architectural performance monitoring (not modelled).
  leaf 0xD                only the state components of features we claim (x87, SSE, AVX,
                          AVX-512), at their standard-format offsets; no supervisor components
                          (IA32_XSS stays 0); EBX of subleaves 0 and 1 (the standard and the
                          compacted size) follows XCR0 (vcpu.py asks the engine).
  leaf 0x15, 0x16         25 MHz core crystal, TSC ratio, base/turbo/bus frequencies.
  0x80000002-4            the brand string, e.g. "Intel(R) Xeon(R) W-2140B CPU @ 3.20GHz".
  0x80000006, 7, 8        L2 descriptor, invariant TSC, 46-bit physical / 48-bit virtual.
"""

from __future__ import annotations

import functools
import struct

from imacpro.catalog.data import Processor

CRYSTAL_HZ = 25_000_000          # Skylake-SP/W core crystal (also the APIC timer clock)
BUS_MHZ = 100
PHYSICAL_ADDRESS_BITS = 46       # Skylake-W
VIRTUAL_ADDRESS_BITS = 48
CACHE_LINE = 64

HYPERVISOR = 1 << 31             # leaf 1 ECX
TSC_DEADLINE = 1 << 24           # leaf 1 ECX
HTT = 1 << 28                    # leaf 1 EDX
INVARIANT_TSC = 1 << 8           # 0x80000007 EDX
ARAT = 1 << 2                    # leaf 6 EAX
LEAF6_TURBO = 1 << 1             # leaf 6 EAX: Turbo Boost available
LEAF6_HWP = 0b1_1111 << 7        # HWP, notification, activity window, EPP, package request
LEAF6_APERFMPERF = 1 << 0        # leaf 6 ECX
TSC_ADJUST = 1 << 1              # leaf 7 EBX: IA32_TSC_ADJUST (msr.py)

# Features of the real Xeon W-21xxB that the engine does not execute (so CPUID does not claim).
LEFT_OUT = ("VMX", "x2APIC", "MONITOR/MWAIT", "EIST", "TSX (HLE, RTM)", "MPX",
            "PREFETCHW", "RDSEED", "performance monitoring (leaf 0xA)")

PROBED_LEAVES = ((0, 0), (1, 0), (7, 0), (0xD, 1), (0x80000001, 0))


@functools.cache
def engine_features() -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """The engine's own CPUID answers for the feature leaves (run without any hook)."""
    from unicorn import x86_const as x

    from imacpro.cpu.engine import Engine

    engine = Engine(intack=lambda: -1, msr=lambda *_: (0, None))
    uc = engine.uc
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, b"\x0f\xa2\xf4")  # cpuid; hlt (HLT ends emu_start)
    out = {}
    for leaf, sub in PROBED_LEAVES:
        uc.reg_write(x.UC_X86_REG_RAX, leaf)
        uc.reg_write(x.UC_X86_REG_RCX, sub)
        uc.emu_start(0x1000, 0)
        out[leaf, sub] = tuple(uc.reg_read(r) & 0xFFFFFFFF for r in (
            x.UC_X86_REG_RAX, x.UC_X86_REG_RBX, x.UC_X86_REG_RCX, x.UC_X86_REG_RDX))
    return out


# XSAVE state components: bit -> (size, standard-format offset). x87 and SSE share the
# 512-byte legacy area, which with the 64-byte header comes before the others.
XSAVE_LEGACY_SIZE = 0x240
XSAVE_COMPONENTS = {2: (0x100, 0x240),      # AVX: YMM_Hi128
                    5: (0x40, 0x440),       # AVX-512: opmask
                    6: (0x200, 0x480),      # AVX-512: ZMM_Hi256
                    7: (0x400, 0x680)}      # AVX-512: Hi16_ZMM
AVX = 1 << 28                    # leaf 1 ECX
AVX512F = 1 << 16                # leaf 7 EBX


def xsave_size(components: int) -> int:
    """Bytes an XSAVE area needs for these components (standard format)."""
    return max([XSAVE_LEGACY_SIZE] + [size + offset for bit, (size, offset)
                                      in XSAVE_COMPONENTS.items() if components >> bit & 1])


def xsave_compacted_size(components: int) -> int:
    """Bytes an XSAVEC/XSAVES area needs for these components: packed in bit order after the
    legacy area and header (no component of this CPU asks for 64-byte alignment there)."""
    return XSAVE_LEGACY_SIZE + sum(size for bit, (size, _) in XSAVE_COMPONENTS.items()
                                   if components >> bit & 1)


def _pow2_at_least(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _cache_leaf4(level: int, kind: int, size: int, ways: int, sharing: int, cores: int,
                 inclusive: bool = False) -> tuple[int, int, int, int]:
    sets = size // (ways * CACHE_LINE)
    eax = kind | (level << 5) | (1 << 8) | ((sharing - 1) << 14) | ((_pow2_at_least(cores) - 1) << 26)
    ebx = (CACHE_LINE - 1) | (0 << 12) | ((ways - 1) << 22)
    edx = (1 << 1) if inclusive else 0
    return eax, ebx, sets - 1, edx


def _brand_words(brand: str) -> list[int]:
    raw = brand.encode().ljust(48, b"\0")
    return list(struct.unpack("<12I", raw))


def cpuid_table(p: Processor, apic_id: int) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """Every (leaf, subleaf) this CPU answers; others answer as the highest basic leaf does."""
    native = engine_features()
    threads = p.threads
    smt_shift = 1
    core_shift = (_pow2_at_least(threads)).bit_length() - 1
    signature = (p.stepping | ((p.model & 0xF) << 4) | ((p.family & 0xF) << 8)
                 | ((p.model >> 4) << 16))
    l3_ways = 11

    t: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    t[0, 0] = (0x16, *native[0, 0][1:])  # "GenuineIntel"
    _, _, ecx1, edx1 = native[1, 0]
    ebx1 = (CACHE_LINE // 8) << 8 | _pow2_at_least(threads) << 16 | (apic_id & 0xFF) << 24
    t[1, 0] = (signature, ebx1, (ecx1 & ~HYPERVISOR) | TSC_DEADLINE, edx1 | HTT)
    t[2, 0] = (0x00FEFF01, 0, 0, 0)  # descriptors: see leaf 4
    t[4, 0] = _cache_leaf4(1, 1, 32 * 1024, 8, 2, p.cores)                # L1 data
    t[4, 1] = _cache_leaf4(1, 2, 32 * 1024, 8, 2, p.cores)                # L1 instruction
    t[4, 2] = _cache_leaf4(2, 3, p.l2_per_core_kib * 1024, 16, 2, p.cores)  # L2 unified
    t[4, 3] = _cache_leaf4(3, 3, p.l3_kib * 1024, l3_ways, _pow2_at_least(threads), p.cores)
    t[4, 4] = (0, 0, 0, 0)
    t[5, 0] = (0, 0, 0, 0)
    t[6, 0] = (ARAT | LEAF6_TURBO | LEAF6_HWP, 0, LEAF6_APERFMPERF, 0)
    _, ebx7, ecx7, edx7 = native[7, 0]
    t[7, 0] = (0, ebx7 | TSC_ADJUST, ecx7, edx7)
    t[0xA, 0] = (0, 0, 0, 0)
    t[0xB, 0] = (smt_shift, 2, 0x100 | 0, apic_id)
    t[0xB, 1] = (core_shift, threads, 0x200 | 1, apic_id)
    t[0xB, 2] = (0, 0, 2, apic_id)
    xsave = native[1, 0][2] & (1 << 26)
    if xsave:
        components = 0x3                                          # x87, SSE
        components |= (1 << 2) if t[1, 0][2] & AVX else 0
        components |= 0xE0 if t[7, 0][1] & AVX512F else 0
        t[0xD, 0] = (components, XSAVE_LEGACY_SIZE, xsave_size(components), 0)
        t[0xD, 1] = (native[0xD, 1][0] & 0xF, xsave_compacted_size(components), 0, 0)
        # EAX: XSAVEOPT, XSAVEC, XGETBV1, XSAVES; ECX:EDX: no supervisor components
        for bit, (size, offset) in XSAVE_COMPONENTS.items():
            if components >> bit & 1:
                t[0xD, bit] = (size, offset, 0, 0)
    else:
        t[0xD, 0] = t[0xD, 1] = (0, 0, 0, 0)
    tsc_mhz = round(p.base_ghz * 1000)
    t[0x15, 0] = (CRYSTAL_HZ // 1_000_000, tsc_mhz, CRYSTAL_HZ, 0)  # TSC = crystal * EBX/EAX
    t[0x16, 0] = (tsc_mhz, round(p.turbo_ghz * 1000), BUS_MHZ, 0)
    t[0x80000000, 0] = (0x80000008, 0, 0, 0)
    t[0x80000001, 0] = (0, 0, *native[0x80000001, 0][2:])
    brand = _brand_words(p.brand_string)
    for i in range(3):
        t[0x80000002 + i, 0] = tuple(brand[4 * i:4 * i + 4])
    t[0x80000005, 0] = (0, 0, 0, 0)
    t[0x80000006, 0] = (0, 0, (p.l2_per_core_kib << 16) | (0x8 << 12) | CACHE_LINE, 0)
    t[0x80000007, 0] = (0, 0, 0, INVARIANT_TSC)
    t[0x80000008, 0] = (VIRTUAL_ADDRESS_BITS << 8 | PHYSICAL_ADDRESS_BITS, 0, 0, 0)
    return t


SUBLEAF_LEAVES = frozenset({4, 7, 0xB, 0xD})


def lookup(table, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    key = (leaf, subleaf if leaf in SUBLEAF_LEAVES else 0)
    if key in table:
        return table[key]
    if leaf in SUBLEAF_LEAVES:
        return (0, 0, 0, table[0xB, 0][3]) if leaf == 0xB else (0, 0, 0, 0)
    if leaf >= 0x80000000:
        return (0, 0, 0, 0) if leaf <= 0x80000008 else table[0x16, 0]
    return table[0x16, 0]  # beyond the maximum basic leaf: as the highest basic leaf
