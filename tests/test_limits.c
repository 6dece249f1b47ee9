/* Sizes and times at the edges, in every call that takes them: a size near
 * SIZE_MAX, a negative int cast to size_t, products that overflow, an
 * infinite or absurd time. Each gets its documented error code (or, for an
 * infinite timeout, the documented "forever" once there is something to
 * wait for) -- never a crash, a hang or an allocation of the wrapped size. */
#include "crew_test.h"

#include <math.h>

static const size_t HUGE_SIZES[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX / 2 + 1, (size_t)-4096,
                                    (size_t)(int)-1};

static int task_nop(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *rl)
{
    (void)t, (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    return 0;
}

static void test_shm_sizes(void)
{
    for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++) {
        crew_shm *s = (crew_shm *)0x1;
        CHECK_ERR(crew_shm_create(&s, HUGE_SIZES[i], NULL), CREW_EOVERFLOW);
    }
    crew_shm *s;
    crew_shm_options ho = {.heap = 1};
    CHECK_OK(crew_shm_create(&s, 1 << 16, &ho));
    size_t off;
    for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++) {
        CHECK_ERR(crew_shm_alloc(s, HUGE_SIZES[i], &off), CREW_EINVAL); /* > the region */
        CHECK(crew_shm_at(s, HUGE_SIZES[i]) == NULL);
    }
    CHECK_OK(crew_shm_alloc(s, 64, &off)); /* still works */
    CHECK_OK(crew_shm_free(s, off));
    CHECK_OK(crew_shm_destroy(s));
}

static void test_array_sizes(void)
{
    crew_array *a;
    CHECK_ERR(crew_array_create(&a, CREW_TYPE_BYTES, SIZE_MAX, 2, 0), CREW_EOVERFLOW);
    CHECK_ERR(crew_array_create(&a, CREW_TYPE_BYTES, 2, SIZE_MAX, 0), CREW_EOVERFLOW);
    CHECK_ERR(crew_array_create(&a, CREW_TYPE_I64, 0, SIZE_MAX / 4, 0), CREW_EOVERFLOW);
    CHECK_OK(crew_array_create(&a, CREW_TYPE_I64, 0, 4, 0));
    int64_t v = 0;
    for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++) {
        CHECK_ERR(crew_array_get(a, HUGE_SIZES[i], &v), CREW_ERANGE);
        CHECK_ERR(crew_array_set(a, HUGE_SIZES[i], &v), CREW_ERANGE);
    }
    CHECK_OK(crew_array_destroy(a));
}

static void test_queue_and_pipe_sizes(void)
{
    crew_queue *q;
    crew_queue_options qo = {.capacity = SIZE_MAX};
    CHECK_ERR(crew_queue_create(&q, &qo), CREW_EINVAL);
    qo = (crew_queue_options){.max_message = SIZE_MAX};
    CHECK_ERR(crew_queue_create(&q, &qo), CREW_EINVAL);
    CHECK_OK(crew_queue_create(&q, NULL));
    char buf[16] = {0};
    size_t len;
    for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++)
        CHECK_ERR(crew_queue_put(q, buf, HUGE_SIZES[i], 0), CREW_E2BIG);
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, 0), CREW_EAGAIN);
    CHECK_OK(crew_queue_destroy(q));

    crew_pipe *a, *b;
    crew_pipe_options po = {.capacity = SIZE_MAX};
    CHECK_ERR(crew_pipe_create(&a, &b, &po), CREW_EINVAL);
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++)
        CHECK_ERR(crew_pipe_send(a, buf, HUGE_SIZES[i], 0), CREW_E2BIG);
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, 0), CREW_EAGAIN);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static void test_pool_sizes(void)
{
    for (int kind = 0; kind < 2; kind++) {
        crew_pool_options o = {.kind = kind, .workers = 1};
        crew_pool *p;
        CHECK_OK(crew_pool_create(&p, &o));
        char arg[8] = {0};
        crew_future *f = NULL;
        for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++) {
            CHECK_ERR(crew_pool_submit(p, task_nop, arg, HUGE_SIZES[i], &f), CREW_E2BIG);
            /* map: n * in_size overflows (records that cannot exist) */
            CHECK_ERR(crew_pool_map(p, task_nop, arg, 4, NULL, 0, HUGE_SIZES[i], NULL),
                      CREW_EOVERFLOW);
            CHECK_ERR(crew_pool_map(p, task_nop, arg, HUGE_SIZES[i], NULL, 0, 2, NULL),
                      CREW_E2BIG);
        }
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, 4096, NULL));
        for (size_t i = 0; i < sizeof HUGE_SIZES / sizeof HUGE_SIZES[0]; i++) {
            CHECK_ERR(crew_pool_submit_shm(p, task_nop, s, HUGE_SIZES[i], 1, &f), CREW_ERANGE);
            int rc = crew_pool_submit_shm(p, task_nop, s, 1, HUGE_SIZES[i], &f);
            CHECK(rc == CREW_ERANGE || rc == CREW_E2BIG);
        }
        /* still usable */
        CHECK_OK(crew_pool_submit(p, task_nop, arg, sizeof arg, &f));
        CHECK_OK(crew_future_wait(f, 30));
        CHECK_OK(crew_future_status(f));
        crew_future_destroy(f);
        CHECK_OK(crew_pool_destroy(p));
        CHECK_OK(crew_shm_destroy(s));
    }
}

