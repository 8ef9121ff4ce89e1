/* Learning a kernel (and bias) by gradient descent so that corr2d(X, K) + bias approaches Y.
 *
 * One step: forward pass, loss (reported), backward pass for dK and dbias, optimizer update.
 * A step's reported loss is the loss of its forward pass, before its update (what the textbook
 * prints). After every step the callback runs on the calling thread; it may stop the run.
 * All scratch memory is allocated once per run: its buffers at the start, the corr2d workspace
 * (corr2d.h) during the first step; later steps allocate nothing. */
#ifndef CONVD_TRAIN_H
#define CONVD_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "convd/corr2d.h"
#include "convd/loss.h"
#include "convd/optim.h"
#include "convd/tensor.h"

struct cv_train_params {
    struct cv_conv2d_geom geom;
    enum cv_loss_kind loss;
    struct cv_optim_params optim;
    int32_t steps;      /* >= 1 */
    bool use_bias;      /* learn a bias per output channel */
    bool has_stop_loss; /* stop early once a step's loss <= stop_loss */
    double stop_loss;
    int n_threads; /* >= 1 */
};

/* What the callback sees after each step. Pointers are borrowed and valid only during the call. */
struct cv_train_step {
    int32_t step;                   /* 1-based */
    int32_t steps;                  /* total planned */
    double loss;                    /* loss of this step's forward pass, before its update */
    const struct cv_tensor *weight; /* the kernel after this step's update */
    const float *bias;              /* Cout entries after the update, or NULL without bias */
    int64_t n_bias;                 /* Cout, or 0 without bias */
    const struct cv_optim *optim;   /* the optimizer after the update (for checkpoints) */
};

/* Called after every step; return false to stop (cv_train_run then returns CV_ECANCELED). */
typedef bool (*cv_train_step_cb)(const struct cv_train_step *s, void *user);

/* Fills weight (shape (Cout, C, kh, kw), allocated by the caller) and bias (Cout entries, or
 * NULL) with PyTorch Conv2d's default start: uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)) with
 * fan_in = C*kh*kw, drawn from a generator seeded with seed (same seed, same start). */
void cv_train_init_uniform(struct cv_tensor *weight, float *bias, uint64_t seed);

/* Result of a run. */
struct cv_train_result {
    int32_t steps_done; /* steps completed (fewer than planned after stop_loss or cancel) */
    double last_loss;   /* loss of the last completed step's forward pass (NaN if none) */
    double final_loss;  /* loss of the learned kernel after the last update (NaN if none) */
    bool stopped_early; /* stop_loss was reached */
};

/* Trains weight (in: the start, out: the learned kernel; shape (Cout, C, kh, kw)) and bias
 * (in/out, Cout entries; must be non-NULL exactly when p->use_bias) on x (N, C, H, W) towards
 * y (N, Cout, H', W'). All tensors are borrowed. cb may be NULL.
 * Returns CV_OK (all steps, or stop_loss reached), CV_ECANCELED (the callback returned false;
 * weight holds the kernel as it stood), CV_EDIVERGED (a loss or parameter became non-finite),
 * CV_ESHAPE/CV_EINVAL (bad shapes or parameters), or CV_ENOMEM. *res is filled in every case. */
int cv_train_run(const struct cv_train_params *p, const struct cv_tensor *x,
                 const struct cv_tensor *y, struct cv_tensor *weight, float *bias,
                 cv_train_step_cb cb, void *user, struct cv_train_result *res);

/* Where a resumed run starts: the state after `step` completed steps of an earlier run with
 * the same parameters and data, as a checkpoint recorded it (weight and bias are passed to
 * cv_train_resume as usual). Arrays are borrowed; each has the optimizer's n entries
 * (numel(weight) + Cout with bias), or is NULL when the optimizer keeps no such buffer. */
struct cv_train_start {
    int32_t step;      /* steps already done, 0 <= step < p->steps */
    int64_t optim_t;   /* the optimizer's step count (struct cv_optim.t) */
    const float *buf1; /* momentum buffer / Adam's first moment, or NULL */
    const float *buf2; /* Adam's second moment, or NULL */
};

/* cv_train_run that continues an earlier run from *from (NULL: from the start, exactly
 * cv_train_run). Steps are numbered on from from->step + 1, so a run resumed from a checkpoint
 * of the same machine ends bitwise equal to an uninterrupted one. res->steps_done counts the
 * earlier steps too. Returns what cv_train_run returns, or CV_EINVAL for a start outside
 * [0, steps) or buffers that the optimizer kind does not have. */
int cv_train_resume(const struct cv_train_params *p, const struct cv_tensor *x,
                    const struct cv_tensor *y, struct cv_tensor *weight, float *bias,
                    const struct cv_train_start *from, cv_train_step_cb cb, void *user,
                    struct cv_train_result *res);

#endif
