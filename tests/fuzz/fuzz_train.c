/* libFuzzer target: a POST /train body (also a POST /jobs body of kind train), then the start
 * event and the reply of what parsed (no training is run). */
#include <stdlib.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        cv_api_init();
        ready = 1;
    }
    struct cv_api_limits lim = cv_fuzz_limits();
    struct cv_train_request req;
    struct cv_api_error err;
    size_t len;
    if (cv_api_train_parse((const char *)data, size, &lim, &req, &err) == 0) {
        free(cv_api_event_start_dump(&req, "j-fuzz", &len));
        cv_api_train_request_free(&req);
    } else {
        free(cv_api_problem_dump(&err, "/train", &len));
    }
    return 0;
}
