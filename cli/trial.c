/*
 * trial.c -- one measurement of the user's task, in a sacrificial child.
 *
 * DESIGN
 *  The parent (trial_run) fills a trial_req, clears the header of the out
 *  region and starts trial_child with crew_process_start(CREW_START_
 *  FORKSERVER): the child is a fork of the fork server, a clean image, so
 *  starting it is safe whatever pools and threads this process runs. The
 *  two regions (items, out) reach it by fd (pass_fds). The child loads the
 *  task itself (dlopen of the absolute path), sends its stdout to /dev/null
 *  (results on our stdout stay ours), and runs either
 *   - a serial pass: items [first, n) in its own thread, no pool, each
 *     item's outcome recorded as it ends and `done` advanced, so a crash
 *     or a hang tells the parent exactly which item it was; or
 *   - a pool: the configuration's pool, a warm-up (every worker started),
 *     then `rounds` timed rounds of every item, each compared with the
 *     reference records (TRIAL_VERIFY), with `done` advanced as items
 *     complete.
 *  The parent polls the child (join with a short timeout), prints what runs,
 *  how far it got and the time left, and kills the child when a round or
 *  the serial pass outlasts --timeout. A child that dies is data: its signal
 *  or exit code and how far it got. Killing the child kills its pool's
 *  workers too (every crew child holds PR_SET_PDEATHSIG).
 *  The header is written by the child and read by the parent only after
 *  the child ended, except `done` and `round` (atomics, read for progress).
 */
#include "search.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOT_RUN INT32_MIN

static cmp_record *rec_area(void *out) { return (cmp_record *)((char *)out + TRIAL_REC_OFF); }

/* ---------------------------------------------------------------- child */
typedef struct child_ctx {
    const trial_req *req;
    crew_task_fn fn;
    crew_shm *items;
    const unsigned char *base;
    const cmp_item_ref *tab;
    trial_hdr *h;
    cmp_record *rec, *ref;
    size_t *idx, count;       /* the items this run runs */
} child_ctx;

static int child_fail(trial_hdr *h, int status, const char *what)
{
    h->status = status ? status : CREW_EINVAL;
    snprintf(h->error, sizeof h->error, "%s", what);
    return 1;
}

