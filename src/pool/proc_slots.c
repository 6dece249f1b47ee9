/*
 * proc_slots.c -- the parent's side of the task slots of a process pool:
 * dispatch (a future or a map chunk into a free slot, onto the shared
 * queue), harvest (a terminal slot's outcome into its future or map), the
 * sweep that harvests what nobody watches, and cancelling a slot.
 * Interface: proc_internal.h.
 *
 * DESIGN
 *
 * The parent always knows which tasks are in flight: b->rec[] (parent
 * memory) maps each slot to its future or map chunk, and an in-flight list
 * keeps them in dispatch order, so that the cheap sweep of a thread leaving
 * a wait can stop at the first still-QUEUED slot (the monitor's sweep looks
 * at all of them). Tasks that find no free slot wait in an overflow FIFO of
 * futures (the core already copied their arguments); whoever frees a slot
 * dispatches the next one (release_slots -> dispatch_more).
 *
 * Map: a map is split into chunks that travel like tasks (kind CHUNK): the
 * slot's argument area holds the chunk's input records, its result area the
 * output records and, if any item failed, the per-item statuses. Records
 * inside a crew_shm region stay there (proc_regions.c): the worker reads /
 * writes them in place and only statuses use the slot. A worker death fails
 * only the chunk it was running (its items end CREW_ECRASHED), or only the
 * item it was running: the monitor splits the chunk (proc_monitor.c) and
 * hands the unstarted items back (pmap.redo) to run first.
 *
 * Harvest. Exactly one thread harvests a terminal slot: the one whose CAS
 * terminal -> HARVEST wins (claim_slot). It copies the task fields of
 * rec[x] (stable while the slot is HARVEST), delivers the outcome with no
 * lock held (callbacks may run), then frees the slot and refills it under
 * lk. A slot a parent thread moved to a terminal state itself (cancel, the
 * breaker) goes through after_parent_transition: harvested at once unless a
 * watcher will (then the watcher is woken).
 *
 * Threads: submitting threads (dispatch, under lk), waiting threads and the
 * monitor (harvest, sweep), cancelling threads. Lock: b->lk only (see
 * proc_internal.h). A worker crash touches nothing here directly: the
 * monitor moves its slot to FAILED (or back to QUEUED) and the sweep
 * harvests it.
 */
#include "pool/proc_internal.h"

#include <string.h>

/* Wakes shutdown callers waiting for the pool to drain. They announce
 * themselves in progress_waiters (Dekker with the seq_cst bump), so the hot
 * path pays one RMW and no system call. */
void crew__procs_bump_progress(pb *b)
{
    atomic_fetch_add_explicit(&b->progress, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&b->progress_waiters, memory_order_seq_cst))
        crew__futex_wake(&b->progress, INT32_MAX);
}

/* --- in-flight list (under lk) */
void crew__procs_if_push(pb *b, uint32_t x)
{
    rec *r = &b->rec[x];
    r->next = -1;
    r->prev = b->if_tail;
    if (b->if_tail >= 0)
        b->rec[b->if_tail].next = (int32_t)x;
    else
        b->if_head = (int32_t)x;
    b->if_tail = (int32_t)x;
    b->n_inflight++;
}

void crew__procs_if_unlink(pb *b, uint32_t x)
{
    rec *r = &b->rec[x];
    if (r->prev >= 0)
        b->rec[r->prev].next = r->next;
    else
        b->if_head = r->next;
    if (r->next >= 0)
        b->rec[r->next].prev = r->prev;
    else
        b->if_tail = r->prev;
    r->prev = r->next = -1;
    b->n_inflight--;
}

/* Publishes slot x at the queue tail (under lk). */
void crew__procs_slot_publish(pb *b, uint32_t x)
{
    shm_hdr *h = b->h;
    atomic_store_explicit(&ring_at(h)[b->tail % h->ring], x, memory_order_release);
    b->tail++;
    atomic_store_explicit(&h->tail, b->tail, memory_order_seq_cst);
}

