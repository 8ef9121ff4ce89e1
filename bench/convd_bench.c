/* convd-bench: times the compute layer alone (no HTTP, no JSON parsing of tensors).
 *
 *   convd-bench corr2d --input N,C,H,W --kernel Cout,C,kh,kw [--padding P] [--stride S]
 *                      [--dilation D] [--threads T] [--mode fwd|fwd+bwd|bwdk] [--impl fast|naive]
 *                      [--isa auto|generic|portable|avx2|avx512] [--repeats R] [--warmup W]
 *                      [--cancellable] [--json]
 *   convd-bench train  --input N,C,H,W --kernel Cout,C,kh,kw [--bias] [--padding P]
 *                      [--steps S] [--threads T] [--loss mse|sse] [--lr LR] [--isa ...] [--json]
 *   convd-bench peak   [--threads T] [--json]     (the FMA peak, GFLOP/s)
 *   convd-bench triad  [--threads T] [--json]     (STREAM triad bandwidth, GB/s)
 *   convd-bench accuracy --input N,C,H,W --kernel Cout,C,kh,kw [--padding P] [--isa ...]
 *                      (errors of forward, dX and dK against the double reference)
 *
 * corr2d prints the median, min and max over the repeats of one pass (fwd: the forward pass;
 * fwd+bwd: forward, input gradient and kernel gradient; bwdk: the kernel gradient alone, dK
 * from X and a given dY, no bias) and GFLOP/s from the median (2 flops per multiply-add). X, K
 * and dY are filled as bench/fill.h says, and the JSON line carries the check sums of Y (fwd)
 * or dK (bwdk), so bench/report.py can compare them with the other libraries' outputs. `--impl
 * naive` times the plain direct loop below instead of convd's kernels: the baseline they are
 * compared with. train runs cv_train_run (SGD) on random data and prints ms_per_step, the median
 * over the steps of the time between step callbacks (median_ms is the same number). With --json the
 * result is one JSON line on stdout. */
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "convd/corr2d.h"
#include "convd/loss.h"
#include "convd/optim.h"
#include "convd/ref.h"
#include "convd/status.h"
#include "convd/tensor.h"
#include "convd/train.h"
#include "fill.h"
#include "peak.h"

/* ---- options ------------------------------------------------------------------------------ */

struct bench_opts {
    const char *cmd;
    int64_t in[4], ker[4];
    int64_t padding, stride, dilation;
    int threads;
    bool fwd_bwd;     /* --mode fwd+bwd */
    bool bwdk;        /* --mode bwdk */
    bool naive;       /* --impl naive */
    bool cancellable; /* --cancellable: the forward pass polls a cancel flag (never set) */
    enum cv_corr2d_isa isa;
    int repeats; /* 0: until ~0.5 s have passed (at least 5, at most 200) */
    int warmup;  /* untimed passes first */
    bool bias;
    int32_t steps;
    enum cv_loss_kind loss;
    float lr;
    bool json;
};

