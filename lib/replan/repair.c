/* A domain's repair (a node, or all GPUs under the global policy or with
 * a mask): while a GPU is above the target, the best move of the table
 * (moves.c), a two-move lookahead when none helps; its restart from the
 * fresh plan's replica counts; and the placement of experts whose GPUs
 * died. */
#include "replan.h"

#include <limits.h>
#include <string.h>

static int heaviest(const layer_job *j, int g0, int g1)
{
    int h = -1;
    for (int g = g0; g < g1; g++)
        if (live(j, g) && (h < 0 || j->st->load[g] > j->st->load[h]))
            h = g;
    return h;
}

/* Expert y's node (its GPUs died) has no slot left: a slot of another
 * node, taken from an expert with several replicas, where y's group has
 * experts already (a group splits over as few nodes as it can), else on
 * the GPU that stays lightest; y lives on that node from here on. -1 when
 * no node has a slot to give. */
static int spill_slot(const layer_job *j, int y)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int ppg = d->ppg, at = -1, at_mates = 0, home = st->node_of[y];
    double bestv = 0.0;
    int *mates_on = st->nexp; /* scratch: replan_node_loads fills it later */
    for (int n = 0; n < d->N; n++)
        mates_on[n] = 0;
    for (int e = y / d->gs * d->gs; e < (y / d->gs + 1) * d->gs; e++)
        if (e != y && st->cnt[e] > 0)
            mates_on[st->node_of[e]] = 1;
    for (int s = 0; s < d->P; s++) {
        int x = st->slot[s], g = s / ppg, n = DOM_OF_SLOT(j, s);
        if (x < 0 || !live(j, g) || st->cnt[x] < 2 || n == home ||
            HELD(st, g, y))
            continue;
        int mates = mates_on[n];
        double v = st->load[g] - (double)j->w[x] / st->cnt[x] + j->w[y];
        if (at < 0 || mates > at_mates || (mates == at_mates && v < bestv)) {
            at = s;
            at_mates = mates;
            bestv = v;
        }
    }
    if (at >= 0)
        st->node_of[y] = DOM_OF_SLOT(j, at);
    return at;
}

/* Gives the empty live slots and the experts left with no slot (their
 * GPUs died) a place, on their node where its live slots allow (else on
 * another, spill_slot). 0 when some expert cannot be placed. */
int replan_place_orphans(const layer_job *j)
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
        plan_layer_loads(d, j->w, st->slot, st->cnt, NULL, st->load, NULL);
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
            if (empty < 0 && j->dom_gpus < d->M)
                empty = spill_slot(j, y);
            if (empty < 0)
                return 0;
            st->cnt[st->slot[empty]]--;
        }
        set_slot(st, empty, y);
        st->cnt[y]++;
    }
}

/* Node loads within this share of their capacity leave the repair inside
 * the node some room. */
#define SPILL_SLACK 0.005

/* The node other than n with the most room under its capacity for load
 * w and a slot to spare, in *room; -1 when none has room. */
static int spill_node(const layer_job *j, int n, double w, double *room)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int to = -1;
    for (int b = 0; b < d->N; b++) {
        int lv = node_live(j, b);
        double r = j->target * lv - st->nload[b] - w;
        if (b == n || st->nexp[b] >= lv * d->ppg || r < 0.0)
            continue;
        if (to < 0 || r > *room) {
            to = b;
            *room = r;
        }
    }
    return to;
}

/* With dead GPUs under the hierarchical policy: while a node's experts
 * weigh more than its live GPUs can take at the target (less a little
 * room for the repair inside it), experts leave it for the node with the
 * most room under its capacity that has a slot to spare. A group split
 * already goes on splitting (its experts left without a slot, which cost
 * their copy wherever they land, heaviest first; then its experts in
 * service, one copy each, against some 2 * E / G for a group exchange);
 * else the group with the most load left without a slot starts to. So
 * a node that lost slots splits one group, as the masked fresh plan does. */
