/* crew_rlock: reentrancy, owner-checked release, timeouts, contention, and
 * a process killed holding it several levels deep. */
#include "crew_test.h"

#include <stdatomic.h>
#include <sys/mman.h>


static void test_reentrant(void)
{
    crew_rlock r;
    CHECK_OK(crew_rlock_init(&r));
    CHECK_ERR(crew_rlock_release(&r), CREW_EPERM); /* not held */
    for (int i = 0; i < 5; i++)
        CHECK_OK(crew_rlock_acquire(&r, i % 2 ? 0 : CREW_FOREVER));
    CHECK_OK(crew_rlock_try(&r)); /* the owner always gets it */
    CHECK_ERR(crew_rlock_destroy(&r), CREW_EBUSY);
    for (int i = 0; i < 6; i++)
        CHECK_OK(crew_rlock_release(&r));
    CHECK_ERR(crew_rlock_release(&r), CREW_EPERM); /* one too many */
    CHECK_OK(crew_rlock_destroy(&r));
    CHECK_ERR(crew_rlock_acquire(&r, 0), CREW_EINVAL);
    CHECK_ERR(crew_rlock_release(&r), CREW_EINVAL);
    CHECK_ERR(crew_rlock_init(NULL), CREW_EINVAL);
    CHECK_ERR(crew_rlock_acquire(NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_rlock_try(NULL), CREW_EINVAL);
    CHECK_ERR(crew_rlock_release(NULL), CREW_EINVAL);
    CHECK_ERR(crew_rlock_consistent(NULL), CREW_EINVAL);
    CHECK_ERR(crew_rlock_destroy(NULL), CREW_EINVAL);
}

typedef struct holder {
    crew_rlock *r;
    crew_event held, go;
    int release_rc;
} holder;

static void *hold_twice(void *arg)
{
    holder *h = arg;
    CHECK_OK(crew_rlock_acquire(h->r, CREW_FOREVER));
    CHECK_OK(crew_rlock_acquire(h->r, CREW_FOREVER));
    CHECK_OK(crew_event_set(&h->held));
    CHECK_OK(crew_event_wait(&h->go, CREW_FOREVER));
    CHECK_OK(crew_rlock_release(h->r));
    h->release_rc = crew_rlock_release(h->r);
    return NULL;
}

static void test_other_thread(void)
{
    crew_rlock r;
    CHECK_OK(crew_rlock_init(&r));
    holder h = {.r = &r};
    CHECK_OK(crew_event_init(&h.held));
    CHECK_OK(crew_event_init(&h.go));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, hold_twice, &h, NULL));
    CHECK_OK(crew_event_wait(&h.held, 10));
    CHECK_ERR(crew_rlock_try(&r), CREW_EBUSY);
    CHECK_ERR(crew_rlock_acquire(&r, 0), CREW_ETIMEDOUT);
    double t0 = crew_now();
    CHECK_ERR(crew_rlock_acquire(&r, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_ERR(crew_rlock_release(&r), CREW_EPERM); /* Python: RuntimeError */
    CHECK_ERR(crew_rlock_consistent(&r), CREW_EPERM);
    CHECK_OK(crew_event_set(&h.go));
    CHECK_OK(crew_rlock_acquire(&r, CREW_FOREVER));
    CHECK_OK(crew_thread_destroy(t));
    CHECK_OK(h.release_rc);
    CHECK_OK(crew_rlock_release(&r));
}

typedef struct stress {
    crew_rlock r;
    long counter, iters;
} stress;

static void *stress_worker(void *arg)
{
    stress *s = arg;
    for (long i = 0; i < s->iters; i++) {
        int depth = 1 + (int)(i % 3);
        for (int d = 0; d < depth; d++) {
            int rc = crew_rlock_acquire(&s->r, d == 0 && i % 2 ? 0.01 : CREW_FOREVER);
            if (rc == CREW_ETIMEDOUT)
                rc = crew_rlock_acquire(&s->r, CREW_FOREVER);
            CHECK_OK(rc);
        }
        s->counter++;
        for (int d = 0; d < depth; d++)
            CHECK_OK(crew_rlock_release(&s->r));
    }
    return NULL;
}

static void test_contention_stress(void)
{
    test_watchdog(40);
    stress s = {.iters = TEST_SANITIZED ? 10000 : 100000};
    CHECK_OK(crew_rlock_init(&s.r));
    crew_thread *t[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_thread_start(&t[i], stress_worker, &s, NULL));
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    CHECK_EQ(s.counter, 3 * s.iters);
    test_watchdog(50);
}

typedef struct shared_state {
    crew_rlock r;
    long a, b;
} shared_state;

static void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static pid_t fork_holder(shared_state *s)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        for (int i = 0; i < 3; i++) /* three levels deep */
            if (crew_rlock_acquire(&s->r, CREW_FOREVER) != 0)
                _exit(1);
        s->a++;
        char c = 1;
        if (write(p[1], &c, 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    close(p[1]);
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]);
    return pid;
}

