/*
 * items.c -- the per-item input of `crew compare --task`.
 *
 * DESIGN
 *  Item i's argument is, in order:
 *   - with --index, the item's index as 8 bytes (uint64_t, host byte order);
 *   - record i mod R of --args FILE (R records: fixed-size with --record N,
 *     else split at --delim, a newline by default, the delimiter left out),
 *     or the --arg bytes (R = 1).
 *  All items live in one crew_shm region that every measuring child maps
 *  (it is created before any child and reaches them by fd): a header, a
 *  table of (offset, length) per item, then the bytes. When every item has
 *  the same length the bytes are contiguous records (item i at data_off +
 *  i * stride), which is what crew_pool_map needs; a pool given the region
 *  itself reads them in place (by reference). One large argument shared by
 *  every item (no --index, one record, more than 64 MiB in all) is stored
 *  once and every table entry points at it.
 *  Input files are read whole with one size check first, so the 64 MiB
 *  limit of an argument is exact: a file of exactly 64 MiB is accepted.
 */
#include "search.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ITEMS_MAGIC 0x534d455449575243ull /* "CRWITEMS" */
#define ITEMS_TABLE_OFF 64
#define ITEMS_DATA_MAX ((size_t)512 << 20)
#define ARGS_FILE_MAX ((size_t)1 << 30)

typedef struct items_hdr {
    uint64_t magic, n, table_off;
} items_hdr;

int items_read_file(const char *path, size_t limit, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        cli_error("cannot read %s: not a regular file", path);
        return CLI_EXIT_USAGE;
    }
    if ((uint64_t)st.st_size > limit) {
        fclose(f);
        char b[32];
        cli_error("%s is %lld bytes, more than %s", path, (long long)st.st_size, fmt_bytes(b, sizeof b, (double)limit));
        return CLI_EXIT_USAGE;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return CLI_EXIT_FAILURE;
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    bool bad = got != size || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        cli_error("error reading %s", path);
        return CLI_EXIT_USAGE;
    }
    *out = buf;
    *len = size;
    return CLI_EXIT_OK;
}

/* The source records: pointers into `file` (or the --arg bytes). */
typedef struct records {
    const unsigned char **p;
    size_t *len;
    size_t n;
} records;

