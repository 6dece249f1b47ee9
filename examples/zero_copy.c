/*
 * zero_copy.c -- big data for a process pool without copying it.
 *
 * 32 MiB of doubles live in a crew_shm region. The same summing task runs
 * over 8 slices of it twice: once with crew_pool_submit (each slice is
 * copied into the pool's shared memory, 4 MiB per task) and once with
 * crew_pool_submit_shm (only the region, offset and length travel; the
 * worker reads the slice in place). Then crew_pool_map squares the numbers
 * in place: input and output records both lie in the region, so the workers
 * read and write them there. Prints both sums, both times and a check.
 */
#include <crew.h>

#include <stdio.h>
#include <string.h>

#define N (4u << 20) /* doubles: 32 MiB */
#define SLICES 8

/* Sums the doubles of its argument; the result is one double. */
static int sum_task(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                    size_t *res_len)
{
    (void)t, (void)cap;
    const double *v = arg;
    double s = 0;
    for (size_t i = 0; i < len / sizeof(double); i++)
        s += v[i];
    memcpy(res, &s, sizeof s);
    *res_len = sizeof s;
    return 0;
}

/* A map item: one double in, its square out. */
static int square_item(crew_task *t, const void *arg, size_t len, void *res, size_t cap,
                       size_t *res_len)
{
    (void)t, (void)len, (void)cap, (void)res_len;
    double x;
    memcpy(&x, arg, sizeof x);
    x *= x;
    memcpy(res, &x, sizeof x);
    return 0;
}

/* Runs SLICES sum tasks, by copy or by reference; returns the total. */
static double sum_slices(crew_pool *p, crew_shm *region, int by_ref, int *rc)
{
    const double *v = crew_shm_ptr(region);
    size_t slice = (size_t)N / SLICES * sizeof(double);
    crew_future *fs[SLICES];
    int n = 0;
    for (; n < SLICES && *rc == 0; n++)
        *rc = by_ref ? crew_pool_submit_shm(p, sum_task, region, (size_t)n * slice, slice, &fs[n])
                     : crew_pool_submit(p, sum_task, (const char *)v + (size_t)n * slice, slice,
                                        &fs[n]);
    if (*rc)
        n--; /* the failed submit gave no future */
    double total = 0;
    for (int i = 0; i < n; i++) {
        crew_future_wait(fs[i], CREW_FOREVER);
        const void *d;
        size_t len;
        double s = 0;
        if (*rc == 0)
            *rc = crew_future_status(fs[i]);
        if (*rc == 0 && crew_future_result(fs[i], &d, &len) == 0 && len == sizeof s)
            memcpy(&s, d, sizeof s);
        total += s;
        crew_future_destroy(fs[i]);
    }
    return total;
}

int main(void)
{
    crew_shm *region;
    int rc = crew_shm_create(&region, (size_t)N * sizeof(double), NULL);
    if (rc) {
        fprintf(stderr, "crew_shm_create: %s\n", crew_strerror(rc));
        return 1;
    }
    double *v = crew_shm_ptr(region);
    for (size_t i = 0; i < N; i++)
        v[i] = (double)(i % 1000);
    /* By copy, each task's argument must fit max_arg_size. */
    crew_pool_options o = {0};
    o.kind = CREW_PROCESSES;
    o.max_arg_size = (size_t)N / SLICES * sizeof(double);
    crew_pool *p;
    if ((rc = crew_pool_create(&p, &o)) != 0) {
        fprintf(stderr, "crew_pool_create: %s\n", crew_strerror(rc));
        crew_shm_destroy(region);
        return 1;
    }
    double t0 = crew_now();
    double by_copy = sum_slices(p, region, 0, &rc);
    double t1 = crew_now();
    double by_ref = rc == 0 ? sum_slices(p, region, 1, &rc) : 0;
    double t2 = crew_now();
    printf("sum of 32 MiB of doubles in %d tasks\n", SLICES);
    printf("  crew_pool_submit (copied):        %.0f in %.2f ms\n", by_copy, (t1 - t0) * 1e3);
    printf("  crew_pool_submit_shm (in place):  %.0f in %.2f ms\n", by_ref, (t2 - t1) * 1e3);

    /* Square every number in place: in and out are the same records. */
    if (rc == 0)
        rc = crew_pool_map(p, square_item, v, sizeof(double), v, sizeof(double), N, NULL);
    double t3 = crew_now();
    double last = (double)((N - 1) % 1000);
    int ok = rc == 0 && by_copy == by_ref && v[999] == 999.0 * 999.0 && v[N - 1] == last * last;
    printf("  crew_pool_map, %u items in place: %.2f ms, v[999] = %.0f\n", N, (t3 - t2) * 1e3,
           v[999]);
    printf("%s\n", rc ? crew_strerror(rc) : ok ? "ok: same sums, squares in the region"
                                                : "MISMATCH");
    crew_pool_destroy(p);
    crew_shm_destroy(region);
    return rc == 0 && ok ? 0 : 1;
}
