/* The context: options, backend choice, and the rebalance entry point. */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPLB_MAX_CANDIDATES 1024
#define EPLB_MAX_SWAP_ROUNDS 1000
#define EPLB_NOTE_MAX 1024

/* Whole plans kept between the steps of one call, so that the caller's
 * arrays are written only once everything has succeeded. */
typedef struct plan_buf {
    size_t p2l_cap, l2p_cap, cnt_cap;
    int32_t *phy2log, *log2phy, *logcnt;
} plan_buf;

struct eplb_context {
    eplb_options opts;
    eplb_backend requested; /* the backend option it was created with */
    int backend; /* EPLB_BACKEND_REFERENCE or EPLB_BACKEND_OPENCL */
    eplb_env env;       /* read once, at creation */
    eplb_tuning tuning; /* eplb_context_tune's kernel ways */
    reference_pool ref; /* the reference backend's workspaces */
    ocl_engine *cl;
    plan_buf fresh, next; /* the fresh plan; the plan being returned */
    plan_buf staged;      /* a schedule's plan (budget, stages, min_gain) */
    replan_pool replan; /* the re-plan's workspaces, one per thread */
    eplbi_threads threads; /* host threads, parked between calls */
    int replan_fresh_on_host; /* EPLB_TUNE_REPLAN_FRESH_ON_HOST's value */
    forecast_state *forecast; /* the windows' estimate (forecast.c) */
    char note[EPLB_NOTE_MAX];  /* choices made at creation */
    char shown[2 * EPLB_NOTE_MAX]; /* the note and the kernel ways */
    atomic_flag busy; /* a call is running (enter, leave) */
};

static void plan_buf_free(plan_buf *b)
{
    free(b->phy2log);
    free(b->log2phy);
    free(b->logcnt);
    memset(b, 0, sizeof *b);
}

static int grow(int32_t **p, size_t *cap, size_t n)
{
    if (*cap >= n)
        return 0;
    int32_t *q = realloc(*p, n * sizeof(int32_t));
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int plan_buf_reserve(plan_buf *b, const plan_dims *d)
{
    size_t L = (size_t)d->L;
    if (grow(&b->phy2log, &b->p2l_cap, L * d->P) ||
        grow(&b->log2phy, &b->l2p_cap, L * d->E * d->maxrep) ||
        grow(&b->logcnt, &b->cnt_cap, L * d->E))
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                          "out of host memory for a %d-layer, %d-slot plan",
                          d->L, d->P);
    return EPLB_OK;
}

void eplb_options_default(eplb_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->struct_size = (uint32_t)sizeof *o;
    o->backend = EPLB_BACKEND_AUTO;
    o->policy = EPLB_POLICY_AUTO;
    o->candidates = 64;
    o->noise = 0.2f;
    o->swap_rounds = 20;
    o->seed = 0;
}

static int check_options(const eplb_options *o)
{
    if (o->backend < EPLB_BACKEND_AUTO || o->backend > EPLB_BACKEND_OPENCL)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "backend %d is not auto, reference or opencl",
                          (int)o->backend);
    if (o->policy < EPLB_POLICY_AUTO || o->policy > EPLB_POLICY_GLOBAL)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "policy %d is not auto, hierarchical or global",
                          (int)o->policy);
    if (o->candidates < 1 || o->candidates > EPLB_MAX_CANDIDATES)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "candidates is %d: use 1..%d (1 with swap_rounds 0 "
                          "is the deterministic algorithm)",
                          o->candidates, EPLB_MAX_CANDIDATES);
    if (!(o->noise >= 0.0f && o->noise <= 1.0f))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "noise is %g: use a value in [0, 1] (default 0.2)",
                          (double)o->noise);
    if (o->profile != 0 && o->profile != 1)
        return eplbi_fail(EPLB_ERR_BAD_OPTION, "profile is %d: use 0 or 1",
                          o->profile);
    if (o->use_clblast != 0 && o->use_clblast != 1)
        return eplbi_fail(EPLB_ERR_BAD_OPTION, "use_clblast is %d: use 0 or 1",
                          o->use_clblast);
#ifndef HAVE_CLBLAST
    if (o->use_clblast)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "use_clblast is 1 but this build has no CLBlast: "
                          "install libclblast-dev and re-run ./configure");
