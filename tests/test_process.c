/* crew_process: every start method, exit codes and signals, join timeouts,
 * kill, destroy of a running child, start failures, threaded parents,
 * pass_fds, large arguments. */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>

static const crew_start_method methods[] = {CREW_START_FORK, CREW_START_SPAWN,
                                            CREW_START_FORKSERVER, CREW_START_DEFAULT};
static const char *method_name(crew_start_method m)
{
    switch (m) {
    case CREW_START_FORK: return "fork";
    case CREW_START_SPAWN: return "spawn";
    case CREW_START_FORKSERVER: return "forkserver";
    default: return "default";
    }
}

static crew_process *start(crew_process_fn fn, const void *arg, size_t len, crew_start_method m)
{
    crew_process_options o = {0};
    o.method = m;
    crew_process *p = NULL;
    CHECK_OK(crew_process_start(&p, fn, arg, len, &o));
    CHECK(p != NULL);
    return p;
}

static crew_exit run(crew_process_fn fn, const void *arg, size_t len, crew_start_method m)
{
    crew_process *p = start(fn, arg, len, m);
    crew_exit st = {-1, -1, -1};
    CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
    CHECK_OK(crew_process_destroy(p));
    return st;
}

/* ------------------------------------------------------------ tasks */

static int task_exit_code(void *arg, size_t len)
{
    CHECK(len == sizeof(int));
    return *(int *)arg;
}

static int task_abort(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    signal(SIGABRT, SIG_DFL);
    struct rlimit r = {0, 0};
    setrlimit(RLIMIT_CORE, &r); /* no core file litter */
    abort();
}

static int task_segv(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV); /* a real fault would trip the sanitizers' handlers */
    return 0;
}

/* Writes one byte to the fd whose number is in arg, then blocks forever. */
static int task_signal_then_block(void *arg, size_t len)
{
    CHECK(len == sizeof(int));
    int fd = *(int *)arg;
    CHECK(write(fd, "x", 1) == 1);
    for (;;)
        pause();
}

/* Starts task_signal_then_block with method m and returns once the child
 * has proved it runs (its byte arrived). */
static crew_process *start_running(crew_start_method m)
{
    int pfd[2];
    CHECK(pipe2(pfd, O_CLOEXEC) == 0);
    crew_process_options o = {0};
    o.method = m;
    o.pass_fds = &pfd[1];
    o.n_pass_fds = 1;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_signal_then_block, &pfd[1], sizeof pfd[1], &o));
    char c;
    CHECK(read(pfd[0], &c, 1) == 1);
    close(pfd[0]);
    close(pfd[1]);
    return p;
}

/* Checks the bytes it received: arg = {n, pattern...}. */
static int task_check_bytes(void *arg, size_t len)
{
    const unsigned char *b = arg;
    for (size_t i = 0; i < len; i++)
        if (b[i] != (unsigned char)(i * 7 + 3))
            return 1;
    return len == 0 && arg != NULL ? 2 : 0;
}

static int task_noop(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return 0;
}

/* ------------------------------------------------------------ cases */

static void test_exit_codes(void)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int codes[] = {0, 3, 255};
        for (int c = 0; c < 3; c++) {
            crew_exit st = run(task_exit_code, &codes[c], sizeof codes[c], methods[i]);
            if (st.code != codes[c] || st.signal != 0)
                TEST_FAIL("%s: code %d signal %d, expected %d", method_name(methods[i]), st.code,
                          st.signal, codes[c]);
            CHECK_EQ(st.core_dumped, 0);
        }
    }
}

static void test_signals(void)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        crew_exit st = run(task_abort, NULL, 0, methods[i]);
        CHECK_EQ(st.signal, SIGABRT);
        st = run(task_segv, NULL, 0, methods[i]);
        CHECK_EQ(st.signal, SIGSEGV);

        /* SIGKILL from outside, after the child proved it runs. */
        crew_process *p = start_running(methods[i]);
        CHECK(kill(crew_process_pid(p), SIGKILL) == 0);
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        CHECK_EQ(st.signal, SIGKILL);
        CHECK_EQ(st.code, 0);
        CHECK_OK(crew_process_destroy(p));
    }
}

