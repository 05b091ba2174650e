/* The OpenCL backend: one upload of the loads, three kernel launches, one
 * download of the plan (CPU devices read the loads in place and finish
 * each layer in the slots kernel: two launches). Programs are specialised
 * to the shape (so pack weights stay in registers) and kept, with the
 * buffers, while the shape stays the same. */
#include "opencl.h"
#include "eplb_rules.h"
#include "eplb_scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_CLBLAST
#include <clblast_c.h>
#endif

/* The narrowest work-group the kernels are built for. */
#define WG_MIN 16
#define OPTIONS_MAX 2048

struct ocl_engine {
    ocl_device_choice dev;
    eplb_env env; /* as read when the context was made */
    cl_context ctx;
    cl_command_queue q;
    char name[2 * EPLB_NAME_MAX + 4];
    /* shape-specialised programs */
    int built;
    plan_dims dims;
    int cands;
    /* the context's kernel-way overrides, and the ways chosen for the
     * programs built (lib/opencl/launch.c) */
    eplb_tuning tuning;
    ocl_launch launch;
    cl_program prog_groups, prog_slots;
    cl_kernel k_groups, k_slots, k_finish;
    /* buffers, sized for cap_layers */
    int cap_layers;
    cl_mem b_w, b_gplace, b_slot_expert, b_slot_rank, b_cnt, b_rowmax, b_out,
        b_scratch;
    /* each layer's finished slots rows, for eplb_slots' own finish on CPU
     * devices (launch.finish_in_slots; zeroed when made, and by the
     * kernel) */
    cl_mem b_done;
    /* the plan's download: pinned host memory, mapped for the engine's
     * life (b_host), and its address */
    cl_mem b_host;
    int32_t *host_out;
    /* group loads by CLBlast (use_clblast): gw = W [L*G][gs] x ones */
    int use_clblast;
    cl_mem b_gw, b_ones;
    /* profiling (the option profile) */
    int profile;
    int have_profile;
    eplb_profile last_profile;
    /* the round-trip floor's program and buffers */
    cl_program prog_floor;
    cl_kernel k_floor;
    cl_mem f_in, f_out;
    size_t f_in_bytes, f_out_bytes;
    int32_t *f_host;
};

/* The shared headers first: the kernels' rules and scratch layout are
 * the host's (cl/eplb_rules.h, cl/eplb_scratch.h). */
static const char *const groups_files[] = {"eplb_rules.h", "eplb_scratch.h",
                                           "eplb_pack.cl", "eplb_lanes.cl",
                                           "eplb_rebalance.cl"};
#define N_GROUPS_FILES ((int)(sizeof groups_files / sizeof groups_files[0]))

static int ocl_fail(cl_int err, const char *what, const ocl_engine *e)
{
    return eplbi_fail(err == CL_OUT_OF_HOST_MEMORY ? EPLB_ERR_OUT_OF_MEMORY
                                                  : EPLB_ERR_OPENCL,
                      "%s failed with %s (%d) on '%s'", what,
                      ocl_error_name(err), err, e->dev.device_name);
}

/* The command queue, with profiling events when the option asks. */
static cl_int make_queue(ocl_engine *e)
{
    cl_int err;
    e->q = clCreateCommandQueue(e->ctx, e->dev.device,
                                e->profile ? CL_QUEUE_PROFILING_ENABLE : 0,
                                &err);
    return err;
}

int ocl_engine_create(ocl_engine **out, const eplb_options *opts,
                      const eplb_env *env, const eplb_tuning *tuning,
                      char *note, size_t note_len)
{
    *out = NULL;
    ocl_engine *e = calloc(1, sizeof *e);
    if (!e)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    e->env = *env;
    e->tuning = *tuning;
    int rc = ocl_device_choose(opts, env, &e->dev, note, note_len);
    if (rc) {
        free(e);
        return rc;
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)e->dev.platform,
                                     0};
    e->ctx = clCreateContext(props, 1, &e->dev.device, NULL, NULL, &err);
    e->profile = opts->profile;
    if (err == CL_SUCCESS)
        err = make_queue(e);
    if (err != CL_SUCCESS) {
        rc = ocl_fail(err, "creating the OpenCL context and queue", e);
        ocl_engine_destroy(e);
        return rc;
    }
    e->use_clblast = opts->use_clblast;
    snprintf(e->name, sizeof e->name, "%s / %s", e->dev.platform_name,
             e->dev.device_name);
    if (!e->dev.correctly_rounded_divide) {
        size_t len = strlen(note);
        snprintf(note + len, note_len - len,
                 "%sdevice '%s' lacks correctly rounded division: its plans "
                 "may differ from other devices' in rare ties",
                 len ? "; " : "", e->dev.device_name);
    }
    *out = e;
    return EPLB_OK;
}

