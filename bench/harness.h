/*
 * harness.h -- what every bench/bench_*.c uses: timing, medians, and one way
 * to report a figure beside its anchor.
 *
 * A figure is reported with bench_row(): crew's value, the anchor's value
 * measured in the same run, and whether lower is better. The printed
 * "advantage" is always "how many times better crew is" (>1: crew wins):
 * anchor/crew for times, crew/anchor for rates. Every row is also appended
 * as one JSON object per line to $CREW_BENCH_JSON when that is set; bench/run
 * gathers those lines into one JSON array.
 */
#ifndef CREW_BENCH_HARNESS_H
#define CREW_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

/* Monotonic clock, nanoseconds. */
double bench_now_ns(void);

/* Median of n values (sorts v in place). */
double bench_median(double *v, int n);

/* Runs fn(ctx, iters) `reps` times and returns the median nanoseconds per
 * iteration. fn must perform `iters` operations. */
typedef void (*bench_fn)(void *ctx, long iters);
double bench_ns_per_op(bench_fn fn, void *ctx, long iters, int reps);

/* Alternates a and b `reps` times (after one warm-up call each) and gives
 * their medians in ns per op in *ma and *mb. settle_ns > 0: sleeps that
 * long after each side, so that one side's idle spinners (crew's workers,
 * libgomp's team) do not steal the CPU the other side is measured on. */
void bench_measure2(bench_fn a, void *actx, bench_fn b, void *bctx, long iters, int reps,
                    long settle_ns, double *ma, double *mb);

/* CPU-bound work for speedup figures: primes in [lo, hi) by trial division. */
unsigned long bench_count_primes(unsigned long lo, unsigned long hi);

/* Number of repetitions: $CREW_BENCH_REPS or `dflt`; --quick runs use fewer. */
int bench_reps(int dflt);
/* Scale factor for iteration counts: 1.0, or $CREW_BENCH_SCALE (e.g. 0.1). */
double bench_scale(void);
long bench_iters(long dflt);

/* Prints a section header. */
void bench_group(const char *title);

/* One figure beside its anchor. anchor_name may be NULL for a figure with no
 * anchor (then anchor_value is ignored). goal is a free-text target ("<= 1.1x
 * raw") or NULL. */
void bench_row(const char *group, const char *name, double crew_value, const char *unit,
               const char *anchor_name, double anchor_value, bool lower_is_better,
               const char *goal);

/* An anchor that could not run here (library missing, python3 missing). */
void bench_missing(const char *group, const char *name, const char *why);

#endif
