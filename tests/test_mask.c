/* Plans over the live GPUs (gpu_mask), no expert twice on one GPU
 * (distinct_per_gpu), and metrics that refuse what rebalance refuses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cunit_main.h"
#include "loadfile.h"
#include "planio.h"
#include "planstats.h"
#include "testutil.h"
#include "workload.h"

#define POISON 0x5A5A5A5A

/* ---- helpers ---------------------------------------------------------- */

static eplb_context *make_ctx(eplb_backend backend, int cands, int rounds,
                              int distinct, eplb_policy policy)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = backend;
    o.candidates = cands;
    o.swap_rounds = rounds;
    o.distinct_per_gpu = distinct;
    o.policy = policy;
    eplb_context *ctx = NULL;
    int rc = eplb_context_create(&ctx, &o);
    if (rc)
        printf("\n  context: %s: %s\n", eplb_strerror(rc), eplb_last_error());
    return ctx;
}

static int plan_masked(eplb_context *ctx, const eplb_shape *s, const float *w,
                       const uint8_t *mask, test_plan *p)
{
    if (test_plan_alloc(p, s))
        return EPLB_ERR_OUT_OF_MEMORY;
    int rc = eplb_rebalance_from(ctx, s, w, NULL, mask, p->phy2log,
                                 p->log2phy, p->logcnt);
    if (rc)
        printf("\n  rebalance_from: %s: %s\n", eplb_strerror(rc),
               eplb_last_error());
    return rc;
}

/* Every rule of a masked plan; NULL when valid, else the broken rule. */
static const char *masked_check(const test_plan *p, const uint8_t *mask)
{
    const eplb_shape *s = &p->shape;
    int L = s->layers, E = s->experts, P = s->num_replicas,
        ppg = P / s->num_gpus, X = P - E + 1;
    int *seen = malloc((size_t)E * sizeof(int));
    int *listed = calloc((size_t)P, sizeof(int)); /* layer + 1 */
    const char *bad = NULL;
    for (int l = 0; l < L && !bad; l++) {
        const int32_t *p2l = p->phy2log + (size_t)l * P;
        const int32_t *l2p = p->log2phy + (size_t)l * E * X;
        const int32_t *cnt = p->logcnt + (size_t)l * E;
        memset(seen, 0, (size_t)E * sizeof(int));
        long live_slots = 0;
        for (int slot = 0; slot < P && !bad; slot++) {
            int e = p2l[slot], alive = !mask || mask[slot / ppg];
            if (!alive && e != -1)
                bad = "a dead GPU's slot holds an expert";
            else if (alive && (e < 0 || e >= E))
                bad = "a live slot holds no valid expert";
            else if (alive) {
                seen[e]++;
                live_slots++;
            }
        }
        long total = 0;
        for (int e = 0; e < E && !bad; e++) {
            total += cnt[e];
            if (cnt[e] < 1)
                bad = "an expert has no live slot";
            else if (cnt[e] != seen[e])
                bad = "logcnt is not the expert's live slot count";
            for (int r = 0; r < X && !bad; r++) {
                int slot = l2p[e * X + r];
                if (r < cnt[e] && (slot < 0 || slot >= P || p2l[slot] != e ||
                                   listed[slot] == l + 1))
                    bad = "log2phy does not list the expert's live slots";
                else if (r >= cnt[e] && slot != -1)
                    bad = "log2phy padding is not -1";
                else if (r < cnt[e])
                    listed[slot] = l + 1;
            }
        }
        if (!bad && total != live_slots)
            bad = "logcnt does not sum to the live slots";
    }
    free(seen);
    free(listed);
    return bad;
}

static long duplicates(const test_plan *p)
{
    return plan_duplicate_slots(&p->shape, p->phy2log, NULL);
}

/* The largest GPU load of layer l, summed in float in slot order (the
 * figure distinct_per_gpu promises not to raise). */
static float layer_max(const test_plan *p, const float *w, int l)
{
    const eplb_shape *s = &p->shape;
    int P = s->num_replicas, E = s->experts, ppg = P / s->num_gpus;
    const int32_t *p2l = p->phy2log + (size_t)l * P;
    const int32_t *cnt = p->logcnt + (size_t)l * E;
    float mx = 0.0f;
    for (int g = 0; g < s->num_gpus; g++) {
        float sum = 0.0f;
        for (int r = 0; r < ppg; r++) {
            int e = p2l[g * ppg + r];
            if (e >= 0)
                sum += w[(size_t)l * E + e] / (float)cnt[e];
        }
        if (sum > mx)
            mx = sum;
    }
    return mx;
}

