/* dnnl-bench: oneDNN's side of bench/compare.sh (an anchor, not part of convd: built only when
 * Debian's libdnnl-dev is installed, see bench/packages.txt).
 *
 *   dnnl-bench conv --input N,C,H,W --kernel Cout,C,kh,kw [--padding P] [--threads T]
 *                   [--mode fwd|bwdk|train] [--alg auto|direct|winograd] [--repeats R]
 *
 * Times oneDNN's f32 convolution through its C API on the inputs every implementation of
 * compare.sh shares (bench/fill.h), and prints JSON lines with the keys of convd-bench --json:
 *
 *  - impl "onednn-<alg>": NCHW input and OIHW weights in, NCHW output out, as convd takes and
 *    gives them: the reorders into and out of the primitive's preferred (blocked) layouts are
 *    part of each timed call;
 *  - impl "onednn-<alg>-blocked": the primitive alone, on data already in its layouts (what a
 *    network that stays blocked from layer to layer pays).
 *
 * fwd is forward inference with a zero bias (convd-bench passes one too); bwdk is the weights
 * gradient alone (dK from X and dY, no bias); train is forward (with bias) then the weights and
 * bias gradients of the same layer, the convolution part of a training step. The check sums
 * (bench/fill.h) are of Y (fwd) or dK (bwdk, train), taken from the NCHW/OIHW result of the
 * timed calls. `--alg` picks one algorithm; without it all three run. An algorithm oneDNN has
 * no implementation for on this CPU and shape prints {"impl":...,"error":"unimplemented"}. */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "fill.h"

/* Aborts on a oneDNN error in setup (a bench, not a library). */
#define DN(call)                                                                                   \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success) {                                                                  \
            fprintf(stderr, "dnnl-bench: %s failed (%d)\n", #call, (int)s_);                       \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

enum mode { MODE_FWD, MODE_BWDK, MODE_TRAIN };

struct opts {
    int64_t in[4], ker[4], pad;
    int threads, repeats;
    enum mode mode;
    const char *alg; /* NULL: all */
};

static bool parse(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.threads = 1, .mode = MODE_FWD};
    if (argc < 2 || strcmp(argv[1], "conv") != 0)
        return false;
    bool have_in = false, have_ker = false;
    for (int q = 2; q + 1 < argc; q += 2) {
        const char *a = argv[q], *v = argv[q + 1];
        if (strcmp(a, "--input") == 0)
            have_in = cv_bench_parse_dims(v, o->in);
        else if (strcmp(a, "--kernel") == 0)
            have_ker = cv_bench_parse_dims(v, o->ker);
        else if (strcmp(a, "--padding") == 0)
            o->pad = atoll(v);
        else if (strcmp(a, "--threads") == 0)
            o->threads = atoi(v);
        else if (strcmp(a, "--repeats") == 0)
            o->repeats = atoi(v);
        else if (strcmp(a, "--alg") == 0)
            o->alg = v;
        else if (strcmp(a, "--mode") == 0 && strcmp(v, "fwd") == 0)
            o->mode = MODE_FWD;
        else if (strcmp(a, "--mode") == 0 && strcmp(v, "bwdk") == 0)
            o->mode = MODE_BWDK;
        else if (strcmp(a, "--mode") == 0 && strcmp(v, "train") == 0)
            o->mode = MODE_TRAIN;
        else
            return false;
    }
    return (argc % 2 == 0) && have_in && have_ker && o->in[1] == o->ker[1] && o->threads >= 1 &&
           o->pad >= 0;
}

/* A tensor as the caller holds it (plain layout, our buffer) and, when the primitive wants
 * another layout, its copy in that layout with the reorders both ways. */
struct tensor {
    dnnl_memory_desc_t user_md;
    dnnl_memory_t user, prim; /* prim == user when no reorder is needed */
    dnnl_primitive_t to_prim, to_user;
    float *data;
};

