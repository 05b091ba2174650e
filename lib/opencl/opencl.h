/* Private declarations of the OpenCL backend. */
#ifndef EPLB_OPENCL_H
#define EPLB_OPENCL_H

#include "config.h"
#include "internal.h"

#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

/* clGetPlatformIDs' answer when no ICD is installed (cl_khr_icd). */
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

#define EPLB_NAME_MAX 256

typedef struct ocl_device_choice {
    cl_platform_id platform;
    cl_device_id device;
    cl_device_type type;
    char platform_name[EPLB_NAME_MAX];
    char platform_version[EPLB_NAME_MAX];
    char device_name[EPLB_NAME_MAX];
    char driver_version[EPLB_NAME_MAX];
    int correctly_rounded_divide; /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT */
    size_t max_work_group;
    cl_ulong local_mem;
    cl_ulong max_alloc;
} ocl_device_choice;

/* Picks a device by the options, then the environment filters, then the
 * default order (GPU, accelerator, CPU). note gets a line on fallbacks. */
int ocl_device_choose(const eplb_options *opts, const eplb_env *env,
                      ocl_device_choice *out, char *note, size_t note_len);

/* Name of an OpenCL error code, e.g. "CL_OUT_OF_RESOURCES". */
const char *ocl_error_name(cl_int err);

/* Builds a program from the named kernel files (embedded, or read from
 * env->kernel_dir), using the on-disk binary cache in env->cache_dir. kernels: the
 * ';'-separated kernel names the caller will create; a cached binary
 * that lacks one is rebuilt from source. */
int ocl_program_build(cl_context ctx, const ocl_device_choice *dev,
                      const eplb_env *env, const char *const *files, int nfiles,
                      const char *options, const char *kernels,
                      cl_program *out);

/* ---- the launch choice (launch.c) ------------------------------------ */

/* A work-group's state: what the kernels lay it out by (candidates, the
 * row area's words) and its size, as they carve it (cl/eplb_scratch.h). */
typedef struct ocl_layout {
    int cands;
    size_t row_words, bytes;
    size_t local_extra; /* local memory beside the scratch, in bytes */
    int split;          /* many packs on a GPU: several work-items each */
} ocl_layout;

/* How a plan of one shape runs on one device: the kernels' build-time
 * ways, the work-group width, and where each kernel keeps its state. */
typedef struct ocl_launch {
    int lanes_groups, lanes_slots; /* CAND_LANES of each program */
    int split;                     /* PACK_SPLIT_OK */
    int parts;                     /* CAND_PARTS of the slots program */
    size_t wg;                     /* work-items a group */
    int finish_in_slots;           /* the slots kernel finishes layers */
    int loads_in_place;            /* the loads read where the caller has them */
    ocl_layout groups, slots;      /* each program's work-group state */
    int local_groups, local_slots; /* that state in local memory */
} ocl_launch;

/* The launch for dims d and cands candidates on device dev under the
 * tuning t. wg_cap: the widest group to consider (0: no cap), for a
 * retry when the compiled kernels need narrower groups. */
void ocl_launch_choose(const ocl_device_choice *dev, const eplb_tuning *t,
                       const plan_dims *d, int cands, int use_clblast,
                       size_t wg_cap, ocl_launch *l);

/* One line naming the chosen ways, for eplb_context_note(). */
void ocl_launch_describe(const ocl_launch *l, char *buf, size_t len);

#endif
