/*
 * ring_impl.h -- what ring.c (the message ring) and ring_tasks.c (its
 * joinable count and message counts) share privately: the once-only reads
 * of shared values, the entry check of every call, the lazy deadline and the
 * event signal. The DESIGN is ring.c's. Never installed.
 */
#ifndef CREW__RING_IMPL_H
#define CREW__RING_IMPL_H

#include "ipc/ring.h"
#include "sync/sync.h"

/* Shared values.
 * Everything in the ring can be rewritten at any moment by any process that
 * maps it (see HOSTILE PEERS above). A value this process acts on is read
 * once (rd32/rd64: a volatile read, so the compiler cannot read it twice and
 * check one copy but use the other), checked, and only then used. */

static inline uint32_t rd32(const void *p) { return *(const volatile uint32_t *)p; }
static inline uint64_t rd64(const void *p) { return *(const volatile uint64_t *)p; }


/* Someone else broke the ring: remember it here, so that a peer clearing
 * the shared flag again does not make the ring usable for us. */
static inline int ring_seen_broken(crew__ring_view *v)
{
    atomic_store_explicit(v->broken, true, memory_order_relaxed);
    return CREW_EPROTO;
}

/* The first step of every call. The constants are not used (the view's
 * copies are), but a header whose constants changed has been written over:
 * nothing else in it can be trusted either. */
static inline int ring_enter(crew__ring_view *v)
{
    if (CREW__UNLIKELY(atomic_load_explicit(v->broken, memory_order_relaxed)))
        return CREW_EPROTO;
    crew__ring *r = v->hdr;
    if (CREW__UNLIKELY(atomic_load_explicit(&r->broken, memory_order_acquire) != 0))
        return ring_seen_broken(v);
    if (CREW__UNLIKELY(rd64(&r->magic) != CREW__RING_MAGIC || rd64(&r->cap) != v->cap ||
                      rd64(&r->max_msg) != v->max_msg || rd32(&r->flags) != v->flags))
        return crew__ring_break(v);
    return 0;
}


/* A deadline computed on first use: reading the clock costs more than a
 * whole uncontended put or get on some virtual machines, so the fast paths
 * never do; the clock starts when a call first has to wait, at most one
 * copy after the call began. */
typedef struct lazy_deadline {
    double timeout;
    bool ready;
    crew__deadline d;
} lazy_deadline;

static inline const crew__deadline *dl(lazy_deadline *l)
{
    if (!l->ready) {
        crew__deadline_init(&l->d, l->timeout);
        l->ready = true;
    }
    return &l->d;
}

static inline void event_signal(_Atomic uint32_t *seq, _Atomic uint32_t *waiters)
{
    /* A read-modify-write of the waiters word, not a fence + load: both
     * sides then order themselves in that one word's modification order
     * (see DESIGN), which C11 and TSan both understand. */
    if (CREW__UNLIKELY(atomic_fetch_add_explicit(waiters, 0, memory_order_seq_cst) != 0)) {
        atomic_fetch_add_explicit(seq, 1, memory_order_release);
        crew__futex_wake(seq, INT32_MAX);
    }
}

#endif /* CREW__RING_IMPL_H */
