/* eplb-bench's re-planning section: how many expert copies a new plan
 * costs against the plan in service, fresh, relabelled, and re-planned
 * from the current placement at several tolerances, and what balancedness
 * each keeps; on the recorded loads with 1% noise and on a drift series
 * of generated loads, where each window is planned from the last. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "workload.h"

/* Tolerances the section reports. */
static const float replan_tols[] = {0.0f, 0.005f, 0.01f, 0.02f};
#define NTOLS 4

/* The noise on the recorded loads, and the drift per window. */
#define NOISE 0.01f
#define DRIFT 0.05f

typedef struct replan_row {
    double copies[2 + NTOLS]; /* fresh, relabelled, from current x NTOLS */
    double bal[2 + NTOLS];
    double stale; /* the plan in service judged on the new loads */
    long slots;
    int candidates; /* the mode: 1 is the deterministic one */
} replan_row;

static long copies_between(const eplb_shape *s, const int32_t *a,
                           const int32_t *b)
{
    long n;
    if (eplb_copies(s, a, b, NULL, &n))
        die("copies");
    return n;
}

static void plans_alloc(plan_buf *p, const eplb_shape *s)
{
    for (int k = 0; k < NTOLS; k++)
        plan_alloc(&p[k], s);
}

static void plans_free(plan_buf *p)
{
    for (int k = 0; k < NTOLS; k++)
        plan_free(&p[k]);
}

/* One re-plan step: `cur` is the plan in service (made for older loads),
 * w the new loads. Fills row with fresh, relabelled fresh and from-current
 * figures; next[k] receives the from-current plan at tolerance k. */
static void replan_step(eplb_context **ctx, const eplb_shape *s,
                        const float *w, const plan_buf *cur, plan_buf *next,
                        replan_row *row)
{
    plan_buf fresh;
    plan_alloc(&fresh, s);
    if (eplb_rebalance(ctx[0], s, w, fresh.phy2log, fresh.log2phy,
                       fresh.logcnt))
        die("rebalance");
    int32_t *relabelled = xmalloc((size_t)s->layers * s->num_replicas * 4);
    if (eplb_relabel(s, EPLB_POLICY_AUTO, cur->phy2log, fresh.phy2log,
                     relabelled))
        die("relabel");
    row->slots = (long)s->layers * s->num_replicas;
    row->copies[0] = copies_between(s, cur->phy2log, fresh.phy2log);
    row->copies[1] = copies_between(s, cur->phy2log, relabelled);
    /* relabelling renames GPUs only: the loads per GPU stay the same */
    row->bal[0] = row->bal[1] = balancedness(s, w, &fresh);
    for (int k = 0; k < NTOLS; k++) {
        if (eplb_rebalance_from(ctx[k], s, w, cur->phy2log, NULL,
                                next[k].phy2log, next[k].log2phy,
                                next[k].logcnt))
            die("rebalance_from");
        row->copies[2 + k] = copies_between(s, cur->phy2log,
                                            next[k].phy2log);
        row->bal[2 + k] = balancedness(s, w, &next[k]);
    }
    row->stale = balancedness(s, w, cur);
    free(relabelled);
    plan_free(&fresh);
}

static void replan_header(const char *first)
{
    printf("%-26s %7s %7s", first, "fresh", "relab.");
    for (int k = 0; k < NTOLS; k++)
        printf("  tol %4.1f%%", 100.0 * replan_tols[k]);
    printf(" %8s %8s %8s\n", "bal.fr", "bal.t0", "stale");
}

