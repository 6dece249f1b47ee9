/* Zero-copy arguments and results: crew_pool_submit_shm and crew_pool_map
 * over records in a crew_shm region, on thread pools and on process pools of
 * every start method. The task proves it got the region's own bytes (its
 * arg pointer lies in its crew_task_shm mapping at the submitted offset, and
 * a mark it writes through arg is seen by the parent), writes results into
 * the region in place, and the parent sees them. Also: regions created after
 * the pool started, more regions than the pool's table holds, a crash on a
 * shm task (the replacement still gets regions), recycled workers, errors,
 * and no leaked fd, mapping or child after destroy. */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------ tasks */

/* The argument of shm_task: a header followed by `n` payload bytes. */
typedef struct shm_job {
    uint64_t self_off;  /* where this job lies in the region (for the no-copy check) */
    uint64_t out_off;   /* where to write the result record */
    uint64_t n;         /* payload bytes */
    uint32_t mark;      /* the task writes 0x600d through arg here */
    uint32_t crash;     /* 1: die by SIGKILL instead */
    unsigned char payload[];
} shm_job;

typedef struct shm_out {
    uint64_t sum;       /* of the payload bytes */
    uint64_t heap_off;  /* a block the task allocated in the region (heap regions), 0 none */
    int32_t in_place;   /* 1: arg was the region's own bytes at self_off */
    int32_t pid;
} shm_out;

static int shm_task(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)res, (void)cap, (void)rl;
    crew_shm *s = crew_task_shm(t);
    if (!s || len < sizeof(shm_job))
        return CREW_EINVAL;
    shm_job *j = (shm_job *)(uintptr_t)arg; /* the region's bytes: writable */
    if (j->crash) {
        signal(SIGKILL, SIG_DFL);
        raise(SIGKILL);
    }
    unsigned char *base = crew_shm_ptr(s);
    shm_out o = {0};
    o.in_place = (const unsigned char *)arg == base + j->self_off;
    for (uint64_t i = 0; i < j->n; i++)
        o.sum += j->payload[i];
    o.pid = (int32_t)getpid();
    size_t hoff = 0;
    if (crew_shm_alloc(s, 64, &hoff) == 0) {
        memset(crew_shm_at(s, hoff), 0x5a, 64);
        o.heap_off = hoff;
    }
    j->mark = 0x600d;
    shm_out *dst = crew_shm_at(s, (size_t)j->out_off);
    if (!dst)
        return CREW_ERANGE;
    memcpy(dst, &o, sizeof o);
    return 0;
}

/* Map item: in int64 x -> out {x*x, in_place flags}. */
typedef struct sq_out {
    int64_t v;
    int32_t arg_in_region, res_in_region;
} sq_out;

static int in_region(crew_shm *s, const void *p, size_t len)
{
    if (!s)
        return 0;
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)crew_shm_ptr(s);
    return a >= b && a + len <= b + crew_shm_size(s);
}

static int sq_item(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)rl;
    if (len != sizeof(int64_t) || cap != sizeof(sq_out))
        return CREW_EINVAL;
    int64_t x;
    memcpy(&x, arg, sizeof x);
    if (x % 1000 == 999)
        return CREW_EIO; /* a per-item failure */
    crew_shm *s = crew_task_shm(t);
    sq_out o = {x * x, in_region(s, arg, len), in_region(s, res, cap)};
    memcpy(res, &o, sizeof o);
    return 0;
}

/* ------------------------------------------------------------ helpers */

typedef struct leakprobe {
    int fds, maps, children;
} leakprobe;

static leakprobe probe(void)
{
    leakprobe l = {test_count_fds(), test_count_shm_maps(), test_count_children()};
    return l;
}

static void check_no_leak(leakprobe before)
{
    leakprobe now = probe();
    CHECK_EQ(now.fds, before.fds);
    CHECK_EQ(now.maps, before.maps);
    CHECK_EQ(now.children, before.children);
}

typedef struct kind_method {
    int kind, method;
    const char *name;
} kind_method;

