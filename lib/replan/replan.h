/* The re-plan search's private declarations, shared by its files:
 *   state.c   the workspace, the layer's indexes, loads and copies
 *   moves.c   the move families (one table) and the loop that tries them
 *   repair.c  a domain's repair, its restart from new replica counts, the
 *             placement of experts left without a slot
 *   pairs.c   two slots per GPU: the layer re-paired (a fallback)
 *   relabel.c the fresh plan relabelled (the fallback), eplb_relabel
 *   replan.c  replan_from_current: per layer, repair or fallback
 * and, apart from the search (internal.h declares them):
 *   greedy.c    single copies, greedily, within a budget
 *   schedule.c  a re-plan cut into units and stages (calls greedy.c)
 * Each file calls only the ones listed above it, never back. */
#ifndef EPLB_REPLAN_H
#define EPLB_REPLAN_H

#include "internal.h"

#include <stdint.h>

/* Moves per domain before the search gives up on it: beyond half its
 * slots a fresh plan costs about as much. */
#define REPLAN_MAX_MOVES(j) ((j)->dom_gpus * (j)->d->ppg / 2 + 4)

/* An expert that may take the heaviest GPU's slot in a relocation, with
 * what does not depend on the slot the leaving expert takes. */
typedef struct reloc_cand {
    int y;
    int h_cost;        /* copies on the heaviest GPU h: gain(h, y) */
    double ry1, dy;    /* y's share with one more replica, and the change */
    double hl;         /* h's load after the move */
    double h_part;     /* h's change of excess */
    double shed;       /* the most y's other replicas can shed (before the
                          cap of the other GPUs' excess) */
} reloc_cand;

