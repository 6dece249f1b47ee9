/*
 * race.c -- why locks exist: N threads add 1 to a shared counter, first
 * without a lock (updates get lost), then with a crew_lock (the count is
 * exact).
 *
 * The racy half is a deliberate data race: each thread reads the counter,
 * yields the CPU, then writes back what it read plus one, so that another
 * thread's update in between is overwritten. That makes the loss visible on
 * every run even on a 2-CPU machine. (A data race is undefined behaviour in
 * C; it is the point of this demonstration, which is why this program is
 * not run under ThreadSanitizer.)
 *
 *     race [threads] [increments per thread]
 */
#include <crew.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

static long counter;  /* shared, unprotected in the first half */
static crew_lock lock; /* protects counter in the second half */
static long per_thread = 2000;

static void *add_racy(void *arg)
{
    (void)arg;
    for (long i = 0; i < per_thread; i++) {
        long seen = counter; /* read ... */
        sched_yield();       /* ... let another thread run ... */
        counter = seen + 1;  /* ... and overwrite its update */
    }
    return NULL;
}

static void *add_locked(void *arg)
{
    (void)arg;
    for (long i = 0; i < per_thread; i++) {
        crew_lock_acquire(&lock, CREW_FOREVER);
        long seen = counter;
        sched_yield(); /* the same yield: now nobody can get in between */
        counter = seen + 1;
        crew_lock_release(&lock);
    }
    return NULL;
}

static int run(int n, crew_thread_fn fn)
{
    crew_thread *t[64];
    counter = 0;
    for (int i = 0; i < n; i++) {
        int rc = crew_thread_start(&t[i], fn, NULL, NULL);
        if (rc) {
            fprintf(stderr, "crew_thread_start: %s\n", crew_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < n; i++)
        crew_thread_destroy(t[i]); /* joins */
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        per_thread = atol(argv[2]);
    if (n < 1 || n > 64 || per_thread < 1) {
        fprintf(stderr, "usage: race [threads 1..64] [increments per thread]\n");
        return 2;
    }
    long expected = (long)n * per_thread;
    crew_lock_init(&lock);

    if (run(n, add_racy))
        return 1;
    printf("without a lock: %ld of %ld increments, %ld lost\n", counter, expected,
           expected - counter);
    if (run(n, add_locked))
        return 1;
    printf("with a lock:    %ld of %ld increments, %ld lost\n", counter, expected,
           expected - counter);
    crew_lock_destroy(&lock);
    return counter == expected ? 0 : 1;
}
