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
 *  delay it sees is other programs'; and the CPU time the whole machine
 *  spent (/proc/stat) less this process's own (getrusage) over the same
 *  spans is other programs' too -- which a run-queue delay alone misses on
 *  a machine where one CPU is taken and the serial thread has the other.
 *  Widths are display columns of UTF-8 text (µ is two bytes, one column).
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

/* CPU time the whole machine spent not idle, from /proc/stat, seconds. */
static bool machine_busy(double *s)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    bool ok = f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                          &v[5], &v[6], &v[7]) == 8;
    if (f)
        fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    /* user nice system [idle iowait] irq softirq steal */
    *s = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)(hz > 0 ? hz : 100);
    return ok;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

void cli_busy_begin(cli_busy_span *s)
{
    s->ok = cli_schedstat(&s->cpu0, &s->wait0);
    s->psi0 = cli_psi_total();
    s->stat_ok = machine_busy(&s->stat0);
    s->self0 = self_cpu();
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
    double m1, self1 = self_cpu();
    if (s->stat_ok && machine_busy(&m1)) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        b->others += fmax(0, (m1 - s->stat0) - (self1 - s->self0));
        b->cpu_wall += (t1 - s->t0) * (double)(n > 0 ? n : 1);
    }
}

double cli_busy_others(const cli_busy *b) { return b->cpu_wall > 0 ? b->others / b->cpu_wall : NAN; }

bool cli_busy_is(const cli_busy *b) { return cli_busy_share(b) > 0.10 || cli_busy_others(b) > 0.25; }

const char *cli_busy_text(char *buf, size_t n, const cli_busy *b, const char *what)
{
    double o = cli_busy_others(b), w = cli_busy_share(b), p = cli_busy_psi(b);
    snprintf(buf, n, "other programs used %.0f%% of the CPUs while %s ran, which waited %.0f%% of its time for "
                     "one (CPU pressure %.0f%%)",
             isfinite(o) ? o * 100 : 0.0, what, isfinite(w) ? w * 100 : 0.0, isfinite(p) ? p * 100 : 0.0);
    return buf;
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
