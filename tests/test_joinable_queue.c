/* The queue calls of issue 14 (item 6): a joinable queue (task_done / join,
 * one count for every process), the message count, empty / full, and
 * closing at once. Each case names the CPython test it mirrors
 * (Lib/test/test_queue.py, Lib/test/_test_multiprocessing.py). */
#include "crew_test.h"
#include "ipc/ring.h" /* to see that a thread sleeps in the queue (waiter counts) */

#include <math.h>
#include <sys/mman.h>
#include <sched.h>
#include <stdint.h>

static crew_queue *joinable(size_t capacity)
{
    crew_queue_options o = {.capacity = capacity, .joinable = 1};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    CHECK_EQ(crew_queue_joinable(q), 1);
    return q;
}

static size_t messages(crew_queue *q)
{
    size_t n = 99;
    CHECK_OK(crew_queue_counts_get(q, &n, NULL));
    return n;
}

static size_t unfinished(crew_queue *q)
{
    size_t n = 99;
    CHECK_OK(crew_queue_counts_get(q, NULL, &n));
    return n;
}

static int join_rc(crew_thread *t)
{
    void *r;
    CHECK_OK(crew_thread_join(t, 30, &r));
    CHECK_OK(crew_thread_destroy(t));
    return (int)(intptr_t)r;
}

/* ------------------------------------------------------------ task_done / join */
typedef struct work {
    crew_queue *q;
    _Atomic long sum;
} work;

static void *consume_and_done(void *arg)
{
    work *w = arg;
    long v;
    size_t len;
    int rc;
    while ((rc = crew_queue_get(w->q, &v, sizeof v, &len, CREW_FOREVER)) == 0) {
        atomic_fetch_add(&w->sum, v);
        CHECK_OK(crew_queue_task_done(w->q));
    }
    return (void *)(intptr_t)(rc == CREW_EOF ? 0 : rc);
}

/* test_queue.py BaseQueueTestMixin.test_queue_join (queue_join_test):
 * worker threads take messages and task_done each; join returns once every
 * put message is done -- not merely taken. Twice, to show the count is
 * reusable (Python's test runs queue_join_test twice). */
static void test_join_threads(void)
{
    crew_queue *q = joinable(0);
    CHECK_OK(crew_queue_join(q, 0)); /* nothing put yet: done at once */
    work w = {.q = q};
    enum { NT = 4, N = 1000 };
    crew_thread *t[NT];
    for (int i = 0; i < NT; i++)
        CHECK_OK(crew_thread_start(&t[i], consume_and_done, &w, NULL));
    long want = 0;
    for (int round = 0; round < 2; round++) {
        for (long i = 1; i <= N; i++) {
            CHECK_OK(crew_queue_put(q, &i, sizeof i, CREW_FOREVER));
            want += i;
        }
        CHECK_OK(crew_queue_join(q, 30));
        CHECK_EQ(atomic_load(&w.sum), want); /* every task's work is visible */
        CHECK_EQ(unfinished(q), 0);
        CHECK_EQ(messages(q), 0);
    }
    CHECK_OK(crew_queue_close(q));
    for (int i = 0; i < NT; i++)
        CHECK_OK(join_rc(t[i]));
    CHECK_OK(crew_queue_destroy(q));
}

/* test_queue.py BaseQueueTestMixin.test_queue_task_done: task_done with no
 * unfinished task is Python's ValueError; here CREW_ESTATE, changing
 * nothing. A message taken but not done keeps join waiting. */
