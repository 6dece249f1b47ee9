/*
 * pipe.c -- crew_pipe: a duplex message channel made of two rings.
 *
 * DESIGN
 *
 * Layout. One memfd: a page of pipe header (magic, a random id, and per end
 * a `closed` flag and up to 16 holder pids), then ring 0, then ring 1 (the
 * rings of queue.c; see its DESIGN comment for their protocol, wake-ups and
 * crash argument). End i sends on ring i and receives on ring 1-i. A handle
 * is one end as seen by one process: its own mapping and its own fd.
 *
 * Holders. An end is held by processes, like a file descriptor: create
 * records the creator as holder of both ends; a pthread_atfork child handler
 * adds the child's pid to every end the process has a handle for (so a
 * forked child holds what its parent held, exactly as with inherited fds);
 * attach adds the attaching pid; destroy removes this pid unless another
 * handle of this process still names the same end. Slots are claimed and
 * freed with CAS, so concurrent holders never lose each other's entries.
 *
 * Closing. An end is closed (its `closed` flag, then both rings closed) by
 * crew_pipe_close, by the destroy that removes its last holder, or by the
 * peer that finds every holder dead. Closing both rings is what the peer
 * sees: its receive ring drains then says EOF, its send ring says ECLOSED,
 * reported as CREW_EPIPE.
 *
 * Peer death. Nothing in the kernel tells shared memory that a process
 * died, so a waiting call checks: after its spin, and then between sleep
 * slices (1 ms doubling to 100 ms), it asks whether the peer end is closed
 * or all its holders are dead (crew__task_alive: gone or zombie). A waiter
 * that finds the peer gone looks at the ring once more (the peer may have
 * sent just before dying), then returns EOF / EPIPE and marks the peer end
 * closed so later calls see it at once. A process dying never corrupts a
 * ring (queue.c's argument); a holder slot of a dead process is reclaimed
 * when a slot is needed.
 *
 * Registry. The handles of this process are linked in a list under a
 * mutex, for the atfork handler; the mutex is taken in the prepare handler
 * so the child never inherits it locked by a thread that does not exist.
 */
#include "ring.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIPE_MAGIC 0x3165706977657263ull /* "crewpie1" */
#define PIPE_HOLDERS 16
#define PIPE_HDR_BYTES 4096u

typedef struct pipe_end_shared {
    _Atomic uint32_t closed;
    _Atomic uint32_t holders[PIPE_HOLDERS];
} pipe_end_shared;

typedef struct pipe_shared {
    uint64_t magic;
    uint64_t id; /* tells two handles of one pipe apart from other pipes */
    uint64_t total;
    uint64_t ring_off[2];
    alignas(CREW_CACHELINE) pipe_end_shared end[2];
} pipe_shared;

_Static_assert(sizeof(pipe_shared) <= PIPE_HDR_BYTES, "pipe header fits its page");

struct crew_pipe {
    pipe_shared *s;
    size_t map_len;
    int fd;
    int side;
    crew__ring *tx, *rx;
    struct crew_pipe *prev, *next; /* registry */
};

/* ------------------------------------------------------------ registry */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static crew_pipe *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static int holder_add(pipe_shared *s, int side, uint32_t pid);

static void reg_prepare(void) { pthread_mutex_lock(&reg_lock); }
static void reg_parent(void) { pthread_mutex_unlock(&reg_lock); }
static void reg_child(void)
{
    uint32_t me = (uint32_t)getpid();
    for (crew_pipe *p = reg_head; p; p = p->next)
        (void)holder_add(p->s, p->side, me); /* full: this child is not tracked */
    pthread_mutex_unlock(&reg_lock);
}
static void reg_init(void) { pthread_atfork(reg_prepare, reg_parent, reg_child); }

static void reg_insert(crew_pipe *p)
{
    pthread_once(&reg_once, reg_init);
    pthread_mutex_lock(&reg_lock);
    p->prev = NULL;
    p->next = reg_head;
    if (reg_head)
        reg_head->prev = p;
    reg_head = p;
    pthread_mutex_unlock(&reg_lock);
}

/* Unlinks p; returns true if another handle of this process names the same
 * end. */
static bool reg_remove(crew_pipe *p)
{
    pthread_mutex_lock(&reg_lock);
    if (p->prev)
        p->prev->next = p->next;
    else
        reg_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    bool other = false;
    for (crew_pipe *o = reg_head; o; o = o->next)
        if (o->s->id == p->s->id && o->side == p->side)
            other = true;
    pthread_mutex_unlock(&reg_lock);
    return other;
}

