/* eplb-cl: compute an expert placement plan for a load matrix.
 *
 *   eplb-cl [options] [LOADS]      LOADS: SGLang JSON, JSON array or CSV
 *
 * With no LOADS it plans a built-in realistic workload. A LOADS file of
 * recent samples ([samples][layers][experts]) is planned for the window
 * that comes (the library's forecast). The plan goes to --output (or
 * stdout) as JSON; a summary goes to stderr. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* for eplb_context_profile */
#define EPLB_EXPERIMENTAL
#include "eplb_cl.h"
#include "loadfile.h"
#include "planio.h"
#include "timing.h"
#include "workload.h"

/* The built-in workload: DeepSeek-V3's MoE layers and experts. */
#define BUILTIN_LAYERS 58
#define BUILTIN_EXPERTS 256
#define BUILTIN_SEED 2024
#define DEFAULT_REPEAT 10

static void usage(FILE *f)
{
    fputs(
"usage: eplb-cl [options] [LOADS]\n"
"  LOADS                  load matrix: SGLang JSON {\"logical_count\": [[...]]},\n"
"                         a JSON array of arrays, or CSV (one layer a row);\n"
"                         a regular file or a pipe, at most 1 GiB. All-zero\n"
"                         (dense) layers are kept, so that the plan has one\n"
"                         row per layer of the file. Default: a built-in\n"
"                         realistic workload (58 layers x 256 experts).\n"
"                         A JSON [samples][layers][experts] (recent windows,\n"
"                         oldest first, as SGLang's logical_count with its\n"
"                         window axis) is planned for the next window: the\n"
"                         loads planned are the forecast of --forecast\n"
"  --forecast F           with a window of samples: auto | last | mean |\n"
"                         ewma | trend | adaptive | robust (default auto:\n"
"                         the library's default, adaptive)\n"
"  --forecast-k K         mean, trend: the newest K samples (default 4)\n"
"  --forecast-alpha A     ewma: the newest sample's weight, (0, 1] (0.5)\n"
"  --forecast-lookback N  adaptive, robust: samples scored (default:\n"
"                         adaptive 1, robust 2)\n"
"  --next LOADS           print the plan's balancedness on these loads (the\n"
"                         window that came; [layers][experts] of LOADS' size)\n"
"  --num-replicas P       physical slots per layer (default 288)\n"
"  --num-groups G         expert groups (default 8)\n"
"  --num-nodes N          nodes (default 4)\n"
"  --num-gpus M           GPUs (default 32)\n"
"  --backend B            auto | reference | opencl (default auto)\n"
"  --policy X             auto | hierarchical | global (default auto)\n"
"  --candidates C         packing candidates (default 64; 1 with\n"
"                         --swap-rounds 0 is DeepSeek's algorithm exactly)\n"
"  --noise F              largest sort-key noise (default 0.2)\n"
"  --swap-rounds T        swap refinement rounds (default 20)\n"
"  --seed S               noise seed (default 0)\n"
"  --platform S, --device S, --device-type gpu|cpu|accelerator\n"
"                         OpenCL device filters (substrings of names)\n"
"  --enforce-device       a filter that matches nothing is an error\n"
"  --use-clblast          group loads by CLBlast's GEMV (builds with CLBlast)\n"
"  --current PLAN         re-plan from the placement in service: a plan JSON\n"
"                         this tool wrote, or a JSON array of phy2log rows\n"
"                         (-1 for an empty slot), one row per layer of LOADS;\n"
"                         the fewest expert copies that keep every layer as\n"
"                         balanced as a fresh plan\n"
"  --tolerance F          only with --current: balancedness may fall short of\n"
"                         the fresh plan's by this fraction per layer\n"
"                         (default 0)\n"
"  --max-copies-per-gpu B only with --current: at most B expert copies per\n"
"                         GPU over the whole migration (0: nothing moves);\n"
"                         the re-plan's changes go best gain per copy first\n"
"                         while the budget allows\n"
"  --max-copies N         only with --current: at most N copies in all\n"
"  --stage-copies-per-gpu b\n"
"                         only with --current: cut the migration into\n"
"                         stages of at most b copies per GPU each (default:\n"
"                         one stage)\n"
"  --min-gain F           only with --current: a layer whose re-plan lowers\n"
"                         its largest GPU load by less than this share (in\n"
"                         [0, 1), default 0.02; 0: every layer to its\n"
"                         target) keeps its placement\n"
"  --stages FILE          only with --current: write the migration schedule\n"
"                         (the stage of each slot, a record per stage, the\n"
"                         layers' gains, copies and order) as JSON to FILE\n"
"  --mask 1,0,1,...       usable GPUs: one 0 (dead) or 1 (usable) per GPU\n"
"  --dead-gpus 3,17       dead GPUs by index, each once (the others usable);\n"
"                         give --mask or --dead-gpus, not both\n"
"  --distinct-per-gpu     no GPU holds two replicas of one expert\n"
"  --host-threads T       host threads for the re-plan's layers (default 0:\n"
"                         one per CPU, at most 16; 1: one thread); the\n"
"                         plan is the same for every T\n"
"  --profile              print the device-side times (OpenCL profiling)\n"
"  --repeat R             time R warm calls after the first (default 10)\n"
"  -o, --output FILE      write the plan JSON to FILE (default stdout)\n"
"  -q, --quiet            no summary on stderr\n"
"  -h, --help             this text\n"
"Exit status: 0 done; 2 a usage error or a LOADS or PLAN file the tool\n"
"refuses (the message names the file, with line:column for its text); 1 an\n"
"error of the library or the system.\n", f);
}

