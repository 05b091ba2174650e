/* The forecast of the next window (eplb_request's windows): each
 * estimator on hand-made windows whose answer is known, a shift in the
 * samples, windows of equal samples planned exactly as the one window,
 * the window axis checked with errors that name the sample, layer and
 * expert (outputs untouched), the robust estimator's kept layers, a
 * request of the older size, and the same plans on the reference and
 * OpenCL backends and on any number of host threads. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "testutil.h"
#include "workload.h"

static eplb_context *context(eplb_backend backend, int candidates)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = backend;
    o.candidates = candidates;
    o.swap_rounds = candidates > 1 ? 4 : 0;
    o.seed = 5;
    eplb_context *ctx = NULL;
    int rc = test_context_create(&ctx, &o);
    if (rc)
        fprintf(stderr, "context: %s: %s\n", eplb_strerror(rc),
                eplb_last_error());
    return ctx;
}

/* eplb_forecast_loads of `windows` under one estimator into out [L][E]. */
static int forecast(eplb_context *ctx, const eplb_shape *s,
                    const float *windows, int X, eplb_forecast mode, int k,
                    float alpha, int lookback, float *out, int32_t *choice)
{
    eplb_request req;
    eplb_request_default(&req);
    req.windows = windows;
    req.num_windows = X;
    req.forecast = mode;
    req.forecast_k = k;
    req.forecast_alpha = alpha;
    req.forecast_lookback = lookback;
    return eplb_forecast_loads(ctx, s, &req, out, choice);
}

/* The adaptive choice with its defaults but the lookback. */
static int adaptive(eplb_context *ctx, const eplb_shape *s,
                    const float *windows, int X, int lookback, float *out,
                    int32_t *choice)
{
    return forecast(ctx, s, windows, X, EPLB_FORECAST_ADAPTIVE,
                    EPLB_FORECAST_K_DEFAULT, EPLB_FORECAST_ALPHA_DEFAULT,
                    lookback, out, choice);
}

/* Two layers of 4 experts, three samples; layer 1 is layer 0 times 10.
 * Per expert: 2 4 6 (a line), 4 4 4, 6 4 2, 8 4 0 (a line down to 0). */
