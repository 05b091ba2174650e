/* The re-plan search's workspace (reserved once per shape, so the search
 * allocates nothing per layer), the check of a current plan, and the
 * indexes, loads and copies of the layer in hand. */
#include "replan.h"

#include <stdlib.h>
#include <string.h>

/* Work units a layer's search may spend per slot and expert (enough for
 * the searches of the benchmark's shapes to end by themselves), within a
 * cap for very large layers that still leaves room for REPLAN_WORK_MIN
 * passes over the layer: the search is linear in the layer's size. */
#define REPLAN_WORK_PER_ITEM 8000
#define REPLAN_WORK_CAP (1LL << 29)
#define REPLAN_WORK_MIN 64

long long replan_work_budget(const plan_dims *d)
{
    long long items = (long long)d->P + d->E;
    long long b = REPLAN_WORK_PER_ITEM * items;
    if (b > REPLAN_WORK_CAP)
        b = REPLAN_WORK_CAP;
    if (b < REPLAN_WORK_MIN * items)
        b = REPLAN_WORK_MIN * items;
    return b;
}

void replan_state_free(replan_state *st)
{
    if (!st)
        return;
    free(st->slot);
    free(st->alt);
    free(st->cnt);
    free(st->alt_cnt);
    free(st->node_of);
    free(st->order);
    free(st->match);
    free(st->taken);
    free(st->overlap);
    free(st->mark);
    free(st->load);
    free(st->gdelta);
    free(st->share);
    free(st->share_max);
    free(st->share_min);
    free(st->touched);
    free(st->gpu_list);
    free(st->head);
    free(st->next);
    free(st->held);
    free(st->was);
    free(st->cur_head);
    free(st->cur_next);
    free(st->cur_prev_gpu);
    free(st->pairs);
    free(st->tflag);
    free(st->kout);
    free(st->kavail);
    free(st->kused);
    free(st->seen);
    free(st->keep_cnt);
    free(st->gmark);
    free(st->la_gpu);
    free(st->la_load);
    free(st->ycand);
    free(st->rlist);
    free(st->rshare);
    free(st->rleast);
    free(st->mslot);
    free(st->mslot_share);
    free(st->mslot_at);
    free(st->yflag);
    free(st->try_out);
    free(st->try_cnt);
    free(st->node_map);
    free(st->usable);
    free(st->pr_items);
    free(st->pr_gpus);
    free(st->pr_tmp);
    free(st->pr_gtmp);
    free(st->pr_rem);
    free(st->pr_cnt);
    free(st->pr_bg);
    free(st->pr_at);
    free(st->pr_px);
    free(st->pr_py);
    free(st->pr_gpu_pair);
    free(st->pr_pair_gpu);
    free(st->pr_from);
    free(st->pr_queue);
    free(st->pr_sums);
    free(st->pr_bmax);
    free(st->pr_pre);
    free(st->pr_out[0]);
    free(st->pr_out[1]);
    free(st->pr_out[2]);
    free(st->gload);
    free(st->nload);
    free(st->nexp);
    free(st->gnode);
    free(st);
}

/* The re-pairing's workspace (pairs.c): layers of two slots per GPU
 * only. 1 when it could be had. */
