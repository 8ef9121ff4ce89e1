/* libFuzzer target: the store's record codec (store/src/codec.c) decoding what it reads back
 * from SQLite or PostgreSQL, which a damaged or foreign database can make anything. Every
 * getter runs on the first tags; whatever decodes is encoded again and must decode. */
#include <stdlib.h>

#include "cv_store.h"
#include "cv_store_codec.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cv_store_rec *r = NULL;
    if (cv_store_rec_decode(data, size, &r) != CV_STORE_OK)
        return 0;
    for (uint32_t tag = 0; tag < 16; tag++) {
        int64_t i;
        double d;
        const void *p;
        size_t n;
        struct cv_tensor t;
        float *f;
        double *g;
        int64_t m;
        (void)cv_store_rec_get_i64(r, tag, &i);
        (void)cv_store_rec_get_f64(r, tag, &d);
        (void)cv_store_rec_get_bytes(r, tag, &p, &n);
        if (cv_store_rec_get_tensor(r, tag, &t) == CV_STORE_OK)
            cv_tensor_free(&t);
        if (cv_store_rec_get_f32s(r, tag, &f, &m) == CV_STORE_OK)
            free(f);
        if (cv_store_rec_get_f64s(r, tag, &g, &m) == CV_STORE_OK)
            free(g);
    }
    cv_store_rec_free(r);
    return 0;
}
