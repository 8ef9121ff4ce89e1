/* libFuzzer target: the "b64" tensor form's decoder, and that encoding what it decoded gives
 * back a string that decodes to the same bytes. */
#include <stdlib.h>
#include <string.h>

#include <convd/base64.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t cap = cv_base64_decoded_max(size);
    uint8_t *out = malloc(cap + 1);
    size_t n = 0;
    if (out == NULL)
        return 0;
    if (cv_base64_decode((const char *)data, size, out, cap, &n, NULL) == 0) {
        if (n > cap)
            abort();
        char *enc = malloc(cv_base64_encoded_len(n) + 1);
        uint8_t *back = malloc(n + 1);
        size_t m = 0;
        if (enc != NULL && back != NULL) {
            cv_base64_encode(out, n, enc);
            if (cv_base64_decode(enc, cv_base64_encoded_len(n), back, n + 1, &m, NULL) != 0 ||
                m != n || memcmp(back, out, n) != 0)
                abort();
        }
        free(enc);
        free(back);
    }
    free(out);
    return 0;
}
