/* `crew compare --task` on a panel of task kinds (tests/mod_panel.c): the
 * advice has the properties each kind demands, whatever the timings --
 *  - a task that is not thread-safe never gets threads;
 *  - a task that crashes now and then gets processes, with figures for both
 *    models (threads measured without the crashing items) and the thread
 *    pool's death on record;
 *  - a task that waits gets workers well above the CPU count;
 *  - a task with big arguments gets them passed by reference;
 *  - a task that leaks gets recycled worker processes;
 *  - tiny items get a map;
 *  - well-behaved tasks (pure CPU, allocator-heavy, false sharing, memory
 *    bandwidth, mixed, uneven items) are never flagged wrong or crashed;
 *  - per-item input from --args (delimited and fixed records) reaches the
 *    task, and only fixed-size records are offered to a map;
 * and the JSON of every run is valid against docs/compare.schema.json and
 * written. Never a timing. Each run is --quick (about 5 s). */
// CREW_TEST_TIMEOUT 180
// CREW_TEST_LABEL stress
#include "test_compare.h"

#define PANEL CREW_TEST_MODULE_DIR "/libmod_panel.so"
#define RUN_LIMIT 240

/* Runs the panel task `kind` with --quick --json -q and the extra options;
 * checks the exit status and the schema; returns the document. */
static jval *run_panel(const char *kind, const char *const *extra, int want_exit)
{
    test_watchdog(RUN_LIMIT + 60);
    char spec[512];
    snprintf(spec, sizeof spec, "%s:%s", PANEL, kind);
    const char *args[48] = {"compare", "--quick", "-q", "--json", "--no-fault", "--task", spec};
    int n = 7;
    for (; extra && *extra && n < 46; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    cli_run r = run_cli(RUN_LIMIT, args);
    if (r.exit != want_exit)
        TEST_FAIL("%s: exit %d, expected %d: %s", kind, r.exit, want_exit, r.err);
    CHECK(r.out_len > 0); /* always written */
    jval *schema = load_schema(), *doc = json_parse(r.out);
    const char *e = schema_check(schema, schema, doc, "$");
    if (e)
        TEST_FAIL("%s: JSON does not validate: %s", kind, e);
    json_free(schema);
    cli_run_free(&r);
    CHECK(jpath(doc, "task.search.candidates") != NULL);
    return doc;
}

static const char *str_at(const jval *doc, const char *path)
{
    const jval *v = jpath(doc, path);
    if (!v || v->t != J_STR)
        TEST_FAIL("%s is not a string", path);
    return v->str;
}

static bool bool_at(const jval *doc, const char *path)
{
    const jval *v = jpath(doc, path);
    if (!v || v->t != J_BOOL)
        TEST_FAIL("%s is not a boolean", path);
    return v->b;
}

static const jval *advice_of(const jval *doc)
{
    const jval *a = jpath(doc, "task.advice");
    if (!a || a->t != J_OBJ)
        TEST_FAIL("no advice: %s", jpath(doc, "recommendation.headline") ? jpath(doc, "recommendation.headline")->str
                                                                         : "?");
    return a;
}

/* No candidate is flagged wrong, crashed or hung: a correct, well-behaved
 * task must never be mistaken for a broken one. */
static void check_no_false_alarm(const jval *doc, const char *kind)
{
    const jval *cs = jpath(doc, "task.search.candidates");
    for (size_t i = 0; i < cs->n; i++) {
        const char *st = str_at(cs->items[i], "state");
        if (strcmp(st, "wrong") == 0 || strcmp(st, "crashed") == 0 || strcmp(st, "hung") == 0)
            TEST_FAIL("%s: %s flagged %s: %s", kind, str_at(cs->items[i], "config.name"), st,
                      jpath(cs->items[i], "why")->t == J_STR ? jpath(cs->items[i], "why")->str : "");
    }
    advice_of(doc);
}

/* Some candidate of `model` has a measured speedup. */
static bool has_figures(const jval *doc, const char *model)
{
    const jval *cs = jpath(doc, "task.search.candidates");
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(str_at(cs->items[i], "config.model"), model) == 0 && jpath(cs->items[i], "speedup")->t == J_NUM)
            return true;
    return false;
}

