/*
 * bench_map_faults.c -- what a fault costs a process pool with the default
 * options (`crew_pool_options o = {0}; o.kind = CREW_PROCESSES;`):
 *   - chunked map throughput of no-op items and of ~1 us items (the price
 *     of per-item fault accounting on the hot path: compare runs before and
 *     after a change);
 *   - the crash soak: N items (1,000,000 at scale 1) of which every item
 *     i % 1000 == 999 segfaults, by one crew_pool_map and by one future per
 *     item -- items/s, how many ended OK / CREW_ECRASHED / otherwise, and
 *     whether the pool takes work afterwards;
 *   - the time from a worker's death to its item's status: the dying item
 *     writes its clock into a crew_shm region just before it crashes, the
 *     caller reads the clock when the status is known (one future; a map of
 *     one chunk of 64 items whose item 31 crashes: death -> map done, which
 *     includes running the 32 items after it on another worker).
 * There is no anchor that survives this workload: Python's
 * ProcessPoolExecutor breaks at the first segfault (BrokenProcessPool), so
 * the soak reports crew's own figures only.
 */
#include "harness.h"

#include <crew.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GROUP "process pool faults"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void crash_now(void)
{
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
}

static int item_noop(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)a, (void)al, (void)r, (void)rc, (void)rl;
    return 0;
}

/* About 1 us of arithmetic; the output record is the input plus one. */
static int item_work(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)rc;
    uint32_t x;
    memcpy(&x, a, 4);
    uint32_t h = x;
    for (int i = 0; i < 200; i++)
        h = h * 2654435761u + (uint32_t)i;
    __asm__ volatile("" : : "r"(h));
    x += 1;
    memcpy(r, &x, 4);
    *rl = 4;
    return 0;
}

/* Item i (an int32 input) segfaults when i % 1000 == 999, else doubles. */
static int item_soak(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)rc;
    int32_t i;
    memcpy(&i, a, 4);
    if (i % 1000 == 999)
        crash_now();
    int32_t o = 2 * i;
    memcpy(r, &o, 4);
    *rl = 4;
    return 0;
}

/* Death clock: the record is {u64 crash_at_ns; i32 crash}; the task writes
 * the clock into its own region bytes before it crashes. */
typedef struct dclock {
    uint64_t t_ns;
    int32_t crash;
    int32_t pad;
} dclock;

static int task_die_timed(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)r, (void)rc, (void)rl;
    dclock *d = (dclock *)a; /* a region's bytes: writable shared memory */
    if (d->crash) {
        d->t_ns = mono_ns();
        crash_now();
    }
    return 0;
}

/* Map item of a dclock output record: item 31 of the chunk records the
 * clock in its output (in place in a region) and crashes. */
static int item_die_timed(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)rc;
    int32_t i;
    memcpy(&i, a, 4);
    dclock *d = r;
    if (i == 31) {
        d->t_ns = mono_ns();
        crash_now();
    }
    d->t_ns = 0;
    *rl = sizeof *d;
    return 0;
}

static crew_pool *default_pool(void)
{
    crew_pool_options o = {0};
    o.kind = CREW_PROCESSES;
    crew_pool *p = NULL;
    if (crew_pool_create(&p, &o) != 0) {
        fprintf(stderr, "bench_map_faults: crew_pool_create failed\n");
        exit(1);
    }
    return p;
}

typedef struct mapc {
    crew_pool *p;
    crew_task_fn fn;
    int32_t *in, *out;
    size_t n;
} mapc;

static void map_run(void *ctx, long iters)
{
    mapc *m = ctx;
    for (long i = 0; i < iters; i++)
        crew_pool_map(m->p, m->fn, m->in, 4, m->out, 4, m->n, NULL);
}

static double now_s(void) { return bench_now_ns() / 1e9; }

typedef struct tally {
    size_t ok, crashed, other, wrong;
} tally;

static void count_status(tally *t, int st, int32_t in, int32_t out)
{
    if (st == 0) {
        t->ok++;
        if (out != 2 * in)
            t->wrong++;
    } else if (st == CREW_ECRASHED) {
        t->crashed++;
    } else {
        t->other++;
    }
}

