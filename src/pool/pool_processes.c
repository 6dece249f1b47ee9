/*
 * pool_processes.c -- the process backend of crew_pool: tasks run in worker
 * processes, cross the process boundary through shared memory, and the pool
 * survives workers that crash, hang, leak or are killed from outside.
 * Interface: src/pool_internal.h. The whole picture: docs/processes-pool.md.
 *
 * DESIGN
 *
 * Memory. One memfd (MAP_SHARED in the parent and every worker) holds:
 *   - a header: geometry, limits, the shared queue indices (tail, head), the
 *     count of parked workers, the monitor's "parked" flag, the stop flag;
 *   - one record per worker index (exit reason, the running tag and its start
 *     time for deadlines, tasks done);
 *   - a table of task functions (raw pointer + crew__fnref, so exec'd
 *     workers -- forkserver, spawn -- resolve them despite ASLR);
 *   - an index ring (2 x nslots entries of slot numbers) and nslots task
 *     slots (64 per worker, at most 4096).
 * A slot is a 128-byte header (state word, watch word, cancel word, kind,
 * function index, sizes, status) followed by an argument area of
 * max_arg_size and a result area of max_result_size. The parent copies the
 * argument into the slot, the worker writes the result there, the parent
 * copies it into the future (crew__future_complete). Nothing goes through a
 * pipe. Arguments and map records inside a crew_shm region are not copied
 * at all (see Regions below).
 *
 * The slot state word (a futex word) is the single truth about a task:
 *   bits 0-2  phase: FREE, QUEUED, RUNNING, DONE (worker finished it),
 *             CANCELED (parent: cancelled before it started), FAILED
 *             (parent: its worker died or was killed while running it),
 *             HARVEST (a parent thread is reading it out)
 *   bits 3-13 worker index + 1 (RUNNING / DONE)
 *   bits 14-31 generation, bumped at every dispatch (no ABA on reuse)
 * A worker claims a task with one CAS QUEUED -> RUNNING|w. So a worker that
 * dies at any instant leaves each task either QUEUED (never started: another
 * worker or its replacement runs it -- never lost), RUNNING|w (the one it
 * was running: CREW_ECRASHED / ETIMEDOUT / ECANCELED) or DONE (its result is
 * valid and delivered). Exactly one parent thread harvests a terminal slot:
 * the one that wins the CAS terminal -> HARVEST.
 *
 * The queue. The parent pushes slot numbers at `tail` (under its lock b->lk;
 * several submitting threads), workers take them at `head`: read ring[head],
 * CAS the slot's state to RUNNING, CAS head forward (helping: a worker that
 * finds a slot not QUEUED just moves head on). The ring is the order, the
 * slot state is the claim; a stale read of a reused ring entry can only make
 * a worker claim some other task that is really QUEUED, which is harmless.
 * The parent always knows which tasks are in flight: b->rec[] (parent
 * memory) maps each slot to its future or map chunk, and an in-flight list
 * keeps them in dispatch order, so that the cheap sweep of a thread leaving
 * a wait can stop at the first still-QUEUED slot (the monitor's sweep looks
 * at all of them). Tasks that find no free slot wait in an
 * overflow FIFO of futures (the core already copied their arguments);
 * whoever frees a slot dispatches the next one.
 *
 * Wake-up protocol (why none is lost). All the pairs below are Dekker
 * pairs: each side stores its flag with seq_cst, then loads the other's.
 *   - Idle worker: only one at a time spins on `tail` (the spinner role,
 *     owned by a worker index; the monitor takes it back from a dead
 *     worker). The others -- and the spinner after CREW__SPIN_NS -- drop the
 *     role, clear their awake bit, sleepers++, re-check tail,
 *     futex_wait(tail). Submitter: store tail, load the awake bits and
 *     sleepers: wake one only when no worker is awake (an awake worker
 *     re-reads tail before it parks). A worker that claims a task with more
 *     queued behind it and no spinner wakes a sleeper itself; a worker takes
 *     the spinner role before it publishes DONE, so the next task usually
 *     finds a spinner. The monitor clears a dead worker's bit and role.
 *   - Waiting parent thread (ops->wait): claims the slot's watch word (0->1),
 *     spins on the state word, then sets watch = 2 and futex-waits on the
 *     state. Worker: stores DONE, loads watch: 2 -> futex_wake; 1 -> nothing
 *     (the watcher is spinning and harvests the slot itself); 0 -> nobody
 *     watches (next two items). A watcher that gives up (timeout) stores
 *     watch = 0 and re-reads the state; if it became terminal it harvests
 *     it. Only the watcher harvests a watched slot, so a slot cannot be
 *     reused under a watcher's feet.
 *   - Threads inside ops->wait count themselves in `pumping`. A worker whose
 *     unwatched task is done while pumping > 0 does quiet_done++ and
 *     re-reads pumping; a thread leaving ops->wait does pumping--, then
 *     reads quiet_done and sweeps if it is not 0. Either the worker sees
 *     pumping == 0 (and wakes the monitor) or the leaving thread sees the
 *     count. So a thread waiting for a batch future by future pumps the pool
 *     itself and the monitor stays asleep.
 *   - Monitor: stores mon_parked = 1, sweeps every unwatched terminal slot,
 *     then blocks in epoll. Worker: stores DONE, loads mon_parked; if 1 it
 *     swaps it to 0 and writes the monitor's eventfd (so a busy monitor is
 *     woken once, not once per task).
 * So the round trip of a task whose submitter waits for it has no system
 * call and no hop through the monitor: submitter -> slot -> spinning worker
 * -> slot -> spinning submitter. docs/processes-pool.md has the long form.
 *
 * The monitor thread (one per pool, never on the hot path) blocks in epoll
 * on: every worker's pidfd (death, seen at once), the eventfd workers kick
 * (unwatched completions: it completes those futures, so callbacks, the
 * completion fd, crew_future_done polling and crew_wait_any all work), a
 * control eventfd (cancel/shutdown requests) and a timerfd (deadlines, kill
 * grace, respawn back-off). On a worker death it reaps it, fails the task it
 * was running with the details (pid, signal or exit code, task id), puts a
 * task it was killed for by mistake back in the queue, counts the death for
 * the breaker and starts a replacement at the same index. Deadlines: a
 * running task's start time is in its worker record; the monitor sends
 * SIGTERM at start + task_timeout and SIGKILL kill_grace later. Recycling
 * is done by the worker itself between tasks (task count; RSS read from
 * /proc/self/statm at most once a millisecond and whenever it runs out of
 * work) -- it exits with a recorded reason and the monitor replaces it;
 * queued work simply waits in the shared queue.
 *
 * Locks: b->lk (parent memory: free slots, in-flight list, overflow, maps,
 * workers, breaker, region table) is a leaf with respect to the pool core
 * (only the shm registry's leaf lock is taken under it): futures are
 * completed (callbacks run) only after it is released. The worker processes
 * take no lock on the task path (mapping a region takes the process-local
 * shm registry lock of the worker itself).
 *
 * Map: a map is split into chunks that travel like tasks (kind CHUNK): the
 * slot's argument area holds the chunk's input records, its result area the
 * output records and, if any item failed, the per-item statuses. Records
 * inside a crew_shm region stay there (Regions): the worker reads / writes
 * them in place and only statuses use the slot. A worker
 * death fails only the chunk it was running (its items end CREW_ECRASHED).
 *
 * Regions (zero copy). A task submitted with crew_pool_submit_shm (slot
 * kind SHM) or a map chunk whose records lie in a crew_shm region carries
 * (table index + 1, generation, offset) instead of bytes. The pool's table
 * b->regs[REG_MAX] (under lk) holds per entry the memfd identity, a dup of
 * its fd, the generation and a reference count (++ under lk at submit, --
 * when the slot is released, the overflow future completed or the map
 * finished); h->reg_gen[] mirrors the generations for workers. Each worker
 * has an AF_UNIX SEQPACKET socket to the monitor (its end passed at start
 * like the memfd). A worker meeting an (index, gen) it has not mapped sends
 * it and blocks for the answer: the monitor replies, under lk, with the fd
 * (SCM_RIGHTS) -- the entry cannot be evicted while a task references it.
 * The worker maps it (crew__shm_adopt), caches it by index and drops an
 * older generation there. A new region first evicts entries whose last
 * handle in this process is destroyed, then (table full) the least recently
 * registered one with no reference; none: CREW_EAGAIN (submit_shm) or a
 * copy (map). Eviction clears h->reg_gen[i] and bumps h->reg_epoch; idle
 * workers with mappings check the epoch before parking and unmap stale
 * entries. A worker that dies waiting simply dies (its task fails as any
 * other); a replacement asks again. Regions add nothing to the no-region
 * hot path: the dispatcher branches on f->backend[1] >> 32, the worker on
 * the slot kind. Limit: generations are 24 bits per index, so a worker
 * that keeps a stale mapping of index i (it never went idle and never ran
 * a task of index i meanwhile) would take a new region for the old one
 * only after 2^24 re-registrations of that same index -- about 10^9
 * regions spread over the 64 entries; accepted, not guarded.
 *
 * Start: workers are crew_process children started with the pool's start
 * method (default: the forkserver, safe from threaded parents), receiving
 * the memfd, the monitor's eventfd and their region socket through
 * pass_fds. Replacements are
 * started by the monitor thread, which lives as long as the pool, so a
 * worker's parent-death signal is tied to a thread that outlives it.
 */
#include "pool/pool_internal.h"
#include "proc/process_internal.h"
#include "ipc/shm_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* ------------------------------------------------------------ geometry */

#define SHM_MAGIC 0x43505031u /* "CPP1" */
#define FN_MAX 128            /* distinct task functions per pool */
#define SLOTS_PER_WORKER 64
#define SLOTS_MAX 4096
#define SWEEP_DUE_NS 10000000u /* 10 ms */
#define SLOT_HDR 128
#define ALIGN64(x) (((x) + 63u) & ~(size_t)63u)

/* slot state word */
#define PH_MASK 7u
#define PH_FREE 0u
#define PH_QUEUED 1u
#define PH_RUNNING 2u
#define PH_DONE 3u
#define PH_CANCELED 4u
#define PH_FAILED 5u
#define PH_HARVEST 6u
#define W_SHIFT 3
#define W_MASK (0x7ffu << W_SHIFT)
#define GEN_SHIFT 14
#define GEN_MASK 0x3ffffu

