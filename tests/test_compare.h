/*
 * test_compare.h -- what the `crew compare` tests share: running the CLI as a
 * child with pipes, a small JSON parser with a JSON-Schema subset validator
 * (enough for docs/compare.schema.json), and an XML well-formedness check
 * for the SVG plot.
 */
#ifndef TEST_COMPARE_H
#define TEST_COMPARE_H

#include "crew_test.h"

#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <time.h>

/* ---------------------------------------------------------------- running */
typedef struct cli_run {
    char *out, *err;
    size_t out_len, err_len;
    int status;   /* raw wait status */
    int exit;     /* exit code, or -signal */
} cli_run;

static void buf_add(char **b, size_t *len, const char *src, size_t n)
{
    *b = realloc(*b, *len + n + 1);
    CHECK(*b != NULL);
    memcpy(*b + *len, src, n);
    *len += n;
    (*b)[*len] = 0;
}

/* Runs CREW_CLI_PATH with args (NULL-ended), stdout and stderr captured.
 * Kills it and fails the test if it runs longer than limit seconds: a hang
 * is a failure, never a stuck test. */
static inline cli_run run_cli(double limit, const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = CREW_CLI_PATH;
    for (; args[n - 1] && n < 63; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    int po[2], pe[2];
    CHECK(pipe2(po, O_CLOEXEC) == 0);
    CHECK(pipe2(pe, O_CLOEXEC) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        /* Under a sanitizer, its SIGSEGV handler would turn the deliberate
         * crashes (the crash demo, task_crash) into a report and exit(1);
         * the tests check what compare does with a real crash, so the
         * signal must stay a signal. Nothing else changes. */
        static const char *const vars[] = {"ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"};
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
            char val[1024];
            const char *old = getenv(vars[i]);
            snprintf(val, sizeof val, "%s%shandle_segv=0", old ? old : "", old && *old ? ":" : "");
            setenv(vars[i], val, 1);
        }
        execv(CREW_CLI_PATH, (char **)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    cli_run r = {0};
    r.out = calloc(1, 1);
    r.err = calloc(1, 1);
    struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (open_fds > 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double left = limit - ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
        if (left <= 0) {
            kill(pid, SIGKILL);
            test_wait(pid);
            TEST_FAIL("crew %s did not finish within %.0f s", args[0] ? args[0] : "", limit);
        }
        int pr = poll(pf, 2, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        CHECK(pr >= 0);
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[65536];
            ssize_t got = read(pf[i].fd, buf, sizeof buf);
            if (got > 0) {
                if (i == 0)
                    buf_add(&r.out, &r.out_len, buf, (size_t)got);
                else
                    buf_add(&r.err, &r.err_len, buf, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
    }
    r.status = test_wait(pid);
    r.exit = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -WTERMSIG(r.status);
    return r;
}

static inline void cli_run_free(cli_run *r)
{
    free(r->out);
    free(r->err);
}

static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Exits with `code`, prints exactly one line on stderr starting with
 * "crew compare: " and containing `needle`, nothing on stdout. */
#define CHECK_ONE_LINE_ERROR(r, code, needle)                                  \
    do {                                                                       \
        if ((r).exit != (code))                                                \
            TEST_FAIL("exit %d, expected %d; stderr: %s", (r).exit, (code), (r).err); \
        if (count_lines((r).err) != 1)                                         \
            TEST_FAIL("stderr is not one line: [%s]", (r).err);                \
        CHECK(strncmp((r).err, "crew compare: ", 14) == 0);                   \
        if (!strstr((r).err, (needle)))                                        \
            TEST_FAIL("stderr [%s] lacks [%s]", (r).err, (needle));            \
        CHECK((r).out_len == 0);                                               \
    } while (0)

/* ---------------------------------------------------------------- JSON */
typedef enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jval {
    jtype t;
    bool b;
    double num;
    bool is_int;
    char *str;
    struct jval **items; /* array elements or object values */
    char **keys;         /* object keys */
    size_t n;
} jval;

typedef struct jparser {
    const char *p;
    const char *err;
} jparser;

static void jws(jparser *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')
        j->p++;
}

static jval *jnew(jtype t)
{
    jval *v = calloc(1, sizeof *v);
    CHECK(v != NULL);
    v->t = t;
    return v;
}

static jval *jparse_value(jparser *j, int depth);

static char *jparse_string(jparser *j)
{
    if (*j->p != '"') {
        j->err = "string expected";
        return NULL;
    }
    j->p++;
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    CHECK(s != NULL);
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c == 0 || c < 0x20) {
            j->err = "bad character in string";
            free(s);
            return NULL;
        }
        if (len + 8 >= cap) {
            cap *= 2;
            s = realloc(s, cap);
            CHECK(s != NULL);
        }
        if (c == '\\') {
            j->p++;
            switch (*j->p) {
            case '"': case '\\': case '/': s[len++] = *j->p; break;
            case 'b': s[len++] = '\b'; break;
            case 'f': s[len++] = '\f'; break;
            case 'n': s[len++] = '\n'; break;
            case 'r': s[len++] = '\r'; break;
            case 't': s[len++] = '\t'; break;
            case 'u':
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)j->p[i])) {
                        j->err = "bad \\u escape";
                        free(s);
                        return NULL;
                    }
                s[len++] = '?'; /* the tests never need the code point */
                j->p += 4;
                break;
            default:
                j->err = "bad escape";
                free(s);
                return NULL;
            }
            j->p++;
        } else {
            s[len++] = (char)c;
            j->p++;
        }
    }
    j->p++;
    s[len] = 0;
    return s;
}

