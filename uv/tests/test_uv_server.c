/* The hybrid HTTP server (uv/examples/hybrid_server.c), run as a child
 * process on 127.0.0.1: keep-alive and pipelining in every architecture,
 * malformed requests answered 400 (never a crash), random bytes from a fuzz
 * loop survived, a segfaulting CPU request answered 500 in hybrid mode while
 * the other connections are served, and a clean stop with work in flight. */
// CREW_TEST_TIMEOUT 180
#include "crew_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#define SERVER CREW_EXAMPLES_DIR "/hybrid_server"

/* Under a sanitizer (ASan, TSan: the server is built with it too) a SIGSEGV
 * is caught by the sanitizer's handler, which reports and exits 1: the crash
 * then shows as an exit, not as signal 11. */
#define SAN_ON TEST_SANITIZED

static const char *const archs[] = {"thread", "loop", "pool", "hybrid"};

struct server {
    pid_t pid;
    int port;
};

/* Starts the server; returns 0, or -1 if it exited before listening (the
 * hybrid architecture needs the process pool backend). */
static int server_start(struct server *s, const char *arch, const char *extra)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* A failing test aborts; the server must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl(SERVER, "hybrid_server", "--arch", arch, "--port", "0", "--workers", "2",
              extra ? extra : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[128] = {0};
    size_t len = 0;
    while (len < sizeof line - 1) {
        ssize_t n = read(pfd[0], line + len, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || line[len] == '\n')
            break;
        len++;
    }
    close(pfd[0]);
    s->pid = pid;
    if (sscanf(line, "listening on 127.0.0.1:%d", &s->port) != 1) {
        int st = test_wait(pid);
        printf("# server --arch %s did not start (exit status %d)\n", arch, st);
        return -1;
    }
    return 0;
}

static int server_alive(const struct server *s)
{
    int st;
    return waitpid(s->pid, &st, WNOHANG) == 0;
}

/* SIGTERM and reap; the server must exit 0 (a clean shutdown). */
static void server_stop(struct server *s)
{
    CHECK(kill(s->pid, SIGTERM) == 0);
    int st = test_wait(s->pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TEST_FAIL("server exit status %d", st);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) /* the server may close first on a bad request */
            return;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

/* Reads with a timeout so a server that stops answering fails the test
 * instead of hanging it. 0 on EOF, -1 on error/timeout. */
static ssize_t read_some(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return -1;
    ssize_t n = recv(fd, buf, cap, 0);
    return n < 0 ? -1 : n;
}

/* Connection state for reading several responses off one stream. */
struct stream {
    int fd;
    int head; /* the next response answers a HEAD: no body follows */
    char buf[8192];
    size_t len;
};

/* Reads one response: *code, body (NUL-ended) and whether the server said
 * Connection: close. Returns 0, or -1 if the stream ended first. */
static int read_response(struct stream *st, int *code, char *body, size_t cap, int *closing)
{
    for (;;) {
        char *end = st->len ? memmem(st->buf, st->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hlen = (size_t)(end - st->buf) + 4;
            st->buf[hlen - 1] = 0;
            CHECK(sscanf(st->buf, "HTTP/1.1 %d", code) == 1);
            char *cl = strcasestr(st->buf, "\r\nContent-Length: ");
            CHECK(cl != NULL);
            size_t blen = st->head ? 0 : strtoul(cl + 18, NULL, 10);
            st->head = 0;
            if (closing)
                *closing = strcasestr(st->buf, "\r\nConnection: close") != NULL;
            while (st->len < hlen + blen) {
                ssize_t n = read_some(st->fd, st->buf + st->len, sizeof st->buf - st->len, 30000);
                CHECK(n > 0);
                st->len += (size_t)n;
            }
            size_t k = blen < cap - 1 ? blen : cap - 1;
            memcpy(body, st->buf + hlen, k);
            body[k] = 0;
            memmove(st->buf, st->buf + hlen + blen, st->len - hlen - blen);
            st->len -= hlen + blen;
            return 0;
        }
        CHECK(st->len < sizeof st->buf);
        ssize_t n = read_some(st->fd, st->buf + st->len, sizeof st->buf - st->len, 30000);
        if (n <= 0)
            return -1;
        st->len += (size_t)n;
    }
}

static void get(struct stream *st, const char *path)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    send_all(st->fd, req, (size_t)n);
}

