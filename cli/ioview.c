/*
 * ioview.c -- threads vs an event loop for many concurrent waits: the
 * measurement behind `crew compare`'s I/O view ("threads vs asyncio").
 *
 * DESIGN
 *
 * A measurement the CLI makes, not a facility of the library: it lives in
 * cli/ and uses only crew.h (a crew thread pool, crew_event for its waits,
 * crew_mem_usage_get for RSS) plus POSIX and Linux calls.
 *
 * One call, iov_measure(), runs `concurrency` waits of `wait_s`
 * seconds each in one of three ways and reports how long it took for all of
 * them to finish (against the ideal: wait_s, as if all ran at once), the
 * process's RSS growth while they were all pending, and the CPU time spent.
 * It creates and joins everything it uses; nothing survives the call.
 *
 *  IOV_THREAD_PER_WAIT  one thread per wait, as a thread-per-connection
 *      server has. The threads are created one by one (that cost is part of
 *      the elapsed time), then wait on a start gate so that all `concurrency`
 *      of them exist at once when RSS is read; the gate opens, each sleeps
 *      wait_s, the last to finish stamps the end time. The gate is a
 *      crew_event: opening it is one store and one wake-all (a waiter
 *      spins a little before it parks, and crew_event stops spinning once
 *      spins keep failing, as they do here).
 *  IOV_THREAD_POOL  a crew thread pool of `pool_threads` workers (100 by
 *      default, like the Python anchor), one task per wait: at most
 *      pool_threads waits run at once, so the elapsed time grows as
 *      ceil(concurrency / pool_threads) * wait_s. The pool is created before
 *      the clock starts (a server keeps its pool) but counts in RSS. The
 *      caller parks on its own event, set by the last completion, rather
 *      than crew_wait_all, which would run queued tasks on the calling
 *      thread (one worker more).
 *  IOV_EVENT_LOOP  the calling thread runs an epoll loop: each wait is a
 *      timer in a binary min-heap (what libuv and asyncio keep), one timerfd
 *      armed at the earliest deadline wakes epoll_wait, and every expired
 *      timer runs its completion. Memory per wait is one heap entry.
 *
 * Crash behaviour: none of this runs user code; a failure to create a thread
 * midway (EAGAIN under a thread limit) releases the gate, joins the threads
 * made so far and returns the error.
 */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define IO_MAX_CONCURRENCY 1000000
#define IO_DEFAULT_POOL 100

/* CLOCK_MONOTONIC in ns: the clock of crew_now() and of the event loop's
 * timerfd, whose absolute deadlines are these values. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t rss_now(void)
{
    crew_mem_usage m;
    return crew_mem_usage_get(0, &m) == 0 ? (size_t)m.rss : 0;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
        ;
}

/* ------------------------------------------------------------ thread per wait */

struct tpw {
    crew_event gate;          /* set: the waits begin */
    _Atomic uint32_t left;    /* waits not finished */
    _Atomic uint64_t end_ns;  /* stamped by the last one */
    uint64_t wait_ns;
};

static void *tpw_main(void *arg)
{
    struct tpw *s = arg;
    crew_event_wait(&s->gate, CREW_FOREVER);
    sleep_ns(s->wait_ns);
    if (atomic_fetch_sub_explicit(&s->left, 1, memory_order_acq_rel) == 1)
        atomic_store_explicit(&s->end_ns, now_ns(), memory_order_release);
    return NULL;
}

static int run_thread_per_wait(int n, uint64_t wait_ns, size_t stack, iov_result *r,
                               size_t rss0)
{
    pthread_t *th = malloc((size_t)n * sizeof *th);
    if (!th)
        return CREW_ENOMEM;
    struct tpw s;
    crew_event_init(&s.gate);
    atomic_init(&s.left, (uint32_t)n);
    atomic_init(&s.end_ns, 0);
    s.wait_ns = wait_ns;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack)
        pthread_attr_setstacksize(&attr, stack);
    int made = 0, rc = 0;
    uint64_t t0 = now_ns();
    for (; made < n; made++) {
        int e = pthread_create(&th[made], &attr, tpw_main, &s);
        if (e != 0) {
            rc = -e;
            break;
        }
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) /* the threads not made will never finish their share */
        atomic_fetch_sub(&s.left, (uint32_t)(n - made));
    size_t rss1 = rss_now();
    crew_event_set(&s.gate);
    for (int i = 0; i < made; i++)
        pthread_join(th[i], NULL);
    crew_event_destroy(&s.gate);
    free(th);
    if (rc != 0)
        return rc;
    uint64_t t1 = atomic_load_explicit(&s.end_ns, memory_order_acquire);
    r->elapsed_s = (double)(t1 - t0) * 1e-9;
    r->rss_growth = rss1 > rss0 ? rss1 - rss0 : 0;
    r->threads = n;
    return 0;
}

