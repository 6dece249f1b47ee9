/*
 * proc_monitor.c -- the monitor thread of a process pool (one per pool,
 * never on the hot path): it starts workers, learns of their deaths at
 * once, fails or requeues what a dead worker was running, enforces
 * deadlines, replaces recycled and crashed workers and trips the breaker.
 * Interface: proc_internal.h.
 *
 * DESIGN
 *
 * The monitor blocks in epoll on: every worker's pidfd (death, seen at
 * once), every worker's region socket (proc_regions.c), the eventfd
 * workers kick (unwatched completions: it sweeps them, so callbacks, the
 * completion fd, crew_future_done polling and crew_wait_any all work), a
 * control eventfd (cancel/shutdown requests) and a timerfd (deadlines, kill
 * grace, respawn back-off, a due full sweep).
 *
 * Death. The monitor reaps the worker and reads its wrec: every store the
 * worker made is visible once the kernel reported its death. A worker runs
 * at most one slot at a time and names it in wrec.slot before it claims it
 * (proc_layout.h), so the monitor looks at that one slot: if it is still
 * RUNNING under this worker's index, the worker died running it. That task
 * fails with the details (pid, signal or exit code, task id); a task the
 * pool killed the worker for by mistake (the kill was for a task that ended
 * meanwhile) goes back to the queue; a chunk keeps its finished items, fails
 * the running one and hands the rest back to its map. Then the death is
 * counted for the breaker (one place: breaker_note_locked) and a
 * replacement starts at the same index; a replacement that cannot start
 * counts as a death too, and is tried again 10 ms later.
 *
 * A worker whose pidfd cannot be added to the epoll set would die unseen
 * and take its task with it: start_worker stops it at once and settles it
 * as a death the pool caused for no task (whatever it claimed runs again),
 * and reports the failed start.
 *
 * Deadlines: a running task's start time is in its worker record; the
 * monitor sends SIGTERM at start + task_timeout and SIGKILL kill_grace
 * later. Recycling is the worker's own doing (proc_worker.c): it exits with
 * a recorded reason and the monitor replaces it.
 *
 * Start: workers are crew_process children started with the pool's start
 * method (default: the forkserver, safe from threaded parents), receiving
 * the memfd, the monitor's eventfd and their region socket through
 * pass_fds. Replacements are started by the monitor thread, which lives as
 * long as the pool, so a worker's parent-death signal is tied to a thread
 * that outlives it (for fork and spawn the first workers are started here
 * too; forkserver children are tied to the forkserver's own thread).
 *
 * Locks: b->lk around worker records, the breaker and slot settlement;
 * never held while a future completes (sweep, fail_all_queued run after
 * it is released).
 */
#include "pool/proc_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define SWEEP_DUE_NS 10000000u   /* 10 ms */
#define RESPAWN_RETRY_NS 10000000u /* 10 ms */

/* epoll keys: a worker's pidfd is its index, its socket EV_SOCK + index. */
#define EV_WAKE UINT64_C(0x100000)
#define EV_CTL UINT64_C(0x100001)
#define EV_TIMER UINT64_C(0x100002)
#define EV_SOCK UINT64_C(0x200000)

static void drain_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) > 0)
        ;
}

/* Is the process behind this pidfd gone (the fd is readable)? */
static bool pidfd_dead(int pidfd)
{
    struct pollfd pf = {.fd = pidfd, .events = POLLIN};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLIN | POLLHUP | POLLERR));
}

/* ------------------------------------------------------------ breaker */

/* The breaker (monitor, under lk). Its job is restart storms, not tasks
 * that crash now and then: it trips when breaker_crashes workers in a row
 * die (unplanned, not killed by the pool) before finishing anything -- not
 * one task, not one map item. A broken start (a library that does not load,
 * a task that crashes on every call, an initializer that fails) trips it
 * after that many deaths; a pool whose tasks crash sometimes never does,
 * since a worker that finished work before it died resets the count. One
 * counter: O(1) memory whatever the setting. progressed: the dead worker
 * had finished something. Returns true when the breaker trips now (then
 * b->broken is set; the caller fails the queued work once lk is free). */
