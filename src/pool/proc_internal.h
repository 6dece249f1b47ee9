/*
 * proc_internal.h -- the parent side of the process backend: its state (pb)
 * and what its files call in each other. Never installed; included only by
 * src/pool/pool_processes.c and src/pool/proc_*.c (not proc_worker.c, which
 * sees only proc_layout.h).
 *
 * The files, bottom up; each calls only the ones above it in this list
 * (and the pool core, shm, process layers), never one below:
 *   proc_layout.h    the shared memory (header only)
 *   proc_worker.c    the worker process
 *   proc_regions.c   the region table (zero-copy arguments and map records)
 *   proc_slots.c     dispatch, harvest, sweep, cancelling a slot
 *   proc_wait.c      ops->wait: a parent thread spinning on a slot
 *   proc_monitor.c   the monitor thread: starts, deaths, timers, breaker
 *   pool_processes.c the ops table: create, submit, cancel, shutdown, destroy
 *
 * Locks: b->lk (parent memory: free slots, in-flight list, overflow, maps,
 * workers, breaker, region table) is a leaf with respect to the pool core
 * (only the shm registry's leaf lock is taken under it): futures are
 * completed (callbacks run) only after it is released. Functions named
 * *_locked are called with it held; the others take it themselves.
 */
#ifndef CREW_POOL_PROC_INTERNAL_H
#define CREW_POOL_PROC_INTERNAL_H

#include "pool/pool_internal.h"
#include "pool/proc_layout.h"
#include "ipc/shm_internal.h"

#include <pthread.h>
#include <unistd.h>

typedef struct rec {
    crew_future *f;       /* KIND_TASK */
    crew__map *m;         /* KIND_CHUNK */
    size_t first, count;  /* chunk range */
    uint32_t kind;
    uint32_t reg;         /* KIND_SHM task: region index + 1 it holds a reference on */
    int32_t prev, next;   /* in-flight list */
    /* failure details, written under lk before the state turns FAILED */
    int fail_status;
    pid_t fail_pid;
    int fail_signal, fail_code;
    /* A chunk whose worker died while running it (FAILED, part == true):
     * items [0, part_done) finished and keep their outputs and statuses;
     * if part_fail, item part_done ends fail_status (it was running); the
     * items after those either run again (rest_status 0: on_death handed
     * them back to the map) or end rest_status (map cancelled, breaker). A
     * chunk failed before it started (part == false) fails whole. */
    bool part, part_fail;
    uint32_t part_done;
    int rest_status;
    bool out_in_place;    /* chunk: outputs written in a region, not the slot */
} rec;

/* Items of a map handed back after a death inside their chunk, to run
 * again before anything new is claimed. */
typedef struct redo {
    size_t first, count;
    struct redo *next;
} redo;

typedef struct pmap {
    crew__map *m;
    size_t first, count; /* claimed but not yet dispatched */
    redo *redo;          /* handed back by deaths (FIFO head; under lk) */
    uint32_t in_flight;  /* chunks in slots */
    bool exhausted;      /* crew__map_claim said no more */
    uint32_t in_reg, in_gen, out_reg, out_gen; /* records in place in a region (index + 1) */
    size_t in_base, out_base;                  /* offset of in / out in their region */
    struct pmap *next;
} pmap;

typedef struct pworker {
    crew_process *proc;
    pid_t pid;
    int pidfd;
    int sock;               /* our end of the worker's region socket, -1: none */
    bool alive;
    bool respawn_pending;
    uint32_t kill_reason;   /* 0, or the status the killed task gets */
    uint32_t kill_tag;      /* state word of that task */
    uint32_t kill_item;     /* for a chunk: the item the kill is for */
    uint64_t term_at;       /* 0 or when SIGTERM was sent */
    uint64_t kill_at;       /* when to send SIGKILL (0: not scheduled) */
} pworker;

/* One region of the pool's table (parent memory, under lk). */
typedef struct preg {
    uint64_t dev, ino;      /* the memfd's identity */
    size_t size;
    int fd;                 /* our duplicate; -1: the entry is free */
    uint32_t gen;           /* generation of the occupant (never 0) */
    _Atomic uint32_t refs;  /* queued/running tasks and live maps using it (++ under lk) */
    uint64_t last_use;      /* b->reg_clock at the last registration */
} preg;

typedef struct pb {
    crew_pool *pool;
    int start_method;         /* opts.start_method, CREW_START_DEFAULT resolved */
    shm_hdr *h;
    size_t size;
    int memfd, evfd, ctlfd, epfd, tfd;
    pthread_t monitor;
    bool monitor_started;

    pthread_mutex_t lk;
    uint32_t *free_stack;
    uint32_t n_free;
    rec *rec;
    int32_t if_head, if_tail; /* in-flight list (dispatch order) */
    uint32_t n_inflight;
    uint32_t tail;            /* parent copy of h->tail (under lk) */
    uint32_t head_cache;      /* a past value of h->head (under lk) */
    crew_future *ov_head, *ov_tail;
    size_t n_ov;
    pmap *maps;
    pworker *w;
    uint32_t fresh_deaths;    /* breaker: unplanned deaths in a row of workers that
                                 finished nothing (monitor, under lk) */
    crew_task_fn fns[FN_MAX]; /* parent copy of the fn table */
    _Atomic uint32_t n_fns;
    uint64_t respawn_at;      /* monitor: earliest respawn retry */
    uint64_t armed_at;        /* monitor: what the timerfd is set to (0: off) */
    bool start_in_monitor;    /* fork/spawn: the monitor starts the first workers */
    int start_rc;             /* their result (written before start_state) */
    _Atomic uint32_t start_state;

    _Atomic uint32_t broken, shutting, quit;
    _Atomic uint32_t progress; /* futex word bumped when work ends (shutdown waits on it) */
    _Atomic uint32_t progress_waiters;
    _Atomic uint32_t sweep_due; /* a full sweep by the monitor is wanted soon */
    uint64_t sweep_at;          /* monitor: when it does it (0: not scheduled) */
    _Atomic uint64_t started, recycled;
    _Atomic int alive;
    preg regs[REG_MAX];       /* under lk (refs: see preg) */
    uint64_t reg_clock;
} pb;

