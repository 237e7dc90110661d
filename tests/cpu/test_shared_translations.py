"""The machine's one set of translations (the engine's translate-all.c): every vCPU runs the
blocks any of them translated, and a code buffer run full is flushed under them.

Four CPUs each run a chain of 4,096 distinct blocks several times, on one host thread and on
two, with the shared buffer cut to 256 KiB (IMACPRO_TRANSLATION_BUFFER_KIB, read when the
engines join the machine's code map): the chain does not fit, so every pass fills the buffer
and the engines flush it under the others many times. Each CPU's sum must be exact, and the
engines must report one set of blocks, smaller than the chain.
"""

import pytest

from test_host_threads import CPUS, every_cpu_counts, run_counting

CHAIN_BLOCKS = 4096
PASSES = 6

CHAIN = every_cpu_counts(r"""
    xor %eax, %eax
    mov $LOOP_COUNT, %r12
1:  call chain
    dec %r12
    jnz 1b
    lea sums(%rip), %rsi
    mov %rax, (%rsi, %r13, 8)
""", "".join(f"""
    mov sums + {8 * i}(%rip), %rax
    PRINT cpu{i}
""" for i in range(CPUS)), r"""
.align 64
sums: .fill 8, 8, 0
.text
chain:                              # rax += 0 + 1 + ... + (CHAIN_BLOCKS - 1), a block each
.set i, 0
.rept CHAIN_BLOCKS
    add $i, %rax
    jmp 2f
2:
.set i, i + 1
.endr
    ret
""").replace("CHAIN_BLOCKS", str(CHAIN_BLOCKS))


@pytest.mark.parametrize("host_threads", [1, 2])
def test_a_full_code_buffer_is_flushed_under_running_cpus(host_threads, monkeypatch):
    monkeypatch.setenv("IMACPRO_TRANSLATION_BUFFER_KIB", "256")
    monkeypatch.delenv("IMACPRO_OWN_TRANSLATIONS", raising=False)
    machines = []
    sums = run_counting(CHAIN, PASSES, host_threads, tuple(f"cpu{i}" for i in range(CPUS)),
                        machines=machines)
    assert sums == {f"cpu{i}": PASSES * CHAIN_BLOCKS * (CHAIN_BLOCKS - 1) // 2
                    for i in range(CPUS)}
    blocks = {vcpu.engine.blocks() for vcpu in machines[0].vcpus}
    assert len(blocks) == 1 and 0 < blocks.pop() < CHAIN_BLOCKS
