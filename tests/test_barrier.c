/* crew_barrier: rounds and indices, timeouts that break it, abort, reset,
 * attach/detach, misuse, and participants that die (a thread that ends, a
 * process that is SIGKILLed): the others get CREW_EBROKEN, never a hang. */
#include "crew_test.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>


static void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static void test_init_and_misuse(void)
{
    crew_barrier b, z;
    memset(&z, 0, sizeof z);
    CHECK_ERR(crew_barrier_init(NULL, 2), CREW_EINVAL);
    CHECK_ERR(crew_barrier_init(&b, 0), CREW_EINVAL);
    CHECK_ERR(crew_barrier_init(&b, CREW_BARRIER_MAX_PARTIES + 1), CREW_EINVAL);
    CHECK_ERR(crew_barrier_wait(&z, 0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_barrier_abort(&z), CREW_EINVAL);
    CHECK_ERR(crew_barrier_reset(NULL), CREW_EINVAL);
    CHECK_ERR(crew_barrier_status_get(NULL, NULL, NULL, NULL), CREW_EINVAL);
    CHECK_OK(crew_barrier_init(&b, 1));
    unsigned idx = 99;
    CHECK_OK(crew_barrier_wait(&b, 0, &idx)); /* one party: through at once */
    CHECK_EQ(idx, 0);
    CHECK_OK(crew_barrier_wait(&b, CREW_FOREVER, NULL));
    unsigned parties, waiting;
    int broken;
    CHECK_OK(crew_barrier_status_get(&b, &parties, &waiting, &broken));
    CHECK_EQ(parties, 1);
    CHECK_EQ(waiting, 0);
    CHECK_EQ(broken, 0);
    CHECK_OK(crew_barrier_destroy(&b));
    CHECK_ERR(crew_barrier_wait(&b, 0, NULL), CREW_EINVAL);
}

/* ---------------------------------------------------------------- rounds */
#define NT 4
typedef struct rounds {
    crew_barrier b;
    int rounds;
    _Atomic unsigned seen[2]; /* per round parity: bitmask of indices */
    int fail;
} rounds;

static void *round_worker(void *arg)
{
    rounds *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        unsigned idx;
        CHECK_OK(crew_barrier_wait(&r->b, 10, &idx));
        CHECK(idx < NT);
        unsigned before = atomic_fetch_or(&r->seen[i % 2], 1u << idx);
        CHECK((before & (1u << idx)) == 0); /* distinct indices in a round */
        /* Second barrier: nobody starts round i+2 (same parity slot) before
         * everyone has recorded round i; the index-0 thread then clears it. */
        CHECK_OK(crew_barrier_wait(&r->b, 10, &idx));
        if (idx == 0) {
            CHECK_EQ(atomic_load(&r->seen[i % 2]), (1u << NT) - 1);
            atomic_store(&r->seen[i % 2], 0);
        }
    }
    return NULL;
}

static void test_rounds_stress(void)
{
    test_watchdog(40);
    rounds r = {.rounds = TEST_SANITIZED ? 300 : 3000};
    CHECK_OK(crew_barrier_init(&r.b, NT));
    crew_thread *t[NT];
    for (int i = 0; i < NT; i++)
        CHECK_OK(crew_thread_start(&t[i], round_worker, &r, NULL));
    for (int i = 0; i < NT; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    int broken;
    CHECK_OK(crew_barrier_status_get(&r.b, NULL, NULL, &broken));
    CHECK_EQ(broken, 0);
    test_watchdog(50);
}

/* ---------------------------------------------------------------- breaking */
static void *wait_rc(void *arg)
{
    return (void *)(intptr_t)crew_barrier_wait(arg, CREW_FOREVER, NULL);
}

static int join_rc(crew_thread *t)
{
    void *r;
    CHECK_OK(crew_thread_join(t, 20, &r));
    CHECK_OK(crew_thread_destroy(t));
    return (int)(intptr_t)r;
}

/* Waits (without sleeping) until `n` threads wait at b. */
static void until_waiting(crew_barrier *b, unsigned n)
{
    for (;;) {
        unsigned w = 0;
        CHECK_OK(crew_barrier_status_get(b, NULL, &w, NULL));
        if (w >= n)
            return;
        sched_yield();
    }
}

static void test_timeout_breaks(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 3));
    CHECK_ERR(crew_barrier_wait(&b, 0, NULL), CREW_ETIMEDOUT); /* poll breaks it */
    CHECK_ERR(crew_barrier_wait(&b, CREW_FOREVER, NULL), CREW_EBROKEN);
    int broken;
    CHECK_OK(crew_barrier_status_get(&b, NULL, NULL, &broken));
    CHECK_EQ(broken, 1);
    CHECK_OK(crew_barrier_reset(&b));
    CHECK_OK(crew_barrier_status_get(&b, NULL, NULL, &broken));
    CHECK_EQ(broken, 0);

    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_rc, &b, NULL));
    until_waiting(&b, 1);
    double t0 = crew_now();
    CHECK_ERR(crew_barrier_wait(&b, 0.05, NULL), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_ERR(join_rc(t), CREW_EBROKEN); /* the other waiter is released */
}

