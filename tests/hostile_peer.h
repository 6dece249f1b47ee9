/*
 * hostile_peer.h -- a hostile peer for crew_queue and crew_pipe: a process
 * that holds the memfd and writes random bytes over the shared header, the
 * ring headers and the data at random moments, while two well-behaved
 * processes (this test and a forked child) keep using the object. Shared by
 * test_queue_hostile.c (a short run, quick tier) and test_queue_hostile_soak.c
 * (thousands of rounds, stress tier).
 *
 * The promise under test (docs/queue.md, "Two promises"): the well-behaved
 * processes never crash or hang; every call returns one of the codes its
 * documentation lists, within its timeout plus scheduling slack; once a
 * handle has returned CREW_EPROTO, every later call on it does too; no
 * memory outside the region is written (canaries around every buffer).
 *
 * Each round draws its choices from one seed (printed, and settable with
 * CREW_HOSTILE_SEED), so a failure names the seed and round that reproduce
 * its corruptions; the moments at which they land depend on scheduling.
 * The corrupter also checks, every round, that the memfd cannot be resized.
 *
 * Synchronisation is by messages on a socketpair and waitpid; the corrupter
 * spins (never sleeps) a random time between its writes to vary the moment.
 */
#ifndef HOSTILE_PEER_H
#define HOSTILE_PEER_H

#include "crew_test.h"
#include "../src/ipc/ring.h"

#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

/* ------------------------------------------------------------ randomness */

typedef struct hp_rng {
    uint64_t s;
} hp_rng;

