/* What a hostile client could do (issue 12's table), each case a regression test of its fix:
 * log lines that cannot overflow, the cost and output limits, cancellation inside corr2d, the
 * drain deadline, slow clients, streams that end, TLS versions, absolute-form targets, float
 * overflow, and secrets kept out of logs and replies. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_suite.h"

/* Every line of the daemon's log so far must be one JSON object; returns how many there were
 * and, when want is not NULL, asserts that some line has a "path" that starts with want. */
static int check_log_json(const char *want) {
    char *log = cv_daemon_log(&cv_d);
    ck_assert_ptr_nonnull(log);
    int n = 0;
    bool found = want == NULL;
    for (char *line = log, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        ck_assert_msg(json_is_object(j), "log line %d is not JSON (%s): %.300s", n, err.text, line);
        const char *path = json_string_value(json_object_get(j, "path"));
        if (want != NULL && path != NULL && strncmp(path, want, strlen(want)) == 0)
            found = true;
        json_decref(j);
        n++;
    }
    free(log);
    ck_assert_msg(found, "no access-log line with a path starting %s", want);
    return n;
}

/* ---- helpers -----------------------------------------------------------------------------------
 */

/* A raw TCP connection to the daemon (for clients curl will not play: slow, half-sent, gone). */
static int raw_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cv_d.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
                  strerror(errno));
    struct timeval tv = {30, 0}; /* every read and write below is bounded */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_send(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
}

/* Sends a complete POST of a JSON body on a raw connection (the reply is left unread). */
static int raw_post(const char *path, const char *body) {
    int fd = raw_connect();
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, strlen(body));
    raw_send(fd, head, (size_t)n);
    raw_send(fd, body, strlen(body));
    return fd;
}

/* The value of a metric line that starts with `series` ("name{labels}"), or -1 when absent. */
static double metric(const char *series) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/metrics", NULL, NULL, 0, 0, &r), 0);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
    cv_reply_free(&r);
    return v;
}

/* Polls a metric until it reaches at least want, for at most timeout_s; returns the last value. */
static double wait_metric(const char *series, double want, double timeout_s) {
    double t0 = cv_now(), v = -1;
    while ((v = metric(series)) < want && cv_now() - t0 < timeout_s)
        cv_sleep_ms(50);
    return v;
}

/* A /corr2d body on an h x w input of zeros with a k x k kernel (malloc'd); kind_job adds
 * "kind":"corr2d" for POST /jobs. 2000x2000 with k = 300 is 2.6e11 multiply-adds: ~25 s of one
 * core on the vector kernels, so anything that ends it early was cancelled. */
static char *zeros_corr2d_body(int h, int w, int k, bool kind_job) {
    size_t cap = (size_t)h * (2 * (size_t)w + 2) + (size_t)k * (2 * (size_t)k + 2) + 256;
    char *b = malloc(cap), *p = b;
    p += sprintf(p, "{%s\"input\":[", kind_job ? "\"kind\":\"corr2d\"," : "");
    for (int i = 0; i < h; i++) {
        *p++ = '[';
        for (int j = 0; j < w; j++) {
            *p++ = '0';
            *p++ = j + 1 < w ? ',' : ']';
        }
        *p++ = i + 1 < h ? ',' : ']';
    }
    p += sprintf(p, ",\"kernel\":[");
    for (int i = 0; i < k; i++) {
        *p++ = '[';
        for (int j = 0; j < k; j++) {
            *p++ = '1';
            *p++ = j + 1 < k ? ',' : ']';
        }
        *p++ = i + 1 < k ? ',' : ']';
    }
    strcpy(p, "}");
    return b;
}

static const char *const big_macs[] = {"--max-macs", "1000000000000", "--workers", "1", NULL};

/* ---- row 1: the access log ------------------------------------------------------------------ */

