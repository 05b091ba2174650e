#include "planio.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static void write_row(FILE *f, const int32_t *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++)
        fprintf(f, i ? ",%d" : "%d", (int)v[i]);
    fputc(']', f);
}

int plan_write_json(FILE *f, const eplb_shape *s, const int32_t *phy2log,
                    const int32_t *log2phy, const int32_t *logcnt)
{
    int L = s->layers, E = s->experts, P = s->num_replicas, X = P - E + 1;
    fputs("{\"phy2log\":[", f);
    for (int l = 0; l < L; l++) {
        if (l)
            fputs(",\n", f);
        write_row(f, phy2log + (size_t)l * P, P);
    }
    fputs("],\n\"log2phy\":[", f);
    for (int l = 0; l < L; l++) {
        fputs(l ? ",\n[" : "[", f);
        for (int e = 0; e < E; e++) {
            if (e)
                fputc(',', f);
            write_row(f, log2phy + ((size_t)l * E + e) * X, X);
        }
        fputc(']', f);
    }
    fputs("],\n\"logcnt\":[", f);
    for (int l = 0; l < L; l++) {
        if (l)
            fputs(",\n", f);
        write_row(f, logcnt + (size_t)l * E, E);
    }
    fputs("]}\n", f);
    return ferror(f) ? -1 : 0;
}

/* ---- the migration schedule --------------------------------------- */

/* jansson encodes each value (numbers as JSON has them, reals exact to
 * 17 digits) while the layout is written here, one stage record and one
 * stage_of_slot row a line as the plan's rows are, so that the file reads
 * and diffs by line. */

/* One value, compact, then freed; -1 for a NULL value (jansson's answer
 * to out of memory, and json_real's to a NaN or an infinity) or a write
 * error. */
static int dump_value(FILE *f, json_t *v)
{
    int rc = v ? json_dumpf(v, f, JSON_COMPACT | JSON_ENCODE_ANY) : -1;
    json_decref(v);
    return rc;
}

static json_t *int_array(const int32_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer(v[i]))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

static json_t *real_array(const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i]))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

int schedule_write_json(FILE *f, const eplb_shape *s,
                        const eplb_schedule *sc)
{
    size_t L = (size_t)s->layers, P = (size_t)s->num_replicas;
    /* The library writes no record past max_stages. */
    int n = sc->num_stages < sc->max_stages ? sc->num_stages + 1
                                            : sc->max_stages;
    int rc = 0;
    fputs("{\"num_stages\":", f);
    rc |= dump_value(f, json_integer(sc->num_stages));
    fputs(",\"copies\":", f);
    rc |= dump_value(f, json_integer(sc->copies));
    fputs(",\n\"objective_before\":", f);
    rc |= dump_value(f, json_real(sc->objective_before));
    fputs(",\"objective_after\":", f);
    rc |= dump_value(f, json_real(sc->objective_after));
    fputs(",\n\"stages\":[", f);
    for (int k = 0; k < n && rc == 0; k++) {
        const eplb_stage *t = &sc->stages[k];
        fputs(k ? ",\n" : "\n", f);
        rc |= dump_value(f, json_pack("{s:i,s:I,s:i,s:f,s:f}", "stage", k,
                                      "copies", (json_int_t)t->copies,
                                      "max_copies_per_gpu",
                                      (int)t->max_copies_per_gpu,
                                      "objective", t->objective,
                                      "balancedness", t->balancedness));
    }
    fputs("],\n\"layer_gain\":", f);
    rc |= dump_value(f, real_array(sc->layer_gain, L));
    fputs(",\n\"layer_copies\":", f);
    rc |= dump_value(f, int_array(sc->layer_copies, L));
    fputs(",\n\"layer_order\":", f);
    rc |= dump_value(f, int_array(sc->layer_order, L));
    fputs(",\n\"stage_of_slot\":[", f);
    for (size_t l = 0; l < L && rc == 0; l++) {
        fputs(l ? ",\n" : "\n", f);
        rc |= dump_value(f, int_array(sc->stage_of_slot + l * P, P));
    }
    fputs("]}\n", f);
    return rc || ferror(f) ? -1 : 0;
}

/* ---- places in the text ------------------------------------------ */

/* jansson keeps no places for values, so a message about one value finds
 * it again in the text (which jansson has accepted): lines from 1,
 * columns in characters from 1, as jansson and the load reader count. */
typedef struct cursor {
    const char *s, *end;
    int line, col;
} cursor;

static void step(cursor *c)
{
    if (c->s >= c->end)
        return;
    unsigned char ch = (unsigned char)*c->s++;
    if (ch == '\n') {
        c->line++;
        c->col = 1;
    } else if ((ch & 0xC0) != 0x80) {
        c->col++;
    }
}

static int peek(const cursor *c)
{
    return c->s < c->end ? (unsigned char)*c->s : -1;
}

