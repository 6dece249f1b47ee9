/*
 * search.c -- where the time budget of `crew compare --task` goes.
 *
 * DESIGN
 *  reference (verify.c: every item alone, the task's profile) -> the
 *  candidates (space.c) -> rung 1 -> more workers while a waiting task's top
 *  keeps paying -> successive halving -> every candidate's figures.
 *  Rung 1 measures every candidate once: the plain variant of each model and
 *  worker count and the variant the profile points at whatever the budget
 *  (both models get figures everywhere), the rest most workers first while
 *  it lasts. Each later rung keeps the faster half, always the best of each
 *  model and every candidate still within the noise of the best (the answer
 *  is open between them), and measures them with twice the rounds, as far
 *  as the budget goes.
 *  A candidate leaves the race at once when its results differ from the
 *  reference, its process dies, it hangs, it grows without bound, or it
 *  shows an impossible speedup twice (above its worker count, or above the
 *  CPU count for work that computes): the first time it is measured again
 *  after a fresh baseline, never acted on. Thread safety is a property of
 *  the task, so wrong results from any thread pool of 2 or more workers, or
 *  a crash in any thread pool, rule out every thread configuration.
 *  A round's speedup is against the serial items its child timed just
 *  before it (trial.c), so drift hits both alike; when those cannot run (a
 *  crash among them) it is against the median of the serial passes: the
 *  reference and the baselines measured between rungs when they are cheap.
 *  Each trial is estimated before it runs (child and pool start, the rounds,
 *  the serial items beside them) and skipped when the budget cannot take it.
 */
#include "search.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- measuring */
static bool eligible(const cmp_cand *c) { return c->state == CAND_LIVE || c->state == CAND_OUT; }

static double base_item(cmp_search *s)
{
    double v[16];
    for (int i = 0; i < s->nbase; i++)
        v[i] = s->baseline[i];
    s->item_s = median(v, s->nbase);
    return s->item_s;
}

