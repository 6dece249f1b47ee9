/*
 * bench_queue.c -- crew_queue and crew_pipe between two processes, against
 * the kernel's channels and a raw shared-memory floor, same run.
 *
 *  - round trip: the parent sends a 16-byte message, the child (a fork)
 *    sends it back; ns per round trip. crew_queue (one queue each way) and
 *    crew_pipe against a pipe pair, a socketpair, and the raw floor: two
 *    words in shared memory, each side spinning up to 20 us on the word it
 *    waits for and then sleeping on it with a futex (the best any
 *    spin-then-sleep channel can do here). Goals: <= 1 us, <= 3.5x the
 *    floor, >= 50x a pipe.
 *  - streaming: the parent sends 64 KiB messages, the child receives each
 *    into its own buffer (a copy in and a copy out, as with a pipe) and
 *    acknowledges each batch; GiB/s. Against a pipe (default 64 KiB buffer
 *    and 1 MiB with F_SETPIPE_SZ), a socketpair, and one thread's memcpy of
 *    the same bytes from RAM to RAM. Goal: >= 10 GiB/s, >= 3x socketpair.
 *
 * Placement modes: on a 2-vCPU guest these figures move by 10x or more
 * with where the two processes land (a pipe round trip is 2-4 us when both
 * sides share a CPU and about 60 us when a wake-up must cross to the other,
 * idle vCPU; a spinning queue is the other way round). So everything is
 * measured and reported in each mode, as rows of their own with the mode
 * in the name: "1 CPU" (parent and child pinned to the same CPU), "2 CPUs"
 * (each pinned to its own) and "unpinned" (where the scheduler puts them);
 * crew and every anchor alike, alternating within the mode.
 *
 * Every figure is the median of several repetitions (CREW_BENCH_REPS),
 * with min and max; CREW_BENCH_SCALE shrinks the iteration counts.
 */
#include "harness.h"

#include <crew.h>

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define GROUP "queue"
#define RT_MSG 16
#define STREAM_MSG (64 * 1024)

/* ---------------------------------------------------------------- channels
 * One interface over every channel: the parent's side and the child's side,
 * each with send / receive-exactly, and a way to end (the child then sees
 * EOF). */
typedef struct chan chan;
struct chan {
    const char *name;
    void (*parent_setup)(chan *);
    void (*child_setup)(chan *);
    void (*psend)(chan *, const void *, size_t);
    void (*precv)(chan *, void *, size_t);
    void (*csend)(chan *, const void *, size_t);
    bool (*crecv)(chan *, void *, size_t); /* false at EOF */
    void (*parent_done)(chan *);
    void (*child_done)(chan *);
    int p2c[2], c2p[2]; /* fd channels; a socketpair uses p2c only */
    crew_queue *q1, *q2;
    crew_pipe *a, *b;
    struct floor_words *fw;
    uint32_t seq_a, seq_b;
};

static void die(const char *what)
{
    fprintf(stderr, "bench_queue: %s failed: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- fds: pipe pair or socketpair */
static bool read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        len -= (size_t)r;
    }
    return true;
}
static void write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        p += w;
        len -= (size_t)w;
    }
}
static int fd_parent_out(chan *c) { return c->c2p[0] < 0 ? c->p2c[0] : c->p2c[1]; }
static int fd_parent_in(chan *c) { return c->c2p[0] < 0 ? c->p2c[0] : c->c2p[0]; }
static int fd_child_out(chan *c) { return c->c2p[0] < 0 ? c->p2c[1] : c->c2p[1]; }
static int fd_child_in(chan *c) { return c->c2p[0] < 0 ? c->p2c[1] : c->p2c[0]; }
static void fd_parent_setup(chan *c)
{
    if (c->c2p[0] < 0) {
        close(c->p2c[1]);
    } else {
        close(c->p2c[0]);
        close(c->c2p[1]);
    }
}
static void fd_child_setup(chan *c)
{
    if (c->c2p[0] < 0) {
        close(c->p2c[0]);
    } else {
        close(c->p2c[1]);
        close(c->c2p[0]);
    }
}
static void fd_psend(chan *c, const void *b, size_t n) { write_full(fd_parent_out(c), b, n); }
static void fd_precv(chan *c, void *b, size_t n)
{
    if (!read_full(fd_parent_in(c), b, n))
        die("read");
}
static void fd_csend(chan *c, const void *b, size_t n) { write_full(fd_child_out(c), b, n); }
static bool fd_crecv(chan *c, void *b, size_t n) { return read_full(fd_child_in(c), b, n); }
static void fd_parent_done(chan *c)
{
    close(fd_parent_out(c));
    if (c->c2p[0] >= 0)
        close(c->c2p[0]);
}
static void fd_child_done(chan *c) { (void)c; }