static void skip_ws(cursor *c)
{
    for (int ch = peek(c); ch == ' ' || ch == '\t' || ch == '\n' ||
                           ch == '\r'; ch = peek(c))
        step(c);
}

static void skip_string(cursor *c)
{
    step(c); /* the opening quote */
    while (c->s < c->end && *c->s != '"') {
        if (*c->s == '\\')
            step(c);
        step(c);
    }
    step(c);
}

/* Past one value (valid JSON). */
static void skip_value(cursor *c)
{
    int depth = 0;
    do {
        int ch = peek(c);
        if (ch < 0)
            return;
        if (ch == '"') {
            skip_string(c);
            continue;
        }
        if (ch == '[' || ch == '{') {
            depth++;
        } else if (ch == ']' || ch == '}') {
            depth--;
        } else if (depth == 0) {
            while ((ch = peek(c)) >= 0 && ch != ',' && ch != ']' &&
                   ch != '}' && ch != ' ' && ch != '\t' && ch != '\n' &&
                   ch != '\r')
                step(c);
            return;
        }
        step(c);
    } while (depth > 0);
}

/* Where the value at key (NULL: the root) and then idx[0..n-1] begins in
 * text; as far as the path goes when part of it is missing. */
static void locate(const char *text, size_t len, const char *key,
                   const int *idx, int n, int *line, int *col)
{
    cursor c = {text, text + len, 1, 1};
    skip_ws(&c);
    if (key && peek(&c) == '{') {
        cursor obj = c;
        size_t klen = strlen(key);
        int found = 0;
        step(&c);
        for (;;) {
            skip_ws(&c);
            if (peek(&c) != '"')
                break;
            found = (size_t)(c.end - c.s) > klen + 1 &&
                    memcmp(c.s + 1, key, klen) == 0 && c.s[klen + 1] == '"';
            skip_string(&c);
            skip_ws(&c);
            step(&c); /* ':' */
            skip_ws(&c);
            if (found)
                break;
            skip_value(&c);
            skip_ws(&c);
            if (peek(&c) != ',')
                break;
            step(&c);
        }
        if (!found)
            c = obj;
    }
    for (int d = 0; d < n && peek(&c) == '['; d++) {
        cursor arr = c;
        step(&c);
        skip_ws(&c);
        for (int i = 0; i < idx[d]; i++) {
            skip_value(&c);
            skip_ws(&c);
            if (peek(&c) != ',') {
                c = arr;
                n = d; /* no such element: the array's place */
                break;
            }
            step(&c);
            skip_ws(&c);
        }
    }
    *line = c.line;
    *col = c.col;
}

/* ---- reading ------------------------------------------------------- */

typedef struct plan_text {
    const char *text, *name, *key; /* key: NULL when the root is the array */
    size_t len;
    char *err;
    size_t errlen;
} plan_text;

/* "name:line:col: path what", path and place from key and idx[0..n-1]. */
static int place_fail(const plan_text *t, const int *idx, int n,
                      const char *fmt, ...)
{
    int line, col;
    locate(t->text, t->len, t->key, idx, n, &line, &col);
    char path[128];
    int used = snprintf(path, sizeof path, "%s", t->key ? t->key : "phy2log");
    for (int d = 0; d < n && used > 0 && (size_t)used < sizeof path; d++)
        used += snprintf(path + used, sizeof path - (size_t)used, "[%d]",
                         idx[d]);
    int k = snprintf(t->err, t->errlen, "%s:%d:%d: %s ", t->name, line, col,
                     path);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < t->errlen)
        vsnprintf(t->err + k, t->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copies a nested array of the expected dims (outer first) into out. */
static int copy_ints(const plan_text *t, const json_t *v, const int *dims,
                     int ndims, int *idx, int depth, int32_t **out)
{
    if (depth == ndims) {
        json_int_t i = json_integer_value(v);
        if (!json_is_integer(v) || i < INT32_MIN || i > INT32_MAX)
            return place_fail(t, idx, depth, "is not a 32-bit integer");
        *(*out)++ = (int32_t)i;
        return 0;
    }
    if (!json_is_array(v))
        return place_fail(t, idx, depth, "is not an array: expected an "
                          "array of %d elements", dims[depth]);
    if (json_array_size(v) != (size_t)dims[depth])
        return place_fail(t, idx, depth, "has %zu elements: expected %d",
                          json_array_size(v), dims[depth]);
    for (int i = 0; i < dims[depth]; i++) {
        idx[depth] = i;
        if (copy_ints(t, json_array_get(v, (size_t)i), dims, ndims, idx,
                      depth + 1, out))
            return -1;
    }
    return 0;
}

/* Past a UTF-8 byte order mark, which RFC 8259 lets a reader ignore (the
 * load reader does too); it takes no column. */
static void skip_bom(const char **text, size_t *len)
{
    if (*len >= 3 && memcmp(*text, "\xEF\xBB\xBF", 3) == 0) {
        *text += 3;
        *len -= 3;
    }
}

/* The text as strict JSON (duplicate keys refused), or NULL with
 * "name:line:column: what" in err. */
static json_t *parse_strict(const char *text, size_t len, const char *name,
                            char *err, size_t errlen)
{
    json_error_t e;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!root)
        snprintf(err, errlen, "%s:%d:%d: %s", name, e.line < 1 ? 1 : e.line,
                 e.column < 1 ? 1 : e.column, e.text);
    return root;
}

