/* crew_fdchan: messages that carry file descriptors (issue 14, item 8: the
 * fd passing a crew_pipe cannot do). Mirrors CPython's
 * _test_multiprocessing.py _TestPicklingConnections / test_fd_transfer
 * (a child receives a file's descriptor over a Connection and writes to
 * it) and reduction.send_handle / recv_handle. */
#include "crew_test.h"

#include <fcntl.h>
#include <math.h>
#include <sys/mman.h>
#include <sys/socket.h>

static void pair(crew_fdchan **a, crew_fdchan **b) { CHECK_OK(crew_fdchan_create(a, b)); }

/* A message and two descriptors arrive together; the received descriptors
 * are new numbers, close-on-exec, and name the same files. */
static void test_send_recv_fds(void)
{
    crew_fdchan *a, *b;
    pair(&a, &b);
    int p[2];
    CHECK(pipe(p) == 0);
    int mfd = memfd_create("fdchan-test", 0);
    CHECK(mfd >= 0);
    CHECK(write(mfd, "memfd!", 6) == 6);
    int out[2] = {p[1], mfd};
    CHECK_OK(crew_fdchan_send(a, "two fds", 7, out, 2, 0));
    close(p[1]); /* the sender may close its own at once */
    char buf[16];
    size_t len = 0, n = 0;
    int got[4] = {-1, -1, -1, -1};
    CHECK_OK(crew_fdchan_recv(b, buf, sizeof buf, &len, got, 4, &n, 0));
    CHECK_EQ(len, 7);
    CHECK(memcmp(buf, "two fds", 7) == 0);
    CHECK_EQ(n, 2);
    CHECK(got[0] >= 0 && got[1] >= 0 && got[1] != mfd); /* p[1] closed: its number may return */
    CHECK(fcntl(got[0], F_GETFD) & FD_CLOEXEC);
    CHECK(write(got[0], "x", 1) == 1); /* the pipe's write end, received */
    char c;
    CHECK(read(p[0], &c, 1) == 1 && c == 'x');
    char mb[8] = {0};
    CHECK(pread(got[1], mb, 6, 0) == 6 && memcmp(mb, "memfd!", 6) == 0);
    close(got[0]);
    close(got[1]);
    close(p[0]);
    close(mfd);
    /* Empty messages, with and without a descriptor; both directions. */
    CHECK_OK(crew_fdchan_send(b, NULL, 0, NULL, 0, 0));
    CHECK_OK(crew_fdchan_recv(a, NULL, 0, &len, NULL, 0, &n, 0));
    CHECK_EQ(len, 0);
    CHECK_EQ(n, 0);
    int zero = 0;
    CHECK_OK(crew_fdchan_send(b, NULL, 0, &zero, 1, 0));
    CHECK_OK(crew_fdchan_recv(a, NULL, 0, &len, got, 1, &n, 0));
    CHECK_EQ(n, 1);
    close(got[0]);
    CHECK_OK(crew_fdchan_destroy(a));
    CHECK_OK(crew_fdchan_destroy(b));
}

/* A receive that has no room for the message or for its descriptors takes
 * nothing and says how much room it needs (Python's recv_bytes_into raises
 * BufferTooShort and keeps the message). */
static void test_too_small(void)
{
    crew_fdchan *a, *b;
    pair(&a, &b);
    int fds[3] = {0, 1, 2};
    CHECK_OK(crew_fdchan_send(a, "hello", 5, fds, 3, 0));
    char buf[8];
    size_t len = 0, n = 0;
    int got[3];
    CHECK_ERR(crew_fdchan_recv(b, buf, 2, &len, got, 3, &n, 0), CREW_E2BIG);
    CHECK_EQ(len, 5);
    CHECK_EQ(n, 3);
    CHECK_ERR(crew_fdchan_recv(b, buf, sizeof buf, &len, got, 2, &n, 0), CREW_E2BIG);
    CHECK_EQ(n, 3);
    int fds_before = test_count_fds();
    CHECK_ERR(crew_fdchan_recv(b, buf, sizeof buf, &len, NULL, 0, &n, 0), CREW_E2BIG);
    CHECK_EQ(test_count_fds(), fds_before); /* the peek's copies were closed */
    CHECK_OK(crew_fdchan_recv(b, buf, sizeof buf, &len, got, 3, &n, 0));
    CHECK_EQ(len, 5);
    CHECK_EQ(n, 3);
    for (int i = 0; i < 3; i++)
        close(got[i]);
    CHECK_OK(crew_fdchan_destroy(a));
    CHECK_OK(crew_fdchan_destroy(b));
}

