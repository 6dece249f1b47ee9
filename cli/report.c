/*
 * report.c -- `crew compare` results as an aligned table, JSON and CSV.
 *
 * DESIGN
 *  The three shapes print the same cmp_results; nothing here measures or
 *  decides. A figure that was not measured (a model failed, or the row does
 *  not apply) is NaN in cmp_results: "-" in the table, null in JSON, an
 *  empty value in CSV. The JSON shape is versioned (CMP_SCHEMA_VERSION) and
 *  described by docs/compare.schema.json; new fields are only ever added, a
 *  change of meaning bumps the version.
 */
#include "cli.h"
#include "search.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------- units */
const char *fmt_time_s(char *buf, size_t n, double s)
{
    if (!isfinite(s))
        snprintf(buf, n, "-");
    else if (s < 1e-6)
        snprintf(buf, n, "%.0f ns", s * 1e9);
    else if (s < 1e-4)
        snprintf(buf, n, "%.1f µs", s * 1e6);
    else if (s < 1e-3)
        snprintf(buf, n, "%.0f µs", s * 1e6);
    else if (s < 1.0)
        snprintf(buf, n, "%.2f ms", s * 1e3);
    else
        snprintf(buf, n, "%.2f s", s);
    return buf;
}

const char *fmt_bytes(char *buf, size_t n, double b)
{
    if (!isfinite(b))
        snprintf(buf, n, "-");
    else if (fabs(b) < 1024)
        snprintf(buf, n, "%.0f B", b);
    else if (fabs(b) < 1024.0 * 1024)
        snprintf(buf, n, "%.1f KiB", b / 1024);
    else if (fabs(b) < 1024.0 * 1024 * 1024)
        snprintf(buf, n, "%.1f MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    return buf;
}

const char *fmt_rate(char *buf, size_t n, double r)
{
    if (!isfinite(r))
        snprintf(buf, n, "-");
    else if (r >= 1e6)
        snprintf(buf, n, "%.2f M/s", r / 1e6);
    else if (r >= 1e4)
        snprintf(buf, n, "%.0f k/s", r / 1e3);
    else if (r >= 100)
        snprintf(buf, n, "%.0f /s", r);
    else
        snprintf(buf, n, "%.1f /s", r);
    return buf;
}

static const char *fmt_x(char *buf, size_t n, double x)
{
    if (!isfinite(x))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.2fx", x);
    return buf;
}

static const char *signal_name(int sig)
{
    static __thread char buf[32];
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, sizeof buf, "SIG%s", abbrev);
    else
        snprintf(buf, sizeof buf, "signal %d", sig);
    return buf;
}

/* ---------------------------------------------------------------- table
 * Rows are characteristics, columns are the two models, as in the seed's
 * comparison table; every cell is a measured figure with its unit. */
enum { TABLE_MAX_ROWS = 64, CELL = 96 };
typedef struct table {
    char cell[TABLE_MAX_ROWS][3][CELL];
    int nrows;
} table;

static void row(table *t, const char *label, const char *a, const char *b)
{
    if (t->nrows >= TABLE_MAX_ROWS)
        return;
    snprintf(t->cell[t->nrows][0], CELL, "%s", label);
    snprintf(t->cell[t->nrows][1], CELL, "%s", a);
    snprintf(t->cell[t->nrows][2], CELL, "%s", b);
    t->nrows++;
}

/* Display width of UTF-8 text: code points, not bytes (µ is two bytes). */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void pad(FILE *f, const char *s, int w)
{
    fputs(s, f);
    for (int i = width(s); i < w; i++)
        fputc(' ', f);
}

static void fault_cell(char *buf, size_t n, const cmp_fault *fa, bool threads)
{
    if (!fa->measured) {
        snprintf(buf, n, "-");
        return;
    }
    if (!fa->survived)
        snprintf(buf, n, "process died (%s), %d/%d done", fa->signal ? signal_name(fa->signal) : "exited",
                 fa->innocent_ok, fa->innocent_total);
    else if (threads)
        snprintf(buf, n, "survived?! %d/%d others ok", fa->innocent_ok, fa->innocent_total);
    else
        snprintf(buf, n, "1 failed (%s), %d/%d others ok",
                 fa->signal ? signal_name(fa->signal) : crew_err_name(fa->crashed_status), fa->innocent_ok,
                 fa->innocent_total);
}

