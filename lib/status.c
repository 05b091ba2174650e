/* Status codes, their messages, and the per-thread detail of the last
 * failure (in the manner of libgit2's git_error_last). */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Long enough for an OpenCL build log of a broken kernel. */
#define EPLB_ERROR_DETAIL_MAX 16384

static _Thread_local char last_error[EPLB_ERROR_DETAIL_MAX];

const char *eplb_strerror(int status)
{
    switch (status) {
#define EPLB_STATUS_CASE_(name, value, msg) \
    case value:                             \
        return msg;
        EPLB_STATUS_MAP(EPLB_STATUS_CASE_)
#undef EPLB_STATUS_CASE_
    }
    return "unknown status code";
}

const char *eplb_last_error(void)
{
    return last_error;
}

void eplbi_clear_error(void)
{
    last_error[0] = '\0';
}

int eplbi_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

static uint32_t out_struct_size(const void *out)
{
    uint32_t size;
    memcpy(&size, out, sizeof size);
    return size;
}

int out_struct_check(const void *out, size_t min, size_t full,
                     const char *type)
{
    uint32_t size = out_struct_size(out);
    if (size < min || size > full)
        return eplbi_fail(EPLB_ERR_BAD_OPTION,
                          "out->struct_size is %lu: set it to sizeof(%s) "
                          "(%lu in this library; at least %lu) before the "
                          "call", (unsigned long)size, type,
                          (unsigned long)full, (unsigned long)min);
    return EPLB_OK;
}

void out_struct_write(void *out, const void *src)
{
    uint32_t size = out_struct_size(out);
    memcpy((char *)out + sizeof size, (const char *)src + sizeof size,
           size - sizeof size);
}

const char *eplb_version_string(void)
{
    return PACKAGE_VERSION;
}

int eplb_version_number(void)
{
    return EPLB_VERSION_NUMBER;
}
