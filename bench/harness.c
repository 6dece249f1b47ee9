/* harness.c -- see harness.h. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_ns_per_op(bench_fn fn, void *ctx, long iters, int reps)
{
    double v[64];
    if (reps > 64)
        reps = 64;
    if (iters < 1)
        iters = 1;
    fn(ctx, iters / 10 + 1); /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_ns();
        fn(ctx, iters);
        v[r] = (bench_now_ns() - t0) / (double)iters;
    }
    return bench_median(v, reps);
}

int bench_reps(int dflt)
{
    const char *s = getenv("CREW_BENCH_REPS");
    int r = s ? atoi(s) : dflt;
    return r > 0 ? r : dflt;
}

double bench_scale(void)
{
    const char *s = getenv("CREW_BENCH_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

long bench_iters(long dflt)
{
    long n = (long)((double)dflt * bench_scale());
    return n > 0 ? n : 1;
}

void bench_group(const char *title)
{
    printf("\n## %s\n", title);
    printf("%-44s %14s %-26s %14s %10s  %s\n", "figure", "crew", "anchor", "anchor value",
           "advantage", "goal");
    fflush(stdout);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static FILE *json_out(void)
{
    const char *path = getenv("CREW_BENCH_JSON");
    return path && *path ? fopen(path, "a") : NULL;
}

void bench_row(const char *group, const char *name, double crew_value, const char *unit,
               const char *anchor_name, double anchor_value, bool lower_is_better,
               const char *goal)
{
    double adv = 0;
    if (anchor_name && anchor_value > 0 && crew_value > 0)
        adv = lower_is_better ? anchor_value / crew_value : crew_value / anchor_value;
    char cv[32], av[32], ad[32];
    snprintf(cv, sizeof cv, "%.4g %s", crew_value, unit);
    if (anchor_name) {
        snprintf(av, sizeof av, "%.4g %s", anchor_value, unit);
        snprintf(ad, sizeof ad, "%.2fx", adv);
    } else {
        av[0] = 0;
        ad[0] = 0;
    }
    printf("%-44s %14s %-26s %14s %10s  %s\n", name, cv, anchor_name ? anchor_name : "-", av, ad,
           goal ? goal : "");
    fflush(stdout);
    FILE *f = json_out();
    if (!f)
        return;
    fputs("{\"group\":", f);
    json_str(f, group);
    fputs(",\"name\":", f);
    json_str(f, name);
    fprintf(f, ",\"crew\":%.6g,\"unit\":", crew_value);
    json_str(f, unit);
    if (anchor_name) {
        fputs(",\"anchor\":", f);
        json_str(f, anchor_name);
        fprintf(f, ",\"anchor_value\":%.6g,\"advantage\":%.4f", anchor_value, adv);
    }
    fprintf(f, ",\"lower_is_better\":%s", lower_is_better ? "true" : "false");
    if (goal) {
        fputs(",\"goal\":", f);
        json_str(f, goal);
    }
    fputs("}\n", f);
    fclose(f);
}

void bench_missing(const char *group, const char *name, const char *why)
{
    printf("%-44s %14s %-26s %s\n", name, "-", "missing", why);
    FILE *f = json_out();
    if (!f)
        return;
    fputs("{\"group\":", f);
    json_str(f, group);
    fputs(",\"name\":", f);
    json_str(f, name);
    fputs(",\"missing\":", f);
    json_str(f, why);
    fputs("}\n", f);
    fclose(f);
}

static void settle(long ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    nanosleep(&ts, NULL);
}

void bench_measure2(bench_fn a, void *actx, bench_fn b, void *bctx, long iters, int reps,
                    long settle_ns, double *ma, double *mb)
{
    double va[64], vb[64];
    if (reps > 64)
        reps = 64;
    if (reps < 1)
        reps = 1;
    if (iters < 1)
        iters = 1;
    a(actx, iters / 10 + 1);
    b(bctx, iters / 10 + 1);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_ns();
        a(actx, iters);
        double t1 = bench_now_ns();
        settle(settle_ns);
        double t2 = bench_now_ns();
        b(bctx, iters);
        double t3 = bench_now_ns();
        settle(settle_ns);
        va[r] = (t1 - t0) / (double)iters;
        vb[r] = (t3 - t2) / (double)iters;
    }
    *ma = bench_median(va, reps);
    *mb = bench_median(vb, reps);
}

unsigned long bench_count_primes(unsigned long lo, unsigned long hi)
{
    unsigned long n = 0;
    for (unsigned long x = lo < 2 ? 2 : lo; x < hi; x++) {
        int prime = 1;
        for (unsigned long d = 2; d * d <= x; d++)
            if (x % d == 0) {
                prime = 0;
                break;
            }
        n += (unsigned long)prime;
    }
    return n;
}
