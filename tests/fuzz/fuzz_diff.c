/* libFuzzer target, differential: the fast pre-pass (body_scan.c, numbers.c) and the jansson
 * path parse every /corr2d and /train body to the same tensors and fields, or fail with the
 * same status, code, detail and pointers. The first byte picks the endpoint. Aborts on any
 * difference, so libFuzzer keeps the input. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"
#include "fuzz_common.h"

static void same_tensor(const struct cv_tensor *a, const struct cv_tensor *b) {
    if (a->n != b->n || a->c != b->c || a->h != b->h || a->w != b->w)
        abort();
    if ((a->data == NULL) != (b->data == NULL))
        abort();
    if (a->data != NULL &&
        memcmp(a->data, b->data, (size_t)(a->n * a->c * a->h * a->w) * sizeof(float)) != 0)
        abort();
}

static void same_error(int ra, const struct cv_api_error *a, int rb, const struct cv_api_error *b) {
    if (ra != rb)
        abort();
    if (ra != 0 && memcmp(a, b, sizeof *a) != 0)
        abort();
}

static void corr2d(const char *body, size_t len, const struct cv_api_limits *lim) {
    struct cv_corr2d_request a, b;
    struct cv_api_error ea, eb;
    memset(&ea, 0, sizeof ea);
    memset(&eb, 0, sizeof eb);
    cv__fast_min_body = 0;
    int ra = cv_api_corr2d_parse(body, len, lim, &a, &ea);
    cv__fast_min_body = SIZE_MAX;
    int rb = cv_api_corr2d_parse(body, len, lim, &b, &eb);
    same_error(ra, &ea, rb, &eb);
    same_tensor(&a.x, &b.x);
    same_tensor(&a.k, &b.k);
    same_tensor(&a.y, &b.y);
    if ((a.bias == NULL) != (b.bias == NULL))
        abort();
    if (a.bias != NULL && memcmp(a.bias, b.bias, (size_t)a.k.n * sizeof(float)) != 0)
        abort();
    if (memcmp(&a.geom, &b.geom, sizeof a.geom) != 0 || a.out_rank != b.out_rank ||
        a.out_form != b.out_form)
        abort();
    cv_api_corr2d_request_free(&a);
    cv_api_corr2d_request_free(&b);
}

static void train(const char *body, size_t len, const struct cv_api_limits *lim) {
    struct cv_train_request a, b;
    struct cv_api_error ea, eb;
    memset(&ea, 0, sizeof ea);
    memset(&eb, 0, sizeof eb);
    cv__fast_min_body = 0;
    int ra = cv_api_train_parse(body, len, lim, &a, &ea);
    cv__fast_min_body = SIZE_MAX;
    int rb = cv_api_train_parse(body, len, lim, &b, &eb);
    same_error(ra, &ea, rb, &eb);
    same_tensor(&a.x, &b.x);
    same_tensor(&a.y, &b.y);
    /* Without a "seed" each parse draws its own start; with one they must agree. */
    if (ra == 0 && a.seed == b.seed) {
        same_tensor(&a.weight, &b.weight);
        if ((a.bias == NULL) != (b.bias == NULL))
            abort();
    }
    if (ra == 0 && (a.report_every != b.report_every || a.stream != b.stream ||
                    a.weight_rank != b.weight_rank || a.out_form != b.out_form))
        abort();
    cv_api_train_request_free(&a);
    cv_api_train_request_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        cv_api_init();
        ready = 1;
    }
    if (size < 1)
        return 0;
    struct cv_api_limits lim = cv_fuzz_limits();
    const char *body = (const char *)data + 1;
    if (data[0] & 1)
        train(body, size - 1, &lim);
    else
        corr2d(body, size - 1, &lim);
    return 0;
}
