#define EPLB_EXPERIMENTAL /* eplb_context_tune */
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "loadfile.h"

const int test_configs[3][4] = {{288, 8, 4, 32}, {320, 8, 8, 64},
                                {288, 8, 18, 144}};

const char *const test_workload_files[] = {
    "decode_in1000out1000.json", "decode_in1800out100.json",
    "decode_in2000out100.json",  "decode_in500out1500.json",
    "prefill_in1000out1000.json", "prefill_in1024.json",
    "prefill_in1800out100.json", "prefill_in2000out100.json",
    "prefill_in2048.json",       "prefill_in4096.json",
    "prefill_in500out1500.json", "prefill_in512.json",
    NULL};

const eplb_shape test_golden_shape = {2, 12, 16, 4, 2, 8};
const float test_golden_weight[24] = {
    90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86,
    20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27};
const int32_t test_golden_phy2log[32] = {
    5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
    7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1};
const int32_t test_golden_logcnt[24] = {1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1,
                                        1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1};

int test_plan_alloc(test_plan *p, const eplb_shape *shape)
{
    memset(p, 0, sizeof *p);
    p->shape = *shape;
    if (eplb_plan_sizes(shape, &p->n_p2l, &p->n_l2p, &p->n_cnt))
        return -1;
    p->phy2log = malloc(p->n_p2l * sizeof(int32_t));
    p->log2phy = malloc(p->n_l2p * sizeof(int32_t));
    p->logcnt = malloc(p->n_cnt * sizeof(int32_t));
    return p->phy2log && p->log2phy && p->logcnt ? 0 : -1;
}

void test_plan_free(test_plan *p)
{
    free(p->phy2log);
    free(p->log2phy);
    free(p->logcnt);
    memset(p, 0, sizeof *p);
}

void test_plan_poison(test_plan *p, int32_t v)
{
    for (size_t i = 0; i < p->n_p2l; i++)
        p->phy2log[i] = v;
    for (size_t i = 0; i < p->n_l2p; i++)
        p->log2phy[i] = v;
    for (size_t i = 0; i < p->n_cnt; i++)
        p->logcnt[i] = v;
}

int test_plan_is_poisoned(const test_plan *p, int32_t v)
{
    for (size_t i = 0; i < p->n_p2l; i++)
        if (p->phy2log[i] != v)
            return 0;
    for (size_t i = 0; i < p->n_l2p; i++)
        if (p->log2phy[i] != v)
            return 0;
    for (size_t i = 0; i < p->n_cnt; i++)
        if (p->logcnt[i] != v)
            return 0;
    return 1;
}

int test_plan_equal(const test_plan *a, const test_plan *b)
{
    return a->n_p2l == b->n_p2l && a->n_l2p == b->n_l2p &&
           a->n_cnt == b->n_cnt &&
           !memcmp(a->phy2log, b->phy2log, a->n_p2l * sizeof(int32_t)) &&
           !memcmp(a->log2phy, b->log2phy, a->n_l2p * sizeof(int32_t)) &&
           !memcmp(a->logcnt, b->logcnt, a->n_cnt * sizeof(int32_t));
}

