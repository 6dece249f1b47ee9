/* crew_queue: semantics, timeouts, close/EOF, sizes, bad input, threads and
 * processes (fork and exec'd attach), zero-copy calls, leaks. The killed-peer
 * cases are in test_queue_kill.c. */
#include "crew_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

// CREW_TEST_TIMEOUT 120

/* ------------------------------------------------------------ helpers */

/* A message that proves its own integrity: producer, sequence, length and a
 * payload derived from them. */
typedef struct msg_head {
    uint32_t producer, seq, len, sum;
} msg_head;

static uint32_t payload_byte(uint32_t p, uint32_t s, uint32_t i) { return (p * 131 + s * 7 + i) & 0xff; }

static size_t make_msg(uint8_t *buf, uint32_t p, uint32_t s, uint32_t extra)
{
    msg_head h = {p, s, extra, 0};
    for (uint32_t i = 0; i < extra; i++) {
        buf[sizeof h + i] = (uint8_t)payload_byte(p, s, i);
        h.sum += buf[sizeof h + i];
    }
    memcpy(buf, &h, sizeof h);
    return sizeof h + extra;
}

static msg_head check_msg(const uint8_t *buf, size_t len)
{
    msg_head h;
    CHECK(len >= sizeof h);
    memcpy(&h, buf, sizeof h);
    CHECK_EQ(len, sizeof h + h.len);
    uint32_t sum = 0;
    for (uint32_t i = 0; i < h.len; i++) {
        CHECK_EQ(buf[sizeof h + i], payload_byte(h.producer, h.seq, i));
        sum += buf[sizeof h + i];
    }
    CHECK_EQ(sum, h.sum);
    return h;
}

static void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

/* ------------------------------------------------------------ cases */

static void test_basic_fifo(void)
{
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(q, &st));
    CHECK_EQ(st.capacity, 1 << 20);
    CHECK_EQ(st.max_message, (1 << 20) - 8);
    CHECK_EQ(st.used, 0);
    CHECK_EQ(st.closed, 0);

    char buf[64];
    size_t len = 99;
    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "message %d", i);
        CHECK_OK(crew_queue_put(q, buf, strlen(buf) + 1, CREW_FOREVER));
    }
    CHECK_OK(crew_queue_status_get(q, &st));
    CHECK(st.used > 0);
    for (int i = 0; i < 100; i++) {
        char want[64];
        snprintf(want, sizeof want, "message %d", i);
        CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER));
        CHECK_EQ(len, strlen(want) + 1);
        CHECK(strcmp(buf, want) == 0);
    }
    CHECK_ERR(crew_queue_try_get(q, buf, sizeof buf, &len), CREW_EAGAIN);
    CHECK_OK(crew_queue_status_get(q, &st));
    CHECK_EQ(st.used, 0);
    CHECK_OK(crew_queue_destroy(q));
}

static void test_zero_length_messages(void)
{
    /* Length 0 is a valid message (a signal with no payload); NULL is a
     * fine pointer for it, on both sides. */
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_OK(crew_queue_put(q, NULL, 0, 0));
    CHECK_OK(crew_queue_put(q, "x", 0, 0));
    size_t len = 7;
    CHECK_OK(crew_queue_get(q, NULL, 0, &len, 0));
    CHECK_EQ(len, 0);
    char c;
    CHECK_OK(crew_queue_get(q, &c, 1, &len, 0));
    CHECK_EQ(len, 0);
    CHECK_ERR(crew_queue_try_get(q, &c, 1, &len), CREW_EAGAIN);
    CHECK_OK(crew_queue_destroy(q));
}

