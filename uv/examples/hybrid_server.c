/*
 * hybrid_server.c -- an HTTP/1.1 server on loopback with I/O-bound and
 * CPU-bound endpoints, in four architectures:
 *
 *   --arch thread   a thread per connection; every request is handled inline
 *                   on its connection's thread (blocking waits, CPU work).
 *   --arch loop     one libuv event loop does everything, CPU work included:
 *                   while it counts primes, nobody else is served.
 *   --arch pool     the libuv loop does the I/O; CPU work goes to a crew
 *                   thread pool through the crew_uv adapter.
 *   --arch hybrid   the same with a crew process pool: CPU work runs in worker
 *                   processes, so a task that crashes costs one 500 response
 *                   and one replaced worker, not the server.
 *
 * Endpoints (GET or HEAD):
 *   /io?ms=N     waits N milliseconds (0..60000, default 10), then "io N"
 *   /cpu?n=N     counts the primes below N (2..20000000, default 50000)
 *   /crash       a CPU request whose task dies of SIGSEGV (only with
 *                --allow-crash; 404 otherwise): shows what each architecture
 *                does with a crash
 *   /            "ok"
 *
 * HTTP: request line and headers are parsed strictly (RFC 9112): a method
 * token, an origin-form target, HTTP/1.0 or 1.1; header names are tokens,
 * no whitespace before the colon, no obsolete line folding; HTTP/1.1 needs
 * Host; a body announced by Content-Length (up to 1 MiB) is read and
 * discarded; Transfer-Encoding is refused (501). Anything malformed gets 400
 * and the connection is closed; headers over 8 KiB get 431. Keep-alive is the
 * default for 1.1 (Connection: close ends it), opt-in for 1.0; pipelined
 * requests are answered in order, one at a time.
 *
 *   hybrid_server --arch hybrid --port 8080 [--workers N] [--allow-crash]
 *                 [--task-timeout SECONDS] [--cpu-nice N]
 *
 * --cpu-nice N (pool, hybrid) runs the CPU work at nice N, below the loop
 * thread, so that under CPU saturation the loop still gets a core at once.
 *
 * It listens on 127.0.0.1 only, prints "listening on 127.0.0.1:PORT" (port 0
 * picks a free one) and runs until SIGINT/SIGTERM, then closes every
 * connection, cancels in-flight CPU work and exits 0.
 *
 * Why libuv for the loop architectures: the point of the hybrid is that crew
 * plugs into the event loop C programs already use, so the server is written
 * the way a libuv program is, and its CPU work goes through crew_uv. The
 * plain-epoll use of the completion fd is shown by examples/epoll_pool.c.
 */
#include <crew_uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER 8192     /* request line + headers */
#define BUF_CAP (16 * 1024) /* per-connection input buffer, at most */
#define MAX_BODY (1 << 20)

enum arch { ARCH_THREAD, ARCH_LOOP, ARCH_POOL, ARCH_HYBRID };
static enum arch arch = ARCH_HYBRID;
static int allow_crash;

/* ================================================================ the work */

/* Trial division, deliberately naive: CPU work whose cost grows with n. A
 * pool task checks its cancel flag now and then, so shutting the server down
 * does not wait for a long count. */
static uint32_t count_primes(crew_task *t, uint32_t n)
{
    uint32_t c = 0;
    for (uint32_t k = 2; k < n; k++) {
        if ((k & 4095) == 0 && t && crew_task_cancelled(t))
            return 0;
        uint32_t d = 2;
        while (d * d <= k && k % d)
            d++;
        c += d * d > k;
    }
    return c;
}

struct cpu_arg {
    uint32_t n;
    uint32_t crash;
    int32_t nice; /* --cpu-nice: the worker's priority for CPU work */
};

static int cpu_nice;

/* Workers of a process pool are started from a fresh image of this program
 * (main never runs there), so the priority travels in the argument, and each
 * worker thread or process applies it once (Linux nice values are per
 * thread). Lowering the CPU work's priority keeps the loop thread, which
 * serves every connection, first in line for a core. */
static void apply_nice(int nice)
{
    static __thread int applied;
    if (nice != 0 && !applied) {
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
        applied = 1;
    }
}

