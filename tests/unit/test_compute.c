/* Unit tests of the compute layer: corr2d against the textbook and the double reference,
 * gradients against finite differences, losses, optimizers and training against PyTorch.
 *
 * libgomp is not fork-safe and check forks every test, so nothing here may touch code that can
 * enter OpenMP outside a test body (main only builds the suite). */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convd/corr2d.h"
#include "convd/loss.h"
#include "convd/optim.h"
#include "convd/ref.h"
#include "convd/status.h"
#include "convd/tensor.h"
#include "convd/train.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* splitmix64: a fixed-seed stream for the random cases, so failures reproduce. */
static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform integer in [lo, hi]. */
static int64_t rng_int(int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1));
}

/* Uniform float in [-1, 1). */
static float rng_float(void) {
    return (float)((double)(rng_next() >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static struct cv_tensor make_tensor(int64_t n, int64_t c, int64_t h, int64_t w) {
    struct cv_tensor t;
    ck_assert_int_eq(cv_tensor_init(&t, n, c, h, w), CV_OK);
    return t;
}

static void fill_random(struct cv_tensor *t) {
    for (int64_t q = 0; q < cv_tensor_numel(t); q++)
        t->data[q] = rng_float();
}

static struct cv_ref_shape shape_of(const struct cv_tensor *t) {
    return (struct cv_ref_shape){t->n, t->c, t->h, t->w};
}

/* Copies n floats into a new double array; with absolute true, their absolute values (used to
 * get sum |terms| bounds by running the reference on |inputs|). */
static double *to_double(const float *v, int64_t n, bool absolute) {
    double *d = malloc((size_t)n * sizeof(double));
    ck_assert_ptr_nonnull(d);
    for (int64_t q = 0; q < n; q++)
        d[q] = absolute ? fabs((double)v[q]) : (double)v[q];
    return d;
}

/* |got - want| <= rtol * scale + atol, where scale is the sum of |terms| behind want. */
static void assert_close_scaled(const float *got, const double *want, const double *scale,
                                int64_t n, double rtol, const char *what) {
    for (int64_t q = 0; q < n; q++) {
        const double err = fabs((double)got[q] - want[q]);
        ck_assert_msg(err <= rtol * scale[q] + 1e-6, "%s[%lld]: got %.9g want %.9g (scale %.3g)",
                      what, (long long)q, (double)got[q], want[q], scale[q]);
    }
}

static void assert_rel(double got, double want, double rtol, const char *what, int idx) {
    ck_assert_msg(fabs(got - want) <= rtol * fabs(want), "%s %d: got %.9g want %.9g", what, idx,
                  got, want);
}

/* A random valid problem for the random tests: shapes and geometry as the brief's ranges. */
struct random_case {
    struct cv_tensor x, k, y;
    float bias[3];
    struct cv_conv2d_geom g;
};

static void random_case_init(struct random_case *rc) {
    for (;;) {
        const int64_t n = rng_int(1, 2), c = rng_int(1, 3), co = rng_int(1, 3);
        const int64_t h = rng_int(1, 12), w = rng_int(1, 12);
        const int64_t kh = rng_int(1, 4), kw = rng_int(1, 4);
        struct cv_conv2d_geom g = {rng_int(0, 2), rng_int(0, 2), rng_int(0, 2), rng_int(0, 2),
                                   rng_int(1, 3), rng_int(1, 3), rng_int(1, 3), rng_int(1, 3)};
        int64_t oh, ow;
        if (cv_corr2d_out_shape(h, w, kh, kw, &g, &oh, &ow) != CV_OK)
            continue; /* the kernel does not fit this input: draw again */
        rc->g = g;
        rc->x = make_tensor(n, c, h, w);
        rc->k = make_tensor(co, c, kh, kw);
        rc->y = make_tensor(n, co, oh, ow);
        fill_random(&rc->x);
        fill_random(&rc->k);
        for (int o = 0; o < 3; o++)
            rc->bias[o] = rng_float();
        return;
    }
}

static void random_case_free(struct random_case *rc) {
    cv_tensor_free(&rc->x);
    cv_tensor_free(&rc->k);
    cv_tensor_free(&rc->y);
}

/* ---- corr2d: the textbook's numbers -------------------------------------------------------- */

START_TEST(test_corr2d_seed_3x3) {
    /* d2l: corr2d([[0,1,2],[3,4,5],[6,7,8]], [[0,1],[2,3]]) = [[19,25],[37,43]]. */
    struct cv_tensor x = make_tensor(1, 1, 3, 3), k = make_tensor(1, 1, 2, 2);
    struct cv_tensor y = make_tensor(1, 1, 2, 2);
    for (int q = 0; q < 9; q++)
        x.data[q] = (float)q;
    for (int q = 0; q < 4; q++)
        k.data[q] = (float)q;
    const struct cv_conv2d_geom g = cv_conv2d_geom_default();
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &y, 1), CV_OK);
    const float want[4] = {19, 25, 37, 43};
    for (int q = 0; q < 4; q++)
        ck_assert_float_eq(y.data[q], want[q]);
    /* A per-channel bias is added to every output element. */
    const float bias = 0.5f;
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, &bias, &g, &y, 2), CV_OK);
    for (int q = 0; q < 4; q++)
        ck_assert_float_eq(y.data[q], want[q] + 0.5f);
    cv_tensor_free(&x);
    cv_tensor_free(&k);
    cv_tensor_free(&y);
}
END_TEST

/* The textbook's edge image: ones(6, 8) with X[1:4, 2:6] = 0. */
static struct cv_tensor seed_x(void) {
    struct cv_tensor x = make_tensor(1, 1, 6, 8);
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 8; c++)
            x.data[r * 8 + c] = (r >= 1 && r < 4 && c >= 2 && c < 6) ? 0.0f : 1.0f;
    return x;
}

/* The textbook's Y = corr2d(X, [[1, -1]]): 1 in column 1 and -1 in column 5 of rows 1..3. */
static struct cv_tensor seed_y(void) {
    struct cv_tensor y = make_tensor(1, 1, 6, 7);
    for (int r = 1; r < 4; r++) {
        y.data[r * 7 + 1] = 1.0f;
        y.data[r * 7 + 5] = -1.0f;
    }
    return y;
}

START_TEST(test_corr2d_seed_edges) {
    struct cv_tensor x = seed_x(), want = seed_y();
    struct cv_tensor k = make_tensor(1, 1, 1, 2), y = make_tensor(1, 1, 6, 7);
    k.data[0] = 1.0f;
    k.data[1] = -1.0f;
    const struct cv_conv2d_geom g = cv_conv2d_geom_default();
    int64_t oh = 0, ow = 0;
    ck_assert_int_eq(cv_corr2d_out_shape(6, 8, 1, 2, &g, &oh, &ow), CV_OK);
    ck_assert_int_eq(oh, 6);
    ck_assert_int_eq(ow, 7);
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &y, 1), CV_OK);
    for (int q = 0; q < 42; q++)
        ck_assert_float_eq(y.data[q], want.data[q]);
    cv_tensor_free(&x);
    cv_tensor_free(&want);
    cv_tensor_free(&k);
    cv_tensor_free(&y);
}
END_TEST

/* ---- corr2d: shapes and geometry ---------------------------------------------------------- */

START_TEST(test_corr2d_out_shape) {
    /* Geometries are {pad top, bottom, left, right, stride h, w, dilation h, w}; the outputs
     * are set on CV_OK only (-7: untouched). */
    static const struct {
        int64_t h, w, kh, kw;
        struct cv_conv2d_geom g;
        int status;
        int64_t oh, ow;
    } cases[] = {
        /* A 4x4 kernel on a 3x3 input does not fit. */
        {3, 3, 4, 4, {0, 0, 0, 0, 1, 1, 1, 1}, CV_ESHAPE, -7, -7},
        /* Dilation 2 makes a 2-tap kernel span 3 columns: too wide for 2. */
        {5, 2, 1, 2, {0, 0, 0, 0, 1, 1, 1, 2}, CV_ESHAPE, -7, -7},
        /* Padding makes it fit: 2 + 1 = 3 columns, one output. */
        {5, 2, 1, 2, {0, 0, 0, 1, 1, 1, 1, 2}, CV_OK, 5, 1},
        /* Asymmetric "same" for an even kernel: pads 1 and 2 keep H = 7 with kh = 4. */
        {7, 7, 4, 1, {1, 2, 0, 0, 1, 1, 1, 1}, CV_OK, 7, 7},
        /* Stride: floor((10 + 0 - 3) / 3) + 1 = 3. */
        {10, 10, 3, 3, {0, 0, 0, 0, 3, 1, 1, 1}, CV_OK, 3, 8},
        /* Bad geometry is an invalid argument, not a shape error. */
        {5, 5, 2, 2, {0, 0, 0, 0, 1, 0, 1, 1}, CV_EINVAL, -7, -7},
        {5, 5, 2, 2, {0, 0, 0, 0, 1, 1, 0, 1}, CV_EINVAL, -7, -7},
        {5, 5, 2, 2, {0, 0, -1, 0, 1, 1, 1, 1}, CV_EINVAL, -7, -7},
        {0, 5, 2, 2, {0, 0, 0, 0, 1, 1, 1, 1}, CV_EINVAL, -7, -7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t oh = -7, ow = -7;
        int st = cv_corr2d_out_shape(cases[i].h, cases[i].w, cases[i].kh, cases[i].kw, &cases[i].g,
                                     &oh, &ow);
        ck_assert_msg(st == cases[i].status && oh == cases[i].oh && ow == cases[i].ow,
                      "case %zu: status %d, %lldx%lld", i, st, (long long)oh, (long long)ow);
    }
}
END_TEST

START_TEST(test_corr2d_shape_errors) {
    const struct cv_conv2d_geom g = cv_conv2d_geom_default();
    struct cv_tensor x = make_tensor(1, 2, 5, 5), k = make_tensor(3, 2, 2, 2);
    struct cv_tensor y = make_tensor(1, 3, 4, 4), k1 = make_tensor(3, 1, 2, 2);
    struct cv_tensor ybad = make_tensor(1, 3, 4, 3);
    float db[3];
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &y, 1), CV_OK);
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &ybad, 1), CV_ESHAPE);
    ck_assert_int_eq(cv_corr2d_forward(&x, &k1, NULL, &g, &y, 1), CV_ESHAPE); /* C differs */
    ck_assert_int_eq(cv_corr2d_backward_input(&ybad, &k, &g, &x, 1), CV_ESHAPE);
    ck_assert_int_eq(cv_corr2d_backward_kernel(&x, &ybad, &g, &k, db, 1), CV_ESHAPE);
    ck_assert_int_eq(cv_corr2d_backward_kernel(&x, &y, &g, &k1, db, 1), CV_ESHAPE);
    struct cv_conv2d_geom bad = g;
    bad.stride_h = 0;
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &bad, &y, 1), CV_EINVAL);
    ck_assert_int_eq(cv_corr2d_backward_input(&y, &k, &bad, &x, 1), CV_EINVAL);
    ck_assert_int_eq(cv_corr2d_backward_kernel(&x, &y, &bad, &k, db, 1), CV_EINVAL);
    cv_tensor_free(&x);
    cv_tensor_free(&k);
    cv_tensor_free(&y);
    cv_tensor_free(&k1);
    cv_tensor_free(&ybad);
}
END_TEST

