/* eplb-bench's next-window section: a plan is made from the windows seen
 * so far and serves the window that comes. On series of windows (series.c:
 * two recorded files drifting into each other, files in turn with noise, a
 * burst, pure noise, and the generator's drift), for each window t the
 * plan is made from windows 0..t and judged on window t + 1, for each way
 * of turning the windows into the loads planned: the last window (what a
 * plan of the newest counts does), the sum of all windows (vLLM's summed
 * expert_load_window), and the library's estimators (eplb_request's
 * forecast). Each way is planned fresh and re-planned from its own plan
 * of the window before (copies by eplb_copies), every layer to its
 * target (min_gain 0); on pure noise the last window and the default
 * estimator again with min_gain at its default, as a user's defaults
 * re-plan. Then the estimators' own time against a fresh plan's. The
 * section measures; it checks nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "timing.h"

/* The columns: how the windows 0..t become the loads planned. */
enum { C_LAST, C_SUM, C_MEAN, C_EWMA, C_TREND, C_ADAPT, C_ROBUST, NC };
static const char *const cnames[NC] = {"last", "sum", "mean", "ewma",
                                       "trend", "adaptive", "robust"};
static const eplb_forecast cmode[NC] = {
    EPLB_FORECAST_LAST, EPLB_FORECAST_LAST, EPLB_FORECAST_MEAN,
    EPLB_FORECAST_EWMA, EPLB_FORECAST_TREND, EPLB_FORECAST_ADAPTIVE,
    EPLB_FORECAST_ROBUST};

#define MAXW SERIES_MAX_WINDOWS

/* One column's figures over the judged windows (t = 1 .. W - 2). */
typedef struct fstats {
    double fresh_next; /* sum of the fresh plan's balancedness on t + 1 */
    double replan_next; /* the re-plan's */
    double copies;      /* the re-plans' copies, summed */
    int n;
} fstats;

/* Indexes of bench_files. */
enum { F_DECODE_1000 = 0, F_PREFILL_1000 = 4 };

/* The plan of column c for windows 0..t of sr into p: from `current`
 * when not NULL, under min_gain (0: every layer to its target, the
 * estimators' own effect). */
static void plan_column(eplb_context *ctx, const series *sr, int c, int t,
                        float *sum, const int32_t *current, float min_gain,
                        plan_buf *p)
{
    const eplb_shape *s = &sr->s;
    eplb_request req;
    eplb_request_default(&req);
    req.current_phy2log = current;
    req.min_gain = min_gain;
    const float *w = NULL;
    if (c == C_LAST) {
        w = sr->w[t];
    } else if (c == C_SUM) {
        /* vLLM's way: the window's samples summed (in float, oldest
         * first, as torch's sum of float counts would) */
        size_t n = (size_t)s->layers * s->experts;
        memcpy(sum, sr->w[0], n * sizeof(float));
        for (int k = 1; k <= t; k++)
            for (size_t i = 0; i < n; i++)
                sum[i] += sr->w[k][i];
        w = sum;
    } else {
        /* the series keeps each window apart: gathered into the
         * request's [X][L][E] */
        size_t n = (size_t)s->layers * s->experts;
        float *all = xmalloc((size_t)(t + 1) * n * sizeof(float));
        for (int k = 0; k <= t; k++)
            memcpy(all + (size_t)k * n, sr->w[k], n * sizeof(float));
        req.windows = all;
        req.num_windows = t + 1;
        req.forecast = cmode[c];
        if (eplb_plan(ctx, s, NULL, &req, p->phy2log, p->log2phy,
                      p->logcnt))
            die("plan (forecast)");
        free(all);
        return;
    }
    if (eplb_plan(ctx, s, w, &req, p->phy2log, p->log2phy, p->logcnt))
        die("plan");
}

static long copies_between(const eplb_shape *s, const int32_t *a,
                           const int32_t *b)
{
    long n;
    if (eplb_copies(s, a, b, NULL, &n))
        die("copies");
    return n;
}

static void plan_copy(plan_buf *d, const plan_buf *p, const eplb_shape *s)
{
    size_t a, b, c;
    if (eplb_plan_sizes(s, &a, &b, &c))
        die("plan sizes");
    memcpy(d->phy2log, p->phy2log, a * 4);
    memcpy(d->log2phy, p->log2phy, b * 4);
    memcpy(d->logcnt, p->logcnt, c * 4);
}

/* Column c for windows 0..t of sr re-planned from its plan of the window
 * before, *cur, under min_gain: the copies added to *copies, the
 * balancedness on window t + 1 to *next; the new plan becomes *cur (p is
 * scratch, swapped with it). */
