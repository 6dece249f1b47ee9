/*
 * fdchan.c -- crew_fdchan: messages that carry file descriptors between two
 * processes (Python's multiprocessing.reduction.send_handle / recv_handle).
 *
 * DESIGN
 * A crew_pipe is two shared-memory rings: the kernel is not on its data
 * path, so it cannot move a descriptor (docs/queue.md, "Passing file
 * descriptors"). Only a Unix socket can (SCM_RIGHTS). So this is a
 * SOCK_SEQPACKET socketpair: one datagram per message, its descriptors in
 * the same datagram's control data, so the kernel keeps a message and its
 * descriptors together -- no pairing of two channels to get wrong, whatever
 * the number of senders and receivers or whoever dies. EOF comes from the
 * kernel too: a receive on an end whose peer socket is closed everywhere
 * returns 0 bytes once the queue is drained.
 *
 * Each handle owns one socket fd, set O_NONBLOCK; blocking calls poll(2) it
 * up to their deadline. (O_NONBLOCK lives in the open file description,
 * which fork children and attached processes share: every crew call on
 * it polls, so that is harmless.)
 *
 * Framing: every datagram is one TAG byte and the message, so an empty
 * message is not mistaken for EOF (both read 0 bytes otherwise).
 *
 * Receive. A message too large for the caller's buffer, or with more
 * descriptors than it has room for, must not be cut (SEQPACKET drops the
 * rest of a datagram; the kernel closes descriptors that do not fit). So a
 * receive first peeks (MSG_PEEK | MSG_TRUNC, a zero-byte buffer, and room
 * for CREW_FDCHAN_MAX_FDS descriptors): that gives the datagram's length
 * and its descriptors -- peeking installs copies, which it closes at once.
 * If the message fits, the real receive takes it (MSG_CMSG_CLOEXEC: the
 * descriptors are the caller's, close-on-exec); if not, CREW_E2BIG with the
 * sizes needed and the message stays queued. A concurrent receiver on the
 * same end can take the peeked message first: the real receive then finds
 * another, and if that one does not fit it is lost and its descriptors are
 * closed (CREW_EIO) -- give every receiver of a shared end buffers of
 * the maximum sizes, or keep one receiver per end.
 */
#include "core/internal.h"

#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct crew_fdchan {
    int fd;
};

/* The first byte of every datagram: a message of 0 bytes is then 1 byte on
 * the wire, and a receive of 0 bytes means EOF and nothing else. */
#define TAG 'F'

typedef union ctl_buf {
    char buf[CMSG_SPACE(sizeof(int) * CREW_FDCHAN_MAX_FDS)];
    struct cmsghdr align;
} ctl_buf;

static int make(crew_fdchan **out, int fd)
{
    crew_fdchan *c = crew__calloc(1, sizeof *c);
    if (!c)
        return CREW_ENOMEM;
    c->fd = fd;
    *out = c;
    return 0;
}

int crew_fdchan_create(crew_fdchan **a, crew_fdchan **b)
{
    if (!a || !b || a == b)
        return CREW_EINVAL;
    *a = *b = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
        return -errno;
    int rc = make(a, sv[0]);
    if (rc == 0 && (rc = make(b, sv[1])) != 0) {
        crew__free(*a);
        *a = NULL;
    }
    if (rc) {
        crew__close(sv[0]);
        crew__close(sv[1]);
    }
    return rc;
}

int crew_fdchan_attach(crew_fdchan **out, int fd)
{
    if (!out)
        return CREW_EINVAL;
    *out = NULL;
    int type = 0, domain = 0;
    socklen_t tl = sizeof type, dl = sizeof domain;
    if (fcntl(fd, F_GETFD) < 0)
        return CREW_EBADF;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) != 0 || type != SOCK_SEQPACKET ||
        domain != AF_UNIX)
        return CREW_EINVAL;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return -errno;
    int fl = fcntl(own, F_GETFL);
    if (fl < 0 || fcntl(own, F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = -errno;
        crew__close(own);
        return e;
    }
    int rc = make(out, own);
    if (rc)
        crew__close(own);
    return rc;
}

int crew_fdchan_dup_fd(crew_fdchan *c, int *fd_out)
{
    if (!c || !fd_out)
        return CREW_EINVAL;
    int fd = fcntl(c->fd, F_DUPFD, 0); /* no FD_CLOEXEC: meant to cross exec */
    if (fd < 0)
        return -errno;
    *fd_out = fd;
    return 0;
}

