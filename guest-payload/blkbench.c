/*
 * blkbench: the disk workload `make bench` runs inside a Linux guest (qemu-tests'
 * disk-bench), the same one Basalt's dom0 runs on a raw disk with its `disk-bench`
 * shell command (builtin-dom0/src/block/bench.rs), so the two compare like with like:
 *
 * - sequential write: the first MIB MiB of DEVICE in 128 KiB writes, then fsync(2)
 *   (which sends the cache flush), timed together;
 * - sequential read: the same range in 128 KiB reads, each checked against what was
 *   written;
 * - random read: 4 KiB reads at 4 KiB-aligned offsets in that range, chosen by the
 *   same xorshift generator with the same seed, until 4096 reads or 3 s.
 *
 * One request in flight at a time (queue depth 1), O_DIRECT so the page cache is
 * bypassed and every request reaches the device: no drop_caches needed. Time is
 * CLOCK_MONOTONIC. DESTRUCTIVE: overwrites the first MIB MiB of DEVICE.
 *
 * usage: blkbench DEVICE MIB
 * Output, two lines: the human one, in dom0's words, and one for the harness:
 *   blkbench DEVICE: MIB MiB sequential write X MB/s, sequential read Y MB/s, 4 KiB random read Z IOPS
 *   blkbench-raw bytes=B write_ns=N read_ns=N random_reads=R random_ns=N
 * Exit status 1 with one line on stderr on any failure.
 *
 * Built statically (`gcc -static`, make's bench rule) and put into the bench-only
 * initramfs at /usr/bin/blkbench; the tests' initramfs does not carry it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The constants of builtin-dom0/src/block/bench.rs. */
#define SEQUENTIAL_REQUEST_BYTES (128u * 1024u)
#define RANDOM_READ_BYTES 4096u
#define RANDOM_READS 4096u
#define RANDOM_READ_NS 3000000000ull
#define SEED 0x9e3779b97f4a7c15ull
/* O_DIRECT buffers must be aligned to the logical block size; a page covers all. */
#define BUFFER_ALIGNMENT 4096u

static uint64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static uint64_t xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void *aligned_buffer(size_t bytes)
{
    void *buffer = NULL;
    if (posix_memalign(&buffer, BUFFER_ALIGNMENT, bytes) != 0) {
        return NULL;
    }
    return buffer;
}

/* Reads or writes exactly `bytes` at `offset` (O_DIRECT transfers are whole). */
static int transfer(int fd, int write, void *buffer, size_t bytes, off_t offset)
{
    ssize_t done = write ? pwrite(fd, buffer, bytes, offset) : pread(fd, buffer, bytes, offset);
    if (done < 0) {
        return -1;
    }
    if ((size_t)done != bytes) {
        errno = EIO;
        return -1;
    }
    return 0;
}

static double per_second(double amount, uint64_t ns)
{
    return ns == 0 ? 0.0 : amount / ((double)ns / 1e9);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: blkbench DEVICE MIB\n");
        return 2;
    }
    const char *device = argv[1];
    char *end = NULL;
    unsigned long mebibytes = strtoul(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0' || mebibytes == 0 || mebibytes > 65536) {
        fprintf(stderr, "blkbench: MIB must be 1..65536, not '%s'\n", argv[2]);
        return 2;
    }
    uint64_t requests = (uint64_t)mebibytes * 1024 * 1024 / SEQUENTIAL_REQUEST_BYTES;

    int fd = open(device, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "blkbench: open %s: %s\n", device, strerror(errno));
        return 1;
    }
    unsigned char *pattern = aligned_buffer(SEQUENTIAL_REQUEST_BYTES);
    unsigned char *buffer = aligned_buffer(SEQUENTIAL_REQUEST_BYTES);
    if (pattern == NULL || buffer == NULL) {
        fprintf(stderr, "blkbench: out of memory\n");
        return 1;
    }
    uint64_t state = SEED;
    for (size_t offset = 0; offset < SEQUENTIAL_REQUEST_BYTES; offset += 8) {
        uint64_t word = xorshift(&state);
        memcpy(pattern + offset, &word, 8);
    }

    uint64_t start = now_ns();
    for (uint64_t index = 0; index < requests; index++) {
        if (transfer(fd, 1, pattern, SEQUENTIAL_REQUEST_BYTES, (off_t)(index * SEQUENTIAL_REQUEST_BYTES)) != 0) {
            fprintf(stderr, "blkbench: write at %" PRIu64 ": %s\n", index * SEQUENTIAL_REQUEST_BYTES, strerror(errno));
            return 1;
        }
    }
    if (fsync(fd) != 0) {
        fprintf(stderr, "blkbench: fsync: %s\n", strerror(errno));
        return 1;
    }
    uint64_t write_ns = now_ns() - start;

    start = now_ns();
    for (uint64_t index = 0; index < requests; index++) {
        uint64_t offset = index * SEQUENTIAL_REQUEST_BYTES;
        if (transfer(fd, 0, buffer, SEQUENTIAL_REQUEST_BYTES, (off_t)offset) != 0) {
            fprintf(stderr, "blkbench: read at %" PRIu64 ": %s\n", offset, strerror(errno));
            return 1;
        }
        if (memcmp(buffer, pattern, SEQUENTIAL_REQUEST_BYTES) != 0) {
            fprintf(stderr, "blkbench: read at %" PRIu64 " differs from what was written\n", offset);
            return 1;
        }
    }
    uint64_t read_ns = now_ns() - start;

    uint64_t slots = requests * SEQUENTIAL_REQUEST_BYTES / RANDOM_READ_BYTES;
    uint32_t random_reads = 0;
    start = now_ns();
    while (random_reads < RANDOM_READS && now_ns() - start < RANDOM_READ_NS) {
        uint64_t offset = xorshift(&state) % slots * RANDOM_READ_BYTES;
        if (transfer(fd, 0, buffer, RANDOM_READ_BYTES, (off_t)offset) != 0) {
            fprintf(stderr, "blkbench: read at %" PRIu64 ": %s\n", offset, strerror(errno));
            return 1;
        }
        random_reads++;
    }
    uint64_t random_ns = now_ns() - start;
    close(fd);

    uint64_t bytes = requests * SEQUENTIAL_REQUEST_BYTES;
    printf("blkbench %s: %lu MiB sequential write %.1f MB/s, sequential read %.1f MB/s, 4 KiB random read %.0f IOPS\n",
           device, mebibytes, per_second((double)bytes / 1e6, write_ns), per_second((double)bytes / 1e6, read_ns),
           per_second((double)random_reads, random_ns));
    printf("blkbench-raw bytes=%" PRIu64 " write_ns=%" PRIu64 " read_ns=%" PRIu64 " random_reads=%" PRIu32
           " random_ns=%" PRIu64 "\n",
           bytes, write_ns, read_ns, random_reads, random_ns);
    return 0;
}
