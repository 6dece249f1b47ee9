/*
 * pipe.c -- crew_pipe: a duplex message channel made of two rings.
 *
 * DESIGN
 *
 * Layout. One memfd: a page of pipe header (magic, sizes, and per end a
 * `closed` flag), then ring 0, then ring 1 (the
 * rings of ring.c; see its DESIGN comment for their protocol, wake-ups and
 * crash argument). End i sends on ring i and receives on ring 1-i. A handle
 * is one end as seen by one process: its own mapping and its own fd.
 *
 * Holders: open file description locks. Each end is one open file
 * description of the memfd (end 0: the memfd itself; end 1: a reopen
 * through /proc/self/fd), and every handle of that end keeps a shared OFD
 * lock (F_OFD_SETLK, F_RDLCK) on byte <side> through it. The kernel counts
 * the holders for us, exactly as for file descriptors: the description (and
 * so the lock) lives while any fd or mapping refers to it -- in this
 * process, in a forked child (which inherits both), or in a process that
 * attached through crew_pipe_dup_fd() (a new description with its own lock).
 * When the last of them is closed or unmapped, or its process dies (even
 * SIGKILLed, even before it is reaped: a zombie has no files), the lock
 * disappears. "Is the peer end held?" is one F_OFD_GETLK asking for a
 * write lock on the peer's byte: it reports a conflict while any holder
 * remains. No registry, no atfork handler, no pid that can be recycled.
 *
 * Closing. An end is closed (its `closed` flag, then both rings closed) by
 * crew_pipe_close, by a destroy that finds no other holder left, or by the
 * peer that finds nobody holding it. Closing both rings is what the peer
 * sees: its receive ring drains then says EOF, its send ring says ECLOSED,
 * reported as CREW_EPIPE.
 *
 * Peer death. A waiting call checks the peer after its spin and then
 * between sleep slices (1 ms doubling to 32 ms), so a dead peer is noticed
 * within ~32 ms without costing an idle waiter measurable CPU. A waiter
 * that finds the peer gone looks at the ring once more (the peer may have
 * sent just before dying), then returns EOF / EPIPE and marks the peer end
 * closed so later calls see it at once. A process dying never corrupts a
 * ring (ring.c's argument).
 *
 * One-way pipes (options.one_way, `flags` in the header, read at attach
 * only): the same layout, end 0 may only receive and end 1 only send
 * (CREW_EBADF otherwise); ring 0 is never written, so its data pages are
 * never touched (memfd pages are allocated on first touch).
 *
 * Poll: crew__ring_peek on the receive ring, with the same peer probe and
 * EOF rules as a receive, leaving the message queued.
 *
 * Hostile peers (ring.c's HOSTILE PEERS argument, for the rings). The pipe
 * header is read at attach only: magic, the total size and the two ring
 * offsets must describe exactly the layout create makes (header page, ring
 * 0, ring 1 of the same geometry), so ring pointers are page-aligned and
 * the rings cannot overlap; each handle keeps its ring views and never
 * reads the offsets again (destroy included). After that only the `closed`
 * flags (any non-zero value is "closed") and `broken` are read. A pipe is
 * broken as a whole: a violation found on either ring, or by an attach,
 * sets `broken` in the pipe header and in both rings and in the handle;
 * every later call on any end returns CREW_EPROTO, and waiters notice
 * within a peer-probe slice.
 */
#include "ipc/ring.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIPE_MAGIC 0x3165706977657263ull /* "crewpie1" */
#define PIPE_HDR_BYTES 4096u
/* flags: end 0 only receives, end 1 only sends (Python's Pipe(duplex=False)). */
#define PIPE_ONE_WAY 1u

typedef struct pipe_shared {
    uint64_t magic;
    uint64_t id;
    uint64_t total;
    uint64_t ring_off[2];
    uint32_t flags; /* PIPE_ONE_WAY; constant, read at attach only */
    alignas(CREW__CACHELINE) _Atomic uint32_t closed[2];
    _Atomic uint32_t broken; /* non-zero: someone found the pipe corrupted */
} pipe_shared;

