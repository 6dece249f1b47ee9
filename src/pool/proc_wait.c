/*
 * proc_wait.c -- ops->wait of the process backend: a parent thread waiting
 * for a process task spins on its slot in shared memory and harvests it
 * itself, so a round trip never hops through the monitor thread.
 * Interface: crew__procs_wait in proc_internal.h.
 *
 * DESIGN
 *
 * A waiter claims the slot's watch word (0 -> 1) and spins on the state
 * word, then sets watch = 2 and futex-waits on it; the worker that stores
 * DONE reads watch and wakes a sleeping watcher (proc_layout.h has the
 * protocol). Only the watcher harvests a watched slot, so the slot cannot
 * be reused under its feet; a watcher that gives up (timeout) stores
 * watch = 0 and harvests a completion that raced with it.
 *
 * While a thread is in here it counts itself in h->pumping: workers that
 * finish unwatched tasks then do not wake the monitor (a system call each,
 * and a thread competing for the CPU) but count them in quiet_done, and the
 * thread sweeps them on its way out. So a thread that submits a batch and
 * waits for each future in turn pumps the pool itself.
 *
 * A future still in the overflow FIFO has no slot to watch: the waiter
 * sweeps (which frees slots and dispatches the FIFO) while spinning, then
 * parks on the future in short slices. A map's waiter harvests and
 * dispatches while spinning and, when nothing moves, watches the oldest
 * running chunk of its map.
 *
 * Threads: any parent thread (several may wait on one future: one watches,
 * the others park on the future, which the watcher completes). Lock: b->lk
 * only to find a map's running chunk. A worker crash: the monitor fails the
 * slot and wakes its watcher, which harvests it like any completion.
 */
#include "pool/proc_internal.h"

/* Spins (then sleeps) on slot x of generation gen until it is terminal,
 * claiming its watch word; harvests it. Returns 0 when f is done,
 * CREW_ETIMEDOUT, or 1 when the caller should fall back to parking on f. */
static int watch_slot(pb *b, crew_future *f, uint32_t x, uint32_t gen, const crew__deadline *d)
{
    slot_hdr *s = slot_at(b->h, x);
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&s->watch, &zero, 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return 1; /* somebody else watches it: they complete f */
    /* The slot may have been harvested and reused before we claimed watch. */
    uint32_t v = atomic_load_explicit(&s->state, memory_order_seq_cst);
    if (st_gen(v) != gen || st_phase(v) == PH_FREE || st_phase(v) == PH_HARVEST) {
        atomic_store_explicit(&s->watch, 0, memory_order_seq_cst);
        /* We may have hidden a terminal slot of someone else from the
         * monitor for a moment: look again. */
        v = atomic_load_explicit(&s->state, memory_order_seq_cst);
        if (st_terminal(v))
            crew__procs_harvest_one(b, x);
        return 1;
    }
    uint64_t start = crew__now_ns();
    unsigned i = 0;
    bool poll_only = !d->forever && crew__deadline_expired(d); /* timeout 0: no spin */
    while (!st_terminal(v) && !poll_only) {
        crew__cpu_relax();
        v = atomic_load_explicit(&s->state, memory_order_acquire);
        if ((++i & 63) == 0 && crew__now_ns() - start > CREW__SPIN_NS)
            break;
    }
    while (!st_terminal(v)) {
        if (crew__deadline_expired(d))
            break;
        atomic_store_explicit(&s->watch, 2, memory_order_seq_cst);
        v = atomic_load_explicit(&s->state, memory_order_seq_cst);
        if (st_terminal(v))
            break;
        crew__futex_wait(&s->state, v, d);
        v = atomic_load_explicit(&s->state, memory_order_acquire);
    }
    if (st_terminal(v) && crew__procs_harvest_one(b, x))
        return 0; /* harvest_one cleared watch with the slot */
    /* Timed out: stop watching, then make sure a completion that raced with
     * us is not left unharvested. */
    atomic_store_explicit(&s->watch, 0, memory_order_seq_cst);
    v = atomic_load_explicit(&s->state, memory_order_seq_cst);
    if (st_terminal(v))
        crew__procs_harvest_one(b, x);
    if (crew__future_done(f))
        return 0;
    /* The slot can be terminal while another thread (the monitor, a sweep)
     * is still harvesting it: then f is not done yet but the deadline has
     * not passed either. Returning 1 makes the caller park on f, which that
     * harvester completes. Only a real deadline is a timeout. */
    return crew__deadline_expired(d) ? CREW_ETIMEDOUT : 1;
}

/* The earlier of d and `secs` from now: waits that must look around now
 * and then (a queue that moves without telling us) sleep in such slices. */
