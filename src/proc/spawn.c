/*
 * spawn.c -- exec /proc/self/exe as a crew child, safely from a threaded
 * parent, reporting exec failure to the caller.
 *
 * DESIGN
 * The exec goes through posix_spawn: glibc makes the child with
 * clone(CLONE_VM | CLONE_VFORK) on a private stack and returns the exec
 * errno to the caller (the vfork form of the "CLOEXEC pipe" report), so an
 * exec failure is an error of crew_process_start, never a child that exits
 * 127. No code of ours runs between the clone and the exec: that is what
 * keeps it safe from a parent whose other threads hold locks, and what keeps
 * the sanitizers' fork handling out of the way (an earlier version ran its
 * own clone(CLONE_VM) child, which ThreadSanitizer's clone interception took
 * for a fork of the whole process).
 *
 * What the child must hold is arranged with spawn actions and finished by
 * the new image itself, before any user code:
 *  - fds: dup2(fd, fd) actions clear close-on-exec on the channel and on
 *    keep_fds, so they survive at the same numbers; the parent's other
 *    inheritable fds are closed by the child's dispatch code (close_range
 *    over the gaps) right after exec.
 *  - signals: the child execs with every signal blocked and restores the
 *    intended mask itself, after which anything that arrived meanwhile is
 *    delivered with default actions (exec resets handlers).
 *  - parent death: the new image sets PR_SET_PDEATHSIG(SIGKILL) first thing
 *    and then checks getppid() against the pid in CREW_CHILD, so a parent
 *    that died during the exec is noticed too.
 */
#include "proc/process_internal.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>

extern char **environ;

pid_t crew__spawn_exec(char kind, int channel, const int *keep_fds, size_t n_keep)
{
    /* Environment: ours without any stale CREW_CHILD, plus the marker. */
    size_t n_env = 0;
    for (char **e = environ; e && *e; e++)
        n_env++;
    char **envp = crew__calloc(n_env + 2, sizeof *envp);
    if (!envp)
        return CREW_ENOMEM;
    char marker[64];
    snprintf(marker, sizeof marker, CREW__CHILD_ENV "=%c:%d:%d", kind, channel, (int)getpid());
    size_t k = 0;
    const size_t pfx = sizeof(CREW__CHILD_ENV); /* "NAME=" */
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, CREW__CHILD_ENV "=", pfx) != 0)
            envp[k++] = *e;
    envp[k++] = marker;
    envp[k] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int e = posix_spawn_file_actions_init(&fa);
    if (e) {
        crew__free(envp);
        return -e;
    }
    e = posix_spawnattr_init(&attr);
    if (e) {
        posix_spawn_file_actions_destroy(&fa);
        crew__free(envp);
        return -e;
    }
    /* dup2(fd, fd) in a spawn action clears close-on-exec (glibc >= 2.29). */
    e = posix_spawn_file_actions_adddup2(&fa, channel, channel);
    for (size_t i = 0; i < n_keep && !e; i++)
        e = posix_spawn_file_actions_adddup2(&fa, keep_fds[i], keep_fds[i]);
    sigset_t all;
    sigfillset(&all);
    if (!e)
        e = posix_spawnattr_setsigmask(&attr, &all);
    if (!e)
        e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    char *argv[] = {program_invocation_name, (char *)"--crew-child", NULL};
    if (!e)
        e = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    crew__free(envp);
    /* glibc has already reaped a child whose exec failed. */
    return e ? -e : pid;
}
