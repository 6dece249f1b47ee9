/*
 * pool_threads.c -- the thread backend of crew_pool: its ops table and the
 * hooks that start, feed, stop and count it. threads_internal.h lists the
 * backend's other files and holds its queues and sleep protocol.
 *
 * DESIGN
 *
 * Cancellation is cooperative: crew_future_cancel on a queued task completes
 * it CREW_ECANCELED at once (the lane still holds the pointer; the worker
 * that pops it sees it is no longer QUEUED and just drops its hold); on a
 * running task it sets the CANCEL bit that crew_task_cancelled() reads, and
 * the future ends CREW_ECANCELED when the task returns. task_timeout: the
 * task's deadline is checked by crew_task_cancelled() and when it returns;
 * past it the future ends CREW_ETIMEDOUT. There is no watchdog thread: a task
 * that never returns keeps its worker.
 *
 * A crash (SIGSEGV, abort) in a task kills the process: threads share it.
 *
 * Shutdown waits for quiescence: every lane and the overflow empty and every
 * worker idle. Workers that go idle while the pool is shut bump idle_epoch
 * (a futex word) after clearing their busy flag; the shutdown caller reads
 * the epoch before checking, so it cannot miss the last worker going idle.
 * Destroy sets `exiting`, wakes and joins every worker, then completes
 * whatever is still queued (submits that raced with shutdown) with
 * CREW_ECANCELED.
 *
 * Locks: ovf_lock (the overflow FIFO) is the backend's only one, a leaf;
 * everything else is atomics and futex words.
 */
#include "pool/threads_internal.h"

#include <stdio.h>
#include <sys/mman.h>

static void tpool_free(tpool *b)
{
    for (int i = 0; i < b->n; i++) {
        worker *w = &b->w[i];
        if (w->lane.slots)
            munmap(w->lane.slots, RING_CAP * sizeof(ring_slot));
        if (w->scratch && w->scratch[0])
            munmap(w->scratch[0], b->result_cap);
        for (unsigned k = 1; k < w->scratch_n; k++)
            crew__free(w->scratch[k]);
        crew__free(w->scratch);
    }
    pthread_mutex_destroy(&b->ovf_lock);
    crew__free(b->w);
    crew__free(b);
}

static void stop_workers(tpool *b)
{
    atomic_store_explicit(&b->exiting, 1, memory_order_seq_cst);
    crew__threads_wake_all(b);
    for (int i = 0; i < b->n; i++)
        if (b->w[i].started)
            pthread_join(b->w[i].thread, NULL);
}

