/* Every input rule (doc/ALGORITHM.md section 1) is its own status with a
 * message naming the value, and on any error no output element is
 * written; output structs get no byte past their struct_size. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* for eplb_context_profile */
#define EPLB_EXPERIMENTAL
#include "cunit_main.h"
#include "testutil.h"

#define POISON 0x5A5A5A5A

static eplb_context *ref_ctx;

static int open_ctx(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_REFERENCE;
    return eplb_context_create(&ref_ctx, &o) == EPLB_OK ? 0 : 1;
}

static int close_ctx(void)
{
    eplb_context_destroy(ref_ctx);
    return 0;
}

/* Runs one rebalance into poisoned outputs sized for `alloc`, expects
 * `want`, an untouched output and a message containing `needle`. */
static void expect(const eplb_shape *shape, const eplb_shape *alloc,
                   const float *w, int want, const char *needle)
{
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, alloc) == 0);
    test_plan_poison(&p, POISON);
    int rc = eplb_rebalance(ref_ctx, shape, w, p.phy2log, p.log2phy,
                            p.logcnt);
    CU_ASSERT_EQUAL(rc, want);
    CU_ASSERT(test_plan_is_poisoned(&p, POISON));
    if (needle && !strstr(eplb_last_error(), needle)) {
        printf("\n  message '%s' lacks '%s'\n", eplb_last_error(), needle);
        CU_FAIL("message does not name the value");
    }
    CU_ASSERT(strlen(eplb_strerror(rc)) > 0);
    test_plan_free(&p);
}

static const eplb_shape ok_shape = {2, 16, 24, 4, 2, 8};

static void test_shape_rules(void)
{
    float w[2 * 16];
    for (int i = 0; i < 32; i++)
        w[i] = (float)(i + 1);
    eplb_shape s;
    s = ok_shape; s.num_groups = 3;
    expect(&s, &ok_shape, w, EPLB_ERR_GROUPS_DONT_DIVIDE, "num_groups (3)");
    s = ok_shape; s.num_replicas = 8;
    expect(&s, &ok_shape, w, EPLB_ERR_TOO_FEW_REPLICAS, "num_replicas (8)");
    s = ok_shape; s.num_gpus = 5;
    expect(&s, &ok_shape, w, EPLB_ERR_GPUS_DONT_DIVIDE, "num_gpus (5)");
    s = ok_shape; s.num_nodes = 3;
    expect(&s, &ok_shape, w, EPLB_ERR_NODES_DONT_DIVIDE, "num_nodes (3)");
    s = ok_shape; s.layers = 0;
    expect(&s, &ok_shape, w, EPLB_ERR_ZERO_SIZE, "layers is 0");
    s = ok_shape; s.num_gpus = -8;
    expect(&s, &ok_shape, w, EPLB_ERR_ZERO_SIZE, "num_gpus is -8");
    /* Products that overflow: log2phy would need ~2^40 elements. */
    eplb_shape huge = {1 << 20, 1024, 1 << 20, 1, 1, 1};
    CU_ASSERT(eplb_check_input(&huge, NULL) == EPLB_ERR_SIZE_OVERFLOW);
    CU_ASSERT(strstr(eplb_last_error(), "log2phy") != NULL);
    size_t a = 1;
    CU_ASSERT(eplb_plan_sizes(&huge, &a, NULL, NULL) ==
              EPLB_ERR_SIZE_OVERFLOW);
    CU_ASSERT(a == 1);
}

static void test_load_rules(void)
{
    float w[2 * 16];
    for (int i = 0; i < 32; i++)
        w[i] = 1.0f;
    w[19] = NAN;
    expect(&ok_shape, &ok_shape, w, EPLB_ERR_LOAD_NAN, "weight[1][3]");
    w[19] = INFINITY;
    expect(&ok_shape, &ok_shape, w, EPLB_ERR_LOAD_INFINITE, "weight[1][3]");
    w[19] = -INFINITY;
    expect(&ok_shape, &ok_shape, w, EPLB_ERR_LOAD_INFINITE, "-inf");
    w[19] = -0.5f;
    expect(&ok_shape, &ok_shape, w, EPLB_ERR_LOAD_NEGATIVE, "-0.5");
    w[19] = 1.0f;
    expect(&ok_shape, &ok_shape, NULL, EPLB_ERR_NULL_ARGUMENT, "weight");
    /* Negative zero is zero: valid. */
    w[19] = -0.0f;
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &ok_shape) == 0);
    CU_ASSERT(eplb_rebalance(ref_ctx, &ok_shape, w, p.phy2log, p.log2phy,
                             p.logcnt) == EPLB_OK);
    test_plan_free(&p);
}

