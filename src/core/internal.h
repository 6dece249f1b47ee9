/*
 * internal.h -- what every crew source file shares: allocation, assertions,
 * time, futexes, spinning, the cached thread id. Never installed.
 *
 * Before adding a helper to any src/ file, look here: if two subsystems need
 * it, it belongs here (and in util.c), once.
 */
#ifndef CREW__INTERNAL_H
#define CREW__INTERNAL_H

#include "crew.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------ assertions
 * Stay on in release builds: they guard invariants whose breakage would
 * corrupt shared state, where continuing is worse than stopping. */
#define CREW__ASSERT(cond)                                                     \
    do {                                                                       \
        if (__builtin_expect(!(cond), 0))                                      \
            crew__assert_fail(#cond, __FILE__, __LINE__);                      \
    } while (0)
__attribute__((noreturn)) void crew__assert_fail(const char *expr, const char *file, int line);

/* Internal macros wear the internal prefix (CREW__); CREW_ is crew.h's. */
#define CREW__LIKELY(x) __builtin_expect(!!(x), 1)
#define CREW__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CREW__CACHELINE 64

/* Asks for the cache line of p in exclusive state, for a line this thread
 * will read and then write (an atomic RMW): one transfer instead of a
 * shared fetch followed by an ownership request. x86-64 needs the
 * PREFETCHW instruction (a no-op on CPUs without it), which the compiler
 * emits for __builtin_prefetch(p, 1) only with -mprfchw. */
static inline void crew__prefetch_w(const void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* ------------------------------------------------------------ allocation
 * All heap memory goes through these (see crew_set_allocator). They return
 * NULL on failure; callers turn that into CREW_ENOMEM. */
void *crew__malloc(size_t size);
void *crew__calloc(size_t n, size_t size);
void *crew__realloc(void *p, size_t size);
void crew__free(void *p);

/* ------------------------------------------------------------ time
 * A deadline is an absolute CLOCK_MONOTONIC time. crew__deadline_init()
 * turns the public `double timeout` convention into one: timeout < 0 gives
 * deadline->forever = true; 0 gives "already expired". */
typedef struct crew__deadline {
    struct timespec at;
    bool forever;
} crew__deadline;

void crew__deadline_init(crew__deadline *d, double timeout);
/* A timeout no deadline can be made of: NaN (every comparison with it is
 * false, so it is neither "forever" nor a time that passes). Every public
 * call taking a `double timeout` rejects it with CREW_EINVAL before doing
 * anything; crew__deadline_init still treats it as forever, for internal
 * callers only. */
static inline bool crew__timeout_bad(double timeout) { return __builtin_isnan(timeout); }
/* The longest duration an option may name (~31 years): what crew turns
 * into clock values must fit them; above it a timeout means forever
 * (crew__deadline_init), an option is CREW_EINVAL. */
#define CREW__TIME_MAX 1e9
/* true when the deadline has passed (never true for forever). */
bool crew__deadline_expired(const crew__deadline *d);
/* Seconds left (>= 0), or a negative value for forever. */
double crew__deadline_left(const crew__deadline *d);
uint64_t crew__now_ns(void);
/* Whole milliseconds left for poll(2): -1 forever, 0 expired, rounded up. */
int crew__deadline_poll_ms(const crew__deadline *d);

/* ------------------------------------------------------------ futexes
 * Shared (not FUTEX_PRIVATE) futexes, so they work in memory shared between
 * processes. crew__futex_wait() sleeps while *addr == val, until woken or the
 * deadline (NULL = forever) passes. Returns 0 (woken, or value changed, or a
 * spurious wake: callers always re-check their condition), CREW_ETIMEDOUT, or
 * CREW_EINTR (a signal interrupted the sleep: callers re-check and retry). */
int crew__futex_wait(_Atomic uint32_t *addr, uint32_t val, const crew__deadline *d);
/* Wakes up to n waiters (INT32_MAX for all). */
void crew__futex_wake(_Atomic uint32_t *addr, int n);

/* ------------------------------------------------------------ spinning
 * On this kind of machine waking a sleeping CPU costs ~35 us through the
 * hypervisor, while a waiter that spins sees a hand-off in ~0.3 us. So every
 * wait in crew spins for up to CREW__SPIN_NS first, then parks on a futex. */
#define CREW__SPIN_NS 20000u
static inline void crew__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Spin until *addr != val or the spin budget runs out. Returns true if the
 * value changed (caller need not park). Checks the clock only every 64 turns. */
bool crew__spin_while_eq(_Atomic uint32_t *addr, uint32_t val, uint32_t budget_ns);

/* ------------------------------------------------------------ identity
 * The calling thread's kernel tid and its process's pid, cached in
 * thread-local storage and refreshed in a forked child (pthread_atfork). */
/* Hot thread-locals use the initial-exec model: no __tls_get_addr call per
 * access from the shared library. Keep them few and small (a dlopen'ed
 * libcrew takes them from glibc's surplus static TLS). */
#define CREW__TLS_IE __attribute__((tls_model("initial-exec")))
extern __thread uint32_t crew__tls_tid CREW__TLS_IE;
extern __thread uint32_t crew__tls_pid CREW__TLS_IE;
void crew__identity_slow(void);
static inline uint32_t crew__tid(void)
{
    if (CREW__UNLIKELY(crew__tls_tid == 0))
        crew__identity_slow();
    return crew__tls_tid;
}
static inline uint32_t crew__pid(void)
{
    if (CREW__UNLIKELY(crew__tls_tid == 0))
        crew__identity_slow();
    return crew__tls_pid;
}
/* Is thread `tid` (of process `pid`, or of any process when pid is 0) still
 * alive? A zombie (killed, not yet reaped) and a thread in the middle of
 * exiting count as dead: neither will ever release what it holds. Costs a
 * few system calls (tgkill, then its /proc stat line): slow paths only.
 * Thread ids are reused only after pid_max others: accepted (docs/sync.md). */
bool crew__thread_alive(uint32_t pid, uint32_t tid);

/* ------------------------------------------------------------ shared memory
 * Every memfd crew shares is sealed once sized (CREW__SEALS): a peer that
 * holds the fd cannot grow or shrink it under the processes that map it
 * (which would turn their accesses into SIGBUS), nor change the seals.
 * crew__memfd_sealed makes one (size bytes, O_CLOEXEC): the fd or -errno.
 * crew__fd_sealed: does fd carry those seals (what attach checks)?
 * crew__memfd_map: a sealed memfd mapped MAP_SHARED -- nothing appears in
 * /dev/shm, the memory is freed when the last mapping and fd go, even after
 * SIGKILL. *fd_out receives the memfd or, if fd_out is NULL, it is closed
 * after mapping. */
#define CREW__SEALS (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)
int crew__memfd_sealed(const char *name, size_t size);
bool crew__fd_sealed(int fd);
int crew__memfd_map(const char *name, size_t size, int *fd_out, void **addr_out);
/* What every *_attach(out, fd) checks first: fd >= 0 (else CREW_EBADF)
 * naming a regular file -- a memfd (else CREW_EINVAL); its size goes to
 * *size. 0, those errors, or -errno of fstat. */
int crew__attach_fd_size(int fd, size_t *size);

/* waitid's idtype for a pidfd (Linux 5.4), for C libraries whose headers
 * predate it. glibc 2.36+ declares it in an enum (no macro to test), so
 * <sys/wait.h> comes first: included after this macro, its enum would
 * read "3 = 3" and fail to compile. */
#include <sys/wait.h>
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Retry-on-EINTR close that ignores the result (fds are ours; EBADF would be
 * a crew bug, caught by the fd-leak tests). */
void crew__close(int fd);

#endif /* CREW__INTERNAL_H */
