/* The migration schedule: a re-plan cut into the order an engine can
 * apply it, within a copy budget.
 *
 * An engine pays for a layer's largest GPU load (the MoE part of a step)
 * and for every expert a GPU gains (a copy of its weights). The re-plan
 * gives the target plan; here each layer's changes (slots whose expert
 * differs) are cut into units, a unit being one slot's change together
 * with the changes it needs to keep every expert on a live GPU (the new
 * home of the expert it evicts when that was the expert's last replica,
 * and so on). Per layer the units are ordered greedily: next comes the
 * unit that lowers the layer's largest GPU load most per copy without
 * ever raising it (ties: the most excess over the target's largest load
 * removed per copy, then the lowest slot). Each layer's chain of units is
 * then cut into blocks whose gain per copy falls along the chain (the
 * blocks of the concave envelope), and the blocks of all layers are merged
 * by gain per copy: the most balance per copied expert first.
 *
 * That order is walked once. A unit is taken when the per-GPU and total
 * budgets still allow it and it fits a stage (at most b copies per GPU
 * per stage; the last stage or a new one, so that the stages keep the
 * order); a unit that is not taken closes its layer (the later units of a
 * layer build on it). So the plan after any stage is every layer's chain
 * up to some unit: valid, each slot rewritten at most once, and the
 * objective (the sum over layers of the largest GPU load) never rising
 * from one stage to the next. Layers whose whole gain is below min_gain
 * keep their placement.
 *
 * The work is bounded: a layer's ordering stops evaluating units past
 * SCHED_WORK_PER_LAYER and takes its remaining changes as one unit.
 * Everything runs on the host in a fixed order: the same inputs give the
 * same schedule on every backend and device. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Evaluation work (GPU x expert terms) a layer's ordering may spend per
 * slot before its remaining changes go as one unit. */
#define SCHED_WORK_PER_SLOT 65536LL

/* Copies in the ratios' denominators are counted plus this: a unit that
 * copies nothing and gains comes first, one that copies nothing and gains
 * nothing joins the unit after it. */
#define SCHED_FREE 0.01

typedef struct unit {
    int layer;
    int first, len;  /* its changes: ch_slot[first .. first+len) */
    int copies;
    double gain;     /* the layer's largest GPU load before minus after */
    double f_after;  /* the layer's largest GPU load after it */
    int forced;      /* puts back experts of dead GPUs: stage 1, always */
} unit;

typedef struct block {
    int first, len;  /* units[first .. first+len) of one layer */
    int layer;
    double gain;
    int copies;
} block;

/* The per-layer working state (reused across layers). */
typedef struct layer_ws {
    const plan_dims *d;
    const float *w;
    const uint8_t *mask;
    int32_t *x;          /* [P] the layer as the units so far leave it */
    const int32_t *t;    /* [P] the target layer */
    int *cnt;            /* [E] live replicas in x */
    int *held;           /* [E][M] replicas in x per GPU (an expert's side
                            by side: try_bundle walks them) */
    uint64_t *hbits;     /* [E][hwords] the GPUs where held is not 0, as
                            bits: try_bundle visits only those, in order */
    int hwords;          /* (M + 63) / 64 */
    uint8_t *was;        /* [M][E] 1 where the plan in service had it */
    double *load;        /* [M] exact loads of x (slot order, double) */
    double *trial;       /* [M] loads a unit would leave */
    int *pend, npend;    /* pending slots (x != t), in slot order */
    int *thead, *tnext;  /* [E], [P]: the layer's first pending slots of
                            each target expert, in slot order (those with
                            x == t since then are skipped where read) */
    int *xhead, *xnext;  /* [E], [P]: the same by the expert in service
                            (pending slots keep it until they change) */
    int best_cycle;      /* scan_units' pick is a cycle (build_cycle) */
    int *bundle, nb;     /* the unit being built */
    int *grow, *gsave;   /* [P] a unit grown from several (slots, old ids) */
    int *gcop;           /* [M] the grown unit's copies per GPU so far */
    int *ucop, *gstamp;  /* [M] a unit tried: its copies per GPU (+ gcop) */
    int most;            /* the unit tried: most copies on one GPU */
    uint8_t *hot;        /* [M] above the goal (scan_units' filter) */
    uint8_t *hotexp;     /* [E] held by a GPU above the goal */
    int cap;             /* copies per GPU a unit should keep within (the
                            stage or the budget; 0: none) */
    int *inb;            /* [P] stamp: slot in the bundle */
    int *aff, naff;      /* experts whose replica count a unit changes */
    int *inaff;          /* [E] stamp */
    int stamp;
    long long work;
    int32_t *saved;      /* [P] the ordering's scratch (order_layer) */
} layer_ws;

static int is_live(const layer_ws *z, int g)
{
    return !z->mask || z->mask[g];
}

/* Exact loads of z->x into z->load (as the metrics sum them); returns the
 * largest over live GPUs. */
static double exact_loads(layer_ws *z)
{
    return plan_layer_loads(z->d, z->w, z->x, z->cnt, z->mask, z->load, NULL);
}

static void change(layer_ws *z, int s, int e)
{
    int g = s / z->d->ppg, old = z->x[s];
    uint64_t bit = (uint64_t)1 << (g % 64);
    if (old >= 0) {
        if (--z->held[(size_t)old * z->d->M + g] == 0)
            z->hbits[(size_t)old * z->hwords + g / 64] &= ~bit;
        z->cnt[old]--;
    }
    z->x[s] = e;
    if (e >= 0) {
        if (z->held[(size_t)e * z->d->M + g]++ == 0)
            z->hbits[(size_t)e * z->hwords + g / 64] |= bit;
        z->cnt[e]++;
    }
}

/* Expert e's GPUs with held not 0, in order: g = -1 to start, -1 at the
 * end. */
static inline int next_holder(const layer_ws *z, int e, int g)
{
    const uint64_t *bits = z->hbits + (size_t)e * z->hwords;
    int w = (g + 1) / 64;
    if (w >= z->hwords)
        return -1;
    uint64_t m = bits[w] & (~(uint64_t)0 << ((g + 1) % 64));
    while (!m) {
        if (++w >= z->hwords)
            return -1;
        m = bits[w];
    }
    return w * 64 + __builtin_ctzll(m);
}

/* Copies of the bundle's changes, applied in order to x (which they are
 * when this is called): an expert new on the GPU, and not already there. */
static int copy_of(const layer_ws *z, int s)
{
    int g = s / z->d->ppg, e = z->t[s];
    size_t k = (size_t)e * z->d->M + g;
    /* (an expert the GPU held in service but lost to an earlier unit is
     * a copy again: the engine evicted it at that unit's stage) */
    return e >= 0 && z->held[k] == 0;
}

/* Appends pending slot s to the unit being built, with the changes that
 * give each expert it leaves without a replica its new home (the lowest
 * pending slot the target gives that expert), and so on. */
