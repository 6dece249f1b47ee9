/* Thread-backend behaviour: nested submit+wait without deadlock (a waiting
 * worker runs other work), recursion, many submitters at once, idle workers
 * that sleep and wake again, worker indexes, pools used in turn by one
 * thread (the per-thread future cache moves between pools). */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* fib(n) by submitting fib(n-1) and fib(n-2) as sub-tasks and waiting. */
static int fib(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    int n = *(const int *)a;
    long v;
    if (n < 2) {
        v = n;
    } else {
        crew_pool *p = crew_task_pool(t);
        crew_future *f1, *f2;
        int n1 = n - 1, n2 = n - 2;
        CHECK_OK(crew_pool_submit(p, fib, &n1, sizeof n1, &f1));
        CHECK_OK(crew_pool_submit(p, fib, &n2, sizeof n2, &f2));
        CHECK_OK(crew_future_wait(f2, CREW_FOREVER));
        CHECK_OK(crew_future_wait(f1, CREW_FOREVER));
        const void *d1, *d2;
        size_t l1, l2;
        CHECK_OK(crew_future_result(f1, &d1, &l1));
        CHECK_OK(crew_future_result(f2, &d2, &l2));
        v = *(const long *)d1 + *(const long *)d2;
        crew_future_destroy(f1);
        crew_future_destroy(f2);
    }
    memcpy(r, &v, sizeof v);
    *rl = sizeof v;
    return 0;
}

static long fib_ref(int n) { return n < 2 ? n : fib_ref(n - 1) + fib_ref(n - 2); }

static void run_fib(int workers, int n)
{
    crew_pool_options o = {0};
    o.workers = workers;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    crew_future *f;
    CHECK_OK(crew_pool_submit(p, fib, &n, sizeof n, &f));
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    const void *d;
    size_t len;
    CHECK_OK(crew_future_result(f, &d, &len));
    CHECK_EQ(*(const long *)d, fib_ref(n));
    crew_future_destroy(f);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.completed, st.submitted);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_nested_one_worker(void) { run_fib(1, 16); }
static void test_nested_many_workers(void) { run_fib(4, 18); }

/* A worker's timed wait on a task that runs on another worker: it parks and
 * times out. (Only a wait forever runs queued work meanwhile; see
 * test_finite_wait_never_helps.) */
static int g_gate[2], g_started[2];
static int blocker(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    char c = 's';
    CHECK(write(g_started[1], &c, 1) == 1);
    CHECK(read(g_gate[0], &c, 1) == 1);
    return 0;
}
static int parent_timeout(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    crew_future *x;
    memcpy(&x, a, sizeof x);
    double t0 = crew_now();
    int rc1 = crew_future_wait(x, 0.02);
    if (crew_now() - t0 < 0.019)
        return CREW_EIO;
    return rc1 == CREW_ETIMEDOUT ? 0 : CREW_EIO;
}

static void test_nested_timeout(void)
{
    crew_pool_options o = {0};
    o.workers = 2;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    CHECK(pipe(g_gate) == 0 && pipe(g_started) == 0);
    crew_future *x, *f;
    CHECK_OK(crew_pool_submit(p, blocker, NULL, 0, &x));
    char c;
    CHECK(read(g_started[0], &c, 1) == 1);
    CHECK_OK(crew_pool_submit(p, parent_timeout, &x, sizeof x, &f));
    /* Wait for the parent without helping: poll its status. */
    CHECK_ERR(crew_wait_any(&f, 1, 10.0, NULL) == 0 ? 0 : 1, 0);
    CHECK_EQ(crew_future_status(f), 0);
    CHECK(write(g_gate[1], "x", 1) == 1);
    CHECK_OK(crew_future_wait(x, CREW_FOREVER));
    crew_future_destroy(f);
    crew_future_destroy(x);
    CHECK_OK(crew_pool_destroy(p));
    close(g_gate[0]);
    close(g_gate[1]);
    close(g_started[0]);
    close(g_started[1]);
}

/* ---- a finite wait returns by its deadline */

static int sleep_2s(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    struct timespec ts = {2, 0};
    nanosleep(&ts, NULL); /* the task's work: long, not synchronisation */
    return 0;
}

/* Generous: the bound is "by the timeout plus scheduling slack", not a
 * speed; a waiter that ran the 2 s task it found queued misses it by far. */
#define WAIT_SLACK 0.45

