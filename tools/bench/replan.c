/* eplb-bench's re-planning section: how many expert copies a new plan
 * costs against the plan in service, fresh, relabelled, and re-planned
 * from the current placement at several tolerances, and what balancedness
 * each keeps. Two parts: the noise table (each recorded file re-planned
 * once on a copy with 1% noise, per reference config), and the series
 * (series.c: windows of loads made from the recorded files, each window
 * planned from the previous window's plan), with the time per re-plan and
 * a lower bound of the copies. The section measures whatever the library
 * does; it checks only that every re-planned layer meets its target. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "timing.h"
#include "workload.h"

/* Tolerances the section reports. */
static const float replan_tols[] = {0.0f, 0.005f, 0.01f, 0.02f};
#define NTOLS 4

/* The noise on the recorded loads. */
#define NOISE 0.01f

typedef struct replan_row {
    double copies[2 + NTOLS]; /* fresh, relabelled, from current x NTOLS */
    double bal[2 + NTOLS];
    double stale; /* the plan in service judged on the new loads */
    long slots;
    int candidates; /* the mode: 1 is the deterministic one */
} replan_row;

static long copies_between(const eplb_shape *s, const int32_t *a,
                           const int32_t *b)
{
    long n;
    if (eplb_copies(s, a, b, NULL, &n))
        die("copies");
    return n;
}

static void plans_alloc(plan_buf *p, const eplb_shape *s)
{
    for (int k = 0; k < NTOLS; k++)
        plan_alloc(&p[k], s);
}

static void plans_free(plan_buf *p)
{
    for (int k = 0; k < NTOLS; k++)
        plan_free(&p[k]);
}

/* One re-plan step: `cur` is the plan in service (made for older loads),
 * w the new loads. Fills row with fresh, relabelled fresh and from-current
 * figures; next[k] receives the from-current plan at tolerance k. */
/* The context's options with another tolerance (a live change: no new
 * context per tolerance). */
static void set_tolerance(eplb_context *ctx, float tol)
{
    eplb_options o;
    o.struct_size = sizeof o;
    if (eplb_context_get_options(ctx, &o))
        die("get options");
    o.tolerance = tol;
    if (eplb_context_set_options(ctx, &o))
        die("set options");
}

static void replan_step(eplb_context *ctx, const eplb_shape *s,
                        const float *w, const plan_buf *cur, plan_buf *next,
                        replan_row *row)
{
    plan_buf fresh;
    plan_alloc(&fresh, s);
    set_tolerance(ctx, 0.0f);
    if (eplb_rebalance(ctx, s, w, fresh.phy2log, fresh.log2phy,
                       fresh.logcnt))
        die("rebalance");
    int32_t *relabelled = xmalloc((size_t)s->layers * s->num_replicas * 4);
    if (eplb_relabel(s, EPLB_POLICY_AUTO, cur->phy2log, fresh.phy2log,
                     relabelled))
        die("relabel");
    row->slots = (long)s->layers * s->num_replicas;
    row->copies[0] = copies_between(s, cur->phy2log, fresh.phy2log);
    row->copies[1] = copies_between(s, cur->phy2log, relabelled);
    /* relabelling renames GPUs only: the loads per GPU stay the same */
    row->bal[0] = row->bal[1] = balancedness(s, w, &fresh);
    for (int k = 0; k < NTOLS; k++) {
        set_tolerance(ctx, replan_tols[k]);
        if (plan_into(ctx, s, w, cur->phy2log, NULL, &next[k]))
            die("rebalance_from");
        row->copies[2 + k] = copies_between(s, cur->phy2log,
                                            next[k].phy2log);
        row->bal[2 + k] = balancedness(s, w, &next[k]);
    }
    row->stale = balancedness(s, w, cur);
    set_tolerance(ctx, 0.0f);
    free(relabelled);
    plan_free(&fresh);
}

static void replan_header(const char *first)
{
    printf("%-26s %7s %7s", first, "fresh", "relab.");
    for (int k = 0; k < NTOLS; k++)
        printf("  tol %4.1f%%", 100.0 * replan_tols[k]);
    printf(" %8s %8s %8s\n", "bal.fr", "bal.t0", "stale");
}

static void replan_print(bench *b, const char *kind, const char *label,
                         const char *config, const replan_row *r)
{
    printf("%-26s %6.2f%% %6.2f%%", label, 100.0 * r->copies[0] / r->slots,
           100.0 * r->copies[1] / r->slots);
    for (int k = 0; k < NTOLS; k++)
        printf(" %8.2f%%", 100.0 * r->copies[2 + k] / r->slots);
    printf(" %8.4f %8.4f %8.4f\n", r->bal[0], r->bal[2], r->stale);
    json_record(b, "{\"kind\":\"%s\",\"label\":\"%s\",\"config\":\"%s\","
                "\"candidates\":%d,\"slots\":%ld,\"copies_fresh\":%.0f,"
                "\"copies_relabelled\":%.0f,"
                "\"copies_from_current\":[%.0f,%.0f,%.0f,%.0f],"
                "\"balancedness_fresh\":%.6f,\"balancedness_from_current\":"
                "[%.6f,%.6f,%.6f,%.6f],\"balancedness_stale\":%.6f}",
                kind, label, config, r->candidates, r->slots, r->copies[0],
                r->copies[1], r->copies[2], r->copies[3], r->copies[4],
                r->copies[5], r->bal[0], r->bal[2], r->bal[3], r->bal[4],
                r->bal[5], r->stale);
}