void replan_spill_orphans(const layer_job *j)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    replan_node_loads(j);
    for (int n = 0; n < d->N; n++) {
        double cap = j->target * node_live(j, n) * (1.0 - SPILL_SLACK);
        for (;;) {
            if (spend(st, (long long)d->E * (d->N + 3)))
                return;
            if (!(st->nload[n] > cap) || st->nexp[n] < 2)
                break;
            double room = 0.0, over = st->nload[n] - cap;
            int y = -1, to = -1;
            /* A group split already (experts on n and elsewhere) keeps
             * splitting: its orphans, heaviest first, then its experts in
             * service (one copy each), the lightest that covers the
             * excess, else the heaviest; each one that fits elsewhere. */
            int grp = -1;
            for (int g = 0; g < d->G && grp < 0; g++) {
                int on = 0, off = 0;
                for (int e = g * d->gs; e < (g + 1) * d->gs; e++) {
                    on |= st->node_of[e] == n;
                    off |= st->node_of[e] != n;
                }
                if (on && off)
                    grp = g;
            }
            for (int e = grp * d->gs; grp >= 0 && e < (grp + 1) * d->gs; e++)
                if (st->cnt[e] == 0 && st->node_of[e] == n &&
                    (y < 0 || j->w[e] > j->w[y]) &&
                    spill_node(j, n, j->w[e], &room) >= 0)
                    y = e;
            for (int e = grp * d->gs; grp >= 0 && y < 0 && e < (grp + 1) * d->gs;
                 e++) {
                if (st->node_of[e] != n || !(j->w[e] > 0.0f) ||
                    spill_node(j, n, j->w[e], &room) < 0)
                    continue;
                int covers = j->w[e] >= over,
                    ycovers = y >= 0 && j->w[y] >= over;
                if (y < 0 || (covers && (!ycovers || j->w[e] < j->w[y])) ||
                    (!covers && !ycovers && j->w[e] > j->w[y]))
                    y = e;
            }
            /* Else the group with the most orphan load on n that fits
             * elsewhere starts to split, from its heaviest orphan. */
            if (y < 0) {
                double grp_load = 0.0;
                grp = -1;
                for (int g = 0; g < d->G; g++) {
                    double s = 0.0;
                    for (int e = g * d->gs; e < (g + 1) * d->gs; e++)
                        if (st->cnt[e] == 0 && st->node_of[e] == n &&
                            spill_node(j, n, j->w[e], &room) >= 0)
                            s += j->w[e];
                    if (s > grp_load) {
                        grp = g;
                        grp_load = s;
                    }
                }
                for (int e = grp * d->gs; grp >= 0 && e < (grp + 1) * d->gs;
                     e++)
                    if (st->cnt[e] == 0 && st->node_of[e] == n &&
                        (y < 0 || j->w[e] > j->w[y]) &&
                        spill_node(j, n, j->w[e], &room) >= 0)
                        y = e;
            }
            if (y >= 0)
                to = spill_node(j, n, j->w[y], &room);
            if (to < 0)
                break;
            if (st->cnt[y] > 0) {
                if (spend(st, d->ppn))
                    return;
                for (int q = n * d->ppn; q < (n + 1) * d->ppn; q++)
                    if (st->slot[q] == y)
                        set_slot(st, q, -1);
                st->cnt[y] = 0;
            }
            st->node_of[y] = to;
            st->nload[n] -= j->w[y];
            st->nexp[n]--;
            st->nload[to] += j->w[y];
            st->nexp[to]++;
        }
    }
}

/* Expert e's replica list (ascending slots, as replan_index_replicas
 * makes it) without slot s, and with it. The lists share next[]: a slot
 * leaves its list before it joins another. */
static void list_drop(replan_state *st, int e, int s)
{
    int *p = &st->head[e];
    while (*p != s)
        p = &st->next[*p];
    *p = st->next[s];
}

static void list_add(replan_state *st, int e, int s)
{
    int *p = &st->head[e];
    while (*p >= 0 && *p < s)
        p = &st->next[*p];
    st->next[s] = *p;
    *p = s;
}

/* GPU g's load summed again after a trial move (its value before kept
 * once in la_gpu/la_load, the first n of them); returns the new n. */
