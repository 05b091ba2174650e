/* The algorithm's rules, written once for both backends: the host C
 * (lib/pack.c, lib/replicate.c) includes this file, and the kernels are
 * built with it as the first part of their program (lib/cl_engine.c), so
 * each rule below is the same text on the host and on every device.
 * doc/ALGORITHM.md (sections 3, 5 and 8) states the rules; only the
 * orchestrations that serve speed (the host loops, the work-group kernel
 * of cl/eplb_pack.cl, the CPU lanes of cl/eplb_lanes.cl) stay apart.
 *
 * Valid C99 and OpenCL C 1.2. The prelude maps the differences; every
 * float operation keeps its order, and contraction to fused multiply-add
 * stays off on both sides (doc/ALGORITHM.md section 8). */
#ifndef EPLB_RULES_H
#define EPLB_RULES_H

/* ---- prelude ----------------------------------------------------------- */

#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF

typedef uint eplb_u32;
typedef ulong eplb_u64;
#define EPLB_FN inline
#define EPLB_FABS fabs
/* The high word of a 32x32-bit product. CPU builds (CAND_LANES > 1) take
 * it from one 64-bit multiply: PoCL expands mul_hi into four 16-bit
 * multiplies, which made the key generation cost as much as the packing.
 * Both give the same bits. */
#if defined(CAND_LANES) && CAND_LANES > 1
#define EPLB_MULHI32(a, b) ((uint)(((ulong)(a) * (ulong)(b)) >> 32))
#else
#define EPLB_MULHI32(a, b) mul_hi((uint)(a), (uint)(b))
#endif

#else /* C99 */
#include <math.h>
#include <stdint.h>

/* Clang honours the standard pragma; GCC ignores it (and warns), so the
 * host is also compiled with -ffp-contract=off (Makefile.am). */
#if defined(__clang__) || !defined(__GNUC__)
#pragma STDC FP_CONTRACT OFF
#endif

typedef uint32_t eplb_u32;
typedef uint64_t eplb_u64;
#define EPLB_FN static inline
#define EPLB_FABS fabsf
#define EPLB_MULHI32(a, b) ((uint32_t)(((uint64_t)(a) * (uint32_t)(b)) >> 32))
#endif

/* ---- shared constants -------------------------------------------------- */

/* Up to this many packs the greedy fill scans the packs for the lightest
 * open one (the host over an array, a kernel work-item over registers);
 * beyond, a min-heap ordered by eplbi_lighter_first finds it. Both paths
 * give the same plan; lib/cl_engine.c sizes the heap's scratch by it. */
#define EPLB_PACK_SCAN_MAX 32

/* ---- ties by index (doc/ALGORITHM.md sections 3 and 8) ----------------- */

/* Whether item a (value va) comes before item b (value vb) when larger
 * values come first and equal values go to the lower index: sort keys and
 * weights descending, the replication heap (load per replica). */
EPLB_FN int eplbi_larger_first(float va, int a, float vb, int b)
{
    return va > vb || (va == vb && a < b);
}

/* Whether pack a (weight va) comes before pack b when lighter packs come
 * first and equal weights go to the lower index: the fill's pack choice. */
EPLB_FN int eplbi_lighter_first(float va, int a, float vb, int b)
{
    return va < vb || (va == vb && a < b);
}

/* A sort code per item: ascending codes are keys descending, equal keys
 * by lower index. key_bits are the bits of a key >= 0 (or +inf) with -0.0
 * made 0.0 (EPLB_NO_NEG_ZERO): their order is the floats' order. to_u64
 * widens the flipped bits to 64 bits (a cast, or a vector conversion). */
#define EPLB_NO_NEG_ZERO(key) ((key) + 0.0f)
#define EPLB_DESC_CODE(to_u64, key_bits, index)                            \
    (to_u64(0xFFFFFFFFu - (key_bits)) << 32 | (index))

/* Defines name(heap, len, key, at): restores the heap property of
 * heap[0..len) below position at, where entry x sits above entry y when
 * before(key[x], x, key[y], y) (eplbi_lighter_first: a min-heap of packs;
 * eplbi_larger_first: a max-heap of experts). AS is the address space of
 * heap and key (empty on the host), IDX the heap's element type. */
