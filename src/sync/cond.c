/*
 * cond.c -- crew_cond, a condition variable for crew_lock.
 *
 * DESIGN
 * One 64-bit word: a sequence number in the low half (the futex word) and
 * the number of threads that may be waiting, `nwaiters`, in the high half
 * (only to skip the wake-up system call when nobody waits).
 *
 * Wait: read the sequence (holding the lock), release the lock, spin a
 * little watching the sequence; if it did not move, register as a sleeper
 * with one RMW that also returns the current sequence, and sleep while it
 * still holds the value first read; drop the count; re-acquire the lock.
 * Notify: one CAS increments the sequence (in the low half only) and reads
 * nwaiters from the same word; if anyone waits, wake one (or all).
 *
 * No wake-up is lost: the waiter reads the sequence while it still holds
 * the lock, so a notifier that changes the predicate under the lock and
 * then notifies increments the sequence after that read. The waiter's
 * registration and the notifier's increment are RMWs of the same word, so
 * they are ordered: if the increment comes first, the registration returns
 * the new sequence and the waiter does not sleep; if the registration comes
 * first, the notifier sees nwaiters > 0 and wakes -- and FUTEX_WAIT refuses
 * to sleep on a stale value, or the sleeper is already queued and
 * FUTEX_WAKE finds it. Spinning waiters are not registered, so a notify
 * while they spin costs no system call.
 *
 * The notifier's CAS is its last access to the condition's memory, so a
 * waiter may free the condition once its wait returns.
 *
 * A waiter killed in the middle of a wait leaves nothing behind but one
 * extra count in nwaiters -- which only costs later notifies a needless
 * system call. Nothing else is per-waiter, so the condition keeps working
 * for the survivors (tests/test_cond.c kills one to prove it).
 *
 * Spurious returns: notify(one) may let several waiters return (all that
 * read the old sequence and had not yet slept); callers loop on their
 * predicate (crew_cond_wait_for does). notify_n(n) is the same with a
 * FUTEX_WAKE of n: it wakes n sleepers (or all, if fewer sleep) and may let
 * more return, as notify(one) may.
 *
 * RLocks: a wait over a crew_rlock (crew_cond_wait_rlock) drops all of the
 * caller's levels with one release of the word, keeping the count on its
 * stack, and restores it after re-acquiring (lock.c's
 * crew__rlock_release_save / crew__rlock_acquire_restore): the same
 * protocol, since only the word matters to the wake-up argument above.
 */
#include "sync/sync.h"

#include <string.h>

#define COND_MAGIC 0x636f6e64u /* "cond" */

typedef struct cond_impl {
    _Atomic uint64_t data; /* seq | nwaiters << 32 */
    _Atomic uint32_t magic;
    _Atomic uint32_t spin_hint; /* see crew__spin_budget */
} cond_impl;
#define ONE_WAITER ((uint64_t)1 << 32)
_Static_assert(sizeof(cond_impl) <= sizeof(crew_cond), "crew_cond too small");

static inline cond_impl *ci(crew_cond *c) { return (cond_impl *)(void *)c; }

static bool cond_ok(crew_cond *c)
{
    return c && atomic_load_explicit(&ci(c)->magic, memory_order_relaxed) == COND_MAGIC;
}

int crew_cond_init(crew_cond *c)
{
    if (!c)
        return CREW_EINVAL;
    memset(c, 0, sizeof *c);
    atomic_store_explicit(&ci(c)->magic, COND_MAGIC, memory_order_release);
    return 0;
}

/* The lock a wait releases and re-takes: a crew_lock, or a crew_rlock whose
 * every level is dropped and restored (Python's Condition(RLock()), which
 * calls the lock's _release_save / _acquire_restore). */
typedef struct cond_lock {
    crew_lock *l;    /* one of these two */
    crew_rlock *r;
    uint32_t levels; /* the rlock's count, saved by cl_release */
} cond_lock;

/* The owner check uses the lock's word directly: layout from lock.c (the
 * word is the first field of both crew_lock and crew_rlock). 0 if the
 * caller holds it, CREW_EINVAL if it is destroyed, else CREW_EPERM. */
static int held_status(const cond_lock *cl)
{
    void *obj = cl->l ? (void *)cl->l : (void *)cl->r;
    uint64_t owner = crew__lw_owner(atomic_load_explicit((_Atomic uint64_t *)obj,
                                                         memory_order_relaxed));
    if (owner == crew__lw_self())
        return 0;
    return owner == CREW__LW_DESTROYED ? CREW_EINVAL : CREW_EPERM;
}

static void cl_release(cond_lock *cl)
{
    int rc = cl->l ? crew_lock_release(cl->l) : crew__rlock_release_save(cl->r, &cl->levels);
    CREW__ASSERT(rc == 0); /* ownership was checked by the caller */
}

static int cl_acquire(cond_lock *cl)
{
    return cl->l ? crew_lock_acquire(cl->l, CREW_FOREVER)
                 : crew__rlock_acquire_restore(cl->r, cl->levels);
}