/* The re-pairing's replicas and GPUs (pairs.c). */
typedef struct pair_item {
    double share; /* w / cnt */
    int e;
} pair_item;
typedef struct pair_gpu {
    double key, key2;
    int g;
} pair_gpu;

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
    double *share;     /* [P] w/cnt of each slot's expert (a family's
                          scratch, filled for its domain) */
    int share_lo, share_hi; /* share[] and its bounds hold GPUs
                          share_lo..share_hi-1 of the layer as it stands:
                          set_slot and each repair step empty the range */
    double *share_max; /* [M] the largest and smallest share on each */
    double *share_min; /* GPU (filled with share) */
    int *touched;      /* [M] GPUs with a nonzero gdelta */
    int *gpu_list;     /* [M] a family's list of GPUs */
    int *head, *next;  /* [E], [P]: each expert's slots */
    struct move_list *collect; /* non-NULL: gather first moves instead */
    /* > 0 while the lookahead looks for a second move: only a clean move
     * of fewer copies than this can complete a cheaper pair, so the
     * families keep no other, and at 1 (a copy-free move) they scan only
     * the GPUs and experts such a move can use; that work is counted as
     * done, so a layer's budget lasts longer than it did */
    int clean_below;
    uint32_t *held;    /* [M][E] replicas of each expert on each GPU */
    uint8_t *was;      /* [M][E] 1 where the plan in service had it */
    int *cur_head, *cur_next; /* [E], [P]: each expert's current slots */
    int *cur_prev_gpu; /* [P] GPU of the previous slot in that list */
    uint64_t *pairs;   /* [max(N*N, gn*gn)] for the matching */
    uint8_t *tflag;    /* [M] 1 while a GPU is in `touched` */
    uint8_t *gmark;    /* [M] a family's GPUs of interest, zero between uses */
    int *la_gpu;       /* [M] the lookahead's GPUs summed again, */
    double *la_load;   /* [M] and their loads before */
    int32_t *kout;     /* [ppg] replan_keep_slots' output */
    int *kavail, *kused; /* [E] replan_keep_slots' counts, zero between calls */
    int *seen;         /* [E] zero between uses */
    int32_t *keep_cnt; /* [E] the min_gain rule's counts */
    struct reloc_cand *ycand; /* [E] the relocation's candidate experts */
    int *rlist;        /* [E] the reassign family's experts that may take */
    double *rshare;    /* [E] a slot of h, and w/(cnt+1) of each, */
    double *rleast;    /* [E] and the least peak their GPUs leave */
    uint8_t *yflag;    /* [E] 1 for those, zero between uses */
    int *mslot;        /* [P] the reassign family's slots that may be */
    double *mslot_share; /* [P] taken (expert with another replica), */
    int *mslot_at;     /* [M + 1] and where each GPU's start (mslot and
                          mslot_at: the duplicate family's list too) */
    int *node_map;     /* [N] fresh node -> current node */
    int *usable;       /* [gn] */
    /* the re-pairing (pairs.c); reserved for two slots per GPU only */
    pair_item *pr_items; /* [P] replicas to pair, sorted */
    pair_gpu *pr_gpus; /* [M] GPUs that may keep their pair */
    pair_item *pr_tmp; /* [P] and the sorts' scratch */
    pair_gpu *pr_gtmp; /* [M] */
    int *pr_rem, *pr_cnt; /* [E] replicas left to place; counts in service */
    int *pr_bg, *pr_at; /* [M] GPUs broken up, and each GPU's place there */
    int *pr_px, *pr_py, *pr_gpu_pair, *pr_pair_gpu, *pr_from, *pr_queue;
                       /* [M] the new pairs and their matching to GPUs */
    double *pr_sums;   /* [5][P] shifted pair sums, */
    double *pr_bmax;   /* [5][P/16+1] and their blocks' largest */
    double *pr_pre;    /* [P] the running largest of the pairs as they are */
    int32_t *pr_out[3]; /* [P] a re-paired layer per count vector */
    double *gload;     /* [G] load of each group (group moves) */
    double *nload;     /* [N] load of each node */
    int *nexp;         /* [N] experts on each node */
    int *gnode;        /* [G] node of each group, -1 when split over nodes */
    /* The search's work on the layer in hand (move evaluations, and passes
     * over the layer counted by their length) against its budget; past
     * the budget or the deadline the search gives up and the layer takes
     * its fallback. */
    long long work, budget;
    double deadline;   /* clock time in us after which the search stops; 0 none */
    double out_peak;   /* the layer's output's largest load when the
                          search summed it (the repaired layer), else -1 */
    int late;          /* the deadline passed */
    int node_restart;  /* 1: a node of the layer in hand was repaired
                          from counts made for its own experts (replan.c) */
    int plain_price;   /* 1: moves priced by what GPUs gain only (no
                          refund), the search's second try at a layer */
    int32_t *try_out;  /* [P] the first try's layer, */
    int32_t *try_cnt;  /* [E] and its counts */
};
typedef struct layer_job {
    const plan_dims *d;
    const float *w;
    const int32_t *cur; /* [P] the plan in service */
    const uint8_t *mask;
    double target;      /* largest GPU load allowed */
    replan_state *st;
    /* GPUs of one search domain: a node under the hierarchical policy
     * (experts stay on their node; with dead GPUs, the node's live ones,
     * when every expert of the plan in service lives on one node), else
     * all GPUs. */
    int dom_gpus;
    int distinct;       /* no GPU may hold an expert twice */
} layer_job;

/* First and last+1 GPU of the domain of GPU g. */
#define DOM_LO(j, g) ((g) / (j)->dom_gpus * (j)->dom_gpus)
#define DOM_HI(j, g) (DOM_LO(j, g) + (j)->dom_gpus)
#define DOM_OF_SLOT(j, s) ((s) / ((j)->dom_gpus * (j)->d->ppg))

/* Replicas of expert e on GPU g in the layer being repaired, and whether
 * the plan in service had e on g. */
#define HELD(st, g, e) ((st)->held[(size_t)(g) * (st)->dims.E + (e)])
#define WAS(st, g, e) ((st)->was[(size_t)(g) * (st)->dims.E + (e)])

/* Writes slot s of GPU g, keeping the replica counts per GPU. */
static inline void set_slot_on(replan_state *st, int g, int s, int e)
{
    int old = st->slot[s];
    st->share_hi = st->share_lo;
    if (old >= 0)
        HELD(st, g, old)--;
    st->slot[s] = e;
    if (e >= 0)
        HELD(st, g, e)++;
}

