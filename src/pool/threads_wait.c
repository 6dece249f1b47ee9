/*
 * threads_wait.c -- a thread outside a thread pool that waits on one of
 * its futures (ops->wait) and runs queued tasks meanwhile; and the
 * in-task test (ops->in_task).
 *
 * DESIGN
 *
 * See the comment over crew__threads_wait: the waiter claims runs of
 * ready tasks at a lane's head with one CAS and keeps them stealable in a
 * helper_run (threads_internal.h). It runs them as a stand-in worker
 * (tls_helper, index -1: its own nesting depth and result buffers, freed
 * by a pthread key destructor when the thread exits), counted in the
 * pool's ext_busy so that shutdown waits for it, and in p->hook_users by
 * the core so that destroy does. What it has not started when it stops
 * goes back to a lane, still QUEUED, counted in not_submits first.
 */
#include "pool/threads_internal.h"

/* A thread outside the pool that runs queued tasks while it waits uses this
 * stand-in worker (index -1) for its nesting depth and result buffers. */
static __thread worker tls_helper;
static pthread_key_t helper_key;
static pthread_once_t helper_once = PTHREAD_ONCE_INIT;

/* ops->in_task (also asked by threads_shutdown) */
bool crew__threads_in_task(const crew_pool *p)
{
    worker *w = crew__tls_worker;
    if (w && w->b->p == p)
        return true;
    return tls_helper.depth > 0 && tls_helper.b && tls_helper.b->p == p;
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
        lane_ring *r = &b->w[i].lane;
        size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        size_t hd = atomic_load_explicit(&r->head, memory_order_relaxed);
        size_t share = t > hd ? (t - hd) / ((size_t)b->n + 1) : 0;
        unsigned max = share >= limit ? limit : share ? (unsigned)share : 1;
        unsigned got = lane_pop_n(r, out, max);
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
 * runs of up to HELP_BATCH with one CAS (lane_pop_n; at most a fair share
 * of the lane): the head line then moves between it and the lane's owner
 * once per run, not once per task. The run sits in a helper_run that idle
 * workers steal from (a task of the run may block until another one has
 * run), and publishing it follows the sleep protocol (seq_cst store, then
 * wake_one). What it has not started when it stops (f done, deadline,
 * cancel) goes back to a lane, still QUEUED. Tasks run here see
 * crew_task_worker() == -1. The
 * core counts us in p->hook_users, so destroy waits for us before freeing
 * the lanes; shutdown counts us in ext_busy. */
int crew__threads_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
{
    /* Only a wait forever helps: a task picked up here could run past any
     * finite deadline (a 0.05 s wait came back after the 2 s task it ran). */
    if (!d->forever)
        return crew__future_park(f, d);
    tpool *b = p->backend;
    worker *h = &tls_helper;
    tpool *saved = h->b;
    bool busy = false;
    const int start = (int)(crew__tls_rr % (unsigned)b->n);
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
        crew__threads_run_job(h, g);
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
