/*
 * bench_pool_procs.c -- the process pool against its anchors, in one run:
 *   - Python's ProcessPoolExecutor / multiprocessing.Pool (bench/anchors.py,
 *     run with python3: $CREW_BENCH_PY or the script beside this file), a
 *     fresh interpreter per figure, start method and round, alternating
 *     with crew's own measurement (anchors.py says why); each with the
 *     interpreter's default start method and with fork / forkserver, the
 *     default and the best reported;
 *   - the raw floor: two processes ping-ponging one word in shared memory,
 *     each side spinning CREW__SPIN_NS (20 us) and then parking on a futex,
 *     i.e. the best any process pool built on shared memory can do here;
 *     crew's round trip and the floor are measured in each placement mode:
 *     unpinned, "1 CPU" (caller and workers on one CPU) and "2 CPUs"
 *     (caller on one, workers on the other), as separate rows;
 *   - raw fork for CPU-bound speedup, and raw fork children forked from a
 *     fresh small copy of this program (the size of crew's forkserver) for
 *     memory.
 * Figures: round trip of one tiny task, submit+wait throughput, map of
 * no-op items, CPU-bound speedup on all cores, idle memory per worker
 * (process-tree PSS added per worker, pool of 16 vs 16 raw fork children),
 * time from a worker's death to its task's CREW_ECRASHED, pool
 * ready-to-run time (create + first result) for 2 workers, and a 1 MiB
 * argument copied vs passed by reference in a crew_shm region. Medians of
 * the rounds, with min and max.
 */
#include "harness.h"

#include <crew.h>

#include <errno.h>
#include <sched.h>
#include <libgen.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define GROUP "process pool"
#define WORKERS 2

/* ------------------------------------------------------------ python anchors */

static char py_path[4096];
static const char *py_missing_why;
static const char *const py_methods[] = {"fork", "forkserver", "spawn"};
static const char *const py_args[3][2] = {{"fork", NULL}, {"forkserver", NULL}, {"spawn", NULL}};
static char py_default_label[64];
/* The process pools' settings: the interpreter's default start method
 * first, then whichever of fork and forkserver it is not. */
static bench_setting py_settings[3];
static int n_py_settings;
static const bench_setting py_thread_settings[] = {{"threads", NULL, NULL}};

static void py_setup(void)
{
    const char *env = getenv("CREW_BENCH_PY");
    if (env && *env) {
        snprintf(py_path, sizeof py_path, "%s", env);
    } else {
        char src[4096];
        snprintf(src, sizeof src, "%s", __FILE__);
        snprintf(py_path, sizeof py_path, "%s/anchors.py", dirname(src));
    }
    if (access(py_path, R_OK) != 0) {
        py_missing_why = "bench/anchors.py not found";
        return;
    }
    const char *argv[] = {"python3", py_path, "--default-method", NULL};
    double v;
    if (bench_child_values(argv, NULL, true, &v, 1) != 1 || v < 0 || v > 2) {
        py_missing_why = "python3 not found or anchors.py failed";
        return;
    }
    int d = (int)v;
    snprintf(py_default_label, sizeof py_default_label, "%s (the default)", py_methods[d]);
    py_settings[0] = (bench_setting){py_default_label, NULL, py_args[d]};
    n_py_settings = 1;
    for (int m = 0; m < 2; m++)
        if (m != d)
            py_settings[n_py_settings++] = (bench_setting){py_methods[m], NULL, py_args[m]};
}

/* One figure against one Python anchor. crew's side is either fn(ctx,
 * iters) (ns per op, turned into the unit by k: value = ns * k, or k / ns
 * for a rate) or, when sample is set, sample(ctx) in the unit already. */
typedef struct py_vs {
    const char *name, *anchor, *key, *unit, *mode, *goal;
    bool methods; /* a process pool: run it with each start method */
    long py_n;    /* the work of one Python measurement */
    bool rate;
    double k;
    bool lower;
} py_vs;

