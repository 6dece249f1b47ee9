/*
 * fuzz_pipe -- crew_pipe_attach, send and receive on arbitrary memfd
 * contents.
 *
 * Input: byte 0 picks the mode (as in fuzz_queue.c).
 *  raw (bit 0 set): byte 1 names the end (file offset 0 or 1), the rest is
 *    the region of a pipe with 64-byte rings: the pipe header (magic, size,
 *    ring offsets, closed and broken flags), each ring's header, the start
 *    of each data area. The harness attaches and, if that works, makes a
 *    fixed series of calls.
 *  program (bit 0 clear): a real pipe (capacity from byte 1), then a
 *    program of steps: patch the region through a mapping of its own, send,
 *    recv, recv_with, poll, fd, attach another handle to either end, close,
 *    switch handles; the pipe is one-way or duplex by a bit of byte 1.
 * Every call uses timeout 0. See fuzz_common.h for what is checked.
 */
#include "fuzz_common.h"

#include "../src/ipc/ring.h"

enum { MAX_HANDLES = 5, MAX_STEPS = 64, PIPE_HDR = 4096 };

typedef struct handle {
    crew_pipe *p;
    bool broken;
} handle;

/* The patchable pieces of a pipe region: where they start, how long. */
typedef struct piece {
    size_t at, len;
} piece;

typedef struct layout {
    size_t size, ring_bytes, max; /* max: the largest message any ring fits */
    piece pieces[5];
} layout;

static layout layout_for(size_t cap)
{
    layout l;
    l.ring_bytes = crew__ring_bytes(cap);
    l.size = PIPE_HDR + 2 * l.ring_bytes;
    l.max = l.ring_bytes - CREW__RING_DATA_OFF - CREW__RING_HDR;
    size_t r0 = PIPE_HDR, r1 = PIPE_HDR + l.ring_bytes, d = l.ring_bytes - CREW__RING_DATA_OFF;
    l.pieces[0] = (piece){0, 128};                           /* pipe header */
    l.pieces[1] = (piece){r0, 576};                          /* ring 0 header */
    l.pieces[2] = (piece){r1, 576};                          /* ring 1 header */
    l.pieces[3] = (piece){r0 + CREW__RING_DATA_OFF, d < 1024 ? d : 1024};
    l.pieces[4] = (piece){r1 + CREW__RING_DATA_OFF, d < 1024 ? d : 1024};
    return l;
}

static size_t patchable(const layout *l)
{
    size_t n = 0;
    for (int i = 0; i < 5; i++)
        n += l->pieces[i].len;
    return n;
}

static size_t region_at(const layout *l, size_t off)
{
    for (int i = 0; i < 5; i++) {
        if (off < l->pieces[i].len)
            return l->pieces[i].at + off;
        off -= l->pieces[i].len;
    }
    return 0;
}

/* CREW_EBADF: the wrong direction of a one-way pipe. */
static const int send_codes[] = {CREW_EPIPE, CREW_ECLOSED, CREW_E2BIG, CREW_EAGAIN,
                                 CREW_EDEADLK, CREW_EBADF, CREW_EPROTO, 0};
static const int recv_codes[] = {CREW_EOF, CREW_ECLOSED, CREW_E2BIG, CREW_EAGAIN,
                                 CREW_EDEADLK, CREW_EBADF, CREW_EPROTO, 0};
static const int recv_with_codes[] = {CREW_EOF, CREW_ECLOSED, CREW_EAGAIN, CREW_EDEADLK,
                                      CREW_EBADF, CREW_EPROTO, 0};
static const int poll_codes[] = {1, CREW_EOF, CREW_ECLOSED, CREW_EDEADLK, CREW_EBADF,
                                 CREW_EPROTO, 0};
static const int proto_codes[] = {CREW_EPROTO, 0};
static const int attach_codes[] = {CREW_EINVAL, CREW_EPROTO, CREW_ECLOSED, 0};

static void op_send(handle *h, size_t len)
{
    uint8_t msg[FZ_BUF];
    memset(msg, 0x22, sizeof msg);
    fz_rc("send", crew_pipe_send(h->p, msg, len, 0), send_codes, &h->broken);
}

static void op_recv(handle *h, size_t bufcap, size_t max)
{
    fz_buf b;
    uint8_t *buf = fz_buf_arm(&b);
    size_t len = 0;
    int rc = crew_pipe_recv(h->p, buf, bufcap, &len, 0);
    fz_rc("recv", rc, recv_codes, &h->broken);
    fz_buf_check(&b, bufcap);
    if (rc == 0)
        FZ_CHECK(len <= bufcap && len <= max, "got %zu (buffer %zu, max %zu)", len, bufcap, max);
    if (rc == CREW_E2BIG)
        FZ_CHECK(len > bufcap && len <= max, "E2BIG for %zu (buffer %zu)", len, bufcap);
}

static void op_recv_with(handle *h, size_t max)
{
    fz_read_arg a = {.max = max};
    fz_rc("recv_with", crew_pipe_recv_with(h->p, fz_read, &a, 0), recv_with_codes, &h->broken);
}

