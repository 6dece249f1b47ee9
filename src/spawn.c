/*
 * spawn.c -- exec /proc/self/exe as a crew child, safely from a threaded
 * parent, reporting exec failure to the caller.
 *
 * DESIGN
 * The child is made with clone(CLONE_VM | CLONE_VFORK) on a small private
 * stack, as musl's and glibc's posix_spawn do: no copy of the address space
 * (cheap for big parents), and the parent thread is suspended until the
 * child has exec'd or died, so the child may write its exec errno into the
 * parent's memory (ctx->err) -- the vfork form of the "CLOEXEC pipe" report.
 * While it shares our memory the child runs raw system calls only: no lock,
 * no allocation, nothing another thread of the parent could be holding.
 *
 * Signals: the calling thread blocks every signal around the clone, so no
 * handler of the parent can run on the shared memory in the child; the
 * child execs with all signals still blocked (exec keeps the mask, resets
 * handlers) and the new image restores the intended mask itself, after
 * which anything that arrived meanwhile is delivered with default actions.
 *
 * Fds: before exec, the child marks every fd close-on-exec except 0..2, the
 * channel and keep_fds (close_range(CLOSE_RANGE_CLOEXEC) over the gaps), and
 * clears close-on-exec on those, so the new image holds exactly them.
 *
 * Parent death: the child sets PR_SET_PDEATHSIG(SIGKILL) before exec (it
 * survives exec for a non-set-id program); the new image re-checks getppid().
 */
#include "process_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined")))
#else
#define NO_SANITIZE
#endif

extern char **environ;

typedef struct spawn_ctx {
    char **argv;
    char **envp;
    const int *keep; /* sorted, unique */
    int n_keep;
    pid_t parent;
    volatile int err; /* written by the child: -errno of the failed step */
} spawn_ctx;

NO_SANITIZE static int spawn_child(void *arg)
{
    spawn_ctx *c = arg;
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (syscall(SYS_getppid) != c->parent)
        return 1; /* cannot happen while the vforked parent waits; be safe */
    unsigned lo = 3;
    for (int i = 0; i < c->n_keep; i++) {
        unsigned fd = (unsigned)c->keep[i];
        if (fd > lo)
            syscall(SYS_close_range, lo, fd - 1, CLOSE_RANGE_CLOEXEC);
        if (fd + 1 > lo)
            lo = fd + 1;
    }
    syscall(SYS_close_range, lo, ~0u, CLOSE_RANGE_CLOEXEC);
    for (int i = 0; i < c->n_keep; i++)
        syscall(SYS_fcntl, c->keep[i], F_SETFD, 0);
    long r = syscall(SYS_execve, "/proc/self/exe", c->argv, c->envp);
    c->err = r < 0 ? -errno : CREW_EEXEC;
    return 127; /* reaped by the parent, never seen by the user */
}

pid_t crew__spawn_exec(char kind, int channel, const int *keep_fds, size_t n_keep)
{
    /* Environment: ours without any stale CREW_CHILD, plus the marker. */
    size_t n_env = 0;
    for (char **e = environ; e && *e; e++)
        n_env++;
    char **envp = crew__calloc(n_env + 2, sizeof *envp);
    int *keep = crew__calloc(n_keep + 4, sizeof *keep);
    const size_t stack_size = 64 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (!envp || !keep || stack == MAP_FAILED) {
        crew__free(envp);
        crew__free(keep);
        if (stack != MAP_FAILED)
            munmap(stack, stack_size);
        return CREW_ENOMEM;
    }
    char marker[64];
    snprintf(marker, sizeof marker, CREW__CHILD_ENV "=%c:%d:%d", kind, channel, (int)getpid());
    size_t k = 0;
    const size_t pfx = sizeof(CREW__CHILD_ENV);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, CREW__CHILD_ENV "=", pfx) != 0)
            envp[k++] = *e;
    envp[k++] = marker;
    envp[k] = NULL;

    /* The fds to keep, sorted and unique (tiny sets: insertion sort). */
    int nk = 0;
    int first[4] = {0, 1, 2, channel};
    for (size_t i = 0; i < n_keep + 4; i++) {
        int fd = i < 4 ? first[i] : keep_fds[i - 4];
        if (fd < 0)
            continue;
        int j = nk;
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
    /* Only ours 0..2 that are open: keeping a closed number is harmless. */
    char *argv[] = {program_invocation_name, (char *)"--crew-child", NULL};
    spawn_ctx ctx = {.argv = argv, .envp = envp, .keep = keep, .n_keep = nk,
                     .parent = getpid(), .err = 0};

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(spawn_child, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &ctx);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, stack_size);
    crew__free(envp);
    crew__free(keep);
    if (pid < 0)
        return -clone_errno;
    if (ctx.err != 0) {
        /* exec failed: the child has exited; reap it and report. */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return ctx.err;
    }
    return pid;
}
