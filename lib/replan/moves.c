/* The move families of the re-plan search, in one table, and the one loop
 * that tries them. Each family scores its moves from one GPU above the
 * target against the layer as it stands and keeps the best in *best; the
 * loop decides which families run, from which GPUs, and in which order:
 *   - swap two replicas between the heaviest GPU and another GPU of its
 *     domain (up to 2 copies), or
 *   - give a replica slot of an expert with several replicas to another
 *     expert of the node (1 copy; replica counts follow the loads);
 *   - give another replica to a GPU that holds the expert already (no
 *     copy; only when a GPU may hold an expert twice);
 * then, only when no single move helps the heaviest GPU: a cycle of three
 * GPUs, two swaps, a relocation in three parts. */
#include "replan.h"

#include <math.h>
#include <string.h>

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

/* A move the lookahead's second-move search cannot use (clean_below). */
static inline int unwanted(const replan_state *st, const move *m)
{
    return st->clean_below > 0 && (!m->clean || m->cost >= st->clean_below);
}

/* The best so far is a clean move (and the search is not gathering first
 * moves): only a clean move can beat it. */
static inline int best_clean(const replan_state *st, const move *best)
{
    return !st->collect && best && best->kind && best->clean;
}

/* 1 when a clean move of `cost` copies whose peak is at least `least`
 * cannot beat the clean move `best` (more copies, or as many and a peak
 * surely no lower). */
static inline int beaten(const move *best, int cost, double least)
{
    return cost > best->cost ||
           (cost == best->cost && eplbi_surely_above(least, best->peak));
}

/* st->share[s] = w/cnt of slot s's expert, for the slots of GPUs g0..g1-1,
 * and the largest and smallest on each GPU: the families below read each
 * many times (the same quotient as summed inline, so the same moves). */
static void share_bounds(replan_state *st, int g, int ppg)
{
    double top = st->share[g * ppg], low = top;
    for (int s = g * ppg + 1; s < (g + 1) * ppg; s++) {
        if (st->share[s] > top)
            top = st->share[s];
        if (st->share[s] < low)
            low = st->share[s];
    }
    st->share_max[g] = top;
    st->share_min[g] = low;
}

static void fill_gpu_shares(const layer_job *j, int g)
{
    replan_state *st = j->st;
    int ppg = j->d->ppg;
    for (int s = g * ppg; s < (g + 1) * ppg; s++) {
        int e = st->slot[s];
        st->share[s] = e >= 0 ? (double)j->w[e] / st->cnt[e] : 0.0;
    }
    share_bounds(st, g, ppg);
}

/* The domain's shares, filled unless they are there already (the
 * families of one step, and the lookahead's trials, read them again). */
static const double *fill_shares(const layer_job *j, int g0, int g1)
{
    replan_state *st = j->st;
    if (st->share_lo != g0 || st->share_hi != g1) {
        for (int g = g0; g < g1; g++)
            fill_gpu_shares(j, g);
        st->share_lo = g0;
        st->share_hi = g1;
    }
    return st->share;
}

void replan_refresh_shares(const layer_job *j, const int *gpus, int n,
                           int g0, int g1, int valid_before)
{
    replan_state *st = j->st;
    st->share_hi = st->share_lo;
    if (!valid_before)
        return;
    for (int i = 0; i < n; i++)
        if (gpus[i] >= g0 && gpus[i] < g1)
            fill_gpu_shares(j, gpus[i]);
    st->share_lo = g0;
    st->share_hi = g1;
}

/* The next GPU of the domain g0..g1-1 after g to try as a receiver of
 * expert x (g0 - 1 to start; -1 at the end): every GPU in order, or, in
 * a search for a second move that must copy nothing (clean_below 1),
 * only the GPUs that had x in the plan in service, in order (a move
 * copies x onto any other). *cursor walks x's current slots, so the
 * walk is linear. */
static inline int next_receiver(const replan_state *st, int x, int g,
                                int g0, int g1, int *cursor)
{
    if (st->clean_below != 1)
        return g + 1 < g1 ? g + 1 : -1;
    int ppg = st->dims.ppg, t = *cursor;
    if (t == -2)
        t = st->cur_head[x];
    while (t >= 0 && (t / ppg <= g || t / ppg < g0))
        t = st->cur_next[t];
    *cursor = t;
    return t >= 0 && t / ppg < g1 ? t / ppg : -1;
}

/* Expert e's replica list visited a GPU at a time: the list is in slot
 * order, so one GPU's slots come together; from the first slot (t =
 * head[e]) to the first slot of the next GPU, -1 at the end. */
static inline int next_gpu_slot(const replan_state *st, int t)
{
    int ppg = st->dims.ppg, g = t / ppg;
    do
        t = st->next[t];
    while (t >= 0 && t / ppg == g);
    return t;
}

/* Live GPUs of g0..g1-1 other than h and b that hold expert y. */
static int gpus_holding(const layer_job *j, int y, int g0, int g1, int h,
                        int b)
{
    const replan_state *st = j->st;
    int ppg = j->d->ppg, n = 0;
    for (int s = st->head[y]; s >= 0; s = next_gpu_slot(st, s)) {
        int g = s / ppg;
        n += g >= g0 && g < g1 && g != h && g != b && live(j, g);
    }
    return n;
}

/* The swaps from h, with share[] and the GPUs' share bounds filled for
 * h's domain. clean_only: only the best clean swap is of use (a better
 * swap is clean whenever one is), so GPUs that cannot end a clean swap
 * are passed over. */