static inline uint64_t hp_next(hp_rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t hp_below(hp_rng *r, uint64_t n) { return hp_next(r) % n; }
static inline hp_rng hp_stream(uint64_t seed, uint64_t round, uint64_t who)
{
    hp_rng r = {seed ^ (round * 0x100000001b3ull) ^ (who << 56)};
    (void)hp_next(&r);
    return r;
}

static inline double hp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ layout
 * Where the corrupter aims: the ring header's fields (ring.h) and, for a
 * pipe, a mirror of pipe.c's private header (checked against the magic). */

typedef struct hp_pipe_hdr {
    uint64_t magic, id, total, ring_off[2];
    uint32_t flags; /* 1: one-way */
    uint8_t pad[64 - 44];
    uint32_t closed[2], broken;
} hp_pipe_hdr;
#define HP_PIPE_MAGIC 0x3165706977657263ull /* "crewpie1" */

static const struct {
    size_t off, size;
} hp_ring_fields[] = {
    {offsetof(crew__ring, magic), 8},         {offsetof(crew__ring, version), 4},
    {offsetof(crew__ring, ring_size_lo), 4},  {offsetof(crew__ring, cap), 8},
    {offsetof(crew__ring, max_msg), 8},       {offsetof(crew__ring, ring_size_hi), 4},
    {offsetof(crew__ring, tail), 8},          {offsetof(crew__ring, head), 8},
    {offsetof(crew__ring, prod_lock), 8},     {offsetof(crew__ring, head_seen), 8},
    {offsetof(crew__ring, cons_lock), 8},     {offsetof(crew__ring, data_seq), 4},
    {offsetof(crew__ring, data_waiters), 4},  {offsetof(crew__ring, space_seq), 4},
    {offsetof(crew__ring, space_waiters), 4}, {offsetof(crew__ring, closed), 4},
    {offsetof(crew__ring, recoveries), 4},    {offsetof(crew__ring, broken), 4},
    {offsetof(crew__ring, flags), 4},         {offsetof(crew__ring, puts), 8},
    {offsetof(crew__ring, pending_tail), 8},  {offsetof(crew__ring, gets), 8},
    {offsetof(crew__ring, unfinished), 8},    {offsetof(crew__ring, done_seq), 4},
    {offsetof(crew__ring, done_waiters), 4},
};
#define HP_NFIELDS (sizeof hp_ring_fields / sizeof hp_ring_fields[0])

/* ------------------------------------------------------------ the corrupter */

enum { HP_QUEUE = 1, HP_PIPE = 2, HP_END = 3 };

typedef struct hp_order {
    uint64_t seed, round;
    uint32_t kind, writes;
} hp_order;

static inline void hp_send_fd(int sock, const hp_order *o, int fd)
{
    struct iovec iov = {(void *)o, sizeof *o};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    CHECK(sendmsg(sock, &m, 0) == (ssize_t)sizeof *o);
}

static inline int hp_recv_fd(int sock, hp_order *o)
{
    struct iovec iov = {o, sizeof *o};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
    ssize_t n = recvmsg(sock, &m, 0);
    if (n == 0)
        return -2; /* the test went away */
    CHECK(n == (ssize_t)sizeof *o);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    int fd = -1;
    if (c && c->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static inline void hp_put_byte(int sock, char c) { CHECK(write(sock, &c, 1) == 1); }
static inline char hp_get_byte(int sock)
{
    char c = 0;
    ssize_t n;
    do
        n = read(sock, &c, 1);
    while (n < 0 && errno == EINTR);
    CHECK(n == 1);
    return c;
}

/* A value worth writing into a field: mostly near what is there (the
 * corruptions that get past the cheap checks), sometimes wild. */
static inline uint64_t hp_value(hp_rng *r, uint64_t cur, uint64_t cap)
{
    switch (hp_below(r, 12)) {
    case 0: return 0;
    case 1: return ~(uint64_t)0;
    case 2: return cur + 8 * (1 + hp_below(r, 4));
    case 3: return cur - 8 * (1 + hp_below(r, 4));
    case 4: return cur + 4;
    case 5: return cur + cap;
    case 6: return cap + 8 * hp_below(r, 3);
    case 7: return hp_below(r, 256);
    case 8: /* a live thread that never unlocks, as a lock word names it
             * (pid << 32 | tid; a 4-byte field gets the tid) */
        return (uint64_t)getpid() << 32 | (uint64_t)getpid();
    case 9: return 0xffffffffull;     /* SKIP_LEN */
    case 10: return cur ^ (1ull << hp_below(r, 64));
    default: return hp_next(r);
    }
}

/* One corruption of the mapping at base (size bytes) holding rings at
 * ring_off[0..nrings) of `cap` data bytes each. */
static inline void hp_corrupt(hp_rng *r, uint8_t *base, size_t size, const size_t *ring_off,
                              int nrings, uint64_t cap, int pipe)
{
    uint8_t *ring = base + ring_off[hp_below(r, (uint64_t)nrings)];
    uint8_t *data = ring + CREW__RING_DATA_OFF;
    uint64_t pick = hp_below(r, 16);
    if (pick < 8) { /* a ring header field */
        size_t f = (size_t)hp_below(r, HP_NFIELDS);
        uint8_t *at = ring + hp_ring_fields[f].off;
        if (hp_ring_fields[f].size == 8) {
            uint64_t cur;
            memcpy(&cur, at, 8);
            uint64_t v = hp_value(r, cur, cap);
            memcpy(at, &v, 8);
        } else {
            uint32_t cur;
            memcpy(&cur, at, 4);
            uint32_t v = (uint32_t)hp_value(r, cur, cap);
            memcpy(at, &v, 4);
        }
    } else if (pick < 11) { /* a record header where the consumer will look */
        uint64_t head;
        memcpy(&head, ring + offsetof(crew__ring, head), 8);
        uint64_t off = (head % cap) & ~(uint64_t)7;
        uint32_t cur;
        memcpy(&cur, data + off, 4);
        uint32_t v = (uint32_t)hp_value(r, cur, cap);
        memcpy(data + off, &v, 4);
    } else if (pick < 12 && pipe) { /* the pipe header */
        hp_pipe_hdr *h = (hp_pipe_hdr *)base;
        uint64_t *f[] = {&h->total, &h->ring_off[0], &h->ring_off[1]};
        uint64_t *at = f[hp_below(r, 3)];
        if (hp_below(r, 4) == 0) {
            uint32_t *w = hp_below(r, 2) ? &h->broken : &h->closed[hp_below(r, 2)];
            *w = (uint32_t)hp_below(r, 3);
        } else {
            *at = hp_value(r, *at, cap);
        }
    } else if (pick < 14) { /* random bytes over a header */
        size_t n = 1 + (size_t)hp_below(r, 16);
        size_t off = (size_t)hp_below(r, 512 - n);
        for (size_t i = 0; i < n; i++)
            ring[off + i] = (uint8_t)hp_next(r);
    } else { /* random bytes anywhere in the region */
        size_t n = 1 + (size_t)hp_below(r, 64);
        size_t off = (size_t)hp_below(r, size - n);
        for (size_t i = 0; i < n; i++)
            base[off + i] = (uint8_t)hp_next(r);
    }
}

/* A busy wait of up to max_us: varies the moment of the next write. */
static inline void hp_spin(hp_rng *r, unsigned max_us)
{
    double until = hp_now() + (double)hp_below(r, max_us + 1) * 1e-6;
    while (hp_now() < until)
        ;
}

/* Checks that nobody can resize the memfd: 0, or the errno seen. */
static inline int hp_try_resize(int fd, size_t size)
{
    off_t sizes[] = {0, (off_t)size / 2, (off_t)size + 4096, (off_t)size * 2};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (ftruncate(fd, sizes[i]) == 0 || errno != EPERM)
            return errno ? errno : -1;
    return 0;
}

/* The corrupter process: argv[0] = the socket's fd. For each order: check
 * the memfd cannot be resized, map it, say 'G', then do up to `writes`
 * corruptions at random moments until told 'S'; unmap, say 'D' (or 'T' if
 * a resize went through). */
static inline int helper_hostile_corrupter(int argc, char **argv)
{
    CHECK(argc == 1);
    int sock = atoi(argv[0]);
    for (;;) {
        hp_order o;
        int fd = hp_recv_fd(sock, &o);
        if (fd == -2 || o.kind == HP_END)
            return 0;
        CHECK(fd >= 0);
        struct stat st;
        CHECK(fstat(fd, &st) == 0);
        size_t size = (size_t)st.st_size;
        int resize = hp_try_resize(fd, size);
        uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        CHECK(base != MAP_FAILED);
        size_t ring_off[2] = {0, 0};
        int nrings = 1;
        uint64_t cap;
        if (o.kind == HP_PIPE) {
            hp_pipe_hdr *h = (hp_pipe_hdr *)base;
            CHECK(h->magic == HP_PIPE_MAGIC && h->total == size);
            ring_off[0] = (size_t)h->ring_off[0];
            ring_off[1] = (size_t)h->ring_off[1];
            nrings = 2;
        }
        memcpy(&cap, base + ring_off[0] + offsetof(crew__ring, cap), 8);
        CHECK(cap >= 64 && cap % 8 == 0);
        hp_put_byte(sock, 'G');
        hp_rng r = hp_stream(o.seed, o.round, 7);
        bool stop = false;
        for (uint32_t i = 0; i < o.writes && !stop; i++) {
            hp_spin(&r, 300);
            hp_corrupt(&r, base, size, ring_off, nrings, cap, o.kind == HP_PIPE);
            struct pollfd pfd = {sock, POLLIN, 0};
            stop = poll(&pfd, 1, 0) == 1;
        }
        CHECK(hp_get_byte(sock) == 'S');
        munmap(base, size);
        close(fd);
        hp_put_byte(sock, resize == 0 ? 'D' : 'T');
    }
}

/* ------------------------------------------------------------ the victims */

/* What a run saw, for the summary line. */
typedef struct hp_tally {
    long rounds, calls, ok, eproto, other, broken_rounds;
    double worst_overrun; /* seconds past a call's timeout */
} hp_tally;

typedef struct hp_ctx {
    uint64_t seed, round;
    const char *who; /* "parent" or "child" */
    bool broken;     /* this handle has returned CREW_EPROTO */
    hp_tally *t;
} hp_ctx;

#define HP_FAIL(c, ...)                                                        \
    do {                                                                       \
        fprintf(stderr, "hostile peer: seed %#llx round %llu (%s): ",          \
                (unsigned long long)(c)->seed, (unsigned long long)(c)->round, \
                (c)->who);                                                     \
        TEST_FAIL(__VA_ARGS__);                                                \
    } while (0)

/* Slack over a call's own timeout: scheduling on a loaded 2-CPU machine,
 * and a sanitizer's slowness; a hang is far beyond it. */
static inline double hp_slack(void) { return TEST_SANITIZED ? 2.0 : 0.5; }

/* Checks one call's result: rc in `allowed` (0-terminated list, 0 itself
 * always allowed), EAGAIN only for timeout 0 and ETIMEDOUT only above it,
 * back within timeout (bound) + slack, and EPROTO for good once seen. */
static inline void hp_check(hp_ctx *c, const char *op, int rc, double t0, double bound,
                            double timeout, const int *allowed)
{
    double took = hp_now() - t0;
    c->t->calls++;
    if (c->broken && rc != CREW_EPROTO)
        HP_FAIL(c, "%s returned %s after the handle had returned CREW_EPROTO", op,
                crew_err_name(rc));
    bool ok = rc == 0;
    for (const int *a = allowed; !ok && *a; a++)
        ok = rc == *a;
    if (!ok)
        HP_FAIL(c, "%s returned %s: not one of its documented codes", op, crew_err_name(rc));
    if ((rc == CREW_EAGAIN && timeout != 0) || (rc == CREW_ETIMEDOUT && timeout == 0))
        HP_FAIL(c, "%s returned %s with timeout %g", op, crew_err_name(rc), timeout);
    if (took > bound + hp_slack())
        HP_FAIL(c, "%s took %.3f s, bound %.3f s", op, took, bound);
    if (took - bound > c->t->worst_overrun)
        c->t->worst_overrun = took - bound;
    if (rc == 0)
        c->t->ok++;
    else if (rc == CREW_EPROTO)
        c->t->eproto++;
    else
        c->t->other++;
    if (rc == CREW_EPROTO)
        c->broken = true;
}

/* How long close may wait for a lock a peer holds, per ring. */
#define HP_CLOSE_BOUND CREW__RING_CLOSE_WAIT

static const double hp_timeouts[] = {0, 0, 0, 0.001, 0.003};

#define HP_CANARY 0x5a
enum { HP_BUF = 512 };

/* A buffer with canaries on both sides; hp_buf_check fails if a call wrote
 * outside [0, cap). */
typedef struct hp_buf {
    uint8_t pre[32], b[HP_BUF], post[32];
} hp_buf;
static inline void hp_buf_arm(hp_buf *b)
{
    memset(b, HP_CANARY, sizeof *b);
}
static inline void hp_buf_check(hp_ctx *c, const hp_buf *b, size_t cap)
{
    for (size_t i = 0; i < sizeof b->pre; i++)
        if (b->pre[i] != HP_CANARY || b->post[i] != HP_CANARY)
            HP_FAIL(c, "a receive wrote outside its buffer");
    for (size_t i = cap; i < HP_BUF; i++)
        if (b->b[i] != HP_CANARY)
            HP_FAIL(c, "a receive wrote past bufcap (%zu)", cap);
}

static void hp_fill(void *dst, size_t len, void *arg)
{
    (void)arg;
    memset(dst, 0xab, len);
}
/* Reads every byte handed over in place: a message reaching outside the
 * mapping would fault here. */
static void hp_read(const void *msg, size_t len, void *arg)
{
    uint64_t *sum = arg;
    const volatile uint8_t *p = msg;
    for (size_t i = 0; i < len; i++)
        *sum += p[i];
}

static const int hp_put_codes[] = {CREW_ECLOSED, CREW_EAGAIN, CREW_ETIMEDOUT, CREW_EDEADLK,
                                   CREW_EPROTO, 0};
static const int hp_get_codes[] = {CREW_EOF, CREW_E2BIG, CREW_EAGAIN, CREW_ETIMEDOUT,
                                   CREW_EDEADLK, CREW_EPROTO, 0};
static const int hp_send_codes[] = {CREW_EPIPE, CREW_ECLOSED, CREW_EAGAIN, CREW_ETIMEDOUT,
                                    CREW_EDEADLK, CREW_EPROTO, 0};
static const int hp_recv_codes[] = {CREW_EOF, CREW_ECLOSED, CREW_E2BIG, CREW_EAGAIN,
                                    CREW_ETIMEDOUT, CREW_EDEADLK, CREW_EPROTO, 0};
static const int hp_proto_codes[] = {CREW_EPROTO, 0};

/* One random call on a queue of the given geometry. */
static inline void hp_queue_op(hp_ctx *c, hp_rng *r, crew_queue *q, size_t max_msg,
                               size_t capacity, bool may_close)
{
    double to = hp_timeouts[hp_below(r, sizeof hp_timeouts / sizeof hp_timeouts[0])];
    size_t len = (size_t)hp_below(r, (max_msg < HP_BUF ? max_msg : HP_BUF) + 1);
    uint8_t msg[HP_BUF];
    memset(msg, (int)len, len);
    hp_buf b;
    hp_buf_arm(&b);
    size_t cap = (size_t)hp_below(r, HP_BUF + 1), got = 0;
    double t0 = hp_now();
    int rc;
    switch (hp_below(r, may_close ? 9 : 8)) {
    case 0:
    case 1:
        rc = crew_queue_put(q, msg, len, to);
        hp_check(c, "crew_queue_put", rc, t0, to, to, hp_put_codes);
        break;
    case 2:
        rc = crew_queue_put_with(q, len, hp_fill, NULL, to);
        hp_check(c, "crew_queue_put_with", rc, t0, to, to, hp_put_codes);
        break;
    case 3:
    case 4:
        rc = crew_queue_get(q, b.b, cap, &got, to);
        hp_check(c, "crew_queue_get", rc, t0, to, to, hp_get_codes);
        hp_buf_check(c, &b, cap);
        if (rc == 0 && (got > cap || got > max_msg))
            HP_FAIL(c, "get: %zu bytes into a %zu-byte buffer (max %zu)", got, cap, max_msg);
        if (rc == CREW_E2BIG && (got <= cap || got > max_msg))
            HP_FAIL(c, "get: E2BIG for %zu bytes, buffer %zu (max %zu)", got, cap, max_msg);
        break;
    case 5: {
        uint64_t sum = 0;
        rc = crew_queue_get_with(q, hp_read, &sum, to);
        hp_check(c, "crew_queue_get_with", rc, t0, to, to, hp_get_codes);
        break;
    }
    case 6: {
        crew_queue_status st;
        rc = crew_queue_status_get(q, &st);
        hp_check(c, "crew_queue_status_get", rc, t0, 0, 0, hp_proto_codes);
        if (rc == 0 && (st.capacity != capacity || st.max_message != max_msg ||
                        st.used > st.capacity))
            HP_FAIL(c, "info: capacity %zu max %zu used %zu", st.capacity, st.max_message,
                    st.used);
        break;
    }
    case 7: {
        int fd = -1;
        rc = crew_queue_dup_fd(q, &fd);
        hp_check(c, "crew_queue_dup_fd", rc, t0, 0, 0, hp_proto_codes);
        if (rc == 0)
            close(fd);
        break;
    }
    default:
        rc = crew_queue_close(q);
        hp_check(c, "crew_queue_close", rc, t0, HP_CLOSE_BOUND, 0, hp_proto_codes);
        break;
    }
}

static inline void hp_pipe_op(hp_ctx *c, hp_rng *r, crew_pipe *p, size_t max_msg,
                              bool may_close)
{
    double to = hp_timeouts[hp_below(r, sizeof hp_timeouts / sizeof hp_timeouts[0])];
    size_t len = (size_t)hp_below(r, (max_msg < HP_BUF ? max_msg : HP_BUF) + 1);
    uint8_t msg[HP_BUF];
    memset(msg, (int)len, len);
    hp_buf b;
    hp_buf_arm(&b);
    size_t cap = (size_t)hp_below(r, HP_BUF + 1), got = 0;
    double t0 = hp_now();
    int rc;
    switch (hp_below(r, may_close ? 7 : 6)) {
    case 0:
    case 1:
        rc = crew_pipe_send(p, msg, len, to);
        hp_check(c, "crew_pipe_send", rc, t0, to, to, hp_send_codes);
        break;
    case 2:
    case 3:
        rc = crew_pipe_recv(p, b.b, cap, &got, to);
        hp_check(c, "crew_pipe_recv", rc, t0, to, to, hp_recv_codes);
        hp_buf_check(c, &b, cap);
        if (rc == 0 && (got > cap || got > max_msg))
            HP_FAIL(c, "recv: %zu bytes into a %zu-byte buffer (max %zu)", got, cap, max_msg);
        break;
    case 4: {
        uint64_t sum = 0;
        rc = crew_pipe_recv_with(p, hp_read, &sum, to);
        hp_check(c, "crew_pipe_recv_with", rc, t0, to, to, hp_recv_codes);
        break;
    }
    case 5: {
        int fd = -1;
        rc = crew_pipe_dup_fd(p, &fd);
        hp_check(c, "crew_pipe_dup_fd", rc, t0, 0, 0, hp_proto_codes);
        if (rc == 0)
            close(fd);
        break;
    }
    default:
        rc = crew_pipe_close(p);
        /* Two rings, each closed under its own bounded lock wait. */
        hp_check(c, "crew_pipe_close", rc, t0, 2 * HP_CLOSE_BOUND, 0, hp_proto_codes);
        break;
    }
}

/* ------------------------------------------------------------ one run */

typedef struct hp_run {
    uint64_t seed;
    long max_rounds;
    double seconds;
    int sock;       /* to the corrupter */
    pid_t corrupter;
} hp_run;

static inline uint64_t hp_seed(void)
{
    const char *s = getenv("CREW_HOSTILE_SEED");
    return s ? strtoull(s, NULL, 0) : 0x5eedc0de2026ull;
}

static inline long hp_env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    return s ? strtol(s, NULL, 0) : dflt;
}

static inline void hp_start(hp_run *run, long rounds, double seconds)
{
    run->seed = hp_seed();
    run->max_rounds = hp_env_long("CREW_HOSTILE_ROUNDS", test_scale(rounds));
    run->seconds = (double)hp_env_long("CREW_HOSTILE_SECONDS", (long)seconds);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(fcntl(sv[0], F_SETFD, FD_CLOEXEC) == 0);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", sv[1]);
    run->corrupter = test_spawn_helper("helper_hostile_corrupter", arg, NULL);
    close(sv[1]);
    run->sock = sv[0];
}

static inline void hp_finish(hp_run *run)
{
    hp_order o = {.kind = HP_END};
    hp_send_fd(run->sock, &o, -1);
    int st = test_wait(run->corrupter);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(run->sock);
}

/* Gives the corrupter fd for this round and waits until it has mapped it. */
static inline void hp_round_begin(hp_run *run, uint64_t round, uint32_t kind, int fd, hp_rng *r)
{
    hp_order o = {.seed = run->seed, .round = round, .kind = kind,
                  .writes = (uint32_t)(1 + hp_below(r, 12))};
    hp_send_fd(run->sock, &o, fd);
    close(fd);
    CHECK(hp_get_byte(run->sock) == 'G');
}

static inline void hp_round_end(hp_run *run, hp_ctx *c)
{
    hp_put_byte(run->sock, 'S');
    char done = hp_get_byte(run->sock);
    if (done != 'D')
        HP_FAIL(c, "the corrupter could resize the memfd (ftruncate did not fail with EPERM)");
}

/* A forked well-behaved peer runs `ops` calls and exits 0; a failed check
 * aborts it, which the parent sees. */
static inline void hp_wait_child(hp_ctx *c, pid_t pid)
{
    int st = test_wait(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        HP_FAIL(c, "the child peer ended with status %#x", st);
}

enum { HP_OPS = 40 };

static inline void hp_queue_rounds(hp_run *run, hp_tally *t)
{
    static const size_t caps[] = {64, 256, 1024, 4096};
    double end = hp_now() + run->seconds;
    for (long round = 0; round < run->max_rounds && hp_now() < end; round++) {
        test_watchdog(60); /* per round: a hang is caught where it happens */
        hp_rng r = hp_stream(run->seed, (uint64_t)round, 1);
        crew_queue_options o = {.capacity = caps[hp_below(&r, 4)]};
        crew_queue *q;
        CHECK_OK(crew_queue_create(&q, &o));
        crew_queue_status st;
        CHECK_OK(crew_queue_status_get(q, &st));
        for (int i = (int)hp_below(&r, 4); i > 0; i--)
            CHECK_OK(crew_queue_put(q, "seed", 4, 0));
        int fd;
        CHECK_OK(crew_queue_dup_fd(q, &fd));
        hp_round_begin(run, (uint64_t)round, HP_QUEUE, fd, &r);
        hp_ctx c = {run->seed, (uint64_t)round, "parent", false, t};
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            test_watchdog(60);
            hp_ctx cc = {run->seed, (uint64_t)round, "child", false, t};
            hp_rng cr = hp_stream(run->seed, (uint64_t)round, 2);
            for (int i = 0; i < HP_OPS; i++)
                hp_queue_op(&cc, &cr, q, st.max_message, st.capacity, i == HP_OPS - 1);
            _exit(0);
        }
        for (int i = 0; i < HP_OPS; i++)
            hp_queue_op(&c, &r, q, st.max_message, st.capacity, i == HP_OPS - 1);
        hp_wait_child(&c, pid);
        hp_round_end(run, &c);
        /* Broken stays broken, whatever the corrupter left in the header. */
        if (c.broken) {
            t->broken_rounds++;
            char b[8];
            CHECK_ERR(crew_queue_try_put(q, "x", 1), CREW_EPROTO);
            CHECK_ERR(crew_queue_try_get(q, b, sizeof b, NULL), CREW_EPROTO);
        }
        CHECK_OK(crew_queue_destroy(q));
        t->rounds++;
    }
}

static inline void hp_pipe_rounds(hp_run *run, hp_tally *t)
{
    static const size_t caps[] = {64, 256, 1024, 4096};
    double end = hp_now() + run->seconds;
    for (long round = 0; round < run->max_rounds && hp_now() < end; round++) {
        test_watchdog(60);
        hp_rng r = hp_stream(run->seed, (uint64_t)round, 3);
        crew_pipe_options o = {.capacity = caps[hp_below(&r, 4)]};
        crew_pipe *a, *b;
        CHECK_OK(crew_pipe_create(&a, &b, &o));
        size_t max_msg = (o.capacity < 64 ? 64 : o.capacity) - 8;
        for (int i = (int)hp_below(&r, 4); i > 0; i--)
            CHECK_OK(crew_pipe_send(a, "seed", 4, 0));
        int fd;
        CHECK_OK(crew_pipe_dup_fd(a, &fd));
        hp_round_begin(run, (uint64_t)round, HP_PIPE, fd, &r);
        hp_ctx c = {run->seed, (uint64_t)round, "parent", false, t};
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            test_watchdog(60);
            CHECK_OK(crew_pipe_destroy(a));
            hp_ctx cc = {run->seed, (uint64_t)round, "child", false, t};
            hp_rng cr = hp_stream(run->seed, (uint64_t)round, 4);
            for (int i = 0; i < HP_OPS; i++)
                hp_pipe_op(&cc, &cr, b, max_msg, i == HP_OPS - 1);
            CHECK_OK(crew_pipe_destroy(b));
            _exit(0);
        }
        CHECK_OK(crew_pipe_destroy(b));
        for (int i = 0; i < HP_OPS; i++)
            hp_pipe_op(&c, &r, a, max_msg, i == HP_OPS - 1);
        hp_wait_child(&c, pid);
        hp_round_end(run, &c);
        if (c.broken) {
            t->broken_rounds++;
            char buf[8];
            CHECK_ERR(crew_pipe_send(a, "x", 1, 0), CREW_EPROTO);
            CHECK_ERR(crew_pipe_recv(a, buf, sizeof buf, NULL, 0), CREW_EPROTO);
        }
        CHECK_OK(crew_pipe_destroy(a));
        t->rounds++;
    }
}

static inline void hp_report(const char *what, const hp_run *run, const hp_tally *t)
{
    printf("# hostile %s: seed %#llx, %ld rounds (%ld broken), %ld calls in this process: "
           "%ld ok, %ld CREW_EPROTO, %ld other documented codes; worst overrun %.1f ms\n",
           what, (unsigned long long)run->seed, t->rounds, t->broken_rounds, t->calls, t->ok,
           t->eproto, t->other, t->worst_overrun * 1e3);
    fflush(stdout);
}

#endif /* HOSTILE_PEER_H */
