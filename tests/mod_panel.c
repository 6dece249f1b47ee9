/*
 * mod_panel.c -- a panel of task kinds for `crew compare --task` (built as
 * libmod_panel.so, loaded by test_compare_panel; never linked into a test).
 *
 * Each kernel is a crew_task_fn. Those that need to tell items apart are
 * run with --index: the argument then begins with the item's index as 8
 * bytes (uint64_t, host order). Every result depends only on the item, so
 * a correct configuration reproduces the 1-worker reference exactly.
 *
 *  panel_cpu      ~0.5 ms of a dependent xorshift chain (pure CPU)
 *  panel_tiny     ~0.2 µs of work: the per-task cost dominates
 *  panel_alloc    many malloc/free of mixed sizes (allocator-heavy)
 *  panel_share    counters of all workers on one cache line (false sharing)
 *  panel_wait     sleeps 10 ms, computes nothing (blocking waits)
 *  panel_mixed    ~0.3 ms of computing, then a 2 ms wait
 *  panel_crashy   segfaults on every 13th item, else panel_cpu's work
 *  panel_leak     leaks 1 MiB per item (written, never freed), then works
 *  panel_unsafe   a static scratch buffer: wrong results from 2 threads up
 *  panel_membw    streams over a private 16 MiB buffer (memory bandwidth)
 *  panel_bigarg   sums its whole argument (give it a big --arg @FILE)
 *  panel_skewed   item i works (i % 8 + 1) units: uneven items
 *  panel_echo     returns its argument reversed (per-item input from --args)
 */
#define _POSIX_C_SOURCE 200809L
#include <crew.h>

#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#define TASK(name)                                                                                     \
    int name(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,          \
             size_t *result_len);                                                                      \
    int name(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,          \
             size_t *result_len)

static uint64_t item_of(const void *arg, size_t len)
{
    uint64_t i = 0;
    if (len >= sizeof i)
        memcpy(&i, arg, sizeof i);
    return i;
}