static inline uint32_t st_phase(uint32_t s) { return s & PH_MASK; }
static inline uint32_t st_worker(uint32_t s) { return ((s & W_MASK) >> W_SHIFT) - 1; }
static inline uint32_t st_gen(uint32_t s) { return s >> GEN_SHIFT; }
static inline uint32_t st_make(uint32_t gen, uint32_t ph, uint32_t w1)
{
    return (gen << GEN_SHIFT) | (w1 << W_SHIFT) | ph;
}
static inline bool st_terminal(uint32_t s)
{
    uint32_t p = st_phase(s);
    return p == PH_DONE || p == PH_CANCELED || p == PH_FAILED;
}

/* worker exit reasons (recorded before a planned exit) */
#define EXIT_NONE 0u
#define EXIT_RECYCLE_COUNT 1u
#define EXIT_RECYCLE_MEM 2u
#define EXIT_STOP 3u

#define KIND_TASK 0u
#define KIND_CHUNK 1u
#define KIND_SHM 2u /* a task whose argument is bytes of a crew_shm region (in_reg) */

/* Regions a pool hands to its workers (see "Regions" at the top). */
#define REG_MAX 64
#define REG_GEN_MASK 0xffffffu /* generations are 24 bits (f->backend[1] bits 40-63) */

typedef struct slot_hdr {
    _Atomic uint32_t state;  /* see above; futex word */
    _Atomic uint32_t watch;  /* 0 none, 1 a parent thread spins on it, 2 it sleeps on it */
    _Atomic uint32_t cancel; /* 1: crew_task_cancelled() says stop */
    uint32_t kind;
    uint32_t fn_idx;
    uint32_t arg_len;
    uint32_t in_size, out_size, count; /* chunk geometry */
    int32_t status;          /* written by the worker before DONE */
    uint32_t res_len;
    uint32_t n_failed;       /* chunk: failed items */
    uint32_t first_fail;     /* chunk: index (in the chunk) of the first failed item */
    int32_t first_fail_status;
    uint64_t task_id;
    /* Regions (KIND_SHM, or a chunk whose records lie in a crew_shm region):
     * table index + 1 (0: none) and generation; byte offsets in the region. */
    uint32_t in_reg, in_gen, out_reg, out_gen;
    uint64_t in_off, out_off;
    uint64_t shm_len;        /* KIND_SHM: the argument's length */
} slot_hdr;
_Static_assert(sizeof(slot_hdr) <= SLOT_HDR, "slot header too big");

typedef struct wrec {
    _Atomic uint32_t exit_reason;
    _Atomic uint32_t tag;      /* state word of the running task, 0 when idle */
    _Atomic uint64_t start_ns; /* its start (only kept when task_timeout is set);
                                  for a chunk, the start of its running item */
    _Atomic uint64_t tasks;    /* tasks (chunks) this worker finished */
    /* Items of the running chunk that are finished, so item `items` is the
     * one running; 0 between chunks. Written after each item with a plain
     * store (release: a mov on x86) to this worker's own line, read by the
     * monitor only for deadlines and after the worker's death -- when every
     * store it made is visible. So per-item fault accounting costs the hot
     * loop one store, no fence and no system call. */
    _Atomic uint32_t items;
} __attribute__((aligned(CREW_CACHELINE))) wrec;

typedef struct fn_entry {
    uintptr_t raw;
    crew__fnref ref;
} fn_entry;

typedef struct shm_hdr {
    uint32_t magic, nslots, ring, nworkers;
    uint64_t size, slot_size, arg_cap, res_cap, res_area;
    uint64_t wrec_off, fns_off, ring_off, slots_off;
    uint64_t timeout_ns, max_mem;
    uint32_t max_tasks;
    _Atomic uint32_t tail __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t sleepers;
    _Atomic uint32_t waking;   /* a worker-side wake is in flight */
    /* One bit per worker index that is awake (running a task, spinning, or
     * about to look at the queue). The monitor clears a dead worker's bit. */
    _Atomic uint64_t awake[16] __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t spinner __attribute__((aligned(CREW_CACHELINE))); /* index + 1 of the
                                  one idle worker allowed to spin, 0: none */
    _Atomic uint32_t head __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t stop __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t mon_parked;
    /* Parent threads inside ops->wait (they harvest in the end), and the
     * number of completions workers left to them instead of waking the
     * monitor. See "pumping" in the wake-up protocol. */
    _Atomic uint32_t pumping __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t quiet_done;
    /* The region table as workers see it: the generation now held at each
     * index (0: free), bumped epoch on every eviction. Idle workers unmap
     * the regions whose generation is no longer current. */
    _Atomic uint32_t reg_epoch __attribute__((aligned(CREW_CACHELINE)));
    _Atomic uint32_t reg_gen[REG_MAX];
} shm_hdr;

/* Only one idle worker spins at a time (h->spinner names it). On a machine
 * with few CPUs every extra spinner steals a CPU from the submitting thread
 * or a busy worker; one spinner catches the next task within ~0.3 us, and
 * it wakes a sleeper itself when it finds more work queued behind its task.
 * The role is owned by a worker index, so the monitor can take it back from
 * a worker that dies holding it. */
static inline bool spinner_take(shm_hdr *h, uint32_t w1)
{
    uint32_t z = 0;
    return atomic_compare_exchange_strong_explicit(&h->spinner, &z, w1, memory_order_seq_cst,
                                                   memory_order_relaxed);
}
static inline void spinner_drop(shm_hdr *h, uint32_t w1)
{
    uint32_t me = w1;
    atomic_compare_exchange_strong_explicit(&h->spinner, &me, 0, memory_order_seq_cst,
                                            memory_order_relaxed);
}

/* ------------------------------------------------------------ parent side */

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
    crew_pool_options o;
    int nw;
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

static inline slot_hdr *slot_at(const shm_hdr *h, uint32_t i)
{
    return (slot_hdr *)((char *)h + h->slots_off + (size_t)i * h->slot_size);
}
static inline unsigned char *slot_arg(const shm_hdr *h, slot_hdr *s)
{
    (void)h;
    return (unsigned char *)s + SLOT_HDR;
}
static inline unsigned char *slot_res(const shm_hdr *h, slot_hdr *s)
{
    return (unsigned char *)s + SLOT_HDR + h->arg_cap;
}
static inline _Atomic uint32_t *ring_at(const shm_hdr *h)
{
    return (_Atomic uint32_t *)((char *)h + h->ring_off);
}
static inline wrec *wrec_at(const shm_hdr *h, int w)
{
    return (wrec *)((char *)h + h->wrec_off) + w;
}
static inline fn_entry *fn_at(const shm_hdr *h, uint32_t i)
{
    return (fn_entry *)((char *)h + h->fns_off) + i;
}

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

static void kick_fd(int fd)
{
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(fd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
}

static void drain_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) > 0)
        ;
}

/* ============================================================ worker side */

typedef struct wboot {
    int memfd, evfd;
    int sock;       /* the worker's end of its region socket */
    uint64_t size;
    int index;
    int same_image; /* fork: function pointers are valid as they are */
} wboot;

/* A fork worker holds every fd of the parent: the pool's monitor fds, its
 * siblings' pidfds and sockets, other pools', the forkserver's, the user's.
 * It keeps what an exec'd program would -- the fds without close-on-exec
 * (crew opens all of its own with it; a user's inheritable fds stay, as
 * fork promises) -- plus keep[] (its own two). Raw getdents64 on
 * /proc/self/fd: no allocation in a fork child, and no scan up to a huge
 * RLIMIT_NOFILE. */
struct crew_dirent64 {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

static void close_cloexec_fds(const int *keep, int nkeep)
{
    int d = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return;
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        long nr = syscall(SYS_getdents64, d, buf, sizeof buf);
        if (nr <= 0)
            break;
        for (long pos = 0; pos < nr;) {
            const struct crew_dirent64 *e = (const void *)(buf + pos);
            pos += e->reclen;
            int fd = 0;
            const char *c = e->name;
            if (*c < '0' || *c > '9')
                continue; /* "." and ".." */
            for (; *c >= '0' && *c <= '9'; c++)
                fd = fd * 10 + (*c - '0');
            bool kept = fd <= 2 || fd == d;
            for (int i = 0; i < nkeep && !kept; i++)
                kept = fd == keep[i];
            int fl = kept ? 0 : fcntl(fd, F_GETFD);
            if (fl > 0 && (fl & FD_CLOEXEC))
                close(fd);
        }
    }
    close(d);
}

/* A region request (worker -> parent) and its answer (parent -> worker,
 * with the region's fd as SCM_RIGHTS when status is 0). */
typedef struct reg_msg {
    uint32_t idx, gen;
    uint64_t size;
    int32_t status;
    uint32_t pad_;
} reg_msg;

/* A worker's mappings of the pool's regions, by table index. */
typedef struct wreg {
    uint32_t gen;
    crew_shm *s;
} wreg;

static void wreg_drop(wreg *wr, uint32_t *nmapped, uint32_t i)
{
    crew_shm_destroy(wr[i].s);
    wr[i].s = NULL;
    wr[i].gen = 0;
    (*nmapped)--;
}

/* The worker's mapping of region (idx, gen): cached, or asked from the
 * parent over the socket (a blocking round trip through the monitor, once
 * per region per worker). NULL if it cannot be had (then the task fails
 * CREW_EPROTO: a crew bug or a parent going away). */
static crew_shm *worker_region(int sock, wreg *wr, uint32_t *nmapped, uint32_t idx, uint32_t gen)
{
    if (idx >= REG_MAX)
        return NULL;
    if (CREW_LIKELY(wr[idx].s && wr[idx].gen == gen))
        return wr[idx].s;
    if (wr[idx].s)
        wreg_drop(wr, nmapped, idx); /* an older occupant of the index */
    reg_msg q = {.idx = idx, .gen = gen};
    ssize_t r;
    do
        r = send(sock, &q, sizeof q, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof q)
        return NULL;
    for (;;) {
        reg_msg a;
        int fd = -1;
        struct iovec iov = {.iov_base = &a, .iov_len = sizeof a};
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } cb;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cb.buf,
                            .msg_controllen = sizeof cb.buf};
        do
            r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        while (r < 0 && errno == EINTR);
        if (r <= 0)
            return NULL;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
        if (r != (ssize_t)sizeof a || a.idx != idx || a.gen != gen) {
            if (fd >= 0)
                crew__close(fd);
            continue; /* not the answer to this request: cannot happen, be safe */
        }
        crew_shm *s = NULL;
        if (a.status != 0 || fd < 0 || a.size == 0 || crew__shm_adopt(&s, fd, a.size) != 0) {
            if (fd >= 0)
                crew__close(fd);
            return NULL;
        }
        wr[idx].s = s;
        wr[idx].gen = gen;
        (*nmapped)++;
        return s;
    }
}