static void test_null_arguments(void)
{
    float w[32] = {0};
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &ok_shape) == 0);
    test_plan_poison(&p, POISON);
    CU_ASSERT(eplb_rebalance(NULL, &ok_shape, w, p.phy2log, p.log2phy,
                             p.logcnt) == EPLB_ERR_NULL_ARGUMENT);
    CU_ASSERT(eplb_rebalance(ref_ctx, NULL, w, p.phy2log, p.log2phy,
                             p.logcnt) == EPLB_ERR_NULL_ARGUMENT);
    CU_ASSERT(eplb_rebalance(ref_ctx, &ok_shape, w, p.phy2log, NULL,
                             p.logcnt) == EPLB_ERR_NULL_ARGUMENT);
    CU_ASSERT(strstr(eplb_last_error(), "log2phy") != NULL);
    CU_ASSERT(test_plan_is_poisoned(&p, POISON));
    CU_ASSERT(eplb_context_create(NULL, NULL) == EPLB_ERR_NULL_ARGUMENT);
    eplb_context_destroy(NULL); /* a no-op */
    test_plan_free(&p);
}

static void test_options(void)
{
    eplb_options o;
    eplb_context *ctx = (eplb_context *)&o;
    eplb_options_default(&o);
    CU_ASSERT(o.candidates == 64 && o.swap_rounds == 20 &&
              fabsf(o.noise - 0.2f) < 1e-7f && o.backend == EPLB_BACKEND_AUTO);
    o.candidates = 0;
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(ctx == NULL);
    CU_ASSERT(strstr(eplb_last_error(), "candidates is 0") != NULL);
    eplb_options_default(&o);
    o.noise = NAN;
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_BAD_OPTION);
    eplb_options_default(&o);
    o.swap_rounds = -1;
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_BAD_OPTION);
    eplb_options_default(&o);
    o.policy = (eplb_policy)7;
    CU_ASSERT(eplb_context_create(&ctx, &o) == EPLB_ERR_BAD_OPTION);
    /* An explicit hierarchical policy needs groups to divide over nodes. */
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_REFERENCE;
    o.policy = EPLB_POLICY_HIERARCHICAL;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    eplb_shape s = {1, 16, 24, 4, 8, 8};
    float w[16] = {1};
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    test_plan_poison(&p, POISON);
    CU_ASSERT(eplb_rebalance(ctx, &s, w, p.phy2log, p.log2phy, p.logcnt) ==
              EPLB_ERR_POLICY_MISMATCH);
    CU_ASSERT(test_plan_is_poisoned(&p, POISON));
    CU_ASSERT(eplb_resolve_policy(EPLB_POLICY_AUTO, &s) == EPLB_POLICY_GLOBAL);
    test_plan_free(&p);
    eplb_context_destroy(ctx);
}

/* Output structs (eplb_cl.h): the library writes the first struct_size
 * bytes, all but struct_size itself, and nothing past them. */

#define STRUCT_POISON 0xA5

/* A one-layer plan whose quality is known: GPU loads 2 and 4. */
static const eplb_shape q_shape = {1, 4, 4, 1, 1, 2};
static const float q_w[4] = {1, 1, 1, 3};
static const int32_t q_p2l[4] = {0, 1, 2, 3};
static const int32_t q_cnt[4] = {1, 1, 1, 1};

static int plan_q(eplb_quality *q)
{
    return eplb_plan_quality(&q_shape, EPLB_POLICY_GLOBAL, q_w, q_p2l, q_cnt,
                             q);
}

static int identity_q(eplb_quality *q)
{
    return eplb_identity_quality(&q_shape, q_w, q);
}

/* Bytes [from, to) of a struct all still STRUCT_POISON. */
static int poisoned(const void *p, size_t from, size_t to)
{
    const unsigned char *b = p;
    for (size_t i = from; i < to; i++)
        if (b[i] != STRUCT_POISON)
            return 0;
    return 1;
}

