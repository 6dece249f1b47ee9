/*
 * joinable_queue.c -- Python's JoinableQueue with worker processes:
 *
 *     q = multiprocessing.JoinableQueue()
 *     for _ in range(3): Process(target=worker, args=(q,)).start()
 *     for item in work: q.put(item)
 *     q.join()            # every item task_done'd
 *
 * The workers are forkserver children (the default start method: fresh
 * images, no memory of the parent), and each takes the queue by name
 * through crew_process_options.handles -- no fd numbers to pass around. The
 * results come back on a one-way pipe per worker, the worker's end handed
 * over the same way; the parent polls them without blocking.
 */
#include <crew.h>

#include <stdio.h>
#include <stdlib.h>

enum { WORKERS = 3, ITEMS = 30 };

static void check(const char *what, int rc)
{
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", what, crew_strerror(rc));
        exit(1);
    }
}

/* In the child: square every number until the queue is closed. */
static int worker(void *arg, size_t len)
{
    (void)arg, (void)len;
    crew_queue *q;
    crew_pipe *out;
    if (crew_child_handle_queue("work", &q) != 0 || crew_child_handle_pipe("results", &out) != 0)
        return 1;
    long n, sum = 0;
    while (crew_queue_get(q, &n, sizeof n, NULL, CREW_FOREVER) == 0) {
        sum += n * n;
        crew_queue_task_done(q); /* after the work: join waits for this */
    }
    crew_pipe_send(out, &sum, sizeof sum, CREW_FOREVER);
    crew_pipe_destroy(out);
    crew_queue_destroy(q);
    return 0;
}

int main(void)
{
    crew_queue_options qo = {.joinable = 1};
    crew_queue *q;
    check("queue", crew_queue_create(&q, &qo));
    crew_process *w[WORKERS];
    crew_pipe *results[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        crew_pipe_options po = {.one_way = 1};
        crew_pipe *theirs;
        check("pipe", crew_pipe_create(&results[i], &theirs, &po));
        crew_handle hs[] = {{CREW_HANDLE_QUEUE, "work", q}, {CREW_HANDLE_PIPE, "results", theirs}};
        crew_process_options o = {.handles = hs, .n_handles = 2};
        check("start", crew_process_start(&w[i], worker, NULL, 0, &o));
        crew_pipe_destroy(theirs); /* the child holds its own */
    }
    long want = 0;
    for (long n = 1; n <= ITEMS; n++) {
        check("put", crew_queue_put(q, &n, sizeof n, CREW_FOREVER));
        want += n * n;
    }
    check("join", crew_queue_join(q, 60));
    size_t left;
    check("counts", crew_queue_counts_get(q, &left, NULL));
    printf("all %d items done (%zu left in the queue)\n", ITEMS, left);
    check("close", crew_queue_close(q));

    long total = 0;
    for (int i = 0; i < WORKERS; i++) {
        int ready = crew_pipe_poll(results[i], NULL, 30);
        check("poll", ready);
        long sum;
        check("recv", crew_pipe_recv(results[i], &sum, sizeof sum, NULL, 0));
        printf("worker %d: %ld\n", i, sum);
        total += sum;
        check("join", crew_process_join(w[i], 30, NULL));
        crew_process_destroy(w[i]);
        crew_pipe_destroy(results[i]);
    }
    crew_queue_destroy(q);
    printf("sum of squares 1..%d: %ld (%s)\n", ITEMS, total, total == want ? "right" : "WRONG");
    return total == want ? 0 : 1;
}
