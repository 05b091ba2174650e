/* pack() for CPU devices: CAND_LANES candidates per work-item, one per
 * vector lane (lib/cl_engine.c builds with CAND_LANES > 1 for CPUs). It
 * applies the rules of cl/eplb_rules.h (eplbi_bits4_lanes, the noisy key,
 * the sort code, the swap pair) on vectors, follows cl/eplb_pack.cl
 * (scratch layout, PACK_K), and computes the bits of their scalar path:
 * every float operation is the one pack_one_candidate does, in the same
 * order. */
#pragma OPENCL FP_CONTRACT OFF

#if CAND_LANES > 1
/* CPU devices: one work-item advances CAND_LANES candidates at once, each
 * candidate a lane of an OpenCL vector, so every compare, select and add
 * of the fill and the swap rounds is one SIMD instruction for all lanes
 * (a CPU compiler cannot vectorise across work-items whose loops have
 * data-dependent trip counts; explicit vectors need no vectoriser). State
 * is lane-minor: element i of every lane sits in one vector. Trip counts
 * are uniform: a lane whose swaps stopped is masked, not branched around.
 * Per-lane steps that index by a lane's own pack (placing an item,
 * gathering and swapping pack contents) are scalar loops over the lanes.
 * Every float operation is the one the scalar path does, in the same
 * order, so the plans are the same bits. */
typedef LV(float, CAND_LANES) lanef;
typedef LV(int, CAND_LANES) lanei;
#define LANES_STORE LV(vstore, CAND_LANES)
/* Up to this many packs the fill updates every pack's vector per item;
 * beyond, only each lane's chosen pack, lane by lane. */
#define LANES_FILL_VECTOR_MAX 16
/* lane j of element i of a private lane-minor array */
#define LANE_F(a, i, j) (((float *)(a))[(i) * CAND_LANES + (j)])
#define LANE_I(a, i, j) (((int *)(a))[(i) * CAND_LANES + (j)])

/* Scans over the packs keep four independent (value, index) pairs, so
 * that the loop is not one chain of dependent compares: each pair holds
 * the extreme of its share of the packs and the lowest index reaching it
 * (strict compares in rising index order); merging the pairs by value,
 * then by lower index, gives the extreme over all packs and its lowest
 * index: the pack the scalar path's single scan picks. Declares v0..v3
 * and i0..i3: a[q] replaces the pair's value when a[q] cmp value. */
#define LANES_SCAN_STEP(a, cmp, v, i, q)                                    \
    do {                                                                   \
        lanei t_ = (a)[q] cmp v;                                           \
        v = select(v, (a)[q], t_);                                         \
        i = select(i, (lanei)(q), t_);                                     \
    } while (0)
#define LANES_SCAN4(a, cmp, v_init, i_init)                                 \
    lanef v0 = (v_init), v1 = (v_init), v2 = (v_init), v3 = (v_init);      \
    lanei i0 = (i_init), i1 = (i_init), i2 = (i_init), i3 = (i_init);      \
    int p = 0;                                                             \
    for (; p + 4 <= PACK_M; p += 4) {                                      \
        LANES_SCAN_STEP(a, cmp, v0, i0, p);                                \
        LANES_SCAN_STEP(a, cmp, v1, i1, p + 1);                            \
        LANES_SCAN_STEP(a, cmp, v2, i2, p + 2);                            \
        LANES_SCAN_STEP(a, cmp, v3, i3, p + 3);                            \
    }                                                                      \
    for (; p < PACK_M; p++)                                                \
        LANES_SCAN_STEP(a, cmp, v0, i0, p)

/* (va, ia) takes (vb, ib) when vb is beyond va by cmp, or equal with a
 * lower index. */
#define LANES_MERGE(va, ia, vb, ib, cmp)                                    \
    do {                                                                   \
        lanei t_ = ((vb) cmp (va)) | (((vb) == (va)) & ((ib) < (ia)));     \
        va = select(va, vb, t_);                                           \
        ia = select(ia, ib, t_);                                           \
    } while (0)

