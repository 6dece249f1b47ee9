/*
 * pool_processes.c -- the process backend of crew_pool: tasks run in worker
 * processes, cross the process boundary through shared memory, and the pool
 * survives workers that crash, hang, leak or are killed from outside.
 * Interface with the core: src/pool/pool_internal.h (crew__pool_ops). The
 * whole picture: docs/processes-pool.md.
 *
 * DESIGN
 *
 * This file is the backend's face to the core: the ops table, and for each
 * op the few lines that tie the parts together. The parts, bottom up (each
 * calls only those before it; proc_internal.h has the list):
 *   proc_layout.h   the shared memory: slots, the queue, worker records,
 *                   and the wake-up protocol between parent and workers;
 *   proc_worker.c   the worker process (sees nothing but proc_layout.h);
 *   proc_regions.c  crew_shm regions handed to workers (zero copy);
 *   proc_slots.c    dispatch, harvest, sweep, cancelling a slot;
 *   proc_wait.c     ops->wait: a parent thread spinning on a task's slot;
 *   proc_monitor.c  the monitor thread: starts, deaths, deadlines,
 *                   recycling, the breaker.
 *
 * Threads: any user thread submits, cancels, waits and shuts down; the
 * monitor thread (one per pool) handles deaths and timers; workers are
 * processes. Lock: b->lk, a leaf with respect to the core (proc_internal.h).
 *
 * Create lays out the shared memory (slots: 64 per worker, at most 4096),
 * then the monitor starts the workers. Shutdown with cancel fails what is
 * queued and asks running tasks to stop (crew_task_cancelled), stopping
 * their workers after kill_grace if they do not; then it waits until
 * nothing is in flight. Destroy stops the monitor and the workers (idle
 * ones see h->stop at once; a busy one gets kill_grace, then SIGKILL) and
 * frees everything. A crash of a worker at any point is the monitor's
 * business; a crash of the parent takes the workers with it (their
 * parent-death signal).
 */
#include "pool/proc_internal.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>

/* ------------------------------------------------------------ ops: submit */

/* Queues f; si (NULL for a plain task) names the crew_shm region its
 * argument stays in, registered with the pool under lk. */
static int submit_task(pb *b, crew_future *f, const crew__shm_info *si)
{
    if (CREW__UNLIKELY(atomic_load_explicit(&b->broken, memory_order_relaxed)))
        return CREW_EBROKEN;
    uint32_t fi;
    int rc = crew__procs_fn_index(b, f->fn, &fi);
    if (rc)
        return rc;
    f->backend[1] = fi;
    f->backend[0] = 0;
    pthread_mutex_lock(&b->lk);
    rc = crew__procs_admit_locked(b);
    if (CREW__UNLIKELY(si != NULL) && rc == 0) {
        uint32_t idx, gen;
        rc = crew__procs_reg_get_locked(b, si, &idx, &gen);
        if (rc == 0)
            f->backend[1] |= ((uintptr_t)(idx + 1) << 32) | ((uintptr_t)gen << 40);
    }
    if (CREW__UNLIKELY(rc)) {
        pthread_mutex_unlock(&b->lk);
        return rc;
    }
    bool queued = crew__procs_enqueue_locked(b, f);
    pthread_mutex_unlock(&b->lk);
    if (queued)
        crew__procs_wake_workers(b);
    return 0;
}

static int procs_submit(crew_pool *p, crew_future *f) { return submit_task(backend(p), f, NULL); }

/* ops->submit_shm: a task whose argument stays in its crew_shm region. */
static int procs_submit_shm(crew_pool *p, crew_future *f)
{
    crew__shm_arg d;
    memcpy(&d, f->arg_inline, sizeof d);
    crew__shm_info si;
    if (crew__shm_info_of(d.region, &si) != 0)
        return CREW_EINVAL; /* not a live handle of this process */
    return submit_task(backend(p), f, &si);
}

/* Map records that lie in a live region travel in place: registers the
 * region for pm's side (under lk). Falls back to copying (returns without
 * setting *reg) when the region is not usable or the table is full. */
