/* The rows of API.md's Errors table, each as a real request: status, problem+json, the stable
 * code and the JSON pointer of the bad field. Limits (413) need their own daemon flags, so they
 * are a case of their own. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "http_suite.h"

#define SEED_CORR2D "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]]}"

/* POSTs body as JSON to path and checks the problem it must produce. */
static void expect_problem(const char *path, const char *body, int status, const char *code,
                           const char *pointer) {
    struct cv_reply r;
    ck_assert_msg(cv_post_json(&cv_d, path, body, &r) == 0, "POST %s: curl error %d", path,
                  r.curl_code);
    json_decref(cv_check_problem(&r, status, code, pointer));
    cv_reply_free(&r);
}

static void expect_healthy(void) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/healthz", NULL, NULL, 0, 5, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
}

START_TEST(test_not_json) {
    /* The syntax error is on line 3 ("x" is no JSON value): the reply says where. */
    struct cv_reply r;
    ck_assert_int_eq(
        cv_post_json(&cv_d, "/corr2d", "{\n  \"input\": [[1,2]],\n  \"kernel\": x\n}", &r), 0);
    json_t *j = cv_check_problem(&r, 400, "invalid_json", NULL);
    ck_assert_msg(json_integer_value(json_object_get(j, "line")) == 3, "line is not 3: %s", r.body);
    ck_assert_msg(json_integer_value(json_object_get(j, "column")) >= 1, "no column: %s", r.body);
    json_decref(j);
    cv_reply_free(&r);
    expect_problem("/train", "{\"input\": [1,2,}", 400, "invalid_json", NULL);
    expect_problem("/corr2d", "", 400, "invalid_json", NULL);
}
END_TEST

START_TEST(test_not_object) {
    expect_problem("/corr2d", "[1,2,3]", 400, "not_an_object", NULL);
    expect_problem("/train", "[[0,1],[2,3]]", 400, "not_an_object", NULL);
}
END_TEST

START_TEST(test_missing_field) {
    expect_problem("/corr2d", "{\"input\":[[1]]}", 422, "missing_field", "/kernel");
    expect_problem("/corr2d", "{\"kernel\":[[1]]}", 422, "missing_field", "/input");
    expect_problem("/train", "{\"input\":[[1,2]],\"kernel_size\":[1,1]}", 422, "missing_field",
                   "/target");
}
END_TEST

START_TEST(test_unknown_field) {
    expect_problem("/corr2d",
                   "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]],\"kernal\":1}",
                   422, "unknown_field", "/kernal");
}
END_TEST

START_TEST(test_ragged) {
    expect_problem("/corr2d", "{\"input\":[[0,1,2],[3,4]],\"kernel\":[[1]]}", 422, "invalid_field",
                   "/input/1");
}
END_TEST

START_TEST(test_bad_elements) {
    /* Strings, null and booleans are rejected at the element, as is a number beyond float32. */
    expect_problem("/corr2d", "{\"input\":[[0,1,2],[3,4,\"x\"]],\"kernel\":[[1]]}", 422,
                   "invalid_field", "/input/1/2");
    expect_problem("/corr2d", "{\"input\":[[0,1,2],[3,4,5]],\"kernel\":[[null]]}", 422,
                   "invalid_field", "/kernel/0/0");
    expect_problem("/corr2d", "{\"input\":[[0,true]],\"kernel\":[[1]]}", 422, "invalid_field",
                   "/input/0/1");
    expect_problem("/corr2d", "{\"input\":[[0,1e39]],\"kernel\":[[1]]}", 422, "invalid_field",
                   "/input/0/1");
}
END_TEST

START_TEST(test_bad_parameters) {
    expect_problem("/corr2d",
                   "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]],"
                   "\"stride\":0}",
                   422, "invalid_field", "/stride");
    expect_problem("/corr2d",
                   "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]],"
                   "\"padding\":\"sideways\"}",
                   422, "invalid_field", "/padding");
    expect_problem("/corr2d", "{\"input\":[[0,1],[2,3]],\"kernel\":[[1,1,1],[1,1,1],[1,1,1]]}", 422,
                   "shape_mismatch", "/kernel");
    char *body = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"lr\":-1}",
                            cv_seed_x, cv_seed_y);
    expect_problem("/train", body, 422, "invalid_field", "/lr");
    free(body);
    /* The target must have the output's shape: 6x8 input, 1x2 kernel -> 6x7, not 6x8. */
    body = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2]}", cv_seed_x, cv_seed_x);
    expect_problem("/train", body, 422, "shape_mismatch", "/target");
    free(body);
}
END_TEST

START_TEST(test_unsupported_media_type) {
    static const char *const plain[] = {"Content-Type: text/plain", NULL};
    struct cv_reply r;
    ck_assert_int_eq(
        cv_request(&cv_d, "POST", "/corr2d", plain, SEED_CORR2D, strlen(SEED_CORR2D), 0, &r), 0);
    json_decref(cv_check_problem(&r, 415, "unsupported_media_type", NULL));
    cv_reply_free(&r);
}
END_TEST

START_TEST(test_not_found) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/nope", NULL, NULL, 0, 0, &r), 0);
    json_decref(cv_check_problem(&r, 404, "not_found", NULL));
    cv_reply_free(&r);
    ck_assert_int_eq(cv_post_json(&cv_d, "/corr2d/extra", SEED_CORR2D, &r), 0);
    json_decref(cv_check_problem(&r, 404, "not_found", NULL));
    cv_reply_free(&r);
}
END_TEST

