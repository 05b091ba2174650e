/* Helpers on finished plans shared by both backends. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

float plan_layer_max_gpu_load(const plan_dims *d, const float *w,
                              const int32_t *phy2log, const int32_t *logcnt)
{
    float mx = 0.0f;
    for (int g = 0; g < d->M; g++) {
        float s = 0.0f;
        for (int r = 0; r < d->ppg; r++) {
            int e = phy2log[g * d->ppg + r];
            s += w[e] / (float)logcnt[e];
        }
        if (s > mx)
            mx = s;
    }
    return mx;
}

double plan_layer_loads(const plan_dims *d, const float *w,
                        const int32_t *slots, const int *cnt,
                        const uint8_t *mask, double *load, int *heaviest)
{
    double peak = 0.0;
    int h = -1;
    for (int g = 0; g < d->M; g++) {
        double s = plan_gpu_load(d, w, slots, cnt, g);
        load[g] = s;
        if ((!mask || mask[g]) && (h < 0 || s > peak)) {
            peak = s;
            h = g;
        }
    }
    if (heaviest)
        *heaviest = h;
    return peak;
}

int plan_layer_holds_twice(const plan_dims *d, const int32_t *p2l,
                           int32_t *seen_on)
{
    for (int e = 0; e < d->E; e++)
        seen_on[e] = -1;
    for (int p = 0; p < d->P; p++) {
        int e = p2l[p], g = p / d->ppg;
        if (e < 0)
            continue;
        if (seen_on[e] == g)
            return 1;
        seen_on[e] = g;
    }
    return 0;
}

/* (one pass over the slots for the groups' nodes, cnt standing in for
 * a [G] table; with distinct, cnt as plan_layer_holds_twice's scratch;
 * one pass for the counts) */
int plan_layer_keepable(const plan_dims *d, const int32_t *p2l, int distinct,
                        int32_t *cnt)
{
    for (int p = 0; p < d->P; p++)
        if (p2l[p] < 0)
            return 0;
    /* (cnt holds each group's node meanwhile) */
    for (int g = 0; d->N > 1 && g < d->G; g++)
        cnt[g] = -1;
    for (int n = 0; d->N > 1 && n < d->N; n++)
        for (int p = n * d->ppn; p < (n + 1) * d->ppn; p++) {
            int g = p2l[p] / d->gs;
            if (cnt[g] >= 0 && cnt[g] != n)
                return 0;
            cnt[g] = n;
        }
    if (distinct && plan_layer_holds_twice(d, p2l, cnt))
        return 0;
    memset(cnt, 0, (size_t)d->E * sizeof(int32_t));
    for (int p = 0; p < d->P; p++)
        cnt[p2l[p]]++;
    return 1;
}

void plan_fill_log2phy(const plan_dims *d, const int32_t *phy2log,
                       const int32_t *phyrank, int32_t *log2phy)
{
    /* -1 is all one bits in two's complement: a byte fill is enough. */
    memset(log2phy, 0xFF, (size_t)d->E * d->maxrep * sizeof(int32_t));
    for (int s = 0; s < d->P; s++)
        log2phy[phy2log[s] * d->maxrep + phyrank[s]] = s;
}

/* Past this many bytes of log2phy a plan's layers are filled by several
 * threads: one thread writes about 8-10 GB/s, and the largest plans (1024
 * experts in 4096 slots: 730 MB) would otherwise spend longer in these
 * writes than the device spends planning and downloading. Memory, not
 * the cores, bounds it: a few threads are enough. */
#define FILL_THREADED_BYTES ((size_t)64 << 20)
#define FILL_THREADS_MAX 8

typedef struct fill_run {
    const plan_dims *d;
    const int32_t *phy2log, *phyrank;
    int32_t *log2phy;
} fill_run;

static void fill_layer(void *arg, int worker, int l)
{
    const fill_run *r = arg;
    size_t row = (size_t)r->d->E * r->d->maxrep, p = (size_t)r->d->P;
    (void)worker;
    plan_fill_log2phy(r->d, r->phy2log + l * p, r->phyrank + l * p,
                      r->log2phy + l * row);
}

void plan_fill_log2phy_layers(const plan_dims *d, const int32_t *phy2log,
                              const int32_t *phyrank, int32_t *log2phy,
                              eplbi_threads *threads)
{
    size_t bytes = (size_t)d->L * d->E * d->maxrep * sizeof(int32_t);
    fill_run run = {d, phy2log, phyrank, log2phy};
    int workers = 1;
    if (bytes >= FILL_THREADED_BYTES) {
        workers = eplbi_host_threads(threads->option, d->L);
        if (workers > FILL_THREADS_MAX)
            workers = FILL_THREADS_MAX;
    }
    if (workers == 1) {
        for (int l = 0; l < d->L; l++)
            fill_layer(&run, 0, l);
        return;
    }
    eplbi_parallel_items(&threads->pool, workers, d->L, fill_layer, &run);
}

/* One layer's log2phy rows (l2p) from its phy2log row, each expert's
 * replicas in slot order. fill [E]: each expert's replicas so far, linear
 * in the slots; NULL (no memory for it): each replica looks for its row's
 * first free entry (the same result, quadratic in an expert's replicas). */
static void layer_by_slot(const plan_dims *d, const int32_t *p2l,
                          int32_t *l2p, int *fill)
{
    memset(l2p, 0xFF, (size_t)d->E * d->maxrep * sizeof(int32_t));
    if (fill)
        memset(fill, 0, (size_t)d->E * sizeof(int));
    for (int s = 0; s < d->P; s++) {
        int e = p2l[s];
        if (e < 0)
            continue;
        int32_t *r = l2p + (size_t)e * d->maxrep;
        if (fill) {
            r += fill[e]++;
        } else {
            while (*r >= 0)
                r++;
        }
        *r = s;
    }
}

void plan_log2phy_by_slot(const plan_dims *d, const int32_t *phy2log,
                          int32_t *log2phy)
{
    size_t row = (size_t)d->E * d->maxrep;
    int *fill = malloc((size_t)d->E * sizeof(int));
    for (int l = 0; l < d->L; l++)
        layer_by_slot(d, phy2log + (size_t)l * d->P, log2phy + (size_t)l * row,
                      fill);
    free(fill);
}

/* plan_log2phy_by_slot's layers on the context's host threads: each
 * worker with its own counts, each layer's rows written by one worker. */
typedef struct by_slot_run {
    const plan_dims *d;
    const int32_t *phy2log;
    int32_t *log2phy;
    int *fill; /* [workers][E] */
} by_slot_run;

static void by_slot_layer(void *arg, int worker, int l)
{
    const by_slot_run *run = arg;
    const plan_dims *d = run->d;
    layer_by_slot(d, run->phy2log + (size_t)l * d->P,
                  run->log2phy + (size_t)l * d->E * d->maxrep,
                  run->fill + (size_t)worker * d->E);
}

void plan_log2phy_by_slot_threads(const plan_dims *d, const int32_t *phy2log,
                                  int32_t *log2phy, eplbi_threads *threads)
{
    int workers = eplbi_host_threads(threads->option, d->L);
    int *fill = workers > 1 ? malloc((size_t)workers * d->E * sizeof(int))
                            : NULL;
    if (!fill) {
        plan_log2phy_by_slot(d, phy2log, log2phy);
        return;
    }
    by_slot_run run = {d, phy2log, log2phy, fill};
    eplbi_parallel_items(&threads->pool, workers, d->L, by_slot_layer, &run);
    free(fill);
}
