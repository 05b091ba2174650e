/* Private declarations shared by the library's source files. */
#ifndef EPLB_INTERNAL_H
#define EPLB_INTERNAL_H

#include "config.h"
/* The library defines the header's experimental (measuring) calls, so it
 * always sees their declarations, however it is compiled. */
#ifndef EPLB_EXPERIMENTAL
#define EPLB_EXPERIMENTAL
#endif
#include "eplb_cl.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (status.c) ------------------------------------------------ */

/* Records the detail of a failure for eplb_last_error() and returns code. */
int eplbi_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void eplbi_clear_error(void);

/* A monotonic clock in microseconds (clock.c): deadlines and the
 * floor's timings. */
double eplbi_now_us(void);

/* 1 when a load whose exact sum is at least v surely ends above T, with
 * room for the sums' rounding: the searches' pruning tests use it so that
 * they never drop a candidate the exact sums would keep (or tie). */
static inline int eplbi_surely_above(double v, double T)
{
    return v > T + 1e-9 * (fabs(v) + fabs(T));
}

/* ---- host threads (parallel.c) ---------------------------------------- */

/* eplb_options.host_threads' largest value, and the most its default (0)
 * takes: one thread per online CPU up to this many. */
#define EPLB_MAX_HOST_THREADS 256
#define EPLB_HOST_THREADS_AUTO_MAX 16

/* A context's parked host threads, and the option that sizes them. */
typedef struct plan_dims plan_dims;
typedef struct host_pool host_pool;
typedef struct eplbi_threads {
    int option;      /* eplb_options.host_threads */
    host_pool *pool; /* started on first use, NULL before */
} eplbi_threads;

/* The workers for `items` independent items under the option's value:
 * at least 1, at most the items. */
int eplbi_host_threads(int option, int items);

/* fn(arg, worker, item) for each item in 0..n-1, once, on up to
 * `workers` threads of *pool (worker 0 is the caller's; the pool starts
 * the threads it lacks, and runs on fewer when some cannot start);
 * returns when all are done. fn must touch only what its worker or its
 * item owns. */
void eplbi_parallel_items(host_pool **pool, int workers, int n,
                          void (*fn)(void *arg, int worker, int item),
                          void *arg);

/* The workers for `items` items whose workspaces reserve(ws, t, d) can
 * have, t = 0, 1, ...: a worker whose workspace cannot be had is not
 * started (its error is cleared). The first one's failure is returned
 * (negative, its status); else the workers, at least 1. */
int eplbi_reserve_workers(const eplbi_threads *threads, int items,
                          int (*reserve)(void *ws, int t, const plan_dims *d),
                          void *ws, const plan_dims *d);

/* Stops and joins the pool's threads; NULL is a no-op. */
void eplbi_host_pool_free(host_pool *pool);

/* ---- output structs (status.c) ---------------------------------------- */

/* An output struct (eplb_quality, eplb_profile) begins with the caller's
 * uint32_t struct_size. out_struct_check: EPLB_OK when it lies in
 * [min, full] (min: just past the first result field; full: the library's
 * sizeof), else EPLB_ERR_BAD_OPTION naming out->struct_size of `type`.
 * out_struct_write: copies the result `src` (a whole struct of the
 * library's layout) into the first struct_size bytes of out, all but
 * struct_size itself. Call it only after out_struct_check passed. */
int out_struct_check(const void *out, size_t min, size_t full,
                     const char *type);
void out_struct_write(void *out, const void *src);

/* ---- the environment and the kernel ways (env.c) -------------------- */

/* Every environment variable the library reads, read once when a context
 * is created (doc/opencl.md has the table). Strings are "" when unset. */
