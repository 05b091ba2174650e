/* Reading load matrices and plans: SGLang's JSON ({"logical_count":
 * [[...]]}), a plain JSON array of arrays, or CSV (one layer a row). */
#ifndef EPLB_LOADFILE_H
#define EPLB_LOADFILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct load_matrix {
    int layers, experts;
    float *data; /* [layers][experts], caller frees with load_matrix_free */
} load_matrix;

/* A tiny JSON tree, enough for load files and plans. */
typedef enum { JV_NULL, JV_BOOL, JV_NUMBER, JV_STRING, JV_ARRAY, JV_OBJECT }
    json_type;
typedef struct json_value {
    json_type type;
    double number;
    char *string;             /* JV_STRING, and keys of object members */
    struct json_value *items; /* JV_ARRAY / JV_OBJECT members */
    char **keys;              /* JV_OBJECT only */
    int count;
    int line, col;            /* where the value starts, for messages */
} json_value;

/* Parses text; on failure returns NULL and writes "name:line:col: what" to
 * err. */
json_value *json_parse(const char *text, size_t len, const char *name,
                       char *err, size_t errlen);
void json_free(json_value *v);
const json_value *json_get(const json_value *obj, const char *key);

/* 0 on success; -1 with "name:line:col: what" in err. */
int load_matrix_parse(const char *text, size_t len, const char *name,
                      load_matrix *out, char *err, size_t errlen);
int load_matrix_read(const char *path, load_matrix *out, char *err,
                     size_t errlen);
/* Removes layers whose loads are all zero (dense layers); returns how many
 * were removed. */
int load_matrix_drop_zero_layers(load_matrix *m);
void load_matrix_free(load_matrix *m);

/* Reads a whole file; NULL with err set on failure. Caller frees. */
char *read_file(const char *path, size_t *len, char *err, size_t errlen);

#endif