/* ---- corr2d against the double reference -------------------------------------------------- */

START_TEST(test_corr2d_forward_vs_ref) {
    rng_state = 0x5eed0001;
    for (int cse = 0; cse < 300; cse++) {
        struct random_case rc;
        random_case_init(&rc);
        const bool use_bias = cse % 2 == 0;
        const int64_t nx = cv_tensor_numel(&rc.x), nk = cv_tensor_numel(&rc.k);
        const int64_t ny = cv_tensor_numel(&rc.y);
        double *xd = to_double(rc.x.data, nx, false), *xa = to_double(rc.x.data, nx, true);
        double *kd = to_double(rc.k.data, nk, false), *ka = to_double(rc.k.data, nk, true);
        double *bd = to_double(rc.bias, 3, false), *ba = to_double(rc.bias, 3, true);
        double *want = malloc((size_t)ny * sizeof(double));
        double *scale = malloc((size_t)ny * sizeof(double));
        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(scale);
        cv_ref_corr2d_forward(xd, shape_of(&rc.x), kd, shape_of(&rc.k), use_bias ? bd : NULL, &rc.g,
                              want);
        cv_ref_corr2d_forward(xa, shape_of(&rc.x), ka, shape_of(&rc.k), use_bias ? ba : NULL, &rc.g,
                              scale);
        for (int threads = 1; threads <= 2; threads++) {
            for (int64_t q = 0; q < ny; q++)
                rc.y.data[q] = NAN; /* the kernel must overwrite every element */
            ck_assert_int_eq(
                cv_corr2d_forward(&rc.x, &rc.k, use_bias ? rc.bias : NULL, &rc.g, &rc.y, threads),
                CV_OK);
            assert_close_scaled(rc.y.data, want, scale, ny, 1e-6, "forward");
        }
        free(xd), free(xa), free(kd), free(ka), free(bd), free(ba), free(want), free(scale);
        random_case_free(&rc);
    }
}
END_TEST

START_TEST(test_corr2d_backward_vs_ref) {
    rng_state = 0x5eed0002;
    for (int cse = 0; cse < 250; cse++) {
        struct random_case rc;
        random_case_init(&rc);
        fill_random(&rc.y); /* used as dY */
        const int64_t nx = cv_tensor_numel(&rc.x), nk = cv_tensor_numel(&rc.k);
        const int64_t ny = cv_tensor_numel(&rc.y);
        double *xd = to_double(rc.x.data, nx, false), *xa = to_double(rc.x.data, nx, true);
        double *kd = to_double(rc.k.data, nk, false), *ka = to_double(rc.k.data, nk, true);
        double *gd = to_double(rc.y.data, ny, false), *ga = to_double(rc.y.data, ny, true);
        double *dx = malloc((size_t)nx * sizeof(double)),
               *dxs = malloc((size_t)nx * sizeof(double));
        double *dk = malloc((size_t)nk * sizeof(double)),
               *dks = malloc((size_t)nk * sizeof(double));
        double db[3], dbs[3];
        ck_assert(dx && dxs && dk && dks);
        cv_ref_corr2d_backward_input(gd, shape_of(&rc.y), kd, shape_of(&rc.k), &rc.g, dx,
                                     shape_of(&rc.x));
        cv_ref_corr2d_backward_input(ga, shape_of(&rc.y), ka, shape_of(&rc.k), &rc.g, dxs,
                                     shape_of(&rc.x));
        cv_ref_corr2d_backward_kernel(xd, shape_of(&rc.x), gd, shape_of(&rc.y), &rc.g, dk,
                                      shape_of(&rc.k), db);
        cv_ref_corr2d_backward_kernel(xa, shape_of(&rc.x), ga, shape_of(&rc.y), &rc.g, dks,
                                      shape_of(&rc.k), dbs);
        struct cv_tensor fdx = make_tensor(rc.x.n, rc.x.c, rc.x.h, rc.x.w);
        struct cv_tensor fdk = make_tensor(rc.k.n, rc.k.c, rc.k.h, rc.k.w);
        float fdb[3] = {NAN, NAN, NAN};
        for (int threads = 1; threads <= 2; threads++) {
            for (int64_t q = 0; q < nx; q++)
                fdx.data[q] = NAN;
            for (int64_t q = 0; q < nk; q++)
                fdk.data[q] = NAN;
            ck_assert_int_eq(cv_corr2d_backward_input(&rc.y, &rc.k, &rc.g, &fdx, threads), CV_OK);
            ck_assert_int_eq(cv_corr2d_backward_kernel(&rc.x, &rc.y, &rc.g, &fdk, fdb, threads),
                             CV_OK);
            assert_close_scaled(fdx.data, dx, dxs, nx, 1e-6, "dx");
            assert_close_scaled(fdk.data, dk, dks, nk, 1e-6, "dk");
            assert_close_scaled(fdb, db, dbs, rc.k.n, 1e-6, "dbias");
        }
        /* dbias may be NULL. */
        ck_assert_int_eq(cv_corr2d_backward_kernel(&rc.x, &rc.y, &rc.g, &fdk, NULL, 1), CV_OK);
        assert_close_scaled(fdk.data, dk, dks, nk, 1e-6, "dk (no bias)");
        free(xd), free(xa), free(kd), free(ka), free(gd), free(ga);
        free(dx), free(dxs), free(dk), free(dks);
        cv_tensor_free(&fdx);
        cv_tensor_free(&fdk);
        random_case_free(&rc);
    }
}
END_TEST

/* L = sum(G .* (corr2d(X, K) + bias)) in double, on arrays a test perturbs in place; its
 * gradients are the backward passes with dY = G. */
struct fd_problem {
    const double *x, *k, *bias, *gy;
    struct cv_ref_shape xs, ks;
    const struct cv_conv2d_geom *g;
    double *ybuf; /* ny doubles of scratch for Y */
    int64_t ny;
    double h; /* the step of the central differences */
};

static double scalar_l(const struct fd_problem *p) {
    cv_ref_corr2d_forward(p->x, p->xs, p->k, p->ks, p->bias, p->g, p->ybuf);
    double l = 0.0;
    for (int64_t q = 0; q < p->ny; q++)
        l += p->gy[q] * p->ybuf[q];
    return l;
}

/* Central difference of L along entry q of v (one of p's x, k and bias). */
static double central_diff(const struct fd_problem *p, double *v, int64_t q) {
    const double keep = v[q];
    v[q] = keep + p->h;
    const double lp = scalar_l(p);
    v[q] = keep - p->h;
    const double lm = scalar_l(p);
    v[q] = keep;
    return (lp - lm) / (2.0 * p->h);
}

/* Checks the gradient of L along the n entries of v against its central differences: ref, the
 * double reference's, tightly; fast, the float kernels', to float precision. L is bilinear, so the
 * central difference is exact up to rounding. */
static void check_grad_fd(const struct fd_problem *p, double *v, int64_t n, const double *ref,
                          const float *fast, const char *name) {
    for (int64_t q = 0; q < n; q++) {
        const double fd = central_diff(p, v, q);
        ck_assert_msg(fabs(ref[q] - fd) <= 1e-8 * (1.0 + fabs(fd)), "ref %s[%lld]", name,
                      (long long)q);
        ck_assert_msg(fabs(fast[q] - fd) <= 1e-5 * (1.0 + fabs(fd)), "%s[%lld]", name,
                      (long long)q);
    }
}

START_TEST(test_corr2d_gradients_vs_finite_differences) {
    rng_state = 0x5eed0003;
    for (int cse = 0; cse < 60; cse++) {
        struct random_case rc;
        random_case_init(&rc);
        fill_random(&rc.y); /* G */
        const struct cv_ref_shape xs = shape_of(&rc.x), ks = shape_of(&rc.k), ys = shape_of(&rc.y);
        const int64_t nx = cv_tensor_numel(&rc.x), nk = cv_tensor_numel(&rc.k);
        const int64_t ny = cv_tensor_numel(&rc.y);
        double *x = to_double(rc.x.data, nx, false), *k = to_double(rc.k.data, nk, false);
        double *gy = to_double(rc.y.data, ny, false), *bias = to_double(rc.bias, 3, false);
        double *ybuf = malloc((size_t)ny * sizeof(double));
        double *dx = malloc((size_t)nx * sizeof(double)), *dk = malloc((size_t)nk * sizeof(double));
        double db[3];
        ck_assert(ybuf && dx && dk);
        cv_ref_corr2d_backward_input(gy, ys, k, ks, &rc.g, dx, xs);
        cv_ref_corr2d_backward_kernel(x, xs, gy, ys, &rc.g, dk, ks, db);
        struct cv_tensor fdx = make_tensor(xs.n, xs.c, xs.h, xs.w);
        struct cv_tensor fdk = make_tensor(ks.n, ks.c, ks.h, ks.w);
        float fdb[3];
        ck_assert_int_eq(cv_corr2d_backward_input(&rc.y, &rc.k, &rc.g, &fdx, 1), CV_OK);
        ck_assert_int_eq(cv_corr2d_backward_kernel(&rc.x, &rc.y, &rc.g, &fdk, fdb, 1), CV_OK);
        const struct fd_problem fp = {x, k, bias, gy, xs, ks, &rc.g, ybuf, ny, 1e-3};
        check_grad_fd(&fp, x, nx, dx, fdx.data, "dx");
        check_grad_fd(&fp, k, nk, dk, fdk.data, "dk");
        check_grad_fd(&fp, bias, ks.n, db, fdb, "db");
        free(x), free(k), free(gy), free(bias), free(ybuf), free(dx), free(dk);
        cv_tensor_free(&fdx);
        cv_tensor_free(&fdk);
        random_case_free(&rc);
    }
}
END_TEST

