/* bench_process.c -- crew_process start+join per start method against raw
 * fork+waitpid, vfork+waitpid and posix_spawn(/bin/true)+waitpid, all in the
 * same run; plus the forkserver's cold start and "two workers ready" (what a
 * process pool pays to come up).
 *
 * Memory: what an idle child adds to the process tree's PSS, against a raw
 * fork child of a parent of the same size as the forkserver that forks
 * crew's children (a fresh small copy of this program started for the
 * purpose: bench_raw_fork_child_kib), and against crew's own fork child of
 * this bench process.
 *
 * Raw and crew figures are measured interleaved, rep by rep, so a drift of
 * the machine hits both; each figure is the median over the reps, with
 * min and max. */
#include "harness.h"

#include <crew.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *G = "processes: start+join";

static int task_noop(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return 0;
}

static void raw_fork(long n)
{
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        waitpid(p, NULL, 0);
    }
}

/* One vfork in a frame of its own: nothing of the caller's lives across it. */
__attribute__((noinline)) static void one_vfork(void)
{
    pid_t p = vfork();
    if (p == 0)
        _exit(0);
    waitpid(p, NULL, 0);
}

static void raw_vfork(long n)
{
    for (long i = 0; i < n; i++)
        one_vfork();
}

static void raw_posix_spawn(long n)
{
    char *argv[] = {(char *)"true", NULL};
    for (long i = 0; i < n; i++) {
        pid_t p;
        if (posix_spawn(&p, "/bin/true", NULL, NULL, argv, environ) == 0)
            waitpid(p, NULL, 0);
    }
}

static crew_start_method g_method;
static void crew_cycle(long n)
{
    crew_process_options o = {0};
    o.method = g_method;
    for (long i = 0; i < n; i++) {
        crew_process *p;
        if (crew_process_start(&p, task_noop, NULL, 0, &o) != 0) {
            fprintf(stderr, "crew_process_start failed\n");
            exit(1);
        }
        crew_process_join(p, CREW_FOREVER, NULL);
        crew_process_destroy(p);
    }
}

typedef void (*loop_fn)(long);

/* Median ns per op of a and b, measured alternately one op at a time, so
 * any drift or load on this shared machine hits both alike. */
static void pair(loop_fn a, loop_fn b, long iters, int reps, bench_stat *ma, bench_stat *mb)
{
    long n = iters * reps;
    double *va = malloc(sizeof(double) * (size_t)n), *vb = malloc(sizeof(double) * (size_t)n);
    if (!va || !vb)
        exit(1);
    a(iters / 10 + 1);
    b(iters / 10 + 1);
    for (long i = 0; i < n; i++) {
        double t0 = bench_now_ns();
        a(1);
        double t1 = bench_now_ns();
        b(1);
        double t2 = bench_now_ns();
        va[i] = t1 - t0;
        vb[i] = t2 - t1;
    }
    *ma = bench_stat_of(va, (int)n);
    *mb = bench_stat_of(vb, (int)n);
    free(va);
    free(vb);
}

static bench_stat median_of(loop_fn f, long iters, int reps)
{
    double v[64];
    if (reps > 64)
        reps = 64;
    f(iters / 10 + 1);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_ns();
        f(iters);
        v[r] = (bench_now_ns() - t0) / (double)iters;
    }
    return bench_stat_of(v, reps);
}

/* A worker that says "ready" on the fd in arg, then waits for EOF. */
static int task_ready(void *arg, size_t len)
{
    (void)len;
    int *fds = arg;
    if (write(fds[0], "r", 1) != 1)
        return 1;
    char c;
    while (read(fds[1], &c, 1) > 0)
        ;
    return 0;
}

/* Two forkserver workers up and running their task (each has written its
 * byte), from a running forkserver. */
static double two_workers_ready_us(void)
{
    int ready[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(hold, O_CLOEXEC) != 0)
        exit(1);
    int fds[2] = {ready[1], hold[0]};
    crew_process_options o = {0};
    o.pass_fds = fds;
    o.n_pass_fds = 2;
    crew_process *p[2];
    double t0 = bench_now_ns();
    for (int i = 0; i < 2; i++)
        if (crew_process_start(&p[i], task_ready, fds, sizeof fds, &o) != 0)
            exit(1);
    char c;
    for (int i = 0; i < 2; i++)
        if (read(ready[0], &c, 1) != 1)
            exit(1);
    double t = (bench_now_ns() - t0) / 1000.0;
    close(hold[1]); /* workers see EOF and end */
    for (int i = 0; i < 2; i++) {
        crew_process_join(p[i], CREW_FOREVER, NULL);
        crew_process_destroy(p[i]);
    }
    close(ready[0]);
    close(ready[1]);
    close(hold[0]);
    return t;
}

/* PSS of this process and all its descendants, KiB: crew's one definition
 * of what a worker costs is how much this grows when the worker starts. */
static double tree_pss_kib(void)
{
    crew_mem_usage u;
    if (crew_mem_usage_tree(0, &u) != 0)
        exit(1);
    return (double)u.pss / 1024.0;
}

/* fds = {ready write end, hold read end, hold write end}: closes the hold
 * write end (a fork child inherits it; others do not have it), says
 * "ready", then blocks until EOF on the hold pipe. */
static int task_idle(void *arg, size_t len)
{
    (void)len;
    int *fds = arg;
    close(fds[2]);
    return task_ready(fds, 2 * sizeof(int));
}

/* Memory an idle child started with method m adds to the process tree
 * (tree PSS after minus before), KiB, median of 5. */
