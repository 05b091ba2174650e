/* The forecast of the next window's loads (eplb_request's windows): the
 * [L][E] loads a plan is made from, estimated from X recent samples on the
 * host, before the backend plans, so that every backend plans the same
 * loads. Four estimators (the newest sample, the mean of the newest K, an
 * exponentially weighted mean, the line through the newest K one window
 * ahead) and two ways to choose among them per layer: by how their past
 * plans scored on the sample that followed (adaptive), or by the worst
 * case of their plans over the newest samples (robust). Every loop runs in
 * a fixed order, ties go to the simplest estimator, and the work is
 * bounded: O(X L E) to read the samples, plus at most 4 x lookback
 * deterministic plans (adaptive) or 4 backend plans (robust). The
 * adaptive choice runs each layer whole (its samples, estimates, plans
 * and scores) on one of the context's host threads. */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The estimators a choice picks among, simplest first (ties go to the
 * lower index). Index k is EPLB_FORECAST_LAST + k. */
enum { EST_LAST = 0, EST_MEAN, EST_EWMA, EST_TREND, NEST };

struct forecast_state {
    size_t le_cap, p2l_cap, cnt_cap;
    int m_cap, l_cap;
    float *est;      /* [L][E] the loads returned */
    float *cand;     /* [NEST][L][E] each estimator's loads */
    double *ewma;    /* [L][E] the running weighted mean */
    double *acc;     /* [L][E] the mean's sums */
    double *score;   /* [NEST][L] robust: higher is better */
    double *spread;  /* [NEST][L] robust: each plan's ratio's range */
    int32_t *choice; /* [L] */
    int32_t *start;  /* [L] adaptive: the sample a layer's estimates
                        start from (its newest shift, else 0) */
    double *steps;   /* [L][horizon + SHIFT_PAST] adaptive: each layer's
                        steps between samples */
    size_t steps_cap;
    uint8_t *keep;   /* [L] robust: the layer keeps its current plan */
    double *gl;      /* [M] one layer's GPU loads */
    int32_t *p2l, *cnt; /* one plan of the whole shape (no log2phy) */
    reference_pool ref; /* the deterministic planner (adaptive) */
    eplbi_threads *threads; /* its threads: the context's */
};

void forecast_state_free(forecast_state *st)
{
    if (!st)
        return;
    free(st->est);
    free(st->cand);
    free(st->ewma);
    free(st->acc);
    free(st->score);
    free(st->spread);
    free(st->choice);
    free(st->start);
    free(st->steps);
    free(st->keep);
    free(st->gl);
    free(st->p2l);
    free(st->cnt);
    reference_pool_free(&st->ref);
    free(st);
}

/* realloc to n elements of `size` bytes when *cap is smaller. */
static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (*cap >= n)
        return 0;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int state_reserve(forecast_state **stp, const plan_dims *d)
{
    if (!*stp && !(*stp = calloc(1, sizeof **stp)))
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    forecast_state *st = *stp;
    size_t L = (size_t)d->L, le = L * d->E;
    size_t le_cap = st->le_cap, l_cap = (size_t)st->l_cap,
           m_cap = (size_t)st->m_cap;
    int fail = 0;
    if (le_cap < le) {
        /* the [L][E] arrays share one capacity: grown together */
        size_t c;
        c = le_cap; fail |= grow((void **)&st->est, &c, le, sizeof(float));
        c = le_cap; fail |= grow((void **)&st->cand, &c, NEST * le,
                                 sizeof(float));
        c = le_cap; fail |= grow((void **)&st->ewma, &c, le, sizeof(double));
        c = le_cap; fail |= grow((void **)&st->acc, &c, le, sizeof(double));
        if (!fail)
            st->le_cap = le;
    }
    if (!fail && l_cap < L) {
        size_t c;
        c = l_cap; fail |= grow((void **)&st->score, &c, NEST * L,
                                sizeof(double));
        c = l_cap; fail |= grow((void **)&st->choice, &c, L, sizeof(int32_t));
        c = l_cap; fail |= grow((void **)&st->start, &c, L, sizeof(int32_t));
        c = l_cap; fail |= grow((void **)&st->keep, &c, L, 1);
        c = l_cap; fail |= grow((void **)&st->spread, &c, NEST * L,
                                sizeof(double));
        if (!fail)
            st->l_cap = (int)L;
    }
    if (!fail && m_cap < (size_t)d->M) {
        size_t c = m_cap;
        fail |= grow((void **)&st->gl, &c, (size_t)d->M, sizeof(double));
        if (!fail)
            st->m_cap = d->M;
    }
    if (!fail)
        fail = grow((void **)&st->p2l, &st->p2l_cap, L * d->P,
                    sizeof(int32_t)) ||
               grow((void **)&st->cnt, &st->cnt_cap, le, sizeof(int32_t));
    if (fail)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory for "
                          "the forecast of %d layers x %d experts", d->L,
                          d->E);
    return EPLB_OK;
}