static bool breaker_note_locked(pb *b, bool progressed)
{
    if (progressed) {
        b->fresh_deaths = 0;
        return false;
    }
    if (b->fresh_deaths < UINT32_MAX)
        b->fresh_deaths++;
    if (opts(b)->breaker_crashes == CREW_BREAKER_OFF ||
        b->fresh_deaths < opts(b)->breaker_crashes)
        return false;
    atomic_store(&b->broken, 1);
    return true;
}

/* Fails every future in the overflow FIFO. */
static void fail_overflow(pb *b, int status)
{
    pthread_mutex_lock(&b->lk);
    crew_future *ov = b->ov_head;
    b->ov_head = b->ov_tail = NULL;
    b->n_ov = 0;
    pthread_mutex_unlock(&b->lk);
    while (ov) {
        crew_future *n = ov->next;
        ov->next = NULL;
        crew__procs_future_unref_region(b, ov);
        crew__future_complete(ov, status, NULL, 0, NULL);
        ov = n;
    }
}

/* Fails every map item not yet in a slot: claimed ranges, ranges handed
 * back by deaths, and what the map has not handed out. Taken under lk a
 * batch of maps at a time and failed after it (no allocation: this runs
 * when things go wrong); a map taken is marked exhausted with nothing
 * pending, so the next walk passes it and the walks end. A map stays alive
 * while it has unreported items. */
#define MAP_BATCH 16
static void fail_maps_pending(pb *b, int status)
{
    size_t np;
    do {
        struct {
            crew__map *m;
            size_t first, count;
            redo *rd;
        } pend[MAP_BATCH];
        np = 0;
        pthread_mutex_lock(&b->lk);
        for (pmap *pm = b->maps; pm && np < MAP_BATCH; pm = pm->next) {
            if (pm->count == 0 && pm->exhausted && !pm->redo)
                continue;
            pend[np].m = pm->m;
            pend[np].first = pm->first;
            pend[np].count = pm->count;
            pend[np].rd = pm->redo;
            np++;
            pm->redo = NULL;
            pm->count = 0;
            pm->exhausted = true;
        }
        pthread_mutex_unlock(&b->lk);
        for (size_t i = 0; i < np; i++) {
            crew__map *m = pend[i].m;
            if (pend[i].count)
                crew__map_done_range(m, pend[i].first, pend[i].count, NULL, status, NULL);
            crew__procs_redo_fail(m, pend[i].rd, status);
            if (status == CREW_ECANCELED) {
                crew__map_cancel_rest(m);
            } else {
                /* Claim and fail whatever the map still has. */
                size_t first, count;
                while (crew__map_claim(m, &first, &count))
                    crew__map_done_range(m, first, count, NULL, status, NULL);
            }
        }
    } while (np == MAP_BATCH);
}

/* pick for crew__procs_transition_all: a QUEUED slot turns FAILED with
 * status *ctx. */
static pick_verdict pick_fail_queued(pb *b, uint32_t x, void *ctx)
{
    slot_hdr *s = slot_at(b->h, x);
    uint32_t v = atomic_load(&s->state);
    if (st_phase(v) != PH_QUEUED)
        return PICK_SKIP;
    /* The details first: a watcher may harvest the moment the state turns
     * FAILED. */
    rec *r = &b->rec[x];
    r->fail_status = *(const int *)ctx;
    r->fail_pid = 0;
    r->fail_signal = r->fail_code = 0;
    if (atomic_compare_exchange_strong(&s->state, &v, st_make(st_gen(v), PH_FAILED, 0)))
        return PICK_TAKE;
    r->fail_status = 0;
    return PICK_SKIP;
}

