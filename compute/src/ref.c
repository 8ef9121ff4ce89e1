/* Double-precision corr2d and its gradients, straight from the definition in corr2d.h. */
#include "convd/ref.h"

#include <stddef.h>

#include "convd/status.h"

static void ref_out_shape(struct cv_ref_shape xs, struct cv_ref_shape ks,
                          const struct cv_conv2d_geom *g, int64_t *oh, int64_t *ow) {
    CV_ASSERT(g != NULL && xs.c == ks.c);
    int st = cv_corr2d_out_shape(xs.h, xs.w, ks.h, ks.w, g, oh, ow);
    CV_ASSERT(st == CV_OK);
}

/* Xpad[n,c,r,col] as an index into x, or -1 when (r, col) falls in the padding. */
static ptrdiff_t xpad_index(struct cv_ref_shape xs, const struct cv_conv2d_geom *g, int64_t n,
                            int64_t c, int64_t r, int64_t col) {
    const int64_t xr = r - g->pad_top;
    const int64_t xc = col - g->pad_left;
    if (xr < 0 || xr >= xs.h || xc < 0 || xc >= xs.w)
        return -1;
    return (ptrdiff_t)(((n * xs.c + c) * xs.h + xr) * xs.w + xc);
}

void cv_ref_corr2d_forward(const double *x, struct cv_ref_shape xs, const double *k,
                           struct cv_ref_shape ks, const double *bias,
                           const struct cv_conv2d_geom *g, double *y) {
    CV_ASSERT(x != NULL && k != NULL && y != NULL);
    int64_t oh, ow;
    ref_out_shape(xs, ks, g, &oh, &ow);
    for (int64_t n = 0; n < xs.n; n++)
        for (int64_t o = 0; o < ks.n; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double acc = bias != NULL ? bias[o] : 0.0;
                    for (int64_t c = 0; c < xs.c; c++)
                        for (int64_t a = 0; a < ks.h; a++)
                            for (int64_t b = 0; b < ks.w; b++) {
                                ptrdiff_t xi =
                                    xpad_index(xs, g, n, c, i * g->stride_h + a * g->dil_h,
                                               j * g->stride_w + b * g->dil_w);
                                if (xi >= 0)
                                    acc += x[xi] * k[((o * ks.c + c) * ks.h + a) * ks.w + b];
                            }
                    y[((n * ks.n + o) * oh + i) * ow + j] = acc;
                }
}

void cv_ref_corr2d_backward_input(const double *dy, struct cv_ref_shape ys, const double *k,
                                  struct cv_ref_shape ks, const struct cv_conv2d_geom *g,
                                  double *dx, struct cv_ref_shape xs) {
    CV_ASSERT(dy != NULL && k != NULL && dx != NULL);
    int64_t oh, ow;
    ref_out_shape(xs, ks, g, &oh, &ow);
    CV_ASSERT(ys.n == xs.n && ys.c == ks.n && ys.h == oh && ys.w == ow);
    for (int64_t q = 0; q < xs.n * xs.c * xs.h * xs.w; q++)
        dx[q] = 0.0;
    /* Each forward term X[.]*K[.] sends dY times K back to the X it read. */
    for (int64_t n = 0; n < xs.n; n++)
        for (int64_t o = 0; o < ks.n; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    const double d = dy[((n * ks.n + o) * oh + i) * ow + j];
                    for (int64_t c = 0; c < xs.c; c++)
                        for (int64_t a = 0; a < ks.h; a++)
                            for (int64_t b = 0; b < ks.w; b++) {
                                ptrdiff_t xi =
                                    xpad_index(xs, g, n, c, i * g->stride_h + a * g->dil_h,
                                               j * g->stride_w + b * g->dil_w);
                                if (xi >= 0)
                                    dx[xi] += d * k[((o * ks.c + c) * ks.h + a) * ks.w + b];
                            }
                }
}

void cv_ref_corr2d_backward_kernel(const double *x, struct cv_ref_shape xs, const double *dy,
                                   struct cv_ref_shape ys, const struct cv_conv2d_geom *g,
                                   double *dk, struct cv_ref_shape ks, double *dbias) {
    CV_ASSERT(x != NULL && dy != NULL && dk != NULL);
    int64_t oh, ow;
    ref_out_shape(xs, ks, g, &oh, &ow);
    CV_ASSERT(ys.n == xs.n && ys.c == ks.n && ys.h == oh && ys.w == ow);
    for (int64_t q = 0; q < ks.n * ks.c * ks.h * ks.w; q++)
        dk[q] = 0.0;
    if (dbias != NULL)
        for (int64_t o = 0; o < ks.n; o++)
            dbias[o] = 0.0;
    for (int64_t n = 0; n < xs.n; n++)
        for (int64_t o = 0; o < ks.n; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    const double d = dy[((n * ks.n + o) * oh + i) * ow + j];
                    if (dbias != NULL)
                        dbias[o] += d;
                    for (int64_t c = 0; c < xs.c; c++)
                        for (int64_t a = 0; a < ks.h; a++)
                            for (int64_t b = 0; b < ks.w; b++) {
                                ptrdiff_t xi =
                                    xpad_index(xs, g, n, c, i * g->stride_h + a * g->dil_h,
                                               j * g->stride_w + b * g->dil_w);
                                if (xi >= 0)
                                    dk[((o * ks.c + c) * ks.h + a) * ks.w + b] += d * x[xi];
                            }
                }
}