static void usage(void) {
    fprintf(stderr,
            "usage: convd-bench corr2d --input N,C,H,W --kernel Cout,C,kh,kw [--padding P]\n"
            "         [--stride S] [--dilation D] [--threads T] [--mode fwd|fwd+bwd|bwdk]\n"
            "         [--impl fast|naive] [--isa auto|generic|portable|avx2|avx512]\n"
            "         [--repeats R] [--warmup W] [--cancellable] [--json]\n"
            "       convd-bench train --input N,C,H,W --kernel Cout,C,kh,kw [--bias]\n"
            "         [--padding P] [--steps S] [--threads T] [--loss mse|sse] [--lr LR]\n"
            "         [--isa ...] [--json]\n"
            "       convd-bench peak [--threads T] [--json]   (the FMA peak, GFLOP/s)\n"
            "       convd-bench triad [--threads T] [--json]  (triad bandwidth, GB/s)\n"
            "       convd-bench accuracy --input N,C,H,W --kernel Cout,C,kh,kw [--padding P]\n"
            "         [--isa ...]   (errors against the double reference, JSON)\n");
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    const long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_isa(const char *s, enum cv_corr2d_isa *out) {
    for (int q = CV_CORR2D_ISA_AUTO; q <= CV_CORR2D_ISA_AVX512; q++) {
        if (strcmp(s, cv_corr2d_isa_name((enum cv_corr2d_isa)q)) == 0) {
            *out = (enum cv_corr2d_isa)q;
            return true;
        }
    }
    return false;
}

static bool parse_opts(int argc, char **argv, struct bench_opts *o) {
    *o = (struct bench_opts){.padding = 0,
                             .stride = 1,
                             .dilation = 1,
                             .threads = 1,
                             .warmup = 2,
                             .isa = CV_CORR2D_ISA_AUTO,
                             .steps = 50,
                             .loss = CV_LOSS_KIND_MSE,
                             .lr = 0.01f};
    if (argc < 2)
        return false;
    o->cmd = argv[1];
    const bool peak = strcmp(o->cmd, "peak") == 0 || strcmp(o->cmd, "triad") == 0;
    if (strcmp(o->cmd, "corr2d") != 0 && strcmp(o->cmd, "train") != 0 &&
        strcmp(o->cmd, "accuracy") != 0 && !peak)
        return false;
    bool have_in = false, have_ker = false;
    for (int q = 2; q < argc; q++) {
        const char *a = argv[q];
        const char *v = q + 1 < argc ? argv[q + 1] : NULL;
        long long n;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--bias") == 0) {
            o->bias = true;
        } else if (strcmp(a, "--cancellable") == 0) {
            o->cancellable = true;
        } else if (v == NULL) {
            return false;
        } else if (strcmp(a, "--input") == 0) {
            if (!cv_bench_parse_dims(v, o->in))
                return false;
            have_in = true, q++;
        } else if (strcmp(a, "--kernel") == 0) {
            if (!cv_bench_parse_dims(v, o->ker))
                return false;
            have_ker = true, q++;
        } else if (strcmp(a, "--padding") == 0 && parse_int(v, 0, 1 << 20, &n)) {
            o->padding = n, q++;
        } else if (strcmp(a, "--stride") == 0 && parse_int(v, 1, 1 << 20, &n)) {
            o->stride = n, q++;
        } else if (strcmp(a, "--dilation") == 0 && parse_int(v, 1, 1 << 20, &n)) {
            o->dilation = n, q++;
        } else if (strcmp(a, "--threads") == 0 && parse_int(v, 1, 1024, &n)) {
            o->threads = (int)n, q++;
        } else if (strcmp(a, "--repeats") == 0 && parse_int(v, 1, 100000, &n)) {
            o->repeats = (int)n, q++;
        } else if (strcmp(a, "--warmup") == 0 && parse_int(v, 0, 1000, &n)) {
            o->warmup = (int)n, q++;
        } else if (strcmp(a, "--steps") == 0 && parse_int(v, 1, 1000000, &n)) {
            o->steps = (int32_t)n, q++;
        } else if (strcmp(a, "--mode") == 0 &&
                   (strcmp(v, "fwd") == 0 || strcmp(v, "fwd+bwd") == 0 || strcmp(v, "bwdk") == 0)) {
            o->fwd_bwd = strcmp(v, "fwd+bwd") == 0, q++;
            o->bwdk = strcmp(v, "bwdk") == 0;
        } else if (strcmp(a, "--impl") == 0 &&
                   (strcmp(v, "fast") == 0 || strcmp(v, "naive") == 0)) {
            o->naive = strcmp(v, "naive") == 0, q++;
        } else if (strcmp(a, "--isa") == 0 && parse_isa(v, &o->isa)) {
            q++;
        } else if (strcmp(a, "--loss") == 0 && cv_loss_kind_parse(v, &o->loss) == CV_OK) {
            q++;
        } else if (strcmp(a, "--lr") == 0) {
            o->lr = strtof(v, NULL), q++;
        } else {
            return false;
        }
    }
    return peak || (have_in && have_ker && o->in[1] == o->ker[1]);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x5eedbe4c4ULL;

static float rng_float(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)((double)(z >> 40) * 0x1p-24 * 2.0 - 1.0);
}

