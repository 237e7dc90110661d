/* vecref: run ONE x86 instruction on the host CPU with a given register and memory state.

   The reference side of the vector-instruction differential tests (tests/cpu/vecharness.py,
   which compiles this file into its cache and calls it through ctypes).

   vecref_init(code_base, data_base, data_pages, mode, info)
       maps the code page (RWX) and the data area, both at fixed addresses when the host lets
       us (MAP_FIXED_NOREPLACE), so that the instruction runs at the same address as on the
       engine and RIP-relative operands reach the same bytes. The data area is
       [guard page][data_pages pages][guard page], the guards PROT_NONE, so a page-crossing
       access faults identically on both sides. `mode` picks how much vector state is loaded
       and stored (the host must have it: checked with CPUID and XGETBV, else -1):
           0  XMM0-15                    (movdqu)
           1  YMM0-15                    (vmovdqu)
           2  ZMM0-31 and k0-k7 16-bit   (vmovdqu64, kmovw: AVX-512F without BW)
           3  ZMM0-31 and k0-k7 64-bit   (vmovdqu64, kmovq: AVX-512BW)
       Plain loads/stores rather than XRSTOR/XSAVE: they are quick, need no XSAVE-area
       layout, and leave every other piece of state (x87, the XINUSE bits) alone.

   vecref_run(code, len, state, mem_in, mem_out, result)
       copies the instruction so that it ends at code_base + CODE_END_OFFSET, followed by an
       absolute jump to the epilogue; loads `state` (vectors, k, MXCSR, RFLAGS, the fifteen
       general registers - never RSP, which stays ours), jumps to the instruction, and stores
       the same state back into `state`. SIGILL, SIGSEGV, SIGBUS, SIGFPE and SIGTRAP raised by
       the instruction are caught (sigsetjmp/siglongjmp): `result` gets the signal, si_code,
       si_addr, the trap number and error code from the signal frame, and `state` gets the
       registers at the fault, taken from the signal frame (general registers from the
       gregs, vector state from its XSAVE image). The host's MXCSR is restored afterwards,
       and the previous signal handlers (Python's faulthandler) are put back.

   Not thread-safe: one run at a time per process (the code page and jump buffer are global).
*/

#define _GNU_SOURCE
#include <cpuid.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096
#define CODE_END_OFFSET 0x800 /* the instruction ends here; the engine stops here too */

/* The state block shared with Python (offsets are part of the interface). */
#define ST_ZMM 0      /* 32 x 64 bytes, little-endian */
#define ST_K 2048     /* 8 x u64 */
#define ST_GPR 2112   /* 16 x u64 in encoding order: rax rcx rdx rbx (rsp) rbp rsi rdi r8-r15 */
#define ST_RFLAGS 2240
#define ST_MXCSR 2248
#define ST_SIZE 2256

struct vecref_state {
    uint8_t zmm[32][64];
    uint64_t k[8];
    uint64_t gpr[16];
    uint64_t rflags;
    uint32_t mxcsr;
    uint32_t pad;
};
_Static_assert(offsetof(struct vecref_state, k) == ST_K, "k");
_Static_assert(offsetof(struct vecref_state, gpr) == ST_GPR, "gpr");
_Static_assert(offsetof(struct vecref_state, rflags) == ST_RFLAGS, "rflags");
_Static_assert(offsetof(struct vecref_state, mxcsr) == ST_MXCSR, "mxcsr");
_Static_assert(sizeof(struct vecref_state) == ST_SIZE, "size");

struct vecref_result {
    int32_t signal;     /* 0: the instruction completed */
    int32_t code;       /* si_code */
    uint64_t addr;      /* si_addr */
    uint64_t trapno;    /* the exception vector, from the signal frame */
    uint64_t err;       /* its error code */
    uint64_t rip;       /* RIP at the fault */
    int32_t in_code;    /* the fault was at the instruction (else: a harness bug) */
    int32_t pad;
};

struct vecref_info {
    uint64_t code_base;  /* where the code page landed */
    uint64_t data_base;  /* the first data page (a guard page precedes it) */
    uint64_t data_size;
    uint32_t host_mxcsr;
    int32_t xsave_frame; /* signal frames carry an XSAVE image */
};

/* ---- the state switch, in assembly ------------------------------------------------------ */

#define HIDDEN __attribute__((visibility("hidden")))
HIDDEN void *vecref_code_ptr; /* where the instruction starts */
HIDDEN void *vecref_load_vec, *vecref_save_vec, *vecref_load_k, *vecref_save_k;
HIDDEN uint32_t vecref_host_mxcsr = 0x1f80;

