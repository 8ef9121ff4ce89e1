/* Private to compute/: the vectorised corr2d kernels and the table that selects them at run time.
 *
 * corr2d.c checks shapes, picks a path and owns every OpenMP region; the kernels here are serial
 * functions that process a contiguous range of work items, so a thread only ever runs one of
 * them on its own block of items. The kernels are written once, one file per algorithm
 * (corr2d_vec.h lists them), and compiled three times: corr2d_avx512.c and corr2d_avx2.c with
 * `#pragma GCC target(...)` (no build flags, so the binary still runs on any x86-64) and
 * corr2d_portable.c for the baseline ISA. corr2d.c picks a table with __builtin_cpu_supports,
 * never at compile time.
 *
 * Two operations cover the three public passes:
 *
 *   corr:  dst[n,o,i,j] = bias[o] + sum_{c,a,b} src[n, c, i*stride_h + a*dil_h + off_h,
 *                                                      j + b*dil_w + off_w] * w(o, c, a, b)
 *          with w(o,c,a,b) = w[o*w_os + c*w_cs + a*w_as + b*w_bs] and src read as zero outside
 *          its rows and columns (off_* < 0 is padding). The forward pass is corr with
 *          off = -pad; the input gradient (stride 1) is corr of dY with the transposed,
 *          flipped kernel (negative w_as/w_bs) and off = pad - (k-1)*dil.
 *   bk:    dk[o,c,a,b] = sum_{n,i,j} dy[n,o,i,j] * x[n, c, i*stride_h + a*dil_h - pad_top,
 *                                                   j + b*dil_w - pad_left]
 *          (stride_w 1), reduced in float vectors over short row pieces and in double above;
 *          dbias[o] = sum dy[n,o,i,j] is summed in the same pass over dY.
 *
 * Each has direct kernels for every shape and fast-algorithm kernels where they pay: corr with
 * Winograd F(4x4, 3x3) (w4_*), F(2x2, 3x3) (wino_*) and the row Winograd F(4, 5) (rw_*), bk with
 * the Winograd F(2x2, 3x3) kernel gradient (wk_*). The table also carries the vectorised
 * squared-error sum of loss.c.
 *
 * None allocates (F(4x4, 3x3) runs in scratch corr2d.c hands it: the caller's cv_corr2d_workspace,
 * or memory allocated for the call): a kernel's
 * scratch (zero-padded copies of the windows it reads, transformed tiles, row-pointer tables,
 * partial sums) lives in fixed arrays on the running thread's stack, at most about 130 KiB (the
 * forward kernels, which a small /corr2d runs on a connection thread with a 512 KiB stack, about
 * 100 KiB). Shapes whose scratch would not fit take other kernels or the generic loops. */
#ifndef CONVD_CORR2D_IMPL_H
#define CONVD_CORR2D_IMPL_H

#include <stdbool.h>
#include <stdint.h>

/* Floats of per-thread stack scratch a kernel may use for padded source windows (64 KiB). */
#define CV__SLAB_FLOATS 16384

/* A bk problem is split into at most this many fixed row chunks (whatever the thread count),
 * whose double partial sums are added in chunk order: dK does not depend on n_threads. */
#define CV__BK_CHUNKS_MAX 32

/* Doubles of partial sums the bk driver may keep on the caller's stack (32 KiB). */
#define CV__BK_PARTIAL_DOUBLES 4096

/* Kernels with more taps than this take the generic loops in bk. */
#define CV__BK_TAPS_MAX 256

/* Input rows one bk row piece may read (the size of its row-pointer table). */
#define CV__BK_ROWS_MAX 1024

/* Double sums of dK one bk unit keeps (output channels x input channels x taps;
 * >= CV__BK_TAPS_MAX * 4). 16 KiB: with the slab, the row pointers and the caller's partial sums
 * the master thread's stack scratch stays below 128 KiB. */
#define CV__BK_UNIT_DOUBLES 2048

enum cv__corr_mode {
    CV__CORR_MODE_ROWS = 0,  /* few output channels: several output rows of one channel at once
                                (stride_h and dil_h 1); each loaded source vector serves the up
                                to kh rows that use it */
    CV__CORR_MODE_CHANS = 1, /* several output channels of one output row, in column blocks;
                                each loaded source vector serves every channel of the block */
    CV__CORR_MODE_FLAT = 2,  /* CHANS for narrow images (stride_h 1): rb output rows are read
                                as one flattened row with the padded row stride, so vectors run
                                on across row ends and only the kw-1 gap columns are wasted */
};

struct cv__corr_op {
    const float *src;
    int64_t n, sc, src_h, src_w; /* batch, source channels, rows, columns */
    const float *w;
    int64_t w_os, w_cs, w_as, w_bs; /* element strides of the weights; may be negative */
    int64_t kh, kw;
    const float *bias; /* dc entries, or NULL */
    float *dst;
    int64_t dc, dst_h, dst_w; /* destination channels, rows, columns */
    int64_t off_h, off_w;     /* source row/column of tap (0, 0) for output (0, 0) */
    int64_t stride_h, dil_h, dil_w;
    enum cv__corr_mode mode; /* set by cv__isa.corr_plan */
    int64_t rb;              /* output rows per work item; set by cv__isa.corr_plan */
};

struct cv__bk_op {
    const float *x;
    int64_t n, c, h, w; /* input */
    const float *dy;
    int64_t co, oh, ow; /* output gradient */
    int64_t kh, kw, pad_top, pad_left, stride_h, dil_h, dil_w;
    int64_t chunks; /* row chunks per unit (1: each unit covers every row) */
    float *dk;      /* chunks == 1: the result, written directly */
    float *dbias;   /* co entries, or NULL: no bias gradient (summed in the same pass) */
    double *part;   /* chunks > 1: chunks x (co*c*kh*kw dK entries, then co dbias entries when
                       dbias != NULL) partial sums, chunk-major */
};