START_TEST(test_long_escaped_path_logs_valid_json) {
    /* 254 x %01 decodes to 254 control bytes, 6 bytes each once escaped: 1.5 KB of path in what
     * was a 1024-byte line (stack-buffer-overflow under ASan; the fortified build aborts). */
    char path[1024] = "/";
    for (int i = 0; i < 254; i++)
        strcat(path, "%01");
    for (int rep = 0; rep < 3; rep++) {
        struct cv_reply r;
        ck_assert_int_eq(cv_request(&cv_d, "GET", path, NULL, NULL, 0, 0, &r), 0);
        json_decref(cv_check_problem(&r, 404, "not_found", NULL));
        cv_reply_free(&r);
    }
    /* Quotes and backslashes too, and the daemon still serves. */
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/%22%5C%22%5C%0a%0d", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 404);
    cv_reply_free(&r);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/healthz", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
    ck_assert_int_ge(check_log_json("/\x01\x01\x01"), 5);
}
END_TEST

/* ---- row 2: cost limit, cancellation inside corr2d, the drain deadline ---------------------- */

START_TEST(test_max_macs_refuses_before_queueing) {
    cv_fixture_start((const char *const[]){"--max-macs", "1000000", NULL}, NULL);
    /* 81x81 outputs x 400 taps = 2.6e6 multiply-adds > 1e6. */
    char *body = zeros_corr2d_body(100, 100, 20, false);
    struct cv_reply r;
    ck_assert_int_eq(cv_post_json(&cv_d, "/corr2d", body, &r), 0);
    json_decref(cv_check_problem(&r, 422, "too_expensive", "/kernel"));
    ck_assert_msg(strstr(r.body, "--max-macs") != NULL, "the detail names no limit: %s", r.body);
    cv_reply_free(&r);
    free(body);
    body = zeros_corr2d_body(100, 100, 20, true);
    ck_assert_int_eq(cv_post_json(&cv_d, "/jobs", body, &r), 0);
    json_decref(cv_check_problem(&r, 422, "too_expensive", "/kernel"));
    cv_reply_free(&r);
    free(body);
    /* A training step counts too (forward + kernel gradient). */
    body = cv_big_train_body(100, 100, 20, 2, "");
    ck_assert_int_eq(cv_post_json(&cv_d, "/train", body, &r), 0);
    json_decref(cv_check_problem(&r, 422, "too_expensive", "/kernel"));
    cv_reply_free(&r);
    free(body);
    ck_assert_msg(metric("convd_jobs_total{kind=\"corr2d\",status=\"succeeded\"}") == 0,
                  "a refused corr2d ran");
    /* Below the limit it runs. */
    body = zeros_corr2d_body(40, 40, 20, false);
    json_decref(cv_post_ok("/corr2d", body));
    free(body);
}
END_TEST

START_TEST(test_delete_stops_running_corr2d) {
    cv_fixture_start(big_macs, NULL);
    char *body = zeros_corr2d_body(2000, 2000, 300, true);
    char id[64];
    json_decref(cv_post_job(body, id));
    free(body);
    json_decref(cv_wait_job(id, "running", 60));
    double t0 = cv_now();
    struct cv_reply r;
    char path[128];
    snprintf(path, sizeof path, "/jobs/%s", id);
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 202 || r.status == 200, "DELETE -> %ld %s", r.status, r.body);
    cv_reply_free(&r);
    json_t *j = cv_wait_job(id, NULL, 60);
    fprintf(stderr, "test_delete_stops_running_corr2d: DELETE to %s in %.0f ms\n",
            cv_str(j, "status"), (cv_now() - t0) * 1e3);
    ck_assert_msg(strcmp(cv_str(j, "status"), "cancelled") == 0,
                  "a deleted corr2d ended %s, expected cancelled", cv_str(j, "status"));
    json_decref(j);
    /* The job's end is published before its worker goes back to the pool: wait (bounded) for
     * the worker to be free, i.e. the cancelled loops really returned. */
    double busy = metric("convd_workers_busy");
    for (int i = 0; i < 200 && busy != 0; i++) {
        usleep(50 * 1000);
        busy = metric("convd_workers_busy");
    }
    ck_assert_msg(busy == 0, "a worker still busy 10 s after the deleted corr2d ended");
}
END_TEST

