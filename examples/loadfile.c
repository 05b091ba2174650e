/* A small JSON reader (with line and column in every error) and a CSV
 * reader for load matrices. */
#include "loadfile.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Guards the recursive descent against hostile nesting. */
#define JSON_MAX_DEPTH 64

typedef struct parser {
    const char *s, *end, *name;
    int line, col;
    char *err;
    size_t errlen;
    int failed;
} parser;

static void perr(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    int n = snprintf(p->err, p->errlen, "%s:%d:%d: ", p->name, p->line,
                     p->col);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int peek(parser *p)
{
    return p->s < p->end ? (unsigned char)*p->s : -1;
}

static void advance(parser *p)
{
    if (*p->s == '\n') {
        p->line++;
        p->col = 1;
    } else {
        p->col++;
    }
    p->s++;
}

static void skip_ws(parser *p)
{
    while (p->s < p->end && isspace((unsigned char)*p->s))
        advance(p);
}

/* Frees what v holds, not v itself (members are stored inline). */
static void json_release(json_value *v)
{
    for (int i = 0; i < v->count; i++) {
        json_release(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->string);
}

void json_free(json_value *v)
{
    if (!v)
        return;
    json_release(v);
    free(v);
}

const json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JV_OBJECT)
        return NULL;
    for (int i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

static int parse_value(parser *p, json_value *v, int depth);

static int expect_word(parser *p, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0) {
        perr(p, "unexpected character '%c': expected a JSON value",
             peek(p) < 0 ? '?' : peek(p));
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        advance(p);
    return 0;
}

static int parse_string(parser *p, char **out)
{
    advance(p); /* opening quote */
    size_t cap = 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        perr(p, "out of memory");
        return -1;
    }
    for (;;) {
        int c = peek(p);
        if (c < 0 || c == '\n') {
            perr(p, "unterminated string");
            free(buf);
            return -1;
        }
        advance(p);
        if (c == '"')
            break;
        if (c == '\\') {
            int e = peek(p);
            if (e < 0) {
                perr(p, "unterminated string");
                free(buf);
                return -1;
            }
            advance(p);
            /* Keys we care about are ASCII; keep escapes' plain meaning. */
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'u' ? '?' : e;
            if (e == 'u')
                for (int k = 0; k < 4 && peek(p) >= 0; k++)
                    advance(p);
        }
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                perr(p, "out of memory");
                return -1;
            }
            buf = nb;
        }
        buf[n++] = (char)c;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int parse_number(parser *p, json_value *v)
{
    char tmp[64];
    size_t n = 0;
    while (p->s + n < p->end && n < sizeof tmp - 1 &&
           strchr("+-0123456789.eE", p->s[n]))
        n++;
    memcpy(tmp, p->s, n);
    tmp[n] = '\0';
    char *endp;
    errno = 0;
    double d = strtod(tmp, &endp);
    if (n == 0 || endp != tmp + n) {
        perr(p, "malformed number '%s'", tmp);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        advance(p);
    v->type = JV_NUMBER;
    v->number = d;
    return 0;
}

static int push_item(parser *p, json_value *v, int *cap)
{
    if (v->count == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        json_value *ni = realloc(v->items, (size_t)nc * sizeof *ni);
        if (!ni) {
            perr(p, "out of memory");
            return -1;
        }
        v->items = ni;
        if (v->type == JV_OBJECT) {
            char **nk = realloc(v->keys, (size_t)nc * sizeof *nk);
            if (!nk) {
                perr(p, "out of memory");
                return -1;
            }
            v->keys = nk;
        }
        *cap = nc;
    }
    memset(&v->items[v->count], 0, sizeof v->items[0]);
    return 0;
}

static int parse_container(parser *p, json_value *v, int depth)
{
    int is_obj = peek(p) == '{';
    int close = is_obj ? '}' : ']', cap = 0;
    v->type = is_obj ? JV_OBJECT : JV_ARRAY;
    advance(p);
    skip_ws(p);
    if (peek(p) == close) {
        advance(p);
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (push_item(p, v, &cap))
            return -1;
        if (is_obj) {
            v->keys[v->count] = NULL;
            if (peek(p) != '"') {
                perr(p, "expected a string key in object");
                return -1;
            }
            if (parse_string(p, &v->keys[v->count]))
                return -1;
            skip_ws(p);
            if (peek(p) != ':') {
                free(v->keys[v->count]);
                perr(p, "expected ':' after object key");
                return -1;
            }
            advance(p);
        }
        v->count++;
        if (parse_value(p, &v->items[v->count - 1], depth + 1))
            return -1;
        skip_ws(p);
        int c = peek(p);
        if (c == ',') {
            advance(p);
            continue;
        }
        if (c == close) {
            advance(p);
            return 0;
        }
        perr(p, c < 0 ? "unexpected end of input: missing '%c'"
                      : "expected ',' or '%c'", close);
        return -1;
    }
}

static int parse_value(parser *p, json_value *v, int depth)
{
    skip_ws(p);
    v->line = p->line;
    v->col = p->col;
    if (depth > JSON_MAX_DEPTH) {
        perr(p, "nesting deeper than %d levels", JSON_MAX_DEPTH);
        return -1;
    }
    int c = peek(p);
    if (c < 0) {
        perr(p, "unexpected end of input: expected a value");
        return -1;
    }
    if (c == '{' || c == '[')
        return parse_container(p, v, depth);
    if (c == '"') {
        v->type = JV_STRING;
        return parse_string(p, &v->string);
    }
    if (c == '-' || isdigit(c))
        return parse_number(p, v);
    if (c == 't' || c == 'f') {
        v->type = JV_BOOL;
        v->number = c == 't';
        return expect_word(p, c == 't' ? "true" : "false");
    }
    if (c == 'n') {
        v->type = JV_NULL;
        return expect_word(p, "null");
    }
    perr(p, "unexpected character '%c': expected a JSON value", c);
    return -1;
}

json_value *json_parse(const char *text, size_t len, const char *name,
                       char *err, size_t errlen)
{
    parser p = {text, text + len, name, 1, 1, err, errlen, 0};
    json_value *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    if (parse_value(&p, v, 0) == 0) {
        skip_ws(&p);
        if (peek(&p) >= 0)
            perr(&p, "unexpected text after the JSON value");
    }
    if (p.failed) {
        json_free(v);
        return NULL;
    }
    return v;
}

static int fail_at(char *err, size_t errlen, const char *name,
                   const json_value *v, const char *what)
{
    snprintf(err, errlen, "%s:%d:%d: %s", name, v->line, v->col, what);
    return -1;
}

/* [[numbers] x layers] into a matrix; every row the same length. */
static int matrix_from_json(const json_value *rows, const char *name,
                            load_matrix *out, char *err, size_t errlen)
{
    if (rows->type != JV_ARRAY || rows->count == 0)
        return fail_at(err, errlen, name, rows,
                       "expected a non-empty array of layers (arrays of "
                       "numbers)");
    int E = rows->items[0].type == JV_ARRAY ? rows->items[0].count : 0;
    if (E == 0)
        return fail_at(err, errlen, name, &rows->items[0],
                       "expected a non-empty array of numbers (one layer)");
    float *data = malloc((size_t)rows->count * E * sizeof(float));
    if (!data)
        return fail_at(err, errlen, name, rows, "out of memory");
    for (int l = 0; l < rows->count; l++) {
        const json_value *row = &rows->items[l];
        char what[128];
        if (row->type != JV_ARRAY || row->count != E) {
            snprintf(what, sizeof what, "layer %d has %d values, layer 0 "
                     "has %d: every layer needs the same number of experts",
                     l, row->type == JV_ARRAY ? row->count : 0, E);
            free(data);
            return fail_at(err, errlen, name, row, what);
        }
        for (int e = 0; e < E; e++) {
            if (row->items[e].type != JV_NUMBER) {
                free(data);
                return fail_at(err, errlen, name, &row->items[e],
                               "expected a number");
            }
            data[(size_t)l * E + e] = (float)row->items[e].number;
        }
    }
    out->layers = rows->count;
    out->experts = E;
    out->data = data;
    return 0;
}

/* CSV: one layer a row, values separated by commas (or spaces). */
static int matrix_from_csv(const char *text, size_t len, const char *name,
                           load_matrix *out, char *err, size_t errlen)
{
    size_t cap = 1024, n = 0;
    float *data = malloc(cap * sizeof(float));
    int line = 1, E = -1, layers = 0;
    const char *s = text, *end = text + len;
    if (!data) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    while (s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        if (!eol)
            eol = end;
        int count = 0;
        const char *q = s;
        while (q < eol) {
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r' ||
                               *q == ','))
                q++;
            if (q >= eol)
                break;
            char num[64];
            size_t k = 0;
            const char *start = q;
            while (q < eol && *q != ',' && *q != ' ' && *q != '\t' &&
                   *q != '\r' && k < sizeof num - 1)
                num[k++] = *q++;
            num[k] = '\0';
            char *endp;
            double d = strtod(num, &endp);
            if (k == 0 || *endp) {
                snprintf(err, errlen, "%s:%d:%d: '%s' is not a number", name,
                         line, (int)(start - s) + 1, num);
                free(data);
                return -1;
            }
            if (n == cap) {
                float *nd = realloc(data, (cap *= 2) * sizeof(float));
                if (!nd) {
                    free(data);
                    snprintf(err, errlen, "%s: out of memory", name);
                    return -1;
                }
                data = nd;
            }
            data[n++] = (float)d;
            count++;
        }
        if (count > 0) {
            if (E < 0)
                E = count;
            else if (count != E) {
                snprintf(err, errlen, "%s:%d:1: row has %d values, the first "
                         "row has %d: every layer needs the same number of "
                         "experts", name, line, count, E);
                free(data);
                return -1;
            }
            layers++;
        }
        s = eol + 1;
        line++;
    }
    if (layers == 0) {
        snprintf(err, errlen, "%s:1:1: no values found", name);
        free(data);
        return -1;
    }
    out->layers = layers;
    out->experts = E;
    out->data = data;
    return 0;
}