static void vs_py(const py_vs *v, bench_fn fn, bench_sample_fn sample, void *ctx, long iters,
                  int reps)
{
    bench_stat crew, per[3];
    bench_fig f = {.group = GROUP, .name = v->name, .unit = v->unit, .mode = v->mode,
                   .lower_is_better = v->lower, .goal = v->goal};
    const char *argv[] = {"python3", py_path, v->key, NULL};
    char w[16], n[32];
    snprintf(w, sizeof w, "%d", WORKERS);
    snprintf(n, sizeof n, "%ld", v->py_n);
    const char *extra[] = {w, n, NULL};
    bench_anchor a = {v->anchor, argv, v->methods ? py_settings : py_thread_settings,
                      v->methods ? n_py_settings : 1};
    int ok = 0;
    if (!py_missing_why)
        ok = sample ? bench_alternate_sample(sample, ctx, reps, &a, extra, &crew, per)
                    : bench_alternate(fn, ctx, iters, reps, &a, extra, &crew, per);
    if (!ok) { /* crew alone */
        crew = sample ? bench_stat_one(sample(ctx)) : bench_ns_per_op_stat(fn, ctx, iters, reps);
        if (py_missing_why)
            bench_missing(GROUP, v->anchor, py_missing_why);
    }
    if (!sample)
        crew = v->rate ? bench_stat_rate(crew, v->k) : bench_stat_scale(crew, v->k);
    f.crew = crew;
    if (ok)
        bench_report_anchor(&f, &a, per);
    else
        bench_report(&f);
}

/* ------------------------------------------------------------ raw floor */

typedef struct pingpong {
    _Atomic uint32_t ping __attribute__((aligned(64)));
    _Atomic uint32_t ping_sleep;
    _Atomic uint32_t pong __attribute__((aligned(64)));
    _Atomic uint32_t pong_sleep;
} pingpong;

static double now_ns(void) { return bench_now_ns(); }

/* Waits until *w != old: spin 20 us, then futex with a sleeping flag. */
static void raw_wait(_Atomic uint32_t *w, _Atomic uint32_t *sleeping, uint32_t old)
{
    double t0 = now_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != old)
            return;
        __builtin_ia32_pause();
        if ((i & 63) == 0 && now_ns() - t0 > 20000)
            break;
    }
    for (;;) {
        atomic_store_explicit(sleeping, 1, memory_order_seq_cst);
        if (atomic_load_explicit(w, memory_order_seq_cst) != old)
            break;
        syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, old, NULL, NULL, 0);
        if (atomic_load_explicit(w, memory_order_acquire) != old)
            break;
    }
    atomic_store_explicit(sleeping, 0, memory_order_relaxed);
}

static void raw_post(_Atomic uint32_t *w, _Atomic uint32_t *sleeping, uint32_t v)
{
    atomic_store_explicit(w, v, memory_order_seq_cst);
    if (atomic_load_explicit(sleeping, memory_order_seq_cst))
        syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* A floor session: a forked child echoing ping into pong until it reads
 * FLOOR_STOP. The values only grow (skipping FLOOR_STOP), so "pong !=
 * the last pong" is "the echo of the last ping". */
#define FLOOR_STOP 0xffffffffu
typedef struct floor_session {
    pingpong *pp;
    pid_t child;
    uint32_t n;
} floor_session;

/* child_cpu >= 0: the child pins itself there (the caller pins itself). */
static bool floor_start(floor_session *f, int child_cpu)
{
    f->pp = mmap(NULL, sizeof *f->pp, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (f->pp == MAP_FAILED)
        return false;
    memset(f->pp, 0, sizeof *f->pp);
    f->n = 0;
    fflush(NULL);
    f->child = fork();
    if (f->child < 0)
        return false;
    if (f->child == 0) {
        if (child_cpu >= 0)
            bench_pin(0, child_cpu);
        pingpong *pp = f->pp;
        uint32_t seen = 0;
        for (;;) {
            raw_wait(&pp->ping, &pp->ping_sleep, seen);
            seen = atomic_load_explicit(&pp->ping, memory_order_acquire);
            if (seen == FLOOR_STOP)
                _exit(0);
            raw_post(&pp->pong, &pp->pong_sleep, seen);
        }
    }
    return true;
}

/* bench_fn: iters round trips. */
static void floor_batch(void *ctx, long iters)
{
    floor_session *f = ctx;
    for (long i = 0; i < iters; i++) {
        uint32_t last = f->n;
        f->n = f->n + 1 == FLOOR_STOP ? 1 : f->n + 1;
        raw_post(&f->pp->ping, &f->pp->ping_sleep, f->n);
        raw_wait(&f->pp->pong, &f->pp->pong_sleep, last);
    }
}

static void floor_stop(floor_session *f)
{
    raw_post(&f->pp->ping, &f->pp->ping_sleep, FLOOR_STOP);
    waitpid(f->child, NULL, 0);
    munmap(f->pp, sizeof *f->pp);
}

/* ------------------------------------------------------------ tasks */

static int task_noop(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)t, (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    return 0;
}

static int task_echo(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)t, (void)cap;
    memcpy(res, arg, len);
    *rl = len;
    return 0;
}

static int item_noop(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)t, (void)len, (void)cap, (void)rl;
    memcpy(res, arg, 4);
    return 0;
}