static double tree_rss(void)
{
    crew_mem_usage u;
    return crew_mem_usage_tree(0, &u) == 0 ? (double)u.rss : NAN;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int serial_pass(child_ctx *x)
{
    const trial_req *q = x->req;
    trial_hdr *h = x->h;
    unsigned char *res = malloc(q->result_cap ? q->result_cap : 1);
    if (!res)
        return child_fail(h, CREW_ENOMEM, "out of memory");
    double c0, w0, c1, w1;
    cli_busy_span span;
    cli_busy_begin(&span);
    bool ss = cli_schedstat(&c0, &w0);
    double cpu0 = cpu_now(), t0 = crew_now(), last = t0, last_stat = t0;
    size_t stride = 1, since = 0;
    h->rss_at[0] = tree_rss();
    h->rss_item[0] = 0;
    h->nrss = 1;
    for (size_t i = q->first; i < q->n; i++) {
        if ((q->flags & TRIAL_SKIP_CRASHED) && is_crash_status(x->ref[i].status)) {
            x->rec[i].status = NOT_RUN;
            atomic_store_explicit(&h->done, i + 1, memory_order_release);
            continue;
        }
        size_t rl = 0;
        double ti = (q->flags & TRIAL_RECORD) ? crew_now() : 0;
        int st = x->fn(NULL, x->base + x->tab[i].off, (size_t)x->tab[i].len, res, q->result_cap, &rl);
        if (st > 0)
            st = 0;
        if (rl > q->result_cap)
            st = CREW_E2BIG, rl = 0;
        if (q->flags & TRIAL_RECORD) {
            x->rec[i].t = (float)(crew_now() - ti);
            verify_record(&x->rec[i], st, res, rl);
            if (x->rec[i].len > h->max_len)
                h->max_len = x->rec[i].len;
        }
        h->ran[0]++;
        /* the clock every `stride` items: often enough for a crash to lose
         * little time, rarely enough not to weigh on tiny items */
        if (++since >= stride) {
            double now = crew_now();
            if (now - last < 1e-4 && stride < 1024)
                stride *= 2;
            since = 0;
            last = now;
            h->elapsed = now - t0;
            if (ss && now - last_stat >= 0.01 && cli_schedstat(&c1, &w1)) {
                /* kept up as it runs: a crash must not lose it (the clock
                 * read after schedstat, so the span covers what it counted) */
                h->on_cpu = c1 - c0;
                h->rq_wait = w1 - w0;
                h->stat_elapsed = crew_now() - t0;
                last_stat = now;
            }
            if (q->stop_after > 0 && h->elapsed > q->stop_after && h->ran[0] >= 16) { /* 16 at least */
                atomic_store_explicit(&h->done, i + 1, memory_order_release);
                break;
            }
        }
        size_t k = i - q->first + 1; /* memory after 1, 2, 4, 8 ... items */
        if ((q->flags & TRIAL_RECORD) && (k & (k - 1)) == 0 && h->nrss < 15) {
            h->rss_at[h->nrss] = tree_rss();
            h->rss_item[h->nrss++] = k;
        }
        atomic_store_explicit(&h->done, i + 1, memory_order_release);
    }
    double c_end = 0, w_end = 0;
    bool ss_end = ss && cli_schedstat(&c_end, &w_end); /* first: the elapsed time then covers it */
    h->elapsed = crew_now() - t0;
    h->t[0] = h->elapsed;
    if ((q->flags & TRIAL_RECORD) && h->nrss < 16 && h->ran[0] > h->rss_item[h->nrss - 1]) {
        h->rss_at[h->nrss] = tree_rss();
        h->rss_item[h->nrss++] = h->ran[0];
    }
    h->cpu[0] = cpu_now() - cpu0;
    if (ss_end) {
        h->on_cpu = c_end - c0;
        h->rq_wait = w_end - w0;
    } else {
        h->on_cpu = h->cpu[0];
        h->rq_wait = NAN;
    }
    h->stat_elapsed = h->elapsed;
    cli_busy_end(&span, &h->busy);
    h->rounds_done = 1;
    free(res);
    return 0;
}

/* The pool's options for a configuration. */
static void pool_options(const trial_req *q, size_t max_arg, crew_pool_options *o)
{
    memset(o, 0, sizeof *o);
    o->kind = q->cfg.model == CMP_THREADS ? CREW_THREADS : CREW_PROCESSES;
    o->workers = q->cfg.workers;
    if (q->cfg.model == CMP_PROCESSES) {
        o->start_method = q->cfg.start_method;
        o->task_timeout = q->task_timeout;
        o->max_tasks_per_worker = q->cfg.recycle_tasks;
        o->max_worker_memory = q->cfg.recycle_memory;
    }
    o->max_arg_size = max_arg > 65536 ? max_arg : 0;
    o->max_result_size = q->result_cap;
}

/* One round on the futures path: every item submitted (copied, or by
 * reference in the items' region), waited for through the completion fd
 * (a thread waiting on a thread pool's future would run queued items
 * itself and the pool would get one more worker than it was given). */
static int run_futures(child_ctx *x, crew_pool *p, size_t count, bool warm)
{
    const trial_req *q = x->req;
    trial_hdr *h = x->h;
    crew_future **fs = calloc(count ? count : 1, sizeof *fs);
    if (!fs)
        return CREW_ENOMEM;
    int fd = crew_pool_fd(p), rc = fd < 0 ? fd : 0;
    size_t sent = 0, oldest = 0, got = 0;
    while (rc == 0 && sent < count) {
        size_t i = x->idx[sent];
        const cmp_item_ref *e = &x->tab[i];
        if (q->cfg.args == CMP_BYREF)
            rc = crew_pool_submit_shm(p, x->fn, x->items, (size_t)e->off, (size_t)e->len, &fs[sent]);
        else
            rc = crew_pool_submit(p, x->fn, x->base + e->off, (size_t)e->len, &fs[sent]);
        if (rc == CREW_EAGAIN && oldest < sent) {
            rc = crew_future_wait(fs[oldest++], -1.0);
            continue;
        }
        if (rc == 0)
            rc = crew_future_notify(fs[sent++], NULL);
    }
    while (rc == 0 && got < sent) {
        crew_future *done[256];
        size_t k = 0;
        if ((rc = crew_pool_completions(p, done, 256, &k)) != 0)
            break;
        got += k;
        if (!warm)
            atomic_store_explicit(&h->done, got, memory_order_relaxed);
        if (got >= sent)
            break;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 1000) < 0 && errno != EINTR)
            rc = -errno;
    }
    for (size_t k = 0; k < sent; k++) {
        if (rc == 0 && !warm) {
            const void *data = NULL;
            size_t len = 0;
            int st = crew_future_status(fs[k]);
            crew_future_result(fs[k], &data, &len);
            verify_record(&x->rec[x->idx[k]], st, data, len);
        }
        crew_future_destroy(fs[k]);
    }
    free(fs);
    return rc;
}

