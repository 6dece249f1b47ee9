/*
 * util.c -- the shared helpers declared in internal.h: allocation hooks,
 * assertions, deadlines, futexes, spinning, thread identity, memfd mappings.
 */
#include "core/internal.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------------ version */
unsigned crew_version(void) { return CREW_VERSION_HEX; }

const char *crew_version_string(void)
{
#define CREW__STR2(x) #x
#define CREW__STR(x) CREW__STR2(x)
    return CREW__STR(CREW_VERSION_MAJOR) "." CREW__STR(CREW_VERSION_MINOR) "." CREW__STR(
        CREW_VERSION_PATCH);
}

/* ------------------------------------------------------------ assertions */
void crew__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "crew: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* ------------------------------------------------------------ allocation */
static crew_malloc_fn alloc_malloc = malloc;
static crew_realloc_fn alloc_realloc = realloc;
static crew_free_fn alloc_free = free;

int crew_set_allocator(crew_malloc_fn m, crew_realloc_fn r, crew_free_fn f)
{
    if (!m && !r && !f) {
        alloc_malloc = malloc;
        alloc_realloc = realloc;
        alloc_free = free;
        return 0;
    }
    if (!m || !r || !f)
        return CREW_EINVAL;
    alloc_malloc = m;
    alloc_realloc = r;
    alloc_free = f;
    return 0;
}

void *crew__malloc(size_t size) { return alloc_malloc(size ? size : 1); }

void *crew__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t total = n * size;
    void *p = alloc_malloc(total > 0 ? total : 1);
    if (p)
        memset(p, 0, total);
    return p;
}

void *crew__realloc(void *p, size_t size) { return alloc_realloc(p, size ? size : 1); }

void crew__free(void *p)
{
    if (p)
        alloc_free(p);
}

/* ------------------------------------------------------------ machine */
int crew_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

uint64_t crew__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double crew_now(void) { return (double)crew__now_ns() * 1e-9; }

/* ------------------------------------------------------------ deadlines */
void crew__deadline_init(crew__deadline *d, double timeout)
{
    d->forever = timeout < 0 || timeout != timeout; /* NaN waits forever too */
    clock_gettime(CLOCK_MONOTONIC, &d->at);
    if (d->forever || timeout == 0)
        return;
    if (timeout > 1e9) /* ~31 years: treat as forever, avoid overflow */ {
        d->forever = true;
        return;
    }
    time_t s = (time_t)timeout;
    long ns = (long)((timeout - (double)s) * 1e9);
    d->at.tv_sec += s;
    d->at.tv_nsec += ns;
    if (d->at.tv_nsec >= 1000000000L) {
        d->at.tv_sec++;
        d->at.tv_nsec -= 1000000000L;
    }
}

double crew__deadline_left(const crew__deadline *d)
{
    if (d->forever)
        return -1.0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left = (double)(d->at.tv_sec - now.tv_sec) + (double)(d->at.tv_nsec - now.tv_nsec) * 1e-9;
    return left > 0 ? left : 0.0;
}

bool crew__deadline_expired(const crew__deadline *d)
{
    return !d->forever && crew__deadline_left(d) <= 0.0;
}

int crew__deadline_poll_ms(const crew__deadline *d)
{
    if (d->forever)
        return -1;
    double left = crew__deadline_left(d);
    if (left <= 0)
        return 0;
    double ms = left * 1000.0;
    if (ms > 2e9)
        return 2000000000;
    int r = (int)ms;
    return (double)r < ms ? r + 1 : r;
}

/* ------------------------------------------------------------ futexes */
int crew__futex_wait(_Atomic uint32_t *addr, uint32_t val, const crew__deadline *d)
{
    const struct timespec *ts = NULL;
    if (d && !d->forever) {
        if (crew__deadline_expired(d))
            return CREW_ETIMEDOUT;
        ts = &d->at;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a
     * wait that is interrupted and retried does not stretch the timeout. */
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET, val, ts, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0)
        return 0;
    switch (errno) {
    case EAGAIN:
        return 0;
    case ETIMEDOUT:
        return CREW_ETIMEDOUT;
    case EINTR:
        return CREW_EINTR;
    default:
        return -errno;
    }
}

