/* eplb-bench's shared types and harness: the settings every section reads,
 * the engines it times, the reference configs and load files, and the
 * helpers the sections share (harness.c: engines, timing, JSON records;
 * plans.c: configs, loads, plans and their quality). Each section has its
 * own file (speed.c, compile.c, quality.c, replan.c, failure.c,
 * duplicates.c, sweep.c); main.c reads the command line and runs them. */
#ifndef EPLB_BENCH_H
#define EPLB_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* for eplb_context_floor */
#define EPLB_EXPERIMENTAL
#include "eplb_cl.h"

typedef struct bench {
    int quick;
    int sweep_from; /* first sweep row to run (to resume a long sweep) */
    int floor_runs, warm_runs;
    int have_real; /* the recorded DeepSeek-V3 loads are under workloads */
    const char *workloads;
    FILE *json;
    int json_first;
    int time_reversed; /* time_row times the re-plan from reversed loads
                          too (the speed section; -1 in the column else) */
} bench;

typedef struct engine {
    const char *label; /* "reference", "opencl-gpu", ... */
    eplb_options opts;
    char device[600];
} engine;

/* The most engines find_engines returns: the host, then per device type
 * our kernels and CLBlast's. */
#define MAX_ENGINES 8

/* ---- harness.c: engines, timing, output ------------------------------ */

