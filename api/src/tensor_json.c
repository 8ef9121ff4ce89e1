/* Tensors in JSON, in the three forms of API.md (nested arrays, shape + flat data, shape +
 * base64 float32), both ways, and the bias that sits beside them.
 *
 * A tensor's shape is known before its elements are read (from "shape", or from the first
 * element at each depth of a nested array), so the element count is checked against the limit
 * before anything is allocated: a 413 costs no memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"
#include "convd/base64.h"

/* Dimensions above this are refused like an over-large tensor, whatever the limit: they keep
 * every later size computation (padding, output shapes) far from int64 overflow. */
#define DIM_MAX INT32_MAX

int64_t cv__dims_numel(const int64_t *dims, int rank) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > 0 && n > INT64_MAX / dims[i])
            return INT64_MAX;
        n *= dims[i];
    }
    return n;
}

void cv__shape_str(char *out, size_t cap, const int64_t *dims, int rank) {
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

bool cv__check_numel(struct cv__parse *p, int64_t count, const char *ptr, const char *what) {
    if (count <= p->lim->max_elements)
        return true;
    if (count == INT64_MAX)
        cv__fail(p, 413, "too_large", ptr, "%s has more elements than the limit of %lld", what,
                 (long long)p->lim->max_elements);
    else
        cv__fail(p, 413, "too_large", ptr, "%s has %lld elements, more than the limit of %lld",
                 what, (long long)count, (long long)p->lim->max_elements);
    return false;
}

/* Checks a shape against the rank range and the limits. */
static bool check_shape(struct cv__parse *p, const int64_t *dims, int rank, int min_rank,
                        int max_rank, const char *ptr) {
    char shape[64];
    cv__shape_str(shape, sizeof shape, dims, rank);
    if (rank < min_rank || rank > max_rank) {
        cv__fail(p, 422, "invalid_field", ptr, "a tensor of shape %s has rank %d, not %d to %d",
                 shape, rank, min_rank, max_rank);
        return false;
    }
    for (int i = 0; i < rank; i++) {
        if (dims[i] > DIM_MAX) {
            cv__fail(p, 413, "too_large", ptr, "dimension %d of %s is over %d", i, shape, DIM_MAX);
            return false;
        }
    }
    return cv__check_numel(p, cv__dims_numel(dims, rank), ptr, "the tensor");
}

/* Allocates out->t for dims, right-aligned onto (n, c, h, w). */
static bool alloc_tensor(struct cv__parse *p, const int64_t *dims, int rank,
                         struct cv__tensor_json *out) {
    int64_t d4[4] = {1, 1, 1, 1};
    for (int i = 0; i < rank; i++)
        d4[4 - rank + i] = dims[i];
    if (cv_tensor_init(&out->t, d4[0], d4[1], d4[2], d4[3]) != CV_OK) {
        cv__fail_nomem(p);
        return false;
    }
    out->rank = rank;
    memcpy(out->dims, dims, sizeof(int64_t) * (size_t)rank);
    return true;
}

/* One element: a JSON number within the float32 range. On failure why says what is wrong. */
static bool element_value(const json_t *e, float *out, char *why, size_t cap) {
    if (!json_is_number(e)) {
        snprintf(why, cap, "must be a number, not %s", cv__json_type_name(e));
        return false;
    }
    double x = json_number_value(e);
    if (!(fabs(x) < CV__F32_LIMIT)) {
        snprintf(why, cap, "%.9g is outside the float32 range", x);
        return false;
    }
    *out = (float)x;
    return true;
}

/* Reads the numbers of a flat JSON array into out[0..n); errors at ptr/i. */
static void read_flat(struct cv__parse *p, json_t *arr, const char *ptr, float *out) {
    char why[96], child[CV__PTR_MAX];
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n && !cv__errors_full(p); i++) {
        if (!element_value(json_array_get(arr, i), &out[i], why, sizeof why)) {
            cv__ptr_index(child, ptr, i);
            cv__fail(p, 422, "invalid_field", child, "%s", why);
        }
    }
}

/* ---- nested arrays ----------------------------------------------------------------------- */

struct nested_walk {
    struct cv__parse *p;
    const char *ptr;
    int rank;
    const int64_t *dims;
    int64_t strides[4];
    size_t idx[4]; /* where the walk is, to name a bad row or element */
    float *out;
};

/* The pointer of the walk's position at the given depth ("/input/2" at depth 1). */
static void walk_ptr(const struct nested_walk *w, int depth, char out[CV__PTR_MAX]) {
    size_t o = (size_t)snprintf(out, CV__PTR_MAX, "%s", w->ptr);
    for (int i = 0; i < depth && o < CV__PTR_MAX; i++)
        o += (size_t)snprintf(out + o, CV__PTR_MAX - o, "/%zu", w->idx[i]);
}

