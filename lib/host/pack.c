/* pack(): n weighted items into m packs of exactly n/m items each.
 * The deterministic reference (doc/ALGORITHM.md section 3: greedy by
 * weight descending) and the parallel-candidates variant (section 5:
 * noisy sort keys, greedy fill, heaviest-lightest swaps, best candidate)
 * as host loops. The rules they apply (noise, ties, heap, swap pair) are
 * those of cl/eplb_rules.h, which the kernels of cl/eplb_pack.cl apply
 * too. */
#include "internal.h"
#include "eplb_rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int pack_scratch_reserve(pack_scratch *s, int n)
{
    if (n <= s->cap_items)
        return EPLB_OK;
    pack_scratch_free(s);
    size_t z = (size_t)n;
    s->order = malloc(z * sizeof(int));
    s->sort_tmp = malloc(2 * z * sizeof(uint64_t));
    s->keys = malloc(z * sizeof(float));
    s->pack_w = malloc(z * sizeof(float));
    s->pack_n = malloc(z * sizeof(int));
    s->heap = malloc(z * sizeof(int));
    s->contents = malloc(z * sizeof(int));
    s->best_contents = malloc(z * sizeof(int));
    if (!s->order || !s->sort_tmp || !s->keys || !s->pack_w || !s->pack_n ||
        !s->heap || !s->contents || !s->best_contents) {
        pack_scratch_free(s);
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                          "out of memory for packing scratch of %d items", n);
    }
    s->cap_items = n;
    return EPLB_OK;
}

void pack_scratch_free(pack_scratch *s)
{
    free(s->order);
    free(s->sort_tmp);
    free(s->keys);
    free(s->pack_w);
    free(s->pack_n);
    free(s->heap);
    free(s->contents);
    free(s->best_contents);
    *s = (pack_scratch){0};
}

/* Sort keys as one integer each: weight descending, then index
 * ascending. For floats >= 0 (and +inf) the bit pattern grows with the
 * value, so flipping it makes an ascending integer sort do the job. */
static uint64_t desc_key(float v, int index)
{
    uint32_t bits;
    v = EPLB_NO_NEG_ZERO(v);
    memcpy(&bits, &v, sizeof bits);
    return EPLB_DESC_CODE((uint64_t), bits, (uint32_t)index);
}

#define SORT_RUN 16

static void insertion_sort_u64(uint64_t *v, int n)
{
    for (int i = 1; i < n; i++) {
        uint64_t x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static inline int u64_before(const uint64_t *x, const uint64_t *y)
{
    return *x < *y;
}

EPLBI_DEFINE_MERGE_PASSES(merge_u64, uint64_t, u64_before)

/* order[0..n) = items by key descending, equal keys by lower index
 * (eplbi_larger_first's order). tmp holds 2n uint64. */
static void sort_desc(const float *key, int *order, uint64_t *tmp, int n)
{
    uint64_t *a = tmp;
    for (int i = 0; i < n; i++)
        a[i] = desc_key(key[i], i);
    for (int lo = 0; lo < n; lo += SORT_RUN)
        insertion_sort_u64(a + lo, n - lo < SORT_RUN ? n - lo : SORT_RUN);
    a = merge_u64(a, tmp + n, n, SORT_RUN);
    for (int i = 0; i < n; i++)
        order[i] = (int)(uint32_t)a[i];
}

/* Min-heap of pack indices by (weight, index). */
EPLB_DEFINE_SIFT_DOWN(heap_sift_down, , int, eplbi_lighter_first)

/* Greedy fill in the given visiting order: each item to the lightest pack
 * that is not full (ties: lower pack). contents[p*k + r] is the item at
 * rank r of pack p; pw[p] accumulates in float32 in rank order. */
static void greedy_fill(const float *w, const int *order, int n, int m,
                        float *pw, int *pn, int *heap, int *contents)
{
    int k = n / m;
    if (m <= EPLB_PACK_SCAN_MAX) {
        /* The open packs, kept in index order so a strict scan breaks
         * ties to the lower pack. */
        float ow[EPLB_PACK_SCAN_MAX];
        int oid[EPLB_PACK_SCAN_MAX], open = m;
        for (int p = 0; p < m; p++) {
            ow[p] = 0.0f;
            oid[p] = p;
            pn[p] = 0;
        }
        for (int r = 0; r < n; r++) {
            int item = order[r], b = 0;
            for (int i = 1; i < open; i++)
                b = ow[i] < ow[b] ? i : b;
            int p = oid[b];
            contents[p * k + pn[p]] = item;
            ow[b] += w[item];
            if (++pn[p] == k) {
                pw[p] = ow[b];
                open--;
                for (int i = b; i < open; i++) {
                    ow[i] = ow[i + 1];
                    oid[i] = oid[i + 1];
                }
            }
        }
        return;
    }
    for (int p = 0; p < m; p++) {
        pw[p] = 0.0f;
        pn[p] = 0;
        heap[p] = p; /* all zero: index order is already a heap */
    }
    int len = m;
    for (int r = 0; r < n; r++) {
        int item = order[r], p = heap[0];
        contents[p * k + pn[p]] = item;
        pw[p] += w[item];
        if (++pn[p] == k)
            heap[0] = heap[--len];
        heap_sift_down(heap, len, pw, 0);
    }
}

static float pack_sum(const float *w, const int *items, int k)
{
    float s = 0.0f;
    for (int r = 0; r < k; r++)
        s += w[items[r]];
    return s;
}

static float max_of(const float *v, int n)
{
    float m = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] > m)
            m = v[i];
    return m;
}

