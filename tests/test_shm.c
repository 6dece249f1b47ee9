/* crew_shm: regions across fork, spawn and forkserver children, sealing,
 * nothing in /dev/shm, no leaks; the allocator; Value and Array with and
 * without a lock, incremented by several processes. */
// CREW_TEST_TIMEOUT 120
#include "crew_test.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

static const crew_start_method methods[] = {CREW_START_FORK, CREW_START_SPAWN,
                                            CREW_START_FORKSERVER};

static crew_exit run_with_fd(crew_process_fn fn, const void *arg, size_t len, crew_start_method m,
                             int fd)
{
    crew_process_options o = {0};
    o.method = m;
    o.pass_fds = &fd;
    o.n_pass_fds = 1;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, fn, arg, len, &o));
    crew_exit st;
    CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
    CHECK_OK(crew_process_destroy(p));
    return st;
}

/* arg: {fd, value}. Attaches the region and writes value at byte 100. */
static int task_attach_write(void *arg, size_t len)
{
    CHECK(len == 2 * sizeof(int));
    int *a = arg;
    crew_shm *s;
    int rc = crew_shm_attach(&s, a[0]);
    if (rc)
        return 50;
    ((unsigned char *)crew_shm_ptr(s))[100] = (unsigned char)a[1];
    CHECK_OK(crew_shm_destroy(s));
    return 0;
}

static void test_region_across_methods(void)
{
    int devshm = test_count_dir("/dev/shm") + 1; /* count_dir subtracts its own fd */
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 1000, NULL));
    CHECK(crew_shm_size(s) >= 1000);
    unsigned char *p = crew_shm_ptr(s);
    for (size_t i = 0; i < crew_shm_size(s); i++)
        CHECK(p[i] == 0);
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int a[2] = {crew_shm_fd(s), (int)(10 + i)};
        crew_exit st = run_with_fd(task_attach_write, a, sizeof a, methods[i], a[0]);
        CHECK_EQ(st.code, 0);
        CHECK_EQ(p[100], 10 + i);
    }
    CHECK_EQ(test_count_dir("/dev/shm") + 1, devshm);
    CHECK_OK(crew_shm_destroy(s));
}

static int task_write_inherited(void *arg, size_t len)
{
    (void)len;
    crew_shm *s = *(crew_shm **)arg;
    ((int *)crew_shm_ptr(s))[3] = 77; /* the fork child inherits the mapping */
    return 0;
}

static void test_fork_inherits(void)
{
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 64, NULL));
    crew_process_options o = {0};
    o.method = CREW_START_FORK;
    crew_process *p;
    CHECK_OK(crew_process_start(&p, task_write_inherited, &s, sizeof s, &o));
    CHECK_OK(crew_process_join(p, CREW_FOREVER, NULL));
    CHECK_OK(crew_process_destroy(p));
    CHECK_EQ(((int *)crew_shm_ptr(s))[3], 77);
    CHECK_OK(crew_shm_destroy(s));
}