/* Writes slot s, keeping the replica counts per GPU. */
static inline void set_slot(replan_state *st, int s, int e)
{
    set_slot_on(st, s / st->dims.ppg, s, e);
}

static inline int live(const layer_job *j, int g)
{
    return !j->mask || j->mask[g];
}
/* Live GPUs of node n. */
static inline int node_live(const layer_job *j, int n)
{
    int k = 0;
    for (int g = n * j->d->gn; g < (n + 1) * j->d->gn; g++)
        k += live(j, g);
    return k;
}
static inline double excess(double load, double target)
{
    return load > target ? load - target : 0.0;
}
/* Experts a GPU gains by a move, counted against the plan in service:
 * none when it holds the expert already (another replica of it copies
 * nothing). */
static inline int gain(const layer_job *j, int g, int e)
{
    return !WAS(j->st, g, e) && !HELD(j->st, g, e);
}
/* Copies a GPU gives back when a move takes a replica of e from it: one
 * when that was its only replica and the plan in service did not have e
 * there (e was copied onto g earlier in this search: a group that came
 * from another node, an earlier move's expert). Moving such an expert on
 * costs nothing on net, which the move's price must say, or the search
 * pays two copies for a swap of two experts that are new on both GPUs. */
static inline int refund(const layer_job *j, int g, int e)
{
    return !j->st->plain_price && !WAS(j->st, g, e) && HELD(j->st, g, e) == 1;
}
/* A move's copies: what the GPUs gain less what they give back, at
 * least 0 (the ratio of excess removed per copy wants no negative). */
static inline int net_cost(int gains, int refunds)
{
    return gains > refunds ? gains - refunds : 0;
}

/* A move and what it does to the total excess over the target. */
typedef struct move {
    int kind;          /* 0 none, 1 swap, 2 reassign a slot, 3 cycle,
                          4 two swaps, 5 relocate (s: x on h, t: slot x
                          takes, u: expert that gets s), 6 group
                          exchange (s: group leaving node u for node v,
                          t: group coming back, -1 none); the
                          duplicate family makes kinds 1 and 2 */
    int s, t, u, v;    /* slots (swaps, cycle), or slot s given to expert t */
    int cost;          /* copies */
    double delta;      /* change of the summed excess (< 0 is progress) */
    double peak;       /* largest new load among the GPUs it touches */
    int clean;         /* clears the heaviest GPU, adds excess nowhere */
} move;

/* Adds n units of work; true when the layer's budget is spent. */
static inline int spend(replan_state *st, long long n)
{
    st->work += n;
    return st->work > st->budget;
}

/* 1 once the re-plan's deadline has passed (st->late from then on). */
static inline int replan_late(replan_state *st)
{
    if (st->deadline > 0 && !st->late && eplbi_now_us() > st->deadline)
        st->late = 1;
    return st->late;
}

static inline int exhausted(const replan_state *st)
{
    return st->late || st->work > st->budget;
}

static inline void swap_slots(replan_state *st, int a, int b)
{
    int32_t x = st->slot[a];
    set_slot(st, a, st->slot[b]);
    set_slot(st, b, x);
}


/* First moves for a two-move lookahead: they clear the heaviest GPU
 * whatever they do elsewhere; the ones that add the least excess. */
#define LOOKAHEAD 256
typedef struct move_list {
    int n;
    move m[LOOKAHEAD];
} move_list;

/* ---- state.c ------------------------------------------------------------ */

/* The layer's work budget (units of replan_state.work). */
long long replan_work_budget(const plan_dims *d);

/* The workspace for shape d in *stp, kept when the shape is the same. */
int replan_state_reserve(replan_state **stp, const plan_dims *d);


/* Distinct experts a GPU holds in `next` that it did not hold in the plan
 * in service, summed over the GPUs. */
long replan_layer_copies(replan_state *st, const int32_t *next);

/* Lays GPU g's experts (in want, any slot order) into its slots so that
 * every expert it held in cur keeps its old slot. */
void replan_keep_slots(replan_state *st, const int32_t *cur, int g,
                       int32_t *want);

