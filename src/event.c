/*
 * event.c -- crew_event, a flag to wait for.
 *
 * DESIGN
 * One futex word: bit 0 is the flag, bits 31..1 a generation that set()
 * advances each time it raises the flag. A waiter that finds the flag down
 * sleeps on the exact word it read; set() changes the word (new generation,
 * flag up) and wakes all sleepers if `waiters` says anyone may sleep.
 *
 * Python's guarantee that a waiter returns True when the flag was set while
 * it waited -- even if clear() ran before it woke up -- follows from the
 * generation: the waiter compares the generation, not the flag.
 *
 * No wake-up is lost, by the argument of sem.c: a waiter announces itself in
 * `waiters` (seq_cst) before its last look at the word; set() changes the
 * word (seq_cst) before it reads `waiters`. A killed waiter leaves an extra
 * count in `waiters`: later set() calls make a needless system call, nothing
 * more.
 */
#include "sync.h"

#include <string.h>

#define EVENT_MAGIC 0x65766e74u /* "evnt" */

typedef struct event_impl {
    _Atomic uint32_t word;
    _Atomic uint32_t waiters;
    _Atomic uint32_t magic;
    _Atomic uint32_t spin_hint; /* see crew__spin_budget */
} event_impl;
_Static_assert(sizeof(event_impl) <= sizeof(crew_event), "crew_event too small");

static inline event_impl *ei(crew_event *e) { return (event_impl *)(void *)e; }

static bool event_ok(crew_event *e)
{
    return e && atomic_load_explicit(&ei(e)->magic, memory_order_acquire) == EVENT_MAGIC;
}

int crew_event_init(crew_event *e)
{
    if (!e)
        return CREW_EINVAL;
    memset(e, 0, sizeof *e);
    atomic_store_explicit(&ei(e)->magic, EVENT_MAGIC, memory_order_release);
    return 0;
}

int crew_event_set(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    event_impl *p = ei(e);
    uint32_t w = atomic_load_explicit(&p->word, memory_order_relaxed);
    do {
        if (w & 1)
            return 0; /* already set: waiters were woken by that set */
    } while (!atomic_compare_exchange_weak_explicit(&p->word, &w, (w + 2) | 1,
                                                    memory_order_seq_cst,
                                                    memory_order_relaxed));
    if (atomic_load_explicit(&p->waiters, memory_order_seq_cst) != 0)
        crew__futex_wake(&p->word, INT32_MAX);
    return 0;
}

int crew_event_clear(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    atomic_fetch_and_explicit(&ei(e)->word, ~1u, memory_order_release);
    return 0;
}

int crew_event_is_set(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    return (int)(atomic_load_explicit(&ei(e)->word, memory_order_acquire) & 1);
}

int crew_event_wait(crew_event *e, double timeout)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    event_impl *p = ei(e);
    uint32_t w = atomic_load_explicit(&p->word, memory_order_acquire);
    if (w & 1)
        return 0;
    if (timeout == 0)
        return CREW_ETIMEDOUT;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    if (crew__spin_adaptive(&p->word, w, &p->spin_hint))
        return (atomic_load_explicit(&p->word, memory_order_acquire) >> 1) != (w >> 1)
                   ? 0
                   : crew_event_wait(e, crew__deadline_left(&d));
    int rc = 0;
    atomic_fetch_add_explicit(&p->waiters, 1, memory_order_seq_cst);
    for (;;) {
        uint32_t now = atomic_load_explicit(&p->word, memory_order_seq_cst);
        if ((now >> 1) != (w >> 1))
            break; /* a set() happened since we started */
        if (now != w) {
            w = now; /* only clear() moved it; keep the generation */
            continue;
        }
        if (crew__futex_wait(&p->word, w, &d) == CREW_ETIMEDOUT) {
            now = atomic_load_explicit(&p->word, memory_order_acquire);
            if ((now >> 1) == (w >> 1))
                rc = CREW_ETIMEDOUT;
            break;
        }
    }
    atomic_fetch_sub_explicit(&p->waiters, 1, memory_order_relaxed);
    return rc;
}

int crew_event_destroy(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    atomic_store_explicit(&ei(e)->magic, 0, memory_order_relaxed);
    return 0;
}
