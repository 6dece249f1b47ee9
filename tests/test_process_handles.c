/* Handing a queue, a pipe end, a region and an array to a child by name
 * (crew_process_options.handles, crew_child_handle_*: issue 14, item 11),
 * for every start method. Python's multiprocessing passes such objects as
 * Process(args=(q, conn, shm)) and pickles their handles
 * (_test_multiprocessing.py _TestQueue.test_fork, _TestConnection.
 * test_connection with a Process peer, _TestSharedMemory.
 * test_shared_memory_across_processes); here the child asks by name. */
#include "crew_test.h"

#include <stdint.h>

static const crew_start_method methods[] = {CREW_START_FORK, CREW_START_SPAWN,
                                            CREW_START_FORKSERVER};
static const char *method_name[] = {"fork", "spawn", "forkserver"};

/* The child: takes every handle, uses it, checks the error paths, and
 * releases what it took. Exit codes name the step that failed. */
static int child_uses_handles(void *arg, size_t len)
{
    (void)arg, (void)len;
    crew_queue *q;
    crew_pipe *p;
    crew_shm *s;
    crew_array *a;
    if (crew_child_handle_queue("jobs", &q) != 0)
        return 10;
    if (crew_child_handle_pipe("chan", &p) != 0)
        return 11;
    if (crew_child_handle_shm("region", &s) != 0)
        return 12;
    if (crew_child_handle_array("counter", &a) != 0)
        return 13;
    /* Each name once; a name of another kind; a name nobody gave. */
    crew_queue *q2 = (crew_queue *)&q;
    if (crew_child_handle_queue("jobs", &q2) != CREW_ESTATE || q2 != NULL)
        return 20;
    if (crew_child_handle_queue("chan", &q2) != CREW_ESTATE)
        return 21; /* taken already wins over the kind */
    if (crew_child_handle_queue("nope", &q2) != CREW_ENOTFOUND)
        return 22;
    if (crew_child_handle_queue(NULL, &q2) != CREW_EINVAL ||
        crew_child_handle_queue("jobs", NULL) != CREW_EINVAL)
        return 23;
    crew_pipe *p2;
    if (crew_child_handle_pipe("spare", &p2) != CREW_EINVAL || p2 != NULL) /* a queue */
        return 24;
    crew_queue *spare;
    if (crew_child_handle_queue("spare", &spare) != 0)
        return 25;

    char job[32];
    size_t n;
    if (crew_queue_get(q, job, sizeof job, &n, 20) != 0 || crew_queue_task_done(q) != 0)
        return 30;
    int src = crew_pipe_send(p, job, n, 20);
    if (src != 0) {
        fprintf(stderr, "child: send: %s\n", crew_err_name(src));
        return 31;
    }
    memcpy(crew_shm_ptr(s), "written by the child", 21);
    if (crew_array_add(a, 0, 5, NULL) != 0)
        return 32;
    if (crew_queue_put(spare, "spare", 5, 0) != 0)
        return 33;
    crew_queue_destroy(q);
    crew_queue_destroy(spare);
    crew_pipe_destroy(p);
    crew_shm_destroy(s);
    crew_array_destroy(a);
    return 0;
}

/* Every start method: the child finds each object by name and uses it; the
 * parent sees the effects in its own handles, and no descriptor is left
 * behind in the parent. */
