/*
 * pool_internal.h -- the contract between the pool core (src/pool.c: public
 * API, futures, wait_all/any, callbacks, completion fd, map driver, stats)
 * and its backends (src/pool_threads.c, src/pool_processes.c). Never
 * installed.
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
 *   WORKER_WAIT a thread-pool worker is waiting on f while helping: the
 *             completer must also wake parked workers (crew__threads_wake_helpers)
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
#ifndef CREW_POOL_INTERNAL_H
#define CREW_POOL_INTERNAL_H

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
} __attribute__((aligned(CREW_CACHELINE)));

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
    crew_future *future;        /* the map's future */
    int workers;                /* for guided chunking */
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
void crew__map_ref(crew__map *m);
void crew__map_unref(crew__map *m);

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
typedef struct crew__pool_ops {
    const char *name;
    /* Set p->backend and start workers. opts are already normalised (defaults
     * filled in). Return 0 or an error (then nothing is left running). */
    int (*create)(crew_pool *p, const crew_pool_options *opts);
    /* Queue f (phase QUEUED). Return 0, or an error (then the core frees f and
     * returns the error to the caller: CREW_EAGAIN, CREW_EBROKEN,
     * CREW_ESHUTDOWN...). */
    int (*submit)(crew_pool *p, crew_future *f);
    /* Start the map m (its future is m->future, already QUEUED). */
    int (*submit_map)(crew_pool *p, crew__map *m);
    /* Cancel f (or a map future). The core has already set the CANCEL bit
     * on f->state while f was not yet claimed for completion, so whatever
     * status f is completed with, it ends CREW_ECANCELED (see
     * crew__future_complete_final): this hook only hurries the end.
     * Queued: complete it CREW_ECANCELED now. Running: request a stop. The
     * return value is ignored (crew_future_cancel already knows it won). */
    int (*cancel)(crew_pool *p, crew_future *f);
    /* Optional fast wait (see the comment at the top); NULL: the core parks
     * on f->state. */
    int (*wait)(crew_pool *p, crew_future *f, const crew__deadline *d);
    /* Stop accepting (the core already returns CREW_ESHUTDOWN from submit
     * after this), cancel queued work if asked, and wait until nothing is
     * queued or running -- unless called from a task of this pool, or from
     * a done callback of one of its futures (crew__pool_in_callback(p)):
     * then return after the non-waiting part (a backend that does so sets
     * shutdown_in_callback; see crew_pool_shutdown in pool.c for the others). */
    int (*shutdown)(crew_pool *p, int cancel_pending);
    /* After shutdown(p, 1): join/reap everything and free backend state.
     * Every future must be complete when this returns. */
    void (*destroy)(crew_pool *p);
    /* Fill backend counters (crashed, workers_*, broken...); the core fills
     * submitted/completed/failed/timed_out/canceled itself. May be NULL. */
    void (*stats)(crew_pool *p, crew_pool_stats *st);
    /* Queue a crew_pool_submit_shm future (see "Zero-copy submit"); errors
     * as submit. NULL: the core calls submit (f->arg is usable in place). */
    int (*submit_shm)(crew_pool *p, crew_future *f);
    /* The backend counts the tasks it accepted (ops->submit returned 0)
     * itself and adds them to st->submitted in its stats hook, so the
     * core's submit path bumps no shared counter; the core counts maps. */
    bool counts_submits;
    /* ops->shutdown honours crew__pool_in_callback(p) (does not wait). */
    bool shutdown_in_callback;
} crew__pool_ops;

extern const crew__pool_ops crew__pool_threads_ops;
extern const crew__pool_ops crew__pool_processes_ops;

/* ------------------------------------------------------------ pool */
struct crew_pool {
    const crew__pool_ops *ops;
    void *backend;
    crew_pool_options opts;     /* normalised */
    int workers;
    uint64_t pool_id;           /* process-unique, never reused */
    _Atomic uint32_t shut;      /* 1 after shutdown started */
    _Atomic uint32_t destroyed; /* 1 once crew_pool_destroy ran */
    _Atomic uint32_t hook_users;/* threads inside ops->wait */
    /* crew_pool_shutdown from a done callback on a backend without
     * shutdown_in_callback: the thread that runs ops->shutdown instead
     * (joined by crew_pool_destroy); cb_shut_state 0 none, 1 started. */
    pthread_mutex_t cb_shut_lock;
    int cb_shut_state, cb_shut_cancel;
    pthread_t cb_shut_thread;

    /* counters kept by the core at completion (relaxed) */
    _Atomic uint64_t n_completed, n_failed, n_timed_out, n_canceled, n_crashed;
    _Atomic uint64_t next_id __attribute__((aligned(CREW_CACHELINE))); /* ids: pool_id << 40 | n */
    _Atomic uint64_t n_submitted; /* maps, and tasks unless ops->counts_submits */

    /* completion list (crew_future_notify) */
    pthread_mutex_t notify_lock __attribute__((aligned(CREW_CACHELINE)));
    crew_future *notify_head, *notify_tail;
    int notify_fd;              /* eventfd, -1 until crew_pool_fd */
    int notify_signalled;

    /* future allocator: see pool.c */
    pthread_mutex_t alloc_lock;
    crew_future *free_list;     /* under alloc_lock */
    size_t free_count;
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

/* Backend-side view of a future's arguments. */
static inline const void *crew__future_arg(const crew_future *f) { return f->arg; }
static inline size_t crew__future_arg_len(const crew_future *f) { return f->arg_len; }

/* Binds the calling thread's future cache to p (worker threads call it at
 * start so that futures they free go back to a cache, lock-free). */
void crew__tcache_bind(crew_pool *p);

/* ------------------------------------------------------------ thread backend hooks used by the core */
/* Is the calling thread a worker of p? Returns its index or -1. */
int crew__threads_worker_index(const crew_pool *p);
/* Is the calling thread running a task of p right now (as a worker, or as
 * an outside thread that helps while it waits)? */
bool crew__threads_in_task(const crew_pool *p);
/* A worker of a thread pool is waiting on f: run other work until f is
 * done or the deadline passes. Returns 0 or CREW_ETIMEDOUT. */
int crew__threads_help_wait(crew_pool *p, crew_future *f, const crew__deadline *d);
/* f (with WORKER_WAIT set) completed: wake workers parked in help_wait. */
void crew__threads_wake_helpers(crew_pool *p, crew_future *f);

#endif /* CREW_POOL_INTERNAL_H */
