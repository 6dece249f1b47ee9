/*
 * probes.c -- the measurements of `crew compare`, on crew's own pools.
 *
 * DESIGN
 *  Each probe creates the pools it needs with crew_pool_create (kind =
 *  threads or processes, start method as planned), times a public call
 *  sequence with crew_now(), repeats it plan->reps times and keeps the
 *  median, then destroys the pools: no probe leaves a worker behind for the
 *  next. Every wait has a deadline (plan->timeout), so a stuck pool ends the
 *  run with an error instead of hanging it.
 *
 *  What runs where:
 *  - built-in tasks run in pools of this process; the one that segfaults on
 *    purpose runs in a process pool (the pool survives it) or, for the thread
 *    pool, inside a sacrificial child process made with crew_process_start
 *    (CREW_START_FORK): the child dies, this process reads how far it got
 *    from a pipe and how it died from crew_process_join.
 *  - the user's task (--task) is never called in this process: the serial
 *    baseline and the thread-pool curve run in a sacrificial child too, which
 *    sends its figures back over a pipe; under processes a crash is a failed
 *    future.
 *  The children are forked while this process runs no pool (they run first,
 *    see compare.c), so fork's rule -- no other thread holding a lock -- is
 *    kept.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

double median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    /* insertion sort: n is a handful of repetitions */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int pool_new(crew_pool **p, int model, int workers, int method, size_t max_arg, size_t max_res)
{
    crew_pool_options o = {0};
    o.kind = model == CMP_THREADS ? CREW_THREADS : CREW_PROCESSES;
    o.workers = workers;
    o.start_method = model == CMP_PROCESSES ? method : 0;
    o.max_arg_size = max_arg;
    o.max_result_size = max_res;
    return crew_pool_create(p, &o);
}

/* Submits one task and waits for it; *task_status gets its final status. */
static int run_one(crew_pool *p, crew_task_fn fn, const void *arg, size_t len, double timeout,
                   int *task_status)
{
    crew_future *f;
    int rc = crew_pool_submit(p, fn, arg, len, &f);
    if (rc)
        return rc;
    rc = crew_future_wait(f, timeout);
    if (rc == 0 && task_status)
        *task_status = crew_future_status(f);
    if (rc) /* timed out: stop it, then the handle can go */
        crew_future_cancel(f);
    crew_future_destroy(f);
    return rc;
}

/* One empty task to a worker and back, the caller spinning on the pool's
 * completion list (crew_future_notify + crew_pool_completions) instead of
 * waiting on the future. */
static int handoff_one(crew_pool *p, double timeout)
{
    crew_future *f;
    int rc = crew_pool_submit(p, wl_task_empty, NULL, 0, &f);
    if (rc)
        return rc;
    if ((rc = crew_future_notify(f, NULL)) == 0) {
        double deadline = 0;
        for (unsigned spins = 0;; spins++) {
            crew_future *done;
            size_t k = 0;
            if ((rc = crew_pool_completions(p, &done, 1, &k)) != 0 || k == 1)
                break;
            if ((spins & 1023) == 1023) {
                double now = crew_now();
                if (deadline == 0)
                    deadline = now + timeout;
                else if (now > deadline) {
                    rc = CREW_ETIMEDOUT;
                    break;
                }
            }
        }
    }
    if (rc)
        crew_future_cancel(f);
    crew_future_destroy(f);
    return rc;
}

static int fail(cmp_model *m, const char *what, int rc)
{
    m->status = rc;
    cli_error("%s: %s failed: %s (%s)", m->name, what, crew_err_name(rc), crew_strerror(rc));
    return CLI_EXIT_MEASURE;
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

/* ---------------------------------------------------------------- batches */
/* Submits n empty tasks, then waits for all; copes with a bounded queue
 * (CREW_EAGAIN) by waiting for the oldest outstanding one. */
static int empty_batch(crew_pool *p, crew_future **fs, int n, double timeout)
{
    int done = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        while ((rc = crew_pool_submit(p, wl_task_empty, NULL, 0, &fs[i])) == CREW_EAGAIN && done < i)
            if ((rc = crew_future_wait(fs[done++], timeout)) != 0)
                break;
        if (rc) {
            n = i;
            break;
        }
    }
    int rc2 = crew_wait_all(fs + done, (size_t)(n - done), timeout);
    for (int i = 0; i < n; i++) {
        if (rc == 0 && rc2 == 0 && crew_future_status(fs[i]) != 0)
            rc = crew_future_status(fs[i]);
        crew_future_destroy(fs[i]);
    }
    return rc ? rc : rc2;
}

/* Runs a map and waits; on a task failure fills *fl. */
static int map_run(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out, size_t out_size,
                   size_t n, size_t chunk, double timeout, crew_failure *fl)
{
    crew_map_options mo = {0};
    mo.chunk_size = chunk;
    crew_future *f;
    int rc = crew_pool_map_submit(p, fn, in, in_size, out, out_size, n, &mo, &f);
    if (rc)
        return rc;
    rc = crew_future_wait(f, timeout);
    if (rc) {
        crew_future_cancel(f);
        crew_future_wait(f, timeout);
    } else {
        rc = crew_future_status(f);
        if (rc && fl)
            crew_future_failure(f, fl);
    }
    crew_future_destroy(f);
    return rc;
}

