/* `crew compare --quick` runs for real: the JSON validates against
 * docs/compare.schema.json; the figures are measured (a heavier --task moves
 * the CPU figures, both models produce numbers); the user-task path works
 * with a test .so; --plot writes well-formed SVG with both series; --csv is
 * rectangular; stdout carries results only. Speed is never asserted. */
// CREW_TEST_TIMEOUT 300
// CREW_TEST_LABEL stress
#include "test_compare.h"

#define MOD CREW_TEST_MODULE_DIR "/libmod_task.so"

/* a run may take long under sanitizers; hangs are still caught */
#define RUN_LIMIT 240

static void check_schema(const char *json)
{
    jval *schema = load_schema();
    jval *doc = json_parse(json);
    const char *e = schema_check(schema, schema, doc, "$");
    if (e)
        TEST_FAIL("JSON does not validate: %s", e);
    json_free(doc);
    json_free(schema);
}

static void check_model_measured(const jval *doc, const char *model)
{
    char path[128];
    snprintf(path, sizeof path, "models.%s.status", model);
    const jval *st = jpath(doc, path);
    CHECK(st && st->t == J_STR);
    if (strcmp(st->str, "ok") != 0)
        TEST_FAIL("%s: status %s", model, st->str);
    static const char *figures[] = {"start_ms", "ready.ms", "roundtrip_us", "handoff_us", "worker_start_us",
                                    "empty_tasks_per_s", "map_items_per_s",
                                    "transfer_1mib.copy_us", "idle_worker_bytes", "scaling.0.seconds",
                                    "scaling.0.speedup", "io.0.items_per_s"};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        snprintf(path, sizeof path, "models.%s.%s", model, figures[i]);
        double v = jnum_at(doc, path);
        if (strcmp(figures[i], "idle_worker_bytes") == 0)
            continue; /* a delta of memory: may even be slightly negative */
        if (!(v > 0 && isfinite(v)))
            TEST_FAIL("%s = %g is not a measured positive figure", path, v);
    }
}

static void test_builtin_json_and_plot(void)
{
    test_watchdog(RUN_LIMIT + 60); /* per case: the default 50 s is for the whole file */
    char svg[] = "/tmp/crew-compare-test-XXXXXX.svg";
    int fd = mkstemps(svg, 4);
    CHECK(fd >= 0);
    close(fd);
    cli_run r = run_cli(RUN_LIMIT, (const char *[]){"compare", "--quick", "--json", "--plot", svg, NULL});
    if (r.exit != 0)
        TEST_FAIL("exit %d: %s", r.exit, r.err);
    /* progress went to stderr, results only to stdout */
    CHECK(r.err_len > 0);
    CHECK(strstr(r.out, "crew compare: ") == NULL);
    check_schema(r.out);
    jval *doc = json_parse(r.out);
    CHECK_EQ(jnum_at(doc, "schema_version"), 1);
    CHECK(strcmp(jpath(doc, "workload.name")->str, "cpu") == 0);
    CHECK(jnum_at(doc, "machine.cpus") == crew_cpu_count());
    check_model_measured(doc, "threads");
    check_model_measured(doc, "processes");
    /* one curve point per worker count 1..CPUs, in both models */
    CHECK_EQ(jpath(doc, "models.threads.scaling")->n, crew_cpu_count());
    CHECK_EQ(jpath(doc, "models.processes.scaling")->n, crew_cpu_count());
    /* the crash demo, live: the thread pool's process died, the process
     * pool lost only the crashing task */
    CHECK(jpath(doc, "models.threads.fault.measured")->b);
    CHECK(!jpath(doc, "models.threads.fault.survived")->b);
    CHECK(jpath(doc, "models.processes.fault.survived")->b);
    CHECK(jpath(doc, "models.processes.fault.pool_usable")->b);
    CHECK_EQ(jnum_at(doc, "models.processes.fault.innocent_ok"), jnum_at(doc, "models.processes.fault.innocent_total"));
    CHECK(strcmp(jpath(doc, "models.processes.fault.crashed_status")->str, "CREW_ECRASHED") == 0);
    const jval *rec = jpath(doc, "recommendation.headline");
    CHECK(rec && rec->t == J_STR && strlen(rec->str) > 20);
    json_free(doc);

    char *text = read_file(svg);
    int elements = 0;
    const char *e = xml_check(text, &elements);
    if (e)
        TEST_FAIL("SVG is not well-formed XML: %s", e);
    CHECK(elements > 20);
    CHECK(strstr(text, "<svg") != NULL);
    CHECK(strstr(text, "id=\"series-threads\"") != NULL);
    CHECK(strstr(text, "id=\"series-processes\"") != NULL);
    CHECK(strstr(text, "id=\"x-label\"") != NULL && strstr(text, "id=\"y-label\"") != NULL);
    CHECK(strstr(text, "id=\"legend\"") != NULL);
    /* each series has a polyline with a point per worker count */
    const char *th = strstr(text, "id=\"series-threads\"");
    CHECK(strstr(th, "<polyline") != NULL && strstr(th, "<circle") != NULL);
    /* each point's spread, and the recommended point ringed */
    CHECK(strstr(text, "class=\"spread\"") != NULL);
    CHECK(strstr(text, "id=\"recommended\"") != NULL);
    free(text);
    unlink(svg);
    cli_run_free(&r);
}