/* One round as one crew_pool_map: the records in place in the region (by
 * reference; threads always) or a private copy the process pool carries
 * through its own shared memory (copy). */
static int run_map(child_ctx *x, crew_pool *p, size_t count, bool warm)
{
    const trial_req *q = x->req;
    trial_hdr *h = x->h;
    const size_t stride = (size_t)x->tab[0].len, out_size = q->result_cap;
    const unsigned char *in = x->base + x->tab[0].off;
    unsigned char *copy = NULL, *out = calloc(count ? count : 1, out_size ? out_size : 1);
    int *statuses = calloc(count ? count : 1, sizeof *statuses);
    bool contiguous = count == q->n - q->first && x->idx[0] == q->first;
    if (!contiguous || (q->cfg.args == CMP_COPY && q->cfg.model == CMP_PROCESSES)) {
        copy = malloc(count * stride + 1);
        if (copy)
            for (size_t k = 0; k < count; k++)
                memcpy(copy + k * stride, x->base + x->tab[x->idx[k]].off, stride);
        in = copy;
    } else {
        in = x->base + x->tab[q->first].off;
    }
    int rc = out && statuses && in ? 0 : CREW_ENOMEM;
    crew_future *f = NULL;
    if (rc == 0) {
        crew_map_options mo = {q->cfg.chunk, statuses};
        rc = crew_pool_map_submit(p, x->fn, in, stride, out, out_size, count, &mo, &f);
    }
    while (rc == 0 && crew_future_wait(f, 0.05) == CREW_ETIMEDOUT) {
        size_t d = 0;
        if (!warm && crew_future_progress(f, &d, NULL) == 0)
            atomic_store_explicit(&h->done, d, memory_order_relaxed);
    }
    if (f)
        crew_future_destroy(f);
    for (size_t k = 0; rc == 0 && !warm && k < count; k++)
        verify_record(&x->rec[x->idx[k]], statuses[k], out + k * out_size, out_size);
    free(copy);
    free(out);
    free(statuses);
    return rc;
}

/* The first k items of this run in this thread, no pool, results
 * dropped: the serial time beside each round. */
static double serial_items(child_ctx *x, size_t k, unsigned char *res)
{
    const trial_req *q = x->req;
    atomic_store(&x->h->in_serial, 1);
    double t0 = crew_now();
    for (size_t j = 0; j < k; j++) {
        size_t rl = 0, i = x->idx[j];
        if (!is_crash_status(x->ref[i].status))
            x->fn(NULL, x->base + x->tab[i].off, (size_t)x->tab[i].len, res, q->result_cap, &rl);
    }
    double t = crew_now() - t0;
    atomic_store(&x->h->in_serial, 0);
    return t;
}

static int pool_pass(child_ctx *x)
{
    const trial_req *q = x->req;
    trial_hdr *h = x->h;
    crew_pool_options o;
    size_t max_arg = 0;
    for (size_t k = 0; k < x->count; k++)
        if (x->tab[x->idx[k]].len > max_arg)
            max_arg = (size_t)x->tab[x->idx[k]].len;
    pool_options(q, q->cfg.args == CMP_BYREF && q->cfg.dispatch == CMP_FUTURES ? 0 : max_arg, &o);
    crew_pool *p;
    int rc = crew_pool_create(&p, &o);
    if (rc)
        return child_fail(h, rc, "the pool could not be created");
    int (*run)(child_ctx *, crew_pool *, size_t, bool) = q->cfg.dispatch == CMP_MAP ? run_map : run_futures;
    /* warm-up: every worker started and through an item */
    size_t warm = (size_t)q->cfg.workers * 2 < x->count ? (size_t)q->cfg.workers * 2 : x->count;
    rc = run(x, p, warm, true);
    h->rss_first = tree_rss();
    size_t k = q->serial_k < x->count ? (size_t)q->serial_k : x->count; /* serial items per round */
    unsigned char *res = k ? malloc(q->result_cap ? q->result_cap : 1) : NULL;
    if (k && !res)
        k = 0;
    for (size_t j = 0; j < x->count; j++) {
        h->all_ref += x->ref[x->idx[j]].t; /* 0 for an item that crashed */
        if (j < k)
            h->st_ref += x->ref[x->idx[j]].t;
    }
    for (int r = 0; rc == 0 && r < q->rounds && r < CMP_MAX_ROUNDS; r++) {
        h->st[r] = k ? serial_items(x, k, res) : NAN;
        h->rss_items += k;
        atomic_store_explicit(&h->done, 0, memory_order_relaxed);
        atomic_store_explicit(&h->round, r, memory_order_release);
        for (size_t j = 0; j < x->count; j++)
            x->rec[x->idx[j]].status = NOT_RUN;
        double c0 = cpu_now(), t0 = crew_now();
        rc = run(x, p, x->count, false);
        h->t[r] = crew_now() - t0;
        h->cpu[r] = cpu_now() - c0;
        h->ran[r] = x->count;
        if (rc)
            break;
        h->rounds_done = r + 1;
        h->rss_items += x->count;
        if (q->flags & TRIAL_VERIFY) {
            cmp_check c;
            verify_compare(x->ref, x->rec, q->first, q->n, &c);
            if (c.wrong > h->check.wrong || c.crashed > h->check.crashed || h->check.checked == 0)
                h->check = c;
        }
        double rss = tree_rss();
        if (q->mem_limit > 0 && rss > q->mem_limit) {
            h->rss_last = rss;
            free(res);
            crew_pool_destroy(p);
            return child_fail(h, CREW_ENOMEM, "memory grew past the limit");
        }
    }
    h->rss_last = tree_rss();
    free(res);
    crew_pool_destroy(p);
    if (rc)
        return child_fail(h, rc, "a round failed");
    return 0;
}

