/* crew_thread: start, join (results, timeouts), detach, destroy, names,
 * stack sizes, misuse errors, and creation failures under resource limits. */
#include "crew_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>


static int count_tasks(void) { return test_count_dir("/proc/self/task"); }

/* pthread_join returns once the thread has stopped running user code, a
 * moment before the kernel removes it from /proc/self/task: wait (without
 * sleeping, bounded) until the count is back to `n` -- or below it: a
 * baseline taken just after an earlier case's join may still count that
 * case's last thread, which then vanishes (it failed CI once so). "No
 * thread left behind" is count <= baseline. */
static void check_tasks_back_to(int n)
{
    double end = crew_now() + 10;
    while (count_tasks() > n && crew_now() < end)
        sched_yield();
    CHECK(count_tasks() <= n);
}

static void *add_one(void *arg) { return (void *)((intptr_t)arg + 1); }

static void test_start_join_result(void)
{
    crew_thread *t[8];
    /* A first thread may start runtime helpers (TSan's background thread):
     * take the baseline after it. */
    CHECK_OK(crew_thread_start(&t[0], add_one, NULL, NULL));
    CHECK_OK(crew_thread_destroy(t[0]));
    int tasks = count_tasks();
    for (intptr_t i = 0; i < 8; i++)
        CHECK_OK(crew_thread_start(&t[i], add_one, (void *)i, NULL));
    for (intptr_t i = 0; i < 8; i++) {
        void *r = NULL;
        CHECK_OK(crew_thread_join(t[i], CREW_FOREVER, &r));
        CHECK_EQ((intptr_t)r, i + 1);
        CHECK_OK(crew_thread_destroy(t[i]));
    }
    check_tasks_back_to(tasks); /* every thread reaped */
}

static void test_bad_args(void)
{
    crew_thread *t = (crew_thread *)0x1;
    CHECK_ERR(crew_thread_start(&t, NULL, NULL, NULL), CREW_EINVAL);
    CHECK(t == (crew_thread *)0x1); /* untouched on failure */
    CHECK_ERR(crew_thread_start(NULL, add_one, NULL, NULL), CREW_EINVAL);
    CHECK_ERR(crew_thread_join(NULL, CREW_FOREVER, NULL), CREW_EINVAL);
    CHECK_ERR(crew_thread_detach(NULL), CREW_EINVAL);
    CHECK_ERR(crew_thread_destroy(NULL), CREW_EINVAL);
    crew_thread_options o = {.stack_size = 1024}; /* below PTHREAD_STACK_MIN */
    CHECK_ERR(crew_thread_start(&t, add_one, NULL, &o), CREW_EINVAL);
}

static void *set_event(void *arg)
{
    CHECK_OK(crew_event_set(arg));
    return NULL;
}

static void test_join_twice_and_detached(void)
{
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, add_one, NULL, NULL));
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, NULL));
    CHECK_ERR(crew_thread_join(t, CREW_FOREVER, NULL), CREW_ESTATE);
    CHECK_ERR(crew_thread_detach(t), CREW_ESTATE);
    CHECK_OK(crew_thread_destroy(t));

    crew_event done;
    CHECK_OK(crew_event_init(&done));
    CHECK_OK(crew_thread_start(&t, set_event, &done, NULL));
    CHECK_OK(crew_thread_detach(t));
    CHECK_ERR(crew_thread_detach(t), CREW_ESTATE);
    CHECK_ERR(crew_thread_join(t, CREW_FOREVER, NULL), CREW_ESTATE);
    CHECK_ERR(crew_thread_join(t, 0, NULL), CREW_ESTATE);
    CHECK_OK(crew_thread_destroy(t)); /* the thread may still run: it owns a reference */
    CHECK_OK(crew_event_wait(&done, 10));
}

/* A thread that tries to join and destroy its own handle. */
typedef struct self_ctx {
    crew_thread *_Atomic me;
    crew_event go;
    int join_rc, destroy_rc;
} self_ctx;

static void *join_self(void *arg)
{
    self_ctx *c = arg;
    CHECK_OK(crew_event_wait(&c->go, 10));
    c->join_rc = crew_thread_join(c->me, CREW_FOREVER, NULL);
    c->destroy_rc = crew_thread_destroy(c->me);
    return NULL;
}

