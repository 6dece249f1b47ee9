/*
 * probe.h -- what the measuring files of `crew compare` share (runs.c,
 * curve.c, child.c, fault.c, costs.c, probes.c). Internal to crew_cli_core:
 * the rest of the CLI and the tests see only cli.h.
 *
 * DESIGN
 *  The layers, each file calling only those below it:
 *    probes.c   probe_model / probe_io_view: one model's measurements in order
 *    costs.c    start, memory, round trip, throughput, transfer (a table)
 *    fault.c    the live crash demonstration
 *    curve.c    the workload's speedup curve
 *    child.c    running a job in a sacrificial child process
 *    runs.c     one pool, one task, one batch: the timed call sequences
 *  Every probe that fails records the crew status in the model and prints
 *  one error line (probe_fail); a figure not measured stays NaN.
 */
#ifndef CREW_CLI_PROBE_H
#define CREW_CLI_PROBE_H

#include "cli.h"

#define MIB (1024u * 1024u)

/* ---------------------------------------------------------------- runs.c */
/* A pool of `workers` of the model (CMP_THREADS / CMP_PROCESSES); method is
 * the process start method (ignored for threads); 0 sizes: the defaults. */
int probe_pool_new(crew_pool **p, int model, int workers, int method, size_t max_arg,
                   size_t max_res);
/* Submits one task and waits for it; *task_status (if not NULL) gets its
 * final status. Returns 0 or the submit / wait error. */
int probe_run_one(crew_pool *p, crew_task_fn fn, const void *arg, size_t len, double timeout,
                  int *task_status);
/* One empty task to a worker and back, the caller spinning on the pool's
 * completion list instead of waiting on the future. */
int probe_handoff_one(crew_pool *p, double timeout);
/* n empty tasks, submitted then waited for; fs holds n handles. */
int probe_empty_batch(crew_pool *p, crew_future **fs, int n, double timeout);
/* A map of n items in chunks of chunk (0: the pool's choice), waited for; on
 * a task failure fills *fl (if not NULL). */
int probe_map_run(crew_pool *p, crew_task_fn fn, const void *in, size_t in_size, void *out,
                  size_t out_size, size_t n, size_t chunk, double timeout, crew_failure *fl);
/* n tasks, one future each, waited for through the completion fd; results
 * to out + i * out_size. Returns 0, the first failed item's status (*fl
 * filled), or a pool error. */
int probe_submit_run(crew_pool *p, crew_task_fn fn, const unsigned char *in, size_t in_size,
                     size_t n, unsigned char *out, size_t out_size, double timeout,
                     crew_failure *fl);
/* Records rc as the model's status, prints "<model>: <what> failed: ..." and
 * returns CLI_EXIT_MEASURE. */
int probe_fail(cmp_model *m, const char *what, int rc);

/* ---------------------------------------------------------------- curve.c */
/* The plan's items on a pool of each of plan->curve_workers, interleaved
 * with serial runs (when serial_here; else *serial is the baseline). Fills
 * pts[0..*npts). Returns CLI_EXIT_OK, CLI_EXIT_TASK (the task failed: *fl,
 * *rc_out) or CLI_EXIT_MEASURE (*rc_out). */
int probe_curve(int model, const cmp_plan *pl, bool serial_here, double *serial, cmp_point *pts,
                int *npts, crew_failure *fl, int *rc_out);

/* ---------------------------------------------------------------- child.c */
/* Runs job(fd, pl) in a forked child (CREW_START_FORK) for at most limit
 * seconds; reads what it wrote to fd into buf (up to cap, *got bytes) and
 * fills *ex with how it ended. Returns 0, CREW_ETIMEDOUT (killed when late)
 * or a crew error. */
int probe_in_child(int (*job)(int fd, const cmp_plan *pl), const cmp_plan *pl, double limit,
                   void *buf, size_t cap, size_t *got, crew_exit *ex);
/* write(2) all of buf; false on an error. */
bool probe_write_all(int fd, const void *buf, size_t len);
/* "SIGSEGV": a static buffer, valid until the next call. */
const char *probe_sig_text(int sig);

/* ---------------------------------------------------------------- fault.c */
/* A task segfaults on purpose: under threads in a sacrificial child (the
 * process dies), under processes in the pool (one future fails). Fill
 * m->fault; return CLI_EXIT_OK or probe_fail's status. */
int probe_fault_threads(cmp_model *m, const cmp_plan *pl);
int probe_fault_processes(cmp_model *m, const cmp_plan *pl);

/* ---------------------------------------------------------------- costs.c */
/* The model's costs: one bare worker, a pool of 1 per start method, a
 * ready pool and its destroy, memory per idle worker, round trip, hand-off,
 * empty tasks, map, 1 MiB by copy and by reference. */
int probe_costs(cmp_model *m, int model, const cmp_plan *pl);

#endif /* CREW_CLI_PROBE_H */
