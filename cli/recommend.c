/*
 * recommend.c -- the recommendation of `crew compare`, derived from the
 * measured figures only.
 *
 * The decision:
 *  1. For each model, its best speedup on the workload's curve and the
 *     fewest workers that reach 97% of it (more workers than that buy
 *     nothing measurable, and cost memory).
 *  2. A model whose best speedup beats the other's by more than the noise
 *     margin (5%, 10% with --quick) wins.
 *  3. Otherwise the speedups tie, and the cheaper model per task wins (the
 *     lower measured round trip); the other's measured extra cost and what
 *     it buys (crash isolation, as measured live) are spelled out.
 *  Nothing here is a rule of thumb: the sentences quote the figures.
 */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef struct best {
    double speedup;
    int workers;
} best;

static best best_of(const cmp_model *m)
{
    best b = {NAN, 0};
    double top = NAN;
    for (int k = 0; k < m->ncurve; k++)
        if (isfinite(m->curve[k].speedup) && !(m->curve[k].speedup <= top))
            top = m->curve[k].speedup;
    if (!isfinite(top))
        return b;
    for (int k = 0; k < m->ncurve; k++)
        if (isfinite(m->curve[k].speedup) && m->curve[k].speedup >= 0.97 * top) {
            b.speedup = m->curve[k].speedup;
            b.workers = m->curve[k].workers;
            break;
        }
    return b;
}

static void reason(cmp_recommendation *rec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(cmp_recommendation *rec, const char *fmt, ...)
{
    if (rec->nreasons >= (int)(sizeof rec->reasons / sizeof rec->reasons[0]))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->reasons[rec->nreasons++], sizeof rec->reasons[0], fmt, ap);
    va_end(ap);
}

static const cmp_point *io_best(const cmp_model *m)
{
    const cmp_point *b = NULL;
    for (int k = 0; k < m->nio; k++)
        if (isfinite(m->io[k].items_per_s) && (!b || m->io[k].items_per_s > b->items_per_s))
            b = &m->io[k];
    return b;
}

/* The speedups' winner; *tie when they are within the noise margin (5%,
 * 10% with --quick) and the cheaper model on more of the measured costs
 * (start, round trip, hand-off, memory per worker; a difference under 10%
 * counts for neither) won instead -- threads if even. Returns -1 when
 * neither model has a speedup. */
static int pick_model(const cmp_results *r, best bt, best bp, bool *tie)
{
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    double margin = r->quick ? 0.10 : 0.05;
    *tie = false;
    if (!isfinite(bt.speedup) && !isfinite(bp.speedup))
        return -1;
    if (!isfinite(bp.speedup))
        return CMP_THREADS;
    if (!isfinite(bt.speedup))
        return CMP_PROCESSES;
    if (bp.speedup > bt.speedup * (1 + margin))
        return CMP_PROCESSES;
    if (bt.speedup > bp.speedup * (1 + margin))
        return CMP_THREADS;
    *tie = true;
    const double ct[] = {th->start_ms, th->roundtrip_us, th->handoff_us, th->idle_bytes};
    const double cp[] = {pr->start_ms, pr->roundtrip_us, pr->handoff_us, pr->idle_bytes};
    int score = 0; /* > 0: processes cheaper more often */
    for (size_t i = 0; i < sizeof ct / sizeof ct[0]; i++) {
        if (!isfinite(ct[i]) || !isfinite(cp[i]))
            continue;
        if (cp[i] < ct[i] * 0.9)
            score++;
        else if (ct[i] < cp[i] * 0.9)
            score--;
    }
    return score > 0 ? CMP_PROCESSES : CMP_THREADS;
}

/* The one sentence: the pick, its workers and speedup, and the other model
 * -- or, on a tie, what isolation costs, as measured (only the costs that
 * are real). */
static void headline(cmp_recommendation *rec, const cmp_results *r, int pick, bool tie, best bw, best bo)
{
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    const cmp_model *mw = &r->m[pick], *mo = &r->m[1 - pick];
    char t1[64], t2[64];
    char other[96];
    if (isfinite(bo.speedup))
        snprintf(other, sizeof other, "%s reach %.2fx", mo->name, bo.speedup);
    else
        snprintf(other, sizeof other, "%s could not be measured", mo->name);
    if (bw.speedup < 1.15) {
        snprintf(rec->headline, sizeof rec->headline,
                 "%s, %d worker%s, but concurrency gains little here: the best measured speedup is %.2fx (%s)",
                 mw->name, bw.workers, bw.workers == 1 ? "" : "s", bw.speedup, other);
    } else if (tie) {
        double dstart = pr->start_ms - th->start_ms, drt = pr->roundtrip_us - th->roundtrip_us;
        char cost[160] = "";
        if (isfinite(dstart) && dstart > 0)
            snprintf(cost, sizeof cost, " for %s more per start", fmt_time_s(t1, sizeof t1, dstart / 1e3));
        if (isfinite(drt) && drt > 0)
            snprintf(cost + strlen(cost), sizeof cost - strlen(cost), "%s%s more per task",
                     cost[0] ? " and " : " for ", fmt_time_s(t2, sizeof t2, drt / 1e6));
        if (pick == CMP_THREADS)
            snprintf(rec->headline, sizeof rec->headline,
                     "threads, %d worker%s: %.2fx on %d CPUs; processes reach %.2fx and isolate crashes%s",
                     bw.workers, bw.workers == 1 ? "" : "s", bw.speedup, r->cpus, bo.speedup, cost);
        else
            snprintf(rec->headline, sizeof rec->headline,
                     "processes, %d workers: %.2fx on %d CPUs, as fast as threads (%.2fx), cheaper on most measured "
                     "costs, and they isolate crashes",
                     bw.workers, bw.speedup, r->cpus, bo.speedup);
    } else {
        snprintf(rec->headline, sizeof rec->headline, "%s, %d worker%s: %.2fx on %d CPUs; %s%s",
                 mw->name, bw.workers, bw.workers == 1 ? "" : "s", bw.speedup, r->cpus, other,
                 pick == CMP_THREADS && pr->fault.measured && pr->fault.survived
                     ? " (choose them only if a crashing task must not take the program down)"
                     : "");
    }
}

