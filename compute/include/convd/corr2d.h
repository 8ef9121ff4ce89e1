/* 2-D cross-correlation ("convolution" in deep-learning libraries), forward and backward.
 *
 *   Y[n,o,i,j] = bias[o] + sum_{c,a,b} Xpad[n, c, i*sh + a*dh, j*sw + b*dw] * K[o, c, a, b]
 *
 * where Xpad is X with pad_top/pad_bottom rows and pad_left/pad_right columns of zeros.
 * Shapes: X (N, C, H, W), K (Cout, C, kh, kw), Y (N, Cout, H', W') with
 *   H' = floor((H + pad_top + pad_bottom - dh*(kh-1) - 1) / sh) + 1   (and W' alike).
 *
 * Kernels never allocate: outputs are pre-sized by the caller (cv_corr2d_out_shape), shapes are
 * checked and a mismatch returns CV_ESHAPE. n_threads (>= 1) is the number of OpenMP threads
 * the call may use; small problems run on the calling thread without entering a parallel
 * region. These functions are the narrow interface the rest of convd calls: faster kernels
 * replace their bodies, not their signatures.
 *
 * Speed. The kernels are vectorised for the CPU found at run time (AVX-512, AVX2 or the
 * baseline ISA, picked with __builtin_cpu_supports; never -march=native; cv_corr2d_set_isa can
 * force one) whenever stride_w is 1 (for the input gradient, stride 1 in both axes); column
 * strides take plain loops. Every kernel size, padding, dilation, channel count and width has a
 * vector path: register-blocked output rows for few output channels, output-channel blocks for
 * many (narrow images flatten several rows into one vector row), and a tap-blocked reduction
 * for dK that also sums dbias. Threads split the output rows (dK: fixed row chunks or channel
 * blocks) into one contiguous block each.
 *
 * Scratch. The kernels keep no state: what most paths need (a zero-padded copy of the window
 * they read, row-pointer tables, dK's partial sums) lives in fixed arrays on the running
 * threads' stacks, under 128 KiB per thread, so any thread with a default-sized stack may call
 * them. The Winograd F(4x4, 3x3) paths of many-channel 3x3 layers need a few MiB more (blocked
 * transforms, per-thread sums): they take it from a struct cv_corr2d_workspace the caller passes
 * to the _ws variants, which grows to the largest size a call needs and is then reused, or,
 * without one, allocate it for the call. Training keeps one per job (train.h), so its steps
 * after the first allocate nothing.
 *
 * Results agree with the double reference to float rounding, and are bitwise the same for
 * every n_threads (dK is reduced over row chunks fixed by the shapes, added in a fixed order).
 * They may differ in the last bits between kernel variants. */
#ifndef CONVD_CORR2D_H
#define CONVD_CORR2D_H

#include <stdatomic.h>
#include <stddef.h>

#include "convd/tensor.h"

struct cv_conv2d_geom {
    int64_t pad_top, pad_bottom, pad_left, pad_right; /* >= 0 */
    int64_t stride_h, stride_w;                       /* >= 1 */
    int64_t dil_h, dil_w;                             /* >= 1 */
};

/* The geometry of a plain d2l corr2d: no padding, stride 1, dilation 1. */
struct cv_conv2d_geom cv_conv2d_geom_default(void);

/* Computes the output rows and columns for an h x w input and a kh x kw kernel.
 * Returns CV_OK, CV_EINVAL when a stride/dilation is < 1 or a padding < 0, or CV_ESHAPE when
 * the dilated kernel is larger than the padded input. *out_h and *out_w are set on CV_OK only. */
int cv_corr2d_out_shape(int64_t h, int64_t w, int64_t kh, int64_t kw,
                        const struct cv_conv2d_geom *g, int64_t *out_h, int64_t *out_w);

/* Y = corr2d(X, K) + bias. bias has K->n (Cout) entries, or is NULL for no bias.
 * y must already have shape (X->n, K->n, H', W'); it is overwritten.
 * Returns CV_OK or CV_ESHAPE/CV_EINVAL when the shapes or geometry do not fit. */
int cv_corr2d_forward(const struct cv_tensor *x, const struct cv_tensor *k, const float *bias,
                      const struct cv_conv2d_geom *g, struct cv_tensor *y, int n_threads);

/* cv_corr2d_forward that can be stopped from another thread: it polls *cancel (when cancel is
 * not NULL; a relaxed atomic load) between blocks of output rows of about 2^24 multiply-adds
 * each (a row block of the vector kernels, rows of the plain loops), and once it reads true,
 * finishes no further block and returns CV_ECANCELED, with y partly written. A stop therefore
 * takes at most one block per thread: well under a millisecond on the vector kernels, and the
 * cost of one output row when a single row is larger than a block. Otherwise the same as
 * cv_corr2d_forward, with bitwise the same results. The caller owns *cancel. */