static void release_buffers(ocl_engine *e)
{
    if (e->host_out) {
        clEnqueueUnmapMemObject(e->q, e->b_host, e->host_out, 0, NULL, NULL);
        clFinish(e->q);
        e->host_out = NULL;
    }
    cl_mem *bufs[] = {&e->b_w,      &e->b_gplace, &e->b_slot_expert,
                      &e->b_slot_rank, &e->b_cnt, &e->b_rowmax,
                      &e->b_out,    &e->b_scratch, &e->b_gw,
                      &e->b_ones,   &e->b_host,    &e->b_done};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (*bufs[i]) {
            clReleaseMemObject(*bufs[i]);
            *bufs[i] = NULL;
        }
    e->cap_layers = 0;
}

static void release_programs(ocl_engine *e)
{
    cl_kernel ks[] = {e->k_groups, e->k_slots, e->k_finish};
    for (int i = 0; i < 3; i++)
        if (ks[i])
            clReleaseKernel(ks[i]);
    if (e->prog_groups)
        clReleaseProgram(e->prog_groups);
    if (e->prog_slots)
        clReleaseProgram(e->prog_slots);
    e->k_groups = e->k_slots = e->k_finish = NULL;
    e->prog_groups = e->prog_slots = NULL;
    e->built = 0;
}

void ocl_engine_destroy(ocl_engine *e)
{
    if (!e)
        return;
    release_buffers(e);
    release_programs(e);
    if (e->k_floor)
        clReleaseKernel(e->k_floor);
    if (e->prog_floor)
        clReleaseProgram(e->prog_floor);
    if (e->f_in)
        clReleaseMemObject(e->f_in);
    if (e->f_out)
        clReleaseMemObject(e->f_out);
    free(e->f_host);
    if (e->q)
        clReleaseCommandQueue(e->q);
    if (e->ctx)
        clReleaseContext(e->ctx);
    free(e);
}

const char *ocl_engine_device_name(const ocl_engine *e)
{
    return e->name;
}

int ocl_engine_is_cpu(const ocl_engine *e)
{
    return (e->dev.type & CL_DEVICE_TYPE_CPU) != 0;
}

int ocl_engine_configure(ocl_engine *e, const eplb_options *opts,
                         const eplb_tuning *tuning)
{
    int ways = memcmp(&e->tuning, tuning, sizeof *tuning) != 0 ||
               e->use_clblast != opts->use_clblast;
    if (ways) {
        /* programs and buffers follow the ways: made again on the next
         * call */
        release_programs(e);
        release_buffers(e);
        e->tuning = *tuning;
        e->use_clblast = opts->use_clblast;
    }
    if (e->profile != opts->profile) {
        /* the plan's host buffer is mapped through the queue */
        release_buffers(e);
        clFinish(e->q);
        clReleaseCommandQueue(e->q);
        e->q = NULL;
        e->profile = opts->profile;
        e->have_profile = 0;
        cl_int err = make_queue(e);
        if (err != CL_SUCCESS) {
            e->q = NULL;
            return ocl_fail(err, "clCreateCommandQueue", e);
        }
    }
    return EPLB_OK;
}

int ocl_engine_ways(const ocl_engine *e, char *buf, size_t len)
{
    if (!e->built)
        return 0;
    ocl_launch_describe(&e->launch, buf, len);
    return 1;
}

