/*
 * sem.c -- crew_sem, a counting semaphore (bounded or not).
 *
 * DESIGN
 * `value` is the futex word; `waiters` counts threads that may be asleep on
 * it, only to spare release() the wake-up system call when nobody waits.
 *
 * Acquire: CAS value -> value-1 while it is positive. Otherwise spin a
 * little, then increment waiters, re-check, sleep while value == 0,
 * decrement waiters. Release: CAS value -> value+n (refused above max), then
 * wake n sleepers if waiters > 0.
 *
 * No wake-up is lost: a sleeper increments waiters (seq_cst) before its
 * final check of value and sleeps only while value is still 0 (FUTEX_WAIT
 * compares atomically); a releaser makes value positive (seq_cst) before it
 * reads waiters. Either the sleeper's check sees the new value, or the
 * releaser sees the waiter and wakes it.
 *
 * A process killed while asleep leaves one extra count in waiters (a harmless
 * extra system call later). One killed holding a unit does not return it: a
 * semaphore has no owner to check, as in Python and POSIX.
 */
#include "sync.h"

#include <string.h>

#define SEM_MAGIC 0x73656d61u /* "sema" */

typedef struct sem_impl {
    _Atomic uint32_t value;
    _Atomic uint32_t waiters;
    uint32_t max; /* 0: unbounded (INT32_MAX) */
    _Atomic uint32_t magic;
} sem_impl;
_Static_assert(sizeof(sem_impl) <= sizeof(crew_sem), "crew_sem too small");

static inline sem_impl *si(crew_sem *s) { return (sem_impl *)(void *)s; }

static bool sem_ok(crew_sem *s)
{
    return s && atomic_load_explicit(&si(s)->magic, memory_order_acquire) == SEM_MAGIC;
}

int crew_sem_init(crew_sem *s, unsigned value, unsigned max)
{
    if (!s || value > INT32_MAX || max > INT32_MAX || (max && value > max))
        return CREW_EINVAL;
    memset(s, 0, sizeof *s);
    sem_impl *p = si(s);
    atomic_init(&p->value, value);
    p->max = max ? max : INT32_MAX;
    atomic_store_explicit(&p->magic, SEM_MAGIC, memory_order_release);
    return 0;
}

static bool take(sem_impl *p)
{
    uint32_t v = atomic_load_explicit(&p->value, memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak_explicit(&p->value, &v, v - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    return false;
}

int crew_sem_try(crew_sem *s)
{
    if (!sem_ok(s))
        return CREW_EINVAL;
    return take(si(s)) ? 0 : CREW_EBUSY;
}

int crew_sem_acquire(crew_sem *s, double timeout)
{
    if (!sem_ok(s))
        return CREW_EINVAL;
    sem_impl *p = si(s);
    if (take(p))
        return 0;
    if (timeout == 0)
        return CREW_ETIMEDOUT;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    if (crew__spin_while_eq(&p->value, 0, CREW__SPIN_NS) && take(p))
        return 0;
    int rc = 0;
    atomic_fetch_add_explicit(&p->waiters, 1, memory_order_seq_cst);
    for (;;) {
        if (take(p))
            break;
        if (atomic_load_explicit(&p->value, memory_order_seq_cst) != 0)
            continue;
        int r = crew__futex_wait(&p->value, 0, &d);
        if (r == CREW_ETIMEDOUT) {
            if (take(p))
                break;
            rc = CREW_ETIMEDOUT;
            break;
        }
    }
    atomic_fetch_sub_explicit(&p->waiters, 1, memory_order_relaxed);
    return rc;
}

int crew_sem_release(crew_sem *s, unsigned n)
{
    if (!sem_ok(s) || n == 0)
        return CREW_EINVAL;
    sem_impl *p = si(s);
    uint32_t v = atomic_load_explicit(&p->value, memory_order_relaxed);
    do {
        if (n > p->max || v > p->max - n)
            return CREW_EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(&p->value, &v, v + n, memory_order_seq_cst,
                                                    memory_order_relaxed));
    if (atomic_load_explicit(&p->waiters, memory_order_seq_cst) != 0)
        crew__futex_wake(&p->value, n > INT32_MAX ? INT32_MAX : (int)n);
    return 0;
}

int crew_sem_value(crew_sem *s, unsigned *value)
{
    if (!sem_ok(s) || !value)
        return CREW_EINVAL;
    *value = atomic_load_explicit(&si(s)->value, memory_order_relaxed);
    return 0;
}

int crew_sem_destroy(crew_sem *s)
{
    if (!sem_ok(s))
        return CREW_EINVAL;
    atomic_store_explicit(&si(s)->magic, 0, memory_order_relaxed);
    return 0;
}