#define EPLB_ENV_MAX 1024
typedef struct eplb_env {
    /* operators: the device filters (the options' strings win) */
    char platform[EPLB_ENV_MAX], device[EPLB_ENV_MAX],
        device_type[EPLB_ENV_MAX];
    /* operators: the kernel cache's folder, resolved from
     * EPLB_CL_CACHE_DIR, else $XDG_CACHE_HOME/eplb-cl, else
     * $HOME/.cache/eplb-cl; "" for no cache (EPLB_CL_CACHE_DIR=off, or
     * nothing to name one by) */
    char cache_dir[EPLB_ENV_MAX];
    /* developers: kernel files read from this folder instead of the
     * embedded ones; extra build options; print each build's log */
    char kernel_dir[EPLB_ENV_MAX];
    char build_options[EPLB_ENV_MAX];
    int build_log;
} eplb_env;

void env_read(eplb_env *env);

/* The kernel-way overrides of eplb_context_tune, EPLB_TUNE_AUTO (-1) each
 * where the library chooses (lib/opencl/launch.c). */
typedef struct eplb_tuning {
    int lanes, parts, split, finish_in_slots, loads_in_place, wg,
        global_scratch;
} eplb_tuning;

void tuning_default(eplb_tuning *t);
/* Sets one key after checking its value (EPLB_ERR_BAD_OPTION naming the
 * key and the values it takes). */
int tuning_set(eplb_tuning *t, int key, int value);

/* ---- derived sizes of one problem (validate.c) ------------------------ */

typedef struct plan_dims {
    int L, E, P, G, N, M;  /* after the policy: global means G = N = 1 */
    int gs;                /* experts per group */
    int gpn;               /* groups per node */
    int lpn;               /* experts per node */
    int ppn;               /* slots per node */
    int gn;                /* GPUs per node */
    int ppg;               /* slots per GPU */
    int maxrep;            /* P - E + 1: log2phy row width */
} plan_dims;

/* Fills dims for the resolved policy; shape must already be valid. */
void plan_dims_init(plan_dims *d, const eplb_shape *shape, int policy);

int validate_shape(const eplb_shape *shape);
int validate_loads(const eplb_shape *shape, const float *weight);

/* ---- the candidate algorithm's knobs ---------------------------------- */

typedef struct pack_params {
    int candidates;
    int swap_rounds;
    float noise;
    uint64_t seed;
} pack_params;

/* Step numbers that key the noise generator. */
enum { EPLB_STEP_GROUPS = 0, EPLB_STEP_SLOTS = 1 };

/* ---- packing (pack.c) ------------------------------------------------- */

/* Scratch for packing rows of up to n items into m packs; reused. */
typedef struct pack_scratch {
    int cap_items;
    int *order;       /* [n] visiting order */
    uint64_t *sort_tmp; /* [2n] sort keys */
    float *keys;      /* [n] sort keys */
    float *pack_w;    /* [m] */
    int *pack_n;      /* [m] */
    int *heap;        /* [m] */
    int *contents;    /* [m*k] item held by (pack, rank) */
    int *best_contents;
} pack_scratch;

int pack_scratch_reserve(pack_scratch *s, int n);
void pack_scratch_free(pack_scratch *s);

/* The deterministic pack(w[n], m) of doc/ALGORITHM.md section 3: pack[i],
 * rank[i]. Returns the largest pack weight. */
float pack_reference(const float *w, int n, int m, int *pack, int *rank,
                     pack_scratch *s);

/* The candidate search's packing of one row (doc/ALGORITHM.md section 5).
 * Returns the chosen candidate's largest pack weight. */
float pack_candidates(const float *w, int n, int m, int step, uint32_t row,
                      const pack_params *pp, int *pack, int *rank,
                      pack_scratch *s);

/* ---- replication (replicate.c) ---------------------------------------- */

/* replicate(w[n], p) of doc/ALGORITHM.md section 3: slot_item[p],
 * slot_rank[p], count[n]. ratio (n floats) and heap (n ints) are scratch. */
void replicate_reference(const float *w, int n, int p, int *slot_item,
                         int *slot_rank, int *count, float *ratio,
                         int *heap);

