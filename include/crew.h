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
 *    returns CREW_ETIMEDOUT; +INFINITY, or any value above 1e9 s (~31
 *    years), waits forever too. A NaN timeout is no time at all: every such call
 *    rejects it with CREW_EINVAL before doing anything (it neither waits nor
 *    polls). Time is measured on CLOCK_MONOTONIC, so changes of the wall
 *    clock do not move a deadline.
 *  - Names: crew_<object>_<verb> for calls, crew_<object> for its handle,
 *    crew_<object>_options for its options. An accessor that returns one
 *    value is crew_<object>_<property>(obj) (crew_pool_workers,
 *    crew_shm_size) -- or crew_<object>_<property>_get where that name is
 *    already a type's (crew_pool_kind_get returns a crew_pool_kind); a call
 *    that copies a snapshot into the caller's out-parameters is
 *    crew_<object>_<what>_get (crew_pool_stats_get fills a crew_pool_stats,
 *    crew_queue_status_get a crew_queue_status).
 *  - File descriptors: crew_<object>_fd(obj) returns a descriptor the object
 *    owns (borrowed: valid while the object lives, close-on-exec; never close
 *    it yourself) -- crew_pool_fd, crew_shm_fd, crew_array_fd.
 *    crew_<object>_dup_fd(obj, &fd) makes a new descriptor that the caller
 *    owns and must close (without FD_CLOEXEC, to hand to another process) --
 *    crew_queue_dup_fd, crew_pipe_dup_fd.
 *  - Threads and processes: each declaration says whether it may be called
 *    from several threads at once ("thread-safe") and whether the object works
 *    between processes ("process-shared").
 *  - Environment: libcrew reads two variables, and no others:
 *      CREW_CHILD        set by crew in the children it execs (spawn, the
 *                        forkserver): the channel fd and the parent's pid.
 *                        A process honours it only if that fd is a socket
 *                        made by its own parent with the same effective uid
 *                        and gid; otherwise it exits 127 before main(),
 *                        having run nothing (a forged value -- say, by the
 *                        user who starts a setuid program -- can neither
 *                        load a library nor run a function). Never set it.
 *      CREW_CHILD_DEFER  non-empty and not "0": exec'd children wait for
 *                        crew_child_main() in main() instead of starting
 *                        from libcrew's constructor (see crew_child_main).
 *                        Ignored in a privileged process (setuid, setgid or
 *                        file capabilities: AT_SECURE, secure_getenv).
 *    docs/security.md has the threat model.
 */
#ifndef CREW_H
#define CREW_H

#include <limits.h>
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
/* ================================================================ threads
 *
 * crew_thread is Python's threading.Thread for C: start a function with an
 * argument, join it (with a timeout) and get its result, or detach it.
 * A handle is a heap object made by crew_thread_start() and freed by
 * crew_thread_destroy(); joining does not free it, so the status of a second
 * join is still well defined (CREW_ESTATE).
 *
 * Differences from Python: there is no "daemon" flag (detach a thread you do
 * not want to join; the process still ends when main returns), and the result
 * of the function is returned by join (Python discards it).
 */
typedef struct crew_thread crew_thread;
typedef void *(*crew_thread_fn)(void *arg);

typedef struct crew_thread_options {
    /* Thread name shown by ps/top/gdb; truncated to 15 bytes (the kernel's
     * limit). NULL: the name is inherited from the creating thread. */
    const char *name;
    /* Stack size in bytes; 0 = the system default (usually 8 MiB of address
     * space, touched lazily). Below the system minimum: CREW_EINVAL. */
    size_t stack_size;
} crew_thread_options;

/* Starts fn(arg) in a new thread; *out receives its handle. opts may be NULL.
 * Returns 0, CREW_EINVAL (out or fn NULL, stack_size too small),
 * CREW_ENOMEM (the handle could not be allocated), CREW_EAGAIN (the system
 * refused another thread: RLIMIT_NPROC, threads-max, or no memory for the
 * stack), CREW_EPERM. On failure *out is left untouched and nothing leaks.
 * Thread-safe. */
CREW_API int crew_thread_start(crew_thread **out, crew_thread_fn fn, void *arg,
                               const crew_thread_options *opts);

/* Waits for t to finish and stores its return value in *result (result may be
 * NULL). timeout follows the crew convention; on CREW_ETIMEDOUT the thread is
 * still joinable. Returns 0, CREW_EINVAL (t NULL, NaN timeout), CREW_ESTATE (t was already
 * joined or is detached), CREW_EDEADLK (t is the calling thread),
 * CREW_EBUSY (another thread is joining t right now), CREW_ETIMEDOUT.
 * A join with a timeout relies on the thread returning from fn (or calling
 * pthread_exit); one that is cancelled is only seen by a join that waits
 * forever. Thread-safe. */
CREW_API int crew_thread_join(crew_thread *t, double timeout, void **result);

/* Lets t run on without being joined: its resources are released when it
 * ends. The handle stays valid (join returns CREW_ESTATE) until
 * crew_thread_destroy(). Returns 0, CREW_EINVAL, CREW_ESTATE (already joined
 * or detached), CREW_EBUSY (being joined). Thread-safe. */
CREW_API int crew_thread_detach(crew_thread *t);

/* Frees the handle. If the thread was neither joined nor detached, destroy
 * first joins it (waiting forever), so no thread is left unreaped; calling it
 * from t itself on a joinable t returns CREW_EDEADLK and frees nothing.
 * Returns 0, CREW_EINVAL (NULL), CREW_EDEADLK, CREW_EBUSY (being joined). Not
 * to be called concurrently with any other call on the same handle. */
CREW_API int crew_thread_destroy(crew_thread *t);

/* The calling thread's kernel thread id (what ps -L and gettid() show). */
CREW_API uint32_t crew_thread_self_id(void);

/* @@SECTION sync@@ */
/* ================================================================ sync
 *
 * Lock, RLock, Condition, Semaphore, Event and Barrier, with Python's
 * threading semantics unless a comment says otherwise (docs/sync.md lists
 * every difference).
 *
 * Each object is a fixed-size struct that the caller places anywhere and
 * initialises in place with crew_xxx_init(). The objects hold no pointers and
 * use shared futexes, so the SAME object works between threads and between
 * processes when it lives in MAP_SHARED memory (an anonymous shared mapping
 * made before fork(), a memfd, a file): every call below is thread-safe and
 * process-shared. Do not copy an object or move it while in use.
 *
 * Lifetime: a thread whose wait on an event, semaphore, condition or lock
 * has returned may free that object at once (e.g. a completion event on the
 * stack): set/release/notify touch the object's memory only before the
 * waiter can see the change. A barrier may be freed only once every thread
 * that waits on it has returned from crew_barrier_wait().
 *
 * Dying does not become a deadlock: a lock knows its owner (process id,
 * thread id). A waiter that finds the owner dead (thread ended, process
 * killed) takes the lock and gets CREW_EOWNERDEAD, with the lock held, as
 * POSIX robust mutexes; a barrier whose participant died breaks
 * (CREW_EBROKEN). Waiters check liveness every few tens of milliseconds while
 * blocked, so death is seen within ~50 ms. All processes sharing an object
 * must be in the same pid namespace (see docs/sync.md).
 */

/* ---------------------------------------------------------------- Lock
 * A mutual-exclusion lock with an owner. Unlike Python's Lock (which any
 * thread may release), only the owning thread may release a crew_lock; and a
 * thread that acquires a lock it already holds gets CREW_EDEADLK instead of
 * hanging. An all-zero crew_lock is a valid unlocked lock (so fresh shared
 * memory works), but call crew_lock_init() anyway. */
typedef struct crew_lock {
    _Alignas(8) unsigned char opaque_[16];
} crew_lock;

/* Makes l an unlocked lock (also repairs a not-recoverable or destroyed one).
 * Must not be called while any thread uses l. Returns 0 or CREW_EINVAL. */
CREW_API int crew_lock_init(crew_lock *l);
/* Acquires l, waiting at most `timeout` seconds (0 = poll, <0 forever).
 * Returns 0; CREW_EOWNERDEAD: the previous owner died holding l -- the caller
 * now holds l, must repair the data it protects and call
 * crew_lock_consistent() before releasing, else l becomes unusable;
 * CREW_ENOTRECOVERABLE (l was released while inconsistent; re-init it);
 * CREW_EDEADLK (the caller already holds l); CREW_ETIMEDOUT; CREW_EINVAL
 * (NULL or destroyed, NaN timeout: also when l is free). */
CREW_API int crew_lock_acquire(crew_lock *l, double timeout);
/* Acquires l only if it is free: 0, CREW_EBUSY (held, also by the caller),
 * CREW_ENOTRECOVERABLE, CREW_EINVAL. Never blocks, never checks liveness. */
CREW_API int crew_lock_try(crew_lock *l);
/* Releases l: 0; CREW_EPERM if the caller is not the owner (l unchanged);
 * CREW_EINVAL. Releasing a lock still marked inconsistent (after
 * CREW_EOWNERDEAD, without crew_lock_consistent) releases it for good: every
 * later acquire returns CREW_ENOTRECOVERABLE. */
CREW_API int crew_lock_release(crew_lock *l);
/* Marks the state protected by l as repaired after CREW_EOWNERDEAD. The
 * caller must hold l. Returns 0, CREW_EPERM (not the owner), CREW_EINVAL (l
 * is not inconsistent). */
CREW_API int crew_lock_consistent(crew_lock *l);
/* Marks l destroyed (later calls return CREW_EINVAL until crew_lock_init).
 * Returns 0, CREW_EBUSY (held by anyone), CREW_EINVAL. */
CREW_API int crew_lock_destroy(crew_lock *l);
/* Python's Lock.locked(): 1 if some thread holds l, 0 if it is free.
 * Returns 1, 0, CREW_ENOTRECOVERABLE, or CREW_EINVAL (NULL or destroyed).
 * A snapshot: the lock may change hands the moment after. */
CREW_API int crew_lock_locked(crew_lock *l);
/* Who holds l: *pid and *tid (either may be NULL) receive the owner's
 * process and thread ids (kernel ids, as getpid() and gettid()), both 0
 * when l is free. Returns 0, CREW_ENOTRECOVERABLE, or CREW_EINVAL (NULL or
 * destroyed). A snapshot, as crew_lock_locked. */
CREW_API int crew_lock_owner_get(crew_lock *l, pid_t *pid, pid_t *tid);

/* ---------------------------------------------------------------- RLock
 * Reentrant lock: the owner may acquire it again; it is free after as many
 * releases as acquires. Release by a non-owner: CREW_EPERM (as Python's
 * RuntimeError). Dead owner: as crew_lock (the recursion count of the new
 * owner is 1). */
typedef struct crew_rlock {
    _Alignas(8) unsigned char opaque_[16];
} crew_rlock;

/* Makes r an unlocked rlock, as crew_lock_init. Returns 0 or CREW_EINVAL. */
CREW_API int crew_rlock_init(crew_rlock *r);
/* As crew_lock_acquire, except that the owner re-acquires at once (0; or
 * CREW_EOVERFLOW past 2^31 levels). */
