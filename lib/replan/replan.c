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
 * lowest index: the same inputs give the same plan on every backend. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Moves per domain before the search gives up on it: beyond half its
 * slots a fresh plan costs about as much. */
#define REPLAN_MAX_MOVES(j) ((j)->dom_gpus * (j)->d->ppg / 2 + 4)

struct replan_state {
    plan_dims dims;
    int32_t *slot;     /* [P] the layer being repaired */
    int32_t *alt;      /* [P] the relabelled fresh layer */
    int *cnt;          /* [E] live replicas per expert */
    int *alt_cnt;      /* [E] */
    int *node_of;      /* [E] node an expert lives on */
    int *order;        /* [max(E, M)] */
    int *match;        /* [M] current GPU -> fresh GPU */
    int *taken;        /* [M] */
    int *overlap;      /* [max(N*N, gn*gn)] */
    int *mark;         /* [E] stamps */
    double *load;      /* [M] */
    double *gdelta;    /* [M] load change of a move being tried, else 0 */
    int *touched;      /* [M] GPUs with a nonzero gdelta */
    int *head, *next;  /* [E], [P]: each expert's slots */
    struct move_list *collect; /* non-NULL: gather first moves instead */
    int32_t *snap_slot; /* [P] */
    int *snap_cnt;      /* [E] */
    uint32_t *snap_held; /* [M][E] */
    uint32_t *held;    /* [M][E] replicas of each expert on each GPU */
    uint8_t *was;      /* [M][E] 1 where the plan in service had it */
    int *cur_head, *cur_next; /* [E], [P]: each expert's current slots */
    int *cur_prev_gpu; /* [P] GPU of the previous slot in that list */
    uint64_t *pairs;   /* [max(N*N, gn*gn)] for the matching */
    uint8_t *tflag;    /* [M] 1 while a GPU is in `touched` */
    int32_t *kout;     /* [ppg] keep_slots' output */
    int *kavail, *kused; /* [E] keep_slots' counts, zero between calls */
    int *seen;         /* [E] zero between uses */
    int *node_map;     /* [N] fresh node -> current node */
    int *usable;       /* [gn] */
    /* The search's work on the layer in hand (move evaluations, and passes
     * over the layer counted by their length) against its budget; past
     * the budget or the deadline the search gives up and the layer takes
     * its fallback. */
    long long work, budget;
    double deadline;   /* clock time in us after which the search stops; 0 none */
    int late;          /* the deadline passed */
};

/* Work units a layer's search may spend per slot and expert (enough for
 * the searches of the benchmark's shapes to end by themselves), within a
 * cap for very large layers that still leaves room for REPLAN_WORK_MIN
 * passes over the layer: the search is linear in the layer's size. */
#define REPLAN_WORK_PER_ITEM 8000
#define REPLAN_WORK_CAP (1LL << 29)
#define REPLAN_WORK_MIN 64

static long long work_budget(const plan_dims *d)
{
    long long items = (long long)d->P + d->E;
    long long b = REPLAN_WORK_PER_ITEM * items;
    if (b > REPLAN_WORK_CAP)
        b = REPLAN_WORK_CAP;
    if (b < REPLAN_WORK_MIN * items)
        b = REPLAN_WORK_MIN * items;
    return b;
}

/* Adds n units of work; true when the layer's budget is spent. */
static int spend(replan_state *st, long long n)
{
    st->work += n;
    return st->work > st->budget;
}

static int exhausted(const replan_state *st)
{
    return st->late || st->work > st->budget;
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
    free(st->touched);
    free(st->head);
    free(st->next);
    free(st->snap_slot);
    free(st->snap_cnt);
    free(st->snap_held);
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
    free(st->node_map);
    free(st->usable);
    free(st);
}

static int state_reserve(replan_state **stp, const plan_dims *d)
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
    st->touched = malloc(M * sizeof(int));
    st->head = malloc(E * sizeof(int));
    st->next = malloc(P * sizeof(int));
    st->snap_slot = malloc(P * sizeof(int32_t));
    st->snap_cnt = malloc(E * sizeof(int));
    st->snap_held = malloc(M * E * sizeof(uint32_t));
    st->held = malloc(M * E * sizeof(uint32_t));
    st->was = malloc(M * E);
    st->cur_head = malloc(E * sizeof(int));
    st->cur_next = malloc(P * sizeof(int));
    st->cur_prev_gpu = malloc(P * sizeof(int));
    st->pairs = malloc(sq * sizeof(uint64_t));
    st->tflag = calloc(M, 1);
    st->kout = malloc((size_t)d->ppg * sizeof(int32_t));
    st->kavail = calloc(E, sizeof(int));
    st->kused = calloc(E, sizeof(int));
    st->seen = calloc(E, sizeof(int));
    st->node_map = malloc((size_t)d->N * sizeof(int));
    st->usable = malloc((size_t)d->gn * sizeof(int));
    if (!st->tflag || !st->kout || !st->kavail || !st->kused || !st->seen ||
        !st->node_map || !st->usable || !st->cur_head || !st->cur_next || !st->cur_prev_gpu || !st->pairs ||
        !st->held || !st->was || !st->gdelta || !st->snap_slot || !st->snap_cnt ||
        !st->snap_held || !st->touched || !st->head || !st->next ||
        !st->slot || !st->alt || !st->cnt || !st->alt_cnt || !st->node_of ||
        !st->order || !st->match || !st->taken || !st->overlap ||
        !st->mark || !st->load) {
        replan_state_free(st);
        *stp = NULL;
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    return EPLB_OK;
}