static void soak_report(const char *how, size_t n, double secs, const tally *t, int after_rc)
{
    char name[96];
    snprintf(name, sizeof name, "crash soak by %s, %zu items (1 in 1000 segfaults)", how, n);
    bench_row(GROUP, name, (double)n / secs, "items/s", NULL, 0, false, NULL);
    printf("    %s: %zu ok (%zu wrong), %zu CREW_ECRASHED (expected %zu), %zu other; next "
           "submit %s\n",
           how, t->ok, t->wrong, t->crashed, n / 1000, t->other,
           after_rc == 0 ? "ok" : crew_err_name(after_rc));
    snprintf(name, sizeof name, "crash soak by %s: items not ending as they should", how);
    double bad = (double)(t->other + t->wrong) + (double)(t->crashed > n / 1000
                                                              ? t->crashed - n / 1000
                                                              : n / 1000 - t->crashed);
    bench_row(GROUP, name, bad, "items", NULL, 0, true, "0");
}

static int pool_usable(crew_pool *p)
{
    crew_future *f = NULL;
    int rc = crew_pool_submit(p, item_noop, NULL, 0, &f);
    if (rc)
        return rc;
    crew_future_wait(f, CREW_FOREVER);
    rc = crew_future_status(f);
    crew_future_destroy(f);
    return rc;
}

static void soak_map(size_t n)
{
    crew_pool *p = default_pool();
    int32_t *in = malloc(n * 4), *out = calloc(n, 4);
    int *sts = malloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        in[i] = (int32_t)i;
    crew_map_options mo = {.statuses = sts};
    double t0 = now_s();
    crew_pool_map(p, item_soak, in, 4, out, 4, n, &mo);
    double secs = now_s() - t0;
    tally t = {0};
    for (size_t i = 0; i < n; i++)
        count_status(&t, sts[i], in[i], out[i]);
    soak_report("map", n, secs, &t, pool_usable(p));
    crew_pool_destroy(p);
    free(in), free(out), free(sts);
}

