/*
 * costs.c -- what each model costs, measured on crew's own pools: one bare
 * worker, a pool of 1 per start method, a pool of N ready and its destroy,
 * memory per idle worker, round trip, hand-off, empty tasks, map, and 1 MiB
 * by copy and by reference.
 *
 * DESIGN
 *  probe_costs runs a table of steps. Each step measures one part and
 *  leaves what it holds (a pool, buffers) in the `costs` context; the
 *  driver then releases all of it and, if the step failed, reports it --
 *  so every measurement ends the same way: measure, clean up, report
 *  "<model>: <what> failed" (c->what names the part that failed).
 *
 *  The figures measured on one shared pool (the task rates; the 1 MiB
 *  transfer) are `series`, themselves a table: a figure is the median of
 *  c->reps timed repetitions (`once`), after an optional `prepare`
 *  (progress line, scratch buffers, warm-up) and `warm` repetitions that
 *  are not counted, with an optional `finish` that checks what arrived.
 *  A series' scratch (fs, in, shm) goes as soon as it ends; the stage's
 *  pool and buffers go at the end of the step. A figure is stored only when
 *  its series succeeded, so a failed part stays NaN in the report.
 */
#include "probe.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define COSTS_MAX_REPS 16

/* The state the steps of one model's cost probes share. */
typedef struct costs {
    cmp_model *m;
    int model;
    const cmp_plan *pl;
    int reps;              /* medians of this many repetitions */
    const char *what;      /* the part being measured, for a failure */
    /* held by the step running; released by stage_release */
    crew_pool *pool;
    unsigned char *src, *dst;
    /* held by the series running; released by series_release */
    crew_future **fs;
    uint64_t *in;
    crew_shm *shm;
} costs;

static void series_release(costs *c)
{
    free(c->fs);
    c->fs = NULL;
    free(c->in);
    c->in = NULL;
    if (c->shm)
        crew_shm_destroy(c->shm);
    c->shm = NULL;
}

static void stage_release(costs *c)
{
    series_release(c);
    free(c->src);
    free(c->dst);
    c->src = c->dst = NULL;
    if (c->pool)
        crew_pool_destroy(c->pool);
    c->pool = NULL;
}

/* c->pool: a pool of the model with `workers`; NULL when it cannot be made. */
static int open_pool(costs *c, int workers, size_t max_arg, size_t max_res)
{
    c->what = "pool create";
    int rc = probe_pool_new(&c->pool, c->model, workers, c->pl->pool_method, max_arg, max_res);
    if (rc)
        c->pool = NULL;
    return rc;
}

/* ---------------------------------------------------------------- series */
enum { ANY_MODEL = -1 };

typedef struct series {
    const char *what;                       /* names a failure */
    int model;                              /* CMP_THREADS, CMP_PROCESSES or ANY_MODEL */
    int (*prepare)(costs *c);               /* NULL: nothing to prepare */
    int (*once)(costs *c, double *figure);  /* one timed repetition */
    int (*finish)(costs *c);                /* NULL: nothing to check */
    int warm;                               /* repetitions first run and not counted */
    size_t field;                           /* offsetof(cmp_model, the figure) */
} series;

static int run_series(costs *c, const series *s)
{
    double t[COSTS_MAX_REPS];
    c->what = s->what;
    int rc = s->prepare ? s->prepare(c) : 0;
    for (int i = 0; i < s->warm + c->reps && rc == 0; i++) {
        double v = NAN;
        rc = s->once(c, &v);
        if (i >= s->warm)
            t[i - s->warm] = v;
    }
    if (rc == 0 && s->finish)
        rc = s->finish(c);
    if (rc == 0)
        *(double *)(void *)((char *)c->m + s->field) = median(t, c->reps);
    series_release(c);
    return rc;
}

static int run_table(costs *c, const series *s, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (s[i].model == ANY_MODEL || s[i].model == c->model)
            rc = run_series(c, &s[i]);
    return rc;
}

/* ---------------------------------------------------------------- one bare worker */
static void *noop_thread(void *arg) { return arg; }
static int noop_process(void *arg, size_t len)
{
    (void)arg, (void)len;
    return 0;
}

