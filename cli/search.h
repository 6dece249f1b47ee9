/*
 * search.h -- `crew compare --task`: the user's task measured as a user
 * would configure it. Never installed.
 *
 * DESIGN
 *  The pieces, in the order a run uses them:
 *   items.c    the per-item input (--arg, --args FILE, --index) laid out in
 *              one crew_shm region that every measuring child maps;
 *   trial.c    one measurement in a sacrificial child process (started from
 *              the fork server, so it is safe whatever threads this process
 *              runs): a serial pass with no pool, or one configuration's
 *              pool running every item for some rounds; the child writes
 *              its figures and each item's outcome into a second region;
 *   verify.c   each item's outcome (status, result bytes as a hash) against
 *              the 1-worker reference, and the reference itself: a serial
 *              pass that a crash or a hang cannot stop (the child is
 *              restarted after the item that killed it);
 *   search.c   the candidates (model x workers x dispatch x argument
 *              passing x recycling, pruned by what the reference showed)
 *              and successive halving under the time budget;
 *   advice.c   the recommended configuration, ties within the noise, the
 *              reasons and the C snippet;
 *   report_task.c / plot_task.c  the table, JSON, CSV and SVG of all that.
 *  Nothing here runs the user's task in this process: a crash costs one
 *  child, never the report.
 */
#ifndef CREW_CLI_SEARCH_H
#define CREW_CLI_SEARCH_H

#include "cli.h"

#include <limits.h>
#include <stdatomic.h>

/* One item's argument: at most 64 MiB, a file of exactly 64 MiB included. */
#define CMP_ARG_MAX ((size_t)64 << 20)
/* Items a run may have (the table of records costs 16 bytes each). */
#define CMP_ITEMS_MAX 200000L
#define CMP_MAX_ROUNDS 32
#define CMP_MAX_SAMPLES 64
#define CMP_MAX_CANDIDATES 64

/* ---------------------------------------------------------------- input */
typedef struct cmp_input {
    const unsigned char *arg;   /* --arg bytes, or NULL */
    size_t arg_len;
    const char *args_path;      /* --args FILE, or NULL */
    size_t record;              /* --record N: fixed-size records; 0: delimited */
    int delim;                  /* --delim C (default '\n') */
    bool index;                 /* --index: 8-byte item index before each argument */
    long items;                 /* --items N, 0: the default */
} cmp_input;

/* The records in the region. Item i's argument is table[i]: `len` bytes at
 * `off` from the region's start. */
typedef struct cmp_item_ref {
    uint64_t off, len;
} cmp_item_ref;

typedef struct cmp_items {
    crew_shm *shm;          /* header, table, data */
    size_t n;               /* items laid out */
    size_t nrec;            /* distinct source records */
    bool fixed;             /* every item `stride` bytes, item i at data_off + i*stride */
    size_t stride, data_off;
    size_t min_len, max_len;
    bool shared;            /* every item points at one copy of the same bytes */
    bool index;
    bool n_given;           /* --items or --args fixed the count */
    char desc[200];
} cmp_items;

/* Reads --arg @FILE (at most CMP_ARG_MAX bytes). 0 or CLI_EXIT_USAGE /
 * CLI_EXIT_FAILURE after a one-line error. */
int items_read_file(const char *path, size_t limit, unsigned char **out, size_t *len);
/* Lays the items out; max_items bounds an adaptive count. 0 or a CLI_EXIT_*. */
int items_build(cmp_items *it, const cmp_input *in, long max_items);
const cmp_item_ref *items_table(const crew_shm *shm);
void items_free(cmp_items *it);

/* ---------------------------------------------------------------- configs */
enum { CMP_SERIAL = -1 };                         /* model: no pool at all */
enum { CMP_FUTURES = 0, CMP_MAP = 1 };            /* dispatch */
enum { CMP_COPY = 0, CMP_BYREF = 1 };             /* argument passing */

typedef struct cmp_config {
    int model;                /* CMP_SERIAL, CMP_THREADS, CMP_PROCESSES */
    int workers;
    int dispatch;             /* CMP_FUTURES: one future per item; CMP_MAP */
    size_t chunk;             /* map chunk size; 0: adaptive */
    int args;                 /* CMP_COPY or CMP_BYREF (crew_shm region) */
    unsigned recycle_tasks;   /* max_tasks_per_worker (processes) */
    size_t recycle_memory;    /* max_worker_memory (processes) */
    int start_method;         /* processes */
} cmp_config;