static void test_estimators(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 1);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape s = {2, 4, 4, 1, 1, 2};
    float w[3][2][4] = {{{2, 4, 6, 8}, {0}}, {{4, 4, 4, 4}, {0}},
                        {{6, 4, 2, 0}, {0}}};
    for (int t = 0; t < 3; t++)
        for (int e = 0; e < 4; e++)
            w[t][1][e] = 10 * w[t][0][e];
    const struct {
        eplb_forecast mode;
        int k;
        float alpha;
        float want[4];
    } cases[] = {
        {EPLB_FORECAST_LAST, 4, 0.5f, {6, 4, 2, 0}},
        {EPLB_FORECAST_MEAN, 2, 0.5f, {5, 4, 3, 2}},
        {EPLB_FORECAST_MEAN, 3, 0.5f, {4, 4, 4, 4}},
        {EPLB_FORECAST_MEAN, 100, 0.5f, {4, 4, 4, 4}},
        /* m = s0, then m += 0.5 (s - m): 3 4 5 6, then 4.5 4 3.5 3 */
        {EPLB_FORECAST_EWMA, 4, 0.5f, {4.5f, 4, 3.5f, 3}},
        /* alpha 1 is the newest sample */
        {EPLB_FORECAST_EWMA, 4, 1.0f, {6, 4, 2, 0}},
        /* the line one window on: 8, 4, 0, and -4 clamped to 0 */
        {EPLB_FORECAST_TREND, 3, 0.5f, {8, 4, 0, 0}},
        /* through the newest two only: 4->6 gives 8, 4->2 gives 0 */
        {EPLB_FORECAST_TREND, 2, 0.5f, {8, 4, 0, 0}},
        /* one sample has no slope: the sample itself */
        {EPLB_FORECAST_TREND, 1, 0.5f, {6, 4, 2, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float out[8];
        int32_t choice[2] = {-7, -7};
        int rc = forecast(ctx, &s, &w[0][0][0], 3, cases[i].mode, cases[i].k,
                          cases[i].alpha, EPLB_FORECAST_LOOKBACK_DEFAULT,
                          out, choice);
        CU_ASSERT_FATAL(rc == EPLB_OK);
        for (int e = 0; e < 4; e++) {
            CU_ASSERT_DOUBLE_EQUAL(out[e], cases[i].want[e], 1e-6);
            CU_ASSERT_DOUBLE_EQUAL(out[4 + e], 10 * cases[i].want[e], 1e-5);
        }
        CU_ASSERT(choice[0] == (int32_t)cases[i].mode);
        CU_ASSERT(choice[1] == (int32_t)cases[i].mode);
    }
    eplb_context_destroy(ctx);
}

/* The adaptive choice on two layers whose best estimator is plain: in
 * layer 0 one expert gains and another loses the same load each window
 * (the line foresees it; the others lag a step or more behind), in layer
 * 1 the hot expert alternates between two experts (the mean of four sees
 * both equally; the newest sample, the weighted mean and the line favour
 * the wrong one). */
static void test_adaptive_choice(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 1);
    CU_ASSERT_FATAL(ctx != NULL);
    /* one slot per GPU: a layer's balance is its replica counts' */
    const eplb_shape s = {2, 4, 8, 1, 1, 8};
    enum { X = 6 };
    float w[X][2][4];
    for (int t = 0; t < X; t++)
        for (int e = 0; e < 4; e++) {
            w[t][0][e] = e == 0   ? 10.0f + 40.0f * t
                         : e == 1 ? 250.0f - 40.0f * t
                                  : 10.0f;
            w[t][1][e] = e == t % 2 ? 90.0f : 10.0f;
        }
    float out[8];
    int32_t choice[2];
    CU_ASSERT_FATAL(adaptive(ctx, &s, &w[0][0][0], X, 3, out, choice) ==
                    EPLB_OK);
    CU_ASSERT(choice[0] == EPLB_FORECAST_TREND);
    CU_ASSERT(choice[1] == EPLB_FORECAST_MEAN);
    /* and the loads are that estimator's: the line's next point, the mean
     * of the newest four */
    CU_ASSERT_DOUBLE_EQUAL(out[0], 10.0 + 40.0 * X, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(out[1], 250.0 - 40.0 * X, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(out[4], 50.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(out[5], 50.0, 1e-6);
    /* one sample: nothing to score, every layer takes the newest */
    CU_ASSERT_FATAL(adaptive(ctx, &s, &w[0][0][0], 1, 3, out, choice) ==
                    EPLB_OK);
    CU_ASSERT(choice[0] == EPLB_FORECAST_LAST);
    CU_ASSERT(choice[1] == EPLB_FORECAST_LAST);
    eplb_context_destroy(ctx);
}

/* A shift (a sample that moves much more of a layer's traffic than the
 * steps before it did) starts the layer's regime: the adaptive choice
 * estimates from it on. Two layers of 4 experts drifting as layer 0 of
 * the test above (the line foresees them), until expert 3 jumps from 10
 * to 5000: in layer 0 at the newest sample, in layer 1 three samples
 * before the end. */
static void test_adaptive_shift(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 1);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape s = {2, 4, 8, 1, 1, 8};
    enum { X = 8 };
    float w[X][2][4];
    for (int t = 0; t < X; t++)
        for (int l = 0; l < 2; l++)
            for (int e = 0; e < 4; e++)
                w[t][l][e] = e == 0   ? 10.0f + 30.0f * t
                             : e == 1 ? 250.0f - 30.0f * t
                             : e == 3 && t >= (l == 0 ? X - 1 : X - 3)
                                 ? 5000.0f
                                 : 10.0f;
    float out[8];
    int32_t choice[2];
    CU_ASSERT_FATAL(adaptive(ctx, &s, &w[0][0][0], X, 3, out, choice) ==
                    EPLB_OK);
    /* layer 0: the newest sample is the shift, and alone */
    CU_ASSERT(choice[0] == EPLB_FORECAST_LAST);
    for (int e = 0; e < 4; e++)
        CU_ASSERT(out[e] == w[X - 1][0][e]);
    /* layer 1: estimated from samples X-3.. only (the mean of the newest
     * four, or a line through them, would put expert 3 far from 5000) */
    CU_ASSERT_DOUBLE_EQUAL(out[7], 5000.0, 1e-3);
    /* without the jump, the line as before */
    for (int t = 0; t < X; t++)
        w[t][0][3] = w[t][1][3] = 10.0f;
    CU_ASSERT_FATAL(adaptive(ctx, &s, &w[0][0][0], X, 3, out, choice) ==
                    EPLB_OK);
    CU_ASSERT(choice[0] == EPLB_FORECAST_TREND);
    CU_ASSERT(choice[1] == EPLB_FORECAST_TREND);
    eplb_context_destroy(ctx);
}

static const eplb_shape small = {6, 32, 40, 4, 2, 8};

/* X copies of w. */
static float *repeat(const float *w, size_t n, int X)
{
    float *r = malloc((size_t)X * n * sizeof(float));
    for (int k = 0; k < X; k++)
        memcpy(r + (size_t)k * n, w, n * sizeof(float));
    return r;
}

/* A window of equal samples is planned exactly as the one sample, by
 * every estimator, fresh and re-planned from a current plan. */
static void test_identical_samples(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 8);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape *s = &small;
    size_t n = (size_t)s->layers * s->experts;
    float *w = malloc(n * sizeof(float)), *w0 = malloc(n * sizeof(float));
    workload_generate(w, s->layers, s->experts, 41);
    memcpy(w0, w, n * sizeof(float));
    workload_perturb(w0, s->layers, s->experts, 0.3f, 9);
    float *win = repeat(w, n, 4);
    test_plan cur, one, many;
    CU_ASSERT_FATAL(test_plan_alloc(&cur, s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&one, s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&many, s) == 0);
    CU_ASSERT_FATAL(eplb_rebalance(ctx, s, w0, cur.phy2log, cur.log2phy,
                                   cur.logcnt) == EPLB_OK);
    for (int from = 0; from < 2; from++) {
        eplb_request req;
        eplb_request_default(&req);
        req.current_phy2log = from ? cur.phy2log : NULL;
        CU_ASSERT_FATAL(eplb_plan(ctx, s, w, &req, one.phy2log, one.log2phy,
                                  one.logcnt) == EPLB_OK);
        for (int m = EPLB_FORECAST_AUTO; m <= EPLB_FORECAST_ROBUST; m++) {
            req.windows = win;
            req.num_windows = 4;
            req.forecast = (eplb_forecast)m;
            test_plan_poison(&many, 0x11);
            int rc = eplb_plan(ctx, s, NULL, &req, many.phy2log,
                               many.log2phy, many.logcnt);
            CU_ASSERT(rc == EPLB_OK);
            if (!test_plan_equal(&one, &many))
                printf("\n  estimator %d, %s: not the one window's plan\n",
                       m, from ? "re-planned" : "fresh");
            CU_ASSERT(test_plan_equal(&one, &many));
            req.windows = NULL;
            req.num_windows = 0;
            req.forecast = EPLB_FORECAST_AUTO;
        }
    }
    test_plan_free(&cur);
    test_plan_free(&one);
    test_plan_free(&many);
    free(win);
    free(w);
    free(w0);
    eplb_context_destroy(ctx);
}

/* Bad windows and bad forecast fields: each refused with its status and a
 * message naming the sample, layer and expert (or the field), every
 * output untouched. */
static void test_validation(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 1);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape *s = &small;
    size_t n = (size_t)s->layers * s->experts;
    float *w = malloc(n * sizeof(float));
    workload_generate(w, s->layers, s->experts, 7);
    test_plan out;
    CU_ASSERT_FATAL(test_plan_alloc(&out, s) == 0);
    int32_t choice[6];
    float est[6 * 32];
    const struct {
        int sample, layer, expert;
        float value;
        int status;
        const char *word;
    } bad[] = {
        {1, 2, 3, NAN, EPLB_ERR_LOAD_NAN, "sample 1, layer 2, expert 3"},
        {2, 5, 31, INFINITY, EPLB_ERR_LOAD_INFINITE,
         "sample 2, layer 5, expert 31"},
        {0, 0, 0, -1.0f, EPLB_ERR_LOAD_NEGATIVE,
         "sample 0, layer 0, expert 0"},
        /* a whole sample of zeros */
        {2, -1, -1, 0.0f, EPLB_ERR_BAD_OPTION, "sample 2 of 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float *win = repeat(w, n, 3);
        if (bad[i].layer >= 0)
            win[(size_t)bad[i].sample * n +
                (size_t)bad[i].layer * s->experts + bad[i].expert] =
                bad[i].value;
        else
            memset(win + (size_t)bad[i].sample * n, 0, n * sizeof(float));
        eplb_request req;
        eplb_request_default(&req);
        req.windows = win;
        req.num_windows = 3;
        req.forecast_choice = choice;
        for (int m = EPLB_FORECAST_LAST; m <= EPLB_FORECAST_ROBUST; m++) {
            req.forecast = (eplb_forecast)m;
            test_plan_poison(&out, 0x5A5A5A5A);
            memset(choice, 0x5A, sizeof choice);
            int rc = eplb_plan(ctx, s, NULL, &req, out.phy2log, out.log2phy,
                               out.logcnt);
            CU_ASSERT(rc == bad[i].status);
            CU_ASSERT(strstr(eplb_last_error(), bad[i].word) != NULL);
            CU_ASSERT(test_plan_is_poisoned(&out, 0x5A5A5A5A));
            CU_ASSERT(choice[0] == 0x5A5A5A5A);
            memset(est, 0x5A, sizeof est);
            rc = eplb_forecast_loads(ctx, s, &req, est, choice);
            CU_ASSERT(rc == bad[i].status);
            CU_ASSERT(((uint32_t *)est)[0] == 0x5A5A5A5A);
        }
        free(win);
    }
    /* the fields: each refused, naming it */
    float *win = repeat(w, n, 2);
    const struct {
        int num_windows, forecast, k, lookback;
        float alpha;
        int with_weight;
        const char *word;
    } fields[] = {
        {0, 0, 4, 2, 0.5f, 0, "num_windows"},
        {-3, 0, 4, 2, 0.5f, 0, "num_windows"},
        {2, 99, 4, 2, 0.5f, 0, "req->forecast"},
        {2, -1, 4, 2, 0.5f, 0, "req->forecast"},
        {2, EPLB_FORECAST_MEAN, 0, 2, 0.5f, 0, "forecast_k"},
        {2, EPLB_FORECAST_EWMA, 4, 2, 0.0f, 0, "forecast_alpha"},
        {2, EPLB_FORECAST_EWMA, 4, 2, 1.5f, 0, "forecast_alpha"},
        {2, EPLB_FORECAST_EWMA, 4, 2, NAN, 0, "forecast_alpha"},
        {2, EPLB_FORECAST_ADAPTIVE, 4, -1, 0.5f, 0, "forecast_lookback"},
        {2, EPLB_FORECAST_ADAPTIVE, 4, EPLB_MAX_LOOKBACK + 1, 0.5f, 0,
         "forecast_lookback"},
        {2, 0, 4, 2, 0.5f, 1, "both given"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        eplb_request req;
        eplb_request_default(&req);
        req.windows = win;
        req.num_windows = fields[i].num_windows;
        req.forecast = (eplb_forecast)fields[i].forecast;
        req.forecast_k = fields[i].k;
        req.forecast_alpha = fields[i].alpha;
        req.forecast_lookback = fields[i].lookback;
        test_plan_poison(&out, 0x5A5A5A5A);
        int rc = eplb_plan(ctx, s, fields[i].with_weight ? w : NULL, &req,
                           out.phy2log, out.log2phy, out.logcnt);
        CU_ASSERT(rc == EPLB_ERR_BAD_OPTION);
        CU_ASSERT(strstr(eplb_last_error(), fields[i].word) != NULL);
        CU_ASSERT(test_plan_is_poisoned(&out, 0x5A5A5A5A));
    }
    /* forecast fields without windows: refused, not ignored */
    eplb_request req;
    eplb_request_default(&req);
    req.forecast = EPLB_FORECAST_MEAN;
    test_plan_poison(&out, 0x5A5A5A5A);
    CU_ASSERT(eplb_plan(ctx, s, w, &req, out.phy2log, out.log2phy,
                        out.logcnt) == EPLB_ERR_BAD_OPTION);
    CU_ASSERT(strstr(eplb_last_error(), "no windows") != NULL);
    CU_ASSERT(test_plan_is_poisoned(&out, 0x5A5A5A5A));
    /* eplb_forecast_loads needs windows */
    eplb_request_default(&req);
    CU_ASSERT(eplb_forecast_loads(ctx, s, &req, est, NULL) ==
              EPLB_ERR_BAD_OPTION);
    free(win);
    free(w);
    test_plan_free(&out);
    eplb_context_destroy(ctx);
}

/* A request of the size before the forecast (a caller built against the
 * older header): the fields past its end are not read. */
static void test_older_request(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 1);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape *s = &small;
    size_t n = (size_t)s->layers * s->experts;
    float *w = malloc(n * sizeof(float));
    workload_generate(w, s->layers, s->experts, 3);
    test_plan a, b;
    CU_ASSERT_FATAL(test_plan_alloc(&a, s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&b, s) == 0);
    CU_ASSERT_FATAL(eplb_rebalance(ctx, s, w, a.phy2log, a.log2phy,
                                   a.logcnt) == EPLB_OK);
    eplb_request req;
    eplb_request_default(&req);
    req.struct_size = (uint32_t)offsetof(eplb_request, windows);
    /* garbage where the newer fields lie */
    req.windows = (const float *)(uintptr_t)8;
    req.num_windows = -5;
    req.forecast = (eplb_forecast)77;
    CU_ASSERT(eplb_plan(ctx, s, w, &req, b.phy2log, b.log2phy, b.logcnt) ==
              EPLB_OK);
    CU_ASSERT(test_plan_equal(&a, &b));
    test_plan_free(&a);
    test_plan_free(&b);
    free(w);
    eplb_context_destroy(ctx);
}

/* The robust estimator with a current plan: under noise some layers keep
 * their placement; the plan stays valid, kept layers are the current
 * ones, and no kept layer is worse than the winner on the worst sample. */
static void test_robust_keeps(void)
{
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 8);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape *s = &small;
    size_t n = (size_t)s->layers * s->experts;
    enum { X = 4 };
    float *win = malloc(X * n * sizeof(float));
    for (int k = 0; k < X; k++) {
        workload_generate(win + k * n, s->layers, s->experts, 17);
        workload_perturb(win + k * n, s->layers, s->experts, 0.02f, 60 + k);
    }
    test_plan cur, out;
    CU_ASSERT_FATAL(test_plan_alloc(&cur, s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&out, s) == 0);
    eplb_request req;
    eplb_request_default(&req);
    req.windows = win;
    req.num_windows = X - 1;
    req.forecast = EPLB_FORECAST_MEAN;
    CU_ASSERT_FATAL(eplb_plan(ctx, s, NULL, &req, cur.phy2log, cur.log2phy,
                              cur.logcnt) == EPLB_OK);
    int32_t choice[6];
    req.num_windows = X;
    req.forecast = EPLB_FORECAST_ROBUST;
    req.forecast_lookback = 3;
    req.current_phy2log = cur.phy2log;
    req.forecast_choice = choice;
    CU_ASSERT_FATAL(eplb_plan(ctx, s, NULL, &req, out.phy2log, out.log2phy,
                              out.logcnt) == EPLB_OK);
    CU_ASSERT(test_plan_check(&out, 1) == NULL);
    int kept = 0;
    for (int l = 0; l < s->layers; l++) {
        size_t row = (size_t)l * s->num_replicas;
        CU_ASSERT(choice[l] >= EPLB_FORECAST_LAST &&
                  (choice[l] <= EPLB_FORECAST_TREND ||
                   choice[l] == EPLB_FORECAST_KEPT));
        if (choice[l] != EPLB_FORECAST_KEPT)
            continue;
        kept++;
        CU_ASSERT(memcmp(out.phy2log + row, cur.phy2log + row,
                         (size_t)s->num_replicas * 4) == 0);
    }
    printf("\n  robust: %d of %d layers kept\n", kept, s->layers);
    CU_ASSERT(kept > 0);
    /* (that with min_gain at its default); with stages asked for,
     * nothing is kept behind the schedule */
    req.stage_copies_per_gpu = 2;
    CU_ASSERT_FATAL(eplb_plan(ctx, s, NULL, &req, out.phy2log, out.log2phy,
                              out.logcnt) == EPLB_OK);
    for (int l = 0; l < s->layers; l++)
        CU_ASSERT(choice[l] != EPLB_FORECAST_KEPT);
    test_plan_free(&cur);
    test_plan_free(&out);
    free(win);
    eplb_context_destroy(ctx);
}

