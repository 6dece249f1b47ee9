/*
 * pool_threads.c -- the thread backend of crew_pool.
 *
 * DESIGN
 *
 * Queues. Every worker owns a lane: a bounded lock-free MPMC ring
 * (Vyukov's sequence-numbered slots, RING_CAP entries, zero-initialised so
 * untouched lanes cost no resident memory). A task submitted from outside
 * the pool goes to the next lane round-robin (per submitting thread); a task
 * submitted by a worker goes to its own lane. A worker pops its own lane
 * first, then steals from the other lanes in order, then looks at the
 * overflow list (a mutex-protected FIFO used only when a lane is full). So on
 * the hot path a submit is one CAS on a lane tail and a pop one CAS on a lane
 * head that mostly stays in its owner's cache; there is no lock, no malloc
 * (futures come from per-thread caches, pool.c) and no system call unless a
 * worker is asleep. docs/DESIGN.md compares this with a single shared queue.
 *
 * Sleeping (the no-lost-wake-up argument, also in docs/DESIGN.md). Each
 * worker has a futex word `sleep` (AWAKE/SLEEPING); the pool counts
 * sleeping workers in n_sleeping. An idle worker spins for CREW__SPIN_NS
 * looking for work, then: (1) n_sleeping++, (2) sleep = SLEEPING, (3) looks
 * at every lane and the overflow count once more, (4) futex-waits while
 * sleep is SLEEPING. A submitter (a) publishes the task with a seq_cst RMW
 * (lane tail CAS or overflow counter), (b) reads n_sleeping, and if it is
 * not 0 (c) CASes some worker's sleep SLEEPING -> AWAKE, decrements
 * n_sleeping and futex-wakes it. All of (1)(2)(3)(a)(b) are seq_cst. Either
 * (b) comes before (1) in that order -- then (3) comes after (a) and sees
 * the task -- or (b) sees the increment, and (c) finds that worker SLEEPING
 * (it wakes it, or another sleeper) or not yet SLEEPING (then, again, its
 * (3) comes after (a)). A worker that wakes itself in (3) CASes its own
 * word back to AWAKE; whoever wins that CAS decrements n_sleeping, so the
 * count stays exact, and since the decrement follows a CAS that found
 * SLEEPING, which follows the increment, the count never dips below the
 * number of sleepers. (With (1) and (2) the other way round it could: a
 * waker flipped a worker stored SLEEPING but not yet counted, the count hid
 * another sleeper for a moment, and a submit in that moment woke nobody --
 * a lost wake-up, 3 times in ~340,000 rounds of 16 tasks meeting at a
 * barrier under load.) futex_wait(sleep, SLEEPING) returns at once if the
 * word is already AWAKE, so a wake between (3) and (4) is not lost. When no
 * worker sleeps -- the steady state under load -- a submit costs just the
 * read (b).
 *
 * Waiting inside a task (nesting). crew_future_wait called from a worker
 * runs queued work until the future is done. With nothing to run it parks
 * like an idle worker, after recording the future in waiting_on and setting
 * WORKER_WAIT on it; the completer of a future with WORKER_WAIT wakes the
 * workers whose waiting_on is that future (same Dekker pattern: the waiter
 * sets SLEEPING then re-reads the future's phase; the completer publishes
 * DONE then reads the waiter's sleep word). New work also wakes it. So a
 * task that submits sub-tasks and waits for them never deadlocks the pool.
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
 */
#include "pool/pool_internal.h"

#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>

#define RING_CAP 16384u
#define AWAKE 0u
#define SLEEPING 1u

typedef struct ring_slot {
    _Atomic size_t seq; /* stored relative to the slot index: zero-init = empty, lap 0 */
    _Atomic(crew_future *) item;
} ring_slot;

/* Line 0 is read-only after create; the tail line is written by pushers,
 * the head line by poppers. (slots and mask used to sit on the head line:
 * every push then read a line that every pop writes.) */
typedef struct ring {
    ring_slot *slots;
    size_t mask;
    _Atomic size_t tail __attribute__((aligned(CREW_CACHELINE)));
    _Atomic size_t head __attribute__((aligned(CREW_CACHELINE)));
} ring;

