/*
 * future_alloc.c -- the memory of futures and of the pools they belong to:
 * slabs, the pools' free lists, per-thread caches, future ids, and when a
 * pool's memory is freed. The hot paths (take a future, return one, take
 * an id) are static inline in future_alloc.h; this file is their slow
 * halves. Nothing here knows what a future means (completion, maps,
 * callbacks: future.c) -- a future arrives here already torn down.
 *
 * DESIGN
 *
 * Futures come from 64-future slabs owned by the pool, handed out through
 * a per-thread cache (one pool at a time per thread, up to CREW__CACHE_MAX
 * futures) so that submit and destroy need no lock and no malloc: a thread
 * refills from / spills to the pool's free list under alloc_lock in O(1)
 * batches (see "free batches"). `lent` counts futures outside the pool's
 * free list (in use or in thread caches); the pool's memory is freed when
 * it has been destroyed (p->life CLOSED) and lent drops to 0 -- by
 * whichever thread brings it there, under alloc_lock, moving p->life to
 * FREED so that exactly one thread frees. A thread's cache is given back
 * when the thread switches pools, exits (pthread key destructor) or
 * destroys the pool. Cross-pool give-back goes through a registry of live
 * pool memory keyed by a never-reused pool id, so a stale cache never
 * touches freed memory.
 *
 * Lock order: registry_lock -> p->alloc_lock. The thread cache is the
 * calling thread's own and needs no lock.
 */
#include "pool/future_alloc.h"

#define SLAB_FUTURES 64
#define ID_BITS 40

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

/* Frees the pool's memory. Caller made sure: p->life FREED (or create
 * failed), lent == 0, and the pool is already out of the registry. */
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
}

static crew_future *pop_batch_locked(crew_pool *p, uint32_t *n)
{
    crew_future *head = p->free_list;
    if (head) {
        p->free_list = (crew_future *)head->backend[0];
        *n = (uint32_t)head->backend[1];
    }
    return head;
}

/* ------------------------------------------------------------ thread cache */

__thread crew__tcache crew__tc CREW__TLS_IE;
static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;

/* Gives the calling thread's cache back to its pool (if that pool's memory
 * still exists: otherwise the futures went with it). */
static void tcache_flush(crew__tcache *c)
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
        c->n += CREW__CACHE_MAX / 2;
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
    c->pool_id = 0;
}

static void tcache_destructor(void *arg)
{
    (void)arg;
    tcache_flush(&crew__tc);
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
    unsigned char *raw = crew__malloc(SLAB_FUTURES * sizeof(crew_future) + CREW__CACHELINE);
    if (!raw)
        return NULL;
    p->slabs[p->n_slabs++] = raw;
    crew_future *base =
        (crew_future *)(((uintptr_t)raw + CREW__CACHELINE - 1) & ~(uintptr_t)(CREW__CACHELINE - 1));
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
    if (crew__tc.pool_id == p->pool_id)
        return;
    tcache_flush(&crew__tc);
    if (!crew__tc.keyed) {
        pthread_once(&tc_once, tcache_key_init);
        pthread_setspecific(tc_key, &crew__tc);
        crew__tc.keyed = true;
    }
    crew__tc.pool_id = p->pool_id;
    crew__tc.id_next = crew__tc.id_end = 0;
}

/* The cache is empty or bound to another pool: rebind, then the spare
 * batch, else a batch from the pool, else a new slab. */
crew_future *crew__future_alloc_slow(crew_pool *p)
{
    crew__tcache_bind(p);
    if (crew__tc.spare) {
        crew_future *f = crew__tc.spare;
        crew__tc.spare = NULL;
        crew__tc.head = f->free_next;
        crew__tc.n = CREW__CACHE_MAX / 2 - 1;
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
    crew__tc.head = head;
    crew__tc.n = n;
    crew_future *f = crew__tc.head;
    crew__tc.head = f->free_next;
    crew__tc.n--;
    return f;
}

/* The cache's stack has just reached a full batch (crew__future_put). */
void crew__tcache_spill(crew_pool *p)
{
    /* The stack is a full batch now: it becomes the spare, and the
     * spare before it (if any) goes back to the pool -- O(1), no walk
     * down the list. (A stack refilled from a bigger pool batch keeps
     * its extra futures in the spare: at most one batch's worth.) */
    crew_future *old = crew__tc.spare;
    uint32_t old_n = CREW__CACHE_MAX / 2;
    crew__tc.spare = crew__tc.head;
    if (crew__tc.n > CREW__CACHE_MAX / 2) {
        /* rare: cut the stack to a batch of CREW__CACHE_MAX / 2 */
        crew_future *last = crew__tc.head;
        for (uint32_t i = 1; i < CREW__CACHE_MAX / 2; i++)
            last = last->free_next;
        crew__tc.head = last->free_next;
        last->free_next = NULL;
        crew__tc.n -= CREW__CACHE_MAX / 2;
        if (old == NULL) {
            old = crew__tc.head; /* hand the rest to the pool */
            old_n = crew__tc.n;
        } else {
            old_n = CREW__CACHE_MAX / 2;
        }
    } else {
        crew__tc.head = NULL;
        crew__tc.n = 0;
    }
    if (old) {
        if (old == crew__tc.head) {
            crew__tc.head = NULL;
            crew__tc.n = 0;
        }
        pthread_mutex_lock(&p->alloc_lock);
        push_batch_locked(p, old, old_n);
        atomic_fetch_sub(&p->lent, (int64_t)old_n);
        alloc_unlock_maybe_free(p);
    }
}

/* f cannot go to the calling thread's cache (bound to another pool, or p
 * is being destroyed): it goes to the pool, and so does the cache if it
 * holds p's futures. */
void crew__future_give_back(crew_pool *p, crew_future *f)
{
    if (crew__tc.pool_id == p->pool_id) /* pool destroyed: give the cache back too */
        tcache_flush(&crew__tc);
    pthread_mutex_lock(&p->alloc_lock);
    f->free_next = NULL;
    push_batch_locked(p, f, 1);
    atomic_fetch_sub(&p->lent, 1);
    alloc_unlock_maybe_free(p);
}

/* ------------------------------------------------------------ pools */

void crew__tcache_drop(crew_pool *p)
{
    if (crew__tc.pool_id == p->pool_id)
        tcache_flush(&crew__tc);
}

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
    crew__tcache_drop(p);
    pthread_mutex_lock(&registry_lock);
    registry_remove_locked(p);
    pthread_mutex_unlock(&registry_lock);
    pool_memory_free(p);
}

void crew__pool_close(crew_pool *p)
{
    crew__tcache_drop(p);
    pthread_mutex_lock(&p->alloc_lock);
    atomic_store(&p->life, CREW__POOL_CLOSED);
    alloc_unlock_maybe_free(p);
}
