/* eplb-bench's inputs and plans: the reference configs, the recorded and
 * generated loads, and making and judging a plan, which most sections do
 * many times over; errors exit, as a half-measured table would mislead. */
#include <stdlib.h>

#include "bench.h"
#include "loadfile.h"
#include "workload.h"

const int bench_configs[NCONFIGS][4] = {{288, 8, 4, 32}, {320, 8, 8, 64},
                                        {288, 8, 18, 144}};
const char *const bench_files[NFILES] = {
    "decode_in1000out1000.json", "decode_in1800out100.json",
    "decode_in2000out100.json",  "decode_in500out1500.json",
    "prefill_in1000out1000.json", "prefill_in1024.json",
    "prefill_in1800out100.json", "prefill_in2000out100.json",
    "prefill_in2048.json",       "prefill_in4096.json",
    "prefill_in500out1500.json", "prefill_in512.json"};

eplb_shape config_shape(int c, int layers, int experts)
{
    eplb_shape s = {layers, experts, bench_configs[c][0], bench_configs[c][1],
                    bench_configs[c][2], bench_configs[c][3]};
    return s;
}

void config_name(char name[CONFIG_NAME_LEN], const eplb_shape *s)
{
    snprintf(name, CONFIG_NAME_LEN, "P=%d G=%d N=%d M=%d", s->num_replicas,
             s->num_groups, s->num_nodes, s->num_gpus);
}

void reference_name(char name[CONFIG_NAME_LEN], int c)
{
    eplb_shape s = config_shape(c, 0, 0);
    config_name(name, &s);
}

eplb_options deterministic(const eplb_options *o)
{
    eplb_options d = *o;
    d.candidates = 1;
    d.swap_rounds = 0;
    return d;
}

engine deterministic_engine(const engine *en, char label[DET_LABEL_LEN])
{
    engine d = *en;
    snprintf(label, DET_LABEL_LEN, "%s-det", en->label);
    d.label = label;
    d.opts = deterministic(&en->opts);
    return d;
}

void plan_alloc(plan_buf *p, const eplb_shape *s)
{
    size_t a, b, c;
    if (eplb_plan_sizes(s, &a, &b, &c))
        die("plan sizes");
    p->phy2log = xmalloc(a * 4);
    p->log2phy = xmalloc(b * 4);
    p->logcnt = xmalloc(c * 4);
}

void plan_free(plan_buf *p)
{
    free(p->phy2log);
    free(p->log2phy);
    free(p->logcnt);
}

int plan_into(eplb_context *ctx, const eplb_shape *s, const float *w,
              const int32_t *current, const uint8_t *mask, plan_buf *p)
{
    eplb_request req;
    eplb_request_default(&req);
    req.current_phy2log = current;
    req.gpu_mask = mask;
    if (current)
        req.min_gain = 0.0f;
    return eplb_plan(ctx, s, w, &req, p->phy2log, p->log2phy, p->logcnt);
}

void plan_make(const eplb_options *o, const eplb_shape *s, const float *w,
               const int32_t *current, const uint8_t *mask, plan_buf *p)
{
    eplb_context *ctx;
    plan_alloc(p, s);
    if (eplb_context_create(&ctx, o))
        die("context");
    if (plan_into(ctx, s, w, current, mask, p))
        die(current || mask ? "rebalance_from" : "rebalance");
    eplb_context_destroy(ctx);
}

void plan_judge(const eplb_shape *s, const float *w, const plan_buf *p,
                eplb_quality *q)
{
    *q = (eplb_quality){.struct_size = sizeof *q};
    if (eplb_plan_quality(s, EPLB_POLICY_AUTO, w, p->phy2log, p->logcnt, q))
        die("plan quality");
}

double balancedness(const eplb_shape *s, const float *w, const plan_buf *p)
{
    eplb_quality q;
    plan_judge(s, w, p, &q);
    return q.balancedness_mean;
}

float *generated_loads(int layers, int experts, uint64_t seed)
{
    float *w = xmalloc((size_t)layers * experts * sizeof(float));
    workload_generate(w, layers, experts, seed);
    return w;
}

float *load_real(bench *b, const char *file, int *L, int *E)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/deepseek-v3/%s", b->workloads, file);
    load_matrix m;
    if (load_matrix_read(path, &m, err, sizeof err)) {
        fprintf(stderr, "eplb-bench: %s\n", err);
        return NULL;
    }
    /* dense layers have no experts to place */
    load_matrix_drop_zero_layers(&m);
    *L = m.layers;
    *E = m.experts;
    return m.data;
}

int loadset_real(bench *b, int want, loadset *ls)
{
    ls->n = 0;
    for (int f = 0; f < want; f++) {
        if (!(ls->w[ls->n] = load_real(b, bench_files[f], &ls->L[ls->n],
                                       &ls->E[ls->n])))
            break;
        ls->names[ls->n++] = bench_files[f];
    }
    return ls->n;
}

void loadset_read(bench *b, loadset *ls)
{
    ls->n = 0;
    if (b->have_real)
        loadset_real(b, b->quick ? 1 : NFILES, ls);
    if (ls->n == 0) {
        ls->L[0] = GEN_LAYERS;
        ls->E[0] = GEN_EXPERTS;
        ls->w[0] = generated_loads(GEN_LAYERS, GEN_EXPERTS, GEN_SEED);
        ls->names[ls->n++] = GEN_NAME;
    }
}

void loadset_free(loadset *ls)
{
    for (int f = 0; f < ls->n; f++)
        free(ls->w[f]);
}
