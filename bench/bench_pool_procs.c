/*
 * bench_pool_procs.c -- the process pool against its anchors, in one run:
 *   - Python's ProcessPoolExecutor / multiprocessing.Pool (bench/anchors.py,
 *     run here with python3: $CREW_BENCH_PY or the script beside this file);
 *   - the raw floor: two processes ping-ponging one word in shared memory,
 *     each side spinning CREW__SPIN_NS (20 us) and then parking on a futex,
 *     i.e. the best any process pool built on shared memory can do here;
 *   - raw fork for CPU-bound speedup.
 * Figures: round trip of one tiny task, submit+wait throughput, map of
 * no-op items, CPU-bound speedup on all cores (medians of alternating
 * runs), idle memory per worker (process-tree PSS added per worker, pool of
 * 16 vs 16 raw fork children), time from a worker's death to its task's
 * CREW_ECRASHED,
 * pool ready-to-run time (create + first result) for 2 workers, and a 1 MiB
 * argument copied vs passed by reference in a crew_shm region.
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

typedef struct py_fig {
    const char *key;
    double value;
    int have;
} py_fig;

static py_fig py[] = {
    {"ppe_roundtrip_us", 0, 0}, {"mp_apply_us", 0, 0},   {"tpe_roundtrip_us", 0, 0},
    {"ppe_submit_tps", 0, 0},   {"tpe_submit_tps", 0, 0}, {"ppe_map_tps", 0, 0},
    {"mp_map_tps", 0, 0},       {"ppe_start_ms", 0, 0},
};
static const char *py_missing_why = NULL;

static double pyv(const char *key)
{
    for (size_t i = 0; i < sizeof py / sizeof py[0]; i++)
        if (strcmp(py[i].key, key) == 0 && py[i].have)
            return py[i].value;
    return 0;
}

static void run_python(void)
{
    char path[4096];
    const char *env = getenv("CREW_BENCH_PY");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        char src[4096];
        snprintf(src, sizeof src, "%s", __FILE__);
        snprintf(path, sizeof path, "%s/anchors.py", dirname(src));
    }
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        py_missing_why = "python3 not found";
        return;
    }
    if (access(path, R_OK) != 0) {
        py_missing_why = "bench/anchors.py not found";
        return;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "python3 '%s'", path);
    fflush(NULL);
    FILE *f = popen(cmd, "r");
    if (!f) {
        py_missing_why = "popen failed";
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') {
            printf("%s", line);
            continue;
        }
        char key[64];
        double v;
        if (sscanf(line, "%63s %lf", key, &v) != 2)
            continue;
        for (size_t i = 0; i < sizeof py / sizeof py[0]; i++)
            if (strcmp(py[i].key, key) == 0) {
                py[i].value = v;
                py[i].have = 1;
            }
    }
    if (pclose(f) != 0 && !pyv("ppe_roundtrip_us"))
        py_missing_why = "anchors.py failed";
}

static void row_vs_py(const char *name, double crew, const char *unit, const char *anchor,
                      const char *key, double scale, bool lower, const char *goal)
{
    double a = pyv(key);
    if (a > 0)
        bench_row(GROUP, name, crew, unit, anchor, a * scale, lower, goal);
    else {
        bench_row(GROUP, name, crew, unit, NULL, 0, lower, goal);
        bench_missing(GROUP, anchor, py_missing_why ? py_missing_why : "no figure");
    }
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

static double raw_floor_us(long iters)
{
    pingpong *pp = mmap(NULL, sizeof *pp, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
    if (pp == MAP_FAILED)
        return 0;
    memset(pp, 0, sizeof *pp);
    long total = iters * 6 + iters / 10 + 1;
    /* The floor is the best case: the two sides on two different CPUs (if
     * the scheduler put them on one, each hand-off would cost a whole spin
     * budget). The parent's affinity is restored afterwards. */
    cpu_set_t old_set, one;
    bool pinned = false;
    if (crew_cpu_count() >= 2 && sched_getaffinity(0, sizeof old_set, &old_set) == 0) {
        int cpus[2], k = 0;
        for (int i = 0; i < CPU_SETSIZE && k < 2; i++)
            if (CPU_ISSET(i, &old_set))
                cpus[k++] = i;
        if (k == 2) {
            CPU_ZERO(&one);
            CPU_SET(cpus[0], &one);
            pinned = sched_setaffinity(0, sizeof one, &one) == 0;
            CPU_ZERO(&one);
            CPU_SET(cpus[1], &one);
        }
    }
    pid_t c = fork();
    if (c == 0) {
        if (pinned)
            sched_setaffinity(0, sizeof one, &one);
        for (long i = 1; i <= total; i++) {
            raw_wait(&pp->ping, &pp->ping_sleep, (uint32_t)(i - 1));
            raw_post(&pp->pong, &pp->pong_sleep, (uint32_t)i);
        }
        _exit(0);
    }
    long n = 0;
    for (long i = 0; i < iters / 10 + 1; i++) { /* warm up */
        n++;
        raw_post(&pp->ping, &pp->ping_sleep, (uint32_t)n);
        raw_wait(&pp->pong, &pp->pong_sleep, (uint32_t)(n - 1));
    }
    double v[5];
    for (int r = 0; r < 5; r++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            n++;
            raw_post(&pp->ping, &pp->ping_sleep, (uint32_t)n);
            raw_wait(&pp->pong, &pp->pong_sleep, (uint32_t)(n - 1));
        }
        v[r] = (now_ns() - t0) / (double)iters / 1000.0;
    }
    /* let the child finish its count */
    while (n < total) {
        n++;
        raw_post(&pp->ping, &pp->ping_sleep, (uint32_t)n);
        raw_wait(&pp->pong, &pp->pong_sleep, (uint32_t)(n - 1));
    }
    waitpid(c, NULL, 0);
    if (pinned)
        sched_setaffinity(0, sizeof old_set, &old_set);
    munmap(pp, sizeof *pp);
    return bench_median(v, 5);
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

