/* eplb-bench: speed against the OpenCL floor, balance against the bound.
 *
 *   eplb-bench [--quick] [--json FILE] [--workloads DIR] [--device-types L]
 *
 * For the host reference backend and each OpenCL device type found (gpu,
 * accelerator, cpu) it measures, on the same job: the round-trip floor,
 * the warm time per rebalance (median, p99), a new context's creation and
 * its first call apart (programs from the disk cache), a cache miss's
 * compile time per device; then the plans' quality on the real loads
 * (when present), out of sample, the migration between near-identical
 * inputs, each GPU of the first reference config (doc/ALGORITHM.md
 * section 12) dead in turn, duplicate replicas with distinct_per_gpu off
 * and on, and a scaling sweep. */
#define _XOPEN_SOURCE 700 /* mkdtemp, setenv, nftw */
#include <ftw.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* for eplb_context_floor */
#define EPLB_EXPERIMENTAL
#include "eplb_cl.h"
#include "loadfile.h"
#include "planstats.h"
#include "timing.h"
#include "workload.h"

#define BENCH_MEASURE_US 1e6
#define BENCH_MIN_RUNS 5

typedef struct bench {
    int quick;
    int sweep_from; /* first sweep row to run (to resume a long sweep) */
    int floor_runs, warm_runs;
    const char *workloads;
    FILE *json;
    int json_first;
} bench;

typedef struct engine {
    const char *label; /* "reference", "opencl-gpu", ... */
    eplb_options opts;
    char device[600];
} engine;

static const int configs[3][4] = {{288, 8, 4, 32}, {320, 8, 8, 64},
                                  {288, 8, 18, 144}};
static const char *const files[] = {
    "decode_in1000out1000.json", "decode_in1800out100.json",
    "decode_in2000out100.json",  "decode_in500out1500.json",
    "prefill_in1000out1000.json", "prefill_in1024.json",
    "prefill_in1800out100.json", "prefill_in2000out100.json",
    "prefill_in2048.json",       "prefill_in4096.json",
    "prefill_in500out1500.json", "prefill_in512.json"};
#define NFILES 12

static void json_record(bench *b, const char *fmt, ...)
{
    if (!b->json)
        return;
    fputs(b->json_first ? "\n  " : ",\n  ", b->json);
    b->json_first = 0;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(b->json, fmt, ap);
    va_end(ap);
}

typedef struct plan_buf {
    int32_t *phy2log, *log2phy, *logcnt;
} plan_buf;

static int plan_alloc(plan_buf *p, const eplb_shape *s)
{
    size_t a, b, c;
    if (eplb_plan_sizes(s, &a, &b, &c))
        return -1;
    p->phy2log = malloc(a * 4);
    p->log2phy = malloc(b * 4);
    p->logcnt = malloc(c * 4);
    return p->phy2log && p->log2phy && p->logcnt ? 0 : -1;
}

static void plan_free(plan_buf *p)
{
    free(p->phy2log);
    free(p->log2phy);
    free(p->logcnt);
}

static int die(const char *what)
{
    fprintf(stderr, "eplb-bench: %s: %s\n", what, eplb_last_error());
    exit(1);
}

/* ---- speed ----------------------------------------------------------- */

typedef struct timing {
    /* cold: a new context (context_us, the driver's part) and its first
     * rebalance (first_us: programs from the disk cache, when warm) */
    double floor_us, floor_p99, warm_us, warm_p99, context_us, first_us;
} timing;

/* A new context for en and its first rebalance into p, timed apart. */
static eplb_context *cold_start(const engine *en, const eplb_shape *s,
                                const float *w, plan_buf *p, timing *t)
{
    eplb_context *ctx;
    double t0 = timing_now_us();
    if (eplb_context_create(&ctx, &en->opts))
        die("context");
    t->context_us = timing_now_us() - t0;
    t0 = timing_now_us();
    if (eplb_rebalance(ctx, s, w, p->phy2log, p->log2phy, p->logcnt))
        die("rebalance");
    t->first_us = timing_now_us() - t0;
    return ctx;
}

static void time_engine(bench *b, const engine *en, const eplb_shape *s,
                        const float *w, timing *t)
{
    plan_buf p;
    if (plan_alloc(&p, s))
        die("plan sizes");
    eplb_context *ctx = cold_start(en, s, w, &p, t);
    /* Warm runs: as many as asked, but about a second at most. */
    double t0 = timing_now_us();
    if (eplb_rebalance(ctx, s, w, p.phy2log, p.log2phy, p.logcnt))
        die("rebalance");
    double one = timing_now_us() - t0;
    int runs = b->warm_runs;
    if (one * runs > BENCH_MEASURE_US)
        runs = (int)(BENCH_MEASURE_US / one);
    if (runs < BENCH_MIN_RUNS)
        runs = BENCH_MIN_RUNS;
    double *v = malloc(sizeof(double) * runs);
    for (int i = 0; i < runs; i++) {
        t0 = timing_now_us();
        if (eplb_rebalance(ctx, s, w, p.phy2log, p.log2phy, p.logcnt))
            die("rebalance");
        v[i] = timing_now_us() - t0;
    }
    qsort(v, runs, sizeof *v, timing_cmp_double);
    t->warm_us = v[runs / 2];
    t->warm_p99 = v[(int)((runs - 1) * 0.99)];
    t->floor_us = t->floor_p99 = 0.0;
    if (strcmp(eplb_context_backend(ctx), "opencl") == 0 &&
        eplb_context_floor(ctx, s, b->floor_runs, &t->floor_us,
                           &t->floor_p99))
        die("floor");
    free(v);
    eplb_context_destroy(ctx);
    plan_free(&p);
}