#endif
    if (o->swap_rounds < 0 || o->swap_rounds > EPLB_MAX_SWAP_ROUNDS)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "swap_rounds is %d: use 0..%d (default 20)",
                          o->swap_rounds, EPLB_MAX_SWAP_ROUNDS);
    if (!(o->tolerance >= 0.0f && o->tolerance <= 0.5f))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "tolerance is %g: use a fraction in [0, 0.5] "
                          "(default 0: at least as balanced as a fresh plan)",
                          (double)o->tolerance);
    if (o->host_threads < 0 || o->host_threads > EPLB_MAX_HOST_THREADS)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "host_threads is %d: use 0 (one per CPU), 1 (the "
                          "calling thread only) or up to %d",
                          o->host_threads, EPLB_MAX_HOST_THREADS);
    if (o->distinct_per_gpu != 0 && o->distinct_per_gpu != 1)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "distinct_per_gpu is %d: use 0 or 1",
                          o->distinct_per_gpu);
    /* Here and not only where OpenCL looks for a device: with backend
     * auto or reference a misspelt type would pass unnoticed. */
    const char *t = o->device_type;
    if (t && *t && strcasecmp(t, "gpu") != 0 && strcasecmp(t, "cpu") != 0 &&
        strcasecmp(t, "accelerator") != 0)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "device_type is '%s': use gpu, cpu or accelerator "
                          "(or NULL for no filter)", t);
    return EPLB_OK;
}

/* The caller's options over the defaults, checked. Options from a caller
 * built against an older header are shorter: the fields it does not know
 * keep their defaults. */
static int take_options(const eplb_options *opts, eplb_options *given)
{
    eplb_options_default(given);
    if (opts) {
        if (opts->struct_size < offsetof(eplb_options, tolerance) ||
            opts->struct_size > sizeof *given)
            return eplbi_fail(EPLB_ERR_BAD_OPTION,
                              "opts->struct_size is %u: fill the options with "
                              "eplb_options_default() before setting fields",
                              (unsigned)opts->struct_size);
        memcpy(given, opts, opts->struct_size);
        given->struct_size = (uint32_t)sizeof *given;
    }
    return check_options(given);
}

static int enter(eplb_context *ctx);
static void leave(eplb_context *ctx);
static int take_request(const eplb_request *req, eplb_request *r);

/* The backend's fresh plan, as mask.c sees it (internal.h's planner). */
static int planner_plan(void *self, const plan_dims *d, const float *weight,
                        int32_t *phy2log, int32_t *log2phy, int32_t *logcnt);

int eplb_context_create(eplb_context **out, const eplb_options *opts)
{
    eplbi_clear_error();
    if (!out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "out is NULL: pass the address of an eplb_context*");
    *out = NULL;
    eplb_options given;
    int rc = take_options(opts, &given);
    if (rc)
        return rc;
    opts = &given;
    eplb_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    ctx->opts = *opts;
    ctx->threads.option = opts->host_threads;
    ctx->requested = opts->backend;
    env_read(&ctx->env);
    tuning_default(&ctx->tuning);
    ctx->replan_fresh_on_host = EPLB_TUNE_AUTO;
    /* The filter strings are borrowed during create only. */
    ctx->opts.platform = ctx->opts.device = ctx->opts.device_type = NULL;
    ctx->backend = EPLB_BACKEND_REFERENCE;
    if (opts->backend != EPLB_BACKEND_REFERENCE) {
        rc = ocl_engine_create(&ctx->cl, opts, &ctx->env, &ctx->tuning,
                               ctx->note, sizeof ctx->note);
        if (rc == EPLB_OK) {
            ctx->backend = EPLB_BACKEND_OPENCL;
        } else if (opts->backend == EPLB_BACKEND_OPENCL ||
                   rc == EPLB_ERR_OUT_OF_MEMORY ||
                   (rc == EPLB_ERR_NO_DEVICE && opts->enforce_device)) {
            free(ctx);
            return rc;
        } else {
            /* auto: run on the host, and tell the caller why. */
            snprintf(ctx->note, sizeof ctx->note,
                     "no usable OpenCL device (%s); running the reference "
                     "backend on the host", eplb_last_error());
            eplbi_clear_error();
        }
    }
    snprintf(ctx->shown, sizeof ctx->shown, "%s", ctx->note);
    *out = ctx;
    return EPLB_OK;
}

int eplb_context_set_options(eplb_context *ctx, const eplb_options *opts)
{
    eplbi_clear_error();
    if (!ctx || !opts)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "%s is NULL", !ctx ? "ctx" : "opts");
    eplb_options given;
    int rc = take_options(opts, &given);
    if (rc)
        return rc;
    if (given.backend != ctx->requested)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "backend is %d but the context was created with "
                          "%d: the device is chosen at creation; create a "
                          "new context to change it", (int)given.backend,
                          (int)ctx->requested);
    if ((rc = enter(ctx)) != EPLB_OK)
        return rc;
    if (ctx->backend == EPLB_BACKEND_OPENCL)
        rc = ocl_engine_configure(ctx->cl, &given, &ctx->tuning);
    leave(ctx);
    if (rc)
        return rc;
    /* The device choice stays the creation's. */
    given.platform = given.device = given.device_type = NULL;
    given.enforce_device = ctx->opts.enforce_device;
    ctx->opts = given;
    ctx->threads.option = given.host_threads;
    return EPLB_OK;
}

