/*
 * sync.h -- what the synchronisation objects (lock.c, cond.c, sem.c,
 * event.c, barrier.c) share privately: the owner word of a lock, the
 * liveness check, the sliced sleep. Never installed.
 */
#ifndef CREW__SYNC_H
#define CREW__SYNC_H

#include "core/internal.h"

/* The lock and rlock wait on the low 32 bits of a 64-bit word: on a
 * little-endian machine they are at the word's own address. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "crew locks assume little-endian");

/* Owner word of a lock: (pid << 32) | tid | flags. Linux tids are below
 * 2^22 (PID_MAX_LIMIT), so bits 30 and 31 of the low half are free. pid 0
 * never owns anything, so pid 0 with a marker in the low half encodes the
 * special states. */
#define CREW__LW_WAITERS ((uint64_t)1 << 30)
#define CREW__LW_INCONSISTENT ((uint64_t)1 << 31)
#define CREW__LW_FLAGS (CREW__LW_WAITERS | CREW__LW_INCONSISTENT)
#define CREW__LW_NOTRECOVERABLE ((uint64_t)0x3ffffffe)
#define CREW__LW_DESTROYED ((uint64_t)0x3ffffffd)

static inline uint64_t crew__lw_self(void)
{
    return ((uint64_t)crew__pid() << 32) | crew__tid();
}
/* The owner part of a word (no flags); 0 when free. */
static inline uint64_t crew__lw_owner(uint64_t w) { return w & ~CREW__LW_FLAGS; }

/* The lock core shared by crew_lock, crew_rlock, the barrier's internal
 * lock and the shared-memory ring's two locks (ipc/ring.c): slow paths only
 * (the fast paths are inline CASes at the callers). */

/* How a wait for a lock word goes (crew__lw_acquire). */
typedef struct crew__lw_wait {
    const crew__deadline *deadline; /* when to give up: CREW_ETIMEDOUT */
    _Atomic uint32_t *spin_hint;    /* adaptive spinning (below); NULL: fixed budget */
    /* Non-NULL: a flag that reads non-zero once the structure holding the
     * lock is broken (the ring's `broken`); the wait then ends with
     * CREW_EPROTO. Looked at on every turn before the wait sleeps again. */
    _Atomic uint32_t *broken;
    bool check_first; /* ask whether the owner lives before anything else (a poll) */
    bool spin;        /* watch the owner for the spin budget before the first sleep */
    /* The word only ever holds owners (no crew_lock_destroy, no release
     * without repair): a word of pid 0 then names no thread -- a peer wrote
     * it -- and is taken over like a dead owner's, instead of being a
     * special state. For words in memory a hostile peer can write. */
    bool owners_only;
} crew__lw_wait;

/* Acquires *w for me (crew__lw_self()) after a failed fast CAS that saw
 * `seen`. Returns 0; CREW_EOWNERDEAD (held, taken over from a dead owner,
 * INCONSISTENT set: repair, then crew__lw_consistent); CREW_ETIMEDOUT;
 * CREW_EDEADLK (we own it); CREW_ENOTRECOVERABLE / CREW_EINVAL (special
 * states, unless owners_only); CREW_EPROTO (how->broken). However a peer
 * flips the word, the loop looks at the deadline at least every 64 turns
 * and sleeps only until it: it never holds the caller much past it. */
int crew__lw_acquire(_Atomic uint64_t *w, uint64_t me, uint64_t seen, const crew__lw_wait *how);
/* crew__lw_acquire for a public-call timeout: a poll (0) checks the owner
 * at once and does not spin; otherwise spin, then sleep. */
int crew__lw_acquire_slow(_Atomic uint64_t *w, uint64_t me, uint64_t seen, double timeout,
                          _Atomic uint32_t *spin_hint);
/* Release after a failed fast CAS (me -> 0) that saw `seen`: 0 (released;
 * an INCONSISTENT lock becomes not recoverable), CREW_EPERM (not ours) or
 * CREW_EINVAL (destroyed). */
int crew__lw_release_slow(_Atomic uint64_t *w, uint64_t me, uint64_t seen);
int crew__lw_consistent(_Atomic uint64_t *w, uint64_t me);

/* Adaptive spinning. Spinning wins only while the thread we wait for is
 * running; when the CPUs are oversubscribed it burns the time slice that
 * thread needs, and a waiter that sees a hand-off early only collides with
 * the waker on the lock. So each object keeps a hint word (zero-initialised,
 * shared by all its users): bits 7..0 a level 0..CREW__SPIN_LEVEL_MAX,
 * bits 31..8 the time (in ~1 ms units) the level was last raised. The spin
 * budget is CREW__SPIN_NS >> level, and at the top level a waiter does not
 * spin at all (it parks at once, like glibc). A spin that saw the hand-off
 * lowers the level, one that ran out raises it. Once no spin has failed for
 * CREW__SPIN_DECAY_MS, the level falls back to 0: when both sides of a
 * hand-off park, no spin can ever succeed (the other side needs a wake-up
 * first), so only time can tell that the CPUs are free again; under lasting
 * load this costs a few short failed spins every decay period. The hint is
 * advisory (relaxed, racy updates are fine) and never affects correctness,
 * only how long a waiter watches before it sleeps. */