/* "9171 /s, 1000 tasks in 109 ms": the rate, and the time the full batch
 * takes -- measured when the run was that big, else marked as projected. */
static void io_cell(char *buf, size_t n, const cmp_point *p, int full)
{
    char x[64], y[64];
    if (!p || !isfinite(p->items_per_s)) {
        snprintf(buf, n, "-");
        return;
    }
    if (p->items >= full)
        snprintf(buf, n, "%s, %d in %s", fmt_rate(x, sizeof x, p->items_per_s), full,
                 fmt_time_s(y, sizeof y, p->seconds * full / (double)p->items));
    else
        snprintf(buf, n, "%s, %d in ~%s", fmt_rate(x, sizeof x, p->items_per_s), full,
                 fmt_time_s(y, sizeof y, full / p->items_per_s));
}

/* The model's best speedup on the curve, as the table's first row says it. */
static void concurrency_cell(char *dst, const cmp_model *m)
{
    double top = NAN;
    int bw = 0;
    for (int k = 0; k < m->ncurve; k++)
        if (isfinite(m->curve[k].speedup) && !(m->curve[k].speedup <= top))
            top = m->curve[k].speedup, bw = m->curve[k].workers;
    if (isfinite(top))
        snprintf(dst, CELL, "%s: %.2fx @ %d worker%s", top >= 1.15 && bw > 1 ? "parallel" : "no gain", top, bw,
                 bw == 1 ? "" : "s");
    else
        snprintf(dst, CELL, "-");
}

/* Starting workers and pools. */
static void rows_start(table *t, const cmp_model *th, const cmp_model *pr)
{
    char a[CELL], b[CELL], l[CELL], x[64], y[64], z[64], w[64];
    snprintf(a, sizeof a, "%s (crew_thread)", fmt_time_s(x, sizeof x, th->worker_us / 1e6));
    snprintf(b, sizeof b, "%s (crew_process)", fmt_time_s(y, sizeof y, pr->worker_us / 1e6));
    row(t, "start + join one worker", a, b);
    row(t, "start + stop, pool of 1", fmt_time_s(x, sizeof x, th->start_ms / 1e3),
        fmt_time_s(y, sizeof y, pr->start_ms / 1e3));
    for (int k = 0; k < pr->nmethods; k++) {
        snprintf(l, sizeof l, "  ... start method %s", pr->methods[k].name);
        if (pr->methods[k].status)
            snprintf(b, sizeof b, "unavailable (%s)", crew_err_name(pr->methods[k].status));
        else
            snprintf(b, sizeof b, "%s worker, %s pool of 1", fmt_time_s(x, sizeof x, pr->methods[k].worker_us / 1e6),
                     fmt_time_s(y, sizeof y, pr->methods[k].start_ms / 1e3));
        row(t, l, "", b);
    }
    snprintf(l, sizeof l, "pool of %d: ready / destroy", th->ready_workers);
    snprintf(a, sizeof a, "%s / %s", fmt_time_s(x, sizeof x, th->ready_ms / 1e3),
             fmt_time_s(y, sizeof y, th->destroy_ms / 1e3));
    snprintf(b, sizeof b, "%s / %s", fmt_time_s(z, sizeof z, pr->ready_ms / 1e3),
             fmt_time_s(w, sizeof w, pr->destroy_ms / 1e3));
    row(t, l, a, b);
}

