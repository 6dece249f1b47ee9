/*
 * plot_task.c -- `crew compare --task ... --plot FILE.svg`: the search as
 * two charts side by side.
 *
 *  left  ("the CPU view"): speedup against workers, per model the best
 *        configuration measured at each worker count, each point with its
 *        spread (a bar from the slowest to the fastest run), the ideal
 *        min(workers, CPUs) dashed;
 *  right ("the waiting view"): items per second against workers on a log
 *        scale, where a task that waits keeps climbing past the CPU count.
 *  The recommended configuration is ringed in both (id="recommended").
 *  A standalone SVG 1.1 document, as plot.c's: no script, no external
 *  resources; series are <g id="series-threads">, <g id="series-processes">
 *  (left) and <g id="waiting-threads">, <g id="waiting-processes"> (right).
 */
#include "search.h"

#include <errno.h>
#include <math.h>
#include <string.h>

enum { PW = 400, PH = 300, TOP = 60, LEFT = 70, GAP = 110, SVG_W = LEFT + PW + GAP + PW + 40, SVG_H = TOP + PH + 110 };

typedef struct panel {
    int x0;             /* left edge of the plot area */
    bool logx;
    double xmax, ymax;
} panel;

static double px(const panel *p, double w)
{
    if (p->logx)
        return p->x0 + log2(w) / fmax(log2(p->xmax), 1) * PW;
    return p->x0 + (w - 1) / fmax(p->xmax - 1, 1) * PW;
}

static double py(const panel *p, double v) { return TOP + PH - v / p->ymax * PH; }

static double nice(double v)
{
    double m = pow(10, floor(log10(v))), n = v / m;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * m;
}

/* The best usable-or-not measured candidate per model and worker count. */
static int points(const cmp_search *s, int model, const cmp_cand **out)
{
    int n = 0;
    for (int i = 0; i < s->nc; i++) {
        const cmp_cand *c = &s->c[i];
        if (c->cfg.model != model || !isfinite(c->med))
            continue;
        int k = 0;
        while (k < n && out[k]->cfg.workers != c->cfg.workers)
            k++;
        if (k == n)
            out[n++] = c;
        else if (c->med > out[k]->med)
            out[k] = c;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j]->cfg.workers < out[j - 1]->cfg.workers; j--) {
            const cmp_cand *x = out[j];
            out[j] = out[j - 1];
            out[j - 1] = x;
        }
    return n;
}

static void axes(FILE *f, const panel *p, const char *xlabel, const char *ylabel, const char *id)
{
    double ystep = nice(p->ymax / 5);
    fputs("<g stroke=\"#ddd\">\n", f);
    for (double y = 0; y <= p->ymax + 1e-9; y += ystep)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", p->x0, py(p, y), p->x0 + PW, py(p, y));
    fputs("</g>\n<g fill=\"#333\" font-size=\"12\">\n", f);
    for (double y = 0; y <= p->ymax + 1e-9; y += ystep)
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", p->x0 - 6, py(p, y) + 4, y);
    if (p->logx)
        for (double w = 1; w <= p->xmax * 1.001; w *= 2)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px(p, w), TOP + PH + 18, w);
    else
        for (double w = 1; w <= p->xmax + 1e-9; w += fmax(1, nice(p->xmax / 8)))
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px(p, w), TOP + PH + 18, w);
    fputs("</g>\n", f);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", p->x0, TOP,
            PW, PH);
    fprintf(f, "<text id=\"%s-x-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", id, p->x0 + PW / 2,
            TOP + PH + 40, xlabel);
    fprintf(f, "<text id=\"%s-y-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">"
               "%s</text>\n", id, p->x0 - 48, TOP + PH / 2, p->x0 - 48, TOP + PH / 2, ylabel);
}

