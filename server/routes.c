/* Route table and handlers. Handlers run on the connection's thread with the whole body read;
 * compute always goes to the worker pool. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

/* Milliseconds between checks that a waiting client is still there. */
#define WAIT_SLICE_MS 200

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

static int handle_corr2d(struct MHD_Connection *conn, struct cv_req *req) {
    int ret;
    if (refuse_if_draining(conn, req, &ret))
        return ret;
    struct cv_api_limits lim = limits();
    struct cv_corr2d_request parsed;
    struct cv_api_error err;
    if (cv_api_corr2d_parse(req->body, req->body_len, &lim, &parsed, &err) != CV_OK)
        return cv_http_reply_problem(conn, req, &err);
    struct cv_job *job;
    int rc = cv_job_new(CV_JOB_KIND_CORR2D, &parsed, &job);
    if (rc != CV_OK) {
        cv_api_corr2d_request_free(&parsed);
        return cv_http_reply_status(conn, req, rc);
    }
    rc = cv_job_submit(job, cv_srv.pool);
    if (rc != CV_OK) {
        cv_job_unref(job);
        return cv_http_reply_status(conn, req, rc);
    }
    if (!wait_job(conn, req, job)) {
        cv_job_unref(job);
        return MHD_NO;
    }
    if (job->status != CV_OK) {
        ret = cv_http_reply_status(conn, req, job->status);
    } else {
        size_t len = 0;
        char *body = cv_api_corr2d_reply_dump(&job->corr2d, &len);
        ret = body ? cv_http_reply(conn, req, 200, "application/json", body, len)
                   : cv_http_reply_status(conn, req, CV_ENOMEM);
        free(body);
    }
    cv_job_unref(job);
    return ret;
}

/* True when the Accept header asks for Server-Sent Events. */
static bool wants_sse(struct MHD_Connection *conn) {
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    return accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
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
    bool stream = parsed.stream;
    struct cv_job *job;
    int rc = cv_job_new(CV_JOB_KIND_TRAIN, &parsed, &job);
    if (rc != CV_OK) {
        cv_api_train_request_free(&parsed);
        return cv_http_reply_status(conn, req, rc);
    }
    snprintf(req->job_id, sizeof req->job_id, "%s", job->id);
    /* The start event goes first, before the job can run, so every reader sees it first. */
    size_t len = 0;
    char *start = cv_api_event_start_dump(&job->train, job->id, &len);
    cv_job_push_event(job, "start", start, len, false);
    rc = cv_job_submit(job, cv_srv.pool);
    if (rc != CV_OK) {
        cv_job_unref(job);
        return cv_http_reply_status(conn, req, rc);
    }
    if (stream) {
        ret = cv_stream_reply(conn, req, job, wants_sse(conn), true);
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
    char *body = cv_api_kernels_dump(&len);
    int ret = body ? cv_http_reply(conn, req, 200, "application/json", body, len)
                   : cv_http_reply_status(conn, req, CV_ENOMEM);
    free(body);
    return ret;
}

static int handle_healthz(struct MHD_Connection *conn, struct cv_req *req) {
    static const char ok[] = "{\"status\":\"ok\"}";
    return cv_http_reply(conn, req, 200, "application/json", ok, sizeof ok - 1);
}

static int handle_readyz(struct MHD_Connection *conn, struct cv_req *req) {
    static const char ready[] = "{\"status\":\"ready\"}";
    static const char draining[] = "{\"status\":\"draining\"}";
    if (atomic_load(&cv_srv.draining))
        return cv_http_reply(conn, req, 503, "application/json", draining, sizeof draining - 1);
    return cv_http_reply(conn, req, 200, "application/json", ready, sizeof ready - 1);
}

const struct cv_route cv_routes[] = {
    /* method  path        handler          flags */
    {"POST", "/corr2d", handle_corr2d, CV_ROUTE_FLAGS_JSON_BODY},
    {"POST", "/train", handle_train, CV_ROUTE_FLAGS_JSON_BODY},
    {"GET", "/kernels", handle_kernels, 0},
    {"GET", "/healthz", handle_healthz, 0},
    {"GET", "/livez", handle_healthz, 0},
    {"GET", "/readyz", handle_readyz, 0},
    {NULL, NULL, NULL, 0},
};