static int tensor_random(struct cv_tensor *t, const int64_t d[4]) {
    int st = cv_tensor_init(t, d[0], d[1], d[2], d[3]);
    if (st != CV_OK)
        return st;
    for (int64_t q = 0; q < cv_tensor_numel(t); q++)
        t->data[q] = rng_float();
    return CV_OK;
}

/* A tensor of shape d filled as bench/fill.h says (the inputs every library gets). */
static int tensor_shared(struct cv_tensor *t, const int64_t d[4], uint32_t seed) {
    int st = cv_tensor_init(t, d[0], d[1], d[2], d[3]);
    if (st != CV_OK)
        return st;
    cv_bench_fill_n(t->data, (uint64_t)cv_tensor_numel(t), seed);
    return CV_OK;
}

static struct cv_conv2d_geom geom_of(const struct bench_opts *o) {
    struct cv_conv2d_geom g = cv_conv2d_geom_default();
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = o->padding;
    g.stride_h = g.stride_w = o->stride;
    g.dil_h = g.dil_w = o->dilation;
    return g;
}

static void print_dims(const char *key, const int64_t d[4]) {
    printf("\"%s\":[%lld,%lld,%lld,%lld]", key, (long long)d[0], (long long)d[1], (long long)d[2],
           (long long)d[3]);
}

/* ---- the naive baseline ------------------------------------------------------------------- */

/* The definition of corr2d.h as a plain direct loop with a bounds check per tap, output rows
 * shared among the threads: what a first C version looks like. */
static void naive_forward(const struct cv_tensor *x, const struct cv_tensor *k,
                          const struct cv_conv2d_geom *g, struct cv_tensor *y, int threads) {
    const int64_t rows = y->n * y->c * y->h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t i = r % y->h, o = (r / y->h) % y->c, n = r / (y->h * y->c);
        for (int64_t j = 0; j < y->w; j++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < x->c; c++)
                for (int64_t a = 0; a < k->h; a++)
                    for (int64_t b = 0; b < k->w; b++) {
                        const int64_t xr = i * g->stride_h + a * g->dil_h - g->pad_top;
                        const int64_t xc = j * g->stride_w + b * g->dil_w - g->pad_left;
                        if (xr >= 0 && xr < x->h && xc >= 0 && xc < x->w)
                            acc += x->data[((n * x->c + c) * x->h + xr) * x->w + xc] *
                                   k->data[((o * k->c + c) * k->h + a) * k->w + b];
                    }
            y->data[r * y->w + j] = acc;
        }
    }
}

/* dX and dK by the same loops, each output element owned by one thread. */
static void naive_backward(const struct cv_tensor *x, const struct cv_tensor *k,
                           const struct cv_conv2d_geom *g, const struct cv_tensor *dy,
                           struct cv_tensor *dx, struct cv_tensor *dk, int threads) {
    const int64_t xrows = x->n * x->c * x->h;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < xrows; r++) {
        const int64_t xr = r % x->h, c = (r / x->h) % x->c, n = r / (x->h * x->c);
        for (int64_t xc = 0; xc < x->w; xc++) {
            float acc = 0.0f;
            for (int64_t o = 0; o < k->n; o++)
                for (int64_t a = 0; a < k->h; a++)
                    for (int64_t b = 0; b < k->w; b++) {
                        const int64_t ti = xr + g->pad_top - a * g->dil_h;
                        const int64_t tj = xc + g->pad_left - b * g->dil_w;
                        if (ti < 0 || tj < 0 || ti % g->stride_h != 0 || tj % g->stride_w != 0)
                            continue;
                        const int64_t i = ti / g->stride_h, j = tj / g->stride_w;
                        if (i < dy->h && j < dy->w)
                            acc += dy->data[((n * dy->c + o) * dy->h + i) * dy->w + j] *
                                   k->data[((o * k->c + c) * k->h + a) * k->w + b];
                    }
            dx->data[r * x->w + xc] = acc;
        }
    }
    const int64_t entries = cv_tensor_numel(k);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t e = 0; e < entries; e++) {
        const int64_t b = e % k->w, a = (e / k->w) % k->h, c = (e / (k->w * k->h)) % k->c;
        const int64_t o = e / (k->w * k->h * k->c);
        double acc = 0.0;
        for (int64_t n = 0; n < x->n; n++)
            for (int64_t i = 0; i < dy->h; i++)
                for (int64_t j = 0; j < dy->w; j++) {
                    const int64_t xr = i * g->stride_h + a * g->dil_h - g->pad_top;
                    const int64_t xc = j * g->stride_w + b * g->dil_w - g->pad_left;
                    if (xr >= 0 && xr < x->h && xc >= 0 && xc < x->w)
                        acc += dy->data[((n * dy->c + o) * dy->h + i) * dy->w + j] *
                               x->data[((n * x->c + c) * x->h + xr) * x->w + xc];
                }
        dk->data[e] = (float)acc;
    }
}