/* One compiled variant of the kernels. */
struct cv__isa {
    const char *name;
    int vl; /* floats per vector */
    /* Picks op->mode and op->rb; false when the kernels cannot run op (its source windows do
     * not fit the stack scratch). */
    bool (*corr_plan)(struct cv__corr_op *op);
    /* Work items of a planned op: (n, block of rb output rows), every output channel. */
    int64_t (*corr_items)(const struct cv__corr_op *op);
    /* Computes items [lo, hi) of op. */
    void (*corr_run)(const struct cv__corr_op *op, int64_t lo, int64_t hi);
    /* Winograd F(2x2, 3x3) forward for corr ops with 3x3 kernels, stride 1, dilation 1 and
     * w_bs 1: its work items and the kernel running items [lo, hi). */
    int64_t (*wino_items)(const struct cv__corr_op *op);
    void (*wino_run)(const struct cv__corr_op *op, int64_t lo, int64_t hi);
    /* The streaming kernel (corr2d_stream.h) for memory-bound single-channel corr ops
     * (outputs of >= 16 MiB, no padding): whether it takes op, its work items (output pages),
     * the kernel running items [lo, hi). */
    bool (*st_fits)(const struct cv__corr_op *op);
    int64_t (*st_items)(const struct cv__corr_op *op);
    void (*st_run)(const struct cv__corr_op *op, int64_t lo, int64_t hi);
    /* Winograd F(4x4, 3x3) (corr2d_wino4.h) for corr ops with 3x3 kernels, stride 1 and
     * dilation 1, >= 16 channels each way: whether it takes op; the floats of its workspace
     * (U, shared, and one V buffer per thread); its output-channel groups and the kernel
     * transform of groups [lo, hi) into U; its work items and the kernel running items
     * [lo, hi) with U and the thread's V. */
    bool (*w4_fits)(const struct cv__corr_op *op);
    int64_t (*w4_u_floats)(const struct cv__corr_op *op);
    int64_t (*w4_v_floats)(const struct cv__corr_op *op);
    int64_t (*w4_groups)(const struct cv__corr_op *op);
    void (*w4_kernel)(const struct cv__corr_op *op, float *u, int64_t lo, int64_t hi);
    int64_t (*w4_items)(const struct cv__corr_op *op);
    void (*w4_run)(const struct cv__corr_op *op, const float *u, float *v, int64_t lo, int64_t hi);
    /* Row Winograd F(4, 5) (corr2d_rwino.h) for corr ops with kernel rows 5 wide, stride and
     * dilation 1: whether it can run op, its work items, the kernel running items [lo, hi). */
    bool (*rw_fits)(const struct cv__corr_op *op);
    int64_t (*rw_items)(const struct cv__corr_op *op);
    void (*rw_run)(const struct cv__corr_op *op, int64_t lo, int64_t hi);
    /* Winograd F(4x4, 3x3) kernel gradient (corr2d_wgrad4.h) for bk ops with 3x3 kernels,
     * stride 1, dilation 1 and >= 16 channels each way: whether it takes op; its slots (fixed
     * tile ranges; with more than one, op->part must hold slots x co*c*9 doubles, which the
     * caller adds in slot order into dK); its items; the floats of one thread's scratch (in a
     * workspace the caller owns, 64-byte aligned); and the kernel computing items [lo, hi) with
     * it (no dbias). */
    bool (*wk4_fits)(const struct cv__bk_op *op);
    int64_t (*wk4_slots)(const struct cv__bk_op *op);
    int64_t (*wk4_items)(const struct cv__bk_op *op);
    int64_t (*wk4_scratch_floats)(const struct cv__bk_op *op);
    void (*wk4_run)(const struct cv__bk_op *op, float *scratch, int64_t lo, int64_t hi);
    /* Winograd F(2x2, 3x3) kernel gradient (corr2d_wgrad.h) for bk ops with 3x3 kernels, stride
     * 1 and dilation 1 and >= 16 channels each way: whether it takes op, its units, and the
     * kernel computing units [lo, hi) (each writes its own block of dK; no dbias). */
    bool (*wk_fits)(const struct cv__bk_op *op);
    int64_t (*wk_units)(const struct cv__bk_op *op);
    void (*wk_run)(const struct cv__bk_op *op, int64_t lo, int64_t hi);
    /* True when the bk kernels can run op (chunks is not consulted). */
    bool (*bk_fits)(const struct cv__bk_op *op);
    /* Units of a bk op: (group of output channels, group of input channels) pairs. */
    int64_t (*bk_units)(const struct cv__bk_op *op);
    /* Computes bk items [lo, hi): item = chunk + chunks * unit. */
    void (*bk_run)(const struct cv__bk_op *op, int64_t lo, int64_t hi);
    /* Sum of p[0..n) in float vectors over fixed blocks, the blocks added in double. */
    double (*sum)(const float *p, int64_t n);
    /* Sum of (yh - y)^2 over [0, n) in double; the loss gradient into g unless g is NULL
     * (see loss.h: scale * (2 * (yh - y)) when mean, else 2 * (yh - y)). */
    double (*sqerr)(const float *yh, const float *y, float *g, float scale, bool mean, int64_t n);
};

extern const struct cv__isa cv__isa_portable;

/* The table corr2d and the losses use now (cv_corr2d_set_isa), or NULL for the plain loops. */
const struct cv__isa *cv__isa_active(void);
#if defined(__x86_64__) || defined(__i386__)
extern const struct cv__isa cv__isa_avx2;
extern const struct cv__isa cv__isa_avx512;
#endif

#endif