/* ------------------------------------------------------------ holders */
static void holders_sweep(pipe_end_shared *e)
{
    for (int i = 0; i < PIPE_HOLDERS; i++) {
        uint32_t pid = atomic_load_explicit(&e->holders[i], memory_order_acquire);
        if (pid && !crew__task_alive(pid))
            atomic_compare_exchange_strong(&e->holders[i], &pid, 0);
    }
}

static int holder_add(pipe_shared *s, int side, uint32_t pid)
{
    pipe_end_shared *e = &s->end[side];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < PIPE_HOLDERS; i++)
            if (atomic_load_explicit(&e->holders[i], memory_order_acquire) == pid)
                return 0;
        for (int i = 0; i < PIPE_HOLDERS; i++) {
            uint32_t zero = 0;
            if (atomic_compare_exchange_strong(&e->holders[i], &zero, pid))
                return 0;
        }
        holders_sweep(e);
    }
    return CREW_ENOSPC;
}

/* Removes pid; returns true if no holder is left. */
static bool holder_remove(pipe_shared *s, int side, uint32_t pid)
{
    pipe_end_shared *e = &s->end[side];
    bool left = false;
    for (int i = 0; i < PIPE_HOLDERS; i++) {
        uint32_t cur = pid;
        if (!atomic_compare_exchange_strong(&e->holders[i], &cur, 0) && cur != 0)
            left = true;
    }
    return !left;
}

static void end_close(pipe_shared *s, crew__ring *r0, crew__ring *r1, int side)
{
    atomic_store_explicit(&s->end[side].closed, 1, memory_order_seq_cst);
    crew__ring_close(r0);
    crew__ring_close(r1);
}

/* The peer probe for ring waits: is the other end closed or unheld? */
static bool peer_gone(void *ctx)
{
    crew_pipe *p = ctx;
    pipe_end_shared *e = &p->s->end[1 - p->side];
    if (atomic_load_explicit(&e->closed, memory_order_acquire))
        return true;
    for (int i = 0; i < PIPE_HOLDERS; i++) {
        uint32_t pid = atomic_load_explicit(&e->holders[i], memory_order_acquire);
        if (pid && crew__task_alive(pid))
            return false;
    }
    return true;
}

static void mark_peer_closed(crew_pipe *p)
{
    end_close(p->s, p->tx, p->rx, 1 - p->side);
}

/* ------------------------------------------------------------ handles */

static int handle_map(crew_pipe **out, int fd, int side, size_t len, bool own_fd)
{
    crew_pipe *p = crew__calloc(1, sizeof *p);
    if (!p)
        return CREW_ENOMEM;
    void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
        int e = -errno;
        crew__free(p);
        return e;
    }
    p->fd = own_fd ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (p->fd < 0) {
        int e = -errno;
        munmap(addr, len);
        crew__free(p);
        return e;
    }
    p->s = addr;
    p->map_len = len;
    p->side = side;
    *out = p;
    return 0;
}

static void handle_bind(crew_pipe *p)
{
    uint8_t *base = (uint8_t *)p->s;
    crew__ring *r[2] = {(crew__ring *)(base + p->s->ring_off[0]),
                        (crew__ring *)(base + p->s->ring_off[1])};
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
    s->ring_off[0] = PIPE_HDR_BYTES;
    s->ring_off[1] = PIPE_HDR_BYTES + rb;
    crew__ring_init((crew__ring *)((uint8_t *)s + s->ring_off[0]), cap, max);
    crew__ring_init((crew__ring *)((uint8_t *)s + s->ring_off[1]), cap, max);
    s->id = ((uint64_t)crew__pid() << 32) ^ crew__now_ns() ^ (uint64_t)(uintptr_t)addr;
    uint32_t me = crew__pid();
    atomic_store(&s->end[0].holders[0], me);
    atomic_store(&s->end[1].holders[0], me);
    s->magic = PIPE_MAGIC;
    munmap(addr, total); /* each handle maps for itself */

    crew_pipe *pa = NULL, *pb = NULL;
    rc = handle_map(&pa, fd, 0, total, true);
    if (rc == 0)
        rc = handle_map(&pb, fd, 1, total, false);
    if (rc != 0) {
        if (pa)
            handle_free(pa);
        else
            crew__close(fd);
        return rc;
    }
    handle_bind(pa);
    handle_bind(pb);
    reg_insert(pa);
    reg_insert(pb);
    *a = pa;
    *b = pb;
    return 0;
}