static void test_bad_input(void)
{
    crew_queue *q = (crew_queue *)&q;
    CHECK_ERR(crew_queue_create(NULL, NULL), CREW_EINVAL);
    crew_queue_options o = {.capacity = (size_t)1 << 41};
    CHECK_ERR(crew_queue_create(&q, &o), CREW_EINVAL);
    CHECK(q == NULL);
    o = (crew_queue_options){.capacity = 1024, .max_message = 1024};
    CHECK_ERR(crew_queue_create(&q, &o), CREW_EINVAL); /* max_message > capacity - 8 */
    o = (crew_queue_options){.capacity = 1}; /* tiny: rounded up to 64 */
    CHECK_OK(crew_queue_create(&q, &o));
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(q, &st));
    CHECK_EQ(st.capacity, 64);
    CHECK_EQ(st.max_message, 56);
    char buf[64] = {0};
    size_t len;
    CHECK_ERR(crew_queue_put(NULL, buf, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_put(q, NULL, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_get(NULL, buf, 1, &len, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_get(q, NULL, 1, &len, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_put_with(q, 1, NULL, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_get_with(q, NULL, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_queue_close(NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_destroy(NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_status_get(q, NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_dup_fd(q, NULL), CREW_EINVAL);
    CHECK_ERR(crew_queue_attach(NULL, 0), CREW_EINVAL);
    crew_queue *q2;
    CHECK_ERR(crew_queue_attach(&q2, -1), CREW_EBADF);
    CHECK_ERR(crew_queue_attach(&q2, 0x7ffff), CREW_EBADF);
    int devnull = open("/dev/null", O_RDWR);
    CHECK_ERR(crew_queue_attach(&q2, devnull), CREW_EINVAL); /* not a queue */
    close(devnull);
    CHECK_OK(crew_queue_destroy(q));
}

static void test_oversize(void)
{
    crew_queue_options o = {.capacity = 4096};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    static char big[8192];
    /* Larger than capacity: refused, never truncated, queue untouched. */
    CHECK_ERR(crew_queue_put(q, big, 4089, CREW_FOREVER), CREW_E2BIG);
    CHECK_ERR(crew_queue_put(q, big, sizeof big, 0), CREW_E2BIG);
    /* The largest that fits goes through, even after the ring has moved. */
    CHECK_OK(crew_queue_put(q, "abc", 3, 0));
    size_t len;
    CHECK_OK(crew_queue_get(q, big, sizeof big, &len, 0));
    memset(big, 'z', 4088);
    CHECK_OK(crew_queue_put(q, big, 4088, 0));
    memset(big, 0, sizeof big);
    CHECK_OK(crew_queue_get(q, big, sizeof big, &len, 0));
    CHECK_EQ(len, 4088);
    CHECK(big[0] == 'z' && big[4087] == 'z');

    /* A buffer too small: E2BIG with the size needed; the message stays. */
    CHECK_OK(crew_queue_put(q, "hello world", 11, 0));
    char small[4];
    len = 0;
    CHECK_ERR(crew_queue_get(q, small, sizeof small, &len, 0), CREW_E2BIG);
    CHECK_EQ(len, 11);
    CHECK_ERR(crew_queue_get(q, small, sizeof small, NULL, 0), CREW_E2BIG);
    CHECK_OK(crew_queue_get(q, big, 11, &len, 0));
    CHECK(memcmp(big, "hello world", 11) == 0);

    /* max_message below capacity. */
    CHECK_OK(crew_queue_destroy(q));
    o = (crew_queue_options){.capacity = 4096, .max_message = 100};
    CHECK_OK(crew_queue_create(&q, &o));
    CHECK_ERR(crew_queue_put(q, big, 101, 0), CREW_E2BIG);
    CHECK_OK(crew_queue_put(q, big, 100, 0));
    CHECK_OK(crew_queue_destroy(q));
}

static void test_wrap_sizes(void)
{
    /* Sizes from 0 to most of the capacity through a small ring, so records
     * wrap, SKIP records appear, and the empty-ring wrap runs. */
    crew_queue_options o = {.capacity = 1000}; /* rounded to 1000 (8 | 1000) */
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    static uint8_t in[2048], out[2048];
    uint32_t rnd = 12345;
    long n = test_scale(20000);
    long queued = 0, next_get = 0;
    for (long i = 0; i < n; i++) {
        rnd = rnd * 1103515245 + 12345;
        uint32_t extra = (rnd >> 8) % 960; /* up to 976 bytes with the head */
        size_t len = make_msg(in, 0, (uint32_t)i, extra);
        int rc = crew_queue_try_put(q, in, len);
        if (rc == CREW_EAGAIN) {
            /* Full: drain one or two and retry. */
            size_t got;
            CHECK_OK(crew_queue_try_get(q, out, sizeof out, &got));
            CHECK_EQ(check_msg(out, got).seq, next_get++);
            queued--;
            i--;
            continue;
        }
        CHECK_OK(rc);
        queued++;
        if (rnd & 0x10000) {
            size_t got;
            CHECK_OK(crew_queue_try_get(q, out, sizeof out, &got));
            CHECK_EQ(check_msg(out, got).seq, next_get++);
            queued--;
        }
    }
    while (queued-- > 0) {
        size_t got;
        CHECK_OK(crew_queue_try_get(q, out, sizeof out, &got));
        CHECK_EQ(check_msg(out, got).seq, next_get++);
    }
    CHECK_EQ(next_get, n);
    /* The biggest message must pass wherever the ring's offset is. */
    for (int shift = 0; shift < 40; shift++) {
        CHECK_OK(crew_queue_put(q, in, (size_t)shift * 8 + 1, 0));
        size_t got;
        CHECK_OK(crew_queue_get(q, out, sizeof out, &got, 0));
        memset(in, shift, 992);
        CHECK_OK(crew_queue_put(q, in, 992, 0));
        CHECK_OK(crew_queue_get(q, out, sizeof out, &got, 0));
        CHECK_EQ(got, 992);
        CHECK(out[0] == shift && out[991] == shift);
    }
    CHECK_OK(crew_queue_destroy(q));
}

typedef struct waker_arg {
    crew_queue *q;
    int mode; /* 0: put one message, 1: get one message, 2: close */
    int started_fd; /* write end of a pipe: "I am about to act" */
} waker_arg;

static void *waker(void *p)
{
    waker_arg *a = p;
    char c = 0;
    /* Wait until the main thread says it is about to block. */
    CHECK(read(a->started_fd, &c, 1) == 1);
    if (a->mode == 0)
        CHECK_OK(crew_queue_put(a->q, "wake", 4, CREW_FOREVER));
    else if (a->mode == 1) {
        char buf[64];
        size_t len;
        CHECK_OK(crew_queue_get(a->q, buf, sizeof buf, &len, CREW_FOREVER));
    } else
        CHECK_OK(crew_queue_close(a->q));
    return NULL;
}

static void test_timeouts(void)
{
    crew_queue_options o = {.capacity = 64};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    char buf[64];
    size_t len;
    /* 0 polls: EAGAIN at once. */
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, 0), CREW_EAGAIN);
    /* Positive: ETIMEDOUT after at least that long. */
    double t0 = crew_now();
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, 0.05), CREW_ETIMEDOUT);
    double dt = crew_now() - t0;
    CHECK(dt >= 0.05);
    CHECK(dt < 5.0);
    /* Full queue: same for puts. */
    CHECK_OK(crew_queue_put(q, buf, 56, 0));
    CHECK_ERR(crew_queue_try_put(q, buf, 1), CREW_EAGAIN);
    t0 = crew_now();
    CHECK_ERR(crew_queue_put(q, buf, 1, 0.03), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.03);

    /* Forever, woken by another thread: a get from a put, a put by a get. */
    int fds[2];
    for (int mode = 0; mode < 3; mode++) {
        CHECK(pipe(fds) == 0);
        waker_arg a = {q, mode, fds[0]};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, waker, &a) == 0);
        CHECK(write(fds[1], "", 1) == 1);
        if (mode == 0) {
            /* The queue is full: first get the full message, then block. */
            CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER));
            CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER));
            CHECK_EQ(len, 4);
            CHECK(memcmp(buf, "wake", 4) == 0);
            CHECK_OK(crew_queue_put(q, buf, 56, 0)); /* full again */
        } else if (mode == 1) {
            CHECK_OK(crew_queue_put(q, buf, 8, CREW_FOREVER)); /* waits for the get */
            CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, 0));
            CHECK_EQ(len, 8);
        } else {
            CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER), CREW_EOF);
        }
        pthread_join(th, NULL);
        close(fds[0]);
        close(fds[1]);
    }
    CHECK_OK(crew_queue_destroy(q));
}