/* ---- the reference backend (reference.c) ------------------------------ */

/* The workspaces, one per host thread, kept while the shape stays the
 * same; threads: the context's. */
typedef struct reference_state reference_state;
typedef struct reference_pool {
    reference_state *st[EPLB_MAX_HOST_THREADS];
} reference_pool;
void reference_pool_free(reference_pool *pool);
int reference_rebalance(reference_pool *pool, eplbi_threads *threads,
                        const plan_dims *d, const pack_params *pp,
                        const float *weight, int32_t *phy2log,
                        int32_t *log2phy, int32_t *logcnt);
/* The same plan layer by layer, for a caller that runs the layers on its
 * own workers (the re-plan: each layer's fresh plan beside its search):
 * reference_reserve gives the workers whose workspaces are ready (or an
 * error), and reference_plan_layer(run, worker, l) writes layer l's rows
 * of run's outputs (log2phy may be NULL). */
typedef struct reference_run {
    reference_pool *pool;
    const plan_dims *d;
    const pack_params *pp;
    const float *weight;
    int32_t *phy2log, *log2phy, *logcnt;
} reference_run;
int reference_reserve(reference_pool *pool, const eplbi_threads *threads,
                      const plan_dims *d);
void reference_plan_layer(void *arg, int worker, int l);

/* ---- the OpenCL backend (cl_engine.c) --------------------------------- */

typedef struct ocl_engine ocl_engine;
int ocl_engine_create(ocl_engine **out, const eplb_options *opts,
                      const eplb_env *env, const eplb_tuning *tuning,
                      char *note, size_t note_len);
void ocl_engine_destroy(ocl_engine *e);
const char *ocl_engine_device_name(const ocl_engine *e);
/* 1 for a CPU device (PoCL): it shares the host's cores. */
int ocl_engine_is_cpu(const ocl_engine *e);
/* Takes the options (use_clblast, profile) and kernel ways of a live
 * context: what they change is made again on the next call. */
int ocl_engine_configure(ocl_engine *e, const eplb_options *opts,
                         const eplb_tuning *tuning);
/* 1 and one line naming the ways of the programs built, 0 before any. */
int ocl_engine_ways(const ocl_engine *e, char *buf, size_t len);
/* threads: the context's, for filling a large log2phy (plan.c). */
int ocl_engine_rebalance(ocl_engine *e, const plan_dims *d,
                         const pack_params *pp, const float *weight,
                         int32_t *phy2log, int32_t *log2phy, int32_t *logcnt,
                         eplbi_threads *threads);

int ocl_engine_floor(ocl_engine *e, const plan_dims *d, int runs,
                     double *median_us, double *p99_us);
int ocl_engine_profile(const ocl_engine *e, eplb_profile *out);

/* ---- the fresh planner (context.c) ----------------------------------- */

/* The backend behind a context as the parts of the library that plan
 * sub-problems see it (mask.c): a function and its state, so that they
 * never call back into the context. plan() is the fresh plan of
 * doc/ALGORITHM.md sections 3 to 6 for dims d (no mask, no distinct pass)
 * and writes nothing on failure. log2phy may be NULL: a plan used inside
 * the library, whose log2phy nobody reads. */
typedef struct planner {
    int (*plan)(void *self, const plan_dims *d, const float *weight,
                int32_t *phy2log, int32_t *log2phy, int32_t *logcnt);
    void *self;
} planner;

/* ---- the forecast of the next window (forecast.c) -------------------- */

typedef struct forecast_state forecast_state;
void forecast_state_free(forecast_state *st);

/* The request's forecast fields and its windows: estimator and
 * parameters in range, num_windows in 1..EPLB_MAX_WINDOWS, every value
 * finite and >= 0, no sample all zero; the error names the sample, layer
 * and expert. shape must be valid. */
int forecast_check(const eplb_shape *shape, const eplb_request *r);