CREW_API int crew_rlock_acquire(crew_rlock *r, double timeout);
/* 0 or CREW_EBUSY (held by another thread); the owner always succeeds. */
CREW_API int crew_rlock_try(crew_rlock *r);
/* Drops one level: 0, CREW_EPERM (not the owner), CREW_EINVAL. */
CREW_API int crew_rlock_release(crew_rlock *r);
/* As crew_lock_consistent, after CREW_EOWNERDEAD. */
CREW_API int crew_rlock_consistent(crew_rlock *r);
/* 0, CREW_EBUSY (held), CREW_EINVAL. */
CREW_API int crew_rlock_destroy(crew_rlock *r);
/* 1 if some thread holds r (at any depth), 0 if it is free. Returns 1, 0,
 * CREW_ENOTRECOVERABLE, or CREW_EINVAL (NULL or destroyed). A snapshot. */
CREW_API int crew_rlock_locked(crew_rlock *r);
/* The caller's recursion level on r (Python's RLock._recursion_count()):
 * how many releases would free it, 0 when the caller does not hold it
 * (whoever else may). Returns the level (0 .. 2^31-1) or CREW_EINVAL (NULL
 * or destroyed). Exact for the caller, since only the owner changes it. */
CREW_API int crew_rlock_count(crew_rlock *r);
/* Who holds r, as crew_lock_owner_get: 0, CREW_ENOTRECOVERABLE, or
 * CREW_EINVAL (NULL or destroyed). */
CREW_API int crew_rlock_owner_get(crew_rlock *r, pid_t *pid, pid_t *tid);

/* ---------------------------------------------------------------- Condition
 * A condition variable used with a crew_lock or a crew_rlock (any lock,
 * passed to each wait: unlike Python's Condition it does not own one). It keeps no per-waiter
 * state, so a waiter killed in the middle of a wait leaves it intact. As with
 * Python, wait may return 0 without a notify ("spurious" wake-up): loop on
 * the predicate, or use crew_cond_wait_for(). */
typedef struct crew_cond {
    _Alignas(8) unsigned char opaque_[16];
} crew_cond;

/* Makes c a condition with no waiters. Returns 0 or CREW_EINVAL. */
CREW_API int crew_cond_init(crew_cond *c);
/* Atomically releases l (which the caller must hold) and waits for a notify
 * or the timeout, then re-acquires l -- always, even after a timeout, and
 * without a time limit. Returns 0 (notified or spurious), CREW_ETIMEDOUT,
 * CREW_EPERM (l not held by the caller; nothing released), CREW_EINVAL
 * (NULL, destroyed l, NaN timeout; nothing released), or
 * the status of re-acquiring l: CREW_EOWNERDEAD (l held, repair it) or
 * CREW_ENOTRECOVERABLE (l NOT held). Waiting releases l, so call
 * crew_lock_consistent() first on a lock taken with CREW_EOWNERDEAD. */
CREW_API int crew_cond_wait(crew_cond *c, crew_lock *l, double timeout);
/* Python's wait_for: waits until pred(arg) returns non-zero, evaluating it
 * with l held, first before waiting at all. Returns 0 when the predicate is
 * true, CREW_ETIMEDOUT if it is still false when the time is up, or an error
 * of crew_cond_wait. l is held on return (except CREW_ENOTRECOVERABLE,
 * CREW_EPERM, CREW_EINVAL). */
typedef int (*crew_cond_pred)(void *arg);
CREW_API int crew_cond_wait_for(crew_cond *c, crew_lock *l, crew_cond_pred pred, void *arg,
                                double timeout);
/* Python's Condition(RLock()).wait: as crew_cond_wait, over an rlock that
 * the caller holds at any depth. The wait releases r fully -- every level
 * at once, so other threads can take it -- and re-acquires it to the same
 * depth before returning. Returns as crew_cond_wait: 0, CREW_ETIMEDOUT,
 * CREW_EPERM (r not held by the caller; nothing released), CREW_EINVAL
 * (NULL, destroyed r, NaN timeout; nothing released), CREW_EOWNERDEAD (r
 * held again at the saved depth: repair), CREW_ENOTRECOVERABLE (r NOT
 * held). */
CREW_API int crew_cond_wait_rlock(crew_cond *c, crew_rlock *r, double timeout);
/* crew_cond_wait_for over an rlock: pred(arg) is evaluated with r held at
 * the caller's depth. Returns as crew_cond_wait_for: 0, CREW_ETIMEDOUT, or
 * an error of crew_cond_wait_rlock. */
CREW_API int crew_cond_wait_for_rlock(crew_cond *c, crew_rlock *r, crew_cond_pred pred,
                                      void *arg, double timeout);
/* Wakes at least one waiter if any is waiting. Holding the lock is not
 * required (but is what makes the predicate change visible in order).
 * Returns 0 or CREW_EINVAL. */
CREW_API int crew_cond_notify(crew_cond *c);
/* Wakes every waiter. Returns 0 or CREW_EINVAL. */
CREW_API int crew_cond_notify_all(crew_cond *c);
/* Python's notify(n): wakes n waiters, or every waiter if fewer wait; n == 0
 * wakes none. As with crew_cond_notify, more may return (a waiter that had
 * not yet gone to sleep sees the notify too), so loop on a predicate that
 * counts what each waiter may take. Returns 0 or CREW_EINVAL. */
CREW_API int crew_cond_notify_n(crew_cond *c, unsigned n);
/* Returns 0 or CREW_EINVAL. (Waiters must be gone; not checked.) */
CREW_API int crew_cond_destroy(crew_cond *c);

/* ---------------------------------------------------------------- Semaphore
 * A counting semaphore. max == 0: unbounded (Python's Semaphore, up to
 * INT32_MAX); max > 0: bounded (Python's BoundedSemaphore): a release that
 * would take the value above max fails with CREW_EOVERFLOW and changes
 * nothing (Python raises ValueError). A semaphore has no owner, so a process
 * that dies holding a unit does not give it back. */
typedef struct crew_sem {
    _Alignas(8) unsigned char opaque_[16];
} crew_sem;

/* 0, or CREW_EINVAL (NULL, value > INT32_MAX, max > INT32_MAX, or bounded
 * and value > max). */
CREW_API int crew_sem_init(crew_sem *s, unsigned value, unsigned max);
/* Takes one unit, waiting at most timeout: 0, CREW_ETIMEDOUT, CREW_EINVAL
 * (NULL, NaN timeout). */
CREW_API int crew_sem_acquire(crew_sem *s, double timeout);
/* 0 or CREW_EBUSY (value is 0). */
CREW_API int crew_sem_try(crew_sem *s);
/* Adds n units (Python's release(n)) and wakes that many waiters: 0,
 * CREW_EOVERFLOW (above max, or INT32_MAX when unbounded; nothing added),
 * CREW_EINVAL (n == 0). */
CREW_API int crew_sem_release(crew_sem *s, unsigned n);
/* The current value (a snapshot). 0 or CREW_EINVAL. */
CREW_API int crew_sem_value(crew_sem *s, unsigned *value);
/* Marks s destroyed (later calls return CREW_EINVAL until crew_sem_init).
 * Returns 0 or CREW_EINVAL. */
CREW_API int crew_sem_destroy(crew_sem *s);

/* ---------------------------------------------------------------- Event
 * A flag threads wait for. As in Python, a waiter returns 0 if the flag was
 * set at any moment after it started waiting, even if it was cleared again
 * before the waiter ran. */
typedef struct crew_event {
    _Alignas(8) unsigned char opaque_[16];
} crew_event;

/* Initialises e cleared. 0 or CREW_EINVAL. */
CREW_API int crew_event_init(crew_event *e);
/* Sets the flag and wakes every waiter. 0 or CREW_EINVAL. */
CREW_API int crew_event_set(crew_event *e);
/* Clears the flag. 0 or CREW_EINVAL. */
CREW_API int crew_event_clear(crew_event *e);
/* 1 if set, 0 if not, CREW_EINVAL. */
CREW_API int crew_event_is_set(crew_event *e);
/* Waits until the flag is set: 0 (set), CREW_ETIMEDOUT, CREW_EINVAL (NULL,
 * NaN timeout: also when the flag is set). */
CREW_API int crew_event_wait(crew_event *e, double timeout);
/* Marks e destroyed (later calls return CREW_EINVAL until crew_event_init).
 * Returns 0 or CREW_EINVAL. */
CREW_API int crew_event_destroy(crew_event *e);

/* ---------------------------------------------------------------- Barrier
 * parties threads (or processes) wait until all have arrived, then all go on
 * together; the barrier is then ready for the next round. As Python's
 * Barrier; its `action` is passed to each wait rather than stored (a function
 * pointer cannot be shared between processes: see
 * crew_barrier_wait_action), and its `timeout` is crew_barrier_timeout_set.
 *
 * Broken state (Python's BrokenBarrierError): crew_barrier_abort(), a wait
 * that times out, crew_barrier_reset() while threads wait, or the death of a
 * participant break it; every waiter of that round and every later wait gets
 * CREW_EBROKEN until crew_barrier_reset().
 *
 * Death rule: a thread becomes a tracked participant at its first
 * crew_barrier_wait() or crew_barrier_attach() (up to `parties` threads are
 * tracked; later ones still count but are not tracked). While threads wait,
 * they check every tracked participant that has not arrived in the current
 * round; if one has died, the barrier breaks (within ~50 ms). So attach each
 * participant at its start, and detach a thread that leaves the group for
 * good, or its exit breaks the barrier at the next round. */
#define CREW_BARRIER_MAX_PARTIES 64
typedef struct crew_barrier {
    _Alignas(8) unsigned char opaque_[576];
} crew_barrier;

/* 0, or CREW_EINVAL (NULL, parties 0 or > CREW_BARRIER_MAX_PARTIES). */
CREW_API int crew_barrier_init(crew_barrier *b, unsigned parties);
/* Arrives and waits for the others. On 0, *index (if not NULL) receives the
 * arrival order in this round, 0 .. parties-1, different for each waiter
 * (Python returns the same). A negative timeout (CREW_FOREVER) means the
 * barrier's default timeout (crew_barrier_timeout_set; forever when none
 * was set), as Python's wait(None); +INFINITY always waits forever.
 * Returns 0, CREW_EBROKEN, CREW_ETIMEDOUT (this
 * waiter's timeout broke the barrier; the others get CREW_EBROKEN),
 * CREW_EINVAL (NULL, NaN timeout: nothing happens to the barrier). */
CREW_API int crew_barrier_wait(crew_barrier *b, double timeout, unsigned *index);
/* Python's Barrier action: crew_barrier_wait, except that the waiter whose
 * arrival completes the round runs action(arg) before any waiter of the
 * round is released (the barrier's lock is not held: the action may call
 * crew_barrier_status_get, abort or reset). Each waiter passes its own
 * action -- pass the same one from every party (a NULL action runs nothing);
 * only the completing waiter's runs, once per round. The action returns 0
 * or a negative status; anything else breaks the barrier: the completing
 * waiter gets the action's status (CREW_EBROKEN for a positive one) and
 * every other waiter CREW_EBROKEN (Python re-raises the action's exception
 * in that thread). A waiter whose timeout passes while the action runs
 * breaks the barrier as at any time (Python waits for the action); the
 * completing waiter then gets CREW_EBROKEN. Returns as crew_barrier_wait,
 * plus the action's status. */
