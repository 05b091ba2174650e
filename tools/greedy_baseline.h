/* The migration figures' greedy baseline (tools/greedy_baseline.c). */
#ifndef EPLB_GREEDY_BASELINE_H
#define EPLB_GREEDY_BASELINE_H

#include <stdint.h>

#include "eplb_cl.h"

/* The objective (sum over layers of the largest GPU load of w [L][E])
 * that the greedy reaches from the plan cur [L][P] at `budget` copies per
 * GPU, each copy counted: a slot that took a copy may take another, or,
 * with `once`, not (each slot rewritten at most once, the library's
 * schedule rule). Exits the program when memory runs out. */
double greedy_baseline_objective(const eplb_shape *s, const float *w,
                                 const int32_t *cur, int budget, int once);

#endif