int replan_check_current(const plan_dims *d, const int32_t *current,
                         const uint8_t *mask)
{
    int *seen = malloc((size_t)(d->E + d->G) * sizeof(int));
    if (!seen)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    int *group_node = seen + d->E;
    int rc = EPLB_OK;
    for (int l = 0; l < d->L && rc == EPLB_OK; l++) {
        const int32_t *p2l = current + (size_t)l * d->P;
        for (int e = 0; e < d->E; e++)
            seen[e] = 0;
        for (int g = 0; g < d->G; g++)
            group_node[g] = -1;
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
            int node = s / d->ppn, g = e / d->gs;
            if (d->N > 1 && !mask) {
                if (group_node[g] >= 0 && group_node[g] != node)
                    rc = eplbi_fail(
                        EPLB_ERR_BAD_PLAN,
                        "current_phy2log layer %d puts group %d (experts "
                        "%d..%d) on nodes %d and %d: the hierarchical policy "
                        "keeps a group on one node; pass a plan made with "
                        "this policy, or use the global policy",
                        l, g, g * d->gs, (g + 1) * d->gs - 1, group_node[g],
                        node);
                group_node[g] = node;
            }
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

/* ---- one layer ---------------------------------------------------------- */

typedef struct layer_job {
    const plan_dims *d;
    const float *w;
    const int32_t *cur; /* [P] the plan in service */
    const uint8_t *mask;
    double target;      /* largest GPU load allowed */
    replan_state *st;
    /* GPUs of one search domain: a node under the hierarchical policy
     * (experts stay on their node), all GPUs under the global policy or
     * when GPUs died (a node that lost a GPU may have to hand experts to
     * another). */
    int dom_gpus;
} layer_job;

/* First and last+1 GPU of the domain of GPU g. */
#define DOM_LO(j, g) ((g) / (j)->dom_gpus * (j)->dom_gpus)
#define DOM_HI(j, g) (DOM_LO(j, g) + (j)->dom_gpus)
#define DOM_OF_SLOT(j, s) ((s) / ((j)->dom_gpus * (j)->d->ppg))

/* Replicas of expert e on GPU g in the layer being repaired, and whether
 * the plan in service had e on g. */
#define HELD(st, g, e) ((st)->held[(size_t)(g) * (st)->dims.E + (e)])
#define WAS(st, g, e) ((st)->was[(size_t)(g) * (st)->dims.E + (e)])

/* Writes slot s, keeping the replica counts per GPU. */
static void set_slot(replan_state *st, int s, int e)
{
    int g = s / st->dims.ppg, old = st->slot[s];
    if (old >= 0)
        HELD(st, g, old)--;
    st->slot[s] = e;
    if (e >= 0)
        HELD(st, g, e)++;
}

static int live(const layer_job *j, int g)
{
    return !j->mask || j->mask[g];
}

/* GPU loads as the metrics sum them: slot order, in double. */
static double layer_loads(const plan_dims *d, const float *w,
                          const int32_t *slots, const int *cnt, double *load)
{
    double peak = 0.0;
    for (int g = 0; g < d->M; g++) {
        double s = 0.0;
        for (int r = 0; r < d->ppg; r++) {
            int e = slots[g * d->ppg + r];
            if (e >= 0)
                s += (double)w[e] / cnt[e];
        }
        load[g] = s;
        if (s > peak)
            peak = s;
    }
    return peak;
}

static double excess(double load, double target)
{
    return load > target ? load - target : 0.0;
}

/* Distinct experts a GPU holds in `next` that it did not hold in the plan
 * in service. */
static long layer_copies(replan_state *st, const int32_t *next)
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
static void keep_slots(replan_state *st, const int32_t *cur, int g,
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

/* Experts a GPU gains by a move, counted against the plan in service. */
static int gain(const layer_job *j, int g, int e)
{
    return !WAS(j->st, g, e);
}

/* A move and what it does to the total excess over the target. */
typedef struct move {
    int kind;          /* 0 none, 1 swap, 2 reassign a slot, 3 cycle,
                          4 two swaps, 5 relocate (s: x on h, t: slot x
                          takes, u: expert that gets s) */
    int s, t, u, v;    /* slots (swaps, cycle), or slot s given to expert t */
    int cost;          /* copies */
    double delta;      /* change of the summed excess (< 0 is progress) */
    double peak;       /* largest new load among the GPUs it touches */
    int clean;         /* clears the heaviest GPU, adds excess nowhere */
} move;

/* Better: clean fixes first, then cheaper, then more excess removed per
 * copy, then lower peak; equal moves keep the first found. */
static int better(const move *a, const move *b)
{
    if (b->kind == 0)
        return 1;
    if (a->clean != b->clean)
        return a->clean;
    if (a->clean) {
        if (a->cost != b->cost)
            return a->cost < b->cost;
        return a->peak < b->peak;
    }
    double ra = -a->delta / (a->cost + 0.5), rb = -b->delta / (b->cost + 0.5);
    if (ra != rb)
        return ra > rb;
    return a->peak < b->peak;
}

/* First moves for a two-move lookahead: they clear the heaviest GPU
 * whatever they do elsewhere; the ones that add the least excess. */
#define LOOKAHEAD 256
typedef struct move_list {
    int n;
    move m[LOOKAHEAD];
} move_list;

static void collect(replan_state *st, const move *m)
{
    move_list *c = st->collect;
    int at = c->n < LOOKAHEAD ? c->n++ : LOOKAHEAD;
    while (at > 0 && c->m[at - 1].delta > m->delta) {
        if (at < LOOKAHEAD)
            c->m[at] = c->m[at - 1];
        at--;
    }
    if (at < LOOKAHEAD)
        c->m[at] = *m;
}

static void consider_swaps(const layer_job *j, int h, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    double T = j->target, Lh = st->load[h], exh = excess(Lh, T);
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h);
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        for (int b = g0; b < g1; b++) {
            if (b == h || !live(j, b) || HELD(st, b, x))
                continue;
            double Lb = st->load[b], exb = excess(Lb, T);
            if (spend(st, ppg))
                return;
            for (int q = 0; q < ppg; q++) {
                int sj = b * ppg + q, y = st->slot[sj];
                double ry = (double)j->w[y] / st->cnt[y];
                if (!(rx > ry) || HELD(st, h, y))
                    continue;
                double nh = Lh - rx + ry, nb = Lb + rx - ry;
                double delta = excess(nh, T) + excess(nb, T) - exh - exb;
                move m = {1, si, sj, 0, 0, gain(j, b, x) + gain(j, h, y), delta,
                          nh > nb ? nh : nb, nh <= T && nb <= T};
                if (st->collect) {
                    if (nh <= T)
                        collect(st, &m);
                    continue;
                }
                if (!(delta < 0.0))
                    continue;
                if (better(&m, best))
                    *best = m;
            }
        }
    }
}

/* Slot si (expert x, several replicas) given to expert y: x's other
 * replicas and y's replicas change their load per replica too. */
static void try_reassign(const layer_job *j, int h, int si, int y,
                         move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg, x = st->slot[si], gs = si / ppg;
    double T = j->target;
    double rx = (double)j->w[x] / st->cnt[x];
    double dx = (double)j->w[x] / (st->cnt[x] - 1) - rx;
    double ry1 = (double)j->w[y] / (st->cnt[y] + 1);
    double dy = ry1 - (double)j->w[y] / st->cnt[y];
    int n = 0;
    int *touched = st->touched;
    uint8_t *tf = st->tflag;
    double *gd = st->gdelta;
    if (spend(st, 1 + st->cnt[x] + st->cnt[y]))
        return;
    /* Each GPU enters the list once (its flag), whatever the sums. */
#define TOUCH(gpu, amount)                 \
    do {                                   \
        int g_ = (gpu);                    \
        if (!tf[g_]) {                     \
            tf[g_] = 1;                    \
            touched[n++] = g_;             \
        }                                  \
        gd[g_] += (amount);                \
    } while (0)
    for (int t = st->head[x]; t >= 0; t = st->next[t])
        if (t != si)
            TOUCH(t / ppg, dx);
    for (int t = st->head[y]; t >= 0; t = st->next[t])
        TOUCH(t / ppg, dy);
    TOUCH(gs, ry1 - rx);
    double delta = 0.0, peak = 0.0;
    int clean = 1, h_clear = 0;
    for (int i = 0; i < n; i++) {
        int g = touched[i];
        double L = st->load[g], v = L + gd[g];
        gd[g] = 0.0;
        tf[g] = 0;
        delta += excess(v, T) - excess(L, T);
        if (v > peak)
            peak = v;
        if (v > T && L <= T)
            clean = 0;
        if (g == h)
            h_clear = v <= T;
    }
    move m = {2, si, y, 0, 0, gain(j, gs, y), delta, peak, clean && h_clear};
    if (st->collect) {
        if (h_clear)
            collect(st, &m);
        return;
    }
    if (!(delta < 0.0))
        return;
    if (better(&m, best))
        *best = m;
}

/* Replica counts follow the loads: a slot on the heaviest GPU goes to
 * another expert of the node, or a slot elsewhere goes to an expert the
 * heaviest GPU holds. */
static void consider_reassign(const layer_job *j, int h, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h);
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        /* This slot to another expert, lighter per replica than x is. */
        if (spend(st, d->E + g1 - g0))
            return;
        if (st->cnt[x] >= 2)
            for (int y = 0; y < d->E; y++)
                if (y != x && st->node_of[y] == st->node_of[x] &&
                    st->cnt[y] > 0 && !HELD(st, h, y) &&
                    (double)j->w[y] / (st->cnt[y] + 1) < rx)
                    try_reassign(j, h, si, y, best);
        /* Another slot of the node to this expert, where the GPU that
         * receives it stays lighter than h is now. */
        double rx1 = (double)j->w[x] / (st->cnt[x] + 1);
        /* Another slot of the node to this expert. */
        for (int g = g0; g < g1; g++) {
            if (g == h || !live(j, g) || HELD(st, g, x))
                continue;
            if (spend(st, ppg))
                return;
            for (int r = 0; r < ppg; r++) {
                int s = g * ppg + r, z = st->slot[s];
                if (st->cnt[z] >= 2 &&
                    st->load[g] - (double)j->w[z] / st->cnt[z] + rx1 <
                        st->load[h])
                    try_reassign(j, h, s, x, best);
            }
        }
    }
}