static void print_timing_row(bench *b, const engine *en, const char *config,
                             const char *workload, const eplb_shape *s,
                             const timing *t)
{
    char ratio[32] = "-", floor_s[32] = "-";
    if (t->floor_us > 0) {
        snprintf(ratio, sizeof ratio, "%.2f", t->warm_us / t->floor_us);
        snprintf(floor_s, sizeof floor_s, "%.1f", t->floor_us);
    }
    printf("%-14s %-22s %-24s %9s %10.1f %9.1f %9.0f %9.0f %8s\n",
           en->label, config, workload, floor_s, t->warm_us, t->warm_p99,
           t->context_us, t->first_us, ratio);
    json_record(b, "{\"kind\":\"speed\",\"engine\":\"%s\",\"device\":\"%s\","
                "\"config\":\"%s\",\"workload\":\"%s\",\"layers\":%d,"
                "\"experts\":%d,\"candidates\":%d,\"swap_rounds\":%d,"
                "\"floor_us\":%.2f,\"floor_p99_us\":%.2f,\"warm_us\":%.2f,"
                "\"warm_p99_us\":%.2f,\"context_us\":%.1f,"
                "\"first_call_us\":%.1f,\"x_floor\":%.3f}",
                en->label, en->device, config, workload, s->layers,
                s->experts, en->opts.candidates, en->opts.swap_rounds,
                t->floor_us, t->floor_p99, t->warm_us, t->warm_p99,
                t->context_us, t->first_us,
                t->floor_us > 0 ? t->warm_us / t->floor_us : 0.0);
}

static void speed_header(void)
{
    printf("%-14s %-22s %-24s %9s %10s %9s %9s %9s %8s\n", "engine",
           "config", "workload", "floor us", "warm us", "p99 us", "ctx us",
           "first us", "x floor");
}

/* ---- quality --------------------------------------------------------- */

static void plan_with(const eplb_options *o, const eplb_shape *s,
                      const float *w, plan_buf *p)
{
    eplb_context *ctx;
    if (plan_alloc(p, s) || eplb_context_create(&ctx, o))
        die("context");
    if (eplb_rebalance(ctx, s, w, p->phy2log, p->log2phy, p->logcnt))
        die("rebalance");
    eplb_context_destroy(ctx);
}

static float *load_real(bench *b, const char *file, int *L, int *E)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/deepseek-v3/%s", b->workloads, file);
    load_matrix m;
    if (load_matrix_read(path, &m, err, sizeof err)) {
        fprintf(stderr, "eplb-bench: %s\n", err);
        return NULL;
    }
    load_matrix_drop_zero_layers(&m);
    *L = m.layers;
    *E = m.experts;
    return m.data;
}

static void quality_tables(bench *b, const eplb_options *fast)
{
    eplb_options det = *fast, cand = *fast;
    det.candidates = 1;
    det.swap_rounds = 0;
    printf("\n## Quality on the real loads (mean over layers; bound = no "
           "plan can beat it)\n");
    printf("%-24s %-22s %8s %8s %8s %8s %8s %8s\n", "workload", "config",
           "before", "determ.", "cand.", "worst", "bound", "% bound");
    float *w[NFILES];
    int L[NFILES], E[NFILES];
    int nfiles = NFILES;
    for (int f = 0; f < nfiles; f++)
        if (!(w[f] = load_real(b, files[f], &L[f], &E[f])))
            return;
    for (int c = 0; c < 3; c++) {
        char config[64];
        snprintf(config, sizeof config, "P=%d G=%d N=%d M=%d",
                 configs[c][0], configs[c][1], configs[c][2], configs[c][3]);
        double sum_d = 0, sum_c = 0, sum_share = 0;
        for (int f = 0; f < nfiles; f++) {
            eplb_shape s = {L[f], E[f], configs[c][0], configs[c][1],
                            configs[c][2], configs[c][3]};
            plan_buf pd, pc;
            plan_with(&det, &s, w[f], &pd);
            plan_with(&cand, &s, w[f], &pc);
            eplb_quality qb = {.struct_size = sizeof qb};
            eplb_quality qd = {.struct_size = sizeof qd};
            eplb_quality qc = {.struct_size = sizeof qc};
            eplb_identity_quality(&s, w[f], &qb);
            eplb_plan_quality(&s, EPLB_POLICY_AUTO, w[f], pd.phy2log,
                              pd.logcnt, &qd);
            eplb_plan_quality(&s, EPLB_POLICY_AUTO, w[f], pc.phy2log,
                              pc.logcnt, &qc);
            printf("%-24s %-22s %8.4f %8.4f %8.4f %8.4f %8.4f %7.1f%%%s\n",
                   files[f], config, qb.balancedness_mean,
                   qd.balancedness_mean, qc.balancedness_mean,
                   qc.balancedness_worst, qc.bound_mean,
                   100 * qc.share_of_bound, qc.bound_is_weak ? " (weak)" : "");
            json_record(b, "{\"kind\":\"quality\",\"workload\":\"%s\","
                        "\"config\":\"%s\",\"before\":%.6f,"
                        "\"deterministic\":%.6f,\"deterministic_worst\":%.6f,"
                        "\"candidates\":%.6f,\"candidates_worst\":%.6f,"
                        "\"bound\":%.6f,\"share_of_bound\":%.6f,"
                        "\"bound_weak\":%d}",
                        files[f], config, qb.balancedness_mean,
                        qd.balancedness_mean, qd.balancedness_worst,
                        qc.balancedness_mean, qc.balancedness_worst,
                        qc.bound_mean, qc.share_of_bound, qc.bound_is_weak);
            sum_d += qd.balancedness_mean;
            sum_c += qc.balancedness_mean;
            sum_share += qc.share_of_bound;
            plan_free(&pd);
            plan_free(&pc);
        }
        printf("%-24s %-22s %8s %8.4f %8.4f %8s %8s %7.1f%%\n",
               "(mean over files)", config, "", sum_d / nfiles,
               sum_c / nfiles, "", "", 100 * sum_share / nfiles);
    }

    /* Out of sample: plan on one file, judge on another. */
    static const int pairs[][2] = {{5, 4}, {11, 10}, {8, 7}, {0, 4}, {4, 0}};
    printf("\n## Out of sample (plan made on the first, judged on the "
           "second; P=288 G=8 N=4 M=32)\n");
    printf("%-52s %8s %8s %8s\n", "plan from -> judged on", "determ.",
           "cand.", "in-samp.");
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int a = pairs[i][0], z = pairs[i][1];
        if (a >= nfiles || z >= nfiles)
            continue;
        eplb_shape s = {L[a], E[a], 288, 8, 4, 32};
        plan_buf pd, pc, pz;
        plan_with(&det, &s, w[a], &pd);
        plan_with(&cand, &s, w[a], &pc);
        plan_with(&cand, &s, w[z], &pz);
        eplb_quality qd = {.struct_size = sizeof qd};
        eplb_quality qc = {.struct_size = sizeof qc};
        eplb_quality qz = {.struct_size = sizeof qz};
        eplb_plan_quality(&s, EPLB_POLICY_AUTO, w[z], pd.phy2log, pd.logcnt,
                          &qd);
        eplb_plan_quality(&s, EPLB_POLICY_AUTO, w[z], pc.phy2log, pc.logcnt,
                          &qc);
        eplb_plan_quality(&s, EPLB_POLICY_AUTO, w[z], pz.phy2log, pz.logcnt,
                          &qz);
        char label[128];
        snprintf(label, sizeof label, "%s -> %s", files[a], files[z]);
        printf("%-52s %8.4f %8.4f %8.4f\n", label, qd.balancedness_mean,
               qc.balancedness_mean, qz.balancedness_mean);
        json_record(b, "{\"kind\":\"out_of_sample\",\"from\":\"%s\","
                    "\"to\":\"%s\",\"deterministic\":%.6f,"
                    "\"candidates\":%.6f,\"in_sample\":%.6f}",
                    files[a], files[z], qd.balancedness_mean,
                    qc.balancedness_mean, qz.balancedness_mean);
        plan_free(&pd);
        plan_free(&pc);
        plan_free(&pz);
    }

    for (int f = 0; f < nfiles; f++)
        free(w[f]);
}

