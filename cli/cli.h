/*
 * cli.h -- what the parts of the `crew` command share. Never installed.
 *
 * DESIGN
 *  The interface of crew_cli_core, the static library of everything in cli/
 *  but main.c: the `crew` executable (main.c) and the tests of the CLI's
 *  logic link it and call only what is declared here.
 *
 *  The CLI is a thin user of the public crew.h: every figure it prints comes
 *  from crew's own pools (crew_pool_*) driven by the code in compare.c and
 *  the probes (probes.c over the files named in probe.h); memory figures
 *  come from crew_mem_usage_get and crew_mem_usage_tree (crew.h, section
 *  measure). The CLI adds only what a command needs on top: option parsing
 *  and the measuring plan (compare.c), the task functions it measures
 *  (workloads.c), the I/O view's threads-vs-event-loop measurement
 *  (ioview.c), the report in its four shapes (report.c: table, JSON, CSV;
 *  plot.c: SVG), the recommendation (recommend.c), which is derived from the
 *  measured figures only, and the progress and error lines on stderr
 *  (progress.c).
 *
 *  `crew compare` runs as separate steps, each with its own data: options
 *  (cmp_options) -> plan (cmp_plan: what to measure, how much) -> measure
 *  (probe_model, probe_io_view: figures into cmp_results) -> recommend
 *  (cmp_results.rec, from the figures alone) -> report (table, JSON, CSV,
 *  SVG: print cmp_results, decide nothing).
 *
 *  Output discipline: results go to stdout and nothing else does; progress
 *  and errors go to stderr. Errors are one line, "crew compare: ...", and the
 *  exit status says which kind (CLI_EXIT_*; documented in crew-compare(1)).
 *
 *  Crash safety: compare itself never runs a task that may crash in its own
 *  address space. Built-in tasks are known to be safe except the deliberate
 *  segfault, which runs only in a process pool or inside a sacrificial child
 *  process; a user's task runs under threads only inside a sacrificial child
 *  (fork, measure, send the figures back over a pipe), so a crash there is
 *  reported, not suffered.
 */
#ifndef CREW_CLI_H
#define CREW_CLI_H

#include <crew.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of every crew command (crew(1), crew-compare(1)). */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,  /* internal error (out of memory, ...) */
    CLI_EXIT_USAGE = 2,    /* bad option or value; unreadable --arg @file */
    CLI_EXIT_LOAD = 3,     /* --task: the .so or the symbol could not be loaded */
    CLI_EXIT_TASK = 4,     /* --task: the user's task crashed or returned an error */
    CLI_EXIT_MEASURE = 5,  /* a measurement failed (a crew call returned an error) */
    CLI_EXIT_OUTPUT = 6,   /* results could not be written (--plot FILE, stdout) */
};

/* ---------------------------------------------------------------- I/O view
 * Threads vs an event loop for I/O-bound work (ioview.c): `concurrency`
 * waits of `wait_s` seconds each (the stand-in for a network wait), run as
 *   IOV_THREAD_PER_WAIT  one thread each (thread per connection); the
 *                        creation of the threads counts in the time
 *   IOV_THREAD_POOL      a crew thread pool of opts->pool_threads workers
 *                        (0: 100), one task per wait
 *   IOV_EVENT_LOOP       one thread: epoll, a timerfd and a heap of timers
 *                        (what libuv and asyncio do)
 * The answer to "threads vs asyncio" with numbers: how close each comes to
 * the ideal time (wait_s: all waits at once) and what memory it needs. */
typedef enum iov_model {
    IOV_THREAD_PER_WAIT = 0,
    IOV_THREAD_POOL = 1,
    IOV_EVENT_LOOP = 2
} iov_model;

typedef struct iov_options {
    int pool_threads;       /* IOV_THREAD_POOL workers; 0: 100; max 1024 */
    size_t thread_stack;    /* IOV_THREAD_PER_WAIT stack size; 0: the system
                               default (what a plain server gets) */
} iov_options;

typedef struct iov_result {
    int model;              /* the iov_model measured */
    int concurrency;        /* waits */
    int threads;            /* threads that ran them (1 for the event loop) */
    double wait_s;          /* each wait */
    double elapsed_s;       /* from the first wait begun to the last ended */
    double ideal_s;         /* wait_s: every wait at once, no overhead */
    double ratio;           /* elapsed_s / ideal_s (0 when wait_s is 0) */
    double waits_per_s;     /* concurrency / elapsed_s */
    double cpu_s;           /* CPU time (user + system) the process spent */
    size_t rss_growth;      /* RSS bytes added while all waits were pending */
    size_t rss_per_wait;    /* rss_growth / concurrency */
} iov_result;