static void swaps_from(const layer_job *j, int h, const double *share,
                       int clean_only, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg;
    double T = j->target, Lh = st->load[h], exh = excess(Lh, T);
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h);
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si], cursor = -2;
        double rx = share[si];
        for (int b = next_receiver(st, x, g0 - 1, g0, g1, &cursor); b >= 0;
             b = next_receiver(st, x, b, g0, g1, &cursor)) {
            if (b == h || !live(j, b) || HELD(st, b, x))
                continue;
            double Lb = st->load[b], exb = excess(Lb, T);
            if (spend(st, ppg))
                return;
            /* (no share on b below x's: no swap; clean, b ends at T or
             * below, at least at Lb + rx less its largest share, and h
             * at least at Lh - rx plus b's smallest, rounded as below;
             * once the best is clean, only a clean swap of no more
             * copies, the first of them at least, and as many and a
             * lower peak than it can beat it) */
            if (!(rx > st->share_min[b]))
                continue;
            int bc = best_clean(st, best), clean = clean_only || bc;
            if (clean) {
                double b_least = Lb + rx - st->share_max[b],
                       h_least = Lh - rx + st->share_min[b];
                if (b_least > T || h_least > T ||
                    (bc && beaten(best, net_cost(gain(j, b, x),
                                                 refund(j, h, x) + 1),
                                  b_least > h_least ? b_least : h_least)))
                    continue;
            }
            for (int q = 0; q < ppg; q++) {
                int sj = b * ppg + q, y = st->slot[sj];
                double ry = share[sj];
                if (!(rx > ry) || HELD(st, h, y))
                    continue;
                double nh = Lh - rx + ry, nb = Lb + rx - ry;
                if (clean && !(nh <= T && nb <= T))
                    continue;
                double delta = excess(nh, T) + excess(nb, T) - exh - exb;
                if (!st->collect && !(delta < 0.0))
                    continue;
                move m = {1, si, sj, 0, 0,
                          net_cost(gain(j, b, x) + gain(j, h, y),
                                   refund(j, h, x) + refund(j, b, y)),
                          delta, nh > nb ? nh : nb, nh <= T && nb <= T};
                if (unwanted(st, &m))
                    continue;
                if (st->collect) {
                    if (nh <= T)
                        collect(st, &m);
                    continue;
                }
                if (better(&m, best))
                    *best = m;
            }
        }
    }
}

/* Slot si (expert x, several replicas) given to expert y: x's other
 * replicas and y's replicas change their load per replica too. Priced by
 * what gs gains only, with no refund for x (unlike the swaps, cycles and
 * relocations): with it the 1024-expert drift of the benchmark copied
 * 0.30% of slots against 0.29%, and no series copied less. */
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
    if (unwanted(st, &m))
        return;
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

/* The summed excess over the target of the live GPUs g0..g1-1 other than
 * `skip` (-1: none): the most any move can remove from them. */
static double domain_excess(const layer_job *j, int g0, int g1, int skip)
{
    double ex = 0.0;
    for (int g = g0; g < g1; g++)
        if (g != skip && live(j, g))
            ex += excess(j->st->load[g], j->target);
    return ex;
}

/* Only a clean move can be of use: one beats a clean best, or the
 * lookahead wants a clean second move. */
static inline int only_clean(const replan_state *st, const move *best)
{
    return best_clean(st, best) || st->clean_below > 0;
}

/* The swaps from h; where only a clean move is of use, only clean ones. */
static void consider_swaps(const layer_job *j, int h, move *best)
{
    swaps_from(j, h, fill_shares(j, DOM_LO(j, h), DOM_HI(j, h)),
               only_clean(j->st, best), best);
}

/* A clean move of `cost` copies whose peak is at least `least` is of no
 * use: it cannot beat the clean best, or the lookahead wants a cheaper
 * one. */
static inline int out_of_reach(const replan_state *st, const move *best,
                               int cost, double least)
{
    return (best_clean(st, best) && beaten(best, cost, least)) ||
           (st->clean_below > 0 && cost >= st->clean_below);
}

/* 1 when a move of `cost` copies that removes at most `removed` of the
 * summed excess, and cannot be clean, surely cannot beat the best found
 * (a move that is not clean, with a higher excess removed per copy: its
 * ratio surely below, with room for the sums' rounding). */
static inline int ratio_beaten(const replan_state *st, const move *best,
                               int cost, double removed, double T)
{
    return !st->collect && st->clean_below == 0 && best && best->kind &&
           !best->clean &&
           (removed + 1e-9 * T) / (cost + 0.5) <
               -best->delta / (best->cost + 0.5);
}

/* The largest load among expert e's GPUs once each of its replicas
 * there changes by de (the change of one more or one fewer replica):
 * where e's replicas change by de, the move in hand changes a GPU by that
 * and by its other experts' changes, none below zero for an expert that
 * loses a replica, so the move's peak is at least this when its other
 * changes only add (the callers' case). */
static double least_after(const layer_job *j, int e, double de)
{
    const replan_state *st = j->st;
    int ppg = j->d->ppg;
    double least = 0.0;
    for (int t = st->head[e]; t >= 0; t = next_gpu_slot(st, t)) {
        int g = t / ppg;
        double v = st->load[g] + HELD(st, g, e) * de;
        if (v > least)
            least = v;
    }
    return least;
}

