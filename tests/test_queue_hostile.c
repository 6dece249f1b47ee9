/* crew_queue and crew_pipe against a hostile peer: one that holds the memfd
 * and resizes it or writes garbage into it. The memfd cannot be resized
 * (sealed; EPERM for the peer) and attach refuses an unsealed one; each
 * field a call reads from shared memory is corrupted in turn and the call
 * must return CREW_EPROTO, as must every later call on the object; lock
 * words naming dead, live and foreign threads; waiters woken by the break;
 * then a short run of the random corrupter (hostile_peer.h; the long run is
 * test_queue_hostile_soak.c). The peer's writes go through a mapping of its
 * own, as another process's would. */
#include "hostile_peer.h"

#include <pthread.h>

/* ------------------------------------------------------------ helpers */

/* The peer's view: a mapping of the memfd behind fd. */
static uint8_t *raw_map(int fd, size_t *len)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    *len = (size_t)st.st_size;
    uint8_t *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

typedef struct raw_queue {
    crew_queue *q;
    crew__ring *r; /* the peer's mapping of the ring header */
    uint8_t *data; /* ... and of the data area */
    size_t len;
    uint64_t cap;
} raw_queue;

static raw_queue raw_queue_new(size_t capacity)
{
    raw_queue x = {0};
    crew_queue_options o = {.capacity = capacity};
    CHECK_OK(crew_queue_create(&x.q, &o));
    int fd;
    CHECK_OK(crew_queue_dup_fd(x.q, &fd));
    x.r = (crew__ring *)raw_map(fd, &x.len);
    close(fd);
    x.data = (uint8_t *)x.r + CREW__RING_DATA_OFF;
    x.cap = x.r->cap;
    return x;
}

static void raw_queue_free(raw_queue *x)
{
    CHECK_OK(crew_queue_destroy(x->q));
    munmap(x->r, x->len);
}

static void set_record_len(raw_queue *x, uint64_t off, uint32_t len)
{
    memcpy(x->data + off, &len, sizeof len);
}

static void noop_fill(void *dst, size_t len, void *arg) { (void)dst, (void)len, (void)arg; }
static void noop_read(const void *msg, size_t len, void *arg) { (void)msg, (void)len, (void)arg; }

/* Every call on a broken queue says so (destroy excepted: it frees). */
static void expect_queue_broken(crew_queue *q)
{
    char buf[64];
    size_t len;
    crew_queue_status st;
    int fd;
    CHECK_ERR(crew_queue_put(q, "x", 1, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_put(q, "x", 1, 0.01), CREW_EPROTO);
    CHECK_ERR(crew_queue_try_put(q, "x", 1), CREW_EPROTO);
    CHECK_ERR(crew_queue_put_with(q, 1, noop_fill, NULL, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER), CREW_EPROTO);
    CHECK_ERR(crew_queue_try_get(q, buf, sizeof buf, &len), CREW_EPROTO);
    CHECK_ERR(crew_queue_get_with(q, noop_read, NULL, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_status_get(q, &st), CREW_EPROTO);
    CHECK_ERR(crew_queue_dup_fd(q, &fd), CREW_EPROTO);
    CHECK_ERR(crew_queue_close(q), CREW_EPROTO);
}

/* Fills x with n messages of `len` bytes, then takes them out again, so that
 * head == tail at offset n * record size. */
static void advance(raw_queue *x, int n, size_t len)
{
    char buf[256] = {0};
    size_t got;
    for (int i = 0; i < n; i++)
        CHECK_OK(crew_queue_put(x->q, buf, len, 0));
    for (int i = 0; i < n; i++)
        CHECK_OK(crew_queue_get(x->q, buf, sizeof buf, &got, 0));
}

/* ------------------------------------------------------------ seals */

/* A peer process holding the fd tries to resize the memfd and to add or
 * change seals: every attempt must fail with EPERM. */
static int helper_truncate(int argc, char **argv)
{
    CHECK(argc == 1);
    int fd = atoi(argv[0]);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    CHECK_EQ(hp_try_resize(fd, (size_t)st.st_size), 0);
    errno = 0;
    CHECK(fallocate(fd, 0, st.st_size, 4096) != 0 && errno == EPERM);
    errno = 0;
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) != 0 && errno == EPERM);
    return 0;
}

