/* libFuzzer target: a POST /corr2d body (also a POST /jobs body of kind corr2d), on whichever
 * path its size picks, then the reply rendering of what parsed. */
#include <stdlib.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        cv_api_init();
        ready = 1;
    }
    struct cv_api_limits lim = cv_fuzz_limits();
    struct cv_corr2d_request req;
    struct cv_api_error err;
    if (cv_api_corr2d_parse((const char *)data, size, &lim, &req, &err) == 0) {
        size_t len;
        free(cv_api_corr2d_reply_dump(&req, &len));
        cv_api_corr2d_request_free(&req);
    } else {
        size_t len;
        free(cv_api_problem_dump(&err, "/corr2d", &len));
    }
    return 0;
}