#define LANES_MERGE4(cmp)                                                   \
    LANES_MERGE(v0, i0, v1, i1, cmp);                                      \
    LANES_MERGE(v2, i2, v3, i3, cmp);                                      \
    LANES_MERGE(v0, i0, v2, i2, cmp)

/* The scans below look for the least weight among the open packs' ow
 * (+inf for full packs, so that a step is one compare) and leave PACK_M
 * in a lane whose minimum stays +inf: only packs at +inf are open there
 * (overflowed sums; may_inf says whether the row's items can overflow
 * at all). Such a lane gets its lowest open pack, as the scalar path. */
inline lanei lanes_open_at_inf(lanei best, const lanei *pn, int may_inf)
{
    if (may_inf && any(best >= PACK_M)) {
        lanei low = PACK_M;
        for (int q = PACK_M - 1; q >= 0; q--)
            low = select(low, (lanei)q, pn[q] < PACK_K);
        best = select(best, low, best >= PACK_M);
    }
    return best;
}

/* The lightest open pack of each lane, ties to the lower index. */
inline lanei lanes_lightest_open(const lanef *ow, const lanei *pn,
                                 int may_inf)
{
    LANES_SCAN4(ow, <, (lanef)INFINITY, (lanei)PACK_M);
    LANES_MERGE4(<);
    return lanes_open_at_inf(i0, pn, may_inf);
}

#if PACK_M > LANES_FILL_VECTOR_MAX
/* Packs per block for the many-packs fill, and the blocks. */
#define LANES_BLOCK 16
#define LANES_BLOCKS ((PACK_M + LANES_BLOCK - 1) / LANES_BLOCK)

/* Block b's lightest open pack in each lane: its weight (+inf if none)
 * and lowest index (PACK_M if none). A lane whose block did not change
 * gets what it had. */
inline void lanes_block_min(const lanef *ow, int b, lanef *v, lanei *i)
{
    lanef bv = INFINITY;
    lanei bi = PACK_M;
    for (int q = b * LANES_BLOCK; q < min((b + 1) * LANES_BLOCK, PACK_M);
         q++) {
        lanei t = ow[q] < bv;
        bv = select(bv, ow[q], t);
        bi = select(bi, (lanei)q, t);
    }
    *v = bv;
    *i = bi;
}

/* lanes_lightest_open from the blocks' minima: the first block holding
 * the least weight holds the lowest pack at it. */
inline lanei lanes_lightest_block(const lanef *bv, const lanei *bi,
                                  const lanei *pn, int may_inf)
{
    lanef v = INFINITY;
    lanei best = PACK_M;
    for (int b = 0; b < LANES_BLOCKS; b++) {
        lanei t = bv[b] < v;
        v = select(v, bv[b], t);
        best = select(best, bi[b], t);
    }
    return lanes_open_at_inf(best, pn, may_inf);
}
#endif

/* The heaviest pack of each lane (hv, h) and the lightest (lv, l), ties
 * to the lower index. */
inline void lanes_extremes(const lanef *pw, lanef *hv, lanei *h, lanef *lv,
                           lanei *l)
{
    {
        LANES_SCAN4(pw, >, pw[0], (lanei)0);
        LANES_MERGE4(>);
        *hv = v0;
        *h = i0;
    }
    {
        LANES_SCAN4(pw, <, pw[0], (lanei)0);
        LANES_MERGE4(<);
        *lv = v0;
        *l = i0;
    }
}

/* One compare-exchange: the lower position gets the smaller code. */
#define LANES_CX(v, i, m)                                                   \
    do {                                                                   \
        laneul a_ = (v)[i], b_ = (v)[m];                                   \
        (v)[i] = min(a_, b_);                                              \
        (v)[m] = max(a_, b_);                                              \
    } while (0)