/* Three GPUs pass one replica each round a cycle: x from the heaviest GPU
 * h to b, y from b to c, z from c to h. Tried only when no single move
 * helps, as it costs up to three copies. */
static void consider_cycles(const layer_job *j, int h, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    double T = j->target, Lh = st->load[h];
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h);
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        for (int b = g0; b < g1; b++) {
            if (b == h || !live(j, b) || HELD(st, b, x))
                continue;
            double Lb = st->load[b];
            if (spend(st, ppg))
                return;
            for (int q = 0; q < ppg; q++) {
                int sj = b * ppg + q, y = st->slot[sj];
                double ry = (double)j->w[y] / st->cnt[y];
                double nb = Lb + rx - ry;
                if (y == x || nb > T)
                    continue;
                for (int c = g0; c < g1; c++) {
                    if (c == h || c == b || !live(j, c) ||
                        HELD(st, c, y))
                        continue;
                    double Lc = st->load[c];
                    if (spend(st, ppg))
                        return;
                    for (int u = 0; u < ppg; u++) {
                        int sk = c * ppg + u, z = st->slot[sk];
                        double rz = (double)j->w[z] / st->cnt[z];
                        double nh = Lh - rx + rz, nc = Lc + ry - rz;
                        if (z == x || z == y || !(nh < Lh) || nc > T ||
                            HELD(st, h, z))
                            continue;
                        double delta = excess(nh, T) + excess(nb, T) +
                                       excess(nc, T) - excess(Lh, T) -
                                       excess(Lb, T) - excess(Lc, T);
                        if (!(delta < 0.0))
                            continue;
                        double pk = nh > nb ? nh : nb;
                        move m = {3, si, sj, sk, 0,
                                  gain(j, b, x) + gain(j, c, y) +
                                      gain(j, h, z),
                                  delta, pk > nc ? pk : nc, nh <= T};
                        if (better(&m, best))
                            *best = m;
                    }
                }
            }
        }
    }
}