int eplb_context_get_options(const eplb_context *ctx, eplb_options *out)
{
    eplbi_clear_error();
    if (!ctx || !out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "%s is NULL", !ctx ? "ctx" : "out");
    /* An output struct (eplb_cl.h): at least its first result field. */
    int rc = out_struct_check(out, offsetof(eplb_options, backend) +
                              sizeof out->backend, sizeof *out,
                              "eplb_options");
    if (rc == EPLB_OK)
        out_struct_write(out, &ctx->opts);
    return rc;
}

int eplb_context_tune(eplb_context *ctx, eplb_tune key, int value)
{
    eplbi_clear_error();
    if (!ctx)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT, "ctx is NULL");
    if (ctx->backend != EPLB_BACKEND_OPENCL)
        return eplbi_fail(EPLB_ERR_BAD_OPTION, "kernel ways are the OpenCL "
                          "backend's; this context runs the reference "
                          "backend");
    if (key == EPLB_TUNE_REPLAN_FRESH_ON_HOST) {
        /* the host's work, not a kernel's: no program is built again */
        if (value != EPLB_TUNE_AUTO && value != 0 && value != 1)
            return eplbi_fail(EPLB_ERR_BAD_OPTION,
                              "EPLB_TUNE_REPLAN_FRESH_ON_HOST takes 0, 1, "
                              "or EPLB_TUNE_AUTO (-1), not %d", value);
        int rc = enter(ctx);
        if (rc == EPLB_OK) {
            ctx->replan_fresh_on_host = value;
            leave(ctx);
        }
        return rc;
    }
    eplb_tuning t = ctx->tuning;
    int rc = tuning_set(&t, (int)key, value);
    if (rc == EPLB_OK && (rc = enter(ctx)) == EPLB_OK) {
        rc = ocl_engine_configure(ctx->cl, &ctx->opts, &t);
        if (rc == EPLB_OK)
            ctx->tuning = t;
        leave(ctx);
    }
    return rc;
}

void eplb_context_destroy(eplb_context *ctx)
{
    if (!ctx)
        return;
    reference_pool_free(&ctx->ref);
    ocl_engine_destroy(ctx->cl);
    plan_buf_free(&ctx->fresh);
    plan_buf_free(&ctx->next);
    plan_buf_free(&ctx->staged);
    replan_pool_free(&ctx->replan);
    eplbi_host_pool_free(ctx->threads.pool);
    forecast_state_free(ctx->forecast);
    free(ctx);
}

const char *eplb_context_backend(const eplb_context *ctx)
{
    if (!ctx)
        return "none";
    return ctx->backend == EPLB_BACKEND_OPENCL ? "opencl" : "reference";
}

const char *eplb_context_device(const eplb_context *ctx)
{
    if (!ctx)
        return "none";
    return ctx->backend == EPLB_BACKEND_OPENCL ? ocl_engine_device_name(ctx->cl)
                                               : "host CPU";
}

const char *eplb_context_note(const eplb_context *ctx)
{
    return ctx ? ctx->shown : "";
}

/* The note, and the kernel ways of the programs built last. */
static void show_ways(eplb_context *ctx)
{
    char ways[512];
    if (!ocl_engine_ways(ctx->cl, ways, sizeof ways))
        return;
    snprintf(ctx->shown, sizeof ctx->shown, "%s%s%s", ctx->note,
             *ctx->note ? "; " : "", ways);
}

static int context_backend_plan(eplb_context *ctx, const plan_dims *d,
                                const float *weight, int32_t *phy2log,
                                int32_t *log2phy, int32_t *logcnt)
{
    pack_params pp = {ctx->opts.candidates, ctx->opts.swap_rounds,
                      ctx->opts.noise, ctx->opts.seed};
    if (ctx->backend != EPLB_BACKEND_OPENCL)
        return reference_rebalance(&ctx->ref, &ctx->threads, d,
                                   &pp, weight, phy2log, log2phy, logcnt);
    int rc = ocl_engine_rebalance(ctx->cl, d, &pp, weight, phy2log, log2phy,
                                  logcnt, &ctx->threads);
    show_ways(ctx);
    return rc;
}

static int planner_plan(void *self, const plan_dims *d, const float *weight,
                        int32_t *phy2log, int32_t *log2phy, int32_t *logcnt)
{
    return context_backend_plan(self, d, weight, phy2log, log2phy, logcnt);
}