static void test_region_errors_and_leaks(void)
{
    crew_shm *s = NULL;
    CHECK_ERR(crew_shm_create(NULL, 10, NULL), CREW_EINVAL);
    CHECK_ERR(crew_shm_create(&s, 0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_shm_create(&s, SIZE_MAX, NULL), CREW_EOVERFLOW);
    crew_shm_options ho = {.heap = 1};
    CHECK_OK(crew_shm_create(&s, 100, &ho)); /* rounded up to a page: fine */
    CHECK_OK(crew_shm_destroy(s));
    CHECK_ERR(crew_shm_attach(&s, -1), CREW_EBADF);
    CHECK_ERR(crew_shm_attach(&s, 999), -EBADF);
    /* Not sealed: refused. */
    int fd = memfd_create("plain", MFD_CLOEXEC);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
    CHECK_ERR(crew_shm_attach(&s, fd), CREW_EINVAL);
    close(fd);
    CHECK_ERR(crew_shm_destroy(NULL), CREW_EINVAL);
    CHECK(crew_shm_ptr(NULL) == NULL && crew_shm_size(NULL) == 0);

    int fds = 0, maps = 0;
    for (int i = 0; i < 220; i++) {
        if (i == 20) { /* after a warm-up: sanitizer runtimes map shadow lazily */
            fds = test_count_fds();
            maps = test_count_maps();
        }
        CHECK_OK(crew_shm_create(&s, 1 << 16, NULL));
        crew_shm *t;
        CHECK_OK(crew_shm_attach(&t, crew_shm_fd(s)));
        /* Sealed: nobody can shrink it under the other mappings. */
        CHECK(ftruncate(crew_shm_fd(t), 10) != 0);
        CHECK_EQ(crew_shm_size(t), crew_shm_size(s));
        ((char *)crew_shm_ptr(s))[5] = 'z';
        CHECK(((char *)crew_shm_ptr(t))[5] == 'z');
        size_t off;
        CHECK_OK(crew_shm_offset(t, (char *)crew_shm_ptr(t) + 5, &off));
        CHECK_EQ(off, 5);
        CHECK(*(char *)crew_shm_at(s, off) == 'z');
        CHECK(crew_shm_at(s, crew_shm_size(s)) == NULL);
        CHECK_ERR(crew_shm_offset(t, &off, &off), CREW_ERANGE);
        CHECK_OK(crew_shm_destroy(t));
        CHECK_OK(crew_shm_destroy(s));
    }
    CHECK_EQ(test_count_fds(), fds);
    CHECK_EQ(test_count_maps(), maps);
}

/* ---- allocator ---- */

static void test_heap_basic(void)
{
    crew_shm_options o = {.heap = 1};
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 1 << 16, &o));
    size_t free0;
    CHECK_OK(crew_shm_heap_free_bytes(s, &free0));
    CHECK(free0 > 60000);
    size_t offs[100];
    for (int i = 0; i < 100; i++) {
        CHECK_OK(crew_shm_alloc(s, (size_t)(1 + i * 5), &offs[i]));
        CHECK(offs[i] % 16 == 0);
        memset(crew_shm_at(s, offs[i]), i, (size_t)(1 + i * 5));
    }
    for (int i = 0; i < 100; i++) {
        unsigned char *b = crew_shm_at(s, offs[i]);
        for (int k = 0; k < 1 + i * 5; k++)
            CHECK(b[k] == i);
    }
    /* Free in a scrambled order; everything coalesces back. */
    for (int i = 0; i < 100; i += 2)
        CHECK_OK(crew_shm_free(s, offs[i]));
    CHECK_ERR(crew_shm_free(s, offs[0]), CREW_EINVAL); /* double free */
    for (int i = 99; i > 0; i -= 2)
        CHECK_OK(crew_shm_free(s, offs[i]));
    size_t free1;
    CHECK_OK(crew_shm_heap_free_bytes(s, &free1));
    CHECK_EQ(free1, free0);
    /* One block of everything, then nothing left. */
    size_t big;
    CHECK_OK(crew_shm_alloc(s, free0, &big));
    size_t x;
    CHECK_ERR(crew_shm_alloc(s, 1, &x), CREW_ENOMEM);
    CHECK_OK(crew_shm_free(s, big));
    CHECK_ERR(crew_shm_alloc(s, 0, &x), CREW_EINVAL);
    CHECK_ERR(crew_shm_alloc(s, free0 + 1, &x), CREW_ENOMEM);
    CHECK_ERR(crew_shm_free(s, 3), CREW_EINVAL);
    crew_shm *plain;
    CHECK_OK(crew_shm_create(&plain, 1 << 16, NULL));
    CHECK_ERR(crew_shm_alloc(plain, 16, &x), CREW_EINVAL);
    CHECK_OK(crew_shm_destroy(plain));
    CHECK_OK(crew_shm_destroy(s));
}

