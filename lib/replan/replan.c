/* Re-planning from the current placement.
 *
 * A fresh plan reshuffles most experts even when the loads barely moved,
 * and every expert a GPU gains is a copy of its weights over the network.
 * Here each layer starts from the plan in service and repairs it: while a
 * GPU is above the target (the fresh plan's largest GPU load, relaxed by
 * the tolerance), the search applies the cheapest move that lowers the
 * total excess over the target:
 *   - swap two replicas between the heaviest GPU and another GPU of its
 *     node (up to 2 copies), or
 *   - give a replica slot of an expert with several replicas to another
 *     expert of the node (1 copy; replica counts follow the loads).
 * Experts that stay on a GPU keep their slot. The fresh plan relabelled
 * (its nodes and GPUs matched to the current ones to keep the most experts
 * in place) and the fresh plan itself are the fallbacks; per layer the
 * accepted plan with the fewest copies wins, so a layer is never less
 * balanced than the target and never costs more than the relabelled fresh
 * plan. Everything runs on the host in a fixed order with ties to the
 * lowest index: the same inputs give the same plan on every backend.
 * Layers are independent: host threads take them one at a time, each in
 * its own workspace (the longest on the last re-plan first, so that it
 * does not start last), and neither the number of threads nor the order
 * changes anything in the plan. */
#include "replan.h"

#include <stdlib.h>
#include <string.h>

/* 1 when every expert of the layer cur lives on one node (always under
 * the hierarchical policy without a mask; with one, where earlier
 * re-plans kept it so): the search may then keep nodes as its domains. */
static int node_bound(const plan_dims *d, const int32_t *cur,
                      replan_state *st)
{
    int *node = st->mark, ok = 1;
    for (int e = 0; e < d->E; e++)
        node[e] = -1;
    for (int n = 0; n < d->N && ok; n++)
        for (int s = n * d->ppn; s < (n + 1) * d->ppn && ok; s++) {
            int e = cur[s];
            if (e >= 0 && node[e] >= 0 && node[e] != n)
                ok = 0;
            else if (e >= 0)
                node[e] = n;
        }
    for (int e = 0; e < d->E; e++)
        node[e] = 0;
    return ok;
}

/* 1 when a GPU holds an expert more times in st->slot than once and
 * than in the plan in service (distinct_per_gpu: the re-plan adds no
 * such replica; the fresh plan keeps those it could not remove). */
static int adds_duplicates(const layer_job *j)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int *had = st->seen, added = 0;
    for (int g = 0; g < d->M && !added; g++) {
        if (!live(j, g))
            continue;
        int lo = g * d->ppg, hi = lo + d->ppg;
        for (int s = lo; s < hi; s++)
            if (j->cur[s] >= 0)
                had[j->cur[s]]++;
        for (int s = lo; s < hi && !added; s++) {
            int e = st->slot[s];
            added = e >= 0 && HELD(st, g, e) > 1 &&
                    (int)HELD(st, g, e) > had[e];
        }
        for (int s = lo; s < hi; s++)
            if (j->cur[s] >= 0)
                had[j->cur[s]] = 0;
    }
    return added;
}

/* A layer searched as one domain (the global policy, or a plan in
 * service whose experts are not bound to nodes) with at most
 * REPLAN_FEW_SLOTS slots per GPU, whose replica counts are further than
 * REPLAN_FAR_COUNTS a slot from the fresh plan's (the summed differences
 * over the experts, and at least REPLAN_FAR_MIN of them: a repair of
 * fewer count changes is quick whatever it ends in), starts its repair
 * from the fresh plan's counts. With two slots per GPU (DeepSeek's 288
 * slots on 144 GPUs) and a plan made for the loads in reverse expert
 * order (about 0.2 a slot apart), a repair from the counts in service
 * made each count change by a move of its own and got stuck in 56 of the
 * 58 layers after 80-150 moves, and then the restart from the fresh
 * counts ran anyway. With more slots per GPU (a node of 9 per GPU under
 * the hierarchical policy, 1024 experts in 1280 slots on 64 GPUs) those
 * repairs succeed and copy less than the restart: there it does not
 * apply. Under 1% noise the counts differ by about 0.007 a slot. */