int trial_child(void *arg, size_t len)
{
    trial_req q;
    if (len != sizeof q)
        return 2;
    memcpy(&q, arg, sizeof q);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDOUT_FILENO); /* whatever the task prints is not our result */
        close(null);
    }
    crew_shm *items = NULL, *out = NULL;
    if (crew_shm_attach(&out, q.out_fd) != 0)
        return 3;
    trial_hdr *h = crew_shm_ptr(out);
    if (crew_shm_attach(&items, q.items_fd) != 0)
        return child_fail(h, CREW_EBADF, "cannot map the items");
    void *lib = dlopen(q.path, RTLD_NOW | RTLD_LOCAL);
    void *sym = lib ? dlsym(lib, q.symbol) : NULL;
    if (!sym)
        return child_fail(h, CREW_ENOTFOUND, "cannot load the task");
    child_ctx x = {0};
    x.req = &q;
    x.fn = (crew_task_fn)(uintptr_t)sym;
    x.items = items;
    x.base = crew_shm_ptr(items);
    x.tab = items_table(items);
    x.h = h;
    x.rec = rec_area(h);
    x.ref = x.rec + q.nmax;
    if (q.cfg.model == CMP_SERIAL)
        return serial_pass(&x);
    for (size_t i = q.first; i < q.n; i++)
        x.rec[i].status = NOT_RUN;
    x.idx = malloc((q.n - q.first ? q.n - q.first : 1) * sizeof *x.idx);
    if (!x.idx)
        return child_fail(h, CREW_ENOMEM, "out of memory");
    for (size_t i = q.first; i < q.n; i++)
        if (!((q.flags & TRIAL_SKIP_CRASHED) && is_crash_status(x.ref[i].status)))
            x.idx[x.count++] = i;
    if (x.count == 0)
        return child_fail(h, CREW_EINVAL, "no item to run");
    int rc = pool_pass(&x);
    free(x.idx);
    return rc;
}

/* ---------------------------------------------------------------- parent */
void trial_req_init(const cmp_task *t, trial_req *req, const cmp_config *c)
{
    memset(req, 0, sizeof *req);
    req->cfg = *c;
    snprintf(req->path, sizeof req->path, "%s", t->path);
    snprintf(req->symbol, sizeof req->symbol, "%s", t->symbol);
    req->items_fd = crew_shm_fd(t->items.shm);
    req->out_fd = crew_shm_fd(t->out);
    req->first = 0;
    req->n = t->n;
    req->nmax = t->items.n;
    req->rounds = 1;
    req->task_timeout = t->timeout;
    req->result_cap = t->result_cap;
    req->mem_limit = t->mem_limit;
}

