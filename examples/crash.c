/*
 * crash.c -- a process pool survives its workers.
 *
 * Twelve tasks go to a pool of two worker processes. One of them segfaults,
 * one hangs past the pool's per-task deadline, one leaks memory past the
 * per-worker limit; the other nine compute a square. The program prints the
 * final status of every task: the crash and the hang fail only themselves
 * (with the worker's pid and the signal), the leaking worker is recycled
 * after its task, and every innocent task gets its result.
 *
 * Then a map over 1,000,000 items on a pool made with the default options
 * (only the kind set), where about one item in a thousand -- chosen by a
 * hash of its index -- segfaults: exactly those items fail, each with its
 * own CREW_ECRASHED; every other item has its result; the pool goes on.
 *
 *   $ ./crash
 */
#include <crew.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { SQUARE, SEGFAULT, HANG, LEAK };

typedef struct job {
    int kind;
    int64_t x;
} job;

static int run_job(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                   size_t *res_len)
{
    (void)t, (void)len, (void)cap;
    job j;
    memcpy(&j, arg, sizeof j);
    switch (j.kind) {
    case SEGFAULT: {
        volatile int *p = NULL;
        *p = 42; /* the worker dies of SIGSEGV */
        break;
    }
    case HANG:
        for (;;)
            pause(); /* stopped at the deadline: SIGTERM, then SIGKILL */
    case LEAK: {
        size_t n = (size_t)96 << 20; /* 96 MiB touched and never freed */
        char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED)
            memset(p, 7, n);
        break;
    }
    default:
        break;
    }
    int64_t sq = j.x * j.x;
    memcpy(res, &sq, sizeof sq);
    *res_len = sizeof sq;
    return 0;
}

/* Map item: x -> x * x, except that the items whose index hashes below
 * 1 in 1000 crash their worker. */
static int crashes(uint32_t i) { return (i * 2654435761u) % 1000003u < 1000u; }

static int square_or_crash(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                           size_t *res_len)
{
    (void)t, (void)len, (void)cap;
    uint32_t i;
    memcpy(&i, arg, sizeof i);
    if (crashes(i)) {
        volatile int *p = NULL;
        *p = 42;
    }
    uint64_t sq = (uint64_t)i * i;
    memcpy(res, &sq, sizeof sq);
    *res_len = sizeof sq;
    return 0;
}

/* One map, default options: prints the failed items' indices and checks
 * that they are exactly the crashing ones. Returns 0 when they are. */
static int crash_map(void)
{
    enum { N = 1000000 };
    crew_pool_options o = {0};
    o.kind = CREW_PROCESSES; /* nothing else: the defaults */
    crew_pool *pool;
    int rc = crew_pool_create(&pool, &o);
    if (rc) {
        fprintf(stderr, "crew_pool_create: %s\n", crew_strerror(rc));
        return 1;
    }
    uint32_t *in = malloc(N * sizeof *in);
    uint64_t *out = malloc(N * sizeof *out);
    int *sts = malloc(N * sizeof *sts);
    if (!in || !out || !sts)
        return 1;
    for (uint32_t i = 0; i < N; i++)
        in[i] = i;
    crew_map_options mo = {.statuses = sts};
    double t0 = crew_now();
    rc = crew_pool_map(pool, square_or_crash, in, sizeof *in, out, sizeof *out, N, &mo);
    double secs = crew_now() - t0;
    printf("\nmap of %d items, default options: %s in %.2f s; failed items:\n", N,
           crew_err_name(rc), secs);
    int failed = 0, wrong = 0, expected = 0;
    for (uint32_t i = 0; i < N; i++) {
        expected += crashes(i);
        if (sts[i] != 0) {
            printf("%s%u", failed % 12 ? " " : (failed ? "\n  " : "  "), i);
            failed++;
            wrong += sts[i] != CREW_ECRASHED || !crashes(i);
        } else {
            wrong += crashes(i) || out[i] != (uint64_t)i * i;
        }
    }
    printf("\n%d items ended CREW_ECRASHED (%d crash), %d others have their square; %s\n",
           failed, expected, N - failed, wrong ? "MISMATCH" : "exactly the crashing items failed");
    crew_future *f;
    uint32_t one = 2;
    crew_pool_submit(pool, square_or_crash, &one, sizeof one, &f);
    crew_future_wait(f, CREW_FOREVER);
    printf("the pool goes on: one more task -> %s\n", crew_err_name(crew_future_status(f)));
    crew_future_destroy(f);
    crew_pool_destroy(pool);
    free(in), free(out), free(sts);
    return wrong != 0 || failed != expected;
}

