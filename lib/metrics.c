/* How good is a plan: GPU loads, balancedness (mean / max GPU load), the
 * bounds that no plan can beat, and migration between plans
 * (doc/ALGORITHM.md section 7).
 * Judging is done in double; the plans themselves are computed in float. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Where exact group-split enumeration stops and the weak bound starts. */
#define BOUND_MAX_SUBSETS 50000.0
#define BOUND_MAX_VISITS 2000000L

/* Checks one layer of a plan. A GPU whose slots are all -1 is dead
 * (masked plans leave them so): live[g] is 0. Any other -1, an id out of
 * range, a logcnt that is not the expert's slot count, or an expert with
 * no slot is EPLB_ERR_BAD_PLAN: judging such a plan would flatter it.
 * seen is [E] scratch. */
static int layer_check(const eplb_shape *shape, int l, const int32_t *p2l,
                       const int32_t *cnt, int *seen, uint8_t *live)
{
    int E = shape->experts, P = shape->num_replicas, M = shape->num_gpus,
        ppg = P / M;
    memset(seen, 0, (size_t)E * sizeof(int));
    for (int g = 0; g < M; g++) {
        int empty = 0;
        for (int r = 0; r < ppg; r++) {
            int e = p2l[g * ppg + r];
            if (e == -1)
                empty++;
            else if (e < 0 || e >= E)
                return eplbi_fail(EPLB_ERR_BAD_PLAN,
                                  "phy2log[%d][%d] is %d: expert ids are "
                                  "0..%d (-1 only for every slot of a dead "
                                  "GPU)", l, g * ppg + r, e, E - 1);
            else
                seen[e]++;
        }
        if (empty && empty != ppg)
            return eplbi_fail(EPLB_ERR_BAD_PLAN,
                              "phy2log layer %d: GPU %d has %d empty slots "
                              "of %d: only a dead GPU (all slots -1) may "
                              "hold none", l, g, empty, ppg);
        live[g] = empty == 0;
    }
    for (int e = 0; e < E; e++) {
        if (seen[e] == 0)
            return eplbi_fail(EPLB_ERR_BAD_PLAN,
                              "phy2log layer %d holds expert %d in no slot: "
                              "every expert needs at least one", l, e);
        if (cnt[e] != seen[e])
            return eplbi_fail(EPLB_ERR_BAD_PLAN,
                              "logcnt[%d][%d] is %d but phy2log holds expert "
                              "%d in %d slots", l, e, (int)cnt[e], e,
                              seen[e]);
    }
    return EPLB_OK;
}

/* Validates loads and the whole plan, then fills load [L][M] (0 for a dead
 * GPU) and live [L][M]; writes no load on failure. */
static int plan_loads(const eplb_shape *shape, const float *weight,
                      const int32_t *phy2log, const int32_t *logcnt,
                      double *load, uint8_t *live)
{
    int rc = validate_loads(shape, weight);
    if (rc)
        return rc;
    int L = shape->layers, E = shape->experts, P = shape->num_replicas,
        M = shape->num_gpus;
    int *seen = malloc((size_t)E * sizeof(int));
    if (!seen)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int l = 0; l < L && rc == EPLB_OK; l++)
        rc = layer_check(shape, l, phy2log + (size_t)l * P,
                         logcnt + (size_t)l * E, seen, live + (size_t)l * M);
    free(seen);
    if (rc)
        return rc;
    int ppg = P / M;
    for (int l = 0; l < L; l++) {
        const float *w = weight + (size_t)l * E;
        const int32_t *p2l = phy2log + (size_t)l * P;
        const int32_t *cnt = logcnt + (size_t)l * E;
        for (int g = 0; g < M; g++) {
            double s = 0.0;
            for (int r = 0; live[(size_t)l * M + g] && r < ppg; r++) {
                int e = p2l[g * ppg + r];
                s += (double)w[e] / cnt[e];
            }
            load[(size_t)l * M + g] = s;
        }
    }
    return EPLB_OK;
}

int eplb_gpu_loads(const eplb_shape *shape, const float *weight,
                   const int32_t *phy2log, const int32_t *logcnt,
                   double *gpu_load)
{
    eplbi_clear_error();
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (!weight || !phy2log || !logcnt || !gpu_load)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "weight, phy2log, logcnt and gpu_load must not be "
                          "NULL");
    uint8_t *live = malloc((size_t)shape->layers * shape->num_gpus);
    if (!live)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    rc = plan_loads(shape, weight, phy2log, logcnt, gpu_load, live);
    free(live);
    return rc;
}

/* Mean over the live GPUs (all when live is NULL) over the largest. */
static double layer_balancedness(const double *load, const uint8_t *live,
                                 int M)
{
    double sum = 0.0, mx = 0.0;
    int n = 0;
    for (int g = 0; g < M; g++) {
        if (live && !live[g])
            continue;
        n++;
        sum += load[g];
        if (load[g] > mx)
            mx = load[g];
    }
    return mx > 0.0 ? sum / n / mx : 1.0;
}