static const kind_method kms[] = {
    {CREW_THREADS, 0, "threads"},
    {CREW_PROCESSES, CREW_START_FORK, "fork"},
    {CREW_PROCESSES, CREW_START_SPAWN, "spawn"},
    {CREW_PROCESSES, CREW_START_FORKSERVER, "forkserver"},
};
#define NKM (sizeof kms / sizeof kms[0])

static crew_pool *pool_of(const kind_method *km, int workers, unsigned max_tasks)
{
    crew_pool_options o = {.kind = km->kind,
                           .workers = workers,
                           .start_method = km->method,
                           .max_arg_size = 256, /* shm args are far bigger: no slot space used */
                           .max_result_size = 256,
                           .max_tasks_per_worker = max_tasks};
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    return p;
}

/* Puts a job of n payload bytes at `off` in s (result record at out_off). */
static size_t put_job(crew_shm *s, size_t off, size_t n, size_t out_off, uint32_t crash,
                      uint64_t *sum)
{
    shm_job *j = crew_shm_at(s, off);
    CHECK(j != NULL);
    j->self_off = off;
    j->out_off = out_off;
    j->n = n;
    j->mark = 0;
    j->crash = crash;
    *sum = 0;
    for (size_t i = 0; i < n; i++) {
        j->payload[i] = (unsigned char)(i * 7 + off);
        *sum += j->payload[i];
    }
    return sizeof(shm_job) + n;
}

/* Submits one job in s and checks everything the task reports. */
static void run_job(crew_pool *p, crew_shm *s, size_t off, size_t n, size_t out_off)
{
    uint64_t sum;
    size_t len = put_job(s, off, n, out_off, 0, &sum);
    memset(crew_shm_at(s, out_off), 0, sizeof(shm_out));
    crew_future *f;
    CHECK_OK(crew_pool_submit_shm(p, shm_task, s, off, len, &f));
    CHECK_OK(crew_future_wait(f, 30));
    CHECK_EQ(crew_future_status(f), 0);
    CHECK_OK(crew_future_destroy(f));
    shm_job *j = crew_shm_at(s, off);
    CHECK_EQ(j->mark, 0x600d); /* written through arg: arg was the region */
    shm_out o;
    memcpy(&o, crew_shm_at(s, out_off), sizeof o);
    CHECK_EQ(o.sum, sum);
    CHECK_EQ(o.in_place, 1);
    if (o.heap_off) {
        const unsigned char *h = crew_shm_at(s, (size_t)o.heap_off);
        CHECK(h != NULL);
        CHECK_EQ(h[0], 0x5a);
        CHECK_EQ(h[63], 0x5a);
        CHECK_OK(crew_shm_free(s, (size_t)o.heap_off));
    }
}

/* ------------------------------------------------------------ cases */

static void test_submit_shm_every_backend(void)
{
    crew_forkserver_start();
    for (size_t k = 0; k < NKM; k++) {
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 2, 0);
        /* Created after the pool (and its workers) started. */
        crew_shm_options so = {.heap = 1};
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, 1 << 20, &so));
        size_t off, outoff;
        CHECK_OK(crew_shm_alloc(s, 300000, &off));
        CHECK_OK(crew_shm_alloc(s, sizeof(shm_out), &outoff));
        /* 300 KB argument, far above max_arg_size (256). */
        for (int r = 0; r < 4; r++)
            run_job(p, s, off, 300000 - sizeof(shm_job), outoff);
        /* Small ones at other offsets, several in flight at once. */
        enum { N = 16 };
        crew_future *fs[N];
        size_t offs[N], outs[N];
        uint64_t sums[N];
        for (int i = 0; i < N; i++) {
            CHECK_OK(crew_shm_alloc(s, 1000, &offs[i]));
            CHECK_OK(crew_shm_alloc(s, sizeof(shm_out), &outs[i]));
            size_t len = put_job(s, offs[i], 1000 - sizeof(shm_job), outs[i], 0, &sums[i]);
            CHECK_OK(crew_pool_submit_shm(p, shm_task, s, offs[i], len, &fs[i]));
        }
        CHECK_OK(crew_wait_all(fs, N, 30));
        for (int i = 0; i < N; i++) {
            CHECK_EQ(crew_future_status(fs[i]), 0);
            crew_future_destroy(fs[i]);
            shm_out o;
            memcpy(&o, crew_shm_at(s, outs[i]), sizeof o);
            CHECK_EQ(o.sum, sums[i]);
            CHECK_EQ(o.in_place, 1);
            if (kms[k].kind == CREW_PROCESSES)
                CHECK(o.pid != getpid());
            else
                CHECK_EQ(o.pid, getpid());
        }
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(s));
        check_no_leak(before);
    }
}