int load_matrix_parse(const char *text, size_t len, const char *name,
                      load_matrix *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i == len) {
        snprintf(err, errlen, "%s:1:1: the file is empty", name);
        return -1;
    }
    if (text[i] != '{' && text[i] != '[')
        return matrix_from_csv(text, len, name, out, err, errlen);
    json_value *root = json_parse(text, len, name, err, errlen);
    if (!root)
        return -1;
    const json_value *rows = root;
    if (root->type == JV_OBJECT) {
        rows = json_get(root, "logical_count");
        if (!rows) {
            fail_at(err, errlen, name, root,
                    "object has no \"logical_count\" member (SGLang's expert "
                    "distribution format)");
            json_free(root);
            return -1;
        }
    }
    int rc = matrix_from_json(rows, name, out, err, errlen);
    json_free(root);
    return rc;
}

char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *nb = realloc(buf, (cap *= 2) + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        } else {
            buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read%s", path,
                 buf ? "" : ": out of memory");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int load_matrix_read(const char *path, load_matrix *out, char *err,
                     size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text)
        return -1;
    int rc = load_matrix_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

int load_matrix_drop_zero_layers(load_matrix *m)
{
    int kept = 0;
    for (int l = 0; l < m->layers; l++) {
        const float *row = m->data + (size_t)l * m->experts;
        int zero = 1;
        for (int e = 0; e < m->experts && zero; e++)
            zero = row[e] == 0.0f;
        if (zero)
            continue;
        if (kept != l)
            memmove(m->data + (size_t)kept * m->experts, row,
                    (size_t)m->experts * sizeof(float));
        kept++;
    }
    int dropped = m->layers - kept;
    m->layers = kept;
    return dropped;
}

void load_matrix_free(load_matrix *m)
{
    free(m->data);
    m->data = NULL;
    m->layers = m->experts = 0;
}
