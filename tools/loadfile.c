/* Load matrices from JSON and CSV text. JSON is read one layer at a time:
 * jansson decodes each value (so the grammar is RFC 8259's, not ours),
 * and only the outer array or object is walked here, so memory follows
 * the matrix rather than the text. Positions are tracked as jansson
 * counts them (lines from 1, columns in characters from 1). */
#include "loadfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every value read with jansson: one value from the current place (text
 * may follow), whole numbers as doubles (no "too big integer"). */
#define DECODE_FLAGS                                                       \
    (JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_DECODE_INT_AS_REAL | \
     JSON_REJECT_DUPLICATES)

typedef struct reader {
    const char *s, *end, *name; /* s: the next unread byte */
    int line, col;              /* where s is */
    char *err;
    size_t errlen;
    float *data;
    size_t n, cap;
    int layers, experts; /* experts: -1 until the first layer */
    /* a 3-D file ([samples][layers][experts]): the sample being read
     * (-1 in a 2-D file) and the layers read before it */
    int sample, sample_base;
    char at[48]; /* "layer 3" or "sample 1, layer 3": see here() */
} reader;

/* The layer being read, as the file counts it: within its sample in a
 * 3-D file. */
static const char *here(reader *r, int layer)
{
    if (r->sample < 0)
        snprintf(r->at, sizeof r->at, "layer %d", layer);
    else
        snprintf(r->at, sizeof r->at, "sample %d, layer %d", r->sample,
                 layer - r->sample_base);
    return r->at;
}

static int fail(reader *r, int line, int col, const char *fmt, ...)
{
    int n = snprintf(r->err, r->errlen, "%s:%d:%d: ", r->name, line, col);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < r->errlen)
        vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Moves past n bytes; UTF-8 continuation bytes take no column. */
static void step(reader *r, size_t n)
{
    for (size_t i = 0; i < n && r->s < r->end; i++, r->s++) {
        unsigned char c = (unsigned char)*r->s;
        if (c == '\n') {
            r->line++;
            r->col = 1;
        } else if ((c & 0xC0) != 0x80) {
            r->col++;
        }
    }
}

static void skip_ws(reader *r)
{
    while (r->s < r->end && (*r->s == ' ' || *r->s == '\t' ||
                             *r->s == '\n' || *r->s == '\r'))
        step(r, 1);
}

static int peek(const reader *r)
{
    return r->s < r->end ? (unsigned char)*r->s : -1;
}

/* Why the library would refuse load d, or NULL: checked here so that the
 * error names the place in the file, and the layer and expert as the
 * file counts them (before any all-zero layer is dropped). */
static const char *load_problem(double d)
{
    float f = (float)d;
    if (d != d)
        return "is not a number";
    if (d < 0)
        return "is negative: loads are token counts, >= 0";
    if (isinf(f))
        return "is too large for a float load (largest 3.4e38)";
    if (d > 0 && f == 0)
        return "is too small for a float load: it would round to 0";
    return NULL;
}

static int bad_load(reader *r, double d, const char *why, size_t expert,
                    int line, int col)
{
    return fail(r, line, col, "load %.9g (%s, expert %zu) %s", d,
                here(r, r->layers), expert, why);
}

static int push_load(reader *r, double d, int line, int col)
{
    if (r->n == LOAD_MAX_VALUES)
        return fail(r, line, col, "more than %zu loads: the limit of this "
                    "reader", LOAD_MAX_VALUES);
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 1024;
        float *nd = realloc(r->data, cap * sizeof *nd);
        if (!nd)
            return fail(r, line, col, "out of memory");
        r->data = nd;
        r->cap = cap;
    }
    r->data[r->n++] = (float)d;
    return 0;
}