int plan_parse_json(const char *text, size_t len, const char *name,
                    const eplb_shape *s, int32_t *phy2log, int32_t *log2phy,
                    int32_t *logcnt, char *err, size_t errlen)
{
    skip_bom(&text, &len);
    json_t *root = parse_strict(text, len, name, err, errlen);
    if (!root)
        return -1;
    int L = s->layers, E = s->experts, P = s->num_replicas;
    int d_p2l[] = {L, P}, d_l2p[] = {L, E, P - E + 1}, d_cnt[] = {L, E};
    struct { const char *key; const int *dims; int nd; int32_t *dst; } f[] = {
        {"phy2log", d_p2l, 2, phy2log},
        {"log2phy", d_l2p, 3, log2phy},
        {"logcnt", d_cnt, 2, logcnt},
    };
    int rc = 0, line, col;
    locate(text, len, NULL, NULL, 0, &line, &col);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s:%d:%d: not a JSON object with \"phy2log\","
                 " \"log2phy\" and \"logcnt\" members", name, line, col);
        rc = -1;
    }
    for (int i = 0; i < 3 && rc == 0; i++) {
        const json_t *v = json_object_get(root, f[i].key);
        int32_t *dst = f[i].dst;
        int idx[3];
        plan_text t = {text, name, f[i].key, len, err, errlen};
        if (!v) {
            snprintf(err, errlen, "%s:%d:%d: no \"%s\" member", name, line,
                     col, f[i].key);
            rc = -1;
        } else {
            rc = copy_ints(&t, v, f[i].dims, f[i].nd, idx, 0, &dst);
        }
    }
    json_decref(root);
    return rc;
}

int plan_parse_phy2log(const char *text, size_t len, const char *name,
                       const eplb_shape *s, int32_t *phy2log, char *err,
                       size_t errlen)
{
    skip_bom(&text, &len);
    json_t *root = parse_strict(text, len, name, err, errlen);
    if (!root)
        return -1;
    const json_t *v = root;
    plan_text t = {text, name, NULL, len, err, errlen};
    if (json_is_object(root)) {
        t.key = "phy2log";
        if (!(v = json_object_get(root, "phy2log"))) {
            int line, col;
            locate(text, len, NULL, NULL, 0, &line, &col);
            snprintf(err, errlen, "%s:%d:%d: no \"phy2log\" member", name,
                     line, col);
            json_decref(root);
            return -1;
        }
    }
    int dims[] = {s->layers, s->num_replicas}, idx[2];
    int rc = copy_ints(&t, v, dims, 2, idx, 0, &phy2log);
    json_decref(root);
    return rc;
}

int plan_check_phy2log(const char *text, size_t len, const char *name,
                       const eplb_shape *s, const int32_t *phy2log,
                       char *err, size_t errlen)
{
    skip_bom(&text, &len);
    const char *p = text;
    while (p < text + len && (*p == ' ' || *p == '\t' || *p == '\n' ||
                              *p == '\r'))
        p++;
    plan_text t = {text, name, p < text + len && *p == '{' ? "phy2log" : NULL,
                   len, err, errlen};
    int L = s->layers, E = s->experts, P = s->num_replicas;
    int *seen = malloc((size_t)E * sizeof(int));
    if (!seen) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    int rc = 0;
    for (int l = 0; l < L && rc == 0; l++) {
        const int32_t *row = phy2log + (size_t)l * P;
        for (int e = 0; e < E; e++)
            seen[e] = 0;
        for (int q = 0; q < P && rc == 0; q++) {
            int e = row[q], idx[2] = {l, q};
            if (e < -1 || e >= E) {
                rc = place_fail(&t, idx, 2, "is %d: expert ids are 0..%d, "
                                "or -1 for an empty slot", e, E - 1);
                break;
            }
            if (e < 0)
                continue;
            seen[e] = 1;
            /* (a group split over nodes is taken, as the library takes
             * it: a budgeted or staged migration stopped midway leaves
             * one) */
        }
        for (int e = 0; e < E && rc == 0; e++)
            if (!seen[e])
                rc = place_fail(&t, &l, 1, "holds expert %d in no slot: "
                                "every expert 0..%d needs at least one slot",
                                e, E - 1);
    }
    free(seen);
    return rc;
}