/* After queueing (the tail store before this was seq_cst). Two rules:
 *  - Progress: if any worker is awake it will look at the queue before it
 *    parks (it clears its awake bit, then re-reads tail); if none is, wake
 *    one. This one alone never loses a task.
 *  - Parallelism: an awake worker may be busy for a long time with a task
 *    of its own, so "somebody is awake" does not mean "somebody will take
 *    this now". The spinner will (it claims it within ~0.3 us and wakes a
 *    sleeper itself if more is queued behind); with no spinner and a
 *    sleeper, wake one -- an idle worker never sleeps while a task waits.
 *    Dekker with a claiming worker: it drops the spinner role (seq_cst),
 *    then reads tail; we stored tail, then read the role -- one of the two
 *    sees the other and wakes. At most one such wake is in flight
 *    (`waking`, shared with the workers' own wakes).
 * On the hot paths this costs nothing: a worker becomes the spinner before
 * it publishes a result, so the next submit finds one; a saturated pool
 * has no sleepers. */
void crew__procs_wake_workers(pb *b)
{
    shm_hdr *h = b->h;
    if (atomic_load_explicit(&h->spinner, memory_order_seq_cst) != 0)
        return;
    if (atomic_load_explicit(&h->sleepers, memory_order_seq_cst) == 0)
        return;
    bool awake = false;
    for (int i = 0; i < (n_workers(b) + 63) / 64 && !awake; i++)
        awake = atomic_load_explicit(&h->awake[i], memory_order_seq_cst) != 0;
    if (awake && (atomic_load_explicit(&h->waking, memory_order_relaxed) ||
                  atomic_exchange_explicit(&h->waking, 1, memory_order_acq_rel)))
        return;
    crew__futex_wake(&h->tail, 1);
}
/* Room for one more ring entry (under lk). Reads the workers' head (a line
 * they write) only when the cached copy says the ring may be full. */
static bool ring_room(pb *b)
{
    if (b->tail - b->head_cache < b->h->ring)
        return true;
    b->head_cache = atomic_load_explicit(&b->h->head, memory_order_acquire);
    return b->tail - b->head_cache < b->h->ring;
}