#define EPLB_DEFINE_SIFT_DOWN(name, AS, IDX, before)                        \
    EPLB_FN void name(AS IDX *heap, int len, AS const float *key, int at)  \
    {                                                                      \
        for (;;) {                                                         \
            int l = 2 * at + 1, r = l + 1, m = at;                         \
            if (l < len && before(key[heap[l]], heap[l], key[heap[m]],     \
                                  heap[m]))                                \
                m = l;                                                     \
            if (r < len && before(key[heap[r]], heap[r], key[heap[m]],     \
                                  heap[m]))                                \
                m = r;                                                     \
            if (m == at)                                                   \
                return;                                                    \
            IDX t = heap[at];                                              \
            heap[at] = heap[m];                                            \
            heap[m] = t;                                                   \
            at = m;                                                        \
        }                                                                  \
    }

/* ---- replication (doc/ALGORITHM.md section 3) -------------------------- */

/* Defines name(w, e, slot, slot_item, slot_rank, count, ratio): slot
 * becomes expert e's next replica, numbered by e's count before it is
 * raised; e's load per replica is then w[e] / count[e] in float32. AS is
 * the arrays' address space (empty on the host). */
#define EPLB_DEFINE_ADD_REPLICA(name, AS)                                   \
    EPLB_FN void name(AS const float *w, int e, int slot,                  \
                      AS int *slot_item, AS int *slot_rank, AS int *count, \
                      AS float *ratio)                                     \
    {                                                                      \
        slot_item[slot] = e;                                               \
        slot_rank[slot] = count[e];                                        \
        count[e]++;                                                        \
        ratio[e] = w[e] / (float)count[e];                                 \
    }

/* ---- candidate noise (doc/ALGORITHM.md section 5) ---------------------- */

#define EPLB_PHILOX_M0 0xD2511F53u
#define EPLB_PHILOX_M1 0xCD9E8D57u
#define EPLB_PHILOX_W0 0x9E3779B9u
#define EPLB_PHILOX_W1 0xBB67AE85u

/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1,
 * 2, 3", SC'11), a counter-based generator: the ten rounds on counter
 * words c0..c3 (variables of type T: a 32-bit word, or a vector of them
 * in the CPU kernels) under key words k0, k1 (32-bit variables, advanced
 * in place); mulhi(m, c) gives the high words of m times a T. */
#define EPLB_PHILOX_ROUNDS(T, mulhi, c0, c1, c2, c3, k0, k1)               \
    for (int r_ = 0; r_ < 10; r_++) {                                      \
        if (r_) {                                                          \
            k0 += EPLB_PHILOX_W0;                                          \
            k1 += EPLB_PHILOX_W1;                                          \
        }                                                                  \
        T hi0_ = mulhi(EPLB_PHILOX_M0, c0), lo0_ = EPLB_PHILOX_M0 * c0;    \
        T hi1_ = mulhi(EPLB_PHILOX_M1, c2), lo1_ = EPLB_PHILOX_M1 * c2;    \
        c0 = hi1_ ^ c1 ^ k0;                                               \
        c1 = lo1_;                                                         \
        c2 = hi0_ ^ c3 ^ k1;                                               \
        c3 = lo0_;                                                         \
    }

