/*
 * sem.c -- crew_sem, a counting semaphore (bounded or not).
 *
 * DESIGN
 * One 64-bit word: the value in the low half (the futex word) and the
 * number of threads that may be asleep, `nwaiters`, in the high half.
 * Keeping both in one word lets release() learn whether anyone sleeps from
 * the same atomic operation that publishes the new value -- so release()
 * touches the semaphore's memory exactly once, and a waiter may free the
 * semaphore as soon as its acquire returns (a completion semaphore on the
 * stack is safe).
 *
 * acquire(): CAS value -> value-1 while it is positive. Otherwise spin a
 * little, then register (nwaiters + 1), and loop: take a unit and
 * unregister in one CAS if value > 0, else sleep while value == 0. On the
 * deadline, a last attempt to take a unit, else unregister.
 * release(n): CAS value -> value+n (refused above max); if nwaiters was
 * non-zero in the word it replaced, wake n sleepers.
 *
 * No wake-up is lost: all changes are RMWs of one word, so they are totally
 * ordered. A waiter that registered before a release is seen by it and
 * woken (or finds value != 0 and does not sleep: FUTEX_WAIT compares); one
 * that registered after sees the new value. A woken waiter that loses the
 * unit to another thread stays registered and sleeps again; one whose
 * deadline passes tries once more to take a unit before it gives up, so a
 * wake-up is never swallowed while a unit is left.
 *
 * A process killed while asleep leaves nwaiters one too high (later
 * releases make a needless system call). One killed holding a unit does not
 * return it: a semaphore has no owner to check, as in Python and POSIX.
 */
#include "sync/sync.h"

#include <string.h>

#define SEM_MAGIC 0x73656d61u /* "sema" */
#define ONE_WAITER ((uint64_t)1 << 32)
#define VALUE(d) ((uint32_t)(d))

typedef struct sem_impl {
    _Atomic uint64_t data; /* value | nwaiters << 32 */
    uint32_t max;          /* INT32_MAX when unbounded */
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
    atomic_init(&p->data, value);
    p->max = max ? max : INT32_MAX;
    atomic_store_explicit(&p->magic, SEM_MAGIC, memory_order_release);
    return 0;
}

/* Takes a unit if there is one; `unregister` also drops one waiter. */
static bool take(sem_impl *p, uint64_t unregister)
{
    uint64_t d = atomic_load_explicit(&p->data, memory_order_relaxed);
    while (VALUE(d) > 0)
        if (atomic_compare_exchange_weak_explicit(&p->data, &d, d - 1 - unregister,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    return false;
}

int crew_sem_try(crew_sem *s)
{
    if (!sem_ok(s))
        return CREW_EINVAL;
    return take(si(s), 0) ? 0 : CREW_EBUSY;
}

int crew_sem_acquire(crew_sem *s, double timeout)
{
    if (!sem_ok(s) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    sem_impl *p = si(s);
    if (take(p, 0))
        return 0;
    if (timeout == 0)
        return CREW_ETIMEDOUT;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    if (crew__spin_low_while_eq(&p->data, 0, NULL) && take(p, 0))
        return 0;
    atomic_fetch_add_explicit(&p->data, ONE_WAITER, memory_order_relaxed);
    for (;;) {
        if (take(p, ONE_WAITER))
            return 0;
        if (crew__futex_wait(crew__low_half(&p->data), 0, &d) == CREW_ETIMEDOUT) {
            if (take(p, ONE_WAITER))
                return 0;
            atomic_fetch_sub_explicit(&p->data, ONE_WAITER, memory_order_relaxed);
            return CREW_ETIMEDOUT;
        }
    }
}

int crew_sem_release(crew_sem *s, unsigned n)
{
    if (!sem_ok(s) || n == 0)
        return CREW_EINVAL;
    sem_impl *p = si(s);
    uint32_t max = p->max;
    uint64_t d = atomic_load_explicit(&p->data, memory_order_relaxed);
    do {
        if (n > max || VALUE(d) > max - n)
            return CREW_EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(&p->data, &d, d + n, memory_order_release,
                                                    memory_order_relaxed));
    /* From here on the semaphore may already be freed by a woken waiter. */
    if (d >> 32)
        crew__futex_wake(crew__low_half(&p->data), (int)n);
    return 0;
}

int crew_sem_value(crew_sem *s, unsigned *value)
{
    if (!sem_ok(s) || !value)
        return CREW_EINVAL;
    *value = VALUE(atomic_load_explicit(&si(s)->data, memory_order_relaxed));
    return 0;
}

int crew_sem_destroy(crew_sem *s)
{
    if (!sem_ok(s))
        return CREW_EINVAL;
    atomic_store_explicit(&si(s)->magic, 0, memory_order_relaxed);
    return 0;
}