static int procs_submit_map(crew_pool *p, crew__map *m)
{
    pb *b = backend(p);
    if (atomic_load_explicit(&b->broken, memory_order_relaxed))
        return CREW_EBROKEN;
    uint32_t fi;
    int rc = crew__procs_fn_index(b, m->fn, &fi);
    if (rc)
        return rc;
    pmap *pm = crew__calloc(1, sizeof *pm);
    if (!pm)
        return CREW_ENOMEM;
    m->backend[1] = fi;
    pm->m = m;
    crew__map_ref(m);
    pthread_mutex_lock(&b->lk);
    if (atomic_load_explicit(&b->broken, memory_order_relaxed)) {
        pthread_mutex_unlock(&b->lk);
        crew__map_unref(m);
        crew__free(pm);
        return CREW_EBROKEN;
    }
    if (m->in_shm)
        crew__procs_map_side_locked(b, m->in_shm, m->in, &pm->in_reg, &pm->in_gen, &pm->in_base);
    if (m->out_shm)
        crew__procs_map_side_locked(b, m->out_shm, m->out, &pm->out_reg, &pm->out_gen,
                                    &pm->out_base);
    pmap **pp = &b->maps;
    while (*pp)
        pp = &(*pp)->next;
    *pp = pm;
    int queued = crew__procs_dispatch_more_locked(b);
    pthread_mutex_unlock(&b->lk);
    if (queued)
        crew__procs_wake_workers(b);
    return 0;
}

/* ------------------------------------------------------------ ops: cancel */

/* pick for crew__procs_transition_all: the chunks of map ctx->m, cancelled
 * (QUEUED: taken; RUNNING: asked to stop, its worker stopped after the
 * grace if it does not). */
typedef struct cancel_ctx {
    const crew__map *m;
    bool kick; /* the monitor has a kill to carry out */
} cancel_ctx;

static pick_verdict pick_cancel_chunk(pb *b, uint32_t x, void *ctx)
{
    cancel_ctx *c = ctx;
    const rec *r = &b->rec[x];
    if (r->kind != KIND_CHUNK || r->m != c->m)
        return PICK_SKIP;
    uint32_t v = atomic_load(&slot_at(b->h, x)->state);
    return crew__procs_cancel_slot_locked(b, x, st_gen(v), CREW_ECANCELED, &c->kick) ? PICK_TAKE
                                                                                    : PICK_SKIP;
}

/* A map: its undispatched items end CREW_ECANCELED now, its chunks in
 * slots as they are cancelled. (The core has set m->cancel: a death inside
 * one of its chunks hands nothing back.) */
static int cancel_map(pb *b, crew__map *m)
{
    pthread_mutex_lock(&b->lk);
    pmap *pm = crew__procs_pmap_of_locked(b, m);
    size_t pf = 0, pc = 0;
    redo *rd = NULL;
    if (pm) {
        pf = pm->first;
        pc = pm->count;
        pm->count = 0;
        pm->exhausted = true;
        rd = pm->redo;
        pm->redo = NULL;
    }
    pthread_mutex_unlock(&b->lk);
    if (pc)
        crew__map_done_range(m, pf, pc, NULL, CREW_ECANCELED, NULL);
    crew__procs_redo_fail(m, rd, CREW_ECANCELED);
    cancel_ctx c = {.m = m};
    crew__procs_transition_all(b, pick_cancel_chunk, &c);
    pthread_mutex_lock(&b->lk);
    pmap *gone = crew__procs_maps_collect_finished_locked(b);
    pthread_mutex_unlock(&b->lk);
    crew__procs_maps_release(b, gone);
    if (c.kick)
        kick_fd(b->ctlfd);
    return 0;
}

static int procs_cancel(crew_pool *p, crew_future *f)
{
    pb *b = backend(p);
    if (f->map)
        return cancel_map(b, f->map);
    bool kick = false;
    pthread_mutex_lock(&b->lk);
    uintptr_t v = fslot_get(f);
    if (v == 0) {
        /* In the overflow FIFO? */
        crew_future **pp = &b->ov_head, *prev = NULL;
        while (*pp && *pp != f) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = f->next;
            if (b->ov_tail == f)
                b->ov_tail = prev;
            f->next = NULL;
            b->n_ov--;
            pthread_mutex_unlock(&b->lk);
            crew__procs_future_unref_region(b, f);
            crew__future_complete(f, CREW_ECANCELED, NULL, 0, NULL);
            crew__procs_bump_progress(b);
            return 0;
        }
        pthread_mutex_unlock(&b->lk);
        return CREW_ESTATE;
    }
    uint32_t x = (uint32_t)(v & 0xffffffffu) - 1, gen = (uint32_t)(v >> 32);
    bool canceled = crew__procs_cancel_slot_locked(b, x, gen, CREW_ECANCELED, &kick);
    pthread_mutex_unlock(&b->lk);
    if (canceled)
        crew__procs_after_parent_transition(b, x);
    if (kick)
        kick_fd(b->ctlfd);
    return crew__future_done(f) && !canceled && !kick ? CREW_ESTATE : 0;
}

