/* Kernel sources embedded at build time (lib/opencl/sources.c is generated
 * from the cl/ kernel files). */
#ifndef EPLB_OPENCL_SOURCES_H
#define EPLB_OPENCL_SOURCES_H

#include <stddef.h>

struct ocl_embedded_source {
    const char *name; /* file name in cl/, e.g. "eplb_pack.cl" */
    const char *text;
    size_t length;
};

/* Terminated by an entry with name NULL. */
extern const struct ocl_embedded_source ocl_embedded_sources[];

#endif
