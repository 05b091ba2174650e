/* The library's one clock: monotonic, in microseconds. */
#include "internal.h"

#include <time.h>

double eplbi_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}
