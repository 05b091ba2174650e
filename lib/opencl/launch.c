/* The launch choice: which kernel ways, work-group width, candidate parts
 * and scratch placement a plan of one shape takes on one device. A pure
 * function of the device's facts, the shape, the candidate count and the
 * context's tuning (eplb_context_tune): nothing here reads the
 * environment or calls OpenCL, so the choice is testable and written
 * once. */
#include "opencl.h"
#include "eplb_rules.h"
#include "eplb_scratch.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

/* Work-group sizes: GPUs like wide groups; a CPU runs a group's items in a
 * loop, where narrower groups spread better over cores. */
#define WG_GPU 256
#define WG_CPU 64
/* Candidates per work-item on CPU devices, one per vector lane (the
 * kernels' CAND_LANES): 16 floats fill an AVX-512 register, two AVX2
 * ones. GPUs run one candidate per work-item (1). */
#define LANES_CPU 16
/* Local memory kept free for the compiler's own needs. */
#define LOCAL_MEM_RESERVE 1024
/* Rows of more than LANES_MAX_ITEMS items stay scalar: the lanes path
 * keeps a row's state per lane in private memory. */
#define LANES_MAX_ITEMS 1024

static int is_cpu(const ocl_device_choice *dev)
{
    return (dev->type & CL_DEVICE_TYPE_CPU) != 0;
}

/* Candidates per work-item for a row of n items: the tuning's LANES (1, 4,
 * 8 or 16) or the device type's choice. */
static int cand_lanes(const ocl_device_choice *dev, const eplb_tuning *t,
                      int n)
{
    if (n > LANES_MAX_ITEMS)
        return 1;
    if (t->lanes != EPLB_TUNE_AUTO)
        return t->lanes;
    return is_cpu(dev) ? LANES_CPU : 1;
}

/* Whether rows of more than EPLB_PACK_SCAN_MAX packs may be split over
 * several work-items per candidate (the kernels' PACK_SPLIT_OK), instead
 * of a heap per candidate. The split suits GPUs, where work-items run side
 * by side; a CPU runs them one after the other, and PoCL 5's compiler
 * crashes on that kernel form (a segmentation fault, every time, seen on
 * 16 x86-64 cores; PoCL 3 runs it). The tuning's SPLIT overrides the
 * device type's choice, except on PoCL 5 and later's CPU devices, which
 * always keep the heaps. */
static int split_ok(const ocl_device_choice *dev, const eplb_tuning *t)
{
    const char *pocl = strstr(dev->platform_version, "PoCL ");
    if (is_cpu(dev) && pocl && atoi(pocl + 5) >= 5)
        return 0;
    return t->split != EPLB_TUNE_AUTO ? t->split : !is_cpu(dev);
}

/* Whether rows of many packs keep a heap per candidate instead of being
 * split over work-items, as the kernels' PACK_HEAPS: lanes builds and
 * builds without the split (lanes: the program's CAND_LANES). */
static size_t keeps_heaps(int lanes, int split)
{
    return lanes > 1 || !split;
}

/* Work-groups per candidate row of the slots kernel (its CAND_PARTS), each
 * packing a span of the candidates (cl/eplb_rebalance.cl); the plan is the
 * same for any count. Rows of many packs on a GPU (split rows) take
 * PARTS_GPU_SPLIT: a few dozen of them (one a layer, the global policy)
 * would leave most of a GPU's compute units idle, and a part's smaller
 * state fits local memory where a whole row's does not. Other GPU rows
 * keep one. CPU builds (lanes > 1) give each part one vector of
 * candidates, up to PARTS_CPU_MAX parts: on PoCL 5 with 16 threads a
 * DeepSeek plan took 1.69 ms with 4 parts against 2.30 with one (the
 * global policy 1.60 against 1.97), though each part repeats its row's
 * replication (2% more work on one thread). The tuning's PARTS (1, 2, 4
 * or 8) overrides; a count above the candidates is cut to them. */
