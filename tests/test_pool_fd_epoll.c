/* The completion fd from a plain epoll loop (no libuv): readable exactly
 * while notified completions wait, every marked future popped exactly once
 * (with a process pool: crashed and timed-out ones too), unmarked futures
 * never show up, and the fd goes quiet once drained. */
#include "crew_test.h"

#include <stdatomic.h>
#include <sys/epoll.h>
#include <time.h>

enum { OK_TASK, SEGV_TASK, HANG_TASK };

static int task(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
                size_t *result_len)
{
    (void)t;
    int32_t v[2];
    CHECK(arg_len == sizeof v && result_cap >= sizeof(int32_t));
    memcpy(v, arg, sizeof v);
    if (v[1] == SEGV_TASK)
        raise(SIGSEGV);
    if (v[1] == HANG_TASK)
        for (;;)
            pause();
    int32_t r = v[0] + 1000;
    memcpy(result, &r, sizeof r);
    *result_len = sizeof r;
    return 0;
}

/* epoll_wait with a timeout in ms; returns the number of events. */
static int wait_readable(int ep, int ms)
{
    struct epoll_event ev;
    int n;
    do
        n = epoll_wait(ep, &ev, 1, ms);
    while (n < 0 && errno == EINTR);
    CHECK(n >= 0);
    return n;
}

static void run(crew_pool_kind kind, long n, int with_failures)
{
    /* The deadline only has to end the hanging task: under a sanitizer a
     * crashing task spends a while printing its report before it dies, and
     * must not be mistaken for one that hangs (ASan, a loaded machine). */
    double deadline = TEST_SANITIZED ? 5.0 : 0.3;
    crew_pool_options po = {.kind = kind, .workers = 2, .task_timeout = with_failures ? deadline : 0};
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &po));
    int fd = crew_pool_fd(p);
    CHECK(fd >= 0);
    CHECK_EQ(crew_pool_fd(p), fd); /* the same fd every time */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    CHECK_EQ(wait_readable(ep, 0), 0); /* nothing done yet */

    int *seen = calloc((size_t)n, sizeof *seen);
    crew_future *unmarked;
    int32_t a[2] = {-1, OK_TASK};
    CHECK_OK(crew_pool_submit(p, task, a, sizeof a, &unmarked)); /* never notified */
    for (long i = 0; i < n; i++) {
        a[0] = (int32_t)i;
        a[1] = with_failures && i == 1 ? SEGV_TASK : with_failures && i == 2 ? HANG_TASK : OK_TASK;
        crew_future *f;
        CHECK_OK(crew_pool_submit(p, task, a, sizeof a, &f));
        CHECK_OK(crew_future_notify(f, (void *)(intptr_t)(i + 1)));
        CHECK_ERR(crew_future_notify(f, NULL), CREW_EBUSY);
    }
    long got = 0;
    while (got < n) {
        CHECK_EQ(wait_readable(ep, 30000), 1);
        crew_future *batch[16];
        size_t k = 0;
        CHECK_OK(crew_pool_completions(p, batch, 16, &k));
        for (size_t j = 0; j < k; j++) {
            long i = (long)(intptr_t)crew_future_user_data(batch[j]) - 1;
            CHECK(i >= 0 && i < n);
            CHECK_EQ(++seen[i], 1);
            CHECK_EQ(crew_future_done(batch[j]), 1);
            int st = crew_future_status(batch[j]);
            if (with_failures && i == 1) {
                CHECK_EQ(st, CREW_ECRASHED);
            } else if (with_failures && i == 2) {
                CHECK_EQ(st, CREW_ETIMEDOUT);
            } else {
                CHECK_EQ(st, 0);
                const void *r;
                size_t len;
                CHECK_OK(crew_future_result(batch[j], &r, &len));
                int32_t v;
                CHECK_EQ(len, sizeof v);
                memcpy(&v, r, sizeof v);
                CHECK_EQ(v, i + 1000);
            }
            CHECK_OK(crew_future_destroy(batch[j]));
            got++;
        }
    }
    /* Drained: the fd is quiet and stays so, though `unmarked` finishes. */
    CHECK_OK(crew_future_wait(unmarked, 30));
    size_t k = 99;
    CHECK_OK(crew_pool_completions(p, NULL, 0, &k));
    CHECK_EQ(k, 0);
    CHECK_EQ(wait_readable(ep, 0), 0);
    /* A future that is already done when marked shows up at once. */
    CHECK_OK(crew_future_notify(unmarked, (void *)(intptr_t)-7));
    CHECK_EQ(wait_readable(ep, 0), 1);
    crew_future *one;
    CHECK_OK(crew_pool_completions(p, &one, 1, &k));
    CHECK(k == 1 && one == unmarked);
    CHECK(crew_future_user_data(one) == (void *)(intptr_t)-7);
    CHECK_EQ(wait_readable(ep, 0), 0);
    CHECK_OK(crew_future_destroy(one));
    CHECK_ERR(crew_pool_completions(NULL, &one, 1, &k), CREW_EINVAL);
    CHECK_ERR(crew_pool_completions(p, &one, 1, NULL), CREW_EINVAL);
    CHECK(crew_future_user_data(NULL) == NULL);
    close(ep);
    CHECK_OK(crew_pool_destroy(p));
    free(seen);
}

static void test_thread_pool_fd(void)
{
    run(CREW_THREADS, test_scale(5000), 0);
}

static void test_process_pool_fd_with_failures(void)
{
    if (TEST_TSAN) {
        printf("# TSan build: process pool skipped (fork after threads)\n");
        return;
    }
    run(CREW_PROCESSES, test_scale(300), 1);
}

static void test_no_leaks(void)
{
    run(CREW_THREADS, 50, 0); /* warm-up: lazily made process-wide state */
    int fds = test_count_fds();
    for (int i = 0; i < 3; i++)
        run(CREW_THREADS, 50, 0);
    CHECK_EQ(test_count_fds(), fds); /* the eventfd goes with the pool */
}

static const test_case cases[] = {
    TEST_CASE(test_thread_pool_fd),
    TEST_CASE(test_process_pool_fd_with_failures),
    TEST_CASE(test_no_leaks),
};
TEST_MAIN_NOHELPERS(cases)
