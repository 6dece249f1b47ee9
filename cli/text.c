/*
 * text.c -- what the reports share about the machine and the page: how
 * busy the CPUs were, as the kernel counts it, and text wrapped to the
 * 100 columns every report fits in.
 *
 * DESIGN
 *  A busy machine is read from compare's own measurements, never from the
 *  load average (compare's own pools push that up): the run-queue delay of
 *  the thread that runs the serial baselines (/proc/thread-self/schedstat:
 *  time on a CPU, time waiting for one), and /proc/pressure/cpu over the
 *  same spans. While a serial pass runs, compare runs one thread, so any
 *  delay it sees is other programs'.
 *  Widths are display columns of UTF-8 text (µ is two bytes, one column).
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool cli_schedstat(double *on_cpu, double *waited)
{
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    unsigned long long a = 0, b = 0;
    bool ok = f && fscanf(f, "%llu %llu", &a, &b) == 2;
    if (f)
        fclose(f);
    *on_cpu = a * 1e-9;
    *waited = b * 1e-9;
    return ok;
}

double cli_psi_total(void)
{
    FILE *f = fopen("/proc/pressure/cpu", "r");
    double v = NAN;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "some ", 5) == 0) {
            const char *p = strstr(line, "total=");
            if (p)
                v = strtod(p + 6, NULL) / 1e6;
        }
    if (f)
        fclose(f);
    return v;
}

void cli_busy_begin(cli_busy_span *s)
{
    s->ok = cli_schedstat(&s->cpu0, &s->wait0);
    s->psi0 = cli_psi_total();
    s->t0 = crew_now();
}

void cli_busy_end(const cli_busy_span *s, cli_busy *b)
{
    double c1, w1, psi1 = cli_psi_total();
    bool ok = s->ok && cli_schedstat(&c1, &w1);
    double t1 = crew_now(); /* after the reads: the span covers what they counted */
    if (ok) {
        b->wall += t1 - s->t0;
        b->waited += fmin(w1 - s->wait0, t1 - s->t0);
    }
    if (isfinite(s->psi0) && isfinite(psi1)) {
        b->psi_wall += t1 - s->t0;
        b->psi += psi1 - s->psi0;
    }
}

double cli_busy_share(const cli_busy *b) { return b->wall > 0 ? b->waited / b->wall : NAN; }
double cli_busy_psi(const cli_busy *b) { return b->psi_wall > 0 ? b->psi / b->psi_wall : NAN; }

int cli_cols(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

void cli_wrap(FILE *f, const char *first, int indent, const char *text)
{
    int col = cli_cols(first);
    fputs(first, f);
    bool line_start = true;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, " ");
        /* a number and its unit stay on one line: "560 µs", "12.0 KiB" */
        if (len && p[len] == ' ' && p[len - 1] >= '0' && p[len - 1] <= '9') {
            static const char *const units[] = {"ns", "µs", "ms", "s", "B", "KiB", "MiB", "GiB", "/s", "k/s", "M/s"};
            const char *u = p + len + 1;
            size_t ul = strcspn(u, " ,;:)");
            for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
                if (strlen(units[k]) == ul && strncmp(u, units[k], ul) == 0) {
                    len += 1 + strcspn(u, " ");
                    break;
                }
        }
        char word[512];
        snprintf(word, sizeof word, "%.*s", (int)(len < sizeof word ? len : sizeof word - 1), p);
        int w = cli_cols(word);
        if (!line_start && col + 1 + w > CLI_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
            line_start = true;
        }
        if (!line_start) {
            fputc(' ', f);
            col++;
        }
        fputs(word, f);
        col += w;
        line_start = false;
        p += len;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}