/* Idle worker: unmap regions the parent has evicted (slow path: only when
 * the table's epoch moved since the last look). */
static void worker_regions_tidy(shm_hdr *h, wreg *wr, uint32_t *nmapped, uint32_t *seen)
{
    uint32_t ep = atomic_load_explicit(&h->reg_epoch, memory_order_acquire);
    if (ep == *seen)
        return;
    *seen = ep;
    for (uint32_t i = 0; i < REG_MAX && *nmapped; i++)
        if (wr[i].s && atomic_load_explicit(&h->reg_gen[i], memory_order_acquire) != wr[i].gen)
            wreg_drop(wr, nmapped, i);
}

/* Stands in for a map task whose records are in a region the worker could
 * not map (a crew bug or a parent going away): every item fails. */
static int task_eproto(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                       size_t *rl)
{
    (void)t, (void)arg, (void)len, (void)res, (void)cap, (void)rl;
    return CREW_EPROTO;
}

/* Bytes [off, off+len) of a worker's region mapping, or NULL if outside. */
static unsigned char *region_bytes(crew_shm *s, uint64_t off, uint64_t len)
{
    size_t size = crew_shm_size(s);
    if (!s || off > size || len > size - off)
        return NULL;
    return (unsigned char *)crew_shm_ptr(s) + off;
}

static uint64_t read_rss(int statm_fd)
{
    char buf[128];
    ssize_t n = pread(statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    /* resident minus shared (file-backed and shm pages): what the worker
     * itself holds, not the pool's slots it touched */
    unsigned long long size = 0, res = 0, shared = 0;
    if (sscanf(buf, "%llu %llu %llu", &size, &res, &shared) != 3)
        return 0;
    uint64_t own = res > shared ? (uint64_t)(res - shared) : 0;
    return own * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void worker_exit(wrec *r, uint32_t reason)
{
    /* (the monitor drops a dead worker's spinner role) */
    atomic_store_explicit(&r->exit_reason, reason, memory_order_seq_cst);
    crew__child_exit(0);
}

/* The common case of a chunk's items -- no deadline, no memory limit, no
 * failure so far: runs items from 0 until one fails or all are done, and
 * returns the index it stopped at (n: every item succeeded), with that
 * item's return and result length in *rc and *rl. Kept apart and small so
 * that its loop stays in registers: it is the whole per-item cost of a map
 * (a call, a compare, one store). */
static __attribute__((noinline)) uint32_t run_items_ok(crew_task_fn fn, crew_task *t,
                                                       const unsigned char *cin, size_t in_sz,
                                                       unsigned char *cout, size_t out_sz,
                                                       uint32_t n, _Atomic uint32_t *items,
                                                       int *rc, size_t *rl)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t l = 0;
        int r = fn(t, cin, in_sz, cout, out_sz, &l);
        if (CREW_UNLIKELY(r < 0 || l > out_sz)) {
            *rc = r;
            *rl = l;
            return i;
        }
        cin += in_sz;
        cout += out_sz;
        atomic_store_explicit(items, i + 1, memory_order_release);
    }
    return n;
}

static int worker_main(void *arg, size_t len)
{
    if (len != sizeof(wboot))
        return 120;
    wboot b;
    memcpy(&b, arg, sizeof b);
    /* The parent may have a SIGTERM handler (fork start): a deadline kill
     * must still end us. */
    signal(SIGTERM, SIG_DFL);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &ss, NULL);
    shm_hdr *h = mmap(NULL, b.size, PROT_READ | PROT_WRITE, MAP_SHARED, b.memfd, 0);
    if (h == MAP_FAILED)
        return 121;
    crew__close(b.memfd);
    if (b.same_image) {
        int keep[] = {b.evfd, b.sock};
        close_cloexec_fds(keep, 2);
    }
    wreg wr[REG_MAX];
    memset(wr, 0, sizeof wr);
    uint32_t nmapped = 0, reg_seen = 0;
    if (h->magic != SHM_MAGIC)
        return 122;
    const int w = b.index;
    const uint32_t w1 = (uint32_t)w + 1;
    const uint64_t awake_bit = UINT64_C(1) << (w % 64);
    atomic_fetch_or_explicit(&h->awake[w / 64], awake_bit, memory_order_seq_cst);
    wrec *me = wrec_at(h, w);
    _Atomic uint32_t *ring = ring_at(h);
    uintptr_t fns[FN_MAX] = {0};
    int statm = -1;
    if (h->max_mem)
        statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    uint64_t last_mem = crew__now_ns();
    uint64_t done = 0;
    const uint64_t timeout_ns = h->timeout_ns;
    bool spinner = false, mem_checked = true;

    for (;;) {
        if (CREW_UNLIKELY(atomic_load_explicit(&h->stop, memory_order_acquire)))
            worker_exit(me, EXIT_STOP);
        uint32_t hd = atomic_load_explicit(&h->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&h->tail, memory_order_acquire);
        if (hd == tl) {
            if (statm >= 0 && !mem_checked) {
                mem_checked = true; /* once per run of work, not per idle turn */
                if (read_rss(statm) > h->max_mem)
                    worker_exit(me, EXIT_RECYCLE_MEM);
            }
            if (!spinner)
                spinner = spinner_take(h, w1);
            if (spinner) {
                if (crew__spin_while_eq(&h->tail, tl, CREW__SPIN_NS))
                    continue; /* still the spinner until it claims a task */
                spinner_drop(h, w1);
                spinner = false;
            }
            if (CREW_UNLIKELY(nmapped))
                worker_regions_tidy(h, wr, &nmapped, &reg_seen);
            /* Park. Dekker with the submitter: awake bit cleared and
             * sleepers++ before the re-check of tail; it stores tail before
             * reading the awake bits and sleepers. */
            atomic_fetch_and_explicit(&h->awake[w / 64], ~awake_bit, memory_order_seq_cst);
            atomic_fetch_add_explicit(&h->sleepers, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&h->waking, memory_order_relaxed))
                atomic_store_explicit(&h->waking, 0, memory_order_release);
            if (atomic_load_explicit(&h->tail, memory_order_seq_cst) == tl &&
                !atomic_load_explicit(&h->stop, memory_order_seq_cst))
                crew__futex_wait(&h->tail, tl, NULL);
            if (atomic_load_explicit(&h->waking, memory_order_relaxed))
                atomic_store_explicit(&h->waking, 0, memory_order_release);
            atomic_fetch_or_explicit(&h->awake[w / 64], awake_bit, memory_order_seq_cst);
            atomic_fetch_sub_explicit(&h->sleepers, 1, memory_order_seq_cst);
            continue;
        }
        uint32_t x = atomic_load_explicit(&ring[hd % h->ring], memory_order_acquire);
        bool mine = false;
        uint32_t s = 0;
        if (x < h->nslots) {
            slot_hdr *sl = slot_at(h, x);
            s = atomic_load_explicit(&sl->state, memory_order_acquire);
            if (st_phase(s) == PH_QUEUED) {
                uint32_t run = st_make(st_gen(s), PH_RUNNING, w1);
                mine = atomic_compare_exchange_strong_explicit(&sl->state, &s, run,
                                                               memory_order_acq_rel,
                                                               memory_order_acquire);
                s = run;
            }
        }
        atomic_compare_exchange_strong_explicit(&h->head, &hd, hd + 1, memory_order_acq_rel,
                                                memory_order_relaxed);
        if (!mine)
            continue;
        mem_checked = false;
        if (spinner) {
            spinner_drop(h, w1);
            spinner = false;
        }
        /* More queued behind this task and nobody spinning for it: wake a
         * sleeping worker (our system call, not the submitter's). Only one
         * such wake is in flight at a time (`waking`, cleared by any worker
         * that parks or wakes up): a worker being woken takes ~35 us to run,
         * and every claim meanwhile would otherwise call futex_wake again.
         * This wake is only for parallelism; the submitter's wake (when no
         * worker is awake) is the one that guarantees progress. */
        if (atomic_load_explicit(&h->tail, memory_order_seq_cst) != hd + 1 &&
            atomic_load_explicit(&h->spinner, memory_order_seq_cst) == 0 &&
            atomic_load_explicit(&h->sleepers, memory_order_seq_cst) > 0 &&
            !atomic_load_explicit(&h->waking, memory_order_relaxed) &&
            !atomic_exchange_explicit(&h->waking, 1, memory_order_acq_rel))
            crew__futex_wake(&h->tail, 1);

        slot_hdr *sl = slot_at(h, x);
        uint64_t start = 0;
        if (timeout_ns) {
            start = crew__now_ns();
            atomic_store_explicit(&me->tag, 0, memory_order_seq_cst);
            atomic_store_explicit(&me->start_ns, start, memory_order_seq_cst);
        }
        atomic_store_explicit(&me->tag, s, memory_order_seq_cst);

        uint32_t fi = sl->fn_idx;
        crew_task_fn fn = NULL;
        if (fi < FN_MAX) {
            if (!fns[fi]) {
                fn_entry *e = fn_at(h, fi);
                uintptr_t a = 0;
                if (b.same_image)
                    a = e->raw;
                else if (crew__fnref_resolve(&e->ref, &a) != 0)
                    a = 0;
                fns[fi] = a;
            }
            fn = (crew_task_fn)fns[fi];
        }
        crew_task t = {0};
        t.cancel = &sl->cancel;
        t.cancel_mask = 1;
        t.pool_cancel = &h->stop;
        t.worker = w;
        t.deadline_ns = timeout_ns ? start + timeout_ns : 0;
        unsigned char *in = slot_arg(h, sl), *res = slot_res(h, sl);
        const bool was_chunk = sl->kind == KIND_CHUNK; /* (the slot is the parent's after DONE) */
        if (!fn) {
            sl->status = CREW_ENOTFOUND;
            sl->res_len = 0;
            sl->n_failed = was_chunk ? sl->count : 0;
            sl->first_fail = 0;
            sl->first_fail_status = CREW_ENOTFOUND;
            if (was_chunk) {
                /* every item's status, as the parent reads them */
                size_t oa = sl->out_reg ? 0 : (size_t)sl->count * sl->out_size;
                int32_t *sts = (int32_t *)(res + ALIGN64(oa));
                for (uint32_t i = 0; i < sl->count; i++)
                    sts[i] = CREW_ENOTFOUND;
                atomic_store_explicit(&me->items, sl->count, memory_order_release);
            }
        } else if (sl->kind != KIND_CHUNK) {
            size_t rl = 0;
            const unsigned char *targ = in;
            size_t targ_len = sl->arg_len;
            if (CREW_UNLIKELY(sl->kind == KIND_SHM)) {
                /* Zero copy: the argument is in a region, mapped here. */
                t.shm = worker_region(b.sock, wr, &nmapped, sl->in_reg - 1, sl->in_gen);
                targ = t.shm ? region_bytes(t.shm, sl->in_off, sl->shm_len) : NULL;
                targ_len = (size_t)sl->shm_len;
            }
            int rc = targ ? fn(&t, targ, targ_len, res, h->res_cap, &rl) : CREW_EPROTO;
            if (rc > 0)
                rc = 0;
            if (CREW_UNLIKELY(rl > h->res_cap)) {
                /* A result that does not fit is an error, never a cut. */
                rc = CREW_E2BIG;
                rl = 0;
            }
            if (t.timed_out)
                rc = CREW_ETIMEDOUT;
            else if (atomic_load_explicit(&sl->cancel, memory_order_relaxed))
                rc = CREW_ECANCELED;
            sl->status = rc;
            sl->res_len = (uint32_t)rl;
        } else {
            /* A chunk: outputs first, then per-item statuses if any failed.
             * Records that lie in a region are read / written there. */
            uint32_t n = sl->count, in_sz = sl->in_size, out_sz = sl->out_size;
            unsigned char *cin = in, *cout = res;
            size_t out_area = (size_t)n * out_sz;
            bool ok = true;
            if (sl->in_reg) {
                t.shm = worker_region(b.sock, wr, &nmapped, sl->in_reg - 1, sl->in_gen);
                cin = t.shm ? region_bytes(t.shm, sl->in_off, (uint64_t)n * in_sz) : NULL;
                ok = cin != NULL;
            }
            if (sl->out_reg) {
                crew_shm *os = worker_region(b.sock, wr, &nmapped, sl->out_reg - 1, sl->out_gen);
                cout = os ? region_bytes(os, sl->out_off, (uint64_t)n * out_sz) : NULL;
                ok = ok && cout != NULL;
                out_area = 0;
                if (!t.shm)
                    t.shm = os;
            }
            int32_t *sts = (int32_t *)(res + ALIGN64(out_area));
            crew_task_fn cfn = ok ? fn : task_eproto; /* a region we could not map */
            uint32_t nf = 0;
            /* What the parent needs after a death inside the chunk is kept
             * current item by item: the finished count in me->items and,
             * from the first failure on, the statuses and n_failed. So a
             * death fails only the running item; the finished ones keep
             * their outputs and the rest run again elsewhere. */
            uint32_t i = 0;
            int rc = 0;
            size_t rl = 0;
            bool ran = false; /* item i has run already (run_items_ok stopped at it) */
            if (!timeout_ns && statm < 0) {
                i = run_items_ok(cfn, &t, cin, in_sz, cout, out_sz, n, &me->items, &rc, &rl);
                ran = i < n;
            }
            for (; i < n; i++) {
                if (!ran) {
                    rl = 0;
                    rc = cfn(&t, cin + (size_t)i * in_sz, in_sz, cout + (size_t)i * out_sz,
                             out_sz, &rl);
                }
                ran = false;
                if (rc > 0)
                    rc = 0;
                if (CREW_UNLIKELY(rl > out_sz))
                    rc = CREW_E2BIG; /* the output record cannot hold it */
                if (CREW_UNLIKELY(rc < 0)) {
                    if (nf == 0) {
                        for (uint32_t k = 0; k < i; k++)
                            sts[k] = 0;
                        sl->first_fail = i;
                        sl->first_fail_status = rc;
                    }
                    nf++;
                    sl->n_failed = nf;
                }
                if (nf)
                    sts[i] = rc;
                if (CREW_UNLIKELY(timeout_ns)) {
                    /* Each item has its own deadline: the next one starts
                     * now (start before count: see check_timers). */
                    uint64_t now = crew__now_ns();
                    t.deadline_ns = now + timeout_ns;
                    atomic_store_explicit(&me->start_ns, now, memory_order_relaxed);
                }
                atomic_store_explicit(&me->items, i + 1, memory_order_release);
                if (CREW_UNLIKELY(statm >= 0) && i + 1 < n) {
                    /* Recycling by memory between items: the finished items
                     * stand, the rest run on another worker. */
                    uint64_t now = crew__now_ns();
                    if (now - last_mem >= 1000000u) {
                        last_mem = now;
                        if (read_rss(statm) > h->max_mem)
                            worker_exit(me, EXIT_RECYCLE_MEM);
                    }
                }
            }
            sl->n_failed = nf;
            sl->status = 0;
            sl->res_len = 0;
        }
        atomic_store_explicit(&me->tag, 0, memory_order_relaxed);
        /* Become the spinner before publishing the result, so that the
         * submitter, seeing it and queueing the next task, finds a spinner
         * and makes no wake-up call. */
        if (atomic_load_explicit(&h->spinner, memory_order_relaxed) == 0)
            spinner = spinner_take(h, w1);
        atomic_store_explicit(&sl->state, st_make(st_gen(s), PH_DONE, w1), memory_order_seq_cst);
        if (was_chunk)
            atomic_store_explicit(&me->items, 0, memory_order_relaxed); /* (before any claim) */
        uint32_t wk = atomic_load_explicit(&sl->watch, memory_order_seq_cst);
        if (wk == 2) {
            crew__futex_wake(&sl->state, INT32_MAX);
        } else if (wk == 0) {
            /* Nobody watches this slot. If a parent thread is inside a wait
             * it will sweep before it leaves: count the completion for it
             * and re-check that it is still there (Dekker with its
             * pumping-- then quiet_done read). Otherwise wake the monitor. */
            bool kick = true;
            if (atomic_load_explicit(&h->pumping, memory_order_seq_cst)) {
                /* An RMW, not a flag: a count is never lost to a waiter
                 * that resets it concurrently (exchange below). */
                atomic_fetch_add_explicit(&h->quiet_done, 1, memory_order_seq_cst);
                kick = atomic_load_explicit(&h->pumping, memory_order_seq_cst) == 0;
            }
            if (kick && atomic_load_explicit(&h->mon_parked, memory_order_seq_cst) &&
                atomic_exchange_explicit(&h->mon_parked, 0, memory_order_seq_cst))
                kick_fd(b.evfd);
        }
        done++;
        atomic_store_explicit(&me->tasks, done, memory_order_relaxed);
        if (h->max_tasks && done >= h->max_tasks)
            worker_exit(me, EXIT_RECYCLE_COUNT);
        if (statm >= 0) {
            uint64_t now = crew__now_ns();
            if (now - last_mem >= 1000000u) {
                last_mem = now;
                if (read_rss(statm) > h->max_mem)
                    worker_exit(me, EXIT_RECYCLE_MEM);
            }
        }
    }
}

