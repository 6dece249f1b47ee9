/*
 * pool.c -- the pool API: submit (crew_pool_submit, crew_pool_submit_shm),
 * cancel, shutdown, destroy, stats, and the task context (crew_task_*).
 * pool_core.h lists the core's other files (futures, waiting, the
 * completion list, the map driver, memory); pool_internal.h is the
 * contract with the backends; docs/DESIGN.md has the whole picture.
 *
 * DESIGN
 *
 * Submit is the hot path: check, take a future from the thread's cache
 * (future_alloc.h, inline: no lock, no malloc, no call in the steady
 * state), take an id from the thread's block, copy the argument in (inline
 * up to CREW__ARG_INLINE bytes), and hand it to ops->submit. Nothing
 * shared is bumped when the backend counts its own submits.
 *
 * Shutdown sets p->shut (submits then fail CREW_ESHUTDOWN) and calls
 * ops->shutdown -- except from a done callback on a backend whose shutdown
 * would wait there (shutdown_in_callback false): then a thread of its own
 * runs it (cb_shut_*), which destroy joins. Destroy: shutdown(p, 1), join
 * that thread, p->life CLOSING, wait for the threads inside ops->wait
 * (p->hook_users) to leave, ops->destroy (every future is complete after
 * it), close the completion fd, then p->life CLOSED: the pool's memory
 * lives on while any future of it does (future_alloc.c).
 *
 * Lock order: p->cb_shut_lock is a leaf; the allocator's are
 * registry_lock -> p->alloc_lock; p->notify_lock and ext->lock are leaves.
 */
#include "pool/pool_core.h"
#include "pool/future_alloc.h"
#include "ipc/shm_internal.h"

#include <string.h>

/* ------------------------------------------------------------ submit */

/* Hands a filled-in f to the backend and counts it as submitted (unless
 * the backend counts its own submits); on failure frees f. */
static inline int submit_future(crew_pool *p, crew_future *f, crew_future **out)
{
    int rc = p->ops->submit(p, f);
    if (CREW__UNLIKELY(rc)) {
        crew__future_free(f);
        return rc;
    }
    if (!p->ops->counts_submits)
        atomic_fetch_add_explicit(&p->n_submitted, 1, memory_order_relaxed);
    *out = f;
    return 0;
}

int crew_pool_submit(crew_pool *p, crew_task_fn fn, const void *arg, size_t arg_len,
                     crew_future **out)
{
    if (CREW__UNLIKELY(!p || !fn || !out || (!arg && arg_len)))
        return CREW_EINVAL;
    if (CREW__UNLIKELY(arg_len > p->opts.max_arg_size))
        return CREW_E2BIG;
    if (CREW__UNLIKELY(atomic_load_explicit(&p->shut, memory_order_relaxed)))
        return CREW_ESHUTDOWN;
    crew_future *f = crew__future_alloc(p);
    if (CREW__UNLIKELY(!f))
        return CREW_ENOMEM;
    f->id = crew__take_id(p);
    f->fn = fn;
    if (CREW__LIKELY(arg_len <= CREW__ARG_INLINE)) {
        if (arg_len)
            memcpy(f->arg_inline, arg, arg_len);
    } else {
        void *copy = crew__malloc(arg_len);
        if (!copy) {
            crew__future_free(f);
            return CREW_ENOMEM;
        }
        memcpy(copy, arg, arg_len);
        f->arg = copy;
        f->flags |= FL_ARG_HEAP;
    }
    f->arg_len = (uint32_t)arg_len;
    return submit_future(p, f, out);
}

/* ------------------------------------------------------------ zero-copy submit */