#define PARTS_GPU_SPLIT 4
#define PARTS_CPU_MAX 8

static int cand_parts(const eplb_tuning *t, int cands, int lanes, int split)
{
    int parts = 1;
    if (t->parts != EPLB_TUNE_AUTO)
        parts = t->parts;
    else if (lanes > 1)
        parts = (cands + lanes - 1) / lanes;
    else if (split)
        parts = PARTS_GPU_SPLIT;
    if (lanes > 1 && parts > PARTS_CPU_MAX)
        parts = PARTS_CPU_MAX;
    return parts < cands ? parts : cands;
}

/* The private memory one work-item of the lanes path holds for a row of n
 * items in m packs (cl/eplb_lanes.cl: three pack-sized and five row-sized
 * arrays of lane vectors, and the 64-bit sort codes). */
static size_t lanes_private_bytes(int lanes, int n, int m)
{
    return (size_t)lanes * 4 * (3 * (size_t)m + 5 * (size_t)n) +
           (size_t)lanes * 8 * (size_t)n;
}

/* A CPU compiler runs a work-group as a loop over its work-items on one
 * thread's stack, and PoCL 5 keeps a copy of a work-item's private arrays
 * per work-item there: with 64 work-items the lanes path's arrays
 * overflowed the worker threads' stacks (segmentation faults now and then
 * with the usual 8 MiB, nearly always with glibc's 2 MiB for an unlimited
 * stack limit). Lanes builds therefore narrow the group until its private
 * arrays fit in LANES_STACK_BUDGET, a quarter of the smaller stack. The
 * group's width costs a CPU nothing: cores are kept busy by the many
 * work-groups, not by the work-items of one. */
#define LANES_STACK_BUDGET (512 * 1024)

static size_t lanes_group_width(const ocl_launch *l, const plan_dims *d,
                                size_t wg)
{
    size_t need = 0;
    int rows[2][3] = {{d->G, d->N, l->lanes_groups},
                      {d->ppn, d->gn, l->lanes_slots}};
    for (int i = 0; i < 2; i++) {
        if (rows[i][2] > 1) {
            size_t b = lanes_private_bytes(rows[i][2], rows[i][0],
                                           rows[i][1]);
            if (b > need)
                need = b;
        }
    }
    while (need && wg > 1 && wg * need > LANES_STACK_BUDGET)
        wg /= 2;
    return wg;
}

/* Many packs on a GPU (lanes 1) are filled by several work-items per
 * candidate, which exchange partial results through a local array of
 * their own (EPLB_XCH_REPORT_WORDS_MAX words per work-item at most,
 * counted in local_extra); CPU builds keep a heap per candidate in the
 * many-packs area. */
static ocl_layout layout_for(int n, int m, int cands, size_t row_words,
                             int lanes, int split, size_t wg)
{
    ocl_layout lo;
    size_t heap = keeps_heaps(lanes, split);
    lo.cands = cands;
    lo.row_words = row_words;
    lo.split = EPLB_SCR_SPLIT((size_t)n, (size_t)m, heap);
    lo.local_extra = lo.split ? EPLB_XCH_REPORT_WORDS_MAX(wg) * 4 : 4;
    lo.bytes = EPLB_SCR_BYTES((size_t)n, (size_t)m, (size_t)cands, heap,
                              row_words);
    return lo;
}

static int fits_local(const ocl_device_choice *dev, const ocl_layout *lo)
{
    return lo->bytes + lo->local_extra + LOCAL_MEM_RESERVE <= dev->local_mem;
}