/* Defines name(v), which sorts each lane's first n codes ascending. The
 * items' codes are EPLB_DESC_CODE's (0xFFFFFFFF - key bits) << 32 | item,
 * as lib/pack.c sorts: ascending codes are keys descending, equal keys by
 * lower item, which is sort_candidate's order (a total order, so any
 * correct sort gives it). A sorting network does the same
 * compare-exchanges in every lane with no data-dependent branch (an
 * insertion sort's mispredicted exits were half of a lane's time), each a
 * 64-bit min and max: Batcher's odd-even merge sort, which needs about a
 * fifth fewer exchanges than a bitonic one (750 against 944 for
 * DeepSeek's 72 items, 5154 against 6224 for 288). Every exchange puts
 * the smaller code at the lower position, so padding to a power of two
 * with codes above every real one would never move: the exchanges that
 * touch a position >= n are left out, and no padding is stored. In merge
 * p's step k, the pairs (j + i, j + i + k), i < k, of a block starting at
 * j all lie in one run of 2p positions, as the merge wants, or (when
 * j + k is a multiple of 2p) none does: each block is one plain loop over
 * consecutive positions. n is a compile-time constant. */
#define LANES_DEFINE_SORT(name, n)                                         \
    inline void name(laneul *v)                                            \
    {                                                                      \
        for (int p = 1; p < (n); p <<= 1)                                  \
            for (int k = p; k >= 1; k >>= 1)                               \
                for (int j = k % p; j + k < (n); j += 2 * k) {             \
                    if (k < p && (j + k) % (2 * p) == 0)                   \
                        continue;                                          \
                    int e = min(k, (n) - j - k);                           \
                    for (int i = 0; i < e; i++)                            \
                        LANES_CX(v, j + i, j + i + k);                     \
                }                                                          \
    }
/* the items by key; the packs by weight (the two-items fill shortcut) */
LANES_DEFINE_SORT(lanes_sort, PACK_N)
#if PACK_K == 2
LANES_DEFINE_SORT(lanes_sort_packs, PACK_M)
#endif

/* swap_pair's search over the pairs (a, b) of wh and wl, all lanes at
 * once: ab gets a * PACK_K + b of the pair whose difference is in
 * (0, gap) and closest to mid, ties to the first; none_yet says when a
 * lane has no pair yet (a qualifying pair then wins whatever bestd):
 * EPLB_SWAP_BETTER's rule. Left to the compiler to unroll or not: forced
 * full unrolling of both uses cost about 15% more time per plan on PoCL. */
#define LANES_PAIR_STEP(bestd, ab, a, b, none_yet)                          \
    do {                                                                   \
        lanef diff = wh[a] - wl[b];                                        \
        lanef dist = EPLB_SWAP_DIST(diff, mid);                            \
        lanei better =                                                     \
            EPLB_SWAP_BETTER(diff, dist, gap, bestd, none_yet);            \
        bestd = select(bestd, dist, better);                               \
        ab = select(ab, (lanei)((a) * PACK_K + (b)), better);              \
    } while (0)
#define LANES_PAIR_SEARCH(none_yet)                                         \
    for (int a = 0; a < PACK_K; a++)                                       \
        for (int b = 0; b < PACK_K; b++)                                   \
            LANES_PAIR_STEP(bestd, ab, a, b, none_yet)

/* The same search for lanes whose gap is finite (so a qualifying pair's
 * dist is too, and bestd may start at +inf; a lane at +inf gets the
 * search above afterwards): four searches, each
 * over every fourth b in pair order, so that four chains of dependent
 * compares and selects run side by side instead of one; merged by
 * smaller dist, then lower pair index, they give the first closest pair
 * of the whole order, as the one search does. */
#define LANES_PAIR_SEARCH4()                                                \
    do {                                                                   \
        lanef d1 = INFINITY, d2 = INFINITY, d3 = INFINITY;                 \
        lanei ab1 = -1, ab2 = -1, ab3 = -1;                                \
        for (int a = 0; a < PACK_K; a++) {                                 \
            int b = 0;                                                     \
            for (; b + 4 <= PACK_K; b += 4) {                              \
                LANES_PAIR_STEP(bestd, ab, a, b, 0);                       \
                LANES_PAIR_STEP(d1, ab1, a, b + 1, 0);                     \
                LANES_PAIR_STEP(d2, ab2, a, b + 2, 0);                     \
                LANES_PAIR_STEP(d3, ab3, a, b + 3, 0);                     \
            }                                                              \
            for (; b < PACK_K; b++)                                        \
                LANES_PAIR_STEP(bestd, ab, a, b, 0);                       \
        }                                                                  \
        LANES_MERGE(bestd, ab, d1, ab1, <);                                \
        LANES_MERGE(d2, ab2, d3, ab3, <);                                  \
        LANES_MERGE(bestd, ab, d2, ab2, <);                                \
    } while (0)