/* ---- corr2d ------------------------------------------------------------------------------- */

static int bench_corr2d(const struct bench_opts *o) {
    const struct cv_conv2d_geom g = geom_of(o);
    int64_t oh, ow;
    int st = cv_corr2d_out_shape(o->in[2], o->in[3], o->ker[2], o->ker[3], &g, &oh, &ow);
    if (st != CV_OK) {
        fprintf(stderr, "convd-bench: %s\n", cv_status_str(st));
        return 2;
    }
    struct cv_tensor x, k, y, dx = {0}, dk = {0};
    const int64_t yd[4] = {o->in[0], o->ker[0], oh, ow};
    if (tensor_shared(&x, o->in, CV_BENCH_SEED_X) != CV_OK ||
        tensor_shared(&k, o->ker, CV_BENCH_SEED_K) != CV_OK ||
        tensor_shared(&y, yd, CV_BENCH_SEED_DY) != CV_OK ||
        ((o->fwd_bwd || o->bwdk) &&
         (cv_tensor_init(&dx, o->in[0], o->in[1], o->in[2], o->in[3]) != CV_OK ||
          cv_tensor_init(&dk, o->ker[0], o->ker[1], o->ker[2], o->ker[3]) != CV_OK))) {
        fprintf(stderr, "convd-bench: out of memory\n");
        return 2;
    }
    float *bias = calloc((size_t)o->ker[0], sizeof(float));
    float *dbias = calloc((size_t)o->ker[0], sizeof(float));
    const int cap = 200;
    double *t = malloc(cap * sizeof(double));
    if (bias == NULL || dbias == NULL || t == NULL) {
        fprintf(stderr, "convd-bench: out of memory\n");
        return 2;
    }
    int n = 0;
    /* Kept across the calls, as a training job keeps its own (corr2d.h, "Scratch"). */
    struct cv_corr2d_workspace ws;
    cv_corr2d_workspace_init(&ws);
    const double t_start = cv_bench_now_ms();
    for (int rep = -o->warmup; n < cap; rep++) { /* untimed warm-up passes first */
        const double t0 = cv_bench_now_ms();
        if (o->naive) {
            if (!o->bwdk)
                naive_forward(&x, &k, &g, &y, o->threads);
            if (o->fwd_bwd || o->bwdk)
                naive_backward(&x, &k, &g, &y, &dx, &dk, o->threads);
        } else if (o->bwdk) {
            st = cv_corr2d_backward_kernel_ws(&x, &y, &g, &dk, NULL, o->threads, &ws);
            if (st != CV_OK) {
                fprintf(stderr, "convd-bench: %s\n", cv_status_str(st));
                return 2;
            }
        } else {
            static atomic_bool never; /* what the daemon polls; never set here */
            st = cv_corr2d_forward_ws(&x, &k, bias, &g, &y, o->threads,
                                      o->cancellable ? &never : NULL, &ws);
            if (st == CV_OK && o->fwd_bwd)
                st = cv_corr2d_backward_input_ws(&y, &k, &g, &dx, o->threads, &ws);
            if (st == CV_OK && o->fwd_bwd)
                st = cv_corr2d_backward_kernel_ws(&x, &y, &g, &dk, dbias, o->threads, &ws);
            if (st != CV_OK) {
                fprintf(stderr, "convd-bench: %s\n", cv_status_str(st));
                return 2;
            }
        }
        const double t1 = cv_bench_now_ms();
        if (rep < 0)
            continue;
        t[n++] = t1 - t0;
        if (o->repeats > 0 ? n >= o->repeats : (n >= 5 && t1 - t_start >= 500.0))
            break;
    }
    cv_corr2d_workspace_free(&ws);
    const double med = cv_bench_median(t, n);
    const double macs =
        (double)(o->in[0] * o->ker[0] * oh * ow) * (double)(o->ker[1] * o->ker[2] * o->ker[3]);
    const double flops = 2.0 * macs * (o->fwd_bwd ? 3.0 : 1.0);
    const char *impl = o->naive ? "naive" : "fast";
    const char *mode = o->bwdk ? "bwdk" : o->fwd_bwd ? "fwd+bwd" : "fwd";
    double check[3] = {0.0, 0.0, 0.0}; /* of Y (fwd) or dK (bwdk); fwd+bwd: none */
    if (o->bwdk)
        cv_bench_check(dk.data, (uint64_t)cv_tensor_numel(&dk), check);
    else if (!o->fwd_bwd)
        cv_bench_check(y.data, (uint64_t)cv_tensor_numel(&y), check);
    const char *isa = o->naive ? "none" : cv_corr2d_isa_name(cv_corr2d_get_isa());
    if (o->json) {
        printf("{\"bench\":\"corr2d\",\"impl\":\"%s\",\"isa\":\"%s\",", impl, isa);
        print_dims("input", o->in);
        putchar(',');
        print_dims("kernel", o->ker);
        printf(",\"padding\":%lld,\"stride\":%lld,\"dilation\":%lld,\"threads\":%d,"
               "\"mode\":\"%s\",\"repeats\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,"
               "\"max_ms\":%.4f,\"gflops\":%.2f,\"check\":[%.9g,%.9g,%.9g]}\n",
               (long long)o->padding, (long long)o->stride, (long long)o->dilation, o->threads,
               mode, n, med, t[0], t[n - 1], flops / med * 1e-6, check[0], check[1], check[2]);
    } else {
        printf("corr2d %s (%s) %s: median %.3f ms, min %.3f, max %.3f over %d; %.1f GFLOP/s\n",
               impl, isa, mode, med, t[0], t[n - 1], n, flops / med * 1e-6);
    }
    cv_tensor_free(&x), cv_tensor_free(&k), cv_tensor_free(&y);
    cv_tensor_free(&dx), cv_tensor_free(&dk);
    free(bias), free(dbias), free(t);
    return 0;
}