/* Enough live slots for every expert. */
static int mask_fits(const eplb_shape *s, const uint8_t *mask)
{
    long live = 0;
    for (int g = 0; g < s->num_gpus; g++)
        live += mask[g] != 0;
    return live * (s->num_replicas / s->num_gpus) >= s->experts;
}

static float *generated(const eplb_shape *s, uint64_t seed)
{
    float *w = malloc((size_t)s->layers * s->experts * sizeof(float));
    workload_generate(w, s->layers, s->experts, seed);
    return w;
}

static const eplb_shape shapes[] = {
    {2, 12, 16, 4, 2, 8},    {4, 256, 288, 8, 4, 32},
    {3, 256, 320, 8, 8, 64}, {3, 256, 288, 8, 18, 144},
    {3, 64, 128, 8, 4, 16},  {3, 64, 80, 8, 4, 4},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* Masks of one shape: one GPU dead (first, middle, last), a whole node
 * dead, and every third GPU dead. */
static int masks_for(const eplb_shape *s, uint8_t masks[][144])
{
    int M = s->num_gpus, gn = M / s->num_nodes, n = 0;
    int singles[3] = {0, M / 2, M - 1};
    for (int i = 0; i < 3; i++) {
        memset(masks[n], 1, (size_t)M);
        masks[n++][singles[i]] = 0;
    }
    if (s->num_nodes > 1) {
        memset(masks[n], 1, (size_t)M);
        memset(masks[n++] + (s->num_nodes - 1) * gn, 0, (size_t)gn);
    }
    memset(masks[n], 1, (size_t)M);
    for (int g = 1; g < M; g += 3)
        masks[n][g] = 0;
    n++;
    return n;
}

/* ---- masks ------------------------------------------------------------ */

static void test_mask_validity(void)
{
    static const int settings[][3] = {{1, 0, 0}, {64, 20, 0}, {8, 5, 1}};
    for (size_t i = 0; i < NSHAPES; i++) {
        const eplb_shape *s = &shapes[i];
        float *w = generated(s, 70 + i);
        uint8_t masks[5][144];
        int nm = masks_for(s, masks);
        for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++) {
            for (int pol = EPLB_POLICY_AUTO; pol <= EPLB_POLICY_GLOBAL;
                 pol++) {
                if (pol == EPLB_POLICY_HIERARCHICAL &&
                    s->num_groups % s->num_nodes)
                    continue;
                eplb_context *ctx = make_ctx(
                    EPLB_BACKEND_REFERENCE, settings[k][0], settings[k][1],
                    settings[k][2], (eplb_policy)pol);
                CU_ASSERT_FATAL(ctx != NULL);
                for (int m = 0; m < nm; m++) {
                    if (!mask_fits(s, masks[m]))
                        continue;
                    test_plan p;
                    int rc = plan_masked(ctx, s, w, masks[m], &p);
                    CU_ASSERT(rc == EPLB_OK);
                    const char *bad = rc ? NULL : masked_check(&p, masks[m]);
                    if (bad)
                        printf("\n  shape %zu mask %d policy %d setting %zu: "
                               "%s\n", i, m, pol, k, bad);
                    CU_ASSERT(bad == NULL);
                    test_plan_free(&p);
                }
                eplb_context_destroy(ctx);
            }
        }
        free(w);
    }
}

/* Seeded random shapes and masks (small, so that quotas run out and
 * groups split often): every plan valid, with and without
 * distinct_per_gpu. */
static void test_mask_random(void)
{
    uint64_t x = 88172645463325252ull;
#define NEXT() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    int planned = 0;
    for (int iter = 0; iter < 300; iter++) {
        int N = 1 + (int)(NEXT() % 4), gn = 1 + (int)(NEXT() % 4);
        int G = N * (1 + (int)(NEXT() % 3)), gs = 1 + (int)(NEXT() % 6);
        int M = N * gn, E = G * gs;
        int ppg = (E + M - 1) / M + (int)(NEXT() % 3);
        eplb_shape s = {2, E, M * ppg, G, N, M};
        uint8_t mask[16];
        for (int g = 0; g < M; g++)
            mask[g] = NEXT() % 3 != 0;
        if (!mask_fits(&s, mask))
            continue;
        float *w = generated(&s, iter);
        for (int distinct = 0; distinct < 2; distinct++) {
            eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 4, 3,
                                         distinct, EPLB_POLICY_AUTO);
            test_plan p;
            CU_ASSERT_FATAL(plan_masked(ctx, &s, w, mask, &p) == EPLB_OK);
            const char *bad = masked_check(&p, mask);
            if (bad)
                printf("\n  E=%d P=%d G=%d N=%d M=%d: %s\n", E, s.num_replicas,
                       G, N, M, bad);
            CU_ASSERT(bad == NULL);
            eplb_quality q = {.struct_size = sizeof q};
            CU_ASSERT(eplb_plan_quality(&s, EPLB_POLICY_AUTO, w, p.phy2log,
                                        p.logcnt, &q) == EPLB_OK);
            test_plan_free(&p);
            eplb_context_destroy(ctx);
            planned++;
        }
        free(w);
    }