static void soak_futures(size_t n)
{
    crew_pool *p = default_pool();
    enum { BATCH = 4096 };
    crew_future **fs = malloc(BATCH * sizeof *fs);
    int32_t *vin = malloc(BATCH * sizeof *vin);
    tally t = {0};
    double t0 = now_s();
    for (size_t done = 0; done < n;) {
        size_t k = n - done < BATCH ? n - done : BATCH;
        size_t got = 0;
        for (size_t i = 0; i < k; i++) {
            int32_t v = (int32_t)(done + i);
            if (crew_pool_submit(p, item_soak, &v, 4, &fs[got]) != 0) {
                t.other++;
                continue;
            }
            vin[got++] = v;
        }
        for (size_t i = 0; i < got; i++) {
            crew_future_wait(fs[i], CREW_FOREVER);
            int st = crew_future_status(fs[i]);
            const void *d = NULL;
            size_t len = 0;
            int32_t o = 0;
            crew_future_result(fs[i], &d, &len);
            if (len == 4)
                memcpy(&o, d, 4);
            count_status(&t, st, vin[i], o);
            crew_future_destroy(fs[i]);
        }
        done += k;
    }
    double secs = now_s() - t0;
    soak_report("futures", n, secs, &t, pool_usable(p));
    crew_pool_destroy(p);
    free(fs), free(vin);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void death_to_status(int rounds)
{
    crew_pool *p = default_pool();
    crew_shm *reg = NULL;
    if (crew_shm_create(&reg, 4096, NULL) != 0)
        return;
    dclock *d = crew_shm_ptr(reg);
    double *us = malloc((size_t)rounds * sizeof *us);
    int got = 0;
    for (int i = 0; i < rounds; i++) {
        /* warm: the replacement of the last death is running */
        pool_usable(p);
        pool_usable(p);
        d->crash = 1;
        d->t_ns = 0;
        crew_future *f = NULL;
        if (crew_pool_submit_shm(p, task_die_timed, reg, 0, sizeof *d, &f) != 0)
            continue;
        crew_future_wait(f, CREW_FOREVER);
        uint64_t seen = mono_ns();
        if (crew_future_status(f) == CREW_ECRASHED && d->t_ns)
            us[got++] = (double)(seen - d->t_ns) / 1e3;
        crew_future_destroy(f);
    }
    if (got) {
        qsort(us, (size_t)got, sizeof *us, cmp_d);
        bench_fig f = {.group = GROUP, .name = "death -> CREW_ECRASHED, one future (median)",
                       .unit = "us", .crew = bench_stat_of(us, got), .lower_is_better = true};
        bench_report(&f);
        printf("    one future: min %.0f / median %.0f / max %.0f us over %d deaths\n", us[0],
               us[got / 2], us[got - 1], got);
    }

    /* A map of 64 items in one chunk, item 31 crashes. */
    crew_shm *oreg = NULL;
    if (crew_shm_create(&oreg, 64 * sizeof(dclock), NULL) == 0) {
        int32_t in[64];
        int sts[64];
        for (int i = 0; i < 64; i++)
            in[i] = i;
        dclock *od = crew_shm_ptr(oreg);
        crew_map_options mo = {.chunk_size = 64, .statuses = sts};
        got = 0;
        int exact = 0;
        for (int i = 0; i < rounds; i++) {
            pool_usable(p);
            pool_usable(p);
            memset(od, 0, 64 * sizeof *od);
            crew_pool_map(p, item_die_timed, in, 4, od, sizeof *od, 64, &mo);
            uint64_t seen = mono_ns();
            if (od[31].t_ns)
                us[got++] = (double)(seen - od[31].t_ns) / 1e3;
            int bad = 0;
            for (int k = 0; k < 64; k++)
                bad += (k == 31) ? sts[k] != CREW_ECRASHED : sts[k] != 0;
            exact += bad == 0;
        }
        if (got) {
            qsort(us, (size_t)got, sizeof *us, cmp_d);
            bench_fig f = {.group = GROUP,
                           .name = "death -> map done, chunk of 64, item 31 crashes (median)",
                           .unit = "us", .crew = bench_stat_of(us, got), .lower_is_better = true};
            bench_report(&f);
            printf("    map chunk: min %.0f / median %.0f / max %.0f us over %d deaths; "
                   "%d of %d maps with exactly item 31 failed\n",
                   us[0], us[got / 2], us[got - 1], got, exact, rounds);
        }
        crew_shm_destroy(oreg);
    }
    free(us);
    crew_pool_destroy(p);
    crew_shm_destroy(reg);
}

int main(int argc, char **argv)
{
    bench_child_dispatch(argc, argv);
    printf("# process pool faults bench: default options (%d workers on %d CPUs)\n",
           crew_cpu_count(), crew_cpu_count());
    crew_forkserver_start();
    int reps = bench_reps(7);
    bench_group("process pool: map throughput and what a fault costs (default options)");

    crew_pool *p = default_pool();
    mapc mc = {.p = p, .fn = item_noop, .n = 200000};
    mc.in = calloc(mc.n, 4);
    mc.out = calloc(mc.n, 4);
    bench_stat ns = bench_ns_per_op_stat(map_run, &mc, bench_iters(20), reps);
    bench_fig f = {.group = GROUP, .name = "map 200k no-op items", .unit = "items/s",
                   .crew = bench_stat_rate(ns, 1e9 * (double)mc.n), .lower_is_better = false};
    bench_report(&f);
    mc.fn = item_work;
    ns = bench_ns_per_op_stat(map_run, &mc, bench_iters(5), reps);
    f.name = "map 200k ~1 us items";
    f.crew = bench_stat_rate(ns, 1e9 * (double)mc.n);
    bench_report(&f);
    free(mc.in), free(mc.out);
    crew_pool_destroy(p);

    size_t n = (size_t)(1000000 * bench_scale());
    if (n < 10000)
        n = 10000;
    soak_map(n);
    soak_futures(n);
    death_to_status(bench_reps(7) * 10);
    return 0;
}
