/* harness.c -- see harness.h. */
#include "harness.h"

#include <crew.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

/* ---------------------------------------------------------------- stats */

bench_stat bench_stat_of(double *v, int n)
{
    bench_stat s = {0, 0, 0, 0};
    if (n <= 0)
        return s;
    s.med = bench_median(v, n); /* sorts */
    s.min = v[0];
    s.max = v[n - 1];
    s.reps = n;
    return s;
}

bench_stat bench_stat_one(double v)
{
    bench_stat s = {v, v, v, 0};
    return s;
}

bench_stat bench_stat_scale(bench_stat s, double k)
{
    s.med *= k;
    s.min *= k;
    s.max *= k;
    return s;
}

bench_stat bench_stat_rate(bench_stat s, double k)
{
    bench_stat r = s;
    r.med = s.med > 0 ? k / s.med : 0;
    r.min = s.max > 0 ? k / s.max : 0;
    r.max = s.min > 0 ? k / s.min : 0;
    return r;
}

bench_stat bench_ns_per_op_stat(bench_fn fn, void *ctx, long iters, int reps)
{
    double v[64];
    if (reps > 64)
        reps = 64;
    if (reps < 1)
        reps = 1;
    if (iters < 1)
        iters = 1;
    fn(ctx, iters / 10 + 1); /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_ns();
        fn(ctx, iters);
        v[r] = (bench_now_ns() - t0) / (double)iters;
    }
    return bench_stat_of(v, reps);
}

