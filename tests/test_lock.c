/* crew_lock: semantics, misuse, timeouts, contention under a watchdog, and
 * owners that die holding it -- threads, forked children, exec'd helpers. */
// CREW_TEST_TIMEOUT 90
#include "crew_test.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>


static void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static void test_basic(void)
{
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    CHECK_OK(crew_lock_acquire(&l, CREW_FOREVER));
    CHECK_ERR(crew_lock_try(&l), CREW_EBUSY);
    CHECK_ERR(crew_lock_acquire(&l, CREW_FOREVER), CREW_EDEADLK);
    CHECK_ERR(crew_lock_acquire(&l, 0), CREW_EDEADLK);
    CHECK_ERR(crew_lock_destroy(&l), CREW_EBUSY);
    CHECK_ERR(crew_lock_consistent(&l), CREW_EINVAL); /* not inconsistent */
    CHECK_OK(crew_lock_release(&l));
    CHECK_ERR(crew_lock_release(&l), CREW_EPERM);
    CHECK_OK(crew_lock_try(&l));
    CHECK_OK(crew_lock_release(&l));
    CHECK_OK(crew_lock_acquire(&l, 0));
    CHECK_OK(crew_lock_release(&l));
    CHECK_OK(crew_lock_acquire(&l, 1.0));
    CHECK_OK(crew_lock_release(&l));
    CHECK_OK(crew_lock_destroy(&l));
    CHECK_ERR(crew_lock_acquire(&l, CREW_FOREVER), CREW_EINVAL);
    CHECK_ERR(crew_lock_try(&l), CREW_EINVAL);
    CHECK_ERR(crew_lock_release(&l), CREW_EINVAL);
    CHECK_ERR(crew_lock_destroy(&l), CREW_EINVAL);
    CHECK_OK(crew_lock_init(&l)); /* re-init makes it usable again */
    CHECK_OK(crew_lock_acquire(&l, CREW_FOREVER));
    CHECK_OK(crew_lock_release(&l));

    /* All-zero memory is an unlocked lock (fresh shared memory). */
    crew_lock z;
    memset(&z, 0, sizeof z);
    CHECK_OK(crew_lock_acquire(&z, 0));
    CHECK_OK(crew_lock_release(&z));
}

static void test_null(void)
{
    CHECK_ERR(crew_lock_init(NULL), CREW_EINVAL);
    CHECK_ERR(crew_lock_acquire(NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_lock_try(NULL), CREW_EINVAL);
    CHECK_ERR(crew_lock_release(NULL), CREW_EINVAL);
    CHECK_ERR(crew_lock_consistent(NULL), CREW_EINVAL);
    CHECK_ERR(crew_lock_destroy(NULL), CREW_EINVAL);
}

/* A thread that takes the lock, says so, and holds it until told. */
typedef struct holder {
    crew_lock *l;
    crew_event held, go;
    int release_rc;
} holder;

static void *hold(void *arg)
{
    holder *h = arg;
    CHECK_OK(crew_lock_acquire(h->l, CREW_FOREVER));
    CHECK_OK(crew_event_set(&h->held));
    CHECK_OK(crew_event_wait(&h->go, CREW_FOREVER));
    h->release_rc = crew_lock_release(h->l);
    return NULL;
}

static crew_thread *start_holder(holder *h, crew_lock *l)
{
    h->l = l;
    CHECK_OK(crew_event_init(&h->held));
    CHECK_OK(crew_event_init(&h->go));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, hold, h, NULL));
    CHECK_OK(crew_event_wait(&h->held, 10));
    return t;
}

static void test_timeouts_and_owner(void)
{
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    holder h;
    crew_thread *t = start_holder(&h, &l);
    CHECK_ERR(crew_lock_try(&l), CREW_EBUSY);
    CHECK_ERR(crew_lock_acquire(&l, 0), CREW_ETIMEDOUT);
    double t0 = crew_now();
    CHECK_ERR(crew_lock_acquire(&l, 0.05), CREW_ETIMEDOUT);
    double dt = crew_now() - t0;
    CHECK(dt >= 0.049 && dt < 5.0);
    /* Not the owner: release and consistent are refused, the lock stays. */
    CHECK_ERR(crew_lock_release(&l), CREW_EPERM);
    CHECK_ERR(crew_lock_consistent(&l), CREW_EPERM);
    CHECK_ERR(crew_lock_destroy(&l), CREW_EBUSY);
    CHECK_ERR(crew_lock_try(&l), CREW_EBUSY);
    /* Forever: the holder lets go once told; we get it. */
    CHECK_OK(crew_event_set(&h.go));
    CHECK_OK(crew_lock_acquire(&l, CREW_FOREVER));
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, NULL));
    CHECK_OK(h.release_rc);
    CHECK_OK(crew_lock_release(&l));
    CHECK_OK(crew_thread_destroy(t));
    CHECK_OK(crew_lock_destroy(&l));
}