static void swap_slots(replan_state *st, int a, int b)
{
    int32_t x = st->slot[a];
    set_slot(st, a, st->slot[b]);
    set_slot(st, b, x);
}

/* Two swaps: the first clears the heaviest GPU h but overloads GPU b,
 * the second clears b. Tried only when no single move helps. */
#define SWAP_PAIR_BEAM 64

static void consider_swap_pairs(const layer_job *j, int h, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    double T = j->target, Lh = st->load[h];
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h);
    /* The first swaps that overload their partner least: a beam, so the
     * search for a second swap runs a bounded number of times. */
    struct { int si, sj; double over; } beam[SWAP_PAIR_BEAM];
    int nbeam = 0;
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        for (int b = g0; b < g1; b++) {
            if (b == h || !live(j, b) || HELD(st, b, x))
                continue;
            double Lb = st->load[b];
            if (spend(st, ppg))
                return;
            for (int q = 0; q < ppg; q++) {
                int sj = b * ppg + q, y = st->slot[sj];
                double ry = (double)j->w[y] / st->cnt[y];
                double over = Lb + rx - ry - T;
                if (!(rx > ry) || HELD(st, h, y) || Lh - rx + ry > T ||
                    over <= 0.0)
                    continue;
                int at = nbeam < SWAP_PAIR_BEAM ? nbeam++ : SWAP_PAIR_BEAM;
                while (at > 0 && beam[at - 1].over > over) {
                    if (at < SWAP_PAIR_BEAM)
                        beam[at] = beam[at - 1];
                    at--;
                }
                if (at < SWAP_PAIR_BEAM) {
                    beam[at].si = si;
                    beam[at].sj = sj;
                    beam[at].over = over;
                }
            }
        }
    }
    for (int k = 0; k < nbeam && !exhausted(st); k++) {
        int si = beam[k].si, sj = beam[k].sj, b = sj / ppg;
        int x = st->slot[si], y = st->slot[sj];
        int c1 = gain(j, b, x) + gain(j, h, y);
        if (best->kind && best->clean && best->cost <= c1)
            continue;
        double rx = (double)j->w[x] / st->cnt[x];
        double ry = (double)j->w[y] / st->cnt[y], Lb = st->load[b];
        swap_slots(st, si, sj);
        st->load[h] = Lh - rx + ry;
        st->load[b] = Lb + rx - ry;
        move m2 = {0};
        consider_swaps(j, b, &m2);
        swap_slots(st, si, sj);
        st->load[h] = Lh;
        st->load[b] = Lb;
        if (m2.kind == 0 || !m2.clean)
            continue;
        move m = {4, si, sj, m2.s, m2.t, c1 + m2.cost,
                  -excess(Lh, T) - excess(Lb, T), m2.peak, 1};
        if (better(&m, best))
            *best = m;
    }
}

/* Replica counts follow the loads, in three parts: expert x leaves the
 * heaviest GPU h for slot t of GPU g (whose expert z has several
 * replicas), and x's slot on h becomes a new replica of expert y. Tried
 * only when no single move helps. */
static void consider_relocate(const layer_job *j, int h, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    double T = j->target;
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h);
    double *gd = st->gdelta;
    int *touched = st->touched;
    uint8_t *tf = st->tflag;
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        for (int t = g0 * ppg; t < g1 * ppg; t++) {
            int g = t / ppg, z = st->slot[t];
            if (spend(st, 1))
                return;
            if (g == h || !live(j, g) || z == x || st->cnt[z] < 2 ||
                HELD(st, g, x))
                continue;
            double rz = (double)j->w[z] / st->cnt[z];
            double dz = (double)j->w[z] / (st->cnt[z] - 1) - rz;
            if (spend(st, d->E))
                return;
            for (int y = 0; y < d->E; y++) {
                if (y == x || y == z || st->cnt[y] == 0 ||
                    st->node_of[y] != st->node_of[x] || HELD(st, h, y))
                    continue;
                double ry1 = (double)j->w[y] / (st->cnt[y] + 1);
                if (!(ry1 < rx))
                    continue;
                double dy = ry1 - (double)j->w[y] / st->cnt[y];
                int n = 0;
                if (spend(st, 2 + st->cnt[z] + st->cnt[y]))
                    return;
                TOUCH(h, ry1 - rx);
                TOUCH(g, rx - rz);
                for (int q = st->head[z]; q >= 0; q = st->next[q])
                    if (q != t)
                        TOUCH(q / ppg, dz);
                for (int q = st->head[y]; q >= 0; q = st->next[q])
                    TOUCH(q / ppg, dy);
#undef TOUCH
                double delta = 0.0, peak = 0.0;
                int clean = 1;
                for (int k = 0; k < n; k++) {
                    int u = touched[k];
                    double L = st->load[u], v = L + gd[u];
                    gd[u] = 0.0;
                    tf[u] = 0;
                    delta += excess(v, T) - excess(L, T);
                    if (v > peak)
                        peak = v;
                    if (v > T)
                        clean = 0;
                }
                if (!(delta < 0.0))
                    continue;
                move m = {5, si, t, y, 0, gain(j, g, x) + gain(j, h, y),
                          delta, peak, clean};
                if (better(&m, best))
                    *best = m;
            }
        }
    }
}

/* Each expert's live slots as linked lists, for the moves that change
 * replica counts. */
static void index_replicas(const plan_dims *d, replan_state *st)
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

static int heaviest(const layer_job *j, int g0, int g1)
{
    int h = -1;
    for (int g = g0; g < g1; g++)
        if (live(j, g) && (h < 0 || j->st->load[g] > j->st->load[h]))
            h = g;
    return h;
}

/* Gives the empty live slots and the experts left with no slot (their
 * GPUs died) a place. 0 when some expert cannot be placed. */
