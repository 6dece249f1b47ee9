/*
 * process.c -- crew_process: start, join, kill, destroy; the fork method;
 * the start-request wire format; the child side of spawn and forkserver.
 *
 * DESIGN
 * A crew_process is {pid, lazily opened pidfd, cached exit status}. Every
 * method ends with a direct child of the calling process (the forkserver
 * clones with CLONE_PARENT). Only its parent -- us -- can reap a child, and
 * crew reaps only under p->lock (try_reap, destroy), so whoever holds
 * p->lock and sees "not reaped" knows the pid still names our child: kill(pid)
 * and pidfd_open(pid) are race-free there, no recycled pid is ever hit.
 * Join waits without any lock -- waitid(WNOWAIT) for an unbounded join,
 * poll on the pidfd for a timed one -- then reaps with WNOHANG under p->lock
 * so concurrent joiners agree on one status. The pidfd is opened only when
 * someone needs it (crew_process_pidfd, a timed join): a plain fork
 * start+join does not pay for it. Destroy kills and reaps what is still
 * running: nothing crew starts can stay a zombie.
 *
 * Parent death: every child sets PR_SET_PDEATHSIG(SIGKILL) and then compares
 * getppid() with the parent pid it was given; if the parent died before the
 * prctl, the child is already reparented and kills itself. The kernel sends
 * the death signal when the parent *thread* exits; see crew.h and
 * docs/processes.md for what that means for each method.
 *
 * Exec'd children (spawn, forkserver) are recognised before main() by the
 * constructor below through the CREW_CHILD environment variable, which names
 * the inherited channel fd and the parent's pid. A spawn child reads its
 * start request from the channel, resolves the function (fnref.c), answers
 * "ok" or the error, and runs the task; the parent's start returns only after
 * that answer, so an unresolvable task is a start error, not a child that
 * exits 127.
 *
 * stdio: as Python's multiprocessing, a child flushes stdout and stderr and
 * leaves with _exit(code): the parent's atexit handlers never run in a
 * child, and other streams a task opened must be closed by the task. The
 * parent flushes stdout/stderr before a fork, else the child would write the
 * parent's pending output a second time; the parent's other streams are
 * never flushed by a child, so they are never duplicated either. A stream
 * lock another parent thread held at fork time does not hang the child's
 * flush: glibc's fork resets every stream lock in the child
 * (test_process: test_fork_stdio_lock_held).
 */
#include "proc/process_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct crew_process {
    pid_t pid;
    _Atomic int pidfd; /* -1 until first needed (get_pidfd) */
    crew_start_method method;
    _Atomic int reaped; /* 1 once status is final (release: status written) */
    crew_exit status;
    pthread_mutex_t lock; /* serialises the reaping waitid */
};

/* ------------------------------------------------------------ child side */

/* The fork child's first steps use the system call instruction directly
 * where we can: a fork child has no page-table entries for code pages yet
 * (the kernel does not copy them), so every libc page it touches is a page
 * fault; prctl and getppid would add two to a path that should cost what a
 * raw fork costs. Elsewhere, libc. */
#if defined(__x86_64__)
static inline long raw_sys2(long n, long a, long b)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
static inline long raw_sys2(long n, long a, long b)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory");
    return x0;
}
#else
static inline long raw_sys2(long n, long a, long b) { return syscall(n, a, b); }
#endif

static inline __attribute__((always_inline)) void tie_to_parent(pid_t parent)
{
    (void)raw_sys2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
    /* If the parent died before the prctl, we were already reparented and
     * the death signal will never come: end now, the way the signal would. */
    if (raw_sys2(SYS_getppid, 0, 0) != parent)
        (void)kill(getpid(), SIGKILL);
}

void crew__child_tie_to_parent(pid_t parent) { tie_to_parent(parent); }

/* Does a stdio stream hold unwritten output? Read without the stream lock,
 * so a child that printed nothing writes no stdio page (each such write is
 * a copy-on-write fault) -- glibc's FILE fields directly, else __fpending. */