static jval *jparse_value(jparser *j, int depth)
{
    jws(j);
    if (depth > 64) {
        j->err = "too deep";
        return NULL;
    }
    const char *p = j->p;
    if (*p == '{' || *p == '[') {
        bool obj = *p == '{';
        jval *v = jnew(obj ? J_OBJ : J_ARR);
        j->p++;
        jws(j);
        if (*j->p == (obj ? '}' : ']')) {
            j->p++;
            return v;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                jws(j);
                if (!(key = jparse_string(j)))
                    return NULL;
                jws(j);
                if (*j->p != ':') {
                    j->err = "':' expected";
                    return NULL;
                }
                j->p++;
            }
            jval *item = jparse_value(j, depth + 1);
            if (!item)
                return NULL;
            v->items = realloc(v->items, (v->n + 1) * sizeof *v->items);
            v->keys = realloc(v->keys, (v->n + 1) * sizeof *v->keys);
            CHECK(v->items && v->keys);
            v->items[v->n] = item;
            v->keys[v->n] = key;
            v->n++;
            jws(j);
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == (obj ? '}' : ']')) {
                j->p++;
                return v;
            }
            j->err = "',' or end of container expected";
            return NULL;
        }
    }
    if (*p == '"') {
        jval *v = jnew(J_STR);
        if (!(v->str = jparse_string(j)))
            return NULL;
        return v;
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        jval *v = jnew(J_BOOL);
        v->b = *p == 't';
        j->p += v->b ? 4 : 5;
        return v;
    }
    if (strncmp(p, "null", 4) == 0) {
        j->p += 4;
        return jnew(J_NULL);
    }
    if (*p == '-' || isdigit((unsigned char)*p)) {
        /* JSON's number grammar: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
        const char *q = p;
        if (*q == '-')
            q++;
        if (*q == '0')
            q++;
        else if (isdigit((unsigned char)*q))
            while (isdigit((unsigned char)*q))
                q++;
        else {
            j->err = "bad number";
            return NULL;
        }
        bool is_int = true;
        if (*q == '.') {
            is_int = false;
            q++;
            if (!isdigit((unsigned char)*q)) {
                j->err = "bad fraction";
                return NULL;
            }
            while (isdigit((unsigned char)*q))
                q++;
        }
        if (*q == 'e' || *q == 'E') {
            is_int = false;
            q++;
            if (*q == '+' || *q == '-')
                q++;
            if (!isdigit((unsigned char)*q)) {
                j->err = "bad exponent";
                return NULL;
            }
            while (isdigit((unsigned char)*q))
                q++;
        }
        jval *v = jnew(J_NUM);
        v->num = strtod(p, NULL);
        v->is_int = is_int || (v->num == floor(v->num) && fabs(v->num) < 9e15);
        j->p = q;
        return v;
    }
    j->err = "value expected";
    return NULL;
}

/* Parses a whole document; fails the test with the position on error. */
static inline jval *json_parse(const char *text)
{
    jparser j = {text, NULL};
    jval *v = jparse_value(&j, 0);
    if (v) {
        jws(&j);
        if (*j.p)
            j.err = "trailing characters";
    }
    if (j.err)
        TEST_FAIL("JSON: %s at offset %ld: [%.40s]", j.err, (long)(j.p - text), j.p);
    return v;
}

static inline jval *jget(const jval *o, const char *key)
{
    if (!o || o->t != J_OBJ)
        return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return o->items[i];
    return NULL;
}

/* jpath(doc, "models.threads.roundtrip_us") */
static inline jval *jpath(const jval *v, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const jval *cur = v;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && cur; k = strtok_r(NULL, ".", &save)) {
        if (cur->t == J_ARR) {
            size_t i = (size_t)atoi(k);
            cur = i < cur->n ? cur->items[i] : NULL;
        } else {
            cur = jget(cur, k);
        }
    }
    return (jval *)cur;
}

