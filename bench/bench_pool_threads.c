/*
 * bench_pool_threads.c -- the crew thread pool against the C thread pools
 * people use, in one run, as ratios (ANCHORS.md):
 *
 *  - submit with a future + wait, empty tasks, in batches (submit BATCH,
 *    wait for all, release): crew vs libuv uv_queue_work, GLib
 *    GThreadPool, OpenMP task (+taskwait). Goals: <= 40 ns/task, >= 5x
 *    libuv, <= 3x OpenMP task.
 *  - round trip of one task (submit, wait, release), for reference.
 *  - map of empty items (1M): crew_pool_map vs OpenMP for static /
 *    dynamic,1 loops calling the same function per item. Goal: within 1.3x
 *    of static. Also with CPUs-1 workers (the caller runs items too, so
 *    the thread count is the OpenMP team's).
 *  - CPU-bound (count primes in blocks) speedup on all cores, crew map vs
 *    raw pthreads splitting the same blocks statically. Goal: >= 0.97x.
 *  - idle memory per worker: RSS growth of a pool of 16 idle workers,
 *    per worker, vs 16 idle raw pthreads.
 *
 * Every pool uses one worker per CPU. Each anchor runs in a fresh child
 * process per measurement, once per setting (OpenMP: default, wait policy
 * active / passive, bound to one CPU per thread; libuv: its default pool
 * of 4, 1, one per CPU; GLib: shared or exclusive threads), with its own
 * warm-up right before its measured run, alternating round by round with
 * crew measured here (see "anchors" below and bench/README.md). Each
 * figure is the median of the rounds, with min and max; against each
 * anchor both its default and its best setting are reported.
 */
#include "harness.h"

#include <crew.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef CREW_HAVE_OPENMP
#include <omp.h>
#endif
#ifdef CREW_HAVE_GLIB
#include <glib.h>
#endif
#ifdef CREW_HAVE_LIBUV
#include <uv.h>
#endif

#define GROUP "pool_threads"
#define BATCH 10000

static int g_workers;

static int empty_task(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)a, (void)al, (void)r, (void)rc, (void)rl;
    return 0;
}
/* The anchors call the task through this pointer, as crew does. */
static crew_task_fn volatile g_fn = empty_task;

/* ---------------------------------------------------------------- submit+wait */

typedef struct {
    crew_pool *p;
    crew_future **fs;
} crew_ctx;

static void crew_batches(void *ctx, long n)
{
    crew_ctx *c = ctx;
    for (long done = 0; done < n; done += BATCH) {
        long b = n - done < BATCH ? n - done : BATCH;
        for (long i = 0; i < b; i++)
            if (crew_pool_submit(c->p, empty_task, NULL, 0, &c->fs[i]))
                abort();
        if (crew_wait_all(c->fs, (size_t)b, CREW_FOREVER))
            abort();
        for (long i = 0; i < b; i++)
            crew_future_destroy(c->fs[i]);
    }
}

static void crew_roundtrip(void *ctx, long n)
{
    crew_ctx *c = ctx;
    for (long i = 0; i < n; i++) {
        crew_future *f;
        if (crew_pool_submit(c->p, empty_task, NULL, 0, &f) || crew_future_wait(f, CREW_FOREVER))
            abort();
        crew_future_destroy(f);
    }
}

#ifdef CREW_HAVE_OPENMP
static void omp_tasks(void *ctx, long n)
{
    (void)ctx;
#pragma omp parallel num_threads(g_workers)
#pragma omp single
    {
        for (long done = 0; done < n; done += BATCH) {
            long b = n - done < BATCH ? n - done : BATCH;
            for (long i = 0; i < b; i++) {
#pragma omp task
                {
                    size_t len = 0;
                    g_fn(NULL, NULL, 0, NULL, 0, &len);
                }
            }
#pragma omp taskwait
        }
    }
}
#endif

#ifdef CREW_HAVE_LIBUV
typedef struct {
    uv_loop_t loop;
    uv_work_t *reqs;
} uv_ctx;
static void uv_work(uv_work_t *r)
{
    (void)r;
    size_t len = 0;
    g_fn(NULL, NULL, 0, NULL, 0, &len);
}
static void uv_after(uv_work_t *r, int status) { (void)r, (void)status; }
static void uv_batches(void *ctx, long n)
{
    uv_ctx *u = ctx;
    for (long done = 0; done < n; done += BATCH) {
        long b = n - done < BATCH ? n - done : BATCH;
        for (long i = 0; i < b; i++)
            uv_queue_work(&u->loop, &u->reqs[i], uv_work, uv_after);
        uv_run(&u->loop, UV_RUN_DEFAULT); /* returns once every after_work ran */
    }
}
#endif