START_TEST(test_corr2d_parallel_matches_serial) {
    /* Large enough to take the OpenMP path; every output is computed by one thread in the same
     * order whatever the thread count, so the results agree exactly. */
    rng_state = 0x5eed0004;
    const struct cv_conv2d_geom g = {1, 1, 1, 1, 1, 1, 1, 1};
    struct cv_tensor x = make_tensor(1, 1, 300, 300), k = make_tensor(1, 1, 3, 3);
    struct cv_tensor y1 = make_tensor(1, 1, 300, 300), y2 = make_tensor(1, 1, 300, 300);
    struct cv_tensor d1 = make_tensor(1, 1, 300, 300), d2 = make_tensor(1, 1, 300, 300);
    struct cv_tensor k1 = make_tensor(1, 1, 3, 3), k2 = make_tensor(1, 1, 3, 3);
    fill_random(&x);
    fill_random(&k);
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &y1, 1), CV_OK);
    ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &y2, 2), CV_OK);
    for (int64_t q = 0; q < 300 * 300; q++)
        ck_assert_float_eq_tol(y1.data[q], y2.data[q], 1e-6f);
    /* Spot-check an interior output against the definition. */
    double want = 0.0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            want += (double)x.data[(150 + a - 1) * 300 + (200 + b - 1)] * k.data[a * 3 + b];
    ck_assert_double_eq_tol(y2.data[150 * 300 + 200], want, 1e-5);
    ck_assert_int_eq(cv_corr2d_backward_input(&y1, &k, &g, &d1, 1), CV_OK);
    ck_assert_int_eq(cv_corr2d_backward_input(&y1, &k, &g, &d2, 4), CV_OK);
    for (int64_t q = 0; q < 300 * 300; q++)
        ck_assert_float_eq_tol(d1.data[q], d2.data[q], 1e-6f);
    ck_assert_int_eq(cv_corr2d_backward_kernel(&x, &y1, &g, &k1, NULL, 1), CV_OK);
    ck_assert_int_eq(cv_corr2d_backward_kernel(&x, &y1, &g, &k2, NULL, 3), CV_OK);
    for (int q = 0; q < 9; q++)
        ck_assert_float_eq(k1.data[q], k2.data[q]);
    cv_tensor_free(&x), cv_tensor_free(&k), cv_tensor_free(&y1), cv_tensor_free(&y2);
    cv_tensor_free(&d1), cv_tensor_free(&d2), cv_tensor_free(&k1), cv_tensor_free(&k2);
}
END_TEST

START_TEST(test_corr2d_cancellable) {
    /* Not cancelled: bitwise the result of cv_corr2d_forward, on every variant (vector kernels
     * for stride 1, plain loops for stride 2) and thread count. Cancelled before the start: no
     * block runs and the call says CV_ECANCELED. */
    rng_state = 0x5eed0005;
    struct cv_tensor x = make_tensor(1, 2, 200, 180), k = make_tensor(3, 2, 5, 5);
    fill_random(&x);
    fill_random(&k);
    for (int stride = 1; stride <= 2; stride++) {
        const struct cv_conv2d_geom g = {2, 2, 2, 2, stride, stride, 1, 1};
        int64_t oh, ow;
        ck_assert_int_eq(cv_corr2d_out_shape(200, 180, 5, 5, &g, &oh, &ow), CV_OK);
        struct cv_tensor y1 = make_tensor(1, 3, oh, ow), y2 = make_tensor(1, 3, oh, ow);
        for (int nt = 1; nt <= 2; nt++) {
            atomic_bool flag;
            atomic_init(&flag, false);
            ck_assert_int_eq(cv_corr2d_forward(&x, &k, NULL, &g, &y1, nt), CV_OK);
            ck_assert_int_eq(cv_corr2d_forward_cancellable(&x, &k, NULL, &g, &y2, nt, &flag),
                             CV_OK);
            ck_assert(memcmp(y1.data, y2.data, (size_t)cv_tensor_numel(&y1) * sizeof(float)) == 0);
            for (int64_t q = 0; q < cv_tensor_numel(&y2); q++)
                y2.data[q] = 12345.0f;
            atomic_store(&flag, true);
            ck_assert_int_eq(cv_corr2d_forward_cancellable(&x, &k, NULL, &g, &y2, nt, &flag),
                             CV_ECANCELED);
            for (int64_t q = 0; q < cv_tensor_numel(&y2); q++)
                ck_assert_float_eq(y2.data[q], 12345.0f);
        }
        cv_tensor_free(&y1), cv_tensor_free(&y2);
    }
    cv_tensor_free(&x), cv_tensor_free(&k);
}
END_TEST

/* ---- corr2d: every kernel variant and fast path ------------------------------------------ */

/* The variants this CPU runs: the plain loops, then each vector ISA it supports. */
static int isas_available(enum cv_corr2d_isa *out) {
    static const enum cv_corr2d_isa all[] = {CV_CORR2D_ISA_GENERIC, CV_CORR2D_ISA_PORTABLE,
                                             CV_CORR2D_ISA_AVX2, CV_CORR2D_ISA_AVX512};
    int n = 0;
    for (size_t q = 0; q < sizeof all / sizeof all[0]; q++)
        if (cv_corr2d_set_isa(all[q]) == CV_OK)
            out[n++] = all[q];
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_AUTO), CV_OK);
    return n;
}

START_TEST(test_corr2d_isa_selection) {
    enum cv_corr2d_isa isas[4];
    const int n = isas_available(isas);
    ck_assert_int_ge(n, 2); /* generic and portable run everywhere */
    ck_assert_int_eq(isas[0], CV_CORR2D_ISA_GENERIC);
    ck_assert_int_eq(isas[1], CV_CORR2D_ISA_PORTABLE);
    /* AUTO picks the best: the last one available. */
    ck_assert_int_eq(cv_corr2d_get_isa(), isas[n - 1]);
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_PORTABLE), CV_OK);
    ck_assert_int_eq(cv_corr2d_get_isa(), CV_CORR2D_ISA_PORTABLE);
    ck_assert_int_eq(cv_corr2d_set_isa((enum cv_corr2d_isa)99), CV_EINVAL);
    ck_assert_int_eq(cv_corr2d_get_isa(), CV_CORR2D_ISA_PORTABLE); /* unchanged */
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_AUTO), CV_OK);
    ck_assert_str_eq(cv_corr2d_isa_name(CV_CORR2D_ISA_AVX512), "avx512");
    ck_assert_str_eq(cv_corr2d_isa_name(CV_CORR2D_ISA_GENERIC), "generic");
    ck_assert_ptr_null(cv_corr2d_isa_name((enum cv_corr2d_isa)99));
}
END_TEST

/* A problem chosen to land on one path of the kernels (corr2d.c, corr2d_*.h). */
struct shape_case {
    int64_t n, c, h, w, co, kh, kw;
    struct cv_conv2d_geom g; /* pad top, bottom, left, right; stride h, w; dilation h, w */
    const char *what;
};

#define GEOM(pt, pb, pl, pr, sh, sw, dh, dw)                                                       \
    { pt, pb, pl, pr, sh, sw, dh, dw }
#define PAD(p) GEOM(p, p, p, p, 1, 1, 1, 1)

