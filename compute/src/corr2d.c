/* float32 corr2d forward and backward: shape checks, path selection and threading.
 *
 * Two paths compute the same sums:
 *  - the vectorised kernels (corr2d_impl.h, corr2d_*.h), compiled for AVX-512, AVX2 and the
 *    baseline ISA and picked at run time with __builtin_cpu_supports (cv_corr2d_set_isa can force
 *    one). They cover stride_w 1 (and, for the input gradient, stride 1): every kernel size,
 *    padding, dilation, channel count and odd width. Among them, fast-algorithm kernels where
 *    they pay: Winograd F(2x2, 3x3) for 3x3 kernels, stride 1, dilation 1 and >= 16 channels
 *    each way (2.25x fewer multiplies) in all three passes (wino_fits and corr_dispatch for the
 *    forward pass and the input gradient, wk_fits for the kernel gradient), and the row
 *    Winograd F(4, 5) for 5-column kernels with >= 4 output channels (corr2d_rwino.h, 2.5x
 *    fewer) in the forward pass and the input gradient;
 *  - the generic loops below, which take everything else (column strides, windows too wide for
 *    the kernels' stack scratch): for each kernel tap they compute once the range of columns
 *    whose source pixel lies inside the unpadded input, so the inner loop has no branches.
 *
 * Threads: each call splits its work items (output rows or row blocks, or dK chunks) into one
 * contiguous block per thread inside a single `omp parallel`, so a thread writes whole rows and
 * no two threads write the same float. Problems below CV_CORR2D_PARALLEL_MIN_MACS run on the
 * calling thread without entering a parallel region. dK is reduced over chunks fixed by the
 * shapes, never by the thread count, so every result is the same for any n_threads. */
#include "convd/corr2d.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "convd/status.h"
#include "corr2d_impl.h"

/* Problems with fewer multiply-adds than this run on the calling thread: waking an OpenMP team
 * costs more than the arithmetic. */
#define CV_CORR2D_PARALLEL_MIN_MACS ((int64_t)200000)

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

/* ---- kernel variants ---------------------------------------------------------------------- */

/* The variant cv_corr2d_set_isa forced, or CV_CORR2D_ISA_AUTO. Process-wide; relaxed is enough
 * because a variant only changes how fast (and in the last bits, how) a sum is computed. */
static _Atomic int forced_isa = CV_CORR2D_ISA_AUTO;

static const char *const isa_names[] = {
    [CV_CORR2D_ISA_AUTO] = "auto",         [CV_CORR2D_ISA_GENERIC] = "generic",
    [CV_CORR2D_ISA_PORTABLE] = "portable", [CV_CORR2D_ISA_AVX2] = "avx2",
    [CV_CORR2D_ISA_AVX512] = "avx512",
};

const char *cv_corr2d_isa_name(enum cv_corr2d_isa isa) {
    if ((unsigned)isa >= sizeof isa_names / sizeof isa_names[0])
        return NULL;
    return isa_names[isa];
}

/* The kernel table of a variant, or NULL when this CPU (or build) cannot run it; GENERIC has
 * no table. */
static const struct cv__isa *isa_table(enum cv_corr2d_isa isa) {
    switch (isa) {
    case CV_CORR2D_ISA_PORTABLE:
        return &cv__isa_portable;
#if defined(__x86_64__) || defined(__i386__)
    case CV_CORR2D_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &cv__isa_avx2
                                                                               : NULL;
    case CV_CORR2D_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")
                   ? &cv__isa_avx512
                   : NULL;
#endif
    default:
        return NULL;
    }
}

static enum cv_corr2d_isa isa_best(void) {
    if (isa_table(CV_CORR2D_ISA_AVX512) != NULL)
        return CV_CORR2D_ISA_AVX512;
    if (isa_table(CV_CORR2D_ISA_AVX2) != NULL)
        return CV_CORR2D_ISA_AVX2;
    return CV_CORR2D_ISA_PORTABLE;
}