/* Copies add up over rows (their share is of all slots); balancedness is
 * a mean, see replan_mean. */
static void replan_acc(replan_row *sum, const replan_row *r)
{
    sum->candidates = r->candidates;
    for (int k = 0; k < 2 + NTOLS; k++) {
        sum->copies[k] += r->copies[k];
        sum->bal[k] += r->bal[k];
    }
    sum->stale += r->stale;
    sum->slots += r->slots;
}

static void replan_mean(replan_row *sum, int rows)
{
    for (int k = 0; k < 2 + NTOLS; k++)
        sum->bal[k] /= rows;
    sum->stale /= rows;
}

/* Warm time of a fresh plan and of a from-current re-plan (tolerance 0)
 * on one context, medians in microseconds. */
static void replan_times(bench *b, eplb_context *ctx, const eplb_shape *s,
                         const float *w, const plan_buf *cur,
                         double *fresh_us, double *from_us)
{
    plan_buf p;
    plan_alloc(&p, s);
    int runs = b->quick ? 5 : 30;
    double t[64];
    for (int mode = 0; mode < 2; mode++) {
        /* one call more, left out: the first after the other mode is not
         * warm */
        time_calls(ctx, s, w, mode ? cur->phy2log : NULL, &p, runs + 1, t);
        *(mode ? from_us : fresh_us) = median(t + 1, runs);
    }
    plan_free(&p);
}

/* The recorded loads with 1% noise: each file planned, then re-planned on
 * its noisy copy; the last file's calls are timed too. */
static void noise_table(bench *b, eplb_context *ctx, const eplb_options *base,
                        const loadset *ls, int c)
{
    char config[CONFIG_NAME_LEN];
    reference_name(config, c);
    printf("\n### %s, %s loads, 1%% noise\n", config,
           b->have_real ? "real" : "generated");
    replan_header("workload");
    int nf = ls->n;
    replan_row sum = {0};
    double t_fresh = 0, t_from = 0;
    for (int f = 0; f < nf; f++) {
        eplb_shape s = config_shape(c, ls->L[f], ls->E[f]);
        size_t n = (size_t)ls->L[f] * ls->E[f];
        float *w2 = xmalloc(n * sizeof(float));
        memcpy(w2, ls->w[f], n * sizeof(float));
        workload_perturb(w2, ls->L[f], ls->E[f], NOISE, 77 + f);
        plan_buf cur, next[NTOLS];
        plan_make(base, &s, ls->w[f], NULL, NULL, &cur);
        plans_alloc(next, &s);
        replan_row r;
        replan_step(ctx, &s, w2, &cur, next, &r);
        r.candidates = base->candidates;
        replan_print(b, "replan_noise", ls->names[f], config, &r);
        replan_acc(&sum, &r);
        if (f == nf - 1)
            replan_times(b, ctx, &s, w2, &cur, &t_fresh, &t_from);
        plan_free(&cur);
        plans_free(next);
        free(w2);
    }
    replan_mean(&sum, nf);
    replan_print(b, "replan_noise_all", "(all files)", config, &sum);
    printf("time per call, %s: fresh %.1f us, from current %.1f us\n",
           ls->names[nf - 1], t_fresh, t_from);
    json_record(b, "{\"kind\":\"replan_time\",\"config\":\"%s\","
                "\"fresh_us\":%.1f,\"from_current_us\":%.1f}", config,
                t_fresh, t_from);
}

/* ---- the series --------------------------------------------------------- */

/* What each series compares: the fresh plan, it relabelled against the
 * plan in service, the re-plan from the plan in service at each tolerance
 * (one context, its tolerance changed live), and not moving (window 0's
 * plan kept). Each follows its own chain: window t's plan is made from
 * the same column's plan of window t - 1. */
#define NSTOL 3
static const float series_tols[NSTOL] = {0.0f, 0.01f, 0.05f};
enum { V_FRESH, V_RELAB, V_TOL0, V_STAY = V_TOL0 + NSTOL, NV };
static const char *const vnames[NV] = {"fresh", "relabelled", "tol 0",
                                       "tol 0.01", "tol 0.05", "not moving"};

#define MAXW SERIES_MAX_WINDOWS

/* Per column, per window t >= 1 (index t - 1): NAN where it does not
 * apply. */
typedef struct vstats {
    double copies[MAXW];  /* eplb_copies from the column's last plan */
    double changed[MAXW]; /* eplb_migration: slots whose expert changed */
    double bal[MAXW];     /* balancedness on window t's loads */
    double next[MAXW];    /* the same plan on window t + 1's loads */
    double bound[MAXW];   /* lower bound of the copies (re-plans) */
    double us[MAXW];      /* host wall clock of the call */
    int off[MAXW];        /* layers the plan in service misses the target */
    long miss;            /* layer-windows below the column's target */
    long over;            /* layer-windows whose copies are below the bound */
    /* layer-windows with a bound above 0 (groups that must change node):
     * their number, their copies and bounds summed, the largest ratio of
     * copies to bound, and how many are above 1.5x it */
    long forced, forced_over;
    double forced_copies, forced_bound, forced_worst;
} vstats;