static inline __attribute__((always_inline)) bool pending_output(FILE *f)
{
#if defined(__GLIBC__)
    return f->_IO_write_ptr > f->_IO_write_base;
#else
    return __fpending(f) > 0;
#endif
}

/* Flushes stdout and stderr if they hold output. */
static inline __attribute__((always_inline)) void flush_std(void)
{
    if (pending_output(stdout))
        fflush(stdout);
    if (pending_output(stderr))
        fflush(stderr);
}

/* _exit() as the bare system call: in a fork child the libc _exit would be
 * one more code page to fault in, and with lazy binding a symbol lookup. */
static inline __attribute__((always_inline, noreturn)) void child_exit(int code)
{
    flush_std();
    for (;;)
        (void)raw_sys2(SYS_exit_group, code & 0xff, 0);
}

void crew__child_exit(int code) { child_exit(code); }

static int start_fork(crew_process *p, crew_process_fn fn, const void *arg, size_t len,
                      const crew_process_options *opts)
{
    pid_t parent = (pid_t)crew__pid();
    /* Unflushed parent output would otherwise be written again by the
     * child's flush of stdout/stderr. */
    flush_std();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        tie_to_parent(parent);
        if (opts && opts->name)
            (void)prctl(PR_SET_NAME, opts->name, 0, 0, 0);
        child_exit(fn((void *)arg, len));
    }
    p->pid = pid;
    return 0;
}

/* ------------------------------------------------------------ messages */

int crew__msg_build(crew__msg *m, crew_process_fn fn, const void *arg, size_t len,
                    const crew_process_options *opts, bool with_fds)
{
    memset(m, 0, sizeof *m);
    m->arg_fd = -1;
    crew__fnref *ref = crew__malloc(sizeof *ref);
    if (!ref)
        return CREW_ENOMEM;
    int rc = crew__fnref_make(ref, (uintptr_t)fn);
    if (rc) {
        crew__free(ref);
        return rc;
    }
    const char *name = opts && opts->name ? opts->name : "";
    size_t name_len = strnlen(name, 15);
    size_t module_len = strlen(ref->module) + 1;

    /* Target fd numbers: the caller's open 0..2, then pass_fds. */
    int32_t targets[CREW__MAX_PASS_FDS + 4];
    int nt = 0;
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            targets[nt++] = fd;
    size_t npass = opts ? opts->n_pass_fds : 0;
    for (size_t i = 0; i < npass; i++) {
        int fd = opts->pass_fds[i];
        bool dup = false;
        for (int j = 0; j < nt; j++)
            dup |= targets[j] == fd;
        if (!dup)
            targets[nt++] = fd;
    }
    bool inline_arg = len <= CREW__INLINE_ARG;
    int arg_fd = -1;
    if (!inline_arg) {
        rc = crew__memfd_map("crew-arg", len, &arg_fd, &(void *){NULL});
        if (rc) {
            crew__free(ref);
            return rc;
        }
        /* Map, copy, unmap: the child maps the memfd privately. */
        void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, arg_fd, 0);
        if (a == MAP_FAILED) {
            rc = -errno;
            crew__close(arg_fd);
            crew__free(ref);
            return rc;
        }
        memcpy(a, arg, len);
        munmap(a, len);
    }
    crew__req hdr = {
        .magic = CREW__REQ_MAGIC,
        .flags = (inline_arg ? 0 : CREW__REQ_ARG_MEMFD) | (with_fds ? CREW__REQ_FDS_ATTACHED : 0),
        .fn_offset = ref->offset,
        .arg_len = len,
        .module_len = (uint32_t)module_len,
        .name_len = (uint32_t)(name_len + 1),
        .n_fds = (uint32_t)(nt + (arg_fd >= 0)),
        .build_id_len = ref->build_id_len,
        .parent_pid = (int32_t)getpid(),
    };
    memcpy(hdr.build_id, ref->build_id, ref->build_id_len);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    for (int s = 1; s < 128 && s < NSIG; s++)
        if (sigismember(&cur, s) == 1)
            hdr.sigmask[(s - 1) / 64] |= 1ull << ((s - 1) % 64);
    size_t total = crew__req_size(&hdr, true);
    crew__req *r = crew__calloc(1, total); /* zeroed: no stray bytes on the wire */
    if (!r) {
        crew__close(arg_fd);
        crew__free(ref);
        return CREW_ENOMEM;
    }
    *r = hdr;
    memcpy(crew__req_module(r), ref->module, module_len);
    memcpy(crew__req_name(r), name, name_len);
    crew__req_name(r)[name_len] = '\0';
    memcpy(crew__req_targets(r), targets, (size_t)nt * sizeof(int32_t));
    if (arg_fd >= 0)
        crew__req_targets(r)[nt] = -1;
    if (inline_arg && len)
        memcpy(crew__req_arg(r), arg, len);
    crew__free(ref);
    m->req = r;
    m->size = total;
    m->n_fds = 0;
    if (with_fds)
        for (int i = 0; i < nt; i++)
            m->fds[m->n_fds++] = targets[i];
    if (arg_fd >= 0)
        m->fds[m->n_fds++] = arg_fd;
    m->arg_fd = arg_fd;
    m->owns_fds = false;
    return 0;
}

