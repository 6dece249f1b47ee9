/* crew_cond: wait/notify semantics, timeouts, the predicate helper, misuse,
 * producer/consumer stress, use across processes, a waiter killed mid-wait
 * and a lock owner killed while a waiter re-acquires. */
#include "crew_test.h"

#include <stdatomic.h>
#include <sys/mman.h>


static void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static int always(void *arg) { return *(int *)arg; }

static void test_misuse(void)
{
    crew_cond c, z;
    crew_lock l;
    memset(&z, 0, sizeof z);
    CHECK_OK(crew_cond_init(&c));
    CHECK_OK(crew_lock_init(&l));
    CHECK_ERR(crew_cond_wait(&c, &l, 0), CREW_EPERM); /* lock not held */
    int yes = 1;
    CHECK_ERR(crew_cond_wait_for(&c, &l, always, &yes, 0), CREW_EPERM);
    CHECK_ERR(crew_cond_wait(&z, &l, 0), CREW_EINVAL); /* never initialised */
    CHECK_ERR(crew_cond_notify(&z), CREW_EINVAL);
    CHECK_ERR(crew_cond_init(NULL), CREW_EINVAL);
    CHECK_ERR(crew_cond_wait(NULL, &l, 0), CREW_EINVAL);
    CHECK_ERR(crew_cond_wait(&c, NULL, 0), CREW_EINVAL);
    CHECK_OK(crew_lock_acquire(&l, 0));
    CHECK_ERR(crew_cond_wait_for(&c, &l, NULL, NULL, 0), CREW_EINVAL);
    CHECK_OK(crew_lock_release(&l));
    CHECK_OK(crew_cond_notify(&c)); /* no waiter: nothing happens */
    CHECK_OK(crew_cond_notify_all(&c));
    CHECK_OK(crew_cond_destroy(&c));
    CHECK_ERR(crew_cond_notify(&c), CREW_EINVAL);
    CHECK_ERR(crew_cond_destroy(&c), CREW_EINVAL);
}

