/* Threads that create their first contexts at the same moment. OpenCL
 * drivers (PoCL among them) set themselves up on the first call of a
 * process, and that setup is not always safe to race; so each round runs
 * in a fresh child process that has made no OpenCL call yet, where
 * several threads released by one barrier create a context each and make
 * a first plan on it (kernel builds and cache writes at once). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "eplb_cl.h"

#define MAX_THREADS 16
/* make check's rounds; make check-full sets EPLB_THREAD_ROUNDS=12 */
#define DEFAULT_ROUNDS 4

typedef struct racer {
    pthread_barrier_t *start;
    eplb_backend backend;
    int status;
    int opencl; /* 1 when the context runs the OpenCL backend */
} racer;

static void *create_one(void *arg)
{
    racer *r = arg;
    eplb_options o;
    eplb_options_default(&o);
    o.backend = r->backend;
    pthread_barrier_wait(r->start);
    eplb_context *ctx = NULL;
    r->status = eplb_context_create(&ctx, &o);
    if (r->status == EPLB_OK)
        r->opencl = strcmp(eplb_context_backend(ctx), "opencl") == 0;
    /* Then a first plan each, so kernel builds and cache writes race too. */
    eplb_shape s = {2, 8, 12, 4, 2, 4};
    float w[16];
    int32_t p2l[24], l2p[2 * 8 * 5], cnt[16];
    for (int i = 0; i < 16; i++)
        w[i] = (float)(i * 7 % 11 + 1);
    if (r->status == EPLB_OK)
        r->status = eplb_rebalance(ctx, &s, w, p2l, l2p, cnt);
    eplb_context_destroy(ctx);
    return NULL;
}

/* In the child: 0 when every thread got a context on the backend the
 * caller expects (want_opencl), 1 otherwise, with the reason printed. */
static int race(int threads, eplb_backend backend, int want_opencl)
{
    pthread_t t[MAX_THREADS];
    racer r[MAX_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        r[i] = (racer){&start, backend, -100, 0};
        pthread_create(&t[i], NULL, create_one, &r[i]);
    }
    int bad = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (r[i].status != EPLB_OK || r[i].opencl != want_opencl) {
            printf("  thread %d: %s, backend %s\n", i,
                   eplb_strerror(r[i].status),
                   r[i].opencl ? "opencl" : "reference");
            bad = 1;
        }
    }
    pthread_barrier_destroy(&start);
    return bad;
}

/* Runs one race in a fresh child process: its exit status, or 128 + the
 * signal that killed it. */
static int in_child(int threads, eplb_backend backend, int want_opencl)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(race(threads, backend, want_opencl));
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 255;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Whether this machine has an OpenCL device at all, asked of a child so
 * that this process stays free of OpenCL for the next forks. */
static int opencl_present(void)
{
    return in_child(1, EPLB_BACKEND_OPENCL, 1) == 0;
}

static int rounds(void)
{
    const char *v = getenv("EPLB_THREAD_ROUNDS");
    int n = v ? atoi(v) : DEFAULT_ROUNDS;
    return n > 0 ? n : DEFAULT_ROUNDS;
}

static void run_rounds(int threads, eplb_backend backend, int want_opencl)
{
    int n = rounds(), crashes = 0, wrong = 0;
    for (int i = 0; i < n; i++) {
        int rc = in_child(threads, backend, want_opencl);
        crashes += rc >= 128;
        wrong += rc != 0 && rc < 128;
    }
    printf("\n  %d rounds of %d threads: %d crashed, %d wrong\n", n, threads,
           crashes, wrong);
    CU_ASSERT(crashes == 0);
    CU_ASSERT(wrong == 0);
}

static int have_opencl = -1;

static int suite_init(void)
{
    have_opencl = opencl_present();
    if (!have_opencl)
        printf("\nno OpenCL device: only the auto backend is raced\n");
    return 0;
}

/* Backend auto: every thread must get the OpenCL backend where there is
 * one, never a silent fallback to the host. */
static void test_auto_two_threads(void)
{
    run_rounds(2, EPLB_BACKEND_AUTO, have_opencl);
}

static void test_opencl_many_threads(void)
{
    if (!have_opencl)
        return;
    run_rounds(8, EPLB_BACKEND_OPENCL, 1);
}


/* Two threads on one context (which the API rules out): each call either
 * plans or returns EPLB_ERR_BUSY, never hangs or corrupts the other's
 * plan. One thread re-plans DeepSeek's shape from a plan made for other
 * loads (tens of ms, its layers on the library's host threads); the other
 * calls while it runs. */
typedef struct sharer {
    eplb_context *ctx;
    const eplb_shape *s;
    const float *w;
    const int32_t *current;
    int32_t *p2l, *l2p, *cnt;
    int status;
    atomic_int done; /* the re-plan returned */
} sharer;

static void *replan_shared(void *arg)
{
    sharer *h = arg;
    h->status = eplb_rebalance_from(h->ctx, h->s, h->w, h->current, NULL,
                                    h->p2l, h->l2p, h->cnt);
    atomic_store(&h->done, 1);
    return NULL;
}

