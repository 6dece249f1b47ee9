/*
 * shm.c -- crew_shm regions, the allocator inside them, Value and Array.
 *
 * DESIGN
 * A region is a memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING) sized once and sealed
 * with F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL: its size is fixed for
 * every process that maps it, so no peer can truncate it under another's
 * feet (which would turn accesses into SIGBUS). crew_shm_attach accepts only
 * fds carrying exactly those seals. Nothing has a name in any filesystem.
 *
 * Heap regions start with a heap_hdr {magic, crew_lock, free-list head};
 * blocks are {size, next-free} headers followed by user bytes, all offsets
 * from the region's start (mappings differ per process). The free list is
 * sorted by offset; alloc is first fit with splitting, free coalesces with
 * both neighbours. Every change is ordered so that one store publishes it and
 * a process killed between two stores leaves a consistent list that at worst
 * has lost the block in hand (see alloc/free). A waiter that gets
 * CREW_EOWNERDEAD from the heap lock marks it consistent and goes on, which
 * is safe by that ordering. Lock order: only the one heap lock.
 *
 * Arrays live in a region of their own: an array_hdr {magic, type, sizes,
 * crew_lock} on the first cache line, elements from byte 64.
 *
 * Registry (shm_internal.h). Every live handle of this process is listed in
 * a small array under reg_lock (a leaf lock: nothing else is taken under it),
 * with a relaxed count beside it so that "is any region live?" -- asked by
 * every map submit -- costs one load when none is. The pool uses it to find
 * the region a map's records lie in and to duplicate a region's fd for its
 * workers. A pthread_atfork handler holds reg_lock across fork, so a fork
 * child never inherits it locked. A handle destroyed while the pool looks at
 * it is safe: lookups copy what they need under the lock.
 */
#include "ipc/shm_internal.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEAP_MAGIC 0x43524548u /* "CREH" */
#define ARRAY_MAGIC 0x43524541u /* "CREA" */
#define ALIGN 16u

struct crew_shm {
    void *base;
    size_t size;
    int fd;
    uint64_t dev, ino;
};

/* ------------------------------------------------------------ registry */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static crew_shm **reg_v;      /* under reg_lock */
static size_t reg_cap;
static _Atomic size_t reg_n;  /* written under reg_lock, read relaxed outside */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_prepare(void) { pthread_mutex_lock(&reg_lock); }
static void reg_release(void) { pthread_mutex_unlock(&reg_lock); }
static void reg_init(void) { pthread_atfork(reg_prepare, reg_release, reg_release); }

static int reg_add(crew_shm *s)
{
    pthread_once(&reg_once, reg_init);
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&reg_n, memory_order_relaxed);
    if (n == reg_cap) {
        size_t cap = reg_cap ? reg_cap * 2 : 16;
        crew_shm **v = crew__realloc(reg_v, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&reg_lock);
            return CREW_ENOMEM;
        }
        reg_v = v;
        reg_cap = cap;
    }
    reg_v[n] = s;
    atomic_store_explicit(&reg_n, n + 1, memory_order_relaxed);
    pthread_mutex_unlock(&reg_lock);
    return 0;
}

static void reg_remove(crew_shm *s)
{
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&reg_n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (reg_v[i] == s) {
            reg_v[i] = reg_v[n - 1];
            atomic_store_explicit(&reg_n, n - 1, memory_order_relaxed);
            break;
        }
    if (n == 1 && atomic_load_explicit(&reg_n, memory_order_relaxed) == 0) {
        crew__free(reg_v);
        reg_v = NULL;
        reg_cap = 0;
    }
    pthread_mutex_unlock(&reg_lock);
}

bool crew__shm_any(void) { return atomic_load_explicit(&reg_n, memory_order_relaxed) != 0; }

crew_shm *crew__shm_find(const void *p, size_t len)
{
    if (!crew__shm_any() || !p || len == 0)
        return NULL;
    uintptr_t a = (uintptr_t)p;
    if (a + len < a)
        return NULL;
    crew_shm *found = NULL;
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&reg_n, memory_order_relaxed);
    for (size_t i = 0; i < n && !found; i++) {
        uintptr_t b = (uintptr_t)reg_v[i]->base;
        if (a >= b && a - b <= reg_v[i]->size && len <= reg_v[i]->size - (a - b))
            found = reg_v[i];
    }
    pthread_mutex_unlock(&reg_lock);
    return found;
}