static int place_orphans(const layer_job *j)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    for (;;) {
        if (spend(st, 3LL * d->P + d->E))
            return 0;
        /* The heaviest expert with no slot, else the first empty slot. */
        int y = -1;
        for (int e = 0; e < d->E; e++)
            if (st->cnt[e] == 0 && (y < 0 || j->w[e] > j->w[y]))
                y = e;
        int empty = -1;
        for (int s = 0; s < d->P && empty < 0; s++)
            if (st->slot[s] < 0 && live(j, s / ppg) &&
                (y < 0 || DOM_OF_SLOT(j, s) == st->node_of[y]))
                empty = s;
        if (y < 0 && empty < 0)
            return 1;
        layer_loads(d, j->w, st->slot, st->cnt, st->load);
        if (empty >= 0 && y < 0) {
            /* A slot back in service: the node's expert with the most
             * load per replica gets another replica. */
            int node = DOM_OF_SLOT(j, empty);
            for (int e = 0; e < d->E; e++)
                if (st->node_of[e] == node &&
                    !HELD(st, empty / ppg, e) &&
                    (y < 0 || (double)j->w[e] / st->cnt[e] >
                                  (double)j->w[y] / st->cnt[y]))
                    y = e;
            if (y < 0)
                return 0;
        }
        if (empty < 0) {
            /* Take a slot from an expert of the node with several
             * replicas, on the GPU that stays lightest. */
            double bestv = 0.0;
            for (int s = 0; s < d->P; s++) {
                int x = st->slot[s], g = s / ppg;
                if (x < 0 || !live(j, g) || st->cnt[x] < 2 ||
                    DOM_OF_SLOT(j, s) != st->node_of[y] ||
                    HELD(st, g, y))
                    continue;
                double v = st->load[g] - (double)j->w[x] / st->cnt[x] +
                           j->w[y];
                if (empty < 0 || v < bestv) {
                    empty = s;
                    bestv = v;
                }
            }
            if (empty < 0)
                return 0;
            st->cnt[st->slot[empty]]--;
        }
        set_slot(st, empty, y);
        st->cnt[y]++;
    }
}

static void apply_move(replan_state *st, const move *m)
{
    if (m->kind == 1 || m->kind == 4) {
        swap_slots(st, m->s, m->t);
        if (m->kind == 4)
            swap_slots(st, m->u, m->v);
    } else if (m->kind == 5) {
        int x = st->slot[m->s], z = st->slot[m->t];
        set_slot(st, m->t, x);
        set_slot(st, m->s, m->u);
        st->cnt[z]--;
        st->cnt[m->u]++;
    } else if (m->kind == 2) {
        st->cnt[st->slot[m->s]]--;
        set_slot(st, m->s, m->t);
        st->cnt[m->t]++;
    } else {
        int32_t x = st->slot[m->s], y = st->slot[m->t];
        set_slot(st, m->s, st->slot[m->u]);
        set_slot(st, m->t, x);
        set_slot(st, m->u, y);
    }
}

/* Two moves: the first clears the heaviest GPU h and overloads one other
 * GPU k, the second clears k without overloading anything. Returns 1 and
 * applies the cheapest such pair, else 0. Only when nothing else helps:
 * each first move is tried on a snapshot of the layer. */
static int lookahead(const layer_job *j, int h, int g0, int g1)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    move_list firsts;
    firsts.n = 0;
    index_replicas(d, st);
    st->collect = &firsts;
    consider_swaps(j, h, NULL);
    consider_reassign(j, h, NULL);
    st->collect = NULL;
    size_t held_bytes = (size_t)d->M * d->E * sizeof(uint32_t);
    memcpy(st->snap_slot, st->slot, (size_t)d->P * sizeof(int32_t));
    memcpy(st->snap_cnt, st->cnt, (size_t)d->E * sizeof(int));
    memcpy(st->snap_held, st->held, held_bytes);
    int best_i = -1, best_cost = 0;
    move best_second = {0};
    for (int i = 0; i < firsts.n && !spend(st, 3LL * d->P); i++) {
        apply_move(st, &firsts.m[i]);
        layer_loads(d, j->w, st->slot, st->cnt, st->load);
        int k = heaviest(j, g0, g1), over = 0;
        for (int g = g0; g < g1; g++)
            over += live(j, g) && st->load[g] > j->target;
        move second = {0};
        if (over == 1) {
            index_replicas(d, st);
            consider_swaps(j, k, &second);
            consider_reassign(j, k, &second);
        }
        int cost = firsts.m[i].cost + second.cost;
        if (over == 0 || (second.kind && second.clean)) {
            if (best_i < 0 || cost < best_cost) {
                best_i = i;
                best_cost = cost;
                best_second = second;
                if (over == 0)
                    best_second.kind = 0;
            }
        }
        memcpy(st->slot, st->snap_slot, (size_t)d->P * sizeof(int32_t));
        memcpy(st->cnt, st->snap_cnt, (size_t)d->E * sizeof(int));
        memcpy(st->held, st->snap_held, held_bytes);
    }
    layer_loads(d, j->w, st->slot, st->cnt, st->load);
    if (best_i < 0)
        return 0;
    apply_move(st, &firsts.m[best_i]);
    if (best_second.kind)
        apply_move(st, &best_second);
    return 1;
}

/* Repairs the GPUs g0..g1-1 (one node, or all under the global policy)
 * of st->slot in place; 0 if it gives up. */
