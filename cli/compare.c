/*
 * compare.c -- `crew compare`: options, the measuring plan, the run, the
 * output.
 *
 * DESIGN
 *  parse options -> (load --task) -> plan (how much of each probe; --quick
 *  shrinks it) -> serial baseline -> threads -> processes -> recommendation
 *  -> one report on stdout (table, --json or --csv) and --plot's SVG.
 *  The thread model is measured first: its sacrificial children (the fault
 *  demo, the user's task) are forked before this process runs any pool.
 *  A watchdog (alarm) bounds the whole run, so compare never hangs even if a
 *  pool does; each wait inside has its own deadline too.
 */
#include "cli.h"
#include "search.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

void compare_usage(FILE *f)
{
    fprintf(f,
            "usage: crew compare [OPTIONS]\n"
            "\n"
            "Measures threads against processes on this machine with crew's own pools --\n"
            "start cost, memory per worker, task round trip, data exchange, CPU-bound\n"
            "speedup, I/O-bound throughput, crash isolation -- and recommends one.\n"
            "Results go to stdout, progress to stderr.\n"
            "\n"
            "options:\n"
            "  --quick               a short run (about 5 s): fewer, smaller repetitions\n"
            "  --json                results as JSON (schema crew-compare/%d, docs/compare.schema.json)\n"
            "  --csv                 results as CSV: section,metric,model,workers,value,unit\n"
            "  --plot FILE.svg       also write a speedup-vs-workers chart (SVG)\n"
            "  --workers N[,M...]    worker counts of the speedup curve (default 1..CPUs)\n"
            "  --workload NAME       built-in work whose speedup is measured:\n"
            "                        cpu (default), io, mixed, membw (memory bandwidth)\n"
            "  --task LIB.so:SYMBOL  measure your own task instead: a crew_task_fn in a\n"
            "                        shared object (see crew-compare(1) for an example)\n"
            "  --arg BYTES|@FILE     the argument bytes given to every item of --task (at most\n"
            "                        64 MiB)\n"
            "  --args FILE           one argument per item: the records of FILE, split at\n"
            "                        newlines (--delim C) or of --record N bytes each\n"
            "  --index               each item's argument begins with its index (8 bytes,\n"
            "                        uint64_t, host order)\n"
            "  --items N             items of --task per run (default: as many as fit the\n"
            "                        budget, or the records of --args)\n"
            "  --thorough            a longer search (about 2 minutes; default about 30 s)\n"
            "  --start-method NAME   process pools: forkserver (default), fork or spawn\n"
            "  --timeout SECONDS     longest one measurement may take (default 120): a task\n"
            "                        that runs longer is reported as failed\n"
            "  --no-fault            skip the live crash demonstration\n"
            "  -q, --quiet           no progress on stderr\n"
            "  -h, --help            this text\n"
            "\n"
            "exit status: 0 ok, 1 internal error, 2 usage, 3 task not loadable,\n"
            "             4 task crashed or failed, 5 measurement failed, 6 output not writable\n",
            CMP_SCHEMA_VERSION);
}

static int usage_error(const char *fmt, const char *what)
{
    cli_progress_done();
    fputs("crew compare: ", stderr);
    fprintf(stderr, fmt, what);
    fputs(" (try: crew compare --help)\n", stderr);
    return CLI_EXIT_USAGE;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse_workers(cmp_options *o, const char *s)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        return usage_error("--workers: list too long: %s", s);
    strcpy(buf, s);
    o->nworkers = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (!parse_long(tok, 1, 1024, &v))
            return usage_error("--workers: '%s' is not a worker count (1..1024)", tok);
        if (o->nworkers == CMP_MAX_POINTS)
            return usage_error("--workers: at most 24 counts, got '%s'", s);
        o->workers[o->nworkers++] = (int)v;
    }
    if (o->nworkers == 0)
        return usage_error("--workers: empty list '%s'", s);
    /* sorted, no duplicates */
    for (int i = 1; i < o->nworkers; i++)
        for (int j = i; j > 0 && o->workers[j] < o->workers[j - 1]; j--) {
            int t = o->workers[j];
            o->workers[j] = o->workers[j - 1];
            o->workers[j - 1] = t;
        }
    int n = 1;
    for (int i = 1; i < o->nworkers; i++)
        if (o->workers[i] != o->workers[n - 1])
            o->workers[n++] = o->workers[i];
    o->nworkers = n;
    return CLI_EXIT_OK;
}

