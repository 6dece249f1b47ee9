/*
 * crew_test.h -- the assertion kit, the helper processes and the runner
 * every test uses.
 *
 * - CHECK* macros stay on in release builds and end the case with a message
 *   naming the file, line and (for crew calls) the status name.
 * - The runner, after libuv's: main() calls test_main(argc, argv, cases,
 *   helpers), which runs each case in a child process of its own -- the
 *   leader of its own process group -- under the case's own timeout, and
 *   prints "ok - name" or "not ok - name (exit code N)", "(killed by SIGX)",
 *   "(timed out after N s)" for each, then "N passed, M failed"; it exits 1
 *   if any case failed. So a crash, a failed CHECK or a hang fails that case
 *   alone and the next one still runs. A case that times out is SIGKILLed
 *   with its whole process group (the helpers it started die with it), and
 *   the runner, a child subreaper, kills and reaps whatever a case leaves
 *   behind, so no zombie or orphan outlives the case.
 * - Cases share nothing: each one starts as a fresh fork of the runner,
 *   which has not called crew, and must not count on what an earlier case
 *   did.
 * - Timeouts: a case may run 30 s, or what the file's "// CREW_TEST_TIMEOUT
 *   n" line says, or its own TEST_CASE_TIMEOUT(fn, n), times
 *   CREW_TEST_TIMEOUT_SCALE (3 under a sanitizer). cmake/CrewTest.cmake
 *   gives the file a CTest timeout above the sum of its cases' timeouts, so
 *   CTest never kills the runner before it reports; the runner checks that
 *   (CREW_TEST_CTEST_TIMEOUT) and refuses to run otherwise.
 * - Debugging: "test_x name" runs that one case in this process (no fork,
 *   so gdb and rr follow it); CREW_TEST_NOFORK=1 runs every case in this
 *   process in order, the first failure ending the run (the old runner);
 *   CREW_TEST_WATCHDOG=n replaces every case's timeout by n seconds (0: no
 *   limit). In this process the timeout is a watchdog (test_watchdog:
 *   SIGALRM aborts); a case may also arm one itself, as an inner guard.
 * - Helper processes come from re-running the test binary itself:
 *   test_spawn_helper("name", args...) starts /proc/self/exe --crew-helper
 *   name args..., and main dispatches to the helper of that name.
 * - Leak probes: open fds, memory mappings and child processes of this
 *   process -- the case's, so the runner's own children never count as a
 *   case's leak -- read from /proc.
 *
 * No sleep is used as synchronisation: tests wait on pipes, crew objects or
 * waitpid, and a deadlock is caught by the case's timeout.
 */
#ifndef CREW_TEST_H
#define CREW_TEST_H

#include <crew.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_FAIL(...)                                                         \
    do {                                                                       \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                   \
        fprintf(stderr, __VA_ARGS__);                                          \
        fprintf(stderr, "\n");                                                 \
        fflush(stderr);                                                        \
        abort();                                                               \
    } while (0)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            TEST_FAIL("CHECK(%s)", #cond);                                     \
    } while (0)

/* A crew call that must succeed. */
#define CHECK_OK(call)                                                         \
    do {                                                                       \
        int check_ok_rc_ = (call);                                             \
        if (check_ok_rc_ != 0)                                                 \
            TEST_FAIL("%s returned %s (%s)", #call, crew_err_name(check_ok_rc_),   \
                      crew_strerror(check_ok_rc_));                            \
    } while (0)

/* A crew call that must fail with exactly `want`. */
#define CHECK_ERR(call, want)                                                  \
    do {                                                                       \
        int check_err_rc_ = (call);                                            \
        if (check_err_rc_ != (want))                                           \
            TEST_FAIL("%s returned %s, expected %s", #call,                    \
                      crew_err_name(check_err_rc_), crew_err_name(want));      \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
        if (check_a_ != check_b_)                                              \
            TEST_FAIL("%s == %s: %lld != %lld", #a, #b, check_a_, check_b_);   \
    } while (0)

/* Loop sizes: n in a plain build, n/10 (at least 1) under a sanitizer, which
 * is 5-20x slower. */
#ifdef CREW_TEST_SANITIZED
#define TEST_SANITIZED 1
#else
#define TEST_SANITIZED 0
#endif
/* 1 under ThreadSanitizer, which does not support a multi-threaded
 * process that forks and then starts threads: the few cases that need it
 * are skipped there (and say why). */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifndef TEST_TSAN
#define TEST_TSAN 0
#endif

static inline long test_scale(long n)
{
    long m = TEST_SANITIZED ? n / 10 : n;
    return m > 0 ? m : 1;
}

typedef void (*test_case_fn)(void);
typedef struct test_case {
    const char *name;
    test_case_fn fn;
    unsigned timeout; /* seconds, before scaling; 0: the file's default */
} test_case;
#define TEST_CASE(fn) {#fn, fn, 0}
/* A case with a timeout of its own (cmake/CrewTest.cmake reads this form:
 * keep the seconds a plain number). */
#define TEST_CASE_TIMEOUT(fn, seconds) {#fn, fn, seconds}

typedef int (*test_helper_fn)(int argc, char **argv);
typedef struct test_helper {
    const char *name;
    test_helper_fn fn;
} test_helper;
#define TEST_HELPER(fn) {#fn, fn}

/* Start this binary again as helper `name` with extra string args (NULL
 * ended). Returns the child's pid; the caller must reap it. */
static inline pid_t test_spawn_helper(const char *name, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)"crew-test-helper";
    argv[n++] = (char *)"--crew-helper";
    argv[n++] = (char *)name;
    va_list ap;
    va_start(ap, name);
    const char *a;
    while (n < 31 && (a = va_arg(ap, const char *)) != NULL)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    CHECK(pid > 0);
    return pid;
}