static chan make_pipe_chan(const char *name, int pipe_size)
{
    chan c = {.name = name};
    if (pipe(c.p2c) != 0 || pipe(c.c2p) != 0)
        die("pipe");
    if (pipe_size) {
        if (fcntl(c.p2c[1], F_SETPIPE_SZ, pipe_size) < 0 || fcntl(c.c2p[1], F_SETPIPE_SZ, pipe_size) < 0)
            die("F_SETPIPE_SZ");
    }
    c.parent_setup = fd_parent_setup;
    c.child_setup = fd_child_setup;
    c.psend = fd_psend;
    c.precv = fd_precv;
    c.csend = fd_csend;
    c.crecv = fd_crecv;
    c.parent_done = fd_parent_done;
    c.child_done = fd_child_done;
    return c;
}

static chan make_socket_chan(void)
{
    chan c = make_pipe_chan("socketpair", 0);
    close(c.p2c[0]);
    close(c.p2c[1]);
    close(c.c2p[0]);
    close(c.c2p[1]);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, c.p2c) != 0)
        die("socketpair");
    c.c2p[0] = c.c2p[1] = -1;
    return c;
}

/* ---- the raw floor: spin up to 20 us, then futex */
struct floor_words {
    _Alignas(64) _Atomic uint32_t a;
    _Atomic uint32_t a_sleeping;
    _Alignas(64) _Atomic uint32_t b;
    _Atomic uint32_t b_sleeping;
};
#define FLOOR_STOP 0xffffffffu

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits until *w != old; returns the new value. */
static uint32_t floor_wait(_Atomic uint32_t *w, _Atomic uint32_t *sleeping, uint32_t old)
{
    uint64_t t0 = now_ns();
    for (unsigned i = 1;; i++) {
        uint32_t v = atomic_load_explicit(w, memory_order_acquire);
        if (v != old)
            return v;
        __builtin_ia32_pause();
        if ((i & 63) == 0 && now_ns() - t0 > 20000)
            break;
    }
    atomic_store(sleeping, 1);
    uint32_t v;
    while ((v = atomic_load(w)) == old)
        syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, old, NULL, NULL, 0);
    atomic_store(sleeping, 0);
    return v;
}
static void floor_post(_Atomic uint32_t *w, _Atomic uint32_t *sleeping, uint32_t v)
{
    atomic_store(w, v);
    if (atomic_load(sleeping))
        syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}
static void nop_setup(chan *c) { (void)c; }
static void floor_psend(chan *c, const void *b, size_t n)
{
    c->seq_a = c->seq_a + 1 == FLOOR_STOP ? 1 : c->seq_a + 1;
    floor_post(&c->fw->a, &c->fw->a_sleeping, c->seq_a);
}
static void floor_precv(chan *c, void *b, size_t n)
{
    c->seq_b = floor_wait(&c->fw->b, &c->fw->b_sleeping, c->seq_b);
}
static void floor_csend(chan *c, const void *b, size_t n)
{
    c->seq_b = c->seq_b + 1 == FLOOR_STOP ? 1 : c->seq_b + 1;
    floor_post(&c->fw->b, &c->fw->b_sleeping, c->seq_b);
}
static bool floor_crecv(chan *c, void *b, size_t n)
{
    c->seq_a = floor_wait(&c->fw->a, &c->fw->a_sleeping, c->seq_a);
    return c->seq_a != FLOOR_STOP;
}
static void floor_parent_done(chan *c) { floor_post(&c->fw->a, &c->fw->a_sleeping, FLOOR_STOP); }

static chan make_floor_chan(void)
{
    chan c = {.name = "raw shm spin+futex"};
    c.fw = mmap(NULL, sizeof *c.fw, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c.fw == MAP_FAILED)
        die("mmap");
    memset(c.fw, 0, sizeof *c.fw);
    c.parent_setup = c.child_setup = nop_setup;
    c.psend = floor_psend;
    c.precv = floor_precv;
    c.csend = floor_csend;
    c.crecv = floor_crecv;
    c.parent_done = floor_parent_done;
    c.child_done = nop_setup;
    return c;
}

