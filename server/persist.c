/* What the server keeps in the store's blobs: a job's request (tensors as float32, settings as
 * numbers) and a training's checkpoint, encoded with the store's versioned codec. Decoding
 * checks every value it gets back (the codec already bounded every length), so a damaged blob
 * gives an error, never a crash or a huge allocation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_store_codec.h"
#include "server.h"

/* Field tags. Never reuse a number: old databases keep them. */
enum {
    T_X = 1,
    T_Y = 2,
    T_WEIGHT = 3, /* train: the start; corr2d: the kernel */
    T_BIAS = 4,
    T_GEOM = 5, /* 8 x i64 as tags 5..12 */
    T_LOSS = 20,
    T_OPTIM = 21,
    T_LR = 22,
    T_MOMENTUM = 23,
    T_BETA1 = 24,
    T_BETA2 = 25,
    T_EPS = 26,
    T_STEPS = 27,
    T_USE_BIAS = 28,
    T_HAS_STOP = 29,
    T_STOP_LOSS = 30,
    T_SEED = 31,
    T_REPORT_EVERY = 32,
    T_STREAM = 33,
    T_RANK = 34,
    T_FORM = 35,
    T_Y_SHAPE = 36, /* corr2d: 4 x i64 as tags 36..39 */
    /* checkpoint */
    C_STEP = 100,
    C_WEIGHT = 101,
    C_BIAS = 102,
    C_OPTIM_T = 103,
    C_BUF1 = 104,
    C_BUF2 = 105,
    C_LOSSES = 106,
    C_ELAPSED = 107,
};

static int geom_put(struct cv_store_rec *r, const struct cv_conv2d_geom *g) {
    const int64_t v[8] = {g->pad_top,  g->pad_bottom, g->pad_left, g->pad_right,
                          g->stride_h, g->stride_w,   g->dil_h,    g->dil_w};
    int st = CV_STORE_OK;
    for (int i = 0; i < 8 && st == CV_STORE_OK; i++)
        st = cv_store_rec_put_i64(r, T_GEOM + i, v[i]);
    return st;
}

