/* crew_pipe: duplex messages, EOF on close / destroy / peer death (reaped or
 * zombie), EPIPE, holders across fork, exec'd attach, timeouts, sizes, bad
 * input, leaks. */
#include "crew_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>

// CREW_TEST_TIMEOUT 120

static pid_t fork_child(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    return pid;
}

static void test_duplex_one_process(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    char buf[64];
    size_t len;
    CHECK_OK(crew_pipe_send(a, "to b", 4, 0));
    CHECK_OK(crew_pipe_send(b, "to a!", 5, 0));
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
    CHECK(len == 4 && memcmp(buf, "to b", 4) == 0);
    CHECK_OK(crew_pipe_recv(a, buf, sizeof buf, &len, 0));
    CHECK(len == 5 && memcmp(buf, "to a!", 5) == 0);
    /* Messages keep their boundaries, in order. */
    for (int i = 0; i < 50; i++)
        CHECK_OK(crew_pipe_send(a, buf, (size_t)i, 0));
    for (int i = 0; i < 50; i++) {
        CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
        CHECK_EQ(len, i);
    }
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, 0), CREW_EAGAIN);
    double t0 = crew_now();
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, 0.05), CREW_ETIMEDOUT);
    CHECK(crew_now() - t0 >= 0.05);
    /* E2BIG both ways: too big to send; too big for the buffer (stays). */
    static char big[1 << 20];
    CHECK_ERR(crew_pipe_send(a, big, sizeof big, 0), CREW_E2BIG);
    CHECK_OK(crew_pipe_send(a, big, 100, 0));
    CHECK_ERR(crew_pipe_recv(b, buf, 10, &len, 0), CREW_E2BIG);
    CHECK_EQ(len, 100);
    CHECK_OK(crew_pipe_recv(b, big, sizeof big, &len, 0));
    CHECK_EQ(len, 100);
    CHECK_OK(crew_pipe_destroy(a));
    /* The last holder of a destroyed a: b sees EOF, and EPIPE on send. */
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, CREW_FOREVER), CREW_EOF);
    CHECK_ERR(crew_pipe_send(b, "x", 1, CREW_FOREVER), CREW_EPIPE);
    CHECK_OK(crew_pipe_destroy(b));
}