#ifdef CREW_HAVE_GLIB
typedef struct {
    GThreadPool *pool;
    GMutex m;
    GCond c;
    gint done;
    gint target;
} glib_ctx;
static glib_ctx *g_glib;
static void glib_work(gpointer data, gpointer user)
{
    (void)data, (void)user;
    size_t len = 0;
    g_fn(NULL, NULL, 0, NULL, 0, &len);
    if (g_atomic_int_add(&g_glib->done, 1) + 1 == g_atomic_int_get(&g_glib->target)) {
        g_mutex_lock(&g_glib->m);
        g_cond_signal(&g_glib->c);
        g_mutex_unlock(&g_glib->m);
    }
}
static void glib_batches(void *ctx, long n)
{
    glib_ctx *g = ctx;
    for (long done = 0; done < n; done += BATCH) {
        long b = n - done < BATCH ? n - done : BATCH;
        g_atomic_int_set(&g->done, 0);
        g_atomic_int_set(&g->target, (gint)b);
        for (long i = 0; i < b; i++)
            g_thread_pool_push(g->pool, GINT_TO_POINTER(1), NULL);
        g_mutex_lock(&g->m);
        while (g_atomic_int_get(&g->done) < b)
            g_cond_wait(&g->c, &g->m);
        g_mutex_unlock(&g->m);
    }
}
#endif

/* ---------------------------------------------------------------- anchors
 * Every anchor runs in a fresh child process, this program re-executed as
 * `--anchor NAME [SETTING] THREADS ITERS`: libgomp reads OMP_* and libuv reads
 * UV_THREADPOOL_SIZE once per process, so each setting needs a process of
 * its own, and a fresh process also keeps one side's leftover threads
 * (libgomp's spinning team, crew's workers) off the CPUs the other side is
 * measured on. The child sets up, does its own warm-up (a tenth of the
 * work) right before its one measured run, and prints ns per op. crew is
 * measured in this process the same way, round after round with the
 * children (bench_alternate), with the same number of threads. */

/* The OpenMP knobs a setting may set; every setting names all of them so
 * that "default" is libgomp's default whatever the caller's environment. */
#define OMP_CLEAR "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS"
static const char *const omp_env_default[] = {"OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES",
                                              OMP_CLEAR, NULL};
static const char *const omp_env_active[] = {"OMP_WAIT_POLICY=active", "OMP_PROC_BIND",
                                             "OMP_PLACES", OMP_CLEAR, NULL};
static const char *const omp_env_passive[] = {"OMP_WAIT_POLICY=passive", "OMP_PROC_BIND",
                                              "OMP_PLACES", OMP_CLEAR, NULL};
static const char *const omp_env_bind[] = {"OMP_WAIT_POLICY", "OMP_PROC_BIND=close",
                                           "OMP_PLACES=threads", OMP_CLEAR, NULL};
static const char *const omp_env_active_bind[] = {"OMP_WAIT_POLICY=active", "OMP_PROC_BIND=close",
                                                  "OMP_PLACES=threads", OMP_CLEAR, NULL};
static const bench_setting omp_settings[] = {
    {"default", omp_env_default, NULL},
    {"OMP_WAIT_POLICY=active", omp_env_active, NULL},
    {"OMP_WAIT_POLICY=passive", omp_env_passive, NULL},
    {"OMP_PROC_BIND=close OMP_PLACES=threads", omp_env_bind, NULL},
    {"OMP_WAIT_POLICY=active OMP_PROC_BIND=close OMP_PLACES=threads", omp_env_active_bind, NULL},
};
#define N_OMP (int)(sizeof omp_settings / sizeof omp_settings[0])

