/* The sync calls of issue 14 (item 9): locked / owner / recursion count,
 * a condition over an rlock, notify(n), and the barrier's action and default
 * timeout. Each case names the CPython Lib/test/lock_tests.py behaviour it
 * mirrors; process-shared where the object is. */
#include "crew_test.h"

#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 0, n);
    return p;
}

static pid_t my_tid(void) { return (pid_t)syscall(SYS_gettid); }

static int join_rc(crew_thread *t)
{
    void *r;
    CHECK_OK(crew_thread_join(t, 20, &r));
    CHECK_OK(crew_thread_destroy(t));
    return (int)(intptr_t)r;
}

/* ------------------------------------------------------------ locked, owner */
typedef struct peek {
    crew_lock *l;
    crew_rlock *r;
    int locked, count;
    pid_t pid, tid;
} peek;

static void *peek_from_other_thread(void *arg)
{
    peek *k = arg;
    if (k->l) {
        k->locked = crew_lock_locked(k->l);
        CHECK_OK(crew_lock_owner_get(k->l, &k->pid, &k->tid));
    } else {
        k->locked = crew_rlock_locked(k->r);
        k->count = crew_rlock_count(k->r); /* not the owner: 0 */
        CHECK_OK(crew_rlock_owner_get(k->r, &k->pid, &k->tid));
    }
    return NULL;
}

static void *take_lock_and_exit(void *arg)
{
    CHECK_OK(crew_lock_acquire(arg, CREW_FOREVER));
    return NULL;
}

/* BaseLockTests.test_locked (Lock.locked()), seen from another thread too;
 * and the owner's ids, which Python does not expose. */
static void test_lock_locked(void)
{
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    CHECK_EQ(crew_lock_locked(&l), 0);
    pid_t pid = -1, tid = -1;
    CHECK_OK(crew_lock_owner_get(&l, &pid, &tid));
    CHECK_EQ(pid, 0);
    CHECK_EQ(tid, 0);
    CHECK_OK(crew_lock_acquire(&l, CREW_FOREVER));
    CHECK_EQ(crew_lock_locked(&l), 1);
    CHECK_OK(crew_lock_owner_get(&l, &pid, NULL));
    CHECK_OK(crew_lock_owner_get(&l, NULL, &tid));
    CHECK_EQ(pid, getpid());
    CHECK_EQ(tid, my_tid());
    peek k = {.l = &l};
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, peek_from_other_thread, &k, NULL));
    CHECK_OK(join_rc(t));
    CHECK_EQ(k.locked, 1);
    CHECK_EQ(k.pid, getpid());
    CHECK_EQ(k.tid, my_tid());
    CHECK_OK(crew_lock_release(&l));
    CHECK_EQ(crew_lock_locked(&l), 0);

    /* Not recoverable: a dead owner, released without repair. */
    CHECK_OK(crew_thread_start(&t, take_lock_and_exit, &l, NULL));
    CHECK_OK(join_rc(t));
    CHECK_ERR(crew_lock_acquire(&l, 5), CREW_EOWNERDEAD);
    CHECK_EQ(crew_lock_locked(&l), 1);
    CHECK_OK(crew_lock_release(&l));
    CHECK_ERR(crew_lock_locked(&l), CREW_ENOTRECOVERABLE);
    CHECK_ERR(crew_lock_owner_get(&l, &pid, &tid), CREW_ENOTRECOVERABLE);
    CHECK_OK(crew_lock_init(&l));

    CHECK_OK(crew_lock_destroy(&l));
    CHECK_ERR(crew_lock_locked(&l), CREW_EINVAL);
    CHECK_ERR(crew_lock_owner_get(&l, &pid, &tid), CREW_EINVAL);
    CHECK_ERR(crew_lock_locked(NULL), CREW_EINVAL);
    CHECK_ERR(crew_lock_owner_get(NULL, &pid, &tid), CREW_EINVAL);
}

