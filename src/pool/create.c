/*
 * create.c -- crew_pool_create: checks and normalises the options, picks
 * the backend for opts.kind and starts it.
 *
 * DESIGN
 *
 * This is the top of the pool's layers and the only file that names the
 * backends (their crew__pool_ops tables): the core (pool.c and the files
 * beside it) reaches a backend only through p->ops, and a backend calls
 * the core, never this file -- so the call graph has no cycle. A new
 * backend is its ops table (pool_internal.h says what each hook must do)
 * plus one case in backend_of(). Nothing here is shared or locked: the
 * pool is not visible to any other thread until crew_pool_create returns.
 */
#include "pool/future_alloc.h"

#include <string.h>

/* The backend for a pool kind, NULL if there is none. */
static const crew__pool_ops *backend_of(crew_pool_kind kind)
{
    switch (kind) {
    case CREW_THREADS: return &crew__pool_threads_ops;
    case CREW_PROCESSES: return &crew__pool_processes_ops;
    }
    return NULL;
}

int crew_pool_create(crew_pool **out, const crew_pool_options *opts)
{
    if (!out)
        return CREW_EINVAL;
    crew_pool_options o;
    if (opts)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    const crew__pool_ops *ops = backend_of(o.kind);
    if (!ops || o.workers < 0 || o.workers > 1024 ||
        !(o.task_timeout >= 0 && o.task_timeout <= CREW__TIME_MAX) ||
        !(o.kill_grace >= 0 && o.kill_grace <= CREW__TIME_MAX))
        return CREW_EINVAL;
    if (o.workers == 0)
        o.workers = crew_cpu_count();
    if (o.max_arg_size == 0)
        o.max_arg_size = 64 * 1024;
    if (o.max_result_size == 0)
        o.max_result_size = 64 * 1024;
    if (o.max_arg_size > UINT32_MAX || o.max_result_size > UINT32_MAX)
        return CREW_EINVAL;
    if (o.kill_grace == 0)
        o.kill_grace = 0.05;
    if (o.breaker_crashes == 0)
        o.breaker_crashes = 64;

    crew_pool *p = crew__pool_new(ops, &o);
    if (!p)
        return CREW_ENOMEM;
    int rc = ops->create(p, &o);
    if (rc) {
        crew__pool_abandon(p);
        return rc;
    }
    *out = p;
    return 0;
}