#undef NEXT
    CU_ASSERT(planned > 200);
}

/* A mask with no dead GPU gives the plan of no mask, bit for bit. */
static void test_mask_all_live(void)
{
    for (size_t i = 0; i < NSHAPES; i++) {
        const eplb_shape *s = &shapes[i];
        float *w = generated(s, 90 + i);
        uint8_t mask[144];
        memset(mask, 1, sizeof mask);
        eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 16, 10, 0,
                                     EPLB_POLICY_AUTO);
        test_plan a, b;
        CU_ASSERT_FATAL(plan_masked(ctx, s, w, NULL, &a) == EPLB_OK);
        CU_ASSERT_FATAL(plan_masked(ctx, s, w, mask, &b) == EPLB_OK);
        CU_ASSERT(test_plan_equal(&a, &b));
        test_plan_free(&a);
        test_plan_free(&b);
        eplb_context_destroy(ctx);
        free(w);
    }
}

static void test_mask_errors(void)
{
    eplb_shape s = {2, 12, 16, 4, 2, 8}; /* 2 slots per GPU */
    float *w = generated(&s, 5);
    eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 4, 4, 0,
                                 EPLB_POLICY_AUTO);
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    uint8_t dead[8] = {0};
    test_plan_poison(&p, POISON);
    CU_ASSERT(eplb_rebalance_from(ctx, &s, w, NULL, dead, p.phy2log,
                                  p.log2phy, p.logcnt) == EPLB_ERR_BAD_MASK);
    CU_ASSERT(strstr(eplb_last_error(), "all 8 GPUs dead") != NULL);
    CU_ASSERT(test_plan_is_poisoned(&p, POISON));
    /* 5 live GPUs x 2 slots = 10 slots for 12 experts. */
    uint8_t few[8] = {1, 0, 1, 0, 1, 1, 0, 1};
    CU_ASSERT(eplb_rebalance_from(ctx, &s, w, NULL, few, p.phy2log,
                                  p.log2phy, p.logcnt) == EPLB_ERR_BAD_MASK);
    CU_ASSERT(strstr(eplb_last_error(), "10 slots for 12 experts") != NULL);
    CU_ASSERT(test_plan_is_poisoned(&p, POISON));
    /* 6 live GPUs x 2 slots = 12: exactly one slot per expert. */
    uint8_t just[8] = {1, 0, 1, 1, 1, 1, 0, 1};
    CU_ASSERT(eplb_rebalance_from(ctx, &s, w, NULL, just, p.phy2log,
                                  p.log2phy, p.logcnt) == EPLB_OK);
    CU_ASSERT(masked_check(&p, just) == NULL);
    for (int e = 0; e < 12; e++)
        CU_ASSERT(p.logcnt[e] == 1);
    test_plan_free(&p);
    eplb_context_destroy(ctx);
    free(w);
}

/* (layer, group) pairs kept on one node with GPU `dead` dead. */
static long whole_groups(const eplb_shape *s, int dead, eplb_policy policy)
{
    float *w = generated(s, 11);
    uint8_t mask[144];
    memset(mask, 1, sizeof mask);
    mask[dead] = 0;
    eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 16, 10, 0, policy);
    test_plan p;
    CU_ASSERT_FATAL(plan_masked(ctx, s, w, mask, &p) == EPLB_OK);
    CU_ASSERT(masked_check(&p, mask) == NULL);
    long whole = plan_groups_on_one_node(s, p.phy2log);
    test_plan_free(&p);
    eplb_context_destroy(ctx);
    free(w);
    return whole;
}

/* The hierarchical policy keeps groups on one node where the live GPUs
 * have room: with one GPU of 16 dead (3 of 4 live in node 0, 8 slots per
 * GPU, 8 experts per group) every node still takes two whole groups. With
 * the first reference config (doc/ALGORITHM.md section 12) and one GPU
 * dead, node 0 has 63 slots, room for one
 * group of 32, so one group is split; the global policy keeps none. */