static void program_options(char *buf, size_t len, const ocl_engine *e,
                            const plan_dims *d, int slots)
{
    const ocl_launch *l = &e->launch;
    const ocl_layout *lo = slots ? &l->slots : &l->groups;
    int n = snprintf(buf, len,
             "-cl-std=CL1.2 %s -DWG=%zu -DSCRATCH_LOCAL=%d -DPACK_N=%d "
             "-DPACK_M=%d -DPACK_CANDS=%d -DROW_WORDS=%zu -DE_=%d -DP_=%d "
             "-DG_=%d -DGS_=%d -DGPN_=%d -DN_=%d -DLPN_=%d -DPPN_=%d "
             "-DGN_=%d -DPPG_=%d -DGROUP_LOADS_GIVEN=%d "
             "-DCAND_LANES=%d -DPACK_SPLIT_OK=%d -DCAND_PARTS=%d "
             "-DFINISH_IN_SLOTS=%d%s",
             e->dev.correctly_rounded_divide
                 ? "-cl-fp32-correctly-rounded-divide-sqrt" : "",
             l->wg, slots ? l->local_slots : l->local_groups,
             slots ? d->ppn : d->G, slots ? d->gn : d->N,
             lo->cands, lo->row_words, d->E, d->P, d->G,
             d->gs, d->gpn, d->N, d->lpn, d->ppn, d->gn, d->ppg,
             e->use_clblast, slots ? l->lanes_slots : l->lanes_groups,
             l->split, slots ? l->parts : 1, l->finish_in_slots,
             slots ? " -DEPLB_SLOTS_PROGRAM" : "");
    /* EPLB_CL_BUILD_OPTIONS (read when the context was made): extra
     * compiler options, for kernel work (e.g. -cl-nv-verbose); they are
     * part of the cache key. */
    const char *extra = e->env.build_options;
    if (*extra && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " %s", extra);
}

static int make_kernel(ocl_engine *e, cl_program p, const char *name,
                       cl_kernel *k, size_t *max_wg)
{
    cl_int err;
    *k = clCreateKernel(p, name, &err);
    if (err != CL_SUCCESS)
        return ocl_fail(err, "clCreateKernel", e);
    size_t kwg = 0;
    clGetKernelWorkGroupInfo(*k, e->dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                             sizeof kwg, &kwg, NULL);
    if (kwg < *max_wg)
        *max_wg = kwg;
    return EPLB_OK;
}

static int build_for(ocl_engine *e, const plan_dims *d, int cands)
{
    release_programs(e);
    release_buffers(e);
    if (d->ppn > 65535 || d->G > 65535)
        return eplbi_fail(EPLB_ERR_DEVICE_LIMIT,
                          "%d slots per node exceed the kernels' 16-bit item "
                          "indices: use more nodes or the reference backend",
                          d->ppn);
    size_t wg_cap = 0; /* no cap until the compiled kernels ask for one */
    for (;;) {
        ocl_launch_choose(&e->dev, &e->tuning, d, cands, e->use_clblast,
                          wg_cap, &e->launch);
        size_t wg = e->launch.wg;
        char opts[OPTIONS_MAX];
        program_options(opts, sizeof opts, e, d, 0);
        int rc = ocl_program_build(e->ctx, &e->dev, &e->env, groups_files,
                                   N_GROUPS_FILES, opts, "eplb_groups",
                                   &e->prog_groups);
        if (rc)
            return rc;
        program_options(opts, sizeof opts, e, d, 1);
        rc = ocl_program_build(e->ctx, &e->dev, &e->env, groups_files,
                               N_GROUPS_FILES, opts, "eplb_slots;eplb_finish",
                               &e->prog_slots);
        if (rc)
            return rc;
        size_t max_wg = wg;
        rc = make_kernel(e, e->prog_groups, "eplb_groups", &e->k_groups,
                         &max_wg);
        if (!rc)
            rc = make_kernel(e, e->prog_slots, "eplb_slots", &e->k_slots,
                             &max_wg);
        if (!rc)
            rc = make_kernel(e, e->prog_slots, "eplb_finish", &e->k_finish,
                             &max_wg);
        if (rc)
            return rc;
        if (max_wg >= wg)
            break;
        /* The compiled kernels need a narrower group on this device. */
        release_programs(e);
        if (wg <= WG_MIN)
            return eplbi_fail(EPLB_ERR_DEVICE_LIMIT,
                              "device '%s' runs these kernels only in groups "
                              "of %zu work-items", e->dev.device_name, max_wg);
        wg_cap = wg / 2;
    }
    e->dims = *d;
    e->cands = cands;
    e->built = 1;
    return EPLB_OK;
}

/* What eplb_finish writes and the host reads back, one buffer:
 * phy2log [L][P] ++ each slot's replica rank [L][P] ++ logcnt [L][E].
 * log2phy, [L][E][maxrep] and mostly -1, is made from it on the host:
 * writing those 2 MB (DeepSeek's shape) in host memory is cheaper than
 * carrying them over the bus. */
