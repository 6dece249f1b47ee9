/*
 * future.c -- the life of a future: completion (the one winning
 * crew__future_complete*), waking its waiters, callbacks, the two holds and
 * freeing, parking on it, and the future API (status, result, failure,
 * callbacks, notification, destroy). Waiting on futures is wait.c; their
 * memory is future_alloc.c.
 *
 * DESIGN
 *
 * One crew_future is the whole life of a task: the job the backend queues
 * (fn, the argument copied inline or on the heap) and the handle the user
 * waits on (state word, status, result inline or on the heap). Its state
 * word (pool_internal.h) is the only synchronisation between the
 * completing side and the waiting side:
 *   - completion claims the future (phase -> COMPLETING) with one CAS, so of
 *     two racing completers (a process pool's monitor and a spinning waiter,
 *     or a cancel and a worker) exactly one writes the result;
 *   - it then publishes DONE with one fetch_or that also returns the flags
 *     saying whom to wake (WAITERS: futex waiters on f->state; WORKER_WAIT:
 *     pool workers helping while they wait, woken through
 *     ops->wake_helpers; ANYWAIT: crew_wait_any waiters listed in f->ext).
 *     A waiter sets its flag with an RMW and then re-reads the phase, so
 *     either the completer sees the flag or the waiter sees DONE: no lost
 *     wake-up.
 *   - the flags that need the completer to touch f after DONE (callback,
 *     notify, any-waiters) may only be set before COMPLETING; a caller that
 *     finds COMPLETING spins until DONE (a few stores away) and acts on a
 *     done future itself. So when none of them is set the completer can
 *     publish DONE and RELEASED in the same RMW and never look at f again.
 *   - memory is freed by whoever sets the second of DROPPED (user) and
 *     RELEASED (backend).
 *
 * Callbacks run on the completing thread, marked (tls_cb_pool) so that
 * crew_pool_shutdown / destroy called from one do not wait for that very
 * thread. Locks: ext->lock (the callback data, crew_wait_any's list) and
 * p->notify_lock (notify.c) are leaves: nothing else is taken while
 * either is held.
 */
#include "pool/pool_core.h"
#include "pool/future_alloc.h"

#include <sched.h>
#include <string.h>

crew__future_ext *crew__future_ext_get(crew_future *f)
{
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    if (x)
        return x;
    crew__future_ext *n = crew__calloc(1, sizeof *n);
    if (!n)
        return NULL;
    pthread_mutex_init(&n->lock, NULL);
    if (atomic_compare_exchange_strong_explicit(&f->ext, &x, n, memory_order_acq_rel,
                                                memory_order_acquire)) {
        atomic_fetch_or_explicit(&f->state, CREW__F_EXT, memory_order_relaxed);
        return n;
    }
    pthread_mutex_destroy(&n->lock);
    crew__free(n);
    return x;
}

/* ------------------------------------------------------------ completion */

void crew__future_release(crew_future *f)
{
    uint32_t old = atomic_fetch_or_explicit(&f->state, CREW__F_RELEASED, memory_order_acq_rel);
    if (old & CREW__F_DROPPED)
        crew__future_free(f);
}

