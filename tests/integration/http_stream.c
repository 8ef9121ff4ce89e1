/* How /train streams: SSE framing, lines that arrive while training runs (not all at the end),
 * a client disconnect that cancels the job and frees the worker, and SIGTERM ending a live
 * stream with a terminal event. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_suite.h"

START_TEST(test_sse_framing) {
    static const char *const accept[] = {"Accept: text/event-stream", NULL};
    cv_fixture_start(NULL, NULL);
    char *body = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"bias\":false,"
                            "\"lr\":0.012,\"steps\":20,\"init\":{\"weight\":[[0.5,0.5]]}}",
                            cv_seed_x, cv_seed_y);
    struct cv_stream s = {0};
    ck_assert_int_eq(cv_stream_post(&cv_d, "/train", accept, body, 0, &s), 0);
    ck_assert_int_eq(s.status, 200);
    cv_check_media_type(s.content_type, "text/event-stream");
    ck_assert_msg(s.partial_len == 0, "the stream ended in the middle of a line");
    struct cv_sse_event ev[32];
    int n = cv_parse_sse(&s, ev, 32);
    ck_assert_int_eq(n, 22);
    for (int i = 0; i < n; i++) {
        const char *want = i == 0 ? "start" : i == n - 1 ? "done" : "step";
        ck_assert_msg(ev[i].id == i, "event %d has id %ld; ids count events from 0", i, ev[i].id);
        ck_assert_msg(strcmp(ev[i].name, want) == 0, "event %d is \"%s\", expected %s", i,
                      ev[i].name, want);
        ck_assert_msg(ev[i].data != NULL, "event %d has no data", i);
        const char *inner = json_string_value(json_object_get(ev[i].data, "event"));
        ck_assert_msg(inner && strcmp(inner, want) == 0, "event %d's data says %s", i, inner);
        if (i > 0 && i < n - 1)
            ck_assert_int_eq(json_integer_value(json_object_get(ev[i].data, "step")), i);
    }
    cv_check_rel(cv_num(ev[1].data, "loss"), 34.5, 1e-4, "loss of step 1");
    ck_assert_str_eq(json_string_value(json_object_get(ev[n - 1].data, "status")), "succeeded");
    for (int i = 0; i < n; i++)
        json_decref(ev[i].data);
    cv_stream_free(&s);
    free(body);
}
END_TEST

/* What the stream's line hook saw of its job when the first step line arrived. */
struct live_check {
    const struct cv_stream *s; /* its job_id comes from the X-Job-Id header, before any line */
    char status_at_first_step[32];
};

/* After the first step line: the job must still be running (so the line was streamed, not
 * buffered until the end); then cancel it so the test ends at once, however fast the kernels. */
static void on_line_check_live(void *arg, int n) {
    struct live_check *c = arg;
    if (n != 2 || c->s->job_id[0] == '\0') /* line 1 is "start", line 2 the first step */
        return;
    char path[128];
    snprintf(path, sizeof path, "/jobs/%s", c->s->job_id);
    struct cv_reply r;
    if (cv_request(&cv_d, "GET", path, NULL, NULL, 0, 0, &r) == 0 && r.status == 200) {
        json_t *job = cv_reply_json(&r);
        const char *st = job ? json_string_value(json_object_get(job, "status")) : NULL;
        snprintf(c->status_at_first_step, sizeof c->status_at_first_step, "%s", st ? st : "?");
        json_decref(job);
    }
    cv_reply_free(&r);
    if (cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r) == 0)
        cv_reply_free(&r);
}

START_TEST(test_streams_while_training) {
    /* A million steps would take minutes: if the step lines only came at the end, the first one
     * could not arrive while GET /jobs/{id} still says "running". */
    cv_fixture_start((const char *const[]){"--max-steps", "1000000", NULL}, NULL);
    char *body = cv_big_train_body(64, 64, 5, 1000000, ",\"report_every\":100");
    struct cv_stream s = {0};
    struct live_check check = {&s, {0}};
    s.on_line = on_line_check_live;
    s.arg = &check;
    ck_assert_int_eq(cv_stream_post(&cv_d, "/train", NULL, body, 55, &s), 0);
    ck_assert_int_eq(s.status, 200);
    ck_assert_msg(s.job_id[0] != '\0', "no X-Job-Id header on the stream");
    ck_assert_msg(strcmp(check.status_at_first_step, "running") == 0,
                  "when the first step line arrived the job was \"%s\", not running: the reply "
                  "was not streamed",
                  check.status_at_first_step);
    json_t *ev = cv_ndjson_events(&s);
    size_t n = json_array_size(ev);
    ck_assert_msg(n >= 3, "only %zu events", n);
    json_t *done = json_array_get(ev, n - 1);
    ck_assert_str_eq(json_string_value(json_object_get(done, "event")), "done");
    ck_assert_str_eq(json_string_value(json_object_get(done, "status")), "cancelled");
    ck_assert_msg(json_integer_value(json_object_get(done, "steps")) < 1000000,
                  "the cancelled job ran to the end");
    json_decref(ev);
    cv_stream_free(&s);
    free(body);
}
END_TEST