static void tensor_init(struct tensor *t, dnnl_engine_t eng, const int64_t dims[4],
                        dnnl_format_tag_t tag, const dnnl_memory_desc_t *want, int seed) {
    memset(t, 0, sizeof *t);
    dnnl_dims_t dd = {dims[0], dims[1], dims[2], dims[3]};
    DN(dnnl_memory_desc_init_by_tag(&t->user_md, 4, dd, dnnl_f32, tag));
    const size_t n = (size_t)(dims[0] * dims[1] * dims[2] * dims[3]);
    t->data = malloc(n * sizeof(float));
    if (t->data == NULL) {
        fprintf(stderr, "dnnl-bench: out of memory\n");
        exit(2);
    }
    if (seed > 0)
        cv_bench_fill_n(t->data, n, (uint32_t)seed);
    else
        memset(t->data, 0, n * sizeof(float));
    DN(dnnl_memory_create(&t->user, &t->user_md, eng, t->data));
    if (dnnl_memory_desc_equal(&t->user_md, want)) {
        t->prim = t->user;
        return;
    }
    DN(dnnl_memory_create(&t->prim, want, eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t pd;
    DN(dnnl_reorder_primitive_desc_create(&pd, &t->user_md, eng, want, eng, NULL));
    DN(dnnl_primitive_create(&t->to_prim, pd));
    dnnl_primitive_desc_destroy(pd);
    /* Back to the plain layout: results only (oneDNN has none for its Winograd weights). */
    if (dnnl_reorder_primitive_desc_create(&pd, want, eng, &t->user_md, eng, NULL) ==
        dnnl_success) {
        DN(dnnl_primitive_create(&t->to_user, pd));
        dnnl_primitive_desc_destroy(pd);
    }
}

static void reorder(dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to, dnnl_stream_t s) {
    if (r == NULL)
        return;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DN(dnnl_primitive_execute(r, s, 2, args));
}

static void tensor_in(struct tensor *t, dnnl_stream_t s) {
    reorder(t->to_prim, t->user, t->prim, s);
}

static void tensor_out(struct tensor *t, dnnl_stream_t s) {
    reorder(t->to_user, t->prim, t->user, s);
}

static void tensor_free(struct tensor *t) {
    if (t->prim != t->user)
        dnnl_memory_destroy(t->prim);
    dnnl_memory_destroy(t->user);
    if (t->to_prim != NULL)
        dnnl_primitive_destroy(t->to_prim);
    if (t->to_user != NULL)
        dnnl_primitive_destroy(t->to_user);
    free(t->data);
}

/* One timed configuration: the primitives and tensors of an algorithm. */
struct job {
    const struct opts *o;
    dnnl_stream_t s;
    dnnl_primitive_t fwd, bwdw;
    struct tensor x, xw, k, y, dy, dk; /* xw: X in the weights gradient's layout */
    dnnl_memory_t bias, dbias;
    float *bias_data, *dbias_data;
};

/* One call: with reorders, every input goes into the primitive's layout and the result comes
 * back out; blocked, the primitives alone. */
static void job_run(struct job *j, bool reorders) {
    if (j->fwd != NULL) {
        if (reorders)
            tensor_in(&j->x, j->s), tensor_in(&j->k, j->s);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, j->x.prim},
                                {DNNL_ARG_WEIGHTS, j->k.prim},
                                {DNNL_ARG_BIAS, j->bias},
                                {DNNL_ARG_DST, j->y.prim}};
        DN(dnnl_primitive_execute(j->fwd, j->s, 4, a));
        if (reorders)
            tensor_out(&j->y, j->s);
    }
    if (j->bwdw != NULL) {
        if (reorders)
            tensor_in(&j->xw, j->s), tensor_in(&j->dy, j->s);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, j->xw.prim},
                                {DNNL_ARG_DIFF_DST, j->dy.prim},
                                {DNNL_ARG_DIFF_WEIGHTS, j->dk.prim},
                                {DNNL_ARG_DIFF_BIAS, j->dbias}};
        DN(dnnl_primitive_execute(j->bwdw, j->s, j->dbias != NULL ? 4 : 3, a));
        if (reorders)
            tensor_out(&j->dk, j->s);
    }
    DN(dnnl_stream_wait(j->s));
}