static const char *kind_name(int k)
{
    static const char *names[] = {"square", "segfault", "hang", "leak"};
    return names[k];
}

int main(void)
{
    crew_pool_options o = {
        .kind = CREW_PROCESSES,
        .workers = 2,
        .task_timeout = 0.5,               /* per task, from its start */
        .kill_grace = 0.1,                 /* SIGTERM, then SIGKILL 0.1 s later */
        .max_worker_memory = 64u << 20,    /* recycle a worker above 64 MiB RSS */
    };
    crew_pool *pool;
    int rc = crew_pool_create(&pool, &o);
    if (rc) {
        fprintf(stderr, "crew_pool_create: %s\n", crew_strerror(rc));
        return 1;
    }
    enum { N = 12 };
    job jobs[N];
    crew_future *fs[N];
    for (int i = 0; i < N; i++) {
        jobs[i].kind = i == 3 ? SEGFAULT : i == 6 ? HANG : i == 9 ? LEAK : SQUARE;
        jobs[i].x = i;
        rc = crew_pool_submit(pool, run_job, &jobs[i], sizeof jobs[i], &fs[i]);
        if (rc) {
            fprintf(stderr, "submit: %s\n", crew_strerror(rc));
            return 1;
        }
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        crew_future_wait(fs[i], CREW_FOREVER);
        int st = crew_future_status(fs[i]);
        printf("task %2d %-8s -> %-15s", i, kind_name(jobs[i].kind), crew_err_name(st));
        if (st == 0) {
            const void *d;
            size_t n;
            int64_t v;
            crew_future_result(fs[i], &d, &n);
            memcpy(&v, d, sizeof v);
            printf(" result %lld", (long long)v);
            ok++;
        } else {
            crew_failure fl;
            crew_future_failure(fs[i], &fl);
            printf(" worker pid %d, ", (int)fl.pid);
            if (fl.signal)
                printf("signal %d (%s)", fl.signal, strsignal(fl.signal));
            else
                printf("exit code %d", fl.exit_code);
            printf(", task id %llu", (unsigned long long)fl.task_id);
        }
        printf("\n");
        crew_future_destroy(fs[i]);
    }
    /* The pool is still usable. */
    job j = {SQUARE, 12};
    crew_future *f;
    crew_pool_submit(pool, run_job, &j, sizeof j, &f);
    crew_future_wait(f, CREW_FOREVER);
    printf("\nafter all that, one more task: %s\n", crew_err_name(crew_future_status(f)));
    crew_future_destroy(f);
    /* A failed task is reported before its worker's replacement has
     * started, and a worker recycled after its task (the leak) is replaced
     * a moment after it leaves: each takes a few hundred microseconds, so
     * "alive" may still be short here. */
    crew_pool_stats st;
    crew_pool_stats_get(pool, &st);
    printf("%d of %d tasks returned a result; crashed %llu, timed out %llu; "
           "workers started %llu, recycled %llu, alive %d, broken %d\n",
           ok, N, (unsigned long long)st.crashed, (unsigned long long)st.timed_out,
           (unsigned long long)st.workers_started, (unsigned long long)st.workers_recycled,
           st.workers_alive, st.broken);
    crew_pool_destroy(pool);
    if (ok != N - 2)
        return 1;
    return crash_map();
}