/* Signals (with a handler, no SA_RESTART) interrupt futex sleeps: a waiter
 * must go back to sleep, neither returning early nor stretching its
 * timeout. */
static _Atomic int signals_seen;
static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&signals_seen, 1);
}

typedef struct timed_waiter {
    crew_lock *l;
    _Atomic int done;
    _Atomic uint32_t tid;
    int rc;
    double took;
} timed_waiter;

static void *wait_timed(void *arg)
{
    timed_waiter *w = arg;
    atomic_store(&w->tid, crew_thread_self_id());
    double t0 = crew_now();
    w->rc = crew_lock_acquire(w->l, 0.3);
    w->took = crew_now() - t0;
    atomic_store(&w->done, 1);
    return NULL;
}

static void test_signals_do_not_cut_waits(void)
{
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    CHECK(sigaction(SIGUSR1, &sa, &old) == 0);
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    CHECK_OK(crew_lock_acquire(&l, 0));
    timed_waiter w = {.l = &l};
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_timed, &w, NULL));
    while (atomic_load(&w.tid) == 0)
        sched_yield();
    atomic_store(&signals_seen, 0);
    while (!atomic_load(&w.done)) {
        syscall(SYS_tgkill, getpid(), (pid_t)atomic_load(&w.tid), SIGUSR1);
        sched_yield();
    }
    CHECK_OK(crew_thread_destroy(t));
    CHECK(atomic_load(&signals_seen) > 0);
    CHECK_ERR(w.rc, CREW_ETIMEDOUT);
    CHECK(w.took >= 0.299 && w.took < 5.0);
    CHECK_OK(crew_lock_release(&l));
    CHECK(sigaction(SIGUSR1, &old, NULL) == 0);
}

/* ---------------------------------------------------------------- stress */
typedef struct stress {
    crew_lock l;
    long counter; /* plain: only the lock protects it */
    long iters;
    _Atomic long timeouts;
} stress;

static void *stress_worker(void *arg)
{
    stress *s = arg;
    for (long i = 0; i < s->iters; i++) {
        int rc;
        switch (i % 3) {
        case 0:
            rc = crew_lock_acquire(&s->l, CREW_FOREVER);
            break;
        case 1:
            while ((rc = crew_lock_acquire(&s->l, 0.001)) == CREW_ETIMEDOUT)
                atomic_fetch_add(&s->timeouts, 1);
            break;
        default:
            while ((rc = crew_lock_try(&s->l)) == CREW_EBUSY &&
                   (rc = crew_lock_acquire(&s->l, 0.0005)) == CREW_ETIMEDOUT)
                atomic_fetch_add(&s->timeouts, 1);
            break;
        }
        CHECK_OK(rc);
        s->counter++;
        CHECK_OK(crew_lock_release(&s->l));
    }
    return NULL;
}

static void test_contention_stress(void)
{
    test_watchdog(40);
    stress s = {.iters = TEST_SANITIZED ? 20000 : 200000};
    CHECK_OK(crew_lock_init(&s.l));
    crew_thread *t[4];
    for (int i = 0; i < 4; i++)
        CHECK_OK(crew_thread_start(&t[i], stress_worker, &s, NULL));
    for (int i = 0; i < 4; i++)
        CHECK_OK(crew_thread_destroy(t[i]));
    CHECK_EQ(s.counter, 4 * s.iters);
    CHECK_OK(crew_lock_destroy(&s.l));
    test_watchdog(50);
}

