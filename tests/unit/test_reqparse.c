/* Unit tests of server/reqparse.c: the request target, the route matcher, integer query values,
 * the events cursor (?after=, Last-Event-ID) and GET /jobs's query. Edge cases: empty, huge,
 * overflowing, signed and percent-encoded input (libmicrohttpd decodes %XX before these see a
 * value, so "%31" arrives as "1" and "%00" ends the string; the raw forms must be refused). */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reqparse.h"

static int h_stub(struct MHD_Connection *conn, struct cv_req *req) {
    (void)conn;
    (void)req;
    return 0;
}

/* The shapes of server/routes.c's table: fixed paths, a "{id}" in the middle and at the end,
 * several methods on one path. */
static const struct cv_route routes[] = {
    {"POST", "/corr2d", h_stub, 0},
    {"POST", "/jobs", h_stub, 0},
    {"GET", "/jobs", h_stub, 0},
    {"GET", "/jobs/{id}", h_stub, 0},
    {"DELETE", "/jobs/{id}", h_stub, 0},
    {"GET", "/jobs/{id}/events", h_stub, 0},
    {"GET", "/", h_stub, 0},
    {"GET", "/healthz", h_stub, 0},
    {NULL, NULL, NULL, 0},
};

/* ---- target and routes ---------------------------------------------------------------------- */

START_TEST(test_origin_form) {
    ck_assert_str_eq(cv_reqparse_origin_form("/healthz"), "/healthz");
    ck_assert_str_eq(cv_reqparse_origin_form("http://h:1/healthz"), "/healthz");
    ck_assert_str_eq(cv_reqparse_origin_form("HTTPS://h/jobs/x"), "/jobs/x");
    ck_assert_str_eq(cv_reqparse_origin_form("http://h"), "/");
    ck_assert_str_eq(cv_reqparse_origin_form("http://"), "/");
    ck_assert_str_eq(cv_reqparse_origin_form(""), "");
    ck_assert_str_eq(cv_reqparse_origin_form("*"), "*");
    ck_assert_str_eq(cv_reqparse_origin_form("http:/x"), "http:/x"); /* not a scheme */
}
END_TEST

START_TEST(test_route_find) {
    struct cv_route_match m;
    const struct cv_route *r = cv_reqparse_route_find(routes, "GET", "/jobs/abc/events", &m);
    ck_assert_ptr_eq(r, &routes[5]);
    ck_assert_str_eq(m.id, "abc");
    ck_assert(m.path_known);
    r = cv_reqparse_route_find(routes, "DELETE", "/jobs/j-1", &m);
    ck_assert_ptr_eq(r, &routes[4]);
    ck_assert_str_eq(m.id, "j-1");
    ck_assert_str_eq(m.allow, "GET, DELETE");
    /* Known path, wrong method: no route, the methods for Allow. */
    r = cv_reqparse_route_find(routes, "PUT", "/jobs", &m);
    ck_assert_ptr_null(r);
    ck_assert(m.path_known);
    ck_assert_str_eq(m.allow, "POST, GET");
    ck_assert_str_eq(m.id, "");
    /* Unknown paths: empty id segment, trailing slash, extra segment, prefix, empty path. */
    static const char *const unknown[] = {
        "/jobs/", "/jobs//events",  "/healthz/", "/jobs/a/b", "/corr2", "/corr2d2", "",
        "//",     "/jobs/a/events/"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        r = cv_reqparse_route_find(routes, "GET", unknown[i], &m);
        ck_assert_msg(r == NULL && !m.path_known, "%s matched", unknown[i]);
        ck_assert_str_eq(m.allow, "");
    }
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    ck_assert_ptr_null(cv_reqparse_route_find(routes, "get", "/healthz", &m));
    ck_assert(m.path_known);
}
END_TEST

START_TEST(test_route_id_length) {
    struct cv_route_match m;
    char path[300];
    /* 63 bytes fit the id (with its NUL); 64 do not match at all (404, never truncated). */
    snprintf(path, sizeof path, "/jobs/%063d", 7);
    ck_assert_ptr_nonnull(cv_reqparse_route_find(routes, "GET", path, &m));
    ck_assert_uint_eq(strlen(m.id), CV_REQPARSE_ID_CAP - 1);
    snprintf(path, sizeof path, "/jobs/%064d", 7);
    ck_assert_ptr_null(cv_reqparse_route_find(routes, "GET", path, &m));
    ck_assert(!m.path_known);
    /* An id is whatever one segment holds, decoded bytes included ("%2F" arrives as '/'). */
    ck_assert_ptr_nonnull(cv_reqparse_route_find(routes, "GET", "/jobs/a%20b?x", &m));
    ck_assert_str_eq(m.id, "a%20b?x");
}
END_TEST

