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

/* The ten rounds on counter words c0..c3 (variables of type T: uint, or a
 * vector of lanes) under key words k0, k1 (uint variables, advanced in
 * place); mulhi gives the high words of PHILOX_M* times a T. */
#define PHILOX_ROUNDS(T, mulhi, c0, c1, c2, c3, k0, k1)                    \
    for (int r_ = 0; r_ < 10; r_++) {                                      \
        if (r_) {                                                          \
            k0 += PHILOX_W0;                                               \
            k1 += PHILOX_W1;                                               \
        }                                                                  \
        T hi0_ = mulhi(PHILOX_M0, c0), lo0_ = PHILOX_M0 * c0;              \
        T hi1_ = mulhi(PHILOX_M1, c2), lo1_ = PHILOX_M1 * c2;              \
        c0 = hi1_ ^ c1 ^ k0;                                               \
        c1 = lo1_;                                                         \
        c2 = hi0_ ^ c3 ^ k1;                                               \
        c3 = lo0_;                                                         \
    }

inline uint4 philox4x32_10(uint c0, uint c1, uint c2, uint c3, uint k0,
                          uint k1)
{
    PHILOX_ROUNDS(uint, PHILOX_MULHI, c0, c1, c2, c3, k0, k1);
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
    PHILOX_ROUNDS(laneu, PHILOX_MULHI_LANES, c0, c1, c2, c3, k0, k1);
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}
#endif