/* ---- re-planning from the current placement --------------------------- */

/* Tolerances the re-planning section reports. */
static const float replan_tols[] = {0.0f, 0.005f, 0.01f, 0.02f};
#define NTOLS 4

typedef struct replan_row {
    double copies[2 + NTOLS]; /* fresh, relabelled, from current x NTOLS */
    double bal[2 + NTOLS];
    double stale; /* the plan in service judged on the new loads */
    long slots;
    int candidates; /* the mode: 1 is the deterministic one */
} replan_row;

static double balancedness(const eplb_shape *s, const float *w,
                           const plan_buf *p)
{
    eplb_quality q = {.struct_size = sizeof q};
    if (eplb_plan_quality(s, EPLB_POLICY_AUTO, w, p->phy2log, p->logcnt, &q))
        die("plan quality");
    return q.balancedness_mean;
}

static long copies_between(const eplb_shape *s, const int32_t *a,
                           const int32_t *b)
{
    long n;
    if (eplb_copies(s, a, b, NULL, &n))
        die("copies");
    return n;
}

/* One re-plan step: `cur` is the plan in service (made for older loads),
 * w the new loads. Fills row with fresh, relabelled fresh and from-current
 * figures; next[k] receives the from-current plan at tolerance k. */
static void replan_step(eplb_context **ctx, const eplb_shape *s,
                        const float *w, const plan_buf *cur, plan_buf *next,
                        replan_row *row)
{
    plan_buf fresh;
    if (plan_alloc(&fresh, s))
        die("plan sizes");
    if (eplb_rebalance(ctx[0], s, w, fresh.phy2log, fresh.log2phy,
                       fresh.logcnt))
        die("rebalance");
    int32_t *relabelled = malloc((size_t)s->layers * s->num_replicas * 4);
    if (!relabelled || eplb_relabel(s, EPLB_POLICY_AUTO, cur->phy2log,
                                    fresh.phy2log, relabelled))
        die("relabel");
    row->slots = (long)s->layers * s->num_replicas;
    row->copies[0] = copies_between(s, cur->phy2log, fresh.phy2log);
    row->copies[1] = copies_between(s, cur->phy2log, relabelled);
    row->bal[0] = row->bal[1] =
        balancedness(s, w, &fresh);
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
                "\"candidates\":%d,\"slots\":%ld,\"copies_fresh\":%.0f,\"copies_relabelled\":"
                "%.0f,\"copies_from_current\":[%.0f,%.0f,%.0f,%.0f],"
                "\"balancedness_fresh\":%.6f,\"balancedness_from_current\":"
                "[%.6f,%.6f,%.6f,%.6f],\"balancedness_stale\":%.6f}",
                kind, label, config, r->candidates, r->slots, r->copies[0],
                r->copies[1],
                r->copies[2], r->copies[3], r->copies[4], r->copies[5],
                r->bal[0], r->bal[2], r->bal[3], r->bal[4], r->bal[5],
                r->stale);
}

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

/* Warm time of a fresh plan and of a from-current re-plan (tolerance 0)
 * on one context, medians in microseconds. */
static void replan_times(bench *b, eplb_context *ctx, const eplb_shape *s,
                         const float *w, const plan_buf *cur,
                         double *fresh_us, double *from_us)
{
    plan_buf p;
    if (plan_alloc(&p, s))
        die("plan sizes");
    int runs = b->quick ? 5 : 30;
    double t[64];
    for (int mode = 0; mode < 2; mode++) {
        for (int i = 0; i <= runs; i++) {
            double t0 = timing_now_us();
            int rc = eplb_rebalance_from(ctx, s, w,
                                         mode ? cur->phy2log : NULL, NULL,
                                         p.phy2log, p.log2phy, p.logcnt);
            t[i] = timing_now_us() - t0;
            if (rc)
                die("rebalance_from");
        }
        qsort(t + 1, (size_t)runs, sizeof t[0], timing_cmp_double);
        *(mode ? from_us : fresh_us) = t[1 + runs / 2];
    }
    plan_free(&p);
}

