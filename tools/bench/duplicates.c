/* eplb-bench's duplicate-replica section: distinct_per_gpu off and on, per
 * file and config: duplicate slots (a GPU holding one expert twice adds a
 * slot but no capacity), the layers that hold any, balancedness, the
 * layers whose balancedness fell (the option promises none) and what the
 * extra pass costs. */
#include <stdlib.h>

#include "bench.h"
#include "planstats.h"

/* Most warm calls warm_least times (the full run's count). */
#define LEAST_RUNS 9

/* Least time of `runs` warm calls of a new context with options o, in
 * microseconds: the least is the figure other work on the machine
 * disturbs least. */
static double warm_least(const eplb_options *o, const eplb_shape *s,
                         const float *w, int runs)
{
    eplb_context *ctx;
    plan_buf p;
    plan_alloc(&p, s);
    if (eplb_context_create(&ctx, o))
        die("context");
    double t[LEAST_RUNS], least = 0.0;
    time_calls(ctx, s, w, NULL, &p, runs, t);
    for (int i = 0; i < runs; i++)
        least = i == 0 || t[i] < least ? t[i] : least;
    eplb_context_destroy(ctx);
    plan_free(&p);
    return least;
}

/* The largest GPU load of each layer, into peak[layers]. */
static void layer_peaks(const eplb_shape *s, const float *w,
                        const plan_buf *p, double *peak)
{
    int M = s->num_gpus;
    double *load = xmalloc((size_t)s->layers * M * sizeof(double));
    if (eplb_gpu_loads(s, w, p->phy2log, p->logcnt, load))
        die("gpu loads");
    for (int l = 0; l < s->layers; l++) {
        peak[l] = 0;
        for (int g = 0; g < M; g++)
            if (load[(size_t)l * M + g] > peak[l])
                peak[l] = load[(size_t)l * M + g];
    }
    free(load);
}

/* Layers whose largest GPU load is higher in `on` than in `off` (beyond
 * rounding). */
static int layers_lower(const eplb_shape *s, const float *w,
                        const plan_buf *off, const plan_buf *on)
{
    double *po = xmalloc((size_t)s->layers * sizeof(double));
    double *pn = xmalloc((size_t)s->layers * sizeof(double));
    layer_peaks(s, w, off, po);
    layer_peaks(s, w, on, pn);
    int lower = 0;
    for (int l = 0; l < s->layers; l++)
        lower += pn[l] > po[l] * (1 + 1e-6);
    free(po);
    free(pn);
    return lower;
}

void duplicate_section(bench *b, const eplb_options *o)
{
    loadset ls;
    loadset_read(b, &ls);
    int nf = ls.n;
    eplb_options on = *o;
    on.distinct_per_gpu = 1;
    /* The pass's cost: the deterministic mode (about a millisecond here)
     * with and without it, so that the difference stands out of the
     * timing noise. */
    eplb_options det = deterministic(o), det_on = deterministic(&on);
    int runs = b->quick ? 3 : LEAST_RUNS;
    printf("\n## Duplicate replicas (a GPU holding one expert twice), "
           "distinct_per_gpu off -> on\n");
    printf("%-26s %-22s %7s %7s %9s %9s %9s %6s %8s\n", "workload", "config",
           "dup", "dup", "layers", "balanced", "balanced", "lower",
           "on-off");
    printf("%-26s %-22s %7s %7s %9s %9s %9s %6s %8s\n", "", "", "off", "on",
           "off->on", "off", "on", "layers", "pass ms");
    for (int c = 0; c < (b->quick ? 1 : NCONFIGS); c++) {
        char config[CONFIG_NAME_LEN];
        reference_name(config, c);
        long sum_off = 0, sum_on = 0, slots = 0, lower_all = 0;
        double gain = 0, pass_ms = 0;
        for (int f = 0; f < nf; f++) {
            eplb_shape s = config_shape(c, ls.L[f], ls.E[f]);
            plan_buf off, pon;
            plan_make(o, &s, ls.w[f], NULL, NULL, &off);
            plan_make(&on, &s, ls.w[f], NULL, NULL, &pon);
            double t_off = warm_least(&det, &s, ls.w[f], runs);
            double t_on = warm_least(&det_on, &s, ls.w[f], runs);
            long lay_off, lay_on;
            long d_off = plan_duplicate_slots(&s, off.phy2log, &lay_off);
            long d_on = plan_duplicate_slots(&s, pon.phy2log, &lay_on);
            int lower = layers_lower(&s, ls.w[f], &off, &pon);
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