static inline double jnum_at(const jval *v, const char *path)
{
    const jval *x = jpath(v, path);
    if (!x || x->t != J_NUM)
        TEST_FAIL("%s is not a number", path);
    return x->num;
}

static inline void json_free(jval *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        json_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

/* ---------------------------------------------------------------- schema
 * The subset of JSON Schema (2020-12) that docs/compare.schema.json uses:
 * type (name or list), const, enum, required, properties, items, minimum,
 * and $ref to "#/$defs/NAME". Unknown keywords ($schema, title,
 * description, ...) are annotations and ignored. */
static bool jequal(const jval *a, const jval *b)
{
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case J_NULL: return true;
    case J_BOOL: return a->b == b->b;
    case J_NUM: return a->num == b->num;
    case J_STR: return strcmp(a->str, b->str) == 0;
    default: return false; /* the schema never compares containers */
    }
}

static bool type_is(const jval *v, const char *t)
{
    if (strcmp(t, "object") == 0) return v->t == J_OBJ;
    if (strcmp(t, "array") == 0) return v->t == J_ARR;
    if (strcmp(t, "string") == 0) return v->t == J_STR;
    if (strcmp(t, "number") == 0) return v->t == J_NUM;
    if (strcmp(t, "integer") == 0) return v->t == J_NUM && v->is_int;
    if (strcmp(t, "boolean") == 0) return v->t == J_BOOL;
    if (strcmp(t, "null") == 0) return v->t == J_NULL;
    TEST_FAIL("schema: unknown type %s", t);
}

/* Returns NULL if v is valid, else a static message naming the path. */
static inline const char *schema_check(const jval *root, const jval *s, const jval *v, const char *path)
{
    static char msg[512];
    const jval *k;
    if ((k = jget(s, "$ref")) != NULL) {
        CHECK(k->t == J_STR && strncmp(k->str, "#/$defs/", 8) == 0);
        const jval *def = jget(jget(root, "$defs"), k->str + 8);
        if (!def)
            TEST_FAIL("schema: no definition %s", k->str);
        return schema_check(root, def, v, path);
    }
    if ((k = jget(s, "type")) != NULL) {
        bool ok = false;
        if (k->t == J_STR)
            ok = type_is(v, k->str);
        else
            for (size_t i = 0; i < k->n; i++)
                ok = ok || type_is(v, k->items[i]->str);
        if (!ok) {
            snprintf(msg, sizeof msg, "%s: wrong type", path);
            return msg;
        }
    }
    if ((k = jget(s, "const")) != NULL && !jequal(k, v)) {
        snprintf(msg, sizeof msg, "%s: not the constant", path);
        return msg;
    }
    if ((k = jget(s, "enum")) != NULL) {
        bool ok = false;
        for (size_t i = 0; i < k->n; i++)
            ok = ok || jequal(k->items[i], v);
        if (!ok) {
            snprintf(msg, sizeof msg, "%s: not one of the enum", path);
            return msg;
        }
    }
    if ((k = jget(s, "minimum")) != NULL && v->t == J_NUM && v->num < k->num) {
        snprintf(msg, sizeof msg, "%s: %g below minimum %g", path, v->num, k->num);
        return msg;
    }
    if (v->t == J_OBJ) {
        if ((k = jget(s, "required")) != NULL)
            for (size_t i = 0; i < k->n; i++)
                if (!jget(v, k->items[i]->str)) {
                    snprintf(msg, sizeof msg, "%s: required key '%s' missing", path, k->items[i]->str);
                    return msg;
                }
        if ((k = jget(s, "properties")) != NULL)
            for (size_t i = 0; i < k->n; i++) {
                const jval *child = jget(v, k->keys[i]);
                if (!child)
                    continue;
                char sub[256];
                snprintf(sub, sizeof sub, "%s.%s", path, k->keys[i]);
                const char *e = schema_check(root, k->items[i], child, sub);
                if (e)
                    return e;
            }
    }
    if (v->t == J_ARR && (k = jget(s, "items")) != NULL)
        for (size_t i = 0; i < v->n; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            const char *e = schema_check(root, k, v->items[i], sub);
            if (e)
                return e;
        }
    return NULL;
}

