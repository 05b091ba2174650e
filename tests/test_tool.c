/* The eplb-cl tool's input and output: load file formats, parse errors
 * with line and column, and the JSON plan's round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "loadfile.h"
#include "planio.h"
#include "testutil.h"
#include "workload.h"

static int parse(const char *text, load_matrix *m, char *err, size_t len)
{
    return load_matrix_parse(text, strlen(text), "t", m, err, len);
}

static void test_formats(void)
{
    load_matrix m;
    char err[256];
    CU_ASSERT_FATAL(parse("{\"other\": [1, {\"x\": null}], \"logical_count\":"
                          " [[0,0,0],[1,2.5,3e2]]}", &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 2 && m.experts == 3);
    CU_ASSERT(load_matrix_drop_zero_layers(&m) == 1);
    CU_ASSERT(m.layers == 1 && m.data[1] == 2.5f && m.data[2] == 300.0f);
    load_matrix_free(&m);
    CU_ASSERT_FATAL(parse("[[1,2],[3,4]]", &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 2 && m.experts == 2 && m.data[3] == 4.0f);
    load_matrix_free(&m);
    CU_ASSERT_FATAL(parse("1,2,3\n4, 5, 6\n\n", &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 2 && m.experts == 3 && m.data[4] == 5.0f);
    load_matrix_free(&m);
}

static void expect_error(const char *text, const char *where)
{
    load_matrix m;
    char err[256] = "";
    CU_ASSERT(parse(text, &m, err, sizeof err) == -1);
    if (!strstr(err, where)) {
        printf("\n  error '%s' lacks '%s'\n", err, where);
        CU_FAIL("parse error does not point at the place");
    }
}

static void test_parse_errors(void)
{
    expect_error("[[1,2],\n [3,]]", "t:2:5:");
    expect_error("[[1,2],\n [3,4]", "t:2:7: unexpected end of input");
    expect_error("{\"logical_count\": [[1,2],[3]]}", "layer 1 has 1 values");
    expect_error("{\"counts\": [[1]]}", "logical_count");
    expect_error("[[1,\"a\"]]", "t:1:5: expected a number");
    expect_error("1,2\n3,x\n", "t:2:3: 'x' is not a number");
    expect_error("1,2\n3\n", "t:2:1: row has 1 values");
    expect_error("   ", "empty");
    expect_error("[[1e]]", "malformed number");
    char deep[200];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    expect_error(deep, "nesting deeper");
    load_matrix m;
    char err[256];
    CU_ASSERT(load_matrix_read("/nonexistent/loads.json", &m, err,
                               sizeof err) == -1);
    CU_ASSERT(strstr(err, "cannot open") != NULL);
}

static void test_plan_round_trip(void)
{
    eplb_shape s = {3, 32, 48, 4, 2, 8};
    float w[3 * 32];
    workload_generate(w, 3, 32, 5);
    test_plan p, q;
    CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 8, 5, 1, &s, w,
                                   &p) == EPLB_OK);
    CU_ASSERT_FATAL(test_plan_alloc(&q, &s) == 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(plan_write_json(f, &s, p.phy2log, p.log2phy, p.logcnt) == 0);
    fclose(f);
    char err[256];
    CU_ASSERT(plan_parse_json(buf, len, "plan", &s, q.phy2log, q.log2phy,
                              q.logcnt, err, sizeof err) == 0);
    CU_ASSERT(test_plan_equal(&p, &q));
    /* A plan of another shape is refused with the place. */
    eplb_shape other = s;
    other.num_replicas = 64;
    test_plan r;
    CU_ASSERT_FATAL(test_plan_alloc(&r, &other) == 0);
    CU_ASSERT(plan_parse_json(buf, len, "plan", &other, r.phy2log,
                              r.log2phy, r.logcnt, err, sizeof err) == -1);
    CU_ASSERT(strstr(err, "plan:1:") != NULL);
    free(buf);
    test_plan_free(&p);
    test_plan_free(&q);
    test_plan_free(&r);
}