static int resum(const layer_job *j, int g, int n)
{
    replan_state *st = j->st;
    int seen = 0;
    for (int i = 0; i < n && !seen; i++)
        seen = st->la_gpu[i] == g;
    if (!seen) {
        st->la_gpu[n] = g;
        st->la_load[n++] = st->load[g];
    }
    st->load[g] = plan_gpu_load(j->d, j->w, st->slot, st->cnt, g);
    return n;
}

/* A first move of the lookahead tried and taken back: the replica lists
 * follow it, and only the GPUs whose load it changes are summed again
 * (the loads and lists a whole pass would make). Returns the GPUs
 * summed; trial_undo takes it back. */
static int trial_apply(const layer_job *j, const move *f, int32_t x,
                       int32_t y)
{
    replan_state *st = j->st;
    int ppg = j->d->ppg, n = 0;
    replan_apply_move(j, f);
    if (f->kind == 1) {
        /* x and y trade slots s and t */
        list_drop(st, x, f->s);
        list_drop(st, y, f->t);
        list_add(st, x, f->t);
        list_add(st, y, f->s);
        n = resum(j, f->s / ppg, n);
        return resum(j, f->t / ppg, n);
    }
    /* slot s from x to y: every GPU of either changes */
    list_drop(st, x, f->s);
    list_add(st, y, f->s);
    for (int q = st->head[x]; q >= 0; q = st->next[q])
        n = resum(j, q / ppg, n);
    for (int q = st->head[y]; q >= 0; q = st->next[q])
        n = resum(j, q / ppg, n);
    return n;
}

static void trial_undo(const layer_job *j, const move *f, int32_t x,
                       int32_t y, int cnt_x, int cnt_y, int n)
{
    replan_state *st = j->st;
    set_slot(st, f->s, x);
    if (f->kind == 1) {
        set_slot(st, f->t, y);
        list_drop(st, x, f->t);
        list_drop(st, y, f->s);
        list_add(st, x, f->s);
        list_add(st, y, f->t);
    } else {
        st->cnt[x] = cnt_x;
        st->cnt[f->t] = cnt_y;
        list_drop(st, f->t, f->s);
        list_add(st, x, f->s);
    }
    for (int i = 0; i < n; i++)
        st->load[st->la_gpu[i]] = st->la_load[i];
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
    replan_index_replicas(d, st);
    st->collect = &firsts;
    replan_best_move(j, MOVES_FIRST, &h, 1, NULL);
    st->collect = NULL;
    /* The cheapest pair, ties to the first move gathered first. The
     * first moves go in order of their cost (then as gathered): the pair
     * costs at least its first move, so a cheap pair found early rules
     * the dearer first moves out, and the search for a second move
     * looks only for one that makes a pair better than the best. */
    int best_i = -1, best_cost = 0, max_cost = 0, done = 0;
    move best_second = {0};
    for (int i = 0; i < firsts.n; i++)
        if (firsts.m[i].cost > max_cost)
            max_cost = firsts.m[i].cost;
    for (int c = 0; c <= max_cost && !done; c++) {
        if (best_i >= 0 && c > best_cost)
            break;
        for (int i = 0; i < firsts.n; i++) {
            const move *f = &firsts.m[i];
            if (f->cost != c ||
                (best_i >= 0 && c == best_cost && i > best_i))
                continue;
            if (spend(st, 3LL * d->P)) {
                done = 1;
                break;
            }
            /* A first move is a swap (kind 1) or a slot given to another
             * expert (kind 2): what it changes is put back by hand,
             * cheaper than a copy of the layer's [M][E] replica table per
             * try. */
            int32_t old_s = st->slot[f->s],
                    old_t = f->kind == 1 ? st->slot[f->t] : f->t;
            int cnt_x = f->kind == 2 ? st->cnt[old_s] : 0;
            int cnt_y = f->kind == 2 ? st->cnt[f->t] : 0;
            int shares = st->share_lo == g0 && st->share_hi == g1;
            int nsum = trial_apply(j, f, old_s, old_t);
            replan_refresh_shares(j, st->la_gpu, nsum, g0, g1, shares);
            int k = heaviest(j, g0, g1), over = 0;
            for (int g = g0; g < g1; g++)
                over += live(j, g) && st->load[g] > j->target;
            move second = {0};
            if (over == 1) {
                st->clean_below =
                    best_i < 0 ? INT_MAX : best_cost - c + (i < best_i);
                replan_best_move(j, MOVES_FIRST, &k, 1, &second);
                st->clean_below = 0;
            }
            int cost = c + second.cost;
            if ((over == 0 || (second.kind && second.clean)) &&
                (best_i < 0 || cost < best_cost ||
                 (cost == best_cost && i < best_i))) {
                best_i = i;
                best_cost = cost;
                best_second = second;
                if (over == 0)
                    best_second.kind = 0;
            }
            trial_undo(j, f, old_s, old_t, cnt_x, cnt_y, nsum);
            replan_refresh_shares(j, st->la_gpu, nsum, g0, g1, shares);
        }
    }
    plan_layer_loads(d, j->w, st->slot, st->cnt, NULL, st->load, NULL);
    if (best_i < 0)
        return 0;
    replan_apply_move(j, &firsts.m[best_i]);
    if (best_second.kind)
        replan_apply_move(j, &best_second);
    return 1;
}