int crew_fdchan_close(crew_fdchan *c)
{
    if (!c)
        return CREW_EINVAL;
    /* For every holder of this end: the peer drains, then sees EOF. */
    if (shutdown(c->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

int crew_fdchan_destroy(crew_fdchan *c)
{
    if (!c)
        return CREW_EINVAL;
    crew__close(c->fd);
    crew__free(c);
    return 0;
}

/* Waits for `events` on c until the deadline: 0, or CREW_ETIMEDOUT
 * (CREW_EAGAIN for a poll). */
static int wait_for(crew_fdchan *c, short events, const crew__deadline *d, bool poll_only)
{
    if (poll_only)
        return CREW_EAGAIN;
    for (;;) {
        int ms = crew__deadline_poll_ms(d);
        if (ms == 0)
            return CREW_ETIMEDOUT;
        struct pollfd pf = {.fd = c->fd, .events = events};
        int r = poll(&pf, 1, ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

int crew_fdchan_send(crew_fdchan *c, const void *msg, size_t len, const int *fds, size_t n_fds,
                     double timeout)
{
    if (!c || (!msg && len) || (!fds && n_fds) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    if (len > CREW_FDCHAN_MAX_MESSAGE || n_fds > CREW_FDCHAN_MAX_FDS)
        return CREW_E2BIG;
    for (size_t i = 0; i < n_fds; i++)
        if (fds[i] < 0 || fcntl(fds[i], F_GETFD) < 0)
            return CREW_EBADF;
    char tag = TAG;
    struct iovec iov[2] = {{.iov_base = &tag, .iov_len = 1}, {.iov_base = (void *)msg, .iov_len = len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    ctl_buf u;
    if (n_fds) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * n_fds);
    }
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    for (;;) {
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return 0; /* SEQPACKET: all or nothing */
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EPIPE || e == ECONNRESET || e == ENOTCONN)
            return CREW_EPIPE;
        if (e != EAGAIN)
            return -e;
        int rc = wait_for(c, POLLOUT, &d, timeout == 0);
        if (rc)
            return rc;
    }
}

/* The descriptors of a received message's control data. */
static size_t take_fds(struct msghdr *mh, int *out, size_t cap)
{
    size_t n = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(mh); h; h = CMSG_NXTHDR(mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            if (n < cap)
                out[n] = fd;
            else
                crew__close(fd);
            n++;
        }
    }
    return n;
}

/* Peeks at the next message: 0 with its length and descriptor count, the
 * poll's CREW_EAGAIN, CREW_EOF (peer gone, drained), or -errno. Every
 * datagram starts with TAG, so 0 bytes can only mean the end. */
static int peek(crew_fdchan *c, size_t *len, size_t *nfds)
{
    char tag;
    struct iovec iov = {.iov_base = &tag, .iov_len = 1};
    ctl_buf u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof u.buf};
    ssize_t n;
    do
        n = recvmsg(c->fd, &mh, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? CREW_EAGAIN : errno == ECONNRESET ? CREW_EOF : -errno;
    int none[1];
    *nfds = take_fds(&mh, none, 0); /* the peek's copies: closed */
    if (mh.msg_flags & MSG_CTRUNC)
        *nfds = CREW_FDCHAN_MAX_FDS + 1; /* more than any crew sender attaches */
    if (n == 0)
        return CREW_EOF;
    *len = (size_t)n - 1;
    return 0;
}

int crew_fdchan_recv(crew_fdchan *c, void *buf, size_t bufcap, size_t *len_out, int *fds_out,
                     size_t fds_cap, size_t *n_fds_out, double timeout)
{
    if (!c || (!buf && bufcap) || (!fds_out && fds_cap) || crew__timeout_bad(timeout))
        return CREW_EINVAL;
    crew__deadline d;
    crew__deadline_init(&d, timeout);
    for (;;) {
        size_t len = 0, nfds = 0;
        int rc = peek(c, &len, &nfds);
        if (rc == CREW_EAGAIN) {
            rc = wait_for(c, POLLIN, &d, timeout == 0);
            if (rc)
                return rc;
            continue;
        }
        if (rc)
            return rc;
        if (len_out)
            *len_out = len;
        if (n_fds_out)
            *n_fds_out = nfds;
        if (len > bufcap || nfds > fds_cap)
            return CREW_E2BIG; /* still queued */
        char tag = 0;
        struct iovec iov[2] = {{.iov_base = &tag, .iov_len = 1}, {.iov_base = buf, .iov_len = bufcap}};
        ctl_buf u;
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = bufcap ? 2 : 1, .msg_control = u.buf,
                            .msg_controllen = sizeof u.buf};
        ssize_t n;
        do
            n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN)
                continue; /* another receiver took it */
            return errno == ECONNRESET ? CREW_EOF : -errno;
        }
        if (n == 0)
            return CREW_EOF; /* the peer went between the peek and here */
        size_t got = take_fds(&mh, fds_out, fds_cap);
        if (tag != TAG) {
            /* Not a crew sender's datagram: dropped, descriptors closed. */
            for (size_t i = 0; i < got && i < fds_cap; i++)
                crew__close(fds_out[i]);
            return CREW_EPROTO;
        }
        if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || got > fds_cap) {
            /* Another receiver took the peeked message and this one did
             * not fit: it is lost (its descriptors closed). */
            for (size_t i = 0; i < got && i < fds_cap; i++)
                crew__close(fds_out[i]);
            return CREW_EIO;
        }
        if (len_out)
            *len_out = (size_t)n - 1;
        if (n_fds_out)
            *n_fds_out = got;
        return 0;
    }
}
