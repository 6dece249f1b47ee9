/* crew_pool_map / crew_pool_map_submit on the thread backend: results,
 * per-item statuses, the first failure, chunking, progress from another
 * thread, cancel, input errors. */
#include "crew_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static int sq(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    CHECK(al == sizeof(long) && rc == sizeof(long));
    long v = *(const long *)a;
    *(long *)r = v * v;
    *rl = rc;
    return 0;
}

/* Fails items whose value is divisible by 7 (with ERANGE), 0 included. */
static int sq_fail7(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    long v = *(const long *)a;
    if (v % 7 == 0)
        return CREW_ERANGE;
    *(long *)r = v * v;
    return 0;
}

static int noop(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    return 0;
}

static void test_map_results(void)
{
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, NULL));
    size_t ns[] = {1, 2, 3, 7, 100, 1000, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        long *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
        int *st = malloc(n * sizeof *st);
        for (size_t i = 0; i < n; i++) {
            in[i] = (long)i + 1;
            st[i] = 12345;
        }
        crew_map_options o = {.chunk_size = 0, .statuses = st};
        CHECK_OK(crew_pool_map(p, sq, in, sizeof *in, out, sizeof *out, n, &o));
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(out[i], in[i] * in[i]);
            CHECK_EQ(st[i], 0);
        }
        /* Fixed chunks, including ones that do not divide n. */
        size_t chunks[] = {1, 3, 64, n + 5};
        for (size_t c = 0; c < 4; c++) {
            memset(out, 0, n * sizeof *out);
            crew_map_options oc = {.chunk_size = chunks[c]};
            CHECK_OK(crew_pool_map(p, sq, in, sizeof *in, out, sizeof *out, n, &oc));
            for (size_t i = 0; i < n; i++)
                CHECK_EQ(out[i], in[i] * in[i]);
        }
        free(in);
        free(out);
        free(st);
    }
    /* Items with no input and no output at all. */
    CHECK_OK(crew_pool_map(p, noop, NULL, 0, NULL, 0, 5000, NULL));
    crew_pool_stats s;
    CHECK_OK(crew_pool_stats_get(p, &s));
    /* Stats count items: each n five times, then the 5000 empty ones. */
    CHECK_EQ(s.submitted, (1 + 2 + 3 + 7 + 100 + 1000 + 100003) * 5 + 5000);
    CHECK_EQ(s.completed, s.submitted);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_map_failures(void)
{
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, NULL));
    size_t n = 1000;
    long *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
    int *st = malloc(n * sizeof *st);
    for (size_t i = 0; i < n; i++)
        in[i] = (long)i + 1; /* item i fails when i+1 is divisible by 7: i = 6, 13, ... */
    crew_map_options o = {.statuses = st};
    CHECK_ERR(crew_pool_map(p, sq_fail7, in, sizeof *in, out, sizeof *out, n, &o), CREW_ERANGE);
    size_t nfail = 0;
    for (size_t i = 0; i < n; i++) {
        if ((i + 1) % 7 == 0) {
            CHECK_EQ(st[i], CREW_ERANGE);
            nfail++;
        } else {
            CHECK_EQ(st[i], 0);
            CHECK_EQ(out[i], in[i] * in[i]);
        }
    }
    crew_future *f;
    CHECK_OK(crew_pool_map_submit(p, sq_fail7, in, sizeof *in, out, sizeof *out, n, &o, &f));
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    CHECK_EQ(crew_future_status(f), CREW_ERANGE);
    crew_failure fl;
    CHECK_OK(crew_future_failure(f, &fl));
    CHECK_EQ(fl.status, CREW_ERANGE);
    CHECK_EQ(fl.first_item, 6);
    CHECK_EQ(fl.n_items, nfail);
    CHECK_EQ(fl.task_id, crew_future_id(f));
    size_t done, total;
    CHECK_OK(crew_future_progress(f, &done, &total));
    CHECK_EQ(done, n);
    CHECK_EQ(total, n);
    CHECK_OK(crew_future_destroy(f));
    crew_pool_stats s;
    CHECK_OK(crew_pool_stats_get(p, &s));
    CHECK_EQ(s.failed, 2 * nfail); /* items, not maps */
    free(in);
    free(out);
    free(st);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_map_errors(void)
{
    crew_pool_options po = {0};
    po.workers = 2;
    po.max_arg_size = 16;
    po.max_result_size = 16;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &po));
    long in[4] = {1, 2, 3, 4}, out[4];
    char big[64];
    crew_future *f;
    CHECK_ERR(crew_pool_map(NULL, sq, in, sizeof *in, out, sizeof *out, 4, NULL), CREW_EINVAL);
    CHECK_ERR(crew_pool_map(p, NULL, in, sizeof *in, out, sizeof *out, 4, NULL), CREW_EINVAL);
    CHECK_ERR(crew_pool_map(p, sq, in, sizeof *in, out, sizeof *out, 0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_pool_map(p, sq, NULL, sizeof *in, out, sizeof *out, 4, NULL), CREW_EINVAL);
    CHECK_ERR(crew_pool_map(p, sq, in, sizeof *in, NULL, sizeof *out, 4, NULL), CREW_EINVAL);
    CHECK_ERR(crew_pool_map(p, noop, big, sizeof big, NULL, 0, 1, NULL), CREW_E2BIG);
    CHECK_ERR(crew_pool_map(p, noop, NULL, 0, big, sizeof big, 1, NULL), CREW_E2BIG);
    CHECK_ERR(crew_pool_map_submit(p, sq, in, sizeof *in, out, sizeof *out, 4, NULL, NULL),
              CREW_EINVAL);
    CHECK_ERR(crew_pool_map_submit(p, sq, in, sizeof *in, out, sizeof *out, 0, NULL, &f),
              CREW_EINVAL);
    CHECK_OK(crew_pool_destroy(p));
}