void vecref_enter(struct vecref_state *st);
void vecref_exit(void);
void vecref_load_xmm(void), vecref_save_xmm(void);
void vecref_load_ymm(void), vecref_save_ymm(void);
void vecref_load_zmm(void), vecref_save_zmm(void);
void vecref_load_kw(void), vecref_save_kw(void);
void vecref_load_kq(void), vecref_save_kq(void);
void vecref_nothing(void);

#define S_(x) #x
#define S(x) S_(x)

__asm__(
    ".text\n"
    /* Vector and k helpers: %rax = the state block; they touch nothing else. */
    "vecref_load_xmm:\n"
    "  .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  movdqu \\n*64(%rax), %xmm\\n\n"
    "  .endr\n"
    "  ret\n"
    "vecref_save_xmm:\n"
    "  .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  movdqu %xmm\\n, \\n*64(%rax)\n"
    "  .endr\n"
    "  ret\n"
    "vecref_load_ymm:\n"
    "  .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  vmovdqu \\n*64(%rax), %ymm\\n\n"
    "  .endr\n"
    "  ret\n"
    "vecref_save_ymm:\n"
    "  .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  vmovdqu %ymm\\n, \\n*64(%rax)\n"
    "  .endr\n"
    "  vzeroupper\n"
    "  ret\n"
    "vecref_load_zmm:\n"
    "  .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "  vmovdqu64 \\n*64(%rax), %zmm\\n\n"
    "  .endr\n"
    "  ret\n"
    "vecref_save_zmm:\n"
    "  .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "  vmovdqu64 %zmm\\n, \\n*64(%rax)\n"
    "  .endr\n"
    "  vzeroupper\n"
    "  ret\n"
    "vecref_load_kw:\n"
    "  .irp n,0,1,2,3,4,5,6,7\n"
    "  kmovw " S(ST_K) "+\\n*8(%rax), %k\\n\n"
    "  .endr\n"
    "  ret\n"
    "vecref_save_kw:\n"
    "  .irp n,0,1,2,3,4,5,6,7\n"
    "  movq $0, " S(ST_K) "+\\n*8(%rax)\n"
    "  kmovw %k\\n, " S(ST_K) "+\\n*8(%rax)\n"
    "  .endr\n"
    "  ret\n"
    "vecref_load_kq:\n"
    "  .irp n,0,1,2,3,4,5,6,7\n"
    "  kmovq " S(ST_K) "+\\n*8(%rax), %k\\n\n"
    "  .endr\n"
    "  ret\n"
    "vecref_save_kq:\n"
    "  .irp n,0,1,2,3,4,5,6,7\n"
    "  kmovq %k\\n, " S(ST_K) "+\\n*8(%rax)\n"
    "  .endr\n"
    "  ret\n"
    "vecref_nothing:\n"
    "  ret\n"

    /* vecref_enter(st): save the C callee-saved registers, keep st on the stack, load the
       state and jump to the instruction. It comes back through vecref_exit. */
    ".globl vecref_enter\n"
    ".hidden vecref_enter\n"
    "vecref_enter:\n"
    "  push %rbp\n  push %rbx\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  push %rdi\n"
    "  mov %rdi, %rax\n"
    "  call *vecref_load_vec(%rip)\n"
    "  call *vecref_load_k(%rip)\n"
    "  ldmxcsr " S(ST_MXCSR) "(%rax)\n"
    "  pushq " S(ST_RFLAGS) "(%rax)\n"
    "  popfq\n"
    "  mov " S(ST_GPR) "+1*8(%rax), %rcx\n"
    "  mov " S(ST_GPR) "+2*8(%rax), %rdx\n"
    "  mov " S(ST_GPR) "+3*8(%rax), %rbx\n"
    "  mov " S(ST_GPR) "+5*8(%rax), %rbp\n"
    "  mov " S(ST_GPR) "+6*8(%rax), %rsi\n"
    "  mov " S(ST_GPR) "+7*8(%rax), %rdi\n"
    "  .irp n,8,9,10,11,12,13,14,15\n"
    "  mov " S(ST_GPR) "+\\n*8(%rax), %r\\n\n"
    "  .endr\n"
    "  mov " S(ST_GPR) "+0*8(%rax), %rax\n"
    "  jmp *vecref_code_ptr(%rip)\n"

    /* Reached by the absolute jump that follows the instruction. */
    ".globl vecref_exit\n"
    ".hidden vecref_exit\n"
    "vecref_exit:\n"
    "  pushfq\n"
    "  push %rax\n"
    "  mov 16(%rsp), %rax\n"           /* the state block */
    "  mov %rcx, " S(ST_GPR) "+1*8(%rax)\n"
    "  mov %rdx, " S(ST_GPR) "+2*8(%rax)\n"
    "  mov %rbx, " S(ST_GPR) "+3*8(%rax)\n"
    "  mov %rbp, " S(ST_GPR) "+5*8(%rax)\n"
    "  mov %rsi, " S(ST_GPR) "+6*8(%rax)\n"
    "  mov %rdi, " S(ST_GPR) "+7*8(%rax)\n"
    "  .irp n,8,9,10,11,12,13,14,15\n"
    "  mov %r\\n, " S(ST_GPR) "+\\n*8(%rax)\n"
    "  .endr\n"
    "  popq " S(ST_GPR) "+0*8(%rax)\n"
    "  popq " S(ST_RFLAGS) "(%rax)\n"
    "  stmxcsr " S(ST_MXCSR) "(%rax)\n"
    "  call *vecref_save_k(%rip)\n"
    "  call *vecref_save_vec(%rip)\n"
    "  ldmxcsr vecref_host_mxcsr(%rip)\n"
    "  cld\n"
    "  pop %rdi\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbx\n  pop %rbp\n"
    "  ret\n");

