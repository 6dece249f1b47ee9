/*
 * curve.c -- the workload's speedup curve: the plan's items on a pool of
 * each worker count, against the same items run serially.
 *
 * DESIGN
 *  The pools are made first and the runs interleaved: each round runs the
 *  items serially once (when the serial baseline is measured here) and then
 *  once on every pool, and a point's speedup is the median of its per-round
 *  ratios serial / pool. Load that drifts during the run (another program,
 *  a frequency change) then hits the baseline and the pools alike instead
 *  of skewing whichever was measured last. When the baseline is not
 *  measured here (the user's task must not run in this process) the ratio
 *  uses the serial time measured elsewhere.
 *
 *  All pools are alive at once when they are small; a long --workers list
 *  with big counts is measured one pool at a time instead (each still
 *  paired with its own serial runs), so it never holds thousands of workers
 *  at once. Rounds stop after plan->reps, or after two once a group has
 *  spent its time budget (plan->point_budget per point).
 *
 *  A task failure is the user's (CLI_EXIT_TASK); a pool that cannot be made
 *  or waited for is a measurement failure (CLI_EXIT_MEASURE).
 */
#include "probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CURVE_MAX_ROUNDS 16

/* One curve being measured. */
typedef struct curve_run {
    int model;
    const cmp_plan *pl;
    const char *name, *what;        /* for the progress lines */
    size_t max_arg, max_res;
    unsigned char *out;             /* results of one run of all items */
    crew_failure *fl;
    crew_pool *pools[CMP_MAX_POINTS];
    /* per point and round: the pool's time and the serial time of that round */
    double t[CMP_MAX_POINTS][CURVE_MAX_ROUNDS], st[CMP_MAX_POINTS][CURVE_MAX_ROUNDS];
    int rounds[CMP_MAX_POINTS];
    double all_serial[CMP_MAX_POINTS * CURVE_MAX_ROUNDS];
    int nserial;
    int task_rc;                    /* the status a task run returned, if one failed */
} curve_run;

/* All items once in the calling thread, no pool: seconds, or NaN with
 * *task_rc set when the task failed. */
static cli_busy serial_busy; /* every serial pass's wait for a CPU: others' load */

void probe_serial_busy(cli_busy *out) { *out = serial_busy; }

static double serial_once(const cmp_plan *pl, unsigned char *res, int *task_rc)
{
    cli_busy_span span;
    cli_busy_begin(&span);
    double t0 = crew_now();
    for (long k = 0; k < pl->items; k++) {
        size_t rl = 0;
        int rc = pl->task(NULL, pl->in + (size_t)k * pl->in_size, pl->in_size, res, pl->out_size, &rl);
        if (rc < 0) {
            *task_rc = rc;
            return NAN;
        }
    }
    double t = crew_now() - t0;
    cli_busy_end(&span, &serial_busy);
    return t;
}

/* Makes the pools of points g0..g1 and warms each up: every worker starts,
 * touches its stack, faults in code. */
static int group_open(curve_run *c, int g0, int g1)
{
    const cmp_plan *pl = c->pl;
    int rc = 0;
    for (int k = g0; k < g1 && rc == 0; k++) {
        int w = pl->curve_workers[k];
        cli_progress("%s: %d worker%s ready for %s (%d/%d)", c->name, w, w == 1 ? "" : "s", c->what, k + 1,
                     pl->ncurve);
        if ((rc = probe_pool_new(&c->pools[k], c->model, w, pl->pool_method, c->max_arg, c->max_res)) != 0) {
            c->pools[k] = NULL;
            break;
        }
        size_t warm = (size_t)(pl->items < w ? pl->items : w);
        rc = probe_submit_run(c->pools[k], pl->task, pl->in, pl->in_size, warm, c->out, pl->out_size, pl->timeout,
                              c->fl);
        if (rc)
            c->task_rc = rc;
    }
    return rc;
}

/* One round: the serial baseline (or *serial), then every pool of the group. */
static int group_round(curve_run *c, int g0, int g1, int i, bool serial_here, const double *serial)
{
    const cmp_plan *pl = c->pl;
    double s;
    if (serial_here) {
        cli_progress("%s: %s, round %d/%d: serial baseline", c->name, c->what, i + 1, pl->reps);
        s = serial_once(pl, c->out, &c->task_rc);
        if (c->task_rc)
            return c->task_rc;
        c->all_serial[c->nserial++] = s;
    } else {
        s = *serial;
    }
    for (int k = g0; k < g1; k++) {
        cli_progress("%s: %s, round %d/%d: %d worker%s", c->name, c->what, i + 1, pl->reps, pl->curve_workers[k],
                     pl->curve_workers[k] == 1 ? "" : "s");
        double t1 = crew_now();
        int rc = probe_submit_run(c->pools[k], pl->task, pl->in, pl->in_size, (size_t)pl->items, c->out,
                                  pl->out_size, pl->timeout, c->fl);
        if (rc) {
            c->task_rc = rc;
            return rc;
        }
        c->t[k][i] = crew_now() - t1;
        c->st[k][i] = s;
        c->rounds[k]++;
    }
    return 0;
}