/* Reads the first and last byte of its argument: what it costs to get a
 * big argument to a worker, not to process it. */
static int task_touch(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                      size_t *rl)
{
    (void)t, (void)cap;
    const unsigned char *a = arg;
    unsigned char r[2] = {len ? a[0] : 0, len ? a[len - 1] : 0};
    memcpy(res, r, 2);
    *rl = 2;
    return 0;
}


static int task_primes(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                       size_t *rl)
{
    (void)t, (void)len, (void)cap;
    uint64_t r[2];
    memcpy(r, arg, sizeof r);
    uint64_t n = bench_count_primes(r[0], r[1]);
    memcpy(res, &n, sizeof n);
    *rl = sizeof n;
    return 0;
}

/* ------------------------------------------------------------ crew figures */

static crew_pool *pool2(int workers)
{
    crew_pool_options o = {.kind = CREW_PROCESSES, .workers = workers};
    crew_pool *p;
    if (crew_pool_create(&p, &o) != 0) {
        fprintf(stderr, "cannot create a process pool\n");
        exit(1);
    }
    return p;
}

/* 1 MiB argument: copied (crew_pool_submit: into the future, into the
 * slot) or passed by reference (crew_pool_submit_shm on a crew_shm region:
 * only region, offset and length travel). */
#define BIG_ARG (1u << 20)
typedef struct big_ctx {
    crew_pool *p;
    crew_shm *shm;
    const unsigned char *buf;
} big_ctx;

static void big_copy_fn(void *ctx, long iters)
{
    big_ctx *c = ctx;
    for (long i = 0; i < iters; i++) {
        crew_future *f;
        if (crew_pool_submit(c->p, task_touch, c->buf, BIG_ARG, &f) != 0)
            exit(1);
        crew_future_wait(f, CREW_FOREVER);
        crew_future_destroy(f);
    }
}

static void big_shm_fn(void *ctx, long iters)
{
    big_ctx *c = ctx;
    for (long i = 0; i < iters; i++) {
        crew_future *f;
        if (crew_pool_submit_shm(c->p, task_touch, c->shm, 0, BIG_ARG, &f) != 0)
            exit(1);
        crew_future_wait(f, CREW_FOREVER);
        crew_future_destroy(f);
    }
}

static void rt_fn(void *ctx, long iters)
{
    crew_pool *p = ctx;
    uint64_t x = 42;
    for (long i = 0; i < iters; i++) {
        crew_future *f;
        crew_pool_submit(p, task_echo, &x, sizeof x, &f);
        crew_future_wait(f, CREW_FOREVER);
        crew_future_destroy(f);
    }
}

#define BATCH 4096
static crew_future *batch[BATCH];

static void tp_fn(void *ctx, long iters)
{
    crew_pool *p = ctx;
    for (long done = 0; done < iters;) {
        long n = iters - done < BATCH ? iters - done : BATCH;
        for (long i = 0; i < n; i++)
            crew_pool_submit(p, task_noop, NULL, 0, &batch[i]);
        for (long i = 0; i < n; i++) {
            crew_future_wait(batch[i], CREW_FOREVER);
            crew_future_destroy(batch[i]);
        }
        done += n;
    }
}

typedef struct map_ctx {
    crew_pool *p;
    int32_t *in, *out;
    size_t n;
} map_ctx;

static void map_fn(void *ctx, long iters)
{
    map_ctx *m = ctx;
    for (long i = 0; i < iters; i++)
        crew_pool_map(m->p, item_noop, m->in, 4, m->out, 4, m->n, NULL);
}