/* ---- crew_queue: one queue each way */
static void q_psend(chan *c, const void *b, size_t n)
{
    if (crew_queue_put(c->q1, b, n, CREW_FOREVER) != 0)
        die("crew_queue_put");
}
static void q_precv(chan *c, void *b, size_t n)
{
    size_t got;
    if (crew_queue_get(c->q2, b, n, &got, CREW_FOREVER) != 0 || got != n)
        die("crew_queue_get");
}
static void q_csend(chan *c, const void *b, size_t n)
{
    if (crew_queue_put(c->q2, b, n, CREW_FOREVER) != 0)
        die("crew_queue_put");
}
static bool q_crecv(chan *c, void *b, size_t n)
{
    size_t got;
    return crew_queue_get(c->q1, b, n, &got, CREW_FOREVER) == 0;
}
static void q_parent_done(chan *c)
{
    crew_queue_close(c->q1);
    crew_queue_destroy(c->q1);
    crew_queue_destroy(c->q2);
}
static void q_child_done(chan *c)
{
    crew_queue_destroy(c->q1);
    crew_queue_destroy(c->q2);
}
static chan make_queue_chan(void)
{
    chan c = {.name = "crew_queue"};
    if (crew_queue_create(&c.q1, NULL) != 0 || crew_queue_create(&c.q2, NULL) != 0)
        die("crew_queue_create");
    c.parent_setup = c.child_setup = nop_setup;
    c.psend = q_psend;
    c.precv = q_precv;
    c.csend = q_csend;
    c.crecv = q_crecv;
    c.parent_done = q_parent_done;
    c.child_done = q_child_done;
    return c;
}

/* ---- crew_pipe */
static void cp_parent_setup(chan *c) { crew_pipe_destroy(c->b); }
static void cp_child_setup(chan *c) { crew_pipe_destroy(c->a); }
static void cp_psend(chan *c, const void *b, size_t n)
{
    if (crew_pipe_send(c->a, b, n, CREW_FOREVER) != 0)
        die("crew_pipe_send");
}
static void cp_precv(chan *c, void *b, size_t n)
{
    size_t got;
    if (crew_pipe_recv(c->a, b, n, &got, CREW_FOREVER) != 0 || got != n)
        die("crew_pipe_recv");
}
static void cp_csend(chan *c, const void *b, size_t n)
{
    if (crew_pipe_send(c->b, b, n, CREW_FOREVER) != 0)
        die("crew_pipe_send");
}
static bool cp_crecv(chan *c, void *b, size_t n)
{
    size_t got;
    return crew_pipe_recv(c->b, b, n, &got, CREW_FOREVER) == 0;
}
static void cp_parent_done(chan *c) { crew_pipe_destroy(c->a); }
static void cp_child_done(chan *c) { crew_pipe_destroy(c->b); }
static chan make_crew_pipe_chan(void)
{
    chan c = {.name = "crew_pipe"};
    if (crew_pipe_create(&c.a, &c.b, NULL) != 0)
        die("crew_pipe_create");
    c.parent_setup = cp_parent_setup;
    c.child_setup = cp_child_setup;
    c.psend = cp_psend;
    c.precv = cp_precv;
    c.csend = cp_csend;
    c.crecv = cp_crecv;
    c.parent_done = cp_parent_done;
    c.child_done = cp_child_done;
    return c;
}

/* ---------------------------------------------------------------- runs */

/* The CPU the children of the current mode pin themselves to; -1: none. */
static int g_child_cpu = -1;

static pid_t start_child(chan *c, size_t msg, long batch)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0) {
        c->parent_setup(c);
        return pid;
    }
    c->child_setup(c);
    if (g_child_cpu >= 0)
        bench_pin(0, g_child_cpu);
    char *buf = malloc(msg);
    memset(buf, 0, msg);
    char ack[RT_MSG] = {1};
    if (batch == 0) { /* echo */
        while (c->crecv(c, buf, msg))
            c->csend(c, buf, msg);
    } else { /* stream: a batch in, one ack out */
        for (;;) {
            for (long i = 0; i < batch; i++)
                if (!c->crecv(c, buf, msg))
                    goto out;
            c->csend(c, ack, RT_MSG);
        }
    }
out:
    c->child_done(c);
    _exit(0);
}

static void finish(chan *c, pid_t pid)
{
    c->parent_done(c);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

/* ns per round trip over n round trips. */
static double rt_batch(chan *c, long n)
{
    char buf[RT_MSG] = {0};
    double t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        c->psend(c, buf, RT_MSG);
        c->precv(c, buf, RT_MSG);
    }
    return (bench_now_ns() - t0) / (double)n;
}

