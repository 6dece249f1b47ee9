/* processes.c -- the seed's second program: five tasks, each in its own
 * process, each printing "Task i is running"; the parent joins them all.
 *
 * The default start method is the forkserver: safe even if this program
 * had threads. Pass "fork" or "spawn" as the first argument to try the
 * others. Nothing needs to change in main() for spawn or the forkserver:
 * crew finds `task` in the child by itself. */
#include <crew.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int task(void *arg, size_t len)
{
    (void)len;
    int i = *(const int *)arg;
    printf("Task %d is running (pid %d)\n", i, (int)getpid());
    return 0;
}

int main(int argc, char **argv)
{
    crew_process_options opts = {0};
    if (argc > 1 && strcmp(argv[1], "fork") == 0)
        opts.method = CREW_START_FORK;
    else if (argc > 1 && strcmp(argv[1], "spawn") == 0)
        opts.method = CREW_START_SPAWN;

    crew_process *procs[5];
    for (int i = 0; i < 5; i++) {
        int rc = crew_process_start(&procs[i], task, &i, sizeof i, &opts);
        if (rc != 0) {
            fprintf(stderr, "start: %s\n", crew_strerror(rc));
            return 1;
        }
    }
    int failed = 0;
    for (int i = 0; i < 5; i++) {
        crew_exit st;
        int rc = crew_process_join(procs[i], CREW_FOREVER, &st);
        if (rc != 0 || st.signal != 0 || st.code != 0)
            failed++;
        crew_process_destroy(procs[i]);
    }
    printf("All tasks completed%s\n", failed ? " (some failed)" : "");
    return failed ? 1 : 0;
}