static void series(FILE *f, const panel *p, const cmp_search *s, int model, bool speed, const cmp_cand *rec)
{
    static const char *colour[2] = {"#1f77b4", "#d62728"};
    const cmp_cand *pt[CMP_MAX_CANDIDATES];
    int n = points(s, model, pt);
    double k = speed ? 1 : s->item_s > 0 ? 1 / s->item_s : 1;
    fprintf(f, "<g id=\"%s-%s\" stroke=\"%s\" fill=\"%s\">\n<polyline fill=\"none\" stroke-width=\"2\" points=\"",
            speed ? "series" : "waiting", model == CMP_THREADS ? "threads" : "processes", colour[model],
            colour[model]);
    for (int i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", px(p, pt[i]->cfg.workers), py(p, pt[i]->med * k));
    fputs("\"/>\n", f);
    for (int i = 0; i < n; i++) {
        const cmp_cand *c = pt[i];
        double x = px(p, c->cfg.workers);
        if (isfinite(c->lo) && c->ns > 1) /* the spread of its runs */
            fprintf(f, "<line class=\"spread\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"1.5\"/>\n",
                    x, py(p, c->lo * k), x, py(p, c->hi * k));
        char name[100];
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\"%s><title>%s: %.2fx (%.2f-%.2fx, %d runs), %s</title>"
                   "</circle>\n", x, py(p, c->med * k), c->state == CAND_LIVE || c->state == CAND_OUT ? "" :
                   " fill=\"white\"", config_name(name, sizeof name, &c->cfg), c->med, c->lo, c->hi, c->ns,
                cand_state_name(c->state));
    }
    fputs("</g>\n", f);
    if (rec && rec->cfg.model == model)
        fprintf(f, "<g id=\"recommended%s\"><circle cx=\"%.1f\" cy=\"%.1f\" r=\"10\" fill=\"none\" stroke=\"#2ca02c\" "
                   "stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\" fill=\"#2ca02c\">recommended</text></g>\n",
                speed ? "" : "-waiting", px(p, rec->cfg.workers), py(p, rec->med * k), px(p, rec->cfg.workers) + 12,
                py(p, rec->med * k) - 12);
}

int task_report_svg(const char *path, const cmp_results *r, const cmp_task_report *tr)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("cannot write plot %s: %s", path, strerror(errno));
        return CLI_EXIT_OUTPUT;
    }
    const cmp_search *s = tr->search;
    const cmp_cand *rec = tr->advice && tr->advice->found ? &s->c[tr->advice->best] : NULL;
    panel left = {LEFT, false, 2, 1}, right = {LEFT + PW + GAP, true, 2, 1};
    for (int i = 0; i < s->nc; i++) {
        const cmp_cand *c = &s->c[i];
        if (!isfinite(c->med))
            continue;
        left.xmax = fmax(left.xmax, c->cfg.workers);
        left.ymax = fmax(left.ymax, isfinite(c->hi) ? c->hi : c->med);
        right.ymax = fmax(right.ymax, (isfinite(c->hi) ? c->hi : c->med) / fmax(s->item_s, 1e-12));
    }
    left.logx = left.xmax > 16;
    right.xmax = left.xmax;
    left.ymax = fmax(left.ymax, fmin(r->cpus, left.xmax)) * 1.1;
    right.ymax *= 1.1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
               "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n"
               "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", SVG_W, SVG_H, SVG_W, SVG_H, SVG_W,
            SVG_H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" font-weight=\"bold\">crew compare: your task on %d CPUs "
               "(crew %s)</text>\n", LEFT, r->cpus, r->crew_version);
    axes(f, &left, "workers", "speedup over one thread, no pool (x)", "cpu");
    axes(f, &right, "workers (log scale)", "items per second", "waiting");
    fprintf(f, "<text id=\"x-label\" x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#666\">bars: slowest to fastest run; "
               "hollow: ruled out (wrong, crashed, leaking...)</text>\n<text id=\"y-label\" x=\"%d\" y=\"50\" "
               "font-size=\"12\">the CPU view</text><text x=\"%d\" y=\"50\" font-size=\"12\">the waiting view</text>\n",
            LEFT, SVG_H - 20, LEFT, LEFT + PW + GAP);
    fputs("<g id=\"series-ideal\"><polyline fill=\"none\" stroke=\"#999\" stroke-dasharray=\"6 4\" points=\"", f);
    for (double w = 1; w <= left.xmax * 1.0001; w = left.logx ? w * 2 : w + 1)
        fprintf(f, "%.1f,%.1f ", px(&left, w), py(&left, fmin(w, r->cpus)));
    fputs("\"/></g>\n", f);
    for (int m = 0; m < CMP_NMODELS; m++) {
        series(f, &left, s, m, true, rec);
        series(f, &right, s, m, false, rec);
    }
    fprintf(f, "<g id=\"legend\" font-size=\"12\"><circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"#1f77b4\"/>"
               "<text x=\"%d\" y=\"%d\">threads</text><circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"#d62728\"/>"
               "<text x=\"%d\" y=\"%d\">processes</text></g>\n</svg>\n",
            LEFT + 300, SVG_H - 52, LEFT + 310, SVG_H - 48, LEFT + 400, SVG_H - 52, LEFT + 410, SVG_H - 48);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        cli_error("cannot write plot %s", path);
        return CLI_EXIT_OUTPUT;
    }
    return CLI_EXIT_OK;
}