static void test_close_drain(void)
{
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_OK(crew_queue_put(q, "a", 1, 0));
    CHECK_OK(crew_queue_put(q, "bb", 2, 0));
    CHECK_OK(crew_queue_close(q));
    CHECK_OK(crew_queue_close(q)); /* idempotent */
    crew_queue_status st;
    CHECK_OK(crew_queue_status_get(q, &st));
    CHECK_EQ(st.closed, 1);
    CHECK_ERR(crew_queue_put(q, "c", 1, CREW_FOREVER), CREW_ECLOSED);
    CHECK_ERR(crew_queue_try_put(q, "c", 1), CREW_ECLOSED);
    char buf[8];
    size_t len;
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER));
    CHECK_EQ(len, 1);
    CHECK_OK(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER));
    CHECK_EQ(len, 2);
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER), CREW_EOF);
    CHECK_ERR(crew_queue_try_get(q, buf, sizeof buf, &len), CREW_EOF);
    CHECK_OK(crew_queue_destroy(q));

    /* A producer blocked on a full queue is woken by close with ECLOSED. */
    crew_queue_options o = {.capacity = 64};
    CHECK_OK(crew_queue_create(&q, &o));
    CHECK_OK(crew_queue_put(q, buf, 8, 0));
    CHECK_OK(crew_queue_put(q, buf, 8, 0));
    CHECK_OK(crew_queue_put(q, buf, 8, 0));
    int fds[2];
    CHECK(pipe(fds) == 0);
    waker_arg a = {q, 2, fds[0]};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, waker, &a) == 0);
    CHECK(write(fds[1], "", 1) == 1);
    CHECK_ERR(crew_queue_put(q, buf, 40, CREW_FOREVER), CREW_ECLOSED);
    pthread_join(th, NULL);
    close(fds[0]);
    close(fds[1]);
    CHECK_OK(crew_queue_destroy(q));
}

