/* Streamed replies: a content reader that follows a job's event log and frames each event as
 * an NDJSON line or a Server-Sent Event, flushing it as soon as it is committed.
 *
 * Events come from two places: the store (everything committed: a finished job's whole log,
 * and the part of a live job's log that the writer already trimmed from memory) and the live
 * job's memory (committed events not yet trimmed). A reader sends only committed events, in seq
 * order, so an event id it sent is one the store has: Last-Event-ID stays valid across a crash.
 *
 * The reader runs on the connection's own thread (thread-per-connection), so it may block on
 * the job's condition variable. It wakes at least every POLL_MS to notice a client that went
 * away (the job is then cancelled when the stream owns it) and to send SSE heartbeats. A job
 * that is not live here (queued, or run by another replica) is polled in the store. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define POLL_MS 200 /* a live job's reader wakes this often (client gone, heartbeat) */
#define SLOW_POLL_MS                                                                               \
    1000         /* a job not live here: store notes wake the reader; this is the                  \
                    fallback for a missed note */
#define PAGE 256 /* events read from the store at a time */

struct stream {
    char id[40];
    struct cv_job *job; /* one reference, or NULL while the job is not live here */
    struct MHD_Connection *conn;
    struct cv_req *req; /* for byte counts; valid until the request completes */
    bool sse;
    bool cancel_on_close;
    int64_t next; /* next event seq to send */
    bool sent_terminal;
    struct cv_store_event *page; /* events read from the store, not yet sent */
    size_t page_n, page_i;
    char *pending; /* framed bytes not yet copied out */
    size_t pending_len, pending_off;
    double last_write_ms;
    struct cv_note_watch watch; /* store notes about this job (while following the store) */
    bool watching;
};

static bool is_terminal_type(const char *type) {
    return strcmp(type, "done") == 0 || strcmp(type, "error") == 0;
}

/* Frames one event into s->pending. */
static void frame_event(struct stream *s, const char *type, const char *json, size_t len,
                        int64_t seq) {
    free(s->pending);
    s->pending = NULL;
    s->pending_len = s->pending_off = 0;
    size_t cap = len + 80;
    char *buf = malloc(cap);
    if (buf == NULL)
        return;
    int n;
    if (s->sse)
        n = snprintf(buf, cap, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)seq, type, json);
    else
        n = snprintf(buf, cap, "%s\n", json);
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

static void page_drop(struct stream *s) {
    cv_store_events_free(s->page, s->page_n);
    s->page = NULL;
    s->page_n = s->page_i = 0;
}

/* Reads the next page of committed events from the store. Returns the store status. */
static int page_fetch(struct stream *s) {
    page_drop(s);
    return cv_store_events_read(cv_srv.store, s->id, s->next - 1, PAGE, &s->page, &s->page_n);
}

/* Sends the next page event. */
static ssize_t send_page_event(struct stream *s, char *buf, size_t max) {
    const struct cv_store_event *e = &s->page[s->page_i++];
    char type[24];
    cv_job_event_type(e->body, type, sizeof type);
    frame_event(s, type, e->body, e->len, e->seq);
    s->next = e->seq + 1;
    if (is_terminal_type(type))
        s->sent_terminal = true;
    if (s->pending == NULL)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return copy_pending(s, buf, max);
}

/* A quiet spell: looks after the client and the heartbeat. Returns > 0 bytes to send, 0 to go
 * on waiting, or an MHD end code. */
