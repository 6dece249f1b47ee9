/*
 * wait.c -- waiting on futures: crew_future_wait, crew_wait_all,
 * crew_wait_any.
 *
 * DESIGN
 *
 * Every wait goes through wait_deadline, which picks one of three ways:
 *   - a worker of f's pool (ops->is_worker) that waits forever runs the
 *     pool's other work meanwhile (ops->help_wait), so a task that waits on
 *     its sub-tasks cannot deadlock the pool; with a deadline it parks;
 *   - any other thread enters the backend's fast wait (ops->wait: a
 *     process pool's waiter spins on the task's slot and completes the
 *     future itself, a thread pool's waiter runs queued tasks) -- counted in
 *     p->hook_users (hook_enter / hook_leave) so that crew_pool_destroy
 *     does not free the backend under it;
 *   - otherwise, and after the hook, crew__future_park: spin, then futex
 *     wait on f->state with the WAITERS flag (future.c).
 * crew_wait_any lists one node per future on each future's extension,
 * all pointing at one wake word on the waiter's stack; see the comment in
 * it for why no completer touches that word after the waiter has left.
 */
#include "pool/pool_core.h"

/* Enters ops->wait's section: false if p is being destroyed (then the
 * caller must not call the hook, but still leave). crew_pool_destroy sets
 * p->life and then waits for hook_users to drain, and we enter, then
 * check, both seq_cst: one of us sees the other. */
static bool hook_enter(crew_pool *p)
{
    atomic_fetch_add_explicit(&p->hook_users, 1, memory_order_seq_cst);
    return atomic_load_explicit(&p->life, memory_order_seq_cst) == CREW__POOL_LIVE;
}

static void hook_leave(crew_pool *p)
{
    if (atomic_fetch_sub_explicit(&p->hook_users, 1, memory_order_seq_cst) == 1 &&
        atomic_load_explicit(&p->life, memory_order_seq_cst) != CREW__POOL_LIVE)
        crew__futex_wake(&p->hook_users, INT32_MAX);
}

static int wait_deadline(crew_future *f, const crew__deadline *d)
{
    if (crew__future_done(f))
        return 0;
    crew_pool *p = f->pool;
    /* A worker helps (runs queued work) only when it waits forever: a task
     * it picked up could run past any finite deadline. A worker waiting
     * with a timeout parks like any thread -- its wait on a sub-task no
     * other worker is free to run then times out instead of deadlocking. */
    if (p->ops->is_worker && p->ops->is_worker(p))
        return d->forever ? p->ops->help_wait(p, f, d) : crew__future_park(f, d);
    if (p->ops->wait) {
        int rc = 1;
        if (hook_enter(p))
            rc = p->ops->wait(p, f, d);
        hook_leave(p);
        if (rc != 1)
            return rc;
    }
    return crew__future_park(f, d);
}

int crew_future_wait(crew_future *f, double timeout)
{
    if (!valid(f) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    if (crew__future_done(f))
        return 0;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    return wait_deadline(f, &d);
}

int crew_wait_all(crew_future *const *fs, size_t n, double timeout)
{
    if (crew__timeout_bad(timeout))
        return CREW_EINVAL;
    if (n == 0)
        return 0;
    if (!fs)
        return CREW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid(fs[i]))
            return CREW_EINVAL;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    size_t i = 0;
    while (i < n && crew__future_done(fs[i]))
        i++;
    if (i == n)
        return 0;
    /* Common case: every future from one pool with a wait hook, waited on
     * from outside it. Enter the hook once for the whole array. */
    crew_pool *p = fs[i]->pool;
    if (p->ops->wait && !called_from_worker(p)) {
        int rc = 0;
        if (hook_enter(p)) {
            /* Last first: queues are FIFO, so by the time the last future
             * is done (a waiter that helps ran everything queued before it
             * in one call) the others mostly are too. */
            for (size_t k = n; k > i && rc == 0; k--) {
                crew_future *f = fs[k - 1];
                if (crew__future_done(f))
                    continue;
                rc = f->pool == p ? p->ops->wait(p, f, &d) : wait_deadline(f, &d);
            }
            i = n;
        }
        hook_leave(p);
        if (rc)
            return rc;
    }
    for (; i < n; i++) {
        int rc = wait_deadline(fs[i], &d);
        if (rc)
            return rc;
    }
    return 0;
}

