/* Named kernels: "kernel": "sobel_x" or {"name": "gaussian", "size": 5, "sigma": 1.0}.
 * One table drives parsing, the error listing the valid names and GET /kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

#define SIZE_MAX_NAMED 31

static const float k_edge[] = {1, -1};
static const float k_identity[] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
static const float k_sobel_x[] = {-1, 0, 1, -2, 0, 2, -1, 0, 1};
static const float k_sobel_y[] = {-1, -2, -1, 0, 0, 0, 1, 2, 1};
static const float k_laplacian[] = {0, 1, 0, 1, -4, 1, 0, 1, 0};
static const float k_sharpen[] = {0, -1, 0, -1, 5, -1, 0, -1, 0};

/* Fills out (size x size) for a parametric kernel. */
typedef void (*make_fn)(int64_t size, double sigma, float *out);

static void make_box(int64_t size, double sigma, float *out) {
    for (int64_t i = 0; i < size * size; i++)
        out[i] = (float)(1.0 / (double)(size * size));
}

/* A sampled 2-D Gaussian normalised to sum 1 (in double, then rounded once to float32). */
static void make_gaussian(int64_t size, double sigma, float *out) {
    double g[SIZE_MAX_NAMED], sum = 0;
    int64_t c = size / 2;
    for (int64_t i = 0; i < size; i++) {
        double d = (double)(i - c);
        g[i] = exp(-d * d / (2 * sigma * sigma));
        sum += g[i];
    }
    for (int64_t i = 0; i < size; i++)
        for (int64_t j = 0; j < size; j++)
            out[i * size + j] = (float)(g[i] * g[j] / (sum * sum));
}

struct named_kernel {
    const char *name;
    const char *description;
    int64_t kh, kw;      /* fixed kernels */
    const float *values; /* fixed kernels; NULL for parametric ones */
    make_fn make;        /* parametric kernels */
    int64_t size;        /* default size */
    double sigma;        /* default sigma; 0 when the kernel takes none */
};

static const struct named_kernel named_kernels[] = {
    {"edge", "vertical-edge detector: 1 where a row steps down, -1 where it steps up", 1, 2, k_edge,
     NULL, 0, 0},
    {"identity", "copies the input", 3, 3, k_identity, NULL, 0, 0},
    {"sobel_x", "Sobel operator, horizontal gradient", 3, 3, k_sobel_x, NULL, 0, 0},
    {"sobel_y", "Sobel operator, vertical gradient", 3, 3, k_sobel_y, NULL, 0, 0},
    {"laplacian", "discrete Laplacian, 4-neighbour", 3, 3, k_laplacian, NULL, 0, 0},
    {"sharpen", "sharpening: identity plus the negative Laplacian", 3, 3, k_sharpen, NULL, 0, 0},
    {"box", "mean over a size x size window", 0, 0, NULL, make_box, 3, 0},
    {"gaussian", "Gaussian blur normalised to sum 1", 0, 0, NULL, make_gaussian, 5, 1.0},
};

#define N_NAMED (sizeof named_kernels / sizeof named_kernels[0])

static const struct named_kernel *find_named(const char *name) {
    for (size_t i = 0; i < N_NAMED; i++)
        if (strcmp(named_kernels[i].name, name) == 0)
            return &named_kernels[i];
    return NULL;
}

bool cv__kernel_is_builtin(const char *name) {
    return find_named(name) != NULL;
}

bool cv__kernel_is_named(const json_t *v) {
    return json_is_string(v) || (json_is_object(v) && json_object_get(v, "name") != NULL);
}

/* {"name", "size", "sigma"}; absent numbers stay 0. */
struct named_spec {
    json_t *name;
    int64_t size;
    double sigma;
};

static const struct cv__field named_fields[] = {
    {"name", cv__field_raw, offsetof(struct named_spec, name), 0, 0, CV__FIELD_REQUIRED},
    {"size", cv__field_int, offsetof(struct named_spec, size), 1, SIZE_MAX_NAMED, 0},
    {"sigma", cv__field_f64, offsetof(struct named_spec, sigma), 0, 1e6, CV__FIELD_LO_OPEN},
};

/* Builds the kernel k into out: the fixed values, or the parametric ones at spec's size and
 * sigma (0 for the defaults). */
static bool build(struct cv__parse *p, const struct named_kernel *k, int64_t size, double sigma,
                  struct cv__tensor_json *out) {
    int64_t kh = k->values != NULL ? k->kh : size, kw = k->values != NULL ? k->kw : size;
    if (cv_tensor_init(&out->t, 1, 1, kh, kw) != CV_OK) {
        cv__fail_nomem(p);
        return false;
    }
    out->rank = 2;
    out->dims[0] = kh;
    out->dims[1] = kw;
    out->form = CV_TENSOR_FORM_NESTED;
    if (k->values != NULL)
        memcpy(out->t.data, k->values, (size_t)(kh * kw) * sizeof(float));
    else
        k->make(size, sigma, out->t.data);
    return true;
}

