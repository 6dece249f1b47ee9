/*
 * crew_test.h -- the assertion and helper-process kit every test uses.
 *
 * - CHECK* macros stay on in release builds and end the test with a message
 *   naming the file, line and (for crew calls) the status name.
 * - Each test program runs its cases in order; main() calls
 *   test_main(argc, argv, cases, helpers): it arms a watchdog, runs the named
 *   case (argv[1]) or all of them, prints "ok - name" lines and a closing
 *   "N passed, 0 failed" line.
 * - Helper processes come from re-running the test binary itself:
 *   test_spawn_helper("name", args...) starts /proc/self/exe --crew-helper
 *   name args..., and main dispatches to the helper of that name.
 * - Leak probes: open fds, memory mappings and child processes of this
 *   process, read from /proc.
 *
 * No sleep is used as synchronisation: tests wait on pipes, crew objects or
 * waitpid, and a deadlock is caught by the watchdog (and by CTest's timeout).
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
#include <sys/wait.h>
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
} test_case;
#define TEST_CASE(fn) {#fn, fn}

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

/* Live or zombie children of this process (scans /proc/<pid>/stat). */
static inline int test_count_children(void)
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
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == me)
            n++;
    }
    closedir(d);
    return n;
}

static inline void test_watchdog_handler(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog expired (deadlock?)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* Arms SIGALRM to abort the test after `seconds`. */
static inline void test_watchdog(unsigned seconds)
{
    signal(SIGALRM, test_watchdog_handler);
    alarm(seconds);
}

/* Runs helper or cases; returns the process exit status. argv[1] may name
 * one case to run alone. The watchdog defaults to 50 s (CTest's own timeout
 * is the outer guard) and can be changed with CREW_TEST_WATCHDOG. */
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
    const char *w = getenv("CREW_TEST_WATCHDOG");
    test_watchdog(w ? (unsigned)atoi(w) : 50);
    size_t passed = 0;
    for (size_t i = 0; i < ncases; i++) {
        if (argc >= 2 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        cases[i].fn();
        printf("ok - %s\n", cases[i].name);
        fflush(stdout);
        passed++;
    }
    if (passed == 0) {
        fprintf(stderr, "no test case ran\n");
        return 1;
    }
    printf("%zu passed, 0 failed\n", passed);
    return 0;
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
