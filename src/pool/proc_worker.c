/*
 * proc_worker.c -- the worker process of a process pool: it claims tasks
 * from the shared queue, runs them, writes their results into their slots
 * and tells whoever waits. It touches the pool only through the shared
 * memory of proc_layout.h (and its region socket); it never sees the
 * parent's memory. Interface: crew__procs_worker_main in proc_layout.h.
 *
 * DESIGN
 *
 * One thread, one loop (worker_main): look at the queue; nothing there:
 * idle (spin as the one spinner, or park on `tail`); something there:
 * claim it (worker_claim), run it (run_task / run_chunk), publish DONE and
 * wake the one who needs it (worker_publish), then count it and recycle if
 * a limit says so (worker_after). The wake-up protocol it follows is in
 * proc_layout.h.
 *
 * What a crash leaves. The worker keeps its wrec current so that the
 * monitor, finding it dead, knows everything without asking it: the slot it
 * claims (wrec.slot, stored before the claim CAS), the running task's tag
 * and start (deadlines), the chunk items finished so far (wrec.items, one
 * release store per item) and, from a chunk's first failed item on, the
 * per-item statuses and n_failed in the slot. So a death fails only the
 * running task or item; finished items keep their outputs.
 *
 * Recycling is done by the worker itself between tasks (task count; RSS
 * read from /proc/self/statm at most once a millisecond and whenever it runs
 * out of work, and between the items of a chunk): it records the reason and
 * exits (worker_exit); the monitor replaces it and queued work simply waits
 * in the shared queue.
 *
 * Regions. A task or chunk whose data lies in a crew_shm region names
 * (table index, generation); a worker that has not mapped that one asks the
 * parent over its socket and blocks for the fd (worker_region), maps it and
 * caches it by index. Idle workers with mappings check h->reg_epoch before
 * parking and unmap entries the parent evicted. A worker that dies waiting
 * simply dies (its task fails as any other); a replacement asks again.
 *
 * Locks: none on the task path (mapping a region takes the process-local
 * shm registry lock of the worker itself).
 */
#include "pool/proc_layout.h"
#include "pool/pool_internal.h" /* struct crew_task */
#include "ipc/shm_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* A worker's mappings of the pool's regions, by table index. */
typedef struct wreg {
    uint32_t gen;
    crew_shm *s;
} wreg;

/* Everything the steps of worker_main share. */
typedef struct worker {
    shm_hdr *h;
    wrec *me;
    _Atomic uint32_t *ring;
    int w;                 /* worker index */
    uint32_t w1;           /* index + 1, as slot states and the spinner role name it */
    uint64_t awake_bit;    /* in h->awake[w / 64] */
    int evfd, sock;
    bool same_image;
    bool spinner;          /* holds the spinner role */
    bool mem_checked;      /* RSS read since the last task */
    int statm;             /* /proc/self/statm when max_mem is set, else -1 */
    uint64_t timeout_ns;
    uint64_t last_mem;     /* when RSS was last read */
    uint64_t done;         /* tasks finished */
    uint32_t nmapped, reg_seen;
    uintptr_t fns[FN_MAX]; /* resolved task functions (0: not yet) */
    wreg wr[REG_MAX];
} worker;

static void wreg_drop(worker *k, uint32_t i)
{
    crew_shm_destroy(k->wr[i].s);
    k->wr[i].s = NULL;
    k->wr[i].gen = 0;
    k->nmapped--;
}

/* Asks the parent for region (idx, gen) and waits for its fd; NULL if the
 * answer is not a usable one. */
static crew_shm *region_ask(int sock, uint32_t idx, uint32_t gen)
{
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
        return s;
    }
}

/* The worker's mapping of region (idx, gen): cached, or asked from the
 * parent over the socket (a blocking round trip through the monitor, once
 * per region per worker). NULL if it cannot be had (then the task fails
 * CREW_EPROTO: a crew bug or a parent going away). */
static crew_shm *worker_region(worker *k, uint32_t idx, uint32_t gen)
{
    if (idx >= REG_MAX)
        return NULL;
    if (CREW__LIKELY(k->wr[idx].s && k->wr[idx].gen == gen))
        return k->wr[idx].s;
    if (k->wr[idx].s)
        wreg_drop(k, idx); /* an older occupant of the index */
    crew_shm *s = region_ask(k->sock, idx, gen);
    if (s) {
        k->wr[idx].s = s;
        k->wr[idx].gen = gen;
        k->nmapped++;
    }
    return s;
}

/* Idle worker: unmap regions the parent has evicted (slow path: only when
 * the table's epoch moved since the last look). */
