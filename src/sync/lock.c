/*
 * lock.c -- crew_lock and crew_rlock, and the lock core the barrier and the
 * shared-memory ring (ipc/ring.c) share.
 *
 * DESIGN
 * A lock is one 64-bit atomic word in (possibly shared) memory:
 *
 *     bits 63..32  owner pid        (0: free, or a special state)
 *     bit  31      INCONSISTENT     (taken over from a dead owner, not yet
 *                                    marked consistent)
 *     bit  30      WAITERS          (someone may be asleep on the futex)
 *     bits 29..0   owner tid
 *
 * No pointer is stored, so the word means the same in every process that
 * maps it. Acquire's fast path is one CAS 0 -> (pid << 32 | tid) with ids
 * cached in thread-local storage; release's is one CAS back to 0. That is the
 * same work as an uncontended pthread mutex, and less than a robust one
 * (which also maintains the kernel's robust list on every operation).
 *
 * Before sleeping, a waiter spins watching for the owner to change, for a
 * budget the lock adapts to how recent spins went (crew__spin_budget in
 * sync.h; down to no spin at all when the CPUs are oversubscribed).
 *
 * Wake-up protocol (why no wake-up is lost). A waiter sleeps on the futex of
 * the word's low half (the owner tid plus the flags) only after setting
 * WAITERS in the word with a CAS, and passes the value it saw to
 * FUTEX_WAIT, which sleeps only if the half still holds that value. A
 * releaser swaps the word to 0 and, if WAITERS was set, wakes one sleeper.
 * So either the release happened before the sleep (the futex value differs:
 * no sleep) or after it (the releaser sees WAITERS and wakes). The woken
 * waiter takes the lock with WAITERS set again, because others may still
 * sleep, so its own release wakes the next one. A waiter that gives up
 * (timeout) while the lock is held makes sure WAITERS is set, so a wake-up it
 * may have consumed is passed on by the owner's release. A waiter killed
 * after consuming a wake-up is the one case that can strand sleepers; they
 * recover at their next slice (below), within 50 ms.
 *
 * Dead owners. Sleepers sleep in slices (4 ms doubling to 50 ms). When a
 * slice runs out (the lock was held all that time), the waiter asks whether
 * the owner thread is alive (tgkill(pid, tid, 0), and /proc for zombies). If
 * not, it CASes exactly the dead owner's word to its own id plus
 * INCONSISTENT and returns CREW_EOWNERDEAD with the lock held: only one
 * waiter can win that CAS. The new owner repairs the protected data and calls
 * crew_lock_consistent(); releasing without doing so stores the
 * NOT-RECOVERABLE state and wakes everyone, who get CREW_ENOTRECOVERABLE.
 * A poll (timeout 0) checks liveness at once, and any acquire checks once
 * before it returns CREW_ETIMEDOUT. Caveats (docs/sync.md): a
 * recycled pid+tid would look alive; processes must share a pid namespace.
 *
 * Inspection (locked, owner_get, rlock count) reads the word once and
 * reports a snapshot; crew_rlock_count is exact for the caller because only
 * the owner writes the count. A condition wait over an rlock releases every
 * level with one release of the word (crew__rlock_release_save) and restores
 * the count after re-acquiring.
 *
 * Nothing here allocates, so a process can die at any instruction: the word
 * is always either free, owned by a live or dead thread, or special.
 *
 * Other users of the core (crew__lw_acquire, crew__lw_wait in sync.h). The
 * barrier's lock always repairs at once. The ring's two locks guard words a
 * hostile peer may write (ring.c, HOSTILE PEERS): they wait with the
 * caller's deadline (a put or get that waited for room resumes with what is
 * left of it), spin even on a poll (a ring lock is held for one copy, so a
 * poll should see it freed rather than call it busy), end with CREW_EPROTO
 * once the ring's `broken` flag is set, and take a word with pid 0 -- which
 * no crew code writes there -- for a dead owner's (owners_only). Against a
 * peer that flips the word the loop stays bounded by the deadline: a turn
 * on a held word looks at the deadline (or is the one owner check of its
 * slice), a sleep lasts at most until it, and
 * CASes lost on a word that looked free are counted, every 64th looking at
 * the clock (honest contention rarely loses that many in a row).
 */