static bool geom_get(const struct cv_store_rec *r, struct cv_conv2d_geom *g) {
    int64_t v[8];
    for (int i = 0; i < 8; i++)
        if (cv_store_rec_get_i64(r, T_GEOM + i, &v[i]) != CV_STORE_OK || v[i] < 0 ||
            v[i] > (1 << 20))
            return false;
    *g = (struct cv_conv2d_geom){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
    return g->stride_h >= 1 && g->stride_w >= 1 && g->dil_h >= 1 && g->dil_w >= 1;
}

static unsigned char *finish_rec(struct cv_store_rec *r, int st, size_t *len) {
    unsigned char *out = NULL;
    if (st == CV_STORE_OK) {
        size_t n;
        const unsigned char *b = cv_store_rec_bytes(r, &n);
        out = malloc(n);
        if (out != NULL) {
            memcpy(out, b, n);
            *len = n;
        }
    }
    cv_store_rec_free(r);
    return out;
}

unsigned char *cv_persist_train_request(const struct cv_train_request *t, size_t *len) {
    struct cv_store_rec *r;
    if (cv_store_rec_new(&r) != CV_STORE_OK)
        return NULL;
    const struct cv_train_params *p = &t->params;
    int st = cv_store_rec_put_tensor(r, T_X, &t->x);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_tensor(r, T_Y, &t->y);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_tensor(r, T_WEIGHT, &t->weight);
    if (st == CV_STORE_OK && t->bias != NULL)
        st = cv_store_rec_put_f32s(r, T_BIAS, t->bias, t->weight.n);
    if (st == CV_STORE_OK)
        st = geom_put(r, &p->geom);
    const int64_t ints[][2] = {
        {T_LOSS, p->loss},
        {T_OPTIM, p->optim.kind},
        {T_STEPS, p->steps},
        {T_USE_BIAS, p->use_bias},
        {T_HAS_STOP, p->has_stop_loss},
        {T_SEED, (int64_t)t->seed},
        {T_REPORT_EVERY, t->report_every},
        {T_STREAM, t->stream},
        {T_RANK, t->weight_rank},
        {T_FORM, t->out_form},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && st == CV_STORE_OK; i++)
        st = cv_store_rec_put_i64(r, (uint32_t)ints[i][0], ints[i][1]);
    const double reals[][2] = {
        {T_LR, p->optim.lr},       {T_MOMENTUM, p->optim.momentum}, {T_BETA1, p->optim.beta1},
        {T_BETA2, p->optim.beta2}, {T_EPS, p->optim.eps},           {T_STOP_LOSS, p->stop_loss},
    };
    for (size_t i = 0; i < sizeof reals / sizeof reals[0] && st == CV_STORE_OK; i++)
        st = cv_store_rec_put_f64(r, (uint32_t)reals[i][0], reals[i][1]);
    return finish_rec(r, st, len);
}

unsigned char *cv_persist_corr2d_request(const struct cv_corr2d_request *c, size_t *len) {
    struct cv_store_rec *r;
    if (cv_store_rec_new(&r) != CV_STORE_OK)
        return NULL;
    int st = cv_store_rec_put_tensor(r, T_X, &c->x);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_tensor(r, T_WEIGHT, &c->k);
    if (st == CV_STORE_OK && c->bias != NULL)
        st = cv_store_rec_put_f32s(r, T_BIAS, c->bias, c->k.n);
    if (st == CV_STORE_OK)
        st = geom_put(r, &c->geom);
    const int64_t ints[][2] = {{T_RANK, c->out_rank},   {T_FORM, c->out_form},
                               {T_Y_SHAPE, c->y.n},     {T_Y_SHAPE + 1, c->y.c},
                               {T_Y_SHAPE + 2, c->y.h}, {T_Y_SHAPE + 3, c->y.w}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && st == CV_STORE_OK; i++)
        st = cv_store_rec_put_i64(r, (uint32_t)ints[i][0], ints[i][1]);
    return finish_rec(r, st, len);
}

static bool get_int(const struct cv_store_rec *r, uint32_t tag, int64_t lo, int64_t hi,
                    int64_t *v) {
    return cv_store_rec_get_i64(r, tag, v) == CV_STORE_OK && *v >= lo && *v <= hi;
}

static bool get_real(const struct cv_store_rec *r, uint32_t tag, float *v) {
    double d;
    if (cv_store_rec_get_f64(r, tag, &d) != CV_STORE_OK)
        return false;
    *v = (float)d;
    return true;
}

/* The bias of a decoded request: n floats or none. */
static bool get_bias(const struct cv_store_rec *r, int64_t n, bool want, float **bias) {
    *bias = NULL;
    int64_t got;
    int st = cv_store_rec_get_f32s(r, T_BIAS, bias, &got);
    if (st == CV_STORE_NOT_FOUND)
        return !want;
    if (st != CV_STORE_OK || !want || got != n) {
        free(*bias);
        *bias = NULL;
        return false;
    }
    return true;
}

int cv_persist_train_decode(const void *blob, size_t len, struct cv_train_request *t) {
    memset(t, 0, sizeof *t);
    struct cv_store_rec *r;
    if (cv_store_rec_decode(blob, len, &r) != CV_STORE_OK)
        return CV_EINVAL;
    struct cv_train_params *p = &t->params;
    int64_t v[10];
    bool ok = cv_store_rec_get_tensor(r, T_X, &t->x) == CV_STORE_OK &&
              cv_store_rec_get_tensor(r, T_Y, &t->y) == CV_STORE_OK &&
              cv_store_rec_get_tensor(r, T_WEIGHT, &t->weight) == CV_STORE_OK &&
              geom_get(r, &p->geom) && get_int(r, T_LOSS, 0, 1, &v[0]) &&
              get_int(r, T_OPTIM, 0, 2, &v[1]) && get_int(r, T_STEPS, 1, INT32_MAX, &v[2]) &&
              get_int(r, T_USE_BIAS, 0, 1, &v[3]) && get_int(r, T_HAS_STOP, 0, 1, &v[4]) &&
              cv_store_rec_get_i64(r, T_SEED, &v[5]) == CV_STORE_OK &&
              get_int(r, T_REPORT_EVERY, 1, INT32_MAX, &v[6]) &&
              get_int(r, T_STREAM, 0, 1, &v[7]) && get_int(r, T_RANK, 2, 4, &v[8]) &&
              get_int(r, T_FORM, 0, 2, &v[9]) && get_real(r, T_LR, &p->optim.lr) &&
              get_real(r, T_MOMENTUM, &p->optim.momentum) &&
              get_real(r, T_BETA1, &p->optim.beta1) && get_real(r, T_BETA2, &p->optim.beta2) &&
              get_real(r, T_EPS, &p->optim.eps) &&
              cv_store_rec_get_f64(r, T_STOP_LOSS, &p->stop_loss) == CV_STORE_OK;
    if (ok) {
        p->loss = (enum cv_loss_kind)v[0];
        p->optim.kind = (enum cv_optim_kind)v[1];
        p->steps = (int32_t)v[2];
        p->use_bias = v[3] != 0;
        p->has_stop_loss = v[4] != 0;
        p->n_threads = 1;
        t->seed = (uint64_t)v[5];
        t->report_every = (int32_t)v[6];
        t->stream = v[7] != 0;
        t->weight_rank = (int)v[8];
        t->out_form = (enum cv_tensor_form)v[9];
        ok = get_bias(r, t->weight.n, p->use_bias, &t->bias) && t->x.c == t->weight.c &&
             t->y.c == t->weight.n && t->y.n == t->x.n;
    }
    cv_store_rec_free(r);
    if (!ok) {
        cv_api_train_request_free(t);
        return CV_EINVAL;
    }
    return CV_OK;
}

int cv_persist_corr2d_decode(const void *blob, size_t len, struct cv_corr2d_request *c) {
    memset(c, 0, sizeof *c);
    struct cv_store_rec *r;
    if (cv_store_rec_decode(blob, len, &r) != CV_STORE_OK)
        return CV_EINVAL;
    int64_t rank, form, ys[4];
    bool ok = cv_store_rec_get_tensor(r, T_X, &c->x) == CV_STORE_OK &&
              cv_store_rec_get_tensor(r, T_WEIGHT, &c->k) == CV_STORE_OK && geom_get(r, &c->geom) &&
              get_int(r, T_RANK, 2, 4, &rank) && get_int(r, T_FORM, 0, 2, &form);
    for (int i = 0; ok && i < 4; i++)
        ok = get_int(r, T_Y_SHAPE + i, 1, INT32_MAX, &ys[i]);
    if (ok) {
        c->out_rank = (int)rank;
        c->out_form = (enum cv_tensor_form)form;
        int64_t oh, ow;
        /* The output's shape must follow from the inputs, so a forged one cannot make the
         * allocation below larger than the computation needs. */
        int64_t nb = 0;
        int bst = cv_store_rec_get_f32s(r, T_BIAS, &c->bias, &nb);
        ok = (bst == CV_STORE_NOT_FOUND || (bst == CV_STORE_OK && nb == c->k.n)) &&
             cv_corr2d_out_shape(c->x.h, c->x.w, c->k.h, c->k.w, &c->geom, &oh, &ow) == CV_OK &&
             ys[0] == c->x.n && ys[1] == c->k.n && ys[2] == oh && ys[3] == ow &&
             cv_tensor_init(&c->y, ys[0], ys[1], ys[2], ys[3]) == CV_OK;
    }
    cv_store_rec_free(r);
    if (!ok) {
        cv_api_corr2d_request_free(c);
        return CV_EINVAL;
    }
    return CV_OK;
}

/* ---- checkpoints ------------------------------------------------------------------------------
 */

unsigned char *cv_persist_checkpoint(const struct cv_persist_ckpt *c, size_t *len) {
    struct cv_store_rec *r;
    if (cv_store_rec_new(&r) != CV_STORE_OK)
        return NULL;
    int st = cv_store_rec_put_i64(r, C_STEP, c->step);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_tensor(r, C_WEIGHT, &c->weight);
    if (st == CV_STORE_OK && c->bias != NULL)
        st = cv_store_rec_put_f32s(r, C_BIAS, c->bias, c->n_bias);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_i64(r, C_OPTIM_T, c->optim_t);
    if (st == CV_STORE_OK && c->buf1 != NULL)
        st = cv_store_rec_put_f32s(r, C_BUF1, c->buf1, c->n_optim);
    if (st == CV_STORE_OK && c->buf2 != NULL)
        st = cv_store_rec_put_f32s(r, C_BUF2, c->buf2, c->n_optim);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_f64s(r, C_LOSSES, c->losses, c->n_losses);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_f64(r, C_ELAPSED, c->elapsed_ms);
    return finish_rec(r, st, len);
}

void cv_persist_ckpt_free(struct cv_persist_ckpt *c) {
    cv_tensor_free(&c->weight);
    free(c->bias);
    free(c->buf1);
    free(c->buf2);
    free(c->losses);
    memset(c, 0, sizeof *c);
}

int cv_persist_checkpoint_decode(const void *blob, size_t len, struct cv_persist_ckpt *c) {
    memset(c, 0, sizeof *c);
    struct cv_store_rec *r;
    if (cv_store_rec_decode(blob, len, &r) != CV_STORE_OK)
        return CV_EINVAL;
    int64_t step, n1 = 0, n2 = 0;
    bool ok = get_int(r, C_STEP, 0, INT32_MAX, &step) &&
              cv_store_rec_get_tensor(r, C_WEIGHT, &c->weight) == CV_STORE_OK &&
              get_int(r, C_OPTIM_T, 0, INT64_MAX, &c->optim_t) &&
              cv_store_rec_get_f64s(r, C_LOSSES, &c->losses, &c->n_losses) == CV_STORE_OK &&
              cv_store_rec_get_f64(r, C_ELAPSED, &c->elapsed_ms) == CV_STORE_OK;
    if (ok) {
        c->step = (int32_t)step;
        int st = cv_store_rec_get_f32s(r, C_BIAS, &c->bias, &c->n_bias);
        ok = st == CV_STORE_OK || st == CV_STORE_NOT_FOUND;
        st = cv_store_rec_get_f32s(r, C_BUF1, &c->buf1, &n1);
        ok = ok && (st == CV_STORE_OK || st == CV_STORE_NOT_FOUND);
        st = cv_store_rec_get_f32s(r, C_BUF2, &c->buf2, &n2);
        ok = ok && (st == CV_STORE_OK || st == CV_STORE_NOT_FOUND);
        c->n_optim = n1 ? n1 : n2;
        ok = ok && (n1 == 0 || n2 == 0 || n1 == n2) && c->n_losses == c->step;
    }
    cv_store_rec_free(r);
    if (!ok) {
        cv_persist_ckpt_free(c);
        return CV_EINVAL;
    }
    return CV_OK;
}
