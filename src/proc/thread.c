/*
 * thread.c -- crew_thread: start, join (with a timeout), detach, destroy.
 *
 * DESIGN
 * A crew_thread is one heap block shared by two parties: the owner (whoever
 * holds the handle) and the thread itself. It carries a reference count of 2
 * at start; the thread drops its reference when its function has returned,
 * crew_thread_destroy() drops the owner's. Whoever drops the last one frees
 * the block, which is what lets a detached thread outlive its handle and a
 * handle outlive its (detached) thread. The hot path -- start plus a join
 * that waits forever -- is one allocation, pthread_create and pthread_join:
 * no extra system call, so it costs what raw pthreads cost.
 *
 * Join with a finite timeout cannot use pthread_timedjoin_np (it measures
 * CLOCK_REALTIME). Instead the thread announces the end of its function on
 * the futex word `done`: 0 running, 1 finished, 2 running with a timed
 * joiner asleep. The joiner moves 0 -> 2 and sleeps while the word is 2;
 * the thread exchanges the word to 1 and wakes only if it saw 2, so the
 * common case pays no wake-up. Once done == 1 the thread is at most a few
 * instructions from exiting, and pthread_join collects it.
 *
 * `state` arbitrates between joiners, detach and destroy: JOINABLE ->
 * JOINING (one joiner at a time; a timed-out join goes back to JOINABLE) ->
 * JOINED, or JOINABLE -> DETACHED. A thread that ends through pthread_exit
 * or cancellation still sets `done` (a cleanup handler does it), so timed
 * joins see it too.
 */
#include "core/internal.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>

enum { JOINABLE, JOINING, JOINED, DETACHED };

struct crew_thread {
    pthread_t pt;
    crew_thread_fn fn;
    void *arg;
    _Atomic uint32_t done;
    _Atomic int state;
    _Atomic int refs;
    char name[16];
};

static void thread_unref(crew_thread *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        crew__free(t);
}

static void thread_finished(void *p)
{
    crew_thread *t = p;
    if (atomic_exchange_explicit(&t->done, 1, memory_order_acq_rel) == 2)
        crew__futex_wake(&t->done, INT32_MAX);
    thread_unref(t); /* t may be gone from here on */
}

static void *trampoline(void *p)
{
    crew_thread *t = p;
    if (t->name[0])
        (void)prctl(PR_SET_NAME, t->name, 0, 0, 0);
    void *r;
    pthread_cleanup_push(thread_finished, t);
    r = t->fn(t->arg);
    pthread_cleanup_pop(1);
    return r;
}

int crew_thread_start(crew_thread **out, crew_thread_fn fn, void *arg,
                      const crew_thread_options *opts)
{
    if (!out || !fn)
        return CREW_EINVAL;
    crew_thread *t = crew__malloc(sizeof *t);
    if (!t)
        return CREW_ENOMEM;
    t->fn = fn;
    t->arg = arg;
    atomic_init(&t->done, 0);
    atomic_init(&t->state, JOINABLE);
    atomic_init(&t->refs, 2);
    t->name[0] = 0;
    pthread_attr_t attr, *ap = NULL;
    if (opts) {
        if (opts->name) {
            strncpy(t->name, opts->name, sizeof t->name - 1);
            t->name[sizeof t->name - 1] = 0;
        }
        if (opts->stack_size) {
            if (opts->stack_size < (size_t)PTHREAD_STACK_MIN) {
                crew__free(t);
                return CREW_EINVAL;
            }
            pthread_attr_init(&attr);
            ap = &attr;
            int e = pthread_attr_setstacksize(&attr, opts->stack_size);
            if (e) {
                pthread_attr_destroy(&attr);
                crew__free(t);
                return -e;
            }
        }
    }
    int e = pthread_create(&t->pt, ap, trampoline, t);
    if (ap)
        pthread_attr_destroy(ap);
    if (e) {
        crew__free(t);
        /* glibc reports a stack it cannot map as EAGAIN too; ENOMEM would
         * be the same "resource limit" to the caller. */
        return e == ENOMEM ? CREW_EAGAIN : -e;
    }
    *out = t;
    return 0;
}

/* Claims the right to join; JOINING must be released by the caller. */
static int claim_join(crew_thread *t)
{
    int s = JOINABLE;
    if (atomic_compare_exchange_strong_explicit(&t->state, &s, JOINING, memory_order_acq_rel,
                                                memory_order_acquire))
        return 0;
    return s == JOINING ? CREW_EBUSY : CREW_ESTATE;
}

int crew_thread_join(crew_thread *t, double timeout, void **result)
{
    if (!t || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    if (pthread_equal(t->pt, pthread_self()))
        return CREW_EDEADLK;
    int rc = claim_join(t);
    if (rc)
        return rc;
    if (timeout >= 0 && atomic_load_explicit(&t->done, memory_order_acquire) != 1) {
        crew__deadline d;
        crew__deadline_init(&d, timeout);
        if (timeout > 0) /* a thread about to end is seen in ~0.3 us this way */
            (void)crew__spin_while_eq(&t->done, 0, CREW__SPIN_NS);
        for (;;) {
            uint32_t v = atomic_load_explicit(&t->done, memory_order_acquire);
            if (v == 1)
                break;
            if (v == 0 && !atomic_compare_exchange_strong_explicit(
                              &t->done, &v, 2, memory_order_acq_rel, memory_order_acquire))
                continue;
            if (crew__futex_wait(&t->done, 2, &d) == CREW_ETIMEDOUT &&
                atomic_load_explicit(&t->done, memory_order_acquire) != 1) {
                atomic_store_explicit(&t->state, JOINABLE, memory_order_release);
                return CREW_ETIMEDOUT;
            }
        }
    }
    void *r = NULL;
    int e = pthread_join(t->pt, &r);
    CREW__ASSERT(e == 0);
    if (r == PTHREAD_CANCELED)
        r = NULL;
    atomic_store_explicit(&t->state, JOINED, memory_order_release);
    if (result)
        *result = r;
    return 0;
}

int crew_thread_detach(crew_thread *t)
{
    if (!t)
        return CREW_EINVAL;
    int rc = claim_join(t);
    if (rc)
        return rc;
    int e = pthread_detach(t->pt);
    CREW__ASSERT(e == 0);
    atomic_store_explicit(&t->state, DETACHED, memory_order_release);
    return 0;
}

int crew_thread_destroy(crew_thread *t)
{
    if (!t)
        return CREW_EINVAL;
    int s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (s != DETACHED && s != JOINED && pthread_equal(t->pt, pthread_self()))
        return CREW_EDEADLK;
    if (s == JOINING)
        return CREW_EBUSY;
    if (s == JOINABLE) {
        int rc = crew_thread_join(t, CREW_FOREVER, NULL);
        if (rc)
            return rc;
    }
    thread_unref(t);
    return 0;
}

uint32_t crew_thread_self_id(void) { return crew__tid(); }
