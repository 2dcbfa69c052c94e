/* Native helpers for bench/record_count.py (loaded with ctypes, built with cc at run time).
 *
 * Callgrind's client requests: count only the stretches measured, and dump each one apart.
 * Outside valgrind every request is a no-op.
 *
 * What the count's simulated cache misses are priced at (bench/record_count.py):
 * hop_stream_ns(bytes, evict): a cache line written where none of the destination is cached
 *   (memcpy of `bytes` from a warm source after `evict` bytes were written elsewhere), ns per
 *   64-byte line: the tap's pattern, a record appended to a buffer last touched 0.4 s before;
 * hop_chase_ns(bytes, steps): the latency of a dependent load over a random cyclic permutation
 *   of `bytes` of cache lines (TLB misses included): a read that misses, at its worst. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <valgrind/callgrind.h>

void hop_cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void hop_cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void hop_cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }

#define LINE 64
/* the memory behind p is used: its stores are not dead (freed unread, the compiler would
 * drop them) */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

double hop_chase_ns(size_t bytes, size_t steps) {
    size_t n = bytes / LINE;
    if (n < 2)
        return -1.0;
    char *mem = aligned_alloc(LINE, n * LINE);
    size_t *order = malloc(n * sizeof(size_t));
    if (mem == NULL || order == NULL) {
        free(mem);
        free(order);
        return -1.0;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    uint64_t x = 88172645463325252ull;  /* xorshift: the same permutation every time */
    for (size_t i = n - 1; i > 0; i--) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t j = (size_t)(x % (i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++)  /* one cycle through every line */
        *(void **)(mem + order[i] * LINE) = mem + order[(i + 1) % n] * LINE;
    free(order);
    void *p = mem;
    for (size_t i = 0; i < n; i++)  /* once round: the lines where the chase leaves them */
        p = *(void **)p;
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (size_t i = 0; i < steps; i++)
        p = *(void **)p;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    KEEP(p);
    free(mem);
    return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)steps;
}

static double thread_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

double hop_stream_ns(size_t bytes, size_t evict) {
    char *src = malloc(bytes), *dst = malloc(bytes), *other = malloc(evict);
    double ns = -1.0;
    if (src != NULL && dst != NULL && other != NULL && bytes >= LINE) {
        memset(src, 1, bytes);
        memset(dst, 2, bytes);  /* mapped: no page faults in the copy */
        memset(other, 3, evict);  /* dst out of every cache level this process can fill */
        memset(src, 4, bytes);  /* the source warm, as a packet the fan-out just read */
        KEEP(other);
        KEEP(src);
        double a = thread_ns();
        memcpy(dst, src, bytes);
        KEEP(dst);
        ns = (thread_ns() - a) / (double)(bytes / LINE);
    }
    free(src);
    free(dst);
    free(other);
    return ns;
}