static void worker_regions_tidy(worker *k)
{
    shm_hdr *h = k->h;
    uint32_t ep = atomic_load_explicit(&h->reg_epoch, memory_order_acquire);
    if (ep == k->reg_seen)
        return;
    k->reg_seen = ep;
    for (uint32_t i = 0; i < REG_MAX && k->nmapped; i++)
        if (k->wr[i].s &&
            atomic_load_explicit(&h->reg_gen[i], memory_order_acquire) != k->wr[i].gen)
            wreg_drop(k, i);
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

__attribute__((noreturn)) static void worker_exit(worker *k, enum worker_exit_reason reason)
{
    /* (the monitor drops a dead worker's spinner role) */
    atomic_store_explicit(&k->me->exit_reason, (uint32_t)reason, memory_order_seq_cst);
    crew__child_exit(0);
}

/* Recycling by memory, at most once a millisecond. */
static void worker_check_mem(worker *k)
{
    uint64_t now = crew__now_ns();
    if (now - k->last_mem >= 1000000u) {
        k->last_mem = now;
        if (read_rss(k->statm) > k->h->max_mem)
            worker_exit(k, EXIT_RECYCLE_MEM);
    }
}

/* ------------------------------------------------------------ start */

/* Maps the pool and sets k up from the boot record. 0, or the exit code
 * the worker ends with. */
static int worker_boot(worker *k, const void *arg, size_t len)
{
    if (len != sizeof(wboot))
        return WORKER_EXIT_BAD_BOOT;
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
        return WORKER_EXIT_NO_MAP;
    crew__close(b.memfd);
    if (b.same_image) {
        int keep[] = {b.evfd, b.sock};
        close_cloexec_fds(keep, 2);
    }
    if (h->magic != SHM_MAGIC)
        return WORKER_EXIT_BAD_LAYOUT;
    memset(k, 0, sizeof *k);
    k->h = h;
    k->w = b.index;
    k->w1 = (uint32_t)b.index + 1;
    k->awake_bit = UINT64_C(1) << (b.index % 64);
    k->me = wrec_at(h, b.index);
    k->ring = ring_at(h);
    k->evfd = b.evfd;
    k->sock = b.sock;
    k->same_image = b.same_image != 0;
    k->statm = h->max_mem ? open("/proc/self/statm", O_RDONLY | O_CLOEXEC) : -1;
    k->last_mem = crew__now_ns();
    k->timeout_ns = h->timeout_ns;
    k->mem_checked = true;
    atomic_fetch_or_explicit(&h->awake[k->w / 64], k->awake_bit, memory_order_seq_cst);
    return 0;
}

/* ------------------------------------------------------------ idle */

/* Nothing queued (tail was tl): check memory once per run of work, spin as
 * the spinner for a while, else park on tail. Returns when tail may have
 * moved. */
static void worker_idle(worker *k, uint32_t tl)
{
    shm_hdr *h = k->h;
    if (k->statm >= 0 && !k->mem_checked) {
        k->mem_checked = true; /* once per run of work, not per idle turn */
        if (read_rss(k->statm) > h->max_mem)
            worker_exit(k, EXIT_RECYCLE_MEM);
    }
    if (!k->spinner)
        k->spinner = spinner_take(h, k->w1);
    if (k->spinner) {
        if (crew__spin_while_eq(&h->tail, tl, CREW__SPIN_NS))
            return; /* still the spinner until it claims a task */
        spinner_drop(h, k->w1);
        k->spinner = false;
    }
    if (CREW__UNLIKELY(k->nmapped))
        worker_regions_tidy(k);
    /* Park. Dekker with the submitter: awake bit cleared and sleepers++
     * before the re-check of tail; it stores tail before reading the awake
     * bits and sleepers. */
    _Atomic uint64_t *aw = &h->awake[k->w / 64];
    atomic_fetch_and_explicit(aw, ~k->awake_bit, memory_order_seq_cst);
    atomic_fetch_add_explicit(&h->sleepers, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&h->waking, memory_order_relaxed))
        atomic_store_explicit(&h->waking, 0, memory_order_release);
    if (atomic_load_explicit(&h->tail, memory_order_seq_cst) == tl &&
        !atomic_load_explicit(&h->stop, memory_order_seq_cst))
        crew__futex_wait(&h->tail, tl, NULL);
    if (atomic_load_explicit(&h->waking, memory_order_relaxed))
        atomic_store_explicit(&h->waking, 0, memory_order_release);
    atomic_fetch_or_explicit(aw, k->awake_bit, memory_order_seq_cst);
    atomic_fetch_sub_explicit(&h->sleepers, 1, memory_order_seq_cst);
}