/* Memory, tasks and data. */
static void rows_costs(table *t, const cmp_model *th, const cmp_model *pr)
{
    char a[CELL], b[CELL], x[64], y[64], z[64];
    snprintf(a, sizeof a, "%s %s", fmt_bytes(x, sizeof x, th->idle_bytes), th->idle_metric ? th->idle_metric : "");
    snprintf(b, sizeof b, "%s %s (%s private)", fmt_bytes(y, sizeof y, pr->idle_bytes),
             pr->idle_metric ? pr->idle_metric : "", fmt_bytes(z, sizeof z, pr->idle_private_bytes));
    row(t, "memory per idle worker", a, b);
    row(t, "round trip, one tiny task", fmt_time_s(x, sizeof x, th->roundtrip_us / 1e6),
        fmt_time_s(y, sizeof y, pr->roundtrip_us / 1e6));
    row(t, "  ... handed to a worker", fmt_time_s(x, sizeof x, th->handoff_us / 1e6),
        fmt_time_s(y, sizeof y, pr->handoff_us / 1e6));
    row(t, "empty tasks, submit + wait", fmt_rate(x, sizeof x, th->empty_per_s),
        fmt_rate(y, sizeof y, pr->empty_per_s));
    row(t, "empty items, crew_pool_map", fmt_rate(x, sizeof x, th->map_per_s),
        fmt_rate(y, sizeof y, pr->map_per_s));
    row(t, "1 MiB there and back (copy)", fmt_time_s(x, sizeof x, th->xfer_copy_us / 1e6),
        fmt_time_s(y, sizeof y, pr->xfer_copy_us / 1e6));
    snprintf(a, sizeof a, "%s (%s)", fmt_time_s(x, sizeof x, th->xfer_ref_us / 1e6),
             th->xfer_ref_how ? th->xfer_ref_how : "-");
    snprintf(b, sizeof b, "%s (%s)", fmt_time_s(y, sizeof y, pr->xfer_ref_us / 1e6),
             pr->xfer_ref_how ? pr->xfer_ref_how : "-");
    row(t, "1 MiB by reference", a, b);
}

/* The workload's curve, one row per worker count. */
static void rows_curve(table *t, const cmp_results *r)
{
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    char a[CELL], b[CELL], l[CELL], x[64], y[64];
    int maxc = th->ncurve > pr->ncurve ? th->ncurve : pr->ncurve;
    for (int k = 0; k < maxc; k++) {
        const cmp_point *p = k < th->ncurve ? &th->curve[k] : &pr->curve[k];
        snprintf(l, sizeof l, "%s speedup, %d worker%s", r->workload, p->workers, p->workers == 1 ? "" : "s");
        if (k < th->ncurve)
            snprintf(a, sizeof a, "%s (%s)", fmt_x(x, sizeof x, th->curve[k].speedup),
                     fmt_time_s(y, sizeof y, th->curve[k].seconds));
        else
            snprintf(a, sizeof a, "-");
        if (k < pr->ncurve)
            snprintf(b, sizeof b, "%s (%s)", fmt_x(x, sizeof x, pr->curve[k].speedup),
                     fmt_time_s(y, sizeof y, pr->curve[k].seconds));
        else
            snprintf(b, sizeof b, "-");
        row(t, l, a, b);
    }
}

/* The I/O rows and the crash demonstration. */
static void rows_io_fault(table *t, const cmp_results *r)
{
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    char a[CELL], b[CELL], l[CELL], y[64];
    int maxi = th->nio > pr->nio ? th->nio : pr->nio;
    for (int k = 0; k < maxi; k++) {
        const cmp_point *p = k < th->nio ? &th->io[k] : &pr->io[k];
        snprintf(l, sizeof l, "I/O %.0f ms waits, %d workers", r->io_wait_ms, p->workers);
        io_cell(a, sizeof a, k < th->nio ? &th->io[k] : NULL, r->io_tasks_full);
        io_cell(b, sizeof b, k < pr->nio ? &pr->io[k] : NULL, r->io_tasks_full);
        row(t, l, a, b);
    }
    fault_cell(a, sizeof a, &th->fault, true);
    fault_cell(b, sizeof b, &pr->fault, false);
    row(t, "fault: a task segfaults", a, b);
    if (pr->fault.measured) {
        snprintf(b, sizeof b, "pool %s, crash seen in %s", pr->fault.pool_usable ? "usable" : "BROKEN",
                 fmt_time_s(y, sizeof y, pr->fault.detect_ms / 1e3));
        row(t, "  ... after the crash", "-", b);
    }
}

