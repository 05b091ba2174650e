/* Private declarations shared by the library's source files. */
#ifndef EPLB_INTERNAL_H
#define EPLB_INTERNAL_H

#include "config.h"
#include "eplb_cl.h"

#include <stddef.h>
#include <stdint.h>

/* ---- errors (status.c) ------------------------------------------------ */

/* Records the detail of a failure for eplb_last_error() and returns code. */
int eplb_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void eplb_clear_error(void);

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

/* SPEC's deterministic pack(w[n], m): pack[i], rank[i]. Returns the
 * largest pack weight. */
float pack_reference(const float *w, int n, int m, int *pack, int *rank,
                     pack_scratch *s);

/* SPEC's parallel-candidates packing of one row. Returns the chosen
 * candidate's largest pack weight. */
float pack_candidates(const float *w, int n, int m, int step, uint32_t row,
                      const pack_params *pp, int *pack, int *rank,
                      pack_scratch *s);

/* s_c = noise * c / (C - 1), as both backends compute it. */
float candidate_noise_scale(float noise, int c, int candidates);

/* ---- replication (replicate.c) ---------------------------------------- */

/* SPEC's replicate(w[n], p): slot_item[p], slot_rank[p], count[n].
 * ratio (n floats) and heap (n ints) are scratch. */
void replicate_reference(const float *w, int n, int p, int *slot_item,
                         int *slot_rank, int *count, float *ratio,
                         int *heap);

/* ---- the reference backend (reference.c) ------------------------------ */

typedef struct reference_state reference_state;
void reference_state_free(reference_state *st);
int reference_rebalance(reference_state **st, const plan_dims *d,
                        const pack_params *pp, const float *weight,
                        int32_t *phy2log, int32_t *log2phy, int32_t *logcnt);

/* ---- the OpenCL backend (cl_engine.c) --------------------------------- */

typedef struct cl_engine cl_engine;
int cl_engine_create(cl_engine **out, const eplb_options *opts,
                     char *note, size_t note_len);
void cl_engine_destroy(cl_engine *e);
const char *cl_engine_device_name(const cl_engine *e);
int cl_engine_rebalance(cl_engine *e, const plan_dims *d,
                        const pack_params *pp, const float *weight,
                        int32_t *phy2log, int32_t *log2phy, int32_t *logcnt);

int cl_engine_floor(cl_engine *e, const plan_dims *d, int runs,
                    double *median_us, double *p99_us);
int cl_engine_profile(const cl_engine *e, eplb_profile *out);

/* ---- plans (plan.c) --------------------------------------------------- */

/* Largest GPU load of one layer's plan, summed in float32 slot order: the
 * figure the guard compares (both backends compute it alike). */
float plan_layer_max_gpu_load(const plan_dims *d, const float *w,
                              const int32_t *phy2log, const int32_t *logcnt);

/* Fills log2phy [E][maxrep] of one layer from phy2log and per-slot ranks. */
void plan_fill_log2phy(const plan_dims *d, const int32_t *phy2log,
                       const int32_t *phyrank, int32_t *log2phy);

#endif /* EPLB_INTERNAL_H */
