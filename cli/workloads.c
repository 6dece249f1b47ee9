/*
 * workloads.c -- the tasks `crew compare` measures, and loading the user's.
 *
 * DESIGN
 *  Every task is a plain crew_task_fn, so the same function runs on a thread
 *  pool and on a process pool; arguments are small fixed structs (wl_arg)
 *  copied by the pool, never pointers, except wl_task_copy_ref whose pointers
 *  are valid in the worker by construction (see cli.h).
 *
 *  - cpu: a dependent xorshift chain. It touches no memory, so its scaling
 *    shows pure CPU parallelism; the chain's result is returned so the
 *    compiler cannot drop the loop.
 *  - io: nanosleep, standing for a blocking read or a network wait.
 *  - mixed: cpu work, then a wait as long again.
 *  - membw: read-modify-write passes over a private 8 MiB buffer per worker
 *    thread (a pthread key frees it when a thread pool's worker exits; a
 *    process worker's goes with the process), bounded by memory bandwidth.
 *  - crash: a store to an unmapped address. prctl(PR_SET_DUMPABLE, 0) first,
 *    so the deliberate crash leaves no core file behind.
 */
#include "cli.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

int wl_task_empty(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                  size_t *res_len)
{
    (void)t, (void)arg, (void)arg_len, (void)res, (void)cap;
    *res_len = 0;
    return 0;
}

int wl_task_echo(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                 size_t *res_len)
{
    (void)t;
    if (arg_len > cap)
        return CREW_E2BIG;
    memcpy(res, arg, arg_len);
    *res_len = arg_len;
    return 0;
}

int wl_task_copy_ref(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                     size_t *res_len)
{
    (void)t, (void)res, (void)cap;
    if (arg_len != sizeof(wl_ref_arg))
        return CREW_EINVAL;
    wl_ref_arg a;
    memcpy(&a, arg, sizeof a);
    memcpy(a.out, a.in, a.len);
    *res_len = 0;
    return 0;
}

static uint64_t xorshift_chain(uint64_t x, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static pthread_key_t membw_key;
static pthread_once_t membw_once = PTHREAD_ONCE_INIT;
static void membw_key_make(void) { (void)pthread_key_create(&membw_key, free); }

static uint64_t membw_pass(uint64_t bytes)
{
    pthread_once(&membw_once, membw_key_make);
    uint64_t *buf = pthread_getspecific(membw_key);
    if (!buf) {
        buf = calloc(1, WL_MEMBW_BUFFER);
        if (!buf || pthread_setspecific(membw_key, buf) != 0) {
            free(buf);
            return 0;
        }
    }
    size_t words = WL_MEMBW_BUFFER / sizeof(uint64_t);
    uint64_t sum = 0;
    for (uint64_t done = 0; done < bytes; done += WL_MEMBW_BUFFER) {
        for (size_t i = 0; i < words; i++) {
            buf[i] += i;
            sum += buf[i];
        }
    }
    return sum;
}

static void wait_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int wl_task_work(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                 size_t *res_len)
{
    (void)t;
    if (arg_len != sizeof(wl_arg) || cap < 2 * sizeof(uint64_t))
        return CREW_EINVAL;
    wl_arg a;
    memcpy(&a, arg, sizeof a);
    if (a.crash) {
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        ((wl_arg *)(uintptr_t)arg)->died_at = crew_now(); /* the caller's region or our copy */
        int *volatile bad = (int *)(uintptr_t)16; /* nothing is ever mapped there */
        *bad = 1;
        raise(SIGSEGV);                       /* in case something was */
    }
    uint64_t out[2] = {a.seq, 0};
    switch (a.kind) {
    case CMP_WL_CPU:
        out[1] = xorshift_chain(a.seq | 1, a.iters);
        break;
    case CMP_WL_IO:
        wait_ns(a.wait_ns);
        break;
    case CMP_WL_MIXED:
        out[1] = xorshift_chain(a.seq | 1, a.iters);
        wait_ns(a.wait_ns);
        break;
    case CMP_WL_MEMBW:
        out[1] = membw_pass(a.bytes);
        break;
    default:
        return CREW_EINVAL;
    }
    memcpy(res, out, sizeof out);
    *res_len = sizeof out;
    return 0;
}

double wl_calibrate_cpu(void)
{
    /* The fastest of a few short runs: the least disturbed one. */
    const uint64_t n = 200000;
    double best = 1e9;
    volatile uint64_t sink = 0;
    for (int i = 0; i < 7; i++) {
        double t0 = crew_now();
        sink += xorshift_chain(0x9E3779B97F4A7C15ull + (uint64_t)i, n);
        double dt = crew_now() - t0;
        if (dt < best)
            best = dt;
    }
    (void)sink;
    return (double)n / (best * 1e6);
}

int wl_load_user(const char *path, const char *symbol, crew_task_fn *out)
{
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        cli_error("cannot load task library: %s", e ? e : path);
        return CLI_EXIT_LOAD;
    }
    dlerror();
    void *sym = dlsym(h, symbol);
    const char *e = dlerror();
    if (e || !sym) {
        cli_error("no task '%s' in %s", symbol, path);
        dlclose(h);
        return CLI_EXIT_LOAD;
    }
    /* The library stays loaded until exit: pools may run the task at any
     * time, and process workers forked later map it at the same address. */
    *out = (crew_task_fn)(uintptr_t)sym;
    return CLI_EXIT_OK;
}