static void test_shared_context(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_REFERENCE;
    o.candidates = 1; /* the deterministic mode: light, still tens of ms */
    o.swap_rounds = 0;
    /* the re-plan's layers on 4 host threads, whatever the machine's
     * CPUs: under ThreadSanitizer the library's own threads race too */
    o.host_threads = 4;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    eplb_shape s = {58, 256, 288, 8, 4, 32}; /* DeepSeek's shape */
    size_t n_p2l, n_l2p, n_cnt;
    CU_ASSERT_FATAL(eplb_plan_sizes(&s, &n_p2l, &n_l2p, &n_cnt) == EPLB_OK);
    float *w = malloc(58 * 256 * sizeof(float));
    float *rev = malloc(58 * 256 * sizeof(float));
    int32_t *cur = malloc(n_p2l * 4), *p2l = malloc(n_p2l * 4),
            *l2p = malloc(n_l2p * 4), *cnt = malloc(n_cnt * 4),
            *q2l = malloc(n_p2l * 4), *m2p = malloc(n_l2p * 4),
            *qcnt = malloc(n_cnt * 4);
    CU_ASSERT_FATAL(w && rev && cur && p2l && l2p && cnt && q2l && m2p &&
                    qcnt);
    for (int i = 0; i < 58 * 256; i++) {
        w[i] = (float)(1 + (i * 7919) % 1000);
        rev[i] = (float)(1 + ((58 * 256 - i) * 104729) % 1000);
    }
    CU_ASSERT_FATAL(eplb_rebalance(ctx, &s, rev, cur, l2p, cnt) == EPLB_OK);
    int busy = 0, ok = 0, other = 0, said = 1;
    for (int round = 0; round < 5; round++) {
        sharer h = {ctx, &s, w, cur, p2l, l2p, cnt, -99, 0};
        pthread_t t;
        CU_ASSERT_FATAL(pthread_create(&t, NULL, replan_shared, &h) == 0);
        while (!atomic_load(&h.done)) {
            int rc = eplb_rebalance(ctx, &s, w, q2l, m2p, qcnt);
            busy += rc == EPLB_ERR_BUSY;
            ok += rc == EPLB_OK;
            other += rc != EPLB_OK && rc != EPLB_ERR_BUSY;
            if (rc == EPLB_ERR_BUSY)
                said &= strstr(eplb_last_error(), "one context per thread")
                        != NULL;
        }
        pthread_join(t, NULL);
        CU_ASSERT(h.status == EPLB_OK || h.status == EPLB_ERR_BUSY);
        busy += h.status == EPLB_ERR_BUSY;
    }
    printf("\n    shared context: %d busy, %d planned\n", busy, ok);
    CU_ASSERT(other == 0);
    CU_ASSERT(said);
    /* the calls did overlap (each takes tens of ms): the guard was met */
    CU_ASSERT(busy > 0);
    /* the context still plans once the other call is over */
    CU_ASSERT(eplb_rebalance(ctx, &s, w, q2l, m2p, qcnt) == EPLB_OK);
    /* a budgeted, staged re-plan: the schedule's ordering and the greedy
     * copies' first searches on the same host threads */
    eplb_request req;
    eplb_request_default(&req);
    req.current_phy2log = cur;
    req.max_copies_per_gpu = 2;
    req.stage_copies_per_gpu = 1;
    CU_ASSERT(eplb_plan(ctx, &s, w, &req, q2l, m2p, qcnt) == EPLB_OK);
    eplb_context_destroy(ctx);
    free(w); free(rev); free(cur); free(p2l); free(l2p); free(cnt);
    free(q2l); free(m2p); free(qcnt);
}

/* A context whose host threads are parked, then fork(): the child (which
 * has none of them) plans, re-plans and destroys the context without
 * hanging; the parent's context plans on after. */
static void test_fork_after_threads(void)
{
    eplb_options o;
    eplb_options_default(&o);
    o.backend = EPLB_BACKEND_REFERENCE;
    o.candidates = 1;
    o.swap_rounds = 0;
    o.host_threads = 3;
    eplb_context *ctx;
    CU_ASSERT_FATAL(eplb_context_create(&ctx, &o) == EPLB_OK);
    eplb_shape s = {6, 16, 24, 4, 2, 4};
    float w[6 * 16], v[6 * 16];
    int32_t p2l[6 * 24], l2p[6 * 16 * 9], cnt[6 * 16], q2l[6 * 24];
    for (int i = 0; i < 6 * 16; i++) {
        w[i] = (float)(1 + (i * 7919) % 97);
        v[i] = (float)(1 + (i * 104729) % 89);
    }
    CU_ASSERT_FATAL(eplb_rebalance(ctx, &s, w, p2l, l2p, cnt) == EPLB_OK);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        alarm(20); /* a hang ends the child with SIGALRM */
        int ok = eplb_rebalance(ctx, &s, v, q2l, l2p, cnt) == EPLB_OK &&
                 eplb_rebalance_from(ctx, &s, w, q2l, NULL, p2l, l2p,
                                     cnt) == EPLB_OK;
        eplb_context_destroy(ctx);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CU_ASSERT(waitpid(pid, &status, 0) == pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(eplb_rebalance_from(ctx, &s, v, p2l, NULL, q2l, l2p, cnt) ==
              EPLB_OK);
    eplb_context_destroy(ctx);
}

static CU_TestInfo thread_tests[] = {
    {"2 threads, backend auto, first contexts at once",
     test_auto_two_threads},
    {"8 threads, backend opencl, first contexts at once",
     test_opencl_many_threads},
    {"2 threads on one context: a plan or EPLB_ERR_BUSY",
     test_shared_context},
    {"fork() after the host threads started", test_fork_after_threads},
    CU_TEST_INFO_NULL};

static CU_SuiteInfo suites[] = {
    {"threads", suite_init, NULL, NULL, NULL, thread_tests},
    CU_SUITE_INFO_NULL};

int main(void)
{
    return run_suites(suites);
}
