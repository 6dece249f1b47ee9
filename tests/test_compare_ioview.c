/* iov_measure (cli/ioview.c, the I/O view of crew compare), called through
 * the CLI's internal library: argument checks, each model really waits
 * (never faster than the wait itself; a pool of k threads never runs more
 * than k waits at once), and nothing it starts outlives the call (threads,
 * fds). */
#include "crew_test.h"

#include "cli.h"

static int count_threads(void) { return test_count_dir("/proc/self/task") + 1; }

/* One small run of each model first, so that threads started lazily by the
 * runtime (TSan's background thread, glibc's stack cache) are in the
 * baseline the leak checks compare against. */
static void warm_up(void)
{
    iov_result r;
    for (int m = 0; m < 3; m++)
        CHECK_OK(iov_measure(m, 2, 0, NULL, &r));
}

static void test_bad_arguments(void)
{
    iov_result r;
    iov_options o = {0};
    CHECK_ERR(iov_measure(IOV_EVENT_LOOP, 10, 0.001, NULL, NULL), CREW_EINVAL);
    CHECK_ERR(iov_measure(7, 10, 0.001, NULL, &r), CREW_EINVAL);
    CHECK_ERR(iov_measure(-1, 10, 0.001, NULL, &r), CREW_EINVAL);
    CHECK_ERR(iov_measure(IOV_EVENT_LOOP, 0, 0.001, NULL, &r), CREW_EINVAL);
    CHECK_ERR(iov_measure(IOV_EVENT_LOOP, 1000001, 0.001, NULL, &r), CREW_EINVAL);
    CHECK_ERR(iov_measure(IOV_EVENT_LOOP, 10, -0.5, NULL, &r), CREW_EINVAL);
    CHECK_ERR(iov_measure(IOV_EVENT_LOOP, 10, 61, NULL, &r), CREW_EINVAL);
    CHECK_ERR(iov_measure(IOV_EVENT_LOOP, 10, 0.0 / 0.0, NULL, &r), CREW_EINVAL);
    o.pool_threads = -1;
    CHECK_ERR(iov_measure(IOV_THREAD_POOL, 10, 0.001, &o, &r), CREW_EINVAL);
    o.pool_threads = 1025;
    CHECK_ERR(iov_measure(IOV_THREAD_POOL, 10, 0.001, &o, &r), CREW_EINVAL);
    CHECK(strcmp(iov_model_name(IOV_EVENT_LOOP), "event loop") == 0);
    CHECK(strcmp(iov_model_name(IOV_THREAD_PER_WAIT), "thread per wait") == 0);
    CHECK(strcmp(iov_model_name(IOV_THREAD_POOL), "thread pool") == 0);
    CHECK(strcmp(iov_model_name(42), "unknown") == 0);
}

static void check_common(const iov_result *r, int model, int n, double wait)
{
    CHECK_EQ(r->model, model);
    CHECK_EQ(r->concurrency, n);
    CHECK(r->wait_s == wait && r->ideal_s == wait);
    CHECK(r->elapsed_s >= wait); /* every wait really waited */
    CHECK(r->ratio >= 1.0);
    CHECK(r->waits_per_s > 0);
    CHECK(r->cpu_s >= 0);
    CHECK_EQ(r->rss_per_wait, r->rss_growth / (size_t)n);
}

static void test_event_loop(void)
{
    warm_up();
    int fds = test_count_fds(), threads = count_threads();
    iov_result r;
    int n = (int)test_scale(5000);
    CHECK_OK(iov_measure(IOV_EVENT_LOOP, n, 0.01, NULL, &r));
    check_common(&r, IOV_EVENT_LOOP, n, 0.01);
    CHECK_EQ(r.threads, 1);
    printf("# event loop: %d waits of 10 ms in %.2f ms (%.2fx ideal), %zu B RSS/wait\n", n,
           r.elapsed_s * 1e3, r.ratio, r.rss_per_wait);
    CHECK_OK(iov_measure(IOV_EVENT_LOOP, 3, 0, NULL, &r));
    CHECK(r.ratio == 0);
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(count_threads(), threads);
}

static void test_thread_per_wait(void)
{
    warm_up();
    int fds = test_count_fds(), threads = count_threads();
    iov_result r;
    int n = (int)test_scale(500);
    CHECK_OK(iov_measure(IOV_THREAD_PER_WAIT, n, 0.005, NULL, &r));
    check_common(&r, IOV_THREAD_PER_WAIT, n, 0.005);
    CHECK_EQ(r.threads, n);
    printf("# thread per wait: %d waits of 5 ms in %.2f ms (%.2fx ideal), %zu B RSS/wait\n", n,
           r.elapsed_s * 1e3, r.ratio, r.rss_per_wait);
    iov_options o = {.thread_stack = 64 * 1024};
    CHECK_OK(iov_measure(IOV_THREAD_PER_WAIT, 50, 0.001, &o, &r));
    check_common(&r, IOV_THREAD_PER_WAIT, 50, 0.001);
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(count_threads(), threads); /* all joined */
}

static void test_thread_pool_limits_concurrency(void)
{
    warm_up();
    int fds = test_count_fds(), threads = count_threads();
    iov_result r;
    iov_options o = {.pool_threads = 4};
    CHECK_OK(iov_measure(IOV_THREAD_POOL, 20, 0.005, &o, &r));
    check_common(&r, IOV_THREAD_POOL, 20, 0.005);
    CHECK_EQ(r.threads, 4);
    CHECK(r.elapsed_s >= 5 * 0.005); /* 20 waits, 4 at a time: 5 rounds at least */
    CHECK_OK(iov_measure(IOV_THREAD_POOL, 300, 0.002, NULL, &r));
    CHECK_EQ(r.threads, 100);
    CHECK(r.elapsed_s >= 3 * 0.002);
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(count_threads(), threads);
}

static const test_case cases[] = {
    TEST_CASE(test_bad_arguments),
    TEST_CASE(test_event_loop),
    TEST_CASE(test_thread_per_wait),
    TEST_CASE(test_thread_pool_limits_concurrency),
};
TEST_MAIN_NOHELPERS(cases)