static void test_cross_process_stress(void)
{
    test_watchdog(40);
    stress *s = shared_map(sizeof *s);
    s->iters = TEST_SANITIZED ? 10000 : 100000;
    CHECK_OK(crew_lock_init(&s->l));
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CHECK(kids[k] >= 0);
        if (kids[k] == 0) {
            stress_worker(s);
            _exit(0);
        }
    }
    stress_worker(s);
    for (int k = 0; k < 2; k++) {
        int st = test_wait(kids[k]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_EQ(s->counter, 3 * s->iters);
    munmap(s, sizeof *s);
    test_watchdog(50);
}

/* ---------------------------------------------------------------- dead owners */
static void *take_and_exit(void *arg)
{
    CHECK_OK(crew_lock_acquire(arg, CREW_FOREVER));
    return NULL; /* ends holding the lock */
}

static void test_thread_exits_holding(void)
{
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, take_and_exit, &l, NULL));
    CHECK_OK(crew_thread_destroy(t)); /* joined: its tid is gone */
    CHECK_ERR(crew_lock_try(&l), CREW_EBUSY); /* try never checks liveness */
    CHECK_ERR(crew_lock_acquire(&l, CREW_FOREVER), CREW_EOWNERDEAD);
    CHECK_ERR(crew_lock_acquire(&l, 0), CREW_EDEADLK); /* we own it now */
    CHECK_OK(crew_lock_consistent(&l));
    CHECK_OK(crew_lock_release(&l));
    CHECK_OK(crew_lock_acquire(&l, 0));
    CHECK_OK(crew_lock_release(&l));

    /* A short timed acquire checks too, before it times out. */
    CHECK_OK(crew_thread_start(&t, take_and_exit, &l, NULL));
    CHECK_OK(crew_thread_destroy(t));
    CHECK_ERR(crew_lock_acquire(&l, 0.001), CREW_EOWNERDEAD);
    CHECK_OK(crew_lock_consistent(&l));
    CHECK_OK(crew_lock_release(&l));

    /* A poll notices the dead owner at once. */
    CHECK_OK(crew_thread_start(&t, take_and_exit, &l, NULL));
    CHECK_OK(crew_thread_destroy(t));
    CHECK_ERR(crew_lock_acquire(&l, 0), CREW_EOWNERDEAD);
    CHECK_OK(crew_lock_consistent(&l));
    CHECK_OK(crew_lock_release(&l));
}

typedef struct shared_state {
    crew_lock l;
    long a, b; /* invariant a == b, broken while the lock is held mid-update */
} shared_state;

/* Forks a child that takes the lock, breaks the invariant and reports via
 * the pipe, then blocks forever. Returns the child's pid. */
static pid_t fork_holder(shared_state *s)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (crew_lock_acquire(&s->l, CREW_FOREVER) != 0)
            _exit(1);
        s->a++; /* half of an update */
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

static void repair(shared_state *s) { s->b = s->a; }

static void test_killed_process_owner(void)
{
    int kids = test_count_children();
    shared_state *s = shared_map(sizeof *s);
    CHECK_OK(crew_lock_init(&s->l));
    pid_t pid = fork_holder(s);
    CHECK_ERR(crew_lock_acquire(&s->l, 0), CREW_ETIMEDOUT); /* alive: not stolen */
    CHECK(kill(pid, SIGKILL) == 0);
    /* Not reaped yet: the child is a zombie, which still counts as dead. */
    CHECK_ERR(crew_lock_acquire(&s->l, CREW_FOREVER), CREW_EOWNERDEAD);
    CHECK(s->a != s->b);
    repair(s);
    CHECK_OK(crew_lock_consistent(&s->l));
    CHECK_OK(crew_lock_release(&s->l));
    int st = test_wait(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_OK(crew_lock_acquire(&s->l, 1.0));
    CHECK_OK(crew_lock_release(&s->l));
    CHECK_EQ(test_count_children(), kids);
    munmap(s, sizeof *s);
}

typedef struct killer {
    pid_t pid;
} killer;

static void *kill_it(void *arg)
{
    CHECK(kill(((killer *)arg)->pid, SIGKILL) == 0);
    return NULL;
}

static void test_blocked_waiter_sees_death(void)
{
    /* The waiter is (very likely) asleep when the owner is killed: it must
     * notice on its own, at the end of a slice, without being woken. */
    shared_state *s = shared_map(sizeof *s);
    CHECK_OK(crew_lock_init(&s->l));
    killer k = {fork_holder(s)};
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, kill_it, &k, NULL));
    double t0 = crew_now();
    CHECK_ERR(crew_lock_acquire(&s->l, 10.0), CREW_EOWNERDEAD);
    CHECK(crew_now() - t0 < 5.0); /* within slices, not the 10 s timeout */
    CHECK_OK(crew_thread_destroy(t));
    repair(s);
    CHECK_OK(crew_lock_consistent(&s->l));
    CHECK_OK(crew_lock_release(&s->l));
    test_wait(k.pid);
    munmap(s, sizeof *s);
}