static void add_closure(layer_ws *z, int s)
{
    int at = s;
    while (at >= 0 && z->inb[at] != z->stamp) {
        z->bundle[z->nb++] = at;
        z->inb[at] = z->stamp;
        int gone = z->x[at];
        at = -1;
        if (gone < 0)
            break;
        /* replicas of `gone` left after the unit's changes */
        int left = z->cnt[gone];
        for (int i = 0; i < z->nb; i++) {
            int q = z->bundle[i];
            left -= z->x[q] == gone;
            left += z->t[q] == gone;
        }
        z->work += z->nb;
        if (left > 0)
            break;
        /* the lowest pending slot the target gives `gone` (work counted
         * as the scan of the pending list it replaces) */
        for (int q = z->thead[gone]; q >= 0; q = z->tnext[q])
            if (z->inb[q] != z->stamp && z->x[q] != z->t[q]) {
                at = q;
                break;
            }
        z->work += z->npend;
    }
}

/* The unit led by pending slot s. */
static void build_bundle(layer_ws *z, int s)
{
    z->stamp++;
    z->nb = 0;
    add_closure(z, s);
}

/* The unit led by pending slot s that leaves every replica count as it
 * is: s's change, then a pending slot that gives up a replica of the
 * expert s brings (the lowest), and so on until the expert s gave up comes
 * back. Such a unit changes the loads of its own GPUs only: where the
 * target re-pairs GPUs (alternating cycles), a cycle that clears the
 * heaviest GPU gains alone where each of its slots alone would raise an
 * expert's other GPUs. 0 when the chain does not close. */
static int build_cycle(layer_ws *z, int s)
{
    z->stamp++;
    z->nb = 0;
    int back = z->x[s], at = s;
    while (back >= 0) {
        z->bundle[z->nb++] = at;
        z->inb[at] = z->stamp;
        int in = z->t[at];
        if (in == back)
            return 1;
        at = -1;
        for (int q = in >= 0 ? z->xhead[in] : -1; q >= 0; q = z->xnext[q]) {
            z->work++;
            if (z->inb[q] != z->stamp && z->x[q] == in && z->t[q] != in) {
                at = q;
                break;
            }
        }
        if (at < 0)
            return 0;
    }
    return 0;
}

/* What applying the bundle would do: the layer's new largest load and the
 * excess over `goal` it removes; copies into *copies. x is left as it
 * was. Loads are the exact ones plus the changed experts' terms. */
static double try_bundle(layer_ws *z, double goal, double *progress,
                         int *copies)
{
    const plan_dims *d = z->d;
    z->stamp++;
    z->naff = 0;
    for (int i = 0; i < z->nb; i++) {
        int q = z->bundle[i], es[2] = {z->x[q], z->t[q]};
        for (int k = 0; k < 2; k++)
            if (es[k] >= 0 && z->inaff[es[k]] != z->stamp) {
                z->inaff[es[k]] = z->stamp;
                z->aff[z->naff++] = es[k];
            }
    }
    memcpy(z->trial, z->load, (size_t)d->M * sizeof(double));
    z->work += d->M;
    for (int a = 0; a < z->naff; a++) {
        int e = z->aff[a];
        const int *he = z->held + (size_t)e * d->M;
        for (int g = next_holder(z, e, -1); g >= 0; g = next_holder(z, e, g))
            z->trial[g] -= (double)z->w[e] * he[g] / z->cnt[e];
    }
    int c = 0, most = 0;
    for (int i = 0; i < z->nb; i++) {
        int q = z->bundle[i], g = q / d->ppg, cq = copy_of(z, q);
        c += cq;
        if (z->gstamp[g] != z->stamp) {
            z->gstamp[g] = z->stamp;
            z->ucop[g] = z->gcop[g];
        }
        z->ucop[g] += cq;
        if (z->ucop[g] > most)
            most = z->ucop[g];
        change(z, q, z->t[q]);
    }
    z->most = most;
    for (int a = 0; a < z->naff; a++) {
        int e = z->aff[a];
        const int *he = z->held + (size_t)e * d->M;
        for (int g = next_holder(z, e, -1); g >= 0 && z->cnt[e] > 0;
             g = next_holder(z, e, g))
            z->trial[g] += (double)z->w[e] * he[g] / z->cnt[e];
    }
    z->work += (long long)z->naff * d->M * 2;
    double peak = 0.0, ex_before = 0.0, ex_after = 0.0;
    for (int g = 0; g < d->M; g++) {
        if (!is_live(z, g))
            continue;
        if (z->trial[g] > peak)
            peak = z->trial[g];
        if (z->load[g] > goal)
            ex_before += z->load[g] - goal;
        if (z->trial[g] > goal)
            ex_after += z->trial[g] - goal;
    }
    *progress = ex_before - ex_after;
    *copies = c;
    return peak;
}

/* A unit's figures, compared: gain per copy, then excess removed per
 * copy, then the lower slot (the caller's scan order). 1 when a beats b. */
static int better(double ga, double pa, int ca, double gb, double pb, int cb)
{
    double ra = ga / (ca + SCHED_FREE), rb = gb / (cb + SCHED_FREE);
    double tol = 1e-12 * (ra > rb ? ra : rb);
    if (ra > rb + tol)
        return 1;
    if (rb > ra + tol)
        return 0;
    return pa / (ca + SCHED_FREE) > pb / (cb + SCHED_FREE);
}

typedef struct sched_build {
    unit *units;
    int nunits;
    int *ch_slot;    /* [2*L*P] changes (the chains' L*P at most, then the
                        greedy copies'): slot within the layer */
    int32_t *ch_new; /* the expert it takes */
    uint8_t *ch_copy;
    int nch;
} sched_build;

/* Applies the bundle for good, records it as a unit. */
static void commit_bundle(layer_ws *z, sched_build *b, int layer, int forced,
                          double f_before)
{
    unit *u = &b->units[b->nunits++];
    u->layer = layer;
    u->first = b->nch;
    u->len = z->nb;
    u->copies = 0;
    u->forced = forced;
    for (int i = 0; i < z->nb; i++) {
        int q = z->bundle[i];
        int c = copy_of(z, q);
        b->ch_slot[b->nch] = q;
        b->ch_new[b->nch] = z->t[q];
        b->ch_copy[b->nch++] = (uint8_t)c;
        u->copies += c;
        change(z, q, z->t[q]);
    }
    /* drop the bundle's slots from the pending list (order kept) */
    int k = 0;
    for (int i = 0; i < z->npend; i++)
        if (z->x[z->pend[i]] != z->t[z->pend[i]])
            z->pend[k++] = z->pend[i];
    z->npend = k;
    u->f_after = exact_loads(z);
    u->gain = f_before - u->f_after;
}

static void undo_bundle(layer_ws *z, const int32_t *before)
{
    for (int i = z->nb - 1; i >= 0; i--)
        change(z, z->bundle[i], before[i]);
}

/* try_bundle on the bundle built, undone (saved: scratch); *within: 1
 * when it keeps to the copies per GPU a unit may take (z->cap). */
static double try_unit(layer_ws *z, double goal, int32_t *saved,
                       double *progress, int *copies, int *within)
{
    for (int k = 0; k < z->nb; k++)
        saved[k] = z->x[z->bundle[k]];
    double peak = try_bundle(z, goal, progress, copies);
    undo_bundle(z, saved);
    *within = !z->cap || z->most <= z->cap;
    return peak;
}

