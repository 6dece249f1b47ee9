/*
 * ring_tasks.c -- the counts a ring keeps beside its messages: Python's
 * JoinableQueue (task_done / join) and qsize. The ring itself is ring.c;
 * its DESIGN comment ("Joinable", "Message counts") has the protocol.
 *
 * DESIGN (the waiting half). join waits on the "all done" event (done_seq,
 * done_waiters) with the ring's event protocol: a joiner increments
 * done_waiters (seq_cst), loads done_seq, re-checks the count and only then
 * sleeps on done_seq with the value it loaded; task_done decrements the
 * count with a seq_cst RMW and, when that makes it 0, reads done_waiters
 * with an RMW and bumps done_seq and wakes every sleeper if anyone waits.
 * Both RMWs on done_waiters fall in its single modification order, so a
 * joiner either sees the count at 0 or is woken. Every value read from the
 * shared memory may be a hostile peer's: a count that never reaches 0 only
 * makes join time out, and the loop looks at the caller's deadline on every
 * turn, however a peer flips done_seq.
 */
#include "ipc/ring_impl.h"

int crew__ring_task_done(crew__ring_view *v)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    if (!(v->flags & CREW__RING_JOINABLE))
        return CREW_ENOTSUP;
    crew__ring *r = v->hdr;
    uint64_t u = atomic_load_explicit(&r->unfinished, memory_order_relaxed);
    do {
        if (u >> 1 == 0)
            return CREW_ESTATE; /* Python: ValueError, task_done() called too many times */
    } while (!atomic_compare_exchange_weak_explicit(&r->unfinished, &u, u - CREW__RING_ONE_TASK,
                                                    memory_order_seq_cst, memory_order_relaxed));
    if ((u - CREW__RING_ONE_TASK) >> 1 == 0)
        event_signal(&r->done_seq, &r->done_waiters);
    return 0;
}

static bool all_done(crew__ring *r)
{
    return atomic_load_explicit(&r->unfinished, memory_order_seq_cst) >> 1 == 0;
}

int crew__ring_join(crew__ring_view *v, double timeout)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    if (!(v->flags & CREW__RING_JOINABLE))
        return CREW_ENOTSUP;
    crew__ring *r = v->hdr;
    lazy_deadline d = {.timeout = timeout};
    for (;;) {
        if (all_done(r))
            return 0;
        if (atomic_load_explicit(&r->broken, memory_order_acquire))
            return ring_seen_broken(v);
        if (timeout == 0 || crew__deadline_expired(dl(&d)))
            return CREW_ETIMEDOUT;
        atomic_fetch_add_explicit(&r->done_waiters, 1, memory_order_seq_cst);
        uint32_t s = atomic_load_explicit(&r->done_seq, memory_order_seq_cst);
        if (!all_done(r) && !atomic_load_explicit(&r->broken, memory_order_seq_cst))
            (void)crew__futex_wait(&r->done_seq, s, dl(&d)); /* any return: look again */
        atomic_fetch_sub_explicit(&r->done_waiters, 1, memory_order_relaxed);
    }
}

int crew__ring_counts(crew__ring_view *v, uint64_t *messages, uint64_t *unfinished)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    crew__ring *r = v->hdr;
    /* gets before puts: both only grow, so puts read later is not below it
     * for honest peers. The counts can drift by one after a process died
     * between its tail (or head) store and its count store: bounded by what
     * the bytes say, and 0 whenever no byte is queued. */
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t gets = atomic_load_explicit(&r->gets, memory_order_relaxed);
    uint64_t puts = atomic_load_explicit(&r->puts, memory_order_relaxed);
    uint64_t used = t >= h ? t - h : 0, n = puts >= gets ? puts - gets : 0;
    if (used > v->cap)
        used = v->cap;
    if (n > used / CREW__RING_HDR)
        n = used / CREW__RING_HDR;
    if (messages)
        *messages = n;
    if (unfinished)
        *unfinished = (v->flags & CREW__RING_JOINABLE)
                          ? atomic_load_explicit(&r->unfinished, memory_order_relaxed) >> 1
                          : 0;
    return 0;
}
