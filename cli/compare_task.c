/*
 * compare_task.c -- `crew compare --task`: the run for the user's task.
 *
 * DESIGN
 *  overheads of both models (the probes, without the built-in workload's
 *  curve) -> the items laid out (items.c) -> the search under what is left
 *  of the time budget (search.c: the reference, then the configurations)
 *  -> the advice (advice.c) -> one report on stdout, whatever happened: a
 *  task that cannot be measured at all is reported with what was measured
 *  and the reason, and the exit status says so (CLI_EXIT_TASK).
 *  The budget is the whole run's: 5 s with --quick, 30 s by default, 120 s
 *  with --thorough. Nothing here calls the task: trial.c's children do.
 */
#include "search.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kib = NAN;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib * 1024;
}

/* The results' figures that the rest of the report (JSON, CSV, the plot)
 * reads: the recommendation, and per model the best configuration at each
 * worker count as its scaling curve. */
static void fill_results(cmp_results *r, const cmp_task *t, const cmp_search *s, const cmp_advice *a)
{
    r->items = (long)t->n;
    r->item_us = s->prof.item_s * 1e6;
    r->serial_seconds = s->prof.serial_s;
    for (int m = 0; m < CMP_NMODELS; m++) {
        cmp_model *mm = &r->m[m];
        mm->ncurve = 0;
        for (int i = 0; i < s->nc; i++) {
            const cmp_cand *c = &s->c[i];
            if (c->cfg.model != m || !isfinite(c->med))
                continue;
            int k = 0;
            while (k < mm->ncurve && mm->curve[k].workers != c->cfg.workers)
                k++;
            if (k == mm->ncurve) {
                if (mm->ncurve == CMP_MAX_POINTS)
                    continue;
                mm->ncurve++;
                mm->curve[k].speedup = -1;
            }
            if (c->med > mm->curve[k].speedup)
                mm->curve[k] = (cmp_point){c->cfg.workers, (long)t->n, (double)t->n / c->items_per_s, c->med,
                                           c->items_per_s, c->ns > 1 ? c->lo : 0, c->ns > 1 ? c->hi : 0};
        }
        for (int i = 1; i < mm->ncurve; i++) /* by worker count */
            for (int j = i; j > 0 && mm->curve[j].workers < mm->curve[j - 1].workers; j--) {
                cmp_point x = mm->curve[j];
                mm->curve[j] = mm->curve[j - 1];
                mm->curve[j - 1] = x;
            }
    }
    cmp_recommendation *rec = &r->rec;
    memset(rec, 0, sizeof *rec);
    snprintf(rec->headline, sizeof rec->headline, "%s", a->headline);
    for (int i = 0; i < a->nreasons && i < 6; i++)
        snprintf(rec->reasons[rec->nreasons++], sizeof rec->reasons[0], "%s", a->reasons[i]);
    rec->speedup = rec->other_speedup = NAN;
    if (a->found) {
        const cmp_cand *b = &s->c[a->best];
        rec->model = b->cfg.model;
        rec->workers = b->cfg.workers;
        rec->speedup = b->med;
    }
    if (a->runner_up >= 0) {
        rec->other_workers = s->c[a->runner_up].cfg.workers;
        rec->other_speedup = s->c[a->runner_up].med;
    }
}

static int write_out(const cmp_options *o, cmp_results *r, const cmp_task_report *tr)
{
    int w = o->json ? report_json(stdout, r) : o->csv ? report_csv(stdout, r) : task_report_table(stdout, r, tr);
    if (fflush(stdout) != 0 || w != 0) {
        cli_error("cannot write the results: %s", strerror(errno));
        return CLI_EXIT_OUTPUT;
    }
    if (o->plot_path)
        return task_report_svg(o->plot_path, r, tr);
    return CLI_EXIT_OK;
}

int compare_task(const cmp_options *o, cmp_results *r, cmp_plan *pl, double t_start)
{
    static cmp_task t;
    static cmp_search s;
    static cmp_advice a;
    static cmp_task_report tr;
    memset(&t, 0, sizeof t);
    memset(&s, 0, sizeof s);
    memset(&a, 0, sizeof a);
    memset(&tr, 0, sizeof tr);
    tr.task = &t;
    tr.search = &s;
    tr.advice = &a;
    r->task = &tr;
    char resolved[PATH_MAX];
    t.path = realpath(o->task_path, resolved) ? resolved : o->task_path;
    t.symbol = o->task_symbol;
    t.timeout = pl->timeout;
    t.cpus = r->cpus;
    t.result_cap = 4096;
    t.start_method = pl->pool_method;
    t.start_method_name = pl->pool_method_name;
    t.workers = o->nworkers ? o->workers : NULL;
    t.nworkers = o->nworkers;
    double avail = mem_available();
    t.mem_limit = isfinite(avail) ? fmin(avail * 0.5, 8.0 * 1024 * 1024 * 1024) : 2.0 * 1024 * 1024 * 1024;
    int ex;
    cmp_input in = {o->arg, o->arg_len, o->args_path, o->record, o->delim ? o->delim : '\n', o->index, o->items};
    size_t one = (o->arg_len ? o->arg_len : 1) + (o->index ? 8 : 0);
    long nmax = (long)fmax(64, fmin((double)CMP_ITEMS_MAX, 64.0 * 1024 * 1024 / (double)one));
    if ((ex = items_build(&t.items, &in, nmax)) != 0)
        return ex;
    t.n = t.items.n;
    int rc = task_open(&t, t.items.n);
    if (rc) {
        cli_error("cannot make the results' region: %s", crew_strerror(rc));
        task_close(&t);
        return CLI_EXIT_FAILURE;
    }
    int failed = 0;
    /* The overheads are context here, the task's own figures the point:
     * fewer repetitions, and only the pools' start method. */
    pl->rt_calls = pl->rt_calls / 4 > 50 ? pl->rt_calls / 4 : 50;
    pl->batch /= 4;
    pl->map_items /= 4;
    pl->xfer_calls = pl->xfer_calls / 2 > 4 ? pl->xfer_calls / 2 : 4;
    pl->reps = pl->reps > 3 ? 3 : pl->reps;
    pl->methods[0] = pl->pool_method;
    pl->method_names[0] = pl->pool_method_name;
    pl->nmethods = 1;
    for (int model = 0; model < CMP_NMODELS; model++) {
        ex = probe_model(r, model, pl); /* the overheads only, for a user's task */
        if (ex == CLI_EXIT_FAILURE) {
            task_close(&t);
            return ex;
        }
        failed = ex ? ex : failed;
    }
    snprintf(r->workload_desc, sizeof r->workload_desc, "your task %s: %s", o->task_spec, t.items.desc);
    double total = o->quick ? 5 : o->thorough ? 120 : 30;
    double budget = fmax(1.5, total - (crew_now() - t_start) - 0.4);
    char why[240] = "";
    ex = search_run(&t, &s, r, budget, o->thorough, t.items.n_given, why, sizeof why);
    cli_progress_done();
    if (ex) {
        snprintf(tr.failure, sizeof tr.failure, "%s", why);
        cli_error("%s", why);
    } else {
        advise(&s, r, &a);
        if (!a.found)
            ex = CLI_EXIT_TASK;
    }
    fill_results(r, &t, &s, &a);
    tr.exit = ex ? ex : failed;
    r->elapsed_s = crew_now() - t_start;
    int w = write_out(o, r, &tr);
    task_close(&t);
    r->task = NULL;
    return w ? w : tr.exit;
}
