"""The vector unit's state in a whole machine (exceptions through the guest's IDT): XSAVE and
XRSTOR of the AVX and AVX-512 components at their standard offsets, XSAVEC/XSAVES and both
forms of XRSTOR/XRSTORS with the compacted format and their header checks, XSETBV's rules, #UD when
CR4/XCR0 do not enable an instruction's state, #NM under CR0.TS, alignment #GP, the reset
values of XCR0 and MXCSR, MXCSR's reserved bits (#GP) and LOCK on vector instructions (#UD)."""

import random

from baremetal import allow_user_access, run_program

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

REGISTER_MACROS = r"""
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
"""

ROUND_TRIP = REGISTER_MACROS + r"""
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


TRAP_HANDLERS = r"""
    RESUME_HANDLER 6, 0
    RESUME_HANDLER 7, 0
    RESUME_HANDLER 13, 1
.data
.align 64
buffer: .fill 16, 8, 0
resume: .quad 0
vector: .quad 0
"""

FAULTS = r"""
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
""" + TRAP_HANDLERS


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


COMPACTED = REGISTER_MACROS + r"""
.macro ALL                          # EDX:EAX: every component
    mov $-1, %eax
    mov $-1, %edx
.endm
.macro XRSTOR_AT area, form=xrstor
    ALL
    mov $\area, %rdi
    \form (%rdi)
.endm
.macro TRY_IN_USER name, insn        # as TRY, the vector kept for the kernel to print
    lea 1f(%rip), %rax
    mov %rax, resume(%rip)
    movq $0, vector(%rip)
    \insn
1:  mov vector(%rip), %rax
    mov %rax, \name(%rip)
.endm
main:
""" + ENABLE + r"""
    GATE 6, h6
    GATE 7, h7
    GATE 13, h13
    mov $0x80, %edi                 # int $0x80 (DPL 3): the way back from ring 3
    lea back_to_kernel(%rip), %rsi
    xor %edx, %edx
    mov $3, %ecx
    mov $0xe, %r8d
    call set_gate
    mov $0xd, %eax
    mov $1, %ecx
    cpuid
    PRINT cpuid_d1_eax
    PRINT cpuid_d1_ebx, %rbx

    LOAD_ALL 0x210000
    mov $-1, %eax
    mov $-1, %edx
    mov $0x200000, %rdi
    xsavec (%rdi)                   # every component, compacted
    mov $0x250000, %rdi
    xsaves (%rdi)
    mov $0xc0, %eax                 # ZMM_Hi256 and Hi16_ZMM alone: they move down to 576
    xor %edx, %edx
    mov $0x240000, %rdi
    xsavec (%rdi)
    CLEAR_ALL
    XRSTOR_AT 0x200000
    STORE_ALL 0x220000

    LOAD_ALL 0x210000
    push $0x7f80                    # MXCSR: round toward zero
    ldmxcsr (%rsp)
    pop %rax
    XRSTOR_AT 0x240000              # components 0-5 absent from XSTATE_BV: initial state
    STORE_ALL 0x230000
    push %rax
    stmxcsr (%rsp)
    pop %rax
    PRINT mxcsr_initial
    CLEAR_ALL
    XRSTOR_AT 0x250000, xrstors
    STORE_ALL 0x260000

    mov $0xda0, %ecx                # IA32_XSS: no supervisor components on this CPU
    rdmsr
    PRINT xss
    TRY wrmsr_xss, "mov $0xda0, %ecx; mov $0x100, %eax; xor %edx, %edx; wrmsr"

    mov $0x200000, %rdi
    orq $0x100, 0x200208            # XCOMP_BV naming a component XCR0 does not enable
    TRY xcomp_not_enabled, "ALL; xrstor (%rdi)"
    xorq $0x104, 0x200208           # XSTATE_BV naming AVX, XCOMP_BV not
    TRY xstate_outside_xcomp, "ALL; xrstor (%rdi)"
    orq $0x4, 0x200208
    movq $1, 0x200238               # header bytes 63:16 must be zero
    TRY header_reserved, "ALL; xrstor (%rdi)"
    movq $0, 0x200238
    vpxord %zmm0, %zmm0, %zmm0
    movl $0x10000, 0x200018         # MXCSR with a reserved bit: #GP before any register moves
    TRY mxcsr_reserved, "ALL; xrstor (%rdi)"
    vmovq %xmm0, %rax
    PRINT xmm0_after_fault
    movl $0x1f80, 0x200018
    TRY compacted_ok, "ALL; xrstor (%rdi)"
    mov $0x270000, %rdi
    xsave (%rdi)                    # a standard-format area
    TRY xrstors_standard, "ALL; xrstors (%rdi)"
    TRY xrstor_standard, "ALL; xrstor (%rdi)"
    mov $0x200020, %rdi
    TRY xsavec_misaligned, "ALL; xsavec (%rdi)"
    mov $0x200000, %rdi
    mov %cr0, %rax
    or $8, %rax                     # CR0.TS
    mov %rax, %cr0
    TRY xsavec_ts, "ALL; xsavec (%rdi)"
    TRY xsave_ts, "ALL; xsave (%rdi)"
    TRY xrstor_ts, "ALL; xrstor (%rdi)"
    clts

    mov $0x280000, %rdi             # an area of its own for ring 3
    TO_RING3 user
