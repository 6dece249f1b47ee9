/* crew_uv: every completion reaches its callback exactly once, on the loop
 * thread -- successes, task errors, cancellations, thread-pool timeouts, and
 * with a process pool crashes and deadline kills; closing the adapter (and
 * then the loop and the pool) with work in flight delivers everything, hangs
 * nothing and leaks no fd, mapping or child. */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <crew_uv.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

static pthread_t loop_thread;

/* Sanitizers. A crashing task restores SIGSEGV's default action first, so
 * the worker dies of signal 11 under ASan too. TSan cannot follow
 * a process that forks after it started threads ("starting new threads after
 * multi-threaded fork is not supported"): the process-pool cases are skipped
 * under TSan; the ASan and plain builds run them. */
/* ------------------------------------------------------------ tasks */

static int task_double(crew_task *t, const void *arg, size_t arg_len, void *result,
                       size_t result_cap, size_t *result_len)
{
    (void)t;
    uint64_t v;
    CHECK(arg_len == sizeof v && result_cap >= sizeof v);
    memcpy(&v, arg, sizeof v);
    v *= 2;
    memcpy(result, &v, sizeof v);
    *result_len = sizeof v;
    return 0;
}

static int task_fail(crew_task *t, const void *arg, size_t arg_len, void *result,
                     size_t result_cap, size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    return CREW_ERANGE;
}

static atomic_int blockers_started;

/* Runs until cancelled (cooperative, for thread pools) or killed (process
 * pools). The short nap is the task's own pacing, not synchronisation. */
