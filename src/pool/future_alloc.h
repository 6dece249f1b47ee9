/*
 * future_alloc.h -- the memory of futures and of their pools: the hot half
 * (static inline, so crew_pool_submit and crew_future_destroy pay no call
 * in the steady state) of future_alloc.c. Core-private: backends get
 * futures through the core (crew__future_alloc_internal), never here.
 *
 * Futures come from 64-future slabs owned by the pool, handed out through
 * a per-thread cache (crew__tc: one pool at a time per thread, up to
 * CREW__CACHE_MAX futures) so that submit and destroy need no lock and no
 * malloc. Only the owning thread touches its cache; the pool's free list
 * and slabs are under p->alloc_lock. See future_alloc.c for the rest
 * (batches, when a cache goes back, when the pool's memory is freed).
 */
#ifndef CREW__POOL_FUTURE_ALLOC_H
#define CREW__POOL_FUTURE_ALLOC_H

#include "pool/pool_internal.h"

#define CREW__CACHE_MAX 512
/* A thread takes future ids of a pool in blocks of this many. */
#define CREW__ID_BLOCK 256

typedef struct crew__tcache {
    uint64_t pool_id;           /* the pool the cache holds futures of, 0 none */
    crew_future *head;          /* the stack futures are taken from and freed to */
    uint32_t n;                 /* its length, < CREW__CACHE_MAX / 2 after a free */
    crew_future *spare;         /* a full batch of CREW__CACHE_MAX / 2, or NULL */
    bool keyed;
    /* A block of future ids of that pool, taken with one atomic add per
     * CREW__ID_BLOCK submits: an id is unique, not a submission counter. */
    uint64_t id_next, id_end;
} crew__tcache;

/* The calling thread's cache (initial-exec TLS: no __tls_get_addr call
 * from the shared library on the submit path). */
extern __thread crew__tcache crew__tc CREW__TLS_IE;

/* The out-of-line halves (future_alloc.c). */
crew_future *crew__future_alloc_slow(crew_pool *p);
void crew__tcache_spill(crew_pool *p);
void crew__future_give_back(crew_pool *p, crew_future *f);

/* A fresh future of p, phase QUEUED, first cache line initialised; NULL
 * on ENOMEM. Binds the calling thread's cache to p. */
static inline crew_future *crew__future_alloc(crew_pool *p)
{
    crew_future *f;
    if (CREW__LIKELY(crew__tc.pool_id == p->pool_id && crew__tc.head != NULL)) {
        f = crew__tc.head;
        crew__tc.head = f->free_next;
        crew__tc.n--;
    } else {
        f = crew__future_alloc_slow(p);
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
 * (crew__future_alloc just did it). */
static inline uint64_t crew__take_id(crew_pool *p)
{
    if (CREW__UNLIKELY(crew__tc.id_next == crew__tc.id_end)) {
        crew__tc.id_next =
            atomic_fetch_add_explicit(&p->next_id, CREW__ID_BLOCK, memory_order_relaxed);
        crew__tc.id_end = crew__tc.id_next + CREW__ID_BLOCK;
    }
    return crew__tc.id_next++;
}

/* Returns f, a future of p whose contents are already torn down (magic
 * dead, heap parts freed, res/next/ext NULL), to the calling thread's
 * cache, or to the pool if the cache belongs to another pool or p is
 * being destroyed. May free p's memory (the last future of a destroyed
 * pool): the caller must not touch p or f afterwards. */
static inline void crew__future_put(crew_pool *p, crew_future *f)
{
    if (CREW__LIKELY(crew__tc.pool_id == p->pool_id) &&
        atomic_load_explicit(&p->life, memory_order_relaxed) == CREW__POOL_LIVE) {
        f->free_next = crew__tc.head;
        crew__tc.head = f;
        if (++crew__tc.n < CREW__CACHE_MAX / 2)
            return;
        crew__tcache_spill(p);
        return;
    }
    crew__future_give_back(p, f);
}

/* The calling thread's cache goes back to p if it holds p's futures
 * (crew_pool_destroy: a destroyed pool's futures must not stay cached). */
void crew__tcache_drop(crew_pool *p);

/* For crew_pool_create (create.c): a pool of the given backend and
 * normalised options, registered, with its ids and locks set up and no
 * backend yet (ops->create comes next). NULL on ENOMEM. */
crew_pool *crew__pool_new(const crew__pool_ops *ops, const crew_pool_options *o);
/* Frees a pool whose ops->create failed (nothing of it was handed out). */
void crew__pool_abandon(crew_pool *p);
/* The last step of crew_pool_destroy: gives the calling thread's cache
 * back, moves p->life to CLOSED, and frees p's memory now if no future of
 * it is left (otherwise the thread that returns the last one does). */
void crew__pool_close(crew_pool *p);

#endif /* CREW__POOL_FUTURE_ALLOC_H */