void ocl_launch_choose(const ocl_device_choice *dev, const eplb_tuning *t,
                       const plan_dims *d, int cands, int use_clblast,
                       size_t wg_cap, ocl_launch *l)
{
    int cpu = is_cpu(dev);
    memset(l, 0, sizeof *l);
    l->lanes_groups = cand_lanes(dev, t, d->G);
    l->lanes_slots = cand_lanes(dev, t, d->ppn);
    l->split = split_ok(dev, t);
    size_t wg = cpu ? WG_CPU : WG_GPU;
    if (wg_cap && wg > wg_cap)
        wg = wg_cap;
    while (wg > dev->max_work_group && wg > 1)
        wg /= 2;
    wg = lanes_group_width(l, d, wg);
    /* CPU devices finish each layer in its last slots work-group
     * (cl/eplb_rebalance.cl); the tuning's FINISH_IN_SLOTS 0 turns that
     * off, to test the finish kernel there. GPUs always keep the finish
     * kernel: the launch costs little there, and OpenCL 1.2 does not
     * promise that one work-group sees another's global stores (a CPU's
     * coherent caches and PoCL's seq_cst atomics do). */
    l->finish_in_slots = cpu && t->finish_in_slots != 0;
    /* Likewise the loads, read where the caller keeps them on CPU devices
     * (CLBlast's group loads read the uploaded buffer). */
    l->loads_in_place = !use_clblast && (t->loads_in_place != EPLB_TUNE_AUTO
                                             ? t->loads_in_place : cpu);
    /* The tuning's WG: groups of at most that many work-items. Without
     * it, CPU devices whose rows all take the lanes way run one work-item
     * a group: PoCL runs a group's items one after another, looping over
     * them at every barrier, and a lanes row gives each item a whole
     * vector of candidates anyway (PoCL 5, 16 threads: 1349 against 1435
     * us a DeepSeek plan, 1204 against 1290 for the global policy, with
     * 8). */
    if (t->wg > 0) {
        while (wg > 1 && wg > (size_t)t->wg)
            wg /= 2;
    } else if (cpu && l->lanes_groups > 1 && l->lanes_slots > 1) {
        wg = 1;
    }
    l->wg = wg;
    /* Row areas as cl/eplb_rebalance.cl carves them; local arrays beside
     * them are sized for the widest group we may build. */
    l->groups = layout_for(d->G, d->N, cands,
                           EPLB_GROUPS_ROW_WORDS((size_t)d->G),
                           l->lanes_groups, l->split, wg);
    /* a slots work-group packs one part's span of the candidates */
    l->parts = cand_parts(t, cands, l->lanes_slots,
                          EPLB_SCR_SPLIT((size_t)d->ppn, (size_t)d->gn,
                                         keeps_heaps(l->lanes_slots,
                                                     l->split)));
    l->slots = layout_for(d->ppn, d->gn, (cands + l->parts - 1) / l->parts,
                          EPLB_SLOTS_ROW_WORDS((size_t)d->gpn, (size_t)d->lpn,
                                               (size_t)d->ppn),
                          l->lanes_slots, l->split, wg);
    l->slots.local_extra += 2 * wg * 4; /* eplb_slots' reduction arrays */
    if (l->finish_in_slots) /* its finish's node_from[N_], pick, last */
        l->slots.local_extra += ((size_t)d->N + 2) * 4;
    /* The tuning's GLOBAL_SCRATCH: state in global memory even where local
     * memory would do (to test that path on any device). */
    int force_global = t->global_scratch == 1;
    l->local_groups = !force_global && fits_local(dev, &l->groups);
    l->local_slots = !force_global && fits_local(dev, &l->slots);
}

void ocl_launch_describe(const ocl_launch *l, char *buf, size_t len)
{
    snprintf(buf, len,
             "kernel ways: lanes %d/%d (groups/slots), split %s, %d part%s, "
             "work-groups of %zu, finish %s, loads %s, scratch %s/%s",
             l->lanes_groups, l->lanes_slots, l->split ? "on" : "off",
             l->parts, l->parts == 1 ? "" : "s", l->wg,
             l->finish_in_slots ? "in the slots kernel" : "kernel",
             l->loads_in_place ? "in place" : "uploaded",
             l->local_groups ? "local" : "global",
             l->local_slots ? "local" : "global");
}
