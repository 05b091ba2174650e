/* Two slots per GPU in one domain (the global policy with twice as many
 * slots as GPUs: DeepSeek-V3's 288 slots on 144 GPUs): where the repair
 * from the plan in service fails or runs past its cap (replan.c), the
 * plan in service re-paired.
 *
 * With two slots a GPU a layer is a pairing of its replicas, and pairing
 * the sorted replicas lightest with heaviest gives the smallest largest
 * pair of all pairings (an exchange argument: two pairs a+d and b+c with
 * a <= b <= c <= d never have a larger maximum than a+c and b+d), so
 * whether the replicas of some set of GPUs can be paired on target is one
 * pass over them sorted. And re-pairing k GPUs among themselves costs k
 * copies whatever the new pairs are (old and new pairs form alternating
 * cycles; each new pair goes to the GPU of one of its replicas). So the
 * fewest copies are those of the fewest GPUs broken up: every GPU on
 * target whose experts the counts leave room for keeps its pair, the
 * others are broken up, and kept GPUs join them until their replicas pair
 * on target: first a cover of Hall's condition for pairs (cover_join),
 * then, where that falls short, one at a time the kept GPU whose two
 * replicas leave the largest pair lowest. (The fewest GPUs is not
 * promised: the cover's greedy is exact for intervals, and a light pair
 * covers twice.)
 *
 * The local search fails there because a few GPUs above the target can
 * need a long chain of exchanges through GPUs that are on target, which
 * no move or pair of moves makes; its fallback, the fresh plan relabelled,
 * then copies about a third of the slots where a handful of GPUs
 * re-paired would do. */
#include "replan.h"

#include <math.h>
#include <string.h>

static inline int item_less(const pair_item *x, const pair_item *y)
{
    return x->share < y->share || (x->share == y->share && x->e < y->e);
}

static inline int gpu_less(const pair_gpu *x, const pair_gpu *y)
{
    return x->key < y->key ||
           (x->key == y->key &&
            (x->key2 < y->key2 || (x->key2 == y->key2 && x->g < y->g)));
}

/* Stable merge sorts with the comparison inline (qsort's calls through a
 * pointer were a fifth of a re-pairing's time), the shared passes of
 * internal.h; the result is copied back where it ends in the scratch. */
EPLBI_DEFINE_MERGE_PASSES(item_passes, pair_item, item_less)
EPLBI_DEFINE_MERGE_PASSES(gpu_passes, pair_gpu, gpu_less)

static void sort_items(pair_item *a, int n, pair_item *tmp)
{
    pair_item *r = item_passes(a, tmp, n, 1);
    if (r != a)
        memcpy(a, r, (size_t)n * sizeof *a);
}

static void sort_gpus(pair_gpu *a, int n, pair_gpu *tmp)
{
    pair_gpu *r = gpu_passes(a, tmp, n, 1);
    if (r != a)
        memcpy(a, r, (size_t)n * sizeof *a);
}

/* 1 when items[0..n) (sorted) paired lightest with heaviest meet the
 * target, with no expert twice on a GPU where that is not allowed. The
 * pair sums are the loads plan_gpu_load makes (a sum of two shares is
 * the same in either order). */
static int pairs_fit(const pair_item *it, int n, double target,
                     int distinct)
{
    for (int i = 0; i < n / 2; i++) {
        const pair_item *a = &it[i], *b = &it[n - 1 - i];
        if (!(a->share + b->share <= target) || (distinct && a->e == b->e))
            return 0;
    }
    return 1;
}

/* Inserts expert e's replica into the sorted items[0..n). */
static void insert_item(pair_item *it, int n, double share, int e)
{
    pair_item x = {share, e};
    int at = n;
    while (at > 0 && item_less(&x, &it[at - 1])) {
        it[at] = it[at - 1];
        at--;
    }
    it[at] = x;
}

/* Expert e's replica with counts cnt. */
static inline pair_item replica(const layer_job *j, const int *cnt, int e)
{
    return (pair_item){(double)j->w[e] / cnt[e], e};
}

