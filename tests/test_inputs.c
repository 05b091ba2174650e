/* Every input rule of SPEC.md is its own status with a message naming the
 * value, and on any error no output element is written. */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

static CU_TestInfo input_tests[] = {
    {"shape rules", test_shape_rules},
    {"load rules", test_load_rules},
    {"NULL arguments", test_null_arguments},
    {"options", test_options},
    {"status table and version", test_status_table},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"input rules", open_ctx, close_ctx, NULL, NULL, input_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