static ssize_t quiet(struct stream *s, char *buf, size_t max) {
    if (cv_http_client_gone(s->conn)) {
        if (s->cancel_on_close && s->job != NULL)
            cv_job_cancel(s->job);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (cv_now_ms() - s->last_write_ms >= cv_srv.cfg.heartbeat * 1000.0) {
        /* A quiet stream (a slow step) says it is alive, so that no client's read timeout
         * mistakes it for a dead server. NDJSON readers skip the heartbeat event. */
        set_pending_static(s, s->sse ? ": keep-alive\n\n" : "{\"event\":\"heartbeat\"}\n");
        if (s->pending != NULL)
            return copy_pending(s, buf, max);
    }
    return 0;
}

/* Follows a job that is not live here: the store, polled. */
static ssize_t read_stored(struct stream *s, char *buf, size_t max) {
    if (!s->watching) {
        cv_store_watch_add(&s->watch, s->id);
        s->watching = true;
    }
    /* An ended job's log ends with its done or error event, which ends the stream when sent;
     * the row is read only on the slow poll, as a safety net (one read less per wake). */
    bool check_row = false;
    for (;;) {
        uint64_t gen =
            cv_store_watch_gen(&s->watch); /* before the read: a note after it wakes us */
        int st = page_fetch(s);
        if (st == CV_STORE_OK && s->page_n > 0)
            return send_page_event(s, buf, max);
        if (st == CV_STORE_NOT_FOUND)
            return MHD_CONTENT_READER_END_OF_STREAM; /* deleted (retention) meanwhile */
        struct cv_store_job row;
        st = st == CV_STORE_OK && check_row ? cv_store_job_get(cv_srv.store, s->id, 0, &row) : st;
        if (st == CV_STORE_OK && check_row) {
            bool done = cv_store_job_status_terminal(row.status) && row.last_seq < s->next;
            cv_store_job_free(&row);
            if (done)
                return MHD_CONTENT_READER_END_OF_STREAM;
        } else if (st == CV_STORE_NOT_FOUND) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* Not finished: it may have become live here (claimed), or runs elsewhere. */
        s->job = cv_jobs_find(s->id);
        if (s->job != NULL)
            return 0;
        check_row = !cv_store_watch_wait(&s->watch, gen, SLOW_POLL_MS);
        ssize_t q = quiet(s, buf, max);
        if (q != 0)
            return q;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    struct stream *s = cls;
    (void)pos;
    if (s->pending != NULL && s->pending_off < s->pending_len)
        return copy_pending(s, buf, max);
    if (s->sent_terminal)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->page_i < s->page_n)
        return send_page_event(s, buf, max);
    for (;;) {
        if (s->job == NULL) {
            ssize_t r = read_stored(s, buf, max);
            if (r != 0)
                return r;
            continue; /* the job became live */
        }
        struct cv_job *job = s->job;
        pthread_mutex_lock(&job->mu);
        /* Invariant: mu is held here, and events [.., next) have been sent. */
        if (s->next < job->base_seq) { /* committed and trimmed: read it from the store */
            pthread_mutex_unlock(&job->mu);
            int st = page_fetch(s);
            if (st == CV_STORE_OK && s->page_n > 0)
                return send_page_event(s, buf, max);
            if (st != CV_STORE_OK && st != CV_STORE_NOT_FOUND)
                return MHD_CONTENT_READER_END_WITH_ERROR; /* the store failed: end loudly */
            pthread_mutex_lock(&job->mu);
            if (s->next < job->base_seq) { /* a gap the store cannot fill (never expected) */
                s->next = job->base_seq;
            }
        }
        if (s->next <= job->written_seq) {
            const struct cv_job_event *ev = &job->events[s->next - job->base_seq];
            frame_event(s, ev->type, ev->json, ev->len, s->next);
            s->next++;
            if (job->terminal && s->next > job->written_seq)
                s->sent_terminal = true;
            pthread_mutex_unlock(&job->mu);
            if (s->pending == NULL)
                return MHD_CONTENT_READER_END_WITH_ERROR; /* out of memory: fail loudly */
            return copy_pending(s, buf, max);
        }
        if (job->terminal && atomic_load(&job->fenced)) {
            /* Taken over by another attempt (this replica lost its lease): the log goes on
             * in the store, written by the new owner; follow it there. */
            pthread_mutex_unlock(&job->mu);
            cv_job_unref(job);
            s->job = NULL;
            continue;
        }
        if (job->terminal) {
            /* Ended without a committed terminal event here (suspended for the next start):
             * the stream ends; the log goes on in the store. */
            pthread_mutex_unlock(&job->mu);
            s->sent_terminal = true;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        const struct timespec deadline = cv_deadline_ms(POLL_MS);
        /* Woken or timed out alike: a running job's progress commits wake readers without a
         * new event, so the heartbeat and the disconnect check come after every wait. */
        pthread_cond_timedwait(&job->cond, &job->mu, &deadline);
        pthread_mutex_unlock(&job->mu);
        ssize_t q = quiet(s, buf, max);
        if (q != 0)
            return q;
    }
}

static void stream_free(void *cls) {
    struct stream *s = cls;
    /* A reader that ends before the terminal event means the client went away. */
    if (!s->sent_terminal && s->cancel_on_close && s->job != NULL)
        cv_job_cancel(s->job);
    if (s->watching)
        cv_store_watch_remove(&s->watch);
    cv_job_unref(s->job);
    page_drop(s);
    free(s->pending);
    free(s);
    atomic_fetch_sub(&cv_srv.open_streams, 1);
}

/* Queues the reply of stream s (taken: freed on failure). */
static int queue_stream(struct MHD_Connection *conn, struct cv_req *req, struct stream *s);

int cv_stream_reply(struct MHD_Connection *conn, struct cv_req *req, const char *id,
                    struct cv_job *job, int64_t from, bool sse, bool cancel_on_close) {
    struct stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return cv_http_reply_status(conn, req, CV_ENOMEM);
    snprintf(s->id, sizeof s->id, "%s", id);
    s->job = job ? cv_job_ref(job) : NULL;
    s->sse = sse;
    s->cancel_on_close = cancel_on_close;
    s->next = from;
    return queue_stream(conn, req, s);
}

bool cv_stream_reply_stored(struct MHD_Connection *conn, struct cv_req *req, const char *id,
                            int64_t from, bool sse, int *ret) {
    struct stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return false;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->sse = sse;
    s->next = from;
    if (page_fetch(s) != CV_STORE_OK || s->page_n == 0) {
        page_drop(s);
        free(s);
        return false;
    }
    *ret = queue_stream(conn, req, s);
    return true;
}

static int queue_stream(struct MHD_Connection *conn, struct cv_req *req, struct stream *s) {
    const char *id = s->id;
    s->conn = conn;
    s->req = req;
    s->last_write_ms = cv_now_ms();
    atomic_fetch_add(&cv_srv.open_streams, 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (resp == NULL) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            s->sse ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, "Vary", "Accept");
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    MHD_add_response_header(resp, "Server", "convd/" CV_VERSION);
    MHD_add_response_header(resp, "X-Job-Id", id);
    /* The idle timeout would otherwise cut a stream whose steps are slow (notes/api.md §5). */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    int ret = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    req->status = 200;
    req->replied = true;
    return ret;
}