/* Ends the current layer of `count` values that started at line:col. */
static int end_layer(reader *r, size_t count, int line, int col)
{
    if (count == 0)
        return fail(r, line, col, "%s has no values", here(r, r->layers));
    if (count > LOAD_MAX_EXPERTS)
        return fail(r, line, col, "%s has %zu values: at most %d "
                    "experts", here(r, r->layers), count, LOAD_MAX_EXPERTS);
    if (r->experts < 0)
        r->experts = (int)count;
    else if (count != (size_t)r->experts)
        return fail(r, line, col, "%s has %zu values, layer 0 has %d: "
                    "every layer needs the same number of experts",
                    here(r, r->layers), count, r->experts);
    r->layers++;
    return 0;
}

/* ---- JSON --------------------------------------------------------- */

/* One JSON value from r->s, by jansson; NULL after an error. */
static json_t *decode(reader *r)
{
    json_error_t e;
    json_t *v = json_loadb(r->s, (size_t)(r->end - r->s), DECODE_FLAGS, &e);
    if (!v) {
        /* jansson counts from where it started. */
        int line = e.line < 1 ? r->line : r->line + e.line - 1;
        int col = e.line < 1 ? r->col
                  : e.line == 1 ? r->col + e.column - 1 : e.column;
        fail(r, line, col, "%s", e.text);
        return NULL;
    }
    step(r, (size_t)e.position);
    return v;
}

/* Where item `want` of the array at text (valid JSON: jansson read it)
 * begins, for a message about that one value. */
static void locate_item(const char *text, const char *end, size_t want,
                        int *line, int *col)
{
    reader r = {.s = text, .end = end, .line = *line, .col = *col};
    size_t item = 0;
    int depth = 1;
    step(&r, 1); /* the opening '[' */
    while (r.s < r.end) {
        int c = peek(&r);
        int blank = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        if (depth == 1 && item == want && !blank && c != ',')
            break;
        if (c == '"') {
            step(&r, 1); /* past the string, escapes included */
            while (r.s < r.end && *r.s != '"')
                step(&r, *r.s == '\\' ? 2 : 1);
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c == ',' && depth == 1) {
            item++;
        }
        step(&r, 1);
    }
    *line = r.line;
    *col = r.col;
}

static int json_layer(reader *r)
{
    int line = r->line, col = r->col;
    const char *start = r->s;
    if (peek(r) != '[')
        return fail(r, line, col, "expected %s: an array of numbers",
                    here(r, r->layers));
    json_t *row = decode(r);
    if (!row)
        return -1;
    size_t count = json_array_size(row);
    int rc = 0;
    for (size_t e = 0; e < count && rc == 0; e++) {
        json_t *v = json_array_get(row, e);
        double d = json_number_value(v);
        const char *why = json_is_number(v) ? load_problem(d) : NULL;
        if (json_is_number(v) && !why) {
            rc = push_load(r, d, line, col);
            continue;
        }
        /* Only now is the value's place worth finding. */
        int vl = line, vc = col;
        locate_item(start, r->s, e, &vl, &vc);
        rc = why ? bad_load(r, d, why, e, vl, vc)
                 : fail(r, vl, vc, "expected a number (%s, expert "
                        "%zu)", here(r, r->layers), e);
    }
    json_decref(row);
    return rc ? rc : end_layer(r, count, line, col);
}

/* [[...], [...], ...] */
static int json_layers(reader *r)
{
    int line = r->line, col = r->col;
    if (peek(r) != '[')
        return fail(r, line, col, "expected an array of layers (arrays of "
                    "numbers)");
    step(r, 1);
    skip_ws(r);
    if (peek(r) == ']')
        return fail(r, line, col, "the array of layers is empty");
    for (;;) {
        if (json_layer(r))
            return -1;
        skip_ws(r);
        int c = peek(r);
        if (c != ',' && c != ']')
            return fail(r, r->line, r->col,
                        c < 0 ? "end of input: expected ',' or ']'"
                              : "expected ',' or ']' after %s",
                        here(r, r->layers - 1));
        step(r, 1);
        if (c == ']')
            return 0;
        skip_ws(r);
    }
}

/* Whether the array at r->s nests three deep ("[[[", blanks allowed
 * between): a window of samples, [samples][layers][experts]. */