/* Submits n items (one future each, as a program using an executor would),
 * waits for all, copies each result to out + i*out_size. Returns 0, the
 * status of the first failed item (with *fl filled), or a pool error. A
 * bounded queue (CREW_EAGAIN) is handled by waiting for the oldest.
 *
 * It waits through the pool's completion fd (crew_future_notify, poll,
 * crew_pool_completions), not crew_wait_all: a thread that waits on a
 * thread pool's futures runs queued tasks meanwhile, so a pool of N workers
 * would compute with N + 1 threads and the curve would credit threads with a
 * worker they were not given. poll() only sleeps. */
static int submit_run(crew_pool *p, crew_task_fn fn, const unsigned char *in, size_t in_size, size_t n,
                      unsigned char *out, size_t out_size, double timeout, crew_failure *fl)
{
    crew_future **fs = calloc(n ? n : 1, sizeof *fs);
    if (!fs)
        return CREW_ENOMEM;
    int fd = crew_pool_fd(p);
    size_t sent = 0, oldest = 0, got = 0;
    int rc = fd < 0 ? fd : 0;
    while (rc == 0 && sent < n) {
        rc = crew_pool_submit(p, fn, in_size ? in + sent * in_size : NULL, in_size, &fs[sent]);
        if (rc == CREW_EAGAIN && oldest < sent) {
            rc = crew_future_wait(fs[oldest++], timeout);
            continue;
        }
        if (rc)
            break;
        rc = crew_future_notify(fs[sent], NULL);
        sent++;
    }
    double deadline = crew_now() + timeout;
    while (rc == 0 && got < sent) {
        crew_future *done[256];
        size_t k = 0;
        if ((rc = crew_pool_completions(p, done, 256, &k)) != 0)
            break;
        got += k;
        if (got >= sent)
            break;
        double left = deadline - crew_now();
        if (left <= 0) {
            rc = CREW_ETIMEDOUT;
            break;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)
            rc = -errno;
    }
    for (size_t i = 0; i < sent; i++) {
        if (rc == 0) {
            int st = crew_future_status(fs[i]);
            if (st != 0) {
                rc = st;
                if (fl)
                    crew_future_failure(fs[i], fl);
            } else if (out_size) {
                const void *data = NULL;
                size_t len = 0;
                if (crew_future_result(fs[i], &data, &len) == 0 && len)
                    memcpy(out + i * out_size, data, len < out_size ? len : out_size);
            }
        } else if (!crew_future_done(fs[i])) {
            crew_future_cancel(fs[i]);
        }
        crew_future_destroy(fs[i]);
    }
    free(fs);
    return rc;
}

/* ---------------------------------------------------------------- curve */
/* All items once in the calling thread, no pool: seconds, or NaN with
 * *task_rc set when the task failed. */
static double serial_once(const cmp_plan *pl, unsigned char *res, int *task_rc)
{
    double t0 = crew_now();
    for (long k = 0; k < pl->items; k++) {
        size_t rl = 0;
        int rc = pl->task(NULL, pl->in + (size_t)k * pl->in_size, pl->in_size, res, pl->out_size, &rl);
        if (rc < 0) {
            *task_rc = rc;
            return NAN;
        }
    }
    return crew_now() - t0;
}

/* Times the plan's items on a pool of each worker count.
 *
 * The pools are made first and the runs interleaved: each round runs the
 * items serially once (when `serial_here`) and then once on every pool, and
 * a point's speedup is the median of its per-round ratios serial / pool.
 * Load that drifts during the run (another program, a frequency change)
 * then hits the baseline and the pools alike instead of skewing whichever
 * was measured last. Without serial_here (the user's task must not run in
 * this process) the ratio uses *serial, measured elsewhere.
 *
 * A task failure is the user's (CLI_EXIT_TASK, *fl says how); anything else
 * a measurement failure. */