static int group_rounds(curve_run *c, int g0, int g1, bool serial_here, const double *serial)
{
    const cmp_plan *pl = c->pl;
    double spent = 0;
    int rc = 0;
    for (int i = 0; i < pl->reps && i < CURVE_MAX_ROUNDS && rc == 0 &&
                    (i < 2 || spent < pl->point_budget * (g1 - g0));
         i++) {
        double t0 = crew_now();
        rc = group_round(c, g0, g1, i, serial_here, serial);
        spent += crew_now() - t0;
    }
    return rc;
}

/* Destroys the group's pools -- except that a user's task still running past
 * the deadline in a thread cannot be stopped, and destroying its pool would
 * wait for it: that pool is left to the sacrificial child's exit. */
static void group_close(curve_run *c, int g0, int g1, int rc)
{
    bool stuck = rc == CREW_ETIMEDOUT && c->model == CMP_THREADS && c->pl->user;
    for (int k = g0; k < g1; k++)
        if (c->pools[k] && !stuck) {
            crew_pool_destroy(c->pools[k]);
            c->pools[k] = NULL;
        }
}

static void points(const curve_run *c, cmp_point *pts, int *npts)
{
    const cmp_plan *pl = c->pl;
    for (int k = 0; k < pl->ncurve; k++) {
        cmp_point *pt = &pts[(*npts)++];
        double ratio[CURVE_MAX_ROUNDS], t[CURVE_MAX_ROUNDS];
        for (int i = 0; i < c->rounds[k]; i++) {
            ratio[i] = c->st[k][i] / c->t[k][i];
            t[i] = c->t[k][i];
        }
        pt->workers = pl->curve_workers[k];
        pt->items = pl->items;
        pt->speedup = median(ratio, c->rounds[k]);
        pt->seconds = median(t, c->rounds[k]);
        pt->items_per_s = (double)pl->items / pt->seconds;
        pt->lo = pt->hi = 0;
        for (int i = 0; i < c->rounds[k]; i++) { /* median() sorted them */
            pt->lo = i == 0 || ratio[i] < pt->lo ? ratio[i] : pt->lo;
            pt->hi = ratio[i] > pt->hi ? ratio[i] : pt->hi;
        }
    }
}

int probe_curve(int model, const cmp_plan *pl, bool serial_here, double *serial, cmp_point *pts, int *npts,
                crew_failure *fl, int *rc_out)
{
    curve_run c;
    memset(&c, 0, sizeof c);
    c.model = model;
    c.pl = pl;
    c.name = model == CMP_THREADS ? "threads" : "processes";
    c.what = pl->user ? "your task" : "the workload";
    c.max_arg = pl->in_size > 65536 ? pl->in_size : 65536;
    c.max_res = pl->out_size > 65536 ? pl->out_size : 65536;
    c.out = calloc((size_t)pl->items, pl->out_size ? pl->out_size : 1);
    c.fl = fl;
    int rc = c.out ? 0 : CREW_ENOMEM, n = pl->ncurve;
    long total = 0;
    for (int k = 0; k < n; k++)
        total += pl->curve_workers[k];
    int group = total <= 256 ? n : 1;
    *npts = 0;
    for (int g0 = 0; g0 < n && rc == 0; g0 += group) {
        int g1 = g0 + group < n ? g0 + group : n;
        rc = group_open(&c, g0, g1);
        if (rc == 0)
            rc = group_rounds(&c, g0, g1, serial_here, serial);
        group_close(&c, g0, g1, rc);
    }
    free(c.out);
    if (rc) {
        *rc_out = rc;
        /* a pool that cannot be made or waited for is a measurement failure;
         * any other status came from the task itself (its error, its death,
         * or -- for the user's task -- not finishing within --timeout) */
        bool task = c.task_rc != 0 && rc != CREW_ENOMEM && rc != CREW_ESHUTDOWN &&
                    (rc != CREW_ETIMEDOUT || pl->user);
        return task ? CLI_EXIT_TASK : CLI_EXIT_MEASURE;
    }
    if (serial_here)
        *serial = median(c.all_serial, c.nserial);
    points(&c, pts, npts);
    return CLI_EXIT_OK;
}
