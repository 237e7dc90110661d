"""A translated block of hundreds of vector instructions (Linux's AES-GCM and SHA code has
runs this long) translates and computes right.

The vector unit's translator once left two TCG temporaries behind per instruction; this TCG
frees them only when told, so a block of more than about 250 vector instructions ran past the
context's 512 temporaries and wrote over what followed: the emulator crashed (SIGSEGV in
tcg_emit_op) when Debian's kernel loaded aesni_intel on the first boot with udev.
"""

from baremetal import run_program

RUN = 600   # longer than a block (512 instructions at most): two blocks, both long

LONG_BLOCK = r"""
main:
    mov %cr4, %rax                  # SSE and the AVX state on: OSFXSR, OSXSAVE; XCR0 = 7
    or $0x40200, %rax
    mov %rax, %cr4
    xor %ecx, %ecx
    mov $7, %eax
    xor %edx, %edx
    xsetbv
    mov $1, %eax
    vmovq %rax, %xmm1
    vpbroadcastq %xmm1, %ymm1       # 1 in every lane
    vpxor %ymm0, %ymm0, %ymm0
.rept RUN
    vpaddq %ymm1, %ymm0, %ymm0
.endr
    vextracti128 $1, %ymm0, %xmm2
    vmovq %xmm2, %rax
    PRINT lane2
    jmp finish
""".replace("RUN", str(RUN))


def test_a_block_of_hundreds_of_vector_instructions_runs():
    values, output, _, result = run_program(LONG_BLOCK)
    assert "DONE" in output, (result, output)
    assert int(values["lane2"], 16) == RUN
