/* libFuzzer target: the access-log writer (server/log.c) with any method, path, request id and
 * job id, in both formats. The input is split at NUL bytes into those four strings; its first
 * byte picks the format. run.sh closes stderr for it (-close_fd_mask=2): the target looks for
 * memory errors (ASan). */
#include <stdlib.h>
#include <string.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    char *s = malloc(size + 4);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    memset(s + size - 1, 0, 5);
    const char *part[4];
    char *p = s, *end = s + size - 1;
    for (int i = 0; i < 4; i++) {
        part[i] = p;
        p += strlen(p);
        if (p < end)
            p++;
    }
    cv_log_init((data[0] & 1) ? CV_LOG_FORMAT_TEXT : CV_LOG_FORMAT_JSON);
    struct cv_log_request r = {.method = part[0],
                               .path = part[1],
                               .request_id = part[2],
                               .job_id = (data[0] & 2) ? part[3] : NULL,
                               .status = 200 + data[0],
                               .bytes_in = size,
                               .bytes_out = size * 3,
                               .duration_ms = 1.5};
    cv_log_request(&r);
    cv_log_msg("info", part[1], NULL);
    free(s);
    return 0;
}