/* The fresh plan under the context's options into b: the backend's plan,
 * over the usable GPUs when a mask is given, then with repeated experts
 * spread over GPUs when distinct_per_gpu asks for it. with_log2phy 0: b's
 * log2phy is left as it is (a re-plan reads only phy2log and logcnt). */
static int fresh_plan(eplb_context *ctx, const plan_dims *d,
                      const float *weight, const uint8_t *mask, plan_buf *b,
                      int with_log2phy)
{
    int rc = plan_buf_reserve(b, d);
    if (rc)
        return rc;
    planner pl = {planner_plan, ctx};
    int32_t *l2p = with_log2phy ? b->log2phy : NULL;
    if (mask)
        rc = mask_plan_fresh(&pl, d, weight, mask, b->phy2log, l2p,
                             b->logcnt);
    else
        rc = context_backend_plan(ctx, d, weight, b->phy2log, l2p, b->logcnt);
    if (rc == EPLB_OK && ctx->opts.distinct_per_gpu) {
        rc = distinct_per_gpu_apply(d, weight, mask, b->phy2log, b->logcnt);
        if (rc == EPLB_OK && l2p)
            plan_log2phy_by_slot(d, b->phy2log, l2p);
    }
    return rc;
}

static void copy_plan_out(const plan_dims *d, const plan_buf *b,
                          int32_t *phy2log, int32_t *log2phy,
                          int32_t *logcnt)
{
    size_t L = (size_t)d->L;
    memcpy(phy2log, b->phy2log, L * d->P * sizeof(int32_t));
    memcpy(log2phy, b->log2phy, L * d->E * d->maxrep * sizeof(int32_t));
    memcpy(logcnt, b->logcnt, L * d->E * sizeof(int32_t));
}

/* 1 when the request asks for a budget, stages or the schedule. */
static int schedule_asked(const eplb_request *r)
{
    return r->max_copies_per_gpu >= 0 || r->max_copies >= 0 ||
           r->stage_copies_per_gpu || r->schedule;
}

/* 1 when the request asks for more than the re-plan: those, or
 * min_gain. */
static int migration_asked(const eplb_request *r)
{
    return schedule_asked(r) || r->min_gain > 0;
}

/* 1 when the request needs the migration schedule (replan/schedule.c):
 * a budget, stages, the schedule itself, or min_gain with dead GPUs
 * (where keeping a layer is the schedule's business: the changes the
 * mask forces). Otherwise min_gain is the schedule's rule applied to the
 * re-plan's layers, at no cost (replan_limits' min_gain). */
static int schedule_needed(const eplb_request *r)
{
    return schedule_asked(r) || (r->min_gain > 0 && r->gpu_mask);
}

/* The migration fields of a request: in range, and only with a current
 * plan (a fresh plan has nothing to migrate from). */
static int migration_check(const eplb_request *r)
{
    if (r->max_copies_per_gpu < -1 || r->max_copies < -1)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->%s is %lld: use -1 (no budget) or a number "
                          "of copies", r->max_copies_per_gpu < -1
                                           ? "max_copies_per_gpu"
                                           : "max_copies",
                          r->max_copies_per_gpu < -1
                              ? (long long)r->max_copies_per_gpu
                              : (long long)r->max_copies);
    if (r->stage_copies_per_gpu < 0)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->stage_copies_per_gpu is %d: use 0 (one "
                          "stage) or a number of copies",
                          (int)r->stage_copies_per_gpu);
    if (!(r->min_gain >= 0.0f && r->min_gain < 1.0f))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->min_gain is %g: use a share in [0, 1) of a "
                          "layer's largest GPU load (0: move whatever "
                          "gains)", (double)r->min_gain);
    const eplb_schedule *sc = r->schedule;
    if (sc && (sc->struct_size < offsetof(eplb_schedule, num_stages) ||
               sc->struct_size > sizeof *sc))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->schedule->struct_size is %u: set it to "
                          "sizeof(eplb_schedule)", (unsigned)sc->struct_size);
    if (sc && (sc->max_stages < 0 || (sc->max_stages > 0 && !sc->stages)))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->schedule: max_stages is %d with stages %s: "
                          "give the stages array's length, or 0 and NULL",
                          (int)sc->max_stages, sc->stages ? "set" : "NULL");
    if (!r->current_phy2log && migration_asked(r) &&
        !(r->min_gain == EPLB_MIN_GAIN_DEFAULT && !r->schedule &&
          r->max_copies_per_gpu < 0 && r->max_copies < 0 &&
          !r->stage_copies_per_gpu))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "the request asks for a migration (budget, "
                          "stages, min_gain or a schedule) but has no "
                          "current_phy2log to migrate from");
    return EPLB_OK;
}

