/*
 * libeplb-cl: expert-parallel load balancing for Mixture-of-Experts serving.
 *
 * Given how many tokens each expert of each MoE layer received, compute how
 * many replicas of each expert to run and which GPU slot holds each replica
 * (DeepSeek's EPLB layout), so that the busiest GPU is as little busy as
 * possible. See README.md for a walk-through and SPEC.md-style semantics in
 * the comments below.
 *
 * Ownership words used below:
 *   caller owns   - the caller allocates and frees; the library only reads or
 *                   writes it during the call.
 *   library owns  - returned pointer stays valid until the named release call.
 *   borrowed      - valid until the next call on the same context (or, for
 *                   thread-local strings, the next call on the same thread).
 */
#ifndef EPLB_CL_H
#define EPLB_CL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define EPLB_API
#elif defined(__GNUC__)
#define EPLB_API __attribute__((visibility("default")))
#else
#define EPLB_API
#endif

/* ---- Version ---------------------------------------------------------- */

#define EPLB_VERSION_MAJOR 0
#define EPLB_VERSION_MINOR 1
#define EPLB_VERSION_PATCH 0
#define EPLB_VERSION_NUMBER \
    (EPLB_VERSION_MAJOR * 10000 + EPLB_VERSION_MINOR * 100 + EPLB_VERSION_PATCH)

/* "0.1.0" for the library actually linked (may differ from the header). */
EPLB_API const char *eplb_version_string(void);
EPLB_API int eplb_version_number(void);

/* ---- Status codes ------------------------------------------------------ */

/* X(name, value, message). Every failure is negative; 0 is success. */
#define EPLB_STATUS_MAP(X)                                                   \
    X(EPLB_OK, 0, "success")                                                 \
    X(EPLB_ERR_NULL_ARGUMENT, -1, "a required pointer argument is NULL")     \
    X(EPLB_ERR_ZERO_SIZE, -2, "a size (layers, experts, replicas, groups, "  \
      "nodes or GPUs) is zero or negative")                                  \
    X(EPLB_ERR_GROUPS_DONT_DIVIDE, -3,                                       \
      "the number of experts is not a multiple of the number of groups")     \
    X(EPLB_ERR_TOO_FEW_REPLICAS, -4,                                         \
      "num_replicas is smaller than the number of experts")                  \
    X(EPLB_ERR_GPUS_DONT_DIVIDE, -5,                                         \
      "num_replicas is not a multiple of the number of GPUs")                \
    X(EPLB_ERR_NODES_DONT_DIVIDE, -6,                                        \
      "the number of GPUs is not a multiple of the number of nodes")         \
    X(EPLB_ERR_SIZE_OVERFLOW, -7, "the sizes are too large: an output "      \
      "array would not fit in memory")                                       \
    X(EPLB_ERR_LOAD_NAN, -8, "a load is NaN")                                \
    X(EPLB_ERR_LOAD_INFINITE, -9, "a load is infinite")                      \
    X(EPLB_ERR_LOAD_NEGATIVE, -10, "a load is negative")                     \
    X(EPLB_ERR_BAD_OPTION, -11, "an option is out of range")                 \
    X(EPLB_ERR_POLICY_MISMATCH, -12, "the hierarchical policy needs the "    \
      "number of groups to be a multiple of the number of nodes")            \
    X(EPLB_ERR_OUT_OF_MEMORY, -13, "out of host memory")                     \
    X(EPLB_ERR_NO_DEVICE, -14, "no OpenCL device matches the request")       \
    X(EPLB_ERR_KERNEL_BUILD, -15, "an OpenCL kernel failed to build")        \
    X(EPLB_ERR_OPENCL, -16, "an OpenCL call failed")                         \
    X(EPLB_ERR_DEVICE_LIMIT, -17, "the problem does not fit the OpenCL "     \
      "device's limits")                                                     \
    X(EPLB_ERR_BAD_PLAN, -18, "a plan passed in (the current placement, "    \
      "or a plan to judge) is not a valid plan for this shape")              \
    X(EPLB_ERR_BAD_MASK, -19, "the GPU mask leaves too few usable GPUs or "  \
      "slots")

