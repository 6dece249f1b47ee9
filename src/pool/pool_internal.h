/*
 * pool_internal.h -- the contract between the pool core (public API,
 * futures, wait_all/any, callbacks, completion fd, map driver, stats: the
 * files pool_core.h lists) and its backends (threads: pool_threads.c and
 * threads_*.c; processes: pool_processes.c and proc_*.c). The backend
 * contract proper is crew__pool_ops below. Never installed.
 *
 * Who owns what
 * -------------
 *  - The core allocates every crew_future (from per-thread free lists), fills
 *    fn / arg / id, and hands it to ops->submit. From then on the backend owns
 *    the "running" side of the future until it calls crew__future_complete()
 *    exactly once that wins (a second, racing call loses harmlessly: it
 *    returns CREW_ESTATE and must not touch the future again).
 *  - The user owns the handle side (wait, read, destroy). The memory is freed
 *    only when both sides have let go: the handle by crew_future_destroy, the
 *    backend by completing. So a backend may keep using f until it completes
 *    it, even if the user already destroyed the handle -- and must not touch
 *    f after a winning crew__future_complete().
 *  - The pool struct outlives crew_pool_destroy while futures remain: the
 *    core frees it when the last future is released.
 *
 * Future state word (f->state, a futex word)
 * ------------------------------------------
 *   bits 0-1  phase: QUEUED -> RUNNING -> COMPLETING -> DONE
 *             (QUEUED -> COMPLETING directly for cancel-before-run)
 *   WAITERS   a thread is (about to be) parked on f->state: the completer
 *             must futex-wake f->state after publishing DONE
 *   WORKER_WAIT a pool worker is waiting on f while helping: the
 *             completer must also wake parked workers (ops->wake_helpers)
 *   CANCEL    cancellation requested (cooperative flag for running tasks)
 *   HAS_CB / NOTIFY  a callback / completion-list mark is set (slow path)
 *   DROPPED   the user destroyed the handle
 *   RELEASED  the backend released the future (after DONE and callbacks)
 *   A future is freed by whichever of DROPPED / RELEASED is set second.
 *
 * Process backend: the fast wait path
 * -----------------------------------
 *  ops->wait, if not NULL, is called by crew_future_wait / wait_all / wait_any
 *  (for one future at a time) when f is not yet DONE. It must return 0 only
 *  once crew__future_done(f) is true (i.e. it or someone else completed f),
 *  or CREW_ETIMEDOUT when the deadline passes. It exists so the waiting
 *  thread can spin on a word in shared memory and complete the future itself
 *  (no hop through a monitor thread): spin on the slot's done word, copy the
 *  result out, call crew__future_complete(); if that returns CREW_ESTATE the
 *  monitor won the race, which is fine. It may also simply park on f->state
 *  with crew__future_park() after its spin budget. The core counts callers
 *  inside ops->wait (p->hook_users) and crew_pool_destroy waits for that
 *  count to drop to 0 before calling ops->destroy; the backend's shutdown
 *  completes every future first, so those waits return promptly.
 *
 * Map
 * ---
 *  A map is one user-visible future (f->map != NULL) plus a crew__map that
 *  describes the work. ops->submit_map(p, m) starts it; the backend claims
 *  ranges of items with crew__map_claim() (guided chunking, or the fixed
 *  chunk_size), runs fn for each item of the range and reports each range
 *  with crew__map_done_range(). The core completes the map future when all n
 *  items are reported (statuses, first failure, progress are kept by the
 *  core). Items never run because of cancel/shutdown are reported with
 *  crew__map_done_range(..., CREW_ECANCELED) -- crew__map_cancel_rest() does
 *  that for everything not yet claimed.
 *   - Threads: m->in / m->out are used in place.
 *   - Processes: the child cannot see parent heap memory. The backend copies
 *     the input records of a claimed range into shared memory and the output
 *     records back -- except a side that lies inside a live crew_shm region
 *     (map_start sets m->in_shm / m->out_shm from the shm registry): workers
 *     get that region's fd from the parent on first use (see "Regions" in
 *     pool_processes.c), map it and read the inputs / write the outputs
 *     there in place, no copy. Item statuses come back through the shm slot.
 *     A worker crash fails only the items of the
 *     range it was running: report that range with CREW_ECRASHED and a
 *     crew_failure (first_item/n_items are filled in by the core).
 *
 * Zero-copy submit (crew_pool_submit_shm)
 * ---------------------------------------
 *  The core fills f->arg / arg_len with the region's bytes (this process's
 *  mapping: thread pools use them in place), keeps a crew__shm_arg in
 *  f->arg_inline (the core flag FL_ARG_SHM says so) and calls
 *  ops->submit_shm(p, f), or ops->submit when the backend has none.
 *
 * crew_task
 * ---------
 *  The context passed to every task call. Backends fill it; crew_task_*()
 *  in pool.c read it. `cancel` points at a word whose `cancel_mask` bits mean
 *  "stop": for threads it is the future's state word (CANCEL bit), for
 *  processes whatever shm word the backend likes (or NULL).
 */