/* The pending unit to take next (its leading slot), or -1. mode 0: the
 * best gain per copy among those that do not raise the layer's largest
 * load f; mode 1: the one that leaves the largest load lowest (ties:
 * fewer copies, then more excess removed). Slots already at the target
 * (inside a unit being grown) are skipped. */
static int scan_units(layer_ws *z, double f, double goal, int32_t *saved,
                      int mode)
{
    long long budget = SCHED_WORK_PER_SLOT * z->d->P;
    int best = -1, best_c = 0, best_in = 0;
    double best_g = 0.0, best_p = 0.0, best_peak = 0.0;
    /* Mode 0 looks only at units led by a slot that touches a GPU above
     * the goal (on it, or an expert it holds): only those lower the
     * excess; the others wait for a grown unit. */
    if (mode == 0) {
        const plan_dims *d = z->d;
        memset(z->hotexp, 0, (size_t)d->E);
        for (int g = 0; g < d->M; g++) {
            z->hot[g] = is_live(z, g) && z->load[g] > goal;
            for (int r = 0; z->hot[g] && r < d->ppg; r++)
                if (z->x[g * d->ppg + r] >= 0)
                    z->hotexp[z->x[g * d->ppg + r]] = 1;
        }
        z->work += d->M + d->E;
    }
    for (int i = 0; i < z->npend && z->work <= budget; i++) {
        int s = z->pend[i];
        if (z->x[s] == z->t[s])
            continue;
        if (mode == 0 && !z->hot[s / z->d->ppg] &&
            !(z->x[s] >= 0 && z->hotexp[z->x[s]]) &&
            !(z->t[s] >= 0 && z->hotexp[z->t[s]]))
            continue;
        build_bundle(z, s);
        double prog;
        int c, within, take, cycle = 0;
        double peak = try_unit(z, goal, saved, &prog, &c, &within);
        /* a unit over the cap could never be staged: in mode 0 it is
         * left for a grown unit, in mode 1 one within the cap comes
         * first */
        if (mode == 0 && !(within && peak <= f) && build_cycle(z, s)) {
            /* the plain unit raises the largest load or copies past
             * the cap: the cycle instead */
            peak = try_unit(z, goal, saved, &prog, &c, &within);
            cycle = 1;
        }
        if (mode == 0)
            take = within && peak <= f &&
                   (best < 0 || better(f - peak, prog, c, best_g, best_p,
                                       best_c));
        else
            take = best < 0 || within > best_in ||
                   (within == best_in &&
                    (peak < best_peak ||
                     (peak == best_peak &&
                      (c < best_c || (c == best_c && prog > best_p)))));
        if (take) {
            best = s;
            z->best_cycle = cycle;
            best_in = within;
            best_g = f - peak;
            best_p = prog;
            best_c = c;
            best_peak = peak;
        }
    }
    return best;
}

/* One layer's chain of units. Returns the layer's largest load once the
 * plan in service is on its live GPUs (dead GPUs cleared, their experts
 * put back: the forced unit). */
static double order_layer(layer_ws *z, sched_build *b, int layer,
                          const int32_t *cur, int32_t *saved,
                          double *f_start)
{
    const plan_dims *d = z->d;
    memset(z->cnt, 0, (size_t)d->E * sizeof(int));
    memset(z->held, 0, (size_t)d->M * d->E * sizeof(int));
    memset(z->hbits, 0, (size_t)d->E * z->hwords * sizeof(uint64_t));
    memset(z->was, 0, (size_t)d->M * d->E);
    for (int s = 0; s < d->P; s++) {
        int g = s / d->ppg, e = cur[s];
        z->x[s] = -1;
        if (e >= 0 && is_live(z, g)) {
            z->was[(size_t)g * d->E + e] = 1;
            change(z, s, e);
        }
    }
    z->npend = 0;
    for (int s = 0; s < d->P; s++)
        if (z->x[s] != z->t[s] && is_live(z, s / d->ppg))
            z->pend[z->npend++] = s;
    /* Pending slots only leave the list (a slot whose change is undone
     * comes back to it, as it was in this list): the index by target
     * expert is made once. */
    for (int e = 0; e < d->E; e++)
        z->thead[e] = z->xhead[e] = -1;
    for (int i = z->npend - 1; i >= 0; i--) {
        int q = z->pend[i];
        if (z->t[q] >= 0) {
            z->tnext[q] = z->thead[z->t[q]];
            z->thead[z->t[q]] = q;
        }
        if (z->x[q] >= 0) {
            z->xnext[q] = z->xhead[z->x[q]];
            z->xhead[z->x[q]] = q;
        }
    }
    double f = exact_loads(z);
    *f_start = f;

    /* Experts with no live replica (their GPUs died) are put back first,
     * in one forced unit (stage 1, whatever the stage size). */
    z->stamp++;
    z->nb = 0;
    for (int e = 0; e < d->E; e++) {
        if (z->cnt[e] > 0)
            continue;
        int have = 0;
        for (int i = 0; i < z->nb && !have; i++)
            have = z->t[z->bundle[i]] == e;
        /* its new home on the GPU with the fewest of these so far */
        int pick = -1, fewest = 0;
        for (int i = 0; i < z->npend && !have; i++) {
            int q = z->pend[i];
            if (z->t[q] != e || z->inb[q] == z->stamp)
                continue;
            int on = 0;
            for (int k = 0; k < z->nb; k++)
                on += z->bundle[k] / d->ppg == q / d->ppg;
            if (pick < 0 || on < fewest) {
                pick = q;
                fewest = on;
            }
        }
        if (pick >= 0)
            add_closure(z, pick);
    }
    /* Empty live slots (a GPU back from the dead) are filled there too:
     * a plan with an empty slot on a GPU that holds experts is not one. */
    for (int i = 0; i < z->npend; i++)
        if (z->x[z->pend[i]] < 0 && z->inb[z->pend[i]] != z->stamp)
            add_closure(z, z->pend[i]);
    int forced = z->nb > 0;
    if (forced) {
        commit_bundle(z, b, layer, 1, f);
        f = b->units[b->nunits - 1].f_after;
    }

    /* The target's largest load: the goal the excess is measured against. */
    double goal = 0.0;
    {
        long long w0 = z->work;
        for (int i = 0; i < z->npend; i++)
            saved[i] = z->x[z->pend[i]];
        int n = z->npend;
        for (int i = 0; i < n; i++)
            change(z, z->pend[i], z->t[z->pend[i]]);
        goal = exact_loads(z);
        for (int i = n - 1; i >= 0; i--)
            change(z, z->pend[i], saved[i]);
        exact_loads(z);
        z->work = w0;
    }

    long long budget = SCHED_WORK_PER_SLOT * d->P;
    z->work = 0;
    while (z->npend > 0) {
        int best = z->work <= budget ? scan_units(z, f, goal, saved, 0) : -1;
        if (best >= 0) {
            if (!z->best_cycle || !build_cycle(z, best))
                build_bundle(z, best);
            for (int k = 0; k < z->nb; k++)
                saved[k] = z->x[z->bundle[k]];
            commit_bundle(z, b, layer, 0, f);
            unit *u = &b->units[b->nunits - 1];
            if (u->f_after <= f) {
                f = u->f_after;
                continue;
            }
            /* the exact sums rose where the estimate did not (rounding):
             * take the unit back; the grown unit below checks exactly */
            undo_bundle(z, saved);
            b->nunits--;
            b->nch -= z->nb;
            z->npend = 0;
            for (int s = 0; s < d->P; s++)
                if (z->x[s] != z->t[s] && is_live(z, s / d->ppg))
                    z->pend[z->npend++] = s;
            exact_loads(z);
        }
        /* No unit lowers the excess any more. At or below the target's
         * largest load the rest of the changes gain nothing: the layer
         * stays (fewer copies, no higher load); so it does when the
         * target is worse. */
        if (!(goal < f))
            break;
        /* No single unit keeps the largest load from rising: grow one from
         * the unit that leaves it lowest, adding units so, until it is no
         * higher than before (all of them reach the target, which is not);
         * past the work budget the rest joins at once. */
        int ng = 0;
        double gf = f;
        int *grow = z->grow, *gsave = z->gsave, first = 1;
        while (first || gf > f) {
            first = 0;
            int u = z->work <= budget ? scan_units(z, f, goal, saved, 1) : -1;
            int n0 = ng;
            if (u >= 0) {
                build_bundle(z, u);
                for (int k = 0; k < z->nb; k++)
                    grow[ng++] = z->bundle[k];
            } else {
                for (int i = 0; i < z->npend; i++)
                    if (z->x[z->pend[i]] != z->t[z->pend[i]])
                        grow[ng++] = z->pend[i];
            }
            for (int k = n0; k < ng; k++) {
                gsave[k] = z->x[grow[k]];
                z->gcop[grow[k] / d->ppg] += copy_of(z, grow[k]);
                change(z, grow[k], z->t[grow[k]]);
            }
            gf = exact_loads(z);
            if (u < 0)
                break;
        }
        for (int k = ng - 1; k >= 0; k--)
            change(z, grow[k], gsave[k]);
        memset(z->gcop, 0, (size_t)d->M * sizeof(int));
        exact_loads(z);
        if (ng == 0)
            break; /* nothing left to grow from: the layer stays */
        z->nb = ng;
        memcpy(z->bundle, grow, (size_t)ng * sizeof(int));
        commit_bundle(z, b, layer, 0, f);
        f = b->units[b->nunits - 1].f_after;
    }
    return f;
}