static const struct shape_case shape_cases[] = {
    /* One channel: row blocks with a remainder, several column blocks, odd tails. */
    {1, 1, 37, 150, 1, 1, 2, PAD(0), "1x2, the seed's kernel"},
    {1, 1, 37, 150, 1, 3, 3, PAD(0), "3x3"},
    {1, 1, 41, 133, 1, 3, 3, PAD(1), "3x3 pad 1"},
    {1, 1, 30, 97, 1, 7, 7, PAD(3), "7x7 pad 3"},
    {1, 1, 30, 97, 1, 5, 5, GEOM(0, 0, 0, 0, 1, 1, 2, 2), "5x5 dilation 2"},
    {2, 1, 19, 70, 1, 1, 1, PAD(0), "1x1, two images"},
    {1, 1, 23, 45, 1, 4, 2, GEOM(1, 2, 0, 3, 1, 1, 1, 1), "4x2, asymmetric padding"},
    {1, 1, 3, 1000, 1, 3, 3, PAD(1), "wide: dK in column tiles"},
    {1, 1, 600, 5, 1, 3, 3, PAD(0), "tall and narrower than a vector"},
    {1, 1, 9, 9, 1, 9, 9, PAD(4), "kernel as large as the input"},
    /* Few output channels: row blocks summing over input channels. */
    {1, 3, 21, 67, 2, 3, 3, PAD(1), "3 -> 2 channels"},
    {2, 2, 17, 40, 3, 2, 3, GEOM(1, 0, 2, 1, 1, 1, 2, 1), "2 -> 3, dilated rows"},
    {1, 70, 9, 13, 2, 3, 3, PAD(1), "70 -> 2: padded windows in channel chunks"},
    /* Many output channels: channel blocks with a remainder. */
    {1, 3, 20, 70, 16, 5, 5, PAD(2), "3 -> 16, 5x5 pad 2"},
    {2, 8, 9, 19, 5, 3, 3, PAD(1), "8 -> 5"},
    {1, 70, 6, 130, 4, 3, 3, PAD(1), "70 -> 4: padded windows in channel chunks"},
    {2, 6, 15, 33, 6, 3, 3, GEOM(1, 1, 1, 1, 2, 1, 1, 1), "row stride 2"},
    {2, 40, 9, 14, 36, 3, 3, PAD(1), "40 -> 36: dK in groups of input and output channels"},
    {1, 40, 11, 16, 8, 3, 3, GEOM(1, 1, 1, 1, 2, 1, 1, 1), "40 -> 8, row stride 2, whole vectors"},
    /* Narrow images: several output rows flattened into one vector row. */
    {2, 5, 13, 37, 6, 3, 3, PAD(0), "5 -> 6 unpadded: flattened rows read in place"},
    {1, 4, 16, 20, 4, 3, 3, GEOM(2, 2, 2, 2, 1, 1, 2, 2), "flattened rows, dilation 2"},
    {1, 2, 30, 3, 5, 2, 2, PAD(1), "4 columns: one vector spans four rows"},
    {1, 3, 10, 10, 4, 3, 1, PAD(0), "kw 1: flattened rows without gaps"},
    {1, 300, 5, 7, 4, 3, 3, PAD(1), "300 -> 4 on 5x7: flattened rows in channel chunks"},
    {1, 4, 6, 300, 4, 3, 3, PAD(1), "wide rows: column blocks"},
    /* Wide rows and short reductions (input channels x taps <= 128): 8 x 3 tiles on AVX-512. */
    {1, 3, 7, 300, 13, 5, 5, PAD(2), "3 -> 13 on wide rows: channel and column remainders"},
    {1, 64, 2, 2100, 9, 1, 2, GEOM(0, 0, 1, 1, 1, 1, 1, 2000),
     "64 -> 9, column dilation 2000: wide tiles in channel chunks"},
    /* 3x3, stride 1, many channels: Winograd F(2x2, 3x3) tiles in blocks of a vector. */
    {2, 19, 13, 27, 21, 3, 3, PAD(1), "winograd 19 -> 21, odd output, two images"},
    {1, 33, 10, 41, 40, 3, 3, PAD(0), "winograd 33 -> 40 unpadded: channel chunks"},
    {3, 16, 9, 36, 17, 3, 3, GEOM(0, 2, 1, 0, 1, 1, 1, 1), "winograd asymmetric padding"},
    {1, 17, 34, 35, 33, 3, 3, PAD(1), "winograd 17 -> 33: a one-channel output block"},
    {1, 16, 10, 10, 16, 3, 3, PAD(0), "winograd 8x8 output (direct kernels on AVX-512)"},
    {2, 24, 7, 70, 18, 3, 3, GEOM(2, 1, 0, 2, 1, 1, 1, 1), "winograd wide rows, odd height"},
    {1, 16, 3, 600, 17, 3, 3, PAD(1), "winograd dK: float sums flushed within a 300-tile row"},
    {1, 2, 12, 29, 3, 3, 3, GEOM(0, 1, 1, 0, 1, 2, 1, 1), "column stride 2: plain loops"},
    /* 3x3, stride 1, many channels, tile rows at least half a vector: Winograd F(4x4, 3x3)
     * (forward and input gradient; the narrower ones above take F(2x2, 3x3) on AVX-512). */
    {1, 70, 12, 37, 20, 3, 3, PAD(1), "winograd 4x4 70 -> 20: two channel chunks"},
    {2, 16, 18, 130, 17, 3, 3, GEOM(0, 2, 1, 0, 1, 1, 1, 1),
     "winograd 4x4 wide rows, asymmetric padding, 17 outputs"},
    {3, 24, 11, 62, 16, 3, 3, PAD(0), "winograd 4x4 unpadded, partial tile row and group"},
    {1, 16, 9, 64, 24, 3, 3, GEOM(2, 2, 3, 3, 1, 1, 1, 1), "padding 2 and 3: F(2x2, 3x3), not 4x4"},
    {1, 16, 10, 520, 17, 3, 3, PAD(1), "winograd 4x4 dK: flushed within a row, a partial gather"},
    /* 5 columns, stride and dilation 1, >= 4 output channels: row Winograd F(4, 5). */
    {1, 3, 23, 300, 16, 5, 5, PAD(2), "row winograd 3 -> 16: strips, edge copies"},
    {2, 4, 37, 70, 6, 3, 5, GEOM(1, 2, 0, 3, 1, 1, 1, 1), "row winograd 4 -> 6 asymmetric"},
    {1, 6, 19, 600, 5, 3, 5, PAD(1), "row winograd: the ring holds part of a row"},
    {3, 2, 9, 41, 4, 1, 5, PAD(0), "row winograd 1x5, sources read in place"},
    {1, 5, 30, 133, 9, 4, 5, GEOM(3, 0, 4, 4, 1, 1, 1, 1), "row winograd: dX too (9 -> 5)"},
    /* Too large for the kernels' stack scratch: plain loops. */
    {1, 1, 2, 10005, 1, 1, 3, GEOM(0, 0, 0, 0, 1, 1, 1, 5000), "window wider than the slab"},
    {1, 1, 20, 20, 1, 17, 17, PAD(0), "289 taps"},
};

/* Runs forward, input gradient and kernel gradient of one shape case under every variant and
 * with 1 and 2 threads: each must match the double reference within rtol of the sum of
 * |terms|, and the two thread counts must agree bit for bit. */
static void check_shape_case(const struct shape_case *sc, double rtol) {
    const struct cv_conv2d_geom *g = &sc->g;
    int64_t oh, ow;
    ck_assert_msg(cv_corr2d_out_shape(sc->h, sc->w, sc->kh, sc->kw, g, &oh, &ow) == CV_OK, "%s",
                  sc->what);
    struct cv_tensor x = make_tensor(sc->n, sc->c, sc->h, sc->w);
    struct cv_tensor k = make_tensor(sc->co, sc->c, sc->kh, sc->kw);
    struct cv_tensor gy = make_tensor(sc->n, sc->co, oh, ow);
    fill_random(&x), fill_random(&k), fill_random(&gy);
    float *bias = malloc((size_t)sc->co * sizeof(float));
    ck_assert_ptr_nonnull(bias);
    for (int64_t o = 0; o < sc->co; o++)
        bias[o] = rng_float();
    const int64_t nx = cv_tensor_numel(&x), nk = cv_tensor_numel(&k), ny = cv_tensor_numel(&gy);
    double *xd = to_double(x.data, nx, false), *xa = to_double(x.data, nx, true);
    double *kd = to_double(k.data, nk, false), *ka = to_double(k.data, nk, true);
    double *gd = to_double(gy.data, ny, false), *ga = to_double(gy.data, ny, true);
    double *bd = to_double(bias, sc->co, false), *ba = to_double(bias, sc->co, true);
    double *y = malloc((size_t)ny * sizeof(double)), *ys = malloc((size_t)ny * sizeof(double));
    double *dx = malloc((size_t)nx * sizeof(double)), *dxs = malloc((size_t)nx * sizeof(double));
    double *dk = malloc((size_t)nk * sizeof(double)), *dks = malloc((size_t)nk * sizeof(double));
    double *db = malloc((size_t)sc->co * sizeof(double));
    double *dbs = malloc((size_t)sc->co * sizeof(double));
    ck_assert(y && ys && dx && dxs && dk && dks && db && dbs);
    const struct cv_ref_shape xs = shape_of(&x), ks = shape_of(&k), gs = shape_of(&gy);
    cv_ref_corr2d_forward(xd, xs, kd, ks, bd, g, y);
    cv_ref_corr2d_forward(xa, xs, ka, ks, ba, g, ys);
    cv_ref_corr2d_backward_input(gd, gs, kd, ks, g, dx, xs);
    cv_ref_corr2d_backward_input(ga, gs, ka, ks, g, dxs, xs);
    cv_ref_corr2d_backward_kernel(xd, xs, gd, gs, g, dk, ks, db);
    cv_ref_corr2d_backward_kernel(xa, xs, ga, gs, g, dks, ks, dbs);

    struct cv_tensor fy[2], fdx[2], fdk[2];
    float *fdb[2];
    for (int t = 0; t < 2; t++) {
        fy[t] = make_tensor(sc->n, sc->co, oh, ow);
        fdx[t] = make_tensor(sc->n, sc->c, sc->h, sc->w);
        fdk[t] = make_tensor(sc->co, sc->c, sc->kh, sc->kw);
        fdb[t] = malloc((size_t)sc->co * sizeof(float));
        ck_assert_ptr_nonnull(fdb[t]);
    }
    enum cv_corr2d_isa isas[4];
    const int nisa = isas_available(isas);
    for (int q = 0; q < nisa; q++) {
        ck_assert_int_eq(cv_corr2d_set_isa(isas[q]), CV_OK);
        for (int t = 0; t < 2; t++) {
            for (int64_t e = 0; e < ny; e++)
                fy[t].data[e] = NAN; /* every element must be written */
            for (int64_t e = 0; e < nx; e++)
                fdx[t].data[e] = NAN;
            for (int64_t e = 0; e < nk; e++)
                fdk[t].data[e] = NAN;
            ck_assert_int_eq(cv_corr2d_forward(&x, &k, bias, g, &fy[t], t + 1), CV_OK);
            ck_assert_int_eq(cv_corr2d_backward_input(&gy, &k, g, &fdx[t], t + 1), CV_OK);
            ck_assert_int_eq(cv_corr2d_backward_kernel(&x, &gy, g, &fdk[t], fdb[t], t + 1), CV_OK);
            char what[4][160];
            static const char *const pass[4] = {"y", "dX", "dK", "dbias"};
            for (int p = 0; p < 4; p++)
                snprintf(what[p], sizeof what[p], "%s [%s, %d threads] %s", sc->what,
                         cv_corr2d_isa_name(isas[q]), t + 1, pass[p]);
            assert_close_scaled(fy[t].data, y, ys, ny, rtol, what[0]);
            assert_close_scaled(fdx[t].data, dx, dxs, nx, rtol, what[1]);
            assert_close_scaled(fdk[t].data, dk, dks, nk, rtol, what[2]);
            assert_close_scaled(fdb[t], db, dbs, sc->co, rtol, what[3]);
        }
        ck_assert_msg(memcmp(fy[0].data, fy[1].data, (size_t)ny * sizeof(float)) == 0,
                      "%s [%s]: y differs between 1 and 2 threads", sc->what,
                      cv_corr2d_isa_name(isas[q]));
        ck_assert_msg(memcmp(fdx[0].data, fdx[1].data, (size_t)nx * sizeof(float)) == 0,
                      "%s [%s]: dX differs between 1 and 2 threads", sc->what,
                      cv_corr2d_isa_name(isas[q]));
        ck_assert_msg(memcmp(fdk[0].data, fdk[1].data, (size_t)nk * sizeof(float)) == 0,
                      "%s [%s]: dK differs between 1 and 2 threads", sc->what,
                      cv_corr2d_isa_name(isas[q]));
    }
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_AUTO), CV_OK);
    for (int t = 0; t < 2; t++) {
        cv_tensor_free(&fy[t]), cv_tensor_free(&fdx[t]), cv_tensor_free(&fdk[t]);
        free(fdb[t]);
    }
    free(xd), free(xa), free(kd), free(ka), free(gd), free(ga), free(bd), free(ba);
    free(y), free(ys), free(dx), free(dxs), free(dk), free(dks), free(db), free(dbs);
    free(bias);
    cv_tensor_free(&x), cv_tensor_free(&k), cv_tensor_free(&gy);
}

START_TEST(test_corr2d_shape_classes) {
    /* Sums here run over up to a few thousand float terms, hence 1e-5 rather than 1e-6. */
    rng_state = 0x5eed0006 + (uint64_t)_i;
    check_shape_case(&shape_cases[_i], 1e-5);
}
END_TEST