static int three_deep(const reader *r)
{
    const char *p = r->s;
    for (int depth = 0; depth < 3; depth++) {
        while (p < r->end && (*p == ' ' || *p == '\t' || *p == '\n' ||
                              *p == '\r'))
            p++;
        if (p == r->end || *p != '[')
            return 0;
        p++;
    }
    return 1;
}

/* [[[...], ...], [[...], ...], ...]: samples of as many layers each. */
static int json_samples(reader *r)
{
    int per_sample = 0;
    step(r, 1);
    skip_ws(r);
    for (r->sample = 0;; r->sample++) {
        if (r->sample >= LOAD_MAX_SAMPLES)
            return fail(r, r->line, r->col, "more than %d samples: the "
                        "limit of this reader", LOAD_MAX_SAMPLES);
        r->sample_base = r->layers;
        int sl = r->line, sc = r->col;
        if (peek(r) != '[')
            return fail(r, sl, sc, "expected sample %d: an array of layers",
                        r->sample);
        if (json_layers(r))
            return -1;
        int n = r->layers - r->sample_base;
        if (r->sample == 0)
            per_sample = n;
        else if (n != per_sample)
            return fail(r, sl, sc, "sample %d has %d layers, sample 0 has "
                        "%d: every sample needs the same layers", r->sample,
                        n, per_sample);
        skip_ws(r);
        int c = peek(r);
        if (c != ',' && c != ']')
            return fail(r, r->line, r->col,
                        c < 0 ? "end of input: expected ',' or ']'"
                              : "expected ',' or ']' after sample %d",
                        r->sample);
        step(r, 1);
        if (c == ']')
            break;
        skip_ws(r);
    }
    r->sample++; /* now the count */
    return 0;
}

/* A 2-D matrix of layers or a 3-D window of samples. */
static int json_load_counts(reader *r)
{
    return three_deep(r) ? json_samples(r) : json_layers(r);
}

/* {"logical_count": [[...]], other members ignored (but valid)} */
static int json_members(reader *r)
{
    int line = r->line, col = r->col, found = 0;
    step(r, 1);
    skip_ws(r);
    if (peek(r) != '}') {
        for (;;) {
            int kl = r->line, kc = r->col;
            if (peek(r) != '"')
                return fail(r, kl, kc, "expected a member name in quotes");
            json_t *key = decode(r);
            if (!key)
                return -1;
            int is_counts =
                strcmp(json_string_value(key), "logical_count") == 0;
            json_decref(key);
            skip_ws(r);
            if (peek(r) != ':')
                return fail(r, r->line, r->col, "expected ':'");
            step(r, 1);
            skip_ws(r);
            if (is_counts && found++)
                return fail(r, kl, kc, "a second \"logical_count\" member");
            if (is_counts) {
                if (json_load_counts(r))
                    return -1;
            } else {
                json_t *other = decode(r);
                if (!other)
                    return -1;
                json_decref(other);
            }
            skip_ws(r);
            int c = peek(r);
            if (c == '}')
                break;
            if (c != ',')
                return fail(r, r->line, r->col, c < 0
                            ? "end of input: expected ',' or '}'"
                            : "expected ',' or '}'");
            step(r, 1);
            skip_ws(r);
        }
    }
    step(r, 1);
    if (!found)
        return fail(r, line, col, "object has no \"logical_count\" member "
                    "(SGLang's expert distribution format)");
    return 0;
}

static int json_document(reader *r)
{
    int rc = peek(r) == '{' ? json_members(r) : json_load_counts(r);
    if (rc)
        return rc;
    skip_ws(r);
    if (r->s < r->end)
        return fail(r, r->line, r->col, "unexpected text after the JSON "
                    "value");
    return 0;
}

/* ---- CSV ---------------------------------------------------------- */