void cv__kernel_named_parse(struct cv__parse *p, json_t *v, const char *ptr,
                            struct cv__tensor_json *out) {
    *out = (struct cv__tensor_json){0};
    struct named_spec spec = {0};
    int failures = p->failures;
    if (json_is_string(v))
        spec.name = v;
    else
        cv__fields_parse(p, named_fields, sizeof named_fields / sizeof named_fields[0], v, ptr,
                         &spec);
    if (spec.name == NULL)
        return;
    const struct named_kernel *k =
        json_is_string(spec.name) ? find_named(json_string_value(spec.name)) : NULL;
    if (k == NULL && json_is_string(spec.name) &&
        cv__kernel_user_lookup(p, json_string_value(spec.name), ptr, out)) {
        if (spec.size != 0 || spec.sigma != 0) {
            cv__tensor_json_free(out);
            cv__fail(p, 422, "invalid_field", ptr,
                     "\"%s\" is a saved kernel: it takes no parameters",
                     json_string_value(spec.name));
        }
        return;
    }
    if (k == NULL) {
        char names[256];
        size_t o = 0;
        for (size_t i = 0; i < N_NAMED && o < sizeof names; i++)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "",
                                  named_kernels[i].name);
        cv__fail(p, 422, "invalid_field", ptr,
                 "unknown kernel name; the built-in kernels are %s, and GET /kernels lists the "
                 "saved ones",
                 names);
        return;
    }
    char child[CV__PTR_MAX];
    if (k->values != NULL && (spec.size != 0 || spec.sigma != 0)) {
        cv__ptr_key(child, ptr, spec.size != 0 ? "size" : "sigma");
        cv__fail(p, 422, "invalid_field", child, "\"%s\" takes no parameters", k->name);
    }
    if (k->values == NULL && k->sigma == 0 && spec.sigma != 0) {
        cv__ptr_key(child, ptr, "sigma");
        cv__fail(p, 422, "invalid_field", child, "\"%s\" takes no sigma", k->name);
    }
    if (spec.size != 0 && spec.size % 2 == 0) {
        cv__ptr_key(child, ptr, "size");
        cv__fail(p, 422, "invalid_field", child, "must be odd, from 1 to %d", SIZE_MAX_NAMED);
    }
    if (p->failures != failures)
        return;
    build(p, k, spec.size != 0 ? spec.size : k->size, spec.sigma != 0 ? spec.sigma : k->sigma, out);
}

/* One built-in kernel's entry of GET /kernels; false when memory ran out. */
static bool put_builtin(struct cv__buf *b, const struct named_kernel *k) {
    struct cv__tensor_json t = {0};
    struct cv_api_error err;
    struct cv__parse p = {.err = &err};
    if (!build(&p, k, k->size, k->sigma, &t))
        return false;
    cv__buf_puts(b, "{\"name\":");
    cv__buf_put_str(b, k->name);
    cv__buf_puts(b, ",\"builtin\":true,\"description\":");
    cv__buf_put_str(b, k->description);
    if (k->values != NULL) {
        cv__buf_puts(b, ",\"kernel\":");
    } else {
        char doc[64];
        snprintf(doc, sizeof doc, "odd int from 1 to %d, default %lld", SIZE_MAX_NAMED,
                 (long long)k->size);
        cv__buf_puts(b, ",\"parameters\":{\"size\":");
        cv__buf_put_str(b, doc);
        if (k->sigma != 0) {
            snprintf(doc, sizeof doc, "number > 0, default %g", k->sigma);
            cv__buf_puts(b, ",\"sigma\":");
            cv__buf_put_str(b, doc);
        }
        cv__buf_puts(b, "},\"example\":");
    }
    cv__tensor_write(b, &t.t, 2, CV_TENSOR_FORM_NESTED);
    cv__buf_putc(b, '}');
    cv__tensor_json_free(&t);
    return true;
}

char *cv_api_kernels_dump(size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"kernels\":[");
    for (size_t i = 0; i < N_NAMED; i++) {
        if (i > 0)
            cv__buf_putc(&b, ',');
        if (!put_builtin(&b, &named_kernels[i])) {
            free(b.data);
            return NULL;
        }
    }
    cv__buf_puts(&b, "]}");
    return cv__buf_finish(&b, len);
}

char *cv_api_builtin_kernel_dump(const char *name, size_t *len, bool *found) {
    const struct named_kernel *k = find_named(name);
    *found = k != NULL;
    if (k == NULL)
        return NULL;
    struct cv__buf b = {0};
    if (!put_builtin(&b, k)) {
        free(b.data);
        return NULL;
    }
    return cv__buf_finish(&b, len);
}
