/* Allocation and bookkeeping of dense NCHW float32 tensors. */
#include "convd/tensor.h"

#include <stdlib.h>

#include "convd/status.h"

int cv_tensor_init(struct cv_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w) {
    CV_ASSERT(t != NULL);
    *t = (struct cv_tensor){0, 0, 0, 0, NULL};
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return CV_EINVAL;
    /* Refuse counts whose byte size would overflow size_t (checked one factor at a time). */
    int64_t numel = 1;
    const int64_t dims[4] = {n, c, h, w};
    for (int i = 0; i < 4; i++) {
        if (numel > INT64_MAX / dims[i])
            return CV_EINVAL;
        numel *= dims[i];
    }
    if ((uint64_t)numel > SIZE_MAX / sizeof(float))
        return CV_EINVAL;
    float *data = calloc((size_t)numel, sizeof(float));
    if (data == NULL)
        return CV_ENOMEM;
    *t = (struct cv_tensor){n, c, h, w, data};
    return CV_OK;
}

void cv_tensor_free(struct cv_tensor *t) {
    if (t == NULL)
        return;
    free(t->data);
    *t = (struct cv_tensor){0, 0, 0, 0, NULL};
}

int64_t cv_tensor_numel(const struct cv_tensor *t) {
    if (t == NULL || t->data == NULL)
        return 0;
    return t->n * t->c * t->h * t->w;
}

struct cv_tensor cv_tensor_view(const struct cv_tensor *t) {
    CV_ASSERT(t != NULL);
    return *t;
}

bool cv_tensor_all_finite(const struct cv_tensor *t) {
    const int64_t n = cv_tensor_numel(t);
    /* A sum of the elements times zero is NaN exactly when one of them is not finite; the
     * loop vectorises and has no branch. */
    float acc = 0.0f;
    for (int64_t q = 0; q < n; q++)
        acc += t->data[q] * 0.0f;
    return acc == 0.0f;
}
