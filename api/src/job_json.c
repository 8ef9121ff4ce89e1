/* Jobs in JSON: the "kind" of a POST /jobs body, and job resources for GET /jobs[/{id}]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

/* The result without its "losses" member (a 42,000-step job's losses are half a megabyte;
 * GET /jobs/{id} shows them only with ?include=losses), malloc'd; NULL when it has none
 * (then the text is shown as it is). */
static char *result_without_losses(const char *result_json) {
    /* convd wrote this text: "losses" is a flat array of numbers, followed by a comma. */
    const char *at = result_json != NULL ? strstr(result_json, "\"losses\":[") : NULL;
    const char *close = at != NULL ? strchr(at, ']') : NULL;
    if (close == NULL)
        return NULL;
    size_t skip = (size_t)(close + 1 - at) + (close[1] == ',' ? 1 : 0);
    size_t head = (size_t)(at - result_json), total = strlen(result_json);
    if (close[1] != ',' && head > 0 && result_json[head - 1] == ',')
        head--, skip++; /* the last member: drop the comma before it instead */
    char *out = malloc(total - skip + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, result_json, head);
    memcpy(out + head, result_json + head + skip, total - head - skip + 1);
    return out;
}

static const char *const kind_names[] = {
    [CV_API_JOB_KIND_CORR2D] = "corr2d",
    [CV_API_JOB_KIND_TRAIN] = "train",
};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

const char *cv_api_job_kind_name(enum cv_api_job_kind kind) {
    return (size_t)kind < N_KINDS ? kind_names[kind] : "unknown";
}

void cv__field_kind(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst) {
    (void)dst; /* the route already knows its kind: the field is only checked */
    const char *want = kind_names[(int)f->lo];
    if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0)
        cv__fail(p, 422, "invalid_field", ptr, "must be \"%s\" for this request", want);
}

int cv_api_job_kind_peek(const char *body, size_t len, enum cv_api_job_kind *kind,
                         struct cv_api_error *err) {
    CV_ASSERT(kind != NULL && err != NULL);
    memset(err, 0, sizeof *err);
    struct cv_api_limits lim = {0, 0};
    struct cv__parse p = {.lim = &lim, .err = err};
    json_t *root;
    if (cv__body_load_skim(&p, body, len, &root) != CV_OK)
        return p.status;
    json_t *v = json_object_get(root, "kind");
    const char *name = json_is_string(v) ? json_string_value(v) : NULL;
    bool found = false;
    for (size_t i = 0; name != NULL && i < N_KINDS && !found; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (enum cv_api_job_kind)i;
            found = true;
        }
    }
    if (v == NULL || json_is_null(v))
        cv__fail(&p, 422, "missing_field", "/kind", "required: \"train\" or \"corr2d\"");
    else if (!found)
        cv__fail(&p, 422, "invalid_field", "/kind", "must be \"train\" or \"corr2d\"");
    json_decref(root);
    return p.status;
}

static void put_view(struct cv__buf *b, const struct cv_api_job_view *v, bool with_result) {
    cv__buf_puts(b, "{\"id\":");
    cv__buf_put_str(b, v->id);
    cv__buf_puts(b, ",\"kind\":");
    cv__buf_put_str(b, v->kind);
    cv__buf_puts(b, ",\"name\":");
    cv__buf_put_str_or_null(b, v->name);
    cv__buf_puts(b, ",\"labels\":");
    cv__buf_puts(b, v->labels_json != NULL ? v->labels_json : "{}");
    cv__buf_puts(b, ",\"params\":");
    cv__buf_puts(b, v->params_json != NULL ? v->params_json : "null");
    cv__buf_puts(b, ",\"status\":");
    cv__buf_put_str(b, v->status);
    cv__buf_puts(b, ",\"attempt\":");
    cv__buf_put_i64(b, v->attempt);
    const struct {
        const char *name, *value;
    } times[] = {
        {",\"created_at\":", v->created_at},
        {",\"started_at\":", v->started_at},
        {",\"finished_at\":", v->finished_at},
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        cv__buf_puts(b, times[i].name);
        cv__buf_put_str_or_null(b, times[i].value);
    }
    cv__buf_puts(b, ",\"progress\":{\"step\":");
    cv__buf_put_i64(b, v->step);
    cv__buf_puts(b, ",\"steps\":");
    cv__buf_put_i64(b, v->steps);
    cv__buf_puts(b, "},\"loss\":");
    cv__buf_put_f32(b, (float)v->loss);
    cv__buf_puts(b, ",\"elapsed_ms\":");
    cv__buf_put_ms(b, v->elapsed_ms);
    cv__buf_puts(b, ",\"steps_per_s\":");
    if (v->steps_per_s == v->steps_per_s) /* not NaN */
        cv__buf_put_f64(b, round(v->steps_per_s * 10.0) / 10.0);
    else
        cv__buf_puts(b, "null");
    cv__buf_puts(b, ",\"links\":{\"self\":\"/jobs/");
    cv__buf_puts(b, v->id); /* ids are "j-" + hex: nothing to escape */
    cv__buf_puts(b, "\",\"events\":\"/jobs/");
    cv__buf_puts(b, v->id);
    cv__buf_puts(b, "/events\"}");
    if (with_result) {
        cv__buf_puts(b, ",\"result\":");
        char *brief = v->omit_losses ? result_without_losses(v->result_json) : NULL;
        const char *text = brief != NULL ? brief : v->result_json;
        cv__buf_puts(b, text != NULL ? text : "null");
        free(brief);
    }
    cv__buf_puts(b, ",\"error\":");
    if (v->error_code != NULL) {
        cv__buf_puts(b, "{\"code\":");
        cv__buf_put_str(b, v->error_code);
        cv__buf_puts(b, ",\"detail\":");
        cv__buf_put_str_or_null(b, v->error_detail);
        cv__buf_putc(b, '}');
    } else {
        cv__buf_puts(b, "null");
    }
    cv__buf_putc(b, '}');
}

char *cv_api_job_dump(const struct cv_api_job_view *v, bool with_result, size_t *len) {
    struct cv__buf b = {0};
    put_view(&b, v, with_result);
    return cv__buf_finish(&b, len);
}

char *cv_api_job_list_dump(const struct cv_api_job_view *v, size_t n, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            cv__buf_putc(&b, ',');
        put_view(&b, &v[i], false);
    }
    cv__buf_puts(&b, "]}");
    return cv__buf_finish(&b, len);
}