/* ---- host capabilities ---------------------------------------------------------------- */

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Can this host load and store the state `mode` asks for? */
static int mode_supported(int mode)
{
    unsigned a, b, c, d;
    if (mode == 0)
        return 1;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)) || !(c & (1u << 28)))
        return 0; /* OSXSAVE, AVX */
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6)
        return 0;
    if (mode == 1)
        return 1;
    if (__get_cpuid_max(0, 0) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if ((xcr0 & 0xe0) != 0xe0 || !(b & (1u << 16)))
        return 0; /* opmask, ZMM_Hi256, Hi16_ZMM; AVX512F */
    return mode == 2 || (b & (1u << 30)); /* AVX512BW for kmovq */
}

/* ---- the signal side ---------------------------------------------------------------- */

static sigjmp_buf fault_jump;
static volatile sig_atomic_t running;
static struct vecref_result *fault_result;
static struct vecref_state *fault_state;
static uint8_t *code_page;
static int vec_mode;

/* XSAVE standard-format offsets of components 2 (YMM_Hi128), 5 (opmask), 6 (ZMM_Hi256),
   7 (Hi16_ZMM), from CPUID leaf 0xD. */
static uint32_t xoff[8];

static void le_copy(uint8_t *dst, const uint8_t *src, size_t n, int present)
{
    if (present)
        memcpy(dst, src, n);
    else
        memset(dst, 0, n); /* a component in its init state is not written: zeros */
}

/* The registers at the fault, from the signal frame. */
static void state_from_frame(struct vecref_state *st, const ucontext_t *uc)
{
    static const int greg[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, -1, REG_RBP,
                                 REG_RSI, REG_RDI, REG_R8, REG_R9, REG_R10, REG_R11,
                                 REG_R12, REG_R13, REG_R14, REG_R15};
    for (int i = 0; i < 16; i++)
        if (greg[i] >= 0)
            st->gpr[i] = (uint64_t)uc->uc_mcontext.gregs[greg[i]];
    st->rflags = (uint64_t)uc->uc_mcontext.gregs[REG_EFL];
    const uint8_t *fx = (const uint8_t *)uc->uc_mcontext.fpregs;
    if (!fx)
        return;
    memcpy(&st->mxcsr, fx + 24, 4);
    uint32_t magic;
    memcpy(&magic, fx + 464, 4);
    uint64_t bv = 2; /* an FXSAVE-only frame: the XMM registers are all there */
    int xsave = magic == 0x46505853u; /* FP_XSTATE_MAGIC1 */
    if (xsave)
        memcpy(&bv, fx + 512, 8);
    for (int i = 0; i < 16; i++)
        le_copy(st->zmm[i], fx + 160 + 16 * i, 16, bv & 2);
    if (!xsave || vec_mode < 1)
        return;
    for (int i = 0; i < 16; i++)
        le_copy(st->zmm[i] + 16, fx + xoff[2] + 16 * i, 16, bv & 4);
    if (vec_mode < 2)
        return;
    for (int i = 0; i < 8; i++)
        le_copy((uint8_t *)&st->k[i], fx + xoff[5] + 8 * i, 8, bv & 0x20);
    if (vec_mode == 2)
        for (int i = 0; i < 8; i++)
            st->k[i] &= 0xffff;
    for (int i = 0; i < 16; i++)
        le_copy(st->zmm[i] + 32, fx + xoff[6] + 32 * i, 32, bv & 0x40);
    for (int i = 0; i < 16; i++)
        le_copy(st->zmm[16 + i], fx + xoff[7] + 64 * i, 64, bv & 0x80);
}

