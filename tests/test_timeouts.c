/* The timeout convention of crew.h, checked on every public call that takes
 * a `double timeout`: a NaN timeout is CREW_EINVAL at once -- whether the
 * call would block (it used to wait forever) or would have succeeded at once
 * -- and the object is left as it was. */
#include "crew_test.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

static int t_wait_gate(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)al, (void)r, (void)rc, (void)rl;
    crew_event *gate;
    memcpy(&gate, a, sizeof gate);
    return crew_event_wait(gate, CREW_FOREVER);
}

static int t_sleep_100ms(crew_task *t, const void *a, size_t al, void *r, size_t rc, size_t *rl)
{
    (void)t, (void)a, (void)al, (void)r, (void)rc, (void)rl;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* the task's work, not synchronisation */
    return 0;
}

static void check_pool_waits(crew_pool_kind kind)
{
    crew_pool_options o = {0};
    o.kind = kind;
    o.workers = 1;
    crew_pool *p;
    CHECK_OK(crew_pool_create(&p, &o));
    crew_future *f;
    static crew_event gate;
    if (kind == CREW_THREADS) {
        /* Pending until we open the gate: a NaN wait must not turn into a
         * wait forever (this thread would then never open it). */
        CHECK_OK(crew_event_init(&gate));
        crew_event *gp = &gate;
        CHECK_OK(crew_pool_submit(p, t_wait_gate, &gp, sizeof gp, &f));
    } else {
        /* A worker process cannot see our event: a task that takes 100 ms
         * is pending for the calls below unless they wait for it. */
        CHECK_OK(crew_pool_submit(p, t_sleep_100ms, NULL, 0, &f));
    }
    CHECK_ERR(crew_future_wait(f, NAN), CREW_EINVAL);
    CHECK_ERR(crew_wait_all(&f, 1, NAN), CREW_EINVAL);
    CHECK_ERR(crew_wait_any(&f, 1, NAN, NULL), CREW_EINVAL);
    if (kind == CREW_THREADS) {
        CHECK_EQ(crew_future_done(f), 0);
        CHECK_OK(crew_event_set(&gate));
    }
    CHECK_OK(crew_future_wait(f, CREW_FOREVER));
    CHECK_EQ(crew_future_status(f), 0);
    /* Done: still refused (the argument is wrong whatever the state). */
    CHECK_ERR(crew_future_wait(f, NAN), CREW_EINVAL);
    CHECK_ERR(crew_wait_all(&f, 1, NAN), CREW_EINVAL);
    CHECK_ERR(crew_wait_all(NULL, 0, NAN), CREW_EINVAL);
    CHECK_ERR(crew_wait_any(&f, 1, NAN, NULL), CREW_EINVAL);
    CHECK_OK(crew_future_destroy(f));
    CHECK_OK(crew_pool_destroy(p));
}

static void test_pool_threads_nan(void) { check_pool_waits(CREW_THREADS); }
static void test_pool_processes_nan(void) { check_pool_waits(CREW_PROCESSES); }

/* Takes the lock, says so, holds it until the event is set. */
typedef struct holder {
    crew_lock *l;
    crew_event taken, go;
} holder;
static void *hold_lock(void *arg)
{
    holder *h = arg;
    CHECK_OK(crew_lock_acquire(h->l, CREW_FOREVER));
    CHECK_OK(crew_event_set(&h->taken));
    CHECK_OK(crew_event_wait(&h->go, CREW_FOREVER));
    CHECK_OK(crew_lock_release(h->l));
    return NULL;
}

static void test_sync_nan(void)
{
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    CHECK_ERR(crew_lock_acquire(&l, NAN), CREW_EINVAL); /* free: still refused */
    CHECK_OK(crew_lock_acquire(&l, 0));                  /* and not taken by it */
    CHECK_ERR(crew_lock_acquire(&l, NAN), CREW_EINVAL);  /* held by us: not EDEADLK */

    crew_cond c;
    CHECK_OK(crew_cond_init(&c));
    CHECK_ERR(crew_cond_wait(&c, &l, NAN), CREW_EINVAL);
    CHECK_OK(crew_lock_release(&l)); /* still ours: the NaN wait released nothing */

    crew_rlock r;
    CHECK_OK(crew_rlock_init(&r));
    CHECK_ERR(crew_rlock_acquire(&r, NAN), CREW_EINVAL);

    crew_sem s;
    CHECK_OK(crew_sem_init(&s, 0, 0));
    CHECK_ERR(crew_sem_acquire(&s, NAN), CREW_EINVAL); /* would block */
    CHECK_OK(crew_sem_init(&s, 1, 0));
    CHECK_ERR(crew_sem_acquire(&s, NAN), CREW_EINVAL); /* would succeed */
    CHECK_OK(crew_sem_acquire(&s, 0));                  /* the unit is still there */

    crew_event e;
    CHECK_OK(crew_event_init(&e));
    CHECK_ERR(crew_event_wait(&e, NAN), CREW_EINVAL);
    CHECK_OK(crew_event_set(&e));
    CHECK_ERR(crew_event_wait(&e, NAN), CREW_EINVAL);

    crew_barrier b;
    CHECK_OK(crew_barrier_init(&b, 2));
    CHECK_ERR(crew_barrier_wait(&b, NAN, NULL), CREW_EINVAL);
    unsigned waiting = 9;
    int broken = 9;
    CHECK_OK(crew_barrier_status_get(&b, NULL, &waiting, &broken));
    CHECK_EQ(waiting, 0);
    CHECK_EQ(broken, 0);
}

