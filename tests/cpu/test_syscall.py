"""SYSCALL/SYSRET round trips from CPL 3, with SWAPGS, as Linux's entry code uses them."""

from baremetal import run_program
from test_exceptions import map_test_pages

ROUND_TRIPS = 1000

SYSCALLS = r"""
.set ROUND_TRIPS, %d
main:
    call setup_gdt
    mov $0x80, %%edi                 # int $0x80 (DPL 3): back to the kernel at the end
    lea back_to_kernel(%%rip), %%rsi
    xor %%edx, %%edx
    mov $3, %%ecx
    mov $0xe, %%r8d
    call set_gate
    mov $0xC0000080, %%ecx           # EFER.SCE
    rdmsr
    or $1, %%eax
    wrmsr
    mov $0xC0000081, %%ecx           # STAR: kernel CS 0x08 (SS 0x10), SYSRET base 0x10
    xor %%eax, %%eax
    mov $0x00100008, %%edx
    wrmsr
    mov $0xC0000082, %%ecx           # LSTAR
    lea syscall_entry(%%rip), %%rax
    mov %%rax, %%rdx
    shr $32, %%rdx
    wrmsr
    mov $0xC0000084, %%ecx           # FMASK: clear IF, TF, DF, AC on entry
    mov $0x40700, %%eax
    xor %%edx, %%edx
    wrmsr
    mov $0xC0000102, %%ecx           # KERNEL_GS_BASE: the per-CPU area SWAPGS brings in
    lea percpu(%%rip), %%rax
    mov %%rax, %%rdx
    shr $32, %%rdx
    wrmsr
    mov %%rsp, percpu+8(%%rip)
    TO_RING3 user, 0x402             # user RFLAGS: DF set (FMASK must clear it in the kernel)

user:
    mov $ROUND_TRIPS, %%r12
    xor %%r13, %%r13                 # round trips that returned the right answer
1:  mov %%r12, %%rdi
    syscall
after_syscall:
    lea (%%r12, %%r12), %%rdx
    cmp %%rdx, %%rax
    jne 2f
    mov %%cs, %%dx
    cmp $0x23, %%dx
    jne 2f
    mov %%ss, %%dx
    cmp $0x1b, %%dx
    jne 2f
    inc %%r13
2:  dec %%r12
    jnz 1b
    pushfq
    pop %%r14                        # user RFLAGS after SYSRET (from R11)
    int $0x80

syscall_entry:
    swapgs
    mov %%rsp, %%gs:0                # user stack
    mov %%gs:8, %%rsp                # kernel stack
    incq calls(%%rip)
    mov %%rcx, last_rcx(%%rip)
    mov %%r11, last_r11(%%rip)
    pushfq
    pop %%rax
    mov %%rax, kernel_rflags(%%rip)
    mov %%cs, %%ax
    mov %%ax, kernel_cs(%%rip)
    mov %%ss, %%ax
    mov %%ax, kernel_ss(%%rip)
    lea (%%rdi, %%rdi), %%rax        # the "system call": return 2 * rdi
    mov %%gs:0, %%rsp
    swapgs
    sysretq

back_to_kernel:
    mov kernel_rsp(%%rip), %%rsp
    cld                              # the user's DF came through int $0x80
    mov calls(%%rip), %%rax
    PRINT calls
    mov %%r13, %%rax
    PRINT good
    mov last_rcx(%%rip), %%rax
    PRINT rcx
    lea after_syscall(%%rip), %%rax
    PRINT expected_rcx
    mov last_r11(%%rip), %%rax
    PRINT r11
    mov %%r14, %%rax
    PRINT user_rflags
    mov kernel_rflags(%%rip), %%rax
    PRINT kernel_rflags
    movzwq kernel_cs(%%rip), %%rax
    PRINT kernel_cs
    movzwq kernel_ss(%%rip), %%rax
    PRINT kernel_ss
    jmp finish
.data
.align 8
percpu: .quad 0, 0
calls: .quad 0
last_rcx: .quad 0
last_r11: .quad 0
kernel_rflags: .quad 0
kernel_cs: .word 0
kernel_ss: .word 0
""" % ROUND_TRIPS


def test_syscall_sysret_round_trips_from_cpl3():
    values, output, _, result = run_program(SYSCALLS, setup=map_test_pages)
    assert "DONE" in output, (result, output)
    v = {k: int(val, 16) for k, val in values.items()}
    assert v["calls"] == ROUND_TRIPS
    assert v["good"] == ROUND_TRIPS            # right result, CS=0x23, SS=0x1b after SYSRET
    assert v["rcx"] == v["expected_rcx"]       # RCX = the instruction after SYSCALL
    assert v["r11"] & 0x400                    # R11 = user RFLAGS (DF set)
    assert v["user_rflags"] & 0x400            # restored by SYSRET
    assert not v["kernel_rflags"] & 0x400      # FMASK cleared DF in the kernel ...
    assert not v["kernel_rflags"] & 0x200      # ... and IF
    assert v["kernel_cs"] == 0x08 and v["kernel_ss"] == 0x10