static void note(cmp_search *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(cmp_search *s, const char *fmt, ...)
{
    if (s->nnotes >= (int)(sizeof s->notes / sizeof s->notes[0]))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->notes[s->nnotes++], sizeof s->notes[0], fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- budget */
static double est_speed(const cmp_search *s, const cmp_task *t, const cmp_cand *c)
{
    double w = c->cfg.workers, top = s->prof.waiting ? t->cpus / fmax(s->prof.cpu_ratio, 0.01) : t->cpus;
    return fmax(0.5, 0.8 * fmin(w, top));
}

/* The items one round runs: all of them, unless that round would take
 * long (a slow configuration of a slow task: 1 worker of a task that
 * waits); then a prefix worth about a tenth of a second of the round (a
 * quarter with the longer budgets), never fewer than 4 per worker or 16. */
static uint64_t run_items(const cmp_search *s, const cmp_task *t, const cmp_cand *c)
{
    double sp = fmax(isfinite(c->med) ? c->med : est_speed(s, t, c), 0.5);
    double target = s->budget < 10 ? 0.1 : 0.25, round = s->prof.item_s * (double)t->n / sp;
    if (!(round > target))
        return t->n;
    double k = fmax(fmax(4.0 * c->cfg.workers, 16), target * sp / s->prof.item_s);
    return k < (double)t->n ? (uint64_t)ceil(k) : t->n;
}

static double est_trial(const cmp_search *s, const cmp_task *t, const cmp_cand *c, int rounds)
{
    double fixed = c->cfg.model == CMP_THREADS ? 0.01 + 0.0002 * c->cfg.workers : 0.03 + 0.003 * c->cfg.workers;
    double n = (double)run_items(s, t, c);
    double round = isfinite(c->items_per_s) && c->items_per_s > 0 ? n / c->items_per_s
                                                                  : s->prof.item_s * n / est_speed(s, t, c);
    double serial = s->no_serial_beside ? 0 : fmax(round, 0.002);
    return fixed + round * (rounds + 0.3) + serial * rounds; /* the warm-up is a part of a round */
}

/* What one trial of a candidate says about it. */
static void judge(cmp_search *s, const cmp_task *t, cmp_cand *c, const trial_result *res)
{
    char b[32];
    for (int i = 0; i < res->rounds && c->ns < CMP_MAX_SAMPLES; i++)
        if (res->t[i] > 0 && res->ran_items[i]) {
            c->seconds[c->ns] = res->t[i];
            c->sp[c->ns] = res->speedup[i];
            c->ips[c->ns++] = (double)res->ran_items[i] / res->t[i];
        }
    if (isfinite(res->mem_per_item) && !(res->mem_per_item <= c->mem_per_item))
        c->mem_per_item = res->mem_per_item;
    if (res->check.checked && (res->check.wrong >= c->check.wrong || c->check.checked == 0))
        c->check = res->check;
    if (res->serial_died) {
        /* the serial items timed beside the rounds killed it, not the
         * pool: no more of those, and this trial does not count */
        s->no_serial_beside = true;
        c->trials--;
        return;
    }
    if (res->hung) {
        c->state = CAND_HUNG;
        snprintf(c->why, sizeof c->why, "did not finish a round within --timeout (%.0f s)", t->timeout);
    } else if (res->died_signal || res->died_code) {
        c->state = CAND_CRASHED;
        c->died_signal = res->died_signal;
        c->died_code = res->died_code;
        c->died_at = res->died_at;
        const char *a = res->died_signal ? sigabbrev_np(res->died_signal) : NULL;
        if (res->died_signal)
            snprintf(c->why, sizeof c->why, "the whole process died (SIG%s) after %llu items", a ? a : "?",
                     (unsigned long long)res->died_at);
        else
            snprintf(c->why, sizeof c->why, "the whole process ended (exit code %d) after %llu items",
                     res->died_code, (unsigned long long)res->died_at);
        if (c->cfg.model == CMP_THREADS)
            s->threads_crash = true;
    } else if (res->status == CREW_ENOMEM && strstr(res->error, "memory")) {
        c->state = CAND_LEAKS;
        snprintf(c->why, sizeof c->why, "its memory grew past %s", fmt_bytes(b, sizeof b, t->mem_limit));
    } else if (res->status) {
        c->state = CAND_FAILED;
        snprintf(c->why, sizeof c->why, "could not run: %s (%s)", crew_err_name(res->status), res->error);
    } else if (res->check.wrong) {
        c->state = CAND_WRONG;
        snprintf(c->why, sizeof c->why, "gave different results for %llu of %llu items (the first: item %lld)",
                 (unsigned long long)res->check.wrong, (unsigned long long)res->check.checked,
                 (long long)res->check.first_wrong);
        if (c->cfg.workers >= 2 && c->cfg.model == CMP_THREADS)
            s->thread_unsafe = true;
        if (c->cfg.workers >= 2 && c->cfg.model == CMP_PROCESSES)
            s->process_unsafe = true;
    }
}

/* The fastest speedup this candidate could honestly show. */
static double speed_limit(const cmp_search *s, const cmp_task *t, const cmp_cand *c)
{
    double w = c->cfg.workers;
    if (s->prof.cpu_ratio >= 0.85 && t->cpus < w)
        w = t->cpus;
    return w * 1.15 + 0.05;
}

static double remaining(const cmp_search *s) { return s->budget - (crew_now() - s->spent); }

static void baseline_again(cmp_search *s, cmp_task *t)
{
    if (s->nbase >= 16 || s->prof.item_s * (double)t->n > 0.1 * remaining(s))
        return;
    double per = verify_baseline(t, &s->prof, false, NULL);
    if (isfinite(per) && per > 0)
        s->baseline[s->nbase++] = per;
    base_item(s);
}

/* How many items to time serially beside each round: about as long as the
 * round itself, at least 2 ms of work (the items that crashed in the
 * reference are left out; if another one crashes there, none from then
 * on). */
static uint64_t serial_k(const cmp_search *s, const cmp_task *t, const cmp_cand *c, uint64_t n)
{
    if (s->no_serial_beside || s->prof.hung || !(s->prof.item_s > 0))
        return 0;
    double sp = isfinite(c->med) ? c->med : est_speed(s, t, c);
    double k = fmax((double)n / fmax(sp, 1), 0.002 / s->prof.item_s);
    return (uint64_t)fmin(ceil(k), (double)n);
}

static void measure_once(cmp_search *s, cmp_task *t, cmp_cand *c, int rounds, bool skip, const char *stage)
{
    trial_req q;
    trial_req_init(t, &q, &c->cfg);
    q.rounds = rounds;
    q.flags = (s->prof.deterministic ? TRIAL_VERIFY : 0) | (skip ? TRIAL_SKIP_CRASHED : 0);
    if (c->cfg.dispatch == CMP_MAP)
        q.result_cap = t->map_out;
    q.n = run_items(s, t, c);
    q.serial_k = serial_k(s, t, c, q.n);
    char what[160], name[100];
    snprintf(what, sizeof what, "%s: %s (search ~%.0f s left)", stage, config_name(name, sizeof name, &c->cfg),
             fmax(remaining(s), 0));
    cli_progress("%s", what);
    trial_result res;
    int rc = trial_run(t, &q, what, &res);
    c->trials++;
    if (rc) {
        c->state = CAND_FAILED;
        snprintf(c->why, sizeof c->why, "could not start its child process: %s", crew_err_name(rc));
        return;
    }
    judge(s, t, c, &res);
    if (res.serial_died) /* once more, without serial items beside the rounds */
        measure_once(s, t, c, rounds, skip, stage);
}

/* Measures c; an impossible figure is measured again after a fresh
 * baseline, and only a second one rules the candidate out. */
static void measure(cmp_search *s, cmp_task *t, cmp_cand *c, int rounds, const char *stage)
{
    bool skip = c->cfg.model == CMP_THREADS && s->prof.crashed && s->threads_crash;
    int before = c->ns;
    measure_once(s, t, c, rounds, skip, stage);
    search_stats(c, s->item_s);
    if (!eligible(c) || !(c->med > speed_limit(s, t, c)))
        return;
    if (remaining(s) < 2 * est_trial(s, t, c, rounds)) { /* no time to measure it again: never acted on */
        c->state = CAND_IMPOSSIBLE;
        snprintf(c->why, sizeof c->why, "measured %.2fx with %d worker%s on %d CPUs, more than it can be, and "
                 "the budget left no time to measure it again", c->med, c->cfg.workers,
                 c->cfg.workers == 1 ? "" : "s", t->cpus);
        return;
    }
    c->flagged = true;
    double first = c->med;
    c->ns = before; /* never acted on: these samples go */
    baseline_again(s, t);
    measure_once(s, t, c, rounds, skip, "measuring again (impossible figure)");
    search_stats(c, s->item_s);
    if (eligible(c) && c->med > speed_limit(s, t, c)) {
        c->state = CAND_IMPOSSIBLE;
        snprintf(c->why, sizeof c->why,
                 "measured %.2fx and then %.2fx with %d worker%s on %d CPUs: more than it can be, so the "
                 "figure is not used", first, c->med, c->cfg.workers, c->cfg.workers == 1 ? "" : "s", t->cpus);
    }
}

/* Rung 0: every candidate once. Fewer items per run (never fewer than 16,
 * nor fewer than twice the most workers) when the budget cannot take one
 * round of each with all of them. */
static int rung0_rounds(cmp_search *s, cmp_task *t, bool n_given)
{
    double share = 0.4 * remaining(s), fixed = 0, per_round = 0;
    int maxw = 1;
    for (int i = 0; i < s->nc; i++) {
        fixed += est_trial(s, t, &s->c[i], 0);
        per_round += est_trial(s, t, &s->c[i], 1) - est_trial(s, t, &s->c[i], 0);
        maxw = s->c[i].cfg.workers > maxw ? s->c[i].cfg.workers : maxw;
    }
    if (!n_given && per_round > 0 && fixed + per_round > share) {
        double f = fmax(share - fixed, share * 0.25) / per_round;
        size_t n = (size_t)((double)t->n * f), least = (size_t)(2 * maxw) > 16 ? (size_t)(2 * maxw) : 16;
        if (n < least)
            n = least;
        if (n < t->n)
            t->n = n;
        s->prof.serial_s = s->prof.item_s * (double)t->n;
    }
    per_round = 0;
    for (int i = 0; i < s->nc; i++)
        per_round += est_trial(s, t, &s->c[i], 1) - est_trial(s, t, &s->c[i], 0);
    int r = per_round > 0 ? (int)((share - fixed) / per_round) : 1;
    return r < 1 ? 1 : r > 3 ? 3 : r;
}

/* The variants rung 1 measures whatever the budget: the plain one (one
 * future per item, copied, no recycling) and the one the task's profile
 * points at (by reference for big arguments, recycling for a leak, a map
 * for tiny items). */
static bool plain_of(const cmp_search *s, const cmp_task *t, const cmp_config *c)
{
    const cmp_profile *p = &s->prof;
    bool fut = c->dispatch == CMP_FUTURES, rec = c->recycle_tasks || c->recycle_memory;
    if (fut && c->args == CMP_COPY && !rec)
        return true;
    if (p->leaks && c->model == CMP_PROCESSES && c->recycle_tasks && fut && c->args == CMP_COPY)
        return true;
    if ((t->items.max_len >= 4096 || t->items.shared) && fut && c->args == CMP_BYREF && !c->recycle_memory)
        return true;
    return p->item_s < 20e-6 && c->dispatch == CMP_MAP && c->chunk == 0 && !rec;
}

static void rung0(cmp_search *s, cmp_task *t, int rounds)
{
    /* A task that crashed in the reference: one thread pool runs every item
     * to show what the crash does to it; the others leave the crashing
     * items out, so threads still get figures. */
    int demo = -1;
    for (int i = 0; i < s->nc && s->prof.crashed; i++)
        if (s->c[i].cfg.model == CMP_THREADS && (demo < 0 || s->c[i].cfg.workers > s->c[demo].cfg.workers))
            demo = i;
    if (demo >= 0)
        measure(s, t, &s->c[demo], rounds, "rung 1");
    /* The plain variant (futures, copied, no recycling) of every model and
     * worker count first, whatever the budget: both models get figures at
     * every point. Then the other variants, the most workers first, the
     * models taking turns: if the budget runs out, what goes unmeasured is
     * what was least likely to win. */
    int order[CMP_MAX_CANDIDATES], n = 0;
    for (int i = 0; i < s->nc; i++)
        order[n++] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            const cmp_config *a = &s->c[order[j]].cfg, *b = &s->c[order[j - 1]].cfg;
            bool pa = plain_of(s, t, a), pb = plain_of(s, t, b);
            if (!(pa > pb || (pa == pb && (a->workers > b->workers ||
                                           (a->workers == b->workers && a->model < b->model)))))
                break;
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (int j = 0; j < n; j++) {
        int i = order[j];
        char stage[48];
        if (i == demo)
            continue;
        if (!plain_of(s, t, &s->c[i].cfg) && remaining(s) < est_trial(s, t, &s->c[i], 1) * 0.5) {
            s->c[i].state = CAND_SKIPPED;
            snprintf(s->c[i].why, sizeof s->c[i].why, "not measured: the time budget ran out");
            continue;
        }
        snprintf(stage, sizeof stage, "rung 1, %d of %d", j + 1, s->nc);
        measure(s, t, &s->c[i], rounds, stage);
    }
}

/* Work that waits: while the top of a model's ladder is its best point and
 * the cap allows, try 4x the workers; stop when that gains under 10%. */
static void extend_waiting(cmp_search *s, cmp_task *t, int rounds)
{
    for (int m = CMP_THREADS; m <= CMP_PROCESSES && s->prof.waiting && !t->nworkers; m++)
        for (int step = 0; step < 4; step++) {
            int best = -1, topw = 0;
            for (int i = 0; i < s->nc; i++) {
                const cmp_cand *c = &s->c[i];
                if (c->cfg.model != m || !eligible(c) || !isfinite(c->med))
                    continue;
                topw = c->cfg.workers > topw ? c->cfg.workers : topw;
                if (best < 0 || c->med > s->c[best].med)
                    best = i;
            }
            if (best < 0 || s->c[best].cfg.workers < topw || topw >= s->cap_workers)
                break;
            cmp_config nc = s->c[best].cfg;
            nc.workers = topw * 4 < s->cap_workers ? topw * 4 : s->cap_workers;
            if (!search_add(s, &nc) || remaining(s) < est_trial(s, t, &s->c[s->nc - 1], rounds))
                break;
            double before = s->c[best].med;
            measure(s, t, &s->c[s->nc - 1], rounds, "more workers: the task waits");
            if (!(s->c[s->nc - 1].med > before * 1.10))
                break;
        }
}

/* Thread safety and crashes are the task's: rule out every configuration
 * they touch, with the reason. */
static void rule_out(cmp_search *s)
{
    const cmp_cand *proof = NULL;
    for (int i = 0; i < s->nc; i++)
        if (s->c[i].state == CAND_WRONG && s->c[i].cfg.model == CMP_THREADS && s->c[i].cfg.workers >= 2)
            proof = proof ? proof : &s->c[i];
    for (int i = 0; i < s->nc; i++) {
        cmp_cand *c = &s->c[i];
        char b[32];
        if (!eligible(c))
            continue;
        if (c->cfg.model == CMP_THREADS && s->threads_crash) {
            c->state = CAND_CRASHED;
            snprintf(c->why, sizeof c->why, "%s", s->prof.crashed
                                                      ? "your task crashes on some items, and under threads a crash "
                                                        "kills the whole program (measured without those items)"
                                                      : "another thread pool died running this task");
        } else if (c->cfg.model == CMP_THREADS && s->thread_unsafe && proof) {
            /* one worker gives the reference results, but one more breaks
             * them: a pool that is one option away from wrong results is
             * not advice */
            c->state = CAND_WRONG;
            snprintf(c->why, sizeof c->why, "not thread-safe: %s x%d gave different results for %llu of %llu items",
                     cmp_model_word(proof->cfg.model), proof->cfg.workers, (unsigned long long)proof->check.wrong,
                     (unsigned long long)proof->check.checked);
        } else if (c->cfg.model == CMP_PROCESSES && c->cfg.workers >= 2 && s->process_unsafe) {
            c->state = CAND_WRONG;
            snprintf(c->why, sizeof c->why, "results depend on the other workers (another process pool gave "
                                            "different results)");
        } else if (s->prof.leaks && !(c->cfg.recycle_tasks || c->cfg.recycle_memory)) {
            c->state = CAND_LEAKS;
            snprintf(c->why, sizeof c->why, "memory grows %s per item and nothing bounds it%s",
                     fmt_bytes(b, sizeof b, s->prof.leak_per_item),
                     c->cfg.model == CMP_THREADS ? " (the threads share one heap)" : "");
        }
    }
}

/* ---------------------------------------------------------------- halving */
static const cmp_search *sort_s;
static int by_speed(const void *a, const void *b)
{
    double x = sort_s->c[*(const int *)a].med, y = sort_s->c[*(const int *)b].med;
    return x > y ? -1 : x < y;
}

/* Keeps the faster half, the best of each model and whatever is still
 * within the noise of the best; marks the rest slower. Returns how many
 * stay, their indices in keep[]. */
static int cut(cmp_search *s, int *keep, double floor)
{
    int idx[CMP_MAX_CANDIDATES], k = 0, nk = 0;
    for (int i = 0; i < s->nc; i++)
        if (s->c[i].state == CAND_LIVE && isfinite(s->c[i].med))
            idx[k++] = i;
    if (k == 0)
        return 0;
    sort_s = s;
    qsort(idx, (size_t)k, sizeof idx[0], by_speed);
    const cmp_cand *b = &s->c[idx[0]];
    bool model_kept[2] = {false, false};
    for (int j = 0; j < k; j++) {
        cmp_cand *c = &s->c[idx[j]];
        bool open = search_open(c, b, floor);
        if (j < (k + 1) / 2 || !model_kept[c->cfg.model] || open) {
            keep[nk++] = idx[j];
            model_kept[c->cfg.model] = true;
        } else {
            c->state = CAND_OUT;
            snprintf(c->why, sizeof c->why, "slower: %.2fx against %.2fx for the best", c->med, b->med);
        }
    }
    return nk;
}

static void halving(cmp_search *s, cmp_task *t, int rounds0, int target, double floor)
{
    for (int rung = 1; rung < 8; rung++) {
        int keep[CMP_MAX_CANDIDATES];
        int nk = cut(s, keep, floor);
        bool enough = true;
        for (int j = 0; j < nk; j++)
            enough = enough && s->c[keep[j]].ns >= target;
        /* settled: every finalist has its rounds and the best stands clear
         * of the runner-up; else the answer is open and the budget goes on */
        bool settled = enough && (nk <= 1 || !search_open(&s->c[keep[1]], &s->c[keep[0]], floor));
        if (nk == 0 || settled || (enough && rung > 5))
            break;
        int rounds = rounds0 << rung;
        rounds = rounds > 16 ? 16 : rounds;
        double cost;
        for (;;) {
            cost = 0;
            for (int j = 0; j < nk; j++)
                cost += est_trial(s, t, &s->c[keep[j]], rounds);
            if (cost <= remaining(s) || rounds == 1)
                break;
            rounds /= 2;
        }
        while (nk > 1 && cost > remaining(s)) /* the slowest of the kept wait */
            cost -= est_trial(s, t, &s->c[keep[--nk]], rounds);
        if (cost > remaining(s))
            break;
        if (s->prof.item_s * (double)t->n < 0.08 * remaining(s))
            baseline_again(s, t);
        for (int j = 0; j < nk; j++) {
            char stage[48];
            snprintf(stage, sizeof stage, "rung %d, %d of %d", rung + 1, j + 1, nk);
            measure(s, t, &s->c[keep[j]], rounds, stage);
        }
        s->rungs = rung + 1;
        rule_out(s);
    }
}

int search_run(cmp_task *t, cmp_search *s, const cmp_results *r, double budget, bool thorough, bool n_given,
               char *why, size_t whylen)
{
    (void)r;
    memset(s, 0, sizeof *s);
    s->budget = budget;
    s->spent = crew_now();
    int ex = verify_reference(t, &s->prof, 0.15 * budget, n_given, why, whylen);
    if (ex)
        return ex;
    s->baseline[s->nbase++] = s->prof.item_s;
    base_item(s);
    s->prof.arg_len = t->items.max_len;
    uint32_t out = s->prof.max_len < 8 ? 8 : s->prof.max_len;
    t->map_out = (out + 7u) & ~7u;

    /* the same items alone once more: is the task deterministic at all? */
    cmp_check dc;
    double per = verify_baseline(t, &s->prof, true, &dc);
    if (isfinite(per) && dc.checked >= t->n && s->nbase < 16)
        s->baseline[s->nbase++] = per, base_item(s);
    s->prof.det_checked = dc.checked;
    s->prof.det_diff = dc.wrong;
    s->prof.deterministic = dc.wrong == 0;
    if (!s->prof.deterministic)
        note(s, "your task gave different results for %llu of %llu items when the same 1-worker run was "
                "repeated: results cannot be compared, only statuses are",
             (unsigned long long)dc.wrong, (unsigned long long)dc.checked);

    search_plan_space(s, t);
    int rounds = rung0_rounds(s, t, n_given);
    rung0(s, t, rounds);
    extend_waiting(s, t, rounds);
    rule_out(s);
    s->rungs = 1;
    double floor = budget < 10 ? 0.05 : 0.03;
    s->noise_floor = floor;
    halving(s, t, rounds, thorough ? 9 : budget < 10 ? 3 : 5, floor);
    for (int i = 0; i < s->nc; i++)
        search_stats(&s->c[i], s->item_s);
    /* the serial figures reported: the median of every serial pass, not the
     * reference's alone */
    if (s->item_s > 0) {
        s->prof.item_s = s->item_s;
        s->prof.serial_s = s->item_s * (double)t->n;
    }
    return 0;
}
