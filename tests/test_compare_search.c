/* The logic of `crew compare --task` on synthetic figures, through the
 * CLI's internal library (crew_cli_core, cli/search.h): the advice never
 * picks a configuration that gave wrong results, crashed, leaked or showed
 * an impossible figure, however fast; a tie within the noise goes to the
 * cheaper configuration and names both; a clear winner wins; the C snippet
 * says what the configuration is; a candidate's median, spread and noise;
 * an item's outcome compared with the reference (wrong vs crashed vs
 * spared; a map's zero-padded record equals a future's result); per-item
 * input laid out from --arg, --args (delimited, fixed) and --index; the
 * 64 MiB limit of an argument file is exact. */
#include "test_compare.h"

#include "search.h"

static cmp_search S;

static cmp_cand *cand(int model, int workers, int dispatch, int args, cand_state st, double sp, double spread)
{
    cmp_cand *c = &S.c[S.nc++];
    memset(c, 0, sizeof *c);
    c->cfg = (cmp_config){.model = model, .workers = workers, .dispatch = dispatch, .args = args,
                          .start_method = CREW_START_FORKSERVER};
    c->state = st;
    c->ns = 7;
    for (int i = 0; i < c->ns; i++) {
        c->sp[i] = sp * (1 + spread * ((i % 3) - 1)); /* sp*(1-s), sp, sp*(1+s) ... */
        c->ips[i] = c->sp[i] * 1000;
        c->seconds[i] = 1 / c->ips[i];
    }
    search_stats(c, 1e-3);
    return c;
}

static void reset(void)
{
    memset(&S, 0, sizeof S);
    S.noise_floor = 0.03;
    S.item_s = 1e-3;
    S.prof.item_s = 1e-3;
    S.prof.n = 400;
    S.prof.cpu_ratio = 1;
    S.prof.deterministic = true;
}

static cmp_results *results(void)
{
    static cmp_results r;
    memset(&r, 0, sizeof r);
    r.cpus = 2;
    r.m[CMP_THREADS].idle_bytes = 12000;
    r.m[CMP_PROCESSES].idle_bytes = 90000;
    return &r;
}

static const cmp_cand *advised(cmp_advice *a)
{
    advise(&S, results(), a);
    CHECK(a->found);
    return &S.c[a->best];
}

static void test_ruled_out_never_advised(void)
{
    cmp_advice a;
    for (cand_state bad = CAND_WRONG; bad <= CAND_FAILED; bad++) {
        reset();
        cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, bad, 3.9, 0.01); /* the fastest, but ruled out */
        cand(CMP_PROCESSES, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.9, 0.01);
        const cmp_cand *b = advised(&a);
        if (b->cfg.model != CMP_PROCESSES)
            TEST_FAIL("state %s was advised", cand_state_name(bad));
    }
    /* nothing usable: no advice, and a headline that says so */
    reset();
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, CAND_WRONG, 1.9, 0.01);
    advise(&S, results(), &a);
    CHECK(!a.found);
    CHECK(strncmp(a.headline, "none", 4) == 0);
}

static void test_clear_winner(void)
{
    reset();
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.95, 0.01);
    cand(CMP_PROCESSES, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.40, 0.01);
    cand(CMP_THREADS, 1, CMP_FUTURES, CMP_COPY, CAND_LIVE, 0.99, 0.01);
    cmp_advice a;
    const cmp_cand *b = advised(&a);
    CHECK(b->cfg.model == CMP_THREADS && b->cfg.workers == 2);
    CHECK_EQ(a.tie, -1);
    CHECK(a.runner_up >= 0 && S.c[a.runner_up].cfg.model == CMP_PROCESSES);
    /* processes faster by far more than the noise: processes */
    reset();
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.20, 0.01);
    cand(CMP_PROCESSES, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.90, 0.01);
    CHECK(advised(&a)->cfg.model == CMP_PROCESSES);
}