typedef int (*crew_barrier_action)(void *arg);
CREW_API int crew_barrier_wait_action(crew_barrier *b, double timeout, unsigned *index,
                                      crew_barrier_action action, void *arg);
/* Sets the default timeout of waits that pass a negative one (Python's
 * Barrier(timeout=...)); a negative value removes it (they wait forever).
 * Shared like the barrier: it applies to the waits of every process.
 * Returns 0 or CREW_EINVAL (NULL, not a barrier, NaN timeout). */
CREW_API int crew_barrier_timeout_set(crew_barrier *b, double timeout);
/* Registers the caller as a tracked participant without waiting: 0,
 * CREW_EBUSY (all `parties` slots are taken by other threads), CREW_EINVAL. */
CREW_API int crew_barrier_attach(crew_barrier *b);
/* Unregisters the caller: 0, CREW_ENOENT (not attached), CREW_EINVAL. */
CREW_API int crew_barrier_detach(crew_barrier *b);
/* Breaks the barrier: current and future waiters get CREW_EBROKEN. */
CREW_API int crew_barrier_abort(crew_barrier *b);
/* Returns the barrier to its empty, unbroken state; threads waiting now get
 * CREW_EBROKEN; tracked participants are forgotten (they are tracked again at
 * their next wait). 0 or CREW_EINVAL. */
CREW_API int crew_barrier_reset(crew_barrier *b);
/* Snapshot: parties, threads waiting in the current round, broken (0/1).
 * Any pointer may be NULL. 0 or CREW_EINVAL. */
CREW_API int crew_barrier_status_get(crew_barrier *b, unsigned *parties, unsigned *waiting,
                               int *broken);
/* 0, CREW_EBUSY (threads are waiting), CREW_EINVAL. */
CREW_API int crew_barrier_destroy(crew_barrier *b);


/* @@SECTION processes@@ */

/* ================================================================ processes
 *
 * A crew_process runs `fn(arg, len)` in a child process; fn's return value
 * (0..255) is the child's exit code. The `len` argument bytes are copied to
 * the child, which receives a pointer to its own copy (NULL when len == 0).
 * See docs/processes.md for the design.
 *
 * Start methods (as in Python's multiprocessing):
 *  - CREW_START_FORK: plain fork(). Fastest; the child is a copy of the parent.
 *    Only for single-threaded parents: a fork taken while another thread holds
 *    a lock (malloc's, stdio's, yours) leaves that lock held forever in the
 *    child. The child inherits every fd.
 *  - CREW_START_SPAWN: a fresh exec of the program itself (/proc/self/exe).
 *    Safe from threaded parents. The child finds fn by (module, offset) --
 *    no registration needed -- and runs it from a library constructor before
 *    main(), so main() is never run in the child (like Python's spawn, which
 *    does not run __main__). Globals have their initial values. A program in
 *    which libcrew's constructor does not run must call crew_child_main()
 *    first thing in main().
 *  - CREW_START_FORKSERVER (and CREW_START_DEFAULT): a small single-threaded
 *    server, a fresh exec of the program started once (lazily or with
 *    crew_forkserver_start()), forks each child on request. Safe from
 *    threaded parents and ~5x cheaper than spawn per start. The child is a
 *    fresh image like spawn's, and it is a direct child of the caller (made
 *    with CLONE_PARENT), so join, kill and pidfd work as for the others.
 *  Spawn and forkserver children hold only fds 0..2 (the caller's current
 *  ones) and pass_fds; fork children inherit everything.
 *
 * Lifetime guarantees: a child never outlives its parent (it gets SIGKILL
 * when the parent dies, even if the parent died before the child started).
 * Linux ties that signal to the parent *thread*: spawn children and the
 * forkserver are exec'd by a crew-owned thread that lives as long as the
 * process, so they (and forkserver children) live on when the thread that
 * started them exits; a FORK child, though, is killed when the thread that
 * forked it exits -- fork long-lived children from a long-lived thread.
 * Nothing is ever left as a zombie: join reaps, destroy kills and reaps.
 * If the process ignores SIGCHLD (SIG_IGN), the kernel reaps children itself
 * and join returns CREW_ECHILD.
 *
 * stdio: a child flushes stdout and stderr and ends with _exit(): the
 * parent's atexit handlers never run in it; a stream the task opened must be
 * closed by the task. Forkserver children get the server's environment and
 * working directory (those of the parent when the server started).
 */
typedef enum crew_start_method {
    CREW_START_DEFAULT = 0, /* = CREW_START_FORKSERVER (fork-safe) */
    CREW_START_FORK,
    CREW_START_SPAWN,
    CREW_START_FORKSERVER
} crew_start_method;

typedef struct crew_process crew_process;

/* Runs in the child; its return value is the exit code (only the low 8 bits
 * survive, as for exit()). */
typedef int (*crew_process_fn)(void *arg, size_t len);

/* A queue, pipe end, shared region or array handed to a child by name
 * (crew_process_options.handles): the child takes it with
 * crew_child_handle_queue() and its siblings. */
typedef enum crew_handle_kind {
    CREW_HANDLE_QUEUE = 1, /* object: crew_queue * */
    CREW_HANDLE_PIPE,      /* object: crew_pipe * (that end; the child holds it too) */
    CREW_HANDLE_SHM,       /* object: crew_shm * */
    CREW_HANDLE_ARRAY,     /* object: crew_array * or crew_value * */
    CREW_HANDLE_FDCHAN     /* object: crew_fdchan * (that end) */
} crew_handle_kind;

#define CREW_MAX_HANDLES 32     /* handles per start */
#define CREW_HANDLE_NAME_MAX 63 /* bytes of a handle's name */

typedef struct crew_handle {
    crew_handle_kind kind;
    const char *name; /* 1..CREW_HANDLE_NAME_MAX bytes, unique in the list */
    void *object;     /* the parent's handle; it stays the parent's */
} crew_handle;

typedef struct crew_process_options {
    crew_start_method method;
    const char *name;      /* the child's comm name (15 chars kept); NULL: inherited */
    const int *pass_fds;   /* fds the child receives at the SAME numbers */
    size_t n_pass_fds;     /* at most 240, handles included */
    /* Objects the child takes by name, for every start method, without fd
     * bookkeeping: each gets a descriptor made for the child (passed like a
     * pass_fd, at a number crew picks) and the child attaches its own
     * handle with crew_child_handle_queue(name, &q) and its siblings. The
     * parent's handles stay valid and the parent's. At most
     * CREW_MAX_HANDLES. */
    const crew_handle *handles;
    size_t n_handles; /* entries of handles */
} crew_process_options;

/* How a child ended: `code` is valid when `signal` is 0. */
typedef struct crew_exit {
    int code;        /* exit code 0..255 */
    int signal;      /* terminating signal, or 0 */
    int core_dumped; /* 1 if it dumped core */
} crew_exit;

/* Starts fn(arg, len) in a new child process. opts may be NULL (defaults).
 * On success *out owns the child; end it with crew_process_destroy().
 * A start that fails is reported here and leaves no child behind:
 * CREW_EINVAL (NULL out/fn, arg NULL with len > 0, bad method, pass_fds NULL
 * with n_pass_fds > 0; handles NULL with n_handles > 0, a handle of unknown
 * kind, NULL object, or a name that is NULL, empty, longer than
 * CREW_HANDLE_NAME_MAX or given twice), CREW_EBADF (a pass_fds entry is
 * not open), CREW_E2BIG (n_pass_fds > 240, n_handles > CREW_MAX_HANDLES,
 * or both together > 240), CREW_EPROTO (a handle is a broken queue or
 * pipe), CREW_ENOMEM, CREW_ENOTFOUND (spawn and
 * forkserver: fn is not in a module the child can load, e.g. a module that
 * was deleted or replaced since), CREW_EEXEC (the exec'd child did not come
 * up as a crew child), -errno of fork/clone/execve (CREW_EAGAIN,
 * CREW_E2BIG for an oversized environment, ...). Thread-safe. */
CREW_API int crew_process_start(crew_process **out, crew_process_fn fn, const void *arg,
                                size_t len, const crew_process_options *opts);

/* Waits for the child to end and reaps it; fills *st (may be NULL). Joining
 * an already reaped child returns its status again. CREW_ETIMEDOUT leaves it
 * running. CREW_EINVAL for NULL p or a NaN timeout, CREW_ECHILD if someone else reaped it
 * (waitpid(-1) elsewhere, SIGCHLD ignored). Thread-safe: several threads may
 * join the same child. */
CREW_API int crew_process_join(crew_process *p, double timeout, crew_exit *st);

/* Sends signal sig (0 only checks) to the child. Never hits a recycled pid:
 * crew reaps only under the same lock, so an unreaped child's pid is still
 * its own. CREW_ESRCH once it has been reaped, CREW_EINVAL for a NULL p or
 * bad signal. Thread-safe. */
CREW_API int crew_process_kill(crew_process *p, int sig);

/* The child's pid (stays valid as a number until destroy), or CREW_EINVAL. */
CREW_API pid_t crew_process_pid(const crew_process *p);

/* A pidfd for the child, owned by p (do not close it): it becomes readable
 * (POLLIN) when the child ends, so a pool can watch many children with
 * poll/epoll. Opened on the first call (a plain start+join never pays for
 * it), so call it before joining: CREW_ESRCH if the child was reaped before
 * any pidfd was asked for; -errno of pidfd_open (CREW_EMFILE); CREW_EINVAL
 * for NULL p. Thread-safe. */
CREW_API int crew_process_pidfd(const crew_process *p);

/* Ends p: a child still running gets SIGKILL and is reaped; then frees p.
 * Never leaves a zombie. NULL is a no-op returning CREW_EINVAL. Not to be
 * called while another thread still uses p. */
CREW_API int crew_process_destroy(crew_process *p);

/* Starts the forkserver now (otherwise the first forkserver start does it,
 * paying one exec of the program, ~1 ms). Call it early -- best before the
 * program creates threads or grows large -- to keep that cost off the first
 * start. Idempotent; returns 0, -errno of the exec, or CREW_EEXEC.
 * Thread-safe. A forked child of this process starts its own forkserver. */
CREW_API int crew_forkserver_start(void);

/* Stops this process's forkserver (if running) and reaps it. Children it
 * started keep running and are still joined as usual. The next forkserver
 * start starts a new one. Thread-safe. */
CREW_API int crew_forkserver_stop(void);

/* The forkserver's pid, or 0 when none is running. */
CREW_API pid_t crew_forkserver_pid(void);

/* A crew spawn or forkserver child is normally dispatched by a libcrew
 * constructor before main(). Call crew_child_main() first thing in main()
 * when that constructor cannot run in your program, or when the tasks need
 * something main() sets up before it: then also set CREW_CHILD_DEFER=1 in
 * the environment (of the parent; children inherit it) and the constructor
 * leaves the dispatch to this call. In a crew child it runs the child's work
 * and never returns; otherwise it returns 0 at once. A child that never
 * reaches the dispatch is reported by crew_process_start as CREW_EEXEC after
 * 30 s. */
CREW_API int crew_child_main(int argc, char **argv);


/* @@SECTION shm@@ */

