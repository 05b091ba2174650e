/* Device options are checked whatever the backend. */
#include <stdio.h>
#include <string.h>

#include "cunit_main.h"
#include "eplb_cl.h"

static int create(eplb_backend backend, const char *type)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = backend;
    o.device_type = type;
    eplb_context *ctx = NULL;
    int rc = eplb_context_create(&ctx, &o);
    eplb_context_destroy(ctx);
    return rc;
}

/* A misspelt type was taken as "no device matches" and, with backend auto,
 * silently ran the host backend. */
static void test_bad_device_type(void)
{
    const eplb_backend all[] = {EPLB_BACKEND_AUTO, EPLB_BACKEND_REFERENCE,
                                EPLB_BACKEND_OPENCL};
    for (int b = 0; b < 3; b++) {
        CU_ASSERT(create(all[b], "gpux") == EPLB_ERR_BAD_OPTION);
        CU_ASSERT(strstr(eplb_last_error(), "gpux") != NULL);
        CU_ASSERT(create(all[b], "g") == EPLB_ERR_BAD_OPTION);
    }
    /* The three names, in any case, and no filter, are accepted. */
    CU_ASSERT(create(EPLB_BACKEND_REFERENCE, "GPU") == EPLB_OK);
    CU_ASSERT(create(EPLB_BACKEND_REFERENCE, "cpu") == EPLB_OK);
    CU_ASSERT(create(EPLB_BACKEND_REFERENCE, "Accelerator") == EPLB_OK);
    CU_ASSERT(create(EPLB_BACKEND_REFERENCE, "") == EPLB_OK);
    CU_ASSERT(create(EPLB_BACKEND_AUTO, NULL) == EPLB_OK);
}

static CU_TestInfo device_tests[] = {
    {"a misspelt device_type is refused on every backend",
     test_bad_device_type},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"device options", NULL, NULL, NULL, NULL, device_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