static int repair_node(const layer_job *j, int g0, int g1, int lookahead_ok)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int *over = st->order;
    for (int moves = 0;; moves++) {
        if (st->deadline > 0 && !st->late && eplbi_now_us() > st->deadline)
            st->late = 1;
        if (exhausted(st) || spend(st, 2LL * d->P))
            return 0;
        layer_loads(d, j->w, st->slot, st->cnt, st->load);
        /* GPUs above the target, heaviest first (ties to the lowest). */
        int n_over = 0;
        for (int g = g0; g < g1; g++) {
            if (!live(j, g) || st->load[g] <= j->target)
                continue;
            int at = n_over++;
            while (at > 0 && st->load[over[at - 1]] < st->load[g]) {
                over[at] = over[at - 1];
                at--;
            }
            over[at] = g;
        }
        if (n_over == 0)
            return 1;
        if (moves == REPLAN_MAX_MOVES(j))
            return 0;
        index_replicas(d, st);
        /* The heaviest GPU first; when no single move helps it, another
         * GPU above the target may have one (and h may be fixable after),
         * before the costlier moves for h. */
        move best = {0};
        for (int i = 0; i < n_over && best.kind == 0; i++) {
            consider_swaps(j, over[i], &best);
            consider_reassign(j, over[i], &best);
        }
        if (best.kind == 0)
            consider_cycles(j, over[0], &best);
        if (best.kind == 0)
            consider_swap_pairs(j, over[0], &best);
        if (best.kind == 0)
            consider_relocate(j, over[0], &best);
        if (exhausted(st))
            return 0;
        if (best.kind == 0 && lookahead_ok && lookahead(j, over[0], g0, g1))
            continue;
        if (best.kind == 0 || exhausted(st))
            return 0;
        apply_move(st, &best);
    }
}

/* Restarts domain n (GPUs g0..g1-1) from the fresh plan's replica counts
 * with the current placement: each GPU keeps the current experts the new
 * counts leave room for, and the remaining replicas go, heaviest first, to
 * the least loaded GPU with a free slot that lacks that expert. When the
 * loads moved enough to change replica counts, the repair that follows
 * starts from counts that fit them. */
static int restart_with_counts(const layer_job *j, int n, int g0, int g1,
                               const int32_t *fcnt)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg, lo = g0 * ppg, hi = g1 * ppg;
    int *rem = st->mark;
    for (int e = 0; e < d->E; e++) {
        rem[e] = 0;
        if (st->node_of[e] == n) {
            st->cnt[e] = fcnt[e];
            rem[e] = fcnt[e];
        }
    }
    for (int s = lo; s < hi; s++)
        set_slot(st, s, -1);
    for (int s = lo; s < hi; s++) {
        int e = j->cur[s], g = s / ppg;
        if (e >= 0 && live(j, g) && rem[e] > 0 && !HELD(st, g, e)) {
            set_slot(st, s, e);
            rem[e]--;
        }
    }
    layer_loads(d, j->w, st->slot, st->cnt, st->load);
    int ok = 1;
    for (;;) {
        if (spend(st, d->E + hi - lo)) {
            ok = 0;
            break;
        }
        int e = -1;
        for (int x = 0; x < d->E; x++)
            if (rem[x] > 0 &&
                (e < 0 || (double)j->w[x] / st->cnt[x] >
                              (double)j->w[e] / st->cnt[e]))
                e = x;
        if (e < 0)
            break;
        int to = -1, to_dup = -1;
        for (int s = lo; s < hi; s++) {
            int g = s / ppg;
            if (st->slot[s] >= 0 || !live(j, g))
                continue;
            if (to_dup < 0)
                to_dup = s;
            if (!HELD(st, g, e) &&
                (to < 0 || st->load[g] < st->load[to / ppg]))
                to = s;
        }
        if (to < 0)
            to = to_dup;
        if (to < 0) {
            ok = 0;
            break;
        }
        set_slot(st, to, e);
        st->load[to / ppg] += (double)j->w[e] / st->cnt[e];
        rem[e]--;
    }
    for (int e = 0; e < d->E; e++)
        rem[e] = 0;
    return ok;
}

/* 1 when node n holds the same experts in plans a and b. */
static int same_node_experts(replan_state *st, const int32_t *a,
                             const int32_t *b, int n)
{
    const plan_dims *d = &st->dims;
    int lo = n * d->ppn, hi = lo + d->ppn, same = 1;
    for (int e = 0; e < d->E; e++)
        st->mark[e] = 0;
    for (int s = lo; s < hi; s++)
        if (a[s] >= 0)
            st->mark[a[s]] = 1;
    for (int s = lo; s < hi; s++)
        if (b[s] >= 0) {
            same &= st->mark[b[s]] != 0;
            st->mark[b[s]] = 2;
        }
    for (int s = lo; s < hi; s++)
        if (a[s] >= 0)
            same &= st->mark[a[s]] == 2;
    return same;
}

/* Pairs (row, column) ordered by overlap, largest first; ties to the
 * lowest row, then column. Packed into one 64-bit key so the order is
 * total and qsort's instability cannot show. */
static int by_key_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Greedy matching of n rows to n columns by the largest overlap; rows or
 * columns flagged off in usable stay out, rows left over take the free
 * columns in order. overlap is n x n and mostly zero. */
static void greedy_match(replan_state *st, const int *overlap, int n,
                         const int *usable, int *row_to_col)
{
    int *taken = st->taken;
    size_t np = 0;
    for (int r = 0; r < n; r++) {
        row_to_col[r] = -1;
        taken[r] = 0;
        if (usable && !usable[r])
            continue;
        for (int c = 0; c < n; c++)
            if (overlap[r * n + c] > 0 && (!usable || usable[c]))
                st->pairs[np++] = (uint64_t)overlap[r * n + c] << 40 |
                                  (uint64_t)(0xFFFFF - r) << 20 |
                                  (uint64_t)(0xFFFFF - c);
    }
    qsort(st->pairs, np, sizeof(uint64_t), by_key_desc);
    for (size_t i = 0; i < np; i++) {
        int r = 0xFFFFF - (int)(st->pairs[i] >> 20 & 0xFFFFF);
        int c = 0xFFFFF - (int)(st->pairs[i] & 0xFFFFF);
        if (row_to_col[r] < 0 && !taken[c]) {
            row_to_col[r] = c;
            taken[c] = 1;
        }
    }
    for (int r = 0, c = 0; r < n; r++) {
        if (row_to_col[r] >= 0 || (usable && !usable[r]))
            continue;
        while (taken[c] || (usable && !usable[c]))
            c++;
        row_to_col[r] = c;
        taken[c] = 1;
    }
}