static int curve(int model, const cmp_plan *pl, bool serial_here, double *serial, cmp_point *pts, int *npts,
                 crew_failure *fl, int *rc_out)
{
    size_t max_arg = pl->in_size > 65536 ? pl->in_size : 65536;
    size_t max_res = pl->out_size > 65536 ? pl->out_size : 65536;
    const char *name = model == CMP_THREADS ? "threads" : "processes";
    const char *what = pl->user ? "your task" : "the workload";
    unsigned char *out = calloc((size_t)pl->items, pl->out_size ? pl->out_size : 1);
    crew_pool *pools[CMP_MAX_POINTS] = {0};
    /* per point and round: the pool's time and the serial time of that round */
    double t[CMP_MAX_POINTS][16] = {{0}}, st[CMP_MAX_POINTS][16] = {{0}}, all_serial[CMP_MAX_POINTS * 16];
    int rounds[CMP_MAX_POINTS] = {0}, nserial = 0;
    int rc = out ? 0 : CREW_ENOMEM, task_rc = 0, n = pl->ncurve;
    /* All pools alive at once when they are small; a long --workers list
     * with big counts is measured one pool at a time instead (each still
     * paired with its own serial runs), so it never holds thousands of
     * workers at once. */
    long total = 0;
    for (int k = 0; k < n; k++)
        total += pl->curve_workers[k];
    int group = total <= 256 ? n : 1;
    *npts = 0;
    for (int g0 = 0; g0 < n && rc == 0; g0 += group) {
        int g1 = g0 + group < n ? g0 + group : n;
        for (int k = g0; k < g1 && rc == 0; k++) {
            int w = pl->curve_workers[k];
            cli_progress("%s: %d worker%s ready for %s (%d/%d)", name, w, w == 1 ? "" : "s", what, k + 1, n);
            if ((rc = pool_new(&pools[k], model, w, pl->pool_method, max_arg, max_res)) != 0) {
                pools[k] = NULL;
                break;
            }
            /* warm-up: every worker starts, touches its stack, faults in code */
            size_t warm = (size_t)(pl->items < w ? pl->items : w);
            rc = submit_run(pools[k], pl->task, pl->in, pl->in_size, warm, out, pl->out_size, pl->timeout, fl);
            if (rc)
                task_rc = rc;
        }
        double spent = 0;
        for (int i = 0; i < pl->reps && i < 16 && rc == 0 && (i < 2 || spent < pl->point_budget * (g1 - g0)); i++) {
            double t0 = crew_now(), s = NAN;
            if (serial_here) {
                cli_progress("%s: %s, round %d/%d: serial baseline", name, what, i + 1, pl->reps);
                s = serial_once(pl, out, &task_rc);
                if (task_rc) {
                    rc = task_rc;
                    break;
                }
                all_serial[nserial++] = s;
            } else {
                s = *serial;
            }
            for (int k = g0; k < g1 && rc == 0; k++) {
                cli_progress("%s: %s, round %d/%d: %d worker%s", name, what, i + 1, pl->reps, pl->curve_workers[k],
                             pl->curve_workers[k] == 1 ? "" : "s");
                double t1 = crew_now();
                rc = submit_run(pools[k], pl->task, pl->in, pl->in_size, (size_t)pl->items, out, pl->out_size,
                                pl->timeout, fl);
                if (rc) {
                    task_rc = rc;
                    break;
                }
                t[k][i] = crew_now() - t1;
                st[k][i] = s;
                rounds[k]++;
            }
            spent += crew_now() - t0;
        }
        /* A user's task still running past the deadline in a thread cannot
         * be stopped, and destroying its pool would wait for it: leave the
         * pool to the sacrificial child's exit. */
        bool stuck = rc == CREW_ETIMEDOUT && model == CMP_THREADS && pl->user;
        for (int k = g0; k < g1; k++)
            if (pools[k] && !stuck) {
                crew_pool_destroy(pools[k]);
                pools[k] = NULL;
            }
    }
    free(out);
    if (rc) {
        *rc_out = rc;
        /* a pool that cannot be made or waited for is a measurement failure;
         * any other status came from the task itself (its error, its death,
         * or -- for the user's task -- not finishing within --timeout) */
        bool task = task_rc != 0 && rc != CREW_ENOMEM && rc != CREW_ESHUTDOWN &&
                    (rc != CREW_ETIMEDOUT || pl->user);
        return task ? CLI_EXIT_TASK : CLI_EXIT_MEASURE;
    }
    if (serial_here)
        *serial = median(all_serial, nserial);
    for (int k = 0; k < n; k++) {
        cmp_point *pt = &pts[(*npts)++];
        double ratio[16];
        for (int i = 0; i < rounds[k]; i++)
            ratio[i] = st[k][i] / t[k][i];
        pt->workers = pl->curve_workers[k];
        pt->items = pl->items;
        pt->speedup = median(ratio, rounds[k]);
        pt->seconds = median(t[k], rounds[k]);
        pt->items_per_s = (double)pl->items / pt->seconds;
    }
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- children
 * A sacrificial child runs `job` and writes its figures to a pipe; the
 * parent reads them and then learns from join whether the child survived. */
typedef struct child_job {
    int fd;
    int (*job)(int fd, const cmp_plan *pl);
    const cmp_plan *pl;
} child_job;

static int child_entry(void *arg, size_t len)
{
    (void)len;
    const child_job *cj = arg;
    int rc = cj->job(cj->fd, cj->pl);
    return rc == 0 ? 0 : 1;
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* Runs job in a forked child; reads everything it wrote into buf (up to
 * cap; *got bytes); fills *ex with how it ended. */
static int in_child(int (*job)(int, const cmp_plan *), const cmp_plan *pl, double limit, void *buf, size_t cap,
                    size_t *got, crew_exit *ex)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -errno;
    child_job cj = {fds[1], job, pl};
    crew_process_options po = {0};
    po.method = CREW_START_FORK;
    po.name = "crew-compare-child";
    crew_process *cp;
    fflush(NULL);
    int rc = crew_process_start(&cp, child_entry, &cj, sizeof cj, &po);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return rc;
    }
    size_t n = 0;
    double deadline = crew_now() + limit;
    bool late = false;
    for (;;) {
        /* the child writes at the end: wait for it, but not forever */
        double left = deadline - crew_now();
        struct pollfd pf = {fds[0], POLLIN, 0};
        int pr = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            late = true;
            break;
        }
        ssize_t r = read(fds[0], (char *)buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap)
            break;
    }
    close(fds[0]);
    *got = n;
    if (late)
        crew_process_kill(cp, SIGKILL);
    rc = crew_process_join(cp, pl->timeout, ex);
    if (late && rc == 0) {
        crew_process_destroy(cp);
        return CREW_ETIMEDOUT;
    }
    if (rc == CREW_ETIMEDOUT) {
        crew_process_kill(cp, SIGKILL);
        rc = crew_process_join(cp, CREW_FOREVER, ex);
        if (rc == 0)
            rc = CREW_ETIMEDOUT;
    }
    crew_process_destroy(cp);
    return rc;
}

