/*
 * pool.c -- the pool core: the public pool API, futures, wait_all/any,
 * callbacks, the completion fd, the map driver and stats. The backends
 * (pool_threads.c, pool_processes.c) run tasks; see pool_internal.h for the
 * contract and docs/DESIGN.md for the whole picture.
 *
 * DESIGN
 *
 * Futures. One crew_future is the whole life of a task: the job the backend
 * queues (fn, the argument copied inline or on the heap) and the handle the
 * user waits on (state word, status, result inline or on the heap). Its
 * state word (pool_internal.h) is the only synchronisation between the
 * completing side and the waiting side:
 *   - completion claims the future (phase -> COMPLETING) with one CAS, so of
 *     two racing completers (a process pool's monitor and a spinning waiter,
 *     or a cancel and a worker) exactly one writes the result;
 *   - it then publishes DONE with one fetch_or that also returns the flags
 *     saying whom to wake (WAITERS: futex waiters on f->state; WORKER_WAIT:
 *     thread-pool workers helping while they wait; ANYWAIT: crew_wait_any
 *     waiters listed in f->ext). A waiter sets its flag with an RMW and then
 *     re-reads the phase, so either the completer sees the flag or the waiter
 *     sees DONE: no lost wake-up.
 *   - the flags that need the completer to touch f after DONE (callback,
 *     notify, any-waiters) may only be set before COMPLETING; a caller that
 *     finds COMPLETING spins until DONE (a few stores away) and acts on a
 *     done future itself. So when none of them is set the completer can
 *     publish DONE and RELEASED in the same RMW and never look at f again.
 *   - memory is freed by whoever sets the second of DROPPED (user) and
 *     RELEASED (backend).
 *
 * Allocation. Futures come from 64-future slabs owned by the pool, handed
 * out through a per-thread cache (one pool at a time per thread, up to
 * CACHE_MAX futures) so that submit and destroy need no lock and no malloc:
 * a thread refills from / spills to the pool's free list under alloc_lock in
 * O(1) batches (see "free batches"). `lent` counts futures outside the pool's free list (in
 * use or in thread caches); the pool's memory is freed when it has been
 * destroyed and lent drops to 0. A thread's cache is given back when the
 * thread switches pools, exits (pthread key destructor) or destroys the
 * pool. Cross-pool give-back goes through a registry of live pool memory
 * (registry_lock -> alloc_lock is the lock order) keyed by a never-reused
 * pool id, so a stale cache never touches freed memory.
 *
 * Lock order: registry_lock -> p->alloc_lock; p->notify_lock and
 * ext->lock are leaves.
 */
#include "pool/pool_internal.h"
#include "ipc/shm_internal.h"

#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SLAB_FUTURES 64
#define CACHE_MAX 512

/* core-private f->flags */
#define FL_ARG_HEAP 1u
#define FL_RES_HEAP 2u

static _Atomic uint64_t g_next_pool_id = 1;

/* ------------------------------------------------------------ registry */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static crew_pool *registry_head;

static void registry_add(crew_pool *p)
{
    pthread_mutex_lock(&registry_lock);
    p->reg_prev = NULL;
    p->reg_next = registry_head;
    if (registry_head)
        registry_head->reg_prev = p;
    registry_head = p;
    pthread_mutex_unlock(&registry_lock);
}

/* Caller holds registry_lock. */
static void registry_remove_locked(crew_pool *p)
{
    if (p->reg_prev)
        p->reg_prev->reg_next = p->reg_next;
    else
        registry_head = p->reg_next;
    if (p->reg_next)
        p->reg_next->reg_prev = p->reg_prev;
}

static crew_pool *registry_find_locked(uint64_t id)
{
    for (crew_pool *p = registry_head; p; p = p->reg_next)
        if (p->pool_id == id)
            return p;
    return NULL;
}

/* Frees the pool's memory. Caller made sure: destroyed, lent == 0, and the
 * pool is already out of the registry. */
static void pool_memory_free(crew_pool *p)
{
    for (size_t i = 0; i < p->n_slabs; i++)
        crew__free(p->slabs[i]);
    crew__free(p->slabs);
    pthread_mutex_destroy(&p->alloc_lock);
    pthread_mutex_destroy(&p->notify_lock);
    pthread_mutex_destroy(&p->cb_shut_lock);
    crew__free(p);
}

/* Called with p->alloc_lock held after lent may have dropped to 0. Unlocks
 * it. Frees the pool when it is destroyed and nothing is lent. */
static void alloc_unlock_maybe_free(crew_pool *p)
{
    bool gone = atomic_load(&p->life) == CREW__POOL_CLOSED && atomic_load(&p->lent) == 0;
    if (gone)
        atomic_store(&p->life, CREW__POOL_FREED); /* exactly one thread moves it */
    pthread_mutex_unlock(&p->alloc_lock);
    if (gone) {
        pthread_mutex_lock(&registry_lock);
        registry_remove_locked(p);
        pthread_mutex_unlock(&registry_lock);
        pool_memory_free(p);
    }
}

/* ------------------------------------------------------------ free batches
 * The pool's free list is a stack of batches (chains of futures linked by
 * ->free_next); a batch's first future keeps the next batch and the batch's
 * length in its (then unused) backend[] words, so moving a batch between a
 * thread cache and the pool is O(1) under alloc_lock. */

static void push_batch_locked(crew_pool *p, crew_future *head, size_t n)
{
    head->backend[0] = (uintptr_t)p->free_list;
    head->backend[1] = n;
    p->free_list = head;
    p->free_count += n;
}

static crew_future *pop_batch_locked(crew_pool *p, uint32_t *n)
{
    crew_future *head = p->free_list;
    if (head) {
        p->free_list = (crew_future *)head->backend[0];
        *n = (uint32_t)head->backend[1];
        p->free_count -= *n;
    }
    return head;
}

/* ------------------------------------------------------------ thread cache */

typedef struct tcache {
    uint64_t pool_id;
    crew_pool *pool;
    crew_future *head;          /* the stack futures are taken from and freed to */
    uint32_t n;                 /* its length, < CACHE_MAX / 2 after a free */
    crew_future *spare;         /* a full batch of CACHE_MAX / 2, or NULL */
    bool keyed;
    /* A block of future ids of `pool`, taken with one atomic add per
     * ID_BLOCK submits: an id is unique, not a submission counter. */
    uint64_t id_next, id_end;
} tcache;

static __thread tcache tc CREW__TLS_IE;
static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;

/* Gives the calling thread's cache back to its pool (if that pool's memory
 * still exists: otherwise the futures went with it). */
static void tcache_flush(tcache *c)
{
    if (c->spare) {
        /* one list: the spare batch below the stack */
        crew_future *last = c->spare;
        if (c->head) {
            last = c->head;
            while (last->free_next)
                last = last->free_next;
            last->free_next = c->spare;
            c->spare = c->head;
        }
        c->head = c->spare;
        c->n += CACHE_MAX / 2;
        c->spare = NULL;
    }
    if (c->n > 0) {
        pthread_mutex_lock(&registry_lock);
        crew_pool *p = registry_find_locked(c->pool_id);
        if (p) {
            pthread_mutex_lock(&p->alloc_lock);
            push_batch_locked(p, c->head, c->n);
            atomic_fetch_sub(&p->lent, (int64_t)c->n);
            bool gone = atomic_load(&p->life) == CREW__POOL_CLOSED && atomic_load(&p->lent) == 0;
            if (gone) {
                atomic_store(&p->life, CREW__POOL_FREED);
                registry_remove_locked(p);
            }
            pthread_mutex_unlock(&p->alloc_lock);
            pthread_mutex_unlock(&registry_lock);
            if (gone)
                pool_memory_free(p);
        } else {
            pthread_mutex_unlock(&registry_lock);
        }
    }
    c->head = NULL;
    c->n = 0;
    c->pool = NULL;
    c->pool_id = 0;
}