#ifndef CREW__POOL_INTERNAL_H
#define CREW__POOL_INTERNAL_H

#include "core/internal.h"

#include <pthread.h>

/* ------------------------------------------------------------ future */
#define CREW__F_PHASE 3u
#define CREW__F_QUEUED 0u
#define CREW__F_RUNNING 1u
#define CREW__F_COMPLETING 2u
#define CREW__F_DONE 3u
#define CREW__F_WAITERS (1u << 2)
#define CREW__F_WORKER_WAIT (1u << 3)
#define CREW__F_CANCEL (1u << 4)
#define CREW__F_HAS_CB (1u << 5)
#define CREW__F_NOTIFY (1u << 6)
#define CREW__F_DROPPED (1u << 7)
#define CREW__F_RELEASED (1u << 8)
#define CREW__F_ANYWAIT (1u << 9)   /* crew_wait_any waiters listed in ext (slow path) */
#define CREW__F_INTERNAL (1u << 10) /* a backend-private future (no user handle) */
#define CREW__F_EXT (1u << 11)      /* f->ext is set (so freeing reads only line 0) */

#define CREW__FUTURE_MAGIC 0x46757475u /* "Futu" */
#define CREW__FUTURE_DEAD 0xdeadf00du

/* Inline storage: arguments and results up to these sizes need no malloc. */
#define CREW__ARG_INLINE 56
#define CREW__RES_INLINE 32

typedef struct crew__map crew__map;
typedef struct crew__future_ext crew__future_ext;

struct crew_future {
    /* first cache line: everything a worker touches for a small task */
    _Atomic uint32_t state;     /* see above; futex word */
    _Atomic uint32_t magic;     /* CREW__FUTURE_MAGIC while the handle is live (relaxed) */
    uint64_t id;
    crew_task_fn fn;
    crew_pool *pool;
    union {
        const void *arg;        /* points at arg_inline or a heap copy */
        struct crew_future *free_next; /* core: free-list link while unused */
    };
    uint32_t arg_len;
    int32_t status;             /* final status, valid once DONE */
    uint32_t res_len;
    uint32_t flags;             /* core-private (heap arg, ...) */
    crew__map *map;             /* non-NULL for a map future */
    /* second line: an empty task never touches it */
    void *res;                  /* heap result when res_len > RES_INLINE; NULL otherwise */
    struct crew_future *next;   /* queue link (backend; not cleared at submit) */
    _Atomic(crew__future_ext *) ext; /* slow-path data (core), allocated on demand; NULL otherwise */
    uintptr_t backend[2];       /* free for the backend (slot, worker, ...); not cleared */
    unsigned char arg_inline[CREW__ARG_INLINE];
    unsigned char res_inline[CREW__RES_INLINE];
} __attribute__((aligned(CREW__CACHELINE)));

/* Data that most futures never need. Allocated by the core. */
struct crew__future_ext {
    crew_future_cb cb;
    void *cb_data;
    void *user_data;            /* crew_future_notify */
    struct crew_future *notify_next;
    crew_failure failure;       /* valid once DONE when has_failure */
    int has_failure;
    pthread_mutex_t lock;       /* guards anyw (crew_wait_any) */
    struct crew__anywaiter *anyw;
};