static int parse_int(const char *opt, const char *s, long lo, long hi,
                     long *out)
{
    char *end;
    /* strtol clamps an overflow to LONG_MAX, which a range up to LONG_MAX
     * would take, and skips leading blanks: neither is the number given. */
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno == ERANGE || (*s != '-' && *s != '+' &&
                                          (*s < '0' || *s > '9')) ||
        v < lo || v > hi) {
        if (hi == LONG_MAX)
            fprintf(stderr, "eplb-cl: %s '%s': expected an integer >= %ld "
                    "(at most %ld)\n", opt, s, lo, hi);
        else
            fprintf(stderr, "eplb-cl: %s '%s': expected an integer in "
                    "%ld..%ld\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* A share in [0, 1) written as a decimal number: strtof alone also takes
 * "nan", "inf", hexadecimal and leading blanks, none of them meant here. */
static int parse_share(const char *opt, const char *s, float *out)
{
    char *end = NULL;
    float v = 0.0f;
    int ok = *s && strspn(s, "0123456789.eE+-") == strlen(s);
    if (ok)
        v = strtof(s, &end);
    if (!ok || *end || !(v >= 0.0f && v < 1.0f)) {
        fprintf(stderr, "eplb-cl: %s '%s': expected a number in [0, 1), a "
                "share such as 0.01\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* A comma-separated list of integers in lo..hi into v (at most cap); the
 * count, or -1 with a message. */
static int parse_list(const char *opt, const char *s, long lo, long hi,
                      long *v, int cap)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < lo || x > hi || n == cap ||
            (*end && *end != ',')) {
            fprintf(stderr, "eplb-cl: %s '%s': expected a comma-separated "
                    "list of integers in %ld..%ld\n", opt, s, lo, hi);
            return -1;
        }
        v[n++] = x;
        if (!*end)
            return n;
        p = end + 1;
    }
}

/* The GPU mask from --mask or --dead-gpus, checked against M GPUs: NULL
 * with *bad set when the list does not fit. */
static uint8_t *make_mask(const char *mask_arg, const char *dead_arg, int M,
                          int *bad)
{
    *bad = 0;
    if (!mask_arg && !dead_arg)
        return NULL;
    *bad = 1;
    long *v = malloc((size_t)(M + 1) * sizeof(long));
    uint8_t *mask = malloc((size_t)M);
    if (!v || !mask) {
        fprintf(stderr, "eplb-cl: out of memory\n");
        free(v);
        free(mask);
        return NULL;
    }
    int n;
    if (mask_arg) {
        n = parse_list("--mask", mask_arg, 0, 1, v, M + 1);
        if (n >= 0 && n != M) {
            fprintf(stderr, "eplb-cl: --mask has %d entries for %d GPUs: "
                    "give one 0 or 1 per GPU\n", n, M);
            n = -1;
        }
        for (int g = 0; g < n; g++)
            mask[g] = (uint8_t)v[g];
    } else {
        n = parse_list("--dead-gpus", dead_arg, 0, M - 1, v, M + 1);
        memset(mask, 1, (size_t)M);
        for (int i = 0; i < n; i++) {
            if (!mask[v[i]]) {
                fprintf(stderr, "eplb-cl: --dead-gpus '%s': GPU %ld is "
                        "listed twice: give each dead GPU once\n", dead_arg,
                        v[i]);
                n = -1;
                break;
            }
            mask[v[i]] = 0;
        }
    }
    free(v);
    if (n < 0) {
        free(mask);
        return NULL;
    }
    *bad = 0;
    return mask;
}

static int parse_choice(const char *opt, const char *s,
                        const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    fprintf(stderr, "eplb-cl: %s '%s': expected one of", opt, s);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", names[i]);
    fputc('\n', stderr);
    return -1;
}

int main(int argc, char **argv)
{
    static const char *const backends[] = {"auto", "reference", "opencl"};
    static const char *const policies[] = {"auto", "hierarchical", "global"};
    /* eplb_forecast's order */
    static const char *const forecasts[] = {"auto", "last", "mean", "ewma",
                                            "trend", "adaptive", "robust",
                                            "kept"};
    static const struct option longopts[] = {
        {"num-replicas", required_argument, 0, 'P'},
        {"num-groups", required_argument, 0, 'G'},
        {"num-nodes", required_argument, 0, 'N'},
        {"num-gpus", required_argument, 0, 'M'},
        {"backend", required_argument, 0, 'b'},
        {"policy", required_argument, 0, 'p'},
        {"candidates", required_argument, 0, 'c'},
        {"noise", required_argument, 0, 'z'},
        {"swap-rounds", required_argument, 0, 't'},
        {"seed", required_argument, 0, 's'},
        {"platform", required_argument, 0, 'L'},
        {"device", required_argument, 0, 'D'},
        {"device-type", required_argument, 0, 'Y'},
        {"enforce-device", no_argument, 0, 'e'},
        {"use-clblast", no_argument, 0, 'B'},
        {"current", required_argument, 0, 'C'},
        {"tolerance", required_argument, 0, 'T'},
        {"mask", required_argument, 0, 'K'},
        {"dead-gpus", required_argument, 0, 'X'},
        {"max-copies-per-gpu", required_argument, 0, 'A'},
        {"max-copies", required_argument, 0, 'n'},
        {"stage-copies-per-gpu", required_argument, 0, 'S'},
        {"min-gain", required_argument, 0, 'm'},
        {"stages", required_argument, 0, 'W'},
        {"distinct-per-gpu", no_argument, 0, 'U'},
        {"host-threads", required_argument, 0, 'H'},
        {"forecast", required_argument, 0, 'f'},
        {"forecast-k", required_argument, 0, 'k'},
        {"forecast-alpha", required_argument, 0, 'a'},
        {"forecast-lookback", required_argument, 0, 'l'},
        {"next", required_argument, 0, 'x'},
        {"profile", no_argument, 0, 'F'},
        {"repeat", required_argument, 0, 'r'},
        {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    eplb_options opts;
    eplb_options_default(&opts);
    eplb_shape shape = {0, 0, 288, 8, 4, 32};
    const char *output = NULL, *current_path = NULL, *mask_arg = NULL,
               *dead_arg = NULL, *stages_path = NULL;
    /* The migration options: the request's fields, and the first one given
     * (they all need --current: a fresh plan has nothing to migrate). */
    eplb_request req;
    eplb_request_default(&req);
    const char *migration_opt = NULL; /* the first option of a schedule */
    int gain_given = 0;
    /* the first forecast option given (they need a window of samples) */
    const char *forecast_opt = NULL, *next_path = NULL;
    int quiet = 0, choice, tolerance_given = 0;
    long v, repeat = DEFAULT_REPEAT;
    int c;
    while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'P': case 'G': case 'N': case 'M':
            if (parse_int(argv[optind - 1], optarg, 1, 1 << 24, &v))
                return 2;
            *(c == 'P' ? &shape.num_replicas : c == 'G' ? &shape.num_groups
              : c == 'N' ? &shape.num_nodes : &shape.num_gpus) = (int)v;
            break;
        case 'b':
            if (parse_choice("--backend", optarg, backends, 3, &choice))
                return 2;
            opts.backend = (eplb_backend)choice;
            break;
        case 'p':
            if (parse_choice("--policy", optarg, policies, 3, &choice))
                return 2;
            opts.policy = (eplb_policy)choice;
            break;
        case 'c':
            if (parse_int("--candidates", optarg, 1, 1024, &v))
                return 2;
            opts.candidates = (int)v;
            break;
        case 'z': {
            char *end;
            opts.noise = strtof(optarg, &end);
            if (!*optarg || *end) {
                fprintf(stderr, "eplb-cl: --noise '%s': expected a number\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 't':
            if (parse_int("--swap-rounds", optarg, 0, 1000, &v))
                return 2;
            opts.swap_rounds = (int)v;
            break;
        case 's': {
            char *end;
            opts.seed = strtoull(optarg, &end, 0);
            if (!*optarg || *end) {
                fprintf(stderr, "eplb-cl: --seed '%s': expected an integer\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'L': opts.platform = optarg; break;
        case 'D': opts.device = optarg; break;
        case 'Y': opts.device_type = optarg; break;
        case 'e': opts.enforce_device = 1; break;
        case 'B': opts.use_clblast = 1; break;
        case 'C': current_path = optarg; break;
        case 'T': {
            char *end;
            opts.tolerance = strtof(optarg, &end);
            tolerance_given = 1;
            if (!*optarg || *end) {
                fprintf(stderr, "eplb-cl: --tolerance '%s': expected a "
                        "fraction such as 0.01\n", optarg);
                return 2;
            }
            break;
        }
        case 'A':
            if (parse_int("--max-copies-per-gpu", optarg, 0, INT32_MAX, &v))
                return 2;
            req.max_copies_per_gpu = (int32_t)v;
            migration_opt = migration_opt ? migration_opt
                                          : "--max-copies-per-gpu";
            break;
        case 'n':
            if (parse_int("--max-copies", optarg, 0, LONG_MAX, &v))
                return 2;
            req.max_copies = (int64_t)v;
            migration_opt = migration_opt ? migration_opt : "--max-copies";
            break;
        case 'S':
            /* 0 is the library's "one stage", which leaving the option out
             * says already. */
            if (parse_int("--stage-copies-per-gpu", optarg, 1, INT32_MAX,
                          &v))
                return 2;
            req.stage_copies_per_gpu = (int32_t)v;
            migration_opt = migration_opt ? migration_opt
                                          : "--stage-copies-per-gpu";
            break;
        case 'm':
            /* (alone it costs nothing: no schedule is made for it) */
            if (parse_share("--min-gain", optarg, &req.min_gain))
                return 2;
            gain_given = 1;
            break;
        case 'W':
            stages_path = optarg;
            migration_opt = migration_opt ? migration_opt : "--stages";
            break;
        case 'f':
            if (parse_choice("--forecast", optarg, forecasts, 7, &choice))
                return 2;
            req.forecast = (eplb_forecast)choice;
            forecast_opt = forecast_opt ? forecast_opt : "--forecast";
            break;
        case 'k':
            if (parse_int("--forecast-k", optarg, 1, INT32_MAX, &v))
                return 2;
            req.forecast_k = (int32_t)v;
            forecast_opt = forecast_opt ? forecast_opt : "--forecast-k";
            break;
        case 'a': {
            char *end = NULL;
            float a = 0.0f;
            int ok = *optarg &&
                     strspn(optarg, "0123456789.eE+-") == strlen(optarg);
            if (ok)
                a = strtof(optarg, &end);
            if (!ok || *end || !(a > 0.0f && a <= 1.0f)) {
                fprintf(stderr, "eplb-cl: --forecast-alpha '%s': expected a "
                        "weight in (0, 1], such as 0.5\n", optarg);
                return 2;
            }
            req.forecast_alpha = a;
            forecast_opt = forecast_opt ? forecast_opt : "--forecast-alpha";
            break;
        }
        case 'l':
            if (parse_int("--forecast-lookback", optarg, 1,
                          EPLB_MAX_LOOKBACK, &v))
                return 2;
            req.forecast_lookback = (int32_t)v;
            forecast_opt = forecast_opt ? forecast_opt
                                        : "--forecast-lookback";
            break;
        case 'x': next_path = optarg; break;
        case 'K': mask_arg = optarg; break;
        case 'X': dead_arg = optarg; break;
        case 'U': opts.distinct_per_gpu = 1; break;
        case 'H':
            if (parse_int("--host-threads", optarg, 0, 256, &v))
                return 2;
            opts.host_threads = (int)v;
            break;
        case 'F': opts.profile = 1; break;
        case 'r':
            if (parse_int("--repeat", optarg, 0, 1000000, &repeat))
                return 2;
            break;
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "eplb-cl: one load file at most\n");
        usage(stderr);
        return 2;
    }
    if (mask_arg && dead_arg) {
        fprintf(stderr, "eplb-cl: --mask and --dead-gpus both name the dead "
                "GPUs: give one of them\n");
        return 2;
    }
    if (tolerance_given && !current_path) {
        fprintf(stderr, "eplb-cl: --tolerance applies to a re-plan: give "
                "--current PLAN too\n");
        return 2;
    }
    if ((migration_opt || gain_given) && !current_path) {
        fprintf(stderr, "eplb-cl: %s applies to a re-plan: give --current "
                "PLAN too\n", migration_opt ? migration_opt : "--min-gain");
        return 2;
    }

    load_matrix m;
    char err[512];
    int zero_layers = 0;
    const char *source;
    if (optind < argc) {
        source = argv[optind];
        if (load_matrix_read(source, &m, err, sizeof err)) {
            fprintf(stderr, "eplb-cl: %s\n", err);
            return 2;
        }
        /* All-zero (dense) layers are kept: the library plans them (each
         * counts as balanced), and the plan, like a --current plan, has one
         * row per layer of the file (per sample's layers in a window). */
        for (int l = 0; l < m.layers; l++) {
            int zero = 1;
            for (int k = 0; k < m.samples && zero; k++) {
                const float *row =
                    m.data + ((size_t)k * m.layers + l) * m.experts;
                int e = 0;
                while (e < m.experts && row[e] == 0.0f)
                    e++;
                zero = e == m.experts;
            }
            zero_layers += zero;
        }
        if (zero_layers == m.layers) {
            fprintf(stderr, "eplb-cl: %s: every layer is all zero: nothing "
                    "to balance\n", source);
            load_matrix_free(&m);
            return 2;
        }
    } else {
        source = "built-in workload (seed 2024)";
        m.layers = BUILTIN_LAYERS;
        m.experts = BUILTIN_EXPERTS;
        m.data = malloc(sizeof(float) * BUILTIN_LAYERS * BUILTIN_EXPERTS);
        if (!m.data) {
            fprintf(stderr, "eplb-cl: out of memory\n");
            return 1;
        }
        m.samples = 1;
        workload_generate(m.data, m.layers, m.experts, BUILTIN_SEED);
    }
    shape.layers = m.layers;
    shape.experts = m.experts;
    /* A window of samples (or one sample with a forecast option) is
     * planned for the next window: the library reads the samples, and
     * the summary judges the plan on the forecast it made. */
    int windowed = m.samples > 1 || forecast_opt;
    const float *weight = windowed ? NULL : m.data;
    float *planned = windowed ? NULL : m.data;
    int32_t *fchoice = NULL;
    load_matrix next = {0};
    if (next_path) {
        if (load_matrix_read(next_path, &next, err, sizeof err)) {
            fprintf(stderr, "eplb-cl: %s\n", err);
            load_matrix_free(&m);
            return 2;
        }
        if (next.samples != 1 || next.layers != m.layers ||
            next.experts != m.experts) {
            fprintf(stderr, "eplb-cl: --next %s: %d x %d loads%s; the plan "
                    "is of %d layers x %d experts: give the next window's "
                    "[layers][experts]\n", next_path, next.layers,
                    next.experts, next.samples != 1 ? " per sample" : "",
                    m.layers, m.experts);
            load_matrix_free(&next);
            load_matrix_free(&m);
            return 2;
        }
    }

    int status = 1;
    size_t n_p2l, n_l2p, n_cnt;
    int32_t *phy2log = NULL, *log2phy = NULL, *logcnt = NULL;
    int32_t *current = NULL, *current_cnt = NULL;
    double *times = NULL;
    eplb_context *ctx = NULL;
    uint8_t *mask = NULL;
    /* Asked for whenever a migration option is given, for the summary's
     * figures; its arrays only for --stages. */
    eplb_schedule sched = {.struct_size = sizeof sched};
    int rc = eplb_check_input(&shape, weight);
    if (rc == EPLB_OK)
        rc = eplb_plan_sizes(&shape, &n_p2l, &n_l2p, &n_cnt);
    if (rc) {
        fprintf(stderr, "eplb-cl: %s: %s\n", eplb_strerror(rc),
                eplb_last_error());
        goto done;
    }
    int bad_mask;
    mask = make_mask(mask_arg, dead_arg, shape.num_gpus, &bad_mask);
    if (bad_mask) {
        status = 2;
        goto done;
    }
    phy2log = malloc(n_p2l * sizeof *phy2log);
    log2phy = malloc(n_l2p * sizeof *log2phy);
    logcnt = malloc(n_cnt * sizeof *logcnt);
    times = malloc((size_t)(repeat + 1) * sizeof *times);
    if (!phy2log || !log2phy || !logcnt || !times) {
        fprintf(stderr, "eplb-cl: out of memory\n");
        goto done;
    }
    if (stages_path) {
        /* Every stage rewrites at least one slot, and no slot twice: at
         * most L*P stages, L*P + 1 records with stage 0. The tool plans
         * every row of the load file (all-zero layers too), so the
         * library's layers are the file's rows, as in the plan. */
        size_t records = n_p2l + 1 < INT32_MAX ? n_p2l + 1 : INT32_MAX;
        sched.stage_of_slot = malloc(n_p2l * sizeof *sched.stage_of_slot);
        sched.stages = malloc(records * sizeof *sched.stages);
        sched.max_stages = (int32_t)records;
        sched.layer_gain = malloc((size_t)shape.layers *
                                  sizeof *sched.layer_gain);
        sched.layer_copies = malloc((size_t)shape.layers *
                                    sizeof *sched.layer_copies);
        sched.layer_order = malloc((size_t)shape.layers *
                                   sizeof *sched.layer_order);
        if (!sched.stage_of_slot || !sched.stages || !sched.layer_gain ||
            !sched.layer_copies || !sched.layer_order) {
            fprintf(stderr, "eplb-cl: out of memory\n");
            goto done;
        }
    }
    if (current_path) {
        size_t len;
        current = malloc(n_p2l * sizeof *current);
        current_cnt = calloc(n_cnt, sizeof *current_cnt);
        char *text = current ? read_file(current_path, &len, err, sizeof err)
                             : NULL;
        if (!text || plan_parse_phy2log(text, len, current_path, &shape,
                                        current, err, sizeof err)) {
            fprintf(stderr, "eplb-cl: %s\n", current ? err : "out of memory");
            free(text);
            status = 2;
            goto done;
        }
        /* The library's checks, made here to name the place in the file. */
        if (plan_check_phy2log(text, len, current_path, &shape, current,
                               err, sizeof err)) {
            fprintf(stderr, "eplb-cl: %s\n", err);
            free(text);
            status = 2;
            goto done;
        }
        free(text);
        /* Replica counts of the plan in service, to judge it on the new
         * loads (ids are checked by the library). */
        for (size_t i = 0; current_cnt && i < n_p2l; i++) {
            int e = current[i];
            if (e >= 0 && e < shape.experts)
                current_cnt[i / shape.num_replicas * shape.experts + e]++;
        }
    }
    double t0 = timing_now_us();
    rc = eplb_context_create(&ctx, &opts);
    double t_create = timing_now_us() - t0;
    if (rc) {
        fprintf(stderr, "eplb-cl: %s: %s\n", eplb_strerror(rc),
                eplb_last_error());
        goto done;
    }
    req.current_phy2log = current;
    req.gpu_mask = mask;
    req.schedule = migration_opt ? &sched : NULL;
    if (windowed) {
        req.windows = m.data;
        req.num_windows = m.samples;
        fchoice = malloc((size_t)shape.layers * sizeof *fchoice);
        planned = malloc(n_cnt * sizeof *planned);
        if (!fchoice || !planned) {
            fprintf(stderr, "eplb-cl: out of memory\n");
            goto done;
        }
        req.forecast_choice = fchoice;
    }
    for (long i = 0; i <= repeat; i++) {
        t0 = timing_now_us();
        rc = eplb_plan(ctx, &shape, weight, &req, phy2log, log2phy, logcnt);
        times[i] = timing_now_us() - t0;
        if (rc) {
            fprintf(stderr, "eplb-cl: %s%s%s: %s\n",
                    rc == EPLB_ERR_BAD_PLAN && current ? current_path : "",
                    rc == EPLB_ERR_BAD_PLAN && current ? ": " : "",
                    eplb_strerror(rc), eplb_last_error());
            goto done;
        }
    }
    /* the loads planned, for the summary (the plan's own estimate) */
    if (windowed && (rc = eplb_forecast_loads(ctx, &shape, &req, planned,
                                              NULL)) != EPLB_OK) {
        fprintf(stderr, "eplb-cl: %s: %s\n", eplb_strerror(rc),
                eplb_last_error());
        goto done;
    }
    FILE *out = output ? fopen(output, "w") : stdout;
    if (!out) {
        fprintf(stderr, "eplb-cl: cannot write %s\n", output);
        goto done;
    }
    int werr = plan_write_json(out, &shape, phy2log, log2phy, logcnt);
    if ((output ? fclose(out) : fflush(out)) || werr) {
        fprintf(stderr, "eplb-cl: write error on %s\n",
                output ? output : "stdout");
        goto done;
    }
    if (stages_path) {
        FILE *sf = fopen(stages_path, "w");
        if (!sf) {
            fprintf(stderr, "eplb-cl: cannot write %s\n", stages_path);
            goto done;
        }
        werr = schedule_write_json(sf, &shape, &sched);
        if (fclose(sf) || werr) {
            fprintf(stderr, "eplb-cl: write error on %s\n", stages_path);
            goto done;
        }
    }
    if (!quiet) {
        eplb_quality before = {.struct_size = sizeof before};
        eplb_quality after = {.struct_size = sizeof after};
        int policy = eplb_resolve_policy(opts.policy, &shape);
        eplb_identity_quality(&shape, planned, &before);
        eplb_plan_quality(&shape, opts.policy, planned, phy2log, logcnt,
                          &after);
        qsort(times + 1, (size_t)repeat, sizeof *times, timing_cmp_double);
        fprintf(stderr, "eplb-cl %s\n", eplb_version_string());
        if (m.samples > 1)
            fprintf(stderr, "  input:        %s (%d samples of %d layers x "
                    "%d experts, oldest first)\n", source, m.samples,
                    shape.layers, shape.experts);
        else
            fprintf(stderr, "  input:        %s (%d layers x %d experts)\n",
                    source, shape.layers, shape.experts);
        if (zero_layers)
            fprintf(stderr, "  zero layers:  %d all-zero (dense) layer%s kept "
                    "in the plan, each counted as balanced\n", zero_layers,
                    zero_layers == 1 ? "" : "s");
        fprintf(stderr, "  config:       P=%d G=%d N=%d M=%d, policy %s, %d "
                "candidates, %d swap rounds, seed %llu\n",
                shape.num_replicas, shape.num_groups, shape.num_nodes,
                shape.num_gpus, policies[policy], opts.candidates,
                opts.swap_rounds, (unsigned long long)opts.seed);
        fprintf(stderr, "  backend:      %s on %s\n", eplb_context_backend(ctx),
                eplb_context_device(ctx));
        if (mask) {
            int live = 0;
            for (int g = 0; g < shape.num_gpus; g++)
                live += mask[g] != 0;
            fprintf(stderr, "  GPUs:         %d of %d usable (dead GPUs' "
                    "slots hold -1)\n", live, shape.num_gpus);
        }
        if (*eplb_context_note(ctx))
            fprintf(stderr, "  note:         %s\n", eplb_context_note(ctx));
        fprintf(stderr, "  time:         context %.0f us, first call %.0f us",
                t_create, times[0]);
        if (repeat > 0)
            fprintf(stderr, ", warm median %.1f us over %ld calls",
                    times[1 + repeat / 2], repeat);
        fputc('\n', stderr);
        eplb_profile prof = {.struct_size = sizeof prof};
        if (eplb_context_profile(ctx, &prof) == EPLB_OK)
            fprintf(stderr, "  device time:  upload %.1f us, groups %.1f us, "
                    "slots %.1f us, finish %.1f us, download %.1f us\n", prof.upload_us, prof.groups_us,
                    prof.slots_us, prof.finish_us, prof.download_us);
        if (windowed) {
            int used[8] = {0};
            for (int l = 0; l < shape.layers; l++)
                if (fchoice[l] >= 0 && fchoice[l] < 8)
                    used[fchoice[l]]++;
            int mode = req.forecast ? (int)req.forecast
                                    : (int)EPLB_FORECAST_DEFAULT;
            /* the lookback: what the choice scored (0: its default) */
            int lookback = req.forecast_lookback
                               ? (int)req.forecast_lookback
                           : mode == EPLB_FORECAST_ROBUST
                               ? EPLB_ROBUST_LOOKBACK_DEFAULT
                               : EPLB_ADAPTIVE_LOOKBACK_DEFAULT;
            fprintf(stderr, "  forecast:     %s of %d sample%s (k %d, alpha "
                    "%g", forecasts[mode], m.samples,
                    m.samples == 1 ? "" : "s", (int)req.forecast_k,
                    (double)req.forecast_alpha);
            if (mode == EPLB_FORECAST_ADAPTIVE ||
                mode == EPLB_FORECAST_ROBUST)
                fprintf(stderr, ", lookback %d", lookback);
            fprintf(stderr, "); layers from");
            for (int k = EPLB_FORECAST_LAST; k <= EPLB_FORECAST_KEPT; k++)
                if (k <= EPLB_FORECAST_TREND || k == EPLB_FORECAST_KEPT)
                    fprintf(stderr, " %s %d", k == EPLB_FORECAST_KEPT
                            ? "kept (current placement)" : forecasts[k],
                            used[k]);
            fputc('\n', stderr);
        }
        fprintf(stderr, "  balancedness: before %.4f (experts in order, no "
                "replicas), after %.4f%s\n", before.balancedness_mean,
                after.balancedness_mean,
                windowed ? " (on the forecast)" : "");
        if (next_path) {
            eplb_quality nx = {.struct_size = sizeof nx};
            if (eplb_plan_quality(&shape, opts.policy, next.data, phy2log,
                                  logcnt, &nx) == EPLB_OK)
                fprintf(stderr, "  next window:  balancedness %.4f on %s "
                        "(worst layer %d at %.4f)\n", nx.balancedness_mean,
                        next_path, nx.worst_layer, nx.balancedness_worst);
        }
        fprintf(stderr, "  worst layer:  %d at %.4f\n", after.worst_layer,
                after.balancedness_worst);
        fprintf(stderr, "  bound:        %.4f%s; plan reaches %.1f%% of it\n",
                after.bound_mean, after.bound_is_weak ? " (weak: group "
                "constraint dropped)" : "", 100.0 * after.share_of_bound);
        if (current) {
            long copies = 0, slots = (long)shape.layers * shape.num_replicas;
            eplb_quality stale = {.struct_size = sizeof stale};
            eplb_copies(&shape, current, phy2log, NULL, &copies);
            long changed = eplb_migration(&shape, current, phy2log);
            fprintf(stderr, "  migration:    %ld expert copies (%.2f%% of %ld "
                    "slots), %ld slots changed, tolerance %g\n", copies,
                    100.0 * copies / slots, slots, changed,
                    (double)opts.tolerance);
            if (eplb_plan_quality(&shape, opts.policy, planned, current,
                                  current_cnt, &stale) == EPLB_OK)
                fprintf(stderr, "  not moving:   the current plan is %.4f "
                        "balanced on these loads (worst layer %d at %.4f)\n",
                        stale.balancedness_mean, stale.worst_layer,
                        stale.balancedness_worst);
        }
        if (migration_opt)
            fprintf(stderr, "  schedule:     %d stage%s, %lld copies, "
                    "objective %.6g -> %.6g (sum over layers of the largest "
                    "GPU load)\n", (int)sched.num_stages,
                    sched.num_stages == 1 ? "" : "s",
                    (long long)sched.copies, sched.objective_before,
                    sched.objective_after);
        if (output)
            fprintf(stderr, "  plan:         %s\n", output);
        if (stages_path)
            fprintf(stderr, "  stages:       %s\n", stages_path);
    }
    status = 0;
done:
    eplb_context_destroy(ctx);
    free(phy2log);
    free(log2phy);
    free(logcnt);
    free(current);
    free(current_cnt);
    free(times);
    free(mask);
    free(sched.stage_of_slot);
    free(sched.stages);
    free(sched.layer_gain);
    free(sched.layer_copies);
    free(sched.layer_order);
    free(fchoice);
    if (planned != m.data)
        free(planned);
    load_matrix_free(&next);
    load_matrix_free(&m);
    return status;
}