static const char *const argv_omp_tasks[] __attribute__((unused)) = {NULL, "--anchor", "omp_tasks", NULL};
static const char *const argv_omp_static[] __attribute__((unused)) = {NULL, "--anchor", "omp_static", NULL};
static const char *const argv_omp_dynamic[] __attribute__((unused)) = {NULL, "--anchor", "omp_dynamic", NULL};
static const char *const argv_uv[] __attribute__((unused)) = {NULL, "--anchor", "uv", NULL};

/* libuv: its default pool (UV_THREADPOOL_SIZE unset: 4 threads), one
 * thread, and one per CPU (when that is neither). */
static char uv_env_cpus[32];
static const char *const uv_env_default[] = {"UV_THREADPOOL_SIZE", NULL};
static const char *const uv_env_one[] = {"UV_THREADPOOL_SIZE=1", NULL};
static const char *const uv_env_n[] = {uv_env_cpus, NULL};
static bench_setting uv_settings[3] __attribute__((unused)) = {
    {"default (UV_THREADPOOL_SIZE unset: 4)", uv_env_default, NULL},
    {"UV_THREADPOOL_SIZE=1", uv_env_one, NULL},
    {uv_env_cpus, uv_env_n, NULL},
};

/* GLib has no default to fall back on (g_thread_pool_new takes both), so
 * its "default" is the common shared pool: exclusive = FALSE, one thread
 * per CPU; the other setting keeps the threads to the pool. */
#ifdef CREW_HAVE_GLIB
static const char *const argv_glib[] = {NULL, "--anchor", "glib", NULL};
static const char *const glib_args_shared[] = {"shared", NULL};
static const char *const glib_args_exclusive[] = {"exclusive", NULL};
static const bench_setting glib_settings[] = {
    {"exclusive=FALSE", NULL, glib_args_shared},
    {"exclusive=TRUE", NULL, glib_args_exclusive},
};
#endif

/* Alternates crew (fn on ctx, this process) with the anchor's children
 * and reports the default and the best setting. */
static void versus(const char *name, bench_fn fn, void *ctx, long iters, const char *anchor,
                   const char *const *argv, const bench_setting *settings, int n, const char *goal)
{
    char it[32], w[16];
    snprintf(it, sizeof it, "%ld", iters);
    snprintf(w, sizeof w, "%d", g_workers);
    const char *extra[] = {w, it, NULL};
    bench_anchor a = {anchor, argv, settings, n};
    bench_stat per[8], crew;
    if (bench_alternate(fn, ctx, iters, bench_reps(9), &a, extra, &crew, per) == 0) {
        bench_missing(GROUP, anchor, "the anchor's child failed");
        return;
    }
    bench_fig f = {.group = GROUP, .name = name, .unit = "ns", .crew = crew,
                   .lower_is_better = true, .goal = goal};
    bench_report_anchor(&f, &a, per);
}

static void bench_submit(crew_pool *p)
{
    const char *name = "submit+wait, empty tasks (ns/task)";
    crew_ctx c = {p, malloc(sizeof(crew_future *) * BATCH)};
    long iters = bench_iters(1000000);
    int reps = bench_reps(9);
#ifdef CREW_HAVE_OPENMP
    versus(name, crew_batches, &c, iters, "OpenMP task", argv_omp_tasks, omp_settings, N_OMP,
           "<= 3x OpenMP (adv >= 0.33)");
    if (g_workers > 1) {
        /* The same thread count as the OpenMP team: the waiting thread helps,
         * so workers-1 workers + it = a team of `workers`. */
        crew_pool_options o = {0};
        o.workers = g_workers - 1;
        crew_ctx c2 = {NULL, c.fs};
        if (crew_pool_create(&c2.p, &o))
            abort();
        versus("submit+wait, workers = CPUs-1 (ns/task)", crew_batches, &c2, iters,
               "OpenMP task", argv_omp_tasks, omp_settings, N_OMP, NULL);
        crew_pool_destroy(c2.p);
    }
#else
    bench_missing(GROUP, "OpenMP task", "OpenMP not found");
#endif
    {
        bench_stat s = bench_ns_per_op_stat(crew_batches, &c, iters, reps);
        bench_fig f = {.group = GROUP, .name = "submit+wait, absolute", .unit = "ns", .crew = s,
                       .lower_is_better = true, .goal = "<= 40 ns"};
        bench_report(&f);
    }
#ifdef CREW_HAVE_LIBUV
    {
        snprintf(uv_env_cpus, sizeof uv_env_cpus, "UV_THREADPOOL_SIZE=%d", g_workers);
        int n = g_workers == 1 || g_workers == 4 ? 2 : 3;
        versus(name, crew_batches, &c, iters / 4, "libuv uv_queue_work", argv_uv, uv_settings, n,
               ">= 5x libuv");
    }
#else
    bench_missing(GROUP, "libuv uv_queue_work", "libuv not found");
#endif
#ifdef CREW_HAVE_GLIB
    versus(name, crew_batches, &c, iters / 4, "GLib GThreadPool", argv_glib, glib_settings, 2,
           NULL);
#else
    bench_missing(GROUP, "GLib GThreadPool", "GLib not found");
#endif
    bench_stat rt = bench_ns_per_op_stat(crew_roundtrip, &c, bench_iters(100000), reps);
    bench_fig f = {.group = GROUP, .name = "round trip, one task (ns)", .unit = "ns", .crew = rt,
                   .lower_is_better = true};
    bench_report(&f);
    free(c.fs);
}