/* ---- N producers x M consumers, threads */
enum { NPROD = 3, NCONS = 3 };

typedef struct mpmc {
    crew_queue *q;
    long per_producer;
    int id;
    _Atomic uint8_t *seen; /* [NPROD][per_producer] */
} mpmc;

static void *producer_thread(void *p)
{
    mpmc *m = p;
    uint8_t buf[600];
    for (long s = 0; s < m->per_producer; s++) {
        size_t len = make_msg(buf, (uint32_t)m->id, (uint32_t)s, (uint32_t)((s * 37) % 500));
        CHECK_OK(crew_queue_put(m->q, buf, len, CREW_FOREVER));
    }
    return NULL;
}

static void consume_all(crew_queue *q, long per_producer, _Atomic uint8_t *seen)
{
    uint8_t buf[600];
    long last[NPROD];
    for (int i = 0; i < NPROD; i++)
        last[i] = -1;
    for (;;) {
        size_t len;
        int rc = crew_queue_get(q, buf, sizeof buf, &len, CREW_FOREVER);
        if (rc == CREW_EOF)
            break;
        CHECK_OK(rc);
        msg_head h = check_msg(buf, len);
        CHECK(h.producer < NPROD && h.seq < per_producer);
        /* FIFO per producer, as seen by any one consumer. */
        CHECK((long)h.seq > last[h.producer]);
        last[h.producer] = h.seq;
        atomic_fetch_add(&seen[h.producer * per_producer + h.seq], 1);
    }
}

static void *consumer_thread(void *p)
{
    mpmc *m = p;
    consume_all(m->q, m->per_producer, m->seen);
    return NULL;
}

static void check_exactly_once(_Atomic uint8_t *seen, long per_producer)
{
    for (long i = 0; i < NPROD * per_producer; i++)
        if (atomic_load(&seen[i]) != 1)
            TEST_FAIL("message %ld of producer %ld seen %d times", i % per_producer,
                      i / per_producer, atomic_load(&seen[i]));
}

static void test_mpmc_threads(void)
{
    crew_queue_options o = {.capacity = 8192};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    long per = test_scale(20000);
    _Atomic uint8_t *seen = calloc((size_t)(NPROD * per), 1);
    CHECK(seen);
    pthread_t pt[NPROD], ct[NCONS];
    mpmc pm[NPROD], cm[NCONS];
    for (int i = 0; i < NCONS; i++) {
        cm[i] = (mpmc){q, per, i, seen};
        CHECK(pthread_create(&ct[i], NULL, consumer_thread, &cm[i]) == 0);
    }
    for (int i = 0; i < NPROD; i++) {
        pm[i] = (mpmc){q, per, i, seen};
        CHECK(pthread_create(&pt[i], NULL, producer_thread, &pm[i]) == 0);
    }
    for (int i = 0; i < NPROD; i++)
        pthread_join(pt[i], NULL);
    CHECK_OK(crew_queue_close(q));
    for (int i = 0; i < NCONS; i++)
        pthread_join(ct[i], NULL);
    check_exactly_once(seen, per);
    free(seen);
    CHECK_OK(crew_queue_destroy(q));
}

