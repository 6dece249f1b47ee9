/* The decision and the report of `crew compare`, on synthetic figures: the
 * recommendation follows the numbers (whichever model is faster wins, a tie
 * goes to the cheaper round trip, a flat curve says concurrency gains little,
 * a busy machine is said first), and the JSON of any result set validates
 * against docs/compare.schema.json. The CLI's logic is called through its
 * internal library (crew_cli_core, cli/cli.h), as the `crew` command calls
 * it. */
#include "test_compare.h"

#include "cli.h"

static void model(cmp_model *m, const char *name, double rt_us, double s1, double s2)
{
    memset(m, 0, sizeof *m);
    m->name = name;
    m->method = strcmp(name, "processes") == 0 ? "forkserver" : NULL;
    m->start_ms = strcmp(name, "threads") == 0 ? 0.1 : 0.5;
    m->worker_us = strcmp(name, "threads") == 0 ? 40 : 250;
    m->ready_workers = 2;
    m->ready_ms = 0.2;
    m->destroy_ms = 0.1;
    m->mem_workers = 16;
    m->idle_bytes = strcmp(name, "threads") == 0 ? 13000 : 80000;
    m->idle_private_bytes = m->idle_bytes / 2;
    m->idle_metric = strcmp(name, "threads") == 0 ? "RSS" : "PSS";
    m->roundtrip_us = rt_us;
    m->handoff_us = rt_us * 10;
    m->empty_per_s = 1e6;
    m->map_per_s = 1e8;
    m->xfer_copy_us = 100;
    m->xfer_ref_us = 20;
    m->xfer_ref_how = "pointer, one copy";
    m->ncurve = 2;
    m->curve[0] = (cmp_point){1, 400, 0.4 / s1, s1, 400 * s1 / 0.4, 0.95 * s1, 1.05 * s1};
    m->curve[1] = (cmp_point){2, 400, 0.4 / s2, s2, 400 * s2 / 0.4, 0.95 * s2, 1.05 * s2};
    m->nio = 1;
    m->io[0] = (cmp_point){100, 1000, 0.11, NAN, 9000, 0, 0};
    m->fault.measured = true;
    m->fault.survived = strcmp(name, "processes") == 0;
    m->fault.signal = 11;
    m->fault.crashed_status = m->fault.survived ? CREW_ECRASHED : 0;
    m->fault.innocent_total = 6;
    m->fault.innocent_ok = m->fault.survived ? 6 : 0;
    m->fault.pool_usable = m->fault.survived;
    m->fault.detect_ms = m->fault.survived ? 0.9 : NAN;
}

/* busy: the share of the serial baselines' time spent waiting for a CPU
 * (the busy measure); the load average stays 1.0, as data only. */
static cmp_results *results(double t1, double t2, double p1, double p2, double busy)
{
    static cmp_results r;
    memset(&r, 0, sizeof r);
    r.crew_version = "0.1.0";
    r.cpus = 2;
    snprintf(r.kernel, sizeof r.kernel, "6.1");
    snprintf(r.cpu_model, sizeof r.cpu_model, "test CPU");
    r.reps = 5;
    r.load_start = r.load_end = 1.0;
    r.busy = (cli_busy){1.0, busy, 0.5, 1.0, 0.0, 2.0};
    r.workload = "cpu";
    snprintf(r.workload_desc, sizeof r.workload_desc, "cpu (synthetic)");
    r.items = 400;
    r.item_us = 1000;
    r.serial_seconds = 0.4;
    r.io_tasks_full = 1000;
    r.io_wait_ms = 10;
    model(&r.m[CMP_THREADS], "threads", 0.5, t1, t2);
    model(&r.m[CMP_PROCESSES], "processes", 5, p1, p2);
    r.io_view_n = 0;
    r.elapsed_s = 10;
    recommend(&r);
    return &r;
}

static bool has_reason(const cmp_results *r, const char *needle)
{
    for (int i = 0; i < r->rec.nreasons; i++)
        if (strstr(r->rec.reasons[i], needle))
            return true;
    return false;
}

