/* The test runner of crew_test.h, tested on itself: each case here re-runs
 * this binary with CREW_TEST_RUNNER_DEMO naming a table of demo cases --
 * cases that pass, fail a CHECK, exit with a code, crash, hang, leave an
 * orphan -- and checks what the runner made of them: one line per case with
 * the right reason, the cases after a failure still run, each case in a
 * process (and process group) of its own, a hung case killed at its own
 * timeout together with the helper it started, an orphan that left the
 * case's group killed and reaped, the summary line, the exit status, and
 * the runner's refusal to start when CTest's timeout is too short. */
#include "crew_test.h"

#include <sys/mman.h>
#include <sys/resource.h>

/* ---- the demo cases (run only under CREW_TEST_RUNNER_DEMO) ---- */

static void demo_pass(void) {}

static void demo_check_fails(void) { CHECK(getpid() == 0); }

static void demo_exit_code(void) { exit(3); }

static void demo_segv(void)
{
    signal(SIGSEGV, SIG_DFL); /* a sanitizer would catch it otherwise */
    raise(SIGSEGV);
}

/* Blocks forever on a pipe whose write end it holds itself; only the
 * runner's timeout ends it. Starts a helper first (which blocks as well)
 * and says which processes to look for afterwards. */
static void demo_hang(void)
{
    pid_t helper = test_spawn_helper("helper_block", (char *)NULL);
    printf("hang case=%d helper=%d\n", (int)getpid(), (int)helper);
    fflush(stdout);
    int p[2];
    CHECK(pipe(p) == 0);
    char c;
    ssize_t r = read(p[0], &c, 1);
    TEST_FAIL("read on a pipe nobody writes returned %zd", r);
}

static void demo_after(void) {}

/* Each says where it ran. */
static void report(const char *name)
{
    printf("report %s pid=%d pgrp=%d ppid=%d\n", name, (int)getpid(), (int)getpgrp(),
           (int)getppid());
    fflush(stdout);
}
static void demo_report_a(void) { report("a"); }
static void demo_report_b(void) { report("b"); }

/* State one case leaves for the next: in a process of its own, the next
 * case never sees it. */
static int demo_state;
static void demo_state_set(void) { demo_state = 1; }
static void demo_state_unset(void) { CHECK_EQ(demo_state, 0); }

/* Starts a helper that leaves this case's process group and session, waits
 * until it has, and returns: the orphan is the runner's to kill and reap. */
static void demo_orphan(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    char fd[16];
    snprintf(fd, sizeof fd, "%d", p[1]);
    pid_t helper = test_spawn_helper("helper_escape", fd, (char *)NULL);
    close(p[1]);
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[0]);
    printf("orphan %d\n", (int)helper);
    fflush(stdout);
}

__attribute__((noreturn)) static int helper_block(int argc, char **argv)
{
    (void)argc, (void)argv;
    for (;;)
        pause();
}

__attribute__((noreturn)) static int helper_escape(int argc, char **argv)
{
    CHECK(argc == 1);
    CHECK(setsid() == getpid());
    CHECK(write(atoi(argv[0]), "x", 1) == 1);
    for (;;)
        pause();
}

static const test_case demo_mixed[] = {
    TEST_CASE(demo_pass),
    TEST_CASE(demo_check_fails),
    TEST_CASE(demo_exit_code),
    TEST_CASE(demo_segv),
    TEST_CASE_TIMEOUT(demo_hang, 1), /* short: only the timeout ends it */
    TEST_CASE(demo_after),
};
static const test_case demo_procs[] = {
    TEST_CASE(demo_report_a),
    TEST_CASE(demo_report_b),
    TEST_CASE(demo_state_set),
    TEST_CASE(demo_state_unset),
};
static const test_case demo_reports[] = {
    TEST_CASE(demo_report_a),
    TEST_CASE(demo_report_b),
};
static const test_case demo_orphans[] = {
    TEST_CASE(demo_orphan),
    TEST_CASE(demo_after),
};

/* ---- the checks ---- */

typedef struct sub_run {
    pid_t pid;
    int status;
    char out[8192], err[16384];
} sub_run;

static void read_all(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    CHECK(n >= 0);
    buf[n] = 0;
    close(fd);
}

/* Runs this binary on demo table `demo` (with case `arg`, if not NULL, and
 * up to two more NAME=value settings, NULL ended), its stdout and stderr in
 * memfds (which no leftover process could hold open past its end), no core
 * dumps. */