/* Each expert's live slots of st->slot as lists (head, next). */
void replan_index_replicas(const plan_dims *d, replan_state *st);

/* The plan in service's indexes: WAS, each expert's current slots. */
void replan_index_current(replan_state *st, const int32_t *cur);
/* Zeroes the layer's WAS and HELD entries: both tables are zero between
 * layers (cur: the plan in service the layer indexed). */
void replan_unindex_layer(replan_state *st, const int32_t *cur);

/* ---- moves.c ------------------------------------------------------------ */

/* share[] and its bounds for the GPUs gpus[0..n) of domain g0..g1-1,
 * whose shares a move changed, when the rest of the domain's are as the
 * layer stands (valid_before); else the range stays empty. */
void replan_refresh_shares(const layer_job *j, const int *gpus, int n,
                           int g0, int g1, int valid_before);

/* Which families the shared loop tries (move_family.scope). */
#define MOVES_GPU 1   /* a repair's moves from the GPUs above the target */
#define MOVES_FIRST 2 /* the lookahead's first and second moves */
#define MOVES_NODES 4 /* moves of whole groups between nodes, from the
                         nodes above their capacity (over[] holds nodes) */

/* Tries the families of `scope`, tier by tier, from the GPUs over[0..n)
 * (heaviest first); keeps the best move in *best (kind 0: none). With
 * st->collect set, best is NULL and the moves are gathered there. */
void replan_best_move(const layer_job *j, int scope, const int *over,
                      int n_over, move *best);

void replan_apply_move(const layer_job *j, const move *m);

/* Node loads into st->nload, experts per node into st->nexp, each
 * group's load and node (-1: its experts live on several nodes) into
 * st->gload and st->gnode (the hierarchical policy: node_of is the node);
 * the node capacities are the target times the node's live GPUs. */
void replan_node_loads(const layer_job *j);

/* ---- repair.c ----------------------------------------------------------- */

/* Gives the empty live slots and the experts left with no slot a place;
 * 0 when some expert cannot be placed. */
int replan_place_orphans(const layer_job *j);

/* Dead GPUs, node domains: experts leave a node above its capacity for
 * the nodes with room, those left without a slot first (their node_of
 * changes; experts in service that leave lose their slots). */
void replan_spill_orphans(const layer_job *j);

/* Repairs the GPUs g0..g1-1 of st->slot in place; 0 if it gives up. */
int replan_repair_node(const layer_job *j, int g0, int g1, int lookahead_ok);

/* Exchanges whole groups between nodes while a node is above its
 * capacity; 0 when the layer must take its fallback. */
int replan_balance_nodes(const layer_job *j);

/* Restarts domain n from the replica counts fcnt [E]; 0 on failure. */
int replan_restart_with_counts(const layer_job *j, int n, int g0, int g1,
                               const int32_t *fcnt);

/* ---- pairs.c ------------------------------------------------------------ */

/* Two slots per GPU, one domain: the plan in service re-paired on target
 * with replica counts cnt [E] (sum: two per live GPU; in_service [E]: the
 * plan in service's), breaking up the fewest GPUs, into out [P]; returns
 * its copies, or -1 when the counts do not fit or no re-pairing is found
 * within the layer's work budget. */
long replan_repair_pairs(const layer_job *j, const int *cnt,
                         const int *in_service, int max_broken, int32_t *out);

/* ---- relabel.c ---------------------------------------------------------- */

/* 1 when node n holds the same experts in plans a and b. */
int replan_same_node_experts(replan_state *st, const int32_t *a,
                             const int32_t *b, int n);

/* The fresh layer relabelled to keep the most experts in place, into
 * st->alt. */
void replan_relabel_fresh(const layer_job *j, const int32_t *fresh);

/* The fewest copies any renaming of plan's GPUs costs (a lower bound of
 * the relabelled plan's copies and of plan's own). */
long replan_copies_floor(replan_state *st, const int32_t *plan);

/* Makes st->alt: 1 when it is on target, else -1. */
int replan_make_alt(const layer_job *j, const int32_t *fresh,
                    const int32_t *fcnt);

#endif /* EPLB_REPLAN_H */
