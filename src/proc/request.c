/*
 * request.c -- the start request: what a parent sends to a spawn child or
 * to the forkserver to start a task (built, sent, received, checked,
 * resolved). The wire format is in process_internal.h.
 *
 * DESIGN
 * Both ends are the same program on the same machine, so the request is a
 * plain struct in host byte order followed by its variable parts, sent as
 * one SOCK_SEQPACKET message: one send, one receive, no framing. An
 * argument larger than CREW__INLINE_ARG travels in a memfd instead (the
 * message would be too large for the socket buffer), fds ride along as
 * SCM_RIGHTS when the receiver is the forkserver.
 *
 * The receiver trusts nothing in the message: crew__msg_recv checks every
 * count and length against the bytes that arrived before anything is used
 * (fuzz/fuzz_request.c). Whether the sender may send a request at all --
 * the channel comes from our own parent -- is checked before the first
 * receive, by the child's hand-shake (child.c) and the forkserver's start;
 * see docs/security.md. Nothing here holds state; any thread may call it.
 */
#include "proc/process_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int crew__msg_build(crew__msg *m, crew_process_fn fn, const void *arg, size_t len,
                    const crew_process_options *opts, bool with_fds, const void *handles,
                    size_t handles_len)
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
        .handles_len = (uint32_t)handles_len,
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
    if (handles_len)
        memcpy(crew__req_handles(r), handles, handles_len);
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

#define MSG_MAX                                                                                \
    (sizeof(crew__req) + PATH_MAX + 16 + sizeof(int32_t) * (CREW__MAX_PASS_FDS + 4) +          \
     CREW__HANDLES_MAX_BYTES + 16 + CREW__INLINE_ARG)

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
        r->build_id_len > CREW__BUILD_ID_MAX || r->handles_len > CREW__HANDLES_MAX_BYTES ||
        r->handles_len % 4 != 0 || crew__req_size(r, false) > (size_t)n ||
        crew__req_size(r, true) != (size_t)n || crew__req_module(r)[r->module_len - 1] != '\0' ||
        crew__req_name(r)[r->name_len - 1] != '\0') {
        crew__msg_free(m);
        return CREW_EPROTO;
    }
    return 0;
}

int crew__req_resolve(crew__req *r, uintptr_t *fn)
{
    crew__fnref ref;
    ref.offset = r->fn_offset;
    ref.build_id_len = r->build_id_len;
    memcpy(ref.build_id, r->build_id, sizeof ref.build_id);
    memcpy(ref.module, crew__req_module(r), r->module_len);
    return crew__fnref_resolve(&ref, fn);
}
