/* The reference backend: the golden case (doc/ALGORITHM.md section 4), an
 * independent naive
 * implementation of the deterministic algorithm as oracle, plan validity on
 * generated and real loads, the candidate mode's promises, and metrics. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cunit_main.h"
#include "eplb_rules.h"
#include "testutil.h"
#include "workload.h"

/* ---- a naive transcription of doc/ALGORITHM.md section 3, the oracle */

static void naive_pack(const float *w, int n, int m, int *pack, int *rank)
{
    int k = n / m;
    if (k == 1) {
        for (int i = 0; i < n; i++)
            pack[i] = i, rank[i] = 0;
        return;
    }
    int used[4096] = {0};
    float pw[4096] = {0};
    int pn[4096] = {0};
    for (int step = 0; step < n; step++) {
        int item = -1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (item < 0 || w[i] > w[item]))
                item = i;
        used[item] = 1;
        int best = -1;
        for (int p = 0; p < m; p++)
            if (pn[p] < k && (best < 0 || pw[p] < pw[best]))
                best = p;
        pack[item] = best;
        rank[item] = pn[best]++;
        pw[best] += w[item];
    }
}

static void naive_replicate(const float *w, int n, int p, int *item,
                            int *rank, int *cnt)
{
    for (int e = 0; e < n; e++)
        item[e] = e, rank[e] = 0, cnt[e] = 1;
    for (int s = n; s < p; s++) {
        int best = 0;
        for (int e = 1; e < n; e++)
            if (w[e] / (float)cnt[e] > w[best] / (float)cnt[best])
                best = e;
        item[s] = best;
        rank[s] = cnt[best]++;
    }
}

static void naive_plan(const eplb_shape *s, const float *weight,
                       test_plan *out)
{
    int hier = s->num_groups % s->num_nodes == 0;
    int G = hier ? s->num_groups : 1, N = hier ? s->num_nodes : 1;
    int E = s->experts, P = s->num_replicas, M = s->num_gpus;
    int gs = E / G, gpn = G / N, lpn = E / N, ppn = P / N, gn = M / N,
        ppg = P / M, X = P - E + 1;
    static float gw[4096], wn[4096], tw[4096];
    static int gp[4096], gr[4096], mlog2log[4096], it[4096], rk[4096],
        cnt[4096], pk[4096], prk[4096], phyrank[4096];
    for (int l = 0; l < s->layers; l++) {
        const float *w = weight + (size_t)l * E;
        int32_t *p2l = out->phy2log + (size_t)l * P;
        for (int g = 0; g < G; g++) {
            gw[g] = 0.0f;
            for (int j = 0; j < gs; j++)
                gw[g] += w[g * gs + j];
        }
        naive_pack(gw, G, N, gp, gr);
        for (int g = 0; g < G; g++)
            for (int j = 0; j < gs; j++)
                mlog2log[(gp[g] * gpn + gr[g]) * gs + j] = g * gs + j;
        for (int n = 0; n < N; n++) {
            for (int i = 0; i < lpn; i++)
                wn[i] = w[mlog2log[n * lpn + i]];
            naive_replicate(wn, lpn, ppn, it, rk, cnt);
            for (int q = 0; q < ppn; q++)
                tw[q] = wn[it[q]] / (float)cnt[it[q]];
            naive_pack(tw, ppn, gn, pk, prk);
            for (int q = 0; q < ppn; q++) {
                int slot = n * ppn + pk[q] * ppg + prk[q];
                p2l[slot] = mlog2log[n * lpn + it[q]];
                phyrank[slot] = rk[q];
            }
            for (int i = 0; i < lpn; i++)
                out->logcnt[(size_t)l * E + mlog2log[n * lpn + i]] = cnt[i];
        }
        int32_t *l2p = out->log2phy + (size_t)l * E * X;
        for (int i = 0; i < E * X; i++)
            l2p[i] = -1;
        for (int slot = 0; slot < P; slot++)
            l2p[p2l[slot] * X + phyrank[slot]] = slot;
    }
}

/* ---- helpers --------------------------------------------------------- */

static double layer_max(const eplb_shape *s, const float *w,
                        const test_plan *p, int l, double *loads)
{
    eplb_gpu_loads(s, w, p->phy2log, p->logcnt, loads);
    double mx = 0.0;
    for (int g = 0; g < s->num_gpus; g++)
        mx = fmax(mx, loads[(size_t)l * s->num_gpus + g]);
    return mx;
}

/* Deterministic == the naive oracle, candidates valid and never worse per
 * layer, for one shape and load matrix. */