/* Progress and cancel: items block on a pipe so the test controls pace. */
static int g_rd, g_wr, g_started_wr;
static int gated(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    char c = 'x';
    CHECK(write(g_started_wr, &c, 1) == 1);
    CHECK(read(g_rd, &c, 1) == 1);
    return c == 'f' ? CREW_EIO : 0;
}

typedef struct {
    crew_future *f;
    size_t seen_max;
    int ok;
} prog_arg;

static void *progress_reader(void *arg)
{
    prog_arg *pa = arg;
    size_t done = 0, total = 0;
    while (!crew_future_done(pa->f)) {
        CHECK_OK(crew_future_progress(pa->f, &done, &total));
        CHECK(done <= total && total == 6);
        if (done > pa->seen_max)
            pa->seen_max = done;
        sched_yield();
    }
    pa->ok = 1;
    return NULL;
}

static void test_map_progress_cancel(void)
{
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    g_rd = a[0];
    g_wr = a[1];
    g_started_wr = b[1];
    crew_pool_options po = {0};
    po.workers = 1;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &po));
    int st[6];
    crew_map_options o = {.chunk_size = 1, .statuses = st};
    crew_future *f;
    CHECK_OK(crew_pool_map_submit(p, gated, NULL, 0, NULL, 0, 6, &o, &f));
    prog_arg pa = {f, 0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, progress_reader, &pa) == 0);
    char c;
    size_t done, total;
    for (int i = 0; i < 3; i++) {
        CHECK(read(b[0], &c, 1) == 1); /* item i started */
        CHECK_OK(crew_future_progress(f, &done, &total));
        CHECK_EQ(done, (size_t)i);
        CHECK_EQ(total, 6);
        CHECK(write(g_wr, i == 1 ? "f" : "o", 1) == 1);
    }
    CHECK(read(b[0], &c, 1) == 1); /* item 3 is running */
    CHECK_OK(crew_future_cancel(f)); /* items 4, 5 never run */
    CHECK_EQ(crew_future_done(f), 0);
    CHECK(write(g_wr, "o", 1) == 1);
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(pa.ok == 1 && pa.seen_max <= 6);
    CHECK_EQ(st[0], 0);
    CHECK_EQ(st[1], CREW_EIO);
    CHECK_EQ(st[2], 0);
    CHECK_EQ(st[3], CREW_ECANCELED); /* running when cancelled: its 0 does not count */
    CHECK_EQ(st[4], CREW_ECANCELED);
    CHECK_EQ(st[5], CREW_ECANCELED);
    CHECK_EQ(crew_future_status(f), CREW_ECANCELED); /* the cancel was accepted */
    crew_failure fl;
    CHECK_OK(crew_future_failure(f, &fl));
    CHECK_EQ(fl.status, CREW_ECANCELED);
    CHECK_EQ(fl.first_item, 1); /* the lowest failed item */
    CHECK_EQ(fl.n_items, 4);
    CHECK_ERR(crew_future_cancel(f), CREW_ESTATE);
    CHECK_OK(crew_future_destroy(f));
    CHECK_OK(crew_pool_destroy(p));
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

/* A map from inside a task (the waiting worker runs items too). */
static int inner_map(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    long in[200], out[200];
    for (int i = 0; i < 200; i++)
        in[i] = i;
    int rc2 = crew_pool_map(crew_task_pool(t), sq, in, sizeof *in, out, sizeof *out, 200, NULL);
    for (int i = 0; i < 200; i++)
        if (out[i] != (long)i * i)
            return CREW_EIO;
    return rc2;
}

static void test_map_nested(void)
{
    crew_pool_options po = {0};
    po.workers = 1; /* the only worker waits on the inner map: it must help */
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &po));
    int st[8];
    crew_map_options o = {.chunk_size = 1, .statuses = st};
    CHECK_OK(crew_pool_map(p, inner_map, NULL, 0, NULL, 0, 8, &o));
    for (int i = 0; i < 8; i++)
        CHECK_EQ(st[i], 0);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_map_destroy_before_done(void)
{
    /* Dropping the map handle early: the map still completes, nothing leaks. */
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, NULL));
    static long in[10000], out[20][10000]; /* one output per concurrent map */
    for (int i = 0; i < 10000; i++)
        in[i] = i;
    for (int r = 0; r < 20; r++) {
        crew_future *f;
        CHECK_OK(crew_pool_map_submit(p, sq, in, sizeof *in, out[r], sizeof(long), 10000, NULL, &f));
        CHECK_OK(crew_future_destroy(f));
    }
    CHECK_OK(crew_pool_shutdown(p, 0)); /* waits for every map */
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < 10000; i++)
            CHECK_EQ(out[r][i], (long)i * i);
    CHECK_OK(crew_pool_destroy(p));
}

static const test_case cases[] = {
    TEST_CASE(test_map_results),         TEST_CASE(test_map_failures),
    TEST_CASE(test_map_errors),          TEST_CASE(test_map_progress_cancel),
    TEST_CASE(test_map_nested),          TEST_CASE(test_map_destroy_before_done),
};
TEST_MAIN_NOHELPERS(cases)
