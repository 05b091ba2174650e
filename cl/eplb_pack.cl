/* pack(): PACK_N items into PACK_M packs of PACK_K each, the parallel-
 * candidates way (doc/ALGORITHM.md section 5): noisy sort keys, greedy
 * fill, heaviest-lightest swaps, best candidate, by a work-group. The
 * rules it applies are cl/eplb_rules.h's, which lib/pack.c applies on the
 * host; its scratch is laid out by cl/eplb_scratch.h.
 *
 * Built with: PACK_N, PACK_M (compile-time, so pack weights live in
 * registers), PACK_CANDS (the candidates, which size the scratch), WG
 * (work-group size), SCRATCH_LOCAL (1: a work-group's state in local
 * memory, 0: in a slice of a global buffer) and ROW_WORDS (the size of the
 * row area cl/eplb_rebalance.cl carves after the packing arrays). */
#pragma OPENCL FP_CONTRACT OFF

#define PACK_K (PACK_N / PACK_M)
/* Up to this many packs, a candidate's pack weights live in registers and
 * each item scans them; beyond, a heap in scratch memory finds the
 * lightest open pack (lib/pack.c switches at the same count). */
#define PACK_M_REGISTERS EPLB_PACK_SCAN_MAX
/* A quantity of the scratch layout (cl/eplb_scratch.h) for this row
 * shape, in 64-bit arithmetic so that no size wraps; then the
 * per-candidate strides of the keys and of the orders and contents. */
#define PACK_SCR(what) what((ulong)PACK_N, (ulong)PACK_M, (ulong)PACK_CANDS)
#define PACK_KS EPLB_SCR_KEY_STRIDE(PACK_N)
#define PACK_OS EPLB_SCR_ORD_STRIDE(PACK_N)
#define ROW_OFF_BYTES PACK_SCR(EPLB_SCR_ROW_OFF)
#define WG_SCRATCH_BYTES                                                   \
    EPLB_SCR_BYTES((ulong)PACK_N, (ulong)PACK_M, (ulong)PACK_CANDS,        \
                   (ulong)ROW_WORDS)
/* Loops over a pack's PACK_K items unroll fully when packs are small; a
 * full unroll of the PACK_K^2 pair search for big packs would only bloat
 * the code (and the compile time) without keeping them in registers. */
#define PACK_K_UNROLL_MAX 16
#if PACK_K <= PACK_K_UNROLL_MAX
#define UNROLL_K _Pragma("unroll")
#else
#define UNROLL_K _Pragma("unroll 4")
#endif

#if SCRATCH_LOCAL
#define SCR __local
/* Barriers order local memory only: a global fence costs far more. */
#define SCR_FENCE CLK_LOCAL_MEM_FENCE
#else
#define SCR __global
#define SCR_FENCE (CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)
#endif

/* Per-row scratch (cl/eplb_scratch.h): each candidate's sort keys and
 * visiting order (kept side by side, by position), its pack contents and
 * largest pack weight, and the row's base order (weight descending) with
 * its inverse. */
typedef struct pack_scratch_ptrs {
    SCR float *keys;
    SCR float *cmax;
    SCR ushort *order;
    SCR ushort *contents;
    SCR ushort *base;
    SCR ushort *base_rank;
    /* many packs only (PACK_M > PACK_M_REGISTERS): per candidate pack
     * weights, counts and a min-heap of the open packs */
    SCR float *packw;
    SCR ushort *packn;
    SCR ushort *heap;
} pack_scratch_ptrs;

inline pack_scratch_ptrs pack_scratch_at(SCR uchar *mem)
{
    pack_scratch_ptrs s;
    s.keys = (SCR float *)(mem + PACK_SCR(EPLB_SCR_KEYS_OFF));
    s.cmax = (SCR float *)(mem + PACK_SCR(EPLB_SCR_CMAX_OFF));
    s.order = (SCR ushort *)(mem + PACK_SCR(EPLB_SCR_ORDER_OFF));
    s.contents = (SCR ushort *)(mem + PACK_SCR(EPLB_SCR_CONTENTS_OFF));
    s.base = (SCR ushort *)(mem + PACK_SCR(EPLB_SCR_BASE_OFF));
    s.base_rank = (SCR ushort *)(mem + PACK_SCR(EPLB_SCR_BASE_RANK_OFF));
    s.packw = (SCR float *)(mem + PACK_SCR(EPLB_SCR_PACKW_OFF));
    s.packn = (SCR ushort *)(mem + PACK_SCR(EPLB_SCR_PACKN_OFF));
    s.heap = (SCR ushort *)(mem + PACK_SCR(EPLB_SCR_HEAP_OFF));
    return s;
}