/* ================================================================ shared memory
 *
 * A crew_shm is a region of memory shared between processes, backed by
 * memfd_create: nothing ever appears in /dev/shm or on disk, and the memory
 * is freed when the last mapping and fd are gone -- even if every process
 * using it was SIGKILLed. The region is MAP_SHARED, so fork children inherit
 * it (same address); to give it to a spawn or forkserver child (or any
 * process), pass crew_shm_fd() in pass_fds and call crew_shm_attach() there.
 * The memfd is sealed against growing and shrinking, so no peer can make
 * another fault by truncating it. Addresses differ between processes that
 * attached separately: store offsets (crew_shm_offset / crew_shm_at), not
 * pointers, inside the region. crew sync objects (crew_lock, ...) work in it.
 * Process pools hand regions to their workers themselves: see
 * crew_pool_submit_shm and crew_pool_map (no copy of data in a region).
 */
typedef struct crew_shm crew_shm;

typedef struct crew_shm_options {
    const char *name; /* memfd name shown in /proc/<pid>/fd (debugging); NULL: "crew-shm" */
    int heap;         /* nonzero: manage the region with crew_shm_alloc/free */
} crew_shm_options;

/* Creates a zero-filled region of `size` bytes (rounded up to the page size)
 * and maps it. opts may be NULL. CREW_EINVAL (NULL out, size 0, heap region
 * under 4 KiB), CREW_EOVERFLOW (size too large to round up or to map: near
 * SIZE_MAX, a negative int cast), CREW_ENOMEM, -errno of
 * memfd_create/ftruncate/mmap. The handle
 * is not shared; the memory is. */
CREW_API int crew_shm_create(crew_shm **out, size_t size, const crew_shm_options *opts);
/* Maps a region received as an fd (from crew_shm_fd of another process);
 * the fd is duplicated, the caller keeps its own. CREW_EBADF, CREW_EINVAL
 * (not a sealed crew memfd), -errno. */
CREW_API int crew_shm_attach(crew_shm **out, int fd);
/* The start of the mapping in this process (NULL for NULL s). */
CREW_API void *crew_shm_ptr(const crew_shm *s);
/* The region's size in bytes (0 for NULL s). */
CREW_API size_t crew_shm_size(const crew_shm *s);
/* The region's memfd (owned by s, close-on-exec): pass it in pass_fds. */
CREW_API int crew_shm_fd(const crew_shm *s);
/* Byte offset of p in the region: 0 or CREW_ERANGE (p outside it). */
CREW_API int crew_shm_offset(const crew_shm *s, const void *p, size_t *off);
/* The address of offset `off` in this process, or NULL if out of range. */
CREW_API void *crew_shm_at(const crew_shm *s, size_t off);
/* Unmaps the region in this process and closes its fd; the memory lives on
 * while other processes map it. CREW_EINVAL for NULL. */
CREW_API int crew_shm_destroy(crew_shm *s);

/* Allocator inside a region created with opts.heap (first fit, coalescing,
 * 16-byte aligned), shared by every process that maps the region and
 * protected by a crew_lock inside it. *off receives the block's offset (use
 * crew_shm_at in each process). crew_shm_alloc: 0, CREW_ENOMEM (no block
 * large enough), CREW_EINVAL (size 0, larger than the region -- a size near
 * SIZE_MAX among them --, or not a heap region). crew_shm_free:
 * 0, CREW_EINVAL (not a live block). A process killed inside alloc or free
 * leaks at most the block it was handling; the heap stays usable. */
CREW_API int crew_shm_alloc(crew_shm *s, size_t size, size_t *off);
CREW_API int crew_shm_free(crew_shm *s, size_t off);
/* Free bytes left in a heap region (for tests and statistics). */
CREW_API int crew_shm_heap_free_bytes(crew_shm *s, size_t *bytes);

/* ---------------------------------------------------------------- Value, Array
 * Python's multiprocessing.Value and Array: `count` elements of one type in a
 * shared region of their own, with an optional embedded crew_lock. A value is
 * an array of one element. The elements start zeroed and 64-byte aligned.
 * get/set/add take the embedded lock (when there is one) around the access;
 * for compound updates take crew_array_lock() yourself. Handles are per
 * process: fork children inherit them; other processes attach by fd. */
typedef enum crew_type {
    CREW_TYPE_BYTES = 0, /* elem_size bytes each (get/set copy them) */
    CREW_TYPE_I32,
    CREW_TYPE_I64,
    CREW_TYPE_U32,
    CREW_TYPE_U64,
    CREW_TYPE_DOUBLE
} crew_type;

typedef struct crew_array crew_array;
typedef struct crew_array crew_value;

#define CREW_ARRAY_LOCK 1u /* flags: embed a crew_lock */

/* elem_size is used for CREW_TYPE_BYTES only (ignored otherwise). Returns 0,
 * CREW_EINVAL (NULL out, count 0, bad type, BYTES with elem_size 0),
 * CREW_EOVERFLOW (too large), CREW_ENOMEM, -errno. */
CREW_API int crew_array_create(crew_array **out, crew_type type, size_t elem_size, size_t count,
                               unsigned flags);
CREW_API int crew_value_create(crew_value **out, crew_type type, size_t elem_size, unsigned flags);
/* Maps an array/value received as crew_array_fd() of another process. */
CREW_API int crew_array_attach(crew_array **out, int fd);
/* The first element (NULL for NULL a); elements are contiguous. */
CREW_API void *crew_array_data(const crew_array *a);
/* The number of elements, and the size of one in bytes (0 for NULL a). */
CREW_API size_t crew_array_count(const crew_array *a);
CREW_API size_t crew_array_elem_size(const crew_array *a);
/* The embedded lock, or NULL when created without CREW_ARRAY_LOCK. */
CREW_API crew_lock *crew_array_lock(const crew_array *a);
/* The region's memfd (owned by a, as crew_shm_fd), for crew_array_attach in
 * another process; CREW_EINVAL for NULL a. */
CREW_API int crew_array_fd(const crew_array *a);
/* Copy element i out / in (elem_size bytes), under the lock if any.
 * CREW_ERANGE for i >= count, CREW_EINVAL for NULL; lock errors (e.g.
 * CREW_EOWNERDEAD is repaired: the element copy is still done). */
CREW_API int crew_array_get(crew_array *a, size_t i, void *out);
CREW_API int crew_array_set(crew_array *a, size_t i, const void *in);
/* Adds delta to numeric element i (for integer types delta is truncated to
 * an integer and the sum wraps, as C unsigned arithmetic) under the lock, or
 * atomically when there is no lock (not for DOUBLE: CREW_EINVAL without a
 * lock). *result (may be NULL) receives the new value converted to double.
 * CREW_EINVAL for BYTES, CREW_ERANGE for i >= count or an integer delta
 * beyond +-9.2e18 (or NaN). */
CREW_API int crew_array_add(crew_array *a, size_t i, double delta, double *result);
/* Unmaps the array in this process and frees the handle; the memory lives on
 * while other processes map it. Returns 0 or CREW_EINVAL (NULL). */
CREW_API int crew_array_destroy(crew_array *a);

/* @@SECTION queue@@ */

/* ================================================================= queues
 *
 * crew_queue: a bounded multi-producer multi-consumer queue of
 * variable-size messages (byte strings, length 0 allowed) that lives in
 * shared memory (a memfd: nothing appears in /dev/shm and the memory goes
 * away with the last process that maps it, even after SIGKILL). A queue made
 * before fork() works in the child through the same handle pointer; another
 * process (for example an exec'd one) reaches it through crew_queue_dup_fd() /
 * crew_queue_attach(). All calls are thread-safe and process-shared.
 *
 * Order: FIFO -- messages from one producer thread come out in the order it
 * put them; several producers interleave.
 * Robustness: a producer or consumer SIGKILLed at any point leaves the queue
 * consistent and never blocks the others for good (its lock is taken over
 * once its death is noticed, within ~20 ms). A consumer killed inside a get
 * may lose the one message it was taking (at most once for the message in
 * flight); a producer killed inside a put may or may not have queued its
 * message, never half of it. See docs/queue.md.
 * Hostile peers: a process that holds the fd may write anything into the
 * queue's memory; it cannot resize it (the memfd is sealed against growing
 * and shrinking: ftruncate fails with EPERM) and it cannot crash, hang or
 * corrupt the memory of another process. Every value read from the shared
 * memory is checked first; a violation makes the queue broken for every
 * process: that call and every later one on it (destroy excepted) return
 * CREW_EPROTO, also if the peer repairs the header afterwards. A call that
 * returns CREW_EPROTO may or may not have done its work. Short of breaking
 * it, such a peer can lose or forge messages and hold the queue's locks
 * (calls then time out as behind any held lock). See docs/queue.md.
 * Waiting: blocked calls spin ~20 us, then sleep on a futex (no CPU).
 */
typedef struct crew_queue crew_queue;

typedef struct crew_queue_options {
    /* Bytes of message storage; 0 = 1 MiB. Rounded up to a multiple of 8
     * (at least 64); more than 2^40 is CREW_EINVAL. Each message takes
     * 8 bytes of header plus its length rounded up to 8. */
    size_t capacity;
    /* Largest message accepted; 0 = the largest that fits
     * (capacity - 8, at most 2^32 - 2). Larger than that is CREW_EINVAL. */
    size_t max_message;
    /* Non-zero: a joinable queue (Python's JoinableQueue): every put counts
     * an unfinished task, crew_queue_task_done() finishes one and
     * crew_queue_join() waits until none is left. The count lives in the
     * queue's shared memory, so it is one count for every process. Costs
     * two atomic operations per put. */
    int joinable;
} crew_queue_options;

/* Creates a queue. opts may be NULL (defaults). Returns 0, CREW_EINVAL (NULL
 * out, bad options), CREW_ENOMEM, or a system error from memfd/mmap. */
CREW_API int crew_queue_create(crew_queue **out, const crew_queue_options *opts);

/* Unmaps this process's view and frees the handle. It does not close the
 * queue: other processes keep using it; the memory is freed when the last
 * one unmaps. Not to be called while other threads of this process use q.
 * Returns 0 or CREW_EINVAL (NULL). */
CREW_API int crew_queue_destroy(crew_queue *q);

/* A new file descriptor for the queue, owned by the caller and without
 * FD_CLOEXEC so that it survives exec: pass its number to another process,
 * which calls crew_queue_attach(), then close it. Returns 0, CREW_EINVAL,
 * CREW_EPROTO (broken), or a system error (CREW_EMFILE). */
CREW_API int crew_queue_dup_fd(crew_queue *q, int *fd_out);

/* Maps the queue behind `fd` (from crew_queue_dup_fd) into this process. The
 * handle keeps its own duplicate: the caller still owns and closes fd.
 * Returns 0, CREW_EBADF, CREW_EINVAL (fd is not a crew queue: not a memfd
 * sealed with F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL -- one a peer could
 * truncate under us -- or not a queue of this crew version), CREW_EPROTO (a
 * crew queue whose header is corrupted -- it is then marked broken for its
 * other users -- or one already broken), CREW_ENOMEM, or a system error. */
CREW_API int crew_queue_attach(crew_queue **out, int fd);

/* Puts a copy of msg[0..len). Waits for room up to `timeout` seconds.
 * Returns 0; CREW_E2BIG if len > max_message (never truncated); CREW_ECLOSED
 * after crew_queue_close(); CREW_EAGAIN when timeout is 0 and there is no
 * room; CREW_ETIMEDOUT; CREW_EINVAL (NULL q, NULL msg with len > 0, NaN
 * timeout);
 * CREW_EDEADLK if called from this queue's put_with callback; CREW_EPROTO
 * (broken). */