static void test_mask_locality(void)
{
    eplb_shape s = {3, 64, 128, 8, 4, 16};
    CU_ASSERT(whole_groups(&s, 2, EPLB_POLICY_AUTO) == 3 * 8);
    eplb_shape d = {4, 256, 288, 8, 4, 32};
    CU_ASSERT(whole_groups(&d, 5, EPLB_POLICY_AUTO) == 4 * 7);
    CU_ASSERT(whole_groups(&d, 5, EPLB_POLICY_GLOBAL) < 4 * 7);
}

/* A live node that the group quotas leave without experts (its one live
 * GPU against eight of node 0, which has room for every group) could not
 * fill its slots: the plan is then the global policy's over the live
 * GPUs, bit for bit. */
static void test_mask_fallback(void)
{
    eplb_shape s = {3, 64, 128, 8, 2, 16};
    float *w = generated(&s, 17);
    uint8_t mask[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    eplb_context *hier = make_ctx(EPLB_BACKEND_REFERENCE, 16, 10, 0,
                                  EPLB_POLICY_AUTO);
    eplb_context *glob = make_ctx(EPLB_BACKEND_REFERENCE, 16, 10, 0,
                                  EPLB_POLICY_GLOBAL);
    test_plan ph, pg;
    CU_ASSERT_FATAL(plan_masked(hier, &s, w, mask, &ph) == EPLB_OK);
    CU_ASSERT_FATAL(plan_masked(glob, &s, w, mask, &pg) == EPLB_OK);
    CU_ASSERT(masked_check(&ph, mask) == NULL);
    CU_ASSERT(test_plan_equal(&ph, &pg));
    /* Node 1's lone GPU, first of its node, has the tie: it gets a group
     * and the plan stays hierarchical. */
    uint8_t first[16] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    test_plan p2;
    CU_ASSERT_FATAL(plan_masked(hier, &s, w, first, &p2) == EPLB_OK);
    CU_ASSERT(masked_check(&p2, first) == NULL);
    CU_ASSERT(plan_groups_on_one_node(&s, p2.phy2log) == 3 * 8);
    test_plan_free(&ph);
    test_plan_free(&pg);
    test_plan_free(&p2);
    eplb_context_destroy(hier);
    eplb_context_destroy(glob);
    free(w);
}

/* From the plan in service with one GPU dead (the failure moment): a
 * valid masked plan, and on the real loads nearly as balanced as the plan
 * before the failure (measured: 0.8361 against 0.8404 on all 12 files). */
static void test_mask_from_current(void)
{
    eplb_shape s = {4, 256, 288, 8, 4, 32};
    float *gen = generated(&s, 19);
    const char *files[] = {"generated", "decode_in1000out1000.json",
                           "prefill_in4096.json", "prefill_in512.json"};
    eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 16, 10, 0,
                                 EPLB_POLICY_AUTO);
    for (int f = 0; f < 4; f++) {
        float *w = gen;
        if (f > 0 && (!test_workloads_dir() ||
                      !(w = test_load_workload(files[f], &s.layers,
                                               &s.experts))))
            break;
        uint8_t mask[32];
        memset(mask, 1, sizeof mask);
        mask[f * 9 % 32] = 0;
        test_plan before, after;
        CU_ASSERT_FATAL(plan_masked(ctx, &s, w, NULL, &before) == EPLB_OK);
        CU_ASSERT_FATAL(test_plan_alloc(&after, &s) == 0);
        CU_ASSERT_FATAL(eplb_rebalance_from(ctx, &s, w, before.phy2log, mask,
                                            after.phy2log, after.log2phy,
                                            after.logcnt) == EPLB_OK);
        CU_ASSERT(masked_check(&after, mask) == NULL);
        eplb_quality qb = {.struct_size = sizeof qb};
        eplb_quality qa = {.struct_size = sizeof qa};
        CU_ASSERT(eplb_plan_quality(&s, EPLB_POLICY_AUTO, w, before.phy2log,
                                    before.logcnt, &qb) == EPLB_OK);
        CU_ASSERT(eplb_plan_quality(&s, EPLB_POLICY_AUTO, w, after.phy2log,
                                    after.logcnt, &qa) == EPLB_OK);
        if (f > 0)
            CU_ASSERT(qa.balancedness_mean > 0.98 * qb.balancedness_mean);
        long copies;
        CU_ASSERT(eplb_copies(&s, before.phy2log, after.phy2log, NULL,
                              &copies) == EPLB_OK);
        CU_ASSERT(copies > 0);
        test_plan_free(&before);
        test_plan_free(&after);
        if (w != gen)
            free(w);
    }
    eplb_context_destroy(ctx);
    free(gen);
}