/* A move that takes a replica of z from GPU g (z's other replicas grow
 * by dz each) and gives one to x, judged from z's GPUs that do not hold
 * x (x's replicas only shrink a GPU): 1 when it is of no use where only a
 * clean move is (one of them goes from at or below T surely over it) or,
 * against a clean best at `cost` copies, when their largest new load
 * cannot beat the best's peak. */
static int z_side_useless(const layer_job *j, const move *best, int z, int g,
                          int x, int cost)
{
    const replan_state *st = j->st;
    int ppg = j->d->ppg;
    double T = j->target,
           dz = (double)j->w[z] / (st->cnt[z] - 1) -
                (double)j->w[z] / st->cnt[z],
           least = 0.0;
    for (int t = st->head[z]; t >= 0; t = next_gpu_slot(st, t)) {
        int u = t / ppg;
        if (u == g || HELD(st, u, x))
            continue;
        double v = st->load[u] + HELD(st, u, z) * dz;
        if (st->load[u] <= T && eplbi_surely_above(v, T))
            return 1;
        if (v > least)
            least = v;
    }
    return best_clean(st, best) && beaten(best, cost, least);
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
    double T = j->target, Lh = st->load[h];
    /* the domain's summed excess, and h's: the most a move can remove
     * (the ratio test below) */
    double ex_h = excess(Lh, T), ex_all = domain_excess(j, g0, g1, -1);
    /* Only a clean move (h cleared, no GPU pushed over T) can beat a clean
     * best, and only a move that clears h is gathered as a first move:
     * then moves whose least possible load on h (or, against a clean
     * best, on the GPU that takes the slot) is above T are not summed.
     * Their work is counted as if they were, so the layer's budget runs
     * out where it did without the test, and the plan is the same. */
    /* The experts that may take a slot of h, in expert order, with their
     * share after one more replica: those of one node (node_of; the
     * list is made again when a slot's expert lives on another) that
     * have a replica and none on h (a second move that must copy nothing
     * takes only an expert h had in the plan in service). Nothing they
     * read changes while the family scores. */
    int *ys = st->rlist, n_ys = 0, ys_node = -1;
    double *ys_r1 = st->rshare, *ys_least = st->rleast;
    /* The domain's slots whose expert has another replica (the only ones
     * a slot can be taken from for x below), per GPU in slot order, with
     * their share (the quotient summed inline elsewhere): the receivers'
     * loop visits only these, once made for every x of h. */
    int *mslot = st->mslot, *mat = st->mslot_at, nm = 0;
    double *mshare = st->mslot_share;
    for (int g = g0; g < g1; g++) {
        mat[g - g0] = nm;
        for (int s = g * ppg; s < (g + 1) * ppg; s++) {
            int z = st->slot[s];
            if (z >= 0 && st->cnt[z] >= 2) {
                mslot[nm] = s;
                mshare[nm++] = (double)j->w[z] / st->cnt[z];
            }
        }
    }
    mat[g1 - g0] = nm;
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        /* This slot to another expert, lighter per replica than x is. */
        if (spend(st, d->E + g1 - g0))
            return;
        if (st->cnt[x] >= 2 && st->node_of[x] != ys_node) {
            ys_node = st->node_of[x];
            n_ys = 0;
            for (int y = 0; y < d->E; y++)
                if (st->node_of[y] == ys_node && st->cnt[y] != 0 &&
                    !HELD(st, h, y) &&
                    (st->clean_below != 1 || WAS(st, h, y))) {
                    double r1 = (double)j->w[y] / (st->cnt[y] + 1);
                    ys[n_ys] = y;
                    ys_r1[n_ys] = r1;
                    ys_least[n_ys++] =
                        least_after(j, y, r1 - (double)j->w[y] / st->cnt[y]);
                }
        }
        /* x's other GPUs that its lost replica pushes over T from at or
         * below it (each of its replicas there grows by dx; only a
         * replica of the expert taking the slot, on the same GPU, could
         * make up for it): a move is not clean unless that expert is on
         * all of them (the first two kept; more are rare) */
        int n_cross = 0, cross[2] = {-1, -1};
        if (st->cnt[x] >= 2) {
            double dx = (double)j->w[x] / (st->cnt[x] - 1) - rx;
            for (int t = st->head[x]; t >= 0; t = next_gpu_slot(st, t)) {
                int g = t / ppg;
                if (g == h)
                    continue;
                if (st->load[g] <= T &&
                    eplbi_surely_above(st->load[g] + HELD(st, g, x) * dx, T)) {
                    if (n_cross < 2)
                        cross[n_cross] = g;
                    n_cross++;
                }
            }
        }
        if (st->cnt[x] >= 2)
            for (int k = 0; k < n_ys; k++) {
                int y = ys[k];
                double ry1 = ys_r1[k];
                if (y == x || !(ry1 < rx))
                    continue;
                /* h ends at Lh - rx + ry1 or above (x's other replicas on
                 * h only grow); a clean move beats a clean best only by
                 * fewer copies, or as many and a lower peak; y's GPUs
                 * end at ys_least or above, and a GPU x pushes over T
                 * without a replica of y leaves the move not clean */
                double h_new = Lh - rx + ry1;
                if ((st->collect || only_clean(st, best)) &&
                    (eplbi_surely_above(h_new, T) ||
                     out_of_reach(st, best, !WAS(st, h, y), h_new))) {
                    spend(st, 1 + st->cnt[x] + st->cnt[y]);
                    continue;
                }
                if ((only_clean(st, best) && n_cross > 0 &&
                     (!HELD(st, cross[0], y) ||
                      (n_cross > 1 && !HELD(st, cross[1], y)))) ||
                    (best_clean(st, best) &&
                     beaten(best, !WAS(st, h, y), ys_least[k]))) {
                    spend(st, 1 + st->cnt[x] + st->cnt[y]);
                    continue;
                }
                /* Not clean (h stays above T), it removes at most what h
                 * sheds, rx - ry1, and what y's replicas shed, ry1 in
                 * all, from the others' excess. */
                double rest = ex_all - ex_h;
                if (eplbi_surely_above(h_new, T) &&
                    ratio_beaten(st, best, !WAS(st, h, y),
                                 (rx - ry1 < ex_h ? rx - ry1 : ex_h) +
                                     (ry1 < rest ? ry1 : rest),
                                 T)) {
                    spend(st, 1 + st->cnt[x] + st->cnt[y]);
                    continue;
                }
                try_reassign(j, h, si, y, best);
            }
        /* Another slot of the node to this expert, where the GPU that
         * receives it stays lighter than h is now. Each of h's replicas
         * of x loses rx - rx1, and h ends no lower than that. */
        double rx1 = (double)j->w[x] / (st->cnt[x] + 1);
        int h_stays = eplbi_surely_above(Lh - HELD(st, h, x) * (rx - rx1), T);
        /* x's GPUs, h among them, end at x_least or above */
        double x_least = least_after(j, x, rx1 - rx);
        int cursor = -2;
        for (int g = next_receiver(st, x, g0 - 1, g0, g1, &cursor); g >= 0;
             g = next_receiver(st, x, g, g0, g1, &cursor)) {
            if (g == h || !live(j, g) || HELD(st, g, x))
                continue;
            if (spend(st, ppg))
                return;
            double Lg = st->load[g];
            for (int q = mat[g - g0]; q < mat[g - g0 + 1]; q++) {
                int s = mslot[q], z = st->slot[s];
                double rz = mshare[q], ng = Lg - rz + rx1;
                if (!(ng < Lh))
                    continue;
                /* h not cleared, or g pushed over T (it ends at ng or
                 * above) */
                if (((st->collect || only_clean(st, best)) && h_stays) ||
                    (only_clean(st, best) &&
                     ((Lg <= T && eplbi_surely_above(ng, T)) ||
                      out_of_reach(st, best, !WAS(st, g, x), ng))) ||
                    (best_clean(st, best) &&
                     beaten(best, !WAS(st, g, x), x_least))) {
                    spend(st, 1 + st->cnt[z] + st->cnt[x]);
                    continue;
                }
                /* Not clean (h stays above T), it removes at most what
                 * x's replicas shed, rx1 in all, and what g sheds if z's
                 * share is above x's new one. */
                double exg = excess(Lg, T),
                       g_shed = rz - rx1 < exg ? rz - rx1 : exg;
                if (h_stays &&
                    ratio_beaten(st, best, !WAS(st, g, x),
                                 (rx1 < ex_all ? rx1 : ex_all) +
                                     (g_shed > 0.0 ? g_shed : 0.0),
                                 T)) {
                    spend(st, 1 + st->cnt[z] + st->cnt[x]);
                    continue;
                }
                /* Where only a clean move is of use: z's other GPUs grow
                 * (where x is not there to shrink them), so the move is
                 * not clean if one goes over T from at or below it, and
                 * its peak is at least the largest of them */
                if (only_clean(st, best) &&
                    z_side_useless(j, best, z, g, x, !WAS(st, g, x))) {
                    spend(st, 1 + st->cnt[z] + st->cnt[x]);
                    continue;
                }
                try_reassign(j, h, s, x, best);
            }
        }
    }
}