/* The fill's first round, and for two items a pack its second, in
 * closed form (doc/ALGORITHM.md section 5, "Fill shortcuts"; as
 * split_fill_rounds in cl/eplb_pack.cl), when the first PACK_M items of
 * every lane's visiting order (vi, weights vw) weigh more than zero: item
 * r < PACK_M goes to pack r, and with two items a pack item PACK_M + k to
 * the k-th lightest pack, ties to the lower index. Returns how many items
 * are placed (0, PACK_M or PACK_N); pw, ow, pn, ci and cw then hold what
 * the greedy loop would have made, the same bits. vis is spare room for
 * PACK_M codes. */
inline int lanes_fill_rounds(const lanei *vi, const lanef *vw, lanef *pw,
                             lanef *ow, lanei *pn, lanei *ci, lanef *cw,
                             laneul *vis)
{
    lanei positive = -1;
    for (int r = 0; r < PACK_M; r++)
        positive &= vw[r] > 0.0f;
    if (!all(positive))
        return 0;
    for (int p = 0; p < PACK_M; p++) {
        pw[p] = 0.0f + vw[p];
        ow[p] = pw[p]; /* open: PACK_K >= 2 */
        pn[p] = 1;
        ci[p * PACK_K] = vi[p];
        cw[p * PACK_K] = vw[p];
    }
#if PACK_K == 2
    /* the packs lighter first, then by index: the bits of a positive
     * finite float order as its value */
    for (int p = 0; p < PACK_M; p++)
        vis[p] = LV(convert_ulong, CAND_LANES)(LV(as_uint, CAND_LANES)(pw[p]))
                     << 32 |
                 (ulong)p;
    lanes_sort_packs(vis);
    /* every pack gets its second item: lane by lane only where it goes,
     * then each pack's sum and state for all lanes at once */
    for (int k = 0; k < PACK_M; k++)
        for (int j = 0; j < CAND_LANES; j++) {
            int q = (int)(((ulong *)vis)[k * CAND_LANES + j] & 0xFFFFFFFFul);
            int a = q * PACK_K + 1;
            LANE_I(ci, a, j) = LANE_I(vi, PACK_M + k, j);
            LANE_F(cw, a, j) = LANE_F(vw, PACK_M + k, j);
        }
    for (int p = 0; p < PACK_M; p++) {
        pw[p] += cw[p * PACK_K + 1];
        ow[p] = INFINITY;
        pn[p] = 2;
    }
    return PACK_N;
#else
    return PACK_M;
#endif
}

/* 0, 1, .. CAND_LANES - 1: each lane's own index */
inline lanei lanes_iota(void)
{
    int io[CAND_LANES];
    for (int j = 0; j < CAND_LANES; j++)
        io[j] = j;
    return LV(vload, CAND_LANES)(0, io);
}

/* The base order (pack_row's step 1): the ranks of CAND_LANES items at
 * once, each weight in turn compared with all of them (eplbi_larger_first
 * on vectors); no lane's count needs a horizontal sum. */
void lanes_base_order(SCR const float *w, pack_scratch_ptrs s)
{
    const lanei iota = lanes_iota();
    for (int i0 = get_local_id(0) * CAND_LANES; i0 < PACK_N;
         i0 += WG * CAND_LANES) {
        float wv[CAND_LANES];
        for (int k = 0; k < CAND_LANES; k++)
            wv[k] = w[min(i0 + k, PACK_N - 1)]; /* past n: not stored */
        const lanef wi = LV(vload, CAND_LANES)(0, wv);
        const lanei ii = iota + i0;
        lanei before = 0;
        for (int j = 0; j < PACK_N; j++) {
            float wj = w[j];
            before -= (wj > wi) | ((wj == wi) & (j < ii));
        }
        int r[CAND_LANES];
        LANES_STORE(before, 0, r);
        for (int k = 0; k < CAND_LANES && i0 + k < PACK_N; k++) {
            s.base[r[k]] = (ushort)(i0 + k);
            s.base_rank[i0 + k] = (ushort)r[k];
        }
    }
}

