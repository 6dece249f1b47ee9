/* The shared fields a joinable queue adds (ring.h, version 4: flags, the
 * message counters puts / gets, pending_tail, unfinished, done_seq,
 * done_waiters) against a hostile peer that writes them through a mapping
 * of its own: no call crashes, join never waits past its timeout, and a
 * rewritten constant (flags) breaks the queue for good (CREW_EPROTO). Also
 * the settling of a put whose producer died between counting its task and
 * publishing it. */
#include "hostile_peer.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

typedef struct raw {
    crew_queue *q;
    crew__ring *r; /* the peer's mapping of the header */
    size_t len;
} raw;

static raw raw_new(int joinable)
{
    raw x = {0};
    crew_queue_options o = {.capacity = 1024, .joinable = joinable};
    CHECK_OK(crew_queue_create(&x.q, &o));
    int fd;
    CHECK_OK(crew_queue_dup_fd(x.q, &fd));
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    x.len = (size_t)st.st_size;
    x.r = mmap(NULL, x.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(x.r != MAP_FAILED);
    close(fd);
    return x;
}

static void raw_free(raw *x)
{
    CHECK_OK(crew_queue_destroy(x->q));
    munmap(x->r, x->len);
}

static size_t unfinished(crew_queue *q)
{
    size_t n;
    CHECK_OK(crew_queue_counts_get(q, NULL, &n));
    return n;
}

/* Every call of issue 14 on a broken queue says so, as the older ones do. */
static void expect_broken(crew_queue *q)
{
    size_t n;
    CHECK_ERR(crew_queue_put(q, "x", 1, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_task_done(q), CREW_EPROTO);
    CHECK_ERR(crew_queue_join(q, 0), CREW_EPROTO);
    CHECK_ERR(crew_queue_join(q, 0.01), CREW_EPROTO);
    CHECK_ERR(crew_queue_counts_get(q, &n, &n), CREW_EPROTO);
    CHECK_ERR(crew_queue_empty(q), CREW_EPROTO);
    CHECK_ERR(crew_queue_full(q), CREW_EPROTO);
    CHECK_ERR(crew_queue_joinable(q), CREW_EPROTO);
    CHECK_ERR(crew_queue_close_now(q, &n), CREW_EPROTO);
}

/* A count that never reaches 0 only makes join time out; one forged to 0
 * makes it return (a peer may forge messages; it may forge "done" too) and
 * task_done report CREW_ESTATE. Neither breaks the queue. */
static void test_unfinished_corrupted(void)
{
    raw x = raw_new(1);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    atomic_store(&x.r->unfinished, UINT64_MAX - 1); /* huge, no PENDING */
    double t0 = hp_now();
    CHECK_ERR(crew_queue_join(x.q, 0.05), CREW_ETIMEDOUT);
    double took = hp_now() - t0;
    CHECK(took >= 0.049 && took < 2);
    CHECK_OK(crew_queue_task_done(x.q));
    CHECK_ERR(crew_queue_join(x.q, 0), CREW_ETIMEDOUT);
    atomic_store(&x.r->unfinished, 0);
    CHECK_ERR(crew_queue_task_done(x.q), CREW_ESTATE);
    CHECK_OK(crew_queue_join(x.q, 0));
    /* A stray PENDING bit (no put is pending): puts still count, join
     * still ends by its deadline, nothing breaks. */
    atomic_store(&x.r->unfinished, 1);
    CHECK_OK(crew_queue_put(x.q, "b", 1, 0));
    CHECK(unfinished(x.q) >= 1);
    CHECK_ERR(crew_queue_join(x.q, 0.02), CREW_ETIMEDOUT);
    CHECK_EQ(crew_queue_empty(x.q), 0);
    raw_free(&x);
}

typedef struct flipper {
    crew__ring *r;
    _Atomic int stop;
} flipper;

static void *flip_done_seq(void *arg)
{
    flipper *f = arg;
    while (!atomic_load(&f->stop)) {
        atomic_fetch_add(&f->r->done_seq, 1);
        atomic_store(&f->r->done_waiters, 0);
        syscall(SYS_futex, &f->r->done_seq, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
    return NULL;
}

/* A peer that bumps done_seq and wakes the joiner without end: join looks
 * at its deadline on every turn, so it still returns on time. */
static void test_done_seq_flipped(void)
{
    raw x = raw_new(1);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    flipper f = {.r = x.r};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, flip_done_seq, &f) == 0);
    double t0 = hp_now();
    CHECK_ERR(crew_queue_join(x.q, 0.1), CREW_ETIMEDOUT);
    double took = hp_now() - t0;
    atomic_store(&f.stop, 1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(took >= 0.099 && took < 2);
    raw_free(&x);
}

/* A producer that died holding prod_lock after counting its task: the next
 * put takes the lock over and settles the count -- withdrawn if the tail
 * never moved to pending_tail, kept (only PENDING cleared) if it did. */
static void test_settle_pending(void)
{
    pid_t dead = fork();
    CHECK(dead >= 0);
    if (dead == 0)
        _exit(0);
    CHECK_EQ(test_wait(dead), 0);
    uint64_t dead_word = (uint64_t)dead << 32 | (uint32_t)dead;

    raw x = raw_new(1);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0)); /* one real task */
    uint64_t t = atomic_load(&x.r->tail);
    /* Counted, never published. */
    x.r->pending_tail = t + 16;
    atomic_store(&x.r->unfinished, (uint64_t)2 << 1 | 1);
    atomic_store(&x.r->prod_lock, dead_word);
    CHECK_OK(crew_queue_put(x.q, "b", 1, 0));
    CHECK_EQ(unfinished(x.q), 2); /* a, b: the dead put's count withdrawn */
    CHECK_EQ(atomic_load(&x.r->unfinished) & 1, 0);
    /* Counted and published: the message is there, its count stays. */
    x.r->pending_tail = atomic_load(&x.r->tail);
    atomic_store(&x.r->unfinished, (uint64_t)2 << 1 | 1);
    atomic_store(&x.r->prod_lock, dead_word);
    CHECK_OK(crew_queue_put(x.q, "c", 1, 0));
    CHECK_EQ(unfinished(x.q), 3);
    CHECK_EQ(atomic_load(&x.r->unfinished) & 1, 0);
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(x.q, &st));
    CHECK_EQ(st.recoveries, 2);
    /* PENDING with no count at all (a peer's write): cleared, not wrapped. */
    atomic_store(&x.r->unfinished, 1);
    x.r->pending_tail = 8;
    atomic_store(&x.r->prod_lock, dead_word);
    CHECK_OK(crew_queue_put(x.q, "d", 1, 0));
    CHECK_EQ(unfinished(x.q), 1);
    raw_free(&x);
}

