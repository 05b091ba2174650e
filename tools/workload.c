#include "workload.h"

#include <math.h>

/* Tokens per expert per layer at the mean: the recorded files hold counts
 * of this order. */
#define WORKLOAD_MEAN_TOKENS 4000.0

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

static double gaussian(uint64_t *state)
{
    double u = uniform01(state), v = uniform01(state);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

void workload_generate(float *weight, int layers, int experts, uint64_t seed)
{
    uint64_t st = seed ^ 0x5DEECE66Dull;
    for (int l = 0; l < layers; l++) {
        /* sigma 0.45..1.05: over 256 experts this gives per-layer
         * max/mean of about 3-19 (mean about 7) and coefficients of
         * variation of about 0.45-1.6, as the recorded loads have (max/mean
         * 5.6-8.1 per file, worst layer 13.7; CV 0.43-1.76). */
        double sigma = 0.45 + 0.6 * uniform01(&st);
        double mu = log(WORKLOAD_MEAN_TOKENS) - 0.5 * sigma * sigma;
        for (int e = 0; e < experts; e++) {
            double x = exp(mu + sigma * gaussian(&st));
            weight[(long)l * experts + e] = (float)floor(x);
        }
    }
}

void workload_perturb(float *weight, int layers, int experts, float amount,
                      uint64_t seed)
{
    uint64_t st = seed ^ 0xA5A5A5A5ull;
    for (long i = 0; i < (long)layers * experts; i++) {
        double u = 2.0 * uniform01(&st) - 1.0;
        weight[i] = (float)floor(weight[i] * (1.0 + amount * u) + 0.5);
    }
}