/* The index of the largest of v[0..n), ties to the lower index (a scan
 * with strict >): each lane keeps the first largest of its share, then
 * the largest value's lowest index over the lanes. v holds no NaN and
 * not only -inf (replication's ratios are >= 0), so some lane's index is
 * below n. */
inline int lanes_largest_first(SCR const float *v, int n)
{
    const lanei iota = lanes_iota();
    lanef bv = -INFINITY;
    lanei bi = n;
    int e0 = 0;
    for (; e0 + CAND_LANES <= n; e0 += CAND_LANES) {
        lanef x = LV(vload, CAND_LANES)(e0 / CAND_LANES, v);
        lanei t = x > bv;
        bv = select(bv, x, t);
        bi = select(bi, iota + e0, t);
    }
    float vals[CAND_LANES];
    int idx[CAND_LANES];
    LANES_STORE(bv, 0, vals);
    LANES_STORE(bi, 0, idx);
    float m = vals[0];
    int b = idx[0];
    for (int j = 1; j < CAND_LANES; j++)
        if (vals[j] > m || (vals[j] == m && idx[j] < b)) {
            m = vals[j];
            b = idx[j];
        }
    for (; e0 < n; e0++)
        if (v[e0] > m || b >= n) {
            m = v[e0];
            b = e0;
        }
    return b;
}

/* The span's candidates c0 .. c0+CAND_LANES-1 (those below cs.count,
 * counted from cs.first): keyed, sorted, filled and refined as steps 2
 * and 3 of pack_row do one; s.cmax and s.contents get the results. Lanes
 * past the span repeat candidate c0 and are not stored. */
void pack_lanes(SCR const float *w, uint step, uint row, cand_span cs,
                int rounds, float noise, uint seed_lo, uint seed_hi, int c0,
                pack_scratch_ptrs s)
{
    lanef pw[PACK_M], ow[PACK_M], cw[PACK_N];
    lanei pn[PACK_M], ci[PACK_N];
    laneul vis[PACK_N]; /* sort codes, then the visiting order */
    int nl = min(CAND_LANES, cs.count - c0);
    {
        uint cv[CAND_LANES];
        float scs[CAND_LANES];
        for (int j = 0; j < CAND_LANES; j++) {
            int c = cs.first + c0 + (j < nl ? j : 0);
            cv[j] = (uint)c;
            scs[j] = eplbi_cand_scale(noise, c, cs.total);
        }
        laneu cand = LV(vload, CAND_LANES)(0, cv);
        lanef scale = LV(vload, CAND_LANES)(0, scs);
        /* the noisy keys, as step 2: four items per generator call */
        for (int q = 0; q * 4 < PACK_N; q++) {
            laneu bits[4];
            eplbi_bits4_lanes(seed_lo, seed_hi, step, row, cand, (uint)q,
                              bits);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int i = q * 4 + j;
                if (i >= PACK_N)
                    break;
                lanef u = EPLB_UNIT(LV(convert_float, CAND_LANES), bits[j]);
                lanef key;
                EPLB_NOISY_KEY(lanef, key, w[i], u, scale);
                key = EPLB_NO_NEG_ZERO(key); /* -0.0 sorts as 0.0 */
                vis[i] = EPLB_DESC_CODE(LV(convert_ulong, CAND_LANES),
                                        LV(as_uint, CAND_LANES)(key),
                                        (ulong)i);
            }
        }
        lanes_sort(vis);
    }
    for (int p = 0; p < PACK_M; p++) {
        pw[p] = 0.0f;
        ow[p] = 0.0f;
        pn[p] = 0;
    }
    /* the visiting order's items and weights, lane-minor */
    lanei vi[PACK_N];
    lanef vw[PACK_N];
    for (int r = 0; r < PACK_N; r++)
        vi[r] = LV(convert_int, CAND_LANES)(vis[r] & 0xFFFFFFFFul);
    for (int r = 0; r < PACK_N; r++)
        for (int j = 0; j < CAND_LANES; j++)
            LANE_F(vw, r, j) = w[LANE_I(vi, r, j)];
    /* Pack sums reach +inf only with items near FLT_MAX: with K items
     * under 2^125 / K each, every sum stays below 2^126 whatever the
     * rounding, and the scans skip their +inf fallback test. */
    float wmax = 0.0f;
    for (int i = 0; i < PACK_N; i++)
        wmax = fmax(wmax, w[i]);
    int may_inf = !(wmax * (float)PACK_K < 0x1p125f);
    int r0 = 0;
