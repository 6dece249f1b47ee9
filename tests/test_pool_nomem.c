/* Allocation failure: with an allocator that fails on demand, every pool
 * call that allocates returns CREW_ENOMEM (or ends the future with it) and
 * leaves nothing behind (ASan's leak check runs at exit); after the
 * failures stop, the same pool keeps working. */
#include "crew_test.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>

static atomic_long fail_after = -1; /* -1: never fail; n: fail after n more */
static atomic_long n_failed;

static bool should_fail(void)
{
    long v = atomic_load(&fail_after);
    while (v >= 0) {
        if (v == 0) {
            atomic_fetch_add(&n_failed, 1);
            return true;
        }
        if (atomic_compare_exchange_weak(&fail_after, &v, v - 1))
            return false;
    }
    return false;
}
static void *t_malloc(size_t n) { return should_fail() ? NULL : malloc(n); }
static void *t_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n); }
static void t_free(void *p) { free(p); }

static int big_result(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    memset(r, 'r', 100);
    *rl = 100; /* more than fits inline: the copy into the future allocates */
    return 0;
}
static int noop(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    return 0;
}

static void test_create_nomem(void)
{
    /* Fail the k-th allocation of crew_pool_create for k = 0, 1, ... until
     * it succeeds: each failure is a clean CREW_ENOMEM. */
    int failures = 0;
    for (long k = 0; k < 200; k++) {
        crew_pool_options o = {0};
        o.workers = 3;
        crew_pool *p = NULL;
        atomic_store(&fail_after, k);
        int rc = crew_pool_create(&p, &o);
        atomic_store(&fail_after, -1);
        if (rc == 0) {
            CHECK_OK(crew_pool_destroy(p));
            break;
        }
        CHECK_ERR(rc, CREW_ENOMEM);
        CHECK(p == NULL);
        failures++;
    }
    CHECK(failures > 0);
}

static void test_submit_nomem(void)
{
    crew_pool_options o = {0};
    o.workers = 2;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    crew_future *f = NULL;
    /* The first submit of this thread needs a slab of futures. */
    atomic_store(&fail_after, 0);
    CHECK_ERR(crew_pool_submit(p, noop, NULL, 0, &f), CREW_ENOMEM);
    atomic_store(&fail_after, -1);
    CHECK_OK(crew_pool_submit(p, noop, NULL, 0, &f));
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    CHECK_OK(crew_future_destroy(f));
    /* An argument too big to store inline is copied to the heap. */
    char arg[200] = {0};
    atomic_store(&fail_after, 0);
    CHECK_ERR(crew_pool_submit(p, noop, arg, sizeof arg, &f), CREW_ENOMEM);
    atomic_store(&fail_after, -1);
    /* A result too big to store inline: the future ends CREW_ENOMEM. */
    CHECK_OK(crew_pool_submit(p, big_result, NULL, 0, &f));
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    CHECK_EQ(crew_future_status(f), 0);
    CHECK_OK(crew_future_destroy(f));
    crew_future *g;
    CHECK_OK(crew_pool_submit(p, noop, NULL, 0, &g)); /* warm: no allocation needed */
    CHECK_OK(crew_future_wait(g, CREW_FOREVER));
    CHECK_OK(crew_future_destroy(g));
    /* A map needs its descriptor. */
    atomic_store(&fail_after, 0);
    CHECK_ERR(crew_pool_map(p, noop, NULL, 0, NULL, 0, 10, NULL), CREW_ENOMEM);
    atomic_store(&fail_after, -1);
    CHECK_OK(crew_pool_map(p, noop, NULL, 0, NULL, 0, 10, NULL));
    /* A callback needs the future's extension block. */
    CHECK_OK(crew_pool_submit(p, noop, NULL, 0, &g));
    CHECK_OK(crew_future_wait(g, CREW_FOREVER));
    atomic_store(&fail_after, 0);
    CHECK_ERR(crew_future_notify(g, NULL), CREW_ENOMEM);
    atomic_store(&fail_after, -1);
    CHECK_OK(crew_future_destroy(g));
    CHECK_OK(crew_pool_destroy(p));
}

