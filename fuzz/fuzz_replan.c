/* libFuzzer target: the re-plan (eplb_plan with a current plan, a mask
 * and a deadline) and eplb_relabel on small shapes decoded from the
 * bytes. A call returns a status or a valid plan whose every layer is at
 * least as balanced as its target; nothing is written outside a buffer
 * (the sanitizers watch that). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb_cl.h"
#include "testutil.h"

#define HEADER 12

typedef struct bytes {
    const uint8_t *d;
    size_t n, at;
} bytes;

static unsigned next(bytes *b)
{
    return b->at < b->n ? b->d[b->at++] : 0;
}

/* Shape: L 1..3, M 1..8, N a divisor of M, 1..6 slots a GPU, E 1..P, G
 * a divisor of E. */
static void read_shape(bytes *b, eplb_shape *s)
{
    s->layers = 1 + next(b) % 3;
    s->num_gpus = 1 + next(b) % 8;
    unsigned pick = next(b);
    int div[8], nd = 0;
    for (int n = 1; n <= s->num_gpus; n++)
        if (s->num_gpus % n == 0)
            div[nd++] = n;
    s->num_nodes = div[pick % nd];
    s->num_replicas = s->num_gpus * (1 + next(b) % 6);
    s->experts = 1 + next(b) % s->num_replicas;
    pick = next(b);
    nd = 0;
    for (int g = 1; g <= s->experts && nd < 8; g++)
        if (s->experts % g == 0)
            div[nd++] = g;
    s->num_groups = div[pick % nd];
}

/* Each layer's largest GPU load. */
static void peaks(const eplb_shape *s, const float *w, const int32_t *p2l,
                  const int32_t *cnt, double *load, double *peak)
{
    if (eplb_gpu_loads(s, w, p2l, cnt, load) != EPLB_OK)
        abort();
    for (int l = 0; l < s->layers; l++) {
        peak[l] = 0.0;
        for (int g = 0; g < s->num_gpus; g++)
            if (load[(size_t)l * s->num_gpus + g] > peak[l])
                peak[l] = load[(size_t)l * s->num_gpus + g];
    }
}

/* Valid under the mask: ids in range, dead GPUs empty, counts and
 * log2phy that match the slots. */