/* The fresh layer with its nodes and GPUs renamed to keep the most
 * experts where the current plan has them; into st->alt. */
static void relabel_fresh(const layer_job *j, const int32_t *fresh)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg, gn = d->gn, N = d->N;
    int *node_map = st->node_map; /* fresh node -> current node */
    if (N > 1 && !j->mask) {
        /* Node overlap: experts both nodes hold. */
        for (int a = 0; a < N; a++)
            for (int b = 0; b < N; b++) {
                int n = 0;
                for (int e = 0; e < d->E; e++)
                    st->mark[e] = 0;
                for (int s = a * d->ppn; s < (a + 1) * d->ppn; s++)
                    if (fresh[s] >= 0)
                        st->mark[fresh[s]] = 1;
                for (int s = b * d->ppn; s < (b + 1) * d->ppn; s++)
                    if (j->cur[s] >= 0 && st->mark[j->cur[s]] == 1) {
                        st->mark[j->cur[s]] = 2;
                        n++;
                    }
                st->overlap[a * N + b] = n;
            }
        greedy_match(st, st->overlap, N, NULL, node_map);
    } else {
        for (int a = 0; a < N; a++)
            node_map[a] = a;
    }
    int *usable = st->usable, *seen = st->seen;
    for (int a = 0; a < N; a++) {
        int b = node_map[a];
        /* Overlap of fresh GPU p with current GPU q, from the current
         * replicas of each expert the fresh GPU holds. */
        memset(st->overlap, 0, (size_t)gn * gn * sizeof(int));
        for (int p = 0; p < gn; p++) {
            usable[p] = live(j, b * gn + p);
            const int32_t *fs = fresh + (size_t)(a * gn + p) * ppg;
            for (int r = 0; r < ppg; r++) {
                int e = fs[r];
                if (e < 0 || seen[e])
                    continue;
                seen[e] = 1;
                for (int t = st->cur_head[e]; t >= 0; t = st->cur_next[t]) {
                    int g = t / ppg;
                    if (g / gn == b && st->cur_prev_gpu[t] != g)
                        st->overlap[p * gn + g - b * gn]++;
                }
            }
            for (int r = 0; r < ppg; r++)
                if (fs[r] >= 0)
                    seen[fs[r]] = 0;
        }
        greedy_match(st, st->overlap, gn, usable, st->match);
        for (int p = 0; p < gn; p++) {
            int to = b * gn + p;
            if (!usable[p]) {
                for (int r = 0; r < ppg; r++)
                    st->alt[to * ppg + r] = -1;
                continue;
            }
            memcpy(st->alt + (size_t)(b * gn + st->match[p]) * ppg,
                   fresh + (size_t)(a * gn + p) * ppg,
                   (size_t)ppg * sizeof(int32_t));
        }
    }
    for (int g = 0; g < d->M; g++)
        if (live(j, g))
            keep_slots(st, j->cur, g, st->alt);
}

/* Where the plan in service keeps each expert: WAS, and per expert its
 * slots as a list. */
static void index_current(replan_state *st, const int32_t *cur)
{
    const plan_dims *d = &st->dims;
    memset(st->was, 0, (size_t)d->M * d->E);
    for (int e = 0; e < d->E; e++)
        st->cur_head[e] = -1;
    for (int s = d->P - 1; s >= 0; s--) {
        int e = cur[s];
        if (e < 0)
            continue;
        WAS(st, s / d->ppg, e) = 1;
        st->cur_next[s] = st->cur_head[e];
        st->cur_head[e] = s;
    }
    /* Slots in a list ascend, so one GPU's replicas are adjacent. */
    for (int e = 0; e < d->E; e++)
        for (int t = st->cur_head[e], prev = -1; t >= 0;
             prev = t / d->ppg, t = st->cur_next[t])
            st->cur_prev_gpu[t] = prev;
}

/* Makes st->alt, the relabelled fresh layer: 1 when it is on target. */
static int make_alt(const layer_job *j, const int32_t *fresh,
                    const int32_t *fcnt)
{
    relabel_fresh(j, fresh);
    return layer_loads(j->d, j->w, j->st->alt, fcnt, j->st->load) <=
                   j->target
               ? 1
               : -1;
}

