/*
 * threads_map.c -- a thread-pool worker running its share of a map.
 *
 * DESIGN
 *
 * threads_submit_map queues up to one helper future per worker (INTERNAL,
 * each holding a reference on the map). The worker (or outside waiter)
 * that pops one claims ranges of items with crew__map_claim until none is
 * left and runs them in place (m->in / m->out are this process's memory),
 * keeping the range's failures in a local tally that it reports once per
 * range (crew__map_done_tally): per item it pays the call, the status
 * store if the user asked for statuses, and the stop check below. A stop
 * (the map cancelled, shutdown(p, 1), destroy) is seen after the item that
 * was running: that item and the rest of its range end CREW_ECANCELED,
 * whatever they returned, as a task would; destroy's cancel_queued also
 * ends the items nobody claimed (crew__map_cancel_rest).
 */
#include "pool/threads_internal.h"

void crew__threads_run_map(worker *w, crew_future *hf)
{
    tpool *b = w->b;
    crew__map *m = hf->map;
    crew_task t = {
        .pool = b->p,
        .future = m->future,
        .cancel = &m->cancel,
        .cancel_mask = 1,
        .pool_cancel = &b->stop_all,
        .worker = w->index,
    };
    size_t first, count;
    int *st = m->statuses;
    w->depth++;
    while (!atomic_load_explicit(&b->cancel_queued, memory_order_relaxed) &&
           crew__map_claim(m, &first, &count)) {
        /* Locals: the calls below could change *m as far as the compiler
         * knows, and this loop is the map's whole per-item cost. */
        crew_task_fn fn = m->fn;
        const size_t in_size = m->in_size, out_size = m->out_size;
        const unsigned char *in = m->in ? m->in + first * in_size : NULL;
        unsigned char *out = m->out ? m->out + first * out_size : NULL;
        crew__map_tally tl = {0};
        size_t ff = SIZE_MAX;
        int fs = 0;
        const size_t end = first + count;
        size_t i = first;
        for (; i < end; i++) {
            size_t len = 0;
            int rc = fn(&t, in, in_size, out, out_size, &len);
            if (CREW__UNLIKELY(rc != 0 || len > out_size))
                rc = len > out_size ? CREW_E2BIG : rc > 0 ? 0 : rc; /* never a silent cut */
            /* Stopped while it ran (the map cancelled, shutdown(p, 1),
             * destroy): this item and the rest of the chunk end
             * CREW_ECANCELED, whatever it returned -- as a task would. */
            if (CREW__UNLIKELY(atomic_load_explicit(&m->cancel, memory_order_relaxed) |
                              atomic_load_explicit(&b->stop_all, memory_order_relaxed)))
                break;
            if (CREW__UNLIKELY(rc < 0)) {
                if (ff == SIZE_MAX) {
                    ff = i;
                    fs = rc;
                }
                crew__map_tally_add(&tl, rc);
            }
            if (st)
                st[i] = rc;
            if (in)
                in += in_size;
            if (out)
                out += out_size;
        }
        if (CREW__UNLIKELY(i < end)) {
            if (ff == SIZE_MAX) {
                ff = i;
                fs = CREW_ECANCELED;
            }
            crew__map_tally_add_n(&tl, CREW_ECANCELED, end - i);
            if (st)
                for (size_t k = i; k < end; k++)
                    st[k] = CREW_ECANCELED;
        }
        crew__map_done_tally(m, first, count, &tl, ff, fs, NULL);
    }
    w->depth--;
    if (atomic_load_explicit(&b->cancel_queued, memory_order_relaxed))
        crew__map_cancel_rest(m);
    crew__map_unref(m);
    crew__future_release(hf);
    pending_done(b);
}