/* arg: {fd, seed, rounds}: random alloc/free with content checks. */
static int task_heap_churn(void *arg, size_t len)
{
    CHECK(len == 3 * sizeof(int));
    int *a = arg;
    crew_shm *s;
    if (crew_shm_attach(&s, a[0]))
        return 60;
    unsigned r = (unsigned)a[1];
    size_t held[16] = {0};
    size_t sz[16] = {0};
    for (int i = 0; i < a[2]; i++) {
        r = r * 1103515245u + 12345u;
        int k = (int)((r >> 16) % 16);
        if (held[k]) {
            unsigned char *b = crew_shm_at(s, held[k]);
            for (size_t q = 0; q < sz[k]; q++)
                if (b[q] != (unsigned char)(k + a[1]))
                    return 61;
            if (crew_shm_free(s, held[k]))
                return 62;
            held[k] = 0;
        } else {
            sz[k] = 1 + (r >> 8) % 300;
            int rc = crew_shm_alloc(s, sz[k], &held[k]);
            if (rc == CREW_ENOMEM) {
                held[k] = 0;
                continue;
            }
            if (rc)
                return 63;
            memset(crew_shm_at(s, held[k]), k + a[1], sz[k]);
        }
    }
    for (int k = 0; k < 16; k++)
        if (held[k] && crew_shm_free(s, held[k]))
            return 64;
    crew_shm_destroy(s);
    return 0;
}

static void test_heap_multiprocess(void)
{
    crew_shm_options o = {.heap = 1};
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 1 << 16, &o));
    size_t free0;
    CHECK_OK(crew_shm_heap_free_bytes(s, &free0));
    crew_process *p[4];
    int rounds = TEST_SANITIZED ? 2000 : 20000;
    for (int i = 0; i < 4; i++) {
        int a[3] = {crew_shm_fd(s), 17 * (i + 1), rounds};
        crew_process_options po = {0};
        po.method = i % 2 ? CREW_START_FORK : CREW_START_FORKSERVER;
        po.pass_fds = &a[0];
        po.n_pass_fds = 1;
        CHECK_OK(crew_process_start(&p[i], task_heap_churn, a, sizeof a, &po));
    }
    for (int i = 0; i < 4; i++) {
        crew_exit st;
        CHECK_OK(crew_process_join(p[i], CREW_FOREVER, &st));
        if (st.code || st.signal)
            TEST_FAIL("churn %d: code %d signal %d", i, st.code, st.signal);
        CHECK_OK(crew_process_destroy(p[i]));
    }
    size_t free1;
    CHECK_OK(crew_shm_heap_free_bytes(s, &free1));
    CHECK_EQ(free1, free0);
    CHECK_OK(crew_shm_destroy(s));
}

/* Workers churning the heap are SIGKILLed at random points, again and
 * again: the heap must stay consistent (walkable, reusable), at worst with
 * a few blocks leaked. */
