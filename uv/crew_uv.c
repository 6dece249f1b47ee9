/*
 * crew_uv.c -- the libuv adapter: crew pool completions as loop callbacks.
 *
 * DESIGN
 *
 * Who touches what. Everything in a crew_uv is touched by the loop thread
 * only. Pool workers (threads or processes) never see the adapter: they
 * finish a future, the pool appends it to its completion list and makes the
 * completion fd readable. The loop thread sees the fd through a uv_poll_t,
 * pops the futures (crew_pool_completions, non-blocking) and runs callbacks.
 * The only state shared across threads is the registry of live adapters used
 * by crew_uv_owns_handle(), under `registry_lock` (never held while calling
 * anything else).
 *
 * One record per submitted task (struct rec), in a doubly linked list of
 * records not yet delivered. A record is the future's user_data, so a popped
 * future leads straight to its record. Delivering a record = unlink it, run
 * its callback, destroy the future, free the record: exactly once, because
 * only delivery unlinks, and both paths that deliver (the poll callback and
 * crew_uv_close) take records from the list (or from the completion list,
 * whose futures are all in our list until delivered).
 *
 * Wake-up protocol. The completion fd is level-triggered from libuv's point of
 * view: it stays readable while completions wait. The poll callback pops in
 * batches of BATCH until a pop returns fewer than asked, at which point the
 * pool has cleared the fd under its own lock (a completion that lands after
 * that sets it again, so none is lost). To keep the loop fair to other
 * handles, one poll callback delivers at most MAX_PER_WAKE completions; if
 * more wait, the fd is still readable and libuv calls us again next turn.
 *
 * Re-entrancy. A callback may submit more work (appends to the list) or call
 * crew_uv_close(). Close delivers every record still in the list itself,
 * including ones the poll callback already popped into its local batch but
 * has not delivered yet (they are done, so they get their real status). After
 * each callback the poll callback therefore checks `closing` and, if set,
 * returns at once without touching its batch again. The adapter's memory is
 * freed only from the uv_close callback, which libuv runs on a later loop
 * turn, so `cu` stays valid until the poll callback has returned.
 *
 * Destroyed handles. crew_uv_close destroys the futures of tasks still
 * running; such a future may later pass through the completion list on its
 * way to being freed. crew_future_user_data() returns NULL for a destroyed
 * handle, and those entries are skipped: they were delivered
 * already, as CREW_ECANCELED.
 *
 * Crashes. A worker that dies is the pool's business: the pool completes the
 * future with CREW_ECRASHED (or CREW_ETIMEDOUT after a deadline kill) and it
 * reaches us like any other completion. A crash of the loop process itself
 * takes the adapter with it; there is nothing shared to recover.
 */
#include "crew_uv.h"

#include <pthread.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#define BATCH 64
#define MAX_PER_WAKE 1024

/* Invariants whose breakage means a future that is not ours came out of the
 * completion list (someone else notifies on this pool): stop, loudly. */
#define CREW_UV_CHECK(cond)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "crew_uv: %s:%d: invariant failed: %s\n",         \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

struct rec {
    struct rec *prev, *next;
    crew_uv *cu;
    crew_future *f;
    crew_uv_done_cb cb;
    void *data;
};

