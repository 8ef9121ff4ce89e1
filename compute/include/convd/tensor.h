/* Dense float32 tensors in NCHW order, row-major and contiguous.
 *
 * Every tensor the compute layer sees is 4-D: an input is (N, C, H, W), a kernel is
 * (Cout, C, kh, kw), an output is (N, Cout, H', W'). Lower-rank tensors of the HTTP API are
 * mapped onto these by the api layer (a (H, W) input is (1, 1, H, W)).
 *
 * Ownership: a tensor made by cv_tensor_init owns its data and is released by cv_tensor_free.
 * A "view" is a struct cv_tensor filled by hand whose data points into memory owned by someone
 * else; a view is never passed to cv_tensor_free. */
#ifndef CONVD_TENSOR_H
#define CONVD_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

struct cv_tensor {
    int64_t n, c, h, w; /* batch, channels, rows, columns; all >= 1 when data != NULL */
    float *data;        /* n*c*h*w floats, row-major; NULL for an empty tensor */
};

/* Allocates a zero-filled n x c x h x w tensor into *t (which need not be initialised).
 * Returns CV_OK, CV_EINVAL when a dimension is < 1 or the element count overflows, or
 * CV_ENOMEM. On failure *t is left empty ({0,0,0,0,NULL}). The caller frees with cv_tensor_free. */
int cv_tensor_init(struct cv_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w);

/* Releases the data of a tensor made by cv_tensor_init and leaves it empty.
 * NULL-safe; safe on an empty tensor; must not be called on a view. */
void cv_tensor_free(struct cv_tensor *t);

/* Number of elements, n*c*h*w (0 for an empty tensor). */
int64_t cv_tensor_numel(const struct cv_tensor *t);

/* True when every element is finite (no NaN or infinity); true for an empty tensor. */
bool cv_tensor_all_finite(const struct cv_tensor *t);

/* Returns a view of t with the same shape and data (borrowed: do not free). */
struct cv_tensor cv_tensor_view(const struct cv_tensor *t);

#endif
