/* One replica of an expert per GPU at most.
 *
 * The packing (doc/ALGORITHM.md section 3) may put two replicas of one
 * expert on one GPU; the second adds a slot but no capacity (the GPU serves the same share of the expert
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
    float *load;     /* [M] exact GPU loads (float, slot order) */
    int *holds;      /* [M][E]: replicas of e on GPU g */
    int *first, *next; /* [E], [P]: each expert's slots, a linked list */
    double *base;    /* [M] loads once slot s has left its expert */
    int *order;      /* [M] GPUs by base descending */
    int *mark;       /* [M] GPUs touched by the candidate being judged */
    int stamp;
    int topk;        /* GPUs kept in order: more than a candidate marks */
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

static float max_load(const layer_view *v)
{
    float mx = 0.0f;
    for (int g = 0; g < v->d->M; g++)
        if (v->load[g] > mx)
            mx = v->load[g];
    return mx;
}

/* Adds k to v->holds for every slot of the layer: 1 to count a layer's
 * replicas, 0 to clear them again (cheaper than clearing [M][E]). */
static void holds_count(layer_view *v, int k)
{
    const plan_dims *d = v->d;
    for (int s = 0; s < d->P; s++)
        if (v->p2l[s] >= 0) {
            int *h = &v->holds[(size_t)(s / d->ppg) * d->E + v->p2l[s]];
            *h = k ? *h + k : 0;
        }
}

/* Loads, the slot lists and topk, after any change. */
static void refresh(layer_view *v)
{
    const plan_dims *d = v->d;
    int most = 0; /* a retarget marks g and the GPUs holding e2 */
    for (int e = 0; e < d->E; e++) {
        v->first[e] = -1;
        most = v->cnt[e] > most ? v->cnt[e] : most;
    }
    v->topk = most + 2 < d->M ? most + 2 : d->M;
    for (int s = d->P - 1; s >= 0; s--) {
        int e = v->p2l[s];
        if (e < 0)
            continue;
        v->next[s] = v->first[e];
        v->first[e] = s;
    }
    for (int g = 0; g < d->M; g++)
        v->load[g] = gpu_sum(v, g);
}

typedef struct move {
    int kind; /* 0 none, 1 swap with slot t, 2 retarget to expert e */
    int t, e;
    double mx, sq;
} move;

static void consider(move *best, int kind, int t, int e, double mx,
                     double sq)
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

/* The largest of v->base over GPUs the current stamp does not mark: a
 * candidate marks at most topk - 1 GPUs, so one of the top ones is free
 * (or every GPU is marked and judged on its own). */
static double max_unmarked(const layer_view *v)
{
    for (int i = 0; i < v->topk; i++)
        if (v->mark[v->order[i]] != v->stamp)
            return v->base[v->order[i]];
    return 0.0;
}

/* The topk GPUs by v->base descending into v->order (ties: lower index),
 * and the sum of squares of v->base. */
static double set_base(layer_view *v)
{
    int M = v->d->M, n = 0;
    double sq = 0.0;
    for (int i = 0; i < M; i++) {
        double x = v->base[i];
        sq += x * x;
        if (n == v->topk && !(x > v->base[v->order[n - 1]]))
            continue;
        int j = n < v->topk ? n++ : n - 1;
        while (j > 0 && v->base[v->order[j - 1]] < x) {
            v->order[j] = v->order[j - 1];
            j--;
        }
        v->order[j] = i;
    }
    return sq;
}

/* Swaps of slot s (expert e on GPU g) with a slot t of another live GPU of
 * the same node: only the two GPUs' loads change. Judged in double; the
 * move taken is checked exactly afterwards. */
static void try_swaps(layer_view *v, int s, move *best)
{
    const plan_dims *d = v->d;
    int g = s / d->ppg, e = v->p2l[s];
    int lo = d->N > 1 ? (g / d->gn) * d->ppn : 0;
    int hi = d->N > 1 ? lo + d->ppn : d->P;
    for (int i = 0; i < d->M; i++)
        v->base[i] = v->load[i];
    double sq = set_base(v);
    double share_e = (double)v->w[e] / v->cnt[e];
    for (int t = lo; t < hi; t++) {
        int h = t / d->ppg, f = v->p2l[t];
        if (h == g || !live(v, h) || f < 0 || f == e ||
            v->holds[(size_t)h * d->E + e] || v->holds[(size_t)g * d->E + f])
            continue;
        double share_f = (double)v->w[f] / v->cnt[f];
        double lg = v->base[g] - share_e + share_f;
        double lh = v->base[h] - share_f + share_e;
        v->stamp++;
        v->mark[g] = v->mark[h] = v->stamp;
        double mx = max_unmarked(v);
        mx = lg > mx ? lg : mx;
        mx = lh > mx ? lh : mx;
        consider(best, 1, t, -1, mx,
                 sq - v->base[g] * v->base[g] - v->base[h] * v->base[h] +
                     lg * lg + lh * lh);
    }
}

/* Slot s becomes a replica of another expert e2 not on GPU g (of the same
 * node under the hierarchical policy): the GPUs holding e lose load, g and
 * the GPUs holding e2 change. */
