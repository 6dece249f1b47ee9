/*
 * map.c -- the map driver: crew_pool_map / crew_pool_map_submit start a
 * map, backends claim ranges of its items (crew__map_claim) and report
 * them (crew__map_done_range / crew__map_done_tally); the map's future
 * completes when the last item is in.
 *
 * DESIGN
 *
 * A map is one user-visible future (f->map) plus a crew__map describing
 * the records (pool_internal.h, "Map"). The driver keeps no lock on the
 * hot path: a claim is one CAS on m->next (guided: a quarter of a fair
 * share of what is left per claim, so early claims are big and the tail is
 * fine-grained; or the fixed chunk_size), a report is one fetch_add on
 * m->done plus, for a range with failures, counters and m->fail_lock (the
 * lowest failed item's details). Whoever reports the last item completes
 * the map future, with the lowest failure's status. Stats count items, not
 * the map future: a map of n items adds n to `submitted` at start and each
 * item's outcome as its range is reported. The crew__map memory is
 * reference-counted (the map future's hold plus one per backend helper:
 * crew__map_ref / crew__map_unref, inline in pool_internal.h) because a
 * helper may still read m after the last report.
 */
#include "pool/pool_core.h"
#include "pool/future_alloc.h"
#include "ipc/shm_internal.h"

#include <string.h>

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
            c = rem / (4 * (size_t)m->pool->opts.workers);
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
    CREW__ASSERT(n_failed <= count);
    /* Items are what crew_pool_stats counts for a map: each one's outcome
     * here, once per item, as count_outcome does for a task. */
    crew_pool *p = m->pool;
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
    CREW__ASSERT(prev + count <= m->n);
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
    crew_future *f = crew__future_alloc(p);
    if (!f) {
        crew__map_unref(m); /* the only reference: frees it */
        return CREW_ENOMEM;
    }
    f->id = crew__take_id(p);
    f->fn = fn;
    f->map = m;
    m->future = f;
    m->pool = p;
    int rc = p->ops->submit_map ? p->ops->submit_map(p, m) : CREW_ENOTSUP;
    if (rc) {
        crew__future_free(f); /* drops the map too */
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
