/* Fixtures and assertions shared by the http_<topic>.c test cases. */
#include "http_suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

struct cv_daemon cv_d;

const char cv_seed_x[] = "[[1,1,1,1,1,1,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],"
                         "[1,1,0,0,0,0,1,1],[1,1,1,1,1,1,1,1],[1,1,1,1,1,1,1,1]]";
const char cv_seed_y[] = "[[0,0,0,0,0,0,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],"
                         "[0,1,0,0,0,-1,0],[0,0,0,0,0,0,0],[0,0,0,0,0,0,0]]";
const double cv_seed_y_values[6 * 7] = {
    0, 0, 0, 0, 0, 0,  0, /* row 0 */
    0, 1, 0, 0, 0, -1, 0, /* rows 1..3: the edges of the zero block */
    0, 1, 0, 0, 0, -1, 0, /* */
    0, 1, 0, 0, 0, -1, 0, /* */
    0, 0, 0, 0, 0, 0,  0, /* */
    0, 0, 0, 0, 0, 0,  0, /* */
};

void cv_fixture_start(const char *const *args, const char *const *env) {
    ck_assert_msg(cv_daemon_start(&cv_d, args, env) == 0, "convd did not start (see stderr)");
}

void cv_fixture_default(void) {
    cv_fixture_start(NULL, NULL);
}

void cv_fixture_stop(void) {
    if (cv_d.pid <= 0)
        return; /* the test stopped it itself */
    ck_assert_msg(cv_daemon_alive(&cv_d), "convd died during the test");
    cv_check_exit_ok(cv_daemon_stop(&cv_d), "on SIGTERM");
}

void cv_check_exit_ok(int st, const char *when) {
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "convd did not exit 0 %s (wait status %d)", when, st);
}

TCase *cv_tcase(const char *name, bool with_default) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, CV_TCASE_TIMEOUT_S);
    tcase_add_checked_fixture(tc, with_default ? cv_fixture_default : NULL, cv_fixture_stop);
    return tc;
}

void cv_check_media_type(const char *content_type, const char *type) {
    size_t n = strlen(type);
    ck_assert_msg(strncasecmp(content_type, type, n) == 0 &&
                      (content_type[n] == '\0' || content_type[n] == ';'),
                  "Content-Type is \"%s\", expected %s", content_type, type);
}

json_t *cv_post_ok(const char *path, const char *body) {
    struct cv_reply r;
    ck_assert_msg(cv_post_json(&cv_d, path, body, &r) == 0, "POST %s failed: curl error %d", path,
                  r.curl_code);
    ck_assert_msg(r.status == 200, "POST %s %s -> %ld %s", path, body, r.status, r.body);
    cv_check_media_type(r.content_type, "application/json");
    json_t *j = cv_reply_json(&r);
    ck_assert_msg(j != NULL, "reply is not JSON: %s", r.body);
    cv_reply_free(&r);
    return j;
}

json_t *cv_check_problem(const struct cv_reply *r, int status, const char *code,
                         const char *pointer) {
    ck_assert_msg(r->status == status, "status %ld, expected %d; body %s", r->status, status,
                  r->body);
    cv_check_media_type(r->content_type, "application/problem+json");
    json_t *j = cv_reply_json(r);
    ck_assert_msg(json_is_object(j), "problem body is not a JSON object: %s", r->body);
    ck_assert_msg(json_integer_value(json_object_get(j, "status")) == status,
                  "\"status\" in the body differs from %d: %s", status, r->body);
    ck_assert_msg(json_is_string(json_object_get(j, "title")), "no title: %s", r->body);
    ck_assert_msg(json_is_string(json_object_get(j, "detail")), "no detail: %s", r->body);
    const char *got = json_string_value(json_object_get(j, "code"));
    ck_assert_msg(got && strcmp(got, code) == 0, "code %s, expected %s: %s", got ? got : "(none)",
                  code, r->body);
    if (pointer) {
        json_t *errors = json_object_get(j, "errors");
        bool found = false;
        for (size_t i = 0; i < json_array_size(errors); i++) {
            const char *p =
                json_string_value(json_object_get(json_array_get(errors, i), "pointer"));
            found = found || (p && strcmp(p, pointer) == 0);
        }
        ck_assert_msg(found, "no error with pointer %s: %s", pointer, r->body);
    }
    return j;
}