/* ------------------------------------------------------------ thread pool */

static int pool_wait_task(crew_task *t, const void *arg, size_t arg_len, void *result,
                          size_t result_cap, size_t *result_len)
{
    (void)t, (void)result, (void)result_cap, (void)result_len;
    uint64_t ns;
    if (arg_len != sizeof ns)
        return CREW_EINVAL;
    memcpy(&ns, arg, sizeof ns);
    sleep_ns(ns);
    return 0;
}

/* Completion count for the pool model. The caller does not crew_wait_all:
 * a thread outside a crew thread pool that waits runs queued tasks itself,
 * which would make the "pool of N" a pool of N + 1. It parks on `done`
 * instead, which whoever takes `left` to 0 sets: the last completion
 * callback (after stamping the end), or the caller itself when it
 * subtracts the waits it never submitted. */
struct pool_done {
    _Atomic uint32_t left;
    _Atomic uint64_t end_ns;
    crew_event done;
};

static void pool_on_done(crew_future *f, void *data)
{
    (void)f;
    struct pool_done *d = data;
    if (atomic_fetch_sub_explicit(&d->left, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&d->end_ns, now_ns(), memory_order_release);
        crew_event_set(&d->done);
    }
}

static int run_thread_pool(int n, uint64_t wait_ns, int threads, iov_result *r, size_t rss0)
{
    crew_future **fs = calloc((size_t)n, sizeof *fs);
    if (!fs)
        return CREW_ENOMEM;
    crew_pool_options po = {.kind = CREW_THREADS, .workers = threads};
    crew_pool *p;
    int rc = crew_pool_create(&p, &po);
    if (rc != 0) {
        free(fs);
        return rc;
    }
    struct pool_done d;
    atomic_init(&d.left, (uint32_t)n);
    atomic_init(&d.end_ns, 0);
    crew_event_init(&d.done);
    uint64_t t0 = now_ns();
    int made = 0;
    for (; made < n; made++) {
        rc = crew_pool_submit(p, pool_wait_task, &wait_ns, sizeof wait_ns, &fs[made]);
        if (rc == 0)
            rc = crew_future_on_done(fs[made], pool_on_done, &d);
        if (rc != 0) {
            if (fs[made]) {
                crew_future_cancel(fs[made]);
                crew_future_destroy(fs[made]);
            }
            break;
        }
    }
    /* the ones never submitted will not count down */
    uint32_t unsent = (uint32_t)(n - made);
    if (unsent && atomic_fetch_sub_explicit(&d.left, unsent, memory_order_acq_rel) == unsent)
        crew_event_set(&d.done);
    size_t rss1 = rss_now();
    crew_event_wait(&d.done, CREW_FOREVER);
    crew_event_destroy(&d.done);
    uint64_t t1 = atomic_load_explicit(&d.end_ns, memory_order_acquire);
    for (int i = 0; i < made; i++) {
        if (rc == 0 && crew_future_status(fs[i]) != 0)
            rc = crew_future_status(fs[i]);
        crew_future_destroy(fs[i]);
    }
    crew_pool_destroy(p);
    free(fs);
    if (rc != 0)
        return rc;
    r->elapsed_s = (double)(t1 - t0) * 1e-9;
    r->rss_growth = rss1 > rss0 ? rss1 - rss0 : 0;
    r->threads = threads;
    return 0;
}

/* ------------------------------------------------------------ event loop */

struct timer {
    uint64_t deadline_ns;
    uint32_t id;
};

static void heap_push(struct timer *h, size_t *len, struct timer t)
{
    size_t i = (*len)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].deadline_ns <= t.deadline_ns)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = t;
}

static struct timer heap_pop(struct timer *h, size_t *len)
{
    struct timer top = h[0], last = h[--*len];
    size_t i = 0, n = *len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1].deadline_ns < h[c].deadline_ns)
            c++;
        if (last.deadline_ns <= h[c].deadline_ns)
            break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0)
        h[i] = last;
    return top;
}