/* ============================================================ parent side */

static inline pb *backend(crew_pool *p) { return (pb *)p->backend; }

/* Wakes shutdown callers waiting for the pool to drain. They announce
 * themselves in progress_waiters (Dekker with the seq_cst bump), so the hot
 * path pays one RMW and no system call. */
static void bump_progress(pb *b)
{
    atomic_fetch_add_explicit(&b->progress, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&b->progress_waiters, memory_order_seq_cst))
        crew__futex_wake(&b->progress, INT32_MAX);
}

/* --- in-flight list (under lk) */
static void if_push(pb *b, uint32_t x)
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

static void if_unlink(pb *b, uint32_t x)
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
static void ring_push(pb *b, uint32_t x)
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
static void wake_workers(pb *b)
{
    shm_hdr *h = b->h;
    if (atomic_load_explicit(&h->spinner, memory_order_seq_cst) != 0)
        return;
    if (atomic_load_explicit(&h->sleepers, memory_order_seq_cst) == 0)
        return;
    bool awake = false;
    for (int i = 0; i < (b->nw + 63) / 64 && !awake; i++)
        awake = atomic_load_explicit(&h->awake[i], memory_order_seq_cst) != 0;
    if (awake && (atomic_load_explicit(&h->waking, memory_order_relaxed) ||
                  atomic_exchange_explicit(&h->waking, 1, memory_order_acq_rel)))
        return;
    crew__futex_wake(&h->tail, 1);
}

/* Is the process behind this pidfd gone (the fd is readable)? */
static bool pidfd_dead(int pidfd)
{
    struct pollfd pf = {.fd = pidfd, .events = POLLIN};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLIN | POLLHUP | POLLERR));
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
static int fn_index(pb *b, crew_task_fn fn, uint32_t *out)
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
    if (b->o.start_method != CREW_START_FORK)
        rc = crew__fnref_make(&e->ref, (uintptr_t)fn);
    if (rc == 0) {
        b->fns[n] = fn;
        atomic_store_explicit(&b->n_fns, n + 1, memory_order_release);
        *out = n;
    }
    pthread_mutex_unlock(&b->lk);
    return rc;
}

/* ------------------------------------------------------------ regions */

/* Drops table entry i (under lk; nothing references it): closes our fd and
 * tells idle workers to unmap it. */
static void reg_evict_locked(pb *b, uint32_t i)
{
    preg *e = &b->regs[i];
    crew__close(e->fd);
    e->fd = -1;
    atomic_store_explicit(&b->h->reg_gen[i], 0, memory_order_release);
    atomic_fetch_add_explicit(&b->h->reg_epoch, 1, memory_order_acq_rel);
}

/* The table entry for region si, registering it if new, with one more
 * reference (under lk). 0, CREW_EAGAIN (REG_MAX regions in use), or an
 * error of crew__shm_dup_fd. */
static int reg_get_locked(pb *b, const crew__shm_info *si, uint32_t *idx, uint32_t *gen)
{
    int freei = -1;
    for (uint32_t i = 0; i < REG_MAX; i++) {
        preg *e = &b->regs[i];
        if (e->fd >= 0 && e->dev == si->dev && e->ino == si->ino) {
            atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
            e->last_use = ++b->reg_clock;
            *idx = i;
            *gen = e->gen;
            return 0;
        }
        if (e->fd < 0 && freei < 0)
            freei = (int)i;
    }
    /* A new region: first forget the ones nobody here can use any more
     * (their last handle is destroyed), so they stop being kept alive;
     * if the table is still full, evict the least recently registered
     * entry that no queued or running task uses. */
    uint64_t oldest = UINT64_MAX;
    int lru = -1;
    for (uint32_t i = 0; i < REG_MAX; i++) {
        preg *e = &b->regs[i];
        if (e->fd < 0 || atomic_load_explicit(&e->refs, memory_order_acquire) != 0)
            continue;
        if (!crew__shm_ino_live(e->dev, e->ino)) {
            reg_evict_locked(b, i);
            if (freei < 0)
                freei = (int)i;
        } else if (e->last_use < oldest) {
            oldest = e->last_use;
            lru = (int)i;
        }
    }
    if (freei < 0) {
        if (lru < 0)
            return CREW_EAGAIN;
        reg_evict_locked(b, (uint32_t)lru);
        freei = lru;
    }
    int fd = crew__shm_dup_fd(si->dev, si->ino);
    if (fd < 0)
        return fd == CREW_ENOENT ? CREW_EINVAL : fd;
    preg *e = &b->regs[freei];
    e->dev = si->dev;
    e->ino = si->ino;
    e->size = si->size;
    e->fd = fd;
    e->gen = (e->gen + 1) & REG_GEN_MASK;
    if (e->gen == 0)
        e->gen = 1;
    atomic_store_explicit(&e->refs, 1, memory_order_relaxed);
    e->last_use = ++b->reg_clock;
    atomic_store_explicit(&b->h->reg_gen[freei], e->gen, memory_order_release);
    *idx = (uint32_t)freei;
    *gen = e->gen;
    return 0;
}

