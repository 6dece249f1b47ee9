/*
 * harness.h -- what every bench/bench_*.c uses: timing, medians with their
 * spread, one way to report a figure beside its anchor, and fresh child
 * processes for anchors that must start clean (bench/README.md).
 *
 * A figure is reported with bench_report() (or the short bench_row()):
 * crew's value, the anchor's value measured in the same run, the mode the
 * two were measured in (e.g. "1 CPU" when both sides are pinned to one
 * CPU), and whether lower is better. The printed "advantage" is always "how
 * many times better crew is" (>1: crew wins): anchor/crew for times,
 * crew/anchor for rates, from the medians. A value is a bench_stat: the
 * median and the min and max of the repetitions it is the median of. Every
 * row is also appended as one JSON object per line to $CREW_BENCH_JSON
 * when that is set; bench/run gathers those lines into one JSON array.
 *
 * JSON fields of a row (older readers only know the first group):
 *   group, name, crew, unit, anchor, anchor_value, advantage,
 *   lower_is_better, goal                              -- always as before
 *   mode, reps, crew_min, crew_max, anchor_reps, anchor_min, anchor_max,
 *   anchor_setting, anchor_role ("default", "best", "default, best")
 *                                                      -- when known
 *
 * Anchors that read their settings once per process (libgomp's OMP_*,
 * libuv's UV_THREADPOOL_SIZE, Python's start method and imports) are run
 * as a fresh child per measurement: this program re-executed with a flag
 * that selects the anchor (bench_child_values with argv[0] NULL), or any
 * other command (python3). The child does its own warm-up, measures, and
 * prints "value X" lines on its stdout; bench_alternate() runs crew in this
 * process and the child once per setting, round after round.
 */
#ifndef CREW_BENCH_HARNESS_H
#define CREW_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

/* Monotonic clock, nanoseconds. */
double bench_now_ns(void);

/* Median of n values (sorts v in place). */
double bench_median(double *v, int n);

/* A median with its spread: min and max of the `reps` values it is the
 * median of. reps 0: a single figure that has no spread. */
typedef struct bench_stat {
    double med, min, max;
    int reps;
} bench_stat;

/* The stat of n values (sorts v in place); n <= 0 gives reps 0, all 0. */
bench_stat bench_stat_of(double *v, int n);
/* A single figure (reps 0). */
bench_stat bench_stat_one(double v);
/* s scaled: every value times k (k > 0). */
bench_stat bench_stat_scale(bench_stat s, double k);
/* A time turned into a rate: k / value (min and max swap). */
bench_stat bench_stat_rate(bench_stat s, double k);

/* Runs fn(ctx, iters) `reps` times and returns the median nanoseconds per
 * iteration. fn must perform `iters` operations. */
typedef void (*bench_fn)(void *ctx, long iters);
double bench_ns_per_op(bench_fn fn, void *ctx, long iters, int reps);
/* The same, with the spread over the reps. */
bench_stat bench_ns_per_op_stat(bench_fn fn, void *ctx, long iters, int reps);

/* Alternates a and b `reps` times (after one warm-up call each) and gives
 * their medians in ns per op in *ma and *mb. settle_ns > 0: sleeps that
 * long after each side, so that one side's idle spinners (crew's workers,
 * libgomp's team) do not steal the CPU the other side is measured on. */
void bench_measure2(bench_fn a, void *actx, bench_fn b, void *bctx, long iters, int reps,
                    long settle_ns, double *ma, double *mb);
/* The same with the spread. Each side's warm-up is right before each of
 * its measured calls (iters/10 + 1 ops), not only once at the start. */
void bench_measure2_stat(bench_fn a, void *actx, bench_fn b, void *bctx, long iters, int reps,
                         long settle_ns, bench_stat *sa, bench_stat *sb);

/* CPU-bound work for speedup figures: primes in [lo, hi) by trial division. */
unsigned long bench_count_primes(unsigned long lo, unsigned long hi);

/* Number of repetitions: $CREW_BENCH_REPS or `dflt`; --quick runs use fewer. */
int bench_reps(int dflt);
/* Scale factor for iteration counts: 1.0, or $CREW_BENCH_SCALE (e.g. 0.1). */
double bench_scale(void);
long bench_iters(long dflt);

/* Prints a section header. */
void bench_group(const char *title);

/* One figure beside its anchor. */
typedef struct bench_fig {
    const char *group, *name, *unit;
    const char *mode;           /* NULL: no particular mode */
    bench_stat crew;
    const char *anchor;         /* NULL: a figure with no anchor */
    bench_stat anchor_value;
    const char *anchor_setting; /* NULL: the anchor has no settings */
    const char *anchor_role;    /* "default", "best", "default, best" or NULL */
    bool lower_is_better;
    const char *goal;           /* free text ("<= 1.1x raw") or NULL */
} bench_fig;
void bench_report(const bench_fig *f);

