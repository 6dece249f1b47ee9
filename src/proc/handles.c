/*
 * handles.c -- handing queues, pipes and regions to a child process by name
 * or fd channels (crew_process_options.handles, crew_child_handle_*).
 *
 * DESIGN
 * Parent side (crew__handles_prepare, from crew_process_start): each handle
 * gets a descriptor of its own, made for the child (close-on-exec: see
 * handle_fd) -- crew_queue_dup_fd, crew_pipe_dup_fd (which takes a hold on
 * the end, so the end stays open while the fd is in flight),
 * crew_fdchan_dup_fd, a dup of a region's memfd -- and that fd joins
 * pass_fds, so every start method delivers it at the same number as
 * it does any pass_fd: fork inherits it, spawn keeps it through exec, the
 * forkserver sends it as SCM_RIGHTS and places it. The table that names the
 * fds, a "handle blob", goes with the child's start: a fork child inherits
 * it in its copy of the parent's memory; spawn and forkserver children
 * receive it inside their start request (request.c), after the checks of
 * the CREW_CHILD hand-shake (docs/security.md), which this adds nothing to:
 * the blob is data of a request from our verified parent, and is parsed
 * with bounds checks all the same. The parent closes its copies once the
 * start has returned, whatever its outcome.
 *
 * Blob: entries laid end to end, each {u32 kind, i32 fd, u32 name_len} and
 * name_len bytes of name (NUL included), padded to 4.
 *
 * Child side: crew__child_handles_set (child.c before the task runs, or
 * process.c's fork child) records the blob; crew_child_handle_<kind>(name)
 * finds the entry, attaches a new handle from its fd and closes the fd, so
 * the child's handle is the only thing holding it -- a pipe end the child
 * destroys is then really released (EOF for the peer). An entry is taken
 * once: its kind is cleared. A mutex serialises lookups (several threads of
 * the child may ask).
 */
#include "proc/process_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

typedef struct blob_entry {
    uint32_t kind;
    int32_t fd;
    uint32_t name_len;
} blob_entry;

static inline size_t pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* ------------------------------------------------------------ parent */

/* The child's descriptor for h, close-on-exec: another thread of ours that
 * forks and execs meanwhile (system(), say) must not carry it off -- a
 * pipe end held by a stranger never reads EOF. Every start method still
 * delivers it: a fork child inherits it, spawn clears the flag on what it
 * keeps, the forkserver sends it as SCM_RIGHTS. */
static int handle_fd(const crew_handle *h, int *fd)
{
    int rc, src = -1;
    switch (h->kind) {
    case CREW_HANDLE_QUEUE:
        rc = crew_queue_dup_fd(h->object, fd);
        break;
    case CREW_HANDLE_PIPE:
        rc = crew_pipe_dup_fd(h->object, fd);
        break;
    case CREW_HANDLE_FDCHAN:
        rc = crew_fdchan_dup_fd(h->object, fd);
        break;
    case CREW_HANDLE_SHM:
        src = crew_shm_fd(h->object);
        rc = src < 0 ? src : 0;
        break;
    case CREW_HANDLE_ARRAY:
        src = crew_array_fd(h->object);
        rc = src < 0 ? src : 0;
        break;
    default:
        return CREW_EINVAL;
    }
    if (rc)
        return rc;
    if (src >= 0) {
        *fd = fcntl(src, F_DUPFD_CLOEXEC, 0);
        return *fd >= 0 ? 0 : -errno;
    }
    /* The dup_fd calls make descriptors meant to cross exec: this one is
     * not (the window until here is a few instructions). */
    if (fcntl(*fd, F_SETFD, FD_CLOEXEC) != 0) {
        rc = -errno;
        crew__close(*fd);
        return rc;
    }
    return 0;
}

/* Names: 1 .. CREW_HANDLE_NAME_MAX bytes, unique among the handles. */
static int check_handles(const crew_handle *hs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const crew_handle *h = &hs[i];
        if (h->kind < CREW_HANDLE_QUEUE || h->kind > CREW_HANDLE_FDCHAN || !h->object ||
            !h->name)
            return CREW_EINVAL;
        size_t len = strnlen(h->name, CREW_HANDLE_NAME_MAX + 1);
        if (len == 0 || len > CREW_HANDLE_NAME_MAX)
            return CREW_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(hs[j].name, h->name) == 0)
                return CREW_EINVAL;
    }
    return 0;
}

void crew__handles_release(crew__handles *hd)
{
    for (size_t i = 0; i < hd->n_fds; i++)
        crew__close(hd->fds[i]);
    crew__free(hd->blob);
    crew__free(hd->pass);
    memset(hd, 0, sizeof *hd);
}

