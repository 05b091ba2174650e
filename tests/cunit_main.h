/* The main() every test binary shares: registers the suites of the file's
 * `suites` table, runs them verbosely, and exits non-zero when any
 * assertion, test or suite setup failed.
 *
 * Tests named "real loads: ..." need the recorded workloads. Each test
 * file is built twice: as is, it runs every other test; built with
 * EPLB_REAL_LOADS, it runs only those, and exits 77 (Automake's SKIP)
 * when the workloads are absent, so that a missing folder shows as
 * skipped rather than passed.
 *
 * Tests named "full: ..." are the long matrix of kernel ways (every way
 * compiles its own programs, slow on a CPU device). Built with
 * EPLB_FULL_MATRIX, a file runs only those; `make check-full` runs those
 * binaries, `make check` does not. */
#ifndef EPLB_CUNIT_MAIN_H
#define EPLB_CUNIT_MAIN_H

#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#define REAL_LOADS_PREFIX "real loads: "
#define FULL_MATRIX_PREFIX "full: "
#define EXIT_SKIP 77

/* A test's kind, from its name; a binary runs the tests of one kind. */
enum { TEST_KIND_FAST, TEST_KIND_REAL, TEST_KIND_FULL };

#ifdef EPLB_REAL_LOADS
#include "testutil.h"
#define WANT_KIND TEST_KIND_REAL
#elif defined EPLB_FULL_MATRIX
#define WANT_KIND TEST_KIND_FULL
#else
#define WANT_KIND TEST_KIND_FAST
#endif

static int test_kind(const char *name)
{
    if (strncmp(name, REAL_LOADS_PREFIX, strlen(REAL_LOADS_PREFIX)) == 0)
        return TEST_KIND_REAL;
    if (strncmp(name, FULL_MATRIX_PREFIX, strlen(FULL_MATRIX_PREFIX)) == 0)
        return TEST_KIND_FULL;
    return TEST_KIND_FAST;
}

/* Leaves active the tests of this binary's kind; returns how many. */
static int select_tests(void)
{
    int active = 0;
    for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext) {
        int in_suite = 0;
        for (CU_pTest t = s->pTest; t; t = t->pNext) {
            int want = test_kind(t->pName) == WANT_KIND;
            CU_set_test_active(t, want ? CU_TRUE : CU_FALSE);
            in_suite += want;
        }
        /* A suite with nothing to run is not set up either. */
        CU_set_suite_active(s, in_suite ? CU_TRUE : CU_FALSE);
        active += in_suite;
    }
    CU_set_fail_on_inactive(CU_FALSE);
    return active;
}

static int run_suites(CU_SuiteInfo *suites)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    if (CU_register_suites(suites) != CUE_SUCCESS) {
        fprintf(stderr, "suite registration failed: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 2;
    }
    int active = select_tests();
#ifdef EPLB_REAL_LOADS
    if (active == 0 || !test_workloads_dir()) {
        CU_cleanup_registry();
        return EXIT_SKIP;
    }
#elif defined EPLB_FULL_MATRIX
    if (active == 0) {
        CU_cleanup_registry();
        return EXIT_SKIP;
    }
#else
    (void)active;
#endif
    /* Line by line into the log, so that a test's line is written when
     * it ends (and a stamping pipe can time it). */
    setvbuf(stdout, NULL, _IOLBF, 0);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    /* Failure records count failed assertions and failed suite setups
     * alike; tests_failed alone would miss the latter. */
    unsigned failures = CU_get_number_of_failure_records();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}

#endif