static void test_join_self(void)
{
    self_ctx c;
    CHECK_OK(crew_event_init(&c.go));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, join_self, &c, NULL));
    c.me = t;
    CHECK_OK(crew_event_set(&c.go));
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, NULL));
    CHECK_ERR(c.join_rc, CREW_EDEADLK);
    CHECK_ERR(c.destroy_rc, CREW_EDEADLK);
    CHECK_OK(crew_thread_destroy(t));
}

static void *wait_event(void *arg)
{
    CHECK_OK(crew_event_wait(arg, CREW_FOREVER));
    return (void *)42;
}

static void test_join_timeout(void)
{
    crew_event ev;
    CHECK_OK(crew_event_init(&ev));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, wait_event, &ev, NULL));
    CHECK_ERR(crew_thread_join(t, 0, NULL), CREW_ETIMEDOUT);
    double t0 = crew_now();
    CHECK_ERR(crew_thread_join(t, 0.05, NULL), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    /* still joinable after a timeout */
    CHECK_OK(crew_event_set(&ev));
    void *r = NULL;
    CHECK_OK(crew_thread_join(t, 10.0, &r));
    CHECK_EQ((intptr_t)r, 42);
    CHECK_ERR(crew_thread_join(t, 10.0, NULL), CREW_ESTATE);
    CHECK_OK(crew_thread_destroy(t));
}

static void *exit_early(void *arg)
{
    pthread_exit(arg);
    return NULL;
}

static void test_pthread_exit_timed_join(void)
{
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, exit_early, (void *)7, NULL));
    void *r = NULL;
    CHECK_OK(crew_thread_join(t, 10.0, &r));
    CHECK_EQ((intptr_t)r, 7);
    CHECK_OK(crew_thread_destroy(t));
}

static void test_destroy_joins(void)
{
    /* The baseline after a first thread, as in test_start_join_result: in a
     * fresh process it starts TSan's background thread, which stays. */
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, add_one, NULL, NULL));
    CHECK_OK(crew_thread_destroy(t));
    int tasks = count_tasks();
    crew_event ev;
    CHECK_OK(crew_event_init(&ev));
    CHECK_OK(crew_thread_start(&t, wait_event, &ev, NULL));
    CHECK_OK(crew_event_set(&ev));
    CHECK_OK(crew_thread_destroy(t)); /* joins: no thread left behind */
    check_tasks_back_to(tasks);
}

static void *get_name(void *arg)
{
    char *buf = arg;
    CHECK(prctl(PR_GET_NAME, buf, 0, 0, 0) == 0);
    return NULL;
}

static void test_name(void)
{
    char buf[32] = {0};
    crew_thread *t;
    crew_thread_options o = {.name = "worker-with-a-very-long-name"};
    CHECK_OK(crew_thread_start(&t, get_name, buf, &o));
    CHECK_OK(crew_thread_destroy(t));
    CHECK(strcmp(buf, "worker-with-a-v") == 0); /* 15 bytes kept */
    o.name = "short";
    CHECK_OK(crew_thread_start(&t, get_name, buf, &o));
    CHECK_OK(crew_thread_destroy(t));
    CHECK(strcmp(buf, "short") == 0);
}

static void *stack_size_of(void *arg)
{
    pthread_attr_t a;
    CHECK(pthread_getattr_np(pthread_self(), &a) == 0);
    size_t sz = 0;
    CHECK(pthread_attr_getstacksize(&a, &sz) == 0);
    pthread_attr_destroy(&a);
    *(size_t *)arg = sz;
    return NULL;
}

static void test_stack_size(void)
{
    size_t got = 0;
    crew_thread *t;
    crew_thread_options o = {.stack_size = 256 * 1024};
    CHECK_OK(crew_thread_start(&t, stack_size_of, &got, &o));
    CHECK_OK(crew_thread_destroy(t));
    /* at least what was asked, and not the 8 MiB default (sanitizers may
     * add some room of their own) */
    CHECK(got >= 256 * 1024 && got < 4096 * 1024);
}