static void test_faster_model_wins(void)
{
    cmp_results *r = results(0.99, 1.97, 0.98, 1.40, 0.01);
    CHECK_EQ(r->rec.model, CMP_THREADS);
    CHECK_EQ(r->rec.workers, 2);
    CHECK(fabs(r->rec.speedup - 1.97) < 1e-9);
    CHECK(strstr(r->rec.headline, "threads, 2 workers: 1.97x on 2 CPUs") != NULL);
    CHECK(has_reason(r, "no GIL"));
    CHECK(!has_reason(r, "busy"));

    r = results(0.99, 1.20, 0.98, 1.90, 0.01);
    CHECK_EQ(r->rec.model, CMP_PROCESSES);
    CHECK(strstr(r->rec.headline, "processes, 2 workers: 1.90x") != NULL);
    CHECK(strstr(r->rec.headline, "threads reach 1.20x") != NULL);
}

static void test_tie_goes_to_cheaper_round_trip(void)
{
    /* within the 5% margin: the cheaper round trip (threads, 0.5 us) wins and
     * the headline prices the isolation */
    cmp_results *r = results(0.99, 1.96, 0.98, 1.95, 0.01);
    CHECK_EQ(r->rec.model, CMP_THREADS);
    CHECK(strstr(r->rec.headline, "processes reach 1.95x and isolate crashes for") != NULL);
    CHECK(strstr(r->rec.headline, "more per start") != NULL);
    CHECK(strstr(r->rec.headline, "more per task") != NULL);
    CHECK(has_reason(r, "failed alone (6 of 6 other tasks completed"));
}

static void test_tie_goes_to_cheaper_costs(void)
{
    /* processes cheaper on start, round trip, hand-off and memory: they win
     * the tie */
    cmp_results *r = results(0.99, 1.96, 0.98, 1.95, 0.01);
    r->m[CMP_PROCESSES].start_ms = 0.05;
    r->m[CMP_PROCESSES].roundtrip_us = 0.1;
    r->m[CMP_PROCESSES].handoff_us = 1;
    r->m[CMP_PROCESSES].idle_bytes = 1000;
    recommend(r);
    CHECK_EQ(r->rec.model, CMP_PROCESSES);
    CHECK(strstr(r->rec.headline, "as fast as threads") != NULL);
    /* a round trip a little cheaper (under 10%) decides nothing */
    r = results(0.99, 1.96, 0.98, 1.95, 0.01);
    r->m[CMP_PROCESSES].roundtrip_us = 0.48;
    recommend(r);
    CHECK_EQ(r->rec.model, CMP_THREADS);
}

static void test_fewest_workers_near_best(void)
{
    /* 2 workers reach 97% of the best (at 2): recommend 2, not more */
    cmp_results *r = results(1.0, 1.95, 0.9, 1.2, 0.01);
    r->m[CMP_THREADS].ncurve = 3;
    r->m[CMP_THREADS].curve[2] = (cmp_point){4, 400, 0.2, 1.97, 2000, 1.9, 2.0};
    recommend(r);
    CHECK_EQ(r->rec.model, CMP_THREADS);
    CHECK_EQ(r->rec.workers, 2);
}

static void test_flat_curve_and_busy_machine(void)
{
    cmp_results *r = results(1.0, 1.05, 0.97, 1.02, 0.01);
    CHECK(strstr(r->rec.headline, "gains little") != NULL);
    CHECK(has_reason(r, "did not speed this work up"));

    r = results(0.99, 1.97, 0.98, 1.40, 0.75);
    CHECK(strstr(r->rec.reasons[0], "busy: ") != NULL && strstr(r->rec.reasons[0], "waited 75% of its time") != NULL);
    /* one CPU of two taken by another program: the serial thread had the
     * other and hardly waited, but /proc/stat less our own time shows it */
    r = results(0.99, 1.97, 0.98, 1.40, 0.01);
    r->busy.others = 1.0; /* of 2 CPU-seconds */
    recommend(r);
    CHECK(strstr(r->rec.reasons[0], "other programs used 50% of the CPUs") != NULL);
    /* the load average is not the measure (compare's own pools push it up) */
    r = results(0.99, 1.97, 0.98, 1.40, 0.01);
    r->load_start = r->load_end = 9;
    recommend(r);
    CHECK(!has_reason(r, "busy"));
}