static void plan_copy(plan_buf *d, const plan_buf *p, const eplb_shape *s)
{
    size_t a, b, c;
    if (eplb_plan_sizes(s, &a, &b, &c))
        die("plan sizes");
    memcpy(d->phy2log, p->phy2log, a * 4);
    memcpy(d->log2phy, p->log2phy, b * 4);
    memcpy(d->logcnt, p->logcnt, c * 4);
}

/* Each layer's balancedness (mean over the live GPUs over their largest
 * load; 1 for a layer with no load), of plan p on loads w; gl is [L][M]
 * scratch. */
static void layer_bal(const eplb_shape *s, const float *w, const int32_t *p2l,
                      const int32_t *logcnt, const uint8_t *mask, double *gl,
                      double *out)
{
    if (eplb_gpu_loads(s, w, p2l, logcnt, gl))
        die("gpu loads");
    int M = s->num_gpus;
    for (int l = 0; l < s->layers; l++) {
        double sum = 0, max = 0;
        int live = 0;
        for (int g = 0; g < M; g++) {
            if (mask && !mask[g])
                continue;
            double v = gl[(size_t)l * M + g];
            sum += v;
            max = v > max ? v : max;
            live++;
        }
        out[l] = max > 0 ? sum / live / max : 1.0;
    }
}

/* Whether plan p2l puts an expert on a GPU that mask marks dead. */
static int uses_dead_gpu(const eplb_shape *s, const int32_t *p2l,
                         const uint8_t *mask)
{
    if (!mask)
        return 0;
    int P = s->num_replicas, per = P / s->num_gpus;
    for (int l = 0; l < s->layers; l++)
        for (int p = 0; p < P; p++)
            if (!mask[p / per] && p2l[(size_t)l * P + p] >= 0)
                return 1;
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    return timing_cmp_double(b, a);
}

/* Smallest k in 1..min(nh, nl) with base - (h[0] + .. + h[k-1]) + (lo[0]
 * + .. + lo[k-1]) <= cap (lo NULL: nothing added), h sorted down, lo up;
 * the largest k when none is. */
static int fewest_out(double base, const double *h, int nh, const double *lo,
                      int nl, double cap)
{
    int kmax = lo ? (nh < nl ? nh : nl) : nh;
    for (int k = 1; k <= kmax; k++) {
        base -= h[k - 1];
        if (lo)
            base += lo[k - 1];
        if (base <= cap)
            return k;
    }
    return kmax;
}

/* The exact count behind copies_bound's (4): the fewest groups that
 * change node in a placement of whole groups on nodes where every node's
 * groups weigh at most cap and need at most `slots` replicas (need[g]:
 * the least replicas group g's experts take at the target), searched
 * depth first with at most k moves for k = lo, lo + 1, ... The search
 * counts the placements it visits; past MOVES_SEARCH_NODES it gives up
 * and returns the k it was trying (every smaller count was ruled out),
 * or -1 at lo (the caller keeps its count). */
#define MOVES_SEARCH_NODES 2000000L

typedef struct moves_search {
    int G, N, slots, k;
    const int *home, *need;
    const double *gload;
    double cap;
    double *nload; /* [N] */
    long *nneed;   /* [N] */
    long visited;
} moves_search;

static int place_groups(moves_search *ms, int g, int moved)
{
    if (++ms->visited > MOVES_SEARCH_NODES)
        return 0;
    if (g == ms->G)
        return 1;
    /* home first: the placements of fewer moves come first */
    for (int i = 0; i < ms->N; i++) {
        int n = i == 0 ? ms->home[g] : i <= ms->home[g] ? i - 1 : i;
        int m = moved + (n != ms->home[g]);
        if (m > ms->k || ms->nload[n] + ms->gload[g] > ms->cap ||
            ms->nneed[n] + ms->need[g] > ms->slots)
            continue;
        ms->nload[n] += ms->gload[g];
        ms->nneed[n] += ms->need[g];
        int ok = place_groups(ms, g + 1, m);
        ms->nload[n] -= ms->gload[g];
        ms->nneed[n] -= ms->need[g];
        if (ok || ms->visited > MOVES_SEARCH_NODES)
            return ok;
    }
    return 0;
}

static long fewest_moves(moves_search *ms, int lo)
{
    ms->visited = 0;
    for (int k = lo; k <= ms->G; k++) {
        for (int n = 0; n < ms->N; n++) {
            ms->nload[n] = 0.0;
            ms->nneed[n] = 0;
        }
        ms->k = k;
        if (place_groups(ms, 0, 0))
            return k;
        /* given up within k: every count below k was ruled out whole */
        if (ms->visited > MOVES_SEARCH_NODES)
            return k > lo ? k : -1;
    }
    return -1;
}