static void replan_column(eplb_context *ctx, const series *sr, int c, int t,
                          float *sum, float min_gain, plan_buf *cur,
                          plan_buf *p, double *copies, double *next)
{
    plan_column(ctx, sr, c, t, sum, cur->phy2log, min_gain, p);
    *copies += copies_between(&sr->s, cur->phy2log, p->phy2log);
    *next += balancedness(&sr->s, sr->w[t + 1], p);
    plan_buf tmp = *cur;
    *cur = *p;
    *p = tmp;
}

/* One series under one policy: the table's rows, and each column's mean
 * next-window balancedness (fresh and re-planned) and copies for the
 * summary. */
static void run_series(bench *b, const series *sr, const eplb_options *o,
                       const char *policy, fstats *st)
{
    const eplb_shape *s = &sr->s;
    int W = sr->windows;
    eplb_context *ctx;
    if (eplb_context_create(&ctx, o))
        die("context");
    plan_buf cur[NC], p;
    for (int c = 0; c < NC; c++)
        plan_alloc(&cur[c], s);
    plan_alloc(&p, s);
    float *sum = xmalloc((size_t)s->layers * s->experts * sizeof(float));
    memset(st, 0, NC * sizeof *st);
    /* every column starts from the plan of window 0 */
    plan_column(ctx, sr, C_LAST, 0, sum, NULL, 0.0f, &cur[0]);
    for (int c = 1; c < NC; c++)
        plan_copy(&cur[c], &cur[0], s);
    for (int t = 1; t + 1 < W; t++) {
        fprintf(stderr, "\rforecast: %-48.48s window %d/%d", sr->name, t,
                W - 2);
        for (int c = 0; c < NC; c++) {
            plan_column(ctx, sr, c, t, sum, NULL, 0.0f, &p);
            st[c].fresh_next += balancedness(s, sr->w[t + 1], &p);
            replan_column(ctx, sr, c, t, sum, 0.0f, &cur[c], &p,
                          &st[c].copies, &st[c].replan_next);
            st[c].n++;
        }
    }
    progress_clear();
    long slots = (long)s->layers * s->num_replicas;
    printf("\n%s, %s (%d windows)\n", sr->name, policy, W);
    printf("%-10s %9s %9s %9s %9s %8s\n", "loads", "fresh.nx", "d.last",
           "replan.nx", "d.last", "copies%");
    for (int c = 0; c < NC; c++) {
        fstats *x = &st[c];
        double fn = x->fresh_next / x->n, rn = x->replan_next / x->n;
        double f0 = st[C_LAST].fresh_next / st[C_LAST].n,
               r0 = st[C_LAST].replan_next / st[C_LAST].n;
        double cp = 100.0 * x->copies / ((double)slots * x->n);
        printf("%-10s %9.4f %+9.4f %9.4f %+9.4f %8.2f\n", cnames[c], fn,
               fn - f0, rn, rn - r0, cp);
        json_record(b, "{\"kind\":\"forecast\",\"series\":\"%s\","
                    "\"series_kind\":\"%s\",\"policy\":\"%s\","
                    "\"windows\":%d,\"loads\":\"%s\","
                    "\"balancedness_next_fresh\":%.6f,"
                    "\"balancedness_next_replan\":%.6f,"
                    "\"copies_pct\":%.4f}", sr->name, sr->kind, policy, W,
                    cnames[c], fn, rn, cp);
    }
    free(sum);
    for (int c = 0; c < NC; c++)
        plan_free(&cur[c]);
    plan_free(&p);
    eplb_context_destroy(ctx);
}

/* The last window and the default estimator re-planned as a user's
 * defaults do it, with min_gain at its default (a layer that would gain
 * less keeps its placement), on series sr: copies in % of slots per
 * window and next-window balancedness, each column from its own plan of
 * the window before, as run_series does. */
