/* Independent items (the layers of a re-plan) on several host threads.
 *
 * Items go out one at a time from a shared counter, so a slow item (a
 * layer whose search runs long) holds back one thread, not a fixed share
 * of the layers. Which thread runs an item changes nothing in what the
 * item computes: each worker owns its workspace, and the items write
 * disjoint outputs. The caller's thread is worker 0 and always works, so
 * threads that cannot start only cost time.
 *
 * The threads are a context's: started on its first call that needs
 * them, parked on a condition variable between calls, joined when the
 * context is destroyed. Starting a thread costs tens of microseconds on
 * a quiet machine and milliseconds on a busy one, against a re-plan of
 * a fraction of a millisecond. */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pool_run {
    void (*fn)(void *arg, int worker, int item);
    void *arg;
    int n;
    atomic_int next;
} pool_run;

typedef struct pool_thread {
    struct host_pool *pool;
    int id;
    unsigned seen; /* the last round it saw (or the round it was born in) */
} pool_thread;

struct host_pool {
    pid_t pid;       /* the process that started the threads */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_t th[EPLB_MAX_HOST_THREADS];
    pool_thread arg[EPLB_MAX_HOST_THREADS];
    int started;     /* threads 1..started are running */
    unsigned round;  /* a new round of work: the parked threads wake */
    int stop;
    pool_run *run;
    int workers;     /* threads with an id below this work this round */
    int pending;     /* of those, the ones not done yet */
};

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

static void *thread_main(void *p)
{
    pool_thread *t = p;
    struct host_pool *h = t->pool;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->round == t->seen && !h->stop)
            pthread_cond_wait(&h->wake, &h->mu);
        if (h->stop)
            break;
        t->seen = h->round;
        if (t->id >= h->workers)
            continue;
        pool_run *run = h->run;
        pthread_mutex_unlock(&h->mu);
        work(run, t->id);
        pthread_mutex_lock(&h->mu);
        if (--h->pending == 0)
            pthread_cond_signal(&h->done);
    }
    pthread_mutex_unlock(&h->mu);
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

int eplbi_reserve_workers(const eplbi_threads *threads, int items,
                          int (*reserve)(void *ws, int t, const plan_dims *d),
                          void *ws, const plan_dims *d)
{
    int workers = eplbi_host_threads(threads->option, items);
    for (int t = 0; t < workers; t++) {
        int rc = reserve(ws, t, d);
        if (rc && t == 0)
            return rc;
        if (rc) {
            eplbi_clear_error();
            return t;
        }
    }
    return workers;
}

/* The pool with at least `want` workers (the caller's thread counted),
 * started as needed; returns the workers it has (at least 1). */
static int pool_grow(host_pool **hp, int want)
{
    struct host_pool *h = *hp;
    if (want <= 1)
        return 1;
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h)
            return 1;
        if (pthread_mutex_init(&h->mu, NULL)) {
            free(h);
            return 1;
        }
        if (pthread_cond_init(&h->wake, NULL)) {
            pthread_mutex_destroy(&h->mu);
            free(h);
            return 1;
        }
        if (pthread_cond_init(&h->done, NULL)) {
            pthread_cond_destroy(&h->wake);
            pthread_mutex_destroy(&h->mu);
            free(h);
            return 1;
        }
        h->pid = getpid();
        *hp = h;
    }
    /* no round runs now: the fields are the caller's alone. The threads
     * start with every signal blocked: the process's signals go to the
     * caller's threads, never to these. */
    sigset_t all, old;
    sigfillset(&all);
    int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
    while (h->started + 1 < want) {
        int id = h->started + 1;
        h->arg[id] = (pool_thread){h, id, h->round};
        if (pthread_create(&h->th[id], NULL, thread_main, &h->arg[id]))
            break;
        h->started = id;
    }
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    return h->started + 1 < want ? h->started + 1 : want;
}

void eplbi_parallel_items(host_pool **hp, int workers, int n,
                          void (*fn)(void *arg, int worker, int item),
                          void *arg)
{
    pool_run run = {fn, arg, n, 0};
    if (workers > EPLB_MAX_HOST_THREADS)
        workers = EPLB_MAX_HOST_THREADS;
    /* A child of fork() has none of its parent's threads: it leaves the
     * pool it inherited (its memory, not its threads, which it cannot
     * join) and starts its own. */
    if (*hp && (*hp)->pid != getpid())
        *hp = NULL;
    workers = pool_grow(hp, workers);
    if (workers <= 1) {
        work(&run, 0);
        return;
    }
    struct host_pool *h = *hp;
    pthread_mutex_lock(&h->mu);
    h->run = &run;
    h->workers = workers;
    h->pending = workers - 1;
    h->round++;
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->mu);
    work(&run, 0);
    pthread_mutex_lock(&h->mu);
    while (h->pending > 0)
        pthread_cond_wait(&h->done, &h->mu);
    h->run = NULL;
    pthread_mutex_unlock(&h->mu);
}

void eplbi_host_pool_free(host_pool *h)
{
    if (!h || h->pid != getpid())
        return; /* (a fork()'s child: its parent's threads are not here) */
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->mu);
    for (int id = 1; id <= h->started; id++)
        pthread_join(h->th[id], NULL);
    pthread_cond_destroy(&h->done);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