#if PACK_K >= 2
    r0 = lanes_fill_rounds(vi, vw, pw, ow, pn, ci, cw, vis);
#endif
    /* greedy fill: the lightest open pack, ties to the lower index */
#if PACK_M <= LANES_FILL_VECTOR_MAX
    /* Few packs: every pack's vector takes the item where it was chosen
     * (selects, no per-lane stores between the scans, whose vector loads
     * would then wait for them); at[r] is where visit r's item lands. */
    lanei at[PACK_N];
    for (int r = r0; r < PACK_N; r++) {
        lanei best = lanes_lightest_open(ow, pn, may_inf);
        lanei slot = 0;
        for (int p = 0; p < PACK_M; p++) {
            lanei hit = best == p;
            pw[p] = select(pw[p], pw[p] + vw[r], hit);
            slot = select(slot, pn[p] + p * PACK_K, hit);
            pn[p] -= hit; /* hit is -1 where true */
            ow[p] = select(pw[p], (lanef)INFINITY, pn[p] >= PACK_K);
        }
        at[r] = slot;
    }
    for (int r = r0; r < PACK_N; r++)
        for (int j = 0; j < CAND_LANES; j++) {
            int a = LANE_I(at, r, j);
            LANE_I(ci, a, j) = LANE_I(vi, r, j);
            LANE_F(cw, a, j) = LANE_F(vw, r, j);
        }
#else
    /* Many packs: each lane updates its chosen pack alone, and the
     * lightest open pack comes from the minima of blocks of packs, of
     * which only those some lane just changed are scanned again. */
    lanef bv[LANES_BLOCKS];
    lanei bi[LANES_BLOCKS];
    for (int b = 0; b < LANES_BLOCKS; b++) {
        bv[b] = 0.0f; /* every pack empty: a block's first is lightest */
        bi[b] = b * LANES_BLOCK;
        if (r0 > 0)
            lanes_block_min(ow, b, &bv[b], &bi[b]);
    }
    for (int r = r0; r < PACK_N; r++) {
        int bs[CAND_LANES];
        lanei best = lanes_lightest_block(bv, bi, pn, may_inf);
        LANES_STORE(best, 0, bs);
        for (int j = 0; j < CAND_LANES; j++) {
            int p = bs[j], a = p * PACK_K + LANE_I(pn, p, j);
            LANE_I(ci, a, j) = LANE_I(vi, r, j);
            LANE_F(cw, a, j) = LANE_F(vw, r, j);
            float sum = LANE_F(pw, p, j) + LANE_F(vw, r, j);
            LANE_F(pw, p, j) = sum;
            LANE_I(pn, p, j) += 1;
            LANE_F(ow, p, j) = LANE_I(pn, p, j) < PACK_K ? sum : INFINITY;
        }
        /* the blocks some lane changed, as bits (any() on a vector
         * compiles to a chain of shuffles and branches on PoCL) */
        ulong touched = 0;
        for (int j = 0; j < CAND_LANES; j++)
            touched |= 1ul << (bs[j] / LANES_BLOCK);
        for (int b = 0; b < LANES_BLOCKS; b++)
            if (touched >> b & 1)
                lanes_block_min(ow, b, &bv[b], &bi[b]);
    }