static int split_records(records *rs, const unsigned char *data, size_t size, const cmp_input *in)
{
    size_t cap = 0;
    if (in->record) {
        if (size % in->record) {
            cli_error("--args %s: %zu bytes is not a whole number of %zu-byte records", in->args_path, size,
                      in->record);
            return CLI_EXIT_USAGE;
        }
        cap = size / in->record;
    } else {
        cap = 1;
        for (size_t i = 0; i < size; i++)
            cap += data[i] == (unsigned char)in->delim;
    }
    rs->p = calloc(cap ? cap : 1, sizeof *rs->p);
    rs->len = calloc(cap ? cap : 1, sizeof *rs->len);
    if (!rs->p || !rs->len)
        return CLI_EXIT_FAILURE;
    if (in->record) {
        for (size_t off = 0; off < size; off += in->record) {
            rs->p[rs->n] = data + off;
            rs->len[rs->n++] = in->record;
        }
    } else {
        size_t start = 0;
        for (size_t i = 0; i < size; i++)
            if (data[i] == (unsigned char)in->delim) {
                rs->p[rs->n] = data + start;
                rs->len[rs->n++] = i - start;
                start = i + 1;
            }
        if (start < size) { /* the last record, without a final delimiter */
            rs->p[rs->n] = data + start;
            rs->len[rs->n++] = size - start;
        }
    }
    for (size_t k = 0; k < rs->n; k++)
        if (rs->len[k] > CMP_ARG_MAX) {
            cli_error("--args %s: record %zu is %zu bytes, more than 64 MiB", in->args_path, k, rs->len[k]);
            return CLI_EXIT_USAGE;
        }
    if (rs->n == 0) {
        cli_error("--args %s: no records", in->args_path);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

const cmp_item_ref *items_table(const crew_shm *shm)
{
    const items_hdr *h = crew_shm_ptr(shm);
    return (const cmp_item_ref *)((const char *)h + h->table_off);
}

/* How many items fit in the data limit; n stays when all fit. */
static size_t fit_items(const records *rs, size_t n, size_t pre, bool shared)
{
    if (shared)
        return n;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += pre + rs->len[i % rs->n];
        if (total > ITEMS_DATA_MAX)
            return i ? i : 1;
    }
    return n;
}

static int lay_out(cmp_items *it, const records *rs, size_t n, size_t pre)
{
    size_t one = pre + rs->len[0];
    bool shared = !pre && rs->n == 1 && (double)n * (double)one > (double)CMP_ARG_MAX;
    n = fit_items(rs, n, pre, shared);
    size_t data_off = ITEMS_TABLE_OFF + n * sizeof(cmp_item_ref);
    data_off = (data_off + 63) & ~(size_t)63;
    size_t data = 0;
    it->min_len = SIZE_MAX;
    it->max_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = pre + rs->len[i % rs->n];
        if (!shared || i == 0)
            data += l;
        it->min_len = l < it->min_len ? l : it->min_len;
        it->max_len = l > it->max_len ? l : it->max_len;
    }
    int rc = crew_shm_create(&it->shm, data_off + data + 64, &(crew_shm_options){"crew-compare-items", 0});
    if (rc) {
        cli_error("cannot make the items' region (%zu bytes): %s", data_off + data, crew_strerror(rc));
        return CLI_EXIT_FAILURE;
    }
    unsigned char *base = crew_shm_ptr(it->shm);
    items_hdr *h = (items_hdr *)base;
    h->magic = ITEMS_MAGIC;
    h->n = n;
    h->table_off = ITEMS_TABLE_OFF;
    cmp_item_ref *tab = (cmp_item_ref *)(base + ITEMS_TABLE_OFF);
    size_t off = data_off;
    for (size_t i = 0; i < n; i++) {
        const size_t k = i % rs->n, l = pre + rs->len[k];
        tab[i].off = shared ? data_off : off;
        tab[i].len = l;
        if (shared && i > 0)
            continue;
        if (pre) {
            uint64_t idx = i;
            memcpy(base + off, &idx, sizeof idx);
        }
        if (rs->len[k])
            memcpy(base + off + pre, rs->p[k], rs->len[k]);
        off += l;
    }
    it->n = n;
    it->nrec = rs->n;
    it->shared = shared;
    it->fixed = !shared && it->min_len == it->max_len;
    it->stride = it->fixed ? it->max_len : 0;
    it->data_off = data_off;
    return CLI_EXIT_OK;
}

int items_build(cmp_items *it, const cmp_input *in, long max_items)
{
    memset(it, 0, sizeof *it);
    records rs = {0};
    unsigned char *file = NULL;
    size_t size = 0;
    int ex = CLI_EXIT_OK;
    const unsigned char *one = in->arg;
    size_t one_len = in->arg ? in->arg_len : 0;
    if (in->args_path) {
        if ((ex = items_read_file(in->args_path, ARGS_FILE_MAX, &file, &size)) != 0)
            return ex;
        ex = split_records(&rs, file, size, in);
    } else {
        rs.p = malloc(sizeof *rs.p);
        rs.len = malloc(sizeof *rs.len);
        if (!rs.p || !rs.len)
            ex = CLI_EXIT_FAILURE;
        else {
            rs.p[0] = one ? one : (const unsigned char *)"";
            rs.len[0] = one_len;
            rs.n = 1;
        }
    }
    if (ex == 0) {
        long n = in->items ? in->items : in->args_path ? (long)rs.n : max_items;
        if (n > CMP_ITEMS_MAX)
            n = CMP_ITEMS_MAX;
        it->index = in->index;
        it->n_given = in->items || in->args_path;
        ex = lay_out(it, &rs, (size_t)n, in->index ? sizeof(uint64_t) : 0);
        if (ex == 0) {
            char b[32];
            if (in->args_path)
                snprintf(it->desc, sizeof it->desc, "%zu records of %s%s%s", rs.n, in->args_path,
                         in->index ? ", each after its 8-byte index" : "",
                         it->n != rs.n ? (it->n > rs.n ? ", repeated" : ", the first ones") : "");
            else
                snprintf(it->desc, sizeof it->desc, "%s argument%s", fmt_bytes(b, sizeof b, (double)one_len),
                         in->index ? " after each item's 8-byte index" : " for every item");
        }
    }
    free(rs.p);
    free(rs.len);
    free(file);
    return ex;
}

void items_free(cmp_items *it)
{
    if (it->shm)
        crew_shm_destroy(it->shm);
    it->shm = NULL;
}