#define CREW__SPIN_LEVEL_MAX 6u /* 0: 20 us ... 5: 625 ns, 6: no spin */
#define CREW__SPIN_DECAY_MS 10u
static inline uint32_t crew__spin_clock(void)
{
    return (uint32_t)(crew__now_ns() >> 20) & 0xffffffu; /* ~1.05 ms units */
}
static inline uint32_t crew__spin_budget(_Atomic uint32_t *hint)
{
    if (!hint)
        return CREW__SPIN_NS;
    uint32_t h = atomic_load_explicit(hint, memory_order_relaxed), lv = h & 0xffu;
    if (lv == 0)
        return CREW__SPIN_NS;
    if (((crew__spin_clock() - (h >> 8)) & 0xffffffu) > CREW__SPIN_DECAY_MS) {
        atomic_store_explicit(hint, 0, memory_order_relaxed);
        return CREW__SPIN_NS;
    }
    return lv >= CREW__SPIN_LEVEL_MAX ? 0 : CREW__SPIN_NS >> lv;
}
static inline void crew__spin_feedback(_Atomic uint32_t *hint, bool seen)
{
    if (!hint)
        return;
    uint32_t h = atomic_load_explicit(hint, memory_order_relaxed), lv = h & 0xffu;
    if (seen && lv > 0)
        atomic_store_explicit(hint, (h & ~0xffu) | (lv - 1), memory_order_relaxed);
    else if (!seen && lv < CREW__SPIN_LEVEL_MAX)
        atomic_store_explicit(hint, crew__spin_clock() << 8 | (lv + 1), memory_order_relaxed);
}
/* Spins while *addr == val, for the hint's budget (none: returns false at
 * once, without feedback). Returns true if the value changed. */
static inline bool crew__spin_adaptive(_Atomic uint32_t *addr, uint32_t val,
                                       _Atomic uint32_t *hint)
{
    uint32_t budget = crew__spin_budget(hint);
    if (budget == 0)
        return atomic_load_explicit(addr, memory_order_acquire) != val;
    bool seen = crew__spin_while_eq(addr, val, budget);
    crew__spin_feedback(hint, seen);
    return seen;
}

/* Spins while the low 32 bits of *w equal val (64-bit words whose low half
 * is a futex: the condition's and the semaphore's). Adaptive like
 * crew__spin_adaptive; hint may be NULL (fixed budget). */
static inline bool crew__spin_low_while_eq(_Atomic uint64_t *w, uint32_t val,
                                           _Atomic uint32_t *hint)
{
    uint32_t budget = crew__spin_budget(hint);
    if (budget == 0)
        return (uint32_t)atomic_load_explicit(w, memory_order_acquire) != val;
    uint64_t start = crew__now_ns();
    bool seen = false;
    for (unsigned i = 1;; i++) {
        if ((uint32_t)atomic_load_explicit(w, memory_order_acquire) != val) {
            seen = true;
            break;
        }
        crew__cpu_relax();
        if ((i & 15) == 0 && crew__now_ns() - start >= budget)
            break;
    }
    crew__spin_feedback(hint, seen);
    return seen;
}

/* The futex half of a 64-bit word (little-endian: its first 4 bytes). */
static inline _Atomic uint32_t *crew__low_half(_Atomic uint64_t *w)
{
    return (_Atomic uint32_t *)(void *)w;
}

/* Sleeps on a futex in slices, so the caller can check liveness between
 * them: the first slice is short, later ones double up to the cap (a
 * blocked waiter wakes ~20 times a second at most). */
#define CREW__SLICE_FIRST_NS 4000000u /* 4 ms */
#define CREW__SLICE_MAX_NS 50000000u  /* 50 ms: the bound on death detection */
/* Returns 0 (woken or value changed or interrupted), CREW_ETIMEDOUT (the
 * real deadline passed) or 1 (only the slice ran out: check liveness).
 * *slice_ns is doubled for the next call. */
int crew__sync_sleep(_Atomic uint32_t *addr, uint32_t val, const crew__deadline *d,
                     uint32_t *slice_ns);

/* For a condition wait over an rlock (cond.c): drop every level the caller
 * holds, saving the count (0; CREW_EPERM not the owner, nothing released;
 * CREW_EINVAL destroyed), and take them all back, waiting forever (the
 * status of crew_rlock_acquire; on 0 and CREW_EOWNERDEAD the count is
 * `saved` again). */
int crew__rlock_release_save(crew_rlock *r, uint32_t *saved);
int crew__rlock_acquire_restore(crew_rlock *r, uint32_t saved);

#endif /* CREW__SYNC_H */
