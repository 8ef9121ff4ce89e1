/* What a job records besides its work: the optional "name" and "labels" of a submission, the
 * settings of a job as JSON ("params"), and the label filter of GET /jobs?label=k=v. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

#define META_TEXT_MAX 64
#define LABELS_MAX    16

void cv_api_job_meta_free(struct cv_api_job_meta *m) {
    if (m == NULL)
        return;
    free(m->name);
    free(m->labels_json);
    m->name = m->labels_json = NULL;
}

/* A name or label text: 1..64 printable characters (no control characters). */
static bool text_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > META_TEXT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* A label key: 1..64 of [A-Za-z0-9_.-/], so that "?label=k=v" needs no escaping for it. */
static bool key_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > META_TEXT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr("_.-/", s[i]) == NULL)
            return false;
    return true;
}

void cv__field_name(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst) {
    struct cv_api_job_meta *m = dst;
    if (!json_is_string(v) || !text_ok(json_string_value(v))) {
        cv__fail(p, 422, "invalid_field", ptr, "must be a string of 1 to %d printable characters",
                 META_TEXT_MAX);
        return;
    }
    m->name = strdup(json_string_value(v));
    if (m->name == NULL)
        cv__fail_nomem(p);
}

void cv__field_labels(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                      void *dst) {
    struct cv_api_job_meta *m = dst;
    if (!json_is_object(v) || json_object_size(v) > LABELS_MAX) {
        cv__fail(p, 422, "invalid_field", ptr,
                 "must be an object of at most %d string labels, {\"key\": \"value\"}", LABELS_MAX);
        return;
    }
    const char *key;
    json_t *val;
    char child[CV__PTR_MAX];
    json_object_foreach(v, key, val) {
        cv__ptr_key(child, ptr, key);
        if (!key_ok(key))
            cv__fail(p, 422, "invalid_field", child,
                     "a label key is 1 to %d of A-Z a-z 0-9 _ . - /", META_TEXT_MAX);
        else if (!json_is_string(val) || !text_ok(json_string_value(val)))
            cv__fail(p, 422, "invalid_field", child,
                     "a label value is a string of 1 to %d printable characters", META_TEXT_MAX);
    }
    if (p->status != CV_OK)
        return;
    m->labels_json = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (m->labels_json == NULL)
        cv__fail_nomem(p);
}

bool cv_api_labels_match(const char *labels_json, const char *selector) {
    const char *eq = strchr(selector, '=');
    if (eq == NULL || labels_json == NULL)
        return false;
    json_t *labels = json_loads(labels_json, 0, NULL);
    if (labels == NULL)
        return false;
    char key[META_TEXT_MAX + 1];
    size_t kn = (size_t)(eq - selector);
    bool hit = false;
    if (kn <= META_TEXT_MAX) {
        memcpy(key, selector, kn);
        key[kn] = '\0';
        json_t *v = json_object_get(labels, key);
        hit = json_is_string(v) && strcmp(json_string_value(v), eq + 1) == 0;
    }
    json_decref(labels);
    return hit;
}

bool cv_api_label_selector_ok(const char *selector) {
    const char *eq = strchr(selector, '=');
    if (eq == NULL || eq == selector || (size_t)(eq - selector) > META_TEXT_MAX)
        return false;
    char key[META_TEXT_MAX + 1];
    memcpy(key, selector, (size_t)(eq - selector));
    key[eq - selector] = '\0';
    return key_ok(key) && text_ok(eq + 1);
}

/* ---- params ---------------------------------------------------------------------------------- */

static void put_pair(struct cv__buf *b, const char *name, int64_t a, int64_t c) {
    cv__buf_puts(b, name);
    cv__buf_putc(b, '[');
    cv__buf_put_i64(b, a);
    cv__buf_putc(b, ',');
    cv__buf_put_i64(b, c);
    cv__buf_putc(b, ']');
}

/* The members every job's params share: shapes and geometry. */
static void put_shapes(struct cv__buf *b, const struct cv_tensor *x, const struct cv_tensor *k,
                       const struct cv_conv2d_geom *g) {
    put_pair(b, "\"kernel_size\":", k->h, k->w);
    cv__buf_puts(b, ",\"in_channels\":");
    cv__buf_put_i64(b, k->c);
    cv__buf_puts(b, ",\"out_channels\":");
    cv__buf_put_i64(b, k->n);
    cv__buf_puts(b, ",\"input_shape\":[");
    cv__buf_put_i64(b, x->n);
    cv__buf_putc(b, ',');
    cv__buf_put_i64(b, x->c);
    cv__buf_putc(b, ',');
    cv__buf_put_i64(b, x->h);
    cv__buf_putc(b, ',');
    cv__buf_put_i64(b, x->w);
    cv__buf_putc(b, ']');
    cv__buf_puts(b, ",\"padding\":[");
    const int64_t pads[4] = {g->pad_top, g->pad_bottom, g->pad_left, g->pad_right};
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            cv__buf_putc(b, ',');
        cv__buf_put_i64(b, pads[i]);
    }
    cv__buf_putc(b, ']');
    put_pair(b, ",\"stride\":", g->stride_h, g->stride_w);
    put_pair(b, ",\"dilation\":", g->dil_h, g->dil_w);
}

char *cv_api_train_params_dump(const struct cv_train_request *req, size_t *len) {
    struct cv__buf b = {0};
    const struct cv_train_params *tp = &req->params;
    cv__buf_putc(&b, '{');
    put_shapes(&b, &req->x, &req->weight, &tp->geom);
    cv__buf_puts(&b, ",\"bias\":");
    cv__buf_puts(&b, tp->use_bias ? "true" : "false");
    cv__buf_puts(&b, ",\"loss\":");
    cv__buf_put_str(&b, cv_loss_kind_name(tp->loss));
    cv__buf_puts(&b, ",\"optimizer\":");
    cv__buf_put_str(&b, cv_optim_kind_name(tp->optim.kind));
    cv__buf_puts(&b, ",\"lr\":");
    cv__buf_put_f32(&b, tp->optim.lr);
    if (tp->optim.kind == CV_OPTIM_KIND_MOMENTUM) {
        cv__buf_puts(&b, ",\"momentum\":");
        cv__buf_put_f32(&b, tp->optim.momentum);
    } else if (tp->optim.kind == CV_OPTIM_KIND_ADAM) {
        cv__buf_puts(&b, ",\"beta1\":");
        cv__buf_put_f32(&b, tp->optim.beta1);
        cv__buf_puts(&b, ",\"beta2\":");
        cv__buf_put_f32(&b, tp->optim.beta2);
        cv__buf_puts(&b, ",\"eps\":");
        cv__buf_put_f32(&b, tp->optim.eps);
    }
    cv__buf_puts(&b, ",\"steps\":");
    cv__buf_put_i64(&b, tp->steps);
    cv__buf_puts(&b, ",\"seed\":");
    cv__buf_put_u64(&b, req->seed);
    cv__buf_puts(&b, ",\"report_every\":");
    cv__buf_put_i64(&b, req->report_every);
    cv__buf_puts(&b, ",\"stop_loss\":");
    if (tp->has_stop_loss)
        cv__buf_put_f64(&b, tp->stop_loss);
    else
        cv__buf_puts(&b, "null");
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}

char *cv_api_corr2d_params_dump(const struct cv_corr2d_request *req, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_putc(&b, '{');
    put_shapes(&b, &req->x, &req->k, &req->geom);
    cv__buf_puts(&b, ",\"bias\":");
    cv__buf_puts(&b, req->bias != NULL ? "true" : "false");
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}