typedef struct tpool tpool;

/* A run of tasks an outside waiter took from a lane at once (see
 * threads_wait). It stays stealable: `word` is a generation (high 32 bits)
 * and one "still here" bit per item (low 32); whoever clears an item's bit
 * with a CAS on the word owns that item -- the waiter in order, idle
 * workers from the end. Only the run's owner refills it, once every bit is
 * clear, bumping the generation, so an item read before a successful CAS
 * (same generation) is the one that bit stood for. */
#define HELP_BATCH 32u
#define HELPER_RUNS 4
typedef struct helper_run {
    _Atomic uint64_t word;
    _Atomic uint32_t owned;     /* a waiter uses this run */
    _Atomic(crew_future *) item[HELP_BATCH];
} __attribute__((aligned(CREW_CACHELINE))) helper_run;

typedef struct worker {
    ring lane;
    _Atomic uint32_t sleep __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t busy;
    _Atomic(crew_future *) waiting_on;
    /* counters written only by this worker */
    _Atomic uint64_t n_ok, n_failed, n_canceled, n_timed_out;
    tpool *b;
    int index;
    pthread_t thread;
    bool started;
    unsigned depth;             /* nesting of tasks run on this worker's stack */
    unsigned scratch_n;
    size_t scratch_cap;         /* size of each scratch buffer */
    void **scratch;             /* result buffers, one per nesting depth */
} __attribute__((aligned(CREW_CACHELINE))) worker;

struct tpool {
    crew_pool *p;
    int n;
    worker *w;
    size_t result_cap;
    uint64_t timeout_ns;
    unsigned max_pending;
    _Atomic uint32_t n_sleeping __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t stop_all;      /* crew_task_cancelled() hint for running tasks */
    _Atomic uint32_t cancel_queued; /* queued tasks end CREW_ECANCELED */
    _Atomic uint32_t exiting;
    _Atomic uint32_t idle_epoch;
    _Atomic uint64_t pending;       /* only with max_pending */
    _Atomic uint32_t ext_busy;      /* outside threads running a task while they wait */
    /* Bumped for every task an outside waiter runs: on their own line, not
     * on the flags every worker reads for every task (cancel_queued...). */
    _Atomic uint64_t ext_ok __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint64_t ext_failed, ext_canceled, ext_timed_out;
    pthread_mutex_t ovf_lock __attribute__((aligned(CREW_CACHELINE)));
    crew_future *ovf_head, *ovf_tail;
    _Atomic size_t ovf_n;
    /* Submits are counted, not bumped (crew_pool_stats.submitted): every
     * accepted task is pushed once to a lane (whose tail only grows) or to
     * the overflow (ovf_total); pushes that are not submits -- map helper
     * futures, a waiter's run going back to a lane -- are counted in
     * not_submits before they happen. */
    _Atomic uint64_t ovf_total;
    _Atomic uint64_t not_submits;
    helper_run hr[HELPER_RUNS];
};

static __thread worker *tls_worker CREW__TLS_IE;
static __thread unsigned tls_rr CREW__TLS_IE;
/* A thread outside the pool that runs queued tasks while it waits uses this
 * stand-in worker (index -1) for its nesting depth and result buffers. */
static __thread worker tls_helper;
static pthread_key_t helper_key;
static pthread_once_t helper_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------ ring */

static inline __attribute__((always_inline)) bool ring_push(ring *r, crew_future *f)
{
    size_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    for (;;) {
        size_t idx = pos & r->mask;
        ring_slot *s = &r->slots[idx];
        size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire) + idx;
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            /* seq_cst: this RMW is the "publish" of the sleep protocol. */
            if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                atomic_store_explicit(&s->item, f, memory_order_relaxed);
                atomic_store_explicit(&s->seq, pos + 1 - idx, memory_order_release);
                return true;
            }
        } else if (dif < 0) {
            return false; /* full */
        } else {
            pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
        }
    }
}