static void test_join_timeout_and_kill(void)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        crew_process *p = start_running(methods[i]);
        crew_exit st;
        CHECK_ERR(crew_process_join(p, 0, &st), CREW_ETIMEDOUT);
        double t0 = crew_now();
        CHECK_ERR(crew_process_join(p, 0.05, &st), CREW_ETIMEDOUT);
        CHECK(crew_now() - t0 >= 0.045);
        CHECK_OK(crew_process_kill(p, 0));
        /* The pidfd is not readable while the child runs. */
        struct pollfd pf = {.fd = crew_process_pidfd(p), .events = POLLIN};
        CHECK_EQ(poll(&pf, 1, 0), 0);
        CHECK_OK(crew_process_kill(p, SIGTERM));
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        CHECK_EQ(st.signal, SIGTERM);
        CHECK_EQ(poll(&pf, 1, 0), 1);
        /* Joining again gives the same status; kill now says it is gone. */
        crew_exit again;
        CHECK_OK(crew_process_join(p, 0, &again));
        CHECK_EQ(again.signal, SIGTERM);
        CHECK_ERR(crew_process_kill(p, SIGTERM), CREW_ESRCH);
        CHECK_OK(crew_process_destroy(p));
    }
}

static void test_destroy_running(void)
{
    CHECK_OK(crew_forkserver_start()); /* counted in `before` */
    int before = test_count_children();
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        crew_process *p = start_running(methods[i]);
        pid_t pid = crew_process_pid(p);
        CHECK_OK(crew_process_destroy(p));
        /* Killed and reaped: the pid is no child of ours any more. */
        CHECK(waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD);
    }
    CHECK_EQ(test_count_children(), before);
}

static void test_arguments(void)
{
    size_t sizes[] = {0, 1, 100, 65536, 65537, 1 << 20};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            unsigned char *b = malloc(sizes[s] + 1);
            CHECK(b);
            for (size_t k = 0; k < sizes[s]; k++)
                b[k] = (unsigned char)(k * 7 + 3);
            crew_exit st = run(task_check_bytes, sizes[s] ? b : NULL, sizes[s], methods[i]);
            if (st.code != 0 || st.signal != 0)
                TEST_FAIL("%s, %zu bytes: code %d signal %d", method_name(methods[i]), sizes[s],
                          st.code, st.signal);
            free(b);
        }
}