int cv_corr2d_set_isa(enum cv_corr2d_isa isa) {
    if (isa != CV_CORR2D_ISA_AUTO && isa != CV_CORR2D_ISA_GENERIC && isa_table(isa) == NULL)
        return CV_EINVAL;
    atomic_store_explicit(&forced_isa, (int)isa, memory_order_relaxed);
    return CV_OK;
}

enum cv_corr2d_isa cv_corr2d_get_isa(void) {
    const int f = atomic_load_explicit(&forced_isa, memory_order_relaxed);
    return f == CV_CORR2D_ISA_AUTO ? isa_best() : (enum cv_corr2d_isa)f;
}

const struct cv__isa *cv__isa_active(void) {
    return isa_table(cv_corr2d_get_isa());
}

/* Threads for a problem of macs multiply-adds in items work items. */
static int team_size(int64_t macs, int64_t items, int n_threads) {
    if (run_serial(macs, n_threads) || items < 2)
        return 1;
    return items < n_threads ? (int)items : n_threads;
}

void cv_corr2d_workspace_init(struct cv_corr2d_workspace *ws) {
    CV_ASSERT(ws != NULL);
    ws->data = NULL;
    ws->bytes = 0;
}

void cv_corr2d_workspace_free(struct cv_corr2d_workspace *ws) {
    CV_ASSERT(ws != NULL);
    free(ws->data);
    ws->data = NULL;
    ws->bytes = 0;
}

/* bytes of 64-byte aligned scratch: from ws (grown when too small) or, without ws, allocated
 * for the call (*owned: the caller frees it). NULL when memory is short. */
static float *scratch_get(struct cv_corr2d_workspace *ws, size_t bytes, bool *owned) {
    bytes = (bytes + 63) / 64 * 64;
    *owned = ws == NULL;
    if (ws == NULL)
        return aligned_alloc(64, bytes);
    if (ws->bytes < bytes) {
        cv_corr2d_workspace_free(ws);
        ws->data = aligned_alloc(64, bytes);
        if (ws->data == NULL)
            return NULL;
        ws->bytes = bytes;
    }
    return ws->data;
}

/* A corr kernel of the table: its work items and the function that computes items [lo, hi). */
typedef int64_t (*corr_items_fn)(const struct cv__corr_op *op);
typedef void (*corr_run_fn)(const struct cv__corr_op *op, int64_t lo, int64_t hi);

/* Items per cancellation poll: blocks of about this many multiply-adds (0.1 ms on the vector
 * kernels, ~15 ms on the plain loops' slowest shapes), so a poll costs nothing measurable. */
#define CV_CORR2D_CANCEL_MACS ((int64_t)1 << 24)

static int64_t cancel_block(int64_t macs, int64_t items) {
    const int64_t per_item = macs / (items > 0 ? items : 1);
    const int64_t block = CV_CORR2D_CANCEL_MACS / (per_item > 0 ? per_item : 1);
    return block > 0 ? block : 1;
}

static bool cancelled(const atomic_bool *cancel) {
    return cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed);
}

/* Runs items [lo, hi) in blocks of `block`, polling *cancel (when not NULL) before each; a
 * cancelled run leaves the rest undone. Items are independent, so splitting a range changes
 * no result. */
static void run_blocks(corr_run_fn run, const struct cv__corr_op *op, int64_t lo, int64_t hi,
                       int64_t block, const atomic_bool *cancel) {
    if (cancel == NULL) {
        run(op, lo, hi);
        return;
    }
    for (int64_t b = lo; b < hi && !cancelled(cancel); b += block)
        run(op, b, hi - b > block ? b + block : hi);
}

/* Runs items [0, items) of a corr op with one of the table's kernels, one contiguous block per
 * thread, polling cancel between blocks of items. */