/* ---------------------------------------------------------------- map */

#define MAP_N 1000000
static void crew_map_empty(void *ctx, long n)
{
    crew_pool *p = ctx;
    for (long i = 0; i < n; i += MAP_N)
        if (crew_pool_map(p, empty_task, NULL, 0, NULL, 0, MAP_N, NULL))
            abort();
}

#ifdef CREW_HAVE_OPENMP
static void omp_static(void *ctx, long n)
{
    (void)ctx;
    for (long k = 0; k < n; k += MAP_N) {
#pragma omp parallel for schedule(static) num_threads(g_workers)
        for (long i = 0; i < MAP_N; i++) {
            size_t len = 0;
            g_fn(NULL, NULL, 0, NULL, 0, &len);
        }
    }
}
static void omp_dynamic(void *ctx, long n)
{
    (void)ctx;
    for (long k = 0; k < n; k += MAP_N) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(g_workers)
        for (long i = 0; i < MAP_N; i++) {
            size_t len = 0;
            g_fn(NULL, NULL, 0, NULL, 0, &len);
        }
    }
}
#endif

static void bench_map(crew_pool *p)
{
#ifdef CREW_HAVE_OPENMP
    const char *name = "map, empty items (ns/item)";
    long iters = MAP_N * (long)(bench_scale() >= 1 ? 5 : 1);
    versus(name, crew_map_empty, p, iters, "OpenMP for static", argv_omp_static, omp_settings,
           N_OMP, "within 1.3x (adv >= 0.77)");
    versus(name, crew_map_empty, p, iters, "OpenMP for dynamic,1", argv_omp_dynamic,
           omp_settings, N_OMP, NULL);
    if (g_workers > 1) {
        /* The same thread count as the OpenMP team: the calling thread runs
         * items too, so workers-1 workers + it = a team of `workers`. */
        crew_pool_options o = {0};
        o.workers = g_workers - 1;
        crew_pool *q;
        if (crew_pool_create(&q, &o))
            abort();
        versus("map, empty items, workers = CPUs-1 (ns/item)", crew_map_empty, q, iters,
               "OpenMP for static", argv_omp_static, omp_settings, N_OMP, NULL);
        crew_pool_destroy(q);
    }
#else
    (void)p;
    bench_missing(GROUP, "OpenMP for static", "OpenMP not found");
#endif
}

/* The child side: `--anchor NAME [SETTING] THREADS ITERS`. Sets the
 * anchor up with THREADS threads (given, not counted here: with
 * OMP_PROC_BIND set, libgomp pins the initial thread to one CPU before
 * main, so this process would count one CPU), warms it up, measures one
 * run and prints ns per op. */
static int anchor_main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    const char *name = argv[2], *setting = argc > 5 ? argv[3] : "";
    g_workers = atoi(argv[argc - 2]);
    long iters = atol(argv[argc - 1]);
    if (iters < 1 || g_workers < 1)
        return 2;
    bench_fn fn = NULL;
    void *ctx = NULL;