double bench_ns_per_op(bench_fn fn, void *ctx, long iters, int reps)
{
    return bench_ns_per_op_stat(fn, ctx, iters, reps).med;
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

/* ---------------------------------------------------------------- rows */

#define ROW_FMT "%-44s %-9s %12s %-19s %-34s %12s %-19s %9s  %s\n"

void bench_group(const char *title)
{
    printf("\n## %s\n", title);
    printf(ROW_FMT, "figure", "mode", "crew", "  [min..max]", "anchor", "anchor value",
           "  [min..max]", "advantage", "goal");
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

static void range_cell(char *buf, size_t cap, bench_stat s)
{
    if (s.reps > 1)
        snprintf(buf, cap, "  [%.3g..%.3g]", s.min, s.max);
    else
        buf[0] = 0;
}

static void json_field(FILE *f, const char *key, const char *val)
{
    if (!val)
        return;
    fprintf(f, ",\"%s\":", key);
    json_str(f, val);
}

static void json_row(FILE *f, const bench_fig *r, double adv)
{
    fputs("{\"group\":", f);
    json_str(f, r->group);
    fputs(",\"name\":", f);
    json_str(f, r->name);
    fprintf(f, ",\"crew\":%.6g,\"unit\":", r->crew.med);
    json_str(f, r->unit);
    if (r->anchor) {
        fputs(",\"anchor\":", f);
        json_str(f, r->anchor);
        fprintf(f, ",\"anchor_value\":%.6g,\"advantage\":%.4f", r->anchor_value.med, adv);
    }
    fprintf(f, ",\"lower_is_better\":%s", r->lower_is_better ? "true" : "false");
    json_field(f, "goal", r->goal);
    json_field(f, "mode", r->mode);
    if (r->crew.reps > 0)
        fprintf(f, ",\"reps\":%d,\"crew_min\":%.6g,\"crew_max\":%.6g", r->crew.reps, r->crew.min,
                r->crew.max);
    if (r->anchor && r->anchor_value.reps > 0)
        fprintf(f, ",\"anchor_reps\":%d,\"anchor_min\":%.6g,\"anchor_max\":%.6g",
                r->anchor_value.reps, r->anchor_value.min, r->anchor_value.max);
    if (r->anchor) {
        json_field(f, "anchor_setting", r->anchor_setting);
        json_field(f, "anchor_role", r->anchor_role);
    }
    fputs("}\n", f);
}

void bench_report(const bench_fig *r)
{
    double adv = 0;
    double c = r->crew.med, a = r->anchor_value.med;
    if (r->anchor && a > 0 && c > 0)
        adv = r->lower_is_better ? a / c : c / a;
    char cv[32], cr[48], av[32], ar[48], ad[32];
    snprintf(cv, sizeof cv, "%.4g %s", c, r->unit);
    range_cell(cr, sizeof cr, r->crew);
    if (r->anchor) {
        snprintf(av, sizeof av, "%.4g %s", a, r->unit);
        range_cell(ar, sizeof ar, r->anchor_value);
        snprintf(ad, sizeof ad, "%.2fx", adv);
    } else {
        av[0] = ar[0] = ad[0] = 0;
    }
    printf(ROW_FMT, r->name, r->mode ? r->mode : "-", cv, cr, r->anchor ? r->anchor : "-", av,
           ar, ad, r->goal ? r->goal : "");
    fflush(stdout);
    FILE *f = json_out();
    if (!f)
        return;
    json_row(f, r, adv);
    fclose(f);
}

void bench_row(const char *group, const char *name, double crew_v, const char *unit,
               const char *anchor_name, double anchor_value, bool lower_is_better,
               const char *goal)
{
    bench_fig r = {.group = group,
                   .name = name,
                   .unit = unit,
                   .crew = bench_stat_one(crew_v),
                   .anchor = anchor_name,
                   .anchor_value = bench_stat_one(anchor_value),
                   .lower_is_better = lower_is_better,
                   .goal = goal};
    bench_report(&r);
}

void bench_missing(const char *group, const char *name, const char *why)
{
    printf("%-44s %-9s %12s %-19s %-34s %s\n", name, "-", "-", "", "missing", why);
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

/* ---------------------------------------------------------------- alternation */

static void settle(long ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    nanosleep(&ts, NULL);
}

/* One measured call of fn, right after its own warm-up; ns per op. */
static double timed(bench_fn fn, void *ctx, long iters)
{
    fn(ctx, iters / 10 + 1);
    double t0 = bench_now_ns();
    fn(ctx, iters);
    return (bench_now_ns() - t0) / (double)iters;
}

void bench_measure2_stat(bench_fn a, void *actx, bench_fn b, void *bctx, long iters, int reps,
                         long settle_ns, bench_stat *sa, bench_stat *sb)
{
    double va[64], vb[64];
    if (reps > 64)
        reps = 64;
    if (reps < 1)
        reps = 1;
    if (iters < 1)
        iters = 1;
    for (int r = 0; r < reps; r++) {
        va[r] = timed(a, actx, iters);
        settle(settle_ns);
        vb[r] = timed(b, bctx, iters);
        settle(settle_ns);
    }
    *sa = bench_stat_of(va, reps);
    *sb = bench_stat_of(vb, reps);
}

void bench_measure2(bench_fn a, void *actx, bench_fn b, void *bctx, long iters, int reps,
                    long settle_ns, double *ma, double *mb)
{
    bench_stat sa, sb;
    bench_measure2_stat(a, actx, b, bctx, iters, reps, settle_ns, &sa, &sb);
    *ma = sa.med;
    *mb = sb.med;
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

/* ---------------------------------------------------------------- children */

#define MAX_ARGS 64

/* The name part of an env entry "NAME=value" or "NAME": its length. */
static size_t env_name_len(const char *e)
{
    const char *eq = strchr(e, '=');
    return eq ? (size_t)(eq - e) : strlen(e);
}

/* environ without the names env touches, plus env's "NAME=value" entries.
 * The array is malloc'd; its strings are environ's and env's. */
static char **child_env(const char *const *env)
{
    size_t n = 0, m = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    for (const char *const *x = env; x && *x; x++)
        m++;
    char **out = calloc(n + m + 1, sizeof *out);
    if (!out)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        bool drop = false;
        size_t len = env_name_len(*e);
        for (const char *const *x = env; x && *x && !drop; x++)
            drop = env_name_len(*x) == len && strncmp(*e, *x, len) == 0;
        if (!drop)
            out[k++] = *e;
    }
    for (const char *const *x = env; x && *x; x++)
        if (strchr(*x, '='))
            out[k++] = (char *)*x;
    out[k] = NULL;
    return out;
}

/* Starts argv (argv[0] NULL: this program) with its stdout on a pipe, whose
 * read end goes to *out_fd. stdin is /dev/null unless in_fd >= 0. */
static pid_t child_start(const char *const *argv, const char *const *env, int in_fd, int *out_fd)
{
    const char *args[MAX_ARGS + 1];
    int n = 0;
    const char *path = argv[0] ? argv[0] : "/proc/self/exe";
    args[n++] = argv[0] ? argv[0] : program_invocation_name;
    for (const char *const *a = argv + 1; *a && n < MAX_ARGS; a++)
        args[n++] = *a;
    args[n] = NULL;
    char **envp = child_env(env);
    int fds[2];
    if (!envp || pipe2(fds, O_CLOEXEC) != 0) {
        free(envp);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    fflush(NULL);
    pid_t pid;
    int e = posix_spawnp(&pid, path, &fa, NULL, (char *const *)args, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(fds[1]);
    if (e != 0) {
        close(fds[0]);
        return -1;
    }
    *out_fd = fds[0];
    return pid;
}

static bool child_reaped_ok(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return false;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int bench_child_values(const char *const *argv, const char *const *env, bool echo, double *out,
                       int cap)
{
    int fd;
    pid_t pid = child_start(argv, env, -1, &fd);
    if (pid < 0)
        return -1;
    FILE *f = fdopen(fd, "r");
    int n = 0;
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        double v;
        if (line[0] == '#') {
            if (echo)
                fputs(line, stdout);
        } else if (sscanf(line, "value %lf", &v) == 1 && n < cap) {
            out[n++] = v;
        }
    }
    if (f)
        fclose(f);
    else
        close(fd);
    return child_reaped_ok(pid) ? n : -1;
}

void bench_child_print(double v)
{
    printf("value %.17g\n", v);
    fflush(stdout);
}

typedef struct timed_ctx {
    bench_fn fn;
    void *ctx;
    long iters;
} timed_ctx;

static double timed_sample(void *arg)
{
    timed_ctx *t = arg;
    return timed(t->fn, t->ctx, t->iters);
}

int bench_alternate(bench_fn fn, void *ctx, long iters, int reps, const bench_anchor *a,
                    const char *const *extra, bench_stat *crew, bench_stat *per)
{
    timed_ctx t = {fn, ctx, iters < 1 ? 1 : iters};
    return bench_alternate_sample(timed_sample, &t, reps, a, extra, crew, per);
}

int bench_alternate_sample(bench_sample_fn sample, void *ctx, int reps, const bench_anchor *a,
                           const char *const *extra, bench_stat *crew, bench_stat *per)
{
    if (reps > 64)
        reps = 64;
    if (reps < 1)
        reps = 1;
    int ns = a->n_settings;
    double vc[64];
    double *vs = calloc((size_t)ns * 64, sizeof *vs);
    int *got = calloc((size_t)ns, sizeof *got);
    if (!vs || !got)
        abort();
    for (int r = 0; r < reps; r++) {
        vc[r] = sample(ctx);
        for (int s = 0; s < ns; s++) {
            const char *argv[MAX_ARGS + 1];
            int k = 0;
            argv[k++] = a->argv[0]; /* NULL: this program */
            for (const char *const *x = a->argv + 1; *x && k < MAX_ARGS - 16; x++)
                argv[k++] = *x;
            for (const char *const *x = a->settings[s].args; x && *x && k < MAX_ARGS - 8; x++)
                argv[k++] = *x;
            for (const char *const *x = extra; x && *x && k < MAX_ARGS; x++)
                argv[k++] = *x;
            argv[k] = NULL;
            double v;
            /* The child's comments (versions, settings) are shown once. */
            if (bench_child_values(argv, a->settings[s].env, r == 0, &v, 1) == 1)
                vs[s * 64 + got[s]++] = v;
        }
    }
    *crew = bench_stat_of(vc, reps);
    int ok = 0;
    for (int s = 0; s < ns; s++) {
        per[s] = bench_stat_of(vs + s * 64, got[s]);
        ok += got[s] > 0;
    }
    free(vs);
    free(got);
    return ok;
}

int bench_report_anchor(const bench_fig *base, const bench_anchor *a, const bench_stat *per)
{
    int best = -1;
    for (int s = 0; s < a->n_settings; s++) {
        if (per[s].reps == 0)
            continue;
        bool better = base->lower_is_better ? per[s].med < per[best < 0 ? s : best].med
                                            : per[s].med > per[best < 0 ? s : best].med;
        if (best < 0 || better)
            best = s;
    }
    if (best < 0) {
        bench_missing(base->group, a->name, "every child failed");
        return -1;
    }
    printf("#   %s, each setting in a fresh process (median [min..max] %s):", a->name,
           base->unit);
    for (int s = 0; s < a->n_settings; s++)
        if (per[s].reps)
            printf("%s %s %.4g [%.3g..%.3g]", s ? ";" : "", a->settings[s].label, per[s].med,
                   per[s].min, per[s].max);
    printf("\n");
    char name[2][256];
    int idx[2] = {0, best};
    for (int k = 0; k < 2; k++) {
        int s = idx[k];
        if (per[s].reps == 0 || (k == 1 && best == 0))
            continue;
        bench_fig r = *base;
        const char *role = k == 0 ? (best == 0 ? "default, best" : "default") : "best";
        snprintf(name[k], sizeof name[k], "%s [%s: %s]", a->name, role, a->settings[s].label);
        r.anchor = name[k];
        r.anchor_value = per[s];
        r.anchor_setting = a->settings[s].label;
        r.anchor_role = role;
        if (k == 0 && best != 0)
            r.goal = NULL; /* goals are against the anchor at its best */
        bench_report(&r);
    }
    return best;
}

/* ---------------------------------------------------------------- memory helper */

#define FORK_PARENT_FLAG "--bench-raw-fork-parent"

static bool read_byte(int fd, char want)
{
    char c;
    ssize_t r;
    while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
        ;
    return r == 1 && c == want;
}

static bool write_byte(int fd, char c)
{
    ssize_t w;
    while ((w = write(fd, &c, 1)) < 0 && errno == EINTR)
        ;
    return w == 1;
}

/* The helper: a fresh copy of this program that only forks. Says 'r'
 * when up; on 'g' forks n children that block in read(2) on a hold pipe,
 * says 'f' when all n are running; on EOF on stdin ends them and exits. */
static void fork_parent_main(int n)
{
    int hold[2], ready[2];
    if (n < 1 || n > 1024 || pipe(hold) != 0 || pipe(ready) != 0)
        _exit(2);
    if (!write_byte(1, 'r') || !read_byte(0, 'g'))
        _exit(3);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    if (!pids)
        _exit(2);
    for (int k = 0; k < n; k++) {
        pids[k] = fork();
        if (pids[k] < 0)
            _exit(4);
        if (pids[k] == 0) {
            close(hold[1]);
            char c;
            if (!write_byte(ready[1], 'c'))
                _exit(1);
            while (read(hold[0], &c, 1) > 0) {
            }
            _exit(0);
        }
    }
    for (int k = 0; k < n; k++)
        if (!read_byte(ready[0], 'c'))
            _exit(5);
    if (!write_byte(1, 'f'))
        _exit(6);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    close(hold[1]);
    for (int k = 0; k < n; k++)
        waitpid(pids[k], NULL, 0);
    _exit(0);
}

void bench_child_dispatch(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], FORK_PARENT_FLAG) == 0)
        fork_parent_main(atoi(argv[2]));
}

static double tree_pss_kib(void)
{
    crew_mem_usage u;
    if (crew_mem_usage_tree(0, &u) != 0)
        return -1;
    return (double)u.pss / 1024.0;
}

double bench_raw_fork_child_kib(int n)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", n);
    const char *argv[] = {NULL, FORK_PARENT_FLAG, nbuf, NULL};
    int out;
    pid_t pid = child_start(argv, NULL, in[0], &out);
    close(in[0]);
    if (pid < 0) {
        close(in[1]);
        return -1;
    }
    double kib = -1;
    if (read_byte(out, 'r')) {
        double before = tree_pss_kib();
        if (write_byte(in[1], 'g') && read_byte(out, 'f')) {
            settle(50L * 1000 * 1000); /* as crew's pools are measured: after a pause */
            double after = tree_pss_kib();
            if (before >= 0 && after >= 0)
                kib = (after - before) / n;
        }
    }
    close(in[1]); /* the helper ends its children and exits */
    close(out);
    if (!child_reaped_ok(pid))
        kib = -1;
    return kib;
}

/* ---------------------------------------------------------------- pinning */

static cpu_set_t start_set;
static bool start_known;

static void know_start(void)
{
    if (!start_known && sched_getaffinity(0, sizeof start_set, &start_set) == 0)
        start_known = true;
}

int bench_cpu(int index)
{
    know_start();
    if (!start_known)
        return -1;
    for (int i = 0, k = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &start_set) && k++ == index)
            return i;
    return -1;
}

static int pin_tid(int tid, int cpu)
{
    if (cpu < 0)
        return sched_setaffinity(tid, sizeof start_set, &start_set);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(tid, sizeof one, &one);
}

int bench_pin(int pid, int cpu)
{
    know_start();
    if (!start_known)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid ? pid : (int)getpid());
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && pin_tid(atoi(e->d_name), cpu) != 0 && errno != ESRCH)
            rc = -1;
    closedir(d);
    return rc;
}

int bench_pin_children(int cpu)
{
    pid_t pids[256];
    size_t n = 0;
    if (crew_proc_children(0, 0, pids, 256, &n) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && i < 256; i++)
        if (bench_pin(pids[i], cpu) != 0)
            rc = -1;
    return rc;
}
