/* Faults on a process pool made with the default options -- the program a
 * user writes first (`crew_pool_options o = {0}; o.kind = CREW_PROCESSES;`):
 *   - a map over a million items of which every item i % 1000 == 999
 *     segfaults: exactly those items end CREW_ECRASHED, every other one has
 *     its correct result, the pool takes work afterwards, the stats count
 *     the items;
 *   - the same with one future per item;
 *   - a task that crashes on every call trips the breaker after
 *     breaker_crashes deaths (bounded time), CREW_BREAKER_OFF never trips;
 *   - a task that aborts at once under a short deadline ends CREW_ECRASHED,
 *     never CREW_ETIMEDOUT (timed out means still running at the deadline).
 * Every start method for the map soak. CREW_FAULT_ITEMS overrides the item
 * count (default 1,000,000; a tenth under a sanitizer). */
// CREW_TEST_LABEL stress
// CREW_TEST_TIMEOUT 900
#include "crew_test.h"

static void die_segv(void)
{
    signal(SIGSEGV, SIG_DFL); /* sanitizers catch it otherwise */
    if (!TEST_SANITIZED) {
        volatile int *p = NULL;
        *p = 1;
    }
    raise(SIGSEGV);
}

/* Item i (int32) segfaults when i % 1000 == 999, else its result is 2i. */
static int item_soak(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                     size_t *rl)
{
    (void)t, (void)len, (void)cap;
    int32_t i;
    memcpy(&i, arg, sizeof i);
    if (i % 1000 == 999)
        die_segv();
    int32_t o = 2 * i;
    memcpy(res, &o, sizeof o);
    *rl = sizeof o;
    return 0;
}

static int task_always_crash(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                             size_t *rl)
{
    (void)t, (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    die_segv();
    return 0;
}

static int task_abort(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                      size_t *rl)
{
    (void)t, (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    signal(SIGABRT, SIG_DFL);
    abort();
}

static int task_ok(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)t, (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    return 0;
}

static size_t n_items(void)
{
    const char *e = getenv("CREW_FAULT_ITEMS");
    if (e)
        return (size_t)strtoul(e, NULL, 10);
    return (size_t)test_scale(1000000);
}

static crew_pool *default_pool(int method)
{
    crew_pool_options o = {0};
    o.kind = CREW_PROCESSES;
    o.start_method = method;
    crew_pool *p = NULL;
    CHECK_OK(crew_pool_create(&p, &o));
    return p;
}

static void check_usable(crew_pool *p)
{
    crew_future *f;
    CHECK_OK(crew_pool_submit(p, task_ok, NULL, 0, &f));
    CHECK_OK(crew_future_wait(f, 60));
    CHECK_OK(crew_future_status(f));
    crew_future_destroy(f);
}

static void soak_map(int method, size_t n)
{
    crew_forkserver_start(); /* (a child of ours for as long as we live) */
    int children = test_count_children();
    crew_pool *p = default_pool(method);
    int32_t *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
    int *sts = malloc(n * sizeof *sts);
    CHECK(in && out && sts);
    for (size_t i = 0; i < n; i++)
        in[i] = (int32_t)i;
    crew_map_options mo = {.statuses = sts};
    crew_future *f;
    double t0 = crew_now();
    CHECK_OK(crew_pool_map_submit(p, item_soak, in, 4, out, 4, n, &mo, &f));
    CHECK_OK(crew_future_wait(f, 600));
    double secs = crew_now() - t0;
    CHECK_EQ(crew_future_status(f), CREW_ECRASHED);
    crew_failure fl;
    CHECK_OK(crew_future_failure(f, &fl));
    CHECK_EQ(fl.status, CREW_ECRASHED);
    CHECK_EQ(fl.first_item, 999);
    CHECK_EQ(fl.n_items, n / 1000);
    CHECK_EQ(fl.signal, SIGSEGV);
    CHECK(fl.pid > 0);
    size_t crashed = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 999) {
            CHECK_EQ(sts[i], CREW_ECRASHED);
            crashed++;
        } else {
            CHECK_EQ(sts[i], 0);
            CHECK_EQ(out[i], 2 * (int32_t)i);
        }
    }
    CHECK_EQ(crashed, n / 1000);
    crew_future_destroy(f);
    check_usable(p);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.broken, 0);
    /* the stats count items, as the user does (plus check_usable's task) */
    CHECK_EQ(st.submitted, n + 1);
    CHECK_EQ(st.crashed, n / 1000);
    CHECK_EQ(st.completed, n - n / 1000 + 1);
    printf("# map, method %d: %zu items in %.2f s, %zu crashed, breaker not tripped\n", method,
           n, secs, crashed);
    CHECK_OK(crew_pool_destroy(p));
    CHECK_EQ(test_count_children(), children);
    free(in), free(out), free(sts);
}

