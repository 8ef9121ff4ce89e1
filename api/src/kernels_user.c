/* Named kernels of the daemon's users (POST/GET/DELETE /kernels): the body of a save, the
 * replies, and the hook through which "kernel": "my_edge" and "init": "my_edge" find them.
 * Where they are kept is the server's business (a resolver it installs). */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

#define USER_NAME_MAX 64

static cv_api_kernel_resolver resolver_fn;
static void *resolver_user;

void cv_api_kernels_set_resolver(cv_api_kernel_resolver fn, void *user) {
    resolver_fn = fn;
    resolver_user = user;
}

bool cv__kernel_user_lookup(struct cv__parse *p, const char *name, const char *ptr,
                            struct cv__tensor_json *out) {
    if (resolver_fn == NULL)
        return false;
    struct cv_tensor t = {0};
    int rank = 0;
    if (!resolver_fn(resolver_user, name, &t, &rank))
        return false;
    const int64_t full[4] = {t.n, t.c, t.h, t.w};
    *out = (struct cv__tensor_json){.t = t, .rank = rank, .form = CV_TENSOR_FORM_NESTED};
    for (int i = 0; i < rank; i++)
        out->dims[i] = full[4 - rank + i];
    (void)p;
    (void)ptr;
    return true;
}

bool cv_api_kernel_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > USER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_' && name[i] != '-' && name[i] != '.')
            return false;
    return true;
}

struct save_spec {
    json_t *name, *from_job;
    struct cv__tensor_json weight;
};

static const struct cv__field save_fields[] = {
    {"name", cv__field_raw, offsetof(struct save_spec, name), 0, 0, CV__FIELD_REQUIRED},
    {"from_job", cv__field_raw, offsetof(struct save_spec, from_job), 0, 0, 0},
    {"weight", cv__field_tensor, offsetof(struct save_spec, weight), 2, 4, 0},
};

int cv_api_kernel_save_parse(const char *body, size_t len, const struct cv_api_limits *lim,
                             struct cv_api_kernel_save *out, struct cv_api_error *err) {
    CV_ASSERT(lim != NULL && out != NULL && err != NULL);
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    struct cv__parse p = {.lim = lim, .err = err};
    struct save_spec s = {0};
    json_t *root = NULL;
    if (cv__body_load(&p, body, len, &root) == CV_OK)
        cv__fields_parse(&p, save_fields, sizeof save_fields / sizeof save_fields[0], root, "", &s);
    if (p.status == CV_OK) {
        const char *name = json_is_string(s.name) ? json_string_value(s.name) : "";
        if (!cv_api_kernel_name_ok(name))
            cv__fail(&p, 422, "invalid_field", "/name", "must be 1 to %d of A-Z a-z 0-9 _ - .",
                     USER_NAME_MAX);
        else if (cv__kernel_is_builtin(name))
            cv__fail(&p, 409, "name_taken", "/name",
                     "\"%s\" is a built-in kernel and cannot be overwritten", name);
        else
            snprintf(out->name, sizeof out->name, "%s", name);
    }
    if (p.status == CV_OK) {
        bool has_job = s.from_job != NULL && !json_is_null(s.from_job);
        if (has_job == (s.weight.rank != 0))
            cv__fail(&p, 422, has_job ? "invalid_field" : "missing_field",
                     has_job ? "/weight" : "/from_job", "give exactly one of from_job and weight");
        else if (has_job && (!json_is_string(s.from_job) ||
                             strlen(json_string_value(s.from_job)) >= sizeof out->from_job))
            cv__fail(&p, 422, "invalid_field", "/from_job", "must be a job id, \"j-...\"");
        else if (has_job)
            snprintf(out->from_job, sizeof out->from_job, "%s", json_string_value(s.from_job));
        else {
            out->weight = s.weight.t;
            out->rank = s.weight.rank;
            s.weight.t = (struct cv_tensor){0};
        }
    }
    cv__tensor_json_free(&s.weight);
    json_decref(root);
    if (p.status != CV_OK)
        cv_api_kernel_save_free(out);
    return p.status;
}

void cv_api_kernel_save_free(struct cv_api_kernel_save *k) {
    if (k == NULL)
        return;
    cv_tensor_free(&k->weight);
    memset(k, 0, sizeof *k);
}

static void put_user(struct cv__buf *b, const struct cv_api_user_kernel *k) {
    cv__buf_puts(b, "{\"name\":");
    cv__buf_put_str(b, k->name);
    cv__buf_puts(b, ",\"builtin\":false,\"source\":");
    cv__buf_put_str_or_null(b, k->source);
    cv__buf_puts(b, ",\"created_at\":");
    cv__buf_put_str_or_null(b, k->created_at);
    cv__buf_puts(b, ",\"shape\":[");
    const int64_t full[4] = {k->weight->n, k->weight->c, k->weight->h, k->weight->w};
    for (int i = 0; i < k->rank; i++) {
        if (i > 0)
            cv__buf_putc(b, ',');
        cv__buf_put_i64(b, full[4 - k->rank + i]);
    }
    cv__buf_puts(b, "],\"kernel\":");
    cv__tensor_write(b, k->weight, k->rank, CV_TENSOR_FORM_NESTED);
    cv__buf_putc(b, '}');
}

char *cv_api_user_kernel_dump(const struct cv_api_user_kernel *k, size_t *len) {
    struct cv__buf b = {0};
    put_user(&b, k);
    return cv__buf_finish(&b, len);
}

char *cv_api_kernels_dump_with(const struct cv_api_user_kernel *user, size_t n, size_t *len) {
    size_t blen = 0;
    char *builtin = cv_api_kernels_dump(&blen);
    if (builtin == NULL || blen < 3)
        return builtin;
    struct cv__buf b = {0};
    cv__buf_put(&b, builtin, blen - 2); /* without the closing "]}" */
    free(builtin);
    for (size_t i = 0; i < n; i++) {
        cv__buf_putc(&b, ',');
        put_user(&b, &user[i]);
    }
    cv__buf_puts(&b, "]}");
    return cv__buf_finish(&b, len);
}

int cv_api_result_weight(const char *result_json, size_t len, const struct cv_api_limits *lim,
                         struct cv_tensor *out, int *rank) {
    *out = (struct cv_tensor){0};
    *rank = 0;
    json_t *root = json_loadb(result_json, len, 0, NULL);
    json_t *weight = json_object_get(root, "weight");
    int rc = CV_EINVAL;
    if (weight != NULL && !json_is_null(weight)) {
        /* One tensor parser for every form (nested, flat, b64): a save body around it. */
        json_t *body = json_pack("{s:s, s:O}", "name", "from_job", "weight", weight);
        char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
        struct cv_api_kernel_save k;
        struct cv_api_error err;
        if (text != NULL && cv_api_kernel_save_parse(text, strlen(text), lim, &k, &err) == CV_OK) {
            *out = k.weight;
            *rank = k.rank;
            k.weight = (struct cv_tensor){0};
            cv_api_kernel_save_free(&k);
            rc = CV_OK;
        }
        free(text);
        json_decref(body);
    }
    json_decref(root);
    return rc;
}