/* The schedule into the caller's struct (only what it points at; the
 * figures up to its struct_size). */
static void schedule_out(const plan_dims *d, const sched_out *o,
                         eplb_schedule *sc)
{
    size_t L = (size_t)d->L;
    if (sc->stage_of_slot)
        memcpy(sc->stage_of_slot, o->stage_of_slot,
               L * d->P * sizeof(int32_t));
    for (int k = 0; k <= o->nstages && k < sc->max_stages; k++) {
        eplb_stage *t = &sc->stages[k];
        t->copies = o->stages[k].copies;
        t->max_copies_per_gpu = o->stages[k].max_copies_per_gpu;
        t->objective = o->stages[k].objective;
        t->balancedness = o->stages[k].balancedness;
    }
    if (sc->layer_gain)
        memcpy(sc->layer_gain, o->layer_gain, L * sizeof(double));
    if (sc->layer_copies)
        memcpy(sc->layer_copies, o->layer_copies, L * sizeof(int32_t));
    if (sc->layer_order)
        memcpy(sc->layer_order, o->layer_order, L * sizeof(int32_t));
    eplb_schedule full;
    memcpy(&full, sc, sc->struct_size);
    full.num_stages = o->nstages;
    full.copies = o->copies;
    full.objective_before = o->objective_before;
    full.objective_after = o->objective_after;
    memcpy(sc, &full, sc->struct_size);
}

/* Host threads at which a re-plan's deterministic fresh plan is made on
 * the host, layer by layer beside each layer's search, rather than by a
 * GPU first: one host core plans DeepSeek-V3's 58 layers in about 1 ms
 * where an NVIDIA H100 takes 0.17 ms with its transfers (doc/
 * performance.md), so from about 7 threads the host is the faster, and
 * the search waits for no device. */
#define REPLAN_FRESH_HOST_THREADS 8

/* 1 when a re-plan's fresh plan is made layer by layer on the host
 * (reference_plan_layer) beside the search; the plan is the same either
 * way (every backend plans the same). */
static int replan_fresh_on_host(const eplb_context *ctx, const plan_dims *d)
{
    if (ctx->backend != EPLB_BACKEND_OPENCL)
        return 1;
    if (ctx->replan_fresh_on_host != EPLB_TUNE_AUTO)
        return ctx->replan_fresh_on_host;
    if (ctx->opts.candidates != 1 || ctx->opts.swap_rounds != 0)
        return 0; /* the device's candidates: far faster than the host's */
    return ocl_engine_is_cpu(ctx->cl) ||
           eplbi_host_threads(ctx->opts.host_threads, d->L) >=
               REPLAN_FRESH_HOST_THREADS;
}

/* The plan of loads `weight` (the caller's, or the forecast of its
 * windows): the checks, the fresh plan, and the re-plan when the request
 * carries a current plan. r is complete (eplb_plan filled what an older
 * caller's struct lacks). */