typedef enum eplb_status {
#define EPLB_STATUS_ENUM_(name, value, msg) name = value,
    EPLB_STATUS_MAP(EPLB_STATUS_ENUM_)
#undef EPLB_STATUS_ENUM_
} eplb_status;

/* A static, one-line description of a status code (never NULL). */
EPLB_API const char *eplb_strerror(int status);

/* The detail of the last failure on the calling thread: which argument,
 * which value, which device, the OpenCL build log, and what to do next.
 * Borrowed: valid until the next library call on this thread. "" if none. */
EPLB_API const char *eplb_last_error(void);

/* ---- Shapes ------------------------------------------------------------ */

/* The problem: weight[layers][experts] in, a plan of num_replicas slots per
 * layer out. Slot s lives on GPU s / (num_replicas / num_gpus); GPU g on
 * node g / (num_gpus / num_nodes). */
typedef struct eplb_shape {
    int layers;       /* L */
    int experts;      /* E: logical experts per layer */
    int num_replicas; /* P: physical slots per layer, >= E, multiple of M */
    int num_groups;   /* G: expert groups, E % G == 0 */
    int num_nodes;    /* N: nodes, M % N == 0 */
    int num_gpus;     /* M: GPUs */
} eplb_shape;

/* Element counts (not bytes) of the three int32 outputs:
 * phy2log [L][P], log2phy [L][E][P-E+1], logcnt [L][E].
 * Returns EPLB_OK or the shape's first violated rule. Any pointer may be
 * NULL. */
EPLB_API int eplb_plan_sizes(const eplb_shape *shape, size_t *phy2log_len,
                             size_t *log2phy_len, size_t *logcnt_len);

/* Checks every rule of the shape (sizes, divisibility, overflow) and, when
 * weight is not NULL, every load. EPLB_OK or the first violation, with the
 * detail in eplb_last_error(). */
EPLB_API int eplb_check_input(const eplb_shape *shape, const float *weight);

/* ---- Options ----------------------------------------------------------- */

typedef enum eplb_backend {
    EPLB_BACKEND_AUTO = 0,  /* OpenCL when a device is found, else reference */
    EPLB_BACKEND_REFERENCE, /* plain C on the calling thread */
    EPLB_BACKEND_OPENCL     /* OpenCL only: an error when no device */
} eplb_backend;

typedef enum eplb_policy {
    EPLB_POLICY_AUTO = 0,     /* hierarchical when G % N == 0, else global */
    EPLB_POLICY_HIERARCHICAL, /* groups to nodes, then slots to GPUs */
    EPLB_POLICY_GLOBAL        /* one group, one node */
} eplb_policy;

typedef struct eplb_options {
    /* sizeof(eplb_options) as the caller was compiled: set by
     * eplb_options_default(). Lets later versions add options at the end
     * without breaking callers built against this header. */
    uint32_t struct_size;
    eplb_backend backend; /* default EPLB_BACKEND_AUTO */
    eplb_policy policy;   /* default EPLB_POLICY_AUTO */
    /* Packing candidates per row. 1 with swap_rounds 0 is DeepSeek's
     * deterministic algorithm, bit for bit. Default 64, range 1..1024. */
    int candidates;
    float noise;     /* largest relative sort-key noise, default 0.2, 0..1 */
    int swap_rounds; /* heaviest-lightest swap rounds, default 20, 0..1000 */
    uint64_t seed;   /* the same seed gives the same plan on every device */
    /* OpenCL device choice: substrings of the platform and device names and
     * a type ("gpu", "cpu", "accelerator"); NULL means no filter, and the
     * environment variables EPLB_CL_PLATFORM, EPLB_CL_DEVICE and
     * EPLB_CL_DEVICE_TYPE apply instead. Borrowed during create only. */
    const char *platform;
    const char *device;
    const char *device_type;
    /* 1: a filter that matches nothing is an error. 0: fall back to the
     * default device order (first GPU, accelerator, CPU) and say so in
     * eplb_context_note(). */
    int enforce_device;
    /* 1: compute the group loads of step 1 with CLBlast's GEMV instead of
     * inside our first kernel (only in builds configured with CLBlast, else
     * EPLB_ERR_BAD_OPTION). CLBlast sums in its own order, so plans equal
     * the reference's only where those float sums are exact (integer token
     * counts summing below 2^24 per group). Default 0: our kernel, which
     * the benchmark measured faster. */
    int use_clblast;
    /* Re-planning from the current placement (eplb_rebalance_from): the
     * balancedness of every layer may fall short of the fresh plan's by
     * this fraction, in exchange for fewer expert copies. Default 0 (at
     * least as balanced as the fresh plan), range 0..0.5. */
    float tolerance;
    /* 1: no GPU holds two replicas of the same expert (a second replica on
     * one GPU adds a slot but no capacity); the plan moves such replicas
     * to other GPUs without raising any layer's largest GPU load. 0: plans
     * exactly as SPEC.md (the deterministic mode is DeepSeek's, bit for
     * bit). Default 0. */
    int distinct_per_gpu;
} eplb_options;