/* method on path must be 405 with an Allow header that lists allowed. */
static void expect_405(const char *method, const char *path, const char *allowed) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, method, path, NULL, NULL, 0, 0, &r), 0);
    json_decref(cv_check_problem(&r, 405, "method_not_allowed", NULL));
    ck_assert_msg(strstr(r.allow, allowed) != NULL, "%s %s: Allow is \"%s\", expected %s", method,
                  path, r.allow, allowed);
    cv_reply_free(&r);
}

START_TEST(test_method_not_allowed) {
    expect_405("GET", "/corr2d", "POST");
    expect_405("PUT", "/train", "POST");
    expect_405("DELETE", "/healthz", "GET");
    expect_405("PUT", "/kernels", "GET, POST");
    expect_405("POST", "/kernels/edge", "GET, DELETE");
    expect_healthy(); /* after every kind of bad request */
}
END_TEST

TCase *cv_tcase_errors(void) {
    TCase *tc = cv_tcase("errors", true);
    tcase_add_test(tc, test_not_json);
    tcase_add_test(tc, test_not_object);
    tcase_add_test(tc, test_missing_field);
    tcase_add_test(tc, test_unknown_field);
    tcase_add_test(tc, test_ragged);
    tcase_add_test(tc, test_bad_elements);
    tcase_add_test(tc, test_bad_parameters);
    tcase_add_test(tc, test_unsupported_media_type);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_method_not_allowed);
    return tc;
}

/* ---- limits ------------------------------------------------------------------------------ */

/* The seed /corr2d body padded with spaces (still valid JSON) to exactly n bytes. */
static char *padded_body(size_t n) {
    size_t len = strlen(SEED_CORR2D);
    ck_assert(n >= len);
    char *body = malloc(n + 1);
    memcpy(body, SEED_CORR2D, len);
    memset(body + len, ' ', n - len);
    body[n] = '\0';
    return body;
}

START_TEST(test_max_body) {
    cv_fixture_start((const char *const[]){"--max-body", "1000", NULL}, NULL);
    char *big = padded_body(2000), *fits = padded_body(1000);
    expect_problem("/corr2d", big, 413, "body_too_large", NULL);
    json_decref(cv_post_ok("/corr2d", fits));
    /* 413 comes from Content-Length alone: 8 MB offered with "Expect: 100-continue" is refused
     * before any of it is sent, so the reply is quick and the connection is not reset. */
    static const char *const expect[] = {"Content-Type: application/json", "Expect: 100-continue",
                                         NULL};
    char *huge = padded_body(8u << 20);
    struct cv_reply r;
    double t0 = cv_now();
    ck_assert_msg(cv_request(&cv_d, "POST", "/corr2d", expect, huge, strlen(huge), 10, &r) == 0,
                  "8 MB body: curl error %d", r.curl_code);
    json_decref(cv_check_problem(&r, 413, "body_too_large", NULL));
    ck_assert_msg(cv_now() - t0 < 2, "the 413 took %.1f s", cv_now() - t0);
    cv_reply_free(&r);
    free(huge);
    free(big);
    free(fits);
}
END_TEST

START_TEST(test_max_body_env) {
    /* The environment sets the limit ... */
    cv_fixture_start(NULL, (const char *const[]){"CONVD_MAX_BODY=1000", NULL});
    char *big = padded_body(2000);
    expect_problem("/corr2d", big, 413, "body_too_large", NULL);
    cv_check_exit_ok(cv_daemon_stop(&cv_d), "on SIGTERM");
    /* ... and a flag overrides it. */
    cv_fixture_start((const char *const[]){"--max-body", "100000", NULL},
                     (const char *const[]){"CONVD_MAX_BODY=1000", NULL});
    json_decref(cv_post_ok("/corr2d", big));
    free(big);
}
END_TEST

START_TEST(test_max_elements) {
    /* 11x11 = 121 elements over a limit of 100; 10x10 fits. */
    cv_fixture_start((const char *const[]){"--max-elements", "100", NULL}, NULL);
    char rows[2][600];
    for (int n = 10; n <= 11; n++) {
        char *s = rows[n - 10];
        size_t len = 0;
        s[len++] = '[';
        for (int i = 0; i < n; i++) {
            s[len++] = '[';
            for (int j = 0; j < n; j++)
                len += (size_t)snprintf(s + len, 600 - len, "%s1", j ? "," : "");
            len += (size_t)snprintf(s + len, 600 - len, "]%s", i + 1 < n ? "," : "]");
        }
    }
    char *body = cv_strdupf("{\"input\":%s,\"kernel\":[[1]]}", rows[1]);
    expect_problem("/corr2d", body, 413, "too_large", "/input");
    free(body);
    body = cv_strdupf("{\"input\":%s,\"kernel\":[[1]]}", rows[0]);
    json_decref(cv_post_ok("/corr2d", body));
    free(body);
}
END_TEST

START_TEST(test_max_steps) {
    cv_fixture_start((const char *const[]){"--max-steps", "10", NULL}, NULL);
    char *body = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"steps\":11}",
                            cv_seed_x, cv_seed_y);
    expect_problem("/train", body, 422, "invalid_field", "/steps");
    free(body);
}
END_TEST

TCase *cv_tcase_limits(void) {
    TCase *tc = cv_tcase("limits", false); /* each test starts the daemon with its limit */
    tcase_add_test(tc, test_max_body);
    tcase_add_test(tc, test_max_body_env);
    tcase_add_test(tc, test_max_elements);
    tcase_add_test(tc, test_max_steps);
    return tc;
}