/* The two header lines, the load note, and the rows in aligned columns
 * (the first row -- the column names -- underlined). */
static void print_table(FILE *f, const table *t, const cmp_results *r)
{
    int wcol[3] = {0, 0, 0};
    for (int i = 0; i < t->nrows; i++)
        for (int c = 0; c < 3; c++)
            if (width(t->cell[i][c]) > wcol[c])
                wcol[c] = width(t->cell[i][c]);

    char line[512];
    snprintf(line, sizeof line, "threads vs processes on this machine (%d CPU%s, Linux %s, crew %s)", r->cpus,
             r->cpus == 1 ? "" : "s", r->kernel, r->crew_version);
    cli_wrap(f, "crew compare: ", 2, line);
    snprintf(line, sizeof line, "%s; medians of %d runs%s", r->workload_desc, r->reps, r->quick ? " (--quick)" : "");
    cli_wrap(f, "workload: ", 10, line);
    /* Other programs competing for the CPUs distort every time below:
     * say so rather than let busy-machine figures pass for quiet ones. */
    if (cli_busy_is(&r->busy)) {
        char bt[200];
        snprintf(line, sizeof line, "%s -- the times are noisy", cli_busy_text(bt, sizeof bt, &r->busy,
                                                                              "the serial baselines"));
        cli_wrap(f, "note: ", 6, line);
    }
    fputc('\n', f);
    for (int i = 0; i < t->nrows; i++) {
        pad(f, t->cell[i][0], wcol[0] + 2);
        pad(f, t->cell[i][1], wcol[1] + 2);
        fputs(t->cell[i][2], f);
        fputc('\n', f);
        if (i == 0) {
            int total = wcol[0] + wcol[1] + wcol[2] + 4;
            for (int k = 0; k < total; k++)
                fputc('-', f);
            fputc('\n', f);
        }
    }
}

/* Pads s on the left to a display width of w (the units may hold 'µ'). */
static void rpad(FILE *f, const char *s, int w)
{
    for (int k = width(s); k < w; k++)
        fputc(' ', f);
    fputs(s, f);
}

/* One line of the I/O view. */
static void print_io_view_line(FILE *f, const iov_result *io, int status)
{
    char name[64], a[CELL], b[CELL], y[64];
    if (io->model == IOV_THREAD_POOL)
        snprintf(name, sizeof name, "thread pool (%d)", io->threads);
    else
        snprintf(name, sizeof name, "%s", iov_model_name(io->model));
    if (status) {
        fprintf(f, "  %6d %-22s %s (%s)\n", io->concurrency, name, "not measured", crew_err_name(status));
        return;
    }
    char ratio[32];
    snprintf(ratio, sizeof ratio, "%.2fx", io->ratio);
    fprintf(f, "  %6d %-22s ", io->concurrency, name);
    fmt_time_s(a, sizeof a, io->elapsed_s);
    fmt_bytes(b, sizeof b, (double)io->rss_per_wait);
    fmt_time_s(y, sizeof y, io->cpu_s);
    rpad(f, a, 10);
    fprintf(f, " %9s %8d ", ratio, io->threads);
    rpad(f, b, 13);
    fputc(' ', f);
    rpad(f, y, 10);
    fputc('\n', f);
}

static void print_io_view(FILE *f, const cmp_results *r)
{
    char x[64];
    if (r->io_view_n == 0)
        return;
    fprintf(f, "\nI/O-bound, waits of %.0f ms all pending at once (ideal: %s)\n", r->io_wait_ms,
            fmt_time_s(x, sizeof x, r->io_wait_ms / 1e3));
    fprintf(f, "  %6s %-22s %10s %9s %8s %13s %10s\n", "waits", "", "time", "vs ideal", "threads", "memory/wait",
            "CPU time");
    for (int i = 0; i < r->io_view_n; i++)
        print_io_view_line(f, &r->io_view[i], r->io_view_status[i]);
}