/* The same windows give the same plan on both backends, for every
 * estimator, fresh and from a current plan. */
static void test_backends_agree(void)
{
    eplb_context *ref = context(EPLB_BACKEND_REFERENCE, 8);
    eplb_context *cl = context(EPLB_BACKEND_OPENCL, 8);
    CU_ASSERT_FATAL(ref != NULL);
    if (!cl) {
        printf("\n  no OpenCL device: the reference backend alone\n");
        eplb_context_destroy(ref);
        return;
    }
    const eplb_shape *s = &small;
    size_t n = (size_t)s->layers * s->experts;
    enum { X = 5 };
    float *win = malloc(X * n * sizeof(float));
    for (int k = 0; k < X; k++) {
        workload_generate(win + k * n, s->layers, s->experts, 23);
        workload_perturb(win + k * n, s->layers, s->experts, 0.1f * k,
                         90 + k);
    }
    test_plan cur, a, b;
    CU_ASSERT_FATAL(test_plan_alloc(&cur, s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&a, s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&b, s) == 0);
    CU_ASSERT_FATAL(eplb_rebalance(ref, s, win, cur.phy2log, cur.log2phy,
                                   cur.logcnt) == EPLB_OK);
    for (int from = 0; from < 2; from++)
        for (int m = EPLB_FORECAST_LAST; m <= EPLB_FORECAST_ROBUST; m++) {
            int32_t ca[6], cb[6];
            eplb_request req;
            eplb_request_default(&req);
            req.windows = win;
            req.num_windows = X;
            req.forecast = (eplb_forecast)m;
            req.current_phy2log = from ? cur.phy2log : NULL;
            req.forecast_choice = ca;
            CU_ASSERT_FATAL(eplb_plan(ref, s, NULL, &req, a.phy2log,
                                      a.log2phy, a.logcnt) == EPLB_OK);
            req.forecast_choice = cb;
            CU_ASSERT_FATAL(eplb_plan(cl, s, NULL, &req, b.phy2log,
                                      b.log2phy, b.logcnt) == EPLB_OK);
            CU_ASSERT(test_plan_equal(&a, &b));
            CU_ASSERT(memcmp(ca, cb, sizeof ca) == 0);
        }
    test_plan_free(&cur);
    test_plan_free(&a);
    test_plan_free(&b);
    free(win);
    eplb_context_destroy(ref);
    eplb_context_destroy(cl);
}