/* The pool task: the same computation, run by a worker thread or process. */
static int task_primes(crew_task *t, const void *arg, size_t arg_len, void *result,
                       size_t result_cap, size_t *result_len)
{
    struct cpu_arg a;
    if (arg_len != sizeof a || result_cap < sizeof(uint32_t))
        return CREW_EINVAL;
    memcpy(&a, arg, sizeof a);
    if (t)
        apply_nice(a.nice);
    if (a.crash) {
        volatile int *nowhere = NULL;
        *nowhere = 1; /* a real segfault, as a buggy parser would do */
    }
    uint32_t c = count_primes(t, a.n);
    memcpy(result, &c, sizeof c);
    *result_len = sizeof c;
    return 0;
}

/* ================================================================ HTTP parsing */

enum route { R_ROOT, R_IO, R_CPU, R_CRASH, R_NOTFOUND };

struct request {
    int status;        /* 0: well-formed; else the error status to answer */
    int keep_alive;
    int head;          /* HEAD: no body in the response */
    enum route route;
    long param;        /* ms for /io, n for /cpu */
    size_t header_len; /* bytes of request line + headers, CRLFCRLF included */
    size_t body_len;   /* Content-Length */
};

enum { PARSE_MORE = 0, PARSE_DONE = 1 };

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

/* Does the comma-separated header value contain token `tok`? */
static int has_token(const char *v, size_t len, const char *tok)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && ieq(v + s, e - s, tok))
            return 1;
    }
    return 0;
}

/* A decimal parameter "name=digits" in the query, or `def`; -1 if malformed. */
static long query_param(const char *q, size_t len, const char *name, long def, long lo, long hi)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t s = i;
        while (i < len && q[i] != '&')
            i++;
        if (i - s > nl && memcmp(q + s, name, nl) == 0 && q[s + nl] == '=') {
            long v = 0;
            size_t k = s + nl + 1;
            if (k == i)
                return -1;
            for (; k < i; k++) {
                if (q[k] < '0' || q[k] > '9' || v > 100000000)
                    return -1;
                v = v * 10 + (q[k] - '0');
            }
            return v < lo || v > hi ? -1 : v;
        }
        i++;
    }
    return def;
}

static void route_target(const char *t, size_t len, struct request *r)
{
    const char *q = memchr(t, '?', len);
    size_t plen = q ? (size_t)(q - t) : len;
    size_t qlen = q ? len - plen - 1 : 0;
    const char *qs = q ? q + 1 : "";
    if (plen == 1) {
        r->route = R_ROOT;
    } else if (plen == 3 && memcmp(t, "/io", 3) == 0) {
        r->route = R_IO;
        r->param = query_param(qs, qlen, "ms", 10, 0, 60000);
    } else if (plen == 4 && memcmp(t, "/cpu", 4) == 0) {
        r->route = R_CPU;
        r->param = query_param(qs, qlen, "n", 50000, 2, 20000000);
    } else if (plen == 6 && memcmp(t, "/crash", 6) == 0 && allow_crash) {
        r->route = R_CRASH;
    } else {
        r->route = R_NOTFOUND;
    }
    if (r->param < 0)
        r->status = 400;
}

/* Parses one request at buf[0..len). PARSE_MORE: the headers are not complete
 * yet (r->status is 431 if they can no longer fit). PARSE_DONE: *r is filled;
 * r->status != 0 means "answer that and close". Never reads past len. */