/* More regions than the pool's table (64), one after another, each
 * destroyed after use; then 70 live regions used in turn twice. */
static void test_many_regions(void)
{
    crew_forkserver_start();
    for (size_t k = 0; k < NKM; k++) {
        if (kms[k].kind == CREW_PROCESSES && kms[k].method != CREW_START_FORKSERVER &&
            TEST_SANITIZED)
            continue; /* the same code path; keep the sanitized run short */
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 2, 0);
        int rounds = TEST_SANITIZED ? 90 : 150;
        for (int r = 0; r < rounds; r++) {
            crew_shm *s;
            CHECK_OK(crew_shm_create(&s, 8192, NULL));
            run_job(p, s, 64, 100 + (size_t)r, 4096);
            CHECK_OK(crew_shm_destroy(s));
        }
        enum { NR = 70 };
        crew_shm *rs[NR];
        for (int i = 0; i < NR; i++)
            CHECK_OK(crew_shm_create(&rs[i], 8192, NULL));
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < NR; i++)
                run_job(p, rs[i], 128, 200, 4096);
        for (int i = 0; i < NR; i++)
            CHECK_OK(crew_shm_destroy(rs[i]));
        CHECK_OK(crew_pool_destroy(p));
        check_no_leak(before);
    }
}

static void check_map(crew_pool *p, int64_t *in, sq_out *out, size_t n, bool in_shm, bool out_shm,
                      bool processes)
{
    int *st = malloc(n * sizeof *st);
    CHECK(st != NULL);
    for (size_t i = 0; i < n; i++) {
        in[i] = (int64_t)i;
        memset(&out[i], 0, sizeof out[i]);
    }
    size_t chunks[] = {0, 1, 7};
    for (size_t c = 0; c < 3; c++) {
        crew_map_options o = {.chunk_size = chunks[c], .statuses = st};
        int rc = crew_pool_map(p, sq_item, in, sizeof *in, out, sizeof *out, n, &o);
        CHECK_EQ(rc, n > 999 ? CREW_EIO : 0);
        for (size_t i = 0; i < n; i++) {
            if (i % 1000 == 999) {
                CHECK_EQ(st[i], CREW_EIO);
                continue;
            }
            CHECK_EQ(st[i], 0);
            CHECK_EQ(out[i].v, (int64_t)(i * i));
            /* crew_task_shm names the input's region, else the output's. */
            if (in_shm)
                CHECK_EQ(out[i].arg_in_region, 1);
            if (in_shm && out_shm)
                CHECK_EQ(out[i].res_in_region, 1);
            if (!in_shm && out_shm)
                CHECK_EQ(out[i].res_in_region, 1);
            if (processes && !in_shm && !out_shm)
                CHECK_EQ(out[i].arg_in_region, 0);
        }
    }
    free(st);
}

static void test_map_in_region(void)
{
    crew_forkserver_start();
    for (size_t k = 0; k < NKM; k++) {
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 2, 0);
        bool procs = kms[k].kind == CREW_PROCESSES;
        size_t n = TEST_SANITIZED ? 3000 : 20000;
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, n * (sizeof(int64_t) + sizeof(sq_out)) + 4096, NULL));
        int64_t *rin = crew_shm_ptr(s);
        sq_out *rout = (sq_out *)(void *)((char *)crew_shm_ptr(s) + n * sizeof(int64_t));
        int64_t *hin = malloc(n * sizeof *hin);
        sq_out *hout = malloc(n * sizeof *hout);
        CHECK(hin && hout);
        check_map(p, rin, rout, n, true, true, procs);  /* both in the region */
        check_map(p, rin, hout, n, true, false, procs); /* only the input */
        check_map(p, hin, rout, n, false, true, procs); /* only the output */
        check_map(p, hin, hout, n, false, false, procs); /* neither: copied as before */
        /* Asynchronous, waited from another call. */
        crew_future *f;
        CHECK_OK(crew_pool_map_submit(p, sq_item, rin, sizeof *rin, rout, sizeof *rout, 500, NULL,
                                      &f));
        CHECK_OK(crew_future_wait(f, 30));
        CHECK_EQ(crew_future_status(f), 0);
        crew_future_destroy(f);
        for (size_t i = 0; i < 500; i++)
            CHECK_EQ(rout[i].v, (int64_t)(i * i));
        free(hin);
        free(hout);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(s));
        check_no_leak(before);
    }
}

