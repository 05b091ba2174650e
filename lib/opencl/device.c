/* Device choice: the caller's filters (options or EPLB_CL_PLATFORM,
 * EPLB_CL_DEVICE, EPLB_CL_DEVICE_TYPE), else the first GPU, then any
 * accelerator, then a CPU device. */
#include "opencl.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPLB_MAX_PLATFORMS 16
#define EPLB_MAX_DEVICES 64

const char *ocl_error_name(cl_int err)
{
    switch (err) {
#define E_(x) case x: return #x;
    E_(CL_DEVICE_NOT_FOUND) E_(CL_DEVICE_NOT_AVAILABLE)
    E_(CL_COMPILER_NOT_AVAILABLE) E_(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    E_(CL_OUT_OF_RESOURCES) E_(CL_OUT_OF_HOST_MEMORY)
    E_(CL_BUILD_PROGRAM_FAILURE) E_(CL_INVALID_VALUE)
    E_(CL_INVALID_DEVICE) E_(CL_INVALID_BINARY)
    E_(CL_INVALID_BUILD_OPTIONS) E_(CL_INVALID_PROGRAM)
    E_(CL_INVALID_KERNEL_NAME) E_(CL_INVALID_KERNEL_ARGS)
    E_(CL_INVALID_ARG_SIZE) E_(CL_INVALID_ARG_VALUE)
    E_(CL_INVALID_WORK_GROUP_SIZE) E_(CL_INVALID_WORK_ITEM_SIZE)
    E_(CL_INVALID_GLOBAL_WORK_SIZE) E_(CL_INVALID_BUFFER_SIZE)
    E_(CL_INVALID_COMMAND_QUEUE) E_(CL_INVALID_CONTEXT)
    E_(CL_INVALID_MEM_OBJECT) E_(CL_INVALID_OPERATION)
    E_(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
#undef E_
    case CL_PLATFORM_NOT_FOUND_KHR:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "an OpenCL error";
}

/* Case-insensitive substring test; an empty or NULL needle matches. */
static int contains(const char *hay, const char *needle)
{
    if (!needle || !*needle)
        return 1;
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) ==
                   tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

static int parse_type(const char *s, cl_device_type *t)
{
    if (!s || !*s)
        *t = CL_DEVICE_TYPE_ALL;
    else if (contains("gpu", s) && strlen(s) == 3)
        *t = CL_DEVICE_TYPE_GPU;
    else if (contains("cpu", s) && strlen(s) == 3)
        *t = CL_DEVICE_TYPE_CPU;
    else if (contains("accelerator", s) && strlen(s) == 11)
        *t = CL_DEVICE_TYPE_ACCELERATOR;
    else
        return -1;
    return 0;
}

static void fill_choice(cl_platform_id p, cl_device_id d, ocl_device_choice *c)
{
    memset(c, 0, sizeof *c);
    c->platform = p;
    c->device = d;
    clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof c->platform_name,
                      c->platform_name, NULL);
    clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof c->platform_version,
                      c->platform_version, NULL);
    clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof c->device_name, c->device_name,
                    NULL);
    clGetDeviceInfo(d, CL_DRIVER_VERSION, sizeof c->driver_version,
                    c->driver_version, NULL);
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof c->type, &c->type, NULL);
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    c->correctly_rounded_divide =
        (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof c->max_work_group,
                    &c->max_work_group, NULL);
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof c->local_mem,
                    &c->local_mem, NULL);
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof c->max_alloc,
                    &c->max_alloc, NULL);
}

/* Rank in the default order: GPU first, then accelerator, then CPU. */
static int type_rank(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU)
        return 0;
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return 1;
    if (t & CL_DEVICE_TYPE_CPU)
        return 2;
    return 3;
}

/* The option's filter, else the environment's as read when the context
 * was made; NULL for none. */
static const char *filter_or(const char *opt, const char *env)
{
    if (opt)
        return opt;
    return *env ? env : NULL;
}

/* Every usable device of every platform, found once per process. OpenCL
 * drivers set themselves up on the first call a process makes, and PoCL's
 * setup crashes when two threads race through it; so all of the
 * library's platform and device queries happen here, under pthread_once,
 * and later contexts only read the list. */
static struct {
    cl_int err;       /* clGetPlatformIDs' answer */
    cl_uint platforms;
    int count;        /* usable devices (available, with a compiler) */
    ocl_device_choice *devs;
} found;
static pthread_once_t found_once = PTHREAD_ONCE_INIT;

