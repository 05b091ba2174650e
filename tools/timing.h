/* Wall-clock timing the tool and the benchmark share: a monotonic clock
 * in microseconds, and the comparison that sorts samples for a median. */
#ifndef EPLB_TIMING_H
#define EPLB_TIMING_H

/* CLOCK_MONOTONIC, in microseconds. */
double timing_now_us(void);

/* qsort comparison of two doubles, ascending. */
int timing_cmp_double(const void *a, const void *b);

#endif