static int parse_request(const char *buf, size_t len, struct request *r)
{
    memset(r, 0, sizeof *r);
    /* Find the end of the header block: an empty line. Lines end in CRLF;
     * a bare LF is accepted as the RFC allows, a bare CR is not. */
    size_t end = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            end = i + 3;
            break;
        }
    }
    if (end == 0) {
        if (len >= MAX_HEADER)
            r->status = 431;
        /* Fail fast on garbage: a request line must start with a token. */
        else if (len > 0 && !is_tchar((unsigned char)buf[0]))
            r->status = 400;
        return r->status ? PARSE_DONE : PARSE_MORE;
    }
    if (end > MAX_HEADER) {
        r->status = 431;
        return PARSE_DONE;
    }
    r->header_len = end;

    /* Request line: method SP target SP HTTP/1.x */
    const char *p = buf, *lim = buf + end;
    const char *m = p;
    while (p < lim && is_tchar((unsigned char)*p))
        p++;
    size_t mlen = (size_t)(p - m);
    if (mlen == 0 || p >= lim || *p != ' ')
        goto bad;
    p++;
    const char *t = p;
    while (p < lim && (unsigned char)*p > ' ' && *p != 0x7f)
        p++;
    size_t tlen = (size_t)(p - t);
    if (tlen == 0 || t[0] != '/' || p >= lim || *p != ' ')
        goto bad;
    p++;
    if (lim - p < 9 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' ||
        p[6] != '.' || p[7] < '0' || p[7] > '9')
        goto bad;
    int major = p[5] - '0', minor = p[7] - '0';
    p += 8;
    if (*p == '\r')
        p++;
    if (*p != '\n')
        goto bad;
    p++;
    if (major != 1) {
        r->status = 505;
        return PARSE_DONE;
    }
    r->keep_alive = minor >= 1;

    /* Headers. */
    int have_host = 0, have_cl = 0, have_te = 0;
    size_t cl = 0;
    for (;;) {
        const char *ls = p;
        while (p < lim && *p != '\n')
            p++;
        const char *le = p; /* at '\n' */
        if (le > ls && le[-1] == '\r')
            le--;
        p++; /* past '\n' */
        if (le == ls)
            break; /* the empty line */
        if (*ls == ' ' || *ls == '\t')
            goto bad; /* obsolete line folding */
        const char *n = ls;
        while (n < le && is_tchar((unsigned char)*n))
            n++;
        if (n == ls || n >= le || *n != ':')
            goto bad;
        size_t nlen = (size_t)(n - ls);
        const char *v = n + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *c = v; c < ve; c++)
            if ((unsigned char)*c < ' ' && *c != '\t')
                goto bad; /* control characters (a bare CR included) */
        size_t vlen = (size_t)(ve - v);
        if (ieq(ls, nlen, "host")) {
            if (have_host++)
                goto bad;
        } else if (ieq(ls, nlen, "content-length")) {
            if (vlen == 0 || vlen > 9)
                goto bad;
            size_t x = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    goto bad;
                x = x * 10 + (size_t)(v[i] - '0');
            }
            if (have_cl++ && x != cl)
                goto bad;
            cl = x;
        } else if (ieq(ls, nlen, "transfer-encoding")) {
            have_te = 1;
        } else if (ieq(ls, nlen, "connection")) {
            if (has_token(v, vlen, "close"))
                r->keep_alive = 0;
            else if (has_token(v, vlen, "keep-alive"))
                r->keep_alive = 1;
        }
    }
    if (minor >= 1 && !have_host)
        goto bad;
    if (have_te) {
        r->status = have_cl ? 400 : 501; /* both at once is a smuggling attempt */
        return PARSE_DONE;
    }
    if (cl > MAX_BODY) {
        r->status = 413;
        return PARSE_DONE;
    }
    r->body_len = cl;
    if (ieq(m, mlen, "HEAD"))
        r->head = 1;
    else if (mlen != 3 || memcmp(m, "GET", 3) != 0) {
        r->status = 405;
        return PARSE_DONE;
    }
    route_target(t, tlen, r);
    return PARSE_DONE;
bad:
    r->status = 400;
    r->keep_alive = 0;
    return PARSE_DONE;
}

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Formats a full response into out (cap >= 512); returns its length. */
static size_t format_response(char *out, size_t cap, int code, int keep_alive, int head,
                              const char *body)
{
    size_t blen = strlen(body);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nServer: crew-hybrid\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n%s",
                     code, reason(code), blen, keep_alive ? "keep-alive" : "close",
                     code == 405 ? "Allow: GET, HEAD\r\n" : "", head ? "" : body);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void error_body(int code, char *body, size_t cap)
{
    snprintf(body, cap, "%d %s\n", code, reason(code));
}

/* ================================================================ thread per connection */

static int listen_fd = -1;
static int listen_port;