/* Over n loads: *bad != 0 when one is negative (but -0), NaN or
 * infinite, *any != 0 when one is above 0; from the bit patterns, in
 * blocks of a fixed length the compiler turns into vector code (a check
 * of every sample on one thread is the forecast's only serial pass). */
#define SCAN_BLOCK 16
static void scan_sample(const float *w, size_t n, uint32_t *any,
                        uint32_t *bad)
{
    uint32_t a = 0, b = 0;
    size_t i = 0;
    for (; i + SCAN_BLOCK <= n; i += SCAN_BLOCK) {
        uint32_t bits[SCAN_BLOCK];
        memcpy(bits, w + i, sizeof bits);
        for (int k = 0; k < SCAN_BLOCK; k++) {
            /* finite and >= 0: at most FLT_MAX's pattern, or -0 */
            b |= (uint32_t)(bits[k] > 0x7F7FFFFFu) &
                 (uint32_t)(bits[k] != 0x80000000u);
            a |= bits[k] & 0x7FFFFFFFu;
        }
    }
    for (; i < n; i++) {
        uint32_t v;
        memcpy(&v, w + i, sizeof v);
        b |= (uint32_t)(v > 0x7F7FFFFFu) & (uint32_t)(v != 0x80000000u);
        a |= v & 0x7FFFFFFFu;
    }
    *any = a;
    *bad = b;
}

