/*
 * report_task.c -- what `crew compare --task` prints: the table (at most
 * 100 columns), and the "task" object of --json / the task lines of --csv.
 *
 * DESIGN
 *  Only printing: the figures come from the search (search.c), the choice
 *  from advice.c. A candidate that was ruled out keeps its figures and says
 *  why in its verdict; a run whose task could not be measured at all still
 *  prints what it measured (the overheads, the reference's outcomes) with
 *  the failure as data. Long sentences are wrapped to 100 columns.
 */
#include "search.h"

#include <math.h>
#include <string.h>


static void pad_to(FILE *f, const char *s, int w)
{
    fputs(s, f);
    for (int i = cli_cols(s); i < w; i++)
        fputc(' ', f);
}

static void verdict(char *buf, size_t n, const cmp_cand *c, bool chosen)
{
    char sig[16];
    switch (c->state) {
    case CAND_LIVE:
    case CAND_OUT:
        snprintf(buf, n, "%s", chosen ? "ok  <- recommended" : c->state == CAND_OUT ? "ok, slower" : "ok");
        break;
    case CAND_WRONG:
        if (c->check.wrong)
            snprintf(buf, n, "WRONG: %llu/%llu items", (unsigned long long)c->check.wrong,
                     (unsigned long long)c->check.checked);
        else
            snprintf(buf, n, "not thread-safe");
        break;
    case CAND_CRASHED:
        if (c->died_signal) {
            const char *a = sigabbrev_np(c->died_signal);
            snprintf(sig, sizeof sig, "SIG%s", a ? a : "?");
            snprintf(buf, n, "DIED (%s)", sig);
        } else if (c->died_code)
            snprintf(buf, n, "DIED (exit %d)", c->died_code);
        else
            snprintf(buf, n, "crashes kill it");
        break;
    case CAND_HUNG: snprintf(buf, n, "HUNG"); break;
    case CAND_IMPOSSIBLE: snprintf(buf, n, "impossible figure"); break;
    case CAND_LEAKS: snprintf(buf, n, "memory grows"); break;
    case CAND_FAILED: snprintf(buf, n, "failed to run"); break;
    case CAND_SKIPPED: snprintf(buf, n, "not measured"); break;
    }
}

static void task_header(FILE *f, const cmp_results *r, const cmp_task_report *tr)
{
    const cmp_task *t = tr->task;
    const cmp_profile *p = &tr->search->prof;
    char a[32], b[32], line[600];
    fprintf(f, "crew compare: your task on this machine (%d CPU%s, Linux %s, crew %s)\n", r->cpus,
            r->cpus == 1 ? "" : "s", r->kernel, r->crew_version);
    snprintf(line, sizeof line, "%s, %zu items (%s)", r->task_spec, t->n, t->items.desc);
    cli_wrap(f, "task: ", 6, line);
    if (p->n == 0)
        return;
    snprintf(line, sizeof line,
             "%s each alone; it %s (CPU time %.0f%% of its time); results up to %s; %s; %s%s",
             fmt_time_s(a, sizeof a, p->item_s), p->waiting ? "waits" : "computes", p->cpu_ratio * 100,
             fmt_bytes(b, sizeof b, p->max_len), p->deterministic ? "deterministic" : "NOT deterministic",
             p->leaks ? "memory grows " : "no memory growth", p->leaks ? fmt_bytes(a, sizeof a, p->leak_per_item) : "");
    if (p->leaks)
        snprintf(line + strlen(line), sizeof line - strlen(line), " per item");
    cli_wrap(f, "profile: ", 9, line);
    if (p->crashed || p->failed || p->hung) {
        snprintf(line, sizeof line, "run alone, %llu of %zu items crashed, %llu failed, %llu hung",
                 (unsigned long long)p->crashed, p->n, (unsigned long long)p->failed, (unsigned long long)p->hung);
        cli_wrap(f, "outcomes: ", 10, line);
    }
}

