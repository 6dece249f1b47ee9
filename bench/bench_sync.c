/*
 * bench_sync.c -- crew threads and locks against raw pthreads, same run.
 *
 *  - thread start+join: crew_thread_start + join + destroy vs pthread_create
 *    + pthread_join (goal: within 1.1x);
 *  - uncontended lock acquire+release vs pthread_mutex_lock+unlock, measured
 *    first while the process is single-threaded (glibc then skips some
 *    atomic work) and again with a second thread alive (goal: within 1.1x);
 *    also against a process-shared mutex (which glibc cannot shortcut
 *    either) and a robust process-shared mutex, the pthread object with the
 *    same guarantees as crew_lock;
 *  - contended: two threads hammering one lock (ns per acquire+release);
 *  - hand-off: two threads ping-pong a turn through lock+condition (round
 *    trip), crew_lock+crew_cond vs pthread_mutex+pthread_cond.
 *
 * crew and the anchor are measured alternately, repetition by repetition,
 * each right after its own warm-up, and each figure is the median over the
 * repetitions, with min and max.
 */
#include "harness.h"

#include <crew.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define GROUP "sync"

/* One row: crew's and the anchor's ns per op, times k, with their spread. */
static void row(const char *name, bench_stat c, const char *unit, const char *anchor,
                bench_stat a, double k, const char *goal)
{
    bench_fig f = {.group = GROUP, .name = name, .unit = unit, .crew = bench_stat_scale(c, k),
                   .anchor = anchor, .anchor_value = bench_stat_scale(a, k),
                   .lower_is_better = true, .goal = goal};
    bench_report(&f);
}


/* ---------------------------------------------------------------- uncontended */
static void crew_lock_loop(void *ctx, long n)
{
    crew_lock *l = ctx;
    for (long i = 0; i < n; i++) {
        crew_lock_acquire(l, CREW_FOREVER);
        crew_lock_release(l);
    }
}

static void mutex_loop(void *ctx, long n)
{
    pthread_mutex_t *m = ctx;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(m);
        pthread_mutex_unlock(m);
    }
}

static void uncontended(const char *when)
{
    crew_lock l;
    crew_lock_init(&l);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_t rm;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&rm, &a);
    /* Process-shared but not robust: glibc cannot skip its atomics for it
     * in a single-threaded process either (another process may hold it). */
    pthread_mutex_t sm;
    pthread_mutexattr_t sa;
    pthread_mutexattr_init(&sa);
    pthread_mutexattr_setpshared(&sa, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&sm, &sa);
    long iters = bench_iters(2000000);
    int reps = bench_reps(11);
    bench_stat c, p, c2, r, c3, s;
    bench_measure2_stat(crew_lock_loop, &l, mutex_loop, &m, iters, reps, 0, &c, &p);
    bench_measure2_stat(crew_lock_loop, &l, mutex_loop, &sm, iters, reps, 0, &c3, &s);
    bench_measure2_stat(crew_lock_loop, &l, mutex_loop, &rm, iters, reps, 0, &c2, &r);
    char name[96];
    snprintf(name, sizeof name, "lock acquire+release, %s", when);
    row(name, c, "ns", "pthread_mutex", p, 1, "<= 1.1x raw");
    snprintf(name, sizeof name, "lock acquire+release, %s (vs pshared)", when);
    row(name, c3, "ns", "pshared mutex", s, 1, NULL);
    snprintf(name, sizeof name, "lock acquire+release, %s (vs robust)", when);
    row(name, c2, "ns", "robust pshared mutex", r, 1, NULL);
    pthread_mutex_destroy(&rm);
    pthread_mutex_destroy(&sm);
}

/* ---------------------------------------------------------------- threads */
static void *noop(void *arg) { return arg; }

static void crew_start_join(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        crew_thread *t;
        if (crew_thread_start(&t, noop, NULL, NULL) != 0)
            abort();
        crew_thread_join(t, CREW_FOREVER, NULL);
        crew_thread_destroy(t);
    }
}

static void raw_start_join(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, noop, NULL) != 0)
            abort();
        pthread_join(t, NULL);
    }
}

static void thread_start_join(void)
{
    bench_stat c, p;
    bench_measure2_stat(crew_start_join, NULL, raw_start_join, NULL, bench_iters(3000),
                        bench_reps(11), 0, &c, &p);
    row("thread start+join", c, "us", "pthread_create+join", p, 1e-3, "<= 1.1x raw");
}