/* ---- train -------------------------------------------------------------------------------- */

struct step_clock {
    double last;
    double *dt;
    int32_t n;
};

static bool on_step(const struct cv_train_step *s, void *user) {
    struct step_clock *c = user;
    const double t = cv_bench_now_ms();
    c->dt[c->n++] = t - c->last;
    c->last = t;
    (void)s;
    return true;
}

static int bench_train(const struct bench_opts *o) {
    struct cv_train_params p = {0};
    p.geom = geom_of(o);
    p.loss = o->loss;
    p.optim = cv_optim_params_default(CV_OPTIM_KIND_SGD);
    p.optim.lr = o->lr;
    p.steps = o->steps;
    p.use_bias = o->bias;
    p.n_threads = o->threads;
    int64_t oh, ow;
    int st = cv_corr2d_out_shape(o->in[2], o->in[3], o->ker[2], o->ker[3], &p.geom, &oh, &ow);
    if (st != CV_OK) {
        fprintf(stderr, "convd-bench: %s\n", cv_status_str(st));
        return 2;
    }
    /* Y is what a random "true" kernel makes of X; training starts from PyTorch's init. */
    struct cv_tensor x, ktrue, y, w;
    const int64_t yd[4] = {o->in[0], o->ker[0], oh, ow};
    float *btrue = calloc((size_t)o->ker[0], sizeof(float));
    float *bias = calloc((size_t)o->ker[0], sizeof(float));
    struct step_clock clk = {.dt = malloc((size_t)o->steps * sizeof(double))};
    if (tensor_random(&x, o->in) != CV_OK || tensor_random(&ktrue, o->ker) != CV_OK ||
        tensor_random(&y, yd) != CV_OK || tensor_random(&w, o->ker) != CV_OK || btrue == NULL ||
        bias == NULL || clk.dt == NULL) {
        fprintf(stderr, "convd-bench: out of memory\n");
        return 2;
    }
    for (int64_t q = 0; q < o->ker[0]; q++)
        btrue[q] = 0.1f * rng_float();
    cv_corr2d_forward(&x, &ktrue, o->bias ? btrue : NULL, &p.geom, &y, o->threads);
    cv_train_init_uniform(&w, o->bias ? bias : NULL, 42);
    struct cv_train_result res;
    clk.last = cv_bench_now_ms();
    const double t0 = clk.last;
    st = cv_train_run(&p, &x, &y, &w, o->bias ? bias : NULL, on_step, &clk, &res);
    const double total = cv_bench_now_ms() - t0;
    if (st != CV_OK || clk.n < 1) {
        fprintf(stderr, "convd-bench: training stopped: %s\n", cv_status_str(st));
        return 2;
    }
    const double med = cv_bench_median(clk.dt, clk.n);
    const char *isa = cv_corr2d_isa_name(cv_corr2d_get_isa());
    if (o->json) {
        printf("{\"bench\":\"train\",\"impl\":\"fast\",\"isa\":\"%s\",", isa);
        print_dims("input", o->in);
        putchar(',');
        print_dims("kernel", o->ker);
        printf(",\"padding\":%lld,\"bias\":%s,\"loss\":\"%s\",\"optim\":\"sgd\",\"threads\":%d,"
               "\"steps\":%d,\"ms_per_step\":%.4f,\"median_ms\":%.4f,\"min_ms\":%.4f,"
               "\"max_ms\":%.4f,\"total_ms\":%.3f,\"last_loss\":%.6g,\"final_loss\":%.6g}\n",
               (long long)o->padding, o->bias ? "true" : "false", cv_loss_kind_name(o->loss),
               o->threads, clk.n, med, med, clk.dt[0], clk.dt[clk.n - 1], total,
               res.steps_done > 0 ? res.last_loss : NAN, res.final_loss);
    } else {
        printf("train (%s): %.4f ms/step (median of %d), min %.4f, max %.4f; loss %.6g\n", isa, med,
               clk.n, clk.dt[0], clk.dt[clk.n - 1], res.final_loss);
    }
    cv_tensor_free(&x), cv_tensor_free(&ktrue), cv_tensor_free(&y), cv_tensor_free(&w);
    free(btrue), free(bias), free(clk.dt);
    return 0;
}