/* Drops a reference taken by reg_get_locked (any thread, lk or not). */
static void reg_unref(pb *b, uint32_t idx)
{
    uint32_t prev = atomic_fetch_sub_explicit(&b->regs[idx].refs, 1, memory_order_acq_rel);
    CREW_ASSERT(prev > 0);
}

/* f->backend[1] of a zero-copy task: fn index | (region index + 1) << 32 |
 * generation << 40. */
static inline uint32_t fback_reg(const crew_future *f) { return (uint32_t)(f->backend[1] >> 32) & 0xffu; }
static inline uint32_t fback_gen(const crew_future *f) { return (uint32_t)(f->backend[1] >> 40); }

/* A future leaves the backend without a slot (cancelled or failed in the
 * overflow FIFO): drop its region reference first. */
static void future_unref_region(pb *b, const crew_future *f)
{
    uint32_t r = fback_reg(f);
    if (r)
        reg_unref(b, r - 1);
}

/* Monitor: answers the region requests of worker w. The fd is sent under
 * lk so that it cannot be evicted (closed) meanwhile; the socket never
 * holds more than one request and one answer, so send does not block. */
static void serve_regions(pb *b, int w)
{
    int sock = b->w[w].sock;
    if (sock < 0)
        return;
    for (;;) {
        reg_msg q;
        ssize_t r = recv(sock, &q, sizeof q, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return; /* EAGAIN: all answered */
        if (r == 0) {
            /* The worker is gone (its pidfd says so too): stop listening. */
            epoll_ctl(b->epfd, EPOLL_CTL_DEL, sock, NULL);
            return;
        }
        reg_msg a = {.idx = q.idx, .gen = q.gen, .status = CREW_ENOENT};
        pthread_mutex_lock(&b->lk);
        int fd = -1;
        if (r == (ssize_t)sizeof q && q.idx < REG_MAX && b->regs[q.idx].fd >= 0 &&
            b->regs[q.idx].gen == q.gen) {
            fd = b->regs[q.idx].fd;
            a.size = b->regs[q.idx].size;
            a.status = 0;
        }
        struct iovec iov = {.iov_base = &a, .iov_len = sizeof a};
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } cb;
        memset(&cb, 0, sizeof cb);
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (fd >= 0) {
            mh.msg_control = cb.buf;
            mh.msg_controllen = sizeof cb.buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fd, sizeof fd);
        }
        ssize_t sr;
        do
            sr = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (sr < 0 && errno == EINTR);
        pthread_mutex_unlock(&b->lk);
        /* A failed send (the worker died) leaves it blocked nowhere: it is
         * dead, and its task is failed by on_death. */
    }
}

/* Writes task f into free slot x and queues it (under lk). */
static void dispatch_task(pb *b, uint32_t x, crew_future *f)
{
    slot_hdr *s = slot_at(b->h, x);
    uint32_t gen = (st_gen(atomic_load_explicit(&s->state, memory_order_relaxed)) + 1) & GEN_MASK;
    const uintptr_t bk = f->backend[1];
    s->fn_idx = (uint32_t)bk;
    rec *r = &b->rec[x];
    if (CREW_LIKELY(!(bk >> 32))) {
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
    if_push(b, x);
    ring_push(b, x);
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
    if_push(b, x);
    ring_push(b, x);
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
static int dispatch_more(pb *b)
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
static pmap *maps_collect_finished(pb *b)
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

static void maps_release(pb *b, pmap *gone)
{
    while (gone) {
        pmap *n = gone->next;
        if (gone->in_reg)
            reg_unref(b, gone->in_reg - 1);
        if (gone->out_reg)
            reg_unref(b, gone->out_reg - 1);
        crew__map_unref(gone->m);
        crew__free(gone);
        gone = n;
    }
}

static pmap *pmap_of(pb *b, const crew__map *m)
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
static void redo_fail(crew__map *m, redo *rd, int status)
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
            if (CREW_UNLIKELY(len > b->o.max_result_size)) {
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
            pmap *pm = pmap_of(b, r->m);
            if (pm)
                pm->in_flight--;
        } else if (r->reg) {
            reg_unref(b, r->reg - 1);
            r->reg = 0;
        }
        if_unlink(b, x);
        r->f = NULL;
        r->m = NULL;
        atomic_store_explicit(&s->watch, 0, memory_order_relaxed);
        uint32_t v = atomic_load_explicit(&s->state, memory_order_relaxed);
        atomic_store_explicit(&s->state, st_make(st_gen(v), PH_FREE, 0), memory_order_release);
        b->free_stack[b->n_free++] = x;
    }
    int queued = dispatch_more(b);
    pmap *gone = maps_collect_finished(b);
    pthread_mutex_unlock(&b->lk);
    if (queued)
        wake_workers(b);
    maps_release(b, gone);
    bump_progress(b);
}

/* Harvests one slot the caller watches (or that nobody watches). */
static bool harvest_one(pb *b, uint32_t x)
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

/* Harvests every unwatched terminal slot. Returns how many. */
#define SWEEP_BATCH 64
/* prefix: stop at the first still-QUEUED slot (the in-flight list is in
 * dispatch order and workers claim in that order, so what follows is almost
 * always queued too); *cut is set when that left part of the list unseen. */
static size_t sweep_ex(pb *b, bool prefix, bool *cut)
{
    size_t total = 0;
    for (;;) {
        harvest hv[SWEEP_BATCH];
        size_t n = 0;
        pthread_mutex_lock(&b->lk);
        for (int32_t x = b->if_head; x >= 0 && n < SWEEP_BATCH; x = b->rec[x].next) {
            slot_hdr *s = slot_at(b->h, (uint32_t)x);
            uint32_t v = atomic_load_explicit(&s->state, memory_order_acquire);
            if (prefix && st_phase(v) == PH_QUEUED) {
                if (b->rec[x].next >= 0)
                    *cut = true;
                break;
            }
            if (!st_terminal(v) || atomic_load_explicit(&s->watch, memory_order_seq_cst) != 0)
                continue;
            if (claim_slot(b, (uint32_t)x, &hv[n].phase)) {
                hv[n].x = (uint32_t)x;
                hv[n].r = b->rec[x];
                n++;
            }
        }
        pthread_mutex_unlock(&b->lk);
        for (size_t i = 0; i < n; i++)
            deliver(b, &hv[i]);
        release_slots(b, hv, n);
        total += n;
        if (n < SWEEP_BATCH)
            return total;
    }
}

static size_t sweep(pb *b) { return sweep_ex(b, false, NULL); }

/* Harvests a slot that a parent thread moved to a terminal state (cancel,
 * failure), unless a watcher will (then it is woken). Dekker with the
 * watcher: we stored the state seq_cst, now we read watch. */
static void after_parent_transition(pb *b, uint32_t x)
{
    slot_hdr *s = slot_at(b->h, x);
    if (atomic_load_explicit(&s->watch, memory_order_seq_cst) == 0)
        harvest_one(b, x);
    else
        crew__futex_wake(&s->state, INT32_MAX);
}


/* Under lk: may one more task be queued? 0, CREW_EBROKEN or CREW_EAGAIN
 * (max_pending). */
static int admit_locked(pb *b)
{
    if (CREW_UNLIKELY(atomic_load_explicit(&b->broken, memory_order_relaxed)))
        return CREW_EBROKEN;
    if (b->o.max_pending && b->n_inflight + b->n_ov >= b->o.max_pending)
        return CREW_EAGAIN;
    return 0;
}

/* Under lk: dispatches f to a free slot, or (none, or others are waiting
 * already) appends it to the overflow FIFO. true when dispatched: the caller
 * wakes a worker after unlocking. */
static bool enqueue_locked(pb *b, crew_future *f)
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

/* ------------------------------------------------------------ ops: submit */

/* Queues f; si (NULL for a plain task) names the crew_shm region its
 * argument stays in, registered with the pool under lk. */
static int submit_task(pb *b, crew_future *f, const crew__shm_info *si)
{
    if (CREW_UNLIKELY(atomic_load_explicit(&b->broken, memory_order_relaxed)))
        return CREW_EBROKEN;
    uint32_t fi;
    int rc = fn_index(b, f->fn, &fi);
    if (rc)
        return rc;
    f->backend[1] = fi;
    f->backend[0] = 0;
    pthread_mutex_lock(&b->lk);
    rc = admit_locked(b);
    if (CREW_UNLIKELY(si != NULL) && rc == 0) {
        uint32_t idx, gen;
        rc = reg_get_locked(b, si, &idx, &gen);
        if (rc == 0)
            f->backend[1] |= ((uintptr_t)(idx + 1) << 32) | ((uintptr_t)gen << 40);
    }
    if (CREW_UNLIKELY(rc)) {
        pthread_mutex_unlock(&b->lk);
        return rc;
    }
    bool queued = enqueue_locked(b, f);
    pthread_mutex_unlock(&b->lk);
    if (queued)
        wake_workers(b);
    return 0;
}

static int procs_submit(crew_pool *p, crew_future *f) { return submit_task(backend(p), f, NULL); }

/* ops->submit_shm: a task whose argument stays in its crew_shm region. */
static int procs_submit_shm(crew_pool *p, crew_future *f)
{
    crew__shm_arg d;
    memcpy(&d, f->arg_inline, sizeof d);
    crew__shm_info si;
    if (crew__shm_info_of(d.region, &si) != 0)
        return CREW_EINVAL; /* not a live handle of this process */
    return submit_task(backend(p), f, &si);
}

/* Map records that lie in a live region travel in place: registers the
 * region for pm's side (under lk). Falls back to copying (returns without
 * setting *reg) when the region is not usable or the table is full. */