START_TEST(test_client_leaving_stops_sync_corr2d) {
    cv_fixture_start(big_macs, NULL);
    char *body = zeros_corr2d_body(2000, 2000, 300, false);
    int fd = raw_post("/corr2d", body);
    free(body);
    ck_assert_msg(wait_metric("convd_workers_busy", 1, 60) == 1, "the corr2d never ran");
    double t0 = cv_now();
    close(fd);
    const char *cancelled = "convd_jobs_total{kind=\"corr2d\",status=\"cancelled\"}";
    double v = wait_metric(cancelled, 1, 60);
    fprintf(stderr, "test_client_leaving_stops_sync_corr2d: stopped after %.0f ms\n",
            (cv_now() - t0) * 1e3);
    ck_assert_msg(v == 1, "the corr2d of a client that left was not cancelled (%g)", v);
    ck_assert_msg(metric("convd_jobs_total{kind=\"corr2d\",status=\"succeeded\"}") == 0,
                  "the corr2d of a client that left ran to the end");
}
END_TEST

START_TEST(test_drain_deadline_stops_sync_corr2d) {
    cv_fixture_start((const char *const[]){"--max-macs", "1000000000000", "--workers", "1",
                                           "--drain-timeout", "1", NULL},
                     NULL);
    char *body = zeros_corr2d_body(2000, 2000, 300, false);
    int fd = raw_post("/corr2d", body);
    free(body);
    ck_assert_msg(wait_metric("convd_workers_busy", 1, 60) == 1, "the corr2d never ran");
    double t0 = cv_now();
    ck_assert_int_eq(kill(cv_d.pid, SIGTERM), 0);
    /* The job alone would take ~25 s; the drain deadline is 1 s + 1.5 s of grace. */
    int st = cv_daemon_wait(&cv_d, 15);
    double took = cv_now() - t0;
    fprintf(stderr, "test_drain_deadline_stops_sync_corr2d: exit after %.2f s\n", took);
    ck_assert_msg(st != -1, "convd still runs 15 s after SIGTERM with --drain-timeout 1");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "convd exited with wait status %d", st);
    close(fd);
}
END_TEST

/* ---- row 3: output size ---------------------------------------------------------------------- */

START_TEST(test_padding_amplification_refused) {
    struct cv_reply r;
    ck_assert_int_eq(
        cv_post_json(&cv_d, "/corr2d", "{\"input\":[[1]],\"kernel\":[[1]],\"padding\":2047}", &r),
        0);
    json_decref(cv_check_problem(&r, 422, "invalid_field", "/padding"));
    ck_assert_uint_lt(r.body_len, 1000);
    cv_reply_free(&r);
    /* Padding below the kernel size still works. */
    json_decref(cv_post_ok("/corr2d", "{\"input\":[[1]],\"kernel\":[[1,1],[1,1]],\"padding\":1}"));
}
END_TEST

START_TEST(test_reply_counted_in_memory_budget) {
    /* A 1000x1000 output holds ~20 MB as a tensor and its JSON; a 4 MB budget refuses it with
     * 503 (retry later) while small requests pass. */
    cv_fixture_start(
        (const char *const[]){"--memory-budget", "4000000", "--max-body", "1000000", NULL}, NULL);
    struct cv_reply r;

    char *body = zeros_corr2d_body(600, 600, 1, false);
    ck_assert_int_eq(cv_post_json(&cv_d, "/corr2d", body, &r), 0);
    json_decref(cv_check_problem(&r, 503, "out_of_memory", NULL));
    ck_assert_msg(r.retry_after[0] != '\0', "503 without Retry-After");
    cv_reply_free(&r);
    free(body);

    json_decref(cv_post_ok("/corr2d", "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}"));
}
END_TEST

/* ---- row 5: event streams end ------------------------------------------------------------- */