int crew__shm_info_of(const crew_shm *s, crew__shm_info *out)
{
    int rc = CREW_EINVAL;
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&reg_n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (reg_v[i] == s) {
            out->handle = reg_v[i];
            out->base = s->base;
            out->size = s->size;
            out->dev = s->dev;
            out->ino = s->ino;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

/* A live handle of the memfd (dev, ino), or NULL (under reg_lock). */
static crew_shm *find_ino_locked(uint64_t dev, uint64_t ino)
{
    size_t n = atomic_load_explicit(&reg_n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (reg_v[i]->dev == dev && reg_v[i]->ino == ino)
            return reg_v[i];
    return NULL;
}

bool crew__shm_ino_live(uint64_t dev, uint64_t ino)
{
    pthread_mutex_lock(&reg_lock);
    bool live = find_ino_locked(dev, ino) != NULL;
    pthread_mutex_unlock(&reg_lock);
    return live;
}

int crew__shm_dup_fd(uint64_t dev, uint64_t ino)
{
    int rc = CREW_ENOENT;
    pthread_mutex_lock(&reg_lock);
    crew_shm *s = find_ino_locked(dev, ino);
    if (s) {
        rc = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
        if (rc < 0)
            rc = -errno;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

/* ------------------------------------------------------------ regions */

static size_t page_round(size_t n, bool *overflow)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    if (n > SIZE_MAX - pg) {
        *overflow = true;
        return 0;
    }
    return (n + pg - 1) / pg * pg;
}

static int map_fd(crew_shm **out, int fd, size_t size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    crew_shm *s = crew__calloc(1, sizeof *s);
    if (!s)
        return CREW_ENOMEM;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        crew__free(s);
        return e;
    }
    s->base = p;
    s->size = size;
    s->fd = fd;
    s->dev = (uint64_t)st.st_dev;
    s->ino = (uint64_t)st.st_ino;
    int rc = reg_add(s);
    if (rc) {
        munmap(p, size);
        crew__free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int crew__shm_adopt(crew_shm **out, int fd, size_t size)
{
    *out = NULL;
    return map_fd(out, fd, size);
}

static int heap_init(crew_shm *s);

int crew_shm_create(crew_shm **out, size_t size, const crew_shm_options *opts)
{
    if (!out || size == 0)
        return CREW_EINVAL;
    *out = NULL;
    bool ovf = false;
    size_t rounded = page_round(size, &ovf);
    if (ovf || rounded > (size_t)INT64_MAX)
        return CREW_EOVERFLOW;
    if (opts && opts->heap && rounded < 4096)
        return CREW_EINVAL;
    int fd = crew__memfd_sealed(opts && opts->name ? opts->name : "crew-shm", rounded);
    if (fd < 0)
        return fd;
    int rc = map_fd(out, fd, rounded);
    if (rc) {
        crew__close(fd);
        return rc;
    }
    if (opts && opts->heap)
        heap_init(*out);
    return 0;
}

int crew_shm_attach(crew_shm **out, int fd)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    size_t size;
    int rc = crew__attach_fd_size(fd, &size);
    if (rc)
        return rc;
    if (!crew__fd_sealed(fd) || size == 0)
        return CREW_EINVAL;
    int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dupfd < 0)
        return -errno;
    rc = map_fd(out, dupfd, size);
    if (rc)
        crew__close(dupfd);
    return rc;
}

void *crew_shm_ptr(const crew_shm *s) { return s ? s->base : NULL; }
size_t crew_shm_size(const crew_shm *s) { return s ? s->size : 0; }
int crew_shm_fd(const crew_shm *s) { return s ? s->fd : CREW_EINVAL; }

int crew_shm_offset(const crew_shm *s, const void *p, size_t *off)
{
    if (!s || !off)
        return CREW_EINVAL;
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)s->base;
    if (a < b || a - b >= s->size)
        return CREW_ERANGE;
    *off = a - b;
    return 0;
}

void *crew_shm_at(const crew_shm *s, size_t off)
{
    if (!s || off >= s->size)
        return NULL;
    return (char *)s->base + off;
}

int crew_shm_destroy(crew_shm *s)
{
    if (!s)
        return CREW_EINVAL;
    reg_remove(s);
    munmap(s->base, s->size);
    crew__close(s->fd);
    crew__free(s);
    return 0;
}

/* ------------------------------------------------------------ heap */

typedef struct heap_hdr {
    uint32_t magic;
    uint32_t pad_;
    crew_lock lock;
    _Atomic uint64_t free_head; /* offset of the first free block, 0 = none */
    uint64_t size;              /* region size when initialised */
} heap_hdr;

typedef struct block {
    _Atomic uint64_t size; /* whole block, header included; low bit: in use */
    _Atomic uint64_t next; /* next free block (free blocks only) */
} block;

#define HEAP_FIRST ((sizeof(heap_hdr) + ALIGN - 1) / ALIGN * ALIGN)
#define BLOCK_HDR sizeof(block)
#define USED 1u

static block *blk(crew_shm *s, uint64_t off) { return (block *)(void *)((char *)s->base + off); }

static int heap_init(crew_shm *s)
{
    heap_hdr *h = s->base;
    crew_lock_init(&h->lock);
    h->size = s->size;
    uint64_t first = HEAP_FIRST;
    block *b = blk(s, first);
    atomic_store_explicit(&b->size, (s->size - first) & ~(uint64_t)(ALIGN - 1), memory_order_relaxed);
    atomic_store_explicit(&b->next, 0, memory_order_relaxed);
    atomic_store_explicit(&h->free_head, first, memory_order_relaxed);
    h->magic = HEAP_MAGIC;
    return 0;
}

static heap_hdr *heap_of(crew_shm *s)
{
    if (!s || s->size < 4096)
        return NULL;
    heap_hdr *h = s->base;
    return h->magic == HEAP_MAGIC && h->size == s->size ? h : NULL;
}

static int heap_lock(heap_hdr *h)
{
    int rc = crew_lock_acquire(&h->lock, CREW_FOREVER);
    if (rc == CREW_EOWNERDEAD) {
        /* A process died inside alloc/free: by the store ordering below the
         * list is consistent (at worst a block leaked). */
        crew_lock_consistent(&h->lock);
        rc = 0;
    }
    return rc;
}

/* A free-list offset read from shared memory is checked before use, so a
 * corrupted region yields CREW_EINVAL/ENOMEM, not a wild access. */
static bool off_ok(crew_shm *s, uint64_t off)
{
    return off >= HEAP_FIRST && off % ALIGN == 0 && off + BLOCK_HDR <= s->size;
}

int crew_shm_alloc(crew_shm *s, size_t size, size_t *off)
{
    heap_hdr *h = heap_of(s);
    if (!h || !off || size == 0 || size > s->size)
        return CREW_EINVAL;
    uint64_t need = ((uint64_t)size + BLOCK_HDR + ALIGN - 1) / ALIGN * ALIGN;
    int rc = heap_lock(h);
    if (rc)
        return rc;
    _Atomic uint64_t *link = &h->free_head;
    uint64_t cur = atomic_load_explicit(link, memory_order_relaxed);
    rc = CREW_ENOMEM;
    uint64_t steps = 0, max_steps = s->size / ALIGN; /* a cycle is corruption */
    while (cur) {
        if (!off_ok(s, cur) || ++steps > max_steps) {
            rc = CREW_EINVAL;
            break;
        }
        block *b = blk(s, cur);
        uint64_t bsize = atomic_load_explicit(&b->size, memory_order_relaxed);
        uint64_t next = atomic_load_explicit(&b->next, memory_order_relaxed);
        if (bsize >= need) {
            if (bsize - need >= BLOCK_HDR + ALIGN) {
                /* Split: write the remainder first (invisible), then one
                 * store swaps it into the list; then shrink our block. */
                uint64_t rem = cur + need;
                block *r = blk(s, rem);
                atomic_store_explicit(&r->size, bsize - need, memory_order_relaxed);
                atomic_store_explicit(&r->next, next, memory_order_relaxed);
                atomic_store_explicit(link, rem, memory_order_release);
                atomic_store_explicit(&b->size, need | USED, memory_order_release);
            } else {
                atomic_store_explicit(link, next, memory_order_release);
                atomic_store_explicit(&b->size, bsize | USED, memory_order_release);
            }
            *off = (size_t)(cur + BLOCK_HDR);
            rc = 0;
            break;
        }
        link = &b->next;
        cur = next;
    }
    crew_lock_release(&h->lock);
    return rc;
}

int crew_shm_free(crew_shm *s, size_t off)
{
    heap_hdr *h = heap_of(s);
    if (!h || off < BLOCK_HDR || !off_ok(s, off - BLOCK_HDR))
        return CREW_EINVAL;
    uint64_t boff = off - BLOCK_HDR;
    block *b = blk(s, boff);
    int rc = heap_lock(h);
    if (rc)
        return rc;
    uint64_t bsize = atomic_load_explicit(&b->size, memory_order_relaxed);
    if (!(bsize & USED) || (bsize & ~(uint64_t)USED) < BLOCK_HDR + ALIGN ||
        boff + (bsize & ~(uint64_t)USED) > s->size) {
        crew_lock_release(&h->lock);
        return CREW_EINVAL;
    }
    bsize &= ~(uint64_t)USED;
    /* Find the neighbours in the sorted free list. */
    _Atomic uint64_t *link = &h->free_head;
    uint64_t prev = 0, cur = atomic_load_explicit(link, memory_order_relaxed);
    uint64_t steps = 0, max_steps = s->size / ALIGN;
    while (cur && cur < boff && off_ok(s, cur) && ++steps <= max_steps) {
        prev = cur;
        link = &blk(s, cur)->next;
        cur = atomic_load_explicit(link, memory_order_relaxed);
    }
    /* Merge with the following free block, still privately. */
    uint64_t next = cur;
    if (cur && boff + bsize == cur) {
        block *n = blk(s, cur);
        bsize += atomic_load_explicit(&n->size, memory_order_relaxed);
        next = atomic_load_explicit(&n->next, memory_order_relaxed);
    }
    if (prev && prev + atomic_load_explicit(&blk(s, prev)->size, memory_order_relaxed) == boff) {
        /* Merge into the previous block: unlink what we absorbed first (a
         * crash here leaks it), then grow prev over it. */
        block *p = blk(s, prev);
        atomic_store_explicit(&b->size, bsize, memory_order_relaxed); /* no longer "in use" */
        atomic_store_explicit(&p->next, next, memory_order_release);
        atomic_store_explicit(&p->size, atomic_load_explicit(&p->size, memory_order_relaxed) + bsize,
                              memory_order_release);
    } else {
        atomic_store_explicit(&b->next, next, memory_order_relaxed);
        atomic_store_explicit(&b->size, bsize, memory_order_relaxed);
        atomic_store_explicit(link, boff, memory_order_release); /* publish */
    }
    crew_lock_release(&h->lock);
    return 0;
}

int crew_shm_heap_free_bytes(crew_shm *s, size_t *bytes)
{
    heap_hdr *h = heap_of(s);
    if (!h || !bytes)
        return CREW_EINVAL;
    int rc = heap_lock(h);
    if (rc)
        return rc;
    uint64_t total = 0, cur = atomic_load_explicit(&h->free_head, memory_order_relaxed);
    uint64_t steps = 0, max_steps = s->size / ALIGN;
    while (cur && off_ok(s, cur) && ++steps <= max_steps) {
        block *b = blk(s, cur);
        total += atomic_load_explicit(&b->size, memory_order_relaxed) - BLOCK_HDR;
        cur = atomic_load_explicit(&b->next, memory_order_relaxed);
    }
    crew_lock_release(&h->lock);
    *bytes = (size_t)total;
    return 0;
}

/* ------------------------------------------------------------ arrays */

typedef struct array_hdr {
    uint32_t magic;
    uint32_t type;
    uint64_t elem_size;
    uint64_t count;
    uint32_t has_lock;
    uint32_t pad_;
    crew_lock lock;
} array_hdr;
#define ARRAY_DATA 64

struct crew_array {
    crew_shm *shm;
    array_hdr *hdr;
    char *data;
};

static size_t type_size(crew_type t, size_t elem_size)
{
    switch (t) {
    case CREW_TYPE_BYTES: return elem_size;
    case CREW_TYPE_I32:
    case CREW_TYPE_U32: return 4;
    case CREW_TYPE_I64:
    case CREW_TYPE_U64:
    case CREW_TYPE_DOUBLE: return 8;
    default: return 0;
    }
}

int crew_array_create(crew_array **out, crew_type type, size_t elem_size, size_t count,
                      unsigned flags)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    size_t es = type_size(type, elem_size);
    if (es == 0 || count == 0 || (flags & ~CREW_ARRAY_LOCK))
        return CREW_EINVAL;
    if (count > (SIZE_MAX - ARRAY_DATA - 65536) / es)
        return CREW_EOVERFLOW;
    crew_array *a = crew__calloc(1, sizeof *a);
    if (!a)
        return CREW_ENOMEM;
    crew_shm_options o = {.name = "crew-array"};
    int rc = crew_shm_create(&a->shm, ARRAY_DATA + es * count, &o);
    if (rc) {
        crew__free(a);
        return rc;
    }
    a->hdr = a->shm->base;
    a->data = (char *)a->shm->base + ARRAY_DATA;
    a->hdr->type = (uint32_t)type;
    a->hdr->elem_size = es;
    a->hdr->count = count;
    a->hdr->has_lock = (flags & CREW_ARRAY_LOCK) != 0;
    if (a->hdr->has_lock)
        crew_lock_init(&a->hdr->lock);
    a->hdr->magic = ARRAY_MAGIC;
    *out = a;
    return 0;
}

int crew_value_create(crew_value **out, crew_type type, size_t elem_size, unsigned flags)
{
    return crew_array_create(out, type, elem_size, 1, flags);
}

int crew_array_attach(crew_array **out, int fd)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    crew_array *a = crew__calloc(1, sizeof *a);
    if (!a)
        return CREW_ENOMEM;
    int rc = crew_shm_attach(&a->shm, fd);
    if (rc) {
        crew__free(a);
        return rc;
    }
    array_hdr *h = a->shm->base;
    size_t es = a->shm->size >= ARRAY_DATA ? type_size((crew_type)h->type, (size_t)h->elem_size) : 0;
    if (a->shm->size < ARRAY_DATA || h->magic != ARRAY_MAGIC || es == 0 || es != h->elem_size ||
        h->count == 0 || h->count > (a->shm->size - ARRAY_DATA) / es) {
        crew_shm_destroy(a->shm);
        crew__free(a);
        return CREW_EINVAL;
    }
    a->hdr = h;
    a->data = (char *)a->shm->base + ARRAY_DATA;
    *out = a;
    return 0;
}

