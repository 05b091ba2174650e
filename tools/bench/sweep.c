/* eplb-bench's scaling sweep: speed over a range of shapes (experts,
 * layers, slots, nodes and GPUs each varied alone from DeepSeek's, 1024
 * experts in 1280 slots on 64 GPUs, DeepSeek's on one node of 8 GPUs and
 * under the global policy with two to four slots per GPU), on generated
 * loads, each OpenCL device once (or the host when none), in its mode and
 * the deterministic one; the fresh plan, the re-plan from 1% noise and
 * the re-plan from the plan of the loads reversed, as in the speed table.
 * Then the rows whose re-plan takes more than 5x the fresh plan plus 5 ms
 * (the re-plan's time bound aimed at on one CPU core, from any plan in
 * service). */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* E, L, P, G, N, M */
static const int full[][6] = {
    {64, 58, 72, 8, 4, 8},      {128, 58, 144, 8, 4, 16},
    {256, 58, 288, 8, 4, 32},   {512, 58, 576, 8, 4, 32},
    {1024, 58, 1152, 8, 4, 32}, {256, 1, 288, 8, 4, 32},
    {256, 16, 288, 8, 4, 32},   {256, 128, 288, 8, 4, 32},
    {256, 58, 384, 8, 4, 32},   {256, 58, 512, 8, 4, 32},
    {512, 58, 640, 8, 1, 8},    {512, 58, 640, 8, 2, 16},
    {512, 58, 640, 8, 8, 64},   {512, 58, 640, 8, 16, 128},
    {512, 58, 640, 8, 40, 320}, {1024, 58, 4096, 8, 8, 256},
    {1024, 58, 1280, 8, 8, 64},
    /* DeepSeek's on one node of 8 GPUs (expert parallelism 8): 36 slots
     * a GPU */
    {256, 58, 288, 8, 1, 8},
    /* the global policy (8 groups do not divide the nodes), nodes of 8
     * GPUs: 2, 3, 4 and 3 slots per GPU */
    {256, 58, 288, 8, 18, 144}, {256, 58, 288, 8, 12, 96},
    {256, 58, 288, 8, 9, 72},   {256, 58, 384, 8, 16, 128},
};
static const int quick[][6] = {{64, 8, 72, 8, 4, 8},
                               {256, 8, 288, 8, 4, 32}};

void sweep_section(bench *b, const engine *all, int n_all)
{
    /* CLBlast changes one kernel only: its engines would repeat rows */
    engine en[MAX_ENGINES];
    int n_en = 0;
    for (int i = 1; i < n_all; i++)
        if (!all[i].opts.use_clblast)
            en[n_en++] = all[i];
    if (n_en == 0)
        en[n_en++] = all[0];
    const int(*rows)[6] = b->quick ? quick : full;
    int nrows = b->quick ? (int)(sizeof quick / sizeof quick[0])
                         : (int)(sizeof full / sizeof full[0]);
    printf("\n## Scaling (generated loads, %d candidates, %d swap rounds, "
           "and each engine's deterministic mode; replan and rev as in the "
           "speed table)\n",
           en[0].opts.candidates, en[0].opts.swap_rounds);
    speed_header();
    b->time_reversed = 1;
    int over = 0, rows_timed = 0;
    char over_list[2048] = "";
    for (int r = b->sweep_from; r < nrows; r++) {
        eplb_shape s = {rows[r][1], rows[r][0], rows[r][2], rows[r][3],
                        rows[r][4], rows[r][5]};
        /* a seed a row, so that a resumed sweep (--sweep-from) measures
         * the same loads */
        float *w = generated_loads(s.layers, s.experts, 1000 + r);
        char config[CONFIG_NAME_LEN], wl[64];
        config_name(config, &s);
        snprintf(wl, sizeof wl, "gen %dx%d", s.layers, s.experts);
        for (int i = 0; i < n_en; i++) {
            for (int det = 0; det < 2; det++) {
                char label[DET_LABEL_LEN];
                engine e = det ? deterministic_engine(&en[i], label) : en[i];
                fprintf(stderr, "\rscaling %d/%d (%s)   ", r + 1, nrows,
                        e.label);
                timing t;
                time_row_timed(b, &e, config, wl, &s, w, &t);
                double limit = 5.0 * t.warm_us + 5000.0;
                rows_timed++;
                if (t.replan_us > limit || t.reversed_us > limit) {
                    over++;
                    size_t at = strlen(over_list);
                    snprintf(over_list + at, sizeof over_list - at,
                             "  %s %s, %s: %.1fx, %.1fx\n", e.label,
                             config, wl, t.replan_us / t.warm_us,
                             t.reversed_us / t.warm_us);
                }
            }
        }
        free(w);
    }
    progress_clear();
    b->time_reversed = 0;
    printf("re-plans over 5x the fresh plan + 5 ms (after 1%% noise, from "
           "the reversed loads' plan): %d of %d rows\n%s",
           over, rows_timed, over_list);
}
