/*
 * threads_worker.c -- the thread backend's workers: finding work, running
 * a task and completing it, the idle spin and the sleep side of the sleep
 * protocol (threads_internal.h), and waiting inside a task.
 *
 * DESIGN
 *
 * A worker pops its own lane, then steals from the others, then the
 * overflow, then the outside waiters' runs (find_work). It runs a task on
 * its own stack with a per-depth scratch buffer for the result (a task
 * that waits runs other tasks on the same stack), and completes it itself:
 * no other thread completes a running thread task (cancel only sets a
 * bit), so the common case is one CAS that publishes DONE and RELEASED
 * (complete_running). Outcome counters are per worker (single writer), so
 * no shared line is bumped per task. An idle worker spins for
 * CREW__SPIN_NS, then parks (idle_park: steps (1)-(4) of the protocol).
 *
 * Waiting inside a task (nesting). crew_future_wait called from a worker
 * runs queued work until the future is done. With nothing to run it parks
 * like an idle worker, after recording the future in waiting_on and setting
 * WORKER_WAIT on it; the completer of a future with WORKER_WAIT wakes the
 * workers whose waiting_on is that future (ops->wake_helpers) (same Dekker pattern: the waiter
 * sets SLEEPING then re-reads the future's phase; the completer publishes
 * DONE then reads the waiter's sleep word). New work also wakes it. So a
 * task that submits sub-tasks and waits for them never deadlocks the pool.
 */
#include "pool/threads_internal.h"

#include <sched.h>
#include <string.h>

__thread worker *crew__tls_worker CREW__TLS_IE;
__thread unsigned crew__tls_rr CREW__TLS_IE;

/* ------------------------------------------------------------ queues: the cold halves */

void crew__threads_ovf_push(tpool *b, crew_future *f)
{
    pthread_mutex_lock(&b->ovf_lock);
    f->next = NULL;
    if (b->ovf_tail)
        b->ovf_tail->next = f;
    else
        b->ovf_head = f;
    b->ovf_tail = f;
    atomic_fetch_add_explicit(&b->ovf_n, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&b->ovf_total, 1, memory_order_release);
    pthread_mutex_unlock(&b->ovf_lock);
}

bool crew__threads_any_work(tpool *b)
{
    if (atomic_load_explicit(&b->ovf_n, memory_order_seq_cst))
        return true;
    for (int i = 0; i < HELPER_RUNS; i++)
        if ((uint32_t)atomic_load_explicit(&b->hr[i].word, memory_order_seq_cst))
            return true;
    for (int i = 0; i < b->n; i++)
        if (lane_nonempty(&b->w[i].lane))
            return true;
    return false;
}

/* The frequent poll of a searching worker (see lane_ready). */
bool crew__threads_work_ready(tpool *b)
{
    if (atomic_load_explicit(&b->ovf_n, memory_order_relaxed))
        return true;
    for (int i = 0; i < b->n; i++)
        if (lane_ready(&b->w[i].lane))
            return true;
    for (int i = 0; i < HELPER_RUNS; i++)
        if ((uint32_t)atomic_load_explicit(&b->hr[i].word, memory_order_relaxed))
            return true;
    return false;
}