/* ------------------------------------------------------------ task context */
struct crew_task {
    crew_pool *pool;            /* thread pools; NULL in a process worker */
    crew_future *future;        /* thread pools: the running future (map: the map future) */
    const _Atomic uint32_t *cancel; /* may be NULL */
    uint32_t cancel_mask;
    const _Atomic uint32_t *pool_cancel; /* nonzero: stop (shutdown/destroy); may be NULL */
    int worker;
    uint64_t deadline_ns;       /* 0: none (threads: task_timeout) */
    int timed_out;              /* set by crew_task_cancelled when it sees the deadline */
    crew_shm *shm;              /* process workers: their handle of the arg's region, or NULL
                                   (thread pools leave it NULL: crew_task_shm looks at future) */
};

/* f->arg_inline of a crew_pool_submit_shm future: the region as the
 * submitter gave it (the caller keeps it alive until the future is done). */
typedef struct crew__shm_arg {
    crew_shm *region;
    size_t off, len;
} crew__shm_arg;
_Static_assert(sizeof(crew__shm_arg) <= CREW__ARG_INLINE, "shm arg descriptor too big");

/* ------------------------------------------------------------ map */
struct crew__map {
    crew_task_fn fn;
    const unsigned char *in;
    size_t in_size;
    unsigned char *out;
    size_t out_size;
    size_t n;
    size_t chunk_size;          /* 0: guided */
    int *statuses;              /* user's array or NULL */
    crew_future *future;        /* the map's future: alive until the map
                                   completes, so a helper that may still run
                                   after that (a claim racing a cancel)
                                   reads `pool`, never future->pool */
    crew_pool *pool;            /* outlives every helper (destroy joins them) */
    _Atomic size_t next;        /* next unclaimed item */
    _Atomic size_t done;        /* items reported */
    _Atomic size_t n_failed;
    _Atomic size_t first_fail;  /* lowest failed index, SIZE_MAX if none */
    _Atomic int first_fail_status;
    _Atomic uint32_t cancel;    /* 1: stop claiming (cancel / shutdown) */
    pthread_mutex_t fail_lock;  /* guards failure (rare path) */
    crew_failure failure;       /* details of the lowest failed item's failure */
    _Atomic uint32_t refs;      /* the map future's hold + one per backend holder */
    uintptr_t backend[2];       /* free for the backend */
    crew_shm *in_shm, *out_shm; /* live region holding all of in / out, or NULL (map_start) */
};

/* A backend that keeps using m after the last crew__map_done_range of its
 * own holds a reference: crew__map_ref() before handing m to a helper,
 * crew__map_unref() when the helper is finished with m (it may be freed). */
static inline void crew__map_ref(crew__map *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}
static inline void crew__map_unref(crew__map *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&m->fail_lock);
        crew__free(m);
    }
}

/* Claims the next range of items: returns false when none is left (or the
 * map was cancelled). Thread-safe (a CAS on m->next). */
bool crew__map_claim(crew__map *m, size_t *first, size_t *count);
/* Reports items [first, first+count) as done. statuses: per-item statuses
 * (NULL = all `status`). failure: details for a crash/timeout of this range
 * (NULL otherwise). Completes the map future when the last item is in. Must
 * be called exactly once per claimed item. Thread-safe. */
void crew__map_done_range(crew__map *m, size_t first, size_t count, const int *statuses,
                          int status, const crew_failure *failure);
/* The failed items of a reported range by class, as crew_pool_stats counts
 * them (the core counts map items, not the map future: a map of n items
 * adds n to `submitted` and each item's outcome to one of the other
 * counters). crew__map_tally_add classifies one status < 0. */
