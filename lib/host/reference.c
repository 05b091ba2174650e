/* The reference backend: the hierarchical pipeline of doc/ALGORITHM.md
 * (sections 3 and 5) in plain C, with either the deterministic pack() or the
 * parallel-candidates pack(). It is the oracle the OpenCL backend is tested
 * against and the fallback when no OpenCL device is present. Its layers
 * are independent: host threads take them one at a time, each in its own
 * workspace (the plan is the same for any number of threads). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Per-layer working arrays, sized for the largest shape seen so far. */
struct reference_state {
    plan_dims dims;
    pack_scratch ps;
    float *gw;        /* [G] group loads */
    int *gpack, *grank;
    int *mlog2log;    /* [E] node-local id -> logical expert */
    float *wn;        /* [lpn] loads of one node's experts */
    int *slot_item, *slot_rank, *cnt, *heap;
    float *ratio;
    float *tw;        /* [ppn] per-slot loads */
    int *pk, *rk;
    int32_t *ref_phy2log, *ref_phyrank, *ref_logcnt; /* one layer */
    int32_t *cand_phy2log, *cand_phyrank, *cand_logcnt;
};

void reference_state_free(reference_state *st)
{
    if (!st)
        return;
    pack_scratch_free(&st->ps);
    free(st->gw);
    free(st->gpack);
    free(st->grank);
    free(st->mlog2log);
    free(st->wn);
    free(st->slot_item);
    free(st->slot_rank);
    free(st->cnt);
    free(st->heap);
    free(st->ratio);
    free(st->tw);
    free(st->pk);
    free(st->rk);
    free(st->ref_phy2log);
    free(st->ref_phyrank);
    free(st->ref_logcnt);
    free(st->cand_phy2log);
    free(st->cand_phyrank);
    free(st->cand_logcnt);
    free(st);
}

static int same_dims(const plan_dims *a, const plan_dims *b)
{
    return a->E == b->E && a->P == b->P && a->G == b->G && a->N == b->N &&
           a->M == b->M;
}

static int state_reserve(reference_state **stp, const plan_dims *d)
{
    if (*stp && same_dims(&(*stp)->dims, d))
        return EPLB_OK;
    reference_state_free(*stp);
    reference_state *st = *stp = calloc(1, sizeof *st);
    if (!st)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    st->dims = *d;
    size_t G = (size_t)d->G, E = (size_t)d->E, P = (size_t)d->P,
           lpn = (size_t)d->lpn, ppn = (size_t)d->ppn;
    st->gw = malloc(G * sizeof(float));
    st->gpack = malloc(G * sizeof(int));
    st->grank = malloc(G * sizeof(int));
    st->mlog2log = malloc(E * sizeof(int));
    st->wn = malloc(lpn * sizeof(float));
    st->slot_item = malloc(ppn * sizeof(int));
    st->slot_rank = malloc(ppn * sizeof(int));
    st->cnt = malloc(lpn * sizeof(int));
    st->heap = malloc(lpn * sizeof(int));
    st->ratio = malloc(lpn * sizeof(float));
    st->tw = malloc(ppn * sizeof(float));
    st->pk = malloc(ppn * sizeof(int));
    st->rk = malloc(ppn * sizeof(int));
    st->ref_phy2log = malloc(P * sizeof(int32_t));
    st->ref_phyrank = malloc(P * sizeof(int32_t));
    st->ref_logcnt = malloc(E * sizeof(int32_t));
    st->cand_phy2log = malloc(P * sizeof(int32_t));
    st->cand_phyrank = malloc(P * sizeof(int32_t));
    st->cand_logcnt = malloc(E * sizeof(int32_t));
    int items = d->G > d->ppn ? d->G : d->ppn;
    if (!st->gw || !st->gpack || !st->grank || !st->mlog2log || !st->wn ||
        !st->slot_item || !st->slot_rank || !st->cnt || !st->heap ||
        !st->ratio || !st->tw || !st->pk || !st->rk || !st->ref_phy2log ||
        !st->ref_phyrank || !st->ref_logcnt || !st->cand_phy2log ||
        !st->cand_phyrank || !st->cand_logcnt ||
        pack_scratch_reserve(&st->ps, items) != EPLB_OK) {
        reference_state_free(st);
        *stp = NULL;
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                          "out of host memory for a %d-expert, %d-slot plan",
                          d->E, d->P);
    }
    return EPLB_OK;
}

/* One packing row: pp NULL for the deterministic pack() (doc/ALGORITHM.md
 * section 3), else the parallel candidates. (The kernels' pack_row is another
 * function.) */
static void pack_by_mode(reference_state *st, const float *w, int n, int m,
                         int step, uint32_t row, const pack_params *pp,
                         int *pack, int *rank)
{
    if (pp)
        pack_candidates(w, n, m, step, row, pp, pack, rank, &st->ps);
    else
        pack_reference(w, n, m, pack, rank, &st->ps);
}

/* One layer (doc/ALGORITHM.md section 3, "One layer"): pp NULL for the
 * deterministic pack. */
