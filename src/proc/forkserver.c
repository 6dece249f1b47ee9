/*
 * forkserver.c -- the forkserver: a single-threaded exec of the program that
 * forks crew children on request, and the parent's client for it.
 *
 * DESIGN
 * Parent (client) side. One forkserver per process, started lazily (or by
 * crew_forkserver_start) by exec'ing /proc/self/exe in server mode with one
 * end of a SOCK_SEQPACKET socketpair. The exec is done by a crew-owned
 * "keeper" thread that lives as long as the process: Linux sends
 * PR_SET_PDEATHSIG when the parent *thread* exits, and the server and its
 * workers are tied to the thread that made the server; a user thread could
 * exit at any time, the keeper never does. Spawn children are exec'd by the
 * keeper too (crew__keeper_spawn_exec), for the same reason. Lock order:
 * fs_lock, then keeper_mu. A start sends one request (fnref,
 * argument, name, signal mask, the caller's current fds 0..2 and pass_fds as
 * SCM_RIGHTS) and reads one reply {status, pid}. `fs_lock` serialises
 * request/reply pairs and guards the fs_* state; nothing else is shared.
 * If the server is found dead (EPIPE/EOF), it is reaped and restarted once.
 * A forked child of the parent does not share the server: an atfork handler
 * drops the inherited state (closing the socket copy) and the child starts
 * its own when it needs one.
 *
 * Server side. Blocks on the socket; on EOF (the parent closed it, or died)
 * it exits. For each request it resolves the function first (so an
 * unresolvable task is an error reply, not a child), checks the fd numbers
 * against its fd limit, then clone3(CLONE_PARENT): the worker becomes a
 * child of the crew *parent*, not of the server. Why: the parent can then
 * waitid/pidfd the worker like any other child -- exact exit codes, signals
 * and core flags, no status relay, no zombie ever parked in the server, and
 * death seen in microseconds through the pidfd. The server never has
 * children to reap. The worker's PR_SET_PDEATHSIG then refers to the
 * keeper thread, i.e. to the parent process's lifetime.
 *
 * clone3 is a raw system call, so the worker's C library state is fixed up
 * the way glibc's own fork does: the kernel writes the new tid into the
 * thread descriptor (CLONE_CHILD_SETTID at the address glibc registered with
 * set_tid_address, found with PR_GET_TID_ADDRESS, or next to the robust-list
 * head and verified), and the robust-mutex list is re-registered. The server
 * is single-threaded and holds no lock when it clones, so nothing else needs
 * repair.
 *
 * Signals: the server ignores SIGINT (a terminal ^C must not take it down
 * while the parent survives it); workers restore SIGINT's default and the
 * requesting thread's signal mask.
 */
#include "proc/process_internal.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ client */

static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static int fs_sock = -1;
static int fs_pidfd = -1;
static pid_t fs_pid;
static pid_t fs_owner; /* the process the state belongs to */

/* The keeper thread: execs the server (and spawn children) on request,
 * then waits for the next request; it never exits. One request at a time:
 * keeper_cur points at the caller's request until the keeper marks it done;
 * the caller waits, so the request (and keep_fds) stay valid. */
typedef struct keeper_req {
    char kind;
    int sock;
    const int *keep;
    size_t n_keep;
    pid_t result;
    bool done;
} keeper_req;

static pthread_mutex_t keeper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t keeper_cv = PTHREAD_COND_INITIALIZER;
static bool keeper_running;
static keeper_req *keeper_cur;

static void *keeper_main(void *unused)
{
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL); /* process signals go elsewhere */
    pthread_mutex_lock(&keeper_mu);
    for (;;) {
        while (!keeper_cur || keeper_cur->done)
            pthread_cond_wait(&keeper_cv, &keeper_mu);
        keeper_req *r = keeper_cur;
        pthread_mutex_unlock(&keeper_mu);
        pid_t pid = crew__spawn_exec(r->kind, r->sock, r->keep, r->n_keep);
        pthread_mutex_lock(&keeper_mu);
        r->result = pid;
        r->done = true;
        keeper_cur = NULL;
        pthread_cond_broadcast(&keeper_cv);
    }
    return NULL;
}

static void fs_atfork_child(void)
{
    /* The server and the keeper belong to the parent (no keeper thread
     * exists here). Drop our copies; locks may have been held by threads
     * that do not exist here, so re-initialise them. */
    pthread_mutex_init(&fs_lock, NULL);
    pthread_mutex_init(&keeper_mu, NULL);
    pthread_cond_init(&keeper_cv, NULL);
    if (fs_sock >= 0)
        crew__close(fs_sock);
    if (fs_pidfd >= 0)
        crew__close(fs_pidfd);
    fs_sock = fs_pidfd = -1;
    fs_pid = 0;
    fs_owner = 0;
    keeper_running = false;
    keeper_cur = NULL;
}