START_TEST(test_events_past_end_stream_ends) {
    /* ~1 s of training (20 s under ASan) with 11 events; a reader that starts at ?after=1000 (or
     * Last-Event-ID 1000) while it runs gets a stream that ends when the job does (it never ended
     * before). */
    char *body = cv_big_train_body(64, 64, 5, 20000, ",\"kind\":\"train\",\"report_every\":2000");
    char id[64];
    json_decref(cv_post_job(body, id));
    free(body);
    static const char *const last[] = {"Last-Event-ID: 1000", NULL};
    for (int k = 0; k < 2; k++) {
        char *path = cv_strdupf("/jobs/%s/events%s", id, k == 0 ? "?after=1000" : "");
        struct cv_stream s = {0};
        int rc = cv_stream_get(&cv_d, path, k == 0 ? NULL : last, 60, &s);
        ck_assert_msg(rc == 0, "GET %s did not end (curl %d) after the job ended", path,
                      s.curl_code);
        ck_assert_msg(s.status == 200 || s.status == 204, "GET %s -> %ld", path, s.status);
        ck_assert_int_eq(s.n_nonblank, 0);
        cv_stream_free(&s);
        free(path);
    }
    json_decref(cv_wait_job(id, NULL, 60));
}
END_TEST

START_TEST(test_last_event_id_range) {
    char id[64];
    json_decref(cv_post_job("{\"kind\":\"corr2d\",\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}", id));
    json_decref(cv_wait_job(id, NULL, 60));
    char *path = cv_strdupf("/jobs/%s/events", id);
    static const char *const bad[] = {"9223372036854775807",
                                      "99999999999999999999",
                                      "2147483648",
                                      "-2",
                                      "1x",
                                      "+1",
                                      "0x1",
                                      "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char header[64];
        snprintf(header, sizeof header, "Last-Event-ID: %s", bad[i]);
        const char *const headers[] = {header, NULL};
        struct cv_reply r;
        ck_assert_int_eq(cv_request(&cv_d, "GET", path, headers, NULL, 0, 0, &r), 0);
        json_decref(cv_check_problem(&r, 400, "invalid_header", NULL));
        cv_reply_free(&r);
    }
    /* In range, past the end of a finished job: 204, as for ?after=. */
    const char *const ok[] = {"Last-Event-ID: 2147483647", NULL};
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", path, ok, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 204);
    cv_reply_free(&r);
    /* An empty Last-Event-ID ("Name;" makes curl send it empty) is no cursor: the whole log. */
    const char *const empty[] = {"Last-Event-ID;", NULL};
    ck_assert_int_eq(cv_request(&cv_d, "GET", path, empty, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"done\""));
    cv_reply_free(&r);
    /* Percent-encoded query values are decoded before they are parsed: %2D%31 is "-1" (the
     * whole log), %2B1 is "+1" (refused like the raw form). */
    char *q = cv_strdupf("%s?after=%%2D%%31", path);
    ck_assert_int_eq(cv_request(&cv_d, "GET", q, NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
    free(q);
    q = cv_strdupf("%s?after=%%2B1", path);
    ck_assert_int_eq(cv_request(&cv_d, "GET", q, NULL, NULL, 0, 0, &r), 0);
    json_decref(cv_check_problem(&r, 400, "invalid_query", "?after"));
    cv_reply_free(&r);
    free(q);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/jobs?limit=%31%30", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/jobs?limit=1%2E5", NULL, NULL, 0, 0, &r), 0);
    json_decref(cv_check_problem(&r, 400, "invalid_query", "?limit"));
    cv_reply_free(&r);
    free(path);
}
END_TEST

/* ---- row 4: slow clients, connection caps, probes ------------------------------------------ */