void crew__msg_free(crew__msg *m)
{
    if (m->owns_fds) {
        for (int i = 0; i < m->n_fds; i++)
            crew__close(m->fds[i]);
    } else {
        crew__close(m->arg_fd);
    }
    crew__free(m->req);
    memset(m, 0, sizeof *m);
    m->arg_fd = -1;
}

int crew__msg_send(int sock, const crew__msg *m)
{
    struct iovec iov = {.iov_base = m->req, .iov_len = m->size};
    union {
        char buf[CMSG_SPACE(sizeof(int) * (CREW__MAX_PASS_FDS + 4))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (m->n_fds > 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)m->n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)m->n_fds);
        memcpy(CMSG_DATA(c), m->fds, sizeof(int) * (size_t)m->n_fds);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == m->size ? 0 : CREW_EPROTO;
}

#define MSG_MAX (sizeof(crew__req) + PATH_MAX + 16 + sizeof(int32_t) * (CREW__MAX_PASS_FDS + 4) + 16 + CREW__INLINE_ARG)

int crew__msg_recv(int sock, crew__msg *m)
{
    memset(m, 0, sizeof *m);
    m->arg_fd = -1;
    m->owns_fds = true;
    crew__req *r = crew__malloc(MSG_MAX);
    if (!r)
        return CREW_ENOMEM;
    union {
        char buf[CMSG_SPACE(sizeof(int) * (CREW__MAX_PASS_FDS + 4))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = r, .iov_len = MSG_MAX};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof u.buf};
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        crew__free(r);
        return n == 0 ? CREW_EOF : -errno;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k && m->n_fds < (int)(sizeof m->fds / sizeof m->fds[0]); i++)
            memcpy(&m->fds[m->n_fds++], CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
    }
    m->req = r;
    m->size = (size_t)n;
    if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof *r ||
        r->magic != CREW__REQ_MAGIC || r->module_len == 0 || r->module_len > PATH_MAX ||
        r->name_len == 0 || r->name_len > 16 || r->n_fds > CREW__MAX_PASS_FDS + 4 ||
        r->build_id_len > CREW__BUILD_ID_MAX || crew__req_size(r, false) > (size_t)n ||
        crew__req_size(r, true) != (size_t)n || crew__req_module(r)[r->module_len - 1] != '\0' ||
        crew__req_name(r)[r->name_len - 1] != '\0') {
        crew__msg_free(m);
        return CREW_EPROTO;
    }
    return 0;
}

