/* replicate(): give p slots to n experts, each extra slot to the expert
 * with the largest load per replica (doc/ALGORITHM.md section 3; ties to
 * the lower expert, eplbi_larger_first of cl/eplb_rules.h). A few extra
 * slots are found by scanning; many go through a max-heap, which keeps it
 * O(p log n) instead of a scan per slot. */
#include "internal.h"
#include "eplb_rules.h"

/* Extra slots up to this many are found by scanning. */
#define REPLICATE_SCAN_MAX 16

EPLB_DEFINE_SIFT_DOWN(sift_down, , int, eplbi_larger_first)
EPLB_DEFINE_ADD_REPLICA(add_replica, )

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
            add_replica(w, e, slot, slot_item, slot_rank, count, ratio);
        }
        return;
    }
    for (int at = n / 2 - 1; at >= 0; at--)
        sift_down(heap, n, ratio, at);
    for (int slot = n; slot < p; slot++) {
        add_replica(w, heap[0], slot, slot_item, slot_rank, count, ratio);
        sift_down(heap, n, ratio, 0);
    }
}
