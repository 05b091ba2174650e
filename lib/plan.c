/* Helpers on finished plans shared by both backends. */
#include "internal.h"

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

void plan_fill_log2phy(const plan_dims *d, const int32_t *phy2log,
                       const int32_t *phyrank, int32_t *log2phy)
{
    /* -1 is all one bits in two's complement: a byte fill is enough. */
    memset(log2phy, 0xFF, (size_t)d->E * d->maxrep * sizeof(int32_t));
    for (int s = 0; s < d->P; s++)
        log2phy[phy2log[s] * d->maxrep + phyrank[s]] = s;
}

void plan_log2phy_by_slot(const plan_dims *d, const int32_t *phy2log,
                          int32_t *log2phy)
{
    size_t row = (size_t)d->E * d->maxrep;
    memset(log2phy, 0xFF, (size_t)d->L * row * sizeof(int32_t));
    for (int l = 0; l < d->L; l++) {
        const int32_t *p2l = phy2log + (size_t)l * d->P;
        int32_t *l2p = log2phy + (size_t)l * row;
        for (int s = 0; s < d->P; s++) {
            int e = p2l[s];
            if (e < 0)
                continue;
            int32_t *r = l2p + (size_t)e * d->maxrep;
            while (*r >= 0)
                r++;
            *r = s;
        }
    }
}