static size_t out_elements(const plan_dims *d)
{
    return (size_t)d->L * (2 * (size_t)d->P + (size_t)d->E);
}

/* A whole plan as the caller receives it: the floor job's download. */
static size_t plan_elements(const plan_dims *d)
{
    return (size_t)d->L * d->P + (size_t)d->L * d->E * d->maxrep +
           (size_t)d->L * d->E;
}

/* The all-ones vector the group-load GEMV multiplies by, and a zeroed
 * result (CLBlast computes beta * y even for beta 0: y must hold no NaN). */
static int clblast_buffers_init(ocl_engine *e, const plan_dims *d)
{
    float *ones = malloc((size_t)d->gs * sizeof(float));
    if (!ones)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int j = 0; j < d->gs; j++)
        ones[j] = 1.0f;
    cl_int err = clEnqueueWriteBuffer(e->q, e->b_ones, CL_TRUE, 0,
                                      (size_t)d->gs * sizeof(float), ones, 0,
                                      NULL, NULL);
    free(ones);
    cl_float zero = 0.0f;
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(e->q, e->b_gw, &zero, sizeof zero, 0,
                                  (size_t)d->L * d->G * sizeof(float), 0,
                                  NULL, NULL);
    return err == CL_SUCCESS ? EPLB_OK
                             : ocl_fail(err, "initialising CLBlast's buffers", e);
}

static int reserve_buffers(ocl_engine *e, const plan_dims *d)
{
    if (e->cap_layers >= d->L)
        return EPLB_OK;
    release_buffers(e);
    size_t L = (size_t)d->L;
    /* eplb_slots' variants: the reference and the candidates' parts */
    const ocl_launch *l = &e->launch;
    size_t sv = 1 + (size_t)l->parts;
    size_t scratch = 64;
    if (!l->local_groups && L * l->groups.bytes > scratch)
        scratch = L * l->groups.bytes;
    if (!l->local_slots && sv * L * d->N * l->slots.bytes > scratch)
        scratch = sv * L * d->N * l->slots.bytes;
    struct { cl_mem *buf; size_t bytes; cl_mem_flags flags; } want[] = {
        {&e->b_w, L * d->E * sizeof(float), CL_MEM_READ_ONLY},
        {&e->b_gplace, 2 * L * d->G * 2 * sizeof(int), CL_MEM_READ_WRITE},
        {&e->b_slot_expert, sv * L * d->P * sizeof(int), CL_MEM_READ_WRITE},
        {&e->b_slot_rank, sv * L * d->P * sizeof(int), CL_MEM_READ_WRITE},
        {&e->b_cnt, sv * L * d->E * sizeof(int), CL_MEM_READ_WRITE},
        {&e->b_rowmax, sv * L * d->N * sizeof(float), CL_MEM_READ_WRITE},
        {&e->b_out, out_elements(d) * sizeof(int), CL_MEM_WRITE_ONLY},
        {&e->b_host, out_elements(d) * sizeof(int), CL_MEM_ALLOC_HOST_PTR},
        {&e->b_scratch, scratch, CL_MEM_READ_WRITE},
        {&e->b_done, L * sizeof(int), CL_MEM_READ_WRITE},
        /* CLBlast's group loads only: the last two */
        {&e->b_gw, L * d->G * sizeof(float), CL_MEM_READ_WRITE},
        {&e->b_ones, (size_t)d->gs * sizeof(float), CL_MEM_READ_ONLY},
    };
    size_t n_want = sizeof want / sizeof want[0] - (e->use_clblast ? 0 : 2);
    for (size_t i = 0; i < n_want; i++) {
        if (want[i].bytes > e->dev.max_alloc) {
            release_buffers(e);
            return eplbi_fail(EPLB_ERR_DEVICE_LIMIT,
                              "a %zu-byte buffer exceeds device '%s''s "
                              "largest allocation (%llu bytes): split the "
                              "layers into several calls", want[i].bytes,
                              e->dev.device_name,
                              (unsigned long long)e->dev.max_alloc);
        }
        cl_int err;
        *want[i].buf = clCreateBuffer(e->ctx, want[i].flags, want[i].bytes,
                                      NULL, &err);
        if (err != CL_SUCCESS) {
            release_buffers(e);
            return ocl_fail(err, "clCreateBuffer", e);
        }
    }
    cl_int err, zero = 0;
    err = clEnqueueFillBuffer(e->q, e->b_done, &zero, sizeof zero, 0,
                              L * sizeof(int), 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        release_buffers(e);
        return ocl_fail(err, "clEnqueueFillBuffer (row counts)", e);
    }
    e->host_out = clEnqueueMapBuffer(e->q, e->b_host, CL_TRUE, CL_MAP_WRITE,
                                     0, out_elements(d) * sizeof(int32_t), 0,
                                     NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        e->host_out = NULL;
        release_buffers(e);
        return ocl_fail(err, "mapping the plan's host buffer", e);
    }
    if (e->use_clblast) {
        int rc = clblast_buffers_init(e, d);
        if (rc) {
            release_buffers(e);
            return rc;
        }
    }
    e->cap_layers = d->L;
    return EPLB_OK;
}

