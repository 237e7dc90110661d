/*
 * Tasks keep their AVX-512 state apart. Several processes, all on CPU 0, each load ZMM0-31
 * and k1-k7 with values of their own, give the CPU away (sched_yield) and read the registers
 * back, thousands of times; a timer signal whose handler overwrites every vector and opmask
 * register arrives in between. Any value that changed is a context-switch or signal-frame
 * bug in the kernel's view of the XSAVE state, i.e. in the CPU's XSAVE/XRSTOR.
 *
 * Built static (gcc -O2 -static); prints "vector-tasks OK" or the first difference.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATE_BYTES (32 * 64 + 7 * 8)
#define TASKS 4
#define ROUNDS 3000

static uint8_t want[STATE_BYTES] __attribute__((aligned(64)));
static uint8_t got[STATE_BYTES] __attribute__((aligned(64)));
static uint8_t junk[STATE_BYTES] __attribute__((aligned(64)));

#define EACH_ZMM ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24," \
                 "25,26,27,28,29,30,31\n"
#define EACH_K ".irp i,1,2,3,4,5,6,7\n"

/* Load the registers from `in`, yield the CPU (a system call preserves them), store them to
 * `out`: one asm statement, so the compiler's own code cannot touch a register in between. */
static void load_yield_store(const uint8_t *in, uint8_t *out)
{
    long nr = SYS_sched_yield;
    asm volatile(EACH_ZMM "vmovdqu64 \\i*64(%1), %%zmm\\i\n.endr\n"
                 EACH_K "kmovq 2048+(\\i-1)*8(%1), %%k\\i\n.endr\n"
                 "syscall\n"
                 EACH_ZMM "vmovdqu64 %%zmm\\i, \\i*64(%2)\n.endr\n"
                 EACH_K "kmovq %%k\\i, 2048+(\\i-1)*8(%2)\n.endr\n"
                 : "+a"(nr) : "r"(in), "r"(out) : "rcx", "r11", "memory");
}

/* The timer's handler: every register overwritten (the kernel restores them on return). */
static void clobber(int sig)
{
    (void)sig;
    asm volatile(EACH_ZMM "vmovdqu64 \\i*64(%0), %%zmm\\i\n.endr\n"
                 EACH_K "kmovq 2048+(\\i-1)*8(%0), %%k\\i\n.endr\n"
                 : : "r"(junk) : "memory");
}

static int task(unsigned seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < STATE_BYTES; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            want[i] = (uint8_t)x;
        }
        load_yield_store(want, got);
        if (memcmp(want, got, STATE_BYTES)) {
            for (int i = 0; i < STATE_BYTES; i++) {
                if (want[i] != got[i]) {
                    printf("task %u round %d: byte %d (%s%d) is %02x, not %02x\n", seed, round,
                           i, i < 2048 ? "zmm" : "k", i < 2048 ? i / 64 : (i - 2048) / 8 + 1,
                           got[i], want[i]);
                    break;
                }
            }
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    cpu_set_t cpu0;
    struct itimerval every_ms = { { 0, 1000 }, { 0, 1000 } };
    int failed = 0;

    memset(junk, 0xa5, sizeof junk);
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    for (unsigned t = 0; t < TASKS; t++) {
        if (fork() == 0) {
            sched_setaffinity(0, sizeof cpu0, &cpu0);
            signal(SIGALRM, clobber);
            setitimer(ITIMER_REAL, &every_ms, NULL);
            _exit(task(t));
        }
    }
    for (unsigned t = 0; t < TASKS; t++) {
        int status;
        wait(&status);
        failed |= !WIFEXITED(status) || WEXITSTATUS(status);
    }
    puts(failed ? "vector-tasks FAILED" : "vector-tasks OK");
    return failed;
}