void crew__close_all_except(const int *keep_in, int n)
{
    /* Sized to n: in a forkserver worker every stack page written is a
     * private page (proportional memory of an idle worker). */
    int keep[n > 0 ? n : 1];
    int nk = 0;
    for (int i = 0; i < n; i++) {
        int fd = keep_in[i], j = nk;
        if (fd < 0)
            continue;
        bool dup = false;
        for (int q = 0; q < nk; q++)
            dup |= keep[q] == fd;
        if (dup)
            continue;
        while (j > 0 && keep[j - 1] > fd) {
            keep[j] = keep[j - 1];
            j--;
        }
        keep[j] = fd;
        nk++;
    }
    unsigned lo = 0;
    for (int i = 0; i < nk; i++) {
        if ((unsigned)keep[i] > lo)
            syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0u, 0);
}

/* Moves received fds src[i] to target[i] (target -1: just dropped) and
 * closes every other fd: the child ends up with exactly the targets. */
static int place_fds(const int *src, const int32_t *target, int n)
{
    int base = 3;
    for (int i = 0; i < n; i++) {
        if (src[i] >= base)
            base = src[i] + 1;
        if (target[i] >= base)
            base = target[i] + 1;
    }
    int tmp[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        /* Above every source and target first, so no dup2 below can clobber
         * a source that is still to be moved. */
        tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, base);
        if (tmp[i] < 0)
            return -errno;
    }
    int keep[n > 0 ? n : 1], nk = 0;
    for (int i = 0; i < n; i++) {
        if (target[i] < 0)
            continue;
        if (dup2(tmp[i], target[i]) < 0)
            return -errno;
        keep[nk++] = target[i];
    }
    crew__close_all_except(keep, nk);
    return 0;
}

void crew__child_run(crew__msg *m, crew_process_fn fn, int channel)
{
    crew__req *r = m->req;
    void *arg = NULL;
    size_t len = (size_t)r->arg_len;
    int32_t *targets = crew__req_targets(r);
    bool attached = (r->flags & CREW__REQ_FDS_ATTACHED) != 0;
    if (r->flags & CREW__REQ_ARG_MEMFD) {
        /* The memfd is the last fd sent (target -1 when fds are attached). */
        int afd = m->n_fds > 0 ? m->fds[m->n_fds - 1] : -1;
        arg = afd >= 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, afd, 0) : MAP_FAILED;
        if (arg == MAP_FAILED) {
            fprintf(stderr, "crew: child could not map its argument\n");
            (void)kill(getpid(), SIGKILL);
        }
    } else if (len) {
        arg = crew__req_arg(r);
    }
    if (attached) {
        /* Forkserver worker: fds arrived as SCM_RIGHTS at random numbers;
         * this also closes the channel and everything else. */
        int rc = m->n_fds == (int)r->n_fds ? place_fds(m->fds, targets, m->n_fds) : CREW_EPROTO;
        if (rc) {
            fprintf(stderr, "crew: child could not place its fds: %s\n", crew_strerror(rc));
            (void)kill(getpid(), SIGKILL);
        }
    } else {
        /* Spawn child: the fds are in place already. Close everything
         * else: what the parent let through exec (its inheritable fds), the
         * channel and the argument memfd (mapped above). */
        int keep[CREW__MAX_PASS_FDS + 8], nk = 0;
        for (uint32_t i = 0; i < r->n_fds && nk < CREW__MAX_PASS_FDS + 4; i++)
            keep[nk++] = targets[i];
        crew__close_all_except(keep, nk);
        (void)channel;
    }
    m->n_fds = 0;
    if (r->name_len > 1)
        (void)prctl(PR_SET_NAME, crew__req_name(r), 0, 0, 0);
    sigset_t set;
    sigemptyset(&set);
    for (int s = 1; s < 128 && s < NSIG; s++)
        if (r->sigmask[(s - 1) / 64] & (1ull << ((s - 1) % 64)))
            sigaddset(&set, s);
    sigprocmask(SIG_SETMASK, &set, NULL);
    crew__child_exit(fn(arg, len));
}