/* Runs the built tool; returns its exit status. */
static int run_tool(const char *args, const char *out_file)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "examples/eplb-cl --backend reference %s %s%s"
             " 2>tool-stderr.txt", args, out_file ? "--output " : "",
             out_file ? out_file : "");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_tool_runs(void)
{
    /* The built-in workload, then its plan read back and checked. */
    CU_ASSERT_FATAL(run_tool("--repeat 1", "tool-plan.json") == 0);
    char err[256];
    size_t len;
    char *text = read_file("tool-plan.json", &len, err, sizeof err);
    CU_ASSERT_FATAL(text != NULL);
    eplb_shape s = {58, 256, 288, 8, 4, 32};
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    CU_ASSERT(plan_parse_json(text, len, "tool-plan.json", &s, p.phy2log,
                              p.log2phy, p.logcnt, err, sizeof err) == 0);
    CU_ASSERT(test_plan_check(&p, 1) == NULL);
    free(text);
    test_plan_free(&p);
    char *summary = read_file("tool-stderr.txt", &len, err, sizeof err);
    CU_ASSERT_FATAL(summary != NULL);
    CU_ASSERT(strstr(summary, "balancedness: before") != NULL);
    CU_ASSERT(strstr(summary, "of it") != NULL);
    free(summary);
    /* A broken file: exit status 2 and the place in the message. */
    FILE *f = fopen("tool-bad.json", "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("{\"logical_count\": [[1, 2],\n [3, oops]]}", f);
    fclose(f);
    CU_ASSERT(run_tool("tool-bad.json", NULL) == 2);
    summary = read_file("tool-stderr.txt", &len, err, sizeof err);
    CU_ASSERT(summary && strstr(summary, "tool-bad.json:2:6:"));
    free(summary);
    /* Shapes that don't divide: a clear error, status 2 is not a crash. */
    CU_ASSERT(run_tool("--num-gpus 7", NULL) != 0);
    summary = read_file("tool-stderr.txt", &len, err, sizeof err);
    CU_ASSERT(summary && strstr(summary, "num_gpus (7)"));
    free(summary);
    remove("tool-plan.json");
    remove("tool-bad.json");
    remove("tool-stderr.txt");
}

/* The tool on every real file under SPEC's three configs, deterministic:
 * its JSON plan equals the library's (itself checked against SPEC's
 * oracle in test_reference). */
static void test_real_file_through_tool(void)
{
    const char *dir = test_workloads_dir();
    if (!dir)
        return;
    for (int f = 0; test_workload_files[f]; f++) {
        int L, E;
        float *w = test_load_workload(test_workload_files[f], &L, &E);
        CU_ASSERT_FATAL(w != NULL);
        for (int c = 0; c < 3; c++) {
            char args[4096], err[256];
            snprintf(args, sizeof args, "--candidates 1 --swap-rounds 0 "
                     "--repeat 0 --num-replicas %d --num-groups %d "
                     "--num-nodes %d --num-gpus %d %s/%s",
                     test_configs[c][0], test_configs[c][1],
                     test_configs[c][2], test_configs[c][3], dir,
                     test_workload_files[f]);
            CU_ASSERT_FATAL(run_tool(args, "tool-real.json") == 0);
            size_t len;
            char *text = read_file("tool-real.json", &len, err, sizeof err);
            CU_ASSERT_FATAL(text != NULL);
            eplb_shape s = {L, E, test_configs[c][0], test_configs[c][1],
                            test_configs[c][2], test_configs[c][3]};
            test_plan p, q;
            CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
            CU_ASSERT(plan_parse_json(text, len, "tool-real.json", &s,
                                      p.phy2log, p.log2phy, p.logcnt, err,
                                      sizeof err) == 0);
            CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 1, 0, 0,
                                           &s, w, &q) == EPLB_OK);
            CU_ASSERT(test_plan_equal(&p, &q));
            char *summary = read_file("tool-stderr.txt", &len, err,
                                      sizeof err);
            CU_ASSERT(summary && strstr(summary, "dropped 3 all-zero layers"));
            free(summary);
            free(text);
            test_plan_free(&p);
            test_plan_free(&q);
        }
        free(w);
    }
    remove("tool-real.json");
    remove("tool-stderr.txt");
}

static CU_TestInfo tool_tests[] = {
    {"load file formats", test_formats},
    {"parse errors name line and column", test_parse_errors},
    {"plan JSON round trip", test_plan_round_trip},
    {"eplb-cl runs and fails cleanly", test_tool_runs},
    {"eplb-cl on 12 real files x 3 configs equals the library",
     test_real_file_through_tool},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"tool", NULL, NULL, NULL, NULL, tool_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