/* Gain per copy, the order's key. */
static double ratio(double gain, int copies)
{
    return gain / (copies + SCHED_FREE);
}

/* Blocks of one layer's units [u0, u1) with falling gain per copy (the
 * upper concave envelope of the layer's gain against its copies). */
static int make_blocks(const unit *units, int u0, int u1, block *out)
{
    int n = 0;
    for (int i = u0; i < u1; i++) {
        block bl = {i, 1, units[i].layer, units[i].gain, units[i].copies};
        out[n++] = bl;
        while (n >= 2 && ratio(out[n - 2].gain, out[n - 2].copies) <=
                             ratio(out[n - 1].gain, out[n - 1].copies)) {
            out[n - 2].len += out[n - 1].len;
            out[n - 2].gain += out[n - 1].gain;
            out[n - 2].copies += out[n - 1].copies;
            n--;
        }
    }
    return n;
}

/* Most gain per copy first; ties by layer, then chain position. */
static int block_cmp(const void *pa, const void *pb)
{
    const block *a = pa, *b = pb;
    double ra = ratio(a->gain, a->copies), rb = ratio(b->gain, b->copies);
    if (ra != rb)
        return ra > rb ? -1 : 1;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return (a->first > b->first) - (a->first < b->first);
}

void sched_out_free(sched_out *o)
{
    if (!o)
        return;
    free(o->stage_of_slot);
    free(o->stages);
    free(o->layer_gain);
    free(o->layer_copies);
    free(o->layer_order);
    memset(o, 0, sizeof *o);
}

/* Layers by gain per copy of their whole change: layers that change
 * first, most gain per copy first, then index. */
typedef struct layer_key {
    int moves;
    double r;
    int32_t layer;
} layer_key;

static int layer_cmp(const void *pa, const void *pb)
{
    const layer_key *a = pa, *b = pb;
    if (a->moves != b->moves)
        return a->moves ? -1 : 1;
    if (a->r != b->r)
        return a->r > b->r ? -1 : 1;
    return (a->layer > b->layer) - (a->layer < b->layer);
}

/* The walk's state: budgets spent, stages and their copies per GPU. */
typedef struct walk {
    const plan_dims *d;
    const sched_opts *o;
    const sched_build *b;
    int *per_gpu;     /* [M] copies taken so far */
    int *ucnt, *ustamp; /* [M] the unit in hand's copies per GPU */
    int *stage_gpu;   /* [cap][M] copies per stage and GPU */
    int nst, cap;
    long long total;
} walk;

/* Room for one more stage row; 0 when memory ran out. */
static int walk_grow(walk *k)
{
    if (k->nst == k->cap) {
        int nc = k->cap ? 2 * k->cap : 16;
        int *ns = realloc(k->stage_gpu, (size_t)nc * k->d->M * sizeof(int));
        if (!ns)
            return 0;
        k->stage_gpu = ns;
        k->cap = nc;
    }
    memset(k->stage_gpu + (size_t)k->nst * k->d->M, 0,
           (size_t)k->d->M * sizeof(int));
    k->nst++;
    return 1;
}

/* The stage unit ui can go to (the last one when it has room and is not
 * before `from`, else a new one),
 * or 0 when the budgets leave it out. Its copies per GPU are in ucnt. */
static int walk_place(walk *k, int ui, int from)
{
    const unit *u = &k->b->units[ui];
    const int *slot = k->b->ch_slot + u->first;
    const uint8_t *cp = k->b->ch_copy + u->first;
    int ppg = k->d->ppg, bst = k->o->stage_per_gpu;
    for (int c = 0; c < u->len; c++) {
        int g = slot[c] / ppg;
        if (k->ustamp[g] != ui + 1) {
            k->ustamp[g] = ui + 1;
            k->ucnt[g] = 0;
        }
        k->ucnt[g] += cp[c];
    }
    if (!u->forced && (k->o->max_per_gpu == 0 || k->o->max_total == 0))
        return 0; /* a budget of 0: nothing moves */
    if (k->o->max_total >= 0 && k->total + u->copies > k->o->max_total)
        return 0;
    for (int c = 0; c < u->len; c++) {
        int g = slot[c] / ppg;
        if ((k->o->max_per_gpu >= 0 &&
             k->per_gpu[g] + k->ucnt[g] > k->o->max_per_gpu) ||
            (bst > 0 && !u->forced && k->ucnt[g] > bst))
            return 0;
    }
    /* the dead GPUs' experts go back in stage 1 whatever its size: the
     * plan is not valid without them */
    if (bst <= 0 || u->forced)
        return 1;
    /* the last stage or a new one (next fit): the stages keep the walk's
     * order, most gain per copy first */
    int st = from < k->nst ? k->nst : from;
    for (; st <= k->nst; st++) {
        const int *row = k->stage_gpu + (size_t)(st - 1) * k->d->M;
        int room = 1;
        for (int c = 0; c < u->len && room; c++)
            room = row[slot[c] / ppg] + k->ucnt[slot[c] / ppg] <= bst;
        if (room)
            break;
    }
    return st;
}

