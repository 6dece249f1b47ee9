/* The two ways an exec'd crew child reaches its task: libcrew's constructor
 * before main() (the default), or crew_child_main() called at the top of
 * main() when CREW_CHILD_DEFER is set. This file has its own main() to tell
 * them apart: it sets `main_ran` before calling crew_child_main(). */
#include "crew_test.h"

static int main_ran;

/* Exit code 10 + whether main() ran in this child before the task. */
static int task_report(void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return 10 + main_ran;
}

static int run(crew_start_method m)
{
    crew_process_options o = {0};
    o.method = m;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_report, NULL, 0, &o));
    crew_exit st;
    CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
    CHECK_OK(crew_process_destroy(p));
    CHECK_EQ(st.signal, 0);
    return st.code;
}

static void test_constructor_dispatch(void)
{
    CHECK_OK(crew_forkserver_stop());
    CHECK_EQ(run(CREW_START_SPAWN), 10);      /* main() never ran */
    CHECK_EQ(run(CREW_START_FORKSERVER), 10);
}

static void test_deferred_dispatch(void)
{
    CHECK(setenv("CREW_CHILD_DEFER", "1", 1) == 0);
    CHECK_OK(crew_forkserver_stop()); /* the server itself must start deferred */
    CHECK_EQ(run(CREW_START_SPAWN), 11);      /* main() ran up to crew_child_main */
    CHECK_EQ(run(CREW_START_FORKSERVER), 11);
    CHECK(unsetenv("CREW_CHILD_DEFER") == 0);
    CHECK_OK(crew_forkserver_stop());
    CHECK_EQ(run(CREW_START_FORK), 11); /* a fork child is a copy: main ran */
}

static const test_case cases[] = {
    TEST_CASE(test_constructor_dispatch),
    TEST_CASE(test_deferred_dispatch),
};

int main(int argc, char **argv)
{
    main_ran = 1;
    crew_child_main(argc, argv); /* returns at once unless a deferred crew child */
    return test_main(argc, argv, cases, sizeof cases / sizeof cases[0], NULL, 0);
}