/* The anchor, measured the same way: `n` raw fork children blocked in
 * read(2) (a Python-style idle forked worker). */
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

static double crash_detect_us(int reps)
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
    return n ? bench_median(v, n) : -1;
}

int main(void)
{
    printf("# process pool bench: %d workers, %d CPUs\n", WORKERS, crew_cpu_count());
    crew_forkserver_start();
    run_python();
    int reps = bench_reps(7);

    bench_group("process pool vs Python and the raw shared-memory floor");
    double floor_us = raw_floor_us(bench_iters(100000));

    crew_pool *p = pool2(WORKERS);
    double rt_us = bench_ns_per_op(rt_fn, p, bench_iters(100000), reps) / 1000.0;
    row_vs_py("round trip, one tiny task", rt_us, "us", "ProcessPoolExecutor", "ppe_roundtrip_us",
              1.0, true, ">= 200x, <= 1 us");
    row_vs_py("round trip, one tiny task", rt_us, "us", "multiprocessing.Pool.apply",
              "mp_apply_us", 1.0, true, NULL);
    row_vs_py("round trip, one tiny task", rt_us, "us", "ThreadPoolExecutor (threads!)",
              "tpe_roundtrip_us", 1.0, true, NULL);
    bench_row(GROUP, "round trip, one tiny task", rt_us, "us", "raw spin+futex shm floor",
              floor_us, true, "close to 1x");

    double tp_ns = bench_ns_per_op(tp_fn, p, bench_iters(400000), reps);
    double tps = 1e9 / tp_ns;
    row_vs_py("submit+wait no-op tasks", tps, "tasks/s", "ProcessPoolExecutor", "ppe_submit_tps",
              1.0, false, ">= 200x, >= 2M/s");
    row_vs_py("submit+wait no-op tasks", tps, "tasks/s", "ThreadPoolExecutor (threads!)",
              "tpe_submit_tps", 1.0, false, NULL);

    map_ctx mc = {.p = p, .n = 200000};
    mc.in = calloc(mc.n, 4);
    mc.out = calloc(mc.n, 4);
    double map_ns = bench_ns_per_op(map_fn, &mc, bench_iters(20), reps) / (double)mc.n;
    double map_tps = 1e9 / map_ns;
    row_vs_py("map 200k no-op items", map_tps, "items/s", "multiprocessing.Pool.map",
              "mp_map_tps", 1.0, false, ">= 40x");
    row_vs_py("map 200k no-op items", map_tps, "items/s", "ProcessPoolExecutor.map/256",
              "ppe_map_tps", 1.0, false, NULL);

    crew_pool_destroy(p);

    /* Idle memory per worker: what the process tree's PSS grows by, per
     * worker, for a crew pool of 16 and for 16 raw fork children -- the
     * definition crew compare uses (crew_mem_usage_tree; docs/compare.md).
     * A pool's fixed part (its shared memory, the monitor thread, the code
     * pages only workers touch) is spread over the 16. Medians of 5,
     * alternating. */
    {
        enum { IDLE_N = 16 };
        double vc[5], vf[5];
        for (int r = 0; r < 5; r++) {
            vc[r] = pool_idle_kib(IDLE_N);
            vf[r] = fork_idle_kib(IDLE_N);
        }
        bench_row(GROUP, "idle worker memory (tree PSS added, pool of 16)", bench_median(vc, 5),
                  "KiB", "idle raw fork child (16)", bench_median(vf, 5), true, "<= 100 KiB");
    }

    /* A worker dies: its future is done this long after the death. */
    bench_row(GROUP, "crash: death -> future CREW_ECRASHED", crash_detect_us(reps < 5 ? 5 : 3 * reps),
              "us", NULL, 0, true, "<= 1000 us");

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
        double copy_us = bench_ns_per_op(big_copy_fn, &c, bench_iters(2000), reps) / 1000.0;
        double shm_us = bench_ns_per_op(big_shm_fn, &c, bench_iters(20000), reps) / 1000.0;
        bench_row(GROUP, "1 MiB argument: copy vs shm reference", shm_us, "us",
                  "the same 1 MiB copied (crew_pool_submit)", copy_us, true, ">= 10x");
        crew_pool_destroy(c.p);
        crew_shm_destroy(c.shm);
        free(buf);
    }

    /* Ready to run: create + first result, 2 workers, forkserver warm. */
    {
        double v[16];
        int n = reps < 16 ? reps : 16;
        for (int r = 0; r < n; r++) {
            double t0 = now_ns();
            crew_pool *q = pool2(WORKERS);
            crew_future *f;
            crew_pool_submit(q, task_noop, NULL, 0, &f);
            crew_future_wait(f, CREW_FOREVER);
            v[r] = (now_ns() - t0) / 1e6;
            crew_future_destroy(f);
            crew_pool_destroy(q);
        }
        double ready = bench_median(v, n);
        row_vs_py("ready to run (create + first result)", ready, "ms",
                  "ProcessPoolExecutor start", "ppe_start_ms", 1.0, true, "<= 1 ms");
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
        /* Medians of several alternating runs: one run each moves by
         * several % on this machine. */
        enum { SR = 5 };
        double vr[SR], vc[SR];
        for (int r = 0; r < SR; r++) {
            vr[r] = primes_fork(hi, parts, 1) / primes_fork(hi, parts, ncpu);
            vc[r] = primes_pool(p1, hi, parts) / primes_pool(pn, hi, parts);
        }
        crew_pool_destroy(p1);
        crew_pool_destroy(pn);
        double raw_speedup = bench_median(vr, SR), crew_speedup = bench_median(vc, SR);
        char name[64];
        snprintf(name, sizeof name, "CPU-bound speedup, %d workers vs 1", ncpu);
        bench_row(GROUP, name, crew_speedup, "x", "raw fork speedup", raw_speedup, false,
                  ">= 0.97x raw");
    }
    free(mc.in);
    free(mc.out);
    return 0;
}