/* Masked plans are judged over the live GPUs, with the global bound over
 * their slots. */
static void test_mask_quality(void)
{
    eplb_shape s = {4, 256, 288, 8, 4, 32};
    float *w = generated(&s, 13);
    uint8_t mask[32];
    memset(mask, 1, sizeof mask);
    mask[0] = mask[9] = 0;
    eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 16, 10, 0,
                                 EPLB_POLICY_AUTO);
    test_plan p;
    CU_ASSERT_FATAL(plan_masked(ctx, &s, w, mask, &p) == EPLB_OK);
    double load[4 * 32];
    CU_ASSERT_FATAL(eplb_gpu_loads(&s, w, p.phy2log, p.logcnt, load) ==
                    EPLB_OK);
    double mean_b = 0.0;
    for (int l = 0; l < 4; l++) {
        double sum = 0, mx = 0, total = 0;
        CU_ASSERT(load[l * 32 + 0] == 0.0 && load[l * 32 + 9] == 0.0);
        for (int g = 0; g < 32; g++) {
            sum += load[l * 32 + g];
            mx = load[l * 32 + g] > mx ? load[l * 32 + g] : mx;
        }
        for (int e = 0; e < 256; e++)
            total += w[l * 256 + e];
        CU_ASSERT(fabs(sum - total) < 1e-6 * total);
        mean_b += sum / 30 / mx / 4;
    }
    eplb_quality q = {.struct_size = sizeof q};
    CU_ASSERT_FATAL(eplb_plan_quality(&s, EPLB_POLICY_AUTO, w, p.phy2log,
                                      p.logcnt, &q) == EPLB_OK);
    CU_ASSERT(fabs(q.balancedness_mean - mean_b) < 1e-12);
    CU_ASSERT(q.balancedness_mean <= q.bound_mean + 1e-12);
    CU_ASSERT(q.bound_is_weak == 1);
    test_plan_free(&p);
    eplb_context_destroy(ctx);
    free(w);
}

/* The same masked plan from the reference and OpenCL backends, on the
 * shapes of `pick` with masks first, first + step, ... (each mask's live
 * GPUs are a shape of their own, compiled anew on a device). */
static void mask_backends(const int *pick, size_t npick, int step)
{
    eplb_context *probe = make_ctx(EPLB_BACKEND_OPENCL, 1, 0, 0,
                                   EPLB_POLICY_AUTO);
    if (!probe) {
        printf("\n  SKIP: no OpenCL device\n");
        return;
    }
    eplb_context_destroy(probe);
    for (size_t i = 0; i < npick; i++) {
        const eplb_shape *s = &shapes[pick[i]];
        float *w = generated(s, 30 + i);
        uint8_t masks[5][144];
        int nm = masks_for(s, masks);
        for (int distinct = 0; distinct < 2; distinct++) {
            eplb_context *ref = make_ctx(EPLB_BACKEND_REFERENCE, 8, 5,
                                         distinct, EPLB_POLICY_AUTO);
            eplb_context *cl = make_ctx(EPLB_BACKEND_OPENCL, 8, 5, distinct,
                                        EPLB_POLICY_AUTO);
            CU_ASSERT_FATAL(ref && cl);
            for (int m = 0; m < nm; m += step) {
                if (!mask_fits(s, masks[m]))
                    continue;
                test_plan a, b;
                CU_ASSERT_FATAL(plan_masked(ref, s, w, masks[m], &a) ==
                                EPLB_OK);
                CU_ASSERT_FATAL(plan_masked(cl, s, w, masks[m], &b) ==
                                EPLB_OK);
                if (!test_plan_equal(&a, &b))
                    printf("\n  differs: shape %d mask %d distinct %d\n",
                           pick[i], m, distinct);
                CU_ASSERT(test_plan_equal(&a, &b));
                test_plan_free(&a);
                test_plan_free(&b);
            }
            eplb_context_destroy(ref);
            eplb_context_destroy(cl);
        }
        free(w);
    }
}

/* make check: one GPU dead, and every third, on two shapes. */
static void test_mask_backends(void)
{
    static const int pick[] = {0, 1};
    mask_backends(pick, 2, 4);
}

/* make check-full: every mask on three shapes. */
static void test_mask_backends_full(void)
{
    static const int pick[] = {0, 1, 3};
    mask_backends(pick, 3, 1);
}