/* A lower bound of the expert copies any plan meeting the targets needs,
 * from the plan in service `cur` (each window's figure in the tables).
 *
 * What it counts: under the hierarchical policy with every GPU live, in
 * each layer, the groups that must change node, times E/G. It is 0 under
 * the global policy, with a mask, and in a layer whose plan in service
 * splits a group over nodes (no bound is computed there); in particular
 * it is 0 when the plan in service already meets every layer's target
 * (not moving then needs no copy).
 *
 * Why it is a bound. A plan meets layer l's target T_l = (1 - tol) x the
 * fresh plan's balancedness when its largest GPU load is at most
 * cap = mean GPU load / T_l. Under the hierarchical policy every group
 * sits on one node, in the plan in service (the library checks it of a
 * current plan) and in the new plan (which the next window passes back as
 * current); so an expert's whole load falls on its group's node, and a
 * node's GPUs carry the sum of its groups' loads, at least one of them
 * 1/(M/N) of it: a node whose groups sum to more than (M/N) x cap must
 * lose groups. (1) A group that changes node costs at least E/G copies:
 * each of its E/G experts needs a slot on the new node, on a GPU that held
 * no replica of it (all of them were on the old node), and eplb_copies
 * counts each expert new on a GPU. (2) A node that must lose groups: with
 * k groups out and k' in (any k' >= 0), its load is at least its load
 * minus its k heaviest groups, so k is at least the fewest heaviest
 * groups whose removal brings it to its share; R, the sum of these over
 * the overloaded nodes, counts distinct groups (a group leaves one node).
 * (3) When a node has slots for exactly G/N groups (P/N < (G/N + 1) E/G,
 * distinct experts needing distinct slots: DeepSeek's 72 slots per node
 * for 2 groups of 32, and the Kimi-like and 1024-expert shapes here),
 * every node keeps exactly G/N groups: k out means k in, from outside the
 * node, so (2) takes k groups in as the k lightest groups elsewhere; and
 * over the set O of overloaded nodes, x groups leave O for other nodes and
 * x others come in, where O's total must drop by the sum of the excesses,
 * so x is at least the fewest exchanges of O's heaviest groups for the
 * lightest groups elsewhere that drop it that much. The groups leaving O
 * (at least max(R, x)) and those entering O from elsewhere (x) are
 * distinct, so at least max(R, x) + x groups change node. (4) Exactly:
 * in the new plan each node's groups weigh at most its capacity and their
 * replicas fit its slots, an expert of load w taking at least
 * ceil(w / (cap / (M/N))) of them (no replica's share may exceed a GPU's
 * largest load); the fewest groups that change node in any placement of
 * whole groups meeting both (fewest_moves, searched from the count of (2)
 * and (3) up, which stands where the search gives up) is a bound as
 * well, and the larger counts. With 160 slots on 2 nodes for 8 groups of
 * 16 (the Qwen-like shape) a group can leave alone by (2), but the node
 * it joins then has a slot for each of its 80 experts and none for the
 * replicas its hot ones need: two groups change node. A relative slack of
 * 1e-6 on cap keeps float rounding on the safe side. */
static long copies_bound(const eplb_shape *s, int policy, const float *w,
                         const int32_t *cur, const uint8_t *mask,
                         const double *target, long *layer_bound)
{
    for (int l = 0; l < s->layers; l++)
        layer_bound[l] = 0;
    if (policy != EPLB_POLICY_HIERARCHICAL || mask)
        return 0;
    int L = s->layers, E = s->experts, P = s->num_replicas, G = s->num_groups,
        N = s->num_nodes, M = s->num_gpus;
    int per_group = E / G, slots_node = P / N, groups_node = G / N;
    int fixed = slots_node / per_group == groups_node;
    int *gnode = xmalloc(sizeof(int) * G);
    double *gload = xmalloc(sizeof(double) * G);
    double *nload = xmalloc(sizeof(double) * N);
    double *in = xmalloc(sizeof(double) * G), *out = xmalloc(sizeof(double) * G);
    int *need = xmalloc(sizeof(int) * G);
    long *nneed = xmalloc(sizeof(long) * N);
    long total = 0;
    for (int l = 0; l < L; l++) {
        if (target[l] <= 0)
            continue;
        const float *wl = w + (size_t)l * E;
        double sum = 0;
        for (int g = 0; g < G; g++) {
            gnode[g] = -1;
            gload[g] = 0;
        }
        for (int e = 0; e < E; e++) {
            gload[e / per_group] += wl[e];
            sum += wl[e];
        }
        int split = 0;
        for (int p = 0; p < P && !split; p++) {
            int e = cur[(size_t)l * P + p];
            if (e < 0)
                continue;
            int g = e / per_group, n = p / slots_node;
            if (gnode[g] >= 0 && gnode[g] != n)
                split = 1;
            gnode[g] = n;
        }
        if (split)
            continue;
        double cap = (double)(M / N) * (sum / M) / target[l] * (1 + 1e-6);
        for (int n = 0; n < N; n++)
            nload[n] = 0;
        for (int g = 0; g < G; g++)
            nload[gnode[g]] += gload[g];
        long R = 0;
        int n_over = 0;
        double excess = 0;
        for (int n = 0; n < N; n++) {
            if (nload[n] <= cap)
                continue;
            n_over++;
            excess += nload[n] - cap;
            int ni = 0, no = 0;
            for (int g = 0; g < G; g++) {
                if (gnode[g] == n)
                    in[ni++] = gload[g];
                else
                    out[no++] = gload[g];
            }
            qsort(in, ni, sizeof *in, cmp_desc);
            qsort(out, no, sizeof *out, timing_cmp_double);
            R += fewest_out(nload[n], in, ni, fixed ? out : NULL, no, cap);
        }
        long groups = R;
        if (fixed && n_over) {
            /* x: exchanges between the overloaded nodes and the others */
            int ni = 0, no = 0;
            for (int g = 0; g < G; g++) {
                if (nload[gnode[g]] > cap)
                    in[ni++] = gload[g];
                else
                    out[no++] = gload[g];
            }
            qsort(in, ni, sizeof *in, cmp_desc);
            qsort(out, no, sizeof *out, timing_cmp_double);
            int x = fewest_out(excess, in, ni, out, no, 0.0);
            groups = (R > x ? R : x) + x;
        }
        /* (4): the placements of whole groups themselves */
        double gpu_cap = cap / (M / N);
        for (int g = 0; g < G; g++) {
            long nd = 0;
            for (int e = g * per_group; e < (g + 1) * per_group; e++) {
                double c = ceil(wl[e] / gpu_cap);
                nd += c > slots_node ? slots_node + 1 : c > 1 ? (long)c : 1;
            }
            need[g] = nd > slots_node ? slots_node + 1 : (int)nd;
        }
        moves_search ms = {G, N, slots_node, 0, gnode, need, gload, cap,
                           nload, nneed, 0};
        long exact = fewest_moves(&ms, (int)groups);
        if (exact > groups)
            groups = exact;
        layer_bound[l] = groups * per_group;
        total += groups * per_group;
    }
    free(gnode);
    free(gload);
    free(nload);
    free(in);
    free(out);
    free(need);
    free(nneed);
    return total;
}