/* The FMA peak over ~0.5 s: the ceiling of this run, measured beside the kernels. */
static int bench_peak(const struct bench_opts *o) {
    const char *isa;
    const double gflops = cv_bench_peak_gflops(o->threads, 0.5, &isa);
    if (o->json)
        printf("{\"bench\":\"peak\",\"isa\":\"%s\",\"threads\":%d,\"gflops\":%.1f}\n", isa,
               o->threads, gflops);
    else
        printf("peak (%s, %d threads): %.1f GFLOP/s\n", isa, o->threads, gflops);
    return 0;
}

/* max |got - want| / scale (scale: the sum of |terms| behind want) and the relative RMS error
 * ||got - want|| / ||want|| of n values. */
static void errors_of(const float *got, const double *want, const double *scale, int64_t n,
                      double *max_scaled, double *rel_rms) {
    double m = 0.0, e2 = 0.0, w2 = 0.0;
    for (int64_t q = 0; q < n; q++) {
        const double d = (double)got[q] - want[q];
        if (scale[q] > 0.0 && fabs(d) / scale[q] > m)
            m = fabs(d) / scale[q];
        e2 += d * d, w2 += want[q] * want[q];
    }
    *max_scaled = m;
    *rel_rms = w2 > 0.0 ? sqrt(e2 / w2) : 0.0;
}