/* ---- distinct_per_gpu ------------------------------------------------- */

/* Option on against option off for one input: valid, no layer's largest
 * GPU load higher, no more duplicates. Returns the duplicates off and on. */
static void distinct_pair(const eplb_shape *s, const float *w,
                          const uint8_t *mask, int cands, int rounds,
                          long *dup_off, long *dup_on)
{
    eplb_context *off = make_ctx(EPLB_BACKEND_REFERENCE, cands, rounds, 0,
                                 EPLB_POLICY_AUTO);
    eplb_context *on = make_ctx(EPLB_BACKEND_REFERENCE, cands, rounds, 1,
                                EPLB_POLICY_AUTO);
    test_plan a, b;
    CU_ASSERT_FATAL(plan_masked(off, s, w, mask, &a) == EPLB_OK);
    CU_ASSERT_FATAL(plan_masked(on, s, w, mask, &b) == EPLB_OK);
    const char *bad = masked_check(&b, mask);
    if (bad)
        printf("\n  distinct plan invalid: %s\n", bad);
    CU_ASSERT(bad == NULL);
    int raised = 0;
    for (int l = 0; l < s->layers; l++)
        raised += layer_max(&b, w, l) > layer_max(&a, w, l);
    CU_ASSERT(raised == 0);
    *dup_off = duplicates(&a);
    *dup_on = duplicates(&b);
    CU_ASSERT(*dup_on <= *dup_off);
    /* Under the hierarchical policy every group stays on one node. */
    if (!mask && s->num_groups % s->num_nodes == 0)
        CU_ASSERT(test_plan_check(&b, 1) == NULL);
    test_plan_free(&a);
    test_plan_free(&b);
    eplb_context_destroy(off);
    eplb_context_destroy(on);
}

static void test_distinct_generated(void)
{
    long total_off = 0, total_on = 0;
    for (size_t i = 0; i < NSHAPES; i++) {
        const eplb_shape *s = &shapes[i];
        float *w = generated(s, 50 + i);
        long off, on;
        distinct_pair(s, w, NULL, 1, 0, &off, &on);
        total_off += off;
        total_on += on;
        distinct_pair(s, w, NULL, 32, 10, &off, &on);
        total_off += off;
        total_on += on;
        uint8_t masks[5][144];
        masks_for(s, masks);
        if (mask_fits(s, masks[1])) {
            distinct_pair(s, w, masks[1], 32, 10, &off, &on);
            total_off += off;
            total_on += on;
        }
        free(w);
    }
    /* Most duplicates can move without raising the largest load. */
    CU_ASSERT(total_off > 0);
    CU_ASSERT(total_on * 2 < total_off);
}

static void test_distinct_real(void)
{
    if (!test_workloads_dir())
        return;
    long off_cfg[3] = {0}, on_cfg[3] = {0};
    for (int f = 0; test_workload_files[f]; f++) {
        int L, E;
        float *w = test_load_workload(test_workload_files[f], &L, &E);
        CU_ASSERT_FATAL(w != NULL);
        for (int c = 0; c < 3; c++) {
            eplb_shape s = {L, E, test_configs[c][0], test_configs[c][1],
                            test_configs[c][2], test_configs[c][3]};
            long off, on;
            distinct_pair(&s, w, NULL, 64, 20, &off, &on);
            off_cfg[c] += off;
            on_cfg[c] += on;
        }
        free(w);
    }
    printf("\n  duplicate slots off -> on: %ld -> %ld, %ld -> %ld, "
           "%ld -> %ld\n", off_cfg[0], on_cfg[0], off_cfg[1], on_cfg[1],
           off_cfg[2], on_cfg[2]);
    for (int c = 0; c < 3; c++)
        CU_ASSERT(on_cfg[c] * 3 < off_cfg[c] || off_cfg[c] == 0);
}

/* Neither option used: the golden plan (doc/ALGORITHM.md section 4), bit
 * for bit, through both
 * entry points. */
static void test_spec_untouched(void)
{
    eplb_shape s = test_golden_shape;
    const float *w = test_golden_weight;
    const int32_t *golden = test_golden_phy2log;
    eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 1, 0, 0,
                                 EPLB_POLICY_AUTO);
    test_plan a, b;
    CU_ASSERT_FATAL(plan_masked(ctx, &s, w, NULL, &a) == EPLB_OK);
    CU_ASSERT(memcmp(a.phy2log, golden, sizeof test_golden_phy2log) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&b, &s) == 0);
    CU_ASSERT(eplb_rebalance(ctx, &s, w, b.phy2log, b.log2phy, b.logcnt) ==
              EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    test_plan_free(&a);
    test_plan_free(&b);
    eplb_context_destroy(ctx);
}