void crew__threads_wake_all(tpool *b)
{
    for (int i = 0; i < b->n; i++) {
        worker *w = &b->w[i];
        uint32_t s = SLEEPING;
        if (atomic_compare_exchange_strong_explicit(&w->sleep, &s, AWAKE, memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
            crew__futex_wake(&w->sleep, 1);
        }
    }
}

/* ------------------------------------------------------------ running */

static crew_future *find_work(worker *w)
{
    tpool *b = w->b;
    crew_future *f = lane_pop(&w->lane);
    if (f)
        return f;
    for (int k = 1; k < b->n; k++) {
        int i = w->index + k;
        if (i >= b->n)
            i -= b->n;
        f = lane_pop(&b->w[i].lane);
        if (f)
            return f;
    }
    f = ovf_pop(b);
    return f ? f : steal_runs(b);
}

static void *scratch_for_depth(worker *w, unsigned depth)
{
    size_t cap = w->b->result_cap;
    if (CREW__LIKELY(depth < w->scratch_n && w->scratch[depth] && w->scratch_cap >= cap))
        return w->scratch[depth];
    if (w->scratch_cap < cap) {
        /* A helper meets a pool with bigger results: buffers at this depth
         * and deeper are not in use, size them anew. (Never a pool worker:
         * its pool's result_cap is its scratch_cap, and its depth-0 buffer
         * is mapped, not malloc'd.) */
        CREW__ASSERT(w->index < 0);
        for (unsigned k = depth; k < w->scratch_n; k++) {
            crew__free(w->scratch[k]);
            w->scratch[k] = NULL;
        }
        w->scratch_cap = cap;
    }
    if (depth >= w->scratch_n) {
        unsigned n = w->scratch_n ? w->scratch_n * 2 : 4;
        while (n <= depth)
            n *= 2;
        void **s = crew__realloc(w->scratch, n * sizeof *s);
        if (!s)
            return NULL;
        memset(s + w->scratch_n, 0, (n - w->scratch_n) * sizeof *s);
        w->scratch = s;
        w->scratch_n = n;
    }
    w->scratch[depth] = crew__malloc(w->scratch_cap);
    return w->scratch[depth];
}

/* Counts a task's status on the worker that ran it (its own counters, no
 * shared line: single writer, so a plain load and store), or on the pool's
 * line for outside waiters. delta -1 takes back a count that turned out
 * wrong (the status changed at completion). */
static void count_status(worker *w, int rc, int delta)
{
    if (CREW__LIKELY(w->index >= 0)) {
        _Atomic uint64_t *c = rc == 0                ? &w->n_ok
                              : rc == CREW_ECANCELED ? &w->n_canceled
                              : rc == CREW_ETIMEDOUT ? &w->n_timed_out
                                                     : &w->n_failed;
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)delta,
                              memory_order_relaxed);
    } else {
        tpool *b = w->b;
        _Atomic uint64_t *c = rc == 0                ? &b->ext_ok
                              : rc == CREW_ECANCELED ? &b->ext_canceled
                              : rc == CREW_ETIMEDOUT ? &b->ext_timed_out
                                                     : &b->ext_failed;
        atomic_fetch_add_explicit(c, (uint64_t)delta, memory_order_relaxed);
    }
}

static void count_move(worker *w, int from, int to)
{
    if (from != to) {
        count_status(w, from, -1);
        count_status(w, to, 1);
    }
}

/* Completes a RUNNING future from the worker w that runs it, counting its
 * final status before anyone can see it done (a stats snapshot taken after
 * a wait includes it). Nobody else completes a running thread task (cancel
 * only sets a bit), so the fast path makes no COMPLETING claim: store the
 * outcome, then one CAS publishes DONE and RELEASED together -- unless a
 * flag asks for the full path (a waiter to wake, a callback, notification)
 * or the handle is already dropped; then w claims f itself and hands it to
 * the core already COMPLETING. A CANCEL bit seen by either CAS turns the
 * status into CREW_ECANCELED: crew_future_cancel returned 0 for it, a
 * promise that f ends so. */
static void complete_running(worker *w, crew_future *f, int rc, const void *buf, size_t len)
{
    const uint32_t slow = CREW__F_WAITERS | CREW__F_WORKER_WAIT | CREW__F_HAS_CB |
                          CREW__F_NOTIFY | CREW__F_ANYWAIT | CREW__F_DROPPED;
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    bool counted = false;
    if (CREW__LIKELY(len <= CREW__RES_INLINE) && CREW__LIKELY(!(s & slow))) {
        if (len)
            memcpy(f->res_inline, buf, len);
        f->res_len = (uint32_t)len;
        if (CREW__UNLIKELY(s & CREW__F_CANCEL))
            rc = CREW_ECANCELED;
        count_status(w, rc, 1);
        counted = true;
        for (;;) {
            f->status = rc; /* published by the CAS (release) */
            if (CREW__LIKELY(atomic_compare_exchange_weak_explicit(
                    &f->state, &s, s | CREW__F_DONE | CREW__F_RELEASED, memory_order_release,
                    memory_order_relaxed)))
                return;
            if (s & slow)
                break;
            if ((s & CREW__F_CANCEL) && rc != CREW_ECANCELED) {
                count_move(w, rc, CREW_ECANCELED);
                rc = CREW_ECANCELED;
            }
        }
    }
    int claimed = rc;
    while (!atomic_compare_exchange_weak_explicit(&f->state, &s,
                                                  (s & ~CREW__F_PHASE) | CREW__F_COMPLETING,
                                                  memory_order_acquire, memory_order_relaxed))
        ;
    if (s & CREW__F_CANCEL)
        claimed = CREW_ECANCELED;
    if (counted)
        count_move(w, rc, claimed);
    else
        count_status(w, claimed, 1);
    int final = claimed;
    crew__future_complete_final(f, claimed, buf, len, NULL, CREW__C_NOCOUNT | CREW__C_CLAIMED,
                                &final);
    /* Only CREW_ENOMEM (the result could not be stored) differs here, and
     * is counted a moment after f is done. */
    count_move(w, claimed, final);
}