static pthread_once_t fs_once = PTHREAD_ONCE_INIT;
static void fs_register(void) { pthread_atfork(NULL, NULL, fs_atfork_child); }

pid_t crew__keeper_spawn_exec(char kind, int sock, const int *keep_fds, size_t n_keep)
{
    pthread_once(&fs_once, fs_register);
    keeper_req req = {kind, sock, keep_fds, n_keep, 0, false};
    pthread_mutex_lock(&keeper_mu);
    if (!keeper_running) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        pthread_t t;
        int e = pthread_create(&t, &a, keeper_main, NULL);
        pthread_attr_destroy(&a);
        if (e) {
            pthread_mutex_unlock(&keeper_mu);
            return -e;
        }
        (void)pthread_setname_np(t, "crew-keeper");
        keeper_running = true;
    }
    while (keeper_cur)
        pthread_cond_wait(&keeper_cv, &keeper_mu);
    keeper_cur = &req;
    pthread_cond_broadcast(&keeper_cv);
    while (!req.done)
        pthread_cond_wait(&keeper_cv, &keeper_mu);
    pthread_mutex_unlock(&keeper_mu);
    return req.result;
}

/* Drops (and reaps) a server, dead or alive. fs_lock held. */
static void fs_drop_locked(void)
{
    if (fs_sock >= 0)
        crew__close(fs_sock); /* a live server sees EOF and exits */
    if (fs_pidfd >= 0) {
        siginfo_t si;
        int r;
        do
            r = waitid((idtype_t)P_PIDFD, (id_t)fs_pidfd, &si, WEXITED);
        while (r < 0 && errno == EINTR);
        crew__close(fs_pidfd);
    }
    fs_sock = fs_pidfd = -1;
    fs_pid = 0;
}