void *crew_array_data(const crew_array *a) { return a ? a->data : NULL; }
size_t crew_array_count(const crew_array *a) { return a ? (size_t)a->hdr->count : 0; }
size_t crew_array_elem_size(const crew_array *a) { return a ? (size_t)a->hdr->elem_size : 0; }
crew_lock *crew_array_lock(const crew_array *a)
{
    return a && a->hdr->has_lock ? &a->hdr->lock : NULL;
}
int crew_array_fd(const crew_array *a) { return a ? a->shm->fd : CREW_EINVAL; }

static int alock(crew_array *a)
{
    if (!a->hdr->has_lock)
        return 0;
    int rc = crew_lock_acquire(&a->hdr->lock, CREW_FOREVER);
    if (rc == CREW_EOWNERDEAD) {
        /* get/set/add hold the lock only around a copy: nothing to repair
         * beyond a possibly torn element, which the next store overwrites. */
        crew_lock_consistent(&a->hdr->lock);
        rc = 0;
    }
    return rc;
}

static void aunlock(crew_array *a)
{
    if (a->hdr->has_lock)
        crew_lock_release(&a->hdr->lock);
}

/* Element i copied out to buf (get) or in from buf (set), under the
 * array's lock. (One buffer and a direction, not two pointers of which one
 * is NULL: the compiler then sees no memcpy that could take a NULL.) */