static void tcache_destructor(void *arg)
{
    (void)arg;
    tcache_flush(&tc);
}

static void tcache_key_init(void) { pthread_key_create(&tc_key, tcache_destructor); }

/* Allocates a slab under alloc_lock; returns its futures as a list. */
static crew_future *slab_new_locked(crew_pool *p)
{
    if (p->n_slabs == p->cap_slabs) {
        size_t cap = p->cap_slabs ? p->cap_slabs * 2 : 16;
        void **s = crew__realloc(p->slabs, cap * sizeof *s);
        if (!s)
            return NULL;
        p->slabs = s;
        p->cap_slabs = cap;
    }
    unsigned char *raw = crew__malloc(SLAB_FUTURES * sizeof(crew_future) + CREW_CACHELINE);
    if (!raw)
        return NULL;
    p->slabs[p->n_slabs++] = raw;
    crew_future *base =
        (crew_future *)(((uintptr_t)raw + CREW_CACHELINE - 1) & ~(uintptr_t)(CREW_CACHELINE - 1));
    for (int i = 0; i < SLAB_FUTURES; i++) {
        atomic_init(&base[i].magic, CREW__FUTURE_DEAD);
        atomic_init(&base[i].ext, NULL);
        base[i].res = NULL;
        base[i].next = NULL;
        base[i].free_next = i + 1 < SLAB_FUTURES ? &base[i + 1] : NULL;
    }
    return base;
}

void crew__tcache_bind(crew_pool *p)
{
    if (tc.pool_id == p->pool_id)
        return;
    tcache_flush(&tc);
    if (!tc.keyed) {
        pthread_once(&tc_once, tcache_key_init);
        pthread_setspecific(tc_key, &tc);
        tc.keyed = true;
    }
    tc.pool_id = p->pool_id;
    tc.pool = p;
    tc.id_next = tc.id_end = 0;
}

static crew_future *future_alloc_slow(crew_pool *p)
{
    crew__tcache_bind(p);
    if (tc.spare) {
        crew_future *f = tc.spare;
        tc.spare = NULL;
        tc.head = f->free_next;
        tc.n = CACHE_MAX / 2 - 1;
        return f;
    }
    pthread_mutex_lock(&p->alloc_lock);
    uint32_t n = 0;
    crew_future *head = pop_batch_locked(p, &n);
    if (!head) {
        head = slab_new_locked(p);
        if (!head) {
            pthread_mutex_unlock(&p->alloc_lock);
            return NULL;
        }
        n = SLAB_FUTURES;
    }
    atomic_fetch_add(&p->lent, (int64_t)n);
    pthread_mutex_unlock(&p->alloc_lock);
    tc.head = head;
    tc.n = n;
    crew_future *f = tc.head;
    tc.head = f->free_next;
    tc.n--;
    return f;
}

static inline crew_future *future_alloc(crew_pool *p)
{
    crew_future *f;
    if (CREW_LIKELY(tc.pool_id == p->pool_id && tc.head != NULL)) {
        f = tc.head;
        tc.head = f->free_next;
        tc.n--;
    } else {
        f = future_alloc_slow(p);
        if (!f)
            return NULL;
    }
    atomic_store_explicit(&f->state, CREW__F_QUEUED, memory_order_relaxed);
    atomic_store_explicit(&f->magic, CREW__FUTURE_MAGIC, memory_order_relaxed);
    /* Only the first cache line is written: res, next and ext (second
     * line) are kept NULL while the future is free. */
    f->pool = p;
    f->arg = f->arg_inline;
    f->arg_len = 0;
    f->status = 0;
    f->res_len = 0;
    f->flags = 0;
    f->map = NULL;
    return f;
}

/* The next id for a future of p; the calling thread's cache is bound to p
 * (future_alloc just did it). */
#define ID_BLOCK 256
static inline uint64_t take_id(crew_pool *p)
{
    if (CREW_UNLIKELY(tc.id_next == tc.id_end)) {
        tc.id_next = atomic_fetch_add_explicit(&p->next_id, ID_BLOCK, memory_order_relaxed);
        tc.id_end = tc.id_next + ID_BLOCK;
    }
    return tc.id_next++;
}

static void map_free(crew__map *m);
static void notify_unlink(crew_future *f);

/* Returns f's memory to the pool (both holds are gone). */
static void future_free(crew_future *f)
{
    crew_pool *p = f->pool;
    /* Both holds are gone: nobody else writes f now, one load of the state
     * serves every check, and a small task takes the single branch. */
    const uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (CREW_LIKELY(!(s & (CREW__F_NOTIFY | CREW__F_EXT)) && !f->flags && !f->map)) {
        atomic_store_explicit(&f->magic, CREW__FUTURE_DEAD, memory_order_relaxed);
    } else {
        if (s & CREW__F_NOTIFY)
            notify_unlink(f);
        atomic_store_explicit(&f->magic, CREW__FUTURE_DEAD, memory_order_relaxed);
        if (f->flags & FL_ARG_HEAP)
            crew__free((void *)f->arg);
        if (f->flags & FL_RES_HEAP) {
            crew__free(f->res);
            f->res = NULL;
        }
        if (s & CREW__F_EXT) {
            crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_relaxed);
            pthread_mutex_destroy(&x->lock);
            crew__free(x);
            atomic_store_explicit(&f->ext, NULL, memory_order_relaxed);
        }
        if (f->map != NULL && !(s & CREW__F_INTERNAL))
            crew__map_unref(f->map);
    }
    if (CREW_LIKELY(tc.pool_id == p->pool_id) &&
        atomic_load_explicit(&p->life, memory_order_relaxed) == CREW__POOL_LIVE) {
        f->free_next = tc.head;
        tc.head = f;
        if (++tc.n < CACHE_MAX / 2)
            return;
        /* The stack is a full batch now: it becomes the spare, and the
         * spare before it (if any) goes back to the pool -- O(1), no walk
         * down the list. (A stack refilled from a bigger pool batch keeps
         * its extra futures in the spare: at most one batch's worth.) */
        crew_future *old = tc.spare;
        uint32_t old_n = CACHE_MAX / 2;
        tc.spare = tc.head;
        if (tc.n > CACHE_MAX / 2) {
            /* rare: cut the stack to a batch of CACHE_MAX / 2 */
            crew_future *last = tc.head;
            for (uint32_t i = 1; i < CACHE_MAX / 2; i++)
                last = last->free_next;
            tc.head = last->free_next;
            last->free_next = NULL;
            tc.n -= CACHE_MAX / 2;
            if (old == NULL) {
                old = tc.head; /* hand the rest to the pool */
                old_n = tc.n;
            } else {
                old_n = CACHE_MAX / 2;
            }
        } else {
            tc.head = NULL;
            tc.n = 0;
        }
        if (old) {
            if (old == tc.head) {
                tc.head = NULL;
                tc.n = 0;
            }
            pthread_mutex_lock(&p->alloc_lock);
            push_batch_locked(p, old, old_n);
            atomic_fetch_sub(&p->lent, (int64_t)old_n);
            alloc_unlock_maybe_free(p);
        }
        return;
    }
    if (tc.pool_id == p->pool_id) /* pool destroyed: give the cache back too */
        tcache_flush(&tc);
    pthread_mutex_lock(&p->alloc_lock);
    f->free_next = NULL;
    push_batch_locked(p, f, 1);
    atomic_fetch_sub(&p->lent, 1);
    alloc_unlock_maybe_free(p);
}


