/* A work-group's scratch memory, laid out once for both sides: the
 * kernels carve their arrays at these offsets (pack_scratch_at in
 * cl/eplb_pack.cl, the row areas of cl/eplb_rebalance.cl) and the host
 * sizes local memory and the global scratch buffer with the same
 * expressions (layout_for in lib/cl_engine.c). Valid C99 and OpenCL C
 * 1.2; needs EPLB_PACK_SCAN_MAX from cl/eplb_rules.h.
 *
 * Arguments: n items of a packing row, m packs, c candidates, and heap:
 * whether rows of many packs keep a heap per candidate (heap builds, and
 * scalar builds on CPUs) or are split over work-items (scalar builds on
 * GPUs, see EPLB_SCR_SPLIT); the host passes size_t values, the kernels 64-bit
 * ones, so no size wraps. All offsets are in bytes from the start of the
 * work-group's memory:
 *
 *   keys      float  [c * KEY_STRIDE]  each candidate's sort keys
 *   cmax      float  [c]               each candidate's largest pack
 *   order     ushort [c * ORD_STRIDE]  each candidate's visiting order
 *   contents  ushort [c * ORD_STRIDE]  each candidate's pack contents
 *   base      ushort [n]               the row's weight-descending order
 *   base_rank ushort [n]               its inverse
 *   -- 16-byte aligned: many packs (m > EPLB_PACK_SCAN_MAX) with heap
 *      only; split rows keep their packs in registers --
 *   packw     float  [c * m]           pack weights
 *   packn     ushort [c * m]           pack counts
 *   heap      ushort [c * m]           min-heaps of the open packs
 *   -- 16-byte aligned: the row area (EPLB_*_ROW below) --
 *
 * An array a row does not need (one item per pack, or one pack; the heap
 * arrays with few packs) keeps one element. */
#ifndef EPLB_SCRATCH_H
#define EPLB_SCRATCH_H

#define EPLB_ALIGN_UP(v, a) (((v) + (a) - 1) / (a) * (a))

/* Whether a row uses the packing arrays at all. */
#define EPLB_SCR_ACTIVE(n, m) ((n) / (m) > 1 && (m) > 1)
/* Whether a row of many packs is split over several work-items per
 * candidate (scalar builds for GPUs) instead of keeping heaps. */
#define EPLB_SCR_SPLIT(n, m, heap)                                         \
    (EPLB_SCR_ACTIVE(n, m) && (m) > EPLB_PACK_SCAN_MAX && !(heap))
/* Candidate rows start these many elements apart: an odd stride in
 * 32-bit words for the keys, 2 mod 4 ushorts for the orders, so that
 * work-items on neighbouring candidates hit different local memory
 * banks. */
#define EPLB_SCR_KEY_STRIDE(n) ((n) | 1)
#define EPLB_SCR_ORD_STRIDE(n) ((n) + (6 - (n) % 4) % 4)

/* array lengths, in elements */
#define EPLB_SCR_KEYS_LEN(n, m, c)                                         \
    (EPLB_SCR_ACTIVE(n, m) ? (c) * EPLB_SCR_KEY_STRIDE(n) : 1)
#define EPLB_SCR_CMAX_LEN(n, m, c) (EPLB_SCR_ACTIVE(n, m) ? (c) : 1)
#define EPLB_SCR_ORDER_LEN(n, m, c)                                        \
    (EPLB_SCR_ACTIVE(n, m) ? (c) * EPLB_SCR_ORD_STRIDE(n) : 1)
#define EPLB_SCR_BASE_LEN(n, m) (EPLB_SCR_ACTIVE(n, m) ? (n) : 1)
#define EPLB_SCR_HEAP_LEN(n, m, c, heap)                                   \
    (EPLB_SCR_ACTIVE(n, m) && (m) > EPLB_PACK_SCAN_MAX && (heap)           \
         ? (c) * (m) : 1)