/* Said once everything is ready to serve: scripts wait for this line. */
static void say_listening(void)
{
    static const char *names[] = {"thread", "loop", "pool", "hybrid"};
    printf("listening on 127.0.0.1:%d arch %s\n", listen_port, names[arch]);
    fflush(stdout);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *conn_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(4096);
    size_t cap = 4096, len = 0, skip = 0;
    char out[1024], body[128];
    for (;;) {
        /* Drop the body of the previous request. */
        size_t k = skip < len ? skip : len;
        memmove(buf, buf + k, len - k);
        len -= k;
        skip -= k;
        struct request r = {0};
        int pr = skip ? PARSE_MORE : parse_request(buf, len, &r);
        if (pr == PARSE_MORE) {
            if (len == cap) {
                size_t ncap = cap * 2 > BUF_CAP ? BUF_CAP : cap * 2;
                if (ncap == cap)
                    break;
                char *nb = realloc(buf, ncap);
                if (!nb)
                    break;
                buf = nb, cap = ncap;
            }
            ssize_t n = recv(fd, buf + len, cap - len, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
            continue;
        }
        int code = r.status;
        if (code == 0) {
            switch (r.route) {
            case R_ROOT: code = 200, snprintf(body, sizeof body, "ok\n"); break;
            case R_IO: {
                struct timespec ts = {r.param / 1000, (r.param % 1000) * 1000000L};
                while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                    ;
                code = 200, snprintf(body, sizeof body, "io %ld\n", r.param);
                break;
            }
            case R_CPU:
                code = 200, snprintf(body, sizeof body, "primes %u\n", count_primes(NULL, (uint32_t)r.param));
                break;
            case R_CRASH: {
                struct cpu_arg a = {2, 1, 0};
                uint32_t res;
                size_t rl;
                task_primes(NULL, &a, sizeof a, &res, sizeof res, &rl); /* dies here */
                code = 500, snprintf(body, sizeof body, "unreachable\n");
                break;
            }
            default: code = 404, error_body(404, body, sizeof body); break;
            }
        } else {
            error_body(code, body, sizeof body);
        }
        int keep = r.status == 0 ? r.keep_alive : 0; /* parse errors close */
        size_t n = format_response(out, sizeof out, code, keep, r.head, body);
        if (write_all(fd, out, n) != 0 || !keep)
            break;
        skip = r.header_len + r.body_len;
    }
    free(buf);
    close(fd);
    return NULL;
}

static volatile sig_atomic_t stopping;
static void on_stop_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static int run_threads(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal; /* no SA_RESTART: accept returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Default stack size: what a thread-per-connection server gets unless
     * someone tunes it. */
    say_listening();
    while (!stopping) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL); /* back off; the backlog keeps them */
                continue;
            }
            perror("accept");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t th;
        if (pthread_create(&th, &attr, conn_thread, (void *)(intptr_t)fd) != 0)
            close(fd); /* out of threads: this client is refused */
    }
    pthread_attr_destroy(&attr);
    /* Connection threads are detached and die with the process. */
    return 0;
}

/* ================================================================ event loop */

static uv_loop_t *loop;
static uv_tcp_t server;
static crew_uv *cu;
static crew_pool *pool;
static long open_conns;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    char *buf;
    size_t cap, len, skip;
    int refs;      /* the two handles + a CPU task in flight */
    int busy;      /* a request is being served: parse no further */
    int reading;
    int closing;
    struct request req;
    crew_future *task;
};

struct wreq {
    uv_write_t w;
    struct conn *c;
    int keep;
    size_t len;
    char data[];
};

static void conn_unref(struct conn *c)
{
    if (--c->refs == 0) {
        free(c->buf);
        free(c);
        open_conns--;
    }
}

static void on_handle_closed(uv_handle_t *h) { conn_unref(h->data); }

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    /* A CPU task in flight keeps its reference; its callback sees `closing`
     * and drops the answer. Cancel it: nobody wants it any more. */
    if (c->task)
        crew_future_cancel(c->task);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void process(struct conn *c);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct conn *c = h->data;
    if (c->len == c->cap && c->cap < BUF_CAP) {
        size_t ncap = c->cap * 2 > BUF_CAP ? BUF_CAP : c->cap * 2;
        char *nb = realloc(c->buf, ncap);
        if (nb)
            c->buf = nb, c->cap = ncap;
    }
    b->base = c->buf + c->len;
    b->len = c->cap - c->len;
}

static void on_written(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct conn *c = wr->c;
    int keep = wr->keep;
    free(wr);
    conn_unref(c); /* the write's own reference */
    if (c->closing)
        return;
    if (status != 0 || !keep) {
        conn_close(c);
        return;
    }
    c->busy = 0;
    c->skip = c->req.header_len + c->req.body_len;
    process(c); /* the next pipelined request, if any */
    if (!c->closing && !c->busy && !c->reading && c->len < c->cap) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void respond(struct conn *c, int code, const char *body)
{
    /* A request that did not parse ends the connection (where the next one
     * starts is unknown); any answer to a well-formed one keeps it, a 500
     * from a crashed worker included. */
    int keep = c->req.status == 0 ? c->req.keep_alive : 0;
    struct wreq *wr = malloc(sizeof *wr + 1024);
    if (!wr) {
        conn_close(c);
        return;
    }
    wr->c = c;
    wr->keep = keep;
    wr->len = format_response(wr->data, 1024, code, keep, c->req.head, body);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    c->refs++;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(wr);
        c->refs--;
        conn_close(c);
    }
}