static void run_min_gain(bench *b, const series *sr, const eplb_options *o,
                         const char *policy)
{
    const eplb_shape *s = &sr->s;
    int W = sr->windows;
    const int cols[2] = {C_LAST, C_ADAPT};
    eplb_context *ctx;
    if (eplb_context_create(&ctx, o))
        die("context");
    plan_buf cur[2], p;
    for (int i = 0; i < 2; i++)
        plan_alloc(&cur[i], s);
    plan_alloc(&p, s);
    float *sum = xmalloc((size_t)s->layers * s->experts * sizeof(float));
    double copies[2] = {0, 0}, next[2] = {0, 0};
    int n = 0;
    plan_column(ctx, sr, C_LAST, 0, sum, NULL, 0.0f, &cur[0]);
    plan_copy(&cur[1], &cur[0], s);
    for (int t = 1; t + 1 < W; t++, n++)
        for (int i = 0; i < 2; i++)
            replan_column(ctx, sr, cols[i], t, sum, EPLB_MIN_GAIN_DEFAULT,
                          &cur[i], &p, &copies[i], &next[i]);
    long slots = (long)s->layers * s->num_replicas;
    printf("%s with min_gain at its default (%.2f): copies%% last %.2f, "
           "adaptive %.2f (%.2fx); next-window balancedness last %.4f, "
           "adaptive %.4f\n", sr->kind, (double)EPLB_MIN_GAIN_DEFAULT,
           100.0 * copies[0] / ((double)slots * n),
           100.0 * copies[1] / ((double)slots * n),
           copies[0] > 0 ? copies[1] / copies[0] : 0.0, next[0] / n,
           next[1] / n);
    json_record(b, "{\"kind\":\"forecast_min_gain\",\"series\":\"%s\","
                "\"policy\":\"%s\",\"min_gain\":%.3f,"
                "\"copies_pct_last\":%.4f,\"copies_pct_adaptive\":%.4f,"
                "\"balancedness_next_last\":%.6f,"
                "\"balancedness_next_adaptive\":%.6f}",
                sr->name, policy, (double)EPLB_MIN_GAIN_DEFAULT,
                100.0 * copies[0] / ((double)slots * n),
                100.0 * copies[1] / ((double)slots * n), next[0] / n,
                next[1] / n);
    free(sum);
    for (int i = 0; i < 2; i++)
        plan_free(&cur[i]);
    plan_free(&p);
    eplb_context_destroy(ctx);
}

/* The estimators' time (eplb_forecast_loads) against a fresh plan of the
 * loads they give, on windows 0..W-1 of sr, medians in microseconds. */
static void time_estimators(bench *b, const series *sr, const eplb_options *o,
                            const char *policy)
{
    const eplb_shape *s = &sr->s;
    int X = sr->windows;
    size_t n = (size_t)s->layers * s->experts;
    float *all = xmalloc((size_t)X * n * sizeof(float));
    for (int k = 0; k < X; k++)
        memcpy(all + (size_t)k * n, sr->w[k], n * sizeof(float));
    float *est = xmalloc(n * sizeof(float));
    eplb_context *ctx;
    if (eplb_context_create(&ctx, o))
        die("context");
    plan_buf p;
    plan_alloc(&p, s);
    int runs = b->quick ? 3 : 9;
    double t[16], fresh_us;
    time_calls(ctx, s, sr->w[X - 1], NULL, &p, runs + 1, t);
    fresh_us = median(t + 1, runs);
    printf("\nestimator time, %s, %d windows of %dx%d (a fresh plan: %.0f "
           "us)\n", policy, X, s->layers, s->experts, fresh_us);
    for (int c = C_MEAN; c < NC; c++) {
        eplb_request req;
        eplb_request_default(&req);
        req.windows = all;
        req.num_windows = X;
        req.forecast = cmode[c];
        for (int r = 0; r <= runs; r++) {
            double t0 = timing_now_us();
            if (eplb_forecast_loads(ctx, s, &req, est, NULL))
                die("forecast");
            t[r] = timing_now_us() - t0;
        }
        double us = median(t + 1, runs);
        printf("  %-9s %9.0f us  %6.1f%% of a fresh plan\n", cnames[c], us,
               100.0 * us / fresh_us);
        json_record(b, "{\"kind\":\"forecast_time\",\"policy\":\"%s\","
                    "\"windows\":%d,\"estimator\":\"%s\",\"us\":%.1f,"
                    "\"fresh_us\":%.1f}", policy, X, cnames[c], us, fresh_us);
    }
    plan_free(&p);
    eplb_context_destroy(ctx);
    free(est);
    free(all);
}

/* The series names of the summary. */
#define NSERIES 5

