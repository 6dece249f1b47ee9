/*
 * child.c -- a sacrificial child process for what must not run in compare's
 * own: the thread-pool crash demonstration and the user's task under
 * threads.
 *
 * DESIGN
 *  The child is a crew_process started with CREW_START_FORK (it inherits
 *  the plan and the loaded task at the same addresses). It runs `job`,
 *  which writes its figures to a pipe; the parent reads them until EOF, cap
 *  bytes or the limit, and then learns from crew_process_join whether the
 *  child survived. A child past its limit is killed (SIGKILL) and reaped:
 *  nothing outlives the call. Children are forked while this process runs
 *  no pool (the thread model is measured first, see compare.c), so fork's
 *  rule -- no other thread holding a lock -- is kept.
 */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct child_job {
    int fd;
    int (*job)(int fd, const cmp_plan *pl);
    const cmp_plan *pl;
} child_job;

static int child_entry(void *arg, size_t len)
{
    (void)len;
    const child_job *cj = arg;
    int rc = cj->job(cj->fd, cj->pl);
    return rc == 0 ? 0 : 1;
}

bool probe_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* Runs job in a forked child; reads everything it wrote into buf (up to
 * cap; *got bytes); fills *ex with how it ended. */
int probe_in_child(int (*job)(int fd, const cmp_plan *pl), const cmp_plan *pl, double limit, void *buf,
                   size_t cap, size_t *got, crew_exit *ex)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -errno;
    child_job cj = {fds[1], job, pl};
    crew_process_options po = {0};
    po.method = CREW_START_FORK;
    po.name = "crew-compare-child";
    crew_process *cp;
    fflush(NULL);
    int rc = crew_process_start(&cp, child_entry, &cj, sizeof cj, &po);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return rc;
    }
    size_t n = 0;
    double deadline = crew_now() + limit;
    bool late = false;
    for (;;) {
        /* the child writes at the end: wait for it, but not forever */
        double left = deadline - crew_now();
        struct pollfd pf = {fds[0], POLLIN, 0};
        int pr = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            late = true;
            break;
        }
        ssize_t r = read(fds[0], (char *)buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap)
            break;
    }
    close(fds[0]);
    *got = n;
    if (late)
        crew_process_kill(cp, SIGKILL);
    rc = crew_process_join(cp, pl->timeout, ex);
    if (late && rc == 0) {
        crew_process_destroy(cp);
        return CREW_ETIMEDOUT;
    }
    if (rc == CREW_ETIMEDOUT) {
        crew_process_kill(cp, SIGKILL);
        rc = crew_process_join(cp, CREW_FOREVER, ex);
        if (rc == 0)
            rc = CREW_ETIMEDOUT;
    }
    crew_process_destroy(cp);
    return rc;
}

const char *probe_sig_text(int sig)
{
    static char buf[48];
    const char *a = sigabbrev_np(sig);
    snprintf(buf, sizeof buf, "SIG%s", a ? a : "?");
    return buf;
}