static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        TEST_FAIL("cannot open %s", path);
    char *buf = NULL;
    size_t len = 0;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&buf, &len, chunk, n);
    fclose(f);
    return buf ? buf : calloc(1, 1);
}

/* docs/compare.schema.json, found from this source file's path. */
static inline jval *load_schema(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    CHECK(slash != NULL);
    snprintf(slash, sizeof path - (size_t)(slash - path), "/../docs/compare.schema.json");
    char *text = read_file(path);
    jval *s = json_parse(text);
    free(text);
    return s;
}

/* ---------------------------------------------------------------- XML
 * Well-formedness, as much as an SVG writer can get wrong: one root element,
 * tags nest and match, attributes are quoted and unique per element,
 * entities are the predefined or numeric ones, no '<' or stray '&' in text. */
static inline const char *xml_check(const char *s, int *elements)
{
    static char msg[256];
    const char *stack[256];
    size_t stack_len[256];
    int depth = 0, roots = 0;
    *elements = 0;
    const char *p = s;
    if (strncmp(p, "<?xml", 5) == 0) {
        p = strstr(p, "?>");
        if (!p)
            return "unterminated XML declaration";
        p += 2;
    }
    while (*p) {
        if (*p == '<') {
            if (strncmp(p, "<!--", 4) == 0) {
                p = strstr(p, "-->");
                if (!p)
                    return "unterminated comment";
                p += 3;
                continue;
            }
            bool closing = p[1] == '/';
            const char *name = p + (closing ? 2 : 1), *q = name;
            if (!(isalpha((unsigned char)*q) || *q == '_'))
                return "bad tag name";
            while (isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == ':' || *q == '.')
                q++;
            size_t nlen = (size_t)(q - name);
            if (closing) {
                while (isspace((unsigned char)*q))
                    q++;
                if (*q != '>')
                    return "bad closing tag";
                if (depth == 0 || stack_len[depth - 1] != nlen || strncmp(stack[depth - 1], name, nlen) != 0) {
                    snprintf(msg, sizeof msg, "closing tag </%.*s> does not match", (int)nlen, name);
                    return msg;
                }
                depth--;
                p = q + 1;
                continue;
            }
            /* attributes */
            char seen[64][64];
            int nseen = 0;
            for (;;) {
                bool ws = false;
                while (isspace((unsigned char)*q))
                    q++, ws = true;
                if (*q == '>' || (q[0] == '/' && q[1] == '>'))
                    break;
                if (!ws)
                    return "attributes must be separated by space";
                const char *an = q;
                while (isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == ':' || *q == '.')
                    q++;
                if (q == an || *q != '=')
                    return "bad attribute";
                if (nseen < 64) {
                    snprintf(seen[nseen], sizeof seen[0], "%.*s", (int)(q - an), an);
                    for (int i = 0; i < nseen; i++)
                        if (strcmp(seen[i], seen[nseen]) == 0)
                            return "duplicate attribute";
                    nseen++;
                }
                q++;
                char quote = *q;
                if (quote != '"' && quote != '\'')
                    return "unquoted attribute value";
                q++;
                while (*q && *q != quote) {
                    if (*q == '<')
                        return "'<' in attribute value";
                    q++;
                }
                if (!*q)
                    return "unterminated attribute value";
                q++;
            }
            (*elements)++;
            if (depth == 0 && ++roots > 1)
                return "more than one root element";
            if (*q == '/') {
                p = q + 2;
            } else {
                if (depth == 256)
                    return "too deep";
                stack[depth] = name;
                stack_len[depth] = nlen;
                depth++;
                p = q + 1;
            }
        } else if (*p == '&') {
            const char *e = p + 1;
            if (*e == '#') {
                e++;
                if (*e == 'x')
                    e++;
                if (!isxdigit((unsigned char)*e))
                    return "bad character reference";
                while (isxdigit((unsigned char)*e))
                    e++;
            } else if (strncmp(e, "amp", 3) == 0 || strncmp(e, "quot", 4) == 0 || strncmp(e, "apos", 4) == 0) {
                e += e[0] == 'a' && e[1] == 'm' ? 3 : 4;
            } else if (strncmp(e, "lt", 2) == 0 || strncmp(e, "gt", 2) == 0) {
                e += 2;
            } else {
                return "unknown entity";
            }
            if (*e != ';')
                return "entity without ';'";
            p = e + 1;
        } else {
            if (depth == 0 && !isspace((unsigned char)*p))
                return "text outside the root element";
            p++;
        }
    }
    if (depth != 0)
        return "unclosed element";
    if (roots != 1)
        return "no root element";
    return NULL;
}

#endif /* TEST_COMPARE_H */