const char *test_plan_check(const test_plan *p, int hier)
{
    const eplb_shape *s = &p->shape;
    int L = s->layers, E = s->experts, P = s->num_replicas, X = P - E + 1;
    int ppn = P / s->num_nodes, gs = E / s->num_groups;
    int *seen = calloc((size_t)E, sizeof(int));
    int *node_of_group = malloc((size_t)s->num_groups * sizeof(int));
    const char *bad = NULL;
    for (int l = 0; l < L && !bad; l++) {
        const int32_t *p2l = p->phy2log + (size_t)l * P;
        const int32_t *l2p = p->log2phy + (size_t)l * E * X;
        const int32_t *cnt = p->logcnt + (size_t)l * E;
        long total = 0;
        memset(seen, 0, (size_t)E * sizeof(int));
        for (int e = 0; e < E && !bad; e++) {
            if (cnt[e] < 1 || cnt[e] > X)
                bad = "an expert has no slot, or more than P-E+1";
            total += cnt[e];
        }
        if (!bad && total != P)
            bad = "logcnt does not sum to num_replicas";
        for (int slot = 0; slot < P && !bad; slot++) {
            int e = p2l[slot];
            if (e < 0 || e >= E)
                bad = "phy2log holds an out-of-range expert";
            else
                seen[e]++;
        }
        for (int e = 0; e < E && !bad; e++) {
            if (seen[e] != cnt[e])
                bad = "logcnt disagrees with phy2log";
            for (int r = 0; r < X && !bad; r++) {
                int slot = l2p[e * X + r];
                if (r < cnt[e] && (slot < 0 || slot >= P || p2l[slot] != e))
                    bad = "log2phy is not the inverse of phy2log";
                if (r >= cnt[e] && slot != -1)
                    bad = "log2phy padding is not -1";
            }
        }
        if (!bad && hier) {
            for (int g = 0; g < s->num_groups; g++)
                node_of_group[g] = -1;
            for (int slot = 0; slot < P && !bad; slot++) {
                int g = p2l[slot] / gs, node = slot / ppn;
                if (node_of_group[g] < 0)
                    node_of_group[g] = node;
                else if (node_of_group[g] != node)
                    bad = "a group's replicas sit on two nodes";
            }
        }
    }
    free(seen);
    free(node_of_group);
    return bad;
}

static struct { int key, value; } ways[8];
static int n_ways;

void test_way(int key, int value)
{
    for (int i = 0; i < n_ways; i++)
        if (ways[i].key == key) {
            ways[i].value = value;
            return;
        }
    if (n_ways < 8) {
        ways[n_ways].key = key;
        ways[n_ways++].value = value;
    }
}

void test_ways_reset(void)
{
    n_ways = 0;
}

int test_context_create(eplb_context **ctx, const eplb_options *o)
{
    int rc = eplb_context_create(ctx, o);
    if (rc || strcmp(eplb_context_backend(*ctx), "opencl") != 0)
        return rc;
    for (int i = 0; i < n_ways && rc == EPLB_OK; i++)
        rc = eplb_context_tune(*ctx, (eplb_tune)ways[i].key, ways[i].value);
    if (rc) {
        fprintf(stderr, "tune: %s\n", eplb_last_error());
        eplb_context_destroy(*ctx);
        *ctx = NULL;
    }
    return rc;
}

int test_rebalance(eplb_backend backend, int candidates, int swap_rounds,
                   uint64_t seed, const eplb_shape *shape, const float *w,
                   test_plan *out)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = backend;
    o.candidates = candidates;
    o.swap_rounds = swap_rounds;
    o.seed = seed;
    eplb_context *ctx;
    int rc = test_context_create(&ctx, &o);
    if (rc) {
        fprintf(stderr, "context: %s: %s\n", eplb_strerror(rc),
                eplb_last_error());
        return rc;
    }
    rc = test_plan_alloc(out, shape);
    if (rc == 0)
        rc = eplb_rebalance(ctx, shape, w, out->phy2log, out->log2phy,
                            out->logcnt);
    if (rc)
        fprintf(stderr, "rebalance: %s: %s\n", eplb_strerror(rc),
                eplb_last_error());
    eplb_context_destroy(ctx);
    return rc;
}

const char *test_workloads_dir(void)
{
    static int warned;
    const char *d = getenv("EPLB_WORKLOADS_DIR");
    static char path[4096];
    if (d && *d)
        snprintf(path, sizeof path, "%s/deepseek-v3", d);
    else
        snprintf(path, sizeof path, "../shared/workloads/deepseek-v3");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return path;
    if (!warned++)
        printf("\nSKIP: real workloads not found at %s (set "
               "EPLB_WORKLOADS_DIR); those cases are skipped\n", path);
    return NULL;
}

float *test_load_workload(const char *file, int *layers, int *experts)
{
    const char *dir = test_workloads_dir();
    if (!dir)
        return NULL;
    char path[8192], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    load_matrix m;
    if (load_matrix_read(path, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    load_matrix_drop_zero_layers(&m);
    *layers = m.layers;
    *experts = m.experts;
    return m.data;
}
