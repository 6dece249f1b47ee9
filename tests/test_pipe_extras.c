/* The pipe calls of issue 14 (item 8): poll without taking a message, and
 * one-way pipes. Each case names the CPython test it mirrors
 * (Lib/test/_test_multiprocessing.py: _TestConnection, _TestPoll). */
#include "hostile_peer.h" /* crew_test.h, and the pipe header's layout */

#include <math.h>

static int join_rc(crew_thread *t)
{
    void *r;
    CHECK_OK(crew_thread_join(t, 30, &r));
    CHECK_OK(crew_thread_destroy(t));
    return (int)(intptr_t)r;
}

/* ------------------------------------------------------------ poll */
/* _TestPoll.test_empty_string and test_strings, _TestConnection.
 * test_connection's poll checks: poll is false on an empty pipe (also after
 * its timeout), true once a message is there -- an empty one included --
 * and it takes nothing. */
static void test_poll_basics(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    size_t len = 77;
    CHECK_EQ(crew_pipe_poll(b, &len, 0), 0);
    CHECK_EQ(len, 77); /* untouched when nothing is ready */
    double t0 = crew_now();
    CHECK_EQ(crew_pipe_poll(b, NULL, 0.05), 0);
    CHECK(crew_now() - t0 >= 0.049);
    CHECK_OK(crew_pipe_send(a, "", 0, 0));
    CHECK_EQ(crew_pipe_poll(b, &len, 0), 1);
    CHECK_EQ(len, 0);
    CHECK_EQ(crew_pipe_poll(b, &len, 0), 1); /* still there */
    CHECK_OK(crew_pipe_send(a, "hello", 5, 0));
    char buf[16];
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
    CHECK_EQ(len, 0);
    CHECK_EQ(crew_pipe_poll(b, &len, 0), 1);
    CHECK_EQ(len, 5);
    /* A buffer too small: poll told the size; recv says E2BIG, keeps it. */
    CHECK_ERR(crew_pipe_recv(b, buf, 2, &len, 0), CREW_E2BIG);
    CHECK_EQ(crew_pipe_poll(b, &len, 0), 1);
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(crew_pipe_poll(b, NULL, 0), 0);
    /* Both directions: a polls its own receive ring. */
    CHECK_EQ(crew_pipe_poll(a, NULL, 0), 0);
    CHECK_OK(crew_pipe_send(b, "x", 1, 0));
    CHECK_EQ(crew_pipe_poll(a, &len, 0), 1);
    CHECK_EQ(len, 1);
    CHECK_ERR(crew_pipe_poll(NULL, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_pipe_poll(a, NULL, NAN), CREW_EINVAL);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static void *poll_forever(void *arg)
{
    size_t len = 0;
    int rc = crew_pipe_poll(arg, &len, CREW_FOREVER);
    return (void *)(intptr_t)(rc == 1 ? (int)len : rc - 1000000);
}

/* _TestConnection.test_connection: poll(timeout) returns as soon as a
 * message arrives (here: a waiting thread, woken by the send). */
static void test_poll_wakes(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, poll_forever, b, NULL));
    CHECK_OK(crew_pipe_send(a, "abc", 3, 0));
    CHECK_EQ(join_rc(t), 3);
    char buf[4];
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, NULL, 0));
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

/* _TestConnection.test_connection (EOF part): once the other end is closed,
 * poll reports what is left, then CREW_EOF (where a recv would say EOF;
 * Python's poll returns True there); a closed end of one's own: ECLOSED. */
static void test_poll_eof(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_OK(crew_pipe_send(a, "last", 4, 0));
    CHECK_OK(crew_pipe_close(a));
    CHECK_EQ(crew_pipe_poll(b, NULL, 0), 1);
    char buf[8];
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, NULL, 0));
    CHECK_ERR(crew_pipe_poll(b, NULL, 0), CREW_EOF);
    CHECK_ERR(crew_pipe_poll(b, NULL, 1), CREW_EOF);
    CHECK_ERR(crew_pipe_poll(a, NULL, 0), CREW_ECLOSED);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));

    /* A peer process that dies: a poll waiting forever ends with EOF. */
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        crew_pipe_destroy(b);
        crew_pipe_send(a, "m", 1, 0);
        char c;
        crew_pipe_recv(a, &c, 1, NULL, CREW_FOREVER); /* until killed */
        _exit(1);
    }
    CHECK_OK(crew_pipe_destroy(a));
    size_t len;
    CHECK_EQ(crew_pipe_poll(b, &len, 20), 1);
    CHECK_EQ(len, 1);
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, NULL, 0));
    kill(pid, SIGKILL);
    double t0 = crew_now();
    CHECK_ERR(crew_pipe_poll(b, NULL, CREW_FOREVER), CREW_EOF);
    CHECK(crew_now() - t0 < 10);
    test_wait(pid);
    CHECK_OK(crew_pipe_destroy(b));
}

/* ------------------------------------------------------------ one-way */
static void never_read(const void *msg, size_t len, void *arg)
{
    (void)msg, (void)len, (void)arg;
    TEST_FAIL("a send end read a message");
}

/* _TestConnection.test_duplex_false: reader, writer = Pipe(duplex=False);
 * writer.send / reader.recv work; reader.send, writer.recv and writer.poll
 * raise OSError -- here CREW_EBADF, as read(2)/write(2) on a descriptor of
 * the wrong direction. */
