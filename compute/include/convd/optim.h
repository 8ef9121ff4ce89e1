/* Gradient-descent optimizers with torch.optim's update rules, so that trajectories match
 * PyTorch's float32 ones step for step.
 *
 *   sgd:      p -= lr * g
 *   momentum: b = g (first step), else b = momentum*b + g;   p -= lr * b      (SGD, dampening 0)
 *   adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  t += 1
 *             p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * The optimizer owns its state buffers (allocated once by cv_optim_init for n parameters), so a
 * step never allocates. */
#ifndef CONVD_OPTIM_H
#define CONVD_OPTIM_H

#include <stdint.h>

enum cv_optim_kind {
    CV_OPTIM_KIND_SGD = 0,
    CV_OPTIM_KIND_MOMENTUM = 1,
    CV_OPTIM_KIND_ADAM = 2,
};

struct cv_optim_params {
    enum cv_optim_kind kind;
    float lr;       /* > 0 */
    float momentum; /* momentum only; PyTorch-style, default 0.9 */
    float beta1;    /* adam only; default 0.9 */
    float beta2;    /* adam only; default 0.999 */
    float eps;      /* adam only; default 1e-8 */
};

struct cv_optim {
    struct cv_optim_params p;
    int64_t n;   /* number of parameters */
    int64_t t;   /* steps taken */
    float *buf1; /* momentum buffer, or Adam's first moment; NULL for plain SGD */
    float *buf2; /* Adam's second moment; NULL otherwise */
};

/* Returns the name of an optimizer kind ("sgd", "momentum", "adam"), or NULL when unknown. */
const char *cv_optim_kind_name(enum cv_optim_kind kind);

/* Looks up an optimizer kind by name. Returns CV_OK, or CV_EINVAL for an unknown name. */
int cv_optim_kind_parse(const char *name, enum cv_optim_kind *out);

/* Default parameters for a kind: lr 0.01, momentum 0.9, beta1 0.9, beta2 0.999, eps 1e-8. */
struct cv_optim_params cv_optim_params_default(enum cv_optim_kind kind);

/* Prepares *o for n (>= 1) parameters with zeroed state. Returns CV_OK, CV_EINVAL for bad
 * parameters (lr <= 0 or not finite, momentum/betas outside [0,1), eps < 0), or CV_ENOMEM.
 * On failure *o holds nothing to free. The caller releases with cv_optim_free. */
int cv_optim_init(struct cv_optim *o, const struct cv_optim_params *p, int64_t n);

/* Releases the state buffers; NULL-safe and idempotent. */
void cv_optim_free(struct cv_optim *o);

/* Applies one update to params[0..n) from grads[0..n) (both borrowed, n as at init). */
void cv_optim_step(struct cv_optim *o, float *params, const float *grads);

#endif