static void test_bad_arguments(void)
{
    crew_process *p = (crew_process *)1;
    int x = 0;
    CHECK_ERR(crew_process_start(NULL, task_noop, NULL, 0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_process_start(&p, NULL, NULL, 0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_process_start(&p, task_noop, NULL, 4, NULL), CREW_EINVAL);
    crew_process_options o = {0};
    o.method = (crew_start_method)42;
    CHECK_ERR(crew_process_start(&p, task_noop, &x, sizeof x, &o), CREW_EINVAL);
    o.method = CREW_START_FORK;
    o.n_pass_fds = 1;
    CHECK_ERR(crew_process_start(&p, task_noop, &x, sizeof x, &o), CREW_EINVAL);
    int bad = 1000;
    o.pass_fds = &bad;
    CHECK_ERR(crew_process_start(&p, task_noop, &x, sizeof x, &o), CREW_EBADF);
    int many[300] = {0};
    o.pass_fds = many;
    o.n_pass_fds = 300;
    CHECK_ERR(crew_process_start(&p, task_noop, &x, sizeof x, &o), CREW_E2BIG);
    CHECK_ERR(crew_process_join(NULL, 0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_process_kill(NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_process_destroy(NULL), CREW_EINVAL);
    CHECK_EQ(crew_process_pid(NULL), CREW_EINVAL);
    CHECK_EQ(crew_process_pidfd(NULL), CREW_EINVAL);
    p = start(task_noop, NULL, 0, CREW_START_FORK);
    CHECK_ERR(crew_process_kill(p, -1), CREW_EINVAL);
    CHECK_ERR(crew_process_kill(p, 100000), CREW_EINVAL);
    CHECK_OK(crew_process_destroy(p));
}

/* A "function" that lives on the heap is in no module: the parent refuses
 * it before anything starts (spawn and forkserver need a module). */
static void test_unresolvable_function(void)
{
    int before = test_count_children();
    void *heap = malloc(64);
    CHECK(heap);
    crew_process_fn fn;
    memcpy(&fn, &heap, sizeof fn);
    crew_process_options o = {0};
    crew_process *p = NULL;
    o.method = CREW_START_SPAWN;
    CHECK_ERR(crew_process_start(&p, fn, NULL, 0, &o), CREW_ENOTFOUND);
    o.method = CREW_START_FORKSERVER;
    CHECK_ERR(crew_process_start(&p, fn, NULL, 0, &o), CREW_ENOTFOUND);
    CHECK(p == NULL);
    free(heap);
    int after = test_count_children();
    CHECK(after <= before + 1); /* at most the forkserver */
}

/* An environment string over the kernel's 128 KiB limit makes execve fail
 * with E2BIG: spawn must say so, not hand back a child that exits 127. */
static void test_exec_failure(void)
{
    crew_forkserver_stop();
    int before_children = test_count_children();
    int before_fds = test_count_fds();
    size_t n = 200 * 1024;
    char *big = malloc(n + 1);
    CHECK(big);
    memset(big, 'x', n);
    big[n] = 0;
    CHECK(setenv("CREW_TEST_HUGE", big, 1) == 0);
    crew_process_options o = {0};
    crew_process *p = NULL;
    o.method = CREW_START_SPAWN;
    CHECK_ERR(crew_process_start(&p, task_noop, NULL, 0, &o), CREW_E2BIG);
    o.method = CREW_START_FORKSERVER;
    CHECK_ERR(crew_process_start(&p, task_noop, NULL, 0, &o), CREW_E2BIG);
    CHECK_ERR(crew_forkserver_start(), CREW_E2BIG);
    CHECK(p == NULL);
    CHECK(unsetenv("CREW_TEST_HUGE") == 0);
    free(big);
    CHECK_EQ(test_count_children(), before_children);
    CHECK_EQ(test_count_fds(), before_fds);
    /* And it works again afterwards. */
    crew_exit st = run(task_noop, NULL, 0, CREW_START_SPAWN);
    CHECK_EQ(st.code, 0);
    st = run(task_noop, NULL, 0, CREW_START_FORKSERVER);
    CHECK_EQ(st.code, 0);
}

/* ---- fds: pass_fds at the same numbers, nothing else leaks in ---- */

/* arg = {fd_a, fd_b, fd_leak}: a and b must be open pipes' write ends at the
 * same numbers, fd_leak (not passed) must be closed for spawn/forkserver. */
static int task_check_fds(void *arg, size_t len)
{
    CHECK(len == 4 * sizeof(int));
    int *f = arg;
    if (write(f[0], "a", 1) != 1)
        return 10;
    if (write(f[1], "b", 1) != 1)
        return 11;
    int leak_open = fcntl(f[2], F_GETFD) >= 0;
    if (f[3] /* expect closed */ && leak_open)
        return 12;
    if (fcntl(1, F_GETFD) < 0 || fcntl(2, F_GETFD) < 0)
        return 13;
    return 0;
}

static void test_pass_fds(void)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int a[2], b[2], leak[2];
        CHECK(pipe2(a, O_CLOEXEC) == 0);
        CHECK(pipe(b) == 0); /* not CLOEXEC: must still arrive, at its number */
        CHECK(pipe(leak) == 0); /* not CLOEXEC and not passed */
        /* Put one at a high number to exercise the moves. */
        int high = fcntl(b[1], F_DUPFD_CLOEXEC, 200);
        CHECK(high >= 200);
        int args[4] = {a[1], high, leak[1], methods[i] != CREW_START_FORK};
        int pass[2] = {a[1], high};
        crew_process_options o = {0};
        o.method = methods[i];
        o.pass_fds = pass;
        o.n_pass_fds = 2;
        crew_process *p;
        CHECK_OK(crew_process_start(&p, task_check_fds, args, sizeof args, &o));
        crew_exit st;
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        if (st.code != 0 || st.signal != 0)
            TEST_FAIL("%s: code %d signal %d", method_name(methods[i]), st.code, st.signal);
        CHECK_OK(crew_process_destroy(p));
        char c;
        CHECK(read(a[0], &c, 1) == 1 && c == 'a');
        CHECK(read(b[0], &c, 1) == 1 && c == 'b');
        close(a[0]); close(a[1]); close(b[0]); close(b[1]); close(high);
        close(leak[0]); close(leak[1]);
    }
}

/* ---- names ---- */
static int task_check_name(void *arg, size_t len)
{
    (void)len;
    char buf[32] = {0};
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f)
        return 20;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    return strcmp(buf, (const char *)arg) == 0 ? 0 : 21;
}

static void test_names(void)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        crew_process_options o = {0};
        o.method = methods[i];
        o.name = "crew-worker-long-name";
        const char want[] = "crew-worker-lon"; /* 15 characters survive */
        crew_process *p;
        CHECK_OK(crew_process_start(&p, task_check_name, want, sizeof want, &o));
        crew_exit st;
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        CHECK_EQ(st.code, 0);
        CHECK_OK(crew_process_destroy(p));
    }
}