static void test_mpmc_processes(void)
{
    crew_queue_options o = {.capacity = 8192};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    long per = test_scale(20000);
    size_t seen_bytes = (size_t)(NPROD * per);
    _Atomic uint8_t *seen = shared_alloc(seen_bytes);
    pid_t kids[NPROD + NCONS];
    for (int i = 0; i < NCONS; i++) {
        fflush(NULL);
        kids[i] = fork();
        CHECK(kids[i] >= 0);
        if (kids[i] == 0) {
            consume_all(q, per, seen); /* the handle is valid after fork */
            _exit(0);
        }
    }
    for (int i = 0; i < NPROD; i++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            mpmc m = {q, per, i, seen};
            producer_thread(&m);
            _exit(0);
        }
        kids[NCONS + i] = pid;
    }
    for (int i = 0; i < NPROD; i++) {
        int st = test_wait(kids[NCONS + i]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_OK(crew_queue_close(q));
    for (int i = 0; i < NCONS; i++) {
        int st = test_wait(kids[i]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    check_exactly_once(seen, per);
    munmap((void *)seen, seen_bytes);
    CHECK_OK(crew_queue_destroy(q));
}

/* ---- a process that is not a fork: exec'd helper attaches by fd */
static int helper_echo(int argc, char **argv)
{
    CHECK(argc == 2);
    int in_fd = atoi(argv[0]), out_fd = atoi(argv[1]);
    crew_queue *in, *out;
    CHECK_OK(crew_queue_attach(&in, in_fd));
    CHECK_OK(crew_queue_attach(&out, out_fd));
    close(in_fd);
    close(out_fd);
    char buf[256];
    size_t len;
    int rc;
    long n = 0;
    while ((rc = crew_queue_get(in, buf, sizeof buf, &len, CREW_FOREVER)) == 0) {
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)(buf[i] ^ 0x20);
        CHECK_OK(crew_queue_put(out, buf, len, CREW_FOREVER));
        n++;
    }
    CHECK_ERR(rc, CREW_EOF);
    CHECK_OK(crew_queue_close(out));
    crew_queue_destroy(in);
    crew_queue_destroy(out);
    return n == 1000 ? 0 : 3;
}

static void test_attach_exec(void)
{
    crew_queue *in, *out;
    CHECK_OK(crew_queue_create(&in, NULL));
    CHECK_OK(crew_queue_create(&out, NULL));
    int fds_before = test_count_fds();
    int fin, fout;
    CHECK_OK(crew_queue_dup_fd(in, &fin));
    CHECK_OK(crew_queue_dup_fd(out, &fout));
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", fin);
    snprintf(b, sizeof b, "%d", fout);
    pid_t pid = test_spawn_helper("helper_echo", a, b, NULL);
    close(fin);
    close(fout);
    CHECK_EQ(test_count_fds(), fds_before);
    for (int i = 0; i < 1000; i++) {
        char msg[32], got[32];
        int n = snprintf(msg, sizeof msg, "hello %d", i);
        CHECK_OK(crew_queue_put(in, msg, (size_t)n, CREW_FOREVER));
        size_t len;
        CHECK_OK(crew_queue_get(out, got, sizeof got, &len, CREW_FOREVER));
        CHECK_EQ(len, (size_t)n);
        for (int k = 0; k < n; k++)
            CHECK_EQ(got[k], msg[k] ^ 0x20);
    }
    CHECK_OK(crew_queue_close(in));
    char got[32];
    size_t len;
    CHECK_ERR(crew_queue_get(out, got, sizeof got, &len, CREW_FOREVER), CREW_EOF);
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_OK(crew_queue_destroy(in));
    CHECK_OK(crew_queue_destroy(out));
}

/* ---- zero-copy calls */
static void fill_pattern(void *dst, size_t len, void *arg)
{
    memset(dst, *(int *)arg, len);
}

typedef struct reader {
    size_t len;
    int first, last;
} reader;

static void read_pattern(const void *msg, size_t len, void *arg)
{
    reader *r = arg;
    r->len = len;
    r->first = len ? ((const uint8_t *)msg)[0] : -1;
    r->last = len ? ((const uint8_t *)msg)[len - 1] : -1;
}

typedef struct reenter {
    crew_queue *q;
    int rc;
} reenter;

static void fill_reenter(void *dst, size_t len, void *arg)
{
    reenter *r = arg;
    r->rc = crew_queue_put(r->q, "x", 1, 0);
    memset(dst, 0, len);
}

static void read_reenter(const void *msg, size_t len, void *arg)
{
    reenter *r = arg;
    char c;
    r->rc = crew_queue_get(r->q, &c, 1, NULL, 0);
}

static void test_zero_copy(void)
{
    crew_queue_options o = {.capacity = 1 << 16};
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &o));
    for (int i = 0; i < 200; i++) {
        int v = i & 0xff;
        size_t n = (size_t)(i * 97) % 20000;
        CHECK_OK(crew_queue_put_with(q, n, fill_pattern, &v, CREW_FOREVER));
        reader r = {0};
        CHECK_OK(crew_queue_get_with(q, read_pattern, &r, CREW_FOREVER));
        CHECK_EQ(r.len, n);
        if (n) {
            CHECK_EQ(r.first, v);
            CHECK_EQ(r.last, v);
        }
    }
    CHECK_ERR(crew_queue_put_with(q, 1 << 16, fill_pattern, &(int){0}, 0), CREW_E2BIG);
    reader r;
    CHECK_ERR(crew_queue_get_with(q, read_pattern, &r, 0), CREW_EAGAIN);
    /* Re-entering the same side from a callback is refused, not a hang. */
    reenter re = {q, 0};
    CHECK_OK(crew_queue_put_with(q, 4, fill_reenter, &re, 0));
    CHECK_ERR(re.rc, CREW_EDEADLK);
    CHECK_OK(crew_queue_get_with(q, read_reenter, &re, 0));
    CHECK_ERR(re.rc, CREW_EDEADLK);
    CHECK_OK(crew_queue_close(q));
    CHECK_ERR(crew_queue_get_with(q, read_pattern, &r, CREW_FOREVER), CREW_EOF);
    CHECK_OK(crew_queue_destroy(q));
}

