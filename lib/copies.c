/* What applying a plan costs the engine: expert copies per GPU. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int eplb_copies(const eplb_shape *shape, const int32_t *current,
                const int32_t *next, long *per_gpu, long *total)
{
    eplbi_clear_error();
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (!current || !next || !total)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "current, next and total must not be NULL");
    int L = shape->layers, E = shape->experts, P = shape->num_replicas,
        M = shape->num_gpus, ppg = P / M;
    size_t n = (size_t)L * P;
    for (size_t i = 0; i < n; i++) {
        const int32_t *bad = current[i] < -1 || current[i] >= E ? current
                             : next[i] < -1 || next[i] >= E     ? next
                                                                : NULL;
        if (bad)
            return eplbi_fail(EPLB_ERR_BAD_PLAN,
                              "%s[%zu][%zu] is %d: expert ids are 0..%d, or "
                              "-1 for an empty slot",
                              bad == current ? "current" : "next", i / P,
                              i % P, bad[i], E - 1);
    }
    /* held[e] = stamp of the (layer, GPU) that holds e in `current`. */
    long *held = malloc((size_t)E * 2 * sizeof(long));
    if (!held)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    long *counted = held + E;
    for (int e = 0; e < 2 * E; e++)
        held[e] = -1;
    if (per_gpu)
        memset(per_gpu, 0, (size_t)M * sizeof(long));
    long sum = 0;
    for (int l = 0; l < L; l++)
        for (int g = 0; g < M; g++) {
            long stamp = (long)l * M + g;
            const int32_t *cur = current + (size_t)l * P + (size_t)g * ppg;
            const int32_t *nxt = next + (size_t)l * P + (size_t)g * ppg;
            for (int r = 0; r < ppg; r++)
                if (cur[r] >= 0)
                    held[cur[r]] = stamp;
            for (int r = 0; r < ppg; r++) {
                int e = nxt[r];
                if (e < 0 || held[e] == stamp || counted[e] == stamp)
                    continue;
                counted[e] = stamp;
                sum++;
                if (per_gpu)
                    per_gpu[g]++;
            }
        }
    free(held);
    *total = sum;
    return EPLB_OK;
}

/* Slots whose expert differs; a negative status (with its message) for a
 * bad shape, a NULL plan or an id out of range. */
long eplb_migration(const eplb_shape *shape, const int32_t *a,
                    const int32_t *b)
{
    eplbi_clear_error();
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (!a || !b)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "phy2log_a and phy2log_b must not be NULL");
    int E = shape->experts, P = shape->num_replicas;
    long moved = 0;
    size_t n = (size_t)shape->layers * P;
    for (size_t i = 0; i < n; i++) {
        const int32_t *bad = a[i] < -1 || a[i] >= E   ? a
                             : b[i] < -1 || b[i] >= E ? b
                                                      : NULL;
        if (bad)
            return eplbi_fail(EPLB_ERR_BAD_PLAN,
                              "%s[%zu][%zu] is %d: expert ids are 0..%d, or "
                              "-1 for an empty slot",
                              bad == a ? "phy2log_a" : "phy2log_b", i / P,
                              i % P, bad[i], E - 1);
        moved += a[i] != b[i];
    }
    return moved;
}