static void test_heap_killed_users(void)
{
    crew_shm_options o = {.heap = 1};
    crew_shm *s;
    /* Big enough for what the killed workers still held: up to 16 blocks of
     * <= 316 bytes each, lost with them (as a crashed process's malloc). */
    CHECK_OK(crew_shm_create(&s, 4 << 20, &o));
    size_t free0;
    CHECK_OK(crew_shm_heap_free_bytes(s, &free0));
    unsigned seed = 12345;
    int rounds = TEST_SANITIZED ? 5 : 30;
    for (int r = 0; r < rounds; r++) {
        crew_process *p[2];
        for (int i = 0; i < 2; i++) {
            int a[3] = {crew_shm_fd(s), 31 * (r + 1) + i, 1 << 30};
            crew_process_options po = {0};
            po.method = CREW_START_FORK;
            CHECK_OK(crew_process_start(&p[i], task_heap_churn, a, sizeof a, &po));
        }
        seed = seed * 1103515245u + 12345u;
        /* Fault injection timing, not synchronisation. */
        struct timespec ts = {0, (long)(200000 + (seed >> 8) % 3000000)};
        nanosleep(&ts, NULL);
        for (int i = 0; i < 2; i++) {
            CHECK_OK(crew_process_kill(p[i], SIGKILL));
            crew_exit st;
            CHECK_OK(crew_process_join(p[i], CREW_FOREVER, &st));
            CHECK(st.signal == SIGKILL || (st.code == 0 && st.signal == 0));
            CHECK_OK(crew_process_destroy(p[i]));
        }
        size_t f;
        CHECK_OK(crew_shm_heap_free_bytes(s, &f)); /* walkable, lock recovered */
        CHECK(f <= free0);
    }
    /* Still usable: what is free can be allocated and given back. */
    size_t f, off;
    CHECK_OK(crew_shm_heap_free_bytes(s, &f));
    /* Leaks are bounded: what the dead held, plus at most the block in hand. */
    CHECK(free0 - f <= (size_t)rounds * 2 * 17 * 336);
    CHECK_OK(crew_shm_alloc(s, 64, &off));
    memset(crew_shm_at(s, off), 1, 64);
    CHECK_OK(crew_shm_free(s, off));
    size_t f2;
    CHECK_OK(crew_shm_heap_free_bytes(s, &f2));
    CHECK_EQ(f2, f);
    CHECK_OK(crew_shm_destroy(s));
}

/* ---- Value / Array ---- */

static void test_value_array_basic(void)
{
    crew_value *v;
    CHECK_OK(crew_value_create(&v, CREW_TYPE_I64, 0, CREW_ARRAY_LOCK));
    CHECK(crew_array_lock(v) != NULL);
    CHECK_EQ(crew_array_count(v), 1);
    CHECK_EQ(crew_array_elem_size(v), 8);
    CHECK((uintptr_t)crew_array_data(v) % 64 == 0);
    int64_t x = 41, y = 0;
    CHECK_OK(crew_array_set(v, 0, &x));
    double r;
    CHECK_OK(crew_array_add(v, 0, 1, &r));
    CHECK(r == 42.0);
    CHECK_OK(crew_array_get(v, 0, &y));
    CHECK_EQ(y, 42);
    CHECK_ERR(crew_array_get(v, 1, &y), CREW_ERANGE);
    CHECK_OK(crew_array_destroy(v));

    crew_array *a;
    CHECK_OK(crew_array_create(&a, CREW_TYPE_BYTES, 24, 10, 0));
    CHECK(crew_array_lock(a) == NULL);
    char in[24] = "twenty-four bytes here!", out[24];
    CHECK_OK(crew_array_set(a, 9, in));
    CHECK_OK(crew_array_get(a, 9, out));
    CHECK(memcmp(in, out, 24) == 0);
    CHECK_ERR(crew_array_add(a, 0, 1, NULL), CREW_EINVAL);
    CHECK_OK(crew_array_destroy(a));

    CHECK_OK(crew_array_create(&a, CREW_TYPE_U32, 0, 3, 0));
    CHECK_OK(crew_array_add(a, 2, -1, &r)); /* wraps like C unsigned */
    CHECK(r == 4294967295.0);
    CHECK_ERR(crew_array_add(a, 2, 1e300, &r), CREW_ERANGE);
    CHECK_ERR(crew_array_add(a, 2, 0.0 / 0.0, &r), CREW_ERANGE);
    CHECK_ERR(crew_array_add(a, 3, 1, &r), CREW_ERANGE);
    CHECK_OK(crew_array_destroy(a));
    CHECK_OK(crew_array_create(&a, CREW_TYPE_DOUBLE, 0, 1, 0));
    CHECK_ERR(crew_array_add(a, 0, 1.5, NULL), CREW_EINVAL); /* needs the lock */
    CHECK_OK(crew_array_destroy(a));
    CHECK_OK(crew_array_create(&a, CREW_TYPE_DOUBLE, 0, 1, CREW_ARRAY_LOCK));
    CHECK_OK(crew_array_add(a, 0, 1.5, &r));
    CHECK(r == 1.5);
    CHECK_OK(crew_array_destroy(a));

    CHECK_ERR(crew_array_create(NULL, CREW_TYPE_I32, 0, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_array_create(&a, CREW_TYPE_I32, 0, 0, 0), CREW_EINVAL);
    CHECK_ERR(crew_array_create(&a, CREW_TYPE_BYTES, 0, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_array_create(&a, (crew_type)99, 0, 1, 0), CREW_EINVAL);
    CHECK_ERR(crew_array_create(&a, CREW_TYPE_I64, 0, SIZE_MAX / 4, 0), CREW_EOVERFLOW);
    /* An array's fd is not a heap and vice versa. */
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 4096, NULL));
    CHECK_ERR(crew_array_attach(&a, crew_shm_fd(s)), CREW_EINVAL);
    CHECK_OK(crew_shm_destroy(s));
}