/* A forward pass (with or without a bias), under every variant and with 1 and 2 threads, against
 * the double reference: the Winograd paths fold the bias into their transforms. */
static void check_forward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int64_t kh,
                          int64_t kw, const struct cv_conv2d_geom *g, bool with_bias) {
    int64_t oh, ow;
    ck_assert_int_eq(cv_corr2d_out_shape(h, w, kh, kw, g, &oh, &ow), CV_OK);
    struct cv_tensor x = make_tensor(n, c, h, w), k = make_tensor(co, c, kh, kw);
    struct cv_tensor y = make_tensor(n, co, oh, ow);
    fill_random(&x), fill_random(&k);
    float *bias = malloc((size_t)co * sizeof(float));
    double *bd = malloc((size_t)co * sizeof(double)), *ba = malloc((size_t)co * sizeof(double));
    ck_assert(bias && bd && ba);
    for (int64_t o = 0; o < co; o++)
        bias[o] = rng_float(), bd[o] = bias[o], ba[o] = fabs(bd[o]);
    const int64_t nx = cv_tensor_numel(&x), nk = cv_tensor_numel(&k), ny = cv_tensor_numel(&y);
    double *xd = to_double(x.data, nx, false), *xa = to_double(x.data, nx, true);
    double *kd = to_double(k.data, nk, false), *ka = to_double(k.data, nk, true);
    double *want = malloc((size_t)ny * sizeof(double)),
           *scale = malloc((size_t)ny * sizeof(double));
    ck_assert(want && scale);
    cv_ref_corr2d_forward(xd, shape_of(&x), kd, shape_of(&k), with_bias ? bd : NULL, g, want);
    cv_ref_corr2d_forward(xa, shape_of(&x), ka, shape_of(&k), with_bias ? ba : NULL, g, scale);
    enum cv_corr2d_isa isas[4];
    const int nisa = isas_available(isas);
    for (int q = 0; q < nisa; q++) {
        ck_assert_int_eq(cv_corr2d_set_isa(isas[q]), CV_OK);
        for (int t = 1; t <= 2; t++) {
            for (int64_t e = 0; e < ny; e++)
                y.data[e] = NAN;
            ck_assert_int_eq(cv_corr2d_forward(&x, &k, with_bias ? bias : NULL, g, &y, t), CV_OK);
            /* One assertion for the worst element: millions of ck_asserts cost a syscall each. */
            int64_t worst = 0;
            double worst_excess = -1.0;
            for (int64_t e = 0; e < ny; e++) {
                const double err = fabs((double)y.data[e] - want[e]);
                const double excess = isnan(y.data[e]) ? 1e30 : err - (1e-5 * scale[e] + 1e-6);
                if (excess > worst_excess)
                    worst_excess = excess, worst = e;
            }
            ck_assert_msg(worst_excess <= 0.0, "%s: y[%lld] = %.9g, want %.9g (scale %.3g)",
                          cv_corr2d_isa_name(isas[q]), (long long)worst, y.data[worst], want[worst],
                          scale[worst]);
        }
    }
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_AUTO), CV_OK);
    free(xd), free(xa), free(kd), free(ka), free(want), free(scale);
    free(bias), free(bd), free(ba);
    cv_tensor_free(&x), cv_tensor_free(&k), cv_tensor_free(&y);
}

START_TEST(test_corr2d_winograd_no_bias) {
    rng_state = 0x5eed000a;
    const struct cv_conv2d_geom g = PAD(1), g2 = PAD(2);
    check_forward(2, 20, 11, 23, 18, 3, 3, &g, false); /* F(2x2, 3x3) */
    check_forward(2, 20, 11, 63, 18, 3, 3, &g, false); /* F(4x4, 3x3) */
    check_forward(2, 3, 17, 150, 7, 5, 5, &g2, false); /* row F(4, 5) */
}
END_TEST

START_TEST(test_corr2d_streaming) {
    /* One input channel, outputs of >= 16 MiB, no padding: the streaming kernel, with pages of
     * the output as work items (rows and planes start anywhere in a page). Forward only: the
     * gradients of these shapes take the other kernels, tested above. */
    rng_state = 0x5eed000d;
    const struct cv_conv2d_geom g = PAD(0);
    check_forward(1, 1, 2049, 2049, 1, 1, 2, &g, true);
    check_forward(1, 1, 1025, 2049, 2, 3, 3, &g, false);
}
END_TEST

START_TEST(test_corr2d_isas_random) {
    /* The random small problems of the reference tests, under every variant: these land
     * mostly on the padded-window paths and on vectors with a few valid lanes. */
    rng_state = 0x5eed0007;
    for (int cse = 0; cse < 120; cse++) {
        const struct cv_conv2d_geom g0 = {0};
        struct shape_case sc = {0, 0, 0, 0, 0, 0, 0, g0, "random"};
        for (;;) {
            sc = (struct shape_case){rng_int(1, 2),
                                     rng_int(1, 5),
                                     rng_int(1, 14),
                                     rng_int(1, 40),
                                     rng_int(1, 6),
                                     rng_int(1, 5),
                                     rng_int(1, 5),
                                     GEOM(rng_int(0, 2), rng_int(0, 2), rng_int(0, 3),
                                          rng_int(0, 3), rng_int(1, 2), cse % 4 == 0 ? 2 : 1,
                                          rng_int(1, 2), rng_int(1, 2)),
                                     "random"};
            int64_t oh, ow;
            if (cv_corr2d_out_shape(sc.h, sc.w, sc.kh, sc.kw, &sc.g, &oh, &ow) == CV_OK)
                break;
        }
        check_shape_case(&sc, 1e-6);
    }
}
END_TEST

START_TEST(test_corr2d_row_winograd_random) {
    /* Random shapes for the row Winograd F(4, 5) kernels (5 columns, stride and dilation 1,
     * >= 4 output channels): widths land anywhere in a strip and its edge copies, paddings
     * reach past both sides, and the input gradient (5 columns too) often takes it as well. */
    rng_state = 0x5eed000b;
    for (int cse = 0; cse < 40; cse++) {
        const int64_t pl = rng_int(0, 5), pr = rng_int(0, 5);
        const int64_t w = rng_int(5 > pl + pr ? 5 - pl - pr : 1, 300);
        const int64_t kh = rng_int(1, 5), pt = rng_int(0, 2), pb = rng_int(0, 2);
        const int64_t h = rng_int(kh > pt + pb ? kh - pt - pb : 1, 24);
        const struct shape_case sc = {rng_int(1, 2),
                                      rng_int(1, 6),
                                      h,
                                      w,
                                      rng_int(4, 9),
                                      kh,
                                      5,
                                      GEOM(pt, pb, pl, pr, 1, 1, 1, 1),
                                      "row winograd random"};
        check_shape_case(&sc, 1e-5);
    }
}
END_TEST

/* One pass of a many-channel 3x3 layer (the F(4x4, 3x3) paths, which take scratch from the
 * workspace) with a workspace and without: bitwise the same outputs. */
static void check_workspace_pass(struct cv_corr2d_workspace *ws, int64_t n, int64_t c, int64_t h,
                                 int64_t w, int64_t co, int threads) {
    struct cv_conv2d_geom g = cv_conv2d_geom_default();
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    struct cv_tensor x = make_tensor(n, c, h, w), k = make_tensor(co, c, 3, 3);
    struct cv_tensor dy = make_tensor(n, co, h, w);
    fill_random(&x), fill_random(&k), fill_random(&dy);
    struct cv_tensor y[2], dx[2], dk[2];
    float db[2][64];
    ck_assert_int_le(co, 64);
    for (int q = 0; q < 2; q++) {
        struct cv_corr2d_workspace *use = q == 0 ? NULL : ws;
        y[q] = make_tensor(n, co, h, w), dx[q] = make_tensor(n, c, h, w);
        dk[q] = make_tensor(co, c, 3, 3);
        ck_assert_int_eq(cv_corr2d_forward_ws(&x, &k, NULL, &g, &y[q], threads, NULL, use), CV_OK);
        ck_assert_int_eq(cv_corr2d_backward_input_ws(&dy, &k, &g, &dx[q], threads, use), CV_OK);
        ck_assert_int_eq(cv_corr2d_backward_kernel_ws(&x, &dy, &g, &dk[q], db[q], threads, use),
                         CV_OK);
    }
    ck_assert(memcmp(y[0].data, y[1].data, (size_t)cv_tensor_numel(&y[0]) * sizeof(float)) == 0);
    ck_assert(memcmp(dx[0].data, dx[1].data, (size_t)cv_tensor_numel(&dx[0]) * sizeof(float)) == 0);
    ck_assert(memcmp(dk[0].data, dk[1].data, (size_t)cv_tensor_numel(&dk[0]) * sizeof(float)) == 0);
    ck_assert(memcmp(db[0], db[1], (size_t)co * sizeof(float)) == 0);
    for (int q = 0; q < 2; q++)
        cv_tensor_free(&y[q]), cv_tensor_free(&dx[q]), cv_tensor_free(&dk[q]);
    cv_tensor_free(&x), cv_tensor_free(&k), cv_tensor_free(&dy);
}

START_TEST(test_corr2d_workspace) {
    /* A workspace serves shapes that need less and grows for shapes that need more; it never
     * changes a result. */
    rng_state = 0x5eed000e;
    struct cv_corr2d_workspace ws;
    cv_corr2d_workspace_init(&ws);
    ck_assert_ptr_null(ws.data);
    check_workspace_pass(&ws, 1, 16, 12, 40, 17, 1);
    ck_assert_ptr_nonnull(ws.data);
    const size_t small = ws.bytes;
    check_workspace_pass(&ws, 2, 40, 20, 64, 48, 2);
    ck_assert_uint_ge(ws.bytes, small);
    check_workspace_pass(&ws, 1, 20, 9, 33, 16, 2);
    cv_corr2d_workspace_free(&ws);
    ck_assert_ptr_null(ws.data);
    ck_assert_uint_eq(ws.bytes, 0);
}
END_TEST

START_TEST(test_corr2d_winograd4_random) {
    /* Random shapes for Winograd F(4x4, 3x3) (3x3, stride and dilation 1, >= 16 channels each
     * way, padding <= 1): widths land anywhere in a tile block and its masked or copied edges,
     * heights leave partial tile rows, and the input gradient takes it as well. */
    rng_state = 0x5eed000c;
    for (int cse = 0; cse < 12; cse++) {
        const struct shape_case sc = {
            rng_int(1, 2),
            rng_int(16, 20),
            rng_int(9, 22),
            rng_int(9, 140),
            rng_int(16, 20),
            3,
            3,
            GEOM(rng_int(0, 1), rng_int(0, 1), rng_int(0, 1), rng_int(0, 1), 1, 1, 1, 1),
            "winograd 4x4 random"};
        check_shape_case(&sc, 1e-5);
    }
}
END_TEST

