/* Tasks that live in a dlopen'ed module: spawn and forkserver children load
 * the module by path; a module deleted since is a start error
 * (CREW_ENOTFOUND), not a child that crashes. */
#include "crew_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>

static char mod_path[PATH_MAX];

static void find_module(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    snprintf(mod_path, sizeof mod_path, "%s/libmod_process_task.so", dirname(exe));
}

static crew_process_fn load(const char *path, void **handle)
{
    *handle = dlopen(path, RTLD_NOW);
    if (!*handle)
        TEST_FAIL("dlopen %s: %s", path, dlerror());
    void *sym = dlsym(*handle, "mod_process_task");
    CHECK(sym != NULL);
    crew_process_fn fn;
    memcpy(&fn, &sym, sizeof fn);
    return fn;
}

static void test_dlopened_task_runs(void)
{
    find_module();
    void *h;
    crew_process_fn fn = load(mod_path, &h);
    crew_start_method ms[] = {CREW_START_FORK, CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int i = 0; i < 3; i++) {
        crew_process_options o = {0};
        o.method = ms[i];
        crew_process *p;
        int x = 41;
        CHECK_OK(crew_process_start(&p, fn, &x, sizeof x, &o));
        crew_exit st;
        CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
        CHECK_EQ(st.code, 42);
        CHECK_OK(crew_process_destroy(p));
    }
    dlclose(h);
}

static void test_deleted_module_is_a_start_error(void)
{
    find_module();
    char copy[] = "/tmp/crew-mod-XXXXXX";
    int out = mkstemp(copy);
    CHECK(out >= 0);
    int in = open(mod_path, O_RDONLY);
    CHECK(in >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, (size_t)n) == n);
    close(in);
    close(out);
    void *h;
    crew_process_fn fn = load(copy, &h);
    CHECK(unlink(copy) == 0); /* the parent keeps it mapped; no child can load it */
    crew_forkserver_stop(); /* a fresh server has not loaded it either */
    int kids = test_count_children();
    crew_start_method ms[] = {CREW_START_SPAWN, CREW_START_FORKSERVER};
    for (int i = 0; i < 2; i++) {
        crew_process_options o = {0};
        o.method = ms[i];
        crew_process *p = NULL;
        int x = 1;
        CHECK_ERR(crew_process_start(&p, fn, &x, sizeof x, &o), CREW_ENOTFOUND);
        CHECK(p == NULL);
    }
    /* At most the new forkserver remains; no failed child is left. */
    CHECK(test_count_children() <= kids + 1);
    /* fork needs no module lookup. */
    crew_process_options o = {0};
    o.method = CREW_START_FORK;
    crew_process *p;
    int x = 1;
    CHECK_OK(crew_process_start(&p, fn, &x, sizeof x, &o));
    crew_exit st;
    CHECK_OK(crew_process_join(p, CREW_FOREVER, &st));
    CHECK_EQ(st.code, 2);
    CHECK_OK(crew_process_destroy(p));
    dlclose(h);
}

static const test_case cases[] = {
    TEST_CASE(test_dlopened_task_runs),
    TEST_CASE(test_deleted_module_is_a_start_error),
};
TEST_MAIN_NOHELPERS(cases)