#define REPLAN_FEW_SLOTS 4
#define REPLAN_FAR_COUNTS 0.1
#define REPLAN_FAR_MIN 32

static int counts_far(const layer_job *j, const int32_t *fcnt)
{
    const plan_dims *d = j->d;
    long diff = 0;
    for (int e = 0; e < d->E; e++)
        diff += labs((long)j->st->cnt[e] - fcnt[e]);
    return diff > REPLAN_FAR_COUNTS * d->P && diff >= REPLAN_FAR_MIN;
}

/* Two slots per GPU in one domain, where the repair from the plan in
 * service failed (or did not start: counts_far): the plan in service
 * re-paired (pairs.c) with the counts in service, the fresh plan's and
 * those the failed repair left, the one of fewest copies (ties to the
 * earlier) into st->slot and st->cnt; 0 when none is on target. Before
 * the restart from the fresh counts, which in these layers mostly ends in
 * the relabelled fresh plan after the longest searches of the re-plan
 * (DeepSeek-V3's 288 slots on 144 GPUs after 1% noise: 3 of 58 layers,
 * 0.7 ms each, about 90 copies each where a re-pairing copies 10-20). */
static int repair_pairs(const layer_job *j, const int32_t *fcnt)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int *ccnt = st->pr_cnt;
    for (int e = 0; e < d->E; e++)
        ccnt[e] = 0;
    for (int g = 0; g < d->M; g++)
        for (int s = 2 * g; live(j, g) && s < 2 * g + 2; s++)
            if (j->cur[s] >= 0)
                ccnt[j->cur[s]]++;
    const int *cnts[3] = {ccnt, fcnt, st->cnt};
    int best = -1;
    long best_copies = -1;
    for (int v = 0; v < 3; v++) {
        int cap = best_copies >= 0 ? (int)best_copies : d->M;
        long c = replan_repair_pairs(j, cnts[v], ccnt, cap, st->pr_out[v]);
        if (c < 0 || (best_copies >= 0 && c >= best_copies) ||
            plan_layer_loads(d, j->w, st->pr_out[v], cnts[v], NULL, st->load,
                             NULL) > j->target)
            continue;
        best = v;
        best_copies = c;
    }
    if (best < 0)
        return 0;
    for (int s = 0; s < d->P; s++)
        if (st->slot[s] != st->pr_out[best][s])
            set_slot(st, s, st->pr_out[best][s]);
    if (best != 2)
        for (int e = 0; e < d->E; e++)
            st->cnt[e] = cnts[best][e];
    return 1;
}

/* The repair from the plan in service of a layer that the re-pairing
 * can take over (two slots per GPU, one domain) stops after this much
 * work per slot and expert, and the re-pairing takes the layers it has
 * not repaired by then. On DeepSeek-V3's 288 slots on 144 GPUs the
 * re-pairing copies as little as the longer repairs it replaces (after
 * 1% noise 447 copies against 449 with a cap of 320 over four seeds,
 * after 5% 1803 against 1860 over three, the drifting series 12.48%
 * against 12.50%) in far fewer instructions (a re-plan after 1% noise
 * 32 M against 36 M, the drifting series 2.8x fewer); the repairs that
 * fail ran on to 250,000-780,000 units (460-1430 a slot and expert). */
#define REPLAN_PAIRS_SEARCH_WORK 32

/* The repair of GPUs g0..g1-1 from the plan in service; with `pairable`
 * (the re-pairing can take the layer over), within that cap. */
static int repair_capped(const layer_job *j, int g0, int g1, int pairable)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    long long saved = st->budget,
              cap = st->work + REPLAN_PAIRS_SEARCH_WORK * ((long long)d->P + d->E);
    if (pairable && cap < saved)
        st->budget = cap;
    int ok = replan_repair_node(j, g0, g1, 0);
    st->budget = saved;
    return ok;
}

