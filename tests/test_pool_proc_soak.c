/* Soak: a million tasks on a process pool while, at random, about one in a
 * thousand crashes its worker (SIGSEGV), hangs past its deadline, or has its
 * worker SIGKILLed from outside (as the OOM killer would). Every task must
 * end in exactly one final status that matches what happened to it, the
 * counts must add up (test tally == pool stats == number of tasks), and
 * afterwards no process, fd or shared mapping may be left.
 * CREW_SOAK_TASKS overrides the number of tasks (default 1,000,000; 20,000
 * under a sanitizer). */
// CREW_TEST_LABEL stress
// CREW_TEST_TIMEOUT 600
#include "crew_test.h"

#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>

enum { NORMAL = 0, CRASH = 1, HANG = 2 };

typedef struct job {
    uint32_t kind;
    uint32_t pad;
    uint64_t x;
} job;

static int soak_task(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                     size_t *rl)
{
    (void)t, (void)len, (void)cap;
    job j;
    memcpy(&j, arg, sizeof j);
    if (j.kind == CRASH) {
        signal(SIGSEGV, SIG_DFL); /* sanitizers catch it otherwise */
        if (!TEST_SANITIZED) {
            volatile int *p = NULL;
            *p = 1;
        }
        raise(SIGSEGV);
    }
    if (j.kind == HANG)
        for (;;)
            pause();
    uint64_t y = j.x * 2654435761u + 1;
    memcpy(res, &y, sizeof y);
    *rl = sizeof y;
    return 0;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int count_children_except(pid_t skip)
{
    pid_t kids[256];
    size_t n = 0;
    CHECK_OK(crew_proc_children(0, 0, kids, 256, &n));
    int c = 0;
    for (size_t i = 0; i < n && i < 256; i++)
        if (kids[i] != skip)
            c++;
    return c;
}


/* SIGKILLs one random worker of ours, through a pidfd so that a pid reused
 * meanwhile is never hit. Returns 1 if a signal was sent. */
static int kill_random_worker(pid_t forkserver)
{
    pid_t kids[256];
    size_t n = 0;
    CHECK_OK(crew_proc_children(0, 0, kids, 256, &n));
    pid_t cand[256];
    size_t m = 0;
    for (size_t i = 0; i < n && i < 256; i++)
        if (kids[i] != forkserver)
            cand[m++] = kids[i];
    if (m == 0)
        return 0;
    pid_t victim = cand[rnd() % m];
    int pfd = (int)syscall(SYS_pidfd_open, victim, 0);
    if (pfd < 0)
        return 0;
    /* Still our child (and so not a recycled pid) now that we hold it? */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)victim);
    int sent = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid() &&
            state != 'Z')
            sent = syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) == 0;
    }
    close(pfd);
    return sent;
}

