/* Route table and handlers. Handlers run on the connection's thread with the whole body read;
 * compute always goes to the worker pool. */
#include <math.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

/* Milliseconds between checks that a waiting client is still there. */
#define WAIT_SLICE_MS 50

static struct cv_api_limits limits(void) {
    return (struct cv_api_limits){cv_srv.cfg.max_elements, cv_srv.cfg.max_steps};
}

/* Refuses new work while draining. Returns true when a 503 was queued. */
static bool refuse_if_draining(struct MHD_Connection *conn, struct cv_req *req, int *ret) {
    if (!atomic_load(&cv_srv.draining))
        return false;
    *ret = cv_http_reply_status(conn, req, CV_ECANCELED);
    return true;
}

/* Waits for a job to end; cancels it and returns false when the client leaves first. */
static bool wait_job(struct MHD_Connection *conn, struct cv_req *req, struct cv_job *job) {
    while (!cv_job_wait_terminal(job, WAIT_SLICE_MS)) {
        if (cv_http_client_gone(conn)) {
            cv_job_cancel(job);
            req->status = 499; /* logged as nginx does: the client closed the request */
            return false;
        }
    }
    return true;
}

/* Multiply-adds up to which a synchronous /corr2d runs on the connection's own thread: a few
 * microseconds of arithmetic, where handing the job to a pool worker and waking the connection
 * again cost more than the work (2 context switches a request; the seed's /corr2d under wrk
 * -c64 went from ~39k to ~60k requests/s, p50 1.2 -> 0.6 ms). Below the compute layer's
 * parallel threshold, so no OpenMP team is ever started on a connection thread. */
#define CV_INLINE_MACS_MAX ((int64_t)1 << 16)

static int64_t corr2d_macs(const struct cv_corr2d_request *r) {
    return cv_tensor_numel(&r->y) * r->k.c * r->k.h * r->k.w;
}

/* Multiply-adds of one training step: the forward pass and the kernel gradient. */
static int64_t train_step_macs(const struct cv_train_request *r) {
    return 2 * cv_tensor_numel(&r->y) * r->weight.c * r->weight.h * r->weight.w;
}

/* Refuses work of more than --max-macs multiply-adds with 422 too_expensive before it is queued,
 * so one request cannot hold a worker for minutes. Returns true when the reply was queued. */
static bool refuse_if_costly(struct MHD_Connection *conn, struct cv_req *req, int64_t macs,
                             const char *what, int *ret) {
    if (macs <= cv_srv.cfg.max_macs)
        return false;
    struct cv_api_error err;
    cv_api_error_set(&err, 422, "too_expensive", "/kernel",
                     "%s needs %.3g multiply-adds; this daemon takes at most %.3g (--max-macs): "
                     "use a smaller input or kernel",
                     what, (double)macs, (double)cv_srv.cfg.max_macs);
    *ret = cv_http_reply_problem(conn, req, &err);
    return true;
}

/* Bytes a /corr2d reply holds: the output tensor and its rendered text (at most ~16 bytes an
 * element as JSON numbers). */
static int64_t corr2d_reply_bytes(const struct cv_corr2d_request *r) {
    return cv_tensor_numel(&r->y) * (int64_t)(sizeof(float) + 16);
}

#define NON_FINITE_DETAIL                                                                          \
    "the output overflowed float32 (an element is infinite or NaN); scale the input or kernel "    \
    "down"

/* Replies to a parsed /corr2d: the result, or the status of a failed run. */
static int reply_corr2d(struct MHD_Connection *conn, struct cv_req *req,
                        struct cv_corr2d_request *r, int status, double t_parse, double t_queue,
                        double t_compute) {
    if (status != CV_OK)
        return cv_http_reply_status(conn, req, status);
    if (!cv_tensor_all_finite(&r->y)) {
        /* float32 overflow (or inf - inf): an error with a code, as a diverged training is,
         * never null elements or an inf in base64. */
        struct cv_api_error err;
        cv_api_error_set(&err, 422, "non_finite_output", "/input", "%s", NON_FINITE_DETAIL);
        return cv_http_reply_problem(conn, req, &err);
    }
    double t_render = cv_now_ms();
    size_t len = 0;
    char *body = cv_api_corr2d_reply_dump(r, &len);
    t_render = cv_now_ms() - t_render;
    /* Where the time went, for browsers' dev tools and bench/: the JSON, not the arithmetic,
     * dominates large requests (bench/HTTP.md). */
    snprintf(req->server_timing, sizeof req->server_timing,
             "parse;dur=%.3f, queue;dur=%.3f, compute;dur=%.3f, render;dur=%.3f", t_parse, t_queue,
             t_compute, t_render);
    return body ? cv_http_reply_take(conn, req, 200, "application/json", body, len)
                : cv_http_reply_status(conn, req, CV_ENOMEM);
}

/* A tiny /corr2d on the connection's thread (CV_INLINE_MACS_MAX); refused with 503 exactly
 * when the pool would refuse it, and counted in the job metrics like a pool job. */