/* A busy machine first: every speedup below is then in doubt. Returns
 * whether it was busy. */
/* Busy: while the serial baselines -- compare's one thread -- ran, other
 * programs used a quarter of the CPUs, or the baselines waited for a CPU a
 * tenth of their time (compare's own pools were idle then: all that is
 * other programs'). Not the load average, which compare's own pools push
 * up. */
static bool reason_busy(cmp_recommendation *rec, const cmp_results *r)
{
    bool busy = cli_busy_is(&r->busy);
    char t[200];
    if (busy)
        reason(rec, "the machine was busy: %s; the pools shared the CPUs with other programs, so rerun on an idle "
                    "machine before trusting these speedups",
               cli_busy_text(t, sizeof t, &r->busy, "the serial baselines"));
    return busy;
}

/* C is not Python: say what the threads' curve measured. */
static void reason_gil(cmp_recommendation *rec, const cmp_results *r, best bt, bool busy)
{
    if (!(r->m[CMP_THREADS].ncurve > 0 && isfinite(bt.speedup) && strcmp(r->workload, "io") != 0))
        return;
    if (bt.speedup >= 1.15)
        reason(rec,
               "in C there is no GIL: threads ran this work in parallel, %.2fx with %d worker%s on %d CPUs "
               "(Python's threads stay near 1.0x on CPU-bound work)",
               bt.speedup, bt.workers, bt.workers == 1 ? "" : "s", r->cpus);
    else
        reason(rec, "threads did not speed this work up (%.2fx at best): with no GIL in C, the limit is %s",
               bt.speedup,
               busy ? "the CPUs other programs were using, or the work itself"
                    : "the work itself (memory bandwidth, waiting, or too little of it per task)");
}

/* What processes cost, measured; fault isolation, as shown live; waiting
 * work. */
static void reasons_measured(cmp_recommendation *rec, const cmp_results *r)
{
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    char t1[64], t2[64], t3[64], t4[64], t5[64], t6[64];
    if (isfinite(pr->start_ms) && isfinite(th->start_ms))
        reason(rec,
               "start + stop of a pool of 1: threads %s, processes %s; round trip of a tiny task: %s vs %s "
               "(always handed to a worker: %s vs %s)",
               fmt_time_s(t1, sizeof t1, th->start_ms / 1e3), fmt_time_s(t2, sizeof t2, pr->start_ms / 1e3),
               fmt_time_s(t3, sizeof t3, th->roundtrip_us / 1e6), fmt_time_s(t4, sizeof t4, pr->roundtrip_us / 1e6),
               fmt_time_s(t5, sizeof t5, th->handoff_us / 1e6), fmt_time_s(t6, sizeof t6, pr->handoff_us / 1e6));
    if (isfinite(pr->idle_bytes) && isfinite(th->idle_bytes))
        reason(rec, "memory per idle worker: threads %s RSS, processes %s PSS",
               fmt_bytes(t1, sizeof t1, th->idle_bytes), fmt_bytes(t2, sizeof t2, pr->idle_bytes));
    if (th->fault.measured && pr->fault.measured)
        reason(rec,
               "a segfaulting task %s the thread pool's process; in the process pool it failed alone "
               "(%d of %d other tasks completed, pool %s)",
               th->fault.survived ? "did not kill" : "killed", pr->fault.innocent_ok, pr->fault.innocent_total,
               pr->fault.pool_usable ? "still usable" : "broken");
    const cmp_point *it = io_best(th), *ip = io_best(pr);
    if (it && ip)
        reason(rec, "waiting (I/O-bound) work scales with workers, not CPUs: threads %s with %d, processes %s with %d",
               fmt_rate(t1, sizeof t1, it->items_per_s), it->workers, fmt_rate(t2, sizeof t2, ip->items_per_s),
               ip->workers);
}

/* pick -> headline -> reasons, from the figures in r alone. */
void recommend(cmp_results *r)
{
    cmp_recommendation *rec = &r->rec;
    memset(rec, 0, sizeof *rec);
    best bt = best_of(&r->m[CMP_THREADS]), bp = best_of(&r->m[CMP_PROCESSES]);
    bool tie;
    int pick = pick_model(r, bt, bp, &tie);
    if (pick < 0) {
        rec->model = CMP_THREADS;
        rec->speedup = rec->other_speedup = NAN;
        snprintf(rec->headline, sizeof rec->headline,
                 "none: neither model could be measured for this workload");
        return;
    }
    best bw = pick == CMP_THREADS ? bt : bp, bo = pick == CMP_THREADS ? bp : bt;
    rec->model = pick;
    rec->workers = bw.workers;
    rec->speedup = bw.speedup;
    rec->other_speedup = bo.speedup;
    rec->other_workers = bo.workers;
    headline(rec, r, pick, tie, bw, bo);
    bool busy = reason_busy(rec, r);
    reason_gil(rec, r, bt, busy);
    reasons_measured(rec, r);
}