START_TEST(test_route_allow_bounded) {
    /* More methods on one path than Allow holds: cut short, never past the buffer. */
    struct cv_route many[40];
    for (int i = 0; i < 39; i++)
        many[i] = (struct cv_route){"VERYLONGMETHODNAME", "/x", h_stub, 0};
    many[39] = (struct cv_route){NULL, NULL, NULL, 0};
    struct cv_route_match m;
    ck_assert_ptr_nonnull(cv_reqparse_route_find(many, "VERYLONGMETHODNAME", "/x", &m));
    ck_assert_uint_lt(strlen(m.allow), sizeof m.allow);
    ck_assert(strncmp(m.allow, "VERYLONGMETHODNAME, VERYLONGMETHODNAME", 38) == 0);
}
END_TEST

/* ---- integers ------------------------------------------------------------------------------- */

START_TEST(test_int) {
    long long v = 42;
    ck_assert(cv_reqparse_int("0", 0, 10, &v) && v == 0);
    ck_assert(cv_reqparse_int("-1", -1, 10, &v) && v == -1);
    ck_assert(cv_reqparse_int("-0", 0, 10, &v) && v == 0);
    ck_assert(cv_reqparse_int("007", 0, 10, &v) && v == 7);
    ck_assert(cv_reqparse_int("2147483647", 0, INT_MAX, &v) && v == INT_MAX);
    ck_assert(cv_reqparse_int("999999999999999999", 0, LLONG_MAX, &v) && v == 999999999999999999LL);
    v = 42;
    static const char *const bad[] = {"",
                                      "-",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "1x",
                                      "0x10",
                                      "1e3",
                                      "1.0",
                                      "--1",
                                      "%31",
                                      "١",
                                      "2147483648",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "99999999999999999999999999999999999999",
                                      "1000000000000000000" /* 19 digits */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!cv_reqparse_int(bad[i], -1, INT_MAX, &v), "\"%s\" accepted", bad[i]);
    ck_assert(!cv_reqparse_int(NULL, 0, 1, &v));
    ck_assert(!cv_reqparse_int("11", 0, 10, &v));
    ck_assert(!cv_reqparse_int("-2", -1, 10, &v));
    ck_assert_int_eq(v, 42); /* untouched by every refusal */
    /* Huge: a megabyte of digits is refused without reading it as a number. */
    char *huge = malloc(1 << 20);
    memset(huge, '9', (1 << 20) - 1);
    huge[(1 << 20) - 1] = '\0';
    ck_assert(!cv_reqparse_int(huge, 0, LLONG_MAX, &v));
    free(huge);
}
END_TEST

/* ---- events cursor -------------------------------------------------------------------------- */

START_TEST(test_events_after) {
    struct cv_api_error err;
    long long after = 5;
    ck_assert_int_eq(cv_reqparse_events_after(NULL, NULL, &after, &err), 0);
    ck_assert_int_eq(after, -1);
    ck_assert_int_eq(cv_reqparse_events_after(NULL, "10", &after, &err), 0);
    ck_assert_int_eq(after, 10);
    ck_assert_int_eq(cv_reqparse_events_after("3", "10", &after, &err), 0); /* ?after= wins */
    ck_assert_int_eq(after, 3);
    ck_assert_int_eq(cv_reqparse_events_after(NULL, "2147483647", &after, &err), 0);
    ck_assert_int_eq(after, CV_REQPARSE_EVENT_ID_MAX);
    ck_assert_int_eq(cv_reqparse_events_after(NULL, "-1", &after, &err), 0);
    ck_assert_int_eq(after, -1);
    /* Empty Last-Event-ID: no cursor (EventSource sends none after an empty id field). */
    after = 5;
    ck_assert_int_eq(cv_reqparse_events_after(NULL, "", &after, &err), 0);
    ck_assert_int_eq(after, -1);
}
END_TEST

