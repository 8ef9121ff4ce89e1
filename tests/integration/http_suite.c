/* Fixtures and assertions shared by the http_<topic>.c test cases. */
#include "http_suite.h"

#include <math.h>
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
    int st = cv_daemon_stop(&cv_d);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "convd did not exit 0 on SIGTERM (wait status %d)", st);
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
