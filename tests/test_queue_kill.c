/* crew_queue under SIGKILL: a producer or consumer killed while it holds the
 * queue (inside a callback, deterministically), and producers/consumers
 * killed at random points of a busy run, in a loop. Afterwards the queue
 * must be consistent (every message intact, none twice, at most one lost per
 * killed consumer) and everyone else must have kept going. */
#include "crew_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

// CREW_TEST_TIMEOUT 120
// CREW_TEST_LABEL stress

static void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

/* ------------------------------------------------------------ holders */

static int g_signal_fd = -1;

/* Inside a callback, i.e. holding the queue's lock: tell the parent, then
 * wait to be killed. */
static void stall(void)
{
    CHECK(write(g_signal_fd, "!", 1) == 1);
    for (;;)
        pause();
}
static void fill_and_stall(void *dst, size_t len, void *arg)
{
    memset(dst, 0xee, len / 2); /* half a message written, then death */
    stall();
}
static void read_and_stall(const void *msg, size_t len, void *arg) { stall(); }

static pid_t start_staller(crew_queue *q, int consumer)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        g_signal_fd = fds[1];
        if (consumer)
            crew_queue_get_with(q, read_and_stall, NULL, CREW_FOREVER);
        else
            crew_queue_put_with(q, 100, fill_and_stall, NULL, CREW_FOREVER);
        _exit(1);
    }
    close(fds[1]);
    char c;
    CHECK(read(fds[0], &c, 1) == 1); /* it is inside the callback now */
    close(fds[0]);
    return pid;
}

typedef struct put_arg {
    crew_queue *q;
    int rc;
} put_arg;

static void *blocked_put(void *p)
{
    put_arg *a = p;
    a->rc = crew_queue_put(a->q, "after", 5, CREW_FOREVER);
    return NULL;
}

static void test_producer_killed_holding(void)
{
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_OK(crew_queue_put(q, "before", 6, 0));
    pid_t pid = start_staller(q, 0);
    /* A put from this process blocks behind the stalled producer... */
    CHECK_ERR(crew_queue_put(q, "x", 1, 0.05), CREW_ETIMEDOUT);
    put_arg a = {q, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_put, &a) == 0);
    /* ...until it dies. Not reaped yet: a zombie holder must count as dead. */
    CHECK(kill(pid, SIGKILL) == 0);
    pthread_join(th, NULL);
    CHECK_OK(a.rc);
    int st = test_wait(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    crew_queue_status info;
    CHECK_OK(crew_queue_status_get(q, &info));
    CHECK_EQ(info.recoveries, 1);
    /* The half-written message never appeared. */
    char buf[128];
    size_t len;
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, 0));
    CHECK(len == 6 && memcmp(buf, "before", 6) == 0);
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, 0));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
    CHECK_ERR(crew_queue_try_get(q, buf, sizeof buf, &len), CREW_EAGAIN);
    CHECK_OK(crew_queue_destroy(q));
}

static void test_consumer_killed_holding(void)
{
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_OK(crew_queue_put(q, "first", 5, 0));
    CHECK_OK(crew_queue_put(q, "second", 6, 0));
    pid_t pid = start_staller(q, 1);
    char buf[16];
    size_t len;
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, 0.05), CREW_ETIMEDOUT);
    CHECK(kill(pid, SIGKILL) == 0);
    /* The consumer died before freeing its message: it is still first. */
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER));
    CHECK(len == 5 && memcmp(buf, "first", 5) == 0);
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, 0));
    CHECK(len == 6 && memcmp(buf, "second", 6) == 0);
    int st = test_wait(pid);
    CHECK(WIFSIGNALED(st));
    crew_queue_status info;
    CHECK_OK(crew_queue_status_get(q, &info));
    CHECK_EQ(info.recoveries, 1);
    CHECK_OK(crew_queue_destroy(q));
}

/* ------------------------------------------------------------ random kills */

enum { NPROD = 3, NCONS = 2, PER = 3000, MAXKIDS = 16 };

typedef struct board {
    _Atomic uint64_t ops;             /* every put/get of every child */
    _Atomic uint32_t sent[NPROD];     /* puts that returned 0 */
    _Atomic uint8_t seen[NPROD][PER]; /* times each message was received */
    _Atomic uint32_t corrupt;
} board;

typedef struct rmsg {
    uint32_t producer, seq, len, sum;
} rmsg;

static uint8_t pbyte(uint32_t p, uint32_t s, uint32_t i) { return (uint8_t)(p * 31 + s * 17 + i); }

static void producer_main(crew_queue *q, board *b, uint32_t p)
{
    uint8_t buf[2048 + sizeof(rmsg)];
    for (uint32_t s = 0; s < PER; s++) {
        rmsg h = {p, s, (s * 389u) % 2048u, 0};
        for (uint32_t i = 0; i < h.len; i++) {
            buf[sizeof h + i] = pbyte(p, s, i);
            h.sum += buf[sizeof h + i];
        }
        memcpy(buf, &h, sizeof h);
        int rc = crew_queue_put(q, buf, sizeof h + h.len, CREW_FOREVER);
        if (rc == CREW_ECLOSED)
            _exit(0);
        if (rc != 0)
            _exit(10);
        atomic_fetch_add(&b->sent[p], 1);
        atomic_fetch_add(&b->ops, 1);
    }
    _exit(0);
}

