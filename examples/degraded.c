/* A plan over the GPUs still alive: GPU 3 of 8 has failed, and its slots
 * must stay empty while the others share its experts' load. */
#include <stdint.h>
#include <stdio.h>

#include <eplb_cl.h>

#define L 2  /* layers */
#define E 12 /* experts a layer */
#define P 16 /* slots a layer: 2 nodes x 4 GPUs x 2 */
#define M 8  /* GPUs */

int main(void)
{
    eplb_shape shape = {.layers = L, .experts = E, .num_replicas = P,
                        .num_groups = 4, .num_nodes = 2, .num_gpus = M};
    float weight[L * E]; /* tokens each expert received */
    for (int i = 0; i < L * E; i++)
        weight[i] = (float)(10 + (i * 37) % 90);
    /* Nonzero for a GPU that works, 0 for a dead one. */
    uint8_t alive[M] = {1, 1, 1, 0, 1, 1, 1, 1};
    int32_t phy2log[L * P], log2phy[L * E * (P - E + 1)], logcnt[L * E];

    eplb_options opts;
    eplb_options_default(&opts); /* any device, or the host */
    eplb_context *ctx;
    int rc = eplb_context_create(&ctx, &opts);
    eplb_request req;
    eplb_request_default(&req);
    req.gpu_mask = alive;
    if (!rc)
        rc = eplb_plan(ctx, &shape, weight, &req, phy2log, log2phy, logcnt);
    if (rc) {
        fprintf(stderr, "%s: %s\n", eplb_strerror(rc), eplb_last_error());
        return 1;
    }
    /* Each GPU's slots, P / M of them: -1 is an empty slot. */
    for (int l = 0; l < L; l++) {
        printf("layer %d:", l);
        for (int g = 0; g < M; g++) {
            printf(" gpu%d[", g);
            for (int s = g * (P / M); s < (g + 1) * (P / M); s++)
                printf(s == g * (P / M) ? "%d" : " %d", phy2log[l * P + s]);
            printf("]");
        }
        printf("\n");
    }
    /* Every expert still holds a slot, and GPU 3 holds none. */
    for (int i = 0; i < L * E; i++)
        if (logcnt[i] < 1 || phy2log[(i / E) * P + 3 * (P / M)] != -1)
            return 1;
    eplb_context_destroy(ctx);
    return 0;
}