static void test_tie_goes_to_the_cheaper(void)
{
    /* processes 1% faster, within the 3% floor: a tie, threads are cheaper */
    reset();
    cand(CMP_PROCESSES, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.93, 0.005);
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.91, 0.005);
    cmp_advice a;
    const cmp_cand *b = advised(&a);
    CHECK(b->cfg.model == CMP_THREADS);
    CHECK(a.tie >= 0 && S.c[a.tie].cfg.model == CMP_PROCESSES);
    bool named = false;
    for (int i = 0; i < a.nreasons; i++)
        named = named || (strstr(a.reasons[i], "a tie") && strstr(a.reasons[i], "cheaper"));
    CHECK(named);
    /* of two thread pools within the noise, the fewer workers */
    reset();
    cand(CMP_THREADS, 64, CMP_FUTURES, CMP_COPY, CAND_LIVE, 40.5, 0.005);
    cand(CMP_THREADS, 32, CMP_FUTURES, CMP_COPY, CAND_LIVE, 40.0, 0.005);
    CHECK_EQ(advised(&a)->cfg.workers, 32);
    /* but not a configuration cut by the halving, measured less */
    reset();
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.93, 0.005);
    cand(CMP_THREADS, 1, CMP_FUTURES, CMP_COPY, CAND_OUT, 1.92, 0.005);
    CHECK_EQ(advised(&a)->cfg.workers, 2);
    /* a difference well beyond the noise is no tie, however cheap */
    reset();
    cand(CMP_PROCESSES, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.93, 0.005);
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.60, 0.005);
    CHECK(advised(&a)->cfg.model == CMP_PROCESSES);
}

static void test_snippet(void)
{
    cmp_advice a;
    reset();
    S.prof.leaks = true;
    S.prof.leak_per_item = 1 << 20;
    cmp_cand *c = cand(CMP_PROCESSES, 2, CMP_FUTURES, CMP_COPY, CAND_LIVE, 1.9, 0.01);
    c->cfg.recycle_tasks = 64;
    advised(&a);
    CHECK(strstr(a.snippet, "o.kind = CREW_PROCESSES;") != NULL);
    CHECK(strstr(a.snippet, "o.workers = 2;") != NULL);
    CHECK(strstr(a.snippet, "o.max_tasks_per_worker = 64;") != NULL);
    CHECK(strstr(a.snippet, "CREW_START_FORKSERVER") != NULL);
    CHECK(strstr(a.snippet, "crew_pool_submit(") != NULL);
    reset();
    cand(CMP_THREADS, 2, CMP_FUTURES, CMP_BYREF, CAND_LIVE, 1.9, 0.01);
    advised(&a);
    CHECK(strstr(a.snippet, "crew_pool_submit_shm(") != NULL);
    CHECK(strstr(a.snippet, "CREW_THREADS") != NULL);
    reset();
    c = cand(CMP_THREADS, 2, CMP_MAP, CMP_BYREF, CAND_LIVE, 1.9, 0.01);
    c->cfg.chunk = 512;
    advised(&a);
    CHECK(strstr(a.snippet, "m.chunk_size = 512;") != NULL);
    CHECK(strstr(a.snippet, "crew_pool_map(") != NULL);
}

static void test_stats(void)
{
    cmp_cand c;
    memset(&c, 0, sizeof c);
    double v[] = {1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0};
    for (int i = 0; i < 7; i++) {
        c.sp[i] = v[i];
        c.ips[i] = v[i] * 100;
    }
    c.ns = 7;
    search_stats(&c, 0.01);
    CHECK(fabs(c.med - 1.0) < 1e-12);
    CHECK(fabs(c.lo - 0.95) < 1e-12 && fabs(c.hi - 1.05) < 1e-12); /* one outlier off each end */
    /* MAD 0.05: noise 1.2533 * 1.4826 * 0.05 / sqrt(7) */
    CHECK(fabs(c.noise - 1.2533 * 1.4826 * 0.05 / sqrt(7.0)) < 1e-9);
    /* without a serial beside the rounds, the speedup comes from the item time */
    for (int i = 0; i < 7; i++)
        c.sp[i] = NAN;
    search_stats(&c, 0.01);
    CHECK(fabs(c.med - 1.0) < 1e-12);
}

