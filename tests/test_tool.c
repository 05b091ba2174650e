/* The eplb-cl tool's input and output: load file formats, parse errors
 * with line and column, the JSON plan's round trip, and the migration
 * options with their --stages file. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cunit_main.h"
#include "loadfile.h"
#include "planio.h"
#include "testutil.h"
#include "workload.h"

/* The tool's stderr, one file per test binary: make check runs this file's
 * two builds (with and without the recorded loads) side by side. */
#ifdef EPLB_REAL_LOADS
#define TOOL_STDERR "tool-stderr-real.txt"
#else
#define TOOL_STDERR "tool-stderr.txt"
#endif

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
    expect_error("[[1,2],\n [3,4]", "t:2:7: end of input");
    expect_error("{\"logical_count\": [[1,2],[3]]}", "layer 1 has 1 values");
    expect_error("{\"counts\": [[1]]}", "logical_count");
    expect_error("[[1,\"a\"]]", "t:1:5: expected a number");
    expect_error("1,2\n3,x\n", "t:2:3: 'x' is not a number");
    expect_error("1,2\n3\n", "t:2:1: layer 1 has 1 values");
    expect_error("   ", "empty");
    expect_error("[[1e]]", "t:1:4: invalid token");
    char deep[3000];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    expect_error(deep, "maximum parsing depth");
    load_matrix m;
    char err[256];
    CU_ASSERT(load_matrix_read("/nonexistent/loads.json", &m, err,
                               sizeof err) == -1);
    CU_ASSERT(strstr(err, "cannot open") != NULL);
}

/* A number of 152 characters between head and tail reads as one value:
 * the old readers split it in two (CSV) or refused it (JSON). */