int forecast_check(const eplb_shape *shape, const eplb_request *r)
{
    if (r->forecast < EPLB_FORECAST_AUTO || r->forecast > EPLB_FORECAST_ROBUST)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->forecast is %d: use EPLB_FORECAST_AUTO, "
                          "_LAST, _MEAN, _EWMA, _ADAPTIVE or _ROBUST",
                          (int)r->forecast);
    if (r->forecast_k < 1)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->forecast_k is %d: use 1 or more samples "
                          "(default %d)", (int)r->forecast_k,
                          EPLB_FORECAST_K_DEFAULT);
    if (!(r->forecast_alpha > 0.0f && r->forecast_alpha <= 1.0f))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->forecast_alpha is %g: use a weight in (0, 1] "
                          "(default %g)", (double)r->forecast_alpha,
                          (double)EPLB_FORECAST_ALPHA_DEFAULT);
    if (r->forecast_lookback < 0 || r->forecast_lookback > EPLB_MAX_LOOKBACK)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->forecast_lookback is %d: use 1..%d samples, "
                          "or 0 for the estimator's default (adaptive %d, "
                          "robust %d)", (int)r->forecast_lookback,
                          EPLB_MAX_LOOKBACK, EPLB_ADAPTIVE_LOOKBACK_DEFAULT,
                          EPLB_ROBUST_LOOKBACK_DEFAULT);
    int X = r->num_windows;
    if (X < 1 || X > EPLB_MAX_WINDOWS)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->num_windows is %d: give the number of "
                          "samples in req->windows, 1..%d", X,
                          EPLB_MAX_WINDOWS);
    size_t le = (size_t)shape->layers * (size_t)shape->experts;
    if ((uint64_t)X * le > SIZE_MAX / sizeof(float))
        return eplbi_fail(EPLB_ERR_SIZE_OVERFLOW,
                          "req->num_windows (%d) x layers x experts does not "
                          "fit in memory: pass fewer samples", X);
    const float *w = r->windows;
    for (int s = 0; s < X; s++) {
        const float *ws = w + (size_t)s * le;
        uint32_t any = 0, bad = 0;
        scan_sample(ws, le, &any, &bad);
        /* the first bad value named, only when there is one */
        for (size_t i = 0; bad && i < le; i++) {
            float v = ws[i];
            if (v >= 0.0f && v <= 3.4028235e38f)
                continue;
            int layer = (int)(i / (size_t)shape->experts);
            int expert = (int)(i % (size_t)shape->experts);
            if (isnan(v))
                return eplbi_fail(EPLB_ERR_LOAD_NAN,
                                  "req->windows[%d][%d][%d] (sample %d, "
                                  "layer %d, expert %d) is NaN: loads must "
                                  "be finite token counts >= 0", s, layer,
                                  expert, s, layer, expert);
            if (isinf(v))
                return eplbi_fail(EPLB_ERR_LOAD_INFINITE,
                                  "req->windows[%d][%d][%d] (sample %d, "
                                  "layer %d, expert %d) is %s: loads must "
                                  "be finite token counts >= 0", s, layer,
                                  expert, s, layer, expert,
                                  v > 0 ? "+inf" : "-inf");
            return eplbi_fail(EPLB_ERR_LOAD_NEGATIVE,
                              "req->windows[%d][%d][%d] (sample %d, layer "
                              "%d, expert %d) is %g: loads must be >= 0", s,
                              layer, expert, s, layer, expert, (double)v);
        }
        if (!any)
            return eplbi_fail(EPLB_ERR_BAD_OPTION,
                              "req->windows[%d] (sample %d of %d) is all "
                              "zero: no expert of any layer received a "
                              "token; leave samples without traffic out (an "
                              "engine's window before its first step)", s, s,
                              X);
    }
    return EPLB_OK;
}

/* The samples the adaptive (robust 0) or robust (1) choice scores: the
 * request's, or the estimator's default for 0. */
static int lookback(const eplb_request *r, int robust)
{
    if (r->forecast_lookback > 0)
        return r->forecast_lookback;
    return robust ? EPLB_ROBUST_LOOKBACK_DEFAULT
                  : EPLB_ADAPTIVE_LOOKBACK_DEFAULT;
}

/* The first of the newest k of samples 0..n-1 that a layer starting at
 * sample s0 uses: from s0 on, and at least the newest. */
static inline int first_sample(int s0, int n, int k)
{
    int first = n > k ? n - k : 0;
    first = first > s0 ? first : s0;
    return first < n ? first : n - 1;
}

/* Layer l's mean of samples first..n-1 (w [X][L][E], le = L E, at = l E)
 * into out's row l, acc's row l its sums: in double, oldest first, so
 * that equal samples give that sample exactly. */
static void mean_row(const float *w, size_t le, size_t at, int E, int first,
                     int n, double *acc, float *out)
{
    const float *ws = w + (size_t)first * le + at;
    for (int e = 0; e < E; e++)
        acc[at + e] = ws[e];
    for (int s = first + 1; s < n; s++) {
        ws = w + (size_t)s * le + at;
        for (int e = 0; e < E; e++)
            acc[at + e] += ws[e];
    }
    double count = (double)(n - first);
    for (int e = 0; e < E; e++)
        out[at + e] = (float)(acc[at + e] / count);
}