static void walk_take(walk *k, int ui, int st)
{
    const unit *u = &k->b->units[ui];
    for (int c = u->first; c < u->first + u->len; c++) {
        int g = k->b->ch_slot[c] / k->d->ppg;
        if (k->ustamp[g] == ui + 1 && k->ucnt[g]) {
            k->per_gpu[g] += k->ucnt[g];
            k->stage_gpu[(size_t)(st - 1) * k->d->M + g] += k->ucnt[g];
            k->ucnt[g] = 0;
        }
    }
    k->total += u->copies;
}

/* A walk kept aside (the budgets' two passes): the units and changes it
 * appended, what it took and its stages. */
typedef struct walk_snap {
    int nunits, nch, nst;
    long long total;
    unit *units;
    int *ch_slot;
    int32_t *ch_new;
    uint8_t *ch_copy;
    int *taken, *last_stage, *per_gpu, *stage_gpu;
} walk_snap;

static void snap_free(walk_snap *s)
{
    free(s->units);
    free(s->ch_slot);
    free(s->ch_new);
    free(s->ch_copy);
    free(s->taken);
    free(s->last_stage);
    free(s->per_gpu);
    free(s->stage_gpu);
    memset(s, 0, sizeof *s);
}

/* 0 when memory ran out. */
static int snap_take(walk_snap *s, const sched_build *b, const walk *k,
                     const int *taken, const int *last_stage, int base_units,
                     int base_ch, int L)
{
    int M = k->d->M, nu = b->nunits - base_units, nc = b->nch - base_ch;
    snap_free(s);
    s->nunits = b->nunits;
    s->nch = b->nch;
    s->nst = k->nst;
    s->total = k->total;
    s->units = malloc(((size_t)nu + 1) * sizeof(unit));
    s->ch_slot = malloc(((size_t)nc + 1) * sizeof(int));
    s->ch_new = malloc(((size_t)nc + 1) * sizeof(int32_t));
    s->ch_copy = malloc((size_t)nc + 1);
    s->taken = malloc(((size_t)b->nunits + 1) * sizeof(int));
    s->last_stage = malloc((size_t)L * sizeof(int));
    s->per_gpu = malloc((size_t)M * sizeof(int));
    s->stage_gpu = malloc(((size_t)k->nst * M + 1) * sizeof(int));
    if (!s->units || !s->ch_slot || !s->ch_new || !s->ch_copy ||
        !s->taken || !s->last_stage || !s->per_gpu || !s->stage_gpu)
        return 0;
    memcpy(s->units, b->units + base_units, (size_t)nu * sizeof(unit));
    memcpy(s->ch_slot, b->ch_slot + base_ch, (size_t)nc * sizeof(int));
    memcpy(s->ch_new, b->ch_new + base_ch, (size_t)nc * sizeof(int32_t));
    memcpy(s->ch_copy, b->ch_copy + base_ch, (size_t)nc);
    memcpy(s->taken, taken, (size_t)b->nunits * sizeof(int));
    memcpy(s->last_stage, last_stage, (size_t)L * sizeof(int));
    memcpy(s->per_gpu, k->per_gpu, (size_t)M * sizeof(int));
    if (k->nst)
        memcpy(s->stage_gpu, k->stage_gpu, (size_t)k->nst * M * sizeof(int));
    return 1;
}

static int snap_restore(const walk_snap *s, sched_build *b, walk *k,
                        int *taken, int *last_stage, int base_units,
                        int base_ch, int L)
{
    int M = k->d->M, nu = s->nunits - base_units, nc = s->nch - base_ch;
    if (s->nst > k->cap) {
        int *ns = realloc(k->stage_gpu, (size_t)s->nst * M * sizeof(int));
        if (!ns)
            return 0;
        k->stage_gpu = ns;
        k->cap = s->nst;
    }
    memcpy(b->units + base_units, s->units, (size_t)nu * sizeof(unit));
    memcpy(b->ch_slot + base_ch, s->ch_slot, (size_t)nc * sizeof(int));
    memcpy(b->ch_new + base_ch, s->ch_new, (size_t)nc * sizeof(int32_t));
    memcpy(b->ch_copy + base_ch, s->ch_copy, (size_t)nc);
    memset(taken, 0, (size_t)(b->nunits > s->nunits ? b->nunits
                                                     : s->nunits) *
                         sizeof(int));
    memcpy(taken, s->taken, (size_t)s->nunits * sizeof(int));
    memcpy(last_stage, s->last_stage, (size_t)L * sizeof(int));
    memcpy(k->per_gpu, s->per_gpu, (size_t)M * sizeof(int));
    if (s->nst)
        memcpy(k->stage_gpu, s->stage_gpu, (size_t)s->nst * M * sizeof(int));
    b->nunits = s->nunits;
    b->nch = s->nch;
    k->nst = s->nst;
    k->total = s->total;
    return 1;
}

/* Work (GPU terms) the greedy copies may spend per slot of the plan. */
#define GREEDY_WORK_PER_SLOT 16384LL

/* Greedy copies (greedy.c) with the budget the walk left, from the plan
 * its units make; each becomes a unit of its own, staged after its
 * layer's last one. */
static int walk_greedy(const plan_dims *d, const float *weight,
                       const int32_t *current, const uint8_t *mask,
                       const sched_opts *o, sched_build *b, walk *k,
                       int *taken, int *last_stage, int32_t *gplan,
                       uint8_t *gfrozen, greedy_copy *gcopies,
                       const int *still, int rewrite,
                       eplbi_threads *threads)
{
    size_t LP = (size_t)d->L * d->P;
    memcpy(gplan, current, LP * sizeof(int32_t));
    memset(gfrozen, 0, LP);
    /* layers min_gain keeps where they are take no greedy copy */
    for (int l = 0; l < d->L; l++)
        if (still[l])
            memset(gfrozen + (size_t)l * d->P, 1, (size_t)d->P);
    for (size_t q = 0; mask && q < LP; q++)
        if (!mask[(q % d->P) / d->ppg]) {
            gplan[q] = -1;
            gfrozen[q] = 1;
        }
    for (int ui = 0; ui < b->nunits; ui++)
        for (int c = b->units[ui].first;
             taken[ui] && c < b->units[ui].first + b->units[ui].len; c++) {
            size_t q = (size_t)b->units[ui].layer * d->P + b->ch_slot[c];
            gplan[q] = b->ch_new[c];
            gfrozen[q] = 1;
        }
    int *left = malloc((size_t)d->M * sizeof(int));
    if (!left)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int g = 0; g < d->M; g++)
        left[g] = o->max_per_gpu > 0 ? o->max_per_gpu - k->per_gpu[g] : -1;
    long long lt = o->max_total > 0 ? o->max_total - k->total : -1;
    int n = 0;
    int rc = greedy_copies_fill(d, weight, mask, current, gplan, gfrozen,
                                rewrite, left, lt,
                                GREEDY_WORK_PER_SLOT * (long long)LP,
                                threads, gcopies, &n);
    free(left);
    if (rc)
        return rc;
    /* With rewrites, a slot's last copy is its one change (an earlier one
     * never reaches the engine): the earlier ones are dropped. Each
     * layer's last copy stays, with the layer's final largest load; the
     * copies in between carry loads of a plan that is not staged, which
     * only a schedule of one stage leaves unread (the caller's rule). */
    uint8_t *later = NULL;
    if (rewrite) {
        later = calloc(LP, 1);
        if (!later)
            return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (int i = n - 1; rewrite && i >= 0; i--) {
        size_t q = (size_t)gcopies[i].layer * d->P + gcopies[i].slot;
        if (later[q])
            gcopies[i].layer = -1;
        later[q] = 1;
    }
    free(later);
    for (int i = 0; i < n; i++) {
        const greedy_copy *gc = &gcopies[i];
        if (gc->layer < 0)
            continue;
        int ui = b->nunits, l = gc->layer;
        unit *u = &b->units[b->nunits++];
        u->layer = l;
        u->first = b->nch;
        u->len = 1;
        u->copies = 1;
        u->gain = gc->gain;
        u->f_after = gc->f_after;
        u->forced = 0;
        b->ch_slot[b->nch] = gc->slot;
        b->ch_new[b->nch] = gc->expert;
        b->ch_copy[b->nch++] = 1;
        int st = walk_place(k, ui, last_stage[l] > 0 ? last_stage[l] : 1);
        if (!st)
            return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "schedule: a greedy "
                              "copy over its budget (a library bug)");
        if (st > k->nst && !walk_grow(k))
            return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
        walk_take(k, ui, st);
        taken[ui] = st;
        last_stage[l] = st;
    }
    return EPLB_OK;
}

