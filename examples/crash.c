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
 *   $ ./crash
 */
#include <crew.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
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
    return ok == N - 2 ? 0 : 1;
}
