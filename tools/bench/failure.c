/* eplb-bench's failure section: each single GPU of the first reference
 * config dead in turn, from the plan in service before the failure: the
 * global policy over the live GPUs (SGLang's answer), the hierarchical
 * plan over the live GPUs, and the re-plan from the plan in service.
 * Means over the loads, so that one file's luck does not decide. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "planstats.h"

/* The figures of one row, in the table's column order. */
enum {
    F_BEFORE,
    F_GLOBAL,
    F_HIER,
    F_FROM_CUR,
    F_WHOLE_GLOBAL,
    F_WHOLE_HIER,
    F_COPIES_FRESH,
    F_COPIES_FROM_CUR,
    F_COLUMNS
};

/* Share of (layer, group) pairs kept on one node. */
static double share_whole(const eplb_shape *s, const plan_buf *p)
{
    return (double)plan_groups_on_one_node(s, p->phy2log) /
           ((double)s->layers * s->num_groups);
}

/* One file with GPU `dead` lost: adds its figures / nf into acc. */
static void one_failure(const eplb_options *o, const eplb_options *glob,
                        const eplb_shape *s, const float *w, uint8_t *mask,
                        int dead, int nf, double *acc)
{
    plan_buf before, pg, ph, pc;
    memset(mask, 1, (size_t)s->num_gpus);
    plan_make(o, s, w, NULL, NULL, &before);
    mask[dead] = 0;
    plan_make(glob, s, w, NULL, mask, &pg);
    plan_make(o, s, w, NULL, mask, &ph);
    plan_make(o, s, w, before.phy2log, mask, &pc);
    long cf, cc;
    if (eplb_copies(s, before.phy2log, ph.phy2log, NULL, &cf) ||
        eplb_copies(s, before.phy2log, pc.phy2log, NULL, &cc))
        die("copies");
    /* copies are counted against what the dead GPU held */
    double own = (double)s->layers * (s->num_replicas / s->num_gpus);
    double v[F_COLUMNS] = {balancedness(s, w, &before),
                           balancedness(s, w, &pg),
                           balancedness(s, w, &ph),
                           balancedness(s, w, &pc),
                           share_whole(s, &pg), share_whole(s, &ph),
                           cf / own, cc / own};
    for (int i = 0; i < F_COLUMNS; i++)
        acc[i] += v[i] / nf;
    plan_free(&before);
    plan_free(&pg);
    plan_free(&ph);
    plan_free(&pc);
}

/* A row of sums v over `rows` rows, as their means. */
static void print_row(const char *first, const double *v, int rows)
{
    printf("%4s %9.4f %9.4f %9.4f %9.4f %8.1f%% %8.1f%% %8.2fx %8.2fx\n",
           first, v[F_BEFORE] / rows, v[F_GLOBAL] / rows, v[F_HIER] / rows,
           v[F_FROM_CUR] / rows, 100 * v[F_WHOLE_GLOBAL] / rows,
           100 * v[F_WHOLE_HIER] / rows, v[F_COPIES_FRESH] / rows,
           v[F_COPIES_FROM_CUR] / rows);
}

void failure_section(bench *b, const eplb_options *o)
{
    loadset ls;
    loadset_read(b, &ls);
    int nf = ls.n;
    eplb_options glob = *o;
    glob.policy = EPLB_POLICY_GLOBAL;
    char config[CONFIG_NAME_LEN];
    reference_name(config, 0);
    int M = config_shape(0, 0, 0).num_gpus;
    uint8_t *mask = xmalloc((size_t)M);
    printf("\n## One GPU dead (%s; mean over %d load file%s; copies "
           "relative to the dead GPU's own slots)\n", config, nf,
           nf == 1 ? "" : "s");
    printf("%4s %9s %9s %9s %9s %9s %9s %9s %9s\n", "dead", "before",
           "global", "hier.", "from-cur", "grp/node", "grp/node", "copies",
           "copies");
    printf("%4s %9s %9s %9s %9s %9s %9s %9s %9s\n", "GPU", "", "(SGLang)",
           "fresh", "", "global", "hier.", "fresh", "from-cur");
    double tot[F_COLUMNS] = {0};
    int rows = 0;
    /* --quick: the first and the last GPU only */
    for (int dead = 0; dead < M; dead += b->quick ? M - 1 : 1) {
        double acc[F_COLUMNS] = {0};
        for (int f = 0; f < nf; f++) {
            eplb_shape s = config_shape(0, ls.L[f], ls.E[f]);
            one_failure(o, &glob, &s, ls.w[f], mask, dead, nf, acc);
        }
        char gpu[16];
        snprintf(gpu, sizeof gpu, "%d", dead);
        print_row(gpu, acc, 1);
        json_record(b, "{\"kind\":\"failure\",\"dead_gpu\":%d,\"files\":%d,"
                    "\"before\":%.6f,\"global_live\":%.6f,"
                    "\"hierarchical_live\":%.6f,\"from_current\":%.6f,"
                    "\"groups_one_node_global\":%.4f,"
                    "\"groups_one_node_hierarchical\":%.4f,"
                    "\"copies_fresh_x_own\":%.3f,"
                    "\"copies_from_current_x_own\":%.3f}",
                    dead, nf, acc[F_BEFORE], acc[F_GLOBAL], acc[F_HIER],
                    acc[F_FROM_CUR], acc[F_WHOLE_GLOBAL], acc[F_WHOLE_HIER],
                    acc[F_COPIES_FRESH], acc[F_COPIES_FROM_CUR]);
        for (int i = 0; i < F_COLUMNS; i++)
            tot[i] += acc[i];
        rows++;
    }
    print_row("mean", tot, rows);
    free(mask);
    loadset_free(&ls);
}