/* Counts for the experts of node n (GPUs g0..g1-1) that fit its live
 * slots, the way the hierarchical plan replicates within a node: one
 * replica each, and each slot past that to the expert with the largest
 * load per replica (ties to the lower expert); into cnt [E] (node n's
 * entries). 0 when the node has no expert or fewer live slots than
 * experts, or the layer's budget is spent (doc/ALGORITHM.md section 9,
 * step 4). */
static int node_counts(const layer_job *j, int n, int g0, int g1,
                       int32_t *cnt)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int slots = 0, experts = 0;
    for (int g = g0; g < g1; g++)
        slots += live(j, g) * d->ppg;
    for (int e = 0; e < d->E; e++)
        if (st->node_of[e] == n) {
            cnt[e] = 1;
            experts++;
        }
    if (experts == 0 || experts > slots ||
        spend(st, (long long)(slots - experts + 1) * d->E))
        return 0;
    for (int k = experts; k < slots; k++) {
        int b = -1;
        for (int e = 0; e < d->E; e++)
            if (st->node_of[e] == n &&
                (b < 0 || (double)j->w[e] / cnt[e] > (double)j->w[b] / cnt[b]))
                b = e;
        cnt[b]++;
    }
    return 1;
}

/* What every layer's search shares (read only), and the workspaces of
 * the threads that run them. */
typedef struct replan_run {
    replan_pool *pool;
    const plan_dims *d;
    const float *weight;
    const int32_t *current, *fresh_phy2log, *fresh_logcnt;
    const uint8_t *mask;
    const replan_limits *lim;
    double deadline;
    int32_t *phy2log, *logcnt;
    const int *order;     /* the layers' order (NULL: 0..L-1) */
    long long *last_work; /* each layer's work goes here (NULL: not kept) */
} replan_run;

/* Layer l of the run, in worker's workspace; writes only layer l's rows
 * of the outputs. */