/* Another replica of an expert to a GPU that holds it already: no GPU's
 * set of experts grows, so these moves copy nothing. Only when GPUs may
 * hold an expert twice (distinct_per_gpu 0); the other families never
 * make such a move. From the heaviest GPU h:
 *   - a slot of another GPU g that holds x (an expert of h) goes to x,
 *     lightening x's replicas on h (and g's other x);
 *   - a slot of h (expert x, several replicas) goes to an expert y that
 *     h holds already;
 *   - a swap of x on h with y on b where b holds x or h holds y. */
static void consider_duplicates(const layer_job *j, int h, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    if (j->distinct)
        return;
    int ppg = d->ppg;
    double T = j->target, Lh = st->load[h], exh = excess(Lh, T);
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h), others = 0;
    /* Every move below gives a GPU b an expert it holds (b holds x) or
     * h one (b's expert is one h holds): only the GPUs holding one of
     * h's experts can take part. They are marked once; the others'
     * share of the work is counted as if scanned. */
    uint8_t *mark = st->gmark;
    for (int g = g0; g < g1; g++)
        others += g != h && live(j, g);
    for (int r = 0; r < ppg; r++)
        for (int e = st->slot[h * ppg + r], t = e >= 0 ? st->head[e] : -1;
             t >= 0; t = st->next[t])
            mark[t / ppg] = 1;
    /* Each marked GPU's slots of an expert h holds, in slot order (the
     * reassign family's scratch): from a GPU without x, only a swap for
     * one of these gives a GPU an expert it holds. */
    int *hslot = st->mslot, *hat = st->mslot_at, nh_slots = 0;
    for (int b = g0; b < g1; b++) {
        hat[b - g0] = nh_slots;
        if (b == h || !live(j, b) || !mark[b])
            continue;
        for (int s = b * ppg; s < (b + 1) * ppg; s++)
            if (st->slot[s] >= 0 && HELD(st, h, st->slot[s]))
                hslot[nh_slots++] = s;
    }
    hat[g1 - g0] = nh_slots;
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = (double)j->w[x] / st->cnt[x];
        if (spend(st, ppg + g1 - g0 + (long long)ppg * others))
            break;
        /* h's slot to an expert y it holds (k replicas), where h ends
         * lighter: it loses x's share and y's k shares grow to k + 1
         * smaller ones. */
        if (st->cnt[x] >= 2)
            for (int r = 0; r < ppg; r++) {
                int y = st->slot[h * ppg + r], k = HELD(st, h, y);
                if (y == x)
                    continue;
                double wy = j->w[y];
                if (wy * (k + 1) / (st->cnt[y] + 1) - wy * k / st->cnt[y] < rx)
                    try_reassign(j, h, si, y, best);
            }
        double rx1 = (double)j->w[x] / (st->cnt[x] + 1);
        for (int b = g0; b < g1; b++) {
            if (b == h || !live(j, b) || !mark[b])
                continue;
            double Lb = st->load[b], exb = excess(Lb, T);
            int b_has_x = HELD(st, b, x) != 0;
            int q_end = b_has_x ? ppg : hat[b - g0 + 1] - hat[b - g0];
            for (int q = 0; q < q_end; q++) {
                int sj = b_has_x ? b * ppg + q : hslot[hat[b - g0] + q],
                    y = st->slot[sj];
                if (y == x)
                    continue;
                /* b's slot to x, which b holds already. */
                if (HELD(st, b, x) && st->cnt[y] >= 2 &&
                    Lb - (double)j->w[y] / st->cnt[y] + rx1 < Lh)
                    try_reassign(j, h, sj, x, best);
                /* A swap that gives b or h an expert it holds. */
                if (!HELD(st, b, x) && !HELD(st, h, y))
                    continue; /* the swap family's move */
                double ry = (double)j->w[y] / st->cnt[y];
                if (!(rx > ry))
                    continue;
                double nh = Lh - rx + ry, nb = Lb + rx - ry;
                double delta = excess(nh, T) + excess(nb, T) - exh - exb;
                move m = {1, si, sj, 0, 0,
                          net_cost(gain(j, b, x) + gain(j, h, y),
                                   refund(j, h, x) + refund(j, b, y)),
                          delta, nh > nb ? nh : nb, nh <= T && nb <= T};
                if (unwanted(st, &m))
                    continue;
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
    for (int r = 0; r < ppg; r++)
        for (int e = st->slot[h * ppg + r], t = e >= 0 ? st->head[e] : -1;
             t >= 0; t = st->next[t])
            mark[t / ppg] = 0;
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
    int g0 = DOM_LO(j, h), g1 = DOM_HI(j, h), n_live = 0;
    const double *share = fill_shares(j, g0, g1);
    int *cgpu = st->gpu_list;
    for (int g = g0; g < g1; g++)
        n_live += live(j, g);
    for (int i = 0; i < ppg; i++) {
        int si = h * ppg + i, x = st->slot[si];
        double rx = share[si];
        /* The GPUs c that can pass h a share lighter than x's (taking
         * c's smallest, rounded as nh is, leaves h lighter), in order:
         * the others can end no cycle. */
        int n_c = 0;
        for (int c = g0; c < g1; c++)
            if (c != h && live(j, c) && Lh - rx + st->share_min[c] < Lh)
                cgpu[n_c++] = c;
        for (int b = g0; b < g1; b++) {
            if (b == h || !live(j, b) || HELD(st, b, x))
                continue;
            double Lb = st->load[b];
            if (spend(st, ppg))
                return;
            /* b must end at T or below, and giving up its largest share
             * (rounded as nb is) is the least it can end at; likewise c
             * below. */
            if (Lb + rx - st->share_max[b] > T)
                continue;
            for (int q = 0; q < ppg; q++) {
                int sj = b * ppg + q, y = st->slot[sj];
                double ry = share[sj];
                double nb = Lb + rx - ry;
                /* (an empty slot passes nothing on; the repair never has
                 * one on a live GPU: replan_place_orphans fills them or
                 * the layer takes its fallback) */
                if (y < 0 || y == x || nb > T)
                    continue;
                int looked = 0;
                for (int k = 0; k < n_c; k++) {
                    int c = cgpu[k];
                    if (c == b || HELD(st, c, y))
                        continue;
                    double Lc = st->load[c];
                    looked++;
                    if (spend(st, ppg))
                        return;
                    if (Lc + ry - st->share_max[c] > T)
                        continue;
                    for (int u = 0; u < ppg; u++) {
                        int sk = c * ppg + u, z = st->slot[sk];
                        double rz = share[sk];
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
                                  net_cost(gain(j, b, x) + gain(j, c, y) +
                                               gain(j, h, z),
                                           refund(j, h, x) + refund(j, b, y) +
                                               refund(j, c, z)),
                                  delta, pk > nc ? pk : nc, nh <= T};
                        if (better(&m, best))
                            *best = m;
                    }
                }
                /* The work is counted as if every live GPU of the domain
                 * other than h and b that lacks y had been looked at, so
                 * the layer's budget runs out in the same call as it did
                 * when all were. */
                int others = n_live - 2 - gpus_holding(j, y, g0, g1, h, b);
                if (spend(st, (long long)ppg * (others - looked)))
                    return;
            }
        }
    }
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
    double *share = j->st->share;
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
    if (nbeam > 0)
        fill_shares(j, g0, g1);
    for (int k = 0; k < nbeam && !exhausted(st); k++) {
        int si = beam[k].si, sj = beam[k].sj, b = sj / ppg;
        int x = st->slot[si], y = st->slot[sj];
        int c1 = net_cost(gain(j, b, x) + gain(j, h, y),
                          refund(j, h, x) + refund(j, b, y));
        if (best->kind && best->clean && best->cost <= c1)
            continue;
        double rx = (double)j->w[x] / st->cnt[x];
        double ry = (double)j->w[y] / st->cnt[y], Lb = st->load[b];
        /* the swap, and its shares swapped with it (a swap changes no
         * replica count, so the domain's other shares stand) */
        swap_slots(st, si, sj);
        share[si] = ry;
        share[sj] = rx;
        share_bounds(st, h, ppg);
        share_bounds(st, b, ppg);
        st->load[h] = Lh - rx + ry;
        st->load[b] = Lb + rx - ry;
        move m2 = {0};
        swaps_from(j, b, share, 1, &m2);
        swap_slots(st, si, sj);
        share[si] = rx;
        share[sj] = ry;
        share_bounds(st, h, ppg);
        share_bounds(st, b, ppg);
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
    reloc_cand *cand = st->ycand;
    uint8_t *tf = st->tflag, *is_cand = st->yflag;
    /* The excess of the domain's GPUs other than h: the most that y's
     * replicas elsewhere can shed. */
    double exh = excess(st->load[h], T),
           ex_rest = domain_excess(j, g0, g1, h);
    int done = 0;
    for (int i = 0; i < ppg && !done; i++) {
        int si = h * ppg + i, x = st->slot[si], h_refund = refund(j, h, x);
        double rx = (double)j->w[x] / st->cnt[x];
        /* The experts that may take x's slot on h, whichever slot x
         * takes (of x's node, not on h, lighter per replica than x even
         * with one more replica), in order; their replicas, and the
         * most load those shed. */
        int nc = 0;
        long long cnt_sum = 0;
        /* the least of h's part, and of h's part less y's shed, over
         * the candidates: with the cap below, the least bound of any y */
        double min_h = 0.0, min_hs = 0.0;
        for (int y = 0; y < d->E; y++) {
            if (y == x || st->cnt[y] == 0 ||
                st->node_of[y] != st->node_of[x] || HELD(st, h, y))
                continue;
            double ry1 = (double)j->w[y] / (st->cnt[y] + 1);
            if (!(ry1 < rx))
                continue;
            /* what does not depend on the slot x takes, once */
            reloc_cand *c = &cand[nc++];
            c->y = y;
            c->ry1 = ry1;
            c->dy = ry1 - (double)j->w[y] / st->cnt[y];
            c->hl = st->load[h] - rx + ry1;
            c->h_part = excess(c->hl, T) - exh;
            c->shed = -c->dy * st->cnt[y];
            c->h_cost = gain(j, h, y);
            if (nc == 1 || c->h_part < min_h)
                min_h = c->h_part;
            if (nc == 1 || c->h_part - c->shed < min_hs)
                min_hs = c->h_part - c->shed;
            is_cand[y] = 1;
            cnt_sum += st->cnt[y];
        }
        for (int t = g0 * ppg; t < g1 * ppg && !done; t++) {
            int g = t / ppg, z = st->slot[t];
            if (spend(st, 1)) {
                done = 1;
                break;
            }
            if (g == h || !live(j, g) || z == x || st->cnt[z] < 2 ||
                HELD(st, g, x))
                continue;
            double rz = (double)j->w[z] / st->cnt[z];
            double dz = (double)j->w[z] / (st->cnt[z] - 1) - rz;
            /* the scan of the experts, and each candidate's sums, whether
             * summed or ruled out below (the layer's budget runs out
             * where it would if all were summed) */
            int others = nc - is_cand[z];
            if (spend(st, d->E + (long long)others * (2 + st->cnt[z]) +
                              cnt_sum - (is_cand[z] ? st->cnt[z] : 0))) {
                done = 1;
                break;
            }
            /* g ends at Lg - rz + rx or above, less what its replicas of
             * y shed (its other replicas of z grow); h at Lh - rx + ry1
             * or above. Against a clean best a move must end nowhere
             * above T, with no more copies and a lower peak. The move
             * lowers the summed excess by at most what h and y's
             * replicas shed, and raises g's: where that bound is surely
             * not below zero, the sum is not either (the move would be
             * dropped). When g holds no candidate, one bound serves
             * every y. */
            double g_least = st->load[g] - rz + rx,
                   exg = excess(st->load[g], T);
            /* (g's copy, less what g gives back for z and h for x: the
             * move's net, never under 0, is net_cost(g_cost + h_cost)) */
            int g_cost = gain(j, g, x) - refund(j, g, z) - h_refund,
                g_has = 0;
            for (int r = 0; r < ppg; r++) {
                int e = st->slot[g * ppg + r];
                g_has |= e >= 0 && is_cand[e];
            }
            /* z's other replicas grow by dz: what that adds to the
             * excess of the GPUs other than h and g (on h and g the
             * bounds leave it out, which only lowers them), and what
             * y's replicas can shed is capped by the excess there is
             * then (excess is monotone and 1-Lipschitz) */
            double z_up = 0.0;
            for (int q = st->head[z]; q >= 0;) {
                int u = q / ppg, n = 0; /* z's slots on u come together */
                for (; q >= 0 && q / ppg == u; q = st->next[q])
                    n += q != t;
                if (n > 0 && u != h && u != g)
                    z_up += excess(st->load[u] + n * dz, T) -
                            excess(st->load[u], T);
            }
            double cap = ex_rest + z_up;
            /* Without a candidate on g every y's bound is h's part less
             * the capped shed, plus g's part and z_up: at least
             * max(min_hs, min_h - cap) plus those. Summed in another
             * order than below, so with room for the rounding. */
            double g_part = excess(g_least, T) - exg + z_up,
                   least = min_hs > min_h - cap ? min_hs : min_h - cap;
            if (!g_has && g_part + least >
                              1e-9 * T + 1e-12 * (fabs(g_part) + fabs(min_h) +
                                                  fabs(min_hs) + cap + T))
                continue;
            for (int c = 0; c < nc; c++) {
                int y = cand[c].y, n = 0;
                if (y == z)
                    continue;
                double ry1 = cand[c].ry1, dy = cand[c].dy, hl = cand[c].hl,
                       gl = g_least + (double)HELD(st, g, y) * dy;
                if (best_clean(st, best) &&
                    (eplbi_surely_above(hl, T) ||
                     eplbi_surely_above(gl, T) ||
                     beaten(best, net_cost(g_cost + cand[c].h_cost, 0),
                            hl > gl ? hl : gl)))
                    continue;
                double bound = cand[c].h_part + excess(gl, T) - exg + z_up -
                               (cand[c].shed < cap ? cand[c].shed : cap);
                if (bound > 1e-9 * T)
                    continue;
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
                move m = {5, si, t, y, 0, net_cost(g_cost + cand[c].h_cost, 0),
                          delta, peak, clean};
                if (better(&m, best))
                    *best = m;
            }
        }
        for (int c = 0; c < nc; c++)
            is_cand[cand[c].y] = 0;
    }
}

/* ---- whole groups between nodes (hierarchical policy) ------------------ */

void replan_node_loads(const layer_job *j)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    for (int n = 0; n < d->N; n++) {
        st->nload[n] = 0.0;
        st->nexp[n] = 0;
    }
    for (int g = 0; g < d->G; g++) {
        double s = 0.0;
        int node = st->node_of[g * d->gs];
        for (int e = g * d->gs; e < (g + 1) * d->gs; e++) {
            int n = st->node_of[e];
            s += j->w[e];
            st->nload[n] += j->w[e];
            st->nexp[n]++;
            if (n != node)
                node = -1;
        }
        st->gload[g] = s;
        st->gnode[g] = node;
    }
}

