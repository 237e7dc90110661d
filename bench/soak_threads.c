/*
 * The soak's multi-threaded guest program (bench/soak.py builds it on the host and types it
 * into the guest): THREADS threads of one process that, for SECONDS seconds, map, touch and
 * unmap memory (each munmap shoots down the TLBs of the other CPUs running the process's
 * threads: IPIs), count on one shared word with LOCK XADD, and yield. Prints
 * "threads: N rounds, counter C" and exits 0 when the counter adds up, 1 when it does not.
 *
 * No C library (the guest has none, only busybox): raw Linux system calls, threads made with
 * clone(CLONE_VM | CLONE_THREAD ...). Build: cc -static -nostdlib -O2 -fno-stack-protector.
 */

typedef unsigned long u64;

#define THREADS 8
#define STACK_SIZE 65536
#define MAP_BYTES 65536

enum { SYS_write = 1, SYS_mmap = 9, SYS_munmap = 11, SYS_sched_yield = 24,
       SYS_nanosleep = 35, SYS_clone = 56, SYS_exit = 60, SYS_clock_gettime = 228,
       SYS_exit_group = 231 };

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static long sys3(long n, long a, long b, long c) { return sys6(n, a, b, c, 0, 0, 0); }

static u64 counter, rounds, finished;
static long seconds = 10;
static char stacks[THREADS][STACK_SIZE] __attribute__((aligned(16)));

static u64 now_ns(void)
{
    long ts[2];
    sys3(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)ts, 0);
    return (u64)ts[0] * 1000000000u + (u64)ts[1];
}

static void worker(long id)
{
    u64 end = now_ns() + (u64)seconds * 1000000000u, mine = 0;
    while (now_ns() < end) {
        char *p = (char *)sys6(SYS_mmap, 0, MAP_BYTES, 3 /* RW */, 0x22 /* PRIVATE|ANON */,
                               -1, 0);
        if ((long)p < 0 && (long)p > -4096) {
            break;
        }
        for (long at = 0; at < MAP_BYTES; at += 4096) {
            p[at] = (char)id;
        }
        sys3(SYS_munmap, (long)p, MAP_BYTES, 0);
        __atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST);
        mine++;
        sys3(SYS_sched_yield, 0, 0, 0);
    }
    __atomic_fetch_add(&rounds, mine, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
}

/* A thread on `stack_top`: the child pops the function and its argument from its new stack,
 * runs it and exits (the thread only: SYS_exit, not exit_group). */
static long spawn(void (*fn)(long), long arg, char *stack_top)
{
    long *sp = (long *)stack_top;
    long ret;
    *--sp = arg;
    *--sp = (long)fn;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "pop %%rax\n\t"
                     "pop %%rdi\n\t"
                     "call *%%rax\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n"
                     "1:"
                     : "=a"(ret)
                     : "a"(SYS_clone), "D"(0x50f00 /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM */),
                       "S"(sp), "d"(0)
                     : "rcx", "r11", "r10", "r8", "memory");
    return ret;
}

static char *decimal(char *end, u64 value)
{
    do {
        *--end = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return end;
}

static void say(const char *text, long length) { sys3(SYS_write, 1, (long)text, length); }

void __attribute__((used)) start_c(long *stack)
{
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char buf[32], *text;
    if (argc > 1) {
        seconds = 0;
        for (char *c = argv[1]; *c >= '0' && *c <= '9'; c++) {
            seconds = seconds * 10 + (*c - '0');
        }
    }
    for (long i = 0; i < THREADS; i++) {
        if (spawn(worker, i, stacks[i] + STACK_SIZE) < 0) {
            say("threads: clone failed\n", 22);
            sys3(SYS_exit_group, 2, 0, 0);
        }
    }
    while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) < THREADS) {
        long pause[2] = {0, 10000000};
        sys3(SYS_nanosleep, (long)pause, 0, 0);
    }
    say("threads: ", 9);
    text = decimal(buf + sizeof buf, rounds);
    say(text, buf + sizeof buf - text);
    say(" rounds, counter ", 17);
    text = decimal(buf + sizeof buf, counter);
    say(text, buf + sizeof buf - text);
    say("\n", 1);
    sys3(SYS_exit_group, counter == rounds ? 0 : 1, 0, 0);
}

__asm__(".globl _start\n"
        "_start:\n\t"
        "mov %rsp, %rdi\n\t"
        "and $-16, %rsp\n\t"
        "call start_c\n\t"
        "hlt\n");
