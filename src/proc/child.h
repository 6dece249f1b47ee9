/*
 * child.h -- the first and the last step of every crew child (tie it to
 * its parent; flush stdio and leave), inline. Never installed.
 *
 * They are inline, and use the system call instruction directly where we
 * can, for the fork method: a fork child has no page-table entries for code
 * pages yet (the kernel does not copy them), so every libc or libcrew page
 * it touches is a page fault; prctl and getppid would add two to a path
 * that should cost what a raw fork costs, and a call into another libcrew
 * file one more. The exec'd children (child.c) use the same steps through
 * crew__child_tie_to_parent and crew__child_exit.
 */
#ifndef CREW__PROC_CHILD_H
#define CREW__PROC_CHILD_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__x86_64__)
static inline long crew__raw_sys2(long n, long a, long b)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
static inline long crew__raw_sys2(long n, long a, long b)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1) : "memory");
    return x0;
}
#else
static inline long crew__raw_sys2(long n, long a, long b) { return syscall(n, a, b); }
#endif

/* PR_SET_PDEATHSIG(SIGKILL), then the check that the parent is still the
 * one we were given (see process.c, "Parent death"). */
static inline __attribute__((always_inline)) void crew__child_tie_inline(pid_t parent)
{
    (void)crew__raw_sys2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
    /* If the parent died before the prctl, we were already reparented and
     * the death signal will never come: end now, the way the signal would. */
    if (crew__raw_sys2(SYS_getppid, 0, 0) != parent)
        (void)kill(getpid(), SIGKILL);
}

/* Does a stdio stream hold unwritten output? Read without the stream lock,
 * so a child that printed nothing writes no stdio page (each such write is
 * a copy-on-write fault) -- glibc's FILE fields directly, else __fpending. */
static inline __attribute__((always_inline)) bool crew__pending_output(FILE *f)
{
#if defined(__GLIBC__)
    return f->_IO_write_ptr > f->_IO_write_base;
#else
    return __fpending(f) > 0;
#endif
}

/* Flushes stdout and stderr if they hold output. */
static inline __attribute__((always_inline)) void crew__flush_std(void)
{
    if (crew__pending_output(stdout))
        fflush(stdout);
    if (crew__pending_output(stderr))
        fflush(stderr);
}

/* Flush stdout/stderr, then _exit() as the bare system call: in a fork
 * child the libc _exit would be one more code page to fault in, and with
 * lazy binding a symbol lookup. */
static inline __attribute__((always_inline, noreturn)) void crew__child_exit_inline(int code)
{
    crew__flush_std();
    for (;;)
        (void)crew__raw_sys2(SYS_exit_group, code & 0xff, 0);
}

#endif /* CREW__PROC_CHILD_H */
