/* Metrics for GET /metrics, in the Prometheus text exposition format 0.0.4.
 *
 * Request counters are kept per (route template, status code) in a small fixed table guarded
 * by one mutex: routes are a handful and codes a dozen, so it never fills in practice (extra
 * pairs are counted under code "other"). Label values are templates, never ids. */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define MAX_SERIES 128

/* Request-duration buckets in seconds: client_golang's DefBuckets with finer low end, since a
 * small /corr2d answers in well under a millisecond. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

struct series {
    const char *route; /* static string from the route table */
    int code;
    uint64_t count;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct series series[MAX_SERIES]; /* guarded by mu, like every static below */
static size_t n_series;
static uint64_t bucket_counts[N_BUCKETS + 1]; /* last: +Inf */
static double duration_sum;
static uint64_t duration_count;
static uint64_t jobs_done[2][6]; /* [kind][state] */
static atomic_uint_fast64_t train_steps;
/* the store (issue 11): claims and their latency, errors, resumed jobs */
static uint64_t claims;      /* guarded by mu */
static double claim_seconds; /* guarded by mu */
static atomic_uint_fast64_t store_errors, resumes;

void cv_metrics_request(const char *route, int code, double seconds) {
    pthread_mutex_lock(&mu);
    size_t i = 0;
    while (i < n_series && !(series[i].code == code && strcmp(series[i].route, route) == 0))
        i++;
    if (i == n_series && n_series < MAX_SERIES)
        series[n_series++] = (struct series){route, code, 0};
    if (i < n_series)
        series[i].count++;
    size_t b = 0;
    while (b < N_BUCKETS && seconds > buckets[b])
        b++;
    bucket_counts[b]++;
    duration_sum += seconds;
    duration_count++;
    pthread_mutex_unlock(&mu);
}

void cv_metrics_job_done(enum cv_job_kind kind, enum cv_job_state state) {
    pthread_mutex_lock(&mu);
    jobs_done[kind][state]++;
    pthread_mutex_unlock(&mu);
}

void cv_metrics_store_claim(double seconds) {
    pthread_mutex_lock(&mu);
    claims++;
    claim_seconds += seconds;
    pthread_mutex_unlock(&mu);
}

void cv_metrics_store_error(void) {
    atomic_fetch_add(&store_errors, 1);
}

void cv_metrics_store_resume(void) {
    atomic_fetch_add(&resumes, 1);
}

void cv_metrics_train_step(void) {
    atomic_fetch_add(&train_steps, 1);
}

/* A growable text buffer, enough for a few kilobytes of exposition. */
struct text {
    char *data;
    size_t len, cap;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...) {
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        /* The first call has no buffer yet: NULL + 0 is undefined, so pass NULL (size 0). */
        int n = vsnprintf(t->data ? t->data + t->len : NULL, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? 2 * t->cap : 4096;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *data = realloc(t->data, cap);
        if (data == NULL) {
            t->failed = true;
            return;
        }
        t->data = data;
        t->cap = cap;
    }
}

char *cv_metrics_render(struct cv_pool *pool, size_t *len) {
    struct text t = {0};
    put(&t,
        "# HELP convd_build_info Build information.\n# TYPE convd_build_info gauge\n"
        "convd_build_info{version=\"%s\",libmicrohttpd=\"%s\"} 1\n",
        CV_VERSION, MHD_get_version());
    pthread_mutex_lock(&mu);
    put(&t, "# HELP convd_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE convd_http_requests_total counter\n");
    for (size_t i = 0; i < n_series; i++)
        put(&t, "convd_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n", series[i].route,
            series[i].code, (unsigned long long)series[i].count);
    put(&t, "# HELP convd_http_request_duration_seconds Time from the first byte of a request "
            "to the end of its reply.\n# TYPE convd_http_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        cumulative += bucket_counts[b];
        put(&t, "convd_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[b],
            (unsigned long long)cumulative);
    }
    cumulative += bucket_counts[N_BUCKETS];
    put(&t,
        "convd_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
        "convd_http_request_duration_seconds_sum %.6f\n"
        "convd_http_request_duration_seconds_count %llu\n",
        (unsigned long long)cumulative, duration_sum, (unsigned long long)duration_count);
    put(&t, "# HELP convd_jobs_total Jobs finished, by kind and final status.\n"
            "# TYPE convd_jobs_total counter\n");
    static const char *const kinds[] = {"corr2d", "train"};
    static const enum cv_job_state finals[] = {CV_JOB_STATE_SUCCEEDED, CV_JOB_STATE_FAILED,
                                               CV_JOB_STATE_CANCELLED};
    for (int k = 0; k < 2; k++)
        for (size_t s = 0; s < sizeof finals / sizeof finals[0]; s++)
            put(&t, "convd_jobs_total{kind=\"%s\",status=\"%s\"} %llu\n", kinds[k],
                cv_job_state_name(finals[s]), (unsigned long long)jobs_done[k][finals[s]]);
    put(&t,
        "# HELP convd_store_claim_seconds Time of the store's claims that took a job (the "
        "claim statement; with PostgreSQL a round trip to the server).\n"
        "# TYPE convd_store_claim_seconds summary\n"
        "convd_store_claim_seconds_sum %.6f\nconvd_store_claim_seconds_count %llu\n",
        claim_seconds, (unsigned long long)claims);
    pthread_mutex_unlock(&mu);
    put(&t,
        "# HELP convd_store_errors_total Store calls that failed (unavailable, out of space or "
        "memory).\n# TYPE convd_store_errors_total counter\nconvd_store_errors_total %llu\n"
        "# HELP convd_store_resumes_total Jobs this process resumed from a checkpoint (another "
        "attempt).\n# TYPE convd_store_resumes_total counter\nconvd_store_resumes_total %llu\n",
        (unsigned long long)atomic_load(&store_errors), (unsigned long long)atomic_load(&resumes));
    /* The whole store's queue (with PostgreSQL: the fleet's), read now; left out while the
       store does not answer. */
    int64_t fleet_queued = 0, fleet_running = 0;
    if (cv_store_job_count(cv_srv.store, CV_STORE_JOB_QUEUED, &fleet_queued) == CV_STORE_OK &&
        cv_store_job_count(cv_srv.store, CV_STORE_JOB_RUNNING, &fleet_running) == CV_STORE_OK)
        put(&t,
            "# HELP convd_store_jobs Jobs in the store by status (every replica's, with "
            "PostgreSQL).\n# TYPE convd_store_jobs gauge\n"
            "convd_store_jobs{status=\"queued\"} %lld\nconvd_store_jobs{status=\"running\"} "
            "%lld\n",
            (long long)fleet_queued, (long long)fleet_running);
    int queued = 0, running = 0;
    cv_pool_counts(pool, &queued, &running);
    put(&t,
        "# HELP convd_queue_depth Jobs waiting for a worker.\n# TYPE convd_queue_depth gauge\n"
        "convd_queue_depth %d\n"
        "# HELP convd_workers_busy Workers running a job.\n# TYPE convd_workers_busy gauge\n"
        "convd_workers_busy %d\n"
        "# HELP convd_train_steps_total Training steps completed.\n"
        "# TYPE convd_train_steps_total counter\nconvd_train_steps_total %llu\n",
        queued, running, (unsigned long long)atomic_load(&train_steps));
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    if (len != NULL)
        *len = t.len;
    return t.data;
}
