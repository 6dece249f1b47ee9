/*
 * fuzz_request.c -- the start-request parser that spawn children and the
 * forkserver run on what arrives on their channel (crew__msg_recv).
 *
 * The input is one message, sent over a SOCK_SEQPACKET socketpair with 0-3
 * fds attached (the first input byte says how many; they are /dev/null).
 * Raw mode (high bit of that byte clear): the message is the input as is.
 * Patch mode (set): a real request is built with the parent's own builder
 * (crew__msg_build, a function of this binary, the input's tail as the
 * argument), then the input's leading (offset, byte) pairs are written
 * over it -- near-valid messages, past the magic and the size checks. The promise: whatever arrives, crew__msg_recv returns 0 or an
 * error code, never reads or writes outside the message it received, and on
 * 0 the request's parts -- fd targets, module path, name, handle blob, inline argument --
 * lie inside the message, the strings are NUL-terminated, the counts are
 * within their limits. Nothing is loaded or run: resolving the module (a
 * dlopen) is what the channel check before the parser guards (see
 * docs/security.md), not a parser's job.
 */
#include "proc/process_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FR_CHECK(cond)                                                         \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s\n", #cond);                 \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int some_task(void *arg, size_t len)
{
    (void)arg;
    return (int)len;
}

/* Patch mode: builds a request into buf (at most cap bytes); returns its
 * size, or 0. */
static size_t build_patched(const uint8_t *data, size_t size, uint8_t *buf, size_t cap)
{
    if (size < 1)
        return 0;
    size_t npatch = data[0] % 16;
    data++;
    size--;
    size_t plen = npatch * 3 < size ? npatch * 3 : size - size % 3;
    const uint8_t *patches = data;
    data += plen;
    size -= plen;
    crew__msg m;
    if (crew__msg_build(&m, some_task, size ? data : NULL, size, NULL, false, NULL, 0) != 0)
        return 0;
    size_t n = crew__req_size(m.req, !(m.req->flags & CREW__REQ_ARG_MEMFD));
    if (n > cap || m.arg_fd >= 0) {
        crew__msg_free(&m);
        return 0;
    }
    memcpy(buf, m.req, n);
    crew__msg_free(&m);
    for (size_t i = 0; i + 2 < plen; i += 3) {
        size_t off = ((size_t)patches[i] | (size_t)patches[i + 1] << 8) % n;
        buf[off] = patches[i + 2];
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int nfds = data[0] % 4;
    bool patch = data[0] & 0x80;
    data++;
    size--;
    static uint8_t built[1 << 16];
    if (patch) {
        size = build_patched(data, size, built, sizeof built);
        if (size == 0)
            return 0;
        data = built;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    /* a message the kernel takes in one piece (SEQPACKET keeps it whole) */
    int fds[3] = {-1, -1, -1};
    for (int i = 0; i < nfds; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    union {
        char buf[CMSG_SPACE(sizeof(int) * 3)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t sent = sendmsg(sv[0], &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    close(sv[0]); /* an empty or refused message reads as end of channel */
    if (sent < 0) {
        close(sv[1]);
        return 0;
    }
    crew__msg m;
    int rc = crew__msg_recv(sv[1], &m);
    close(sv[1]);
    if (rc != 0) {
        FR_CHECK(rc < 0);
        return 0;
    }
    /* Accepted: every part inside what arrived. */
    crew__req *r = m.req;
    const char *base = (const char *)r, *end = base + m.size;
    FR_CHECK(m.size == (size_t)sent && m.size >= sizeof *r);
    FR_CHECK(r->n_fds <= CREW__MAX_PASS_FDS + 4);
    FR_CHECK(r->module_len >= 1 && r->module_len <= PATH_MAX);
    FR_CHECK(r->name_len >= 1 && r->name_len <= 16);
    FR_CHECK(r->build_id_len <= CREW__BUILD_ID_MAX);
    const char *targets = (const char *)crew__req_targets(r);
    FR_CHECK(targets >= base && targets + (size_t)r->n_fds * sizeof(int32_t) <= end);
    const char *mod = crew__req_module(r), *name = crew__req_name(r);
    FR_CHECK(mod >= base && mod + r->module_len <= end && mod[r->module_len - 1] == '\0');
    FR_CHECK(name >= base && name + r->name_len <= end && name[r->name_len - 1] == '\0');
    FR_CHECK(r->handles_len <= CREW__HANDLES_MAX_BYTES);
    char *hb = crew__req_handles(r);
    FR_CHECK(hb >= base && hb + r->handles_len <= end);
    /* The child's lookups walk the handle blob: never outside it, whatever
     * it says (an attach of a descriptor it names fails harmlessly: no fd
     * of this process is a sealed crew memfd). */
    crew__child_handles_set(hb, r->handles_len);
    crew_queue *q = NULL;
    int hrc = crew_child_handle_queue("q", &q);
    FR_CHECK(hrc < 0 && q == NULL);
    crew__child_handles_set(NULL, 0);
    if (!(r->flags & CREW__REQ_ARG_MEMFD)) {
        const char *arg = crew__req_arg(r);
        FR_CHECK(arg >= base && arg <= end && (size_t)(end - arg) == r->arg_len);
        volatile char sink = 0;
        for (uint64_t i = 0; i < r->arg_len; i++)
            sink ^= arg[i]; /* ASan: every argument byte is ours to read */
        (void)sink;
    }
    FR_CHECK(m.n_fds >= 0 && m.n_fds <= nfds);
    crew__msg_free(&m);
    return 0;
}
