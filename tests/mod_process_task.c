/* A task in a module the test loads with dlopen: spawn and forkserver
 * children must load the same module to find it (test_process_dl.c). */
#include <stddef.h>

int mod_process_task(void *arg, size_t len);
int mod_process_task(void *arg, size_t len)
{
    return len == sizeof(int) ? *(int *)arg + 1 : 99;
}