typedef struct crew__map_tally {
    size_t failed;              /* any other negative status (the task's own) */
    size_t crashed;             /* CREW_ECRASHED */
    size_t timed_out;           /* CREW_ETIMEDOUT */
    size_t canceled;            /* CREW_ECANCELED */
} crew__map_tally;
static inline void crew__map_tally_add_n(crew__map_tally *t, int status, size_t n)
{
    switch (status) {
    case CREW_ECRASHED: t->crashed += n; break;
    case CREW_ETIMEDOUT: t->timed_out += n; break;
    case CREW_ECANCELED: t->canceled += n; break;
    default: t->failed += n; break;
    }
}
static inline void crew__map_tally_add(crew__map_tally *t, int status)
{
    crew__map_tally_add_n(t, status, 1);
}
/* The same when the backend kept its own tally of the range: t counts its
 * failed items by class (NULL: none failed; the others succeeded), the
 * lowest of them is first_fail with first_fail_status (ignored when none
 * failed). Per-item statuses must already be in m->statuses. */
void crew__map_done_tally(crew__map *m, size_t first, size_t count, const crew__map_tally *t,
                          size_t first_fail, int first_fail_status, const crew_failure *failure);
/* Claims every unclaimed item and reports it CREW_ECANCELED. */
void crew__map_cancel_rest(crew__map *m);

/* ------------------------------------------------------------ backends */
/*
 * crew__pool_ops: the whole contract between the core and a backend. The
 * core reaches a backend only through p->ops (it names no backend
 * function), and a backend never looks at p->ops to find out which kind of
 * pool it serves: a hook is called only for the pools it was created for.
 * The one place that names the backends is the kind -> ops table in
 * create.c, which nothing else calls. A new backend (MPI, adaptive sizing)
 * is a table of these hooks plus one line there.
 *
 * Threads: "any thread" means any thread of the process that created the
 * pool -- a user thread, a task of this or another pool, a done callback
 * (crew__pool_in_callback(p) tells), the backend's own threads. No core
 * lock is held when a hook is called, so a hook may call back into the core:
 * crew__future_complete*, crew__map_*, crew__future_park, and the public
 * API.
 *
 * Lifetime: create, then any mix of the others, then shutdown(p, 1) and
 * destroy once. p->life (enum crew__pool_life) says how far teardown got:
 * the core calls wait / cancel / stats only while it is CREW__POOL_LIVE;
 * submit hooks may still be entered by a submit that passed its p->shut
 * check just before shutdown, so destroy must complete whatever such a
 * submit left queued. Every hook may be called from several threads at
 * once unless its comment says otherwise.
 *
 * Optional hooks may be NULL (a designated initializer leaves them so);
 * the comment on each says what the core does then.
 */