static void on_io_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    char body[64];
    snprintf(body, sizeof body, "io %ld\n", c->req.param);
    respond(c, 200, body);
}

static void on_cpu_done(crew_uv *u, crew_future *f, int status, void *data)
{
    (void)u;
    struct conn *c = data;
    c->task = NULL;
    if (!c->closing) {
        char body[128];
        if (status == 0) {
            const void *r;
            size_t len;
            uint32_t primes = 0;
            if (crew_future_result(f, &r, &len) == 0 && len == sizeof primes)
                memcpy(&primes, r, sizeof primes);
            snprintf(body, sizeof body, "primes %u\n", primes);
            respond(c, 200, body);
        } else if (status == CREW_ECRASHED) {
            crew_failure fl = {0};
            crew_future_failure(f, &fl);
            snprintf(body, sizeof body, "500 worker crashed (pid %d, signal %d)\n", (int)fl.pid,
                     fl.signal);
            respond(c, 500, body);
        } else if (status == CREW_ETIMEDOUT) {
            respond(c, 504, "504 CPU task ran past its deadline\n");
        } else {
            snprintf(body, sizeof body, "503 %s\n", crew_strerror(status));
            respond(c, 503, body);
        }
    }
    conn_unref(c);
}

static void serve(struct conn *c)
{
    char body[128];
    struct request *r = &c->req;
    switch (r->route) {
    case R_ROOT: respond(c, 200, "ok\n"); return;
    case R_IO: uv_timer_start(&c->timer, on_io_timer, (uint64_t)r->param, 0); return;
    case R_CPU:
    case R_CRASH: {
        struct cpu_arg a = {(uint32_t)(r->route == R_CPU ? r->param : 2), r->route == R_CRASH,
                            cpu_nice};
        if (arch == ARCH_LOOP) {
            uint32_t res = 0;
            size_t rl;
            task_primes(NULL, &a, sizeof a, &res, sizeof res, &rl); /* blocks the loop */
            snprintf(body, sizeof body, "primes %u\n", res);
            respond(c, 200, body);
            return;
        }
        int rc = crew_uv_submit(cu, task_primes, &a, sizeof a, on_cpu_done, c, &c->task);
        if (rc != 0) {
            snprintf(body, sizeof body, "503 %s\n", crew_strerror(rc));
            respond(c, 503, body);
            return;
        }
        c->refs++;
        return;
    }
    default: error_body(404, body, sizeof body); respond(c, 404, body); return;
    }
}

