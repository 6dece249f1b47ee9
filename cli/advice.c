/*
 * advice.c -- what `crew compare --task` recommends, and why, from the
 * search's figures only.
 *
 * DESIGN
 *  Only a configuration that gave the reference results, did not die, hang
 *  or grow without bound, and whose figure was possible can be recommended.
 *  Among those:
 *   1. the fastest (median speedup over all its timed rounds);
 *   2. every one whose median is within the noise of it is a tie: the noise
 *      is the larger relative half-spread of the two (min..max of their
 *      rounds, one outlier dropped at each end from 6 rounds on), never
 *      less than the floor (5% for short budgets, else 3%);
 *   3. among the tied, the cheapest wins: the least memory in idle workers
 *      (workers x the measured memory per idle worker of its model), a
 *      difference under 10% counting for nothing; then the simplest (no
 *      recycling, one future per item, adaptive chunks, copied arguments).
 *  So two runs on a quiet machine agree, and on a noisy one they still name
 *  the same cheap option when the figures cannot tell. The reasons say what
 *  ruled the others out, what the tie was, and what the task showed
 *  (waiting, leaking, big arguments, tiny items, a busy machine).
 */
#include "search.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* The finalists: what the halving kept. Those it cut as slower were
 * measured less, under other moments' noise, and are not brought back to
 * win a tie (unless nothing else is left). */
static bool finalist(const cmp_cand *c) { return c->state == CAND_LIVE && isfinite(c->med); }
static bool any_finalist(const cmp_search *s)
{
    for (int i = 0; i < s->nc; i++)
        if (finalist(&s->c[i]))
            return true;
    return false;
}
static bool usable(const cmp_search *s, const cmp_cand *c)
{
    return any_finalist(s) ? finalist(c) : c->state == CAND_OUT && isfinite(c->med);
}

static double worker_bytes(const cmp_results *r, int model)
{
    double b = r ? r->m[model].idle_bytes : NAN;
    return b > 0 ? b : model == CMP_THREADS ? 16384 : 102400;
}

static int simplicity(const cmp_config *c)
{
    return (c->recycle_tasks || c->recycle_memory ? 8 : 0) + (c->dispatch == CMP_MAP ? 2 + (c->chunk != 0) : 0) +
           (c->args == CMP_BYREF && !(c->dispatch == CMP_MAP && c->model == CMP_THREADS));
}

/* a cheaper than b? */
static bool cheaper(const cmp_cand *a, const cmp_cand *b, const cmp_results *r)
{
    double ma = a->cfg.workers * worker_bytes(r, a->cfg.model), mb = b->cfg.workers * worker_bytes(r, b->cfg.model);
    if (ma < mb * 0.9)
        return true;
    if (mb < ma * 0.9)
        return false;
    if (simplicity(&a->cfg) != simplicity(&b->cfg))
        return simplicity(&a->cfg) < simplicity(&b->cfg);
    return a->cfg.workers < b->cfg.workers || (a->cfg.workers == b->cfg.workers && a->med > b->med);
}

static void reason(cmp_advice *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(cmp_advice *a, const char *fmt, ...)
{
    if (a->nreasons >= (int)(sizeof a->reasons / sizeof a->reasons[0]))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->reasons[a->nreasons++], sizeof a->reasons[0], fmt, ap);
    va_end(ap);
}

static const char *signame(int sig, char *buf, size_t n)
{
    const char *s = sigabbrev_np(sig);
    snprintf(buf, n, "SIG%s", s ? s : "?");
    return buf;
}

/* The first ruled-out candidate in a state and model (model -1: any). */
static const cmp_cand *first_in(const cmp_search *s, cand_state st, int model)
{
    for (int i = 0; i < s->nc; i++)
        if (s->c[i].state == st && (model < 0 || s->c[i].cfg.model == model))
            return &s->c[i];
    return NULL;
}

static void why_others(const cmp_search *s, cmp_advice *a)
{
    char n1[100], sig[24];
    const cmp_profile *p = &s->prof;
    const cmp_cand *w = NULL, *cr = first_in(s, CAND_CRASHED, CMP_THREADS);
    for (int i = 0; i < s->nc && !w; i++)
        if (s->c[i].state == CAND_WRONG && s->c[i].cfg.model == CMP_THREADS && s->c[i].check.wrong)
            w = &s->c[i];
    if (s->thread_unsafe && w)
        reason(a, "threads gave different results for %llu of %llu items (%s): the task is not thread-safe, "
                  "so no thread pool is recommended",
               (unsigned long long)w->check.wrong, (unsigned long long)w->check.checked,
               config_name(n1, sizeof n1, &w->cfg));
    if (s->threads_crash && cr) {
        const cmp_cand *died = NULL;
        for (int i = 0; i < s->nc; i++)
            if (s->c[i].cfg.model == CMP_THREADS && (s->c[i].died_signal || s->c[i].died_code))
                died = died ? died : &s->c[i];
        if (p->crashed)
            reason(a, "your task crashed on %llu of %zu items run alone (%s)%s; a process pool loses only "
                      "those items and goes on: processes, because threads died",
                   (unsigned long long)p->crashed, p->n,
                   p->crash_signal ? signame(p->crash_signal, sig, sizeof sig) : "exit",
                   died ? ", and under threads it killed the whole process" : "");
        else if (died)
            reason(a, "a thread pool died running your task (%s, %s): processes, because threads died",
                   config_name(n1, sizeof n1, &died->cfg), died->why);
    }
    if (s->process_unsafe)
        reason(a, "process pools of 2 or more workers gave different results too: the items depend on each other");
    const cmp_cand *imp = first_in(s, CAND_IMPOSSIBLE, -1);
    if (imp)
        reason(a, "%s %s", config_name(n1, sizeof n1, &imp->cfg), imp->why);
    const cmp_cand *hung = first_in(s, CAND_HUNG, -1);
    if (hung)
        reason(a, "%s %s", config_name(n1, sizeof n1, &hung->cfg), hung->why);
}