static crew_future *ring_pop(ring *r)
{
    size_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (;;) {
        size_t idx = pos & r->mask;
        ring_slot *s = &r->slots[idx];
        size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire) + idx;
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                crew_future *f = atomic_load_explicit(&s->item, memory_order_relaxed);
                atomic_store_explicit(&s->seq, pos + r->mask + 1 - idx, memory_order_release);
                return f;
            }
        } else if (dif < 0) {
            return NULL; /* empty, or the next item is still being written */
        } else {
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
        }
    }
}

/* Pops up to max items that are ready at the head with one CAS (claiming a
 * run of filled slots); returns how many (0: empty, or the next slot is
 * still being written). For an outside waiter: one head CAS, and one trip
 * of the head line, per run instead of per task. */
static unsigned ring_pop_n(ring *r, crew_future **out, unsigned max)
{
    size_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (;;) {
        unsigned k = 0;
        while (k < max) {
            size_t idx = (pos + k) & r->mask;
            size_t seq = atomic_load_explicit(&r->slots[idx].seq, memory_order_acquire) + idx;
            if (seq != pos + k + 1)
                break;
            k++;
        }
        if (k == 0) {
            size_t idx = pos & r->mask;
            size_t seq = atomic_load_explicit(&r->slots[idx].seq, memory_order_acquire) + idx;
            if ((intptr_t)seq - (intptr_t)(pos + 1) < 0)
                return 0; /* empty, or the next item is still being written */
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
            continue;
        }
        /* The head is monotonic: if it is still pos, nobody popped these
         * slots since we saw them filled, so they are ours now. */
        if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + k, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            for (unsigned i = 0; i < k; i++) {
                size_t idx = (pos + i) & r->mask;
                ring_slot *sl = &r->slots[idx];
                out[i] = atomic_load_explicit(&sl->item, memory_order_relaxed);
                atomic_store_explicit(&sl->seq, pos + i + r->mask + 1 - idx, memory_order_release);
            }
            return k;
        }
    }
}

/* Is the next slot to pop already filled? A cheap poll for idle workers:
 * it reads the head (consumer side) and the slot the next pop needs anyway,
 * never the tail line the submitter CASes on every push. Not a seq_cst
 * check: the sleep protocol's last look uses ring_nonempty(). */
static bool ring_ready(ring *r)
{
    size_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t idx = pos & r->mask;
    size_t seq = atomic_load_explicit(&r->slots[idx].seq, memory_order_relaxed) + idx;
    return seq == pos + 1;
}

static bool ring_nonempty(ring *r)
{
    return atomic_load_explicit(&r->tail, memory_order_seq_cst) !=
           atomic_load_explicit(&r->head, memory_order_seq_cst);
}

/* ------------------------------------------------------------ queues */

static void ovf_push(tpool *b, crew_future *f)
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

