/*
 * threads_internal.h -- the thread backend's data and its queue
 * operations, shared by its files (never by the core):
 *   pool_threads.c    the ops table: create, submit, shutdown, destroy...
 *   threads_wait.c    a thread outside the pool that waits (ops->wait)
 *   threads_worker.c  the workers: finding work, running a task, sleeping,
 *                     waiting inside a task (ops->help_wait)
 *   threads_map.c     a worker running its share of a map
 * Each calls only the ones below it. To follow a task: threads_submit
 * (pool_threads.c) pushes it with enqueue (below); crew__threads_worker_main
 * or an outside waiter (crew__threads_wait) pops it and runs it with
 * crew__threads_run_job (threads_worker.c).
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
 * (futures come from per-thread caches, future_alloc.c) and no system call unless a
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
 * The operations on every per-task path -- the ring, the overflow pop, the
 * runs, wake_one, enqueue, pick_lane -- are static inline here, so that a
 * submit or a pop pays no call into another file.
 */
#ifndef CREW__POOL_THREADS_INTERNAL_H
#define CREW__POOL_THREADS_INTERNAL_H

#include "pool/pool_internal.h"

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
typedef struct lane_ring {
    ring_slot *slots;
    size_t mask;
    _Atomic size_t tail __attribute__((aligned(CREW__CACHELINE)));
    _Atomic size_t head __attribute__((aligned(CREW__CACHELINE)));
} lane_ring;

typedef struct tpool tpool;

/* A run of tasks an outside waiter took from a lane at once (see
 * crew__threads_wait). It stays stealable: `word` is a generation (high 32 bits)
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
} __attribute__((aligned(CREW__CACHELINE))) helper_run;

typedef struct worker {
    lane_ring lane;
    _Atomic uint32_t sleep __attribute__((aligned(CREW__CACHELINE)));
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
} __attribute__((aligned(CREW__CACHELINE))) worker;

struct tpool {
    crew_pool *p;
    /* Length of w[] (one lane per worker): p->opts.workers, copied once at
     * create because every lane walk on the hot path is bounded by it and
     * it sits on this line with w. Not a second setting: nothing changes
     * it, and crew_pool_workers reads p->opts.workers. */
    int n;
    worker *w;
    size_t result_cap;
    uint64_t timeout_ns;
    unsigned max_pending;
    _Atomic uint32_t n_sleeping __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint32_t stop_all;      /* crew_task_cancelled() hint for running tasks */
    _Atomic uint32_t cancel_queued; /* queued tasks end CREW_ECANCELED */
    _Atomic uint32_t exiting;
    _Atomic uint32_t idle_epoch;
    _Atomic uint64_t pending;       /* only with max_pending */
    _Atomic uint32_t ext_busy;      /* outside threads running a task while they wait */
    /* Bumped for every task an outside waiter runs: on their own line, not
     * on the flags every worker reads for every task (cancel_queued...). */
    _Atomic uint64_t ext_ok __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint64_t ext_failed, ext_canceled, ext_timed_out;
    pthread_mutex_t ovf_lock __attribute__((aligned(CREW__CACHELINE)));
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

/* The worker the calling thread is (NULL outside every pool), and the
 * calling thread's round-robin lane for submits from outside
 * (threads_worker.c defines them). Initial-exec: read on every submit. */
extern __thread worker *crew__tls_worker CREW__TLS_IE;
extern __thread unsigned crew__tls_rr CREW__TLS_IE;

/* Cold halves of the queues (threads_worker.c). */
void crew__threads_ovf_push(tpool *b, crew_future *f);
bool crew__threads_any_work(tpool *b);
bool crew__threads_work_ready(tpool *b);
void crew__threads_wake_all(tpool *b);

/* ------------------------------------------------------------ ring */

static inline __attribute__((always_inline)) bool lane_push(lane_ring *r, crew_future *f)
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

static inline crew_future *lane_pop(lane_ring *r)
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
static inline unsigned lane_pop_n(lane_ring *r, crew_future **out, unsigned max)
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
 * check: the sleep protocol's last look uses lane_nonempty(). */
static inline bool lane_ready(lane_ring *r)
{
    size_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t idx = pos & r->mask;
    size_t seq = atomic_load_explicit(&r->slots[idx].seq, memory_order_relaxed) + idx;
    return seq == pos + 1;
}

static inline bool lane_nonempty(lane_ring *r)
{
    return atomic_load_explicit(&r->tail, memory_order_seq_cst) !=
           atomic_load_explicit(&r->head, memory_order_seq_cst);
}

/* ------------------------------------------------------------ queues */

static inline crew_future *ovf_pop(tpool *b)
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
static inline crew_future *run_take(helper_run *r, bool lowest)
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

static inline crew_future *steal_runs(tpool *b)
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

/* Wakes one sleeping worker, preferring `hint`. */
static inline void wake_one(tpool *b, int hint)
{
    if (CREW__LIKELY(atomic_load_explicit(&b->n_sleeping, memory_order_seq_cst) == 0))
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

/* Pushes f to lane `i` (or the overflow) and wakes a sleeper if any. */
static inline __attribute__((always_inline)) void enqueue(tpool *b, int i, crew_future *f)
{
    if (CREW__UNLIKELY(!lane_push(&b->w[i].lane, f)))
        crew__threads_ovf_push(b, f);
    wake_one(b, i);
}

static inline int pick_lane(tpool *b)
{
    worker *me = crew__tls_worker;
    if (me && me->b == b)
        return me->index;
    unsigned r = crew__tls_rr + 1;
    if (r >= (unsigned)b->n)
        r = 0;
    crew__tls_rr = r;
    return (int)r;
}

static inline void pending_done(tpool *b)
{
    if (b->max_pending)
        atomic_fetch_sub_explicit(&b->pending, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------ across the files */

/* threads_map.c: w runs items of the map of helper future hf until none
 * is left, then drops its holds (hf, the map, pending). */
void crew__threads_run_map(worker *w, crew_future *hf);

/* threads_worker.c */
/* Runs (or drops, if cancelled or shut) popped future f on w, a pool
 * worker or an outside waiter's stand-in (index -1). */
void crew__threads_run_job(worker *w, crew_future *f);
/* Completes a queued task that will not run (shutdown with cancel, destroy). */
void crew__threads_drop_queued(tpool *b, crew_future *f);
/* A worker thread's body (arg: its worker). */
void *crew__threads_worker_main(void *arg);
bool crew__threads_is_worker(const crew_pool *p);
int crew__threads_help_wait(crew_pool *p, crew_future *f, const crew__deadline *d);
void crew__threads_wake_helpers(crew_pool *p, crew_future *f);

/* threads_wait.c */
bool crew__threads_in_task(const crew_pool *p);
int crew__threads_wait(crew_pool *p, crew_future *f, const crew__deadline *d);

#endif /* CREW__POOL_THREADS_INTERNAL_H */