CREW_API int crew_queue_put(crew_queue *q, const void *msg, size_t len, double timeout);
/* crew_queue_put with timeout 0: CREW_EAGAIN when full. */
CREW_API int crew_queue_try_put(crew_queue *q, const void *msg, size_t len);

/* Takes the oldest message into buf (bufcap bytes); *len_out (may be NULL)
 * receives its length. Waits up to `timeout` for one. Returns 0; CREW_EOF
 * once the queue is closed and drained; CREW_E2BIG when the message is
 * longer than bufcap -- *len_out then holds the size needed and the message
 * stays at the head of the queue (retry with a bigger buffer); CREW_EAGAIN
 * (timeout 0, empty); CREW_ETIMEDOUT; CREW_EINVAL (NULL q, NULL buf with
 * bufcap > 0, NaN timeout); CREW_EDEADLK if called from this queue's get_with callback;
 * CREW_EPROTO (broken). */
CREW_API int crew_queue_get(crew_queue *q, void *buf, size_t bufcap, size_t *len_out,
                            double timeout);
/* crew_queue_get with timeout 0: CREW_EAGAIN when empty. */
CREW_API int crew_queue_try_get(crew_queue *q, void *buf, size_t bufcap, size_t *len_out);

/* Zero-copy variants for streaming. put_with reserves `len` bytes in the
 * queue and calls fill(dst, len, arg) to write the message in place; get_with
 * calls fn(msg, len, arg) on the oldest message where it lies, then removes
 * it. Callbacks run while this side of the queue is locked: keep them short,
 * and do not call get (from fn) or put (from fill) on the same queue
 * (CREW_EDEADLK). A process killed inside fill queues nothing; one killed
 * inside fn leaves the message queued for the next consumer (it may thus be
 * seen twice: at least once for get_with). Return codes as put/get (no
 * E2BIG for get_with); CREW_EINVAL for NULL q or callback, NaN timeout.
 * The bytes fn sees lie in shared memory: a hostile peer can change them
 * while fn reads (never their length, nor where they lie). */
typedef void (*crew_queue_fill_fn)(void *dst, size_t len, void *arg);
typedef void (*crew_queue_read_fn)(const void *msg, size_t len, void *arg);
CREW_API int crew_queue_put_with(crew_queue *q, size_t len, crew_queue_fill_fn fill, void *arg,
                                 double timeout);
CREW_API int crew_queue_get_with(crew_queue *q, crew_queue_read_fn fn, void *arg,
                                 double timeout);

/* Closes the queue for every process: later puts return CREW_ECLOSED, gets
 * drain what is left and then return CREW_EOF; every waiter wakes.
 * Idempotent. A put in progress either lands before the close or sees it;
 * close waits at most ~1 s for it (a longer put_with callback, or a peer
 * holding the lock, does not stop the close: that one put may then land
 * after consumers have seen CREW_EOF). Returns 0, CREW_EINVAL or
 * CREW_EPROTO (broken). */
CREW_API int crew_queue_close(crew_queue *q);

typedef struct crew_queue_status {
    size_t capacity;     /* data bytes (after rounding) */
    size_t max_message;  /* largest message accepted */
    size_t used;         /* bytes queued now, headers and padding included */
    int closed;          /* 1 after crew_queue_close */
    unsigned recoveries; /* locks taken over from dead processes, ever */
} crew_queue_status;
/* A snapshot of the queue. Returns 0, CREW_EINVAL or CREW_EPROTO
 * (broken). */
CREW_API int crew_queue_status_get(crew_queue *q, crew_queue_status *out);

/* Closes the queue at once (Python's shutdown(immediate=True)): as
 * crew_queue_close, and every message still queued is dropped, so gets
 * return CREW_EOF from now on; blocked putters get CREW_ECLOSED and blocked
 * getters CREW_EOF, at once. On a joinable queue the dropped messages count
 * as done (join returns once the tasks already taken are done). *dropped
 * (may be NULL) receives how many were dropped. A get in progress finishes
 * first; the drop waits for it at most ~1 s (as close waits for a put), and
 * past that drops nothing (gets then drain what is left, as after
 * crew_queue_close). Idempotent. Returns 0, CREW_EINVAL or CREW_EPROTO
 * (broken). */
CREW_API int crew_queue_close_now(crew_queue *q, size_t *dropped);

/* Python's JoinableQueue.task_done(): marks one message put earlier as
 * processed. Returns 0; CREW_ESTATE when no task is unfinished -- more
 * task_done calls than messages put (Python raises ValueError), nothing
 * changed; CREW_ENOTSUP (not a joinable queue); CREW_EINVAL; CREW_EPROTO
 * (broken). */
CREW_API int crew_queue_task_done(crew_queue *q);

/* Python's JoinableQueue.join(), with a timeout: waits until every message
 * ever put has been task_done'd (or dropped by crew_queue_close_now), in
 * every process. Returns 0; CREW_ETIMEDOUT (timeout 0: a poll); CREW_ENOTSUP
 * (not joinable); CREW_EINVAL (NULL q, NaN timeout); CREW_EPROTO (broken,
 * also while waiting). A peer that corrupts the count can only make join
 * time out. A producer killed inside a put is settled by the next put
 * (its task is counted only if its message was queued). */
CREW_API int crew_queue_join(crew_queue *q, double timeout);

/* Snapshot counts: *messages (Python's qsize()) the messages queued now,
 * *unfinished the tasks not yet done (0 unless joinable); either may be
 * NULL. Approximate under concurrent use, as Python's: a process killed in
 * the middle of a put or get may leave the message count one off while
 * anything is queued (it is 0 whenever the queue is empty). Returns 0,
 * CREW_EINVAL or CREW_EPROTO (broken). */
CREW_API int crew_queue_counts_get(crew_queue *q, size_t *messages, size_t *unfinished);

/* Python's empty(): 1 when no message is queued, else 0. A snapshot.
 * Returns 1, 0, CREW_EINVAL or CREW_EPROTO (broken). */
CREW_API int crew_queue_empty(crew_queue *q);

/* Python's full(): 1 when not even an empty message would fit now, else 0
 * (a byte-bounded queue: a larger message may not fit while this says 0;
 * use crew_queue_try_put to know). Returns 1, 0, CREW_EINVAL or
 * CREW_EPROTO (broken). */
CREW_API int crew_queue_full(crew_queue *q);

/* 1 if q was created joinable (options.joinable), else 0; CREW_EINVAL or
 * CREW_EPROTO (broken). */
CREW_API int crew_queue_joinable(crew_queue *q);

/* ================================================================== pipes
 *
 * crew_pipe: a duplex channel of whole messages between two ends, for two
 * processes (or threads). Built on two crew_queue rings in one memfd, so it
 * costs the same as a queue. Each end may be used by several threads.
 *
 * Ends are held like file descriptors (the kernel does the counting: each
 * end is an open file description carrying a lock): crew_pipe_create()
 * gives both ends to the calling process; fork() gives the child a hold on
 * every end the parent holds; crew_pipe_dup_fd() and crew_pipe_attach() pass a
 * hold to another process; crew_pipe_destroy() drops this process's hold,
 * and so does exec() or death (SIGKILL included, reaped or not). An end is
 * closed when crew_pipe_close() is called on it or when nobody holds it any
 * more. The peer of a closed end reads what was sent, then gets CREW_EOF;
 * its sends get CREW_EPIPE. So, as with pipe(2): after fork, each process
 * destroys the end it does not use -- a process that keeps the peer's end
 * keeps it open and will not see EOF when the peer dies. A peer's death is
 * noticed while waiting, within ~32 ms; a send that finds room succeeds
 * even if the peer has just died (the message is then lost with it).
 * Hostile peers: as for queues (sealed memfd, every shared value checked);
 * a violation found on either direction breaks the whole pipe: every later
 * call on either end (destroy excepted) returns CREW_EPROTO.
 */
typedef struct crew_pipe crew_pipe;

typedef struct crew_pipe_options {
    size_t capacity;    /* bytes per direction; 0 = 1 MiB (as for queues) */
    size_t max_message; /* 0 = the largest that fits */
    /* Non-zero: a one-way pipe (Python's Pipe(duplex=False)): *a only
     * receives and *b only sends; the wrong call on an end is CREW_EBADF
     * (as write(2) on a read-only descriptor). Ends passed to other
     * processes keep their direction. */
    int one_way;
} crew_pipe_options;

/* Creates a pipe; *a and *b are its two ends (one_way: *a the receive end,
 * *b the send end, in Python's order). Returns 0, CREW_EINVAL,
 * CREW_ENOMEM, or a system error. */
CREW_API int crew_pipe_create(crew_pipe **a, crew_pipe **b, const crew_pipe_options *opts);

/* Sends a copy of msg[0..len) to the other end, waiting up to `timeout` for
 * room. Returns 0; CREW_EPIPE (the other end is closed or its holders died);
 * CREW_ECLOSED (this end was closed); CREW_E2BIG; CREW_EAGAIN (timeout 0,
 * full); CREW_ETIMEDOUT; CREW_EINVAL (NULL p, NULL msg with len > 0, NaN
 * timeout); CREW_EBADF (the receive end of a one-way pipe); CREW_EDEADLK
 * (lock word names this thread: a hostile peer); CREW_EPROTO (broken). */
CREW_API int crew_pipe_send(crew_pipe *p, const void *msg, size_t len, double timeout);

/* Receives the next whole message, as crew_queue_get (CREW_E2BIG leaves it
 * queued and reports its size). Returns 0; CREW_EOF when the other end is
 * closed or dead and everything it sent has been read; CREW_ECLOSED (this
 * end was closed); CREW_E2BIG; CREW_EAGAIN; CREW_ETIMEDOUT; CREW_EINVAL
 * (NULL p, NULL buf with bufcap > 0, NaN timeout); CREW_EBADF (the send end
 * of a one-way pipe); CREW_EDEADLK (as for send; or from this end's own
 * recv_with callback); CREW_EPROTO (broken). */
CREW_API int crew_pipe_recv(crew_pipe *p, void *buf, size_t bufcap, size_t *len_out,
                            double timeout);

/* Zero-copy receive: fn(msg, len, arg) on the message in place (see
 * crew_queue_get_with). Returns as crew_pipe_recv. */
CREW_API int crew_pipe_recv_with(crew_pipe *p, crew_queue_read_fn fn, void *arg, double timeout);

/* Python's Connection.poll(timeout): whether a message can be received now,
 * without receiving it; waits up to `timeout` for one (0: look once). A
 * message of 0 bytes counts. Returns 1 (a message is ready: *len_out, may
 * be NULL, receives its length, and the next crew_pipe_recv on this end
 * gets it unless another thread of this end takes it first), 0 (none by
 * the deadline), CREW_EOF (the other end is closed or gone and everything
 * it sent has been received: a recv would return CREW_EOF too; Python's
 * poll returns True there), CREW_ECLOSED (this end was closed),
 * CREW_EBADF (the send end of a one-way pipe), CREW_EINVAL (NULL p, NaN
 * timeout), CREW_EDEADLK, CREW_EPROTO (broken). */
