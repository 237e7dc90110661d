/*
 * bench/nvme.py's random-read workload, run in the guest: JOBS processes each read COUNT
 * 4 KiB blocks with O_DIRECT (one request in flight per process, so JOBS is the queue depth)
 * at pseudo-random 4 KiB-aligned offsets within the first SPAN MiB of DEVICE. The parent
 * times the whole run with CLOCK_MONOTONIC (the guest's clock follows the host's) and prints
 *
 *     RANDREAD jobs=J reads=N ns=T
 *
 * and exits 0, or prints the first failed read and exits 1. busybox, the guest's only other
 * program, has no random-access reader: `dd skip=` would start a process per block.
 *
 * Built on the host (bench/nvme.py: cc -static -O2) and added to the guest's initramfs as
 * /bin/randread. Usage: randread DEVICE SPAN_MIB COUNT JOBS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64: the same offsets in both machines for the same job */
static uint64_t next(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static int job(const char *device, uint64_t blocks, long count, long id)
{
    int fd = open(device, O_RDONLY | O_DIRECT);
    void *buffer;
    if (fd < 0 || posix_memalign(&buffer, BLOCK, BLOCK) != 0) {
        perror(device);
        return 1;
    }
    uint64_t state = 0x9e3779b97f4a7c15u * (uint64_t)(id + 1);
    for (long i = 0; i < count; i++) {
        off_t at = (off_t)(next(&state) % blocks) * BLOCK;
        if (pread(fd, buffer, BLOCK, at) != BLOCK) {
            fprintf(stderr, "randread: read at %lld failed\n", (long long)at);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: randread DEVICE SPAN_MIB COUNT JOBS\n");
        return 2;
    }
    const char *device = argv[1];
    uint64_t blocks = (uint64_t)atol(argv[2]) * (1 << 20) / BLOCK;
    long count = atol(argv[3]), jobs = atol(argv[4]);
    if (blocks == 0 || count <= 0 || jobs <= 0) {
        fprintf(stderr, "randread: SPAN_MIB, COUNT and JOBS must be positive\n");
        return 2;
    }
    uint64_t start = now_ns();
    for (long id = 0; id < jobs; id++) {
        pid_t pid = fork();
        if (pid == 0) {
            _exit(job(device, blocks, count, id));
        }
        if (pid < 0) {
            perror("fork");
            return 1;
        }
    }
    int failed = 0, status;
    while (wait(&status) > 0) {
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    uint64_t elapsed = now_ns() - start;
    if (failed) {
        return 1;
    }
    printf("RANDREAD jobs=%ld reads=%ld ns=%llu\n", jobs, jobs * count,
           (unsigned long long)elapsed);
    return 0;
}