/* The pool's options, normalised by the core (crew_pool_create): the one
 * copy; opts(b)->workers is the configured worker count. */
static inline const crew_pool_options *opts(const pb *b) { return &b->pool->opts; }
static inline int n_workers(const pb *b) { return b->pool->opts.workers; }

static inline pb *backend(crew_pool *p) { return (pb *)p->backend; }

/* f->backend[0]: (generation << 32) | (slot + 1) while f sits in a slot, 0
 * otherwise. Written under lk, read by waiters without it: accessed with the
 * __atomic builtins (the field is a plain uintptr_t in pool_internal.h). */
static inline uintptr_t fslot_get(crew_future *f)
{
    return __atomic_load_n(&f->backend[0], __ATOMIC_ACQUIRE);
}
static inline void fslot_set(crew_future *f, uintptr_t v)
{
    __atomic_store_n(&f->backend[0], v, __ATOMIC_RELEASE);
}

/* f->backend[1] of a zero-copy task: fn index | (region index + 1) << 32 |
 * generation << 40. */
static inline uint32_t fback_reg(const crew_future *f)
{
    return (uint32_t)(f->backend[1] >> 32) & 0xffu;
}
static inline uint32_t fback_gen(const crew_future *f) { return (uint32_t)(f->backend[1] >> 40); }

/* ------------------------------------------------------------ proc_regions.c */

int crew__procs_reg_get_locked(pb *b, const crew__shm_info *si, uint32_t *idx, uint32_t *gen);
void crew__procs_reg_unref(pb *b, uint32_t idx);
void crew__procs_future_unref_region(pb *b, const crew_future *f);
void crew__procs_map_side_locked(pb *b, crew_shm *region, const void *p, uint32_t *reg,
                                 uint32_t *gen, size_t *base);
void crew__procs_serve_regions(pb *b, int w);

/* ------------------------------------------------------------ proc_slots.c */

void crew__procs_bump_progress(pb *b);
void crew__procs_if_push(pb *b, uint32_t x);
void crew__procs_if_unlink(pb *b, uint32_t x);
void crew__procs_slot_publish(pb *b, uint32_t x);
void crew__procs_wake_workers(pb *b);
int crew__procs_fn_index(pb *b, crew_task_fn fn, uint32_t *out);
int crew__procs_admit_locked(pb *b);
bool crew__procs_enqueue_locked(pb *b, crew_future *f);
int crew__procs_dispatch_more_locked(pb *b);
pmap *crew__procs_maps_collect_finished_locked(pb *b);
void crew__procs_maps_release(pb *b, pmap *gone);
pmap *crew__procs_pmap_of_locked(pb *b, const crew__map *m);
void crew__procs_redo_fail(crew__map *m, redo *rd, int status);
bool crew__procs_harvest_one(pb *b, uint32_t x);
size_t crew__procs_sweep_ex(pb *b, bool prefix, bool *cut);
size_t crew__procs_sweep(pb *b);
void crew__procs_after_parent_transition(pb *b, uint32_t x);
void crew__procs_request_kill_locked(pb *b, uint32_t w, uint32_t tag, uint32_t item, int reason);
bool crew__procs_cancel_slot_locked(pb *b, uint32_t x, uint32_t gen, int reason, bool *kick);

/* What a pick function says of one in-flight slot (under lk): leave it,
 * take it into the batch, or stop the walk here. */
typedef enum { PICK_SKIP, PICK_TAKE, PICK_STOP } pick_verdict;
typedef pick_verdict (*slot_pick_fn)(pb *b, uint32_t x, void *ctx);
/* The in-flight slots that pick moves to a terminal state (under lk, which
 * this takes), each handed to after_parent_transition once lk is released:
 * in batches, walking the list again until a walk takes none, so there is
 * no cap. pick must move every slot it takes out of what it takes (e.g.
 * QUEUED -> CANCELED), so the walks end. */
void crew__procs_transition_all(pb *b, slot_pick_fn pick, void *ctx);

/* ------------------------------------------------------------ proc_wait.c */

int crew__procs_wait(crew_pool *p, crew_future *f, const crew__deadline *d);

/* ------------------------------------------------------------ proc_monitor.c */

int crew__procs_monitor_start(pb *b);
void crew__procs_stop_workers(pb *b);
void crew__procs_fail_all_queued(pb *b, int status);

#endif