/* byte offsets, each array after the one before */
#define EPLB_SCR_KEYS_OFF(n, m, c, heap) 0
#define EPLB_SCR_CMAX_OFF(n, m, c, heap)                                  \
    (EPLB_SCR_KEYS_OFF(n, m, c, heap) + 4 * EPLB_SCR_KEYS_LEN(n, m, c))
#define EPLB_SCR_ORDER_OFF(n, m, c, heap)                                 \
    (EPLB_SCR_CMAX_OFF(n, m, c, heap) + 4 * EPLB_SCR_CMAX_LEN(n, m, c))
#define EPLB_SCR_CONTENTS_OFF(n, m, c, heap)                              \
    (EPLB_SCR_ORDER_OFF(n, m, c, heap) + 2 * EPLB_SCR_ORDER_LEN(n, m, c))
#define EPLB_SCR_BASE_OFF(n, m, c, heap)                                  \
    (EPLB_SCR_CONTENTS_OFF(n, m, c, heap) +                               \
     2 * EPLB_SCR_ORDER_LEN(n, m, c))
#define EPLB_SCR_BASE_RANK_OFF(n, m, c, heap)                             \
    (EPLB_SCR_BASE_OFF(n, m, c, heap) + 2 * EPLB_SCR_BASE_LEN(n, m))
#define EPLB_SCR_PACKW_OFF(n, m, c, heap)                                 \
    EPLB_ALIGN_UP(EPLB_SCR_BASE_RANK_OFF(n, m, c, heap) +                 \
                      2 * EPLB_SCR_BASE_LEN(n, m), 16)
#define EPLB_SCR_PACKN_OFF(n, m, c, heap)                                 \
    (EPLB_SCR_PACKW_OFF(n, m, c, heap) +                                  \
     4 * EPLB_SCR_HEAP_LEN(n, m, c, heap))
#define EPLB_SCR_HEAP_OFF(n, m, c, heap)                                  \
    (EPLB_SCR_PACKN_OFF(n, m, c, heap) +                                  \
     2 * EPLB_SCR_HEAP_LEN(n, m, c, heap))
/* where the row area starts */
#define EPLB_SCR_ROW_OFF(n, m, c, heap)                                   \
    EPLB_ALIGN_UP(EPLB_SCR_HEAP_OFF(n, m, c, heap) +                      \
                      2 * EPLB_SCR_HEAP_LEN(n, m, c, heap), 16)
/* A work-group's whole state, with a row area of row_words 32-bit words:
 * the stride of the work-groups' slices of the global scratch buffer. */
#define EPLB_SCR_BYTES(n, m, c, heap, row_words)                          \
    EPLB_ALIGN_UP(EPLB_SCR_ROW_OFF(n, m, c, heap) + 4 * (row_words), 64)

/* The row areas, in 32-bit words from EPLB_SCR_ROW_OFF: each kernel's
 * arrays in the order given, then the chosen candidate (int) and its
 * largest pack (float).
 *
 * eplb_groups (G groups): group loads gw [G], their packs pk [G] and
 * ranks rk [G]. */
#define EPLB_GROUPS_ROW_WORDS(G) (3 * (G) + 2)
/* eplb_slots (a node's gpn groups, lpn experts, ppn slots): grp_at
 * [gpn]; ids, wn, ratio, cnt [lpn]; sitem, srank, tw, pk, rk [ppn]. */
#define EPLB_SLOTS_ROW_WORDS(gpn, lpn, ppn)                                \
    ((gpn) + 4 * (lpn) + 5 * (ppn) + 2)

/* Local memory beside the scratch, for rows split over work-items
 * (EPLB_SCR_SPLIT): cl/eplb_pack.cl's exchange of the work-items'
 * reports takes at most this many 32-bit words for wg work-items. */
#define EPLB_XCH_REPORT_WORDS_MAX(wg) (11 * (wg))

#endif /* EPLB_SCRATCH_H */
