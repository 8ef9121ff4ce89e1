/* Plain double-precision reference implementations of corr2d and its gradients.
 *
 * Straight loops over the definition in corr2d.h with no blocking, threads or tricks, used by
 * the tests as the ground truth for the fast float32 kernels. All arrays are row-major NCHW
 * doubles with the shapes of corr2d.h; outputs are caller-allocated and overwritten.
 * They never allocate and never fail: callers pass consistent shapes (checked by CV_ASSERT). */
#ifndef CONVD_REF_H
#define CONVD_REF_H

#include <stdint.h>

#include "convd/corr2d.h"

/* Shape of a reference tensor, NCHW. */
struct cv_ref_shape {
    int64_t n, c, h, w;
};

/* y (x.n, k.n, H', W') = corr2d(x, k) + bias (bias has k.n entries or is NULL). */
void cv_ref_corr2d_forward(const double *x, struct cv_ref_shape xs, const double *k,
                           struct cv_ref_shape ks, const double *bias,
                           const struct cv_conv2d_geom *g, double *y);

/* dx (xs) = dL/dX given dy (ys = (xs.n, ks.n, H', W')). */
void cv_ref_corr2d_backward_input(const double *dy, struct cv_ref_shape ys, const double *k,
                                  struct cv_ref_shape ks, const struct cv_conv2d_geom *g,
                                  double *dx, struct cv_ref_shape xs);

/* dk (ks) = dL/dK and dbias (ks.n entries, or NULL) given x (xs) and dy (ys). */
void cv_ref_corr2d_backward_kernel(const double *x, struct cv_ref_shape xs, const double *dy,
                                   struct cv_ref_shape ys, const struct cv_conv2d_geom *g,
                                   double *dk, struct cv_ref_shape ks, double *dbias);

#endif
