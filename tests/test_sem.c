/* crew_sem: counting, bounded over-release, timeouts, misuse, a concurrency
 * limit under stress, release(n) waking n waiters, and use across processes. */
#include "crew_test.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>


static void test_init_errors(void)
{
    crew_sem s;
    CHECK_ERR(crew_sem_init(NULL, 0, 0), CREW_EINVAL);
    CHECK_ERR(crew_sem_init(&s, 3, 2), CREW_EINVAL); /* value above max */
    CHECK_ERR(crew_sem_init(&s, (unsigned)INT32_MAX + 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_sem_init(&s, 0, (unsigned)INT32_MAX + 1), CREW_EINVAL);
    crew_sem z;
    memset(&z, 0, sizeof z);
    CHECK_ERR(crew_sem_acquire(&z, 0), CREW_EINVAL); /* never initialised */
    CHECK_ERR(crew_sem_release(&z, 1), CREW_EINVAL);
    CHECK_ERR(crew_sem_try(NULL), CREW_EINVAL);
    CHECK_OK(crew_sem_init(&s, 0, 0));
    CHECK_ERR(crew_sem_release(&s, 0), CREW_EINVAL);
    CHECK_ERR(crew_sem_value(&s, NULL), CREW_EINVAL);
    CHECK_OK(crew_sem_destroy(&s));
    CHECK_ERR(crew_sem_acquire(&s, 0), CREW_EINVAL);
    CHECK_ERR(crew_sem_destroy(&s), CREW_EINVAL);
}

static void test_counting(void)
{
    crew_sem s;
    unsigned v;
    CHECK_OK(crew_sem_init(&s, 2, 0));
    CHECK_OK(crew_sem_try(&s));
    CHECK_OK(crew_sem_acquire(&s, 0));
    CHECK_ERR(crew_sem_try(&s), CREW_EBUSY);
    CHECK_ERR(crew_sem_acquire(&s, 0), CREW_ETIMEDOUT);
    double t0 = crew_now();
    CHECK_ERR(crew_sem_acquire(&s, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_OK(crew_sem_release(&s, 3));
    CHECK_OK(crew_sem_value(&s, &v));
    CHECK_EQ(v, 3);
    CHECK_OK(crew_sem_acquire(&s, CREW_FOREVER));
    CHECK_OK(crew_sem_value(&s, &v));
    CHECK_EQ(v, 2);
}

static void test_bounded(void)
{
    crew_sem s;
    unsigned v;
    CHECK_OK(crew_sem_init(&s, 2, 2));
    CHECK_ERR(crew_sem_release(&s, 1), CREW_EOVERFLOW); /* BoundedSemaphore */
    CHECK_OK(crew_sem_acquire(&s, 0));
    CHECK_ERR(crew_sem_release(&s, 2), CREW_EOVERFLOW); /* all or nothing */
    CHECK_OK(crew_sem_value(&s, &v));
    CHECK_EQ(v, 1);
    CHECK_OK(crew_sem_release(&s, 1));
    CHECK_OK(crew_sem_value(&s, &v));
    CHECK_EQ(v, 2);
    /* Unbounded stops at INT32_MAX. */
    CHECK_OK(crew_sem_init(&s, INT32_MAX - 1, 0));
    CHECK_OK(crew_sem_release(&s, 1));
    CHECK_ERR(crew_sem_release(&s, 1), CREW_EOVERFLOW);
    CHECK_ERR(crew_sem_release(&s, UINT32_MAX), CREW_EOVERFLOW);
}

typedef struct limit {
    crew_sem s;
    _Atomic int inside, max_inside;
    long iters;
} limit;

static void *limited_worker(void *arg)
{
    limit *L = arg;
    for (long i = 0; i < L->iters; i++) {
        int rc = crew_sem_acquire(&L->s, i % 2 ? 0.001 : CREW_FOREVER);
        if (rc == CREW_ETIMEDOUT)
            continue;
        CHECK_OK(rc);
        int now = atomic_fetch_add(&L->inside, 1) + 1;
        int m = atomic_load(&L->max_inside);
        while (now > m && !atomic_compare_exchange_weak(&L->max_inside, &m, now))
            ;
        atomic_fetch_sub(&L->inside, 1);
        CHECK_OK(crew_sem_release(&L->s, 1));
    }
    return NULL;
}

static void test_limit_stress(void)
{
    test_watchdog(40);
    limit L = {.iters = TEST_SANITIZED ? 5000 : 50000};
    CHECK_OK(crew_sem_init(&L.s, 2, 2));
    crew_thread *t[5];
    for (int i = 0; i < 5; i++)
        CHECK_OK(crew_thread_start(&t[i], limited_worker, &L, NULL));
    for (int i = 0; i < 5; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    CHECK(atomic_load(&L.max_inside) <= 2);
    unsigned v;
    CHECK_OK(crew_sem_value(&L.s, &v));
    CHECK_EQ(v, 2);
    test_watchdog(50);
}

static void *take_one(void *arg)
{
    return (void *)(intptr_t)crew_sem_acquire(arg, 10);
}

static void test_release_n_wakes_n(void)
{
    crew_sem s;
    CHECK_OK(crew_sem_init(&s, 0, 0));
    crew_thread *t[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_thread_start(&t[i], take_one, &s, NULL));
    CHECK_OK(crew_sem_release(&s, 3));
    for (int i = 0; i < 3; i++) {
        void *r;
        CHECK_OK(crew_thread_join(t[i], CREW_FOREVER, &r));
        CHECK_OK((int)(intptr_t)r);
        CHECK_OK(crew_thread_destroy(t[i]));
    }
    unsigned v;
    CHECK_OK(crew_sem_value(&s, &v));
    CHECK_EQ(v, 0);
}

static void test_cross_process(void)
{
    /* Two semaphores as a hand-off between processes, many rounds. */
    crew_sem *s = mmap(NULL, 2 * sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
    CHECK(s != MAP_FAILED);
    CHECK_OK(crew_sem_init(&s[0], 0, 1));
    CHECK_OK(crew_sem_init(&s[1], 0, 1));
    int rounds = TEST_SANITIZED ? 200 : 2000;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < rounds; i++)
            if (crew_sem_acquire(&s[0], 10) || crew_sem_release(&s[1], 1))
                _exit(1);
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        CHECK_OK(crew_sem_release(&s[0], 1));
        CHECK_OK(crew_sem_acquire(&s[1], 10));
    }
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* A waiter killed while asleep leaves the semaphore usable. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        crew_sem_acquire(&s[0], CREW_FOREVER);
        _exit(0);
    }
    CHECK(kill(pid, SIGKILL) == 0);
    test_wait(pid);
    CHECK_OK(crew_sem_release(&s[0], 1));
    CHECK_OK(crew_sem_acquire(&s[0], 0));
    munmap(s, 2 * sizeof *s);
}

/* As for events: release must not touch the semaphore after the waiter
 * can see the unit, so the waiter may free it at once (TSan flags a late
 * read racing with the free). */
static void *release_and_leave(void *arg)
{
    CHECK_OK(crew_sem_release(arg, 1));
    return NULL;
}

static void test_free_after_acquire(void)
{
    int n = (int)test_scale(2000);
    for (int i = 0; i < n; i++) {
        crew_sem *s = malloc(sizeof *s);
        CHECK(s != NULL);
        CHECK_OK(crew_sem_init(s, 0, 1));
        crew_thread *t;
        CHECK_OK(crew_thread_start(&t, release_and_leave, s, NULL));
        CHECK_OK(crew_thread_detach(t));
        CHECK_OK(crew_sem_acquire(s, 10));
        free(s);
        CHECK_OK(crew_thread_destroy(t));
    }
}

static const test_case cases[] = {
    TEST_CASE(test_free_after_acquire),
    TEST_CASE(test_init_errors),  TEST_CASE(test_counting),
    TEST_CASE(test_bounded),      TEST_CASE(test_limit_stress),
    TEST_CASE(test_release_n_wakes_n), TEST_CASE(test_cross_process),
};
TEST_MAIN_NOHELPERS(cases)