/* ------------------------------------------------------------ claim */

/* Tries to claim the task at ring position hd and moves head past it
 * (whoever claimed it). true with its slot in *x and its RUNNING state word
 * in *run when it is ours. */
static inline bool worker_claim(worker *k, uint32_t hd, uint32_t *x, uint32_t *run)
{
    shm_hdr *h = k->h;
    uint32_t i = atomic_load_explicit(&k->ring[hd % h->ring], memory_order_acquire);
    bool mine = false;
    if (i < h->nslots) {
        slot_hdr *sl = slot_at(h, i);
        uint32_t s = atomic_load_explicit(&sl->state, memory_order_acquire);
        if (st_phase(s) == PH_QUEUED) {
            /* Name the slot before the CAS (its release keeps this store
             * first): a death right after the CAS leaves it named. */
            atomic_store_explicit(&k->me->slot, i + 1, memory_order_relaxed);
            uint32_t r = st_make(st_gen(s), PH_RUNNING, k->w1);
            mine = atomic_compare_exchange_strong_explicit(&sl->state, &s, r, memory_order_acq_rel,
                                                           memory_order_acquire);
            *x = i;
            *run = r;
        }
    }
    atomic_compare_exchange_strong_explicit(&h->head, &hd, hd + 1, memory_order_acq_rel,
                                            memory_order_relaxed);
    return mine;
}

/* After a claim at hd: more queued behind this task and nobody spinning
 * for it -- wake a sleeping worker (our system call, not the submitter's).
 * Only one such wake is in flight at a time (`waking`, cleared by any
 * worker that parks or wakes up): a worker being woken takes ~35 us to run,
 * and every claim meanwhile would otherwise call futex_wake again. This
 * wake is only for parallelism; the submitter's wake (when no worker is
 * awake) is the one that guarantees progress. */
static inline void worker_wake_more(worker *k, uint32_t hd)
{
    shm_hdr *h = k->h;
    if (atomic_load_explicit(&h->tail, memory_order_seq_cst) != hd + 1 &&
        atomic_load_explicit(&h->spinner, memory_order_seq_cst) == 0 &&
        atomic_load_explicit(&h->sleepers, memory_order_seq_cst) > 0 &&
        !atomic_load_explicit(&h->waking, memory_order_relaxed) &&
        !atomic_exchange_explicit(&h->waking, 1, memory_order_acq_rel))
        crew__futex_wake(&h->tail, 1);
}

/* The task function at index fi of the shared table, resolved once. */
static inline crew_task_fn worker_fn(worker *k, uint32_t fi)
{
    if (fi >= FN_MAX)
        return NULL;
    if (!k->fns[fi]) {
        fn_entry *e = fn_at(k->h, fi);
        uintptr_t a = 0;
        if (k->same_image)
            a = e->raw;
        else if (crew__fnref_resolve(&e->ref, &a) != 0)
            a = 0;
        k->fns[fi] = a;
    }
    return (crew_task_fn)k->fns[fi];
}

/* ------------------------------------------------------------ run */

/* The task's function is not known here: it and, for a chunk, every item
 * end CREW_ENOTFOUND. */
static void run_unknown(worker *k, slot_hdr *sl)
{
    bool chunk = sl->kind == KIND_CHUNK;
    sl->status = CREW_ENOTFOUND;
    sl->res_len = 0;
    sl->n_failed = chunk ? sl->count : 0;
    sl->first_fail = 0;
    sl->first_fail_status = CREW_ENOTFOUND;
    if (chunk) {
        /* every item's status, as the parent reads them */
        size_t oa = sl->out_reg ? 0 : (size_t)sl->count * sl->out_size;
        int32_t *sts = (int32_t *)(slot_res(k->h, sl) + ALIGN64(oa));
        for (uint32_t i = 0; i < sl->count; i++)
            sts[i] = CREW_ENOTFOUND;
        atomic_store_explicit(&k->me->items, sl->count, memory_order_release);
    }
}