CREW_API int crew_pipe_poll(crew_pipe *p, size_t *len_out, double timeout);

/* 1 if p is an end of a one-way pipe, 0 if of a duplex one; CREW_EINVAL or
 * CREW_EPROTO (broken). */
CREW_API int crew_pipe_one_way(crew_pipe *p);

/* Closes this end for every holder now (the peer sees EOF after draining).
 * Idempotent. Waits for a send in progress as crew_queue_close does (at
 * most ~1 s per direction). Returns 0, CREW_EINVAL or CREW_EPROTO
 * (broken). */
CREW_API int crew_pipe_close(crew_pipe *p);

/* Drops this process's hold on the end and frees the handle; the end closes
 * when no live process holds it any more (a broken pipe is not closed: its
 * holders get CREW_EPROTO). Returns 0 or CREW_EINVAL. */
CREW_API int crew_pipe_destroy(crew_pipe *p);

/* A new descriptor (caller-owned, no FD_CLOEXEC) naming this end, for
 * crew_pipe_attach() in another process. It holds the end until closed in
 * every process that has it: close it once the receiver has attached.
 * Needs /proc. Returns 0, CREW_EINVAL, CREW_EPROTO (broken), or a system
 * error. */
CREW_API int crew_pipe_dup_fd(crew_pipe *p, int *fd_out);

/* Takes a hold on the end named by fd (from crew_pipe_dup_fd); the caller still
 * owns fd. Returns 0, CREW_EBADF, CREW_EINVAL (not a crew pipe end: as for
 * crew_queue_attach, an unsealed memfd is refused), CREW_EPROTO (a crew
 * pipe whose header or rings are corrupted -- then marked broken for every
 * holder -- or one already broken), CREW_ECLOSED (that end is already
 * closed), CREW_ENOMEM, or a system error. */
CREW_API int crew_pipe_attach(crew_pipe **out, int fd);

/* ---------------------------------------------------------------- Fd channel
 * crew_fdchan: messages that carry file descriptors between two processes
 * (Python's multiprocessing.reduction.send_handle / recv_handle), for what
 * a crew_pipe cannot do: its shared-memory rings keep the kernel off the
 * data path, and only the kernel moves a descriptor (docs/queue.md). A
 * Unix SOCK_SEQPACKET socketpair: each message travels with its
 * descriptors in one datagram, so they never part. Ends are held like
 * descriptors (fork shares them; crew_fdchan_dup_fd / crew_fdchan_attach,
 * or crew_process_options.handles, pass one to another process); an end
 * whose every holder is gone (closed, exited, killed) is EOF for its peer.
 * Calls are thread-safe and process-shared; with several receivers on one
 * end, give each buffers of the maximum sizes (see crew_fdchan_recv). */
typedef struct crew_fdchan crew_fdchan;

#define CREW_FDCHAN_MAX_MESSAGE 65536 /* bytes of one message */
#define CREW_FDCHAN_MAX_FDS 16        /* descriptors with one message */

/* Creates a channel; *a and *b are its ends. Returns 0, CREW_EINVAL (NULL,
 * or a == b), CREW_ENOMEM, or a system error (CREW_EMFILE). */
CREW_API int crew_fdchan_create(crew_fdchan **a, crew_fdchan **b);

/* Sends msg[0..len) (0 bytes allowed) with copies of fds[0..n_fds) -- the
 * caller keeps its own and may close them at once. Waits up to `timeout`
 * for room. Returns 0; CREW_E2BIG (len > CREW_FDCHAN_MAX_MESSAGE, n_fds >
 * CREW_FDCHAN_MAX_FDS); CREW_EBADF (an fds entry is not open); CREW_EPIPE
 * (the other end is gone, or either end was closed); CREW_EAGAIN (timeout
 * 0, no room); CREW_ETIMEDOUT; CREW_EINVAL (NULL c, NULL msg with len > 0,
 * NULL fds with n_fds > 0, NaN timeout); or a system error. */
CREW_API int crew_fdchan_send(crew_fdchan *c, const void *msg, size_t len, const int *fds,
                              size_t n_fds, double timeout);

/* Receives the next message into buf (bufcap bytes) and its descriptors
 * into fds_out (room for fds_cap): new descriptors, owned by the caller,
 * close-on-exec. *len_out and *n_fds_out (either may be NULL) receive the
 * sizes. Waits up to `timeout`. Returns 0; CREW_E2BIG (the message is
 * longer than bufcap or carries more than fds_cap descriptors: the sizes
 * needed are in *len_out / *n_fds_out and the message stays queued);
 * CREW_EOF (the other end is gone and everything it sent was received, or
 * this end was closed); CREW_EAGAIN (timeout 0, nothing queued);
 * CREW_ETIMEDOUT; CREW_EIO (another receiver of this end took the message
 * this call had sized, and the next one did not fit: it was lost, its
 * descriptors closed); CREW_EPROTO (a datagram no crew sender made:
 * dropped); CREW_EINVAL (NULL c, NULL buf with bufcap > 0, NULL fds_out
 * with fds_cap > 0, NaN timeout); or a system error (CREW_EMFILE). */
CREW_API int crew_fdchan_recv(crew_fdchan *c, void *buf, size_t bufcap, size_t *len_out,
                              int *fds_out, size_t fds_cap, size_t *n_fds_out, double timeout);

/* Shuts this end down for every holder: the peer receives what was sent,
 * then CREW_EOF; sends from either side then get CREW_EPIPE. Returns 0,
 * CREW_EINVAL, or a system error. */
CREW_API int crew_fdchan_close(crew_fdchan *c);

/* Drops this process's hold on the end and frees the handle. Returns 0 or
 * CREW_EINVAL. */
CREW_API int crew_fdchan_destroy(crew_fdchan *c);

/* A new descriptor (caller-owned, no FD_CLOEXEC) for the end, for
 * crew_fdchan_attach in another process; it holds the end until closed.
 * Returns 0, CREW_EINVAL, or a system error. */
CREW_API int crew_fdchan_dup_fd(crew_fdchan *c, int *fd_out);

/* Takes a hold on the end behind fd (from crew_fdchan_dup_fd); the caller
 * still owns fd. Returns 0, CREW_EBADF (fd not open), CREW_EINVAL (NULL
 * out, or fd is not a Unix SOCK_SEQPACKET socket), CREW_ENOMEM, or a system
 * error. */
CREW_API int crew_fdchan_attach(crew_fdchan **out, int fd);

/* ---------------------------------------------------------------- Child handles
 * The child's side of crew_process_options.handles (declared here, after
 * the objects they return). */
/* In a child started with crew_process_options.handles: attaches the queue
 * the parent handed over as `name` and gives the child its own handle in
 * *out (destroy it when done; the descriptor it came by is closed, so the
 * handle is all that holds the object). Each name is taken once. Works for
 * every start method, fork included. Returns 0; CREW_ENOTFOUND (no handle
 * of that name -- or this process was not started with handles);
 * CREW_EINVAL (NULL name or out, or `name` is a handle of another kind);
 * CREW_ESTATE (taken already); or an error of crew_queue_attach
 * (CREW_EPROTO, CREW_ENOMEM, ...). Thread-safe. */
CREW_API int crew_child_handle_queue(const char *name, crew_queue **out);
/* As crew_child_handle_queue, for a pipe end (crew_pipe_attach's errors; a
 * one-way end keeps its direction). Destroying the child's handle releases
 * the child's hold on the end. */
CREW_API int crew_child_handle_pipe(const char *name, crew_pipe **out);
/* As crew_child_handle_queue, for a shared region (crew_shm_attach's
 * errors). */
CREW_API int crew_child_handle_shm(const char *name, crew_shm **out);
/* As crew_child_handle_queue, for an array or value (crew_array_attach's
 * errors). */
CREW_API int crew_child_handle_array(const char *name, crew_array **out);
/* As crew_child_handle_queue, for an fd channel end (crew_fdchan_attach's
 * errors). */
CREW_API int crew_child_handle_fdchan(const char *name, crew_fdchan **out);

/* @@SECTION pool@@ */
/* ================================================================ pool
 *
 * One executor over two backends. A pool runs tasks on worker threads
 * (CREW_THREADS) or worker processes (CREW_PROCESSES); the kind is an option
 * and the same program runs on either by changing it.
 *
 * A task is a function plus an argument of bytes that the pool copies at
 * submit (the caller's buffer may be reused as soon as submit returns). It
 * writes up to result_cap bytes of result and returns 0 or a negative status.
 * submit gives a future: wait on it (with a timeout), poll it, cancel it, give
 * it a completion callback, read its status, result bytes and, for failures,
 * the details (which worker process, which signal or exit code, which task).
 *
 * Every future ends in exactly one final status:
 *   0 or the task's own negative return   the task ran to the end
 *   CREW_ECANCELED   cancelled while queued (never ran), by
 *                    crew_future_cancel, crew_pool_shutdown(p, 1) or
 *                    crew_pool_destroy; or cancelled while running: by
 *                    crew_future_cancel returning 0, or stopped by
 *                    crew_pool_shutdown(p, 1) / crew_pool_destroy
 *                    (processes: worker killed; threads: crew_task_cancelled()
 *                    turns 1) -- the task's return then does not matter
 *   CREW_ETIMEDOUT   ran past options.task_timeout (threads: cooperative,
 *                    see below; processes: the worker was stopped)
 *   CREW_ECRASHED    processes only: the worker died while running it
 *                    (crew_future_failure says how; a map: only the item
 *                    it was running)
 *   CREW_EBROKEN     processes only: the pool's crash breaker tripped
 *   CREW_E2BIG       the task set *result_len above result_cap (no result
 *                    byte is kept: never a silently shortened result)
 *   CREW_ENOMEM      the result could not be stored
 *
 * Thread pools: per-worker deques with work stealing plus an injector. A task
 * may submit sub-tasks (crew_task_pool) and wait on them: a worker that waits
 * forever keeps running other queued work meanwhile, so nesting does not
 * deadlock (a wait with a finite timeout parks instead, and times out if no
 * worker is free to run what it waits for).
 * Cancelling or timing out a running thread task is cooperative: the task
 * polls crew_task_cancelled(). A crash in a thread task (SIGSEGV, abort)
 * takes the whole process down: that is the trade-off of threads; use a
 * process pool for code that may crash.
 *
 * Process pools: see the processes notes in docs/DESIGN.md; tasks cross the
 * process boundary through shared memory, crashed or hung workers are
 * replaced, the other tasks are not affected.
 */
typedef enum crew_pool_kind { CREW_THREADS = 0, CREW_PROCESSES = 1 } crew_pool_kind;
typedef struct crew_pool crew_pool;
typedef struct crew_future crew_future;
/* The context of the running task; valid only during the task call. */
typedef struct crew_task crew_task;

/* A task reads arg_len bytes at arg, may write up to result_cap bytes at
 * result and set *result_len (it starts at 0), and returns 0 or a negative
 * status that becomes the future's status (a positive return is treated as
 * 0). *result_len above result_cap is an error whatever it returns: the
 * future ends CREW_E2BIG and keeps no result bytes (a map item: its status
 * is CREW_E2BIG; its output record holds what the task wrote there). For
 * process pools arg and result live in shared memory. For map tasks arg is
 * one input record and result its output record (result_cap = out_size). */