static void map_side_locked(pb *b, crew_shm *region, const void *p, uint32_t *reg, uint32_t *gen,
                            size_t *base)
{
    crew__shm_info si;
    if (!region || crew__shm_info_of(region, &si) != 0)
        return;
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)si.base;
    if (a < lo || a - lo >= si.size)
        return;
    uint32_t idx, g;
    if (reg_get_locked(b, &si, &idx, &g) != 0)
        return;
    *reg = idx + 1;
    *gen = g;
    *base = a - lo;
}

static int procs_submit_map(crew_pool *p, crew__map *m)
{
    pb *b = backend(p);
    if (atomic_load_explicit(&b->broken, memory_order_relaxed))
        return CREW_EBROKEN;
    uint32_t fi;
    int rc = fn_index(b, m->fn, &fi);
    if (rc)
        return rc;
    pmap *pm = crew__calloc(1, sizeof *pm);
    if (!pm)
        return CREW_ENOMEM;
    m->backend[1] = fi;
    pm->m = m;
    crew__map_ref(m);
    pthread_mutex_lock(&b->lk);
    if (atomic_load_explicit(&b->broken, memory_order_relaxed)) {
        pthread_mutex_unlock(&b->lk);
        crew__map_unref(m);
        crew__free(pm);
        return CREW_EBROKEN;
    }
    if (m->in_shm)
        map_side_locked(b, m->in_shm, m->in, &pm->in_reg, &pm->in_gen, &pm->in_base);
    if (m->out_shm)
        map_side_locked(b, m->out_shm, m->out, &pm->out_reg, &pm->out_gen, &pm->out_base);
    pmap **pp = &b->maps;
    while (*pp)
        pp = &(*pp)->next;
    *pp = pm;
    int queued = dispatch_more(b);
    pthread_mutex_unlock(&b->lk);
    if (queued)
        wake_workers(b);
    return 0;
}

/* ------------------------------------------------------------ ops: cancel */

/* Asks the monitor to stop worker w because of the task whose state word is
 * tag -- for a chunk, because of its item `item` (UINT32_MAX: whichever
 * runs) -- (under lk). */
static void request_kill_locked(pb *b, uint32_t w, uint32_t tag, uint32_t item, int reason)
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
static bool cancel_slot_locked(pb *b, uint32_t x, uint32_t gen, int reason, bool *kick)
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
            request_kill_locked(b, st_worker(v), v, UINT32_MAX, reason);
            *kick = true;
        }
        return false;
    }
}

static int procs_cancel(crew_pool *p, crew_future *f)
{
    pb *b = backend(p);
    bool kick = false;
    if (f->map) {
        crew__map *m = f->map;
        uint32_t xs[64];
        size_t nx = 0;
        pthread_mutex_lock(&b->lk);
        pmap *pm = pmap_of(b, m);
        size_t pf = 0, pc = 0;
        redo *rd = NULL;
        if (pm) {
            pf = pm->first;
            pc = pm->count;
            pm->count = 0;
            pm->exhausted = true;
            rd = pm->redo;
            pm->redo = NULL;
        }
        for (int32_t x = b->if_head; x >= 0; x = b->rec[x].next) {
            rec *r = &b->rec[x];
            if (r->kind != KIND_CHUNK || r->m != m)
                continue;
            uint32_t v = atomic_load(&slot_at(b->h, (uint32_t)x)->state);
            if (cancel_slot_locked(b, (uint32_t)x, st_gen(v), CREW_ECANCELED, &kick) && nx < 64)
                xs[nx++] = (uint32_t)x;
        }
        pthread_mutex_unlock(&b->lk);
        if (pc)
            crew__map_done_range(m, pf, pc, NULL, CREW_ECANCELED, NULL);
        redo_fail(m, rd, CREW_ECANCELED);
        for (size_t i = 0; i < nx; i++)
            after_parent_transition(b, xs[i]);
        pthread_mutex_lock(&b->lk);
        pmap *gone = maps_collect_finished(b);
        pthread_mutex_unlock(&b->lk);
        maps_release(b, gone);
        if (nx == 64)
            sweep(b);
        if (kick)
            kick_fd(b->ctlfd);
        return 0;
    }
    pthread_mutex_lock(&b->lk);
    uintptr_t v = fslot_get(f);
    if (v == 0) {
        /* In the overflow FIFO? */
        crew_future **pp = &b->ov_head, *prev = NULL;
        while (*pp && *pp != f) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = f->next;
            if (b->ov_tail == f)
                b->ov_tail = prev;
            f->next = NULL;
            b->n_ov--;
            pthread_mutex_unlock(&b->lk);
            future_unref_region(b, f);
            crew__future_complete(f, CREW_ECANCELED, NULL, 0, NULL);
            bump_progress(b);
            return 0;
        }
        pthread_mutex_unlock(&b->lk);
        return CREW_ESTATE;
    }
    uint32_t x = (uint32_t)(v & 0xffffffffu) - 1, gen = (uint32_t)(v >> 32);
    bool canceled = cancel_slot_locked(b, x, gen, CREW_ECANCELED, &kick);
    pthread_mutex_unlock(&b->lk);
    if (canceled)
        after_parent_transition(b, x);
    if (kick)
        kick_fd(b->ctlfd);
    return crew__future_done(f) && !canceled && !kick ? CREW_ESTATE : 0;
}

/* ------------------------------------------------------------ ops: wait */

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
            harvest_one(b, x);
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
    if (st_terminal(v) && harvest_one(b, x))
        return 0; /* harvest_one cleared watch with the slot */
    /* Timed out: stop watching, then make sure a completion that raced with
     * us is not left unharvested. */
    atomic_store_explicit(&s->watch, 0, memory_order_seq_cst);
    v = atomic_load_explicit(&s->state, memory_order_seq_cst);
    if (st_terminal(v))
        harvest_one(b, x);
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

static int wait_inner(pb *b, crew_future *f, const crew__deadline *d);

/* ops->wait. While a thread is in here, workers that finish unwatched tasks
 * do not wake the monitor (a system call each, and a thread competing for
 * the CPU); they count them in quiet_done, and the thread sweeps them on
 * its way out. So a thread that submits a batch and waits for each future
 * in turn pumps the pool itself, with no monitor hop. */
static int procs_wait(crew_pool *p, crew_future *f, const crew__deadline *d)
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
        sweep_ex(b, true, &cut);
        if (cut && !atomic_load_explicit(&b->sweep_due, memory_order_relaxed) &&
            !atomic_exchange_explicit(&b->sweep_due, 1, memory_order_acq_rel))
            kick_fd(b->ctlfd);
    }
    return rc;
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
            if (sweep(b))
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
        if (sweep(b) != 0) {
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

/* ------------------------------------------------------------ workers */

#define EV_SOCK UINT64_C(0x200000) /* + worker index: its region socket */

static int start_worker(pb *b, int w)
{
    /* The region socket: the worker asks for the fds of crew_shm regions
     * through it (see "Regions"). SEQPACKET keeps each request and answer
     * one message. Our end is non-blocking (the monitor serves it). */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    int fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = -errno;
        crew__close(sv[0]);
        crew__close(sv[1]);
        return e;
    }
    wboot boot = {.memfd = b->memfd,
                  .evfd = b->evfd,
                  .sock = sv[1],
                  .size = b->size,
                  .index = w,
                  .same_image = b->o.start_method == CREW_START_FORK};
    int fds[3] = {b->memfd, b->evfd, sv[1]};
    char name[16];
    snprintf(name, sizeof name, "crew-w%d", w);
    crew_process_options po = {.method = (crew_start_method)b->o.start_method,
                               .name = name,
                               .pass_fds = fds,
                               .n_pass_fds = 3};
    wrec *r = wrec_at(b->h, w);
    atomic_store(&r->exit_reason, EXIT_NONE);
    atomic_store(&r->tag, 0);
    atomic_store(&r->tasks, 0);
    atomic_store(&r->items, 0);
    crew_process *proc;
    int rc = crew_process_start(&proc, worker_main, &boot, sizeof boot, &po);
    crew__close(sv[1]);
    if (rc) {
        crew__close(sv[0]);
        return rc;
    }
    pworker *pw = &b->w[w];
    int pidfd = crew_process_pidfd(proc);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)w};
    struct epoll_event evs = {.events = EPOLLIN, .data.u64 = EV_SOCK + (uint64_t)w};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, pidfd, &ev) != 0 ||
        epoll_ctl(b->epfd, EPOLL_CTL_ADD, sv[0], &evs) != 0) {
        rc = -errno;
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, pidfd, NULL);
        crew__close(sv[0]);
        crew_process_destroy(proc);
        return rc;
    }
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
    return 0;
}

/* Fails every queued task and pending map chunk with CREW_EBROKEN (the
 * breaker tripped). */
static void fail_all_queued(pb *b, int status)
{
    for (;;) {
        crew_future *ov;
        uint32_t xs[64];
        size_t nx = 0;
        /* The undispatched work of up to 16 maps per turn, taken under lk
         * and failed after it (no allocation: this runs when things go
         * wrong). A map stays alive while it has unreported items. */
        struct {
            crew__map *m;
            size_t first, count;
            redo *rd;
        } pend[16];
        size_t np = 0;
        bool more_maps = false;
        pthread_mutex_lock(&b->lk);
        ov = b->ov_head;
        b->ov_head = b->ov_tail = NULL;
        b->n_ov = 0;
        for (pmap *pm = b->maps; pm; pm = pm->next) {
            if (pm->count || !pm->exhausted || pm->redo) {
                if (np == 16) {
                    more_maps = true;
                    break;
                }
                pend[np].m = pm->m;
                pend[np].first = pm->first;
                pend[np].count = pm->count;
                pend[np].rd = pm->redo;
                np++;
                pm->redo = NULL;
                pm->count = 0;
                pm->exhausted = true;
            }
        }
        for (int32_t x = b->if_head; x >= 0 && nx < 64; x = b->rec[x].next) {
            slot_hdr *s = slot_at(b->h, (uint32_t)x);
            uint32_t v = atomic_load(&s->state);
            if (st_phase(v) != PH_QUEUED)
                continue;
            /* The details first: a watcher may harvest the moment the
             * state turns FAILED. */
            b->rec[x].fail_status = status;
            b->rec[x].fail_pid = 0;
            b->rec[x].fail_signal = b->rec[x].fail_code = 0;
            if (atomic_compare_exchange_strong(&s->state, &v, st_make(st_gen(v), PH_FAILED, 0)))
                xs[nx++] = (uint32_t)x;
            else
                b->rec[x].fail_status = 0;
        }
        pthread_mutex_unlock(&b->lk);
        while (ov) {
            crew_future *n = ov->next;
            ov->next = NULL;
            future_unref_region(b, ov);
            crew__future_complete(ov, status, NULL, 0, NULL);
            ov = n;
        }
        for (size_t i = 0; i < np; i++) {
            crew__map *m = pend[i].m;
            if (pend[i].count)
                crew__map_done_range(m, pend[i].first, pend[i].count, NULL, status, NULL);
            redo_fail(m, pend[i].rd, status);
            if (status == CREW_ECANCELED)
                crew__map_cancel_rest(m);
            else {
                /* Claim and fail whatever the map still has. */
                size_t first, count;
                while (crew__map_claim(m, &first, &count))
                    crew__map_done_range(m, first, count, NULL, status, NULL);
            }
        }
        for (size_t i = 0; i < nx; i++)
            after_parent_transition(b, xs[i]);
        bump_progress(b);
        if (nx < 64 && !more_maps)
            break;
    }
}