#endif
    /* swap rounds; live: the lanes still refining */
    lanei live = -1;
    for (int t = 0; t < rounds; t++) {
        lanef hv, lv;
        lanei h, l;
        lanes_extremes(pw, &hv, &h, &lv, &l);
        lanef gap = hv - lv;
        live &= gap > 0.0f;
        if (!any(live))
            break;
        int hs[CAND_LANES], ls[CAND_LANES];
        LANES_STORE(h, 0, hs);
        LANES_STORE(l, 0, ls);
        /* the two packs' item weights */
        lanef wh[PACK_K], wl[PACK_K];
#if PACK_M <= LANES_FILL_VECTOR_MAX
        /* by selects: vector loads of vectors no lane just wrote; one
         * item's pair at a time, which stays in registers over the
         * packs */
        for (int a = 0; a < PACK_K; a++) {
            lanef xh = cw[a], xl = cw[a];
            for (int p = 1; p < PACK_M; p++) {
                xh = select(xh, cw[p * PACK_K + a], h == p);
                xl = select(xl, cw[p * PACK_K + a], l == p);
            }
            wh[a] = xh;
            wl[a] = xl;
        }
#else
        for (int j = 0; j < CAND_LANES; j++)
            for (int a = 0; a < PACK_K; a++) {
                LANE_F(wh, a, j) = LANE_F(cw, hs[j] * PACK_K + a, j);
                LANE_F(wl, a, j) = LANE_F(cw, ls[j] * PACK_K + a, j);
            }
#endif
        /* swap_pair's search, all lanes at once, the pair as one index
         * a * PACK_K + b. bestd starts at +inf, so "no pair yet" needs no
         * test of its own: while gap is finite a qualifying pair's dist
         * is too (diff in (0, gap), mid = gap / 2). A lane whose heaviest
         * pack overflowed to +inf has gap +inf: then the scalar path's
         * test, with "no pair yet", is run for all lanes. */
        lanef mid = EPLB_SWAP_MID(gap), bestd = INFINITY;
        lanei ab = -1;
        LANES_PAIR_SEARCH4();
        if (any(live & (gap == INFINITY))) {
            bestd = 0.0f;
            ab = -1;
            LANES_PAIR_SEARCH(ab < 0);
        }
        live &= ab >= 0;
        if (!any(live))
            break;
        lanei ba = ab / PACK_K, bb = ab % PACK_K;
        /* the packs' new sums, in rank order, as swap_pair */
        lanef xa = 0.0f, xb = 0.0f;
UNROLL_K
        for (int a = 0; a < PACK_K; a++) {
            xa = select(xa, wh[a], ba == a);
            xb = select(xb, wl[a], bb == a);
        }
        lanef sh = 0.0f, sl = 0.0f;
UNROLL_K
        for (int a = 0; a < PACK_K; a++) {
            sh += select(wh[a], xb, ba == a);
            sl += select(wl[a], xa, bb == a);
        }
        for (int p = 0; p < PACK_M; p++) {
            pw[p] = select(pw[p], sh, live & (h == p));
            pw[p] = select(pw[p], sl, live & (l == p));
        }
        int lives[CAND_LANES], bas[CAND_LANES], bbs[CAND_LANES];
        LANES_STORE(live, 0, lives);
        LANES_STORE(ba, 0, bas);
        LANES_STORE(bb, 0, bbs);
        for (int j = 0; j < CAND_LANES; j++)
            if (lives[j]) {
                int x = hs[j] * PACK_K + bas[j], y = ls[j] * PACK_K + bbs[j];
                int ti = LANE_I(ci, x, j);
                LANE_I(ci, x, j) = LANE_I(ci, y, j);
                LANE_I(ci, y, j) = ti;
                float tw = LANE_F(cw, x, j);
                LANE_F(cw, x, j) = LANE_F(cw, y, j);
                LANE_F(cw, y, j) = tw;
            }
    }
    lanef mx, mn;
    lanei at_mx, at_mn;
    lanes_extremes(pw, &mx, &at_mx, &mn, &at_mn);
    float mxs[CAND_LANES];
    LANES_STORE(mx, 0, mxs);
    for (int j = 0; j < nl; j++) {
        s.cmax[c0 + j] = mxs[j];
        for (int i = 0; i < PACK_N; i++)
            s.contents[(c0 + j) * PACK_OS + i] = (ushort)LANE_I(ci, i, j);
    }
}
#endif