EPLB_FN void philox4x32_10(const eplb_u32 in[4], eplb_u32 k0, eplb_u32 k1,
                           eplb_u32 out[4])
{
    eplb_u32 c0 = in[0], c1 = in[1], c2 = in[2], c3 = in[3];
    EPLB_PHILOX_ROUNDS(eplb_u32, EPLB_MULHI32, c0, c1, c2, c3, k0, k1);
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The bits of items 4q..4q+3 of one candidate: one Philox call counted by
 * (step, row, candidate, quad), keyed by the seed's low and high words;
 * word j for item 4q+j. */
EPLB_FN void eplbi_bits4(eplb_u32 seed_lo, eplb_u32 seed_hi, eplb_u32 step,
                         eplb_u32 row, eplb_u32 cand, eplb_u32 quad,
                         eplb_u32 out[4])
{
    eplb_u32 ctr[4] = {quad, cand, row, step};
    philox4x32_10(ctr, seed_lo, seed_hi, out);
}

/* 24 random bits as u in [0, 1), exact in float32. to_float converts a
 * 32-bit word (a cast) or a vector of them. */
#define EPLB_UNIT(to_float, bits)                                          \
    (to_float((bits) >> 8) * (1.0f / 16777216.0f))

EPLB_FN float eplbi_unit(eplb_u32 bits)
{
    return EPLB_UNIT((float), bits);
}

/* Candidate c's noise scale s_c = noise * c / (C - 1), 0 when C is 1. */
EPLB_FN float eplbi_cand_scale(float noise, int c, int cands)
{
    if (cands <= 1)
        return 0.0f;
    return noise * (float)c / (float)(cands - 1);
}

/* key = w + (u * w) * scale, each step rounded in this order (T: float, or
 * a vector of floats with u and scale). Statements, not one expression:
 * nothing may fuse them. */
#define EPLB_NOISY_KEY(T, key, w, u, scale)                                \
    do {                                                                   \
        T jitter_ = (u) * (w);                                             \
        jitter_ = jitter_ * (scale);                                       \
        key = (w) + jitter_;                                               \
    } while (0)

EPLB_FN float eplbi_noisy_key(float w, float u, float scale)
{
    float key;
    EPLB_NOISY_KEY(float, key, w, u, scale);
    return key;
}

/* ---- swap refinement (doc/ALGORITHM.md section 5) ---------------------- */

/* Defines name(pw, m, &h, &l): the heaviest pack h and the lightest l of
 * pw[0..m), ties to the lower index (strict compares in index order), and
 * returns the gap pw[h] - pw[l]; the swaps stop where it is not > 0. AS
 * is pw's address space (empty on the host). */
#define EPLB_DEFINE_EXTREMES(name, AS)                                      \
    EPLB_FN float name(AS const float *pw, int m, int *h_out, int *l_out)  \
    {                                                                      \
        int h = 0, l = 0;                                                  \
        for (int p = 1; p < m; p++) {                                      \
            if (pw[p] > pw[h])                                             \
                h = p;                                                     \
            if (pw[p] < pw[l])                                             \
                l = p;                                                     \
        }                                                                  \
        *h_out = h;                                                        \
        *l_out = l;                                                        \
        return pw[h] - pw[l];                                              \
    }

/* Between the heaviest and the lightest pack, gap apart, the pair (a, b)
 * whose difference diff = w[a] - w[b] lies in (0, gap) and is closest to
 * mid = gap / 2 trades places. Pairs are visited a-major, b-minor; a pair
 * wins when none won yet or it is strictly closer, so ties keep the lower
 * a, then the lower b. For scalars (ints 0/1) and lane vectors (masks):
 * EPLB_SWAP_BETTER's & of comparisons works on both. */
#define EPLB_SWAP_MID(gap) ((gap) * 0.5f)
#define EPLB_SWAP_DIST(diff, mid) EPLB_FABS((diff) - (mid))
#define EPLB_SWAP_BETTER(diff, dist, gap, bestd, none_yet)                 \
    (((diff) > 0.0f) & ((diff) < (gap)) & ((none_yet) | ((dist) < (bestd))))

/* ---- the CPU kernels' lanes (CAND_LANES > 1) --------------------------- */

#if defined(__OPENCL_VERSION__) && defined(CAND_LANES) && CAND_LANES > 1
#define LV_(t, n) t##n
#define LV(t, n) LV_(t, n)
typedef LV(uint, CAND_LANES) laneu;
typedef LV(ulong, CAND_LANES) laneul;
#define EPLB_MULHI32_LANES(m, v)                                           \
    LV(convert_uint, CAND_LANES)((LV(convert_ulong, CAND_LANES)(v) *        \
                                  (ulong)(m)) >> 32)

/* eplbi_bits4 for CAND_LANES candidates at once: lane j gets the bits of
 * candidate cand.sj, word j of item 4*quad+j in out[j]. */
inline void eplbi_bits4_lanes(uint seed_lo, uint seed_hi, uint step,
                              uint row, laneu cand, uint quad, laneu *out)
{
    laneu c0 = quad, c1 = cand, c2 = row, c3 = step;
    uint k0 = seed_lo, k1 = seed_hi;
    EPLB_PHILOX_ROUNDS(laneu, EPLB_MULHI32_LANES, c0, c1, c2, c3, k0, k1);
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}
#endif

#endif /* EPLB_RULES_H */
