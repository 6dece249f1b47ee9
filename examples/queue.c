/*
 * queue.c -- producers and consumers in separate processes, through one
 * crew_queue (Python: multiprocessing.Queue).
 *
 * Two producer processes each put 5 tasks; three consumer processes take
 * tasks until the queue is closed and drained, and report how many they
 * handled through a second queue. The parent closes the task queue once
 * both producers are done. A queue made before fork() works in the children
 * through the same handle.
 */
#include <crew.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PRODUCERS = 2, CONSUMERS = 3, TASKS = 5 };

static void die(const char *what, int rc)
{
    fprintf(stderr, "%s: %s\n", what, crew_strerror(rc));
    exit(1);
}

static void producer(crew_queue *tasks, int id)
{
    for (int i = 0; i < TASKS; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "task %d from producer %d", i, id);
        int rc = crew_queue_put(tasks, msg, (size_t)n + 1, CREW_FOREVER);
        if (rc != 0)
            die("put", rc);
    }
}

static void consumer(crew_queue *tasks, crew_queue *results, int id)
{
    int handled = 0;
    char msg[64];
    size_t len;
    int rc;
    while ((rc = crew_queue_get(tasks, msg, sizeof msg, &len, CREW_FOREVER)) == 0) {
        printf("consumer %d (pid %d) got: %s\n", id, (int)getpid(), msg);
        fflush(stdout);
        handled++;
    }
    if (rc != CREW_EOF) /* EOF: closed and drained, the normal end */
        die("get", rc);
    rc = crew_queue_put(results, &handled, sizeof handled, CREW_FOREVER);
    if (rc != 0)
        die("put result", rc);
}

static pid_t start(int role, int id, crew_queue *tasks, crew_queue *results)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        if (role == 0)
            producer(tasks, id);
        else
            consumer(tasks, results, id);
        crew_queue_destroy(tasks);
        crew_queue_destroy(results);
        _exit(0);
    }
    return pid;
}

int main(void)
{
    crew_queue *tasks, *results;
    crew_queue_options small = {.capacity = 256}; /* small: producers wait for room */
    int rc = crew_queue_create(&tasks, &small);
    if (rc == 0)
        rc = crew_queue_create(&results, NULL);
    if (rc != 0)
        die("create", rc);

    pid_t producers[PRODUCERS], consumers[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        consumers[i] = start(1, i, tasks, results);
    for (int i = 0; i < PRODUCERS; i++)
        producers[i] = start(0, i, tasks, results);

    for (int i = 0; i < PRODUCERS; i++)
        waitpid(producers[i], NULL, 0);
    crew_queue_close(tasks); /* consumers drain what is left, then see EOF */
    for (int i = 0; i < CONSUMERS; i++)
        waitpid(consumers[i], NULL, 0);

    int total = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        int handled;
        rc = crew_queue_get(results, &handled, sizeof handled, NULL, 0);
        if (rc != 0)
            die("get result", rc);
        total += handled;
    }
    printf("%d tasks handled by %d consumers (expected %d)\n", total, CONSUMERS,
           PRODUCERS * TASKS);
    crew_queue_destroy(tasks);
    crew_queue_destroy(results);
    return total == PRODUCERS * TASKS ? 0 : 1;
}