START_TEST(test_slow_headers_reaped_probes_answered) {
    /* 20 sockets trickle header bytes with --max-connections 20: before, they held every slot
     * (and /healthz) for as long as they lasted. Now each gets a 408 at its header deadline, the
     * probes are answered meanwhile, and other requests over the per-address cap hear 503. */
    cv_fixture_start(
        (const char *const[]){"--max-connections", "20", "--header-timeout", "3", NULL}, NULL);
    enum { N = 20 };
    int fd[N];
    bool answered[N] = {false};
    for (int i = 0; i < N; i++) {
        fd[i] = raw_connect();
        raw_send(fd[i], "GET /kernels HTTP/1.1\r\nHost: x\r\nX-Slow: ", 40);
    }
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/healthz", NULL, NULL, 0, 10, &r), 0);
    ck_assert_msg(r.status == 200, "/healthz under a slow-header flood -> %ld (curl %d)", r.status,
                  r.curl_code);
    cv_reply_free(&r);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/readyz", NULL, NULL, 0, 10, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/kernels", NULL, NULL, 0, 10, &r), 0);
    json_decref(cv_check_problem(&r, 503, "too_many_connections", NULL));
    ck_assert_msg(r.retry_after[0] != '\0', "503 without Retry-After");
    cv_reply_free(&r);
    /* Keep trickling (a byte every 200 ms, never idle) until every socket was answered. */
    int left = N;
    double t0 = cv_now();
    while (left > 0 && cv_now() - t0 < 60) {
        for (int i = 0; i < N; i++) {
            if (answered[i])
                continue;
            char buf[512];
            ssize_t n = recv(fd[i], buf, sizeof buf - 1, MSG_DONTWAIT);
            if (n > 0) {
                buf[n] = '\0';
                ck_assert_msg(strncmp(buf, "HTTP/1.1 408", 12) == 0, "a slow client got: %.80s",
                              buf);
                answered[i] = true;
                left--;
            } else if (n == 0) {
                ck_abort_msg("a slow client was closed without a reply");
            } else {
                (void)send(fd[i], "a", 1, MSG_NOSIGNAL);
            }
        }
        cv_sleep_ms(200);
    }
    fprintf(stderr, "test_slow_headers_reaped_probes_answered: %d of %d answered 408 in %.1f s\n",
            N - left, N, cv_now() - t0);
    ck_assert_msg(left == 0, "%d slow clients still held their connections after 60 s", left);
    for (int i = 0; i < N; i++)
        close(fd[i]);
    /* The slots are free again. */
    json_decref(cv_get_ok("/kernels", NULL));
}
END_TEST

START_TEST(test_slow_body_reaped) {
    /* A body announced as 1 MB that arrives a byte at a time: 408 once the header deadline plus
     * 1 MB at --min-rate 1000000 B/s (~1 s) have passed. */
    cv_fixture_start((const char *const[]){"--header-timeout", "2", "--min-rate", "1000000", NULL},
                     NULL);
    int fd = raw_connect();
    const char *head = "POST /corr2d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 1000000\r\n\r\n{\"input\":";
    raw_send(fd, head, strlen(head));
    double t0 = cv_now();
    char buf[512];
    ssize_t n = -1;
    while (cv_now() - t0 < 60) {
        n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n >= 0)
            break;
        (void)send(fd, "[", 1, MSG_NOSIGNAL);
        cv_sleep_ms(200);
    }
    ck_assert_msg(n > 0, "a slow body was not answered within 60 s (recv %zd)", n);
    buf[n] = '\0';
    ck_assert_msg(strncmp(buf, "HTTP/1.1 408", 12) == 0, "a slow body got: %.80s", buf);
    close(fd);
}
END_TEST

/* ---- rows 10, 11: absolute-form targets, float overflow ---------------------------------------
 */

START_TEST(test_absolute_form_target_routed) {
    /* curl sends the absolute form to a proxy; CURLOPT_REQUEST_TARGET is not in the harness, so
     * the request is written by hand. */
    int fd = raw_connect();
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET http://127.0.0.1:%d/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n",
                     cv_d.port);
    raw_send(fd, req, (size_t)n);
    char buf[2048];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof buf - 1 && (k = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0)
        got += (size_t)k;
    buf[got] = '\0';
    close(fd);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "absolute-form GET /healthz got: %.120s",
                  buf);
    ck_assert_ptr_nonnull(strstr(buf, "\"ok\""));
}
END_TEST

