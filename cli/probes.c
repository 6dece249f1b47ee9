/*
 * probes.c -- the measurements of `crew compare`, on crew's own pools: one
 * model's probes in order (probe_model) and the I/O view (probe_io_view).
 *
 * DESIGN
 *  Each probe creates the pools it needs with crew_pool_create (kind =
 *  threads or processes, start method as planned), times a public call
 *  sequence with crew_now(), repeats it plan->reps times and keeps the
 *  median, then destroys the pools: no probe leaves a worker behind for the
 *  next. Every wait has a deadline (plan->timeout), so a stuck pool ends the
 *  run with an error instead of hanging it. The probes themselves live
 *  below (probe.h: costs.c, curve.c, fault.c over child.c and runs.c).
 *
 *  What runs where:
 *  - built-in tasks run in pools of this process; the one that segfaults on
 *    purpose runs in a process pool (the pool survives it) or, for the thread
 *    pool, inside a sacrificial child process made with crew_process_start
 *    (CREW_START_FORK): the child dies, this process reads how far it got
 *    from a pipe and how it died from crew_process_join.
 *  - the user's task (--task) is never called in this process: the search
 *    (search.c) runs every measurement of it in a child of its own; here it
 *    gets only the costs.
 *  The children are forked while this process runs no pool (the thread
 *  model's child probes run first: probe_model's order), so fork's rule --
 *  no other thread holding a lock -- is kept.
 */
#include "probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- I/O rows */
static int probe_io(cmp_model *m, int model, const cmp_plan *pl, const cmp_results *r)
{
    for (int k = 0; k < pl->nio; k++) {
        int w = pl->io_workers[k];
        long n = (long)w * pl->io_per_worker;
        if (n > 1000)
            n = 1000;
        cli_progress("%s: up to %ld tasks waiting %.0f ms each on %d workers", m->name, n, r->io_wait_ms, w);
        wl_arg *in = calloc((size_t)n, sizeof *in);
        if (!in)
            return probe_fail(m, "I/O tasks", CREW_ENOMEM);
        for (long i = 0; i < n; i++) {
            in[i].kind = CMP_WL_IO;
            in[i].wait_ns = (uint64_t)(pl->io_wait_s * 1e9);
            in[i].seq = (uint64_t)i;
        }
        unsigned char *out = calloc((size_t)n, 2 * sizeof(uint64_t));
        crew_pool *p = NULL;
        int rc = out ? probe_pool_new(&p, model, w, pl->pool_method, 0, 0) : CREW_ENOMEM;
        /* One task per worker first: it starts them all and tells the rate,
         * so the batch can be sized to the budget (a pool that runs waits
         * one at a time must not take minutes). */
        double t[16], spent = 0;
        int reps = 0;
        if (rc == 0) {
            double t0 = crew_now();
            rc = probe_submit_run(p, wl_task_work, (unsigned char *)in, sizeof *in, (size_t)w, out,
                                  2 * sizeof(uint64_t), pl->timeout, NULL);
            double rate = w / (crew_now() - t0), fit = rate * pl->point_budget / pl->reps;
            if (fit < n)
                n = fit < w ? w : (long)fit;
        }
        for (int i = 0; i < pl->reps && i < 16 && rc == 0 && (i < 2 || spent < pl->point_budget); i++) {
            double t0 = crew_now();
            rc = probe_submit_run(p, wl_task_work, (unsigned char *)in, sizeof *in, (size_t)n, out,
                                  2 * sizeof(uint64_t), pl->timeout, NULL);
            t[reps++] = crew_now() - t0;
            spent += t[reps - 1];
        }
        if (p)
            crew_pool_destroy(p);
        free(in);
        free(out);
        if (rc)
            return probe_fail(m, "I/O tasks", rc);
        cmp_point *pt = &m->io[m->nio++];
        pt->workers = w;
        pt->items = n;
        pt->seconds = median(t, reps);
        pt->speedup = NAN;
        pt->items_per_s = (double)n / pt->seconds;
    }
    return CLI_EXIT_OK;
}

/* The built-in workload's curve under either model; its serial baseline,
 * measured beside the threads' curve, is kept from that run. */
static int curve_here(cmp_results *r, cmp_model *m, int model, const cmp_plan *pl)
{
    crew_failure fl = {0};
    int rc = 0;
    double serial = NAN;
    int ex = probe_curve(model, pl, true, &serial, m->curve, &m->ncurve, &fl, &rc);
    if (ex == 0 && (model == CMP_THREADS || !isfinite(r->serial_seconds))) {
        r->serial_seconds = serial;
        r->item_us = serial / (double)pl->items * 1e6;
    }
    if (ex)
        return probe_fail(m, "workload", rc);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- one model
 * In this order: under threads the crash demo, which forks a sacrificial
 * child, comes first, while no pool runs here; then the costs, the curve,
 * the I/O rows, and under processes the crash demo last. The user's task
 * (--task) gets the costs only: the search measures the task itself, each
 * run in a child started from the fork server (trial.c). */
int probe_model(cmp_results *r, int model, const cmp_plan *pl)
{
    cmp_model *m = &r->m[model];
    int ex;
    if (pl->user)
        return probe_costs(m, model, pl);
    if (model == CMP_THREADS && pl->fault && (ex = probe_fault_threads(m, pl)) != 0)
        return ex;
    if ((ex = probe_costs(m, model, pl)) != 0)
        return ex;
    if ((ex = curve_here(r, m, model, pl)) != 0)
        return ex;
    if ((ex = probe_io(m, model, pl, r)) != 0)
        return ex;
    if (model == CMP_PROCESSES && pl->fault && (ex = probe_fault_processes(m, pl)) != 0)
        return ex;
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- the I/O view */
int probe_io_view(cmp_results *r, const cmp_plan *pl)
{
    (void)pl;
    /* Threads vs the event loop as the number of waits pending at once
     * grows: the answer to "threads or asyncio" is in how each scales. */
    static const int full_levels[] = {100, 1000, 10000};
    static const int quick_levels[] = {1000};
    const int *levels = r->quick ? quick_levels : full_levels;
    int nlevels = r->quick ? 1 : 3;
    static const int models[] = {IOV_THREAD_PER_WAIT, IOV_THREAD_POOL, IOV_EVENT_LOOP};
    r->io_view_n = 0;
    for (int l = 0; l < nlevels; l++)
        for (int i = 0; i < 3 && r->io_view_n < CMP_IO_VIEW_MAX; i++) {
            cli_progress("I/O view: %d waits of %.0f ms at once, %s", levels[l], r->io_wait_ms,
                         iov_model_name(models[i]));
            iov_result *res = &r->io_view[r->io_view_n];
            memset(res, 0, sizeof *res);
            res->model = models[i];
            res->concurrency = levels[l];
            r->io_view_status[r->io_view_n] =
                iov_measure(models[i], levels[l], r->io_wait_ms / 1e3, NULL, res);
            res->concurrency = levels[l];
            r->io_view_n++;
        }
    return CLI_EXIT_OK;
}
