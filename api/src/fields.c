/* Parsing bodies by field tables: loading the JSON, JSON pointers, collecting errors, and the
 * generic rows (ints, numbers, bools, int pairs). Each endpoint only declares its table. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api_impl.h"

void cv_api_init(void) {
    json_object_seed(0);
}

void cv__fail(struct cv__parse *p, int status, const char *code, const char *pointer,
              const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    p->failures++;
    if (p->status == CV_OK) {
        cv__error_vset(p->err, status, code, pointer, fmt, ap);
        p->status = status == 413 ? CV_ETOOBIG : status == 503 ? CV_ENOMEM : CV_EINVAL;
        /* Field details are written to sit beside their pointer ("must be an integer"); the
         * top-level detail stands alone, so it names the field. */
        if (pointer != NULL) {
            char detail[sizeof p->err->detail];
            memcpy(detail, p->err->detail, sizeof detail);
            if ((size_t)snprintf(p->err->detail, sizeof p->err->detail, "%s: %s", pointer,
                                 detail) >= sizeof p->err->detail)
                cv__utf8_trim(p->err->detail, sizeof p->err->detail);
        }
    } else if (pointer != NULL) {
        cv__error_vadd(p->err, pointer, fmt, ap);
    }
    va_end(ap);
}

void cv__fail_nomem(struct cv__parse *p) {
    /* Out of memory outranks whatever was found before: the reply is "try again", not "fix
     * your request", and the earlier findings may be incomplete. */
    p->status = CV_OK;
    cv__fail(p, 503, "out_of_memory", NULL, "the server ran out of memory");
}

bool cv__errors_full(const struct cv__parse *p) {
    return p->err->n_errors >= CV_API_MAX_FIELD_ERRORS;
}

int cv__body_load(struct cv__parse *p, const char *body, size_t len, json_t **root) {
    json_error_t je;
    *root = NULL;
    /* JSON_DECODE_ANY so that a scalar body is "not an object" rather than a syntax error. */
    json_t *r = json_loadb(body != NULL ? body : "", body != NULL ? len : 0,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (r == NULL) {
        enum json_error_code code = json_error_code(&je);
        if (code == json_error_out_of_memory) {
            cv__fail_nomem(p);
            return p->status;
        }
        bool dup = code == json_error_duplicate_key;
        cv__fail(p, 400, dup ? "duplicate_key" : "invalid_json", NULL,
                 "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        p->err->line = je.line > 0 ? je.line : 1;
        p->err->column = je.column;
        p->err->position = je.position;
        return p->status;
    }
    if (!json_is_object(r)) {
        cv__fail(p, 400, "not_an_object", NULL, "the body must be a JSON object, not %s",
                 cv__json_type_name(r));
        json_decref(r);
        return p->status;
    }
    *root = r;
    return CV_OK;
}

void cv__ptr_key(char out[CV__PTR_MAX], const char *parent, const char *key) {
    size_t o = (size_t)snprintf(out, CV__PTR_MAX, "%s/", parent);
    for (const char *k = key; *k != '\0' && o + 3 < CV__PTR_MAX; k++) {
        if (*k == '~' || *k == '/') {
            out[o++] = '~';
            out[o++] = *k == '~' ? '0' : '1';
        } else {
            out[o++] = *k;
        }
    }
    if (o >= CV__PTR_MAX)
        o = CV__PTR_MAX - 1;
    out[o] = '\0';
}

void cv__ptr_index(char out[CV__PTR_MAX], const char *parent, size_t index) {
    snprintf(out, CV__PTR_MAX, "%s/%zu", parent, index);
}

const char *cv__json_type_name(const json_t *v) {
    static const char *const names[] = {
        [JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
        [JSON_INTEGER] = "a number", [JSON_REAL] = "a number",  [JSON_TRUE] = "a boolean",
        [JSON_FALSE] = "a boolean",  [JSON_NULL] = "null",
    };
    return v == NULL ? "nothing" : names[json_typeof(v)];
}

int cv__body_parse(struct cv__parse *p, const char *body, size_t len, const struct cv__field *tab,
                   size_t n, void *spec) {
    json_t *root;
    if (cv__body_load(p, body, len, &root) != CV_OK)
        return p->status;
    cv__fields_parse(p, tab, n, root, "", spec);
    /* Nothing parsed keeps a reference into the tree: tensors are copied out of it. */
    json_decref(root);
    return p->status;
}

static const struct cv__field *field_find(const struct cv__field *tab, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].name, key) == 0)
            return &tab[i];
    return NULL;
}