static void discover(void)
{
    cl_platform_id plats[EPLB_MAX_PLATFORMS];
    cl_uint np = 0;
    found.err = clGetPlatformIDs(EPLB_MAX_PLATFORMS, plats, &np);
    if (found.err != CL_SUCCESS)
        return;
    if (np > EPLB_MAX_PLATFORMS)
        np = EPLB_MAX_PLATFORMS;
    found.platforms = np;
    found.devs = malloc(EPLB_MAX_DEVICES * sizeof *found.devs);
    if (!found.devs) {
        found.err = CL_OUT_OF_HOST_MEMORY;
        return;
    }
    for (cl_uint i = 0; i < np; i++) {
        cl_device_id devs[EPLB_MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, EPLB_MAX_DEVICES,
                           devs, &nd) != CL_SUCCESS)
            continue;
        if (nd > EPLB_MAX_DEVICES)
            nd = EPLB_MAX_DEVICES;
        for (cl_uint j = 0; j < nd && found.count < EPLB_MAX_DEVICES; j++) {
            cl_bool avail = CL_FALSE, compiler = CL_FALSE;
            clGetDeviceInfo(devs[j], CL_DEVICE_AVAILABLE, sizeof avail,
                            &avail, NULL);
            clGetDeviceInfo(devs[j], CL_DEVICE_COMPILER_AVAILABLE,
                            sizeof compiler, &compiler, NULL);
            if (avail && compiler)
                fill_choice(plats[i], devs[j], &found.devs[found.count++]);
        }
    }
}

int ocl_device_choose(const eplb_options *opts, const eplb_env *env,
                      ocl_device_choice *out, char *note, size_t note_len)
{
    pthread_once(&found_once, discover);
    cl_int err = found.err;
    cl_uint np = found.platforms;
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && np == 0))
        return eplbi_fail(EPLB_ERR_NO_DEVICE,
                          "no OpenCL platform is installed "
                          "(clGetPlatformIDs: %s): install a driver, e.g. "
                          "pocl-opencl-icd for the CPU, or use backend "
                          "reference", ocl_error_name(err));
    if (err == CL_OUT_OF_HOST_MEMORY)
        return eplbi_fail(EPLB_ERR_OUT_OF_MEMORY,
                          "out of host memory while listing OpenCL devices");
    if (err != CL_SUCCESS)
        return eplbi_fail(EPLB_ERR_NO_DEVICE,
                          "clGetPlatformIDs failed with %s (%d)",
                          ocl_error_name(err), err);

    const char *want_plat = filter_or(opts->platform, env->platform);
    const char *want_dev = filter_or(opts->device, env->device);
    const char *want_type_s = filter_or(opts->device_type, env->device_type);
    cl_device_type want_type;
    if (parse_type(want_type_s, &want_type))
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "device type '%s' is not gpu, cpu or accelerator",
                          want_type_s);

    const ocl_device_choice *best_match = NULL, *best_any = NULL;
    char seen[1024] = "";
    for (int k = 0; k < found.count; k++) {
        const ocl_device_choice *c = &found.devs[k];
        size_t len = strlen(seen);
        snprintf(seen + len, sizeof seen - len, "%s'%s / %s'",
                 len ? ", " : "", c->platform_name, c->device_name);
        if (!best_any || type_rank(c->type) < type_rank(best_any->type))
            best_any = c;
        if (contains(c->platform_name, want_plat) &&
            contains(c->device_name, want_dev) && (c->type & want_type) &&
            (!best_match || type_rank(c->type) < type_rank(best_match->type)))
            best_match = c;
    }
    if (!best_any)
        return eplbi_fail(EPLB_ERR_NO_DEVICE,
                          "no available OpenCL device with a compiler on %u "
                          "platform(s): check the driver, or use backend "
                          "reference", np);
    if (best_match) {
        *out = *best_match;
        return EPLB_OK;
    }
    if (opts->enforce_device)
        return eplbi_fail(EPLB_ERR_NO_DEVICE,
                          "no OpenCL device matches platform '%s', device "
                          "'%s', type '%s' (devices present: %s): change the "
                          "filter or drop enforce_device",
                          want_plat ? want_plat : "*", want_dev ? want_dev : "*",
                          want_type_s ? want_type_s : "*", seen);
    snprintf(note, note_len,
             "no OpenCL device matches platform '%s', device '%s', type "
             "'%s'; using '%s / %s' instead",
             want_plat ? want_plat : "*", want_dev ? want_dev : "*",
             want_type_s ? want_type_s : "*", best_any->platform_name,
             best_any->device_name);
    *out = *best_any;
    return EPLB_OK;
}