typedef struct crew__pool_ops {
    const char *name;           /* "threads", "processes": for messages */
    /* Set p->backend and start workers. Called once, from the thread in
     * crew_pool_create, before p is visible to anyone else; p->opts holds
     * the normalised options (defaults filled in; opts points at them).
     * Return 0, or an error with nothing left running (the core then frees
     * p without calling any other hook). Required. */
    int (*create)(crew_pool *p, const crew_pool_options *opts);
    /* Queue f (phase QUEUED; fn, arg, arg_len and id are set). Any thread;
     * this is the hot path of crew_pool_submit: no allocation or lock in the
     * steady state if the backend can help it. Return 0 (the backend now
     * holds f until it completes it), or an error (then the core frees f and
     * returns the error to the caller: CREW_EAGAIN, CREW_EBROKEN,
     * CREW_ESHUTDOWN...). Required. */
    int (*submit)(crew_pool *p, crew_future *f);
    /* Start the map m (its future is m->future, already QUEUED; see "Map"
     * at the top). Any thread. Return 0 or an error as submit (the core
     * frees the map and its future). NULL: maps fail CREW_ENOTSUP. */
    int (*submit_map)(crew_pool *p, crew__map *m);
    /* Cancel f (or a map future). The core has already set the CANCEL bit
     * on f->state while f was not yet claimed for completion, so whatever
     * status f is completed with, it ends CREW_ECANCELED (see
     * crew__future_complete_final): this hook only hurries the end.
     * Queued: complete it CREW_ECANCELED now. Running: request a stop. The
     * return value is ignored (crew_future_cancel already knows it won).
     * Any thread, only while p->life is LIVE. NULL: a task runs to its
     * end and then ends CREW_ECANCELED. */
    int (*cancel)(crew_pool *p, crew_future *f);
    /* Fast wait of a thread that is not one of p's workers (see "Process
     * backend: the fast wait path" at the top): return 0 once
     * crew__future_done(f), or CREW_ETIMEDOUT once the deadline d passed.
     * Any thread, only while p->life is LIVE: the core counts the caller in
     * p->hook_users for the whole call and destroy waits for that count to
     * drop to 0 before destroy(p), so shutdown must make these calls
     * return (by completing every future). crew_wait_all enters it once
     * for a whole array of p's futures, calling it in turn. It may be
     * re-entered on the same thread (a task it runs waits too). NULL: the
     * core parks on f->state (crew__future_park). */
    int (*wait)(crew_pool *p, crew_future *f, const crew__deadline *d);
    /* Stop accepting (the core set p->shut first, so submit returns
     * CREW_ESHUTDOWN from then on), cancel queued work if asked, and wait
     * until nothing is queued or running -- unless called from a task of
     * this pool, or from a done callback of one of its futures
     * (crew__pool_in_callback(p)): then return after the non-waiting part
     * (a backend that does so sets shutdown_in_callback; without it the
     * core runs this hook on a thread of its own in that case, see
     * crew_pool_shutdown). Any thread, any number of times, also
     * concurrently (each later call may ask for the cancel the earlier one
     * did not). NULL: shutdown only sets p->shut. */
    int (*shutdown)(crew_pool *p, int cancel_pending);
    /* After shutdown(p, 1): join/reap everything and free backend state.
     * Called once, from the thread in crew_pool_destroy, with p->life
     * CLOSING and no thread left inside wait. Every future must be complete
     * when this returns. NULL: nothing to free. */
    void (*destroy)(crew_pool *p);
    /* Fill backend counters (crashed, workers_*, broken...); the core fills
     * submitted/completed/failed/timed_out/canceled itself and the hook
     * adds its own counts to them. Any thread, only while p->life is LIVE;
     * a racing snapshot may lag, never lead. NULL: none. */
    void (*stats)(crew_pool *p, crew_pool_stats *st);
    /* Queue a crew_pool_submit_shm future (see "Zero-copy submit"); errors
     * as submit. NULL: the core calls submit (f->arg is usable in place). */
    int (*submit_shm)(crew_pool *p, crew_future *f);

    /* Backends whose tasks run on threads of this process, and whose
     * workers run other work while they wait (the thread backend). All four
     * NULL for a backend whose tasks run elsewhere (processes). */

    /* Is the calling thread running a task of p right now -- as one of its
     * workers, or as any other thread that runs p's tasks while it waits
     * (wait above)? Any thread, lock-free and cheap (a thread-local read).
     * The core refuses crew_pool_destroy there (CREW_EDEADLK) and does not
     * enter wait once for a whole crew_wait_all array. NULL: never. */
    bool (*in_task)(const crew_pool *p);
    /* Is the calling thread one of p's own worker threads? Any thread,
     * cheap. If so, a wait forever on a future of p calls help_wait instead
     * of wait, and a wait with a deadline parks (crew__future_park): a task
     * the worker picked up could run past any deadline. NULL: never (and
     * then help_wait is never called). */
    bool (*is_worker)(const crew_pool *p);
    /* A worker of p waits forever on f, a future of p: run other work of p
     * until f is done. Called on that worker's thread, from inside a task
     * it runs (its stack nests tasks), so it must not wait for its own
     * pool to go idle. To park, set CREW__F_WORKER_WAIT on f->state with an
     * RMW and re-read the phase (pool_internal.h's state word); the
     * completer then calls wake_helpers. Returns 0 (or CREW_ETIMEDOUT if d
     * passes). Required if is_worker is set. */
    int (*help_wait)(crew_pool *p, crew_future *f, const crew__deadline *d);
    /* The completer of f found CREW__F_WORKER_WAIT in the flags that its
     * DONE RMW returned: wake the workers parked on f in help_wait. Called
     * by whichever thread completed f (a worker, a waiter, a canceller),
     * from crew__future_complete*, after DONE is published and with no
     * lock held. f may already be freed and even reused by then (its
     * waiter saw DONE and dropped it): compare the pointer, never read
     * through it; a spurious wake-up must be harmless. Required if
     * help_wait is set. */
    void (*wake_helpers)(crew_pool *p, crew_future *f);

    /* The backend counts the tasks it accepted (ops->submit returned 0)
     * itself and adds them to st->submitted in its stats hook, so the
     * core's submit path bumps no shared counter; the core counts maps. */
    bool counts_submits;
    /* ops->shutdown honours crew__pool_in_callback(p) (does not wait). */
    bool shutdown_in_callback;
} crew__pool_ops;

