/* Kernel programs: sources embedded at build time (or read from
 * $EPLB_CL_KERNEL_DIR), built with SPEC.md's floating-point options, and
 * their binaries cached on disk so a new process pays only for a read. */
#include "cl_internal.h"
#include "cl_sources.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "EPLBBIN1"
#define CACHE_MAGIC_LEN 8
#define CACHE_PATH_MAX 4096
#define KERNEL_FILE_MAX (1 << 22)

/* FNV-1a, 64 bit: enough to key a cache (a collision only costs a
 * rebuild, since the stored key is compared in full below). */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

#define FNV_OFFSET 0xCBF29CE484222325ull

static char *read_kernel_file(const char *dir, const char *name, size_t *len)
{
    char path[CACHE_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        eplb_fail(EPLB_ERR_KERNEL_BUILD,
                  "EPLB_CL_KERNEL_DIR is set but %s cannot be read (%s): "
                  "point it at a copy of the cl/ directory or unset it",
                  path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(KERNEL_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, KERNEL_FILE_MAX, f) : 0;
    fclose(f);
    if (!buf) {
        eplb_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The program text: the named files concatenated in order. */
static char *program_source(const char *const *files, int nfiles,
                            size_t *len_out)
{
    const char *dir = getenv("EPLB_CL_KERNEL_DIR");
    size_t total = 0, cap = 1 << 16;
    char *src = malloc(cap);
    if (!src) {
        eplb_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    for (int i = 0; i < nfiles; i++) {
        const char *text = NULL;
        char *owned = NULL;
        size_t len = 0;
        if (dir && *dir) {
            text = owned = read_kernel_file(dir, files[i], &len);
            if (!owned) {
                free(src);
                return NULL;
            }
        } else {
            for (const struct cl_embedded_source *e = cl_embedded_sources;
                 e->name; e++)
                if (strcmp(e->name, files[i]) == 0) {
                    text = e->text;
                    len = e->length;
                }
            if (!text) {
                free(src);
                eplb_fail(EPLB_ERR_KERNEL_BUILD,
                          "kernel file %s is not embedded in this build",
                          files[i]);
                return NULL;
            }
        }
        if (total + len + 2 > cap) {
            while (total + len + 2 > cap)
                cap *= 2;
            char *ns = realloc(src, cap);
            if (!ns) {
                free(owned);
                free(src);
                eplb_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
                return NULL;
            }
            src = ns;
        }
        memcpy(src + total, text, len);
        total += len;
        src[total++] = '\n';
        free(owned);
    }
    src[total] = '\0';
    *len_out = total;
    return src;
}

/* $EPLB_CL_CACHE_DIR, else $XDG_CACHE_HOME/eplb-cl, else
 * $HOME/.cache/eplb-cl; 0 when none can be named ("off" disables). */
static int cache_dir(char *out, size_t len)
{
    const char *d = getenv("EPLB_CL_CACHE_DIR");
    if (d && strcmp(d, "off") == 0)
        return 0;
    if (d && *d) {
        snprintf(out, len, "%s", d);
    } else if ((d = getenv("XDG_CACHE_HOME")) && *d) {
        snprintf(out, len, "%s/eplb-cl", d);
    } else if ((d = getenv("HOME")) && *d) {
        char parent[CACHE_PATH_MAX];
        snprintf(parent, sizeof parent, "%s/.cache", d);
        mkdir(parent, 0755);
        snprintf(out, len, "%s/.cache/eplb-cl", d);
    } else {
        return 0;
    }
    mkdir(out, 0755);
    return 1;
}

typedef struct cache_key {
    uint64_t hash;
    char path[CACHE_PATH_MAX];
    int usable;
} cache_key;

static void make_cache_key(cache_key *k, const cl_device_choice *dev,
                           const char *src, size_t src_len,
                           const char *options)
{
    uint64_t h = FNV_OFFSET;
    const char *parts[] = {PACKAGE_VERSION, options, dev->platform_name,
                           dev->platform_version, dev->device_name,
                           dev->driver_version};
    h = fnv1a(h, src, src_len);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        h = fnv1a(h, parts[i], strlen(parts[i]) + 1);
    k->hash = h;
    char dir[CACHE_PATH_MAX - 64];
    k->usable = cache_dir(dir, sizeof dir);
    if (k->usable)
        snprintf(k->path, sizeof k->path, "%s/%016llx.bin", dir,
                 (unsigned long long)h);
}

/* File: magic, key hash, payload length, payload hash, payload. */
static unsigned char *cache_load(const cache_key *k, size_t *len)
{
    FILE *f = fopen(k->path, "rb");
    if (!f)
        return NULL;
    char magic[CACHE_MAGIC_LEN];
    uint64_t hash, size, check;
    unsigned char *bin = NULL;
    if (fread(magic, 1, CACHE_MAGIC_LEN, f) == CACHE_MAGIC_LEN &&
        memcmp(magic, CACHE_MAGIC, CACHE_MAGIC_LEN) == 0 &&
        fread(&hash, sizeof hash, 1, f) == 1 && hash == k->hash &&
        fread(&size, sizeof size, 1, f) == 1 && size > 0 &&
        size < ((uint64_t)1 << 31) && fread(&check, sizeof check, 1, f) == 1 &&
        (bin = malloc((size_t)size)) &&
        fread(bin, 1, (size_t)size, f) == size &&
        fnv1a(FNV_OFFSET, bin, (size_t)size) == check) {
        *len = (size_t)size;
    } else {
        free(bin);
        bin = NULL;
    }
    fclose(f);
    return bin;
}

static void cache_store(const cache_key *k, const unsigned char *bin,
                        size_t len)
{
    char tmp[CACHE_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", k->path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    uint64_t size = len, check = fnv1a(FNV_OFFSET, bin, len);
    int ok = fwrite(CACHE_MAGIC, 1, CACHE_MAGIC_LEN, f) == CACHE_MAGIC_LEN &&
             fwrite(&k->hash, sizeof k->hash, 1, f) == 1 &&
             fwrite(&size, sizeof size, 1, f) == 1 &&
             fwrite(&check, sizeof check, 1, f) == 1 &&
             fwrite(bin, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    /* rename() is atomic: readers see the old file or the whole new one. */
    if (!ok || rename(tmp, k->path) != 0)
        unlink(tmp);
}

static int build_log_error(cl_program prog, const cl_device_choice *dev,
                           const char *options, cl_int err)
{
    size_t log_len = 0;
    clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                          &log_len);
    char *log = malloc(log_len + 1);
    if (log) {
        log[0] = '\0';
        clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG,
                              log_len, log, NULL);
        log[log_len] = '\0';
    }
    int rc = eplb_fail(EPLB_ERR_KERNEL_BUILD,
                       "the kernels failed to build (%s) on device '%s' "
                       "(platform '%s', driver %s) with options '%s'. If "
                       "EPLB_CL_KERNEL_DIR is set, check those .cl files; "
                       "else report this log:\n%s",
                       cl_error_name(err), dev->device_name,
                       dev->platform_name, dev->driver_version, options,
                       log ? log : "(no log)");
    free(log);
    return rc;
}

/* EPLB_CL_BUILD_LOG=1: the compiler's log of every fresh build on stderr
 * (registers, spills), for work on the kernels. */
static void print_build_log(cl_program prog, const cl_device_choice *dev,
                            const char *options)
{
    size_t len = 0;
    clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                          &len);
    char *log = malloc(len + 1);
    if (!log)
        return;
    log[0] = '\0';
    clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, len, log,
                          NULL);
    log[len] = '\0';
    fprintf(stderr, "eplb-cl: built for '%s' with '%s':\n%s\n",
            dev->device_name, options, log);
    free(log);
}

static cl_program from_binary(cl_context ctx, const cl_device_choice *dev,
                              const unsigned char *bin, size_t len,
                              const char *options)
{
    cl_int err, status;
    cl_program p = clCreateProgramWithBinary(ctx, 1, &dev->device, &len, &bin,
                                             &status, &err);
    if (err != CL_SUCCESS || status != CL_SUCCESS)
        return p ? (clReleaseProgram(p), NULL) : NULL;
    if (clBuildProgram(p, 1, &dev->device, options, NULL, NULL) !=
        CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

static void store_binary(cl_program p, const cache_key *k)
{
    size_t len = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof len, &len,
                         NULL) != CL_SUCCESS || len == 0)
        return;
    unsigned char *bin = malloc(len);
    if (bin && clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin,
                                NULL) == CL_SUCCESS)
        cache_store(k, bin, len);
    free(bin);
}

int cl_program_build(cl_context ctx, const cl_device_choice *dev,
                     const char *const *files, int nfiles,
                     const char *options, cl_program *out)
{
    size_t src_len;
    char *src = program_source(files, nfiles, &src_len);
    if (!src)
        return eplb_last_error()[0] ? EPLB_ERR_KERNEL_BUILD
                                    : EPLB_ERR_OUT_OF_MEMORY;
    cache_key key;
    make_cache_key(&key, dev, src, src_len, options);
    if (key.usable) {
        size_t len;
        unsigned char *bin = cache_load(&key, &len);
        cl_program p = bin ? from_binary(ctx, dev, bin, len, options) : NULL;
        free(bin);
        if (p) {
            free(src);
            *out = p;
            return EPLB_OK;
        }
    }
    cl_int err;
    const char *text = src;
    cl_program p = clCreateProgramWithSource(ctx, 1, &text, &src_len, &err);
    free(src);
    if (err != CL_SUCCESS)
        return eplb_fail(EPLB_ERR_OPENCL,
                         "clCreateProgramWithSource failed with %s on '%s'",
                         cl_error_name(err), dev->device_name);
    err = clBuildProgram(p, 1, &dev->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        int rc = build_log_error(p, dev, options, err);
        clReleaseProgram(p);
        return rc;
    }
    const char *show = getenv("EPLB_CL_BUILD_LOG");
    if (show && strcmp(show, "1") == 0)
        print_build_log(p, dev, options);
    if (key.usable)
        store_binary(p, &key);
    *out = p;
    return EPLB_OK;
}