/* Slots of group g in the layer being repaired. */
static int group_slots(const layer_job *j, int g)
{
    int n = 0;
    for (int e = g * j->d->gs; e < (g + 1) * j->d->gs; e++)
        n += j->st->cnt[e];
    return n;
}

/* A group a of node A (above its capacity: the target times its live
 * GPUs) changes node with a group b of node B, or moves alone where B has
 * the slots for its experts; a group split over nodes (its experts
 * placed where a dead GPU's node had no slot left) stays. The copies are about the slots the groups
 * leave (each becomes a new expert there), at least 2 * E / G per pair;
 * the exchange with the fewest that brings both nodes within capacity,
 * else the one that removes the most excess per copy. */
static void consider_groups(const layer_job *j, int A, move *best)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    double capA = j->target * node_live(j, A);
    if (spend(st, (long long)d->G * d->G + d->E))
        return;
    for (int a = 0; a < d->G; a++) {
        if (st->gnode[a] != A)
            continue;
        int sa = group_slots(j, a);
        for (int B = 0; B < d->N; B++) {
            if (B == A)
                continue;
            int liveB = node_live(j, B);
            double capB = j->target * liveB;
            double exA = excess(st->nload[A], capA);
            double exB = excess(st->nload[B], capB);
            /* b = -1: the group moves alone. */
            for (int b = -1; b < d->G; b++) {
                int sb;
                if (b < 0) {
                    if (st->nexp[B] + d->gs > liveB * d->ppg ||
                        st->nexp[A] - d->gs < 1)
                        continue;
                    sb = d->gs; /* slots B gives up for a's experts */
                } else {
                    if (st->gnode[b] != B)
                        continue;
                    sb = group_slots(j, b);
                }
                double gb = b < 0 ? 0.0 : st->gload[b];
                double nA = st->nload[A] - st->gload[a] + gb;
                double nB = st->nload[B] + st->gload[a] - gb;
                if (!(nA < st->nload[A]))
                    continue;
                double delta = excess(nA, capA) + excess(nB, capB) - exA - exB;
                if (!(delta < 0.0))
                    continue;
                double ra = nA / capA, rb = nB / capB;
                move m = {6, a, b, A, B, sa + sb, delta, ra > rb ? ra : rb,
                          nA <= capA && nB <= capB};
                if (better(&m, best))
                    *best = m;
            }
        }
    }
}