/* CPU-bound work split into `parts` ranges, run on a pool; seconds. */
static double primes_pool(crew_pool *p, uint64_t hi, int parts)
{
    crew_future *fs[64];
    double t0 = now_ns();
    for (int i = 0; i < parts; i++) {
        uint64_t r[2] = {hi * (uint64_t)i / (uint64_t)parts,
                         hi * (uint64_t)(i + 1) / (uint64_t)parts};
        crew_pool_submit(p, task_primes, r, sizeof r, &fs[i]);
    }
    for (int i = 0; i < parts; i++) {
        crew_future_wait(fs[i], CREW_FOREVER);
        crew_future_destroy(fs[i]);
    }
    return (now_ns() - t0) * 1e-9;
}

/* The same with raw fork: `procs` children each doing parts/procs ranges. */
static double primes_fork(uint64_t hi, int parts, int procs)
{
    double t0 = now_ns();
    pid_t pids[64];
    for (int k = 0; k < procs; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            uint64_t n = 0;
            for (int i = k; i < parts; i += procs)
                n += bench_count_primes(hi * (uint64_t)i / (uint64_t)parts,
                                  hi * (uint64_t)(i + 1) / (uint64_t)parts);
            _exit(n == 0);
        }
    }
    for (int k = 0; k < procs; k++)
        waitpid(pids[k], NULL, 0);
    return (now_ns() - t0) * 1e-9;
}

/* PSS of this process and all its descendants, KiB (crew_mem_usage_tree):
 * the memory a worker costs is how much this grows per worker. */
static double tree_pss_kib(void)
{
    crew_mem_usage u;
    if (crew_mem_usage_tree(0, &u) != 0) {
        fprintf(stderr, "cannot read /proc memory figures\n");
        exit(1);
    }
    return (double)u.pss / 1024.0;
}

/* Memory per idle worker of a fresh pool of `workers` that ran 1000 tiny
 * tasks, KiB: tree PSS after minus before, over workers. Everything the
 * pool adds counts: worker processes, its shared memory (the slots pages
 * the tasks touched), the monitor thread. The forkserver is not counted: it
 * is started once per program (before the first reading). */
static double pool_idle_kib(int workers)
{
    double before = tree_pss_kib();
    crew_pool *q = pool2(workers);
    for (int i = 0; i < 1000; i++) {
        crew_future *f;
        crew_pool_submit(q, task_noop, NULL, 0, &f);
        crew_future_wait(f, CREW_FOREVER);
        crew_future_destroy(f);
    }
    usleep(50000); /* workers spin 20 us after their last task, then park */
    double kib = (tree_pss_kib() - before) / workers;
    crew_pool_destroy(q);
    return kib;
}

/* A second anchor, measured the same way: `n` raw fork children of this
 * bench process blocked in read(2). This parent is big (libraries, a grown
 * heap, threads), so its children cost more than crew's, which are forked
 * by the small forkserver; the fair anchor is bench_raw_fork_child_kib's
 * children of a fresh small parent. Kept for context. */
static double fork_idle_kib(int n)
{
    int hold[2], ready[2];
    if (pipe(hold) != 0 || pipe(ready) != 0)
        exit(1);
    double before = tree_pss_kib();
    pid_t pids[64];
    for (int k = 0; k < n; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            close(hold[1]);
            char c;
            if (write(ready[1], "r", 1) != 1)
                _exit(1);
            while (read(hold[0], &c, 1) > 0) {
            }
            _exit(0);
        }
    }
    for (int k = 0; k < n; k++) {
        char c;
        if (read(ready[0], &c, 1) != 1)
            exit(1);
    }
    usleep(50000);
    double kib = (tree_pss_kib() - before) / n;
    close(hold[1]);
    for (int k = 0; k < n; k++)
        waitpid(pids[k], NULL, 0);
    close(hold[0]), close(ready[0]), close(ready[1]);
    return kib;
}

/* ------------------------------------------------------------ crash detection
 * How long after a worker dies its task's future is done: the task writes
 * the time into a crew_shm region (passed by reference, so every start
 * method sees it) and kills its worker; the waiter notes when the future
 * turns CREW_ECRASHED. Includes the wake-up of the waiting thread. */