/* GPU g's two replicas in the plan in service, lighter first. */
static void gpu_replicas(const layer_job *j, const int *cnt, int g,
                         pair_item *x, pair_item *y)
{
    *x = replica(j, cnt, j->cur[2 * g]);
    *y = replica(j, cnt, j->cur[2 * g + 1]);
    if (item_less(y, x)) {
        pair_item t = *x;
        *x = *y;
        *y = t;
    }
}

/* GPU g's two replicas join the sorted items[0..*n). */
static void join_gpu(pair_item *it, int *n, const layer_job *j,
                     const int *cnt, int g)
{
    pair_item x, y;
    gpu_replicas(j, cnt, g, &x, &y);
    insert_item(it, (*n)++, x.share, x.e);
    insert_item(it, (*n)++, y.share, y.e);
}

/* Pair sums of the sorted items shifted against each other, for the
 * largest pair after two replicas join (largest_pair_with): sums[sg][a]
 * = items[a] + items[n + 1 - sg - a] (-1 where that is no item), sg =
 * 0..4 the places the two new replicas take below the pair's two ends,
 * and the largest of each block of PAIR_BLOCK. */
#define PAIR_BLOCK 16
#define PAIR_SHIFTS 5

static void pair_sums(replan_state *st, const pair_item *it, int n)
{
    int nb = (n + PAIR_BLOCK - 1) / PAIR_BLOCK;
    for (int sg = 0; sg < PAIR_SHIFTS; sg++) {
        double *v = st->pr_sums + (size_t)sg * st->dims.P;
        double *bm = st->pr_bmax + (size_t)sg * (st->dims.P / PAIR_BLOCK + 1);
        for (int a = 0; a < n; a++) {
            int b = n + 1 - sg - a;
            v[a] = b >= 0 && b < n ? it[a].share + it[b].share : -1.0;
        }
        if (sg == 2) /* the pairs as they are: their running largest */
            for (int a = 0; a < n / 2; a++)
                st->pr_pre[a] = a ? (v[a] > st->pr_pre[a - 1]
                                         ? v[a]
                                         : st->pr_pre[a - 1])
                                  : v[a];
        for (int k = 0; k < nb; k++) {
            double m = -1.0;
            for (int a = k * PAIR_BLOCK; a < n && a < (k + 1) * PAIR_BLOCK; a++)
                if (v[a] > m)
                    m = v[a];
            bm[k] = m;
        }
    }
}

/* The largest of sums[sg][lo..hi] (pair_sums). */
static double sums_max(const replan_state *st, int sg, int lo, int hi)
{
    const double *v = st->pr_sums + (size_t)sg * st->dims.P;
    const double *bm =
        st->pr_bmax + (size_t)sg * (st->dims.P / PAIR_BLOCK + 1);
    double m = -1.0;
    while (lo <= hi && lo % PAIR_BLOCK)
        m = v[lo] > m ? v[lo] : m, lo++;
    while (lo + PAIR_BLOCK - 1 <= hi) {
        m = bm[lo / PAIR_BLOCK] > m ? bm[lo / PAIR_BLOCK] : m;
        lo += PAIR_BLOCK;
    }
    while (lo <= hi)
        m = v[lo] > m ? v[lo] : m, lo++;
    return m;
}

