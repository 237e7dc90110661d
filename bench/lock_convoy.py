#!/usr/bin/env python3
"""A contended spinlock's handoffs: every AP takes one ticket lock in a loop, imacpro beside
QEMU, one run.

Linux does this when udev loads modules on every CPU at once: each module load changes the
attributes of its pages one page at a time under `cpa_lock`, a plain spinlock, thousands of
times with preemption off. A waiter spins on PAUSE until the lock is handed to it, and it is
handed on in the order the waiters queued; each AP also takes its local APIC timer's tick
every 4 ms of guest time, as Linux's HZ=250 does, so waiters take ticks while they wait. The
figures are the handoffs in --seconds of guest time (the BSP's ticks; both machines' guest
time follows the host's), a second's worth, and in brackets those of the AP that had fewest:
an AP that waits seconds for its turns is what Linux reports as a soft lockup.

One image serves both (bench/multiboot.py). QEMU runs with its multi-threaded TCG (one host
thread per vCPU), imacpro with --host-threads (default: the CLI's, the host's cores).
`--order loop-start` lets imacpro's spinners look again in the order their spin loops began,
as before the engine said when a CPU queued (docs/PERFORMANCE.md has both).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import multiboot  # noqa: E402
import qemu  # noqa: E402
from multiboot import PROGRAM_BASE  # noqa: E402
from baremetal import KERNEL_STACK, assemble, parse  # noqa: E402
from test_wakeups import AP_START_CODE, PING_PONG  # noqa: E402

from imacpro.catalog import configure  # noqa: E402
from imacpro.clock import Clock  # noqa: E402
from imacpro.firmware import long_mode  # noqa: E402
from imacpro.host_threads import default_count  # noqa: E402
from imacpro.machine import Machine  # noqa: E402

# 4 ms of the local APIC timer at divide-by-1: imacpro's counts at 25 MHz (the Xeon W's
# crystal), QEMU's at 1 GHz.
TICK_COUNTS = {"imacpro": 100_000, "qemu": 4_000_000}

CONVOY = PING_PONG[:PING_PONG.index("main:")] + r"""
.set TRAMPOLINE, 0x8000
.set APS, AP_COUNT
main:
    call setup_gdt
    GATE 0x40, bsp_tick
    GATE 0x41, tick
    APIC_WRITE 0xf0, $0x1ff
    START_APS ap_main
1:  pause                           # every AP up
    cmpq $APS, started(%rip)
    jb 1b
    APIC_WRITE 0x3e0, $0xb          # divide by 1
    APIC_WRITE 0x320, $0x20040      # periodic, vector 0x40: the BSP counts guest time
    APIC_WRITE 0x380, $TICK_COUNT
    movq $1, go(%rip)
2:  sti                             # sleep through the run
    hlt
    cli
    cmpq $TICK_LIMIT, bsp_ticks(%rip)
    jb 2b
    movq $1, done(%rip)
3:  sti                             # the queue drains: every AP stops
    hlt
    cli
    cmpq $APS, stopped(%rip)
    jb 3b
    xor %eax, %eax                  # the handoffs, and the fewest any AP had
    mov $-1, %rcx
    mov $1, %ebx
4:  lea got(%rip), %rsi
    mov (%rsi, %rbx, 8), %rdx
    add %rdx, %rax
    cmp %rdx, %rcx
    cmova %rdx, %rcx
    inc %ebx
    cmp $APS, %ebx
    jbe 4b
    PRINT handoffs
    mov %rcx, %rax
    PRINT fewest
    jmp finish

ap_main:
    AP_SETUP
    AP_APIC_ON                      # this CPU's APIC ID, its index, in %ebx
    APIC_WRITE 0x3e0, $0xb
    APIC_WRITE 0x320, $0x20041      # periodic, vector 0x41: Linux's tick
    APIC_WRITE 0x380, $TICK_COUNT
    lock incq started(%rip)
1:  pause                           # all together
    cmpq $0, go(%rip)
    je 1b
    sti
2:  cmpq $0, done(%rip)
    jne 7f
    mov $1, %eax                    # take a ticket
    lock xadd %rax, next_ticket(%rip)
3:  cmp now_serving(%rip), %rax     # spin until it is served
    je 4f
    pause
    jmp 3b
4:  mov $50, %ecx                   # the critical section
5:  dec %ecx
    jnz 5b
    incq now_serving(%rip)          # unlock
    lea got(%rip), %rsi
    incq (%rsi, %rbx, 8)
    mov $100, %ecx                  # the work between two pages
6:  dec %ecx
    jnz 6b
    jmp 2b
7:  APIC_WRITE 0x320, $0x10041      # the tick off: done
    lock incq stopped(%rip)
8:  cli
    hlt
    jmp 8b