static void test_compare_outcomes(void)
{
    cmp_record ref[6], run[6];
    unsigned char a[16] = {1, 2, 3}, b[16] = {1, 2, 3, 0, 0, 0}, d[16] = {1, 2, 4};
    verify_record(&ref[0], 0, a, 3);
    verify_record(&run[0], 0, b, 16); /* a zero-padded map record equals the result */
    verify_record(&ref[1], 0, a, 3);
    verify_record(&run[1], 0, d, 3); /* other bytes: wrong */
    verify_record(&ref[2], 0, a, 3);
    verify_record(&run[2], CREW_ECRASHED, NULL, 0); /* crashed here only */
    verify_record(&ref[3], CREW_ECRASHED, NULL, 0);
    verify_record(&run[3], 0, a, 3); /* crashed in the reference only */
    verify_record(&ref[4], CREW_EINVAL, NULL, 0);
    verify_record(&run[4], 0, a, 3); /* the task's own status differs: wrong */
    verify_record(&ref[5], CREW_EINVAL, a, 3);
    verify_record(&run[5], CREW_EINVAL, d, 3); /* same error: bytes do not matter */
    cmp_check c;
    verify_compare(ref, run, 0, 6, &c);
    CHECK_EQ(c.checked, 6);
    CHECK_EQ(c.wrong, 2);
    CHECK_EQ(c.first_wrong, 1);
    CHECK_EQ(c.crashed, 1);
    CHECK_EQ(c.spared, 1);
}

static char *temp_file(const void *data, size_t len)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/crew-search-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(len == 0 || write(fd, data, len) == (ssize_t)len);
    close(fd);
    return path;
}

static void test_items(void)
{
    cmp_items it;
    /* --args, delimited: three records of different lengths, no map */
    char *p = temp_file("ab\ncde\nf\n", 9);
    cmp_input in = {.args_path = p, .delim = '\n'};
    CHECK_EQ(items_build(&it, &in, 1000), 0);
    CHECK_EQ(it.n, 3);
    CHECK(!it.fixed);
    const cmp_item_ref *tab = items_table(it.shm);
    const char *base = crew_shm_ptr(it.shm);
    CHECK(tab[1].len == 3 && memcmp(base + tab[1].off, "cde", 3) == 0);
    items_free(&it);
    /* --index, --items 5: each argument is 8 bytes of index, then its record */
    in.index = true;
    in.items = 5;
    CHECK_EQ(items_build(&it, &in, 1000), 0);
    CHECK_EQ(it.n, 5);
    tab = items_table(it.shm);
    base = crew_shm_ptr(it.shm);
    uint64_t idx;
    memcpy(&idx, base + tab[4].off, 8);
    CHECK_EQ(idx, 4);
    CHECK(tab[4].len == 8 + 3 && memcmp(base + tab[4].off + 8, "cde", 3) == 0); /* record 4 mod 3 */
    items_free(&it);
    unlink(p);
    /* --record 4: fixed records, contiguous, a map can take them */
    p = temp_file("aaaabbbbcccc", 12);
    cmp_input fx = {.args_path = p, .record = 4};
    CHECK_EQ(items_build(&it, &fx, 1000), 0);
    CHECK(it.fixed && it.stride == 4 && it.n == 3);
    tab = items_table(it.shm);
    CHECK(tab[2].off == it.data_off + 8);
    items_free(&it);
    fx.record = 5; /* 12 bytes are not whole 5-byte records */
    CHECK_EQ(items_build(&it, &fx, 1000), CLI_EXIT_USAGE);
    unlink(p);
    /* --arg: the same bytes for every item, as many as asked */
    cmp_input one = {.arg = (const unsigned char *)"xyz", .arg_len = 3};
    CHECK_EQ(items_build(&it, &one, 1000), 0);
    CHECK(it.n == 1000 && it.fixed && it.stride == 3);
    items_free(&it);
}

static void test_arg_limit_exact(void)
{
    char *p = temp_file(NULL, 0);
    CHECK(truncate(p, (off_t)CMP_ARG_MAX) == 0);
    unsigned char *buf;
    size_t len;
    CHECK_EQ(items_read_file(p, CMP_ARG_MAX, &buf, &len), 0); /* exactly 64 MiB: accepted */
    CHECK_EQ(len, CMP_ARG_MAX);
    free(buf);
    CHECK(truncate(p, (off_t)CMP_ARG_MAX + 1) == 0);
    CHECK_EQ(items_read_file(p, CMP_ARG_MAX, &buf, &len), CLI_EXIT_USAGE);
    unlink(p);
}

static const test_case cases[] = {
    TEST_CASE(test_ruled_out_never_advised), TEST_CASE(test_clear_winner), TEST_CASE(test_tie_goes_to_the_cheaper),
    TEST_CASE(test_snippet),                 TEST_CASE(test_stats),        TEST_CASE(test_compare_outcomes),
    TEST_CASE(test_items),                   TEST_CASE(test_arg_limit_exact),
};
TEST_MAIN_NOHELPERS(cases)
