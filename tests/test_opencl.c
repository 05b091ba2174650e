#define _GNU_SOURCE /* memmem */
/* The OpenCL backend (on PoCL in CI): plan for plan equal to the reference
 * backend, device filters, kernel build errors, the binary cache, and the
 * fallback when no platform exists. */
#include <dirent.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
/* for eplb_context_profile */
#define EPLB_EXPERIMENTAL
#include "cunit_main.h"
#include "loadfile.h"
#include "testutil.h"
#include "workload.h"

#define POISON 0x6B6B6B6B

/* OpenCL and reference plans for one setting; both must succeed and
 * agree. */
static void compare(const eplb_shape *s, const float *w, int cands,
                    int rounds, uint64_t seed)
{
    test_plan ref, cl;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, cands, rounds,
                                   seed, s, w, &ref) == EPLB_OK);
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_OPENCL, cands, rounds, seed,
                                   s, w, &cl) == EPLB_OK);
    int same = test_plan_equal(&ref, &cl);
    if (!same)
        printf("\n  differs: L=%d E=%d P=%d G=%d N=%d M=%d C=%d T=%d "
               "seed=%llu\n", s->layers, s->experts, s->num_replicas,
               s->num_groups, s->num_nodes, s->num_gpus, cands, rounds,
               (unsigned long long)seed);
    CU_ASSERT(same);
    test_plan_free(&ref);
    test_plan_free(&cl);
}

static const int settings[][2] = {{1, 0}, {1, 20}, {7, 0}, {7, 20},
                                  {64, 0}, {64, 20}};

/* Generated loads of shapes that take each of the kernel forms a device
 * picks by default (on a CPU: candidates in vector lanes, one part or
 * several, rows of few packs and of many packs kept in heaps, state in
 * local memory or, past it, global), in the given search settings. */
static void generated_equal(const eplb_shape *shapes, size_t n,
                            const int (*sets)[2], size_t nsets)
{
    for (size_t i = 0; i < n; i++) {
        const eplb_shape *s = &shapes[i];
        float *w = malloc((size_t)s->layers * s->experts * sizeof(float));
        workload_generate(w, s->layers, s->experts, 500 + i);
        for (size_t k = 0; k < nsets; k++)
            compare(s, w, sets[k][0], sets[k][1], 11 * i + k);
        free(w);
    }
}

static const eplb_shape gen_shapes[] = {
    {2, 12, 16, 4, 2, 8},     {6, 256, 288, 8, 4, 32},
    {3, 256, 320, 8, 8, 64},  {3, 256, 288, 8, 18, 144},
    {3, 64, 96, 4, 2, 96},    {3, 64, 80, 8, 4, 4},
    {3, 64, 72, 8, 1, 8},     {3, 32, 32, 4, 2, 8},
    {2, 48, 60, 6, 4, 12},    {2, 16, 24, 1, 1, 4},
};

/* The fast suite: deterministic (one candidate) and the default search
 * (64 candidates in several parts) on the DeepSeek shape, a shape of many
 * packs (heaps), one of a pack a GPU, and a small one; one candidate each
 * on the others. */
static void test_generated_default(void)
{
    static const int both[][2] = {{1, 0}, {64, 20}};
    static const int one[][2] = {{1, 0}};
    generated_equal(gen_shapes, 1, both, 2);
    generated_equal(gen_shapes + 1, 1, both, 2);
    generated_equal(gen_shapes + 3, 2, both, 2);
    generated_equal(gen_shapes + 7, 1, one, 1);
    generated_equal(gen_shapes + 9, 1, one, 1);
}

/* The full matrix: every shape in every setting (1, 7 and 64 candidates,
 * with and without swap rounds). */
static void test_generated_equal(void)
{
    generated_equal(gen_shapes, sizeof gen_shapes / sizeof gen_shapes[0],
                    settings, sizeof settings / sizeof settings[0]);
}

static void test_deterministic_is_reference(void)
{
    eplb_shape s = test_golden_shape;
    const float *w = test_golden_weight;
    const int32_t *golden = test_golden_phy2log;
    test_plan p;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_OPENCL, 1, 0, 0, &s, w, &p) ==
                    EPLB_OK);
    CU_ASSERT(memcmp(p.phy2log, golden, sizeof test_golden_phy2log) == 0);
    test_plan_free(&p);
}