static void test_timeouts(void)
{
    crew_cond c;
    crew_lock l;
    CHECK_OK(crew_cond_init(&c));
    CHECK_OK(crew_lock_init(&l));
    CHECK_OK(crew_lock_acquire(&l, 0));
    CHECK_ERR(crew_cond_wait(&c, &l, 0), CREW_ETIMEDOUT);
    CHECK_ERR(crew_lock_try(&l), CREW_EBUSY); /* held again after the wait */
    double t0 = crew_now();
    CHECK_ERR(crew_cond_wait(&c, &l, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    int no = 0, yes = 1;
    CHECK_OK(crew_cond_wait_for(&c, &l, always, &yes, 0)); /* true at once */
    CHECK_ERR(crew_cond_wait_for(&c, &l, always, &no, 0), CREW_ETIMEDOUT);
    t0 = crew_now();
    CHECK_ERR(crew_cond_wait_for(&c, &l, always, &no, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_OK(crew_lock_release(&l));
}

/* ---------------------------------------------------------------- wake-ups */
typedef struct gate {
    crew_lock l;
    crew_cond c;
    int open;
    int arrived, left;
    int tokens;
} gate;

static int gate_open(void *arg) { return ((gate *)arg)->open; }
static int have_token(void *arg) { return ((gate *)arg)->tokens > 0; }

static void *wait_gate(void *arg)
{
    gate *g = arg;
    CHECK_OK(crew_lock_acquire(&g->l, CREW_FOREVER));
    g->arrived++;
    CHECK_OK(crew_cond_notify_all(&g->c)); /* tell main we are here */
    CHECK_OK(crew_cond_wait_for(&g->c, &g->l, gate_open, g, CREW_FOREVER));
    g->left++;
    CHECK_OK(crew_lock_release(&g->l));
    return NULL;
}

static int all_arrived(void *arg) { return ((gate *)arg)->arrived == 4; }

static void test_notify_all(void)
{
    gate g = {0};
    CHECK_OK(crew_lock_init(&g.l));
    CHECK_OK(crew_cond_init(&g.c));
    crew_thread *t[4];
    for (int i = 0; i < 4; i++)
        CHECK_OK(crew_thread_start(&t[i], wait_gate, &g, NULL));
    CHECK_OK(crew_lock_acquire(&g.l, CREW_FOREVER));
    CHECK_OK(crew_cond_wait_for(&g.c, &g.l, all_arrived, &g, 10));
    g.open = 1;
    CHECK_OK(crew_cond_notify_all(&g.c));
    CHECK_OK(crew_lock_release(&g.l));
    for (int i = 0; i < 4; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    CHECK_EQ(g.left, 4);
}

static void *take_token(void *arg)
{
    gate *g = arg;
    CHECK_OK(crew_lock_acquire(&g->l, CREW_FOREVER));
    CHECK_OK(crew_cond_wait_for(&g->c, &g->l, have_token, g, CREW_FOREVER));
    g->tokens--;
    g->left++;
    CHECK_OK(crew_lock_release(&g->l));
    return NULL;
}

static void test_notify_one_each(void)
{
    /* Three waiters, three single notifies, each with one token: every
     * waiter must get through (a notify wakes at least one sleeper). */
    gate g = {0};
    CHECK_OK(crew_lock_init(&g.l));
    CHECK_OK(crew_cond_init(&g.c));
    crew_thread *t[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_thread_start(&t[i], take_token, &g, NULL));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(crew_lock_acquire(&g.l, CREW_FOREVER));
        g.tokens++;
        CHECK_OK(crew_cond_notify(&g.c));
        CHECK_OK(crew_lock_release(&g.l));
    }
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    CHECK_EQ(g.left, 3);
    CHECK_EQ(g.tokens, 0);
}

/* ---------------------------------------------------------------- stress */
#define QCAP 8
typedef struct queue {
    crew_lock l;
    crew_cond not_empty, not_full;
    int buf[QCAP];
    int head, len;
    long items;    /* per producer */
    long sum_in;   /* under l */
    long sum_out;  /* under l */
    int producers_left;
} queue;

static int q_not_empty(void *a) { return ((queue *)a)->len > 0 || ((queue *)a)->producers_left == 0; }
static int q_not_full(void *a) { return ((queue *)a)->len < QCAP; }

static void *producer(void *arg)
{
    queue *q = arg;
    for (long i = 1; i <= q->items; i++) {
        CHECK_OK(crew_lock_acquire(&q->l, CREW_FOREVER));
        CHECK_OK(crew_cond_wait_for(&q->not_full, &q->l, q_not_full, q, CREW_FOREVER));
        q->buf[(q->head + q->len++) % QCAP] = (int)(i % 1000);
        q->sum_in += i % 1000;
        CHECK_OK(crew_cond_notify(&q->not_empty));
        CHECK_OK(crew_lock_release(&q->l));
    }
    CHECK_OK(crew_lock_acquire(&q->l, CREW_FOREVER));
    q->producers_left--;
    CHECK_OK(crew_cond_notify_all(&q->not_empty));
    CHECK_OK(crew_lock_release(&q->l));
    return NULL;
}

static void *consumer(void *arg)
{
    queue *q = arg;
    for (;;) {
        CHECK_OK(crew_lock_acquire(&q->l, CREW_FOREVER));
        /* A timed wait in the loop exercises timeouts under load too. */
        int rc;
        while ((rc = crew_cond_wait_for(&q->not_empty, &q->l, q_not_empty, q, 0.002)) ==
               CREW_ETIMEDOUT)
            ;
        CHECK_OK(rc);
        if (q->len == 0) {
            CHECK_OK(crew_lock_release(&q->l));
            return NULL;
        }
        q->sum_out += q->buf[q->head];
        q->head = (q->head + 1) % QCAP;
        q->len--;
        CHECK_OK(crew_cond_notify(&q->not_full));
        CHECK_OK(crew_lock_release(&q->l));
    }
}

static void test_producer_consumer_stress(void)
{
    test_watchdog(40);
    queue q = {.items = TEST_SANITIZED ? 5000 : 50000, .producers_left = 2};
    CHECK_OK(crew_lock_init(&q.l));
    CHECK_OK(crew_cond_init(&q.not_empty));
    CHECK_OK(crew_cond_init(&q.not_full));
    crew_thread *t[4];
    CHECK_OK(crew_thread_start(&t[0], producer, &q, NULL));
    CHECK_OK(crew_thread_start(&t[1], producer, &q, NULL));
    CHECK_OK(crew_thread_start(&t[2], consumer, &q, NULL));
    CHECK_OK(crew_thread_start(&t[3], consumer, &q, NULL));
    for (int i = 0; i < 4; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    CHECK_EQ(q.sum_in, q.sum_out);
    CHECK_EQ(q.len, 0);
    test_watchdog(50);
}

/* ---------------------------------------------------------------- processes */
typedef struct pingpong {
    crew_lock l;
    crew_cond c;
    long turn; /* even: parent's move, odd: child's */
    int waiting;
} pingpong;

static int pp_child_turn(void *a) { return ((pingpong *)a)->turn % 2 == 1; }
static int pp_parent_turn(void *a) { return ((pingpong *)a)->turn % 2 == 0; }

static void test_cross_process_pingpong(void)
{
    pingpong *p = shared_map(sizeof *p);
    CHECK_OK(crew_lock_init(&p->l));
    CHECK_OK(crew_cond_init(&p->c));
    long rounds = TEST_SANITIZED ? 200 : 2000;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (long i = 0; i < rounds; i++) {
            if (crew_lock_acquire(&p->l, CREW_FOREVER) ||
                crew_cond_wait_for(&p->c, &p->l, pp_child_turn, p, 10))
                _exit(1);
            p->turn++;
            crew_cond_notify(&p->c);
            crew_lock_release(&p->l);
        }
        _exit(0);
    }
    for (long i = 0; i < rounds; i++) {
        CHECK_OK(crew_lock_acquire(&p->l, CREW_FOREVER));
        CHECK_OK(crew_cond_wait_for(&p->c, &p->l, pp_parent_turn, p, 10));
        p->turn++;
        CHECK_OK(crew_cond_notify(&p->c));
        CHECK_OK(crew_lock_release(&p->l));
    }
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ(p->turn, 2 * rounds);
    munmap(p, sizeof *p);
}

static int pp_someone_waits(void *a) { return ((pingpong *)a)->waiting > 0; }

static void *wait_turn_odd(void *arg)
{
    pingpong *p = arg;
    CHECK_OK(crew_lock_acquire(&p->l, CREW_FOREVER));
    p->waiting++;
    CHECK_OK(crew_cond_notify_all(&p->c));
    CHECK_OK(crew_cond_wait_for(&p->c, &p->l, pp_child_turn, p, CREW_FOREVER));
    CHECK_OK(crew_lock_release(&p->l));
    return NULL;
}

static void test_waiter_killed_mid_wait(void)
{
    pingpong *p = shared_map(sizeof *p);
    CHECK_OK(crew_lock_init(&p->l));
    CHECK_OK(crew_cond_init(&p->c));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        crew_lock_acquire(&p->l, CREW_FOREVER);
        p->waiting++;
        crew_cond_notify_all(&p->c);
        crew_cond_wait(&p->c, &p->l, CREW_FOREVER); /* killed in here */
        _exit(3);
    }
    /* When this returns, the child has released the lock inside its wait. */
    CHECK_OK(crew_lock_acquire(&p->l, CREW_FOREVER));
    CHECK_OK(crew_cond_wait_for(&p->c, &p->l, pp_someone_waits, p, 10));
    p->waiting = 0;
    CHECK_OK(crew_lock_release(&p->l));
    CHECK(kill(pid, SIGKILL) == 0);
    int st = test_wait(pid);
    CHECK(WIFSIGNALED(st));
    /* The lock was not held by the dead waiter ... */
    CHECK_OK(crew_lock_acquire(&p->l, 0));
    CHECK_OK(crew_lock_release(&p->l));
    /* ... and the condition still wakes the living. */
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_turn_odd, p, NULL));
    CHECK_OK(crew_lock_acquire(&p->l, CREW_FOREVER));
    CHECK_OK(crew_cond_wait_for(&p->c, &p->l, pp_someone_waits, p, 10));
    p->turn = 1;
    CHECK_OK(crew_cond_notify(&p->c));
    CHECK_OK(crew_lock_release(&p->l));
    CHECK_OK(crew_thread_join(t, 10, NULL));
    CHECK_OK(crew_thread_destroy(t));
    munmap(p, sizeof *p);
}

typedef struct kill_ctx {
    int fd;
    pid_t pid;
} kill_ctx;

static void *kill_when_told(void *arg)
{
    kill_ctx *k = arg;
    char c;
    CHECK(read(k->fd, &c, 1) == 1);
    CHECK(kill(k->pid, SIGKILL) == 0);
    return NULL;
}

static void test_owner_killed_during_reacquire(void)
{
    /* We wait; the child takes the lock, notifies us and dies holding it:
     * our wait must come back with the lock and CREW_EOWNERDEAD. */
    pingpong *p = shared_map(sizeof *p);
    CHECK_OK(crew_lock_init(&p->l));
    CHECK_OK(crew_cond_init(&p->c));
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK_OK(crew_lock_acquire(&p->l, CREW_FOREVER));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        crew_lock_acquire(&p->l, CREW_FOREVER); /* after the parent waits */
        p->turn = 1;
        crew_cond_notify(&p->c);
        char c = 1;
        if (write(fds[1], &c, 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    kill_ctx k = {fds[0], pid};
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, kill_when_told, &k, NULL));
    int rc;
    while ((rc = crew_cond_wait(&p->c, &p->l, 10)) == 0 && p->turn == 0)
        ; /* spurious */
    CHECK_ERR(rc, CREW_EOWNERDEAD);
    CHECK_EQ(p->turn, 1);
    CHECK_OK(crew_lock_consistent(&p->l));
    CHECK_OK(crew_lock_release(&p->l));
    CHECK_OK(crew_thread_destroy(t));
    test_wait(pid);
    close(fds[0]);
    close(fds[1]);
    munmap(p, sizeof *p);
}

static const test_case cases[] = {
    TEST_CASE(test_misuse),
    TEST_CASE(test_timeouts),
    TEST_CASE(test_notify_all),
    TEST_CASE(test_notify_one_each),
    TEST_CASE(test_producer_consumer_stress),
    TEST_CASE(test_cross_process_pingpong),
    TEST_CASE(test_waiter_killed_mid_wait),
    TEST_CASE(test_owner_killed_during_reacquire),
};
TEST_MAIN_NOHELPERS(cases)