/* Runs the measurement described above and fills *out. Everything it starts
 * is joined before it returns. Returns 0, CREW_EINVAL (out NULL, unknown
 * model, concurrency outside 1..1000000, wait_s outside 0..60, pool_threads
 * outside 0..1024), CREW_EAGAIN (no more threads: thread per wait at a high
 * concurrency), CREW_ENOMEM, or a system error. opts may be NULL. It
 * measures the whole process's RSS and CPU time: run nothing else
 * meanwhile. */
int iov_measure(int model, int concurrency, double wait_s, const iov_options *opts,
                iov_result *out);
/* "thread per wait", "thread pool", "event loop" ("unknown" otherwise). */
const char *iov_model_name(int model);

#define CMP_SCHEMA_ID "crew-compare"
#define CMP_SCHEMA_VERSION 1
#define CMP_MAX_POINTS 24
#define CMP_MAX_METHODS 3

enum { CMP_THREADS = 0, CMP_PROCESSES = 1, CMP_NMODELS = 2 };

/* The work whose scaling is measured (the speedup curve). */
typedef enum cmp_workload_kind {
    CMP_WL_CPU = 0,   /* xorshift chain: pure CPU, no memory traffic */
    CMP_WL_IO,        /* each item waits (nanosleep) */
    CMP_WL_MIXED,     /* each item computes, then waits as long again */
    CMP_WL_MEMBW,     /* each item streams over a private buffer larger than L2 */
    CMP_WL_USER,      /* --task LIB.so:SYMBOL */
} cmp_workload_kind;

typedef struct cmp_options {
    bool quick, json, csv, quiet, no_fault;
    const char *plot_path;          /* --plot FILE.svg, or NULL */
    int workers[CMP_MAX_POINTS];    /* --workers; nworkers == 0: default range */
    int nworkers;
    cmp_workload_kind workload;
    const char *workload_name;
    const char *task_spec;          /* --task as given */
    char *task_path, *task_symbol;  /* split from task_spec (heap) */
    unsigned char *arg;             /* --arg bytes (heap), arg_len of them */
    size_t arg_len;
    const char *args_path;          /* --args FILE: one argument per item (search.h) */
    size_t record;                  /* --record N: its records' size; 0: delimited */
    int delim;                      /* --delim C; 0: a newline */
    bool index;                     /* --index: each argument begins with the item's index */
    bool thorough;                  /* --thorough: a longer search (about 2 minutes) */
    long items;                     /* --items; 0: default */
    double timeout;                 /* --timeout: longest one measurement may take; 0: 120 s */
    int start_method;               /* --start-method; -1: the pool's default */
    const char *start_method_name;
} cmp_options;

/* One point of a scaling curve: `items` tasks run on a pool of `workers`. */
typedef struct cmp_point {
    int workers;
    long items;
    double seconds;      /* median wall time for all items */
    double speedup;      /* serial seconds / seconds */
    double items_per_s;
    double lo, hi;       /* the speedup's slowest and fastest round; 0: not measured */
} cmp_point;

typedef struct cmp_method {
    const char *name;    /* "fork", "spawn", "forkserver" */
    double start_ms;     /* pool of 1: create + first task + destroy, median */
    double worker_us;    /* one crew_process: start + join, median */
    int status;          /* 0, or the crew status that stopped the measurement */
} cmp_method;

typedef struct cmp_fault {
    bool measured;
    bool survived;         /* the process that ran the pool is still alive */
    int signal;            /* signal that killed it (threads) or the worker (processes) */
    int crashed_status;    /* status of the crashing task's future (processes) */
    int innocent_total;    /* tasks that did not crash, submitted around the crash */
    int innocent_ok;       /* ... of which completed with status 0 */
    bool pool_usable;      /* a task submitted after the crash completed */
    double detect_ms;      /* the worker's death -> its task's future done */
} cmp_fault;

typedef struct cmp_model {
    const char *name;           /* "threads" / "processes" */
    const char *method;         /* processes: start method of the measured pools */
    int status;                 /* 0 measured; else the crew status that stopped it */
    cmp_method methods[CMP_MAX_METHODS];
    int nmethods;
    double start_ms;            /* pool of 1: create + first task + destroy */
    double worker_us;           /* one worker alone: crew_thread / crew_process start + join */
    int ready_workers;
    double ready_ms;            /* pool of ready_workers: create + first task done */
    double destroy_ms;          /* ... and destroy of that idle pool */
    int mem_workers;            /* pool size for the memory figure */
    double idle_bytes;          /* memory per idle worker: RSS (threads) / PSS (processes) */
    double idle_private_bytes;  /* private (unshared) part per worker */
    const char *idle_metric;    /* "RSS" or "PSS" */
    double roundtrip_us;        /* submit + wait + destroy of one empty task */
    double handoff_us;          /* the same, the caller never running it (completion list) */
    double empty_per_s;         /* empty tasks, submit all then wait all */
    double map_per_s;           /* empty items through crew_pool_map */
    double xfer_copy_us;        /* 1 MiB as the argument, 1 MiB back as the result */
    double xfer_ref_us;         /* 1 MiB by reference: pointer / shared region */
    const char *xfer_ref_how;
    cmp_point curve[CMP_MAX_POINTS];   /* the workload's scaling */
    int ncurve;
    cmp_point io[CMP_MAX_POINTS];      /* I/O-bound throughput */
    int nio;
    cmp_fault fault;
} cmp_model;