static void test_real_equal(void)
{
    if (!test_workloads_dir())
        return;
    for (int f = 0; test_workload_files[f]; f++) {
        int L, E;
        float *w = test_load_workload(test_workload_files[f], &L, &E);
        CU_ASSERT_FATAL(w != NULL);
        for (int c = 0; c < 3; c++) {
            eplb_shape s = {L, E, test_configs[c][0], test_configs[c][1],
                            test_configs[c][2], test_configs[c][3]};
            /* all settings on one file, the default on every file */
            if (f == 0)
                for (size_t k = 0; k < sizeof settings / sizeof settings[0];
                     k++)
                    compare(&s, w, settings[k][0], settings[k][1], 3 + k);
            else
                compare(&s, w, 64, 20, (uint64_t)f);
        }
        free(w);
    }
}

/* Plans generated loads of each shape on ctx (default search settings)
 * and checks each against a fresh reference-backend plan. */
static void check_context_plans(eplb_context *ctx, const eplb_shape *shapes,
                                int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        const eplb_shape *s = &shapes[i];
        float *w = malloc((size_t)s->layers * s->experts * sizeof(float));
        workload_generate(w, s->layers, s->experts, seed + i);
        test_plan a, b;
        CU_ASSERT_FATAL(test_plan_alloc(&a, s) == 0);
        CU_ASSERT(eplb_rebalance(ctx, s, w, a.phy2log, a.log2phy,
                                 a.logcnt) == EPLB_OK);
        CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 64, 20, 0, s,
                                       w, &b) == EPLB_OK);
        CU_ASSERT(test_plan_equal(&a, &b));
        test_plan_free(&a);
        test_plan_free(&b);
        free(w);
    }
}

/* check_context_plans on a new OpenCL context with default options, in
 * the kernel ways the test set (test_way). */
static void check_new_context_plans(const eplb_shape *shapes, int n,
                                    uint64_t seed)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    eplb_context *ctx;
    CU_ASSERT_FATAL(test_context_create(&ctx, &o) == EPLB_OK);
    check_context_plans(ctx, shapes, n, seed);
    eplb_context_destroy(ctx);
}

static void test_context_reuse(void)
{
    /* One context, shapes changing between calls, same answers as fresh
     * contexts. */
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    CU_ASSERT_STRING_EQUAL(eplb_context_backend(ctx), "opencl");
    eplb_shape shapes[] = {{4, 64, 80, 8, 4, 8}, {9, 64, 80, 8, 4, 8},
                           {2, 32, 48, 4, 2, 8}, {4, 64, 80, 8, 4, 8}};
    check_context_plans(ctx, shapes, 4, 40);
    eplb_context_destroy(ctx);
}

static void test_global_scratch(void)
{
    /* Work-group state in global memory instead of local: same plans. */
    test_way(EPLB_TUNE_GLOBAL_SCRATCH, 1);
    eplb_shape shapes[] = {{4, 256, 288, 8, 4, 32}, {2, 256, 288, 8, 18, 144},
                           {3, 64, 96, 4, 2, 96}};
    check_new_context_plans(shapes, 3, 90);
    /* the GPUs' path for many packs (on PoCL 5+ CPUs the heaps again) */
    test_way(EPLB_TUNE_LANES, 1);
    test_way(EPLB_TUNE_SPLIT, 1);
    check_new_context_plans(shapes, 3, 95);
}

/* Generated loads of s with `zeros` experts of each layer at zero load:
 * past about N - M zero items, a packing row's first M items are no
 * longer all heavier than zero and the fill's closed-form rounds
 * (doc/ALGORITHM.md section 5) must give way to the greedy loop. */
static void compare_sparse(const eplb_shape *s, int zeros, uint64_t seed)
{
    float *w = malloc((size_t)s->layers * s->experts * sizeof(float));
    workload_generate(w, s->layers, s->experts, seed);
    for (int l = 0; l < s->layers; l++)
        for (int e = 0; e < s->experts; e++)
            if ((e * 37 + l) % s->experts < zeros)
                w[(size_t)l * s->experts + e] = 0.0f;
    compare(s, w, 64, 20, seed);
    compare(s, w, 1, 0, seed);
    free(w);
}

