/*
 * shm_internal.h -- the process-local registry of live crew_shm handles
 * (src/shm.c), used by the pool to find the region an argument or a map's
 * records lie in and to hand regions to worker processes. Never installed.
 *
 * Every crew_shm_create / crew_shm_attach adds its handle, crew_shm_destroy
 * removes it. With no live handle the lookups cost one relaxed load.
 */
#ifndef CREW__SHM_INTERNAL_H
#define CREW__SHM_INTERNAL_H

#include "core/internal.h"

/* What the pool needs to know about a region, read under the registry
 * lock (so a handle destroyed concurrently is never dereferenced). */
typedef struct crew__shm_info {
    crew_shm *handle;
    void *base;
    size_t size;
    uint64_t dev, ino;          /* identity of the memfd (shared by every handle of it) */
} crew__shm_info;

/* true when at least one handle is live in this process (one relaxed load). */
bool crew__shm_any(void);
/* The live handle whose mapping contains [p, p+len) (len > 0), or NULL. */
crew_shm *crew__shm_find(const void *p, size_t len);
/* Fills *out for handle s if it is live: 0, or CREW_EINVAL (not live). */
int crew__shm_info_of(const crew_shm *s, crew__shm_info *out);
/* true when some live handle of this process maps the memfd (dev, ino). */
bool crew__shm_ino_live(uint64_t dev, uint64_t ino);
/* A close-on-exec duplicate of the fd of a live handle of (dev, ino):
 * the fd (>= 0), CREW_ENOENT (none live), or -errno. */
int crew__shm_dup_fd(uint64_t dev, uint64_t ino);
/* Maps fd (a sealed crew memfd of `size` bytes, received from the parent)
 * and takes ownership of it: a registered handle, as crew_shm_attach gives. */
int crew__shm_adopt(crew_shm **out, int fd, size_t size);

#endif /* CREW__SHM_INTERNAL_H */