static void test_killed_owner(void)
{
    shared_state *s = shared_map(sizeof *s);
    CHECK_OK(crew_rlock_init(&s->r));
    pid_t pid = fork_holder(s);
    CHECK_ERR(crew_rlock_try(&s->r), CREW_EBUSY);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK_ERR(crew_rlock_acquire(&s->r, 10.0), CREW_EOWNERDEAD);
    CHECK_OK(crew_rlock_acquire(&s->r, 0)); /* reentrant for the new owner */
    s->b = s->a;
    CHECK_OK(crew_rlock_consistent(&s->r));
    CHECK_OK(crew_rlock_release(&s->r));
    CHECK_OK(crew_rlock_release(&s->r)); /* count was 1 after the takeover */
    CHECK_ERR(crew_rlock_release(&s->r), CREW_EPERM);
    test_wait(pid);
    CHECK_OK(crew_rlock_acquire(&s->r, 0));
    CHECK_OK(crew_rlock_release(&s->r));

    /* Released without consistent: not recoverable, until re-init. */
    pid = fork_holder(s);
    CHECK(kill(pid, SIGKILL) == 0);
    test_wait(pid);
    CHECK_ERR(crew_rlock_acquire(&s->r, CREW_FOREVER), CREW_EOWNERDEAD);
    CHECK_OK(crew_rlock_acquire(&s->r, 0));
    CHECK_OK(crew_rlock_release(&s->r)); /* one level: still held */
    CHECK_OK(crew_rlock_release(&s->r)); /* last level, inconsistent */
    CHECK_ERR(crew_rlock_acquire(&s->r, 0), CREW_ENOTRECOVERABLE);
    CHECK_ERR(crew_rlock_try(&s->r), CREW_ENOTRECOVERABLE);
    CHECK_OK(crew_rlock_init(&s->r));
    CHECK_OK(crew_rlock_try(&s->r));
    CHECK_OK(crew_rlock_release(&s->r));
    munmap(s, sizeof *s);
}

static void *take_and_exit(void *arg)
{
    CHECK_OK(crew_rlock_acquire(arg, CREW_FOREVER));
    CHECK_OK(crew_rlock_acquire(arg, CREW_FOREVER));
    return NULL;
}

static void test_thread_exits_holding(void)
{
    crew_rlock r;
    CHECK_OK(crew_rlock_init(&r));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, take_and_exit, &r, NULL));
    CHECK_OK(crew_thread_destroy(t));
    CHECK_ERR(crew_rlock_acquire(&r, CREW_FOREVER), CREW_EOWNERDEAD);
    CHECK_OK(crew_rlock_consistent(&r));
    CHECK_OK(crew_rlock_release(&r));
    CHECK_OK(crew_rlock_destroy(&r));
}

static const test_case cases[] = {
    TEST_CASE(test_reentrant),
    TEST_CASE(test_other_thread),
    TEST_CASE(test_contention_stress),
    TEST_CASE(test_killed_owner),
    TEST_CASE(test_thread_exits_holding),
};
TEST_MAIN_NOHELPERS(cases)
