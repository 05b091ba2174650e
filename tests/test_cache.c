/* The program cache trusts nothing it reads: files of another key under
 * a program's name, binaries of another program with a valid checksum,
 * FIFOs and directories in place of cache files each end in a rebuild
 * and a correct plan, never a crash, a hang or a lasting error. And an
 * out-of-memory while reading kernel sources is EPLB_ERR_OUT_OF_MEMORY. */
#include <dirent.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "testutil.h"
#include "workload.h"

/* lib/cl_program.c's file layout: this header, then key and binary. */
typedef struct cache_header {
    char magic[8];
    uint64_t key_len, bin_len, check;
} cache_header;

typedef struct cache_file {
    char path[4096];
    cache_header h;
    unsigned char *key, *bin;
} cache_file;

/* A rebalance stuck on a FIFO must fail the test, not hang make check. */
#define HANG_SECONDS 300

static eplb_shape shape = {3, 32, 40, 4, 2, 8};
static float weight[3 * 32];
static test_plan expect;
static char dir[64];

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static uint64_t checksum(const cache_file *f)
{
    uint64_t c = fnv1a(0xCBF29CE484222325ull, f->key, f->h.key_len);
    return fnv1a(c, f->bin, f->h.bin_len);
}

static void *read_part(FILE *in, uint64_t n)
{
    char *p = malloc(n + 1);
    if (p && fread(p, 1, n, in) != n) {
        free(p);
        return NULL;
    }
    if (p)
        p[n] = '\0';
    return p;
}

/* 0 when path is a well-formed cache file with a right checksum. */
static int file_read(const char *path, cache_file *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    FILE *in = fopen(path, "rb");
    if (!in)
        return -1;
    int ok = fread(&f->h, sizeof f->h, 1, in) == 1 &&
             memcmp(f->h.magic, "EPLBBIN2", 8) == 0 &&
             f->h.key_len < (1u << 24) && f->h.bin_len < (1u << 30) &&
             (f->key = read_part(in, f->h.key_len)) &&
             (f->bin = read_part(in, f->h.bin_len)) && fgetc(in) == EOF;
    fclose(in);
    return ok && checksum(f) == f->h.check ? 0 : -1;
}

static void file_free(cache_file *f)
{
    free(f->key);
    free(f->bin);
}

/* Writes f's parts to path with a checksum made right for them, as a
 * careful forger (or a bit flip the checksum misses) would. */
static int file_write(const char *path, cache_file *f)
{
    f->h.check = checksum(f);
    FILE *out = fopen(path, "wb");
    int ok = out && fwrite(&f->h, sizeof f->h, 1, out) == 1 &&
             fwrite(f->key, 1, f->h.key_len, out) == f->h.key_len &&
             fwrite(f->bin, 1, f->h.bin_len, out) == f->h.bin_len;
    if (out)
        ok = fclose(out) == 0 && ok;
    return ok ? 0 : -1;
}

static void clear_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        if (remove(path) != 0)
            rmdir(path);
    }
    if (d)
        closedir(d);
}

/* A fresh cache of the two programs (groups, slots), read back. */
static void fresh_cache(cache_file *groups, cache_file *slots)
{
    clear_dir();
    memset(groups, 0, sizeof *groups);
    memset(slots, 0, sizeof *slots);
    test_plan p;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_OPENCL, 5, 3, 2, &shape,
                                   weight, &p) == EPLB_OK);
    test_plan_free(&p);
    DIR *d = opendir(dir);
    struct dirent *ent;
    int n = 0;
    while (d && (ent = readdir(d))) {
        if (!strstr(ent->d_name, ".bin"))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        cache_file f;
        CU_ASSERT_FATAL(file_read(path, &f) == 0);
        /* The key starts "version\0options\0"; the slots program's
         * options name it. */
        const char *options = (const char *)f.key + strlen((char *)f.key) + 1;
        int is_slots = strstr(options, "-DEPLB_SLOTS_PROGRAM") != NULL;
        *(is_slots ? slots : groups) = f;
        n++;
    }
    if (d)
        closedir(d);
    CU_ASSERT_FATAL(n == 2 && groups->key && slots->key);
}

/* A new context plans right despite what lies in the cache, and leaves a
 * good file for the program at path. */
