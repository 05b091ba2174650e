/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11): a counter-based generator, so the noise of any (step, row,
 * candidate, item) is computed directly and is the same on every device.
 * cl/eplb_philox.cl holds the kernel-side twin; both must stay identical. */
#ifndef EPLB_PHILOX_H
#define EPLB_PHILOX_H

#include <stdint.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox4x32_10(const uint32_t in[4], uint32_t k0,
                                 uint32_t k1, uint32_t out[4])
{
    uint32_t c0 = in[0], c1 = in[1], c2 = in[2], c3 = in[3];
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* 24 random bits as u in [0, 1): exact in float32 on every device. */
static inline float eplb_unit(uint32_t bits)
{
    return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

/* The noise of items 4q..4q+3 of one candidate: one Philox call counted by
 * (step, row, candidate, q), word j for item 4q+j. */
static inline void eplb_uniform4(uint64_t seed, uint32_t step, uint32_t row,
                                 uint32_t cand, uint32_t quad, float u[4])
{
    uint32_t ctr[4] = {quad, cand, row, step}, out[4];
    philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32), out);
    for (int j = 0; j < 4; j++)
        u[j] = eplb_unit(out[j]);
}

#endif