/* flags is a constant: rewritten, the queue breaks for every process; an
 * unknown bit at attach is a protocol error. */
static void test_flags_rewritten(void)
{
    for (int j = 0; j < 2; j++) {
        raw x = raw_new(j);
        x.r->flags = j ? 0 : CREW__RING_JOINABLE;
        CHECK_ERR(crew_queue_task_done(x.q), CREW_EPROTO);
        expect_broken(x.q);
        raw_free(&x);
    }
    raw x = raw_new(1);
    int fd;
    CHECK_OK(crew_queue_dup_fd(x.q, &fd));
    x.r->flags = CREW__RING_JOINABLE | 4;
    crew_queue *q2;
    CHECK_ERR(crew_queue_attach(&q2, fd), CREW_EPROTO);
    expect_broken(x.q);
    close(fd);
    raw_free(&x);
}

/* Forged message counters: the count stays within what the bytes allow
 * (never more than fit, 0 when empty), and nothing breaks. */
static void test_counters_forged(void)
{
    raw x = raw_new(0);
    size_t n;
    atomic_store(&x.r->puts, 1000);
    CHECK_OK(crew_queue_counts_get(x.q, &n, NULL));
    CHECK_EQ(n, 0); /* empty */
    CHECK_OK(crew_queue_put(x.q, "abc", 3, 0));
    CHECK_OK(crew_queue_counts_get(x.q, &n, NULL));
    CHECK_EQ(n, 2); /* 16 bytes queued: at most two records */
    atomic_store(&x.r->gets, UINT64_MAX);
    CHECK_OK(crew_queue_counts_get(x.q, &n, NULL));
    CHECK_EQ(n, 0);
    char buf[8];
    CHECK_OK(crew_queue_get(x.q, buf, sizeof buf, NULL, 0));
    CHECK_EQ(crew_queue_empty(x.q), 1);
    raw_free(&x);
}

/* close_now walks the queued records to drop them, checking each: a
 * corrupted record length breaks the queue instead of running wild. */
static void test_close_now_corrupt_record(void)
{
    raw x = raw_new(1);
    CHECK_OK(crew_queue_put(x.q, "abc", 3, 0));
    CHECK_OK(crew_queue_put(x.q, "def", 3, 0));
    uint8_t *data = (uint8_t *)x.r + CREW__RING_DATA_OFF;
    uint32_t bad = 1000; /* longer than what was committed */
    memcpy(data + 16, &bad, sizeof bad);
    size_t dropped = 7;
    CHECK_ERR(crew_queue_close_now(x.q, &dropped), CREW_EPROTO);
    CHECK_EQ(dropped, 0);
    expect_broken(x.q);
    raw_free(&x);
}

/* Breaking wakes a joiner at once (not at its deadline). */
static void *join_long(void *arg)
{
    return (void *)(intptr_t)crew_queue_join(arg, 30);
}

static void test_break_wakes_joiner(void)
{
    raw x = raw_new(1);
    CHECK_OK(crew_queue_put(x.q, "a", 1, 0));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, join_long, x.q) == 0);
    while (atomic_load(&x.r->done_waiters) == 0)
        sched_yield();
    double t0 = hp_now();
    x.r->cap = 8; /* a constant rewritten: the next call breaks the ring */
    size_t n;
    CHECK_ERR(crew_queue_counts_get(x.q, &n, NULL), CREW_EPROTO);
    void *rc;
    CHECK(pthread_join(t, &rc) == 0);
    CHECK_ERR((int)(intptr_t)rc, CREW_EPROTO);
    CHECK(hp_now() - t0 < 5);
    raw_free(&x);
}

static const test_case cases[] = {
    TEST_CASE(test_unfinished_corrupted),
    TEST_CASE(test_done_seq_flipped),
    TEST_CASE(test_settle_pending),
    TEST_CASE(test_flags_rewritten),
    TEST_CASE(test_counters_forged),
    TEST_CASE(test_close_now_corrupt_record),
    TEST_CASE(test_break_wakes_joiner),
};
TEST_MAIN_NOHELPERS(cases)
