/*
 * pool_processes.c -- the process backend of crew_pool (engineer E takes
 * this file over and replaces this stub). Interface: src/pool_internal.h.
 *
 * Until then, creating a CREW_PROCESSES pool returns CREW_ENOTSUP.
 */
#include "pool_internal.h"

static int procs_create(crew_pool *p, const crew_pool_options *opts)
{
    (void)p;
    (void)opts;
    return CREW_ENOTSUP;
}

const crew__pool_ops crew__pool_processes_ops = {
    .name = "processes",
    .create = procs_create,
};
