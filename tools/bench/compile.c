/* eplb-bench's cache-miss figures: each OpenCL engine's first rebalance
 * (DeepSeek's shape) with the program cache pointed at a new, empty
 * folder, so both programs are compiled; the context's creation is timed
 * apart. CLBlast's engines are left out: they compile the same programs. */
#define _XOPEN_SOURCE 700 /* mkdtemp, setenv, nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

/* The cache variable the library reads (its disk cache of programs). */
#define CACHE_ENV "EPLB_CL_CACHE_DIR"

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void compile_times(bench *b, const engine *en, int n_en, const float *w,
                   int layers, int experts)
{
    /* the caller's cache comes back afterwards, for the sections after */
    const char *old = getenv(CACHE_ENV);
    char *saved = old ? strdup(old) : NULL;
    char dir[] = "/tmp/eplb-bench-cache-XXXXXX";
    if (!mkdtemp(dir)) {
        free(saved);
        return;
    }
    eplb_shape s = config_shape(0, layers, experts);
    char config[CONFIG_NAME_LEN];
    config_name(config, &s);
    printf("\ncache miss (a new, empty program cache; %s):\n", config);
    for (int i = 0; i < n_en; i++) {
        if (en[i].opts.backend != EPLB_BACKEND_OPENCL ||
            en[i].opts.use_clblast)
            continue;
        /* a folder per engine: one engine's programs must not serve the
         * next */
        char sub[sizeof dir + 8];
        snprintf(sub, sizeof sub, "%s/%d", dir, i);
        setenv(CACHE_ENV, sub, 1);
        timing t;
        plan_buf p;
        plan_alloc(&p, &s);
        eplb_context_destroy(cold_start(&en[i], &s, w, &p, &t));
        plan_free(&p);
        printf("  %-14s %-60s context %.0f us, first call %.0f us\n",
               en[i].label, en[i].device, t.context_us, t.first_us);
        json_record(b, "{\"kind\":\"compile\",\"engine\":\"%s\","
                    "\"device\":\"%s\",\"context_us\":%.1f,"
                    "\"first_call_us\":%.1f}", en[i].label, en[i].device,
                    t.context_us, t.first_us);
    }
    if (saved)
        setenv(CACHE_ENV, saved, 1);
    else
        unsetenv(CACHE_ENV);
    free(saved);
    if (nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "eplb-bench: could not remove %s\n", dir);
}