/* Layer l's least-squares line through samples first..n-1 at sample n,
 * from out's row l holding their mean (mean_row's, acc's row l its
 * scratch), clamped to [0, FLT_MAX]. Positions are centred, so that
 * equal samples give their value exactly (each deviation from the mean is
 * 0). */
static void line_from_mean(const float *w, size_t le, size_t at, int E,
                           int first, int n, double *acc, float *out)
{
    int m = n - first;
    if (m < 2)
        return;
    double centre = (m - 1) / 2.0, ss = 0.0;
    for (int j = 0; j < m; j++)
        ss += (j - centre) * (j - centre);
    for (int e = 0; e < E; e++)
        acc[at + e] = 0.0; /* now the slope's sums */
    for (int j = 0; j < m; j++) {
        const float *ws = w + (size_t)(first + j) * le + at;
        double tj = j - centre;
        for (int e = 0; e < E; e++)
            acc[at + e] += tj * ((double)ws[e] - (double)out[at + e]);
    }
    double ahead = m - centre; /* sample n's position */
    for (int e = 0; e < E; e++) {
        double v = (double)out[at + e] + acc[at + e] / ss * ahead;
        out[at + e] = v > 0.0 ? (v < 3.4028234e38 ? (float)v : 3.4028234e38f)
                              : 0.0f;
    }
}

static void trend_row(const float *w, size_t le, size_t at, int E, int first,
                      int n, double *acc, float *out)
{
    mean_row(w, le, at, E, first, n, acc, out);
    line_from_mean(w, le, at, E, first, n, acc, out);
}

/* The mean (trend 0) or the line (trend 1) of the newest k of samples
 * 0..n-1 of every layer into out [L][E]. */
static void estimate_all(forecast_state *st, const float *w, int L, int E,
                         int n, int k, int trend, float *out)
{
    size_t le = (size_t)L * E;
    int first = first_sample(0, n, k);
    for (int l = 0; l < L; l++)
        (trend ? trend_row : mean_row)(w, le, (size_t)l * E, E, first, n,
                                       st->acc, out);
}

/* The running weighted mean of one layer (m, ws: its rows) after a
 * sample: m = the sample at the layer's first (restart), then
 * m += alpha (x_s - m), which leaves m unchanged (exactly) when the
 * sample equals it. */
static void ewma_row(double *m, const float *ws, int E, int restart,
                     double alpha)
{
    if (restart) {
        for (int e = 0; e < E; e++)
            m[e] = ws[e];
        return;
    }
    for (int e = 0; e < E; e++)
        m[e] += alpha * ((double)ws[e] - m[e]);
}

/* Every estimator's loads of layer l for the samples 0..n-1 (from sample
 * start on) into st->cand's rows l; the running weighted mean must have
 * taken samples 0..n-1. */
static void candidates_row(forecast_state *st, const eplb_request *r, int L,
                           int E, int l, int start, int n)
{
    size_t le = (size_t)L * E, at = (size_t)l * E;
    const float *w = r->windows;
    int first = first_sample(start, n, r->forecast_k);
    memcpy(st->cand + EST_LAST * le + at, w + (size_t)(n - 1) * le + at,
           (size_t)E * sizeof(float));
    mean_row(w, le, at, E, first, n, st->acc, st->cand + EST_MEAN * le);
    float *ew = st->cand + EST_EWMA * le + at;
    for (int e = 0; e < E; e++)
        ew[e] = (float)st->ewma[at + e];
    /* the line starts from the same mean */
    memcpy(st->cand + EST_TREND * le + at, st->cand + EST_MEAN * le + at,
           (size_t)E * sizeof(float));
    line_from_mean(w, le, at, E, first, n, st->acc,
                   st->cand + EST_TREND * le);
}

/* Whether candidate k's row at (E loads) equals candidate j's (whose
 * plans are then the same). */