static void on_fault(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    if (!running) { /* not ours: let the default action happen on return */
        signal(sig, SIG_DFL);
        return;
    }
    running = 0;
    struct vecref_result *r = fault_result;
    uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    r->signal = sig;
    r->code = si->si_code;
    r->addr = (uint64_t)si->si_addr;
    r->trapno = (uint64_t)uc->uc_mcontext.gregs[REG_TRAPNO];
    r->err = (uint64_t)uc->uc_mcontext.gregs[REG_ERR];
    r->rip = rip;
    r->in_code = rip >= (uint64_t)code_page && rip < (uint64_t)code_page + PAGE;
    if (r->in_code)
        state_from_frame(fault_state, uc);
    siglongjmp(fault_jump, 1);
}

static const int caught[5] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP};
#define NCAUGHT 5

/* ---- the interface -------------------------------------------------------------------- */

static uint8_t *data_area;
static size_t data_size;

static void *map_at(uint64_t want, size_t size, int prot)
{
    void *p = MAP_FAILED;
    if (want)
        p = mmap((void *)want, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                 -1, 0);
    if (p != MAP_FAILED && (uint64_t)p != want) { /* an old kernel took it as a hint */
        munmap(p, size);
        p = MAP_FAILED;
    }
    if (p == MAP_FAILED)
        p = mmap(NULL, size, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int vecref_init(uint64_t code_base, uint64_t data_base, uint32_t data_pages, int mode,
                struct vecref_info *info)
{
    if (code_page)
        return -2; /* once per process */
    if (mode < 0 || mode > 3 || !mode_supported(mode))
        return -1;
    code_page = map_at(code_base, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC);
    uint8_t *area = map_at(data_base ? data_base - PAGE : 0, (data_pages + 2) * (size_t)PAGE,
                           PROT_NONE);
    if (!code_page || !area)
        return -3;
    data_area = area + PAGE;
    data_size = (size_t)data_pages * PAGE;
    if (mprotect(data_area, data_size, PROT_READ | PROT_WRITE))
        return -3;
    memset(code_page, 0xcc, PAGE); /* int3 everywhere else */
    static const uint8_t jmp_abs[6] = {0xff, 0x25, 0, 0, 0, 0}; /* jmp *0(%rip) */
    uint64_t exit_addr = (uint64_t)&vecref_exit;
    memcpy(code_page + CODE_END_OFFSET, jmp_abs, 6);
    memcpy(code_page + CODE_END_OFFSET + 6, &exit_addr, 8);

    vec_mode = mode;
    void *loads[4] = {vecref_load_xmm, vecref_load_ymm, vecref_load_zmm, vecref_load_zmm};
    void *saves[4] = {vecref_save_xmm, vecref_save_ymm, vecref_save_zmm, vecref_save_zmm};
    vecref_load_vec = loads[mode];
    vecref_save_vec = saves[mode];
    vecref_load_k = mode == 3 ? (void *)vecref_load_kq
                    : mode == 2 ? (void *)vecref_load_kw : (void *)vecref_nothing;
    vecref_save_k = mode == 3 ? (void *)vecref_save_kq
                    : mode == 2 ? (void *)vecref_save_kw : (void *)vecref_nothing;
    if (mode >= 1) {
        unsigned a, b, c, d;
        for (int i = 2; i < 8; i++) {
            __cpuid_count(0xd, i, a, b, c, d);
            xoff[i] = b;
        }
    }
    uint32_t mx;
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    vecref_host_mxcsr = mx;

    info->code_base = (uint64_t)code_page;
    info->data_base = (uint64_t)data_area;
    info->data_size = data_size;
    info->host_mxcsr = mx;
    info->xsave_frame = mode >= 1;
    return 0;
}

int vecref_run(const uint8_t *code, uint32_t len, struct vecref_state *st,
               const uint8_t *mem_in, uint8_t *mem_out, struct vecref_result *res)
{
    if (!code_page || len == 0 || len > 64)
        return -1;
    uint8_t *start = code_page + CODE_END_OFFSET - len;
    memset(code_page + CODE_END_OFFSET - 64, 0xcc, 64);
    memcpy(start, code, len);
    vecref_code_ptr = start;
    memcpy(data_area, mem_in, data_size);
    memset(res, 0, sizeof *res);

    struct sigaction sa, old[NCAUGHT];
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    fault_result = res;
    fault_state = st;
    for (int i = 0; i < NCAUGHT; i++)
        sigaction(caught[i], &sa, &old[i]);

    if (sigsetjmp(fault_jump, 1) == 0) {
        running = 1;
        vecref_enter(st);
        running = 0;
    } else {
        uint32_t mx = vecref_host_mxcsr;
        __asm__ volatile("ldmxcsr %0" : : "m"(mx));
        if (vec_mode >= 1)
            __asm__ volatile("vzeroupper");
        __asm__ volatile("cld");
    }
    for (int i = 0; i < NCAUGHT; i++)
        sigaction(caught[i], &old[i], NULL);
    memcpy(mem_out, data_area, data_size);
    return 0;
}