static void overheads(FILE *f, const cmp_results *r)
{
    const cmp_model *th = &r->m[CMP_THREADS], *pr = &r->m[CMP_PROCESSES];
    char a[64], b[64], x[32], y[32];
    fprintf(f, "\n%-34s %-22s processes (%s)\n", "overheads", "threads", pr->method ? pr->method : "default");
    for (int i = 0; i < 80; i++)
        fputc('-', f);
    fputc('\n', f);
#define ROW(label, av, bv) (pad_to(f, label, 35), pad_to(f, av, 23), fprintf(f, "%s\n", bv))
    ROW("start + stop, pool of 1", fmt_time_s(a, sizeof a, th->start_ms / 1e3), fmt_time_s(b, sizeof b, pr->start_ms / 1e3));
    snprintf(a, sizeof a, "%s %s", fmt_bytes(x, sizeof x, th->idle_bytes), th->idle_metric ? th->idle_metric : "");
    snprintf(b, sizeof b, "%s %s", fmt_bytes(y, sizeof y, pr->idle_bytes), pr->idle_metric ? pr->idle_metric : "");
    ROW("memory per idle worker", a, b);
    ROW("round trip, one tiny task", fmt_time_s(a, sizeof a, th->roundtrip_us / 1e6),
        fmt_time_s(b, sizeof b, pr->roundtrip_us / 1e6));
    ROW("  ... handed to a worker", fmt_time_s(a, sizeof a, th->handoff_us / 1e6),
        fmt_time_s(b, sizeof b, pr->handoff_us / 1e6));
    ROW("1 MiB there and back (copy)", fmt_time_s(a, sizeof a, th->xfer_copy_us / 1e6),
        fmt_time_s(b, sizeof b, pr->xfer_copy_us / 1e6));
    ROW("1 MiB by reference", fmt_time_s(a, sizeof a, th->xfer_ref_us / 1e6),
        fmt_time_s(b, sizeof b, pr->xfer_ref_us / 1e6));
#undef ROW
}

static void candidates(FILE *f, const cmp_task_report *tr)
{
    const cmp_search *s = tr->search;
    fprintf(f, "\nconfigurations measured (speedup against 1 worker with no pool; median and spread of its "
               "runs)\n");
    fprintf(f, "  %-40s %8s  %-13s %4s  %s\n", "configuration", "speedup", "spread", "runs", "verdict");
    for (int i = 0; i < s->nc; i++) {
        const cmp_cand *c = &s->c[i];
        char name[64], sp[16], spread[32], v[48];
        config_short(name, sizeof name, &c->cfg);
        if (isfinite(c->med))
            snprintf(sp, sizeof sp, "%.2fx", c->med);
        else
            snprintf(sp, sizeof sp, "-");
        if (isfinite(c->lo) && c->ns > 1)
            snprintf(spread, sizeof spread, "%.2f-%.2fx", c->lo, c->hi);
        else
            snprintf(spread, sizeof spread, "-");
        verdict(v, sizeof v, c, tr->advice && tr->advice->best == i);
        fprintf(f, "  %-40s %8s  %-13s %4d  %s%s\n", name, sp, spread, c->ns, v, c->flagged ? " (re-measured)" : "");
    }
}

int task_report_table(FILE *f, const cmp_results *r, const cmp_task_report *tr)
{
    task_header(f, r, tr);
    const cmp_profile *p = &tr->search->prof;
    if (cli_busy_is(&p->machine)) {
        char note[300], t[200];
        snprintf(note, sizeof note, "%s -- the times are noisy",
                 cli_busy_text(t, sizeof t, &p->machine, "the serial reference"));
        cli_wrap(f, "note: ", 6, note);
    }
    overheads(f, r);
    if (tr->search->nc)
        candidates(f, tr);
    fputc('\n', f);
    if (tr->failure[0]) {
        cli_wrap(f, "no recommendation: ", 2, tr->failure);
    } else if (tr->advice) {
        cli_wrap(f, "recommendation: ", 2, tr->advice->headline);
        for (int i = 0; i < tr->advice->nreasons; i++)
            cli_wrap(f, "  - ", 4, tr->advice->reasons[i]);
        if (tr->advice->found) {
            fprintf(f, "\nin C:\n");
            for (const char *l = tr->advice->snippet; *l;) {
                const char *e = strchr(l, '\n');
                size_t n = e ? (size_t)(e - l) : strlen(l);
                fprintf(f, "    %.*s\n", (int)n, l);
                l += n + (e ? 1 : 0);
            }
        }
    }
    fprintf(f, "\n(measured in %.1f s; `crew compare --json` for every figure)\n", r->elapsed_s);
    return ferror(f) ? -1 : 0;
}

