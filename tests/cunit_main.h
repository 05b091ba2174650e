/* The main() every test binary shares: registers the suites of the file's
 * `suites` table, runs them verbosely, and exits non-zero when any
 * assertion, test or suite setup failed. */
#ifndef EPLB_CUNIT_MAIN_H
#define EPLB_CUNIT_MAIN_H

#include <CUnit/Basic.h>
#include <stdio.h>

static int run_suites(CU_SuiteInfo *suites)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    if (CU_register_suites(suites) != CUE_SUCCESS) {
        fprintf(stderr, "suite registration failed: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    /* Failure records count failed assertions and failed suite setups
     * alike; tests_failed alone would miss the latter. */
    unsigned failures = CU_get_number_of_failure_records();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}

#endif
