/* Kernel programs: sources embedded at build time (or read from
 * $EPLB_CL_KERNEL_DIR), built with the floating-point options of
 * doc/ALGORITHM.md section 8, and their binaries cached on disk so a new
 * process pays only for a read. */
#include "opencl.h"
#include "sources.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "EPLBBIN2"
#define CACHE_MAGIC_LEN 8
#define CACHE_PATH_MAX 4096
/* A sanity bound on one kernel file of EPLB_CL_KERNEL_DIR (ours are tens
 * of KB). */
#define KERNEL_FILE_MAX (1 << 28)
/* Larger cache files are not ours: a program binary is a few MB. */
#define CACHE_FILE_MAX ((uint64_t)1 << 30)
#define KERNEL_NAME_MAX 256

/* FNV-1a, 64 bit: names the cache file and checks its payload against
 * accidents (a torn or truncated write); the stored key is compared in
 * full, so a collision only costs a rebuild. */
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

/* One kernel file of $EPLB_CL_KERNEL_DIR; NULL with the status in *rc. */
static char *read_kernel_file(const char *dir, const char *name, size_t *len,
                              int *rc)
{
    char path[CACHE_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* Not blocking, and regular files only: a FIFO must not hang us. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st = {0};
    FILE *f = NULL;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > KERNEL_FILE_MAX || !(f = fdopen(fd, "rb"))) {
        *rc = eplbi_fail(EPLB_ERR_KERNEL_BUILD,
                         "EPLB_CL_KERNEL_DIR is set but %s cannot be read "
                         "(%s): point it at a copy of the cl/ directory or "
                         "unset it", path,
                         fd < 0 ? strerror(errno)
                         : !S_ISREG(st.st_mode) ? "not a regular file"
                                               : "larger than 256 MiB");
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        *rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                         "out of host memory reading kernel file %s", path);
        return NULL;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The program text: the named files concatenated in order. */
static char *program_source(const char *dir, const char *const *files,
                            int nfiles, size_t *len_out, int *rc)
{
    size_t total = 0, cap = 1 << 16;
    char *src = malloc(cap);
    if (!src) {
        *rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    for (int i = 0; i < nfiles; i++) {
        const char *text = NULL;
        char *owned = NULL;
        size_t len = 0;
        if (*dir) {
            text = owned = read_kernel_file(dir, files[i], &len, rc);
            if (!owned) {
                free(src);
                return NULL;
            }
        } else {
            for (const struct ocl_embedded_source *e = ocl_embedded_sources;
                 e->name; e++)
                if (strcmp(e->name, files[i]) == 0) {
                    text = e->text;
                    len = e->length;
                }
            if (!text) {
                free(src);
                *rc = eplbi_fail(EPLB_ERR_KERNEL_BUILD,
                                 "kernel file %s is not embedded in this "
                                 "build", files[i]);
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
                *rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                                 "out of host memory for the kernel source");
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

/* The full key: everything the binary depends on, NUL-separated, the
 * source last. Stored in the cache file and compared byte for byte. */
typedef struct cache_key {
    char *text;
    size_t len;
    uint64_t hash;
    char path[CACHE_PATH_MAX];
    int usable;
} cache_key;

static void make_cache_key(cache_key *k, const ocl_device_choice *dev,
                           const char *cache_dir, const char *src,
                           size_t src_len, const char *options)
{
    const char *parts[] = {PACKAGE_VERSION, options, dev->platform_name,
                           dev->platform_version, dev->device_name,
                           dev->driver_version};
    size_t nparts = sizeof parts / sizeof parts[0], len = src_len;
    for (size_t i = 0; i < nparts; i++)
        len += strlen(parts[i]) + 1;
    memset(k, 0, sizeof *k);
    /* No memory for the key only costs the cache, not the build; a
     * folder name too long for the key's path means no cache either. */
    k->text = malloc(len);
    if (!k->text || !*cache_dir ||
        strlen(cache_dir) + 32 > sizeof k->path)
        return;
    size_t n = 0;
    for (size_t i = 0; i < nparts; i++) {
        size_t m = strlen(parts[i]) + 1;
        memcpy(k->text + n, parts[i], m);
        n += m;
    }
    memcpy(k->text + n, src, src_len);
    k->len = len;
    k->hash = fnv1a(FNV_OFFSET, k->text, len);
    k->usable = 1;
    snprintf(k->path, sizeof k->path, "%s/%016llx.bin", cache_dir,
             (unsigned long long)k->hash);
}

/* The cache file, all integers in host order (the file never leaves the
 * machine that wrote it): */
typedef struct cache_header {
    char magic[CACHE_MAGIC_LEN];
    uint64_t key_len; /* the full key */
    uint64_t bin_len; /* the driver's program binary */
    uint64_t check;   /* FNV-1a over key and binary */
} cache_header;

static int read_all(int fd, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* The binary when the file holds exactly this key, intact; else NULL
 * (the caller rebuilds). Only a regular file of ours is opened, and
 * without blocking: a FIFO or device put in its place must not hang. */
static unsigned char *cache_load(const cache_key *k, size_t *len)
{
    int fd = open(k->path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    cache_header h;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
             st.st_uid == geteuid() &&
             (uint64_t)st.st_size <= CACHE_FILE_MAX &&
             read_all(fd, &h, sizeof h) == 0 &&
             memcmp(h.magic, CACHE_MAGIC, CACHE_MAGIC_LEN) == 0 &&
             h.key_len == k->len && h.bin_len > 0 &&
             h.bin_len <= CACHE_FILE_MAX &&
             sizeof h + h.key_len + h.bin_len == (uint64_t)st.st_size;
    char *key = ok ? malloc(k->len) : NULL;
    unsigned char *bin = ok ? malloc((size_t)h.bin_len) : NULL;
    ok = ok && key && bin && read_all(fd, key, k->len) == 0 &&
         memcmp(key, k->text, k->len) == 0 &&
         read_all(fd, bin, (size_t)h.bin_len) == 0 &&
         fnv1a(fnv1a(FNV_OFFSET, key, k->len), bin, (size_t)h.bin_len) ==
             h.check;
    close(fd);
    free(key);
    if (!ok) {
        free(bin);
        return NULL;
    }
    *len = (size_t)h.bin_len;
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
    cache_header h;
    memcpy(h.magic, CACHE_MAGIC, CACHE_MAGIC_LEN);
    h.key_len = k->len;
    h.bin_len = len;
    h.check = fnv1a(fnv1a(FNV_OFFSET, k->text, k->len), bin, len);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 &&
             fwrite(k->text, 1, k->len, f) == k->len &&
             fwrite(bin, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    /* rename() is atomic: readers see the old file or the whole new one. */
    if (!ok || rename(tmp, k->path) != 0)
        unlink(tmp);
}

static int build_log_error(cl_program prog, const ocl_device_choice *dev,
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
    int rc = eplbi_fail(EPLB_ERR_KERNEL_BUILD,
                        "the kernels failed to build (%s) on device '%s' "
                        "(platform '%s', driver %s) with options '%s'. If "
                        "EPLB_CL_KERNEL_DIR is set, check those .cl files; "
                        "else report this log:\n%s",
                        ocl_error_name(err), dev->device_name,
                        dev->platform_name, dev->driver_version, options,
                        log ? log : "(no log)");
    free(log);
    return rc;
}

/* EPLB_CL_BUILD_LOG=1: the compiler's log of every fresh build on stderr
 * (registers, spills), for work on the kernels. */
static void print_build_log(cl_program prog, const ocl_device_choice *dev,
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

/* Whether every kernel the caller needs can be made from p: a binary
 * that builds but lacks one (another program's) is rebuilt, not left to
 * fail in the caller on every later run. */
static int kernels_present(cl_program p, const char *kernels)
{
    int ok = 1;
    for (const char *s = kernels; ok && *s;) {
        size_t n = strcspn(s, ";");
        char name[KERNEL_NAME_MAX];
        if (n >= sizeof name)
            return 0;
        memcpy(name, s, n);
        name[n] = '\0';
        cl_int err;
        cl_kernel k = clCreateKernel(p, name, &err);
        ok = err == CL_SUCCESS;
        if (k)
            clReleaseKernel(k);
        s += n + (s[n] == ';');
    }
    return ok;
}

static cl_program from_binary(cl_context ctx, const ocl_device_choice *dev,
                              const unsigned char *bin, size_t len,
                              const char *options, const char *kernels)
{
    cl_int err, status;
    cl_program p = clCreateProgramWithBinary(ctx, 1, &dev->device, &len, &bin,
                                             &status, &err);
    if (err != CL_SUCCESS || status != CL_SUCCESS)
        return p ? (clReleaseProgram(p), NULL) : NULL;
    if (clBuildProgram(p, 1, &dev->device, options, NULL, NULL) !=
            CL_SUCCESS || !kernels_present(p, kernels)) {
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

/* One build at a time in the process: PoCL's compiler (LLVM) showed data
 * races under ThreadSanitizer when two contexts built at once, and
 * builds are rare (once per shape, mostly from the cache). */
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;

static int build_locked(cl_context ctx, const ocl_device_choice *dev,
                        const eplb_env *env, const char *const *files,
                        int nfiles,
                        const char *options, const char *kernels,
                        cl_program *out);

int ocl_program_build(cl_context ctx, const ocl_device_choice *dev,
                      const eplb_env *env, const char *const *files,
                      int nfiles,
                      const char *options, const char *kernels,
                      cl_program *out)
{
    pthread_mutex_lock(&build_lock);
    int rc = build_locked(ctx, dev, env, files, nfiles, options, kernels,
                          out);
    pthread_mutex_unlock(&build_lock);
    return rc;
}

static int build_locked(cl_context ctx, const ocl_device_choice *dev,
                        const eplb_env *env, const char *const *files,
                        int nfiles,
                        const char *options, const char *kernels,
                        cl_program *out)
{
    size_t src_len;
    int rc = EPLB_OK;
    char *src = program_source(env->kernel_dir, files, nfiles, &src_len,
                               &rc);
    if (!src)
        return rc;
    cache_key key;
    make_cache_key(&key, dev, env->cache_dir, src, src_len, options);
    if (key.usable) {
        size_t len;
        unsigned char *bin = cache_load(&key, &len);
        cl_program p = bin ? from_binary(ctx, dev, bin, len, options, kernels)
                           : NULL;
        free(bin);
        if (p) {
            free(key.text);
            free(src);
            *out = p;
            return EPLB_OK;
        }
    }
    cl_int err;
    const char *text = src;
    cl_program p = clCreateProgramWithSource(ctx, 1, &text, &src_len, &err);
    free(src);
    if (err != CL_SUCCESS) {
        free(key.text);
        return eplbi_fail(EPLB_ERR_OPENCL,
                          "clCreateProgramWithSource failed with %s on '%s'",
                          ocl_error_name(err), dev->device_name);
    }
    err = clBuildProgram(p, 1, &dev->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        free(key.text);
        rc = build_log_error(p, dev, options, err);
        clReleaseProgram(p);
        return rc;
    }
    if (env->build_log)
        print_build_log(p, dev, options);
    if (key.usable)
        store_binary(p, &key);
    free(key.text);
    *out = p;
    return EPLB_OK;
}