/* Candidates per work-item (EPLB_TUNE_LANES): 1 is the GPUs' path (with
 * many packs split over work-items on GPUs, heaps on CPUs), 16 the CPUs'
 * default; 4 leaves lanes of a chunk past the candidates at 7. The
 * global shapes have 144 and 56 packs: blocks of 16 packs, the last one
 * full or not. */
static void test_lanes(void)
{
    /* "1" twice: the heap path (CPUs' default for many packs), then the
     * split path (GPUs'), EPLB_TUNE_SPLIT 1 (kept on heaps by PoCL 5+) */
    static const int lanes[] = {16, 1, 4, 1};
    eplb_shape shapes[] = {{4, 256, 288, 8, 4, 32}, {2, 256, 320, 8, 8, 64},
                           {2, 256, 288, 8, 18, 144}, {3, 64, 96, 4, 2, 96},
                           {2, 256, 280, 8, 7, 56}};
    for (int i = 0; i < 4; i++) {
        test_way(EPLB_TUNE_LANES, lanes[i]);
        test_way(EPLB_TUNE_SPLIT, i == 3);
        check_new_context_plans(shapes, 5, 70 + 10 * i);
        float *w = malloc(4 * 256 * sizeof(float));
        workload_generate(w, 4, 256, 77);
        compare(&shapes[0], w, 7, 20, 5);
        free(w);
        /* two and five items a pack, with zero loads that leave the
         * closed-form fill rounds on and that turn them off */
        for (int z = 0; z < 3; z++) {
            compare_sparse(&shapes[2], (int[]){100, 140, 200}[z], 60 + z);
            compare_sparse(&shapes[4], (int[]){20, 200, 230}[z], 63 + z);
            compare_sparse(&shapes[0], (int[]){60, 200, 240}[z], 66 + z);
        }
        /* every expert equally loaded: every key ties with a weight, and
         * the windows of the GPUs' key ranking span the whole row */
        float *flat = malloc(2 * 256 * sizeof(float));
        for (int e = 0; e < 2 * 256; e++)
            flat[e] = 1000.0f;
        compare(&shapes[2], flat, 64, 20, 9);
        compare(&shapes[4], flat, 64, 20, 9);
        free(flat);
    }
}

/* A row's candidates spread over work-groups (EPLB_TUNE_PARTS): the same
 * plans whatever the count, in every kernel form (the device's own, the
 * GPUs' split rows). 7 candidates in 8 parts leave each part one
 * candidate; flat loads tie every candidate, where the lowest part must
 * win. */
static void test_parts(void)
{
    static const int parts[] = {2, 8};
    eplb_shape shapes[] = {{4, 256, 288, 8, 4, 32}, {2, 256, 288, 8, 18, 144},
                           {2, 256, 280, 8, 7, 56}, {3, 64, 96, 4, 2, 96}};
    float *w = malloc(4 * 256 * sizeof(float));
    workload_generate(w, 4, 256, 31);
    float *flat = malloc(4 * 256 * sizeof(float));
    for (int e = 0; e < 4 * 256; e++)
        flat[e] = 1000.0f;
    for (int i = 0; i < 4; i++) {
        test_way(EPLB_TUNE_PARTS, parts[i % 2]);
        if (i >= 2) {
            test_way(EPLB_TUNE_LANES, 1);
            test_way(EPLB_TUNE_SPLIT, 1);
        }
        check_new_context_plans(shapes, 4, 110 + 10 * i);
        compare(&shapes[1], w, 7, 20, 3);
        compare(&shapes[0], w, 7, 20, 4);
        compare(&shapes[1], flat, 64, 20, 5);
        compare(&shapes[2], flat, 13, 20, 6);
    }
    free(w);
    free(flat);
}

/* The loads read in place (CPU devices' way: uploaded on GPUs), one
 * float past a malloc'd block's start: an address not 8-byte aligned. */
static void test_loads_unaligned(void)
{
    test_way(EPLB_TUNE_LOADS_IN_PLACE, 1);
    eplb_shape s = {3, 64, 80, 8, 4, 8};
    float *block = malloc((3 * 64 + 1) * sizeof(float));
    CU_ASSERT_FATAL(block != NULL);
    workload_generate(block + 1, s.layers, s.experts, 77);
    compare(&s, block + 1, 64, 20, 9);
    free(block);
}