static void nested_fill(struct nested_walk *w, json_t *arr, int level, int64_t offset) {
    char ptr[CV__PTR_MAX];
    size_t n = json_array_size(arr);
    if ((int64_t)n != w->dims[level]) {
        walk_ptr(w, level, ptr);
        cv__fail(w->p, 422, "invalid_field", ptr,
                 "ragged array: %zu elements here, %lld in the first row at this depth", n,
                 (long long)w->dims[level]);
        return;
    }
    bool leaf = level + 1 == w->rank;
    for (size_t i = 0; i < n && !cv__errors_full(w->p); i++) {
        json_t *e = json_array_get(arr, i);
        w->idx[level] = i;
        if (leaf) {
            char why[96];
            if (!element_value(e, &w->out[offset + (int64_t)i], why, sizeof why)) {
                walk_ptr(w, level + 1, ptr);
                cv__fail(w->p, 422, "invalid_field", ptr, "%s", why);
            }
        } else if (!json_is_array(e)) {
            walk_ptr(w, level + 1, ptr);
            cv__fail(w->p, 422, "invalid_field", ptr,
                     "ragged array: expected an array of %lld elements, not %s",
                     (long long)w->dims[level + 1], cv__json_type_name(e));
        } else {
            nested_fill(w, e, level + 1, offset + (int64_t)i * w->strides[level]);
        }
    }
}

/* A nested array the pre-pass read (body_scan.c): rectangular, finite, at most 4 deep, so only
 * the checks on its shape are left. */
static void nested_from_slot(struct cv__parse *p, struct cv__slot *sl, const char *ptr,
                             int min_rank, int max_rank, struct cv__tensor_json *out) {
    sl->used = true;
    if (!check_shape(p, sl->dims, sl->rank, min_rank, max_rank, ptr) ||
        !alloc_tensor(p, sl->dims, sl->rank, out))
        return;
    CV_ASSERT(!sl->over && sl->data != NULL);
    memcpy(out->t.data, sl->data, (size_t)cv_tensor_numel(&out->t) * sizeof(float));
    out->form = CV_TENSOR_FORM_NESTED;
}

static void parse_nested(struct cv__parse *p, json_t *v, const char *ptr, int min_rank,
                         int max_rank, struct cv__tensor_json *out) {
    struct cv__slot *sl = json_array_size(v) == 0 ? cv__scan_find(p, ptr, false) : NULL;
    if (sl != NULL) {
        nested_from_slot(p, sl, ptr, min_rank, max_rank, out);
        return;
    }
    struct nested_walk w = {.p = p, .ptr = ptr};
    int64_t dims[4] = {0};
    /* The shape comes from the first element at each depth; stopping after four levels keeps
     * a deeply nested body from costing a walk. */
    json_t *cur = v;
    int rank = 0;
    while (json_is_array(cur)) {
        char at[CV__PTR_MAX];
        walk_ptr(&w, rank, at);
        if (rank == 4) {
            cv__fail(p, 422, "invalid_field", at, "arrays nest deeper than 4 levels");
            return;
        }
        if (json_array_size(cur) == 0) {
            cv__fail(p, 422, "invalid_field", at, "empty array: a tensor needs elements");
            return;
        }
        dims[rank] = (int64_t)json_array_size(cur);
        cur = json_array_get(cur, 0);
        w.idx[rank++] = 0;
    }
    if (!check_shape(p, dims, rank, min_rank, max_rank, ptr) || !alloc_tensor(p, dims, rank, out))
        return;
    out->form = CV_TENSOR_FORM_NESTED;
    w.rank = rank;
    w.dims = out->dims;
    w.out = out->t.data;
    for (int i = rank - 1; i >= 0; i--)
        w.strides[i] = i == rank - 1 ? 1 : w.strides[i + 1] * dims[i + 1];
    int failures = p->failures;
    nested_fill(&w, v, 0, 0);
    if (p->failures != failures)
        cv__tensor_json_free(out);
}

/* ---- {"shape", "data"} and {"shape", "dtype", "b64"} ------------------------------------- */

struct tensor_obj {
    json_t *shape, *data, *dtype, *b64;
};