/* Completes a queued task that will not run (shutdown with cancel, destroy). */
void crew__threads_drop_queued(tpool *b, crew_future *f)
{
    if (f->map) {
        crew__map_cancel_rest(f->map);
        crew__map_unref(f->map);
        crew__future_release(f);
    } else if (crew__future_complete_ex(f, CREW_ECANCELED, NULL, 0, NULL, CREW__C_QUEUED) != 0) {
        crew__future_release(f); /* it was cancelled while queued */
    }
    pending_done(b);
}

void crew__threads_run_job(worker *w, crew_future *f)
{
    crew__prefetch_w(f); /* f's first line comes from the submitter's cache: own it at once */
    tpool *b = w->b;
    if (CREW__UNLIKELY(f->map != NULL)) {
        crew__threads_run_map(w, f);
        return;
    }
    if (CREW__UNLIKELY(atomic_load_explicit(&b->cancel_queued, memory_order_relaxed))) {
        crew__threads_drop_queued(b, f);
        return;
    }
    if (CREW__UNLIKELY(!crew__future_start(f))) {
        crew__future_release(f); /* cancelled while queued: the canceller completed it */
        pending_done(b);
        return;
    }
    crew_task t = {
        .pool = b->p,
        .future = f,
        .cancel = &f->state,
        .cancel_mask = CREW__F_CANCEL,
        .pool_cancel = &b->stop_all,
        .worker = w->index,
    };
    if (b->timeout_ns)
        t.deadline_ns = crew__now_ns() + b->timeout_ns;
    unsigned depth = w->depth++;
    void *buf = scratch_for_depth(w, depth);
    size_t len = 0;
    int rc;
    if (CREW__LIKELY(buf != NULL)) {
        rc = f->fn(&t, f->arg, f->arg_len, buf, b->result_cap, &len);
        if (rc > 0)
            rc = 0;
        if (CREW__UNLIKELY(len > b->result_cap)) {
            /* More than it had room for: never cut a result short
             * silently. No byte of it is kept. */
            rc = CREW_E2BIG;
            len = 0;
        }
    } else {
        rc = CREW_ENOMEM;
    }
    w->depth--;
    /* Stopped by shutdown(p, 1) or destroy while it ran: its return does
     * not matter (a cancel of f itself is settled in complete_running). */
    if (CREW__UNLIKELY(atomic_load_explicit(&b->stop_all, memory_order_relaxed)))
        rc = CREW_ECANCELED;
    else if (CREW__UNLIKELY(t.deadline_ns != 0) && (t.timed_out || crew__now_ns() >= t.deadline_ns))
        rc = CREW_ETIMEDOUT;
    pending_done(b); /* before DONE: a waiter that saw DONE may submit again */
    complete_running(w, f, rc, buf, len);
}

/* ------------------------------------------------------------ workers */

/* An idle worker searches (spins) for up to CREW__SPIN_NS before it parks,
 * polling the next slot of every lane (not the tails the submitters CAS).
 * After a short tight spin it yields between polls: a pool has one worker
 * per CPU plus the submitting thread, and a spinner that keeps its CPU
 * delays the very submitter it waits for. A searching worker is not
 * counted as sleeping, so a steady stream of submits finds workers awake
 * and pays no wake-up. */
static bool spin_for_work(tpool *b)
{
    uint64_t start = crew__now_ns();
    bool found = false;
    for (unsigned i = 1;; i++) {
        if (crew__threads_work_ready(b) ||
            atomic_load_explicit(&b->exiting, memory_order_relaxed)) {
            found = true;
            break;
        }
        /* Poll tightly at first; after that, yield the CPU between polls:
         * when there are more runnable threads than CPUs (the submitting
         * thread plus one worker per CPU) a searcher that only spins takes
         * the CPU the submitter needs to produce the work it waits for. */
        if (i < 64) {
            for (int k = 0; k < 4; k++)
                crew__cpu_relax();
        } else {
            sched_yield();
        }
        if ((i & 7) == 0 && crew__now_ns() - start > CREW__SPIN_NS)
            break;
    }
    return found;
}

static void idle_park(worker *w)
{
    tpool *b = w->b;
    atomic_store_explicit(&w->busy, 0, memory_order_seq_cst);
    if (atomic_load_explicit(&b->p->shut, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&b->idle_epoch, 1, memory_order_seq_cst);
        crew__futex_wake(&b->idle_epoch, INT32_MAX);
    }
    /* Counted first, then SLEEPING: a waker decrements only after its CAS
     * found SLEEPING, so the count never dips below the sleepers (see
     * "Sleeping" at the top). */
    atomic_fetch_add_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
    atomic_store_explicit(&w->sleep, SLEEPING, memory_order_seq_cst);
    if (crew__threads_any_work(b) || atomic_load_explicit(&b->exiting, memory_order_seq_cst)) {
        uint32_t s = SLEEPING;
        if (atomic_compare_exchange_strong_explicit(&w->sleep, &s, AWAKE, memory_order_seq_cst,
                                                    memory_order_relaxed))
            atomic_fetch_sub_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
    } else {
        while (atomic_load_explicit(&w->sleep, memory_order_acquire) == SLEEPING)
            crew__futex_wait(&w->sleep, SLEEPING, NULL);
    }
    atomic_store_explicit(&w->busy, 1, memory_order_seq_cst);
}