/* The CPU devices' ways and the GPUs': each layer finished by its last
 * slots work-group (CPUs by default; EPLB_TUNE_FINISH_IN_SLOTS 0 runs
 * the finish kernel, as GPUs always do), the loads read in place
 * (EPLB_TUNE_LOADS_IN_PLACE 1) or uploaded (0). The same plans, call after
 * call on one context with other loads each time, fewer layers and then
 * more than the buffers hold between (the last work-group sets its
 * layer's count back for the next call, or that call's plan would not be
 * written). Loads at an address that is not 8-byte aligned:
 * test_loads_unaligned. */
static void test_cpu_ways(void)
{
    static const int modes[][2] = {{0, 0}, {1, 1}, {0, 1}, {1, 0}};
    eplb_shape shapes[] = {{4, 256, 288, 8, 4, 32}, {4, 256, 288, 8, 4, 32},
                           {2, 256, 288, 8, 4, 32}, {6, 256, 288, 8, 4, 32},
                           {4, 256, 288, 8, 4, 32}, {3, 256, 288, 8, 18, 144},
                           {3, 256, 288, 8, 18, 144}};
    for (int i = 0; i < 4; i++) {
        test_way(EPLB_TUNE_FINISH_IN_SLOTS, modes[i][0]);
        test_way(EPLB_TUNE_LOADS_IN_PLACE, modes[i][1]);
        check_new_context_plans(shapes, i < 2 ? 7 : 2, 200 + 10 * i);
    }
}

/* A plan whose log2phy passes 64 MiB (18 layers of 256 experts, up to
 * 3841 replicas each: 70.8 MB) is written by several host threads: the
 * same plan as the reference's, every layer. Deterministic mode keeps the
 * reference's search short. */
static void test_large_log2phy(void)
{
    eplb_shape s = {18, 256, 4096, 8, 4, 32};
    float *w = malloc((size_t)s.layers * s.experts * sizeof(float));
    CU_ASSERT_FATAL(w != NULL);
    workload_generate(w, s.layers, s.experts, 12);
    compare(&s, w, 1, 0, 0);
    free(w);
}

/* Loads near FLT_MAX: pack sums overflow to +inf, where the lanes path
 * leaves its fast tests for the scalar path's. */
static void test_overflowing_sums(void)
{
    static const eplb_shape shapes[] = {{2, 64, 80, 8, 4, 8},
                                        {2, 64, 128, 8, 16, 64}};
    float w[2 * 64];
    for (int i = 0; i < 2 * 64; i++)
        w[i] = i % 5 == 0 ? 3.0e38f : (float)(i % 17);
    for (int k = 0; k < 2; k++) {
        compare(&shapes[k], w, 64, 20, 1);
        compare(&shapes[k], w, 7, 20, 2);
    }
}

/* The option profile: device times of the last rebalance, written into
 * the first struct_size bytes of the caller's eplb_profile only; switched
 * on for a live context by eplb_context_set_options. */