/* "processes x4, map chunk 16, by reference, recycle after 32 tasks" */
const char *config_name(char *buf, size_t n, const cmp_config *c);
/* The same, as few words as possible, for narrow tables. */
const char *config_short(char *buf, size_t n, const cmp_config *c);

/* ---------------------------------------------------------------- outcomes */
/* One item's outcome: its status and its result bytes, trailing zero bytes
 * dropped (a map's output record and a future's result then compare). */
typedef struct cmp_record {
    int32_t status;
    uint32_t len;
    uint64_t hash;
    float t;          /* the reference: the item's serial time, seconds */
    uint32_t spare;
} cmp_record;

uint64_t verify_hash(const void *data, size_t len, uint32_t *trimmed_len);
void verify_record(cmp_record *r, int status, const void *data, size_t len);

/* How a run's outcomes compare with the reference. */
typedef struct cmp_check {
    uint64_t checked;      /* items compared */
    uint64_t wrong;        /* both ran to the end, different bytes or status */
    uint64_t crashed;      /* crashed / timed out here, not in the reference */
    uint64_t spared;       /* crashed in the reference, not here */
    int64_t first_wrong;   /* -1: none */
} cmp_check;

void verify_compare(const cmp_record *ref, const cmp_record *run, size_t first, size_t n, cmp_check *c);
static inline bool is_crash_status(int st)
{
    return st == CREW_ECRASHED || st == CREW_ETIMEDOUT || st == CREW_EBROKEN;
}

/* ---------------------------------------------------------------- trials */
enum {
    TRIAL_RECORD = 1u,        /* write each item's outcome (the reference) */
    TRIAL_VERIFY = 2u,        /* compare each round with the reference */
    TRIAL_SKIP_CRASHED = 4u,  /* leave out items that crashed in the reference */
};

/* What the parent hands the child (copied with the process start). */
typedef struct trial_req {
    cmp_config cfg;
    char path[PATH_MAX];
    char symbol[256];
    int items_fd, out_fd;     /* regions, at the same numbers in the child */
    uint64_t first, n;        /* items [first, n) */
    uint64_t nmax;            /* records in the out region (the reference follows them) */
    int rounds;               /* timed rounds after the warm-up */
    double stop_after;        /* serial: stop once this long has passed; 0: never */
    uint64_t serial_k;        /* a pool: before each round, time its first k items
                                 serially (the drift-proof baseline); 0: none */
    double task_timeout;      /* processes: per-item deadline */
    uint32_t result_cap;      /* max_result_size; a map's out_size */
    uint32_t flags;
    double mem_limit;         /* bytes of RSS (process tree) a run may reach */
} trial_req;

/* The child's figures, at the start of the out region; the child's records
 * follow at TRIAL_REC_OFF, the reference's after n records. */
typedef struct trial_hdr {
    _Atomic uint64_t done;      /* items finished: serial, the absolute index
                                   of the next item; a pool, this round's count */
    _Atomic int32_t round;      /* -1 while warming up */
    _Atomic int32_t in_serial;  /* 1 while the serial items beside a round run */
    int32_t status;             /* 0, or the crew status that stopped the run */
    int32_t rounds_done;
    uint32_t max_len;           /* longest result */
    double t[CMP_MAX_ROUNDS];   /* each round's wall time */
    uint64_t ran[CMP_MAX_ROUNDS]; /* items each round ran */
    double cpu[CMP_MAX_ROUNDS]; /* CPU time of this process per round */
    double st[CMP_MAX_ROUNDS];  /* the serial_k items' time before each round */
    double st_ref, all_ref;     /* the reference's time of those items / of all run */
    double elapsed;             /* serial: time of the items before `done` */
    double on_cpu, rq_wait;     /* serial: schedstat of the loop (seconds) ... */
    double stat_elapsed;        /* ... over this much of it (kept up as it runs) */
    double rss_first, rss_last; /* tree RSS after the warm-up / at the end */
    uint64_t rss_items;         /* items run between the two */
    double rss_at[16];          /* serial: RSS samples ... */
    uint64_t rss_item[16];      /* ... after this many items */
    int32_t nrss;
    cmp_check check;            /* worst round */
    cli_busy busy;              /* serial: how busy the machine was meanwhile */
    char error[160];
} trial_hdr;