/* ---- threaded parent: spawn and forkserver never deadlock ---- */

static atomic_int busy_stop;
static void *busy_thread(void *u)
{
    (void)u;
    /* Busy with the things a fork would freeze: malloc and stdio locks. */
    while (!atomic_load(&busy_stop)) {
        void *m = malloc(100);
        free(m);
        char buf[64];
        snprintf(buf, sizeof buf, "%d", 42);
        FILE *f = fopen("/dev/null", "w");
        if (f) {
            fputs(buf, f);
            fclose(f);
        }
    }
    return NULL;
}

static int task_malloc_and_print(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    void *m = malloc(1000);
    FILE *f = fopen("/dev/null", "w");
    if (!m || !f)
        return 1;
    fprintf(f, "hello");
    fclose(f);
    free(m);
    return 7;
}

static void test_threaded_parent(void)
{
    pthread_t t[2];
    atomic_store(&busy_stop, 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, busy_thread, NULL) == 0);
    int n = TEST_SANITIZED ? 10 : 60;
    crew_start_method safe[] = {CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < n; i++) {
            crew_exit st = run(task_malloc_and_print, NULL, 0, safe[m]);
            CHECK_EQ(st.code, 7);
        }
    atomic_store(&busy_stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
}

/* ---- a fork child whose stdout lock was held at fork time ---- */
static int g_hold_go[2], g_hold_release[2];

static void *hold_stdout(void *u)
{
    (void)u;
    flockfile(stdout);
    char c = 'h';
    CHECK(write(g_hold_go[1], &c, 1) == 1);
    CHECK(read(g_hold_release[0], &c, 1) == 1);
    funlockfile(stdout);
    return NULL;
}

static int task_buffered_output(void *arg, size_t len)
{
    (void)arg, (void)len;
    putc_unlocked('.', stdout); /* pending output, written without the lock */
    return 3;
}

/* Another thread holds the stdout lock across the fork: that thread does
 * not exist in the child, and the child's exit flush must not hang on its
 * lock (glibc's fork resets every stream lock in the child; this checks
 * that crew's exit path keeps relying on nothing more). */
static void test_fork_stdio_lock_held(void)
{
    fflush(stdout);
    CHECK(pipe(g_hold_go) == 0 && pipe(g_hold_release) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, hold_stdout, NULL) == 0);
    char c;
    CHECK(read(g_hold_go[0], &c, 1) == 1); /* the lock is held now */
    crew_process_options o = {0};
    o.method = CREW_START_FORK;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_buffered_output, NULL, 0, &o));
    crew_exit st;
    CHECK_OK(crew_process_join(p, 20.0, &st)); /* it used to hang in fflush */
    CHECK_EQ(st.code, 3);
    crew_process_destroy(p);
    CHECK(write(g_hold_release[1], "r", 1) == 1);
    pthread_join(t, NULL);
    close(g_hold_go[0]), close(g_hold_go[1]), close(g_hold_release[0]), close(g_hold_release[1]);
}

/* ---- a child started from a thread that has exited ---- */
static void *start_from_thread(void *u)
{
    crew_process **out = u;
    crew_process_options o = {0}; /* default: forkserver */
    int pfd = -1;
    (void)pfd;
    CHECK_OK(crew_process_start(out, task_exit_code, &(int){0}, sizeof(int), &o));
    return NULL;
}

static int task_wait_byte(void *arg, size_t len)
{
    CHECK(len == sizeof(int));
    char c;
    return read(*(int *)arg, &c, 1) == 1 ? 5 : 6;
}

typedef struct waiter_start {
    int fd;
    crew_start_method method;
} waiter_start;

static void *start_waiter_from_thread(void *u)
{
    waiter_start *w = u;
    crew_process_options o = {0};
    o.method = w->method;
    o.pass_fds = &w->fd;
    o.n_pass_fds = 1;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_wait_byte, &w->fd, sizeof w->fd, &o));
    return p;
}

/* Spawn and forkserver children survive the exit of the thread that
 * started them: they are exec'd by crew's keeper thread (Linux ties the
 * death signal to the parent *thread*), which lives as long as the process. */