/* GiB/s over one batch of 64 KiB messages, acknowledged by the child. */
static double stream_batch(chan *c, long batch, const char *buf)
{
    char ack[RT_MSG];
    double t0 = bench_now_ns();
    for (long i = 0; i < batch; i++)
        c->psend(c, buf, STREAM_MSG);
    c->precv(c, ack, RT_MSG);
    double ns = bench_now_ns() - t0;
    return (double)batch * STREAM_MSG / ns * 1e9 / (double)(1u << 30);
}

/* From RAM to RAM: buffers far larger than any cache. */
#define MEMCPY_SPAN ((size_t)256 << 20)
static double memcpy_batch(char *src, char *dst, long batch)
{
    static size_t off;
    double t0 = bench_now_ns();
    for (long i = 0; i < batch; i++) {
        memcpy(dst + off, src + off, STREAM_MSG);
        off = (off + STREAM_MSG) % MEMCPY_SPAN;
    }
    double ns = bench_now_ns() - t0;
    __asm__ __volatile__("" ::"r"(dst) : "memory");
    return (double)batch * STREAM_MSG / ns * 1e9 / (double)(1u << 30);
}

/* All channels of a group run at once (idle children sleep) and are
 * measured in turn, repetition by repetition, so that load from elsewhere
 * falls on crew and its anchors alike; each figure is a median. */
enum { RT_PIPE, RT_SOCK, RT_FLOOR, RT_QUEUE, RT_CPIPE, RT_N };
enum { ST_PIPE, ST_PIPE1M, ST_SOCK, ST_QUEUE, ST_CPIPE, ST_N };

typedef struct place_mode {
    const char *name;
    int self_cpu, child_cpu; /* CPU indices (bench_cpu); -1: not pinned */
} place_mode;
static const place_mode modes[] = {
    {"1 CPU", 0, 0},
    {"2 CPUs", 0, 1},
    {"unpinned", -1, -1},
};
#define N_MODES (int)(sizeof modes / sizeof modes[0])

/* Pins this process for mode m and sets the children's CPU; false when the
 * machine has too few CPUs for it. */
static bool enter_mode(const place_mode *m)
{
    g_child_cpu = -1;
    if (m->self_cpu < 0)
        return true;
    int me = bench_cpu(m->self_cpu), child = bench_cpu(m->child_cpu);
    if (me < 0 || child < 0 || bench_pin(0, me) != 0)
        return false;
    g_child_cpu = child;
    return true;
}

static void leave_mode(void)
{
    g_child_cpu = -1;
    bench_pin(0, -1);
}

static void report(const char *name, const place_mode *m, bench_stat c, const char *unit,
                   const char *anchor, bench_stat a, bool lower, const char *goal)
{
    char full[96];
    snprintf(full, sizeof full, "%s [%s]", name, m->name);
    bench_fig f = {.group = GROUP, .name = full, .unit = unit, .mode = m->name, .crew = c,
                   .anchor = anchor, .anchor_value = a, .lower_is_better = lower, .goal = goal};
    bench_report(&f);
}

static void round_trips(const place_mode *m, int reps)
{
    long n_fast = bench_iters(100000), n_slow = bench_iters(4000);
    /* Each channel is made just before its child is forked, and they are
     * ended in reverse order: a child inherits the channels made before it
     * (their fds, their pipe holds), so those must outlive it. */
    chan rt[RT_N];
    long rt_n[RT_N] = {n_slow, n_slow, n_fast, n_fast, n_fast};
    pid_t rt_pid[RT_N];
    double rt_v[RT_N][64];
    for (int k = 0; k < RT_N; k++) {
        rt[k] = k == RT_PIPE    ? make_pipe_chan("pipe", 0)
                : k == RT_SOCK  ? make_socket_chan()
                : k == RT_FLOOR ? make_floor_chan()
                : k == RT_QUEUE ? make_queue_chan()
                                : make_crew_pipe_chan();
        rt_pid[k] = start_child(&rt[k], RT_MSG, 0);
    }
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < RT_N; k++) {
            rt_batch(&rt[k], rt_n[k] / 10 + 1); /* its own warm-up, right before */
            rt_v[k][r] = rt_batch(&rt[k], rt_n[k]) * 1e-3; /* us */
        }
    bench_stat v[RT_N];
    for (int k = RT_N - 1; k >= 0; k--) {
        finish(&rt[k], rt_pid[k]);
        v[k] = bench_stat_of(rt_v[k], reps);
    }
    const char *floor_goal = "<= 1 us; >= 0.29x (<= 3.5x floor)";
    const char *names[2] = {"queue round trip", "pipe round trip"};
    for (int i = 0; i < 2; i++) {
        bench_stat c = v[i == 0 ? RT_QUEUE : RT_CPIPE];
        report(names[i], m, c, "us", "raw shm spin+futex", v[RT_FLOOR], true, floor_goal);
        report(names[i], m, c, "us", "pipe", v[RT_PIPE], true, ">= 50x");
        report(names[i], m, c, "us", "socketpair", v[RT_SOCK], true, NULL);
    }
}