/* Node n's empty live slots, plus slots taken from its experts with
 * several replicas when it lacks some, go first to the experts of group
 * g (heaviest first, one replica each, on the least loaded GPU that lacks
 * the expert), then as extra replicas to the node's experts with the most
 * load per replica. */
static void fill_node(const layer_job *j, int n, int g)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg, lo = n * d->ppn, hi = lo + d->ppn;
    int free_slots = 0;
    for (int s = lo; s < hi; s++)
        free_slots += st->slot[s] < 0 && live(j, s / ppg);
    plan_layer_loads(d, j->w, st->slot, st->cnt, NULL, st->load, NULL);
    int need = g < 0 ? 0 : d->gs;
    while (free_slots < need) {
        /* The replica whose loss raises its expert's load per replica the
         * least, on the heaviest GPU holding it. */
        int x = -1;
        for (int e = 0; e < d->E; e++)
            if (st->node_of[e] == n && st->cnt[e] >= 2 &&
                (x < 0 || (double)j->w[e] / (st->cnt[e] - 1) <
                              (double)j->w[x] / (st->cnt[x] - 1)))
                x = e;
        if (x < 0)
            return; /* cannot happen: the move checked the slots */
        int at = -1;
        for (int s = lo; s < hi; s++)
            if (st->slot[s] == x &&
                (at < 0 || st->load[s / ppg] > st->load[at / ppg]))
                at = s;
        st->load[at / ppg] -= (double)j->w[x] / st->cnt[x];
        set_slot(st, at, -1);
        st->cnt[x]--;
        free_slots++;
    }
    for (;;) {
        int y = -1;
        if (g >= 0)
            for (int e = g * d->gs; e < (g + 1) * d->gs; e++)
                if (st->cnt[e] == 0 && (y < 0 || j->w[e] > j->w[y]))
                    y = e;
        if (y < 0)
            for (int e = 0; e < d->E; e++)
                if (st->node_of[e] == n &&
                    (y < 0 || (double)j->w[e] / (st->cnt[e] + 1) >
                                  (double)j->w[y] / (st->cnt[y] + 1)))
                    y = e;
        int to = -1, to_dup = -1;
        for (int s = lo; s < hi; s++) {
            int q = s / ppg;
            if (st->slot[s] >= 0 || !live(j, q))
                continue;
            if (to_dup < 0 || st->load[q] < st->load[to_dup / ppg])
                to_dup = s;
            if (!HELD(st, q, y) &&
                (to < 0 || st->load[q] < st->load[to / ppg]))
                to = s;
        }
        if (to < 0)
            to = to_dup;
        if (to < 0 || y < 0)
            return;
        st->cnt[y]++;
        set_slot(st, to, y);
        st->load[to / ppg] += (double)j->w[y] / st->cnt[y];
    }
}