static int read_arg(cmp_options *o, const char *s)
{
    free(o->arg);
    o->arg = NULL;
    o->arg_len = 0;
    if (s[0] != '@') {
        o->arg_len = strlen(s);
        o->arg = malloc(o->arg_len + 1);
        if (!o->arg)
            return CLI_EXIT_FAILURE;
        memcpy(o->arg, s, o->arg_len + 1);
        return CLI_EXIT_OK;
    }
    /* the file's size is checked first: at most 64 MiB, exactly */
    return items_read_file(s + 1, CMP_ARG_MAX, &o->arg, &o->arg_len);
}

static int parse_delim(cmp_options *o, const char *s)
{
    if (strcmp(s, "\\n") == 0 || strcmp(s, "newline") == 0)
        o->delim = '\n';
    else if (strcmp(s, "\\t") == 0 || strcmp(s, "tab") == 0)
        o->delim = '\t';
    else if (strcmp(s, "\\0") == 0 || strcmp(s, "nul") == 0)
        o->delim = 256; /* a NUL byte (0 means the default); items.c takes the low byte */
    else if (strlen(s) == 1)
        o->delim = (unsigned char)s[0];
    else
        return usage_error("--delim: '%s' is not one character (or \\n, \\t, \\0)", s);
    return CLI_EXIT_OK;
}

enum { OPT_QUICK = 256, OPT_JSON, OPT_CSV, OPT_PLOT, OPT_WORKERS, OPT_WORKLOAD, OPT_TASK, OPT_ARG, OPT_ITEMS,
       OPT_METHOD, OPT_NOFAULT, OPT_TIMEOUT, OPT_ARGS, OPT_RECORD, OPT_DELIM, OPT_INDEX, OPT_THOROUGH };

static const struct option long_options[] = {
    {"quick", no_argument, NULL, OPT_QUICK},
    {"json", no_argument, NULL, OPT_JSON},
    {"csv", no_argument, NULL, OPT_CSV},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"workload", required_argument, NULL, OPT_WORKLOAD},
    {"task", required_argument, NULL, OPT_TASK},
    {"arg", required_argument, NULL, OPT_ARG},
    {"items", required_argument, NULL, OPT_ITEMS},
    {"start-method", required_argument, NULL, OPT_METHOD},
    {"no-fault", no_argument, NULL, OPT_NOFAULT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"args", required_argument, NULL, OPT_ARGS},
    {"record", required_argument, NULL, OPT_RECORD},
    {"delim", required_argument, NULL, OPT_DELIM},
    {"index", no_argument, NULL, OPT_INDEX},
    {"thorough", no_argument, NULL, OPT_THOROUGH},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_workload(cmp_options *o, const char *s)
{
    o->workload_name = s;
    if (strcmp(s, "cpu") == 0)
        o->workload = CMP_WL_CPU;
    else if (strcmp(s, "io") == 0)
        o->workload = CMP_WL_IO;
    else if (strcmp(s, "mixed") == 0)
        o->workload = CMP_WL_MIXED;
    else if (strcmp(s, "membw") == 0 || strcmp(s, "memory-bandwidth") == 0)
        o->workload = CMP_WL_MEMBW, o->workload_name = "membw";
    else
        return usage_error("--workload: unknown workload '%s' (cpu, io, mixed, membw)", s);
    return CLI_EXIT_OK;
}

/* LIB.so:SYMBOL, split at the last colon. */
static int parse_task(cmp_options *o, const char *s)
{
    o->task_spec = s;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] == 0)
        return usage_error("--task: expected LIB.so:SYMBOL, got '%s'", s);
    free(o->task_path);
    free(o->task_symbol);
    o->task_path = strndup(s, (size_t)(colon - s));
    o->task_symbol = strdup(colon + 1);
    if (!o->task_path || !o->task_symbol)
        return CLI_EXIT_FAILURE;
    return CLI_EXIT_OK;
}

static int parse_method(cmp_options *o, const char *s)
{
    o->start_method_name = s;
    if (strcmp(s, "fork") == 0)
        o->start_method = CREW_START_FORK;
    else if (strcmp(s, "spawn") == 0)
        o->start_method = CREW_START_SPAWN;
    else if (strcmp(s, "forkserver") == 0)
        o->start_method = CREW_START_FORKSERVER;
    else
        return usage_error("--start-method: unknown method '%s' (forkserver, fork, spawn)", s);
    return CLI_EXIT_OK;
}

/* What parse() learns besides the options themselves. */
typedef struct parse_state {
    bool help, has_arg, has_items, has_split;
} parse_state;

