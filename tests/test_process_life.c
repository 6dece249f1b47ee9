/* crew_process lifetimes: thousands of start/join cycles leave no fd,
 * mapping or zombie; a SIGKILLed parent leaves no child (nor forkserver)
 * alive; forkserver workers have a sound C library (own tid in pthread
 * mutexes, robust list registered); crew_child_main is a no-op in a parent. */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>

static int task_code(void *arg, size_t len)
{
    (void)len;
    return arg ? *(unsigned char *)arg : 0;
}

static void cycles(crew_start_method m, int n)
{
    crew_process_options o = {0};
    o.method = m;
    /* Warm up once: the forkserver and its keeper thread are started once
     * and then stay, so they are not counted as a leak. */
    crew_process *p;
    unsigned char code = 1;
    CHECK_OK(crew_process_start(&p, task_code, &code, 1, &o));
    CHECK_OK(crew_process_join(p, CREW_FOREVER, NULL));
    CHECK_OK(crew_process_destroy(p));
    int fds = test_count_fds(), maps = test_count_maps(), kids = test_count_children();
    for (int i = 0; i < n; i++) {
        code = (unsigned char)(i & 0x7f);
        CHECK_OK(crew_process_start(&p, task_code, &code, 1, &o));
        crew_exit st;
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        CHECK_EQ(st.code, code);
        CHECK_OK(crew_process_destroy(p));
    }
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_maps(), maps);
    CHECK_EQ(test_count_children(), kids);
}

static void test_cycles_fork(void) { cycles(CREW_START_FORK, TEST_SANITIZED ? 500 : 10000); }
static void test_cycles_forkserver(void) { cycles(CREW_START_FORKSERVER, TEST_SANITIZED ? 100 : 1000); }
static void test_cycles_spawn(void) { cycles(CREW_START_SPAWN, TEST_SANITIZED ? 50 : 1000); }

/* Many children alive at once, then destroyed while running. */
__attribute__((noreturn)) static int task_block(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    for (;;)
        pause();
}

static void test_many_alive_destroyed(void)
{
    CHECK_OK(crew_forkserver_start());
    int fds = test_count_fds(), kids = test_count_children();
    crew_process *p[32];
    crew_start_method ms[] = {CREW_START_FORK, CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int i = 0; i < 32; i++) {
        crew_process_options o = {0};
        o.method = ms[i % 3];
        CHECK_OK(crew_process_start(&p[i], task_block, NULL, 0, &o));
    }
    CHECK_EQ(test_count_children(), kids + 32);
    for (int i = 0; i < 32; i++)
        CHECK_OK(crew_process_destroy(p[i]));
    CHECK_EQ(test_count_children(), kids);
    CHECK_EQ(test_count_fds(), fds);
}

/* ---- parent death ---- */

static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    return !rp || rp[2] == 'Z' || rp[2] == 'X'; /* dead, waiting for init */
}

/* The "parent": starts one blocking child per method, writes their pids and
 * its forkserver's pid to fd argv[0], then waits to be killed. */
__attribute__((noreturn)) static int helper_parent(int argc, char **argv)
{
    CHECK(argc == 1);
    int out = atoi(argv[0]);
    pid_t pids[4];
    crew_start_method ms[] = {CREW_START_FORK, CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int i = 0; i < 3; i++) {
        crew_process_options o = {0};
        o.method = ms[i];
        crew_process *p;
        CHECK_OK(crew_process_start(&p, task_block, NULL, 0, &o));
        pids[i] = crew_process_pid(p);
    }
    pids[3] = crew_forkserver_pid();
    CHECK(pids[3] > 0);
    CHECK(write(out, pids, sizeof pids) == (ssize_t)sizeof pids);
    for (;;)
        pause();
}

static void test_parent_sigkill_leaves_nothing(void)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", pfd[1]);
    pid_t helper = test_spawn_helper("helper_parent", fdarg, (char *)NULL);
    close(pfd[1]);
    pid_t pids[4];
    CHECK(read(pfd[0], pids, sizeof pids) == (ssize_t)sizeof pids);
    close(pfd[0]);
    for (int i = 0; i < 4; i++)
        CHECK(!pid_gone(pids[i]));
    CHECK(kill(helper, SIGKILL) == 0);
    int st = test_wait(helper);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* Bounded check (not synchronisation): all must be gone within 1 s. */
    double t0 = crew_now();
    for (;;) {
        int alive = 0;
        for (int i = 0; i < 4; i++)
            alive += !pid_gone(pids[i]);
        if (alive == 0)
            break;
        if (crew_now() - t0 > 1.0)
            TEST_FAIL("%d of 4 processes outlived their SIGKILLed parent by 1 s", alive);
        usleep(2000);
    }
}

/* A fork child is tied to the thread that forked it (Linux PDEATHSIG): this
 * records the documented behaviour. The thread waits until the child runs
 * its task (so the death signal is armed) before it exits. */
static int task_say_then_block(void *arg, size_t len)
{
    (void)len;
    CHECK(write(*(int *)arg, "x", 1) == 1);
    for (;;)
        pause();
}