/* Copies and balancedness when re-planning: the real loads with 1% noise
 * (each file planned, then re-planned on its noisy copy), and a drift
 * series of generated loads, each window planned from the previous
 * window's plan. */
static void replan_tables(bench *b, const eplb_options *base, float **w,
                          const int *L, const int *E, int nfiles)
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
    for (int c = 0; c < 3; c++) {
        char config[64];
        snprintf(config, sizeof config, "P=%d G=%d N=%d M=%d", configs[c][0],
                 configs[c][1], configs[c][2], configs[c][3]);
        printf("\n### %s, real loads, 1%% noise\n", config);
        replan_header("workload");
        replan_row sum = {0};
        double t_fresh = 0, t_from = 0;
        for (int f = 0; f < nfiles; f++) {
            eplb_shape s = {L[f], E[f], configs[c][0], configs[c][1],
                            configs[c][2], configs[c][3]};
            size_t n = (size_t)L[f] * E[f];
            float *w2 = malloc(n * sizeof(float));
            memcpy(w2, w[f], n * sizeof(float));
            workload_perturb(w2, L[f], E[f], 0.01f, 77 + f);
            plan_buf cur, next[NTOLS];
            plan_with(base, &s, w[f], &cur);
            for (int k = 0; k < NTOLS; k++)
                if (plan_alloc(&next[k], &s))
                    die("plan sizes");
            replan_row r;
            replan_step(ctx, &s, w2, &cur, next, &r);
            r.candidates = base->candidates;
            replan_print(b, "replan_noise", files[f], config, &r);
            replan_acc(&sum, &r);
            if (f == nfiles - 1)
                replan_times(b, ctx[0], &s, w2, &cur, &t_fresh, &t_from);
            plan_free(&cur);
            for (int k = 0; k < NTOLS; k++)
                plan_free(&next[k]);
            free(w2);
        }
        for (int k = 0; k < 2 + NTOLS; k++)
            sum.bal[k] /= nfiles;
        sum.stale /= nfiles;
        replan_print(b, "replan_noise_all", "(all files)", config, &sum);
        printf("time per call, %s: fresh %.1f us, from current %.1f us\n",
               files[nfiles - 1], t_fresh, t_from);
        json_record(b, "{\"kind\":\"replan_time\",\"config\":\"%s\","
                    "\"fresh_us\":%.1f,\"from_current_us\":%.1f}", config,
                    t_fresh, t_from);

        /* Drift: generated loads, 5% random walk per window. */
        int windows = b->quick ? 2 : 6;
        eplb_shape s = {58, 256, configs[c][0], configs[c][1],
                        configs[c][2], configs[c][3]};
        size_t n = (size_t)s.layers * s.experts;
        float *wd = malloc(n * sizeof(float));
        workload_generate(wd, s.layers, s.experts, 4242);
        plan_buf chain[NTOLS], next[NTOLS];
        for (int k = 0; k < NTOLS; k++) {
            plan_with(base, &s, wd, &chain[k]);
            if (plan_alloc(&next[k], &s))
                die("plan sizes");
        }
        printf("\n### %s, drift series (generated loads, each window "
               "up to 5%% from the last, planned from the last plan)\n",
               config);
        replan_header("window");
        replan_row dsum = {0};
        for (int win = 1; win <= windows; win++) {
            workload_perturb(wd, s.layers, s.experts, 0.05f, 1000 + win);
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
        for (int k = 0; k < 2 + NTOLS; k++)
            dsum.bal[k] /= windows;
        dsum.stale /= windows;
        replan_print(b, "replan_drift_all", "(all windows)", config, &dsum);
        for (int k = 0; k < NTOLS; k++) {
            plan_free(&chain[k]);
            plan_free(&next[k]);
        }
        free(wd);
    }
    for (int k = 0; k < NTOLS; k++)
        eplb_context_destroy(ctx[k]);
}

/* ---- scaling --------------------------------------------------------- */

static void sweep(bench *b, engine *en, int n_en)
{
    /* E, L, P, G, N, M */
    static const int full[][6] = {
        {64, 58, 72, 8, 4, 8},      {128, 58, 144, 8, 4, 16},
        {256, 58, 288, 8, 4, 32},   {512, 58, 576, 8, 4, 32},
        {1024, 58, 1152, 8, 4, 32}, {256, 1, 288, 8, 4, 32},
        {256, 16, 288, 8, 4, 32},   {256, 128, 288, 8, 4, 32},
        {256, 58, 384, 8, 4, 32},   {256, 58, 512, 8, 4, 32},
        {512, 58, 640, 8, 1, 8},    {512, 58, 640, 8, 2, 16},
        {512, 58, 640, 8, 8, 64},   {512, 58, 640, 8, 16, 128},
        {512, 58, 640, 8, 40, 320}, {1024, 58, 4096, 8, 8, 256},
    };
    static const int quick[][6] = {{64, 8, 72, 8, 4, 8},
                                   {256, 8, 288, 8, 4, 32}};
    const int(*rows)[6] = b->quick ? quick : full;
    int nrows = b->quick ? 2 : (int)(sizeof full / sizeof full[0]);
    printf("\n## Scaling (generated loads, %d candidates, %d swap rounds)\n",
           en[0].opts.candidates, en[0].opts.swap_rounds);
    speed_header();
    for (int r = b->sweep_from; r < nrows; r++) {
        eplb_shape s = {rows[r][1], rows[r][0], rows[r][2], rows[r][3],
                        rows[r][4], rows[r][5]};
        float *w = malloc((size_t)s.layers * s.experts * sizeof(float));
        workload_generate(w, s.layers, s.experts, 1000 + r);
        char config[64], wl[64];
        snprintf(config, sizeof config, "P=%d G=%d N=%d M=%d",
                 s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus);
        snprintf(wl, sizeof wl, "gen %dx%d", s.layers, s.experts);
        for (int i = 0; i < n_en; i++) {
            timing t;
            fprintf(stderr, "\rscaling %d/%d (%s)   ", r + 1, nrows,
                    en[i].label);
            time_engine(b, &en[i], &s, w, &t);
            print_timing_row(b, &en[i], config, wl, &s, &t);
        }
        free(w);
    }
    fprintf(stderr, "\r%40s\r", "");
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A cache miss: each OpenCL engine's first rebalance (DeepSeek's shape)
 * with the program cache pointed at a new, empty folder, so both programs
 * are compiled; the context's creation is timed apart. */