/* The loads to plan for the request's windows (already checked) under
 * dims d: *loads [L][E] and *choice [L] (the API's estimator ids) point
 * into the state (valid until its next use). The robust estimator plans
 * its candidates with pl; with may_keep it also judges the request's
 * current plan (checked, no mask), and a layer it keeps is marked
 * EPLB_FORECAST_KEPT in *choice. */
int forecast_run(forecast_state **st, const plan_dims *d,
                 eplbi_threads *threads,
                 const eplb_request *r, const planner *pl, int may_keep,
                 const float **loads, const int32_t **choice);

/* ---- usable GPUs (mask.c) --------------------------------------------- */

/* Checks a GPU mask of d->M entries: some GPU usable, and at least E
 * usable slots (per node as the policy needs). EPLB_ERR_BAD_MASK. */
int mask_check(const plan_dims *d, const uint8_t *mask);

/* The fresh plan over the usable GPUs: dead GPUs' slots hold -1, log2phy
 * names live slots only, logcnt counts live slots. Writes all three arrays
 * completely on success. */
int mask_plan_fresh(const planner *pl, const plan_dims *d,
                    const float *weight, const uint8_t *mask,
                    int32_t *phy2log, int32_t *log2phy, int32_t *logcnt);

/* ---- one replica per GPU (distinct.c) --------------------------------- */

/* Rewrites phy2log/logcnt [L] so that no GPU holds an expert twice, never
 * raising a layer's largest GPU load. mask may be NULL. */
int distinct_per_gpu_apply(const plan_dims *d, const float *weight,
                           const uint8_t *mask, int32_t *phy2log,
                           int32_t *logcnt);

/* ---- re-planning from the current placement (replan/) ----------------- */

typedef struct replan_state replan_state;
void replan_state_free(replan_state *st);

/* EPLB_ERR_BAD_PLAN for a current plan that is not one of this shape
 * (ids out of range, an expert with no slot). A group split over nodes is
 * taken (a migration stopped midway leaves one). */
int replan_check_current(const plan_dims *d, const int32_t *current);

/* What bounds a re-plan: each layer at least (1 - tolerance) times as
 * balanced as the fresh plan; deadline_us (0: none) after which the
 * layers not yet searched take their fallback; distinct (the option
 * distinct_per_gpu): no GPU may hold an expert twice. */
typedef struct replan_limits {
    float tolerance;
    double deadline_us;
    int distinct;
    eplbi_threads *threads; /* the context's host threads */
    /* non-NULL: layer l's fresh plan is made by fresh_layer(fresh_arg,
     * worker, l) before its search, on the same worker (at most
     * fresh_workers of them), instead of before the re-plan */
    void (*fresh_layer)(void *arg, int worker, int l);
    void *fresh_arg;
    int fresh_workers;
    /* > 0: each layer whose re-plan lowers its largest GPU load by less
     * than this share of the plan in service's takes the current
     * placement back where it can be kept as it is (plan_layer_keepable):
     * the schedule's min_gain rule, applied here when no schedule is
     * made. No GPU may be dead. */
    double min_gain;
} replan_limits;

/* The re-plan's workspaces, one per host thread, kept while the shape
 * stays the same. */
typedef struct replan_pool {
    replan_state *st[EPLB_MAX_HOST_THREADS];
    /* Each layer's search work on the last re-plan of this many layers:
     * the next one hands out the layers that worked longest first, so a
     * long layer does not start last (the plan is the same in any
     * order). */
    long long *last_work;
    int *order;
    int layers;
} replan_pool;
void replan_pool_free(replan_pool *pool);

/* The plan with the fewest expert copies from `current` whose every layer
 * is within lim's tolerance of the fresh plan's balancedness; writes
 * phy2log [L][P] and logcnt [L][E]. */
int replan_from_current(replan_pool *pool, const plan_dims *d,
                        const float *weight, const int32_t *current,
                        const uint8_t *mask, const int32_t *fresh_phy2log,
                        const int32_t *fresh_logcnt, const replan_limits *lim,
                        int32_t *phy2log, int32_t *logcnt);