static void test_thread_exit_default_survives(void)
{
    crew_process *p = NULL;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, start_from_thread, &p) == 0);
    pthread_join(t, NULL);
    crew_exit st;
    CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
    CHECK_EQ(st.code, 0);
    CHECK_OK(crew_process_destroy(p));

    crew_start_method ms[] = {CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int i = 0; i < 2; i++) {
        int pfd[2];
        CHECK(pipe2(pfd, O_CLOEXEC) == 0);
        waiter_start w = {pfd[0], ms[i]};
        void *r;
        CHECK(pthread_create(&t, NULL, start_waiter_from_thread, &w) == 0);
        pthread_join(t, &r);
        p = r;
        /* The starting thread is gone; the child still waits for its byte. */
        CHECK(write(pfd[1], "x", 1) == 1);
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        if (st.signal != 0 || st.code != 5)
            TEST_FAIL("%s: code %d signal %d", method_name(ms[i]), st.code, st.signal);
        CHECK_OK(crew_process_destroy(p));
        close(pfd[0]);
        close(pfd[1]);
    }
}

/* ---- concurrent joiners agree ---- */
static void *joiner(void *u)
{
    crew_exit *st = malloc(sizeof *st);
    CHECK(st);
    CHECK_OK(crew_process_join(u, CREW_FOREVER, st));
    return st;
}

static void test_concurrent_join(void)
{
    int pfd[2];
    CHECK(pipe2(pfd, O_CLOEXEC) == 0);
    crew_process_options o = {0};
    o.method = CREW_START_FORK;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_wait_byte, &pfd[0], sizeof pfd[0], &o));
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, joiner, p) == 0);
    CHECK(write(pfd[1], "x", 1) == 1);
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        crew_exit *st = r;
        CHECK_EQ(st->code, 5);
        free(st);
    }
    CHECK_OK(crew_process_destroy(p));
    close(pfd[0]);
    close(pfd[1]);
}

/* ---- forkserver restarts after being killed from outside ---- */
static void test_forkserver_restart(void)
{
    CHECK_OK(crew_forkserver_start());
    pid_t fs = crew_forkserver_pid();
    CHECK(fs > 0);
    CHECK_OK(crew_forkserver_start()); /* idempotent */
    CHECK_EQ(crew_forkserver_pid(), fs);
    CHECK(kill(fs, SIGKILL) == 0);
    crew_exit st = run(task_exit_code, &(int){9}, sizeof(int), CREW_START_FORKSERVER);
    CHECK_EQ(st.code, 9);
    CHECK(crew_forkserver_pid() != fs);
    CHECK(crew_forkserver_pid() > 0);
    CHECK_OK(crew_forkserver_stop());
    CHECK_EQ(crew_forkserver_pid(), 0);
    CHECK(waitpid(fs, NULL, WNOHANG) < 0 && errno == ECHILD); /* reaped */
}

/* ---- allocation failures are CREW_ENOMEM and leave nothing behind ---- */
static void test_allocation_failures(void)
{
    CHECK_OK(crew_forkserver_start());
    int fds = test_count_fds(), kids = test_count_children();
    crew_start_method ms[] = {CREW_START_FORK, CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int m = 0; m < 3; m++) {
        bool started = false;
        for (int budget = 0; budget < 50 && !started; budget++) {
            test_alloc_fail_after(budget);
            crew_process_options o = {0};
            o.method = ms[m];
            crew_process *p = NULL;
            int rc = crew_process_start(&p, task_exit_code, &(int){4}, sizeof(int), &o);
            test_alloc_restore();
            if (rc == 0) {
                crew_exit st;
                CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
                CHECK_EQ(st.code, 4);
                CHECK_OK(crew_process_destroy(p));
                started = true;
            } else {
                if (rc != CREW_ENOMEM)
                    TEST_FAIL("%s, budget %d: %s", method_name(ms[m]), budget, crew_err_name(rc));
                CHECK(p == NULL);
            }
            CHECK_EQ(test_count_fds(), fds);
            CHECK_EQ(test_count_children(), kids);
        }
        CHECK(started);
    }
}

static const test_case cases[] = {
    TEST_CASE(test_exit_codes),
    TEST_CASE(test_signals),
    TEST_CASE(test_join_timeout_and_kill),
    TEST_CASE(test_destroy_running),
    TEST_CASE(test_arguments),
    TEST_CASE(test_bad_arguments),
    TEST_CASE(test_unresolvable_function),
    TEST_CASE(test_exec_failure),
    TEST_CASE(test_pass_fds),
    TEST_CASE(test_names),
    TEST_CASE(test_threaded_parent),
    TEST_CASE(test_fork_stdio_lock_held),
    TEST_CASE(test_thread_exit_default_survives),
    TEST_CASE(test_concurrent_join),
    TEST_CASE(test_forkserver_restart),
    TEST_CASE(test_allocation_failures),
};
TEST_MAIN_NOHELPERS(cases)
