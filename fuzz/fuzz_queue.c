/*
 * fuzz_queue -- crew_queue_attach, put and get on arbitrary memfd contents.
 *
 * Input: byte 0 picks the mode.
 *  raw (bit 0 set): the rest is the region -- its first 576 bytes the ring
 *    header (magic, geometry, counters, locks), the next ones the start of
 *    the data area -- in a sealed memfd of one header page and 4 KiB of
 *    data. The harness attaches and, if that works, makes a fixed series of
 *    calls.
 *  program (bit 0 clear): a real queue (capacity from byte 1), then a
 *    program of steps, each one byte of opcode and its operands: patch the
 *    region through a mapping of its own (as a hostile peer would), put,
 *    get, put_with, get_with, info, fd, attach another handle, close,
 *    close_now, the joinable calls and counts, switch handles; the queue is
 *    joinable or not by a bit of its capacity byte. So corruptions land on live states: queued records,
 *    wrapped rings, handles of different geometry.
 * Every call uses timeout 0. See fuzz_common.h for what is checked.
 */
#include "fuzz_common.h"

#include "../src/ipc/ring.h"

#include <stddef.h>

/* HDR_BYTES: the ring header's lines up to the joinable one (ring.h). */
enum { MAX_HANDLES = 4, HDR_BYTES = 576, MAX_STEPS = 64 };

typedef struct handle {
    crew_queue *q;
    bool broken;
    size_t cap, max; /* its geometry, from crew_queue_status_get after it was made */
} handle;

static const int put_codes[] = {CREW_ECLOSED, CREW_EAGAIN, CREW_EDEADLK, CREW_EPROTO, 0};
static const int get_codes[] = {CREW_EOF, CREW_E2BIG, CREW_EAGAIN, CREW_EDEADLK, CREW_EPROTO, 0};
static const int proto_codes[] = {CREW_EPROTO, 0};
static const int attach_codes[] = {CREW_EINVAL, CREW_EPROTO, 0};

/* Where byte `off` of the patchable space lies in the region: the header's
 * first 512 bytes, then the data area. */
static size_t region_at(size_t off) { return off < HDR_BYTES ? off : CREW__RING_DATA_OFF + off - HDR_BYTES; }

static void adopt(handle *h, crew_queue *q)
{
    bool unused = false;
    crew_queue_status st;
    int rc = crew_queue_status_get(q, &st);
    fz_rc("info after attach", rc, proto_codes, &unused);
    *h = (handle){.q = q, .broken = rc != 0, .cap = st.capacity, .max = st.max_message};
    if (rc == 0)
        FZ_CHECK(st.used <= st.capacity && st.max_message + 8 <= st.capacity,
                 "info: capacity %zu max %zu used %zu", st.capacity, st.max_message, st.used);
}

static void op_put(handle *h, size_t len, bool with)
{
    uint8_t msg[FZ_BUF];
    memset(msg, 0x11, sizeof msg);
    int rc = with ? crew_queue_put_with(h->q, len, fz_fill, NULL, 0)
                  : crew_queue_put(h->q, msg, len, 0);
    if (rc == CREW_E2BIG && !h->broken)
        FZ_CHECK(len > h->max, "E2BIG for %zu bytes (max %zu)", len, h->max);
    else
        fz_rc(with ? "put_with" : "put", rc, put_codes, &h->broken);
}

static void op_get(handle *h, size_t bufcap)
{
    fz_buf b;
    uint8_t *buf = fz_buf_arm(&b);
    size_t len = 0;
    int rc = crew_queue_get(h->q, buf, bufcap, &len, 0);
    fz_rc("get", rc, get_codes, &h->broken);
    fz_buf_check(&b, bufcap);
    if (rc == 0)
        FZ_CHECK(len <= bufcap && len <= h->max, "got %zu (buffer %zu, max %zu)", len, bufcap,
                 h->max);
    if (rc == CREW_E2BIG)
        FZ_CHECK(len > bufcap && len <= h->max, "E2BIG for %zu (buffer %zu, max %zu)", len,
                 bufcap, h->max);
}

static void op_get_with(handle *h)
{
    fz_read_arg a = {.max = h->max};
    static const int codes[] = {CREW_EOF, CREW_EAGAIN, CREW_EDEADLK, CREW_EPROTO, 0};
    fz_rc("get_with", crew_queue_get_with(h->q, fz_read, &a, 0), codes, &h->broken);
}

static void op_info(handle *h)
{
    crew_queue_status st;
    int rc = crew_queue_status_get(h->q, &st);
    fz_rc("info", rc, proto_codes, &h->broken);
    if (rc == 0)
        FZ_CHECK(st.capacity == h->cap && st.max_message == h->max && st.used <= st.capacity,
                 "info: capacity %zu/%zu max %zu/%zu used %zu", st.capacity, h->cap,
                 st.max_message, h->max, st.used);
}

static void op_fd(handle *h)
{
    int fd = -1;
    int rc = crew_queue_dup_fd(h->q, &fd);
    fz_rc("fd", rc, proto_codes, &h->broken);
    if (rc == 0)
        close(fd);
}

/* close waits up to ~1 s for a producers' lock word naming a live thread
 * (test_queue_hostile covers that); here it would only slow the fuzzer, so
 * close is skipped unless the word is free. */
static void op_close(handle *h, const crew__ring *raw)
{
    if (atomic_load_explicit(&raw->prod_lock, memory_order_relaxed) != 0)
        return;
    fz_rc("close", crew_queue_close(h->q), proto_codes, &h->broken);
}

/* close_now takes both locks (each for at most ~1 s): skipped unless both
 * words are free, as close is. */