static int reserve_pairs(replan_state *st, size_t E, size_t P, size_t M)
{
    st->pr_items = malloc(P * sizeof(pair_item));
    st->pr_gpus = malloc(M * sizeof(pair_gpu));
    st->pr_tmp = malloc(P * sizeof(pair_item));
    st->pr_gtmp = malloc(M * sizeof(pair_gpu));
    st->pr_rem = malloc(E * sizeof(int));
    st->pr_cnt = malloc(E * sizeof(int));
    st->pr_bg = malloc(M * sizeof(int));
    st->pr_at = malloc(M * sizeof(int));
    st->pr_px = malloc(M * sizeof(int));
    st->pr_py = malloc(M * sizeof(int));
    st->pr_gpu_pair = malloc(M * sizeof(int));
    st->pr_pair_gpu = malloc(M * sizeof(int));
    st->pr_from = malloc(M * sizeof(int));
    st->pr_queue = malloc(M * sizeof(int));
    st->pr_sums = malloc(5 * P * sizeof(double));
    st->pr_bmax = malloc(5 * (P / 16 + 1) * sizeof(double));
    st->pr_pre = malloc(P * sizeof(double));
    st->pr_out[0] = malloc(P * sizeof(int32_t));
    st->pr_out[1] = malloc(P * sizeof(int32_t));
    st->pr_out[2] = malloc(P * sizeof(int32_t));
    return st->pr_items && st->pr_gpus && st->pr_tmp && st->pr_gtmp &&
           st->pr_rem && st->pr_cnt && st->pr_bg && st->pr_at &&
           st->pr_px && st->pr_py && st->pr_gpu_pair && st->pr_pair_gpu &&
           st->pr_from && st->pr_queue && st->pr_sums && st->pr_bmax &&
           st->pr_pre && st->pr_out[0] && st->pr_out[1] && st->pr_out[2];
}