/* Runs the test task with `steps` of work per item; returns the doc. */
static jval *user_run(const char *steps)
{
    cli_run r = run_cli(RUN_LIMIT, (const char *[]){"compare", "--quick", "--json", "-q", "--no-fault", "--task",
                                                    MOD ":task_spin", "--arg", steps, "--items", "8", "--workers",
                                                    "1,2", NULL});
    if (r.exit != 0)
        TEST_FAIL("exit %d: %s", r.exit, r.err);
    CHECK(r.err_len == 0); /* -q: nothing on stderr */
    check_schema(r.out);
    jval *doc = json_parse(r.out);
    cli_run_free(&r);
    CHECK(strcmp(jpath(doc, "workload.name")->str, "user") == 0);
    CHECK(strcmp(jpath(doc, "workload.task")->str, MOD ":task_spin") == 0);
    CHECK_EQ(jnum_at(doc, "workload.items"), 8);
    CHECK_EQ(jnum_at(doc, "workload.arg_bytes"), strlen(steps));
    CHECK_EQ(jpath(doc, "models.threads.scaling")->n, 2);
    CHECK_EQ(jpath(doc, "models.processes.scaling")->n, 2);
    return doc;
}

static void test_user_task_moves_figures(void)
{
    test_watchdog(RUN_LIMIT + 60); /* per case: the default 50 s is for the whole file */
    jval *light = user_run("1000000");
    jval *heavy = user_run("20000000"); /* 20x the work per item */
    double ls = jnum_at(light, "workload.serial_s"), hs = jnum_at(heavy, "workload.serial_s");
    /* 20x the work: far more than noise, far less than a wrong unit */
    if (!(hs > 5 * ls))
        TEST_FAIL("serial time did not follow the work: %g s -> %g s", ls, hs);
    const char *models[] = {"threads", "processes"};
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) {
            char path[128];
            snprintf(path, sizeof path, "models.%s.scaling.%d.seconds", models[m], k);
            double a = jnum_at(light, path), b = jnum_at(heavy, path);
            if (!(b > 3 * a))
                TEST_FAIL("%s did not follow the work: %g s -> %g s", path, a, b);
        }
    json_free(light);
    json_free(heavy);
}

static void test_csv_and_table(void)
{
    test_watchdog(RUN_LIMIT + 60); /* per case: the default 50 s is for the whole file */
    cli_run r = run_cli(RUN_LIMIT, (const char *[]){"compare", "--quick", "--csv", "-q", "--no-fault", "--workload",
                                                    "io", "--workers", "1,4", NULL});
    if (r.exit != 0)
        TEST_FAIL("exit %d: %s", r.exit, r.err);
    CHECK(strncmp(r.out, "section,metric,model,workers,value,unit\n", 40) == 0);
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(r.out, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        int commas = 0;
        for (char *c = l; *c; c++)
            commas += *c == ',';
        if (commas != 5)
            TEST_FAIL("CSV line %d has %d fields: %s", lines, commas + 1, l);
    }
    CHECK(lines > 30);
    cli_run_free(&r);

    r = run_cli(RUN_LIMIT, (const char *[]){"compare", "--quick", "-q", "--no-fault", "--workers", "1,2", NULL});
    if (r.exit != 0)
        TEST_FAIL("exit %d: %s", r.exit, r.err);
    CHECK(strstr(r.out, "threads") != NULL && strstr(r.out, "processes") != NULL);
    CHECK(strstr(r.out, "round trip, one tiny task") != NULL);
    CHECK(strstr(r.out, "recommendation: ") != NULL);
    CHECK(strstr(r.out, "cpu speedup, 2 workers") != NULL);
    for (const char *l = r.out; *l;) { /* the table fits in 100 columns */
        const char *nl = strchr(l, '\n');
        int cols = 0;
        for (const char *c = l; c < (nl ? nl : l + strlen(l)); c++)
            cols += ((unsigned char)*c & 0xC0) != 0x80;
        if (cols > 100)
            TEST_FAIL("a line of %d columns: %.*s", cols, (int)(nl ? nl - l : (long)strlen(l)), l);
        l = nl ? nl + 1 : l + strlen(l);
    }
    cli_run_free(&r);
}

static const test_case cases[] = {
    TEST_CASE(test_builtin_json_and_plot),
    TEST_CASE(test_user_task_moves_figures),
    TEST_CASE(test_csv_and_table),
};
TEST_MAIN_NOHELPERS(cases)