static int task_block(crew_task *t, const void *arg, size_t arg_len, void *result,
                      size_t result_cap, size_t *result_len)
{
    (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    atomic_fetch_add(&blockers_started, 1);
    struct timespec nap = {0, 200000};
    while (!crew_task_cancelled(t))
        nanosleep(&nap, NULL);
    return 0;
}

static int task_segv(crew_task *t, const void *arg, size_t arg_len, void *result,
                     size_t result_cap, size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    /* The default action, so the worker dies of SIGSEGV even when a
     * sanitizer has installed its own handler (which would exit or abort). */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 0;
}

/* Ignores cancellation: only a kill (process pool deadline) stops it. */
static int task_hang(crew_task *t, const void *arg, size_t arg_len, void *result,
                     size_t result_cap, size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    for (;;)
        pause();
    return 0;
}

/* ------------------------------------------------------------ bookkeeping */

#define MAXN 20000
struct tally {
    int calls[MAXN];
    int status[MAXN];
    uint64_t value[MAXN];
    long total;
};
static struct tally tally;

static void tally_reset(void) { memset(&tally, 0, sizeof tally); }

/* data = index + 1 (so that 0/NULL is never a valid tag). */
static void on_done(crew_uv *cu, crew_future *f, int status, void *data)
{
    (void)cu;
    CHECK(pthread_equal(pthread_self(), loop_thread));
    long i = (long)(uintptr_t)data - 1;
    CHECK(i >= 0 && i < MAXN);
    tally.calls[i]++;
    CHECK_EQ(tally.calls[i], 1);
    tally.status[i] = status;
    tally.total++;
    if (status == 0 && crew_future_done(f) == 1) {
        const void *r;
        size_t len;
        CHECK_OK(crew_future_result(f, &r, &len));
        if (len == sizeof(uint64_t))
            memcpy(&tally.value[i], r, sizeof(uint64_t));
    }
    if (crew_future_done(f) == 1)
        CHECK_EQ(crew_future_status(f), status);
}

static void *tag(long i) { return (void *)(uintptr_t)(i + 1); }

static int closed_calls;
static void on_closed(void *data)
{
    CHECK(data == &closed_calls);
    closed_calls++;
}

static crew_pool *make_pool(crew_pool_kind kind, int workers, double task_timeout)
{
    crew_pool_options po = {.kind = kind, .workers = workers, .task_timeout = task_timeout};
    crew_pool *p = NULL;
    CHECK_OK(crew_pool_create(&p, &po));
    return p;
}

/* Process pools come from a separate backend; if this build lacks it the
 * process cases say so and pass without checking anything. */
static int have_processes(void)
{
    if (TEST_TSAN) {
        printf("# TSan build: process-pool case skipped (fork after threads)\n");
        return 0;
    }
    crew_pool_options po = {.kind = CREW_PROCESSES, .workers = 1};
    crew_pool *p = NULL;
    int rc = crew_pool_create(&p, &po);
    if (rc == CREW_ENOTSUP) {
        printf("# process pool not available in this build: case skipped\n");
        return 0;
    }
    CHECK_OK(rc);
    CHECK_OK(crew_pool_destroy(p));
    return 1;
}

/* Close the adapter, let libuv finish, and close the loop: must not hang. */
static void close_all(crew_uv *cu, uv_loop_t *loop)
{
    closed_calls = 0;
    CHECK_OK(crew_uv_close(cu, on_closed, &closed_calls));
    CHECK_EQ(uv_run(loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(closed_calls, 1);
    CHECK_EQ(uv_loop_close(loop), 0);
}

/* ------------------------------------------------------------ cases */

static void test_every_completion_once(void)
{
    loop_thread = pthread_self();
    tally_reset();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_THREADS, 2, 0);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    CHECK(crew_uv_pool(cu) == p && crew_uv_loop(cu) == &loop);
    long n = test_scale(MAXN);
    for (long i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i;
        CHECK_OK(crew_uv_submit(cu, i % 97 == 5 ? task_fail : task_double, &v, sizeof v,
                                on_done, tag(i), NULL));
    }
    CHECK_EQ(crew_uv_pending(cu), n);
    /* The adapter's uv_poll stays active until closed, so uv_run would not
     * return on its own: run one turn at a time until the tally is full. */
    while (tally.total < n)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(crew_uv_pending(cu), 0);
    for (long i = 0; i < n; i++) {
        CHECK_EQ(tally.calls[i], 1);
        if (i % 97 == 5) {
            CHECK_EQ(tally.status[i], CREW_ERANGE);
        } else {
            CHECK_EQ(tally.status[i], 0);
            CHECK_EQ(tally.value[i], 2 * (uint64_t)i);
        }
    }
    close_all(cu, &loop);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_bad_arguments(void)
{
    loop_thread = pthread_self();
    tally_reset();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool_options po = {.workers = 1, .max_arg_size = 64};
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &po));
    crew_uv *cu = NULL;
    CHECK_ERR(crew_uv_create(NULL, &loop, p), CREW_EINVAL);
    CHECK_ERR(crew_uv_create(&cu, NULL, p), CREW_EINVAL);
    CHECK_ERR(crew_uv_create(&cu, &loop, NULL), CREW_EINVAL);
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    crew_uv *second;
    CHECK_ERR(crew_uv_create(&second, &loop, p), CREW_EBUSY); /* same fd, same loop */
    uint64_t v = 1;
    char big[65] = {0};
    CHECK_ERR(crew_uv_submit(NULL, task_double, &v, sizeof v, on_done, tag(0), NULL),
              CREW_EINVAL);
    CHECK_ERR(crew_uv_submit(cu, NULL, &v, sizeof v, on_done, tag(0), NULL), CREW_EINVAL);
    CHECK_ERR(crew_uv_submit(cu, task_double, &v, sizeof v, NULL, tag(0), NULL), CREW_EINVAL);
    CHECK_ERR(crew_uv_submit(cu, task_double, big, sizeof big, on_done, tag(0), NULL),
              CREW_E2BIG);
    CHECK_EQ(crew_uv_pending(cu), 0);
    CHECK_EQ(crew_uv_pending(NULL), 0);
    CHECK(crew_uv_pool(NULL) == NULL && crew_uv_loop(NULL) == NULL);
    CHECK_ERR(crew_uv_close(NULL, NULL, NULL), CREW_EINVAL);
    CHECK_OK(crew_uv_close(cu, NULL, NULL));
    CHECK_ERR(crew_uv_close(cu, NULL, NULL), CREW_ECLOSED);
    CHECK_ERR(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(0), NULL),
              CREW_ECLOSED);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_EQ(tally.total, 0); /* no failed submit ever calls back */
    /* A shut-down pool refuses, and the adapter says so. */
    CHECK_EQ(uv_loop_init(&loop), 0);
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    CHECK_OK(crew_pool_shutdown(p, 0));
    CHECK_ERR(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(0), NULL),
              CREW_ESHUTDOWN);
    close_all(cu, &loop);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_cancel_queued_and_running(void)
{
    loop_thread = pthread_self();
    tally_reset();
    atomic_store(&blockers_started, 0);
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_THREADS, 1, 0);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    crew_future *running, *queued[10];
    CHECK_OK(crew_uv_submit(cu, task_block, NULL, 0, on_done, tag(0), &running));
    for (int i = 0; i < 10; i++) {
        uint64_t v = (uint64_t)i;
        CHECK_OK(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(1 + i), &queued[i]));
    }
    while (atomic_load(&blockers_started) == 0)
        sched_yield(); /* the single worker is now inside task_block */
    for (int i = 0; i < 10; i += 2)
        CHECK_OK(crew_future_cancel(queued[i]));
    CHECK_OK(crew_future_cancel(running));
    while (tally.total < 11)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(tally.status[0], CREW_ECANCELED);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(tally.calls[1 + i], 1);
        if (i % 2 == 0) {
            CHECK_EQ(tally.status[1 + i], CREW_ECANCELED);
        } else {
            CHECK_EQ(tally.status[1 + i], 0);
            CHECK_EQ(tally.value[1 + i], 2 * i);
        }
    }
    close_all(cu, &loop);
    CHECK_OK(crew_pool_destroy(p));
}