static void test_one_model_missing(void)
{
    cmp_results *r = results(0.99, 1.97, 0.98, 1.40, 0.01);
    r->m[CMP_PROCESSES].ncurve = 0;
    r->m[CMP_PROCESSES].status = CREW_ENOTSUP;
    recommend(r);
    CHECK_EQ(r->rec.model, CMP_THREADS);
    CHECK(strstr(r->rec.headline, "processes could not be measured") != NULL);
    CHECK(strstr(r->rec.headline, "nan") == NULL);
}

/* Writes a report into memory. */
static char *render(int (*fn)(FILE *, const cmp_results *), const cmp_results *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    CHECK_EQ(fn(f, r), 0);
    fclose(f);
    return buf;
}

static void test_reports_of_synthetic_results(void)
{
    cmp_results *r = results(0.99, 1.97, 0.98, 1.95, 0.01);
    /* unmeasured figures are null in JSON, '-' in the table */
    r->m[CMP_PROCESSES].xfer_ref_us = NAN;
    r->m[CMP_PROCESSES].xfer_ref_how = NULL;
    char *json = render(report_json, r);
    jval *schema = load_schema(), *doc = json_parse(json);
    const char *e = schema_check(schema, schema, doc, "$");
    if (e)
        TEST_FAIL("synthetic JSON does not validate: %s", e);
    CHECK(jpath(doc, "models.processes.transfer_1mib.ref_us")->t == J_NULL);
    CHECK(jnum_at(doc, "models.threads.scaling.1.speedup") == 1.97);
    CHECK(strcmp(jpath(doc, "recommendation.model")->str, "threads") == 0);
    json_free(doc);
    json_free(schema);
    free(json);

    char *tab = render(report_table, r);
    CHECK(strstr(tab, "cpu speedup, 2 workers") != NULL);
    CHECK(strstr(tab, "1.97x") != NULL);
    CHECK(strstr(tab, "recommendation: threads, 2 workers") != NULL);
    CHECK(strstr(tab, "note: ") == NULL);
    /* every line fits in 100 columns */
    for (const char *l = tab; *l;) {
        const char *nl = strchr(l, '\n');
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(nl ? nl - l : (long)strlen(l)), l);
        if (cli_cols(line) > 100)
            TEST_FAIL("a line of %d columns: %s", cli_cols(line), line);
        l = nl ? nl + 1 : l + strlen(l);
    }
    free(tab);

    r->busy = (cli_busy){1.0, 0.9, 0.5, 1.0, 0.0, 2.0};
    tab = render(report_table, r);
    CHECK(strstr(tab, "note: other programs used 0% of the CPUs") != NULL && strstr(tab, "waited 90%") != NULL);
    free(tab);

    char *csv = render(report_csv, r);
    CHECK(strncmp(csv, "section,metric,model,workers,value,unit\n", 40) == 0);
    CHECK(strstr(csv, "scaling,speedup,threads,2,1.97,x\n") != NULL);
    CHECK(strstr(csv, "data,transfer_1mib_ref,processes,1,,us\n") != NULL);
    free(csv);
}

static void test_svg_of_synthetic_results(void)
{
    cmp_results *r = results(0.99, 1.97, 0.98, 1.95, 0.01);
    char path[] = "/tmp/crew-compare-logic-XXXXXX.svg";
    int fd = mkstemps(path, 4);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ(report_svg(path, r), 0);
    char *text = read_file(path);
    int n = 0;
    const char *e = xml_check(text, &n);
    if (e)
        TEST_FAIL("SVG: %s", e);
    CHECK(strstr(text, "threads, 2 workers: 1.97x") != NULL);  /* a point's tooltip */
    CHECK(strstr(text, "processes, 2 workers: 1.95x") != NULL);
    free(text);
    unlink(path);
    CHECK_EQ(report_svg("/nonexistent/dir/x.svg", r), CLI_EXIT_OUTPUT);
}

static const test_case cases[] = {
    TEST_CASE(test_faster_model_wins),        TEST_CASE(test_tie_goes_to_cheaper_round_trip),
    TEST_CASE(test_tie_goes_to_cheaper_costs), TEST_CASE(test_fewest_workers_near_best),
    TEST_CASE(test_flat_curve_and_busy_machine),
    TEST_CASE(test_one_model_missing),        TEST_CASE(test_reports_of_synthetic_results),
    TEST_CASE(test_svg_of_synthetic_results),
};
TEST_MAIN_NOHELPERS(cases)
