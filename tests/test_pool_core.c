/* Promises of the pool core that hold on both backends (each case runs on
 * CREW_THREADS and on CREW_PROCESSES): checked handles are checked without
 * reading freed memory (run it under ASan), a done callback may shut its
 * pool down without hanging, and crew_pool_stats counts map items so that
 * submitted == completed + failed + crashed + timed_out + canceled. */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <stdatomic.h>
#include <time.h>

static crew_pool *pool_of(crew_pool_kind kind, int workers)
{
    crew_pool_options o = {0};
    o.kind = kind;
    o.workers = workers;
    crew_pool *p = NULL;
    CHECK_OK(crew_pool_create(&p, &o));
    return p;
}

static const crew_pool_kind kinds[] = {CREW_THREADS, CREW_PROCESSES};
#define FOR_EACH_KIND(k) for (size_t k##_i = 0; k##_i < 2 && ((k) = kinds[k##_i], 1); k##_i++)

static int t_sum_bytes(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)rc;
    long s = 0;
    for (size_t i = 0; i < al; i++)
        s += ((const unsigned char *)a)[i];
    memcpy(r, &s, sizeof s);
    *rl = sizeof s;
    return 0;
}

/* ------------------------------------------------------------ handles */

/* A destroyed region is CREW_EINVAL at submit: looked up by value among
 * the live handles, its freed memory is never read (ASan would report a
 * heap-use-after-free), and no task ever runs on it. */
static void test_submit_shm_destroyed_region(void)
{
    crew_pool_kind kind;
    FOR_EACH_KIND(kind) {
        crew_pool *p = pool_of(kind, 1);
        crew_shm *live, *gone;
        CHECK_OK(crew_shm_create(&live, 4096, NULL));
        CHECK_OK(crew_shm_create(&gone, 4096, NULL));
        memset(crew_shm_ptr(live), 1, 4096);
        CHECK_OK(crew_shm_destroy(gone));
        crew_future *f = NULL;
        CHECK_ERR(crew_pool_submit_shm(p, t_sum_bytes, gone, 0, 16, &f), CREW_EINVAL);
        CHECK(f == NULL);
        /* The live one still works, and its range is checked against its size. */
        CHECK_ERR(crew_pool_submit_shm(p, t_sum_bytes, live, 4000, 200, &f), CREW_ERANGE);
        CHECK_OK(crew_pool_submit_shm(p, t_sum_bytes, live, 0, 4096, &f));
        CHECK_OK(crew_future_wait(f, CREW_FOREVER));
        const void *d;
        size_t len;
        CHECK_OK(crew_future_result(f, &d, &len));
        CHECK_EQ(*(const long *)d, 4096);
        CHECK_OK(crew_future_destroy(f));
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(live));
    }
}

/* ------------------------------------------------------------ callbacks */

/* A task that waits on the crew_event at its argument: the event lies in a
 * crew_shm region submitted by reference, so a worker process reaches it
 * as a worker thread does (crew events are process-shared). */
static int t_wait_event_arg(crew_task *t, const void *a, size_t al, void *r, size_t rc,
                            size_t *rl)
{
    (void)t, (void)al, (void)r, (void)rc, (void)rl;
    return crew_event_wait((crew_event *)a, CREW_FOREVER);
}

static int t_ok(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)a, (void)al, (void)r, (void)rc, (void)rl;
    return 0;
}

typedef struct cb_ctx {
    crew_pool *pool;
    int cancel;
    int shutdown_rc, destroy_rc, submit_rc;
    crew_event done;
} cb_ctx;

/* The done callback: shut the pool down, try to destroy it, submit. None of
 * it may wait for the thread the callback runs on (for a process pool the
 * monitor thread, which the pool's own shutdown waits for). */
static void cb_shutdown(crew_future *f, void *data)
{
    (void)f;
    cb_ctx *c = data;
    c->shutdown_rc = crew_pool_shutdown(c->pool, c->cancel);
    c->destroy_rc = crew_pool_destroy(c->pool);
    crew_future *g = NULL;
    c->submit_rc = crew_pool_submit(c->pool, t_ok, NULL, 0, &g);
    CHECK_OK(crew_event_set(&c->done));
}

/* A callback that calls crew_pool_shutdown returns at once on both kinds;
 * crew_pool_destroy from it is CREW_EDEADLK (nothing done); with cancel,
 * the queued work ends CREW_ECANCELED. A regression hangs the callback:
 * then its event stays unset and the bounded wait below fails (and a hung
 * destroy is caught by the watchdog). */