_Static_assert(sizeof(pipe_shared) <= PIPE_HDR_BYTES, "pipe header fits its page");

struct crew_pipe {
    pipe_shared *s;
    size_t map_len;
    int fd; /* this end's open file description, holding the OFD lock */
    int side;
    bool one_way; /* from create, or read once at attach */
    crew__ring_view tx, rx;
    _Atomic bool broken; /* this handle has seen the pipe broken */
};

static inline uint64_t rd64(const void *p) { return *(const volatile uint64_t *)p; }

/* Breaks the pipe for every holder (both rings: waiters on either wake). */
static int pipe_break(crew_pipe *p)
{
    atomic_store_explicit(&p->broken, true, memory_order_relaxed);
    atomic_store_explicit(&p->s->broken, 1, memory_order_seq_cst);
    (void)crew__ring_break(&p->tx);
    (void)crew__ring_break(&p->rx);
    return CREW_EPROTO;
}

/* First step of every call: broken here stays broken, whatever a peer
 * writes into the header later; broken elsewhere is broken here. */
static int pipe_enter(crew_pipe *p)
{
    if (atomic_load_explicit(&p->broken, memory_order_relaxed))
        return CREW_EPROTO;
    if (atomic_load_explicit(&p->s->broken, memory_order_acquire))
        return pipe_break(p);
    return 0;
}

/* ------------------------------------------------------------ holders */

static int hold(int fd, int side)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = side, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* Does any open file description hold end `side`, other than fd's own? */
static bool held_elsewhere(int fd, int side)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = side, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return true; /* cannot tell: never report a live peer as gone */
    return fl.l_type != F_UNLCK;
}

/* lock_wait: see crew__ring_close. */
static int end_close(pipe_shared *s, crew__ring_view *r0, crew__ring_view *r1, int side,
                     double lock_wait)
{
    atomic_store_explicit(&s->closed[side], 1, memory_order_seq_cst);
    int a = crew__ring_close(r0, lock_wait), b = crew__ring_close(r1, lock_wait);
    return a ? a : b;
}

/* The peer probe for ring waits: is the other end closed or unheld? */
static bool peer_gone(void *ctx)
{
    crew_pipe *p = ctx;
    /* A pipe broken at its header (by an attach that found it corrupted)
     * ends the wait too; the caller then reports CREW_EPROTO. */
    if (atomic_load_explicit(&p->s->closed[1 - p->side], memory_order_acquire) ||
        atomic_load_explicit(&p->s->broken, memory_order_acquire))
        return true;
    return !held_elsewhere(p->fd, 1 - p->side);
}

/* After a wait reported the peer gone: the peer end is closed -- unless it
 * was the pipe breaking that ended the wait. Returns the caller's code. */
static int peer_gone_result(crew_pipe *p, int rc)
{
    if (atomic_load_explicit(&p->s->broken, memory_order_acquire))
        return pipe_break(p);
    /* Without waiting for the locks: this runs inside a call with its own
     * timeout, and a gone peer commits nothing more that the lock would
     * order against the close. */
    if (end_close(p->s, &p->tx, &p->rx, 1 - p->side, 0) == CREW_EPROTO)
        return pipe_break(p);
    return rc;
}

/* A new open file description of the same memfd (not a dup). */
static int reopen(int fd, int flags)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, O_RDWR | flags);
    return nfd >= 0 ? nfd : -errno;
}

/* ------------------------------------------------------------ handles */

/* Maps the pipe through fd (taking ownership of fd) as end `side`, and
 * takes the hold. */
static int handle_open(crew_pipe **out, int fd, int side, size_t len)
{
    crew_pipe *p = crew__calloc(1, sizeof *p);
    if (!p) {
        crew__close(fd);
        return CREW_ENOMEM;
    }
    void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
        int e = -errno;
        crew__close(fd);
        crew__free(p);
        return e;
    }
    p->s = addr;
    p->map_len = len;
    p->fd = fd;
    p->side = side;
    *out = p;
    return 0;
}