static int corr2d_inline(struct MHD_Connection *conn, struct cv_req *req,
                         struct cv_corr2d_request *r, double t_parse) {
    if (!cv_pool_admits(cv_srv.pool)) {
        cv_api_corr2d_request_free(r);
        return cv_http_reply_status(conn, req, CV_EAGAIN);
    }
    double t_compute = cv_now_ms();
    int st = cv_corr2d_forward(&r->x, &r->k, r->bias, &r->geom, &r->y, 1);
    t_compute = cv_now_ms() - t_compute;
    cv_metrics_job_done(CV_JOB_KIND_CORR2D,
                        st == CV_OK ? CV_JOB_STATE_SUCCEEDED : CV_JOB_STATE_FAILED);
    int ret = reply_corr2d(conn, req, r, st, t_parse, 0.0, t_compute);
    cv_api_corr2d_request_free(r);
    return ret;
}

static int handle_corr2d(struct MHD_Connection *conn, struct cv_req *req) {
    int ret = MHD_NO;
    if (refuse_if_draining(conn, req, &ret))
        return ret;
    struct cv_api_limits lim = limits();
    struct cv_corr2d_request parsed;
    struct cv_api_error err;
    double t_parse = cv_now_ms();
    if (cv_api_corr2d_parse(req->body, req->body_len, &lim, &parsed, &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    t_parse = cv_now_ms() - t_parse;
    if (refuse_if_costly(conn, req, corr2d_macs(&parsed), "this corr2d", &ret) ||
        !cv_http_reserve(req, corr2d_reply_bytes(&parsed))) {
        cv_api_corr2d_request_free(&parsed);
        return req->replied ? ret : cv_http_reply_status(conn, req, CV_ENOMEM);
    }
    if (corr2d_macs(&parsed) <= CV_INLINE_MACS_MAX)
        return corr2d_inline(conn, req, &parsed, t_parse);
    struct cv_job *job;
    int rc = cv_job_new(CV_JOB_KIND_CORR2D, &parsed, false, &job);
    if (rc != CV_OK) {
        cv_api_corr2d_request_free(&parsed);
        return cv_http_reply_status(conn, req, rc);
    }
    double t_submit = cv_now_ms();
    rc = cv_job_submit(job, cv_srv.pool);
    if (rc != CV_OK) {
        cv_job_unref(job);
        return cv_http_reply_status(conn, req, rc);
    }
    if (!wait_job(conn, req, job)) {
        cv_job_unref(job);
        return MHD_NO;
    }
    ret = reply_corr2d(conn, req, &job->corr2d, job->status, t_parse, job->started_ms - t_submit,
                       job->elapsed_ms);
    cv_job_unref(job);
    return ret;
}

/* True when the Accept header asks for Server-Sent Events. */
static bool wants_sse(struct MHD_Connection *conn) {
    return cv_reqparse_wants_sse(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept"));
}

/* The "stream": false reply of a finished training job. */
static int reply_train_result(struct MHD_Connection *conn, struct cv_req *req, struct cv_job *job) {
    if (job->status == CV_EDIVERGED) {
        struct cv_api_error err;
        cv_api_error_set(&err, 422, "diverged", "/lr",
                         "training diverged at step %d: the loss or a parameter became NaN or "
                         "infinite; try a smaller lr",
                         (int)job->result.steps_done + 1);
        return cv_http_reply_problem(conn, req, &err);
    }
    if (job->status != CV_OK && job->status != CV_ECANCELED)
        return cv_http_reply_status(conn, req, job->status);
    size_t len = 0;
    const char *status = job->status == CV_OK ? "succeeded" : "cancelled";
    char *body = cv_api_train_reply_dump(&job->train, status, &job->result, job->losses,
                                         job->result.steps_done, job->elapsed_ms, &len);
    int ret = body ? cv_http_reply(conn, req, 200, "application/json", body, len)
                   : cv_http_reply_status(conn, req, CV_ENOMEM);
    free(body);
    return ret;
}

static int handle_train(struct MHD_Connection *conn, struct cv_req *req) {
    int ret;
    if (refuse_if_draining(conn, req, &ret))
        return ret;
    struct cv_api_limits lim = limits();
    struct cv_train_request parsed;
    struct cv_api_error err;
    if (cv_api_train_parse(req->body, req->body_len, &lim, &parsed, &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    if (refuse_if_costly(conn, req, train_step_macs(&parsed), "one training step", &ret)) {
        cv_api_train_request_free(&parsed);
        return ret;
    }
    bool stream = parsed.stream;
    if (!cv_pool_admits(cv_srv.pool)) { /* refuse before storing anything */
        cv_api_train_request_free(&parsed);
        return cv_http_reply_status(conn, req, CV_EAGAIN);
    }
    struct cv_job *job;
    int rc = cv_job_new(CV_JOB_KIND_TRAIN, &parsed, true, &job);
    if (rc != CV_OK) {
        cv_api_train_request_free(&parsed);
        return cv_http_reply_status(conn, req, rc);
    }
    job->resumable = false; /* its client is attached to this process */
    snprintf(req->job_id, sizeof req->job_id, "%s", job->id);
    /* The start event goes first, before the job can run, so every reader sees it first. */
    size_t len = 0;
    char *start = cv_api_event_start_dump(&job->train, job->id, &len);
    cv_job_push_event(job, "start", start, len);
    rc = cv_job_register(job, false);
    if (rc != CV_OK) {
        cv_job_unref(job);
        return rc == CV_EAGAIN ? cv_http_reply_store_error(conn, req, CV_STORE_UNAVAILABLE)
                               : cv_http_reply_status(conn, req, rc);
    }
    rc = cv_job_submit(job, cv_srv.pool);
    if (rc != CV_OK) {
        cv_job_unregister(job);
        cv_job_unref(job);
        return cv_http_reply_status(conn, req, rc);
    }
    if (stream) {
        ret = cv_stream_reply(conn, req, job->id, job, 0, wants_sse(conn), true);
    } else if (!wait_job(conn, req, job)) {
        ret = MHD_NO;
    } else {
        ret = reply_train_result(conn, req, job);
    }
    cv_job_unref(job);
    return ret;
}

static int handle_kernels(struct MHD_Connection *conn, struct cv_req *req) {
    size_t len = 0;
    char *body = NULL;
    int rc = cv_kreg_list_dump(&body, &len);
    if (rc != CV_OK)
        return rc == CV_EAGAIN ? cv_http_reply_store_error(conn, req, CV_STORE_UNAVAILABLE)
                               : cv_http_reply_status(conn, req, rc);
    return cv_http_reply_take(conn, req, 200, "application/json", body, len);
}

static int handle_healthz(struct MHD_Connection *conn, struct cv_req *req) {
    static const char ok[] = "{\"status\":\"ok\"}";
    return cv_http_reply(conn, req, 200, "application/json", ok, sizeof ok - 1);
}

static int handle_readyz(struct MHD_Connection *conn, struct cv_req *req) {
    static const char ready[] = "{\"status\":\"ready\"}";
    static const char draining[] = "{\"status\":\"draining\"}";
    static const char store[] = "{\"status\":\"store_unavailable\"}";
    if (atomic_load(&cv_srv.draining))
        return cv_http_reply(conn, req, 503, "application/json", draining, sizeof draining - 1);
    /* Not ready while the store fails: a write failed (disk full) or it does not answer. */
    int st = cv_store_ping(cv_srv.store);
    if (st == CV_STORE_OK && !atomic_load(&cv_srv.store_ok))
        cv_store_health(st); /* the ping wrote successfully: the disk has room again */
    if (st != CV_STORE_OK) {
        cv_store_health(st);
        return cv_http_reply(conn, req, 503, "application/json", store, sizeof store - 1);
    }
    return cv_http_reply(conn, req, 200, "application/json", ready, sizeof ready - 1);
}

/* ---- jobs ---------------------------------------------------------------------------------- */

/* The job resource as it stands (caller free()s); NULL when out of memory. */
static char *job_dump(struct cv_job *job, bool with_losses, size_t *len) {
    char times[3][40];
    struct cv_api_job_view v;
    pthread_mutex_lock(&job->mu);
    cv_job_view_locked(job, &v, times, with_losses);
    char *body = cv_api_job_dump(&v, true, len);
    pthread_mutex_unlock(&job->mu);
    return body;
}

static char *row_dump(const struct cv_store_job *row, bool with_losses, size_t *len) {
    char times[3][40];
    struct cv_api_job_view v;
    cv_job_view_row(row, &v, times, with_losses);
    return cv_api_job_dump(&v, true, len);
}

/* Replies with a rendered job resource (status 200 or 202), taking ownership of body;
 * location, when not NULL, becomes the Location header. */
static int reply_job_body(struct MHD_Connection *conn, struct cv_req *req, char *body, size_t len,
                          int status, const char *location) {
    if (body == NULL)
        return cv_http_reply_status(conn, req, CV_ENOMEM);
    if (location != NULL)
        snprintf(req->location, sizeof req->location, "%s", location);
    return cv_http_reply_take(conn, req, status, "application/json", body, len);
}

/* GET /jobs/{id}?include=losses: the result keeps every step's loss. */
static bool wants_losses(struct MHD_Connection *conn) {
    const char *include = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "include");
    return include != NULL && strcmp(include, "losses") == 0;
}

static int handle_job_create(struct MHD_Connection *conn, struct cv_req *req) {
    int ret;
    if (refuse_if_draining(conn, req, &ret))
        return ret;
    struct cv_api_limits lim = limits();
    struct cv_api_error err;
    enum cv_api_job_kind kind;
    if (cv_api_job_kind_peek(req->body, req->body_len, &kind, &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    /* --queue bounds the jobs this process accepted and has not started. */
    if (cv_jobs_queued() >= cv_srv.cfg.queue)
        return cv_http_reply_status(conn, req, CV_EAGAIN);
    struct cv_corr2d_request c;
    struct cv_train_request t;
    struct cv_job *job;
    int rc;
    if (kind == CV_API_JOB_KIND_TRAIN) {
        if (cv_api_train_parse(req->body, req->body_len, &lim, &t, &err) != CV_OK)
            return cv_http_reply_problem(conn, req, &err);
        if (refuse_if_costly(conn, req, train_step_macs(&t), "one training step", &ret)) {
            cv_api_train_request_free(&t);
            return ret;
        }
        rc = cv_job_new(CV_JOB_KIND_TRAIN, &t, true, &job);
        if (rc != CV_OK)
            cv_api_train_request_free(&t);
    } else {
        if (cv_api_corr2d_parse(req->body, req->body_len, &lim, &c, &err) != CV_OK)
            return cv_http_reply_problem(conn, req, &err);
        if (refuse_if_costly(conn, req, corr2d_macs(&c), "this corr2d", &ret)) {
            cv_api_corr2d_request_free(&c);
            return ret;
        }
        rc = cv_job_new(CV_JOB_KIND_CORR2D, &c, true, &job);
        if (rc != CV_OK)
            cv_api_corr2d_request_free(&c);
    }
    if (rc != CV_OK)
        return cv_http_reply_status(conn, req, rc);
    snprintf(req->job_id, sizeof req->job_id, "%s", job->id);
    if (kind == CV_API_JOB_KIND_TRAIN) {
        size_t len = 0;
        char *start = cv_api_event_start_dump(&job->train, job->id, &len);
        cv_job_push_event(job, "start", start, len);
    }
    /* The reply shows the job as accepted, "queued", whatever the worker does next. */
    size_t len = 0;
    char *body = job_dump(job, false, &len);
    rc = cv_job_register(job, true);
    if (rc != CV_OK) {
        free(body);
        cv_job_unref(job);
        return rc == CV_EAGAIN ? cv_http_reply_store_error(conn, req, CV_STORE_UNAVAILABLE)
                               : cv_http_reply_status(conn, req, rc);
    }
    char location[64];
    snprintf(location, sizeof location, "/jobs/%s", job->id);
    ret = reply_job_body(conn, req, body, len, 202, location);
    cv_job_unref(job);
    return ret;
}

/* A 400 for a bad query parameter. */
static int reply_bad_query(struct MHD_Connection *conn, struct cv_req *req, const char *name,
                           const char *detail) {
    struct cv_api_error err;
    char pointer[40];
    snprintf(pointer, sizeof pointer, "?%s", name);
    cv_api_error_set(&err, 400, "invalid_query", pointer, "%s", detail);
    return cv_http_reply_problem(conn, req, &err);
}

/* Feeds each query argument to the GET /jobs parser. */
static enum MHD_Result collect_jobs_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value) {
    (void)kind;
    cv_reqparse_jobs_query_add(cls, key, value);
    return MHD_YES;
}

/* True when a job's labels (JSON text or NULL) match every selector. */
static bool labels_match(const char *labels_json, const struct cv_reqparse_jobs_query *q) {
    for (int i = 0; i < q->n_labels; i++)
        if (!cv_api_labels_match(labels_json, q->labels[i]))
            return false;
    return true;
}

static int handle_job_list(struct MHD_Connection *conn, struct cv_req *req) {
    struct cv_reqparse_jobs_query lq;
    struct cv_api_error err;
    cv_reqparse_jobs_query_init(&lq);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_jobs_query, &lq);
    if (cv_reqparse_jobs_query_finish(&lq, &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    long long limit = lq.limit;
    int state = -1;
    if (lq.status != NULL) {
        for (int st = 0; st <= CV_JOB_STATE_CANCELLED && state < 0; st++)
            if (strcmp(lq.status, cv_job_state_name((enum cv_job_state)st)) == 0)
                state = st;
        if (state < 0)
            return reply_bad_query(conn, req, "status",
                                   "status must be one of queued, running, succeeded, failed, "
                                   "cancelling, cancelled");
    }
    /* The store lists every job; live ones are shown as this process sees them (fresher). */
    static const int to_store[] = {
        [CV_JOB_STATE_QUEUED] = CV_STORE_JOB_QUEUED,
        [CV_JOB_STATE_RUNNING] = CV_STORE_JOB_RUNNING,
        [CV_JOB_STATE_SUCCEEDED] = CV_STORE_JOB_SUCCEEDED,
        [CV_JOB_STATE_FAILED] = CV_STORE_JOB_FAILED,
        [CV_JOB_STATE_CANCELLING] = CV_STORE_JOB_RUNNING,
        [CV_JOB_STATE_CANCELLED] = CV_STORE_JOB_CANCELLED,
    };
    struct cv_store_query q = {.status = state < 0 ? -1 : to_store[state],
                               /* with a label filter the limit applies to the matches */
                               .limit = lq.n_labels > 0 ? CV_REQPARSE_JOBS_MAX : (size_t)limit};
    struct cv_store_job *rows = NULL;
    size_t n = 0;
    int st = cv_store_job_list(cv_srv.store, &q, &rows, &n);
    cv_store_health(st);
    if (st != CV_STORE_OK)
        return cv_http_reply_store_error(conn, req, st);
    struct cv_job **live = calloc(n ? n : 1, sizeof *live);
    struct cv_api_job_view *views = calloc(n ? n : 1, sizeof *views);
    char(*times)[3][40] = calloc(n ? n : 1, sizeof *times);
    char(*details)[sizeof live[0]->error_detail] = calloc(n ? n : 1, sizeof *details);
    char *body = NULL;
    size_t len = 0, m = 0;
    if (live && views && times && details) {
        for (size_t i = 0; i < n; i++)
            live[i] = cv_jobs_find(rows[i].id);
        /* A live job's view is copied under its own lock, one job at a time, and rendered
         * after every lock is released: a worker stepping a job never waits for the whole
         * list. The view's strings are the job's immutable id, static names, and copies. */
        for (size_t i = 0; i < n && m < (size_t)limit; i++) {
            if (!labels_match(rows[i].labels_json, &lq))
                continue;
            if (live[i] != NULL) {
                pthread_mutex_lock(&live[i]->mu);
                cv_job_view_locked(live[i], &views[m], times[m], false);
                if (views[m].error_detail != NULL) {
                    snprintf(details[m], sizeof details[m], "%s", views[m].error_detail);
                    views[m].error_detail = details[m];
                }
                views[m].result_json = NULL; /* lists leave the result out */
                pthread_mutex_unlock(&live[i]->mu);
            } else {
                cv_job_view_row(&rows[i], &views[m], times[m], false);
            }
            /* cancelling is running with a cancel request: filter on what is shown */
            if (state < 0 || strcmp(views[m].status, cv_job_state_name(state)) == 0)
                m++;
        }
        body = cv_api_job_list_dump(views, m, &len);
        for (size_t i = 0; i < n; i++)
            cv_job_unref(live[i]);
    }
    free(live);
    free(views);
    free(times);
    cv_store_jobs_free(rows, n);
    free(details);
    int ret = body ? cv_http_reply(conn, req, 200, "application/json", body, len)
                   : cv_http_reply_status(conn, req, CV_ENOMEM);
    free(body);
    return ret;
}

static int reply_not_found(struct MHD_Connection *conn, struct cv_req *req) {
    struct cv_api_error err;
    cv_api_error_set(&err, 404, "not_found", NULL,
                     "no job %s (finished jobs are kept up to --job-history and --job-ttl)",
                     req->path_id);
    return cv_http_reply_problem(conn, req, &err);
}

/* Looks up the job named by the path: live (*job, referenced) or stored (*row, loaded with
 * flags). Replies 404 or 503 and returns false when neither. */
static bool find_job(struct MHD_Connection *conn, struct cv_req *req, unsigned flags,
                     struct cv_job **job, struct cv_store_job *row, int *ret) {
    memset(row, 0, sizeof *row);
    *job = cv_jobs_find(req->path_id);
    if (*job != NULL) {
        snprintf(req->job_id, sizeof req->job_id, "%s", (*job)->id);
        return true;
    }
    int st = cv_store_job_get(cv_srv.store, req->path_id, flags, row);
    if (st == CV_STORE_OK) {
        /* It may have become live between the two looks: prefer the live job. */
        *job = cv_jobs_find(req->path_id);
        snprintf(req->job_id, sizeof req->job_id, "%s", row->id);
        return true;
    }
    cv_store_health(st);
    *ret = st == CV_STORE_NOT_FOUND ? reply_not_found(conn, req)
                                    : cv_http_reply_store_error(conn, req, st);
    return false;
}

static int handle_job_get(struct MHD_Connection *conn, struct cv_req *req) {
    int ret;
    struct cv_job *job;
    struct cv_store_job row;
    if (!find_job(conn, req, CV_STORE_LOAD_RESULT, &job, &row, &ret))
        return ret;
    size_t len = 0;
    bool losses = wants_losses(conn);
    char *body = job ? job_dump(job, losses, &len) : row_dump(&row, losses, &len);
    ret = reply_job_body(conn, req, body, len, 200, NULL);
    cv_job_unref(job);
    cv_store_job_free(&row);
    return ret;
}

static int handle_job_delete(struct MHD_Connection *conn, struct cv_req *req) {
    int ret;
    struct cv_job *job;
    struct cv_store_job row;
    if (!find_job(conn, req, 0, &job, &row, &ret))
        return ret;
    bool terminal;
    int64_t last_seq;
    enum cv_job_kind kind;
    if (job != NULL) {
        pthread_mutex_lock(&job->mu);
        terminal = job->terminal;
        last_seq = job->base_seq + (int64_t)job->n_events - 1;
        pthread_mutex_unlock(&job->mu);
        kind = job->kind;
    } else {
        terminal = cv_store_job_status_terminal(row.status);
        last_seq = row.last_seq;
        kind = row.kind == CV_STORE_KIND_TRAIN ? CV_JOB_KIND_TRAIN : CV_JOB_KIND_CORR2D;
    }
    if (!terminal) {
        /* A job still queued in the store ends now, cancelled, in one transaction; a running
         * one gets a cancel request (its runner stops within a step). */
        char done[200];
        if (kind == CV_JOB_KIND_TRAIN)
            snprintf(done, sizeof done,
                     "{\"event\":\"done\",\"status\":\"cancelled\",\"steps\":0,\"loss\":null,"
                     "\"final_loss\":null,\"weight\":null,\"bias\":null,\"elapsed_ms\":0}");
        else
            snprintf(done, sizeof done, "{\"event\":\"done\",\"status\":\"cancelled\"}");
        struct cv_store_event ev = {last_seq + 1, 0, done, strlen(done)};
        static const char result[] = "{\"status\":\"cancelled\"}";
        struct cv_store_finish f = {.status = CV_STORE_JOB_CANCELLED,
                                    .result = kind == CV_JOB_KIND_TRAIN ? result : NULL,
                                    .result_len = kind == CV_JOB_KIND_TRAIN ? sizeof result - 1 : 0,
                                    .events = &ev,
                                    .n_events = 1,
                                    .loss = NAN,
                                    .elapsed_ms = 0};
        enum cv_store_job_status after = CV_STORE_JOB_RUNNING;
        int st = cv_store_job_cancel(cv_srv.store, req->path_id, &f, &after);
        cv_store_health(st);
        if (st != CV_STORE_OK && st != CV_STORE_NOT_FOUND) {
            cv_job_unref(job);
            cv_store_job_free(&row);
            return cv_http_reply_store_error(conn, req, st);
        }
        if (job != NULL) {
            cv_job_cancel(job); /* running here: stops at its next step */
            /* Claimed a moment ago and not started: the dispatcher ends it as soon as it has
             * its attempt; wait for that (briefly) so the reply shows it cancelled. */
            pthread_mutex_lock(&job->mu);
            bool pending = !job->terminal && job->state == CV_JOB_STATE_QUEUED;
            pthread_mutex_unlock(&job->mu);
            if (pending)
                cv_job_wait_terminal(job, 2000);
        }
        if (job != NULL && st == CV_STORE_OK && after == CV_STORE_JOB_CANCELLED)
            cv_job_retire_cancelled(job, done);
        cv_job_unref(job);
        job = cv_jobs_find(req->path_id);
        cv_store_job_free(&row);
        if (job == NULL && cv_store_job_get(cv_srv.store, req->path_id, CV_STORE_LOAD_RESULT,
                                            &row) != CV_STORE_OK) {
            cv_job_unref(job);
            return reply_not_found(conn, req);
        }
    } else if (job == NULL) {
        cv_store_job_free(&row);
        if (cv_store_job_get(cv_srv.store, req->path_id, CV_STORE_LOAD_RESULT, &row) != CV_STORE_OK)
            return reply_not_found(conn, req);
    }
    size_t len = 0;
    char *body = job ? job_dump(job, false, &len) : row_dump(&row, false, &len);
    ret = reply_job_body(conn, req, body, len, terminal ? 200 : 202, NULL);
    cv_job_unref(job);
    cv_store_job_free(&row);
    return ret;
}

static int handle_job_events(struct MHD_Connection *conn, struct cv_req *req) {
    int ret;
    /* Resume after an event: Last-Event-ID (what EventSource sends back) or ?after=N, both in
     * an event id's range, so "after + 1" below cannot overflow. */
    long long after;
    struct cv_api_error err;
    if (cv_reqparse_events_after(
            MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after"),
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID"), &after,
            &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    int64_t from = after + 1;
    struct cv_job *job = cv_jobs_find(req->path_id);
    if (job == NULL &&
        cv_stream_reply_stored(conn, req, req->path_id, from, wants_sse(conn), &ret)) {
        snprintf(req->job_id, sizeof req->job_id, "%.39s", req->path_id);
        return ret; /* not live here, and its log has events after `from` */
    }
    cv_job_unref(job);
    struct cv_store_job row;
    if (!find_job(conn, req, 0, &job, &row, &ret))
        return ret;
    bool nothing_new;
    if (job != NULL) {
        pthread_mutex_lock(&job->mu);
        nothing_new = job->terminal && from > job->written_seq;
        pthread_mutex_unlock(&job->mu);
    } else {
        nothing_new = cv_store_job_status_terminal(row.status) && from > row.last_seq;
    }
    if (nothing_new) /* 204 tells EventSource to stop reconnecting */
        ret = cv_http_reply(conn, req, 204, "text/plain", "", 0);
    else
        ret = cv_stream_reply(conn, req, req->path_id, job, from, wants_sse(conn), false);
    cv_job_unref(job);
    cv_store_job_free(&row);
    return ret;
}

/* ---- saved kernels -------------------------------------------------------------------------- */

static int reply_not_found_kernel(struct MHD_Connection *conn, struct cv_req *req) {
    struct cv_api_error err;
    cv_api_error_set(&err, 404, "not_found", NULL, "no saved kernel %s", req->path_id);
    return cv_http_reply_problem(conn, req, &err);
}

/* The learned kernel of a finished training job, copied into *out with its reply rank. */
static int kernel_from_job(struct MHD_Connection *conn, struct cv_req *req, const char *id,
                           struct cv_tensor *out, int *rank, int *ret) {
    struct cv_api_error err;
    struct cv_job *job = cv_jobs_find(id);
    if (job == NULL) { /* finished jobs live in the store only */
        struct cv_store_job row;
        int st = cv_store_job_get(cv_srv.store, id, CV_STORE_LOAD_RESULT, &row);
        if (st != CV_STORE_OK && st != CV_STORE_NOT_FOUND) {
            *ret = cv_http_reply_store_error(conn, req, st);
            return CV_EINVAL;
        }
        struct cv_api_limits lim = limits();
        bool ok = st == CV_STORE_OK && row.kind == CV_STORE_KIND_TRAIN && row.result != NULL &&
                  (row.status == CV_STORE_JOB_SUCCEEDED || row.status == CV_STORE_JOB_CANCELLED) &&
                  cv_api_result_weight(row.result, row.result_len, &lim, out, rank) == CV_OK;
        cv_store_job_free(&row);
        if (ok)
            return CV_OK;
        if (st == CV_STORE_NOT_FOUND)
            cv_api_error_set(&err, 422, "invalid_field", "/from_job", "no job %s", id);
        else
            cv_api_error_set(&err, 422, "invalid_field", "/from_job",
                             "job %s is not a training that has finished with a kernel", id);
        *ret = cv_http_reply_problem(conn, req, &err);
        return CV_EINVAL;
    }
    pthread_mutex_lock(&job->mu);
    bool ok = job->kind == CV_JOB_KIND_TRAIN && job->terminal &&
              (job->state == CV_JOB_STATE_SUCCEEDED || job->state == CV_JOB_STATE_CANCELLED) &&
              job->result.steps_done > 0;
    pthread_mutex_unlock(&job->mu);
    int rc = CV_EINVAL;
    if (!ok) {
        cv_api_error_set(&err, 422, "invalid_field", "/from_job",
                         "job %s is not a training that has finished with a kernel", id);
        *ret = cv_http_reply_problem(conn, req, &err);
    } else {
        /* Terminal: the worker no longer touches the weight. */
        const struct cv_tensor *w = &job->train.weight;
        rc = cv_tensor_init(out, w->n, w->c, w->h, w->w);
        if (rc == CV_OK) {
            memcpy(out->data, w->data, (size_t)cv_tensor_numel(w) * sizeof(float));
            *rank = job->train.weight_rank;
        } else {
            *ret = cv_http_reply_status(conn, req, rc);
        }
    }
    cv_job_unref(job);
    return rc;
}

static int handle_kernel_save(struct MHD_Connection *conn, struct cv_req *req) {
    struct cv_api_limits lim = limits();
    struct cv_api_kernel_save k;
    struct cv_api_error err;
    if (cv_api_kernel_save_parse(req->body, req->body_len, &lim, &k, &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    int ret = MHD_NO;
    if (k.from_job[0] != '\0' &&
        kernel_from_job(conn, req, k.from_job, &k.weight, &k.rank, &ret) != CV_OK) {
        cv_api_kernel_save_free(&k);
        return ret;
    }
    bool replaced = false;
    char name[sizeof k.name];
    memcpy(name, k.name, sizeof name);
    int rc = cv_kreg_put(name, &k.weight, k.rank, k.from_job[0] ? k.from_job : NULL, &replaced);
    cv_api_kernel_save_free(&k);
    if (rc == CV_ETOOBIG) {
        cv_api_error_set(&err, 409, "too_many_kernels", "/name",
                         "256 kernels are saved already; DELETE /kernels/{name} one first");
        return cv_http_reply_problem(conn, req, &err);
    }
    bool found = false;
    size_t len = 0;
    char *body = NULL;
    if (rc == CV_OK)
        rc = cv_kreg_dump(name, &body, &len, &found);
    if (rc == CV_OK && !found) /* deleted meanwhile (another request or replica) */
        rc = CV_EAGAIN;
    if (rc != CV_OK)
        return rc == CV_EAGAIN ? cv_http_reply_store_error(conn, req, CV_STORE_UNAVAILABLE)
                               : cv_http_reply_status(conn, req, rc);
    char location[96];
    snprintf(location, sizeof location, "/kernels/%s", name);
    snprintf(req->location, sizeof req->location, "%s", location);
    return cv_http_reply_take(conn, req, replaced ? 200 : 201, "application/json", body, len);
}

static int handle_kernel_get(struct MHD_Connection *conn, struct cv_req *req) {
    bool found;
    size_t len = 0;
    char *body = cv_api_builtin_kernel_dump(req->path_id, &len, &found);
    if (!found) {
        int rc = cv_kreg_dump(req->path_id, &body, &len, &found);
        if (rc != CV_OK)
            return rc == CV_EAGAIN ? cv_http_reply_store_error(conn, req, CV_STORE_UNAVAILABLE)
                                   : cv_http_reply_status(conn, req, rc);
    }
    if (!found)
        return reply_not_found_kernel(conn, req);
    return body ? cv_http_reply_take(conn, req, 200, "application/json", body, len)
                : cv_http_reply_status(conn, req, CV_ENOMEM);
}

static int handle_kernel_delete(struct MHD_Connection *conn, struct cv_req *req) {
    bool builtin;
    free(cv_api_builtin_kernel_dump(req->path_id, NULL, &builtin));
    if (builtin) {
        struct cv_api_error err;
        cv_api_error_set(&err, 409, "name_taken", NULL,
                         "\"%s\" is a built-in kernel and cannot be deleted", req->path_id);
        return cv_http_reply_problem(conn, req, &err);
    }
    bool found = false;
    if (cv_kreg_delete(req->path_id, &found) != CV_OK)
        return cv_http_reply_store_error(conn, req, CV_STORE_UNAVAILABLE);
    if (!found)
        return reply_not_found_kernel(conn, req);
    return cv_http_reply(conn, req, 204, "application/json", "", 0);
}

/* ---- operations ------------------------------------------------------------------------------ */

static int handle_metrics(struct MHD_Connection *conn, struct cv_req *req) {
    size_t len = 0;
    char *body = cv_metrics_render(cv_srv.pool, &len);
    int ret =
        body ? cv_http_reply(conn, req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len)
             : cv_http_reply_status(conn, req, CV_ENOMEM);
    free(body);
    return ret;
}

/* The page's headers: scripts and styles only from this origin (no inline code, so an
 * injected tag runs nothing), no framing, no sniffing, no referrer. */
static const char *const page_headers[] = {
    "Content-Security-Policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options",
    "nosniff",
    "Referrer-Policy",
    "no-referrer",
    "X-Frame-Options",
    "DENY",
    NULL,
};

static int reply_asset(struct MHD_Connection *conn, struct cv_req *req, const char *type,
                       const char *text, size_t len) {
    req->extra_headers = page_headers;
    return cv_http_reply(conn, req, 200, type, text, len);
}

static int handle_page(struct MHD_Connection *conn, struct cv_req *req) {
    size_t len = 0;
    const char *page = cv_page_html(&len);
    return reply_asset(conn, req, "text/html; charset=utf-8", page, len);
}

static int handle_page_js(struct MHD_Connection *conn, struct cv_req *req) {
    size_t len = 0;
    const char *js = cv_page_js(&len);
    return reply_asset(conn, req, "text/javascript; charset=utf-8", js, len);
}

static int handle_page_css(struct MHD_Connection *conn, struct cv_req *req) {
    size_t len = 0;
    const char *css = cv_page_css(&len);
    return reply_asset(conn, req, "text/css; charset=utf-8", css, len);
}

static int handle_openapi(struct MHD_Connection *conn, struct cv_req *req) {
    size_t len = 0;
    const char *doc = cv_api_openapi_json(&len);
    return cv_http_reply(conn, req, 200, "application/json", doc, len);
}

/* The route table: the single list of what convd serves (tests compare it with openapi.json).
 * http.c answers 401, 404, 405 (with Allow), 415 and 413 from it before any handler runs. */
const struct cv_route cv_routes[] = {
    /* method   path                  handler             flags */
    {"POST", "/corr2d", handle_corr2d, CV_ROUTE_FLAGS_JSON_BODY},
    {"POST", "/train", handle_train, CV_ROUTE_FLAGS_JSON_BODY},
    {"POST", "/jobs", handle_job_create, CV_ROUTE_FLAGS_JSON_BODY},
    {"GET", "/jobs", handle_job_list, 0},
    {"GET", "/jobs/{id}", handle_job_get, 0},
    {"DELETE", "/jobs/{id}", handle_job_delete, 0},
    {"GET", "/jobs/{id}/events", handle_job_events, 0},
    {"GET", "/kernels", handle_kernels, 0},
    {"POST", "/kernels", handle_kernel_save, CV_ROUTE_FLAGS_JSON_BODY},
    {"GET", "/kernels/{id}", handle_kernel_get, 0},
    {"DELETE", "/kernels/{id}", handle_kernel_delete, 0},
    {"GET", "/openapi.json", handle_openapi, 0},
    {"GET", "/", handle_page, CV_ROUTE_FLAGS_PUBLIC},
    {"GET", "/app.js", handle_page_js, CV_ROUTE_FLAGS_PUBLIC},
    {"GET", "/app.css", handle_page_css, CV_ROUTE_FLAGS_PUBLIC},
    {"GET", "/healthz", handle_healthz, CV_ROUTE_FLAGS_PUBLIC | CV_ROUTE_FLAGS_PROBE},
    {"GET", "/livez", handle_healthz, CV_ROUTE_FLAGS_PUBLIC | CV_ROUTE_FLAGS_PROBE},
    {"GET", "/readyz", handle_readyz, CV_ROUTE_FLAGS_PUBLIC | CV_ROUTE_FLAGS_PROBE},
    {"GET", "/metrics", handle_metrics, CV_ROUTE_FLAGS_PUBLIC},
    {NULL, NULL, NULL, 0},
};