static void replan_print(bench *b, const char *kind, const char *label,
                         const char *config, const replan_row *r)
{
    printf("%-26s %6.2f%% %6.2f%%", label, 100.0 * r->copies[0] / r->slots,
           100.0 * r->copies[1] / r->slots);
    for (int k = 0; k < NTOLS; k++)
        printf(" %8.2f%%", 100.0 * r->copies[2 + k] / r->slots);
    printf(" %8.4f %8.4f %8.4f\n", r->bal[0], r->bal[2], r->stale);
    json_record(b, "{\"kind\":\"%s\",\"label\":\"%s\",\"config\":\"%s\","
                "\"candidates\":%d,\"slots\":%ld,\"copies_fresh\":%.0f,"
                "\"copies_relabelled\":%.0f,"
                "\"copies_from_current\":[%.0f,%.0f,%.0f,%.0f],"
                "\"balancedness_fresh\":%.6f,\"balancedness_from_current\":"
                "[%.6f,%.6f,%.6f,%.6f],\"balancedness_stale\":%.6f}",
                kind, label, config, r->candidates, r->slots, r->copies[0],
                r->copies[1], r->copies[2], r->copies[3], r->copies[4],
                r->copies[5], r->bal[0], r->bal[2], r->bal[3], r->bal[4],
                r->bal[5], r->stale);
}

/* Copies add up over rows (their share is of all slots); balancedness is
 * a mean, see replan_mean. */
static void replan_acc(replan_row *sum, const replan_row *r)
{
    sum->candidates = r->candidates;
    for (int k = 0; k < 2 + NTOLS; k++) {
        sum->copies[k] += r->copies[k];
        sum->bal[k] += r->bal[k];
    }
    sum->stale += r->stale;
    sum->slots += r->slots;
}

static void replan_mean(replan_row *sum, int rows)
{
    for (int k = 0; k < 2 + NTOLS; k++)
        sum->bal[k] /= rows;
    sum->stale /= rows;
}

/* Warm time of a fresh plan and of a from-current re-plan (tolerance 0)
 * on one context, medians in microseconds. */
static void replan_times(bench *b, eplb_context *ctx, const eplb_shape *s,
                         const float *w, const plan_buf *cur,
                         double *fresh_us, double *from_us)
{
    plan_buf p;
    plan_alloc(&p, s);
    int runs = b->quick ? 5 : 30;
    double t[64];
    for (int mode = 0; mode < 2; mode++) {
        /* one call more, left out: the first after the other mode is not
         * warm */
        time_calls(ctx, s, w, mode ? cur->phy2log : NULL, &p, runs + 1, t);
        *(mode ? from_us : fresh_us) = median(t + 1, runs);
    }
    plan_free(&p);
}

/* The recorded loads with 1% noise: each file planned, then re-planned on
 * its noisy copy; the last file's calls are timed too. */
static void noise_table(bench *b, eplb_context **ctx, const eplb_options *base,
                        const loadset *ls, int c)
{
    char config[CONFIG_NAME_LEN];
    reference_name(config, c);
    printf("\n### %s, real loads, 1%% noise\n", config);
    replan_header("workload");
    int nf = ls->n;
    replan_row sum = {0};
    double t_fresh = 0, t_from = 0;
    for (int f = 0; f < nf; f++) {
        eplb_shape s = config_shape(c, ls->L[f], ls->E[f]);
        size_t n = (size_t)ls->L[f] * ls->E[f];
        float *w2 = xmalloc(n * sizeof(float));
        memcpy(w2, ls->w[f], n * sizeof(float));
        workload_perturb(w2, ls->L[f], ls->E[f], NOISE, 77 + f);
        plan_buf cur, next[NTOLS];
        plan_make(base, &s, ls->w[f], NULL, NULL, &cur);
        plans_alloc(next, &s);
        replan_row r;
        replan_step(ctx, &s, w2, &cur, next, &r);
        r.candidates = base->candidates;
        replan_print(b, "replan_noise", ls->names[f], config, &r);
        replan_acc(&sum, &r);
        if (f == nf - 1)
            replan_times(b, ctx[0], &s, w2, &cur, &t_fresh, &t_from);
        plan_free(&cur);
        plans_free(next);
        free(w2);
    }
    replan_mean(&sum, nf);
    replan_print(b, "replan_noise_all", "(all files)", config, &sum);
    printf("time per call, %s: fresh %.1f us, from current %.1f us\n",
           ls->names[nf - 1], t_fresh, t_from);
    json_record(b, "{\"kind\":\"replan_time\",\"config\":\"%s\","
                "\"fresh_us\":%.1f,\"from_current_us\":%.1f}", config,
                t_fresh, t_from);
}