static void consumer_main(crew_queue *q, board *b)
{
    uint8_t buf[2048 + sizeof(rmsg)];
    for (;;) {
        size_t len;
        int rc = crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER);
        if (rc == CREW_EOF)
            _exit(0);
        if (rc != 0)
            _exit(11);
        rmsg h;
        memcpy(&h, buf, sizeof h);
        uint32_t sum = 0;
        bool ok = len >= sizeof h && h.producer < NPROD && h.seq < PER &&
                  len == sizeof h + h.len;
        for (uint32_t i = 0; ok && i < h.len; i++) {
            ok = buf[sizeof h + i] == pbyte(h.producer, h.seq, i);
            sum += buf[sizeof h + i];
        }
        if (!ok || sum != h.sum) {
            atomic_fetch_add(&b->corrupt, 1);
            _exit(12);
        }
        atomic_fetch_add(&b->seen[h.producer][h.seq], 1);
        atomic_fetch_add(&b->ops, 1);
    }
}

typedef struct kid {
    pid_t pid;
    int role; /* 0..NPROD-1 producer p, -1 consumer */
    int killed;
} kid;

static pid_t fork_role(crew_queue *q, board *b, int role)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (role >= 0)
            producer_main(q, b, (uint32_t)role);
        consumer_main(q, b);
    }
    return pid;
}

static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

static void one_round(board *b, unsigned *recoveries)
{
    memset(b, 0, sizeof *b);
    crew_queue_options o = {.capacity = 16384};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    kid kids[MAXKIDS];
    int nk = 0;
    for (int p = 0; p < NPROD; p++)
        kids[nk++] = (kid){fork_role(q, b, p), p, 0};
    for (int c = 0; c < NCONS; c++)
        kids[nk++] = (kid){fork_role(q, b, -1), -1, 0};

    /* Kill 1-3 children, each after a random number of operations (the
     * shared counter is the clock: no sleeps). */
    int nkill = 1 + (int)(rnd() % 3), consumers_killed = 0;
    for (int k = 0; k < nkill; k++) {
        uint64_t target = atomic_load(&b->ops) + 1 + rnd() % 1500;
        int victim;
        do
            victim = (int)(rnd() % (uint32_t)nk);
        while (kids[victim].killed);
        while (atomic_load(&b->ops) < target) {
            /* Stop waiting once no producer runs: the rest may be idle. */
            int alive = 0;
            for (int i = 0; i < nk; i++) {
                siginfo_t si = {0};
                if (!kids[i].killed && kids[i].role >= 0 &&
                    waitid(P_PID, (id_t)kids[i].pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                    si.si_pid == 0)
                    alive++;
            }
            if (alive == 0)
                break;
            sched_yield();
        }
        CHECK(kill(kids[victim].pid, SIGKILL) == 0 || errno == ESRCH);
        kids[victim].killed = 1;
        if (kids[victim].role < 0)
            consumers_killed++;
        /* Always keep consumers around so producers can finish. */
        if (kids[victim].role < 0 && nk < MAXKIDS)
            kids[nk++] = (kid){fork_role(q, b, -1), -1, 0};
        /* Some killed children stay unreaped (zombies) while the rest run. */
        if (rnd() & 1)
            test_wait(kids[victim].pid);
        else
            kids[victim].killed = 2;
    }
    /* Producers that were not killed finish their quota. */
    for (int i = 0; i < nk; i++)
        if (kids[i].role >= 0 && !kids[i].killed) {
            int st = test_wait(kids[i].pid);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                TEST_FAIL("producer exited with status %#x", st);
        }
    CHECK_OK(crew_queue_close(q));
    for (int i = 0; i < nk; i++) {
        if (kids[i].role < 0 && !kids[i].killed) {
            int st = test_wait(kids[i].pid);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                TEST_FAIL("consumer exited with status %#x", st);
        }
        if (kids[i].killed == 2)
            test_wait(kids[i].pid);
    }
    CHECK_EQ(atomic_load(&b->corrupt), 0);

    /* Consistency: nothing twice; every acknowledged message arrived, except
     * at most one per killed consumer; a killed producer's unacknowledged
     * last message may or may not have arrived; nothing beyond that. */
    int lost = 0;
    for (int p = 0; p < NPROD; p++) {
        uint32_t sent = atomic_load(&b->sent[p]);
        bool producer_killed = false;
        for (int i = 0; i < nk; i++)
            if (kids[i].role == p && kids[i].killed)
                producer_killed = true;
        for (uint32_t s = 0; s < PER; s++) {
            int n = atomic_load(&b->seen[p][s]);
            CHECK(n <= 1);
            if (s < sent)
                lost += n == 0;
            else if (s == sent && producer_killed)
                ; /* in flight when killed: either way */
            else if (n != 0)
                TEST_FAIL("producer %d message %u arrived but was never sent", p, s);
        }
    }
    if (lost > consumers_killed)
        TEST_FAIL("%d messages lost with %d consumers killed", lost, consumers_killed);

    /* The queue still works, and is empty. */
    crew_queue_status info;
    CHECK_OK(crew_queue_status_get(q, &info));
    CHECK_EQ(info.used, 0);
    *recoveries += info.recoveries;
    CHECK_OK(crew_queue_destroy(q));
}

static void test_random_kills(void)
{
    board *b = shared_alloc(sizeof(board));
    int fds = test_count_fds(), maps = test_count_maps();
    unsigned recoveries = 0;
    rnd_state ^= (uint32_t)getpid();
    long rounds = test_scale(100);
    if (rounds < 40)
        rounds = 40; /* rounds are cheap: keep many even under sanitizers */
    for (long r = 0; r < rounds; r++)
        one_round(b, &recoveries);
    printf("# %ld rounds, %u locks recovered from killed holders\n", rounds, recoveries);
    CHECK_EQ(test_count_children(), 0);
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_maps(), maps);
    munmap(b, sizeof *b);
}

static const test_case cases[] = {
    TEST_CASE(test_producer_killed_holding),
    TEST_CASE(test_consumer_killed_holding),
    TEST_CASE(test_random_kills),
};
TEST_MAIN_NOHELPERS(cases)