static void print_recommendation(FILE *f, const cmp_results *r)
{
    fputc('\n', f);
    cli_wrap(f, "recommendation: ", 2, r->rec.headline);
    for (int i = 0; i < r->rec.nreasons; i++)
        cli_wrap(f, "  - ", 4, r->rec.reasons[i]);
    fprintf(f, "\n(measured in %.1f s; `crew compare --json` for every figure)\n", r->elapsed_s);
}

/* The rows (characteristics) by the columns (the two models), then the I/O
 * view and the recommendation. */
int report_table(FILE *f, const cmp_results *r)
{
    static table t;
    memset(&t, 0, sizeof t);
    char a[CELL], b[CELL];
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    snprintf(b, sizeof b, "processes (%s)", pr->method ? pr->method : "default");
    row(&t, "", "threads", b);
    concurrency_cell(a, th);
    concurrency_cell(b, pr);
    row(&t, "concurrency (best speedup)", a, b);
    row(&t, "memory sharing", "one address space", "separate; args/results in shm");
    rows_start(&t, th, pr);
    rows_costs(&t, th, pr);
    rows_curve(&t, r);
    rows_io_fault(&t, r);
    print_table(f, &t, r);
    print_io_view(f, r);
    print_recommendation(f, r);
    return ferror(f) ? -1 : 0;
}

/* ---------------------------------------------------------------- JSON */
/* JSON scalars, shared by every report (cli.h). */
void cli_json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void cli_json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void jpoints(FILE *f, const cmp_point *p, int n, bool speedup)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s{\"workers\": %d, \"items\": %ld, \"seconds\": ", i ? ", " : "", p[i].workers,
                p[i].items);
        cli_json_num(f, p[i].seconds);
        if (speedup) {
            fputs(", \"speedup\": ", f);
            cli_json_num(f, p[i].speedup);
            fputs(", \"speedup_min\": ", f);
            cli_json_num(f, p[i].hi > 0 ? p[i].lo : NAN);
            fputs(", \"speedup_max\": ", f);
            cli_json_num(f, p[i].hi > 0 ? p[i].hi : NAN);
        }
        fputs(", \"items_per_s\": ", f);
        cli_json_num(f, p[i].items_per_s);
        fputc('}', f);
    }
    fputc(']', f);
}

static const char *status_str(int st) { return st == 0 ? "ok" : crew_err_name(st); }