crew_future *crew__future_alloc_internal(crew_pool *p)
{
    crew_future *f = future_alloc(p);
    if (f)
        atomic_store_explicit(&f->state, CREW__F_QUEUED | CREW__F_INTERNAL | CREW__F_DROPPED,
                              memory_order_relaxed);
    return f;
}

/* ------------------------------------------------------------ ext */

static crew__future_ext *ext_get(crew_future *f)
{
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    if (x)
        return x;
    crew__future_ext *n = crew__calloc(1, sizeof *n);
    if (!n)
        return NULL;
    pthread_mutex_init(&n->lock, NULL);
    if (atomic_compare_exchange_strong_explicit(&f->ext, &x, n, memory_order_acq_rel,
                                                memory_order_acquire)) {
        atomic_fetch_or_explicit(&f->state, CREW__F_EXT, memory_order_relaxed);
        return n;
    }
    pthread_mutex_destroy(&n->lock);
    crew__free(n);
    return x;
}

/* ------------------------------------------------------------ completion */

typedef struct crew__anywaiter {
    _Atomic uint32_t *word;
    struct crew__anywaiter *next;
} anywaiter;

static inline bool valid(const crew_future *f)
{
    return f && atomic_load_explicit(&((crew_future *)f)->magic, memory_order_relaxed) ==
                    CREW__FUTURE_MAGIC;
}

static inline uint32_t phase(uint32_t s) { return s & CREW__F_PHASE; }

/* Waits out a COMPLETING phase (a handful of stores on another thread). */
static uint32_t wait_not_completing(crew_future *f)
{
    uint32_t s;
    while (phase(s = atomic_load_explicit(&f->state, memory_order_acquire)) == CREW__F_COMPLETING)
        crew__cpu_relax();
    return s;
}

void crew__future_release(crew_future *f)
{
    uint32_t old = atomic_fetch_or_explicit(&f->state, CREW__F_RELEASED, memory_order_acq_rel);
    if (old & CREW__F_DROPPED)
        future_free(f);
}

static void count_outcome(crew_pool *p, int status)
{
    _Atomic uint64_t *c;
    switch (status) {
    case 0: c = &p->n_completed; break;
    case CREW_ECANCELED: c = &p->n_canceled; break;
    case CREW_ETIMEDOUT: c = &p->n_timed_out; break;
    case CREW_ECRASHED: c = &p->n_crashed; break;
    default: c = &p->n_failed; break;
    }
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void notify_enqueue(crew_pool *p, crew_future *f)
{
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    pthread_mutex_lock(&p->notify_lock);
    x->notify_next = NULL;
    if (p->notify_tail)
        atomic_load_explicit(&p->notify_tail->ext, memory_order_relaxed)->notify_next = f;
    else
        p->notify_head = f;
    p->notify_tail = f;
    if (!p->notify_signalled && p->notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t w;
        do
            w = write(p->notify_fd, &one, sizeof one);
        while (w < 0 && errno == EINTR);
        p->notify_signalled = 1;
    }
    pthread_mutex_unlock(&p->notify_lock);
}

static void wake_anywaiters(crew_future *f)
{
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    pthread_mutex_lock(&x->lock);
    for (anywaiter *w = x->anyw; w; w = w->next) {
        atomic_fetch_add_explicit(w->word, 1, memory_order_release);
        crew__futex_wake(w->word, 1);
    }
    pthread_mutex_unlock(&x->lock);
}

/* The pool whose done callback the calling thread is running (innermost),
 * or NULL: crew_pool_shutdown / destroy must not wait from there. */
static __thread crew_pool *tls_cb_pool CREW__TLS_IE;

bool crew__pool_in_callback(const crew_pool *p) { return p && tls_cb_pool == p; }

int crew__future_complete_final(crew_future *f, int status, const void *result, size_t len,
                                const crew_failure *failure, unsigned flags, int *final)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (!(flags & CREW__C_CLAIMED)) {
        do {
            if (phase(s) >= CREW__F_COMPLETING ||
                ((flags & CREW__C_QUEUED) && phase(s) != CREW__F_QUEUED))
                return CREW_ESTATE;
        } while (!atomic_compare_exchange_weak_explicit(&f->state, &s,
                                                        (s & ~CREW__F_PHASE) |
                                                            CREW__F_COMPLETING,
                                                        memory_order_acquire,
                                                        memory_order_relaxed));
        /* crew_future_cancel sets CANCEL with an RMW on this word and
         * returned 0 only if it found f below COMPLETING: then its bit is in
         * the s our claim replaced, and the promise it made is kept here,
         * whatever the backend reports. */
        if (s & CREW__F_CANCEL)
            status = CREW_ECANCELED;
    }
    crew_pool *p = f->pool;
    if (len > 0) {
        if (len <= CREW__RES_INLINE) {
            memcpy(f->res_inline, result, len);
        } else {
            f->res = crew__malloc(len);
            if (f->res) {
                f->flags |= FL_RES_HEAP;
                memcpy(f->res, result, len);
            } else {
                status = CREW_ENOMEM;
                len = 0;
            }
        }
    }
    f->res_len = (uint32_t)len;
    f->status = status;
    if (final)
        *final = status;
    if (failure) {
        crew__future_ext *x = ext_get(f);
        if (x) {
            x->failure = *failure;
            x->failure.status = status;
            x->failure.task_id = f->id;
            x->has_failure = 1;
        }
    }
    if (!(flags & CREW__C_NOCOUNT))
        count_outcome(p, status);

    /* HAS_CB / NOTIFY / ANYWAIT cannot change while we are COMPLETING. */
    s = atomic_load_explicit(&f->state, memory_order_relaxed);
    bool slow = (s & (CREW__F_HAS_CB | CREW__F_NOTIFY | CREW__F_ANYWAIT)) != 0;
    uint32_t add = CREW__F_DONE; /* COMPLETING | 1 == DONE */
    if (!slow && !(flags & CREW__C_KEEP))
        add |= CREW__F_RELEASED;
    uint32_t old = atomic_fetch_or_explicit(&f->state, add, memory_order_acq_rel);
    if (old & CREW__F_WAITERS)
        crew__futex_wake(&f->state, INT32_MAX);
    if (old & CREW__F_WORKER_WAIT)
        p->ops->wake_helpers(p, f); /* only a backend with help_wait sets it */
    if (!slow) {
        if ((add & CREW__F_RELEASED) && (old & CREW__F_DROPPED))
            future_free(f);
        return 0;
    }
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    if (old & CREW__F_ANYWAIT)
        wake_anywaiters(f);
    if (old & CREW__F_HAS_CB) {
        /* Marked, so that a callback that shuts p down does not wait for
         * the thread it runs on (a process pool's monitor, a worker). */
        crew_pool *outer = tls_cb_pool;
        tls_cb_pool = p;
        x->cb(f, x->cb_data); /* readable even if dropped: see crew_future_destroy */
        tls_cb_pool = outer;
    }
    /* A future whose handle was already destroyed is nobody's to pop: keep
     * it out of the completion list (future_free unlinks one dropped later). */
    if ((old & CREW__F_NOTIFY) && !(old & CREW__F_DROPPED))
        notify_enqueue(p, f);
    if (!(flags & CREW__C_KEEP))
        crew__future_release(f);
    return 0;
}