struct crew_uv {
    uv_poll_t poll; /* first: the handle's data points back to us anyway */
    uv_loop_t *loop;
    crew_pool *pool;
    struct rec head; /* sentinel of the undelivered list */
    size_t pending;
    int closing;
    crew_uv_close_cb close_cb;
    void *close_data;
    crew_uv *reg_prev, *reg_next; /* registry of live adapters */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static crew_uv *registry;

static void registry_add(crew_uv *cu)
{
    pthread_mutex_lock(&registry_lock);
    cu->reg_prev = NULL;
    cu->reg_next = registry;
    if (registry)
        registry->reg_prev = cu;
    registry = cu;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(crew_uv *cu)
{
    pthread_mutex_lock(&registry_lock);
    if (cu->reg_prev)
        cu->reg_prev->reg_next = cu->reg_next;
    else
        registry = cu->reg_next;
    if (cu->reg_next)
        cu->reg_next->reg_prev = cu->reg_prev;
    pthread_mutex_unlock(&registry_lock);
}

int crew_uv_owns_handle(const uv_handle_t *h)
{
    int found = 0;
    pthread_mutex_lock(&registry_lock);
    for (crew_uv *cu = registry; cu && !found; cu = cu->reg_next)
        found = (const uv_handle_t *)&cu->poll == h;
    pthread_mutex_unlock(&registry_lock);
    return found;
}

/* libuv errors are -errno too; the ones crew names keep their crew code. */
static int from_uv(int uverr) { return uverr == UV_EEXIST ? CREW_EBUSY : uverr; }

static void unlink_rec(struct rec *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->cu->pending--;
}

/* Deliver one record: it leaves the list first, so a re-entrant close never
 * sees it again. The future is destroyed after the callback whatever state it
 * is in: a still-running task finishes and its result is dropped. */
static void deliver(struct rec *r, int status)
{
    unlink_rec(r);
    crew_future *f = r->f;
    r->cb(r->cu, f, status, r->data);
    crew_future_destroy(f);
    free(r);
}

static void on_closed(uv_handle_t *h)
{
    crew_uv *cu = h->data;
    crew_uv_close_cb cb = cu->close_cb;
    void *data = cu->close_data;
    free(cu);
    if (cb)
        cb(data);
}

/* Pops and delivers up to `limit` completions; returns how many it delivered,
 * or -1 if a callback closed the adapter and `in_close` is false (cu must
 * then not be used for anything but reading `closing`, which the caller
 * already did). crew_uv_close drains with in_close set: closing is already
 * set there and it goes on to the end. */
static long drain(crew_uv *cu, long limit, bool in_close)
{
    long done = 0;
    while (done < limit) {
        crew_future *batch[BATCH];
        size_t n = 0;
        if (crew_pool_completions(cu->pool, batch, BATCH, &n) != 0 || n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            struct rec *r = crew_future_user_data(batch[i]);
            if (!r)
                continue; /* a destroyed handle: see "Destroyed handles" above */
            CREW_UV_CHECK(r->f == batch[i] && r->prev != NULL);
            deliver(r, crew_future_status(batch[i]));
            done++;
            if (cu->closing && !in_close)
                return -1;
        }
        if (n < BATCH)
            break;
    }
    return done;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    crew_uv *cu = h->data;
    (void)status;
    (void)events;
    /* On a poll error (which an eventfd does not produce) popping is still
     * the right thing: it is non-blocking and clears the fd when empty. */
    if (!cu->closing)
        drain(cu, MAX_PER_WAKE, false);
}

int crew_uv_create(crew_uv **out, uv_loop_t *loop, crew_pool *pool)
{
    if (!out || !loop || !pool)
        return CREW_EINVAL;
    int fd = crew_pool_fd(pool);
    if (fd < 0)
        return fd;
    crew_uv *cu = calloc(1, sizeof *cu);
    if (!cu)
        return CREW_ENOMEM;
    cu->loop = loop;
    cu->pool = pool;
    cu->head.prev = cu->head.next = &cu->head;
    int rc = uv_poll_init(loop, &cu->poll, fd);
    if (rc != 0) {
        free(cu);
        return from_uv(rc);
    }
    cu->poll.data = cu;
    rc = uv_poll_start(&cu->poll, UV_READABLE, on_poll);
    if (rc != 0) {
        /* The handle is initialised: it must go through uv_close. */
        cu->closing = 1;
        uv_close((uv_handle_t *)&cu->poll, on_closed);
        return from_uv(rc);
    }
    registry_add(cu);
    *out = cu;
    return 0;
}

int crew_uv_submit(crew_uv *cu, crew_task_fn fn, const void *arg, size_t arg_len,
                   crew_uv_done_cb cb, void *data, crew_future **fut_out)
{
    if (!cu || !fn || !cb)
        return CREW_EINVAL;
    if (cu->closing)
        return CREW_ECLOSED;
    struct rec *r = calloc(1, sizeof *r);
    if (!r)
        return CREW_ENOMEM;
    crew_future *f = NULL;
    int rc = crew_pool_submit(cu->pool, fn, arg, arg_len, &f);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->cu = cu;
    r->f = f;
    r->cb = cb;
    r->data = data;
    /* Linked before notify: the pool may complete it at once, and the record
     * must be in the list by the time the loop pops it (the loop is this
     * thread, so "by the time" is simply "before we return"). */
    r->prev = cu->head.prev;
    r->next = &cu->head;
    cu->head.prev->next = r;
    cu->head.prev = r;
    cu->pending++;
    rc = crew_future_notify(f, r);
    if (rc != 0) {
        /* Cannot be delivered through the fd: undo. The task may run; its
         * result is dropped with the handle. */
        unlink_rec(r);
        crew_future_cancel(f);
        crew_future_destroy(f);
        free(r);
        return rc;
    }
    if (fut_out)
        *fut_out = f;
    return 0;
}

size_t crew_uv_pending(const crew_uv *cu) { return cu ? cu->pending : 0; }
crew_pool *crew_uv_pool(const crew_uv *cu) { return cu ? cu->pool : NULL; }
uv_loop_t *crew_uv_loop(const crew_uv *cu) { return cu ? cu->loop : NULL; }

int crew_uv_close(crew_uv *cu, crew_uv_close_cb close_cb, void *data)
{
    if (!cu)
        return CREW_EINVAL;
    if (cu->closing)
        return CREW_ECLOSED;
    cu->closing = 1;
    cu->close_cb = close_cb;
    cu->close_data = data;
    registry_remove(cu);
    uv_poll_stop(&cu->poll);

    /* Ask everything still out there to stop: queued tasks end CREW_ECANCELED
     * now, running process tasks lose their worker, running thread tasks see
     * crew_task_cancelled(). */
    for (struct rec *r = cu->head.next; r != &cu->head; r = r->next)
        if (!crew_future_done(r->f))
            crew_future_cancel(r->f);

    /* Pop what the pool has queued for us so the completion list holds none
     * of our futures once they are destroyed. Callbacks run from here may not
     * submit (closing is set) but may do anything else. */
    drain(cu, LONG_MAX, true); /* records an interrupted poll callback had
                                  popped are no longer listed: handled below */

    /* What remains either finished after the pop above, or was popped by an
     * interrupted poll callback, or is still running (a thread task that has
     * not looked at its cancel flag, a process task whose kill is still in
     * progress). Each gets its callback now: the real status if done, else
     * CREW_ECANCELED. */
    while (cu->head.next != &cu->head) {
        struct rec *r = cu->head.next;
        deliver(r, crew_future_done(r->f) ? crew_future_status(r->f) : CREW_ECANCELED);
    }

    uv_close((uv_handle_t *)&cu->poll, on_closed);
    return 0;
}