static void sub_run_demo(sub_run *r, const char *demo, const char *arg, const char *env1,
                         const char *env2)
{
    int out = memfd_create("runner-out", MFD_CLOEXEC);
    int err = memfd_create("runner-err", MFD_CLOEXEC);
    CHECK(out >= 0 && err >= 0);
    fflush(NULL);
    r->pid = fork();
    CHECK(r->pid >= 0);
    if (r->pid == 0) {
        dup2(out, 1);
        dup2(err, 2);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        setenv("CREW_TEST_RUNNER_DEMO", demo, 1);
        unsetenv("CREW_TEST_NOFORK");
        unsetenv("CREW_TEST_WATCHDOG");
        unsetenv("CREW_TEST_CTEST_TIMEOUT");
        if (env1)
            putenv((char *)env1);
        if (env2)
            putenv((char *)env2);
        execl("/proc/self/exe", "test_runner", arg, (char *)NULL);
        _exit(127);
    }
    r->status = test_wait(r->pid);
    read_all(out, r->out, sizeof r->out);
    read_all(err, r->err, sizeof r->err);
}

/* The line of r's stdout that starts with `prefix`, or NULL. */
static const char *line_with(const sub_run *r, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *l = r->out; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
        if (strncmp(l, prefix, n) == 0)
            return l;
    return NULL;
}

static const char *expect_line(const sub_run *r, const char *prefix)
{
    const char *l = line_with(r, prefix);
    if (!l)
        TEST_FAIL("no line \"%s\" in:\n%s\nstderr:\n%s", prefix, r->out, r->err);
    return l;
}

static int exit_code(const sub_run *r)
{
    if (!WIFEXITED(r->status))
        TEST_FAIL("the runner itself died (status %#x):\n%s\nstderr:\n%s", r->status, r->out,
                  r->err);
    return WEXITSTATUS(r->status);
}