int crew_pipe_fd(crew_pipe *p, int *fd_out)
{
    if (!p || !fd_out)
        return CREW_EINVAL;
    /* A fresh open file description (not a dup) whose file offset names
     * the end: 0 or 1. Reopening a memfd through /proc gives exactly that. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p->fd);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -errno;
    if (lseek(fd, p->side, SEEK_SET) != p->side) {
        int e = -errno;
        crew__close(fd);
        return e ? e : CREW_EIO;
    }
    *fd_out = fd;
    return 0;
}

int crew_pipe_attach(crew_pipe **out, int fd)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    if (fd < 0)
        return CREW_EBADF;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    off_t side = lseek(fd, 0, SEEK_CUR);
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)PIPE_HDR_BYTES || (side != 0 && side != 1))
        return CREW_EINVAL;
    crew_pipe *p;
    int rc = handle_map(&p, fd, (int)side, (size_t)st.st_size, false);
    if (rc != 0)
        return rc;
    pipe_shared *s = p->s;
    bool ok = s->magic == PIPE_MAGIC && s->total == p->map_len;
    for (int i = 0; ok && i < 2; i++)
        ok = s->ring_off[i] >= PIPE_HDR_BYTES && s->ring_off[i] < p->map_len &&
             crew__ring_valid((crew__ring *)((uint8_t *)s + s->ring_off[i]),
                              p->map_len - s->ring_off[i]);
    if (!ok) {
        handle_free(p);
        return CREW_EINVAL;
    }
    handle_bind(p);
    if (atomic_load(&s->end[p->side].closed)) {
        handle_free(p);
        return CREW_ECLOSED;
    }
    rc = holder_add(s, p->side, crew__pid());
    if (rc != 0) {
        handle_free(p);
        return rc;
    }
    reg_insert(p);
    *out = p;
    return 0;
}

int crew_pipe_destroy(crew_pipe *p)
{
    if (!p)
        return CREW_EINVAL;
    bool other = reg_remove(p);
    if (!other && holder_remove(p->s, p->side, crew__pid()))
        end_close(p->s, p->tx, p->rx, p->side);
    handle_free(p);
    return 0;
}

int crew_pipe_close(crew_pipe *p)
{
    if (!p)
        return CREW_EINVAL;
    end_close(p->s, p->tx, p->rx, p->side);
    return 0;
}

int crew_pipe_send(crew_pipe *p, const void *msg, size_t len, double timeout)
{
    if (!p || (!msg && len))
        return CREW_EINVAL;
    if (atomic_load_explicit(&p->s->end[p->side].closed, memory_order_acquire))
        return CREW_ECLOSED;
    crew__ring_peer peer = {peer_gone, p};
    int rc = crew__ring_put(p->tx, msg, len, NULL, NULL, timeout, &peer);
    if (rc == CREW_EPIPE)
        mark_peer_closed(p);
    if (rc == CREW_ECLOSED &&
        !atomic_load_explicit(&p->s->end[p->side].closed, memory_order_acquire))
        rc = CREW_EPIPE;
    return rc;
}

static int pipe_recv(crew_pipe *p, void *buf, size_t bufcap, size_t *len_out,
                     crew_queue_read_fn fn, void *arg, double timeout)
{
    if (atomic_load_explicit(&p->s->end[p->side].closed, memory_order_acquire))
        return CREW_ECLOSED;
    crew__ring_peer peer = {peer_gone, p};
    int rc = crew__ring_get(p->rx, buf, bufcap, len_out, fn, arg, timeout, &peer);
    if (rc == CREW_EPIPE) {
        mark_peer_closed(p);
        rc = CREW_EOF;
    }
    if (rc == CREW_EOF && atomic_load_explicit(&p->s->end[p->side].closed, memory_order_acquire))
        rc = CREW_ECLOSED;
    return rc;
}

int crew_pipe_recv(crew_pipe *p, void *buf, size_t bufcap, size_t *len_out, double timeout)
{
    if (!p || (!buf && bufcap))
        return CREW_EINVAL;
    return pipe_recv(p, buf, bufcap, len_out, NULL, NULL, timeout);
}

int crew_pipe_recv_with(crew_pipe *p, crew_queue_read_fn fn, void *arg, double timeout)
{
    if (!p || !fn)
        return CREW_EINVAL;
    return pipe_recv(p, NULL, 0, NULL, fn, arg, timeout);
}
