/* shared_counter.c -- a shared Value incremented by several processes under
 * a crew lock, like Python's
 *     counter = multiprocessing.Value('q', 0)
 *     with counter.get_lock(): counter.value += 1
 *
 * The counter lives in a memfd-backed region; each worker (forkserver
 * children: fresh processes) receives its fd in pass_fds and attaches it. */
#include <crew.h>

#include <stdint.h>
#include <stdio.h>

#define WORKERS 4
#define INCREMENTS 100000

typedef struct job {
    int fd; /* the counter's region, at the same number in the child */
    int n;
} job;

static int worker(void *arg, size_t len)
{
    (void)len;
    const job *j = arg;
    crew_value *counter;
    if (crew_array_attach(&counter, j->fd) != 0)
        return 1;
    crew_lock *lock = crew_array_lock(counter);
    int64_t *value = crew_array_data(counter);
    for (int i = 0; i < j->n; i++) {
        crew_lock_acquire(lock, CREW_FOREVER);
        *value += 1; /* read-modify-write: needs the lock */
        crew_lock_release(lock);
    }
    crew_array_destroy(counter);
    return 0;
}

int main(void)
{
    crew_value *counter;
    int rc = crew_value_create(&counter, CREW_TYPE_I64, 0, CREW_ARRAY_LOCK);
    if (rc != 0) {
        fprintf(stderr, "value: %s\n", crew_strerror(rc));
        return 1;
    }
    job j = {crew_array_fd(counter), INCREMENTS};
    crew_process_options opts = {0};
    opts.pass_fds = &j.fd;
    opts.n_pass_fds = 1;

    crew_process *procs[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        rc = crew_process_start(&procs[i], worker, &j, sizeof j, &opts);
        if (rc != 0) {
            fprintf(stderr, "start: %s\n", crew_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < WORKERS; i++) {
        crew_process_join(procs[i], CREW_FOREVER, NULL);
        crew_process_destroy(procs[i]);
    }
    int64_t total;
    crew_array_get(counter, 0, &total);
    printf("counter = %lld (expected %d)\n", (long long)total, WORKERS * INCREMENTS);
    crew_array_destroy(counter);
    return total == (int64_t)WORKERS * INCREMENTS ? 0 : 1;
}