static void what_it_showed(const cmp_search *s, const cmp_results *r, const cmp_cand *b, cmp_advice *a)
{
    const cmp_profile *p = &s->prof;
    char t1[32], t2[200];
    if (p->waiting)
        reason(a, "the task waits: its CPU time is %.0f%% of its time per item (%s), so more workers than CPUs "
                  "pay; the search went up to %d workers (bounded by %s)",
               p->cpu_ratio * 100, fmt_time_s(t1, sizeof t1, p->item_s), s->cap_workers, s->cap_why);
    if (p->leaks)
        reason(a, "a worker's memory grows %s per item: only recycled worker processes bound it "
                  "(max_tasks_per_worker or max_worker_memory); threads share one heap that only grows",
               fmt_bytes(t1, sizeof t1, p->leak_per_item));
    /* the same configuration but the other way of passing arguments */
    for (int i = 0; i < s->nc; i++) {
        const cmp_cand *c = &s->c[i];
        cmp_config x = c->cfg;
        x.args = b->cfg.args;
        if (c == b || memcmp(&x, &b->cfg, sizeof x) != 0 || !isfinite(c->med))
            continue;
        reason(a, "arguments of %s: %s %.2fx, %s %.2fx", fmt_bytes(t1, sizeof t1, (double)p->arg_len),
               b->cfg.args == CMP_BYREF ? "by reference" : "copied", b->med,
               c->cfg.args == CMP_BYREF ? "by reference" : "copied", c->med);
        break;
    }
    if (p->item_s < 20e-6) {
        const cmp_cand *fut = NULL;
        for (int i = 0; i < s->nc; i++)
            if (s->c[i].cfg.model == b->cfg.model && s->c[i].cfg.workers == b->cfg.workers &&
                s->c[i].cfg.dispatch == CMP_FUTURES && isfinite(s->c[i].med))
                fut = &s->c[i];
        if (fut && b->cfg.dispatch == CMP_MAP)
            reason(a, "items take %s each: one future per item reached %.2fx, a map %.2fx (the per-task cost "
                      "is shared by a chunk of items)", fmt_time_s(t1, sizeof t1, p->item_s), fut->med, b->med);
    }
    if (cli_busy_is(&p->machine))
        reason(a, "the machine was busy: %s: rerun on an idle machine before trusting the speedups",
               cli_busy_text(t2, sizeof t2, &p->machine, "the serial reference"));
    (void)r;
}