static void jmodel(FILE *f, const cmp_model *m)
{
    fprintf(f, "{\n      \"status\": ");
    cli_json_str(f, status_str(m->status));
    fputs(",\n      \"start_method\": ", f);
    cli_json_str(f, m->method);
    fputs(",\n      \"worker_start_us\": ", f);
    cli_json_num(f, m->worker_us);
    fputs(",\n      \"start_ms\": ", f);
    cli_json_num(f, m->start_ms);
    fputs(",\n      \"start_methods\": [", f);
    for (int k = 0; k < m->nmethods; k++) {
        fprintf(f, "%s{\"method\": ", k ? ", " : "");
        cli_json_str(f, m->methods[k].name);
        fputs(", \"start_ms\": ", f);
        cli_json_num(f, m->methods[k].status ? NAN : m->methods[k].start_ms);
        fputs(", \"worker_start_us\": ", f);
        cli_json_num(f, m->methods[k].worker_us);
        fputs(", \"status\": ", f);
        cli_json_str(f, status_str(m->methods[k].status));
        fputc('}', f);
    }
    fprintf(f, "],\n      \"ready\": {\"workers\": %d, \"ms\": ", m->ready_workers);
    cli_json_num(f, m->ready_ms);
    fputs(", \"destroy_ms\": ", f);
    cli_json_num(f, m->destroy_ms);
    fputs("},\n      \"idle_worker_bytes\": ", f);
    cli_json_num(f, m->idle_bytes);
    fputs(",\n      \"idle_worker_private_bytes\": ", f);
    cli_json_num(f, m->idle_private_bytes);
    fputs(",\n      \"idle_metric\": ", f);
    cli_json_str(f, m->idle_metric);
    fputs(",\n      \"roundtrip_us\": ", f);
    cli_json_num(f, m->roundtrip_us);
    fputs(",\n      \"handoff_us\": ", f);
    cli_json_num(f, m->handoff_us);
    fputs(",\n      \"empty_tasks_per_s\": ", f);
    cli_json_num(f, m->empty_per_s);
    fputs(",\n      \"map_items_per_s\": ", f);
    cli_json_num(f, m->map_per_s);
    fputs(",\n      \"transfer_1mib\": {\"copy_us\": ", f);
    cli_json_num(f, m->xfer_copy_us);
    fputs(", \"ref_us\": ", f);
    cli_json_num(f, m->xfer_ref_us);
    fputs(", \"ref_how\": ", f);
    cli_json_str(f, m->xfer_ref_how);
    fputs("},\n      \"scaling\": ", f);
    jpoints(f, m->curve, m->ncurve, true);
    fputs(",\n      \"io\": ", f);
    jpoints(f, m->io, m->nio, false);
    const cmp_fault *fa = &m->fault;
    fprintf(f, ",\n      \"fault\": {\"measured\": %s, \"survived\": %s, \"signal\": %d, \"crashed_status\": ",
            fa->measured ? "true" : "false", fa->survived ? "true" : "false", fa->signal);
    cli_json_str(f, fa->measured && fa->survived ? status_str(fa->crashed_status) : NULL);
    fprintf(f, ", \"innocent_total\": %d, \"innocent_ok\": %d, \"pool_usable\": %s, \"detect_ms\": ",
            fa->innocent_total, fa->innocent_ok, fa->pool_usable ? "true" : "false");
    cli_json_num(f, fa->detect_ms);
    fputs("}\n    }", f);
}

