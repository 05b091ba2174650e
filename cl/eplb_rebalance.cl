/* The rebalance as three kernels (doc/ALGORITHM.md sections 3 and 5):
 *   eplb_groups  - one work-group per layer: group loads, groups to nodes
 *   eplb_slots   - one work-group per (variant, layer, node): replicate the
 *                  node's experts into its slots, pack slots onto its GPUs
 *   eplb_finish  - one work-group per layer: the guard picks the variant,
 *                  then phy2log, log2phy and logcnt are written (on CPU
 *                  devices, FINISH_IN_SLOTS, the layer's last eplb_slots
 *                  work-group does this instead)
 * Variant 0 is the deterministic reference (1 candidate, no swaps), variant
 * 1 the candidate search; the guard keeps the candidate plan unless the
 * reference has a strictly lower largest GPU load. eplb_slots may spread a
 * row's candidates over CAND_PARTS work-groups (variants 1 .. CAND_PARTS,
 * each a span of them): GPUs with fewer rows than compute units then keep
 * more of them busy. eplb_finish takes each node's best part, ties to the
 * lower (whose candidates come first), which is the best candidate of the
 * whole row: the plans are the same for any CAND_PARTS.
 *
 * The groups program is built with PACK_N = G_, PACK_M = N_; the slots
 * program (EPLB_SLOTS_PROGRAM) with PACK_N = PPN_, PACK_M = GN_. Each
 * work-group's row area (after the packing arrays) holds ROW_WORDS words,
 * as cl/eplb_scratch.h counts them for the kernel's carving below. */
#ifdef EPLB_SLOTS_PROGRAM
#if ROW_WORDS < EPLB_SLOTS_ROW_WORDS(GPN_, LPN_, PPN_)
#error "ROW_WORDS is smaller than eplb_slots' row area"
#endif
#elif ROW_WORDS < EPLB_GROUPS_ROW_WORDS(G_)
#error "ROW_WORDS is smaller than eplb_groups' row area"
#endif

/* The tree reduction spans the work-items that can hold an expert. */
#define REDUCE_WIDTH_ (LPN_ < WG ? LPN_ : WG)
#define REDUCE_WIDTH                                                       \
    (REDUCE_WIDTH_ <= 1 ? 1 : REDUCE_WIDTH_ <= 2 ? 2 : REDUCE_WIDTH_ <= 4 ? 4 \
     : REDUCE_WIDTH_ <= 8 ? 8 : REDUCE_WIDTH_ <= 16 ? 16                   \
     : REDUCE_WIDTH_ <= 32 ? 32 : REDUCE_WIDTH_ <= 64 ? 64                 \
     : REDUCE_WIDTH_ <= 128 ? 128 : REDUCE_WIDTH_ <= 256 ? 256 : 512)
#pragma OPENCL FP_CONTRACT OFF

#define STEP_GROUPS 0u
#define STEP_SLOTS 1u
#define VARIANTS 2
#ifndef CAND_PARTS
#define CAND_PARTS 1
#endif
#ifndef FINISH_IN_SLOTS
#define FINISH_IN_SLOTS 0
#endif
/* eplb_slots' variants: the reference, then the candidates' parts */
#define SLOT_VARIANTS (1 + CAND_PARTS)

/* The span of candidates a variant packs (cl/eplb_pack.cl): the one
 * reference candidate, or part v of the row's cands. */
inline cand_span variant_span(int v, int cands, int parts)
{
    cand_span cs;
    if (v == 0) {
        cs.first = 0;
        cs.count = 1;
        cs.total = 1;
    } else {
        cs.first = (v - 1) * cands / parts;
        cs.count = v * cands / parts - cs.first;
        cs.total = cands;
    }
    return cs;
}

#ifndef EPLB_SLOTS_PROGRAM

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void eplb_groups(__global const float *w, int layers, int cands, int rounds,
                 float noise, uint seed_lo, uint seed_hi,
                 __global int *gplace, __global uchar *gscratch,
                 __global const float *gw_given)
{
    WG_MEMORY(gscratch);
    __local uint pack_xch[PACK_XCH_WORDS];
    pack_scratch_ptrs s = pack_scratch_at(wg_mem);
    SCR float *gw = (SCR float *)(wg_mem + ROW_OFF_BYTES);
    SCR int *pk = (SCR int *)(gw + G_);
    SCR int *rk = pk + G_;
    SCR int *best_c = rk + G_;
    SCR float *mx = (SCR float *)(best_c + 1);
    int l = get_group_id(0), lid = get_local_id(0);
    __global const float *wl = w + (size_t)l * E_;
    for (int g = lid; g < G_; g += WG) {
#if GROUP_LOADS_GIVEN
        /* summed by CLBlast before this kernel */
        gw[g] = gw_given[(size_t)l * G_ + g];
#else
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < GS_; j++)
            sum += wl[g * GS_ + j];
        gw[g] = sum;
#endif
    }
    barrier(SCR_FENCE);
    for (int v = 0; v < VARIANTS; v++) {
        pack_row(gw, STEP_GROUPS, (uint)l, variant_span(v, cands, 1),
                 v ? rounds : 0, noise, seed_lo, seed_hi, s, best_c, pk, rk,
                 mx, pack_xch);
        __global int *out = gplace + ((size_t)v * layers + l) * G_ * 2;
        for (int g = lid; g < G_; g += WG) {
            out[2 * g] = pk[g];
            out[2 * g + 1] = rk[g];
        }
        barrier(SCR_FENCE);
    }
}