static void compile_times(bench *b, engine *en, int n_en, const float *w,
                          int layers)
{
    const char *old = getenv("EPLB_CL_CACHE_DIR");
    char *saved = old ? strdup(old) : NULL;
    char dir[] = "/tmp/eplb-bench-cache-XXXXXX";
    if (!mkdtemp(dir)) {
        free(saved);
        return;
    }
    printf("\ncache miss (a new, empty program cache; P=%d G=%d N=%d "
           "M=%d):\n", configs[0][0], configs[0][1], configs[0][2],
           configs[0][3]);
    for (int i = 0; i < n_en; i++) {
        if (en[i].opts.backend != EPLB_BACKEND_OPENCL ||
            en[i].opts.use_clblast)
            continue;
        char sub[sizeof dir + 8];
        snprintf(sub, sizeof sub, "%s/%d", dir, i);
        setenv("EPLB_CL_CACHE_DIR", sub, 1);
        eplb_shape s = {layers, 256, configs[0][0], configs[0][1],
                        configs[0][2], configs[0][3]};
        timing t;
        plan_buf p;
        if (plan_alloc(&p, &s))
            die("plan sizes");
        eplb_context_destroy(cold_start(&en[i], &s, w, &p, &t));
        plan_free(&p);
        printf("  %-14s %-60s context %.0f us, first call %.0f us\n",
               en[i].label, en[i].device, t.context_us, t.first_us);
        json_record(b, "{\"kind\":\"compile\",\"engine\":\"%s\","
                    "\"device\":\"%s\",\"context_us\":%.1f,"
                    "\"first_call_us\":%.1f}", en[i].label, en[i].device,
                    t.context_us, t.first_us);
    }
    if (saved)
        setenv("EPLB_CL_CACHE_DIR", saved, 1);
    else
        unsetenv("EPLB_CL_CACHE_DIR");
    free(saved);
    if (nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "eplb-bench: could not remove %s\n", dir);
}

/* Speed on the real file (or the built-in workload) under the reference
 * configs (doc/ALGORITHM.md section 12): every engine, and the host's deterministic mode. */
static void speed_section(bench *b, engine *en, int n_en, int have_real,
                          int cands, int rounds)
{
    printf("\n## Speed (%d candidates, %d swap rounds; floor = upload, one "
           "trivial kernel, download, same sizes)\n", cands, rounds);
    speed_header();
    float *gen = malloc(58 * 256 * sizeof(float));
    workload_generate(gen, 58, 256, 2024);
    int L = 58, E = 256;
    float *real = have_real ? load_real(b, "prefill_in4096.json", &L, &E)
                            : NULL;
    for (int cfg = 0; cfg < (b->quick ? 1 : 3); cfg++) {
        eplb_shape s = {58, 256, configs[cfg][0], configs[cfg][1],
                        configs[cfg][2], configs[cfg][3]};
        char config[64];
        snprintf(config, sizeof config, "P=%d G=%d N=%d M=%d", s.num_replicas,
                 s.num_groups, s.num_nodes, s.num_gpus);
        for (int i = 0; i < n_en; i++) {
            timing t;
            fprintf(stderr, "\rspeed %s %s   ", config, en[i].label);
            const float *w = real ? real : gen;
            s.layers = L;
            time_engine(b, &en[i], &s, w, &t);
            print_timing_row(b, &en[i], config,
                             real ? "prefill_in4096" : "generated 58x256", &s,
                             &t);
            if (i == 0) {
                /* the deterministic mode on the host, for DeepSeek's
                 * algorithm's own cost */
                engine d = en[0];
                d.label = "reference-det";
                d.opts.candidates = 1;
                d.opts.swap_rounds = 0;
                time_engine(b, &d, &s, w, &t);
                print_timing_row(b, &d, config,
                                 real ? "prefill_in4096" : "generated 58x256",
                                 &s, &t);
            }
        }
    }
    fprintf(stderr, "\r%40s\r", "");
    compile_times(b, en, n_en, real ? real : gen, L);
    free(gen);
    free(real);
}

/* ---- failed GPUs and duplicate replicas ----------------------------- */

/* Plans with a mask and/or a current plan; exits on failure. */
static void plan_from(const eplb_options *o, const eplb_shape *s,
                      const float *w, const int32_t *current,
                      const uint8_t *mask, plan_buf *p)
{
    eplb_context *ctx;
    if (plan_alloc(p, s) || eplb_context_create(&ctx, o))
        die("context");
    if (eplb_rebalance_from(ctx, s, w, current, mask, p->phy2log, p->log2phy,
                            p->logcnt))
        die("rebalance_from");
    eplb_context_destroy(ctx);
}

/* Share of (layer, group) pairs kept on one node. */
static double share_whole(const eplb_shape *s, const plan_buf *p)
{
    return (double)plan_groups_on_one_node(s, p->phy2log) /
           ((double)s->layers * s->num_groups);
}