/* RLockTests.test_locked and RLockTests.test_recursion_count
 * (_recursion_count(): the caller's depth, 0 in a thread that does not own
 * it). */
static void test_rlock_locked_count(void)
{
    crew_rlock r;
    CHECK_OK(crew_rlock_init(&r));
    CHECK_EQ(crew_rlock_locked(&r), 0);
    CHECK_EQ(crew_rlock_count(&r), 0);
    CHECK_OK(crew_rlock_acquire(&r, CREW_FOREVER));
    CHECK_EQ(crew_rlock_count(&r), 1);
    CHECK_OK(crew_rlock_acquire(&r, CREW_FOREVER));
    CHECK_OK(crew_rlock_try(&r));
    CHECK_EQ(crew_rlock_count(&r), 3);
    CHECK_EQ(crew_rlock_locked(&r), 1);
    peek k = {.r = &r, .count = -1};
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, peek_from_other_thread, &k, NULL));
    CHECK_OK(join_rc(t));
    CHECK_EQ(k.locked, 1);
    CHECK_EQ(k.count, 0);
    CHECK_EQ(k.pid, getpid());
    CHECK_EQ(k.tid, my_tid());
    CHECK_OK(crew_rlock_release(&r));
    CHECK_EQ(crew_rlock_count(&r), 2);
    CHECK_OK(crew_rlock_release(&r));
    CHECK_OK(crew_rlock_release(&r));
    CHECK_EQ(crew_rlock_count(&r), 0);
    CHECK_EQ(crew_rlock_locked(&r), 0);
    pid_t pid = -1, tid = -1;
    CHECK_OK(crew_rlock_owner_get(&r, &pid, &tid));
    CHECK_EQ(pid, 0);
    CHECK_EQ(tid, 0);
    CHECK_OK(crew_rlock_destroy(&r));
    CHECK_ERR(crew_rlock_locked(&r), CREW_EINVAL);
    CHECK_ERR(crew_rlock_count(&r), CREW_EINVAL);
    CHECK_ERR(crew_rlock_owner_get(&r, &pid, &tid), CREW_EINVAL);
    CHECK_ERR(crew_rlock_locked(NULL), CREW_EINVAL);
    CHECK_ERR(crew_rlock_count(NULL), CREW_EINVAL);
    CHECK_ERR(crew_rlock_owner_get(NULL, NULL, NULL), CREW_EINVAL);
}

/* ------------------------------------------------------------ cond over rlock */
typedef struct cr {
    crew_rlock r;
    crew_cond c;
    int state;
    int other_count; /* the other thread's depth while it held r */
} cr;

static int state_is_2(void *arg) { return ((cr *)arg)->state == 2; }

static void *take_while_waited(void *arg)
{
    cr *x = arg;
    /* Waits until the main thread waits (state 1, set under r), then takes r
     * -- possible only if the wait dropped every level. */
    CHECK_OK(crew_rlock_acquire(&x->r, CREW_FOREVER));
    while (x->state != 1) {
        CHECK_OK(crew_rlock_release(&x->r));
        sched_yield();
        CHECK_OK(crew_rlock_acquire(&x->r, CREW_FOREVER));
    }
    x->other_count = crew_rlock_count(&x->r);
    x->state = 2;
    CHECK_OK(crew_cond_notify(&x->c));
    CHECK_OK(crew_rlock_release(&x->r));
    return NULL;
}

/* ConditionTests run on Python's default Condition(), whose lock is an
 * RLock: wait releases it fully (RLock._release_save) and restores the
 * depth (_acquire_restore); RLockTests.test_release_save_unacquired for
 * the error path. */
