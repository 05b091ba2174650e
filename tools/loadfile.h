/* Reading load matrices: SGLang's JSON ({"logical_count": [[...]]}), a
 * plain JSON array of arrays, or CSV (one layer a row); in JSON also a
 * window of samples, [samples][layers][experts] (SGLang's expert
 * distribution with its window axis), oldest first. Strict: JSON as
 * RFC 8259 has it (jansson reads every value), CSV with one number per
 * field, and every load one the library accepts (finite, >= 0, within
 * float range, not rounded to 0); any other input is an error naming
 * file:line:column. */
#ifndef EPLB_LOADFILE_H
#define EPLB_LOADFILE_H

#include <stddef.h>
#include <stdint.h>

/* Input limits: larger inputs are refused with a message, not read. */
#define LOAD_MAX_BYTES ((size_t)1 << 30)  /* 1 GiB of text */
#define LOAD_MAX_VALUES ((size_t)1 << 27) /* 128 Mi loads (512 MiB) */
#define LOAD_MAX_EXPERTS (1 << 20)        /* values in one layer */
#define LOAD_MAX_SAMPLES 65536            /* samples of a 3-D window */

typedef struct load_matrix {
    int layers, experts;
    /* 1 for a 2-D file; a 3-D file's samples, each of `layers` layers */
    int samples;
    /* [samples][layers][experts], caller frees with load_matrix_free */
    float *data;
} load_matrix;

/* 0 on success; -1 with "name:line:col: what" in err. */
int load_matrix_parse(const char *text, size_t len, const char *name,
                      load_matrix *out, char *err, size_t errlen);
int load_matrix_read(const char *path, load_matrix *out, char *err,
                     size_t errlen);
/* Removes layers whose loads are all zero (dense layers) in every sample;
 * returns how many were removed. */
int load_matrix_drop_zero_layers(load_matrix *m);
void load_matrix_free(load_matrix *m);

/* Reads a whole file; NULL with err set on failure. Caller frees.
 * load_matrix_read and read_file open without blocking and take a
 * regular file or a pipe only (a device such as /dev/zero, a directory
 * or a socket is refused), and at most LOAD_MAX_BYTES of it: more is an
 * error naming the file and the limit. A FIFO with no writer reads as
 * empty. */
char *read_file(const char *path, size_t *len, char *err, size_t errlen);

#endif
