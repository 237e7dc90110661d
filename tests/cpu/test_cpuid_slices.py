"""CPUID answers as the machine's CPU however the time slices fall.

A slice that ended just as the CPU executed CPUID (the engine's stop request already set)
once made the engine skip the machine's CPUID hook and answer itself: no TSC-deadline bit and
its own APIC ID. Linux ANDs every CPU's features into the boot CPU's, so one such answer on an
application processor at boot took the TSC-deadline timer away from the CPUs started after it,
whose timers then never fired (their CPUs slept for good: the hang of a reboot test, named by
the watchdog). Here CPUID runs 200 000 times in 20 µs slices."""

from baremetal import run_program

LOOPS = 200_000

CPUID_LOOP = r"""
main:
    xor %r12, %r12                  # answers without the TSC-deadline bit
    mov $LOOPS, %r13
1:  mov $1, %eax
    xor %ecx, %ecx
    cpuid
    bt $24, %ecx
    jc 2f
    inc %r12
2:  dec %r13
    jnz 1b
    mov %r12, %rax
    PRINT wrong_answers
    jmp finish
""".replace("$LOOPS", f"${LOOPS}")


def test_cpuid_is_the_machines_whenever_a_slice_ends():
    values, output, _, result = run_program(CPUID_LOOP, slice_us=20, timeout_s=300)
    assert "DONE" in output, (result, output)
    assert int(values["wrong_answers"], 16) == 0
