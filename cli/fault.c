/*
 * fault.c -- the live crash demonstration of `crew compare`: a task
 * segfaults on purpose among six innocent ones.
 *
 * DESIGN
 *  Under threads the crash takes the whole process down, so it runs in a
 *  sacrificial child (child.c) that reports over its pipe: byte 'P' once its
 *  pool runs, one byte 'k' per innocent task completed; how it died comes
 *  from crew_process_join. Under processes it runs in a pool of this
 *  process: the crashing task's future fails with CREW_ECRASHED, the others
 *  complete, and one more task shows the pool still usable. The crashing
 *  task's argument lies in a crew_shm region passed by reference, so the
 *  task can write the time of its death there: what is reported is death ->
 *  future done, not the task's start-up.
 */
#include "probe.h"

#include <math.h>

/* ---- the fault demo under threads, in a child: byte 'P' once the pool
 * runs, one byte 'k' per innocent task completed. */
static int fault_threads_job(int fd, const cmp_plan *pl)
{
    crew_pool *p;
    if (probe_pool_new(&p, CMP_THREADS, pl->ready_workers, 0, 0, 0) != 0)
        return 1;
    probe_write_all(fd, "P", 1);
    wl_arg a = {0};
    a.kind = CMP_WL_IO;
    a.wait_ns = 20 * 1000 * 1000;
    wl_arg c = a;
    c.crash = 1;
    crew_future *fs[7];
    if (crew_pool_submit(p, wl_task_work, &c, sizeof c, &fs[0]) != 0)
        return 1;
    for (int i = 1; i < 7; i++) {
        a.seq = (uint64_t)i;
        if (crew_pool_submit(p, wl_task_work, &a, sizeof a, &fs[i]) != 0)
            return 1;
    }
    for (int i = 1; i < 7; i++)
        if (crew_future_wait(fs[i], pl->timeout) == 0 && crew_future_status(fs[i]) == 0)
            probe_write_all(fd, "k", 1);
    /* not reached if the crash took the process down, as it does */
    for (int i = 0; i < 7; i++)
        crew_future_destroy(fs[i]);
    crew_pool_destroy(p);
    return 0;
}

int probe_fault_threads(cmp_model *m, const cmp_plan *pl)
{
    cli_progress("threads: a task segfaults (in a sacrificial child process)");
    char buf[64];
    size_t got = 0;
    crew_exit ex = {0};
    int rc = probe_in_child(fault_threads_job, pl, pl->timeout, buf, sizeof buf, &got, &ex);
    if (rc)
        return probe_fail(m, "fault demo", rc);
    if (got == 0 || buf[0] != 'P') /* the child's pool never ran */
        return probe_fail(m, "fault demo (thread pool in the child)", CREW_ECHILD);
    cmp_fault *fa = &m->fault;
    fa->measured = true;
    fa->survived = ex.signal == 0 && ex.code == 0;
    fa->signal = ex.signal;
    fa->crashed_status = 0;
    fa->innocent_total = 6;
    fa->innocent_ok = 0;
    for (size_t i = 0; i < got; i++)
        fa->innocent_ok += buf[i] == 'k';
    fa->pool_usable = fa->survived;
    fa->detect_ms = NAN;
    return CLI_EXIT_OK;
}

/* Every worker up and through a task (one task at a time would leave the
 * others still starting, which keeps the monitor busy), so that detection
 * is not confused with start-up. */
static int warm_workers(crew_pool *p, const cmp_plan *pl)
{
    wl_arg w = {0};
    w.kind = CMP_WL_IO;
    w.wait_ns = 2 * 1000 * 1000;
    crew_future *ws[64] = {0};
    int nw = pl->ready_workers < 64 ? pl->ready_workers : 64, rc = 0;
    for (int i = 0; i < nw && rc == 0; i++)
        rc = crew_pool_submit(p, wl_task_work, &w, sizeof w, &ws[i]);
    if (rc == 0)
        rc = crew_wait_all(ws, (size_t)nw, pl->timeout);
    for (int i = 0; i < nw; i++)
        if (ws[i])
            crew_future_destroy(ws[i]);
    return rc;
}

int probe_fault_processes(cmp_model *m, const cmp_plan *pl)
{
    cli_progress("processes: a task segfaults in a worker");
    crew_pool *p;
    int rc = probe_pool_new(&p, CMP_PROCESSES, pl->ready_workers, pl->pool_method, 0, 0);
    if (rc)
        return probe_fail(m, "fault demo", rc);
    rc = warm_workers(p, pl);
    wl_arg a = {0};
    a.kind = CMP_WL_IO;
    a.wait_ns = 20 * 1000 * 1000;
    /* The crashing task's argument lies in a crew_shm region, passed by
     * reference: the task writes the time of its death there, so what is
     * reported is death -> future done, not the task's start-up. */
    crew_shm *shm = NULL;
    if (rc == 0)
        rc = crew_shm_create(&shm, sizeof(wl_arg), NULL);
    wl_arg *c = rc == 0 ? crew_shm_ptr(shm) : NULL;
    if (c) {
        *c = a;
        c->crash = 1;
        c->died_at = NAN;
    }
    crew_future *fs[7] = {0};
    double t1 = NAN;
    if (rc == 0)
        rc = crew_pool_submit_shm(p, wl_task_work, shm, 0, sizeof *c, &fs[0]);
    for (int i = 1; i < 7 && rc == 0; i++) {
        a.seq = (uint64_t)i;
        rc = crew_pool_submit(p, wl_task_work, &a, sizeof a, &fs[i]);
    }
    if (rc == 0 && (rc = crew_future_wait(fs[0], pl->timeout)) == 0)
        t1 = crew_now();
    if (rc == 0)
        rc = crew_wait_all(fs + 1, 6, pl->timeout);
    cmp_fault *fa = &m->fault;
    if (rc == 0) {
        crew_failure fl = {0};
        crew_future_failure(fs[0], &fl);
        fa->measured = true;
        fa->survived = true;
        fa->crashed_status = crew_future_status(fs[0]);
        fa->signal = fl.signal;
        fa->innocent_total = 6;
        fa->innocent_ok = 0;
        for (int i = 1; i < 7; i++)
            fa->innocent_ok += crew_future_status(fs[i]) == 0;
        fa->detect_ms = isfinite(c->died_at) ? (t1 - c->died_at) * 1e3 : NAN;
        int st = -1;
        fa->pool_usable = probe_run_one(p, wl_task_empty, NULL, 0, pl->timeout, &st) == 0 && st == 0;
    }
    for (int i = 0; i < 7; i++)
        if (fs[i])
            crew_future_destroy(fs[i]);
    crew_pool_destroy(p);
    if (shm)
        crew_shm_destroy(shm);
    return rc ? probe_fail(m, "fault demo", rc) : CLI_EXIT_OK;
}