static void test_map_soak_default(void)
{
    test_watchdog(800);
    size_t n = n_items();
    soak_map(0, n); /* the default start method, at full size */
    /* the other methods at a tenth */
    soak_map(CREW_START_FORK, n / 10);
    soak_map(CREW_START_SPAWN, n / 10);
}

static void test_futures_soak_default(void)
{
    test_watchdog(800);
    size_t n = n_items();
    crew_pool *p = default_pool(0);
    enum { BATCH = 4096 };
    crew_future **fs = malloc(BATCH * sizeof *fs);
    size_t ok = 0, crashed = 0;
    for (size_t done = 0; done < n; done += BATCH) {
        size_t k = n - done < BATCH ? n - done : BATCH;
        for (size_t i = 0; i < k; i++) {
            int32_t v = (int32_t)(done + i);
            CHECK_OK(crew_pool_submit(p, item_soak, &v, sizeof v, &fs[i]));
        }
        for (size_t i = 0; i < k; i++) {
            int32_t v = (int32_t)(done + i);
            CHECK_OK(crew_future_wait(fs[i], 120));
            int st = crew_future_status(fs[i]);
            if (v % 1000 == 999) {
                CHECK_EQ(st, CREW_ECRASHED);
                crew_failure fl;
                CHECK_OK(crew_future_failure(fs[i], &fl));
                CHECK_EQ(fl.signal, SIGSEGV);
                CHECK_EQ(fl.task_id, crew_future_id(fs[i]));
                crashed++;
            } else {
                CHECK_EQ(st, 0);
                const void *d;
                size_t len;
                CHECK_OK(crew_future_result(fs[i], &d, &len));
                CHECK_EQ(len, 4);
                int32_t o;
                memcpy(&o, d, 4);
                CHECK_EQ(o, 2 * v);
                ok++;
            }
            crew_future_destroy(fs[i]);
        }
    }
    CHECK_EQ(crashed, n / 1000);
    CHECK_EQ(ok, n - n / 1000);
    check_usable(p);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.broken, 0);
    CHECK_EQ(st.crashed, n / 1000);
    CHECK_OK(crew_pool_destroy(p));
    free(fs);
}

/* A task that crashes on every call: the breaker trips after
 * breaker_crashes deaths in a row (64 by default); the in-flight tasks of
 * the last deaths may still end CREW_ECRASHED, everything after ends
 * CREW_EBROKEN, later submits are refused. */