/* Least time of `runs` warm calls of a context, in microseconds: the
 * least is the figure other work on the machine disturbs least. */
static double warm_least(eplb_context *ctx, const eplb_shape *s,
                         const float *w, plan_buf *p, int runs)
{
    double least = 0.0;
    for (int i = 0; i < runs; i++) {
        double t0 = timing_now_us();
        if (eplb_rebalance(ctx, s, w, p->phy2log, p->log2phy, p->logcnt))
            die("rebalance");
        double t = timing_now_us() - t0;
        least = i == 0 || t < least ? t : least;
    }
    return least;
}

/* The loads the failure and duplicate sections use: the real files, or one
 * generated matrix when they are absent. */
typedef struct loadset {
    int n;
    float *w[NFILES];
    int L[NFILES], E[NFILES];
    const char *names[NFILES];
} loadset;

static void loadset_read(bench *b, int have_real, loadset *s)
{
    s->n = 0;
    for (int f = 0; have_real && f < (b->quick ? 1 : NFILES); f++) {
        if (!(s->w[s->n] = load_real(b, files[f], &s->L[s->n],
                                     &s->E[s->n])))
            break;
        s->names[s->n++] = files[f];
    }
    if (s->n == 0) {
        s->L[0] = 58;
        s->E[0] = 256;
        s->w[0] = malloc(58 * 256 * sizeof(float));
        workload_generate(s->w[0], 58, 256, 2024);
        s->names[s->n++] = "generated 58x256";
    }
}

static void loadset_free(loadset *s)
{
    for (int f = 0; f < s->n; f++)
        free(s->w[f]);
}

/* Each single GPU of the first reference config dead in turn, from the plan in
 * service before the failure: the global policy over the live GPUs
 * (SGLang's answer), the hierarchical plan over the live GPUs, and the
 * re-plan from the plan in service. Means over the loads. */
static void failure_section(bench *b, const eplb_options *o, int have_real)
{
    loadset ls;
    loadset_read(b, have_real, &ls);
    int nf = ls.n;
    eplb_options glob = *o;
    glob.policy = EPLB_POLICY_GLOBAL;
    int M = 32;
    printf("\n## One GPU dead (P=288 G=8 N=4 M=32; mean over %d load "
           "file%s; copies relative to the dead GPU's own slots)\n", nf,
           nf == 1 ? "" : "s");
    printf("%4s %9s %9s %9s %9s %9s %9s %9s %9s\n", "dead", "before",
           "global", "hier.", "from-cur", "grp/node", "grp/node", "copies",
           "copies");
    printf("%4s %9s %9s %9s %9s %9s %9s %9s %9s\n", "GPU", "", "(SGLang)",
           "fresh", "", "global", "hier.", "fresh", "from-cur");
    double tot[8] = {0};
    int rows = 0;
    for (int dead = 0; dead < M; dead += b->quick ? M - 1 : 1) {
        double acc[8] = {0};
        for (int f = 0; f < nf; f++) {
            eplb_shape s = {ls.L[f], ls.E[f], 288, 8, 4, M};
            uint8_t mask[32];
            memset(mask, 1, sizeof mask);
            plan_buf before, pg, ph, pc;
            plan_from(o, &s, ls.w[f], NULL, NULL, &before);
            mask[dead] = 0;
            plan_from(&glob, &s, ls.w[f], NULL, mask, &pg);
            plan_from(o, &s, ls.w[f], NULL, mask, &ph);
            plan_from(o, &s, ls.w[f], before.phy2log, mask, &pc);
            long cf, cc;
            if (eplb_copies(&s, before.phy2log, ph.phy2log, NULL, &cf) ||
                eplb_copies(&s, before.phy2log, pc.phy2log, NULL, &cc))
                die("copies");
            double own = (double)s.layers * (288 / M);
            double v[8] = {balancedness(&s, ls.w[f], &before),
                           balancedness(&s, ls.w[f], &pg),
                           balancedness(&s, ls.w[f], &ph),
                           balancedness(&s, ls.w[f], &pc),
                           share_whole(&s, &pg), share_whole(&s, &ph),
                           cf / own, cc / own};
            for (int i = 0; i < 8; i++)
                acc[i] += v[i] / nf;
            plan_free(&before);
            plan_free(&pg);
            plan_free(&ph);
            plan_free(&pc);
        }
        printf("%4d %9.4f %9.4f %9.4f %9.4f %8.1f%% %8.1f%% %8.2fx "
               "%8.2fx\n", dead, acc[0], acc[1], acc[2], acc[3],
               100 * acc[4], 100 * acc[5], acc[6], acc[7]);
        json_record(b, "{\"kind\":\"failure\",\"dead_gpu\":%d,\"files\":%d,"
                    "\"before\":%.6f,\"global_live\":%.6f,"
                    "\"hierarchical_live\":%.6f,\"from_current\":%.6f,"
                    "\"groups_one_node_global\":%.4f,"
                    "\"groups_one_node_hierarchical\":%.4f,"
                    "\"copies_fresh_x_own\":%.3f,"
                    "\"copies_from_current_x_own\":%.3f}",
                    dead, nf, acc[0], acc[1], acc[2], acc[3], acc[4],
                    acc[5], acc[6], acc[7]);
        for (int i = 0; i < 8; i++)
            tot[i] += acc[i];
        rows++;
    }
    printf("%4s %9.4f %9.4f %9.4f %9.4f %8.1f%% %8.1f%% %8.2fx %8.2fx\n",
           "mean", tot[0] / rows, tot[1] / rows, tot[2] / rows,
           tot[3] / rows, 100 * tot[4] / rows, 100 * tot[5] / rows,
           tot[6] / rows, tot[7] / rows);
    loadset_free(&ls);
}