/* arg: {fd, n, use_lock_explicitly}: attaches the counter and adds 1, n
 * times: through crew_array_add, or by hand under crew_array_lock. */
static int task_count(void *arg, size_t len)
{
    CHECK(len == 3 * sizeof(int));
    int *a = arg;
    crew_array *v;
    if (crew_array_attach(&v, a[0]))
        return 70;
    for (int i = 0; i < a[1]; i++) {
        if (a[2]) {
            crew_lock *l = crew_array_lock(v);
            if (crew_lock_acquire(l, CREW_FOREVER) != 0)
                return 71;
            int64_t *c = crew_array_data(v);
            *c = *c + 1; /* a plain read-modify-write, safe under the lock */
            crew_lock_release(l);
        } else if (crew_array_add(v, 0, 1, NULL)) {
            return 72;
        }
    }
    crew_array_destroy(v);
    return 0;
}

static void test_value_multiprocess(void)
{
    int n = TEST_SANITIZED ? 2000 : 20000;
    for (int locked = 0; locked < 2; locked++)
        for (int byhand = 0; byhand <= locked; byhand++) {
            crew_value *v;
            CHECK_OK(crew_value_create(&v, CREW_TYPE_I64, 0, locked ? CREW_ARRAY_LOCK : 0));
            crew_process *p[3];
            for (int i = 0; i < 3; i++) {
                int a[3] = {crew_array_fd(v), n, byhand};
                crew_process_options o = {0};
                o.method = methods[i];
                o.pass_fds = &a[0];
                o.n_pass_fds = 1;
                CHECK_OK(crew_process_start(&p[i], task_count, a, sizeof a, &o));
            }
            for (int i = 0; i < 3; i++) {
                crew_exit st;
                CHECK_OK(crew_process_join(p[i], CREW_FOREVER, &st));
                CHECK_EQ(st.code, 0);
                CHECK_OK(crew_process_destroy(p[i]));
            }
            int64_t c;
            CHECK_OK(crew_array_get(v, 0, &c));
            CHECK_EQ(c, 3 * n);
            CHECK_OK(crew_array_destroy(v));
        }
}

/* ---- sync objects inside a region, shared by fresh processes ---- */

/* arg: {fd, offset of a crew_sem in the heap, n}: attach, release n times. */
static int task_sem_release(void *arg, size_t len)
{
    CHECK(len == 3 * sizeof(long));
    long *a = arg;
    crew_shm *s;
    if (crew_shm_attach(&s, (int)a[0]))
        return 80;
    crew_sem *sem = crew_shm_at(s, (size_t)a[1]);
    for (long i = 0; i < a[2]; i++)
        if (crew_sem_release(sem, 1) != 0)
            return 81;
    crew_shm_destroy(s);
    return 0;
}

