#include "planstats.h"

#include <stdlib.h>

long plan_duplicate_slots(const eplb_shape *s, const int32_t *phy2log,
                          long *layers)
{
    int P = s->num_replicas, ppg = P / s->num_gpus;
    long dup = 0, lay = 0;
    for (int l = 0; l < s->layers; l++) {
        long before = dup;
        const int32_t *p2l = phy2log + (size_t)l * P;
        for (int i = 0; i < P; i++)
            for (int j = i - i % ppg; j < i; j++)
                if (p2l[i] >= 0 && p2l[j] == p2l[i]) {
                    dup++;
                    break;
                }
        lay += dup > before;
    }
    if (layers)
        *layers = lay;
    return dup;
}

long plan_groups_on_one_node(const eplb_shape *s, const int32_t *phy2log)
{
    int G = s->num_groups, gs = s->experts / G;
    int ppn = s->num_replicas / s->num_nodes;
    int *node = malloc((size_t)G * sizeof(int));
    if (!node)
        return -1;
    long whole = 0;
    for (int l = 0; l < s->layers; l++) {
        const int32_t *p2l = phy2log + (size_t)l * s->num_replicas;
        for (int g = 0; g < G; g++)
            node[g] = -1;
        /* -1: not seen yet; -2: seen on two nodes */
        for (int i = 0; i < s->num_replicas; i++) {
            if (p2l[i] < 0)
                continue;
            int g = p2l[i] / gs, n = i / ppn;
            node[g] = node[g] == -1 || node[g] == n ? n : -2;
        }
        for (int g = 0; g < G; g++)
            whole += node[g] >= 0;
    }
    free(node);
    return whole;
}