static void expect(struct stream *st, int want_code, const char *want_body)
{
    int code;
    char body[256];
    CHECK(read_response(st, &code, body, sizeof body, NULL) == 0);
    if (code != want_code || (want_body && strcmp(body, want_body) != 0))
        TEST_FAIL("got %d \"%s\", expected %d \"%s\"", code, body, want_code,
                  want_body ? want_body : "*");
}

static int stream_at_eof(struct stream *st)
{
    char c;
    return st->len == 0 && read_some(st->fd, &c, 1, 30000) == 0;
}

/* ------------------------------------------------------------ cases */

static void keepalive_in(const char *arch)
{
    struct server s;
    if (server_start(&s, arch, NULL) != 0)
        return;
    struct stream st = {.fd = connect_to(s.port)};
    get(&st, "/");
    expect(&st, 200, "ok\n");
    get(&st, "/io?ms=1");
    expect(&st, 200, "io 1\n");
    get(&st, "/cpu?n=100");
    expect(&st, 200, "primes 25\n");
    get(&st, "/nowhere");
    expect(&st, 404, NULL);
    get(&st, "/crash"); /* not enabled: just another unknown path */
    expect(&st, 404, NULL);
    /* Three pipelined requests in one write, answered in order. */
    const char *three = "GET /cpu?n=10 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "GET /io?ms=2 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
    send_all(st.fd, three, strlen(three));
    expect(&st, 200, "primes 4\n");
    expect(&st, 200, "io 2\n");
    st.head = 1;
    expect(&st, 200, ""); /* HEAD: headers only */
    /* A body is read and skipped; then Connection: close ends it. */
    const char *body = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /io?ms=0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    send_all(st.fd, body, strlen(body));
    expect(&st, 200, "ok\n");
    int code, closing;
    char b[64];
    CHECK(read_response(&st, &code, b, sizeof b, &closing) == 0);
    CHECK_EQ(code, 200);
    CHECK(closing);
    CHECK(stream_at_eof(&st));
    close(st.fd);
    /* HTTP/1.0 closes unless asked to keep alive. */
    st = (struct stream){.fd = connect_to(s.port)};
    send_all(st.fd, "GET / HTTP/1.0\r\n\r\n", 18);
    expect(&st, 200, "ok\n");
    CHECK(stream_at_eof(&st));
    close(st.fd);
    server_stop(&s);
}

static void test_keepalive_and_pipelining(void)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        keepalive_in(archs[i]);
}

