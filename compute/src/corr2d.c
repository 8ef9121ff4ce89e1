/* float32 corr2d forward and backward: simple direct loops, parallelised with OpenMP.
 *
 * Every kernel walks output (or input) rows and, for each kernel tap, computes once the range of
 * columns whose source pixel lies inside the unpadded input, so the innermost loop has no
 * branches for padding and the compiler can vectorise it (for stride 1). Each parallel loop gives
 * a thread whole output rows or whole kernel entries, so no two threads write the same float and
 * the result does not depend on the number of threads. */
#include "convd/corr2d.h"

#include <stdbool.h>
#include <stddef.h>

#include "convd/status.h"

/* Problems with fewer multiply-adds than this run on the calling thread: waking an OpenMP team
 * costs more than the arithmetic. */
#define CV_CORR2D_PARALLEL_MIN_MACS ((int64_t)32768)

/* Sizes beyond this are refused as invalid rather than risking int64 overflow in the
 * output-shape arithmetic (dil*(k-1) and the like); no real tensor comes close. */
#define CV_CORR2D_MAX_DIM ((int64_t)1 << 31)

struct cv_conv2d_geom cv_conv2d_geom_default(void) {
    return (struct cv_conv2d_geom){.pad_top = 0,
                                   .pad_bottom = 0,
                                   .pad_left = 0,
                                   .pad_right = 0,
                                   .stride_h = 1,
                                   .stride_w = 1,
                                   .dil_h = 1,
                                   .dil_w = 1};
}

static int geom_check(const struct cv_conv2d_geom *g) {
    if (g->stride_h < 1 || g->stride_w < 1 || g->dil_h < 1 || g->dil_w < 1)
        return CV_EINVAL;
    if (g->pad_top < 0 || g->pad_bottom < 0 || g->pad_left < 0 || g->pad_right < 0)
        return CV_EINVAL;
    if (g->stride_h > CV_CORR2D_MAX_DIM || g->stride_w > CV_CORR2D_MAX_DIM ||
        g->dil_h > CV_CORR2D_MAX_DIM || g->dil_w > CV_CORR2D_MAX_DIM ||
        g->pad_top > CV_CORR2D_MAX_DIM || g->pad_bottom > CV_CORR2D_MAX_DIM ||
        g->pad_left > CV_CORR2D_MAX_DIM || g->pad_right > CV_CORR2D_MAX_DIM)
        return CV_EINVAL;
    return CV_OK;
}

/* One dimension of cv_corr2d_out_shape. All operands are below 2^31, so nothing overflows. */
static int out_len(int64_t in, int64_t k, int64_t pad0, int64_t pad1, int64_t stride, int64_t dil,
                   int64_t *out) {
    const int64_t padded = in + pad0 + pad1;
    const int64_t span = dil * (k - 1) + 1;
    if (span > padded)
        return CV_ESHAPE;
    *out = (padded - span) / stride + 1;
    return CV_OK;
}

int cv_corr2d_out_shape(int64_t h, int64_t w, int64_t kh, int64_t kw,
                        const struct cv_conv2d_geom *g, int64_t *out_h, int64_t *out_w) {
    CV_ASSERT(g != NULL && out_h != NULL && out_w != NULL);
    int st = geom_check(g);
    if (st != CV_OK)
        return st;
    if (h < 1 || w < 1 || kh < 1 || kw < 1)
        return CV_EINVAL;
    if (h > CV_CORR2D_MAX_DIM || w > CV_CORR2D_MAX_DIM || kh > CV_CORR2D_MAX_DIM ||
        kw > CV_CORR2D_MAX_DIM)
        return CV_EINVAL;
    int64_t oh, ow;
    st = out_len(h, kh, g->pad_top, g->pad_bottom, g->stride_h, g->dil_h, &oh);
    if (st != CV_OK)
        return st;
    st = out_len(w, kw, g->pad_left, g->pad_right, g->stride_w, g->dil_w, &ow);
    if (st != CV_OK)
        return st;
    *out_h = oh;
    *out_w = ow;
    return CV_OK;
}

/* The output indices j in [0, out) whose source index j*stride + off lies in [0, in): the range
 * [*lo, *hi), possibly empty (lo == hi). */
static void valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t *lo,
                        int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t b = in - 1 - off < 0 ? 0 : (in - 1 - off) / stride + 1;
    if (b > out)
        b = out;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* The checked sizes every kernel needs. */
struct corr2d_dims {
    int64_t n, c, h, w; /* input */
    int64_t co, kh, kw; /* kernel */
    int64_t oh, ow;     /* output */
};

static int dims_check(const struct cv_tensor *x, const struct cv_tensor *k,
                      const struct cv_conv2d_geom *g, struct corr2d_dims *d) {
    if (x->data == NULL || k->data == NULL)
        return CV_ESHAPE;
    if (x->c != k->c)
        return CV_ESHAPE;
    int64_t oh, ow;
    int st = cv_corr2d_out_shape(x->h, x->w, k->h, k->w, g, &oh, &ow);
    if (st != CV_OK)
        return st;
    *d = (struct corr2d_dims){x->n, x->c, x->h, x->w, k->n, k->h, k->w, oh, ow};
    return CV_OK;
}