/* Fails every queued task and pending map item with `status` (the breaker
 * tripped: CREW_EBROKEN; a cancelling shutdown: CREW_ECANCELED). Running
 * tasks are left to finish or be stopped. In this order -- the overflow
 * FIFO, the maps' pending items, the queued slots -- nothing can be
 * dispatched after its source was emptied and miss the last step (new
 * submits are refused already: broken, or the core's shut flag). */
void crew__procs_fail_all_queued(pb *b, int status)
{
    fail_overflow(b, status);
    fail_maps_pending(b, status);
    crew__procs_transition_all(b, pick_fail_queued, &status);
    crew__procs_bump_progress(b);
}

/* ------------------------------------------------------------ death */

/* Hands items [first, first + count) of map m back to run again (under lk);
 * false when they cannot be (no memory, map gone). */
static bool redo_push(pb *b, crew__map *m, size_t first, size_t count)
{
    pmap *pm = crew__procs_pmap_of_locked(b, m);
    redo *rd = pm ? crew__malloc(sizeof *rd) : NULL;
    if (!rd)
        return false;
    rd->first = first;
    rd->count = count;
    rd->next = NULL;
    redo **pp = &pm->redo;
    while (*pp)
        pp = &(*pp)->next;
    *pp = rd;
    return true;
}

/* What a dead worker left, read once it is reaped. */
typedef struct death {
    crew_exit ex;
    bool planned;    /* it exited by itself with a recorded reason */
    bool recycled;   /* ... and the reason was a recycling limit */
    bool progressed; /* it had finished something (a task; a chunk item: settle) */
    bool killed;     /* the pool's kill ended it (lk: from its pworker) */
    int cause;       /* the status of what it was running: the kill's or CREW_ECRASHED */
    uint32_t items;  /* items of its chunk it finished (wrec.items) */
    uint32_t slot1;  /* the slot it named last, index + 1 (wrec.slot) */
} death;

/* Reaps worker w and reads what it left (monitor, no lock). */
static void reap(pb *b, int w, death *d)
{
    pworker *pw = &b->w[w];
    memset(d, 0, sizeof *d);
    crew_process_join(pw->proc, CREW_FOREVER, &d->ex);
    /* A DEL that fails changes nothing: both fds are closed just below
     * (the pidfd by crew_process_destroy), which takes them out of the set. */
    (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, pw->pidfd, NULL);
    if (pw->sock >= 0) {
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, pw->sock, NULL);
        crew__close(pw->sock);
        pw->sock = -1; /* (only the monitor uses it; start_worker sets it again) */
    }
    crew_process_destroy(pw->proc);
    atomic_fetch_sub(&b->alive, 1);
    wrec *wr = wrec_at(b->h, w);
    uint32_t reason = atomic_load(&wr->exit_reason);
    d->planned = reason != EXIT_NONE && d->ex.signal == 0 && d->ex.code == 0;
    d->recycled = d->planned && (reason == EXIT_RECYCLE_COUNT || reason == EXIT_RECYCLE_MEM);
    d->items = atomic_load(&wr->items);
    d->progressed = atomic_load(&wr->tasks) > 0;
    d->slot1 = atomic_load(&wr->slot);
    /* A worker that died holding the spinner role would leave the queue
     * with no spinner and nobody waking sleepers: take it back. */
    spinner_drop(b->h, (uint32_t)w + 1);
    atomic_fetch_and(&b->h->awake[w / 64], ~(UINT64_C(1) << (w % 64)));
    crew__procs_wake_workers(b);
}

/* What the death means for slot x, which the worker was running (under
 * lk): the failure details in rec[x], and for a chunk the split into
 * finished, failed and handed-back items. Returns the new phase: PH_FAILED,
 * or PH_QUEUED for a task to run again. */
