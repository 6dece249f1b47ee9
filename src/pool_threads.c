/*
 * pool_threads.c -- the thread backend of crew_pool (work in progress).
 */
#include "pool_internal.h"

static int threads_create(crew_pool *p, const crew_pool_options *opts)
{
    (void)p;
    (void)opts;
    return CREW_ENOTSUP;
}

int crew__threads_worker_index(const crew_pool *p)
{
    (void)p;
    return -1;
}

int crew__threads_help_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
{
    (void)p;
    return crew__future_park(f, d);
}

void crew__threads_wake_helpers(crew_pool *p, crew_future *f)
{
    (void)p;
    (void)f;
}

const crew__pool_ops crew__pool_threads_ops = {
    .name = "threads",
    .create = threads_create,
};
