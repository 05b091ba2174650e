/* Single copies, greedily: the budgeted schedule's last resort.
 *
 * Under a small budget the re-plan's own changes are not always the best
 * use of it: its target is the fresh plan's largest GPU load, and single
 * copies aimed at each layer's heaviest GPU can go below it. greedy_copies_fill
 * repeatedly makes the one copy (a slot takes an expert its GPU did not
 * hold in the plan in service) that lowers the objective, the sum over
 * layers of the largest GPU load, the most, while the budgets allow. Only
 * slots not yet changed are rewritten, and an expert keeps at least one
 * replica. Ties go to the lowest layer, slot and expert: the same inputs
 * give the same copies everywhere. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct g_keyed {
    double share;
    int e;
} g_keyed;

typedef struct g_by_load {
    double load;
    int g;
} g_by_load;

typedef struct glayer {
    int32_t *x;      /* [P] the layer */
    int *cnt;        /* [E] live replicas */
    int *held;       /* [E][M]: an expert's replicas per GPU side by side */
    double *load;    /* [M] */
    int *order;      /* [E] experts by share, kept sorted across calls */
    int sorted;      /* order and share are set up */
    int *hrow;       /* [E] the heaviest GPU's replicas (g_best's scratch) */
    double *share;   /* [E] */
    /* g_best's index of the layer: each expert's GPUs as lists (ghead
     * [E], then gnext by the first slot of the expert on each GPU, [P]),
     * and the live GPUs by load, heaviest first (byload [M], nlive) */
    int *ghead, *gnext;
    struct g_by_load *byload;
    int nlive;
    int *gopen;      /* [P] g_best's slots open to a copy */
    int stale;       /* best_* found before a GPU it uses ran out */
    g_keyed *keyed;  /* [2E] the sort's scratch */
    double best_gain;
    int best_s, best_e;
    double floor;    /* a copy must gain more than this times the peak */
} glayer;

static int g_live(const uint8_t *mask, int g)
{
    return !mask || mask[g];
}

/* 1 when a largest load of at least v could not be kept by consider():
 * its gain is below the best so far (or none). Exact: the gain only
 * falls as the load rises. */
static int g_hopeless(const glayer *gl, double peak, double v)
{
    double gain = peak - v;
    return !(gain > 0.0) || gain < gl->best_gain;
}

/* GPU g's load once slot q (on GPU gq) holds e instead of a, g holding
 * ha replicas of a and he of e: summed the one way both callers use. */
static inline double g_load_after(const float *w, const glayer *gl, int a,
                                  int e, int g, int gq, int ha, int he)
{
    double v = gl->load[g];
    if (ha)
        v -= (double)w[a] * ha / gl->cnt[a];
    if (he)
        v -= (double)w[e] * he / gl->cnt[e];
    int na = ha - (g == gq), ne = he + (g == gq);
    if (na)
        v += (double)w[a] * na / (gl->cnt[a] - 1);
    if (ne)
        v += (double)w[e] * ne / (gl->cnt[e] + 1);
    return v;
}

/* Heaviest first (the order of equal loads does not matter: only the
 * largest load is read). */
static int by_load_desc(const void *pa, const void *pb)
{
    const g_by_load *a = pa, *b = pb;
    return (a->load < b->load) - (a->load > b->load);
}

/* The index g_peak_after reads, for the layer as it stands. */
static void g_index(const plan_dims *d, const uint8_t *mask, glayer *gl)
{
    for (int e = 0; e < d->E; e++)
        gl->ghead[e] = -1;
    /* slots from the last, so each list is in GPU order and a GPU's
     * slots of one expert come together */
    for (int q = d->P - 1; q >= 0; q--) {
        int e = gl->x[q];
        if (e < 0)
            continue;
        int head = gl->ghead[e];
        if (head >= 0 && head / d->ppg == q / d->ppg) {
            gl->gnext[q] = gl->gnext[head];
        } else {
            gl->gnext[q] = head;
        }
        gl->ghead[e] = q;
    }
    gl->nlive = 0;
    for (int g = 0; g < d->M; g++)
        if (g_live(mask, g)) {
            gl->byload[gl->nlive].load = gl->load[g];
            gl->byload[gl->nlive].g = g;
            gl->nlive++;
        }
    qsort(gl->byload, (size_t)gl->nlive, sizeof *gl->byload, by_load_desc);
}