typedef int (*crew_task_fn)(crew_task *t, const void *arg, size_t arg_len, void *result,
                            size_t result_cap, size_t *result_len);

/* 1 when the running task should stop: its future was cancelled, the pool is
 * being destroyed, or (thread pools) the task ran past options.task_timeout.
 * 0 otherwise, or if t is NULL. Cheap enough to call in an inner loop (a
 * load, plus a clock read when a task_timeout is set). */
CREW_API int crew_task_cancelled(const crew_task *t);
/* Index of the worker running the task, 0..workers-1; -1 when a thread
 * outside a thread pool runs it while it waits (see crew_future_wait);
 * CREW_EINVAL if t NULL. */
CREW_API int crew_task_worker(const crew_task *t);
/* Thread pools: the pool running the task, to submit sub-tasks from it.
 * NULL for process pools (a worker process cannot submit) or t NULL. */
CREW_API crew_pool *crew_task_pool(crew_task *t);
/* The region the task's arg lies in, as a handle valid in the running
 * process: for a crew_pool_submit_shm task, and for a map whose input (or,
 * failing that, output) records lie in a crew_shm region and are used in
 * place (a process pool whose region table is full copies them, and then
 * this is NULL). In a process worker it is the worker's own mapping (do not
 * destroy it; the pool does); in a thread pool it is the submitter's
 * handle. NULL otherwise or for NULL t. Use crew_shm_ptr / crew_shm_at /
 * crew_shm_alloc on it to put results in the region without a copy. */
CREW_API crew_shm *crew_task_shm(const crew_task *t);

/* crew_pool_options.breaker_crashes: the crash breaker never trips. */
#define CREW_BREAKER_OFF UINT_MAX

typedef struct crew_pool_options {
    crew_pool_kind kind;       /* CREW_THREADS (0) or CREW_PROCESSES */
    int workers;               /* 0: crew_cpu_count(); max 1024 */
    int start_method;          /* processes: a crew_start_method value; 0: the
                                  fork-safe default (a fork server). Workers
                                  hold fds 0-2 and two of their own; fork
                                  workers also keep the parent's fds that
                                  have no close-on-exec (as an exec'd
                                  program would) */
    size_t max_arg_size;       /* 0: 64 KiB; larger args -> CREW_E2BIG at submit */
    size_t max_result_size;    /* 0: 64 KiB: result_cap given to each task */
    double task_timeout;       /* per-task deadline in seconds, from the start
                                  of the task; 0: none. Threads: cooperative
                                  (crew_task_cancelled() turns 1; when the task
                                  returns after its deadline the future ends
                                  CREW_ETIMEDOUT whatever it returned).
                                  Processes: SIGTERM, SIGKILL after kill_grace,
                                  worker replaced, future CREW_ETIMEDOUT. */
    double kill_grace;         /* processes; 0: 0.05 s */
    unsigned max_tasks_per_worker; /* processes: recycle a worker after N tasks; 0: never */
    size_t max_worker_memory;  /* processes: recycle a worker whose RSS is above
                                  this, checked between tasks; 0: no limit */
    unsigned breaker_crashes;  /* processes: the crash breaker trips (the pool
                                  fails queued work and later submits with
                                  CREW_EBROKEN) when this many workers in a
                                  row die before finishing anything -- no
                                  task, no map item: a restart storm (a task
                                  that crashes on every call, a worker that
                                  cannot start). Tasks that crash now and
                                  then never trip it: a worker that finished
                                  work resets the count. Deaths the pool
                                  causes (deadline, cancel, recycling) do not
                                  count. 0: 64; CREW_BREAKER_OFF: never. */
    unsigned max_pending;      /* queued + running tasks above which submit
                                  returns CREW_EAGAIN; 0: no limit (threads) or
                                  the backend's queue size (processes) */
} crew_pool_options;

/* Creates a pool; *out receives it. opts may be NULL (all defaults). Thread
 * workers are started before it returns. Returns 0, CREW_EINVAL (out NULL,
 * unknown kind, workers < 0 or > 1024, task_timeout or kill_grace negative,
 * NaN, infinite or above 1e9 s, max_arg_size or max_result_size above
 * UINT32_MAX), CREW_ENOMEM,
 * CREW_EAGAIN (no more threads/processes), CREW_ENOTSUP (backend not
 * available here). On failure nothing leaks. Thread-safe. */
CREW_API int crew_pool_create(crew_pool **out, const crew_pool_options *opts);

/* Queues fn(arg[0..arg_len)) and gives its future in *out (which the caller
 * must crew_future_destroy). arg is copied; arg may be NULL when arg_len is
 * 0. Returns 0, CREW_EINVAL (p, fn or out NULL; arg NULL with arg_len > 0),
 * CREW_E2BIG (arg_len > max_arg_size), CREW_ESHUTDOWN (after
 * crew_pool_shutdown or destroy), CREW_EAGAIN (max_pending reached),
 * CREW_EBROKEN (process pool breaker tripped), CREW_ENOMEM. Thread-safe,
 * also from inside a task of the same pool (thread pools). No allocation,
 * lock or system call on the common path. */
CREW_API int crew_pool_submit(crew_pool *p, crew_task_fn fn, const void *arg, size_t arg_len,
                              crew_future **out);

/* Zero-copy submit: queues fn with arg = bytes [off, off+len) of the crew_shm
 * region, which are NOT copied. Thread pools: arg points into the caller's
 * mapping. Process pools: the worker receives the region's fd from the pool
 * the first time it meets the region, maps it, and arg points into its own
 * mapping -- nothing crosses through the task slot but (region, off, len).
 * The caller must keep the region alive and leave those bytes alone until
 * the future is done. len may exceed max_arg_size (no slot space is used)
 * but not UINT32_MAX. The task reaches the region with crew_task_shm(t) and
 * may write results into it (crew_shm_at, crew_shm_alloc on a heap region);
 * they are visible to the submitter once the future is done. The result
 * area (result_cap = max_result_size) works as for crew_pool_submit.
 * Process pools keep up to 64 distinct regions in use at once; a region no
 * longer in use by a queued or running task is dropped when room is needed,
 * and a region whose last handle in this process was destroyed is dropped
 * the next time the pool meets a new region. Until then the pool holds a
 * duplicate of its fd and workers keep it mapped, which keeps its memory
 * alive (crew_pool_destroy releases everything).
 * Returns 0, CREW_EINVAL (p, fn, region or out NULL; region destroyed in
 * this process -- the handle is looked up among the live ones by its value,
 * never read, so a destroyed handle is safe to pass; one whose address a new
 * handle now has is that new region),
 * CREW_ERANGE (off + len beyond the region, or overflowing), CREW_E2BIG (len
 * > UINT32_MAX), CREW_ESHUTDOWN, CREW_EAGAIN (max_pending reached, or 64
 * other regions are in use by queued or running tasks of a process pool),
 * CREW_EBROKEN, CREW_ENOMEM, CREW_EMFILE (no fd left to keep the region),
 * or -errno of dup. Thread-safe. */
CREW_API int crew_pool_submit_shm(crew_pool *p, crew_task_fn fn, crew_shm *region, size_t off,
                                  size_t len, crew_future **out);

/* Stops accepting work: submit then returns CREW_ESHUTDOWN. cancel_pending 0:
 * queued work still runs; 1: queued tasks end CREW_ECANCELED and running ones
 * are asked to stop (crew_task_cancelled) and end CREW_ECANCELED whatever
 * they return. Then waits until no task is queued or running -- except when
 * called from a task of this pool or from a done callback of one of its
 * futures (crew_future_on_done), which return 0 at once: waiting there would
 * wait for the calling thread itself. From a callback the pool is shut at
 * once (submits fail) and the cancel, if asked, is under way: on a thread
 * pool queued tasks are cancelled before it returns, on a process pool a
 * thread of the pool does it (and the waiting) just after; crew_pool_destroy
 * joins that thread. Calling it again is fine (a later cancel_pending = 1
 * still cancels). Returns 0, CREW_EINVAL (p NULL), or (from a callback of a
 * process pool only) CREW_EAGAIN when no thread could be started for it.
 * Thread-safe. */
CREW_API int crew_pool_shutdown(crew_pool *p, int cancel_pending);

/* crew_pool_shutdown(p, 1), then joins every worker thread / reaps every
 * worker process and frees the pool. Every future of the pool is done by
 * then and stays valid (readable) until crew_future_destroy. Returns 0,
 * CREW_EINVAL (p NULL), CREW_EDEADLK (called from a task of this pool or
 * from a done callback of one of its futures: nothing is done). Not
 * thread-safe against other calls on p. */
CREW_API int crew_pool_destroy(crew_pool *p);

/* Number of workers (>= 1), or CREW_EINVAL for NULL. Thread-safe. */
CREW_API int crew_pool_workers(const crew_pool *p);
/* The kind the pool was created with, or CREW_EINVAL for NULL. */
CREW_API int crew_pool_kind_get(const crew_pool *p);

/* Tasks and map items: a map of n items counts n submitted and each item's
 * outcome (the map's own future is not counted), so once everything is
 * done submitted == completed + failed + crashed + timed_out + canceled.
 * The outcome classes go by final status: CREW_ECRASHED, CREW_ETIMEDOUT,
 * CREW_ECANCELED, any other negative one is `failed`. (A process map
 * without a statuses array whose chunk failed in mixed ways counts that
 * chunk's failures in the class of its first failure.) */
typedef struct crew_pool_stats {
    uint64_t submitted;        /* tasks accepted plus map items */
    uint64_t completed;        /* ended with status 0 */
    uint64_t failed;           /* ended with another negative status (the task's own...) */
    uint64_t crashed, timed_out, canceled;
    uint64_t workers_started, workers_recycled;
    int workers_alive;         /* processes: one short for the few hundred
                                  microseconds between a crashed (or
                                  recycled) worker's death being reported and
                                  its replacement running */
    int broken;                /* 1 once the crash breaker tripped */
} crew_pool_stats;
/* A snapshot of the counters (each exact, the set not atomic while tasks
 * run: a snapshot taken while other threads submit may lag their last
 * submits, never count one that has not happened). Returns 0 or
 * CREW_EINVAL (NULL). Thread-safe. */
CREW_API int crew_pool_stats_get(crew_pool *p, crew_pool_stats *st);

/* Waits until f is done, whatever its final status. Returns 0 (done),
 * CREW_ETIMEDOUT, CREW_EINVAL (f NULL or destroyed, NaN timeout). Thread
 * pools: a thread that waits forever runs queued tasks of the pool while f
 * is not done -- a worker (so nested waits never deadlock) and an outside
 * thread alike (as OpenMP's master thread and TBB's task_group::wait do;
 * such tasks see crew_task_worker() == -1). A wait with a finite timeout
 * never runs a task (one could outlast any deadline): it returns by its
 * timeout plus scheduling slack (a futex wake-up; well under a millisecond
 * on an idle machine) on every backend, also crew_wait_all / crew_wait_any
 * and a map's future; a worker's finite wait on a sub-task that no other
 * worker is free to run times out. Idle waiting costs no CPU (brief spin,
 * then a futex). Thread-safe; many threads may wait on one future. */