static void time_job(struct job *j, bool reorders, const char *impl, const char *impl_info) {
    const struct opts *o = j->o;
    double t[200];
    int n = 0;
    const double start = cv_bench_now_ms();
    for (int rep = -2; n < 200; rep++) {
        const double t0 = cv_bench_now_ms();
        job_run(j, reorders);
        const double t1 = cv_bench_now_ms();
        if (rep < 0)
            continue;
        t[n++] = t1 - t0;
        if (o->repeats > 0 ? n >= o->repeats : (n >= 5 && t1 - start >= 500.0))
            break;
    }
    const double med = cv_bench_median(t, n);
    /* The result in its plain layout (the blocked run leaves it in the primitive's). */
    if (!reorders) {
        tensor_out(j->fwd != NULL && o->mode == MODE_FWD ? &j->y : &j->dk, j->s);
        DN(dnnl_stream_wait(j->s));
    }
    double check[3];
    const struct tensor *r = o->mode == MODE_FWD ? &j->y : &j->dk;
    const int64_t *d = o->mode == MODE_FWD ? NULL : o->ker;
    const int64_t oh = o->in[2] + 2 * o->pad - o->ker[2] + 1,
                  ow = o->in[3] + 2 * o->pad - o->ker[3] + 1;
    const uint64_t numel = d != NULL ? (uint64_t)(d[0] * d[1] * d[2] * d[3])
                                     : (uint64_t)(o->in[0] * o->ker[0] * oh * ow);
    cv_bench_check(r->data, numel, check);
    const double macs =
        (double)(o->in[0] * o->ker[0] * oh * ow) * (double)(o->ker[1] * o->ker[2] * o->ker[3]);
    const double flops = 2.0 * macs * (o->mode == MODE_TRAIN ? 2.0 : 1.0);
    const char *mode = o->mode == MODE_FWD ? "fwd" : o->mode == MODE_BWDK ? "bwdk" : "train";
    printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"onednn\":\"%d.%d.%d\",\"kernel_impl\":\"%s\","
           "\"input\":[%lld,%lld,%lld,%lld],\"kernel\":[%lld,%lld,%lld,%lld],\"padding\":%lld,"
           "\"threads\":%d,\"mode\":\"%s\",\"repeats\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,"
           "\"max_ms\":%.4f,\"gflops\":%.2f,\"check\":[%.9g,%.9g,%.9g]}\n",
           o->mode == MODE_TRAIN ? "train" : "corr2d", impl, DNNL_VERSION_MAJOR, DNNL_VERSION_MINOR,
           DNNL_VERSION_PATCH, impl_info, (long long)o->in[0], (long long)o->in[1],
           (long long)o->in[2], (long long)o->in[3], (long long)o->ker[0], (long long)o->ker[1],
           (long long)o->ker[2], (long long)o->ker[3], (long long)o->pad, o->threads, mode, n, med,
           t[0], t[n - 1], flops / med * 1e-6, check[0], check[1], check[2]);
    fflush(stdout);
}

static const dnnl_memory_desc_t *md_of(dnnl_primitive_desc_t pd, dnnl_query_t q) {
    return dnnl_primitive_desc_query_md(pd, q, 0);
}

