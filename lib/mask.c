/* Plans over the GPUs that are still usable. A dead GPU's slots hold -1;
 * the live GPUs share every expert. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int mask_check(const plan_dims *d, const uint8_t *mask)
{
    int live = 0;
    for (int g = 0; g < d->M; g++)
        live += mask[g] != 0;
    if (live == 0)
        return eplb_fail(EPLB_ERR_BAD_MASK,
                         "gpu_mask marks all %d GPUs dead: at least one GPU "
                         "must be usable", d->M);
    if ((long)live * d->ppg < d->E)
        return eplb_fail(EPLB_ERR_BAD_MASK,
                         "gpu_mask leaves %d usable GPUs x %d slots = %d "
                         "slots for %d experts: every expert needs a slot",
                         live, d->ppg, live * d->ppg, d->E);
    return EPLB_OK;
}

/* Global policy over the live GPUs: the backend plans a problem of `live`
 * GPUs, whose GPU i is the i-th live GPU. */
int mask_plan_fresh(eplb_context *ctx, const plan_dims *d,
                    const float *weight, const uint8_t *mask,
                    int32_t *phy2log, int32_t *log2phy, int32_t *logcnt)
{
    int live = 0;
    for (int g = 0; g < d->M; g++)
        live += mask[g] != 0;
    plan_dims sd = *d;
    sd.G = sd.N = 1;
    sd.M = sd.gn = live;
    sd.P = sd.ppn = live * d->ppg;
    sd.gs = sd.lpn = d->E;
    sd.gpn = 1;
    sd.maxrep = sd.P - sd.E + 1;
    size_t L = (size_t)d->L;
    int32_t *sub_p2l = malloc(L * sd.P * sizeof(int32_t));
    int32_t *sub_l2p = malloc(L * sd.E * sd.maxrep * sizeof(int32_t));
    int32_t *sub_cnt = malloc(L * sd.E * sizeof(int32_t));
    int *gpu_of = malloc((size_t)live * sizeof(int));
    int rc = EPLB_OK;
    if (!sub_p2l || !sub_l2p || !sub_cnt || !gpu_of)
        rc = eplb_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    if (rc == EPLB_OK)
        rc = context_backend_plan(ctx, &sd, weight, sub_p2l, sub_l2p,
                                  sub_cnt);
    if (rc == EPLB_OK) {
        for (int g = 0, i = 0; g < d->M; g++)
            if (mask[g])
                gpu_of[i++] = g;
        for (size_t l = 0; l < L; l++) {
            int32_t *p2l = phy2log + l * d->P;
            const int32_t *sp = sub_p2l + l * sd.P;
            for (int s = 0; s < d->P; s++)
                p2l[s] = -1;
            for (int i = 0; i < live; i++)
                memcpy(p2l + (size_t)gpu_of[i] * d->ppg,
                       sp + (size_t)i * d->ppg, d->ppg * sizeof(int32_t));
        }
        memcpy(logcnt, sub_cnt, L * d->E * sizeof(int32_t));
        plan_log2phy_by_slot(d, phy2log, log2phy);
    }
    free(sub_p2l);
    free(sub_l2p);
    free(sub_cnt);
    free(gpu_of);
    return rc;
}