static void check_shape(const eplb_shape *s, const float *w, uint64_t seed)
{
    test_plan det, cand, oracle;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 1, 0, 0, s, w,
                                   &det) == EPLB_OK);
    CU_ASSERT_FATAL(test_plan_alloc(&oracle, s) == 0);
    naive_plan(s, w, &oracle);
    CU_ASSERT(test_plan_equal(&det, &oracle));
    int hier = s->num_groups % s->num_nodes == 0;
    const char *bad = test_plan_check(&det, hier);
    if (bad)
        printf("\n  deterministic plan invalid: %s\n", bad);
    CU_ASSERT(bad == NULL);
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 64, 20, seed, s, w,
                                   &cand) == EPLB_OK);
    bad = test_plan_check(&cand, hier);
    if (bad)
        printf("\n  candidate plan invalid: %s\n", bad);
    CU_ASSERT(bad == NULL);
    double *loads = malloc((size_t)s->layers * s->num_gpus * sizeof(double));
    for (int l = 0; l < s->layers; l++) {
        double d = layer_max(s, w, &det, l, loads);
        double c = layer_max(s, w, &cand, l, loads);
        CU_ASSERT(c <= d * (1.0 + 1e-6));
    }
    /* No plan beats the bound. */
    eplb_quality qd = {.struct_size = sizeof qd};
    eplb_quality qc = {.struct_size = sizeof qc};
    CU_ASSERT(eplb_plan_quality(s, EPLB_POLICY_AUTO, w, det.phy2log,
                                det.logcnt, &qd) == EPLB_OK);
    CU_ASSERT(eplb_plan_quality(s, EPLB_POLICY_AUTO, w, cand.phy2log,
                                cand.logcnt, &qc) == EPLB_OK);
    CU_ASSERT(qd.balancedness_mean <= qd.bound_mean + 1e-9);
    CU_ASSERT(qc.balancedness_mean <= qc.bound_mean + 1e-9);
    CU_ASSERT(qc.balancedness_mean >= qd.balancedness_mean - 1e-9);
    free(loads);
    test_plan_free(&det);
    test_plan_free(&cand);
    test_plan_free(&oracle);
}

/* ---- tests ----------------------------------------------------------- */

static void test_golden(void)
{
    test_plan p;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 1, 0, 0,
                                   &test_golden_shape, test_golden_weight,
                                   &p) == EPLB_OK);
    CU_ASSERT(memcmp(p.phy2log, test_golden_phy2log,
                     sizeof test_golden_phy2log) == 0);
    CU_ASSERT(memcmp(p.logcnt, test_golden_logcnt,
                     sizeof test_golden_logcnt) == 0);
    CU_ASSERT(test_plan_check(&p, 1) == NULL);
    /* log2phy lists replicas in replica order: expert 5 of layer 0 sits in
     * slots 0 and 2, its second replica being the one made later. */
    CU_ASSERT(p.log2phy[5 * 5 + 0] == 0 || p.log2phy[5 * 5 + 0] == 2);
    test_plan_free(&p);
}

static void test_golden_candidates(void)
{
    check_shape(&test_golden_shape, test_golden_weight, 0);
    check_shape(&test_golden_shape, test_golden_weight, 12345);
}

static void test_philox_known_answer(void)
{
    /* Random123's known-answer vector for philox4x32-10, zero in/key. */
    uint32_t in[4] = {0, 0, 0, 0}, out[4];
    philox4x32_10(in, 0, 0, out);
    CU_ASSERT(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du &&
              out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u);
    uint32_t ones[4] = {~0u, ~0u, ~0u, ~0u};
    philox4x32_10(ones, ~0u, ~0u, out);
    CU_ASSERT(out[0] == 0x408f276du && out[1] == 0x41c83b0eu &&
              out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu);
}

static void test_generated_shapes(void)
{
    /* L, E, P, G, N, M: DeepSeek's shape, global, one slot per GPU, one
     * GPU per node, one node, P == E, groups not dividing nodes. */
    static const eplb_shape shapes[] = {
        {6, 256, 288, 8, 4, 32},  {4, 256, 320, 8, 8, 64},
        {4, 256, 288, 8, 18, 144}, {3, 64, 96, 4, 2, 96},
        {3, 64, 80, 8, 4, 4},     {3, 64, 72, 8, 1, 8},
        {3, 32, 32, 4, 2, 8},     {3, 48, 60, 6, 4, 12},
        {2, 128, 256, 16, 4, 16}, {2, 16, 24, 1, 1, 4},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const eplb_shape *s = &shapes[i];
        float *w = malloc((size_t)s->layers * s->experts * sizeof(float));
        workload_generate(w, s->layers, s->experts, 100 + i);
        check_shape(s, w, i);
        free(w);
    }
}