static uint32_t settle_slot(pb *b, uint32_t x, const pworker *pw, death *d)
{
    rec *r = &b->rec[x];
    uint32_t v = atomic_load(&slot_at(b->h, x)->state);
    r->fail_status = d->cause;
    r->fail_pid = pw->pid;
    r->fail_signal = d->ex.signal;
    r->fail_code = d->ex.signal ? 0 : d->ex.code;
    if (r->kind != KIND_CHUNK) {
        /* Killed for another task that ended meanwhile: this one was not at
         * fault; run it again. */
        if (d->killed && v != pw->kill_tag) {
            r->fail_status = 0;
            return PH_QUEUED;
        }
        return PH_FAILED;
    }
    /* A chunk. The worker counted its finished items (untrusted: clamp). */
    uint32_t cur = d->items < r->count ? d->items : (uint32_t)r->count;
    bool fail = !d->recycled && cur < r->count;
    if (d->killed &&
        !(v == pw->kill_tag && (pw->kill_item == UINT32_MAX || pw->kill_item == cur)))
        fail = false; /* killed for an item that had finished: this one is innocent */
    d->progressed = d->progressed || cur > 0;
    r->part = true;
    r->part_done = cur;
    r->part_fail = fail;
    r->rest_status = 0;
    size_t rest = cur + (fail ? 1u : 0u);
    if (rest < r->count) {
        if (d->cause == CREW_ECANCELED || atomic_load(&r->m->cancel) || atomic_load(&b->quit))
            r->rest_status = CREW_ECANCELED;
        else if (atomic_load(&b->broken))
            /* The breaker tripped: nothing is dispatched any more and its
             * fail_all_queued has taken the map's pending items already. */
            r->rest_status = CREW_EBROKEN;
        else if (!redo_push(b, r->m, r->first + rest, r->count - rest))
            r->rest_status = CREW_ENOMEM;
    }
    return PH_FAILED;
}

/* Settles the slot dead worker w was running, if it was running one
 * (under lk). Returns its new phase (PH_FAILED or PH_QUEUED), or PH_FREE
 * when it ran none. The slot it named is the only candidate: a worker runs
 * one slot at a time and names it before claiming it (proc_layout.h); if
 * that slot is not RUNNING under w, the claim failed or the task was done. */
static uint32_t settle_death_locked(pb *b, int w, death *d)
{
    if (d->slot1 == 0 || d->slot1 > b->h->nslots)
        return PH_FREE; /* none (or a scribbled record: nothing to trust) */
    uint32_t x = d->slot1 - 1;
    slot_hdr *s = slot_at(b->h, x);
    uint32_t v = atomic_load(&s->state);
    if (st_phase(v) != PH_RUNNING || st_worker(v) != (uint32_t)w)
        return PH_FREE;
    uint32_t ph = settle_slot(b, x, &b->w[w], d);
    if (!atomic_compare_exchange_strong(&s->state, &v, st_make(st_gen(v), ph, 0)))
        return PH_FREE; /* (only a worker moves a RUNNING slot on, and this one is dead) */
    if (ph == PH_QUEUED) {
        crew__procs_if_unlink(b, x); /* keep the in-flight list in queue order */
        crew__procs_if_push(b, x);
        crew__procs_slot_publish(b, x);
    } else if (atomic_load_explicit(&s->watch, memory_order_seq_cst)) {
        /* The sweep harvests it unless a parent thread watches it: wake
         * that one, it harvests. */
        crew__futex_wake(&s->state, INT32_MAX);
    }
    return ph;
}

/* Worker w ended (it is dead or being killed with SIGKILL): reaps it,
 * settles what it was running and counts the death for the breaker.
 * *respawn: a replacement is wanted. Returns true when the breaker tripped
 * (the caller fails the queued work). */
