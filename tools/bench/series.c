/* eplb-bench's re-plan series: load matrices window by window, built from
 * the recorded DeepSeek-V3 files (58 MoE layers x 256 experts), or from the
 * generator's loads where those are absent (one seeded matrix per file
 * name), resized to other model shapes by tiling real layers. Every load
 * is rounded to a whole token count, as the recorded ones are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "workload.h"

/* File f of bench_files at its own size (58x256 when recorded). */
static float *file_loads(bench *b, int f, int *L, int *E)
{
    if (!b->have_real) {
        *L = GEN_LAYERS;
        *E = GEN_EXPERTS;
        return generated_loads(GEN_LAYERS, GEN_EXPERTS, GEN_SEED + f);
    }
    float *w = load_real(b, bench_files[f], L, E);
    if (!w)
        exit(1);
    return w;
}

/* A matrix of L x E made of the Ls x Es source by tiling: layer l, expert
 * e reads source layer (l + e / Es) mod Ls, expert (e + (l / Ls) E) mod Es.
 * Fewer experts take a contiguous block of a real layer (so a real group
 * stays one group or whole groups), more experts put whole real layers
 * side by side, and layers past Ls take the real ones again with other
 * experts, so that no two layers are copies. */
static float *tile(const float *src, int Ls, int Es, int L, int E)
{
    float *w = xmalloc((size_t)L * E * sizeof(float));
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            int sl = (l + e / Es) % Ls;
            int se = (int)(((long)e + (long)(l / Ls) * E) % Es);
            w[(size_t)l * E + e] = src[(size_t)sl * Es + se];
        }
    return w;
}

/* File f resized to the series' shape. */
static float *shaped_loads(bench *b, int f, const eplb_shape *s)
{
    int L, E;
    float *w = file_loads(b, f, &L, &E);
    if (L == s->layers && E == s->experts)
        return w;
    float *t = tile(w, L, E, s->layers, s->experts);
    free(w);
    return t;
}

/* The file's name without ".json"; "gen." before it where generated
 * loads stand in for it. */
static const char *short_name(const bench *b, int f)
{
    static char names[NFILES][48];
    char *n = names[f];
    snprintf(n, sizeof names[f], "%s%s", b->have_real ? "" : "gen.",
             bench_files[f]);
    char *dot = strstr(n, ".json");
    if (dot)
        *dot = 0;
    return n;
}

static void series_init(series *sr, const char *kind, const eplb_shape *s,
                        int windows)
{
    memset(sr, 0, sizeof *sr);
    sr->kind = kind;
    sr->s = *s;
    sr->windows = windows < SERIES_MAX_WINDOWS ? windows : SERIES_MAX_WINDOWS;
    sr->mask_from = sr->windows; /* no mask */
}

static double matrix_sum(const float *w, size_t n)
{
    double t = 0;
    for (size_t i = 0; i < n; i++)
        t += w[i];
    return t;
}

void series_drift(bench *b, series *sr, int from, int to, int windows,
                  const eplb_shape *s)
{
    series_init(sr, "drift", s, windows);
    snprintf(sr->name, sizeof sr->name, "%s drifting into %s",
             short_name(b, from), short_name(b, to));
    size_t n = (size_t)s->layers * s->experts;
    float *a = shaped_loads(b, from, s), *z = shaped_loads(b, to, s);
    /* the same traffic in all: the decode file scaled to the prefill
     * file's total, so that the mix moves evenly from one to the other */
    double sa = matrix_sum(a, n), sz = matrix_sum(z, n);
    double scale = sz > 0 ? sa / sz : 1.0;
    int W = sr->windows;
    for (int t = 0; t < W; t++) {
        double f = W > 1 ? (double)t / (W - 1) : 0.0;
        sr->w[t] = xmalloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            sr->w[t][i] = (float)floor((1.0 - f) * a[i] + f * scale * z[i] +
                                       0.5);
    }
    free(a);
    free(z);
}

void series_files(bench *b, series *sr, const int *files, int n_files,
                  const eplb_shape *s)
{
    series_init(sr, "files", s, n_files);
    snprintf(sr->name, sizeof sr->name, "%d files in turn, %s first, "
             "1-5%% noise", sr->windows, short_name(b, files[0]));
    for (int t = 0; t < sr->windows; t++) {
        sr->w[t] = shaped_loads(b, files[t], s);
        /* 1%, 2%, ... 5%, then 1% again */
        workload_perturb(sr->w[t], s->layers, s->experts,
                         0.01f * (float)(1 + t % 5), 500 + t);
    }
}

void series_burst(bench *b, series *sr, int file, int windows, int at,
                  int hot, const eplb_shape *s)
{
    series_init(sr, "burst", s, windows);
    snprintf(sr->name, sizeof sr->name, "%s, 1%% noise, %d experts x10 in "
             "windows %d-%d", short_name(b, file), hot, at, at + 1);
    size_t n = (size_t)s->layers * s->experts;
    float *base = shaped_loads(b, file, s);
    int E = s->experts;
    for (int t = 0; t < sr->windows; t++) {
        sr->w[t] = xmalloc(n * sizeof(float));
        memcpy(sr->w[t], base, n * sizeof(float));
        workload_perturb(sr->w[t], s->layers, E, 0.01f, 700 + t);
        if (t != at && t != at + 1)
            continue;
        /* the same hot experts in both windows: per layer `hot` experts
         * spread over the layer (a stride coprime with E, not one group) */
        for (int l = 0; l < s->layers; l++)
            for (int k = 0; k < hot; k++) {
                int e = (int)(((long)l * 37 + (long)k * (E / hot + 1) + 11) %
                              E);
                sr->w[t][(size_t)l * E + e] *= 10.0f;
            }
    }
    free(base);
}

void series_gpu_dies(series *sr, int gpu, int from)
{
    sr->kind = "gpu_dies";
    sr->mask = xmalloc((size_t)sr->s.num_gpus);
    memset(sr->mask, 1, (size_t)sr->s.num_gpus);
    sr->mask[gpu] = 0;
    sr->mask_from = from;
    size_t len = strlen(sr->name);
    snprintf(sr->name + len, sizeof sr->name - len, ", GPU %d dead from "
             "window %d", gpu, from);
}

const uint8_t *series_mask(const series *sr, int t)
{
    return t >= sr->mask_from ? sr->mask : NULL;
}

void series_free(series *sr)
{
    for (int t = 0; t < sr->windows; t++)
        free(sr->w[t]);
    free(sr->mask);
}