static uint64_t chain(uint64_t x, uint64_t n)
{
    x |= 1;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static int put(void *result, size_t cap, size_t *len, uint64_t v)
{
    if (cap < sizeof v)
        return CREW_E2BIG;
    memcpy(result, &v, sizeof v);
    *len = sizeof v;
    return 0;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ~0.5 ms on a 2020s CPU core (a dependent step is ~6 cycles) */
#define CPU_STEPS 250000u

TASK(panel_cpu)
{
    (void)t;
    return put(result, result_cap, result_len, chain(item_of(arg, arg_len) + 7, CPU_STEPS));
}

TASK(panel_tiny)
{
    (void)t;
    return put(result, result_cap, result_len, chain(item_of(arg, arg_len) + 3, 500));
}

TASK(panel_alloc)
{
    (void)t;
    uint64_t x = item_of(arg, arg_len) * 2654435761u + 1, sum = 0;
    void *keep[64] = {0};
    for (int k = 0; k < 4000; k++) {
        x = chain(x, 3);
        size_t sz = 16 + (size_t)(x % 2048);
        int slot = (int)(x >> 40) % 64;
        free(keep[slot]);
        keep[slot] = malloc(sz);
        if (!keep[slot])
            return CREW_ENOMEM;
        memset(keep[slot], (int)(x & 0xff), sz < 64 ? sz : 64);
        sum += sz;
    }
    for (int k = 0; k < 64; k++)
        free(keep[k]);
    return put(result, result_cap, result_len, sum);
}

/* Eight counters on one 64-byte line: each thread hammers its own, and the
 * line ping-pongs between the CPUs of a thread pool. Processes each have
 * their own copy. (A task loaded by crew compare sees crew.h's types, not
 * the library's functions: the slot comes from a thread-local number.) */
static volatile uint64_t share_line[8] __attribute__((aligned(64)));
static atomic_int share_next;
static __thread int share_slot = -1;

TASK(panel_share)
{
    (void)t;
    if (share_slot < 0)
        share_slot = atomic_fetch_add(&share_next, 1) % 8;
    volatile uint64_t *c = &share_line[share_slot];
    for (int k = 0; k < 400000; k++)
        (*c)++;
    return put(result, result_cap, result_len, item_of(arg, arg_len) * 3 + 1);
}

TASK(panel_wait)
{
    (void)t;
    sleep_ns(10 * 1000 * 1000);
    return put(result, result_cap, result_len, item_of(arg, arg_len) + 11);
}

TASK(panel_mixed)
{
    (void)t;
    uint64_t v = chain(item_of(arg, arg_len) + 5, CPU_STEPS / 2);
    sleep_ns(2 * 1000 * 1000);
    return put(result, result_cap, result_len, v);
}

TASK(panel_crashy)
{
    (void)t;
    uint64_t i = item_of(arg, arg_len);
    if (i % 13 == 12) {
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core file from a deliberate crash */
        int *volatile bad = (int *)(uintptr_t)16;
        *bad = 1;
        raise(SIGSEGV);
    }
    return put(result, result_cap, result_len, chain(i + 7, CPU_STEPS / 2));
}

/* The last block leaked: the pointer escapes, so no compiler may drop the
 * allocation (clang elides a malloc that nothing can see). */
void *volatile panel_leak_last;

TASK(panel_leak)
{
    (void)t;
    char *lost = malloc(1u << 20);
    if (!lost)
        return CREW_ENOMEM;
    memset(lost, 1, 1u << 20); /* touched: it counts in RSS */
    panel_leak_last = lost;
    return put(result, result_cap, result_len, chain(item_of(arg, arg_len) + (uint64_t)lost[7], CPU_STEPS / 2));
}

/* The classic: a result assembled in a static buffer that another thread
 * overwrites meanwhile. */
static uint64_t scratch[256];

TASK(panel_unsafe)
{
    (void)t;
    uint64_t i = item_of(arg, arg_len);
    for (int k = 0; k < 256; k++)
        scratch[k] = chain(i + (uint64_t)k, 2000);
    uint64_t sum = 0;
    for (int k = 0; k < 256; k++)
        sum = sum * 31 + scratch[k];
    return put(result, result_cap, result_len, sum);
}

static __thread uint64_t *membw_buf;

TASK(panel_membw)
{
    (void)t;
    const size_t words = (16u << 20) / sizeof(uint64_t);
    if (!membw_buf && !(membw_buf = calloc(words, sizeof(uint64_t))))
        return CREW_ENOMEM;
    uint64_t sum = 0, i = item_of(arg, arg_len);
    for (size_t k = 0; k < words; k++) {
        membw_buf[k] += k;
        sum += membw_buf[k] & 1;
    }
    (void)sum; /* depends on how many items this thread ran: not the result */
    return put(result, result_cap, result_len, i * 5 + 2);
}

TASK(panel_bigarg)
{
    (void)t;
    const unsigned char *p = arg;
    uint64_t sum = 0;
    for (size_t k = 0; k < arg_len; k += 64)
        sum += p[k];
    return put(result, result_cap, result_len, sum);
}

TASK(panel_skewed)
{
    (void)t;
    uint64_t i = item_of(arg, arg_len);
    return put(result, result_cap, result_len, chain(i + 9, (i % 8 + 1) * (CPU_STEPS / 8)));
}

TASK(panel_echo)
{
    (void)t;
    if (arg_len > result_cap)
        return CREW_E2BIG;
    const unsigned char *p = arg;
    unsigned char *out = result;
    for (size_t k = 0; k < arg_len; k++)
        out[k] = p[arg_len - 1 - k];
    *result_len = arg_len;
    volatile uint64_t sink = chain(arg_len, 20000); /* a little work, so pools have something to share */
    (void)sink;
    return 0;
}