/* X samples of shape s: one generated load, each sample perturbed by
 * 15% more than the one before (NULL when out of memory). */
static float *noisy_windows(const eplb_shape *s, int X, int seed)
{
    size_t n = (size_t)s->layers * s->experts;
    float *win = malloc((size_t)X * n * sizeof(float));
    for (int k = 0; win && k < X; k++) {
        workload_generate(win + k * n, s->layers, s->experts, seed);
        workload_perturb(win + k * n, s->layers, s->experts, 0.15f * k,
                         40 + seed + k);
    }
    return win;
}

/* Two forecasts' loads (n) and choices (L) are the same. */
static void assert_same(const float *a, const float *b, size_t n,
                        const int32_t *ca, const int32_t *cb, int L)
{
    CU_ASSERT(memcmp(a, b, n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(ca, cb, (size_t)L * sizeof(int32_t)) == 0);
}

/* The adaptive choice takes its layers on the context's host threads:
 * every estimator gives the same loads and choices on 1 to 16 threads. */
static void test_threads_agree(void)
{
    /* (workers: at most one a layer) */
    const eplb_shape layers20 = {20, 32, 40, 4, 2, 8}, *s = &layers20;
    size_t n = (size_t)s->layers * s->experts;
    enum { X = 7 };
    float *win = noisy_windows(s, X, 31);
    float *one = malloc(n * sizeof(float)), *many = malloc(n * sizeof(float));
    CU_ASSERT_FATAL(win && one && many);
    static const int threads[] = {2, 3, 16};
    for (int m = EPLB_FORECAST_LAST; m <= EPLB_FORECAST_ROBUST; m++) {
        eplb_options o;
        eplb_options_default(&o);
        o.backend = EPLB_BACKEND_REFERENCE;
        o.host_threads = 1;
        eplb_context *ctx = NULL;
        CU_ASSERT_FATAL(test_context_create(&ctx, &o) == EPLB_OK);
        int32_t c1[20], cm[20];
        CU_ASSERT_FATAL(forecast(ctx, s, win, X, (eplb_forecast)m, 3, 0.4f,
                                 3, one, c1) == EPLB_OK);
        eplb_context_destroy(ctx);
        for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
            o.host_threads = threads[t];
            CU_ASSERT_FATAL(test_context_create(&ctx, &o) == EPLB_OK);
            CU_ASSERT_FATAL(forecast(ctx, s, win, X, (eplb_forecast)m, 3,
                                     0.4f, 3, many, cm) == EPLB_OK);
            assert_same(one, many, n, c1, cm, 20);
            eplb_context_destroy(ctx);
        }
    }
    free(win);
    free(one);
    free(many);
}