static void count_outcome(crew_pool *p, int status)
{
    _Atomic uint64_t *c;
    switch (status) {
    case 0: c = &p->n_completed; break;
    case CREW_ECANCELED: c = &p->n_canceled; break;
    case CREW_ETIMEDOUT: c = &p->n_timed_out; break;
    case CREW_ECRASHED: c = &p->n_crashed; break;
    default: c = &p->n_failed; break;
    }
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void wake_anywaiters(crew_future *f)
{
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    pthread_mutex_lock(&x->lock);
    for (anywaiter *w = x->anyw; w; w = w->next) {
        atomic_fetch_add_explicit(w->word, 1, memory_order_release);
        crew__futex_wake(w->word, 1);
    }
    pthread_mutex_unlock(&x->lock);
}

/* The pool whose done callback the calling thread is running (innermost),
 * or NULL: crew_pool_shutdown / destroy must not wait from there. */
static __thread crew_pool *tls_cb_pool CREW__TLS_IE;

bool crew__pool_in_callback(const crew_pool *p) { return p && tls_cb_pool == p; }

int crew__future_complete_final(crew_future *f, int status, const void *result, size_t len,
                                const crew_failure *failure, unsigned flags, int *final)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (!(flags & CREW__C_CLAIMED)) {
        do {
            if (phase(s) >= CREW__F_COMPLETING ||
                ((flags & CREW__C_QUEUED) && phase(s) != CREW__F_QUEUED))
                return CREW_ESTATE;
        } while (!atomic_compare_exchange_weak_explicit(&f->state, &s,
                                                        (s & ~CREW__F_PHASE) |
                                                            CREW__F_COMPLETING,
                                                        memory_order_acquire,
                                                        memory_order_relaxed));
        /* crew_future_cancel sets CANCEL with an RMW on this word and
         * returned 0 only if it found f below COMPLETING: then its bit is in
         * the s our claim replaced, and the promise it made is kept here,
         * whatever the backend reports. */
        if (s & CREW__F_CANCEL)
            status = CREW_ECANCELED;
    }
    crew_pool *p = f->pool;
    if (len > 0) {
        if (len <= CREW__RES_INLINE) {
            memcpy(f->res_inline, result, len);
        } else {
            f->res = crew__malloc(len);
            if (f->res) {
                f->flags |= FL_RES_HEAP;
                memcpy(f->res, result, len);
            } else {
                status = CREW_ENOMEM;
                len = 0;
            }
        }
    }
    f->res_len = (uint32_t)len;
    f->status = status;
    if (final)
        *final = status;
    if (failure) {
        crew__future_ext *x = crew__future_ext_get(f);
        if (x) {
            x->failure = *failure;
            x->failure.status = status;
            x->failure.task_id = f->id;
            x->has_failure = 1;
        }
    }
    if (!(flags & CREW__C_NOCOUNT))
        count_outcome(p, status);

    /* HAS_CB / NOTIFY / ANYWAIT cannot change while we are COMPLETING. */
    s = atomic_load_explicit(&f->state, memory_order_relaxed);
    bool slow = (s & (CREW__F_HAS_CB | CREW__F_NOTIFY | CREW__F_ANYWAIT)) != 0;
    uint32_t add = CREW__F_DONE; /* COMPLETING | 1 == DONE */
    if (!slow && !(flags & CREW__C_KEEP))
        add |= CREW__F_RELEASED;
    uint32_t old = atomic_fetch_or_explicit(&f->state, add, memory_order_acq_rel);
    if (old & CREW__F_WAITERS)
        crew__futex_wake(&f->state, INT32_MAX);
    if (old & CREW__F_WORKER_WAIT)
        p->ops->wake_helpers(p, f); /* only a backend with help_wait sets it */
    if (!slow) {
        if ((add & CREW__F_RELEASED) && (old & CREW__F_DROPPED))
            crew__future_free(f);
        return 0;
    }
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    if (old & CREW__F_ANYWAIT)
        wake_anywaiters(f);
    if (old & CREW__F_HAS_CB) {
        /* Marked, so that a callback that shuts p down does not wait for
         * the thread it runs on (a process pool's monitor, a worker). */
        crew_pool *outer = tls_cb_pool;
        tls_cb_pool = p;
        x->cb(f, x->cb_data); /* readable even if dropped: see crew_future_destroy */
        tls_cb_pool = outer;
    }
    /* A future whose handle was already destroyed is nobody's to pop: keep
     * it out of the completion list (future_free unlinks one dropped later). */
    if ((old & CREW__F_NOTIFY) && !(old & CREW__F_DROPPED))
        crew__notify_enqueue(p, f);
    if (!(flags & CREW__C_KEEP))
        crew__future_release(f);
    return 0;
}

int crew__future_complete_ex(crew_future *f, int status, const void *result, size_t len,
                             const crew_failure *failure, unsigned flags)
{
    return crew__future_complete_final(f, status, result, len, failure, flags, NULL);
}