static int task_die(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                    size_t *rl)
{
    (void)t, (void)len, (void)res, (void)cap, (void)rl;
    prctl(PR_SET_DUMPABLE, 0); /* no core file for a deliberate crash */
    *(volatile double *)arg = now_ns();
    raise(SIGSEGV);
    return 0;
}

static bench_stat crash_detect_us(int reps)
{
    crew_pool_options o = {.kind = CREW_PROCESSES, .workers = WORKERS,
                           .breaker_crashes = 1000000};
    crew_pool *p;
    crew_shm *shm;
    if (crew_pool_create(&p, &o) != 0 || crew_shm_create(&shm, 4096, NULL) != 0)
        exit(1);
    double v[64];
    int n = 0;
    for (int r = 0; r < reps && r < 64; r++) {
        crew_future *f;
        /* a warm pool: the replacement of the last victim is running */
        crew_pool_submit(p, task_noop, NULL, 0, &f);
        crew_future_wait(f, CREW_FOREVER);
        crew_future_destroy(f);
        crew_pool_submit(p, task_noop, NULL, 0, &f);
        crew_future_wait(f, CREW_FOREVER);
        crew_future_destroy(f);
        if (crew_pool_submit_shm(p, task_die, shm, 0, sizeof(double), &f) != 0)
            exit(1);
        crew_future_wait(f, CREW_FOREVER);
        double done = now_ns();
        if (crew_future_status(f) == CREW_ECRASHED)
            v[n++] = (done - *(volatile double *)crew_shm_ptr(shm)) / 1000.0;
        crew_future_destroy(f);
    }
    crew_pool_destroy(p);
    crew_shm_destroy(shm);
    return bench_stat_of(v, n);
}

/* ------------------------------------------------------------ modes
 * Round trips between two processes move by 10x or more with where the
 * two land (two vCPUs: a wake-up on the other, idle vCPU goes through the
 * hypervisor). Each mode is measured and reported on its own: crew's round
 * trip (this thread and the pool's workers pinned) and the floor (parent
 * and child pinned) alternate round by round in the same mode. */
typedef struct place_mode {
    const char *name;
    int self_cpu, other_cpu; /* CPU indices; -1: not pinned */
} place_mode;
static const place_mode modes[] = {
    {"unpinned", -1, -1},
    {"1 CPU", 0, 0},
    {"2 CPUs", 0, 1},
};

static void round_trip_modes(int reps, long iters)
{
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        const place_mode *pm = &modes[m];
        int me = pm->self_cpu < 0 ? -1 : bench_cpu(pm->self_cpu);
        int other = pm->other_cpu < 0 ? -1 : bench_cpu(pm->other_cpu);
        if (pm->self_cpu >= 0 && (me < 0 || other < 0))
            continue; /* not enough CPUs for this mode */
        crew_pool *q = pool2(WORKERS);
        if (me >= 0 && (bench_pin(0, me) != 0 || bench_pin_children(other) != 0)) {
            fprintf(stderr, "bench_pool_procs: cannot pin for mode %s\n", pm->name);
            bench_pin(0, -1);
            bench_pin_children(-1);
            crew_pool_destroy(q);
            continue;
        }
        floor_session fs;
        if (!floor_start(&fs, other)) {
            fprintf(stderr, "bench_pool_procs: cannot start the floor\n");
            exit(1);
        }
        bench_stat c, fl;
        bench_measure2_stat(rt_fn, q, floor_batch, &fs, iters, reps, 0, &c, &fl);
        floor_stop(&fs);
        bench_pin(0, -1);
        bench_pin_children(-1);
        crew_pool_destroy(q);
        char name[96];
        snprintf(name, sizeof name, "round trip, one tiny task [%s]", pm->name);
        bench_fig f = {.group = GROUP, .name = name, .unit = "us", .mode = pm->name,
                       .crew = bench_stat_scale(c, 1e-3), .anchor = "raw spin+futex shm floor",
                       .anchor_value = bench_stat_scale(fl, 1e-3), .lower_is_better = true,
                       .goal = "close to 1x"};
        bench_report(&f);
    }
}

/* Ready to run: create + first result, 2 workers, forkserver warm; one
 * untimed start first, as anchors.py does for Python's. ms. */