static void test_one_way(void)
{
    crew_pipe_options o = {.one_way = 1};
    crew_pipe *reader, *writer;
    CHECK_OK(crew_pipe_create(&reader, &writer, &o));
    CHECK_EQ(crew_pipe_one_way(reader), 1);
    CHECK_EQ(crew_pipe_one_way(writer), 1);
    CHECK_OK(crew_pipe_send(writer, "1", 1, 0));
    size_t len;
    CHECK_EQ(crew_pipe_poll(reader, &len, 0), 1);
    char buf[8];
    CHECK_OK(crew_pipe_recv(reader, buf, sizeof buf, &len, 0));
    CHECK_EQ(len, 1);
    CHECK_ERR(crew_pipe_send(reader, "2", 1, 0), CREW_EBADF);
    CHECK_ERR(crew_pipe_recv(writer, buf, sizeof buf, &len, 0), CREW_EBADF);
    CHECK_ERR(crew_pipe_recv_with(writer, never_read, NULL, 0), CREW_EBADF);
    CHECK_ERR(crew_pipe_poll(writer, NULL, 0), CREW_EBADF);
    /* EOF as for a duplex pipe: the writer goes, the reader drains. */
    CHECK_OK(crew_pipe_send(writer, "3", 1, 0));
    CHECK_OK(crew_pipe_destroy(writer));
    CHECK_OK(crew_pipe_recv(reader, buf, sizeof buf, &len, 0));
    CHECK_ERR(crew_pipe_recv(reader, buf, sizeof buf, &len, 0), CREW_EOF);
    CHECK_OK(crew_pipe_destroy(reader));

    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_EQ(crew_pipe_one_way(a), 0);
    CHECK_ERR(crew_pipe_one_way(NULL), CREW_EINVAL);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

/* An exec'd process that attaches the writer end keeps its direction. */
static int helper_writer(int argc, char **argv)
{
    CHECK(argc == 1);
    int fd = atoi(argv[0]);
    crew_pipe *w;
    CHECK_OK(crew_pipe_attach(&w, fd));
    close(fd);
    CHECK_EQ(crew_pipe_one_way(w), 1);
    char buf[8];
    CHECK_ERR(crew_pipe_recv(w, buf, sizeof buf, NULL, 0), CREW_EBADF);
    for (int i = 0; i < 100; i++)
        CHECK_OK(crew_pipe_send(w, &i, sizeof i, 20));
    CHECK_OK(crew_pipe_destroy(w));
    return 0;
}

static void test_one_way_processes(void)
{
    crew_pipe_options o = {.one_way = 1, .capacity = 256};
    crew_pipe *reader, *writer;
    CHECK_OK(crew_pipe_create(&reader, &writer, &o));
    int fd;
    CHECK_OK(crew_pipe_dup_fd(writer, &fd));
    CHECK_OK(crew_pipe_destroy(writer));
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    pid_t pid = test_spawn_helper("helper_writer", arg, NULL);
    close(fd);
    for (int i = 0; i < 100; i++) {
        int v;
        CHECK_EQ(crew_pipe_poll(reader, NULL, 20), 1);
        CHECK_OK(crew_pipe_recv(reader, &v, sizeof v, NULL, 20));
        CHECK_EQ(v, i);
    }
    CHECK_ERR(crew_pipe_recv(reader, &fd, sizeof fd, NULL, 20), CREW_EOF);
    int st = test_wait(pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_OK(crew_pipe_destroy(reader));
}

/* The direction is read once, at attach: unknown bits there are a protocol
 * error (and break the pipe for its holders); a later rewrite changes
 * nothing for a handle already made. */
static void test_one_way_header_hostile(void)
{
    crew_pipe_options o = {.one_way = 1};
    crew_pipe *reader, *writer;
    CHECK_OK(crew_pipe_create(&reader, &writer, &o));
    int fd;
    CHECK_OK(crew_pipe_dup_fd(writer, &fd));
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    hp_pipe_hdr *h = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(h != MAP_FAILED);
    CHECK_EQ(h->flags, 1);
    h->flags = 0; /* a peer makes it duplex: the handles keep their rule */
    CHECK_ERR(crew_pipe_send(reader, "x", 1, 0), CREW_EBADF);
    CHECK_EQ(crew_pipe_one_way(reader), 1);
    h->flags = 1 | 8;
    crew_pipe *p2;
    CHECK_ERR(crew_pipe_attach(&p2, fd), CREW_EPROTO);
    CHECK_ERR(crew_pipe_send(writer, "x", 1, 0), CREW_EPROTO);
    CHECK_ERR(crew_pipe_poll(reader, NULL, 0), CREW_EPROTO);
    CHECK_ERR(crew_pipe_one_way(reader), CREW_EPROTO);
    munmap(h, (size_t)st.st_size);
    close(fd);
    CHECK_OK(crew_pipe_destroy(reader));
    CHECK_OK(crew_pipe_destroy(writer));
}

static const test_case cases[] = {
    TEST_CASE(test_poll_basics),
    TEST_CASE(test_poll_wakes),
    TEST_CASE(test_poll_eof),
    TEST_CASE(test_one_way),
    TEST_CASE(test_one_way_processes),
    TEST_CASE(test_one_way_header_hostile),
};
static const test_helper helpers[] = {TEST_HELPER(helper_writer)};
TEST_MAIN(cases, helpers)