/* r*: the least possible largest load per replica when n experts share p
 * slots. Greedy replication (largest load per replica first) attains it. */
static double least_max_per_replica(const float *w, int n, int p)
{
    int *buf = malloc((size_t)p * 2 * sizeof(int) + (size_t)n * 2 * sizeof(int));
    float *ratio = malloc((size_t)n * sizeof(float));
    double mx = 0.0;
    if (!buf || !ratio) {
        free(buf);
        free(ratio);
        return 0.0; /* a weaker (still valid) bound */
    }
    int *slot_item = buf, *slot_rank = buf + p, *cnt = buf + 2 * p,
        *heap = cnt + n;
    replicate_reference(w, n, p, slot_item, slot_rank, cnt, ratio, heap);
    for (int e = 0; e < n; e++)
        if ((double)w[e] / cnt[e] > mx)
            mx = (double)w[e] / cnt[e];
    free(buf);
    free(ratio);
    return mx;
}

static double sum_of(const float *w, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += w[i];
    return s;
}

/* Exhaustive search over the ways to give each node gpn groups. */
typedef struct split_search {
    const float *w;
    int G, gs, gpn, gn, ppn;
    float *node_w;
    uint64_t *memo_key;
    double *memo_val;
    size_t memo_cap;
    double best;
    long visits;
} split_search;

static double node_value(split_search *s, uint64_t mask)
{
    size_t h = (size_t)((mask * 0x9E3779B97F4A7C15ull) >> 17) % s->memo_cap;
    while (s->memo_key[h]) {
        if (s->memo_key[h] == mask)
            return s->memo_val[h];
        h = (h + 1) % s->memo_cap;
    }
    int n = 0;
    for (int g = 0; g < s->G; g++)
        if (mask >> g & 1)
            for (int j = 0; j < s->gs; j++)
                s->node_w[n++] = s->w[g * s->gs + j];
    double load = sum_of(s->node_w, n) / s->gn;
    double r = least_max_per_replica(s->node_w, n, s->ppn);
    double v = load > r ? load : r;
    s->memo_key[h] = mask;
    s->memo_val[h] = v;
    return v;
}

static void split_rec(split_search *s, uint64_t used, double worst);

/* Completes the node that starts with the lowest free group. */
static void choose_rest(split_search *s, uint64_t used, uint64_t node,
                        int from, int need, double worst)
{
    if (s->visits++ > BOUND_MAX_VISITS)
        return;
    if (need == 0) {
        double v = node_value(s, node);
        if (v > worst)
            worst = v;
        if (worst < s->best)
            split_rec(s, used | node, worst);
        return;
    }
    for (int g = from; g < s->G; g++)
        if (!(used >> g & 1))
            choose_rest(s, used, node | 1ull << g, g + 1, need - 1, worst);
}

static void split_rec(split_search *s, uint64_t used, double worst)
{
    int g0 = 0;
    while (g0 < s->G && (used >> g0 & 1))
        g0++;
    if (g0 == s->G) {
        if (worst < s->best)
            s->best = worst;
        return;
    }
    choose_rest(s, used, 1ull << g0, g0 + 1, s->gpn - 1, worst);
}

static double binomial(int n, int k)
{
    double c = 1.0;
    for (int i = 1; i <= k; i++)
        c = c * (n - k + i) / i;
    return c;
}

/* The best worst-node figure over group splits, or -1 when too many. */
static double hierarchical_peak(const plan_dims *d, const float *w)
{
    if (d->G > 64 || binomial(d->G, d->gpn) > BOUND_MAX_SUBSETS)
        return -1.0;
    split_search s = {w, d->G, d->gs, d->gpn, d->gn, d->ppn, NULL, NULL,
                      NULL, 0, INFINITY, 0};
    s.memo_cap = (size_t)(binomial(d->G, d->gpn) * 2) + 1;
    s.node_w = malloc((size_t)d->lpn * sizeof(float));
    s.memo_key = calloc(s.memo_cap, sizeof(uint64_t));
    s.memo_val = malloc(s.memo_cap * sizeof(double));
    double peak = -1.0;
    if (s.node_w && s.memo_key && s.memo_val) {
        split_rec(&s, 0, 0.0);
        if (s.visits <= BOUND_MAX_VISITS)
            peak = s.best;
    }
    free(s.node_w);
    free(s.memo_key);
    free(s.memo_val);
    return peak;
}

static double layer_bound_dims(const plan_dims *d, const float *w, int *weak)
{
    double total = sum_of(w, d->E);
    *weak = 0;
    if (!(total > 0.0))
        return 1.0;
    double avg = total / d->M;
    double peak = -1.0;
    if (d->N > 1 || d->G > 1) {
        peak = hierarchical_peak(d, w);
        if (peak < 0.0)
            *weak = 1;
    }
    if (peak < 0.0) {
        /* Global bound; for the hierarchical policy it drops the group
         * constraint and is weaker, hence the label. */
        double r = least_max_per_replica(w, d->E, d->P);
        peak = avg > r ? avg : r;
    }
    return peak > 0.0 ? avg / peak : 1.0;
}