/* The short form: medians without spread, no mode. anchor_name may be NULL
 * (then anchor_value is ignored). */
void bench_row(const char *group, const char *name, double crew_v, const char *unit,
               const char *anchor_name, double anchor_value, bool lower_is_better,
               const char *goal);

/* An anchor that could not run here (library missing, python3 missing). */
void bench_missing(const char *group, const char *name, const char *why);

/* ---------------------------------------------------------------- children */

/* Runs a fresh process: argv as given, or this program (/proc/self/exe)
 * when argv[0] is NULL; either way the list ends at the first NULL after
 * argv[0].
 * env: entries "NAME=value" set NAME, entries "NAME" unset it, in the
 * child only; NULL for none. The child's stdout is read: each "value X"
 * line gives one value (up to cap in out), "# ..." lines are printed when
 * echo is true; its stderr is ours. Returns the number of values, or -1
 * when it could not run or did not exit 0. */
int bench_child_values(const char *const *argv, const char *const *env, bool echo, double *out,
                       int cap);
/* In such a child: prints one value for the parent. */
void bench_child_print(double v);

/* One way an anchor can be set up: a label ("default", "OMP_WAIT_POLICY=
 * active"), environment changes for its child (as for bench_child_values)
 * and arguments appended to the anchor's command. */
typedef struct bench_setting {
    const char *label;
    const char *const *env;
    const char *const *args;
} bench_setting;

/* An anchor run in a fresh child: its name, its command (as for
 * bench_child_values: argv[0] NULL is this program), and its settings, settings[0] being the anchor's default
 * (what a user who sets nothing gets). */
typedef struct bench_anchor {
    const char *name;
    const char *const *argv;
    const bench_setting *settings;
    int n_settings;
} bench_anchor;

/* `reps` rounds; each round: fn(ctx, iters/10 + 1) as crew's own warm-up,
 * then fn(ctx, iters) timed (one value of *crew, ns per op), then one
 * fresh child per setting of a (one value of per[s], in the child's unit).
 * The child's command is a->argv + setting args + extra (NULL-terminated,
 * may be NULL: e.g. the iteration count). A setting whose every child
 * failed gets reps 0. Returns how many settings gave values. */
int bench_alternate(bench_fn fn, void *ctx, long iters, int reps, const bench_anchor *a,
                    const char *const *extra, bench_stat *crew, bench_stat *per);
/* The same, with crew's side one call of sample(ctx) per round, which
 * warms up and measures itself and returns crew's value. */
typedef double (*bench_sample_fn)(void *ctx);
int bench_alternate_sample(bench_sample_fn sample, void *ctx, int reps, const bench_anchor *a,
                           const char *const *extra, bench_stat *crew, bench_stat *per);

/* Reports crew (base->crew) against the anchor's default setting and
 * against its best (lowest median when base->lower_is_better, else
 * highest): two rows, or one when the default is the best. base gives
 * group, name, unit, mode and lower_is_better; its goal goes on the best
 * row. Also prints every setting's median as a "#" line. Settings without
 * values are skipped; none at all: bench_missing. Returns the best's index
 * (-1 if none). */
int bench_report_anchor(const bench_fig *base, const bench_anchor *a, const bench_stat *per);

/* Helper modes of this program (a small fresh copy of it that forks raw
 * children for a memory anchor): call first in main(); returns at once
 * unless argv names a helper mode, in which case it runs it and exits. */
void bench_child_dispatch(int argc, char **argv);

/* Memory a raw fork child adds to the process tree (tree PSS after minus
 * before, per child, KiB) when n of them are forked from a fresh, small
 * copy of this program -- a parent of the size of crew's forkserver, not
 * this bench process with its heap and threads. Each child blocks in
 * read(2) while measured. Needs bench_child_dispatch in main. Returns -1
 * on failure. */
double bench_raw_fork_child_kib(int n);

/* CPU pinning for measurement modes ("1 CPU": both sides on one CPU, "2
 * CPUs": each side on its own). bench_cpu: the index-th CPU this process
 * could run on when it started (-1 if none). bench_pin: every thread of
 * process pid (0: this one) onto one CPU, or back to the CPUs this process
 * started with when cpu < 0 (threads started later inherit their
 * creator's). bench_pin_children: the same for every child process of this
 * one (a process pool's workers and its forkserver). 0 or -1. */
int bench_cpu(int index);
int bench_pin(int pid, int cpu);
int bench_pin_children(int cpu);

#endif