/* ------------------------------------------------------------ create / destroy */

static void free_backend(pb *b)
{
    if (b->h)
        munmap(b->h, b->size);
    crew__close(b->memfd);
    crew__close(b->evfd);
    crew__close(b->ctlfd);
    crew__close(b->epfd);
    crew__close(b->tfd);
    for (int i = 0; i < REG_MAX; i++)
        crew__close(b->regs[i].fd);
    pthread_mutex_destroy(&b->lk);
    crew__free(b->free_stack);
    crew__free(b->rec);
    crew__free(b->w);
    crew__free(b);
}

/* The shared memory's geometry for nslots slots (see proc_layout.h),
 * written into the header h_geo (not yet mapped: a local copy). */
static void layout_plan(shm_hdr *g, const crew_pool_options *o, uint32_t nslots)
{
    size_t arg_cap = ALIGN64(o->max_arg_size), res_area = ALIGN64(o->max_result_size) + 64;
    size_t off = ALIGN64(sizeof(shm_hdr));
    g->nslots = nslots;
    g->ring = nslots * 2;
    g->slot_size = SLOT_HDR + arg_cap + res_area;
    g->arg_cap = arg_cap;
    g->res_cap = o->max_result_size;
    g->res_area = res_area;
    g->wrec_off = off;
    off += ALIGN64(sizeof(wrec) * (size_t)o->workers);
    g->fns_off = off;
    off += ALIGN64(sizeof(fn_entry) * FN_MAX);
    g->ring_off = off;
    off += ALIGN64(sizeof(uint32_t) * g->ring);
    off = (off + 4095) & ~(size_t)4095;
    g->slots_off = off;
    off += g->slot_size * nslots;
    g->size = (off + 4095) & ~(size_t)4095;
    g->timeout_ns = (uint64_t)(o->task_timeout * 1e9);
    g->max_mem = o->max_worker_memory;
    g->max_tasks = o->max_tasks_per_worker;
}

/* Allocates the parent's tables and maps the shared memory, laid out and
 * with every slot free. 0 or an error (free_backend frees what was made). */
static int layout_init(pb *b)
{
    const crew_pool_options *o = opts(b);
    uint32_t nslots = (uint32_t)o->workers * SLOTS_PER_WORKER;
    if (nslots > SLOTS_MAX)
        nslots = SLOTS_MAX;
    b->free_stack = crew__calloc(nslots, sizeof *b->free_stack);
    b->rec = crew__calloc(nslots, sizeof *b->rec);
    b->w = crew__calloc((size_t)o->workers, sizeof *b->w);
    if (!b->free_stack || !b->rec || !b->w)
        return CREW_ENOMEM;
    for (int w = 0; w < o->workers; w++)
        b->w[w].sock = -1;
    shm_hdr g;
    memset(&g, 0, sizeof g);
    layout_plan(&g, o, nslots);
    b->size = g.size;
    void *addr;
    int rc = crew__memfd_map("crew-pool", b->size, &b->memfd, &addr);
    if (rc)
        return rc;
    b->h = addr;
    shm_hdr *h = b->h;
    h->nslots = g.nslots;
    h->ring = g.ring;
    h->size = g.size;
    h->slot_size = g.slot_size;
    h->arg_cap = g.arg_cap;
    h->res_cap = g.res_cap;
    h->res_area = g.res_area;
    h->wrec_off = g.wrec_off;
    h->fns_off = g.fns_off;
    h->ring_off = g.ring_off;
    h->slots_off = g.slots_off;
    h->timeout_ns = g.timeout_ns;
    h->max_mem = g.max_mem;
    h->max_tasks = g.max_tasks;
    _Atomic uint32_t *rg = ring_at(h);
    for (uint32_t i = 0; i < h->ring; i++)
        atomic_store_explicit(&rg[i], UINT32_MAX, memory_order_relaxed);
    atomic_store(&h->mon_parked, 0);
    h->magic = SHM_MAGIC;
    for (uint32_t i = 0; i < nslots; i++) {
        b->free_stack[i] = nslots - 1 - i;
        b->rec[i].prev = b->rec[i].next = -1;
    }
    b->n_free = nslots;
    return 0;
}