static int same_row(const forecast_state *st, size_t le, size_t at, int E,
                    int j, int k)
{
    return memcmp(st->cand + (size_t)j * le + at,
                  st->cand + (size_t)k * le + at, (size_t)E * sizeof(float)) ==
           0;
}

/* The index of an earlier candidate with the same loads as candidate k
 * in every layer (whose plans are then the same), or -1. */
static int same_as_earlier(const forecast_state *st, size_t le, int k)
{
    for (int j = 0; j < k; j++)
        if (memcmp(st->cand + (size_t)j * le, st->cand + (size_t)k * le,
                   le * sizeof(float)) == 0)
            return j;
    return -1;
}

/* A layer's GPU loads of its plan p2l [P], cnt [E] on loads w [E]: the
 * largest and the mean, in double, slots in order. */
static void layer_loads(forecast_state *st, const plan_dims *d,
                        const float *w, const int32_t *p2l,
                        const int32_t *cnt, double *max, double *mean)
{
    (void)st;
    double sum = 0.0, mx = 0.0;
    for (int g = 0; g < d->M; g++) {
        double s = 0.0;
        for (int k = 0; k < d->ppg; k++) {
            int e = p2l[g * d->ppg + k];
            s += (double)w[e] / cnt[e];
        }
        sum += s;
        mx = s > mx ? s : mx;
    }
    *max = mx;
    *mean = sum / d->M;
}

/* The estimator with the highest of score[k * stride], ties to the
 * lowest index (the simplest). */
static int best_estimator(const double *score, size_t stride)
{
    int best = EST_LAST;
    for (int k = EST_LAST + 1; k < NEST; k++)
        if (score[(size_t)k * stride] > score[(size_t)best * stride])
            best = k;
    return best;
}

/* Per layer, the estimator with the highest st->score. */
static void choose(forecast_state *st, int L)
{
    for (int l = 0; l < L; l++)
        st->choice[l] = best_estimator(st->score + l, (size_t)L);
}

/* A shift: a sample that moved at least SHIFT_MIN of a layer's traffic
 * from the sample before, and SHIFT_RATIO times what the median of the
 * SHIFT_PAST steps before it moved (a step: the L1 distance of two
 * samples' shares, in [0, 2]). The samples before a shift belong to the
 * regime it ended: the adaptive choice estimates and scores a layer from
 * its newest shift on (the newest sample alone when the shift is the
 * newest). Under 1-5% noise per window a step moves 0.5-4% of the
 * traffic, a burst of four experts at ten times their load about 25%
 * when it starts and again when it ends, and a drift or files in turn
 * move alike from step to step. */
#define SHIFT_MIN 0.10
#define SHIFT_RATIO 4.0
#define SHIFT_PAST 3

/* Layer l's steps into samples first..X-1 (steps[i]: into sample
 * first + i): the step from sample s - 1 to s is sum_e |a_e/A - b_e/B|,
 * 0 when either sample of the layer is all zero. Each sample's shares
 * are divided once, kept in share [E] for the step after. */
static void layer_steps(const plan_dims *d, const eplb_request *r, int l,
                        int first, double *steps, double *share)
{
    int X = r->num_windows, E = d->E;
    size_t le = (size_t)d->L * E, at = (size_t)l * E;
    const float *a = r->windows + (size_t)(first - 1) * le + at;
    double sa = 0.0;
    for (int e = 0; e < E; e++)
        sa += a[e];
    if (sa > 0.0)
        for (int e = 0; e < E; e++)
            share[e] = a[e] / sa;
    for (int s = first; s < X; s++) {
        const float *b = r->windows + (size_t)s * le + at;
        double sb = 0.0, step = 0.0;
        for (int e = 0; e < E; e++)
            sb += b[e];
        if (sa > 0.0 && sb > 0.0) {
            for (int e = 0; e < E; e++) {
                double q = b[e] / sb;
                step += fabs(share[e] - q);
                share[e] = q;
            }
        } else if (sb > 0.0) {
            for (int e = 0; e < E; e++)
                share[e] = b[e] / sb;
        }
        steps[s - first] = step;
        sa = sb;
    }
}