int cv_corr2d_forward_cancellable(const struct cv_tensor *x, const struct cv_tensor *k,
                                  const float *bias, const struct cv_conv2d_geom *g,
                                  struct cv_tensor *y, int n_threads, const atomic_bool *cancel);

/* Scratch memory kept across corr2d calls (see "Scratch" above). Zero it with
 * cv_corr2d_workspace_init; a call grows it when it needs more (freeing the old block); release
 * it with cv_corr2d_workspace_free. One call at a time may use a workspace. */
struct cv_corr2d_workspace {
    void *data;   /* 64-byte aligned, or NULL; owned by the workspace */
    size_t bytes; /* bytes at data */
};

/* An empty workspace (no memory yet). */
void cv_corr2d_workspace_init(struct cv_corr2d_workspace *ws);

/* Frees the workspace's memory and leaves it empty. */
void cv_corr2d_workspace_free(struct cv_corr2d_workspace *ws);

/* cv_corr2d_forward_cancellable with scratch from ws (NULL: allocated for the call when a path
 * needs it). Bitwise the same results with or without ws. */
int cv_corr2d_forward_ws(const struct cv_tensor *x, const struct cv_tensor *k, const float *bias,
                         const struct cv_conv2d_geom *g, struct cv_tensor *y, int n_threads,
                         const atomic_bool *cancel, struct cv_corr2d_workspace *ws);

/* Gradient with respect to the input: dX = dL/dX given dY = dL/dY.
 * dx must have X's shape (N, C, H, W); it is overwritten. Returns CV_OK or CV_ESHAPE/CV_EINVAL. */
int cv_corr2d_backward_input(const struct cv_tensor *dy, const struct cv_tensor *k,
                             const struct cv_conv2d_geom *g, struct cv_tensor *dx, int n_threads);

/* cv_corr2d_backward_input with scratch from ws (NULL: allocated for the call when needed). */
int cv_corr2d_backward_input_ws(const struct cv_tensor *dy, const struct cv_tensor *k,
                                const struct cv_conv2d_geom *g, struct cv_tensor *dx, int n_threads,
                                struct cv_corr2d_workspace *ws);

/* Gradients with respect to the kernel and bias: dK = dL/dK, dbias[o] = sum over n,i,j of dY.
 * dk must have K's shape (Cout, C, kh, kw) and is overwritten; dbias has Cout entries and is
 * overwritten, or is NULL when no bias gradient is wanted. Returns CV_OK or CV_ESHAPE/CV_EINVAL. */
int cv_corr2d_backward_kernel(const struct cv_tensor *x, const struct cv_tensor *dy,
                              const struct cv_conv2d_geom *g, struct cv_tensor *dk, float *dbias,
                              int n_threads);

/* cv_corr2d_backward_kernel with scratch from ws (NULL: allocated for the call when needed). */
int cv_corr2d_backward_kernel_ws(const struct cv_tensor *x, const struct cv_tensor *dy,
                                 const struct cv_conv2d_geom *g, struct cv_tensor *dk, float *dbias,
                                 int n_threads, struct cv_corr2d_workspace *ws);

/* Kernel variants, for tests and benchmarks. AUTO (the default) uses the best one the CPU
 * supports; GENERIC forces the plain loops everywhere. */
enum cv_corr2d_isa {
    CV_CORR2D_ISA_AUTO = 0,
    CV_CORR2D_ISA_GENERIC = 1,  /* plain loops, no vector kernels */
    CV_CORR2D_ISA_PORTABLE = 2, /* vector kernels for the build's baseline ISA (SSE2 on x86-64) */
    CV_CORR2D_ISA_AVX2 = 3,     /* AVX2 + FMA */
    CV_CORR2D_ISA_AVX512 = 4,   /* AVX-512 F/VL/DQ + FMA */
};

/* Makes every later corr2d call in the process use variant isa. Returns CV_OK, or CV_EINVAL
 * when this CPU (or build) cannot run it, leaving the choice unchanged. Meant to be called
 * while no corr2d call runs (a call in flight may use either variant). */
int cv_corr2d_set_isa(enum cv_corr2d_isa isa);

/* The variant corr2d calls use now; never CV_CORR2D_ISA_AUTO. */
enum cv_corr2d_isa cv_corr2d_get_isa(void);

/* "auto", "generic", "portable", "avx2" or "avx512"; NULL for an unknown value. */
const char *cv_corr2d_isa_name(enum cv_corr2d_isa isa);

#endif