/* A worker's layer workspace (with the `saved` buffer of its ordering);
 * 0 when some array cannot be had (layer_ws_free cleans up). */
static int layer_ws_init(layer_ws *z, const plan_dims *d,
                         const uint8_t *mask, int cap)
{
    int P = d->P, E = d->E, M = d->M;
    memset(z, 0, sizeof *z);
    z->d = d;
    z->mask = mask;
    z->cap = cap;
    z->x = malloc((size_t)P * sizeof(int32_t));
    z->cnt = malloc((size_t)E * sizeof(int));
    z->held = malloc((size_t)M * E * sizeof(int));
    z->hwords = (M + 63) / 64;
    z->hbits = malloc((size_t)E * z->hwords * sizeof(uint64_t));
    z->was = malloc((size_t)M * E);
    z->load = malloc((size_t)M * sizeof(double));
    z->trial = malloc((size_t)M * sizeof(double));
    z->pend = malloc((size_t)P * sizeof(int));
    z->thead = malloc((size_t)E * sizeof(int));
    z->tnext = malloc((size_t)P * sizeof(int));
    z->xhead = malloc((size_t)E * sizeof(int));
    z->xnext = malloc((size_t)P * sizeof(int));
    z->bundle = malloc((size_t)P * sizeof(int));
    z->grow = malloc((size_t)P * sizeof(int));
    z->gcop = calloc((size_t)M, sizeof(int));
    z->ucop = calloc((size_t)M, sizeof(int));
    z->gstamp = calloc((size_t)M, sizeof(int));
    z->hot = calloc((size_t)M, 1);
    z->hotexp = calloc((size_t)E, 1);
    z->gsave = malloc((size_t)P * sizeof(int));
    z->inb = calloc((size_t)P, sizeof(int));
    z->aff = malloc((size_t)(2 * P + E) * sizeof(int));
    z->inaff = calloc((size_t)E, sizeof(int));
    z->saved = malloc((size_t)P * sizeof(int32_t));
    return z->x && z->cnt && z->held && z->hbits && z->was && z->load && z->trial &&
           z->pend && z->thead && z->tnext && z->xhead && z->xnext &&
           z->bundle && z->grow && z->gsave && z->gcop &&
           z->ucop && z->gstamp && z->hot && z->hotexp && z->inb &&
           z->aff && z->inaff && z->saved;
}

static void layer_ws_free(layer_ws *z)
{
    free(z->x);
    free(z->cnt);
    free(z->held);
    free(z->hbits);
    free(z->was);
    free(z->load);
    free(z->trial);
    free(z->pend);
    free(z->thead);
    free(z->tnext);
    free(z->xhead);
    free(z->xnext);
    free(z->bundle);
    free(z->grow);
    free(z->gsave);
    free(z->gcop);
    free(z->ucop);
    free(z->gstamp);
    free(z->hot);
    free(z->hotexp);
    free(z->inb);
    free(z->aff);
    free(z->inaff);
    free(z->saved);
    memset(z, 0, sizeof *z);
}

/* The layers' orderings, in parallel: layer l writes its units and
 * changes into its own region of the shared arrays (units from
 * l * (P + 1), changes from l * P: a layer has at most P changes and one
 * unit more), gathered in layer order afterwards. A layer's chain
 * depends on nothing but its own inputs, so the threads change nothing
 * in it. */
typedef struct order_run {
    const plan_dims *d;
    const float *weight;
    const int32_t *current, *target;
    layer_ws *ws;      /* [workers] */
    sched_build *b;
    double *f0, *f_end; /* [L] */
    int *nunits, *nch;  /* [L] */
} order_run;

static void order_one(void *arg, int worker, int l)
{
    const order_run *run = arg;
    const plan_dims *d = run->d;
    layer_ws *z = &run->ws[worker];
    sched_build *b = run->b;
    sched_build view = {b->units + (size_t)l * (d->P + 1), 0,
                        b->ch_slot + (size_t)l * d->P,
                        b->ch_new + (size_t)l * d->P,
                        b->ch_copy + (size_t)l * d->P, 0};
    z->w = run->weight + (size_t)l * d->E;
    z->t = run->target + (size_t)l * d->P;
    run->f_end[l] = order_layer(z, &view, l, run->current + (size_t)l * d->P,
                                z->saved, &run->f0[l]);
    run->nunits[l] = view.nunits;
    run->nch[l] = view.nch;
}

/* Layer l's region (order_one) appended to the units and changes so far;
 * called in layer order, it moves each region down, never onto a later
 * layer's (b->nunits <= l * (P + 1), b->nch <= l * P). */
static void gather_layer(const plan_dims *d, sched_build *b, int l,
                         int nunits, int nch)
{
    const unit *from = b->units + (size_t)l * (d->P + 1);
    size_t c0 = (size_t)l * d->P;
    for (int u = 0; u < nunits; u++) {
        unit x = from[u];
        x.first += b->nch;
        b->units[b->nunits++] = x;
    }
    memmove(b->ch_slot + b->nch, b->ch_slot + c0, (size_t)nch * sizeof(int));
    memmove(b->ch_new + b->nch, b->ch_new + c0,
            (size_t)nch * sizeof(int32_t));
    memmove(b->ch_copy + b->nch, b->ch_copy + c0, (size_t)nch);
    b->nch += nch;
}

/* Worker t's layer workspace (eplbi_reserve_workers); ws[t] is zeroed
 * before, so that a failure leaves it for layer_ws_free. */
typedef struct ws_pool {
    layer_ws *ws;
    const uint8_t *mask;
    int cap;
} ws_pool;

static int reserve_ws(void *pool, int t, const plan_dims *d)
{
    ws_pool *p = pool;
    if (!layer_ws_init(&p->ws[t], d, p->mask, p->cap))
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                          "out of host memory for the migration schedule");
    return EPLB_OK;
}