/* The bound of a plan over `live` of the M GPUs (some dead): the global
 * bound over the live GPUs' slots. A masked hierarchical plan may fall back
 * to the global policy (lib/mask.c), so no group constraint is assumed:
 * under the hierarchical policy the bound is labelled weak. */
static double masked_bound_dims(const plan_dims *d, const float *w, int live,
                                int *weak)
{
    double total = sum_of(w, d->E);
    *weak = d->N > 1 || d->G > 1;
    if (!(total > 0.0))
        return 1.0;
    double avg = total / live;
    double r = least_max_per_replica(w, d->E, live * d->ppg);
    double peak = avg > r ? avg : r;
    return peak > 0.0 ? avg / peak : 1.0;
}

double eplb_layer_bound(const eplb_shape *shape, eplb_policy policy,
                        const float *layer_weight, int *weak)
{
    eplbi_clear_error();
    int dummy;
    if (!weak)
        weak = &dummy;
    *weak = 0;
    int pol = eplb_resolve_policy(policy, shape);
    if (pol < 0)
        return pol;
    if (!layer_weight)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT, "layer_weight is NULL: "
                          "pass one layer's %d loads", shape->experts);
    /* One layer's loads, checked as rebalance checks them. */
    eplb_shape one = *shape;
    one.layers = 1;
    int rc = validate_loads(&one, layer_weight);
    if (rc)
        return rc;
    plan_dims d;
    plan_dims_init(&d, shape, pol);
    return layer_bound_dims(&d, layer_weight, weak);
}

/* eplb_quality is an output struct (eplb_cl.h): at least its first
 * result field. */
static int check_quality_out(const eplb_quality *out)
{
    return out_struct_check(out, offsetof(eplb_quality, balancedness_mean) +
                            sizeof out->balancedness_mean, sizeof *out,
                            "eplb_quality");
}

int eplb_plan_quality(const eplb_shape *shape, eplb_policy policy,
                      const float *weight, const int32_t *phy2log,
                      const int32_t *logcnt, eplb_quality *out)
{
    eplbi_clear_error();
    int pol = eplb_resolve_policy(policy, shape);
    if (pol < 0)
        return pol;
    if (!weight || !phy2log || !logcnt || !out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "weight, phy2log, logcnt and out must not be NULL");
    int rc = check_quality_out(out);
    if (rc)
        return rc;
    plan_dims d;
    plan_dims_init(&d, shape, pol);
    double *load = malloc((size_t)d.L * d.M * sizeof(double));
    uint8_t *live = malloc((size_t)d.L * d.M);
    if (!load || !live) {
        free(load);
        free(live);
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    rc = plan_loads(shape, weight, phy2log, logcnt, load, live);
    if (rc) {
        free(load);
        free(live);
        return rc;
    }
    eplb_quality q = {0};
    q.balancedness_worst = INFINITY;
    for (int l = 0; l < d.L; l++) {
        const uint8_t *lv = live + (size_t)l * d.M;
        int n_live = 0;
        for (int g = 0; g < d.M; g++)
            n_live += lv[g];
        double b = layer_balancedness(load + (size_t)l * d.M, lv, d.M);
        const float *w = weight + (size_t)l * d.E;
        int weak;
        double bound = n_live < d.M ? masked_bound_dims(&d, w, n_live, &weak)
                                    : layer_bound_dims(&d, w, &weak);
        q.balancedness_mean += b / d.L;
        q.bound_mean += bound / d.L;
        q.bound_is_weak |= weak;
        if (b < q.balancedness_worst) {
            q.balancedness_worst = b;
            q.worst_layer = l;
        }
    }
    q.share_of_bound =
        q.bound_mean > 0.0 ? q.balancedness_mean / q.bound_mean : 0.0;
    out_struct_write(out, &q);
    free(load);
    free(live);
    return EPLB_OK;
}

int eplb_identity_quality(const eplb_shape *shape, const float *weight,
                          eplb_quality *out)
{
    eplbi_clear_error();
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (!weight || !out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT, "weight and out must not "
                          "be NULL");
    rc = check_quality_out(out);
    if (rc)
        return rc;
    rc = validate_loads(shape, weight);
    if (rc)
        return rc;
    /* Experts in order over the GPUs, one slot each. When E is not a
     * multiple of M the last GPUs get one expert fewer. */
    int L = shape->layers, E = shape->experts, M = shape->num_gpus;
    double *load = calloc((size_t)M, sizeof(double));
    if (!load)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    eplb_quality q = {0};
    q.balancedness_worst = INFINITY;
    for (int l = 0; l < L; l++) {
        memset(load, 0, (size_t)M * sizeof(double));
        for (int e = 0; e < E; e++)
            load[(long)e * M / E] += weight[(size_t)l * E + e];
        double b = layer_balancedness(load, NULL, M);
        q.balancedness_mean += b / L;
        if (b < q.balancedness_worst) {
            q.balancedness_worst = b;
            q.worst_layer = l;
        }
    }
    free(load);
    out_struct_write(out, &q);
    return EPLB_OK;
}
