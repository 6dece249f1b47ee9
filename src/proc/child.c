/*
 * child.c -- the child runtime: what a crew child that is not a plain fork
 * runs before the task's function -- the CREW_CHILD hand-shake of an exec'd
 * child, receipt of its start request, its fds, name, signal mask and
 * argument -- and the last step after it.
 *
 * DESIGN
 * Two kinds of processes get here. An exec'd child (spawn, or the
 * forkserver itself) is recognised before main() through the CREW_CHILD
 * environment variable ("s:<fd>:<ppid>" or "f:<fd>:<ppid>"), which names
 * the inherited channel and the parent's pid: crew__child_accept checks that
 * claim and says which kind it is; process.c's dispatch then runs the
 * forkserver (forkserver.c) or, for a spawn child, crew__child_serve. A
 * forkserver worker (a clone of the server) arrives in crew__child_run
 * directly with the request the server received. So this file sits below
 * both process.c and forkserver.c and calls neither.
 *
 * The hand-shake. The environment is the invoker's to set -- in a setuid
 * program an unprivileged user's -- so CREW_CHILD alone proves nothing: the
 * process ties itself to the parent it names (PR_SET_PDEATHSIG, then
 * getppid), and the fd must be a SOCK_SEQPACKET socket whose peer, as the
 * kernel recorded it when the socketpair was made (SO_PEERCRED), is that
 * parent with our effective uid and gid. Otherwise the process exits 127
 * having run nothing: no request read, no module loaded, not main()
 * (docs/security.md, tests/test_setuid.c).
 *
 * A spawn child then reads its start request (request.c), resolves the
 * function (fnref.c), answers "ok" or the error, and runs the task; the
 * parent's start returns only after that answer, so an unresolvable task is
 * a start error, not a child that exits 127.
 *
 * Receipt. A spawn child's fds are in place already (spawn.c kept them at
 * their numbers through exec): it closes everything else. A forkserver
 * worker's fds arrived as SCM_RIGHTS at arbitrary numbers: they are moved
 * to their targets (place_fds), and everything else, the channel included,
 * is closed. Then the name and the requesting thread's signal mask, the
 * argument (inline in the request, or mapped privately from its memfd), the
 * task, and _exit with its result after flushing stdout and stderr.
 */
#include "proc/child.h"
#include "proc/process_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

void crew__child_tie_to_parent(pid_t parent) { crew__child_tie_inline(parent); }

void crew__child_exit(int code) { crew__child_exit_inline(code); }

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
    /* The request buffer lives until the process ends: the handle blob in
     * it is what crew_child_handle_* read. */
    crew__child_handles_set(crew__req_handles(r), r->handles_len);
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

/* ------------------------------------------------------------ hand-shake */

/* Is fd the crew channel our own parent made for us? The environment is the
 * invoker's to set -- in a setuid program an unprivileged user's -- so
 * CREW_CHILD alone proves nothing: the fd it names must be a SOCK_SEQPACKET
 * socket whose peer (the creator of the socketpair, as the kernel recorded
 * it) is our parent process with our effective uid and gid. An invoker can
 * pass a socketpair of its own, but its credentials are its own, not the
 * ones a setuid program runs with; and the parent pid must be our real
 * parent (checked by crew__child_tie_to_parent before this). */
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

char crew__child_accept(int *fd_out, pid_t *parent_out)
{
    const char *v = getenv(CREW__CHILD_ENV);
    if (!v)
        return 0;
    char kind = 0;
    int fd = -1;
    long parent = 0;
    if (sscanf(v, "%c:%d:%ld", &kind, &fd, &parent) != 3 || (kind != 's' && kind != 'f') ||
        fd < 0 || parent <= 0)
        return 0;
    /* Our own children must not take themselves for crew children. */
    unsetenv(CREW__CHILD_ENV);
    crew__child_tie_to_parent((pid_t)parent);
    /* A CREW_CHILD that does not come with our parent's channel is forged
     * (or stale): run nothing -- neither a request read from that fd nor
     * main(), which the invoker did not mean to start this way. */
    if (!channel_from_parent(fd, (pid_t)parent))
        _exit(127);
    *fd_out = fd;
    *parent_out = (pid_t)parent;
    return kind;
}

void crew__child_serve(int fd)
{
    crew__msg m;
    crew__reply rep = {0, (int32_t)getpid()};
    uintptr_t fn = 0;
    rep.status = crew__msg_recv(fd, &m);
    if (rep.status == 0)
        rep.status = crew__req_resolve(m.req, &fn);
    ssize_t n = send(fd, &rep, sizeof rep, MSG_NOSIGNAL);
    if (rep.status != 0 || n != (ssize_t)sizeof rep)
        _exit(1); /* the parent reports the error and reaps us */
    crew__child_run(&m, (crew_process_fn)fn, fd);
}