/* Argument errors and limits, with exact codes. */
static void test_errors(void)
{
    crew_fdchan *a, *b;
    CHECK_ERR(crew_fdchan_create(NULL, &b), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_create(&a, &a), CREW_EINVAL);
    pair(&a, &b);
    static char big[CREW_FDCHAN_MAX_MESSAGE + 1];
    CHECK_OK(crew_fdchan_send(a, big, CREW_FDCHAN_MAX_MESSAGE, NULL, 0, 0));
    CHECK_ERR(crew_fdchan_send(a, big, sizeof big, NULL, 0, 0), CREW_E2BIG);
    int many[CREW_FDCHAN_MAX_FDS + 1];
    for (int i = 0; i <= CREW_FDCHAN_MAX_FDS; i++)
        many[i] = 0;
    CHECK_ERR(crew_fdchan_send(a, "m", 1, many, CREW_FDCHAN_MAX_FDS + 1, 0), CREW_E2BIG);
    int bad = 1000;
    CHECK_ERR(crew_fdchan_send(a, "m", 1, &bad, 1, 0), CREW_EBADF);
    CHECK_ERR(crew_fdchan_send(NULL, "m", 1, NULL, 0, 0), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_send(a, NULL, 1, NULL, 0, 0), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_send(a, "m", 1, NULL, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_send(a, "m", 1, NULL, 0, NAN), CREW_EINVAL);
    char buf[4];
    int got[1];
    CHECK_ERR(crew_fdchan_recv(NULL, buf, 4, NULL, NULL, 0, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_recv(b, NULL, 4, NULL, NULL, 0, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_recv(b, buf, 4, NULL, NULL, 1, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_recv(b, buf, 4, NULL, got, 1, NULL, NAN), CREW_EINVAL);
    static char into[CREW_FDCHAN_MAX_MESSAGE];
    size_t len;
    CHECK_OK(crew_fdchan_recv(b, into, sizeof into, &len, NULL, 0, NULL, 0));
    CHECK_EQ(len, CREW_FDCHAN_MAX_MESSAGE);
    /* Nothing queued: a poll, and a timeout. */
    CHECK_ERR(crew_fdchan_recv(b, buf, 4, NULL, NULL, 0, NULL, 0), CREW_EAGAIN);
    double t0 = crew_now();
    CHECK_ERR(crew_fdchan_recv(b, buf, 4, NULL, NULL, 0, NULL, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    /* A full channel: a poll, and a timeout on send. */
    int sent = 0;
    while (crew_fdchan_send(a, big, 4096, NULL, 0, 0) == 0)
        sent++;
    CHECK(sent > 0);
    CHECK_ERR(crew_fdchan_send(a, big, 4096, NULL, 0, 0), CREW_EAGAIN);
    t0 = crew_now();
    CHECK_ERR(crew_fdchan_send(a, big, 4096, NULL, 0, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.049);
    /* attach refuses what is not a crew fd channel end. */
    crew_fdchan *x = (crew_fdchan *)&a;
    CHECK_ERR(crew_fdchan_attach(&x, 1000), CREW_EBADF);
    CHECK(x == NULL);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(crew_fdchan_attach(&x, p[0]), CREW_EINVAL);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK_ERR(crew_fdchan_attach(&x, sv[0]), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_attach(NULL, sv[0]), CREW_EINVAL);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
    int fd;
    CHECK_ERR(crew_fdchan_dup_fd(NULL, &fd), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_dup_fd(a, NULL), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_close(NULL), CREW_EINVAL);
    CHECK_ERR(crew_fdchan_destroy(NULL), CREW_EINVAL);
    CHECK_OK(crew_fdchan_destroy(a));
    CHECK_OK(crew_fdchan_destroy(b));
}

static void *recv_forever(void *arg)
{
    char buf[8];
    return (void *)(intptr_t)crew_fdchan_recv(arg, buf, sizeof buf, NULL, NULL, 0, NULL,
                                              CREW_FOREVER);
}

/* EOF: the peer drains what was sent, then CREW_EOF; its sends get
 * CREW_EPIPE. By destroy (the last holder) and by close (every holder),
 * and a receiver already waiting wakes (_TestConnection.test_connection's
 * EOFError). */
static void test_eof(void)
{
    crew_fdchan *a, *b;
    pair(&a, &b);
    CHECK_OK(crew_fdchan_send(a, "last", 4, NULL, 0, 0));
    CHECK_OK(crew_fdchan_destroy(a));
    char buf[8];
    size_t len;
    CHECK_OK(crew_fdchan_recv(b, buf, sizeof buf, &len, NULL, 0, NULL, 0));
    CHECK_ERR(crew_fdchan_recv(b, buf, sizeof buf, &len, NULL, 0, NULL, 0), CREW_EOF);
    CHECK_ERR(crew_fdchan_recv(b, buf, sizeof buf, &len, NULL, 0, NULL, 1), CREW_EOF);
    CHECK_ERR(crew_fdchan_send(b, "x", 1, NULL, 0, 0), CREW_EPIPE);
    CHECK_OK(crew_fdchan_destroy(b));

    pair(&a, &b);
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, recv_forever, b, NULL));
    int fd;
    CHECK_OK(crew_fdchan_dup_fd(a, &fd)); /* a second holder of a's end */
    CHECK_OK(crew_fdchan_close(a));       /* ... shut down for it too */
    void *rc;
    CHECK_OK(crew_thread_join(t, 20, &rc));
    CHECK_OK(crew_thread_destroy(t));
    CHECK_ERR((int)(intptr_t)rc, CREW_EOF);
    CHECK_ERR(crew_fdchan_send(a, "x", 1, NULL, 0, 0), CREW_EPIPE);
    CHECK_ERR(crew_fdchan_recv(a, buf, sizeof buf, &len, NULL, 0, NULL, 0), CREW_EOF);
    close(fd);
    CHECK_OK(crew_fdchan_destroy(a));
    CHECK_OK(crew_fdchan_destroy(b));
}

/* ------------------------------------------------------------ processes */
/* test_fd_transfer: the child gets a descriptor over the channel and writes
 * through it; then it sends one of its own back (a pipe it made). The
 * child takes its end by name (crew_process_options.handles), for every
 * start method. */
static int child_fd_transfer(void *arg, size_t len)
{
    (void)arg, (void)len;
    crew_fdchan *c;
    if (crew_child_handle_fdchan("fds", &c) != 0)
        return 10;
    char buf[16];
    size_t n, nf;
    int fd;
    if (crew_fdchan_recv(c, buf, sizeof buf, &n, &fd, 1, &nf, 20) != 0 || nf != 1)
        return 11;
    if (write(fd, "from the child", 14) != 14)
        return 12;
    close(fd);
    int p[2];
    if (pipe(p) != 0 || write(p[1], "pipe", 4) != 4)
        return 13;
    if (crew_fdchan_send(c, "yours", 5, &p[0], 1, 20) != 0)
        return 14;
    close(p[0]);
    close(p[1]);
    crew_fdchan_destroy(c);
    return 0;
}

static void test_fd_transfer_processes(void)
{
    static const crew_start_method methods[] = {CREW_START_FORK, CREW_START_SPAWN,
                                                CREW_START_FORKSERVER};
    for (size_t m = 0; m < 3; m++) {
        crew_fdchan *mine, *theirs;
        pair(&mine, &theirs);
        crew_handle h = {CREW_HANDLE_FDCHAN, "fds", theirs};
        crew_process_options o = {.method = methods[m], .handles = &h, .n_handles = 1};
        crew_process *c;
        CHECK_OK(crew_process_start(&c, child_fd_transfer, NULL, 0, &o));
        CHECK_OK(crew_fdchan_destroy(theirs));
        int mfd = memfd_create("transfer", 0);
        CHECK(mfd >= 0);
        CHECK_OK(crew_fdchan_send(mine, "file", 4, &mfd, 1, 20));
        char buf[16];
        size_t n, nf;
        int back = -1;
        CHECK_OK(crew_fdchan_recv(mine, buf, sizeof buf, &n, &back, 1, &nf, 20));
        CHECK_EQ(nf, 1);
        char got[16] = {0};
        CHECK(pread(mfd, got, 14, 0) == 14 && memcmp(got, "from the child", 14) == 0);
        CHECK(read(back, got, 4) == 4 && memcmp(got, "pipe", 4) == 0);
        close(back);
        close(mfd);
        crew_exit st;
        CHECK_OK(crew_process_join(c, 30, &st));
        CHECK_EQ(st.signal, 0);
        CHECK_EQ(st.code, 0);
        CHECK_OK(crew_process_destroy(c));
        /* The child's end went with it: EOF. */
        CHECK_ERR(crew_fdchan_recv(mine, buf, sizeof buf, &n, NULL, 0, NULL, 20), CREW_EOF);
        CHECK_OK(crew_fdchan_destroy(mine));
    }
}

/* A datagram that no crew sender made (no leading tag, through a raw
 * sendmsg on a shared end) is dropped with CREW_EPROTO, its descriptors
 * closed; the channel goes on. */
static void test_foreign_datagram(void)
{
    crew_fdchan *a, *b;
    pair(&a, &b);
    int fd;
    CHECK_OK(crew_fdchan_dup_fd(a, &fd));
    CHECK(send(fd, "Xforeign", 8, 0) == 8);
    char buf[16];
    size_t len;
    CHECK_ERR(crew_fdchan_recv(b, buf, sizeof buf, &len, NULL, 0, NULL, 0), CREW_EPROTO);
    CHECK_OK(crew_fdchan_send(a, "ok", 2, NULL, 0, 0));
    CHECK_OK(crew_fdchan_recv(b, buf, sizeof buf, &len, NULL, 0, NULL, 0));
    CHECK_EQ(len, 2);
    close(fd);
    CHECK_OK(crew_fdchan_destroy(a));
    CHECK_OK(crew_fdchan_destroy(b));
}

static const test_case cases[] = {
    TEST_CASE(test_send_recv_fds),
    TEST_CASE(test_too_small),
    TEST_CASE(test_errors),
    TEST_CASE(test_eof),
    TEST_CASE(test_fd_transfer_processes),
    TEST_CASE(test_foreign_datagram),
};
TEST_MAIN_NOHELPERS(cases)