static double vmean(const double *v, int n)
{
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) {
            s += v[i];
            k++;
        }
    return k ? s / k : NAN;
}

static double vmedian(const double *v, int n)
{
    double t[MAXW];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            t[k++] = v[i];
    return k ? median(t, k) : NAN;
}

/* "[a,b,...]" of v[0..n), null for NAN. */
static const char *json_array(char *buf, size_t size, const double *v, int n,
                              const char *fmt)
{
    size_t o = 0;
    buf[o++] = '[';
    for (int i = 0; i < n && o + 32 < size; i++) {
        if (i)
            buf[o++] = ',';
        if (isnan(v[i]))
            o += (size_t)snprintf(buf + o, size - o, "null");
        else
            o += (size_t)snprintf(buf + o, size - o, fmt, v[i]);
    }
    snprintf(buf + o, size - o, "]");
    return buf;
}

static void print_cell(double v, const char *fmt, int width)
{
    if (isnan(v))
        printf(" %*s", width, "-");
    else
        printf(fmt, v);
}

static void series_print(bench *b, const series *sr, const char *mode,
                         const char *backend, const vstats *st, long slots,
                         int policy)
{
    int n = sr->windows - 1;
    /* one node of one group is the global policy */
    const char *pname = policy == EPLB_POLICY_HIERARCHICAL &&
                                sr->s.num_nodes > 1
                            ? "hierarchical"
                            : "global";
    char config[CONFIG_NAME_LEN];
    config_name(config, &sr->s);
    printf("\n### %s: %dx%d %s (%s), %s, %s backend, %d windows\n",
           sr->name, sr->s.layers, sr->s.experts, config,
           pname, mode, backend, sr->windows);
    printf("%-11s", "copies %");
    for (int i = 0; i < n; i++) {
        char h[16];
        snprintf(h, sizeof h, "w%d", i + 1);
        printf(" %6s", h);
    }
    printf(" %6s %6s %7s %7s %5s %9s\n", "mean", "chg%", "bal.in", "bal.nx",
           "miss", "us/call");
    for (int v = 0; v < NV; v++) {
        const vstats *x = &st[v];
        double c[MAXW], ch[MAXW];
        for (int i = 0; i < n; i++) {
            c[i] = 100.0 * x->copies[i] / slots;
            ch[i] = 100.0 * x->changed[i] / slots;
        }
        printf("%-11s", vnames[v]);
        for (int i = 0; i < n; i++)
            print_cell(c[i], " %6.2f", 6);
        print_cell(vmean(c, n), " %6.2f", 6);
        print_cell(vmean(ch, n), " %6.2f", 6);
        print_cell(vmean(x->bal, n), " %7.4f", 7);
        print_cell(vmean(x->next, n), " %7.4f", 7);
        if (v >= V_TOL0 && v < V_STAY)
            printf(" %5ld", x->miss);
        else
            printf(" %5s", "-");
        print_cell(vmedian(x->us, n), " %9.0f", 9);
        printf("\n");
        char a[5][MAXW * 24 + 8];
        double bnd[MAXW];
        for (int i = 0; i < n; i++)
            bnd[i] = 100.0 * x->bound[i] / slots;
        json_record(b, "{\"kind\":\"replan_series\",\"series\":\"%s\","
                    "\"series_kind\":\"%s\",\"layers\":%d,\"experts\":%d,"
                    "\"config\":\"%s\",\"policy\":\"%s\",\"mode\":\"%s\","
                    "\"windows\":%d,\"mask_from\":%d,\"plan\":\"%s\","
                    "\"tolerance\":%s,\"slots\":%ld,"
                    "\"copies_pct\":%s,\"changed_pct\":%s,"
                    "\"balancedness\":%s,\"balancedness_next\":%s,"
                    "\"bound_pct\":%s,\"layers_below_target\":%ld,"
                    "\"layers_below_bound\":%ld,"
                    "\"median_us\":%.1f}",
                    sr->name, sr->kind, sr->s.layers, sr->s.experts, config,
                    pname, mode, sr->windows,
                    sr->mask ? sr->mask_from : -1, vnames[v],
                    v >= V_TOL0 && v < V_STAY
                        ? (v == V_TOL0 ? "0" : v == V_TOL0 + 1 ? "0.01"
                                                               : "0.05")
                        : "null",
                    slots, json_array(a[0], sizeof a[0], c, n, "%.4f"),
                    json_array(a[1], sizeof a[1], ch, n, "%.4f"),
                    json_array(a[2], sizeof a[2], x->bal, n, "%.6f"),
                    json_array(a[3], sizeof a[3], x->next, n, "%.6f"),
                    v >= V_TOL0 && v < V_STAY
                        ? json_array(a[4], sizeof a[4], bnd, n, "%.4f")
                        : "null",
                    v >= V_TOL0 && v < V_STAY ? x->miss : -1L,
                    v >= V_TOL0 && v < V_STAY ? x->over : -1L,
                    isnan(vmedian(x->us, n)) ? -1.0 : vmedian(x->us, n));
    }
    /* the bound, per window, for each tolerance's chain */
    for (int k = 0; k < NSTOL; k++) {
        const vstats *x = &st[V_TOL0 + k];
        double c[MAXW];
        for (int i = 0; i < n; i++)
            c[i] = 100.0 * x->bound[i] / slots;
        printf("%-11s", k == 0 ? "bound t0" : k == 1 ? "bound t.01"
                                                     : "bound t.05");
        for (int i = 0; i < n; i++)
            print_cell(c[i], " %6.2f", 6);
        print_cell(vmean(c, n), " %6.2f", 6);
        printf("  (layers off target before:");
        for (int i = 0; i < n; i++)
            printf(" %d", x->off[i]);
        printf(")\n");
    }
    /* the layers with a bound: groups that must change node */
    for (int k = 0; k < NSTOL; k++) {
        const vstats *x = &st[V_TOL0 + k];
        if (!x->forced)
            continue;
        printf("%s, the %ld layer-windows whose groups must change node: "
               "copies %.2fx the bound (worst layer %.2fx; %ld above "
               "1.5x)\n",
               vnames[V_TOL0 + k], x->forced,
               x->forced_copies / x->forced_bound, x->forced_worst,
               x->forced_over);
        json_record(b, "{\"kind\":\"replan_forced\",\"series\":\"%s\","
                    "\"mode\":\"%s\",\"plan\":\"%s\",\"layers\":%ld,"
                    "\"copies_over_bound\":%.4f,\"worst\":%.4f,"
                    "\"above_1_5\":%ld}",
                    sr->name, mode, vnames[V_TOL0 + k], x->forced,
                    x->forced_copies / x->forced_bound, x->forced_worst,
                    x->forced_over);
    }
    if (sr->mask)
        printf("(not moving: none from window %d, where a dead GPU holds "
               "experts)\n", sr->mask_from);
    if (sr->mask && isnan(vmean(st[V_RELAB].bal, n)))
        printf("(relabelled: eplb_relabel refuses these plans)\n");
    for (int k = 0; k < NSTOL; k++)
        if (st[V_TOL0 + k].over)
            printf("(%s: copies below the bound on %ld layer-windows: the "
                   "bound's premise failed)\n", vnames[V_TOL0 + k],
                   st[V_TOL0 + k].over);
}

