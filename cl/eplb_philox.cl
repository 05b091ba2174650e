/* Philox4x32-10, the kernel-side twin of lib/philox.h: the same counter and
 * key give the same bits here and on the host. */
#pragma OPENCL FP_CONTRACT OFF

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* The high word of a 32x32-bit product. CPU builds (CAND_LANES > 1) take
 * it from one 64-bit multiply: PoCL expands mul_hi into four 16-bit
 * multiplies, which made the key generation cost as much as the packing.
 * Both give the same bits. */
#if CAND_LANES > 1
#define PHILOX_MULHI(a, b) ((uint)(((ulong)(a) * (ulong)(b)) >> 32))
#else
#define PHILOX_MULHI(a, b) mul_hi((uint)(a), (uint)(b))
#endif

inline uint4 philox4x32_10(uint c0, uint c1, uint c2, uint c3, uint k0,
                          uint k1)
{
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint hi0 = PHILOX_MULHI(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        uint hi1 = PHILOX_MULHI(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    return (uint4)(c0, c1, c2, c3);
}

/* 24 random bits as u in [0, 1). */
inline float eplb_unit(uint bits)
{
    return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

/* The noise of items 4q..4q+3 of one candidate: one call counted by
 * (step, row, candidate, q), word j for item 4q+j (as lib/philox.h). */
inline uint4 eplb_bits4(uint seed_lo, uint seed_hi, uint step, uint row,
                        uint cand, uint quad)
{
    return philox4x32_10(quad, cand, row, step, seed_lo, seed_hi);
}

#if CAND_LANES > 1
#define LV_(t, n) t##n
#define LV(t, n) LV_(t, n)
typedef LV(uint, CAND_LANES) laneu;
typedef LV(ulong, CAND_LANES) laneul;
#define PHILOX_MULHI_LANES(m, v)                                           \
    LV(convert_uint, CAND_LANES)((LV(convert_ulong, CAND_LANES)(v) *        \
                                  (ulong)(m)) >> 32)

/* eplb_bits4 for CAND_LANES candidates at once (CPU builds): lane j gets
 * the bits of candidate cand.sj, word j of item 4*quad+j in out[j]. */
inline void eplb_bits4_lanes(uint seed_lo, uint seed_hi, uint step,
                             uint row, laneu cand, uint quad, laneu *out)
{
    laneu c0 = quad, c1 = cand, c2 = row, c3 = step;
    uint k0 = seed_lo, k1 = seed_hi;
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        laneu hi0 = PHILOX_MULHI_LANES(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        laneu hi1 = PHILOX_MULHI_LANES(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
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
#endif