static int pred_false(void *arg)
{
    (void)arg;
    return 0;
}

static void test_cond_wait_for_nan(void)
{
    crew_lock l;
    crew_cond c;
    CHECK_OK(crew_lock_init(&l));
    CHECK_OK(crew_cond_init(&c));
    CHECK_OK(crew_lock_acquire(&l, CREW_FOREVER));
    CHECK_ERR(crew_cond_wait_for(&c, &l, pred_false, NULL, NAN), CREW_EINVAL);
    CHECK_OK(crew_lock_release(&l)); /* still held by us */
}

static void *thread_wait_event(void *arg)
{
    return (void *)(intptr_t)crew_event_wait(arg, CREW_FOREVER);
}

static void test_thread_join_nan(void)
{
    static crew_event e;
    CHECK_OK(crew_event_init(&e));
    crew_thread *t;
    CHECK_OK(crew_thread_start(&t, thread_wait_event, &e, NULL));
    CHECK_ERR(crew_thread_join(t, NAN, NULL), CREW_EINVAL);
    CHECK_OK(crew_event_set(&e));
    void *res = (void *)1;
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, &res)); /* still joinable */
    CHECK(res == NULL);
    CHECK_OK(crew_thread_destroy(t));

    /* A lock held by another thread: a NaN acquire does not wait for it. */
    crew_lock l;
    CHECK_OK(crew_lock_init(&l));
    holder h = {.l = &l};
    CHECK_OK(crew_event_init(&h.taken));
    CHECK_OK(crew_event_init(&h.go));
    CHECK_OK(crew_thread_start(&t, hold_lock, &h, NULL));
    CHECK_OK(crew_event_wait(&h.taken, CREW_FOREVER));
    CHECK_ERR(crew_lock_acquire(&l, NAN), CREW_EINVAL);
    CHECK_OK(crew_event_set(&h.go));
    CHECK_OK(crew_thread_join(t, CREW_FOREVER, NULL));
    CHECK_OK(crew_thread_destroy(t));
}

static int child_block(void *arg, size_t len)
{
    (void)arg, (void)len;
    for (;;)
        pause(); /* until the parent kills us */
    return 0;
}

static void test_process_join_nan(void)
{
    crew_process_options po = {0};
    po.method = CREW_START_FORK;
    crew_process *c;
    CHECK_OK(crew_process_start(&c, child_block, NULL, 0, &po));
    CHECK_ERR(crew_process_join(c, NAN, NULL), CREW_EINVAL);
    CHECK_OK(crew_process_kill(c, SIGKILL));
    crew_exit st;
    CHECK_OK(crew_process_join(c, CREW_FOREVER, &st));
    CHECK_EQ(st.signal, SIGKILL);
    CHECK_OK(crew_process_destroy(c));
}

static void fill_none(void *dst, size_t len, void *arg) { (void)dst, (void)len, (void)arg; }
static void read_none(const void *m, size_t len, void *arg) { (void)m, (void)len, (void)arg; }

static void test_queue_pipe_nan(void)
{
    crew_queue_options qo = {0};
    qo.capacity = 64;
    crew_queue *q;
    CHECK_OK(crew_queue_create(&q, &qo));
    char buf[64] = {0};
    size_t len = 0;
    /* Empty: get would block. */
    CHECK_ERR(crew_queue_get(q, buf, sizeof buf, &len, NAN), CREW_EINVAL);
    CHECK_ERR(crew_queue_get_with(q, read_none, NULL, NAN), CREW_EINVAL);
    /* Room: put would succeed -- and queues nothing. */
    CHECK_ERR(crew_queue_put(q, "x", 1, NAN), CREW_EINVAL);
    CHECK_ERR(crew_queue_put_with(q, 1, fill_none, NULL, NAN), CREW_EINVAL);
    CHECK_ERR(crew_queue_try_get(q, buf, sizeof buf, &len), CREW_EAGAIN);
    /* Full: put would block. */
    while (crew_queue_try_put(q, buf, 8) == 0)
        ;
    CHECK_ERR(crew_queue_put(q, "x", 1, NAN), CREW_EINVAL);
    CHECK_OK(crew_queue_destroy(q));

    crew_pipe *a, *b;
    CHECK_OK(crew_pipe_create(&a, &b, NULL));
    CHECK_ERR(crew_pipe_recv(b, buf, sizeof buf, &len, NAN), CREW_EINVAL);
    CHECK_ERR(crew_pipe_recv_with(b, read_none, NULL, NAN), CREW_EINVAL);
    CHECK_ERR(crew_pipe_send(a, "x", 1, NAN), CREW_EINVAL);
    CHECK_OK(crew_pipe_send(a, "y", 1, 0));
    CHECK_OK(crew_pipe_recv(b, buf, sizeof buf, &len, 0)); /* "x" was never sent */
    CHECK(len == 1 && buf[0] == 'y');
    CHECK_OK(crew_pipe_destroy(a));
    CHECK_OK(crew_pipe_destroy(b));
}

static const test_case cases[] = {
    TEST_CASE(test_pool_threads_nan), TEST_CASE(test_pool_processes_nan),
    TEST_CASE(test_sync_nan),         TEST_CASE(test_cond_wait_for_nan),
    TEST_CASE(test_thread_join_nan),  TEST_CASE(test_process_join_nan),
    TEST_CASE(test_queue_pipe_nan),
};
TEST_MAIN_NOHELPERS(cases)