static int run_event_loop(int n, uint64_t wait_ns, iov_result *r, size_t rss0)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        int e = -errno;
        close(ep);
        return e;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    int rc = epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) == 0 ? 0 : -errno;
    struct timer *heap = rc == 0 ? malloc((size_t)n * sizeof *heap) : NULL;
    if (rc == 0 && !heap)
        rc = CREW_ENOMEM;
    if (rc != 0) {
        close(tfd);
        close(ep);
        return rc;
    }
    size_t len = 0;
    uint64_t t0 = now_ns();
    /* Each wait "arrives" and arms its timer, as a loop would on a request. */
    for (int i = 0; i < n; i++)
        heap_push(heap, &len, (struct timer){now_ns() + wait_ns, (uint32_t)i});
    size_t rss1 = rss_now();
    uint64_t done = 0, idsum = 0;
    while (len > 0) {
        uint64_t now = now_ns();
        while (len > 0 && heap[0].deadline_ns <= now) {
            struct timer t = heap_pop(heap, &len);
            idsum += t.id; /* the completion: trivial work, as after a sleep */
            done++;
        }
        if (len == 0)
            break;
        struct itimerspec its = {{0, 0},
                                 {(time_t)(heap[0].deadline_ns / 1000000000u),
                                  (long)(heap[0].deadline_ns % 1000000000u)}};
        if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
            rc = -errno;
            break;
        }
        struct epoll_event out;
        int k = epoll_wait(ep, &out, 1, -1);
        if (k < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        uint64_t exp;
        if (k > 0 && read(tfd, &exp, sizeof exp) < 0 && errno != EAGAIN) {
            rc = -errno;
            break;
        }
    }
    uint64_t t1 = now_ns();
    free(heap);
    close(tfd);
    close(ep);
    if (rc != 0)
        return rc;
    if (done != (uint64_t)n || idsum != (uint64_t)n * (uint64_t)(n - 1) / 2)
        return CREW_EPROTO; /* a timer lost or run twice: a bug in the heap */
    r->elapsed_s = (double)(t1 - t0) * 1e-9;
    r->rss_growth = rss1 > rss0 ? rss1 - rss0 : 0;
    r->threads = 1;
    return 0;
}

/* ------------------------------------------------------------ the call */

int iov_measure(int model, int concurrency, double wait_s, const iov_options *opts,
                iov_result *out)
{
    if (!out || concurrency < 1 || concurrency > IO_MAX_CONCURRENCY || !(wait_s >= 0) ||
        wait_s > 60)
        return CREW_EINVAL;
    if (model != IOV_THREAD_PER_WAIT && model != IOV_THREAD_POOL && model != IOV_EVENT_LOOP)
        return CREW_EINVAL;
    iov_options o = {0};
    if (opts)
        o = *opts;
    if (o.pool_threads < 0 || o.pool_threads > 1024)
        return CREW_EINVAL;
    if (o.pool_threads == 0)
        o.pool_threads = IO_DEFAULT_POOL;
    iov_result r;
    memset(&r, 0, sizeof r);
    r.model = model;
    r.concurrency = concurrency;
    r.wait_s = wait_s;
    uint64_t wait_ns = (uint64_t)(wait_s * 1e9 + 0.5);
    size_t rss0 = rss_now();
    double cpu0 = cpu_now();
    int rc;
    if (model == IOV_THREAD_PER_WAIT)
        rc = run_thread_per_wait(concurrency, wait_ns, o.thread_stack, &r, rss0);
    else if (model == IOV_THREAD_POOL)
        rc = run_thread_pool(concurrency, wait_ns, o.pool_threads, &r, rss0);
    else
        rc = run_event_loop(concurrency, wait_ns, &r, rss0);
    if (rc != 0)
        return rc;
    r.cpu_s = cpu_now() - cpu0;
    r.ideal_s = wait_s;
    r.ratio = wait_s > 0 ? r.elapsed_s / wait_s : 0;
    r.waits_per_s = r.elapsed_s > 0 ? concurrency / r.elapsed_s : 0;
    r.rss_per_wait = r.rss_growth / (size_t)concurrency;
    *out = r;
    return 0;
}

const char *iov_model_name(int model)
{
    switch (model) {
    case IOV_THREAD_PER_WAIT: return "thread per wait";
    case IOV_THREAD_POOL: return "thread pool";
    case IOV_EVENT_LOOP: return "event loop";
    default: return "unknown";
    }
}
