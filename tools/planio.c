#include "planio.h"

#include <jansson.h>
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

/* Copies a nested array of the expected dims (outer first) into out;
 * path names the array in messages ("phy2log[3]"). jansson keeps no
 * places for values, so errors of shape name the path instead. */
static int copy_ints(const json_t *v, const int *dims, int ndims,
                     int32_t **out, char *path, size_t pathlen,
                     const char *name, char *err, size_t errlen)
{
    if (ndims == 0) {
        json_int_t i = json_integer_value(v);
        if (!json_is_integer(v) || i < INT32_MIN || i > INT32_MAX) {
            snprintf(err, errlen, "%s:1:1: %s is not a 32-bit integer",
                     name, path);
            return -1;
        }
        *(*out)++ = (int32_t)i;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) != (size_t)dims[0]) {
        snprintf(err, errlen, "%s:1:1: %s is not an array of %d elements",
                 name, path, dims[0]);
        return -1;
    }
    size_t used = strlen(path);
    for (int i = 0; i < dims[0]; i++) {
        snprintf(path + used, pathlen - used, "[%d]", i);
        if (copy_ints(json_array_get(v, (size_t)i), dims + 1, ndims - 1, out,
                      path, pathlen, name, err, errlen))
            return -1;
    }
    path[used] = '\0';
    return 0;
}

/* The text as strict JSON (duplicate keys refused), or NULL with
 * "name:line:column: what" in err. */
static json_t *parse_strict(const char *text, size_t len, const char *name,
                            char *err, size_t errlen)
{
    json_error_t e;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!root)
        snprintf(err, errlen, "%s:%d:%d: %s", name, e.line, e.column,
                 e.text);
    return root;
}

int plan_parse_json(const char *text, size_t len, const char *name,
                    const eplb_shape *s, int32_t *phy2log, int32_t *log2phy,
                    int32_t *logcnt, char *err, size_t errlen)
{
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
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        const json_t *v = json_object_get(root, f[i].key);
        int32_t *dst = f[i].dst;
        char path[64];
        snprintf(path, sizeof path, "%s", f[i].key);
        if (!v) {
            snprintf(err, errlen, "%s:1:1: no \"%s\" member", name,
                     f[i].key);
            rc = -1;
        } else {
            rc = copy_ints(v, f[i].dims, f[i].nd, &dst, path, sizeof path,
                           name, err, errlen);
        }
    }
    json_decref(root);
    return rc;
}

int plan_parse_phy2log(const char *text, size_t len, const char *name,
                       const eplb_shape *s, int32_t *phy2log, char *err,
                       size_t errlen)
{
    json_t *root = parse_strict(text, len, name, err, errlen);
    if (!root)
        return -1;
    const json_t *v = root;
    if (json_is_object(root) && !(v = json_object_get(root, "phy2log"))) {
        snprintf(err, errlen, "%s:1:1: no \"phy2log\" member", name);
        json_decref(root);
        return -1;
    }
    int dims[] = {s->layers, s->num_replicas};
    char path[64] = "phy2log";
    int rc = copy_ints(v, dims, 2, &phy2log, path, sizeof path, name, err,
                       errlen);
    json_decref(root);
    return rc;
}