/* ---- losses ------------------------------------------------------------------------------- */

START_TEST(test_loss_values_and_gradients) {
    struct cv_tensor yh = make_tensor(1, 1, 2, 2), y = make_tensor(1, 1, 2, 2);
    struct cv_tensor g = make_tensor(1, 1, 2, 2), bad = make_tensor(1, 1, 1, 4);
    const float yhv[4] = {1, 2, 3, 4}, yv[4] = {0, 2, 5, 1};
    memcpy(yh.data, yhv, sizeof yhv);
    memcpy(y.data, yv, sizeof yv);
    /* yhat - y = [1, 0, -2, 3]: SSE = 1 + 0 + 4 + 9 = 14, MSE = 14 / 4 = 3.5;
     * dSSE = 2 (yhat - y) = [2, 0, -4, 6], dMSE = that / 4 = [0.5, 0, -1, 1.5]. */
    double loss = 0.0;
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_SSE, &yh, &y, &loss, &g, 1), CV_OK);
    ck_assert_double_eq(loss, 14.0);
    const float gs[4] = {2, 0, -4, 6}, gm[4] = {0.5f, 0, -1, 1.5f};
    for (int q = 0; q < 4; q++)
        ck_assert_float_eq(g.data[q], gs[q]);
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_MSE, &yh, &y, &loss, &g, 2), CV_OK);
    ck_assert_double_eq(loss, 3.5);
    for (int q = 0; q < 4; q++)
        ck_assert_float_eq(g.data[q], gm[q]);
    /* No gradient wanted. */
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_SSE, &yh, &y, &loss, NULL, 1), CV_OK);
    ck_assert_double_eq(loss, 14.0);
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_SSE, &yh, &bad, &loss, NULL, 1), CV_ESHAPE);
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_SSE, &yh, &y, &loss, &bad, 1), CV_ESHAPE);
    /* Names round-trip and unknown ones are refused. */
    enum cv_loss_kind kind;
    ck_assert_int_eq(cv_loss_kind_parse("mse", &kind), CV_OK);
    ck_assert_int_eq(kind, CV_LOSS_KIND_MSE);
    ck_assert_str_eq(cv_loss_kind_name(CV_LOSS_KIND_SSE), "sse");
    ck_assert_int_eq(cv_loss_kind_parse("l1", &kind), CV_EINVAL);
    ck_assert_ptr_null(cv_loss_kind_name((enum cv_loss_kind)7));
    cv_tensor_free(&yh), cv_tensor_free(&y), cv_tensor_free(&g), cv_tensor_free(&bad);
}
END_TEST

START_TEST(test_loss_large_threads_agree) {
    /* Large enough for the parallel path: the loss must not depend on the thread count, and the
     * double sum must match a plain double loop closely. */
    rng_state = 0x5eed0005;
    struct cv_tensor a = make_tensor(1, 3, 200, 200), b = make_tensor(1, 3, 200, 200);
    fill_random(&a);
    fill_random(&b);
    double l1, l4, want = 0.0;
    for (int64_t q = 0; q < cv_tensor_numel(&a); q++) {
        const double d = (double)(a.data[q] - b.data[q]);
        want += d * d;
    }
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_SSE, &a, &b, &l1, NULL, 1), CV_OK);
    ck_assert_int_eq(cv_loss_forward(CV_LOSS_KIND_SSE, &a, &b, &l4, NULL, 4), CV_OK);
    ck_assert_double_eq(l1, l4);
    ck_assert_double_eq_tol(l1, want, 1e-9 * want);
    cv_tensor_free(&a), cv_tensor_free(&b);
}
END_TEST

START_TEST(test_loss_variants_agree) {
    /* The vectorised squared-error sums (blocks of 16 and a scalar tail) under every variant:
     * the gradient is the float formula exactly, the loss the double sum to rounding. */
    rng_state = 0x5eed0008;
    struct cv_tensor a = make_tensor(1, 1, 7, 143), b = make_tensor(1, 1, 7, 143);
    struct cv_tensor g = make_tensor(1, 1, 7, 143);
    fill_random(&a);
    fill_random(&b);
    const int64_t n = cv_tensor_numel(&a);
    double want = 0.0;
    for (int64_t q = 0; q < n; q++) {
        const float d = a.data[q] - b.data[q];
        want += (double)d * (double)d;
    }
    enum cv_corr2d_isa isas[4];
    const int nisa = isas_available(isas);
    for (int v = 0; v < nisa; v++) {
        ck_assert_int_eq(cv_corr2d_set_isa(isas[v]), CV_OK);
        for (int kind = 0; kind < 2; kind++) {
            const bool mean = kind == CV_LOSS_KIND_MSE;
            double loss;
            ck_assert_int_eq(cv_loss_forward((enum cv_loss_kind)kind, &a, &b, &loss, &g, 1), CV_OK);
            ck_assert_double_eq_tol(loss, mean ? want / (double)n : want, 1e-12 * want);
            const float scale = 1.0f / (float)n;
            for (int64_t q = 0; q < n; q++) {
                const float d = a.data[q] - b.data[q];
                ck_assert_float_eq(g.data[q], mean ? scale * (2.0f * d) : 2.0f * d);
            }
        }
    }
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_AUTO), CV_OK);
    cv_tensor_free(&a), cv_tensor_free(&b), cv_tensor_free(&g);
}
END_TEST

/* ---- optimizers --------------------------------------------------------------------------- */

START_TEST(test_optim_sgd) {
    struct cv_optim o;
    struct cv_optim_params p = cv_optim_params_default(CV_OPTIM_KIND_SGD);
    p.lr = 0.1f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 2), CV_OK);
    float w[2] = {1.0f, -2.0f};
    const float g[2] = {0.5f, 1.0f};
    /* p -= 0.1 g: [1 - 0.05, -2 - 0.1] = [0.95, -2.1], then [0.9, -2.2]. */
    cv_optim_step(&o, w, g);
    ck_assert_float_eq_tol(w[0], 0.95f, 1e-6f);
    ck_assert_float_eq_tol(w[1], -2.1f, 1e-6f);
    cv_optim_step(&o, w, g);
    ck_assert_float_eq_tol(w[0], 0.9f, 1e-6f);
    ck_assert_float_eq_tol(w[1], -2.2f, 1e-6f);
    ck_assert_int_eq(o.t, 2);
    cv_optim_free(&o);
    cv_optim_free(&o); /* idempotent */
}
END_TEST

START_TEST(test_optim_momentum) {
    struct cv_optim o;
    struct cv_optim_params p = cv_optim_params_default(CV_OPTIM_KIND_MOMENTUM);
    p.lr = 0.1f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 1), CV_OK);
    float w = 1.0f;
    const float g1 = 1.0f;
    /* b = g = 1 (first step takes the gradient as is), p = 1 - 0.1 * 1 = 0.9;
     * b = 0.9 * 1 + 1 = 1.9, p = 0.9 - 0.19 = 0.71;
     * b = 0.9 * 1.9 + 1 = 2.71, p = 0.71 - 0.271 = 0.439. */
    cv_optim_step(&o, &w, &g1);
    ck_assert_float_eq_tol(w, 0.9f, 1e-6f);
    ck_assert_float_eq_tol(o.buf1[0], 1.0f, 1e-7f);
    cv_optim_step(&o, &w, &g1);
    ck_assert_float_eq_tol(w, 0.71f, 1e-6f);
    cv_optim_step(&o, &w, &g1);
    ck_assert_float_eq_tol(w, 0.439f, 1e-6f);
    ck_assert_float_eq_tol(o.buf1[0], 2.71f, 1e-6f);
    cv_optim_free(&o);
}
END_TEST

START_TEST(test_optim_adam) {
    struct cv_optim o;
    struct cv_optim_params p = cv_optim_params_default(CV_OPTIM_KIND_ADAM);
    p.lr = 0.1f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 1), CV_OK);
    float w = 0.0f;
    /* Gradients 1, -2, 0.5 from p = 0 (b1 0.9, b2 0.999, eps 1e-8, lr 0.1):
     * t=1: m = 0.1, v = 0.001; bias-corrected both are 1 and 1, p = 0 - 0.1 * 1 / (1 + 1e-8)
     *      = -0.099999999.
     * t=2: m = 0.09 - 0.2 = -0.11, v = 0.000999 + 0.004 = 0.004999, bc1 = 0.19, bc2 = 0.001999;
     *      p = -0.1 - (0.1 / 0.19) * -0.11 / (sqrt(0.004999) / sqrt(0.001999) + 1e-8)
     *        = -0.1 + 0.5263158 * 0.11 / 1.5813761 = -0.0633896465.
     * t=3: m = -0.099 + 0.05 = -0.049, v = 0.004994001 + 0.00025 = 0.005244001 ... p =
     *      -0.0497205803 (the same arithmetic in Python doubles; torch.optim.Adam in float32
     *      gives -0.0999999866, -0.0633896291, -0.049720563). */
    const float gs[3] = {1.0f, -2.0f, 0.5f};
    const double want[3] = {-0.0999999866, -0.0633896291, -0.049720563};
    for (int t = 0; t < 3; t++) {
        cv_optim_step(&o, &w, &gs[t]);
        ck_assert_double_eq_tol(w, want[t], 1e-7);
    }
    ck_assert_float_eq_tol(o.buf1[0], -0.049f, 1e-7f);
    ck_assert_float_eq_tol(o.buf2[0], 0.005244001f, 1e-8f);
    cv_optim_free(&o);
}
END_TEST

