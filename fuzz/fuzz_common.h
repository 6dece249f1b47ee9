/*
 * fuzz_common.h -- what the queue and pipe harnesses share: reading the
 * input, making a sealed memfd from bytes, and the checks that turn a
 * broken promise into a crash libFuzzer reports.
 *
 * The promises (docs/queue.md, "Two promises"): whatever the region holds,
 * every call returns one of its documented codes, never writes outside the
 * caller's buffer, and once a handle has returned CREW_EPROTO every later
 * call on it does too. Crashes, hangs and undefined behaviour are caught by
 * libFuzzer (-timeout), ASan and UBSan themselves.
 */
#ifndef CREW_FUZZ_COMMON_H
#define CREW_FUZZ_COMMON_H

#include <crew.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FZ_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s: ", #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}
static inline uint16_t fz_u16(fz_in *in) { return (uint16_t)(fz_u8(in) | fz_u8(in) << 8); }

/* A memfd of `size` bytes sealed as crew seals its own (so attach looks at
 * the contents rather than refusing the fd), holding `region`. */
static inline int fz_sealed_memfd(const uint8_t *region, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    FZ_CHECK(fd >= 0, "memfd_create: %s", strerror(errno));
    FZ_CHECK(ftruncate(fd, (off_t)size) == 0, "ftruncate");
    FZ_CHECK(pwrite(fd, region, size, 0) == (ssize_t)size, "pwrite");
    FZ_CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) == 0, "seal");
    return fd;
}

static inline void *fz_map(int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    FZ_CHECK(p != MAP_FAILED, "mmap");
    return p;
}

/* rc is 0 or in the 0-terminated list; EPROTO sticks to a handle. */
static inline void fz_rc(const char *op, int rc, const int *allowed, bool *broken)
{
    if (*broken)
        FZ_CHECK(rc == CREW_EPROTO, "%s returned %s after CREW_EPROTO", op, crew_err_name(rc));
    bool ok = rc == 0;
    for (const int *a = allowed; !ok && *a; a++)
        ok = rc == *a;
    FZ_CHECK(ok, "%s returned %s, not a documented code", op, crew_err_name(rc));
    if (rc == CREW_EPROTO)
        *broken = true;
}

/* A receive buffer with canaries around it. */
enum { FZ_BUF = 300, FZ_GUARD = 32 };
typedef struct fz_buf {
    uint8_t b[FZ_GUARD + FZ_BUF + FZ_GUARD];
} fz_buf;
static inline uint8_t *fz_buf_arm(fz_buf *b)
{
    memset(b->b, 0xa5, sizeof b->b);
    return b->b + FZ_GUARD;
}
static inline void fz_buf_check(const fz_buf *b, size_t cap)
{
    for (size_t i = 0; i < sizeof b->b; i++)
        if (i < FZ_GUARD || i >= FZ_GUARD + cap)
            FZ_CHECK(b->b[i] == 0xa5, "byte %zd of a %zu-byte buffer written",
                     (ssize_t)i - FZ_GUARD, cap);
}

static inline void fz_fill(void *dst, size_t len, void *arg)
{
    (void)arg;
    memset(dst, 0x3c, len);
}

typedef struct fz_read_arg {
    size_t max;
    uint64_t sum;
} fz_read_arg;
/* Reads every byte handed over in place: one outside the mapping faults. */
static inline void fz_read(const void *msg, size_t len, void *arg)
{
    fz_read_arg *a = arg;
    FZ_CHECK(len <= a->max, "get_with handed %zu bytes (max %zu)", len, a->max);
    const volatile uint8_t *p = msg;
    for (size_t i = 0; i < len; i++)
        a->sum += p[i];
}

#endif /* CREW_FUZZ_COMMON_H */