static crew_future *ovf_pop(tpool *b)
{
    if (atomic_load_explicit(&b->ovf_n, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&b->ovf_lock);
    crew_future *f = b->ovf_head;
    if (f) {
        b->ovf_head = f->next;
        if (!b->ovf_head)
            b->ovf_tail = NULL;
        atomic_fetch_sub_explicit(&b->ovf_n, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&b->ovf_lock);
    return f;
}

/* Takes one item of run r (the lowest, or the highest when stealing), or NULL. */
static crew_future *run_take(helper_run *r, bool lowest)
{
    uint64_t w = atomic_load_explicit(&r->word, memory_order_acquire);
    for (;;) {
        uint32_t bits = (uint32_t)w;
        if (!bits)
            return NULL;
        unsigned i = lowest ? (unsigned)__builtin_ctz(bits) : 31u - (unsigned)__builtin_clz(bits);
        crew_future *f = atomic_load_explicit(&r->item[i], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&r->word, &w, w & ~((uint64_t)1 << i),
                                                  memory_order_acq_rel, memory_order_acquire))
            return f;
    }
}

static crew_future *steal_runs(tpool *b)
{
    for (int i = 0; i < HELPER_RUNS; i++) {
        if ((uint32_t)atomic_load_explicit(&b->hr[i].word, memory_order_relaxed) == 0)
            continue;
        crew_future *f = run_take(&b->hr[i], false);
        if (f)
            return f;
    }
    return NULL;
}

static bool any_work(tpool *b)
{
    if (atomic_load_explicit(&b->ovf_n, memory_order_seq_cst))
        return true;
    for (int i = 0; i < HELPER_RUNS; i++)
        if ((uint32_t)atomic_load_explicit(&b->hr[i].word, memory_order_seq_cst))
            return true;
    for (int i = 0; i < b->n; i++)
        if (ring_nonempty(&b->w[i].lane))
            return true;
    return false;
}

/* The frequent poll of a searching worker (see ring_ready). */
static bool work_ready(tpool *b)
{
    if (atomic_load_explicit(&b->ovf_n, memory_order_relaxed))
        return true;
    for (int i = 0; i < b->n; i++)
        if (ring_ready(&b->w[i].lane))
            return true;
    for (int i = 0; i < HELPER_RUNS; i++)
        if ((uint32_t)atomic_load_explicit(&b->hr[i].word, memory_order_relaxed))
            return true;
    return false;
}

static crew_future *find_work(worker *w)
{
    tpool *b = w->b;
    crew_future *f = ring_pop(&w->lane);
    if (f)
        return f;
    for (int k = 1; k < b->n; k++) {
        int i = w->index + k;
        if (i >= b->n)
            i -= b->n;
        f = ring_pop(&b->w[i].lane);
        if (f)
            return f;
    }
    f = ovf_pop(b);
    return f ? f : steal_runs(b);
}

/* Wakes one sleeping worker, preferring `hint`. */
static void wake_one(tpool *b, int hint)
{
    if (CREW_LIKELY(atomic_load_explicit(&b->n_sleeping, memory_order_seq_cst) == 0))
        return;
    for (int k = 0; k < b->n; k++) {
        int i = hint + k;
        if (i >= b->n)
            i -= b->n;
        worker *w = &b->w[i];
        uint32_t s = SLEEPING;
        if (atomic_load_explicit(&w->sleep, memory_order_relaxed) == SLEEPING &&
            atomic_compare_exchange_strong_explicit(&w->sleep, &s, AWAKE, memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&b->n_sleeping, 1, memory_order_seq_cst);
            crew__futex_wake(&w->sleep, 1);
            return;
        }
    }
}

static void wake_all(tpool *b)
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

/* Pushes f to lane `i` (or the overflow) and wakes a sleeper if any. */
static inline __attribute__((always_inline)) void enqueue(tpool *b, int i, crew_future *f)
{
    if (CREW_UNLIKELY(!ring_push(&b->w[i].lane, f)))
        ovf_push(b, f);
    wake_one(b, i);
}

static int pick_lane(tpool *b)
{
    worker *me = tls_worker;
    if (me && me->b == b)
        return me->index;
    unsigned r = tls_rr + 1;
    if (r >= (unsigned)b->n)
        r = 0;
    tls_rr = r;
    return (int)r;
}

/* ------------------------------------------------------------ running */

static void pending_done(tpool *b)
{
    if (b->max_pending)
        atomic_fetch_sub_explicit(&b->pending, 1, memory_order_relaxed);
}

static void *scratch_for_depth(worker *w, unsigned depth)
{
    size_t cap = w->b->result_cap;
    if (CREW_LIKELY(depth < w->scratch_n && w->scratch[depth] && w->scratch_cap >= cap))
        return w->scratch[depth];
    if (w->scratch_cap < cap) {
        /* A helper meets a pool with bigger results: buffers at this depth
         * and deeper are not in use, size them anew. (Never a pool worker:
         * its pool's result_cap is its scratch_cap, and its depth-0 buffer
         * is mapped, not malloc'd.) */
        CREW_ASSERT(w->index < 0);
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
    if (CREW_LIKELY(w->index >= 0)) {
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
    if (CREW_LIKELY(len <= CREW__RES_INLINE) && CREW_LIKELY(!(s & slow))) {
        if (len)
            memcpy(f->res_inline, buf, len);
        f->res_len = (uint32_t)len;
        if (CREW_UNLIKELY(s & CREW__F_CANCEL))
            rc = CREW_ECANCELED;
        count_status(w, rc, 1);
        counted = true;
        for (;;) {
            f->status = rc; /* published by the CAS (release) */
            if (CREW_LIKELY(atomic_compare_exchange_weak_explicit(
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

static void run_map_helper(worker *w, crew_future *hf)
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
            if (CREW_UNLIKELY(rc != 0 || len > out_size))
                rc = len > out_size ? CREW_E2BIG : rc > 0 ? 0 : rc; /* never a silent cut */
            /* Stopped while it ran (the map cancelled, shutdown(p, 1),
             * destroy): this item and the rest of the chunk end
             * CREW_ECANCELED, whatever it returned -- as a task would. */
            if (CREW_UNLIKELY(atomic_load_explicit(&m->cancel, memory_order_relaxed) |
                              atomic_load_explicit(&b->stop_all, memory_order_relaxed)))
                break;
            if (CREW_UNLIKELY(rc < 0)) {
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
        if (CREW_UNLIKELY(i < end)) {
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

/* Completes a queued task that will not run (shutdown with cancel, destroy). */
static void drop_queued(tpool *b, crew_future *f)
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

static void run_job(worker *w, crew_future *f)
{
    crew__prefetch_w(f); /* f's first line comes from the submitter's cache: own it at once */
    tpool *b = w->b;
    if (CREW_UNLIKELY(f->map != NULL)) {
        run_map_helper(w, f);
        return;
    }
    if (CREW_UNLIKELY(atomic_load_explicit(&b->cancel_queued, memory_order_relaxed))) {
        drop_queued(b, f);
        return;
    }
    if (CREW_UNLIKELY(!crew__future_start(f))) {
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
    if (CREW_LIKELY(buf != NULL)) {
        rc = f->fn(&t, f->arg, f->arg_len, buf, b->result_cap, &len);
        if (rc > 0)
            rc = 0;
        if (CREW_UNLIKELY(len > b->result_cap)) {
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
    if (CREW_UNLIKELY(atomic_load_explicit(&b->stop_all, memory_order_relaxed)))
        rc = CREW_ECANCELED;
    else if (CREW_UNLIKELY(t.deadline_ns != 0) && (t.timed_out || crew__now_ns() >= t.deadline_ns))
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
static bool spin_for_work(tpool *b, int hint)
{
    uint64_t start = crew__now_ns();
    bool found = false;
    for (unsigned i = 1;; i++) {
        if (work_ready(b) || atomic_load_explicit(&b->exiting, memory_order_relaxed)) {
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
    (void)hint;
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
    if (any_work(b) || atomic_load_explicit(&b->exiting, memory_order_seq_cst)) {
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

static void *worker_main(void *arg)
{
    worker *w = arg;
    tpool *b = w->b;
    tls_worker = w;
    crew__tcache_bind(b->p);
    for (;;) {
        crew_future *f;
        while ((f = find_work(w)) != NULL)
            run_job(w, f);
        if (atomic_load_explicit(&b->exiting, memory_order_acquire))
            break;
        if (spin_for_work(b, w->index))
            continue;
        idle_park(w);
    }
    atomic_store(&w->busy, 0);
    tls_worker = NULL;
    return NULL;
}

/* ops->is_worker */
static bool threads_is_worker(const crew_pool *p)
{
    worker *w = tls_worker;
    return w && w->b->p == p;
}

/* ops->in_task (also asked by threads_shutdown) */
static bool threads_in_task(const crew_pool *p)
{
    worker *w = tls_worker;
    if (w && w->b->p == p)
        return true;
    return tls_helper.depth > 0 && tls_helper.b && tls_helper.b->p == p;
}

/* ops->help_wait: a worker of p waits on f (forever: wait_deadline in the
 * core parks a worker that waits with a deadline) -- see "Waiting inside a
 * task" at the top. */
static int threads_help_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
{
    worker *w = tls_worker;
    tpool *b = p->backend;
    CREW_ASSERT(w && w->b == b);
    for (;;) {
        if (crew__future_done(f))
            return 0;
        crew_future *g = find_work(w);
        if (g) {
            run_job(w, g);
            continue;
        }
        if (crew__deadline_expired(d))
            return crew__future_done(f) ? 0 : CREW_ETIMEDOUT;
        uint64_t start = crew__now_ns();
        bool again = false;
        for (unsigned i = 1;; i++) {
            if (crew__future_done(f))
                return 0;
            if (work_ready(b)) {
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
            any_work(b) || atomic_load_explicit(&b->exiting, memory_order_seq_cst)) {
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

static void helper_free(void *arg)
{
    (void)arg;
    worker *h = &tls_helper;
    for (unsigned k = 0; k < h->scratch_n; k++)
        crew__free(h->scratch[k]);
    crew__free(h->scratch);
    h->scratch = NULL;
    h->scratch_n = 0;
    h->scratch_cap = 0;
}

static void helper_key_init(void) { pthread_key_create(&helper_key, helper_free); }

/* Takes up to `limit` ready tasks from the first non-empty lane, in
 * order, from `start` on; then the overflow (one). Returns how many. */
static unsigned pop_any_n(tpool *b, int start, crew_future **out, unsigned limit)
{
    for (int k = 0; k < b->n; k++) {
        int i = start + k;
        if (i >= b->n)
            i -= b->n;
        /* At most a fair share of what the lane holds (workers + us), so
         * that a few long tasks spread over the workers without stealing. */
        ring *r = &b->w[i].lane;
        size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        size_t hd = atomic_load_explicit(&r->head, memory_order_relaxed);
        size_t share = t > hd ? (t - hd) / ((size_t)b->n + 1) : 0;
        unsigned max = share >= limit ? limit : share ? (unsigned)share : 1;
        unsigned got = ring_pop_n(r, out, max);
        if (got)
            return got;
    }
    if ((out[0] = ovf_pop(b)) != NULL)
        return 1;
    return (out[0] = steal_runs(b)) != NULL; /* e.g. our own outer run, when nested */
}

static helper_run *run_claim(tpool *b)
{
    for (int i = 0; i < HELPER_RUNS; i++) {
        uint32_t z = 0;
        if (atomic_load_explicit(&b->hr[i].owned, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&b->hr[i].owned, &z, 1, memory_order_acquire,
                                                    memory_order_relaxed))
            return &b->hr[i];
    }
    return NULL;
}

/* ops->wait: a thread outside the pool waits on f. Rather than sleep while
 * tasks are queued, it runs them (FIFO, like a worker that steals), as TBB's
 * task_group::wait and OpenMP's master thread do: the tasks' data is often
 * still in this thread's cache, and no worker has to be woken. Once nothing
 * is queued it parks on f. It claims the ready tasks at a lane's head in
 * runs of up to HELP_BATCH with one CAS (ring_pop_n; at most a fair share
 * of the lane): the head line then moves between it and the lane's owner
 * once per run, not once per task. The run sits in a helper_run that idle
 * workers steal from (a task of the run may block until another one has
 * run), and publishing it follows the sleep protocol (seq_cst store, then
 * wake_one). What it has not started when it stops (f done, deadline,
 * cancel) goes back to a lane, still QUEUED. Tasks run here see
 * crew_task_worker() == -1. The
 * core counts us in p->hook_users, so destroy waits for us before freeing
 * the lanes; shutdown counts us in ext_busy. */
static int threads_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
{
    /* Only a wait forever helps: a task picked up here could run past any
     * finite deadline (a 0.05 s wait came back after the 2 s task it ran). */
    if (!d->forever)
        return crew__future_park(f, d);
    tpool *b = p->backend;
    worker *h = &tls_helper;
    tpool *saved = h->b;
    bool busy = false;
    const int start = (int)(tls_rr % (unsigned)b->n);
    helper_run *run = NULL; /* claimed at the first refill */
    bool no_run = false;    /* every run buffer was taken: one task at a time */
    h->index = -1;
    /* Set once for the loop: a nested wait inside a task (on another pool)
     * restores it before it returns. */
    h->b = b;
    for (unsigned i = 0;; i++) {
        if (crew__future_done(f))
            break;
        /* The clock is read every 16 tasks: reading it costs as much as
         * running an empty task. */
        if (atomic_load_explicit(&b->cancel_queued, memory_order_relaxed) ||
            ((i & 15) == 0 && crew__deadline_expired(d)))
            break;
        /* Counted busy before the pop, so that shutdown never sees the
         * lanes empty while we hold a task it does not know about. */
        if (!busy) {
            atomic_fetch_add_explicit(&b->ext_busy, 1, memory_order_seq_cst);
            busy = true;
            if (!h->scratch) {
                pthread_once(&helper_once, helper_key_init);
                pthread_setspecific(helper_key, h);
            }
        }
        crew_future *g = run ? run_take(run, true) : NULL;
        if (!g) {
            if (!run && !no_run && !(run = run_claim(b)))
                no_run = true;
            crew_future *out[HELP_BATCH];
            unsigned k = pop_any_n(b, start, out, run ? HELP_BATCH : 1);
            if (!k)
                break;
            g = out[0];
            if (k > 1) {
                /* Publish the rest (the run is empty: every bit is clear),
                 * then the sleep protocol's check: a worker that looked
                 * before this store is counted in n_sleeping. */
                for (unsigned j = 1; j < k; j++)
                    atomic_store_explicit(&run->item[j - 1], out[j], memory_order_relaxed);
                uint64_t w = atomic_load_explicit(&run->word, memory_order_relaxed);
                uint64_t bits = k - 1 == 32 ? 0xffffffffu : ((uint64_t)1 << (k - 1)) - 1;
                atomic_store_explicit(&run->word, (((w >> 32) + 1) << 32) | bits,
                                      memory_order_seq_cst);
                wake_one(b, start);
            }
        }
        run_job(h, g);
    }
    if (run) {
        /* What we have not started goes back to a lane, still QUEUED. */
        crew_future *g;
        while ((g = run_take(run, true)) != NULL) {
            atomic_fetch_add_explicit(&b->not_submits, 1, memory_order_relaxed);
            enqueue(b, start, g);
        }
        atomic_store_explicit(&run->owned, 0, memory_order_release);
    }
    h->b = saved;
    if (busy) {
        atomic_fetch_sub_explicit(&b->ext_busy, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&p->shut, memory_order_seq_cst)) {
            atomic_fetch_add_explicit(&b->idle_epoch, 1, memory_order_seq_cst);
            crew__futex_wake(&b->idle_epoch, INT32_MAX);
        }
    }
    return crew__future_park(f, d);
}

/* ops->wake_helpers: f is done and had WORKER_WAIT. f is only compared
 * with each worker's waiting_on, never read: it may be freed already. */
static void threads_wake_helpers(crew_pool *p, crew_future *f)
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

/* ------------------------------------------------------------ ops */

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
    wake_all(b);
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
        int e = pthread_create(&w->thread, NULL, worker_main, w);
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
    if (CREW_UNLIKELY(b->max_pending)) {
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
    if (any_work(b) || atomic_load_explicit(&b->ext_busy, memory_order_seq_cst))
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
    wake_all(b);
    /* Waiting here would wait for ourselves: a task of the pool, or a done
     * callback (it runs on the worker or waiter that completed the task,
     * counted busy until the callback returns). */
    if (threads_in_task(p) || crew__pool_in_callback(p))
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
        while ((f = ring_pop(&b->w[i].lane)) != NULL)
            drop_queued(b, f);
    }
    crew_future *f;
    while ((f = ovf_pop(b)) != NULL)
        drop_queued(b, f);
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
    .wait = threads_wait,
    .shutdown = threads_shutdown,
    .destroy = threads_destroy,
    .stats = threads_stats,
    .in_task = threads_in_task,
    .is_worker = threads_is_worker,
    .help_wait = threads_help_wait,
    .wake_helpers = threads_wake_helpers,
    .counts_submits = true,
    .shutdown_in_callback = true,
};
