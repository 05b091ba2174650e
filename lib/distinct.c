/* One replica of an expert per GPU at most. */
#include "internal.h"

int distinct_per_gpu_apply(const plan_dims *d, const float *weight,
                           const uint8_t *mask, int32_t *phy2log,
                           int32_t *logcnt)
{
    (void)d; (void)weight; (void)mask; (void)phy2log; (void)logcnt;
    return eplb_fail(EPLB_ERR_BAD_OPTION,
                     "distinct_per_gpu is not built yet");
}