static void replan_layer_in(const replan_run *run, replan_state *st, int l)
{
    const plan_dims *d = run->d;
    const uint8_t *mask = run->mask;
    double tolerance = run->lim->tolerance;
    const float *w = run->weight + (size_t)l * d->E;
    const int32_t *cur = run->current + (size_t)l * d->P;
    const int32_t *fresh = run->fresh_phy2log + (size_t)l * d->P;
    const int32_t *fcnt = run->fresh_logcnt + (size_t)l * d->E;
    int32_t *out = run->phy2log + (size_t)l * d->P;
    int32_t *ocnt = run->logcnt + (size_t)l * d->E;
    double fresh_peak =
        plan_layer_loads(d, w, fresh, fcnt, NULL, st->load, NULL);
    layer_job j = {d, w, cur, mask, fresh_peak / (1.0 - tolerance), st,
                   d->N > 1 && node_bound(d, cur, st) ? d->gn : d->M,
                   run->lim->distinct};

    replan_index_current(st, cur);
    st->out_peak = -1.0;
    st->node_restart = 0;
    st->work = 0;
    st->budget = replan_work_budget(d);
    st->deadline = run->deadline;
    if (!st->late && st->deadline > 0 && eplbi_now_us() >= st->deadline)
        st->late = 1;
    if (st->late) {
        /* the fallback: the fresh plan relabelled where that saves
         * copies, else as it is (both on target) */
        int alt_ok = replan_make_alt(&j, fresh, fcnt) > 0 &&
                     replan_layer_copies(st, st->alt) <
                         replan_layer_copies(st, fresh);
        memcpy(out, alt_ok ? st->alt : fresh, (size_t)d->P * sizeof(int32_t));
        memcpy(ocnt, fcnt, (size_t)d->E * sizeof(int32_t));
        return;
    }

    /* The repair: the current plan, node by node. A node the search
     * cannot repair restarts from the fresh plan's replica counts (a
     * layer of one domain far from them starts there: counts_far); under
     * the hierarchical policy a node that still fails takes the
     * relabelled fresh plan's node when that holds the same experts. */
    int alt_state = 0; /* 0 not made, 1 on target, -1 off target */
    for (int e = 0; e < d->E; e++) {
        st->cnt[e] = 0;
        st->node_of[e] = -1;
    }
    for (int g = 0; g < d->M; g++) {
        int dom = g / j.dom_gpus, on = live(&j, g);
        for (int s = g * d->ppg; s < (g + 1) * d->ppg; s++) {
            int e = cur[s];
            st->slot[s] = -1;
            if (e >= 0 && st->node_of[e] < 0)
                st->node_of[e] = dom;
            if (e >= 0 && on) {
                set_slot_on(st, g, s, e);
                st->cnt[e]++;
            }
        }
    }
    if (mask && j.dom_gpus < d->M)
        replan_spill_orphans(&j);
    int ok = replan_place_orphans(&j);
    if (ok && j.dom_gpus < d->M)
        ok = replan_balance_nodes(&j);
    int domains = d->M / j.dom_gpus, gpd = j.dom_gpus;
    int from_current = !(ok && domains == 1 && d->ppg <= REPLAN_FEW_SLOTS &&
                         counts_far(&j, fcnt));
    /* (two slots per GPU, one domain: pairs.c) */
    int pairable = domains == 1 && d->ppg == 2;
    for (int n = 0; n < domains && ok; n++) {
        int g0 = n * gpd, g1 = g0 + gpd;
        if (from_current && repair_capped(&j, g0, g1, pairable))
            continue;
        if (pairable && !exhausted(st) && repair_pairs(&j, fcnt))
            continue;
        if (exhausted(st)) {
            ok = 0; /* the layer takes its fallback */
            break;
        }
        if (domains > 1 && alt_state == 0)
            alt_state = replan_make_alt(&j, fresh, fcnt);
        /* (with dead GPUs the fresh plan's counts need not fit a
         * node's live slots: no restart, no node taken whole) */
        int same = domains == 1 ||
                   (!mask && alt_state > 0 &&
                    replan_same_node_experts(st, st->slot, st->alt, n));
        if (same) {
            if (replan_restart_with_counts(&j, n, g0, g1, fcnt) &&
                replan_repair_node(&j, g0, g1, 1))
                continue;
        } else if (replan_repair_node(&j, g0, g1, 1)) {
            continue;
        }
        /* A node whose experts are not the fresh plan's node's (it kept
         * groups the fresh plan moved) restarts from counts made for its
         * own experts, before the layer takes its fallback: on
         * DeepSeek-V3's drifting series a layer with 4-5 GPUs 2-3% above
         * the target, no group having to move, took the relabelled fresh
         * plan's 220-235 copies (one of them is repaired this way). The
         * repair there needs no lookahead (the same plans in the
         * benchmark without it, and failing ones end sooner), and the
         * search with gross prices that follows (replan_layer) does not
         * try it: that search is the one such a layer is compared with.
         * (The min_gain rule's counts are free here: keep_cnt as
         * scratch.) */
        if (!same && !mask && !st->plain_price && !exhausted(st) &&
            node_counts(&j, n, g0, g1, st->keep_cnt) &&
            replan_restart_with_counts(&j, n, g0, g1, st->keep_cnt) &&
            replan_repair_node(&j, g0, g1, 0)) {
            st->node_restart = 1;
            continue;
        }
        if (domains == 1 || !same || exhausted(st)) {
            ok = 0;
            break;
        }
        for (int s = n * d->ppn; s < (n + 1) * d->ppn; s++) {
            int e = st->alt[s];
            if (e >= 0 && st->slot[s] != e)
                set_slot(st, s, e);
            if (e >= 0)
                st->cnt[e] = fcnt[e];
        }
    }
    long copies = -1;
    double peak = -1.0;
    if (ok) {
        for (int g = 0; g < d->M; g++)
            if (live(&j, g) && memcmp(st->slot + (size_t)g * d->ppg,
                                      cur + (size_t)g * d->ppg,
                                      (size_t)d->ppg * sizeof(int32_t)))
                replan_keep_slots(st, cur, g, st->slot);
        if (!(j.distinct && adds_duplicates(&j)) &&
            (peak = plan_layer_loads(d, w, st->slot, st->cnt, NULL, st->load,
                                     NULL)) <= j.target)
            copies = replan_layer_copies(st, st->slot);
    }

    /* The fallbacks, made when the repair failed or moved more than
     * one GPU's worth of experts: the fresh plan relabelled, and the
     * fresh plan as it is (on target by definition). */
    if (copies >= 0 &&
        (copies <= d->ppg ||
         (alt_state == 0 && copies <= replan_copies_floor(st, fresh)))) {
        /* (no renaming of the fresh plan copies less: the fallbacks
         * would keep the repaired layer) */
        memcpy(out, st->slot, (size_t)d->P * sizeof(int32_t));
        memcpy(ocnt, st->cnt, (size_t)d->E * sizeof(int32_t));
        st->out_peak = peak;
        return;
    }
    if (alt_state == 0)
        alt_state = replan_make_alt(&j, fresh, fcnt);
    long fresh_copies = replan_layer_copies(st, fresh);
    long alt_copies = alt_state > 0 ? replan_layer_copies(st, st->alt) : -1;
    if (copies >= 0 && (alt_copies < 0 || copies <= alt_copies) &&
        copies <= fresh_copies) {
        memcpy(out, st->slot, (size_t)d->P * sizeof(int32_t));
        memcpy(ocnt, st->cnt, (size_t)d->E * sizeof(int32_t));
        st->out_peak = peak;
    } else if (alt_copies >= 0 && alt_copies < fresh_copies) {
        memcpy(out, st->alt, (size_t)d->P * sizeof(int32_t));
        memcpy(ocnt, fcnt, (size_t)d->E * sizeof(int32_t));
    } else {
        memcpy(out, fresh, (size_t)d->P * sizeof(int32_t));
        memcpy(ocnt, fcnt, (size_t)d->E * sizeof(int32_t));
    }
}

