/*
 * space.c -- the candidates of `crew compare --task`: what a configuration
 * is called, which ones the task's profile makes worth trying, and what a
 * candidate's rounds say (median, spread, noise, ties).
 *
 * DESIGN
 *  The space, from the reference's profile (see search.c for how the budget
 *  is spent on it):
 *   - workers: 1..CPUs for work that computes; for work that waits (CPU
 *     time well below wall time per item) a ladder 1, CPUs, 4x, 16x ...
 *     towards CPUs / CPU share, capped by the item count (more workers than
 *     items cannot help) and 1024; --workers replaces it;
 *   - dispatch: one future per item; crew_pool_map with adaptive chunks,
 *     and with a fixed chunk of ~100 µs of work when items are tiny
 *     (fixed-size records only: a map takes records of one size);
 *   - argument passing: copied, or by reference (the records in a crew_shm
 *     region; threads get a pointer) when arguments are 4 KiB or more;
 *   - recycling (processes), when the worker's memory grows per item:
 *     max_tasks_per_worker sized to ~64 MiB of growth, or max_worker_memory.
 *  A candidate's figure is the median of its rounds' speedups; its noise
 *  the median's own uncertainty, 1.25 x 1.4826 MAD / median / sqrt(rounds).
 *  Two candidates tie when their medians are within twice their combined
 *  noise (never under the floor, and for the advice never over twice it).
 */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *cmp_model_word(int m) { return m == CMP_THREADS ? "threads" : m == CMP_PROCESSES ? "processes" : "serial"; }

const char *config_name(char *buf, size_t n, const cmp_config *c)
{
    char b[32];
    if (c->model == CMP_SERIAL)
        return snprintf(buf, n, "1 worker, no pool"), buf;
    int k = snprintf(buf, n, "%s x%d", cmp_model_word(c->model), c->workers);
    if (c->dispatch == CMP_MAP && c->chunk)
        k += snprintf(buf + k, n - (size_t)k, ", map chunk %zu", c->chunk);
    else if (c->dispatch == CMP_MAP)
        k += snprintf(buf + k, n - (size_t)k, ", map");
    else
        k += snprintf(buf + k, n - (size_t)k, ", futures");
    if (c->args == CMP_BYREF && !(c->dispatch == CMP_MAP && c->model == CMP_THREADS))
        k += snprintf(buf + k, n - (size_t)k, ", by reference");
    if (c->recycle_tasks)
        snprintf(buf + k, n - (size_t)k, ", recycle every %u", c->recycle_tasks);
    else if (c->recycle_memory)
        snprintf(buf + k, n - (size_t)k, ", recycle above %s", fmt_bytes(b, sizeof b, (double)c->recycle_memory));
    return buf;
}

const char *config_short(char *buf, size_t n, const cmp_config *c)
{
    char b[32];
    if (c->model == CMP_SERIAL)
        return snprintf(buf, n, "serial"), buf;
    int k = snprintf(buf, n, "%s x%d %s", cmp_model_word(c->model), c->workers,
                     c->dispatch == CMP_FUTURES ? "futures" : "map");
    if (c->dispatch == CMP_MAP && c->chunk)
        k += snprintf(buf + k, n - (size_t)k, "/%zu", c->chunk);
    if (c->args == CMP_BYREF && !(c->dispatch == CMP_MAP && c->model == CMP_THREADS))
        k += snprintf(buf + k, n - (size_t)k, " by-ref");
    if (c->recycle_tasks)
        snprintf(buf + k, n - (size_t)k, " recycle/%u", c->recycle_tasks);
    else if (c->recycle_memory)
        snprintf(buf + k, n - (size_t)k, " recycle>%s", fmt_bytes(b, sizeof b, (double)c->recycle_memory));
    return buf;
}

const char *cand_state_name(cand_state s)
{
    static const char *names[] = {"measured", "slower", "wrong results", "crashed", "hung",
                                  "impossible figure", "memory grows", "failed", "not measured"};
    return s <= CAND_SKIPPED ? names[s] : "?";
}