void forecast_section(bench *b, const eplb_options *o)
{
    int quick = b->quick;
    int W = quick ? 5 : MAXW;
    const eplb_shape shapes[2] = {
        {GEN_LAYERS, GEN_EXPERTS, 288, 8, 4, 32},  /* hierarchical */
        {GEN_LAYERS, GEN_EXPERTS, 288, 8, 18, 144} /* global */
    };
    const char *policies[2] = {"hierarchical P=288 G=8 N=4 M=32",
                               "global P=288 M=144"};
    eplb_context *probe;
    if (eplb_context_create(&probe, o))
        die("context");
    printf("\n## Next window: plans made from windows 0..t, judged on "
           "window t + 1\n"
           "(fresh.nx: a fresh plan's balancedness on the next window, "
           "mean over t; replan.nx: re-planned from the same column's plan "
           "of the window before; copies%%: the re-plans' expert copies in "
           "%% of slots per window; d.last: against planning on the last "
           "window; %s loads; %s on %s, %d candidates, %d swap rounds)\n",
           b->have_real ? "recorded" : "generated",
           eplb_context_backend(probe), eplb_context_device(probe),
           o->candidates, o->swap_rounds);
    eplb_context_destroy(probe);
    bench gen = *b;
    gen.have_real = 0; /* the generator's drift */
    int n_pol = quick ? 1 : 2;
    static const int seq[MAXW] = {0, 4, 1, 5, 2, 6, 3, 7, 0, 4, 1, 5};
    int same[MAXW];
    for (int i = 0; i < MAXW; i++)
        same[i] = F_DECODE_1000;
    const char *snames[NSERIES] = {"drift", "files", "burst", "noise",
                                   "gen.drift"};
    for (int pi = 0; pi < n_pol; pi++) {
        fstats all[NSERIES][NC];
        int ns = 0;
        for (int k = 0; k < NSERIES; k++) {
            if (quick && (k == 1 || k == 4))
                continue;
            series sr;
            switch (k) {
            case 0:
                series_drift(b, &sr, F_PREFILL_1000, F_DECODE_1000, W,
                             &shapes[pi]);
                break;
            case 1:
                series_files(b, &sr, seq, W, &shapes[pi]);
                snprintf(sr.name, sizeof sr.name, "8 files in turn (prefill "
                         "and decode alternating), 1-5%% noise");
                break;
            case 2:
                series_burst(b, &sr, F_DECODE_1000, W, W / 2, 4,
                             &shapes[pi]);
                break;
            case 3:
                series_files(b, &sr, same, W, &shapes[pi]);
                snprintf(sr.name, sizeof sr.name, "pure noise: %s, 1-5%% "
                         "noise per window", bench_files[F_DECODE_1000]);
                sr.kind = "noise";
                break;
            default:
                series_drift(&gen, &sr, F_PREFILL_1000, F_DECODE_1000, W,
                             &shapes[pi]);
                break;
            }
            run_series(b, &sr, o, policies[pi], all[k]);
            if (k == 3)
                run_min_gain(b, &sr, o, policies[pi]);
            if (k == 0)
                time_estimators(b, &sr, o, policies[pi]);
            series_free(&sr);
            ns++;
        }
        /* the summary: each column against the last window, over the
         * series */
        printf("\nsummary, %s: next-window balancedness against planning "
               "on the last window (mean over the series, the worst "
               "series), copies against re-planning on the last window\n",
               policies[pi]);
        printf("%-10s %9s %9s %9s %9s %9s\n", "loads", "fresh.d", "worst",
               "replan.d", "worst", "copies");
        for (int c = 0; c < NC; c++) {
            double fd = 0, rd = 0, fw = INFINITY, rw = INFINITY;
            double cp = 0, cp0 = 0;
            for (int k = 0; k < NSERIES; k++) {
                if (quick && (k == 1 || k == 4))
                    continue;
                fstats *x = &all[k][c], *l = &all[k][C_LAST];
                double f = x->fresh_next / x->n - l->fresh_next / l->n;
                double r = x->replan_next / x->n - l->replan_next / l->n;
                fd += f;
                rd += r;
                fw = f < fw ? f : fw;
                rw = r < rw ? r : rw;
                cp += x->copies;
                cp0 += l->copies;
            }
            printf("%-10s %+9.4f %+9.4f %+9.4f %+9.4f %8.2fx\n", cnames[c],
                   fd / ns, fw, rd / ns, rw, cp0 > 0 ? cp / cp0 : 0.0);
        }
        for (int k = 0; k < NSERIES; k++) {
            if (strcmp(snames[k], "noise") != 0)
                continue;
            printf("pure noise, copies against the last window's re-plans:");
            for (int c = 0; c < NC; c++)
                printf(" %s %.2fx", cnames[c],
                       all[k][C_LAST].copies > 0
                           ? all[k][c].copies / all[k][C_LAST].copies
                           : 0.0);
            printf("\n");
        }
    }
}