/* poll looks without taking: a second poll finds the same message. */
static void op_poll(handle *h, size_t max)
{
    size_t len = SIZE_MAX, len2 = SIZE_MAX;
    int rc = crew_pipe_poll(h->p, &len, 0);
    fz_rc("poll", rc, poll_codes, &h->broken);
    if (rc != 1)
        return;
    FZ_CHECK(len <= max, "poll: %zu bytes (max %zu)", len, max);
    /* Nothing was patched in between (one thread): the same message. */
    int rc2 = crew_pipe_poll(h->p, &len2, 0);
    fz_rc("poll again", rc2, poll_codes, &h->broken);
    FZ_CHECK(rc2 == 1 && len2 == len, "poll again: %s, %zu bytes (then %zu)", crew_err_name(rc2),
             len2, len);
}

static void op_fd(handle *h)
{
    int fd = -1;
    int rc = crew_pipe_dup_fd(h->p, &fd);
    fz_rc("fd", rc, proto_codes, &h->broken);
    if (rc == 0)
        close(fd);
}

/* As in fuzz_queue: close waits up to ~1 s per ring for a producers' lock
 * word naming a live thread; skipped unless both words are free. */
static void op_close(handle *h, const uint8_t *raw, const layout *l)
{
    for (int i = 0; i < 2; i++) {
        const crew__ring *r = (const crew__ring *)(raw + PIPE_HDR + (size_t)i * l->ring_bytes);
        if (atomic_load_explicit(&r->prod_lock, memory_order_relaxed) != 0)
            return;
    }
    fz_rc("close", crew_pipe_close(h->p), proto_codes, &h->broken);
}

static void op_attach(handle *hs, int *nh, int fd, int side)
{
    if (*nh >= MAX_HANDLES)
        return;
    FZ_CHECK(lseek(fd, side, SEEK_SET) == side, "lseek");
    crew_pipe *p = NULL;
    bool unused = false;
    int rc = crew_pipe_attach(&p, fd);
    fz_rc("attach", rc, attach_codes, &unused);
    if (rc == 0)
        hs[(*nh)++] = (handle){p, false};
}

static void run(fz_in *in, handle *hs, int *nh, int fd, uint8_t *raw, const layout *l)
{
    int cur = 0;
    size_t n_patch = patchable(l);
    for (int step = 0; step < MAX_STEPS && in->n > 0; step++) {
        handle *h = &hs[cur];
        switch (fz_u8(in) % 11) {
        case 0:
        case 1: {
            size_t off = fz_u16(in) % n_patch;
            size_t n = 1 + fz_u8(in) % 8;
            for (size_t i = 0; i < n && off + i < n_patch; i++)
                raw[region_at(l, off + i)] = fz_u8(in);
            break;
        }
        case 2:
        case 3:
            op_send(h, fz_u8(in));
            break;
        case 4:
            op_recv(h, fz_u16(in) % (FZ_BUF + 1), l->max);
            break;
        case 5:
            op_recv_with(h, l->max);
            break;
        case 6:
            op_fd(h);
            break;
        case 7:
            op_attach(hs, nh, fd, fz_u8(in) & 1);
            break;
        case 8:
            op_close(h, raw, l);
            break;
        case 9:
            op_poll(h, l->max);
            break;
        default:
            cur = fz_u8(in) % *nh;
            break;
        }
    }
}

static void raw_mode(fz_in *in)
{
    layout l = layout_for(64);
    int side = fz_u8(in) & 1;
    uint8_t *region = calloc(1, l.size);
    FZ_CHECK(region != NULL, "calloc");
    size_t n_patch = patchable(&l);
    for (size_t i = 0; i < n_patch && in->n > 0; i++)
        region[region_at(&l, i)] = fz_u8(in);
    int fd = fz_sealed_memfd(region, l.size);
    free(region);
    handle hs[MAX_HANDLES];
    int nh = 0;
    op_attach(hs, &nh, fd, side);
    if (nh == 1) {
        uint8_t *raw = fz_map(fd, l.size);
        handle *h = &hs[0];
        op_poll(h, l.max);
        op_recv(h, FZ_BUF, l.max);
        op_recv_with(h, l.max);
        op_send(h, 5);
        op_poll(h, l.max);
        op_recv(h, 2, l.max);
        op_send(h, 40);
        op_fd(h);
        op_close(h, raw, &l);
        op_recv(h, FZ_BUF, l.max);
        munmap(raw, l.size);
        FZ_CHECK(crew_pipe_destroy(h->p) == 0, "destroy");
    }
    close(fd);
}

static void program_mode(fz_in *in)
{
    static const size_t caps[] = {64, 128, 256, 4096};
    uint8_t c = fz_u8(in);
    crew_pipe_options o = {.capacity = caps[c % 4], .one_way = (c >> 2) & 1};
    layout l = layout_for(o.capacity);
    handle hs[MAX_HANDLES] = {{0}};
    FZ_CHECK(crew_pipe_create(&hs[0].p, &hs[1].p, &o) == 0, "create");
    int nh = 2;
    int fd;
    FZ_CHECK(crew_pipe_dup_fd(hs[0].p, &fd) == 0, "fd");
    uint8_t *raw = fz_map(fd, l.size);
    run(in, hs, &nh, fd, raw, &l);
    for (int i = 0; i < nh; i++)
        FZ_CHECK(crew_pipe_destroy(hs[i].p) == 0, "destroy");
    munmap(raw, l.size);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    if (fz_u8(&in) & 1)
        raw_mode(&in);
    else
        program_mode(&in);
    return 0;
}
