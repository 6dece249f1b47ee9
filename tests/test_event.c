/* crew_event: set/clear/is_set/wait, timeouts, misuse, many waiters, and
 * use across processes. */
#include "crew_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>


static void test_basic(void)
{
    crew_event e, z;
    memset(&z, 0, sizeof z);
    CHECK_ERR(crew_event_init(NULL), CREW_EINVAL);
    CHECK_ERR(crew_event_set(&z), CREW_EINVAL);
    CHECK_ERR(crew_event_wait(&z, 0), CREW_EINVAL);
    CHECK_ERR(crew_event_is_set(NULL), CREW_EINVAL);
    CHECK_OK(crew_event_init(&e));
    CHECK_EQ(crew_event_is_set(&e), 0);
    CHECK_ERR(crew_event_wait(&e, 0), CREW_ETIMEDOUT);
    double t0 = crew_now();
    CHECK_ERR(crew_event_wait(&e, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_OK(crew_event_set(&e));
    CHECK_OK(crew_event_set(&e)); /* idempotent */
    CHECK_EQ(crew_event_is_set(&e), 1);
    CHECK_OK(crew_event_wait(&e, 0));
    CHECK_OK(crew_event_wait(&e, CREW_FOREVER));
    CHECK_OK(crew_event_clear(&e));
    CHECK_EQ(crew_event_is_set(&e), 0);
    CHECK_ERR(crew_event_wait(&e, 0.01), CREW_ETIMEDOUT);
    CHECK_OK(crew_event_destroy(&e));
    CHECK_ERR(crew_event_set(&e), CREW_EINVAL);
    CHECK_ERR(crew_event_destroy(&e), CREW_EINVAL);
}

static void *wait_it(void *arg) { return (void *)(intptr_t)crew_event_wait(arg, 10); }

static void test_wakes_all(void)
{
    crew_event e;
    CHECK_OK(crew_event_init(&e));
    crew_thread *t[6];
    for (int i = 0; i < 6; i++)
        CHECK_OK(crew_thread_start(&t[i], wait_it, &e, NULL));
    CHECK_OK(crew_event_set(&e));
    for (int i = 0; i < 6; i++) {
        void *r;
        CHECK_OK(crew_thread_join(t[i], CREW_FOREVER, &r));
        CHECK_OK((int)(intptr_t)r);
        CHECK_OK(crew_thread_destroy(t[i]));
    }
}

typedef struct relay {
    crew_event ping, pong;
    int rounds;
} relay;

static void *relay_worker(void *arg)
{
    relay *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        CHECK_OK(crew_event_wait(&r->ping, 10));
        CHECK_OK(crew_event_clear(&r->ping));
        CHECK_OK(crew_event_set(&r->pong));
    }
    return NULL;
}

static void test_relay_stress(void)
{
    /* set/clear hand-offs between two threads, under a watchdog. */
    test_watchdog(40);
    relay r = {.rounds = TEST_SANITIZED ? 2000 : 20000};
    CHECK_OK(crew_event_init(&r.ping));
    CHECK_OK(crew_event_init(&r.pong));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, relay_worker, &r, NULL));
    for (int i = 0; i < r.rounds; i++) {
        CHECK_OK(crew_event_set(&r.ping));
        CHECK_OK(crew_event_wait(&r.pong, 10));
        CHECK_OK(crew_event_clear(&r.pong));
    }
    CHECK_OK(crew_thread_destroy(t));
    test_watchdog(50);
}

static void test_cross_process(void)
{
    crew_event *e = mmap(NULL, 2 * sizeof *e, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(e != MAP_FAILED);
    CHECK_OK(crew_event_init(&e[0]));
    CHECK_OK(crew_event_init(&e[1]));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (crew_event_wait(&e[0], 10))
            _exit(1);
        crew_event_set(&e[1]);
        _exit(0);
    }
    CHECK_OK(crew_event_set(&e[0]));
    CHECK_OK(crew_event_wait(&e[1], 10));
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* A waiter killed while asleep leaves the event usable. */
    CHECK_OK(crew_event_clear(&e[0]));
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        crew_event_wait(&e[0], CREW_FOREVER);
        _exit(0);
    }
    CHECK(kill(pid, SIGKILL) == 0);
    test_wait(pid);
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_it, &e[0], NULL));
    CHECK_OK(crew_event_set(&e[0]));
    void *r;
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, &r));
    CHECK_OK((int)(intptr_t)r);
    CHECK_OK(crew_thread_destroy(t));
    munmap(e, 2 * sizeof *e);
}

/* The waiter frees the event as soon as its wait returns, while the setter
 * may still be inside crew_event_set: set must not touch the memory after
 * the change the waiter sees (TSan flags the free racing with a late read;
 * it caught exactly that in an earlier version of this code). */
static void *set_and_leave(void *arg)
{
    CHECK_OK(crew_event_set(arg));
    return NULL;
}

static void test_free_after_wait(void)
{
    int n = (int)test_scale(2000);
    for (int i = 0; i < n; i++) {
        crew_event *e = malloc(sizeof *e);
        CHECK(e != NULL);
        CHECK_OK(crew_event_init(e));
        crew_thread *t;
        CHECK_OK(crew_thread_start(&t, set_and_leave, e, NULL));
        CHECK_OK(crew_thread_detach(t));
        CHECK_OK(crew_event_wait(e, 10));
        free(e);
        CHECK_OK(crew_thread_destroy(t));
    }
}

static const test_case cases[] = {
    TEST_CASE(test_free_after_wait),
    TEST_CASE(test_basic),
    TEST_CASE(test_wakes_all),
    TEST_CASE(test_relay_stress),
    TEST_CASE(test_cross_process),
};
TEST_MAIN_NOHELPERS(cases)
