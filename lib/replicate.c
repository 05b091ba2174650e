/* replicate(): give p slots to n experts, each extra slot to the expert
 * with the largest load per replica (SPEC; ties to the lower expert). A
 * few extra slots are found by scanning; many go through a max-heap, which
 * keeps it O(p log n) instead of a scan per slot. */
#include "internal.h"

/* Extra slots up to this many are found by scanning. */
#define REPLICATE_SCAN_MAX 16

static int ahead(const float *ratio, int a, int b)
{
    return ratio[a] > ratio[b] || (ratio[a] == ratio[b] && a < b);
}

static void sift_down(int *heap, int len, const float *ratio, int at)
{
    for (;;) {
        int l = 2 * at + 1, r = l + 1, m = at;
        if (l < len && ahead(ratio, heap[l], heap[m]))
            m = l;
        if (r < len && ahead(ratio, heap[r], heap[m]))
            m = r;
        if (m == at)
            return;
        int t = heap[at];
        heap[at] = heap[m];
        heap[m] = t;
        at = m;
    }
}

void replicate_reference(const float *w, int n, int p, int *slot_item,
                         int *slot_rank, int *count, float *ratio, int *heap)
{
    for (int e = 0; e < n; e++) {
        slot_item[e] = e;
        slot_rank[e] = 0;
        count[e] = 1;
        ratio[e] = w[e];
        heap[e] = e;
    }
    if (p == n)
        return;
    if (p - n <= REPLICATE_SCAN_MAX) {
        /* Few extra slots: a scan each is cheaper than building a heap. */
        for (int slot = n; slot < p; slot++) {
            int e = 0;
            for (int i = 1; i < n; i++)
                if (ratio[i] > ratio[e])
                    e = i;
            slot_item[slot] = e;
            slot_rank[slot] = count[e];
            count[e]++;
            ratio[e] = w[e] / (float)count[e];
        }
        return;
    }
    for (int at = n / 2 - 1; at >= 0; at--)
        sift_down(heap, n, ratio, at);
    for (int slot = n; slot < p; slot++) {
        int e = heap[0];
        slot_item[slot] = e;
        slot_rank[slot] = count[e];
        count[e]++;
        ratio[e] = w[e] / (float)count[e];
        sift_down(heap, n, ratio, 0);
    }
}