static crew__deadline short_deadline(const crew__deadline *d, double secs)
{
    if (!d->forever && crew__deadline_left(d) < secs)
        return *d;
    crew__deadline s;
    crew__deadline_init(&s, secs);
    return s;
}

static int wait_inner(pb *b, crew_future *f, const crew__deadline *d)
{
    if (f->map) {
        /* A map: harvest chunks and dispatch more while spinning; when
         * nothing moves, watch the oldest running chunk of this map (the
         * worker wakes us when it is done, no monitor hop), or if there is
         * none in a slot, sleep briefly on the map future. */
        uint64_t last = crew__now_ns();
        while (!crew__future_done(f)) {
            if (crew__procs_sweep(b))
                last = crew__now_ns();
            if (crew__future_done(f))
                return 0;
            if (crew__deadline_expired(d))
                return CREW_ETIMEDOUT;
            if (crew__now_ns() - last > CREW__SPIN_NS) {
                int32_t cx = -1;
                uint32_t cgen = 0;
                pthread_mutex_lock(&b->lk);
                for (int32_t x = b->if_head; x >= 0; x = b->rec[x].next)
                    if (b->rec[x].kind == KIND_CHUNK && b->rec[x].m == f->map) {
                        uint32_t v = atomic_load_explicit(&slot_at(b->h, (uint32_t)x)->state,
                                                          memory_order_acquire);
                        if (!st_terminal(v) && st_phase(v) != PH_HARVEST) {
                            cx = x;
                            cgen = st_gen(v);
                            break;
                        }
                    }
                pthread_mutex_unlock(&b->lk);
                if (cx >= 0) {
                    crew__deadline dd = short_deadline(d, 0.05);
                    watch_slot(b, f, (uint32_t)cx, cgen, &dd);
                } else {
                    crew__deadline dd = short_deadline(d, 0.002);
                    crew__future_park(f, &dd);
                }
                last = crew__now_ns();
            } else {
                for (int k = 0; k < 64; k++)
                    crew__cpu_relax();
            }
        }
        return 0;
    }
    uint64_t last = crew__now_ns();
    for (;;) {
        if (crew__future_done(f))
            return 0;
        uintptr_t v = fslot_get(f);
        if (v != 0) {
            int rc = watch_slot(b, f, (uint32_t)(v & 0xffffffffu) - 1, (uint32_t)(v >> 32), d);
            if (rc <= 0)
                return rc;
            if (fslot_get(f) == v || crew__future_done(f))
                return crew__future_park(f, d);
            continue;
        }
        /* Still in the overflow FIFO: help the queue move, then look again.
         * Workers finish tiny tasks every few hundred ns, so a sweep that
         * found nothing finished is retried while spinning (as the map
         * branch does); only after CREW__SPIN_NS without progress do we
         * park, briefly. Parking at once capped a large batch waited with
         * crew_wait_all (which waits for the last future first) at one
         * sweep per millisecond: ~180k tasks/s instead of millions. */
        if (crew__procs_sweep(b) != 0) {
            last = crew__now_ns();
            continue;
        }
        if (crew__deadline_expired(d))
            return CREW_ETIMEDOUT;
        if (crew__now_ns() - last < CREW__SPIN_NS) {
            for (int k = 0; k < 64; k++)
                crew__cpu_relax();
            continue;
        }
        crew__deadline shortd = short_deadline(d, 0.001);
        int rc = crew__future_park(f, &shortd);
        if (rc == 0)
            return 0;
        last = crew__now_ns();
    }
}

/* ops->wait. While a thread is in here, workers that finish unwatched tasks
 * do not wake the monitor (a system call each, and a thread competing for
 * the CPU); they count them in quiet_done, and the thread sweeps them on
 * its way out. So a thread that submits a batch and waits for each future
 * in turn pumps the pool itself, with no monitor hop. */
int crew__procs_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
{
    pb *b = backend(p);
    shm_hdr *h = b->h;
    atomic_fetch_add_explicit(&h->pumping, 1, memory_order_seq_cst);
    int rc = wait_inner(b, f, d);
    atomic_fetch_sub_explicit(&h->pumping, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&h->quiet_done, memory_order_seq_cst) &&
        atomic_exchange_explicit(&h->quiet_done, 0, memory_order_seq_cst)) {
        /* The cheap sweep: finished slots before the first queued one. A
         * slot finished out of that order (a worker that claimed from a
         * stale ring read) is left to the monitor's full sweep, which we
         * ask for at most once per SWEEP_DUE_NS. */
        bool cut = false;
        crew__procs_sweep_ex(b, true, &cut);
        if (cut && !atomic_load_explicit(&b->sweep_due, memory_order_relaxed) &&
            !atomic_exchange_explicit(&b->sweep_due, 1, memory_order_acq_rel))
            kick_fd(b->ctlfd);
    }
    return rc;
}