static void op_close_now(handle *h, const crew__ring *raw)
{
    if (atomic_load_explicit(&raw->prod_lock, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&raw->cons_lock, memory_order_relaxed) != 0)
        return;
    size_t dropped = 0;
    fz_rc("close_now", crew_queue_close_now(h->q, &dropped), proto_codes, &h->broken);
    FZ_CHECK(dropped <= h->cap / 8, "dropped %zu from a ring of %zu bytes", dropped, h->cap);
}

/* The joinable calls and the counts: documented codes only; a message
 * count never above what the bytes can hold; join never blocks (timeout 0). */
static void op_tasks(handle *h, uint8_t which)
{
    static const int done_codes[] = {CREW_ESTATE, CREW_ENOTSUP, CREW_EPROTO, 0};
    static const int join_codes[] = {CREW_ETIMEDOUT, CREW_ENOTSUP, CREW_EPROTO, 0};
    static const int bool_codes[] = {1, CREW_EPROTO, 0};
    switch (which % 5) {
    case 0:
        fz_rc("task_done", crew_queue_task_done(h->q), done_codes, &h->broken);
        break;
    case 1:
        fz_rc("join", crew_queue_join(h->q, 0), join_codes, &h->broken);
        break;
    case 2: {
        size_t m = 0, u = 0;
        int rc = crew_queue_counts_get(h->q, &m, &u);
        fz_rc("counts", rc, proto_codes, &h->broken);
        if (rc == 0)
            FZ_CHECK(m <= h->cap / 8, "%zu messages in a ring of %zu bytes", m, h->cap);
        break;
    }
    case 3:
        fz_rc("empty", crew_queue_empty(h->q), bool_codes, &h->broken);
        break;
    default:
        fz_rc("full", crew_queue_full(h->q), bool_codes, &h->broken);
        break;
    }
}

static void run(fz_in *in, handle *hs, int *nh, int fd, uint8_t *raw, size_t patchable)
{
    int cur = 0;
    for (int step = 0; step < MAX_STEPS && in->n > 0; step++) {
        handle *h = &hs[cur];
        uint8_t op = fz_u8(in);
        switch (op % 13) {
        case 0:
        case 1: { /* patch 1..8 bytes */
            size_t off = fz_u16(in) % patchable;
            size_t n = 1 + fz_u8(in) % 8;
            for (size_t i = 0; i < n && off + i < patchable; i++)
                raw[region_at(off + i)] = fz_u8(in);
            break;
        }
        case 2:
            op_put(h, fz_u8(in), false);
            break;
        case 3:
            op_put(h, fz_u8(in), true);
            break;
        case 4:
            op_get(h, fz_u16(in) % (FZ_BUF + 1));
            break;
        case 5:
            op_get_with(h);
            break;
        case 6:
            op_info(h);
            break;
        case 7:
            op_fd(h);
            break;
        case 8:
            if (*nh < MAX_HANDLES) {
                crew_queue *q = NULL;
                bool unused = false;
                int rc = crew_queue_attach(&q, fd);
                fz_rc("attach", rc, attach_codes, &unused);
                if (rc == 0)
                    adopt(&hs[(*nh)++], q);
            }
            break;
        case 9:
            op_close(h, (const crew__ring *)raw);
            break;
        case 10:
            op_close_now(h, (const crew__ring *)raw);
            break;
        case 11:
            op_tasks(h, fz_u8(in));
            break;
        default:
            cur = fz_u8(in) % *nh;
            break;
        }
    }
}

static void raw_mode(fz_in *in)
{
    enum { DATA = 4096 };
    size_t size = CREW__RING_DATA_OFF + DATA, patchable = HDR_BYTES + DATA;
    uint8_t *region = calloc(1, size);
    FZ_CHECK(region != NULL, "calloc");
    for (size_t i = 0; i < patchable && in->n > 0; i++)
        region[region_at(i)] = fz_u8(in);
    int fd = fz_sealed_memfd(region, size);
    free(region);
    crew_queue *q = NULL;
    bool unused = false;
    int rc = crew_queue_attach(&q, fd);
    fz_rc("attach", rc, attach_codes, &unused);
    if (rc == 0) {
        handle h;
        adopt(&h, q);
        crew__ring *raw = fz_map(fd, size);
        op_get(&h, FZ_BUF);
        op_get_with(&h);
        op_put(&h, 5, false);
        op_get(&h, 3);
        op_put(&h, 200, true);
        op_get(&h, FZ_BUF);
        op_info(&h);
        for (uint8_t k = 0; k < 5; k++)
            op_tasks(&h, k);
        op_close_now(&h, raw);
        op_close(&h, raw);
        op_get(&h, FZ_BUF);
        munmap(raw, size);
        FZ_CHECK(crew_queue_destroy(q) == 0, "destroy");
    }
    close(fd);
}

static void program_mode(fz_in *in)
{
    static const size_t caps[] = {64, 128, 256, 4096};
    uint8_t c = fz_u8(in);
    crew_queue_options o = {.capacity = caps[c % 4], .joinable = (c >> 2) & 1};
    crew_queue *q;
    FZ_CHECK(crew_queue_create(&q, &o) == 0, "create");
    int fd;
    FZ_CHECK(crew_queue_dup_fd(q, &fd) == 0, "fd");
    size_t size = crew__ring_bytes(o.capacity);
    uint8_t *raw = fz_map(fd, size);
    handle hs[MAX_HANDLES];
    int nh = 0;
    adopt(&hs[nh++], q);
    run(in, hs, &nh, fd, raw, HDR_BYTES + o.capacity);
    for (int i = 0; i < nh; i++)
        FZ_CHECK(crew_queue_destroy(hs[i].q) == 0, "destroy");
    munmap(raw, size);
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
