/* libFuzzer target: the plan reader. The first byte picks a shape, the
 * rest is the text; a plan it accepts round-trips through the writer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb_cl.h"
#include "planio.h"

static const eplb_shape shapes[] = {
    {1, 2, 2, 1, 1, 1}, {2, 4, 6, 2, 1, 2}, {1, 3, 4, 1, 1, 2}};

#define MAX_ELEMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const eplb_shape *s = &shapes[data[0] % 3];
    int32_t p2l[MAX_ELEMS], l2p[MAX_ELEMS], cnt[MAX_ELEMS];
    char err[512];
    const char *text = (const char *)data + 1;
    if (plan_parse_json(text, size - 1, "fuzz", s, p2l, l2p, cnt, err,
                        sizeof err) != 0) {
        if (strncmp(err, "fuzz:", 5) != 0)
            abort();
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return 0;
    plan_write_json(f, s, p2l, l2p, cnt);
    fclose(f);
    int32_t q2l[MAX_ELEMS], q2p[MAX_ELEMS], qcnt[MAX_ELEMS];
    if (plan_parse_json(buf, len, "again", s, q2l, q2p, qcnt, err,
                        sizeof err) != 0)
        abort();
    size_t n_p2l, n_l2p, n_cnt;
    eplb_plan_sizes(s, &n_p2l, &n_l2p, &n_cnt);
    if (memcmp(p2l, q2l, n_p2l * 4) || memcmp(l2p, q2p, n_l2p * 4) ||
        memcmp(cnt, qcnt, n_cnt * 4))
        abort();
    free(buf);
    return 0;
}