static void test_quality_prefix(void)
{
    int (*const calls[])(eplb_quality *) = {plan_q, identity_q};
    for (int c = 0; c < 2; c++) {
        eplb_quality full = {.struct_size = sizeof full};
        CU_ASSERT_FATAL(calls[c](&full) == EPLB_OK);
        CU_ASSERT(full.struct_size == sizeof full);
        CU_ASSERT(full.balancedness_mean == 0.75 &&
                  full.balancedness_worst == 0.75 && full.worst_layer == 0);
        /* A caller built when the struct ended after balancedness_worst,
         * and one with the first result field only. */
        const size_t sizes[] = {offsetof(eplb_quality, worst_layer),
                                offsetof(eplb_quality, balancedness_mean) +
                                    sizeof(double)};
        for (int k = 0; k < 2; k++) {
            eplb_quality q;
            memset(&q, STRUCT_POISON, sizeof q);
            q.struct_size = (uint32_t)sizes[k];
            CU_ASSERT(calls[c](&q) == EPLB_OK);
            CU_ASSERT(q.struct_size == sizes[k]);
            CU_ASSERT(q.balancedness_mean == full.balancedness_mean);
            if (k == 0)
                CU_ASSERT(q.balancedness_worst == full.balancedness_worst);
            CU_ASSERT(poisoned(&q, sizes[k], sizeof q));
        }
    }
}

static void test_quality_bad_size(void)
{
    const size_t min = offsetof(eplb_quality, balancedness_mean) +
                       sizeof(double);
    const uint32_t bad[] = {0, sizeof(uint32_t), (uint32_t)min - 1,
                            sizeof(eplb_quality) + 1, 0xFFFFFFFFu};
    int (*const calls[])(eplb_quality *) = {plan_q, identity_q};
    for (int c = 0; c < 2; c++)
        for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
            eplb_quality q;
            memset(&q, STRUCT_POISON, sizeof q);
            q.struct_size = bad[k];
            CU_ASSERT(calls[c](&q) == EPLB_ERR_BAD_OPTION);
            CU_ASSERT(strstr(eplb_last_error(), "out->struct_size") != NULL);
            CU_ASSERT(strstr(eplb_last_error(), "eplb_quality") != NULL);
            CU_ASSERT(q.struct_size == bad[k]);
            CU_ASSERT(poisoned(&q, sizeof q.struct_size, sizeof q));
        }
}

/* The size is checked before anything else about the context, so the
 * reference backend shows it (test_opencl.c writes real profiles). */
static void test_profile_bad_size(void)
{
    const uint32_t bad[] = {0, sizeof(uint32_t), sizeof(eplb_profile) + 1};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        eplb_profile p;
        memset(&p, STRUCT_POISON, sizeof p);
        p.struct_size = bad[k];
        CU_ASSERT(eplb_context_profile(ref_ctx, &p) == EPLB_ERR_BAD_OPTION);
        CU_ASSERT(strstr(eplb_last_error(), "out->struct_size") != NULL);
        CU_ASSERT(strstr(eplb_last_error(), "eplb_profile") != NULL);
        CU_ASSERT(poisoned(&p, sizeof p.struct_size, sizeof p));
    }
    eplb_profile p = {.struct_size = sizeof p};
    CU_ASSERT(eplb_context_profile(ref_ctx, &p) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "reference backend") != NULL);
}

static void test_status_table(void)
{
    CU_ASSERT_STRING_EQUAL(eplb_strerror(EPLB_OK), "success");
    for (int code = -1; code >= EPLB_ERR_DEVICE_LIMIT; code--)
        CU_ASSERT(strcmp(eplb_strerror(code), "unknown status code") != 0);
    CU_ASSERT_STRING_EQUAL(eplb_strerror(-999), "unknown status code");
    /* The version is written once (configure.ac); both sides take it. */
    CU_ASSERT_STRING_EQUAL(eplb_version_string(), EPLB_VERSION_STRING);
    CU_ASSERT(eplb_version_number() == EPLB_VERSION_NUMBER);
}


/* Options change on a live context: the next plan is the one a new
 * context with those options makes; a bad change is refused and leaves
 * the options as they were; the backend stays the creation's. */
