/* The migration figures' greedy baseline: from a plan in service,
 * repeatedly the single copy (a slot takes an expert its GPU neither had
 * in service nor holds; the slot's expert keeps a replica) that lowers the
 * sum over layers of the largest GPU load most, while each GPU has budget
 * left. Written apart from the library (eplb-bench's migration part and
 * test_schedule hold the library's budgeted plans against it). */
#include "greedy_baseline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "greedy baseline: out of memory\n");
        exit(1);
    }
    return p;
}

/* One layer's state for the greedy: slots, counts, what each GPU held in
 * the plan in service, loads. */
typedef struct greedy_layer {
    int32_t *x;     /* [P] */
    int *cnt;       /* [E] */
    uint8_t *was;   /* [M][E] */
    int *held;      /* [M][E] */
    double best_gain;
    int best_s, best_e;
} greedy_layer;

/* Largest load of the layer after slot s takes expert e (O(M) with the
 * two experts' replica counts changed). */
static double peak_after(const eplb_shape *s, const float *w,
                         const greedy_layer *gl, const double *load, int q,
                         int e)
{
    int M = s->num_gpus, E = s->experts, ppg = s->num_replicas / M;
    int a = gl->x[q], gq = q / ppg;
    double peak = 0.0;
    for (int g = 0; g < M; g++) {
        double v = load[g];
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

static void layer_loads(const eplb_shape *s, const float *w,
                        const greedy_layer *gl, double *load, int *heavy,
                        double *peak)
{
    int M = s->num_gpus, ppg = s->num_replicas / M;
    *peak = 0.0;
    *heavy = 0;
    for (int g = 0; g < M; g++) {
        double v = 0.0;
        for (int r = 0; r < ppg; r++) {
            int e = gl->x[g * ppg + r];
            v += (double)w[e] / gl->cnt[e];
        }
        load[g] = v;
        if (v > *peak) {
            *peak = v;
            *heavy = g;
        }
    }
}

/* The best single copy of a layer (slots on the heaviest GPU take another
 * expert, or another GPU takes a replica of an expert the heaviest holds),
 * GPUs with budget left only. */
static void greedy_best(const eplb_shape *s, const float *w,
                        greedy_layer *gl, const int *left, double *load,
                        int once)
{
    int M = s->num_gpus, E = s->experts, P = s->num_replicas, ppg = P / M;
    int h;
    double peak;
    layer_loads(s, w, gl, load, &h, &peak);
    gl->best_gain = 0.0;
    gl->best_s = -1;
    for (int q = 0; q < P; q++) {
        int g = q / ppg, a = gl->x[q];
        if (!left[g] || gl->cnt[a] < 2 ||
            (once && !gl->was[(size_t)g * E + a]))
            continue; /* (once: the slot took a copy already) */
        for (int e = 0; e < E; e++) {
            if (e == a || gl->was[(size_t)g * E + e] ||
                gl->held[(size_t)g * E + e])
                continue; /* not a copy */
            /* only moves that touch the heaviest GPU can lower the peak */
            if (g != h && !gl->held[(size_t)h * E + a] &&
                !gl->held[(size_t)h * E + e])
                continue;
            double gain = peak - peak_after(s, w, gl, load, q, e);
            if (gain > gl->best_gain) {
                gl->best_gain = gain;
                gl->best_s = q;
                gl->best_e = e;
            }
        }
    }
}

double greedy_baseline_objective(const eplb_shape *s, const float *w,
                                 const int32_t *cur, int budget, int once)
{
    int L = s->layers, E = s->experts, P = s->num_replicas, M = s->num_gpus;
    int ppg = P / M;
    greedy_layer *gls = xcalloc((size_t)L, sizeof *gls);
    int *left = xcalloc((size_t)M, sizeof(int));
    double *load = xcalloc((size_t)M, sizeof(double));
    for (int g = 0; g < M; g++)
        left[g] = budget;
    for (int l = 0; l < L; l++) {
        greedy_layer *gl = &gls[l];
        gl->x = xcalloc((size_t)P, sizeof(int32_t));
        gl->cnt = xcalloc((size_t)E, sizeof(int));
        gl->was = xcalloc((size_t)M * E, 1);
        gl->held = xcalloc((size_t)M * E, sizeof(int));
        memcpy(gl->x, cur + (size_t)l * P, (size_t)P * sizeof(int32_t));
        for (int q = 0; q < P; q++) {
            int e = gl->x[q], g = q / ppg;
            gl->cnt[e]++;
            gl->held[(size_t)g * E + e]++;
            gl->was[(size_t)g * E + e] = 1;
        }
        greedy_best(s, w + (size_t)l * E, gl, left, load, once);
    }
    for (;;) {
        int bl = -1;
        for (int l = 0; l < L; l++)
            if (gls[l].best_s >= 0 &&
                (bl < 0 || gls[l].best_gain > gls[bl].best_gain))
                bl = l;
        if (bl < 0)
            break;
        greedy_layer *gl = &gls[bl];
        int q = gl->best_s, e = gl->best_e, a = gl->x[q], g = q / ppg;
        gl->held[(size_t)g * E + a]--;
        gl->cnt[a]--;
        gl->x[q] = e;
        gl->held[(size_t)g * E + e]++;
        gl->cnt[e]++;
        left[g]--;
        /* a GPU out of budget changes every layer's choices */
        for (int l = 0; l < L; l++)
            if (l == bl || (!left[g] && gls[l].best_s >= 0 &&
                            gls[l].best_s / ppg == g))
                greedy_best(s, w + (size_t)l * E, &gls[l], left, load,
                            once);
    }
    double obj = 0.0;
    for (int l = 0; l < L; l++) {
        int h;
        double peak;
        layer_loads(s, w + (size_t)l * E, &gls[l], load, &h, &peak);
        obj += peak;
        free(gls[l].x);
        free(gls[l].cnt);
        free(gls[l].was);
        free(gls[l].held);
    }
    free(gls);
    free(left);
    free(load);
    return obj;
}

