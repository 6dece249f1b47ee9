/*
 * threads.c -- the first program of the seed, in crew: five tasks, each
 * printing "Task i is running", started and joined as threads.
 *
 * The Python it replaces:
 *
 *     def task(i): print(f"Task {i} is running")
 *     threads = [threading.Thread(target=task, args=(i,)) for i in range(5)]
 *     for t in threads: t.start()
 *     for t in threads: t.join()
 */
#include <crew.h>

#include <stdint.h>
#include <stdio.h>

static void *task(void *arg)
{
    printf("Task %d is running\n", (int)(intptr_t)arg);
    return NULL;
}

int main(void)
{
    crew_thread *threads[5];
    for (int i = 0; i < 5; i++) {
        int rc = crew_thread_start(&threads[i], task, (void *)(intptr_t)i, NULL);
        if (rc) {
            fprintf(stderr, "crew_thread_start: %s\n", crew_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < 5; i++) {
        crew_thread_join(threads[i], CREW_FOREVER, NULL);
        crew_thread_destroy(threads[i]);
    }
    return 0;
}
