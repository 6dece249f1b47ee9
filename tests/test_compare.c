/* `crew compare` and the `crew` command: usage, help, version, and every
 * error path -- bad options, a missing .so, a missing symbol, a task that
 * crashes, fails or exits on every item -- each a one-line error and a
 * documented exit status, never a hang or a core dump; a task that cannot
 * be measured still gets its report on stdout (with --json: valid JSON
 * naming the failure). Also checks the test's own JSON
 * schema validator and XML checker on known-bad input, so the run tests
 * (test_compare_run.c) can trust them. */
// CREW_TEST_TIMEOUT 120
#include "test_compare.h"

#define MOD CREW_TEST_MODULE_DIR "/libmod_task.so"

static void test_help_and_version(void)
{
    cli_run r = run_cli(30, (const char *[]){"compare", "--help", NULL});
    CHECK_EQ(r.exit, 0);
    CHECK(strstr(r.out, "usage: crew compare") != NULL);
    CHECK(strstr(r.out, "--task LIB.so:SYMBOL") != NULL);
    CHECK(strstr(r.out, "exit status") != NULL);
    CHECK(r.err_len == 0);
    cli_run_free(&r);

    r = run_cli(30, (const char *[]){"help", NULL});
    CHECK_EQ(r.exit, 0);
    CHECK(strstr(r.out, "compare") != NULL);
    cli_run_free(&r);

    r = run_cli(30, (const char *[]){"help", "compare", NULL});
    CHECK_EQ(r.exit, 0);
    CHECK(strstr(r.out, "usage: crew compare") != NULL);
    cli_run_free(&r);

    r = run_cli(30, (const char *[]){"version", NULL});
    CHECK_EQ(r.exit, 0);
    CHECK(strstr(r.out, crew_version_string()) != NULL);
    cli_run_free(&r);

    r = run_cli(30, (const char *[]){NULL});
    CHECK_EQ(r.exit, 2);
    CHECK(r.out_len == 0);
    cli_run_free(&r);

    r = run_cli(30, (const char *[]){"frobnicate", NULL});
    CHECK_EQ(r.exit, 2);
    CHECK(strstr(r.err, "frobnicate") != NULL);
    CHECK_EQ(count_lines(r.err), 1);
    cli_run_free(&r);
}