static void test_task_done_too_many(void)
{
    crew_queue *q = joinable(0);
    CHECK_ERR(crew_queue_task_done(q), CREW_ESTATE);
    CHECK_OK(crew_queue_put(q, "a", 1, 0));
    CHECK_OK(crew_queue_put(q, "b", 1, 0));
    CHECK_EQ(unfinished(q), 2);
    char c;
    CHECK_OK(crew_queue_get(q, &c, 1, NULL, 0));
    CHECK_EQ(unfinished(q), 2); /* taken is not done */
    CHECK_ERR(crew_queue_join(q, 0), CREW_ETIMEDOUT);
    double t0 = crew_now();
    CHECK_ERR(crew_queue_join(q, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_OK(crew_queue_task_done(q));
    CHECK_OK(crew_queue_task_done(q)); /* done before taken: Python allows it too */
    CHECK_ERR(crew_queue_task_done(q), CREW_ESTATE);
    CHECK_EQ(unfinished(q), 0);
    CHECK_OK(crew_queue_join(q, 0));
    CHECK_EQ(messages(q), 1); /* "b" is still queued */
    CHECK_OK(crew_queue_destroy(q));
}

/* Argument and state errors, with exact codes. */
static void test_errors(void)
{
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_EQ(crew_queue_joinable(q), 0);
    CHECK_ERR(crew_queue_task_done(q), CREW_ENOTSUP);
    CHECK_ERR(crew_queue_join(q, 0), CREW_ENOTSUP);
    size_t u = 7;
    CHECK_OK(crew_queue_counts_get(q, NULL, &u));
    CHECK_EQ(u, 0);
    CHECK_OK(crew_queue_counts_get(q, NULL, NULL));
    CHECK_OK(crew_queue_destroy(q));
    q = joinable(0);
    CHECK_ERR(crew_queue_join(q, NAN), CREW_EINVAL);
    CHECK_ERR(crew_queue_join(NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_task_done(NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_counts_get(NULL, &u, &u), CREW_EINVAL);
    CHECK_ERR(crew_queue_empty(NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_full(NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_joinable(NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_close_now(NULL, NULL), CREW_EINVAL);
    /* After close: task_done and join still work (tasks taken before the
     * close may finish after it, as in Python). */
    CHECK_OK(crew_queue_put(q, "x", 1, 0));
    CHECK_OK(crew_queue_close(q));
    CHECK_ERR(crew_queue_put(q, "y", 1, 0), CREW_ECLOSED);
    char c;
    CHECK_OK(crew_queue_get(q, &c, 1, NULL, 0));
    CHECK_OK(crew_queue_task_done(q));
    CHECK_OK(crew_queue_join(q, 0));
    CHECK_ERR(crew_queue_get(q, &c, 1, NULL, 0), CREW_EOF);
    CHECK_OK(crew_queue_destroy(q));
}

/* A joiner blocked in join is woken by the last task_done, well before its
 * timeout (Python: all_tasks_done.notify_all). */
static void *join_forever(void *arg)
{
    return (void *)(intptr_t)crew_queue_join(arg, CREW_FOREVER);
}

static void test_join_wakes(void)
{
    crew_queue *q = joinable(0);
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_queue_put(q, "t", 1, 0));
    crew_thread *j[2];
    for (int i = 0; i < 2; i++)
        CHECK_OK(crew_thread_start(&j[i], join_forever, q, NULL));
    for (int i = 0; i < 3; i++) {
        char c;
        CHECK_OK(crew_queue_get(q, &c, 1, NULL, 0));
        CHECK_OK(crew_queue_task_done(q));
    }
    for (int i = 0; i < 2; i++)
        CHECK_OK(join_rc(j[i]));
    CHECK_OK(crew_queue_destroy(q));
}

/* ------------------------------------------------------------ processes */
/* An exec'd process attaches by fd, takes every message and task_done's it;
 * the count it moves is the parent's (_test_multiprocessing.py
 * _TestQueue.test_task_done: JoinableQueue workers are processes). */
static int helper_worker(int argc, char **argv)
{
    CHECK(argc == 1);
    int fd = atoi(argv[0]);
    crew_queue *q;
    CHECK_OK(crew_queue_attach(&q, fd));
    close(fd);
    CHECK_EQ(crew_queue_joinable(q), 1);
    long v;
    int rc;
    while ((rc = crew_queue_get(q, &v, sizeof v, NULL, CREW_FOREVER)) == 0)
        CHECK_OK(crew_queue_task_done(q));
    CHECK_ERR(rc, CREW_EOF);
    CHECK_OK(crew_queue_destroy(q));
    return 0;
}

static void test_join_processes(void)
{
    crew_queue *q = joinable(4096); /* small: puts wait for the workers too */
    int fd;
    CHECK_OK(crew_queue_dup_fd(q, &fd));
    char a[16];
    snprintf(a, sizeof a, "%d", fd);
    pid_t kids[3];
    for (int i = 0; i < 2; i++)
        kids[i] = test_spawn_helper("helper_worker", a, NULL);
    close(fd);
    /* ... and a fork child with the same handle. */
    kids[2] = fork();
    CHECK(kids[2] >= 0);
    if (kids[2] == 0) {
        long v;
        while (crew_queue_get(q, &v, sizeof v, NULL, CREW_FOREVER) == 0)
            if (crew_queue_task_done(q) != 0)
                _exit(2);
        _exit(0);
    }
    long n = test_scale(20000);
    for (long i = 0; i < n; i++)
        CHECK_OK(crew_queue_put(q, &i, sizeof i, 30));
    CHECK_OK(crew_queue_join(q, 60));
    CHECK_EQ(unfinished(q), 0);
    CHECK_ERR(crew_queue_task_done(q), CREW_ESTATE);
    CHECK_OK(crew_queue_close(q));
    for (int i = 0; i < 3; i++) {
        int st = test_wait(kids[i]);
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 0);
    }
    CHECK_OK(crew_queue_destroy(q));
}

/* ------------------------------------------------------------ counts */
/* _test_multiprocessing.py _TestQueue.test_qsize, and test_put / test_get's
 * empty() and full() checks, on a queue bounded by bytes: capacity 64 holds
 * eight empty messages (one 8-byte record each). */
static void test_counts_empty_full(void)
{
    crew_queue_options o = {.capacity = 64};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    CHECK_EQ(crew_queue_empty(q), 1);
    CHECK_EQ(crew_queue_full(q), 0);
    CHECK_EQ(messages(q), 0);
    for (int i = 1; i <= 8; i++) {
        CHECK_OK(crew_queue_put(q, "", 0, 0));
        CHECK_EQ(messages(q), i);
        CHECK_EQ(crew_queue_empty(q), 0);
        CHECK_EQ(crew_queue_full(q), i == 8);
    }
    CHECK_ERR(crew_queue_put(q, "", 0, 0), CREW_EAGAIN);
    for (int i = 7; i >= 0; i--) {
        CHECK_OK(crew_queue_get(q, NULL, 0, NULL, 0));
        CHECK_EQ(messages(q), i);
        CHECK_EQ(crew_queue_full(q), 0);
    }
    CHECK_EQ(crew_queue_empty(q), 1);
    /* Variable sizes, wrapping the ring: the count follows messages, not
     * bytes. */
    char buf[40] = {0};
    for (int round = 0; round < 50; round++) {
        CHECK_OK(crew_queue_put(q, buf, (size_t)(round % 3) * 8, 0));
        CHECK_OK(crew_queue_put(q, buf, 1, 0));
        CHECK_EQ(messages(q), 2);
        CHECK_OK(crew_queue_get(q, buf, sizeof buf, NULL, 0));
        CHECK_OK(crew_queue_get(q, buf, sizeof buf, NULL, 0));
        CHECK_EQ(messages(q), 0);
    }
    /* An E2BIG get takes nothing. */
    CHECK_OK(crew_queue_put(q, buf, 16, 0));
    CHECK_ERR(crew_queue_get(q, buf, 4, NULL, 0), CREW_E2BIG);
    CHECK_EQ(messages(q), 1);
    CHECK_OK(crew_queue_destroy(q));
}

/* ------------------------------------------------------------ close at once */
/* test_queue.py test_shutdown_immediate_all_methods_in_one_thread: after an
 * immediate shutdown the queued items are gone, put fails, get reports the
 * end, and join no longer waits for the dropped items (only for the task
 * already taken). */
static void test_close_now(void)
{
    crew_queue *q = joinable(0);
    for (int i = 0; i < 5; i++)
        CHECK_OK(crew_queue_put(q, &i, sizeof i, 0));
    int v;
    CHECK_OK(crew_queue_get(q, &v, sizeof v, NULL, 0)); /* taken, not done */
    size_t dropped = 99;
    CHECK_OK(crew_queue_close_now(q, &dropped));
    CHECK_EQ(dropped, 4);
    CHECK_EQ(messages(q), 0);
    CHECK_EQ(crew_queue_empty(q), 1);
    CHECK_EQ(unfinished(q), 1);
    CHECK_ERR(crew_queue_get(q, &v, sizeof v, NULL, 0), CREW_EOF);
    CHECK_ERR(crew_queue_get(q, &v, sizeof v, NULL, 1), CREW_EOF);
    CHECK_ERR(crew_queue_put(q, &v, sizeof v, 0), CREW_ECLOSED);
    CHECK_ERR(crew_queue_join(q, 0), CREW_ETIMEDOUT);
    CHECK_OK(crew_queue_task_done(q));
    CHECK_OK(crew_queue_join(q, 0));
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(q, &st));
    CHECK_EQ(st.closed, 1);
    CHECK_EQ(st.used, 0);
    CHECK_OK(crew_queue_close_now(q, &dropped)); /* idempotent */
    CHECK_EQ(dropped, 0);
    CHECK_OK(crew_queue_close(q));
    CHECK_OK(crew_queue_destroy(q));

    /* After a plain close, close_now drops what is left to drain. */
    CHECK_OK(crew_queue_create(&q, NULL));
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_queue_put(q, &i, sizeof i, 0));
    CHECK_OK(crew_queue_close(q));
    CHECK_OK(crew_queue_get(q, &v, sizeof v, NULL, 0));
    CHECK_OK(crew_queue_close_now(q, NULL));
    CHECK_ERR(crew_queue_get(q, &v, sizeof v, NULL, 0), CREW_EOF);
    CHECK_OK(crew_queue_destroy(q));
}

static void *get_forever(void *arg)
{
    char buf[8];
    return (void *)(intptr_t)crew_queue_get(arg, buf, sizeof buf, NULL, CREW_FOREVER);
}

static void *put_forever(void *arg)
{
    return (void *)(intptr_t)crew_queue_put(arg, "12345678", 8, CREW_FOREVER);
}

/* Waits until a thread sleeps in q: the ring's waiter count (data_waiters
 * for a get, space_waiters for a put) is raised only by a waiter about to
 * sleep on the futex. */
static void until_sleeping(crew_queue *q, bool getter)
{
    int fd;
    CHECK_OK(crew_queue_dup_fd(q, &fd));
    crew__ring *r = mmap(NULL, CREW__RING_DATA_OFF, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(r != MAP_FAILED);
    close(fd);
    _Atomic uint32_t *w = getter ? &r->data_waiters : &r->space_waiters;
    while (atomic_load(w) == 0)
        sched_yield();
    munmap(r, CREW__RING_DATA_OFF);
}

/* test_queue.py test_shutdown_immediate_get / _put: threads blocked in get
 * (empty queue) and in put (full queue) are released by an immediate close
 * with the closed status, however long their timeout. */
static void test_close_now_wakes(void)
{
    crew_queue *empty, *full;
    crew_queue_options o = {.capacity = 64};
    CHECK_OK(crew_queue_create(&empty, NULL));
    CHECK_OK(crew_queue_create(&full, &o));
    while (crew_queue_try_put(full, "12345678", 8) == 0)
        ;
    crew_thread *g, *p;
    CHECK_OK(crew_thread_start(&g, get_forever, empty, NULL));
    CHECK_OK(crew_thread_start(&p, put_forever, full, NULL));
    until_sleeping(empty, true);
    until_sleeping(full, false);
    size_t dropped;
    CHECK_OK(crew_queue_close_now(empty, &dropped));
    CHECK_EQ(dropped, 0);
    CHECK_OK(crew_queue_close_now(full, &dropped));
    CHECK_EQ(dropped, 4); /* 16-byte records; the blocked put never landed */
    CHECK_ERR(join_rc(g), CREW_EOF);
    CHECK_ERR(join_rc(p), CREW_ECLOSED);
    CHECK_EQ(messages(full), 0);
    CHECK_OK(crew_queue_destroy(empty));
    CHECK_OK(crew_queue_destroy(full));
}

/* The drop is seen by another process: a fork child blocked in get gets
 * CREW_EOF, and the dropped tasks count as done for its join too. */
static void test_close_now_processes(void)
{
    crew_queue *q = joinable(0);
    for (int i = 0; i < 10; i++)
        CHECK_OK(crew_queue_put(q, &i, sizeof i, 0));
    crew_queue *gate;
    CHECK_OK(crew_queue_create(&gate, NULL));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        if (crew_queue_get(gate, &c, 1, NULL, 20) != 0) /* wait for the drop */
            _exit(1);
        int v;
        if (crew_queue_get(q, &v, sizeof v, NULL, 20) != CREW_EOF)
            _exit(2);
        if (crew_queue_join(q, 20) != 0)
            _exit(3);
        _exit(0);
    }
    size_t dropped;
    CHECK_OK(crew_queue_close_now(q, &dropped));
    CHECK_EQ(dropped, 10);
    CHECK_OK(crew_queue_put(gate, "g", 1, 0));
    int st = test_wait(pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_OK(crew_queue_destroy(q));
    CHECK_OK(crew_queue_destroy(gate));
}

static const test_case cases[] = {
    TEST_CASE(test_join_threads),
    TEST_CASE(test_task_done_too_many),
    TEST_CASE(test_errors),
    TEST_CASE(test_join_wakes),
    TEST_CASE(test_join_processes),
    TEST_CASE(test_counts_empty_full),
    TEST_CASE(test_close_now),
    TEST_CASE(test_close_now_wakes),
    TEST_CASE(test_close_now_processes),
};
static const test_helper helpers[] = {TEST_HELPER(helper_worker)};
TEST_MAIN(cases, helpers)
