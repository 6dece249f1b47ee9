/* A module whose constructor leaves a mark: it writes the effective uid it
 * runs with into the file named by CREW_TEST_MARKER. test_setuid.c forges a
 * crew child request naming this module, to see whether (and as whom) a
 * setuid program would load it. */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void leave_mark(void)
{
    const char *path = getenv("CREW_TEST_MARKER");
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)geteuid());
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;
    close(fd);
}

int mod_marker_task(void *arg, size_t len);
int mod_marker_task(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return 7;
}
