/* Helpers the tests share: plans, validity checks, real workloads. */
#ifndef EPLB_TESTUTIL_H
#define EPLB_TESTUTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "eplb_cl.h"

typedef struct test_plan {
    eplb_shape shape;
    size_t n_p2l, n_l2p, n_cnt;
    int32_t *phy2log, *log2phy, *logcnt;
} test_plan;

int test_plan_alloc(test_plan *p, const eplb_shape *shape);
void test_plan_free(test_plan *p);
/* Fills every output with a sentinel so "untouched" can be checked. */
void test_plan_poison(test_plan *p, int32_t value);
int test_plan_is_poisoned(const test_plan *p, int32_t value);
int test_plan_equal(const test_plan *a, const test_plan *b);

/* Checks every rule a plan must keep; returns NULL when valid, else a
 * static message naming the first broken rule. hier: the hierarchical
 * policy's node constraint is checked too. */
const char *test_plan_check(const test_plan *p, int hier);

/* Kernel ways (eplb_context_tune's keys and values) that every OpenCL
 * context made by test_context_create and test_rebalance takes, until
 * test_ways_reset(); at most 8. Test files that set them reset them in
 * their suites' setup, so that a failed test leaves none to the next. */
void test_way(int key, int value);
void test_ways_reset(void);
int test_context_create(eplb_context **ctx, const eplb_options *o);

/* Plans with one context made from these settings; exits the test on a
 * context failure. */
int test_rebalance(eplb_backend backend, int candidates, int swap_rounds,
                   uint64_t seed, const eplb_shape *shape, const float *w,
                   test_plan *out);

/* The folder of real workloads, or NULL (and a printed reason) when it is
 * absent. */
const char *test_workloads_dir(void);
/* The 12 file names, NULL-terminated. */
extern const char *const test_workload_files[];
/* Loads one real file (all-zero layers dropped); malloc'd [layers][E]. */
float *test_load_workload(const char *file, int *layers, int *experts);

/* DeepSeek's README example, which the rules of doc/ALGORITHM.md
 * reproduce exactly (section 4):
 * 2 layers x 12 experts onto 16 slots, G=4 N=2 M=8. */
extern const eplb_shape test_golden_shape;
extern const float test_golden_weight[24];
extern const int32_t test_golden_phy2log[32];
extern const int32_t test_golden_logcnt[24];

/* The three reference configs (doc/ALGORITHM.md section 12): P, G, N, M. */
extern const int test_configs[3][4];

#endif