static double ready_sample(void *ctx)
{
    (void)ctx;
    double v = 0;
    for (int k = 0; k < 2; k++) {
        double t0 = now_ns();
        crew_pool *q = pool2(WORKERS);
        crew_future *f;
        crew_pool_submit(q, task_noop, NULL, 0, &f);
        crew_future_wait(f, CREW_FOREVER);
        v = (now_ns() - t0) / 1e6;
        crew_future_destroy(f);
        crew_pool_destroy(q);
    }
    return v;
}

static void python_rows(crew_pool *p, map_ctx *mc, int reps)
{
    long py_rt = bench_iters(2000);
    py_vs rt = {"round trip, one tiny task", "ProcessPoolExecutor", "ppe_roundtrip_us", "us",
                "unpinned", ">= 200x, <= 1 us", true, py_rt, false, 1e-3, true};
    long crew_rt = bench_iters(100000);
    vs_py(&rt, rt_fn, NULL, p, crew_rt, reps);
    rt.anchor = "multiprocessing.Pool.apply", rt.key = "mp_apply_us", rt.goal = NULL;
    vs_py(&rt, rt_fn, NULL, p, crew_rt, reps);
    rt.anchor = "ThreadPoolExecutor (threads!)", rt.key = "tpe_roundtrip_us";
    rt.methods = false, rt.py_n = bench_iters(20000);
    vs_py(&rt, rt_fn, NULL, p, crew_rt, reps);

    long crew_tp = bench_iters(400000);
    py_vs tp = {"submit+wait no-op tasks", "ProcessPoolExecutor", "ppe_submit_tps", "tasks/s",
                NULL, ">= 200x, >= 2M/s", true, bench_iters(20000), true, 1e9, false};
    vs_py(&tp, tp_fn, NULL, p, crew_tp, reps);
    tp.anchor = "ThreadPoolExecutor (threads!)", tp.key = "tpe_submit_tps", tp.goal = NULL;
    tp.methods = false, tp.py_n = bench_iters(50000);
    vs_py(&tp, tp_fn, NULL, p, crew_tp, reps);

    py_vs mp = {"map 200k no-op items", "multiprocessing.Pool.map", "mp_map_tps", "items/s",
                NULL, ">= 40x", true, (long)mc->n, true, 1e9 * (double)mc->n, false};
    vs_py(&mp, map_fn, NULL, mc, bench_iters(20), reps);
    mp.anchor = "ProcessPoolExecutor.map/256", mp.key = "ppe_map_tps", mp.goal = NULL;
    vs_py(&mp, map_fn, NULL, mc, bench_iters(20), reps);

    py_vs st = {"ready to run (create + first result)", "ProcessPoolExecutor start",
                "ppe_start_ms", "ms", NULL, "<= 1 ms", true, 1, false, 1, true};
    vs_py(&st, NULL, ready_sample, NULL, 1, reps);
}

/* Idle memory per worker: what the process tree's PSS grows by, per
 * worker, for a crew pool of 16 and for 16 raw fork children -- the
 * definition crew compare uses (crew_mem_usage_tree; docs/compare.md). A
 * pool's fixed part (its shared memory, the monitor thread, the code pages
 * only workers touch) is spread over the 16. The fair anchor's children
 * come from a fresh small copy of this program, as crew's come from the
 * forkserver. Medians of 5, alternating. */
static void memory_rows(void)
{
    enum { IDLE_N = 16, R = 5 };
    double vc[R], vs[R], vb[R];
    int ns = 0;
    for (int r = 0; r < R; r++) {
        vc[r] = pool_idle_kib(IDLE_N);
        double k = bench_raw_fork_child_kib(IDLE_N);
        if (k >= 0)
            vs[ns++] = k;
        vb[r] = fork_idle_kib(IDLE_N);
    }
    bench_stat c = bench_stat_of(vc, R);
    const char *name = "idle worker memory (tree PSS added, pool of 16)";
    if (ns) {
        bench_fig f = {.group = GROUP, .name = name, .unit = "KiB", .crew = c,
                       .anchor = "idle raw fork child of a small parent (16)",
                       .anchor_value = bench_stat_of(vs, ns), .lower_is_better = true,
                       .goal = "<= 100 KiB"};
        bench_report(&f);
    } else {
        bench_missing(GROUP, "idle raw fork child of a small parent", "the helper failed");
    }
    bench_fig f = {.group = GROUP, .name = name, .unit = "KiB", .crew = c,
                   .anchor = "idle raw fork child of this bench (16)",
                   .anchor_value = bench_stat_of(vb, R), .lower_is_better = true};
    bench_report(&f);
}