/* The layer's largest load once slot q holds e instead of a, or HUGE_VAL
 * as soon as it is sure to be one consider() would not keep: first from
 * `runner` (the largest load but the heaviest GPU's) when the copy leaves
 * it as it is, then from GPU gq's new load, then from the loads seen so
 * far. Only the GPUs that hold a or e change (gq holds a), so the largest
 * load is theirs or the heaviest other GPU's, unchanged: the same value
 * as a pass over every GPU, and the same verdict, whatever the order. */
static double g_peak_after(const plan_dims *d, const float *w,
                           const uint8_t *mask, const glayer *gl, int q,
                           int e, double cur_peak, int runner)
{
    int a = gl->x[q], gq = q / d->ppg;
    const int *ha_row = gl->held + (size_t)a * d->M,
              *he_row = gl->held + (size_t)e * d->M;
    if (runner >= 0 && runner != gq && !ha_row[runner] && !he_row[runner] &&
        g_hopeless(gl, cur_peak, gl->load[runner]))
        return HUGE_VAL;
    if (g_live(mask, gq) &&
        g_hopeless(gl, cur_peak, g_load_after(w, gl, a, e, gq, gq,
                                              ha_row[gq], he_row[gq])))
        return HUGE_VAL;
    double peak = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        int x = pass ? e : a;
        for (int k = gl->ghead[x]; k >= 0; k = gl->gnext[k]) {
            int g = k / d->ppg;
            if (!g_live(mask, g) || (pass && ha_row[g]))
                continue; /* (a GPU holding both was seen with a) */
            double v = g_load_after(w, gl, a, e, g, gq, ha_row[g], he_row[g]);
            if (v > peak) {
                peak = v;
                if (g_hopeless(gl, cur_peak, peak))
                    return HUGE_VAL;
            }
        }
    }
    for (int i = 0; i < gl->nlive; i++) {
        int g = gl->byload[i].g;
        if (ha_row[g] || he_row[g])
            continue;
        if (gl->load[g] > peak) {
            peak = gl->load[g];
            if (g_hopeless(gl, cur_peak, peak))
                return HUGE_VAL;
        }
        break;
    }
    return peak;
}

/* Keeps slot q taking e when it lowers the peak more than the best so
 * far, or as much with a lower (slot, expert): the same copy whatever
 * order the candidates come in. */
static void consider(glayer *gl, double peak, double pk, int q, int e,
                     double *best_peak)
{
    double gain = peak - pk;
    if (!(gain > gl->floor * peak))
        return;
    if (gain > gl->best_gain ||
        (gain == gl->best_gain && gl->best_s >= 0 &&
         (q < gl->best_s || (q == gl->best_s && e < gl->best_e)))) {
        gl->best_gain = gain;
        *best_peak = pk;
        gl->best_s = q;
        gl->best_e = e;
    }
}

/* order[0..n) by share ascending, ties by expert (a strict order, so
 * any sort gives the same; n is an expert count, once per layer). */
static inline int g_keyed_before(const g_keyed *a, const g_keyed *b)
{
    return a->share < b->share || (a->share == b->share && a->e < b->e);
}

EPLBI_DEFINE_MERGE_PASSES(merge_keyed, g_keyed, g_keyed_before)

/* tmp [2n]: a bottom-up merge sort (an inline comparison is several
 * times cheaper than qsort's calls, and this runs for every layer of
 * every budgeted re-plan). */
