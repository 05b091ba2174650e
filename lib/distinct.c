/* One replica of an expert per GPU at most.
 *
 * SPEC's packing may put two replicas of one expert on one GPU; the second
 * adds a slot but no capacity (the GPU serves the same share of the expert
 * either way). Each such duplicate slot, in slot order, is given a better
 * use: either it trades places with a slot of another GPU (of the same
 * node under the hierarchical policy) that holds neither expert twice, or
 * it becomes a replica of another expert that the GPU does not hold (the
 * duplicated expert keeps its other replicas). Among those moves the one
 * with the least largest GPU load, then the least sum of squared GPU
 * loads, is taken, and only when the layer's largest GPU load (summed in
 * float in slot order, as the guard sums it) does not rise above the
 * plan's before the pass. A duplicate no move can fix so stays. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct layer_view {
    const plan_dims *d;
    const float *w;
    const uint8_t *mask; /* may be NULL */
    int32_t *p2l, *cnt;
    float *load;     /* [M] */
    int *holds;      /* [M][E]: replicas of e on GPU g */
} layer_view;

static float gpu_sum(const layer_view *v, int g)
{
    const int32_t *slot = v->p2l + (size_t)g * v->d->ppg;
    float s = 0.0f;
    for (int r = 0; r < v->d->ppg; r++)
        if (slot[r] >= 0)
            s += v->w[slot[r]] / (float)v->cnt[slot[r]];
    return s;
}

static int live(const layer_view *v, int g)
{
    return !v->mask || v->mask[g];
}

/* Largest load and sum of squares with loads lg, lh in place of GPUs g
 * and h (h may be -1), the others from v->load. */
static void judge(const layer_view *v, int g, float lg, int h, float lh,
                  float *mx, double *sq)
{
    *mx = 0.0f;
    *sq = 0.0;
    for (int i = 0; i < v->d->M; i++) {
        float x = i == g ? lg : i == h ? lh : v->load[i];
        if (x > *mx)
            *mx = x;
        *sq += (double)x * x;
    }
}

static void recount(layer_view *v)
{
    for (int g = 0; g < v->d->M; g++)
        v->load[g] = gpu_sum(v, g);
}

typedef struct move {
    int kind; /* 0 none, 1 swap with slot t, 2 retarget to expert e */
    int t, e;
    float mx;
    double sq;
} move;

static void consider(move *best, int kind, int t, int e, float mx, double sq)
{
    if (best->kind == 0 || mx < best->mx ||
        (mx == best->mx && sq < best->sq)) {
        best->kind = kind;
        best->t = t;
        best->e = e;
        best->mx = mx;
        best->sq = sq;
    }
}

/* Swaps of slot s (expert e on GPU g) with a slot t of another live GPU of
 * the same node: only the two GPUs' loads change. */
static void try_swaps(layer_view *v, int s, move *best)
{
    const plan_dims *d = v->d;
    int g = s / d->ppg, e = v->p2l[s];
    int lo = d->N > 1 ? (g / d->gn) * d->ppn : 0;
    int hi = d->N > 1 ? lo + d->ppn : d->P;
    for (int t = lo; t < hi; t++) {
        int h = t / d->ppg, f = v->p2l[t];
        if (h == g || !live(v, h) || f < 0 || f == e ||
            v->holds[(size_t)h * d->E + e] || v->holds[(size_t)g * d->E + f])
            continue;
        v->p2l[s] = f;
        v->p2l[t] = e;
        float lg = gpu_sum(v, g), lh = gpu_sum(v, h);
        v->p2l[s] = e;
        v->p2l[t] = f;
        float mx;
        double sq;
        judge(v, g, lg, h, lh, &mx, &sq);
        consider(best, 1, t, -1, mx, sq);
    }
}

/* Slot s becomes a replica of another expert e2 not on GPU g (of the same
 * node under the hierarchical policy): every GPU holding e or e2 changes. */