int crew__future_complete_ex(crew_future *f, int status, const void *result, size_t len,
                             const crew_failure *failure, unsigned flags)
{
    return crew__future_complete_final(f, status, result, len, failure, flags, NULL);
}

int crew__future_complete(crew_future *f, int status, const void *result, size_t len,
                          const crew_failure *failure)
{
    return crew__future_complete_final(f, status, result, len, failure, 0, NULL);
}

/* ------------------------------------------------------------ waiting */

int crew__future_park(crew_future *f, const crew__deadline *d)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (phase(s) == CREW__F_DONE)
        return 0;
    if (!crew__deadline_expired(d)) {
        /* Spin tightly for a few hundred ns, then yield between polls for
         * the rest of the spin budget: the task we wait for may need this
         * very CPU (more runnable threads than CPUs). */
        uint64_t start = crew__now_ns();
        for (unsigned i = 1;; i++) {
            if (i < 256)
                crew__cpu_relax();
            else
                sched_yield();
            if (phase(atomic_load_explicit(&f->state, memory_order_acquire)) == CREW__F_DONE)
                return 0;
            if ((i & 15) == 0 && crew__now_ns() - start > CREW__SPIN_NS)
                break;
        }
    }
    for (;;) {
        s = atomic_load_explicit(&f->state, memory_order_acquire);
        if (phase(s) == CREW__F_DONE)
            return 0;
        if (crew__deadline_expired(d))
            return CREW_ETIMEDOUT;
        if (!(s & CREW__F_WAITERS)) {
            /* The RMW orders our flag against the completer's fetch_or of
             * DONE: it either returns DONE to us or sees WAITERS. */
            s = atomic_fetch_or_explicit(&f->state, CREW__F_WAITERS, memory_order_seq_cst) |
                CREW__F_WAITERS;
            if (phase(s) == CREW__F_DONE)
                return 0;
        }
        int rc = crew__futex_wait(&f->state, s, d);
        if (rc == CREW_ETIMEDOUT)
            return phase(atomic_load_explicit(&f->state, memory_order_acquire)) == CREW__F_DONE
                       ? 0
                       : CREW_ETIMEDOUT;
    }
}

/* Enters ops->wait's section: false if p is being destroyed (then the
 * caller must not call the hook, but still leave). crew_pool_destroy sets
 * p->life and then waits for hook_users to drain, and we enter, then
 * check, both seq_cst: one of us sees the other. */
static bool hook_enter(crew_pool *p)
{
    atomic_fetch_add_explicit(&p->hook_users, 1, memory_order_seq_cst);
    return atomic_load_explicit(&p->life, memory_order_seq_cst) == CREW__POOL_LIVE;
}

static void hook_leave(crew_pool *p)
{
    if (atomic_fetch_sub_explicit(&p->hook_users, 1, memory_order_seq_cst) == 1 &&
        atomic_load_explicit(&p->life, memory_order_seq_cst) != CREW__POOL_LIVE)
        crew__futex_wake(&p->hook_users, INT32_MAX);
}

/* Is the calling thread running a task of p (so it must not wait for p to
 * go idle)? */
static bool called_from_worker(const crew_pool *p)
{
    return p->ops->in_task && p->ops->in_task(p);
}

static int wait_deadline(crew_future *f, const crew__deadline *d)
{
    if (crew__future_done(f))
        return 0;
    crew_pool *p = f->pool;
    /* A worker helps (runs queued work) only when it waits forever: a task
     * it picked up could run past any finite deadline. A worker waiting
     * with a timeout parks like any thread -- its wait on a sub-task no
     * other worker is free to run then times out instead of deadlocking. */
    if (p->ops->is_worker && p->ops->is_worker(p))
        return d->forever ? p->ops->help_wait(p, f, d) : crew__future_park(f, d);
    if (p->ops->wait) {
        int rc = 1;
        if (hook_enter(p))
            rc = p->ops->wait(p, f, d);
        hook_leave(p);
        if (rc != 1)
            return rc;
    }
    return crew__future_park(f, d);
}

int crew_future_wait(crew_future *f, double timeout)
{
    if (!valid(f) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    if (crew__future_done(f))
        return 0;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    return wait_deadline(f, &d);
}

int crew_wait_all(crew_future *const *fs, size_t n, double timeout)
{
    if (crew__timeout_bad(timeout))
        return CREW_EINVAL;
    if (n == 0)
        return 0;
    if (!fs)
        return CREW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid(fs[i]))
            return CREW_EINVAL;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    size_t i = 0;
    while (i < n && crew__future_done(fs[i]))
        i++;
    if (i == n)
        return 0;
    /* Common case: every future from one pool with a wait hook, waited on
     * from outside it. Enter the hook once for the whole array. */
    crew_pool *p = fs[i]->pool;
    if (p->ops->wait && !called_from_worker(p)) {
        int rc = 0;
        if (hook_enter(p)) {
            /* Last first: queues are FIFO, so by the time the last future
             * is done (a waiter that helps ran everything queued before it
             * in one call) the others mostly are too. */
            for (size_t k = n; k > i && rc == 0; k--) {
                crew_future *f = fs[k - 1];
                if (crew__future_done(f))
                    continue;
                rc = f->pool == p ? p->ops->wait(p, f, &d) : wait_deadline(f, &d);
            }
            i = n;
        }
        hook_leave(p);
        if (rc)
            return rc;
    }
    for (; i < n; i++) {
        int rc = wait_deadline(fs[i], &d);
        if (rc)
            return rc;
    }
    return 0;
}

static bool any_done(crew_future *const *fs, size_t n, size_t *index)
{
    for (size_t i = 0; i < n; i++)
        if (crew__future_done(fs[i])) {
            if (index)
                *index = i;
            return true;
        }
    return false;
}