static void test_handles_every_method(void)
{
    CHECK_OK(crew_forkserver_start()); /* its socket and pidfd: before counting fds */
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        crew_queue_options qo = {.joinable = 1};
        crew_queue *q, *spare;
        CHECK_OK(crew_queue_create(&q, &qo));
        CHECK_OK(crew_queue_create(&spare, NULL));
        crew_pipe *pa, *pb;
        CHECK_OK(crew_pipe_create(&pa, &pb, NULL));
        crew_shm *s;
        CHECK_OK(crew_shm_create(&s, 4096, NULL));
        crew_array *a;
        CHECK_OK(crew_value_create(&a, CREW_TYPE_I64, 0, CREW_ARRAY_LOCK));
        CHECK_OK(crew_queue_put(q, "job-1", 5, 0));
        int fds_before = test_count_fds();

        crew_handle hs[] = {
            {CREW_HANDLE_QUEUE, "jobs", q},     {CREW_HANDLE_PIPE, "chan", pb},
            {CREW_HANDLE_SHM, "region", s},     {CREW_HANDLE_ARRAY, "counter", a},
            {CREW_HANDLE_QUEUE, "spare", spare},
        };
        crew_process_options o = {.method = methods[m], .handles = hs,
                                  .n_handles = sizeof hs / sizeof hs[0]};
        crew_process *c;
        CHECK_OK(crew_process_start(&c, child_uses_handles, NULL, 0, &o));
        CHECK_EQ(test_count_fds(), fds_before); /* the child's copies are closed here */
        CHECK_OK(crew_pipe_destroy(pb));        /* the child holds its own */
        char buf[32];
        size_t n;
        int rrc = crew_pipe_recv(pa, buf, sizeof buf, &n, 20);
        crew_exit st;
        if (rrc != 0) {
            CHECK_OK(crew_process_join(c, 30, &st));
            TEST_FAIL("%s: recv %s; child: signal %d, exit %d", method_name[m],
                      crew_err_name(rrc), st.signal, st.code);
        }
        CHECK_EQ(n, 5);
        CHECK(memcmp(buf, "job-1", 5) == 0);
        CHECK_OK(crew_process_join(c, 30, &st));
        if (st.signal || st.code)
            TEST_FAIL("%s child: signal %d, exit %d", method_name[m], st.signal, st.code);
        CHECK_OK(crew_process_destroy(c));
        /* The child's end is gone with the child: EOF, no stray holder. */
        CHECK_ERR(crew_pipe_recv(pa, buf, sizeof buf, &n, 20), CREW_EOF);
        CHECK_OK(crew_queue_join(q, 0)); /* the child's task_done counted */
        CHECK(memcmp(crew_shm_ptr(s), "written by the child", 21) == 0);
        int64_t v;
        CHECK_OK(crew_array_get(a, 0, &v));
        CHECK_EQ(v, 5);
        CHECK_OK(crew_queue_get(spare, buf, sizeof buf, &n, 0));
        CHECK_EQ(n, 5);
        CHECK_OK(crew_queue_destroy(q));
        CHECK_OK(crew_queue_destroy(spare));
        CHECK_OK(crew_pipe_destroy(pa));
        CHECK_OK(crew_shm_destroy(s));
        CHECK_OK(crew_array_destroy(a));
        printf("# %s: ok\n", method_name[m]);
    }
}

/* A child that takes nothing and a process that is no child: no handles. */
static int child_takes_none(void *arg, size_t len)
{
    (void)arg, (void)len;
    crew_queue *q;
    return crew_child_handle_queue("jobs", &q) == CREW_ENOTFOUND ? 0 : 1;
}

static int child_ignores_handles(void *arg, size_t len)
{
    (void)arg, (void)len;
    return 0;
}

static void test_no_handles(void)
{
    crew_queue *q;
    CHECK_ERR(crew_child_handle_queue("jobs", &q), CREW_ENOTFOUND);
    crew_pipe *p;
    CHECK_ERR(crew_child_handle_pipe("chan", &p), CREW_ENOTFOUND);
    crew_shm *s;
    CHECK_ERR(crew_child_handle_shm("region", &s), CREW_ENOTFOUND);
    crew_array *a;
    CHECK_ERR(crew_child_handle_array("counter", &a), CREW_ENOTFOUND);
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        crew_process_options o = {.method = methods[m]};
        crew_process *c;
        CHECK_OK(crew_process_start(&c, child_takes_none, NULL, 0, &o));
        crew_exit st;
        CHECK_OK(crew_process_join(c, 30, &st));
        CHECK_EQ(st.code, 0);
        CHECK_OK(crew_process_destroy(c));
    }
}