static bool run_serial(int64_t macs, int n_threads) {
    return n_threads == 1 || macs < CV_CORR2D_PARALLEL_MIN_MACS;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* Output row r of the flattened (n, o, i) rows. */
static void forward_row(const float *x, const float *k, const float *bias,
                        const struct cv_conv2d_geom *g, const struct corr2d_dims *d, float *y,
                        int64_t r) {
    const int64_t i = r % d->oh;
    const int64_t o = (r / d->oh) % d->co;
    const int64_t n = r / (d->oh * d->co);
    float *yrow = y + r * d->ow;
    const float b0 = bias != NULL ? bias[o] : 0.0f;
    for (int64_t j = 0; j < d->ow; j++)
        yrow[j] = b0;
    for (int64_t c = 0; c < d->c; c++) {
        const float *xplane = x + (n * d->c + c) * d->h * d->w;
        const float *kplane = k + (o * d->c + c) * d->kh * d->kw;
        for (int64_t a = 0; a < d->kh; a++) {
            const int64_t xr = i * g->stride_h + a * g->dil_h - g->pad_top;
            if (xr < 0 || xr >= d->h)
                continue;
            const float *xrow = xplane + xr * d->w;
            for (int64_t b = 0; b < d->kw; b++) {
                const int64_t off = b * g->dil_w - g->pad_left;
                int64_t lo, hi;
                valid_range(off, g->stride_w, d->w, d->ow, &lo, &hi);
                const float kv = kplane[a * d->kw + b];
                if (g->stride_w == 1) {
                    const float *xs = xrow + off;
                    for (int64_t j = lo; j < hi; j++)
                        yrow[j] += kv * xs[j];
                } else {
                    for (int64_t j = lo; j < hi; j++)
                        yrow[j] += kv * xrow[j * g->stride_w + off];
                }
            }
        }
    }
}

int cv_corr2d_forward(const struct cv_tensor *x, const struct cv_tensor *k, const float *bias,
                      const struct cv_conv2d_geom *g, struct cv_tensor *y, int n_threads) {
    CV_ASSERT(x != NULL && k != NULL && g != NULL && y != NULL);
    CV_ASSERT(n_threads >= 1);
    struct corr2d_dims d;
    int st = dims_check(x, k, g, &d);
    if (st != CV_OK)
        return st;
    if (y->data == NULL || y->n != d.n || y->c != d.co || y->h != d.oh || y->w != d.ow)
        return CV_ESHAPE;
    const int64_t rows = d.n * d.co * d.oh;
    const int64_t macs = rows * d.ow * d.c * d.kh * d.kw;
    if (run_serial(macs, n_threads)) {
        for (int64_t r = 0; r < rows; r++)
            forward_row(x->data, k->data, bias, g, &d, y->data, r);
    } else {
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t r = 0; r < rows; r++)
            forward_row(x->data, k->data, bias, g, &d, y->data, r);
    }
    return CV_OK;
}

/* ---- backward with respect to the input --------------------------------------------------- */

/* Row r of dX in the flattened (n, c, xr) rows: dX[n,c,xr,col] gathers dY[n,o,i,j]*K[o,c,a,b]
 * over every (o, a, b, i, j) with i*sh + a*dh - pt == xr and j*sw + b*dw - pl == col. The row is
 * owned by one thread, so the strided scatter within it is race-free. */
static void backward_input_row(const float *dy, const float *k, const struct cv_conv2d_geom *g,
                               const struct corr2d_dims *d, float *dx, int64_t r) {
    const int64_t xr = r % d->h;
    const int64_t c = (r / d->h) % d->c;
    const int64_t n = r / (d->h * d->c);
    float *dxrow = dx + r * d->w;
    for (int64_t col = 0; col < d->w; col++)
        dxrow[col] = 0.0f;
    for (int64_t a = 0; a < d->kh; a++) {
        const int64_t t = xr + g->pad_top - a * g->dil_h; /* = i * stride_h */
        if (t < 0 || t % g->stride_h != 0)
            continue;
        const int64_t i = t / g->stride_h;
        if (i >= d->oh)
            continue;
        for (int64_t o = 0; o < d->co; o++) {
            const float *dyrow = dy + ((n * d->co + o) * d->oh + i) * d->ow;
            const float *kslice = k + ((o * d->c + c) * d->kh + a) * d->kw;
            for (int64_t b = 0; b < d->kw; b++) {
                const int64_t off = b * g->dil_w - g->pad_left;
                int64_t lo, hi;
                valid_range(off, g->stride_w, d->w, d->ow, &lo, &hi);
                const float kv = kslice[b];
                if (g->stride_w == 1) {
                    float *ds = dxrow + off;
                    for (int64_t j = lo; j < hi; j++)
                        ds[j] += kv * dyrow[j];
                } else {
                    for (int64_t j = lo; j < hi; j++)
                        dxrow[j * g->stride_w + off] += kv * dyrow[j];
                }
            }
        }
    }
}