/* ---- the user's task under threads, in a child */
typedef struct user_thread_figures {
    int exit, rc;
    double serial;
    int npts;
    cmp_point pts[CMP_MAX_POINTS];
    crew_failure fl;
} user_thread_figures;

static int user_threads_job(int fd, const cmp_plan *pl)
{
    user_thread_figures u;
    memset(&u, 0, sizeof u);
    u.serial = NAN;
    u.exit = curve(CMP_THREADS, pl, true, &u.serial, u.pts, &u.npts, &u.fl, &u.rc);
    return write_all(fd, &u, sizeof u) ? 0 : 1;
}

static const char *sig_text(int sig)
{
    static char buf[48];
    const char *a = sigabbrev_np(sig);
    snprintf(buf, sizeof buf, "SIG%s", a ? a : "?");
    return buf;
}

/* ---- the fault demo under threads, in a child: byte 'P' once the pool
 * runs, one byte 'k' per innocent task completed. */
static int fault_threads_job(int fd, const cmp_plan *pl)
{
    crew_pool *p;
    if (pool_new(&p, CMP_THREADS, pl->ready_workers, 0, 0, 0) != 0)
        return 1;
    write_all(fd, "P", 1);
    wl_arg a = {0};
    a.kind = CMP_WL_IO;
    a.wait_ns = 20 * 1000 * 1000;
    wl_arg c = a;
    c.crash = 1;
    crew_future *fs[7];
    if (crew_pool_submit(p, wl_task_work, &c, sizeof c, &fs[0]) != 0)
        return 1;
    for (int i = 1; i < 7; i++) {
        a.seq = (uint64_t)i;
        if (crew_pool_submit(p, wl_task_work, &a, sizeof a, &fs[i]) != 0)
            return 1;
    }
    for (int i = 1; i < 7; i++)
        if (crew_future_wait(fs[i], pl->timeout) == 0 && crew_future_status(fs[i]) == 0)
            write_all(fd, "k", 1);
    /* not reached if the crash took the process down, as it does */
    for (int i = 0; i < 7; i++)
        crew_future_destroy(fs[i]);
    crew_pool_destroy(p);
    return 0;
}

static int fault_threads(cmp_model *m, const cmp_plan *pl)
{
    cli_progress("threads: a task segfaults (in a sacrificial child process)");
    char buf[64];
    size_t got = 0;
    crew_exit ex = {0};
    int rc = in_child(fault_threads_job, pl, pl->timeout, buf, sizeof buf, &got, &ex);
    if (rc)
        return fail(m, "fault demo", rc);
    if (got == 0 || buf[0] != 'P') /* the child's pool never ran */
        return fail(m, "fault demo (thread pool in the child)", CREW_ECHILD);
    cmp_fault *fa = &m->fault;
    fa->measured = true;
    fa->survived = ex.signal == 0 && ex.code == 0;
    fa->signal = ex.signal;
    fa->crashed_status = 0;
    fa->innocent_total = 6;
    fa->innocent_ok = 0;
    for (size_t i = 0; i < got; i++)
        fa->innocent_ok += buf[i] == 'k';
    fa->pool_usable = fa->survived;
    fa->detect_ms = NAN;
    return CLI_EXIT_OK;
}

