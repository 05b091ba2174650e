/* Private declarations of the OpenCL backend. */
#ifndef EPLB_CL_INTERNAL_H
#define EPLB_CL_INTERNAL_H

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
int ocl_device_choose(const eplb_options *opts, ocl_device_choice *out,
                      char *note, size_t note_len);

/* Name of an OpenCL error code, e.g. "CL_OUT_OF_RESOURCES". */
const char *ocl_error_name(cl_int err);

/* Builds a program from the named kernel files (embedded, or read from
 * $EPLB_CL_KERNEL_DIR), using the on-disk binary cache. kernels: the
 * ';'-separated kernel names the caller will create; a cached binary
 * that lacks one is rebuilt from source. */
int ocl_program_build(cl_context ctx, const ocl_device_choice *dev,
                      const char *const *files, int nfiles,
                      const char *options, const char *kernels,
                      cl_program *out);

#endif