static void test_bad_options(void)
{
    static const struct {
        const char *args[6];
        const char *needle;
    } cases[] = {
        {{"compare", "--bogus", NULL}, "--bogus"},
        {{"compare", "-x", NULL}, "unknown option '-x'"},
        {{"compare", "--workers", "0", NULL}, "--workers"},
        {{"compare", "--workers", "2,x", NULL}, "'x'"},
        {{"compare", "--workers", "", NULL}, "--workers"},
        {{"compare", "--json", "--csv", NULL}, "exclude"},
        {{"compare", "--workload", "nope", NULL}, "nope"},
        {{"compare", "--arg", "12", NULL}, "needs --task"},
        {{"compare", "--items", "3", NULL}, "needs --task"},
        {{"compare", "--task", "nocolon.so", NULL}, "LIB.so:SYMBOL"},
        {{"compare", "--task", MOD ":task_spin", "--items", "-4", NULL}, "--items"},
        {{"compare", "--start-method", "teleport", NULL}, "teleport"},
        {{"compare", "--task", MOD ":task_spin", "--arg", "@/nonexistent/arg.bin", NULL}, "/nonexistent/arg.bin"},
        {{"compare", "stray", NULL}, "stray"},
        {{"compare", "--plot", NULL}, "--plot"},
        {{"compare", "--timeout", "0", NULL}, "--timeout"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_run r = run_cli(30, cases[i].args);
        CHECK_ONE_LINE_ERROR(r, 2, cases[i].needle);
        cli_run_free(&r);
    }
}

static void test_missing_library(void)
{
    cli_run r = run_cli(30, (const char *[]){"compare", "-q", "--task", "/nonexistent/libnothing.so:f", NULL});
    CHECK_ONE_LINE_ERROR(r, 3, "libnothing.so");
    cli_run_free(&r);
    /* a file that is not a shared object */
    r = run_cli(30, (const char *[]){"compare", "-q", "--task", CREW_CLI_PATH ".c:f", NULL});
    CHECK_ONE_LINE_ERROR(r, 3, "cannot load");
    cli_run_free(&r);
}

static void test_missing_symbol(void)
{
    cli_run r = run_cli(30, (const char *[]){"compare", "-q", "--task", MOD ":no_such_task", NULL});
    CHECK_ONE_LINE_ERROR(r, 3, "no_such_task");
    cli_run_free(&r);
}

/* A task that fails on every item: exit 4, one line on stderr, and the
 * report of what was measured on stdout all the same. */
#define CHECK_TASK_FAILURE(r, needle)                                           \
    do {                                                                        \
        if ((r).exit != 4)                                                      \
            TEST_FAIL("exit %d, expected 4; stderr: %s", (r).exit, (r).err);    \
        if (count_lines((r).err) != 1)                                          \
            TEST_FAIL("stderr is not one line: [%s]", (r).err);                 \
        CHECK(strncmp((r).err, "crew compare: ", 14) == 0);                    \
        if (!strstr((r).err, (needle)))                                         \
            TEST_FAIL("stderr [%s] lacks [%s]", (r).err, (needle));             \
        CHECK((r).out_len > 0);                                                 \
        CHECK(WIFEXITED((r).status)); /* compare itself did not die */          \
    } while (0)

static void test_crashing_task(void)
{
    /* Without --quiet stderr also holds progress: -q leaves the error alone. */
    cli_run r = run_cli(60, (const char *[]){"compare", "-q", "--quick", "--task", MOD ":task_crash", NULL});
    CHECK_TASK_FAILURE(r, "crash");
    CHECK(strstr(r.err, "SIGSEGV") != NULL);
    CHECK(strstr(r.out, "no recommendation: ") != NULL);
    cli_run_free(&r);
    /* --json: what was measured, the failure as data */
    r = run_cli(60, (const char *[]){"compare", "-q", "--quick", "--json", "--task", MOD ":task_crash", NULL});
    CHECK_TASK_FAILURE(r, "SIGSEGV");
    jval *schema = load_schema(), *doc = json_parse(r.out);
    const char *e = schema_check(schema, schema, doc, "$");
    if (e)
        TEST_FAIL("JSON does not validate: %s", e);
    const jval *fl = jpath(doc, "task.failure");
    CHECK(fl && fl->t == J_STR && strstr(fl->str, "SIGSEGV") != NULL);
    CHECK_EQ(jnum_at(doc, "task.exit_status"), 4);
    CHECK(jnum_at(doc, "task.profile.crashed") >= 1);
    CHECK(jnum_at(doc, "models.threads.start_ms") > 0); /* the overheads were measured */
    json_free(doc);
    json_free(schema);
    cli_run_free(&r);
}

static void test_failing_task(void)
{
    cli_run r = run_cli(60, (const char *[]){"compare", "-q", "--quick", "--task", MOD ":task_fail", NULL});
    CHECK_TASK_FAILURE(r, "CREW_EINVAL");
    cli_run_free(&r);
    r = run_cli(60, (const char *[]){"compare", "-q", "--quick", "--task", MOD ":task_exit", NULL});
    CHECK_TASK_FAILURE(r, "exit code 3");
    cli_run_free(&r);
}

static void test_hanging_task(void)
{
    /* --timeout bounds every measurement: a task that never returns is a
     * one-line failure after about that long, not a hang */
    cli_run r = run_cli(60, (const char *[]){"compare", "-q", "--quick", "--timeout", "2", "--task",
                                             MOD ":task_hang", NULL});
    CHECK_TASK_FAILURE(r, "did not finish");
    cli_run_free(&r);
}

static void test_plot_unwritable(void)
{
    /* checked before any measurement: the user learns at once */
    cli_run r = run_cli(30, (const char *[]){"compare", "-q", "--plot", "/nonexistent/dir/x.svg", NULL});
    CHECK_ONE_LINE_ERROR(r, 6, "/nonexistent/dir/x.svg");
    cli_run_free(&r);
}

static void test_validators_reject(void)
{
    /* the JSON parser */
    jval *v = json_parse("{\"a\": [1, 2.5e3, -0.5, true, null, \"x\\n\"], \"b\": {}}");
    CHECK(jpath(v, "a.1")->num == 2500);
    CHECK(jpath(v, "a.0")->is_int);
    json_free(v);

    /* the schema validator on the real schema */
    jval *schema = load_schema();
    jval *doc = json_parse("{\"schema\": \"crew-compare\", \"schema_version\": 1}");
    const char *e = schema_check(schema, schema, doc, "$");
    CHECK(e != NULL && strstr(e, "required") != NULL);
    json_free(doc);
    doc = json_parse("{\"schema\": \"crew-compare\", \"schema_version\": 2, \"crew_version\": \"x\", \"machine\": {},"
                     "\"run\": {}, \"workload\": {}, \"io\": {}, \"models\": {}, \"io_view\": [], \"recommendation\": {}}");
    e = schema_check(schema, schema, doc, "$");
    CHECK(e != NULL && strstr(e, "schema_version") != NULL);
    json_free(doc);
    json_free(schema);

    /* the XML checker */
    int n;
    CHECK(xml_check("<svg><g><line x=\"1\"/></g></svg>", &n) == NULL && n == 3);
    CHECK(xml_check("<svg><g></svg>", &n) != NULL);
    CHECK(xml_check("<svg x=1></svg>", &n) != NULL);
    CHECK(xml_check("<svg a=\"1\" a=\"2\"></svg>", &n) != NULL);
    CHECK(xml_check("<svg>a & b</svg>", &n) != NULL);
    CHECK(xml_check("<svg></svg><svg></svg>", &n) != NULL);
    CHECK(xml_check("<svg>x &lt; y</svg>", &n) == NULL);
}

static const test_case cases[] = {
    TEST_CASE(test_help_and_version), TEST_CASE(test_bad_options),   TEST_CASE(test_missing_library),
    TEST_CASE(test_missing_symbol),   TEST_CASE(test_crashing_task), TEST_CASE(test_failing_task),
    TEST_CASE(test_hanging_task),     TEST_CASE(test_plot_unwritable),  TEST_CASE(test_validators_reject),
};
TEST_MAIN_NOHELPERS(cases)