static bench_stat idle_pss(crew_start_method m)
{
    double v[5];
    for (int i = 0; i < 5; i++) {
        int ready[2], hold[2];
        if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(hold, O_CLOEXEC) != 0)
            exit(1);
        int fds[3] = {ready[1], hold[0], hold[1]};
        double before = tree_pss_kib();
        crew_process_options o = {0};
        o.method = m;
        o.pass_fds = fds;
        o.n_pass_fds = 2;
        crew_process *p;
        if (crew_process_start(&p, task_idle, fds, sizeof fds, &o) != 0)
            exit(1);
        char c;
        if (read(ready[0], &c, 1) != 1)
            exit(1);
        v[i] = tree_pss_kib() - before;
        close(hold[1]);
        crew_process_join(p, CREW_FOREVER, NULL);
        crew_process_destroy(p);
        close(ready[0]);
        close(ready[1]);
        close(hold[0]);
    }
    return bench_stat_of(v, 5);
}

/* The fair raw anchor: one raw fork child of a fresh small copy of this
 * program (the size of the forkserver that forks crew's children), median
 * of 5. */
static bench_stat raw_small_parent_pss(void)
{
    double v[5];
    int n = 0;
    for (int i = 0; i < 5; i++) {
        double k = bench_raw_fork_child_kib(1);
        if (k >= 0)
            v[n++] = k;
    }
    return bench_stat_of(v, n);
}

/* One row: crew's figure (ns or KiB, times k) against an anchor's. */
static void row(const char *group, const char *name, bench_stat c, const char *unit,
                const char *anchor, bench_stat a, double k, const char *goal)
{
    bench_fig f = {.group = group, .name = name, .unit = unit, .crew = bench_stat_scale(c, k),
                   .anchor = anchor, .anchor_value = bench_stat_scale(a, k),
                   .lower_is_better = true, .goal = goal};
    bench_report(&f);
}

int main(int argc, char **argv)
{
    bench_child_dispatch(argc, argv);
    int reps = bench_reps(15);
    bench_group(G);
    bench_stat raw, crew;

    g_method = CREW_START_FORK;
    pair(raw_fork, crew_cycle, bench_iters(100), reps, &raw, &crew);
    row(G, "crew_process fork start+join", crew, "us", "raw fork+waitpid", raw, 1e-3,
        "within 1.1x of raw fork (advantage >= 0.91)");

    bench_stat vf = median_of(raw_vfork, bench_iters(400), reps);
    bench_stat ps = median_of(raw_posix_spawn, bench_iters(40), reps);
    row(G, "(anchor) vfork+_exit+waitpid", vf, "us", "raw fork+waitpid", raw, 1e-3, NULL);

    /* The forkserver, cold: one exec of this program. */
    crew_forkserver_stop();
    double cold[9];
    for (int i = 0; i < 9; i++) {
        crew_forkserver_stop();
        double t0 = bench_now_ns();
        if (crew_forkserver_start() != 0)
            return 1;
        cold[i] = bench_now_ns() - t0;
    }
    row(G, "forkserver cold start (exec)", bench_stat_of(cold, 9), "us",
        "posix_spawn(/bin/true)+wait", ps, 1e-3, NULL);

    g_method = CREW_START_FORKSERVER;
    crew = median_of(crew_cycle, bench_iters(200), reps);
    row(G, "crew_process forkserver start+join", crew, "us", "raw fork+waitpid", raw, 1e-3, NULL);
    row(G, "crew_process forkserver start+join ", crew, "us", "posix_spawn(/bin/true)+wait", ps,
        1e-3, NULL);

    g_method = CREW_START_SPAWN;
    crew = median_of(crew_cycle, bench_iters(40), reps);
    row(G, "crew_process spawn start+join", crew, "us", "posix_spawn(/bin/true)+wait", ps, 1e-3,
        NULL);
    row(G, "crew_process spawn start+join ", crew, "us", "raw fork+waitpid", raw, 1e-3, NULL);

    double two[15];
    for (int i = 0; i < 15; i++)
        two[i] = two_workers_ready_us();
    bench_fig f = {.group = G, .name = "2 forkserver workers running (warm)", .unit = "us",
                   .crew = bench_stat_of(two, 15), .lower_is_better = true,
                   .goal = "<= 1000 us (pool ready)"};
    bench_report(&f);

    const char *M = "processes: idle child memory";
    bench_group(M);
    crew_forkserver_start(); /* started once per program: not a child's cost */
    bench_stat fork_pss = idle_pss(CREW_START_FORK);
    bench_stat raw_pss = raw_small_parent_pss();
    bench_stat fs_pss = idle_pss(CREW_START_FORKSERVER);
    bench_stat sp_pss = idle_pss(CREW_START_SPAWN);
    const char *fair = "idle raw fork child of a small parent";
    if (raw_pss.reps) {
        row(M, "idle forkserver child: tree PSS added", fs_pss, "KiB", fair, raw_pss, 1,
            "<= 100 KiB");
        row(M, "idle spawn child: tree PSS added", sp_pss, "KiB", fair, raw_pss, 1, NULL);
    } else {
        bench_missing(M, fair, "the helper failed");
    }
    /* crew's fork method forks this (big) bench process itself: its fair
     * anchor is crew's own fork child, of the same parent. */
    row(M, "idle forkserver child: tree PSS added", fs_pss, "KiB", "idle fork child of this bench",
        fork_pss, 1, NULL);
    row(M, "idle spawn child: tree PSS added", sp_pss, "KiB", "idle fork child of this bench",
        fork_pss, 1, NULL);
    return 0;
}