CREW_API int crew_future_wait(crew_future *f, double timeout);
/* 1 if f is done, 0 if not yet, CREW_EINVAL (NULL/destroyed). Thread-safe. */
CREW_API int crew_future_done(const crew_future *f);
/* The final status (see the list above) once done; CREW_ESTATE while not
 * done; CREW_EINVAL (NULL/destroyed). Thread-safe. */
CREW_API int crew_future_status(const crew_future *f);
/* The result bytes of a done future: *data is borrowed until
 * crew_future_destroy (NULL when *len is 0). Works whatever the status (a
 * failed task may leave a result). Returns 0, CREW_ESTATE (not done),
 * CREW_EINVAL (NULL args, destroyed). Thread-safe. */
CREW_API int crew_future_result(const crew_future *f, const void **data, size_t *len);

typedef struct crew_failure {
    int status;        /* the final status (CREW_ECRASHED, CREW_ETIMEDOUT, ...) */
    pid_t pid;         /* worker process (0 for threads) */
    int signal;        /* terminating signal, 0 if it exited or was a thread */
    int exit_code;     /* when the worker exited (e.g. _exit(3) inside a task) */
    uint64_t task_id;  /* crew_future_id of the failed task */
    size_t first_item, n_items; /* map: the first failed item and how many failed */
} crew_failure;
/* The failure details of a done future (all zero but status and task_id for
 * a success or a plain task error). Returns 0, CREW_ESTATE (not done),
 * CREW_EINVAL. Thread-safe. */
CREW_API int crew_future_failure(const crew_future *f, crew_failure *out);

/* Cancels f. Queued: it ends CREW_ECANCELED now and never runs. Running:
 * threads -- crew_task_cancelled() turns 1 and the future ends
 * CREW_ECANCELED when the task returns; processes -- the worker is killed and
 * replaced and the future ends CREW_ECANCELED. A map: unstarted items end
 * CREW_ECANCELED, running chunks as above (threads: the running item and the
 * rest of its chunk end CREW_ECANCELED) and the map's future ends
 * CREW_ECANCELED. Returns 0: accepted -- the future's final status will be
 * CREW_ECANCELED, however its race with the task's own end goes;
 * CREW_ESTATE: already done or being completed (the cancel lost that race:
 * nothing changed, the status is the task's own); CREW_EINVAL.
 * Thread-safe. */
CREW_API int crew_future_cancel(crew_future *f);

/* Unique (per process) id of f, > 0; 0 for NULL. Thread-safe. */
CREW_API uint64_t crew_future_id(const crew_future *f);

/* cb(f, data) runs once when f is done: on the thread that completes it (a
 * worker, the pool's monitor thread for processes, a waiter or canceller),
 * or right now on the caller's thread if f is already done. It must not
 * block for long nor destroy f; it may read f (status, result, failure,
 * user data) even when the handle was already destroyed. It may submit to
 * pools, cancel futures, mark futures (crew_future_notify) and call
 * crew_pool_shutdown on f's pool, which then returns at once without
 * waiting (see there); crew_pool_destroy of f's pool returns CREW_EDEADLK
 * there. It must not wait on futures of f's pool (it may run on the very
 * thread that completes them). One callback per future. Returns 0,
 * CREW_EINVAL (NULL f/cb), CREW_EBUSY (a callback is already set).
 * Thread-safe. */
typedef void (*crew_future_cb)(crew_future *f, void *data);
CREW_API int crew_future_on_done(crew_future *f, crew_future_cb cb, void *data);

/* Releases the caller's handle. A task still queued or running finishes
 * (cancel it first to stop it) and its result is dropped; the memory goes
 * back to the pool. Using f afterwards is an error: crew detects it and
 * returns CREW_EINVAL as long as the slot was not reused by a later submit
 * (for a future with a callback: once the callback has run) and the pool's
 * memory still exists. A future's memory belongs to its pool, which frees it
 * once the pool is destroyed and its last future destroyed; from then on a
 * stale handle is a dangling pointer like any other (not detected).
 * Returns 0, CREW_EINVAL (NULL, destroyed). Thread-safe with respect to the
 * completing worker; not against other calls on the same f. */
CREW_API int crew_future_destroy(crew_future *f);

/* Waits until all n futures are done. Returns 0, CREW_ETIMEDOUT,
 * CREW_EINVAL (NaN timeout, fs NULL with n > 0, an element NULL/destroyed).
 * n == 0: 0. */
CREW_API int crew_wait_all(crew_future *const *fs, size_t n, double timeout);
/* Waits until at least one of n futures is done; *index (may be NULL) gets
 * the lowest done index. Returns 0, CREW_ETIMEDOUT, CREW_EINVAL (fs NULL,
 * n == 0, an element NULL/destroyed, NaN timeout). */
CREW_API int crew_wait_any(crew_future *const *fs, size_t n, double timeout, size_t *index);

/* ---- map over fixed-size records
 * Item i is the record at in + i*in_size (arg_len = in_size); its result goes
 * to out + i*out_size (result_cap = out_size; out may be NULL when out_size
 * is 0). Items are grouped into chunks: chunk_size 0 = adaptive (guided:
 * each claim takes about remaining / (4 * workers) items, never fewer than
 * 1, so the tail balances). statuses: optional array of n ints that receives
 * each item's status (ECANCELED for items never run).
 * Every item ends with its own status. Process pools: a worker that dies
 * inside a chunk fails only the item it was running (CREW_ECRASHED, or
 * CREW_ETIMEDOUT / CREW_ECANCELED when the pool stopped it for its deadline
 * or a cancel; the map's crew_failure gives the worker's pid, the signal or
 * exit code and, as first_item, the lowest such item); the chunk's finished
 * items keep their outputs and statuses; its items not yet started run
 * again on another worker. task_timeout counts per item, and recycling by
 * max_worker_memory happens between items. An item that sets *result_len
 * above out_size ends CREW_E2BIG. For process pools in
 * and out are copied through the pool's shared memory in chunks, except
 * that when all n records of in (or of out) lie inside one live crew_shm
 * region, workers read (or write) them there in place, with no copy (see
 * crew_pool_submit_shm for how a region reaches workers and how long the
 * pool keeps it). */
typedef struct crew_map_options {
    size_t chunk_size;         /* 0: adaptive */
    int *statuses;             /* optional, n ints */
} crew_map_options;
/* Runs the map and waits for it (called from a thread task, the waiting
 * worker helps). Returns 0 if every item succeeded, else the status of the
 * lowest-indexed failed item; CREW_EINVAL (p/fn NULL, n == 0, in NULL with
 * in_size > 0, out NULL with out_size > 0), CREW_E2BIG (in_size above
 * max_arg_size or out_size above max_result_size), CREW_EOVERFLOW (n times
 * in_size or out_size overflows: records that cannot exist, e.g. an n cast
 * from a negative int), CREW_ESHUTDOWN, CREW_ENOMEM. o may be NULL.
 * Thread-safe. */
CREW_API int crew_pool_map(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size,
                           void *out, size_t out_size, size_t n, const crew_map_options *o);
/* The same, asynchronous: *out gets a future that is done when every item
 * is; its status is what crew_pool_map would return, its failure names the
 * failed items. in, out and statuses must stay valid until then. */
CREW_API int crew_pool_map_submit(crew_pool *p, crew_task_fn fn, const void *in,
                                  size_t in_size, void *out, size_t out_size, size_t n,
                                  const crew_map_options *o, crew_future **out_future);
/* Items done so far and the total, readable from any thread while the map
 * runs (a plain task: 0 or 1 of 1). Either pointer may be NULL. Returns 0,
 * CREW_EINVAL. Thread-safe. */
CREW_API int crew_future_progress(const crew_future *f, size_t *done, size_t *total);

/* ---- event-loop integration
 * crew_pool_fd: an eventfd that is readable while completed futures wait in
 * the pool's completion list. Only futures marked with crew_future_notify
 * enter the list, so pools that nobody polls pay nothing. The fd belongs to
 * the pool (closed by destroy); do not read it yourself, call
 * crew_pool_completions. Returns the fd (>= 0), CREW_EINVAL, CREW_EMFILE... */
CREW_API int crew_pool_fd(crew_pool *p);
/* Marks f so that it enters p's completion list when done (at once if it is
 * done already), with user_data attached. Returns 0, CREW_EINVAL, CREW_EBUSY
 * (already marked). Thread-safe. */
CREW_API int crew_future_notify(crew_future *f, void *user_data);
/* Pops up to max completed, notified futures into out[0..*n). Non-blocking;
 * when the list becomes empty the fd stops being readable. The caller still
 * owns (and destroys) each future. Returns 0 (*n may be 0), CREW_EINVAL.
 * Thread-safe. */
CREW_API int crew_pool_completions(crew_pool *p, crew_future **out, size_t max, size_t *n);
/* The user_data given to crew_future_notify (NULL if none or f NULL). */
CREW_API void *crew_future_user_data(const crew_future *f);


/* @@SECTION measure@@ */
/* ================================================================ measure
 *
 * What a process costs, read from /proc: its memory and the processes it
 * started. `crew compare` uses these for "memory per idle worker"; any
 * program may. Snapshots: nothing is cached, every call is thread-safe.
 */
typedef struct crew_mem_usage {
    uint64_t rss;            /* resident bytes */
    uint64_t pss;            /* proportional set size: a page shared by k
                                processes counts 1/k in each, so PSS sums
                                to the real use of a group of processes */
    uint64_t private_bytes;  /* resident pages no other process maps */
    uint64_t shared_bytes;   /* resident pages other processes map too */
    uint64_t swap;           /* swapped-out bytes */
} crew_mem_usage;

/* Fills *out for process pid (0: the calling process), from
 * /proc/<pid>/smaps_rollup. A zombie reads as all zero. Returns 0,
 * CREW_EINVAL (out NULL, pid < 0), CREW_ESRCH (no such process),
 * CREW_EACCES (another user's process), CREW_ENOTSUP (kernel older than
 * 4.14: no smaps_rollup). Thread-safe. */
CREW_API int crew_mem_usage_get(pid_t pid, crew_mem_usage *out);

/* Lists the children of pid (0: the calling process), or with recursive != 0
 * all its descendants (children first, then theirs). Stores up to cap pids
 * in out and the number found in *n (which may exceed cap: call again with
 * a bigger array). A snapshot: processes may start or end meanwhile.
 * Returns 0, CREW_EINVAL (n NULL, out NULL with cap > 0, pid < 0),
 * CREW_ENOMEM. Thread-safe. */
CREW_API int crew_proc_children(pid_t pid, int recursive, pid_t *out, size_t cap, size_t *n);

/* The memory of pid (0: the calling process) and all its descendants
 * together: every field of crew_mem_usage summed over the tree. PSS sums
 * to what the tree really uses (a page shared inside it counts once), so
 * the difference of two readings around starting a pool is the memory the
 * pool costs -- crew's definition of "memory per idle worker" is that
 * difference divided by the number of workers. A descendant that ends
 * during the scan is skipped. Returns 0, CREW_EINVAL (out NULL, pid < 0),
 * CREW_ESRCH (pid itself does not exist), CREW_ENOMEM, or an error of
 * crew_mem_usage_get for pid itself. Thread-safe. */
CREW_API int crew_mem_usage_tree(pid_t pid, crew_mem_usage *out);

#ifdef __cplusplus
}
#endif
#endif /* CREW_H */