/* distinct_per_gpu off and on, per file and config: duplicate slots, the
 * layers that hold any, balancedness, and the layers whose balancedness
 * fell (the option promises none). */
static void duplicate_section(bench *b, const eplb_options *o, int have_real)
{
    loadset ls;
    loadset_read(b, have_real, &ls);
    int nf = ls.n;
    eplb_options on = *o;
    on.distinct_per_gpu = 1;
    printf("\n## Duplicate replicas (a GPU holding one expert twice), "
           "distinct_per_gpu off -> on\n");
    printf("%-26s %-22s %7s %7s %9s %9s %9s %6s %8s\n", "workload", "config",
           "dup", "dup", "layers", "balanced", "balanced", "lower",
           "on-off");
    printf("%-26s %-22s %7s %7s %9s %9s %9s %6s %8s\n", "", "", "off", "on",
           "off->on", "off", "on", "layers", "pass ms");
    for (int c = 0; c < (b->quick ? 1 : 3); c++) {
        char config[64];
        snprintf(config, sizeof config, "P=%d G=%d N=%d M=%d",
                 configs[c][0], configs[c][1], configs[c][2], configs[c][3]);
        long sum_off = 0, sum_on = 0, slots = 0, lower_all = 0;
        double gain = 0, pass_ms = 0;
        for (int f = 0; f < nf; f++) {
            eplb_shape s = {ls.L[f], ls.E[f], configs[c][0], configs[c][1],
                            configs[c][2], configs[c][3]};
            plan_buf off, pon;
            plan_from(o, &s, ls.w[f], NULL, NULL, &off);
            plan_from(&on, &s, ls.w[f], NULL, NULL, &pon);
            /* The pass's cost: the deterministic mode (about a
             * millisecond here) with and without it, so that the
             * difference stands out of the timing noise. */
            eplb_options det = *o, det_on = on;
            det.candidates = det_on.candidates = 1;
            det.swap_rounds = det_on.swap_rounds = 0;
            eplb_context *c_off, *c_on;
            plan_buf scratch;
            if (plan_alloc(&scratch, &s) ||
                eplb_context_create(&c_off, &det) ||
                eplb_context_create(&c_on, &det_on))
                die("context");
            int runs = b->quick ? 3 : 9;
            double t_off = warm_least(c_off, &s, ls.w[f], &scratch, runs);
            double t_on = warm_least(c_on, &s, ls.w[f], &scratch, runs);
            eplb_context_destroy(c_off);
            eplb_context_destroy(c_on);
            plan_free(&scratch);
            long lay_off, lay_on;
            long d_off = plan_duplicate_slots(&s, off.phy2log, &lay_off);
            long d_on = plan_duplicate_slots(&s, pon.phy2log, &lay_on);
            int M = s.num_gpus, lower = 0;
            double *lo = malloc((size_t)s.layers * M * sizeof(double));
            double *ln = malloc((size_t)s.layers * M * sizeof(double));
            if (eplb_gpu_loads(&s, ls.w[f], off.phy2log, off.logcnt, lo) ||
                eplb_gpu_loads(&s, ls.w[f], pon.phy2log, pon.logcnt, ln))
                die("gpu loads");
            for (int l = 0; l < s.layers; l++) {
                double mo = 0, mn = 0;
                for (int g = 0; g < M; g++) {
                    mo = lo[(size_t)l * M + g] > mo ? lo[(size_t)l * M + g]
                                                    : mo;
                    mn = ln[(size_t)l * M + g] > mn ? ln[(size_t)l * M + g]
                                                    : mn;
                }
                lower += mn > mo * (1 + 1e-6);
            }
            free(lo);
            free(ln);
            double bo = balancedness(&s, ls.w[f], &off);
            double bn = balancedness(&s, ls.w[f], &pon);
            printf("%-26s %-22s %7ld %7ld %4ld->%-4ld %9.4f %9.4f %6d %8.1f\n",
                   ls.names[f], config, d_off, d_on, lay_off, lay_on, bo, bn,
                   lower, (t_on - t_off) / 1e3);
            json_record(b, "{\"kind\":\"duplicates\",\"workload\":\"%s\","
                        "\"config\":\"%s\",\"slots\":%ld,\"dup_off\":%ld,"
                        "\"dup_on\":%ld,\"layers_off\":%ld,"
                        "\"layers_on\":%ld,\"balanced_off\":%.6f,"
                        "\"balanced_on\":%.6f,\"layers_lower\":%d,"
                        "\"warm_us_off\":%.1f,\"warm_us_on\":%.1f}",
                        ls.names[f], config, (long)s.layers * s.num_replicas,
                        d_off, d_on, lay_off, lay_on, bo, bn, lower, t_off,
                        t_on);
            sum_off += d_off;
            sum_on += d_on;
            slots += (long)s.layers * s.num_replicas;
            lower_all += lower;
            gain += (bn - bo) / nf;
            pass_ms += (t_on - t_off) / 1e3 / nf;
            plan_free(&off);
            plan_free(&pon);
        }
        printf("%-26s %-22s %6.2f%% %6.2f%% %9s %+9.4f %9s %6ld %8.1f\n",
               "(all files: % of slots)", config, 100.0 * sum_off / slots,
               100.0 * sum_on / slots, "", gain, "(gain)", lower_all,
               pass_ms);
    }
    loadset_free(&ls);
}

/* ---- main ------------------------------------------------------------ */