#include "sync/sync.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int crew__sync_sleep(_Atomic uint32_t *addr, uint32_t val, const crew__deadline *d,
                     uint32_t *slice_ns)
{
    crew__deadline s;
    crew__deadline_init(&s, 0);
    uint64_t ns = (uint64_t)s.at.tv_nsec + *slice_ns;
    s.at.tv_sec += (time_t)(ns / 1000000000u);
    s.at.tv_nsec = (long)(ns % 1000000000u);
    s.forever = false;
    bool real = false;
    if (!d->forever && (d->at.tv_sec < s.at.tv_sec ||
                        (d->at.tv_sec == s.at.tv_sec && d->at.tv_nsec <= s.at.tv_nsec))) {
        s.at = d->at;
        real = true;
    }
    if (*slice_ns < CREW__SLICE_MAX_NS)
        *slice_ns = *slice_ns * 2 < CREW__SLICE_MAX_NS ? *slice_ns * 2 : CREW__SLICE_MAX_NS;
    int r = crew__futex_wait(addr, val, &s);
    if (r == CREW_ETIMEDOUT)
        return real ? CREW_ETIMEDOUT : 1;
    return 0;
}

/* ------------------------------------------------------------ lock core */
static inline bool is_special(uint64_t owner) { return (owner >> 32) == 0; }

static int special_status(uint64_t owner)
{
    return owner == CREW__LW_NOTRECOVERABLE ? CREW_ENOTRECOVERABLE : CREW_EINVAL;
}

/* Watches the word for the spin budget (a hand-off is ~0.3 us when
 * watched, ~35 us through a sleep). true if the owner changed. */
static bool spin_watch(_Atomic uint64_t *w, uint64_t owner, _Atomic uint32_t *spin_hint)
{
    uint32_t budget = crew__spin_budget(spin_hint);
    if (budget == 0)
        return false; /* the hint says: park at once */
    uint64_t start = crew__now_ns();
    bool seen = false;
    for (unsigned i = 1;; i++) {
        uint64_t x = atomic_load_explicit(w, memory_order_relaxed);
        if (crew__lw_owner(x) != owner) {
            seen = true;
            break;
        }
        crew__cpu_relax();
        if ((i & 15) == 0 && crew__now_ns() - start >= budget)
            break;
    }
    crew__spin_feedback(spin_hint, seen);
    return seen;
}

/* The deadline has passed with the word held (v). A waiter that slept may
 * have consumed a wake-up meant for another sleeper: leave WAITERS set so
 * the owner's release wakes one. Returns false if the word was found free
 * meanwhile (take it rather than time out). */