static void test_zero_and_tied_loads(void)
{
    eplb_shape s = {3, 32, 40, 4, 2, 8};
    float w[3 * 32];
    for (int i = 0; i < 32; i++) {
        w[i] = 0.0f;           /* an all-zero layer is valid */
        w[32 + i] = 7.0f;      /* all tied */
        w[64 + i] = (float)(i % 3);
    }
    check_shape(&s, w, 7);
}

static void test_seed_determinism(void)
{
    eplb_shape s = {5, 256, 288, 8, 4, 32};
    float *w = malloc(5 * 256 * sizeof(float));
    workload_generate(w, 5, 256, 9);
    test_plan a, b;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 64, 20, 77, &s, w,
                                   &a) == EPLB_OK);
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 64, 20, 77, &s, w,
                                   &b) == EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    test_plan_free(&a);
    test_plan_free(&b);
    free(w);
}

static void test_real_workloads(void)
{
    if (!test_workloads_dir())
        return;
    int files = 0;
    for (const char *const *f = test_workload_files; *f; f++) {
        int L, E;
        float *w = test_load_workload(*f, &L, &E);
        CU_ASSERT_FATAL(w != NULL);
        CU_ASSERT(L == 58 && E == 256);
        for (int c = 0; c < 3; c++) {
            eplb_shape s = {L, E, test_configs[c][0], test_configs[c][1],
                            test_configs[c][2], test_configs[c][3]};
            check_shape(&s, w, (uint64_t)c);
        }
        free(w);
        files++;
    }
    CU_ASSERT(files == 12);
}

static void test_metrics(void)
{
    eplb_shape s = {4, 64, 80, 8, 2, 8};
    float w[4 * 64];
    workload_generate(w, 4, 64, 3);
    test_plan p;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 1, 0, 0, &s, w,
                                   &p) == EPLB_OK);
    double loads[4 * 8];
    CU_ASSERT(eplb_gpu_loads(&s, w, p.phy2log, p.logcnt, loads) == EPLB_OK);
    for (int l = 0; l < 4; l++) {
        double total = 0.0, sum = 0.0;
        for (int e = 0; e < 64; e++)
            total += w[l * 64 + e];
        for (int g = 0; g < 8; g++)
            sum += loads[l * 8 + g];
        CU_ASSERT(fabs(sum - total) <= 1e-9 * total);
    }
    eplb_quality q = {.struct_size = sizeof q};
    eplb_quality before = {.struct_size = sizeof before};
    CU_ASSERT(eplb_plan_quality(&s, EPLB_POLICY_AUTO, w, p.phy2log, p.logcnt,
                                &q) == EPLB_OK);
    CU_ASSERT(eplb_identity_quality(&s, w, &before) == EPLB_OK);
    CU_ASSERT(q.balancedness_mean > before.balancedness_mean);
    CU_ASSERT(q.balancedness_worst <= q.balancedness_mean);
    CU_ASSERT(q.share_of_bound > 0.5 && q.share_of_bound <= 1.0 + 1e-9);
    CU_ASSERT(q.bound_is_weak == 0);
    /* Uniform loads: the bound and the plan are both perfect. */
    float u[64];
    for (int e = 0; e < 64; e++)
        u[e] = 5.0f;
    eplb_shape s1 = {1, 64, 64, 8, 2, 8};
    CU_ASSERT(fabs(eplb_layer_bound(&s1, EPLB_POLICY_AUTO, u, NULL) - 1.0) <
              1e-12);
    /* One hot expert with no room to replicate: the bound says so. */
    u[0] = 5.0f * 57;
    double b = eplb_layer_bound(&s1, EPLB_POLICY_GLOBAL, u, NULL);
    CU_ASSERT(fabs(b - (5.0 * 120 / 8) / (5.0 * 57)) < 1e-9);
    CU_ASSERT(eplb_migration(&s, p.phy2log, p.phy2log) == 0);
    test_plan_free(&p);
}

static CU_TestInfo reference_tests[] = {
    {"golden case exact", test_golden},
    {"golden case, candidate mode", test_golden_candidates},
    {"philox4x32-10 known answers", test_philox_known_answer},
    {"generated loads, ten shapes", test_generated_shapes},
    {"zero and tied loads", test_zero_and_tied_loads},
    {"same seed, same plan", test_seed_determinism},
    {"real loads: 12 files x 3 configs", test_real_workloads},
    {"metrics and bounds", test_metrics},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"reference backend", NULL, NULL, NULL, NULL, reference_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
