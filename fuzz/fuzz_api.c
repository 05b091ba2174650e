/* libFuzzer target: the public API with shape, options and loads from the
 * bytes, on both backends. Both must return the same status; on success
 * the plans must be valid and identical, on failure untouched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eplb_cl.h"
#include "testutil.h"

/* Small shapes (kernel builds are per shape), one that breaks a rule. */
static const eplb_shape shapes[] = {
    {2, 8, 12, 4, 2, 4},  /* hierarchical */
    {3, 6, 8, 3, 2, 4},   /* global: 3 groups on 2 nodes */
    {1, 16, 24, 4, 4, 8}, /* hierarchical, 3 slots a GPU */
    {2, 8, 12, 3, 2, 4},  /* 8 experts in 3 groups: refused */
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])
#define HEADER 12
#define POISON (-7)

static void read_options(const uint8_t *d, eplb_options *o)
{
    eplb_options_default(o);
    /* Few candidate counts: each is its own kernel build. */
    o->candidates = (d[1] & 1) ? 4 : 1;
    o->swap_rounds = (d[1] >> 1) % 4;
    o->noise = (float)d[2] / 255.0f;
    o->policy = (eplb_policy)((d[3] >> 2) % 3);
    uint64_t seed = 0;
    memcpy(&seed, d + 4, sizeof seed);
    o->seed = seed;
}

/* Loads: raw float bits (NaN, infinities, negatives included) when bit 0
 * of the flags is set, else small whole numbers; missing bytes are 0. */
static void read_loads(const uint8_t *d, size_t n, int raw, float *w,
                       size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (raw) {
            uint8_t b[4] = {0, 0, 0, 0};
            for (size_t k = 0; k < 4 && 4 * i + k < n; k++)
                b[k] = d[4 * i + k];
            memcpy(&w[i], b, sizeof w[i]);
        } else {
            w[i] = i < n ? (float)d[i] * (float)(d[i] % 7 + 1) : 0.0f;
        }
    }
}

static int plan(eplb_backend backend, const eplb_options *base,
                const eplb_shape *s, const float *w, test_plan *p)
{
    eplb_options o = *base;
    o.backend = backend;
    eplb_context *ctx;
    int rc = eplb_context_create(&ctx, &o);
    if (rc)
        return rc;
    test_plan_poison(p, POISON);
    rc = eplb_rebalance(ctx, s, w, p->phy2log, p->log2phy, p->logcnt);
    eplb_context_destroy(ctx);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int have_opencl = -1;
    if (have_opencl < 0) {
        eplb_options o;
        eplb_options_default(&o);
        o.backend = EPLB_BACKEND_OPENCL;
        eplb_context *ctx;
        have_opencl = eplb_context_create(&ctx, &o) == EPLB_OK;
        eplb_context_destroy(ctx);
    }
    if (size < HEADER)
        return 0;
    const eplb_shape *s = &shapes[data[0] % NSHAPES];
    eplb_options o;
    read_options(data, &o);
    size_t count = (size_t)s->layers * (size_t)s->experts;
    float w[64];
    read_loads(data + HEADER, size - HEADER, data[3] & 1, w, count);

    /* A refused shape has no plan sizes: plans of the first shape, which
     * must stay untouched. */
    test_plan a, b;
    const eplb_shape *alloc = eplb_plan_sizes(s, NULL, NULL, NULL)
                                  ? &shapes[0] : s;
    if (test_plan_alloc(&a, alloc) || test_plan_alloc(&b, alloc))
        abort();
    int check = eplb_check_input(s, w);
    int ra = plan(EPLB_BACKEND_REFERENCE, &o, s, w, &a);
    /* The same status as the input check; a policy that does not fit
     * the shape is found past it. */
    if (check != EPLB_OK ? ra != check
                         : ra != EPLB_OK && ra != EPLB_ERR_POLICY_MISMATCH)
        abort();
    if (ra != EPLB_OK && !test_plan_is_poisoned(&a, POISON))
        abort();
    if (ra == EPLB_OK) {
        int hier = eplb_resolve_policy(o.policy, s) ==
                   EPLB_POLICY_HIERARCHICAL;
        if (test_plan_check(&a, hier) != NULL)
            abort();
    }
    if (have_opencl) {
        int rb = plan(EPLB_BACKEND_OPENCL, &o, s, w, &b);
        if (rb != ra)
            abort();
        if (ra == EPLB_OK ? !test_plan_equal(&a, &b)
                          : !test_plan_is_poisoned(&b, POISON))
            abort();
    }
    test_plan_free(&a);
    test_plan_free(&b);
    return 0;
}