/* Drift: generated loads, a 5% random walk per window, each window planned
 * from the previous window's plan. */
static void drift_table(bench *b, eplb_context **ctx, const eplb_options *base,
                        int c)
{
    int windows = b->quick ? 2 : 6;
    eplb_shape s = config_shape(c, GEN_LAYERS, GEN_EXPERTS);
    char config[CONFIG_NAME_LEN];
    config_name(config, &s);
    float *wd = generated_loads(s.layers, s.experts, 4242);
    plan_buf chain[NTOLS], next[NTOLS];
    for (int k = 0; k < NTOLS; k++)
        plan_make(base, &s, wd, NULL, NULL, &chain[k]);
    plans_alloc(next, &s);
    printf("\n### %s, drift series (generated loads, each window "
           "up to 5%% from the last, planned from the last plan)\n",
           config);
    replan_header("window");
    replan_row dsum = {0};
    for (int win = 1; win <= windows; win++) {
        workload_perturb(wd, s.layers, s.experts, DRIFT, 1000 + win);
        replan_row r, rk;
        /* Each tolerance follows its own chain of plans. */
        for (int k = 0; k < NTOLS; k++) {
            replan_step(ctx, &s, wd, &chain[k], next, &rk);
            rk.candidates = base->candidates;
            if (k == 0)
                r = rk;
            r.copies[2 + k] = rk.copies[2 + k];
            r.bal[2 + k] = rk.bal[2 + k];
            plan_buf t = chain[k];
            chain[k] = next[k];
            next[k] = t;
        }
        char label[32];
        snprintf(label, sizeof label, "window %d", win);
        replan_print(b, "replan_drift", label, config, &r);
        replan_acc(&dsum, &r);
    }
    replan_mean(&dsum, windows);
    replan_print(b, "replan_drift_all", "(all windows)", config, &dsum);
    plans_free(chain);
    plans_free(next);
    free(wd);
}

/* Both tables for every config, with the planning options `base`. */
static void replan_tables(bench *b, const eplb_options *base,
                          const loadset *ls)
{
    eplb_context *ctx[NTOLS];
    for (int k = 0; k < NTOLS; k++) {
        eplb_options o = *base;
        o.tolerance = replan_tols[k];
        if (eplb_context_create(&ctx[k], &o))
            die("context");
    }
    printf("\n## Re-planning from the current placement: expert copies in "
           "%% of slots, balancedness (mean over layers)\n"
           "(fresh: a new plan; relab.: it with GPUs renamed to keep the "
           "most experts; tol: from the current plan, every layer at least "
           "(1 - tol) x as balanced as fresh; stale: not moving;\n %s on %s, "
           "%d candidates, %d swap rounds)\n", eplb_context_backend(ctx[0]),
           eplb_context_device(ctx[0]), base->candidates, base->swap_rounds);
    for (int c = 0; c < NCONFIGS; c++) {
        noise_table(b, ctx, base, ls, c);
        drift_table(b, ctx, base, c);
    }
    for (int k = 0; k < NTOLS; k++)
        eplb_context_destroy(ctx[k]);
}

int replan_section(bench *b, const eplb_options *o)
{
    loadset ls;
    int want = b->quick ? 1 : NFILES;
    int rc = -1;
    if (loadset_real(b, want, &ls) == want) {
        /* the deterministic mode, then (a long run) the candidate mode */
        eplb_options det = deterministic(o);
        replan_tables(b, &det, &ls);
        if (!b->quick)
            replan_tables(b, o, &ls);
        rc = 0;
    }
    loadset_free(&ls);
    return rc;
}