/* The first item not below x in the sorted items[lo..n). */
static int rank_of(const pair_item *it, int lo, int n, const pair_item *x)
{
    int hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (item_less(&it[mid], x))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Item q of the merged list items[0..i), x, items[i..k), y, items[k..n). */
static double merged(const pair_item *it, int i, int k, double x, double y,
                     int q)
{
    return q < i ? it[q].share : q == i ? x : q <= k ? it[q - 1].share
           : q == k + 1 ? y : it[q - 2].share;
}

static int shift_of(int i, int k, int q)
{
    return q < i ? 0 : q <= k ? 1 : 2;
}

/* The largest pair of the sorted items[0..n) with GPU g's two replicas
 * (counts cnt) added, paired lightest with heaviest; items unchanged.
 * Between the places where the merged list's pairs change which old
 * items they join, the largest pair is a block query of pair_sums. */
static double largest_pair_with(const replan_state *st, const pair_item *it,
                                int n, const layer_job *j, const int *cnt,
                                int g, double bound, int tie_wins)
{
    pair_item x, y;
    gpu_replicas(j, cnt, g, &x, &y);
    int i = rank_of(it, 0, n, &x), k = rank_of(it, i, n, &y);
    int m = n + 2, half = m / 2;
    /* the pairs below both new replicas' places are the old pairs 0 ..
     * min(i, n - k) - 1: a value above the bound (or at it, where a tie
     * does not win) cannot win, and its part is returned */
    int same = i < n - k ? i : n - k;
    if (same > 0 && (st->pr_pre[same - 1] > bound ||
                     (st->pr_pre[same - 1] >= bound && !tie_wins)))
        return st->pr_pre[same - 1];
    /* q (the light end) changes its source at i, i + 1, k + 1, k + 2;
     * r = m - 1 - q at the same places, so q at m - 1 - i, m - i,
     * m - 2 - k, m - 1 - k; x and y sit alone at i and k + 1 */
    const int lo_cut[4] = {i, i + 1, k + 1, k + 2},
              hi_cut[4] = {m - 2 - k, m - 1 - k, m - 1 - i, m - i};
    int cut[10], nc = 0;
    cut[nc++] = 0;
    for (int a = 0, b = 0; a < 4 || b < 4;) /* both ascend: merge */
        cut[nc++] = b == 4 || (a < 4 && lo_cut[a] <= hi_cut[b])
                        ? lo_cut[a++]
                        : hi_cut[b++];
    cut[nc++] = half;
    double v = 0.0;
    for (int u = 0; u + 1 < nc; u++) {
        int lo = cut[u] < 0 ? 0 : cut[u], hi = cut[u + 1] > half ? half
                                                               : cut[u + 1];
        if (lo >= hi)
            continue;
        int r = m - 1 - lo;
        if (lo == i || lo == k + 1 || r == i || r == k + 1) {
            /* a place of x or y: alone in its interval */
            double p = merged(it, i, k, x.share, y.share, lo) +
                       merged(it, i, k, x.share, y.share, r);
            v = p > v ? p : v;
            lo++;
            if (lo >= hi)
                continue;
        }
        int oq = shift_of(i, k, lo), orr = shift_of(i, k, m - 1 - lo);
        double p = sums_max(st, oq + orr, lo - oq, hi - 1 - oq);
        v = p > v ? p : v;
        if (v > bound || (v >= bound && !tie_wins))
            break;
    }
    return v;
}

/* Assigns the new pairs (pair i: experts px[i], py[i]) to the m broken
 * GPUs (st->pr_at: each GPU's place k among them, else -1) so that most
 * pairs land on a GPU that held one of their experts: a maximum matching
 * by augmenting paths, breadth first (no recursion), pairs in order; an
 * expert's GPUs are scanned once a search (all of them are reached then).
 * Past the work budget or the deadline the pairs not yet matched go, as
 * the unmatched ones do, to the GPUs left in order. Writes gpu_pair[k],
 * the pair of the k-th broken GPU. */
static void assign_pairs(const layer_job *j, int m, const int *px,
                         const int *py, int *gpu_pair, long long *work,
                         long long budget)
{
    replan_state *st = j->st;
    const plan_dims *d = j->d;
    int *pair_gpu = st->pr_pair_gpu, *from = st->pr_from,
        *queue = st->pr_queue, *at_k = st->pr_at, *scanned = st->pr_rem;
    for (int k = 0; k < m; k++) {
        gpu_pair[k] = -1;
        pair_gpu[k] = -1;
    }
    for (int e = 0; e < d->E; e++)
        scanned[e] = -1;
    *work += d->E;
    for (int i = 0; i < m && *work <= budget && !replan_late(st); i++) {
        /* BFS over pairs; from[k]: the pair that reached GPU k */
        for (int k = 0; k < m; k++)
            from[k] = -2;
        *work += m;
        int head = 0, tail = 0, found = -1;
        queue[tail++] = i;
        while (head < tail && found < 0) {
            int p = queue[head++];
            for (int side = 0; side < 2 && found < 0; side++) {
                int e = side ? py[p] : px[p];
                if (scanned[e] == i)
                    continue;
                scanned[e] = i;
                for (int s = st->cur_head[e]; s >= 0 && found < 0;
                     s = st->cur_next[s]) {
                    (*work)++;
                    int k = at_k[s / d->ppg];
                    if (k < 0 || from[k] != -2)
                        continue;
                    from[k] = p;
                    if (gpu_pair[k] < 0)
                        found = k;
                    else
                        queue[tail++] = gpu_pair[k];
                }
            }
        }
        /* flip the path back to pair i */
        while (found >= 0) {
            int p = from[found], prev = pair_gpu[p];
            gpu_pair[found] = p;
            pair_gpu[p] = found;
            found = p == i ? -1 : prev;
        }
    }
    /* the pairs left go to the GPUs left, in order */
    for (int i = 0, k = 0; i < m; i++) {
        if (pair_gpu[i] >= 0)
            continue;
        while (gpu_pair[k] >= 0)
            k++;
        gpu_pair[k] = i;
        pair_gpu[i] = k;
    }
}

/* The kept GPUs that join first, chosen as a cover (Hall's condition for
 * pairs): the replicas pair on target exactly when, at every heavy
 * replica h (h + h > T), the heavy replicas of at least h number no more
 * than the light ones (l + l <= T) with l + h <= T. A kept pair (x <= y)
 * that joins changes that count by -1 where y < h and x + h <= T (y
 * heavy), or by -[x + h <= T] - [y + h <= T] (y light). Sweeping the
 * heavy replicas from the heaviest, where the broken GPUs' replicas fall
 * short a kept pair joins that covers the point and reaches furthest
 * down the sweep (a light pair, smaller y first; else the smallest y;
 * ties to the first in kg) - the greedy that is optimal for covering
 * points with intervals. At most max_join join, within the work budget;
 * they are marked in at_k (-1) and listed in out[], their number
 * returned. The pairing is checked after: the greedy below goes on where
 * the cover falls short (no expert twice on a GPU where that is not
 * allowed is the one rule it does not see). */
static int cover_join(const layer_job *j, const int *cnt, const pair_item *it,
                      int n, const pair_gpu *kg, int kept, int *at_k,
                      int max_join, int *out, long long *work,
                      long long budget)
{
    double T = j->target;
    int nj = 0;
    /* heavy replicas of the broken GPUs are it[nl..n), lights it[0..nl) */
    int nl = 0;
    while (nl < n && it[nl].share + it[nl].share <= T)
        nl++;
    /* the check points: the broken GPUs' heavy replicas from the top, and
     * the heavy replicas of the pairs that joined (chosen y's, which lie
     * below the point that chose them) */
    int hb = n - 1, lf = 0, hp = n - 1;
    double *ys = j->st->pr_sums; /* scratch: joined heavy y's, descending */
    int ny = 0, yi = 0;
    for (;;) {
        double h;
        int from_b = hb >= nl && (yi >= ny || it[hb].share >= ys[yi]);
        if (from_b)
            h = it[hb].share;
        else if (yi < ny)
            h = ys[yi];
        else
            break;
        /* lights of the broken GPUs that fit h (h only falls) */
        while (lf < nl && it[lf].share + h <= T)
            lf++;
        /* heavy ones at least h (h only falls) */
        while (hp >= nl && it[hp].share >= h)
            hp--;
        int deficit = n - 1 - hp - lf;
        for (int c = 0; c < nj; c++) {
            pair_item px, py;
            gpu_replicas(j, cnt, out[c], &px, &py);
            double x = px.share, y = py.share;
            if (y + y > T)
                deficit -= y < h && x + h <= T;
            else
                deficit -= (x + h <= T) + (y + h <= T);
        }
        *work += nj + 8;
        while (deficit > 0) {
            if (nj >= max_join || *work > budget || replan_late(j->st))
                return nj;
            int bp = -1, b_light = 0;
            double b_y = 0.0;
            for (int p = 0; p < kept; p++) {
                int g = kg[p].g;
                if (at_k[g] != -2)
                    continue;
                pair_item px, py;
                gpu_replicas(j, cnt, g, &px, &py);
                double x = px.share, y = py.share;
                int light = y + y <= T;
                if (!(x + h <= T) || (!light && !(y < h)))
                    continue; /* does not cover h */
                if (bp < 0 || (light && !b_light) ||
                    (light == b_light && y < b_y)) {
                    bp = p;
                    b_light = light;
                    b_y = y;
                }
            }
            *work += kept;
            if (bp < 0)
                return nj; /* nothing covers h: the greedy takes over */
            int g = kg[bp].g;
            at_k[g] = -1;
            out[nj++] = g;
            deficit -= b_light ? 1 + (b_y + h <= T) : 1;
            if (!b_light) { /* its heavy y is a check point further down */
                int at = ny++;
                while (at > yi && ys[at - 1] < b_y) {
                    ys[at] = ys[at - 1];
                    at--;
                }
                ys[at] = b_y;
            }
        }
        if (from_b)
            hb--;
        else
            yi++;
    }
    return nj;
}

long replan_repair_pairs(const layer_job *j, const int *cnt,
                         const int *in_service, int max_broken, int32_t *out)
{
    const plan_dims *d = j->d;
    replan_state *st = j->st;
    const int32_t *cur = j->cur;
    int *rem = st->pr_rem, *bg = st->pr_bg, *at_k = st->pr_at;
    pair_item *it = st->pr_items;
    pair_gpu *kg = st->pr_gpus;
    /* what the layer's budget has left */
    long long work = 0, budget = st->budget - st->work;
    int live_gpus = 0;
    long slots = 0;
    for (int e = 0; e < d->E; e++) {
        if (cnt[e] < 1)
            return -1;
        rem[e] = cnt[e];
        slots += cnt[e];
    }
    for (int g = 0; g < d->M; g++)
        live_gpus += live(j, g);
    if (slots != 2L * live_gpus)
        return -1;
    /* no pairing of all the replicas meets the target: none of some */
    int n = 0;
    for (int e = 0; e < d->E; e++)
        for (int r = 0; r < cnt[e]; r++)
            it[n++] = replica(j, cnt, e);
    sort_items(it, n, st->pr_tmp);
    work += n;
    if (!pairs_fit(it, n, j->target, j->distinct)) {
        st->work += work;
        return -1;
    }

    /* GPUs on target, lightest first, keep their pair while the counts
     * leave room for it. Those of an expert the counts take a replica
     * from (below its count in service, in_service) go
     * first, the heaviest partner first: the holder broken up for it
     * then adds its lightest partner to the replicas to pair, where the
     * lightest-first order broke the holder of the heaviest pair and
     * added a heavy replica that kept GPUs had to join to pair (6 files
     * in turn on DeepSeek-V3's 288 slots on 144 GPUs: 14.01% of the
     * slots copied a window, against 14.39%) */
    int nk = 0;
    for (int g = 0; g < d->M; g++) {
        int a = cur[2 * g], b = cur[2 * g + 1];
        at_k[g] = -1;
        if (!live(j, g) || a < 0 || b < 0 || (a == b && j->distinct))
            continue;
        double sa = replica(j, cnt, a).share, sb = replica(j, cnt, b).share;
        if (!(sa + sb <= j->target))
            continue;
        int da = cnt[a] < in_service[a], db = cnt[b] < in_service[b];
        double key = sa + sb;
        if (da || db) /* (both: no partner to keep, after those with one) */
            key = -(da && db ? 0.0 : da ? sb : sa);
        kg[nk++] = (pair_gpu){key, 0.0, g};
    }
    sort_gpus(kg, nk, st->pr_gtmp);
    int kept = 0;
    for (int i = 0; i < nk; i++) {
        int g = kg[i].g, a = cur[2 * g], b = cur[2 * g + 1];
        if (rem[a] < 1 + (a == b) || rem[b] < 1)
            continue;
        rem[a]--;
        rem[b]--;
        at_k[g] = -2; /* kept */
        pair_item x, y;
        gpu_replicas(j, cnt, g, &x, &y);
        /* the order in which kept GPUs join: lightest heavier replica */
        kg[kept++] = (pair_gpu){y.share, x.share + y.share, g};
    }
    sort_gpus(kg, kept, st->pr_gtmp);

    /* the replicas left, sorted */
    n = 0;
    for (int e = 0; e < d->E; e++)
        for (int r = 0; r < rem[e]; r++)
            it[n++] = replica(j, cnt, e);
    if (n != 2 * (live_gpus - kept))
        return -1;
    sort_items(it, n, st->pr_tmp);
    work += n;

    int joined = 0;
    if (!pairs_fit(it, n, j->target, j->distinct)) {
        int room = max_broken - n / 2;
        int *out = st->pr_bg;
        joined = cover_join(j, cnt, it, n, kg, kept, at_k,
                            room > 0 ? room : 0, out, &work, budget);
        for (int c = 0; c < joined; c++)
            join_gpu(it, &n, j, cnt, out[c]);
    }
    while (!pairs_fit(it, n, j->target, j->distinct)) {
        if (joined == kept || n / 2 >= max_broken || work > budget ||
            replan_late(st)) {
            st->work += work;
            return -1;
        }
        /* the kept GPU whose replicas, joined, leave the largest pair
         * lowest (ties to the first in kg's order) */
        pair_sums(st, it, n);
        work += PAIR_SHIFTS * (long long)n;
        int bi = -1;
        double bv = HUGE_VAL;
        for (int p = 0; p < kept; p++) {
            int g = kg[p].g;
            if (at_k[g] != -2)
                continue;
            double v = largest_pair_with(st, it, n, j, cnt, g, bv, bi < 0);
            if (bi < 0 || v < bv) {
                bi = p;
                bv = v;
            }
            work += 16 + n / PAIR_BLOCK;
        }
        joined++;
        join_gpu(it, &n, j, cnt, kg[bi].g);
        at_k[kg[bi].g] = -1;
    }

    /* the broken GPUs, and the new pairs onto them */
    int m = 0;
    for (int g = 0; g < d->M; g++) {
        if (live(j, g) && at_k[g] == -1)
            bg[m++] = g;
    }
    int *px = st->pr_px, *py = st->pr_py, *gpu_pair = st->pr_gpu_pair;
    for (int i = 0; i < m; i++) {
        px[i] = it[i].e;
        py[i] = it[n - 1 - i].e;
    }
    for (int g = 0; g < d->M; g++)
        at_k[g] = -1;
    for (int k = 0; k < m; k++)
        at_k[bg[k]] = k;
    /* (rem is free again: the matching's scratch) */
    assign_pairs(j, m, px, py, gpu_pair, &work, budget);
    st->work += work;
    for (int g = 0; g < d->M; g++) {
        int k = at_k[g];
        if (!live(j, g)) {
            out[2 * g] = out[2 * g + 1] = -1;
        } else if (k < 0) {
            out[2 * g] = cur[2 * g];
            out[2 * g + 1] = cur[2 * g + 1];
        } else {
            int x = px[gpu_pair[k]], y = py[gpu_pair[k]];
            /* an expert the GPU held keeps its slot */
            int flip = x == cur[2 * g + 1] || y == cur[2 * g];
            out[2 * g] = flip ? y : x;
            out[2 * g + 1] = flip ? x : y;
        }
    }
    return replan_layer_copies(st, out);
}