/* One option c (getopt_long's return) with its optarg. */
static int parse_option(cmp_options *o, int c, char **argv, parse_state *ps)
{
    long v;
    switch (c) {
    case OPT_QUICK: o->quick = true; return CLI_EXIT_OK;
    case OPT_JSON: o->json = true; return CLI_EXIT_OK;
    case OPT_CSV: o->csv = true; return CLI_EXIT_OK;
    case OPT_PLOT: o->plot_path = optarg; return CLI_EXIT_OK;
    case OPT_NOFAULT: o->no_fault = true; return CLI_EXIT_OK;
    case 'q': o->quiet = true; return CLI_EXIT_OK;
    case 'h': ps->help = true; return CLI_EXIT_OK;
    case OPT_WORKERS: return parse_workers(o, optarg);
    case OPT_WORKLOAD: return parse_workload(o, optarg);
    case OPT_TASK: return parse_task(o, optarg);
    case OPT_METHOD: return parse_method(o, optarg);
    case OPT_ARG:
        ps->has_arg = true;
        return read_arg(o, optarg);
    case OPT_ITEMS:
        ps->has_items = true;
        if (!parse_long(optarg, 1, CMP_ITEMS_MAX, &v))
            return usage_error("--items: '%s' is not a count (1..200000)", optarg);
        o->items = v;
        return CLI_EXIT_OK;
    case OPT_ARGS: o->args_path = optarg; return CLI_EXIT_OK;
    case OPT_INDEX: o->index = true; return CLI_EXIT_OK;
    case OPT_THOROUGH: o->thorough = true; return CLI_EXIT_OK;
    case OPT_RECORD:
        ps->has_split = true;
        if (!parse_long(optarg, 1, (long)CMP_ARG_MAX, &v))
            return usage_error("--record: '%s' is not a record size (1..67108864 bytes)", optarg);
        o->record = (size_t)v;
        return CLI_EXIT_OK;
    case OPT_DELIM:
        ps->has_split = true;
        return parse_delim(o, optarg);
    case OPT_TIMEOUT:
        if (!parse_long(optarg, 1, 86400, &v))
            return usage_error("--timeout: '%s' is not a number of seconds (1..86400)", optarg);
        o->timeout = (double)v;
        return CLI_EXIT_OK;
    case '?':
    default:
        if (optopt && optopt < 256)
            return usage_error("unknown option '-%s'", (char[]){(char)optopt, 0});
        return usage_error("bad option '%s'", argv[optind - 1]);
    }
}

/* The rules between options, once all are read. */
static int check_options(cmp_options *o, const parse_state *ps)
{
    if (o->json && o->csv)
        return usage_error("%s", "--json and --csv exclude each other");
    if ((ps->has_arg || ps->has_items || o->args_path || o->index) && !o->task_spec)
        return usage_error("%s needs --task", ps->has_arg     ? "--arg"
                                              : ps->has_items ? "--items"
                                              : o->index      ? "--index"
                                                              : "--args");
    if (ps->has_arg && o->args_path)
        return usage_error("%s", "--arg and --args exclude each other");
    if (ps->has_split && !o->args_path)
        return usage_error("%s", "--record and --delim need --args");
    if (o->record && o->delim)
        return usage_error("%s", "--record and --delim exclude each other");
    if (o->quick && o->thorough)
        return usage_error("%s", "--quick and --thorough exclude each other");
    if (o->task_spec && o->workload_name)
        return usage_error("%s", "--task and --workload exclude each other");
    if (o->task_spec)
        o->workload = CMP_WL_USER;
    return CLI_EXIT_OK;
}

static int parse(cmp_options *o, int argc, char **argv, bool *help)
{
    parse_state ps = {false, false, false, false};
    opterr = 0;
    optind = 1;
    int c, rc;
    while ((c = getopt_long(argc, argv, "+qh", long_options, NULL)) != -1) {
        if ((rc = parse_option(o, c, argv, &ps)) != 0)
            return rc;
        if (ps.help) {
            *help = true;
            return CLI_EXIT_OK;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return check_options(o, &ps);
}

/* ---------------------------------------------------------------- watchdog */
static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "\ncrew compare: a measurement did not finish in time; giving up\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(CLI_EXIT_MEASURE);
}

/* ---------------------------------------------------------------- machine */
/* The 1-minute load average: how busy the machine was around the run. */
static double load_average(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = NAN;
        fclose(f);
    }
    return l;
}

