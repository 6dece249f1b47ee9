/*
 * notify.c -- the completion list of a pool (crew_future_notify,
 * crew_pool_fd, crew_pool_completions).
 *
 * DESIGN
 *
 * A future marked with crew_future_notify is appended, once done, to its
 * pool's list (p->notify_head/tail, linked through f->ext->notify_next) by
 * the thread that completed it; crew_pool_completions pops from the front.
 * Everything is under p->notify_lock, a leaf lock (nothing else is taken
 * while it is held). The eventfd is created on the first crew_pool_fd and
 * is readable while the list is non-empty: a completer that adds to the
 * list writes it unless it is signalled already, crew_pool_completions
 * reads it (drains it) when it empties the list, and crew_pool_fd signals
 * a new fd at once if futures are already listed. A marked future whose
 * handle is destroyed before it is popped is unlinked when it is freed
 * (future.c); one destroyed before it is done is never listed.
 */
#include "pool/pool_core.h"

#include <sys/eventfd.h>
#include <unistd.h>

void crew__notify_enqueue(crew_pool *p, crew_future *f)
{
    crew__future_ext *x = atomic_load_explicit(&f->ext, memory_order_acquire);
    pthread_mutex_lock(&p->notify_lock);
    x->notify_next = NULL;
    if (p->notify_tail)
        atomic_load_explicit(&p->notify_tail->ext, memory_order_relaxed)->notify_next = f;
    else
        p->notify_head = f;
    p->notify_tail = f;
    if (!p->notify_signalled && p->notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t w;
        do
            w = write(p->notify_fd, &one, sizeof one);
        while (w < 0 && errno == EINTR);
        p->notify_signalled = 1;
    }
    pthread_mutex_unlock(&p->notify_lock);
}

void crew__notify_unlink(crew_future *f)
{
    crew_pool *p = f->pool;
    pthread_mutex_lock(&p->notify_lock);
    crew_future *prev = NULL;
    for (crew_future *g = p->notify_head; g;
         prev = g, g = atomic_load_explicit(&g->ext, memory_order_relaxed)->notify_next) {
        if (g != f)
            continue;
        crew_future *next = atomic_load_explicit(&f->ext, memory_order_relaxed)->notify_next;
        if (prev)
            atomic_load_explicit(&prev->ext, memory_order_relaxed)->notify_next = next;
        else
            p->notify_head = next;
        if (p->notify_tail == f)
            p->notify_tail = prev;
        break;
    }
    pthread_mutex_unlock(&p->notify_lock);
}

int crew_pool_fd(crew_pool *p)
{
    if (!p)
        return CREW_EINVAL;
    pthread_mutex_lock(&p->notify_lock);
    int rc = p->notify_fd;
    if (rc < 0 && atomic_load(&p->life) == CREW__POOL_LIVE) {
        rc = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (rc < 0) {
            rc = -errno;
        } else {
            p->notify_fd = rc;
            if (p->notify_head) {
                uint64_t one = 1;
                ssize_t w;
                do
                    w = write(rc, &one, sizeof one);
                while (w < 0 && errno == EINTR);
                p->notify_signalled = 1;
            }
        }
    } else if (rc < 0) {
        rc = CREW_ESHUTDOWN;
    }
    pthread_mutex_unlock(&p->notify_lock);
    return rc;
}

int crew_pool_completions(crew_pool *p, crew_future **out, size_t max, size_t *n)
{
    if (!p || !n || (!out && max))
        return CREW_EINVAL;
    size_t k = 0;
    pthread_mutex_lock(&p->notify_lock);
    while (k < max && p->notify_head) {
        crew_future *f = p->notify_head;
        p->notify_head = atomic_load_explicit(&f->ext, memory_order_relaxed)->notify_next;
        if (!p->notify_head)
            p->notify_tail = NULL;
        out[k++] = f;
    }
    if (!p->notify_head && p->notify_signalled && p->notify_fd >= 0) {
        uint64_t v;
        ssize_t r;
        do
            r = read(p->notify_fd, &v, sizeof v);
        while (r < 0 && errno == EINTR);
        p->notify_signalled = 0;
    }
    pthread_mutex_unlock(&p->notify_lock);
    *n = k;
    return 0;
}