/* The backends' tables: named only by create.c. */
extern const crew__pool_ops crew__pool_threads_ops;
extern const crew__pool_ops crew__pool_processes_ops;

/* ------------------------------------------------------------ pool */
/* How far a pool's teardown got (p->life). Moves only forward, one step
 * at a time, and only the core moves it. */
enum crew__pool_life {
    /* crew_pool_create returned it: every hook may be called. */
    CREW__POOL_LIVE = 0,
    /* crew_pool_destroy has shut the pool down and is taking the backend
     * apart (set by destroy's thread before it waits for p->hook_users to
     * drain): the core enters no more wait / cancel / stats hooks,
     * crew_pool_fd refuses, freed futures no longer go to thread caches.
     * The backend's state still exists until ops->destroy returns. */
    CREW__POOL_CLOSING = 1,
    /* crew_pool_destroy has returned (set by its thread, under alloc_lock,
     * at the very end): no backend is left, only futures still out (lent >
     * 0) keep the pool's memory alive. Whichever thread brings lent to 0
     * under alloc_lock frees it -- possibly destroy's own thread at once. */
    CREW__POOL_CLOSED = 2,
    /* The thread that found CLOSED with lent == 0 under alloc_lock claimed
     * the memory (exactly one does) and frees it: nobody reads p again. */
    CREW__POOL_FREED = 3,
};

struct crew_pool {
    const crew__pool_ops *ops;
    void *backend;
    /* Normalised (crew_pool_create filled in the defaults): opts.workers is
     * the pool's one worker count -- crew_pool_workers, guided map chunking
     * and the backends read it here. */
    crew_pool_options opts;
    uint64_t pool_id;           /* process-unique, never reused */
    _Atomic uint32_t shut;      /* 1 after shutdown started */
    _Atomic uint32_t life;      /* enum crew__pool_life */
    _Atomic uint32_t hook_users;/* threads inside ops->wait */
    /* crew_pool_shutdown from a done callback on a backend without
     * shutdown_in_callback: the thread that runs ops->shutdown instead
     * (joined by crew_pool_destroy); cb_shut_state is pool.c's CB_SHUT_*
     * (none, running, finished, closed), all three under cb_shut_lock. */
    pthread_mutex_t cb_shut_lock;
    int cb_shut_state, cb_shut_cancel;
    pthread_t cb_shut_thread;

    /* counters kept by the core at completion (relaxed) */
    _Atomic uint64_t n_completed, n_failed, n_timed_out, n_canceled, n_crashed;
    _Atomic uint64_t next_id __attribute__((aligned(CREW__CACHELINE))); /* ids: pool_id << 40 | n */
    _Atomic uint64_t n_submitted; /* maps, and tasks unless ops->counts_submits */

    /* completion list (crew_future_notify) */
    pthread_mutex_t notify_lock __attribute__((aligned(CREW__CACHELINE)));
    crew_future *notify_head, *notify_tail;
    int notify_fd;              /* eventfd, -1 until crew_pool_fd */
    int notify_signalled;

    /* future allocator: see future_alloc.c */
    pthread_mutex_t alloc_lock;
    crew_future *free_list;     /* under alloc_lock */
    void **slabs;               /* under alloc_lock */
    size_t n_slabs, cap_slabs;
    _Atomic int64_t lent;       /* futures not in free_list (in use or in thread caches) */
    struct crew_pool *reg_next, *reg_prev; /* registry of pools whose memory is alive */
};