static bool give_up(_Atomic uint64_t *w, uint64_t v, bool waited)
{
    while (waited && v != 0 && !(v & CREW__LW_WAITERS) &&
           !atomic_compare_exchange_weak_explicit(w, &v, v | CREW__LW_WAITERS,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    return v != 0;
}

int crew__lw_acquire(_Atomic uint64_t *w, uint64_t me, uint64_t v, const crew__lw_wait *how)
{
    CREW__ASSERT((me & CREW__LW_FLAGS) == 0 && (me >> 32) != 0);
    const crew__deadline *d = how->deadline;
    uint32_t slice = CREW__SLICE_FIRST_NS;
    bool check_live = how->check_first, spun = !how->spin, waited = false, checked = false;
    unsigned lost = 0;
    for (;; v = atomic_load_explicit(w, memory_order_relaxed)) {
        if (v == 0) {
            /* Once we have slept, others may sleep too: keep WAITERS. */
            uint64_t nv = me | (waited ? CREW__LW_WAITERS : 0);
            if (atomic_compare_exchange_weak_explicit(w, &v, nv, memory_order_acquire,
                                                      memory_order_relaxed))
                return 0;
            /* Lost to a taker. A word that keeps flipping between free and
             * taken (a hostile peer's) must not hold us past the deadline
             * either; honest contention rarely loses 64 in a row. */
            if ((++lost & 63) == 0 && crew__deadline_expired(d))
                return CREW_ETIMEDOUT;
            continue;
        }
        uint64_t owner = crew__lw_owner(v);
        if (is_special(owner) && !how->owners_only)
            return special_status(owner);
        if (owner == me)
            return CREW_EDEADLK;
        if (check_live) {
            check_live = false;
            checked = true;
            /* With owners_only a word of pid 0 names no thread at all. */
            if (is_special(owner) ||
                !crew__thread_alive((uint32_t)(owner >> 32), (uint32_t)owner)) {
                uint64_t nv = me | CREW__LW_INCONSISTENT | (v & CREW__LW_WAITERS);
                if (atomic_compare_exchange_strong_explicit(w, &v, nv, memory_order_acquire,
                                                            memory_order_relaxed))
                    return CREW_EOWNERDEAD;
                continue; /* someone else took it over or it changed: re-read */
            }
        }
        if (how->broken && atomic_load_explicit(how->broken, memory_order_acquire))
            return CREW_EPROTO;
        if (crew__deadline_expired(d)) {
            /* A caller that loops on short timeouts never sees a slice run
             * out: check the owner once per call before giving up. */
            if (!checked) {
                check_live = true;
                continue;
            }
            if (give_up(w, v, waited))
                return CREW_ETIMEDOUT;
            continue; /* freed meanwhile */
        }
        if (!spun) {
            spun = true;
            (void)spin_watch(w, owner, how->spin_hint);
            continue;
        }
        if (!(v & CREW__LW_WAITERS)) {
            if (!atomic_compare_exchange_weak_explicit(w, &v, v | CREW__LW_WAITERS,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
            v |= CREW__LW_WAITERS;
        }
        waited = true;
        int r = crew__sync_sleep(crew__low_half(w), (uint32_t)v, d, &slice);
        if (r == 1)
            check_live = true;
    }
}

int crew__lw_acquire_slow(_Atomic uint64_t *w, uint64_t me, uint64_t v, double timeout,
                          _Atomic uint32_t *spin_hint)
{
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    /* A poll (timeout 0) checks the owner at once and does not spin. */
    crew__lw_wait how = {.deadline = &d, .spin_hint = spin_hint, .check_first = timeout == 0,
                         .spin = timeout != 0};
    return crew__lw_acquire(w, me, v, &how);
}

int crew__lw_release_slow(_Atomic uint64_t *w, uint64_t me, uint64_t v)
{
    for (;;) {
        uint64_t owner = crew__lw_owner(v);
        if (owner != me)
            return owner == CREW__LW_DESTROYED ? CREW_EINVAL : CREW_EPERM;
        if (v & CREW__LW_INCONSISTENT) {
            /* Released without repair: nobody may trust the data again. */
            atomic_store_explicit(w, CREW__LW_NOTRECOVERABLE, memory_order_release);
            crew__futex_wake(crew__low_half(w), INT32_MAX);
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(w, &v, 0, memory_order_release,
                                                  memory_order_relaxed)) {
            if (v & CREW__LW_WAITERS)
                crew__futex_wake(crew__low_half(w), 1);
            return 0;
        }
    }
}

int crew__lw_consistent(_Atomic uint64_t *w, uint64_t me)
{
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint64_t owner = crew__lw_owner(v);
        if (owner != me)
            return owner == CREW__LW_DESTROYED ? CREW_EINVAL : CREW_EPERM;
        if (!(v & CREW__LW_INCONSISTENT))
            return CREW_EINVAL;
        if (atomic_compare_exchange_weak_explicit(w, &v, v & ~CREW__LW_INCONSISTENT,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 0;
    }
}

static int lw_try_status(uint64_t v)
{
    uint64_t owner = crew__lw_owner(v);
    return is_special(owner) ? special_status(owner) : CREW_EBUSY;
}

static int lw_destroy(_Atomic uint64_t *w)
{
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint64_t owner = crew__lw_owner(v);
        if (owner == CREW__LW_DESTROYED)
            return CREW_EINVAL;
        if (owner != 0 && owner != CREW__LW_NOTRECOVERABLE)
            return CREW_EBUSY;
        if (atomic_compare_exchange_weak_explicit(w, &v, CREW__LW_DESTROYED,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 0;
    }
}

/* ------------------------------------------------------------ crew_lock */
typedef struct lock_impl {
    _Atomic uint64_t word;
    _Atomic uint32_t spin_hint; /* see crew__spin_budget */
    uint32_t reserved;
} lock_impl;
_Static_assert(sizeof(lock_impl) <= sizeof(crew_lock), "crew_lock too small");

static inline _Atomic uint64_t *lock_word(crew_lock *l)
{
    return &((lock_impl *)(void *)l)->word;
}

int crew_lock_init(crew_lock *l)
{
    if (!l)
        return CREW_EINVAL;
    memset(l, 0, sizeof *l);
    atomic_store_explicit(lock_word(l), 0, memory_order_release);
    return 0;
}

int crew_lock_acquire(crew_lock *l, double timeout)
{
    if (CREW__UNLIKELY(!l || crew__timeout_bad(timeout)))
        return CREW_EINVAL;
    uint64_t me = crew__lw_self(), v = 0;
    if (CREW__LIKELY(atomic_compare_exchange_strong_explicit(lock_word(l), &v, me,
                                                            memory_order_acquire,
                                                            memory_order_relaxed)))
        return 0;
    return crew__lw_acquire_slow(lock_word(l), me, v, timeout,
                                 &((lock_impl *)(void *)l)->spin_hint);
}

int crew_lock_try(crew_lock *l)
{
    if (!l)
        return CREW_EINVAL;
    uint64_t v = 0;
    if (atomic_compare_exchange_strong_explicit(lock_word(l), &v, crew__lw_self(),
                                                memory_order_acquire, memory_order_relaxed))
        return 0;
    return lw_try_status(v);
}

int crew_lock_release(crew_lock *l)
{
    if (CREW__UNLIKELY(!l))
        return CREW_EINVAL;
    uint64_t me = crew__lw_self(), v = me;
    if (CREW__LIKELY(atomic_compare_exchange_strong_explicit(lock_word(l), &v, 0,
                                                            memory_order_release,
                                                            memory_order_relaxed)))
        return 0;
    return crew__lw_release_slow(lock_word(l), me, v);
}

int crew_lock_consistent(crew_lock *l)
{
    if (!l)
        return CREW_EINVAL;
    return crew__lw_consistent(lock_word(l), crew__lw_self());
}

int crew_lock_destroy(crew_lock *l)
{
    if (!l)
        return CREW_EINVAL;
    return lw_destroy(lock_word(l));
}

/* ------------------------------------------------------------ crew_rlock
 * The same word, plus a recursion count that only the owner touches (relaxed
 * atomics: a new owner after a death writes it too, and the ordering comes
 * from the word). */
typedef struct rlock_impl {
    _Atomic uint64_t word;
    _Atomic uint32_t count;
    _Atomic uint32_t spin_hint;
} rlock_impl;
_Static_assert(sizeof(rlock_impl) <= sizeof(crew_rlock), "crew_rlock too small");

static inline rlock_impl *rl(crew_rlock *r) { return (rlock_impl *)(void *)r; }

int crew_rlock_init(crew_rlock *r)
{
    if (!r)
        return CREW_EINVAL;
    memset(r, 0, sizeof *r);
    atomic_store_explicit(&rl(r)->word, 0, memory_order_release);
    return 0;
}

static int rlock_again(rlock_impl *p)
{
    uint32_t c = atomic_load_explicit(&p->count, memory_order_relaxed);
    if (c >= INT32_MAX)
        return CREW_EOVERFLOW;
    atomic_store_explicit(&p->count, c + 1, memory_order_relaxed);
    return 0;
}

int crew_rlock_acquire(crew_rlock *r, double timeout)
{
    if (!r || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    rlock_impl *p = rl(r);
    uint64_t me = crew__lw_self(), v = 0;
    if (CREW__LIKELY(atomic_compare_exchange_strong_explicit(&p->word, &v, me,
                                                            memory_order_acquire,
                                                            memory_order_relaxed))) {
        atomic_store_explicit(&p->count, 1, memory_order_relaxed);
        return 0;
    }
    if (crew__lw_owner(v) == me)
        return rlock_again(p);
    int rc = crew__lw_acquire_slow(&p->word, me, v, timeout, &p->spin_hint);
    if (rc == 0 || rc == CREW_EOWNERDEAD)
        atomic_store_explicit(&p->count, 1, memory_order_relaxed);
    return rc;
}

int crew_rlock_try(crew_rlock *r)
{
    if (!r)
        return CREW_EINVAL;
    rlock_impl *p = rl(r);
    uint64_t me = crew__lw_self(), v = 0;
    if (atomic_compare_exchange_strong_explicit(&p->word, &v, me, memory_order_acquire,
                                                memory_order_relaxed)) {
        atomic_store_explicit(&p->count, 1, memory_order_relaxed);
        return 0;
    }
    if (crew__lw_owner(v) == me)
        return rlock_again(p);
    return lw_try_status(v);
}

int crew_rlock_release(crew_rlock *r)
{
    if (!r)
        return CREW_EINVAL;
    rlock_impl *p = rl(r);
    uint64_t me = crew__lw_self();
    uint64_t v = atomic_load_explicit(&p->word, memory_order_relaxed);
    if (crew__lw_owner(v) != me)
        return crew__lw_owner(v) == CREW__LW_DESTROYED ? CREW_EINVAL : CREW_EPERM;
    uint32_t c = atomic_load_explicit(&p->count, memory_order_relaxed);
    if (c > 1) {
        atomic_store_explicit(&p->count, c - 1, memory_order_relaxed);
        return 0;
    }
    atomic_store_explicit(&p->count, 0, memory_order_relaxed);
    v = me;
    if (atomic_compare_exchange_strong_explicit(&p->word, &v, 0, memory_order_release,
                                                memory_order_relaxed))
        return 0;
    return crew__lw_release_slow(&p->word, me, v);
}

int crew_rlock_consistent(crew_rlock *r)
{
    if (!r)
        return CREW_EINVAL;
    return crew__lw_consistent(&rl(r)->word, crew__lw_self());
}

int crew_rlock_destroy(crew_rlock *r)
{
    if (!r)
        return CREW_EINVAL;
    return lw_destroy(&rl(r)->word);
}

/* ------------------------------------------------------------ inspection
 * Python's locked(), RLock's _is_owned() / _recursion_count(), and the
 * owner's ids. All read the word once (a snapshot: another thread may take
 * or drop the lock the moment after). */
static int lw_locked(_Atomic uint64_t *w)
{
    uint64_t owner = crew__lw_owner(atomic_load_explicit(w, memory_order_acquire));
    if (owner == 0)
        return 0;
    if (is_special(owner))
        return special_status(owner);
    return 1;
}

static int lw_owner_get(_Atomic uint64_t *w, pid_t *pid, pid_t *tid)
{
    uint64_t owner = crew__lw_owner(atomic_load_explicit(w, memory_order_acquire));
    if (is_special(owner) && owner != 0)
        return special_status(owner);
    if (pid)
        *pid = (pid_t)(owner >> 32);
    if (tid)
        *tid = (pid_t)(uint32_t)owner;
    return 0;
}

int crew_lock_locked(crew_lock *l) { return l ? lw_locked(lock_word(l)) : CREW_EINVAL; }

int crew_lock_owner_get(crew_lock *l, pid_t *pid, pid_t *tid)
{
    return l ? lw_owner_get(lock_word(l), pid, tid) : CREW_EINVAL;
}

int crew_rlock_locked(crew_rlock *r) { return r ? lw_locked(&rl(r)->word) : CREW_EINVAL; }

int crew_rlock_owner_get(crew_rlock *r, pid_t *pid, pid_t *tid)
{
    return r ? lw_owner_get(&rl(r)->word, pid, tid) : CREW_EINVAL;
}

int crew_rlock_count(crew_rlock *r)
{
    if (!r)
        return CREW_EINVAL;
    rlock_impl *p = rl(r);
    uint64_t owner = crew__lw_owner(atomic_load_explicit(&p->word, memory_order_acquire));
    if (owner == CREW__LW_DESTROYED)
        return CREW_EINVAL;
    /* Only the owner writes the count, so the caller's own count is exact;
     * anyone else holds 0 levels. */
    if (owner != crew__lw_self())
        return 0;
    return (int)atomic_load_explicit(&p->count, memory_order_relaxed);
}

/* ------------------------------------------------------------ for cond.c
 * Python's RLock._release_save / _acquire_restore: a condition wait over an
 * rlock drops every level at once and takes them all back. */
int crew__rlock_release_save(crew_rlock *r, uint32_t *saved)
{
    rlock_impl *p = rl(r);
    uint64_t me = crew__lw_self();
    uint64_t v = atomic_load_explicit(&p->word, memory_order_relaxed);
    if (crew__lw_owner(v) != me)
        return crew__lw_owner(v) == CREW__LW_DESTROYED ? CREW_EINVAL : CREW_EPERM;
    *saved = atomic_load_explicit(&p->count, memory_order_relaxed);
    atomic_store_explicit(&p->count, 0, memory_order_relaxed);
    v = me;
    if (atomic_compare_exchange_strong_explicit(&p->word, &v, 0, memory_order_release,
                                                memory_order_relaxed))
        return 0;
    return crew__lw_release_slow(&p->word, me, v);
}

int crew__rlock_acquire_restore(crew_rlock *r, uint32_t saved)
{
    int rc = crew_rlock_acquire(r, CREW_FOREVER);
    if (rc == 0 || rc == CREW_EOWNERDEAD)
        atomic_store_explicit(&rl(r)->count, saved, memory_order_relaxed);
    return rc;
}