/* Function index for fn, adding it to the shared table if new. */
int crew__procs_fn_index(pb *b, crew_task_fn fn, uint32_t *out)
{
    uint32_t n = atomic_load_explicit(&b->n_fns, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++)
        if (b->fns[i] == fn) {
            *out = i;
            return 0;
        }
    pthread_mutex_lock(&b->lk);
    n = atomic_load_explicit(&b->n_fns, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        if (b->fns[i] == fn) {
            pthread_mutex_unlock(&b->lk);
            *out = i;
            return 0;
        }
    if (n == FN_MAX) {
        pthread_mutex_unlock(&b->lk);
        return CREW_ENOSPC;
    }
    fn_entry *e = fn_at(b->h, n);
    e->raw = (uintptr_t)fn;
    int rc = 0;
    if (b->start_method != CREW_START_FORK)
        rc = crew__fnref_make(&e->ref, (uintptr_t)fn);
    if (rc == 0) {
        b->fns[n] = fn;
        atomic_store_explicit(&b->n_fns, n + 1, memory_order_release);
        *out = n;
    }
    pthread_mutex_unlock(&b->lk);
    return rc;
}
/* Writes task f into free slot x and queues it (under lk). */
static void dispatch_task(pb *b, uint32_t x, crew_future *f)
{
    slot_hdr *s = slot_at(b->h, x);
    uint32_t gen = (st_gen(atomic_load_explicit(&s->state, memory_order_relaxed)) + 1) & GEN_MASK;
    const uintptr_t bk = f->backend[1];
    s->fn_idx = (uint32_t)bk;
    rec *r = &b->rec[x];
    if (CREW__LIKELY(!(bk >> 32))) {
        s->kind = KIND_TASK;
        s->arg_len = f->arg_len;
        if (f->arg_len)
            memcpy(slot_arg(b->h, s), f->arg, f->arg_len);
        r->reg = 0;
    } else {
        /* Zero copy: only (region, generation, offset, length) travel. */
        crew__shm_arg d;
        memcpy(&d, f->arg_inline, sizeof d);
        s->kind = KIND_SHM;
        s->arg_len = 0;
        s->in_reg = fback_reg(f);
        s->in_gen = fback_gen(f);
        s->in_off = d.off;
        s->shm_len = d.len;
        r->reg = s->in_reg;
    }
    s->task_id = f->id;
    s->status = 0;
    s->res_len = 0;
    atomic_store_explicit(&s->cancel, 0, memory_order_relaxed);
    r->f = f;
    r->m = NULL;
    r->kind = KIND_TASK;
    r->fail_status = 0;
    fslot_set(f, ((uintptr_t)gen << 32) | (x + 1));
    atomic_store_explicit(&s->state, st_make(gen, PH_QUEUED, 0), memory_order_release);
    crew__procs_if_push(b, x);
    crew__procs_slot_publish(b, x);
}

static size_t chunk_cap(pb *b, const pmap *pm)
{
    const crew__map *m = pm->m;
    /* Records in a region take no slot space. */
    size_t c1 = m->in_size && !pm->in_reg ? b->h->arg_cap / m->in_size : SIZE_MAX;
    /* outputs, padding to 64, then one int32 status per item: the result
     * area is ALIGN64(max_result_size) + 64 bytes. */
    size_t c2 = (b->h->res_area - 64) / ((pm->out_reg ? 0 : m->out_size) + sizeof(int32_t));
    size_t c = c1 < c2 ? c1 : c2;
    if (c > UINT32_MAX / 2)
        c = UINT32_MAX / 2;
    return c ? c : 1;
}

static void dispatch_chunk(pb *b, uint32_t x, pmap *pm, size_t first, size_t count)
{
    crew__map *m = pm->m;
    slot_hdr *s = slot_at(b->h, x);
    uint32_t gen = (st_gen(atomic_load_explicit(&s->state, memory_order_relaxed)) + 1) & GEN_MASK;
    s->kind = KIND_CHUNK;
    s->fn_idx = (uint32_t)m->backend[1];
    s->in_size = (uint32_t)m->in_size;
    s->out_size = (uint32_t)m->out_size;
    s->count = (uint32_t)count;
    s->in_reg = pm->in_reg;
    s->in_gen = pm->in_gen;
    s->in_off = pm->in_base + first * m->in_size;
    s->out_reg = pm->out_reg;
    s->out_gen = pm->out_gen;
    s->out_off = pm->out_base + first * m->out_size;
    if (m->in_size && !pm->in_reg)
        memcpy(slot_arg(b->h, s), m->in + first * m->in_size, count * m->in_size);
    s->arg_len = pm->in_reg ? 0 : (uint32_t)(count * m->in_size);
    s->task_id = m->future->id;
    s->n_failed = 0;
    atomic_store_explicit(&s->cancel, 0, memory_order_relaxed);
    rec *r = &b->rec[x];
    r->f = NULL;
    r->m = m;
    r->first = first;
    r->count = count;
    r->kind = KIND_CHUNK;
    r->fail_status = 0;
    r->part = r->part_fail = false;
    r->part_done = 0;
    r->rest_status = 0;
    r->out_in_place = pm->out_reg != 0;
    pm->in_flight++;
    atomic_store_explicit(&s->state, st_make(gen, PH_QUEUED, 0), memory_order_release);
    crew__procs_if_push(b, x);
    crew__procs_slot_publish(b, x);
}

/* Dispatches the head of the range [*first, *first + *count) of pm's map
 * -- as much as one slot holds -- to a free slot, and moves the range on
 * (under lk; a slot is free). */
static void dispatch_piece(pb *b, pmap *pm, size_t *first, size_t *count)
{
    size_t c = chunk_cap(b, pm);
    if (c > *count)
        c = *count;
    dispatch_chunk(b, b->free_stack[--b->n_free], pm, *first, c);
    *first += c;
    *count -= c;
}

/* Fills free slots from the overflow FIFO, then from running maps (under
 * lk). Returns the number of tasks queued. */
int crew__procs_dispatch_more_locked(pb *b)
{
    int n = 0;
    if (atomic_load_explicit(&b->broken, memory_order_relaxed))
        return 0;
    while (b->n_free > 0 && ring_room(b)) {
        if (b->ov_head) {
            crew_future *f = b->ov_head;
            b->ov_head = f->next;
            if (!b->ov_head)
                b->ov_tail = NULL;
            f->next = NULL;
            b->n_ov--;
            dispatch_task(b, b->free_stack[--b->n_free], f);
            n++;
            continue;
        }
        pmap *pm = b->maps;
        while (pm && pm->exhausted && pm->count == 0 && !pm->redo)
            pm = pm->next;
        if (!pm)
            break;
        if (pm->redo) {
            /* Items handed back by a death go first (the map's oldest). */
            redo *rd = pm->redo;
            dispatch_piece(b, pm, &rd->first, &rd->count);
            if (rd->count == 0) {
                pm->redo = rd->next;
                crew__free(rd);
            }
            n++;
            continue;
        }
        if (pm->count == 0) {
            size_t first, count;
            if (!crew__map_claim(pm->m, &first, &count)) {
                pm->exhausted = true;
                continue;
            }
            pm->first = first;
            pm->count = count;
        }
        dispatch_piece(b, pm, &pm->first, &pm->count);
        n++;
    }
    return n;
}

/* Removes maps that have nothing left to do (under lk); returns them in a
 * list so the caller drops their references after unlocking. */
pmap *crew__procs_maps_collect_finished_locked(pb *b)
{
    pmap *gone = NULL;
    for (pmap **pp = &b->maps; *pp;) {
        pmap *pm = *pp;
        bool over = pm->in_flight == 0 && pm->count == 0 && !pm->redo &&
                    (pm->exhausted || atomic_load(&pm->m->cancel) ||
                     atomic_load(&pm->m->next) >= pm->m->n);
        if (over) {
            *pp = pm->next;
            pm->next = gone;
            gone = pm;
        } else {
            pp = &pm->next;
        }
    }
    return gone;
}

void crew__procs_maps_release(pb *b, pmap *gone)
{
    while (gone) {
        pmap *n = gone->next;
        if (gone->in_reg)
            crew__procs_reg_unref(b, gone->in_reg - 1);
        if (gone->out_reg)
            crew__procs_reg_unref(b, gone->out_reg - 1);
        crew__map_unref(gone->m);
        crew__free(gone);
        gone = n;
    }
}

pmap *crew__procs_pmap_of_locked(pb *b, const crew__map *m)
{
    for (pmap *pm = b->maps; pm; pm = pm->next)
        if (pm->m == m)
            return pm;
    return NULL;
}
/* A claimed terminal slot: what its harvest must do, gathered under lk. */
typedef struct harvest {
    uint32_t x;
    uint32_t phase;
    rec r;
} harvest;

/* The task fields of a rec, without its list links (not ours to read
 * without lk). */
static void rec_copy_task(rec *dst, const rec *src)
{
    dst->f = src->f;
    dst->m = src->m;
    dst->first = src->first;
    dst->count = src->count;
    dst->kind = src->kind;
    dst->reg = src->reg;
    dst->fail_status = src->fail_status;
    dst->fail_pid = src->fail_pid;
    dst->fail_signal = src->fail_signal;
    dst->fail_code = src->fail_code;
    dst->part = src->part;
    dst->part_fail = src->part_fail;
    dst->part_done = src->part_done;
    dst->rest_status = src->rest_status;
    dst->out_in_place = src->out_in_place;
    dst->prev = dst->next = -1;
}

/* Reports every range of a redo list as `status` and frees it (no lock). */
void crew__procs_redo_fail(crew__map *m, redo *rd, int status)
{
    while (rd) {
        redo *n = rd->next;
        crew__map_done_range(m, rd->first, rd->count, NULL, status, NULL);
        crew__free(rd);
        rd = n;
    }
}

/* Tries to claim terminal slot x for harvesting (CAS terminal -> HARVEST). */
static bool claim_slot(pb *b, uint32_t x, uint32_t *phase_out)
{
    slot_hdr *s = slot_at(b->h, x);
    uint32_t v = atomic_load_explicit(&s->state, memory_order_acquire);
    while (st_terminal(v)) {
        uint32_t nv = st_make(st_gen(v), PH_HARVEST, 0);
        if (atomic_compare_exchange_weak_explicit(&s->state, &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *phase_out = st_phase(v);
            return true;
        }
    }
    return false;
}

static void fill_failure(const rec *r, crew_failure *fl)
{
    memset(fl, 0, sizeof *fl);
    fl->status = r->fail_status;
    fl->pid = r->fail_pid;
    fl->signal = r->fail_signal;
    fl->exit_code = r->fail_code;
}

/* Reports the first n items of chunk slot s (rec r) as the worker left
 * them: outputs copied out of the slot (records in a region were written
 * in place), statuses from the slot when any item failed. The worker wrote
 * n_failed and the statuses as it went, so this holds for a chunk cut short
 * by a death as for a finished one (n_failed then counts only items below
 * n, which the worker had finished). */
static void deliver_items(pb *b, slot_hdr *s, const rec *r, size_t n)
{
    crew__map *m = r->m;
    if (n == 0)
        return;
    /* The layout is the chunk's whole one: outputs for r->count items. (The
     * parent's own record of it: the slot header is the worker's to
     * scribble on.) */
    size_t out_area = r->out_in_place ? 0 : r->count * m->out_size;
    if (out_area)
        memcpy(m->out + r->first * m->out_size, slot_res(b->h, s), n * m->out_size);
    uint32_t nf = s->n_failed;
    uint32_t ff = s->first_fail;
    if (nf && ff < n) {
        /* Each item's own status, classified for the stats (the worker's
         * n_failed is not needed: the statuses are counted here). */
        const int32_t *sts = (const int32_t *)(slot_res(b->h, s) + ALIGN64(out_area));
        crew__map_tally tl = {0};
        for (size_t i = 0; i < n; i++) {
            int st = sts[i];
            if (st > 0)
                st = 0; /* (a worker never writes one; keep statuses <= 0) */
            if (st < 0)
                crew__map_tally_add(&tl, st);
            if (m->statuses)
                m->statuses[r->first + i] = st;
        }
        crew__map_done_tally(m, r->first, n, &tl, r->first + ff, s->first_fail_status, NULL);
    } else {
        if (m->statuses)
            memset(m->statuses + r->first, 0, n * sizeof(int));
        crew__map_done_tally(m, r->first, n, NULL, 0, 0, NULL);
    }
}

/* Delivers a claimed slot's outcome (no lock held: callbacks may run). */
static void deliver(pb *b, harvest *hv)
{
    slot_hdr *s = slot_at(b->h, hv->x);
    rec *r = &hv->r;
    if (r->kind == KIND_TASK) {
        crew_future *f = r->f;
        fslot_set(f, 0);
        if (hv->phase == PH_DONE) {
            /* The slot is writable by the task: a length beyond the slot's
             * result area is a broken worker, never a read past it. */
            uint32_t len = s->res_len;
            int st = s->status;
            if (CREW__UNLIKELY(len > opts(b)->max_result_size)) {
                len = 0;
                st = CREW_EPROTO;
            }
            crew__future_complete(f, st, slot_res(b->h, s), len, NULL);
        } else if (hv->phase == PH_CANCELED) {
            crew__future_complete(f, CREW_ECANCELED, NULL, 0, NULL);
        } else {
            crew_failure fl;
            fill_failure(r, &fl);
            crew__future_complete(f, r->fail_status, NULL, 0, &fl);
        }
        return;
    }
    crew__map *m = r->m;
    if (hv->phase == PH_DONE) {
        deliver_items(b, s, r, r->count);
    } else if (hv->phase == PH_CANCELED) {
        crew__map_done_range(m, r->first, r->count, NULL, CREW_ECANCELED, NULL);
    } else if (r->part) {
        /* A death inside the chunk: the finished items stand, the running
         * one fails alone, the rest were handed back (or end rest_status). */
        size_t done = r->part_done;
        deliver_items(b, s, r, done);
        if (r->part_fail) {
            crew_failure fl;
            fill_failure(r, &fl);
            crew__map_done_range(m, r->first + done, 1, NULL, r->fail_status, &fl);
            done++;
        }
        if (r->rest_status && done < r->count)
            crew__map_done_range(m, r->first + done, r->count - done, NULL, r->rest_status, NULL);
    } else {
        crew_failure fl;
        fill_failure(r, &fl);
        crew__map_done_range(m, r->first, r->count, NULL, r->fail_status, &fl);
    }
}

/* After delivering: frees the slots and refills them (takes lk). */
static void release_slots(pb *b, const harvest *hv, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&b->lk);
    for (size_t i = 0; i < n; i++) {
        uint32_t x = hv[i].x;
        slot_hdr *s = slot_at(b->h, x);
        rec *r = &b->rec[x];
        if (r->kind == KIND_CHUNK) {
            pmap *pm = crew__procs_pmap_of_locked(b, r->m);
            if (pm)
                pm->in_flight--;
        } else if (r->reg) {
            crew__procs_reg_unref(b, r->reg - 1);
            r->reg = 0;
        }
        crew__procs_if_unlink(b, x);
        r->f = NULL;
        r->m = NULL;
        atomic_store_explicit(&s->watch, 0, memory_order_relaxed);
        uint32_t v = atomic_load_explicit(&s->state, memory_order_relaxed);
        atomic_store_explicit(&s->state, st_make(st_gen(v), PH_FREE, 0), memory_order_release);
        b->free_stack[b->n_free++] = x;
    }
    int queued = crew__procs_dispatch_more_locked(b);
    pmap *gone = crew__procs_maps_collect_finished_locked(b);
    pthread_mutex_unlock(&b->lk);
    if (queued)
        crew__procs_wake_workers(b);
    crew__procs_maps_release(b, gone);
    crew__procs_bump_progress(b);
}

/* Harvests one slot the caller watches (or that nobody watches). */
bool crew__procs_harvest_one(pb *b, uint32_t x)
{
    harvest hv;
    hv.x = x;
    if (!claim_slot(b, x, &hv.phase))
        return false;
    /* rec[x]'s task fields are stable while the slot is ours (HARVEST), and
     * the state's acquire chain orders them after the dispatcher's (or the
     * monitor's) writes. Its list links are not ours to read without lk. */
    rec_copy_task(&hv.r, &b->rec[x]);
    deliver(b, &hv);
    release_slots(b, &hv, 1);
    return true;
}

/* Walks the in-flight list under lk, from its head, with pick, and collects
 * the slots it takes in xs (at most SLOT_BATCH). Returns how many; a full
 * batch means the walk stopped there, not that the list ended. */
#define SLOT_BATCH 64
static inline size_t collect(pb *b, slot_pick_fn pick, void *ctx, uint32_t xs[SLOT_BATCH])
{
    size_t n = 0;
    pthread_mutex_lock(&b->lk);
    for (int32_t x = b->if_head; x >= 0 && n < SLOT_BATCH; x = b->rec[x].next) {
        pick_verdict pv = pick(b, (uint32_t)x, ctx);
        if (pv == PICK_STOP)
            break;
        if (pv == PICK_TAKE)
            xs[n++] = (uint32_t)x;
    }
    pthread_mutex_unlock(&b->lk);
    return n;
}

void crew__procs_transition_all(pb *b, slot_pick_fn pick, void *ctx)
{
    uint32_t xs[SLOT_BATCH];
    size_t n;
    do {
        n = collect(b, pick, ctx, xs);
        for (size_t i = 0; i < n; i++)
            crew__procs_after_parent_transition(b, xs[i]);
    } while (n == SLOT_BATCH);
}

/* The sweep's pick: claims every unwatched terminal slot; prefix: stops at
 * the first still-QUEUED slot (the in-flight list is in dispatch order and
 * workers claim in that order, so what follows is almost always queued
 * too), noting in cut when that left part of the list unseen. */
typedef struct sweep_ctx {
    bool prefix, cut;
    uint32_t phase[SLOT_BATCH];
    size_t n;
} sweep_ctx;

static pick_verdict pick_terminal(pb *b, uint32_t x, void *ctx)
{
    sweep_ctx *c = ctx;
    slot_hdr *s = slot_at(b->h, x);
    uint32_t v = atomic_load_explicit(&s->state, memory_order_acquire);
    if (c->prefix && st_phase(v) == PH_QUEUED) {
        if (b->rec[x].next >= 0)
            c->cut = true;
        return PICK_STOP;
    }
    if (!st_terminal(v) || atomic_load_explicit(&s->watch, memory_order_seq_cst) != 0)
        return PICK_SKIP;
    if (!claim_slot(b, x, &c->phase[c->n]))
        return PICK_SKIP;
    c->n++;
    return PICK_TAKE;
}

/* Harvests every unwatched terminal slot (prefix: see pick_terminal; *cut
 * may be NULL without it). Returns how many. */
size_t crew__procs_sweep_ex(pb *b, bool prefix, bool *cut)
{
    size_t total = 0;
    for (;;) {
        sweep_ctx c = {.prefix = prefix};
        uint32_t xs[SLOT_BATCH];
        size_t n = collect(b, pick_terminal, &c, xs);
        harvest hv[SLOT_BATCH];
        for (size_t i = 0; i < n; i++) {
            /* Ours (HARVEST): rec[x]'s task fields are stable, see
             * crew__procs_harvest_one. */
            hv[i].x = xs[i];
            hv[i].phase = c.phase[i];
            rec_copy_task(&hv[i].r, &b->rec[xs[i]]);
            deliver(b, &hv[i]);
        }
        release_slots(b, hv, n);
        total += n;
        if (c.cut && cut)
            *cut = true;
        if (n < SLOT_BATCH)
            return total;
    }
}

size_t crew__procs_sweep(pb *b) { return crew__procs_sweep_ex(b, false, NULL); }

/* Harvests a slot that a parent thread moved to a terminal state (cancel,
 * failure), unless a watcher will (then it is woken). Dekker with the
 * watcher: we stored the state seq_cst, now we read watch. */
void crew__procs_after_parent_transition(pb *b, uint32_t x)
{
    slot_hdr *s = slot_at(b->h, x);
    if (atomic_load_explicit(&s->watch, memory_order_seq_cst) == 0)
        crew__procs_harvest_one(b, x);
    else
        crew__futex_wake(&s->state, INT32_MAX);
}

/* Under lk: may one more task be queued? 0, CREW_EBROKEN or CREW_EAGAIN
 * (max_pending). */
int crew__procs_admit_locked(pb *b)
{
    if (CREW__UNLIKELY(atomic_load_explicit(&b->broken, memory_order_relaxed)))
        return CREW_EBROKEN;
    if (opts(b)->max_pending && b->n_inflight + b->n_ov >= opts(b)->max_pending)
        return CREW_EAGAIN;
    return 0;
}

/* Under lk: dispatches f to a free slot, or (none, or others are waiting
 * already) appends it to the overflow FIFO. true when dispatched: the caller
 * wakes a worker after unlocking. */
bool crew__procs_enqueue_locked(pb *b, crew_future *f)
{
    if (b->n_free > 0 && !b->ov_head && ring_room(b)) {
        dispatch_task(b, b->free_stack[--b->n_free], f);
        return true;
    }
    f->next = NULL;
    if (b->ov_tail)
        b->ov_tail->next = f;
    else
        b->ov_head = f;
    b->ov_tail = f;
    b->n_ov++;
    return false;
}
/* Asks the monitor to stop worker w because of the task whose state word is
 * tag -- for a chunk, because of its item `item` (UINT32_MAX: whichever
 * runs) -- (under lk). */
void crew__procs_request_kill_locked(pb *b, uint32_t w, uint32_t tag, uint32_t item, int reason)
{
    pworker *pw = &b->w[w];
    if (!pw->alive || pw->kill_reason)
        return;
    pw->kill_reason = (uint32_t)-reason;
    pw->kill_tag = tag;
    pw->kill_item = item;
    pw->term_at = 0;
    pw->kill_at = 0;
}

/* Cancels slot x (generation gen) as `reason` (under lk). Returns true when
 * the slot turned CANCELED and must be handed to after_parent_transition. */
bool crew__procs_cancel_slot_locked(pb *b, uint32_t x, uint32_t gen, int reason, bool *kick)
{
    slot_hdr *s = slot_at(b->h, x);
    uint32_t v = atomic_load_explicit(&s->state, memory_order_acquire);
    for (;;) {
        if (st_gen(v) != gen)
            return false;
        if (st_phase(v) == PH_QUEUED) {
            if (atomic_compare_exchange_weak_explicit(&s->state, &v,
                                                      st_make(gen, PH_CANCELED, 0),
                                                      memory_order_seq_cst,
                                                      memory_order_acquire))
                return true;
            continue;
        }
        if (st_phase(v) == PH_RUNNING && b->rec[x].fail_status == 0) {
            atomic_store_explicit(&s->cancel, 1, memory_order_relaxed);
            crew__procs_request_kill_locked(b, st_worker(v), v, UINT32_MAX, reason);
            *kick = true;
        }
        return false;
    }
}