static int gone(pid_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

static void test_failures_fail_alone(void)
{
    sub_run r;
    sub_run_demo(&r, "mixed", NULL, NULL, NULL);
    CHECK_EQ(exit_code(&r), 1);
    expect_line(&r, "ok - demo_pass\n");
    expect_line(&r, "not ok - demo_check_fails (killed by SIGABRT");
    CHECK(strstr(r.err, "FAIL ") && strstr(r.err, "CHECK(getpid() == 0)"));
    expect_line(&r, "not ok - demo_exit_code (exit code 3)\n");
    expect_line(&r, "not ok - demo_segv (killed by SIGSEGV");
    char want[128];
    snprintf(want, sizeof want, "not ok - demo_hang (timed out after %u s)\n",
             test_case_timeout(&demo_mixed[4]));
    expect_line(&r, want);
    expect_line(&r, "ok - demo_after\n"); /* the case after the hang ran */
    expect_line(&r, "2 passed, 4 failed\n");
    /* The case and the helper it started were killed together, and reaped:
     * once the runner is gone, neither pid exists. */
    const char *h = expect_line(&r, "hang ");
    int c, hp;
    CHECK(sscanf(h, "hang case=%d helper=%d", &c, &hp) == 2);
    CHECK(gone(c));
    CHECK(gone(hp));
}

static void test_each_case_in_its_own_process(void)
{
    sub_run r;
    sub_run_demo(&r, "procs", NULL, NULL, NULL);
    CHECK_EQ(exit_code(&r), 0);
    expect_line(&r, "ok - demo_state_set\n");
    expect_line(&r, "ok - demo_state_unset\n"); /* demo_state_set's write was not seen */
    expect_line(&r, "4 passed, 0 failed\n");
    int pid[2], pgrp[2], ppid[2];
    CHECK(sscanf(expect_line(&r, "report a"), "report a pid=%d pgrp=%d ppid=%d", &pid[0], &pgrp[0],
                 &ppid[0]) == 3);
    CHECK(sscanf(expect_line(&r, "report b"), "report b pid=%d pgrp=%d ppid=%d", &pid[1], &pgrp[1],
                 &ppid[1]) == 3);
    for (int i = 0; i < 2; i++) {
        CHECK(pid[i] != r.pid);   /* not the runner */
        CHECK_EQ(ppid[i], r.pid); /* but its child */
        CHECK_EQ(pgrp[i], pid[i]); /* leading its own process group */
    }
    CHECK(pid[0] != pid[1]);
}

static void test_debugging_runs_in_process(void)
{
    /* One case by name: in the runner's own process, so gdb follows it. */
    sub_run r;
    sub_run_demo(&r, "procs", "demo_report_b", NULL, NULL);
    CHECK_EQ(exit_code(&r), 0);
    int pid, pgrp, ppid;
    CHECK(sscanf(expect_line(&r, "report b"), "report b pid=%d pgrp=%d ppid=%d", &pid, &pgrp,
                 &ppid) == 3);
    CHECK_EQ(pid, r.pid);
    CHECK(line_with(&r, "report a") == NULL);
    expect_line(&r, "ok - demo_report_b\n");
    expect_line(&r, "1 passed, 0 failed\n");
    /* A failing case by name ends the process the way the case does. */
    sub_run_demo(&r, "mixed", "demo_exit_code", NULL, NULL);
    CHECK_EQ(exit_code(&r), 3);
    sub_run_demo(&r, "mixed", "no_such_case", NULL, NULL);
    CHECK_EQ(exit_code(&r), 1);
    /* CREW_TEST_NOFORK=1: every case, in order, in the runner's process. */
    sub_run_demo(&r, "reports", NULL, "CREW_TEST_NOFORK=1", NULL);
    CHECK_EQ(exit_code(&r), 0);
    CHECK(sscanf(expect_line(&r, "report a"), "report a pid=%d", &pid) == 1);
    CHECK_EQ(pid, r.pid);
    CHECK(sscanf(expect_line(&r, "report b"), "report b pid=%d", &pid) == 1);
    CHECK_EQ(pid, r.pid);
    expect_line(&r, "2 passed, 0 failed\n");
    /* ... where the first failure ends the run. */
    sub_run_demo(&r, "mixed", NULL, "CREW_TEST_NOFORK=1", NULL);
    CHECK(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT);
    expect_line(&r, "ok - demo_pass\n");
    CHECK(line_with(&r, "ok - demo_after") == NULL);
}

static void test_orphans_are_reaped(void)
{
    sub_run r;
    sub_run_demo(&r, "orphans", NULL, NULL, NULL);
    CHECK_EQ(exit_code(&r), 0);
    expect_line(&r, "ok - demo_orphan\n");
    expect_line(&r, "ok - demo_after\n");
    expect_line(&r, "2 passed, 0 failed\n");
    int orphan;
    CHECK(sscanf(expect_line(&r, "orphan "), "orphan %d", &orphan) == 1);
    CHECK(gone(orphan)); /* left the case's group, yet killed and reaped */
}

static void test_refuses_a_short_ctest_timeout(void)
{
    sub_run r;
    sub_run_demo(&r, "procs", NULL, "CREW_TEST_CTEST_TIMEOUT=5", NULL);
    CHECK_EQ(exit_code(&r), 1);
    CHECK(line_with(&r, "ok - ") == NULL); /* no case ran */
    CHECK(strstr(r.err, "CTest would kill the runner") != NULL);
    /* With every timeout set by hand, it warns and runs. */
    sub_run_demo(&r, "procs", NULL, "CREW_TEST_CTEST_TIMEOUT=5", "CREW_TEST_WATCHDOG=20");
    CHECK_EQ(exit_code(&r), 0);
    CHECK(strstr(r.err, "CTest would kill the runner") != NULL);
    expect_line(&r, "4 passed, 0 failed\n");
}

static const test_case cases[] = {
    TEST_CASE(test_failures_fail_alone),
    TEST_CASE(test_each_case_in_its_own_process),
    TEST_CASE(test_debugging_runs_in_process),
    TEST_CASE(test_orphans_are_reaped),
    TEST_CASE(test_refuses_a_short_ctest_timeout),
};
static const test_helper helpers[] = {
    TEST_HELPER(helper_block),
    TEST_HELPER(helper_escape),
};

#define RUN(table) test_main(argc, argv, table, sizeof table / sizeof table[0], helpers, \
                             sizeof helpers / sizeof helpers[0])

int main(int argc, char **argv)
{
    const char *demo = getenv("CREW_TEST_RUNNER_DEMO");
    if (!demo)
        return RUN(cases);
    if (strcmp(demo, "mixed") == 0)
        return RUN(demo_mixed);
    if (strcmp(demo, "procs") == 0)
        return RUN(demo_procs);
    if (strcmp(demo, "reports") == 0)
        return RUN(demo_reports);
    if (strcmp(demo, "orphans") == 0)
        return RUN(demo_orphans);
    fprintf(stderr, "no demo table %s\n", demo);
    return 1;
}