/* One series in one mode: window 0 planned fresh, then each window from
 * the last. */
static void run_series(bench *b, const series *sr, const eplb_options *mode,
                       const char *mode_name)
{
    const eplb_shape *s = &sr->s;
    int W = sr->windows, L = s->layers, M = s->num_gpus;
    long slots = (long)L * s->num_replicas;
    eplb_options o = *mode;
    o.tolerance = 0.0f;
    eplb_context *ctx;
    if (eplb_context_create(&ctx, &o))
        die("context");
    int policy = eplb_resolve_policy(o.policy, s);
    if (policy < 0)
        die("policy");
    plan_buf cur[NV], fresh, res;
    for (int v = 0; v < NV; v++)
        plan_alloc(&cur[v], s);
    plan_alloc(&fresh, s);
    plan_alloc(&res, s);
    int32_t *relab = xmalloc((size_t)slots * 4);
    double *gl = xmalloc(sizeof(double) * L * M);
    double *bf = xmalloc(sizeof(double) * L), *bl = xmalloc(sizeof(double) * L);
    double *target = xmalloc(sizeof(double) * L);
    long *lbound = xmalloc(sizeof(long) * L);
    eplb_shape one = *s;
    one.layers = 1;
    vstats st[NV];
    for (int v = 0; v < NV; v++) {
        for (int i = 0; i < MAXW; i++)
            st[v].copies[i] = st[v].changed[i] = st[v].bal[i] =
                st[v].next[i] = st[v].bound[i] = st[v].us[i] = NAN;
        memset(st[v].off, 0, sizeof st[v].off);
        st[v].miss = st[v].over = st[v].forced = st[v].forced_over = 0;
        st[v].forced_copies = st[v].forced_bound = st[v].forced_worst = 0.0;
    }
    if (eplb_rebalance_from(ctx, s, sr->w[0], NULL, series_mask(sr, 0),
                            fresh.phy2log, fresh.log2phy, fresh.logcnt))
        die("rebalance");
    for (int v = 0; v < NV; v++)
        plan_copy(&cur[v], &fresh, s);
    int stay_ok = 1;
    for (int t = 1; t < W; t++) {
        int i = t - 1;
        const float *w = sr->w[t];
        const uint8_t *mk = series_mask(sr, t);
        set_tolerance(ctx, 0.0f);
        double t0 = timing_now_us();
        if (eplb_rebalance_from(ctx, s, w, NULL, mk, fresh.phy2log,
                                fresh.log2phy, fresh.logcnt))
            die("rebalance");
        st[V_FRESH].us[i] = timing_now_us() - t0;
        layer_bal(s, w, fresh.phy2log, fresh.logcnt, mk, gl, bf);
        st[V_FRESH].copies[i] = copies_between(s, cur[V_FRESH].phy2log,
                                               fresh.phy2log);
        st[V_FRESH].changed[i] = (double)eplb_migration(
            s, cur[V_FRESH].phy2log, fresh.phy2log);
        plan_copy(&cur[V_FRESH], &fresh, s);
        /* relabelled: the fresh plan renamed against this column's plan */
        t0 = timing_now_us();
        int rc = eplb_relabel(s, policy, cur[V_RELAB].phy2log, fresh.phy2log,
                              relab);
        st[V_RELAB].us[i] = timing_now_us() - t0;
        if (rc == EPLB_OK) {
            st[V_RELAB].copies[i] = copies_between(s, cur[V_RELAB].phy2log,
                                                   relab);
            st[V_RELAB].changed[i] = (double)eplb_migration(
                s, cur[V_RELAB].phy2log, relab);
            plan_copy(&cur[V_RELAB], &fresh, s);
            /* renamed GPUs: the same logcnt; log2phy is not read here */
            memcpy(cur[V_RELAB].phy2log, relab, (size_t)slots * 4);
        } else {
            /* (a masked plan may be beyond what relabel takes) */
            plan_copy(&cur[V_RELAB], &fresh, s);
        }
        for (int k = 0; k < NSTOL; k++) {
            vstats *x = &st[V_TOL0 + k];
            plan_buf *c = &cur[V_TOL0 + k];
            for (int l = 0; l < L; l++)
                target[l] = (1.0 - series_tols[k]) * bf[l];
            layer_bal(s, w, c->phy2log, c->logcnt, mk, gl, bl);
            for (int l = 0; l < L; l++)
                x->off[i] += bl[l] < target[l] * (1 - 1e-6);
            x->bound[i] = (double)copies_bound(s, policy, w, c->phy2log, mk,
                                               target, lbound);
            set_tolerance(ctx, series_tols[k]);
            t0 = timing_now_us();
            if (plan_into(ctx, s, w, c->phy2log, mk, &res))
                die("rebalance_from");
            x->us[i] = timing_now_us() - t0;
            x->copies[i] = copies_between(s, c->phy2log, res.phy2log);
            x->changed[i] = (double)eplb_migration(s, c->phy2log,
                                                   res.phy2log);
            layer_bal(s, w, res.phy2log, res.logcnt, mk, gl, bl);
            for (int l = 0; l < L; l++)
                x->miss += bl[l] < target[l] * (1 - 1e-6);
            /* the bound checked layer by layer against the plan found
             * (a plan meeting the target: it never needs fewer) */
            for (int l = 0; l < L; l++) {
                if (!lbound[l])
                    continue;
                size_t off = (size_t)l * s->num_replicas;
                long lc = copies_between(&one, c->phy2log + off,
                                         res.phy2log + off);
                if (lc < lbound[l])
                    x->over++;
                /* (the ratio only where the bound applies: the plan on
                 * target, its copies not below it) */
                if (lc < lbound[l] || bl[l] < target[l] * (1 - 1e-6))
                    continue;
                double ratio = (double)lc / lbound[l];
                x->forced++;
                x->forced_copies += lc;
                x->forced_bound += lbound[l];
                x->forced_over += ratio > 1.5;
                if (ratio > x->forced_worst)
                    x->forced_worst = ratio;
            }
            plan_buf tmp = *c;
            *c = res;
            res = tmp;
        }
        set_tolerance(ctx, 0.0f);
        if (uses_dead_gpu(s, cur[V_STAY].phy2log, mk))
            stay_ok = 0;
        if (stay_ok) {
            st[V_STAY].copies[i] = st[V_STAY].changed[i] = 0;
        }
        for (int v = 0; v < NV; v++) {
            if (v == V_STAY && !stay_ok)
                continue;
            if (v == V_RELAB && isnan(st[V_RELAB].copies[i]))
                continue;
            st[v].bal[i] = balancedness(s, w, &cur[v]);
            if (t + 1 < W)
                st[v].next[i] = balancedness(s, sr->w[t + 1], &cur[v]);
        }
    }
    series_print(b, sr, mode_name, eplb_context_backend(ctx), st, slots,
                 policy);
    free(relab);
    free(gl);
    free(bf);
    free(bl);
    free(target);
    free(lbound);
    for (int v = 0; v < NV; v++)
        plan_free(&cur[v]);
    plan_free(&fresh);
    plan_free(&res);
    eplb_context_destroy(ctx);
}