/* One number, the whole field, by jansson's number grammar. */
static int csv_value(reader *r, const char *field, size_t len, size_t expert,
                     int line, int col)
{
    if (memchr(field, '\0', len))
        return fail(r, line, col, "a NUL byte inside a number");
    json_error_t e;
    json_t *v = json_loadb(field, len, JSON_DECODE_ANY |
                                           JSON_DECODE_INT_AS_REAL, &e);
    if (!json_is_number(v)) {
        json_decref(v);
        int shown = len > 40 ? 40 : (int)len;
        return fail(r, line, col, "'%.*s%s' is not a number (%s)", shown,
                    field, len > 40 ? "..." : "",
                    v ? "not a JSON number" : e.text);
    }
    double d = json_number_value(v);
    json_decref(v);
    const char *why = load_problem(d);
    return why ? bad_load(r, d, why, expert, line, col)
               : push_load(r, d, line, col);
}

/* Rows of numbers separated by commas (blanks around them allowed), or by
 * blanks alone; an empty field is an error, a blank line is skipped. */
static int csv_document(reader *r)
{
    while (r->s < r->end) {
        const char *eol = memchr(r->s, '\n', (size_t)(r->end - r->s));
        if (!eol)
            eol = r->end;
        const char *stop = eol > r->s && eol[-1] == '\r' ? eol - 1 : eol;
        int commas = memchr(r->s, ',', (size_t)(stop - r->s)) != NULL;
        int line = r->line;
        size_t count = 0;
        for (;;) {
            while (r->s < stop && (*r->s == ' ' || *r->s == '\t'))
                step(r, 1);
            if (r->s == stop && (count == 0 || !commas))
                break; /* blank line, or the end of a blank-separated row */
            const char *f = r->s;
            int col = r->col;
            while (r->s < stop && *r->s != ',' &&
                   (commas || (*r->s != ' ' && *r->s != '\t')))
                step(r, 1);
            size_t len = (size_t)(r->s - f);
            while (len > 0 && (f[len - 1] == ' ' || f[len - 1] == '\t'))
                len--;
            if (len == 0)
                return fail(r, line, col, "empty field: expected a number");
            if (csv_value(r, f, len, count, line, col))
                return -1;
            count++;
            if (r->s < stop && *r->s == ',')
                step(r, 1);
            else if (r->s == stop)
                break;
        }
        if (count && end_layer(r, count, line, 1))
            return -1;
        step(r, (size_t)(eol - r->s) + (eol < r->end));
    }
    if (r->layers == 0)
        return fail(r, 1, 1, "no values found");
    return 0;
}

/* ---- entry points ------------------------------------------------- */

int load_matrix_parse(const char *text, size_t len, const char *name,
                      load_matrix *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    reader r = {.s = text, .end = text + len, .name = name, .line = 1,
                .col = 1, .err = err, .errlen = errlen, .experts = -1,
                .sample = -1};
    if (len > LOAD_MAX_BYTES)
        return fail(&r, 1, 1, "larger than %zu bytes: the limit of this "
                    "reader", LOAD_MAX_BYTES);
    /* RFC 8259 lets a reader ignore a UTF-8 byte order mark. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        r.s += 3;
    skip_ws(&r);
    if (r.s == r.end)
        return fail(&r, 1, 1, "the file is empty");
    int c = peek(&r);
    int rc = c == '{' || c == '[' ? json_document(&r) : csv_document(&r);
    if (rc) {
        free(r.data);
        return -1;
    }
    /* a 3-D file: r.sample counts its samples, r.layers all their
     * layers */
    out->samples = r.sample < 0 ? 1 : r.sample;
    out->layers = r.layers / out->samples;
    out->experts = r.experts;
    out->data = r.data;
    return 0;
}

/* Opens path for reading without blocking (a FIFO with no writer would
 * block open(2)): a regular file or a pipe is taken, anything else (a
 * device such as /dev/zero, a directory, a socket) is refused. The
 * descriptor is left blocking, so a pipe's writer is waited for only
 * once it exists. -1 with the reason in err. */