/* A work-group's state: local memory, or its slice of the global buffer. */
#if SCRATCH_LOCAL
#define WG_MEMORY(gscratch)                                 \
    __local uint wg_words_[WG_SCRATCH_BYTES / 4];           \
    __local uchar *wg_mem = (__local uchar *)wg_words_;     \
    (void)(gscratch)
#else
#define WG_MEMORY(gscratch)                                 \
    __global uchar *wg_mem =                                \
        (gscratch) + (size_t)get_group_id(0) * WG_SCRATCH_BYTES
#endif

/* Candidate c's visiting order: its keys and items start in the row's
 * base order (weight descending) and an insertion sort brings them to key
 * descending, equal keys by item index (eplb_larger_first). Noise is
 * small, so few items move far: the cost is about n plus the number of
 * inversions. */
inline void sort_candidate(SCR float *k, SCR ushort *o)
{
    for (int r = 1; r < PACK_N; r++) {
        float kv = k[r];
        ushort iv = o[r];
        int j = r - 1;
        while (j >= 0 && eplb_larger_first(kv, iv, k[j], o[j])) {
            k[j + 1] = k[j];
            o[j + 1] = o[j];
            j--;
        }
        k[j + 1] = kv;
        o[j + 1] = iv;
    }
}

/* One swap round between the heaviest pack (items hc) and the lightest
 * (lc), gap apart: the pair of EPLB_SWAP_BETTER's rule trades places. The
 * two packs' item weights are copied to registers first. Returns 0 when
 * no pair qualifies; else the packs' new sums, in rank order, in *sh and
 * *sl. */
inline int swap_pair(SCR const float *w, SCR ushort *hc, SCR ushort *lc,
                     float gap, float *sh, float *sl)
{
    float wh[PACK_K], wl[PACK_K];
UNROLL_K
    for (int a = 0; a < PACK_K; a++) {
        wh[a] = w[hc[a]];
        wl[a] = w[lc[a]];
    }
    float mid = EPLB_SWAP_MID(gap), bestd = 0.0f;
    int ba = -1, bb = -1;
UNROLL_K
    for (int a = 0; a < PACK_K; a++) {
UNROLL_K
        for (int b = 0; b < PACK_K; b++) {
            /* branch-free, so the compiler unrolls it into registers */
            float diff = wh[a] - wl[b];
            float dist = EPLB_SWAP_DIST(diff, mid);
            int better = EPLB_SWAP_BETTER(diff, dist, gap, bestd, ba < 0);
            bestd = better ? dist : bestd;
            ba = better ? a : ba;
            bb = better ? b : bb;
        }
    }
    if (ba < 0)
        return 0;
    ushort tmp = hc[ba];
    hc[ba] = lc[bb];
    lc[bb] = tmp;
    float xa = 0.0f, xb = 0.0f;
UNROLL_K
    for (int a = 0; a < PACK_K; a++) {
        xa = a == ba ? wh[a] : xa;
        xb = a == bb ? wl[a] : xb;
    }
    float h = 0.0f, l = 0.0f;
UNROLL_K
    for (int a = 0; a < PACK_K; a++) {
        h += a == ba ? xb : wh[a];
        l += a == bb ? xa : wl[a];
    }
    *sh = h;
    *sl = l;
    return 1;
}

/* Candidate c's greedy fill and swap refinement, by one work-item. Pack
 * weights live in registers. */
