/* eplb-bench's harness: which engines there are, how one is timed, and the
 * output every section shares (the speed table's rows, JSON records,
 * errors), so that each section file holds only what it measures. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "timing.h"
#include "workload.h"

/* Warm runs stop after about this long (or BENCH_MIN_RUNS), so that a slow
 * engine or a large shape does not hold the whole run up. */
#define BENCH_MEASURE_US 1e6
#define BENCH_MIN_RUNS 5

_Noreturn void die(const char *what)
{
    fprintf(stderr, "eplb-bench: %s: %s\n", what, eplb_last_error());
    exit(1);
}

void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (!p) {
        fputs("eplb-bench: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

void json_record(bench *b, const char *fmt, ...)
{
    if (!b->json)
        return;
    fputs(b->json_first ? "\n  " : ",\n  ", b->json);
    b->json_first = 0;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(b->json, fmt, ap);
    va_end(ap);
}

void progress_clear(void)
{
    fprintf(stderr, "\r%40s\r", "");
}

/* ---- engines --------------------------------------------------------- */

int find_engines(engine *en, int cands, int rounds, const char *types)
{
    int n = 0;
    eplb_options o;
    eplb_options_default(&o);
    o.candidates = cands;
    o.swap_rounds = rounds;
    o.backend = EPLB_BACKEND_REFERENCE;
    o.host_threads = 1;
    en[n].label = "reference";
    en[n].opts = o;
    snprintf(en[n].device, sizeof en[n].device, "host CPU (one thread)");
    n++;
    /* the devices' engines run the re-plan's search on the host's threads
     * (the library's default) */
    o.host_threads = 0;
    static const char *const kinds[] = {"gpu", "accelerator", "cpu"};
    static const char *const labels[] = {"opencl-gpu", "opencl-acc",
                                         "opencl-cpu"};
    static const char *const clblast_labels[] = {"gpu+clblast", "acc+clblast",
                                                 "cpu+clblast"};
    for (int k = 0; k < 3; k++) {
        if (!strstr(types, kinds[k]))
            continue;
        o.backend = EPLB_BACKEND_OPENCL;
        o.device_type = kinds[k];
        /* a device of this type or none: no fallback under its label */
        o.enforce_device = 1;
        eplb_context *ctx;
        if (eplb_context_create(&ctx, &o) != EPLB_OK)
            continue;
        en[n].label = labels[k];
        en[n].opts = o;
        snprintf(en[n].device, sizeof en[n].device, "%s",
                 eplb_context_device(ctx));
        eplb_context_destroy(ctx);
        n++;
        /* the same device with CLBlast's GEMV for the group loads */
        o.use_clblast = 1;
        if (eplb_context_create(&ctx, &o) == EPLB_OK) {
            en[n] = en[n - 1];
            en[n].label = clblast_labels[k];
            en[n].opts = o;
            eplb_context_destroy(ctx);
            n++;
        }
        o.use_clblast = 0;
    }
    return n;
}

const eplb_options *planner_options(const engine *en, int n_en)
{
    return &en[n_en > 1 ? 1 : 0].opts;
}

/* ---- timing ---------------------------------------------------------- */

eplb_context *cold_start(const engine *en, const eplb_shape *s,
                         const float *w, plan_buf *p, timing *t)
{
    eplb_context *ctx;
    double t0 = timing_now_us();
    if (eplb_context_create(&ctx, &en->opts))
        die("context");
    t->context_us = timing_now_us() - t0;
    t0 = timing_now_us();
    if (eplb_rebalance(ctx, s, w, p->phy2log, p->log2phy, p->logcnt))
        die("rebalance");
    t->first_us = timing_now_us() - t0;
    return ctx;
}

void time_calls(eplb_context *ctx, const eplb_shape *s, const float *w,
                const int32_t *current, plan_buf *p, int runs, double *t)
{
    for (int i = 0; i < runs; i++) {
        double t0 = timing_now_us();
        /* eplb_rebalance is this call with no current plan */
        if (plan_into(ctx, s, w, current, NULL, p))
            die(current ? "rebalance_from" : "rebalance");
        t[i] = timing_now_us() - t0;
    }
}

double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, timing_cmp_double);
    return v[n / 2];
}

/* The median re-plan of w from the plan of `from` (cur: scratch), over
 * as many runs as fit about BENCH_MEASURE_US (one at least, `runs` at
 * most; v [runs]). */
static double time_replan_from(eplb_context *ctx, const eplb_shape *s,
                               const float *w, const float *from,
                               plan_buf *cur, plan_buf *p, int runs,
                               double *v)
{
    double one;
    time_calls(ctx, s, from, NULL, cur, 1, &one);
    time_calls(ctx, s, w, cur->phy2log, p, 1, &one);
    int n = runs;
    if (one * n > BENCH_MEASURE_US)
        n = (int)(BENCH_MEASURE_US / one);
    if (n < 1)
        n = 1;
    time_calls(ctx, s, w, cur->phy2log, p, n, v);
    return median(v, n);
}

