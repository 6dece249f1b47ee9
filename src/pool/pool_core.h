/*
 * pool_core.h -- what the files of the pool core share and the backends
 * never see (they have pool_internal.h): core-private future flags, the
 * handle check, and the functions one core file provides to the others.
 *
 * The core's files, bottom up (each calls only the ones before it):
 *   future_alloc.c  memory of futures and pools: slabs, thread caches, ids
 *   notify.c        the completion list and its fd (crew_future_notify)
 *   future.c        a future's life: completion, callbacks, freeing, the
 *                   future API (status, result, destroy...)
 *   wait.c          crew_future_wait, crew_wait_all, crew_wait_any
 *   map.c           the map driver (claims, item accounting, crew_pool_map)
 *   pool.c          the pool API: submit, shutdown, destroy, stats, cancel
 *   create.c        crew_pool_create: the one file that names the backends
 * The backends sit between map.c and create.c: they call the core, and
 * the core calls them only through p->ops.
 */
#ifndef CREW__POOL_CORE_H
#define CREW__POOL_CORE_H

#include "pool/pool_internal.h"

/* core-private f->flags */
#define FL_ARG_HEAP 1u
#define FL_RES_HEAP 2u
#define FL_ARG_SHM 4u /* f->arg_inline holds a crew__shm_arg (crew_pool_submit_shm) */

/* A node of crew_wait_any's list on a future (f->ext->anyw, under
 * ext->lock): the completer bumps *word and futex-wakes it. */
typedef struct crew__anywaiter {
    _Atomic uint32_t *word;
    struct crew__anywaiter *next;
} anywaiter;

/* Is f a live handle? (A destroyed one keeps a dead magic word until its
 * slot is reused, so most uses after crew_future_destroy get CREW_EINVAL.) */
static inline bool valid(const crew_future *f)
{
    return f && atomic_load_explicit(&((crew_future *)f)->magic, memory_order_relaxed) ==
                    CREW__FUTURE_MAGIC;
}

static inline uint32_t phase(uint32_t s) { return s & CREW__F_PHASE; }

/* Waits out a COMPLETING phase (a handful of stores on another thread). */
static inline uint32_t wait_not_completing(crew_future *f)
{
    uint32_t s;
    while (phase(s = atomic_load_explicit(&f->state, memory_order_acquire)) == CREW__F_COMPLETING)
        crew__cpu_relax();
    return s;
}

/* Is the calling thread running a task of p (so it must not wait for p to
 * go idle)? */
static inline bool called_from_worker(const crew_pool *p)
{
    return p->ops->in_task && p->ops->in_task(p);
}

/* ------------------------------------------------------------ future.c */

/* f's extension block, allocated on first use (NULL on ENOMEM). */
crew__future_ext *crew__future_ext_get(crew_future *f);
/* Tears f down and returns its memory (both holds are gone). Drops the
 * map of a map future. */
void crew__future_free(crew_future *f);

/* ------------------------------------------------------------ notify.c */

/* Appends done future f (NOTIFY set, ext allocated) to p's completion list
 * and signals the fd if there is one. */
void crew__notify_enqueue(crew_pool *p, crew_future *f);
/* Unlinks f from its pool's completion list if it is still there. */
void crew__notify_unlink(crew_future *f);

#endif /* CREW__POOL_CORE_H */
