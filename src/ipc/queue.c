/*
 * queue.c -- crew_queue: one shared-memory ring (ring.c) in a sealed memfd
 * of its own.
 *
 * DESIGN
 * A queue handle is {ring view, mapping, memfd}. Everything about the
 * shared memory -- layout, locks, wake-ups, what a dead or a hostile peer
 * can do -- is the ring's (ring.c); this file makes and attaches the memfd,
 * checks each call's arguments and hands it to the ring. The handle's
 * `broken` flag is the ring view's local one: once this process has seen
 * the queue broken, a peer clearing the shared flag does not make it
 * usable again for us. A handle may be used by any number of threads at
 * once; destroy must not race other calls on the same handle.
 */
#include "ipc/ring.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------ crew_queue */

struct crew_queue {
    crew__ring_view v;
    size_t map_len;
    int fd;
    _Atomic bool broken; /* this handle has seen the queue broken (v.broken) */
};

int crew_queue_create(crew_queue **out, const crew_queue_options *opts)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    crew_queue_options o = {0};
    if (opts)
        o = *opts;
    uint64_t cap, max;
    int rc = crew__ring_geometry(o.capacity, o.max_message, &cap, &max);
    if (rc != 0)
        return rc;
    crew_queue *q = crew__calloc(1, sizeof *q);
    if (!q)
        return CREW_ENOMEM;
    q->map_len = crew__ring_bytes(cap);
    void *addr;
    rc = crew__memfd_map("crew-queue", q->map_len, &q->fd, &addr);
    if (rc != 0) {
        crew__free(q);
        return rc;
    }
    crew__ring_init(&q->v, addr, cap, max, o.joinable ? CREW__RING_JOINABLE : 0, &q->broken);
    *out = q;
    return 0;
}

int crew_queue_attach(crew_queue **out, int fd)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    size_t size;
    int rc = crew__attach_fd_size(fd, &size);
    if (rc)
        return rc;
    /* An unsealed fd is not one crew made, and whoever handed it over could
     * truncate it under our mapping. */
    if (size < CREW__RING_DATA_OFF || !crew__fd_sealed(fd))
        return CREW_EINVAL;
    crew_queue *q = crew__calloc(1, sizeof *q);
    if (!q)
        return CREW_ENOMEM;
    q->map_len = size;
    void *addr = mmap(NULL, q->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
        int e = -errno;
        crew__free(q);
        return e;
    }
    rc = crew__ring_attach(&q->v, addr, q->map_len, &q->broken);
    if (rc != 0) {
        munmap(addr, q->map_len);
        crew__free(q);
        return rc;
    }
    q->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (q->fd < 0) {
        int e = -errno;
        munmap(addr, q->map_len);
        crew__free(q);
        return e;
    }
    *out = q;
    return 0;
}

int crew_queue_dup_fd(crew_queue *q, int *fd_out)
{
    if (!q || !fd_out)
        return CREW_EINVAL;
    int rc = crew__ring_check(&q->v);
    if (rc != 0)
        return rc;
    int fd = fcntl(q->fd, F_DUPFD, 0); /* no FD_CLOEXEC: meant to cross exec */
    if (fd < 0)
        return -errno;
    *fd_out = fd;
    return 0;
}

int crew_queue_destroy(crew_queue *q)
{
    if (!q)
        return CREW_EINVAL;
    munmap(q->v.hdr, q->map_len);
    crew__close(q->fd);
    crew__free(q);
    return 0;
}

int crew_queue_put(crew_queue *q, const void *msg, size_t len, double timeout)
{
    if (!q || (!msg && len) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return crew__ring_put(&q->v, msg, len, NULL, NULL, timeout, NULL);
}

int crew_queue_try_put(crew_queue *q, const void *msg, size_t len)
{
    return crew_queue_put(q, msg, len, 0);
}

int crew_queue_put_with(crew_queue *q, size_t len, crew_queue_fill_fn fill, void *arg,
                        double timeout)
{
    if (!q || !fill || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return crew__ring_put(&q->v, NULL, len, fill, arg, timeout, NULL);
}

int crew_queue_get(crew_queue *q, void *buf, size_t cap, size_t *len_out, double timeout)
{
    if (!q || (!buf && cap) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return crew__ring_get(&q->v, buf, cap, len_out, NULL, NULL, timeout, NULL);
}

int crew_queue_try_get(crew_queue *q, void *buf, size_t cap, size_t *len_out)
{
    return crew_queue_get(q, buf, cap, len_out, 0);
}

int crew_queue_get_with(crew_queue *q, crew_queue_read_fn fn, void *arg, double timeout)
{
    if (!q || !fn || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return crew__ring_get(&q->v, NULL, 0, NULL, fn, arg, timeout, NULL);
}

int crew_queue_close(crew_queue *q)
{
    if (!q)
        return CREW_EINVAL;
    return crew__ring_close(&q->v, CREW__RING_CLOSE_WAIT);
}

int crew_queue_status_get(crew_queue *q, crew_queue_status *out)
{
    if (!q || !out)
        return CREW_EINVAL;
    memset(out, 0, sizeof *out);
    uint64_t used;
    bool closed;
    int rc = crew__ring_status(&q->v, &used, &closed, &out->recoveries);
    if (rc != 0)
        return rc;
    out->capacity = (size_t)q->v.cap;
    out->max_message = (size_t)q->v.max_msg;
    out->used = (size_t)used;
    out->closed = closed;
    return 0;
}

int crew_queue_close_now(crew_queue *q, size_t *dropped)
{
    if (!q)
        return CREW_EINVAL;
    uint64_t n = 0;
    int rc = crew__ring_close_drop(&q->v, CREW__RING_CLOSE_WAIT, &n);
    if (dropped)
        *dropped = (size_t)n;
    return rc;
}

int crew_queue_task_done(crew_queue *q)
{
    return q ? crew__ring_task_done(&q->v) : CREW_EINVAL;
}

int crew_queue_join(crew_queue *q, double timeout)
{
    if (!q || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    return crew__ring_join(&q->v, timeout);
}

int crew_queue_counts_get(crew_queue *q, size_t *messages, size_t *unfinished)
{
    if (!q)
        return CREW_EINVAL;
    uint64_t m, u;
    int rc = crew__ring_counts(&q->v, &m, &u);
    if (rc != 0)
        return rc;
    if (messages)
        *messages = (size_t)m;
    if (unfinished)
        *unfinished = (size_t)u;
    return 0;
}

/* Python's empty() and full(), from the byte counts: full means not even a
 * message of 0 bytes (one 8-byte record) fits now. */
static int queue_used(crew_queue *q, uint64_t *used)
{
    if (!q)
        return CREW_EINVAL;
    bool closed;
    unsigned rec;
    return crew__ring_status(&q->v, used, &closed, &rec);
}

int crew_queue_empty(crew_queue *q)
{
    uint64_t used;
    int rc = queue_used(q, &used);
    return rc ? rc : used == 0;
}

int crew_queue_full(crew_queue *q)
{
    uint64_t used;
    int rc = queue_used(q, &used);
    return rc ? rc : used + CREW__RING_HDR > q->v.cap;
}

int crew_queue_joinable(crew_queue *q)
{
    if (!q)
        return CREW_EINVAL;
    int rc = crew__ring_check(&q->v);
    return rc ? rc : (q->v.flags & CREW__RING_JOINABLE) != 0;
}