/* Reap `pid` and return its raw wait status. */
static inline int test_wait(pid_t pid)
{
    int st = 0;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    CHECK(r == pid);
    return st;
}

static inline int test_count_dir(const char *path)
{
    DIR *d = opendir(path);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd, when counting /proc/self/fd */
}

/* Open file descriptors of this process. */
static inline int test_count_fds(void) { return test_count_dir("/proc/self/fd"); }

/* Mappings in /proc/self/maps. Under a sanitizer only shared mappings
 * ("rw-s": memfd regions, shared anonymous memory -- what crew's IPC makes)
 * are counted, because the sanitizer runtimes map shadow memory of their
 * own as the program touches new address ranges. */
static inline int test_count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    int n = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char perms[8] = "";
        if (!TEST_SANITIZED || (sscanf(line, "%*s %7s", perms) == 1 && perms[3] == 's'))
            n++;
    }
    fclose(f);
    return n;
}

/* memfd mappings of this process (what pools, queues and crew_shm regions
 * map): unlike test_count_maps, thread stacks and malloc arenas glibc keeps
 * after a pool's threads end do not count. */
static inline int test_count_shm_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "/memfd:"))
            n++;
    fclose(f);
    return n;
}

/* Allocation-failure injection: test_alloc_fail_after(n) lets crew's next
 * n allocations succeed and fails every one after them (n = 0: all fail),
 * until test_alloc_restore() puts the default allocator back. */
static _Atomic long test_alloc_budget;
static inline void *test_budget_malloc(size_t n)
{
    return atomic_fetch_sub(&test_alloc_budget, 1) > 0 ? malloc(n) : NULL;
}
static inline void *test_budget_realloc(void *p, size_t n)
{
    return atomic_fetch_sub(&test_alloc_budget, 1) > 0 ? realloc(p, n) : NULL;
}
static inline void test_alloc_fail_after(long n)
{
    atomic_store(&test_alloc_budget, n);
    CHECK_OK(crew_set_allocator(test_budget_malloc, test_budget_realloc, free));
}
static inline void test_alloc_restore(void) { CHECK_OK(crew_set_allocator(NULL, NULL, NULL)); }

/* Children of this process, live or zombie (scans /proc/<pid>/stat): the
 * count, and the first `max` of their pids in `out`. */
