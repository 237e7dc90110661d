"""CPUID: the configured Xeon W-21xxB's identity and topology, and honest feature flags."""

import struct

import pytest

from baremetal import run_program
from imacpro.catalog import configure
from imacpro.cpu import cpuid

# Each claimed feature flag → an instruction (or control bit) that needs it.
FEATURE_PROBES = {
    # name: (leaf, register, bit, asm that #UDs without the feature)
    "sse3": (1, "ecx", 0, "addsubpd %xmm0, %xmm1"),
    "pclmulqdq": (1, "ecx", 1, "pclmulqdq $0, %xmm0, %xmm1"),
    "ssse3": (1, "ecx", 9, "pshufb %xmm0, %xmm1"),
    "cx16": (1, "ecx", 13, "lea scratch(%rip), %rdi; cmpxchg16b (%rdi)"),
    "sse41": (1, "ecx", 19, "pmaxsd %xmm0, %xmm1"),
    "sse42": (1, "ecx", 20, "crc32 %eax, %ebx"),
    "movbe": (1, "ecx", 22, "movbe scratch(%rip), %eax"),
    "popcnt": (1, "ecx", 23, "popcnt %eax, %ebx"),
    "aes": (1, "ecx", 25, "aesenc %xmm0, %xmm1"),
    "xsave": (1, "ecx", 26, "mov %cr4, %rax; or $0x40000, %rax; mov %rax, %cr4; "
                            "xor %ecx, %ecx; xgetbv"),
    "rdrand": (1, "ecx", 30, "rdrand %eax"),
    "pcid": (1, "ecx", 17, "mov %cr4, %rax; or $0x20000, %rax; mov %rax, %cr4"),
    "cmov": (1, "edx", 15, "cmovz %eax, %ebx"),
    "mmx": (1, "edx", 23, "paddb %mm0, %mm1"),
    "fxsr": (1, "edx", 24, "lea scratch(%rip), %rdi; and $-16, %rdi; fxsave (%rdi)"),
    "sse2": (1, "edx", 26, "paddq %xmm0, %xmm1"),
    "clflush": (1, "edx", 19, "clflush scratch(%rip)"),
    "fsgsbase": (7, "ebx", 0, "mov %cr4, %rax; or $0x10000, %rax; mov %rax, %cr4; "
                              "rdfsbase %rax"),
    "bmi1": (7, "ebx", 3, "andn %eax, %ebx, %ecx"),
    "bmi2": (7, "ebx", 8, "pdep %eax, %ebx, %ecx"),
    "invpcid": (7, "ebx", 10, "push $0; push $0; mov $2, %eax; invpcid (%rsp), %rax; "
                              "add $16, %rsp"),
    "adx": (7, "ebx", 19, "adcx %eax, %ebx"),
    "smap": (7, "ebx", 20, "stac; clac"),
    "clflushopt": (7, "ebx", 23, "clflushopt scratch(%rip)"),
    "clwb": (7, "ebx", 24, "clwb scratch(%rip)"),
    "pku": (7, "ecx", 3, "mov %cr4, %rax; or $0x400000, %rax; mov %rax, %cr4; "
                         "xor %ecx, %ecx; rdpkru"),
    "avx": (1, "ecx", 28, "vaddps %ymm0, %ymm1, %ymm2"),
    "fma": (1, "ecx", 12, "vfmadd231ps %ymm0, %ymm1, %ymm2"),
    "f16c": (1, "ecx", 29, "vcvtph2ps %xmm0, %ymm1"),
    "avx2": (7, "ebx", 5, "vpaddd %ymm0, %ymm1, %ymm2"),
    "avx512f": (7, "ebx", 16, "vpaddd %zmm0, %zmm1, %zmm2{%k1}"),
    "avx512dq": (7, "ebx", 17, "vpmullq %zmm0, %zmm1, %zmm2"),
    "avx512cd": (7, "ebx", 28, "vplzcntd %zmm0, %zmm1"),
    "avx512bw": (7, "ebx", 30, "vpaddb %zmm0, %zmm1, %zmm2"),
    "avx512vl": (7, "ebx", 31, "vpaddd %ymm16, %ymm17, %ymm18"),
    "lahf": (0x80000001, "ecx", 0, "lahf"),
    "rdtscp": (0x80000001, "edx", 27, "rdtscp"),
}
# Later vector extensions, which the Xeon W-2100B does not have: #UD.
NOT_CLAIMED = {"avx512vbmi": "vpermb %zmm0, %zmm1, %zmm2", "vaes": "vaesenc %ymm0, %ymm1, %ymm2",
               "gfni": "gf2p8mulb %xmm0, %xmm1", "avx512vnni": "vpdpbusd %zmm0, %zmm1, %zmm2"}
REGISTERS = {"eax": 0, "ebx": 1, "ecx": 2, "edx": 3}


