/* libFuzzer target: the load-file reader (JSON and CSV) on any bytes.
 * Beyond memory errors (the sanitizers' part), a matrix it accepts must
 * be one the library accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eplb_cl.h"
#include "loadfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_matrix m;
    char err[512];
    if (load_matrix_parse((const char *)data, size, "fuzz", &m, err,
                          sizeof err) != 0) {
        /* Every error names the place. */
        if (strncmp(err, "fuzz:", 5) != 0)
            abort();
        return 0;
    }
    if (m.layers < 1 || m.experts < 1 || !m.data)
        abort();
    /* The shape with one slot per expert: the loads alone decide. */
    eplb_shape s = {m.layers, m.experts, m.experts, 1, 1, 1};
    if (eplb_check_input(&s, m.data) != EPLB_OK)
        abort();
    load_matrix_drop_zero_layers(&m);
    load_matrix_free(&m);
    return 0;
}