typedef struct cmp_recommendation {
    int model;            /* CMP_THREADS / CMP_PROCESSES */
    int workers;
    double speedup;
    double other_speedup;
    int other_workers;
    char headline[512];   /* one sentence */
    char reasons[6][512]; /* supporting sentences */
    int nreasons;
} cmp_recommendation;

/* How busy the CPUs were around compare's serial passes (text.c). */
#define CLI_WIDTH 100
typedef struct cli_busy {
    double wall, waited;      /* the spans, and their time waiting for a CPU */
    double psi, psi_wall;     /* /proc/pressure/cpu "some" over the spans */
    double others, cpu_wall;  /* CPU time others used (/proc/stat less ours), CPUs x span */
} cli_busy;
typedef struct cli_busy_span {
    bool ok, stat_ok;
    double cpu0, wait0, psi0, t0, stat0, self0;
} cli_busy_span;

typedef struct cmp_results {
    const char *crew_version;
    int cpus;
    char kernel[128];
    char cpu_model[128];
    bool quick;
    int reps;
    double load_start, load_end;  /* 1-minute load average before / after (data only) */
    cli_busy busy;                /* the serial baselines' wait for a CPU: the busy-machine measure */
    /* the workload whose curve was measured */
    const char *workload;       /* "cpu", "io", "mixed", "membw", "user" */
    char workload_desc[256];
    long items;
    double item_us;             /* serial time of one item (median) */
    double serial_seconds;      /* all items, in the calling thread */
    const char *task_spec;      /* user task, or NULL */
    size_t arg_len;
    int io_tasks_full;          /* the I/O row: how many tasks of io_wait_ms */
    double io_wait_ms;
    cmp_model m[CMP_NMODELS];
    /* I/O view (iov_measure): thread per wait, thread pool, event loop,
     * each running N waits of io_wait_ms at once, for N = 100, 1000 and
     * 10000 (--quick: 1000); io_view[i].concurrency is its N */
#define CMP_IO_VIEW_MAX 9
    iov_result io_view[CMP_IO_VIEW_MAX];
    int io_view_status[CMP_IO_VIEW_MAX];
    int io_view_n;
    cmp_recommendation rec;
    double elapsed_s;
    const struct cmp_task_report *task;  /* --task: the search and its advice (search.h) */
} cmp_results;

/* ---------------------------------------------------------------- progress */
void cli_progress_init(bool quiet);
/* "what runs now": replaces the previous progress line on a terminal. */
void cli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_progress_done(void);
/* One-line error on stderr, prefixed "crew compare: ". */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A JSON string (escaped; NULL -> null) and a number (non-finite -> null),
 * written to f: the one encoder of every --json report (report.c). */
void cli_json_str(FILE *f, const char *s);
void cli_json_num(FILE *f, double v);

/* ---------------------------------------------------------------- workloads
 * Every task follows crew_task_fn. Arguments are small fixed structs. */
typedef struct wl_arg {
    uint32_t kind;       /* cmp_workload_kind, for cpu/io/mixed/membw */
    uint32_t crash;      /* 1: the task segfaults on purpose */
    uint64_t iters;      /* cpu work (xorshift steps) */
    uint64_t wait_ns;    /* io wait */
    uint64_t bytes;      /* membw: bytes streamed */
    uint64_t seq;        /* item number, echoed back */
    double died_at;      /* crash: crew_now() just before the segfault, written
                            into the argument (which lies in a crew_shm region
                            when the fault demo passes it by reference) */
} wl_arg;

int wl_task_empty(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                  size_t *res_len);
int wl_task_echo(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                 size_t *res_len);
int wl_task_copy_ref(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                     size_t *res_len);
int wl_task_work(crew_task *t, const void *arg, size_t arg_len, void *res, size_t cap,
                 size_t *res_len);
/* The copy_ref argument: 1 MiB moves from `in` to `out` (both addresses are
 * valid in the worker: the same process, or a shared region mapped at one
 * address before the workers started). */
typedef struct wl_ref_arg {
    const unsigned char *in;
    unsigned char *out;
    size_t len;
} wl_ref_arg;