/* The access-log line of the request that ran job, or NULL; also fails on any error line. */
static json_t *find_request_line(const char *log, const char *path, const char *job) {
    json_t *found = NULL;
    for (const char *line = log; *line && !found;) {
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        json_t *j = json_loadb(line, (size_t)(end - line), 0, NULL);
        const char *level = json_string_value(json_object_get(j, "level"));
        ck_assert_msg(!level || strcmp(level, "error") != 0, "convd logged an error: %.*s",
                      (int)(end - line), line);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        const char *p = json_string_value(json_object_get(j, "path"));
        const char *id = json_string_value(json_object_get(j, "job"));
        if (msg && strcmp(msg, "request") == 0 && p && strcmp(p, path) == 0 && id &&
            strcmp(id, job) == 0)
            found = json_incref(j);
        json_decref(j);
        line = end + 1;
    }
    return found;
}

START_TEST(test_disconnect_cancels) {
    /* One worker: if the abandoned job kept it, the next training could not run. */
    cv_fixture_start((const char *const[]){"--workers", "1", "--max-steps", "1000000", NULL}, NULL);
    char *body =
        cv_big_train_body(128, 128, 5, 1000000, ""); /* ~0.2 ms a step: minutes if not stopped */
    struct cv_stream s = {.stop_after = 2};          /* start, then the first step */
    ck_assert_int_eq(cv_stream_post(&cv_d, "/train", NULL, body, 30, &s), 0);
    ck_assert_int_eq(s.n_nonblank, 2);
    json_t *ev = cv_ndjson_events(&s);
    const char *id = json_string_value(json_object_get(json_array_get(ev, 0), "job"));
    ck_assert_msg(id != NULL, "the start event has no job id");
    char job[64];
    snprintf(job, sizeof job, "%s", id);
    json_decref(ev);
    double t_abort = cv_now();

    json_t *j = cv_post_ok("/corr2d", "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],"
                                      "[2,3]]}");
    json_decref(j);

    /* A small training needs the single worker; it has 10 s, the seed run itself takes ms. */
    static const char *const json_ct[] = {"Content-Type: application/json", NULL};
    char *small = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"steps\":5,"
                             "\"seed\":1,\"stream\":false}",
                             cv_seed_x, cv_seed_y);
    struct cv_reply r;
    ck_assert_msg(cv_request(&cv_d, "POST", "/train", json_ct, small, strlen(small), 10, &r) == 0,
                  "a training after the disconnect got no reply within 10 s (curl error %d): "
                  "the worker is still busy with the abandoned job",
                  r.curl_code);
    ck_assert_msg(r.status == 200, "training after the disconnect: %ld %s", r.status, r.body);
    cv_reply_free(&r);
    ck_assert_msg(cv_now() - t_abort < 10, "the worker took %.1f s to come free",
                  cv_now() - t_abort);

    /* The abandoned request must have ended on the daemon's side too (its access-log line is
     * written when the connection is done), without an error. */
    json_t *line = NULL;
    for (int tries = 0; tries < 100 && !line; tries++) {
        char *log = cv_daemon_log(&cv_d);
        ck_assert(log != NULL);
        line = find_request_line(log, "/train", job);
        free(log);
        if (!line)
            nanosleep(&(struct timespec){0, 50000000L}, NULL);
    }
    ck_assert_msg(line != NULL, "no access-log line for the disconnected job %s within 5 s", job);
    json_decref(line);
    free(small);
    free(body);
    cv_stream_free(&s);
}
END_TEST

static void sigterm_daemon(void *arg, int n) {
    if (n == 2) /* start and the first step: the job is running */
        kill(cv_d.pid, SIGTERM);
}

START_TEST(test_sigterm_ends_stream) {
    /* With a 1 s drain the long job is cancelled, and its stream must say so rather than stop. */
    cv_fixture_start((const char *const[]){"--max-steps", "1000000", "--drain-timeout", "1", NULL},
                     NULL);
    char *body = cv_big_train_body(128, 128, 5, 1000000, "");
    struct cv_stream s = {.on_line = sigterm_daemon};
    json_t *ev = cv_train_stream(body, &s, 30);
    json_t *last = cv_last_event(ev, "done");
    ck_assert_str_eq(json_string_value(json_object_get(last, "status")), "cancelled");
    ck_assert_msg(json_is_array(json_object_get(last, "weight")),
                  "a cancelled run still carries the kernel as it stood");
    json_decref(ev);
    cv_stream_free(&s);
    free(body);
    cv_check_exit_ok(cv_daemon_wait(&cv_d, CV_STOP_TIMEOUT_S), "after SIGTERM");
}
END_TEST

TCase *cv_tcase_stream(void) {
    TCase *tc = cv_tcase("stream", false); /* each test starts the daemon it needs */
    tcase_add_test(tc, test_sse_framing);
    tcase_add_test(tc, test_streams_while_training);
    tcase_add_test(tc, test_disconnect_cancels);
    tcase_add_test(tc, test_sigterm_ends_stream);
    return tc;
}