static void sort_by_share(int *order, const double *share, int n,
                          g_keyed *tmp)
{
    g_keyed *a = tmp;
    for (int i = 0; i < n; i++) {
        a[i].share = share[order[i]];
        a[i].e = order[i];
    }
    a = merge_keyed(a, tmp + n, n, 1);
    for (int i = 0; i < n; i++)
        order[i] = a[i].e;
}

/* Expert v's share changed: moves it to its place in the sorted order
 * (share ascending, ties by expert), which is then what sort_by_share
 * would give. A copy changes two experts' counts, so each copy costs two
 * such moves instead of a sort of the layer. */
static void resort_one(int *order, const double *share, int n, int v)
{
    int i = 0;
    while (order[i] != v)
        i++;
    while (i > 0 && (share[order[i - 1]] > share[v] ||
                     (share[order[i - 1]] == share[v] && order[i - 1] > v))) {
        order[i] = order[i - 1];
        i--;
    }
    while (i + 1 < n && (share[order[i + 1]] < share[v] ||
                         (share[order[i + 1]] == share[v] &&
                          order[i + 1] < v))) {
        order[i] = order[i + 1];
        i++;
    }
    order[i] = v;
}

/* The layer's best copy, among those that can lower its largest load:
 * a slot of the heaviest GPU h takes an expert h does not hold, or a slot
 * elsewhere takes an expert h holds (a copy elsewhere of an expert h does
 * not hold only makes h's experts fewer or leaves h as it is). GPUs with
 * budget left, slots not frozen. On h, the new expert e adds exactly
 * w_e / (cnt_e + 1) to h's load: experts are tried by that share, lowest
 * first, and the scan stops once h alone would end above the best peak
 * found (the pruning loses nothing). Returns the layer's largest load as
 * it stands. */
static double g_best(const plan_dims *d, const float *w,
                     const uint8_t *mask, const uint8_t *was,
                     const uint8_t *frozen, const int *left, glayer *gl,
                     long long *work)
{
    int E = d->E, h;
    double peak = plan_layer_loads(d, w, gl->x, gl->cnt, mask, gl->load, &h);
    gl->best_gain = 0.0;
    gl->best_s = -1;
    if (h < 0)
        return peak;
    g_index(d, mask, gl);
    double best_peak = peak;
    /* the largest live load but h's (g_peak_after's quick test) */
    int runner = -1;
    for (int g = 0; g < d->M; g++)
        if (g != h && g_live(mask, g) &&
            (runner < 0 || gl->load[g] > gl->load[runner]))
            runner = g;
    /* h's replicas of each expert, gathered once from the [E][M] table */
    int *hh = gl->hrow;
    for (int e = 0; e < E; e++)
        hh[e] = gl->held[(size_t)e * d->M + h];
    /* experts by the share a new replica on h would add */
    if (!gl->sorted) {
        for (int e = 0; e < E; e++) {
            gl->order[e] = e;
            gl->share[e] = (double)w[e] / (gl->cnt[e] + 1);
        }
        sort_by_share(gl->order, gl->share, E, gl->keyed);
        gl->sorted = 1;
    }
    *work += E;
    for (int q = h * d->ppg; q < (h + 1) * d->ppg && left[h]; q++) {
        int a = gl->x[q];
        if ((frozen && frozen[q]) || a < 0 || gl->cnt[a] < 2)
            continue;
        /* h's load without this replica of a (its other replicas of a
         * grow as a loses one) */
        double base = gl->load[h] - (double)w[a] * hh[a] / gl->cnt[a] +
                      (hh[a] > 1 ? (double)w[a] * (hh[a] - 1) /
                                       (gl->cnt[a] - 1)
                                 : 0.0);
        for (int i = 0; i < E; i++) {
            int e = gl->order[i];
            if (base + gl->share[e] > best_peak)
                break;
            if (e == a || was[(size_t)h * E + e] || hh[e])
                continue; /* not a copy */
            *work += d->M;
            consider(gl, peak,
                     g_peak_after(d, w, mask, gl, q, e, peak, runner), q, e,
                     &best_peak);
        }
    }
    /* The slots off h that may take a copy whatever the expert, in
     * order: each held expert below scans only those. */
    int *open = gl->gopen, n_open = 0;
    for (int q = 0; q < d->P; q++) {
        int g = q / d->ppg, a = gl->x[q];
        if (g != h && g_live(mask, g) && left[g] && !(frozen && frozen[q]) &&
            a >= 0 && gl->cnt[a] >= 2)
            open[n_open++] = q;
    }
    for (int e = 0; e < E; e++) {
        if (!hh[e])
            continue;
        /* h sheds part of e's load to the new replica, and nothing can
         * bring it lower: no slot helps when that is surely not below the
         * best peak found. "Surely": this sum is not the one
         * g_peak_after makes, and a copy whose peak ties the best must
         * still be tried (ties go to the lowest slot and expert). */
        double h_least = gl->load[h] - (double)w[e] * hh[e] /
                                           ((double)gl->cnt[e] *
                                            (gl->cnt[e] + 1));
        if (eplbi_surely_above(h_least, best_peak))
            continue;
        for (int k = 0; k < n_open; k++) {
            int q = open[k], g = q / d->ppg, a = gl->x[q];
            if (a == e || was[(size_t)g * E + e] ||
                gl->held[(size_t)e * d->M + g])
                continue;
            *work += d->M;
            consider(gl, peak,
                     g_peak_after(d, w, mask, gl, q, e, peak, runner), q, e,
                     &best_peak);
        }
    }
    return peak;
}