static void test_no_leaks(void)
{
    /* Warm up anything lazily allocated, then count. */
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    CHECK_OK(crew_queue_destroy(q));
    int fds = test_count_fds(), maps = test_count_maps();
    for (int i = 0; i < test_scale(2000); i++) {
        CHECK_OK(crew_queue_create(&q, NULL));
        CHECK_OK(crew_queue_put(q, "x", 1, 0));
        int fd;
        CHECK_OK(crew_queue_dup_fd(q, &fd));
        crew_queue *q2;
        CHECK_OK(crew_queue_attach(&q2, fd));
        close(fd);
        char c;
        CHECK_OK(crew_queue_get(q2, &c, 1, NULL, 0));
        CHECK_OK(crew_queue_destroy(q2));
        CHECK_OK(crew_queue_destroy(q));
    }
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_maps(), maps);
}

static void test_alloc_failure(void)
{
    test_alloc_fail_after(0);
    crew_queue *q = (crew_queue *)&q;
    int fds = test_count_fds();
    CHECK_ERR(crew_queue_create(&q, NULL), CREW_ENOMEM);
    CHECK(q == NULL);
    CHECK_EQ(test_count_fds(), fds);
    test_alloc_restore();
}

static const test_case cases[] = {
    TEST_CASE(test_basic_fifo),     TEST_CASE(test_zero_length_messages),
    TEST_CASE(test_bad_input),      TEST_CASE(test_oversize),
    TEST_CASE(test_wrap_sizes),     TEST_CASE(test_timeouts),
    TEST_CASE(test_close_drain),    TEST_CASE(test_mpmc_threads),
    TEST_CASE(test_mpmc_processes), TEST_CASE(test_attach_exec),
    TEST_CASE(test_zero_copy),      TEST_CASE(test_no_leaks),
    TEST_CASE(test_alloc_failure),
};
static const test_helper helpers[] = {TEST_HELPER(helper_echo)};
TEST_MAIN(cases, helpers)
