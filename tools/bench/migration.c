/* eplb-bench's re-plan section, its migration part: how much of a
 * re-plan's gain the first copies buy, per series (series.c), window by
 * window from the tolerance-0 re-plan chain's plan in service.
 *
 * The objective is what an engine pays per step: the sum over layers of
 * the largest GPU load. Per window the section compares
 *   - gain curves (objective removed against cumulative copies, in % of
 *     the whole re-plan's gain, read at 10/25/50% of its copies): the
 *     library's staged schedule (stages of 1 copy per GPU), whole layers
 *     in index order (vLLM's layer-by-layer move), whole layers by gain
 *     per copy (the schedule's layer_order);
 *   - budgets of 1, 2, 4, 8 copies per GPU: the library's budgeted plan
 *     against a greedy baseline written here (repeatedly the one copy
 *     that lowers the objective most), as the issue defines it (a slot
 *     that took a copy may take another, each counted) and under the
 *     library's rule (a slot rewritten once: only a slot that still
 *     holds its expert in service takes a copy);
 *   - min_gain: each value's own chain of windows (copies, balancedness
 *     on the window and on the next one), the figures the default is
 *     chosen from.
 * Everything here is measured, nothing asserted but validity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "greedy_baseline.h"
#include "timing.h"

static const int budgets[] = {1, 2, 4, 8};
#define NBUD 4
static const float gains[] = {0.0f, 0.002f, 0.005f, 0.01f, 0.02f};
#define NGAIN 5
static const double marks[] = {0.10, 0.25, 0.50};
#define NMARK 3

/* Sum over layers of the largest live GPU load of (p2l, cnt) on w. */
static double objective(const eplb_shape *s, const float *w,
                        const int32_t *p2l, const int32_t *cnt,
                        const uint8_t *mask, double *gl)
{
    if (eplb_gpu_loads(s, w, p2l, cnt, gl))
        die("gpu loads");
    double obj = 0.0;
    int M = s->num_gpus;
    for (int l = 0; l < s->layers; l++) {
        double peak = 0.0;
        for (int g = 0; g < M; g++)
            if ((!mask || mask[g]) && gl[(size_t)l * M + g] > peak)
                peak = gl[(size_t)l * M + g];
        obj += peak;
    }
    return obj;
}

/* Gain reached with at most `budget` cumulative copies along a curve of
 * n points (copies ascending, gain at each). */
static double gain_at(const double *copies, const double *gain, int n,
                      double budget)
{
    double best = 0.0;
    for (int i = 0; i < n; i++)
        if (copies[i] <= budget + 1e-9 && gain[i] > best)
            best = gain[i];
    return best;
}

/* A row of the budget table: gains (summed shares, printed in % of n
 * windows) or, with gain NULL, window counts. */
static void budget_row(const char *label, const double *gain,
                       const int *count, int n)
{
    printf("%-19s", label);
    for (int k = 0; k < NBUD; k++)
        if (gain)
            printf(" %7.1f", 100 * gain[k] / n);
        else
            printf(" %7d", count[k]);
    printf("\n");
}

/* ---- the series ------------------------------------------------------- */

typedef struct mig_stats {
    int n;                      /* windows with a gain */
    double staged[NMARK], index_order[NMARK], sorted[NMARK];
    double first25;             /* staged: share of gain at 25% of copies */
    double worst25;             /* its smallest over the windows */
    double ours[NBUD], greedy[NBUD], greedy1[NBUD]; /* share of the full
                                   gain; greedy1: a slot rewritten once */
    int ours_worse[NBUD], ours_worse1[NBUD]; /* windows where the greedy
                                                did better */
    double us_full, us_budget;  /* median re-plan times */
} mig_stats;

/* A plan with a schedule from cur on w; returns the schedule's figures in
 * sc (arrays allocated by the caller). */