static int open_input(const char *path, struct stat *st, char *err,
                      size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, st) != 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode) && !S_ISFIFO(st->st_mode)) {
        snprintf(err, errlen, "%s: not a regular file or a pipe (%s): "
                 "refused", path, S_ISDIR(st->st_mode) ? "a directory"
                 : S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? "a device"
                 : "a socket or other special file");
        close(fd);
        return -1;
    }
    if (S_ISREG(st->st_mode) && (uint64_t)st->st_size > LOAD_MAX_BYTES) {
        snprintf(err, errlen, "%s: %llu bytes: larger than %zu bytes (1 "
                 "GiB), the limit of this reader", path,
                 (unsigned long long)st->st_size, LOAD_MAX_BYTES);
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads fd to its end, at most LOAD_MAX_BYTES; NULL with err set. A
 * pipe that gives nothing is an error here (a FIFO with no writer reads
 * as empty rather than blocking). */
static char *read_fd(int fd, const struct stat *st, const char *path,
                     size_t *len, char *err, size_t errlen)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "%s: cannot read: out of memory", path);
            return NULL;
        }
        if (n == cap) {
            if (cap > LOAD_MAX_BYTES) {
                free(buf);
                snprintf(err, errlen, "%s: larger than %zu bytes (1 GiB), "
                         "the limit of this reader", path, LOAD_MAX_BYTES);
                return NULL;
            }
            size_t ncap = 2 * cap > LOAD_MAX_BYTES + 1 ? LOAD_MAX_BYTES + 1
                                                       : 2 * cap;
            char *nb = realloc(buf, ncap + 1);
            if (!nb)
                free(buf);
            buf = nb;
            cap = ncap;
            continue;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path,
                     strerror(errno));
            free(buf);
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n == 0 && S_ISFIFO(st->st_mode)) {
        free(buf);
        snprintf(err, errlen, "%s: a pipe that gave no data (a FIFO with no "
                 "writer is not waited for)", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    int fd = open_input(path, &st, err, errlen);
    if (fd < 0)
        return NULL;
    char *text = read_fd(fd, &st, path, len, err, errlen);
    close(fd);
    return text;
}

int load_matrix_read(const char *path, load_matrix *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    int fd = open_input(path, &st, err, errlen);
    if (fd < 0)
        return -1;
    /* A regular file is mapped, not copied: the text costs no memory of
     * its own. Pipes (and files whose size reads 0) are read. */
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
                         fd, 0);
        close(fd);
        if (map == MAP_FAILED) {
            snprintf(err, errlen, "%s: cannot map: %s", path,
                     strerror(errno));
            return -1;
        }
        int rc = load_matrix_parse(map, (size_t)st.st_size, path, out, err,
                                   errlen);
        munmap(map, (size_t)st.st_size);
        return rc;
    }
    size_t len;
    char *text = read_fd(fd, &st, path, &len, err, errlen);
    close(fd);
    if (!text)
        return -1;
    int rc = load_matrix_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

int load_matrix_drop_zero_layers(load_matrix *m)
{
    int S = m->samples > 0 ? m->samples : 1, kept = 0;
    size_t E = (size_t)m->experts, L = (size_t)m->layers;
    unsigned char *keep = malloc(L ? L : 1);
    if (!keep)
        return 0; /* out of memory: nothing dropped, the matrix as read */
    /* a layer stays when any sample gives it a load */
    for (size_t l = 0; l < L; l++) {
        int zero = 1;
        for (int s = 0; s < S && zero; s++) {
            const float *row = m->data + ((size_t)s * L + l) * E;
            for (size_t e = 0; e < E && zero; e++)
                zero = row[e] == 0.0f;
        }
        keep[l] = !zero;
        kept += !zero;
    }
    /* rows move only towards the front, in order: in place */
    size_t out = 0;
    for (int s = 0; s < S; s++)
        for (size_t l = 0; l < L; l++) {
            if (!keep[l])
                continue;
            size_t from = (size_t)s * L + l;
            if (from != out)
                memmove(m->data + out * E, m->data + from * E,
                        E * sizeof(float));
            out++;
        }
    free(keep);
    m->layers = kept;
    return (int)L - kept;
}

void load_matrix_free(load_matrix *m)
{
    free(m->data);
    m->data = NULL;
    m->layers = m->experts = 0;
}