static double *doubles_of(const float *v, int64_t n, bool absolute) {
    double *d = malloc((size_t)n * sizeof(double));
    if (d != NULL)
        for (int64_t q = 0; q < n; q++)
            d[q] = absolute ? fabs((double)v[q]) : (double)v[q];
    return d;
}

/* Forward (with a bias), dX and dK of the shared inputs (bench/fill.h) on the kernels picked
 * for this shape, against cv_ref_* in double: the accuracy of whichever paths they take (the
 * unit tests hold every path to 1e-5 of the sum of |terms|). */
static int bench_accuracy(const struct bench_opts *o) {
    const struct cv_conv2d_geom g = geom_of(o);
    int64_t oh, ow;
    if (cv_corr2d_out_shape(o->in[2], o->in[3], o->ker[2], o->ker[3], &g, &oh, &ow) != CV_OK) {
        fprintf(stderr, "convd-bench: bad shape\n");
        return 2;
    }
    const int64_t yd[4] = {o->in[0], o->ker[0], oh, ow};
    struct cv_tensor x, k, dy, y, dx, dk;
    if (tensor_shared(&x, o->in, CV_BENCH_SEED_X) != CV_OK ||
        tensor_shared(&k, o->ker, CV_BENCH_SEED_K) != CV_OK ||
        tensor_shared(&dy, yd, CV_BENCH_SEED_DY) != CV_OK ||
        tensor_shared(&y, yd, CV_BENCH_SEED_W) != CV_OK ||
        tensor_shared(&dx, o->in, CV_BENCH_SEED_W) != CV_OK ||
        tensor_shared(&dk, o->ker, CV_BENCH_SEED_W) != CV_OK) {
        fprintf(stderr, "convd-bench: out of memory\n");
        return 2;
    }
    const int64_t co = o->ker[0];
    float *bias = malloc((size_t)co * sizeof(float)), *db = malloc((size_t)co * sizeof(float));
    if (bias == NULL || db == NULL)
        return 2;
    cv_bench_fill_n(bias, (uint64_t)co, CV_BENCH_SEED_W);
    if (cv_corr2d_forward(&x, &k, bias, &g, &y, o->threads) != CV_OK ||
        cv_corr2d_backward_input(&dy, &k, &g, &dx, o->threads) != CV_OK ||
        cv_corr2d_backward_kernel(&x, &dy, &g, &dk, db, o->threads) != CV_OK) {
        fprintf(stderr, "convd-bench: corr2d failed\n");
        return 2;
    }
    const int64_t nx = cv_tensor_numel(&x), nk = cv_tensor_numel(&k), ny = cv_tensor_numel(&y);
    double *xd = doubles_of(x.data, nx, false), *xa = doubles_of(x.data, nx, true);
    double *kd = doubles_of(k.data, nk, false), *ka = doubles_of(k.data, nk, true);
    double *gd = doubles_of(dy.data, ny, false), *ga = doubles_of(dy.data, ny, true);
    double *bd = doubles_of(bias, co, false), *ba = doubles_of(bias, co, true);
    double *ry = malloc((size_t)ny * sizeof(double)), *sy = malloc((size_t)ny * sizeof(double));
    double *rx = malloc((size_t)nx * sizeof(double)), *sx = malloc((size_t)nx * sizeof(double));
    double *rk = malloc((size_t)nk * sizeof(double)), *sk = malloc((size_t)nk * sizeof(double));
    if (!xd || !xa || !kd || !ka || !gd || !ga || !bd || !ba || !ry || !sy || !rx || !sx || !rk ||
        !sk) {
        fprintf(stderr, "convd-bench: out of memory\n");
        return 2;
    }
    const struct cv_ref_shape xs = {x.n, x.c, x.h, x.w}, ks = {k.n, k.c, k.h, k.w},
                              ys = {y.n, y.c, y.h, y.w};
    cv_ref_corr2d_forward(xd, xs, kd, ks, bd, &g, ry);
    cv_ref_corr2d_forward(xa, xs, ka, ks, ba, &g, sy);
    cv_ref_corr2d_backward_input(gd, ys, kd, ks, &g, rx, xs);
    cv_ref_corr2d_backward_input(ga, ys, ka, ks, &g, sx, xs);
    cv_ref_corr2d_backward_kernel(xd, xs, gd, ys, &g, rk, ks, NULL);
    cv_ref_corr2d_backward_kernel(xa, xs, ga, ys, &g, sk, ks, NULL);
    double e[3][2];
    errors_of(y.data, ry, sy, ny, &e[0][0], &e[0][1]);
    errors_of(dx.data, rx, sx, nx, &e[1][0], &e[1][1]);
    errors_of(dk.data, rk, sk, nk, &e[2][0], &e[2][1]);
    printf("{\"bench\":\"accuracy\",\"isa\":\"%s\",", cv_corr2d_isa_name(cv_corr2d_get_isa()));
    print_dims("input", o->in);
    putchar(',');
    print_dims("kernel", o->ker);
    printf(",\"padding\":%lld,\"fwd_max_scaled\":%.3g,\"fwd_rel_rms\":%.3g,"
           "\"dx_max_scaled\":%.3g,\"dx_rel_rms\":%.3g,\"dk_max_scaled\":%.3g,"
           "\"dk_rel_rms\":%.3g}\n",
           (long long)o->padding, e[0][0], e[0][1], e[1][0], e[1][1], e[2][0], e[2][1]);
    free(xd), free(xa), free(kd), free(ka), free(gd), free(ga), free(bd), free(ba);
    free(ry), free(sy), free(rx), free(sx), free(rk), free(sk), free(bias), free(db);
    cv_tensor_free(&x), cv_tensor_free(&k), cv_tensor_free(&dy);
    cv_tensor_free(&y), cv_tensor_free(&dx), cv_tensor_free(&dk);
    return 0;
}