START_TEST(test_events_after_refused) {
    /* Issue 12 row 5: 9223372036854775807 made "after + 1" a signed overflow (UBSan). */
    static const char *const bad[] = {"9223372036854775807",
                                      "9223372036854775808",
                                      "99999999999999999999",
                                      "2147483648",
                                      "-2",
                                      "1x",
                                      " 1",
                                      "+1",
                                      "0x1",
                                      "1%00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cv_api_error err;
        long long after = 5;
        ck_assert_int_ne(cv_reqparse_events_after(NULL, bad[i], &after, &err), 0);
        ck_assert_int_eq(err.status, 400);
        ck_assert_str_eq(err.code, "invalid_header");
        ck_assert_int_ne(cv_reqparse_events_after(bad[i], NULL, &after, &err), 0);
        ck_assert_int_eq(err.status, 400);
        ck_assert_str_eq(err.code, "invalid_query");
        /* A bad ?after= is refused even with a good header, and an empty one too. */
        ck_assert_int_ne(cv_reqparse_events_after(bad[i], "1", &after, &err), 0);
    }
    struct cv_api_error err;
    long long after;
    ck_assert_int_ne(cv_reqparse_events_after("", NULL, &after, &err), 0);
    ck_assert_str_eq(err.code, "invalid_query");
    /* A huge header (MHD takes up to its memory pool's size). */
    char *huge = malloc(30000);
    memset(huge, '1', 29999);
    huge[29999] = '\0';
    ck_assert_int_ne(cv_reqparse_events_after(NULL, huge, &after, &err), 0);
    ck_assert_str_eq(err.code, "invalid_header");
    free(huge);
}
END_TEST

START_TEST(test_wants_sse) {
    ck_assert(!cv_reqparse_wants_sse(NULL));
    ck_assert(!cv_reqparse_wants_sse(""));
    ck_assert(!cv_reqparse_wants_sse("*/*"));
    ck_assert(cv_reqparse_wants_sse("text/event-stream"));
    ck_assert(cv_reqparse_wants_sse("application/json, TEXT/Event-Stream;q=0.5"));
}
END_TEST

/* ---- GET /jobs query ------------------------------------------------------------------------ */

static int jobs_query(const char *const *kv, struct cv_reqparse_jobs_query *q,
                      struct cv_api_error *err) {
    cv_reqparse_jobs_query_init(q);
    for (; kv[0] != NULL; kv += 2)
        cv_reqparse_jobs_query_add(q, kv[0], kv[1]);
    return cv_reqparse_jobs_query_finish(q, err);
}

START_TEST(test_jobs_query) {
    struct cv_reqparse_jobs_query q;
    struct cv_api_error err;
    ck_assert_int_eq(jobs_query((const char *const[]){NULL}, &q, &err), 0);
    ck_assert_int_eq(q.limit, CV_REQPARSE_JOBS_DEFAULT);
    ck_assert_ptr_null(q.status);
    ck_assert_int_eq(
        jobs_query((const char *const[]){"limit", "1000", "limit", "x", "status", "running",
                                         "status", "nope", "label", "a=b", "other", NULL, NULL},
                   &q, &err),
        0);
    ck_assert_int_eq(q.limit, 1000); /* the first limit and status count */
    ck_assert_str_eq(q.status, "running");
    ck_assert_int_eq(q.n_labels, 1);
    ck_assert_str_eq(q.labels[0], "a=b");
    static const char *const bad_limits[] = {"0",   "1001", "",    "-1",
                                             "1.5", "1e2",  "10 ", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
        ck_assert_int_ne(jobs_query((const char *const[]){"limit", bad_limits[i], NULL}, &q, &err),
                         0);
        ck_assert_str_eq(err.code, "invalid_query");
        ck_assert_str_eq(err.errors[0].pointer, "?limit");
    }
    /* "?limit" without '=' (value NULL) is a bad limit, not the default. */
    ck_assert_int_ne(jobs_query((const char *const[]){"limit", NULL, NULL}, &q, &err), 0);
    /* Labels: malformed, missing value, and a ninth selector. */
    ck_assert_int_ne(jobs_query((const char *const[]){"label", "novalue", NULL}, &q, &err), 0);
    ck_assert_str_eq(err.errors[0].pointer, "?label");
    ck_assert_int_ne(jobs_query((const char *const[]){"label", NULL, NULL}, &q, &err), 0);
    const char *nine[19];
    for (int i = 0; i < 9; i++) {
        nine[2 * i] = "label";
        nine[2 * i + 1] = "k=v";
    }
    nine[18] = NULL;
    ck_assert_int_ne(jobs_query(nine, &q, &err), 0);
    ck_assert_int_eq(q.n_labels, CV_REQPARSE_LABELS_MAX);
    nine[16] = NULL; /* eight are fine */
    ck_assert_int_eq(jobs_query(nine, &q, &err), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("reqparse");
    TCase *tc = tcase_create("reqparse");
    tcase_add_test(tc, test_origin_form);
    tcase_add_test(tc, test_route_find);
    tcase_add_test(tc, test_route_id_length);
    tcase_add_test(tc, test_route_allow_bounded);
    tcase_add_test(tc, test_int);
    tcase_add_test(tc, test_events_after);
    tcase_add_test(tc, test_events_after_refused);
    tcase_add_test(tc, test_wants_sse);
    tcase_add_test(tc, test_jobs_query);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