#else /* EPLB_SLOTS_PROGRAM */

EPLB_DEFINE_ADD_REPLICA(add_replica, SCR)

/* replicate() (doc/ALGORITHM.md section 3): LPN_ experts into PPN_
 * slots. Each extra slot goes to the expert with the largest load per
 * replica (ties: lower expert, eplbi_larger_first), found by a work-group
 * reduction; red_v/red_i hold WG entries. */
inline void replicate_node(SCR const float *wn, SCR int *sitem,
                           SCR int *srank, SCR int *cnt, SCR float *ratio,
                           __local float *red_v, __local int *red_i)
{
    int lid = get_local_id(0);
    for (int e = lid; e < LPN_; e += WG) {
        sitem[e] = e;
        srank[e] = 0;
        cnt[e] = 1;
        ratio[e] = wn[e];
    }
    barrier(SCR_FENCE);
    for (int slot = LPN_; slot < PPN_; slot++) {
#if CAND_LANES > 1
        /* CPU builds: one work-item scans the experts, CAND_LANES at a
         * time; a CPU runs a work-group's items one after the other
         * anyway, and the tree below would cost a pass over all of them
         * per level. */
        if (lid == 0)
            red_i[0] = lanes_largest_first(ratio, LPN_);
#else
        /* ratios are >= 0, so -1 marks "none" */
        float bv = -1.0f;
        int bi = -1;
        for (int e = lid; e < LPN_; e += WG)
            if (ratio[e] > bv) {
                bv = ratio[e];
                bi = e;
            }
        red_v[lid] = bv;
        red_i[lid] = bi;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int span = REDUCE_WIDTH / 2; span > 0; span >>= 1) {
            if (lid < span) {
                float ov = red_v[lid + span];
                int oi = red_i[lid + span];
                /* oi < 0: no expert, whose -1 loses every comparison */
                if (oi >= 0 && eplbi_larger_first(ov, oi, red_v[lid],
                                                 red_i[lid])) {
                    red_v[lid] = ov;
                    red_i[lid] = oi;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
#endif
        if (lid == 0)
            add_replica(wn, red_i[0], slot, sitem, srank, cnt, ratio);
        barrier(SCR_FENCE);
    }
}

/* out = phy2log [layers][P_] ++ replica rank [layers][P_] ++ logcnt
 * [layers][E_]: one buffer, one download; the host makes log2phy. Layer
 * l's part, by one work-group (every work-item calls it). */
inline void finish_layer(int l, int layers, __global const int *slot_expert,
                         __global const int *slot_rank,
                         __global const int *cnt_in,
                         __global const float *rowmax, __global int *out,
                         __local int *node_from, __local int *pick)
{
    int lid = get_local_id(0);
    /* the variant each node's slots come from */
    for (int n = lid; n < N_; n += WG) {
        /* the node's best part: strict < keeps the lower on ties */
        int b = 1;
        for (int v = 2; v <= CAND_PARTS; v++)
            if (rowmax[((size_t)v * layers + l) * N_ + n] <
                rowmax[((size_t)b * layers + l) * N_ + n])
                b = v;
        node_from[n] = b;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        float ref = 0.0f, cand = 0.0f;
        for (int n = 0; n < N_; n++) {
            ref = fmax(ref, rowmax[(size_t)l * N_ + n]);
            cand = fmax(cand,
                        rowmax[((size_t)node_from[n] * layers + l) * N_ + n]);
        }
        *pick = ref < cand ? 0 : 1;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    __global int *phy2log = out + (size_t)l * P_;
    __global int *rank = out + (size_t)(layers + l) * P_;
    __global int *logcnt = out + (size_t)layers * 2 * P_ + (size_t)l * E_;
    /* the parts share the candidates' groups, so replication and the
     * counts: part 1's are every part's */
    int pk = *pick;
    size_t vc = (size_t)pk * layers + l;
    for (int e = lid; e < E_; e += WG)
        logcnt[e] = cnt_in[vc * E_ + e];
    for (int slot = lid; slot < P_; slot += WG) {
        size_t vl = (size_t)(pk ? node_from[slot / PPN_] : 0) * layers + l;
        phy2log[slot] = slot_expert[vl * P_ + slot];
        rank[slot] = slot_rank[vl * P_ + slot];
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void eplb_slots(__global const float *w, int layers, int cands, int rounds,
                float noise, uint seed_lo, uint seed_hi,
                __global const int *gplace, __global int *slot_expert,
                __global int *slot_rank, __global int *cnt_out,
                __global float *rowmax, __global uchar *gscratch,
                __global int *out, volatile __global int *rows_done)
{
    WG_MEMORY(gscratch);
    __local uint pack_xch[PACK_XCH_WORDS];
    pack_scratch_ptrs s = pack_scratch_at(wg_mem);
    SCR int *grp_at = (SCR int *)(wg_mem + ROW_OFF_BYTES);
    SCR int *ids = grp_at + GPN_;
    SCR float *wn = (SCR float *)(ids + LPN_);
    SCR float *ratio = wn + LPN_;
    SCR int *cnt = (SCR int *)(ratio + LPN_);
    SCR int *sitem = cnt + LPN_;
    SCR int *srank = sitem + PPN_;
    SCR float *tw = (SCR float *)(srank + PPN_);
    SCR int *pk = (SCR int *)(tw + PPN_);
    SCR int *rk = pk + PPN_;
    SCR int *best_c = rk + PPN_;
    SCR float *mx = (SCR float *)(best_c + 1);
    /* the replicate step's reductions: local memory, whatever SCR is */
    __local float red_v[WG];
    __local int red_i[WG];

    int gid = get_group_id(0), lid = get_local_id(0);
    /* The candidate variants' rows come first: a device that runs more
     * rows than it has cores then ends on the cheap deterministic ones. */
    int n = gid % N_, l = (gid / N_) % layers;
    int v = SLOT_VARIANTS - 1 - gid / (N_ * layers), vl = v * layers + l;
    /* every part packs the nodes of the groups kernel's candidate plan */
    __global const int *place =
        gplace + ((size_t)(v ? 1 : 0) * layers + l) * G_ * 2;
    for (int g = lid; g < G_; g += WG)
        if (place[2 * g] == n)
            grp_at[place[2 * g + 1]] = g;
    barrier(SCR_FENCE);
    for (int i = lid; i < LPN_; i += WG) {
        int e = grp_at[i / GS_] * GS_ + i % GS_;
        ids[i] = e;
        wn[i] = w[(size_t)l * E_ + e];
    }
    barrier(SCR_FENCE);
    replicate_node(wn, sitem, srank, cnt, ratio, red_v, red_i);
    for (int p = lid; p < PPN_; p += WG) {
        int e = sitem[p];
        tw[p] = wn[e] / (float)cnt[e];
    }
    barrier(SCR_FENCE);
    pack_row(tw, STEP_SLOTS, (uint)(l * N_ + n),
             variant_span(v, cands, CAND_PARTS), v ? rounds : 0, noise,
             seed_lo, seed_hi, s, best_c, pk, rk, mx, pack_xch);
    size_t base = (size_t)vl * P_;
    for (int p = lid; p < PPN_; p += WG) {
        int slot = n * PPN_ + pk[p] * PPG_ + rk[p];
        slot_expert[base + slot] = ids[sitem[p]];
        slot_rank[base + slot] = srank[p];
    }
    for (int i = lid; i < LPN_; i += WG)
        cnt_out[(size_t)vl * E_ + ids[i]] = cnt[i];
    if (lid == 0)
        rowmax[(size_t)vl * N_ + n] = *mx;
#if FINISH_IN_SLOTS
    /* CPU devices: the layer's last work-group to get here writes its
     * part of the plan (eplb_finish's work), which saves a launch whose
     * cost there is mostly waking the device's threads. Every row's
     * results are stored before its count goes up (the barrier, then a
     * fenced atomic), and the last reads them only after its own atomic
     * saw the whole count; it then sets the count back to 0 for the next
     * call (the host zeroes it when it makes the buffer). */
    __local int node_from[N_];
    __local int pick, last;
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        mem_fence(CLK_GLOBAL_MEM_FENCE);
        last = atomic_inc(&rows_done[l]) == SLOT_VARIANTS * N_ - 1;
        mem_fence(CLK_GLOBAL_MEM_FENCE);
    }
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    /* a loop whose start decides whether it runs, not an if around the
     * barriers inside (see pack_row: PoCL 5's work-group compiler) */
    for (int f = last ? 0 : 1; f < 1; f++) {
        finish_layer(l, layers, slot_expert, slot_rank, cnt_out, rowmax,
                     out, node_from, &pick);
        if (lid == 0)
            rows_done[l] = 0;
    }
#endif
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void eplb_finish(int layers, __global const int *slot_expert,
                 __global const int *slot_rank, __global const int *cnt_in,
                 __global const float *rowmax, __global int *out)
{
    __local int node_from[N_];
    __local int pick;
    finish_layer(get_group_id(0), layers, slot_expert, slot_rank, cnt_in,
                 rowmax, out, node_from, &pick);
}

#endif /* EPLB_SLOTS_PROGRAM */