int crew__handles_prepare(crew__handles *hd, const crew_process_options *in)
{
    memset(hd, 0, sizeof *hd);
    hd->opts = *in;
    size_t n = in->n_handles;
    if (n == 0)
        return 0;
    if (!in->handles)
        return CREW_EINVAL;
    if (n > CREW_MAX_HANDLES || in->n_pass_fds + n > CREW__MAX_PASS_FDS)
        return CREW_E2BIG;
    int rc = check_handles(in->handles, n);
    if (rc)
        return rc;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += sizeof(blob_entry) + pad4(strlen(in->handles[i].name) + 1);
    hd->blob = crew__calloc(1, bytes);
    hd->pass = crew__malloc((in->n_pass_fds + n) * sizeof(int));
    if (!hd->blob || !hd->pass) {
        crew__handles_release(hd);
        return CREW_ENOMEM;
    }
    for (size_t i = 0; i < in->n_pass_fds; i++)
        hd->pass[i] = in->pass_fds[i];
    uint8_t *at = hd->blob;
    for (size_t i = 0; i < n; i++) {
        const crew_handle *h = &in->handles[i];
        int fd;
        rc = handle_fd(h, &fd);
        if (rc) {
            crew__handles_release(hd);
            return rc;
        }
        hd->fds[hd->n_fds++] = fd;
        hd->pass[in->n_pass_fds + i] = fd;
        blob_entry e = {(uint32_t)h->kind, fd, (uint32_t)strlen(h->name) + 1};
        memcpy(at, &e, sizeof e);
        memcpy(at + sizeof e, h->name, e.name_len);
        at += sizeof e + pad4(e.name_len);
    }
    hd->blob_len = bytes;
    hd->opts.pass_fds = hd->pass;
    hd->opts.n_pass_fds = in->n_pass_fds + n;
    return 0;
}

/* ------------------------------------------------------------ child */

static pthread_mutex_t child_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *child_blob;
static size_t child_blob_len;

void crew__child_handles_set(void *blob, size_t len)
{
    child_blob = len ? blob : NULL;
    child_blob_len = len;
}

/* Where the entry called `name` starts, or NULL. Bounds-checked: the blob
 * came over the start channel. */
static uint8_t *find(const char *name)
{
    size_t off = 0;
    while (child_blob && off + sizeof(blob_entry) <= child_blob_len) {
        blob_entry e;
        memcpy(&e, child_blob + off, sizeof e);
        size_t next = off + sizeof e + pad4(e.name_len);
        if (e.name_len == 0 || e.name_len > CREW_HANDLE_NAME_MAX + 1 || next > child_blob_len)
            return NULL;
        const char *n = (const char *)child_blob + off + sizeof e;
        if (n[e.name_len - 1] == '\0' && strcmp(n, name) == 0)
            return child_blob + off;
        off = next;
    }
    return NULL;
}

static int take(const char *name, crew_handle_kind kind, void **out)
{
    if (!name || !out)
        return CREW_EINVAL;
    *out = NULL;
    pthread_mutex_lock(&child_lock);
    uint8_t *at = find(name);
    int rc = 0;
    blob_entry e;
    if (!at) {
        rc = CREW_ENOTFOUND;
    } else {
        memcpy(&e, at, sizeof e);
        if (e.kind == 0)
            rc = CREW_ESTATE; /* taken already */
        else if (e.kind != (uint32_t)kind)
            rc = CREW_EINVAL;
    }
    if (rc == 0) {
        switch (kind) {
        case CREW_HANDLE_QUEUE:
            rc = crew_queue_attach((crew_queue **)out, e.fd);
            break;
        case CREW_HANDLE_PIPE:
            rc = crew_pipe_attach((crew_pipe **)out, e.fd);
            break;
        case CREW_HANDLE_SHM:
            rc = crew_shm_attach((crew_shm **)out, e.fd);
            break;
        case CREW_HANDLE_ARRAY:
            rc = crew_array_attach((crew_array **)out, e.fd);
            break;
        default:
            rc = crew_fdchan_attach((crew_fdchan **)out, e.fd);
            break;
        }
        if (rc == 0) {
            /* The handle keeps its own descriptor: ours goes, so the
             * handle alone holds the object (a pipe end, above all). */
            crew__close(e.fd);
            e.kind = 0;
            memcpy(at, &e, sizeof e);
        }
    }
    pthread_mutex_unlock(&child_lock);
    return rc;
}

int crew_child_handle_queue(const char *name, crew_queue **out)
{
    return take(name, CREW_HANDLE_QUEUE, (void **)out);
}

int crew_child_handle_pipe(const char *name, crew_pipe **out)
{
    return take(name, CREW_HANDLE_PIPE, (void **)out);
}

int crew_child_handle_shm(const char *name, crew_shm **out)
{
    return take(name, CREW_HANDLE_SHM, (void **)out);
}

int crew_child_handle_array(const char *name, crew_array **out)
{
    return take(name, CREW_HANDLE_ARRAY, (void **)out);
}

int crew_child_handle_fdchan(const char *name, crew_fdchan **out)
{
    return take(name, CREW_HANDLE_FDCHAN, (void **)out);
}