inline float pack_one_candidate(SCR const float *w, int rounds,
                                SCR const ushort *order, SCR ushort *cont)
{
    float pw[PACK_M];
    int pn[PACK_M];
#pragma unroll
    for (int p = 0; p < PACK_M; p++) {
        pw[p] = 0.0f;
        pn[p] = 0;
    }
    for (int r = 0; r < PACK_N; r++) {
        int item = order[r];
        float wi = w[item];
        int best = -1;
        float bw = 0.0f;
#pragma unroll
        for (int p = 0; p < PACK_M; p++)
            if (pn[p] < PACK_K && (best < 0 || pw[p] < bw)) {
                best = p;
                bw = pw[p];
            }
#pragma unroll
        for (int p = 0; p < PACK_M; p++)
            if (p == best) {
                cont[p * PACK_K + pn[p]] = (ushort)item;
                pw[p] += wi;
                pn[p]++;
            }
    }
    for (int t = 0; t < rounds; t++) {
        int h = 0, l = 0;
        float hv = pw[0], lv = pw[0];
#pragma unroll
        for (int p = 1; p < PACK_M; p++) {
            if (pw[p] > hv) {
                h = p;
                hv = pw[p];
            }
            if (pw[p] < lv) {
                l = p;
                lv = pw[p];
            }
        }
        float gap = hv - lv;
        if (!(gap > 0.0f))
            break;
        float sh, sl;
        if (!swap_pair(w, cont + h * PACK_K, cont + l * PACK_K, gap, &sh, &sl))
            break;
#pragma unroll
        for (int p = 0; p < PACK_M; p++) {
            if (p == h)
                pw[p] = sh;
            if (p == l)
                pw[p] = sl;
        }
    }
    float mx = pw[0];
#pragma unroll
    for (int p = 1; p < PACK_M; p++)
        if (pw[p] > mx)
            mx = pw[p];
    return mx;
}

#if PACK_M > PACK_M_REGISTERS
/* Open packs ordered by (weight, index): the lightest, lowest first. */
EPLB_DEFINE_SIFT_DOWN(pack_sift_down, SCR, ushort, eplb_lighter_first)
EPLB_DEFINE_EXTREMES(pack_extremes, SCR)

/* pack_one_candidate for many packs: the same fill and swaps, with the
 * pack weights in scratch memory and a heap for the lightest open pack. */
inline float pack_one_candidate_heap(SCR const float *w, int rounds,
                                     SCR const ushort *order,
                                     SCR ushort *cont, SCR float *pw,
                                     SCR ushort *pn, SCR ushort *heap)
{
    for (int p = 0; p < PACK_M; p++) {
        pw[p] = 0.0f;
        pn[p] = 0;
        heap[p] = (ushort)p; /* all zero: index order is a heap */
    }
    int len = PACK_M;
    for (int r = 0; r < PACK_N; r++) {
        int item = order[r], p = heap[0];
        cont[p * PACK_K + pn[p]] = (ushort)item;
        pw[p] += w[item];
        if (++pn[p] == PACK_K)
            heap[0] = heap[--len];
        pack_sift_down(heap, len, pw, 0);
    }
    for (int t = 0; t < rounds; t++) {
        int h, l;
        float gap = pack_extremes(pw, PACK_M, &h, &l);
        if (!(gap > 0.0f))
            break;
        float sh, sl;
        if (!swap_pair(w, cont + h * PACK_K, cont + l * PACK_K, gap, &sh, &sl))
            break;
        pw[h] = sh;
        pw[l] = sl;
    }
    float mx = pw[0];
    for (int p = 1; p < PACK_M; p++)
        if (pw[p] > mx)
            mx = pw[p];
    return mx;
}
#endif

#if CAND_LANES > 1
/* cl/eplb_lanes.cl: candidates c0 .. c0+CAND_LANES-1 keyed, sorted, filled
 * and refined by one work-item, into s.cmax and s.contents. */
void pack_lanes(SCR const float *w, uint step, uint row, int cands,
                int rounds, float noise, uint seed_lo, uint seed_hi, int c0,
                pack_scratch_ptrs s);
#endif

/* Step 4 of pack_row: the least largest pack wins, ties to the lower
 * candidate; its contents become out_pack/out_rank. Must be reached by
 * every work-item. */
inline void pack_row_pick(int cands, pack_scratch_ptrs s, SCR int *best_c,
                          SCR int *out_pack, SCR int *out_rank,
                          SCR float *out_max)
{
    int lid = get_local_id(0);
    if (lid == 0) {
        int b = 0;
        for (int c = 1; c < cands; c++)
            if (s.cmax[c] < s.cmax[b])
                b = c;
        *best_c = b;
        *out_max = s.cmax[b];
    }
    barrier(SCR_FENCE);
    SCR const ushort *cont = s.contents + *best_c * PACK_OS;
    for (int idx = lid; idx < PACK_N; idx += WG) {
        int item = cont[idx];
        out_pack[item] = idx / PACK_K;
        out_rank[item] = idx % PACK_K;
    }
    barrier(SCR_FENCE);
}

/* Packs one row with the whole work-group. out_pack/out_rank [PACK_N] and
 * out_max get the chosen candidate. cands 1 with rounds 0 is the
 * deterministic pack() (doc/ALGORITHM.md section 3). Must be reached by
 * every work-item. */