/* The layers' first searches, a layer per item; each counts its own work
 * (summed after, so the total is the same in any order). */
typedef struct g_first {
    const plan_dims *d;
    const float *weight;
    const uint8_t *mask, *was, *frozen;
    const int *left;
    glayer *gls;
    long long *work;
} g_first;

static void g_first_one(void *arg, int worker, int l)
{
    const g_first *r = arg;
    const plan_dims *d = r->d;
    (void)worker;
    r->work[l] = 0;
    g_best(d, r->weight + (size_t)l * d->E, r->mask,
           r->was + (size_t)l * d->M * d->E,
           r->frozen ? r->frozen + (size_t)l * d->P : NULL, r->left,
           &r->gls[l], &r->work[l]);
}

/* A copy into a slot copied into before gains at least this share of the
 * layer's largest load: gains of the order of rounding could otherwise
 * pass a slot back and forth between two experts. */
#define GREEDY_REWRITE_FLOOR 1e-9

int greedy_copies_fill(const plan_dims *d, const float *weight, const uint8_t *mask,
                const int32_t *cur, int32_t *plan, const uint8_t *frozen,
                int rewrite, int *left, long long left_total,
                long long work_cap, eplbi_threads *threads,
                greedy_copy *out, int *nout)
{
    int L = d->L, E = d->E, P = d->P, M = d->M;
    glayer *gls = calloc((size_t)L, sizeof *gls);
    uint8_t *was = calloc((size_t)L * M * E, 1);
    int rc = EPLB_OK;
    *nout = 0;
    if (!gls || !was)
        goto oom;
    for (int l = 0; l < L; l++) {
        glayer *gl = &gls[l];
        gl->x = plan + (size_t)l * P;
        gl->floor = rewrite ? GREEDY_REWRITE_FLOOR : 0.0;
        gl->cnt = calloc((size_t)E, sizeof(int));
        gl->held = calloc((size_t)M * E, sizeof(int));
        gl->load = malloc((size_t)M * sizeof(double));
        gl->order = malloc((size_t)E * sizeof(int));
        gl->hrow = malloc((size_t)E * sizeof(int));
        gl->share = malloc((size_t)E * sizeof(double));
        gl->ghead = malloc((size_t)E * sizeof(int));
        gl->gnext = malloc((size_t)P * sizeof(int));
        gl->byload = malloc((size_t)M * sizeof *gl->byload);
        gl->gopen = malloc((size_t)P * sizeof(int));
        gl->keyed = malloc(2 * (size_t)E * sizeof *gl->keyed);
        if (!gl->cnt || !gl->held || !gl->load || !gl->order || !gl->hrow ||
            !gl->share || !gl->ghead || !gl->gnext || !gl->byload ||
            !gl->gopen || !gl->keyed)
            goto oom;
        for (int q = 0; q < P; q++) {
            int e = gl->x[q], g = q / d->ppg, c = cur[(size_t)l * P + q];
            if (e >= 0) {
                gl->cnt[e]++;
                gl->held[(size_t)e * M + g]++;
            }
            if (c >= 0 && g_live(mask, g))
                was[((size_t)l * M + g) * E + c] = 1;
        }
    }
    long long work = 0;
    {
        long long *lwork = malloc((size_t)L * sizeof(long long));
        if (!lwork)
            goto oom;
        g_first first = {d, weight, mask, was, frozen, left, gls, lwork};
        eplbi_parallel_items(&threads->pool,
                             eplbi_host_threads(threads->option, L), L,
                             g_first_one, &first);
        for (int l = 0; l < L; l++)
            work += lwork[l];
        free(lwork);
    }
    while (left_total != 0 && work <= work_cap &&
           (!rewrite || *nout < L * P)) {
        int bl = -1;
        for (int l = 0; l < L; l++)
            if (gls[l].best_s >= 0 &&
                (bl < 0 || gls[l].best_gain > gls[bl].best_gain))
                bl = l;
        if (bl < 0)
            break;
        glayer *gl = &gls[bl];
        if (gl->stale) {
            /* Its best copy was on a GPU that ran out of budget. Budgets
             * only shrink and nothing else of the layer changed, so its
             * gain then bounds its best now from above: it is searched
             * again only when it comes first, and a layer that comes
             * first searched is the one a search of every stale layer
             * would choose (ties to the lowest layer as well). */
            g_best(d, weight + (size_t)bl * E, mask, was + (size_t)bl * M * E,
                   frozen ? frozen + (size_t)bl * P : NULL, left, gl, &work);
            gl->stale = 0;
            continue;
        }
        int q = gl->best_s, e = gl->best_e, a = gl->x[q], g = q / d->ppg;
        gl->held[(size_t)a * M + g]--;
        gl->cnt[a]--;
        gl->x[q] = e;
        gl->held[(size_t)e * M + g]++;
        gl->cnt[e]++;
        gl->share[a] = (double)weight[(size_t)bl * E + a] / (gl->cnt[a] + 1);
        gl->share[e] = (double)weight[(size_t)bl * E + e] / (gl->cnt[e] + 1);
        resort_one(gl->order, gl->share, E, a);
        resort_one(gl->order, gl->share, E, e);
        left[g]--;
        if (left_total > 0)
            left_total--;
        greedy_copy *c = &out[(*nout)++];
        c->layer = bl;
        c->slot = q;
        c->expert = e;
        c->gain = gl->best_gain;
        /* the slot is taken now (unless slots may be copied into again);
         * a GPU out of budget changes the choice of every layer that
         * wanted it */
        uint8_t *fz = frozen ? (uint8_t *)frozen + (size_t)bl * P : NULL;
        if (fz && !rewrite)
            fz[q] = 1;
        c->f_after = g_best(d, weight + (size_t)bl * E, mask,
                            was + (size_t)bl * M * E, fz, left, gl, &work);
        for (int l = 0; l < L; l++)
            if (l != bl && !left[g] && gls[l].best_s >= 0 &&
                gls[l].best_s / d->ppg == g)
                gls[l].stale = 1;
    }
    goto done;
oom:
    rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
done:
    for (int l = 0; gls && l < L; l++) {
        free(gls[l].cnt);
        free(gls[l].held);
        free(gls[l].load);
        free(gls[l].order);
        free(gls[l].hrow);
        free(gls[l].share);
        free(gls[l].ghead);
        free(gls[l].gnext);
        free(gls[l].byload);
        free(gls[l].gopen);
        free(gls[l].keyed);
    }
    free(gls);
    free(was);
    return rc;
}
