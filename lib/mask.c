/* Plans over the GPUs that are still usable. A dead GPU's slots hold -1;
 * the live GPUs share every expert.
 *
 * Global policy: the backend plans one problem of `live` GPUs (SGLang's
 * answer to a failure). Hierarchical policy: nodes may now differ in live
 * GPUs, so each node gets a number of whole groups and of single experts
 * in proportion to its live GPUs (the same for every layer); each layer
 * gives its groups to nodes greedily, splitting over nodes only the groups
 * that no node has room for whole; then the backend plans every node's
 * experts over that node's live GPUs as a global sub-problem, so both
 * backends give the same plan. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int count_live(const uint8_t *mask, int from, int n)
{
    int live = 0;
    for (int g = from; g < from + n; g++)
        live += mask[g] != 0;
    return live;
}

int mask_check(const plan_dims *d, const uint8_t *mask)
{
    int live = count_live(mask, 0, d->M);
    if (live == 0)
        return eplbi_fail(EPLB_ERR_BAD_MASK,
                          "gpu_mask marks all %d GPUs dead: at least one GPU "
                          "must be usable", d->M);
    if ((long)live * d->ppg < d->E)
        return eplbi_fail(EPLB_ERR_BAD_MASK,
                          "gpu_mask leaves %d usable GPUs x %d slots = %d "
                          "slots for %d experts: every expert needs a slot",
                          live, d->ppg, live * d->ppg, d->E);
    return EPLB_OK;
}

/* Dims of a global problem of `experts` experts over `gpus` GPUs with the
 * slots per GPU of d, for `layers` layers. */
static plan_dims sub_dims(const plan_dims *d, int layers, int experts,
                          int gpus)
{
    plan_dims s = *d;
    s.L = layers;
    s.G = s.N = s.gpn = 1;
    s.E = s.gs = s.lpn = experts;
    s.M = s.gn = gpus;
    s.P = s.ppn = gpus * d->ppg;
    s.maxrep = s.P - s.E + 1;
    return s;
}

/* A backend plan of sub-problem s; on success the caller frees *p2l and
 * *cnt (log2phy is rebuilt later by slot order). */
static int sub_plan(const planner *pl, const plan_dims *s, const float *w,
                    int32_t **p2l, int32_t **cnt)
{
    size_t L = (size_t)s->L;
    *p2l = malloc(L * s->P * sizeof(int32_t));
    *cnt = malloc(L * s->E * sizeof(int32_t));
    int rc = EPLB_OK;
    if (!*p2l || !*cnt)
        rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    if (rc == EPLB_OK)
        rc = pl->plan(pl->self, s, w, *p2l, NULL, *cnt);
    if (rc) {
        free(*p2l);
        free(*cnt);
        *p2l = *cnt = NULL;
    }
    return rc;
}

/* Global policy over the live GPUs: GPU i of the sub-problem is the i-th
 * live GPU. */
static int plan_global_live(const planner *pl, const plan_dims *d,
                            const float *weight, const uint8_t *mask,
                            int32_t *phy2log, int32_t *logcnt)
{
    int live = count_live(mask, 0, d->M);
    plan_dims sd = sub_dims(d, d->L, d->E, live);
    int32_t *sp2l, *scnt;
    int rc = sub_plan(pl, &sd, weight, &sp2l, &scnt);
    if (rc)
        return rc;
    for (int l = 0; l < d->L; l++) {
        int32_t *p2l = phy2log + (size_t)l * d->P;
        const int32_t *sp = sp2l + (size_t)l * sd.P;
        for (int g = 0, i = 0; g < d->M; g++) {
            int32_t *gpu = p2l + (size_t)g * d->ppg;
            if (!mask[g]) {
                for (int r = 0; r < d->ppg; r++)
                    gpu[r] = -1;
                continue;
            }
            memcpy(gpu, sp + (size_t)i++ * d->ppg, d->ppg * sizeof(int32_t));
        }
    }
    memcpy(logcnt, scnt, (size_t)d->L * d->E * sizeof(int32_t));
    free(sp2l);
    free(scnt);
    return EPLB_OK;
}

/* Per node: live GPUs lg, whole groups k and experts x (k*gs of them in
 * whole groups), the same for every layer. Whole groups go one at a time
 * to the node with the fewest groups per live GPU that has room for one
 * more; the experts of the groups left over go one at a time to the node
 * with the fewest experts per live GPU that has a free slot. Returns 0, or
 * -1 when a live node would get no expert (its slots could not be
 * filled). */
