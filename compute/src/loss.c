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

/* One squared-error sum, split into CV_LOSS_CHUNKS chunks of `chunk` elements (the last ones
 * short or empty). */
struct sqerr {
    const float *yhat, *y;
    float *g; /* the gradient, or NULL */
    float scale;
    bool mean;
    int64_t numel, chunk;
    const struct cv__isa *isa; /* the kernel variant in use (corr2d_impl.h) or NULL: chunk_sum */
};

/* The sum (and gradient) of chunk q, by the variant's vectorised sum when there is one. */
static double sqerr_chunk(const struct sqerr *e, int q) {
    const int64_t lo = q * e->chunk < e->numel ? q * e->chunk : e->numel;
    const int64_t hi = lo + e->chunk < e->numel ? lo + e->chunk : e->numel;
    if (e->isa != NULL)
        return e->isa->sqerr(e->yhat + lo, e->y + lo, e->g != NULL ? e->g + lo : NULL, e->scale,
                             e->mean, hi - lo);
    return chunk_sum(e->yhat, e->y, e->g, e->scale, e->mean, lo, hi);
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
    const struct sqerr e = {
        .yhat = yhat->data,
        .y = y->data,
        .g = dyhat != NULL ? dyhat->data : NULL,
        .scale = 1.0f / (float)numel,
        .mean = mean,
        .numel = numel,
        .chunk = (numel + CV_LOSS_CHUNKS - 1) / CV_LOSS_CHUNKS,
        .isa = cv__isa_active(),
    };
    double part[CV_LOSS_CHUNKS];
    if (n_threads == 1 || numel < CV_LOSS_PARALLEL_MIN) {
        for (int q = 0; q < CV_LOSS_CHUNKS; q++)
            part[q] = sqerr_chunk(&e, q);
    } else {
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int q = 0; q < CV_LOSS_CHUNKS; q++)
            part[q] = sqerr_chunk(&e, q);
    }
    double sum = 0.0;
    for (int q = 0; q < CV_LOSS_CHUNKS; q++)
        sum += part[q];
    *loss = mean ? sum / (double)numel : sum;
    return CV_OK;
}