#ifdef CREW_HAVE_OPENMP
    if (strcmp(name, "omp_tasks") == 0)
        fn = omp_tasks;
    else if (strcmp(name, "omp_static") == 0)
        fn = omp_static;
    else if (strcmp(name, "omp_dynamic") == 0)
        fn = omp_dynamic;
    if (fn) {
        const char *w = getenv("OMP_WAIT_POLICY"), *b = getenv("OMP_PROC_BIND");
        printf("# %s: %d threads, OMP_WAIT_POLICY=%s OMP_PROC_BIND=%s (omp_get_proc_bind %d)\n",
               name, g_workers, w ? w : "(unset)", b ? b : "(unset)", (int)omp_get_proc_bind());
    }
#endif
#ifdef CREW_HAVE_LIBUV
    uv_ctx u;
    if (strcmp(name, "uv") == 0) {
        uv_loop_init(&u.loop);
        u.reqs = calloc(BATCH, sizeof *u.reqs);
        fn = uv_batches;
        ctx = &u;
        const char *e = getenv("UV_THREADPOOL_SIZE");
        printf("# libuv %s: UV_THREADPOOL_SIZE=%s\n", uv_version_string(), e ? e : "(unset)");
    }
#endif
#ifdef CREW_HAVE_GLIB
    glib_ctx g;
    if (strcmp(name, "glib") == 0) {
        memset(&g, 0, sizeof g);
        g_mutex_init(&g.m);
        g_cond_init(&g.c);
        g_glib = &g;
        gboolean excl = strcmp(setting, "exclusive") == 0;
        g.pool = g_thread_pool_new(glib_work, NULL, g_workers, excl, NULL);
        fn = glib_batches;
        ctx = &g;
        printf("# GLib %u.%u: %d threads, exclusive=%s\n", glib_major_version,
               glib_minor_version, g_workers, excl ? "TRUE" : "FALSE");
    }
#endif
    (void)setting;
    if (!fn)
        return 2;
    fn(ctx, iters / 10 + 1); /* the anchor's own warm-up, right before */
    double t0 = bench_now_ns();
    fn(ctx, iters);
    double ns = (bench_now_ns() - t0) / (double)iters;
    bench_child_print(ns);
#ifdef CREW_HAVE_LIBUV
    if (fn == uv_batches) {
        uv_loop_close(&u.loop);
        free(u.reqs);
    }
#endif
#ifdef CREW_HAVE_GLIB
    if (fn == glib_batches)
        g_thread_pool_free(g.pool, FALSE, TRUE);
#endif
    return 0;
}

/* ---------------------------------------------------------------- CPU-bound */

#define PRIME_BLOCKS 256
#define PRIME_BLOCK 4000

/* The primes of block b of the CPU-bound workload. */
static long block_primes(long b)
{
    return (long)bench_count_primes((unsigned long)(2000000 + b * PRIME_BLOCK),
                                    (unsigned long)(2000000 + (b + 1) * PRIME_BLOCK));
}


static int primes_task(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)rc;
    long b = *(const long *)a;
    *(long *)r = block_primes(b);
    *rl = sizeof(long);
    return 0;
}

static double crew_primes(int workers)
{
    crew_pool_options o = {0};
    o.workers = workers;
    crew_pool *p;
    if (crew_pool_create(&p, &o))
        abort();
    long in[PRIME_BLOCKS], out[PRIME_BLOCKS];
    for (int i = 0; i < PRIME_BLOCKS; i++)
        in[i] = i;
    double t0 = bench_now_ns();
    crew_map_options mo = {.chunk_size = 1};
    if (crew_pool_map(p, primes_task, in, sizeof *in, out, sizeof *out, PRIME_BLOCKS, &mo))
        abort();
    double t = bench_now_ns() - t0;
    crew_pool_destroy(p);
    return t;
}

