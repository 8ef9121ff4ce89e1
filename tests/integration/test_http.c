/* The HTTP integration suite: the real convd on 127.0.0.1:0, driven by libcurl. Each test gets
 * its own daemon (see http_suite.h); the cases live in http_<topic>.c. */
#include <curl/curl.h>
#include <stdlib.h>

#include "http_suite.h"

int main(void) {
    /* Before any fork: curl's global state is then inherited by every test process. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return EXIT_FAILURE;
    Suite *s = suite_create("http");
    suite_add_tcase(s, cv_tcase_ops());
    suite_add_tcase(s, cv_tcase_corr2d());
    suite_add_tcase(s, cv_tcase_train());
    suite_add_tcase(s, cv_tcase_stream());
    suite_add_tcase(s, cv_tcase_errors());
    suite_add_tcase(s, cv_tcase_limits());
    suite_add_tcase(s, cv_tcase_lifecycle());
    suite_add_tcase(s, cv_tcase_jobs());
    suite_add_tcase(s, cv_tcase_jobs_queue());
    suite_add_tcase(s, cv_tcase_operations());
    suite_add_tcase(s, cv_tcase_drain());
    suite_add_tcase(s, cv_tcase_security());
    suite_add_tcase(s, cv_tcase_reliability());
    suite_add_tcase(s, cv_tcase_reliability_own());
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