static void test_huge_stack_eagain(void)
{
    /* 64 TiB of stack cannot be mapped: pthread_create fails with EAGAIN. */
    crew_thread *t = NULL;
    crew_thread_options o = {.stack_size = (size_t)1 << 46};
    int fds = test_count_fds();
    CHECK_ERR(crew_thread_start(&t, add_one, NULL, &o), CREW_EAGAIN);
    CHECK(t == NULL);
    CHECK_EQ(test_count_fds(), fds);
}

static int helper_rlimit_as(int argc, char **argv)
{
    /* Leave no room for another 8 MiB stack; pthread_create must fail and
     * crew must say CREW_EAGAIN, not crash. */
    crew_thread *t;
    /* No thread before this one: glibc would cache its stack for reuse. */
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    unsigned long pages = 0;
    CHECK(fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = pages * (unsigned long)sysconf(_SC_PAGESIZE) + (1 << 20);
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    int rc = crew_thread_start(&t, add_one, NULL, NULL);
    if (rc == 0)
        return 2;
    return rc == CREW_EAGAIN ? 0 : 3;
}

static void test_rlimit_eagain(void)
{
    /* ASan and TSan reserve terabytes of address space at start, so a tight
     * RLIMIT_AS would break the sanitizer itself: skip there. */
    if (TEST_SANITIZED)
        return;
    int st = test_wait(test_spawn_helper("helper_rlimit_as", NULL));
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}


static void test_enomem(void)
{
    test_alloc_fail_after(0);
    crew_thread *t = NULL;
    CHECK_ERR(crew_thread_start(&t, add_one, NULL, NULL), CREW_ENOMEM);
    CHECK(t == NULL);
    test_alloc_restore();
}

static void *report_tid(void *arg)
{
    *(uint32_t *)arg = crew_thread_self_id();
    CHECK_EQ(crew_thread_self_id(), (uint32_t)syscall(SYS_gettid));
    return NULL;
}

static void test_self_id(void)
{
    uint32_t tid = 0;
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, report_tid, &tid, NULL));
    CHECK_OK(crew_thread_destroy(t));
    CHECK(tid != 0 && tid != crew_thread_self_id());
    CHECK_EQ(crew_thread_self_id(), (uint32_t)getpid());
}

/* Many short threads, joined with a mix of timed and untimed joins, some
 * detached: every one accounted for. */
static _Atomic int ran;
static void *count_run(void *arg)
{
    atomic_fetch_add(&ran, 1);
    return arg;
}

static void test_churn(void)
{
    int n = TEST_SANITIZED ? 100 : 1000;
    int tasks = count_tasks();
    atomic_store(&ran, 0);
    int detached = 0;
    for (int i = 0; i < n; i++) {
        crew_thread *t;
        CHECK_OK(crew_thread_start(&t, count_run, (void *)(intptr_t)i, NULL));
        if (i % 7 == 0) {
            CHECK_OK(crew_thread_detach(t));
            detached++;
        } else {
            void *r;
            CHECK_OK(crew_thread_join(t, i % 2 ? 10.0 : CREW_FOREVER, &r));
            CHECK_EQ((intptr_t)r, i);
        }
        CHECK_OK(crew_thread_destroy(t));
    }
    (void)tasks;
    (void)detached;
    /* Detached threads may still be exiting; the joined ones have run. */
    CHECK(atomic_load(&ran) >= n - detached);
}

static const test_case cases[] = {
    /* First: crew_set_allocator is to be called before other threads run
     * (a detached thread of a later case frees its handle when it ends). */
    TEST_CASE(test_enomem),
    TEST_CASE(test_start_join_result),
    TEST_CASE(test_bad_args),
    TEST_CASE(test_join_twice_and_detached),
    TEST_CASE(test_join_self),
    TEST_CASE(test_join_timeout),
    TEST_CASE(test_pthread_exit_timed_join),
    TEST_CASE(test_destroy_joins),
    TEST_CASE(test_name),
    TEST_CASE(test_stack_size),
    TEST_CASE(test_huge_stack_eagain),
    TEST_CASE(test_rlimit_eagain),
    TEST_CASE(test_self_id),
    TEST_CASE(test_churn),
};
static const test_helper helpers[] = {TEST_HELPER(helper_rlimit_as)};
TEST_MAIN(cases, helpers)