static int same_shape(const plan_dims *a, const plan_dims *b)
{
    return a->E == b->E && a->P == b->P && a->G == b->G && a->N == b->N &&
           a->M == b->M;
}

#define SET_ARG(k, i, v) err |= clSetKernelArg(k, i, sizeof(v), &(v))

int ocl_engine_rebalance(ocl_engine *e, const plan_dims *d,
                         const pack_params *pp, const float *weight,
                         int32_t *phy2log, int32_t *log2phy, int32_t *logcnt,
                         eplbi_threads *threads)
{
    int rc;
    if (!e->built || !same_shape(&e->dims, d) || e->cands != pp->candidates) {
        rc = build_for(e, d, pp->candidates);
        if (rc)
            return rc;
    }
    rc = reserve_buffers(e, d);
    if (rc)
        return rc;
    cl_int layers = d->L, cands = pp->candidates, rounds = pp->swap_rounds;
    cl_float noise = pp->noise;
    cl_uint seed_lo = (cl_uint)pp->seed, seed_hi = (cl_uint)(pp->seed >> 32);
    cl_int err = 0;
    cl_mem loads = e->b_w;
    if (e->launch.loads_in_place) {
        /* read-only: the kernels never write the caller's loads */
        loads = clCreateBuffer(e->ctx, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR,
                               (size_t)d->L * d->E * sizeof(float),
                               (void *)weight, &err);
        if (err != CL_SUCCESS)
            return ocl_fail(err, "clCreateBuffer (the loads in place)", e);
    }
    SET_ARG(e->k_groups, 0, loads);
    SET_ARG(e->k_groups, 1, layers);
    SET_ARG(e->k_groups, 2, cands);
    SET_ARG(e->k_groups, 3, rounds);
    SET_ARG(e->k_groups, 4, noise);
    SET_ARG(e->k_groups, 5, seed_lo);
    SET_ARG(e->k_groups, 6, seed_hi);
    SET_ARG(e->k_groups, 7, e->b_gplace);
    SET_ARG(e->k_groups, 8, e->b_scratch);
    /* unread unless built with GROUP_LOADS_GIVEN, but must be a buffer */
    cl_mem gw_arg = e->use_clblast ? e->b_gw : e->b_w;
    SET_ARG(e->k_groups, 9, gw_arg);
    SET_ARG(e->k_slots, 0, loads);
    SET_ARG(e->k_slots, 1, layers);
    SET_ARG(e->k_slots, 2, cands);
    SET_ARG(e->k_slots, 3, rounds);
    SET_ARG(e->k_slots, 4, noise);
    SET_ARG(e->k_slots, 5, seed_lo);
    SET_ARG(e->k_slots, 6, seed_hi);
    SET_ARG(e->k_slots, 7, e->b_gplace);
    SET_ARG(e->k_slots, 8, e->b_slot_expert);
    SET_ARG(e->k_slots, 9, e->b_slot_rank);
    SET_ARG(e->k_slots, 10, e->b_cnt);
    SET_ARG(e->k_slots, 11, e->b_rowmax);
    SET_ARG(e->k_slots, 12, e->b_scratch);
    SET_ARG(e->k_slots, 13, e->b_out);
    SET_ARG(e->k_slots, 14, e->b_done);
    SET_ARG(e->k_finish, 0, layers);
    SET_ARG(e->k_finish, 1, e->b_slot_expert);
    SET_ARG(e->k_finish, 2, e->b_slot_rank);
    SET_ARG(e->k_finish, 3, e->b_cnt);
    SET_ARG(e->k_finish, 4, e->b_rowmax);
    SET_ARG(e->k_finish, 5, e->b_out);
    if (err != CL_SUCCESS) {
        if (loads != e->b_w)
            clReleaseMemObject(loads);
        return ocl_fail(err, "clSetKernelArg", e);
    }
    size_t local = e->launch.wg;
    size_t g_layers = (size_t)d->L * local;
    size_t g_rows = (1 + (size_t)e->launch.parts) * d->L * d->N * local;
    cl_event ev[5] = {NULL, NULL, NULL, NULL, NULL};
#define EV(i) (e->profile ? &ev[i] : NULL)
    if (!e->launch.loads_in_place)
        err = clEnqueueWriteBuffer(e->q, e->b_w, CL_FALSE, 0,
                                   (size_t)d->L * d->E * sizeof(float),
                                   weight, 0, NULL, EV(0));
#ifdef HAVE_CLBLAST
    if (err == CL_SUCCESS && e->use_clblast) {
        CLBlastStatusCode st = CLBlastSgemv(
            CLBlastLayoutRowMajor, CLBlastTransposeNo, (size_t)d->L * d->G,
            (size_t)d->gs, 1.0f, e->b_w, 0, (size_t)d->gs, e->b_ones, 0, 1,
            0.0f, e->b_gw, 0, 1, &e->q, NULL);
        if (st != CLBlastSuccess) {
            clFinish(e->q);
            return eplbi_fail(EPLB_ERR_OPENCL,
                              "CLBlastSgemv (group loads) failed with status "
                              "%d on '%s': set use_clblast to 0",
                              (int)st, e->dev.device_name);
        }
    }
#endif
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(e->q, e->k_groups, 1, NULL, &g_layers,
                                     &local, 0, NULL, EV(1));
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(e->q, e->k_slots, 1, NULL, &g_rows,
                                     &local, 0, NULL, EV(2));
    if (err == CL_SUCCESS && !e->launch.finish_in_slots)
        err = clEnqueueNDRangeKernel(e->q, e->k_finish, 1, NULL, &g_layers,
                                     &local, 0, NULL, EV(3));
    /* The plan goes straight into the caller's arrays: every enqueue
     * above succeeded, so these reads only run after the kernels did. */
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(e->q, e->b_out, CL_TRUE, 0,
                                  out_elements(d) * sizeof(int32_t),
                                  e->host_out, 0, NULL, EV(4));
#undef EV
    if (err != CL_SUCCESS) {
        clFinish(e->q);
        if (loads != e->b_w)
            clReleaseMemObject(loads);
        for (int i = 0; i < 5; i++)
            if (ev[i])
                clReleaseEvent(ev[i]);
        /* a slots launch cut short may leave a layer's row count above 0,
         * which the next call's last work-group would then miss: the next
         * call makes the buffers (and zeroed counts) anew */
        rc = ocl_fail(err, "running the rebalance kernels", e);
        release_buffers(e);
        return rc;
    }
    if (loads != e->b_w) /* the blocking read above waited for the kernels */
        clReleaseMemObject(loads);
    if (e->profile) {
        double us[5];
        for (int i = 0; i < 5; i++) {
            cl_ulong t0 = 0, t1 = 0;
            if (!ev[i]) { /* loads in place, or no finish kernel */
                us[i] = 0.0;
                continue;
            }
            clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_START,
                                    sizeof t0, &t0, NULL);
            clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_END,
                                    sizeof t1, &t1, NULL);
            us[i] = (double)(t1 - t0) / 1e3;
            clReleaseEvent(ev[i]);
        }
        e->last_profile = (eplb_profile){.upload_us = us[0],
                                         .groups_us = us[1],
                                         .slots_us = us[2],
                                         .finish_us = us[3],
                                         .download_us = us[4]};
        e->have_profile = 1;
    }
    /* Only now, with every command done, do the caller's arrays change. */
    size_t n_p2l = (size_t)d->L * d->P;
    const int32_t *rank = e->host_out + n_p2l;
    memcpy(phy2log, e->host_out, n_p2l * sizeof(int32_t));
    memcpy(logcnt, e->host_out + 2 * n_p2l,
           (size_t)d->L * d->E * sizeof(int32_t));
    if (log2phy) /* NULL: a plan the library uses inside (a re-plan's) */
        plan_fill_log2phy_layers(d, phy2log, rank, log2phy, threads);
    return EPLB_OK;
}