static void test_profile(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    eplb_profile full = {.struct_size = sizeof full};
    eplb_shape s = {2, 64, 80, 8, 4, 8};
    float w[2 * 64];
    for (int i = 0; i < 2 * 64; i++)
        w[i] = (float)(i % 13);
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    /* Not profiling: no profile, nothing written, even after a plan. */
    CU_ASSERT_FATAL(eplb_rebalance(ctx, &s, w, p.phy2log, p.log2phy,
                                   p.logcnt) == EPLB_OK);
    CU_ASSERT(eplb_context_profile(ctx, &full) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(full.upload_us == 0.0);
    o.profile = 1;
    CU_ASSERT_FATAL(eplb_context_set_options(ctx, &o) == EPLB_OK);
    /* No rebalance since: still no profile. */
    CU_ASSERT(eplb_context_profile(ctx, &full) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT_FATAL(eplb_rebalance(ctx, &s, w, p.phy2log, p.log2phy,
                                   p.logcnt) == EPLB_OK);
    CU_ASSERT_FATAL(eplb_context_profile(ctx, &full) == EPLB_OK);
    CU_ASSERT(full.struct_size == sizeof full);
    const double t[] = {full.upload_us, full.groups_us, full.slots_us,
                        full.finish_us, full.download_us};
    for (int i = 0; i < 5; i++)
        CU_ASSERT(isfinite(t[i]) && t[i] >= 0.0);
    /* A caller whose struct ends after upload_us, or after slots_us. */
    const size_t sizes[] = {offsetof(eplb_profile, groups_us),
                            offsetof(eplb_profile, finish_us)};
    for (int k = 0; k < 2; k++) {
        eplb_profile q;
        memset(&q, 0xA5, sizeof q);
        q.struct_size = (uint32_t)sizes[k];
        CU_ASSERT(eplb_context_profile(ctx, &q) == EPLB_OK);
        CU_ASSERT(q.struct_size == sizes[k]);
        CU_ASSERT(q.upload_us == full.upload_us);
        if (k == 1)
            CU_ASSERT(q.groups_us == full.groups_us &&
                      q.slots_us == full.slots_us);
        const unsigned char *b = (const unsigned char *)&q;
        int untouched = 1;
        for (size_t i = sizes[k]; i < sizeof q; i++)
            untouched &= b[i] == 0xA5;
        CU_ASSERT(untouched);
    }
    test_plan_free(&p);
    eplb_context_destroy(ctx);
}

static void test_device_filters(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    o.device = "no-such-device-anywhere";
    o.enforce_device = 1;
    eplb_context *ctx = NULL;
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_NO_DEVICE);
    CU_ASSERT(ctx == NULL);
    CU_ASSERT(strstr(eplb_last_error(), "no-such-device-anywhere") != NULL);
    CU_ASSERT(strstr(eplb_last_error(), "devices present") != NULL);
    o.enforce_device = 0;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    CU_ASSERT(strstr(eplb_context_note(ctx), "instead") != NULL);
    eplb_context_destroy(ctx);
    /* The environment filters: a CPU device is what PoCL offers. */
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    o.enforce_device = 1;
    setenv("EPLB_CL_DEVICE_TYPE", "cpu", 1);
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_OK);
    eplb_context_destroy(ctx);
    setenv("EPLB_CL_DEVICE_TYPE", "toaster", 1);
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_BAD_OPTION);
    unsetenv("EPLB_CL_DEVICE_TYPE");
    setenv("EPLB_CL_PLATFORM", "no-such-platform", 1);
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_NO_DEVICE);
    unsetenv("EPLB_CL_PLATFORM");
}

static int copy_file(const char *from, const char *to, const char *append)
{
    char err[256];
    size_t len;
    char *text = read_file(from, &len, err, sizeof err);
    FILE *f = text ? fopen(to, "w") : NULL;
    if (!f) {
        free(text);
        return -1;
    }
    fwrite(text, 1, len, f);
    if (append)
        fputs(append, f);
    fclose(f);
    free(text);
    return 0;
}

static void test_broken_kernel(void)
{
    const char *src = getenv("EPLB_TEST_SRCDIR");
    CU_ASSERT_FATAL(src != NULL);
    char dir[] = "kernels-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    const char *files[] = {"eplb_rules.h", "eplb_scratch.h", "eplb_pack.cl",
                           "eplb_lanes.cl", "eplb_rebalance.cl",
                           "eplb_floor.cl"};
    const int nfiles = (int)(sizeof files / sizeof files[0]);
    for (int i = 0; i < nfiles; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/cl/%s", src, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        CU_ASSERT_FATAL(copy_file(from, to, i == 2 ? "\nthis is not C;\n"
                                                   : NULL) == 0);
    }
    setenv("EPLB_CL_KERNEL_DIR", dir, 1);
    eplb_shape s = {2, 16, 24, 4, 2, 8};
    float w[32];
    workload_generate(w, 2, 16, 1);
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    test_plan_poison(&p, POISON);
    CU_ASSERT(eplb_rebalance(ctx, &s, w, p.phy2log, p.log2phy, p.logcnt) ==
              EPLB_ERR_KERNEL_BUILD);
    const char *msg = eplb_last_error();
    CU_ASSERT(strstr(msg, "failed to build") != NULL);
    CU_ASSERT(strstr(msg, "-cl-std=CL1.2") != NULL);     /* the options */
    CU_ASSERT(strstr(msg, "this is not C") != NULL ||     /* the log */
              strstr(msg, "error") != NULL);
    CU_ASSERT(test_plan_is_poisoned(&p, POISON));
    eplb_context_destroy(ctx);
    /* The same directory with good files builds. */
    for (int i = 0; i < nfiles; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/cl/%s", src, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        CU_ASSERT_FATAL(copy_file(from, to, NULL) == 0);
    }
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    CU_ASSERT(eplb_rebalance(ctx, &s, w, p.phy2log, p.log2phy, p.logcnt) ==
              EPLB_OK);
    eplb_context_destroy(ctx);
    unsetenv("EPLB_CL_KERNEL_DIR");
    for (int i = 0; i < nfiles; i++) {
        char to[4096];
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        remove(to);
    }
    rmdir(dir);
    test_plan_free(&p);
}