static int procs_create(crew_pool *p, const crew_pool_options *o)
{
    if (o->start_method < CREW_START_DEFAULT || o->start_method > CREW_START_FORKSERVER)
        return CREW_EINVAL;
    pb *b = crew__calloc(1, sizeof *b);
    if (!b)
        return CREW_ENOMEM;
    b->pool = p;
    b->start_method =
        o->start_method == CREW_START_DEFAULT ? CREW_START_FORKSERVER : o->start_method;
    b->memfd = b->evfd = b->ctlfd = b->epfd = b->tfd = -1;
    b->if_head = b->if_tail = -1;
    for (int i = 0; i < REG_MAX; i++)
        b->regs[i].fd = -1;
    pthread_mutex_init(&b->lk, NULL);
    int rc = layout_init(b);
    if (rc)
        goto fail;
    p->backend = b;
    rc = crew__procs_monitor_start(b);
    if (rc) {
        crew__procs_stop_workers(b);
        goto fail;
    }
    return 0;
fail:
    p->backend = NULL;
    free_backend(b);
    return rc;
}

static int procs_shutdown(crew_pool *p, int cancel_pending)
{
    pb *b = backend(p);
    atomic_store(&b->shutting, 1);
    if (cancel_pending) {
        crew__procs_fail_all_queued(b, CREW_ECANCELED);
        /* Running tasks: ask them to stop (crew_task_cancelled), and stop
         * their workers after kill_grace if they do not. */
        bool kick = false;
        pthread_mutex_lock(&b->lk);
        for (int32_t x = b->if_head; x >= 0; x = b->rec[x].next) {
            slot_hdr *s = slot_at(b->h, (uint32_t)x);
            uint32_t v = atomic_load(&s->state);
            if (st_phase(v) == PH_RUNNING) {
                atomic_store(&s->cancel, 1);
                pworker *pw = &b->w[st_worker(v)];
                if (pw->alive && !pw->kill_reason) {
                    crew__procs_request_kill_locked(b, st_worker(v), v, UINT32_MAX, CREW_ECANCELED);
                    /* SIGTERM only after the grace period: a cooperative
                     * task may stop by itself first. */
                    pw->term_at = 1;
                    pw->kill_at = crew__now_ns() + (uint64_t)(opts(b)->kill_grace * 1e9);
                    kick = true;
                }
            }
        }
        pthread_mutex_unlock(&b->lk);
        if (kick)
            kick_fd(b->ctlfd);
    }
    /* From a done callback (the monitor thread, or a waiter completing a
     * future): the monitor is what the wait below needs, so do not wait. */
    if (crew__pool_in_callback(p))
        return 0;
    /* Wait until nothing is queued or in flight. */
    for (;;) {
        uint32_t seq = atomic_load_explicit(&b->progress, memory_order_seq_cst);
        crew__procs_sweep(b);
        pthread_mutex_lock(&b->lk);
        /* (maps that are over without a chunk: e.g. cancelled before any ran) */
        pmap *gone = crew__procs_maps_collect_finished_locked(b);
        bool idle = b->n_inflight == 0 && b->n_ov == 0 && b->maps == NULL;
        pthread_mutex_unlock(&b->lk);
        crew__procs_maps_release(b, gone);
        if (idle)
            return 0;
        crew__deadline d;
        crew__deadline_init(&d, 0.01);
        atomic_fetch_add_explicit(&b->progress_waiters, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&b->progress, memory_order_seq_cst) == seq)
            crew__futex_wait(&b->progress, seq, &d);
        atomic_fetch_sub_explicit(&b->progress_waiters, 1, memory_order_seq_cst);
    }
}

static void procs_destroy(crew_pool *p)
{
    pb *b = backend(p);
    if (!b)
        return;
    crew__procs_stop_workers(b);
    /* Every future is complete (shutdown(p, 1) ran); maps are released. */
    crew__procs_maps_release(b, b->maps);
    b->maps = NULL;
    p->backend = NULL;
    free_backend(b);
}

static void procs_stats(crew_pool *p, crew_pool_stats *st)
{
    pb *b = backend(p);
    if (!b)
        return;
    st->workers_started = atomic_load(&b->started);
    st->workers_recycled = atomic_load(&b->recycled);
    st->workers_alive = atomic_load(&b->alive);
    st->broken = atomic_load(&b->broken) ? 1 : 0;
}

const crew__pool_ops crew__pool_processes_ops = {
    .name = "processes",
    .create = procs_create,
    .submit = procs_submit,
    .submit_map = procs_submit_map,
    .cancel = procs_cancel,
    .wait = crew__procs_wait,
    .shutdown = procs_shutdown,
    .destroy = procs_destroy,
    .stats = procs_stats,
    .submit_shm = procs_submit_shm,
    .shutdown_in_callback = true,
};
