/*
 * plot.c -- `crew compare --plot FILE.svg`: speedup against worker count,
 * one series per model, plus the ideal (min(workers, CPUs)) as a dashed line.
 *
 * A self-contained SVG 1.1 document (no script, no external font or CSS), so
 * a browser, an image viewer or a README renders it as is. Each series is a
 * <g id="series-threads"> / <g id="series-processes"> group: a polyline and
 * one marker per measured point with a <title> tooltip giving the figure.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <string.h>

enum { W = 780, H = 440, ML = 70, MR = 210, MT = 50, MB = 60 };

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static double nice_step(double range, int ticks)
{
    double raw = range / ticks, mag = pow(10, floor(log10(raw))), n = raw / mag;
    double step = n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10;
    return step * mag;
}

/* The plotting area: the axes' ranges and ticks, and where a point lands. */
typedef struct frame {
    double x0, x1, xstep;   /* workers */
    double ymax, ystep;     /* speedup */
    int pw, ph;             /* the plot's width and height in pixels */
} frame;

static double px(const frame *fr, double w) { return ML + (w - fr->x0) / (fr->x1 - fr->x0) * fr->pw; }
static double py(const frame *fr, double s) { return MT + fr->ph - s / fr->ymax * fr->ph; }

/* x from 1 to the most workers measured; y from 0 to a tenth above the best
 * speedup (or the CPU count, when the ideal line reaches it), in round
 * steps. */
static frame frame_of(const cmp_results *r)
{
    int xmax = 1;
    double ymax = 1.0;
    for (int i = 0; i < CMP_NMODELS; i++)
        for (int k = 0; k < r->m[i].ncurve; k++) {
            const cmp_point *p = &r->m[i].curve[k];
            if (p->workers > xmax)
                xmax = p->workers;
            if (isfinite(p->speedup) && p->speedup > ymax)
                ymax = p->speedup;
        }
    if (r->cpus > ymax && r->cpus <= xmax)
        ymax = r->cpus;
    ymax *= 1.1;
    frame fr;
    fr.xstep = nice_step(xmax > 1 ? xmax - 1 : 1, 8);
    if (fr.xstep < 1)
        fr.xstep = 1;
    fr.ystep = nice_step(ymax, 6);
    fr.ymax = ceil(ymax / fr.ystep) * fr.ystep;
    fr.pw = W - ML - MR;
    fr.ph = H - MT - MB;
    fr.x0 = 1;
    fr.x1 = xmax > 1 ? xmax : 2;
    return fr;
}

static void svg_head(FILE *f, const cmp_results *r)
{
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n",
            W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" font-weight=\"bold\">", ML);
    char title[256];
    snprintf(title, sizeof title, "crew compare: %s speedup vs workers (%d CPUs, crew %s)", r->workload, r->cpus,
             r->crew_version);
    xml_text(f, title);
    fputs("</text>\n", f);
}

/* Grid, ticks, axes and their labels. */
static void svg_axes(FILE *f, const frame *fr)
{
    fputs("<g id=\"axes\" stroke=\"#ccc\" stroke-width=\"1\">\n", f);
    for (double y = 0; y <= fr->ymax + 1e-9; y += fr->ystep)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", ML, py(fr, y), ML + fr->pw, py(fr, y));
    for (double x = fr->x0; x <= fr->x1 + 1e-9; x += fr->xstep)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", px(fr, x), MT, px(fr, x), MT + fr->ph);
    fputs("</g>\n<g fill=\"#333\">\n", f);
    for (double y = 0; y <= fr->ymax + 1e-9; y += fr->ystep)
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ML - 8, py(fr, y) + 4, y);
    for (double x = fr->x0; x <= fr->x1 + 1e-9; x += fr->xstep)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px(fr, x), MT + fr->ph + 20, x);
    fputs("</g>\n", f);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", ML, MT + fr->ph, ML + fr->pw,
            MT + fr->ph);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", ML, MT, ML, MT + fr->ph);
    fprintf(f, "<text id=\"x-label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">workers</text>\n", ML + fr->pw / 2,
            H - 15);
    fprintf(f,
            "<text id=\"y-label\" x=\"20\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 20 %d)\">"
            "speedup over one thread, no pool (x)</text>\n",
            MT + fr->ph / 2, MT + fr->ph / 2);
}