/* The breaker (monitor, under lk). Its job is restart storms, not tasks
 * that crash now and then: it trips when breaker_crashes workers in a row
 * die (unplanned, not killed by the pool) before finishing anything -- not
 * one task, not one map item. A broken start (a library that does not load,
 * a task that crashes on every call, an initializer that fails) trips it
 * after that many deaths; a pool whose tasks crash sometimes never does,
 * since a worker that finished work before it died resets the count. One
 * counter: O(1) memory whatever the setting. progressed: the dead worker
 * had finished something. Returns true when the breaker trips now. */
static bool breaker_note(pb *b, bool progressed)
{
    if (progressed) {
        b->fresh_deaths = 0;
        return false;
    }
    if (b->fresh_deaths < UINT32_MAX)
        b->fresh_deaths++;
    return b->o.breaker_crashes != CREW_BREAKER_OFF && b->fresh_deaths >= b->o.breaker_crashes;
}

/* Hands items [first, first + count) of map m back to run again (under lk);
 * false when they cannot be (no memory, map gone). */
static bool redo_push(pb *b, crew__map *m, size_t first, size_t count)
{
    pmap *pm = pmap_of(b, m);
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

/* What a worker's death means for the slot x it was running (under lk):
 * the failure details in rec[x], and for a chunk the split into finished,
 * failed and handed-back items. `cause` is the status of the running task
 * or item (CREW_ECRASHED, or the reason of the pool's kill); `ours`: the
 * pool's kill was for this task (and, for a chunk, this item). Returns the
 * new phase: PH_FAILED, or PH_QUEUED for a task to run again. */
static uint32_t settle_slot(pb *b, uint32_t x, const pworker *pw, const crew_exit *ex, int cause,
                            bool killed, bool recycled, uint32_t items, bool *progressed)
{
    rec *r = &b->rec[x];
    uint32_t v = atomic_load(&slot_at(b->h, x)->state);
    r->fail_status = cause;
    r->fail_pid = pw->pid;
    r->fail_signal = ex->signal;
    r->fail_code = ex->signal ? 0 : ex->code;
    if (r->kind != KIND_CHUNK) {
        /* Killed for another task that ended meanwhile: this one was not at
         * fault; run it again. */
        if (killed && v != pw->kill_tag) {
            r->fail_status = 0;
            return PH_QUEUED;
        }
        return PH_FAILED;
    }
    /* A chunk. The worker counted its finished items (untrusted: clamp). */
    uint32_t cur = items < r->count ? items : (uint32_t)r->count;
    bool fail = !recycled && cur < r->count;
    if (killed && !(v == pw->kill_tag && (pw->kill_item == UINT32_MAX || pw->kill_item == cur)))
        fail = false; /* killed for an item that had finished: this one is innocent */
    *progressed = *progressed || cur > 0;
    r->part = true;
    r->part_done = cur;
    r->part_fail = fail;
    r->rest_status = 0;
    size_t rest = cur + (fail ? 1u : 0u);
    if (rest < r->count) {
        if (cause == CREW_ECANCELED || atomic_load(&r->m->cancel) || atomic_load(&b->quit))
            r->rest_status = CREW_ECANCELED;
        else if (!redo_push(b, r->m, r->first + rest, r->count - rest))
            r->rest_status = CREW_ENOMEM;
    }
    return PH_FAILED;
}

/* A worker process ended (monitor thread). */
static void on_death(pb *b, int w)
{
    pworker *pw = &b->w[w];
    crew_exit ex = {0};
    crew_process_join(pw->proc, CREW_FOREVER, &ex);
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, pw->pidfd, NULL);
    if (pw->sock >= 0) {
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, pw->sock, NULL);
        crew__close(pw->sock);
        pw->sock = -1; /* (only the monitor uses it; start_worker sets it again) */
    }
    crew_process_destroy(pw->proc);
    atomic_fetch_sub(&b->alive, 1);
    wrec *wr = wrec_at(b->h, w);
    uint32_t reason = atomic_load(&wr->exit_reason);
    const bool planned = reason != EXIT_NONE && ex.signal == 0 && ex.code == 0;
    const bool recycled =
        planned && (reason == EXIT_RECYCLE_COUNT || reason == EXIT_RECYCLE_MEM);
    const uint32_t items = atomic_load(&wr->items);
    bool progressed = atomic_load(&wr->tasks) > 0;

    /* A worker that died holding the spinner role would leave the queue
     * with no spinner and nobody waking sleepers: take it back. */
    spinner_drop(b->h, (uint32_t)w + 1);
    atomic_fetch_and(&b->h->awake[w / 64], ~(UINT64_C(1) << (w % 64)));
    wake_workers(b);

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
    bool killed = kill == CREW_ECANCELED ||
                  (kill && pw->term_at &&
                   (ex.signal == SIGTERM || ex.signal == SIGKILL || ex.signal == 0));
    const int cause = killed ? kill : CREW_ECRASHED;
    bool requeued = false, failed = false;
    /* A worker runs one slot at a time; more than one RUNNING under its
     * index would be a corrupted header: each is failed all the same. */
    for (uint32_t x = 0; x < b->h->nslots; x++) {
        slot_hdr *s = slot_at(b->h, x);
        uint32_t v = atomic_load(&s->state);
        if (st_phase(v) != PH_RUNNING || st_worker(v) != (uint32_t)w)
            continue;
        uint32_t ph = settle_slot(b, x, pw, &ex, cause, killed, recycled, items, &progressed);
        if (!atomic_compare_exchange_strong(&s->state, &v, st_make(st_gen(v), ph, 0)))
            continue; /* (only a worker moves a RUNNING slot on, and this one is dead) */
        if (ph == PH_QUEUED) {
            if_unlink(b, x); /* keep the in-flight list in queue order */
            if_push(b, x);
            ring_push(b, x);
            requeued = true;
        } else {
            /* The sweep below harvests it unless a parent thread watches
             * it: wake that one, it harvests. */
            if (atomic_load_explicit(&s->watch, memory_order_seq_cst))
                crew__futex_wake(&s->state, INT32_MAX);
            failed = true;
        }
    }
    if (recycled)
        atomic_fetch_add(&b->recycled, 1);
    bool unplanned = !planned && !killed && !atomic_load(&b->quit);
    bool trip = unplanned && breaker_note(b, progressed);
    if (trip)
        atomic_store(&b->broken, 1);
    pw->kill_reason = 0;
    pw->kill_at = pw->term_at = 0;
    pw->respawn_pending = !atomic_load(&b->broken) && !atomic_load(&b->quit);
    pthread_mutex_unlock(&b->lk);
    /* Fail the task at once: its waiter learns of the crash a few hundred
     * microseconds sooner than if it waited for the replacement (a
     * forkserver start), which is started right after. So a caller that
     * sees the failure may still see workers_alive one short for that long;
     * the queue keeps every other task meanwhile. A chunk's handed-back
     * items are dispatched when its slot is released. */
    if (failed)
        sweep(b);
    if (requeued)
        wake_workers(b);
    if (pw->respawn_pending) {
        if (start_worker(b, w) == 0) {
            pw->respawn_pending = false;
        } else {
            /* Could not start one: that counts as a death, try again soon. */
            pthread_mutex_lock(&b->lk);
            bool t2 = breaker_note(b, false);
            if (t2)
                atomic_store(&b->broken, 1);
            pthread_mutex_unlock(&b->lk);
            if (t2) {
                pw->respawn_pending = false;
                trip = true;
            } else {
                b->respawn_at = crew__now_ns() + 10000000u;
            }
        }
    }
    if (trip)
        fail_all_queued(b, CREW_EBROKEN);
    bump_progress(b);
}

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
    uint64_t grace = (uint64_t)(b->o.kill_grace * 1e9);
    pthread_mutex_lock(&b->lk);
    for (int w = 0; w < b->nw; w++) {
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
                    request_kill_locked(b, (uint32_t)w, t1, i1, CREW_ETIMEDOUT);
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

#define EV_WAKE UINT64_C(0x100000)
#define EV_CTL UINT64_C(0x100001)
#define EV_TIMER UINT64_C(0x100002)

static void *monitor_main(void *arg)
{
    pb *b = arg;
    struct epoll_event evs[32];
    if (b->start_in_monitor) {
        int rc = 0;
        for (int w = 0; w < b->nw && rc == 0; w++)
            rc = start_worker(b, w);
        b->start_rc = rc;
        atomic_store_explicit(&b->start_state, 1, memory_order_release);
        crew__futex_wake(&b->start_state, INT32_MAX);
        if (rc)
            return NULL; /* procs_create cleans up */
    }
    for (;;) {
        atomic_store_explicit(&b->h->mon_parked, 1, memory_order_seq_cst);
        uint64_t now = crew__now_ns();
        if (b->sweep_at && now >= b->sweep_at) {
            b->sweep_at = 0;
            atomic_store_explicit(&b->sweep_due, 0, memory_order_release);
        } else if (!b->sweep_at && atomic_load_explicit(&b->sweep_due, memory_order_acquire)) {
            b->sweep_at = now + SWEEP_DUE_NS;
        }
        sweep(b);
        if (b->respawn_at && now >= b->respawn_at) {
            b->respawn_at = 0;
            for (int w = 0; w < b->nw; w++) {
                if (!b->w[w].respawn_pending || atomic_load(&b->broken) || atomic_load(&b->quit))
                    continue;
                if (start_worker(b, w) == 0)
                    b->w[w].respawn_pending = false;
                else
                    b->respawn_at = now + 10000000u;
            }
        }
        arm_timer(b, check_timers(b, now));
        if (atomic_load(&b->quit))
            break;
        int n = epoll_wait(b->epfd, evs, 32, -1);
        atomic_store_explicit(&b->h->mon_parked, 0, memory_order_seq_cst);
        for (int i = 0; i < n; i++) {
            uint64_t k = evs[i].data.u64;
            if (k == EV_WAKE)
                drain_fd(b->evfd);
            else if (k == EV_CTL)
                drain_fd(b->ctlfd);
            else if (k == EV_TIMER) {
                drain_fd(b->tfd);
                b->armed_at = 0; /* one-shot: it fired */
            }
            else if (k < (uint64_t)b->nw && b->w[k].alive)
                on_death(b, (int)k);
            else if (k >= EV_SOCK && k < EV_SOCK + (uint64_t)b->nw)
                serve_regions(b, (int)(k - EV_SOCK));
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ create / destroy */

static void free_backend(pb *b)
{
    if (b->h)
        munmap(b->h, b->size);
    crew__close(b->memfd);
    crew__close(b->evfd);
    crew__close(b->ctlfd);
    crew__close(b->epfd);
    crew__close(b->tfd);
    for (int i = 0; i < REG_MAX; i++)
        crew__close(b->regs[i].fd);
    pthread_mutex_destroy(&b->lk);
    crew__free(b->free_stack);
    crew__free(b->rec);
    crew__free(b->w);
    crew__free(b);
}

static void stop_workers(pb *b)
{
    atomic_store(&b->quit, 1);
    atomic_store(&b->h->stop, 1);
    crew__futex_wake(&b->h->tail, INT32_MAX);
    kick_fd(b->ctlfd);
    if (b->monitor_started) {
        pthread_join(b->monitor, NULL);
        b->monitor_started = false;
    }
    for (int w = 0; w < b->nw; w++) {
        pworker *pw = &b->w[w];
        if (!pw->proc)
            continue;
        /* Idle workers see `stop` and leave at once; give a busy one the
         * grace period, then crew_process_destroy kills and reaps it. */
        if (crew_process_join(pw->proc, b->o.kill_grace, NULL) == CREW_ETIMEDOUT)
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

static int procs_create(crew_pool *p, const crew_pool_options *o)
{
    if (o->start_method < CREW_START_DEFAULT || o->start_method > CREW_START_FORKSERVER)
        return CREW_EINVAL;
    pb *b = crew__calloc(1, sizeof *b);
    if (!b)
        return CREW_ENOMEM;
    b->pool = p;
    b->o = *o;
    if (b->o.start_method == CREW_START_DEFAULT)
        b->o.start_method = CREW_START_FORKSERVER;
    b->nw = o->workers;
    b->memfd = b->evfd = b->ctlfd = b->epfd = b->tfd = -1;
    b->if_head = b->if_tail = -1;
    for (int i = 0; i < REG_MAX; i++)
        b->regs[i].fd = -1;
    pthread_mutex_init(&b->lk, NULL);

    uint32_t nslots = (uint32_t)b->nw * SLOTS_PER_WORKER;
    if (nslots > SLOTS_MAX)
        nslots = SLOTS_MAX;
    size_t arg_cap = ALIGN64(o->max_arg_size), res_area = ALIGN64(o->max_result_size) + 64;
    size_t slot_size = SLOT_HDR + arg_cap + res_area;
    size_t off = ALIGN64(sizeof(shm_hdr));
    size_t wrec_off = off;
    off += ALIGN64(sizeof(wrec) * (size_t)b->nw);
    size_t fns_off = off;
    off += ALIGN64(sizeof(fn_entry) * FN_MAX);
    size_t ring_off = off;
    uint32_t ring = nslots * 2;
    off += ALIGN64(sizeof(uint32_t) * ring);
    off = (off + 4095) & ~(size_t)4095;
    size_t slots_off = off;
    off += slot_size * nslots;
    b->size = (off + 4095) & ~(size_t)4095;

    int rc = CREW_ENOMEM;
    b->free_stack = crew__calloc(nslots, sizeof *b->free_stack);
    b->rec = crew__calloc(nslots, sizeof *b->rec);
    b->w = crew__calloc((size_t)b->nw, sizeof *b->w);
    if (!b->free_stack || !b->rec || !b->w)
        goto fail;
    for (int w = 0; w < b->nw; w++)
        b->w[w].sock = -1;
    void *addr;
    rc = crew__memfd_map("crew-pool", b->size, &b->memfd, &addr);
    if (rc)
        goto fail;
    b->h = addr;
    shm_hdr *h = b->h;
    h->nslots = nslots;
    h->ring = ring;
    h->nworkers = (uint32_t)b->nw;
    h->size = b->size;
    h->slot_size = slot_size;
    h->arg_cap = arg_cap;
    h->res_cap = o->max_result_size;
    h->res_area = res_area;
    h->wrec_off = wrec_off;
    h->fns_off = fns_off;
    h->ring_off = ring_off;
    h->slots_off = slots_off;
    h->timeout_ns = (uint64_t)(o->task_timeout * 1e9);
    h->max_mem = o->max_worker_memory;
    h->max_tasks = o->max_tasks_per_worker;
    _Atomic uint32_t *rg = ring_at(h);
    for (uint32_t i = 0; i < ring; i++)
        atomic_store_explicit(&rg[i], UINT32_MAX, memory_order_relaxed);
    atomic_store(&h->mon_parked, 0);
    h->magic = SHM_MAGIC;
    for (uint32_t i = 0; i < nslots; i++) {
        b->free_stack[i] = nslots - 1 - i;
        b->rec[i].prev = b->rec[i].next = -1;
    }
    b->n_free = nslots;

    b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->ctlfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (b->evfd < 0 || b->ctlfd < 0 || b->epfd < 0 || b->tfd < 0) {
        rc = -errno;
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.u64 = EV_WAKE;
    epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev);
    ev.data.u64 = EV_CTL;
    epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->ctlfd, &ev);
    ev.data.u64 = EV_TIMER;
    epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->tfd, &ev);

    p->backend = b;
    /* A fork or spawn child's parent-death signal fires when the *thread*
     * that started it ends. The caller's thread may be short-lived, so for
     * those methods the monitor thread (which lives as long as the pool)
     * starts the first workers too; forkserver children are tied to the
     * forkserver's own crew thread, so the caller starts them directly. */
    b->start_in_monitor = b->o.start_method != CREW_START_FORKSERVER;
    if (!b->start_in_monitor) {
        for (int w = 0; w < b->nw; w++) {
            rc = start_worker(b, w);
            if (rc)
                goto fail_workers;
        }
    }
    rc = pthread_create(&b->monitor, NULL, monitor_main, b);
    if (rc) {
        rc = -rc;
        goto fail_workers;
    }
    b->monitor_started = true;
    if (b->start_in_monitor) {
        while (atomic_load_explicit(&b->start_state, memory_order_acquire) == 0)
            crew__futex_wait(&b->start_state, 0, NULL);
        if (b->start_rc) {
            rc = b->start_rc;
            goto fail_workers;
        }
    }
    return 0;

fail_workers:
    stop_workers(b);
fail:
    p->backend = NULL;
    free_backend(b);
    return rc;
}

static int procs_shutdown(crew_pool *p, int cancel_pending)
{
    pb *b = backend(p);
    atomic_store(&b->shutting, 1);
    if (cancel_pending) {
        fail_all_queued(b, CREW_ECANCELED);
        /* Running tasks: ask them to stop (crew_task_cancelled), and stop
         * their workers after kill_grace if they do not. */
        bool kick = false;
        pthread_mutex_lock(&b->lk);
        for (int32_t x = b->if_head; x >= 0; x = b->rec[x].next) {
            slot_hdr *s = slot_at(b->h, (uint32_t)x);
            uint32_t v = atomic_load(&s->state);
            if (st_phase(v) == PH_RUNNING) {
                atomic_store(&s->cancel, 1);
                pworker *pw = &b->w[st_worker(v)];
                if (pw->alive && !pw->kill_reason) {
                    request_kill_locked(b, st_worker(v), v, UINT32_MAX, CREW_ECANCELED);
                    /* SIGTERM only after the grace period: a cooperative
                     * task may stop by itself first. */
                    pw->term_at = 1;
                    pw->kill_at = crew__now_ns() + (uint64_t)(b->o.kill_grace * 1e9);
                    kick = true;
                }
            }
        }
        pthread_mutex_unlock(&b->lk);
        if (kick)
            kick_fd(b->ctlfd);
    }
    /* From a done callback (the monitor thread, or a waiter completing a
     * future): the monitor is what the wait below needs, so do not wait. */
    if (crew__pool_in_callback(p))
        return 0;
    /* Wait until nothing is queued or in flight. */
    for (;;) {
        uint32_t seq = atomic_load_explicit(&b->progress, memory_order_seq_cst);
        sweep(b);
        pthread_mutex_lock(&b->lk);
        pmap *gone = maps_collect_finished(b); /* e.g. cancelled before any chunk ran */
        bool idle = b->n_inflight == 0 && b->n_ov == 0 && b->maps == NULL;
        pthread_mutex_unlock(&b->lk);
        maps_release(b, gone);
        if (idle)
            return 0;
        crew__deadline d;
        crew__deadline_init(&d, 0.01);
        atomic_fetch_add_explicit(&b->progress_waiters, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&b->progress, memory_order_seq_cst) == seq)
            crew__futex_wait(&b->progress, seq, &d);
        atomic_fetch_sub_explicit(&b->progress_waiters, 1, memory_order_seq_cst);
    }
}

static void procs_destroy(crew_pool *p)
{
    pb *b = backend(p);
    if (!b)
        return;
    stop_workers(b);
    /* Every future is complete (shutdown(p, 1) ran); maps are released. */
    maps_release(b, b->maps);
    b->maps = NULL;
    p->backend = NULL;
    free_backend(b);
}

static void procs_stats(crew_pool *p, crew_pool_stats *st)
{
    pb *b = backend(p);
    if (!b)
        return;
    st->workers_started = atomic_load(&b->started);
    st->workers_recycled = atomic_load(&b->recycled);
    st->workers_alive = atomic_load(&b->alive);
    st->broken = atomic_load(&b->broken) ? 1 : 0;
}

const crew__pool_ops crew__pool_processes_ops = {
    .name = "processes",
    .create = procs_create,
    .submit = procs_submit,
    .submit_map = procs_submit_map,
    .cancel = procs_cancel,
    .wait = procs_wait,
    .shutdown = procs_shutdown,
    .destroy = procs_destroy,
    .stats = procs_stats,
    .submit_shm = procs_submit_shm,
    .shutdown_in_callback = true,
};