def test_identity_and_topology_of_each_sku():
    for cores, brand in ((8, "Intel(R) Xeon(R) W-2140B CPU @ 3.20GHz"),
                         (18, "Intel(R) Xeon(R) W-2191B CPU @ 2.30GHz")):
        p = configure(cpu=cores).processor
        t = cpuid.cpuid_table(p, apic_id=5)
        _, ebx, ecx, edx = t[0, 0]
        assert struct.pack("<3I", ebx, edx, ecx) == b"GenuineIntel"
        eax = t[1, 0][0]
        family, model, stepping = (eax >> 8) & 0xF, ((eax >> 4) & 0xF) | ((eax >> 12) & 0xF0), eax & 0xF
        assert (family, model, stepping) == (6, 85, 4)
        assert t[1, 0][1] >> 24 == 5                       # initial APIC ID
        assert not t[1, 0][2] & (1 << 31)                  # no hypervisor bit
        words = [w for leaf in (0x80000002, 0x80000003, 0x80000004) for w in t[leaf, 0]]
        assert struct.pack("<12I", *words).rstrip(b"\0").decode() == brand
        assert t[0xB, 0][1] == 2 and t[0xB, 1][1] == 2 * cores   # threads per core, per package
        assert t[0xB, 1][3] == 5
        l3 = t[4, 3]
        size = ((l3[1] >> 22) + 1) * ((l3[1] & 0xFFF) + 1) * (l3[2] + 1)
        assert size == p.l3_kib * 1024
        assert t[0x16, 0][:2] == (round(p.base_ghz * 1000), round(p.turbo_ghz * 1000))
        crystal = t[0x15, 0]
        assert crystal[2] * crystal[1] // crystal[0] == round(p.base_ghz * 1e9)
        assert t[0x80000007, 0][3] & (1 << 8)              # invariant TSC


def _claimed(table, leaf, register, bit):
    return bool(table[leaf, 0][REGISTERS[register]] >> bit & 1)


def test_every_claimed_feature_executes_and_later_ones_do_not():
    table = cpuid.cpuid_table(configure(cpu=8).processor, apic_id=0)
    claimed = {name: probe for name, probe in FEATURE_PROBES.items() if _claimed(table, *probe[:3])}
    missing = set(FEATURE_PROBES) - set(claimed)
    assert not missing, f"expected the engine to provide {missing}"
    probes = [(name, probe[3]) for name, probe in claimed.items()] + list(NOT_CLAIMED.items())
    body = r"""
main:
    call setup_gdt
    GATE 6, h6
    mov %cr0, %rax              # SSE on: clear EM, set MP; CR4.OSFXSR, OSXMMEXCPT
    and $~4, %rax
    or $2, %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $0x40600, %rax           # and OSXSAVE, with XCR0 enabling the AVX and AVX-512 state
    mov %rax, %cr4
    xor %ecx, %ecx
    mov $0xe7, %eax
    xor %edx, %edx
    xsetbv
""" + "".join(f'    TRY {name}, "{insn}"\n' for name, insn in probes) + r"""
    jmp finish
    RESUME_HANDLER 6, 0
.data
.align 16
resume: .quad 0
vector: .quad 0
.align 64
scratch: .fill 64, 8, 0
"""
    values, output, _, result = run_program(body)
    assert "DONE" in output, (result, output)
    for name in claimed:
        assert int(values[name], 16) == 0, f"{name} is claimed but raised #UD"
    for name in NOT_CLAIMED:
        assert int(values[name], 16) == 6, f"{name} is not claimed but executed"


@pytest.mark.parametrize("feature", cpuid.LEFT_OUT)
def test_left_out_features_are_documented(feature):
    from pathlib import Path
    doc = (Path(__file__).parents[2] / "docs" / "CPU.md").read_text()
    assert feature in doc


def test_leaf_0xd_lists_the_vector_state_and_its_size_follows_xcr0():
    """Leaf 0xD as the real W-21xxB has it: x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM, each
    at its standard-format offset; subleaf 0's EBX is the area XCR0's components need."""
    body = r"""
.macro LEAF_D sub, name
    mov $0xd, %eax
    mov $\sub, %ecx
    cpuid
    mov %rax, %r8
    mov %rbx, %r9
    mov %rcx, %r10
    PRINT \name\()_eax, %r8
    PRINT \name\()_ebx, %r9
    PRINT \name\()_ecx, %r10
.endm
.macro XCR0 value
    xor %ecx, %ecx
    mov $\value, %eax
    xor %edx, %edx
    xsetbv
.endm
main:
    call setup_gdt
    mov %cr4, %rax
    or $0x40600, %rax
    mov %rax, %cr4
    LEAF_D 0, x87
    XCR0 0x7
    LEAF_D 0, avx
    XCR0 0xe7
    LEAF_D 0, all
    LEAF_D 2, ymm
    LEAF_D 5, opmask
    LEAF_D 6, zmm_hi256
    LEAF_D 7, hi16_zmm
    jmp finish
"""
    values, output, _, result = run_program(body)
    assert "DONE" in output, (result, output)
    v = {key: int(value, 16) for key, value in values.items()}
    assert v["x87_eax"] == v["all_eax"] == 0xE7
    assert (v["x87_ebx"], v["avx_ebx"], v["all_ebx"]) == (0x240, 0x340, 0xA80)
    assert v["x87_ecx"] == v["all_ecx"] == 0xA80
    assert [(v[f"{c}_eax"], v[f"{c}_ebx"]) for c in ("ymm", "opmask", "zmm_hi256", "hi16_zmm")] \
        == [(256, 576), (64, 1088), (512, 1152), (1024, 1664)]
