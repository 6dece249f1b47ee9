/*
 * proc_layout.h -- the shared memory of a process pool: the one thing the
 * parent (src/pool/proc_*.c, pool_processes.c) and its worker processes
 * (src/pool/proc_worker.c) both touch. Everything here is read and written
 * by several processes at once; nothing in it is a pointer.
 *
 * DESIGN
 *
 * Memory. One memfd (MAP_SHARED in the parent and every worker) holds:
 *   - a header: geometry, limits, the shared queue indices (tail, head), the
 *     count of parked workers, the monitor's "parked" flag, the stop flag;
 *   - one record per worker index (exit reason, the slot it claims, the
 *     running tag and its start time for deadlines, tasks done);
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
 * at all (proc_regions.c).
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
 * A crash. Whatever a worker wrote before it died is visible to the
 * monitor once the kernel reports the death (the process's exit orders its
 * stores before the pidfd turns readable), so the records below are read
 * after a death without any fence of the worker's.
 */
#ifndef CREW_POOL_PROC_LAYOUT_H
#define CREW_POOL_PROC_LAYOUT_H

#include "core/internal.h"
#include "proc/process_internal.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

/* ------------------------------------------------------------ geometry */

#define SHM_MAGIC 0x43505031u /* "CPP1" */
#define FN_MAX 128            /* distinct task functions per pool */
#define SLOTS_PER_WORKER 64
#define SLOTS_MAX 4096
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

/* Why a worker ended, recorded in its wrec before a planned exit (a worker
 * that dies without one crashed or was killed). */
enum worker_exit_reason {
    EXIT_NONE = 0,          /* no planned exit (the record's value while it runs) */
    EXIT_RECYCLE_COUNT = 1, /* ran max_tasks_per_worker tasks */
    EXIT_RECYCLE_MEM = 2,   /* its own memory passed max_worker_memory */
    EXIT_STOP = 3,          /* the pool stops (h->stop) */
};

/* The exit code of a worker that could not begin: it never claimed a task,
 * so the monitor sees a death of a worker that finished nothing (which the
 * breaker counts) with this code. */
enum worker_start_exit {
    WORKER_EXIT_BAD_BOOT = 120,   /* the start argument is not a wboot: the parent and
                                     the worker disagree about this file (a crew bug) */
    WORKER_EXIT_NO_MAP = 121,     /* the pool's memfd could not be mapped (no memory or
                                     address space for it) */
    WORKER_EXIT_BAD_LAYOUT = 122, /* the mapping has no SHM_MAGIC: not a pool's layout */
};

#define KIND_TASK 0u
#define KIND_CHUNK 1u
#define KIND_SHM 2u /* a task whose argument is bytes of a crew_shm region (in_reg) */

/* Regions a pool hands to its workers (proc_regions.c). */
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
    _Atomic uint32_t exit_reason; /* enum worker_exit_reason */
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
    /* Index + 1 of the slot this worker last tried to claim (0: none since
     * it started). Stored before the claim CAS, whose release orders it
     * first, so a worker that dies holding a slot RUNNING|w has this naming
     * it; a failed claim leaves a name whose slot is not RUNNING|w, which
     * the monitor checks. A worker runs at most one slot at a time, so this
     * is all the monitor needs to find what a dead worker was running. */
    _Atomic uint32_t slot;
} __attribute__((aligned(CREW__CACHELINE))) wrec;

typedef struct fn_entry {
    uintptr_t raw;
    crew__fnref ref;
} fn_entry;

typedef struct shm_hdr {
    uint32_t magic, nslots, ring;
    uint64_t size, slot_size, arg_cap, res_cap, res_area;
    uint64_t wrec_off, fns_off, ring_off, slots_off;
    uint64_t timeout_ns, max_mem;
    uint32_t max_tasks;
    _Atomic uint32_t tail __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint32_t sleepers;
    _Atomic uint32_t waking;   /* a worker-side wake is in flight */
    /* One bit per worker index that is awake (running a task, spinning, or
     * about to look at the queue). The monitor clears a dead worker's bit. */
    _Atomic uint64_t awake[16] __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint32_t spinner __attribute__((aligned(CREW__CACHELINE))); /* index + 1 of the
                                  one idle worker allowed to spin, 0: none */
    _Atomic uint32_t head __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint32_t stop __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint32_t mon_parked;
    /* Parent threads inside ops->wait (they harvest in the end), and the
     * number of completions workers left to them instead of waking the
     * monitor. See "pumping" in the wake-up protocol. */
    _Atomic uint32_t pumping __attribute__((aligned(CREW__CACHELINE)));
    _Atomic uint32_t quiet_done;
    /* The region table as workers see it: the generation now held at each
     * index (0: free), bumped epoch on every eviction. Idle workers unmap
     * the regions whose generation is no longer current. */
    _Atomic uint32_t reg_epoch __attribute__((aligned(CREW__CACHELINE)));
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

/* Writes to an eventfd: a worker kicks the monitor's, the parent its
 * control fd. */
static inline void kick_fd(int fd)
{
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(fd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
}

/* ------------------------------------------------------------ start */

/* What a worker is started with (its crew_process argument). The fds are
 * passed with pass_fds, at the same numbers. */
typedef struct wboot {
    int memfd, evfd;
    int sock;       /* the worker's end of its region socket */
    uint64_t size;
    int index;
    int same_image; /* fork: function pointers are valid as they are */
} wboot;

/* A region request (worker -> parent) and its answer (parent -> worker,
 * with the region's fd as SCM_RIGHTS when status is 0), one SEQPACKET
 * message each on the worker's region socket. */
typedef struct reg_msg {
    uint32_t idx, gen;
    uint64_t size;
    int32_t status;
    uint32_t pad_;
} reg_msg;

/* The worker process's main (proc_worker.c): a crew_process entry taking a
 * wboot. Returns only an enum worker_start_exit; every other end is an
 * exit with a recorded reason, a crash or a kill. */
int crew__procs_worker_main(void *arg, size_t len);

#endif