#define TRIAL_REC_OFF 4096

/* What a finished trial tells. */
typedef struct trial_result {
    bool ran;                 /* the child came up and reported */
    int died_signal;          /* the child was killed by this signal */
    int died_code;            /* ... or exited with this code (not ours) */
    bool hung;                /* killed after its deadline */
    bool serial_died;         /* ... while the serial items beside a round ran */
    int status;               /* the run's own failure (pool create, ...) */
    uint64_t died_at;         /* items done when it died */
    int rounds;
    double t[CMP_MAX_ROUNDS];
    uint64_t ran_items[CMP_MAX_ROUNDS];
    double cpu[CMP_MAX_ROUNDS];
    double speedup[CMP_MAX_ROUNDS]; /* per round, against its own serial items; NaN: none */
    double mem_per_item;      /* tree RSS growth per item run, bytes */
    cmp_check check;
    char error[160];
} trial_result;

/* The shared state of one task's measurements. */
typedef struct cmp_task {
    const char *path, *symbol;
    cmp_items items;
    size_t n;                 /* items a run uses (<= items.n) */
    crew_shm *out;            /* the out region: header, records, reference */
    cmp_record *ref;          /* the reference records, in `out` */
    uint32_t result_cap;      /* max_result_size of the pools (4096) */
    uint32_t map_out;         /* a map's output record: the longest result seen */
    double timeout;           /* --timeout: the longest one run may take */
    double mem_limit;
    int cpus;
    int start_method;
    const char *start_method_name;
    const int *workers;       /* --workers: the only counts to try; NULL: the search's */
    int nworkers;
} cmp_task;

int task_open(cmp_task *t, size_t n_max);
void task_close(cmp_task *t);
/* Runs req in a child, with progress lines named `what`; fills *res. 0, or
 * a crew status when the child could not be started. */
int trial_run(cmp_task *t, trial_req *req, const char *what, trial_result *res);
void trial_req_init(const cmp_task *t, trial_req *req, const cmp_config *c);
/* The records the last trial wrote. */
cmp_record *trial_records(cmp_task *t);
/* The child's entry (crew_process_fn). */
int trial_child(void *arg, size_t len);

/* ---------------------------------------------------------------- profile */
/* What the reference run showed about the task. */
typedef struct cmp_profile {
    size_t n;                 /* items */
    double serial_s;          /* all n items in one thread, no pool */
    double item_s;
    double cpu_ratio;         /* CPU time / (wall - time waiting for a CPU) */
    double busy;              /* share of the serial run spent waiting for a CPU */
    double psi_some;          /* /proc/pressure/cpu during the serial run, or NaN */
    cli_busy machine;         /* the serial passes' spans: others' CPU use, waits, pressure */
    double leak_per_item;     /* RSS growth per item (bytes), 0 when none seen */
    bool leaks;
    double rss_start;
    uint64_t ok, failed, crashed, hung;  /* the reference's items by outcome */
    int crash_signal, crash_code;
    int fail_status;          /* the most common task error */
    uint32_t max_len;         /* the longest result */
    size_t arg_len;           /* the longest argument */
    bool deterministic;       /* a second serial pass gave the same results */
    uint64_t det_checked, det_diff;
    bool waiting;             /* the task waits: search past the CPU count */
} cmp_profile;

/* verify.c: the reference (and the determinism check). 0 or a CLI_EXIT_*;
 * *why gets the one-line reason when the task cannot be measured at all. */
int verify_reference(cmp_task *t, cmp_profile *pr, double budget, bool n_given, char *why, size_t whylen);
/* A serial pass timed again (the baseline), over items [0, n): seconds. */
double verify_baseline(cmp_task *t, const cmp_profile *pr, bool check, cmp_check *c);

/* ---------------------------------------------------------------- search */
typedef enum cand_state {
    CAND_LIVE = 0,
    CAND_OUT,           /* halved away: slower than the survivors */
    CAND_WRONG,         /* results differ from the reference */
    CAND_CRASHED,       /* the process died (threads) */
    CAND_HUNG,          /* did not finish within --timeout */
    CAND_IMPOSSIBLE,    /* a speedup no configuration can have, twice */
    CAND_LEAKS,         /* memory grows per item with nothing to bound it */
    CAND_FAILED,        /* could not run (pool create failed, ...) */
    CAND_SKIPPED,       /* not measured: the budget ran out */
} cand_state;