void cv__fields_parse(struct cv__parse *p, const struct cv__field *tab, size_t n, json_t *obj,
                      const char *ptr, void *spec) {
    char child[CV__PTR_MAX];
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (field_find(tab, n, key) == NULL) {
            cv__ptr_key(child, ptr, key);
            cv__fail(p, 422, "unknown_field", child, "unknown field");
        }
    }
    for (size_t i = 0; i < n; i++) {
        cv__ptr_key(child, ptr, tab[i].name);
        v = json_object_get(obj, tab[i].name);
        if (v == NULL || json_is_null(v)) {
            if (tab[i].flags & CV__FIELD_REQUIRED)
                cv__fail(p, 422, "missing_field", child, "a required field is missing");
            continue;
        }
        tab[i].parse(p, &tab[i], v, child, (char *)spec + tab[i].offset);
    }
}

/* The range of a row for messages: "between 1 and 20", "> 0", "in [0, 1)". */
static void range_str(char *out, size_t cap, const struct cv__field *f) {
    bool lo_inf = isinf(f->lo), hi_inf = isinf(f->hi);
    if (lo_inf && hi_inf)
        snprintf(out, cap, "finite");
    else if (hi_inf)
        snprintf(out, cap, "%s %.10g", (f->flags & CV__FIELD_LO_OPEN) ? ">" : ">=", f->lo);
    else if (lo_inf)
        snprintf(out, cap, "%s %.10g", (f->flags & CV__FIELD_HI_OPEN) ? "<" : "<=", f->hi);
    else
        snprintf(out, cap, "in %c%.10g, %.10g%c", (f->flags & CV__FIELD_LO_OPEN) ? '(' : '[', f->lo,
                 f->hi, (f->flags & CV__FIELD_HI_OPEN) ? ')' : ']');
}

static bool in_range(const struct cv__field *f, double x) {
    bool lo_ok = (f->flags & CV__FIELD_LO_OPEN) ? x > f->lo : x >= f->lo;
    bool hi_ok = (f->flags & CV__FIELD_HI_OPEN) ? x < f->hi : x <= f->hi;
    return lo_ok && hi_ok;
}

static void fail_range(struct cv__parse *p, const struct cv__field *f, const char *ptr,
                       const char *what) {
    char range[64];
    range_str(range, sizeof range, f);
    cv__fail(p, 422, "invalid_field", ptr, "must be %s %s", what, range);
}

/* Reads an int within the row's bounds; false (p failed) otherwise. */
static bool get_int(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    int64_t *out) {
    if (!json_is_integer(v)) {
        if (json_is_real(v))
            cv__fail(p, 422, "invalid_field", ptr, "must be an integer, not %.9g",
                     json_real_value(v));
        else
            cv__fail(p, 422, "invalid_field", ptr, "must be an integer, not %s",
                     cv__json_type_name(v));
        return false;
    }
    json_int_t x = json_integer_value(v);
    if (!in_range(f, (double)x)) {
        fail_range(p, f, ptr, "an integer");
        return false;
    }
    *out = (int64_t)x;
    return true;
}

void cv__field_int(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst) {
    get_int(p, f, v, ptr, dst);
}

void cv__field_pair(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst) {
    int64_t *pair = dst;
    if (json_is_integer(v)) {
        if (get_int(p, f, v, ptr, &pair[0]))
            pair[1] = pair[0];
        return;
    }
    if (!json_is_array(v) || json_array_size(v) != 2) {
        cv__fail(p, 422, "invalid_field", ptr, "must be an integer or [rows, columns]");
        return;
    }
    char child[CV__PTR_MAX];
    for (size_t i = 0; i < 2; i++) {
        cv__ptr_index(child, ptr, i);
        get_int(p, f, json_array_get(v, i), child, &pair[i]);
    }
}

/* Reads a finite number within the row's bounds and the float32 range. */
static bool get_number(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                       double *out) {
    if (!json_is_number(v)) {
        cv__fail(p, 422, "invalid_field", ptr, "must be a number, not %s", cv__json_type_name(v));
        return false;
    }
    double x = json_number_value(v);
    if (!(fabs(x) < CV__F32_LIMIT)) {
        cv__fail(p, 422, "invalid_field", ptr, "%.9g is outside the float32 range", x);
        return false;
    }
    if (!in_range(f, x)) {
        fail_range(p, f, ptr, "a number");
        return false;
    }
    *out = x;
    return true;
}

void cv__field_f32(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst) {
    double x;
    if (!get_number(p, f, v, ptr, &x))
        return;
    /* The bound must hold for the float32 the compute layer gets too: lr 1e-50 is 0 there. */
    if (!in_range(f, (float)x)) {
        fail_range(p, f, ptr, "a float32");
        return;
    }
    *(float *)dst = (float)x;
}

void cv__field_f64(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst) {
    get_number(p, f, v, ptr, dst);
}

void cv__field_bool(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst) {
    if (!json_is_boolean(v)) {
        cv__fail(p, 422, "invalid_field", ptr, "must be true or false, not %s",
                 cv__json_type_name(v));
        return;
    }
    *(bool *)dst = json_is_true(v);
}

void cv__field_raw(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst) {
    *(json_t **)dst = v;
}
