/* eplb-bench: speed against the OpenCL floor, balance against the bound.
 *
 *   eplb-bench [--quick] [--json FILE] [--workloads DIR] [--device-types L]
 *
 * For the host reference backend and each OpenCL device type found (gpu,
 * accelerator, cpu) it measures, on the same job: the round-trip floor,
 * the warm time per rebalance (median, p99), a new context's creation and
 * its first call apart (programs from the disk cache), a cache miss's
 * compile time per device; then the plans' quality on the real loads
 * (when present), out of sample, the migration between near-identical
 * inputs, each GPU of the first reference config (doc/ALGORITHM.md
 * section 12) dead in turn, duplicate replicas with distinct_per_gpu off
 * and on, and a scaling sweep.
 *
 * This file reads the command line, opens the JSON file and runs the
 * sections named by --sections; each section lives in its own file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench.h"

/* forecast.c: the next-window section (plans from the windows seen so
 * far, judged on the window that comes). */
void forecast_section(bench *b, const eplb_options *o);

/* Where the recorded loads are looked for when neither --workloads nor
 * EPLB_WORKLOADS_DIR says. */
#define DEFAULT_WORKLOADS "../shared/workloads"

static int usage(int help)
{
    fprintf(help ? stdout : stderr,
            "usage: eplb-bench [--quick] [--json FILE] [--workloads "
            "DIR] [--device-types gpu,accelerator,cpu]\n"
            "                  [--sections speed,quality,replan,migration,"
            "forecast,failure,"
            "duplicates,sweep]\n"
            "                  [--sweep-from ROW]\n"
            "                  [--candidates C] [--swap-rounds T]\n");
    return help ? 0 : 2;
}

/* Whether <workloads>/deepseek-v3 is a folder: the sections that need the
 * recorded loads run only then. */
static int have_real_loads(const char *workloads)
{
    char probe[4096];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/deepseek-v3", workloads);
    return stat(probe, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Opens the JSON file and writes its head; the sections add the runs. */
static int json_open(bench *b, const char *path)
{
    b->json = fopen(path, "w");
    if (!b->json) {
        fprintf(stderr, "eplb-bench: cannot write %s\n", path);
        return -1;
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    fprintf(b->json, "{\"version\":\"%s\",\"date\":\"%s\",\"quick\":%d,"
            "\"runs\":[", eplb_version_string(), date, b->quick);
    b->json_first = 1;
    return 0;
}

int main(int argc, char **argv)
{
    bench b = {0};
    b.workloads = DEFAULT_WORKLOADS;
    const char *json_path = NULL, *types = "gpu,accelerator,cpu";
    const char *sections =
        "speed,quality,replan,forecast,failure,duplicates,sweep";
    int cands = 64, rounds = 20;
    static const struct option longopts[] = {
        {"quick", no_argument, 0, 'q'},
        {"json", required_argument, 0, 'j'},
        {"workloads", required_argument, 0, 'w'},
        {"device-types", required_argument, 0, 't'},
        {"sections", required_argument, 0, 's'},
        {"sweep-from", required_argument, 0, 'f'},
        {"candidates", required_argument, 0, 'c'},
        {"swap-rounds", required_argument, 0, 'r'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': b.quick = 1; break;
        case 'j': json_path = optarg; break;
        case 'w': b.workloads = optarg; break;
        case 't': types = optarg; break;
        case 's': sections = optarg; break;
        case 'f': b.sweep_from = atoi(optarg); break;
        case 'c': cands = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default: return usage(c == 'h');
        }
    }
    /* the flag wins over the environment */
    const char *env_w = getenv("EPLB_WORKLOADS_DIR");
    if (env_w && *env_w && strcmp(b.workloads, DEFAULT_WORKLOADS) == 0)
        b.workloads = env_w;
    b.have_real = have_real_loads(b.workloads);
    /* Rows appear as they are measured, even into a pipe or file. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    b.floor_runs = b.quick ? 200 : 3000;
    b.warm_runs = b.quick ? 20 : 500;
    if (json_path && json_open(&b, json_path))
        return 2;
    engine en[MAX_ENGINES];
    int n_en = find_engines(en, cands, rounds, types);
    printf("# eplb-bench %s%s\n", eplb_version_string(),
           b.quick ? " (quick)" : "");
    for (int i = 0; i < n_en; i++)
        printf("engine %-12s %s\n", en[i].label, en[i].device);
    if (!b.have_real)
        printf("(real workloads not found under %s: generated loads only)\n",
               b.workloads);

    if (strstr(sections, "speed"))
        speed_section(&b, en, n_en);
    if (b.have_real && strstr(sections, "quality"))
        quality_section(&b, planner_options(en, n_en));
    /* the re-plan section falls back to generated loads */
    if (strstr(sections, "replan") &&
        replan_section(&b, planner_options(en, n_en)))
        return 1;
    /* the re-plan section's migration part alone */
    if (strstr(sections, "migration") && !strstr(sections, "replan"))
        migration_tables(&b, planner_options(en, n_en));
    /* the host backend plans these (plans are the same on every engine) */
    if (strstr(sections, "forecast"))
        forecast_section(&b, &en[0].opts);
    if (strstr(sections, "failure"))
        failure_section(&b, &en[0].opts);
    if (strstr(sections, "duplicates"))
        duplicate_section(&b, &en[0].opts);
    if (strstr(sections, "sweep"))
        sweep_section(&b, en, n_en);
    if (b.json) {
        fputs("\n]}\n", b.json);
        fclose(b.json);
    }
    return 0;
}