static int start_join_one(int model, int method, double timeout)
{
    int rc;
    if (model == CMP_THREADS) {
        crew_thread *th;
        if ((rc = crew_thread_start(&th, noop_thread, NULL, NULL)) != 0)
            return rc;
        rc = crew_thread_join(th, timeout, NULL);
        crew_thread_destroy(th);
        return rc;
    }
    crew_process_options po = {0};
    po.method = (crew_start_method)method;
    crew_process *cp;
    if ((rc = crew_process_start(&cp, noop_process, NULL, 0, &po)) != 0)
        return rc;
    crew_exit ex;
    rc = crew_process_join(cp, timeout, &ex);
    crew_process_destroy(cp);
    if (rc == 0 && (ex.signal || ex.code))
        rc = CREW_ECRASHED;
    return rc;
}

/* One bare worker: crew_thread or crew_process start + join, in µs. */
static int worker_start(costs *c, int method, double *us)
{
    double t[COSTS_MAX_REPS];
    int per = c->model == CMP_THREADS ? 20 : 5;
    for (int i = 0; i < c->reps; i++) {
        double t0 = crew_now();
        for (int k = 0; k < per; k++) {
            int rc = start_join_one(c->model, method, c->pl->timeout);
            if (rc)
                return rc;
        }
        t[i] = (crew_now() - t0) / per * 1e6;
    }
    *us = median(t, c->reps);
    return 0;
}