static void check_times_out(crew_future *f, int how)
{
    double t0 = crew_now();
    if (how == 0)
        CHECK_ERR(crew_future_wait(f, 0.05), CREW_ETIMEDOUT);
    else if (how == 1)
        CHECK_ERR(crew_wait_all(&f, 1, 0.05), CREW_ETIMEDOUT);
    else
        CHECK_ERR(crew_wait_any(&f, 1, 0.05, NULL), CREW_ETIMEDOUT);
    double took = crew_now() - t0;
    CHECK(took >= 0.049 && took < 0.05 + WAIT_SLACK);
}

/* An outside thread's wait with a finite timeout never picks up a queued
 * task (it could run past any deadline: a 0.05 s wait used to come back
 * after the 2 s task it ran); only a wait forever helps. */
static void test_finite_wait_never_helps(void)
{
    crew_pool_options o = {0};
    o.workers = 1;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    CHECK(pipe(g_gate) == 0 && pipe(g_started) == 0);
    crew_future *x, *slow, *mf;
    CHECK_OK(crew_pool_submit(p, blocker, NULL, 0, &x));
    char c;
    CHECK(read(g_started[0], &c, 1) == 1); /* the only worker is busy */
    CHECK_OK(crew_pool_submit(p, sleep_2s, NULL, 0, &slow)); /* queued */
    for (int how = 0; how < 3; how++) {
        check_times_out(slow, how);
        check_times_out(x, how); /* waiting on the running one: same */
    }
    int in[2] = {0, 0};
    CHECK_OK(crew_pool_map_submit(p, sleep_2s, in, sizeof in[0], NULL, 0, 2, NULL, &mf));
    check_times_out(mf, 0);
    CHECK_EQ(crew_future_done(slow), 0); /* nobody ran it */
    CHECK_OK(crew_future_cancel(slow));  /* queued: ends now, never runs */
    CHECK_OK(crew_future_cancel(mf));
    CHECK(write(g_gate[1], "x", 1) == 1);
    CHECK_OK(crew_future_wait(x, CREW_FOREVER));
    CHECK_OK(crew_future_wait(mf, CREW_FOREVER));
    CHECK_EQ(crew_future_status(slow), CREW_ECANCELED);
    CHECK_EQ(crew_future_status(mf), CREW_ECANCELED);
    crew_future_destroy(x);
    crew_future_destroy(slow);
    crew_future_destroy(mf);
    CHECK_OK(crew_pool_destroy(p));
    close(g_gate[0]);
    close(g_gate[1]);
    close(g_started[0]);
    close(g_started[1]);
}

/* Nested: the only worker waits 0.05 s on a sub-task queued in its own
 * lane. It does not run it (that would take 2 s) and nobody else can: the
 * wait times out -- the pool is not deadlocked, the parent goes on. */
static int parent_finite_wait(crew_task *t, const void *a, size_t al, void *r, size_t rc,
                              size_t *rl)
{
    crew_future *child;
    CHECK_OK(crew_pool_submit(crew_task_pool(t), sleep_2s, NULL, 0, &child));
    double t0 = crew_now();
    int w = crew_future_wait(child, 0.05);
    double took = crew_now() - t0;
    CHECK_OK(crew_future_cancel(child)); /* still queued: it never runs */
    CHECK_EQ(crew_future_status(child), CREW_ECANCELED);
    crew_future_destroy(child);
    memcpy(r, &took, sizeof took);
    *rl = sizeof took;
    return w;
}

static void test_nested_finite_wait(void)
{
    crew_pool_options o = {0};
    o.workers = 1;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    crew_future *f;
    CHECK_OK(crew_pool_submit(p, parent_finite_wait, NULL, 0, &f));
    /* A finite wait: this thread does not help either, so the child stays
     * queued (a wait forever here would run it, as it should). */
    CHECK_OK(crew_future_wait(f, 30.0));
    CHECK_EQ(crew_future_status(f), CREW_ETIMEDOUT);
    const void *d;
    size_t len;
    CHECK_OK(crew_future_result(f, &d, &len));
    double took;
    memcpy(&took, d, sizeof took);
    CHECK(took >= 0.049 && took < 0.05 + WAIT_SLACK);
    crew_future_destroy(f);
    CHECK_OK(crew_pool_destroy(p));
}

static atomic_long g_sum;
static int add_arg(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    atomic_fetch_add(&g_sum, *(const long *)a);
    return 0;
}

typedef struct {
    crew_pool *p;
    long base, n;
} sub_arg;