static void machine(cmp_results *r)
{
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(r->kernel, sizeof r->kernel, "%s", u.release);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(r->cpu_model, sizeof r->cpu_model, "%s", p);
            }
            break;
        }
    }
    if (f)
        fclose(f);
}

static void model_init(cmp_model *m, const char *name)
{
    memset(m, 0, sizeof *m);
    m->name = name;
    m->start_ms = m->ready_ms = m->destroy_ms = m->worker_us = NAN;
    for (int i = 0; i < CMP_MAX_METHODS; i++)
        m->methods[i].worker_us = m->methods[i].start_ms = NAN;
    m->idle_bytes = m->idle_private_bytes = NAN;
    m->roundtrip_us = m->handoff_us = m->empty_per_s = m->map_per_s = NAN;
    m->xfer_copy_us = m->xfer_ref_us = NAN;
    m->fault.detect_ms = NAN;
}

/* ---------------------------------------------------------------- plan
 * How much of each probe, from the options: the counts (--quick shrinks
 * them), the start methods, the curve's worker counts, the I/O rows, and
 * the workload's items (built-in or the user's). */
static void plan_counts(cmp_plan *pl, const cmp_results *r, const cmp_options *o)
{
    int cpus = r->cpus;
    bool q = o->quick;
    pl->reps = q ? 3 : 5;
    pl->rt_calls = q ? 300 : 2000;
    pl->batch = q ? 2000 : 20000;
    pl->map_items = q ? 20000 : 200000;
    pl->xfer_calls = q ? 10 : 40;
    pl->ready_workers = cpus < 2 ? 2 : cpus;
    pl->mem_workers = q ? 8 : 16;
    pl->timeout = o->timeout > 0 ? o->timeout : 120;
    pl->point_budget = q ? 0.4 : 2.0;
    pl->fault = !o->no_fault;
    pl->io_view = true;
    pl->methods[0] = CREW_START_FORKSERVER, pl->method_names[0] = "forkserver";
    pl->methods[1] = CREW_START_FORK, pl->method_names[1] = "fork";
    pl->methods[2] = CREW_START_SPAWN, pl->method_names[2] = "spawn";
    pl->nmethods = 3;
    pl->pool_method = o->start_method_name ? o->start_method : CREW_START_FORKSERVER;
    pl->pool_method_name = o->start_method_name ? o->start_method_name : "forkserver";
}

/* --workers as given; else waiting work up to 16 workers per CPU, CPU work
 * 1..CPUs (powers of two beyond 8 CPUs). */
static void plan_curve_workers(cmp_plan *pl, const cmp_options *o, int cpus)
{
    if (o->nworkers) {
        memcpy(pl->curve_workers, o->workers, sizeof o->workers);
        pl->ncurve = o->nworkers;
    } else if (o->workload == CMP_WL_IO || o->workload == CMP_WL_MIXED) {
        int ws[] = {1, cpus, 4 * cpus, 16 * cpus};
        for (size_t i = 0; i < 4; i++)
            if ((pl->ncurve == 0 || ws[i] > pl->curve_workers[pl->ncurve - 1]) && ws[i] <= 256)
                pl->curve_workers[pl->ncurve++] = ws[i];
    } else if (cpus <= 8) {
        for (int w = 1; w <= cpus; w++)
            pl->curve_workers[pl->ncurve++] = w;
    } else {
        for (int w = 1; w < cpus && pl->ncurve < CMP_MAX_POINTS - 1; w *= 2)
            pl->curve_workers[pl->ncurve++] = w;
        pl->curve_workers[pl->ncurve++] = cpus;
    }
}

/* The I/O rows: 10 ms waits at the CPU count and at 100 workers. */
static void plan_io_rows(cmp_plan *pl, cmp_results *r, bool quick)
{
    int cpus = r->cpus;
    r->io_wait_ms = 10;
    pl->io_wait_s = 0.010;
    pl->io_per_worker = quick ? 5 : 10;
    pl->io_workers[pl->nio++] = cpus;
    if (cpus < 100)
        pl->io_workers[pl->nio++] = 100;
    r->io_tasks_full = 1000;
}

/* The built-in workload's item (*a) and how many (*items, before the floor
 * of 8 per worker); describes it in r->workload_desc. */