static int step_bare_worker(costs *c)
{
    const cmp_plan *pl = c->pl;
    cmp_model *m = c->m;
    if (c->model == CMP_THREADS) {
        cli_progress("%s: start + join one crew_thread", m->name);
        c->what = "crew_thread start";
        return worker_start(c, 0, &m->worker_us);
    }
    /* every start method; only the pools' own may fail the model */
    c->what = "crew_process start";
    for (int k = 0; k < pl->nmethods; k++) {
        cli_progress("%s: start + join one crew_process, method %s", m->name, pl->method_names[k]);
        double us = NAN;
        int rc = worker_start(c, pl->methods[k], &us);
        m->methods[k].worker_us = us;
        if (pl->methods[k] == pl->pool_method) {
            if (rc)
                return rc;
            m->worker_us = us;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- pools made and ended */
/* Start + stop of a pool of 1 (create, first task, destroy): median ms, NaN
 * when it failed. */
static int time_pool_of_1(costs *c, int method, double *ms)
{
    double t[COSTS_MAX_REPS];
    int rc = 0;
    for (int i = 0; i < c->reps; i++) {
        double t0 = crew_now();
        crew_pool *p;
        if ((rc = probe_pool_new(&p, c->model, 1, method, 0, 0)) != 0)
            break;
        rc = probe_run_one(p, wl_task_empty, NULL, 0, c->pl->timeout, NULL);
        crew_pool_destroy(p);
        if (rc)
            break;
        t[i] = (crew_now() - t0) * 1e3;
    }
    *ms = rc ? NAN : median(t, c->reps);
    return rc;
}

static int step_pool_of_1(costs *c)
{
    const cmp_plan *pl = c->pl;
    cmp_model *m = c->m;
    c->what = "pool start";
    if (c->model == CMP_THREADS) {
        cli_progress("%s: start + stop a pool of 1%s%s", m->name, "", "");
        double ms;
        int rc = time_pool_of_1(c, 0, &ms);
        if (rc == 0)
            m->start_ms = ms;
        return rc;
    }
    /* per start method; only the pools' own may fail the model */
    for (int k = 0; k < pl->nmethods; k++) {
        int method = pl->methods[k];
        cli_progress("%s: start + stop a pool of 1%s%s", m->name, ", method ", pl->method_names[k]);
        double ms;
        int rc = time_pool_of_1(c, method, &ms);
        m->methods[m->nmethods].name = pl->method_names[k];
        m->methods[m->nmethods].status = rc;
        m->methods[m->nmethods].start_ms = ms;
        m->nmethods++;
        if (method == pl->pool_method) {
            m->start_ms = ms;
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* A pool of N ready to run (create + first task done), and its destroy. */
static int step_ready_pool(costs *c)
{
    const cmp_plan *pl = c->pl;
    cmp_model *m = c->m;
    double t[COSTS_MAX_REPS], u[COSTS_MAX_REPS];
    cli_progress("%s: pool of %d ready to run", m->name, pl->ready_workers);
    m->ready_workers = pl->ready_workers;
    for (int i = 0; i < c->reps; i++) {
        double t0 = crew_now();
        int rc = open_pool(c, pl->ready_workers, 0, 0);
        if (rc)
            return rc;
        rc = probe_run_one(c->pool, wl_task_empty, NULL, 0, pl->timeout, NULL);
        double t1 = crew_now();
        crew_pool_destroy(c->pool);
        c->pool = NULL;
        if (rc) {
            c->what = "first task";
            return rc;
        }
        t[i] = (t1 - t0) * 1e3;
        u[i] = (crew_now() - t1) * 1e3;
    }
    m->ready_ms = median(t, c->reps);
    m->destroy_ms = median(u, c->reps);
    return 0;
}

/* ---------------------------------------------------------------- memory
 * The memory of this process and all its descendants together, so that a
 * process pool's workers, and pages they share with us or the forkserver,
 * are each counted once (PSS). */
typedef struct group_mem {
    double rss, pss, priv;
} group_mem;

static int group_mem_get(group_mem *g)
{
    crew_mem_usage u;
    int rc = crew_mem_usage_tree(0, &u);
    if (rc)
        return rc;
    g->rss = (double)u.rss;
    g->pss = (double)u.pss;
    g->priv = (double)u.private_bytes;
    return 0;
}

/* Memory per idle worker: the tree's memory before and after a pool of
 * mem_workers has run a few empty tasks on every worker. */
static int step_idle_memory(costs *c)
{
    const cmp_plan *pl = c->pl;
    cmp_model *m = c->m;
    group_mem before, after;
    cli_progress("%s: memory of %d idle workers", m->name, pl->mem_workers);
    c->what = "reading /proc memory";
    int rc = group_mem_get(&before);
    if (rc == 0)
        rc = open_pool(c, pl->mem_workers, 0, 0);
    if (rc)
        return rc;
    c->what = "idle memory";
    c->fs = calloc((size_t)pl->mem_workers * 8, sizeof *c->fs);
    rc = c->fs ? probe_empty_batch(c->pool, c->fs, pl->mem_workers * 8, pl->timeout) : CREW_ENOMEM;
    series_release(c);
    if (rc == 0)
        rc = group_mem_get(&after);
    if (rc)
        return rc;
    m->mem_workers = pl->mem_workers;
    m->idle_metric = c->model == CMP_THREADS ? "RSS" : "PSS";
    m->idle_bytes = (c->model == CMP_THREADS ? after.rss - before.rss : after.pss - before.pss) / pl->mem_workers;
    m->idle_private_bytes = (after.priv - before.priv) / pl->mem_workers;
    return 0;
}

/* ---------------------------------------------------------------- task rates, on a pool of N */
static int roundtrip_prepare(costs *c)
{
    cli_progress("%s: round trip of one tiny task", c->m->name);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)
        rc = probe_run_one(c->pool, wl_task_empty, NULL, 0, c->pl->timeout, NULL);
    return rc;
}

static int roundtrip_once(costs *c, double *us)
{
    int rc = 0;
    double t0 = crew_now();
    for (int k = 0; k < c->pl->rt_calls && rc == 0; k++)
        rc = probe_run_one(c->pool, wl_task_empty, NULL, 0, c->pl->timeout, NULL);
    *us = (crew_now() - t0) / c->pl->rt_calls * 1e6;
    return rc;
}

/* The same, but the caller never runs the task itself: it spins on the
 * completion list, so the figure is the hand-off to a worker and back
 * (crew_future_wait on a thread pool may run a queued task in the waiting
 * thread, which the round trip then includes). */
static int handoff_prepare(costs *c)
{
    cli_progress("%s: round trip handed to a worker", c->m->name);
    return 0;
}

static int handoff_once(costs *c, double *us)
{
    int rc = 0;
    double t0 = crew_now();
    for (int k = 0; k < c->pl->rt_calls && rc == 0; k++)
        rc = probe_handoff_one(c->pool, c->pl->timeout);
    *us = (crew_now() - t0) / c->pl->rt_calls * 1e6;
    return rc;
}

static int empty_prepare(costs *c)
{
    cli_progress("%s: %d empty tasks, submit then wait", c->m->name, c->pl->batch);
    c->fs = calloc((size_t)c->pl->batch, sizeof *c->fs);
    return c->fs ? 0 : CREW_ENOMEM;
}

static int empty_once(costs *c, double *per_s)
{
    double t0 = crew_now();
    int rc = probe_empty_batch(c->pool, c->fs, c->pl->batch, c->pl->timeout);
    *per_s = c->pl->batch / (crew_now() - t0);
    return rc;
}

static int map_prepare(costs *c)
{
    cli_progress("%s: %ld empty items through crew_pool_map", c->m->name, c->pl->map_items);
    c->in = calloc((size_t)c->pl->map_items, sizeof *c->in);
    return c->in ? 0 : CREW_ENOMEM;
}

static int map_once(costs *c, double *per_s)
{
    const cmp_plan *pl = c->pl;
    double t0 = crew_now();
    int rc = probe_map_run(c->pool, wl_task_empty, c->in, sizeof *c->in, NULL, 0, (size_t)pl->map_items, 0,
                           pl->timeout, NULL);
    *per_s = (double)pl->map_items / (crew_now() - t0);
    return rc;
}

static const series task_rates[] = {
    {"round trip", ANY_MODEL, roundtrip_prepare, roundtrip_once, NULL, 0, offsetof(cmp_model, roundtrip_us)},
    {"hand-off round trip", ANY_MODEL, handoff_prepare, handoff_once, NULL, 0, offsetof(cmp_model, handoff_us)},
    {"empty tasks", ANY_MODEL, empty_prepare, empty_once, NULL, 0, offsetof(cmp_model, empty_per_s)},
    {"map", ANY_MODEL, map_prepare, map_once, NULL, 0, offsetof(cmp_model, map_per_s)},
};

static int step_task_rates(costs *c)
{
    int rc = open_pool(c, c->pl->ready_workers, 0, 0);
    return rc ? rc : run_table(c, task_rates, sizeof task_rates / sizeof task_rates[0]);
}

/* ---------------------------------------------------------------- 1 MiB there and back */
/* One 1 MiB argument to a worker, the same 1 MiB back as its result. */
static int echo_one(costs *c)
{
    crew_future *f;
    int rc = crew_pool_submit(c->pool, wl_task_echo, c->src, MIB, &f);
    if (rc)
        return rc;
    rc = crew_future_wait(f, c->pl->timeout);
    const void *data = NULL;
    size_t len = 0;
    if (rc == 0 && (rc = crew_future_status(f)) == 0 && (rc = crew_future_result(f, &data, &len)) == 0) {
        if (len != MIB)
            rc = CREW_EPROTO;
        else
            memcpy(c->dst, data, MIB);
    }
    crew_future_destroy(f);
    return rc;
}

static int copy_once(costs *c, double *us)
{
    int rc = 0;
    double t0 = crew_now();
    for (int k = 0; k < c->pl->xfer_calls && rc == 0; k++)
        rc = echo_one(c);
    *us = (crew_now() - t0) / c->pl->xfer_calls * 1e6;
    return rc;
}

static int copy_finish(costs *c) { return memcmp(c->src, c->dst, MIB) != 0 ? CREW_EPROTO : 0; }

/* Threads by reference: the worker reads and writes our buffers. */
static int pointer_once(costs *c, double *us)
{
    wl_ref_arg ra = {c->src, c->dst, MIB};
    int rc = 0;
    double t0 = crew_now();
    for (int k = 0; k < c->pl->xfer_calls && rc == 0; k++) {
        int st = 0;
        rc = probe_run_one(c->pool, wl_task_copy_ref, &ra, sizeof ra, c->pl->timeout, &st);
        if (rc == 0)
            rc = st;
    }
    *us = (crew_now() - t0) / c->pl->xfer_calls * 1e6;
    return rc;
}

static int pointer_finish(costs *c)
{
    c->m->xfer_ref_how = "pointer, one copy";
    return 0;
}

/* Processes by reference: argument and result live in a crew_shm region;
 * crew_pool_submit_shm passes (region, offset, length) and the worker works
 * in its own mapping of the region. The pool copies nothing; the task
 * copies the 1 MiB once, as the thread pool's task does between the
 * caller's buffers. arg is the first MiB of the region (the worker's own
 * mapping of it); the task copies it into the second MiB, in place. */
static int shm_copy_task(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                         size_t *res_len)
{
    (void)res, (void)cap;
    crew_shm *s = crew_task_shm(t);
    unsigned char *dst = s ? crew_shm_at(s, MIB) : NULL;
    if (!dst || arg_len != MIB || crew_shm_size(s) < 2 * (size_t)MIB)
        return CREW_EINVAL;
    memcpy(dst, arg, MIB);
    *res_len = 0;
    return 0;
}

static int shm_prepare(costs *c)
{
    int rc = crew_shm_create(&c->shm, 2 * MIB, NULL);
    if (rc) {
        c->shm = NULL;
        return rc;
    }
    unsigned char *base = crew_shm_ptr(c->shm);
    if (base)
        memcpy(base, c->src, MIB);
    return 0;
}

static int shm_once(costs *c, double *us)
{
    int rc = 0;
    double t0 = crew_now();
    for (int k = 0; k < c->pl->xfer_calls && rc == 0; k++) {
        crew_future *f;
        if ((rc = crew_pool_submit_shm(c->pool, shm_copy_task, c->shm, 0, MIB, &f)) != 0)
            break;
        rc = crew_future_wait(f, c->pl->timeout);
        if (rc == 0)
            rc = crew_future_status(f);
        crew_future_destroy(f);
    }
    *us = (crew_now() - t0) / c->pl->xfer_calls * 1e6;
    return rc;
}

static int shm_finish(costs *c)
{
    unsigned char *base = crew_shm_ptr(c->shm);
    if (memcmp(base + MIB, c->src, MIB) != 0)
        return CREW_EPROTO;
    c->m->xfer_ref_how = "crew_shm, no pool copy";
    return 0;
}

/* The first repetition of each warms the shared buffers up. */
static const series transfers[] = {
    {"1 MiB transfer", ANY_MODEL, NULL, copy_once, copy_finish, 1, offsetof(cmp_model, xfer_copy_us)},
    {"1 MiB transfer", CMP_THREADS, NULL, pointer_once, pointer_finish, 1, offsetof(cmp_model, xfer_ref_us)},
    {"1 MiB transfer", CMP_PROCESSES, shm_prepare, shm_once, shm_finish, 1, offsetof(cmp_model, xfer_ref_us)},
};

static int step_transfer(costs *c)
{
    cli_progress("%s: 1 MiB to a worker and back", c->m->name);
    int rc = open_pool(c, 1, MIB, MIB);
    if (rc)
        return rc;
    c->what = "1 MiB transfer";
    c->src = malloc(MIB);
    c->dst = malloc(MIB);
    if (!c->src || !c->dst)
        return CREW_ENOMEM;
    for (size_t i = 0; i < MIB; i++)
        c->src[i] = (unsigned char)(i * 131u);
    return run_table(c, transfers, sizeof transfers / sizeof transfers[0]);
}

/* ---------------------------------------------------------------- the table */
static int (*const steps[])(costs *c) = {
    step_bare_worker, step_pool_of_1, step_ready_pool, step_idle_memory, step_task_rates, step_transfer,
};

int probe_costs(cmp_model *m, int model, const cmp_plan *pl)
{
    costs c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.model = model;
    c.pl = pl;
    c.reps = pl->reps < COSTS_MAX_REPS ? pl->reps : COSTS_MAX_REPS;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        int rc = steps[i](&c);
        stage_release(&c);
        if (rc)
            return probe_fail(m, c.what, rc);
    }
    return CLI_EXIT_OK;
}