/* ------------------------------------------------------------ spawn */

static int start_spawn(crew_process *p, crew_process_fn fn, const void *arg, size_t len,
                       const crew_process_options *opts)
{
    crew__msg m;
    int rc = crew__msg_build(&m, fn, arg, len, opts, false);
    if (rc)
        return rc;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = -errno;
        crew__msg_free(&m);
        return rc;
    }
    /* Exec'd by the keeper thread: the child then dies with the process,
     * not with the calling thread (see crew__keeper_spawn_exec). */
    pid_t pid = crew__keeper_spawn_exec('s', sv[1], opts ? opts->pass_fds : NULL,
                                        opts ? opts->n_pass_fds : 0);
    crew__close(sv[1]);
    if (pid < 0) {
        crew__close(sv[0]);
        crew__msg_free(&m);
        return (int)pid;
    }
    rc = crew__msg_send(sv[0], &m);
    crew__msg_free(&m);
    crew__reply rep = {CREW_EEXEC, 0};
    if (rc == 0) {
        /* The child answers once it has resolved fn. It cannot hang before
         * that (it runs no user code first), but a program whose libcrew
         * constructor did not run would go on into main(): bound the wait. */
        struct pollfd pf = {.fd = sv[0], .events = POLLIN};
        int pr;
        do
            pr = poll(&pf, 1, 30000);
        while (pr < 0 && errno == EINTR);
        ssize_t n = pr > 0 ? recv(sv[0], &rep, sizeof rep, 0) : -1;
        if (n != (ssize_t)sizeof rep)
            rep.status = CREW_EEXEC;
    } else {
        rep.status = rc == CREW_EPIPE || rc == -ECONNRESET ? CREW_EEXEC : rc;
    }
    crew__close(sv[0]);
    if (rep.status != 0) {
        (void)kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return rep.status;
    }
    p->pid = pid;
    return 0;
}

/* ------------------------------------------------------------ dispatch */

/* Is fd the crew channel our own parent made for us? The environment is the
 * invoker's to set -- in a setuid program an unprivileged user's -- so
 * CREW_CHILD alone proves nothing: the fd it names must be a SOCK_SEQPACKET
 * socket whose peer (the creator of the socketpair, as the kernel recorded
 * it) is our parent process with our effective uid and gid. An invoker can
 * pass a socketpair of its own, but its credentials are its own, not the
 * ones a setuid program runs with; and the parent pid must be our real
 * parent (checked by tie_to_parent before this). */
static bool channel_from_parent(int fd, pid_t parent)
{
    int type = 0;
    socklen_t tl = sizeof type;
    struct ucred uc;
    socklen_t ul = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_SEQPACKET)
        return false;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) != 0 || ul != sizeof uc)
        return false;
    return uc.pid == parent && getppid() == parent && uc.uid == geteuid() &&
           uc.gid == getegid();
}

void crew__child_dispatch(void)
{
    const char *v = getenv(CREW__CHILD_ENV);
    if (!v)
        return;
    char kind = 0;
    int fd = -1;
    long parent = 0;
    if (sscanf(v, "%c:%d:%ld", &kind, &fd, &parent) != 3 || (kind != 's' && kind != 'f') ||
        fd < 0 || parent <= 0)
        return;
    /* Our own children must not take themselves for crew children. */
    unsetenv(CREW__CHILD_ENV);
    crew__child_tie_to_parent((pid_t)parent);
    /* A CREW_CHILD that does not come with our parent's channel is forged
     * (or stale): run nothing -- neither a request read from that fd nor
     * main(), which the invoker did not mean to start this way. */
    if (!channel_from_parent(fd, (pid_t)parent))
        _exit(127);
    if (kind == 'f')
        crew__forkserver_main(fd, (pid_t)parent);

    crew__msg m;
    crew__reply rep = {0, (int32_t)getpid()};
    uintptr_t fn = 0;
    rep.status = crew__msg_recv(fd, &m);
    if (rep.status == 0) {
        crew__fnref ref;
        crew__req *r = m.req;
        ref.offset = r->fn_offset;
        ref.build_id_len = r->build_id_len;
        memcpy(ref.build_id, r->build_id, sizeof ref.build_id);
        memcpy(ref.module, crew__req_module(r), r->module_len);
        rep.status = crew__fnref_resolve(&ref, &fn);
    }
    ssize_t n = send(fd, &rep, sizeof rep, MSG_NOSIGNAL);
    if (rep.status != 0 || n != (ssize_t)sizeof rep)
        _exit(1); /* the parent reports the error and reaps us */
    crew__child_run(&m, (crew_process_fn)fn, fd);
}