/* ---- the migration schedule (replan/schedule.c) ----------------------- */

/* What bounds a schedule: copies per GPU over all stages and in all (-1:
 * no bound, 0: nothing moves), copies per GPU per stage (0: one stage), and the share of a
 * layer's largest load its re-plan must remove for the layer to move. */
typedef struct sched_opts {
    int max_per_gpu;
    long long max_total;
    int stage_per_gpu;
    double min_gain;
    int distinct; /* distinct_per_gpu: min_gain keeps no layer that holds
                     an expert twice on a GPU */
} sched_opts;

typedef struct sched_stage {
    long long copies;
    int max_copies_per_gpu;
    double objective;    /* sum over layers of the largest GPU load */
    double balancedness; /* mean over layers of mean / largest GPU load */
} sched_stage;

/* A schedule (allocated by sched_build_plan, freed by sched_out_free). */
typedef struct sched_out {
    int32_t *stage_of_slot; /* [L][P] 0: unchanged, else its stage */
    int nstages;
    sched_stage *stages;    /* [nstages + 1]: 0 is the plan in service */
    double *layer_gain;     /* [L] the layer's re-plan: largest load removed */
    int32_t *layer_copies;  /* [L] and its copies */
    int32_t *layer_order;   /* [L] layers by gain per copy */
    double objective_before, objective_after;
    long long copies;
} sched_out;

/* One greedy copy: slot `slot` of `layer` takes `expert`; the layer's
 * largest GPU load drops by gain, to f_after. */
typedef struct greedy_copy {
    int layer, slot, expert;
    double gain, f_after;
} greedy_copy;

/* Greedy single copies into plan [L][P] (the plan in service is cur):
 * while the budgets allow (left [M] per GPU, -1 each: none; left_total,
 * -1: none) and work_cap lasts, the copy that lowers the sum over layers
 * of the largest GPU load most; slots where frozen [L][P] is 1 are not
 * rewritten, and neither are those taken unless `rewrite` (then a slot
 * may take another copy later, each counted against the budgets, and
 * every copy must gain more than a rounding-sized share). The copies, in
 * order, into out (room for L*P; with rewrite the walk stops there),
 * their number into *nout. Each layer's first search runs on the host
 * threads; the copies are the same for any number. */
int greedy_copies_fill(const plan_dims *d, const float *weight, const uint8_t *mask,
                const int32_t *cur, int32_t *plan, const uint8_t *frozen,
                int rewrite, int *left, long long left_total,
                long long work_cap, eplbi_threads *threads,
                greedy_copy *out, int *nout);

/* The re-plan `target` (a valid plan of the request) cut into units and
 * stages from `current` under o; the plan after the last stage into
 * phy2log [L][P] and logcnt [L][E] (the target when nothing bounds it).
 * The layers' orderings run on the context's host threads. */
int sched_build_plan(const plan_dims *d, const float *weight,
                     const int32_t *current, const uint8_t *mask,
                     const int32_t *target, const sched_opts *o,
                     eplbi_threads *threads, int32_t *phy2log,
                     int32_t *logcnt, sched_out *out);
void sched_out_free(sched_out *o);

/* ---- sorting ------------------------------------------------------------ */

/* Defines `static T *name(T *a, T *b, int n, int width)`: bottom-up merge
 * passes over a [n], sorted in runs of `width` items, with b [n] as
 * scratch; returns the one of a and b that holds all n sorted. Stable:
 * an item of the right run goes first only when before(&right, &left).
 * The fresh plan's sort (pack.c), the greedy copies' (greedy.c) and the
 * re-pairing's (pairs.c). */
