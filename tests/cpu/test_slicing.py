"""Time slices end at instruction boundaries: no instruction is ever executed twice.

Stock Unicorn checks for a stop after every memory access and restarts the instruction, so a
slice ending between the store of a read-modify-write and its end re-executed the store (this
corrupted the Linux decompressor's output). With the patch, stops happen at block starts only.
"""

from baremetal import run_program

ITERATIONS = 3_000_000

RMW = r"""
main:
    mov $ITERATIONS, %rcx
    xor %rbx, %rbx
1:  incq counter(%rip)              # read-modify-write on memory
    addq $3, sum(%rip)
    xchg %rbx, swapped(%rip)        # memory <-> register: twice would undo it
    inc %rbx
    dec %rcx
    jnz 1b
    mov counter(%rip), %rax
    PRINT counter
    mov sum(%rip), %rax
    PRINT sum
    jmp finish
.data
counter: .quad 0
sum: .quad 0
swapped: .quad 0
""".replace("ITERATIONS", str(ITERATIONS))


def test_short_slices_never_repeat_an_instruction():
    values, output, _, result = run_program(RMW, slice_us=50, timeout_s=120)
    assert "DONE" in output, (result, output)
    assert int(values["counter"], 16) == ITERATIONS
    assert int(values["sum"], 16) == 3 * ITERATIONS