/* One task (KIND_TASK, or KIND_SHM with its argument in a region). */
static void run_task(worker *k, slot_hdr *sl, crew_task *t, crew_task_fn fn)
{
    shm_hdr *h = k->h;
    unsigned char *res = slot_res(h, sl);
    size_t rl = 0;
    const unsigned char *targ = slot_arg(h, sl);
    size_t targ_len = sl->arg_len;
    if (CREW__UNLIKELY(sl->kind == KIND_SHM)) {
        /* Zero copy: the argument is in a region, mapped here. */
        t->shm = worker_region(k, sl->in_reg - 1, sl->in_gen);
        targ = t->shm ? region_bytes(t->shm, sl->in_off, sl->shm_len) : NULL;
        targ_len = (size_t)sl->shm_len;
    }
    int rc = targ ? fn(t, targ, targ_len, res, h->res_cap, &rl) : CREW_EPROTO;
    if (rc > 0)
        rc = 0;
    if (CREW__UNLIKELY(rl > h->res_cap)) {
        /* A result that does not fit is an error, never a cut. */
        rc = CREW_E2BIG;
        rl = 0;
    }
    if (t->timed_out)
        rc = CREW_ETIMEDOUT;
    else if (atomic_load_explicit(&sl->cancel, memory_order_relaxed))
        rc = CREW_ECANCELED;
    sl->status = rc;
    sl->res_len = (uint32_t)rl;
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
        if (CREW__UNLIKELY(r < 0 || l > out_sz)) {
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

/* A chunk: outputs first, then per-item statuses if any failed. Records
 * that lie in a region are read / written there. What the parent needs
 * after a death inside the chunk is kept current item by item: the
 * finished count in me->items and, from the first failure on, the statuses
 * and n_failed. So a death fails only the running item; the finished ones
 * keep their outputs and the rest run again elsewhere. */
static void run_chunk(worker *k, slot_hdr *sl, crew_task *t, crew_task_fn fn)
{
    uint32_t n = sl->count, in_sz = sl->in_size, out_sz = sl->out_size;
    unsigned char *cin = slot_arg(k->h, sl), *cout = slot_res(k->h, sl);
    unsigned char *res = cout;
    size_t out_area = (size_t)n * out_sz;
    bool ok = true;
    if (sl->in_reg) {
        t->shm = worker_region(k, sl->in_reg - 1, sl->in_gen);
        cin = t->shm ? region_bytes(t->shm, sl->in_off, (uint64_t)n * in_sz) : NULL;
        ok = cin != NULL;
    }
    if (sl->out_reg) {
        crew_shm *os = worker_region(k, sl->out_reg - 1, sl->out_gen);
        cout = os ? region_bytes(os, sl->out_off, (uint64_t)n * out_sz) : NULL;
        ok = ok && cout != NULL;
        out_area = 0;
        if (!t->shm)
            t->shm = os;
    }
    int32_t *sts = (int32_t *)(res + ALIGN64(out_area));
    crew_task_fn cfn = ok ? fn : task_eproto; /* a region we could not map */
    _Atomic uint32_t *items = &k->me->items;
    uint32_t nf = 0, i = 0;
    int rc = 0;
    size_t rl = 0;
    bool ran = false; /* item i has run already (run_items_ok stopped at it) */
    if (!k->timeout_ns && k->statm < 0) {
        i = run_items_ok(cfn, t, cin, in_sz, cout, out_sz, n, items, &rc, &rl);
        ran = i < n;
    }
    for (; i < n; i++) {
        if (!ran) {
            rl = 0;
            rc = cfn(t, cin + (size_t)i * in_sz, in_sz, cout + (size_t)i * out_sz, out_sz, &rl);
        }
        ran = false;
        if (rc > 0)
            rc = 0;
        if (CREW__UNLIKELY(rl > out_sz))
            rc = CREW_E2BIG; /* the output record cannot hold it */
        if (CREW__UNLIKELY(rc < 0)) {
            if (nf == 0) {
                for (uint32_t j = 0; j < i; j++)
                    sts[j] = 0;
                sl->first_fail = i;
                sl->first_fail_status = rc;
            }
            nf++;
            sl->n_failed = nf;
        }
        if (nf)
            sts[i] = rc;
        if (CREW__UNLIKELY(k->timeout_ns)) {
            /* Each item has its own deadline: the next one starts now
             * (start before count: see check_timers in proc_monitor.c). */
            uint64_t now = crew__now_ns();
            t->deadline_ns = now + k->timeout_ns;
            atomic_store_explicit(&k->me->start_ns, now, memory_order_relaxed);
        }
        atomic_store_explicit(items, i + 1, memory_order_release);
        /* Recycling by memory between items: the finished items stand, the
         * rest run on another worker. */
        if (CREW__UNLIKELY(k->statm >= 0) && i + 1 < n)
            worker_check_mem(k);
    }
    sl->n_failed = nf;
    sl->status = 0;
    sl->res_len = 0;
}

/* Runs the task in slot sl (state word run, ours). */
static inline void worker_run(worker *k, slot_hdr *sl, uint32_t run)
{
    shm_hdr *h = k->h;
    wrec *me = k->me;
    uint64_t start = 0;
    if (k->timeout_ns) {
        start = crew__now_ns();
        atomic_store_explicit(&me->tag, 0, memory_order_seq_cst);
        atomic_store_explicit(&me->start_ns, start, memory_order_seq_cst);
    }
    atomic_store_explicit(&me->tag, run, memory_order_seq_cst);
    crew_task_fn fn = worker_fn(k, sl->fn_idx);
    crew_task t = {0};
    t.cancel = &sl->cancel;
    t.cancel_mask = 1;
    t.pool_cancel = &h->stop;
    t.worker = k->w;
    t.deadline_ns = k->timeout_ns ? start + k->timeout_ns : 0;
    if (!fn)
        run_unknown(k, sl);
    else if (sl->kind != KIND_CHUNK)
        run_task(k, sl, &t, fn);
    else
        run_chunk(k, sl, &t, fn);
}

/* ------------------------------------------------------------ publish */

/* Publishes DONE for slot sl (claimed as run) and wakes whoever needs it:
 * its watcher, else a pumping parent thread, else the monitor. */
static inline void worker_publish(worker *k, slot_hdr *sl, uint32_t run, bool was_chunk)
{
    shm_hdr *h = k->h;
    atomic_store_explicit(&k->me->tag, 0, memory_order_relaxed);
    /* Become the spinner before publishing the result, so that the
     * submitter, seeing it and queueing the next task, finds a spinner and
     * makes no wake-up call. */
    if (atomic_load_explicit(&h->spinner, memory_order_relaxed) == 0)
        k->spinner = spinner_take(h, k->w1);
    atomic_store_explicit(&sl->state, st_make(st_gen(run), PH_DONE, k->w1), memory_order_seq_cst);
    if (was_chunk)
        atomic_store_explicit(&k->me->items, 0, memory_order_relaxed); /* (before any claim) */
    uint32_t wk = atomic_load_explicit(&sl->watch, memory_order_seq_cst);
    if (wk == 2) {
        crew__futex_wake(&sl->state, INT32_MAX);
    } else if (wk == 0) {
        /* Nobody watches this slot. If a parent thread is inside a wait it
         * will sweep before it leaves: count the completion for it and
         * re-check that it is still there (Dekker with its pumping-- then
         * quiet_done read). Otherwise wake the monitor. */
        bool kick = true;
        if (atomic_load_explicit(&h->pumping, memory_order_seq_cst)) {
            /* An RMW, not a flag: a count is never lost to a waiter that
             * resets it concurrently (exchange below). */
            atomic_fetch_add_explicit(&h->quiet_done, 1, memory_order_seq_cst);
            kick = atomic_load_explicit(&h->pumping, memory_order_seq_cst) == 0;
        }
        if (kick && atomic_load_explicit(&h->mon_parked, memory_order_seq_cst) &&
            atomic_exchange_explicit(&h->mon_parked, 0, memory_order_seq_cst))
            kick_fd(k->evfd);
    }
}

/* After a task: count it, recycle if a limit says so. */
static inline void worker_after(worker *k)
{
    k->done++;
    atomic_store_explicit(&k->me->tasks, k->done, memory_order_relaxed);
    if (k->h->max_tasks && k->done >= k->h->max_tasks)
        worker_exit(k, EXIT_RECYCLE_COUNT);
    if (k->statm >= 0)
        worker_check_mem(k);
}

int crew__procs_worker_main(void *arg, size_t len)
{
    worker k;
    int rc = worker_boot(&k, arg, len);
    if (rc)
        return rc;
    shm_hdr *h = k.h;
    for (;;) {
        if (CREW__UNLIKELY(atomic_load_explicit(&h->stop, memory_order_acquire)))
            worker_exit(&k, EXIT_STOP);
        uint32_t hd = atomic_load_explicit(&h->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&h->tail, memory_order_acquire);
        if (hd == tl) {
            worker_idle(&k, tl);
            continue;
        }
        uint32_t x = 0, run = 0;
        if (!worker_claim(&k, hd, &x, &run))
            continue;
        k.mem_checked = false;
        if (k.spinner) {
            spinner_drop(h, k.w1);
            k.spinner = false;
        }
        worker_wake_more(&k, hd);
        slot_hdr *sl = slot_at(h, x);
        const bool was_chunk = sl->kind == KIND_CHUNK; /* (the slot is the parent's after DONE) */
        worker_run(&k, sl, run);
        worker_publish(&k, sl, run, was_chunk);
        worker_after(&k);
    }
}