static int node_quotas(const plan_dims *d, const uint8_t *mask, int *lg,
                       int *k, int *x)
{
    int whole = 0;
    for (int n = 0; n < d->N; n++) {
        lg[n] = count_live(mask, n * d->gn, d->gn);
        k[n] = x[n] = 0;
    }
    for (; whole < d->G; whole++) {
        int best = -1;
        for (int n = 0; n < d->N; n++) {
            if (lg[n] == 0 || (long)(k[n] + 1) * d->gs > (long)lg[n] * d->ppg)
                continue;
            /* (k+1)/lg smaller, by cross-multiplication */
            if (best < 0 ||
                (long)(k[n] + 1) * lg[best] < (long)(k[best] + 1) * lg[n])
                best = n;
        }
        if (best < 0)
            break;
        k[best]++;
    }
    for (int n = 0; n < d->N; n++)
        x[n] = k[n] * d->gs;
    for (int left = (d->G - whole) * d->gs; left > 0; left--) {
        int best = -1;
        for (int n = 0; n < d->N; n++) {
            if (x[n] >= lg[n] * d->ppg)
                continue;
            if (best < 0 ||
                (long)(x[n] + 1) * lg[best] < (long)(x[best] + 1) * lg[n])
                best = n;
        }
        x[best]++; /* mask_check: live slots >= E, so some node has room */
    }
    for (int n = 0; n < d->N; n++)
        if (lg[n] > 0 && x[n] == 0)
            return -1;
    return 0;
}

/* The node whose load per live GPU would be least with `add` more, among
 * those with quota left (ties: lower index), or -1: list scheduling on
 * machines of different speeds, so the heaviest group goes to a node with
 * the most live GPUs. */
static int lightest_node(const plan_dims *d, const int *lg, const int *left,
                         const double *load, double add)
{
    int best = -1;
    for (int n = 0; n < d->N; n++)
        if (left[n] > 0 &&
            (best < 0 ||
             (load[n] + add) * lg[best] < (load[best] + add) * lg[n]))
            best = n;
    return best;
}

/* Scratch for one layer's group-to-node assignment. */
typedef struct assign_scratch {
    int *order;    /* [G] visiting order of groups */
    int *eorder;   /* [gs] visiting order of a split group's experts */
    float *key;    /* [G] group loads */
    int *kleft, *xleft; /* [N] quotas left */
    double *load;  /* [N] load given so far */
} assign_scratch;

/* Indices 0..n-1 by v descending, ties to the lower index (insertion sort:
 * n is a group count or a group size). */
