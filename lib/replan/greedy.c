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

#include <stdlib.h>
#include <string.h>

typedef struct glayer {
    int32_t *x;      /* [P] the layer */
    int *cnt;        /* [E] live replicas */
    int *held;       /* [M][E] */
    double *load;    /* [M] */
    double best_gain;
    int best_s, best_e;
} glayer;

static int g_live(const uint8_t *mask, int g)
{
    return !mask || mask[g];
}

/* Exact loads (slot order, double) and the largest over live GPUs. */
static double g_loads(const plan_dims *d, const float *w,
                      const uint8_t *mask, glayer *gl, int *heavy)
{
    double peak = 0.0;
    *heavy = -1;
    for (int g = 0; g < d->M; g++) {
        double v = 0.0;
        for (int r = 0; r < d->ppg; r++) {
            int e = gl->x[g * d->ppg + r];
            if (e >= 0)
                v += (double)w[e] / gl->cnt[e];
        }
        gl->load[g] = v;
        if (g_live(mask, g) && (*heavy < 0 || v > peak)) {
            peak = v;
            *heavy = g;
        }
    }
    return peak;
}

/* The layer's largest load once slot q holds e instead of a. */
static double g_peak_after(const plan_dims *d, const float *w,
                           const uint8_t *mask, const glayer *gl, int q,
                           int e)
{
    int E = d->E, a = gl->x[q], gq = q / d->ppg;
    double peak = 0.0;
    for (int g = 0; g < d->M; g++) {
        if (!g_live(mask, g))
            continue;
        double v = gl->load[g];
        int ha = gl->held[(size_t)g * E + a], he = gl->held[(size_t)g * E + e];
        if (ha)
            v -= (double)w[a] * ha / gl->cnt[a];
        if (he)
            v -= (double)w[e] * he / gl->cnt[e];
        int na = ha - (g == gq), ne = he + (g == gq);
        if (na)
            v += (double)w[a] * na / (gl->cnt[a] - 1);
        if (ne)
            v += (double)w[e] * ne / (gl->cnt[e] + 1);
        if (v > peak)
            peak = v;
    }
    return peak;
}

/* The layer's best copy: a slot of the heaviest GPU takes another expert,
 * or another GPU takes a replica of an expert the heaviest holds (only
 * those can lower its load); GPUs with budget left, slots not frozen. */
static void g_best(const plan_dims *d, const float *w, const uint8_t *mask,
                   const uint8_t *was, const uint8_t *frozen, const int *left,
                   glayer *gl, long long *work)
{
    int E = d->E, h;
    double peak = g_loads(d, w, mask, gl, &h);
    gl->best_gain = 0.0;
    gl->best_s = -1;
    if (h < 0)
        return;
    for (int q = 0; q < d->P; q++) {
        int g = q / d->ppg, a = gl->x[q];
        if (!g_live(mask, g) || !left[g] || (frozen && frozen[q]) || a < 0 ||
            gl->cnt[a] < 2)
            continue;
        for (int e = 0; e < E; e++) {
            size_t ge = (size_t)g * E + e;
            if (e == a || was[ge] || gl->held[ge])
                continue; /* not a copy */
            if (g != h && !gl->held[(size_t)h * E + a] &&
                !gl->held[(size_t)h * E + e])
                continue;
            *work += d->M;
            double gain = peak - g_peak_after(d, w, mask, gl, q, e);
            if (gain > gl->best_gain) {
                gl->best_gain = gain;
                gl->best_s = q;
                gl->best_e = e;
            }
        }
    }
}

int greedy_copies_fill(const plan_dims *d, const float *weight, const uint8_t *mask,
                const int32_t *cur, int32_t *plan, const uint8_t *frozen,
                int *left, long long left_total, long long work_cap,
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
        gl->cnt = calloc((size_t)E, sizeof(int));
        gl->held = calloc((size_t)M * E, sizeof(int));
        gl->load = malloc((size_t)M * sizeof(double));
        if (!gl->cnt || !gl->held || !gl->load)
            goto oom;
        for (int q = 0; q < P; q++) {
            int e = gl->x[q], g = q / d->ppg, c = cur[(size_t)l * P + q];
            if (e >= 0) {
                gl->cnt[e]++;
                gl->held[(size_t)g * E + e]++;
            }
            if (c >= 0 && g_live(mask, g))
                was[((size_t)l * M + g) * E + c] = 1;
        }
    }
    long long work = 0;
    for (int l = 0; l < L; l++)
        g_best(d, weight + (size_t)l * E, mask, was + (size_t)l * M * E,
               frozen ? frozen + (size_t)l * P : NULL, left, &gls[l], &work);
    while (left_total != 0 && work <= work_cap) {
        int bl = -1;
        for (int l = 0; l < L; l++)
            if (gls[l].best_s >= 0 &&
                (bl < 0 || gls[l].best_gain > gls[bl].best_gain))
                bl = l;
        if (bl < 0)
            break;
        glayer *gl = &gls[bl];
        int q = gl->best_s, e = gl->best_e, a = gl->x[q], g = q / d->ppg;
        gl->held[(size_t)g * E + a]--;
        gl->cnt[a]--;
        gl->x[q] = e;
        gl->held[(size_t)g * E + e]++;
        gl->cnt[e]++;
        left[g]--;
        if (left_total > 0)
            left_total--;
        greedy_copy *c = &out[(*nout)++];
        c->layer = bl;
        c->slot = q;
        c->expert = e;
        c->gain = gl->best_gain;
        /* the slot is taken now; a GPU out of budget changes the choice
         * of every layer that wanted it */
        uint8_t *fz = frozen ? (uint8_t *)frozen + (size_t)bl * P : NULL;
        if (fz)
            fz[q] = 1;
        for (int l = 0; l < L; l++)
            if (l == bl || (!left[g] && gls[l].best_s >= 0 &&
                            gls[l].best_s / d->ppg == g))
                g_best(d, weight + (size_t)l * E, mask,
                       was + (size_t)l * M * E,
                       frozen ? frozen + (size_t)l * P : NULL, left, &gls[l],
                       &work);
        int h;
        c->f_after = g_loads(d, weight + (size_t)bl * E, mask, gl, &h);
    }
    goto done;
oom:
    rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
done:
    for (int l = 0; gls && l < L; l++) {
        free(gls[l].cnt);
        free(gls[l].held);
        free(gls[l].load);
    }
    free(gls);
    free(was);
    return rc;
}
