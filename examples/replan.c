/* A re-plan: the loads moved since the plan in service was made; plan
 * again from that placement, so that few experts are copied between GPUs. */
#include <stdio.h>
#include <stdlib.h>

#include <eplb_cl.h>

#define L 2  /* layers */
#define E 12 /* experts a layer */
#define P 16 /* slots a layer: 2 nodes x 4 GPUs x 2 */

static int fail(int rc)
{
    fprintf(stderr, "%s: %s\n", eplb_strerror(rc), eplb_last_error());
    return 1;
}

int main(void)
{
    eplb_shape shape = {.layers = L, .experts = E, .num_replicas = P,
                        .num_groups = 4, .num_nodes = 2, .num_gpus = 8};
    /* Tokens each expert received, yesterday and today. */
    float before[L * E], now[L * E];
    for (int i = 0; i < L * E; i++) {
        before[i] = (float)(10 + (i * 37) % 90);
        now[i] = before[i] + (i % 5 == 0 ? 60.0f : 0.0f);
    }
    /* log2phy and logcnt are written too; this example reads phy2log. */
    int32_t current[L * P], fresh[L * P], next[L * P];
    int32_t log2phy[L * E * (P - E + 1)], logcnt[L * E];

    eplb_options opts;
    eplb_options_default(&opts); /* any device, or the host */
    eplb_context *ctx;
    int rc = eplb_context_create(&ctx, &opts);
    /* The plan in service, made from yesterday's loads. */
    if (!rc)
        rc = eplb_plan(ctx, &shape, before, NULL, current, log2phy, logcnt);
    /* Today's plan from scratch, and from the current placement. */
    if (!rc)
        rc = eplb_plan(ctx, &shape, now, NULL, fresh, log2phy, logcnt);
    eplb_request req;
    eplb_request_default(&req);
    req.current_phy2log = current;
    if (!rc)
        rc = eplb_plan(ctx, &shape, now, &req, next, log2phy, logcnt);
    /* Copies: experts a GPU must load that it did not hold before. */
    long copies_fresh = 0, copies_replan = 0;
    if (!rc)
        rc = eplb_copies(&shape, current, fresh, NULL, &copies_fresh);
    if (!rc)
        rc = eplb_copies(&shape, current, next, NULL, &copies_replan);
    if (rc)
        return fail(rc);
    printf("copies: %ld from scratch, %ld re-planned\n", copies_fresh,
           copies_replan);
    eplb_context_destroy(ctx);
    return 0;
}