int crew_pool_submit_shm(crew_pool *p, crew_task_fn fn, crew_shm *region, size_t off, size_t len,
                         crew_future **out)
{
    if (!p || !fn || !region || !out)
        return CREW_EINVAL;
    /* The handle is looked up in the registry of live handles by its value,
     * never read: a destroyed region's memory may be gone already. */
    crew__shm_info info;
    if (crew__shm_info_of(region, &info) != 0)
        return CREW_EINVAL;
    size_t size = info.size;
    if (off > size || len > size - off)
        return CREW_ERANGE;
    if (len > UINT32_MAX)
        return CREW_E2BIG;
    if (atomic_load_explicit(&p->shut, memory_order_relaxed))
        return CREW_ESHUTDOWN;
    crew_future *f = crew__future_alloc(p);
    if (!f)
        return CREW_ENOMEM;
    f->id = crew__take_id(p);
    f->fn = fn;
    crew__shm_arg d = {.region = region, .off = off, .len = len};
    memcpy(f->arg_inline, &d, sizeof d);
    f->arg = (const unsigned char *)info.base + off;
    f->arg_len = (uint32_t)len;
    f->flags |= FL_ARG_SHM;
    if (!p->ops->submit_shm)
        return submit_future(p, f, out); /* threads: f->arg is used in place */
    int rc = p->ops->submit_shm(p, f);
    if (rc) {
        crew__future_free(f);
        return rc;
    }
    atomic_fetch_add_explicit(&p->n_submitted, 1, memory_order_relaxed);
    *out = f;
    return 0;
}

crew_shm *crew_task_shm(const crew_task *t)
{
    if (!t)
        return NULL;
    if (t->shm)
        return t->shm; /* a process worker's own mapping */
    const crew_future *f = t->future;
    if (!f)
        return NULL;
    if (f->map)
        return f->map->in_shm ? f->map->in_shm : f->map->out_shm;
    if (f->flags & FL_ARG_SHM) {
        crew__shm_arg d;
        memcpy(&d, f->arg_inline, sizeof d);
        return d.region;
    }
    return NULL;
}

/* ------------------------------------------------------------ cancel */

int crew_future_cancel(crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    /* The CANCEL bit is the promise: set while f is not yet claimed for
     * completion, it makes whoever completes f end it CREW_ECANCELED
     * (crew__future_complete_final), however the race with the task's own
     * end goes. Found claimed already, the cancel lost: CREW_ESTATE. The
     * backend's cancel then only hurries the end (queued: now; running:
     * crew_task_cancelled, or the worker process is stopped). */
    uint32_t old = crew__future_request_cancel(f);
    if (phase(old) >= CREW__F_COMPLETING) {
        wait_not_completing(f);
        return CREW_ESTATE;
    }
    crew_pool *p = f->pool;
    if (f->map)
        atomic_store(&f->map->cancel, 1);
    if (p->ops->cancel && atomic_load(&p->life) == CREW__POOL_LIVE)
        p->ops->cancel(p, f);
    if (f->map)
        crew__map_cancel_rest(f->map);
    return 0;
}

/* ------------------------------------------------------------ shutdown, destroy */

/* cb_shut_state: no thread yet, one running, finished (to be joined),
 * closed (destroy joined it: no more). */
enum { CB_SHUT_NONE, CB_SHUT_RUNNING, CB_SHUT_FINISHED, CB_SHUT_CLOSED };

/* Runs the backend's shutdown for a callback that asked for it, again if a
 * later callback asked for a cancel meanwhile. */
static void *cb_shutdown_main(void *arg)
{
    crew_pool *p = arg;
    int done = -1;
    for (;;) {
        pthread_mutex_lock(&p->cb_shut_lock);
        int c = p->cb_shut_cancel;
        if (c == done) {
            p->cb_shut_state = CB_SHUT_FINISHED;
            pthread_mutex_unlock(&p->cb_shut_lock);
            return NULL;
        }
        pthread_mutex_unlock(&p->cb_shut_lock);
        p->ops->shutdown(p, c);
        done = c;
    }
}

/* crew_pool_shutdown from a done callback of p on a backend whose shutdown
 * would wait there: this thread may be the one the wait needs (a process
 * pool's monitor delivers completions, callbacks included), so the
 * backend's shutdown runs on a thread of its own, which destroy joins. */
static int shutdown_from_callback(crew_pool *p, int cancel_pending)
{
    int rc = 0;
    pthread_mutex_lock(&p->cb_shut_lock);
    if (cancel_pending)
        p->cb_shut_cancel = 1;
    if (p->cb_shut_state == CB_SHUT_CLOSED) {
        pthread_mutex_unlock(&p->cb_shut_lock);
        return 0; /* destroy already shut the pool down, cancelling */
    }
    if (p->cb_shut_state == CB_SHUT_FINISHED) {
        pthread_join(p->cb_shut_thread, NULL); /* it is returning: prompt */
        p->cb_shut_state = CB_SHUT_NONE;
    }
    if (p->cb_shut_state == CB_SHUT_NONE) {
        int e = pthread_create(&p->cb_shut_thread, NULL, cb_shutdown_main, p);
        if (e == 0)
            p->cb_shut_state = CB_SHUT_RUNNING;
        else
            rc = e == EAGAIN ? CREW_EAGAIN : -e;
    }
    pthread_mutex_unlock(&p->cb_shut_lock);
    return rc;
}