int crew__future_complete(crew_future *f, int status, const void *result, size_t len,
                          const crew_failure *failure)
{
    return crew__future_complete_final(f, status, result, len, failure, 0, NULL);
}

/* ------------------------------------------------------------ freeing */

void crew__future_free(crew_future *f)
{
    crew_pool *p = f->pool;
    /* Both holds are gone: nobody else writes f now, one load of the state
     * serves every check, and a small task takes the single branch. */
    const uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (CREW__LIKELY(!(s & (CREW__F_NOTIFY | CREW__F_EXT)) && !f->flags && !f->map)) {
        atomic_store_explicit(&f->magic, CREW__FUTURE_DEAD, memory_order_relaxed);
    } else {
        if (s & CREW__F_NOTIFY)
            crew__notify_unlink(f);
        atomic_store_explicit(&f->magic, CREW__FUTURE_DEAD, memory_order_relaxed);
        if (f->flags & FL_ARG_HEAP)
            crew__free((void *)f->arg);
        if (f->flags & FL_RES_HEAP) {
            crew__free(f->res);
            f->res = NULL;
        }
        if (s & CREW__F_EXT) {
            crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_relaxed);
            pthread_mutex_destroy(&x->lock);
            crew__free(x);
            atomic_store_explicit(&f->ext, NULL, memory_order_relaxed);
        }
        if (f->map != NULL && !(s & CREW__F_INTERNAL))
            crew__map_unref(f->map);
    }
    crew__future_put(p, f);
}

crew_future *crew__future_alloc_internal(crew_pool *p)
{
    crew_future *f = crew__future_alloc(p);
    if (f)
        atomic_store_explicit(&f->state, CREW__F_QUEUED | CREW__F_INTERNAL | CREW__F_DROPPED,
                              memory_order_relaxed);
    return f;
}

/* ------------------------------------------------------------ parking */

int crew__future_park(crew_future *f, const crew__deadline *d)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (phase(s) == CREW__F_DONE)
        return 0;
    if (!crew__deadline_expired(d)) {
        /* Spin tightly for a few hundred ns, then yield between polls for
         * the rest of the spin budget: the task we wait for may need this
         * very CPU (more runnable threads than CPUs). */
        uint64_t start = crew__now_ns();
        for (unsigned i = 1;; i++) {
            if (i < 256)
                crew__cpu_relax();
            else
                sched_yield();
            if (phase(atomic_load_explicit(&f->state, memory_order_acquire)) == CREW__F_DONE)
                return 0;
            if ((i & 15) == 0 && crew__now_ns() - start > CREW__SPIN_NS)
                break;
        }
    }
    for (;;) {
        s = atomic_load_explicit(&f->state, memory_order_acquire);
        if (phase(s) == CREW__F_DONE)
            return 0;
        if (crew__deadline_expired(d))
            return CREW_ETIMEDOUT;
        if (!(s & CREW__F_WAITERS)) {
            /* The RMW orders our flag against the completer's fetch_or of
             * DONE: it either returns DONE to us or sees WAITERS. */
            s = atomic_fetch_or_explicit(&f->state, CREW__F_WAITERS, memory_order_seq_cst) |
                CREW__F_WAITERS;
            if (phase(s) == CREW__F_DONE)
                return 0;
        }
        int rc = crew__futex_wait(&f->state, s, d);
        if (rc == CREW_ETIMEDOUT)
            return phase(atomic_load_explicit(&f->state, memory_order_acquire)) == CREW__F_DONE
                       ? 0
                       : CREW_ETIMEDOUT;
    }
}

/* ------------------------------------------------------------ future API */

int crew_future_done(const crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    return crew__future_done(f) ? 1 : 0;
}

int crew_future_status(const crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    if (!crew__future_done(f))
        return CREW_ESTATE;
    return f->status;
}

int crew_future_result(const crew_future *f, const void **data, size_t *len)
{
    if (!valid(f) || !data || !len)
        return CREW_EINVAL;
    if (!crew__future_done(f))
        return CREW_ESTATE;
    *len = f->res_len;
    *data = f->res_len == 0 ? NULL : f->res ? f->res : f->res_inline;
    return 0;
}