void advise(const cmp_search *s, const cmp_results *r, cmp_advice *a)
{
    memset(a, 0, sizeof *a);
    a->best = a->tie = a->runner_up = -1;
    int fast = -1;
    for (int i = 0; i < s->nc; i++)
        if (usable(s, &s->c[i]) && (fast < 0 || s->c[i].med > s->c[fast].med))
            fast = i;
    if (fast < 0) {
        snprintf(a->headline, sizeof a->headline,
                 "none: no configuration ran your task with the reference results");
        why_others(s, a);
        return;
    }
    const cmp_cand *f = &s->c[fast];
    int choice = fast;
    for (int i = 0; i < s->nc; i++) {
        const cmp_cand *c = &s->c[i];
        if (usable(s, c) && search_tied(c, f, s->noise_floor) && cheaper(c, &s->c[choice], r))
            choice = i;
    }
    a->found = true;
    a->best = choice;
    a->noise = fmin(search_margin(&s->c[choice], f, s->noise_floor), 2 * s->noise_floor);
    const cmp_cand *b = &s->c[choice];
    if (choice != fast)
        a->tie = fast;
    for (int i = 0; i < s->nc; i++)
        if ((s->c[i].state == CAND_LIVE || s->c[i].state == CAND_OUT) && isfinite(s->c[i].med) &&
            s->c[i].cfg.model != b->cfg.model &&
            (a->runner_up < 0 || s->c[i].med > s->c[a->runner_up].med))
            a->runner_up = i;
    char n1[100], n2[100];
    config_name(n1, sizeof n1, &b->cfg);
    if (b->cfg.model == CMP_PROCESSES) /* the start method is part of the configuration */
        snprintf(n1 + strlen(n1), sizeof n1 - strlen(n1), ", %s start",
                 b->cfg.start_method == CREW_START_FORK    ? "fork"
                 : b->cfg.start_method == CREW_START_SPAWN ? "spawn"
                                                           : "forkserver");
    if (b->ns > 1)
        snprintf(a->headline, sizeof a->headline, "%s: %.2fx on %d CPUs (runs %.2f-%.2fx, +-%.0f%%)", n1, b->med, r ? r->cpus : 0, b->lo, b->hi,
                 (isfinite(b->noise) ? b->noise : s->noise_floor) * 100);
    else
        snprintf(a->headline, sizeof a->headline, "%s: %.2fx on %d CPUs (1 run)", n1, b->med, r ? r->cpus : 0);
    why_others(s, a);
    if (a->tie >= 0)
        reason(a, "a tie within the noise (+-%.0f%%): %s reached %.2fx, %s %.2fx; the cheaper, %s, is recommended",
               a->noise * 100, config_name(n2, sizeof n2, &f->cfg), f->med, config_name(n1, sizeof n1, &b->cfg),
               b->med, n1);
    if (a->runner_up >= 0) {
        const cmp_cand *o = &s->c[a->runner_up];
        if (search_tied(o, b, s->noise_floor) && a->tie < 0)
            reason(a, "%s reached %.2fx: within the noise (+-%.0f%%) of the recommendation, a tie; the "
                      "recommendation is the cheaper", config_name(n2, sizeof n2, &o->cfg), o->med,
                   fmin(search_margin(o, b, s->noise_floor), 2 * s->noise_floor) * 100);
        else
            reason(a, "the best of %s: %s, %.2fx", o->cfg.model == CMP_THREADS ? "threads" : "processes",
                   config_name(n2, sizeof n2, &o->cfg), o->med);
    }
    what_it_showed(s, r, b, a);
    for (int i = 0; i < s->nnotes; i++)
        reason(a, "%s", s->notes[i]);
    advice_snippet(b, &s->prof, NULL, a->snippet, sizeof a->snippet);
}

void advice_snippet(const cmp_cand *c, const cmp_profile *p, const cmp_items *it, char *buf, size_t n)
{
    (void)it;
    const cmp_config *k = &c->cfg;
    char b1[32];
    size_t len = 0;
#define OUT(...) (len += (size_t)snprintf(buf + len, len < n ? n - len : 0, __VA_ARGS__))
    OUT("crew_pool_options o = {0};\n");
    OUT("o.kind = %s;\n", k->model == CMP_THREADS ? "CREW_THREADS" : "CREW_PROCESSES");
    OUT("o.workers = %d;\n", k->workers);
    if (k->model == CMP_PROCESSES)
        OUT("o.start_method = %s;\n", k->start_method == CREW_START_FORK    ? "CREW_START_FORK"
                                      : k->start_method == CREW_START_SPAWN ? "CREW_START_SPAWN"
                                                                            : "CREW_START_FORKSERVER");
    if (k->recycle_tasks)
        OUT("o.max_tasks_per_worker = %u;  /* memory grows ~%s per item */\n", k->recycle_tasks,
            fmt_bytes(b1, sizeof b1, p->leak_per_item));
    if (k->args == CMP_COPY && p->arg_len > 65536)
        OUT("o.max_arg_size = %zu;  /* arguments of %s are copied */\n", p->arg_len,
            fmt_bytes(b1, sizeof b1, (double)p->arg_len));
    if (k->recycle_memory)
        OUT("o.max_worker_memory = %zu;  /* recycle a worker above %s */\n", k->recycle_memory,
            fmt_bytes(b1, sizeof b1, (double)k->recycle_memory));
    OUT("crew_pool *p;\ncrew_pool_create(&p, &o);\n");
    if (k->dispatch == CMP_MAP) {
        OUT("crew_map_options m = {0};\n");
        OUT("m.chunk_size = %zu;%s\n", k->chunk, k->chunk ? "" : "  /* adaptive */");
        if (k->args == CMP_BYREF && k->model == CMP_PROCESSES)
            OUT("/* in: the n records inside one crew_shm region, read there in place */\n");
        OUT("crew_pool_map(p, task, in, in_size, out, out_size, n, &m);\n");
    } else if (k->args == CMP_BYREF) {
        OUT("/* each argument inside one crew_shm region (crew_shm_create), not copied */\n");
        OUT("crew_future *f;\ncrew_pool_submit_shm(p, task, region, off, len, &f);  /* per item */\n");
    } else {
        OUT("crew_future *f;\ncrew_pool_submit(p, task, arg, arg_len, &f);  /* per item */\n");
    }
#undef OUT
}