typedef struct {
    int id, n;
    long sum;
} raw_arg;
static void *raw_primes(void *arg)
{
    raw_arg *a = arg;
    for (int b = a->id; b < PRIME_BLOCKS; b += a->n)
        a->sum += block_primes((long)b);
    return NULL;
}
static double raw_primes_run(int n)
{
    pthread_t th[256];
    raw_arg args[256];
    double t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        args[i] = (raw_arg){i, n, 0};
        pthread_create(&th[i], NULL, raw_primes, &args[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return bench_now_ns() - t0;
}

static double seq_primes_run(void)
{
    volatile long sum = 0;
    double t0 = bench_now_ns();
    for (long b = 0; b < PRIME_BLOCKS; b++)
        sum += block_primes(b);
    (void)sum;
    return bench_now_ns() - t0;
}

/* Speedup over the same work done sequentially in one thread: crew's map
 * on a pool of one worker per CPU vs raw pthreads, one per CPU, splitting
 * the blocks statically. (Not crew with 1 worker as the base: the thread
 * calling crew_pool_map helps run items, so "1 worker" uses 2 threads.) */
static void bench_speedup(void)
{
    int reps = bench_reps(5);
    double sq[16], cn[16], rn[16];
    if (reps > 16)
        reps = 16;
    for (int r = 0; r < reps; r++) {
        sq[r] = seq_primes_run();
        cn[r] = crew_primes(g_workers);
        rn[r] = raw_primes_run(g_workers);
    }
    /* The speedup of each round over that round's sequential run. */
    double cs[16], rs[16];
    for (int r = 0; r < reps; r++) {
        cs[r] = sq[r] / cn[r];
        rs[r] = sq[r] / rn[r];
    }
    char name[64];
    snprintf(name, sizeof name, "CPU-bound speedup, %d workers (x)", g_workers);
    bench_fig f = {.group = GROUP, .name = name, .unit = "x", .crew = bench_stat_of(cs, reps),
                   .anchor = "raw pthreads", .anchor_value = bench_stat_of(rs, reps),
                   .lower_is_better = false, .goal = ">= 0.97x raw"};
    bench_report(&f);
}

/* ---------------------------------------------------------------- memory */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static pthread_mutex_t idle_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_c = PTHREAD_COND_INITIALIZER;
static int idle_stop;
static void *idle_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&idle_m);
    while (!idle_stop)
        pthread_cond_wait(&idle_c, &idle_m);
    pthread_mutex_unlock(&idle_m);
    return NULL;
}

static void bench_memory(void)
{
    enum { N = 16 };
    double vc[5], vr[5];
    for (int r = 0; r < 5; r++) {
        long before = rss_kib();
        crew_pool_options o = {0};
        o.workers = N;
        crew_pool *p;
        if (crew_pool_create(&p, &o))
            abort();
        /* Each worker runs tasks first (an idle worker of a pool in use is
         * what costs memory), as crew compare measures it: 8 per worker. */
        crew_future *fs[8 * N];
        for (int i = 0; i < 8 * N; i++)
            if (crew_pool_submit(p, empty_task, NULL, 0, &fs[i]))
                abort();
        if (crew_wait_all(fs, 8 * N, CREW_FOREVER))
            abort();
        for (int i = 0; i < 8 * N; i++)
            crew_future_destroy(fs[i]);
        /* Let every worker reach its idle park. */
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        vc[r] = (double)(rss_kib() - before) / N;
        crew_pool_destroy(p);

        before = rss_kib();
        pthread_t th[N];
        idle_stop = 0;
        for (int i = 0; i < N; i++)
            pthread_create(&th[i], NULL, idle_thread, NULL);
        nanosleep(&ts, NULL);
        vr[r] = (double)(rss_kib() - before) / N;
        pthread_mutex_lock(&idle_m);
        idle_stop = 1;
        pthread_cond_broadcast(&idle_c);
        pthread_mutex_unlock(&idle_m);
        for (int i = 0; i < N; i++)
            pthread_join(th[i], NULL);
    }
    bench_fig f = {.group = GROUP, .name = "idle memory per worker (KiB RSS)", .unit = "KiB",
                   .crew = bench_stat_of(vc, 5), .anchor = "idle raw pthread",
                   .anchor_value = bench_stat_of(vr, 5), .lower_is_better = true,
                   .goal = "<= 16 KiB"};
    bench_report(&f);
}

int main(int argc, char **argv)
{
    bench_child_dispatch(argc, argv);
    g_workers = crew_cpu_count();
    if (argc > 1 && strcmp(argv[1], "--anchor") == 0)
        return anchor_main(argc, argv);
    bench_group("thread pool (crew_pool, CREW_THREADS) vs C thread pools");
    bench_memory(); /* first: before the heap has grown */
    crew_pool_options o = {0};
    o.workers = g_workers;
    crew_pool *p;
    if (crew_pool_create(&p, &o))
        abort();
    bench_submit(p);
    bench_map(p);
    crew_pool_destroy(p);
    bench_speedup();
    return 0;
}