static int fault_processes(cmp_model *m, const cmp_plan *pl)
{
    cli_progress("processes: a task segfaults in a worker");
    crew_pool *p;
    int rc = pool_new(&p, CMP_PROCESSES, pl->ready_workers, pl->pool_method, 0, 0);
    if (rc)
        return fail(m, "fault demo", rc);
    /* warm: every worker up and through a task (one task at a time would
     * leave the others still starting, which keeps the monitor busy), so
     * detection is not confused with start-up */
    wl_arg a = {0};
    {
        wl_arg w = {0};
        w.kind = CMP_WL_IO;
        w.wait_ns = 2 * 1000 * 1000;
        crew_future *ws[64] = {0};
        int nw = pl->ready_workers < 64 ? pl->ready_workers : 64;
        for (int i = 0; i < nw && rc == 0; i++)
            rc = crew_pool_submit(p, wl_task_work, &w, sizeof w, &ws[i]);
        if (rc == 0)
            rc = crew_wait_all(ws, (size_t)nw, pl->timeout);
        for (int i = 0; i < nw; i++)
            if (ws[i])
                crew_future_destroy(ws[i]);
    }
    a.kind = CMP_WL_IO;
    a.wait_ns = 20 * 1000 * 1000;
    /* The crashing task's argument lies in a crew_shm region, passed by
     * reference: the task writes the time of its death there, so what is
     * reported is death -> future done, not the task's start-up. */
    crew_shm *shm = NULL;
    if (rc == 0)
        rc = crew_shm_create(&shm, sizeof(wl_arg), NULL);
    wl_arg *c = rc == 0 ? crew_shm_ptr(shm) : NULL;
    if (c) {
        *c = a;
        c->crash = 1;
        c->died_at = NAN;
    }
    crew_future *fs[7] = {0};
    double t1 = NAN;
    if (rc == 0)
        rc = crew_pool_submit_shm(p, wl_task_work, shm, 0, sizeof *c, &fs[0]);
    for (int i = 1; i < 7 && rc == 0; i++) {
        a.seq = (uint64_t)i;
        rc = crew_pool_submit(p, wl_task_work, &a, sizeof a, &fs[i]);
    }
    if (rc == 0 && (rc = crew_future_wait(fs[0], pl->timeout)) == 0)
        t1 = crew_now();
    if (rc == 0)
        rc = crew_wait_all(fs + 1, 6, pl->timeout);
    cmp_fault *fa = &m->fault;
    if (rc == 0) {
        crew_failure fl = {0};
        crew_future_failure(fs[0], &fl);
        fa->measured = true;
        fa->survived = true;
        fa->crashed_status = crew_future_status(fs[0]);
        fa->signal = fl.signal;
        fa->innocent_total = 6;
        fa->innocent_ok = 0;
        for (int i = 1; i < 7; i++)
            fa->innocent_ok += crew_future_status(fs[i]) == 0;
        fa->detect_ms = isfinite(c->died_at) ? (t1 - c->died_at) * 1e3 : NAN;
        int st = -1;
        fa->pool_usable = run_one(p, wl_task_empty, NULL, 0, pl->timeout, &st) == 0 && st == 0;
    }
    for (int i = 0; i < 7; i++)
        if (fs[i])
            crew_future_destroy(fs[i]);
    crew_pool_destroy(p);
    if (shm)
        crew_shm_destroy(shm);
    return rc ? fail(m, "fault demo", rc) : CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- the model */
static void *noop_thread(void *arg) { return arg; }
static int noop_process(void *arg, size_t len)
{
    (void)arg, (void)len;
    return 0;
}

/* One bare worker: crew_thread or crew_process start + join, in µs. */
static int worker_start(int model, int method, const cmp_plan *pl, double *us)
{
    double t[16];
    int reps = pl->reps < 16 ? pl->reps : 16, per = model == CMP_THREADS ? 20 : 5;
    for (int i = 0; i < reps; i++) {
        double t0 = crew_now();
        for (int k = 0; k < per; k++) {
            int rc;
            if (model == CMP_THREADS) {
                crew_thread *th;
                if ((rc = crew_thread_start(&th, noop_thread, NULL, NULL)) != 0)
                    return rc;
                rc = crew_thread_join(th, pl->timeout, NULL);
                crew_thread_destroy(th);
            } else {
                crew_process_options po = {0};
                po.method = (crew_start_method)method;
                crew_process *cp;
                if ((rc = crew_process_start(&cp, noop_process, NULL, 0, &po)) != 0)
                    return rc;
                crew_exit ex;
                rc = crew_process_join(cp, pl->timeout, &ex);
                crew_process_destroy(cp);
                if (rc == 0 && (ex.signal || ex.code))
                    rc = CREW_ECRASHED;
            }
            if (rc)
                return rc;
        }
        t[i] = (crew_now() - t0) / per * 1e6;
    }
    *us = median(t, reps);
    return 0;
}

/* The processes "by reference" transfer: arg is the first MiB of a crew_shm
 * region (the worker's own mapping of it); the task copies it into the
 * second MiB of the same region, in place. */
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

static int probe_costs(cmp_model *m, int model, const cmp_plan *pl)
{
    const char *name = m->name;
    double t[16], u[16];
    int reps = pl->reps < 16 ? pl->reps : 16, rc = 0;

    /* one bare worker */
    if (model == CMP_THREADS) {
        cli_progress("%s: start + join one crew_thread", name);
        if ((rc = worker_start(model, 0, pl, &m->worker_us)) != 0)
            return fail(m, "crew_thread start", rc);
    } else {
        for (int k = 0; k < pl->nmethods; k++) {
            cli_progress("%s: start + join one crew_process, method %s", name, pl->method_names[k]);
            double us = NAN;
            rc = worker_start(model, pl->methods[k], pl, &us);
            m->methods[k].worker_us = us;
            if (pl->methods[k] == pl->pool_method) {
                if (rc)
                    return fail(m, "crew_process start", rc);
                m->worker_us = us;
            }
        }
        rc = 0;
    }

    /* start + stop of a pool of 1, per start method */
    int nmeth = model == CMP_PROCESSES ? pl->nmethods : 1;
    for (int k = 0; k < nmeth; k++) {
        int method = model == CMP_PROCESSES ? pl->methods[k] : 0;
        cli_progress("%s: start + stop a pool of 1%s%s", name, model == CMP_PROCESSES ? ", method " : "",
                     model == CMP_PROCESSES ? pl->method_names[k] : "");
        int i;
        for (i = 0; i < reps; i++) {
            double t0 = crew_now();
            crew_pool *p;
            if ((rc = pool_new(&p, model, 1, method, 0, 0)) != 0)
                break;
            rc = run_one(p, wl_task_empty, NULL, 0, pl->timeout, NULL);
            crew_pool_destroy(p);
            if (rc)
                break;
            t[i] = (crew_now() - t0) * 1e3;
        }
        double ms = rc ? NAN : median(t, reps);
        if (model == CMP_PROCESSES) {
            m->methods[m->nmethods].name = pl->method_names[k];
            m->methods[m->nmethods].status = rc;
            m->methods[m->nmethods].start_ms = ms;
            m->nmethods++;
            if (method == pl->pool_method)
                m->start_ms = ms;
            if (rc && method == pl->pool_method)
                return fail(m, "pool start", rc);
            rc = 0;
        } else {
            if (rc)
                return fail(m, "pool start", rc);
            m->start_ms = ms;
        }
    }

    /* a pool of N ready to run, and its destroy */
    cli_progress("%s: pool of %d ready to run", name, pl->ready_workers);
    m->ready_workers = pl->ready_workers;
    for (int i = 0; i < reps; i++) {
        double t0 = crew_now();
        crew_pool *p;
        if ((rc = pool_new(&p, model, pl->ready_workers, pl->pool_method, 0, 0)) != 0)
            return fail(m, "pool create", rc);
        rc = run_one(p, wl_task_empty, NULL, 0, pl->timeout, NULL);
        double t1 = crew_now();
        crew_pool_destroy(p);
        if (rc)
            return fail(m, "first task", rc);
        t[i] = (t1 - t0) * 1e3;
        u[i] = (crew_now() - t1) * 1e3;
    }
    m->ready_ms = median(t, reps);
    m->destroy_ms = median(u, reps);

    /* memory per idle worker */
    cli_progress("%s: memory of %d idle workers", name, pl->mem_workers);
    {
        group_mem before, after;
        crew_pool *p;
        if ((rc = group_mem_get(&before)) != 0)
            return fail(m, "reading /proc memory", rc);
        if ((rc = pool_new(&p, model, pl->mem_workers, pl->pool_method, 0, 0)) != 0)
            return fail(m, "pool create", rc);
        crew_future **fs = calloc((size_t)pl->mem_workers * 8, sizeof *fs);
        rc = fs ? empty_batch(p, fs, pl->mem_workers * 8, pl->timeout) : CREW_ENOMEM;
        free(fs);
        if (rc == 0)
            rc = group_mem_get(&after);
        crew_pool_destroy(p);
        if (rc)
            return fail(m, "idle memory", rc);
        m->mem_workers = pl->mem_workers;
        m->idle_metric = model == CMP_THREADS ? "RSS" : "PSS";
        m->idle_bytes = (model == CMP_THREADS ? after.rss - before.rss : after.pss - before.pss) / pl->mem_workers;
        m->idle_private_bytes = (after.priv - before.priv) / pl->mem_workers;
    }

    /* round trip, throughput, map: one pool of N */
    crew_pool *p;
    if ((rc = pool_new(&p, model, pl->ready_workers, pl->pool_method, 0, 0)) != 0)
        return fail(m, "pool create", rc);
    cli_progress("%s: round trip of one tiny task", name);
    for (int i = 0; i < 200 && rc == 0; i++)
        rc = run_one(p, wl_task_empty, NULL, 0, pl->timeout, NULL);
    for (int i = 0; i < reps && rc == 0; i++) {
        double t0 = crew_now();
        for (int k = 0; k < pl->rt_calls && rc == 0; k++)
            rc = run_one(p, wl_task_empty, NULL, 0, pl->timeout, NULL);
        t[i] = (crew_now() - t0) / pl->rt_calls * 1e6;
    }
    if (rc) {
        crew_pool_destroy(p);
        return fail(m, "round trip", rc);
    }
    m->roundtrip_us = median(t, reps);

    /* The same, but the caller never runs the task itself: it spins on the
     * completion list, so the figure is the hand-off to a worker and back
     * (crew_future_wait on a thread pool may run a queued task in the
     * waiting thread, which the figure above then includes). */
    cli_progress("%s: round trip handed to a worker", name);
    for (int i = 0; i < reps && rc == 0; i++) {
        double t0 = crew_now();
        for (int k = 0; k < pl->rt_calls && rc == 0; k++)
            rc = handoff_one(p, pl->timeout);
        t[i] = (crew_now() - t0) / pl->rt_calls * 1e6;
    }
    if (rc) {
        crew_pool_destroy(p);
        return fail(m, "hand-off round trip", rc);
    }
    m->handoff_us = median(t, reps);

    cli_progress("%s: %d empty tasks, submit then wait", name, pl->batch);
    crew_future **fs = calloc((size_t)pl->batch, sizeof *fs);
    for (int i = 0; i < reps && rc == 0; i++) {
        double t0 = crew_now();
        rc = fs ? empty_batch(p, fs, pl->batch, pl->timeout) : CREW_ENOMEM;
        t[i] = pl->batch / (crew_now() - t0);
    }
    free(fs);
    if (rc) {
        crew_pool_destroy(p);
        return fail(m, "empty tasks", rc);
    }
    m->empty_per_s = median(t, reps);

    cli_progress("%s: %ld empty items through crew_pool_map", name, pl->map_items);
    uint64_t *in = calloc((size_t)pl->map_items, sizeof *in);
    for (int i = 0; i < reps && rc == 0; i++) {
        double t0 = crew_now();
        rc = in ? map_run(p, wl_task_empty, in, sizeof *in, NULL, 0, (size_t)pl->map_items, 0, pl->timeout, NULL)
                : CREW_ENOMEM;
        t[i] = (double)pl->map_items / (crew_now() - t0);
    }
    free(in);
    crew_pool_destroy(p);
    if (rc)
        return fail(m, "map", rc);
    m->map_per_s = median(t, reps);

    /* 1 MiB there and back */
    cli_progress("%s: 1 MiB to a worker and back", name);
    if ((rc = pool_new(&p, model, 1, pl->pool_method, MIB, MIB)) != 0)
        return fail(m, "pool create", rc);
    unsigned char *src = malloc(MIB), *dst = malloc(MIB);
    if (!src || !dst)
        rc = CREW_ENOMEM;
    else
        for (size_t i = 0; i < MIB; i++)
            src[i] = (unsigned char)(i * 131u);
    for (int i = 0; i < reps + 1 && rc == 0; i++) {
        double t0 = crew_now();
        for (int k = 0; k < pl->xfer_calls && rc == 0; k++) {
            crew_future *f;
            if ((rc = crew_pool_submit(p, wl_task_echo, src, MIB, &f)) != 0)
                break;
            rc = crew_future_wait(f, pl->timeout);
            const void *data = NULL;
            size_t len = 0;
            if (rc == 0 && (rc = crew_future_status(f)) == 0 && (rc = crew_future_result(f, &data, &len)) == 0) {
                if (len != MIB)
                    rc = CREW_EPROTO;
                else
                    memcpy(dst, data, MIB);
            }
            crew_future_destroy(f);
        }
        if (i > 0) /* the first round warms the shared buffers up */
            t[i - 1] = (crew_now() - t0) / pl->xfer_calls * 1e6;
    }
    if (rc == 0 && memcmp(src, dst, MIB) != 0)
        rc = CREW_EPROTO;
    if (rc == 0)
        m->xfer_copy_us = median(t, reps);
    if (rc == 0 && model == CMP_THREADS) {
        /* by reference: the worker reads and writes our buffers */
        wl_ref_arg ra = {src, dst, MIB};
        for (int i = 0; i < reps + 1 && rc == 0; i++) {
            double t0 = crew_now();
            for (int k = 0; k < pl->xfer_calls && rc == 0; k++) {
                int st = 0;
                rc = run_one(p, wl_task_copy_ref, &ra, sizeof ra, pl->timeout, &st);
                if (rc == 0)
                    rc = st;
            }
            if (i > 0)
                t[i - 1] = (crew_now() - t0) / pl->xfer_calls * 1e6;
        }
        if (rc == 0) {
            m->xfer_ref_us = median(t, reps);
            m->xfer_ref_how = "pointer, one copy";
        }
    }
    if (rc == 0 && model == CMP_PROCESSES) {
        /* by reference: argument and result live in a crew_shm region;
         * crew_pool_submit_shm passes (region, offset, length) and the
         * worker works in its own mapping of the region. The pool copies
         * nothing; the task copies the 1 MiB once, as the thread pool's
         * task does between the caller's buffers. */
        crew_shm *shm = NULL;
        rc = crew_shm_create(&shm, 2 * MIB, NULL);
        unsigned char *base = rc == 0 ? crew_shm_ptr(shm) : NULL;
        if (base)
            memcpy(base, src, MIB);
        for (int i = 0; i < reps + 1 && rc == 0; i++) {
            double t0 = crew_now();
            for (int k = 0; k < pl->xfer_calls && rc == 0; k++) {
                crew_future *f;
                if ((rc = crew_pool_submit_shm(p, shm_copy_task, shm, 0, MIB, &f)) != 0)
                    break;
                rc = crew_future_wait(f, pl->timeout);
                if (rc == 0)
                    rc = crew_future_status(f);
                crew_future_destroy(f);
            }
            if (i > 0)
                t[i - 1] = (crew_now() - t0) / pl->xfer_calls * 1e6;
        }
        if (rc == 0 && memcmp(base + MIB, src, MIB) != 0)
            rc = CREW_EPROTO;
        if (rc == 0) {
            m->xfer_ref_us = median(t, reps);
            m->xfer_ref_how = "crew_shm region, no pool copy";
        }
        if (shm)
            crew_shm_destroy(shm);
    }
    free(src);
    free(dst);
    crew_pool_destroy(p);
    if (rc)
        return fail(m, "1 MiB transfer", rc);
    return CLI_EXIT_OK;
}

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
            return fail(m, "I/O tasks", CREW_ENOMEM);
        for (long i = 0; i < n; i++) {
            in[i].kind = CMP_WL_IO;
            in[i].wait_ns = (uint64_t)(pl->io_wait_s * 1e9);
            in[i].seq = (uint64_t)i;
        }
        unsigned char *out = calloc((size_t)n, 2 * sizeof(uint64_t));
        crew_pool *p = NULL;
        int rc = out ? pool_new(&p, model, w, pl->pool_method, 0, 0) : CREW_ENOMEM;
        /* One task per worker first: it starts them all and tells the rate,
         * so the batch can be sized to the budget (a pool that runs waits
         * one at a time must not take minutes). */
        double t[16], spent = 0;
        int reps = 0;
        if (rc == 0) {
            double t0 = crew_now();
            rc = submit_run(p, wl_task_work, (unsigned char *)in, sizeof *in, (size_t)w, out, 2 * sizeof(uint64_t),
                            pl->timeout, NULL);
            double rate = w / (crew_now() - t0), fit = rate * pl->point_budget / pl->reps;
            if (fit < n)
                n = fit < w ? w : (long)fit;
        }
        for (int i = 0; i < pl->reps && i < 16 && rc == 0 && (i < 2 || spent < pl->point_budget); i++) {
            double t0 = crew_now();
            rc = submit_run(p, wl_task_work, (unsigned char *)in, sizeof *in, (size_t)n, out, 2 * sizeof(uint64_t),
                            pl->timeout, NULL);
            t[reps++] = crew_now() - t0;
            spent += t[reps - 1];
        }
        if (p)
            crew_pool_destroy(p);
        free(in);
        free(out);
        if (rc)
            return fail(m, "I/O tasks", rc);
        cmp_point *pt = &m->io[m->nio++];
        pt->workers = w;
        pt->items = n;
        pt->seconds = median(t, reps);
        pt->speedup = NAN;
        pt->items_per_s = (double)n / pt->seconds;
    }
    return CLI_EXIT_OK;
}

