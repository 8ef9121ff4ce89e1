/* libFuzzer target: a POST /jobs body as the server reads it: the "kind" peek, then the full
 * parser of that kind. */
#include <stdlib.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        cv_api_init();
        ready = 1;
    }
    struct cv_api_limits lim = cv_fuzz_limits();
    struct cv_api_error err;
    enum cv_api_job_kind kind;
    const char *body = (const char *)data;
    if (cv_api_job_kind_peek(body, size, &kind, &err) != 0)
        return 0;
    if (kind == CV_API_JOB_KIND_CORR2D) {
        struct cv_corr2d_request req;
        if (cv_api_corr2d_parse(body, size, &lim, &req, &err) == 0)
            cv_api_corr2d_request_free(&req);
    } else {
        struct cv_train_request req;
        if (cv_api_train_parse(body, size, &lim, &req, &err) == 0)
            cv_api_train_request_free(&req);
    }
    return 0;
}