static int threads_create(crew_pool *p, const crew_pool_options *o)
{
    tpool *b = crew__calloc(1, sizeof *b);
    if (!b)
        return CREW_ENOMEM;
    b->p = p;
    b->n = o->workers;
    b->result_cap = o->max_result_size;
    b->timeout_ns = o->task_timeout > 0 ? (uint64_t)(o->task_timeout * 1e9) : 0;
    if (o->task_timeout > 0 && b->timeout_ns == 0)
        b->timeout_ns = 1;
    b->max_pending = o->max_pending;
    pthread_mutex_init(&b->ovf_lock, NULL);
    b->w = crew__calloc((size_t)b->n, sizeof *b->w);
    if (!b->w) {
        pthread_mutex_destroy(&b->ovf_lock);
        crew__free(b);
        return CREW_ENOMEM;
    }
    int rc = 0;
    for (int i = 0; i < b->n && rc == 0; i++) {
        worker *w = &b->w[i];
        w->b = b;
        w->index = i;
        atomic_init(&w->busy, 1);
        w->scratch_cap = b->result_cap;
        w->lane.mask = RING_CAP - 1;
        /* Fresh anonymous pages: zero means "empty slot, lap 0", and pages
         * a lane never reaches are never resident (an idle worker costs no
         * lane memory). Not crew__malloc: that would memset, touching it all. */
        void *m = mmap(NULL, RING_CAP * sizeof(ring_slot), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        w->lane.slots = m == MAP_FAILED ? NULL : m;
        /* The depth-0 result buffer, mapped like the lane: an idle worker
         * whose tasks return small results touches one page of it, one
         * that returns none touches nothing (a malloc'd one costs a header
         * page per worker). Deeper buffers (nested waits) are malloc'd. */
        w->scratch = crew__calloc(4, sizeof(void *));
        if (w->scratch) {
            w->scratch_n = 4;
            void *r = mmap(NULL, b->result_cap, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            w->scratch[0] = r == MAP_FAILED ? NULL : r;
        }
        if (!w->lane.slots || !w->scratch || !w->scratch[0])
            rc = CREW_ENOMEM;
    }
    p->backend = b;
    for (int i = 0; i < b->n && rc == 0; i++) {
        worker *w = &b->w[i];
        int e = pthread_create(&w->thread, NULL, crew__threads_worker_main, w);
        if (e) {
            rc = e == EAGAIN ? CREW_EAGAIN : -e;
            break;
        }
        w->started = true;
        char name[16];
        snprintf(name, sizeof name, "crew-pool-%d", i % 10000);
        pthread_setname_np(w->thread, name);
    }
    if (rc) {
        stop_workers(b);
        tpool_free(b);
        p->backend = NULL;
    }
    return rc;
}

static int threads_submit(crew_pool *p, crew_future *f)
{
    tpool *b = p->backend;
    if (CREW__UNLIKELY(b->max_pending)) {
        if (atomic_fetch_add_explicit(&b->pending, 1, memory_order_relaxed) >= b->max_pending) {
            atomic_fetch_sub_explicit(&b->pending, 1, memory_order_relaxed);
            return CREW_EAGAIN;
        }
    }
    enqueue(b, pick_lane(b), f);
    return 0;
}

static int threads_submit_map(crew_pool *p, crew__map *m)
{
    tpool *b = p->backend;
    size_t k = (size_t)b->n;
    if (m->chunk_size) {
        size_t chunks = (m->n + m->chunk_size - 1) / m->chunk_size;
        if (chunks < k)
            k = chunks;
    } else if (m->n < k) {
        k = m->n;
    }
    size_t pushed = 0;
    int lane = pick_lane(b);
    for (size_t i = 0; i < k; i++) {
        crew_future *hf = crew__future_alloc_internal(p);
        if (!hf)
            break;
        hf->map = m;
        crew__map_ref(m);
        if (b->max_pending)
            atomic_fetch_add_explicit(&b->pending, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->not_submits, 1, memory_order_relaxed);
        enqueue(b, lane, hf);
        if (++lane >= b->n)
            lane = 0;
        pushed++;
    }
    return pushed ? 0 : CREW_ENOMEM;
}

/* The core set the CANCEL bit already (a running task polls it with
 * crew_task_cancelled, and its completion turns into CREW_ECANCELED): what
 * is left is ending a queued task now. The lane still holds it (KEEP): the
 * worker that pops it finds it no longer QUEUED and drops its hold. */
static int threads_cancel(crew_pool *p, crew_future *f)
{
    (void)p;
    if (f->map)
        return 0; /* the core stops the map; running items see m->cancel */
    crew__future_complete_ex(f, CREW_ECANCELED, NULL, 0, NULL, CREW__C_KEEP | CREW__C_QUEUED);
    return 0;
}

static bool quiescent(tpool *b)
{
    if (crew__threads_any_work(b) || atomic_load_explicit(&b->ext_busy, memory_order_seq_cst))
        return false;
    for (int i = 0; i < b->n; i++)
        if (atomic_load_explicit(&b->w[i].busy, memory_order_seq_cst))
            return false;
    return true;
}

static int threads_shutdown(crew_pool *p, int cancel_pending)
{
    tpool *b = p->backend;
    if (cancel_pending) {
        atomic_store(&b->cancel_queued, 1);
        atomic_store(&b->stop_all, 1);
    }
    crew__threads_wake_all(b);
    /* Waiting here would wait for ourselves: a task of the pool, or a done
     * callback (it runs on the worker or waiter that completed the task,
     * counted busy until the callback returns). */
    if (crew__threads_in_task(p) || crew__pool_in_callback(p))
        return 0;
    for (;;) {
        uint32_t e = atomic_load_explicit(&b->idle_epoch, memory_order_seq_cst);
        if (quiescent(b))
            break;
        crew__futex_wait(&b->idle_epoch, e, NULL);
    }
    return 0;
}

static void threads_destroy(crew_pool *p)
{
    tpool *b = p->backend;
    stop_workers(b);
    /* Submits that raced with shutdown may have left work behind. */
    atomic_store(&b->cancel_queued, 1);
    for (int i = 0; i < b->n; i++) {
        crew_future *f;
        while ((f = lane_pop(&b->w[i].lane)) != NULL)
            crew__threads_drop_queued(b, f);
    }
    crew_future *f;
    while ((f = ovf_pop(b)) != NULL)
        crew__threads_drop_queued(b, f);
    tpool_free(b);
    p->backend = NULL;
}

static void threads_stats(crew_pool *p, crew_pool_stats *st)
{
    tpool *b = p->backend;
    if (!b)
        return;
    /* Tails before not_submits (each not-submit is counted before its
     * push): a snapshot taken while tasks are submitted may lag, never lead. */
    uint64_t pushes = atomic_load_explicit(&b->ovf_total, memory_order_acquire);
    for (int i = 0; i < b->n; i++)
        pushes += atomic_load_explicit(&b->w[i].lane.tail, memory_order_acquire);
    st->submitted += pushes - atomic_load_explicit(&b->not_submits, memory_order_relaxed);
    for (int i = 0; i < b->n; i++) {
        worker *w = &b->w[i];
        st->completed += atomic_load_explicit(&w->n_ok, memory_order_relaxed);
        st->failed += atomic_load_explicit(&w->n_failed, memory_order_relaxed);
        st->canceled += atomic_load_explicit(&w->n_canceled, memory_order_relaxed);
        st->timed_out += atomic_load_explicit(&w->n_timed_out, memory_order_relaxed);
    }
    st->completed += atomic_load_explicit(&b->ext_ok, memory_order_relaxed);
    st->failed += atomic_load_explicit(&b->ext_failed, memory_order_relaxed);
    st->canceled += atomic_load_explicit(&b->ext_canceled, memory_order_relaxed);
    st->timed_out += atomic_load_explicit(&b->ext_timed_out, memory_order_relaxed);
    st->workers_started = (uint64_t)b->n;
    st->workers_alive = b->n;
}

const crew__pool_ops crew__pool_threads_ops = {
    .name = "threads",
    .create = threads_create,
    .submit = threads_submit,
    .submit_map = threads_submit_map,
    .cancel = threads_cancel,
    .wait = crew__threads_wait,
    .shutdown = threads_shutdown,
    .destroy = threads_destroy,
    .stats = threads_stats,
    .in_task = crew__threads_in_task,
    .is_worker = crew__threads_is_worker,
    .help_wait = crew__threads_help_wait,
    .wake_helpers = crew__threads_wake_helpers,
    .counts_submits = true,
    .shutdown_in_callback = true,
};