static void test_not_thread_safe(void)
{
    jval *doc = run_panel("panel_unsafe", (const char *[]){"--index", NULL}, 0);
    const jval *a = advice_of(doc);
    if (strcmp(str_at(a, "config.model"), "threads") == 0)
        TEST_FAIL("a task that is not thread-safe got threads: %s", str_at(a, "config.name"));
    /* it was caught, not missed: wrong results (or, under a race detector,
     * a thread pool ending its process) */
    CHECK(bool_at(doc, "task.search.thread_unsafe") || bool_at(doc, "task.search.threads_crash"));
    json_free(doc);
}

static void test_crashes_now_and_then(void)
{
    jval *doc = run_panel("panel_crashy", (const char *[]){"--index", NULL}, 0);
    const jval *a = advice_of(doc);
    CHECK(strcmp(str_at(a, "config.model"), "processes") == 0);
    CHECK(bool_at(doc, "task.search.threads_crash"));
    CHECK(jnum_at(doc, "task.profile.crashed") >= 1);
    /* figures for both models */
    CHECK(has_figures(doc, "processes"));
    CHECK(has_figures(doc, "threads"));
    /* and a thread pool's death, as it happened */
    const jval *cs = jpath(doc, "task.search.candidates");
    bool died = false;
    for (size_t i = 0; i < cs->n; i++)
        died = died || (strcmp(str_at(cs->items[i], "config.model"), "threads") == 0 &&
                        jnum_at(cs->items[i], "died_signal") == SIGSEGV);
    CHECK(died);
    json_free(doc);
}

static void test_waiting_task(void)
{
    char svg[] = "/tmp/crew-panel-XXXXXX.svg";
    int fd = mkstemps(svg, 4);
    CHECK(fd >= 0);
    close(fd);
    jval *doc = run_panel("panel_wait", (const char *[]){"--index", "--plot", svg, NULL}, 0);
    const jval *a = advice_of(doc);
    double w = jnum_at(a, "config.workers"), cpus = jnum_at(doc, "machine.cpus");
    if (!(w >= 4 * cpus))
        TEST_FAIL("a task that waits 10 ms got %g workers on %g CPUs", w, cpus);
    CHECK(bool_at(doc, "task.profile.waits"));
    /* A spread bar needs two rounds or more of a plotted point: the plot
     * shows, per model and worker count, the fastest candidate only. */
    bool several = false;
    const jval *cs = jpath(doc, "task.search.candidates");
    for (size_t i = 0; i < cs->n; i++) {
        const jval *c = cs->items[i];
        if (jpath(c, "speedup")->t != J_NUM)
            continue;
        bool plotted = true;
        for (size_t j = 0; j < cs->n && plotted; j++) {
            const jval *d = cs->items[j];
            if (j != i && jpath(d, "speedup")->t == J_NUM &&
                strcmp(str_at(d, "config.model"), str_at(c, "config.model")) == 0 &&
                jnum_at(d, "config.workers") == jnum_at(c, "config.workers") &&
                jnum_at(d, "speedup") > jnum_at(c, "speedup"))
                plotted = false;
        }
        const jval *lo = jpath(c, "speedup_min");
        several = several || (plotted && lo && lo->t == J_NUM && jnum_at(c, "runs") >= 2);
    }
    json_free(doc);
    /* the plot: both views, every series, the spread bars, the advice ringed */
    char *text = read_file(svg);
    int elements = 0;
    const char *e = xml_check(text, &elements);
    if (e)
        TEST_FAIL("SVG is not well-formed XML: %s", e);
    static const char *ids[] = {"id=\"series-threads\"", "id=\"series-processes\"", "id=\"waiting-threads\"",
                                "id=\"waiting-processes\"", "id=\"recommended\"", "id=\"recommended-waiting\"",
                                "id=\"legend\"", "class=\"spread\""};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] - (several ? 0 : 1); i++)
        if (!strstr(text, ids[i]))
            TEST_FAIL("the plot lacks %s", ids[i]);
    free(text);
    unlink(svg);
}

static char *big_file(size_t size)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/crew-panel-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)size) == 0);
    unsigned char b = 7;
    CHECK(pwrite(fd, &b, 1, 0) == 1);
    close(fd);
    return path;
}

static void test_big_argument(void)
{
    char *path = big_file(16u << 20), arg[80];
    snprintf(arg, sizeof arg, "@%s", path);
    jval *doc = run_panel("panel_bigarg", (const char *[]){"--arg", arg, NULL}, 0);
    unlink(path);
    const jval *a = advice_of(doc);
    if (strcmp(str_at(a, "config.args"), "by_reference") != 0)
        TEST_FAIL("16 MiB arguments got %s", str_at(a, "config.name"));
    CHECK(strstr(str_at(a, "snippet"), "crew_pool_submit_shm") != NULL || strcmp(str_at(a, "config.dispatch"), "map") == 0);
    json_free(doc);
}

