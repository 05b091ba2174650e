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
/* Rows of more packs keep a heap per candidate (CPU builds) or are split
 * over several work-items per candidate (pack_split_candidates: GPU
 * builds, PACK_SPLIT_OK from the host). */
#ifndef PACK_SPLIT_OK
#define PACK_SPLIT_OK 0
#endif
#define PACK_HEAPS (CAND_LANES > 1 || !PACK_SPLIT_OK)
/* this row is split (pack_split_candidates) */
#define PACK_SPLIT_ROW (PACK_M > PACK_M_REGISTERS && !PACK_HEAPS)
/* A quantity of the scratch layout (cl/eplb_scratch.h) for this row
 * shape, in 64-bit arithmetic so that no size wraps; then the
 * per-candidate strides of the keys and of the orders and contents. */
#define PACK_SCR(what)                                                     \
    what((ulong)PACK_N, (ulong)PACK_M, (ulong)PACK_CANDS, (ulong)PACK_HEAPS)
#define PACK_KS EPLB_SCR_KEY_STRIDE(PACK_N)
#define PACK_OS EPLB_SCR_ORD_STRIDE(PACK_N)
#define ROW_OFF_BYTES PACK_SCR(EPLB_SCR_ROW_OFF)
#define WG_SCRATCH_BYTES                                                   \
    EPLB_SCR_BYTES((ulong)PACK_N, (ulong)PACK_M, (ulong)PACK_CANDS,        \
                   (ulong)PACK_HEAPS, (ulong)ROW_WORDS)
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

/* The candidates a work-group packs: first .. first+count-1 of the row's
 * total. A row's candidates may be spread over several work-groups (the
 * slots kernel's parts, CAND_PARTS); a candidate's noise depends on its
 * index in the row and on the total (eplbi_cand_scale, the generator's
 * counter), never on the work-group that packs it, so the plans are the
 * same however the candidates are spread. Scratch arrays are indexed by
 * c - first. */
typedef struct cand_span {
    int first, count, total;
} cand_span;

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
 * descending, equal keys by item index (eplbi_larger_first). Noise is
 * small, so few items move far: the cost is about n plus the number of
 * inversions. */
