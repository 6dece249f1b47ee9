/*
 * pool.c -- one CPU-bound map (count the primes in each of 256 blocks of
 * integers) run on a thread pool and on a process pool. The only difference
 * between the two runs is options.kind.
 *
 * The Python it replaces:
 *
 *     from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor
 *     for Pool in (ThreadPoolExecutor, ProcessPoolExecutor):
 *         with Pool() as pool:
 *             counts = list(pool.map(count_primes, range(256)))
 *
 * In Python the thread version gains nothing from a second core (the GIL);
 * in C both use every core.
 *
 *     ./pool [blocks]
 */
#include <crew.h>

#include <stdio.h>
#include <stdlib.h>

#define BLOCK 5000
#define FIRST 1000000L

/* One item of the map: in = the block number, out = its prime count. */
static int count_primes(crew_task *t, const void *in, size_t in_size, void *out,
                        size_t out_size, size_t *out_len)
{
    (void)t, (void)in_size, (void)out_size;
    long block = *(const long *)in, count = 0;
    for (long x = FIRST + block * BLOCK; x < FIRST + (block + 1) * BLOCK; x++) {
        int prime = x > 1;
        for (long d = 2; d * d <= x && prime; d++)
            prime = x % d != 0;
        count += prime;
    }
    *(long *)out = count;
    *out_len = sizeof count;
    return 0;
}

static int run(crew_pool_kind kind, const long *blocks, long *counts, size_t n)
{
    const char *name = kind == CREW_THREADS ? "threads" : "processes";
    crew_pool_options o = {0}; /* zero: one worker per CPU, default limits */
    o.kind = kind;             /* the one option that changes */
    crew_pool *pool;
    double t0 = crew_now();
    int rc = crew_pool_create(&pool, &o);
    if (rc) {
        printf("%-9s  not available: %s (%s)\n", name, crew_err_name(rc), crew_strerror(rc));
        return rc;
    }
    int statuses[1024];
    crew_map_options mo = {.chunk_size = 0, .statuses = n <= 1024 ? statuses : NULL};
    rc = crew_pool_map(pool, count_primes, blocks, sizeof *blocks, counts, sizeof *counts, n,
                       &mo);
    crew_pool_destroy(pool);
    double t = crew_now() - t0;
    if (rc) {
        printf("%-9s  map failed: %s\n", name, crew_strerror(rc));
        return rc;
    }
    long total = 0;
    for (size_t i = 0; i < n; i++)
        total += counts[i];
    printf("%-9s  %d workers  %zu blocks  %ld primes  %.3f s\n", name, crew_cpu_count(), n,
           total, t);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 256;
    if (n == 0 || n > 1024) {
        fprintf(stderr, "usage: pool [blocks 1..1024]\n");
        return 2;
    }
    long blocks[1024], counts[1024];
    for (size_t i = 0; i < n; i++)
        blocks[i] = (long)i;
    int rt = run(CREW_THREADS, blocks, counts, n);
    int rp = run(CREW_PROCESSES, blocks, counts, n);
    return rt || (rp && rp != CREW_ENOTSUP) ? 1 : 0;
}