static int elem_copy(crew_array *a, size_t i, void *buf, bool get)
{
    if (!a || !buf)
        return CREW_EINVAL;
    if (i >= a->hdr->count)
        return CREW_ERANGE;
    int rc = alock(a);
    if (rc)
        return rc;
    char *e = a->data + i * a->hdr->elem_size;
    if (get)
        memcpy(buf, e, (size_t)a->hdr->elem_size);
    else
        memcpy(e, buf, (size_t)a->hdr->elem_size);
    aunlock(a);
    return 0;
}

int crew_array_get(crew_array *a, size_t i, void *out) { return elem_copy(a, i, out, true); }

int crew_array_set(crew_array *a, size_t i, const void *in)
{
    return elem_copy(a, i, (void *)(uintptr_t)in, false); /* only read from */
}

int crew_array_add(crew_array *a, size_t i, double delta, double *result)
{
    if (!a)
        return CREW_EINVAL;
    crew_type t = (crew_type)a->hdr->type;
    if (t == CREW_TYPE_BYTES || (t == CREW_TYPE_DOUBLE && !a->hdr->has_lock))
        return CREW_EINVAL;
    if (i >= a->hdr->count)
        return CREW_ERANGE;
    /* Converting an out-of-range double to an integer is undefined: refuse. */
    if (t != CREW_TYPE_DOUBLE && !(delta >= -9.2e18 && delta <= 9.2e18))
        return CREW_ERANGE;
    void *e = a->data + i * a->hdr->elem_size;
    double r = 0;
    if (!a->hdr->has_lock) {
        switch (t) {
        case CREW_TYPE_I32:
            r = (double)(int32_t)((uint32_t)atomic_fetch_add((_Atomic uint32_t *)e, (uint32_t)(int64_t)delta) +
                                  (uint32_t)(int64_t)delta);
            break;
        case CREW_TYPE_U32:
            r = (double)(atomic_fetch_add((_Atomic uint32_t *)e, (uint32_t)(int64_t)delta) +
                         (uint32_t)(int64_t)delta);
            break;
        case CREW_TYPE_I64:
            r = (double)(int64_t)(atomic_fetch_add((_Atomic uint64_t *)e, (uint64_t)(int64_t)delta) +
                                  (uint64_t)(int64_t)delta);
            break;
        default: /* U64 */
            r = (double)(atomic_fetch_add((_Atomic uint64_t *)e, (uint64_t)(int64_t)delta) +
                         (uint64_t)(int64_t)delta);
            break;
        }
    } else {
        int rc = alock(a);
        if (rc)
            return rc;
        switch (t) {
        case CREW_TYPE_I32: {
            int32_t v;
            memcpy(&v, e, 4);
            v = (int32_t)((uint32_t)v + (uint32_t)(int64_t)delta);
            memcpy(e, &v, 4);
            r = v;
            break;
        }
        case CREW_TYPE_U32: {
            uint32_t v;
            memcpy(&v, e, 4);
            v += (uint32_t)(int64_t)delta;
            memcpy(e, &v, 4);
            r = v;
            break;
        }
        case CREW_TYPE_I64: {
            int64_t v;
            memcpy(&v, e, 8);
            v = (int64_t)((uint64_t)v + (uint64_t)(int64_t)delta);
            memcpy(e, &v, 8);
            r = (double)v;
            break;
        }
        case CREW_TYPE_U64: {
            uint64_t v;
            memcpy(&v, e, 8);
            v += (uint64_t)(int64_t)delta;
            memcpy(e, &v, 8);
            r = (double)v;
            break;
        }
        default: {
            double v;
            memcpy(&v, e, 8);
            v += delta;
            memcpy(e, &v, 8);
            r = v;
            break;
        }
        }
        aunlock(a);
    }
    if (result)
        *result = r;
    return 0;
}

int crew_array_destroy(crew_array *a)
{
    if (!a)
        return CREW_EINVAL;
    crew_shm_destroy(a->shm);
    crew__free(a);
    return 0;
}
