/* Kernel learning: forward, loss, backward, optimizer step, repeated; and the random start. */
#include "convd/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convd/status.h"

/* ---- random start ------------------------------------------------------------------------- */

/* xoshiro256** (Blackman and Vigna), its state filled by splitmix64 from the seed as its
 * authors recommend, so that nearby seeds give unrelated streams. */
struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static void rng_seed(struct rng *r, uint64_t seed) {
    for (int q = 0; q < 4; q++)
        r->s[q] = splitmix64(&seed);
}

static uint64_t rng_next(struct rng *r) {
    uint64_t *s = r->s;
    const uint64_t out = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [-bound, bound). t = 2u - 1 is exact for a 24-bit u, and |t| * bound rounds to a
 * float strictly below bound because t <= 1 - 2^-23. */
static float rng_uniform(struct rng *r, float bound) {
    const float u = (float)(rng_next(r) >> 40) * 0x1p-24f;
    const float t = 2.0f * u - 1.0f;
    return t * bound;
}

void cv_train_init_uniform(struct cv_tensor *weight, float *bias, uint64_t seed) {
    CV_ASSERT(weight != NULL && weight->data != NULL);
    /* PyTorch's Conv2d: kaiming_uniform_(a=sqrt(5)) gives bound = 1/sqrt(fan_in), and the bias
     * uses the same bound. */
    const int64_t fan_in = weight->c * weight->h * weight->w;
    const float bound = (float)(1.0 / sqrt((double)fan_in));
    struct rng r;
    rng_seed(&r, seed);
    const int64_t numel = cv_tensor_numel(weight);
    for (int64_t q = 0; q < numel; q++)
        weight->data[q] = rng_uniform(&r, bound);
    if (bias != NULL)
        for (int64_t o = 0; o < weight->n; o++)
            bias[o] = rng_uniform(&r, bound);
}

/* ---- training loop ------------------------------------------------------------------------ */

static bool all_finite(const float *v, int64_t n) {
    for (int64_t q = 0; q < n; q++)
        if (!isfinite(v[q]))
            return false;
    return true;
}

/* Scratch for one run, allocated once. params and grads are flat: the kernel's entries, then the
 * bias, so one optimizer covers both. ws is the corr2d workspace of the job: the first step's
 * passes size it, the later steps reuse it. */
struct train_scratch {
    struct cv_tensor yhat, dy;
    float *params, *grads;
    struct cv_corr2d_workspace ws;
};

static void scratch_free(struct train_scratch *s) {
    cv_tensor_free(&s->yhat);
    cv_tensor_free(&s->dy);
    free(s->params);
    s->params = s->grads = NULL;
    cv_corr2d_workspace_free(&s->ws);
}

/* Loss of the current parameters (a forward pass and the loss, no gradient). */
static int eval_loss(const struct cv_train_params *p, const struct cv_tensor *x,
                     const struct cv_tensor *y, const struct cv_tensor *w, const float *b,
                     struct cv_tensor *yhat, struct cv_corr2d_workspace *ws, double *loss) {
    int st = cv_corr2d_forward_ws(x, w, b, &p->geom, yhat, p->n_threads, NULL, ws);
    if (st != CV_OK)
        return st;
    return cv_loss_forward(p->loss, yhat, y, loss, NULL, p->n_threads);
}

int cv_train_run(const struct cv_train_params *p, const struct cv_tensor *x,
                 const struct cv_tensor *y, struct cv_tensor *weight, float *bias,
                 cv_train_step_cb cb, void *user, struct cv_train_result *res) {
    return cv_train_resume(p, x, y, weight, bias, NULL, cb, user, res);
}

int cv_train_resume(const struct cv_train_params *p, const struct cv_tensor *x,
                    const struct cv_tensor *y, struct cv_tensor *weight, float *bias,
                    const struct cv_train_start *from, cv_train_step_cb cb, void *user,
                    struct cv_train_result *res) {
    CV_ASSERT(p != NULL && x != NULL && y != NULL && weight != NULL && res != NULL);
    CV_ASSERT(p->n_threads >= 1);
    CV_ASSERT((bias != NULL) == p->use_bias);
    *res = (struct cv_train_result){
        .steps_done = 0, .last_loss = NAN, .final_loss = NAN, .stopped_early = false};

    if (p->steps < 1 || cv_loss_kind_name(p->loss) == NULL ||
        (p->has_stop_loss && isnan(p->stop_loss)))
        return CV_EINVAL;
    if (from != NULL && (from->step < 0 || from->step >= p->steps || from->optim_t < 0))
        return CV_EINVAL;
    if (x->data == NULL || y->data == NULL || weight->data == NULL || x->c != weight->c)
        return CV_ESHAPE;
    int64_t oh, ow;
    int st = cv_corr2d_out_shape(x->h, x->w, weight->h, weight->w, &p->geom, &oh, &ow);
    if (st != CV_OK)
        return st;
    if (y->n != x->n || y->c != weight->n || y->h != oh || y->w != ow)
        return CV_ESHAPE;

    const int64_t nw = cv_tensor_numel(weight);
    const int64_t nb = p->use_bias ? weight->n : 0;
    const int64_t np = nw + nb;

    struct cv_optim opt;
    st = cv_optim_init(&opt, &p->optim, np);
    if (st != CV_OK)
        return st;
    struct train_scratch s = {0};
    cv_corr2d_workspace_init(&s.ws);
    st = cv_tensor_init(&s.yhat, y->n, y->c, y->h, y->w);
    if (st == CV_OK)
        st = cv_tensor_init(&s.dy, y->n, y->c, y->h, y->w);
    if (st == CV_OK) {
        s.params = malloc(2 * (size_t)np * sizeof(float));
        if (s.params == NULL)
            st = CV_ENOMEM;
    }
    if (st != CV_OK) {
        scratch_free(&s);
        cv_optim_free(&opt);
        return st;
    }
    if (from != NULL) {
        /* The optimizer's state as the checkpoint left it: same buffers, same step count. */
        if ((from->buf1 != NULL) != (opt.buf1 != NULL) ||
            (from->buf2 != NULL) != (opt.buf2 != NULL)) {
            scratch_free(&s);
            cv_optim_free(&opt);
            return CV_EINVAL;
        }
        opt.t = from->optim_t;
        if (opt.buf1 != NULL)
            memcpy(opt.buf1, from->buf1, (size_t)np * sizeof(float));
        if (opt.buf2 != NULL)
            memcpy(opt.buf2, from->buf2, (size_t)np * sizeof(float));
        res->steps_done = from->step;
    }
    s.grads = s.params + np;
    memcpy(s.params, weight->data, (size_t)nw * sizeof(float));
    if (nb > 0)
        memcpy(s.params + nw, bias, (size_t)nb * sizeof(float));

    /* Views of the flat arrays with the kernel's shape. */
    struct cv_tensor w = {weight->n, weight->c, weight->h, weight->w, s.params};
    struct cv_tensor dw = {weight->n, weight->c, weight->h, weight->w, s.grads};
    float *b = nb > 0 ? s.params + nw : NULL;
    float *db = nb > 0 ? s.grads + nw : NULL;

    bool need_final = true;
    for (int32_t step = from ? from->step + 1 : 1; step <= p->steps; step++) {
        double loss;
        st = cv_corr2d_forward_ws(x, &w, b, &p->geom, &s.yhat, p->n_threads, NULL, &s.ws);
        if (st == CV_OK)
            st = cv_loss_forward(p->loss, &s.yhat, y, &loss, &s.dy, p->n_threads);
        if (st != CV_OK)
            break;
        if (!isfinite(loss)) {
            /* This forward pass used the parameters after the last update: it is their loss. */
            res->final_loss = loss;
            need_final = false;
            st = CV_EDIVERGED;
            break;
        }
        st = cv_corr2d_backward_kernel_ws(x, &s.dy, &p->geom, &dw, db, p->n_threads, &s.ws);
        if (st != CV_OK)
            break;
        cv_optim_step(&opt, s.params, s.grads);
        /* Hand the caller the parameters after every update, so that every way out (cancel,
         * divergence, the end) leaves weight and bias as they stand. */
        memcpy(weight->data, s.params, (size_t)nw * sizeof(float));
        if (nb > 0)
            memcpy(bias, b, (size_t)nb * sizeof(float));
        res->steps_done = step;
        res->last_loss = loss;
        if (!all_finite(s.params, np)) {
            need_final = false; /* its loss is not finite either; no need to compute it */
            st = CV_EDIVERGED;
            break;
        }
        if (cb != NULL) {
            const struct cv_train_step info = {.step = step,
                                               .steps = p->steps,
                                               .loss = loss,
                                               .weight = weight,
                                               .bias = nb > 0 ? bias : NULL,
                                               .n_bias = nb,
                                               .optim = &opt};
            if (!cb(&info, user)) {
                st = CV_ECANCELED;
                break;
            }
        }
        if (p->has_stop_loss && loss <= p->stop_loss) {
            res->stopped_early = true;
            break;
        }
    }
    if (need_final && res->steps_done > 0 && (st == CV_OK || st == CV_ECANCELED)) {
        double fl;
        int st2 = eval_loss(p, x, y, &w, b, &s.yhat, &s.ws, &fl);
        if (st2 == CV_OK)
            res->final_loss = fl;
    }
    scratch_free(&s);
    cv_optim_free(&opt);
    return st;
}