static void *acquire_rc(void *arg)
{
    return (void *)(intptr_t)crew_lock_acquire(arg, CREW_FOREVER);
}

static void test_not_recoverable(void)
{
    shared_state *s = shared_map(sizeof *s);
    CHECK_OK(crew_lock_init(&s->l));
    pid_t pid = fork_holder(s);
    CHECK(kill(pid, SIGKILL) == 0);
    test_wait(pid);
    CHECK_ERR(crew_lock_acquire(&s->l, CREW_FOREVER), CREW_EOWNERDEAD);
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, acquire_rc, &s->l, NULL)); /* will wait */
    CHECK_OK(crew_lock_release(&s->l)); /* without consistent: given up */
    void *r;
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, &r));
    CHECK_ERR((int)(intptr_t)r, CREW_ENOTRECOVERABLE);
    CHECK_OK(crew_thread_destroy(t));
    CHECK_ERR(crew_lock_acquire(&s->l, CREW_FOREVER), CREW_ENOTRECOVERABLE);
    CHECK_ERR(crew_lock_acquire(&s->l, 0), CREW_ENOTRECOVERABLE);
    CHECK_ERR(crew_lock_try(&s->l), CREW_ENOTRECOVERABLE);
    CHECK_ERR(crew_lock_release(&s->l), CREW_EPERM);
    CHECK_OK(crew_lock_destroy(&s->l)); /* a dead lock can be destroyed */
    CHECK_OK(crew_lock_init(&s->l));
    CHECK_OK(crew_lock_acquire(&s->l, 0));
    CHECK_OK(crew_lock_release(&s->l));
    munmap(s, sizeof *s);
}

/* An exec'd helper (a different program image) shares the lock through a
 * memfd it inherits; it is killed holding the lock. */
static int helper_hold(int argc, char **argv)
{
    CHECK(argc == 2);
    int fd = atoi(argv[0]), out = atoi(argv[1]);
    shared_state *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(s != MAP_FAILED);
    CHECK_OK(crew_lock_acquire(&s->l, CREW_FOREVER));
    s->a++;
    char c = 1;
    CHECK(write(out, &c, 1) == 1);
    for (;;)
        pause();
}

static void test_exec_helper_killed(void)
{
    int fds = test_count_fds();
    int fd = memfd_create("test_lock", 0); /* inherited across exec on purpose */
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, sizeof(shared_state)) == 0);
    shared_state *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(s != MAP_FAILED);
    CHECK_OK(crew_lock_init(&s->l));
    int p[2];
    CHECK(pipe(p) == 0);
    char a0[16], a1[16];
    snprintf(a0, sizeof a0, "%d", fd);
    snprintf(a1, sizeof a1, "%d", p[1]);
    pid_t pid = test_spawn_helper("helper_hold", a0, a1, NULL);
    close(p[1]);
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]);
    CHECK_ERR(crew_lock_try(&s->l), CREW_EBUSY);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK_ERR(crew_lock_acquire(&s->l, 10.0), CREW_EOWNERDEAD);
    repair(s);
    CHECK_OK(crew_lock_consistent(&s->l));
    CHECK_OK(crew_lock_release(&s->l));
    test_wait(pid);
    munmap(s, sizeof *s);
    close(fd);
    CHECK_EQ(test_count_fds(), fds);
}

static const test_case cases[] = {
    TEST_CASE(test_basic),
    TEST_CASE(test_null),
    TEST_CASE(test_timeouts_and_owner),
    TEST_CASE(test_signals_do_not_cut_waits),
    TEST_CASE(test_contention_stress),
    TEST_CASE(test_cross_process_stress),
    TEST_CASE(test_thread_exits_holding),
    TEST_CASE(test_killed_process_owner),
    TEST_CASE(test_blocked_waiter_sees_death),
    TEST_CASE(test_not_recoverable),
    TEST_CASE(test_exec_helper_killed),
};
static const test_helper helpers[] = {TEST_HELPER(helper_hold)};
TEST_MAIN(cases, helpers)