void crew__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

bool crew__spin_while_eq(_Atomic uint32_t *addr, uint32_t val, uint32_t budget_ns)
{
    uint64_t start = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val)
            return true;
        crew__cpu_relax();
        if ((i & 63) == 0) {
            uint64_t now = crew__now_ns();
            if (start == 0)
                start = now;
            else if (now - start >= budget_ns)
                return false;
        }
    }
}

/* ------------------------------------------------------------ identity */
__thread uint32_t crew__tls_tid CREW__TLS_IE;
__thread uint32_t crew__tls_pid CREW__TLS_IE;

static void identity_atfork_child(void)
{
    /* Only the forking thread exists in the child; its cached ids are the
     * parent's. Clearing them makes the next crew__tid() ask the kernel. */
    crew__tls_tid = 0;
    crew__tls_pid = 0;
}

static pthread_once_t identity_once = PTHREAD_ONCE_INIT;
static void identity_register(void) { pthread_atfork(NULL, NULL, identity_atfork_child); }

void crew__identity_slow(void)
{
    pthread_once(&identity_once, identity_register);
    crew__tls_pid = (uint32_t)getpid();
    crew__tls_tid = (uint32_t)syscall(SYS_gettid);
}

/* PF_EXITING from the kernel's <linux/sched.h> (not exported to user
 * space); stable since Linux 2.6. */
#define PF_EXITING_FLAG 0x00000004u

bool crew__thread_alive(uint32_t pid, uint32_t tid)
{
    if (tid == 0 || tid > INT32_MAX)
        return false;
    long r = pid ? syscall(SYS_tgkill, (pid_t)pid, (pid_t)tid, 0)
                 : syscall(SYS_tkill, (pid_t)tid, 0);
    /* EPERM means it exists but belongs to someone we may not signal. */
    if (r != 0 && errno == ESRCH)
        return false;
    /* The kernel still finds two kinds of threads that are dead for every
     * crew purpose: a zombie (a killed process its parent has not reaped
     * yet -- often because the parent is the one waiting here), and a
     * thread in the middle of exiting (PF_EXITING: it will never run user
     * code again). The thread's stat line in /proc says both. */
    char path[64], buf[512];
    if (pid)
        snprintf(path, sizeof path, "/proc/%u/task/%u/stat", pid, tid);
    else
        snprintf(path, sizeof path, "/proc/%u/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno != ENOENT && errno != ESRCH; /* no /proc: trust the kill */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    crew__close(fd);
    if (n <= 0)
        return n < 0 && err != ESRCH;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may contain anything */
    char state = 0;
    unsigned flags = 0;
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2)
        return true;
    return state != 'Z' && state != 'X' && state != 'x' && !(flags & PF_EXITING_FLAG);
}

/* ------------------------------------------------------------ memfd */
int crew__memfd_sealed(const char *name, size_t size)
{
    if (size == 0 || size > (size_t)INT64_MAX)
        return CREW_EINVAL;
    int fd = memfd_create(name ? name : "crew", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, CREW__SEALS) != 0) {
        int e = -errno;
        crew__close(fd);
        return e;
    }
    return fd;
}

bool crew__fd_sealed(int fd)
{
    int seals = fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & CREW__SEALS) == CREW__SEALS;
}

int crew__memfd_map(const char *name, size_t size, int *fd_out, void **addr_out)
{
    int fd = crew__memfd_sealed(name, size);
    if (fd < 0)
        return fd;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        crew__close(fd);
        return e;
    }
    if (fd_out)
        *fd_out = fd;
    else
        crew__close(fd);
    *addr_out = p;
    return 0;
}

void crew__close(int fd)
{
    if (fd >= 0)
        (void)close(fd); /* Linux frees the fd even on EINTR: never retry. */
}

int crew__attach_fd_size(int fd, size_t *size)
{
    if (fd < 0)
        return CREW_EBADF;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size < 0)
        return CREW_EINVAL;
    *size = (size_t)st.st_size;
    return 0;
}