static void corr_parallel(corr_items_fn items_of, corr_run_fn run, const struct cv__corr_op *op,
                          int64_t macs, int n_threads, const atomic_bool *cancel) {
    const int64_t items = items_of(op);
    const int nt = team_size(macs, items, n_threads);
    const int64_t block = cancel_block(macs, items);
    if (nt == 1) {
        run_blocks(run, op, 0, items, block, cancel);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();
        run_blocks(run, op, items * t / nth, items * (t + 1) / nth, block, cancel);
    }
}

/* Whether a corr op takes the Winograd F(2x2, 3x3) kernels: 3x3 kernels, stride 1, dilation 1,
 * enough channels for its GEMMs to beat the direct kernels. They use 2.25x fewer multiplies;
 * the transforms add rounding of the order of a few ulps of the inputs' scale. */
static bool wino_fits(const struct cv__isa *isa, const struct cv__corr_op *op) {
    if (op->kh != 3 || op->kw != 3 || op->stride_h != 1 || op->dil_h != 1 || op->dil_w != 1 ||
        op->sc < 16 || op->dc < 16 || op->dst_h < 8 || op->dst_w < 8)
        return false;
    /* Tiles run in vectors along a tile row: at least 40% of the lanes must be used. */
    const int64_t tw = (op->dst_w + 1) / 2;
    const int64_t lanes = (tw + isa->vl - 1) / isa->vl * isa->vl;
    return tw * 5 >= lanes * 2;
}

/* Runs a corr op with Winograd F(4x4, 3x3) when isa takes it and its workspace can be
 * allocated: the kernel transform into the shared U first (output groups split among the
 * threads), then, after a barrier, each thread's tile blocks with its own V. False when it did
 * not run. */
static bool w4_dispatch(const struct cv__isa *isa, const struct cv__corr_op *op, int64_t macs,
                        int n_threads, struct cv_corr2d_workspace *wsp) {
    if (!isa->w4_fits(op))
        return false;
    const int64_t items = isa->w4_items(op), groups = isa->w4_groups(op);
    const int nt = team_size(macs, items, n_threads);
    const int64_t uf = isa->w4_u_floats(op), vfl = isa->w4_v_floats(op);
    const size_t bytes = (size_t)(uf + vfl * nt) * sizeof(float);
    bool owned;
    float *ws = scratch_get(wsp, bytes, &owned);
    if (ws == NULL)
        return false;
    if (nt == 1) {
        isa->w4_kernel(op, ws, 0, groups);
        isa->w4_run(op, ws, ws + uf, 0, items);
    } else {
#pragma omp parallel num_threads(nt)
        {
            const int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();
            isa->w4_kernel(op, ws, groups * t / nth, groups * (t + 1) / nth);
#pragma omp barrier
            isa->w4_run(op, ws, ws + uf + vfl * t, items * t / nth, items * (t + 1) / nth);
        }
    }
    if (owned)
        free(ws);
    return true;
}

/* Runs a corr op on the fastest kernel of isa that can take it; false when none can (the
 * caller then takes the plain loops). */