static bool worker_ended(pb *b, int w, bool *respawn)
{
    pworker *pw = &b->w[w];
    death d;
    reap(b, w, &d);
    pthread_mutex_lock(&b->lk);
    pw->proc = NULL;
    pw->alive = false;
    /* Did the pool's kill end it? Only if the pool sent its signal and that
     * is what the worker died of (or it exited after it: a task's own
     * SIGTERM handler). A worker that died of its own -- a SIGSEGV, an
     * abort -- before the signal reached it crashed: a crash is a crash,
     * even when the monitor sees it after the deadline. A cancel is kept
     * whatever the worker died of: crew_future_cancel promised it. */
    int kill = pw->kill_reason ? -(int)pw->kill_reason : 0;
    d.killed = kill == CREW_ECANCELED ||
               (kill && pw->term_at &&
                (d.ex.signal == SIGTERM || d.ex.signal == SIGKILL || d.ex.signal == 0));
    d.cause = d.killed ? kill : CREW_ECRASHED;
    uint32_t ph = settle_death_locked(b, w, &d);
    if (d.recycled)
        atomic_fetch_add(&b->recycled, 1);
    bool unplanned = !d.planned && !d.killed && !atomic_load(&b->quit);
    bool trip = unplanned && breaker_note_locked(b, d.progressed);
    pw->kill_reason = 0;
    pw->kill_at = pw->term_at = 0;
    *respawn = !atomic_load(&b->broken) && !atomic_load(&b->quit);
    pthread_mutex_unlock(&b->lk);
    /* Fail the task at once: its waiter learns of the crash a few hundred
     * microseconds sooner than if it waited for the replacement (a
     * forkserver start), which is started right after. So a caller that
     * sees the failure may still see workers_alive one short for that long;
     * the queue keeps every other task meanwhile. A chunk's handed-back
     * items are dispatched when its slot is released. */
    if (ph == PH_FAILED)
        crew__procs_sweep(b);
    else if (ph == PH_QUEUED)
        crew__procs_wake_workers(b);
    return trip;
}

/* ------------------------------------------------------------ start */

/* The region socket of worker w: the worker asks for the fds of crew_shm
 * regions through it (proc_regions.c). SEQPACKET keeps each request and
 * answer one message. Our end is non-blocking (the monitor serves it) and
 * in the epoll set before the worker exists, so a failure here needs no
 * worker stopped. */
static int region_socket(pb *b, int w, int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    struct epoll_event evs = {.events = EPOLLIN, .data.u64 = EV_SOCK + (uint64_t)w};
    int fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) != 0 ||
        epoll_ctl(b->epfd, EPOLL_CTL_ADD, sv[0], &evs) != 0) {
        int e = -errno;
        crew__close(sv[0]);
        crew__close(sv[1]);
        return e;
    }
    return 0;
}

/* Starts worker w (the monitor thread, or the creating thread before the
 * monitor exists). 0, or the error of the start; nothing is left running
 * on an error. */
