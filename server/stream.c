/* Streamed replies: a content reader that follows a job's event log and frames each event as
 * an NDJSON line or a Server-Sent Event, flushing it as soon as it exists.
 *
 * The reader runs on the connection's own thread (thread-per-connection), so it may block on
 * the job's condition variable. It wakes at least every POLL_MS to notice a client that went
 * away (the job is then cancelled when the stream owns it) and to send SSE heartbeats. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define POLL_MS 200

struct stream {
    struct cv_job *job; /* one reference */
    struct MHD_Connection *conn;
    struct cv_req *req; /* for byte counts; valid until the request completes */
    bool sse;
    bool cancel_on_close;
    size_t next; /* next event index to send */
    bool sent_terminal;
    char *pending; /* framed bytes not yet copied out */
    size_t pending_len, pending_off;
    double last_write_ms;
};

/* Frames event i of the job (mu held) into s->pending. */
static void frame_event(struct stream *s, const struct cv_job_event *ev, size_t seq) {
    free(s->pending);
    s->pending = NULL;
    s->pending_len = s->pending_off = 0;
    size_t cap = ev->len + 64;
    char *buf = malloc(cap);
    if (buf == NULL)
        return;
    int n;
    if (s->sse)
        n = snprintf(buf, cap, "id: %zu\nevent: %s\ndata: %s\n\n", seq, ev->type, ev->json);
    else
        n = snprintf(buf, cap, "%s\n", ev->json);
    s->pending = buf;
    s->pending_len = (size_t)n < cap ? (size_t)n : cap - 1;
}

static void set_pending_static(struct stream *s, const char *text) {
    free(s->pending);
    s->pending = strdup(text);
    s->pending_len = s->pending ? strlen(text) : 0;
    s->pending_off = 0;
}

static ssize_t copy_pending(struct stream *s, char *buf, size_t max) {
    size_t n = s->pending_len - s->pending_off;
    if (n > max)
        n = max;
    memcpy(buf, s->pending + s->pending_off, n);
    s->pending_off += n;
    atomic_fetch_add(&s->req->stream_bytes, n);
    s->last_write_ms = cv_now_ms();
    return (ssize_t)n;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    struct stream *s = cls;
    (void)pos;
    if (s->pending != NULL && s->pending_off < s->pending_len)
        return copy_pending(s, buf, max);
    if (s->sent_terminal)
        return MHD_CONTENT_READER_END_OF_STREAM;
    struct cv_job *job = s->job;
    pthread_mutex_lock(&job->mu);
    for (;;) {
        /* Invariant: mu is held here, and events [0, next) have been sent. */
        if (s->next < job->n_events) {
            const struct cv_job_event *ev = &job->events[s->next];
            frame_event(s, ev, s->next);
            s->next++;
            if (s->next == job->n_events && job->terminal)
                s->sent_terminal = true;
            pthread_mutex_unlock(&job->mu);
            if (s->pending == NULL)
                return MHD_CONTENT_READER_END_WITH_ERROR; /* out of memory: fail loudly */
            return copy_pending(s, buf, max);
        }
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += POLL_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&job->cond, &job->mu, &deadline) == 0)
            continue;
        /* A quiet spell: look after the client and the heartbeat without holding mu. */
        pthread_mutex_unlock(&job->mu);
        if (cv_http_client_gone(s->conn)) {
            if (s->cancel_on_close)
                cv_job_cancel(job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (cv_now_ms() - s->last_write_ms >= cv_srv.cfg.heartbeat * 1000.0) {
            /* A quiet stream (a slow step) says it is alive, so that no client's read
             * timeout mistakes it for a dead server. NDJSON readers skip the heartbeat event. */
            set_pending_static(s, s->sse ? ": keep-alive\n\n" : "{\"event\":\"heartbeat\"}\n");
            if (s->pending != NULL)
                return copy_pending(s, buf, max);
        }
        pthread_mutex_lock(&job->mu);
    }
}

static void stream_free(void *cls) {
    struct stream *s = cls;
    /* A reader that ends before the terminal event means the client went away. */
    if (!s->sent_terminal && s->cancel_on_close)
        cv_job_cancel(s->job);
    cv_job_unref(s->job);
    free(s->pending);
    free(s);
    atomic_fetch_sub(&cv_srv.open_streams, 1);
}

int cv_stream_reply(struct MHD_Connection *conn, struct cv_req *req, struct cv_job *job,
                    size_t from, bool sse, bool cancel_on_close) {
    struct stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cv_http_reply_status(conn, req, CV_ENOMEM);
    s->job = cv_job_ref(job);
    s->conn = conn;
    s->req = req;
    s->sse = sse;
    s->cancel_on_close = cancel_on_close;
    s->next = from;
    s->last_write_ms = cv_now_ms();
    atomic_fetch_add(&cv_srv.open_streams, 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (resp == NULL) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            sse ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, "Vary", "Accept");
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    MHD_add_response_header(resp, "Server", "convd/" CV_VERSION);
    MHD_add_response_header(resp, "X-Job-Id", job->id);
    /* The idle timeout would otherwise cut a stream whose steps are slow (notes/api.md §5). */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    int ret = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    req->status = 200;
    req->replied = true;
    return ret;
}