static const struct cv__field tensor_obj_fields[] = {
    {"shape", cv__field_raw, offsetof(struct tensor_obj, shape), 0, 0, CV__FIELD_REQUIRED},
    {"data", cv__field_raw, offsetof(struct tensor_obj, data), 0, 0, 0},
    {"dtype", cv__field_raw, offsetof(struct tensor_obj, dtype), 0, 0, 0},
    {"b64", cv__field_raw, offsetof(struct tensor_obj, b64), 0, 0, 0},
};

/* Reads "shape": an array of 1 to 4 integers >= 1. */
static bool read_shape(struct cv__parse *p, json_t *v, const char *ptr, int64_t dims[4],
                       int *rank) {
    char child[CV__PTR_MAX];
    cv__ptr_key(child, ptr, "shape");
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (n < 1 || n > 4) {
        cv__fail(p, 422, "invalid_field", child, "must be an array of 1 to 4 integers");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(v, i);
        if (!json_is_integer(d) || json_integer_value(d) < 1) {
            char at[CV__PTR_MAX];
            cv__ptr_index(at, child, i);
            cv__fail(p, 422, "invalid_field", at, "a dimension must be an integer >= 1");
            ok = false;
            continue;
        }
        dims[i] = (int64_t)json_integer_value(d);
    }
    *rank = (int)n;
    return ok;
}