static void plan_staged(eplb_context *ctx, const eplb_shape *s,
                        const float *w, const int32_t *cur,
                        const uint8_t *mask, int budget, int per_stage,
                        float min_gain, eplb_schedule *sc, plan_buf *out)
{
    eplb_request req;
    eplb_request_default(&req);
    req.current_phy2log = cur;
    req.gpu_mask = mask;
    req.max_copies_per_gpu = budget;
    req.stage_copies_per_gpu = per_stage;
    req.min_gain = min_gain;
    req.schedule = sc;
    if (eplb_plan(ctx, s, w, &req, out->phy2log, out->log2phy, out->logcnt))
        die("plan with a schedule");
}

static void migration_series(bench *b, const series *sr,
                             const eplb_options *mode)
{
    const eplb_shape *s = &sr->s;
    int W = sr->windows, L = s->layers, M = s->num_gpus;
    size_t slots = (size_t)L * s->num_replicas;
    eplb_options o = deterministic(mode);
    o.tolerance = 0.0f;
    eplb_context *ctx;
    if (eplb_context_create(&ctx, &o))
        die("context");
    plan_buf cur, out, gchain[NGAIN];
    plan_alloc(&cur, s);
    plan_alloc(&out, s);
    for (int k = 0; k < NGAIN; k++)
        plan_alloc(&gchain[k], s);
    double *gl = xmalloc((size_t)L * M * sizeof(double));
    eplb_schedule sc;
    memset(&sc, 0, sizeof sc);
    sc.struct_size = sizeof sc;
    sc.max_stages = (int32_t)slots + 1;
    sc.stages = xmalloc((size_t)sc.max_stages * sizeof(eplb_stage));
    sc.layer_gain = xmalloc((size_t)L * sizeof(double));
    sc.layer_copies = xmalloc((size_t)L * sizeof(int32_t));
    sc.layer_order = xmalloc((size_t)L * sizeof(int32_t));
    double *cc = xmalloc((slots + 2) * sizeof(double));
    double *cg = xmalloc((slots + 2) * sizeof(double));
    double *t_full = xmalloc((size_t)W * sizeof(double));
    double *t_bud = xmalloc((size_t)W * sizeof(double));
    mig_stats st;
    memset(&st, 0, sizeof st);
    st.worst25 = INFINITY;
    double g_copies[NGAIN] = {0}, g_bal[NGAIN] = {0}, g_next[NGAIN] = {0};
    int g_nx = 0;

    if (eplb_rebalance_from(ctx, s, sr->w[0], NULL, series_mask(sr, 0),
                            cur.phy2log, cur.log2phy, cur.logcnt))
        die("rebalance");
    for (int k = 0; k < NGAIN; k++) {
        memcpy(gchain[k].phy2log, cur.phy2log, slots * 4);
        memcpy(gchain[k].logcnt, cur.logcnt, (size_t)L * s->experts * 4);
    }
    int nt = 0;
    for (int t = 1; t < W; t++) {
        const float *w = sr->w[t];
        const uint8_t *mk = series_mask(sr, t);
        if (mk)
            break; /* the migration figures are of live GPUs only */
        double before = objective(s, w, cur.phy2log, cur.logcnt, mk, gl);
        /* the whole re-plan, staged one copy per GPU at a time */
        double t0 = timing_now_us();
        plan_staged(ctx, s, w, cur.phy2log, mk, -1, 1, 0.0f, &sc, &out);
        t_full[nt] = timing_now_us() - t0;
        double full = before - sc.objective_after;
        double total = (double)sc.copies;
        if (full > 0 && total > 0) {
            st.n++;
            /* staged curve */
            int n = 0;
            double cum = 0;
            for (int k = 0; k <= sc.num_stages; k++) {
                cum += k ? (double)sc.stages[k].copies : 0.0;
                cc[n] = cum;
                cg[n++] = before - sc.stages[k].objective;
            }
            for (int m = 0; m < NMARK; m++)
                st.staged[m] += gain_at(cc, cg, n, marks[m] * total) / full;
            double f25 = gain_at(cc, cg, n, 0.25 * total) / full;
            if (f25 < st.worst25)
                st.worst25 = f25;
            /* whole layers in index order, and by gain per copy (their
             * whole re-plans: layer_gain and layer_copies) */
            double lsum = 0, csum = 0;
            for (int l = 0; l < L; l++) {
                lsum += sc.layer_gain[l];
                csum += sc.layer_copies[l];
            }
            for (int order = 0; order < 2; order++) {
                n = 0;
                cc[n] = 0;
                cg[n++] = 0;
                double c = 0, g = 0;
                for (int i = 0; i < L; i++) {
                    int l = order ? sc.layer_order[i] : i;
                    c += sc.layer_copies[l];
                    g += sc.layer_gain[l];
                    cc[n] = c;
                    cg[n++] = g;
                }
                for (int m = 0; m < NMARK; m++) {
                    double v = lsum > 0 ? gain_at(cc, cg, n, marks[m] * csum)
                                              / lsum : 0;
                    if (order)
                        st.sorted[m] += v;
                    else
                        st.index_order[m] += v;
                }
            }
            /* budgets: ours against the greedy baseline */
            for (int k = 0; k < NBUD; k++) {
                t0 = timing_now_us();
                plan_staged(ctx, s, w, cur.phy2log, mk, budgets[k], 0, 0.0f,
                            NULL, &out);
                if (k == 0)
                    t_bud[nt] = timing_now_us() - t0;
                double ours = before - objective(s, w, out.phy2log,
                                                 out.logcnt, mk, gl);
                double gr = before - greedy_baseline_objective(s, w, cur.phy2log,
                                                      budgets[k], 0);
                double gr1 = before - greedy_baseline_objective(s, w, cur.phy2log,
                                                       budgets[k], 1);
                st.ours[k] += ours / full;
                st.greedy[k] += gr / full;
                st.greedy1[k] += gr1 / full;
                st.ours_worse[k] += ours < gr * (1 - 1e-9);
                st.ours_worse1[k] += ours < gr1 * (1 - 1e-9);
            }
        } else {
            t_bud[nt] = t_full[nt];
        }
        nt++;
        /* the chain goes on with the whole tolerance-0 re-plan */
        plan_staged(ctx, s, w, cur.phy2log, mk, -1, 0, 0.0f, NULL, &out);
        memcpy(cur.phy2log, out.phy2log, slots * 4);
        memcpy(cur.logcnt, out.logcnt, (size_t)L * s->experts * 4);
        /* min_gain: each value's own chain */
        for (int k = 0; k < NGAIN; k++) {
            plan_staged(ctx, s, w, gchain[k].phy2log, mk, -1, 0, gains[k],
                        NULL, &out);
            long c;
            if (eplb_copies(s, gchain[k].phy2log, out.phy2log, NULL, &c))
                die("copies");
            g_copies[k] += 100.0 * c / slots;
            memcpy(gchain[k].phy2log, out.phy2log, slots * 4);
            memcpy(gchain[k].logcnt, out.logcnt, (size_t)L * s->experts * 4);
            g_bal[k] += balancedness(s, w, &gchain[k]);
            if (t + 1 < W)
                g_next[k] += balancedness(s, sr->w[t + 1], &gchain[k]);
        }
        g_nx += t + 1 < W;
    }
    int nw = nt;
    printf("\n### %s: %dx%d P=%d N=%d M=%d, deterministic, %d windows\n",
           sr->name, L, s->experts, s->num_replicas, s->num_nodes, M, W);
    if (st.n) {
        printf("gain reached at       10%% copies  25%% copies  50%% "
               "copies  (mean over %d windows, in %% of the whole "
               "re-plan's gain)\n", st.n);
        const char *names[3] = {"staged schedule", "layers, index order",
                                "layers, gain/copy"};
        double *rows[3] = {st.staged, st.index_order, st.sorted};
        for (int r = 0; r < 3; r++)
            printf("%-20s %10.1f %12.1f %12.1f\n", names[r],
                   100 * rows[r][0] / st.n, 100 * rows[r][1] / st.n,
                   100 * rows[r][2] / st.n);
        printf("staged schedule, worst window at 25%% of its copies: "
               "%.1f%%\n", 100 * st.worst25);
        printf("budget per GPU          1       2       4       8   "
               "(gain in %% of the whole re-plan's)\n");
        budget_row("eplb_plan", st.ours, NULL, st.n);
        budget_row("greedy baseline", st.greedy, NULL, st.n);
        budget_row("windows greedy won", NULL, st.ours_worse, 0);
        budget_row("greedy, slot once", st.greedy1, NULL, st.n);
        budget_row("windows it won", NULL, st.ours_worse1, 0);
    }
    double mf = nw ? median(t_full, nw) : NAN,
           mb = nw ? median(t_bud, nw) : NAN;
    printf("time per call: re-plan with stages %.0f us, with a budget of 1 "
           "copy per GPU %.0f us\n", mf, mb);
    printf("min_gain      copies %%  bal.in   bal.nx   (own chain of "
           "windows)\n");
    for (int k = 0; k < NGAIN && nw; k++)
        printf("%-10.3f %9.2f  %7.4f  %7.4f%s\n", gains[k],
               g_copies[k] / nw, g_bal[k] / nw,
               g_nx ? g_next[k] / g_nx : NAN,
               gains[k] == EPLB_MIN_GAIN_DEFAULT ? "  (the default)" : "");
    char at[160];
    snprintf(at, sizeof at, "%.1f,%.1f,%.1f", st.n ? 100 * st.staged[0] / st.n : 0,
             st.n ? 100 * st.staged[1] / st.n : 0,
             st.n ? 100 * st.staged[2] / st.n : 0);
    json_record(b, "\"section\":\"replan\",\"part\":\"migration\","
                "\"series\":\"%s\",\"staged_gain_at_10_25_50\":[%s],"
                "\"replan_us\":%.1f,\"budget1_us\":%.1f,"
                "\"min_gain0_copies\":%.3f,\"min_gain0_next\":%.5f",
                sr->name, at, mf, mb, nw ? g_copies[0] / nw : 0.0,
                g_nx ? g_next[0] / g_nx : 0.0);
    free(gl);
    free(sc.stages);
    free(sc.layer_gain);
    free(sc.layer_copies);
    free(sc.layer_order);
    free(cc);
    free(cg);
    free(t_full);
    free(t_bud);
    plan_free(&cur);
    plan_free(&out);
    for (int k = 0; k < NGAIN; k++)
        plan_free(&gchain[k]);
    eplb_context_destroy(ctx);
}