static void time_engine(bench *b, const engine *en, const eplb_shape *s,
                        const float *w, timing *t)
{
    plan_buf p;
    plan_alloc(&p, s);
    eplb_context *ctx = cold_start(en, s, w, &p, t);
    /* Warm runs: as many as asked, but about a second at most. */
    double one;
    time_calls(ctx, s, w, NULL, &p, 1, &one);
    int runs = b->warm_runs;
    if (one * runs > BENCH_MEASURE_US)
        runs = (int)(BENCH_MEASURE_US / one);
    if (runs < BENCH_MIN_RUNS)
        runs = BENCH_MIN_RUNS;
    double *v = xmalloc(sizeof(double) * runs);
    time_calls(ctx, s, w, NULL, &p, runs, v);
    t->warm_us = median(v, runs);
    t->warm_p99 = v[(int)((runs - 1) * 0.99)];
    /* The re-plan: the same loads from the plan of these loads with 1%
     * noise (each expert's load scaled by up to +-1%), as many runs; and
     * from the plan of each layer's loads in reverse expert order. */
    int L = s->layers, E = s->experts;
    size_t n = (size_t)L * E;
    float *other = xmalloc(n * sizeof(float));
    memcpy(other, w, n * sizeof(float));
    workload_perturb(other, L, E, 0.01f, REPLAN_NOISE_SEED);
    plan_buf cur;
    plan_alloc(&cur, s);
    t->replan_us = time_replan_from(ctx, s, w, other, &cur, &p, runs, v);
    t->reversed_us = -1.0;
    if (b->time_reversed) {
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++)
                other[(size_t)l * E + e] = w[(size_t)l * E + E - 1 - e];
        t->reversed_us = time_replan_from(ctx, s, w, other, &cur, &p, runs, v);
    }
    plan_free(&cur);
    free(other);
    t->floor_us = t->floor_p99 = 0.0;
    /* the floor is an OpenCL round trip: the host has none */
    if (strcmp(eplb_context_backend(ctx), "opencl") == 0 &&
        eplb_context_floor(ctx, s, b->floor_runs, &t->floor_us,
                           &t->floor_p99))
        die("floor");
    free(v);
    eplb_context_destroy(ctx);
    plan_free(&p);
}

static void print_timing_row(bench *b, const engine *en, const char *config,
                             const char *workload, const eplb_shape *s,
                             const timing *t)
{
    char ratio[32] = "-", floor_s[32] = "-";
    if (t->floor_us > 0) {
        snprintf(ratio, sizeof ratio, "%.2f", t->warm_us / t->floor_us);
        snprintf(floor_s, sizeof floor_s, "%.1f", t->floor_us);
    }
    printf("%-14s %-22s %-24s %9s %10.1f %9.1f %9.0f %9.0f %8s %10.1f "
           "%8.2f %10.1f %8.2f\n",
           en->label, config, workload, floor_s, t->warm_us, t->warm_p99,
           t->context_us, t->first_us, ratio, t->replan_us,
           t->replan_us / t->warm_us, t->reversed_us,
           t->reversed_us < 0 ? -1.0 : t->reversed_us / t->warm_us);
    json_record(b, "{\"kind\":\"speed\",\"engine\":\"%s\",\"device\":\"%s\","
                "\"config\":\"%s\",\"workload\":\"%s\",\"layers\":%d,"
                "\"experts\":%d,\"candidates\":%d,\"swap_rounds\":%d,"
                "\"floor_us\":%.2f,\"floor_p99_us\":%.2f,\"warm_us\":%.2f,"
                "\"warm_p99_us\":%.2f,\"context_us\":%.1f,"
                "\"first_call_us\":%.1f,\"x_floor\":%.3f,"
                "\"replan_us\":%.2f,\"replan_reversed_us\":%.2f,"
                "\"host_threads\":%d}",
                en->label, en->device, config, workload, s->layers,
                s->experts, en->opts.candidates, en->opts.swap_rounds,
                t->floor_us, t->floor_p99, t->warm_us, t->warm_p99,
                t->context_us, t->first_us,
                t->floor_us > 0 ? t->warm_us / t->floor_us : 0.0,
                t->replan_us, t->reversed_us, en->opts.host_threads);
}

void time_row(bench *b, const engine *en, const char *config,
              const char *workload, const eplb_shape *s, const float *w)
{
    timing t;
    time_row_timed(b, en, config, workload, s, w, &t);
}

void time_row_timed(bench *b, const engine *en, const char *config,
                    const char *workload, const eplb_shape *s,
                    const float *w, timing *t)
{
    time_engine(b, en, s, w, t);
    print_timing_row(b, en, config, workload, s, t);
}

void speed_header(void)
{
    printf("%-14s %-22s %-24s %9s %10s %9s %9s %9s %8s %10s %8s %10s %8s\n",
           "engine", "config", "workload", "floor us", "warm us", "p99 us",
           "ctx us", "first us", "x floor", "replan us", "x fresh",
           "rev us", "x fresh");
}