static void test_set_options(void)
{
    eplb_shape s = {3, 16, 24, 4, 2, 8};
    float w[3 * 16];
    for (int i = 0; i < 3 * 16; i++)
        w[i] = (float)((i * 7919) % 97 + 1);
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_REFERENCE;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    test_plan a, b;
    CU_ASSERT_FATAL(test_plan_alloc(&a, &s) == 0);
    o.candidates = 1;
    o.swap_rounds = 0;
    o.seed = 5;
    CU_ASSERT(eplb_context_set_options(ctx, &o) == EPLB_OK);
    CU_ASSERT(eplb_rebalance(ctx, &s, w, a.phy2log, a.log2phy, a.logcnt) ==
              EPLB_OK);
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 1, 0, 5, &s, w,
                                   &b) == EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    test_plan_free(&b);
    eplb_options got;
    memset(&got, 0, sizeof got);
    got.struct_size = sizeof got;
    CU_ASSERT(eplb_context_get_options(ctx, &got) == EPLB_OK);
    CU_ASSERT(got.candidates == 1 && got.swap_rounds == 0 && got.seed == 5);
    /* refused: out of range, another backend, a bad struct_size */
    eplb_options bad = o;
    bad.tolerance = 0.9f;
    CU_ASSERT(eplb_context_set_options(ctx, &bad) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "tolerance") != NULL);
    bad = o;
    bad.host_threads = -1;
    CU_ASSERT(eplb_context_set_options(ctx, &bad) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "host_threads is -1") != NULL);
    bad.host_threads = 257;
    CU_ASSERT(eplb_context_set_options(ctx, &bad) == EPLB_ERR_BAD_OPTION);
    bad = o;
    bad.backend = EPLB_BACKEND_OPENCL;
    CU_ASSERT(eplb_context_set_options(ctx, &bad) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "new context") != NULL);
    bad = o;
    bad.struct_size = 3;
    CU_ASSERT(eplb_context_set_options(ctx, &bad) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(eplb_context_set_options(ctx, NULL) == EPLB_ERR_NULL_ARGUMENT);
    CU_ASSERT(eplb_context_get_options(ctx, &got) == EPLB_OK);
    CU_ASSERT(got.candidates == 1 && got.tolerance == 0.0f);
    /* profile and tuning are OpenCL's */
    CU_ASSERT(eplb_context_tune(ctx, EPLB_TUNE_LANES, 4) ==
              EPLB_ERR_BAD_OPTION);
    test_plan_free(&a);
    eplb_context_destroy(ctx);
}

/* eplb_plan with a request is eplb_rebalance_from with its inputs; NULL
 * is the fresh plan; a request never set up is refused, untouched
 * outputs. */
static void test_request(void)
{
    eplb_shape s = {2, 16, 24, 4, 2, 8};
    float w[2 * 16];
    for (int i = 0; i < 2 * 16; i++)
        w[i] = (float)((i * 31) % 23 + 1);
    test_plan fresh, a, b;
    CU_ASSERT_FATAL(test_plan_alloc(&fresh, &s) == 0 &&
                    test_plan_alloc(&a, &s) == 0 &&
                    test_plan_alloc(&b, &s) == 0);
    CU_ASSERT(eplb_plan(ref_ctx, &s, w, NULL, fresh.phy2log, fresh.log2phy,
                        fresh.logcnt) == EPLB_OK);
    CU_ASSERT(eplb_rebalance(ref_ctx, &s, w, a.phy2log, a.log2phy,
                             a.logcnt) == EPLB_OK);
    CU_ASSERT(test_plan_equal(&fresh, &a));
    /* from the fresh plan, with GPU 3 dead */
    uint8_t mask[8] = {1, 1, 1, 0, 1, 1, 1, 1};
    eplb_request req;
    eplb_request_default(&req);
    CU_ASSERT(req.struct_size == sizeof req && !req.current_phy2log &&
              !req.gpu_mask);
    req.current_phy2log = fresh.phy2log;
    req.gpu_mask = mask;
    CU_ASSERT(eplb_plan(ref_ctx, &s, w, &req, a.phy2log, a.log2phy,
                        a.logcnt) == EPLB_OK);
    CU_ASSERT(eplb_rebalance_from(ref_ctx, &s, w, fresh.phy2log, mask,
                                  b.phy2log, b.log2phy, b.logcnt) == EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    eplb_request bad = req;
    bad.struct_size = 0;
    test_plan_poison(&a, POISON);
    CU_ASSERT(eplb_plan(ref_ctx, &s, w, &bad, a.phy2log, a.log2phy,
                        a.logcnt) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "struct_size") != NULL);
    CU_ASSERT(test_plan_is_poisoned(&a, POISON));
    test_plan_free(&fresh);
    test_plan_free(&a);
    test_plan_free(&b);
}

static CU_TestInfo input_tests[] = {
    {"shape rules", test_shape_rules},
    {"load rules", test_load_rules},
    {"NULL arguments", test_null_arguments},
    {"options", test_options},
    {"options changed on a live context", test_set_options},
    {"eplb_plan and its request", test_request},
    {"status table and version", test_status_table},
    {"eplb_quality: a shorter struct_size gets its prefix",
     test_quality_prefix},
    {"eplb_quality: struct_size out of range", test_quality_bad_size},
    {"eplb_profile: struct_size out of range", test_profile_bad_size},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"input rules", open_ctx, close_ctx, NULL, NULL, input_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
