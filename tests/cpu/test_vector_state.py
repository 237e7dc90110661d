"""The vector unit's state in a whole machine (exceptions through the guest's IDT): XSAVE and
XRSTOR of the AVX and AVX-512 components at their standard offsets, XSETBV's rules, #UD when
CR4/XCR0 do not enable an instruction's state, #NM under CR0.TS, alignment #GP, the reset
values of XCR0 and MXCSR, MXCSR's reserved bits (#GP) and LOCK on vector instructions (#UD)."""

import random

from baremetal import run_program

AREA = 0x200000          # XSAVE area (64-byte aligned)
PATTERN = 0x210000       # ZMM0-31 (32 x 64 bytes) then k0-k7 (8 x 8 bytes)
DUMP = 0x220000          # the registers after XRSTOR of the whole area
DUMP_INIT = 0x230000     # after XRSTOR with the AVX-512 components absent from XSTATE_BV

ENABLE = r"""
    call setup_gdt
    mov %cr4, %rax
    or $0x40600, %rax               # OSFXSR, OSXMMEXCPT, OSXSAVE
    mov %rax, %cr4
    xor %ecx, %ecx
    mov $0xe7, %eax                 # x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
    xor %edx, %edx
    xsetbv
"""

ROUND_TRIP = r"""
.macro EACH_ZMM insn:vararg
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    \insn
    .endr
.endm
.macro LOAD_ALL base
    mov $\base, %rsi
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqu64 \i*64(%rsi), %zmm\i
    .endr
    .irp i, 0,1,2,3,4,5,6,7
    kmovq 2048+\i*8(%rsi), %k\i
    .endr
.endm
.macro STORE_ALL base
    mov $\base, %rdi
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vmovdqu64 %zmm\i, \i*64(%rdi)
    .endr
    .irp i, 0,1,2,3,4,5,6,7
    kmovq %k\i, 2048+\i*8(%rdi)
    .endr
.endm
.macro CLEAR_ALL
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vpxord %zmm\i, %zmm\i, %zmm\i
    .endr
    .irp i, 0,1,2,3,4,5,6,7
    kxorq %k\i, %k\i, %k\i
    .endr
.endm
main:
""" + ENABLE + r"""
    LOAD_ALL 0x210000
    mov $-1, %eax
    mov $-1, %edx
    mov $0x200000, %rdi
    xsave (%rdi)
    mov 0x200000+512, %rax
    PRINT xstate_bv
    CLEAR_ALL
    mov $-1, %eax
    mov $-1, %edx
    xrstor (%rdi)
    STORE_ALL 0x220000

    LOAD_ALL 0x210000
    andq $~0xe0, 0x200000+512        # XSTATE_BV: opmask, ZMM_Hi256, Hi16_ZMM absent
    mov $0x200000, %rdi
    mov $-1, %eax
    mov $-1, %edx
    xrstor (%rdi)                   # they come back in their initial state: zeros
    STORE_ALL 0x230000
    jmp finish
"""


def _pattern(rng):
    return rng.randbytes(32 * 64 + 8 * 8)


def test_xsave_and_xrstor_keep_the_avx512_state_at_its_standard_offsets():
    rng = random.Random(13)
    pattern = _pattern(rng)
    values, output, machine, result = run_program(
        ROUND_TRIP, setup=lambda m: m.ram.write(PATTERN, pattern))
    assert "DONE" in output, (result, output)
    area = machine.ram.read(AREA, 0xA80)
    zmm = [pattern[64 * i:64 * i + 64] for i in range(32)]
    k = [pattern[2048 + 8 * i:2056 + 8 * i] for i in range(8)]

    assert int(values["xstate_bv"], 16) == 0xE7
    for i in range(16):
        assert area[160 + 16 * i:176 + 16 * i] == zmm[i][:16], f"xmm{i} (legacy area)"
        assert area[0x240 + 16 * i:0x250 + 16 * i] == zmm[i][16:32], f"YMM_Hi128 {i}"
        assert area[0x480 + 32 * i:0x4A0 + 32 * i] == zmm[i][32:], f"ZMM_Hi256 {i}"
    for i in range(16, 32):
        assert area[0x680 + 64 * (i - 16):0x6C0 + 64 * (i - 16)] == zmm[i], f"Hi16_ZMM {i}"
    for i in range(8):
        assert area[0x440 + 8 * i:0x448 + 8 * i] == k[i], f"opmask k{i}"

    assert machine.ram.read(DUMP, len(pattern)) == pattern      # XRSTOR brought all back

    after = machine.ram.read(DUMP_INIT, len(pattern))
    for i in range(16):                  # SSE and AVX parts restored, ZMM_Hi256 initial
        assert after[64 * i:64 * i + 64] == zmm[i][:32] + bytes(32), f"zmm{i}"
    for i in range(16, 32):
        assert after[64 * i:64 * i + 64] == bytes(64), f"zmm{i}"
    assert after[2048:] == bytes(64), "opmask registers"


