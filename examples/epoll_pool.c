/*
 * epoll_pool.c -- a crew pool driven from a plain epoll loop (no libuv).
 *
 * The pool's completion fd (crew_pool_fd) is an ordinary fd: put it in any
 * event loop next to sockets and timers. Here one epoll set watches it and a
 * timerfd that prints progress every 100 ms; the loop thread never blocks on
 * a future, it sleeps in epoll_wait until a task is over.
 *
 *   epoll_pool [--processes] [tasks]
 *
 * Each task counts the primes below a bound. With --processes the pool runs
 * them in worker processes, and task 3 deliberately crashes its worker
 * (SIGSEGV): its completion arrives like the others, with CREW_ECRASHED, and
 * every other task still finishes.
 */
#include <crew.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct job {
    uint32_t index;
    uint32_t bound;
    int crash;
};

static int count_primes(crew_task *t, const void *arg, size_t arg_len, void *result,
                        size_t result_cap, size_t *result_len)
{
    struct job j;
    if (arg_len != sizeof j || result_cap < sizeof(uint32_t))
        return CREW_EINVAL;
    memcpy(&j, arg, sizeof j);
    if (j.crash)
        raise(SIGSEGV); /* only ever sent to a process pool */
    uint32_t n = 0;
    for (uint32_t k = 2; k < j.bound; k++) {
        if ((k & 1023) == 0 && crew_task_cancelled(t))
            return CREW_ECANCELED;
        uint32_t d = 2;
        while (d * d <= k && k % d)
            d++;
        n += d * d > k;
    }
    memcpy(result, &n, sizeof n);
    *result_len = sizeof n;
    return 0;
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "epoll_pool: %s: %s\n", what, crew_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    int processes = 0;
    long ntasks = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--processes") == 0)
            processes = 1;
        else
            ntasks = strtol(argv[i], NULL, 10);
    }
    if (ntasks < 1 || ntasks > 100000) {
        fprintf(stderr, "usage: epoll_pool [--processes] [tasks 1..100000]\n");
        return 2;
    }

    crew_pool_options po = {.kind = processes ? CREW_PROCESSES : CREW_THREADS};
    crew_pool *pool;
    int rc = crew_pool_create(&pool, &po);
    if (rc != 0)
        return die("crew_pool_create", rc);
    int cfd = crew_pool_fd(pool);
    if (cfd < 0)
        return die("crew_pool_fd", cfd);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0) {
        perror("epoll_pool");
        return 1;
    }
    struct itimerspec tick = {{0, 100000000}, {0, 100000000}};
    timerfd_settime(tfd, 0, &tick, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
    ev.data.fd = tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);

    /* Submit everything; each future carries its job index as user_data. */
    for (long i = 0; i < ntasks; i++) {
        struct job j = {(uint32_t)i, 200000u + 20000u * (uint32_t)(i % 8), processes && i == 3};
        crew_future *f;
        rc = crew_pool_submit(pool, count_primes, &j, sizeof j, &f);
        if (rc != 0)
            return die("crew_pool_submit", rc);
        rc = crew_future_notify(f, (void *)(uintptr_t)(i + 1));
        if (rc != 0)
            return die("crew_future_notify", rc);
    }

    long done = 0, ticks = 0;
    double t0 = crew_now();
    while (done < ntasks) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, -1);
        for (int e = 0; e < n; e++) {
            if (evs[e].data.fd == tfd) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) > 0)
                    ticks++;
                printf("  [%.1f s] %ld of %ld done\n", crew_now() - t0, done, ntasks);
                continue;
            }
            /* The completion fd: pop until empty (that also clears it). */
            crew_future *batch[32];
            size_t got;
            do {
                got = 0;
                crew_pool_completions(pool, batch, 32, &got);
                for (size_t k = 0; k < got; k++) {
                    crew_future *f = batch[k];
                    long idx = (long)(uintptr_t)crew_future_user_data(f) - 1;
                    int st = crew_future_status(f);
                    if (st == 0) {
                        const void *r;
                        size_t len;
                        uint32_t primes = 0;
                        if (crew_future_result(f, &r, &len) == 0 && len == sizeof primes)
                            memcpy(&primes, r, sizeof primes);
                        printf("task %ld: %u primes\n", idx, primes);
                    } else {
                        crew_failure fl;
                        crew_future_failure(f, &fl);
                        printf("task %ld: %s (worker pid %d, signal %d)\n", idx,
                               crew_err_name(st), (int)fl.pid, fl.signal);
                    }
                    crew_future_destroy(f);
                    done++;
                }
            } while (got == 32);
        }
    }
    printf("%ld tasks in %.3f s, %ld progress ticks, loop never blocked on a future\n", done,
           crew_now() - t0, ticks);
    close(tfd);
    close(ep);
    crew_pool_destroy(pool);
    return 0;
}