static void progress(const char *what, const trial_req *q, const trial_hdr *h, double started)
{
    uint64_t done = atomic_load_explicit(&h->done, memory_order_relaxed);
    int round = atomic_load_explicit(&h->round, memory_order_acquire);
    double el = crew_now() - started;
    uint64_t n = q->n - q->first;
    if (q->cfg.model == CMP_SERIAL) {
        uint64_t k = done > q->first ? done - q->first : 0;
        double left = k ? el / (double)k * (double)(n - k) : NAN;
        if (q->stop_after > 0 && q->stop_after - el < left)
            left = q->stop_after - el;
        if (q->stop_after > 0) /* as many items as fit in stop_after */
            cli_progress("%s: %llu items so far, ~%.0f s left", what, (unsigned long long)k,
                         isfinite(left) && left > 0 ? left : 0.0);
        else
            cli_progress("%s: item %llu of %llu, ~%.0f s left", what, (unsigned long long)k,
                         (unsigned long long)n, isfinite(left) && left > 0 ? left : 0.0);
    } else if (round < 0) {
        cli_progress("%s: starting the workers", what);
    } else {
        double per_round = done ? el / ((double)round + (double)done / (double)n) : NAN;
        double left = per_round * (q->rounds - round) - (per_round * (double)done / (double)n);
        cli_progress("%s: round %d of %d, %llu/%llu items, ~%.0f s left", what, round + 1, q->rounds,
                     (unsigned long long)done, (unsigned long long)n, isfinite(left) && left > 0 ? left : 0.0);
    }
}

int trial_run(cmp_task *t, trial_req *req, const char *what, trial_result *res)
{
    memset(res, 0, sizeof *res);
    trial_hdr *h = crew_shm_ptr(t->out);
    memset(h, 0, sizeof *h);
    atomic_store(&h->round, -1);
    atomic_store(&h->done, req->first);
    const int fds[2] = {req->items_fd, req->out_fd};
    crew_process_options po = {0};
    po.method = CREW_START_FORKSERVER;
    po.name = "crew-cmp-trial";
    po.pass_fds = fds;
    po.n_pass_fds = 2;
    crew_process *cp;
    fflush(NULL);
    int rc = crew_process_start(&cp, trial_child, req, sizeof *req, &po);
    if (rc)
        return rc;
    double started = crew_now(), shown = started, round_start = started;
    int seen_round = -2;
    crew_exit ex = {0};
    bool tty = isatty(STDERR_FILENO) == 1;
    for (;;) {
        rc = crew_process_join(cp, 0.1, &ex);
        if (rc != CREW_ETIMEDOUT)
            break;
        double now = crew_now();
        int round = atomic_load_explicit(&h->round, memory_order_acquire);
        if (round != seen_round)
            seen_round = round, round_start = now;
        /* every round (a serial pass is one) gets --timeout, the warm-up too */
        double limit = t->timeout + (req->cfg.model == CMP_SERIAL ? req->stop_after : 0);
        if (now - round_start > limit) {
            crew_process_kill(cp, SIGKILL);
            rc = crew_process_join(cp, -1.0, &ex);
            res->hung = true;
            break;
        }
        if (now - shown >= (tty ? 0.25 : 1.0)) {
            progress(what, req, h, started);
            shown = now;
        }
    }
    crew_process_destroy(cp);
    if (rc)
        return rc;
    res->ran = true;
    if (!res->hung) {
        res->died_signal = ex.signal;
        /* 1: the child's own failure (in h->status); others: the task's */
        res->died_code = ex.signal == 0 && ex.code != 0 && !(ex.code == 1 && h->status) ? ex.code : 0;
        res->serial_died = (res->died_signal || res->died_code) && atomic_load(&h->in_serial);
    }
    res->status = h->status;
    res->died_at = atomic_load(&h->done);
    res->rounds = h->rounds_done;
    for (int i = 0; i < res->rounds && i < CMP_MAX_ROUNDS; i++) {
        res->t[i] = h->t[i];
        res->ran_items[i] = h->ran[i];
        res->cpu[i] = h->cpu[i];
        /* the serial time of all the round's items, as the k timed beside
         * it say, scaled by the reference's time of those k against all */
        res->speedup[i] = isfinite(h->st[i]) && h->st_ref > 0 && h->t[i] > 0
                              ? h->st[i] * (h->all_ref / h->st_ref) / h->t[i]
                              : NAN;
    }
    res->mem_per_item = h->rss_items ? (h->rss_last - h->rss_first) / (double)h->rss_items : NAN;
    res->check = h->check;
    snprintf(res->error, sizeof res->error, "%s", h->error);
    return 0;
}

int task_open(cmp_task *t, size_t n_max)
{
    size_t size = TRIAL_REC_OFF + 2 * n_max * sizeof(cmp_record);
    int rc = crew_shm_create(&t->out, size, &(crew_shm_options){"crew-compare-out", 0});
    if (rc)
        return rc;
    t->ref = rec_area(crew_shm_ptr(t->out)) + n_max;
    return 0;
}

void task_close(cmp_task *t)
{
    if (t->out)
        crew_shm_destroy(t->out);
    t->out = NULL;
    items_free(&t->items);
}

/* The records the last trial wrote (the child's area). */
cmp_record *trial_records(cmp_task *t) { return rec_area(crew_shm_ptr(t->out)); }