static void test_breaker_storm_default(void)
{
    test_watchdog(300);
    crew_pool *p = default_pool(0);
    int workers = crew_pool_workers(p);
    enum { N = 2000 };
    crew_future **fs = malloc(N * sizeof *fs);
    double t0 = crew_now();
    size_t got = 0;
    for (size_t i = 0; i < N; i++) {
        int rc = crew_pool_submit(p, task_always_crash, NULL, 0, &fs[got]);
        if (rc == CREW_EBROKEN)
            break; /* tripped while we were still submitting */
        CHECK_OK(rc);
        got++;
    }
    size_t crashed = 0, broken = 0;
    for (size_t i = 0; i < got; i++) {
        CHECK_OK(crew_future_wait(fs[i], 120));
        int st = crew_future_status(fs[i]);
        CHECK(st == CREW_ECRASHED || st == CREW_EBROKEN);
        crashed += st == CREW_ECRASHED;
        broken += st == CREW_EBROKEN;
        crew_future_destroy(fs[i]);
    }
    double secs = crew_now() - t0;
    CHECK(crashed >= 64 && crashed < 64 + (size_t)workers);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.broken, 1);
    crew_future *f;
    CHECK_ERR(crew_pool_submit(p, task_ok, NULL, 0, &f), CREW_EBROKEN);
    printf("# breaker: tripped after %zu crashes in %.3f s (%zu tasks CREW_EBROKEN)\n", crashed,
           secs, broken);
    CHECK_OK(crew_pool_destroy(p));
    free(fs);
}

/* CREW_BREAKER_OFF: a storm of crashes never breaks the pool. */
static void test_breaker_off(void)
{
    test_watchdog(300);
    crew_pool_options o = {.kind = CREW_PROCESSES, .breaker_crashes = CREW_BREAKER_OFF};
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    enum { N = 300 };
    crew_future *fs[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(crew_pool_submit(p, task_always_crash, NULL, 0, &fs[i]));
    for (int i = 0; i < N; i++) {
        CHECK_OK(crew_future_wait(fs[i], 120));
        CHECK_EQ(crew_future_status(fs[i]), CREW_ECRASHED);
        crew_future_destroy(fs[i]);
    }
    check_usable(p);
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.broken, 0);
    CHECK_OK(crew_pool_destroy(p));
}

/* A task that dies within microseconds under a 3 ms deadline crashed: it
 * was not running at the deadline, however late the monitor looks. So it
 * ends CREW_ECRASHED with SIGABRT -- or, when the machine is so loaded that
 * the task had not yet run its abort at the deadline, CREW_ETIMEDOUT with
 * the pool's own SIGTERM / SIGKILL; never CREW_ETIMEDOUT with the task's
 * SIGABRT (the old bug, ~4% of tasks). */
static void test_crash_is_not_timeout(void)
{
    test_watchdog(300);
    crew_pool_options o = {.kind = CREW_PROCESSES, .task_timeout = 0.003,
                           .breaker_crashes = CREW_BREAKER_OFF};
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    size_t n = (size_t)test_scale(3000);
    enum { BATCH = 64 };
    crew_future *fs[BATCH];
    size_t crashed = 0, timed_out = 0;
    for (size_t done = 0; done < n; done += BATCH) {
        for (int i = 0; i < BATCH; i++)
            CHECK_OK(crew_pool_submit(p, task_abort, NULL, 0, &fs[i]));
        for (int i = 0; i < BATCH; i++) {
            CHECK_OK(crew_future_wait(fs[i], 120));
            int st = crew_future_status(fs[i]);
            crew_failure fl;
            CHECK_OK(crew_future_failure(fs[i], &fl));
            if (st == CREW_ECRASHED) {
                CHECK_EQ(fl.signal, SIGABRT);
                crashed++;
            } else {
                CHECK_EQ(st, CREW_ETIMEDOUT);
                CHECK(fl.signal == SIGTERM || fl.signal == SIGKILL);
                timed_out++;
            }
            crew_future_destroy(fs[i]);
        }
    }
    printf("# %zu aborting tasks under a 3 ms deadline: %zu CREW_ECRASHED, %zu CREW_ETIMEDOUT "
           "(killed before they ran)\n",
           crashed + timed_out, crashed, timed_out);
    CHECK(crashed > 0);
    CHECK_OK(crew_pool_destroy(p));
}

static const test_case cases[] = {
    TEST_CASE(test_map_soak_default),   TEST_CASE(test_futures_soak_default),
    TEST_CASE(test_breaker_storm_default), TEST_CASE(test_breaker_off),
    TEST_CASE(test_crash_is_not_timeout),
};
TEST_MAIN_NOHELPERS(cases)
