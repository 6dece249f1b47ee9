/* The README's quick start: one map on a process pool (CREW_THREADS is the only change for threads). */
#include <crew.h>
#include <stdio.h>

/* A task: bytes in, bytes out, a status. The same function runs on threads or processes. */
static int square(crew_task *t, const void *arg, size_t len, void *res, size_t cap, size_t *res_len)
{
    (void)t, (void)len, (void)cap;
    long x = *(const long *)arg;
    *(long *)res = x * x;
    *res_len = sizeof(long);
    return 0;
}

int main(void)
{
    crew_pool_options o = {0};
    o.kind = CREW_PROCESSES;           /* or CREW_THREADS: the only change */
    crew_pool *pool;
    if (crew_pool_create(&pool, &o) != 0) return 1;
    long in[1000], out[1000];
    for (long i = 0; i < 1000; i++) in[i] = i;
    int rc = crew_pool_map(pool, square, in, sizeof(long), out, sizeof(long), 1000, NULL);
    printf("map: %s, out[999] = %ld\n", crew_strerror(rc), out[999]);
    crew_pool_destroy(pool);
    return rc != 0;
}
