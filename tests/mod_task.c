/*
 * mod_task.c -- user tasks for `crew compare --task` in the tests (built as
 * libmod_task.so, never linked into a test program).
 *
 *  task_spin   CPU work: the argument is a decimal number of xorshift steps
 *              (no terminating NUL needed); returns the chain's last value.
 *  task_crash  segfaults.
 *  task_fail   returns CREW_EINVAL without crashing.
 *  task_exit   ends its process with exit code 3.
 *  task_hang   never returns (sleeps forever).
 */
#include <crew.h>

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int task_spin(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len);
int task_crash(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
               size_t *result_len);
int task_fail(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len);
int task_exit(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len);
int task_hang(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len);

int task_spin(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len)
{
    (void)t;
    char text[32];
    if (arg_len == 0 || arg_len >= sizeof text)
        return CREW_EINVAL;
    memcpy(text, arg, arg_len);
    text[arg_len] = 0;
    uint64_t n = strtoull(text, NULL, 10), x = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    if (result_cap < sizeof x)
        return CREW_E2BIG;
    memcpy(result, &x, sizeof x);
    *result_len = sizeof x;
    return 0;
}

int task_crash(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
               size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core file from a deliberate crash */
    int *volatile bad = (int *)(uintptr_t)16;
    *bad = 1;
    raise(SIGSEGV);
    return 0;
}

int task_fail(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    return CREW_EINVAL;
}

int task_exit(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    _exit(3);
}

int task_hang(crew_task *t, const void *arg, size_t arg_len, void *result, size_t result_cap,
              size_t *result_len)
{
    (void)t, (void)arg, (void)arg_len, (void)result, (void)result_cap, (void)result_len;
    for (;;)
        pause();
}
