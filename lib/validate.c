/* The input rules (doc/ALGORITHM.md section 1), each its own status, with
 * the offending value
 * named so the caller knows what to change. */
#include "internal.h"

#include <math.h>
#include <stdint.h>

/* Largest element count of any output or scratch array we accept: keeps
 * every index in int32 and every byte count in size_t on 32-bit hosts. */
#define EPLB_MAX_ELEMENTS ((int64_t)INT32_MAX / 4)

int validate_shape(const eplb_shape *s)
{
    if (!s)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "shape is NULL: pass an eplb_shape");
    const struct { const char *name; int v; } sizes[] = {
        {"layers", s->layers},     {"experts", s->experts},
        {"num_replicas", s->num_replicas}, {"num_groups", s->num_groups},
        {"num_nodes", s->num_nodes}, {"num_gpus", s->num_gpus},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v <= 0)
            return eplbi_fail(EPLB_ERR_ZERO_SIZE,
                              "%s is %d: every size must be at least 1",
                              sizes[i].name, sizes[i].v);
    if (s->experts % s->num_groups)
        return eplbi_fail(EPLB_ERR_GROUPS_DONT_DIVIDE,
                          "experts (%d) is not a multiple of num_groups (%d): "
                          "choose a group count that divides the experts",
                          s->experts, s->num_groups);
    if (s->num_replicas < s->experts)
        return eplbi_fail(EPLB_ERR_TOO_FEW_REPLICAS,
                          "num_replicas (%d) < experts (%d): every expert "
                          "needs at least one slot",
                          s->num_replicas, s->experts);
    if (s->num_replicas % s->num_gpus)
        return eplbi_fail(EPLB_ERR_GPUS_DONT_DIVIDE,
                          "num_replicas (%d) is not a multiple of num_gpus "
                          "(%d): every GPU must hold the same number of slots",
                          s->num_replicas, s->num_gpus);
    if (s->num_gpus % s->num_nodes)
        return eplbi_fail(EPLB_ERR_NODES_DONT_DIVIDE,
                          "num_gpus (%d) is not a multiple of num_nodes (%d): "
                          "every node must hold the same number of GPUs",
                          s->num_gpus, s->num_nodes);
    int64_t L = s->layers, E = s->experts, P = s->num_replicas;
    int64_t log2phy = L * E * (P - E + 1);
    if (L * P > EPLB_MAX_ELEMENTS || log2phy > EPLB_MAX_ELEMENTS ||
        L * E > EPLB_MAX_ELEMENTS)
        return eplbi_fail(EPLB_ERR_SIZE_OVERFLOW,
                          "layers x experts x (num_replicas - experts + 1) = "
                          "%lld elements for log2phy exceeds the limit of %lld:"
                          " split the layers into several calls",
                          (long long)log2phy, (long long)EPLB_MAX_ELEMENTS);
    return EPLB_OK;
}

int validate_loads(const eplb_shape *s, const float *weight)
{
    if (!weight)
        return eplbi_fail(EPLB_ERR_NULL_ARGUMENT,
                          "weight is NULL: pass the [layers][experts] loads");
    size_t n = (size_t)s->layers * (size_t)s->experts;
    for (size_t i = 0; i < n; i++) {
        float v = weight[i];
        if (v >= 0.0f && v <= 3.4028235e38f)
            continue; /* the common case: finite and non-negative */
        int layer = (int)(i / (size_t)s->experts);
        int expert = (int)(i % (size_t)s->experts);
        if (isnan(v))
            return eplbi_fail(EPLB_ERR_LOAD_NAN,
                              "weight[%d][%d] is NaN: loads must be finite "
                              "token counts >= 0", layer, expert);
        if (isinf(v))
            return eplbi_fail(EPLB_ERR_LOAD_INFINITE,
                              "weight[%d][%d] is %s: loads must be finite "
                              "token counts >= 0", layer, expert,
                              v > 0 ? "+inf" : "-inf");
        return eplbi_fail(EPLB_ERR_LOAD_NEGATIVE,
                          "weight[%d][%d] is %g: loads must be >= 0",
                          layer, expert, (double)v);
    }
    return EPLB_OK;
}

int eplb_check_input(const eplb_shape *shape, const float *weight)
{
    eplbi_clear_error();
    int rc = validate_shape(shape);
    if (rc == EPLB_OK && weight)
        rc = validate_loads(shape, weight);
    return rc;
}

int eplb_plan_sizes(const eplb_shape *shape, size_t *phy2log_len,
                    size_t *log2phy_len, size_t *logcnt_len)
{
    eplbi_clear_error();
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    size_t L = (size_t)shape->layers, E = (size_t)shape->experts,
           P = (size_t)shape->num_replicas;
    if (phy2log_len)
        *phy2log_len = L * P;
    if (log2phy_len)
        *log2phy_len = L * E * (P - E + 1);
    if (logcnt_len)
        *logcnt_len = L * E;
    return EPLB_OK;
}

int eplb_resolve_policy(eplb_policy requested, const eplb_shape *shape)
{
    int rc = validate_shape(shape);
    if (rc)
        return rc;
    int divides = shape->num_groups % shape->num_nodes == 0;
    switch (requested) {
    case EPLB_POLICY_AUTO:
        return divides ? EPLB_POLICY_HIERARCHICAL : EPLB_POLICY_GLOBAL;
    case EPLB_POLICY_HIERARCHICAL:
        if (!divides)
            return eplbi_fail(EPLB_ERR_POLICY_MISMATCH,
                              "policy hierarchical with num_groups %d and "
                              "num_nodes %d: groups must divide evenly over "
                              "nodes; use policy auto or global",
                              shape->num_groups, shape->num_nodes);
        return EPLB_POLICY_HIERARCHICAL;
    case EPLB_POLICY_GLOBAL:
        return EPLB_POLICY_GLOBAL;
    }
    return eplbi_fail(EPLB_ERR_BAD_OPTION, "policy %d is not one of auto, "
                      "hierarchical, global", (int)requested);
}

void plan_dims_init(plan_dims *d, const eplb_shape *s, int policy)
{
    d->L = s->layers;
    d->E = s->experts;
    d->P = s->num_replicas;
    d->M = s->num_gpus;
    if (policy == EPLB_POLICY_HIERARCHICAL) {
        d->G = s->num_groups;
        d->N = s->num_nodes;
    } else {
        d->G = 1;
        d->N = 1;
    }
    d->gs = d->E / d->G;
    d->gpn = d->G / d->N;
    d->lpn = d->E / d->N;
    d->ppn = d->P / d->N;
    d->gn = d->M / d->N;
    d->ppg = d->P / d->M;
    d->maxrep = d->P - d->E + 1;
}