static void test_errors(void)
{
    crew_forkserver_start();
    for (size_t k = 0; k < NKM; k += 3) { /* threads and forkserver */
        crew_pool *p = pool_of(&kms[k], 1, 0);
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, 4096, NULL));
        crew_future *f = NULL;
        CHECK_ERR(crew_pool_submit_shm(NULL, shm_task, s, 0, 8, &f), CREW_EINVAL);
        CHECK_ERR(crew_pool_submit_shm(p, NULL, s, 0, 8, &f), CREW_EINVAL);
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, NULL, 0, 8, &f), CREW_EINVAL);
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, s, 0, 8, NULL), CREW_EINVAL);
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, s, 4097, 0, &f), CREW_ERANGE);
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, s, 4000, 97, &f), CREW_ERANGE);
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, s, 1, SIZE_MAX, &f), CREW_ERANGE);
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, s, SIZE_MAX, 2, &f), CREW_ERANGE);
        CHECK(f == NULL);
        /* The whole region, and an empty argument at its end, are fine
         * (the task rejects a too-short job: its status comes back). */
        CHECK_OK(crew_pool_submit_shm(p, shm_task, s, 4096, 0, &f));
        CHECK_OK(crew_future_wait(f, 30));
        CHECK_EQ(crew_future_status(f), CREW_EINVAL);
        crew_future_destroy(f);
        CHECK(crew_task_shm(NULL) == NULL);
        CHECK_OK(crew_pool_shutdown(p, 0));
        CHECK_ERR(crew_pool_submit_shm(p, shm_task, s, 0, 8, &f), CREW_ESHUTDOWN);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(s));
    }
}

/* A task that is not a shm task sees no region. */
static int no_region(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    return crew_task_shm(t) == NULL ? 0 : CREW_EEXIST;
}

static void test_plain_task_has_no_region(void)
{
    crew_forkserver_start();
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 4096, NULL)); /* a live region that is not the arg */
    for (size_t k = 0; k < NKM; k += 3) {
        crew_pool *p = pool_of(&kms[k], 1, 0);
        crew_future *f;
        CHECK_OK(crew_pool_submit(p, no_region, "x", 1, &f));
        CHECK_OK(crew_future_wait(f, 30));
        CHECK_EQ(crew_future_status(f), 0);
        crew_future_destroy(f);
        CHECK_OK(crew_pool_destroy(p));
    }
    CHECK_OK(crew_shm_destroy(s));
}

/* A worker dies on a shm task: CREW_ECRASHED; its replacement maps the
 * region again (and a new one) and runs the next tasks. */
static void test_crash_on_shm_task(void)
{
    crew_forkserver_start();
    for (size_t k = 1; k < NKM; k++) {
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 1, 0);
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, 16384, NULL));
        run_job(p, s, 0, 100, 8192);
        uint64_t sum;
        size_t len = put_job(s, 1024, 10, 8192, 1, &sum);
        crew_future *f;
        CHECK_OK(crew_pool_submit_shm(p, shm_task, s, 1024, len, &f));
        CHECK_OK(crew_future_wait(f, 30));
        CHECK_EQ(crew_future_status(f), CREW_ECRASHED);
        crew_failure fl;
        CHECK_OK(crew_future_failure(f, &fl));
        CHECK_EQ(fl.signal, SIGKILL);
        crew_future_destroy(f);
        run_job(p, s, 2048, 500, 8192);
        crew_shm *s2;
        CHECK_OK(crew_shm_create(&s2, 8192, NULL));
        run_job(p, s2, 0, 100, 4096);
        crew_pool_stats st;
        CHECK_OK(crew_pool_stats_get(p, &st));
        CHECK_EQ(st.crashed, 1u);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(s));
        CHECK_OK(crew_shm_destroy(s2));
        check_no_leak(before);
    }
}