static void check_peer_cannot_resize(int fd)
{
    int seals = fcntl(fd, F_GET_SEALS);
    CHECK(seals >= 0);
    CHECK_EQ(seals & (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
             F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    int st = test_wait(test_spawn_helper("helper_truncate", arg, NULL));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_memfds_are_sealed(void)
{
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    int fd;
    CHECK_OK(crew_queue_dup_fd(q, &fd));
    check_peer_cannot_resize(fd);
    close(fd);
    char buf[8];
    size_t len;
    CHECK_OK(crew_queue_put(q, "still", 5, 0));
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, 0));
    CHECK_EQ(len, 5);
    CHECK_OK(crew_queue_destroy(q));

    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_OK(crew_pipe_dup_fd(b, &fd));
    check_peer_cannot_resize(fd);
    close(fd);
    CHECK_OK(crew_pipe_send(a, "still", 5, 0));
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
    CHECK_EQ(len, 5);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

/* A copy of a good image in a memfd that a peer could truncate. */
static int unsealed_copy(int fd, unsigned flags, int seals)
{
    size_t len;
    uint8_t *src = raw_map(fd, &len);
    int c = memfd_create("hostile", flags);
    CHECK(c >= 0);
    CHECK(ftruncate(c, (off_t)len) == 0);
    if (seals)
        CHECK(fcntl(c, F_ADD_SEALS, seals) == 0);
    CHECK(pwrite(c, src, len, 0) == (ssize_t)len);
    munmap(src, len);
    return c;
}

static void test_attach_refuses_unsealed(void)
{
    crew_queue *q, *q2 = (crew_queue *)&q;
    CHECK_OK(crew_queue_create(&q, NULL));
    int fd;
    CHECK_OK(crew_queue_dup_fd(q, &fd));
    CHECK_OK(crew_queue_attach(&q2, fd)); /* the real one is accepted */
    CHECK_OK(crew_queue_destroy(q2));
    int u = unsealed_copy(fd, MFD_CLOEXEC, 0);
    CHECK_ERR(crew_queue_attach(&q2, u), CREW_EINVAL);
    CHECK(q2 == NULL);
    close(u);
    /* Sealed against growing only: still shrinkable, still refused. */
    u = unsealed_copy(fd, MFD_CLOEXEC | MFD_ALLOW_SEALING, F_SEAL_GROW);
    CHECK_ERR(crew_queue_attach(&q2, u), CREW_EINVAL);
    close(u);
    close(fd);
    CHECK_OK(crew_queue_destroy(q));

    crew_pipe *a, *b, *p;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_OK(crew_pipe_dup_fd(a, &fd));
    u = unsealed_copy(fd, MFD_CLOEXEC, 0); /* file offset 0 names end 0 */
    CHECK_ERR(crew_pipe_attach(&p, u), CREW_EINVAL);
    close(u);
    u = unsealed_copy(fd, MFD_CLOEXEC | MFD_ALLOW_SEALING, F_SEAL_SHRINK | F_SEAL_SEAL);
    CHECK_ERR(crew_pipe_attach(&p, u), CREW_EINVAL);
    close(u);
    close(fd);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

/* ------------------------------------------------------------ one field at a time */

static void test_zero_capacity(void)
{
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    x.r->cap = 0; /* was a division by zero (SIGFPE) */
    CHECK_ERR(crew_queue_put(x.q, "b", 1, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    CHECK(atomic_load(&x.r->broken) != 0); /* marked for every process */
    raw_queue_free(&x);
}

static void test_huge_capacity(void)
{
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    x.r->cap = 1ull << 62; /* offsets would land far outside the mapping */
    char buf[8];
    size_t len;
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

static void test_max_message_and_magic(void)
{
    raw_queue x = raw_queue_new(1024);
    x.r->max_msg = x.cap * 4; /* would let a record run past the end */
    CHECK_ERR(crew_queue_put(x.q, "a", 1, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    x = raw_queue_new(1024);
    x.r->magic ^= 1;
    crew_queue_status st;
    CHECK_ERR(crew_queue_status_get(x.q, &st), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

static void test_tail_past_capacity(void)
{
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    atomic_store(&x.r->tail, atomic_load(&x.r->head) + x.cap + 8);
    char buf[8];
    size_t len;
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    /* A producer finds it when it needs room: head_seen is a hint, head
     * is re-read and checked. */
    x = raw_queue_new(64);
    char big[48] = {0};
    CHECK_OK(crew_queue_put(x.q, big, sizeof big, 0)); /* 56 of 64 bytes */
    atomic_store(&x.r->tail, (uint64_t)200);
    CHECK_ERR(crew_queue_put(x.q, "b", 1, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

static void test_head_past_tail(void)
{
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    uint64_t t = atomic_load(&x.r->tail);
    atomic_store(&x.r->head, t + 8); /* was: a skip loop with no end */
    char buf[8];
    size_t len;
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    x = raw_queue_new(64);
    char big[48] = {0};
    CHECK_OK(crew_queue_put(x.q, big, sizeof big, 0));
    atomic_store(&x.r->head, atomic_load(&x.r->tail) + 64);
    CHECK_ERR(crew_queue_put(x.q, "b", 1, 0), CREW_EPROTO); /* needs room: reads head */
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    /* Head just below 2^64, tail just above 0: tail - head is small (it
     * wraps), only "head <= tail" catches it. */
    x = raw_queue_new(1024);
    atomic_store(&x.r->head, ~(uint64_t)7);
    atomic_store(&x.r->tail, (uint64_t)8);
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

static void test_misaligned_offsets(void)
{
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    atomic_fetch_add(&x.r->tail, 4);
    CHECK_ERR(crew_queue_put(x.q, "b", 1, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    atomic_store(&x.r->head, (uint64_t)4); /* a record header at offset 4 */
    char buf[8];
    size_t len;
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

static void test_record_length(void)
{
    char buf[1024];
    size_t len;
    /* Longer than max_message. */
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    set_record_len(&x, 0, (uint32_t)x.r->max_msg + 1);
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    /* Beyond what was committed (reading it would read the producer's
     * half-written next record, or stale bytes). */
    x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "12345678", 8, 0)); /* 16 bytes committed */
    set_record_len(&x, 0, 40);
    CHECK_ERR(crew_queue_get_with(x.q, noop_read, NULL, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    /* Past the end of the data area (records never wrap). */
    x = raw_queue_new(64);
    advance(&x, 3, 8); /* head == tail at offset 48 */
    atomic_store(&x.r->tail, atomic_load(&x.r->head) + 32);
    set_record_len(&x, 48, 24);
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

static void test_skip_records(void)
{
    char buf[64];
    size_t len;
    /* A SKIP at offset 0 (never written: a record always fits there), in
     * a full ring, where it would pass for a SKIP of all that is queued. */
    raw_queue x = raw_queue_new(64);
    for (int i = 0; i < 4; i++)
        CHECK_OK(crew_queue_put(x.q, "a", 1, 0)); /* 4 x 16 bytes: full */
    set_record_len(&x, 0, 0xffffffffu);
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    /* A SKIP longer than what was committed. */
    x = raw_queue_new(64);
    advance(&x, 3, 8);
    CHECK_OK(crew_queue_put(x.q, NULL, 0, 0)); /* 8 bytes at offset 48 */
    set_record_len(&x, 48, 0xffffffffu);     /* would skip 16 */
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);

    /* A real SKIP still works (a 40-byte record from offset 48 wraps). */
    x = raw_queue_new(64);
    advance(&x, 3, 8);
    char big[32] = {1};
    CHECK_OK(crew_queue_put(x.q, big, sizeof big, 0));
    CHECK_OK(crew_queue_get(x.q, buf, sizeof buf, &len, 0));
    CHECK_EQ(len, sizeof big);
    raw_queue_free(&x);
}

/* Broken is for every handle, and stays broken for a handle that saw it
 * even when the peer puts everything back; a process that attaches after
 * the repair sees a working queue (it never saw the break). */
static void test_broken_stays_broken(void)
{
    raw_queue x = raw_queue_new(1024);
    int fd;
    CHECK_OK(crew_queue_dup_fd(x.q, &fd));
    crew_queue *other;
    CHECK_OK(crew_queue_attach(&other, fd));
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    uint64_t tail = atomic_load(&x.r->tail);
    atomic_store(&x.r->tail, tail + 4);
    char buf[8];
    size_t len;
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_put(other, "b", 1, 0), CREW_EPROTO); /* the shared flag */
    crew_queue *late;
    CHECK_ERR(crew_queue_attach(&late, fd), CREW_EPROTO);
    /* The peer repairs the header and clears the flag. */
    atomic_store(&x.r->tail, tail);
    atomic_store(&x.r->broken, 0);
    expect_queue_broken(x.q);
    expect_queue_broken(other);
    CHECK_OK(crew_queue_attach(&late, fd));
    CHECK_OK(crew_queue_get(late, buf, sizeof buf, &len, 0));
    CHECK_EQ(len, 1);
    CHECK_OK(crew_queue_destroy(late));
    CHECK_OK(crew_queue_destroy(other));
    close(fd);
    raw_queue_free(&x);
}

static void test_attach_checks_header(void)
{
    raw_queue x = raw_queue_new(1024);
    int fd;
    CHECK_OK(crew_queue_dup_fd(x.q, &fd));
    crew_queue *q2 = (crew_queue *)&x;
    /* Not a crew ring (any more): magic, or a ring of another version. */
    x.r->version = 1;
    CHECK_ERR(crew_queue_attach(&q2, fd), CREW_EINVAL);
    CHECK(q2 == NULL);
    x.r->version = CREW__RING_VERSION;
    /* A crew ring with impossible geometry: a protocol error, and the
     * attach marks it broken for the processes already using it. */
    uint32_t lo = x.r->ring_size_lo;
    x.r->ring_size_lo = lo + 4096;
    CHECK_ERR(crew_queue_attach(&q2, fd), CREW_EPROTO);
    x.r->ring_size_lo = lo;
    CHECK_ERR(crew_queue_put(x.q, "a", 1, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    close(fd);
    raw_queue_free(&x);

    x = raw_queue_new(1024);
    CHECK_OK(crew_queue_dup_fd(x.q, &fd));
    x.r->cap = 0;
    CHECK_ERR(crew_queue_attach(&q2, fd), CREW_EPROTO);
    x.r->cap = 1ull << 50;
    CHECK_ERR(crew_queue_attach(&q2, fd), CREW_EPROTO);
    close(fd);
    raw_queue_free(&x);
}

/* ------------------------------------------------------------ lock words */

/* A child that stays alive (blocked on a pipe) until released: a live
 * thread id that has nothing to do with the queue. */
static pid_t live_stranger(int *release_fd)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[1]);
        char c;
        ssize_t n = read(fds[0], &c, 1);
        _exit(n == 0 ? 0 : 1);
    }
    close(fds[0]);
    *release_fd = fds[1];
    return pid;
}

/* The lock word naming the main thread of process pid (a ring's locks are
 * crew_lock words: pid << 32 | tid). */
static uint64_t lock_word(pid_t pid) { return (uint64_t)pid << 32 | (uint32_t)pid; }

static void test_lock_word_dead_or_foreign(void)
{
    raw_queue x = raw_queue_new(1024);
    /* A thread id that is gone (a reaped child): taken over. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    CHECK_EQ(test_wait(pid), 0);
    atomic_store(&x.r->prod_lock, lock_word(pid));
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    /* No thread at all: pid 0 with only the waiters bit (a special state
     * of a crew_lock, which no ring lock ever holds); an id above any pid. */
    atomic_store(&x.r->cons_lock, 1ull << 30);
    char buf[8];
    size_t len;
    CHECK_OK(crew_queue_get(x.q, buf, sizeof buf, &len, 0));
    atomic_store(&x.r->prod_lock, (uint64_t)0x7fffffff << 32 | 0x3fffffffu);
    CHECK_OK(crew_queue_put(x.q, "b", 1, 0));
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(x.q, &st));
    CHECK_EQ(st.recoveries, 3);
    raw_queue_free(&x);
}

static void test_lock_word_live_stranger(void)
{
    raw_queue x = raw_queue_new(1024);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    int release;
    pid_t pid = live_stranger(&release);
    atomic_store(&x.r->prod_lock, lock_word(pid));
    atomic_store(&x.r->cons_lock, lock_word(pid));
    /* Blocks like a held lock: EAGAIN for a poll, ETIMEDOUT on time. */
    double t0 = hp_now();
    CHECK_ERR(crew_queue_try_put(x.q, "b", 1), CREW_EAGAIN);
    char buf[8];
    size_t len;
    CHECK_ERR(crew_queue_try_get(x.q, buf, sizeof buf, &len), CREW_EAGAIN);
    CHECK(hp_now() - t0 < hp_slack());
    t0 = hp_now();
    CHECK_ERR(crew_queue_put(x.q, "b", 1, 0.05), CREW_ETIMEDOUT);
    double took = hp_now() - t0;
    CHECK(took >= 0.05 && took < 0.05 + hp_slack());
    t0 = hp_now();
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0.05), CREW_ETIMEDOUT);
    took = hp_now() - t0;
    CHECK(took >= 0.05 && took < 0.05 + hp_slack());
    /* close has no timeout: it waits a bounded time, then closes anyway. */
    t0 = hp_now();
    CHECK_OK(crew_queue_close(x.q));
    took = hp_now() - t0;
    CHECK(took >= HP_CLOSE_BOUND * 0.9 && took < HP_CLOSE_BOUND + hp_slack());
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(x.q, &st));
    CHECK(st.closed);
    /* The stranger exits: its "locks" are taken over, the close holds. */
    close(release);
    CHECK_EQ(test_wait(pid), 0);
    CHECK_ERR(crew_queue_put(x.q, "c", 1, 0), CREW_ECLOSED);
    CHECK_OK(crew_queue_get(x.q, buf, sizeof buf, &len, 0));
    CHECK_ERR(crew_queue_get(x.q, buf, sizeof buf, &len, 0), CREW_EOF);
    raw_queue_free(&x);
}

/* The peer rewrites the lock word while we hold it: our unlock finds
 * someone else's id there (it was an assertion that killed the process). */
static crew__ring *g_ring;
static void fill_and_steal(void *dst, size_t len, void *arg)
{
    (void)arg;
    memset(dst, 1, len);
    atomic_store(&g_ring->prod_lock, (uint64_t)0x7ffffff0 << 32 | 0x3ffffff0u);
}

static void test_lock_word_rewritten_while_held(void)
{
    raw_queue x = raw_queue_new(1024);
    g_ring = x.r;
    CHECK_ERR(crew_queue_put_with(x.q, 8, fill_and_steal, NULL, 0), CREW_EPROTO);
    expect_queue_broken(x.q);
    raw_queue_free(&x);
}

/* ------------------------------------------------------------ waiters */

typedef struct waiter {
    crew_queue *q;
    int rc;
} waiter;

static void *wait_forever(void *p)
{
    waiter *w = p;
    char buf[8];
    size_t len;
    w->rc = crew_queue_get(w->q, buf, sizeof buf, &len, CREW_FOREVER);
    return NULL;
}

/* A consumer asleep with no timeout wakes with CREW_EPROTO when another
 * process finds the queue corrupted (the watchdog catches it if not). */
static void test_break_wakes_waiters(void)
{
    raw_queue x = raw_queue_new(1024);
    waiter w = {x.q, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, wait_forever, &w) == 0);
    /* Wait until it sleeps on the data event (no sleep() as a signal). */
    while (atomic_load(&x.r->data_waiters) == 0)
        sched_yield();
    atomic_fetch_add(&x.r->tail, 4); /* tail moves: the waiter would look */
    /* ...but the first to look is a producer, and it breaks the queue. */
    CHECK_ERR(crew_queue_put(x.q, "a", 1, 0), CREW_EPROTO);
    pthread_join(th, NULL);
    CHECK_ERR(w.rc, CREW_EPROTO);
    raw_queue_free(&x);
}

/* ------------------------------------------------------------ pipes */

typedef struct raw_pipe {
    crew_pipe *a, *b;
    uint8_t *base;
    hp_pipe_hdr *h;
    crew__ring *r[2];
    size_t len;
} raw_pipe;

static raw_pipe raw_pipe_new(size_t capacity)
{
    raw_pipe x = {0};
    crew_pipe_options o = {.capacity = capacity};
    CHECK_OK(crew_pipe_create(&x.a, &x.b, &o));
    int fd;
    CHECK_OK(crew_pipe_dup_fd(x.a, &fd));
    x.base = raw_map(fd, &x.len);
    close(fd);
    x.h = (hp_pipe_hdr *)x.base;
    CHECK(x.h->magic == HP_PIPE_MAGIC && x.h->total == x.len); /* the mirror is right */
    for (int i = 0; i < 2; i++)
        x.r[i] = (crew__ring *)(x.base + x.h->ring_off[i]);
    return x;
}

static void raw_pipe_free(raw_pipe *x)
{
    CHECK_OK(crew_pipe_destroy(x->a));
    CHECK_OK(crew_pipe_destroy(x->b));
    munmap(x->base, x->len);
}

static void expect_pipe_broken(crew_pipe *p)
{
    char buf[64];
    size_t len;
    int fd;
    CHECK_ERR(crew_pipe_send(p, "x", 1, 0), CREW_EPROTO);
    CHECK_ERR(crew_pipe_send(p, "x", 1, 0.01), CREW_EPROTO);
    CHECK_ERR(crew_pipe_recv(p, buf, sizeof buf, &len, 0), CREW_EPROTO);
    CHECK_ERR(crew_pipe_recv(p, buf, sizeof buf, &len, CREW_FOREVER), CREW_EPROTO);
    CHECK_ERR(crew_pipe_recv_with(p, noop_read, NULL, 0), CREW_EPROTO);
    CHECK_ERR(crew_pipe_dup_fd(p, &fd), CREW_EPROTO);
    CHECK_ERR(crew_pipe_close(p), CREW_EPROTO);
}

/* Ring offsets are read at attach only, and must be the layout create
 * makes (they were trusted: a misaligned ring header under UBSan). */
static void test_pipe_ring_offsets(void)
{
    raw_pipe x = raw_pipe_new(1024);
    int fd;
    CHECK_OK(crew_pipe_dup_fd(x.b, &fd));
    uint64_t off1 = x.h->ring_off[1];
    x.h->ring_off[1] = off1 + 8;
    char buf[8];
    size_t len;
    CHECK_OK(crew_pipe_send(x.a, "a", 1, 0)); /* handles keep their own offsets */
    CHECK_OK(crew_pipe_recv(x.b, buf, sizeof buf, &len, 0));
    crew_pipe *p = (crew_pipe *)&x;
    CHECK_ERR(crew_pipe_attach(&p, fd), CREW_EPROTO);
    CHECK(p == NULL);
    expect_pipe_broken(x.a); /* the attach marked it broken */
    expect_pipe_broken(x.b);
    x.h->ring_off[1] = 1ull << 60; /* destroy must not read it either */
    close(fd);
    raw_pipe_free(&x);

    x = raw_pipe_new(1024);
    CHECK_OK(crew_pipe_dup_fd(x.a, &fd));
    x.h->ring_off[0] = x.h->ring_off[1]; /* two ends on one ring */
    CHECK_ERR(crew_pipe_attach(&p, fd), CREW_EPROTO);
    close(fd);
    raw_pipe_free(&x);

    x = raw_pipe_new(1024);
    CHECK_OK(crew_pipe_dup_fd(x.a, &fd));
    x.h->total += 4096;
    CHECK_ERR(crew_pipe_attach(&p, fd), CREW_EPROTO);
    x.h->total -= 4096;
    x.h->magic ^= 1; /* not a crew pipe any more */
    CHECK_ERR(crew_pipe_attach(&p, fd), CREW_EINVAL);
    close(fd);
    raw_pipe_free(&x);
}

/* A violation on one ring breaks the whole pipe, both ends, both ways. */
static void test_pipe_ring_fields(void)
{
    raw_pipe x = raw_pipe_new(1024);
    x.r[1]->cap = 0; /* b sends on ring 1 */
    CHECK_ERR(crew_pipe_send(x.b, "a", 1, 0), CREW_EPROTO);
    expect_pipe_broken(x.b);
    expect_pipe_broken(x.a);
    raw_pipe_free(&x);

    x = raw_pipe_new(1024);
    CHECK_OK(crew_pipe_send(x.a, "12345678", 8, 0));
    uint32_t huge = 1u << 30;
    memcpy((uint8_t *)x.r[0] + CREW__RING_DATA_OFF, &huge, sizeof huge);
    char buf[64];
    size_t len;
    CHECK_ERR(crew_pipe_recv(x.b, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_pipe_broken(x.a);
    /* Cleared flags do not repair it for these handles. */
    x.h->broken = 0;
    atomic_store(&x.r[0]->broken, 0);
    atomic_store(&x.r[1]->broken, 0);
    expect_pipe_broken(x.a);
    expect_pipe_broken(x.b);
    raw_pipe_free(&x);

    x = raw_pipe_new(1024);
    x.h->broken = 1; /* a peer (or an attach) said so */
    CHECK_ERR(crew_pipe_recv(x.a, buf, sizeof buf, &len, 0), CREW_EPROTO);
    expect_pipe_broken(x.b);
    raw_pipe_free(&x);
}

/* ------------------------------------------------------------ random peer */

static void test_random_peer_short(void)
{
    hp_run run;
    hp_start(&run, 150, 4);
    hp_tally tq = {0}, tp = {0};
    hp_queue_rounds(&run, &tq);
    hp_report("queue", &run, &tq);
    hp_pipe_rounds(&run, &tp);
    hp_report("pipe", &run, &tp);
    hp_finish(&run);
    CHECK(tq.rounds > 0 && tp.rounds > 0);
}

static void test_no_leaks(void)
{
    int fds = test_count_fds(), maps = test_count_shm_maps();
    test_zero_capacity();
    test_pipe_ring_offsets();
    test_lock_word_rewritten_while_held();
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_shm_maps(), maps);
    CHECK_EQ(test_count_children(), 0);
}

static const test_case cases[] = {
    TEST_CASE(test_memfds_are_sealed),
    TEST_CASE(test_attach_refuses_unsealed),
    TEST_CASE(test_zero_capacity),
    TEST_CASE(test_huge_capacity),
    TEST_CASE(test_max_message_and_magic),
    TEST_CASE(test_tail_past_capacity),
    TEST_CASE(test_head_past_tail),
    TEST_CASE(test_misaligned_offsets),
    TEST_CASE(test_record_length),
    TEST_CASE(test_skip_records),
    TEST_CASE(test_broken_stays_broken),
    TEST_CASE(test_attach_checks_header),
    TEST_CASE(test_lock_word_dead_or_foreign),
    TEST_CASE(test_lock_word_live_stranger),
    TEST_CASE(test_lock_word_rewritten_while_held),
    TEST_CASE(test_break_wakes_waiters),
    TEST_CASE(test_pipe_ring_offsets),
    TEST_CASE(test_pipe_ring_fields),
    TEST_CASE(test_random_peer_short),
    TEST_CASE(test_no_leaks),
};
static const test_helper helpers[] = {
    TEST_HELPER(helper_truncate),
    TEST_HELPER(helper_hostile_corrupter),
};
TEST_MAIN(cases, helpers)