/* Indexes of bench_files the series read. */
enum {
    F_DECODE_1000 = 0, /* decode_in1000out1000 */
    F_PREFILL_1000 = 4 /* prefill_in1000out1000 */
};

/* Every series, each in each mode (the default options after the
 * deterministic ones, not with --quick). */
static void series_tables(bench *b, const eplb_options *o)
{
    int quick = b->quick;
    int W = quick ? 3 : 8;
    eplb_options det = deterministic(o);
    const eplb_options *modes[2] = {&det, o};
    char mode_names[2][64];
    snprintf(mode_names[0], sizeof mode_names[0], "deterministic");
    snprintf(mode_names[1], sizeof mode_names[1], "%d candidates, %d swap "
             "rounds", o->candidates, o->swap_rounds);
    int n_modes = quick ? 1 : 2;
    const eplb_shape deepseek = {GEN_LAYERS, GEN_EXPERTS, 288, 8, 4, 32};
    const eplb_shape global = {GEN_LAYERS, GEN_EXPERTS, 288, 8, 18, 144};
    const eplb_shape shapes[] = {
        {94, 128, 160, 8, 2, 16},   /* Qwen-like */
        {61, 384, 448, 8, 4, 32},   /* Kimi-K2-like */
        {16, 1024, 1280, 8, 8, 64}, /* 1024 experts, hierarchical */
        {16, 1024, 1280, 1, 1, 64}, /* 1024 experts, global */
    };
    int n_shapes = quick ? 1 : 4;
    printf("\n## Re-planning series: each window planned from the last "
           "window's plan\n"
           "(copies: experts new on a GPU, in %% of all slots per window; "
           "chg%%: slots whose expert changed; bal.in: balancedness on the "
           "window's loads, bal.nx: on the next window's; miss: layer-windows "
           "below the target; us/call: median host wall clock; bound: "
           "the fewest copies any plan meeting the target needs, from the "
           "same column's plan, see copies_bound; %s loads)\n",
           b->have_real ? "recorded" : "generated");
    static const int seq[] = {0, 1, 2, 3, 4, 5};
    for (int m = 0; m < n_modes; m++) {
        const eplb_options *mo = modes[m];
        series sr;
        /* drift, DeepSeek's shape and the global config */
        series_drift(b, &sr, F_PREFILL_1000, F_DECODE_1000, W, &deepseek);
        run_series(b, &sr, mo, mode_names[m]);
        series_free(&sr);
        if (!quick) {
            series_drift(b, &sr, F_PREFILL_1000, F_DECODE_1000, W, &global);
            run_series(b, &sr, mo, mode_names[m]);
            series_free(&sr);
        }
        /* files in turn with noise */
        series_files(b, &sr, seq, quick ? 3 : 6, &deepseek);
        run_series(b, &sr, mo, mode_names[m]);
        series_free(&sr);
        if (!quick) {
            series_files(b, &sr, seq, 6, &global);
            run_series(b, &sr, mo, mode_names[m]);
            series_free(&sr);
        }
        /* a burst */
        series_burst(b, &sr, F_DECODE_1000, quick ? 4 : 6, quick ? 1 : 2, 4,
                     &deepseek);
        run_series(b, &sr, mo, mode_names[m]);
        series_free(&sr);
        /* other shapes, made of real layers, on the drift */
        for (int k = 0; k < n_shapes; k++) {
            eplb_shape sh = shapes[k];
            if (quick)
                sh.layers = 8;
            series_drift(b, &sr, F_PREFILL_1000, F_DECODE_1000, W, &sh);
            run_series(b, &sr, mo, mode_names[m]);
            series_free(&sr);
        }
        /* a GPU dies mid-series */
        series_drift(b, &sr, F_PREFILL_1000, F_DECODE_1000, W, &deepseek);
        series_gpu_dies(&sr, 5, W / 2);
        run_series(b, &sr, mo, mode_names[m]);
        series_free(&sr);
    }
}