/* Gives p its ring views, from checked values (create's own, or what
 * attach checked): never from the header, which a peer may rewrite. */
static void handle_bind(crew_pipe *p, const uint64_t off[2], uint64_t cap, uint64_t max)
{
    crew__ring_view r[2];
    for (int i = 0; i < 2; i++)
        r[i] = (crew__ring_view){.hdr = (crew__ring *)((uint8_t *)p->s + off[i]),
                                 .cap = cap,
                                 .max_msg = max,
                                 .broken = &p->broken};
    p->tx = r[p->side];
    p->rx = r[1 - p->side];
}

static void handle_free(crew_pipe *p)
{
    munmap(p->s, p->map_len);
    crew__close(p->fd);
    crew__free(p);
}

int crew_pipe_create(crew_pipe **a, crew_pipe **b, const crew_pipe_options *opts)
{
    if (!a || !b || a == b)
        return CREW_EINVAL;
    *a = *b = NULL;
    crew_pipe_options o = {0};
    if (opts)
        o = *opts;
    uint64_t cap, max;
    int rc = crew__ring_geometry(o.capacity, o.max_message, &cap, &max);
    if (rc != 0)
        return rc;
    size_t rb = crew__ring_bytes(cap);
    size_t total = PIPE_HDR_BYTES + 2 * rb;
    int fd;
    void *addr;
    rc = crew__memfd_map("crew-pipe", total, &fd, &addr);
    if (rc != 0)
        return rc;
    pipe_shared *s = addr;
    s->total = total;
    const uint64_t off[2] = {PIPE_HDR_BYTES, PIPE_HDR_BYTES + rb};
    s->ring_off[0] = off[0];
    s->ring_off[1] = off[1];
    s->flags = o.one_way ? PIPE_ONE_WAY : 0;
    crew__ring_view unused_view;
    _Atomic bool unused = false;
    for (int i = 0; i < 2; i++)
        crew__ring_init(&unused_view, (crew__ring *)((uint8_t *)s + off[i]), cap, max, 0,
                        &unused);
    s->magic = PIPE_MAGIC;
    munmap(addr, total); /* each handle maps through its own description */

    int fd_b = reopen(fd, O_CLOEXEC);
    if (fd_b < 0) {
        crew__close(fd);
        return fd_b;
    }
    crew_pipe *pa = NULL, *pb = NULL;
    rc = handle_open(&pa, fd, 0, total);
    if (rc != 0) {
        crew__close(fd_b);
        return rc;
    }
    rc = handle_open(&pb, fd_b, 1, total);
    if (rc == 0 && (rc = hold(pa->fd, 0)) == 0)
        rc = hold(pb->fd, 1);
    if (rc != 0) {
        handle_free(pa);
        if (pb)
            handle_free(pb);
        return rc;
    }
    handle_bind(pa, off, cap, max);
    handle_bind(pb, off, cap, max);
    pa->one_way = pb->one_way = o.one_way != 0;
    *a = pa;
    *b = pb;
    return 0;
}