int crew_wait_any(crew_future *const *fs, size_t n, double timeout, size_t *index)
{
    if (!fs || n == 0 || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid(fs[i]))
            return CREW_EINVAL;
    if (any_done(fs, n, index))
        return 0;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    if (n == 1) {
        int rc = wait_deadline(fs[0], &d);
        if (rc == 0 && index)
            *index = 0;
        return rc;
    }
    if (crew__deadline_expired(&d))
        return CREW_ETIMEDOUT;
    /* Spin a little first: most waits are short. */
    uint64_t start = crew__now_ns();
    while (crew__now_ns() - start < CREW__SPIN_NS) {
        if (any_done(fs, n, index))
            return 0;
        for (int k = 0; k < 16; k++)
            crew__cpu_relax();
    }
    /* List one node per future, all pointing at one wake word on our stack,
     * then sleep on that word. A completer that sees ANYWAIT bumps the word
     * of every listed node under the future's ext lock, and we unlist under
     * the same lock before returning, so no completer touches the word after
     * we leave. ANYWAIT is only set while the phase is below COMPLETING (the
     * completer reads it once it is COMPLETING). */
    anywaiter *nodes = crew__calloc(n, sizeof *nodes);
    if (!nodes)
        return CREW_ENOMEM;
    _Atomic uint32_t word = 0;
    int rc = 0;
    size_t nreg = 0;
    for (size_t i = 0; i < n; i++) {
        crew_future *f = fs[i];
        crew__future_ext *x = ext_get(f);
        if (!x) {
            rc = CREW_ENOMEM;
            break;
        }
        nodes[i].word = &word;
        pthread_mutex_lock(&x->lock);
        nodes[i].next = x->anyw;
        x->anyw = &nodes[i];
        pthread_mutex_unlock(&x->lock);
        nreg = i + 1;
        uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
        while (!(s & CREW__F_ANYWAIT) && phase(s) < CREW__F_COMPLETING &&
               !atomic_compare_exchange_weak_explicit(&f->state, &s, s | CREW__F_ANYWAIT,
                                                      memory_order_seq_cst, memory_order_acquire))
            ;
        if (phase(s) >= CREW__F_COMPLETING) {
            wait_not_completing(f); /* it will not see our flag: it is done now */
            break;
        }
    }
    while (rc == 0) {
        uint32_t seq = atomic_load_explicit(&word, memory_order_acquire);
        if (any_done(fs, n, index))
            break;
        if (crew__deadline_expired(&d)) {
            rc = CREW_ETIMEDOUT;
            break;
        }
        crew__futex_wait(&word, seq, &d);
    }
    for (size_t k = 0; k < nreg; k++) {
        crew__future_ext *x = atomic_load_explicit(&fs[k]->ext, memory_order_acquire);
        pthread_mutex_lock(&x->lock);
        for (anywaiter **pp = &x->anyw; *pp; pp = &(*pp)->next)
            if (*pp == &nodes[k]) {
                *pp = nodes[k].next;
                break;
            }
        pthread_mutex_unlock(&x->lock);
    }
    crew__free(nodes);
    if (rc == CREW_ETIMEDOUT && any_done(fs, n, index))
        rc = 0;
    return rc;
}

/* ------------------------------------------------------------ pool */

#define ID_BITS 40

crew_pool *crew__pool_new(const crew__pool_ops *ops, const crew_pool_options *o)
{
    crew_pool *p = crew__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->ops = ops;
    p->opts = *o;
    p->pool_id = atomic_fetch_add(&g_next_pool_id, 1);
    atomic_init(&p->next_id, (p->pool_id << ID_BITS) | 1);
    p->notify_fd = -1;
    pthread_mutex_init(&p->notify_lock, NULL);
    pthread_mutex_init(&p->alloc_lock, NULL);
    pthread_mutex_init(&p->cb_shut_lock, NULL);
    registry_add(p);
    return p;
}

void crew__pool_abandon(crew_pool *p)
{
    if (tc.pool_id == p->pool_id)
        tcache_flush(&tc);
    pthread_mutex_lock(&registry_lock);
    registry_remove_locked(p);
    pthread_mutex_unlock(&registry_lock);
    pool_memory_free(p);
}

/* Hands a filled-in f to the backend and counts it as submitted (unless
 * the backend counts its own submits); on failure frees f. */
static inline int submit_future(crew_pool *p, crew_future *f, crew_future **out)
{
    int rc = p->ops->submit(p, f);
    if (CREW_UNLIKELY(rc)) {
        future_free(f);
        return rc;
    }
    if (!p->ops->counts_submits)
        atomic_fetch_add_explicit(&p->n_submitted, 1, memory_order_relaxed);
    *out = f;
    return 0;
}

int crew_pool_submit(crew_pool *p, crew_task_fn fn, const void *arg, size_t arg_len,
                     crew_future **out)
{
    if (CREW_UNLIKELY(!p || !fn || !out || (!arg && arg_len)))
        return CREW_EINVAL;
    if (CREW_UNLIKELY(arg_len > p->opts.max_arg_size))
        return CREW_E2BIG;
    if (CREW_UNLIKELY(atomic_load_explicit(&p->shut, memory_order_relaxed)))
        return CREW_ESHUTDOWN;
    crew_future *f = future_alloc(p);
    if (CREW_UNLIKELY(!f))
        return CREW_ENOMEM;
    f->id = take_id(p);
    f->fn = fn;
    if (CREW_LIKELY(arg_len <= CREW__ARG_INLINE)) {
        if (arg_len)
            memcpy(f->arg_inline, arg, arg_len);
    } else {
        void *copy = crew__malloc(arg_len);
        if (!copy) {
            future_free(f);
            return CREW_ENOMEM;
        }
        memcpy(copy, arg, arg_len);
        f->arg = copy;
        f->flags |= FL_ARG_HEAP;
    }
    f->arg_len = (uint32_t)arg_len;
    return submit_future(p, f, out);
}

/* ------------------------------------------------------------ zero-copy submit */

#define FL_ARG_SHM 4u /* core-private f->flags: f->arg_inline holds a crew__shm_arg */

int crew_pool_submit_shm(crew_pool *p, crew_task_fn fn, crew_shm *region, size_t off, size_t len,
                         crew_future **out)
{
    if (!p || !fn || !region || !out)
        return CREW_EINVAL;
    /* The handle is looked up in the registry of live handles by its value,
     * never read: a destroyed region's memory may be gone already. */
    crew__shm_info info;
    if (crew__shm_info_of(region, &info) != 0)
        return CREW_EINVAL;
    size_t size = info.size;
    if (off > size || len > size - off)
        return CREW_ERANGE;
    if (len > UINT32_MAX)
        return CREW_E2BIG;
    if (atomic_load_explicit(&p->shut, memory_order_relaxed))
        return CREW_ESHUTDOWN;
    crew_future *f = future_alloc(p);
    if (!f)
        return CREW_ENOMEM;
    f->id = take_id(p);
    f->fn = fn;
    crew__shm_arg d = {.region = region, .off = off, .len = len};
    memcpy(f->arg_inline, &d, sizeof d);
    f->arg = (const unsigned char *)info.base + off;
    f->arg_len = (uint32_t)len;
    f->flags |= FL_ARG_SHM;
    if (!p->ops->submit_shm)
        return submit_future(p, f, out); /* threads: f->arg is used in place */
    int rc = p->ops->submit_shm(p, f);
    if (rc) {
        future_free(f);
        return rc;
    }
    atomic_fetch_add_explicit(&p->n_submitted, 1, memory_order_relaxed);
    *out = f;
    return 0;
}

crew_shm *crew_task_shm(const crew_task *t)
{
    if (!t)
        return NULL;
    if (t->shm)
        return t->shm; /* a process worker's own mapping */
    const crew_future *f = t->future;
    if (!f)
        return NULL;
    if (f->map)
        return f->map->in_shm ? f->map->in_shm : f->map->out_shm;
    if (f->flags & FL_ARG_SHM) {
        crew__shm_arg d;
        memcpy(&d, f->arg_inline, sizeof d);
        return d.region;
    }
    return NULL;
}

/* cb_shut_state: no thread yet, one running, finished (to be joined),
 * closed (destroy joined it: no more). */
enum { CB_SHUT_NONE, CB_SHUT_RUNNING, CB_SHUT_FINISHED, CB_SHUT_CLOSED };

/* Runs the backend's shutdown for a callback that asked for it, again if a
 * later callback asked for a cancel meanwhile. */