/* The triad bandwidth over 3 x 128 MiB arrays (4x the 32 MiB L3 each): the memory roofline. */
static int bench_triad(const struct bench_opts *o) {
    const double gbs = cv_bench_triad_gbs(o->threads, (int64_t)32 << 20, 0.5);
    if (gbs <= 0.0) {
        fprintf(stderr, "convd-bench: out of memory\n");
        return 2;
    }
    if (o->json)
        printf("{\"bench\":\"triad\",\"threads\":%d,\"gbs\":%.1f}\n", o->threads, gbs);
    else
        printf("triad (%d threads): %.1f GB/s\n", o->threads, gbs);
    return 0;
}

int main(int argc, char **argv) {
    struct bench_opts o;
    if (!parse_opts(argc, argv, &o)) {
        usage();
        return 2;
    }
    if (cv_corr2d_set_isa(o.isa) != CV_OK) {
        fprintf(stderr, "convd-bench: this CPU cannot run --isa %s\n", cv_corr2d_isa_name(o.isa));
        return 2;
    }
    if (strcmp(o.cmd, "peak") == 0)
        return bench_peak(&o);
    if (strcmp(o.cmd, "triad") == 0)
        return bench_triad(&o);
    if (strcmp(o.cmd, "accuracy") == 0)
        return bench_accuracy(&o);
    return strcmp(o.cmd, "corr2d") == 0 ? bench_corr2d(&o) : bench_train(&o);
}