int report_json(FILE *f, const cmp_results *r)
{
    fprintf(f, "{\n  \"schema\": \"%s\",\n  \"schema_version\": %d,\n  \"crew_version\": ", CMP_SCHEMA_ID,
            CMP_SCHEMA_VERSION);
    cli_json_str(f, r->crew_version);
    fprintf(f, ",\n  \"machine\": {\"cpus\": %d, \"kernel\": ", r->cpus);
    cli_json_str(f, r->kernel);
    fputs(", \"cpu_model\": ", f);
    cli_json_str(f, r->cpu_model);
    fprintf(f, "},\n  \"run\": {\"quick\": %s, \"reps\": %d, \"elapsed_s\": ", r->quick ? "true" : "false",
            r->reps);
    cli_json_num(f, r->elapsed_s);
    fputs(", \"load_avg_start\": ", f);
    cli_json_num(f, r->load_start);
    fputs(", \"load_avg_end\": ", f);
    cli_json_num(f, r->load_end);
    fputs(", \"busy\": ", f);
    cli_json_num(f, cli_busy_share(&r->busy));
    fputs(", \"cpu_pressure\": ", f);
    cli_json_num(f, cli_busy_psi(&r->busy));
    fputs(", \"others_cpu\": ", f);
    cli_json_num(f, cli_busy_others(&r->busy));
    fputs("},\n  \"workload\": {\"name\": ", f);
    cli_json_str(f, r->workload);
    fputs(", \"description\": ", f);
    cli_json_str(f, r->workload_desc);
    fprintf(f, ", \"items\": %ld, \"item_us\": ", r->items);
    cli_json_num(f, r->item_us);
    fputs(", \"serial_s\": ", f);
    cli_json_num(f, r->serial_seconds);
    fputs(", \"task\": ", f);
    cli_json_str(f, r->task_spec);
    fprintf(f, ", \"arg_bytes\": %zu},\n  \"io\": {\"tasks\": %d, \"wait_ms\": ", r->arg_len, r->io_tasks_full);
    cli_json_num(f, r->io_wait_ms);
    fputs("},\n  \"models\": {\n    \"threads\": ", f);
    jmodel(f, &r->m[CMP_THREADS]);
    fputs(",\n    \"processes\": ", f);
    jmodel(f, &r->m[CMP_PROCESSES]);
    fputs("\n  },\n  \"io_view\": [", f);
    for (int i = 0; i < r->io_view_n; i++) {
        const iov_result *io = &r->io_view[i];
        fputs(i ? ",\n    {\"model\": " : "\n    {\"model\": ", f);
        cli_json_str(f, iov_model_name(io->model));
        fputs(", \"status\": ", f);
        cli_json_str(f, status_str(r->io_view_status[i]));
        bool ok = r->io_view_status[i] == 0;
        fprintf(f, ", \"waits\": %d, \"threads\": %d, \"elapsed_s\": ", io->concurrency, ok ? io->threads : 0);
        cli_json_num(f, ok ? io->elapsed_s : NAN);
        fputs(", \"ratio_to_ideal\": ", f);
        cli_json_num(f, ok ? io->ratio : NAN);
        fputs(", \"waits_per_s\": ", f);
        cli_json_num(f, ok ? io->waits_per_s : NAN);
        fputs(", \"cpu_s\": ", f);
        cli_json_num(f, ok ? io->cpu_s : NAN);
        fputs(", \"rss_per_wait_bytes\": ", f);
        cli_json_num(f, ok ? (double)io->rss_per_wait : NAN);
        fputc('}', f);
    }
    fputs(r->io_view_n ? "\n  ],\n  \"recommendation\": {\"model\": " : "],\n  \"recommendation\": {\"model\": ", f);
    cli_json_str(f, r->m[r->rec.model].name);
    fprintf(f, ", \"workers\": %d, \"speedup\": ", r->rec.workers);
    cli_json_num(f, r->rec.speedup);
    fprintf(f, ", \"other_workers\": %d, \"other_speedup\": ", r->rec.other_workers);
    cli_json_num(f, r->rec.other_speedup);
    fputs(", \"headline\": ", f);
    cli_json_str(f, r->rec.headline);
    fputs(", \"reasons\": [", f);
    for (int i = 0; i < r->rec.nreasons; i++) {
        if (i)
            fputs(", ", f);
        cli_json_str(f, r->rec.reasons[i]);
    }
    fputs("]}", f);
    if (r->task)
        task_report_json(f, r->task);
    fputs("\n}\n", f);
    return ferror(f) ? -1 : 0;
}

/* ---------------------------------------------------------------- CSV
 * Long format, one figure per line: section,metric,model,workers,value,unit. */
static void csv(FILE *f, const char *section, const char *metric, const char *model, int workers, double v,
                const char *unit)
{
    fprintf(f, "%s,%s,%s,", section, metric, model);
    if (workers > 0)
        fprintf(f, "%d", workers);
    fputc(',', f);
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    fprintf(f, ",%s\n", unit);
}