/* Fills *opts with the defaults above (and struct_size). */
EPLB_API void eplb_options_default(eplb_options *opts);

/* ---- Context ----------------------------------------------------------- */

/* A context holds the chosen backend, the OpenCL device, built programs and
 * buffers reused while the shape stays the same. One context per thread:
 * calls on one context must not overlap; distinct contexts are independent. */
typedef struct eplb_context eplb_context;

/* Creates a context (library owns; release with eplb_context_destroy).
 * opts may be NULL for the defaults. On failure *out is NULL and
 * eplb_last_error() says why. */
EPLB_API int eplb_context_create(eplb_context **out, const eplb_options *opts);

/* Releases everything; NULL is a no-op. */
EPLB_API void eplb_context_destroy(eplb_context *ctx);

/* Which backend runs: "reference" or "opencl" (static string). */
EPLB_API const char *eplb_context_backend(const eplb_context *ctx);

/* "platform / device" for OpenCL, "host CPU" for reference. Borrowed. */
EPLB_API const char *eplb_context_device(const eplb_context *ctx);

/* A note on choices made for the caller (fallbacks, missing features), ""
 * if none. Borrowed. */
EPLB_API const char *eplb_context_note(const eplb_context *ctx);

/* ---- Rebalance --------------------------------------------------------- */

/* Computes the plan. weight [L][E] float32, finite and >= 0 (caller owns).
 * phy2log [L][P], log2phy [L][E][P-E+1] (padded with -1), logcnt [L][E]
 * are caller-owned int32 arrays of eplb_plan_sizes() elements. On any
 * failure no output element is written. */
EPLB_API int eplb_rebalance(eplb_context *ctx, const eplb_shape *shape,
                            const float *weight, int32_t *phy2log,
                            int32_t *log2phy, int32_t *logcnt);

/* Re-plans from the placement the engine runs now, and/or over the GPUs
 * that are still usable.
 *
 * current_phy2log [L][P] (caller owns, may be NULL): the plan in service,
 * in eplb_rebalance's phy2log layout; -1 marks an empty slot (as masked
 * plans leave on dead GPUs). Every expert must hold a slot, ids must be in
 * 0..E-1, and under the hierarchical policy every group must sit on one
 * node (unless gpu_mask marks a GPU dead). NULL: plan from scratch.
 *
 * gpu_mask [M] (caller owns, may be NULL): nonzero for a usable GPU, 0 for
 * a dead one. Dead GPUs get no expert: their slots hold -1 in phy2log,
 * log2phy never names them, logcnt counts live slots only. NULL: all GPUs
 * usable.
 *
 * With a current plan the result is the plan that needs the fewest expert
 * copies (experts a GPU holds that it did not hold before) among those the
 * search finds whose every layer is at least (1 - tolerance) times as
 * balanced as the fresh plan eplb_rebalance_from(..., NULL, gpu_mask, ...)
 * of the same context; experts that stay on a GPU keep their slot where
 * they can. The search runs on the host after the backend's fresh plan, so
 * the same seed gives the same plan on every backend and device.
 * On any failure no output element is written. */
EPLB_API int eplb_rebalance_from(eplb_context *ctx, const eplb_shape *shape,
                                 const float *weight,
                                 const int32_t *current_phy2log,
                                 const uint8_t *gpu_mask, int32_t *phy2log,
                                 int32_t *log2phy, int32_t *logcnt);

