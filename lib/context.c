/* The context: options, backend choice, and the rebalance entry point. */
#include "internal.h"

#include <math.h>
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
    int backend; /* EPLB_BACKEND_REFERENCE or EPLB_BACKEND_OPENCL */
    reference_state *ref;
    ocl_engine *cl;
    plan_buf fresh, next; /* the fresh plan; the plan being returned */
    replan_state *replan;
    char note[EPLB_NOTE_MAX];
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

int eplb_context_create(eplb_context **out, const eplb_options *opts)
{
    eplbi_clear_error();
    if (!out)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "out is NULL: pass the address of an eplb_context*");
    *out = NULL;
    /* Options from a caller built against an older header are shorter: the
     * fields it does not know keep their defaults. */
    eplb_options given;
    eplb_options_default(&given);
    if (opts) {
        if (opts->struct_size < offsetof(eplb_options, tolerance) ||
            opts->struct_size > sizeof given)
            return eplbi_fail(EPLB_ERR_BAD_OPTION,
                              "opts->struct_size is %u: fill the options with "
                              "eplb_options_default() before setting fields",
                              (unsigned)opts->struct_size);
        memcpy(&given, opts, opts->struct_size);
        given.struct_size = (uint32_t)sizeof given;
    }
    opts = &given;
    int rc = check_options(opts);
    if (rc)
        return rc;
    eplb_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    ctx->opts = *opts;
    /* The filter strings are borrowed during create only. */
    ctx->opts.platform = ctx->opts.device = ctx->opts.device_type = NULL;
    ctx->backend = EPLB_BACKEND_REFERENCE;
    if (opts->backend != EPLB_BACKEND_REFERENCE) {
        rc = ocl_engine_create(&ctx->cl, opts, ctx->note, sizeof ctx->note);
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
    *out = ctx;
    return EPLB_OK;
}

void eplb_context_destroy(eplb_context *ctx)
{
    if (!ctx)
        return;
    reference_state_free(ctx->ref);
    ocl_engine_destroy(ctx->cl);
    plan_buf_free(&ctx->fresh);
    plan_buf_free(&ctx->next);
    replan_state_free(ctx->replan);
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
    return ctx ? ctx->note : "";
}

int context_backend_plan(eplb_context *ctx, const plan_dims *d,
                         const float *weight, int32_t *phy2log,
                         int32_t *log2phy, int32_t *logcnt)
{
    pack_params pp = {ctx->opts.candidates, ctx->opts.swap_rounds,
                      ctx->opts.noise, ctx->opts.seed};
    if (ctx->backend == EPLB_BACKEND_OPENCL)
        return ocl_engine_rebalance(ctx->cl, d, &pp, weight, phy2log, log2phy,
                                    logcnt);
    return reference_rebalance(&ctx->ref, d, &pp, weight, phy2log, log2phy,
                               logcnt);
}

/* The fresh plan under the context's options into b: the backend's plan,
 * over the usable GPUs when a mask is given, then with repeated experts
 * spread over GPUs when distinct_per_gpu asks for it. */
static int fresh_plan(eplb_context *ctx, const plan_dims *d,
                      const float *weight, const uint8_t *mask, plan_buf *b)
{
    int rc = plan_buf_reserve(b, d);
    if (rc)
        return rc;
    if (mask)
        rc = mask_plan_fresh(ctx, d, weight, mask, b->phy2log, b->log2phy,
                             b->logcnt);
    else
        rc = context_backend_plan(ctx, d, weight, b->phy2log, b->log2phy,
                                  b->logcnt);
    if (rc == EPLB_OK && ctx->opts.distinct_per_gpu) {
        rc = distinct_per_gpu_apply(d, weight, mask, b->phy2log, b->logcnt);
        if (rc == EPLB_OK)
            plan_log2phy_by_slot(d, b->phy2log, b->log2phy);
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

int eplb_rebalance_from(eplb_context *ctx, const eplb_shape *shape,
                        const float *weight, const int32_t *current,
                        const uint8_t *mask, int32_t *phy2log,
                        int32_t *log2phy, int32_t *logcnt)
{
    eplbi_clear_error();
    if (!ctx)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "ctx is NULL: create one with eplb_context_create");
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    if (!phy2log || !log2phy || !logcnt)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "%s is NULL: allocate the sizes eplb_plan_sizes() "
                          "gives", !phy2log ? "phy2log"
                                  : !log2phy ? "log2phy" : "logcnt");
    rc = validate_loads(shape, weight);
    if (rc)
        return rc;
    int policy = eplb_resolve_policy(ctx->opts.policy, shape);
    if (policy < 0)
        return policy;
    plan_dims d;
    plan_dims_init(&d, shape, policy);
    if (mask && (rc = mask_check(&d, mask)) != EPLB_OK)
        return rc;
    if (current && (rc = replan_check_current(&d, current, mask)) != EPLB_OK)
        return rc;

    /* The fresh plan (doc/ALGORITHM.md sections 3 to 6) straight into the
     * caller's arrays: the backends write nothing on failure. */
    if (!current && !mask && !ctx->opts.distinct_per_gpu)
        return context_backend_plan(ctx, &d, weight, phy2log, log2phy,
                                    logcnt);

    rc = fresh_plan(ctx, &d, weight, mask, &ctx->fresh);
    if (rc)
        return rc;
    if (!current) {
        copy_plan_out(&d, &ctx->fresh, phy2log, log2phy, logcnt);
        return EPLB_OK;
    }
    rc = plan_buf_reserve(&ctx->next, &d);
    if (rc == EPLB_OK)
        rc = replan_from_current(&ctx->replan, &d, weight, current, mask,
                                 ctx->fresh.phy2log, ctx->fresh.logcnt,
                                 ctx->opts.tolerance, ctx->next.phy2log,
                                 ctx->next.logcnt);
    if (rc)
        return rc;
    plan_log2phy_by_slot(&d, ctx->next.phy2log, ctx->next.log2phy);
    copy_plan_out(&d, &ctx->next, phy2log, log2phy, logcnt);
    return EPLB_OK;
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
    return ocl_engine_floor(ctx->cl, &d, runs, median_us, p99_us);
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