void migration_tables(bench *b, const eplb_options *o)
{
    int quick = b->quick;
    int W = quick ? 3 : 8;
    const eplb_shape deepseek = {GEN_LAYERS, GEN_EXPERTS, 288, 8, 4, 32};
    const eplb_shape global = {GEN_LAYERS, GEN_EXPERTS, 288, 8, 18, 144};
    printf("\n## Migration: the most balance per copied expert "
           "(objective: sum over layers of the largest GPU load; %s "
           "loads)\n", b->have_real ? "recorded" : "generated");
    series sr;
    series_drift(b, &sr, 4, 0, W, &deepseek);
    migration_series(b, &sr, o);
    series_free(&sr);
    if (!quick) {
        series_drift(b, &sr, 4, 0, W, &global);
        migration_series(b, &sr, o);
        series_free(&sr);
        static const int seq[] = {0, 1, 2, 3, 4, 5};
        series_files(b, &sr, seq, 6, &deepseek);
        migration_series(b, &sr, o);
        series_free(&sr);
    }
    /* pure noise: one file again and again with 1-5% noise */
    static const int same[] = {0, 0, 0, 0, 0, 0, 0, 0};
    series_files(b, &sr, same, quick ? 3 : 8, &deepseek);
    snprintf(sr.name, sizeof sr.name, "pure noise: one file, 1-5%% noise "
             "per window");
    migration_series(b, &sr, o);
    series_free(&sr);
}