static void test_thread_timeout(void)
{
    loop_thread = pthread_self();
    tally_reset();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_THREADS, 2, 0.05);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    uint64_t v = 21;
    CHECK_OK(crew_uv_submit(cu, task_block, NULL, 0, on_done, tag(0), NULL));
    CHECK_OK(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(1), NULL));
    while (tally.total < 2)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(tally.status[0], CREW_ETIMEDOUT);
    CHECK_EQ(tally.status[1], 0);
    CHECK_EQ(tally.value[1], 42);
    close_all(cu, &loop);
    CHECK_OK(crew_pool_destroy(p));
}

/* Crash, deadline kill and cancel of running tasks in worker processes. */
static void test_process_failures(void)
{
    if (!have_processes())
        return;
    loop_thread = pthread_self();
    tally_reset();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_PROCESSES, 2, 0.3);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    crew_future *blocked;
    CHECK_OK(crew_uv_submit(cu, task_segv, NULL, 0, on_done, tag(0), NULL));
    CHECK_OK(crew_uv_submit(cu, task_hang, NULL, 0, on_done, tag(1), NULL));
    CHECK_OK(crew_uv_submit(cu, task_block, NULL, 0, on_done, tag(2), &blocked));
    for (long i = 3; i < 40; i++) {
        uint64_t v = (uint64_t)i;
        CHECK_OK(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(i), NULL));
    }
    CHECK_OK(crew_future_cancel(blocked));
    while (tally.total < 40)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(tally.status[0], CREW_ECRASHED);
    CHECK_EQ(tally.status[1], CREW_ETIMEDOUT);
    CHECK_EQ(tally.status[2], CREW_ECANCELED);
    for (long i = 3; i < 40; i++) {
        CHECK_EQ(tally.status[i], 0);
        CHECK_EQ(tally.value[i], 2 * (uint64_t)i);
    }
    close_all(cu, &loop);
    CHECK_OK(crew_pool_destroy(p));
}

