/*
 * barrier.c -- crew_barrier: Python's Barrier, process-shared, death-aware.
 *
 * DESIGN
 * State, all inside the struct (no pointers, so it works in shared memory):
 *   lock      a lock word (lock.c's core) guarding everything below except
 *             `state`, which is also read without it;
 *   state     the futex word: generation << 1 | BROKEN. A round ends when
 *             the last arrival advances the generation (or someone sets
 *             BROKEN); waiters sleep on the word they read at arrival;
 *   count     arrivals in the current round (= the next arrival's index);
 *   arrived   bit i set: tracked participant i arrived in this round;
 *   slots[i]  tracked participant i: (pid << 32 | tid), 0 = free;
 *   reset_mark  (g << 1 | 1) when generation g ended by reset, so its
 *             waiters report CREW_EBROKEN, not success;
 *   timeout   the default timeout (a double's bits) for waits that pass a
 *             negative one, as Python's Barrier(timeout=...) for wait(None).
 *
 * Action (crew_barrier_wait_action): the last arrival runs it with the lock
 * released but the round not ended, so no waiter is released before it
 * returns; then it re-takes the lock and ends the round only if `state` is
 * still the one it arrived in (an abort, reset, timeout or death during the
 * action ended the round otherwise: the tripper reports CREW_EBROKEN). A
 * failing action breaks the barrier (Python's rule). The function pointer
 * is each caller's own, never stored in the shared struct: it would mean
 * nothing in a process that did not fork from the one that stored it.
 *
 * Wait: take the lock; broken -> CREW_EBROKEN; register the caller in a slot
 * (first wait or attach); index = count++; mark arrived; if count == parties
 * advance the generation (clearing count and arrived) and wake all; else
 * release the lock and sleep until `state` changes. No wake-up is lost: the
 * waiter sleeps only while `state` still holds the generation it arrived in
 * (FUTEX_WAIT compares), and every change of `state` is followed by a
 * wake-all.
 *
 * Death: waiters sleep in slices (4 ms doubling to 50 ms). When a slice runs
 * out they copy the tracked participants that have not arrived, check each
 * one's liveness outside the lock (tgkill + /proc, a few system calls each),
 * and if one is dead, take the lock and -- if the round is still the same --
 * free its slot, set BROKEN and wake everyone: CREW_EBROKEN all round. A
 * process that dies holding the internal lock is found by the lock core;
 * the next locker gets CREW_EOWNERDEAD, cannot trust the counts, and breaks
 * the barrier (reset repairs it). A waiter killed while asleep has already
 * arrived and is counted, as in Python; its death is noticed in a later
 * round if it is a tracked participant.
 */
#include "sync/sync.h"

#include <string.h>

#define BARRIER_MAGIC 0x62617272u /* "barr" */
#define BROKEN 1u

typedef struct barrier_impl {
    _Atomic uint64_t lock;
    _Atomic uint32_t state;
    _Atomic uint32_t magic;
    uint32_t parties;
    _Atomic uint32_t count;
    _Atomic uint32_t reset_mark;
    _Atomic uint32_t spin_hint;
    _Atomic uint64_t arrived;
    _Atomic uint64_t slots[CREW_BARRIER_MAX_PARTIES];
    _Atomic uint64_t timeout; /* the default timeout's bits (a double); < 0: none */
} barrier_impl;
_Static_assert(sizeof(barrier_impl) <= sizeof(crew_barrier), "crew_barrier too small");
_Static_assert(CREW_BARRIER_MAX_PARTIES <= 64, "arrived is a 64-bit mask");

static inline barrier_impl *bi(crew_barrier *b) { return (barrier_impl *)(void *)b; }

static bool barrier_ok(crew_barrier *b)
{
    return b && atomic_load_explicit(&bi(b)->magic, memory_order_acquire) == BARRIER_MAGIC;
}

#define RLX memory_order_relaxed

static void set_state(barrier_impl *p, uint32_t st)
{
    atomic_store_explicit(&p->state, st, memory_order_release);
    crew__futex_wake(&p->state, INT32_MAX);
}

static void blk_lock(barrier_impl *p)
{
    uint64_t me = crew__lw_self(), v = 0;
    if (atomic_compare_exchange_strong_explicit(&p->lock, &v, me, memory_order_acquire, RLX))
        return;
    int rc = crew__lw_acquire_slow(&p->lock, me, v, CREW_FOREVER, NULL);
    if (rc == CREW_EOWNERDEAD) {
        /* A process died in the middle of an update: counts are not to be
         * trusted. Break the round; crew_barrier_reset() repairs. */
        set_state(p, atomic_load_explicit(&p->state, RLX) | BROKEN);
        (void)crew__lw_consistent(&p->lock, me);
        return;
    }
    /* ENOTRECOVERABLE cannot happen: we always mark consistent. */
    CREW__ASSERT(rc == 0);
}