/* Pool options that are times: an infinite or absurd deadline or grace is
 * rejected at create (it cannot be turned into a clock value), as are
 * sizes that cannot be slots. */
static void test_pool_option_limits(void)
{
    const double bad[] = {INFINITY, -INFINITY, NAN, 1e300, -1};
    for (int kind = 0; kind < 2; kind++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            crew_pool *p;
            crew_pool_options o = {.kind = kind, .workers = 1, .task_timeout = bad[i]};
            CHECK_ERR(crew_pool_create(&p, &o), CREW_EINVAL);
            o = (crew_pool_options){.kind = kind, .workers = 1, .kill_grace = bad[i]};
            CHECK_ERR(crew_pool_create(&p, &o), CREW_EINVAL);
        }
    for (int kind = 0; kind < 2; kind++) {
        crew_pool *p;
        crew_pool_options o = {.kind = kind, .workers = 1, .max_arg_size = SIZE_MAX};
        CHECK_ERR(crew_pool_create(&p, &o), CREW_EINVAL);
        o = (crew_pool_options){.kind = kind, .workers = 1, .max_result_size = (size_t)(int)-1};
        CHECK_ERR(crew_pool_create(&p, &o), CREW_EINVAL);
        o = (crew_pool_options){.kind = kind, .workers = -1};
        CHECK_ERR(crew_pool_create(&p, &o), CREW_EINVAL);
    }
}

/* An infinite timeout waits forever (as CREW_FOREVER does): it returns as
 * soon as there is something, and a poll-like call with nothing to wait
 * for is not a hang of ours. */
static void test_infinite_timeouts(void)
{
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    CHECK_OK(crew_lock_acquire(&l, INFINITY));
    CHECK_OK(crew_lock_release(&l));
    crew_sem s;
    CHECK_OK(crew_sem_init(&s, 1, 0));
    CHECK_OK(crew_sem_acquire(&s, INFINITY));
    crew_event e;
    CHECK_OK(crew_event_init(&e));
    CHECK_OK(crew_event_set(&e));
    CHECK_OK(crew_event_wait(&e, INFINITY));
    CHECK_OK(crew_event_wait(&e, 1e300));
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_OK(crew_queue_put(q, "x", 1, INFINITY));
    char c;
    size_t len;
    CHECK_OK(crew_queue_get(q, &c, 1, &len, INFINITY));
    CHECK_OK(crew_queue_destroy(q));
    for (int kind = 0; kind < 2; kind++) {
        crew_pool_options o = {.kind = kind, .workers = 1};
        crew_pool *p;
        CHECK_OK(crew_pool_create(&p, &o));
        crew_future *f;
        CHECK_OK(crew_pool_submit(p, task_nop, NULL, 0, &f));
        CHECK_OK(crew_future_wait(f, INFINITY));
        CHECK_OK(crew_wait_all(&f, 1, 1e300));
        crew_future_destroy(f);
        CHECK_OK(crew_pool_destroy(p));
    }
}

static const test_case cases[] = {
    TEST_CASE(test_shm_sizes),         TEST_CASE(test_array_sizes),
    TEST_CASE(test_queue_and_pipe_sizes), TEST_CASE(test_pool_sizes),
    TEST_CASE(test_pool_option_limits), TEST_CASE(test_infinite_timeouts),
};
TEST_MAIN_NOHELPERS(cases)