/* CREW_CHILD_DEFER (inherited from the parent's environment) leaves the
 * dispatch to crew_child_main() in main(): for tasks that need what main()
 * sets up, or the executable's own constructors, which run after a shared
 * libcrew's. */
static bool defer_requested(void)
{
    /* secure_getenv: in a privileged (AT_SECURE) process the invoker's
     * environment decides nothing; the dispatch then runs here, before any
     * code of the program's. */
    const char *d = secure_getenv("CREW_CHILD_DEFER");
    return d && *d && strcmp(d, "0") != 0;
}

__attribute__((constructor)) static void crew_child_constructor(void)
{
    if (!defer_requested())
        crew__child_dispatch();
}

int crew_child_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    crew__child_dispatch();
    return 0;
}

/* ------------------------------------------------------------ public */

int crew_process_start(crew_process **out, crew_process_fn fn, const void *arg, size_t len,
                       const crew_process_options *opts)
{
    if (!out || !fn || (!arg && len))
        return CREW_EINVAL;
    *out = NULL;
    crew_start_method method = opts ? opts->method : CREW_START_DEFAULT;
    if ((int)method < CREW_START_DEFAULT || method > CREW_START_FORKSERVER)
        return CREW_EINVAL;
    if (opts && opts->n_pass_fds) {
        if (!opts->pass_fds)
            return CREW_EINVAL;
        if (opts->n_pass_fds > CREW__MAX_PASS_FDS)
            return CREW_E2BIG;
        for (size_t i = 0; i < opts->n_pass_fds; i++)
            if (opts->pass_fds[i] < 0 || fcntl(opts->pass_fds[i], F_GETFD) < 0)
                return CREW_EBADF;
    }
    if (len == 0)
        arg = NULL;
    crew_process *p = crew__calloc(1, sizeof *p);
    if (!p)
        return CREW_ENOMEM;
    p->method = method == CREW_START_DEFAULT ? CREW_START_FORKSERVER : method;
    atomic_init(&p->pidfd, -1);
    /* Everything p needs is written before the fork: each page the parent
     * writes while the child still shares it costs a copy-on-write fault. */
    pthread_mutex_init(&p->lock, NULL);
    int rc;
    switch (p->method) {
    case CREW_START_FORK:
        rc = start_fork(p, fn, arg, len, opts);
        break;
    case CREW_START_SPAWN:
        rc = start_spawn(p, fn, arg, len, opts);
        break;
    default: {
        pid_t pid = crew__forkserver_fork(fn, arg, len, opts, &rc);
        if (pid > 0)
            p->pid = pid;
        break;
    }
    }
    if (rc) {
        pthread_mutex_destroy(&p->lock);
        crew__free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Reaps p if it has ended (WNOHANG). 0: reaped (now or before); 1: still
 * running; <0: error. Reaping happens only here and in destroy, both under
 * p->lock, so a caller holding p->lock that sees !reaped knows the pid is
 * still ours: no other process can have been given it. */
static int try_reap(crew_process *p)
{
    if (atomic_load_explicit(&p->reaped, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    if (!atomic_load_explicit(&p->reaped, memory_order_relaxed)) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r;
        do
            r = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            rc = -errno;
        } else if (si.si_pid == 0) {
            rc = 1;
        } else {
            crew_exit st = {0, 0, 0};
            if (si.si_code == CLD_EXITED)
                st.code = si.si_status;
            else {
                st.signal = si.si_status;
                st.core_dumped = si.si_code == CLD_DUMPED;
            }
            p->status = st;
            atomic_store_explicit(&p->reaped, 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* The pidfd, opened on first use. A fork start+join that nobody polls never
 * pays for one (pidfd_open, the poll and the close cost ~5% of a fork here).
 * Race-free: only we reap the child (under p->lock), so while it is not
 * reaped its pid cannot name another process. */
static int get_pidfd(crew_process *p)
{
    int fd = atomic_load_explicit(&p->pidfd, memory_order_acquire);
    if (fd >= 0)
        return fd;
    pthread_mutex_lock(&p->lock);
    fd = atomic_load_explicit(&p->pidfd, memory_order_relaxed);
    if (fd < 0) {
        if (atomic_load_explicit(&p->reaped, memory_order_relaxed)) {
            fd = CREW_ESRCH;
        } else {
            fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
            if (fd < 0)
                fd = -errno;
            else
                atomic_store_explicit(&p->pidfd, fd, memory_order_release);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return fd;
}

int crew_process_join(crew_process *p, double timeout, crew_exit *st)
{
    if (!p || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    for (;;) {
        int rc = try_reap(p);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if (st)
                *st = p->status;
            return 0;
        }
        if (d.forever) {
            /* Sleep until it is a zombie without reaping (WNOWAIT): any
             * number of joiners may wait so; try_reap then reaps once. */
            siginfo_t si;
            if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOWAIT) < 0 && errno != EINTR) {
                int e = -errno;
                /* ECHILD because another joiner reaped it just now? It
                 * marks that under p->lock: wait for it, then look. */
                pthread_mutex_lock(&p->lock);
                bool reaped = atomic_load_explicit(&p->reaped, memory_order_relaxed);
                pthread_mutex_unlock(&p->lock);
                if (!reaped)
                    return e;
            }
            continue;
        }
        int ms = crew__deadline_poll_ms(&d);
        if (ms == 0)
            return CREW_ETIMEDOUT;
        int fd = get_pidfd(p);
        if (fd == CREW_ESRCH)
            continue; /* reaped meanwhile by another joiner */
        if (fd < 0)
            return fd;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno != EINTR)
            return -errno;
    }
}

int crew_process_kill(crew_process *p, int sig)
{
    if (!p || sig < 0 || sig >= NSIG)
        return CREW_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    /* Under p->lock an unreaped child's pid is still ours (see try_reap). */
    if (atomic_load_explicit(&p->reaped, memory_order_relaxed))
        rc = CREW_ESRCH;
    else if (kill(p->pid, sig) != 0)
        rc = -errno;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

pid_t crew_process_pid(const crew_process *p) { return p ? p->pid : CREW_EINVAL; }

int crew_process_pidfd(const crew_process *p)
{
    /* p is logically const: the pidfd is a lazily made view of it. */
    return p ? get_pidfd((crew_process *)(uintptr_t)p) : CREW_EINVAL;
}

int crew_process_destroy(crew_process *p)
{
    if (!p)
        return CREW_EINVAL;
    pthread_mutex_lock(&p->lock);
    if (!atomic_load_explicit(&p->reaped, memory_order_relaxed)) {
        (void)kill(p->pid, SIGKILL);
        siginfo_t si;
        int r;
        do
            r = waitid(P_PID, (id_t)p->pid, &si, WEXITED);
        while (r < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&p->lock);
    crew__close(atomic_load_explicit(&p->pidfd, memory_order_relaxed));
    pthread_mutex_destroy(&p->lock);
    crew__free(p);
    return 0;
}