/* xorshift steps per microsecond on this machine (calibrated once). */
double wl_calibrate_cpu(void);
/* Membw: bytes per item and the per-thread buffer. */
#define WL_MEMBW_BUFFER (8u << 20)

/* User tasks: dlopen + dlsym. Returns CLI_EXIT_OK or CLI_EXIT_LOAD (and has
 * printed the one-line error). */
int wl_load_user(const char *path, const char *symbol, crew_task_fn *out);

/* ---------------------------------------------------------------- probes
 * What to measure and how much of it (compare.c fills it from the options;
 * --quick shrinks every count). */
typedef struct cmp_plan {
    int reps;                       /* medians of this many runs */
    int rt_calls;                   /* round trips per run */
    int batch;                      /* empty tasks per throughput run */
    long map_items;                 /* empty items per map run */
    int xfer_calls;                 /* 1 MiB round trips per run */
    int ready_workers, mem_workers;
    int methods[CMP_MAX_METHODS];   /* process start methods to time */
    const char *method_names[CMP_MAX_METHODS];
    int nmethods;
    int pool_method;                /* start method of the measured process pools */
    const char *pool_method_name;
    /* the workload's curve */
    int curve_workers[CMP_MAX_POINTS];
    int ncurve;
    crew_task_fn task;              /* wl_task_work or the user's */
    unsigned char *in;              /* items records of in_size bytes */
    size_t in_size, out_size;
    long items;
    bool user;                      /* task is the user's: threads only in a child */
    /* the I/O rows */
    int io_workers[4];
    int nio;
    double io_wait_s;
    int io_per_worker;              /* tasks per worker per run (capped at 1000) */
    bool fault;
    bool io_view;
    double point_budget;            /* seconds one curve or I/O point may take */
    double timeout;                 /* any single wait longer than this fails */
} cmp_plan;

/* Measures model `model` (CMP_THREADS/CMP_PROCESSES) into r->m[model].
 * Returns 0, or CLI_EXIT_TASK / CLI_EXIT_MEASURE after printing a one-line
 * error (the model's status then says what stopped it). */
int probe_model(cmp_results *r, int model, const cmp_plan *plan);
/* The I/O view: iov_measure for each of its models. */
int probe_io_view(cmp_results *r, const cmp_plan *plan);
/* How long the built-in curve's serial passes waited for a CPU (curve.c). */
void probe_serial_busy(cli_busy *out);
double median(double *v, int n);

/* ---------------------------------------------------------------- compare */
int cmd_compare(int argc, char **argv);
/* --task: the overheads, the search, the advice and the report
 * (compare_task.c). Returns the exit status. */
int compare_task(const cmp_options *o, cmp_results *r, cmp_plan *pl, double t_start);
void compare_usage(FILE *f);

/* ---------------------------------------------------------------- report */
int report_table(FILE *f, const cmp_results *r);
int report_json(FILE *f, const cmp_results *r);
int report_csv(FILE *f, const cmp_results *r);
int report_svg(const char *path, const cmp_results *r);
void recommend(cmp_results *r);

/* "1.23 ms", "850 µs", "12.5 KiB", "2.1 M/s" into buf. */
const char *fmt_time_s(char *buf, size_t n, double seconds);
const char *fmt_bytes(char *buf, size_t n, double bytes);
const char *fmt_rate(char *buf, size_t n, double per_s);

/* ---------------------------------------------------------------- text.c
 * How busy the machine was, from compare's own serial passes (schedstat's
 * run-queue delay of the thread running them, /proc/pressure/cpu over the
 * same spans); text wrapped to the reports' width. */
bool cli_schedstat(double *on_cpu, double *waited);   /* this thread's, seconds */
double cli_psi_total(void);                          /* seconds; NaN without PSI */
void cli_busy_begin(cli_busy_span *s);
void cli_busy_end(const cli_busy_span *s, cli_busy *b);
double cli_busy_share(const cli_busy *b);            /* waited / wall, NaN if unknown */
double cli_busy_psi(const cli_busy *b);
double cli_busy_others(const cli_busy *b);           /* share of all CPUs others used */
/* Busy: the spans waited for a CPU a tenth of their time, or other
 * programs used a quarter of the CPUs meanwhile. */
bool cli_busy_is(const cli_busy *b);
/* "other programs used 48% of the CPUs and ... waited 5% of ..." */
const char *cli_busy_text(char *buf, size_t n, const cli_busy *b, const char *what);
/* Display columns of UTF-8 text. */
int cli_cols(const char *s);
/* first, then text wrapped at CLI_WIDTH, continuation lines indented. */
void cli_wrap(FILE *f, const char *first, int indent, const char *text);

#endif /* CREW_CLI_H */