/* Workers recycled after every task still get every region. */
static void test_recycled_workers(void)
{
    crew_forkserver_start();
    for (size_t k = 1; k < NKM; k++) {
        if (kms[k].method != CREW_START_FORKSERVER && TEST_SANITIZED)
            continue; /* one start method is enough under a sanitizer */
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 2, 1);
        crew_shm *a, *b;
        CHECK_OK(crew_shm_create(&a, 8192, NULL));
        CHECK_OK(crew_shm_create(&b, 8192, NULL));
        int n = TEST_SANITIZED ? 6 : 12;
        for (int i = 0; i < n; i++)
            run_job(p, i % 2 ? a : b, 0, 64 + (size_t)i, 4096);
        crew_pool_stats st;
        CHECK_OK(crew_pool_stats_get(p, &st));
        CHECK(st.workers_started >= (uint64_t)n);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(a));
        CHECK_OK(crew_shm_destroy(b));
        check_no_leak(before);
    }
}

/* Cancelling queued shm tasks and shutting down with shm tasks pending
 * releases the pool's hold on their regions (the pool can then take 64
 * other regions: more than that in flight would return CREW_EAGAIN). */
static int slow_task(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    while (!crew_task_cancelled(t))
        usleep(1000);
    return 0;
}

static void test_cancel_releases_regions(void)
{
    crew_forkserver_start();
    leakprobe before = probe();
    crew_pool *p = pool_of(&kms[3], 1, 0);
    crew_future *blocker;
    CHECK_OK(crew_pool_submit(p, slow_task, NULL, 0, &blocker));
    enum { NR = 64 };
    crew_shm *rs[NR + 1];
    crew_future *fs[NR];
    for (int i = 0; i <= NR; i++)
        CHECK_OK(crew_shm_create(&rs[i], 4096, NULL));
    for (int i = 0; i < NR; i++)
        CHECK_OK(crew_pool_submit_shm(p, shm_task, rs[i], 0, 64, &fs[i]));
    /* The table is full of regions queued tasks use. */
    crew_future *extra = NULL;
    CHECK_ERR(crew_pool_submit_shm(p, shm_task, rs[NR], 0, 64, &extra), CREW_EAGAIN);
    for (int i = 0; i < NR; i++) {
        CHECK_OK(crew_future_cancel(fs[i]));
        CHECK_OK(crew_future_wait(fs[i], 30));
        CHECK_EQ(crew_future_status(fs[i]), CREW_ECANCELED);
        crew_future_destroy(fs[i]);
    }
    /* Now room again (a queued-then-cancelled region is not in use). */
    CHECK_OK(crew_pool_submit_shm(p, shm_task, rs[NR], 0, 64, &extra));
    CHECK_OK(crew_future_cancel(blocker));
    CHECK_OK(crew_future_wait(extra, 30));
    crew_future_destroy(extra);
    crew_future_destroy(blocker);
    CHECK_OK(crew_pool_destroy(p));
    for (int i = 0; i <= NR; i++)
        CHECK_OK(crew_shm_destroy(rs[i]));
    check_no_leak(before);
}