static int cond_wait_until(crew_cond *c, cond_lock *cl, const crew__deadline *d, double timeout)
{
    cond_impl *p = ci(c);
    uint32_t s = (uint32_t)atomic_load_explicit(&p->data, memory_order_acquire);
    cl_release(cl);
    int out = 0;
    if (timeout == 0) {
        if ((uint32_t)atomic_load_explicit(&p->data, memory_order_acquire) == s)
            out = CREW_ETIMEDOUT;
    } else if (!crew__spin_low_while_eq(&p->data, s, &p->spin_hint)) {
        /* Register as a sleeper only now, so notifiers do not make a system
         * call for waiters that are merely spinning. The registering RMW
         * also returns the current sequence: if a notify came in between,
         * we see it here and do not sleep. */
        uint64_t now = atomic_fetch_add_explicit(&p->data, ONE_WAITER, memory_order_acquire);
        if ((uint32_t)now == s) {
            for (;;) {
                int r = crew__futex_wait(crew__low_half(&p->data), s, d);
                if (r == CREW_EINTR)
                    continue;
                if (r == CREW_ETIMEDOUT &&
                    (uint32_t)atomic_load_explicit(&p->data, memory_order_acquire) == s)
                    out = CREW_ETIMEDOUT;
                break;
            }
        }
        atomic_fetch_sub_explicit(&p->data, ONE_WAITER, memory_order_relaxed);
    }
    int rc = cl_acquire(cl);
    return rc ? rc : out;
}

static int cond_wait(crew_cond *c, cond_lock *cl, double timeout)
{
    if (!cond_ok(c) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    int held = held_status(cl);
    if (held)
        return held;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    return cond_wait_until(c, cl, &d, timeout);
}

static int cond_wait_for(crew_cond *c, cond_lock *cl, crew_cond_pred pred, void *arg,
                         double timeout)
{
    if (!cond_ok(c) || !pred || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    int held = held_status(cl);
    if (held)
        return held;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    int owner_dead = 0;
    while (!pred(arg)) {
        double left = crew__deadline_left(&d);
        if (left == 0)
            return owner_dead ? owner_dead : CREW_ETIMEDOUT;
        int rc = cond_wait_until(c, cl, &d, left);
        if (rc == CREW_EOWNERDEAD)
            owner_dead = rc; /* held; report it once the predicate is settled */
        else if (rc != 0 && rc != CREW_ETIMEDOUT)
            return rc;
    }
    return owner_dead;
}

int crew_cond_wait(crew_cond *c, crew_lock *l, double timeout)
{
    cond_lock cl = {.l = l};
    return l ? cond_wait(c, &cl, timeout) : CREW_EINVAL;
}

int crew_cond_wait_for(crew_cond *c, crew_lock *l, crew_cond_pred pred, void *arg,
                       double timeout)
{
    cond_lock cl = {.l = l};
    return l ? cond_wait_for(c, &cl, pred, arg, timeout) : CREW_EINVAL;
}

int crew_cond_wait_rlock(crew_cond *c, crew_rlock *r, double timeout)
{
    cond_lock cl = {.r = r};
    return r ? cond_wait(c, &cl, timeout) : CREW_EINVAL;
}

int crew_cond_wait_for_rlock(crew_cond *c, crew_rlock *r, crew_cond_pred pred, void *arg,
                             double timeout)
{
    cond_lock cl = {.r = r};
    return r ? cond_wait_for(c, &cl, pred, arg, timeout) : CREW_EINVAL;
}

static int notify(crew_cond *c, int n)
{
    if (!cond_ok(c))
        return CREW_EINVAL;
    _Atomic uint64_t *w = &ci(c)->data;
    uint64_t d = atomic_load_explicit(w, memory_order_relaxed), nd;
    do /* increment the sequence without carrying into nwaiters */
        nd = (d & ~(uint64_t)UINT32_MAX) | (uint32_t)(d + 1);
    while (!atomic_compare_exchange_weak_explicit(w, &d, nd, memory_order_release,
                                                  memory_order_relaxed));
    /* From here on the condition may already be freed by a woken waiter. */
    if (d >> 32)
        crew__futex_wake(crew__low_half(w), n);
    return 0;
}

int crew_cond_notify(crew_cond *c) { return notify(c, 1); }
int crew_cond_notify_n(crew_cond *c, unsigned n)
{
    if (n == 0) /* Python's notify(0) wakes nobody; it is still a valid call */
        return cond_ok(c) ? 0 : CREW_EINVAL;
    return notify(c, n > INT32_MAX ? INT32_MAX : (int)n);
}
int crew_cond_notify_all(crew_cond *c) { return notify(c, INT32_MAX); }

int crew_cond_destroy(crew_cond *c)
{
    if (!cond_ok(c))
        return CREW_EINVAL;
    atomic_store_explicit(&ci(c)->magic, 0, memory_order_relaxed);
    return 0;
}