/* The crashed future's details are readable inside the callback. */
static int seen_signal;
static void on_crash(crew_uv *cu, crew_future *f, int status, void *data)
{
    (void)cu, (void)data;
    CHECK(pthread_equal(pthread_self(), loop_thread));
    CHECK_EQ(status, CREW_ECRASHED);
    crew_failure fl;
    CHECK_OK(crew_future_failure(f, &fl));
    CHECK_EQ(fl.status, CREW_ECRASHED);
    CHECK(fl.pid > 0);
    seen_signal = fl.signal;
}

static void test_process_crash_details(void)
{
    if (!have_processes())
        return;
    loop_thread = pthread_self();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_PROCESSES, 1, 0);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    seen_signal = 0;
    CHECK_OK(crew_uv_submit(cu, task_segv, NULL, 0, on_crash, NULL, NULL));
    while (crew_uv_pending(cu) > 0)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(seen_signal, SIGSEGV);
    close_all(cu, &loop);
    CHECK_OK(crew_pool_destroy(p));
}

/* Close with work queued and running; everything is delivered by close. */
static void close_in_flight(crew_pool_kind kind)
{
    loop_thread = pthread_self();
    tally_reset();
    atomic_store(&blockers_started, 0);
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(kind, 2, 0);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    const long n = 200;
    for (long i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i;
        if (i < 2)
            CHECK_OK(crew_uv_submit(cu, task_block, NULL, 0, on_done, tag(i), NULL));
        else
            CHECK_OK(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(i), NULL));
    }
    /* Both workers are inside a blocker (which runs until cancelled) when
     * the adapter closes, so close meets running tasks as well as queued
     * ones. */
    if (kind == CREW_THREADS)
        while (atomic_load(&blockers_started) < 2)
            sched_yield();
    /* Let some completions be delivered normally first. */
    uv_run(&loop, UV_RUN_NOWAIT);
    long before = tally.total;
    closed_calls = 0;
    CHECK_OK(crew_uv_close(cu, on_closed, &closed_calls));
    CHECK_EQ(tally.total, n); /* all of them, before close returned */
    CHECK(before <= n);
    for (long i = 0; i < n; i++)
        CHECK_EQ(tally.calls[i], 1);
    CHECK_EQ(tally.status[0], CREW_ECANCELED);
    CHECK_EQ(tally.status[1], CREW_ECANCELED);
    for (long i = 2; i < n; i++)
        CHECK(tally.status[i] == 0 || tally.status[i] == CREW_ECANCELED);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(closed_calls, 1);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_OK(crew_pool_destroy(p));
}

/* Mappings: glibc caches a few freed thread stacks and may add a malloc
 * arena for a new thread, so the count moves by a stack or two between
 * rounds. A leak grows it every round; 10 rounds may add at most MAP_SLACK.
 * (TSan keeps per-thread runtime mappings after threads exit: no map check
 * there; ASan's leak check covers the heap in that build.) */
#define MAP_SLACK 6

static void leak_rounds(crew_pool_kind kind)
{
    /* Warm-up rounds so lazily created process-wide state (glibc's stack
     * cache, the process backend's fork server) is in the baseline. */
    for (int round = 0; round < 2; round++)
        close_in_flight(kind);
    int fds = test_count_fds(), maps = test_count_maps(), kids = test_count_children();
    for (int round = 0; round < 10; round++)
        close_in_flight(kind);
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_children(), kids);
    if (!TEST_TSAN && test_count_maps() > maps + MAP_SLACK)
        TEST_FAIL("mappings grew from %d to %d over 10 rounds", maps, test_count_maps());
}

static void test_close_in_flight_leaks_nothing(void)
{
    leak_rounds(CREW_THREADS);
    if (have_processes())
        leak_rounds(CREW_PROCESSES);
}

/* A callback closes the adapter: the rest is still delivered once each. */
static crew_uv *reentrant_cu;
static void on_done_then_close(crew_uv *cu, crew_future *f, int status, void *data)
{
    on_done(cu, f, status, data);
    if (tally.total == 5) {
        CHECK(cu == reentrant_cu);
        CHECK_OK(crew_uv_close(cu, on_closed, &closed_calls));
        uint64_t v = 0;
        CHECK_ERR(crew_uv_submit(cu, task_double, &v, sizeof v, on_done, tag(0), NULL),
                  CREW_ECLOSED);
    }
}