user:
    TRY_IN_USER xsaves_user, "ALL; xsaves (%rdi)"
    TRY_IN_USER xrstors_user, "ALL; xrstors (%rdi)"
    TRY_IN_USER xsavec_user, "ALL; xsavec (%rdi)"
    TRY_IN_USER xrstor_user, "ALL; xrstor (%rdi)"
    int $0x80
back_to_kernel:
    mov kernel_rsp(%rip), %rsp
    .irp name, xsaves_user, xrstors_user, xsavec_user, xrstor_user
    mov \name(%rip), %rax
    PRINT \name
    .endr
    xor %ecx, %ecx                  # the compacted size follows XCR0
    mov $7, %eax
    xor %edx, %edx
    xsetbv
    mov $0xd, %eax
    mov $1, %ecx
    cpuid
    PRINT cpuid_d1_ebx_avx, %rbx
    jmp finish
""" + TRAP_HANDLERS + r"""
xsaves_user: .quad 0
xrstors_user: .quad 0
xsavec_user: .quad 0
xrstor_user: .quad 0
"""


def test_xsavec_xsaves_and_the_compacted_xrstor_follow_the_sdm():
    rng = random.Random(1310)
    pattern = _pattern(rng)
    def setup(machine):
        machine.ram.write(PATTERN, pattern)
        allow_user_access(machine, 4 << 20)     # the program, its stacks and the areas

    values, output, machine, result = run_program(COMPACTED, setup=setup)
    assert "DONE" in output, (result, output)
    v = {key: int(value, 16) for key, value in values.items() if isinstance(value, str)}
    zmm = [pattern[64 * i:64 * i + 64] for i in range(32)]
    k = [pattern[2048 + 8 * i:2056 + 8 * i] for i in range(8)]

    assert v["cpuid_d1_eax"] == 0xF              # XSAVEOPT, XSAVEC, XGETBV1, XSAVES
    assert v["cpuid_d1_ebx"] == 2432 and v["cpuid_d1_ebx_avx"] == 576 + 256

    full = machine.ram.read(AREA, 0xA80)
    assert int.from_bytes(full[512:520], "little") == 0xE7
    assert int.from_bytes(full[520:528], "little") == (1 << 63) | 0xE7
    for i in range(16):
        assert full[160 + 16 * i:176 + 16 * i] == zmm[i][:16], f"xmm{i}"
        assert full[576 + 16 * i:592 + 16 * i] == zmm[i][16:32], f"YMM_Hi128 {i}"
        assert full[896 + 32 * i:928 + 32 * i] == zmm[i][32:], f"ZMM_Hi256 {i}"
        assert full[1408 + 64 * i:1472 + 64 * i] == zmm[16 + i], f"Hi16_ZMM {i}"
    for i in range(8):
        assert full[832 + 8 * i:840 + 8 * i] == k[i], f"k{i}"
    assert full[2432:] == bytes(len(full) - 2432), "XSAVEC wrote past the compacted area"
    assert machine.ram.read(0x250000, 2432) == full[:2432], "XSAVES differs from XSAVEC"

    partial = machine.ram.read(0x240000, 2432)
    assert int.from_bytes(partial[512:520], "little") == 0xC0
    assert int.from_bytes(partial[520:528], "little") == (1 << 63) | 0xC0
    assert partial[:512] == bytes(512), "legacy region written without x87/SSE requested"
    for i in range(16):
        assert partial[576 + 32 * i:608 + 32 * i] == zmm[i][32:], f"ZMM_Hi256 {i}"
        assert partial[1088 + 64 * i:1152 + 64 * i] == zmm[16 + i], f"Hi16_ZMM {i}"

    assert machine.ram.read(DUMP, len(pattern)) == pattern        # compacted XRSTOR
    assert machine.ram.read(0x260000, len(pattern)) == pattern    # XRSTORS
    after = machine.ram.read(DUMP_INIT, len(pattern))
    for i in range(16):
        assert after[64 * i:64 * i + 64] == bytes(32) + zmm[i][32:], f"zmm{i}"
    for i in range(16, 32):
        assert after[64 * i:64 * i + 64] == zmm[i], f"zmm{i}"
    assert after[2048:] == bytes(64), "opmask registers"
    assert v["mxcsr_initial"] == 0x1F80       # compacted form: SSE state initial, MXCSR too

    assert v["xss"] == 0 and v["xmm0_after_fault"] == 0
    expected = {
        "wrmsr_xss": 13, "xcomp_not_enabled": 13, "xstate_outside_xcomp": 13,
        "header_reserved": 13, "mxcsr_reserved": 13, "compacted_ok": 0,
        "xrstors_standard": 13, "xrstor_standard": 0, "xsavec_misaligned": 13,
        "xsavec_ts": 7, "xsave_ts": 7, "xrstor_ts": 7,
        "xsaves_user": 13, "xrstors_user": 13, "xsavec_user": 0, "xrstor_user": 0,
    }
    assert {key: v[key] for key in expected} == expected