/* Prints "eplb-bench: what: <the library's last error>" and exits 1. */
_Noreturn void die(const char *what);
/* malloc that exits on failure: a benchmark has no use for half a run. */
void *xmalloc(size_t size);
/* One record of the JSON file's "runs" array (nothing without --json). */
void json_record(bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Wipes the progress line the long loops write on stderr. */
void progress_clear(void);

/* The host reference backend, then each OpenCL device type named in
 * `types` that has a device, twice when CLBlast is there. Returns the
 * count (at most MAX_ENGINES). */
int find_engines(engine *en, int cands, int rounds, const char *types);
/* Plans are the same on every engine, so the fastest one plans: the
 * first OpenCL engine when any, else the host. */
const eplb_options *planner_options(const engine *en, int n_en);

typedef struct plan_buf {
    int32_t *phy2log, *log2phy, *logcnt;
} plan_buf;

typedef struct timing {
    /* cold: a new context (context_us, the driver's part) and its first
     * rebalance (first_us: programs from the disk cache, when warm) */
    double floor_us, floor_p99, warm_us, warm_p99, context_us, first_us;
    /* warm re-plans of the same loads from a plan made for them with 1%
     * noise (median): the call an engine makes on every rebalance; and
     * from a plan made for the loads reversed (each layer's experts in
     * the opposite order): a current plan far from its loads, the
     * search's hard case */
    double replan_us, reversed_us;
} timing;

/* A new context for en and its first rebalance into p, timed apart. */
eplb_context *cold_start(const engine *en, const eplb_shape *s,
                         const float *w, plan_buf *p, timing *t);
/* t[i]: the time of the i-th of `runs` calls of ctx on w into p, in
 * microseconds; a fresh plan when current is NULL, else a re-plan from
 * it. */
void time_calls(eplb_context *ctx, const eplb_shape *s, const float *w,
                const int32_t *current, plan_buf *p, int runs, double *t);
/* Sorts v[0..n) and returns its median. */
double median(double *v, int n);
/* Times en on one job (cold start, warm median and p99, the floor) and
 * prints its row of the speed table. */
void time_row(bench *b, const engine *en, const char *config,
              const char *workload, const eplb_shape *s, const float *w);
/* time_row, its figures kept in *t. */
void time_row_timed(bench *b, const engine *en, const char *config,
                    const char *workload, const eplb_shape *s,
                    const float *w, timing *t);
/* The header of the tables time_row prints rows of. */
void speed_header(void);

/* ---- plans.c: configs, loads, plans ---------------------------------- */

/* The reference configs (doc/ALGORITHM.md section 12): P, G, N, M. */
#define NCONFIGS 3
extern const int bench_configs[NCONFIGS][4];
/* The recorded DeepSeek-V3 loads, under <workloads>/deepseek-v3/. */
#define NFILES 12
extern const char *const bench_files[NFILES];

/* Reference config c over loads of layers x experts. */
eplb_shape config_shape(int c, int layers, int experts);
/* "P=.. G=.. N=.. M=..", the config column of every table. */
#define CONFIG_NAME_LEN 64
void config_name(char name[CONFIG_NAME_LEN], const eplb_shape *s);
/* The same for reference config c. */
void reference_name(char name[CONFIG_NAME_LEN], int c);

/* o in the deterministic mode (DeepSeek's algorithm: one candidate, no
 * swap rounds). */
eplb_options deterministic(const eplb_options *o);
/* Engine en in the deterministic mode, labelled "<its label>-det" in
 * label [DET_LABEL_LEN] (the timing tables' twin rows). */
#define DET_LABEL_LEN 40
engine deterministic_engine(const engine *en, char label[DET_LABEL_LEN]);

/* Allocates the three outputs of a plan of shape s; exits on failure. */
void plan_alloc(plan_buf *p, const eplb_shape *s);
void plan_free(plan_buf *p);
/* The plan of w into p (allocated) on ctx: re-planned from `current` and
 * over the GPUs of `mask` when either is not NULL, min_gain 0 (every
 * layer to its target: the search's figures; the migration part has
 * min_gain's). 0 on success. */
int plan_into(eplb_context *ctx, const eplb_shape *s, const float *w,
              const int32_t *current, const uint8_t *mask, plan_buf *p);
/* A plan of w into p (allocated here) by a new context with options o,
 * re-planned from `current` and over the GPUs of `mask` when either is
 * not NULL; exits on failure. */
void plan_make(const eplb_options *o, const eplb_shape *s, const float *w,
               const int32_t *current, const uint8_t *mask, plan_buf *p);
/* The quality of plan p on loads w; exits on failure. */
void plan_judge(const eplb_shape *s, const float *w, const plan_buf *p,
                eplb_quality *q);
/* Its balancedness, the mean over layers. */
double balancedness(const eplb_shape *s, const float *w, const plan_buf *p);

/* The generated loads sections use where the recorded ones are absent:
 * DeepSeek-V3's shape (58 MoE layers, 256 experts), one seed, so that the
 * sections' figures are of one matrix. */
#define GEN_LAYERS 58
#define GEN_EXPERTS 256
#define GEN_SEED 2024
#define GEN_NAME "generated 58x256"
/* The noise of the speed table's current plan (its re-plan column). */
#define REPLAN_NOISE_SEED 77

/* Generated loads (workload_generate), caller frees. */
float *generated_loads(int layers, int experts, uint64_t seed);
/* One recorded file's loads without their dense (all-zero) layers, caller
 * frees; NULL after a message on stderr when it cannot be read. */
float *load_real(bench *b, const char *file, int *L, int *E);

/* A set of load matrices a section runs over. */
typedef struct loadset {
    int n;
    float *w[NFILES];
    int L[NFILES], E[NFILES];
    const char *names[NFILES];
} loadset;

/* The first `want` recorded files, stopping at the first that cannot be
 * read; returns how many were read. */
int loadset_real(bench *b, int want, loadset *ls);
/* The recorded files (one with --quick), or one generated matrix when
 * there are none. */
void loadset_read(bench *b, loadset *ls);
void loadset_free(loadset *ls);

/* ---- series.c: the re-plan section's load series --------------------- */

#define SERIES_MAX_WINDOWS 12

/* Loads window by window for one shape; a GPU mask from window mask_from
 * on (mask NULL, mask_from = windows: every GPU all along). */
typedef struct series {
    char name[160];
    const char *kind; /* "drift", "files", "burst", "gpu_dies" */
    eplb_shape s;
    int windows;
    float *w[SERIES_MAX_WINDOWS]; /* [L][E] each */
    uint8_t *mask;
    int mask_from;
} series;

/* The recorded file `from` (an index of bench_files) drifting into `to`:
 * window t mixes them (1 - t/(W-1)) : t/(W-1), `to` scaled to the same
 * total. Files are resized to the shape's layers and experts by tiling
 * real layers; generated loads stand in for absent files. */
void series_drift(bench *b, series *sr, int from, int to, int windows,
                  const eplb_shape *s);
/* files[0..n) in turn, window t with (1 + t mod 5)% multiplicative noise. */
void series_files(bench *b, series *sr, const int *files, int n,
                  const eplb_shape *s);
/* One file with 1% noise per window, and `hot` experts per layer ten times
 * their load in windows at and at + 1. */
void series_burst(bench *b, series *sr, int file, int windows, int at,
                  int hot, const eplb_shape *s);
/* GPU `gpu` dead from window `from` on. */
void series_gpu_dies(series *sr, int gpu, int from);
/* The mask of window t, or NULL. */
const uint8_t *series_mask(const series *sr, int t);
void series_free(series *sr);

/* ---- the sections, in the order main runs them ----------------------- */

/* speed.c: every engine on the reference configs, then compile_times. */
void speed_section(bench *b, const engine *en, int n_en);
/* compile.c: each OpenCL engine's first call on an empty program cache. */
void compile_times(bench *b, const engine *en, int n_en, const float *w,
                   int layers, int experts);
/* quality.c: the plans' balancedness on the recorded loads, in and out of
 * sample. */
void quality_section(bench *b, const eplb_options *o);
/* replan.c: copies and balancedness when re-planning, on the recorded
 * loads with 1% noise and on series of windows each planned from the
 * last; -1 when a recorded file cannot be read. */
int replan_section(bench *b, const eplb_options *o);
/* migration.c (part of the re-plan section): gain curves of the staged
 * schedule and of whole layers, budgets against a greedy baseline, and
 * min_gain's chains of windows. */
void migration_tables(bench *b, const eplb_options *o);
/* failure.c: each GPU of the first config dead in turn. */
void failure_section(bench *b, const eplb_options *o);
/* duplicates.c: distinct_per_gpu off and on. */
void duplicate_section(bench *b, const eplb_options *o);
/* sweep.c: speed over a range of shapes. */
void sweep_section(bench *b, const engine *en, int n_en);

#endif