FAULTS = r"""
.macro TRY name, insn                # run insn; print the vector it raised (0: none)
    lea 1f(%rip), %rax
    mov %rax, resume(%rip)
    movq $0, vector(%rip)
    \insn
1:  mov vector(%rip), %rax
    PRINT \name
.endm
.macro HANDLER vec, code
h\vec:
    .if \code
    add $8, %rsp                    # the error code
    .endif
    movq $\vec, vector(%rip)
    push %rax
    mov resume(%rip), %rax
    mov %rax, 8(%rsp)
    pop %rax
    iretq
.endm
.macro XCR0 value
    xor %ecx, %ecx
    mov $\value, %eax
    xor %edx, %edx
    xsetbv
.endm
main:
    call setup_gdt
    GATE 6, h6
    GATE 7, h7
    GATE 13, h13
    mov %cr4, %rax
    or $0x600, %rax
    mov %rax, %cr4
    TRY vex_no_osxsave, "vaddps %ymm0, %ymm1, %ymm2"
    mov %cr4, %rax
    or $0x40000, %rax
    mov %rax, %cr4
    xor %ecx, %ecx
    xgetbv
    PRINT reset_xcr0
    sub $8, %rsp
    stmxcsr (%rsp)
    pop %rax
    PRINT reset_mxcsr
    TRY vex_xcr0_sse, "vaddps %xmm0, %xmm1, %xmm2"
    TRY xsetbv_avx_without_sse, "XCR0 0x5"
    TRY xsetbv_half_avx512, "XCR0 0x27"
    TRY xsetbv_avx512_without_avx, "XCR0 0xe3"
    TRY xsetbv_avx, "XCR0 0x7"
    TRY vex_xcr0_avx, "vaddps %ymm0, %ymm1, %ymm2"
    TRY evex_xcr0_avx, "vaddps %zmm0, %zmm1, %zmm2"
    TRY kmov_xcr0_avx, "kmovw %k1, %k2"
    TRY xsetbv_avx512, "XCR0 0xe7"
    TRY evex_xcr0_avx512, "vaddps %zmm0, %zmm1, %zmm2"
    TRY kmov_xcr0_avx512, "kmovw %k1, %k2"
    lea buffer+8(%rip), %rsi
    TRY vmovaps_misaligned, "vmovaps (%rsi), %ymm3"
    TRY vmovups_misaligned, "vmovups (%rsi), %ymm3"
    TRY vmovdqa64_misaligned, "vmovdqa64 (%rsi), %zmm3"
    mov %cr0, %rax
    or $8, %rax                     # CR0.TS: the OS saves vector state lazily
    mov %rax, %cr0
    TRY vex_ts, "vaddps %ymm0, %ymm1, %ymm2"
    TRY evex_ts, "vaddps %zmm0, %zmm1, %zmm2"
    clts
    TRY after_clts, "vaddps %zmm0, %zmm1, %zmm2"
    movl $0x10000, buffer(%rip)     # MXCSR with a reserved bit set
    TRY ldmxcsr_reserved, "ldmxcsr buffer(%rip)"
    TRY vldmxcsr_reserved, "vldmxcsr buffer(%rip)"
    TRY lock_sse, ".byte 0xf0; paddd %xmm1, %xmm2"
    TRY lock_vex, ".byte 0xf0; vpaddd %xmm1, %xmm2, %xmm3"
    jmp finish
    HANDLER 6, 0
    HANDLER 7, 0
    HANDLER 13, 1
.data
.align 64
buffer: .fill 16, 8, 0
resume: .quad 0
vector: .quad 0
"""


def test_state_checks_raise_ud_nm_and_gp_as_the_sdm_orders():
    values, output, _, result = run_program(FAULTS)
    assert "DONE" in output, (result, output)
    v = {key: int(value, 16) for key, value in values.items()}
    assert v["reset_xcr0"] == 1 and v["reset_mxcsr"] == 0x1F80
    expected = {
        "vex_no_osxsave": 6, "vex_xcr0_sse": 6,
        "xsetbv_avx_without_sse": 13, "xsetbv_half_avx512": 13, "xsetbv_avx512_without_avx": 13,
        "xsetbv_avx": 0, "vex_xcr0_avx": 0, "evex_xcr0_avx": 6, "kmov_xcr0_avx": 6,
        "xsetbv_avx512": 0, "evex_xcr0_avx512": 0, "kmov_xcr0_avx512": 0,
        "vmovaps_misaligned": 13, "vmovups_misaligned": 0, "vmovdqa64_misaligned": 13,
        "vex_ts": 7, "evex_ts": 7, "after_clts": 0,
        "ldmxcsr_reserved": 13, "vldmxcsr_reserved": 13, "lock_sse": 6, "lock_vex": 6,
    }
    assert {key: v[key] for key in expected} == expected