/* ---------------------------------------------------------------- JSON */

static const char *model_key(int m) { return m == CMP_THREADS ? "threads" : m == CMP_PROCESSES ? "processes" : "serial"; }

static void json_config(FILE *f, const cmp_config *c)
{
    char name[160];
    fprintf(f, "{\"model\": \"%s\", \"workers\": %d, \"dispatch\": \"%s\", \"chunk_size\": %zu, \"args\": \"%s\", "
               "\"max_tasks_per_worker\": %u, \"max_worker_memory\": %zu, \"start_method\": \"%s\", \"name\": ",
            model_key(c->model), c->workers, c->dispatch == CMP_MAP ? "map" : "futures", c->chunk,
            c->args == CMP_BYREF ? "by_reference" : "copy", c->recycle_tasks, c->recycle_memory,
            c->model != CMP_PROCESSES ? "none"
            : c->start_method == CREW_START_FORK  ? "fork"
            : c->start_method == CREW_START_SPAWN ? "spawn"
                                                  : "forkserver");
    cli_json_str(f, config_name(name, sizeof name, c));
    fputc('}', f);
}

static void json_profile(FILE *f, const cmp_task_report *tr)
{
    const cmp_profile *p = &tr->search->prof;
    fprintf(f, "    \"profile\": {\"items\": %zu, \"item_s\": ", tr->task->n);
    cli_json_num(f, p->item_s);
    fputs(", \"serial_s\": ", f);
    cli_json_num(f, p->serial_s);
    fputs(", \"cpu_ratio\": ", f);
    cli_json_num(f, p->cpu_ratio);
    fprintf(f, ", \"waits\": %s, \"busy\": ", p->waiting ? "true" : "false");
    cli_json_num(f, p->busy);
    fputs(", \"cpu_pressure\": ", f);
    cli_json_num(f, p->psi_some);
    fputs(", \"others_cpu\": ", f);
    cli_json_num(f, cli_busy_others(&p->machine));
    fprintf(f, ", \"leaks\": %s, \"memory_growth_per_item\": ", p->leaks ? "true" : "false");
    cli_json_num(f, p->leak_per_item);
    fprintf(f, ", \"arg_bytes\": %zu, \"result_bytes\": %u, \"deterministic\": %s, \"ok\": %llu, \"failed\": %llu, "
               "\"crashed\": %llu, \"hung\": %llu, \"crash_signal\": %d},\n",
            p->arg_len, p->max_len, p->deterministic ? "true" : "false", (unsigned long long)p->ok,
            (unsigned long long)p->failed, (unsigned long long)p->crashed, (unsigned long long)p->hung,
            p->crash_signal);
}

static void json_cand(FILE *f, const cmp_cand *c)
{
    fputs("{\"config\": ", f);
    json_config(f, &c->cfg);
    fputs(", \"state\": ", f);
    cli_json_str(f, cand_state_key(c->state));
    fputs(", \"why\": ", f);
    cli_json_str(f, c->why[0] ? c->why : NULL);
    fputs(", \"speedup\": ", f);
    cli_json_num(f, c->med);
    fputs(", \"speedup_min\": ", f);
    cli_json_num(f, c->lo);
    fputs(", \"speedup_max\": ", f);
    cli_json_num(f, c->hi);
    fputs(", \"noise\": ", f);
    cli_json_num(f, c->noise);
    fputs(", \"items_per_s\": ", f);
    cli_json_num(f, c->items_per_s);
    fprintf(f, ", \"runs\": %d, \"trials\": %d, \"remeasured\": %s, \"seconds\": [", c->ns, c->trials,
            c->flagged ? "true" : "false");
    for (int i = 0; i < c->ns; i++) {
        if (i)
            fputs(", ", f);
        cli_json_num(f, c->seconds[i]);
    }
    fprintf(f, "], \"checked\": %llu, \"wrong\": %llu, \"crashed_items\": %llu, \"died_signal\": %d, "
               "\"died_exit_code\": %d, \"memory_growth_per_item\": ",
            (unsigned long long)c->check.checked, (unsigned long long)c->check.wrong,
            (unsigned long long)c->check.crashed, c->died_signal, c->died_code);
    cli_json_num(f, c->mem_per_item);
    fputc('}', f);
}

