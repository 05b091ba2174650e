/* The README's example: DeepSeek's README case, planned and printed. */
#include <stdio.h>
#include <stdlib.h>

#include <eplb_cl.h>

int main(void)
{
    /* 2 layers x 12 experts: tokens each expert received. */
    const float weight[2 * 12] = {
        90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86,
        20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27};
    /* 16 slots over 2 nodes x 4 GPUs, experts in 4 groups. */
    eplb_shape shape = {.layers = 2, .experts = 12, .num_replicas = 16,
                        .num_groups = 4, .num_nodes = 2, .num_gpus = 8};

    size_t n_phy2log, n_log2phy, n_logcnt;
    int rc = eplb_plan_sizes(&shape, &n_phy2log, &n_log2phy, &n_logcnt);
    if (rc) {
        fprintf(stderr, "%s: %s\n", eplb_strerror(rc), eplb_last_error());
        return 1;
    }
    int32_t *phy2log = malloc(n_phy2log * sizeof(int32_t));
    int32_t *log2phy = malloc(n_log2phy * sizeof(int32_t));
    int32_t *logcnt = malloc(n_logcnt * sizeof(int32_t));

    eplb_options opts;
    eplb_options_default(&opts); /* 64 candidates, 20 swap rounds, seed 0 */
    eplb_context *ctx;
    rc = eplb_context_create(&ctx, &opts);
    if (rc == EPLB_OK)
        rc = eplb_rebalance(ctx, &shape, weight, phy2log, log2phy, logcnt);
    if (rc) {
        fprintf(stderr, "%s: %s\n", eplb_strerror(rc), eplb_last_error());
        return 1;
    }
    printf("backend %s on %s\n", eplb_context_backend(ctx),
           eplb_context_device(ctx));
    for (int l = 0; l < shape.layers; l++) {
        printf("layer %d phy2log:", l);
        for (int s = 0; s < shape.num_replicas; s++)
            printf(" %d", phy2log[l * shape.num_replicas + s]);
        printf("\n");
    }
    eplb_quality q = {.struct_size = sizeof q};
    eplb_plan_quality(&shape, opts.policy, weight, phy2log, logcnt, &q);
    printf("balancedness %.4f (bound %.4f)\n", q.balancedness_mean,
           q.bound_mean);

    eplb_context_destroy(ctx);
    free(phy2log);
    free(log2phy);
    free(logcnt);
    return 0;
}