int crew_pool_shutdown(crew_pool *p, int cancel_pending)
{
    if (!p)
        return CREW_EINVAL;
    atomic_store(&p->shut, 1);
    if (!p->ops->shutdown)
        return 0;
    if (crew__pool_in_callback(p) && !p->ops->shutdown_in_callback)
        return shutdown_from_callback(p, cancel_pending ? 1 : 0);
    return p->ops->shutdown(p, cancel_pending ? 1 : 0);
}

int crew_pool_destroy(crew_pool *p)
{
    if (!p)
        return CREW_EINVAL;
    /* From a task, or a done callback, of p: destroy would wait for (or
     * free under) the very thread that calls it. */
    if (called_from_worker(p) || crew__pool_in_callback(p))
        return CREW_EDEADLK;
    crew_pool_shutdown(p, 1);
    pthread_mutex_lock(&p->cb_shut_lock);
    int cb_state = p->cb_shut_state;
    p->cb_shut_state = CB_SHUT_CLOSED; /* a later callback's shutdown: nothing left to do */
    pthread_mutex_unlock(&p->cb_shut_lock);
    if (cb_state == CB_SHUT_RUNNING || cb_state == CB_SHUT_FINISHED)
        pthread_join(p->cb_shut_thread, NULL);
    atomic_store(&p->life, CREW__POOL_CLOSING);
    for (;;) {
        uint32_t v = atomic_load(&p->hook_users);
        if (v == 0)
            break;
        crew__futex_wait(&p->hook_users, v, NULL);
    }
    if (p->ops->destroy)
        p->ops->destroy(p);
    pthread_mutex_lock(&p->notify_lock);
    if (p->notify_fd >= 0)
        crew__close(p->notify_fd);
    p->notify_fd = -1;
    p->notify_head = p->notify_tail = NULL;
    p->notify_signalled = 0;
    pthread_mutex_unlock(&p->notify_lock);
    crew__pool_close(p); /* may free p */
    return 0;
}

int crew_pool_workers(const crew_pool *p) { return p ? p->opts.workers : CREW_EINVAL; }

int crew_pool_kind_get(const crew_pool *p) { return p ? (int)p->opts.kind : CREW_EINVAL; }

int crew_pool_stats_get(crew_pool *p, crew_pool_stats *st)
{
    if (!p || !st)
        return CREW_EINVAL;
    memset(st, 0, sizeof *st);
    st->submitted = atomic_load_explicit(&p->n_submitted, memory_order_relaxed);
    st->completed = atomic_load_explicit(&p->n_completed, memory_order_relaxed);
    st->failed = atomic_load_explicit(&p->n_failed, memory_order_relaxed);
    st->crashed = atomic_load_explicit(&p->n_crashed, memory_order_relaxed);
    st->timed_out = atomic_load_explicit(&p->n_timed_out, memory_order_relaxed);
    st->canceled = atomic_load_explicit(&p->n_canceled, memory_order_relaxed);
    if (p->ops->stats && atomic_load(&p->life) == CREW__POOL_LIVE)
        p->ops->stats(p, st);
    return 0;
}

/* ------------------------------------------------------------ task context */

int crew_task_cancelled(const crew_task *t)
{
    if (!t)
        return 0;
    if (t->cancel && (atomic_load_explicit(t->cancel, memory_order_relaxed) & t->cancel_mask))
        return 1;
    if (t->pool_cancel && atomic_load_explicit(t->pool_cancel, memory_order_relaxed))
        return 1;
    if (t->deadline_ns && crew__now_ns() >= t->deadline_ns) {
        ((crew_task *)t)->timed_out = 1;
        return 1;
    }
    return 0;
}

int crew_task_worker(const crew_task *t) { return t ? t->worker : CREW_EINVAL; }

crew_pool *crew_task_pool(crew_task *t) { return t ? t->pool : NULL; }