static void test_64mib_exactly(void)
{
    /* the documented limit is "at most 64 MiB": a file of exactly 64 MiB
     * is read (the run then stops at the missing symbol, exit 3), one byte
     * more is a usage error (exit 2) */
    char *path = big_file(64u << 20), arg[80];
    snprintf(arg, sizeof arg, "@%s", path);
    cli_run r = run_cli(60, (const char *[]){"compare", "-q", "--task", PANEL ":no_such_kernel", "--arg", arg, NULL});
    CHECK_EQ(r.exit, 3);
    cli_run_free(&r);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
    r = run_cli(60, (const char *[]){"compare", "-q", "--task", PANEL ":panel_bigarg", "--arg", arg, NULL});
    CHECK_EQ(r.exit, 2);
    CHECK(strstr(r.err, "64.0 MiB") != NULL);
    cli_run_free(&r);
    unlink(path);
}

static void test_leaking_task(void)
{
    jval *doc = run_panel("panel_leak", (const char *[]){"--index", NULL}, 0);
    const jval *a = advice_of(doc);
    CHECK(bool_at(doc, "task.profile.leaks"));
    CHECK(strcmp(str_at(a, "config.model"), "processes") == 0);
    if (!(jnum_at(a, "config.max_tasks_per_worker") > 0 || jnum_at(a, "config.max_worker_memory") > 0))
        TEST_FAIL("a leaking task got no recycling: %s", str_at(a, "config.name"));
    json_free(doc);
}

static void test_tiny_items(void)
{
    jval *doc = run_panel("panel_tiny", (const char *[]){"--index", NULL}, 0);
    const jval *a = advice_of(doc);
    if (strcmp(str_at(a, "config.dispatch"), "map") != 0)
        TEST_FAIL("tiny items got %s", str_at(a, "config.name"));
    check_no_false_alarm(doc, "panel_tiny");
    json_free(doc);
}

static void test_well_behaved(void)
{
    static const char *kinds[] = {"panel_cpu", "panel_alloc", "panel_share", "panel_membw", "panel_mixed",
                                  "panel_skewed"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        jval *doc = run_panel(kinds[i], (const char *[]){"--index", NULL}, 0);
        check_no_false_alarm(doc, kinds[i]);
        CHECK(bool_at(doc, "task.profile.deterministic"));
        json_free(doc);
    }
}

static void test_args_file(void)
{
    char path[] = "/tmp/crew-panel-args-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "record number %d%s\n", i, i % 3 ? "" : " (longer)");
    fclose(f);
    /* delimited records of several lengths: no map (a map takes records of one size) */
    jval *doc = run_panel("panel_echo", (const char *[]){"--args", path, NULL}, 0);
    CHECK_EQ(jnum_at(doc, "task.profile.items"), 40);
    check_no_false_alarm(doc, "panel_echo --args");
    const jval *cs = jpath(doc, "task.search.candidates");
    for (size_t i = 0; i < cs->n; i++)
        CHECK(strcmp(str_at(cs->items[i], "config.dispatch"), "futures") == 0);
    json_free(doc);
    /* fixed 8-byte records with --index: 16 bytes per item, map offered */
    f = fopen(path, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 40; i++)
        fprintf(f, "rec%05d", i);
    fclose(f);
    doc = run_panel("panel_echo", (const char *[]){"--args", path, "--record", "8", "--index", NULL}, 0);
    CHECK_EQ(jnum_at(doc, "task.profile.items"), 40);
    CHECK_EQ(jnum_at(doc, "task.profile.arg_bytes"), 16);
    check_no_false_alarm(doc, "panel_echo --record");
    bool map = false;
    cs = jpath(doc, "task.search.candidates");
    for (size_t i = 0; i < cs->n; i++)
        map = map || strcmp(str_at(cs->items[i], "config.dispatch"), "map") == 0;
    CHECK(map);
    json_free(doc);
    unlink(path);
}

static const test_case cases[] = {
    TEST_CASE(test_not_thread_safe), TEST_CASE(test_crashes_now_and_then), TEST_CASE(test_waiting_task),
    TEST_CASE(test_big_argument),    TEST_CASE(test_64mib_exactly),        TEST_CASE(test_leaking_task),
    TEST_CASE(test_tiny_items),      TEST_CASE(test_well_behaved),         TEST_CASE(test_args_file),
};
TEST_MAIN_NOHELPERS(cases)