/* The swap refinement (doc/ALGORITHM.md section 5): trade the pair of
 * EPLB_SWAP_BETTER's rule between the heaviest and the lightest pack, up
 * to rounds times. */
EPLB_DEFINE_EXTREMES(pack_extremes, )

static void swap_refine(const float *w, int m, int k, float *pw,
                        int *contents, int rounds)
{
    for (int t = 0; t < rounds; t++) {
        int h, l;
        float gap = pack_extremes(pw, m, &h, &l);
        if (!(gap > 0.0f))
            return;
        float mid = EPLB_SWAP_MID(gap), best = 0.0f;
        int ba = -1, bb = -1;
        int *hc = contents + h * k, *lc = contents + l * k;
        for (int a = 0; a < k; a++) {
            float wa = w[hc[a]];
            for (int b = 0; b < k; b++) {
                float diff = wa - w[lc[b]];
                float dist = EPLB_SWAP_DIST(diff, mid);
                if (EPLB_SWAP_BETTER(diff, dist, gap, best, ba < 0)) {
                    best = dist;
                    ba = a;
                    bb = b;
                }
            }
        }
        if (ba < 0)
            return;
        int tmp = hc[ba];
        hc[ba] = lc[bb];
        lc[bb] = tmp;
        pw[h] = pack_sum(w, hc, k);
        pw[l] = pack_sum(w, lc, k);
    }
}

static void contents_to_pack_rank(const int *contents, int n, int m,
                                  int *pack, int *rank)
{
    int k = n / m;
    for (int p = 0; p < m; p++)
        for (int r = 0; r < k; r++) {
            pack[contents[p * k + r]] = p;
            rank[contents[p * k + r]] = r;
        }
}

/* k == 1: item i alone in pack i. */
static float pack_one_per_pack(const float *w, int n, int *pack, int *rank)
{
    float mx = 0.0f;
    for (int i = 0; i < n; i++) {
        pack[i] = i;
        rank[i] = 0;
        if (w[i] > mx)
            mx = w[i];
    }
    return mx;
}

float pack_reference(const float *w, int n, int m, int *pack, int *rank,
                     pack_scratch *s)
{
    if (n == m)
        return pack_one_per_pack(w, n, pack, rank);
    sort_desc(w, s->order, s->sort_tmp, n);
    greedy_fill(w, s->order, n, m, s->pack_w, s->pack_n, s->heap,
                s->contents);
    contents_to_pack_rank(s->contents, n, m, pack, rank);
    return max_of(s->pack_w, m);
}

float pack_candidates(const float *w, int n, int m, int step, uint32_t row,
                      const pack_params *pp, int *pack, int *rank,
                      pack_scratch *s)
{
    /* One item per pack or one pack: every candidate packs alike. */
    if (n == m || m == 1)
        return pack_reference(w, n, m, pack, rank, s);
    int k = n / m;
    uint32_t seed_lo = (uint32_t)pp->seed;
    uint32_t seed_hi = (uint32_t)(pp->seed >> 32);
    float best = 0.0f;
    for (int c = 0; c < pp->candidates; c++) {
        float scale = eplbi_cand_scale(pp->noise, c, pp->candidates);
        for (int q = 0; q * 4 < n; q++) {
            uint32_t bits[4];
            eplbi_bits4(seed_lo, seed_hi, (uint32_t)step, row, (uint32_t)c,
                        (uint32_t)q, bits);
            for (int i = q * 4; i < n && i < q * 4 + 4; i++)
                s->keys[i] = eplbi_noisy_key(w[i], eplbi_unit(bits[i - q * 4]),
                                            scale);
        }
        sort_desc(s->keys, s->order, s->sort_tmp, n);
        greedy_fill(w, s->order, n, m, s->pack_w, s->pack_n, s->heap,
                    s->contents);
        swap_refine(w, m, k, s->pack_w, s->contents, pp->swap_rounds);
        float mx = max_of(s->pack_w, m);
        if (c == 0 || mx < best) {
            best = mx;
            for (int i = 0; i < n; i++)
                s->best_contents[i] = s->contents[i];
        }
    }
    contents_to_pack_rank(s->best_contents, n, m, pack, rank);
    return best;
}
