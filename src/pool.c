/* pool.c -- skeleton: every public pool call, not implemented yet. */
#include "pool_internal.h"

int crew_task_cancelled(const crew_task *t)
{
    (void)t;
    return CREW_ENOTSUP;
}

int crew_task_worker(const crew_task *t)
{
    (void)t;
    return CREW_ENOTSUP;
}

crew_pool * crew_task_pool(crew_task *t)
{
    (void)t;
    return NULL;
}

int crew_pool_create(crew_pool **out, const crew_pool_options *opts)
{
    (void)out; (void)opts;
    return CREW_ENOTSUP;
}

int crew_pool_submit(crew_pool *p, crew_task_fn fn, const void *arg, size_t arg_len, crew_future **out)
{
    (void)p; (void)fn; (void)arg; (void)arg_len; (void)out;
    return CREW_ENOTSUP;
}

int crew_pool_shutdown(crew_pool *p, int cancel_pending)
{
    (void)p; (void)cancel_pending;
    return CREW_ENOTSUP;
}

int crew_pool_destroy(crew_pool *p)
{
    (void)p;
    return CREW_ENOTSUP;
}

int crew_pool_workers(const crew_pool *p)
{
    (void)p;
    return CREW_ENOTSUP;
}

int crew_pool_kind_of(const crew_pool *p)
{
    (void)p;
    return CREW_ENOTSUP;
}

int crew_pool_stats_get(crew_pool *p, crew_pool_stats *st)
{
    (void)p; (void)st;
    return CREW_ENOTSUP;
}

int crew_future_wait(crew_future *f, double timeout)
{
    (void)f; (void)timeout;
    return CREW_ENOTSUP;
}

int crew_future_done(const crew_future *f)
{
    (void)f;
    return CREW_ENOTSUP;
}

int crew_future_status(const crew_future *f)
{
    (void)f;
    return CREW_ENOTSUP;
}

int crew_future_result(const crew_future *f, const void **data, size_t *len)
{
    (void)f; (void)data; (void)len;
    return CREW_ENOTSUP;
}

int crew_future_failure(const crew_future *f, crew_failure *out)
{
    (void)f; (void)out;
    return CREW_ENOTSUP;
}

int crew_future_cancel(crew_future *f)
{
    (void)f;
    return CREW_ENOTSUP;
}

uint64_t crew_future_id(const crew_future *f)
{
    (void)f;
    return 0;
}

int crew_future_on_done(crew_future *f, crew_future_cb cb, void *data)
{
    (void)f; (void)cb; (void)data;
    return CREW_ENOTSUP;
}

int crew_future_destroy(crew_future *f)
{
    (void)f;
    return CREW_ENOTSUP;
}

int crew_wait_all(crew_future *const *fs, size_t n, double timeout)
{
    (void)fs; (void)n; (void)timeout;
    return CREW_ENOTSUP;
}

int crew_wait_any(crew_future *const *fs, size_t n, double timeout, size_t *index)
{
    (void)fs; (void)n; (void)timeout; (void)index;
    return CREW_ENOTSUP;
}

int crew_pool_map(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out, size_t out_size, size_t n, const crew_map_options *o)
{
    (void)p; (void)fn; (void)in; (void)in_size; (void)out; (void)out_size; (void)n; (void)o;
    return CREW_ENOTSUP;
}

int crew_pool_map_submit(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out, size_t out_size, size_t n, const crew_map_options *o, crew_future **out_future)
{
    (void)p; (void)fn; (void)in; (void)in_size; (void)out; (void)out_size; (void)n; (void)o; (void)out_future;
    return CREW_ENOTSUP;
}

int crew_future_progress(const crew_future *f, size_t *done, size_t *total)
{
    (void)f; (void)done; (void)total;
    return CREW_ENOTSUP;
}

int crew_pool_fd(crew_pool *p)
{
    (void)p;
    return CREW_ENOTSUP;
}

int crew_future_notify(crew_future *f, void *user_data)
{
    (void)f; (void)user_data;
    return CREW_ENOTSUP;
}

int crew_pool_completions(crew_pool *p, crew_future **out, size_t max, size_t *n)
{
    (void)p; (void)out; (void)max; (void)n;
    return CREW_ENOTSUP;
}

void * crew_future_user_data(const crew_future *f)
{
    (void)f;
    return NULL;
}

int crew__future_park(crew_future *f, const crew__deadline *d)
{
    (void)f; (void)d;
    return CREW_ENOTSUP;
}

int crew__future_complete(crew_future *f, int status, const void *result, size_t len,
                          const crew_failure *failure)
{
    (void)f; (void)status; (void)result; (void)len; (void)failure;
    return CREW_ENOTSUP;
}

bool crew__map_claim(crew__map *m, size_t *first, size_t *count)
{
    (void)m; (void)first; (void)count;
    return false;
}

void crew__map_done_range(crew__map *m, size_t first, size_t count, const int *statuses,
                          int status, const crew_failure *failure)
{
    (void)m; (void)first; (void)count; (void)statuses; (void)status; (void)failure;
}

void crew__map_cancel_rest(crew__map *m)
{
    (void)m;
}