/* Group a leaves node A for node B, group b (if any) goes the other way;
 * their slots empty and the two nodes fill again. */
static void apply_groups(const layer_job *j, const move *m)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int a = m->s, b = m->t, A = m->u, B = m->v;
    for (int s = 0; s < d->P; s++) {
        int e = st->slot[s];
        if (e >= 0 && (e / d->gs == a || (b >= 0 && e / d->gs == b)))
            set_slot(st, s, -1);
    }
    for (int e = a * d->gs; e < (a + 1) * d->gs; e++) {
        st->cnt[e] = 0;
        st->node_of[e] = B;
    }
    if (b >= 0)
        for (int e = b * d->gs; e < (b + 1) * d->gs; e++) {
            st->cnt[e] = 0;
            st->node_of[e] = A;
        }
    fill_node(j, B, a);
    fill_node(j, A, b);
    replan_node_loads(j);
}

/* The families, in the order the loop tries them. The families of one
 * tier compete for the best move; a tier runs only when the tiers before
 * it found none. every_over: tried from every GPU above the target,
 * heaviest first, until one gives a move (else from the heaviest only). */
typedef struct move_family {
    const char *name;
    void (*consider)(const layer_job *j, int h, move *best);
    int tier;
    int every_over;
    int scope; /* MOVES_* */
} move_family;