static void test_soak(void)
{
    long total = TEST_SANITIZED ? 20000 : 1000000;
    const char *env = getenv("CREW_SOAK_TASKS");
    if (env && atol(env) > 0)
        total = atol(env);
    CHECK_OK(crew_forkserver_start());
    pid_t fsv = crew_forkserver_pid();
    /* warm-up: glibc caches (thread stack, arenas) and lazy fds in place */
    {
        crew_pool_options o = {.kind = CREW_PROCESSES, .workers = 1};
        crew_pool *p;
        CHECK_OK(crew_pool_create(&p, &o));
        CHECK_OK(crew_pool_destroy(p));
    }
    int fds0 = test_count_fds(), maps0 = test_count_shm_maps(), kids0 = count_children_except(fsv);

    crew_pool_options o = {
        .kind = CREW_PROCESSES,
        .workers = 2,
        .task_timeout = 0.5, /* generous: no innocent task may reach it, even when loaded */
        .kill_grace = 0.02,
        .breaker_crashes = CREW_BREAKER_OFF, /* the soak crashes on purpose: never trip */
    };
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));

    enum { WINDOW = 4096 };
    static crew_future *fs[WINDOW];
    static job jobs[WINDOW];
    long n_ok = 0, n_crash_planned = 0, n_hang_planned = 0, n_kills = 0;
    long got_ok = 0, got_crashed = 0, got_timedout = 0, victims = 0, victims_normal = 0;
    double t0 = crew_now();
    for (long base = 0; base < total; base += WINDOW) {
        long n = total - base < WINDOW ? total - base : WINDOW;
        for (long i = 0; i < n; i++) {
            uint64_t r = rnd() % 10000;
            jobs[i].kind = r < 4 ? CRASH : r < 5 ? HANG : NORMAL;
            jobs[i].x = (uint64_t)(base + i);
            n_crash_planned += jobs[i].kind == CRASH;
            n_hang_planned += jobs[i].kind == HANG;
            n_ok += jobs[i].kind == NORMAL;
            CHECK_OK(crew_pool_submit(p, soak_task, &jobs[i], sizeof jobs[i], &fs[i]));
            if (rnd() % 2500 == 0)
                n_kills += kill_random_worker(fsv);
        }
        for (long i = 0; i < n; i++) {
            CHECK_OK(crew_future_wait(fs[i], 60));
            int st = crew_future_status(fs[i]);
            crew_failure fl;
            CHECK_OK(crew_future_failure(fs[i], &fl));
            CHECK_EQ(fl.task_id, crew_future_id(fs[i]));
            switch (jobs[i].kind) {
            case NORMAL:
                if (st == 0) {
                    const void *d;
                    size_t len;
                    CHECK_OK(crew_future_result(fs[i], &d, &len));
                    CHECK_EQ(len, 8);
                    uint64_t y;
                    memcpy(&y, d, 8);
                    CHECK(y == jobs[i].x * 2654435761u + 1);
                    got_ok++;
                } else {
                    /* only an outside SIGKILL may end an innocent task */
                    CHECK_EQ(st, CREW_ECRASHED);
                    CHECK_EQ(fl.signal, SIGKILL);
                    got_crashed++;
                    victims++;
                    victims_normal++;
                }
                break;
            case CRASH:
                CHECK_EQ(st, CREW_ECRASHED);
                CHECK(fl.signal == SIGSEGV || fl.signal == SIGKILL);
                victims += fl.signal == SIGKILL;
                got_crashed++;
                break;
            case HANG:
                if (st == CREW_ETIMEDOUT) {
                    CHECK(fl.signal == SIGTERM || fl.signal == SIGKILL);
                    got_timedout++;
                } else {
                    CHECK_EQ(st, CREW_ECRASHED); /* killed from outside first */
                    CHECK_EQ(fl.signal, SIGKILL);
                    got_crashed++;
                    victims++;
                }
                break;
            }
            CHECK_OK(crew_future_destroy(fs[i]));
        }
    }
    double dt = crew_now() - t0;
    crew_pool_stats st;
    CHECK_OK(crew_pool_stats_get(p, &st));
    printf("# %ld tasks in %.1f s: ok %ld, crashed %ld (planned %ld, outside-kill victims %ld of "
           "%ld kills), timed out %ld (planned %ld); workers started %llu\n",
           total, dt, got_ok, got_crashed, n_crash_planned, victims, n_kills, got_timedout,
           n_hang_planned, (unsigned long long)st.workers_started);
    /* every task ended exactly once, and the counts add up */
    CHECK_EQ(got_ok + got_crashed + got_timedout, total);
    CHECK_EQ(st.submitted, (uint64_t)total);
    CHECK_EQ(st.completed, (uint64_t)got_ok);
    CHECK_EQ(st.crashed, (uint64_t)got_crashed);
    CHECK_EQ(st.timed_out, (uint64_t)got_timedout);
    CHECK_EQ(st.failed + st.canceled, 0);
    CHECK(victims <= n_kills);
    CHECK_EQ(got_ok, n_ok - victims_normal);
    CHECK_EQ(st.broken, 0);
    /* A worker killed from outside while idle, right at the end, may still
     * be being replaced: the monitor does that on its own, with no event we
     * could wait on, so poll the stats for a while. */
    double until = crew_now() + 10;
    while (st.workers_alive != 2 && crew_now() < until) {
        sched_yield();
        CHECK_OK(crew_pool_stats_get(p, &st));
    }
    CHECK_EQ(st.workers_alive, 2);
    CHECK_OK(crew_pool_destroy(p));
    CHECK_EQ(test_count_fds(), fds0);
    CHECK_EQ(test_count_shm_maps(), maps0);
    CHECK_EQ(count_children_except(fsv), kids0);
}

static const test_case cases[] = {TEST_CASE(test_soak)};
TEST_MAIN_NOHELPERS(cases)
