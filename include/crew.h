/*
 * crew.h -- threads and processes under one API.
 *
 * This header is the whole public interface of libcrew and its reference
 * documentation. Everything not declared here is private to the library.
 *
 * Conventions (they hold for every call below unless its comment says
 * otherwise):
 *
 *  - Status: every call returns an int, 0 on success and a negative CREW_E*
 *    code on failure. crew_strerror() and crew_err_name() describe a code.
 *    errno is never the channel: a call that fails leaves the reason in its
 *    return value only.
 *  - Handles: heap objects are opaque (crew_thread *, crew_pool *) and made by
 *    crew_xxx_create(&out, ...) / ended by crew_xxx_destroy(). Objects meant
 *    to live in shared memory (locks, conditions, semaphores, events, barriers)
 *    are plain structs of fixed size that the caller places anywhere --
 *    including memory shared between processes -- and initialises in place
 *    with crew_xxx_init().
 *  - Options: every options struct is valid when zero-filled
 *    (`crew_pool_options o = {0};`) and means "sensible defaults"; new fields
 *    are only ever appended, so old callers keep compiling and working.
 *  - Time: every blocking call takes `double timeout` in seconds, relative to
 *    the call: a negative value (CREW_FOREVER) waits forever, 0 polls once
 *    without blocking, a positive value waits at most that long and then
 *    returns CREW_ETIMEDOUT. Time is measured on CLOCK_MONOTONIC, so changes
 *    of the wall clock do not move a deadline.
 *  - Threads and processes: each declaration says whether it may be called
 *    from several threads at once ("thread-safe") and whether the object works
 *    between processes ("process-shared").
 */
#ifndef CREW_H
#define CREW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CREW_BUILDING) && defined(__GNUC__)
#define CREW_API __attribute__((visibility("default")))
#else
#define CREW_API
#endif

#define CREW_VERSION_MAJOR 0
#define CREW_VERSION_MINOR 1
#define CREW_VERSION_PATCH 0
#define CREW_VERSION_HEX \
    ((CREW_VERSION_MAJOR << 16) | (CREW_VERSION_MINOR << 8) | CREW_VERSION_PATCH)

/* The version of the library actually loaded (may differ from the header). */
CREW_API unsigned crew_version(void);
CREW_API const char *crew_version_string(void);

/* Wait forever: pass as `timeout` to any blocking call. */
#define CREW_FOREVER (-1.0)

/* ===================================================================== errors
 *
 * System failures are reported as -errno (CREW_ENOMEM == -ENOMEM, and so on);
 * the ones crew itself returns are named below. Conditions that have no errno
 * live in a reserved range, -5000 and below, that no errno value reaches.
 *
 *  X(name, value, message)
 */
#define CREW_ERRNO_MAP(X)                                                      \
    X(EPERM, -1, "operation not permitted (not the owner)")                   \
    X(ESRCH, -3, "no such process or thread")                                 \
    X(EINTR, -4, "interrupted")                                               \
    X(EIO, -5, "input/output error")                                          \
    X(E2BIG, -7, "message or argument too large")                             \
    X(EBADF, -9, "bad file descriptor")                                       \
    X(ECHILD, -10, "no child process")                                        \
    X(EAGAIN, -11, "resource temporarily unavailable")                        \
    X(ENOMEM, -12, "out of memory")                                           \
    X(EACCES, -13, "permission denied")                                       \
    X(EFAULT, -14, "bad address")                                             \
    X(EBUSY, -16, "resource busy")                                            \
    X(EEXIST, -17, "already exists")                                          \
    X(ENOENT, -2, "no such file or directory")                                \
    X(EINVAL, -22, "invalid argument")                                        \
    X(ENFILE, -23, "too many open files in system")                           \
    X(EMFILE, -24, "too many open files")                                     \
    X(ENOSPC, -28, "no space left")                                           \
    X(EPIPE, -32, "broken pipe")                                              \
    X(ERANGE, -34, "result out of range")                                     \
    X(EDEADLK, -35, "deadlock would occur")                                   \
    X(ENOSYS, -38, "function not implemented by this kernel")                 \
    X(ENOTSUP, -95, "operation not supported")                                \
    X(EOVERFLOW, -75, "value too large")

#define CREW_ERRLIB_MAP(X)                                                     \
    X(ETIMEDOUT, -5001, "timed out")                                          \
    X(ECANCELED, -5002, "canceled")                                           \
    X(ECRASHED, -5003, "worker crashed (killed by a signal or exited)")        \
    X(EOWNERDEAD, -5004, "previous owner died holding the lock")               \
    X(ENOTRECOVERABLE, -5005, "lock state not recoverable")                    \
    X(EBROKEN, -5006, "broken (a participant failed or the breaker tripped)")  \
    X(EOF, -5007, "end of stream: closed and drained")                        \
    X(ECLOSED, -5008, "closed")                                               \
    X(ESHUTDOWN, -5009, "already shut down")                                  \
    X(ESTATE, -5010, "wrong state for this operation")                        \
    X(EEXEC, -5011, "could not start the program or child")                   \
    X(ENOTFOUND, -5012, "symbol or task not found")                           \
    X(EPROTO, -5013, "protocol error between crew processes")

typedef enum crew_errno {
#define CREW__ERR_ENUM(name, value, msg) CREW_##name = (value),
    CREW_ERRNO_MAP(CREW__ERR_ENUM) CREW_ERRLIB_MAP(CREW__ERR_ENUM)
#undef CREW__ERR_ENUM
    CREW_OK = 0
} crew_errno;

/* A static, human-readable description of a status code; never NULL, never
 * allocates. Unknown negative values that are -errno get the system text;
 * anything else gets "unknown error". Thread-safe. */
CREW_API const char *crew_strerror(int err);
/* A static symbolic name ("CREW_ETIMEDOUT", "CREW_OK"); "CREW_EUNKNOWN" for
 * unknown codes. Thread-safe. */
CREW_API const char *crew_err_name(int err);

/* ================================================================ allocation
 *
 * Every heap allocation crew makes goes through these hooks (defaults: the C
 * library's malloc/realloc/free). Install them before any other crew call;
 * passing NULL for all three restores the defaults. Returns CREW_EINVAL if
 * only some are NULL. Not thread-safe: call it once, early. Tests use it to
 * inject allocation failures; crew then returns CREW_ENOMEM, never aborts.
 */
typedef void *(*crew_malloc_fn)(size_t size);
typedef void *(*crew_realloc_fn)(void *ptr, size_t size);
typedef void (*crew_free_fn)(void *ptr);
CREW_API int crew_set_allocator(crew_malloc_fn m, crew_realloc_fn r, crew_free_fn f);

/* ================================================================ machine */

/* Number of CPUs this process may run on (its affinity mask), at least 1. */
CREW_API int crew_cpu_count(void);

/* Seconds on CLOCK_MONOTONIC: for measuring intervals. */
CREW_API double crew_now(void);

/* @@SECTION threads@@ */

/* @@SECTION sync@@ */

/* @@SECTION processes@@ */

/* @@SECTION shm@@ */

/* @@SECTION queue@@ */

/* @@SECTION pool@@ */

#ifdef __cplusplus
}
#endif
#endif /* CREW_H */
