/* Operations routes (/healthz, /kernels) and the daemon's life cycle: SIGTERM means exit 0. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "http_suite.h"

START_TEST(test_healthz) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/healthz", NULL, NULL, 0, 5, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
}
END_TEST

START_TEST(test_kernels_lists_edge) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/kernels", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_check_media_type(r.content_type, "application/json");
    json_t *j = cv_reply_json(&r);
    json_t *list = json_object_get(j, "kernels");
    ck_assert_msg(json_array_size(list) > 0, "no \"kernels\" list: %s", r.body);
    json_t *edge = NULL;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(list, i), "name"));
        if (name && strcmp(name, "edge") == 0)
            edge = json_array_get(list, i);
    }
    ck_assert_msg(edge != NULL, "\"edge\" is not listed: %s", r.body);
    cv_check_nested(json_object_get(edge, "kernel"), 2, (int[]){1, 2}, (double[]){1, -1}, 0);
    json_decref(j);
    cv_reply_free(&r);
}
END_TEST

TCase *cv_tcase_ops(void) {
    TCase *tc = cv_tcase("ops", true);
    tcase_add_test(tc, test_healthz);
    tcase_add_test(tc, test_kernels_lists_edge);
    return tc;
}

START_TEST(test_sigterm_exits_0) {
    /* After serving, SIGTERM must stop the daemon cleanly (a container runtime reads the status).
     */
    json_decref(cv_post_ok("/corr2d", "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}"));
    ck_assert_int_eq(kill(cv_d.pid, SIGTERM), 0);
    int st = cv_daemon_wait(&cv_d, CV_STOP_TIMEOUT_S);
    ck_assert_msg(st != -1, "convd still runs %d s after SIGTERM", CV_STOP_TIMEOUT_S);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "convd ended with wait status %d", st);
}
END_TEST

TCase *cv_tcase_lifecycle(void) {
    TCase *tc = cv_tcase("lifecycle", true);
    tcase_add_test(tc, test_sigterm_exits_0);
    return tc;
}