/* The policy actually used for this shape under the context's options
 * (EPLB_POLICY_HIERARCHICAL or EPLB_POLICY_GLOBAL), or a negative status. */
EPLB_API int eplb_resolve_policy(eplb_policy requested,
                                 const eplb_shape *shape);

/* ---- Measuring -------------------------------------------------------- */

/* The OpenCL round-trip floor of the context's device for a job of this
 * shape: upload the [L][E] loads, run one trivial kernel, download a
 * plan-sized buffer, wait. Median and 99th percentile over `runs`, in
 * microseconds. EPLB_ERR_BAD_OPTION on a reference-backend context. */
EPLB_API int eplb_context_floor(eplb_context *ctx, const eplb_shape *shape,
                                int runs, double *median_us, double *p99_us);

/* Device-side time of the last rebalance, from OpenCL profiling events,
 * in microseconds. Only filled when the context was created with the
 * environment variable EPLB_CL_PROFILE=1 (profiling slows the queue a
 * little); else EPLB_ERR_BAD_OPTION. */
typedef struct eplb_profile {
    double upload_us, groups_us, slots_us, finish_us, download_us;
} eplb_profile;
EPLB_API int eplb_context_profile(const eplb_context *ctx, eplb_profile *out);

/* ---- Plan quality ------------------------------------------------------ */

/* GPU loads of a plan: gpu_load [L][M] (caller owns) = sum over the GPU's
 * slots of weight[expert] / logcnt[expert]; 0 for a dead GPU (all its
 * slots -1, as masked plans leave them). Loads are checked as rebalance
 * checks them (their own statuses); EPLB_ERR_BAD_PLAN for an id out of
 * range, a -1 on a GPU that holds experts, an expert with no slot, or a
 * logcnt that is not the expert's slot count. Nothing is written on
 * failure. The metrics below check alike. */
EPLB_API int eplb_gpu_loads(const eplb_shape *shape, const float *weight,
                            const int32_t *phy2log, const int32_t *logcnt,
                            double *gpu_load);

typedef struct eplb_quality {
    double balancedness_mean;  /* mean over layers of mean/max GPU load */
    double balancedness_worst; /* the worst layer's */
    int worst_layer;
    double bound_mean;  /* mean over layers of the bound (no plan beats it) */
    double share_of_bound; /* balancedness_mean / bound_mean */
    int bound_is_weak;  /* 1 when the group constraint was dropped */
} eplb_quality;

/* Judges a plan on a load matrix (which need not be the one it was made
 * from: out-of-sample judging). policy as for eplb_resolve_policy. Layers
 * whose loads are all zero count as perfectly balanced. A layer with dead
 * GPUs is judged over its live GPUs, against the global bound over their
 * slots (labelled weak under the hierarchical policy). */
EPLB_API int eplb_plan_quality(const eplb_shape *shape, eplb_policy policy,
                               const float *weight, const int32_t *phy2log,
                               const int32_t *logcnt, eplb_quality *out);

/* Balancedness of the layout with no replicas and experts in order
 * (slot e holds expert e, P = E): the "before" figure. */
EPLB_API int eplb_identity_quality(const eplb_shape *shape,
                                   const float *weight, eplb_quality *out);

/* The bound for one layer (weight[E]). *weak as in eplb_quality. A bad
 * shape, policy or load returns its (negative) status as a double. */
EPLB_API double eplb_layer_bound(const eplb_shape *shape, eplb_policy policy,
                                 const float *layer_weight, int *weak);

/* Expert copies that moving from plan `current` to plan `next` (both
 * [L][P] phy2log, -1 for an empty slot) makes the engine perform: per
 * layer and GPU, the distinct experts the GPU holds in `next` and not in
 * `current`. per_gpu [M] (may be NULL) receives each GPU's sum over the
 * layers; *total the sum of all. EPLB_ERR_BAD_PLAN names an id out of
 * range. */
EPLB_API int eplb_copies(const eplb_shape *shape, const int32_t *current,
                         const int32_t *next, long *per_gpu, long *total);

/* Slots whose expert differs between two plans of the same shape. */
EPLB_API long eplb_migration(const eplb_shape *shape, const int32_t *phy2log_a,
                             const int32_t *phy2log_b);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_CL_H */