static void try_retargets(layer_view *v, int s, const int *on_node,
                          move *best)
{
    const plan_dims *d = v->d;
    int g = s / d->ppg, e = v->p2l[s];
    double old_e = (double)v->w[e] / v->cnt[e];
    double new_e = (double)v->w[e] / (v->cnt[e] - 1);
    for (int i = 0; i < d->M; i++)
        v->base[i] = v->load[i];
    for (int t = v->first[e]; t >= 0; t = v->next[t])
        v->base[t / d->ppg] += t == s ? -old_e : new_e - old_e;
    double sq = set_base(v);
    for (int e2 = 0; e2 < d->E; e2++) {
        if (e2 == e || v->holds[(size_t)g * d->E + e2] ||
            (d->N > 1 && !on_node[e2]))
            continue;
        double old2 = (double)v->w[e2] / v->cnt[e2];
        double new2 = (double)v->w[e2] / (v->cnt[e2] + 1);
        double lg = v->base[g] + new2;
        double mx = lg, dsq = lg * lg - v->base[g] * v->base[g];
        v->stamp++;
        v->mark[g] = v->stamp;
        for (int t = v->first[e2]; t >= 0; t = v->next[t]) {
            int h = t / d->ppg;
            if (v->mark[h] == v->stamp)
                continue; /* a GPU holding e2 twice: counted once */
            v->mark[h] = v->stamp;
            double x = v->base[h] -
                       v->holds[(size_t)h * d->E + e2] * (old2 - new2);
            mx = x > mx ? x : mx;
            dsq += x * x - v->base[h] * v->base[h];
        }
        double rest = max_unmarked(v);
        consider(best, 2, -1, e2, rest > mx ? rest : mx, sq + dsq);
    }
}

/* Applies move m to slot s, which held e (k = 1), or undoes it (k = -1
 * after k = 1). */
static void apply(layer_view *v, int s, int e, const move *m, int k)
{
    const plan_dims *d = v->d;
    int *hg = v->holds + (size_t)(s / d->ppg) * d->E;
    if (m->kind == 1) {
        int t = m->t, f = v->p2l[t];
        int *hh = v->holds + (size_t)(t / d->ppg) * d->E;
        /* a swap undoes itself: the slots' experts trade back */
        int a = v->p2l[s];
        hg[a]--;
        hg[f]++;
        hh[f]--;
        hh[a]++;
        v->p2l[s] = f;
        v->p2l[t] = a;
    } else {
        hg[k > 0 ? e : m->e]--;
        hg[k > 0 ? m->e : e]++;
        v->p2l[s] = k > 0 ? m->e : e;
        v->cnt[e] -= k;
        v->cnt[m->e] += k;
    }
}

/* Removes the duplicates of one layer; returns how many stay. */
static int fix_layer(layer_view *v, int *on_node)
{
    const plan_dims *d = v->d;
    holds_count(v, 1);
    refresh(v);
    float limit = max_load(v);
    int stay = 0;
    for (int s = 0; s < d->P; s++) {
        int g = s / d->ppg, e = v->p2l[s];
        if (e < 0 || v->holds[(size_t)g * d->E + e] < 2 || v->first[e] == s)
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
        move best = {0, -1, -1, 0.0, 0.0};
        try_swaps(v, s, &best);
        try_retargets(v, s, on_node, &best);
        if (best.kind == 0) {
            stay++;
            continue;
        }
        /* The exact check, in float as the guard sums. */
        apply(v, s, e, &best, 1);
        refresh(v);
        if (max_load(v) > limit) {
            apply(v, s, e, &best, -1);
            refresh(v);
            stay++;
        }
    }
    holds_count(v, 0);
    return stay;
}

int distinct_per_gpu_apply(const plan_dims *d, const float *weight,
                           const uint8_t *mask, int32_t *phy2log,
                           int32_t *logcnt)
{
    size_t M = (size_t)d->M, E = (size_t)d->E, P = (size_t)d->P;
    layer_view v = {d, NULL, mask, NULL, NULL, NULL, NULL, NULL, NULL,
                    NULL, NULL, NULL, 0, 0};
    v.load = malloc(M * sizeof(float));
    v.holds = calloc(M * E, sizeof(int));
    v.first = malloc((E + P + 2 * M) * sizeof(int));
    v.base = malloc(M * sizeof(double));
    int *on_node = malloc(E * sizeof(int));
    if (!v.load || !v.holds || !v.first || !v.base || !on_node) {
        free(v.load);
        free(v.holds);
        free(v.first);
        free(v.base);
        free(on_node);
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    v.next = v.first + E;
    v.order = v.next + P;
    v.mark = v.order + M;
    memset(v.mark, 0, M * sizeof(int));
    for (int l = 0; l < d->L; l++) {
        v.w = weight + (size_t)l * d->E;
        v.p2l = phy2log + (size_t)l * d->P;
        v.cnt = logcnt + (size_t)l * d->E;
        fix_layer(&v, on_node);
    }
    free(v.load);
    free(v.holds);
    free(v.first);
    free(v.base);
    free(on_node);
    return EPLB_OK;
}
