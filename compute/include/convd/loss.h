/* Losses between a prediction and a target of the same shape.
 *
 * Sums run in double (API.md: "sums over many terms accumulate in double"); gradients are
 * float32, as PyTorch computes them. */
#ifndef CONVD_LOSS_H
#define CONVD_LOSS_H

#include "convd/tensor.h"

enum cv_loss_kind {
    CV_LOSS_KIND_SSE = 0, /* sum of squared errors: sum (yhat - y)^2, the textbook's loss.sum() */
    CV_LOSS_KIND_MSE = 1, /* mean of squared errors: SSE / numel */
};

/* Returns the name of a loss kind ("sse", "mse"), or NULL for an unknown value. */
const char *cv_loss_kind_name(enum cv_loss_kind kind);

/* Looks up a loss kind by name. Returns CV_OK, or CV_EINVAL for an unknown name. */
int cv_loss_kind_parse(const char *name, enum cv_loss_kind *out);

/* Computes the loss of yhat against y into *loss, and, when dyhat is not NULL, its gradient
 * dL/dyhat (2*(yhat-y) for SSE, 2*(yhat-y)/numel for MSE) into dyhat, which must have yhat's
 * shape. Never allocates. Returns CV_OK or CV_ESHAPE when shapes differ. n_threads >= 1. */
int cv_loss_forward(enum cv_loss_kind kind, const struct cv_tensor *yhat, const struct cv_tensor *y,
                    double *loss, struct cv_tensor *dyhat, int n_threads);

#endif