/* Walks t depth-first, checking each level's length against shape and the leaves against
 * expect[*at]. */
static void check_level(json_t *t, int depth, int rank, const int *shape, const double *expect,
                        int *at, double tol) {
    ck_assert_msg(json_is_array(t) && (int)json_array_size(t) == shape[depth],
                  "level %d has %zu elements, expected %d", depth, json_array_size(t),
                  shape[depth]);
    for (int i = 0; i < shape[depth]; i++) {
        json_t *e = json_array_get(t, (size_t)i);
        if (depth + 1 < rank) {
            check_level(e, depth + 1, rank, shape, expect, at, tol);
            continue;
        }
        ck_assert_msg(json_is_number(e), "element %d is not a number", *at);
        double v = json_number_value(e);
        ck_assert_msg(fabs(v - expect[*at]) <= tol, "element %d is %.9g, expected %.9g", *at, v,
                      expect[*at]);
        (*at)++;
    }
}

void cv_check_nested(json_t *t, int rank, const int *shape, const double *expect, double tol) {
    int at = 0;
    check_level(t, 0, rank, shape, expect, &at, tol);
}

void cv_check_rel(double actual, double expect, double rel, const char *what) {
    ck_assert_msg(fabs(actual - expect) <= rel * fabs(expect), "%s is %.9g, expected %.9g", what,
                  actual, expect);
}

double cv_num(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_number(v), "member \"%s\" is missing or not a number", key);
    return json_number_value(v);
}

json_t *cv_ndjson_events(const struct cv_stream *s) {
    json_t *events = json_array();
    for (int i = 0; i < s->n_lines; i++) {
        const char *text = s->lines[i].text;
        if (text[0] == '\0')
            continue; /* a heartbeat; readers skip blank lines */
        json_t *e = json_loads(text, 0, NULL);
        ck_assert_msg(json_is_object(e) && json_is_string(json_object_get(e, "event")),
                      "line %d is not an event object: %s", i + 1, text);
        json_array_append_new(events, e);
    }
    return events;
}

json_t *cv_train_stream(const char *body, struct cv_stream *s, long timeout_s) {
    ck_assert_msg(cv_stream_post(&cv_d, "/train", NULL, body, timeout_s, s) == 0,
                  "POST /train: the stream broke off (curl error %d)", s->curl_code);
    ck_assert_int_eq(s->status, 200);
    ck_assert_msg(s->partial_len == 0, "the stream ended in the middle of a line");
    return cv_ndjson_events(s);
}

json_t *cv_last_event(json_t *events, const char *event) {
    const size_t n = json_array_size(events);
    ck_assert_msg(n > 0, "no events, expected the last to be \"%s\"", event);
    json_t *last = json_array_get(events, n - 1);
    ck_assert_msg(strcmp(cv_str(last, "event"), event) == 0, "the last event is \"%s\", not \"%s\"",
                  cv_str(last, "event"), event);
    return last;
}

char *cv_big_train_body(int h, int w, int k, long steps, const char *extra) {
    size_t cap = (size_t)h * w * 6 + 64, len = 0;
    char *grid = malloc(cap), *zeros = malloc(cap);
    ck_assert(grid && zeros);
    grid[len++] = '[';
    for (int i = 0; i < h; i++) {
        grid[len++] = '[';
        for (int j = 0; j < w; j++)
            len += (size_t)snprintf(grid + len, cap - len, "%s%.1f", j ? "," : "",
                                    (double)((i * 7 + j * 3) % 11) / 10.0);
        len += (size_t)snprintf(grid + len, cap - len, "]%s", i + 1 < h ? "," : "]");
    }
    int oh = h - k + 1, ow = w - k + 1; /* the output's size */
    len = 0;
    zeros[len++] = '[';
    for (int i = 0; i < oh; i++) {
        zeros[len++] = '[';
        for (int j = 0; j < ow; j++)
            len += (size_t)snprintf(zeros + len, cap - len, "%s0", j ? "," : "");
        len += (size_t)snprintf(zeros + len, cap - len, "]%s", i + 1 < oh ? "," : "]");
    }
    char *body = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[%d,%d],\"loss\":\"mse\","
                            "\"lr\":0.01,\"steps\":%ld,\"seed\":7%s}",
                            grid, zeros, k, k, steps, extra ? extra : "");
    free(grid);
    free(zeros);
    return body;
}

