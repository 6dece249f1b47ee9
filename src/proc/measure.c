/*
 * measure.c -- what a process costs: its memory, and which processes it
 * started. Used by `crew compare` (memory per idle worker) and open to any
 * program that wants the same figures.
 *
 * DESIGN
 *  Everything comes from /proc and is read with plain open/read into a stack
 *  buffer or a crew__malloc'd table; no state is kept between calls, so every
 *  call is thread-safe and nothing here is process-shared.
 *
 *  Memory: /proc/<pid>/smaps_rollup (Linux >= 4.14) sums the process's
 *  mappings once, in the kernel: Rss, Pss, Private_Clean/Dirty,
 *  Shared_Clean/Dirty, Swap. PSS is the honest cost of a forked worker: a
 *  page shared by k processes counts 1/k in each, so summing the PSS of a
 *  parent and its workers gives the memory they use together.
 *
 *  A tree (crew_mem_usage_tree): the process plus crew_proc_children(pid,
 *  recursive), each read once; one that ends between the listing and its
 *  read is skipped.
 *
 *  Children: /proc/<pid>/stat of every process, keeping those whose parent
 *  is pid (or, recursively, a descendant of pid). A process that exits while
 *  we scan is simply not listed; the result is a snapshot.
 */
#include "core/internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a whole small /proc file into buf (NUL-terminated). */
static int read_proc(const char *path, char *buf, size_t cap, size_t *len)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            crew__close(fd);
            return e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    crew__close(fd);
    buf[n] = 0;
    if (len)
        *len = n;
    return 0;
}

/* The value in kB of "Name:   123 kB" in text, in bytes; 0 if absent. */
static uint64_t field_kb(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':')
            return strtoull(p + nl + 1, NULL, 10) * 1024u;
    }
    return 0;
}

/* Is pid a zombie (exited, not yet reaped)? */
static bool is_zombie(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_proc(path, buf, sizeof buf, NULL) != 0)
        return false;
    const char *rp = strrchr(buf, ')');
    char state;
    return rp && sscanf(rp + 1, " %c", &state) == 1 && (state == 'Z' || state == 'X');
}

int crew_mem_usage_get(pid_t pid, crew_mem_usage *out)
{
    if (!out || pid < 0)
        return CREW_EINVAL;
    char path[64], buf[4096];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/smaps_rollup");
    else
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    int rc = read_proc(path, buf, sizeof buf, NULL);
    if (rc != 0 && is_zombie(pid == 0 ? getpid() : pid)) {
        /* A zombie holds no memory any more (its rollup cannot be read). */
        memset(out, 0, sizeof *out);
        return 0;
    }
    if (rc == CREW_ENOENT) {
        /* No such process, or a kernel without smaps_rollup. */
        snprintf(path, sizeof path, "/proc/%d", pid == 0 ? (int)getpid() : (int)pid);
        return access(path, F_OK) == 0 ? CREW_ENOTSUP : CREW_ESRCH;
    }
    if (rc == CREW_ESRCH || rc == -EINVAL)
        return CREW_ESRCH;
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->rss = field_kb(buf, "Rss");
    out->pss = field_kb(buf, "Pss");
    out->private_bytes = field_kb(buf, "Private_Clean") + field_kb(buf, "Private_Dirty");
    out->shared_bytes = field_kb(buf, "Shared_Clean") + field_kb(buf, "Shared_Dirty");
    out->swap = field_kb(buf, "Swap");
    return 0;
}

typedef struct proc_link {
    pid_t pid, ppid;
} proc_link;

int crew_proc_children(pid_t pid, int recursive, pid_t *out, size_t cap, size_t *n)
{
    if (pid < 0 || !n || (cap > 0 && !out))
        return CREW_EINVAL;
    if (pid == 0)
        pid = getpid();
    DIR *d = opendir("/proc");
    if (!d)
        return -errno;
    size_t len = 0, alloc = 256;
    proc_link *all = crew__malloc(alloc * sizeof *all);
    if (!all) {
        closedir(d);
        return CREW_ENOMEM;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (read_proc(path, buf, sizeof buf, NULL) != 0)
            continue; /* gone meanwhile */
        char *rp = strrchr(buf, ')'); /* the name may hold spaces and ')' */
        char state;
        int ppid;
        if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
            continue;
        if (len == alloc) {
            proc_link *bigger = crew__realloc(all, 2 * alloc * sizeof *all);
            if (!bigger) {
                crew__free(all);
                closedir(d);
                return CREW_ENOMEM;
            }
            all = bigger;
            alloc *= 2;
        }
        all[len].pid = (pid_t)atoi(e->d_name);
        all[len].ppid = (pid_t)ppid;
        len++;
    }
    closedir(d);

    /* Breadth-first from pid: `found` doubles as the queue. Each process is
     * listed once, because a pid has one parent. */
    pid_t *found = crew__malloc((len + 1) * sizeof *found);
    if (!found) {
        crew__free(all);
        return CREW_ENOMEM;
    }
    size_t nf = 0, head = 0;
    pid_t parent = pid;
    for (;;) {
        for (size_t i = 0; i < len; i++)
            if (all[i].ppid == parent && all[i].pid != pid)
                found[nf++] = all[i].pid;
        if (!recursive || head == nf)
            break;
        parent = found[head++];
    }
    for (size_t i = 0; i < nf && i < cap; i++)
        out[i] = found[i];
    *n = nf;
    crew__free(found);
    crew__free(all);
    return 0;
}

static void mem_add(crew_mem_usage *sum, const crew_mem_usage *u)
{
    sum->rss += u->rss;
    sum->pss += u->pss;
    sum->private_bytes += u->private_bytes;
    sum->shared_bytes += u->shared_bytes;
    sum->swap += u->swap;
}

int crew_mem_usage_tree(pid_t pid, crew_mem_usage *out)
{
    if (!out || pid < 0)
        return CREW_EINVAL;
    crew_mem_usage sum, u;
    int rc = crew_mem_usage_get(pid, &sum);
    if (rc)
        return rc;
    /* Ask for the count first, then read with room to spare: processes may
     * start meanwhile; the few that do beyond the spare room are missed,
     * like any that start after the scan. */
    size_t n = 0, cap;
    rc = crew_proc_children(pid, 1, NULL, 0, &n);
    if (rc)
        return rc;
    cap = n + 64;
    pid_t *kids = crew__malloc(cap * sizeof *kids);
    if (!kids)
        return CREW_ENOMEM;
    rc = crew_proc_children(pid, 1, kids, cap, &n);
    if (rc == 0) {
        for (size_t i = 0; i < n && i < cap; i++)
            if (crew_mem_usage_get(kids[i], &u) == 0) /* else it ended meanwhile */
                mem_add(&sum, &u);
        *out = sum;
    }
    crew__free(kids);
    return rc;
}