void pack_row(SCR const float *w, uint step, uint row, int cands,
              int rounds, float noise, uint seed_lo, uint seed_hi,
              pack_scratch_ptrs s, SCR int *best_c, SCR int *out_pack,
              SCR int *out_rank, SCR float *out_max)
{
    int lid = get_local_id(0);
#if PACK_K == 1 || PACK_M == 1
    {
        /* One item per pack: item i in pack i. One pack: by weight
         * descending, equal weights by index. No candidate can differ. */
        for (int i = lid; i < PACK_N; i += WG) {
            if (PACK_K == 1) {
                out_pack[i] = i;
                out_rank[i] = 0;
            } else {
                float wi = w[i];
                int r = 0;
                for (int j = 0; j < PACK_N; j++)
                    r += eplb_larger_first(w[j], j, wi, i);
                out_pack[i] = 0;
                out_rank[i] = r;
            }
        }
        barrier(SCR_FENCE);
        if (lid == 0) {
            float mx = 0.0f;
            if (PACK_K == 1) {
                for (int i = 0; i < PACK_N; i++)
                    if (w[i] > mx)
                        mx = w[i];
            } else {
                /* the one pack's sum, in rank order */
                for (int r = 0; r < PACK_N; r++)
                    for (int i = 0; i < PACK_N; i++)
                        if (out_rank[i] == r)
                            mx += w[i];
            }
            *out_max = mx;
        }
        barrier(SCR_FENCE);
    }
#else
    /* CPU builds take CAND_LANES candidates per work-item (pack_lanes,
     * which needs no base order) when there are enough to fill the lanes
     * a little; the deterministic variant's one candidate goes the scalar
     * way. Every work-item sees the same cands: no barrier diverges. */
    int lanes = CAND_LANES > 1 && cands * 4 >= CAND_LANES;
    /* 1. the base order: weight descending, equal weights by index */
    for (int i = lanes ? PACK_N : lid; i < PACK_N; i += WG) {
        float wi = w[i];
        int r = 0;
        for (int j = 0; j < PACK_N; j++)
            r += eplb_larger_first(w[j], j, wi, i);
        s.base[r] = (ushort)i;
        s.base_rank[i] = (ushort)r;
    }
    barrier(SCR_FENCE);
    /* 2. noisy sort keys, four items per generator call, stored at the
     * item's base position */
    const int quads = (PACK_N + 3) / 4;
    for (int idx = lanes ? cands * quads : lid; idx < cands * quads;
         idx += WG) {
        int c = idx / quads, q = idx - c * quads;
        uint words[4];
        eplb_bits4(seed_lo, seed_hi, step, row, (uint)c, (uint)q, words);
        float scale = eplb_cand_scale(noise, c, cands);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = q * 4 + j;
            if (i >= PACK_N)
                break;
            int r = s.base_rank[i];
            s.keys[c * PACK_KS + r] =
                eplb_noisy_key(w[i], eplb_unit(words[j]), scale);
            s.order[c * PACK_OS + r] = (ushort)i;
        }
    }
    barrier(SCR_FENCE);
    /* 3. each candidate sorted, filled and refined by one work-item. Two
     * loops whose start decides which one runs, not an if/else around
     * them: PoCL 5's work-group compiler aborts on the branch form
     * ("region_entry_barrier != NULL"); PoCL 3 and NVIDIA take both. */
#if CAND_LANES > 1
    for (int c0 = lanes ? lid * CAND_LANES : cands; c0 < cands;
         c0 += WG * CAND_LANES)
        pack_lanes(w, step, row, cands, rounds, noise, seed_lo, seed_hi,
                   c0, s);
#endif
    for (int c = lanes ? cands : lid; c < cands; c += WG) {
        sort_candidate(s.keys + c * PACK_KS, s.order + c * PACK_OS);
#if PACK_M > PACK_M_REGISTERS
        s.cmax[c] = pack_one_candidate_heap(
            w, rounds, s.order + c * PACK_OS, s.contents + c * PACK_OS,
            s.packw + c * PACK_M, s.packn + c * PACK_M, s.heap + c * PACK_M);
#else
        s.cmax[c] = pack_one_candidate(w, rounds, s.order + c * PACK_OS,
                                       s.contents + c * PACK_OS);
#endif
    }
    barrier(SCR_FENCE);
    pack_row_pick(cands, s, best_c, out_pack, out_rank, out_max);
#endif
}