static int start_worker(pb *b, int w)
{
    int sv[2];
    int rc = region_socket(b, w, sv);
    if (rc)
        return rc;
    wboot boot = {.memfd = b->memfd,
                  .evfd = b->evfd,
                  .sock = sv[1],
                  .size = b->size,
                  .index = w,
                  .same_image = b->start_method == CREW_START_FORK};
    int fds[3] = {b->memfd, b->evfd, sv[1]};
    char name[16];
    snprintf(name, sizeof name, "crew-w%d", w);
    crew_process_options po = {.method = (crew_start_method)b->start_method,
                               .name = name,
                               .pass_fds = fds,
                               .n_pass_fds = 3};
    wrec *r = wrec_at(b->h, w);
    atomic_store(&r->exit_reason, EXIT_NONE);
    atomic_store(&r->tag, 0);
    atomic_store(&r->tasks, 0);
    atomic_store(&r->items, 0);
    atomic_store(&r->slot, 0);
    crew_process *proc;
    rc = crew_process_start(&proc, crew__procs_worker_main, &boot, sizeof boot, &po);
    crew__close(sv[1]);
    if (rc) {
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, sv[0], NULL); /* (closing it does too) */
        crew__close(sv[0]);
        return rc;
    }
    pworker *pw = &b->w[w];
    int pidfd = crew_process_pidfd(proc);
    pthread_mutex_lock(&b->lk);
    pw->proc = proc;
    pw->pid = crew_process_pid(proc);
    pw->pidfd = pidfd;
    pw->sock = sv[0];
    pw->alive = true;
    pw->respawn_pending = false;
    pw->kill_reason = 0;
    pw->term_at = pw->kill_at = 0;
    pthread_mutex_unlock(&b->lk);
    atomic_fetch_add(&b->started, 1);
    atomic_fetch_add(&b->alive, 1);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)w};
    if (CREW__UNLIKELY(epoll_ctl(b->epfd, EPOLL_CTL_ADD, pidfd, &ev) != 0)) {
        /* Its death would go unseen, and a task it claimed would stay
         * RUNNING for ever. It runs already and may have claimed one: stop
         * it as a kill of the pool's for no task (a tag no slot has), so
         * its task runs again and a chunk hands its rest back. */
        rc = -errno;
        pthread_mutex_lock(&b->lk);
        pw->kill_reason = (uint32_t)-CREW_ECRASHED;
        pw->kill_tag = 0;
        pw->kill_item = UINT32_MAX;
        pw->term_at = crew__now_ns();
        pthread_mutex_unlock(&b->lk);
        crew_process_kill(proc, SIGKILL);
        bool respawn;
        if (worker_ended(b, w, &respawn))
            crew__procs_fail_all_queued(b, CREW_EBROKEN);
        crew__procs_bump_progress(b);
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ deadlines */

/* Deadlines and kill escalation (monitor). Returns the next time (ns) it
 * needs to look again, or 0 for none. */
static uint64_t check_timers(pb *b, uint64_t now)
{
    uint64_t next = 0;
#define NEXT(t)                                                                                    \
    do {                                                                                           \
        uint64_t t_ = (t);                                                                         \
        if (next == 0 || t_ < next)                                                                \
            next = t_;                                                                             \
    } while (0)
    uint64_t tmo = b->h->timeout_ns;
    uint64_t grace = (uint64_t)(opts(b)->kill_grace * 1e9);
    pthread_mutex_lock(&b->lk);
    for (int w = 0; w < n_workers(b); w++) {
        pworker *pw = &b->w[w];
        if (!pw->alive)
            continue;
        if (tmo && !pw->kill_reason) {
            /* The worker stores start_ns before the tag (tasks) or before
             * the count of finished items (chunk items), so a start read
             * between two equal reads of both belongs to that task and
             * item -- or to a later one, which only postpones the check. */
            wrec *r = wrec_at(b->h, w);
            uint32_t t1 = atomic_load(&r->tag);
            uint32_t i1 = atomic_load_explicit(&r->items, memory_order_acquire);
            uint64_t st = atomic_load(&r->start_ns);
            uint32_t i2 = atomic_load(&r->items);
            uint32_t t2 = atomic_load(&r->tag);
            if (t1 && t1 == t2 && i1 == i2) {
                if (now < st + tmo) {
                    NEXT(st + tmo);
                } else if (!pidfd_dead(pw->pidfd)) {
                    /* Still alive past its deadline: timed out. (Already
                     * dead: it crashed; on_death reports that.) */
                    crew__procs_request_kill_locked(b, (uint32_t)w, t1, i1, CREW_ETIMEDOUT);
                }
            }
        }
        if (pw->kill_reason) {
            if (pw->term_at == 0) {
                crew_process_kill(pw->proc, SIGTERM);
                pw->term_at = now;
                pw->kill_at = now + grace;
            }
            if (now >= pw->kill_at) {
                crew_process_kill(pw->proc, SIGKILL);
                pw->kill_at = now + 1000000000u; /* re-send later if it is somehow still here */
            }
            NEXT(pw->kill_at);
        }
    }
    pthread_mutex_unlock(&b->lk);
    if (tmo)
        NEXT(now + tmo); /* tasks that start meanwhile end no earlier than this */
    if (b->respawn_at)
        NEXT(b->respawn_at);
    if (b->sweep_at)
        NEXT(b->sweep_at);
#undef NEXT
    return next;
}

static void arm_timer(pb *b, uint64_t at)
{
    if (at == b->armed_at)
        return;
    b->armed_at = at;
    struct itimerspec its = {0};
    if (at) {
        its.it_value.tv_sec = (time_t)(at / 1000000000u);
        its.it_value.tv_nsec = (long)(at % 1000000000u);
    }
    timerfd_settime(b->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ------------------------------------------------------------ replacements */

/* A worker process ended (monitor thread, its pidfd readable). */
static void on_death(pb *b, int w)
{
    pworker *pw = &b->w[w];
    bool trip = worker_ended(b, w, &pw->respawn_pending);
    if (pw->respawn_pending) {
        if (start_worker(b, w) == 0) {
            pw->respawn_pending = false;
        } else {
            /* Could not start one: that counts as a death, try again soon. */
            pthread_mutex_lock(&b->lk);
            bool t2 = breaker_note_locked(b, false);
            pthread_mutex_unlock(&b->lk);
            if (t2) {
                pw->respawn_pending = false;
                trip = true;
            } else {
                b->respawn_at = crew__now_ns() + RESPAWN_RETRY_NS;
            }
        }
    }
    if (trip)
        crew__procs_fail_all_queued(b, CREW_EBROKEN);
    crew__procs_bump_progress(b);
}

/* Retries the replacements that could not be started (monitor, when
 * respawn_at has come). */
static void respawn_due(pb *b, uint64_t now)
{
    b->respawn_at = 0;
    for (int w = 0; w < n_workers(b); w++) {
        if (!b->w[w].respawn_pending || atomic_load(&b->broken) || atomic_load(&b->quit))
            continue;
        if (start_worker(b, w) == 0)
            b->w[w].respawn_pending = false;
        else
            b->respawn_at = now + RESPAWN_RETRY_NS;
    }
}

/* For fork and spawn, the first workers: started here so that their
 * parent-death signal is tied to this thread. Returns false if one failed
 * (procs_create cleans up). */
static bool start_first_workers(pb *b)
{
    int rc = 0;
    for (int w = 0; w < n_workers(b) && rc == 0; w++)
        rc = start_worker(b, w);
    b->start_rc = rc;
    atomic_store_explicit(&b->start_state, 1, memory_order_release);
    crew__futex_wake(&b->start_state, INT32_MAX);
    return rc == 0;
}

static void *monitor_main(void *arg)
{
    pb *b = arg;
    struct epoll_event evs[32];
    if (b->start_in_monitor && !start_first_workers(b))
        return NULL;
    for (;;) {
        atomic_store_explicit(&b->h->mon_parked, 1, memory_order_seq_cst);
        uint64_t now = crew__now_ns();
        if (b->sweep_at && now >= b->sweep_at) {
            b->sweep_at = 0;
            atomic_store_explicit(&b->sweep_due, 0, memory_order_release);
        } else if (!b->sweep_at && atomic_load_explicit(&b->sweep_due, memory_order_acquire)) {
            b->sweep_at = now + SWEEP_DUE_NS;
        }
        crew__procs_sweep(b);
        if (b->respawn_at && now >= b->respawn_at)
            respawn_due(b, now);
        arm_timer(b, check_timers(b, now));
        if (atomic_load(&b->quit))
            break;
        int n = epoll_wait(b->epfd, evs, 32, -1);
        atomic_store_explicit(&b->h->mon_parked, 0, memory_order_seq_cst);
        for (int i = 0; i < n; i++) {
            uint64_t k = evs[i].data.u64;
            if (k == EV_WAKE) {
                drain_fd(b->evfd);
            } else if (k == EV_CTL) {
                drain_fd(b->ctlfd);
            } else if (k == EV_TIMER) {
                drain_fd(b->tfd);
                b->armed_at = 0; /* one-shot: it fired */
            } else if (k < (uint64_t)n_workers(b) && b->w[k].alive) {
                on_death(b, (int)k);
            } else if (k >= EV_SOCK && k < EV_SOCK + (uint64_t)n_workers(b)) {
                crew__procs_serve_regions(b, (int)(k - EV_SOCK));
            }
        }
    }
    return NULL;
}

/* The monitor's fds: the workers' eventfd, the control eventfd, the timer,
 * and the epoll set watching them. 0 or -errno (the caller frees what was
 * made: free_backend). */
static int monitor_fds(pb *b)
{
    b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->ctlfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (b->evfd < 0 || b->ctlfd < 0 || b->epfd < 0 || b->tfd < 0)
        return -errno;
    const struct {
        int fd;
        uint64_t key;
    } watch[] = {{b->evfd, EV_WAKE}, {b->ctlfd, EV_CTL}, {b->tfd, EV_TIMER}};
    for (size_t i = 0; i < sizeof watch / sizeof watch[0]; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = watch[i].key};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, watch[i].fd, &ev) != 0)
            return -errno;
    }
    return 0;
}

