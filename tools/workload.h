/* A seeded generator of realistic expert loads, for machines without the
 * recorded DeepSeek-V3 files. */
#ifndef EPLB_WORKLOAD_H
#define EPLB_WORKLOAD_H

#include <stdint.h>

/* weight[layers][experts]: per layer a log-normal spread of token counts
 * whose skew (max/mean about 3-19, mean about 7; coefficient of
 * variation about 0.45-1.6) is that of the recorded DeepSeek-V3 loads.
 * Same seed, same loads. */
void workload_generate(float *weight, int layers, int experts, uint64_t seed);

/* Multiplies each load by (1 + amount * u), u uniform in [-1, 1): the
 * "same traffic, a little later" matrix used for migration figures. */
void workload_perturb(float *weight, int layers, int experts, float amount,
                      uint64_t seed);

#endif