/* The newest shift among layer l's newest `horizon` samples, else 0:
 * the sample its estimates start from. A shift is a sample s >= SHIFT_PAST
 * + 1 (it needs the steps before it), so X <= SHIFT_PAST + 1 samples have
 * none. steps: scratch of horizon + SHIFT_PAST doubles, share of E. */
static int layer_shift(const plan_dims *d, const eplb_request *r, int l,
                       int horizon, double *steps, double *share)
{
    int X = r->num_windows, lo = X - horizon;
    if (lo < SHIFT_PAST + 1)
        lo = SHIFT_PAST + 1;
    if (lo > X - 1)
        return 0;
    /* steps[i]: the step into sample lo - SHIFT_PAST + i */
    int first = lo - SHIFT_PAST;
    layer_steps(d, r, l, first, steps, share);
    for (int s = X - 1; s >= lo; s--) {
        double newest = steps[s - first], past[SHIFT_PAST];
        if (!(newest >= SHIFT_MIN))
            continue;
        for (int k = 0; k < SHIFT_PAST; k++) {
            /* insertion sort of the steps before it */
            double v = steps[s - first - 1 - k];
            int at = k;
            while (at > 0 && past[at - 1] > v) {
                past[at] = past[at - 1];
                at--;
            }
            past[at] = v;
        }
        if (newest > SHIFT_RATIO * past[SHIFT_PAST / 2])
            return s;
    }
    return 0;
}

/* The adaptive choice: for each of the newest `lookback` samples s + 1
 * (s + 1 >= 1), each estimator's loads from samples 0..s planned by the
 * deterministic planner (DeepSeek's algorithm: a cheap stand-in for the
 * context's plan, the same on every backend), each layer scored by its
 * balancedness (mean / largest GPU load) on sample s + 1; the scores
 * summed over s, the best estimator's loads from every sample taken. A
 * layer's estimates and scores start at its newest shift (st->start)
 * among the samples they read. Layers are independent: the context's
 * host threads take them one at a time, each layer planned in its
 * worker's workspace. */
typedef struct adaptive_run {
    forecast_state *st;
    const plan_dims *d;
    const eplb_request *r;
    int lookback; /* the rounds scored: min(lookback, X - 1) */
    int horizon;  /* the newest samples the estimates and scores read */
} adaptive_run;

static void adaptive_layer(void *arg, int worker, int l)
{
    const adaptive_run *a = arg;
    forecast_state *st = a->st;
    const plan_dims *d = a->d;
    const eplb_request *r = a->r;
    int X = r->num_windows, L = d->L, E = d->E, S = a->lookback;
    size_t le = (size_t)L * E, at = (size_t)l * E;
    const pack_params det = {1, 0, 0.0f, 0};
    reference_run plan = {&st->ref, d, &det, NULL, st->p2l, NULL, st->cnt};
    /* (acc's row: the shares' scratch, before the estimates use it) */
    int start = layer_shift(d, r, l, a->horizon,
                            st->steps + (size_t)l * (a->horizon + SHIFT_PAST),
                            st->acc + at);
    double score[NEST] = {0.0}, round[NEST];
    st->start[l] = start;
    for (int s = 0; s < X; s++) {
        ewma_row(st->ewma + at, r->windows + (size_t)s * le + at, E,
                 s <= start, r->forecast_alpha);
        /* plans from samples 0..s, scored on sample s + 1 */
        if (s + 1 >= X || s + 1 < X - S)
            continue;
        candidates_row(st, r, L, E, l, start, s + 1);
        const float *next = r->windows + (size_t)(s + 1) * le + at;
        for (int k = 0; k < NEST; k++) {
            int j = 0;
            while (j < k && !same_row(st, le, at, E, j, k))
                j++;
            if (j < k) {
                /* the same loads plan the same: the same score */
                round[k] = round[j];
                continue;
            }
            plan.weight = st->cand + (size_t)k * le;
            reference_plan_layer(&plan, worker, l);
            double mx, mean;
            layer_loads(st, d, next, st->p2l + (size_t)l * d->P,
                        st->cnt + at, &mx, &mean);
            round[k] = mx > 0.0 ? mean / mx : 1.0;
        }
        /* a round from before the layer's shift does not count */
        if (s >= start)
            for (int k = 0; k < NEST; k++)
                score[k] += round[k];
    }
    int best = best_estimator(score, 1);
    st->choice[l] = best;
    candidates_row(st, r, L, E, l, start, X);
    memcpy(st->est + at, st->cand + (size_t)best * le + at,
           (size_t)E * sizeof(float));
}