struct bad {
    const char *req;
    int code;
};
static const struct bad bad_requests[] = {
    {"garbage\r\n\r\n", 400},
    {"GET\r\n\r\n", 400},
    {"GET / \r\n\r\n", 400},
    {"GET / HTTP/1.1\r\n\r\n", 400},                        /* no Host */
    {"GET noslash HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400},
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTQ/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},            /* space before colon */
    {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},  /* obs-fold */
    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
    {"GET /io?ms=abc HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /io?ms=99999999 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /cpu?n=1 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /cpu?n= HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"\x01\x02\x03\xff\r\n\r\n", 400},
    {"POST / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
    {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413},
};

static void bad_requests_in(const char *arch)
{
    struct server s;
    if (server_start(&s, arch, NULL) != 0)
        return;
    for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
        struct stream st = {.fd = connect_to(s.port)};
        send_all(st.fd, bad_requests[i].req, strlen(bad_requests[i].req));
        int code, closing;
        char body[128];
        if (read_response(&st, &code, body, sizeof body, &closing) != 0)
            TEST_FAIL("%s: no answer to bad request %zu", arch, i);
        if (code != bad_requests[i].code)
            TEST_FAIL("%s: request %zu answered %d, expected %d", arch, i, code,
                      bad_requests[i].code);
        CHECK(closing);
        CHECK(stream_at_eof(&st));
        close(st.fd);
    }
    /* Headers that never end: 431 once they pass 8 KiB. */
    struct stream st = {.fd = connect_to(s.port)};
    send_all(st.fd, "GET / HTTP/1.1\r\n", 16);
    char filler[1024];
    memset(filler, 'a', sizeof filler);
    memcpy(filler, "X-Pad: ", 7);
    filler[sizeof filler - 2] = '\r', filler[sizeof filler - 1] = '\n';
    for (int i = 0; i < 9; i++)
        send_all(st.fd, filler, sizeof filler);
    int code;
    char body[128];
    CHECK(read_response(&st, &code, body, sizeof body, NULL) == 0);
    CHECK_EQ(code, 431);
    close(st.fd);
    CHECK(server_alive(&s));
    st = (struct stream){.fd = connect_to(s.port)};
    get(&st, "/");
    expect(&st, 200, "ok\n");
    close(st.fd);
    server_stop(&s);
}

static void test_bad_requests_get_400(void)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        bad_requests_in(archs[i]);
}

/* xorshift: a reproducible byte source. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fuzz_in(const char *arch, long rounds)
{
    struct server s;
    if (server_start(&s, arch, NULL) != 0)
        return;
    static const char *const seeds[] = {
        "GET /io?ms=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        "GET /cpu?n=1000 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    };
    int answered = 0;
    for (long r = 0; r < rounds; r++) {
        char msg[2048];
        size_t len;
        if (r % 2 == 0) { /* pure noise, sometimes with line breaks */
            len = 1 + rng() % sizeof msg;
            for (size_t i = 0; i < len; i++) {
                uint64_t x = rng();
                msg[i] = (x & 0xf00) == 0 ? '\n' : (x & 0xf00) == 0x100 ? '\r' : (char)x;
            }
        } else { /* a valid request, mutated */
            const char *seed = seeds[rng() % 3];
            len = strlen(seed);
            memcpy(msg, seed, len);
            int flips = 1 + (int)(rng() % 4);
            for (int k = 0; k < flips; k++)
                msg[rng() % len] = (char)rng();
            if (rng() % 4 == 0) /* and sometimes cut short */
                len = 1 + rng() % len;
        }
        struct stream st = {.fd = connect_to(s.port)};
        send_all(st.fd, msg, len);
        shutdown(st.fd, SHUT_WR);
        /* Whatever comes back must be HTTP; then the server must close. */
        char buf[4096];
        ssize_t total = 0, n;
        while ((n = read_some(st.fd, buf + total, sizeof buf - 1 - (size_t)total, 30000)) > 0 &&
               total + n < (ssize_t)sizeof buf - 1)
            total += n;
        CHECK(n == 0 || total + n >= (ssize_t)sizeof buf - 1); /* closed, not timed out */
        if (total > 0) {
            buf[total] = 0;
            CHECK(strncmp(buf, "HTTP/1.1 ", 9) == 0);
            answered++;
        }
        close(st.fd);
        if (!server_alive(&s))
            TEST_FAIL("%s server died on fuzz round %ld", arch, r);
    }
    printf("# %s: %ld random requests, %d answered before close, server alive\n", arch, rounds,
           answered);
    struct stream st = {.fd = connect_to(s.port)};
    get(&st, "/");
    expect(&st, 200, "ok\n");
    close(st.fd);
    server_stop(&s);
}

static void test_fuzz_random_bytes(void)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        fuzz_in(archs[i], test_scale(400));
}

/* Hybrid: one client's request segfaults its worker. That client gets 500;
 * the I/O and CPU requests in flight on other connections get their answers,
 * and every connection (the crashed one's too) keeps working. */
