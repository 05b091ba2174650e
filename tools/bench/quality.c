/* eplb-bench's quality section: how balanced the plans of the
 * deterministic mode and of the candidate mode are on the recorded loads,
 * beside the bound no plan can beat; then out of sample, a plan made on
 * one file judged on another, as a plan in service meets new traffic. */
#include "bench.h"

/* Plan-from -> judged-on pairs of bench_files: a prefill file judged on
 * one of about its input length, and decode against prefill of the same
 * lengths both ways. */
static const int pairs[][2] = {{5, 4}, {11, 10}, {8, 7}, {0, 4}, {4, 0}};

static void in_sample(bench *b, const eplb_options *det,
                      const eplb_options *cand, const loadset *ls)
{
    int nf = ls->n;
    for (int c = 0; c < NCONFIGS; c++) {
        char config[CONFIG_NAME_LEN];
        reference_name(config, c);
        double sum_d = 0, sum_c = 0, sum_share = 0;
        for (int f = 0; f < nf; f++) {
            eplb_shape s = config_shape(c, ls->L[f], ls->E[f]);
            plan_buf pd, pc;
            plan_make(det, &s, ls->w[f], NULL, NULL, &pd);
            plan_make(cand, &s, ls->w[f], NULL, NULL, &pc);
            eplb_quality qb = {.struct_size = sizeof qb}, qd, qc;
            if (eplb_identity_quality(&s, ls->w[f], &qb))
                die("identity quality");
            plan_judge(&s, ls->w[f], &pd, &qd);
            plan_judge(&s, ls->w[f], &pc, &qc);
            printf("%-24s %-22s %8.4f %8.4f %8.4f %8.4f %8.4f %7.1f%%%s\n",
                   ls->names[f], config, qb.balancedness_mean,
                   qd.balancedness_mean, qc.balancedness_mean,
                   qc.balancedness_worst, qc.bound_mean,
                   100 * qc.share_of_bound, qc.bound_is_weak ? " (weak)" : "");
            json_record(b, "{\"kind\":\"quality\",\"workload\":\"%s\","
                        "\"config\":\"%s\",\"before\":%.6f,"
                        "\"deterministic\":%.6f,\"deterministic_worst\":%.6f,"
                        "\"candidates\":%.6f,\"candidates_worst\":%.6f,"
                        "\"bound\":%.6f,\"share_of_bound\":%.6f,"
                        "\"bound_weak\":%d}",
                        ls->names[f], config, qb.balancedness_mean,
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
               "(mean over files)", config, "", sum_d / nf, sum_c / nf, "",
               "", 100 * sum_share / nf);
    }
}

static void out_of_sample(bench *b, const eplb_options *det,
                          const eplb_options *cand, const loadset *ls)
{
    char config[CONFIG_NAME_LEN];
    reference_name(config, 0);
    printf("\n## Out of sample (plan made on the first, judged on the "
           "second; %s)\n", config);
    printf("%-52s %8s %8s %8s\n", "plan from -> judged on", "determ.",
           "cand.", "in-samp.");
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int a = pairs[i][0], z = pairs[i][1];
        if (a >= ls->n || z >= ls->n)
            continue;
        eplb_shape s = config_shape(0, ls->L[a], ls->E[a]);
        plan_buf pd, pc, pz;
        plan_make(det, &s, ls->w[a], NULL, NULL, &pd);
        plan_make(cand, &s, ls->w[a], NULL, NULL, &pc);
        plan_make(cand, &s, ls->w[z], NULL, NULL, &pz);
        double bd = balancedness(&s, ls->w[z], &pd);
        double bc = balancedness(&s, ls->w[z], &pc);
        double bz = balancedness(&s, ls->w[z], &pz);
        char label[128];
        snprintf(label, sizeof label, "%s -> %s", ls->names[a],
                 ls->names[z]);
        printf("%-52s %8.4f %8.4f %8.4f\n", label, bd, bc, bz);
        json_record(b, "{\"kind\":\"out_of_sample\",\"from\":\"%s\","
                    "\"to\":\"%s\",\"deterministic\":%.6f,"
                    "\"candidates\":%.6f,\"in_sample\":%.6f}",
                    ls->names[a], ls->names[z], bd, bc, bz);
        plan_free(&pd);
        plan_free(&pc);
        plan_free(&pz);
    }
}

void quality_section(bench *b, const eplb_options *o)
{
    eplb_options det = deterministic(o);
    printf("\n## Quality on the real loads (mean over layers; bound = no "
           "plan can beat it)\n");
    printf("%-24s %-22s %8s %8s %8s %8s %8s %8s\n", "workload", "config",
           "before", "determ.", "cand.", "worst", "bound", "% bound");
    loadset ls;
    /* every file or none: the means are over all of them */
    if (loadset_real(b, NFILES, &ls) == NFILES) {
        in_sample(b, &det, o, &ls);
        out_of_sample(b, &det, o, &ls);
    }
    loadset_free(&ls);
}
