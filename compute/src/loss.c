/* Sum and mean of squared errors, summed in double, with float32 gradients like PyTorch's. */
#include "convd/loss.h"

#include <stdbool.h>
#include <string.h>

#include "convd/status.h"
#include "corr2d_impl.h"

/* The sum is split into this many fixed chunks whatever the thread count, and the chunk sums
 * are added in chunk order, so a loss does not change with n_threads. */
#define CV_LOSS_CHUNKS 64

/* Below this many elements the sum runs on the calling thread. */
#define CV_LOSS_PARALLEL_MIN ((int64_t)1 << 16)

static const char *const loss_names[] = {
    [CV_LOSS_KIND_SSE] = "sse",
    [CV_LOSS_KIND_MSE] = "mse",
};

const char *cv_loss_kind_name(enum cv_loss_kind kind) {
    if ((unsigned)kind >= sizeof loss_names / sizeof loss_names[0])
        return NULL;
    return loss_names[kind];
}

int cv_loss_kind_parse(const char *name, enum cv_loss_kind *out) {
    CV_ASSERT(out != NULL);
    if (name == NULL)
        return CV_EINVAL;
    for (size_t i = 0; i < sizeof loss_names / sizeof loss_names[0]; i++) {
        if (strcmp(name, loss_names[i]) == 0) {
            *out = (enum cv_loss_kind)i;
            return CV_OK;
        }
    }
    return CV_EINVAL;
}

/* Squared errors of elements [lo, hi), summed in double; writes their gradient when g != NULL.
 * The gradient is computed as PyTorch's autograd does for ((yhat - y)**2).sum() (or .mean()):
 * scale * (2 * (yhat - y)) in float, where scale is 1, or 1/numel rounded to float. */
static double chunk_sum(const float *yh, const float *y, float *g, float scale, bool mean,
                        int64_t lo, int64_t hi) {
    double acc = 0.0;
    for (int64_t q = lo; q < hi; q++) {
        const float diff = yh[q] - y[q];
        acc += (double)diff * (double)diff;
        if (g != NULL)
            g[q] = mean ? scale * (2.0f * diff) : 2.0f * diff;
    }
    return acc;
}

int cv_loss_forward(enum cv_loss_kind kind, const struct cv_tensor *yhat, const struct cv_tensor *y,
                    double *loss, struct cv_tensor *dyhat, int n_threads) {
    CV_ASSERT(yhat != NULL && y != NULL && loss != NULL);
    CV_ASSERT(n_threads >= 1);
    if (kind != CV_LOSS_KIND_SSE && kind != CV_LOSS_KIND_MSE)
        return CV_EINVAL;
    if (yhat->data == NULL || y->data == NULL)
        return CV_ESHAPE;
    if (yhat->n != y->n || yhat->c != y->c || yhat->h != y->h || yhat->w != y->w)
        return CV_ESHAPE;
    if (dyhat != NULL && (dyhat->data == NULL || dyhat->n != y->n || dyhat->c != y->c ||
                          dyhat->h != y->h || dyhat->w != y->w))
        return CV_ESHAPE;
    const int64_t numel = cv_tensor_numel(y);
    const bool mean = kind == CV_LOSS_KIND_MSE;
    const float scale = 1.0f / (float)numel;
    float *g = dyhat != NULL ? dyhat->data : NULL;
    const int64_t chunk = (numel + CV_LOSS_CHUNKS - 1) / CV_LOSS_CHUNKS;
    double part[CV_LOSS_CHUNKS];
    /* The vectorised sum of the kernel variant in use (corr2d_impl.h), if any. */
    const struct cv__isa *isa = cv__isa_active();
    if (n_threads == 1 || numel < CV_LOSS_PARALLEL_MIN) {
        for (int q = 0; q < CV_LOSS_CHUNKS; q++) {
            const int64_t lo = q * chunk < numel ? q * chunk : numel;
            const int64_t hi = lo + chunk < numel ? lo + chunk : numel;
            part[q] = isa != NULL ? isa->sqerr(yhat->data + lo, y->data + lo,
                                               g != NULL ? g + lo : NULL, scale, mean, hi - lo)
                                  : chunk_sum(yhat->data, y->data, g, scale, mean, lo, hi);
        }
    } else {
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int q = 0; q < CV_LOSS_CHUNKS; q++) {
            const int64_t lo = q * chunk < numel ? q * chunk : numel;
            const int64_t hi = lo + chunk < numel ? lo + chunk : numel;
            part[q] = isa != NULL ? isa->sqerr(yhat->data + lo, y->data + lo,
                                               g != NULL ? g + lo : NULL, scale, mean, hi - lo)
                                  : chunk_sum(yhat->data, y->data, g, scale, mean, lo, hi);
        }
    }
    double sum = 0.0;
    for (int q = 0; q < CV_LOSS_CHUNKS; q++)
        sum += part[q];
    *loss = mean ? sum / (double)numel : sum;
    return CV_OK;
}