static void builtin_item(wl_arg *a, long *items, cmp_results *r, const cmp_options *o, int maxw)
{
    bool q = o->quick;
    double steps_per_us = 0;
    a->kind = (uint32_t)o->workload;
    switch (o->workload) {
    case CMP_WL_CPU:
        steps_per_us = wl_calibrate_cpu();
        a->iters = (uint64_t)(steps_per_us * (q ? 500 : 1000));
        *items = q ? 120 : 400;
        snprintf(r->workload_desc, sizeof r->workload_desc, "cpu (built-in): %ld items of ~%d µs of pure computation",
                 *items > 8L * maxw ? *items : 8L * maxw, q ? 500 : 1000);
        break;
    case CMP_WL_IO:
        a->wait_ns = q ? 2000000 : 5000000;
        *items = q ? 32 : 64;
        snprintf(r->workload_desc, sizeof r->workload_desc, "io (built-in): %ld items each waiting %d ms",
                 *items > 8L * maxw ? *items : 8L * maxw, q ? 2 : 5);
        break;
    case CMP_WL_MIXED:
        steps_per_us = wl_calibrate_cpu();
        a->iters = (uint64_t)(steps_per_us * 500);
        a->wait_ns = 500000;
        *items = q ? 60 : 200;
        snprintf(r->workload_desc, sizeof r->workload_desc,
                 "mixed (built-in): %ld items of ~500 µs computation + 500 µs wait",
                 *items > 8L * maxw ? *items : 8L * maxw);
        break;
    case CMP_WL_MEMBW:
        a->bytes = WL_MEMBW_BUFFER;
        *items = q ? 40 : 200;
        snprintf(r->workload_desc, sizeof r->workload_desc,
                 "membw (built-in): %ld items each streaming over a private 8 MiB buffer",
                 *items > 8L * maxw ? *items : 8L * maxw);
        break;
    case CMP_WL_USER:
        break;
    }
}

/* At least 8 items per worker of the biggest pool, each its own wl_arg. */
static int plan_builtin(cmp_plan *pl, cmp_results *r, const cmp_options *o)
{
    int maxw = pl->curve_workers[pl->ncurve - 1];
    wl_arg a = {0};
    long items = 0;
    builtin_item(&a, &items, r, o, maxw);
    if (items < 8L * maxw)
        items = 8L * maxw;
    pl->task = wl_task_work;
    pl->items = items;
    pl->in_size = sizeof(wl_arg);
    pl->out_size = 2 * sizeof(uint64_t);
    pl->in = malloc(sizeof(wl_arg) * (size_t)items);
    if (!pl->in)
        return CLI_EXIT_FAILURE;
    for (long i = 0; i < items; i++) {
        a.seq = (uint64_t)i;
        memcpy(pl->in + (size_t)i * sizeof a, &a, sizeof a);
    }
    static const char *names[] = {"cpu", "io", "mixed", "membw"};
    r->workload = names[o->workload];
    return CLI_EXIT_OK;
}

/* The user's task: the search lays its items out (items.c), not the plan. */
static int plan_user(cmp_plan *pl, cmp_results *r, const cmp_options *o, crew_task_fn user)
{
    pl->user = true;
    pl->task = user;
    pl->items = o->items;
    pl->in_size = 0;
    pl->out_size = 4096;
    pl->in = NULL;
    snprintf(r->workload_desc, sizeof r->workload_desc, "your task %s", o->task_spec);
    r->task_spec = o->task_spec;
    r->arg_len = o->arg_len;
    r->workload = "user";
    return CLI_EXIT_OK;
}

static int build_plan(cmp_plan *pl, cmp_results *r, const cmp_options *o, crew_task_fn user)
{
    plan_counts(pl, r, o);
    plan_curve_workers(pl, o, r->cpus);
    plan_io_rows(pl, r, o->quick);
    int ex = o->workload == CMP_WL_USER ? plan_user(pl, r, o, user) : plan_builtin(pl, r, o);
    if (ex)
        return ex;
    r->items = pl->items;
    return CLI_EXIT_OK;
}

static void options_free(cmp_options *o)
{
    free(o->task_path);
    free(o->task_symbol);
    free(o->arg);
}

/* ---------------------------------------------------------------- the run */
/* Learn now, not after the measurements, that the plot cannot be written:
 * its directory must exist and be writable. */
static int check_plot_dir(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    if (access(dir, W_OK) != 0) {
        cli_error("cannot write plot %s: %s", path, strerror(errno));
        return CLI_EXIT_OUTPUT;
    }
    return CLI_EXIT_OK;
}

/* No core file from compare or anything it starts (the crash demo, a
 * crashing user task); no death by SIGPIPE when stdout goes away; the
 * watchdog armed until the plan says how long the run may take. */