int probe_model(cmp_results *r, int model, const cmp_plan *pl)
{
    cmp_model *m = &r->m[model];
    int ex;
    if (model == CMP_THREADS && pl->user) {
        /* the user's task: serial and threads in a sacrificial child */
        cli_progress("threads: your task (in a sacrificial child process)");
        static user_thread_figures u;
        size_t got = 0;
        crew_exit cx = {0};
        /* every serial run and every batch may take up to --timeout */
        double limit = pl->timeout * ((pl->reps + 1) * (pl->ncurve + 1) + 1);
        int rc = in_child(user_threads_job, pl, limit, &u, sizeof u, &got, &cx);
        if (rc == CREW_ETIMEDOUT) {
            cli_error("your task did not finish within --timeout (%.0f s per measurement) under threads",
                      pl->timeout);
            return CLI_EXIT_TASK;
        }
        if (rc)
            return fail(m, "running your task", rc);
        if (got != sizeof u || cx.signal) {
            if (cx.signal)
                cli_error("your task crashed under threads (%s): it killed the whole process, as a crash in a "
                          "thread does; a process pool would have survived it",
                          sig_text(cx.signal));
            else
                cli_error("your task ended the process under threads (exit code %d)", cx.code);
            return CLI_EXIT_TASK;
        }
        if (u.exit == CLI_EXIT_TASK) {
            if (u.rc == CREW_ETIMEDOUT)
                cli_error("your task did not finish %ld runs within %.0f s under threads (--timeout)", pl->items,
                          pl->timeout);
            else
                cli_error("your task failed under threads: %s (%s)", crew_err_name(u.rc), crew_strerror(u.rc));
            return CLI_EXIT_TASK;
        }
        if (u.exit)
            return fail(m, "your task", u.rc);
        r->serial_seconds = u.serial;
        r->item_us = u.serial / (double)pl->items * 1e6;
        m->ncurve = u.npts;
        memcpy(m->curve, u.pts, sizeof u.pts);
    }
    if (model == CMP_THREADS && pl->fault && (ex = fault_threads(m, pl)) != 0)
        return ex;
    if ((ex = probe_costs(m, model, pl)) != 0)
        return ex;
    if (!(model == CMP_THREADS && pl->user)) {
        crew_failure fl = {0};
        int rc = 0;
        double serial = NAN;
        ex = curve(model, pl, !pl->user, pl->user ? &r->serial_seconds : &serial, m->curve, &m->ncurve, &fl, &rc);
        if (ex == 0 && !pl->user && (model == CMP_THREADS || !isfinite(r->serial_seconds))) {
            /* the workload's serial time as measured beside the threads */
            r->serial_seconds = serial;
            r->item_us = serial / (double)pl->items * 1e6;
        }
        if (ex == CLI_EXIT_TASK && pl->user) {
            if (rc == CREW_ECRASHED && fl.signal)
                cli_error("your task crashed in a worker process (%s); the process pool survived it", sig_text(fl.signal));
            else if (rc == CREW_ECRASHED)
                cli_error("your task ended its worker process (exit code %d)", fl.exit_code);
            else if (rc == CREW_ETIMEDOUT)
                cli_error("your task did not finish %ld runs within %.0f s under processes (--timeout)", pl->items,
                          pl->timeout);
            else
                cli_error("your task failed under processes: %s (%s)", crew_err_name(rc), crew_strerror(rc));
            return CLI_EXIT_TASK;
        }
        if (ex)
            return fail(m, "workload", rc);
    }
    if ((ex = probe_io(m, model, pl, r)) != 0)
        return ex;
    if (model == CMP_PROCESSES && pl->fault && (ex = fault_processes(m, pl)) != 0)
        return ex;
    return CLI_EXIT_OK;
}

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