void *crew__threads_worker_main(void *arg)
{
    worker *w = arg;
    tpool *b = w->b;
    crew__tls_worker = w;
    crew__tcache_bind(b->p);
    for (;;) {
        crew_future *f;
        while ((f = find_work(w)) != NULL)
            crew__threads_run_job(w, f);
        if (atomic_load_explicit(&b->exiting, memory_order_acquire))
            break;
        if (spin_for_work(b))
            continue;
        idle_park(w);
    }
    atomic_store(&w->busy, 0);
    crew__tls_worker = NULL;
    return NULL;
}

/* ops->is_worker */
bool crew__threads_is_worker(const crew_pool *p)
{
    worker *w = crew__tls_worker;
    return w && w->b->p == p;
}

/* ops->help_wait: a worker of p waits on f (forever: wait_deadline in the
 * core parks a worker that waits with a deadline) -- see "Waiting inside a
 * task" at the top. */
int crew__threads_help_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
{
    worker *w = crew__tls_worker;
    tpool *b = p->backend;
    CREW__ASSERT(w && w->b == b);
    for (;;) {
        if (crew__future_done(f))
            return 0;
        crew_future *g = find_work(w);
        if (g) {
            crew__threads_run_job(w, g);
            continue;
        }
        if (crew__deadline_expired(d))
            return crew__future_done(f) ? 0 : CREW_ETIMEDOUT;
        uint64_t start = crew__now_ns();
        bool again = false;
        for (unsigned i = 1;; i++) {
            if (crew__future_done(f))
                return 0;
            if (crew__threads_work_ready(b)) {
                again = true;
                break;
            }
            if (i < 256)
                crew__cpu_relax();
            else
                sched_yield(); /* the awaited task may need this CPU */
            if ((i & 15) == 0 && crew__now_ns() - start > CREW__SPIN_NS)
                break;
        }
        if (again)
            continue;
        atomic_store_explicit(&w->waiting_on, f, memory_order_seq_cst);
        uint32_t old = atomic_fetch_or_explicit(&f->state, CREW__F_WORKER_WAIT, memory_order_seq_cst);
        if ((old & CREW__F_PHASE) == CREW__F_DONE) {
            atomic_store_explicit(&w->waiting_on, NULL, memory_order_relaxed);
            return 0;
        }
        atomic_fetch_add_explicit(&b->n_sleeping, 1, memory_order_seq_cst); /* then SLEEPING: as idle_park */
        atomic_store_explicit(&w->sleep, SLEEPING, memory_order_seq_cst);
        if ((atomic_load_explicit(&f->state, memory_order_seq_cst) & CREW__F_PHASE) ==
                CREW__F_DONE ||
            crew__threads_any_work(b) || atomic_load_explicit(&b->exiting, memory_order_seq_cst)) {
            uint32_t s = SLEEPING;
            if (atomic_compare_exchange_strong_explicit(&w->sleep, &s, AWAKE,
                                                        memory_order_seq_cst,
                                                        memory_order_relaxed))
                atomic_fetch_sub_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
        } else {
            while (atomic_load_explicit(&w->sleep, memory_order_acquire) == SLEEPING) {
                if (crew__futex_wait(&w->sleep, SLEEPING, d) == CREW_ETIMEDOUT) {
                    uint32_t s = SLEEPING;
                    if (atomic_compare_exchange_strong_explicit(&w->sleep, &s, AWAKE,
                                                                memory_order_seq_cst,
                                                                memory_order_relaxed))
                        atomic_fetch_sub_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
                    break;
                }
            }
        }
        atomic_store_explicit(&w->waiting_on, NULL, memory_order_relaxed);
    }
}

/* ops->wake_helpers: f is done and had WORKER_WAIT. f is only compared
 * with each worker's waiting_on, never read: it may be freed already. */
void crew__threads_wake_helpers(crew_pool *p, crew_future *f)
{
    tpool *b = p->backend;
    if (!b)
        return;
    for (int i = 0; i < b->n; i++) {
        worker *w = &b->w[i];
        if (atomic_load_explicit(&w->waiting_on, memory_order_seq_cst) != f)
            continue;
        uint32_t s = SLEEPING;
        if (atomic_compare_exchange_strong_explicit(&w->sleep, &s, AWAKE, memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
            crew__futex_wake(&w->sleep, 1);
        }
    }
}