static void *cb_shutdown_main(void *arg)
{
    crew_pool *p = arg;
    int done = -1;
    for (;;) {
        pthread_mutex_lock(&p->cb_shut_lock);
        int c = p->cb_shut_cancel;
        if (c == done) {
            p->cb_shut_state = CB_SHUT_FINISHED;
            pthread_mutex_unlock(&p->cb_shut_lock);
            return NULL;
        }
        pthread_mutex_unlock(&p->cb_shut_lock);
        p->ops->shutdown(p, c);
        done = c;
    }
}

/* crew_pool_shutdown from a done callback of p on a backend whose shutdown
 * would wait there: this thread may be the one the wait needs (a process
 * pool's monitor delivers completions, callbacks included), so the
 * backend's shutdown runs on a thread of its own, which destroy joins. */
static int shutdown_from_callback(crew_pool *p, int cancel_pending)
{
    int rc = 0;
    pthread_mutex_lock(&p->cb_shut_lock);
    if (cancel_pending)
        p->cb_shut_cancel = 1;
    if (p->cb_shut_state == CB_SHUT_CLOSED) {
        pthread_mutex_unlock(&p->cb_shut_lock);
        return 0; /* destroy already shut the pool down, cancelling */
    }
    if (p->cb_shut_state == CB_SHUT_FINISHED) {
        pthread_join(p->cb_shut_thread, NULL); /* it is returning: prompt */
        p->cb_shut_state = CB_SHUT_NONE;
    }
    if (p->cb_shut_state == CB_SHUT_NONE) {
        int e = pthread_create(&p->cb_shut_thread, NULL, cb_shutdown_main, p);
        if (e == 0)
            p->cb_shut_state = CB_SHUT_RUNNING;
        else
            rc = e == EAGAIN ? CREW_EAGAIN : -e;
    }
    pthread_mutex_unlock(&p->cb_shut_lock);
    return rc;
}

int crew_pool_shutdown(crew_pool *p, int cancel_pending)
{
    if (!p)
        return CREW_EINVAL;
    atomic_store(&p->shut, 1);
    if (!p->ops->shutdown)
        return 0;
    if (crew__pool_in_callback(p) && !p->ops->shutdown_in_callback)
        return shutdown_from_callback(p, cancel_pending ? 1 : 0);
    return p->ops->shutdown(p, cancel_pending ? 1 : 0);
}

int crew_pool_destroy(crew_pool *p)
{
    if (!p)
        return CREW_EINVAL;
    /* From a task, or a done callback, of p: destroy would wait for (or
     * free under) the very thread that calls it. */
    if (called_from_worker(p) || crew__pool_in_callback(p))
        return CREW_EDEADLK;
    crew_pool_shutdown(p, 1);
    pthread_mutex_lock(&p->cb_shut_lock);
    int cb_state = p->cb_shut_state;
    p->cb_shut_state = CB_SHUT_CLOSED; /* a later callback's shutdown: nothing left to do */
    pthread_mutex_unlock(&p->cb_shut_lock);
    if (cb_state == CB_SHUT_RUNNING || cb_state == CB_SHUT_FINISHED)
        pthread_join(p->cb_shut_thread, NULL);
    atomic_store(&p->life, CREW__POOL_CLOSING);
    for (;;) {
        uint32_t v = atomic_load(&p->hook_users);
        if (v == 0)
            break;
        crew__futex_wait(&p->hook_users, v, NULL);
    }
    if (p->ops->destroy)
        p->ops->destroy(p);
    pthread_mutex_lock(&p->notify_lock);
    if (p->notify_fd >= 0)
        crew__close(p->notify_fd);
    p->notify_fd = -1;
    p->notify_head = p->notify_tail = NULL;
    p->notify_signalled = 0;
    pthread_mutex_unlock(&p->notify_lock);
    if (tc.pool_id == p->pool_id)
        tcache_flush(&tc);
    pthread_mutex_lock(&p->alloc_lock);
    atomic_store(&p->life, CREW__POOL_CLOSED);
    alloc_unlock_maybe_free(p);
    return 0;
}

int crew_pool_workers(const crew_pool *p) { return p ? p->opts.workers : CREW_EINVAL; }

int crew_pool_kind_of(const crew_pool *p) { return p ? (int)p->opts.kind : CREW_EINVAL; }

int crew_pool_stats_get(crew_pool *p, crew_pool_stats *st)
{
    if (!p || !st)
        return CREW_EINVAL;
    memset(st, 0, sizeof *st);
    st->submitted = atomic_load_explicit(&p->n_submitted, memory_order_relaxed);
    st->completed = atomic_load_explicit(&p->n_completed, memory_order_relaxed);
    st->failed = atomic_load_explicit(&p->n_failed, memory_order_relaxed);
    st->crashed = atomic_load_explicit(&p->n_crashed, memory_order_relaxed);
    st->timed_out = atomic_load_explicit(&p->n_timed_out, memory_order_relaxed);
    st->canceled = atomic_load_explicit(&p->n_canceled, memory_order_relaxed);
    if (p->ops->stats && atomic_load(&p->life) == CREW__POOL_LIVE)
        p->ops->stats(p, st);
    return 0;
}

/* ------------------------------------------------------------ future API */

int crew_future_done(const crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    return crew__future_done(f) ? 1 : 0;
}

int crew_future_status(const crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    if (!crew__future_done(f))
        return CREW_ESTATE;
    return f->status;
}

int crew_future_result(const crew_future *f, const void **data, size_t *len)
{
    if (!valid(f) || !data || !len)
        return CREW_EINVAL;
    if (!crew__future_done(f))
        return CREW_ESTATE;
    *len = f->res_len;
    *data = f->res_len == 0 ? NULL : f->res ? f->res : f->res_inline;
    return 0;
}

int crew_future_failure(const crew_future *f, crew_failure *out)
{
    if (!valid(f) || !out)
        return CREW_EINVAL;
    if (!crew__future_done(f))
        return CREW_ESTATE;
    crew__future_ext *x = atomic_load_explicit(&((crew_future *)f)->ext, memory_order_acquire);
    if (x && x->has_failure) {
        *out = x->failure;
    } else {
        memset(out, 0, sizeof *out);
        out->status = f->status;
        out->task_id = f->id;
    }
    return 0;
}

uint64_t crew_future_id(const crew_future *f) { return valid(f) ? f->id : 0; }

int crew_future_progress(const crew_future *f, size_t *done, size_t *total)
{
    if (!valid(f))
        return CREW_EINVAL;
    size_t d, t;
    if (f->map) {
        d = atomic_load_explicit(&f->map->done, memory_order_relaxed);
        t = f->map->n;
    } else {
        d = crew__future_done(f) ? 1 : 0;
        t = 1;
    }
    if (done)
        *done = d;
    if (total)
        *total = t;
    return 0;
}

int crew_future_cancel(crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    /* The CANCEL bit is the promise: set while f is not yet claimed for
     * completion, it makes whoever completes f end it CREW_ECANCELED
     * (crew__future_complete_final), however the race with the task's own
     * end goes. Found claimed already, the cancel lost: CREW_ESTATE. The
     * backend's cancel then only hurries the end (queued: now; running:
     * crew_task_cancelled, or the worker process is stopped). */
    uint32_t old = crew__future_request_cancel(f);
    if (phase(old) >= CREW__F_COMPLETING) {
        wait_not_completing(f);
        return CREW_ESTATE;
    }
    crew_pool *p = f->pool;
    if (f->map)
        atomic_store(&f->map->cancel, 1);
    if (p->ops->cancel && atomic_load(&p->life) == CREW__POOL_LIVE)
        p->ops->cancel(p, f);
    if (f->map)
        crew__map_cancel_rest(f->map);
    return 0;
}