START_TEST(test_corr2d_float_overflow_is_422) {
    static const char *const bodies[] = {
        "{\"input\":[[3e38,3e38]],\"kernel\":[[1,1]]}",
        "{\"input\":{\"shape\":[1,2],\"data\":[3e38,3e38]},\"kernel\":[[2,2]],"
        "\"output_format\":\"b64\"}",
    };
    for (size_t i = 0; i < 2; i++) {
        struct cv_reply r;
        ck_assert_int_eq(cv_post_json(&cv_d, "/corr2d", bodies[i], &r), 0);
        json_decref(cv_check_problem(&r, 422, "non_finite_output", NULL));
        cv_reply_free(&r);
    }
    /* A listed job fails with the same code. */
    char id[64];
    json_decref(
        cv_post_job("{\"kind\":\"corr2d\",\"input\":[[3e38,3e38]],\"kernel\":[[1,1]]}", id));
    json_t *j = cv_wait_job(id, "failed", 60);
    ck_assert_str_eq(cv_str(json_object_get(j, "error"), "code"), "non_finite_output");
    json_decref(j);
    /* GET /jobs renders views copied one job at a time (row 12): the error and its detail are
     * the job's own. */
    json_t *list = cv_get_ok("/jobs?status=failed&limit=1000", NULL);
    json_t *first = json_array_get(json_object_get(list, "jobs"), 0);
    ck_assert_str_eq(cv_str(first, "id"), id);
    json_t *err = json_object_get(first, "error");
    ck_assert_str_eq(cv_str(err, "code"), "non_finite_output");
    ck_assert_ptr_nonnull(strstr(cv_str(err, "detail"), "overflowed float32"));
    ck_assert_ptr_null(json_object_get(first, "result"));
    json_decref(list);
}
END_TEST

TCase *cv_tcase_reliability(void) {
    TCase *tc = cv_tcase("reliability", true);
    tcase_add_test(tc, test_long_escaped_path_logs_valid_json);
    tcase_add_test(tc, test_padding_amplification_refused);
    tcase_add_test(tc, test_events_past_end_stream_ends);
    tcase_add_test(tc, test_last_event_id_range);
    tcase_add_test(tc, test_absolute_form_target_routed);
    tcase_add_test(tc, test_corr2d_float_overflow_is_422);
    return tc;
}

/* ---- rows 6, 8: TLS versions and suites, the private key in memory -------------------------- */

struct tls_files {
    char dir[256], cert[300], key[300];
};

/* A self-signed certificate for 127.0.0.1 in a fresh directory (openssl). */
static void tls_files_make(struct tls_files *t) {
    const char *tmp = getenv("TMPDIR");
    snprintf(t->dir, sizeof t->dir, "%s/convd-itest-rel-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert(mkdtemp(t->dir) != NULL);
    snprintf(t->cert, sizeof t->cert, "%s/c.pem", t->dir);
    snprintf(t->key, sizeof t->key, "%s/k.pem", t->dir);
    char *cmd = cv_strdupf("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' "
                           "-days 1 -subj /CN=127.0.0.1 >/dev/null 2>&1",
                           t->key, t->cert);
    ck_assert_msg(system(cmd) == 0, "openssl req failed");
    free(cmd);
}

static void tls_files_remove(struct tls_files *t) {
    unlink(t->cert);
    unlink(t->key);
    rmdir(t->dir);
}

/* The cipher openssl s_client (with extra args) negotiates with the daemon, "(NONE)" when the
 * handshake fails; malloc'd. */
static char *s_client_cipher(const char *args) {
    char *cmd = cv_strdupf("echo | timeout 20 openssl s_client -connect 127.0.0.1:%d %s 2>&1",
                           cv_d.port, args);
    FILE *f = popen(cmd, "r");
    free(cmd);
    ck_assert_ptr_nonnull(f);
    char line[512], *cipher = NULL;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *c = strstr(line, "Cipher is ");
        if (c != NULL && cipher == NULL) {
            cipher = strdup(c + 10);
            cipher[strcspn(cipher, "\r\n")] = '\0';
        }
    }
    pclose(f);
    return cipher != NULL ? cipher : strdup("(NONE)");
}