static void guard_process(void)
{
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, watchdog);
    alarm(600);
}

static int load_task(const cmp_options *o, crew_task_fn *user)
{
    /* An absolute path, so worker processes load the same file. */
    char *path = o->task_path;
    char resolved[PATH_MAX];
    if (strchr(path, '/') && realpath(path, resolved))
        path = resolved;
    return wl_load_user(path, o->task_symbol, user);
}

static void results_init(cmp_results *r, const cmp_options *o)
{
    memset(r, 0, sizeof *r);
    r->crew_version = crew_version_string();
    r->cpus = crew_cpu_count();
    r->quick = o->quick;
    machine(r);
    r->load_start = load_average();
    model_init(&r->m[CMP_THREADS], "threads");
    model_init(&r->m[CMP_PROCESSES], "processes");
    r->serial_seconds = r->item_us = NAN;
}

/* The whole run's limit: generous for the built-in work; for a user's task
 * every measurement (a serial run, a batch on a pool) may take up to
 * --timeout. */
static void arm_watchdog(const cmp_options *o, const cmp_plan *pl)
{
    double limit = (o->quick ? 120 : 300) + 60.0 * pl->ncurve;
    if (pl->user)
        limit += pl->timeout * 2 * (pl->reps + 1) * (pl->ncurve + 1);
    if (limit > 7 * 86400.0)
        limit = 7 * 86400.0;
    alarm((unsigned)limit);
}

/* Both models, then the I/O view. Returns CLI_EXIT_OK, the exit status of
 * a failed model's measurement (the run goes on: the report shows what was
 * measured) in *failed, or a status that ends the run (the user's task
 * failed; out of memory). */
static int measure(cmp_results *r, const cmp_plan *pl, int *failed)
{
    *failed = 0;
    for (int model = 0; model < CMP_NMODELS; model++) {
        int ex = probe_model(r, model, pl);
        if (ex == CLI_EXIT_TASK || ex == CLI_EXIT_FAILURE)
            return ex;
        if (ex)
            *failed = ex;
    }
    if (pl->io_view)
        probe_io_view(r, pl);
    return CLI_EXIT_OK;
}

/* The report on stdout in the shape asked for, then --plot's SVG. */
static int report(const cmp_options *o, const cmp_results *r)
{
    int w = o->json ? report_json(stdout, r) : o->csv ? report_csv(stdout, r) : report_table(stdout, r);
    if (fflush(stdout) != 0 || w != 0) {
        cli_error("cannot write the results: %s", strerror(errno));
        return CLI_EXIT_OUTPUT;
    }
    if (o->plot_path)
        return report_svg(o->plot_path, r);
    return CLI_EXIT_OK;
}

/* parse -> plan -> measure -> recommend -> report. */
int cmd_compare(int argc, char **argv)
{
    double t_start = crew_now();
    cmp_options o;
    memset(&o, 0, sizeof o);
    o.start_method = -1;
    bool help = false;
    int ex = parse(&o, argc, argv, &help);
    if (ex || help) {
        if (help)
            compare_usage(stdout);
        options_free(&o);
        return ex;
    }
    cli_progress_init(o.quiet);
    if (o.plot_path && (ex = check_plot_dir(o.plot_path)) != 0) {
        options_free(&o);
        return ex;
    }
    guard_process();
    crew_task_fn user = NULL;
    if (o.task_spec && (ex = load_task(&o, &user)) != 0) {
        options_free(&o);
        return ex;
    }

    static cmp_results r;
    static cmp_plan pl;
    memset(&pl, 0, sizeof pl);
    results_init(&r, &o);
    int failed = 0;
    if ((ex = build_plan(&pl, &r, &o, user)) != 0)
        goto out;
    r.reps = pl.reps;
    arm_watchdog(&o, &pl);
    r.m[CMP_PROCESSES].method = pl.pool_method_name;
    if (pl.user) { /* the search, its advice and its report (compare_task.c) */
        ex = compare_task(&o, &r, &pl, t_start);
        alarm(0);
        goto out;
    }
    if ((ex = measure(&r, &pl, &failed)) != 0)
        goto out;
    alarm(0);
    r.load_end = load_average();
    probe_serial_busy(&r.busy);
    cli_progress_done();
    recommend(&r);
    r.elapsed_s = crew_now() - t_start;
    if ((ex = report(&o, &r)) == 0)
        ex = failed;
out:
    cli_progress_done();
    free(pl.in);
    options_free(&o);
    return ex;
}