/* forecast_lookback 0 (the request's default) is each estimator's own:
 * the adaptive choice scores EPLB_ADAPTIVE_LOOKBACK_DEFAULT samples, the
 * robust one EPLB_ROBUST_LOOKBACK_DEFAULT. */
static void test_lookback_defaults(void)
{
    eplb_request req;
    eplb_request_default(&req);
    CU_ASSERT(req.forecast_lookback == 0);
    eplb_context *ctx = context(EPLB_BACKEND_REFERENCE, 8);
    CU_ASSERT_FATAL(ctx != NULL);
    const eplb_shape *s = &small;
    size_t n = (size_t)s->layers * s->experts;
    enum { X = 6 };
    float *win = noisy_windows(s, X, 7);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    CU_ASSERT_FATAL(win && a && b);
    const struct {
        eplb_forecast mode;
        int lookback;
    } cases[] = {{EPLB_FORECAST_ADAPTIVE, EPLB_ADAPTIVE_LOOKBACK_DEFAULT},
                 {EPLB_FORECAST_ROBUST, EPLB_ROBUST_LOOKBACK_DEFAULT}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ca[6], cb[6];
        CU_ASSERT_FATAL(forecast(ctx, s, win, X, cases[i].mode, 4, 0.5f, 0,
                                 a, ca) == EPLB_OK);
        CU_ASSERT_FATAL(forecast(ctx, s, win, X, cases[i].mode, 4, 0.5f,
                                 cases[i].lookback, b, cb) == EPLB_OK);
        assert_same(a, b, n, ca, cb, 6);
    }
    free(win);
    free(a);
    free(b);
    eplb_context_destroy(ctx);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"estimators on hand-made windows", test_estimators},
        {"the adaptive choice", test_adaptive_choice},
        {"a shift starts the adaptive choice's regime", test_adaptive_shift},
        {"equal samples plan as one window", test_identical_samples},
        {"the window axis checked", test_validation},
        {"a request of the older size", test_older_request},
        {"robust keeps layers", test_robust_keeps},
        {"reference and OpenCL agree", test_backends_agree},
        {"the same on 1 to 16 host threads", test_threads_agree},
        {"each estimator's default lookback", test_lookback_defaults},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"forecast", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return run_suites(suites);
}