/* The noise table for every config, with the planning options `base`. */
static void replan_tables(bench *b, const eplb_options *base,
                          const loadset *ls)
{
    eplb_context *ctx;
    if (eplb_context_create(&ctx, base))
        die("context");
    printf("\n## Re-planning from the current placement: expert copies in "
           "%% of slots, balancedness (mean over layers)\n"
           "(fresh: a new plan; relab.: it with GPUs renamed to keep the "
           "most experts; tol: from the current plan, every layer at least "
           "(1 - tol) x as balanced as fresh; stale: not moving;\n %s on %s, "
           "%d candidates, %d swap rounds)\n", eplb_context_backend(ctx),
           eplb_context_device(ctx), base->candidates, base->swap_rounds);
    for (int c = 0; c < NCONFIGS; c++)
        noise_table(b, ctx, base, ls, c);
    eplb_context_destroy(ctx);
}

int replan_section(bench *b, const eplb_options *o)
{
    loadset ls;
    eplb_options det = deterministic(o);
    if (b->have_real) {
        int want = b->quick ? 1 : NFILES;
        if (loadset_real(b, want, &ls) != want) {
            loadset_free(&ls);
            return -1;
        }
    } else {
        printf("\n(re-planning: the recorded loads are not under %s: the "
               "tables below use the generator's loads)\n", b->workloads);
        loadset_read(b, &ls);
    }
    /* the deterministic mode, then (a long run) the candidate mode */
    replan_tables(b, &det, &ls);
    if (!b->quick)
        replan_tables(b, o, &ls);
    loadset_free(&ls);
    series_tables(b, o);
    migration_tables(b, o);
    return 0;
}