/* Parse and start the next request unless one is being served. */
static void process(struct conn *c)
{
    if (c->busy || c->closing)
        return;
    size_t k = c->skip < c->len ? c->skip : c->len;
    memmove(c->buf, c->buf + k, c->len - k);
    c->len -= k;
    c->skip -= k;
    if (c->skip > 0)
        return; /* still inside the previous request's body */
    int pr = parse_request(c->buf, c->len, &c->req);
    if (pr == PARSE_MORE)
        return;
    c->busy = 1;
    if (c->req.status != 0) {
        char body[64];
        error_body(c->req.status, body, sizeof body);
        respond(c, c->req.status, body);
        return;
    }
    serve(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = s->data;
    if (n < 0) {
        conn_close(c); /* EOF or error: an unsent answer is dropped */
        return;
    }
    c->len += (size_t)n;
    process(c);
    /* A full buffer while a request is served: stop reading (backpressure)
     * until the answer is written. A full buffer with nothing being served
     * cannot happen: parse_request answers 431 before. */
    if (!c->closing && c->len == c->cap && c->cap >= BUF_CAP) {
        c->reading = 0;
        uv_read_stop(s);
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status != 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->buf = malloc(4096);
    c->cap = 4096;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->refs = 2;
    open_conns++;
    if (!c->buf || uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (crew_uv_owns_handle(h)) {
        return; /* closed by on_stop after the connections */
    } else if (h->type == UV_TCP && h != (uv_handle_t *)&server) {
        conn_close(h->data);
    } else if (h->type != UV_TIMER) { /* timers go with their connection */
        uv_close(h, NULL);
    }
}

/* Connections first (their in-flight tasks are cancelled and their answers
 * dropped), then the adapter, which delivers what is left. */
static void on_stop(uv_signal_t *s, int sig)
{
    (void)s, (void)sig;
    uv_walk(loop, close_walk, NULL);
    if (cu)
        crew_uv_close(cu, NULL, NULL);
}

static int run_loop(int workers, double task_timeout)
{
    static uv_loop_t the_loop;
    loop = &the_loop;
    uv_loop_init(loop);
    if (arch != ARCH_LOOP) {
        crew_pool_options po = {
            .kind = arch == ARCH_HYBRID ? CREW_PROCESSES : CREW_THREADS,
            .workers = workers,
            .task_timeout = task_timeout,
            .max_pending = 4096, /* > one CPU request per connection at 1000+ */
            /* Arguments and results are a few bytes: say so, and the process
             * pool's shared slots shrink from 64 KiB to this. */
            .max_arg_size = 64,
            .max_result_size = 64,
            /* The crash breaker: 100 worker deaths within a second mark the
             * pool broken (CPU requests then get 503) -- a flood of crashes
             * is a bug to stop, not to keep forking workers for. The default
             * (20) is a little tight for a demo that invites /crash. The
             * breaker keeps one timestamp per allowed death, so this is
             * also a memory setting: do not make it huge. */
            .breaker_crashes = 100,
        };
        int rc = crew_pool_create(&pool, &po);
        if (rc == 0)
            rc = crew_uv_create(&cu, loop, pool);
        if (rc != 0) {
            fprintf(stderr, "hybrid_server: pool: %s\n", crew_strerror(rc));
            return 1;
        }
    }
    uv_tcp_init(loop, &server);
    if (uv_tcp_open(&server, listen_fd) != 0 ||
        uv_listen((uv_stream_t *)&server, 4096, on_connection) != 0) {
        fprintf(stderr, "hybrid_server: listen failed\n");
        return 1;
    }
    uv_signal_t sigint, sigterm;
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_stop, SIGINT);
    uv_signal_start(&sigterm, on_stop, SIGTERM);
    say_listening();
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    if (pool)
        crew_pool_destroy(pool);
    if (rc != 0 || open_conns != 0) {
        fprintf(stderr, "hybrid_server: unclean shutdown (%s, %ld connections)\n",
                uv_strerror(rc), open_conns);
        return 1;
    }
    return 0;
}

/* ================================================================ main */

static int usage(void)
{
    fprintf(stderr, "usage: hybrid_server [--arch thread|loop|pool|hybrid] [--port N]\n"
                    "                     [--workers N] [--task-timeout S] [--cpu-nice 0..19]\n"
                    "                     [--allow-crash]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int port = 8080, workers = 0;
    double task_timeout = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--allow-crash") == 0) {
            allow_crash = 1;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--arch") == 0) {
            if (strcmp(v, "thread") == 0)
                arch = ARCH_THREAD;
            else if (strcmp(v, "loop") == 0)
                arch = ARCH_LOOP;
            else if (strcmp(v, "pool") == 0)
                arch = ARCH_POOL;
            else if (strcmp(v, "hybrid") == 0)
                arch = ARCH_HYBRID;
            else
                return usage();
        } else if (strcmp(a, "--port") == 0) {
            port = atoi(v);
        } else if (strcmp(a, "--workers") == 0) {
            workers = atoi(v);
        } else if (strcmp(a, "--cpu-nice") == 0) {
            cpu_nice = atoi(v);
        } else if (strcmp(a, "--task-timeout") == 0) {
            task_timeout = atof(v);
        } else {
            return usage();
        }
    }
    if (port < 0 || port > 65535 || workers < 0 || task_timeout < 0 || cpu_nice < 0 ||
        cpu_nice > 19)
        return usage();
    signal(SIGPIPE, SIG_IGN);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, by design */
    socklen_t sl = sizeof sin;
    if (bind(listen_fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(listen_fd, 4096) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&sin, &sl) != 0) {
        perror("hybrid_server: bind/listen 127.0.0.1");
        return 1;
    }
    listen_port = ntohs(sin.sin_port);
    return arch == ARCH_THREAD ? run_threads() : run_loop(workers, task_timeout);
}