static void test_hybrid_crash_is_one_500(void)
{
    struct server s;
    if (server_start(&s, "hybrid", "--allow-crash") != 0)
        return;
    enum { NIO = 8 };
    struct stream io[NIO], cpu = {.fd = connect_to(s.port)}, bad = {.fd = connect_to(s.port)};
    for (int i = 0; i < NIO; i++) {
        io[i] = (struct stream){.fd = connect_to(s.port)};
        get(&io[i], "/io?ms=200");
    }
    get(&cpu, "/cpu?n=100000");
    get(&bad, "/crash");
    int code;
    char body[256];
    CHECK(read_response(&bad, &code, body, sizeof body, NULL) == 0);
    CHECK_EQ(code, 500);
    CHECK(strstr(body, "worker crashed") != NULL);
    CHECK(SAN_ON || strstr(body, "signal 11") != NULL);
    /* While those I/O waits are still pending, more requests are served. */
    get(&bad, "/cpu?n=1000");
    expect(&bad, 200, "primes 168\n");
    expect(&cpu, 200, "primes 9592\n");
    for (int i = 0; i < NIO; i++)
        expect(&io[i], 200, "io 200\n");
    /* Crash a few more times: workers are replaced, everyone else served. */
    for (int k = 0; k < 3; k++) {
        get(&bad, "/crash");
        get(&cpu, "/cpu?n=5000");
        for (int i = 0; i < NIO; i++)
            get(&io[i], "/io?ms=5");
        expect(&bad, 500, NULL);
        expect(&cpu, 200, "primes 669\n");
        for (int i = 0; i < NIO; i++)
            expect(&io[i], 200, "io 5\n");
    }
    CHECK(server_alive(&s));
    for (int i = 0; i < NIO; i++)
        close(io[i].fd);
    close(cpu.fd);
    close(bad.fd);
    server_stop(&s);
}

/* For contrast, the documented cost of threads: the same crash in the
 * thread-pool architecture takes the whole server down. */
static void test_pool_crash_kills_server(void)
{
    struct server s;
    CHECK(server_start(&s, "pool", "--allow-crash") == 0);
    struct stream st = {.fd = connect_to(s.port)};
    get(&st, "/crash");
    CHECK(stream_at_eof(&st)); /* no answer: the process died */
    close(st.fd);
    int status = test_wait(s.pid);
    if (SAN_ON) /* the sanitizer turns it into a report and exit 1 */
        CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
              (WIFEXITED(status) && WEXITSTATUS(status) != 0));
    else
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
}

/* SIGTERM with long CPU tasks and long waits in flight: the server cancels
 * them, closes every connection and exits 0, promptly. */
static void stop_in_flight(const char *arch)
{
    struct server s;
    if (server_start(&s, arch, NULL) != 0)
        return;
    struct stream st[6];
    for (int i = 0; i < 6; i++) {
        st[i] = (struct stream){.fd = connect_to(s.port)};
        get(&st[i], i < 3 ? "/cpu?n=20000000" : "/io?ms=60000");
    }
    /* An answer on a fresh connection shows the server is up and has had
     * turns to read the six above; whether it has started them or not, the
     * stop must be clean and quick. */
    struct stream probe = {.fd = connect_to(s.port)};
    get(&probe, "/");
    expect(&probe, 200, "ok\n");
    double t0 = crew_now();
    server_stop(&s);
    CHECK(crew_now() - t0 < 10.0);
    for (int i = 0; i < 6; i++) {
        CHECK(stream_at_eof(&st[i]));
        close(st[i].fd);
    }
    close(probe.fd);
}

static void test_stop_with_work_in_flight(void)
{
    stop_in_flight("pool");
    stop_in_flight("hybrid");
}

static const test_case cases[] = {
    TEST_CASE(test_keepalive_and_pipelining),
    TEST_CASE(test_bad_requests_get_400),
    TEST_CASE(test_fuzz_random_bytes),
    TEST_CASE(test_hybrid_crash_is_one_500),
    TEST_CASE(test_pool_crash_kills_server),
    TEST_CASE(test_stop_with_work_in_flight),
};
TEST_MAIN_NOHELPERS(cases)