static void *fork_from_thread(void *u)
{
    int *pfd = u;
    crew_process_options o = {0};
    o.method = CREW_START_FORK;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_say_then_block, &pfd[1], sizeof pfd[1], &o));
    char c;
    CHECK(read(pfd[0], &c, 1) == 1);
    return p;
}

static void test_fork_child_dies_with_its_thread(void)
{
    int pfd[2];
    CHECK(pipe2(pfd, O_CLOEXEC) == 0);
    pthread_t t;
    void *r;
    CHECK(pthread_create(&t, NULL, fork_from_thread, pfd) == 0);
    pthread_join(t, &r);
    crew_process *p = r;
    crew_exit st;
    CHECK_OK(crew_process_join(p, 10.0, &st));
    CHECK_EQ(st.signal, SIGKILL);
    CHECK_OK(crew_process_destroy(p));
    close(pfd[0]);
    close(pfd[1]);
}

/* ---- forkserver workers' C library state ---- */

typedef struct shared_mutexes {
    pthread_mutex_t errorcheck;
    pthread_mutex_t robust;
} shared_mutexes;

typedef struct mutex_arg {
    int memfd, ready_fd, go_fd, role;
} mutex_arg;

static int task_mutex(void *arg, size_t len)
{
    CHECK(len == sizeof(mutex_arg));
    mutex_arg *a = arg;
    shared_mutexes *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, a->memfd, 0);
    if (m == MAP_FAILED)
        return 30;
    if (a->role == 0) {
        /* Holder: take both, say so, wait for "go", then die holding the
         * robust one. */
        if (pthread_mutex_lock(&m->errorcheck) != 0 || pthread_mutex_lock(&m->robust) != 0)
            return 31;
        if (write(a->ready_fd, "r", 1) != 1)
            return 32;
        char c;
        if (read(a->go_fd, &c, 1) != 1)
            return 33;
        pthread_mutex_unlock(&m->errorcheck);
        return 0; /* exits still holding m->robust */
    }
    /* Contender: the errorcheck mutex is held by *another* process. With a
     * stale tid (that of the forkserver) glibc would say EDEADLK here. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    int r = pthread_mutex_timedlock(&m->errorcheck, &ts);
    return r == ETIMEDOUT ? 0 : 40 + r;
}

static void test_forkserver_worker_libc_state(void)
{
    int memfd = memfd_create("mutexes", MFD_CLOEXEC);
    CHECK(memfd >= 0);
    CHECK(ftruncate(memfd, sizeof(shared_mutexes)) == 0);
    shared_mutexes *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    CHECK(m != MAP_FAILED);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    CHECK(pthread_mutex_init(&m->errorcheck, &a) == 0);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_NORMAL);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    CHECK(pthread_mutex_init(&m->robust, &a) == 0);
    pthread_mutexattr_destroy(&a);
    int ready[2], go[2];
    CHECK(pipe2(ready, O_CLOEXEC) == 0 && pipe2(go, O_CLOEXEC) == 0);

    crew_process_options o = {0};
    o.method = CREW_START_FORKSERVER;
    int pass[3] = {memfd, ready[1], go[0]};
    o.pass_fds = pass;
    o.n_pass_fds = 3;
    mutex_arg ha = {memfd, ready[1], go[0], 0}, ca = ha;
    ca.role = 1;
    crew_process *holder, *contender;
    CHECK_OK(crew_process_start(&holder, task_mutex, &ha, sizeof ha, &o));
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    CHECK_OK(crew_process_start(&contender, task_mutex, &ca, sizeof ca, &o));
    crew_exit st;
    CHECK_OK(crew_process_join(contender, CREW_FOREVER, &st));
    if (st.code != 0)
        TEST_FAIL("contender: code %d (40+errno: the worker's tid is wrong)", st.code);
    CHECK(write(go[1], "g", 1) == 1);
    CHECK_OK(crew_process_join(holder, CREW_FOREVER, &st));
    CHECK_EQ(st.code, 0);
    /* The holder died holding the robust mutex: the kernel walked its
     * robust list, so we inherit it with EOWNERDEAD instead of hanging. */
    CHECK_EQ(pthread_mutex_lock(&m->robust), EOWNERDEAD);
    pthread_mutex_consistent(&m->robust);
    pthread_mutex_unlock(&m->robust);
    CHECK_OK(crew_process_destroy(holder));
    CHECK_OK(crew_process_destroy(contender));
    munmap(m, sizeof *m);
    close(memfd);
    close(ready[0]); close(ready[1]); close(go[0]); close(go[1]);
}

static void test_child_main_noop_in_parent(void)
{
    char *argv[] = {(char *)"x", NULL};
    CHECK_EQ(crew_child_main(1, argv), 0);
}

static const test_case cases[] = {
    TEST_CASE(test_cycles_fork),
    TEST_CASE(test_cycles_forkserver),
    TEST_CASE(test_cycles_spawn),
    TEST_CASE(test_many_alive_destroyed),
    TEST_CASE(test_parent_sigkill_leaves_nothing),
    TEST_CASE(test_fork_child_dies_with_its_thread),
    TEST_CASE(test_forkserver_worker_libc_state),
    TEST_CASE(test_child_main_noop_in_parent),
};
static const test_helper helpers[] = {TEST_HELPER(helper_parent)};
TEST_MAIN(cases, helpers)