/* Sets flag (CREW__F_HAS_CB or CREW__F_NOTIFY) on f, storing its data in
 * the extension under the extension lock first, so the completing thread
 * sees the data whenever it sees the flag. Returns 0 when f was still
 * pending (the completing thread acts on the flag), 1 when f was already
 * done (the caller acts now), CREW_EBUSY when the flag was already set,
 * CREW_ENOMEM. */
static int future_mark(crew_future *f, uint32_t flag, crew_future_cb cb, void *data)
{
    crew__future_ext *x = ext_get(f);
    if (!x)
        return CREW_ENOMEM;
    pthread_mutex_lock(&x->lock);
    int rc;
    for (;;) {
        uint32_t s = wait_not_completing(f);
        if (s & flag) {
            rc = CREW_EBUSY;
            break;
        }
        if (flag == CREW__F_HAS_CB) {
            x->cb = cb;
            x->cb_data = data;
        } else {
            x->user_data = data;
        }
        if (phase(s) == CREW__F_DONE) {
            atomic_fetch_or(&f->state, flag); /* a second mark gets EBUSY */
            rc = 1;
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | flag, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&x->lock);
    return rc;
}

int crew_future_on_done(crew_future *f, crew_future_cb cb, void *data)
{
    if (!valid(f) || !cb)
        return CREW_EINVAL;
    int rc = future_mark(f, CREW__F_HAS_CB, cb, data);
    if (rc == 1)
        cb(f, data); /* already done: run it now, on the caller's thread */
    return rc < 0 ? rc : 0;
}

int crew_future_notify(crew_future *f, void *user_data)
{
    if (!valid(f))
        return CREW_EINVAL;
    int rc = future_mark(f, CREW__F_NOTIFY, NULL, user_data);
    if (rc == 1)
        notify_enqueue(f->pool, f); /* already done: list it now */
    return rc < 0 ? rc : 0;
}

void *crew_future_user_data(const crew_future *f)
{
    if (!valid(f))
        return NULL;
    crew__future_ext *x = atomic_load_explicit(&((crew_future *)f)->ext, memory_order_acquire);
    return x ? x->user_data : NULL;
}

/* Unlinks f from its pool's completion list if it is still there. */
static void notify_unlink(crew_future *f)
{
    crew_pool *p = f->pool;
    pthread_mutex_lock(&p->notify_lock);
    crew_future *prev = NULL;
    for (crew_future *g = p->notify_head; g;
         prev = g, g = atomic_load_explicit(&g->ext, memory_order_relaxed)->notify_next) {
        if (g != f)
            continue;
        crew_future *next = atomic_load_explicit(&f->ext, memory_order_relaxed)->notify_next;
        if (prev)
            atomic_load_explicit(&prev->ext, memory_order_relaxed)->notify_next = next;
        else
            p->notify_head = next;
        if (p->notify_tail == f)
            p->notify_tail = prev;
        break;
    }
    pthread_mutex_unlock(&p->notify_lock);
}

int crew_future_destroy(crew_future *f)
{
    if (!valid(f))
        return CREW_EINVAL;
    uint32_t old = atomic_load_explicit(&f->state, memory_order_acquire);
    /* A future with a callback stays readable until it is freed (the
     * callback may still run and read it); any other one is marked dead now
     * so that a use of the stale handle gets CREW_EINVAL. */
    if (!(old & CREW__F_HAS_CB))
        atomic_store_explicit(&f->magic, CREW__FUTURE_DEAD, memory_order_relaxed);
    /* Once RELEASED the backend never touches f again: no RMW needed. */
    if (!(old & CREW__F_RELEASED))
        old = atomic_fetch_or_explicit(&f->state, CREW__F_DROPPED, memory_order_acq_rel);
    if (old & CREW__F_RELEASED)
        future_free(f);
    return 0;
}

int crew_pool_fd(crew_pool *p)
{
    if (!p)
        return CREW_EINVAL;
    pthread_mutex_lock(&p->notify_lock);
    int rc = p->notify_fd;
    if (rc < 0 && atomic_load(&p->life) == CREW__POOL_LIVE) {
        rc = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (rc < 0) {
            rc = -errno;
        } else {
            p->notify_fd = rc;
            if (p->notify_head) {
                uint64_t one = 1;
                ssize_t w;
                do
                    w = write(rc, &one, sizeof one);
                while (w < 0 && errno == EINTR);
                p->notify_signalled = 1;
            }
        }
    } else if (rc < 0) {
        rc = CREW_ESHUTDOWN;
    }
    pthread_mutex_unlock(&p->notify_lock);
    return rc;
}

int crew_pool_completions(crew_pool *p, crew_future **out, size_t max, size_t *n)
{
    if (!p || !n || (!out && max))
        return CREW_EINVAL;
    size_t k = 0;
    pthread_mutex_lock(&p->notify_lock);
    while (k < max && p->notify_head) {
        crew_future *f = p->notify_head;
        p->notify_head = atomic_load_explicit(&f->ext, memory_order_relaxed)->notify_next;
        if (!p->notify_head)
            p->notify_tail = NULL;
        out[k++] = f;
    }
    if (!p->notify_head && p->notify_signalled && p->notify_fd >= 0) {
        uint64_t v;
        ssize_t r;
        do
            r = read(p->notify_fd, &v, sizeof v);
        while (r < 0 && errno == EINTR);
        p->notify_signalled = 0;
    }
    pthread_mutex_unlock(&p->notify_lock);
    *n = k;
    return 0;
}

/* ------------------------------------------------------------ task context */

int crew_task_cancelled(const crew_task *t)
{
    if (!t)
        return 0;
    if (t->cancel && (atomic_load_explicit(t->cancel, memory_order_relaxed) & t->cancel_mask))
        return 1;
    if (t->pool_cancel && atomic_load_explicit(t->pool_cancel, memory_order_relaxed))
        return 1;
    if (t->deadline_ns && crew__now_ns() >= t->deadline_ns) {
        ((crew_task *)t)->timed_out = 1;
        return 1;
    }
    return 0;
}

int crew_task_worker(const crew_task *t) { return t ? t->worker : CREW_EINVAL; }

crew_pool *crew_task_pool(crew_task *t) { return t ? t->pool : NULL; }

/* ------------------------------------------------------------ map */

void crew__map_ref(crew__map *m) { atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed); }

static void map_free(crew__map *m)
{
    pthread_mutex_destroy(&m->fail_lock);
    crew__free(m);
}

void crew__map_unref(crew__map *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        map_free(m);
}