bsp_tick:
    incq bsp_ticks(%rip)
tick:
    push %rax
    push %rdx
    APIC_WRITE 0xb0, $0
    pop %rdx
    pop %rax
    iretq
""" + AP_START_CODE + r"""
.data
next_slot: .long 0
.align 8
started: .quad 0
go: .quad 0
done: .quad 0
stopped: .quad 0
bsp_ticks: .quad 0
next_ticket: .quad 0
now_serving: .quad 0
got: .fill 64, 8, 0
.align 4096
ap_stacks: .fill 4096 * 64, 1, 0
"""


def handoffs(output: bytes) -> tuple[int, int] | None:
    """The handoffs the program reported, and the fewest any AP had."""
    values = parse(output.decode(errors="replace"))
    if not isinstance(values.get("handoffs"), str) or not isinstance(values.get("fewest"), str):
        return None
    return int(values["handoffs"], 16), int(values["fewest"], 16)


def program(cpus: int, ticks: int, target: str) -> str:
    return (CONVOY.replace("AP_COUNT", str(cpus - 1)).replace("TICK_LIMIT", str(ticks))
            .replace("TICK_COUNT", str(TICK_COUNTS[target])))


def run_qemu(cpus: int, ticks: int, workdir: Path) -> tuple[int, int]:
    body = assemble(program(cpus, ticks, "qemu"), PROGRAM_BASE)
    image = multiboot.image(body, KERNEL_STACK, workdir, "convoy.bin")
    argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", qemu.QEMU_CPU,
            "-smp", str(cpus), "-machine", "q35", "-m", "512", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot", "-kernel", str(image)]
    output = qemu.run_until(argv, lambda seen: b"DONE" in seen, 600)
    found = handoffs(output)
    if found is None:
        raise SystemExit("QEMU: the program did not report its handoffs: "
                         + output[-500:].decode(errors="replace"))
    return found


def run_imacpro(cpus: int, ticks: int, host_threads: int) -> tuple[int, int]:
    body = assemble(program(cpus, ticks, "imacpro"), PROGRAM_BASE)
    serial = bytearray()
    machine = Machine(configure(cpu=18), serial_output=serial.extend, cpus=cpus,
                      clock=Clock(realtime=True), idle="sleep", host_threads=host_threads)
    machine.ram.write(PROGRAM_BASE, body)
    long_mode.enter(machine.bsp.uc, machine.ram, rip=PROGRAM_BASE, rsp=KERNEL_STACK)
    machine.run(timeout_s=600, stop=qemu.printed(serial, b"DONE"))
    machine.close()
    found = handoffs(bytes(serial))
    if found is None:
        raise SystemExit("imacpro: the program did not finish: "
                         + serial[-500:].decode(errors="replace"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=36)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="guest seconds the APs take the lock for (the BSP's ticks)")
    parser.add_argument("--host-threads", type=int, default=None,
                        help="imacpro's (default: the host's cores, as the CLI's auto)")
    parser.add_argument("--order", choices=["queued", "loop-start"], default="queued",
                        help="the order imacpro's spinners look again in")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not 2 <= args.cpus <= 64 or args.seconds <= 0:
        parser.error("--cpus must be 2 to 64 and --seconds more than 0")
    qemu.require()
    threads = args.host_threads or default_count(args.cpus)
    if args.order == "loop-start":
        Machine.spinners = lambda self, after: sorted(
            (cpu for cpu in self.vcpus if cpu.spinning and cpu is not after),
            key=lambda cpu: cpu.spinning_since)
    ticks = max(1, round(args.seconds / 0.004))
    with tempfile.TemporaryDirectory() as tmp:
        qemu_total, qemu_fewest = run_qemu(args.cpus, ticks, Path(tmp))
    ours_total, ours_fewest = run_imacpro(args.cpus, ticks, threads)
    seconds = ticks * 0.004
    qemu_rate, ours_rate = qemu_total / seconds, ours_total / seconds
    ratio = f"{ours_rate / qemu_rate:.2f}×" if qemu_rate else "—"
    if args.markdown:
        print(f"| {args.cpus} | {threads} | {args.order} | {qemu_rate:,.0f} "
              f"({qemu_fewest / seconds:,.0f}) | {ours_rate:,.0f} ({ours_fewest / seconds:,.0f}) "
              f"| {ratio} |")
    else:
        print(f"lock handoffs per guest second ({args.cpus} vCPUs, imacpro on {threads} host "
              f"threads, spinners in {args.order} order; in brackets the AP that had fewest): "
              f"QEMU {qemu_rate:,.0f} ({qemu_fewest / seconds:,.0f}), imacpro {ours_rate:,.0f} "
              f"({ours_fewest / seconds:,.0f}), {ratio} QEMU")


if __name__ == "__main__":
    main()