const char *cand_state_key(cand_state s)
{
    static const char *keys[] = {"ok", "slower", "wrong", "crashed", "hung", "impossible", "leaks", "failed",
                                 "skipped"};
    return s <= CAND_SKIPPED ? keys[s] : "?";
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void search_stats(cmp_cand *c, double item_s)
{
    c->med = c->lo = c->hi = c->items_per_s = NAN;
    c->noise = NAN;
    if (c->ns == 0 || !(item_s > 0))
        return;
    double v[CMP_MAX_SAMPLES], dev[CMP_MAX_SAMPLES];
    for (int i = 0; i < c->ns; i++)
        v[i] = c->ips[i];
    qsort(v, (size_t)c->ns, sizeof v[0], cmp_double);
    c->items_per_s = c->ns % 2 ? v[c->ns / 2] : (v[c->ns / 2 - 1] + v[c->ns / 2]) / 2;
    /* a round's speedup against the serial items timed just before it
     * where there are some (drift hits both alike), else against the
     * median serial time of the passes between the rungs */
    for (int i = 0; i < c->ns; i++)
        v[i] = isfinite(c->sp[i]) ? c->sp[i] : c->ips[i] * item_s;
    qsort(v, (size_t)c->ns, sizeof v[0], cmp_double);
    double med = c->ns % 2 ? v[c->ns / 2] : (v[c->ns / 2 - 1] + v[c->ns / 2]) / 2;
    /* the spread shown leaves out the single most extreme run at each end
     * once there are enough to spare one */
    int cut = c->ns >= 6 ? 1 : 0;
    c->med = med;
    c->lo = v[cut];
    c->hi = v[c->ns - 1 - cut];
    /* the noise of the median itself: a robust deviation (1.4826 MAD) over
     * the square root of the runs, times 1.25 (the median's efficiency) */
    if (c->ns >= 3) {
        for (int i = 0; i < c->ns; i++)
            dev[i] = fabs(v[i] - med);
        qsort(dev, (size_t)c->ns, sizeof dev[0], cmp_double);
        double mad = c->ns % 2 ? dev[c->ns / 2] : (dev[c->ns / 2 - 1] + dev[c->ns / 2]) / 2;
        c->noise = 1.2533 * 1.4826 * mad / med / sqrt((double)c->ns);
    } else if (c->ns == 2) {
        c->noise = fabs(v[1] - v[0]) / (2 * med);
    }
}

/* Two medians differ by less than twice their combined noise: the
 * figures cannot tell them apart. Never less than the floor; and for the
 * advice never more than twice the floor either (a cheaper option is named
 * only when it is close to the fastest, however noisy the run). */
double search_margin(const cmp_cand *a, const cmp_cand *b, double floor)
{
    double na = isfinite(a->noise) ? a->noise : floor, nb = isfinite(b->noise) ? b->noise : floor;
    return fmax(floor, 2 * sqrt(na * na + nb * nb));
}

bool search_tied(const cmp_cand *a, const cmp_cand *b, double floor)
{
    if (!isfinite(a->med) || !isfinite(b->med))
        return false;
    double margin = fmin(search_margin(a, b, floor), 2 * floor);
    return fabs(a->med - b->med) <= margin * fmax(a->med, b->med);
}

/* Still in the race: within the whole margin, uncapped. */
bool search_open(const cmp_cand *a, const cmp_cand *b, double floor)
{
    return isfinite(a->med) && isfinite(b->med) &&
           fabs(a->med - b->med) <= search_margin(a, b, floor) * fmax(a->med, b->med);
}

/* ---------------------------------------------------------------- the space */
typedef struct space {
    int ladder[CMP_MAX_POINTS];
    int nladder;
    int cap;
} space;

bool search_add(cmp_search *s, const cmp_config *c)
{
    for (int i = 0; i < s->nc; i++)
        if (memcmp(&s->c[i].cfg, c, sizeof *c) == 0)
            return false;
    if (s->nc >= CMP_MAX_CANDIDATES)
        return false;
    cmp_cand *k = &s->c[s->nc++];
    memset(k, 0, sizeof *k);
    k->cfg = *c;
    k->state = CAND_LIVE;
    search_stats(k, NAN);
    return true;
}

/* Every variant of dispatch, argument passing and recycling for one model
 * and worker count. */
static void add_variants(cmp_search *s, const cmp_task *t, int model, int w)
{
    const cmp_profile *p = &s->prof;
    const cmp_items *it = &t->items;
    cmp_config c = {.model = model, .workers = w, .start_method = t->start_method};
    bool big = it->max_len >= 4096 || it->shared;
    bool map_ok = it->fixed && (double)t->n * (double)it->stride <= 256.0 * 1024 * 1024;
    unsigned rec_tasks = 0;
    if (p->leaks) {
        double k = 64.0 * 1024 * 1024 / p->leak_per_item;
        rec_tasks = k < 1 ? 1 : k > 100000 ? 100000 : (unsigned)k;
    }
    for (int d = CMP_FUTURES; d <= CMP_MAP; d++) {
        if (d == CMP_MAP && !map_ok)
            continue;
        size_t chunks[2] = {0, 0};
        int nchunks = d == CMP_MAP ? 1 : 1;
        if (d == CMP_MAP && p->item_s < 20e-6) {
            double per = 100e-6 / fmax(p->item_s, 1e-8), most = (double)t->n / (4.0 * w);
            size_t ch = (size_t)fmax(2, fmin(per, most));
            if (ch > 1)
                chunks[nchunks++] = ch;
        }
        for (int k = 0; k < nchunks; k++)
            for (int a = CMP_COPY; a <= CMP_BYREF; a++) {
                if (a == CMP_BYREF && !big && !(d == CMP_MAP && model == CMP_THREADS))
                    continue;
                if (a == CMP_COPY && d == CMP_MAP && model == CMP_THREADS)
                    continue; /* a thread map reads the records where they are */
                for (int r = 0; r < (model == CMP_PROCESSES && p->leaks ? 3 : 1); r++) {
                    c.dispatch = d;
                    c.chunk = chunks[k];
                    c.args = a;
                    c.recycle_tasks = r == 1 ? rec_tasks : 0;
                    c.recycle_memory = r == 2 ? (size_t)(fmax(p->rss_start, 0) + 64.0 * 1024 * 1024) : 0;
                    search_add(s, &c);
                }
            }
    }
}

void search_plan_space(cmp_search *s, const cmp_task *t)
{
    space spc, *sp = &spc;
    const cmp_profile *p = &s->prof;
    int cpus = t->cpus;
    sp->cap = 1024;
    snprintf(s->cap_why, sizeof s->cap_why, "the pool's limit (1024 workers)");
    /* memory: a worker with its stack touched and its share of the pool,
     * taken as 2 MiB, within half of the memory available */
    double by_mem = t->mem_limit / (2.0 * 1024 * 1024);
    if (by_mem >= 1 && by_mem < sp->cap) {
        sp->cap = (int)by_mem;
        snprintf(s->cap_why, sizeof s->cap_why, "memory: 2 MiB a worker within half of what is available");
    }
    if ((long)t->n < sp->cap) {
        sp->cap = (int)t->n;
        snprintf(s->cap_why, sizeof s->cap_why, "the item count (%zu): more workers than items cannot help", t->n);
    }
    sp->nladder = 0;
    if (t->nworkers) { /* --workers: those counts and no others */
        for (int k = 0; k < t->nworkers && k < CMP_MAX_POINTS; k++)
            sp->ladder[sp->nladder++] = t->workers[k];
        sp->cap = sp->ladder[sp->nladder - 1];
        snprintf(s->cap_why, sizeof s->cap_why, "--workers");
    } else if (!p->waiting) {
        for (int w = 1; w <= cpus && sp->nladder < 8; w = cpus <= 8 ? w + 1 : w * 2)
            sp->ladder[sp->nladder++] = w;
        if (sp->ladder[sp->nladder - 1] != cpus && sp->nladder < CMP_MAX_POINTS)
            sp->ladder[sp->nladder++] = cpus;
    } else {
        /* as many as the waiting lets run at once, roughly; the ladder
         * starts at 1 and CPUs and climbs by 4x towards that */
        double est = cpus / fmax(p->cpu_ratio, 0.002);
        sp->ladder[sp->nladder++] = 1;
        for (double w = cpus; sp->nladder < 6; w *= 4) {
            int wi = (int)fmin(w, sp->cap);
            if (wi > sp->ladder[sp->nladder - 1])
                sp->ladder[sp->nladder++] = wi;
            if (w >= sp->cap || w >= est)
                break;
        }
    }
    s->cap_workers = sp->cap;
    for (int m = CMP_THREADS; m <= CMP_PROCESSES; m++)
        for (int k = 0; k < sp->nladder; k++)
            if (sp->ladder[k] <= sp->cap || t->nworkers)
                add_variants(s, t, m, sp->ladder[k]);
}