static int plan_loads(eplb_context *ctx, const eplb_shape *shape,
                        const float *weight, const eplb_request *r,
                        int32_t *phy2log, int32_t *log2phy, int32_t *logcnt)
{
    const int32_t *current = r->current_phy2log;
    const uint8_t *mask = r->gpu_mask;
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (!phy2log || !log2phy || !logcnt)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "%s is NULL: allocate the sizes eplb_plan_sizes() "
                          "gives", !phy2log ? "phy2log"
                                  : !log2phy ? "log2phy" : "logcnt");
    if (!(r->deadline_us >= 0.0))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->deadline_us is %g: use 0 (no deadline) or a "
                          "positive number of microseconds", r->deadline_us);
    rc = validate_loads(shape, weight);
    if (rc)
        return rc;
    if ((rc = migration_check(r)) != EPLB_OK)
        return rc;
    int policy = eplb_resolve_policy(ctx->opts.policy, shape);
    if (policy < 0)
        return policy;
    plan_dims d;
    plan_dims_init(&d, shape, policy);
    if (mask && (rc = mask_check(&d, mask)) != EPLB_OK)
        return rc;
    if (current && (rc = replan_check_current(&d, current)) != EPLB_OK)
        return rc;

    /* The fresh plan (doc/ALGORITHM.md sections 3 to 6) straight into the
     * caller's arrays: the backends write nothing on failure. */
    if (!current && !mask && !ctx->opts.distinct_per_gpu)
        return context_backend_plan(ctx, &d, weight, phy2log, log2phy,
                                    logcnt);

    /* A re-plan's fresh plan: by the backend first, or (replan_fresh_on_
     * host) each layer's on the worker that then searches it. */
    int by_layer = current && !mask && !ctx->opts.distinct_per_gpu &&
                   replan_fresh_on_host(ctx, &d);
    rc = by_layer ? plan_buf_reserve(&ctx->fresh, &d)
                  : fresh_plan(ctx, &d, weight, mask, &ctx->fresh, !current);
    if (rc)
        return rc;
    if (!current) {
        copy_plan_out(&d, &ctx->fresh, phy2log, log2phy, logcnt);
        return EPLB_OK;
    }
    pack_params pp = {ctx->opts.candidates, ctx->opts.swap_rounds,
                      ctx->opts.noise, ctx->opts.seed};
    reference_run fresh_run = {&ctx->ref, &d, &pp, weight,
                               ctx->fresh.phy2log, NULL, ctx->fresh.logcnt};
    replan_limits lim = {ctx->opts.tolerance, r->deadline_us,
                         ctx->opts.distinct_per_gpu, &ctx->threads,
                         NULL, NULL, 0,
                         schedule_needed(r) ? 0.0 : r->min_gain};
    if (by_layer) {
        lim.fresh_workers = reference_reserve(&ctx->ref, &ctx->threads, &d);
        if (lim.fresh_workers < 0)
            return lim.fresh_workers;
        lim.fresh_layer = reference_plan_layer;
        lim.fresh_arg = &fresh_run;
    }
    rc = plan_buf_reserve(&ctx->next, &d);
    if (rc == EPLB_OK)
        rc = replan_from_current(&ctx->replan, &d, weight, current, mask,
                                 ctx->fresh.phy2log, ctx->fresh.logcnt, &lim,
                                 ctx->next.phy2log, ctx->next.logcnt);
    if (rc)
        return rc;
    if (!schedule_needed(r)) {
        /* nothing fails from here: log2phy is made in the caller's array
         * (not made, then copied, as everywhere else) */
        size_t L = (size_t)d.L;
        memcpy(phy2log, ctx->next.phy2log, L * d.P * sizeof(int32_t));
        memcpy(logcnt, ctx->next.logcnt, L * d.E * sizeof(int32_t));
        plan_log2phy_by_slot_threads(&d, ctx->next.phy2log, log2phy,
                                     &ctx->threads);
        return EPLB_OK;
    }

    /* The migration: the re-plan cut into units and stages within the
     * budget (replan/schedule.c); everything lands in the context's
     * buffers first, then in the caller's. */
    rc = plan_buf_reserve(&ctx->staged, &d);
    if (rc)
        return rc;
    sched_opts so = {r->max_copies_per_gpu, r->max_copies,
                     r->stage_copies_per_gpu, r->min_gain,
                     ctx->opts.distinct_per_gpu};
    sched_out out;
    rc = sched_build_plan(&d, weight, current, mask, ctx->next.phy2log, &so,
                          &ctx->threads, ctx->staged.phy2log,
                          ctx->staged.logcnt, &out);
    if (rc)
        return rc;
    plan_log2phy_by_slot_threads(&d, ctx->staged.phy2log, ctx->staged.log2phy,
                                 &ctx->threads);
    copy_plan_out(&d, &ctx->staged, phy2log, log2phy, logcnt);
    if (r->schedule)
        schedule_out(&d, &out, r->schedule);
    sched_out_free(&out);
    return EPLB_OK;
}

/* 1 when the request sets a forecast field without windows. */
static int forecast_asked(const eplb_request *r)
{
    return r->forecast != EPLB_FORECAST_AUTO || r->forecast_choice ||
           r->num_windows != 0 || r->forecast_k != EPLB_FORECAST_K_DEFAULT ||
           r->forecast_alpha != EPLB_FORECAST_ALPHA_DEFAULT ||
           r->forecast_lookback != EPLB_FORECAST_LOOKBACK_DEFAULT;
}

/* The forecast of req->windows under the context's policy: its checks
 * (the shape's, then the windows'), then the estimate. may_keep: the
 * robust estimator may keep layers of req's current plan (checked
 * here). */
static int forecast_request(eplb_context *ctx, const eplb_shape *shape,
                            const float *weight, const eplb_request *r,
                            int may_keep, const float **loads,
                            const int32_t **choice)
{
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (weight)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "weight and req->windows are both given: with "
                          "windows the loads planned are their forecast; "
                          "pass weight NULL");
    if ((rc = forecast_check(shape, r)) != EPLB_OK)
        return rc;
    int policy = eplb_resolve_policy(ctx->opts.policy, shape);
    if (policy < 0)
        return policy;
    plan_dims d;
    plan_dims_init(&d, shape, policy);
    if (may_keep &&
        (rc = replan_check_current(&d, r->current_phy2log)) != EPLB_OK)
        return rc;
    planner pl = {planner_plan, ctx};
    return forecast_run(&ctx->forecast, &d, &ctx->threads, r, &pl,
                        may_keep, loads, choice);
}