static inline int test_list_children(pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    CHECK(d != NULL);
    int n = 0;
    pid_t me = getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')'); /* comm may contain spaces */
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == me) {
            if (n < max)
                out[n] = (pid_t)atoi(e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Live or zombie children of this process. */
static inline int test_count_children(void) { return test_list_children(NULL, 0); }

static inline void test_watchdog_handler(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog expired (deadlock?)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* Arms SIGALRM to abort the process after `seconds` (0: disarms it). The
 * runner arms it for a case it runs in its own process (argv[1],
 * CREW_TEST_NOFORK); a case may arm it as an inner guard, which ends the
 * case with a message and a core dump before the runner's timeout would
 * kill it. */
static inline void test_watchdog(unsigned seconds)
{
    signal(SIGALRM, test_watchdog_handler);
    alarm(seconds);
}

/* ---- the runner ---- */

/* A case's default timeout in seconds and the factor every timeout is
 * multiplied by: cmake/CrewTest.cmake passes both (the first from the
 * file's "// CREW_TEST_TIMEOUT n" line, the second under a sanitizer) and
 * computes the file's CTest timeout from the same numbers. */
#ifndef CREW_TEST_CASE_TIMEOUT
#define CREW_TEST_CASE_TIMEOUT 30
#endif
#ifndef CREW_TEST_TIMEOUT_SCALE
#define CREW_TEST_TIMEOUT_SCALE 1
#endif

/* Seconds case c may run (0: no limit). CREW_TEST_WATCHDOG, when set,
 * replaces every case's timeout (unscaled). */
static inline unsigned test_case_timeout(const test_case *c)
{
    const char *w = getenv("CREW_TEST_WATCHDOG");
    if (w && *w)
        return (unsigned)atoi(w);
    return (c->timeout ? c->timeout : CREW_TEST_CASE_TIMEOUT) * CREW_TEST_TIMEOUT_SCALE;
}

static inline double test_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline const char *test_signal_name(int sig)
{
    switch (sig) {
    case SIGABRT: return "SIGABRT";
    case SIGALRM: return "SIGALRM";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGHUP: return "SIGHUP";
    case SIGILL: return "SIGILL";
    case SIGINT: return "SIGINT";
    case SIGKILL: return "SIGKILL";
    case SIGPIPE: return "SIGPIPE";
    case SIGQUIT: return "SIGQUIT";
    case SIGSEGV: return "SIGSEGV";
    case SIGSYS: return "SIGSYS";
    case SIGTERM: return "SIGTERM";
    case SIGTRAP: return "SIGTRAP";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    default: return NULL;
    }
}

/* Runs case c in this process, under the watchdog. */
static inline void test_run_here(const test_case *c)
{
    test_watchdog(test_case_timeout(c));
    c->fn();
    alarm(0);
    printf("ok - %s\n", c->name);
    fflush(stdout);
}

/* The case process running now, for test_runner_signal. */
static volatile sig_atomic_t test_running_pid;

/* SIGINT, SIGTERM or SIGHUP sent to the runner: the case's process group is
 * not the terminal's, so take it down as well, then die of the signal. */
static inline void test_runner_signal(int sig)
{
    pid_t pid = (pid_t)test_running_pid;
    if (pid > 0)
        kill(-pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reaps case process `pid`, whose exit waitid(WNOWAIT) saw or whose time
 * ran out, and everything it left: first its process group is SIGKILLed
 * (the leader is not reaped yet, so the group id cannot have been reused),
 * then, round after round, every child of the runner -- as a child
 * subreaper the runner inherits the orphans of a case, also those that left
 * its group. Each process signalled is an unreaped child or group member,
 * so no pid is stale. Returns the case process's wait status. */
static inline int test_reap_case(pid_t pid, const sigset_t *chld)
{
    kill(-pid, SIGKILL);
    int st = test_wait(pid);
    for (;;) {
        pid_t kids[256];
        int n = test_list_children(kids, 256);
        for (int i = 0; i < n && i < 256; i++)
            kill(kids[i], SIGKILL);
        siginfo_t si;
        si.si_pid = 0;
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0) {
            if (errno == ECHILD)
                return st;
            continue; /* EINTR */
        }
        if (si.si_pid == 0) {
            /* The ones killed are still dying: their SIGCHLD ends this
             * wait; a fresh orphan (its parent just died) is not
             * announced, so look again after 0.1 s at the latest. */
            struct timespec ts = {0, 100 * 1000 * 1000};
            sigtimedwait(chld, NULL, &ts);
        }
    }
}

/* Runs case c in a child process that leads a process group of its own and
 * waits for it, at most its timeout, reaping on the way the orphans of
 * earlier generations that die (as init would). SIGCHLD is blocked in the
 * runner, so a child's exit between the look and the wait stays pending and
 * ends the wait. Returns the wait status; *timed_out says whether the
 * runner had to kill it. */
static inline int test_run_child(const test_case *c, const sigset_t *mask,
                                 const sigset_t *chld, int *timed_out)
{
    fflush(NULL);
    pid_t runner = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        /* If CTest (or anyone) kills the runner, the case goes too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != runner)
            _exit(126);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        sigprocmask(SIG_SETMASK, mask, NULL);
        c->fn();
        exit(0);
    }
    setpgid(pid, pid); /* on both sides: the group exists once fork returns */
    test_running_pid = pid;
    unsigned limit = test_case_timeout(c);
    double deadline = test_clock() + limit;
    *timed_out = 0;
    for (;;) {
        siginfo_t si;
        si.si_pid = 0;
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0) {
            if (si.si_pid == pid)
                break;
            waitpid(si.si_pid, NULL, 0);
            continue;
        }
        struct timespec ts, *tp = NULL;
        if (limit != 0) {
            double left = deadline - test_clock();
            if (left <= 0) {
                *timed_out = 1;
                break;
            }
            ts.tv_sec = (time_t)left;
            ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
            tp = &ts;
        }
        sigtimedwait(chld, NULL, tp);
    }
    int st = test_reap_case(pid, chld);
    test_running_pid = 0;
    return st;
}

/* Under CTest (which sets CREW_TEST_CTEST_TIMEOUT to the test's TIMEOUT):
 * 0 if the cases' timeouts leave CTest's with 10 s to spare, so the runner
 * always reports before CTest would kill it. Otherwise says why, and
 * returns 1 -- unless CREW_TEST_WATCHDOG set the timeouts by hand. */
static inline int test_check_budget(const test_case *cases, size_t ncases)
{
    const char *t = getenv("CREW_TEST_CTEST_TIMEOUT");
    if (!t || !*t)
        return 0;
    unsigned long sum = 0;
    int unlimited = 0;
    for (size_t i = 0; i < ncases; i++) {
        unsigned s = test_case_timeout(&cases[i]);
        unlimited |= s == 0;
        sum += s;
    }
    if (!unlimited && sum + 10 <= strtoul(t, NULL, 10))
        return 0;
    fprintf(stderr,
            "crew_test: the cases' timeouts add up to %s%lu s, more than CTest's TIMEOUT of %s s "
            "less 10: CTest would kill the runner before it reports (cmake/CrewTest.cmake "
            "computes the TIMEOUT from the TEST_CASE and TEST_CASE_TIMEOUT entries of the "
            "source: re-run cmake, or list every case with one of them)\n",
            unlimited ? "no limit, or " : "", sum, t);
    const char *w = getenv("CREW_TEST_WATCHDOG");
    return w && *w ? 0 : 1;
}

/* Runs every case in a process of its own and reports each. */
static inline int test_run_all(const test_case *cases, size_t ncases)
{
    if (test_check_budget(cases, ncases))
        return 1;
    /* Line-buffered, so a case's lines are out before it crashes. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGCHLD, SIG_DFL); /* SIG_IGN from our parent would reap for us */
    sigset_t chld, mask;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &mask);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    signal(SIGINT, test_runner_signal);
    signal(SIGTERM, test_runner_signal);
    signal(SIGHUP, test_runner_signal);
    size_t failed = 0;
    for (size_t i = 0; i < ncases; i++) {
        const test_case *c = &cases[i];
        int timed_out;
        int st = test_run_child(c, &mask, &chld, &timed_out);
        if (!timed_out && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok - %s\n", c->name);
            continue;
        }
        failed++;
        char why[80];
        if (timed_out) {
            snprintf(why, sizeof why, "timed out after %u s", test_case_timeout(c));
        } else if (WIFEXITED(st)) {
            snprintf(why, sizeof why, "exit code %d", WEXITSTATUS(st));
        } else {
            const char *name = test_signal_name(WTERMSIG(st));
            const char *core = WCOREDUMP(st) ? ", core dumped" : "";
            if (name)
                snprintf(why, sizeof why, "killed by %s%s", name, core);
            else
                snprintf(why, sizeof why, "killed by signal %d%s", WTERMSIG(st), core);
        }
        printf("not ok - %s (%s)\n", c->name, why);
    }
    printf("%zu passed, %zu failed\n", ncases - failed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

/* Runs a helper, one case in this process (argv[1] names it), every case in
 * this process (CREW_TEST_NOFORK) or every case in its own (the default);
 * returns the exit status. */
static inline int test_main(int argc, char **argv, const test_case *cases, size_t ncases,
                            const test_helper *helpers, size_t nhelpers)
{
    if (argc >= 3 && strcmp(argv[1], "--crew-helper") == 0) {
        for (size_t i = 0; i < nhelpers; i++)
            if (strcmp(helpers[i].name, argv[2]) == 0)
                return helpers[i].fn(argc - 3, argv + 3);
        fprintf(stderr, "no helper %s\n", argv[2]);
        return 127;
    }
    if (argc >= 2) {
        for (size_t i = 0; i < ncases; i++)
            if (strcmp(argv[1], cases[i].name) == 0) {
                test_run_here(&cases[i]);
                printf("1 passed, 0 failed\n");
                return 0;
            }
        fprintf(stderr, "no test case %s\n", argv[1]);
        return 1;
    }
    if (ncases == 0) {
        fprintf(stderr, "no test case ran\n");
        return 1;
    }
    const char *nofork = getenv("CREW_TEST_NOFORK");
    if (nofork && *nofork && strcmp(nofork, "0") != 0) {
        for (size_t i = 0; i < ncases; i++)
            test_run_here(&cases[i]);
        printf("%zu passed, 0 failed\n", ncases);
        return 0;
    }
    return test_run_all(cases, ncases);
}

#define TEST_MAIN(cases, helpers)                                              \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        return test_main(argc, argv, cases, sizeof cases / sizeof cases[0],    \
                         helpers, sizeof helpers / sizeof helpers[0]);         \
    }

#define TEST_MAIN_NOHELPERS(cases)                                             \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        return test_main(argc, argv, cases, sizeof cases / sizeof cases[0],    \
                         NULL, 0);                                             \
    }

#endif /* CREW_TEST_H */