static void plans_right_and_rebuilds(const char *path, const cache_file *was)
{
    alarm(HANG_SECONDS);
    test_plan p;
    int rc = test_rebalance(EPLB_BACKEND_OPENCL, 5, 3, 2, &shape, weight, &p);
    alarm(0);
    CU_ASSERT(rc == EPLB_OK);
    if (rc == EPLB_OK)
        CU_ASSERT(test_plan_equal(&p, &expect));
    test_plan_free(&p);
    cache_file now;
    CU_ASSERT(file_read(path, &now) == 0);
    CU_ASSERT(now.h.key_len == was->h.key_len && now.key &&
              memcmp(now.key, was->key, was->h.key_len) == 0);
    file_free(&now);
}

static int suite_init(void)
{
    workload_generate(weight, shape.layers, shape.experts, 8);
    snprintf(dir, sizeof dir, "cache-test-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    setenv("EPLB_CL_CACHE_DIR", dir, 1);
    /* The reference backend gives the same plan for the same seed. */
    return test_rebalance(EPLB_BACKEND_REFERENCE, 5, 3, 2, &shape, weight,
                          &expect) == EPLB_OK ? 0 : -1;
}

static int suite_clean(void)
{
    clear_dir();
    rmdir(dir);
    test_plan_free(&expect);
    return 0;
}

/* Another program's whole file (its own key, a valid checksum) under this
 * program's name: the full key differs, so it is rebuilt. */
static void test_other_key_same_name(void)
{
    cache_file g, s;
    fresh_cache(&g, &s);
    CU_ASSERT_FATAL(file_write(g.path, &s) == 0);
    plans_right_and_rebuilds(g.path, &g);
    file_free(&g);
    file_free(&s);
}

/* The key right, the binary another program's, the checksum made right:
 * the driver loads it, a kernel the engine needs is missing, rebuilt. */
static void test_swapped_binaries(void)
{
    cache_file g, s;
    fresh_cache(&g, &s);
    cache_file forged_g = g, forged_s = s;
    forged_g.bin = s.bin;
    forged_g.h.bin_len = s.h.bin_len;
    forged_s.bin = g.bin;
    forged_s.h.bin_len = g.h.bin_len;
    CU_ASSERT_FATAL(file_write(g.path, &forged_g) == 0);
    CU_ASSERT_FATAL(file_write(s.path, &forged_s) == 0);
    plans_right_and_rebuilds(g.path, &g);
    plans_right_and_rebuilds(s.path, &s);
    /* Rebuilt for good: the next context reads the files back. */
    plans_right_and_rebuilds(g.path, &g);
    file_free(&g);
    file_free(&s);
}

static void test_truncated(void)
{
    cache_file g, s;
    fresh_cache(&g, &s);
    CU_ASSERT_FATAL(truncate(g.path, (off_t)(sizeof g.h + g.h.key_len + 3)) ==
                    0);
    plans_right_and_rebuilds(g.path, &g);
    file_free(&g);
    file_free(&s);
}

/* A FIFO in place of a cache file: opening it must not wait for a writer;
 * the rebuilt file replaces it. */
static void test_fifo(void)
{
    cache_file g, s;
    fresh_cache(&g, &s);
    CU_ASSERT_FATAL(remove(g.path) == 0);
    CU_ASSERT_FATAL(mkfifo(g.path, 0600) == 0);
    plans_right_and_rebuilds(g.path, &g);
    file_free(&g);
    file_free(&s);
}

/* A directory where the file belongs cannot be replaced: the plan is
 * still right, the cache just unused for that program. */
static void test_directory(void)
{
    cache_file g, s;
    fresh_cache(&g, &s);
    CU_ASSERT_FATAL(remove(g.path) == 0);
    CU_ASSERT_FATAL(mkdir(g.path, 0700) == 0);
    alarm(HANG_SECONDS);
    test_plan p;
    CU_ASSERT(test_rebalance(EPLB_BACKEND_OPENCL, 5, 3, 2, &shape, weight,
                             &p) == EPLB_OK);
    alarm(0);
    CU_ASSERT(test_plan_equal(&p, &expect));
    test_plan_free(&p);
    rmdir(g.path);
    file_free(&g);
    file_free(&s);
}

/* Copies the kernel files named into kdir, the first one padded with a
 * comment of pad bytes. */
static int kernel_copy(const char *kdir, size_t pad)
{
    const char *src = getenv("EPLB_TEST_SRCDIR");
    const char *files[] = {"eplb_rules.h", "eplb_scratch.h", "eplb_pack.cl",
                           "eplb_rebalance.cl", "eplb_floor.cl"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/cl/%s", src ? src : ".", files[i]);
        snprintf(to, sizeof to, "%s/%s", kdir, files[i]);
        FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
        int ok = in && out;
        int c;
        while (ok && (c = fgetc(in)) != EOF)
            fputc(c, out);
        if (ok && i == 0 && pad) {
            static char line[4096];
            memset(line, 'x', sizeof line);
            fputs("/*", out);
            for (size_t k = 0; k < pad; k += sizeof line)
                fwrite(line, 1, sizeof line, out);
            fputs("*/\n", out);
        }
        if (in)
            fclose(in);
        if (out)
            ok = fclose(out) == 0 && ok;
        if (!ok)
            return -1;
    }
    return 0;
}

/* The private writable memory the process maps now (VmData), which
 * RLIMIT_DATA caps, thread arenas' growth included. */
static long data_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmData: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

/* Larger than a malloc arena (64 MiB), so that no free space kept from
 * earlier calls can hold the file: it needs a fresh mapping. */
#define PAD_BYTES (96 << 20)
/* Room left under the cap for the driver's threads. */
#define CAP_ROOM (16 << 20)

/* In a child: a context made, then the address space capped so that the
 * padded kernel file cannot be read; the rebalance must say "out of
 * memory". Exit 0 when it does, 1 when another status came back, 3
 * when there is no CPU device. */
static int oom_child(const char *kdir)
{
    setenv("EPLB_CL_KERNEL_DIR", kdir, 1);
    setenv("EPLB_CL_CACHE_DIR", "off", 1);
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    /* A CPU device: a GPU driver's own mappings under the cap would make
     * the figure about the driver, not about reading the sources. */
    o.device_type = "cpu";
    o.enforce_device = 1;
    eplb_context *ctx;
    if (eplb_context_create(&ctx, &o) != EPLB_OK)
        return 3;
    test_plan p;
    if (test_plan_alloc(&p, &shape))
        return 2;
    /* Large blocks from fresh mappings, not from free heap space kept
     * from earlier calls, so that the cap below hits the kernel file's
     * buffer. */
    mallopt(M_MMAP_THRESHOLD, 64 << 10);
    malloc_trim(0);
    long now = data_bytes();
    struct rlimit lim = {(rlim_t)now + CAP_ROOM, (rlim_t)now + CAP_ROOM};
    if (now <= 0 || setrlimit(RLIMIT_DATA, &lim) != 0)
        return 2;
    int rc = eplb_rebalance(ctx, &shape, weight, p.phy2log, p.log2phy,
                            p.logcnt);
    printf("  capped rebalance: %s (%s)\n", eplb_strerror(rc),
           eplb_last_error());
    return rc == EPLB_ERR_OUT_OF_MEMORY ? 0 : 1;
}

static void test_kernel_source_oom(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* The sanitizers reserve terabytes of shadow: no room for a cap. */
    printf("\n  skipped under a sanitizer\n");
    return;
#endif
    char kdir[] = "kernels-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(kdir) != NULL);
    CU_ASSERT_FATAL(kernel_copy(kdir, PAD_BYTES) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(oom_child(kdir));
    int st = 0;
    CU_ASSERT(waitpid(pid, &st, 0) == pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
        printf("\n  SKIP: no OpenCL CPU device to cap\n");
    else
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    DIR *d = opendir(kdir);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", kdir, ent->d_name);
        if (ent->d_name[0] != '.')
            remove(path);
    }
    if (d)
        closedir(d);
    rmdir(kdir);
}

static CU_TestInfo cache_tests[] = {
    {"another key's file under the name is rebuilt",
     test_other_key_same_name},
    {"swapped binaries with right checksums are rebuilt",
     test_swapped_binaries},
    {"a truncated file is rebuilt", test_truncated},
    {"a FIFO in place of a file does not hang", test_fifo},
    {"a directory in place of a file", test_directory},
    {"out of memory reading kernel sources", test_kernel_source_oom},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"program cache", suite_init, suite_clean, NULL, NULL, cache_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