void task_report_json(FILE *f, const cmp_task_report *tr)
{
    const cmp_search *s = tr->search;
    const cmp_advice *a = tr->advice;
    fputs(",\n  \"task\": {\n    \"failure\": ", f);
    cli_json_str(f, tr->failure[0] ? tr->failure : NULL);
    fprintf(f, ",\n    \"exit_status\": %d,\n    \"items_source\": ", tr->exit);
    cli_json_str(f, tr->task->items.desc);
    fprintf(f, ",\n    \"index_prefix\": %s,\n", tr->task->items.index ? "true" : "false");
    json_profile(f, tr);
    fprintf(f, "    \"search\": {\"budget_s\": ");
    cli_json_num(f, s->budget);
    fprintf(f, ", \"rungs\": %d, \"max_workers\": %d, \"max_workers_why\": ", s->rungs, s->cap_workers);
    cli_json_str(f, s->cap_why);
    fprintf(f, ", \"noise_floor\": ");
    cli_json_num(f, s->noise_floor);
    fprintf(f, ", \"thread_unsafe\": %s, \"threads_crash\": %s, \"candidates\": [",
            s->thread_unsafe ? "true" : "false", s->threads_crash ? "true" : "false");
    for (int i = 0; i < s->nc; i++) {
        fputs(i ? ",\n      " : "\n      ", f);
        json_cand(f, &s->c[i]);
    }
    fputs("]},\n    \"advice\": ", f);
    if (!a || !a->found) {
        fputs("null\n  }", f);
        return;
    }
    fputs("{\"config\": ", f);
    json_config(f, &s->c[a->best].cfg);
    fputs(", \"speedup\": ", f);
    cli_json_num(f, s->c[a->best].med);
    fputs(", \"noise\": ", f);
    cli_json_num(f, a->noise);
    fputs(", \"tie_with\": ", f);
    if (a->tie >= 0)
        json_config(f, &s->c[a->tie].cfg);
    else
        fputs("null", f);
    fputs(", \"snippet\": ", f);
    cli_json_str(f, a->snippet);
    fputs("}\n  }", f);
}

void task_report_csv(FILE *f, const cmp_task_report *tr)
{
    const cmp_search *s = tr->search;
    for (int i = 0; i < s->nc; i++) {
        const cmp_cand *c = &s->c[i];
        char name[64];
        config_short(name, sizeof name, &c->cfg);
        for (char *p = name; *p; p++)
            if (*p == ',')
                *p = ';';
        fprintf(f, "search,speedup,%s,%d,", name, c->cfg.workers);
        if (isfinite(c->med))
            fprintf(f, "%.6g", c->med);
        fprintf(f, ",x\nsearch,state_%s,%s,%d,1,bool\n", cand_state_key(c->state), name, c->cfg.workers);
        fprintf(f, "search,wrong_items,%s,%d,%llu,items\n", name, c->cfg.workers,
                (unsigned long long)c->check.wrong);
    }
    if (tr->advice && tr->advice->found) {
        char name[64];
        config_short(name, sizeof name, &s->c[tr->advice->best].cfg);
        fprintf(f, "advice,speedup,%s,%d,%.6g,x\n", name, s->c[tr->advice->best].cfg.workers,
                s->c[tr->advice->best].med);
    }
    if (tr->failure[0])
        fprintf(f, "task,failure,,,%d,exit_status\n", tr->exit);
}
