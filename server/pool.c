/* The one worker pool: a fixed set of pthreads sharing a bounded FIFO of work items.
 *
 * Design (after Redis bio.c and libuv's threadpool): one mutex guards the queue, the counters
 * and `stopping`; `cond` is signalled when an item is queued or the pool stops. Submitting
 * never blocks: a full queue returns CV_EAGAIN so the caller can answer 503 at once. */
#include <stdlib.h>

#include "server.h"

struct pool_item {
    cv_pool_fn fn;
    void *arg;
};

struct cv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Guarded by mu: */
    struct pool_item *ring; /* capacity cap, items at head..head+len */
    int cap, head, len;
    int running;
    bool stopping;
    /* Fixed after cv_pool_new: */
    int threads;
    int n_workers;
    pthread_t *workers;
};

static void *worker_main(void *arg) {
    struct cv_pool *pool = arg;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        /* The loop always starts with the lock held. */
        if (pool->len == 0) {
            if (pool->stopping)
                break;
            pthread_cond_wait(&pool->cond, &pool->mu);
            continue;
        }
        struct pool_item item = pool->ring[pool->head];
        pool->head = (pool->head + 1) % pool->cap;
        pool->len--;
        pool->running++;
        pthread_mutex_unlock(&pool->mu);
        item.fn(item.arg, pool->threads);
        pthread_mutex_lock(&pool->mu);
        pool->running--;
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int cv_pool_new(int workers, int threads, int queue, struct cv_pool **out) {
    *out = NULL;
    if (workers < 1 || threads < 1 || queue < 1)
        return CV_EINVAL;
    struct cv_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return CV_ENOMEM;
    /* Waiting room for `queue` items beyond the ones being run. */
    pool->cap = queue;
    pool->threads = threads;
    pool->ring = calloc((size_t)pool->cap, sizeof *pool->ring);
    pool->workers = calloc((size_t)workers, sizeof *pool->workers);
    if (pool->ring == NULL || pool->workers == NULL) {
        free(pool->ring);
        free(pool->workers);
        free(pool);
        return CV_ENOMEM;
    }
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cond, NULL);
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&pool->workers[i], NULL, worker_main, pool) != 0)
            break;
        pool->n_workers++;
    }
    if (pool->n_workers == 0) {
        cv_pool_free(pool);
        return CV_ENOMEM;
    }
    *out = pool;
    return CV_OK;
}

int cv_pool_submit(struct cv_pool *pool, cv_pool_fn fn, void *arg) {
    int rc = CV_OK;
    pthread_mutex_lock(&pool->mu);
    if (pool->stopping) {
        rc = CV_ECANCELED;
    } else if (pool->len >= pool->cap) {
        rc = CV_EAGAIN;
    } else {
        pool->ring[(pool->head + pool->len) % pool->cap] = (struct pool_item){fn, arg};
        pool->len++;
        pthread_cond_signal(&pool->cond);
    }
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

void cv_pool_counts(struct cv_pool *pool, int *queued, int *running) {
    pthread_mutex_lock(&pool->mu);
    *queued = pool->len;
    *running = pool->running;
    pthread_mutex_unlock(&pool->mu);
}

bool cv_pool_admits(struct cv_pool *pool) {
    pthread_mutex_lock(&pool->mu);
    const bool ok = !pool->stopping && pool->len < pool->cap;
    pthread_mutex_unlock(&pool->mu);
    return ok;
}

void cv_pool_free(struct cv_pool *pool) {
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n_workers; i++)
        pthread_join(pool->workers[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cond);
    free(pool->ring);
    free(pool->workers);
    free(pool);
}