static int adaptive(forecast_state *st, const plan_dims *d,
                    const eplb_request *r)
{
    int X = r->num_windows;
    adaptive_run a = {st, d, r, 0, 0};
    a.lookback = lookback(r, 0) < X - 1 ? lookback(r, 0) : X - 1;
    /* the samples the means, lines and scores read: the oldest scored
     * round's newest K, and the samples scored (the weighted mean reads
     * every sample; what came before the horizon has faded in it) */
    a.horizon = r->forecast_k < X ? r->forecast_k : X;
    a.horizon = a.horizon + a.lookback < X ? a.horizon + a.lookback : X;
    if (grow((void **)&st->steps, &st->steps_cap,
             (size_t)d->L * (a.horizon + SHIFT_PAST), sizeof(double)))
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory for "
                          "the forecast's %d samples", a.horizon);
    int workers = reference_reserve(&st->ref, st->threads, d);
    if (workers < 0)
        return workers;
    eplbi_parallel_items(&st->threads->pool, workers, d->L, adaptive_layer,
                         &a);
    return EPLB_OK;
}

/* The worst over samples X-R..X-1 of layer l's largest GPU load over its
 * mean GPU load, for the layer's plan p2l [P], cnt [E]. */
static double layer_worst(forecast_state *st, const plan_dims *d,
                          const eplb_request *r, int R, int l,
                          const int32_t *p2l, const int32_t *cnt,
                          double *spread)
{
    int X = r->num_windows;
    size_t le = (size_t)d->L * d->E;
    double worst = 1.0, best = INFINITY;
    for (int s = X - R; s < X; s++) {
        double mx, mean;
        layer_loads(st, d, r->windows + (size_t)s * le + (size_t)l * d->E,
                    p2l, cnt, &mx, &mean);
        double ratio = mean > 0.0 ? mx / mean : 1.0;
        worst = ratio > worst ? ratio : worst;
        best = ratio < best ? ratio : best;
    }
    if (spread)
        *spread = worst - best;
    return worst;
}

/* The robust choice: each estimator's loads from all samples planned by
 * the context's backend; per layer, the largest GPU load over the mean
 * GPU load on each of the newest `lookback` samples, its worst (largest)
 * kept; the estimator with the lowest worst case wins. With may_keep, the
 * request's current plan is judged alike, and a layer whose current
 * placement's worst case is no higher than the winner's keeps it
 * (st->keep). */