static void test_abort(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 2));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_rc, &b, NULL));
    until_waiting(&b, 1);
    CHECK_ERR(crew_barrier_destroy(&b), CREW_EBUSY);
    CHECK_OK(crew_barrier_abort(&b));
    CHECK_ERR(join_rc(t), CREW_EBROKEN);
    CHECK_ERR(crew_barrier_wait(&b, 1, NULL), CREW_EBROKEN);
    CHECK_OK(crew_barrier_reset(&b));
    CHECK_OK(crew_thread_start(&t, wait_rc, &b, NULL));
    CHECK_OK(crew_barrier_wait(&b, 10, NULL));
    CHECK_OK(join_rc(t));
}

static void test_reset_while_waiting(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 3));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_rc, &b, NULL));
    until_waiting(&b, 1);
    CHECK_OK(crew_barrier_reset(&b));
    CHECK_ERR(join_rc(t), CREW_EBROKEN); /* Python: BrokenBarrierError */
    /* ... and the barrier works again, unbroken. */
    crew_thread *u[2];
    for (int i = 0; i < 2; i++)
        CHECK_OK(crew_thread_start(&u[i], wait_rc, &b, NULL));
    CHECK_OK(crew_barrier_wait(&b, 10, NULL));
    for (int i = 0; i < 2; i++)
        CHECK_OK(join_rc(u[i]));
}

static void *attach_rc(void *arg) { return (void *)(intptr_t)crew_barrier_attach(arg); }

static void test_attach_detach(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 1));
    CHECK_ERR(crew_barrier_detach(&b), CREW_ENOENT);
    CHECK_OK(crew_barrier_attach(&b));
    CHECK_OK(crew_barrier_attach(&b)); /* again: same slot */
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, attach_rc, &b, NULL));
    CHECK_ERR(join_rc(t), CREW_EBUSY); /* the one slot is ours */
    CHECK_OK(crew_barrier_detach(&b));
    CHECK_ERR(crew_barrier_detach(&b), CREW_ENOENT);
}

/* ---------------------------------------------------------------- death */
static void *attach_and_leave(void *arg)
{
    CHECK_OK(crew_barrier_attach(arg));
    return NULL; /* never arrives */
}

static void test_thread_participant_exits(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 2));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, attach_and_leave, &b, NULL));
    CHECK_OK(crew_thread_destroy(t));
    double t0 = crew_now();
    CHECK_ERR(crew_barrier_wait(&b, CREW_FOREVER, NULL), CREW_EBROKEN);
    CHECK(crew_now() - t0 < 5.0); /* ~50 ms slices; slack for loaded CI */
}

static void *detach_and_leave(void *arg)
{
    CHECK_OK(crew_barrier_attach(arg));
    CHECK_OK(crew_barrier_detach(arg));
    return NULL;
}

static void test_detached_participant_may_leave(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 2));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, detach_and_leave, &b, NULL));
    CHECK_OK(crew_thread_destroy(t));
    /* Nobody tracked is missing: a plain timeout, not a broken barrier
     * because of the thread that left. */
    CHECK_ERR(crew_barrier_wait(&b, 0.2, NULL), CREW_ETIMEDOUT);
}

static void test_killed_process_participant(void)
{
    int kids = test_count_children();
    crew_barrier *b = shared_map(sizeof *b);
    CHECK_OK(crew_barrier_init(b, 3));
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (crew_barrier_attach(b))
            _exit(1);
        char c = 1;
        if (write(p[1], &c, 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]);
    close(p[1]);
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_rc, b, NULL));
    until_waiting(b, 1);
    CHECK(kill(pid, SIGKILL) == 0); /* not reaped while we wait: a zombie */
    double t0 = crew_now();
    CHECK_ERR(crew_barrier_wait(b, CREW_FOREVER, NULL), CREW_EBROKEN);
    CHECK(crew_now() - t0 < 5.0); /* ~50 ms slices; slack for loaded CI */
    CHECK_ERR(join_rc(t), CREW_EBROKEN);
    int st = test_wait(pid);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(test_count_children(), kids);
    /* Reset forgets the dead; the barrier serves two new parties. */
    CHECK_OK(crew_barrier_reset(b));
    CHECK_OK(crew_barrier_init(b, 2));
    CHECK_OK(crew_thread_start(&t, wait_rc, b, NULL));
    CHECK_OK(crew_barrier_wait(b, 10, NULL));
    CHECK_OK(join_rc(t));
    munmap(b, sizeof *b);
}

static void test_cross_process_rounds(void)
{
    crew_barrier *b = shared_map(sizeof *b);
    CHECK_OK(crew_barrier_init(b, 2));
    int nrounds = TEST_SANITIZED ? 200 : 2000;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < nrounds; i++)
            if (crew_barrier_wait(b, 10, NULL))
                _exit(1);
        _exit(0);
    }
    unsigned sum = 0;
    for (int i = 0; i < nrounds; i++) {
        unsigned idx;
        CHECK_OK(crew_barrier_wait(b, 10, &idx));
        sum += idx;
    }
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(sum <= (unsigned)nrounds);
    munmap(b, sizeof *b);
}

static const test_case cases[] = {
    TEST_CASE(test_init_and_misuse),
    TEST_CASE(test_rounds_stress),
    TEST_CASE(test_timeout_breaks),
    TEST_CASE(test_abort),
    TEST_CASE(test_reset_while_waiting),
    TEST_CASE(test_attach_detach),
    TEST_CASE(test_thread_participant_exits),
    TEST_CASE(test_detached_participant_may_leave),
    TEST_CASE(test_killed_process_participant),
    TEST_CASE(test_cross_process_rounds),
};
TEST_MAIN_NOHELPERS(cases)
