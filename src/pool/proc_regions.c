/*
 * proc_regions.c -- the process pool's table of crew_shm regions: zero-copy
 * task arguments (crew_pool_submit_shm) and map records that stay in a
 * region instead of being copied through the slots. Interface:
 * proc_internal.h; the worker's side is in proc_worker.c.
 *
 * DESIGN
 *
 * A task submitted with crew_pool_submit_shm (slot kind SHM) or a map chunk
 * whose records lie in a crew_shm region carries (table index + 1,
 * generation, offset) instead of bytes. The pool's table b->regs[REG_MAX]
 * (under lk) holds per entry the memfd identity, a dup of its fd, the
 * generation and a reference count (++ under lk at submit, -- when the slot
 * is released, the overflow future completed or the map finished);
 * h->reg_gen[] mirrors the generations for workers.
 *
 * Each worker has an AF_UNIX SEQPACKET socket to the monitor (its end
 * passed at start like the memfd). A worker meeting an (index, gen) it has
 * not mapped sends it and blocks for the answer: the monitor
 * (crew__procs_serve_regions) replies, under lk, with the fd (SCM_RIGHTS)
 * -- the entry cannot be evicted while a task references it. The worker
 * maps it (crew__shm_adopt), caches it by index and drops an older
 * generation there.
 *
 * A new region first evicts entries whose last handle in this process is
 * destroyed, then (table full) the least recently registered one with no
 * reference; none: CREW_EAGAIN (submit_shm) or a copy (map). Eviction
 * clears h->reg_gen[i] and bumps h->reg_epoch; idle workers with mappings
 * check the epoch before parking and unmap stale entries.
 *
 * Regions add nothing to the no-region hot path: the dispatcher branches
 * on f->backend[1] >> 32, the worker on the slot kind. Limit: generations
 * are 24 bits per index, so a worker that keeps a stale mapping of index i
 * (it never went idle and never ran a task of index i meanwhile) would take
 * a new region for the old one only after 2^24 re-registrations of that
 * same index -- about 10^9 regions spread over the 64 entries; accepted,
 * not guarded.
 *
 * Threads: submitters (register, under lk), harvesters of any thread
 * (unref, atomic), the monitor (serve, under lk). A worker that dies while
 * waiting for an answer simply dies (its task fails as any other); a
 * replacement asks again.
 */
#include "pool/proc_internal.h"

#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

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
int crew__procs_reg_get_locked(pb *b, const crew__shm_info *si, uint32_t *idx, uint32_t *gen)
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

/* Drops a reference taken by crew__procs_reg_get_locked (any thread, lk or not). */
void crew__procs_reg_unref(pb *b, uint32_t idx)
{
    uint32_t prev = atomic_fetch_sub_explicit(&b->regs[idx].refs, 1, memory_order_acq_rel);
    CREW__ASSERT(prev > 0);
}

/* A future leaves the backend without a slot (cancelled or failed in the
 * overflow FIFO): drop its region reference first. */
void crew__procs_future_unref_region(pb *b, const crew_future *f)
{
    uint32_t r = fback_reg(f);
    if (r)
        crew__procs_reg_unref(b, r - 1);
}

/* Map records that lie in a live region travel in place: registers the
 * region for pm's side (under lk). Falls back to copying (returns without
 * setting *reg) when the region is not usable or the table is full. */
void crew__procs_map_side_locked(pb *b, crew_shm *region, const void *p, uint32_t *reg,
                                 uint32_t *gen, size_t *base)
{
    crew__shm_info si;
    if (!region || crew__shm_info_of(region, &si) != 0)
        return;
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)si.base;
    if (a < lo || a - lo >= si.size)
        return;
    uint32_t idx, g;
    if (crew__procs_reg_get_locked(b, &si, &idx, &g) != 0)
        return;
    *reg = idx + 1;
    *gen = g;
    *base = a - lo;
}

/* Monitor: answers the region requests of worker w. The fd is sent under
 * lk so that it cannot be evicted (closed) meanwhile; the socket never
 * holds more than one request and one answer, so send does not block. */
void crew__procs_serve_regions(pb *b, int w)
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
            /* The worker is gone (its pidfd says so too): stop listening.
             * A failed DEL costs nothing lasting: on_death closes the
             * socket, which takes it out of the set anyway. */
            (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, sock, NULL);
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