typedef struct cmp_cand {
    cmp_config cfg;
    cand_state state;
    char why[240];
    double ips[CMP_MAX_SAMPLES];       /* items per second, one sample per timed round */
    double sp[CMP_MAX_SAMPLES];        /* its speedup against the serial items timed beside it, or NaN */
    double seconds[CMP_MAX_SAMPLES];
    int ns;
    int trials, rung;
    double med, lo, hi;                 /* speedup: median, and the spread of the runs */
    double noise;                       /* relative uncertainty of the median */
    double items_per_s;
    double mem_per_item;
    double mem_workers;                 /* memory of its workers (idle figure x workers) */
    cmp_check check;
    int died_signal, died_code;
    uint64_t died_at;
    bool flagged;                       /* an impossible figure was re-measured */
} cmp_cand;

typedef struct cmp_search {
    cmp_profile prof;
    cmp_cand c[CMP_MAX_CANDIDATES];
    int nc;
    int rungs;
    double budget, spent;
    double baseline[16];                /* serial seconds per item, each measurement */
    int nbase;
    double item_s;                      /* their median: the speedups' baseline */
    double noise_floor;                 /* the smallest difference that is not a tie */
    int cap_workers;                    /* the most workers the search would try */
    char cap_why[120];
    bool thread_unsafe, threads_crash, process_unsafe;
    bool no_serial_beside;              /* a serial item crashed inside a trial: none beside rounds */
    char notes[6][240];
    int nnotes;
} cmp_search;

/* Runs the whole search; 0, or CLI_EXIT_TASK when the task cannot be
 * measured (every item failed alone: *why says how), or another CLI_EXIT_*. */
int search_run(cmp_task *t, cmp_search *s, const cmp_results *r, double budget, bool thorough, bool n_given,
               char *why, size_t whylen);
/* The candidate's speedup figures from its samples and the serial time of
 * one item. */
void search_stats(cmp_cand *c, double item_s);
/* space.c: the candidates from the profile (s->prof, t's items). */
void search_plan_space(cmp_search *s, const cmp_task *t);
/* Adds c unless it is there already or the table is full. */
bool search_add(cmp_search *s, const cmp_config *c);
/* a and b are within their whole noise margin: still in the race. */
bool search_open(const cmp_cand *a, const cmp_cand *b, double floor);
const char *cmp_model_word(int model);  /* "threads", "processes", "serial" */
/* a and b differ by less than their noise (never less than floor). */
bool search_tied(const cmp_cand *a, const cmp_cand *b, double floor);
/* That margin, as a fraction of the faster. */
double search_margin(const cmp_cand *a, const cmp_cand *b, double floor);
const char *cand_state_name(cand_state s);
const char *cand_state_key(cand_state s);   /* for JSON and CSV */

/* ---------------------------------------------------------------- advice */
typedef struct cmp_advice {
    bool found;
    int best;                 /* index in search.c[] */
    int tie;                  /* the other option within the noise, or -1 */
    int runner_up;            /* the best of the other model, or -1 */
    double noise;
    char headline[400];
    char reasons[8][400];
    int nreasons;
    char snippet[1600];
} cmp_advice;

void advise(const cmp_search *s, const cmp_results *r, cmp_advice *a);
void advice_snippet(const cmp_cand *c, const cmp_profile *p, const cmp_items *it, char *buf, size_t n);

/* ---------------------------------------------------------------- report */
/* Everything --task adds to the results; NULL for a built-in workload. */
typedef struct cmp_task_report {
    const cmp_task *task;
    const cmp_search *search;
    const cmp_advice *advice;
    int exit;                 /* what the run will exit with */
    char failure[240];        /* why the task could not be measured, or "" */
} cmp_task_report;

int task_report_table(FILE *f, const cmp_results *r, const cmp_task_report *tr);
void task_report_json(FILE *f, const cmp_task_report *tr);
void task_report_csv(FILE *f, const cmp_task_report *tr);
int task_report_svg(const char *path, const cmp_results *r, const cmp_task_report *tr);

#endif /* CREW_CLI_SEARCH_H */