/* min_gain (replan_limits): layer l's re-plan, or the plan in service
 * back when the re-plan lowers the largest load too little. */
static void keep_small_gain(const replan_run *run, replan_state *st, int l)
{
    const plan_dims *d = run->d;
    const float *w = run->weight + (size_t)l * d->E;
    const int32_t *cur = run->current + (size_t)l * d->P;
    int32_t *out = run->phy2log + (size_t)l * d->P;
    int32_t *ocnt = run->logcnt + (size_t)l * d->E, *cnt = st->keep_cnt;
    if (!plan_layer_keepable(d, cur, run->lim->distinct, cnt))
        return;
    /* (the re-plan's largest load as the layer's search summed it, when
     * the output is the repaired layer: the same sums) */
    double now = plan_layer_loads(d, w, cur, cnt, NULL, st->load, NULL);
    double after = st->out_peak >= 0.0
                       ? st->out_peak
                       : plan_layer_loads(d, w, out, ocnt, NULL, st->load,
                                          NULL);
    if (now - after >= run->lim->min_gain * now)
        return;
    memcpy(out, cur, (size_t)d->P * sizeof(int32_t));
    memcpy(ocnt, cnt, (size_t)d->E * sizeof(int32_t));
}

static void replan_layer(void *arg, int worker, int item)
{
    const replan_run *run = arg;
    replan_state *st = run->pool->st[worker];
    int l = run->order ? run->order[item] : item;
    if (run->lim->fresh_layer)
        run->lim->fresh_layer(run->lim->fresh_arg, worker, l);
    const plan_dims *d = run->d;
    const int32_t *cur = run->current + (size_t)l * d->P;
    int32_t *out = run->phy2log + (size_t)l * d->P;
    int32_t *ocnt = run->logcnt + (size_t)l * d->E;
    st->plain_price = 0;
    replan_layer_in(run, st, l);
    long long work = st->work;
    /* A layer that ends in a fallback (the relabelled or the fresh plan)
     * is searched again with moves priced as before refunds: pricing a
     * move that takes back an earlier copy as free sends some repairs
     * down a path of free moves that ends with no move (DeepSeek-V3 in
     * the candidate mode, a burst of hot experts: two layers of 85-90
     * copies became fallbacks of 224-240). So is a layer that a node's
     * restart from its own counts saved from the fallback (the search
     * it replaced). The cheaper of the two. */
    if ((st->out_peak < 0.0 || st->node_restart) && !st->late) {
        long first = replan_layer_copies(st, out);
        double first_peak = st->out_peak; /* (what min_gain reads) */
        memcpy(st->try_out, out, (size_t)d->P * sizeof(int32_t));
        memcpy(st->try_cnt, ocnt, (size_t)d->E * sizeof(int32_t));
        replan_unindex_layer(st, cur);
        st->plain_price = 1;
        replan_layer_in(run, st, l);
        st->plain_price = 0;
        work += st->work;
        if (!(replan_layer_copies(st, out) < first)) {
            memcpy(out, st->try_out, (size_t)d->P * sizeof(int32_t));
            memcpy(ocnt, st->try_cnt, (size_t)d->E * sizeof(int32_t));
            st->out_peak = first_peak;
        }
    }
    if (run->last_work)
        run->last_work[l] = work;
    replan_unindex_layer(st, cur);
    if (run->lim->min_gain > 0)
        keep_small_gain(run, st, l);
}