static void test_sync_in_region(void)
{
    crew_shm_options o = {.heap = 1};
    crew_shm *s;
    CHECK_OK(crew_shm_create(&s, 1 << 16, &o));
    size_t off;
    CHECK_OK(crew_shm_alloc(s, sizeof(crew_sem), &off));
    crew_sem *sem = crew_shm_at(s, off);
    CHECK_OK(crew_sem_init(sem, 0, 1u << 30));
    long n = TEST_SANITIZED ? 300 : 3000;
    crew_process *p[2];
    crew_start_method ms[2] = {CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int i = 0; i < 2; i++) {
        long a[3] = {crew_shm_fd(s), (long)off, n};
        int fd = crew_shm_fd(s);
        crew_process_options po = {0};
        po.method = ms[i];
        po.pass_fds = &fd;
        po.n_pass_fds = 1;
        CHECK_OK(crew_process_start(&p[i], task_sem_release, a, sizeof a, &po));
    }
    for (long i = 0; i < 2 * n; i++)
        CHECK_OK(crew_sem_acquire(sem, 10.0));
    for (int i = 0; i < 2; i++) {
        crew_exit st;
        CHECK_OK(crew_process_join(p[i], CREW_FOREVER, &st));
        CHECK_EQ(st.code, 0);
        CHECK_OK(crew_process_destroy(p[i]));
    }
    unsigned v = 99;
    CHECK_OK(crew_sem_value(sem, &v));
    CHECK_EQ(v, 0);
    CHECK_OK(crew_sem_destroy(sem));
    CHECK_OK(crew_shm_free(s, off));
    CHECK_OK(crew_shm_destroy(s));
}

/* ---- allocation failures: CREW_ENOMEM, nothing leaked ---- */
static void test_allocation_failures(void)
{
    int fds = test_count_fds(), maps = test_count_maps();
    for (int what = 0; what < 3; what++) {
        bool done = false;
        for (int budget = 0; budget < 10 && !done; budget++) {
            test_alloc_fail_after(budget);
            crew_shm *s = NULL, *t = NULL;
            crew_array *a = NULL;
            int rc;
            if (what == 0) {
                rc = crew_shm_create(&s, 4096, NULL);
            } else if (what == 1) {
                rc = crew_array_create(&a, CREW_TYPE_I64, 0, 8, CREW_ARRAY_LOCK);
            } else {
                atomic_store(&test_alloc_budget, 100);
                CHECK_OK(crew_shm_create(&s, 4096, NULL));
                atomic_store(&test_alloc_budget, budget);
                rc = crew_shm_attach(&t, crew_shm_fd(s));
            }
            test_alloc_restore();
            if (rc == 0) {
                done = true;
            } else {
                CHECK_EQ(rc, CREW_ENOMEM);
                CHECK(t == NULL && a == NULL && (what == 2 || s == NULL));
            }
            if (t)
                CHECK_OK(crew_shm_destroy(t));
            if (s)
                CHECK_OK(crew_shm_destroy(s));
            if (a)
                CHECK_OK(crew_array_destroy(a));
            CHECK_EQ(test_count_fds(), fds);
        }
        CHECK(done);
    }
    CHECK_EQ(test_count_maps(), maps);
}

static const test_case cases[] = {
    TEST_CASE(test_region_across_methods),
    TEST_CASE(test_fork_inherits),
    TEST_CASE(test_region_errors_and_leaks),
    TEST_CASE(test_heap_basic),
    TEST_CASE(test_heap_multiprocess),
    TEST_CASE(test_heap_killed_users),
    TEST_CASE(test_value_array_basic),
    TEST_CASE(test_value_multiprocess),
    TEST_CASE(test_sync_in_region),
    TEST_CASE(test_allocation_failures),
};
TEST_MAIN_NOHELPERS(cases)