int main(int argc, char **argv)
{
    bench_child_dispatch(argc, argv);
    printf("# process pool bench: %d workers, %d CPUs\n", WORKERS, crew_cpu_count());
    crew_forkserver_start();
    py_setup();
    int reps = bench_reps(7);

    bench_group("process pool vs Python and the raw shared-memory floor");
    crew_pool *p = pool2(WORKERS);
    map_ctx mc = {.p = p, .n = 200000};
    mc.in = calloc(mc.n, 4);
    mc.out = calloc(mc.n, 4);
    python_rows(p, &mc, reps);
    crew_pool_destroy(p);
    round_trip_modes(reps, bench_iters(100000));
    memory_rows();

    /* A worker dies: its future is done this long after the death. */
    bench_fig cf = {.group = GROUP, .name = "crash: death -> future CREW_ECRASHED", .unit = "us",
                    .crew = crash_detect_us(reps < 5 ? 5 : 3 * reps), .lower_is_better = true,
                    .goal = "<= 1000 us"};
    bench_report(&cf);

    /* 1 MiB argument: copy vs shm reference (same pool, same task). */
    {
        crew_pool_options o = {.kind = CREW_PROCESSES, .workers = WORKERS,
                               .max_arg_size = BIG_ARG};
        big_ctx c = {0};
        unsigned char *buf = malloc(BIG_ARG);
        if (!buf || crew_pool_create(&c.p, &o) != 0 ||
            crew_shm_create(&c.shm, BIG_ARG, NULL) != 0) {
            fprintf(stderr, "cannot set up the 1 MiB argument bench\n");
            return 1;
        }
        memset(buf, 7, BIG_ARG);
        memset(crew_shm_ptr(c.shm), 7, BIG_ARG);
        c.buf = buf;
        big_copy_fn(&c, 20); /* warm the slots' pages and the worker's mapping */
        big_shm_fn(&c, 20);
        bench_stat copy = bench_ns_per_op_stat(big_copy_fn, &c, bench_iters(2000), reps);
        bench_stat shm = bench_ns_per_op_stat(big_shm_fn, &c, bench_iters(20000), reps);
        bench_fig f = {.group = GROUP, .name = "1 MiB argument: copy vs shm reference",
                       .unit = "us", .crew = bench_stat_scale(shm, 1e-3),
                       .anchor = "the same 1 MiB copied (crew_pool_submit)",
                       .anchor_value = bench_stat_scale(copy, 1e-3), .lower_is_better = true,
                       .goal = ">= 10x"};
        bench_report(&f);
        crew_pool_destroy(c.p);
        crew_shm_destroy(c.shm);
        free(buf);
    }

    /* CPU-bound speedup on all cores, vs raw fork's speedup. */
    {
        int ncpu = crew_cpu_count();
        if (ncpu > 32)
            ncpu = 32;
        uint64_t hi = (uint64_t)(3000000 * bench_scale());
        int parts = ncpu * 8;
        crew_pool *p1 = pool2(1), *pn = pool2(ncpu);
        primes_pool(p1, hi / 20, parts);
        primes_pool(pn, hi / 20, parts);
        /* Several alternating runs: one run each moves by several % on
         * this machine. */
        enum { SR = 5 };
        double vr[SR], vc[SR];
        for (int r = 0; r < SR; r++) {
            vr[r] = primes_fork(hi, parts, 1) / primes_fork(hi, parts, ncpu);
            vc[r] = primes_pool(p1, hi, parts) / primes_pool(pn, hi, parts);
        }
        crew_pool_destroy(p1);
        crew_pool_destroy(pn);
        char name[64];
        snprintf(name, sizeof name, "CPU-bound speedup, %d workers vs 1", ncpu);
        bench_fig f = {.group = GROUP, .name = name, .unit = "x", .crew = bench_stat_of(vc, SR),
                       .anchor = "raw fork speedup", .anchor_value = bench_stat_of(vr, SR),
                       .lower_is_better = false, .goal = ">= 0.97x raw"};
        bench_report(&f);
    }
    free(mc.in);
    free(mc.out);
    return 0;
}