static void long_number_is_one(const char *head, const char *tail)
{
    char text[256];
    size_t n = strlen(head);
    memcpy(text, head, n);
    memcpy(text + n, "1.", 2);
    memset(text + n + 2, '5', 150);
    strcpy(text + n + 152, tail);
    load_matrix m;
    char err[256];
    CU_ASSERT_FATAL(parse(text, &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 1 && m.experts == 2 && m.data[0] == 1.5555556f);
    load_matrix_free(&m);
}

/* Input the loader used to change silently, each now an error at its
 * place. */
static void test_strict_csv(void)
{
    long_number_is_one("", ",2\n");
    load_matrix m;
    char err[256];
    /* A NUL inside a number truncated it. */
    const char nul[] = "1,2\0003,4\n";
    CU_ASSERT(load_matrix_parse(nul, sizeof nul - 1, "t", &m, err,
                                sizeof err) == -1);
    CU_ASSERT(strstr(err, "t:1:3: a NUL byte") != NULL);
    /* Empty fields were skipped. */
    expect_error("1,,2\n", "t:1:3: empty field");
    expect_error("1,2,\n", "t:1:5: empty field");
    expect_error(",1,2\n", "t:1:1: empty field");
    /* Values the library refuses, named where the file has them and
     * counted as the file counts layers (zero layers not yet dropped). */
    expect_error("0,0\n0,0\n1,-1\n", "t:3:3: load -1 (layer 2, expert 1) "
                 "is negative");
    expect_error("0,0\n0,0\n1,nan\n", "t:3:3: 'nan' is not a number");
    expect_error("1,inf\n", "t:1:3: 'inf' is not a number");
    expect_error("1e39,1\n", "t:1:1: load 1e+39 (layer 0, expert 0) is too "
                 "large");
    /* 1e-50 became 0, and its layer was then dropped as all-zero. */
    expect_error("1e-50,0\n", "t:1:1: load 1e-50 (layer 0, expert 0) is "
                 "too small");
    expect_error("1,2\n1e400,2\n", "t:2:1: '1e400' is not a number (real "
                 "number overflow");
    expect_error("0x10,1\n", "'0x10' is not a number");
    /* Blank lines, CRLF and blank-separated rows are fine. */
    CU_ASSERT_FATAL(parse("1 2\r\n\n 3\t4 \r\n", &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 2 && m.experts == 2 && m.data[3] == 4.0f);
    load_matrix_free(&m);
}

static void test_strict_json(void)
{
    /* Numbers RFC 8259 does not allow. */
    expect_error("[[01]]", "t:1:3: invalid token");
    expect_error("[[1.]]", "t:1:4: invalid token");
    expect_error("[[-.5]]", "t:1:3: invalid token");
    expect_error("[[1e39]]", "t:1:3: load 1e+39 (layer 0, expert 0) is too "
                 "large");
    expect_error("[[0,0],\n [1e-50, 0]]", "t:2:3: load 1e-50 (layer 1, "
                 "expert 0) is too small");
    expect_error("[[1, -2]]", "t:1:6: load -2 (layer 0, expert 1) is "
                 "negative");
    /* Strings: bad escapes and raw control characters. */
    expect_error("{\"x\": \"\\q\", \"logical_count\": [[1]]}",
                 "invalid escape");
    expect_error("{\"x\": \"a\tb\", \"logical_count\": [[1]]}",
                 "control character");
    /* Duplicate keys: the first no longer wins silently. */
    expect_error("{\"logical_count\": [[1]],\n \"logical_count\": [[2]]}",
                 "t:2:2: a second \"logical_count\"");
    expect_error("{\"x\": {\"a\": 1, \"a\": 2}, \"logical_count\": [[1]]}",
                 "duplicate object key");
    long_number_is_one("[[", ", 2]]");
    load_matrix m;
    char err[256];
    /* A byte order mark is ignored, as RFC 8259 allows. */
    CU_ASSERT_FATAL(parse("\xEF\xBB\xBF[[1, 2]]", &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 1 && m.experts == 2);
    load_matrix_free(&m);
    /* Trailing commas, empty arrays, text after the value. */
    expect_error("[[1,2],]", "t:1:8: expected layer 1");
    expect_error("[[1],[2]] x", "t:1:11: unexpected text");
    expect_error("[]", "empty");
    expect_error("[[]]", "t:1:2: layer 0 has no values");
    expect_error("[[1, [2]]]", "t:1:6: expected a number (layer 0, "
                 "expert 1)");
}

/* The matrix, not the text, sets the memory: a file of mostly blanks and
 * a long unused member reads into the few values it holds. */
static void test_memory_follows_matrix(void)
{
    size_t pad = 8u << 20;
    FILE *f = fopen("tool-big.json", "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("{\"other\": \"", f);
    for (size_t i = 0; i < pad; i++)
        fputc('x', f);
    fputs("\", \"logical_count\": [[1, 2],", f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputs("[3, 4]]}", f);
    fclose(f);
    load_matrix m;
    char err[256];
    CU_ASSERT(load_matrix_read("tool-big.json", &m, err, sizeof err) == 0);
    CU_ASSERT(m.layers == 2 && m.experts == 2 && m.data[3] == 4.0f);
    load_matrix_free(&m);
    remove("tool-big.json");
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

/* Plan values out of int32 range were cast (undefined behaviour). */
static void test_plan_reader_strict(void)
{
    eplb_shape s = {1, 2, 2, 1, 1, 1};
    int32_t p2l[2], l2p[2], cnt[2];
    char err[256];
    const char *bad[] = {
        "{\"phy2log\":[[10000000000,1]],\"log2phy\":[[[0],[1]]],"
        "\"logcnt\":[[1,1]]}",
        "{\"phy2log\":[[1e10,1]],\"log2phy\":[[[0],[1]]],"
        "\"logcnt\":[[1,1]]}",
        "{\"phy2log\":[[0.5,1]],\"log2phy\":[[[0],[1]]],"
        "\"logcnt\":[[1,1]]}",
    };
    for (int i = 0; i < 3; i++) {
        CU_ASSERT(plan_parse_json(bad[i], strlen(bad[i]), "p", &s, p2l, l2p,
                                  cnt, err, sizeof err) == -1);
        /* At the value, not always 1:1. */
        CU_ASSERT(strstr(err, "p:1:14: phy2log[0][0] is not a 32-bit "
                              "integer") != NULL);
    }
    const char *dup = "{\"phy2log\":[[0,1]],\"phy2log\":[[0,1]]}";
    CU_ASSERT(plan_parse_json(dup, strlen(dup), "p", &s, p2l, l2p, cnt, err,
                              sizeof err) == -1);
    CU_ASSERT(strstr(err, "duplicate object key") != NULL);
    const char *good = "{\"phy2log\":[[0,1]],\"log2phy\":[[[0],[1]]],"
                       "\"logcnt\":[[1,1]]}";
    CU_ASSERT(plan_parse_json(good, strlen(good), "p", &s, p2l, l2p, cnt,
                              err, sizeof err) == 0);
    CU_ASSERT(p2l[1] == 1 && l2p[1] == 1 && cnt[0] == 1);
}

/* Runs the built tool; returns its exit status. */
static int run_tool(const char *args, const char *out_file)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "tools/eplb-cl --backend reference %s %s%s"
             " 2>" TOOL_STDERR, args, out_file ? "--output " : "",
             out_file ? out_file : "");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The tool on a file holding text: exit status 2 and `where` in its
 * message. */
static void tool_refuses(const char *file, const char *text,
                         const char *args, const char *where)
{
    FILE *f = fopen(file, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    char cmd[1024], err[256];
    snprintf(cmd, sizeof cmd, "%s %s", args, file);
    CU_ASSERT(run_tool(cmd, NULL) == 2);
    size_t len;
    char *msg = read_file(TOOL_STDERR, &len, err, sizeof err);
    CU_ASSERT(msg && strstr(msg, where));
    free(msg);
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
    char *summary = read_file(TOOL_STDERR, &len, err, sizeof err);
    CU_ASSERT_FATAL(summary != NULL);
    CU_ASSERT(strstr(summary, "balancedness: before") != NULL);
    CU_ASSERT(strstr(summary, "of it") != NULL);
    free(summary);
    /* A broken file: exit status 2 and the place in the message. */
    tool_refuses("tool-bad.json", "{\"logical_count\": [[1, 2],\n [3, oops]]}",
                 "", "tool-bad.json:2:9:");
    /* A NaN after two zero rows: exit 2, the file's line and layer (it was
     * status 1 and "weight[1][1]" from the library). */
    const char *small = "--num-replicas 4 --num-groups 1 --num-nodes 1 "
                        "--num-gpus 2";
    tool_refuses("tool-bad.csv", "0,0,0,0\n0,0,0,0\n1,2,3,4\n5,nan,7,8\n",
                 small, "tool-bad.csv:4:3: 'nan' is not");
    tool_refuses("tool-bad.csv", "1,2,3,4\n5,6,1e39,8\n", small,
                 "tool-bad.csv:2:5: load 1e+39 (layer 1, expert 2) is too "
                 "large");
    remove("tool-bad.csv");
    /* Shapes that don't divide: a clear error, status 2 is not a crash. */
    CU_ASSERT(run_tool("--num-gpus 7", NULL) != 0);
    summary = read_file(TOOL_STDERR, &len, err, sizeof err);
    CU_ASSERT(summary && strstr(summary, "num_gpus (7)"));
    free(summary);
    remove("tool-plan.json");
    remove("tool-bad.json");
    remove(TOOL_STDERR);
}

/* --current with the tool's own plan: on the same loads nothing moves
 * (the same phy2log, zero copies in the summary); a bare phy2log array is
 * taken too; a plan of another shape is refused (status 2, the file
 * named). */
static void test_tool_current(void)
{
    const char *det = "--candidates 1 --swap-rounds 0 --repeat 0";
    char args[512], err[256];
    CU_ASSERT_FATAL(run_tool(det, "tool-cur.json") == 0);
    snprintf(args, sizeof args, "%s --current tool-cur.json --tolerance 0",
             det);
    CU_ASSERT_FATAL(run_tool(args, "tool-next.json") == 0);
    eplb_shape s = {58, 256, 288, 8, 4, 32};
    test_plan a, b;
    CU_ASSERT_FATAL(test_plan_alloc(&a, &s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&b, &s) == 0);
    size_t len;
    char *ta = read_file("tool-cur.json", &len, err, sizeof err);
    CU_ASSERT_FATAL(ta != NULL);
    CU_ASSERT(plan_parse_json(ta, len, "tool-cur.json", &s, a.phy2log,
                              a.log2phy, a.logcnt, err, sizeof err) == 0);
    char *tb = read_file("tool-next.json", &len, err, sizeof err);
    CU_ASSERT_FATAL(tb != NULL);
    CU_ASSERT(plan_parse_json(tb, len, "tool-next.json", &s, b.phy2log,
                              b.log2phy, b.logcnt, err, sizeof err) == 0);
    CU_ASSERT(memcmp(a.phy2log, b.phy2log, a.n_p2l * sizeof(int32_t)) == 0);
    CU_ASSERT(test_plan_check(&b, 1) == NULL);
    char *summary = read_file(TOOL_STDERR, &len, err, sizeof err);
    CU_ASSERT(summary && strstr(summary, "migration:    0 expert copies"));
    CU_ASSERT(summary && strstr(summary, "not moving:"));
    free(summary);
    /* The same placement as a bare JSON array of phy2log rows. */
    FILE *f = fopen("tool-bare.json", "w");
    CU_ASSERT_FATAL(f != NULL);
    fputc('[', f);
    for (int l = 0; l < s.layers; l++) {
        fputs(l ? ",[" : "[", f);
        for (int q = 0; q < s.num_replicas; q++)
            fprintf(f, q ? ",%d" : "%d", a.phy2log[l * s.num_replicas + q]);
        fputc(']', f);
    }
    fputs("]\n", f);
    fclose(f);
    snprintf(args, sizeof args, "%s --current tool-bare.json", det);
    CU_ASSERT(run_tool(args, "tool-next.json") == 0);
    /* A plan for 16 slots per layer fits no row of this shape. */
    snprintf(args, sizeof args, "%s --num-replicas 320 --num-gpus 32 "
             "--current tool-cur.json", det);
    CU_ASSERT(run_tool(args, "tool-next.json") == 2);
    summary = read_file(TOOL_STDERR, &len, err, sizeof err);
    CU_ASSERT(summary && strstr(summary, "tool-cur.json"));
    free(summary);
    free(ta);
    free(tb);
    test_plan_free(&a);
    test_plan_free(&b);
    remove("tool-cur.json");
    remove("tool-next.json");
    remove("tool-bare.json");
    remove(TOOL_STDERR);
}

/* Shape and type errors in a plan name the offending value's place (they
 * all said name:1:1). */
static void test_plan_reader_places(void)
{
    eplb_shape s = {3, 4, 6, 2, 1, 2};
    int32_t p2l[18];
    char err[256];
    const struct { const char *text, *where; } bad[] = {
        {"{\"x\": [1, \"]\"],\n \"phy2log\": [[0,1,2,3,0,1],\n  [0,1,2,3,0],"
         "[0,1,2,3,0,1]]}", "p:3:3: phy2log[1] has 5 elements: expected 6"},
        {"[[0,1,2,3,0,1],\n [0,1,2,\"x\",0,1],[0,1,2,3,0,1]]",
         "p:2:9: phy2log[1][3] is not a 32-bit integer"},
        {"[[0,1,2,3,0,1],\n [0,1,2,3,0,1], 7]",
         "p:2:17: phy2log[2] is not an array"},
        {"[[0,1,2,3,0,1]]", "p:1:1: phy2log has 1 elements: expected 3"},
        {"\n  {\"a\": 1}", "p:2:3: no \"phy2log\" member"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT(plan_parse_phy2log(bad[i].text, strlen(bad[i].text), "p",
                                     &s, p2l, err, sizeof err) == -1);
        if (!strstr(err, bad[i].where)) {
            printf("\n  error '%s' lacks '%s'\n", err, bad[i].where);
            CU_FAIL("plan error does not point at the place");
        }
    }
    /* The full plan's members are placed too. */
    const char *full = "{\"phy2log\":[[0,1]],\n\"log2phy\":[[[0],[1]]],\n"
                       "\"logcnt\":[[1,true]]}";
    eplb_shape one = {1, 2, 2, 1, 1, 1};
    int32_t l2p[2], cnt[2];
    CU_ASSERT(plan_parse_json(full, strlen(full), "p", &one, p2l, l2p, cnt,
                              err, sizeof err) == -1);
    CU_ASSERT(strstr(err, "p:3:14: logcnt[0][1] is not a 32-bit integer")
              != NULL);
    /* A byte order mark is ignored, as the load reader ignores it (it was
     * refused here and accepted there). */
    const char *bom = "\xEF\xBB\xBF[[0,1,2,3,0,1],[0,1,2,3,0,1],"
                      "[0,1,2,3,0,1]]";
    CU_ASSERT(plan_parse_phy2log(bom, strlen(bom), "p", &s, p2l, err,
                                 sizeof err) == 0);
    CU_ASSERT(p2l[17] == 1);
}

static void write_text(const char *file, const char *text)
{
    FILE *f = fopen(file, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* The tool with args: exit status `status` and, when where is not NULL,
 * `where` in its stderr. */
static void tool_says(const char *args, int status, const char *where)
{
    char err[256];
    int st = run_tool(args, status == 0 ? "/dev/null" : NULL);
    CU_ASSERT(st == status);
    size_t len;
    char *msg = read_file(TOOL_STDERR, &len, err, sizeof err);
    CU_ASSERT(msg != NULL);
    if (where && !(msg && strstr(msg, where))) {
        printf("\n  eplb-cl %s: status %d, stderr '%s' lacks '%s'\n", args,
               st, msg ? msg : "", where);
        CU_FAIL("the tool's message does not say it");
    }
    free(msg);
}

/* 3 layers x 4 experts, the middle one all zero, on 6 slots of 2 GPUs. */
#define SMALL "--num-replicas 6 --num-groups 2 --num-nodes 1 --num-gpus 2 " \
              "--repeat 0 -q"
#define SMALL_LOADS "1,2,3,4\n0,0,0,0\n5,6,7,8\n"

/* A current plan the library would refuse: status 2 and the place of the
 * offending number in the --current file (it was status 1 and the
 * library's message, with no place). */
static void test_tool_current_checked(void)
{
    write_text("tool-small.csv", SMALL_LOADS);
    const struct { const char *plan, *where; } bad[] = {
        {"[[0,1,2,3,0,1],\n [0,1,2,99,0,1],[0,1,2,3,0,1]]",
         "tool-cur-bad.json:2:9: phy2log[1][3] is 99: expert ids are 0..3"},
        {"{\"phy2log\": [[0,1,2,3,0,1],\n [0,1,-2,3,0,1],[0,1,2,3,0,1]]}",
         "tool-cur-bad.json:2:7: phy2log[1][2] is -2"},
        {"[[0,1,2,3,0,1],\n [0,1,2,3,0,1],\n [-1,-1,-1,-1,-1,-1]]",
         "tool-cur-bad.json:3:2: phy2log[2] holds expert 0 in no slot"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text("tool-cur-bad.json", bad[i].plan);
        tool_says(SMALL " --current tool-cur-bad.json tool-small.csv", 2,
                  bad[i].where);
    }
    /* A group split over nodes (a migration stopped midway leaves one):
     * taken under either policy. */
    write_text("tool-cur-bad.json", "[[0,1,0,2,3,2],[0,1,0,2,3,2],\n"
               "[0,1,2,3,2,3]]");
    CU_ASSERT(run_tool("--num-replicas 6 --num-groups 2 --num-nodes 2 "
                       "--num-gpus 2 --repeat 0 -q --current "
                       "tool-cur-bad.json tool-small.csv", "tool-next.json")
              == 0);
    CU_ASSERT(run_tool("--num-replicas 6 --num-groups 2 --num-nodes 2 "
                       "--num-gpus 2 --repeat 0 -q --policy global --current "
                       "tool-cur-bad.json tool-small.csv", "tool-next.json")
              == 0);
    remove("tool-cur-bad.json");
    remove("tool-next.json");
    remove("tool-small.csv");
    remove(TOOL_STDERR);
}

/* A load file with an all-zero layer: the plan keeps the layer, and a
 * plan of the file's layers is taken as --current (the layer was dropped,
 * and such a plan refused for its extra row). A UTF-8 byte order mark is
 * taken in --current as in loads. */
static void test_tool_zero_layer_current(void)
{
    write_text("tool-small.csv", "\xEF\xBB\xBF" SMALL_LOADS);
    CU_ASSERT_FATAL(run_tool(SMALL " tool-small.csv", "tool-cur.json") == 0);
    char err[256];
    size_t len;
    char *text = read_file("tool-cur.json", &len, err, sizeof err);
    CU_ASSERT_FATAL(text != NULL);
    eplb_shape s = {3, 4, 6, 2, 1, 2};
    test_plan p;
    CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
    CU_ASSERT(plan_parse_json(text, len, "tool-cur.json", &s, p.phy2log,
                              p.log2phy, p.logcnt, err, sizeof err) == 0);
    free(text);
    test_plan_free(&p);
    CU_ASSERT(run_tool(SMALL " --current tool-cur.json tool-small.csv",
                       "tool-next.json") == 0);
    write_text("tool-cur.json", "\xEF\xBB\xBF[[0,1,2,3,0,1],[0,1,2,3,0,1],"
               "[0,1,2,3,0,1]]\n");
    tool_says(SMALL " --current tool-cur.json tool-small.csv", 0, NULL);
    remove("tool-cur.json");
    remove("tool-next.json");
    remove("tool-small.csv");
    remove(TOOL_STDERR);
}

/* Options that were taken silently: a dead GPU twice, --mask with
 * --dead-gpus (the last won), --tolerance without --current (ignored). */
static void test_tool_option_conflicts(void)
{
    write_text("tool-small.csv", SMALL_LOADS);
#define EIGHT "--num-replicas 8 --num-groups 2 --num-nodes 1 --num-gpus 2 " \
              "--repeat 0 -q "
    tool_says(EIGHT "--dead-gpus 1,1 tool-small.csv", 2,
              "GPU 1 is listed twice");
    tool_says(EIGHT "--mask 1,0 --dead-gpus 1 tool-small.csv", 2,
              "--mask and --dead-gpus");
    tool_says(EIGHT "--dead-gpus 1 --mask 1,0 tool-small.csv", 2,
              "--mask and --dead-gpus");
    tool_says(EIGHT "--tolerance 0.1 tool-small.csv", 2,
              "--tolerance applies to a re-plan: give --current");
    tool_says(EIGHT "--dead-gpus 1 tool-small.csv", 0, NULL);
    tool_says(EIGHT "--mask 1,0 tool-small.csv", 0, NULL);
#undef EIGHT
    remove("tool-small.csv");
    remove(TOOL_STDERR);
}

/* Files that are not files: a FIFO with no writer blocked open(2) for
 * ever, /dev/zero was read for 1 GiB before failing. Each now fails at
 * once naming the file (timeout 60 turns a hang into a failure). */
static void test_tool_special_files(void)
{
    remove("tool-fifo");
    CU_ASSERT_FATAL(mkfifo("tool-fifo", 0600) == 0);
    write_text("tool-small.csv", SMALL_LOADS);
    char err[256];
    const char *cmds[] = {
        "timeout 60 tools/eplb-cl " SMALL " tool-fifo 2>" TOOL_STDERR,
        "timeout 60 tools/eplb-cl " SMALL " --current tool-fifo "
        "tool-small.csv 2>" TOOL_STDERR,
        "timeout 60 tools/eplb-cl " SMALL " /dev/zero 2>" TOOL_STDERR,
        "timeout 60 tools/eplb-cl " SMALL " --current /dev/zero "
        "tool-small.csv 2>" TOOL_STDERR,
    };
    const char *says[] = {"tool-fifo: a pipe that gave no data",
                          "tool-fifo: a pipe that gave no data",
                          "/dev/zero: not a regular file or a pipe",
                          "/dev/zero: not a regular file or a pipe"};
    for (int i = 0; i < 4; i++) {
        int st = system(cmds[i]);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
        size_t len;
        char *msg = read_file(TOOL_STDERR, &len, err, sizeof err);
        CU_ASSERT(msg && strstr(msg, says[i]));
        free(msg);
    }
    /* A pipe with a writer is read. */
    int st = system("cat tool-small.csv | tools/eplb-cl --backend reference "
                    SMALL " /dev/stdin >/dev/null 2>" TOOL_STDERR);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    load_matrix m;
    CU_ASSERT(load_matrix_read(".", &m, err, sizeof err) == -1);
    CU_ASSERT(strstr(err, ".: not a regular file or a pipe (a directory)")
              != NULL);
    remove("tool-fifo");
    remove("tool-small.csv");
    remove(TOOL_STDERR);
}

/* ---- the migration options and --stages ---------------------------- */

/* 6 layers x 64 experts, layer 2 all zero (a dense layer the plan keeps),
 * on 80 slots of 8 GPUs over 2 nodes: generated loads, not the recorded
 * ones. */
#define SCHED_L 6
#define SCHED_E 64
#define SCHED_ZERO_LAYER 2
#define SCHED "--num-replicas 80 --num-groups 8 --num-nodes 2 " \
              "--num-gpus 8 --repeat 0 "

/* The loads as CSV, to 9 digits (a float read back is the same float). */
static void write_loads(const char *file, const float *w)
{
    FILE *f = fopen(file, "w");
    CU_ASSERT_FATAL(f != NULL);
    for (int l = 0; l < SCHED_L; l++)
        for (int e = 0; e < SCHED_E; e++)
            fprintf(f, "%.9g%c", (double)w[l * SCHED_E + e],
                    e + 1 < SCHED_E ? ',' : '\n');
    fclose(f);
}

/* tool-w0.csv, the loads the plan in service was made for, and
 * tool-w1.csv, the same traffic drifted by 40%. */
static void write_sched_loads(void)
{
    float w[SCHED_L * SCHED_E];
    workload_generate(w, SCHED_L, SCHED_E, 11);
    memset(w + SCHED_ZERO_LAYER * SCHED_E, 0, SCHED_E * sizeof(float));
    write_loads("tool-w0.csv", w);
    workload_perturb(w, SCHED_L, SCHED_E, 0.4f, 12);
    write_loads("tool-w1.csv", w);
}

static int read_plan(const char *file, const eplb_shape *s, test_plan *p)
{
    char err[256];
    size_t len;
    char *text = read_file(file, &len, err, sizeof err);
    int rc = text ? plan_parse_json(text, len, file, s, p->phy2log,
                                    p->log2phy, p->logcnt, err, sizeof err)
                  : -1;
    if (rc)
        printf("\n  %s\n", err);
    free(text);
    return rc;
}

static double number(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

/* A --stages file against the plans around it: stage_of_slot is [L][P]
 * of stages 0..num_stages, a record per stage 0..num_stages, no stage
 * copying more than per_stage experts to a GPU (stage 1 may, where a
 * dead GPU's experts go back), objectives never rising from stage 1 on,
 * the copies adding up, the per-layer arrays of L, and the slots of
 * stage 0 (unchanged) the only ones where `next` is still `cur`: the
 * current plan with every staged slot's new expert is the plan written.
 * dead: a dead GPU, or -1. Returns num_stages. */
static int check_stages_file(const char *file, const eplb_shape *s,
                             const int32_t *cur, const int32_t *next,
                             int dead, int per_stage)
{
    int L = s->layers, P = s->num_replicas, ppg = P / s->num_gpus;
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        printf("\n  %s:%d:%d: %s\n", file, je.line, je.column, je.text);
    CU_ASSERT_FATAL(json_is_object(root));
    const json_t *ns_v = json_object_get(root, "num_stages");
    CU_ASSERT_FATAL(json_is_integer(ns_v));
    int ns = (int)json_integer_value(ns_v);
    CU_ASSERT_FATAL(ns >= 0 && ns <= L * P);

    const json_t *rows = json_object_get(root, "stage_of_slot");
    CU_ASSERT_FATAL(json_is_array(rows) && json_array_size(rows) ==
                    (size_t)L);
    long wrong = 0, staged = 0;
    for (int l = 0; l < L; l++) {
        const json_t *row = json_array_get(rows, (size_t)l);
        CU_ASSERT_FATAL(json_is_array(row) && json_array_size(row) ==
                        (size_t)P);
        for (int q = 0; q < P; q++) {
            const json_t *v = json_array_get(row, (size_t)q);
            CU_ASSERT_FATAL(json_is_integer(v));
            long long st = json_integer_value(v);
            size_t i = (size_t)l * P + q;
            CU_ASSERT(st >= 0 && st <= ns);
            /* the plan after the last stage */
            int32_t e = st >= 1 && st <= ns ? next[i] : cur[i];
            wrong += e != next[i];
            staged += st > 0;
            /* The all-zero layer gains nothing and keeps its placement,
             * but for the dead GPU's experts, put back in stage 1. */
            if (l == SCHED_ZERO_LAYER)
                CU_ASSERT(dead < 0 ? st == 0 : st <= 1);
            if (q / ppg == dead && cur[i] >= 0)
                CU_ASSERT(st == 1);
        }
    }
    CU_ASSERT(wrong == 0);
    CU_ASSERT(staged > 0 || ns == 0);

    const json_t *stages = json_object_get(root, "stages");
    CU_ASSERT_FATAL(json_is_array(stages) && json_array_size(stages) ==
                    (size_t)ns + 1);
    long long copies = 0;
    double last = INFINITY;
    for (int k = 0; k <= ns; k++) {
        const json_t *r = json_array_get(stages, (size_t)k);
        CU_ASSERT_FATAL(json_is_object(r));
        CU_ASSERT(json_integer_value(json_object_get(r, "stage")) == k);
        long long most =
            json_integer_value(json_object_get(r, "max_copies_per_gpu"));
        CU_ASSERT(most >= 0);
        CU_ASSERT(most <= per_stage || (dead >= 0 && k == 1));
        double obj = number(r, "objective"), bal = number(r, "balancedness");
        CU_ASSERT(obj > 0.0 && bal > 0.0 && bal <= 1.0 + 1e-12);
        if (k >= 1) {
            CU_ASSERT(obj <= last * (1 + 1e-12));
            last = obj;
            copies += json_integer_value(json_object_get(r, "copies"));
        }
        if (k == ns)
            CU_ASSERT(fabs(obj - number(root, "objective_after")) <=
                      1e-9 * obj);
    }
    CU_ASSERT(copies == json_integer_value(json_object_get(root, "copies")));
    CU_ASSERT(number(root, "objective_after") <=
              number(root, "objective_before") * (1 + 1e-12));

    const char *per_layer[] = {"layer_gain", "layer_copies", "layer_order"};
    for (int i = 0; i < 3; i++) {
        const json_t *a = json_object_get(root, per_layer[i]);
        CU_ASSERT(json_is_array(a) && json_array_size(a) == (size_t)L);
    }
    const json_t *order = json_object_get(root, "layer_order");
    int seen[SCHED_L] = {0};
    for (int l = 0; l < L && l < SCHED_L; l++) {
        long long x = json_integer_value(json_array_get(order, (size_t)l));
        CU_ASSERT(x >= 0 && x < L && !seen[x]);
        if (x >= 0 && x < L)
            seen[x] = 1;
    }
    CU_ASSERT(json_number_value(json_array_get(json_object_get(root,
        "layer_gain"), SCHED_ZERO_LAYER)) == 0.0);
    if (dead < 0)
        CU_ASSERT(json_integer_value(json_array_get(json_object_get(root,
            "layer_copies"), SCHED_ZERO_LAYER)) == 0);
    json_decref(root);
    return ns;
}

/* Each layer of a masked plan holds every expert, none on the dead GPU. */
static int masked_plan_ok(const eplb_shape *s, const int32_t *p2l, int dead)
{
    int P = s->num_replicas, ppg = P / s->num_gpus, E = s->experts;
    for (int l = 0; l < s->layers; l++) {
        int seen[SCHED_E] = {0}, n = 0;
        for (int q = 0; q < P; q++) {
            int e = p2l[(size_t)l * P + q];
            if ((q / ppg == dead) != (e < 0) || e >= E || E > SCHED_E)
                return 0;
            if (e >= 0 && !seen[e]++)
                n++;
        }
        if (n != E)
            return 0;
    }
    return 1;
}

/* --stage-copies-per-gpu 2 --stages, read back with jansson: the
 * schedule's shape, its stages within 2 copies per GPU and never raising
 * the objective, and the current plan with the staged slots rewritten is
 * the plan the tool wrote; the same over a dead GPU (whose experts go
 * back in stage 1, whatever that copies); and a budget of 0 moves
 * nothing. */
static void test_tool_stages(void)
{
    const eplb_shape s = {SCHED_L, SCHED_E, 80, 8, 2, 8};
    write_sched_loads();
    CU_ASSERT_FATAL(run_tool(SCHED "-q tool-w0.csv", "tool-cur.json") == 0);
    test_plan cur, next;
    CU_ASSERT_FATAL(test_plan_alloc(&cur, &s) == 0);
    CU_ASSERT_FATAL(test_plan_alloc(&next, &s) == 0);
    CU_ASSERT_FATAL(read_plan("tool-cur.json", &s, &cur) == 0);
    for (int dead = -1; dead <= 3; dead += 4) {
        char args[512], err[256];
        snprintf(args, sizeof args, SCHED "--current tool-cur.json "
                 "--stage-copies-per-gpu 2 --stages tool-stages.json %s "
                 "tool-w1.csv", dead >= 0 ? "--dead-gpus 3" : "");
        CU_ASSERT_FATAL(run_tool(args, "tool-next.json") == 0);
        CU_ASSERT_FATAL(read_plan("tool-next.json", &s, &next) == 0);
        /* Valid, but not always with each group on one node: a layer
         * that stops short of its re-plan (its next change needs more
         * than 2 copies on a GPU) may leave a group on two nodes. */
        CU_ASSERT(dead >= 0 ? masked_plan_ok(&s, next.phy2log, dead)
                            : test_plan_check(&next, 0) == NULL);
        int ns = check_stages_file("tool-stages.json", &s, cur.phy2log,
                                   next.phy2log, dead, 2);
        /* 40% drift moves something, in more than one stage of 2 */
        CU_ASSERT(ns > 1);
        size_t len;
        char *summary = read_file(TOOL_STDERR, &len, err, sizeof err);
        char line[64];
        snprintf(line, sizeof line, "  schedule:     %d stages, ", ns);
        CU_ASSERT(summary && strstr(summary, line));
        CU_ASSERT(summary && strstr(summary, "  stages:       "
                                    "tool-stages.json"));
        free(summary);
    }
    /* A budget of 0: the plan in service, no stage. */
    CU_ASSERT_FATAL(run_tool(SCHED "-q --current tool-cur.json "
                             "--max-copies-per-gpu 0 --stages "
                             "tool-stages.json tool-w1.csv",
                             "tool-next.json") == 0);
    CU_ASSERT_FATAL(read_plan("tool-next.json", &s, &next) == 0);
    /* (log2phy lists each expert's slots in slot order now, and may
     * differ from the fresh plan's in the order alone) */
    CU_ASSERT(memcmp(cur.phy2log, next.phy2log,
                     cur.n_p2l * sizeof(int32_t)) == 0);
    CU_ASSERT(memcmp(cur.logcnt, next.logcnt,
                     cur.n_cnt * sizeof(int32_t)) == 0);
    CU_ASSERT(check_stages_file("tool-stages.json", &s, cur.phy2log,
                                next.phy2log, -1, 0) == 0);
    test_plan_free(&cur);
    test_plan_free(&next);
    remove("tool-w0.csv");
    remove("tool-w1.csv");
    remove("tool-cur.json");
    remove("tool-next.json");
    remove("tool-stages.json");
    remove(TOOL_STDERR);
}

/* The migration options need --current (a fresh plan has nothing to
 * migrate), and take only the numbers the library does, parsed whole:
 * each refusal a usage error (status 2) naming the option and the range. */
static void test_tool_migration_options(void)
{
    write_text("tool-small.csv", SMALL_LOADS);
#define EIGHT "--num-replicas 8 --num-groups 2 --num-nodes 1 --num-gpus 2 " \
              "--repeat 0 -q "
    const char *alone[] = {"--max-copies-per-gpu 1", "--max-copies 1",
                           "--stage-copies-per-gpu 1", "--min-gain 0.01",
                           "--stages tool-stages.json"};
    for (size_t i = 0; i < sizeof alone / sizeof alone[0]; i++) {
        char args[256], says[128];
        snprintf(args, sizeof args, EIGHT "%s tool-small.csv", alone[i]);
        snprintf(says, sizeof says, "%.*s applies to a re-plan: give "
                 "--current PLAN", (int)strcspn(alone[i], " "), alone[i]);
        tool_says(args, 2, says);
    }
    CU_ASSERT(access("tool-stages.json", F_OK) != 0);
    CU_ASSERT_FATAL(run_tool(EIGHT "tool-small.csv", "tool-cur.json") == 0);
    const struct { const char *arg, *says; } bad[] = {
        {"--max-copies-per-gpu -1",
         "--max-copies-per-gpu '-1': expected an integer in 0..2147483647"},
        {"--max-copies-per-gpu 3x", "--max-copies-per-gpu '3x': expected"},
        {"--max-copies-per-gpu 2147483648",
         "--max-copies-per-gpu '2147483648': expected an integer in 0.."},
        {"--max-copies -1", "--max-copies '-1': expected an integer >= 0"},
        {"--max-copies 3x", "--max-copies '3x': expected an integer >= 0"},
        {"--max-copies 99999999999999999999",
         "--max-copies '99999999999999999999': expected an integer >= 0"},
        {"--max-copies ' 3'", "--max-copies ' 3': expected"},
        {"--stage-copies-per-gpu 0",
         "--stage-copies-per-gpu '0': expected an integer in 1.."},
        {"--stage-copies-per-gpu -2", "--stage-copies-per-gpu '-2'"},
        {"--stage-copies-per-gpu 3x", "--stage-copies-per-gpu '3x'"},
        {"--min-gain 1.5", "--min-gain '1.5': expected a number in [0, 1)"},
        {"--min-gain 1", "--min-gain '1': expected a number in [0, 1)"},
        {"--min-gain -0.1", "--min-gain '-0.1': expected a number in"},
        {"--min-gain 3x", "--min-gain '3x': expected a number in [0, 1)"},
        {"--min-gain nan", "--min-gain 'nan': expected a number"},
        {"--min-gain 0x0.1", "--min-gain '0x0.1': expected a number"},
        {"--min-gain ''", "--min-gain '': expected a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[256];
        snprintf(args, sizeof args, EIGHT "--current tool-cur.json %s "
                 "tool-small.csv", bad[i].arg);
        tool_says(args, 2, bad[i].says);
    }
    /* The edges taken. */
    tool_says(EIGHT "--current tool-cur.json --max-copies-per-gpu 0 "
              "--max-copies 0 --stage-copies-per-gpu 1 --min-gain 0.99 "
              "tool-small.csv", 0, NULL);
    tool_says(EIGHT "--current tool-cur.json --min-gain 0 tool-small.csv",
              0, NULL);
#undef EIGHT
    remove("tool-cur.json");
    remove("tool-small.csv");
    remove(TOOL_STDERR);
}

/* Whether two plans' layer a of p and layer b of q are the same. */
static int same_layer(const test_plan *p, int a, const test_plan *q, int b,
                      const eplb_shape *s)
{
    size_t P = (size_t)s->num_replicas, E = (size_t)s->experts,
           X = P - E + 1;
    return memcmp(p->phy2log + a * P, q->phy2log + b * P,
                  P * sizeof(int32_t)) == 0 &&
           memcmp(p->log2phy + a * E * X, q->log2phy + b * E * X,
                  E * X * sizeof(int32_t)) == 0 &&
           memcmp(p->logcnt + a * E, q->logcnt + b * E,
                  E * sizeof(int32_t)) == 0;
}

/* The tool on every real file under the three reference configs
 * (doc/ALGORITHM.md section 12), deterministic: its JSON plan keeps the
 * file's 3 all-zero (dense) layers, and its other layers equal the
 * library's plan of the MoE layers (itself checked against the naive
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
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, test_workload_files[f]);
        load_matrix full;
        CU_ASSERT_FATAL(load_matrix_read(path, &full, err, sizeof err) == 0);
        for (int c = 0; c < 3; c++) {
            char args[8192];
            snprintf(args, sizeof args, "--candidates 1 --swap-rounds 0 "
                     "--repeat 0 --num-replicas %d --num-groups %d "
                     "--num-nodes %d --num-gpus %d %s", test_configs[c][0],
                     test_configs[c][1], test_configs[c][2],
                     test_configs[c][3], path);
            CU_ASSERT_FATAL(run_tool(args, "tool-real.json") == 0);
            size_t len;
            char *text = read_file("tool-real.json", &len, err, sizeof err);
            CU_ASSERT_FATAL(text != NULL);
            eplb_shape s = {full.layers, E, test_configs[c][0],
                            test_configs[c][1], test_configs[c][2],
                            test_configs[c][3]};
            eplb_shape moe = s;
            moe.layers = L;
            test_plan p, q;
            CU_ASSERT_FATAL(test_plan_alloc(&p, &s) == 0);
            CU_ASSERT(plan_parse_json(text, len, "tool-real.json", &s,
                                      p.phy2log, p.log2phy, p.logcnt, err,
                                      sizeof err) == 0);
            CU_ASSERT_FATAL(test_rebalance(EPLB_BACKEND_REFERENCE, 1, 0, 0,
                                           &moe, w, &q) == EPLB_OK);
            int k = 0;
            for (int l = 0; l < full.layers; l++) {
                const float *row = full.data + (size_t)l * E;
                int e = 0;
                while (e < E && row[e] == 0.0f)
                    e++;
                if (e == E)
                    continue;
                CU_ASSERT(k < L && same_layer(&p, l, &q, k, &s));
                k++;
            }
            CU_ASSERT(k == L && full.layers == L + 3);
            char *summary = read_file(TOOL_STDERR, &len, err,
                                      sizeof err);
            CU_ASSERT(summary && strstr(summary, "3 all-zero (dense) "
                                        "layers kept"));
            free(summary);
            free(text);
            test_plan_free(&p);
            test_plan_free(&q);
        }
        load_matrix_free(&full);
        free(w);
    }
    remove("tool-real.json");
    remove(TOOL_STDERR);
}

static CU_TestInfo tool_tests[] = {
    {"load file formats", test_formats},
    {"parse errors name line and column", test_parse_errors},
    {"strict CSV: no value changed silently", test_strict_csv},
    {"strict JSON (RFC 8259) and the library's load rules",
     test_strict_json},
    {"memory follows the matrix, not the text", test_memory_follows_matrix},
    {"plan JSON round trip", test_plan_round_trip},
    {"plan reader: 32-bit integers only", test_plan_reader_strict},
    {"eplb-cl runs and fails cleanly", test_tool_runs},
    {"eplb-cl --current: its own plan back, nothing moves", test_tool_current},
    {"plan reader: errors at the value's line and column",
     test_plan_reader_places},
    {"eplb-cl --current: a plan the library refuses, named at its place",
     test_tool_current_checked},
    {"eplb-cl: all-zero layers kept, --current of the file's layers, BOM",
     test_tool_zero_layer_current},
    {"eplb-cl: duplicate or conflicting GPU options, --tolerance alone",
     test_tool_option_conflicts},
    {"eplb-cl: FIFOs and devices refused at once", test_tool_special_files},
    {"eplb-cl --stages: the schedule read back, staged to the plan written",
     test_tool_stages},
    {"eplb-cl: migration options need --current and take only their range",
     test_tool_migration_options},
    {"real loads: eplb-cl on 12 files x 3 configs equals the library",
     test_real_file_through_tool},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"tool", NULL, NULL, NULL, NULL, tool_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