int crew_pipe_dup_fd(crew_pipe *p, int *fd_out)
{
    if (!p || !fd_out)
        return CREW_EINVAL;
    int rc = pipe_enter(p);
    if (rc != 0)
        return rc;
    /* A fresh description whose file offset names the end (0 or 1). No
     * FD_CLOEXEC: it is meant to cross exec. */
    int fd = reopen(p->fd, 0);
    if (fd < 0)
        return fd;
    if (lseek(fd, p->side, SEEK_SET) != p->side) {
        int e = -errno;
        crew__close(fd);
        return e ? e : CREW_EIO;
    }
    /* Hold the end from now on: the fd in flight keeps it open even if
     * this process destroys its handle before the receiver attaches. */
    rc = hold(fd, p->side);
    if (rc != 0) {
        crew__close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Checks that p's header describes exactly the layout create makes (header
 * page, ring 0, ring 1, same geometry, nothing else), reading each value
 * once, and binds p's views to it. 0 or CREW_EPROTO. */
static int attach_rings(crew_pipe *p)
{
    uint8_t *base = (uint8_t *)p->s;
    uint64_t total = rd64(&p->s->total);
    uint64_t off[2] = {rd64(&p->s->ring_off[0]), rd64(&p->s->ring_off[1])};
    /* off[1] is checked against ring 0's size before ring 1 is looked at:
     * only then is it page-aligned (a ring header is 64-byte aligned). */
    if (total != p->map_len || off[0] != PIPE_HDR_BYTES || off[1] <= off[0] || off[1] > total)
        return CREW_EPROTO;
    crew__ring_view r[2];
    if (crew__ring_attach(&r[0], (crew__ring *)(base + off[0]), off[1] - off[0], &p->broken) ||
        off[1] != off[0] + crew__ring_bytes(r[0].cap) ||
        crew__ring_attach(&r[1], (crew__ring *)(base + off[1]), total - off[1], &p->broken) ||
        total != off[1] + crew__ring_bytes(r[1].cap) || r[0].cap != r[1].cap ||
        r[0].max_msg != r[1].max_msg)
        return CREW_EPROTO;
    handle_bind(p, off, r[0].cap, r[0].max_msg);
    return 0;
}

int crew_pipe_attach(crew_pipe **out, int fd)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    size_t size;
    int rc = crew__attach_fd_size(fd, &size);
    if (rc)
        return rc;
    off_t side = lseek(fd, 0, SEEK_CUR);
    /* Unsealed: not made by crew, and whoever handed it over could truncate
     * it under our mapping. */
    if (size < PIPE_HDR_BYTES || (side != 0 && side != 1) || !crew__fd_sealed(fd))
        return CREW_EINVAL;
    /* Share the sender's description (and so its hold): a dup. */
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return -errno;
    crew_pipe *p = NULL;
    rc = handle_open(&p, own, (int)side, size);
    if (rc != 0)
        return rc;
    pipe_shared *s = p->s;
    if (rd64(&s->magic) != PIPE_MAGIC) {
        handle_free(p);
        return CREW_EINVAL;
    }
    uint32_t flags = *(const volatile uint32_t *)&s->flags;
    p->one_way = flags & PIPE_ONE_WAY;
    /* A crew pipe from here on: what is wrong with it is a protocol error,
     * which every holder must hear of. */
    if ((flags & ~PIPE_ONE_WAY) != 0 || (rc = attach_rings(p)) != 0 ||
        atomic_load(&s->broken)) {
        atomic_store_explicit(&s->broken, 1, memory_order_seq_cst);
        handle_free(p);
        return CREW_EPROTO;
    }
    if (atomic_load(&s->closed[p->side])) {
        handle_free(p);
        return CREW_ECLOSED;
    }
    if ((rc = hold(p->fd, p->side)) != 0) {
        handle_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int crew_pipe_destroy(crew_pipe *p)
{
    if (!p)
        return CREW_EINVAL;
    /* Were we the last holder? Drop our references (fd and mapping: both
     * keep the description, and so its lock, alive), then ask through a
     * fresh description, which holds nothing, whether any lock remains. */
    int probe = reopen(p->fd, O_CLOEXEC);
    int side = p->side;
    size_t len = p->map_len;
    /* The rings where this handle checked them, as offsets: the header's
     * own offsets are not read again. */
    crew__ring_view rings[2] = {p->tx, p->rx};
    size_t off[2];
    for (int i = 0; i < 2; i++)
        off[i] = (size_t)((uint8_t *)rings[i].hdr - (uint8_t *)p->s);
    _Atomic bool broken = atomic_load_explicit(&p->broken, memory_order_relaxed);
    handle_free(p);
    if (probe < 0)
        return 0; /* no /proc: the peer finds out by its own probe */
    if (!broken && !held_elsewhere(probe, side)) {
        void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, probe, 0);
        if (addr != MAP_FAILED) {
            for (int i = 0; i < 2; i++) {
                rings[i].hdr = (crew__ring *)((uint8_t *)addr + off[i]);
                rings[i].broken = &broken;
            }
            /* A broken pipe is not closed: its holders get CREW_EPROTO.
             * No wait for the locks: this end has no holder left, so no
             * put of its own is in flight, and what the peer still puts
             * has no reader left to order against the close. */
            (void)end_close(addr, &rings[0], &rings[1], side, 0);
            munmap(addr, len);
        }
    }
    crew__close(probe);
    return 0;
}

int crew_pipe_close(crew_pipe *p)
{
    if (!p)
        return CREW_EINVAL;
    int rc = pipe_enter(p);
    if (rc != 0)
        return rc;
    if (end_close(p->s, &p->tx, &p->rx, p->side, CREW__RING_CLOSE_WAIT) == CREW_EPROTO)
        return pipe_break(p);
    return 0;
}

int crew_pipe_send(crew_pipe *p, const void *msg, size_t len, double timeout)
{
    if (!p || (!msg && len) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    int rc = pipe_enter(p);
    if (rc != 0)
        return rc;
    if (p->one_way && p->side == 0)
        return CREW_EBADF; /* the receive end */
    if (atomic_load_explicit(&p->s->closed[p->side], memory_order_acquire))
        return CREW_ECLOSED;
    crew__ring_peer peer = {peer_gone, p};
    rc = crew__ring_put(&p->tx, msg, len, NULL, NULL, timeout, &peer);
    if (rc == CREW_EPROTO)
        return pipe_break(p);
    if (rc == CREW_EPIPE)
        rc = peer_gone_result(p, rc);
    if (rc == CREW_ECLOSED &&
        !atomic_load_explicit(&p->s->closed[p->side], memory_order_acquire))
        rc = CREW_EPIPE;
    return rc;
}

/* recv, recv_with, and (peek) poll. */
static int pipe_recv(crew_pipe *p, void *buf, size_t bufcap, size_t *len_out,
                     crew_queue_read_fn fn, void *arg, double timeout, bool peek)
{
    int rc = pipe_enter(p);
    if (rc != 0)
        return rc;
    if (p->one_way && p->side == 1)
        return CREW_EBADF; /* the send end */
    if (atomic_load_explicit(&p->s->closed[p->side], memory_order_acquire))
        return CREW_ECLOSED;
    crew__ring_peer peer = {peer_gone, p};
    rc = peek ? crew__ring_peek(&p->rx, len_out, timeout, &peer)
              : crew__ring_get(&p->rx, buf, bufcap, len_out, fn, arg, timeout, &peer);
    if (rc == CREW_EPROTO)
        return pipe_break(p);
    if (rc == CREW_EPIPE)
        rc = peer_gone_result(p, CREW_EOF);
    if (rc == CREW_EOF && atomic_load_explicit(&p->s->closed[p->side], memory_order_acquire))
        rc = CREW_ECLOSED;
    return rc;
}

int crew_pipe_recv(crew_pipe *p, void *buf, size_t bufcap, size_t *len_out, double timeout)
{
    if (!p || (!buf && bufcap) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return pipe_recv(p, buf, bufcap, len_out, NULL, NULL, timeout, false);
}

int crew_pipe_recv_with(crew_pipe *p, crew_queue_read_fn fn, void *arg, double timeout)
{
    if (!p || !fn || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return pipe_recv(p, NULL, 0, NULL, fn, arg, timeout, false);
}

int crew_pipe_poll(crew_pipe *p, size_t *len_out, double timeout)
{
    if (!p || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return pipe_recv(p, NULL, 0, len_out, NULL, NULL, timeout, true);
}

int crew_pipe_one_way(crew_pipe *p)
{
    if (!p)
        return CREW_EINVAL;
    int rc = pipe_enter(p);
    return rc ? rc : p->one_way;
}