static void test_result_nomem(void)
{
    crew_pool_options o = {0};
    o.workers = 1;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    crew_future *f;
    CHECK_OK(crew_pool_submit(p, noop, NULL, 0, &f)); /* warm the future cache */
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    CHECK_OK(crew_future_destroy(f));
    /* Now the only allocation left for this task is the result copy. */
    atomic_store(&n_failed, 0);
    atomic_store(&fail_after, 0);
    CHECK_OK(crew_pool_submit(p, big_result, NULL, 0, &f));
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    atomic_store(&fail_after, -1);
    CHECK_EQ(atomic_load(&n_failed), 1);
    CHECK_EQ(crew_future_status(f), CREW_ENOMEM);
    const void *d;
    size_t len;
    CHECK_OK(crew_future_result(f, &d, &len));
    CHECK_EQ(len, 0);
    CHECK_OK(crew_future_destroy(f));
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.failed, 1);
    CHECK_OK(crew_pool_destroy(p));
}

/* Shared with the fork worker (mapped MAP_SHARED before the pool). */
static _Atomic int *g_go;

/* Map item (int32 i): item 1 crashes once the test says go; the others
 * succeed. */
static int item_crash_on_go(crew_task *t, const void *a, size_t al, void *r, size_t rc,
                            size_t *rl)
{
    int32_t i;
    memcpy(&i, a, sizeof i);
    if (i == 1) {
        while (!atomic_load(g_go))
            sched_yield();
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    return 0;
}

static void test_proc_chunk_death_nomem(void)
{
    /* A process worker dies inside a chunk while allocation fails: the
     * monitor cannot get the record that hands the unstarted items back to
     * the map, so they end CREW_ENOMEM -- reported, never dropped -- and
     * the map completes. Once allocation works again the pool replaces the
     * worker and runs tasks. */
    g_go = mmap(NULL, sizeof *g_go, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(g_go != MAP_FAILED);
    crew_pool_options o = {0};
    o.kind = CREW_PROCESSES;
    o.workers = 1;
    o.start_method = CREW_START_FORK;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    int32_t in[4] = {0, 1, 2, 3};
    int sts[4];
    crew_map_options mo = {.chunk_size = 4, .statuses = sts};
    crew_future *f;
    CHECK_OK(crew_pool_map_submit(p, item_crash_on_go, in, 4, NULL, 0, 4, &mo, &f));
    atomic_store(&n_failed, 0);
    atomic_store(&fail_after, 0);
    atomic_store(g_go, 1);
    CHECK_OK(crew_future_wait(f, 30));
    atomic_store(&fail_after, -1);
    CHECK(atomic_load(&n_failed) >= 1);
    CHECK_EQ(crew_future_status(f), CREW_ECRASHED);
    CHECK_EQ(sts[0], 0);
    CHECK_EQ(sts[1], CREW_ECRASHED);
    CHECK_EQ(sts[2], CREW_ENOMEM);
    CHECK_EQ(sts[3], CREW_ENOMEM);
    CHECK_OK(crew_future_destroy(f));
    crew_future *g;
    CHECK_OK(crew_pool_submit(p, noop, NULL, 0, &g));
    CHECK_OK(crew_future_wait(g, 30));
    CHECK_EQ(crew_future_status(g), 0);
    CHECK_OK(crew_future_destroy(g));
    CHECK_OK(crew_pool_destroy(p));
    munmap((void *)g_go, sizeof *g_go);
}

static const test_case cases[] = {
    TEST_CASE(test_create_nomem),
    TEST_CASE(test_submit_nomem),
    TEST_CASE(test_result_nomem),
    TEST_CASE(test_proc_chunk_death_nomem),
};

int main(int argc, char **argv)
{
    /* Installed once, before any other crew call. */
    CHECK_OK(crew_set_allocator(t_malloc, t_realloc, t_free));
    return test_main(argc, argv, cases, sizeof cases / sizeof cases[0], NULL, 0);
}