static void *submitter(void *arg)
{
    sub_arg *s = arg;
    crew_future **fs = malloc(sizeof *fs * (size_t)s->n);
    for (long i = 0; i < s->n; i++) {
        long v = s->base + i;
        CHECK_OK(crew_pool_submit(s->p, add_arg, &v, sizeof v, &fs[i]));
    }
    CHECK_OK(crew_wait_all(fs, (size_t)s->n, CREW_FOREVER));
    for (long i = 0; i < s->n; i++) {
        CHECK_EQ(crew_future_status(fs[i]), 0);
        CHECK_OK(crew_future_destroy(fs[i]));
    }
    free(fs);
    return NULL;
}

static void test_many_submitters(void)
{
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, NULL));
    atomic_store(&g_sum, 0);
    enum { T = 4 };
    long n = 20000;
#if TEST_SANITIZED
    n = 3000; /* sanitizers are 5-20x slower */
#endif
    pthread_t th[T];
    sub_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (sub_arg){p, i * n, n};
        CHECK(pthread_create(&th[i], NULL, submitter, &args[i]) == 0);
    }
    for (int i = 0; i < T; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    long total = T * n;
    CHECK_EQ(atomic_load(&g_sum), total * (total - 1) / 2);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.submitted, (uint64_t)total);
    CHECK_EQ(st.completed, (uint64_t)total);
    CHECK_OK(crew_pool_destroy(p));
}

/* Workers go to sleep between bursts (after their spin) and every burst
 * still completes: the wake-up is not lost. */
static void test_sleep_wake(void)
{
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, NULL));
    atomic_store(&g_sum, 0);
    for (int burst = 0; burst < 50; burst++) {
        struct timespec ts = {0, 200000}; /* 200 us: longer than the spin, so workers park */
        nanosleep(&ts, NULL);             /* pacing only, not synchronisation */
        crew_future *fs[3];
        for (int i = 0; i < 3; i++) {
            long v = 1;
            CHECK_OK(crew_pool_submit(p, add_arg, &v, sizeof v, &fs[i]));
        }
        /* Wait from another thread-free path: wait_any then wait_all. */
        size_t idx;
        CHECK_OK(crew_wait_any(fs, 3, CREW_FOREVER, &idx));
        CHECK_OK(crew_wait_all(fs, 3, CREW_FOREVER));
        for (int i = 0; i < 3; i++)
            crew_future_destroy(fs[i]);
    }
    CHECK_EQ(atomic_load(&g_sum), 150);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_pools_in_turn(void)
{
    /* One thread alternates between pools; futures of each go back to their
     * own pool; destroying one pool leaves the other working. */
    crew_pool *a, *b;
    CHECK_OK(crew_pool_create(&a, NULL));
    CHECK_OK(crew_pool_create(&b, NULL));
    atomic_store(&g_sum, 0);
    crew_future *keep = NULL;
    uint64_t ids[300];
    for (int i = 0; i < 300; i++) {
        crew_future *f;
        long v = 1;
        CHECK_OK(crew_pool_submit(i % 2 ? a : b, add_arg, &v, sizeof v, &f));
        ids[i] = crew_future_id(f);
        CHECK(ids[i] > 0);
        for (int j = 0; j < i; j++) /* ids are unique across pools and rebinding */
            CHECK(ids[j] != ids[i]);
        CHECK_OK(crew_future_wait(f, CREW_FOREVER));
        if (i == 11)
            keep = f; /* outlives its pool */
        else
            crew_future_destroy(f);
    }
    CHECK_OK(crew_pool_destroy(a));
    CHECK_EQ(crew_future_status(keep), 0);
    crew_future_destroy(keep);
    for (int i = 0; i < 100; i++) {
        crew_future *f;
        long v = 1;
        CHECK_OK(crew_pool_submit(b, add_arg, &v, sizeof v, &f));
        CHECK_OK(crew_future_wait(f, CREW_FOREVER));
        crew_future_destroy(f);
    }
    CHECK_EQ(atomic_load(&g_sum), 400);
    CHECK_OK(crew_pool_destroy(b));
}

/* More queued tasks than a worker's lane holds: the rest wait in the
 * overflow FIFO and still all run, each once. */