const char *cv_str(json_t *obj, const char *key) {
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

json_t *cv_get_ok(const char *path, const char *const *headers) {
    struct cv_reply r;
    ck_assert_msg(cv_request(&cv_d, "GET", path, headers, NULL, 0, 0, &r) == 0,
                  "GET %s failed: curl error %d", path, r.curl_code);
    ck_assert_msg(r.status == 200, "GET %s -> %ld %s", path, r.status, r.body);
    cv_check_media_type(r.content_type, "application/json");
    json_t *j = cv_reply_json(&r);
    ck_assert_msg(j != NULL, "GET %s: reply is not JSON: %s", path, r.body);
    cv_reply_free(&r);
    return j;
}

json_t *cv_post_job(const char *body, char *id) {
    struct cv_reply r;
    ck_assert_msg(cv_post_json(&cv_d, "/jobs", body, &r) == 0, "POST /jobs: curl error %d",
                  r.curl_code);
    ck_assert_msg(r.status == 202, "POST /jobs -> %ld %s", r.status, r.body);
    cv_check_media_type(r.content_type, "application/json");
    json_t *j = cv_reply_json(&r);
    ck_assert_msg(json_is_object(j), "POST /jobs: reply is not a JSON object: %s", r.body);
    const char *got = cv_str(j, "id");
    ck_assert_msg(strlen(got) == 34 && strncmp(got, "j-", 2) == 0 &&
                      strspn(got + 2, "0123456789abcdef") == 32,
                  "job id \"%s\" is not j- and 32 lowercase hex digits", got);
    snprintf(id, 64, "%s", got);
    char want[128];
    snprintf(want, sizeof want, "/jobs/%s", got);
    ck_assert_msg(strcmp(r.location, want) == 0, "Location is \"%s\", expected %s", r.location,
                  want);
    /* (whether the reply still says "queued" is checked by test_post_reply_queued alone) */
    cv_reply_free(&r);
    return j;
}

static bool terminal(const char *status) {
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

json_t *cv_wait_job(const char *id, const char *want, double timeout_s) {
    char *path = cv_strdupf("/jobs/%s", id);
    double deadline = cv_now() + timeout_s;
    json_t *j = NULL;
    for (;;) {
        json_decref(j);
        j = cv_get_ok(path, NULL);
        const char *st = cv_str(j, "status");
        if (want ? strcmp(st, want) == 0 : terminal(st))
            break;
        ck_assert_msg(cv_now() < deadline, "job %s is still \"%s\" after %.0f s (waiting for %s)",
                      id, st, timeout_s, want ? want : "the end");
        ck_assert_msg(!want || !terminal(st), "job %s ended \"%s\" while waiting for %s", id, st,
                      want);
        cv_sleep_ms(20);
    }
    free(path);
    return j;
}

int cv_parse_sse(const struct cv_stream *s, struct cv_sse_event *ev, int cap) {
    int n = 0;
    struct cv_sse_event cur = {-1, "", NULL};
    bool open = false;
    for (int i = 0; i < s->n_lines; i++) {
        const char *line = s->lines[i].text;
        if (line[0] == '\0') {
            if (open) {
                ck_assert_msg(n < cap, "more than %d events", cap);
                ev[n++] = cur;
                cur = (struct cv_sse_event){-1, "", NULL};
                open = false;
            }
            continue;
        }
        if (line[0] == ':' || strncmp(line, "retry:", 6) == 0)
            continue;
        const char *colon = strchr(line, ':');
        ck_assert_msg(colon != NULL, "not an SSE field line: %s", line);
        const char *value = colon[1] == ' ' ? colon + 2 : colon + 1;
        size_t field = (size_t)(colon - line);
        open = true;
        if (field == 2 && strncmp(line, "id", 2) == 0) {
            cur.id = strtol(value, NULL, 10);
        } else if (field == 5 && strncmp(line, "event", 5) == 0) {
            snprintf(cur.name, sizeof cur.name, "%s", value);
        } else if (field == 4 && strncmp(line, "data", 4) == 0) {
            ck_assert_msg(cur.data == NULL, "an event has several data lines");
            cur.data = json_loads(value, 0, NULL);
            ck_assert_msg(json_is_object(cur.data), "data is not a JSON object: %s", value);
        } else {
            ck_abort_msg("unknown SSE field: %s", line);
        }
    }
    ck_assert_msg(!open, "the stream ended inside an event (no blank line after it)");
    return n;
}
