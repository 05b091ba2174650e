/* eplb-bench's scaling sweep: speed over a range of shapes (experts,
 * layers, slots, nodes and GPUs each varied alone from DeepSeek's, and
 * 1024 experts in 1280 slots on 64 GPUs), on generated loads, each OpenCL
 * device once (or the host when none); the fresh plan and the re-plan
 * from 1% noise, as in the speed table. */
#include <stdlib.h>

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
    printf("\n## Scaling (generated loads, %d candidates, %d swap rounds)\n",
           en[0].opts.candidates, en[0].opts.swap_rounds);
    speed_header();
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
            fprintf(stderr, "\rscaling %d/%d (%s)   ", r + 1, nrows,
                    en[i].label);
            time_row(b, &en[i], config, wl, &s, w);
        }
        free(w);
    }
    progress_clear();
}