/* Base64 float32, little-endian as numpy's "<f4" writes it. */
static void read_b64(struct cv__parse *p, json_t *v, const char *ptr, struct cv__tensor_json *out) {
    int64_t numel = cv_tensor_numel(&out->t);
    size_t need = (size_t)numel * sizeof(float), got = 0, bad_at = 0;
    if (!json_is_string(v)) {
        cv__fail(p, 422, "invalid_field", ptr, "must be a base64 string, not %s",
                 cv__json_type_name(v));
        return;
    }
    const char *text = json_string_value(v);
    size_t text_len = json_string_length(v);
    /* The pre-pass leaves "" in place of the string and its characters in a slot: they are
     * what jansson would have decoded, so they are decoded straight into the tensor. */
    struct cv__slot *sl = text_len == 0 ? cv__scan_find(p, ptr, true) : NULL;
    if (sl != NULL) {
        sl->used = true;
        text = sl->text;
        text_len = sl->text_len;
    }
    int rc = cv_base64_decode(text, text_len, (uint8_t *)out->t.data, need, &got, &bad_at);
    if (rc == CV_EINVAL) {
        cv__fail(p, 422, "invalid_field", ptr, "invalid base64 at character %zu", bad_at);
        return;
    }
    if (rc != CV_OK || got != need) {
        cv__fail(p, 422, "invalid_field", ptr,
                 "holds %s bytes, the shape needs %zu (4 per float32 element)",
                 rc == CV_OK ? "fewer" : "more", need);
        return;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int64_t i = 0; i < numel; i++) {
        uint32_t u;
        memcpy(&u, &out->t.data[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&out->t.data[i], &u, 4);
    }
#endif
    for (int64_t i = 0; i < numel; i++) {
        if (!isfinite(out->t.data[i])) {
            cv__fail(p, 422, "invalid_field", ptr, "element %lld is NaN or infinite", (long long)i);
            return;
        }
    }
}

static void parse_object(struct cv__parse *p, json_t *v, const char *ptr, int min_rank,
                         int max_rank, struct cv__tensor_json *out) {
    struct tensor_obj o = {0};
    int failures = p->failures;
    cv__fields_parse(p, tensor_obj_fields, sizeof tensor_obj_fields / sizeof tensor_obj_fields[0],
                     v, ptr, &o);
    char child[CV__PTR_MAX];
    if (o.dtype != NULL &&
        !(json_is_string(o.dtype) && strcmp(json_string_value(o.dtype), "float32") == 0)) {
        cv__ptr_key(child, ptr, "dtype");
        cv__fail(p, 422, "invalid_field", child, "the only dtype is \"float32\"");
    }
    if ((o.data == NULL) == (o.b64 == NULL)) {
        cv__fail(p, 422, o.data == NULL ? "missing_field" : "invalid_field", ptr,
                 "a tensor object needs \"data\" or \"b64\", and not both");
    }
    int64_t dims[4];
    int rank = 0;
    if (o.shape == NULL || !read_shape(p, o.shape, ptr, dims, &rank) || p->failures != failures)
        return;
    if (!check_shape(p, dims, rank, min_rank, max_rank, ptr) || !alloc_tensor(p, dims, rank, out))
        return;
    int64_t numel = cv_tensor_numel(&out->t);
    if (o.data != NULL) {
        cv__ptr_key(child, ptr, "data");
        out->form = CV_TENSOR_FORM_FLAT;
        /* The pre-pass leaves [] in place of the numbers and reads them into a slot. */
        struct cv__slot *sl = json_is_array(o.data) && json_array_size(o.data) == 0
                                  ? cv__scan_find(p, child, false)
                                  : NULL;
        if (sl != NULL && sl->rank != 1)
            sl = NULL; /* nested arrays as "data": the jansson path words that error */
        int64_t data_n = sl != NULL              ? sl->dims[0]
                         : json_is_array(o.data) ? (int64_t)json_array_size(o.data)
                                                 : -1;
        if (sl != NULL)
            sl->used = true;
        if (data_n != numel) {
            char shape[64];
            cv__shape_str(shape, sizeof shape, dims, rank);
            cv__fail(p, 422, "invalid_field", child,
                     "must be a flat array of the %lld numbers of shape %s", (long long)numel,
                     shape);
        } else if (sl != NULL) {
            memcpy(out->t.data, sl->data, (size_t)numel * sizeof(float));
        } else {
            read_flat(p, o.data, child, out->t.data);
        }
    } else {
        cv__ptr_key(child, ptr, "b64");
        out->form = CV_TENSOR_FORM_B64;
        read_b64(p, o.b64, child, out);
    }
    if (p->failures != failures)
        cv__tensor_json_free(out);
}

void cv__tensor_parse(struct cv__parse *p, json_t *v, const char *ptr, int min_rank, int max_rank,
                      struct cv__tensor_json *out) {
    *out = (struct cv__tensor_json){0};
    if (json_is_array(v))
        parse_nested(p, v, ptr, min_rank, max_rank, out);
    else if (json_is_object(v))
        parse_object(p, v, ptr, min_rank, max_rank, out);
    else
        cv__fail(p, 422, "invalid_field", ptr,
                 "must be a tensor (nested arrays, or an object with \"shape\"), not %s",
                 cv__json_type_name(v));
}

void cv__tensor_json_free(struct cv__tensor_json *t) {
    if (t == NULL)
        return;
    cv_tensor_free(&t->t);
    *t = (struct cv__tensor_json){0};
}

void cv__field_tensor(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                      void *dst) {
    cv__tensor_parse(p, v, ptr, (int)f->lo, (int)f->hi, dst);
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Longest number cv__fmt_f32 writes, with the comma before it. */
#define F32_TEXT_MAX 18

static void write_numbers(struct cv__buf *b, const float *d, int64_t n) {
    /* Room for the longest text of every number, so the loop writes without checks. */
    cv__buf_reserve(b, (size_t)n * F32_TEXT_MAX + CV__NUM_MAX + 2);
    if (b->failed)
        return;
    char *o = b->data + b->len;
    *o++ = '[';
    for (int64_t i = 0; i < n; i++) {
        if (i > 0)
            *o++ = ',';
        o += cv__fmt_f32(o, d[i]);
    }
    *o++ = ']';
    b->len = (size_t)(o - b->data);
}

static void write_nested(struct cv__buf *b, const float *d, const int64_t *dims, int rank) {
    if (rank == 1) {
        write_numbers(b, d, dims[0]);
        return;
    }
    int64_t stride = cv__dims_numel(dims + 1, rank - 1);
    cv__buf_putc(b, '[');
    for (int64_t i = 0; i < dims[0]; i++) {
        if (i > 0)
            cv__buf_putc(b, ',');
        write_nested(b, d + i * stride, dims + 1, rank - 1);
    }
    cv__buf_putc(b, ']');
}

static void write_b64(struct cv__buf *b, const float *d, int64_t n) {
    size_t bytes = (size_t)n * sizeof(float);
    size_t chars = cv_base64_encoded_len(bytes);
    cv__buf_reserve(b, chars + 2);
    if (b->failed)
        return;
    const uint8_t *src = (const uint8_t *)d;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    uint8_t *le = malloc(bytes);
    if (le == NULL) {
        b->failed = true;
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &d[i], 4);
        u = __builtin_bswap32(u);
        memcpy(le + 4 * i, &u, 4);
    }
    src = le;
#endif
    cv__buf_putc(b, '"');
    cv_base64_encode(src, bytes, b->data + b->len);
    b->len += chars;
    cv__buf_putc(b, '"');
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    free(le);
#endif
}

void cv__tensor_write(struct cv__buf *b, const struct cv_tensor *t, int rank,
                      enum cv_tensor_form form) {
    const int64_t d4[4] = {t->n, t->c, t->h, t->w};
    const int64_t *dims = d4 + 4 - rank;
    int64_t numel = cv_tensor_numel(t);
    CV_ASSERT(rank >= 1 && rank <= 4 && cv__dims_numel(dims, rank) == numel);
    if (form == CV_TENSOR_FORM_NESTED) {
        /* One reservation for the whole tensor at its longest, rather than a regrowth per row:
         * the pages that stay unwritten cost nothing. */
        cv__buf_reserve(b, (size_t)numel * (F32_TEXT_MAX + 2) + CV__NUM_MAX);
        write_nested(b, t->data, dims, rank);
        return;
    }
    cv__buf_puts(b, "{\"shape\":[");
    for (int i = 0; i < rank; i++) {
        if (i > 0)
            cv__buf_putc(b, ',');
        cv__buf_put_i64(b, dims[i]);
    }
    if (form == CV_TENSOR_FORM_B64) {
        cv__buf_puts(b, "],\"dtype\":\"float32\",\"b64\":");
        write_b64(b, t->data, numel);
    } else {
        cv__buf_puts(b, "],\"data\":");
        write_numbers(b, t->data, numel);
    }
    cv__buf_putc(b, '}');
}

static const struct {
    const char *name;
    enum cv_tensor_form form;
} out_forms[] = {
    {"nested", CV_TENSOR_FORM_NESTED},
    {"flat", CV_TENSOR_FORM_FLAT},
    {"b64", CV_TENSOR_FORM_B64},
};

void cv__field_out_form(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                        void *dst) {
    struct cv__out_form *o = dst;
    for (size_t i = 0; json_is_string(v) && i < sizeof out_forms / sizeof out_forms[0]; i++) {
        if (strcmp(json_string_value(v), out_forms[i].name) == 0) {
            *o = (struct cv__out_form){.given = true, .form = out_forms[i].form};
            return;
        }
    }
    cv__fail(p, 422, "invalid_field", ptr, "must be \"nested\", \"flat\" or \"b64\"");
}

enum cv_tensor_form cv__out_form_pick(const struct cv__out_form *o,
                                      enum cv_tensor_form input_form) {
    return o->given ? o->form : input_form;
}

/* ---- bias -------------------------------------------------------------------------------- */

void cv__field_bias(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst) {
    struct cv__bias_json *b = dst;
    char why[96];
    if (json_is_number(v)) {
        if (!element_value(v, &b->scalar, why, sizeof why)) {
            cv__fail(p, 422, "invalid_field", ptr, "%s", why);
            return;
        }
        b->present = true;
        return;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    struct cv__slot *sl = json_is_array(v) && n == 0 ? cv__scan_find(p, ptr, false) : NULL;
    if (sl != NULL && sl->rank == 1) {
        sl->used = true;
        if (!cv__check_numel(p, sl->dims[0], ptr, "the bias"))
            return;
        float *values = malloc((size_t)sl->dims[0] * sizeof(float));
        if (values == NULL) {
            cv__fail_nomem(p);
            return;
        }
        memcpy(values, sl->data, (size_t)sl->dims[0] * sizeof(float));
        *b = (struct cv__bias_json){
            .present = true, .is_array = true, .values = values, .n = sl->dims[0]};
        return;
    }
    if (n == 0) {
        cv__fail(p, 422, "invalid_field", ptr,
                 "must be a number or a non-empty array of numbers, one per output channel");
        return;
    }
    if (!cv__check_numel(p, (int64_t)n, ptr, "the bias"))
        return;
    float *values = malloc(n * sizeof(float));
    if (values == NULL) {
        cv__fail_nomem(p);
        return;
    }
    int failures = p->failures;
    read_flat(p, v, ptr, values);
    if (p->failures != failures) {
        free(values);
        return;
    }
    *b = (struct cv__bias_json){
        .present = true, .is_array = true, .values = values, .n = (int64_t)n};
}

void cv__bias_json_free(struct cv__bias_json *b) {
    if (b == NULL)
        return;
    free(b->values);
    *b = (struct cv__bias_json){0};
}

void cv__bias_expand(struct cv__parse *p, const struct cv__bias_json *b, int64_t cout,
                     const char *ptr, float **out) {
    *out = NULL;
    if (b->is_array && b->n != cout) {
        cv__fail(p, 422, "shape_mismatch", ptr,
                 "has %lld entries, one per output channel needs %lld", (long long)b->n,
                 (long long)cout);
        return;
    }
    float *v = malloc((size_t)cout * sizeof(float));
    if (v == NULL) {
        cv__fail_nomem(p);
        return;
    }
    for (int64_t i = 0; i < cout; i++)
        v[i] = b->is_array ? b->values[i] : b->scalar;
    *out = v;
}