static int fs_start_locked(void)
{
    pid_t me = getpid();
    if (fs_owner == me && fs_sock >= 0)
        return 0;
    fs_owner = me;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    pid_t pid = crew__keeper_spawn_exec('f', sv[1], NULL, 0);
    crew__close(sv[1]);
    if (pid < 0) {
        crew__close(sv[0]);
        return (int)pid;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int e = -errno;
        (void)kill(pid, SIGKILL);
        crew__close(sv[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return e;
    }
    fs_sock = sv[0];
    fs_pidfd = pidfd;
    fs_pid = pid;
    /* The server says hello once it runs; no hello means the exec'd image
     * did not come up in server mode. */
    crew__reply hello = {CREW_EEXEC, 0};
    ssize_t n = -1;
    /* Bounded: an image in which crew's child dispatch does not run (no
     * constructor, CREW_CHILD_DEFER without crew_child_main) runs main()
     * instead and never answers. */
    struct pollfd pf = {.fd = fs_sock, .events = POLLIN};
    int pr;
    do
        pr = poll(&pf, 1, 30000);
    while (pr < 0 && errno == EINTR);
    if (pr > 0)
        do
            n = recv(fs_sock, &hello, sizeof hello, 0);
        while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof hello || hello.status != 0 || hello.pid != pid) {
        (void)syscall(SYS_pidfd_send_signal, fs_pidfd, SIGKILL, NULL, 0);
        fs_drop_locked();
        return CREW_EEXEC;
    }
    return 0;
}

int crew_forkserver_start(void)
{
    pthread_mutex_lock(&fs_lock);
    int rc = fs_start_locked();
    pthread_mutex_unlock(&fs_lock);
    return rc;
}

int crew_forkserver_stop(void)
{
    pthread_mutex_lock(&fs_lock);
    if (fs_owner == getpid())
        fs_drop_locked();
    pthread_mutex_unlock(&fs_lock);
    return 0;
}

pid_t crew_forkserver_pid(void)
{
    pthread_mutex_lock(&fs_lock);
    pid_t p = fs_owner == getpid() ? fs_pid : 0;
    pthread_mutex_unlock(&fs_lock);
    return p;
}

pid_t crew__forkserver_fork(crew_process_fn fn, const void *arg, size_t len,
                            const crew_process_options *opts, const void *handles,
                            size_t handles_len, int *err)
{
    crew__msg m;
    int rc = crew__msg_build(&m, fn, arg, len, opts, true, handles, handles_len);
    if (rc) {
        *err = rc;
        return -1;
    }
    crew__reply rep = {CREW_EPROTO, 0};
    pthread_mutex_lock(&fs_lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = fs_start_locked();
        if (rc)
            break;
        rc = crew__msg_send(fs_sock, &m);
        if (rc == 0) {
            ssize_t n;
            do
                n = recv(fs_sock, &rep, sizeof rep, 0);
            while (n < 0 && errno == EINTR);
            if (n == (ssize_t)sizeof rep) {
                rc = rep.status;
                break;
            }
            rc = n == 0 ? CREW_EPIPE : n < 0 ? -errno : CREW_EPROTO;
        }
        if (rc != CREW_EPIPE && rc != -ECONNRESET)
            break;
        /* The server died (killed from outside?): reap it, start afresh. */
        (void)syscall(SYS_pidfd_send_signal, fs_pidfd, SIGKILL, NULL, 0);
        fs_drop_locked();
    }
    pthread_mutex_unlock(&fs_lock);
    crew__msg_free(&m);
    if (rc) {
        *err = rc;
        return -1;
    }
    *err = 0;
    return (pid_t)rep.pid;
}

/* ------------------------------------------------------------ server */

static int *srv_tid_addr;       /* glibc's thread descriptor tid, or NULL */
static void *srv_robust_head;   /* glibc's robust-list head */
static size_t srv_robust_len;

static void srv_find_libc_state(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (syscall(SYS_get_robust_list, 0, &srv_robust_head, &srv_robust_len) != 0)
        srv_robust_head = NULL;
    int *a = NULL;
    if (prctl(PR_GET_TID_ADDRESS, &a, 0, 0, 0) == 0 && a && *a == tid) {
        srv_tid_addr = a;
        return;
    }
    /* Kernels without CONFIG_CHECKPOINT_RESTORE lack PR_GET_TID_ADDRESS.
     * glibc's struct pthread has tid, an unused pid, robust_prev, then the
     * robust head; accept the guess only if it holds our tid. */
    if (srv_robust_head) {
        int *g = (int *)(void *)((char *)srv_robust_head - sizeof(void *) - 2 * sizeof(pid_t));
        if (*g == tid)
            srv_tid_addr = g;
    }
}

static void srv_reply(int sock, int status, pid_t pid)
{
    crew__reply r = {status, (int32_t)pid};
    ssize_t n;
    do
        n = send(sock, &r, sizeof r, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof r)
        _exit(0); /* the parent is gone */
}

void crew__forkserver_main(int sock, pid_t parent)
{
    sigset_t none;
    sigemptyset(&none);
    signal(SIGINT, SIG_IGN);
    sigprocmask(SIG_SETMASK, &none, NULL);
    (void)prctl(PR_SET_NAME, "crew-forksrv", 0, 0, 0);
    /* Inheritable fds of the parent came through the exec: drop them (a
     * pipe's write end held here would keep its reader from seeing EOF). */
    int keep[4] = {0, 1, 2, sock};
    crew__close_all_except(keep, 4);
    srv_find_libc_state();
    srv_reply(sock, 0, getpid());
    struct rlimit rl;
    for (;;) {
        crew__msg m;
        int rc = crew__msg_recv(sock, &m);
        if (rc == CREW_EOF)
            _exit(0);
        if (rc == CREW_EPROTO || rc == CREW_ENOMEM) {
            srv_reply(sock, rc, 0);
            continue;
        }
        if (rc)
            _exit(0);
        crew__req *r = m.req;
        uintptr_t fn = 0;
        rc = crew__req_resolve(r, &fn);
        if (rc == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            /* The worker parks every fd above all sources and targets before
             * moving them: all of that must fit under the limit. */
            const int32_t *t = crew__req_targets(r);
            long top = sock;
            for (int i = 0; i < m.n_fds; i++) {
                if (m.fds[i] > top)
                    top = m.fds[i];
                if (i < (int)r->n_fds && t[i] > top)
                    top = t[i];
            }
            if ((rlim_t)(top + 1 + m.n_fds) > rl.rlim_cur)
                rc = CREW_EMFILE;
        }
        if (rc) {
            crew__msg_free(&m);
            srv_reply(sock, rc, 0);
            continue;
        }
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_PARENT;
        if (srv_tid_addr) {
            ca.flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
            ca.child_tid = (uint64_t)(uintptr_t)srv_tid_addr;
        }
        long pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) {
            /* The worker. Repair what glibc's fork would have. */
            crew__tls_tid = 0;
            crew__tls_pid = 0;
            if (srv_robust_head)
                syscall(SYS_set_robust_list, srv_robust_head, srv_robust_len);
            signal(SIGINT, SIG_DFL);
            crew__child_tie_to_parent(parent);
            crew__child_run(&m, (crew_process_fn)fn, sock);
        }
        rc = pid < 0 ? -errno : 0;
        crew__msg_free(&m);
        srv_reply(sock, rc, pid < 0 ? 0 : (pid_t)pid);
    }
}
