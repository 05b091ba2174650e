/* Plans as JSON: {"phy2log": [[...]], "log2phy": [[[...]]], "logcnt":
 * [[...]]}; and a re-plan's migration schedule as JSON (eplb-cl's
 * --stages file, doc/tools.md). */
#ifndef EPLB_PLANIO_H
#define EPLB_PLANIO_H

#include <stdint.h>
#include <stdio.h>

#include "eplb_cl.h"

/* 0 on success, -1 on a write error. */
int plan_write_json(FILE *f, const eplb_shape *shape, const int32_t *phy2log,
                    const int32_t *log2phy, const int32_t *logcnt);

/* Reads a plan of the given shape; -1 with "name:line:col: what" in err
 * when the text is not such a plan. The place is the offending value's
 * (or array's) in the text; a UTF-8 byte order mark is ignored, as the
 * load reader ignores it. */
int plan_parse_json(const char *text, size_t len, const char *name,
                    const eplb_shape *shape, int32_t *phy2log,
                    int32_t *log2phy, int32_t *logcnt, char *err,
                    size_t errlen);

/* Reads only a plan's phy2log [layers][num_replicas]: the "phy2log" member
 * of a plan written by plan_write_json, or a bare JSON array of arrays
 * (-1 for an empty slot). -1 with "name:line:col: what" in err. */
int plan_parse_phy2log(const char *text, size_t len, const char *name,
                       const eplb_shape *shape, int32_t *phy2log, char *err,
                       size_t errlen);

/* Checks a phy2log read by plan_parse_phy2log from the same text as the
 * library checks a current plan: ids in -1..E-1, every expert in at least
 * one slot of each layer (a group split over nodes is taken). -1 with
 * "name:line:col: what" in err, the place the offending value's (or the
 * layer's, for an expert with no slot). */
int plan_check_phy2log(const char *text, size_t len, const char *name,
                       const eplb_shape *shape, const int32_t *phy2log,
                       char *err, size_t errlen);

/* Writes the schedule the library filled for a plan of the given shape
 * (its arrays all set, stages[] holding num_stages + 1 records) as one
 * JSON object: num_stages, copies, objective_before, objective_after,
 * stages (a record per stage 0..num_stages), layer_gain, layer_copies,
 * layer_order and stage_of_slot [layers][num_replicas]. 0 on success, -1
 * on a write error, out of memory or a figure JSON cannot hold (NaN). */
int schedule_write_json(FILE *f, const eplb_shape *shape,
                        const eplb_schedule *sc);

#endif
