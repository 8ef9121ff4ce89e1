/* SGD, SGD with momentum and Adam, following torch.optim (1.13) operation by operation in
 * float32 so that trajectories match PyTorch's. */
#include "convd/optim.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "convd/status.h"

static const char *const optim_names[] = {
    [CV_OPTIM_KIND_SGD] = "sgd",
    [CV_OPTIM_KIND_MOMENTUM] = "momentum",
    [CV_OPTIM_KIND_ADAM] = "adam",
};

const char *cv_optim_kind_name(enum cv_optim_kind kind) {
    if ((unsigned)kind >= sizeof optim_names / sizeof optim_names[0])
        return NULL;
    return optim_names[kind];
}

int cv_optim_kind_parse(const char *name, enum cv_optim_kind *out) {
    CV_ASSERT(out != NULL);
    if (name == NULL)
        return CV_EINVAL;
    for (size_t i = 0; i < sizeof optim_names / sizeof optim_names[0]; i++) {
        if (strcmp(name, optim_names[i]) == 0) {
            *out = (enum cv_optim_kind)i;
            return CV_OK;
        }
    }
    return CV_EINVAL;
}

struct cv_optim_params cv_optim_params_default(enum cv_optim_kind kind) {
    return (struct cv_optim_params){
        .kind = kind, .lr = 0.01f, .momentum = 0.9f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
}

static bool in_unit(float v) {
    return v >= 0.0f && v < 1.0f; /* false for NaN */
}

int cv_optim_init(struct cv_optim *o, const struct cv_optim_params *p, int64_t n) {
    CV_ASSERT(o != NULL && p != NULL);
    *o = (struct cv_optim){0};
    if (n < 1 || (uint64_t)n > SIZE_MAX / sizeof(float))
        return CV_EINVAL;
    if (!isfinite(p->lr) || !(p->lr > 0.0f))
        return CV_EINVAL;
    /* Only the fields a kind uses are checked: callers may leave the others at any value. */
    switch (p->kind) {
    case CV_OPTIM_KIND_SGD:
        break;
    case CV_OPTIM_KIND_MOMENTUM:
        if (!in_unit(p->momentum))
            return CV_EINVAL;
        break;
    case CV_OPTIM_KIND_ADAM:
        if (!in_unit(p->beta1) || !in_unit(p->beta2) || !isfinite(p->eps) || !(p->eps >= 0.0f))
            return CV_EINVAL;
        break;
    default:
        return CV_EINVAL;
    }
    float *b1 = NULL, *b2 = NULL;
    if (p->kind != CV_OPTIM_KIND_SGD) {
        b1 = calloc((size_t)n, sizeof(float));
        if (b1 == NULL)
            return CV_ENOMEM;
    }
    if (p->kind == CV_OPTIM_KIND_ADAM) {
        b2 = calloc((size_t)n, sizeof(float));
        if (b2 == NULL) {
            free(b1);
            return CV_ENOMEM;
        }
    }
    *o = (struct cv_optim){.p = *p, .n = n, .t = 0, .buf1 = b1, .buf2 = b2};
    return CV_OK;
}

void cv_optim_free(struct cv_optim *o) {
    if (o == NULL)
        return;
    free(o->buf1);
    free(o->buf2);
    *o = (struct cv_optim){0};
}

/* The shortest decimal (up to 9 significant digits) that rounds to f, as a double.
 * Hyperparameters arrive as decimals ("0.999") and are stored as float; PyTorch keeps them as
 * Python doubles and computes Adam's bias corrections (1 - beta^t) in double, where 0.999f and
 * 0.999 differ by 1e-5 relative in 1 - beta. Recovering the decimal keeps the match tight. */
static double decimal_of(float f) {
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const double d = (double)f;
    if (d == 0.0 || !isfinite(d))
        return d;
    const int e = (int)floor(log10(fabs(d)));
    for (int digits = 1; digits <= 9; digits++) {
        const int k = digits - 1 - e; /* scale so that the digits sit before the point */
        double cand;
        if (k >= 0 && k <= 22)
            cand = round(d * p10[k]) / p10[k];
        else if (k < 0 && -k <= 22)
            cand = round(d / p10[-k]) * p10[-k];
        else
            return d;
        if ((float)cand == f)
            return cand;
    }
    return d;
}

static void step_sgd(const struct cv_optim *o, float *params, const float *grads) {
    const float alpha = -o->p.lr; /* param.add_(grad, alpha=-lr) */
    for (int64_t q = 0; q < o->n; q++)
        params[q] = params[q] + alpha * grads[q];
}

static void step_momentum(const struct cv_optim *o, float *params, const float *grads) {
    const float alpha = -o->p.lr;
    const float m = o->p.momentum;
    float *buf = o->buf1;
    if (o->t == 1) {
        for (int64_t q = 0; q < o->n; q++)
            buf[q] = grads[q]; /* torch: buf = clone(grad) on the first step */
    } else {
        for (int64_t q = 0; q < o->n; q++)
            buf[q] = buf[q] * m + grads[q]; /* buf.mul_(momentum).add_(grad, alpha=1) */
    }
    for (int64_t q = 0; q < o->n; q++)
        params[q] = params[q] + alpha * buf[q];
}

static void step_adam(const struct cv_optim *o, float *params, const float *grads) {
    const double lr = decimal_of(o->p.lr);
    const double b1 = decimal_of(o->p.beta1);
    const double b2 = decimal_of(o->p.beta2);
    /* Scalars as torch.optim computes them: in double, cast to float where they meet a tensor. */
    const float b1f = (float)b1;
    const float b2f = (float)b2;
    const float a1 = (float)(1.0 - b1);
    const float a2 = (float)(1.0 - b2);
    const double bc1 = 1.0 - pow(b1, (double)o->t);
    const double bc2 = 1.0 - pow(b2, (double)o->t);
    const float step_size = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)decimal_of(o->p.eps);
    float *m = o->buf1;
    float *v = o->buf2;
    for (int64_t q = 0; q < o->n; q++) {
        const float g = grads[q];
        m[q] = m[q] * b1f;
        m[q] = m[q] + a1 * g; /* exp_avg.mul_(b1).add_(g, alpha=1-b1) */
        v[q] = v[q] * b2f;
        v[q] = v[q] + a2 * g * g; /* exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2) */
        const float denom = sqrtf(v[q]) / bc2_sqrt + eps;
        params[q] = params[q] + step_size * m[q] / denom; /* addcdiv_(m, denom) */
    }
}

void cv_optim_step(struct cv_optim *o, float *params, const float *grads) {
    CV_ASSERT(o != NULL && params != NULL && grads != NULL && o->n >= 1);
    o->t++;
    switch (o->p.kind) {
    case CV_OPTIM_KIND_SGD:
        step_sgd(o, params, grads);
        break;
    case CV_OPTIM_KIND_MOMENTUM:
        step_momentum(o, params, grads);
        break;
    case CV_OPTIM_KIND_ADAM:
        step_adam(o, params, grads);
        break;
    default:
        CV_ASSERT(!"cv_optim_step: unknown optimizer kind");
    }
}