int crew_future_failure(const crew_future *f, crew_failure *out)
{
    if (!valid(f) || !out)
        return CREW_EINVAL;
    if (!crew__future_done(f))
        return CREW_ESTATE;
    crew__future_ext *x = atomic_load_explicit(&((crew_future *)f)->ext, memory_order_acquire);
    if (x && x->has_failure) {
        *out = x->failure;
    } else {
        memset(out, 0, sizeof *out);
        out->status = f->status;
        out->task_id = f->id;
    }
    return 0;
}

uint64_t crew_future_id(const crew_future *f) { return valid(f) ? f->id : 0; }

int crew_future_progress(const crew_future *f, size_t *done, size_t *total)
{
    if (!valid(f))
        return CREW_EINVAL;
    size_t d, t;
    if (f->map) {
        d = atomic_load_explicit(&f->map->done, memory_order_relaxed);
        t = f->map->n;
    } else {
        d = crew__future_done(f) ? 1 : 0;
        t = 1;
    }
    if (done)
        *done = d;
    if (total)
        *total = t;
    return 0;
}

/* Sets flag (CREW__F_HAS_CB or CREW__F_NOTIFY) on f, storing its data in
 * the extension under the extension lock first, so the completing thread
 * sees the data whenever it sees the flag. Returns 0 when f was still
 * pending (the completing thread acts on the flag), 1 when f was already
 * done (the caller acts now), CREW_EBUSY when the flag was already set,
 * CREW_ENOMEM. */
static int future_mark(crew_future *f, uint32_t flag, crew_future_cb cb, void *data)
{
    crew__future_ext *x = crew__future_ext_get(f);
    if (!x)
        return CREW_ENOMEM;
    pthread_mutex_lock(&x->lock);
    int rc;
    for (;;) {
        uint32_t s = wait_not_completing(f);
        if (s & flag) {
            rc = CREW_EBUSY;
            break;
        }
        if (flag == CREW__F_HAS_CB) {
            x->cb = cb;
            x->cb_data = data;
        } else {
            x->user_data = data;
        }
        if (phase(s) == CREW__F_DONE) {
            atomic_fetch_or(&f->state, flag); /* a second mark gets EBUSY */
            rc = 1;
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | flag, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&x->lock);
    return rc;
}

int crew_future_on_done(crew_future *f, crew_future_cb cb, void *data)
{
    if (!valid(f) || !cb)
        return CREW_EINVAL;
    int rc = future_mark(f, CREW__F_HAS_CB, cb, data);
    if (rc == 1)
        cb(f, data); /* already done: run it now, on the caller's thread */
    return rc < 0 ? rc : 0;
}

int crew_future_notify(crew_future *f, void *user_data)
{
    if (!valid(f))
        return CREW_EINVAL;
    int rc = future_mark(f, CREW__F_NOTIFY, NULL, user_data);
    if (rc == 1)
        crew__notify_enqueue(f->pool, f); /* already done: list it now */
    return rc < 0 ? rc : 0;
}

void *crew_future_user_data(const crew_future *f)
{
    if (!valid(f))
        return NULL;
    crew__future_ext *x = atomic_load_explicit(&((crew_future *)f)->ext, memory_order_acquire);
    return x ? x->user_data : NULL;
}

int crew_future_destroy(crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    uint32_t old = atomic_load_explicit(&f->state, memory_order_acquire);
    /* A future with a callback stays readable until it is freed (the
     * callback may still run and read it); any other one is marked dead now
     * so that a use of the stale handle gets CREW_EINVAL. */
    if (!(old & CREW__F_HAS_CB))
        atomic_store_explicit(&f->magic, CREW__FUTURE_DEAD, memory_order_relaxed);
    /* Once RELEASED the backend never touches f again: no RMW needed. */
    if (!(old & CREW__F_RELEASED))
        old = atomic_fetch_or_explicit(&f->state, CREW__F_DROPPED, memory_order_acq_rel);
    if (old & CREW__F_RELEASED)
        crew__future_free(f);
    return 0;
}