static void blk_unlock(barrier_impl *p)
{
    uint64_t me = crew__lw_self(), v = me;
    if (atomic_compare_exchange_strong_explicit(&p->lock, &v, 0, memory_order_release, RLX))
        return;
    int rc = crew__lw_release_slow(&p->lock, me, v);
    CREW__ASSERT(rc == 0);
}

/* Under the lock: the caller's slot, registering it if there is room.
 * Returns the index or -1 (all slots taken by others). */
static int find_slot(barrier_impl *p, uint64_t me, bool add)
{
    int free_slot = -1;
    for (uint32_t i = 0; i < p->parties; i++) {
        uint64_t id = atomic_load_explicit(&p->slots[i], RLX);
        if (id == me)
            return (int)i;
        if (id == 0 && free_slot < 0)
            free_slot = (int)i;
    }
    if (add && free_slot >= 0)
        atomic_store_explicit(&p->slots[free_slot], me, RLX);
    return add ? free_slot : -1;
}

static void set_default_timeout(barrier_impl *p, double t)
{
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    atomic_store_explicit(&p->timeout, bits, RLX);
}

static double default_timeout(barrier_impl *p)
{
    uint64_t bits = atomic_load_explicit(&p->timeout, RLX);
    double t;
    memcpy(&t, &bits, sizeof t);
    return t;
}

int crew_barrier_init(crew_barrier *b, unsigned parties)
{
    if (!b || parties == 0 || parties > CREW_BARRIER_MAX_PARTIES)
        return CREW_EINVAL;
    memset(b, 0, sizeof *b);
    bi(b)->parties = parties;
    set_default_timeout(bi(b), CREW_FOREVER);
    atomic_store_explicit(&bi(b)->magic, BARRIER_MAGIC, memory_order_release);
    return 0;
}

/* Checks the tracked participants that have not arrived in generation g;
 * breaks the barrier if one is dead. Called by sleepers when a slice ends. */
static void check_dead(barrier_impl *p, uint32_t g)
{
    uint64_t ids[CREW_BARRIER_MAX_PARTIES];
    uint64_t arrived = atomic_load_explicit(&p->arrived, RLX);
    for (uint32_t i = 0; i < p->parties; i++)
        ids[i] = atomic_load_explicit(&p->slots[i], RLX);
    for (uint32_t i = 0; i < p->parties; i++) {
        if (ids[i] == 0 || (arrived >> i & 1) ||
            crew__thread_alive((uint32_t)(ids[i] >> 32), (uint32_t)ids[i]))
            continue;
        blk_lock(p);
        uint32_t st = atomic_load_explicit(&p->state, RLX);
        if (st == g << 1 && atomic_load_explicit(&p->slots[i], RLX) == ids[i] &&
            !(atomic_load_explicit(&p->arrived, RLX) >> i & 1)) {
            atomic_store_explicit(&p->slots[i], 0, RLX);
            set_state(p, st | BROKEN);
        }
        blk_unlock(p);
        return;
    }
}

/* Sleeps until `state` is no longer st: 0 or CREW_ETIMEDOUT. */
static int wait_state_change(barrier_impl *p, uint32_t st, const crew__deadline *d)
{
    uint32_t slice = CREW__SLICE_FIRST_NS;
    while (atomic_load_explicit(&p->state, memory_order_acquire) == st)
        if (crew__sync_sleep(&p->state, st, d, &slice) == CREW_ETIMEDOUT &&
            atomic_load_explicit(&p->state, memory_order_acquire) == st)
            return CREW_ETIMEDOUT;
    return 0;
}

/* Under the lock, by the last arrival of generation st >> 1: runs the
 * action (if any) with the lock released and the round not yet over, then
 * ends the round -- or breaks it if the action failed. Returns with the lock
 * released. While the action runs the tripper is a tracked participant that
 * has not arrived, so the others' death check watches it too. */
static int trip(barrier_impl *p, uint32_t st, crew_barrier_action action, void *arg)
{
    if (action) {
        atomic_store_explicit(&p->count, p->parties, RLX);
        blk_unlock(p);
        int rc = action(arg);
        blk_lock(p);
        if (atomic_load_explicit(&p->state, RLX) != st) {
            /* Aborted, reset, or broken by a timeout or a death meanwhile:
             * the round is not ours to end any more. */
            blk_unlock(p);
            return CREW_EBROKEN;
        }
        if (rc != 0) {
            set_state(p, st | BROKEN);
            blk_unlock(p);
            return rc < 0 ? rc : CREW_EBROKEN;
        }
    }
    atomic_store_explicit(&p->count, 0, RLX);
    atomic_store_explicit(&p->arrived, 0, RLX);
    set_state(p, st + 2); /* next generation, not broken */
    blk_unlock(p);
    return 0;
}