static void test_lane_overflow(void)
{
    crew_pool_options o = {0};
    o.workers = 1;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    CHECK(pipe(g_gate) == 0 && pipe(g_started) == 0);
    crew_future *x;
    CHECK_OK(crew_pool_submit(p, blocker, NULL, 0, &x));
    char c;
    CHECK(read(g_started[0], &c, 1) == 1); /* the only worker is busy */
    enum { N = 40000 };
    crew_future **fs = malloc(sizeof *fs * N);
    atomic_store(&g_sum, 0);
    for (long i = 0; i < N; i++) {
        long v = i;
        CHECK_OK(crew_pool_submit(p, add_arg, &v, sizeof v, &fs[i]));
    }
    CHECK(write(g_gate[1], "x", 1) == 1);
    CHECK_OK(crew_wait_all(fs, N, CREW_FOREVER));
    CHECK_EQ(atomic_load(&g_sum), (long)N * (N - 1) / 2);
    for (long i = 0; i < N; i++)
        CHECK_OK(crew_future_destroy(fs[i]));
    free(fs);
    CHECK_OK(crew_future_wait(x, CREW_FOREVER));
    crew_future_destroy(x);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.completed, N + 1);
    /* Most of the N went through the overflow, not a lane: each counted once. */
    CHECK_EQ(st.submitted, N + 1);
    /* A map counts its 10 items, whatever helper tasks it pushes. */
    long in[10] = {0};
    CHECK_OK(crew_pool_map(p, add_arg, in, sizeof in[0], NULL, 0, 10, NULL));
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.submitted, N + 1 + 10);
    CHECK_EQ(st.completed, N + 1 + 10);
    CHECK_OK(crew_pool_destroy(p));
    close(g_gate[0]);
    close(g_gate[1]);
    close(g_started[0]);
    close(g_started[1]);
}

/* Futures move between threads' caches and the pool in batches: a thread
 * that exits hands back its whole cache (a stack plus a spare batch), and
 * another thread that takes such a big batch later spills it again. Every
 * future must stay distinct and carry its own task's result through that. */
static int echo_long(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)rc;
    memcpy(r, a, al);
    *rl = al;
    return 0;
}

static void check_echo_batch(crew_pool *p, long base, long n)
{
    crew_future **fs = malloc(sizeof *fs * (size_t)n);
    CHECK(fs != NULL);
    for (long i = 0; i < n; i++) {
        long v = base + i;
        CHECK_OK(crew_pool_submit(p, echo_long, &v, sizeof v, &fs[i]));
    }
    CHECK_OK(crew_wait_all(fs, (size_t)n, CREW_FOREVER));
    for (long i = 0; i < n; i++) {
        const void *d;
        size_t len;
        CHECK_OK(crew_future_result(fs[i], &d, &len));
        CHECK_EQ(len, sizeof(long));
        long v;
        memcpy(&v, d, sizeof v);
        CHECK_EQ(v, base + i);
        CHECK_OK(crew_future_destroy(fs[i]));
    }
    free(fs);
}

typedef struct churn_arg {
    crew_pool *p;
    long base;
} churn_arg;

static void *churn_and_exit(void *u)
{
    churn_arg *c = u;
    check_echo_batch(c->p, c->base, 700); /* leaves a full cache to hand back */
    return NULL;
}

static void test_future_cache_batches(void)
{
    for (int round = 0; round < 4; round++) {
        /* A new pool each round: this thread's cache rebinds to it and
         * refills from the batches the exited threads handed back. */
        crew_pool *p;
        CHECK_OK(crew_pool_create(&p, NULL));
        pthread_t th[3];
        churn_arg args[3];
        for (int i = 0; i < 3; i++) {
            args[i] = (churn_arg){p, (round * 3 + i) * 10000L};
            CHECK(pthread_create(&th[i], NULL, churn_and_exit, &args[i]) == 0);
        }
        for (int i = 0; i < 3; i++)
            CHECK(pthread_join(th[i], NULL) == 0);
        /* One at a time first: a free right after refilling from a big
         * batch spills part of it again; then many at once. */
        for (int k = 0; k < 3; k++)
            check_echo_batch(p, 2000000L + k, 1);
        check_echo_batch(p, 1000000L + round * 5000L, 1500);
        crew_pool_stats st;
        CHECK_OK(crew_pool_stats_get(p, &st));
        CHECK_EQ(st.submitted, 3 * 700 + 3 + 1500);
        CHECK_EQ(st.completed, st.submitted);
        CHECK_OK(crew_pool_destroy(p));
    }
}

static void test_create_destroy_idle(void)
{
    int fds0 = test_count_fds();
    for (int i = 0; i < 30; i++) {
        crew_pool_options o = {0};
        o.workers = 1 + i % 4;
        crew_pool *p;
        CHECK_OK(crew_pool_create(&p, &o));
        CHECK_EQ(crew_pool_workers(p), 1 + i % 4);
        CHECK_OK(crew_pool_destroy(p));
    }
    CHECK_EQ(test_count_fds(), fds0);
}