int replan_from_current(replan_state **stp, const plan_dims *d,
                        const float *weight, const int32_t *current,
                        const uint8_t *mask, const int32_t *fresh_phy2log,
                        const int32_t *fresh_logcnt, const replan_limits *lim,
                        int32_t *phy2log, int32_t *logcnt)
{
    int rc = state_reserve(stp, d);
    if (rc)
        return rc;
    replan_state *st = *stp;
    double tolerance = lim->tolerance;
    st->deadline =
        lim->deadline_us > 0 ? eplbi_now_us() + lim->deadline_us : 0.0;
    st->late = 0; /* the deadline passed: fallbacks from here on */
    for (int l = 0; l < d->L; l++) {
        const float *w = weight + (size_t)l * d->E;
        const int32_t *cur = current + (size_t)l * d->P;
        const int32_t *fresh = fresh_phy2log + (size_t)l * d->P;
        const int32_t *fcnt = fresh_logcnt + (size_t)l * d->E;
        int32_t *out = phy2log + (size_t)l * d->P;
        int32_t *ocnt = logcnt + (size_t)l * d->E;
        double fresh_peak = layer_loads(d, w, fresh, fcnt, st->load);
        layer_job j = {d, w, cur, mask, fresh_peak / (1.0 - tolerance), st,
                       d->N > 1 && !mask ? d->gn : d->M};

        index_current(st, cur);
        st->work = 0;
        st->budget = work_budget(d);
        if (!st->late && st->deadline > 0 && eplbi_now_us() >= st->deadline)
            st->late = 1;
        if (st->late) {
            /* the fallback: the fresh plan relabelled where that saves
             * copies, else as it is (both on target) */
            int alt_ok = make_alt(&j, fresh, fcnt) > 0 &&
                         layer_copies(st, st->alt) <
                             layer_copies(st, fresh);
            memcpy(out, alt_ok ? st->alt : fresh,
                   (size_t)d->P * sizeof(int32_t));
            memcpy(ocnt, fcnt, (size_t)d->E * sizeof(int32_t));
            continue;
        }

        /* The repair: the current plan, node by node. A node the search
         * cannot repair restarts from the fresh plan's replica counts; under
         * the hierarchical policy a node that still fails takes the
         * relabelled fresh plan's node when that holds the same experts. */
        int alt_state = 0; /* 0 not made, 1 on target, -1 off target */
        for (int e = 0; e < d->E; e++) {
            st->cnt[e] = 0;
            st->node_of[e] = -1;
        }
        memset(st->held, 0, (size_t)d->M * d->E * sizeof(uint32_t));
        for (int s = 0; s < d->P; s++) {
            int e = cur[s];
            st->slot[s] = -1;
            if (e >= 0 && st->node_of[e] < 0)
                st->node_of[e] = DOM_OF_SLOT(&j, s);
            if (e >= 0 && live(&j, s / d->ppg)) {
                set_slot(st, s, e);
                st->cnt[e]++;
            }
        }
        int ok = place_orphans(&j);
        int domains = d->M / j.dom_gpus, gpd = j.dom_gpus;
        for (int n = 0; n < domains && ok; n++) {
            int g0 = n * gpd, g1 = g0 + gpd;
            if (repair_node(&j, g0, g1, 0))
                continue;
            if (exhausted(st)) {
                ok = 0; /* the layer takes its fallback */
                break;
            }
            if (domains > 1 && alt_state == 0)
                alt_state = make_alt(&j, fresh, fcnt);
            int same = domains == 1 ||
                       (alt_state > 0 &&
                        same_node_experts(st, st->slot, st->alt, n));
            if (same) {
                if (restart_with_counts(&j, n, g0, g1, fcnt) &&
                    repair_node(&j, g0, g1, 1))
                    continue;
            } else if (repair_node(&j, g0, g1, 1)) {
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
        if (ok) {
            for (int g = 0; g < d->M; g++)
                if (live(&j, g) && memcmp(st->slot + (size_t)g * d->ppg,
                                          cur + (size_t)g * d->ppg,
                                          (size_t)d->ppg * sizeof(int32_t)))
                    keep_slots(st, cur, g, st->slot);
            if (layer_loads(d, w, st->slot, st->cnt, st->load) <= j.target)
                copies = layer_copies(st, st->slot);
        }

        /* The fallbacks, made when the repair failed or moved more than
         * one GPU's worth of experts: the fresh plan relabelled, and the
         * fresh plan as it is (on target by definition). */
        if (copies >= 0 && copies <= d->ppg) {
            memcpy(out, st->slot, (size_t)d->P * sizeof(int32_t));
            memcpy(ocnt, st->cnt, (size_t)d->E * sizeof(int32_t));
            continue;
        }
        if (alt_state == 0)
            alt_state = make_alt(&j, fresh, fcnt);
        long fresh_copies = layer_copies(st, fresh);
        long alt_copies = alt_state > 0 ? layer_copies(st, st->alt) : -1;
        if (copies >= 0 && (alt_copies < 0 || copies <= alt_copies) &&
            copies <= fresh_copies) {
            memcpy(out, st->slot, (size_t)d->P * sizeof(int32_t));
            memcpy(ocnt, st->cnt, (size_t)d->E * sizeof(int32_t));
        } else if (alt_copies >= 0 && alt_copies < fresh_copies) {
            memcpy(out, st->alt, (size_t)d->P * sizeof(int32_t));
            memcpy(ocnt, fcnt, (size_t)d->E * sizeof(int32_t));
        } else {
            memcpy(out, fresh, (size_t)d->P * sizeof(int32_t));
            memcpy(ocnt, fcnt, (size_t)d->E * sizeof(int32_t));
        }
    }
    return EPLB_OK;
}

/* 1 when the n bytes at a and at b share a byte. */
static int overlaps(const void *a, const void *b, size_t n)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + n && y < x + n;
}

int eplb_relabel(const eplb_shape *shape, eplb_policy policy,
                 const int32_t *current, const int32_t *phy2log,
                 int32_t *out)
{
    eplbi_clear_error();
    int pol = eplb_resolve_policy(policy, shape);
    if (pol < 0)
        return pol;
    if (!current || !phy2log || !out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "current, phy2log and out must not be NULL");
    plan_dims d;
    plan_dims_init(&d, shape, pol);
    size_t bytes = (size_t)d.L * d.P * sizeof(int32_t);
    if (overlaps(out, current, bytes) || overlaps(out, phy2log, bytes))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "out overlaps %s: pass an output array of its own "
                          "(layers x num_replicas int32)",
                          overlaps(out, current, bytes) ? "current"
                                                        : "phy2log");
    int rc = replan_check_current(&d, current, NULL);
    if (rc == EPLB_OK && (rc = replan_check_current(&d, phy2log, NULL))) {
        /* The check's message, copied before it is rewritten. */
        char why[512];
        snprintf(why, sizeof why, "%s", eplb_last_error());
        eplbi_fail(rc, "phy2log: %s", why);
    }
    replan_state *st = NULL;
    if (rc == EPLB_OK)
        rc = state_reserve(&st, &d);
    for (int l = 0; rc == EPLB_OK && l < d.L; l++) {
        const int32_t *cur = current + (size_t)l * d.P;
        layer_job j = {&d, NULL, cur, NULL, 0.0, st,
                       d.N > 1 ? d.gn : d.M};
        index_current(st, cur);
        relabel_fresh(&j, phy2log + (size_t)l * d.P);
        memcpy(out + (size_t)l * d.P, st->alt, (size_t)d.P * sizeof(int32_t));
    }
    replan_state_free(st);
    return rc;
}