static void check_plan(const eplb_shape *s, const uint8_t *mask,
                       const test_plan *p)
{
    int E = s->experts, P = s->num_replicas, ppg = P / s->num_gpus;
    int X = P - E + 1;
    int *seen = calloc((size_t)E, sizeof(int));
    for (int l = 0; l < s->layers; l++) {
        const int32_t *p2l = p->phy2log + (size_t)l * P;
        const int32_t *cnt = p->logcnt + (size_t)l * E;
        const int32_t *l2p = p->log2phy + (size_t)l * E * X;
        memset(seen, 0, (size_t)E * sizeof(int));
        for (int q = 0; q < P; q++) {
            int e = p2l[q];
            if (mask && !mask[q / ppg]) {
                if (e != -1)
                    abort();
                continue;
            }
            if (e < 0 || e >= E)
                abort();
            seen[e]++;
        }
        for (int e = 0; e < E; e++) {
            if (cnt[e] < 1 || cnt[e] != seen[e] || cnt[e] > X)
                abort();
            for (int r = 0; r < cnt[e]; r++) {
                int q = l2p[(size_t)e * X + r];
                if (q < 0 || q >= P || p2l[q] != e)
                    abort();
            }
        }
    }
    free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    bytes b = {data, size, 0};
    eplb_shape s;
    read_shape(&b, &s);
    unsigned flags = next(&b), opt = next(&b), mbits = next(&b);
    unsigned edits = next(&b), tol = next(&b);
    size_t L = (size_t)s.layers, E = (size_t)s.experts, P = s.num_replicas;
    int M = s.num_gpus;

    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_REFERENCE;
    o.policy = (eplb_policy)(opt % 3);
    o.distinct_per_gpu = (opt >> 2) & 1;
    o.candidates = (opt >> 3) & 1 ? 4 : 1;
    o.swap_rounds = (opt >> 4) % 3;
    o.seed = opt;
    o.tolerance = (flags & 2) ? (float)(tol % 20) / 100.0f : 0.0f;
    /* one input in two on three host threads (layers in parallel; the
     * rest on the calling thread, which keeps the runs fast) */
    o.host_threads = (tol & 0x80) ? 3 : 1;
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, &o) != EPLB_OK)
        return 0;

    /* Loads: small whole numbers with many zeros and ties. */
    float *w = malloc(L * E * sizeof(float));
    float *w0 = malloc(L * E * sizeof(float));
    for (size_t i = 0; i < L * E; i++) {
        unsigned v = next(&b);
        w[i] = (flags & 4) ? (float)(v % 4) : (float)(v % 64);
        w0[i] = (float)((v * 37 + i) % 13);
    }
    uint8_t *mask = NULL;
    if (flags & 1) {
        mask = malloc((size_t)M);
        for (int g = 0; g < M; g++)
            mask[g] = !((mbits >> (g % 8)) & 1);
    }

    /* The current plan: a fresh plan of other loads, then edits (slot,
     * expert or -1) from the bytes; the library must refuse what is
     * broken. */
    test_plan cur, out, fresh;
    if (test_plan_alloc(&cur, &s) || test_plan_alloc(&out, &s) ||
        test_plan_alloc(&fresh, &s))
        abort();
    int rc = eplb_rebalance(ctx, &s, w0, cur.phy2log, cur.log2phy,
                            cur.logcnt);
    if (rc != EPLB_OK) {
        for (size_t q = 0; q < L * P; q++)
            cur.phy2log[q] = (int32_t)(q % P % E);
    }
    for (unsigned k = 0; k < edits % 16; k++) {
        size_t q = (next(&b) | next(&b) << 8) % (L * P);
        cur.phy2log[q] = (int32_t)(next(&b) % (E + 1)) - 1;
    }

    eplb_request req;
    eplb_request_default(&req);
    req.current_phy2log = cur.phy2log;
    req.gpu_mask = mask;
    req.deadline_us = (flags & 8) ? (double)(flags >> 4) : 0.0;
    /* min_gain 0 (the search alone) or its default */
    int keeps = (edits >> 4) & 1;
    req.min_gain = keeps ? EPLB_MIN_GAIN_DEFAULT : 0.0f;
    test_plan_poison(&out, -7);
    rc = eplb_plan(ctx, &s, w, &req, out.phy2log, out.log2phy, out.logcnt);
    if (rc == EPLB_OK) {
        check_plan(&s, mask, &out);
        /* Every layer on target: the fresh plan's largest GPU load over
         * (1 - tolerance); with min_gain, but for layers kept as they
         * were, whose re-plan would have gained less than min_gain (with
         * a mask the schedule keeps them, less the changes the mask
         * forces: validity only there). */
        if (eplb_rebalance_from(ctx, &s, w, NULL, mask, fresh.phy2log,
                                fresh.log2phy, fresh.logcnt) != EPLB_OK)
            abort();
        double *load = malloc(L * M * sizeof(double));
        double *pk = malloc(2 * L * sizeof(double));
        peaks(&s, w, fresh.phy2log, fresh.logcnt, load, pk);
        peaks(&s, w, out.phy2log, out.logcnt, load, pk + L);
        for (size_t l = 0; l < L; l++) {
            double target = pk[l] / (1.0 - o.tolerance) * (1.0 + 1e-9) +
                            1e-9;
            if (!(pk[L + l] > target) || (keeps && mask))
                continue;
            if (keeps &&
                !memcmp(out.phy2log + l * P, cur.phy2log + l * P,
                        P * sizeof(int32_t)) &&
                pk[L + l] * (1.0 - req.min_gain) < target)
                continue;
            fprintf(stderr, "layer %zu: %g above target %g\n", l,
                    pk[L + l], pk[l] / (1.0 - o.tolerance));
            abort();
        }
        free(load);
        free(pk);
    } else if (!test_plan_is_poisoned(&out, -7)) {
        abort(); /* a failure writes nothing */
    }

    /* The same request with a migration: a budget, stages, min_gain and
     * a schedule from the bytes. A plan is valid and within its budget;
     * every slot's stage is one of the schedule's; a failure writes
     * nothing. */
    unsigned mig = next(&b);
    eplb_schedule sc;
    memset(&sc, 0, sizeof sc);
    sc.struct_size = sizeof sc;
    sc.stage_of_slot = malloc(L * P * sizeof(int32_t));
    sc.max_stages = (int32_t)(mig % 7);
    eplb_stage *stages = malloc(8 * sizeof(eplb_stage));
    sc.stages = sc.max_stages ? stages : NULL;
    req.max_copies_per_gpu = (mig & 8) ? (int32_t)(mig >> 4) % 4 : -1;
    req.max_copies = (mig & 64) ? (int64_t)(mig % 9) : -1;
    req.stage_copies_per_gpu = (int32_t)(mig >> 5) % 3;
    req.min_gain = (mig & 128) ? 0.01f : 0.0f;
    req.schedule = &sc;
    test_plan_poison(&out, -7);
    int rc2 = eplb_plan(ctx, &s, w, &req, out.phy2log, out.log2phy,
                        out.logcnt);
    if (rc2 == EPLB_OK) {
        check_plan(&s, mask, &out);
        long *per_gpu = malloc((size_t)M * sizeof(long)), total = 0;
        if (eplb_copies(&s, cur.phy2log, out.phy2log, per_gpu, &total))
            abort();
        for (int g = 0; g < M; g++)
            if (req.max_copies_per_gpu >= 0 &&
                per_gpu[g] > req.max_copies_per_gpu)
                abort();
        if (req.max_copies >= 0 && total > req.max_copies)
            abort();
        for (size_t q = 0; q < L * P; q++)
            if (sc.stage_of_slot[q] < 0 ||
                sc.stage_of_slot[q] > sc.num_stages)
                abort();
        free(per_gpu);
    } else if (!test_plan_is_poisoned(&out, -7)) {
        abort();
    }
    free(sc.stage_of_slot);
    free(stages);

    /* The same loads as recent windows (1-8 samples, each the plan in
     * service's loads or the new ones as the bytes say, so that the
     * adaptive choice meets shifts too) under an estimator from the
     * bytes: a valid plan or a status, nothing written on a failure. */
    unsigned fc = next(&b), fx = next(&b), pat = next(&b);
    int X = 1 + (int)(fx % 8);
    float *win = malloc((size_t)X * L * E * sizeof(float));
    for (int x = 0; x < X; x++)
        memcpy(win + (size_t)x * L * E, (pat >> x) & 1 ? w0 : w,
               L * E * sizeof(float));
    eplb_request fr;
    eplb_request_default(&fr);
    fr.current_phy2log = (fc & 4) ? cur.phy2log : NULL;
    fr.gpu_mask = mask;
    fr.windows = win;
    fr.num_windows = X;
    fr.forecast = (eplb_forecast)((fc >> 3) % 8);
    fr.forecast_k = 1 + (int32_t)((fc >> 6) % 5);
    fr.forecast_lookback = (int32_t)(fc % 4); /* 0: the default */
    int32_t *choice = malloc(L * sizeof(int32_t));
    for (size_t l = 0; l < L; l++)
        choice[l] = -7;
    fr.forecast_choice = choice;
    test_plan_poison(&out, -7);
    int rc3 = eplb_plan(ctx, &s, NULL, &fr, out.phy2log, out.log2phy,
                        out.logcnt);
    if (rc3 == EPLB_OK) {
        check_plan(&s, mask, &out);
        for (size_t l = 0; l < L; l++)
            if (choice[l] < EPLB_FORECAST_LAST ||
                choice[l] > EPLB_FORECAST_KEPT)
                abort();
    } else if (!test_plan_is_poisoned(&out, -7) || choice[0] != -7) {
        abort();
    }
    free(choice);
    free(win);

    /* eplb_relabel of the result (or the fresh plan) onto the current. */
    int32_t *rel = malloc(L * P * sizeof(int32_t));
    const int32_t *src = rc == EPLB_OK ? out.phy2log : cur.phy2log;
    if (eplb_relabel(&s, o.policy, cur.phy2log, src, rel) == EPLB_OK)
        for (size_t q = 0; q < L * P; q++)
            if (rel[q] < -1 || rel[q] >= (int32_t)E)
                abort();
    free(rel);

    test_plan_free(&cur);
    test_plan_free(&out);
    test_plan_free(&fresh);
    free(mask);
    free(w);
    free(w0);
    eplb_context_destroy(ctx);
    return 0;
}