inline void sort_candidate(SCR float *k, SCR ushort *o)
{
    for (int r = 1; r < PACK_N; r++) {
        float kv = k[r];
        ushort iv = o[r];
        int j = r - 1;
        while (j >= 0 && eplbi_larger_first(kv, iv, k[j], o[j])) {
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
EPLB_DEFINE_SIFT_DOWN(pack_sift_down, SCR, ushort, eplbi_lighter_first)
EPLB_DEFINE_EXTREMES(pack_extremes, SCR)

/* pack_one_candidate for many packs: the same fill and swaps, with the
 * pack weights in scratch memory and a heap for the lightest open pack. */
#if CAND_LANES > 1 && PACK_K == 2
/* The fill shortcuts (doc/ALGORITHM.md section 5) for a CPU's scalar
 * candidates with two items a pack, when the order's first PACK_M items
 * weigh more than zero and no more than the one before (the deterministic
 * row's base order does unless zero loads come that early; noisy orders
 * seldom): item r < PACK_M to
 * pack r, whose weights then fall with the index, so the (weight, index)
 * order of the packs is runs of equal weights from the last pack back,
 * each run by rising index; item PACK_M + k to its k-th pack. Returns 0
 * where the order does not qualify (nothing written). A heap's
 * mispredicted branches were the deterministic row's time. */
inline int pack_two_rounds(SCR const float *w, SCR const ushort *order,
                           SCR ushort *cont, SCR float *pw, SCR ushort *pn)
{
    float prev = INFINITY;
    for (int r = 0; r < PACK_M; r++) {
        float x = w[order[r]];
        if (!(x > 0.0f && x <= prev))
            return 0;
        prev = x;
    }
    for (int p = 0; p < PACK_M; p++) {
        cont[p * PACK_K] = order[p];
        pw[p] = 0.0f + w[order[p]];
        pn[p] = 2;
    }
    int k = PACK_M;
    for (int e = PACK_M - 1; e >= 0;) {
        int b = e; /* the run of pw[e]'s weight: b .. e */
        while (b > 0 && pw[b - 1] == pw[e])
            b--;
        for (int q = b; q <= e; q++, k++) {
            int item = order[k];
            cont[q * PACK_K + 1] = (ushort)item;
            pw[q] += w[item];
        }
        e = b - 1;
    }
    return 1;
}
#endif

inline float pack_one_candidate_heap(SCR const float *w, int rounds,
                                     SCR const ushort *order,
                                     SCR ushort *cont, SCR float *pw,
                                     SCR ushort *pn, SCR ushort *heap)
{
    int r = 0;
#if CAND_LANES > 1 && PACK_K == 2
    if (pack_two_rounds(w, order, cont, pw, pn))
        r = PACK_N; /* every item placed: no heap needed */
#endif
    if (r == 0)
        for (int p = 0; p < PACK_M; p++) {
            pw[p] = 0.0f;
            pn[p] = 0;
            heap[p] = (ushort)p; /* all zero: index order is a heap */
        }
    int len = PACK_M;
    for (; r < PACK_N; r++) {
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

#if PACK_SPLIT_ROW
/* Many packs on a GPU: PACK_SPLIT work-items share a candidate, each
 * keeping the weights and counts of PACK_SEG consecutive packs in
 * registers (a heap in scratch memory costs a chain of dependent loads per
 * item). Per item, each reports its segment's lightest open pack, lowest
 * index first; merging the reports in segment order, ties to the earlier,
 * finds the pack the heap would pop, and its owner places the item. The
 * swap rounds merge the segments' heaviest and lightest the same way, and
 * one work-item searches the pair. Every float operation is the heap
 * path's, in its order: the plans are the same bits. */
#ifndef PACK_SEG_MAX
#define PACK_SEG_MAX 40
#endif
#define PACK_SPLIT_NEED ((PACK_M + PACK_SEG_MAX - 1) / PACK_SEG_MAX)
#define PACK_SPLIT_                                                        \
    (PACK_SPLIT_NEED <= 1 ? 1 : PACK_SPLIT_NEED <= 2 ? 2                   \
     : PACK_SPLIT_NEED <= 4 ? 4 : PACK_SPLIT_NEED <= 8 ? 8                 \
     : PACK_SPLIT_NEED <= 16 ? 16 : PACK_SPLIT_NEED <= 32 ? 32 : 64)
/* A work-group with fewer candidates than a pass has room for (the slots
 * kernel's parts give each a few) splits each candidate further, down to
 * one pack a work-item: the work-items would idle otherwise. */
#define PACK_SPLIT_IDLE (WG / PACK_CANDS)
#define PACK_SPLIT_FILL                                                    \
    (PACK_SPLIT_IDLE >= 64 ? 64 : PACK_SPLIT_IDLE >= 32 ? 32               \
     : PACK_SPLIT_IDLE >= 16 ? 16 : PACK_SPLIT_IDLE >= 8 ? 8               \
     : PACK_SPLIT_IDLE >= 4 ? 4 : PACK_SPLIT_IDLE >= 2 ? 2 : 1)
#define PACK_SPLIT_WANT                                                    \
    (PACK_SPLIT_FILL > PACK_SPLIT_ ? PACK_SPLIT_FILL : PACK_SPLIT_)
#define PACK_SPLIT (PACK_SPLIT_WANT < WG ? PACK_SPLIT_WANT : WG)
#define PACK_SEG ((PACK_M + PACK_SPLIT - 1) / PACK_SPLIT)
/* candidates per pass of the work-group */
#define PACK_CPP (WG / PACK_SPLIT)
/* The reports' exchange, in local memory whatever SCRATCH_LOCAL says (the
 * host counts it, cl/eplb_scratch.h): rv[4][WG], ri[4][WG], then per
 * candidate of a pass the pair search's two sums and verdict. */
#define PACK_XCH_WORDS (8 * WG + 3 * PACK_CPP)
#if PACK_XCH_WORDS > EPLB_XCH_REPORT_WORDS_MAX(WG)
#error "the reports' exchange outgrew what lib/cl_engine.c sets aside"
#endif
/* Candidates c0 .. end-1's visiting orders (key descending, equal keys
 * by lower item), each item's place found by counting the items that
 * come before it: one (candidate, item) pair per work-item and turn, no
 * barrier, where a sorting network needed a barrier per stage (and, for
 * 64 candidates of 288 items, most of the kernel's time). The count is
 * short because keys stay near their weights: a key is w + (u*w)*scale
 * with 0 <= u < 1 (eplbi_noisy_key), so it lies in [w, U(w)], U(w) =
 * w + w*scale in float32 (rounding is monotone). Against an item of key
 * kb, the items of the base order (weight descending) whose weight
 * exceeds kb all come first, and those whose U is below kb all come
 * after: two binary searches bound the window where keys are compared
 * (eplbi_larger_first). Must be reached by every work-item. */
inline void rank_candidates(SCR const float *w, float noise, cand_span cs,
                            pack_scratch_ptrs s, int c0, int end,
                            __local uint *xch)
{
    int lid = get_local_id(0);
#if PACK_N * 2 <= 8 * WG
    /* the base order's weights and items, staged in the reports' room
     * (unused until the fill) */
    __local float *bw = (__local float *)xch;
    __local int *bi = (__local int *)(xch + PACK_N);
    for (int r = lid; r < PACK_N; r += WG) {
        int i = s.base[r];
        bw[r] = w[i];
        bi[r] = i;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#define BASE_W(r) bw[r]
#define BASE_I(r) bi[r]
#else
#define BASE_W(r) w[s.base[r]]
#define BASE_I(r) ((int)s.base[r])
#endif
    int total = (end - c0) * PACK_N;
    for (int x = lid; x < total; x += WG) {
        int c = c0 + x / PACK_N, b = x % PACK_N;
        float scale = eplbi_cand_scale(noise, cs.first + c, cs.total);
        SCR const float *key = s.keys + c * PACK_KS;
        float kb = key[b];
        int ib = BASE_I(b);
        /* lo: the positions whose weight exceeds kb, a prefix */
        int lo = 0, n = PACK_N;
        while (lo < n) {
            int mid = (lo + n) / 2;
            if (BASE_W(mid) > kb)
                lo = mid + 1;
            else
                n = mid;
        }
        /* hi: the positions whose U reaches kb, a prefix too */
        int hi = lo;
        n = PACK_N;
        while (hi < n) {
            int mid = (hi + n) / 2;
            float wm = BASE_W(mid);
            float um = wm + wm * scale;
            if (um >= kb)
                hi = mid + 1;
            else
                n = mid;
        }
        int rank = lo;
        for (int r = lo; r < hi; r++)
            rank += eplbi_larger_first(key[r], BASE_I(r), kb, ib);
        s.order[c * PACK_OS + rank] = (ushort)ib;
    }
#undef BASE_W
#undef BASE_I
}

/* The merge of the reports v[base .. base+PACK_SPLIT) (index -1: none):
 * the lowest value (less != 0) or the highest, the earlier on ties. */
inline int split_merge(__local const float *v, __local const int *ix, int base,
                       int less, float *out_v)
{
    int best = -1;
    float bv = 0.0f;
    for (int q = 0; q < PACK_SPLIT; q++) {
        int qi = ix[base + q];
        float qv = v[base + q];
        if (qi >= 0 && (best < 0 || (less ? qv < bv : qv > bv))) {
            best = qi;
            bv = qv;
        }
    }
    *out_v = bv;
    return best;
}

/* The fill's first round, and for two items a pack its second, in
 * closed form (doc/ALGORITHM.md section 5, "Fill shortcuts"), for the
 * work-item holding packs p0 .. p0+PACK_SEG-1 of candidate c (live: c is
 * a candidate). When the first PACK_M items of every live candidate's
 * order weigh more than zero, the greedy fill gives item r < PACK_M to
 * pack r (every empty pack is lighter than a used one, the lowest index
 * first); with two items a pack, the open packs then keep their weights
 * until full, so item PACK_M + k goes to the k-th lightest pack (ties to
 * the lower index), found here by counting. Returns how many items are
 * placed (0, PACK_M or PACK_N), the same in every work-item; pw, pn and
 * cont then hold what the loop would have made, the same bits: each sum
 * is 0 + first + second, in that order. keys (the candidate's sort keys,
 * dead once sorted) carry the packs' weights between work-items; flag is
 * a word of local memory. Must be reached by every work-item. */
inline int split_fill_rounds(SCR const float *w, int live, int c, int p0,
                             SCR const ushort *order, SCR ushort *cont,
                             SCR float *keys, float *pw, int *pn,
                             __local int *flag)
{
    if (get_local_id(0) == 0)
        *flag = 1;
    barrier(CLK_LOCAL_MEM_FENCE);
    int ok = 1;
    if (live)
        for (int j = 0; j < PACK_SEG; j++)
            if (p0 + j < PACK_M && !(w[order[p0 + j]] > 0.0f))
                ok = 0;
    if (!ok)
        *flag = 0; /* every writer writes the same */
    barrier(CLK_LOCAL_MEM_FENCE);
    /* on: the same in every work-item. Every barrier below is reached
     * whatever it says (PoCL's work-group compilers mishandle a barrier
     * under a branch). */
    int on = *flag, mine = on && live;
#pragma unroll
    for (int j = 0; j < PACK_SEG; j++)
        if (mine && p0 + j < PACK_M) {
            int item = order[p0 + j];
            cont[(p0 + j) * PACK_K] = (ushort)item;
            pw[j] = 0.0f + w[item];
            pn[j] = 1;
        }
#if PACK_K == 2
    SCR float *load = keys + (live ? c : 0) * PACK_KS;
#pragma unroll
    for (int j = 0; j < PACK_SEG; j++)
        if (mine && p0 + j < PACK_M)
            load[p0 + j] = pw[j];
    barrier(SCR_FENCE);
    /* rank[j]: how many packs come before pack p0 + j, lighter first */
    int rank[PACK_SEG];
#pragma unroll
    for (int j = 0; j < PACK_SEG; j++)
        rank[j] = 0;
    if (mine)
        for (int q = 0; q < PACK_M; q++) {
            float lq = load[q];
#pragma unroll
            for (int j = 0; j < PACK_SEG; j++)
                rank[j] += eplbi_lighter_first(lq, q, pw[j], p0 + j);
        }
#pragma unroll
    for (int j = 0; j < PACK_SEG; j++)
        if (mine && p0 + j < PACK_M) {
            int item = order[PACK_M + rank[j]];
            cont[(p0 + j) * PACK_K + 1] = (ushort)item;
            pw[j] += w[item];
            pn[j] = 2;
        }
    return on ? PACK_N : 0;
#else
    return on ? PACK_M : 0;
#endif
}

/* Step 3 of pack_row for many packs on a GPU: every candidate sorted,
 * filled and refined, s.cmax written. The reports go through xch (see
 * PACK_XCH_WORDS); barriers that order only them fence local memory. */
inline void pack_split_candidates(SCR const float *w, cand_span cs,
                                  int rounds, float noise,
                                  pack_scratch_ptrs s, __local uint *xch)
{
    int lid = get_local_id(0);
    int part = lid % PACK_SPLIT, slot = lid / PACK_SPLIT;
    int p0 = part * PACK_SEG, base = slot * PACK_SPLIT;
    __local float *rv = (__local float *)xch;
    __local int *ri = (__local int *)(xch + 4 * WG);
    __local float *sw_v = (__local float *)(xch + 8 * WG);
    __local int *sw_ok = (__local int *)(xch + 8 * WG + 2 * PACK_CPP);
    int cands = cs.count;
    for (int c0 = 0; c0 < cands; c0 += PACK_CPP) {
        int c = c0 + slot, live = c < cands;
        SCR ushort *order = s.order + (live ? c : 0) * PACK_OS;
        SCR ushort *cont = s.contents + (live ? c : 0) * PACK_OS;
        rank_candidates(w, noise, cs, s, c0, min(c0 + PACK_CPP, cands), xch);
        barrier(SCR_FENCE);
        float pw[PACK_SEG];
        int pn[PACK_SEG];
#pragma unroll
        for (int j = 0; j < PACK_SEG; j++) {
            pw[j] = 0.0f;
            pn[j] = 0;
        }
        /* the fill's first rounds in closed form where the row allows
         * (doc/ALGORITHM.md section 5, "Fill shortcuts"); r0 is the
         * first item left to the greedy loop, the same in every
         * work-item */
        int r0 = 0;
#if PACK_K >= 2
        r0 = split_fill_rounds(w, live, c, p0, order, cont, s.keys, pw, pn,
                               ri + 3 * WG);
#endif
        /* the fill: one barrier per item, the reports alternating
         * between two arrays */
        /* the next item and its weight are loaded an item ahead: they do
         * not depend on the fill, and their latency then hides behind the
         * scan and the barrier */
        int item_next = live && r0 < PACK_N ? order[r0] : 0;
        float w_next = w[item_next];
        for (int r = r0; r < PACK_N; r++) {
            int item = item_next;
            float wi = w_next;
            if (live && r + 1 < PACK_N) {
                item_next = order[r + 1];
                w_next = w[item_next];
            }
            __local float *v = rv + (r & 1) * WG;
            __local int *ix = ri + (r & 1) * WG;
            /* the segment's lightest open pack, lowest index first, by a
             * tree (a closed pack counts as infinitely heavy): a short
             * dependency chain instead of one compare per pack */
            float tv[PACK_SEG];
            int ti[PACK_SEG], to[PACK_SEG];
#pragma unroll
            for (int j = 0; j < PACK_SEG; j++) {
                to[j] = p0 + j < PACK_M && pn[j] < PACK_K;
                tv[j] = pw[j];
                ti[j] = j;
            }
#pragma unroll
            for (int span = 1; span < PACK_SEG; span *= 2)
#pragma unroll
                for (int j = 0; j + span < PACK_SEG; j += 2 * span)
                    if (to[j + span] && (!to[j] || tv[j + span] < tv[j])) {
                        tv[j] = tv[j + span];
                        ti[j] = ti[j + span];
                        to[j] = 1;
                    }
            int bp = to[0] ? p0 + ti[0] : -1;
            float bw = tv[0];
            v[lid] = bw;
            ix[lid] = bp;
            barrier(CLK_LOCAL_MEM_FENCE);
            float mv;
            int best = split_merge(v, ix, base, 1, &mv);
            if (live && best >= p0 && best < p0 + PACK_SEG) {
#pragma unroll
                for (int j = 0; j < PACK_SEG; j++)
                    if (p0 + j == best) {
                        cont[best * PACK_K + pn[j]] = (ushort)item;
                        pw[j] += wi;
                        pn[j]++;
                    }
            }
        }
        barrier(SCR_FENCE);
        /* the swap rounds, a candidate's stop masked, not branched on */
        int done = !live;
        for (int t = 0; t < rounds; t++) {
            int h = -1, l = -1;
            float hv = 0.0f, lv = 0.0f;
#pragma unroll
            for (int j = 0; j < PACK_SEG; j++)
                if (p0 + j < PACK_M) {
                    if (h < 0 || pw[j] > hv) {
                        h = p0 + j;
                        hv = pw[j];
                    }
                    if (l < 0 || pw[j] < lv) {
                        l = p0 + j;
                        lv = pw[j];
                    }
                }
            rv[lid] = hv;
            ri[lid] = h;
            rv[WG + lid] = lv;
            ri[WG + lid] = l;
            barrier(CLK_LOCAL_MEM_FENCE);
            h = split_merge(rv, ri, base, 0, &hv);
            l = split_merge(rv + WG, ri + WG, base, 1, &lv);
            if (!done && part == 0) {
                float gap = hv - lv, sh = 0.0f, sl = 0.0f;
                int ok = gap > 0.0f &&
                         swap_pair(w, cont + h * PACK_K, cont + l * PACK_K,
                                   gap, &sh, &sl);
                sw_ok[slot] = ok;
                sw_v[2 * slot] = sh;
                sw_v[2 * slot + 1] = sl;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (!done) {
                if (!sw_ok[slot]) {
                    done = 1;
                } else {
                    float sh = sw_v[2 * slot], sl = sw_v[2 * slot + 1];
#pragma unroll
                    for (int j = 0; j < PACK_SEG; j++) {
                        if (p0 + j == h)
                            pw[j] = sh;
                        if (p0 + j == l)
                            pw[j] = sl;
                    }
                }
            }
        }
        /* the largest pack */
        float mx = 0.0f;
        int at = -1;
#pragma unroll
        for (int j = 0; j < PACK_SEG; j++)
            if (p0 + j < PACK_M && (at < 0 || pw[j] > mx)) {
                at = p0 + j;
                mx = pw[j];
            }
        rv[2 * WG + lid] = mx;
        ri[2 * WG + lid] = at;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (live && part == 0) {
            float m;
            split_merge(rv + 2 * WG, ri + 2 * WG, base, 0, &m);
            s.cmax[c] = m;
        }
        barrier(SCR_FENCE);
    }
}
#else
#define PACK_XCH_WORDS 1
#endif

#if CAND_LANES > 1
/* cl/eplb_lanes.cl: candidates c0 .. c0+CAND_LANES-1 keyed, sorted, filled
 * and refined by one work-item, into s.cmax and s.contents. */
void pack_lanes(SCR const float *w, uint step, uint row, cand_span cs,
                int rounds, float noise, uint seed_lo, uint seed_hi, int c0,
                pack_scratch_ptrs s);
/* cl/eplb_lanes.cl: the row's base order into s.base and s.base_rank,
 * CAND_LANES weights per compare. */
void lanes_base_order(SCR const float *w, pack_scratch_ptrs s);
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

/* Packs one row's span of candidates with the whole work-group.
 * out_pack/out_rank [PACK_N] and out_max get the span's best candidate
 * (the lowest index among the least largest packs); xch is the kernel's
 * local exchange of PACK_XCH_WORDS words (read on GPUs with many packs
 * only). One candidate of one with rounds 0 is the deterministic pack()
 * (doc/ALGORITHM.md section 3). Must be reached by every work-item. */
void pack_row(SCR const float *w, uint step, uint row, cand_span cs,
              int rounds, float noise, uint seed_lo, uint seed_hi,
              pack_scratch_ptrs s, SCR int *best_c, SCR int *out_pack,
              SCR int *out_rank, SCR float *out_max, __local uint *xch)
{
    int lid = get_local_id(0), cands = cs.count;
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
                    r += eplbi_larger_first(w[j], j, wi, i);
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
#if CAND_LANES > 1
    /* CPU builds: the same count, each weight against a vector of items
     * (a CPU runs a work-group's items one after another, so n^2 scalar
     * compares were most of a deterministic row's time for the global
     * policy's 288 items; a heap sort's mispredicted branches cost about
     * as much for DeepSeek's 72) */
    if (!lanes) /* pack_lanes needs no base order */
        lanes_base_order(w, s);
#else
    for (int i = lanes ? PACK_N : lid; i < PACK_N; i += WG) {
        float wi = w[i];
        int r = 0;
        for (int j = 0; j < PACK_N; j++)
            r += eplbi_larger_first(w[j], j, wi, i);
        s.base[r] = (ushort)i;
        s.base_rank[i] = (ushort)r;
    }
#endif
    barrier(SCR_FENCE);
    /* 2. noisy sort keys, four items per generator call, stored at the
     * item's base position */
    const int quads = (PACK_N + 3) / 4;
    for (int idx = lanes ? cands * quads : lid; idx < cands * quads;
         idx += WG) {
        int c = idx / quads, q = idx - c * quads;
        uint words[4] = {0u, 0u, 0u, 0u};
        float scale = eplbi_cand_scale(noise, cs.first + c, cs.total);
        /* with scale 0 the key is the same bits whatever u is (u * w is
         * +-0, or NaN for an infinite w, either way), so the deterministic
         * variant's one candidate skips the generator */
        if (scale != 0.0f)
            eplbi_bits4(seed_lo, seed_hi, step, row, (uint)(cs.first + c),
                        (uint)q, words);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = q * 4 + j;
            if (i >= PACK_N)
                break;
            int r = s.base_rank[i];
            s.keys[c * PACK_KS + r] =
                eplbi_noisy_key(w[i], eplbi_unit(words[j]), scale);
#if !PACK_SPLIT_ROW
            /* where the insertion sort starts; split rows count their
             * orders from the base order (rank_candidates) instead */
            s.order[c * PACK_OS + r] = (ushort)i;
#endif
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
        pack_lanes(w, step, row, cs, rounds, noise, seed_lo, seed_hi, c0,
                   s);
#endif
#if PACK_SPLIT_ROW
    pack_split_candidates(w, cs, rounds, noise, s, xch);
#else
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
#endif
    barrier(SCR_FENCE);
    pack_row_pick(cands, s, best_c, out_pack, out_rank, out_max);
#endif
}