/* A pipe end handed over but never taken: the descriptor the child got is
 * closed at its exit like any other, so the parent still sees EOF. */
static void test_untaken_handle(void)
{
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        crew_pipe *pa, *pb;
        CHECK_OK(crew_pipe_create(&pa, &pb, NULL));
        crew_handle h = {CREW_HANDLE_PIPE, "chan", pb};
        crew_process_options o = {.method = methods[m], .handles = &h, .n_handles = 1};
        crew_process *c;
        CHECK_OK(crew_process_start(&c, child_ignores_handles, NULL, 0, &o));
        CHECK_OK(crew_pipe_destroy(pb));
        crew_exit st;
        CHECK_OK(crew_process_join(c, 30, &st));
        CHECK_EQ(st.code, 0);
        CHECK_OK(crew_process_destroy(c));
        char b;
        CHECK_ERR(crew_pipe_recv(pa, &b, 1, NULL, 20), CREW_EOF);
        CHECK_OK(crew_pipe_destroy(pa));
    }
}

/* Bad handle lists fail the start with exact codes and start nothing. */
static void test_start_errors(void)
{
    CHECK_OK(crew_forkserver_start());
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, NULL));
    int fds = test_count_fds();
    crew_process *c = (crew_process *)&q;
    crew_process_options o = {.method = CREW_START_FORK, .n_handles = 1};
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    CHECK(c == NULL);
    crew_handle h = {CREW_HANDLE_QUEUE, "jobs", q};
    o.handles = &h;
    h.kind = (crew_handle_kind)0;
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    h.kind = (crew_handle_kind)99;
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    h.kind = CREW_HANDLE_QUEUE;
    h.object = NULL;
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    h.object = q;
    h.name = NULL;
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    h.name = "";
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    char longname[CREW_HANDLE_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    h.name = longname; /* one byte too many */
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    longname[CREW_HANDLE_NAME_MAX] = '\0'; /* just fits */
    CHECK_OK(crew_process_start(&c, child_ignores_handles, NULL, 0, &o));
    CHECK_OK(crew_process_join(c, 30, NULL));
    CHECK_OK(crew_process_destroy(c));
    crew_handle two[2] = {{CREW_HANDLE_QUEUE, "same", q}, {CREW_HANDLE_QUEUE, "same", q}};
    o.handles = two;
    o.n_handles = 2;
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_EINVAL);
    crew_handle many[CREW_MAX_HANDLES + 1];
    char names[CREW_MAX_HANDLES + 1][8];
    for (int i = 0; i <= CREW_MAX_HANDLES; i++) {
        snprintf(names[i], sizeof names[i], "h%d", i);
        many[i] = (crew_handle){CREW_HANDLE_QUEUE, names[i], q};
    }
    o.handles = many;
    o.n_handles = CREW_MAX_HANDLES + 1;
    CHECK_ERR(crew_process_start(&c, child_ignores_handles, NULL, 0, &o), CREW_E2BIG);
    o.n_handles = CREW_MAX_HANDLES; /* the most: fine */
    CHECK_OK(crew_process_start(&c, child_ignores_handles, NULL, 0, &o));
    CHECK_OK(crew_process_join(c, 30, NULL));
    CHECK_OK(crew_process_destroy(c));
    CHECK_EQ(test_count_fds(), fds); /* no handle fd left behind, failed starts included */
    CHECK_OK(crew_queue_destroy(q));
}

static const test_case cases[] = {
    TEST_CASE(test_handles_every_method),
    TEST_CASE(test_no_handles),
    TEST_CASE(test_untaken_handle),
    TEST_CASE(test_start_errors),
};
TEST_MAIN_NOHELPERS(cases)