static int find_engines(engine *en, int cands, int rounds, const char *types)
{
    int n = 0;
    eplb_options o;
    eplb_options_default(&o);
    o.candidates = cands;
    o.swap_rounds = rounds;
    o.backend = EPLB_BACKEND_REFERENCE;
    en[n].label = "reference";
    en[n].opts = o;
    snprintf(en[n].device, sizeof en[n].device, "host CPU (one thread)");
    n++;
    static const char *const kinds[] = {"gpu", "accelerator", "cpu"};
    static const char *const labels[] = {"opencl-gpu", "opencl-acc",
                                         "opencl-cpu"};
    for (int k = 0; k < 3; k++) {
        if (!strstr(types, kinds[k]))
            continue;
        o.backend = EPLB_BACKEND_OPENCL;
        o.device_type = kinds[k];
        o.enforce_device = 1;
        eplb_context *ctx;
        if (eplb_context_create(&ctx, &o) != EPLB_OK)
            continue;
        en[n].label = labels[k];
        en[n].opts = o;
        snprintf(en[n].device, sizeof en[n].device, "%s",
                 eplb_context_device(ctx));
        eplb_context_destroy(ctx);
        n++;
        /* the same device with CLBlast's GEMV for the group loads */
        o.use_clblast = 1;
        if (eplb_context_create(&ctx, &o) == EPLB_OK) {
            static const char *const ocl_labels[] = {
                "gpu+clblast", "acc+clblast", "cpu+clblast"};
            en[n] = en[n - 1];
            en[n].label = ocl_labels[k];
            en[n].opts = o;
            eplb_context_destroy(ctx);
            n++;
        }
        o.use_clblast = 0;
    }
    return n;
}

int main(int argc, char **argv)
{
    bench b = {0};
    b.workloads = "../shared/workloads";
    const char *json_path = NULL, *types = "gpu,accelerator,cpu";
    const char *sections = "speed,quality,replan,failure,duplicates,sweep";
    int cands = 64, rounds = 20;
    static const struct option longopts[] = {
        {"quick", no_argument, 0, 'q'},
        {"json", required_argument, 0, 'j'},
        {"workloads", required_argument, 0, 'w'},
        {"device-types", required_argument, 0, 't'},
        {"sections", required_argument, 0, 's'},
        {"sweep-from", required_argument, 0, 'f'},
        {"candidates", required_argument, 0, 'c'},
        {"swap-rounds", required_argument, 0, 'r'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': b.quick = 1; break;
        case 'j': json_path = optarg; break;
        case 'w': b.workloads = optarg; break;
        case 't': types = optarg; break;
        case 's': sections = optarg; break;
        case 'f': b.sweep_from = atoi(optarg); break;
        case 'c': cands = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: eplb-bench [--quick] [--json FILE] [--workloads "
                    "DIR] [--device-types gpu,accelerator,cpu]\n"
                    "                  [--sections speed,quality,replan,failure,"
                    "duplicates,sweep]\n"
                    "                  [--sweep-from ROW]\n"
                    "                  [--candidates C] [--swap-rounds T]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    const char *env_w = getenv("EPLB_WORKLOADS_DIR");
    if (env_w && *env_w && strcmp(b.workloads, "../shared/workloads") == 0)
        b.workloads = env_w;
    char probe[4096];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/deepseek-v3", b.workloads);
    int have_real = stat(probe, &st) == 0 && S_ISDIR(st.st_mode);
    /* Rows appear as they are measured, even into a pipe or file. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    b.floor_runs = b.quick ? 200 : 3000;
    b.warm_runs = b.quick ? 20 : 500;
    if (json_path) {
        b.json = fopen(json_path, "w");
        if (!b.json) {
            fprintf(stderr, "eplb-bench: cannot write %s\n", json_path);
            return 2;
        }
        time_t now = time(NULL);
        char date[32];
        strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
        fprintf(b.json, "{\"version\":\"%s\",\"date\":\"%s\",\"quick\":%d,"
                "\"runs\":[", eplb_version_string(), date, b.quick);
        b.json_first = 1;
    }
    engine en[8];
    int n_en = find_engines(en, cands, rounds, types);
    printf("# eplb-bench %s%s\n", eplb_version_string(),
           b.quick ? " (quick)" : "");
    for (int i = 0; i < n_en; i++)
        printf("engine %-12s %s\n", en[i].label, en[i].device);
    if (!have_real)
        printf("(real workloads not found under %s: generated loads only)\n",
               b.workloads);

    if (strstr(sections, "speed"))
        speed_section(&b, en, n_en, have_real, cands, rounds);
    if (have_real && strstr(sections, "quality"))
        quality_tables(&b, &en[n_en > 1 ? 1 : 0].opts); /* plans are the
                                                          same on all */
    if (have_real && strstr(sections, "replan")) {
        float *w[NFILES];
        int L[NFILES], E[NFILES], nf = b.quick ? 1 : NFILES;
        for (int f = 0; f < nf; f++)
            if (!(w[f] = load_real(&b, files[f], &L[f], &E[f])))
                return 1;
        /* Plans are the same on every engine: the fastest one plans, in
         * the deterministic mode and in the candidate mode. */
        eplb_options det = en[n_en > 1 ? 1 : 0].opts;
        det.candidates = 1;
        det.swap_rounds = 0;
        replan_tables(&b, &det, w, L, E, nf);
        if (!b.quick)
            replan_tables(&b, &en[n_en > 1 ? 1 : 0].opts, w, L, E, nf);
        for (int f = 0; f < nf; f++)
            free(w[f]);
    }
    /* the sweep: each OpenCL device once (or the host when none) */
    engine swept[8];
    int n_swept = 0;
    for (int i = 1; i < n_en; i++)
        if (!en[i].opts.use_clblast)
            swept[n_swept++] = en[i];
    if (n_swept == 0)
        swept[n_swept++] = en[0];
    if (strstr(sections, "failure"))
        failure_section(&b, &en[0].opts, have_real);
    if (strstr(sections, "duplicates"))
        duplicate_section(&b, &en[0].opts, have_real);
    if (strstr(sections, "sweep"))
        sweep(&b, swept, n_swept);
    if (b.json) {
        fputs("\n]}\n", b.json);
        fclose(b.json);
    }
    return 0;
}