/* Every plan call: with windows, their forecast is planned (and the
 * estimator of each layer reported once the plan succeeded); without,
 * the caller's loads. */
static int plan_request(eplb_context *ctx, const eplb_shape *shape,
                        const float *weight, const eplb_request *r,
                        int32_t *phy2log, int32_t *log2phy, int32_t *logcnt)
{
    if (!r->windows) {
        if (forecast_asked(r))
            return eplbi_fail(EPLB_ERR_BAD_OPTION,
                              "the request sets a forecast field (forecast, "
                              "its parameters, num_windows or "
                              "forecast_choice) but has no windows to "
                              "forecast from: set req->windows");
        return plan_loads(ctx, shape, weight, r, phy2log, log2phy, logcnt);
    }
    if (!phy2log || !log2phy || !logcnt)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "%s is NULL: allocate the sizes eplb_plan_sizes() "
                          "gives", !phy2log ? "phy2log"
                                  : !log2phy ? "log2phy" : "logcnt");
    const float *loads;
    const int32_t *choice;
    /* (a schedule describes the re-plan as made: no layer is kept
     * behind its back; a masked plan may have to leave the current one;
     * the current one may hold an expert twice on a GPU) */
    int may_keep = r->current_phy2log && !r->gpu_mask &&
                   !schedule_asked(r) && !ctx->opts.distinct_per_gpu;
    int rc = forecast_request(ctx, shape, weight, r, may_keep, &loads,
                              &choice);
    if (rc == EPLB_OK)
        rc = plan_loads(ctx, shape, loads, r, phy2log, log2phy, logcnt);
    if (rc)
        return rc;
    /* The layers the robust estimator keeps: their current placement,
     * replica counts and slots (the plan is valid layer by layer, so a
     * kept layer beside re-planned ones is a valid plan). */
    int policy = eplb_resolve_policy(ctx->opts.policy, shape);
    plan_dims one;
    plan_dims_init(&one, shape, policy);
    one.L = 1;
    size_t P = (size_t)shape->num_replicas, E = (size_t)shape->experts;
    for (int l = 0; l < shape->layers; l++) {
        if (choice[l] != EPLB_FORECAST_KEPT)
            continue;
        const int32_t *cur = r->current_phy2log + l * P;
        memcpy(phy2log + l * P, cur, P * sizeof(int32_t));
        int32_t *cnt = logcnt + l * E;
        memset(cnt, 0, E * sizeof(int32_t));
        for (size_t p = 0; p < P; p++)
            cnt[cur[p]]++;
        plan_log2phy_by_slot(&one, cur, log2phy + l * E * one.maxrep);
    }
    if (r->forecast_choice)
        memcpy(r->forecast_choice, choice,
               (size_t)shape->layers * sizeof(int32_t));
    return EPLB_OK;
}

int eplb_forecast_loads(eplb_context *ctx, const eplb_shape *shape,
                        const eplb_request *req, float *loads,
                        int32_t *choice)
{
    eplbi_clear_error();
    if (!ctx || !req || !loads)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT, "%s is NULL",
                          !ctx ? "ctx" : !req ? "req" : "loads");
    eplb_request r;
    int rc = take_request(req, &r);
    if (rc)
        return rc;
    if (!r.windows)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->windows is NULL: the forecast is made from "
                          "recent samples");
    if ((rc = enter(ctx)) != EPLB_OK)
        return rc;
    const float *est;
    const int32_t *ch;
    rc = forecast_request(ctx, shape, NULL, &r, 0, &est, &ch);
    if (rc == EPLB_OK) {
        memcpy(loads, est, (size_t)shape->layers * shape->experts *
                               sizeof(float));
        if (choice)
            memcpy(choice, ch, (size_t)shape->layers * sizeof(int32_t));
    }
    leave(ctx);
    return rc;
}

/* One call at a time on a context: a second thread's call gets
 * EPLB_ERR_BUSY instead of racing through the context's buffers. */
static int enter(eplb_context *ctx)
{
    if (atomic_flag_test_and_set_explicit(&ctx->busy, memory_order_acquire))
        return eplbi_fail(EPLB_ERR_BUSY,
                          "another call is running on this context: use one "
                          "context per thread");
    return EPLB_OK;
}

static void leave(eplb_context *ctx)
{
    atomic_flag_clear_explicit(&ctx->busy, memory_order_release);
}