int report_csv(FILE *f, const cmp_results *r)
{
    fputs("section,metric,model,workers,value,unit\n", f);
    csv(f, "run", "schema_version", "", 0, CMP_SCHEMA_VERSION, "");
    csv(f, "run", "cpus", "", 0, r->cpus, "");
    csv(f, "run", "elapsed", "", 0, r->elapsed_s, "s");
    csv(f, "run", "load_avg_start", "", 0, r->load_start, "");
    csv(f, "run", "load_avg_end", "", 0, r->load_end, "");
    csv(f, "run", "busy", "", 0, cli_busy_share(&r->busy), "share");
    csv(f, "run", "cpu_pressure", "", 0, cli_busy_psi(&r->busy), "share");
    csv(f, "run", "others_cpu", "", 0, cli_busy_others(&r->busy), "share");
    csv(f, "workload", "item_time", "", 0, r->item_us, "us");
    csv(f, "workload", "serial_time", "", 0, r->serial_seconds, "s");
    for (int i = 0; i < CMP_NMODELS; i++) {
        const cmp_model *m = &r->m[i];
        const char *n = m->name;
        csv(f, "overhead", "start_join_one_worker", n, 1, m->worker_us, "us");
        csv(f, "overhead", "start_stop_pool_of_1", n, 1, m->start_ms, "ms");
        for (int k = 0; k < m->nmethods; k++) {
            char metric[64];
            snprintf(metric, sizeof metric, "start_stop_pool_of_1_%s", m->methods[k].name);
            csv(f, "overhead", metric, n, 1, m->methods[k].status ? NAN : m->methods[k].start_ms, "ms");
            snprintf(metric, sizeof metric, "start_join_one_worker_%s", m->methods[k].name);
            csv(f, "overhead", metric, n, 1, m->methods[k].worker_us, "us");
        }
        csv(f, "overhead", "pool_ready", n, m->ready_workers, m->ready_ms, "ms");
        csv(f, "overhead", "pool_destroy", n, m->ready_workers, m->destroy_ms, "ms");
        csv(f, "memory", "idle_worker", n, m->ready_workers, m->idle_bytes, "bytes");
        csv(f, "memory", "idle_worker_private", n, m->ready_workers, m->idle_private_bytes, "bytes");
        csv(f, "tasks", "roundtrip", n, 1, m->roundtrip_us, "us");
        csv(f, "tasks", "roundtrip_handoff", n, 1, m->handoff_us, "us");
        csv(f, "tasks", "empty_submit_wait", n, 0, m->empty_per_s, "tasks/s");
        csv(f, "tasks", "empty_map", n, 0, m->map_per_s, "items/s");
        csv(f, "data", "transfer_1mib_copy", n, 1, m->xfer_copy_us, "us");
        csv(f, "data", "transfer_1mib_ref", n, 1, m->xfer_ref_us, "us");
        for (int k = 0; k < m->ncurve; k++) {
            csv(f, "scaling", "seconds", n, m->curve[k].workers, m->curve[k].seconds, "s");
            csv(f, "scaling", "speedup", n, m->curve[k].workers, m->curve[k].speedup, "x");
        }
        for (int k = 0; k < m->nio; k++)
            csv(f, "io", "throughput", n, m->io[k].workers, m->io[k].items_per_s, "tasks/s");
        if (m->fault.measured) {
            csv(f, "fault", "survived", n, 0, m->fault.survived, "bool");
            csv(f, "fault", "innocent_ok", n, 0, m->fault.innocent_ok, "tasks");
            csv(f, "fault", "innocent_total", n, 0, m->fault.innocent_total, "tasks");
            csv(f, "fault", "detect", n, 0, m->fault.detect_ms, "ms");
        }
    }
    for (int i = 0; i < r->io_view_n; i++) {
        const iov_result *io = &r->io_view[i];
        bool ok = r->io_view_status[i] == 0;
        char model[64];
        snprintf(model, sizeof model, "%s (%d waits)", iov_model_name(io->model), io->concurrency);
        csv(f, "io_view", "elapsed", model, ok ? io->threads : 0, ok ? io->elapsed_s : NAN, "s");
        csv(f, "io_view", "ratio_to_ideal", model, ok ? io->threads : 0, ok ? io->ratio : NAN, "x");
        csv(f, "io_view", "rss_per_wait", model, ok ? io->threads : 0, ok ? (double)io->rss_per_wait : NAN,
            "bytes");
        csv(f, "io_view", "cpu", model, ok ? io->threads : 0, ok ? io->cpu_s : NAN, "s");
    }
    csv(f, "recommendation", r->m[r->rec.model].name, r->m[r->rec.model].name, r->rec.workers, r->rec.speedup,
        "x");
    if (r->task)
        task_report_csv(f, r->task);
    return ferror(f) ? -1 : 0;
}