static bool any_done(crew_future *const *fs, size_t n, size_t *index)
{
    for (size_t i = 0; i < n; i++)
        if (crew__future_done(fs[i])) {
            if (index)
                *index = i;
            return true;
        }
    return false;
}

int crew_wait_any(crew_future *const *fs, size_t n, double timeout, size_t *index)
{
    if (!fs || n == 0 || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid(fs[i]))
            return CREW_EINVAL;
    if (any_done(fs, n, index))
        return 0;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    if (n == 1) {
        int rc = wait_deadline(fs[0], &d);
        if (rc == 0 && index)
            *index = 0;
        return rc;
    }
    if (crew__deadline_expired(&d))
        return CREW_ETIMEDOUT;
    /* Spin a little first: most waits are short. */
    uint64_t start = crew__now_ns();
    while (crew__now_ns() - start < CREW__SPIN_NS) {
        if (any_done(fs, n, index))
            return 0;
        for (int k = 0; k < 16; k++)
            crew__cpu_relax();
    }
    /* List one node per future, all pointing at one wake word on our stack,
     * then sleep on that word. A completer that sees ANYWAIT bumps the word
     * of every listed node under the future's ext lock, and we unlist under
     * the same lock before returning, so no completer touches the word after
     * we leave. ANYWAIT is only set while the phase is below COMPLETING (the
     * completer reads it once it is COMPLETING). */
    anywaiter *nodes = crew__calloc(n, sizeof *nodes);
    if (!nodes)
        return CREW_ENOMEM;
    _Atomic uint32_t word = 0;
    int rc = 0;
    size_t nreg = 0;
    for (size_t i = 0; i < n; i++) {
        crew_future *f = fs[i];
        crew__future_ext *x = crew__future_ext_get(f);
        if (!x) {
            rc = CREW_ENOMEM;
            break;
        }
        nodes[i].word = &word;
        pthread_mutex_lock(&x->lock);
        nodes[i].next = x->anyw;
        x->anyw = &nodes[i];
        pthread_mutex_unlock(&x->lock);
        nreg = i + 1;
        uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
        while (!(s & CREW__F_ANYWAIT) && phase(s) < CREW__F_COMPLETING &&
               !atomic_compare_exchange_weak_explicit(&f->state, &s, s | CREW__F_ANYWAIT,
                                                      memory_order_seq_cst, memory_order_acquire))
            ;
        if (phase(s) >= CREW__F_COMPLETING) {
            wait_not_completing(f); /* it will not see our flag: it is done now */
            break;
        }
    }
    while (rc == 0) {
        uint32_t seq = atomic_load_explicit(&word, memory_order_acquire);
        if (any_done(fs, n, index))
            break;
        if (crew__deadline_expired(&d)) {
            rc = CREW_ETIMEDOUT;
            break;
        }
        crew__futex_wait(&word, seq, &d);
    }
    for (size_t k = 0; k < nreg; k++) {
        crew__future_ext *x = atomic_load_explicit(&fs[k]->ext, memory_order_acquire);
        pthread_mutex_lock(&x->lock);
        for (anywaiter **pp = &x->anyw; *pp; pp = &(*pp)->next)
            if (*pp == &nodes[k]) {
                *pp = nodes[k].next;
                break;
            }
        pthread_mutex_unlock(&x->lock);
    }
    crew__free(nodes);
    if (rc == CREW_ETIMEDOUT && any_done(fs, n, index))
        rc = 0;
    return rc;
}