#define EPLBI_DEFINE_MERGE_PASSES(name, T, before)                           \
    static T *name(T *a, T *b, int n, int width)                             \
    {                                                                        \
        for (; width < n; width *= 2) {                                      \
            for (int lo = 0; lo < n; lo += 2 * width) {                      \
                int mid = lo + width < n ? lo + width : n;                   \
                int hi = lo + 2 * width < n ? lo + 2 * width : n;            \
                int x = lo, y = mid, o = lo;                                 \
                while (x < mid && y < hi)                                    \
                    b[o++] = before(&a[y], &a[x]) ? a[y++] : a[x++];         \
                while (x < mid)                                              \
                    b[o++] = a[x++];                                         \
                while (y < hi)                                               \
                    b[o++] = a[y++];                                         \
            }                                                                \
            T *t_ = a;                                                       \
            a = b;                                                           \
            b = t_;                                                          \
        }                                                                    \
        return a;                                                            \
    }

/* ---- plans (plan.c) --------------------------------------------------- */

/* 1 when layer row p2l [P] of a plan in service can be kept as it is
 * (no empty slot; under the hierarchical policy every group on one node,
 * which a migration stopped midway may not leave; with distinct, no GPU
 * holding an expert twice), with its replica counts in cnt [E] (scratch
 * otherwise). */
int plan_layer_keepable(const plan_dims *d, const int32_t *p2l, int distinct,
                        int32_t *cnt);
/* The GPU loads of one layer as the metrics sum them: each GPU's slots
 * in order, w/cnt in double (empty slots, and experts with no live
 * replica, add nothing), into load [M]. Returns the largest over the
 * live GPUs (mask NULL: all), and in *heaviest (if not NULL) the first
 * GPU with it (-1: none live). The re-plan's search, its schedule and
 * the greedy copies all read loads from here. */
double plan_layer_loads(const plan_dims *d, const float *w,
                        const int32_t *slots, const int *cnt,
                        const uint8_t *mask, double *load, int *heaviest);
/* GPU g's load of plan_layer_loads, alone (the same sum): a search that
 * changed a few GPUs sums those again and gets the loads a whole pass
 * would. */
static inline double plan_gpu_load(const plan_dims *d, const float *w,
                                   const int32_t *slots, const int *cnt,
                                   int g)
{
    double s = 0.0;
    for (int r = 0; r < d->ppg; r++) {
        int e = slots[g * d->ppg + r];
        if (e >= 0 && cnt[e] > 0)
            s += (double)w[e] / cnt[e];
    }
    return s;
}
/* 1 when layer row p2l [P] has a GPU holding an expert twice (empty
 * slots aside); seen_on: [E] scratch. */
int plan_layer_holds_twice(const plan_dims *d, const int32_t *p2l,
                           int32_t *seen_on);

/* Fills log2phy [L][E][maxrep] from phy2log [L][P], each expert's replicas
 * in slot order; slots of -1 are skipped. */
void plan_log2phy_by_slot(const plan_dims *d, const int32_t *phy2log,
                          int32_t *log2phy);
/* The same, its layers on the context's host threads. */
void plan_log2phy_by_slot_threads(const plan_dims *d, const int32_t *phy2log,
                                  int32_t *log2phy, eplbi_threads *threads);


/* Largest GPU load of one layer's plan, summed in float32 slot order: the
 * figure the guard compares (both backends compute it alike). */
float plan_layer_max_gpu_load(const plan_dims *d, const float *w,
                              const int32_t *phy2log, const int32_t *logcnt);

/* Fills log2phy [E][maxrep] of one layer from phy2log and per-slot ranks. */
void plan_fill_log2phy(const plan_dims *d, const int32_t *phy2log,
                       const int32_t *phyrank, int32_t *log2phy);

/* The same for all d->L layers (phy2log and phyrank [L][P], log2phy
 * [L][E][maxrep]); large plans are filled by the context's host threads. */
void plan_fill_log2phy_layers(const plan_dims *d, const int32_t *phy2log,
                              const int32_t *phyrank, int32_t *log2phy,
                              eplbi_threads *threads);

#endif /* EPLB_INTERNAL_H */
