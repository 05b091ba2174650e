/* eplb-bench's speed section: every engine on the reference configs, on
 * the largest recorded prefill file (or the generated loads), against the
 * OpenCL round-trip floor; then the cache-miss compile times (compile.c)
 * on the same loads. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

/* The recorded file the speed table runs on: the largest prefill batch. */
#define SPEED_FILE "prefill_in4096.json"
#define SPEED_NAME "prefill_in4096"

void speed_section(bench *b, const engine *en, int n_en)
{
    printf("\n## Speed (%d candidates, %d swap rounds, and each engine's "
           "deterministic mode; floor = upload, one trivial kernel, "
           "download, same sizes; replan = the same loads from the plan of "
           "these loads with 1%% noise, rev = from the plan of each layer's "
           "loads in reverse expert order; the search on the host: one "
           "thread for reference, one per CPU for the devices)\n",
           en[0].opts.candidates, en[0].opts.swap_rounds);
    speed_header();
    b->time_reversed = 1;
    float *gen = generated_loads(GEN_LAYERS, GEN_EXPERTS, GEN_SEED);
    int L = GEN_LAYERS, E = GEN_EXPERTS;
    float *real = b->have_real ? load_real(b, SPEED_FILE, &L, &E) : NULL;
    const float *w = real ? real : gen;
    const char *workload = real ? SPEED_NAME : GEN_NAME;
    for (int cfg = 0; cfg < (b->quick ? 1 : NCONFIGS); cfg++) {
        eplb_shape s = config_shape(cfg, L, E);
        char config[CONFIG_NAME_LEN];
        config_name(config, &s);
        for (int i = 0; i < n_en; i++) {
            fprintf(stderr, "\rspeed %s %s   ", config, en[i].label);
            time_row(b, &en[i], config, workload, &s, w);
            if (en[i].opts.use_clblast)
                continue;
            /* the deterministic mode too: DeepSeek's algorithm's own
             * cost, and the re-plan's in that mode */
            char label[DET_LABEL_LEN];
            engine d = deterministic_engine(&en[i], label);
            time_row(b, &d, config, workload, &s, w);
        }
    }
    progress_clear();
    b->time_reversed = 0;
    compile_times(b, en, n_en, w, L, E);
    free(gen);
    free(real);
}
