/* Independent items (the layers of a re-plan) on several host threads.
 *
 * Items go out one at a time from a shared counter, so a slow item (a
 * layer whose search runs long) holds back one thread, not a fixed share
 * of the layers. Which thread runs an item changes nothing in what the
 * item computes: each worker owns its workspace, and the items write
 * disjoint outputs. The caller's thread is worker 0 and always works, so
 * threads that cannot start only cost time. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct pool_run {
    void (*fn)(void *arg, int worker, int item);
    void *arg;
    int n;
    atomic_int next;
} pool_run;

typedef struct pool_worker {
    pool_run *run;
    int id;
} pool_worker;

static void work(pool_run *run, int id)
{
    for (;;) {
        int i = atomic_fetch_add_explicit(&run->next, 1,
                                          memory_order_relaxed);
        if (i >= run->n)
            return;
        run->fn(run->arg, id, i);
    }
}

static void *worker_main(void *p)
{
    pool_worker *w = p;
    work(w->run, w->id);
    return NULL;
}

int eplbi_host_threads(int option, int items)
{
    int n = option;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus < 1 ? 1 : cpus > EPLB_HOST_THREADS_AUTO_MAX
                               ? EPLB_HOST_THREADS_AUTO_MAX
                               : (int)cpus;
    }
    if (n > items)
        n = items;
    if (n > EPLB_MAX_HOST_THREADS)
        n = EPLB_MAX_HOST_THREADS;
    return n < 1 ? 1 : n;
}

void eplbi_parallel_items(int workers, int n,
                          void (*fn)(void *arg, int worker, int item),
                          void *arg)
{
    pool_run run = {fn, arg, n, 0};
    pthread_t th[EPLB_MAX_HOST_THREADS];
    pool_worker w[EPLB_MAX_HOST_THREADS];
    int started[EPLB_MAX_HOST_THREADS] = {0};
    if (workers > EPLB_MAX_HOST_THREADS)
        workers = EPLB_MAX_HOST_THREADS;
    for (int t = 1; t < workers; t++) {
        w[t] = (pool_worker){&run, t};
        started[t] = pthread_create(&th[t], NULL, worker_main, &w[t]) == 0;
    }
    work(&run, 0);
    for (int t = 1; t < workers; t++)
        if (started[t])
            pthread_join(th[t], NULL);
}
