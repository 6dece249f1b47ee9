/*
 * verify.c -- what a correct run of the user's task looks like: the
 * 1-worker reference, and each run's items compared with it.
 *
 * DESIGN
 *  An item's outcome is its final status and its result bytes, kept as a
 *  64-bit hash of the bytes with trailing zero bytes dropped (a map's output
 *  record is zero-filled past the result, a future's result is exactly its
 *  length: the two then compare). Bytes matter only when the status is 0; a
 *  task's own error compares by status.
 *  Comparing a run with the reference, item by item:
 *   - same status (and bytes): fine;
 *   - crashed, timed out or cancelled here but not in the reference (or the
 *     other way round): a crash, counted apart -- a task that crashes now
 *     and then does so on different items each time, which is not a wrong
 *     result;
 *   - anything else is a wrong result: different bytes, or a different
 *     status from the task itself.
 *  The reference is a serial pass: every item in one thread, no pool, in a
 *  sacrificial child that records each outcome as it ends. A child killed by
 *  an item (a signal, an exit) is restarted after it, that item recorded as
 *  crashed; a child stuck past --timeout is killed and the item recorded as
 *  hung (and the reference stops there: every later try of that item would
 *  cost --timeout again). Without --items or --args the pass also decides
 *  how many items a run has: as many as it finished in its share of the
 *  budget, 16 at least.
 *  A second serial pass over a prefix of the items checks that the task is
 *  deterministic at all; if it is not, results cannot be compared and only
 *  statuses are (the report says so).
 */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t verify_hash(const void *data, size_t len, uint32_t *trimmed_len)
{
    const unsigned char *p = data;
    while (len && p[len - 1] == 0)
        len--;
    if (trimmed_len)
        *trimmed_len = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void verify_record(cmp_record *r, int status, const void *data, size_t len)
{
    r->status = status > 0 ? 0 : status;
    r->hash = verify_hash(data, data ? len : 0, &r->len);
}

static bool crash_like(int st) { return is_crash_status(st) || st == CREW_ECANCELED; }

void verify_compare(const cmp_record *ref, const cmp_record *run, size_t first, size_t n, cmp_check *c)
{
    memset(c, 0, sizeof *c);
    c->first_wrong = -1;
    for (size_t i = first; i < n; i++) {
        const cmp_record *a = &ref[i], *b = &run[i];
        if (b->status == INT32_MIN || a->status == INT32_MIN) /* not run */
            continue;
        c->checked++;
        if (a->status == b->status && (a->status != 0 || (a->len == b->len && a->hash == b->hash)))
            continue;
        if (crash_like(b->status) && !crash_like(a->status))
            c->crashed++;
        else if (crash_like(a->status) && !crash_like(b->status))
            c->spared++;
        else if (!crash_like(a->status)) {
            if (c->wrong++ == 0)
                c->first_wrong = (int64_t)i;
        }
    }
}

/* ---------------------------------------------------------------- serial */
typedef struct serial_sum {
    double elapsed;             /* items that ran to the end */
    uint64_t ran;
    double on_cpu, rq_wait, stat_elapsed;
    bool rq_ok;
    double growth;              /* RSS growth over the samples */
    uint64_t growth_items;
    int ups, steps;             /* sample-to-sample increases, of how many */
    uint64_t crashed;
    int signal, code;
    bool hang;                  /* stopped by an item that did not finish */
    uint64_t end;               /* the items [0, end) were covered */
    uint32_t max_len;
    cli_busy busy;
} serial_sum;

static const trial_hdr *hdr(cmp_task *t) { return crew_shm_ptr(t->out); }

static void add_segment(serial_sum *s, const trial_hdr *h)
{
    s->elapsed += h->elapsed;
    s->ran += h->ran[0];
    s->on_cpu += h->on_cpu;
    s->stat_elapsed += h->stat_elapsed;
    s->busy.wall += h->busy.wall;
    s->busy.waited += h->busy.waited;
    s->busy.psi += h->busy.psi;
    s->busy.psi_wall += h->busy.psi_wall;
    s->busy.others += h->busy.others;
    s->busy.cpu_wall += h->busy.cpu_wall;
    if (isfinite(h->rq_wait)) {
        s->rq_wait += h->rq_wait;
        s->rq_ok = true;
    }
    if (h->max_len > s->max_len)
        s->max_len = h->max_len;
    if (h->nrss >= 3) {
        s->growth += h->rss_at[h->nrss - 1] - h->rss_at[0];
        s->growth_items += h->rss_item[h->nrss - 1];
        for (int k = 1; k < h->nrss; k++) {
            s->steps++;
            s->ups += h->rss_at[k] > h->rss_at[k - 1];
        }
    }
}

/* Items [0, n) serially, restarting after an item that kills the child.
 * stop_after > 0: stop once that much time was spent (s->end says where). */
static int serial_passes(cmp_task *t, uint64_t n, uint32_t flags, double stop_after, const char *what,
                         serial_sum *s, char *why, size_t whylen)
{
    memset(s, 0, sizeof *s);
    cmp_record *rec = trial_records(t);
    uint64_t next = 0;
    int in_a_row = 0;
    while (next < n) {
        cmp_config c = {.model = CMP_SERIAL, .workers = 1};
        trial_req q;
        trial_req_init(t, &q, &c);
        q.first = next;
        q.n = n;
        q.flags = flags;
        q.stop_after = stop_after > 0 ? fmax(stop_after - s->elapsed, 1e-3) : 0;
        trial_result r;
        int rc = trial_run(t, &q, what, &r);
        if (rc) {
            snprintf(why, whylen, "could not start a child process to run your task: %s", crew_strerror(rc));
            return CLI_EXIT_MEASURE;
        }
        const trial_hdr *h = hdr(t);
        add_segment(s, h);
        uint64_t end = atomic_load(&h->done);
        if (!r.hung && !r.died_signal && !r.died_code) {
            if (r.status) {
                snprintf(why, whylen, "%s", r.error[0] ? r.error : "the measuring child failed");
                return r.status == CREW_ENOTFOUND ? CLI_EXIT_LOAD : CLI_EXIT_MEASURE;
            }
            s->end = end;
            return 0;
        }
        if (end >= n) /* died after its last item: nothing to blame */
            end = n - 1;
        rec[end].status = r.hung ? CREW_ETIMEDOUT : CREW_ECRASHED;
        rec[end].len = 0;
        rec[end].hash = 0;
        next = end + 1;
        s->end = next;
        if (r.hung) {
            s->hang = true;
            return 0;
        }
        s->crashed++;
        s->signal = r.died_signal;
        s->code = r.died_code;
        in_a_row = h->ran[0] ? 1 : in_a_row + 1;
        if (in_a_row >= 8 || (stop_after > 0 && s->elapsed > stop_after))
            return 0;
    }
    return 0;
}

static void count_outcomes(cmp_profile *pr, const cmp_record *ref, uint64_t n)
{
    pr->ok = pr->failed = pr->crashed = pr->hung = 0;
    pr->fail_status = 0;
    for (uint64_t i = 0; i < n; i++) {
        int st = ref[i].status;
        if (st == 0)
            pr->ok++;
        else if (st == CREW_ETIMEDOUT)
            pr->hung++;
        else if (st == CREW_ECRASHED)
            pr->crashed++;
        else {
            pr->failed++;
            if (!pr->fail_status)
                pr->fail_status = st;
        }
    }
}

static void unmeasurable(const cmp_task *t, const cmp_profile *pr, const serial_sum *s, char *why, size_t n)
{
    char sig[48];
    if (s->hang && pr->ok == 0)
        snprintf(why, n, "your task did not finish item %llu within --timeout (%.0f s), run alone with no pool",
                 (unsigned long long)(s->end - 1), t->timeout);
    else if (pr->crashed && s->signal) {
        const char *a = sigabbrev_np(s->signal);
        snprintf(sig, sizeof sig, "SIG%s", a ? a : "?");
        snprintf(why, n, "your task crashed (%s) on each of the first %llu items, run alone with no pool: "
                 "nothing to measure", sig, (unsigned long long)pr->crashed);
    } else if (pr->crashed)
        snprintf(why, n, "your task ended its process (exit code %d) on each of the first %llu items, run alone",
                 s->code, (unsigned long long)pr->crashed);
    else
        snprintf(why, n, "your task failed on every item, run alone: %s (%s)", crew_err_name(pr->fail_status),
                 crew_strerror(pr->fail_status));
}

int verify_reference(cmp_task *t, cmp_profile *pr, double budget, bool n_given, char *why, size_t whylen)
{
    memset(pr, 0, sizeof *pr);
    serial_sum s;
    double psi0 = cli_psi_total(), w0 = crew_now();
    int ex = serial_passes(t, t->items.n, TRIAL_RECORD, n_given ? 0 : budget, "reference: 1 worker, no pool", &s,
                           why, whylen);
    double psi1 = cli_psi_total(), w1 = crew_now();
    if (ex)
        return ex;
    uint64_t n = s.end;
    if (s.hang && n > 1)
        n--; /* the item that hung is left out of every later run */
    memcpy(t->ref, trial_records(t), n * sizeof *t->ref);
    t->n = n;
    pr->n = n;
    count_outcomes(pr, t->ref, s.end);
    pr->crash_signal = s.signal;
    pr->crash_code = s.code;
    pr->max_len = s.max_len;
    if (pr->ok == 0 || n == 0) {
        unmeasurable(t, pr, &s, why, whylen);
        return CLI_EXIT_TASK;
    }
    pr->item_s = s.ran ? s.elapsed / (double)s.ran : NAN;
    pr->serial_s = pr->item_s * (double)n;
    double waited = s.rq_ok ? fmin(s.rq_wait, s.stat_elapsed) : 0, own = s.stat_elapsed - waited;
    pr->cpu_ratio = own > 0 ? fmin(1.0, s.on_cpu / own) : 1.0;
    pr->busy = s.rq_ok && s.stat_elapsed > 0 ? waited / s.stat_elapsed : NAN;
    pr->machine = s.busy;
    pr->psi_some = isfinite(psi0) && isfinite(psi1) && w1 > w0 ? (psi1 - psi0) / (w1 - w0) : NAN;
    pr->leak_per_item = s.growth_items ? s.growth / (double)s.growth_items : 0;
    /* steady growth, not an allocator settling: most samples went up, by
     * enough per item and in all to stand out of the noise */
    pr->leaks = pr->leak_per_item >= 16384 && s.growth >= 4.0 * 1024 * 1024 && s.steps &&
                s.ups * 4 >= s.steps * 3;
    if (!pr->leaks)
        pr->leak_per_item = fmax(pr->leak_per_item, 0);
    pr->rss_start = hdr(t)->rss_at[0];
    pr->waiting = pr->cpu_ratio < 0.7;
    pr->deterministic = true;
    pr->hung = s.hang ? 1 : pr->hung;
    return 0;
}

double verify_baseline(cmp_task *t, const cmp_profile *pr, bool check, cmp_check *c)
{
    serial_sum s;
    char why[200];
    uint64_t n = t->n;
    if (check && c) {
        /* the determinism check: a prefix that fits in a tenth of a second
         * or so, at least 8 items */
        double per = pr->item_s > 0 ? pr->item_s : 1e-3;
        uint64_t k = (uint64_t)(0.15 / per);
        n = k < 8 ? 8 : k;
        if (n > t->n)
            n = t->n;
    }
    uint32_t flags = TRIAL_SKIP_CRASHED | (check ? TRIAL_RECORD : 0);
    if (serial_passes(t, n, flags, 0, check ? "determinism check: 1 worker again" : "serial baseline", &s, why,
                      sizeof why) != 0)
        return NAN;
    if (check && c)
        verify_compare(t->ref, trial_records(t), 0, s.end, c);
    return s.ran ? s.elapsed / (double)s.ran : NAN;
}