/* ---- metrics refuse bad input ----------------------------------------- */

typedef struct metric_case {
    eplb_shape s;
    float *w;
    test_plan p;
} metric_case;

static void metric_case_init(metric_case *c)
{
    eplb_shape s = {3, 64, 96, 8, 4, 16};
    c->s = s;
    c->w = generated(&s, 21);
    eplb_context *ctx = make_ctx(EPLB_BACKEND_REFERENCE, 1, 0, 0,
                                 EPLB_POLICY_AUTO);
    CU_ASSERT_FATAL(plan_masked(ctx, &c->s, c->w, NULL, &c->p) == EPLB_OK);
    eplb_context_destroy(ctx);
}

static void metric_case_free(metric_case *c)
{
    test_plan_free(&c->p);
    free(c->w);
}

/* Every metric on the case: all must return `want`, and gpu_loads must
 * leave its output alone on failure. */
static void expect_metrics(const metric_case *c, const float *w, int want,
                           int plan_used)
{
    double load[3 * 16];
    for (int i = 0; i < 3 * 16; i++)
        load[i] = -7.0;
    CU_ASSERT(eplb_gpu_loads(&c->s, w, c->p.phy2log, c->p.logcnt, load) ==
              want);
    for (int i = 0; want && i < 3 * 16; i++)
        CU_ASSERT(load[i] == -7.0);
    eplb_quality q = {.struct_size = sizeof q};
    CU_ASSERT(eplb_plan_quality(&c->s, EPLB_POLICY_AUTO, w, c->p.phy2log,
                                c->p.logcnt, &q) == want);
    if (plan_used)
        return;
    CU_ASSERT(eplb_identity_quality(&c->s, w, &q) == want);
    int weak;
    double worst = 0.0;
    for (int l = 0; l < c->s.layers; l++) {
        double b = eplb_layer_bound(&c->s, EPLB_POLICY_AUTO,
                                    w + (size_t)l * c->s.experts, &weak);
        if (b < worst || l == 0)
            worst = b;
    }
    CU_ASSERT(worst == (double)want || (want == 0 && worst > 0.0));
}

static void test_metrics_bad_loads(void)
{
    metric_case c;
    metric_case_init(&c);
    expect_metrics(&c, c.w, EPLB_OK, 0);
    size_t n = (size_t)c.s.layers * c.s.experts;
    float *w = malloc(n * sizeof(float));
    const struct { float v; int want; } bad[] = {
        {NAN, EPLB_ERR_LOAD_NAN},
        {INFINITY, EPLB_ERR_LOAD_INFINITE},
        {-1.0f, EPLB_ERR_LOAD_NEGATIVE}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(w, c.w, n * sizeof(float));
        w[c.s.experts + 5] = bad[i].v; /* layer 1 */
        expect_metrics(&c, w, bad[i].want, 0);
    }
    CU_ASSERT(eplb_layer_bound(&c.s, EPLB_POLICY_AUTO, NULL, NULL) ==
              (double)EPLB_ERR_NULL_ARGUMENT);
    free(w);
    metric_case_free(&c);
}

static void test_metrics_bad_plans(void)
{
    metric_case c;
    metric_case_init(&c);
    int E = c.s.experts, P = c.s.num_replicas;
    int32_t *p2l = c.p.phy2log + P, *cnt = c.p.logcnt + E; /* layer 1 */
    test_plan keep;
    CU_ASSERT_FATAL(test_plan_alloc(&keep, &c.s) == 0);
    memcpy(keep.phy2log, c.p.phy2log, c.p.n_p2l * sizeof(int32_t));
    memcpy(keep.logcnt, c.p.logcnt, c.p.n_cnt * sizeof(int32_t));
#define RESTORE()                                                          \
    do {                                                                   \
        memcpy(c.p.phy2log, keep.phy2log, c.p.n_p2l * sizeof(int32_t));    \
        memcpy(c.p.logcnt, keep.logcnt, c.p.n_cnt * sizeof(int32_t));      \
    } while (0)

    /* An id out of range. */
    p2l[3] = E;
    expect_metrics(&c, c.w, EPLB_ERR_BAD_PLAN, 1);
    RESTORE();
    /* A logcnt of 1000. */
    cnt[7] = 1000;
    expect_metrics(&c, c.w, EPLB_ERR_BAD_PLAN, 1);
    RESTORE();
    /* Expert 0 dropped: its slots given to expert 1, logcnt consistent
     * with that (such a plan would otherwise score better). */
    for (int s = 0; s < P; s++)
        if (p2l[s] == 0) {
            p2l[s] = 1;
            cnt[1]++;
        }
    cnt[0] = 0;
    expect_metrics(&c, c.w, EPLB_ERR_BAD_PLAN, 1);
    CU_ASSERT(strstr(eplb_last_error(), "expert 0 in no slot") != NULL);
    RESTORE();
    /* One empty slot on a GPU that holds experts. */
    cnt[p2l[0]]--;
    p2l[0] = -1;
    expect_metrics(&c, c.w, EPLB_ERR_BAD_PLAN, 1);
    RESTORE();
#undef RESTORE
    test_plan_free(&keep);
    metric_case_free(&c);
}