/* Builds and times one algorithm; prints an error line when oneDNN cannot run it here. */
static void run_alg(const struct opts *o, dnnl_engine_t eng, dnnl_stream_t s, const char *name,
                    dnnl_alg_kind_t alg) {
    const int64_t oh = o->in[2] + 2 * o->pad - o->ker[2] + 1;
    const int64_t ow = o->in[3] + 2 * o->pad - o->ker[3] + 1;
    const int64_t yd[4] = {o->in[0], o->ker[0], oh, ow};
    const dnnl_dims_t xdd = {o->in[0], o->in[1], o->in[2], o->in[3]},
                      kdd = {o->ker[0], o->ker[1], o->ker[2], o->ker[3]},
                      ydd = {yd[0], yd[1], yd[2], yd[3]}, bdd = {o->ker[0]};
    const dnnl_dims_t strides = {1, 1}, pad = {o->pad, o->pad};
    dnnl_memory_desc_t x_any, k_any, y_any, b_md;
    DN(dnnl_memory_desc_init_by_tag(&x_any, 4, xdd, dnnl_f32, dnnl_format_tag_any));
    DN(dnnl_memory_desc_init_by_tag(&k_any, 4, kdd, dnnl_f32, dnnl_format_tag_any));
    DN(dnnl_memory_desc_init_by_tag(&y_any, 4, ydd, dnnl_f32, dnnl_format_tag_any));
    DN(dnnl_memory_desc_init_by_tag(&b_md, 1, bdd, dnnl_f32, dnnl_x));
    char impl[64];
    snprintf(impl, sizeof impl, "onednn-%s", name);
    const char *bench = o->mode == MODE_TRAIN ? "train" : "corr2d";
    const char *mode = o->mode == MODE_FWD ? "fwd" : o->mode == MODE_BWDK ? "bwdk" : "train";

    dnnl_convolution_desc_t fd, bd_w;
    DN(dnnl_convolution_forward_desc_init(
        &fd, o->mode == MODE_FWD ? dnnl_forward_inference : dnnl_forward_training, alg, &x_any,
        &k_any, &b_md, &y_any, strides, pad, pad));
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    if (dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL) != dnnl_success) {
        printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"mode\":\"%s\",\"error\":\"unimplemented\"}\n",
               bench, impl, mode);
        return;
    }
    const char *info = "";
    if (o->mode != MODE_FWD) {
        DN(dnnl_convolution_backward_weights_desc_init(&bd_w, alg, &x_any, &k_any,
                                                       o->mode == MODE_TRAIN ? &b_md : NULL, &y_any,
                                                       strides, pad, pad));
        if (dnnl_primitive_desc_create(&bpd, &bd_w, NULL, eng, fpd) != dnnl_success) {
            printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"mode\":\"%s\",\"error\":"
                   "\"unimplemented\"}\n",
                   bench, impl, mode);
            dnnl_primitive_desc_destroy(fpd);
            return;
        }
        DN(dnnl_primitive_desc_query(bpd, dnnl_query_impl_info_str, 0, &info));
    } else {
        DN(dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &info));
    }
    char info_copy[64];
    snprintf(info_copy, sizeof info_copy, "%s", info);
    struct job j = {.o = o, .s = s};
    if (o->mode != MODE_BWDK) {
        tensor_init(&j.x, eng, o->in, dnnl_nchw, md_of(fpd, dnnl_query_src_md), CV_BENCH_SEED_X);
        tensor_init(&j.k, eng, o->ker, dnnl_oihw, md_of(fpd, dnnl_query_weights_md),
                    CV_BENCH_SEED_K);
        tensor_init(&j.y, eng, yd, dnnl_nchw, md_of(fpd, dnnl_query_dst_md), 0);
        j.bias_data = calloc((size_t)o->ker[0], sizeof(float));
        DN(dnnl_memory_create(&j.bias, &b_md, eng, j.bias_data));
        DN(dnnl_primitive_create(&j.fwd, fpd));
    }
    if (o->mode != MODE_FWD) {
        tensor_init(&j.xw, eng, o->in, dnnl_nchw, md_of(bpd, dnnl_query_src_md), CV_BENCH_SEED_X);
        tensor_init(&j.dy, eng, yd, dnnl_nchw, md_of(bpd, dnnl_query_diff_dst_md),
                    CV_BENCH_SEED_DY);
        tensor_init(&j.dk, eng, o->ker, dnnl_oihw, md_of(bpd, dnnl_query_diff_weights_md), 0);
        if (o->mode == MODE_TRAIN) {
            j.dbias_data = calloc((size_t)o->ker[0], sizeof(float));
            DN(dnnl_memory_create(&j.dbias, &b_md, eng, j.dbias_data));
        }
        DN(dnnl_primitive_create(&j.bwdw, bpd));
    }
    /* In training X goes into the layout of each primitive (twice when they differ). */
    time_job(&j, true, impl, info_copy);
    char blocked[80];
    snprintf(blocked, sizeof blocked, "%s-blocked", impl);
    /* The blocked inputs are in place from the runs with reorders. */
    time_job(&j, false, blocked, info_copy);
    if (j.fwd != NULL) {
        dnnl_primitive_destroy(j.fwd);
        tensor_free(&j.x), tensor_free(&j.k), tensor_free(&j.y);
        dnnl_memory_destroy(j.bias);
    }
    if (j.bwdw != NULL) {
        dnnl_primitive_destroy(j.bwdw);
        tensor_free(&j.xw), tensor_free(&j.dy), tensor_free(&j.dk);
        if (j.dbias != NULL)
            dnnl_memory_destroy(j.dbias);
    }
    free(j.bias_data), free(j.dbias_data);
    dnnl_primitive_desc_destroy(fpd);
    if (bpd != NULL)
        dnnl_primitive_desc_destroy(bpd);
}

int main(int argc, char **argv) {
    struct opts o;
    if (!parse(argc, argv, &o)) {
        fprintf(stderr, "usage: dnnl-bench conv --input N,C,H,W --kernel Cout,C,kh,kw "
                        "[--padding P] [--threads T] [--mode fwd|bwdk|train] "
                        "[--alg auto|direct|winograd] [--repeats R]\n");
        return 2;
    }
    omp_set_num_threads(o.threads);
    dnnl_engine_t eng;
    dnnl_stream_t s;
    DN(dnnl_engine_create(&eng, dnnl_cpu, 0));
    DN(dnnl_stream_create(&s, eng, dnnl_stream_default_flags));
    const struct {
        const char *name;
        dnnl_alg_kind_t alg;
    } algs[] = {{"auto", dnnl_convolution_auto},
                {"direct", dnnl_convolution_direct},
                {"winograd", dnnl_convolution_winograd}};
    for (size_t q = 0; q < sizeof algs / sizeof algs[0]; q++)
        if (o.alg == NULL || strcmp(o.alg, algs[q].name) == 0)
            run_alg(&o, eng, s, algs[q].name, algs[q].alg);
    dnnl_stream_destroy(s);
    dnnl_engine_destroy(eng);
    return 0;
}