static void order_desc(const float *v, int n, int *order)
{
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && v[order[j - 1]] < v[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* node_of[E] for one layer: groups by load descending, each whole to the
 * node of least resulting load per live GPU with a whole-group quota left;
 * a group no node has room for is split, its experts by load descending
 * each to the node of least resulting load per live GPU with an expert
 * quota left. */
static void assign_layer(const plan_dims *d, const float *w, const int *lg,
                         const int *k, const int *x, assign_scratch *a,
                         int *node_of)
{
    for (int g = 0; g < d->G; g++) {
        float s = 0.0f;
        for (int j = 0; j < d->gs; j++)
            s += w[g * d->gs + j];
        a->key[g] = s;
    }
    order_desc(a->key, d->G, a->order);
    for (int n = 0; n < d->N; n++) {
        a->kleft[n] = k[n];
        a->xleft[n] = x[n] - k[n] * d->gs;
        a->load[n] = 0.0;
    }
    int nsplit = 0, *split = a->order; /* split groups reuse the front */
    for (int i = 0; i < d->G; i++) {
        int g = a->order[i];
        int n = lightest_node(d, lg, a->kleft, a->load, a->key[g]);
        if (n < 0) {
            split[nsplit++] = g;
            continue;
        }
        a->kleft[n]--;
        a->load[n] += a->key[g];
        for (int j = 0; j < d->gs; j++)
            node_of[g * d->gs + j] = n;
    }
    int *eorder = a->eorder;
    for (int i = 0; i < nsplit; i++) {
        const float *gw = w + (size_t)split[i] * d->gs;
        order_desc(gw, d->gs, eorder);
        for (int j = 0; j < d->gs; j++) {
            int e = split[i] * d->gs + eorder[j];
            int n = lightest_node(d, lg, a->xleft, a->load, w[e]);
            a->xleft[n]--;
            a->load[n] += w[e];
            node_of[e] = n;
        }
    }
}

/* Plans the nodes that share a (live GPUs, experts) pair in one backend
 * call: row j * L + l of the sub-problem is layer l of the j-th such node,
 * its experts in id order. */
static int plan_node_batch(const planner *pl, const plan_dims *d,
                           const float *weight, const uint8_t *mask,
                           const int *node_of, const int *batch, int nb,
                           int lg, int x, int32_t *phy2log, int32_t *logcnt)
{
    plan_dims sd = sub_dims(d, d->L * nb, x, lg);
    size_t rows = (size_t)sd.L;
    float *sw = malloc(rows * x * sizeof(float));
    int *ids = malloc(rows * x * sizeof(int));
    if (!sw || !ids) {
        free(sw);
        free(ids);
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int j = 0; j < nb; j++)
        for (int l = 0; l < d->L; l++) {
            size_t row = (size_t)j * d->L + l;
            const int *own = node_of + (size_t)l * d->E;
            int i = 0;
            for (int e = 0; e < d->E; e++)
                if (own[e] == batch[j]) {
                    ids[row * x + i] = e;
                    sw[row * x + i++] = weight[(size_t)l * d->E + e];
                }
        }
    int32_t *sp2l, *scnt;
    int rc = sub_plan(pl, &sd, sw, &sp2l, &scnt);
    free(sw);
    if (rc) {
        free(ids);
        return rc;
    }
    for (int j = 0; j < nb; j++)
        for (int l = 0; l < d->L; l++) {
            size_t row = (size_t)j * d->L + l;
            const int *id = ids + row * x;
            const int32_t *sp = sp2l + row * sd.P;
            int32_t *p2l = phy2log + (size_t)l * d->P;
            for (int g = batch[j] * d->gn, i = 0;
                 g < (batch[j] + 1) * d->gn; g++) {
                if (!mask[g])
                    continue;
                for (int r = 0; r < d->ppg; r++)
                    p2l[g * d->ppg + r] = id[sp[i * d->ppg + r]];
                i++;
            }
            for (int i = 0; i < x; i++)
                logcnt[(size_t)l * d->E + id[i]] = scnt[row * x + i];
        }
    free(ids);
    free(sp2l);
    free(scnt);
    return EPLB_OK;
}

/* The hierarchical policy over the live GPUs (see the top of the file).
 * Falls back to the global policy over the live GPUs when some live node
 * would get no expert. */
static int plan_hier_live(const planner *pl, const plan_dims *d,
                          const float *weight, const uint8_t *mask,
                          int32_t *phy2log, int32_t *logcnt)
{
    size_t N = (size_t)d->N;
    int *ints = malloc((6 * N + 2 * (size_t)d->G + d->gs +
                        (size_t)d->L * d->E) * sizeof(int));
    float *key = malloc((size_t)d->G * sizeof(float));
    double *load = malloc(N * sizeof(double));
    if (!ints || !key || !load) {
        free(ints);
        free(key);
        free(load);
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    int *lg = ints, *k = lg + N, *x = k + N, *batch = x + N;
    assign_scratch a = {batch + N, batch + N + d->G, key,
                        batch + N + d->G + d->gs,
                        batch + 2 * N + d->G + d->gs, load};
    int *node_of = a.xleft + N;
    int rc = EPLB_OK;
    if (node_quotas(d, mask, lg, k, x) != 0) {
        rc = plan_global_live(pl, d, weight, mask, phy2log, logcnt);
        goto done;
    }
    for (int l = 0; l < d->L; l++)
        assign_layer(d, weight + (size_t)l * d->E, lg, k, x, &a,
                     node_of + (size_t)l * d->E);
    for (size_t i = 0; i < (size_t)d->L * d->P; i++)
        phy2log[i] = -1;
    /* Nodes of equal live GPUs and experts share one backend call. */
    for (int n = 0; n < d->N && rc == EPLB_OK; n++) {
        if (lg[n] == 0 || lg[n] < 0)
            continue;
        int nb = 0;
        for (int m = n; m < d->N; m++)
            if (lg[m] == lg[n] && x[m] == x[n]) {
                batch[nb++] = m;
                if (m > n)
                    lg[m] = -lg[m]; /* planned with this batch */
            }
        rc = plan_node_batch(pl, d, weight, mask, node_of, batch, nb, lg[n],
                             x[n], phy2log, logcnt);
    }
done:
    free(ints);
    free(key);
    free(load);
    return rc;
}

int mask_plan_fresh(const planner *pl, const plan_dims *d,
                    const float *weight, const uint8_t *mask,
                    int32_t *phy2log, int32_t *log2phy, int32_t *logcnt)
{
    /* No GPU dead: the plan of no mask, so the plans of doc/ALGORITHM.md
     * sections 3 to 6 stay bit for bit. */
    if (count_live(mask, 0, d->M) == d->M)
        return pl->plan(pl->self, d, weight, phy2log, log2phy,
                                    logcnt);
    int rc = d->N > 1
                 ? plan_hier_live(pl, d, weight, mask, phy2log, logcnt)
                 : plan_global_live(pl, d, weight, mask, phy2log, logcnt);
    if (rc == EPLB_OK && log2phy)
        plan_log2phy_by_slot(d, phy2log, log2phy);
    return rc;
}