/* Creates the monitor's fds, starts the first workers (here for the
 * forkserver, in the monitor thread for fork and spawn: see start_in_monitor)
 * and the monitor thread. 0 or an error; on an error the caller runs
 * crew__procs_stop_workers and frees the backend. */
int crew__procs_monitor_start(pb *b)
{
    int rc = monitor_fds(b);
    if (rc)
        return rc;
    /* A fork or spawn child's parent-death signal fires when the *thread*
     * that started it ends. The caller's thread may be short-lived, so for
     * those methods the monitor thread (which lives as long as the pool)
     * starts the first workers too; forkserver children are tied to the
     * forkserver's own crew thread, so the caller starts them directly. */
    b->start_in_monitor = b->start_method != CREW_START_FORKSERVER;
    for (int w = 0; w < n_workers(b) && !b->start_in_monitor; w++) {
        rc = start_worker(b, w);
        if (rc)
            return rc;
    }
    rc = pthread_create(&b->monitor, NULL, monitor_main, b);
    if (rc)
        return -rc;
    b->monitor_started = true;
    if (b->start_in_monitor) {
        while (atomic_load_explicit(&b->start_state, memory_order_acquire) == 0)
            crew__futex_wait(&b->start_state, 0, NULL);
        return b->start_rc;
    }
    return 0;
}

void crew__procs_stop_workers(pb *b)
{
    atomic_store(&b->quit, 1);
    atomic_store(&b->h->stop, 1);
    crew__futex_wake(&b->h->tail, INT32_MAX);
    kick_fd(b->ctlfd);
    if (b->monitor_started) {
        pthread_join(b->monitor, NULL);
        b->monitor_started = false;
    }
    for (int w = 0; w < n_workers(b); w++) {
        pworker *pw = &b->w[w];
        if (!pw->proc)
            continue;
        /* Idle workers see `stop` and leave at once; give a busy one the
         * grace period, then crew_process_destroy kills and reaps it. */
        if (crew_process_join(pw->proc, opts(b)->kill_grace, NULL) == CREW_ETIMEDOUT)
            crew_process_kill(pw->proc, SIGKILL);
        crew_process_destroy(pw->proc);
        pw->proc = NULL;
        if (pw->sock >= 0) {
            crew__close(pw->sock);
            pw->sock = -1;
        }
        if (pw->alive) {
            pw->alive = false;
            atomic_fetch_sub(&b->alive, 1);
        }
    }
}