/* Lines of /proc/<pid>/maps that map the memfd called `name`. */
static int maps_of(pid_t pid, const char *name)
{
    char path[64], needle[80], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    snprintf(needle, sizeof needle, "/memfd:%s ", name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* What keeps a destroyed region alive: the pool's fd until it meets a new
 * region (then it lets go), the worker's mapping until it goes idle after
 * that (then it unmaps). */
static void test_destroyed_region_released(void)
{
    crew_forkserver_start();
    for (size_t k = 2; k < NKM; k++) { /* spawn, forkserver */
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 1, 0);
        int fds0 = test_count_fds();
        crew_shm_options oa = {.name = "crew-test-a"}, ob = {.name = "crew-test-b"};
        crew_shm *a, *b;
        CHECK_OK(crew_shm_create(&a, 8192, &oa));
        run_job(p, a, 0, 100, 4096);
        shm_out o;
        memcpy(&o, crew_shm_at(a, 4096), sizeof o);
        pid_t wpid = (pid_t)o.pid;
        CHECK_EQ(maps_of(wpid, "crew-test-a"), 1); /* the worker mapped it */
        CHECK_EQ(test_count_fds(), fds0 + 2);      /* ours + the pool's duplicate */
        CHECK_OK(crew_shm_destroy(a));
        CHECK_EQ(test_count_fds(), fds0 + 1);      /* the pool still holds it */
        CHECK_OK(crew_shm_create(&b, 8192, &ob));
        run_job(p, b, 0, 100, 4096);               /* a new region: a's entry is dropped */
        CHECK_EQ(test_count_fds(), fds0 + 2);      /* b + the pool's duplicate of b */
        /* The worker unmaps a when it next goes idle (it parks after its
         * spin): poll its maps, with a deadline. */
        double t0 = crew_now();
        while (maps_of(wpid, "crew-test-a") != 0 && crew_now() - t0 < 20)
            usleep(1000);
        CHECK_EQ(maps_of(wpid, "crew-test-a"), 0);
        CHECK_EQ(maps_of(wpid, "crew-test-b"), 1);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(b));
        check_no_leak(before);
    }
}

/* Several threads at once: each churns regions of its own (create, submit
 * a few jobs, destroy) while the main thread runs maps over a region, so
 * registrations, evictions and registry lookups race. */
typedef struct churn_arg {
    crew_pool *p;
    int rounds;
} churn_arg;

static void *churn_main(void *v)
{
    churn_arg *a = v;
    for (int r = 0; r < a->rounds; r++) {
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, 16384, NULL));
        for (int j = 0; j < 3; j++)
            run_job(a->p, s, (size_t)j * 4096, 300 + (size_t)r, (size_t)j * 4096 + 2048);
        CHECK_OK(crew_shm_destroy(s));
    }
    return NULL;
}

static void test_concurrent_submitters(void)
{
    crew_forkserver_start();
    for (size_t k = 0; k < NKM; k += 3) { /* threads and forkserver */
        leakprobe before = probe();
        crew_pool *p = pool_of(&kms[k], 2, 0);
        enum { NT = 3 };
        pthread_t th[NT];
        churn_arg ca = {p, TEST_SANITIZED ? 30 : 100};
        for (int i = 0; i < NT; i++)
            CHECK_EQ(pthread_create(&th[i], NULL, churn_main, &ca), 0);
        size_t n = 2000;
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, n * (sizeof(int64_t) + sizeof(sq_out)), NULL));
        int64_t *in = crew_shm_ptr(s);
        sq_out *out = (sq_out *)(void *)(in + n);
        for (int r = 0; r < (TEST_SANITIZED ? 5 : 20); r++) {
            for (size_t i = 0; i < n; i++)
                in[i] = (int64_t)i + r;
            crew_map_options o = {.chunk_size = 50};
            int rc = crew_pool_map(p, sq_item, in, sizeof *in, out, sizeof *out, n, &o);
            CHECK(rc == 0 || rc == CREW_EIO);
            for (size_t i = 0; i < n; i++)
                if ((int64_t)(i + (size_t)r) % 1000 != 999) {
                    CHECK_EQ(out[i].v, (int64_t)(i + (size_t)r) * (int64_t)(i + (size_t)r));
                    CHECK_EQ(out[i].arg_in_region, 1);
                }
        }
        for (int i = 0; i < NT; i++)
            CHECK_EQ(pthread_join(th[i], NULL), 0);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(s));
        check_no_leak(before);
    }
}

static const test_case cases[] = {
    TEST_CASE(test_submit_shm_every_backend),
    TEST_CASE(test_many_regions),
    TEST_CASE(test_map_in_region),
    TEST_CASE(test_errors),
    TEST_CASE(test_plain_task_has_no_region),
    TEST_CASE(test_crash_on_shm_task),
    TEST_CASE(test_recycled_workers),
    TEST_CASE(test_cancel_releases_regions),
    TEST_CASE(test_destroyed_region_released),
    TEST_CASE(test_concurrent_submitters),
};
TEST_MAIN_NOHELPERS(cases)