START_TEST(test_optim_init_rejects) {
    struct cv_optim o;
    struct cv_optim_params p;
    const float bad_lr[] = {0.0f, -0.5f, NAN, INFINITY};
    for (int q = 0; q < 4; q++) {
        p = cv_optim_params_default(CV_OPTIM_KIND_SGD);
        p.lr = bad_lr[q];
        ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
        ck_assert_ptr_null(o.buf1);
    }
    p = cv_optim_params_default(CV_OPTIM_KIND_SGD);
    ck_assert_int_eq(cv_optim_init(&o, &p, 0), CV_EINVAL);
    p = cv_optim_params_default(CV_OPTIM_KIND_MOMENTUM);
    p.momentum = 1.0f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
    p.momentum = -0.1f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
    p = cv_optim_params_default(CV_OPTIM_KIND_ADAM);
    p.beta1 = 1.0f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
    p = cv_optim_params_default(CV_OPTIM_KIND_ADAM);
    p.beta2 = -0.5f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
    p = cv_optim_params_default(CV_OPTIM_KIND_ADAM);
    p.eps = -1e-8f;
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
    p = cv_optim_params_default(CV_OPTIM_KIND_SGD);
    p.kind = (enum cv_optim_kind)9;
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_EINVAL);
    /* Defaults are valid, and Adam gets both moment buffers, zeroed. */
    p = cv_optim_params_default(CV_OPTIM_KIND_ADAM);
    ck_assert_float_eq(p.lr, 0.01f);
    ck_assert_int_eq(cv_optim_init(&o, &p, 3), CV_OK);
    ck_assert_ptr_nonnull(o.buf1);
    ck_assert_ptr_nonnull(o.buf2);
    ck_assert_float_eq(o.buf2[2], 0.0f);
    cv_optim_free(&o);
    ck_assert_ptr_null(o.buf1);
    enum cv_optim_kind kind;
    ck_assert_int_eq(cv_optim_kind_parse("momentum", &kind), CV_OK);
    ck_assert_int_eq(kind, CV_OPTIM_KIND_MOMENTUM);
    ck_assert_str_eq(cv_optim_kind_name(CV_OPTIM_KIND_ADAM), "adam");
    ck_assert_int_eq(cv_optim_kind_parse("rmsprop", &kind), CV_EINVAL);
}
END_TEST

/* ---- training ----------------------------------------------------------------------------- */

/* The seed problem's parameters: weight (1,1,1,2), no bias, SSE. */
static struct cv_train_params seed_params(enum cv_optim_kind kind, float lr, int32_t steps) {
    struct cv_train_params p = {0};
    p.geom = cv_conv2d_geom_default();
    p.loss = CV_LOSS_KIND_SSE;
    p.optim = cv_optim_params_default(kind);
    p.optim.lr = lr;
    p.steps = steps;
    p.n_threads = 1;
    return p;
}

/* Records every step's loss. */
struct loss_log {
    double loss[64];
    int count;
    int cancel_at; /* return false at this step; 0 = never */
    float w_seen[2];
};

static bool log_step(const struct cv_train_step *s, void *user) {
    struct loss_log *log = user;
    ck_assert_int_eq(s->step, log->count + 1);
    log->loss[log->count++] = s->loss;
    log->w_seen[0] = s->weight->data[0];
    log->w_seen[1] = s->weight->data[1];
    return s->step != log->cancel_at;
}

/* Runs the seed problem from weight [[0.5, 0.5]] and checks its losses against PyTorch's. */
static void check_seed_run(enum cv_optim_kind kind, float lr, const double *want, int n,
                           double want_final, const float *want_w) {
    struct cv_tensor x = seed_x(), y = seed_y(), w = make_tensor(1, 1, 1, 2);
    w.data[0] = w.data[1] = 0.5f;
    const struct cv_train_params p = seed_params(kind, lr, n);
    struct loss_log log = {0};
    struct cv_train_result res;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, log_step, &log, &res), CV_OK);
    ck_assert_int_eq(res.steps_done, n);
    ck_assert_int_eq(log.count, n);
    ck_assert(!res.stopped_early);
    for (int q = 0; q < n; q++)
        assert_rel(log.loss[q], want[q], 1e-4, "loss at step", q + 1);
    assert_rel(res.last_loss, want[n - 1], 1e-4, "last_loss", n);
    assert_rel(res.final_loss, want_final, 1e-4, "final_loss", n);
    for (int q = 0; q < 2; q++)
        assert_rel(w.data[q], want_w[q], 1e-4, "weight", q);
    cv_tensor_free(&x), cv_tensor_free(&y), cv_tensor_free(&w);
}

/* The PyTorch numbers below come from /usr/bin/python3 with torch 1.13 (float32):
 *   X = torch.ones(6, 8); X[1:4, 2:6] = 0; Y = corr2d(X, [[1., -1.]]) (shapes (1,1,6,8)/(1,1,6,7))
 *   conv = nn.Conv2d(1, 1, (1, 2), bias=False); conv.weight.fill_(0.5)
 *   each step: l = ((conv(X) - Y)**2).sum(); l.backward(); record l.item(); update
 * with the update `weight -= 0.012 * grad` (plain), torch.optim.SGD(lr=0.012, momentum=0.9), or
 * torch.optim.Adam(lr=0.05); final = the loss after the 20th update; weights printed with %.9g. */
START_TEST(test_train_seed_sgd) {
    static const double want[20] = {
        34.5,        9.02668667,  4.97250843,  3.90290403,  3.30974674, 2.84334373,  2.44770002,
        2.10779262,  1.81518006,  1.56320155,  1.3462038,   1.15932918, 0.998395741, 0.859802306,
        0.740447879, 0.637661934, 0.549144208, 0.472914129, 0.40726608, 0.350731015};
    /* The learned kernel points along [1, -1], as the textbook's edge detector. */
    static const float want_w[2] = {0.775632739f, -0.775632739f};
    check_seed_run(CV_OPTIM_KIND_SGD, 0.012f, want, 20, 0.302043974, want_w);
}
END_TEST

START_TEST(test_train_seed_momentum) {
    static const double want[20] = {34.5,       9.02668858, 38.0260162, 4.1171093,   21.7479668,
                                    13.4299107, 4.68138313, 19.7291622, 0.856655002, 15.3870163,
                                    7.2328825,  6.33226299, 12.320322,  1.40236998,  10.1183329,
                                    2.61297512, 4.01818991, 5.52294159, 0.275039315, 5.79556656};
    static const float want_w[2] = {0.862151623f, -0.711131692f};
    check_seed_run(CV_OPTIM_KIND_MOMENTUM, 0.012f, want, 20, 0.923130691, want_w);
}
END_TEST

START_TEST(test_train_seed_adam) {
    static const double want[20] = {34.5,       29.0849991, 24.2588196, 20.0282974, 16.3945866,
                                    13.3516636, 10.8846302, 8.96801853, 7.56431103, 6.62306881,
                                    6.08117056, 5.86462021, 5.89217901, 6.08061838, 6.35080051,
                                    6.63347292, 6.87364912, 7.03289175, 7.08944798, 7.036623};
    static const float want_w[2] = {-0.0431686938f, -0.211403966f};
    check_seed_run(CV_OPTIM_KIND_ADAM, 0.05f, want, 20, 6.88004875, want_w);
}
END_TEST

/* A multi-channel problem with every geometry feature and a bias, against PyTorch:
 *   N,C,H,W,Cout,kh,kw = 2,2,5,6,3,2,3
 *   X[flat i] = sin(0.3 i); weight[flat i] = 0.1 sin(i + 1); bias = [0.1, -0.2, 0.05]
 *   yhat = F.conv2d(F.pad(X, (2, 1, 1, 0)), w, b, stride=(1, 2), dilation=(2, 1))  -> (2,3,4,4)
 *   Y[flat i] = cos(0.2 i); loss = ((yhat - Y)**2).mean(); 10 steps of
 *   torch.optim.Adam([w, b], lr=0.01) or torch.optim.SGD([w, b], lr=0.05, momentum=0.9). */
static void check_multichannel_run(enum cv_optim_kind kind, float lr, const double *want,
                                   double want_final, const float *want_b) {
    struct cv_tensor x = make_tensor(2, 2, 5, 6), w = make_tensor(3, 2, 2, 3);
    struct cv_tensor y = make_tensor(2, 3, 4, 4);
    for (int64_t q = 0; q < cv_tensor_numel(&x); q++)
        x.data[q] = (float)sin(0.3 * (double)q);
    for (int64_t q = 0; q < cv_tensor_numel(&w); q++)
        w.data[q] = (float)(0.1 * sin((double)q + 1.0));
    for (int64_t q = 0; q < cv_tensor_numel(&y); q++)
        y.data[q] = (float)cos(0.2 * (double)q);
    float bias[3] = {0.1f, -0.2f, 0.05f};
    struct cv_train_params p = seed_params(kind, lr, 10);
    p.geom = (struct cv_conv2d_geom){.pad_top = 1,
                                     .pad_bottom = 0,
                                     .pad_left = 2,
                                     .pad_right = 1,
                                     .stride_h = 1,
                                     .stride_w = 2,
                                     .dil_h = 2,
                                     .dil_w = 1};
    p.loss = CV_LOSS_KIND_MSE;
    p.use_bias = true;
    p.n_threads = 2;
    struct loss_log log = {0};
    struct cv_train_result res;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, bias, log_step, &log, &res), CV_OK);
    ck_assert_int_eq(res.steps_done, 10);
    for (int q = 0; q < 10; q++)
        assert_rel(log.loss[q], want[q], 1e-4, "loss at step", q + 1);
    assert_rel(res.final_loss, want_final, 1e-4, "final_loss", 10);
    for (int o = 0; o < 3; o++)
        ck_assert_double_eq_tol(bias[o], want_b[o], 1e-5);
    cv_tensor_free(&x), cv_tensor_free(&y), cv_tensor_free(&w);
}

START_TEST(test_train_multichannel_adam) {
    static const double want[10] = {0.516881406, 0.495728642, 0.48124814,  0.473025531,
                                    0.469897181, 0.46986568,  0.470813394, 0.471257806,
                                    0.470559239, 0.468729496};
    static const float want_b[3] = {0.0381116048f, -0.104121625f, 0.0470843464f};
    check_multichannel_run(CV_OPTIM_KIND_ADAM, 0.01f, want, 0.466136903, want_b);
}
END_TEST

START_TEST(test_train_multichannel_momentum) {
    static const double want[10] = {0.516881406, 0.508948028, 0.496336699, 0.483188957,
                                    0.473001391, 0.467605025, 0.466896862, 0.469267517,
                                    0.472447246, 0.474403709};
    static const float want_b[3] = {0.0572249778f, -0.0545909852f, 0.0562363602f};
    check_multichannel_run(CV_OPTIM_KIND_MOMENTUM, 0.05f, want, 0.473982662, want_b);
}
END_TEST