/* Overwrites the middle of every cache file; returns how many. */
static int corrupt_cache(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (!strstr(ent->d_name, ".bin"))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        FILE *f = fopen(path, "r+b");
        if (!f)
            continue;
        fseek(f, 40, SEEK_SET);
        fputs("garbage garbage garbage", f);
        fclose(f);
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_binary_cache(void)
{
    char dir[] = "cache-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    char *old = getenv("EPLB_CL_CACHE_DIR");
    old = old ? strdup(old) : NULL;
    setenv("EPLB_CL_CACHE_DIR", dir, 1);
    eplb_shape s = {3, 32, 40, 4, 2, 8};
    float w[96];
    workload_generate(w, 3, 32, 8);
    test_plan a, b, c;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_OPENCL, 5, 3, 2, &s, w, &a) ==
                    EPLB_OK);
    CU_ASSERT(corrupt_cache(dir) == 2); /* the two programs were cached */
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_OPENCL, 5, 3, 2, &s, w, &b) ==
                    EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    /* Replaced by good copies: a third run reads them back. */
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_OPENCL, 5, 3, 2, &s, w, &c) ==
                    EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &c));
    DIR *d = opendir(dir);
    struct dirent *ent;
    int files = 0;
    while (d && (ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        char path[4096], err[128];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        char *text = read_file(path, &len, err, sizeof err);
        CU_ASSERT(text && len > 32 && memcmp(text, "EPLBBIN2", 8) == 0 &&
                  !memmem(text, len, "garbage", 7));
        free(text);
        remove(path);
        files++;
    }
    if (d)
        closedir(d);
    CU_ASSERT(files == 2); /* no temp files left behind */
    rmdir(dir);
    if (old) {
        setenv("EPLB_CL_CACHE_DIR", old, 1);
        free(old);
    } else {
        unsetenv("EPLB_CL_CACHE_DIR");
    }
    test_plan_free(&a);
    test_plan_free(&b);
    test_plan_free(&c);
}

static void test_no_platform_fallback(void)
{
    /* The ICD loader reads its vendor list once per process: run the tool
     * in a child with an empty one. */
    int st = system("OCL_ICD_VENDORS=/nonexistent-vendors tools/eplb-cl "
                    "--repeat 0 --output /dev/null 2>fallback.txt");
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char err[256];
    size_t len;
    char *text = read_file("fallback.txt", &len, err, sizeof err);
    CU_ASSERT_FATAL(text != NULL);
    if (strstr(text, "backend:      opencl")) {
        /* Not ocl-icd: this loader ignores OCL_ICD_VENDORS, so "no
         * platform" cannot be staged from here. */
        printf("\nSKIP: the OpenCL ICD loader ignores OCL_ICD_VENDORS; "
               "no-platform fallback not exercised\n");
        free(text);
        remove("fallback.txt");
        return;
    }
    CU_ASSERT(strstr(text, "backend:      reference") != NULL);
    CU_ASSERT(strstr(text, "no OpenCL platform") != NULL);
    free(text);
    st = system("OCL_ICD_VENDORS=/nonexistent-vendors tools/eplb-cl "
                "--backend opencl --repeat 0 --output /dev/null "
                "2>fallback.txt");
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    text = read_file("fallback.txt", &len, err, sizeof err);
    CU_ASSERT(text && strstr(text, "no OpenCL platform"));
    free(text);
    remove("fallback.txt");
}

/* The CLBlast path for the group loads: on integer token counts its sums
 * are exact, so its plans equal the reference's. */