/* The order the layers go out in: by the last re-plan's work, most
 * first (ties to the lower layer), once there was one of as many layers;
 * else in order. Without memory for it, in order (order NULL). */
static int order_layers(replan_pool *pool, int L)
{
    if (pool->layers != L) {
        free(pool->last_work);
        free(pool->order);
        pool->last_work = calloc((size_t)L, sizeof(long long));
        pool->order = malloc((size_t)L * sizeof(int));
        pool->layers = L;
        if (!pool->last_work || !pool->order) {
            free(pool->last_work);
            free(pool->order);
            pool->last_work = NULL;
            pool->order = NULL;
            pool->layers = 0;
            return 0;
        }
    }
    /* insertion sort: stable, and L is small beside the search */
    for (int i = 0; i < L; i++) {
        int at = i;
        while (at > 0 &&
               pool->last_work[pool->order[at - 1]] < pool->last_work[i]) {
            pool->order[at] = pool->order[at - 1];
            at--;
        }
        pool->order[at] = i;
    }
    return 1;
}

/* Worker t's workspace (eplbi_reserve_workers). */
static int reserve_worker(void *pool, int t, const plan_dims *d)
{
    return replan_state_reserve(&((replan_pool *)pool)->st[t], d);
}

int replan_from_current(replan_pool *pool, const plan_dims *d,
                        const float *weight, const int32_t *current,
                        const uint8_t *mask, const int32_t *fresh_phy2log,
                        const int32_t *fresh_logcnt, const replan_limits *lim,
                        int32_t *phy2log, int32_t *logcnt)
{
    int workers = eplbi_reserve_workers(lim->threads, d->L, reserve_worker,
                                        pool, d);
    if (workers < 0)
        return workers;
    if (lim->fresh_layer && workers > lim->fresh_workers)
        workers = lim->fresh_workers;
    replan_run run = {pool, d, weight, current, fresh_phy2log, fresh_logcnt,
                      mask, lim,
                      lim->deadline_us > 0 ? eplbi_now_us() + lim->deadline_us
                                           : 0.0,
                      phy2log, logcnt, NULL, NULL};
    if (workers > 1 && order_layers(pool, d->L)) {
        run.order = pool->order;
        run.last_work = pool->last_work;
    }
    /* the deadline passed: fallbacks from here on, thread by thread */
    for (int t = 0; t < workers; t++)
        pool->st[t]->late = 0;
    eplbi_parallel_items(&lim->threads->pool, workers, d->L, replan_layer,
                         &run);
    return EPLB_OK;
}


void replan_pool_free(replan_pool *pool)
{
    free(pool->last_work);
    free(pool->order);
    pool->last_work = NULL;
    pool->order = NULL;
    pool->layers = 0;
    for (int t = 0; t < EPLB_MAX_HOST_THREADS; t++) {
        replan_state_free(pool->st[t]);
        pool->st[t] = NULL;
    }
}