/* ---------------------------------------------------------------- contended */
typedef struct hammer {
    crew_lock l;
    pthread_mutex_t m;
    long n;
    long counter;
    int use_crew;
    _Atomic int go;
} hammer;

static void *hammer_thread(void *arg)
{
    hammer *h = arg;
    while (!atomic_load(&h->go))
        ;
    for (long i = 0; i < h->n; i++) {
        if (h->use_crew) {
            crew_lock_acquire(&h->l, CREW_FOREVER);
            h->counter++;
            crew_lock_release(&h->l);
        } else {
            pthread_mutex_lock(&h->m);
            h->counter++;
            pthread_mutex_unlock(&h->m);
        }
    }
    return NULL;
}

static void hammer_run(void *ctx, long n)
{
    hammer *h = ctx;
    h->n = n / 2;
    atomic_store(&h->go, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, hammer_thread, h);
    atomic_store(&h->go, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
}

static void contended(void)
{
    hammer hc = {.use_crew = 1}, hp = {.use_crew = 0};
    crew_lock_init(&hc.l);
    pthread_mutex_init(&hp.m, NULL);
    bench_stat c, p;
    bench_measure2_stat(hammer_run, &hc, hammer_run, &hp, bench_iters(2000000), bench_reps(7), 0,
                        &c, &p);
    row("lock contended, 2 threads (per acquire)", c, "ns", "pthread_mutex", p, 1, NULL);
}

/* ---------------------------------------------------------------- hand-off */
typedef struct pingpong {
    crew_lock l;
    crew_cond c;
    pthread_mutex_t m;
    pthread_cond_t pc;
    long turn, rounds;
    int use_crew;
} pingpong;

static void pp_side(pingpong *p, long parity)
{
    for (long i = 0; i < p->rounds; i++) {
        if (p->use_crew) {
            crew_lock_acquire(&p->l, CREW_FOREVER);
            while (p->turn % 2 != parity)
                crew_cond_wait(&p->c, &p->l, CREW_FOREVER);
            p->turn++;
            crew_cond_notify(&p->c);
            crew_lock_release(&p->l);
        } else {
            pthread_mutex_lock(&p->m);
            while (p->turn % 2 != parity)
                pthread_cond_wait(&p->pc, &p->m);
            p->turn++;
            pthread_cond_signal(&p->pc);
            pthread_mutex_unlock(&p->m);
        }
    }
}

static void *pp_thread(void *arg)
{
    pp_side(arg, 1);
    return NULL;
}

static void pp_run(void *ctx, long n)
{
    pingpong *p = ctx;
    p->rounds = n;
    p->turn = 0;
    pthread_t t;
    pthread_create(&t, NULL, pp_thread, p);
    pp_side(p, 0);
    pthread_join(t, NULL);
}

static void handoff(void)
{
    pingpong pc = {.use_crew = 1}, pp = {.use_crew = 0};
    crew_lock_init(&pc.l);
    crew_cond_init(&pc.c);
    pthread_mutex_init(&pp.m, NULL);
    pthread_cond_init(&pp.pc, NULL);
    bench_stat c, p;
    bench_measure2_stat(pp_run, &pc, pp_run, &pp, bench_iters(20000), bench_reps(7), 0, &c, &p);
    row("hand-off round trip, lock+cond", c, "us", "pthread mutex+cond", p, 1e-3, NULL);
}

/* A second thread that stays alive (asleep) while we measure. */
static crew_event idle_stop;
static void *idle_thread(void *arg)
{
    (void)arg;
    crew_event_wait(&idle_stop, CREW_FOREVER);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_child_dispatch(argc, argv);
    printf("bench_sync: crew threads and locks vs raw pthreads (%d CPUs)\n", crew_cpu_count());
    bench_group("sync: threads and locks");
    /* Before any thread exists: glibc's single-threaded fast paths. */
    uncontended("single-threaded process");
    crew_event_init(&idle_stop);
    pthread_t idle;
    pthread_create(&idle, NULL, idle_thread, NULL);
    uncontended("2nd thread alive");
    thread_start_join();
    contended();
    handoff();
    crew_event_set(&idle_stop);
    pthread_join(idle, NULL);
    return 0;
}