static void test_close_from_callback(void)
{
    loop_thread = pthread_self();
    tally_reset();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_THREADS, 2, 0);
    CHECK_OK(crew_uv_create(&reentrant_cu, &loop, p));
    const long n = 3000;
    for (long i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i;
        CHECK_OK(crew_uv_submit(reentrant_cu, task_double, &v, sizeof v, on_done_then_close,
                                tag(i), NULL));
    }
    closed_calls = 0;
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0); /* ends: the handle is closed */
    CHECK_EQ(closed_calls, 1);
    CHECK_EQ(tally.total, n);
    for (long i = 0; i < n; i++) {
        CHECK_EQ(tally.calls[i], 1);
        CHECK(tally.status[i] == 0 || tally.status[i] == CREW_ECANCELED);
    }
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_OK(crew_pool_destroy(p));
}

/* A callback submits the next task: a chain of n, one after another. */
static long chain_left;
static crew_uv *chain_cu;
static void on_chain(crew_uv *cu, crew_future *f, int status, void *data)
{
    (void)f, (void)data;
    CHECK(pthread_equal(pthread_self(), loop_thread));
    CHECK_EQ(status, 0);
    CHECK(cu == chain_cu);
    if (--chain_left > 0) {
        uint64_t v = (uint64_t)chain_left;
        CHECK_OK(crew_uv_submit(cu, task_double, &v, sizeof v, on_chain, NULL, NULL));
    } else {
        CHECK_OK(crew_uv_close(cu, NULL, NULL));
    }
}

static void test_submit_from_callback(void)
{
    loop_thread = pthread_self();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    crew_pool *p = make_pool(CREW_THREADS, 2, 0);
    CHECK_OK(crew_uv_create(&chain_cu, &loop, p));
    chain_left = test_scale(2000);
    uint64_t v = 0;
    CHECK_OK(crew_uv_submit(chain_cu, task_double, &v, sizeof v, on_chain, NULL, NULL));
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(chain_left, 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_OK(crew_pool_destroy(p));
}

/* The usual libuv shutdown walks every handle and closes it; the adapter's
 * handle is recognised and closed through crew_uv_close. */
static int walked, walked_ours;
static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    walked++;
    if (crew_uv_owns_handle(h)) {
        walked_ours++;
        CHECK_OK(crew_uv_close(h->data, NULL, NULL));
    } else if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void test_walk_shutdown(void)
{
    loop_thread = pthread_self();
    tally_reset();
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    uv_timer_t timer;
    CHECK_EQ(uv_timer_init(&loop, &timer), 0);
    crew_pool *p = make_pool(CREW_THREADS, 1, 0);
    crew_uv *cu;
    CHECK_OK(crew_uv_create(&cu, &loop, p));
    CHECK_OK(crew_uv_submit(cu, task_block, NULL, 0, on_done, tag(0), NULL));
    CHECK(!crew_uv_owns_handle((uv_handle_t *)&timer));
    walked = walked_ours = 0;
    uv_walk(&loop, walk_close, NULL);
    CHECK_EQ(walked_ours, 1);
    CHECK(walked >= 2);
    CHECK_EQ(tally.calls[0], 1);
    CHECK_EQ(tally.status[0], CREW_ECANCELED);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_OK(crew_pool_destroy(p));
}

static const test_case cases[] = {
    TEST_CASE(test_every_completion_once),
    TEST_CASE(test_bad_arguments),
    TEST_CASE(test_cancel_queued_and_running),
    TEST_CASE(test_thread_timeout),
    TEST_CASE(test_process_failures),
    TEST_CASE(test_process_crash_details),
    TEST_CASE(test_close_in_flight_leaks_nothing),
    TEST_CASE(test_close_from_callback),
    TEST_CASE(test_submit_from_callback),
    TEST_CASE(test_walk_shutdown),
};
TEST_MAIN_NOHELPERS(cases)