static void try_retargets(layer_view *v, int s, const int *on_node,
                          float *saved, move *best)
{
    const plan_dims *d = v->d;
    int g = s / d->ppg, e = v->p2l[s];
    memcpy(saved, v->load, (size_t)d->M * sizeof(float));
    for (int e2 = 0; e2 < d->E; e2++) {
        if (e2 == e || v->holds[(size_t)g * d->E + e2] ||
            (d->N > 1 && !on_node[e2]))
            continue;
        v->p2l[s] = e2;
        v->cnt[e]--;
        v->cnt[e2]++;
        recount(v);
        float mx;
        double sq;
        judge(v, -1, 0.0f, -1, 0.0f, &mx, &sq);
        consider(best, 2, -1, e2, mx, sq);
        v->p2l[s] = e;
        v->cnt[e]++;
        v->cnt[e2]--;
        memcpy(v->load, saved, (size_t)d->M * sizeof(float));
    }
}

/* Removes the duplicates of one layer; returns how many stay. */
static int fix_layer(layer_view *v, int *on_node, float *saved)
{
    const plan_dims *d = v->d;
    memset(v->holds, 0, (size_t)d->M * d->E * sizeof(int));
    for (int s = 0; s < d->P; s++)
        if (v->p2l[s] >= 0)
            v->holds[(size_t)(s / d->ppg) * d->E + v->p2l[s]]++;
    recount(v);
    float limit;
    double sq0;
    judge(v, -1, 0.0f, -1, 0.0f, &limit, &sq0);
    int stay = 0;
    for (int s = 0; s < d->P; s++) {
        int g = s / d->ppg, e = v->p2l[s];
        if (e < 0 || v->holds[(size_t)g * d->E + e] < 2)
            continue;
        /* The first of the GPU's copies of e keeps its slot. */
        int first = 1;
        for (int r = g * d->ppg; r < s; r++)
            first &= v->p2l[r] != e;
        if (first)
            continue;
        if (d->N > 1) {
            int lo = (g / d->gn) * d->ppn;
            memset(on_node, 0, (size_t)d->E * sizeof(int));
            for (int t = lo; t < lo + d->ppn; t++)
                if (v->p2l[t] >= 0)
                    on_node[v->p2l[t]] = 1;
        }
        move best = {0, -1, -1, 0.0f, 0.0};
        try_swaps(v, s, &best);
        try_retargets(v, s, on_node, saved, &best);
        if (best.kind == 0 || best.mx > limit) {
            stay++;
            continue;
        }
        v->holds[(size_t)g * d->E + e]--;
        if (best.kind == 1) {
            int h = best.t / d->ppg, f = v->p2l[best.t];
            v->p2l[s] = f;
            v->p2l[best.t] = e;
            v->holds[(size_t)h * d->E + f]--;
            v->holds[(size_t)h * d->E + e]++;
            v->holds[(size_t)g * d->E + f]++;
        } else {
            v->p2l[s] = best.e;
            v->cnt[e]--;
            v->cnt[best.e]++;
            v->holds[(size_t)g * d->E + best.e]++;
        }
        recount(v);
    }
    return stay;
}

int distinct_per_gpu_apply(const plan_dims *d, const float *weight,
                           const uint8_t *mask, int32_t *phy2log,
                           int32_t *logcnt)
{
    layer_view v = {d, NULL, mask, NULL, NULL, NULL, NULL};
    v.load = malloc((size_t)d->M * 2 * sizeof(float));
    v.holds = malloc((size_t)d->M * d->E * sizeof(int));
    int *on_node = malloc((size_t)d->E * sizeof(int));
    if (!v.load || !v.holds || !on_node) {
        free(v.load);
        free(v.holds);
        free(on_node);
        return eplb_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int l = 0; l < d->L; l++) {
        v.w = weight + (size_t)l * d->E;
        v.p2l = phy2log + (size_t)l * d->P;
        v.cnt = logcnt + (size_t)l * d->E;
        fix_layer(&v, on_node, v.load + d->M);
    }
    free(v.load);
    free(v.holds);
    free(on_node);
    return EPLB_OK;
}
