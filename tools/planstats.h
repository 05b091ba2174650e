/* Plan statistics the benchmark and the tests share: duplicate replicas
 * on one GPU, and groups kept on one node. Slots of -1 (dead GPUs) are
 * skipped. */
#ifndef EPLB_PLANSTATS_H
#define EPLB_PLANSTATS_H

#include <stdint.h>

#include "eplb_cl.h"

/* Slots holding an expert that an earlier slot of the same GPU holds too;
 * *layers (may be NULL) gets the layers with at least one. */
long plan_duplicate_slots(const eplb_shape *shape, const int32_t *phy2log,
                          long *layers);

/* (layer, group) pairs whose replicas all sit on one node. */
long plan_groups_on_one_node(const eplb_shape *shape,
                             const int32_t *phy2log);

#endif