int crew_barrier_wait_action(crew_barrier *b, double timeout, unsigned *index,
                             crew_barrier_action action, void *arg)
{
    if (!barrier_ok(b) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    if (timeout < 0)
        timeout = default_timeout(p); /* Python's wait(None) */
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    uint64_t me = crew__lw_self();

    blk_lock(p);
    uint32_t st, idx;
    for (;;) {
        st = atomic_load_explicit(&p->state, RLX);
        if (st & BROKEN) {
            blk_unlock(p);
            return CREW_EBROKEN;
        }
        idx = atomic_load_explicit(&p->count, RLX);
        if (idx < p->parties)
            break;
        /* More callers than parties, and this round's action is running:
         * join the next round once it ends (Python's _enter waits so). */
        blk_unlock(p);
        int r = wait_state_change(p, st, &d);
        if (r)
            return r;
        blk_lock(p);
    }
    int slot = find_slot(p, me, true);
    if (idx + 1 == p->parties) {
        int rc = trip(p, st, action, arg);
        if (rc == 0 && index)
            *index = idx;
        return rc;
    }
    atomic_store_explicit(&p->count, idx + 1, RLX);
    if (slot >= 0)
        atomic_fetch_or_explicit(&p->arrived, (uint64_t)1 << slot, RLX);
    blk_unlock(p);

    uint32_t g = st >> 1, slice = CREW__SLICE_FIRST_NS;
    bool spun = timeout == 0;
    for (;;) {
        uint32_t cur = atomic_load_explicit(&p->state, memory_order_acquire);
        if (cur >> 1 != g) {
            if (atomic_load_explicit(&p->reset_mark, memory_order_acquire) == (g << 1 | 1))
                return CREW_EBROKEN;
            if (index)
                *index = idx;
            return 0;
        }
        if (cur & BROKEN)
            return CREW_EBROKEN;
        if (!spun) {
            spun = true;
            (void)crew__spin_adaptive(&p->state, cur, &p->spin_hint);
            continue;
        }
        int r = crew__sync_sleep(&p->state, cur, &d, &slice);
        if (r == CREW_ETIMEDOUT || (r == 0 && timeout == 0)) {
            blk_lock(p);
            cur = atomic_load_explicit(&p->state, RLX);
            bool mine = cur == g << 1;
            if (mine)
                set_state(p, cur | BROKEN);
            blk_unlock(p);
            if (mine)
                return CREW_ETIMEDOUT;
        } else if (r == 1) {
            check_dead(p, g);
        }
    }
}

int crew_barrier_wait(crew_barrier *b, double timeout, unsigned *index)
{
    return crew_barrier_wait_action(b, timeout, index, NULL, NULL);
}

int crew_barrier_timeout_set(crew_barrier *b, double timeout)
{
    if (!barrier_ok(b) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    set_default_timeout(bi(b), timeout < 0 ? CREW_FOREVER : timeout);
    return 0;
}

int crew_barrier_attach(crew_barrier *b)
{
    if (!barrier_ok(b))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    blk_lock(p);
    int slot = find_slot(p, crew__lw_self(), true);
    blk_unlock(p);
    return slot >= 0 ? 0 : CREW_EBUSY;
}

int crew_barrier_detach(crew_barrier *b)
{
    if (!barrier_ok(b))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    blk_lock(p);
    int slot = find_slot(p, crew__lw_self(), false);
    if (slot >= 0) {
        atomic_store_explicit(&p->slots[slot], 0, RLX);
        atomic_fetch_and_explicit(&p->arrived, ~((uint64_t)1 << slot), RLX);
    }
    blk_unlock(p);
    return slot >= 0 ? 0 : CREW_ENOENT;
}

int crew_barrier_abort(crew_barrier *b)
{
    if (!barrier_ok(b))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    blk_lock(p);
    uint32_t st = atomic_load_explicit(&p->state, RLX);
    if (!(st & BROKEN))
        set_state(p, st | BROKEN);
    blk_unlock(p);
    return 0;
}

int crew_barrier_reset(crew_barrier *b)
{
    if (!barrier_ok(b))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    blk_lock(p);
    uint32_t st = atomic_load_explicit(&p->state, RLX);
    /* Waiters of this generation see it end with reset_mark naming it. */
    atomic_store_explicit(&p->reset_mark, (st >> 1) << 1 | 1, memory_order_release);
    atomic_store_explicit(&p->count, 0, RLX);
    atomic_store_explicit(&p->arrived, 0, RLX);
    for (uint32_t i = 0; i < p->parties; i++)
        atomic_store_explicit(&p->slots[i], 0, RLX);
    set_state(p, ((st >> 1) + 1) << 1);
    blk_unlock(p);
    return 0;
}

int crew_barrier_status_get(crew_barrier *b, unsigned *parties, unsigned *waiting, int *broken)
{
    if (!barrier_ok(b))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    if (parties)
        *parties = p->parties;
    if (waiting)
        *waiting = atomic_load_explicit(&p->count, RLX);
    if (broken)
        *broken = (int)(atomic_load_explicit(&p->state, memory_order_acquire) & BROKEN);
    return 0;
}

int crew_barrier_destroy(crew_barrier *b)
{
    if (!barrier_ok(b))
        return CREW_EINVAL;
    barrier_impl *p = bi(b);
    if (atomic_load_explicit(&p->count, RLX) != 0)
        return CREW_EBUSY;
    atomic_store_explicit(&p->magic, 0, RLX);
    return 0;
}