static bool corr_dispatch(const struct cv__isa *isa, struct cv__corr_op *op, int64_t macs,
                          int n_threads, const atomic_bool *cancel,
                          struct cv_corr2d_workspace *ws) {
    if (w4_dispatch(isa, op, macs, n_threads, ws))
        return true;
    if (isa->st_fits(op)) {
        corr_parallel(isa->st_items, isa->st_run, op, macs, n_threads, cancel);
        return true;
    }
    if (wino_fits(isa, op)) {
        corr_parallel(isa->wino_items, isa->wino_run, op, macs, n_threads, cancel);
        return true;
    }
    if (isa->rw_fits(op)) {
        corr_parallel(isa->rw_items, isa->rw_run, op, macs, n_threads, cancel);
        return true;
    }
    if (isa->corr_plan(op)) {
        corr_parallel(isa->corr_items, isa->corr_run, op, macs, n_threads, cancel);
        return true;
    }
    return false;
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

/* Rows [lo, hi) of the plain forward loops, polling cancel every `block` rows. */
static void forward_rows(const float *x, const float *k, const float *bias,
                         const struct cv_conv2d_geom *g, const struct corr2d_dims *d, float *y,
                         int64_t lo, int64_t hi, int64_t block, const atomic_bool *cancel) {
    for (int64_t b = lo; b < hi && !cancelled(cancel); b += block) {
        const int64_t end = hi - b > block ? b + block : hi;
        for (int64_t r = b; r < end; r++)
            forward_row(x, k, bias, g, d, y, r);
    }
}

int cv_corr2d_forward(const struct cv_tensor *x, const struct cv_tensor *k, const float *bias,
                      const struct cv_conv2d_geom *g, struct cv_tensor *y, int n_threads) {
    return cv_corr2d_forward_cancellable(x, k, bias, g, y, n_threads, NULL);
}

int cv_corr2d_forward_cancellable(const struct cv_tensor *x, const struct cv_tensor *k,
                                  const float *bias, const struct cv_conv2d_geom *g,
                                  struct cv_tensor *y, int n_threads, const atomic_bool *cancel) {
    return cv_corr2d_forward_ws(x, k, bias, g, y, n_threads, cancel, NULL);
}

int cv_corr2d_forward_ws(const struct cv_tensor *x, const struct cv_tensor *k, const float *bias,
                         const struct cv_conv2d_geom *g, struct cv_tensor *y, int n_threads,
                         const atomic_bool *cancel, struct cv_corr2d_workspace *ws) {
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
    const struct cv__isa *isa = cv__isa_active();
    if (isa != NULL && g->stride_w == 1) {
        struct cv__corr_op op = {
            .src = x->data,
            .n = d.n,
            .sc = d.c,
            .src_h = d.h,
            .src_w = d.w,
            .w = k->data,
            .w_os = d.c * d.kh * d.kw,
            .w_cs = d.kh * d.kw,
            .w_as = d.kw,
            .w_bs = 1,
            .kh = d.kh,
            .kw = d.kw,
            .bias = bias,
            .dst = y->data,
            .dc = d.co,
            .dst_h = d.oh,
            .dst_w = d.ow,
            .off_h = -g->pad_top,
            .off_w = -g->pad_left,
            .stride_h = g->stride_h,
            .dil_h = g->dil_h,
            .dil_w = g->dil_w,
        };
        if (corr_dispatch(isa, &op, macs, n_threads, cancel, ws))
            return cancelled(cancel) ? CV_ECANCELED : CV_OK;
    }
    if (cancel == NULL) { /* the loops as they always were */
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
    const int64_t block = cancel_block(macs, rows);
    const int nt = team_size(macs, rows, n_threads);
    if (nt == 1) {
        forward_rows(x->data, k->data, bias, g, &d, y->data, 0, rows, block, cancel);
    } else {
#pragma omp parallel num_threads(nt)
        {
            const int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();
            forward_rows(x->data, k->data, bias, g, &d, y->data, rows * t / nth,
                         rows * (t + 1) / nth, block, cancel);
        }
    }
    return cancelled(cancel) ? CV_ECANCELED : CV_OK;
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
    return cv_corr2d_backward_input_ws(dy, k, g, dx, n_threads, NULL);
}

int cv_corr2d_backward_input_ws(const struct cv_tensor *dy, const struct cv_tensor *k,
                                const struct cv_conv2d_geom *g, struct cv_tensor *dx, int n_threads,
                                struct cv_corr2d_workspace *ws) {
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
    const struct cv__isa *isa = cv__isa_active();
    if (isa != NULL && g->stride_h == 1 && g->stride_w == 1) {
        /* dX is the full correlation of dY with the kernel flipped in both axes and its
         * channel axes swapped: w(c, o, a, b) = K[o, c, kh-1-a, kw-1-b]. */
        struct cv__corr_op op = {
            .src = dy->data,
            .n = d.n,
            .sc = d.co,
            .src_h = d.oh,
            .src_w = d.ow,
            .w = k->data + (d.kh - 1) * d.kw + (d.kw - 1),
            .w_os = d.kh * d.kw,
            .w_cs = d.c * d.kh * d.kw,
            .w_as = -d.kw,
            .w_bs = -1,
            .kh = d.kh,
            .kw = d.kw,
            .bias = NULL,
            .dst = dx->data,
            .dc = d.c,
            .dst_h = d.h,
            .dst_w = d.w,
            .off_h = g->pad_top - (d.kh - 1) * g->dil_h,
            .off_w = g->pad_left - (d.kw - 1) * g->dil_w,
            .stride_h = 1,
            .dil_h = g->dil_h,
            .dil_w = g->dil_w,
        };
        if (corr_dispatch(isa, &op, macs, n_threads, NULL, ws))
            return CV_OK;
    }
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

/* Runs a bk op: the work is cut into units (a group of output channels x one input channel)
 * and, when there are few units, each unit's rows into fixed chunks whose double partial sums
 * (on this stack) are added in chunk order. Thread-count independent. */
static void bk_parallel(const struct cv__isa *isa, struct cv__bk_op *op, int64_t macs,
                        int n_threads) {
    const int64_t per_chunk = op->co * op->c * op->kh * op->kw + (op->dbias != NULL ? op->co : 0);
    const int64_t units = isa->bk_units(op);
    int64_t chunks = units >= 16 ? 1 : (CV__BK_CHUNKS_MAX + units - 1) / units;
    if (chunks > CV__BK_CHUNKS_MAX)
        chunks = CV__BK_CHUNKS_MAX;
    while (chunks > 1 && chunks * per_chunk > CV__BK_PARTIAL_DOUBLES)
        chunks--;
    if (chunks > op->n * op->oh)
        chunks = op->n * op->oh;
    double part[CV__BK_PARTIAL_DOUBLES];
    op->chunks = chunks;
    op->part = chunks > 1 ? part : NULL;
    const int64_t items = units * chunks;
    const int nt = team_size(macs, items, n_threads);
    if (nt == 1) {
        isa->bk_run(op, 0, items);
    } else {
#pragma omp parallel num_threads(nt)
        {
            const int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();
            isa->bk_run(op, items * t / nth, items * (t + 1) / nth);
        }
    }
    if (chunks > 1) {
        const int64_t ndk = op->co * op->c * op->kh * op->kw;
        for (int64_t e = 0; e < per_chunk; e++) {
            double s = 0.0;
            for (int64_t ch = 0; ch < chunks; ch++)
                s += part[ch * per_chunk + e];
            if (e < ndk)
                op->dk[e] = (float)s;
            else
                op->dbias[e - ndk] = (float)s;
        }
    }
}

/* dbias[o] = sum of dY over images and pixels, in double: one pass over dY, cheap next to dK,
 * so it stays serial. */
static void bias_gradient(const struct cv__isa *isa, const float *dy, const struct corr2d_dims *d,
                          float *dbias) {
    const int64_t plane = d->oh * d->ow;
    for (int64_t o = 0; o < d->co; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < d->n; n++) {
            const float *p = dy + (n * d->co + o) * plane;
            if (isa != NULL) {
                acc += isa->sum(p, plane);
            } else {
                for (int64_t q = 0; q < plane; q++)
                    acc += p[q];
            }
        }
        dbias[o] = (float)acc;
    }
}

/* Runs the Winograd kernel-gradient units of op, one contiguous block per thread. */
static void wk_parallel(const struct cv__isa *isa, const struct cv__bk_op *op, int64_t macs,
                        int n_threads) {
    const int64_t units = isa->wk_units(op);
    const int nt = team_size(macs, units, n_threads);
    if (nt == 1) {
        isa->wk_run(op, 0, units);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();
        isa->wk_run(op, units * t / nth, units * (t + 1) / nth);
    }
}

/* Runs the Winograd F(4x4, 3x3) kernel-gradient items of op, one contiguous block per thread,
 * each thread with its scratch in a workspace allocated here (with the slots' partial sums when
 * there are several, added here in slot order); false (nothing done) when the workspace cannot
 * be allocated. */
static bool wk4_parallel(const struct cv__isa *isa, struct cv__bk_op *op, int64_t macs,
                         int n_threads, struct cv_corr2d_workspace *wsp) {
    const int64_t items = isa->wk4_items(op), slots = isa->wk4_slots(op);
    const int nt = team_size(macs, items, n_threads);
    const int64_t per = (isa->wk4_scratch_floats(op) + 15) / 16 * 16; /* 64-byte blocks */
    const int64_t ndk = op->co * op->c * 9;
    const int64_t part_floats = slots > 1 ? 2 * slots * ndk : 0; /* doubles */
    bool owned;
    float *ws = scratch_get(wsp, (size_t)(per * nt + part_floats) * sizeof(float), &owned);
    if (ws == NULL)
        return false;
    op->chunks = slots;
    op->part = slots > 1 ? (double *)(ws + per * nt) : NULL;
    if (nt == 1) {
        isa->wk4_run(op, ws, 0, items);
    } else {
#pragma omp parallel num_threads(nt)
        {
            const int64_t t = omp_get_thread_num(), nth = omp_get_num_threads();
            isa->wk4_run(op, ws + per * t, items * t / nth, items * (t + 1) / nth);
        }
    }
    if (slots > 1)
        for (int64_t e = 0; e < ndk; e++) {
            double s = 0.0;
            for (int64_t q = 0; q < slots; q++)
                s += op->part[q * ndk + e];
            op->dk[e] = (float)s;
        }
    if (owned)
        free(ws);
    return true;
}

int cv_corr2d_backward_kernel(const struct cv_tensor *x, const struct cv_tensor *dy,
                              const struct cv_conv2d_geom *g, struct cv_tensor *dk, float *dbias,
                              int n_threads) {
    return cv_corr2d_backward_kernel_ws(x, dy, g, dk, dbias, n_threads, NULL);
}

int cv_corr2d_backward_kernel_ws(const struct cv_tensor *x, const struct cv_tensor *dy,
                                 const struct cv_conv2d_geom *g, struct cv_tensor *dk, float *dbias,
                                 int n_threads, struct cv_corr2d_workspace *ws) {
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
    const struct cv__isa *isa = cv__isa_active();
    struct cv__bk_op op = {
        .x = x->data,
        .n = d.n,
        .c = d.c,
        .h = d.h,
        .w = d.w,
        .dy = dy->data,
        .co = d.co,
        .oh = d.oh,
        .ow = d.ow,
        .kh = d.kh,
        .kw = d.kw,
        .pad_top = g->pad_top,
        .pad_left = g->pad_left,
        .stride_h = g->stride_h,
        .dil_h = g->dil_h,
        .dil_w = g->dil_w,
        .dk = dk->data,
        .dbias = dbias,
    };
    if (isa != NULL && g->stride_w == 1 && isa->wk4_fits(&op) &&
        wk4_parallel(isa, &op, macs, n_threads, ws)) {
        if (dbias != NULL)
            bias_gradient(isa, dy->data, &d, dbias);
        return CV_OK;
    }
    if (isa != NULL && g->stride_w == 1 && isa->wk_fits(&op)) {
        wk_parallel(isa, &op, macs, n_threads);
        if (dbias != NULL)
            bias_gradient(isa, dy->data, &d, dbias);
        return CV_OK;
    }
    if (isa != NULL && g->stride_w == 1 && isa->bk_fits(&op)) {
        bk_parallel(isa, &op, macs, n_threads);
        return CV_OK; /* dK and dbias */
    }
    if (run_serial(macs, n_threads)) {
        for (int64_t e = 0; e < entries; e++)
            dk->data[e] = backward_kernel_entry(x->data, dy->data, g, &d, e);
    } else {
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t e = 0; e < entries; e++)
            dk->data[e] = backward_kernel_entry(x->data, dy->data, g, &d, e);
    }
    if (dbias != NULL)
        bias_gradient(isa, dy->data, &d, dbias);
    return CV_OK;
}