int ocl_engine_profile(const ocl_engine *e, eplb_profile *out)
{
    if (!e->profile || !e->have_profile)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "no profile: set the option profile to 1 (at "
                          "eplb_context_create or with "
                          "eplb_context_set_options), then plan once");
    *out = e->last_profile;
    return EPLB_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Buffers for the floor job, grown as needed. */
static int floor_reserve(ocl_engine *e, size_t in_bytes, size_t out_bytes)
{
    if (!e->k_floor) {
        static const char *const files[] = {"eplb_floor.cl"};
        int rc = ocl_program_build(e->ctx, &e->dev, &e->env, files, 1,
                                   "-cl-std=CL1.2", "eplb_floor",
                                   &e->prog_floor);
        if (rc)
            return rc;
        cl_int err;
        e->k_floor = clCreateKernel(e->prog_floor, "eplb_floor", &err);
        if (err != CL_SUCCESS)
            return ocl_fail(err, "clCreateKernel(eplb_floor)", e);
    }
    if (e->f_in_bytes >= in_bytes && e->f_out_bytes >= out_bytes)
        return EPLB_OK;
    if (e->f_in)
        clReleaseMemObject(e->f_in);
    if (e->f_out)
        clReleaseMemObject(e->f_out);
    free(e->f_host);
    e->f_in = e->f_out = NULL;
    e->f_in_bytes = e->f_out_bytes = 0;
    cl_int err;
    e->f_in = clCreateBuffer(e->ctx, CL_MEM_READ_ONLY, in_bytes, NULL, &err);
    if (err == CL_SUCCESS)
        e->f_out = clCreateBuffer(e->ctx, CL_MEM_WRITE_ONLY, out_bytes, NULL,
                                  &err);
    e->f_host = malloc(in_bytes > out_bytes ? in_bytes : out_bytes);
    if (err != CL_SUCCESS || !e->f_host)
        return err != CL_SUCCESS ? ocl_fail(err, "clCreateBuffer", e)
                                 : eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                                              "out of host memory");
    memset(e->f_host, 0, in_bytes > out_bytes ? in_bytes : out_bytes);
    e->f_in_bytes = in_bytes;
    e->f_out_bytes = out_bytes;
    return EPLB_OK;
}