/* Every sleeping worker is woken when work arrives: W tasks that all meet at
 * a barrier of W parties can only finish if all W workers run them at once.
 * The submitter waits through the completion fd, so it never runs a task
 * itself. A lost wake-up shows as a barrier timeout (CREW_ETIMEDOUT or
 * CREW_EBROKEN) instead of 0. */
static crew_barrier g_meet;
static int t_meet(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)a, (void)al, (void)r, (void)rc;
    *rl = 0;
    int rcode = crew_barrier_wait(&g_meet, 10.0, NULL);
    return rcode == 0 || rcode > 0 ? 0 : rcode;
}

static void test_all_workers_wake(void)
{
    enum { W = 16 };
    crew_pool_options o = {0};
    o.kind = CREW_THREADS;
    o.workers = W;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    int fd = crew_pool_fd(p);
    CHECK(fd >= 0);
    long rounds = test_scale(200);
    for (long round = 0; round < rounds; round++) {
        CHECK_OK(crew_barrier_init(&g_meet, W));
        crew_future *fs[W];
        for (int i = 0; i < W; i++) {
            CHECK_OK(crew_pool_submit(p, t_meet, NULL, 0, &fs[i]));
            CHECK_OK(crew_future_notify(fs[i], NULL));
        }
        size_t got = 0;
        while (got < W) {
            struct pollfd pfd = {fd, POLLIN, 0};
            CHECK_EQ(poll(&pfd, 1, 30000), 1);
            crew_future *out[W];
            size_t n = 0;
            CHECK_OK(crew_pool_completions(p, out, W, &n));
            for (size_t k = 0; k < n; k++)
                CHECK_OK(crew_future_status(out[k]));
            got += n;
        }
        for (int i = 0; i < W; i++)
            CHECK_OK(crew_future_destroy(fs[i]));
        CHECK_OK(crew_barrier_destroy(&g_meet));
    }
    CHECK_OK(crew_pool_destroy(p));
}

/* A task that blocks until a later task of the same lane has run must not
 * hang the pool, even when a waiting thread has claimed a run of tasks
 * (idle workers steal from that run). One task per round waits for the task
 * submitted two after it. */
enum { BLK_N = 600 };
static crew_sem g_blk_sem[BLK_N];
static int g_blk_index;
static int t_blk(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)r, (void)rc;
    *rl = 0;
    int i = *(const int *)a;
    if (i == g_blk_index)
        return crew_sem_acquire(&g_blk_sem[i + 2], 20.0);
    return crew_sem_release(&g_blk_sem[i], 1);
}

static void test_blocked_task_in_run(void)
{
    crew_pool_options o = {0};
    o.kind = CREW_THREADS;
    o.workers = 2;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    static crew_future *fs[BLK_N];
    long rounds = test_scale(300);
    for (long round = 0; round < rounds; round++) {
        g_blk_index = (int)(round % 24);
        for (int i = 0; i < BLK_N; i++)
            CHECK_OK(crew_sem_init(&g_blk_sem[i], 0, 0));
        for (int i = 0; i < BLK_N; i++)
            CHECK_OK(crew_pool_submit(p, t_blk, &i, sizeof i, &fs[i]));
        CHECK_OK(crew_wait_all(fs, BLK_N, 30.0));
        for (int i = 0; i < BLK_N; i++) {
            CHECK_OK(crew_future_status(fs[i]));
            CHECK_OK(crew_future_destroy(fs[i]));
        }
    }
    CHECK_OK(crew_pool_destroy(p));
}

static const test_case cases[] = {
    TEST_CASE(test_nested_one_worker), TEST_CASE(test_nested_many_workers),
    TEST_CASE(test_nested_timeout),    TEST_CASE(test_many_submitters),
    TEST_CASE(test_sleep_wake),        TEST_CASE(test_pools_in_turn),
    TEST_CASE(test_create_destroy_idle), TEST_CASE(test_all_workers_wake), TEST_CASE(test_blocked_task_in_run), TEST_CASE(test_lane_overflow),
    TEST_CASE(test_future_cache_batches), TEST_CASE(test_finite_wait_never_helps),
    TEST_CASE(test_nested_finite_wait),
};
TEST_MAIN_NOHELPERS(cases)