static void test_shutdown_from_callback(void)
{
    crew_pool_kind kind;
    FOR_EACH_KIND(kind) {
        for (int cancel = 0; cancel <= 1; cancel++) {
            crew_pool *p = pool_of(kind, 1);
            crew_shm *r;
            CHECK_OK(crew_shm_create(&r, 4096, NULL));
            crew_event *gate = crew_shm_ptr(r);
            CHECK_OK(crew_event_init(gate));
            crew_future *f, *queued[4];
            CHECK_OK(crew_pool_submit_shm(p, t_wait_event_arg, r, 0, sizeof *gate, &f));
            for (int i = 0; i < 4; i++)
                CHECK_OK(crew_pool_submit(p, t_ok, NULL, 0, &queued[i]));
            static cb_ctx c;
            memset(&c, 0, sizeof c);
            c.pool = p;
            c.cancel = cancel;
            c.shutdown_rc = c.destroy_rc = c.submit_rc = 1;
            CHECK_OK(crew_event_init(&c.done));
            /* Set while f is still blocked: the callback runs where f
             * completes (a worker, the monitor), not here. */
            CHECK_OK(crew_future_on_done(f, cb_shutdown, &c));
            CHECK_OK(crew_event_set(gate));
            CHECK_OK(crew_event_wait(&c.done, 20.0));
            CHECK_EQ(c.shutdown_rc, 0);
            CHECK_EQ(c.destroy_rc, CREW_EDEADLK);
            CHECK_EQ(c.submit_rc, CREW_ESHUTDOWN);
            CHECK_OK(crew_future_wait(f, CREW_FOREVER));
            CHECK_EQ(crew_future_status(f), 0);
            int canceled = 0;
            for (int i = 0; i < 4; i++) {
                CHECK_OK(crew_future_wait(queued[i], CREW_FOREVER));
                int st = crew_future_status(queued[i]);
                /* A process worker may have taken the next task before the
                 * monitor delivered f's result: that one may finish. */
                CHECK(st == 0 || (cancel && st == CREW_ECANCELED));
                canceled += st == CREW_ECANCELED;
                CHECK_OK(crew_future_destroy(queued[i]));
            }
            if (cancel && kind == CREW_THREADS)
                CHECK_EQ(canceled, 4); /* the worker looks at the flag before its next task */
            CHECK_OK(crew_future_destroy(f));
            CHECK_OK(crew_pool_destroy(p)); /* not from a callback: it works */
            CHECK_OK(crew_shm_destroy(r));
        }
    }
}

/* ------------------------------------------------------------ stats */

/* Item i returns a status chosen by i % 5: 0, 0, CREW_EIO, CREW_ETIMEDOUT,
 * CREW_ECANCELED (returned by the task itself: stats classify statuses). */
static int item_status(int i)
{
    static const int st[5] = {0, 0, CREW_EIO, CREW_ETIMEDOUT, CREW_ECANCELED};
    return st[i % 5];
}
static int t_item_mixed(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)r, (void)rc, (void)rl;
    int v;
    memcpy(&v, a, sizeof v);
    return item_status(v);
}

static void check_balance(crew_pool *p, uint64_t submitted)
{
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.submitted, submitted);
    CHECK_EQ(st.completed + st.failed + st.crashed + st.timed_out + st.canceled, submitted);
}

/* crew_pool_stats counts map items, not map futures: a map of n items adds
 * n to submitted and each item's outcome to its class (a map that lost
 * 1,000 items used to count as one failure). */
static void test_stats_count_items(void)
{
    crew_pool_kind kind;
    FOR_EACH_KIND(kind) {
        crew_pool *p = pool_of(kind, 2);
        enum { N = 1000 };
        static int in[N], sts[N];
        for (int i = 0; i < N; i++)
            in[i] = i;
        /* With a statuses array (both kinds classify item by item). */
        crew_map_options mo = {.statuses = sts};
        CHECK_ERR(crew_pool_map(p, t_item_mixed, in, sizeof in[0], NULL, 0, N, &mo), CREW_EIO);
        for (int i = 0; i < N; i++)
            CHECK_EQ(sts[i], item_status(i));
        crew_pool_stats st;
        CHECK_OK(crew_pool_stats_get(p, &st));
        CHECK_EQ(st.submitted, N);
        CHECK_EQ(st.completed, 2 * N / 5);
        CHECK_EQ(st.failed, N / 5);
        CHECK_EQ(st.timed_out, N / 5);
        CHECK_EQ(st.canceled, N / 5);
        CHECK_EQ(st.crashed, 0);
        /* Plain tasks next to it; then a map that fails one way only,
         * without a statuses array. */
        crew_future *f;
        CHECK_OK(crew_pool_submit(p, t_ok, NULL, 0, &f));
        CHECK_OK(crew_future_wait(f, CREW_FOREVER));
        CHECK_OK(crew_future_destroy(f));
        static int odd[N];
        for (int i = 0; i < N; i++)
            odd[i] = 2; /* item_status(2) == CREW_EIO */
        CHECK_ERR(crew_pool_map(p, t_item_mixed, odd, sizeof odd[0], NULL, 0, N, NULL), CREW_EIO);
        CHECK_OK(crew_pool_stats_get(p, &st));
        CHECK_EQ(st.failed, N / 5 + N);
        CHECK_EQ(st.completed, 2 * N / 5 + 1);
        check_balance(p, 2 * N + 1);
        if (kind == CREW_THREADS) {
            /* Threads classify every item even without a statuses array. */
            CHECK_ERR(crew_pool_map(p, t_item_mixed, in, sizeof in[0], NULL, 0, N, NULL),
                      CREW_EIO);
            CHECK_OK(crew_pool_stats_get(p, &st));
            CHECK_EQ(st.timed_out, 2 * N / 5);
            CHECK_EQ(st.canceled, 2 * N / 5);
            check_balance(p, 3 * N + 1);
        }
        CHECK_OK(crew_pool_destroy(p));
    }
}

static const test_case cases[] = {
    TEST_CASE(test_submit_shm_destroyed_region),
    TEST_CASE(test_shutdown_from_callback),
    TEST_CASE(test_stats_count_items),
};
TEST_MAIN_NOHELPERS(cases)