int cv_corr2d_backward_input(const struct cv_tensor *dy, const struct cv_tensor *k,
                             const struct cv_conv2d_geom *g, struct cv_tensor *dx, int n_threads) {
    CV_ASSERT(dy != NULL && k != NULL && g != NULL && dx != NULL);
    CV_ASSERT(n_threads >= 1);
    struct corr2d_dims d;
    int st = dims_check(dx, k, g, &d);
    if (st != CV_OK)
        return st;
    if (dy->data == NULL || dy->n != d.n || dy->c != d.co || dy->h != d.oh || dy->w != d.ow)
        return CV_ESHAPE;
    const int64_t rows = d.n * d.c * d.h;
    const int64_t macs = d.n * d.co * d.oh * d.ow * d.c * d.kh * d.kw;
    if (run_serial(macs, n_threads)) {
        for (int64_t r = 0; r < rows; r++)
            backward_input_row(dy->data, k->data, g, &d, dx->data, r);
    } else {
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t r = 0; r < rows; r++)
            backward_input_row(dy->data, k->data, g, &d, dx->data, r);
    }
    return CV_OK;
}

/* ---- backward with respect to the kernel -------------------------------------------------- */

/* Kernel entry e of the flattened (o, c, a, b) entries: dK[o,c,a,b] = sum over n, i, j of
 * dY[n,o,i,j] * Xpad[n,c,i*sh+a*dh,j*sw+b*dw]. Each row's dot product runs in float (as a GEMM
 * would) and rows are summed in double, so long reductions lose little. */
static float backward_kernel_entry(const float *x, const float *dy, const struct cv_conv2d_geom *g,
                                   const struct corr2d_dims *d, int64_t e) {
    const int64_t b = e % d->kw;
    const int64_t a = (e / d->kw) % d->kh;
    const int64_t c = (e / (d->kw * d->kh)) % d->c;
    const int64_t o = e / (d->kw * d->kh * d->c);
    const int64_t off = b * g->dil_w - g->pad_left;
    int64_t lo, hi;
    valid_range(off, g->stride_w, d->w, d->ow, &lo, &hi);
    double acc = 0.0;
    for (int64_t n = 0; n < d->n; n++) {
        const float *xplane = x + (n * d->c + c) * d->h * d->w;
        const float *dyplane = dy + (n * d->co + o) * d->oh * d->ow;
        for (int64_t i = 0; i < d->oh; i++) {
            const int64_t xr = i * g->stride_h + a * g->dil_h - g->pad_top;
            if (xr < 0 || xr >= d->h)
                continue;
            const float *xrow = xplane + xr * d->w;
            const float *dyrow = dyplane + i * d->ow;
            float s = 0.0f;
            for (int64_t j = lo; j < hi; j++)
                s += dyrow[j] * xrow[j * g->stride_w + off];
            acc += s;
        }
    }
    return (float)acc;
}

int cv_corr2d_backward_kernel(const struct cv_tensor *x, const struct cv_tensor *dy,
                              const struct cv_conv2d_geom *g, struct cv_tensor *dk, float *dbias,
                              int n_threads) {
    CV_ASSERT(x != NULL && dy != NULL && g != NULL && dk != NULL);
    CV_ASSERT(n_threads >= 1);
    struct corr2d_dims d;
    int st = dims_check(x, dk, g, &d);
    if (st != CV_OK)
        return st;
    if (dy->data == NULL || dy->n != d.n || dy->c != d.co || dy->h != d.oh || dy->w != d.ow)
        return CV_ESHAPE;
    const int64_t entries = d.co * d.c * d.kh * d.kw;
    const int64_t macs = d.n * d.oh * d.ow * entries;
    if (run_serial(macs, n_threads)) {
        for (int64_t e = 0; e < entries; e++)
            dk->data[e] = backward_kernel_entry(x->data, dy->data, g, &d, e);
    } else {
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t e = 0; e < entries; e++)
            dk->data[e] = backward_kernel_entry(x->data, dy->data, g, &d, e);
    }
    if (dbias != NULL) {
        /* One pass over dY; cheap next to dK, so it stays serial. */
        const int64_t plane = d.oh * d.ow;
        for (int64_t o = 0; o < d.co; o++) {
            double acc = 0.0;
            for (int64_t n = 0; n < d.n; n++) {
                const float *p = dy->data + (n * d.co + o) * plane;
                for (int64_t q = 0; q < plane; q++)
                    acc += p[q];
            }
            dbias[o] = (float)acc;
        }
    }
    return CV_OK;
}
