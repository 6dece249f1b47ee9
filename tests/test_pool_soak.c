/* Soak for the thread backend: 1,000,000 tiny tasks (fewer under
 * sanitizers) with, at random, task errors, cancels racing with the
 * workers, cooperative timeouts, handles dropped before completion and
 * callbacks. Every task must end in exactly one final status, once; the
 * per-status counts from callbacks, from the futures and from the pool's
 * stats must all agree; nothing leaks (fds here, memory under ASan). */
// CREW_TEST_TIMEOUT 300
#include "crew_test.h"

#include <stdatomic.h>

#if TEST_SANITIZED
#define SOAK_TASKS 100000L /* sanitizers are 5-20x slower */
#else
#define SOAK_TASKS 1000000L
#endif
#define WINDOW 4096

enum { K_OK, K_FAIL, K_HANG, K_NKINDS };
enum { S_OK, S_EIO, S_CANCELED, S_TIMEDOUT, S_NSTATUS };

static atomic_long cb_count[S_NSTATUS];
static atomic_long cb_total;

static int sidx(int status)
{
    switch (status) {
    case 0: return S_OK;
    case CREW_EIO: return S_EIO;
    case CREW_ECANCELED: return S_CANCELED;
    case CREW_ETIMEDOUT: return S_TIMEDOUT;
    }
    TEST_FAIL("unexpected status %s", crew_err_name(status));
}

static int task(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    unsigned char kind = *(const unsigned char *)a;
    if (kind == K_FAIL)
        return CREW_EIO;
    if (kind == K_HANG) {
        while (!crew_task_cancelled(t)) /* ends by cancel or the 5 ms deadline */
            ;
        return 0;
    }
    *(long *)r = 7;
    *rl = sizeof(long);
    return 0;
}

static void on_done(crew_future *f, void *data)
{
    atomic_fetch_add(&cb_count[sidx(crew_future_status(f))], 1);
    atomic_fetch_add(&cb_total, 1);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_soak(void)
{
    int fds0 = test_count_fds();
    crew_pool_options o = {0};
    o.task_timeout = 0.005;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    static crew_future *fs[WINDOW];
    long seen[S_NSTATUS] = {0}, dropped = 0, submitted = 0;
    for (long base = 0; base < SOAK_TASKS; base += WINDOW) {
        int n = 0;
        for (long i = base; i < base + WINDOW && i < SOAK_TASKS; i++) {
            uint64_t r = xorshift();
            unsigned char kind = r % 1000 == 0 ? K_FAIL : r % 100000 == 1 ? K_HANG : K_OK;
            crew_future *f;
            CHECK_OK(crew_pool_submit(p, task, &kind, 1, &f));
            submitted++;
            if ((r >> 20) % 7 <= 1) /* about 2 in 7 get a completion callback */
                CHECK_OK(crew_future_on_done(f, on_done, NULL));
            if ((r >> 30) % 500 == 0) {
                int c = crew_future_cancel(f);
                CHECK(c == 0 || c == CREW_ESTATE);
            }
            if ((r >> 40) % 300 == 0 && (r >> 20) % 7 <= 1) {
                CHECK_OK(crew_future_destroy(f)); /* its callback still reports it */
                dropped++;
                continue;
            }
            fs[n++] = f;
        }
        CHECK_OK(crew_wait_all(fs, (size_t)n, CREW_FOREVER));
        for (int k = 0; k < n; k++) {
            seen[sidx(crew_future_status(fs[k]))]++;
            CHECK_ERR(crew_future_cancel(fs[k]), CREW_ESTATE);
            CHECK_OK(crew_future_destroy(fs[k]));
        }
    }
    CHECK_OK(crew_pool_shutdown(p, 0)); /* dropped ones are done too now */
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    CHECK_EQ(st.submitted, (uint64_t)submitted);
    CHECK_EQ(st.completed + st.failed + st.canceled + st.timed_out, (uint64_t)submitted);
    CHECK_EQ(st.crashed, 0);
    /* Futures we kept agree with the stats minus the dropped ones, which
     * the callbacks saw. */
    long kept = seen[S_OK] + seen[S_EIO] + seen[S_CANCELED] + seen[S_TIMEDOUT];
    CHECK_EQ(kept + dropped, submitted);
    CHECK(atomic_load(&cb_total) >= dropped);
    CHECK(seen[S_OK] <= (long)st.completed);
    CHECK(seen[S_EIO] <= (long)st.failed && st.failed > 0);
    CHECK(seen[S_CANCELED] <= (long)st.canceled);
    CHECK(seen[S_TIMEDOUT] <= (long)st.timed_out);
    CHECK(st.canceled > 0);
    printf("# %ld tasks: ok %lu, failed %lu, canceled %lu, timed out %lu, dropped %ld\n",
           submitted, (unsigned long)st.completed, (unsigned long)st.failed,
           (unsigned long)st.canceled, (unsigned long)st.timed_out, dropped);
    CHECK_OK(crew_pool_destroy(p));
    CHECK_EQ(test_count_fds(), fds0);
}

static const test_case cases[] = {TEST_CASE(test_soak)};
TEST_MAIN_NOHELPERS(cases)