static const move_family families[] = {
    {"swap", consider_swaps, 0, 1, MOVES_GPU | MOVES_FIRST},
    {"reassign", consider_reassign, 0, 1, MOVES_GPU | MOVES_FIRST},
    {"duplicate", consider_duplicates, 0, 1, MOVES_GPU | MOVES_FIRST},
    {"cycle", consider_cycles, 1, 0, MOVES_GPU},
    {"swap pair", consider_swap_pairs, 2, 0, MOVES_GPU},
    {"relocate", consider_relocate, 3, 0, MOVES_GPU},
    {"groups", consider_groups, 4, 1, MOVES_NODES},
};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))

void replan_best_move(const layer_job *j, int scope, const int *over,
                      int n_over, move *best)
{
    for (int f = 0; f < N_FAMILIES && (!best || best->kind == 0);) {
        int end = f;
        while (end < N_FAMILIES && families[end].tier == families[f].tier)
            end++;
        int from = families[f].every_over ? n_over : 1, any = 0;
        for (int k = f; k < end; k++)
            any |= (families[k].scope & scope) != 0;
        for (int i = 0; any && i < from && (!best || best->kind == 0); i++)
            for (int k = f; k < end; k++)
                if (families[k].scope & scope)
                    families[k].consider(j, over[i], best);
        f = end;
    }
}

void replan_apply_move(const layer_job *j, const move *m)
{
    replan_state *st = j->st;
    if (m->kind == 6) {
        apply_groups(j, m);
    } else if (m->kind == 1 || m->kind == 4) {
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
