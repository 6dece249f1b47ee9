/*
 * runs.c -- the timed call sequences of `crew compare`: one pool, one task,
 * one batch, one map, each through crew.h's public calls only.
 *
 * DESIGN
 *  Every wait has a deadline (the plan's timeout): a stuck pool ends the
 *  measurement with CREW_ETIMEDOUT instead of hanging compare, and a task
 *  still queued or running then is cancelled before its handle goes. A
 *  bounded queue (CREW_EAGAIN on submit) is met by waiting for the oldest
 *  outstanding task. Nothing here prints or decides; callers time the
 *  sequences with crew_now() and keep medians (probe.h).
 */
#include "probe.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

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

int probe_pool_new(crew_pool **p, int model, int workers, int method, size_t max_arg, size_t max_res)
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
int probe_run_one(crew_pool *p, crew_task_fn fn, const void *arg, size_t len, double timeout,
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
int probe_handoff_one(crew_pool *p, double timeout)
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

int probe_fail(cmp_model *m, const char *what, int rc)
{
    m->status = rc;
    cli_error("%s: %s failed: %s (%s)", m->name, what, crew_err_name(rc), crew_strerror(rc));
    return CLI_EXIT_MEASURE;
}

/* ---------------------------------------------------------------- batches */
/* Submits n empty tasks, then waits for all; copes with a bounded queue
 * (CREW_EAGAIN) by waiting for the oldest outstanding one. */
int probe_empty_batch(crew_pool *p, crew_future **fs, int n, double timeout)
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
int probe_map_run(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out, size_t out_size,
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
int probe_submit_run(crew_pool *p, crew_task_fn fn, const unsigned char *in, size_t in_size, size_t n,
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