static int robust(forecast_state *st, const plan_dims *d,
                  const eplb_request *r, const planner *pl, int may_keep)
{
    int X = r->num_windows, L = d->L;
    size_t le = (size_t)L * d->E;
    int R = lookback(r, 1) < X ? lookback(r, 1) : X;
    for (int k = 0; k < NEST; k++) {
        double *sc = st->score + (size_t)k * L;
        int j = same_as_earlier(st, le, k);
        if (j >= 0) {
            /* the same loads plan the same: copy the earlier scores */
            memcpy(sc, st->score + (size_t)j * L, (size_t)L * sizeof(double));
            memcpy(st->spread + (size_t)k * L, st->spread + (size_t)j * L,
                   (size_t)L * sizeof(double));
            continue;
        }
        int rc = pl->plan(pl->self, d, st->cand + (size_t)k * le, st->p2l,
                          NULL, st->cnt);
        if (rc)
            return rc;
        for (int l = 0; l < L; l++)
            sc[l] = -layer_worst(st, d, r, R, l, st->p2l + (size_t)l * d->P,
                                 st->cnt + (size_t)l * d->E,
                                 st->spread + (size_t)k * L + l);
    }
    choose(st, L);
    if (!may_keep) /* st->keep: cleared by forecast_run */
        return EPLB_OK;
    for (int l = 0; l < L; l++) {
        const int32_t *cur = r->current_phy2log + (size_t)l * d->P;
        int32_t *cnt = st->cnt + (size_t)l * d->E;
        if (!plan_layer_keepable(d, cur, 0, cnt))
            continue;
        size_t b = (size_t)st->choice[l] * L + l;
        st->keep[l] = layer_worst(st, d, r, R, l, cur, cnt, NULL) <=
                      -st->score[b] + st->spread[b];
    }
    return EPLB_OK;
}

int forecast_run(forecast_state **stp, const plan_dims *d,
                 eplbi_threads *threads,
                 const eplb_request *r, const planner *pl, int may_keep,
                 const float **loads, const int32_t **choice)
{
    int rc = state_reserve(stp, d);
    if (rc)
        return rc;
    forecast_state *st = *stp;
    st->threads = threads;
    int X = r->num_windows, L = d->L, E = d->E;
    size_t le = (size_t)L * E;
    int mode = r->forecast == EPLB_FORECAST_AUTO ? EPLB_FORECAST_DEFAULT
                                                 : r->forecast;
    const float *w = r->windows;
    memset(st->keep, 0, (size_t)L);
    if (mode == EPLB_FORECAST_LAST || mode == EPLB_FORECAST_MEAN ||
        mode == EPLB_FORECAST_TREND) {
        estimate_all(st, w, L, E, X,
                     mode == EPLB_FORECAST_LAST ? 1 : r->forecast_k,
                     mode == EPLB_FORECAST_TREND, st->est);
        for (int l = 0; l < L; l++)
            st->choice[l] = mode - EPLB_FORECAST_LAST;
    } else if (mode == EPLB_FORECAST_ADAPTIVE) {
        /* est and choice, layer by layer */
        if ((rc = adaptive(st, d, r)) != EPLB_OK)
            return rc;
    } else {
        /* the weighted mean runs over every sample */
        for (int l = 0; l < L; l++)
            for (int s = 0; s < X; s++)
                ewma_row(st->ewma + (size_t)l * E,
                         w + (size_t)s * le + (size_t)l * E, E, s == 0,
                         r->forecast_alpha);
        if (mode == EPLB_FORECAST_EWMA) {
            for (size_t i = 0; i < le; i++)
                st->est[i] = (float)st->ewma[i];
            for (int l = 0; l < L; l++)
                st->choice[l] = EST_EWMA;
        } else {
            for (int l = 0; l < L; l++)
                candidates_row(st, r, L, E, l, 0, X);
            if ((rc = robust(st, d, r, pl, may_keep)) != EPLB_OK)
                return rc;
            for (int l = 0; l < L; l++)
                memcpy(st->est + (size_t)l * E,
                       st->cand + (size_t)st->choice[l] * le + (size_t)l * E,
                       (size_t)E * sizeof(float));
        }
    }
    /* the caller sees the API's estimator ids */
    for (int l = 0; l < L; l++)
        st->choice[l] = st->keep[l] ? EPLB_FORECAST_KEPT
                                    : st->choice[l] + EPLB_FORECAST_LAST;
    *loads = st->est;
    *choice = st->choice;
    return EPLB_OK;
}
