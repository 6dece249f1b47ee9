/*
 * process.c -- crew_process: start, join, kill, destroy; the fork and spawn
 * methods (the forkserver's is forkserver.c); the dispatch that turns an
 * exec'd image into the crew child it was started as.
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
 * prctl, the child is already reparented and kills itself (child.h). The
 * kernel sends the death signal when the parent *thread* exits; see crew.h
 * and docs/processes.md for what that means for each method.
 *
 * Exec'd children (spawn, forkserver) are recognised before main() by the
 * constructor below: child.c's hand-shake checks the CREW_CHILD claim, then
 * the dispatch runs the forkserver or serves the spawn child's request
 * (child.c). A spawn start here sends the request (request.c) and returns
 * only after the child's answer, so an unresolvable task is a start error,
 * not a child that exits 127.
 *
 * Files below this one: child.c (the child runtime), request.c (the start
 * request), forkserver.c, spawn.c, fnref.c. None of them calls back here.
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
#include "proc/child.h"
#include "proc/process_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct crew_process {
    pid_t pid;
    _Atomic int pidfd; /* -1 until first needed (get_pidfd) */
    crew_start_method method;
    _Atomic int reaped; /* 1 once status is final (release: status written) */
    crew_exit status;
    pthread_mutex_t lock; /* serialises the reaping waitid */
};

/* ------------------------------------------------------------ fork */

static int start_fork(crew_process *p, crew_process_fn fn, const void *arg, size_t len,
                      const crew_process_options *opts, crew__handles *hd)
{
    pid_t parent = (pid_t)crew__pid();
    /* Unflushed parent output would otherwise be written again by the
     * child's flush of stdout/stderr. */
    crew__flush_std();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        crew__child_tie_inline(parent);
        /* Our copy of the parent's blob; the fds it names are inherited. */
        crew__child_handles_set(hd->blob, hd->blob_len);
        if (opts && opts->name)
            (void)prctl(PR_SET_NAME, opts->name, 0, 0, 0);
        crew__child_exit_inline(fn((void *)arg, len));
    }
    p->pid = pid;
    return 0;
}

/* ------------------------------------------------------------ spawn */

static int start_spawn(crew_process *p, crew_process_fn fn, const void *arg, size_t len,
                       const crew_process_options *opts, const crew__handles *hd)
{
    crew__msg m;
    int rc = crew__msg_build(&m, fn, arg, len, opts, false, hd->blob, hd->blob_len);
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

/* Which child are we? Nothing happens unless the hand-shake (child.c)
 * accepts this process as a crew child; it exits if the claim is forged. */
static void child_dispatch(void)
{
    int fd;
    pid_t parent;
    char kind = crew__child_accept(&fd, &parent);
    if (kind == 'f')
        crew__forkserver_main(fd, parent); /* never returns */
    if (kind == 's')
        crew__child_serve(fd); /* never returns */
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
        child_dispatch();
}

int crew_child_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    child_dispatch();
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
    /* Handles become pass_fds of the child's own and a blob naming them. */
    crew__handles hd;
    crew_process_options none = {0};
    int rc = crew__handles_prepare(&hd, opts ? opts : &none);
    if (rc)
        return rc;
    opts = &hd.opts;
    crew_process *p = crew__calloc(1, sizeof *p);
    if (!p) {
        crew__handles_release(&hd);
        return CREW_ENOMEM;
    }
    p->method = method == CREW_START_DEFAULT ? CREW_START_FORKSERVER : method;
    atomic_init(&p->pidfd, -1);
    /* Everything p needs is written before the fork: each page the parent
     * writes while the child still shares it costs a copy-on-write fault. */
    pthread_mutex_init(&p->lock, NULL);
    switch (p->method) {
    case CREW_START_FORK:
        rc = start_fork(p, fn, arg, len, opts, &hd);
        break;
    case CREW_START_SPAWN:
        rc = start_spawn(p, fn, arg, len, opts, &hd);
        break;
    default: {
        pid_t pid = crew__forkserver_fork(fn, arg, len, opts, hd.blob, hd.blob_len, &rc);
        if (pid > 0)
            p->pid = pid;
        break;
    }
    }
    /* The child has its own copies of the handle fds now (or never will). */
    crew__handles_release(&hd);
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