/* ------------------------------------------------------------ core helpers */

/* Ends f with `status`, copying len bytes of result (from `result`; may be
 * NULL if len is 0) into f and the failure details if given. Runs the
 * callback, queues it for notification, wakes waiters, updates the counters,
 * and releases the backend's hold on f (f may be freed before this returns:
 * do not touch it afterwards). Returns 0 if this call completed f, or
 * CREW_ESTATE if f was already completing/done (nothing changed). Thread-safe.
 * Any thread of the owning process (worker, monitor, waiter). */
int crew__future_complete(crew_future *f, int status, const void *result, size_t len,
                          const crew_failure *failure);
/* The same with flags:
 *  CREW__C_KEEP     do not release the backend's hold (f is still linked in
 *                   a backend queue, e.g. cancelled while queued): the backend
 *                   calls crew__future_release(f) when it unlinks it.
 *  CREW__C_NOCOUNT  the backend counts the outcome itself (its stats hook
 *                   adds completed/failed/... to the core's). */
#define CREW__C_KEEP 1u
#define CREW__C_NOCOUNT 2u
#define CREW__C_QUEUED 4u /* claim f only if it is still QUEUED (cancel before run) */
/* The caller already moved f to COMPLETING itself (a thread worker, the
 * only completer of its running task) and settled the status, CANCEL bit
 * included: skip the claim. */
#define CREW__C_CLAIMED 8u
int crew__future_complete_ex(crew_future *f, int status, const void *result, size_t len,
                             const crew_failure *failure, unsigned flags);
/* The same, and *final (if not NULL; set only when this call completed f)
 * receives the status f ended with: `status`, or CREW_ECANCELED when a
 * cancel was accepted first (the CANCEL bit: crew_future_cancel returned 0),
 * or CREW_ENOMEM when the result could not be stored. For a backend that
 * counts outcomes itself (CREW__C_NOCOUNT). */
int crew__future_complete_final(crew_future *f, int status, const void *result, size_t len,
                                const crew_failure *failure, unsigned flags, int *final);
/* Is the calling thread running a done callback of a future of p (set by
 * the core around the callback call)? crew_pool_shutdown must not wait
 * there, crew_pool_destroy refuses (CREW_EDEADLK). */
bool crew__pool_in_callback(const crew_pool *p);
/* Releases the backend's hold of a DONE future (after CREW__C_KEEP, or for
 * an INTERNAL future the backend is finished with); may free it. */
void crew__future_release(crew_future *f);
/* A future for the backend's own use (map helpers): QUEUED, INTERNAL and
 * already DROPPED, fn NULL; the backend frees it with crew__future_release
 * after setting its phase with crew__future_complete_ex or directly. NULL on
 * ENOMEM. */
crew_future *crew__future_alloc_internal(crew_pool *p);

/* QUEUED -> RUNNING. false if f was cancelled (or otherwise completed)
 * first: then the caller must just drop it (the canceller completed it). */
static inline bool crew__future_start(crew_future *f)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    while ((s & CREW__F_PHASE) == CREW__F_QUEUED) {
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | CREW__F_RUNNING,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

static inline bool crew__future_done(const crew_future *f)
{
    return (atomic_load_explicit(&((crew_future *)f)->state, memory_order_acquire) &
            CREW__F_PHASE) == CREW__F_DONE;
}

/* Sets the CANCEL bit; returns the state before. */
static inline uint32_t crew__future_request_cancel(crew_future *f)
{
    return atomic_fetch_or_explicit(&f->state, CREW__F_CANCEL, memory_order_acq_rel);
}

/* Parks the calling thread until f is done or the deadline passes (spins
 * first). Returns 0 or CREW_ETIMEDOUT. For backends' wait hooks. */
int crew__future_park(crew_future *f, const crew__deadline *d);


/* Binds the calling thread's future cache to p (worker threads call it at
 * start so that futures they free go back to a cache, lock-free). */
void crew__tcache_bind(crew_pool *p);

#endif /* CREW__POOL_INTERNAL_H */
