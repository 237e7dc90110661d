"""VEX-encoded vector instructions: #UD until the OS enables the AVX state (CR4.OSXSAVE and
XCR0), then the right answers. The engine once ran them as their legacy SSE forms with
VEX.vvvv ignored, which computed wrong answers silently (vaddsd %xmm2,%xmm1,%xmm0 gave
xmm0 + xmm2, 2.25 for 1.5 + 2.25). The VEX-encoded BMI1/BMI2 instructions on general
registers run either way."""

import struct

from baremetal import run_program

VEX = r"""
.macro SKIP_UD length, insn:vararg  # run insn; a #UD skips it (its length in bytes)
    movq $\length, skip(%rip)
    \insn
.endm
main:
    call setup_gdt
    GATE 6, ud
    mov %cr4, %rax                  # OSFXSR: SSE on
    or $0x200, %rax
    mov %rax, %cr4

    mov $0x3ff8000000000000, %rax   # 1.5, 2.25, 0
    movq %rax, %xmm1
    mov $0x4002000000000000, %rax
    movq %rax, %xmm2
    pxor %xmm0, %xmm0
    SKIP_UD 4, vaddsd %xmm2, %xmm1, %xmm0
    movq %xmm0, %rax
    PRINT vaddsd_result
    mov uds(%rip), %rax
    PRINT uds_after_vaddsd
    SKIP_UD 5, vfmadd231ss %xmm10, %xmm12, %xmm0
    SKIP_UD 3, vzeroupper
    SKIP_UD 4, vxorpd %xmm1, %xmm1, %xmm1
    mov uds(%rip), %rax
    PRINT uds_after_four

    mov $0xf0f0, %rbx               # BMI1 andn (~rbx & rcx) and BMI2 shlx (rbx << rcx)
    mov $0xff00, %rcx
    SKIP_UD 5, andn %rcx, %rbx, %rdx
    PRINT andn, %rdx
    mov $4, %rcx
    SKIP_UD 5, shlx %rcx, %rbx, %rdx
    PRINT shlx, %rdx
    mov uds(%rip), %rax
    PRINT uds_at_end

    mov %cr4, %rax                  # the AVX state on: OSXSAVE, XCR0 = x87 | SSE | AVX
    or $0x40000, %rax
    mov %rax, %cr4
    xor %ecx, %ecx
    mov $7, %eax
    xor %edx, %edx
    xsetbv
    mov $0x3ff8000000000000, %rax   # 1.5 + 2.25
    movq %rax, %xmm1
    mov $0x4002000000000000, %rax
    movq %rax, %xmm2
    vaddsd %xmm2, %xmm1, %xmm0
    movq %xmm0, %rax
    PRINT vaddsd_enabled
    vmulsd %xmm2, %xmm1, %xmm3      # 1.5 * 2.25
    movq %xmm3, %rax
    PRINT vmulsd_enabled
    vfmadd231sd %xmm2, %xmm1, %xmm3 # 3.375 + 1.5 * 2.25
    movq %xmm3, %rax
    PRINT vfmadd_enabled
    vxorpd %xmm1, %xmm1, %xmm1
    movq %xmm1, %rax
    PRINT vxorpd_enabled
    mov uds(%rip), %rax
    PRINT uds_enabled
    jmp finish
ud:
    incq uds(%rip)
    push %rax
    mov skip(%rip), %rax
    add %rax, 8(%rsp)               # the saved RIP: past the instruction
    pop %rax
    iretq
.data
uds: .quad 0
skip: .quad 0
"""


def test_vex_vector_instructions_need_the_avx_state_then_compute_right_and_bmi_runs():
    values, output, _, result = run_program(VEX)
    assert "DONE" in output, (result, output)
    v = {k: int(x, 16) for k, x in values.items()}
    assert v["uds_after_vaddsd"] == 1 and v["vaddsd_result"] == 0   # xmm0 untouched
    assert v["uds_after_four"] == 4                 # FMA, VZEROUPPER and VXORPD too
    assert v["andn"] == ~0xF0F0 & 0xFF00 and v["shlx"] == 0xF0F0 << 4  # AT&T: dest last
    assert v["uds_at_end"] == 4
    double = lambda x: struct.unpack("<d", struct.pack("<Q", x))[0]  # noqa: E731
    assert double(v["vaddsd_enabled"]) == 3.75 and double(v["vmulsd_enabled"]) == 3.375
    assert double(v["vfmadd_enabled"]) == 6.75 and v["vxorpd_enabled"] == 0
    assert v["uds_enabled"] == 4                    # no #UD once the state is enabled