/* ---- the tool --------------------------------------------------------- */

static int tool(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tools/eplb-cl --backend reference "
             "--repeat 0 -q %s 2>/dev/null", args);
    int st = system(cmd);
    return st == -1 ? -1 : WEXITSTATUS(st);
}

static void test_tool_masks(void)
{
    CU_ASSERT(tool("--mask 1,0 -o /dev/null") == 2);      /* wrong length */
    CU_ASSERT(tool("--mask 1,2,1 -o /dev/null") == 2);    /* not 0 or 1 */
    CU_ASSERT(tool("--dead-gpus 32 -o /dev/null") == 2);  /* no such GPU */
    CU_ASSERT(tool("--dead-gpus 3,x -o /dev/null") == 2);
    CU_ASSERT(tool("--num-gpus 8 --num-nodes 2 --num-replicas 264 "
                   "--dead-gpus 0,1,2,3,4,5,6,7 -o /dev/null") == 1);
    const char *out = "test-mask-plan.json";
    char args[256];
    snprintf(args, sizeof args, "--dead-gpus 3,17 --distinct-per-gpu -o %s",
             out);
    CU_ASSERT_FATAL(tool(args) == 0);
    FILE *f = fopen(out, "rb");
    CU_ASSERT_FATAL(f != NULL);
    size_t cap = (size_t)1 << 24;
    char *text = malloc(cap);
    CU_ASSERT_FATAL(text != NULL);
    size_t len = fread(text, 1, cap, f);
    fclose(f);
    remove(out);
    eplb_shape s = {58, 256, 288, 8, 4, 32};
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    char err[256];
    CU_ASSERT_FATAL(plan_parse_json(text, len, out, &s, p.phy2log, p.log2phy,
                                    p.logcnt, err, sizeof err) == 0);
    uint8_t mask[32];
    memset(mask, 1, sizeof mask);
    mask[3] = mask[17] = 0;
    CU_ASSERT(masked_check(&p, mask) == NULL);
    CU_ASSERT(duplicates(&p) < 58); /* the option reached the library */
    test_plan_free(&p);
    free(text);
}

static CU_TestInfo mask_tests[] = {
    {"masked plans are valid (shapes x masks x policies)",
     test_mask_validity},
    {"seeded random shapes and masks", test_mask_random},
    {"a mask with no dead GPU changes nothing", test_mask_all_live},
    {"mask errors: all dead, too few live slots", test_mask_errors},
    {"groups stay on one node where the live GPUs allow",
     test_mask_locality},
    {"a live node left without experts: global fallback",
     test_mask_fallback},
    {"from the plan in service with a GPU dead", test_mask_from_current},
    {"masked plans judged over the live GPUs", test_mask_quality},
    {"same masked plan on reference and OpenCL", test_mask_backends},
    {"full: same masked plan on reference and OpenCL, every mask",
     test_mask_backends_full},
    {"eplb-cl --mask and --dead-gpus", test_tool_masks},
    CU_TEST_INFO_NULL};

static CU_TestInfo distinct_tests[] = {
    {"distinct_per_gpu on generated loads", test_distinct_generated},
    {"distinct_per_gpu on 12 real files x 3 configs", test_distinct_real},
    {"neither option: the golden plan", test_spec_untouched},
    CU_TEST_INFO_NULL};

static CU_TestInfo metric_tests[] = {
    {"NaN, infinite, negative loads", test_metrics_bad_loads},
    {"inconsistent plans", test_metrics_bad_plans},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"GPU masks", NULL, NULL, NULL, NULL, mask_tests},
    {"distinct per GPU", NULL, NULL, NULL, NULL, distinct_tests},
    {"metrics refuse bad input", NULL, NULL, NULL, NULL, metric_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