/* The memcpy anchor's buffers. MADV_DONTFORK: the channels' children are
 * forked after these are written, and a child sharing them would turn
 * every page the anchor writes into a copy-on-write fault. */
static char *span_alloc(void)
{
    char *p = mmap(NULL, MEMCPY_SPAN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || madvise(p, MEMCPY_SPAN, MADV_DONTFORK) != 0)
        die("mmap");
    return p;
}

/* From RAM to RAM copies of the same bytes, for the streaming anchor. */
typedef struct copy_bufs {
    char *buf, *src, *dst;
} copy_bufs;

static void streaming(const place_mode *m, int reps, const copy_bufs *b)
{
    long batch = bench_iters(8192); /* 512 MiB per repetition */
    chan st[ST_N];
    long st_n[ST_N] = {batch / 4, batch / 2, batch / 2, batch, batch};
    pid_t st_pid[ST_N];
    double st_v[ST_N + 1][64];
    for (int k = 0; k < ST_N; k++) {
        st[k] = k == ST_PIPE     ? make_pipe_chan("pipe", 0)
                : k == ST_PIPE1M ? make_pipe_chan("pipe 1 MiB", 1 << 20)
                : k == ST_SOCK   ? make_socket_chan()
                : k == ST_QUEUE  ? make_queue_chan()
                                 : make_crew_pipe_chan();
        st_pid[k] = start_child(&st[k], STREAM_MSG, st_n[k]);
    }
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < ST_N; k++) {
            stream_batch(&st[k], st_n[k], b->buf); /* its own warm-up: one full batch */
            st_v[k][r] = stream_batch(&st[k], st_n[k], b->buf);
        }
        memcpy_batch(b->src, b->dst, batch / 10 + 1);
        st_v[ST_N][r] = memcpy_batch(b->src, b->dst, batch);
    }
    bench_stat v[ST_N + 1];
    for (int k = ST_N - 1; k >= 0; k--) {
        finish(&st[k], st_pid[k]);
        v[k] = bench_stat_of(st_v[k], reps);
    }
    v[ST_N] = bench_stat_of(st_v[ST_N], reps);
    const char *g = "GiB/s";
    const char *goal = ">= 10 GiB/s; >= 3x";
    report("queue streaming", m, v[ST_QUEUE], g, "pipe", v[ST_PIPE], false, NULL);
    report("queue streaming", m, v[ST_QUEUE], g, "pipe 1 MiB buffer", v[ST_PIPE1M], false, NULL);
    report("queue streaming", m, v[ST_QUEUE], g, "socketpair", v[ST_SOCK], false, goal);
    report("queue streaming", m, v[ST_QUEUE], g, "memcpy, one thread, RAM", v[ST_N], false,
           ">= 1x");
    report("pipe streaming", m, v[ST_CPIPE], g, "socketpair", v[ST_SOCK], false, goal);
    report("pipe streaming", m, v[ST_CPIPE], g, "pipe 1 MiB buffer", v[ST_PIPE1M], false, NULL);
}

int main(int argc, char **argv)
{
    bench_child_dispatch(argc, argv);
    int reps = bench_reps(9);
    if (reps > 64)
        reps = 64;

    bench_group("queue and pipe: round trip between two processes (16-byte message)");
    for (int i = 0; i < N_MODES; i++) {
        if (!enter_mode(&modes[i])) {
            bench_missing(GROUP, modes[i].name, "not enough CPUs to pin");
            continue;
        }
        round_trips(&modes[i], reps);
        leave_mode();
    }

    copy_bufs b = {malloc(STREAM_MSG), span_alloc(), span_alloc()};
    if (!b.buf)
        die("malloc");
    memset(b.buf, 7, STREAM_MSG);
    memset(b.src, 1, MEMCPY_SPAN);
    memset(b.dst, 2, MEMCPY_SPAN);
    bench_group("queue and pipe: streaming 64 KiB messages between two processes");
    for (int i = 0; i < N_MODES; i++) {
        if (!enter_mode(&modes[i])) {
            bench_missing(GROUP, modes[i].name, "not enough CPUs to pin");
            continue;
        }
        streaming(&modes[i], reps, &b);
        leave_mode();
    }
    free(b.buf);
    munmap(b.src, MEMCPY_SPAN);
    munmap(b.dst, MEMCPY_SPAN);
    return 0;
}