int eplb_rebalance_from(eplb_context *ctx, const eplb_shape *shape,
                        const float *weight, const int32_t *current,
                        const uint8_t *mask, int32_t *phy2log,
                        int32_t *log2phy, int32_t *logcnt)
{
    eplb_request r;
    eplb_request_default(&r);
    r.current_phy2log = current;
    r.gpu_mask = mask;
    return eplb_plan(ctx, shape, weight, &r, phy2log, log2phy, logcnt);
}

void eplb_request_default(eplb_request *req)
{
    if (!req)
        return;
    memset(req, 0, sizeof *req);
    req->struct_size = (uint32_t)sizeof *req;
    req->min_gain = EPLB_MIN_GAIN_DEFAULT;
    req->max_copies_per_gpu = -1;
    req->max_copies = -1;
    req->forecast = EPLB_FORECAST_AUTO;
    req->forecast_k = EPLB_FORECAST_K_DEFAULT;
    req->forecast_alpha = EPLB_FORECAST_ALPHA_DEFAULT;
    req->forecast_lookback = EPLB_FORECAST_LOOKBACK_DEFAULT;
}

/* The caller's request over the defaults: a request from a caller built
 * against an older header is shorter, and the inputs it does not know
 * stay absent. */
static int take_request(const eplb_request *req, eplb_request *r)
{
    eplb_request_default(r);
    if (!req)
        return EPLB_OK;
    /* the sizes of the versions: up to gpu_mask, deadline_us (0.2.0),
     * schedule (the migration), and the whole struct */
    const size_t known[] = {
        offsetof(eplb_request, gpu_mask) + sizeof req->gpu_mask,
        offsetof(eplb_request, deadline_us) + sizeof req->deadline_us,
        offsetof(eplb_request, schedule) + sizeof req->schedule,
        sizeof *r};
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok |= req->struct_size == known[i];
    if (!ok)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "req->struct_size is %u: fill the request with "
                          "eplb_request_default() before setting fields",
                          (unsigned)req->struct_size);
    memcpy(r, req, req->struct_size);
    r->struct_size = (uint32_t)sizeof *r;
    return EPLB_OK;
}

int eplb_plan(eplb_context *ctx, const eplb_shape *shape, const float *weight,
              const eplb_request *req, int32_t *phy2log, int32_t *log2phy,
              int32_t *logcnt)
{
    eplbi_clear_error();
    if (!ctx)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "ctx is NULL: create one with eplb_context_create");
    eplb_request r;
    int rc = take_request(req, &r);
    if (rc)
        return rc;
    rc = enter(ctx);
    if (rc)
        return rc;
    rc = plan_request(ctx, shape, weight, &r, phy2log, log2phy, logcnt);
    leave(ctx);
    return rc;
}

int eplb_rebalance(eplb_context *ctx, const eplb_shape *shape,
                   const float *weight, int32_t *phy2log, int32_t *log2phy,
                   int32_t *logcnt)
{
    return eplb_rebalance_from(ctx, shape, weight, NULL, NULL, phy2log,
                               log2phy, logcnt);
}

int eplb_context_floor(eplb_context *ctx, const eplb_shape *shape, int runs,
                       double *median_us, double *p99_us)
{
    eplbi_clear_error();
    if (!ctx || !median_us)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT, "ctx and median_us must "
                          "not be NULL");
    if (ctx->backend != EPLB_BACKEND_OPENCL)
        return eplbi_fail(EPLB_ERR_BAD_OPTION, "the floor is an OpenCL "
                          "figure; this context runs the reference backend");
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (runs < 1)
        return eplbi_fail(EPLB_ERR_BAD_OPTION, "runs is %d: use 1 or more",
                          runs);
    int policy = eplb_resolve_policy(EPLB_POLICY_AUTO, shape);
    plan_dims d;
    plan_dims_init(&d, shape, policy);
    if ((rc = enter(ctx)) != EPLB_OK)
        return rc;
    rc = ocl_engine_floor(ctx->cl, &d, runs, median_us, p99_us);
    leave(ctx);
    return rc;
}

int eplb_context_profile(const eplb_context *ctx, eplb_profile *out)
{
    eplbi_clear_error();
    if (!ctx || !out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT, "ctx and out must not be "
                          "NULL");
    /* An output struct (eplb_cl.h): at least its first result field. */
    int rc = out_struct_check(out, offsetof(eplb_profile, upload_us) +
                              sizeof out->upload_us, sizeof *out,
                              "eplb_profile");
    if (rc)
        return rc;
    if (ctx->backend != EPLB_BACKEND_OPENCL)
        return eplbi_fail(EPLB_ERR_BAD_OPTION, "profiles are OpenCL "
                          "figures; this context runs the reference backend");
    eplb_profile p = {0};
    rc = ocl_engine_profile(ctx->cl, &p);
    if (rc)
        return rc;
    out_struct_write(out, &p);
    return EPLB_OK;
}