int sched_build_plan(const plan_dims *d, const float *weight,
                     const int32_t *current, const uint8_t *mask,
                     const int32_t *target, const sched_opts *o,
                     eplbi_threads *threads, int32_t *phy2log,
                     int32_t *logcnt, sched_out *out)
{
    int L = d->L, P = d->P, E = d->E, M = d->M;
    size_t LP = (size_t)L * P;
    memset(out, 0, sizeof *out);
    sched_build b = {0};
    layer_ws *ws = NULL; /* [nws] the layers' orderings, a worker each */
    int nws = 0;
    walk k = {d, o, &b, NULL, NULL, NULL, NULL, 0, 0, 0};
    block *blocks = NULL;
    layer_key *keys = NULL;
    int *closed = NULL, *last_stage = NULL, *layer_first = NULL;
    int *still = NULL; /* [L] layers min_gain keeps */
    int32_t *seen_on = NULL; /* [E] plan_layer_holds_twice's scratch */
    int *taken = NULL, *by_stage = NULL, *stage_start = NULL;
    int32_t *gplan = NULL;
    int *l_units = NULL, *l_ch = NULL; /* [L] a layer's units, changes */
    uint8_t *gfrozen = NULL;
    greedy_copy *gcopies = NULL;
    double *f_now = NULL, *mean = NULL, *f_end = NULL;
    int rc = EPLB_OK;

    b.units = malloc((2 * LP + L) * sizeof(unit));
    b.ch_slot = malloc(2 * LP * sizeof(int));
    b.ch_new = malloc(2 * LP * sizeof(int32_t));
    gplan = malloc(LP * sizeof(int32_t));
    gfrozen = malloc(LP);
    gcopies = malloc(LP * sizeof(greedy_copy));
    b.ch_copy = malloc(2 * LP);
    f_now = malloc((size_t)L * sizeof(double));
    mean = malloc((size_t)L * sizeof(double));
    closed = calloc((size_t)L, sizeof(int));
    still = calloc((size_t)L, sizeof(int));
    seen_on = malloc((size_t)d->E * sizeof(int32_t));
    last_stage = calloc((size_t)L, sizeof(int));
    layer_first = malloc(((size_t)L + 1) * sizeof(int));
    keys = malloc((size_t)L * sizeof(layer_key));
    k.per_gpu = calloc((size_t)M, sizeof(int));
    k.ucnt = calloc((size_t)M, sizeof(int));
    k.ustamp = calloc((size_t)M, sizeof(int));
    out->stage_of_slot = calloc(LP, sizeof(int32_t));
    out->layer_gain = malloc((size_t)L * sizeof(double));
    out->layer_copies = malloc((size_t)L * sizeof(int32_t));
    out->layer_order = malloc((size_t)L * sizeof(int32_t));
    f_end = malloc((size_t)L * sizeof(double));
    l_units = malloc((size_t)L * sizeof(int));
    l_ch = malloc((size_t)L * sizeof(int));
    if (!b.units || !b.ch_slot || !b.ch_new || !gplan || !gfrozen ||
        !gcopies || !b.ch_copy || !f_end || !l_units || !l_ch ||
        !f_now || !mean || !closed || !still || !seen_on ||
        !last_stage || !layer_first || !keys || !k.per_gpu || !k.ucnt ||
        !k.ustamp || !out->stage_of_slot || !out->layer_gain ||
        !out->layer_copies || !out->layer_order)
        goto oom;
    int cap = o->stage_per_gpu > 0 ? o->stage_per_gpu
              : o->max_per_gpu > 0 ? o->max_per_gpu : 0;
    nws = eplbi_host_threads(threads->option, L);
    ws = calloc((size_t)nws, sizeof *ws);
    if (!ws)
        goto oom;
    ws_pool wp = {ws, mask, cap};
    int workers = eplbi_reserve_workers(threads, L, reserve_ws, &wp, d);
    if (workers < 0) {
        rc = workers;
        goto done;
    }

    /* 1. Each layer's chain of units; min_gain drops a layer's chain
     * (but for its forced unit) when the whole re-plan of the layer
     * lowers its largest load by less than that share. */
    int live_m = 0;
    for (int g = 0; g < M; g++)
        live_m += !mask || mask[g];
    order_run orun = {d, weight, current, target, ws, &b, f_now, f_end,
                      l_units, l_ch};
    eplbi_parallel_items(&threads->pool, workers, L, order_one, &orun);
    b.nunits = b.nch = 0;
    for (int l = 0; l < L; l++) {
        const float *w = weight + (size_t)l * E;
        double sum = 0.0;
        for (int e = 0; e < E; e++)
            sum += w[e];
        mean[l] = sum / live_m;
        layer_first[l] = b.nunits;
        gather_layer(d, &b, l, l_units[l], l_ch[l]);
        double fs = f_now[l];
        int c = 0;
        for (int u = layer_first[l]; u < b.nunits; u++) {
            c += b.units[u].copies;
            if (b.units[u].forced)
                fs = b.units[u].f_after;
        }
        out->layer_gain[l] = fs - f_end[l];
        out->layer_copies[l] = c;
        if (o->min_gain > 0 && !(out->layer_gain[l] >= o->min_gain * fs) &&
            !(o->distinct &&
              plan_layer_holds_twice(d, current + (size_t)l * d->P,
                                     seen_on))) {
            still[l] = 1; /* no greedy copies either */
            int n = layer_first[l];
            for (int u = layer_first[l]; u < b.nunits; u++)
                if (b.units[u].forced)
                    b.units[n++] = b.units[u];
            b.nunits = n;
        }
        keys[l].moves = c > 0 || out->layer_gain[l] > 0;
        keys[l].r = ratio(out->layer_gain[l], c);
        keys[l].layer = l;
    }
    layer_first[L] = b.nunits;
    qsort(keys, (size_t)L, sizeof *keys, layer_cmp);
    for (int l = 0; l < L; l++)
        out->layer_order[l] = keys[l].layer;

    /* 2. Blocks of falling gain per copy, merged over the layers. */
    blocks = malloc(((size_t)b.nunits + 1) * sizeof(block));
    taken = calloc(2 * LP + L + 1, sizeof(int));
    if (!blocks || !taken)
        goto oom;
    int nblocks = 0;
    for (int l = 0; l < L; l++) {
        int u0 = layer_first[l];
        if (u0 < layer_first[l + 1] && b.units[u0].forced)
            u0++;
        nblocks += make_blocks(b.units, u0, layer_first[l + 1],
                               blocks + nblocks);
    }
    qsort(blocks, (size_t)nblocks, sizeof(block), block_cmp);

    /* 3. The walk: the dead GPUs' experts go back in stage 1 (and their
     * slots are cleared there), then the blocks' units in order while the
     * budgets allow and a stage has room. Under a budget, single greedy
     * copies (greedy.c) then spend what is left; and the greedy copies
     * alone, from the plan in service, are tried too: the walk with the
     * lower objective stays (the chains' walk on a tie). */
    int dead_held = 0;
    for (size_t s = 0; mask && s < LP && !dead_held; s++)
        dead_held = current[s] >= 0 && !mask[(s % P) / d->ppg];
    int budgeted = (o->max_per_gpu > 0 || o->max_total > 0) &&
                   o->max_per_gpu != 0 && o->max_total != 0;
    int base_units = b.nunits, base_ch = b.nch;
    double obj_best = 0.0;
    /* pass 0: the chains; pass 1 (budgets): the greedy copies alone; pass
     * 2 (budgets in one stage): the greedy copies alone where a slot may
     * take a copy again (its last one stays: the plan has one change a
     * slot, and in one stage no plan in between is read). A pass is kept
     * when it does better than every one before it, else the best walk
     * so far comes back (snap). */
    walk_snap snap = {0};
    int passes = !budgeted ? 1 : o->stage_per_gpu > 0 ? 2 : 3;
    for (int pass = 0; pass < passes; pass++) {
        int chains = pass == 0;
        k.nst = 0;
        k.total = 0;
        memset(k.per_gpu, 0, (size_t)M * sizeof(int));
        memset(taken, 0, (2 * LP + L + 1) * sizeof(int));
        memset(last_stage, 0, (size_t)L * sizeof(int));
        memset(closed, 0, (size_t)L * sizeof(int));
        b.nunits = base_units;
        b.nch = base_ch;
        if (dead_held && !walk_grow(&k))
            goto oom;
        for (int l = 0; l < L; l++) {
            int ui = layer_first[l];
            if (ui == layer_first[l + 1] || !b.units[ui].forced)
                continue;
            int st = walk_place(&k, ui, 1);
            if (st != 1) {
                rc = eplbi_fail(EPLB_ERR_BAD_OPTION,
                                "layer %d: putting the dead GPUs' experts "
                                "back and filling empty slots takes %d "
                                "copies, more than max_copies_per_gpu or "
                                "max_copies allow: raise them", l,
                                b.units[ui].copies);
                goto done;
            }
            if (st > k.nst && !walk_grow(&k))
                goto oom;
            walk_take(&k, ui, st);
            taken[ui] = st;
            last_stage[l] = st;
        }
        for (int it = 0; chains && it < nblocks; it++)
            for (int ui = blocks[it].first;
                 ui < blocks[it].first + blocks[it].len; ui++) {
                int l = b.units[ui].layer;
                if (closed[l])
                    break;
                int st = walk_place(&k, ui, last_stage[l] > 0 ? last_stage[l]
                                                             : 1);
                if (!st) {
                    closed[l] = 1;
                    break;
                }
                if (st > k.nst && !walk_grow(&k))
                    goto oom;
                walk_take(&k, ui, st);
                taken[ui] = st;
                last_stage[l] = st;
            }
        if (budgeted) {
            rc = walk_greedy(d, weight, current, mask, o, &b, &k, taken,
                             last_stage, gplan, gfrozen, gcopies, still,
                             pass == 2, threads);
            if (rc)
                goto done;
        }
        /* the walk's objective: each layer's largest load after its last
         * unit taken */
        double obj = 0.0;
        for (int l = 0; l < L; l++) {
            double f = f_now[l];
            for (int ui = 0; ui < b.nunits; ui++)
                if (taken[ui] && b.units[ui].layer == l)
                    f = b.units[ui].f_after;
            obj += f;
        }
        if (passes == 1)
            break;
        if (pass == 0 || obj < obj_best) {
            obj_best = obj;
            if (pass + 1 < passes &&
                !snap_take(&snap, &b, &k, taken, last_stage, base_units,
                           base_ch, L))
                goto oom;
        } else if (!snap_restore(&snap, &b, &k, taken, last_stage,
                                 base_units, base_ch, L)) {
            goto oom; /* the best walk so far stays */
        }
    }
    snap_free(&snap);

    /* 4. The plan after the last stage, each slot's stage, and a record
     * per stage (objective: each layer's largest load after its chain's
     * last unit taken so far). */
    int nst = k.nst;
    out->nstages = nst;
    out->stages = calloc((size_t)nst + 1, sizeof(sched_stage));
    by_stage = malloc(((size_t)b.nunits + 1) * sizeof(int));
    stage_start = calloc((size_t)nst + 2, sizeof(int));
    if (!out->stages || !by_stage || !stage_start)
        goto oom;
    memcpy(phy2log, current, LP * sizeof(int32_t));
    for (size_t s = 0; mask && s < LP; s++)
        if (!mask[(s % P) / d->ppg] && phy2log[s] >= 0) {
            phy2log[s] = -1;
            out->stage_of_slot[s] = 1;
        }
    for (int ui = 0; ui < b.nunits; ui++)
        stage_start[taken[ui] + 1] += taken[ui] > 0;
    for (int st = 1; st <= nst; st++)
        stage_start[st + 1] += stage_start[st];
    for (int ui = 0; ui < b.nunits; ui++)
        if (taken[ui])
            by_stage[stage_start[taken[ui]]++] = ui;
    /* stage_start[st] is now the end of stage st's units */
    for (int st = 0, at = 0; st <= nst; st++) {
        sched_stage *r = &out->stages[st];
        for (; st > 0 && at < stage_start[st]; at++) {
            const unit *u = &b.units[by_stage[at]];
            for (int c = u->first; c < u->first + u->len; c++) {
                size_t q = (size_t)u->layer * P + b.ch_slot[c];
                phy2log[q] = b.ch_new[c];
                out->stage_of_slot[q] = st;
            }
            f_now[u->layer] = u->f_after;
            r->copies += u->copies;
        }
        if (st > 0) {
            const int *row = k.stage_gpu + (size_t)(st - 1) * M;
            for (int g = 0; g < M; g++)
                if (row[g] > r->max_copies_per_gpu)
                    r->max_copies_per_gpu = row[g];
        }
        for (int l = 0; l < L; l++) {
            r->objective += f_now[l];
            r->balancedness += f_now[l] > 0 ? mean[l] / f_now[l] : 1.0;
        }
        r->balancedness /= L;
        out->copies += r->copies;
    }
    out->objective_before = out->stages[0].objective;
    out->objective_after = out->stages[nst].objective;
    for (int l = 0; l < L; l++) {
        int32_t *cnt = logcnt + (size_t)l * E;
        memset(cnt, 0, (size_t)E * sizeof(int32_t));
        for (int s = 0; s < P; s++)
            if (phy2log[(size_t)l * P + s] >= 0)
                cnt[phy2log[(size_t)l * P + s]]++;
    }
    goto done;

oom:
    rc = eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
done:
    if (rc)
        sched_out_free(out);
    free(b.units);
    free(b.ch_slot);
    free(b.ch_new);
    free(gplan);
    free(gfrozen);
    free(gcopies);
    free(b.ch_copy);
    for (int t = 0; ws && t < nws; t++)
        layer_ws_free(&ws[t]);
    free(ws);
    free(f_end);
    free(l_units);
    free(l_ch);
    free(f_now);
    free(mean);
    free(closed);
    free(still);
    free(seen_on);
    free(last_stage);
    free(layer_first);
    free(keys);
    free(k.per_gpu);
    free(k.ucnt);
    free(k.ustamp);
    free(k.stage_gpu);
    free(blocks);
    free(taken);
    free(by_stage);
    free(stage_start);
    return rc;
}
