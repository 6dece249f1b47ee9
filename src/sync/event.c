/*
 * event.c -- crew_event, a flag to wait for.
 *
 * DESIGN
 * One futex word: bit 0 FLAG, bit 1 WAITERS (someone may sleep on the
 * word), bits 31..2 a generation that set() advances each time it raises
 * the flag.
 *
 * set(): one CAS from a word without FLAG to (generation + 1) | FLAG, which
 * also clears WAITERS; if the old word had WAITERS, wake every sleeper. The
 * CAS is set()'s last access to the event's memory (the wake-up is a system
 * call on the address), so a waiter may free the event as soon as its wait
 * returns -- the usual "completion event on the stack" pattern is safe.
 *
 * wait(): a waiter that finds FLAG down remembers the generation, spins a
 * little, then sets WAITERS with a CAS and sleeps on the exact word it
 * wrote. It returns 0 once the generation differs from the remembered one:
 * that is Python's guarantee that a waiter returns True when the flag was
 * set while it waited, even if clear() ran before it woke up.
 *
 * No wake-up is lost: a sleeper sleeps only on a word that has WAITERS set
 * and the old generation; set() must change that word (FUTEX_WAIT then
 * refuses to sleep) and, seeing WAITERS in the value it replaced, wakes the
 * ones already asleep. clear() only drops FLAG and keeps WAITERS.
 *
 * A waiter killed while asleep leaves WAITERS set: the next set() makes one
 * needless system call and clears it.
 */
#include "sync/sync.h"

#include <string.h>

#define EVENT_MAGIC 0x65766e74u /* "evnt" */
#define FLAG 1u
#define WAITERS 2u
#define GEN(w) ((w) >> 2)

typedef struct event_impl {
    _Atomic uint32_t word;
    _Atomic uint32_t magic;
    _Atomic uint32_t spin_hint; /* see crew__spin_budget */
    uint32_t reserved;
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
    _Atomic uint32_t *word = &p->word;
    uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
    do {
        if (w & FLAG)
            return 0; /* already set: its waiters were woken by that set */
    } while (!atomic_compare_exchange_weak_explicit(word, &w, ((w + 4) & ~3u) | FLAG,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    /* From here on the event may already be freed by a woken waiter. */
    if (w & WAITERS)
        crew__futex_wake(word, INT32_MAX);
    return 0;
}

int crew_event_clear(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    atomic_fetch_and_explicit(&ei(e)->word, ~FLAG, memory_order_relaxed);
    return 0;
}

int crew_event_is_set(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    return (int)(atomic_load_explicit(&ei(e)->word, memory_order_acquire) & FLAG);
}

int crew_event_wait(crew_event *e, double timeout)
{
    if (!event_ok(e) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    event_impl *p = ei(e);
    uint32_t w = atomic_load_explicit(&p->word, memory_order_acquire);
    if (w & FLAG)
        return 0;
    if (timeout == 0)
        return CREW_ETIMEDOUT;
    uint32_t gen = GEN(w);
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    (void)crew__spin_adaptive(&p->word, w, &p->spin_hint);
    for (;;) {
        w = atomic_load_explicit(&p->word, memory_order_acquire);
        if (GEN(w) != gen)
            return 0; /* a set() happened since we started */
        if (!(w & WAITERS)) {
            if (!atomic_compare_exchange_weak_explicit(&p->word, &w, w | WAITERS,
                                                       memory_order_acquire,
                                                       memory_order_relaxed))
                continue;
            w |= WAITERS;
        }
        if (crew__futex_wait(&p->word, w, &d) == CREW_ETIMEDOUT)
            return GEN(atomic_load_explicit(&p->word, memory_order_acquire)) != gen
                       ? 0
                       : CREW_ETIMEDOUT;
    }
}

int crew_event_destroy(crew_event *e)
{
    if (!event_ok(e))
        return CREW_EINVAL;
    atomic_store_explicit(&ei(e)->magic, 0, memory_order_relaxed);
    return 0;
}
