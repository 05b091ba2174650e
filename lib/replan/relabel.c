/* The fresh plan relabelled: its nodes and GPUs matched to the current
 * ones (largest overlap first) to keep the most experts in place. It is
 * the re-plan's fallback and eplb_relabel's result. */
#include "replan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when node n holds the same experts in plans a and b. */
int replan_same_node_experts(replan_state *st, const int32_t *a,
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
void replan_relabel_fresh(const layer_job *j, const int32_t *fresh)
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
            replan_keep_slots(st, j->cur, g, st->alt);
}

/* Makes st->alt, the relabelled fresh layer: 1 when it is on target.
 * Without a mask it is the fresh layer with its nodes and GPUs renamed
 * and each GPU's slots reordered: the same GPU loads, on target by
 * construction (summed in another slot order, a load may round one ulp
 * above the fresh plan's largest, which must not reject it). With one,
 * its GPUs are matched among the live ones, and its loads are checked. */
int replan_make_alt(const layer_job *j, const int32_t *fresh,
                    const int32_t *fcnt)
{
    replan_relabel_fresh(j, fresh);
    if (!j->mask)
        return 1;
    return plan_layer_loads(j->d, j->w, j->st->alt, fcnt, NULL, j->st->load,
                            NULL) <= j->target
               ? 1
               : -1;
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
    int rc = replan_check_current(&d, current);
    if (rc == EPLB_OK && (rc = replan_check_current(&d, phy2log))) {
        /* The check's message, copied before it is rewritten. */
        char why[512];
        snprintf(why, sizeof why, "%s", eplb_last_error());
        eplbi_fail(rc, "phy2log: %s", why);
    }
    replan_state *st = NULL;
    if (rc == EPLB_OK)
        rc = replan_state_reserve(&st, &d);
    for (int l = 0; rc == EPLB_OK && l < d.L; l++) {
        const int32_t *cur = current + (size_t)l * d.P;
        layer_job j = {&d, NULL, cur, NULL, 0.0, st,
                       d.N > 1 ? d.gn : d.M, 1};
        replan_index_current(st, cur);
        replan_relabel_fresh(&j, phy2log + (size_t)l * d.P);
        memcpy(out + (size_t)l * d.P, st->alt, (size_t)d.P * sizeof(int32_t));
        replan_unindex_layer(st, cur);
    }
    replan_state_free(st);
    return rc;
}

/* The fewest copies any renaming of plan's GPUs can cost: per GPU of
 * plan, its distinct experts less the most that one GPU of the plan in
 * service held (every GPU's experts go to some GPU whole). The
 * relabelled fresh plan and the fresh plan are such renamings. */
long replan_copies_floor(replan_state *st, const int32_t *plan)
{
    const plan_dims *d = &st->dims;
    int *ov = st->la_gpu, *list = st->gpu_list, *seen = st->seen;
    long floor = 0;
    for (int g = 0; g < d->M; g++)
        ov[g] = 0;
    for (int f = 0; f < d->M; f++) {
        const int32_t *gs = plan + (size_t)f * d->ppg;
        int distinct = 0, n = 0, most = 0;
        for (int r = 0; r < d->ppg; r++) {
            int e = gs[r];
            if (e < 0 || seen[e])
                continue;
            seen[e] = 1;
            distinct++;
            /* the GPUs of the plan in service that held e (a GPU's
             * replicas are adjacent in the list: once each) */
            for (int q = st->cur_head[e]; q >= 0; q = st->cur_next[q]) {
                int c = q / d->ppg;
                if (st->cur_prev_gpu[q] == c)
                    continue;
                if (ov[c]++ == 0)
                    list[n++] = c;
                if (ov[c] > most)
                    most = ov[c];
            }
        }
        for (int r = 0; r < d->ppg; r++)
            if (gs[r] >= 0)
                seen[gs[r]] = 0;
        for (int i = 0; i < n; i++)
            ov[list[i]] = 0;
        floor += distinct - most;
    }
    return floor;
}