static void test_clblast_group_loads(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    o.use_clblast = 1;
    eplb_context *ctx = NULL;
#ifdef HAVE_CLBLAST
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    eplb_shape shapes[] = {{6, 256, 288, 8, 4, 32}, {3, 64, 96, 8, 2, 16}};
    check_context_plans(ctx, shapes, 2, 70);
    eplb_context_destroy(ctx);
#else
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "CLBlast") != NULL);
#endif
}


/* eplb_context_tune: values a key does not take are refused; the note
 * names the ways the last plan took; a changed way gives the same plan. */
static void test_tune(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_OPENCL;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    CU_ASSERT(eplb_context_tune(ctx, EPLB_TUNE_LANES, 3) ==
              EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "EPLB_TUNE_LANES") != NULL);
    CU_ASSERT(eplb_context_tune(ctx, EPLB_TUNE_WG, 48) ==
              EPLB_ERR_BAD_OPTION);
    CU_ASSERT(eplb_context_tune(ctx, (eplb_tune)99, 1) ==
              EPLB_ERR_BAD_OPTION);
    eplb_shape shapes[] = {{2, 64, 80, 8, 4, 8}};
    check_context_plans(ctx, shapes, 1, 3);
    CU_ASSERT(strstr(eplb_context_note(ctx), "kernel ways") != NULL);
    CU_ASSERT(strstr(eplb_context_note(ctx), "scratch global") == NULL);
    CU_ASSERT(eplb_context_tune(ctx, EPLB_TUNE_GLOBAL_SCRATCH, 1) == EPLB_OK);
    check_context_plans(ctx, shapes, 1, 3);
    CU_ASSERT(strstr(eplb_context_note(ctx), "scratch global/global") !=
              NULL);
    CU_ASSERT(eplb_context_tune(ctx, EPLB_TUNE_GLOBAL_SCRATCH,
                                EPLB_TUNE_AUTO) == EPLB_OK);
    /* candidates changed on the live context: the new programs' plan */
    o.candidates = 7;
    CU_ASSERT(eplb_context_set_options(ctx, &o) == EPLB_OK);
    eplb_shape s = {2, 64, 80, 8, 4, 8};
    float w[2 * 64];
    workload_generate(w, 2, 64, 17);
    test_plan a, b;
    CU_ASSERT_FATAL(test_plan_alloc(&a, &s) == 0);
    CU_ASSERT(eplb_rebalance(ctx, &s, w, a.phy2log, a.log2phy, a.logcnt) ==
              EPLB_OK);
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 7, 20, 0, &s, w,
                                   &b) == EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    test_plan_free(&a);
    test_plan_free(&b);
    eplb_context_destroy(ctx);
}

/* Each test starts and ends in the library's own kernel ways. */
static void ways_reset(void)
{
    test_ways_reset();
}

/* The fast suite (make check) plans in the kernel ways the device takes by
 * default; "full: " tests (make check-full) plan in every way. */
static CU_TestInfo opencl_tests[] = {
    {"CLBlast group loads (or its absence)", test_clblast_group_loads},
    {"C=1 T=0 is the golden reference", test_deterministic_is_reference},
    {"generated loads, default ways: equal to reference",
     test_generated_default},
    {"full: generated loads, every setting: equal to reference",
     test_generated_equal},
    {"real loads: equal to reference", test_real_equal},
    {"context reuse across shapes", test_context_reuse},
    {"loads read in place at an unaligned address", test_loads_unaligned},
    {"full: state in global memory", test_global_scratch},
    {"full: candidates per work-item", test_lanes},
    {"full: candidates spread over work-groups", test_parts},
    {"full: finish in slots, loads in place: on and off", test_cpu_ways},
    {"overflowing pack sums", test_overflowing_sums},
    {"full: log2phy past 64 MiB, written by threads", test_large_log2phy},
    {"option profile: device times, struct_size prefix", test_profile},
    {"kernel ways: eplb_context_tune and the note", test_tune},
    {"device filters and enforce", test_device_filters},
    {"broken kernel gives the build log", test_broken_kernel},
    {"corrupt cache is replaced", test_binary_cache},
    {"no platform: reference fallback", test_no_platform_fallback},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"opencl backend", NULL, NULL, ways_reset, ways_reset, opencl_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