static void test_cond_rlock_releases_fully(void)
{
    cr x = {0};
    CHECK_OK(crew_rlock_init(&x.r));
    CHECK_OK(crew_cond_init(&x.c));
    /* Not held: CREW_EPERM (Python: RuntimeError), also after balanced use. */
    CHECK_ERR(crew_cond_wait_rlock(&x.c, &x.r, 0), CREW_EPERM);
    CHECK_OK(crew_rlock_acquire(&x.r, CREW_FOREVER));
    CHECK_OK(crew_rlock_acquire(&x.r, CREW_FOREVER));
    CHECK_OK(crew_rlock_release(&x.r));
    CHECK_OK(crew_rlock_release(&x.r));
    CHECK_ERR(crew_cond_wait_rlock(&x.c, &x.r, 0), CREW_EPERM);
    CHECK_ERR(crew_cond_wait_for_rlock(&x.c, &x.r, state_is_2, &x, 0), CREW_EPERM);

    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_rlock_acquire(&x.r, CREW_FOREVER));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, take_while_waited, &x, NULL));
    x.state = 1;
    CHECK_OK(crew_cond_wait_for_rlock(&x.c, &x.r, state_is_2, &x, 20));
    CHECK_EQ(crew_rlock_count(&x.r), 3); /* the same depth again */
    CHECK_EQ(x.other_count, 1);          /* the other thread held it alone */
    CHECK_OK(join_rc(t));
    for (int i = 0; i < 3; i++)
        CHECK_OK(crew_rlock_release(&x.r));
    CHECK_EQ(crew_rlock_locked(&x.r), 0);

    /* A thread that does not own it cannot wait on it. */
    CHECK_OK(crew_rlock_acquire(&x.r, CREW_FOREVER));
    CHECK_ERR(crew_cond_wait_rlock(NULL, &x.r, 0), CREW_EINVAL);
    CHECK_ERR(crew_cond_wait_rlock(&x.c, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_cond_wait_rlock(&x.c, &x.r, NAN), CREW_EINVAL);
    CHECK_ERR(crew_cond_wait_for_rlock(&x.c, &x.r, NULL, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_cond_wait_for_rlock(&x.c, NULL, state_is_2, &x, 0), CREW_EINVAL);
    CHECK_EQ(crew_rlock_count(&x.r), 1); /* nothing was released */
    CHECK_OK(crew_rlock_release(&x.r));
    CHECK_OK(crew_rlock_destroy(&x.r));
    CHECK_ERR(crew_cond_wait_rlock(&x.c, &x.r, 0), CREW_EINVAL);
    CHECK_OK(crew_cond_destroy(&x.c));
}

/* ConditionTests.test_timeout and test_waitfor_timeout over an rlock: the
 * depth is restored after a timeout too. */
static void test_cond_rlock_timeout(void)
{
    cr x = {0};
    CHECK_OK(crew_rlock_init(&x.r));
    CHECK_OK(crew_cond_init(&x.c));
    CHECK_OK(crew_rlock_acquire(&x.r, CREW_FOREVER));
    CHECK_OK(crew_rlock_acquire(&x.r, CREW_FOREVER));
    CHECK_ERR(crew_cond_wait_rlock(&x.c, &x.r, 0), CREW_ETIMEDOUT);
    CHECK_EQ(crew_rlock_count(&x.r), 2);
    double t0 = crew_now();
    CHECK_ERR(crew_cond_wait_rlock(&x.c, &x.r, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_EQ(crew_rlock_count(&x.r), 2);
    t0 = crew_now();
    CHECK_ERR(crew_cond_wait_for_rlock(&x.c, &x.r, state_is_2, &x, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_EQ(crew_rlock_count(&x.r), 2);
    /* ConditionTests.test_waitfor: a true predicate returns at once. */
    x.state = 2;
    CHECK_OK(crew_cond_wait_for_rlock(&x.c, &x.r, state_is_2, &x, 0));
    CHECK_OK(crew_rlock_release(&x.r));
    CHECK_OK(crew_rlock_release(&x.r));
}

/* The same between processes: a fork child waits on a shared condition
 * holding a shared rlock two deep; the parent can take the rlock meanwhile. */
static void test_cond_rlock_processes(void)
{
    cr *x = shared_map(sizeof *x);
    CHECK_OK(crew_rlock_init(&x->r));
    CHECK_OK(crew_cond_init(&x->c));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (crew_rlock_acquire(&x->r, 10) || crew_rlock_acquire(&x->r, 10))
            _exit(1);
        x->state = 1;
        int rc = crew_cond_wait_for_rlock(&x->c, &x->r, state_is_2, x, 20);
        int depth = crew_rlock_count(&x->r);
        crew_rlock_release(&x->r);
        crew_rlock_release(&x->r);
        _exit(rc == 0 && depth == 2 ? 0 : 2);
    }
    CHECK_OK(crew_rlock_acquire(&x->r, 20));
    while (x->state != 1) {
        CHECK_OK(crew_rlock_release(&x->r));
        sched_yield();
        CHECK_OK(crew_rlock_acquire(&x->r, 20));
    }
    /* We hold it while the child waits: its two levels were dropped. */
    x->state = 2;
    CHECK_OK(crew_cond_notify_all(&x->c));
    CHECK_OK(crew_rlock_release(&x->r));
    int st = test_wait(pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    munmap(x, sizeof *x);
}

/* ------------------------------------------------------------ notify(n) */
#define NW 5
typedef struct nn {
    crew_lock l;
    crew_cond c, progress;
    int waiting, tickets, woken;
} nn;

static int has_ticket(void *arg) { return ((nn *)arg)->tickets > 0; }

static void *ticket_waiter(void *arg)
{
    nn *s = arg;
    CHECK_OK(crew_lock_acquire(&s->l, CREW_FOREVER));
    s->waiting++;
    CHECK_OK(crew_cond_notify_all(&s->progress));
    CHECK_OK(crew_cond_wait_for(&s->c, &s->l, has_ticket, s, 30));
    s->tickets--;
    s->woken++;
    CHECK_OK(crew_cond_notify_all(&s->progress));
    CHECK_OK(crew_lock_release(&s->l));
    return NULL;
}

static int all_waiting(void *arg) { return ((nn *)arg)->waiting == NW; }
static int three_woken(void *arg) { return ((nn *)arg)->woken == 3; }
static int five_woken(void *arg) { return ((nn *)arg)->woken == NW; }

/* ConditionTests.test_notify (_check_notify): notify(3) lets three of five
 * waiters through and notify(2) the other two. A waiter asleep that
 * notify_n failed to wake would hang here (the watchdog fails the test);
 * the tickets make "exactly n" visible despite spurious returns. */
static void test_cond_notify_n(void)
{
    nn s = {0};
    CHECK_OK(crew_lock_init(&s.l));
    CHECK_OK(crew_cond_init(&s.c));
    CHECK_OK(crew_cond_init(&s.progress));
    crew_thread *t[NW];
    for (int i = 0; i < NW; i++)
        CHECK_OK(crew_thread_start(&t[i], ticket_waiter, &s, NULL));
    CHECK_OK(crew_lock_acquire(&s.l, CREW_FOREVER));
    CHECK_OK(crew_cond_wait_for(&s.progress, &s.l, all_waiting, &s, 20));
    CHECK_OK(crew_cond_notify_n(&s.c, 0)); /* wakes nobody; valid */
    s.tickets = 3;
    CHECK_OK(crew_cond_notify_n(&s.c, 3));
    CHECK_OK(crew_cond_wait_for(&s.progress, &s.l, three_woken, &s, 20));
    CHECK_EQ(s.woken, 3);
    CHECK_EQ(s.tickets, 0);
    s.tickets = 2;
    CHECK_OK(crew_cond_notify_n(&s.c, 2));
    CHECK_OK(crew_cond_wait_for(&s.progress, &s.l, five_woken, &s, 20));
    CHECK_OK(crew_lock_release(&s.l));
    for (int i = 0; i < NW; i++)
        CHECK_OK(join_rc(t[i]));
    CHECK_OK(crew_cond_notify_n(&s.c, UINT32_MAX)); /* nobody waits: fine */
    CHECK_ERR(crew_cond_notify_n(NULL, 1), CREW_EINVAL);
    CHECK_OK(crew_cond_destroy(&s.c));
    CHECK_ERR(crew_cond_notify_n(&s.c, 1), CREW_EINVAL);
    CHECK_ERR(crew_cond_notify_n(&s.c, 0), CREW_EINVAL);
}

/* ------------------------------------------------------------ barrier action */
#define NB 4
typedef struct act {
    crew_barrier b;
    _Atomic int calls;    /* action runs */
    _Atomic int released; /* waiters past the barrier in this round */
    int fail_round;       /* the round whose action fails (-1 none) */
    int fail_rc;
    int rounds;
} act;

static int count_action(void *arg)
{
    act *a = arg;
    /* No waiter of this round has been released yet. */
    CHECK_EQ(atomic_load(&a->released), 0);
    unsigned waiting = 0;
    CHECK_OK(crew_barrier_status_get(&a->b, NULL, &waiting, NULL));
    CHECK_EQ(waiting, NB);
    int n = atomic_fetch_add(&a->calls, 1);
    return n == a->fail_round ? a->fail_rc : 0;
}

static void *action_worker(void *arg)
{
    act *a = arg;
    for (int i = 0; i < a->rounds; i++) {
        int rc = crew_barrier_wait_action(&a->b, 20, NULL, count_action, a);
        if (rc != 0)
            return (void *)(intptr_t)rc;
        CHECK_EQ(atomic_load(&a->calls), i + 1); /* once per round, before us */
        atomic_fetch_add(&a->released, 1);
        /* A plain barrier separates the rounds so `released` can restart. */
        unsigned idx;
        CHECK_OK(crew_barrier_wait(&a->b, 20, &idx));
        if (idx == 0)
            atomic_store(&a->released, 0);
        CHECK_OK(crew_barrier_wait(&a->b, 20, NULL));
    }
    return NULL;
}

static int count_action_one(void *arg)
{
    atomic_fetch_add(&((act *)arg)->calls, 1);
    return 0;
}

/* BarrierTests.test_action: the action runs once per round, in one thread,
 * before any thread of that round goes on. */
static void test_barrier_action(void)
{
    act a = {.fail_round = -1, .rounds = 50};
    CHECK_OK(crew_barrier_init(&a.b, NB));
    crew_thread *t[NB];
    for (int i = 0; i < NB; i++)
        CHECK_OK(crew_thread_start(&t[i], action_worker, &a, NULL));
    for (int i = 0; i < NB; i++)
        CHECK_OK(join_rc(t[i]));
    CHECK_EQ(atomic_load(&a.calls), a.rounds);
    /* One party: the waiter trips at once and runs its action itself. */
    crew_barrier one;
    CHECK_OK(crew_barrier_init(&one, 1));
    act b1 = {.fail_round = -1};
    unsigned idx = 9;
    CHECK_OK(crew_barrier_wait_action(&one, 0, &idx, count_action_one, &b1));
    CHECK_EQ(idx, 0);
    CHECK_EQ(atomic_load(&b1.calls), 1);
    CHECK_ERR(crew_barrier_wait_action(NULL, 0, NULL, count_action_one, &b1), CREW_EINVAL);
    CHECK_ERR(crew_barrier_wait_action(&one, NAN, NULL, count_action_one, &b1), CREW_EINVAL);
    CHECK_EQ(atomic_load(&b1.calls), 1);
}

static void *fail_worker(void *arg)
{
    act *a = arg;
    return (void *)(intptr_t)crew_barrier_wait_action(&a->b, 20, NULL, count_action, a);
}

/* Python's Barrier._release: an action that raises breaks the barrier; the
 * thread that ran it gets the exception (here: the action's status) and the
 * others BrokenBarrierError (CREW_EBROKEN). Then reset repairs it
 * (BarrierTests.test_abort_and_reset). */
static void test_barrier_action_fails(void)
{
    int codes[] = {CREW_EIO, 7}; /* a positive status is CREW_EBROKEN */
    for (int k = 0; k < 2; k++) {
        act a = {.fail_round = 0, .fail_rc = codes[k]};
        CHECK_OK(crew_barrier_init(&a.b, NB));
        crew_thread *t[NB];
        for (int i = 0; i < NB; i++)
            CHECK_OK(crew_thread_start(&t[i], fail_worker, &a, NULL));
        /* CREW_EIO: one waiter gets it, three CREW_EBROKEN; 7: all four
         * CREW_EBROKEN. */
        int n_action = 0, n_broken = 0;
        for (int i = 0; i < NB; i++) {
            int rc = join_rc(t[i]);
            if (rc == CREW_EIO)
                n_action++;
            else if (rc == CREW_EBROKEN)
                n_broken++;
            else
                TEST_FAIL("unexpected %s", crew_err_name(rc));
        }
        CHECK_EQ(n_action, codes[k] < 0 ? 1 : 0);
        CHECK_EQ(n_broken, codes[k] < 0 ? NB - 1 : NB);
        CHECK_EQ(atomic_load(&a.calls), 1);
        int broken = 0;
        CHECK_OK(crew_barrier_status_get(&a.b, NULL, NULL, &broken));
        CHECK_EQ(broken, 1);
        CHECK_ERR(crew_barrier_wait(&a.b, 1, NULL), CREW_EBROKEN);
        CHECK_OK(crew_barrier_reset(&a.b));
        a.fail_round = -1;
        for (int i = 0; i < NB; i++)
            CHECK_OK(crew_thread_start(&t[i], fail_worker, &a, NULL));
        for (int i = 0; i < NB; i++)
            CHECK_OK(join_rc(t[i]));
        CHECK_EQ(atomic_load(&a.calls), 2);
    }
}

static int abort_action(void *arg) { return crew_barrier_abort(arg); }
static int reset_action(void *arg) { return crew_barrier_reset(arg); }

static void *wait_forever_rc(void *arg)
{
    return (void *)(intptr_t)crew_barrier_wait(arg, CREW_FOREVER, NULL);
}

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

/* An action may call the barrier (its lock is not held): aborting or
 * resetting from it ends the round broken for everyone (BarrierTests.
 * test_abort, test_reset). */
static void test_barrier_action_calls_barrier(void)
{
    crew_barrier_action acts[] = {abort_action, reset_action};
    for (int k = 0; k < 2; k++) {
        crew_barrier b;
        CHECK_OK(crew_barrier_init(&b, 2));
        crew_thread *t;
        CHECK_OK(crew_thread_start(&t, wait_forever_rc, &b, NULL));
        until_waiting(&b, 1);
        CHECK_ERR(crew_barrier_wait_action(&b, 10, NULL, acts[k], &b), CREW_EBROKEN);
        CHECK_ERR(join_rc(t), CREW_EBROKEN);
        int broken = -1;
        CHECK_OK(crew_barrier_status_get(&b, NULL, NULL, &broken));
        CHECK_EQ(broken, k == 0); /* abort: broken; reset: usable again */
    }
}

typedef struct slow {
    crew_barrier b;
    crew_event in_action, go;
} slow;

static int slow_action(void *arg)
{
    slow *s = arg;
    CHECK_OK(crew_event_set(&s->in_action));
    CHECK_OK(crew_event_wait(&s->go, 20));
    return 0;
}

static void *slow_tripper(void *arg)
{
    slow *s = arg;
    return (void *)(intptr_t)crew_barrier_wait_action(&s->b, 20, NULL, slow_action, s);
}

static void *plain_waiter(void *arg)
{
    slow *s = arg;
    return (void *)(intptr_t)crew_barrier_wait(&s->b, 20, NULL);
}

/* A caller beyond `parties` that arrives while the action runs joins the
 * next round (Python's Barrier._enter waits while the barrier drains). */
static void test_barrier_extra_arrival_during_action(void)
{
    slow s;
    CHECK_OK(crew_barrier_init(&s.b, 2));
    CHECK_OK(crew_event_init(&s.in_action));
    CHECK_OK(crew_event_init(&s.go));
    crew_thread *first, *tripper, *extra;
    CHECK_OK(crew_thread_start(&first, plain_waiter, &s, NULL));
    until_waiting(&s.b, 1);
    CHECK_OK(crew_thread_start(&tripper, slow_tripper, &s, NULL));
    CHECK_OK(crew_event_wait(&s.in_action, 20));
    CHECK_OK(crew_thread_start(&extra, plain_waiter, &s, NULL));
    /* A poll made during the action neither joins nor breaks the round. */
    CHECK_ERR(crew_barrier_wait(&s.b, 0, NULL), CREW_ETIMEDOUT);
    int broken = -1;
    CHECK_OK(crew_barrier_status_get(&s.b, NULL, NULL, &broken));
    CHECK_EQ(broken, 0);
    CHECK_OK(crew_event_set(&s.go));
    CHECK_OK(join_rc(first));
    CHECK_OK(join_rc(tripper));
    until_waiting(&s.b, 1); /* the extra caller, now in the next round */
    CHECK_OK(crew_barrier_wait(&s.b, 20, NULL));
    CHECK_OK(join_rc(extra));
}

static void *wait_default_rc(void *arg)
{
    return (void *)(intptr_t)crew_barrier_wait(arg, CREW_FOREVER, NULL);
}

static void *wait_inf_rc(void *arg)
{
    return (void *)(intptr_t)crew_barrier_wait(arg, INFINITY, NULL);
}

/* BarrierTests.test_default_timeout: waits that give no timeout use the
 * barrier's; one of them breaks it (CREW_ETIMEDOUT), the rest see it broken.
 * An explicit timeout still wins, and +INFINITY waits forever. */
static void test_barrier_default_timeout(void)
{
    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 3));
    CHECK_OK(crew_barrier_timeout_set(&b, 0.05));
    crew_thread *t[2];
    double t0 = crew_now();
    for (int i = 0; i < 2; i++)
        CHECK_OK(crew_thread_start(&t[i], wait_default_rc, &b, NULL));
    int rc0 = join_rc(t[0]), rc1 = join_rc(t[1]);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK((rc0 == CREW_ETIMEDOUT && rc1 == CREW_EBROKEN) ||
          (rc1 == CREW_ETIMEDOUT && rc0 == CREW_EBROKEN));
    CHECK_OK(crew_barrier_reset(&b));

    /* Timeout 0 given explicitly: a poll, whatever the default. */
    CHECK_ERR(crew_barrier_wait(&b, 0, NULL), CREW_ETIMEDOUT);
    CHECK_OK(crew_barrier_reset(&b));

    /* +INFINITY: not the default. After more than the default has passed
     * the barrier is still whole; then the others arrive. */
    CHECK_OK(crew_barrier_init(&b, 2));
    CHECK_OK(crew_barrier_timeout_set(&b, 0.01));
    crew_thread *inf;
    CHECK_OK(crew_thread_start(&inf, wait_inf_rc, &b, NULL));
    until_waiting(&b, 1);
    crew_event never;
    CHECK_OK(crew_event_init(&never));
    CHECK_ERR(crew_event_wait(&never, 0.1), CREW_ETIMEDOUT); /* let 10x the default pass */
    int broken = -1;
    CHECK_OK(crew_barrier_status_get(&b, NULL, NULL, &broken));
    CHECK_EQ(broken, 0);
    CHECK_OK(crew_barrier_wait(&b, 20, NULL));
    CHECK_OK(join_rc(inf));

    /* Removing the default: CREW_FOREVER waits forever again. (A fresh
     * barrier: the exited thread above is still a tracked participant.) */
    CHECK_OK(crew_barrier_init(&b, 2));
    CHECK_OK(crew_barrier_timeout_set(&b, 0.01));
    CHECK_OK(crew_barrier_timeout_set(&b, CREW_FOREVER));
    CHECK_OK(crew_thread_start(&inf, wait_default_rc, &b, NULL));
    until_waiting(&b, 1);
    CHECK_ERR(crew_event_wait(&never, 0.05), CREW_ETIMEDOUT);
    CHECK_OK(crew_barrier_status_get(&b, NULL, NULL, &broken));
    CHECK_EQ(broken, 0);
    CHECK_OK(crew_barrier_wait(&b, 20, NULL));
    CHECK_OK(join_rc(inf));

    CHECK_ERR(crew_barrier_timeout_set(&b, NAN), CREW_EINVAL);
    CHECK_ERR(crew_barrier_timeout_set(NULL, 1), CREW_EINVAL);
    CHECK_OK(crew_barrier_destroy(&b));
    CHECK_ERR(crew_barrier_timeout_set(&b, 1), CREW_EINVAL);
}

/* ------------------------------------------------------------ processes */
typedef struct pact {
    crew_barrier b;
    _Atomic int calls;
} pact;

static int shared_count(void *arg)
{
    atomic_fetch_add(&((pact *)arg)->calls, 1);
    return 0;
}

static int exit_in_action(void *arg)
{
    (void)arg;
    _exit(0); /* the process completing the round dies inside the action */
}

/* The action between processes: three processes (two fork children), each
 * passing its own pointer to the same function; one runs per round, and the
 * count lives in the shared memory. */
static void test_barrier_action_processes(void)
{
    pact *p = shared_map(sizeof *p);
    CHECK_OK(crew_barrier_init(&p->b, 3));
    enum { ROUNDS = 20 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CHECK(kids[k] >= 0);
        if (kids[k] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                if (crew_barrier_wait_action(&p->b, 20, NULL, shared_count, p) != 0)
                    _exit(1);
                if (atomic_load(&p->calls) < i + 1)
                    _exit(2);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < ROUNDS; i++) {
        CHECK_OK(crew_barrier_wait_action(&p->b, 20, NULL, shared_count, p));
        CHECK(atomic_load(&p->calls) >= i + 1);
    }
    for (int k = 0; k < 2; k++) {
        int st = test_wait(kids[k]);
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 0);
    }
    CHECK_EQ(atomic_load(&p->calls), ROUNDS);

    /* The completing process dies inside the action: it is a participant
     * that has not arrived, so the waiter sees the death and the barrier
     * breaks instead of hanging. */
    CHECK_OK(crew_barrier_init(&p->b, 2));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        until_waiting(&p->b, 1);
        crew_barrier_wait_action(&p->b, 20, NULL, exit_in_action, NULL);
        _exit(3);
    }
    double t0 = crew_now();
    CHECK_ERR(crew_barrier_wait(&p->b, 20, NULL), CREW_EBROKEN);
    CHECK(crew_now() - t0 < 10);
    int st = test_wait(pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    munmap(p, sizeof *p);
}

static const test_case cases[] = {
    TEST_CASE(test_lock_locked),
    TEST_CASE(test_rlock_locked_count),
    TEST_CASE(test_cond_rlock_releases_fully),
    TEST_CASE(test_cond_rlock_timeout),
    TEST_CASE(test_cond_rlock_processes),
    TEST_CASE(test_cond_notify_n),
    TEST_CASE(test_barrier_action),
    TEST_CASE(test_barrier_action_fails),
    TEST_CASE(test_barrier_action_calls_barrier),
    TEST_CASE(test_barrier_extra_arrival_during_action),
    TEST_CASE(test_barrier_default_timeout),
    TEST_CASE(test_barrier_action_processes),
};

TEST_MAIN_NOHELPERS(cases)