bool crew__map_claim(crew__map *m, size_t *first, size_t *count)
{
    size_t cur = atomic_load_explicit(&m->next, memory_order_relaxed);
    for (;;) {
        if (cur >= m->n || atomic_load_explicit(&m->cancel, memory_order_relaxed))
            return false;
        size_t rem = m->n - cur, c;
        if (m->chunk_size) {
            c = m->chunk_size;
        } else {
            /* Guided: a quarter of a fair share of what is left, so early
             * claims are big (few CAS) and the tail is fine-grained. */
            c = rem / (4 * (size_t)m->future->pool->opts.workers);
            if (c == 0)
                c = 1;
        }
        if (c > rem)
            c = rem;
        if (atomic_compare_exchange_weak_explicit(&m->next, &cur, cur + c, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *first = cur;
            *count = c;
            return true;
        }
    }
}

/* The map future itself is not counted in the stats: its items were
 * (crew__map_done_tally), so it completes with CREW__C_NOCOUNT. */
static void map_finish(crew__map *m)
{
    crew_future *f = m->future;
    size_t nf = atomic_load(&m->n_failed);
    if (nf == 0) {
        crew__future_complete_ex(f, 0, NULL, 0, NULL, CREW__C_NOCOUNT);
        return;
    }
    pthread_mutex_lock(&m->fail_lock);
    crew_failure fl = m->failure;
    int status = atomic_load(&m->first_fail_status);
    fl.status = status;
    fl.first_item = atomic_load(&m->first_fail);
    fl.n_items = nf;
    pthread_mutex_unlock(&m->fail_lock);
    crew__future_complete_ex(f, status, NULL, 0, &fl, CREW__C_NOCOUNT);
}

void crew__map_done_tally(crew__map *m, size_t first, size_t count, const crew__map_tally *t,
                          size_t first_fail, int first_fail_status, const crew_failure *failure)
{
    size_t n_failed = t ? t->failed + t->crashed + t->timed_out + t->canceled : 0;
    CREW_ASSERT(n_failed <= count);
    /* Items are what crew_pool_stats counts for a map: each one's outcome
     * here, once per item, as count_outcome does for a task. */
    crew_pool *p = m->future->pool;
    if (count > n_failed)
        atomic_fetch_add_explicit(&p->n_completed, count - n_failed, memory_order_relaxed);
    if (n_failed) {
        if (t->failed)
            atomic_fetch_add_explicit(&p->n_failed, t->failed, memory_order_relaxed);
        if (t->crashed)
            atomic_fetch_add_explicit(&p->n_crashed, t->crashed, memory_order_relaxed);
        if (t->timed_out)
            atomic_fetch_add_explicit(&p->n_timed_out, t->timed_out, memory_order_relaxed);
        if (t->canceled)
            atomic_fetch_add_explicit(&p->n_canceled, t->canceled, memory_order_relaxed);
        atomic_fetch_add(&m->n_failed, n_failed);
        pthread_mutex_lock(&m->fail_lock);
        if (first_fail < atomic_load(&m->first_fail)) {
            atomic_store(&m->first_fail, first_fail);
            atomic_store(&m->first_fail_status, first_fail_status);
            if (failure)
                m->failure = *failure;
            else
                memset(&m->failure, 0, sizeof m->failure);
        }
        pthread_mutex_unlock(&m->fail_lock);
    }
    (void)first;
    size_t prev = atomic_fetch_add_explicit(&m->done, count, memory_order_acq_rel);
    CREW_ASSERT(prev + count <= m->n);
    if (prev + count == m->n)
        map_finish(m);
}

void crew__map_done_range(crew__map *m, size_t first, size_t count, const int *statuses,
                          int status, const crew_failure *failure)
{
    crew__map_tally t = {0};
    size_t ff = SIZE_MAX;
    int fs = 0;
    if (statuses) {
        for (size_t i = 0; i < count; i++) {
            int st = statuses[i] > 0 ? 0 : statuses[i];
            if (m->statuses && m->statuses + first != statuses)
                m->statuses[first + i] = st;
            if (st < 0) {
                if (ff == SIZE_MAX) {
                    ff = first + i;
                    fs = st;
                }
                crew__map_tally_add(&t, st);
            }
        }
    } else {
        if (status > 0)
            status = 0;
        if (m->statuses)
            for (size_t i = 0; i < count; i++)
                m->statuses[first + i] = status;
        if (status < 0 && count) {
            ff = first;
            fs = status;
            crew__map_tally_add_n(&t, status, count);
        }
    }
    crew__map_done_tally(m, first, count, &t, ff, fs, failure);
}

void crew__map_cancel_rest(crew__map *m)
{
    atomic_store(&m->cancel, 1);
    size_t cur = atomic_load(&m->next);
    while (cur < m->n) {
        if (atomic_compare_exchange_weak(&m->next, &cur, m->n)) {
            crew__map_done_range(m, cur, m->n - cur, NULL, CREW_ECANCELED, NULL);
            return;
        }
    }
}

static int map_start(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out,
                     size_t out_size, size_t n, const crew_map_options *o, crew_future **fo)
{
    if (!p || !fn || n == 0 || (!in && in_size) || (!out && out_size))
        return CREW_EINVAL;
    if (in_size > p->opts.max_arg_size || out_size > p->opts.max_result_size)
        return CREW_E2BIG;
    size_t bytes_;
    if (__builtin_mul_overflow(n, in_size, &bytes_) || __builtin_mul_overflow(n, out_size, &bytes_))
        return CREW_EOVERFLOW; /* records that cannot all exist (an n cast from -1...) */
    if (atomic_load_explicit(&p->shut, memory_order_relaxed))
        return CREW_ESHUTDOWN;
    crew__map *m = crew__calloc(1, sizeof *m);
    if (!m)
        return CREW_ENOMEM;
    m->fn = fn;
    m->in = in;
    m->in_size = in_size;
    m->out = out;
    m->out_size = out_size;
    m->n = n;
    m->chunk_size = o ? o->chunk_size : 0;
    m->statuses = o ? o->statuses : NULL;
    if (crew__shm_any()) {
        /* Records inside a live crew_shm region travel without a copy
         * (process pools; thread pools use in/out in place anyway). */
        size_t bytes;
        if (in_size && !__builtin_mul_overflow(n, in_size, &bytes))
            m->in_shm = crew__shm_find(in, bytes);
        if (out_size && !__builtin_mul_overflow(n, out_size, &bytes))
            m->out_shm = crew__shm_find(out, bytes);
    }
    atomic_init(&m->first_fail, SIZE_MAX);
    atomic_init(&m->refs, 1);
    pthread_mutex_init(&m->fail_lock, NULL);
    crew_future *f = future_alloc(p);
    if (!f) {
        map_free(m);
        return CREW_ENOMEM;
    }
    f->id = take_id(p);
    f->fn = fn;
    f->map = m;
    m->future = f;
    int rc = p->ops->submit_map ? p->ops->submit_map(p, m) : CREW_ENOTSUP;
    if (rc) {
        future_free(f); /* drops the map too */
        return rc;
    }
    /* Maps: always counted here, one per item (see crew__map_done_tally). */
    atomic_fetch_add_explicit(&p->n_submitted, n, memory_order_relaxed);
    *fo = f;
    return 0;
}

int crew_pool_map_submit(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size,
                         void *out, size_t out_size, size_t n, const crew_map_options *o,
                         crew_future **out_future)
{
    if (!out_future)
        return CREW_EINVAL;
    return map_start(p, fn, in, in_size, out, out_size, n, o, out_future);
}

int crew_pool_map(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out,
                  size_t out_size, size_t n, const crew_map_options *o)
{
    crew_future *f;
    int rc = map_start(p, fn, in, in_size, out, out_size, n, o, &f);
    if (rc)
        return rc;
    crew_future_wait(f, CREW_FOREVER);
    rc = f->status;
    crew_future_destroy(f);
    return rc;
}