int ocl_engine_floor(ocl_engine *e, const plan_dims *d, int runs,
                     double *median_us, double *p99_us)
{
    size_t n_in = (size_t)d->L * d->E, n_out = plan_elements(d);
    int rc = floor_reserve(e, n_in * sizeof(float), n_out * sizeof(int32_t));
    if (rc)
        return rc;
    double *t = malloc((size_t)runs * sizeof(double));
    if (!t)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY, "out of host memory");
    cl_uint a_in = (cl_uint)n_in, a_out = (cl_uint)n_out;
    cl_int err = 0;
    SET_ARG(e->k_floor, 0, e->f_in);
    SET_ARG(e->k_floor, 1, e->f_out);
    SET_ARG(e->k_floor, 2, a_in);
    SET_ARG(e->k_floor, 3, a_out);
    size_t local = 64, global = (n_out + local - 1) / local * local;
    for (int i = 0; i < runs && err == CL_SUCCESS; i++) {
        double t0 = eplbi_now_us();
        err = clEnqueueWriteBuffer(e->q, e->f_in, CL_FALSE, 0,
                                   n_in * sizeof(float), e->f_host, 0, NULL,
                                   NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueNDRangeKernel(e->q, e->k_floor, 1, NULL, &global,
                                         &local, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueReadBuffer(e->q, e->f_out, CL_TRUE, 0,
                                      n_out * sizeof(int32_t), e->f_host, 0,
                                      NULL, NULL);
        t[i] = eplbi_now_us() - t0;
    }
    if (err != CL_SUCCESS) {
        free(t);
        return ocl_fail(err, "the floor job", e);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    *median_us = t[runs / 2];
    if (p99_us)
        *p99_us = t[(size_t)((runs - 1) * 0.99)];
    free(t);
    return EPLB_OK;
}