START_TEST(test_tls_versions_and_suites) {
    struct tls_files t;
    tls_files_make(&t);
    cv_fixture_start((const char *const[]){"--tls-cert", t.cert, "--tls-key", t.key, NULL}, NULL);
    /* SECLEVEL=0 lets this openssl offer what the daemon must refuse. */
    static const char *const refused[] = {
        "-tls1 -cipher DEFAULT@SECLEVEL=0", "-tls1_1 -cipher DEFAULT@SECLEVEL=0",
        "-tls1_2 -cipher AES128-SHA@SECLEVEL=0",           /* static RSA */
        "-tls1_2 -cipher ECDHE-RSA-AES128-SHA@SECLEVEL=0", /* CBC, SHA-1 MAC */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *c = s_client_cipher(refused[i]);
        ck_assert_msg(strcmp(c, "(NONE)") == 0, "s_client %s negotiated %s", refused[i], c);
        free(c);
    }
    static const char *const accepted[][2] = {
        {"-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
        {"-tls1_2 -cipher ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
        {"-tls1_3", "TLS_"},
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        char *c = s_client_cipher(accepted[i][0]);
        ck_assert_msg(strncmp(c, accepted[i][1], strlen(accepted[i][1])) == 0,
                      "s_client %s negotiated %s", accepted[i][0], c);
        free(c);
    }
    ck_assert_int_eq(cv_daemon_stop(&cv_d) != -1, 1);
    /* --tls-priorities overrides the default. */
    cv_fixture_start((const char *const[]){"--tls-cert", t.cert, "--tls-key", t.key,
                                           "--tls-priorities", "NORMAL:-VERS-ALL:+VERS-TLS1.2",
                                           NULL},
                     NULL);
    char *c = s_client_cipher("-tls1_3");
    ck_assert_msg(strcmp(c, "(NONE)") == 0, "TLS 1.3 negotiated (%s) with only 1.2 allowed", c);
    free(c);
    tls_files_remove(&t);
}
END_TEST

/* ---- security: no secret in a log line, an error body or a metric ---------------------------- */

START_TEST(test_token_never_leaks) {
    static const char token[] = "rel-Secret-Token_9f8e7d6c5b4a";
    const char *tmp = getenv("TMPDIR");
    char *file = cv_strdupf("%s/convd-itest-rel-token-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    ck_assert(write(fd, token, strlen(token)) == (ssize_t)strlen(token));
    close(fd);
    cv_fixture_start((const char *const[]){"--token-file", file, NULL}, NULL);
    const char *const right[] = {"Authorization: Bearer rel-Secret-Token_9f8e7d6c5b4a",
                                 "Content-Type: application/json", NULL};
    const char *const wrong[] = {"Authorization: Bearer rel-Secret-Token_9f8e7d6c5b4b", NULL};
    struct {
        const char *method, *path;
        const char *const *headers;
        const char *body;
    } reqs[] = {
        {"GET", "/kernels", NULL, NULL},
        {"GET", "/kernels", wrong, NULL},
        {"GET", "/kernels", right, NULL},
        {"POST", "/corr2d", right, "{\"input\":[[1]],\"kernel\":[[1]],\"padding\":5}"},
        {"POST", "/corr2d", right, "{\"input\":"},
        {"GET", "/jobs/j-nope", right, NULL},
        {"GET", "/metrics", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        struct cv_reply r;
        ck_assert_int_eq(cv_request(&cv_d, reqs[i].method, reqs[i].path, reqs[i].headers,
                                    reqs[i].body, reqs[i].body ? strlen(reqs[i].body) : 0, 0, &r),
                         0);
        ck_assert_msg(r.status != 0, "%s %s got no reply", reqs[i].method, reqs[i].path);
        ck_assert_msg(strstr(r.body, "Secret-Token") == NULL, "%s %s replied with the token: %s",
                      reqs[i].method, reqs[i].path, r.body);
        cv_reply_free(&r);
    }
    char *log = cv_daemon_log(&cv_d);
    ck_assert_msg(strstr(log, "Secret-Token") == NULL, "the token is in the log:\n%s", log);
    free(log);
    unlink(file);
    free(file);
}
END_TEST

/* Tests that start their own daemon with flags. */
TCase *cv_tcase_reliability_own(void) {
    TCase *tc = cv_tcase("reliability_own", false);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_max_macs_refuses_before_queueing);
    tcase_add_test(tc, test_delete_stops_running_corr2d);
    tcase_add_test(tc, test_client_leaving_stops_sync_corr2d);
    tcase_add_test(tc, test_drain_deadline_stops_sync_corr2d);
    tcase_add_test(tc, test_reply_counted_in_memory_budget);
    tcase_add_test(tc, test_slow_headers_reaped_probes_answered);
    tcase_add_test(tc, test_slow_body_reaped);
    tcase_add_test(tc, test_tls_versions_and_suites);
    tcase_add_test(tc, test_token_never_leaks);
    return tc;
}