static const char *const colour[CMP_NMODELS] = {"#1f77b4", "#d62728"};

/* The ideal, min(workers, CPUs), dashed; then each model's polyline and
 * one marker per measured point, with its figure as a tooltip. */
static void svg_series(FILE *f, const frame *fr, const cmp_results *r)
{
    fputs("<g id=\"series-ideal\"><polyline fill=\"none\" stroke=\"#999\" stroke-dasharray=\"6 4\" points=\"", f);
    for (int w = 1; w <= (int)fr->x1; w++)
        fprintf(f, "%.1f,%.1f ", px(fr, w), py(fr, w < r->cpus ? w : r->cpus));
    fputs("\"/></g>\n", f);
    for (int i = 0; i < CMP_NMODELS; i++) {
        const cmp_model *m = &r->m[i];
        fprintf(f, "<g id=\"series-%s\" stroke=\"%s\" fill=\"%s\">\n", m->name, colour[i], colour[i]);
        fputs("<polyline fill=\"none\" stroke-width=\"2.5\" points=\"", f);
        for (int k = 0; k < m->ncurve; k++)
            if (isfinite(m->curve[k].speedup))
                fprintf(f, "%.1f,%.1f ", px(fr, m->curve[k].workers), py(fr, m->curve[k].speedup));
        fputs("\"/>\n", f);
        for (int k = 0; k < m->ncurve; k++) {
            const cmp_point *p = &m->curve[k];
            if (!isfinite(p->speedup))
                continue;
            if (i == CMP_THREADS)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\">", px(fr, p->workers), py(fr, p->speedup));
            else
                fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\">", px(fr, p->workers) - 4.5,
                        py(fr, p->speedup) - 4.5);
            fprintf(f, "<title>%s, %d workers: %.2fx (%.4g s; rounds %.2f-%.2fx)</title>", m->name, p->workers,
                    p->speedup, p->seconds, p->lo, p->hi);
            fputs(i == CMP_THREADS ? "</circle>\n" : "</rect>\n", f);
            if (p->hi > p->lo && p->lo > 0) /* the spread of its rounds */
                fprintf(f, "<line class=\"spread\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "stroke-width=\"1.5\"/>\n", px(fr, p->workers), py(fr, p->lo), px(fr, p->workers),
                        py(fr, p->hi));
            if (i == r->rec.model && p->workers == r->rec.workers && isfinite(r->rec.speedup))
                fprintf(f, "<g id=\"recommended\"><circle cx=\"%.1f\" cy=\"%.1f\" r=\"11\" fill=\"none\" "
                           "stroke=\"#2ca02c\" stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\" fill=\"#2ca02c\" "
                           "stroke=\"none\">recommended</text></g>\n", px(fr, p->workers), py(fr, p->speedup),
                        px(fr, p->workers) + 12, py(fr, p->speedup) - 12);
        }
        fputs("</g>\n", f);
    }
}

static void svg_legend(FILE *f, const frame *fr, const cmp_results *r)
{
    int lx = ML + fr->pw + 20, ly = MT + 10;
    fputs("<g id=\"legend\">\n", f);
    for (int i = 0; i < CMP_NMODELS; i++) {
        int y = ly + i * 24;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\"/>", lx, y,
                lx + 28, y, colour[i]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", lx + 36, y + 4);
        if (i == CMP_PROCESSES && r->m[i].method) {
            char name[96];
            snprintf(name, sizeof name, "processes (%s)", r->m[i].method);
            xml_text(f, name);
        } else {
            xml_text(f, r->m[i].name);
        }
        fputs("</text>\n", f);
    }
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"6 4\"/>"
            "<text x=\"%d\" y=\"%d\">ideal</text>\n",
            lx, ly + 48, lx + 28, ly + 48, lx + 36, ly + 52);
    fputs("</g>\n</svg>\n", f);
}

int report_svg(const char *path, const cmp_results *r)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("cannot write plot %s: %s", path, strerror(errno));
        return CLI_EXIT_OUTPUT;
    }
    frame fr = frame_of(r);
    svg_head(f, r);
    svg_axes(f, &fr);
    svg_series(f, &fr, r);
    svg_legend(f, &fr, r);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        cli_error("cannot write plot %s", path);
        return CLI_EXIT_OUTPUT;
    }
    return CLI_EXIT_OK;
}