int replan_state_reserve(replan_state **stp, const plan_dims *d)
{
    replan_state *st = *stp;
    if (st && st->dims.E == d->E && st->dims.P == d->P &&
        st->dims.M == d->M && st->dims.N == d->N && st->dims.G == d->G)
        return EPLB_OK;
    replan_state_free(st);
    st = *stp = calloc(1, sizeof *st);
    if (!st)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    st->dims = *d;
    size_t E = (size_t)d->E, P = (size_t)d->P, M = (size_t)d->M;
    size_t big = E > M ? E : M;
    size_t sq = (size_t)d->N * d->N > (size_t)d->gn * d->gn
                    ? (size_t)d->N * d->N
                    : (size_t)d->gn * d->gn;
    st->slot = malloc(P * sizeof(int32_t));
    st->alt = malloc(P * sizeof(int32_t));
    st->cnt = malloc(E * sizeof(int));
    st->alt_cnt = malloc(E * sizeof(int));
    st->node_of = malloc(E * sizeof(int));
    st->order = malloc(big * sizeof(int));
    st->match = malloc(M * sizeof(int));
    st->taken = malloc(M * sizeof(int));
    st->overlap = malloc(sq * sizeof(int));
    st->mark = calloc(E, sizeof(int));
    st->load = malloc(M * sizeof(double));
    st->gdelta = calloc(M, sizeof(double));
    st->share = malloc(P * sizeof(double));
    st->share_max = malloc(M * sizeof(double));
    st->share_min = malloc(M * sizeof(double));
    st->touched = malloc(M * sizeof(int));
    st->gpu_list = malloc(M * sizeof(int));
    st->head = malloc(E * sizeof(int));
    st->next = malloc(P * sizeof(int));
    /* zero between layers (replan_unindex_layer) */
    st->held = calloc(M * E, sizeof(uint32_t));
    st->was = calloc(M * E, 1);
    st->cur_head = malloc(E * sizeof(int));
    st->cur_next = malloc(P * sizeof(int));
    st->cur_prev_gpu = malloc(P * sizeof(int));
    st->pairs = malloc(sq * sizeof(uint64_t));
    st->tflag = calloc(M, 1);
    st->gmark = calloc(M, 1);
    st->la_gpu = malloc(M * sizeof(int));
    st->la_load = malloc(M * sizeof(double));
    st->kout = malloc((size_t)d->ppg * sizeof(int32_t));
    st->kavail = calloc(E, sizeof(int));
    st->kused = calloc(E, sizeof(int));
    st->seen = calloc(E, sizeof(int));
    st->keep_cnt = malloc(E * sizeof(int32_t));
    st->ycand = malloc(E * sizeof(reloc_cand));
    st->rlist = malloc(E * sizeof(int));
    st->rshare = malloc(E * sizeof(double));
    st->rleast = malloc(E * sizeof(double));
    st->mslot = malloc(P * sizeof(int));
    st->mslot_share = malloc(P * sizeof(double));
    st->mslot_at = malloc((M + 1) * sizeof(int));
    st->yflag = calloc(E, 1);
    st->try_out = malloc(P * sizeof(int32_t));
    st->try_cnt = malloc(E * sizeof(int32_t));
    st->node_map = malloc((size_t)d->N * sizeof(int));
    st->usable = malloc((size_t)d->gn * sizeof(int));
    st->gload = malloc((size_t)d->G * sizeof(double));
    st->nload = malloc((size_t)d->N * sizeof(double));
    st->nexp = malloc((size_t)d->N * sizeof(int));
    st->gnode = malloc((size_t)d->G * sizeof(int));
    int pairs_ok = d->ppg != 2 || reserve_pairs(st, E, P, M);
    if (!pairs_ok || !st->gload || !st->nload || !st->nexp || !st->gnode || !st->tflag ||
        !st->kout || !st->kavail || !st->kused || !st->seen ||
        !st->keep_cnt || !st->gmark || !st->la_gpu || !st->la_load ||
        !st->ycand || !st->yflag || !st->try_out || !st->try_cnt ||
        !st->rlist || !st->rshare || !st->rleast || !st->mslot ||
        !st->mslot_share || !st->mslot_at ||
        !st->node_map || !st->usable || !st->cur_head || !st->cur_next ||
        !st->cur_prev_gpu || !st->pairs || !st->held || !st->was ||
        !st->gdelta || !st->share || !st->share_max || !st->share_min ||
        !st->gpu_list ||
        !st->touched || !st->head || !st->next ||
        !st->slot || !st->alt || !st->cnt || !st->alt_cnt || !st->node_of ||
        !st->order || !st->match || !st->taken || !st->overlap ||
        !st->mark || !st->load) {
        replan_state_free(st);
        *stp = NULL;
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    /* no layer yet: nothing for replan_unindex_layer to clear */
    for (size_t s = 0; s < P; s++)
        st->slot[s] = -1;
    return EPLB_OK;
}

int replan_check_current(const plan_dims *d, const int32_t *current)
{
    int *seen = malloc((size_t)d->E * sizeof(int));
    if (!seen)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    int rc = EPLB_OK;
    for (int l = 0; l < d->L && rc == EPLB_OK; l++) {
        const int32_t *p2l = current + (size_t)l * d->P;
        for (int e = 0; e < d->E; e++)
            seen[e] = 0;
        for (int s = 0; s < d->P && rc == EPLB_OK; s++) {
            int e = p2l[s];
            if (e < -1 || e >= d->E) {
                rc = eplbi_fail(EPLB_ERR_BAD_PLAN,
                                "current_phy2log[%d][%d] is %d: expert ids "
                                "are 0..%d, or -1 for an empty slot; pass a "
                                "plan of this shape",
                                l, s, e, d->E - 1);
                break;
            }
            if (e < 0)
                continue;
            seen[e] = 1;
            /* (a group over two nodes is taken: a budgeted or staged
             * migration stopped midway leaves such layers, and the
             * re-plan repairs them over all GPUs) */
        }
        for (int e = 0; e < d->E && rc == EPLB_OK; e++)
            if (!seen[e])
                rc = eplbi_fail(EPLB_ERR_BAD_PLAN,
                                "current_phy2log layer %d holds expert %d in "
                                "no slot: pass a complete plan of this shape "
                                "(every expert in at least one slot)",
                                l, e);
    }
    free(seen);
    return rc;
}



/* Distinct experts a GPU holds in `next` that it did not hold in the plan
 * in service. */
long replan_layer_copies(replan_state *st, const int32_t *next)
{
    const plan_dims *d = &st->dims;
    long n = 0;
    int *seen = st->seen;
    for (int g = 0; g < d->M; g++) {
        const int32_t *gs = next + (size_t)g * d->ppg;
        for (int r = 0; r < d->ppg; r++) {
            int e = gs[r];
            if (e < 0 || WAS(st, g, e) || seen[e])
                continue;
            seen[e] = 1;
            n++;
        }
        for (int r = 0; r < d->ppg; r++)
            if (gs[r] >= 0)
                seen[gs[r]] = 0;
    }
    return n;
}

/* Lays GPU g's experts (given in any slot order in `want`) into its slots
 * so that every expert it held before keeps its old slot: each old slot
 * keeps its expert while `want` has a copy of it left, and the rest of
 * `want` fills the other slots in its order. Linear in the slots. */
void replan_keep_slots(replan_state *st, const int32_t *cur, int g,
                       int32_t *want)
{
    int ppg = st->dims.ppg;
    int32_t *out = st->kout;
    int *avail = st->kavail, *used = st->kused;
    const int32_t *old = cur + (size_t)g * ppg;
    int32_t *w = want + (size_t)g * ppg;
    for (int i = 0; i < ppg; i++)
        if (w[i] >= 0)
            avail[w[i]]++;
    for (int r = 0; r < ppg; r++) {
        int e = old[r];
        out[r] = -2;
        if (e >= 0 && avail[e] > 0) {
            out[r] = e;
            avail[e]--;
            used[e]++;
        }
    }
    /* The copies kept are the first ones of `want`; the later ones fill
     * the free slots in order. */
    for (int i = 0, r = 0; i < ppg; i++) {
        int e = w[i];
        if (e >= 0 && used[e] > 0) {
            used[e]--;
            continue;
        }
        while (out[r] != -2)
            r++;
        out[r] = e;
    }
    for (int i = 0; i < ppg; i++)
        if (w[i] >= 0)
            avail[w[i]] = 0;
    memcpy(w, out, (size_t)ppg * sizeof(int32_t));
}


/* Each expert's live slots as linked lists, for the moves that change
 * replica counts. */
void replan_index_replicas(const plan_dims *d, replan_state *st)
{
    for (int e = 0; e < d->E; e++)
        st->head[e] = -1;
    for (int s = d->P - 1; s >= 0; s--) {
        int e = st->slot[s];
        if (e >= 0) {
            st->next[s] = st->head[e];
            st->head[e] = s;
        }
    }
}

/* Where the plan in service keeps each expert: WAS, and per expert its
 * slots as a list. */
void replan_index_current(replan_state *st, const int32_t *cur)
{
    const plan_dims *d = &st->dims;
    for (int e = 0; e < d->E; e++)
        st->cur_head[e] = -1;
    for (int g = d->M - 1; g >= 0; g--)
        for (int s = (g + 1) * d->ppg - 1; s >= g * d->ppg; s--) {
            int e = cur[s];
            if (e < 0)
                continue;
            WAS(st, g, e) = 1;
            st->cur_next[s] = st->cur_head[e];
            st->cur_head[e] = s;
        }
    /* Slots in a list ascend, so one GPU's replicas are adjacent. */
    for (int e = 0; e < d->E; e++)
        for (int t = st->cur_head[e], prev = -1; t >= 0;
             prev = t / d->ppg, t = st->cur_next[t])
            st->cur_prev_gpu[t] = prev;
}

/* Zeroes what a layer left in the [M][E] tables: WAS from the plan in
 * service, HELD from st->slot (set_slot and swap_slots keep HELD equal
 * to the slots' counts; the only other writes are a GPU's slots
 * permuted, and the -1s a layer starts from while HELD is all zero). A
 * pass over the slots, not the tables: under the global policy they are
 * 100+ KB a layer. */
void replan_unindex_layer(replan_state *st, const int32_t *cur)
{
    const plan_dims *d = &st->dims;
    for (int g = 0; g < d->M; g++)
        for (int s = g * d->ppg; s < (g + 1) * d->ppg; s++) {
            if (cur[s] >= 0)
                WAS(st, g, cur[s]) = 0;
            if (st->slot[s] >= 0)
                HELD(st, g, st->slot[s]) = 0;
        }
}