START_TEST(test_train_variants_agree) {
    /* Training through the vector kernels (forward, fused loss, dK with the bias summed in the
     * same pass) follows the plain loops' trajectory, for 1 and 2 threads. */
    rng_state = 0x5eed0009;
    struct cv_tensor x = make_tensor(1, 1, 61, 67), y = make_tensor(1, 1, 61, 67);
    fill_random(&x), fill_random(&y);
    struct cv_train_params p = seed_params(CV_OPTIM_KIND_SGD, 0.05f, 8);
    p.loss = CV_LOSS_KIND_MSE;
    p.use_bias = true;
    p.geom = (struct cv_conv2d_geom){1, 1, 1, 1, 1, 1, 1, 1};
    enum cv_corr2d_isa isas[4];
    const int nisa = isas_available(isas);
    struct loss_log ref = {0};
    float wref[9], bref = 0.0f;
    for (int v = 0; v < nisa; v++) {
        for (int threads = 1; threads <= 2; threads++) {
            ck_assert_int_eq(cv_corr2d_set_isa(isas[v]), CV_OK);
            struct cv_tensor w = make_tensor(1, 1, 3, 3);
            float bias;
            cv_train_init_uniform(&w, &bias, 7);
            p.n_threads = threads;
            struct loss_log log = {0};
            struct cv_train_result res;
            ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, &bias, log_step, &log, &res), CV_OK);
            ck_assert_int_eq(log.count, 8);
            if (v == 0 && threads == 1) { /* the plain loops */
                ref = log;
                memcpy(wref, w.data, sizeof wref);
                bref = bias;
            } else {
                for (int q = 0; q < 8; q++)
                    assert_rel(log.loss[q], ref.loss[q], 1e-5, "loss at step", q + 1);
                for (int q = 0; q < 9; q++)
                    ck_assert_double_eq_tol(w.data[q], wref[q], 1e-5);
                ck_assert_double_eq_tol(bias, bref, 1e-5);
            }
            cv_tensor_free(&w);
        }
    }
    ck_assert_int_eq(cv_corr2d_set_isa(CV_CORR2D_ISA_AUTO), CV_OK);
    cv_tensor_free(&x), cv_tensor_free(&y);
}
END_TEST

START_TEST(test_train_cancel) {
    struct cv_tensor x = seed_x(), y = seed_y(), w = make_tensor(1, 1, 1, 2);
    w.data[0] = w.data[1] = 0.5f;
    const struct cv_train_params p = seed_params(CV_OPTIM_KIND_SGD, 0.012f, 20);
    struct loss_log log = {.cancel_at = 3};
    struct cv_train_result res;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, log_step, &log, &res), CV_ECANCELED);
    ck_assert_int_eq(res.steps_done, 3);
    ck_assert_int_eq(log.count, 3);
    ck_assert(!res.stopped_early);
    assert_rel(res.last_loss, 4.97250843, 1e-4, "last_loss", 3);
    /* The weight is left as the callback saw it after step 3, and final_loss is its loss, which
     * is step 4's loss in the uncancelled run. */
    ck_assert_float_eq(w.data[0], log.w_seen[0]);
    ck_assert_float_eq(w.data[1], log.w_seen[1]);
    assert_rel(res.final_loss, 3.90290403, 1e-4, "final_loss", 3);
    cv_tensor_free(&x), cv_tensor_free(&y), cv_tensor_free(&w);
}
END_TEST

START_TEST(test_train_stop_loss) {
    struct cv_tensor x = seed_x(), y = seed_y(), w = make_tensor(1, 1, 1, 2);
    w.data[0] = w.data[1] = 0.5f;
    struct cv_train_params p = seed_params(CV_OPTIM_KIND_SGD, 0.012f, 20);
    p.has_stop_loss = true;
    p.stop_loss = 2.0; /* step 9's loss, 1.815, is the first <= 2 */
    struct cv_train_result res;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, NULL, NULL, &res), CV_OK);
    ck_assert_int_eq(res.steps_done, 9);
    ck_assert(res.stopped_early);
    assert_rel(res.last_loss, 1.81518006, 1e-4, "last_loss", 9);
    assert_rel(res.final_loss, 1.56320155, 1e-4, "final_loss", 9);
    cv_tensor_free(&x), cv_tensor_free(&y), cv_tensor_free(&w);
}
END_TEST

START_TEST(test_train_diverges) {
    struct cv_tensor x = seed_x(), y = seed_y(), w = make_tensor(1, 1, 1, 2);
    w.data[0] = w.data[1] = 0.5f;
    const struct cv_train_params p = seed_params(CV_OPTIM_KIND_SGD, 1e6f, 50);
    struct cv_train_result res;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, NULL, NULL, &res), CV_EDIVERGED);
    ck_assert_int_gt(res.steps_done, 0);
    ck_assert_int_lt(res.steps_done, 50);
    ck_assert(isfinite(res.last_loss));
    ck_assert(!isfinite(res.final_loss));
    cv_tensor_free(&x), cv_tensor_free(&y), cv_tensor_free(&w);
}
END_TEST

START_TEST(test_train_rejects_bad_input) {
    struct cv_tensor x = seed_x(), y = seed_y(), w = make_tensor(1, 1, 1, 2);
    struct cv_tensor w3 = make_tensor(1, 1, 1, 3);
    struct cv_train_params p = seed_params(CV_OPTIM_KIND_SGD, 0.012f, 0);
    struct cv_train_result res;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, NULL, NULL, &res), CV_EINVAL);
    ck_assert_int_eq(res.steps_done, 0);
    ck_assert(isnan(res.last_loss) && isnan(res.final_loss));
    p = seed_params(CV_OPTIM_KIND_SGD, -1.0f, 5);
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, NULL, NULL, &res), CV_EINVAL);
    p = seed_params(CV_OPTIM_KIND_SGD, 0.012f, 5);
    /* A 1x3 kernel gives a 6x6 output, but Y is 6x7. */
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w3, NULL, NULL, NULL, &res), CV_ESHAPE);
    p.geom.stride_w = 0;
    ck_assert_int_eq(cv_train_run(&p, &x, &y, &w, NULL, NULL, NULL, &res), CV_EINVAL);
    cv_tensor_free(&x), cv_tensor_free(&y), cv_tensor_free(&w), cv_tensor_free(&w3);
}
END_TEST

START_TEST(test_train_init_uniform) {
    struct cv_tensor a = make_tensor(4, 2, 3, 3), b = make_tensor(4, 2, 3, 3);
    struct cv_tensor c = make_tensor(4, 2, 3, 3);
    float ba[4], bb[4], bc[4];
    const float bound = (float)(1.0 / sqrt(18.0)); /* fan_in = C * kh * kw = 2 * 3 * 3 */
    cv_train_init_uniform(&a, ba, 42);
    cv_train_init_uniform(&b, bb, 42);
    cv_train_init_uniform(&c, bc, 43);
    const int64_t n = cv_tensor_numel(&a);
    int differ = 0, neg = 0, pos = 0;
    for (int64_t q = 0; q < n; q++) {
        ck_assert_float_eq(a.data[q], b.data[q]); /* same seed, same start */
        ck_assert(a.data[q] >= -bound && a.data[q] < bound);
        differ += a.data[q] != c.data[q];
        neg += a.data[q] < 0;
        pos += a.data[q] > 0;
    }
    for (int o = 0; o < 4; o++) {
        ck_assert_float_eq(ba[o], bb[o]);
        ck_assert(ba[o] >= -bound && ba[o] < bound);
    }
    ck_assert_int_gt(differ, n - 3); /* another seed, another start */
    ck_assert_int_gt(neg, 10);
    ck_assert_int_gt(pos, 10);
    /* The values spread over the interval rather than clustering. */
    float lo = bound, hi = -bound;
    for (int64_t q = 0; q < n; q++) {
        lo = fminf(lo, a.data[q]);
        hi = fmaxf(hi, a.data[q]);
    }
    ck_assert(lo < -0.7f * bound && hi > 0.7f * bound);
    /* Without a bias the weights are the same draws. */
    cv_train_init_uniform(&b, NULL, 42);
    ck_assert_float_eq(a.data[n - 1], b.data[n - 1]);
    cv_tensor_free(&a), cv_tensor_free(&b), cv_tensor_free(&c);
}
END_TEST

/* ---- suite -------------------------------------------------------------------------------- */

static Suite *compute_suite(void) {
    Suite *s = suite_create("compute");

    TCase *tc = tcase_create("corr2d");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_corr2d_seed_3x3);
    tcase_add_test(tc, test_corr2d_seed_edges);
    tcase_add_test(tc, test_corr2d_out_shape);
    tcase_add_test(tc, test_corr2d_shape_errors);
    tcase_add_test(tc, test_corr2d_forward_vs_ref);
    tcase_add_test(tc, test_corr2d_backward_vs_ref);
    tcase_add_test(tc, test_corr2d_gradients_vs_finite_differences);
    tcase_add_test(tc, test_corr2d_parallel_matches_serial);
    tcase_add_test(tc, test_corr2d_cancellable);
    suite_add_tcase(s, tc);

    tc = tcase_create("corr2d_kernels");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_corr2d_isa_selection);
    tcase_add_loop_test(tc, test_corr2d_shape_classes, 0,
                        (int)(sizeof shape_cases / sizeof shape_cases[0]));
    tcase_add_test(tc, test_corr2d_isas_random);
    tcase_add_test(tc, test_corr2d_winograd_no_bias);
    tcase_add_test(tc, test_corr2d_row_winograd_random);
    tcase_add_test(tc, test_corr2d_winograd4_random);
    tcase_add_test(tc, test_corr2d_workspace);
    tcase_add_test(tc, test_corr2d_streaming);
    suite_add_tcase(s, tc);

    tc = tcase_create("loss");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_loss_values_and_gradients);
    tcase_add_test(tc, test_loss_large_threads_agree);
    tcase_add_test(tc, test_loss_variants_agree);
    suite_add_tcase(s, tc);

    tc = tcase_create("optim");
    tcase_add_test(tc, test_optim_sgd);
    tcase_add_test(tc, test_optim_momentum);
    tcase_add_test(tc, test_optim_adam);
    tcase_add_test(tc, test_optim_init_rejects);
    suite_add_tcase(s, tc);

    tc = tcase_create("train");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_train_seed_sgd);
    tcase_add_test(tc, test_train_seed_momentum);
    tcase_add_test(tc, test_train_seed_adam);
    tcase_add_test(tc, test_train_multichannel_adam);
    tcase_add_test(tc, test_train_multichannel_momentum);
    tcase_add_test(tc, test_train_variants_agree);
    tcase_add_test(tc, test_train_cancel);
    tcase_add_test(tc, test_train_stop_loss);
    tcase_add_test(tc, test_train_diverges);
    tcase_add_test(tc, test_train_rejects_bad_input);
    tcase_add_test(tc, test_train_init_uniform);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(compute_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