/* Repairs the GPUs g0..g1-1 (one node, or all under the global policy)
 * of st->slot in place; 0 if it gives up. */
int replan_repair_node(const layer_job *j, int g0, int g1, int lookahead_ok)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int *over = st->order;
    for (int moves = 0;; moves++) {
        replan_late(st);
        st->share_hi = st->share_lo; /* a new step: shares made again */
        if (exhausted(st) || spend(st, 2LL * d->P))
            return 0;
        /* Only the domain's loads can have changed: its experts have no
         * replica outside it (the work is counted as the whole layer's,
         * as it was summed) */
        for (int g = g0; g < g1; g++)
            st->load[g] = plan_gpu_load(d, j->w, st->slot, st->cnt, g);
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
        replan_index_replicas(d, st);
        /* The heaviest GPU first; when no single move helps it, another
         * GPU above the target may have one (and h may be fixable after),
         * before the costlier moves for h. */
        move best = {0};
        replan_best_move(j, MOVES_GPU, over, n_over, &best);
        if (exhausted(st))
            return 0;
        if (best.kind == 0 && lookahead_ok && lookahead(j, over[0], g0, g1))
            continue;
        if (best.kind == 0 || exhausted(st))
            return 0;
        replan_apply_move(j, &best);
    }
}

/* Restarts domain n (GPUs g0..g1-1) from the fresh plan's replica counts
 * with the current placement: each GPU keeps the current experts the new
 * counts leave room for, and the remaining replicas go, heaviest first, to
 * the least loaded GPU with a free slot that lacks that expert. When the
 * loads moved enough to change replica counts, the repair that follows
 * starts from counts that fit them. */
int replan_restart_with_counts(const layer_job *j, int n, int g0, int g1,
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
    plan_layer_loads(d, j->w, st->slot, st->cnt, NULL, st->load, NULL);
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


/* Hierarchical policy: while a node holds more load than its GPUs can take
 * at the target, the best exchange of whole groups with another node
 * (moves.c); the repair inside the nodes follows. 0 when an exchange left
 * an expert without a slot (the layer takes its fallback). */
int replan_balance_nodes(const layer_job *j)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    int *over = st->order;
    replan_node_loads(j);
    for (int moves = 0; moves < d->G; moves++) {
        if (exhausted(st))
            return 1;
        int n_over = 0;
        for (int n = 0; n < d->N; n++) {
            int k = 0;
            for (int g = n * d->gn; g < (n + 1) * d->gn; g++)
                k += live(j, g);
            if (!(st->nload[n] > j->target * k))
                continue;
            int at = n_over++;
            while (at > 0 && st->nload[over[at - 1]] < st->nload[n]) {
                over[at] = over[at - 1];
                at--;
            }
            over[at] = n;
        }
        if (n_over == 0)
            break;
        move best = {0};
        replan_best_move(j, MOVES_NODES, over, n_over, &best);
        if (best.kind == 0)
            break;
        replan_apply_move(j, &best);
    }
    for (int e = 0; e < d->E; e++)
        if (st->cnt[e] <= 0)
            return 0;
    return 1;
}