static void test_bad_input(void)
{
    crew_pipe *a, *b;
    CHECK_ERR(crew_pipe_create(NULL, &b, NULL), CREW_EINVAL);
    CHECK_ERR(crew_pipe_create(&a, &a, NULL), CREW_EINVAL);
    crew_pipe_options o = {.capacity = 100, .max_message = 200};
    CHECK_ERR(crew_pipe_create(&a, &b, &o), CREW_EINVAL);
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    char c;
    CHECK_ERR(crew_pipe_send(NULL, "x", 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_pipe_send(a, NULL, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_pipe_recv(NULL, &c, 1, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_pipe_recv(a, NULL, 1, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_pipe_recv_with(a, NULL, NULL, 0), CREW_EINVAL);
    CHECK_ERR(crew_pipe_close(NULL), CREW_EINVAL);
    CHECK_ERR(crew_pipe_destroy(NULL), CREW_EINVAL);
    CHECK_ERR(crew_pipe_dup_fd(a, NULL), CREW_EINVAL);
    crew_pipe *p;
    CHECK_ERR(crew_pipe_attach(&p, -1), CREW_EBADF);
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    int qfd;
    CHECK_OK(crew_queue_dup_fd(q, &qfd));
    CHECK_ERR(crew_pipe_attach(&p, qfd), CREW_EINVAL); /* a queue is not a pipe */
    close(qfd);
    CHECK_OK(crew_queue_destroy(q));
    /* Zero-length messages are messages. */
    CHECK_OK(crew_pipe_send(a, NULL, 0, 0));
    size_t len = 9;
    CHECK_OK(crew_pipe_recv(b, NULL, 0, &len, 0));
    CHECK_EQ(len, 0);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static void test_close(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_OK(crew_pipe_send(a, "one", 3, 0));
    CHECK_OK(crew_pipe_send(a, "two", 3, 0));
    CHECK_OK(crew_pipe_close(a));
    CHECK_OK(crew_pipe_close(a));
    char buf[8];
    size_t len;
    CHECK_ERR(crew_pipe_send(a, "x", 1, 0), CREW_ECLOSED);
    CHECK_ERR(crew_pipe_recv(a, buf, sizeof buf, &len, 0), CREW_ECLOSED);
    /* The peer drains, then EOF; its sends fail with EPIPE. */
    CHECK_ERR(crew_pipe_send(b, "x", 1, 0), CREW_EPIPE);
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0));
    CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, CREW_FOREVER), CREW_EOF);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

typedef struct closer {
    crew_pipe *p;
    int fd;
} closer;
static void *close_later(void *arg)
{
    closer *c = arg;
    char x;
    CHECK(read(c->fd, &x, 1) == 1);
    CHECK_OK(crew_pipe_close(c->p));
    return NULL;
}

static void test_close_wakes_waiter(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    int fds[2];
    CHECK(pipe(fds) == 0);
    closer c = {a, fds[0]};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, close_later, &c) == 0);
    CHECK(write(fds[1], "", 1) == 1);
    char buf[8];
    size_t len;
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, CREW_FOREVER), CREW_EOF);
    pthread_join(th, NULL);
    close(fds[0]);
    close(fds[1]);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static void test_fork_ping_pong(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    pid_t pid = fork_child();
    if (pid == 0) {
        crew_pipe_destroy(a); /* as with pipe(2): drop the end not used */
        char buf[64];
        size_t len;
        int rc;
        while ((rc = crew_pipe_recv(b, buf, sizeof buf, &len, CREW_FOREVER)) == 0) {
            buf[0]++;
            if (crew_pipe_send(b, buf, len, CREW_FOREVER) != 0)
                _exit(2);
        }
        crew_pipe_destroy(b);
        _exit(rc == CREW_EOF ? 0 : 3);
    }
    CHECK_OK(crew_pipe_destroy(b));
    for (int i = 0; i < test_scale(10000); i++) {
        char m[16] = {(char)i, 'x'}, r[16];
        size_t len;
        CHECK_OK(crew_pipe_send(a, m, 16, CREW_FOREVER));
        CHECK_OK(crew_pipe_recv(a, r, sizeof r, &len, CREW_FOREVER));
        CHECK_EQ(len, 16);
        CHECK_EQ(r[0], (char)(i + 1));
    }
    CHECK_OK(crew_pipe_destroy(a)); /* last holder of a: child sees EOF */
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_peer_exit_drains_then_eof(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    pid_t pid = fork_child();
    if (pid == 0) {
        crew_pipe_destroy(a);
        for (int i = 0; i < 10; i++)
            if (crew_pipe_send(b, &i, sizeof i, CREW_FOREVER) != 0)
                _exit(2);
        _exit(0); /* no destroy: the process just ends */
    }
    CHECK_OK(crew_pipe_destroy(b));
    for (int i = 0; i < 10; i++) {
        int v;
        size_t len;
        CHECK_OK(crew_pipe_recv(a, &v, sizeof v, &len, CREW_FOREVER));
        CHECK_EQ(v, i);
    }
    /* The child may still be a zombie here (not reaped): still EOF. */
    int v;
    CHECK_ERR(crew_pipe_recv(a, &v, sizeof v, NULL, CREW_FOREVER), CREW_EOF);
    CHECK_ERR(crew_pipe_send(a, &v, sizeof v, CREW_FOREVER), CREW_EPIPE);
    test_wait(pid);
    CHECK_OK(crew_pipe_destroy(a));
}

static void test_peer_killed_while_waiting(void)
{
    for (int mode = 0; mode < 2; mode++) {
        crew_pipe_options o = {.capacity = 4096};
        crew_pipe *a, *b;
        CHECK_OK(crew_pipe_create(&a, &b, &o));
        int ready[2];
        CHECK(pipe(ready) == 0);
        pid_t pid = fork_child();
        if (pid == 0) {
            crew_pipe_destroy(a);
            close(ready[0]);
            CHECK(write(ready[1], "", 1) == 1);
            for (;;)
                pause();
        }
        close(ready[1]);
        CHECK_OK(crew_pipe_destroy(b));
        char c;
        CHECK(read(ready[0], &c, 1) == 1);
        close(ready[0]);
        static char buf[4096];
        if (mode == 1)
            CHECK_OK(crew_pipe_send(a, buf, 4000, 0)); /* fill: the next send waits */
        /* Kill it; do not reap: the waiter must see the zombie as dead. */
        CHECK(kill(pid, SIGKILL) == 0);
        double t0 = crew_now();
        if (mode == 0)
            CHECK_ERR(crew_pipe_recv(a, buf, sizeof buf, NULL, CREW_FOREVER), CREW_EOF);
        else
            CHECK_ERR(crew_pipe_send(a, buf, 4000, CREW_FOREVER), CREW_EPIPE);
        CHECK(crew_now() - t0 < 5.0);
        int st = test_wait(pid);
        CHECK(WIFSIGNALED(st));
        CHECK_OK(crew_pipe_destroy(a));
    }
}

static void test_kept_end_means_no_eof(void)
{
    /* Documented pipe(2)-like behaviour: a process that keeps the peer's end
     * keeps it alive; the peer's child dying does not close it. */
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    pid_t pid = fork_child();
    if (pid == 0)
        _exit(0);
    test_wait(pid);
    char c;
    CHECK_ERR(crew_pipe_recv(a, &c, 1, NULL, 0.1), CREW_ETIMEDOUT);
    CHECK_OK(crew_pipe_destroy(b)); /* now nobody holds b */
    CHECK_ERR(crew_pipe_recv(a, &c, 1, NULL, CREW_FOREVER), CREW_EOF);
    CHECK_OK(crew_pipe_destroy(a));
}

static int helper_pipe_echo(int argc, char **argv)
{
    CHECK(argc == 1);
    int fd = atoi(argv[0]);
    crew_pipe *p;
    CHECK_OK(crew_pipe_attach(&p, fd));
    close(fd);
    char buf[128];
    size_t len;
    int rc, n = 0;
    while ((rc = crew_pipe_recv(p, buf, sizeof buf, &len, CREW_FOREVER)) == 0) {
        CHECK_OK(crew_pipe_send(p, buf, len, CREW_FOREVER));
        n++;
    }
    CHECK_ERR(rc, CREW_EOF);
    CHECK_OK(crew_pipe_destroy(p));
    return n == 500 ? 0 : 4;
}

static void test_attach_exec(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    int fd;
    CHECK_OK(crew_pipe_dup_fd(b, &fd));
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    pid_t pid = test_spawn_helper("helper_pipe_echo", arg, NULL);
    close(fd);
    CHECK_OK(crew_pipe_destroy(b));
    for (int i = 0; i < 500; i++) {
        char m[32], r[32];
        int n = snprintf(m, sizeof m, "echo %d", i);
        size_t len;
        CHECK_OK(crew_pipe_send(a, m, (size_t)n, CREW_FOREVER));
        CHECK_OK(crew_pipe_recv(a, r, sizeof r, &len, CREW_FOREVER));
        CHECK(len == (size_t)n && memcmp(m, r, len) == 0);
    }
    CHECK_OK(crew_pipe_destroy(a));
    int st = test_wait(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void read_len(const void *msg, size_t len, void *arg) { *(size_t *)arg = len; }

static void test_recv_with(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_OK(crew_pipe_send(a, "12345", 5, 0));
    size_t n = 0;
    CHECK_OK(crew_pipe_recv_with(b, read_len, &n, 0));
    CHECK_EQ(n, 5);
    CHECK_ERR(crew_pipe_recv_with(b, read_len, &n, 0), CREW_EAGAIN);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static void test_no_leaks(void)
{
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
    int fds = test_count_fds(), maps = test_count_maps();
    for (int i = 0; i < test_scale(1000); i++) {
        CHECK_OK(crew_pipe_create(&a, &b, NULL));
        int fd;
        CHECK_OK(crew_pipe_dup_fd(b, &fd));
        crew_pipe *b2;
        CHECK_OK(crew_pipe_attach(&b2, fd));
        close(fd);
        CHECK_OK(crew_pipe_send(a, "x", 1, 0));
        char c;
        CHECK_OK(crew_pipe_recv(b2, &c, 1, NULL, 0));
        CHECK_OK(crew_pipe_destroy(b));
        CHECK_OK(crew_pipe_destroy(b2));
        CHECK_OK(crew_pipe_destroy(a));
    }
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_maps(), maps);
}

static void *echo_thread(void *arg)
{
    crew_pipe *b = arg;
    char buf[64];
    size_t len;
    int rc;
    while ((rc = crew_pipe_recv(b, buf, sizeof buf, &len, CREW_FOREVER)) == 0)
        CHECK_OK(crew_pipe_send(b, buf, len, CREW_FOREVER));
    CHECK_ERR(rc, CREW_EOF);
    return NULL;
}

static void test_threads(void)
{
    /* Two threads of one process, one end each. */
    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, echo_thread, b) == 0);
    for (int i = 0; i < test_scale(20000); i++) {
        char r[8];
        size_t len;
        CHECK_OK(crew_pipe_send(a, &i, sizeof i, CREW_FOREVER));
        CHECK_OK(crew_pipe_recv(a, r, sizeof r, &len, CREW_FOREVER));
        CHECK_EQ(len, sizeof i);
        CHECK(memcmp(r, &i, sizeof i) == 0);
    }
    CHECK_OK(crew_pipe_close(a)); /* the echo thread sees EOF */
    pthread_join(th, NULL);
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static void test_alloc_failure(void)
{
    int fds = test_count_fds(), maps = test_count_maps();
    test_alloc_fail_after(0);
    crew_pipe *a = (crew_pipe *)&a, *b = (crew_pipe *)&b;
    CHECK_ERR(crew_pipe_create(&a, &b, NULL), CREW_ENOMEM);
    CHECK(a == NULL && b == NULL);
    test_alloc_restore();
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_maps(), maps);
}

static const test_case cases[] = {
    TEST_CASE(test_duplex_one_process),
    TEST_CASE(test_bad_input),
    TEST_CASE(test_close),
    TEST_CASE(test_close_wakes_waiter),
    TEST_CASE(test_fork_ping_pong),
    TEST_CASE(test_peer_exit_drains_then_eof),
    TEST_CASE(test_peer_killed_while_waiting),
    TEST_CASE(test_kept_end_means_no_eof),
    TEST_CASE(test_attach_exec),
    TEST_CASE(test_recv_with),
    TEST_CASE(test_no_leaks),
    TEST_CASE(test_threads),
    TEST_CASE(test_alloc_failure),
};
static const test_helper helpers[] = {TEST_HELPER(helper_pipe_echo)};
TEST_MAIN(cases, helpers)