static void layer_plan(reference_state *st, const plan_dims *d, int layer,
                       const float *w, const pack_params *pp,
                       int32_t *phy2log, int32_t *phyrank, int32_t *logcnt)
{
    /* 1. group loads, groups to nodes */
    for (int g = 0; g < d->G; g++) {
        float s = 0.0f;
        for (int j = 0; j < d->gs; j++)
            s += w[g * d->gs + j];
        st->gw[g] = s;
    }
    pack_by_mode(st, st->gw, d->G, d->N, EPLB_STEP_GROUPS, (uint32_t)layer,
                 pp, st->gpack, st->grank);
    /* 2. node-local ids */
    for (int g = 0; g < d->G; g++)
        for (int j = 0; j < d->gs; j++)
            st->mlog2log[(st->gpack[g] * d->gpn + st->grank[g]) * d->gs + j] =
                g * d->gs + j;
    for (int n = 0; n < d->N; n++) {
        const int *ids = st->mlog2log + n * d->lpn;
        /* 3. replicate the node's experts into its slots */
        for (int i = 0; i < d->lpn; i++)
            st->wn[i] = w[ids[i]];
        replicate_reference(st->wn, d->lpn, d->ppn, st->slot_item,
                            st->slot_rank, st->cnt, st->ratio, st->heap);
        /* 4. slots to the node's GPUs */
        for (int p = 0; p < d->ppn; p++) {
            int e = st->slot_item[p];
            st->tw[p] = st->wn[e] / (float)st->cnt[e];
        }
        pack_by_mode(st, st->tw, d->ppn, d->gn, EPLB_STEP_SLOTS,
                     (uint32_t)(layer * d->N + n), pp, st->pk, st->rk);
        /* 5. back to logical ids */
        for (int p = 0; p < d->ppn; p++) {
            int s = n * d->ppn + st->pk[p] * d->ppg + st->rk[p];
            phy2log[s] = ids[st->slot_item[p]];
            phyrank[s] = st->slot_rank[p];
        }
        for (int i = 0; i < d->lpn; i++)
            logcnt[ids[i]] = st->cnt[i];
    }
}

/* Layer l into phy2log/logcnt rows l (log2phy's too unless NULL), in the
 * workspace st. */
static void plan_one_layer(reference_state *st, const plan_dims *d,
                           const pack_params *pp, const float *weight,
                           int32_t *phy2log, int32_t *log2phy,
                           int32_t *logcnt, int l)
{
    int deterministic = pp->candidates == 1 && pp->swap_rounds == 0;
    const float *w = weight + (size_t)l * d->E;
    int32_t *out_p2l = phy2log + (size_t)l * d->P;
    int32_t *out_cnt = logcnt + (size_t)l * d->E;
    layer_plan(st, d, l, w, NULL, st->ref_phy2log, st->ref_phyrank,
               st->ref_logcnt);
    const int32_t *p2l = st->ref_phy2log, *rank = st->ref_phyrank,
                  *cnt = st->ref_logcnt;
    if (!deterministic) {
        layer_plan(st, d, l, w, pp, st->cand_phy2log, st->cand_phyrank,
                   st->cand_logcnt);
        /* The guard: never worse than the deterministic plan. */
        float ref_max = plan_layer_max_gpu_load(d, w, p2l, cnt);
        float cand_max = plan_layer_max_gpu_load(d, w, st->cand_phy2log,
                                                 st->cand_logcnt);
        if (!(ref_max < cand_max)) {
            p2l = st->cand_phy2log;
            rank = st->cand_phyrank;
            cnt = st->cand_logcnt;
        }
    }
    memcpy(out_p2l, p2l, (size_t)d->P * sizeof(int32_t));
    memcpy(out_cnt, cnt, (size_t)d->E * sizeof(int32_t));
    if (log2phy)
        plan_fill_log2phy(d, p2l, rank,
                          log2phy + (size_t)l * d->E * d->maxrep);
}

/* Layer l of a run in worker's workspace: writes only layer l's rows. */
void reference_plan_layer(void *arg, int worker, int l)
{
    const reference_run *run = arg;
    plan_one_layer(run->pool->st[worker], run->d, run->pp, run->weight,
                   run->phy2log, run->log2phy, run->logcnt, l);
}

/* Worker t's workspace (eplbi_reserve_workers). */
static int reserve_worker(void *pool, int t, const plan_dims *d)
{
    return state_reserve(&((reference_pool *)pool)->st[t], d);
}

int reference_reserve(reference_pool *pool, const eplbi_threads *threads,
                      const plan_dims *d)
{
    return eplbi_reserve_workers(threads, d->L, reserve_worker, pool, d);
}

int reference_rebalance(reference_pool *pool, eplbi_threads *threads,
                        const plan_dims *d, const pack_params *pp,
                        const float *weight, int32_t *phy2log,
                        int32_t *log2phy, int32_t *logcnt)
{
    int workers = reference_reserve(pool, threads, d);
    if (workers < 0)
        return workers;
    reference_run run = {pool, d, pp, weight, phy2log, log2phy, logcnt};
    eplbi_parallel_items(&threads->pool, workers, d->L, reference_plan_layer,
                         &run);
    return EPLB_OK;
}

void reference_pool_free(reference_pool *pool)
{
    for (int t = 0; t < EPLB_MAX_HOST_THREADS; t++) {
        reference_state_free(pool->st[t]);
        pool->st[t] = NULL;
    }
}
