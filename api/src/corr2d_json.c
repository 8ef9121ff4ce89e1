/* POST /corr2d: the body -> struct cv_corr2d_request, and the reply.
 *
 * Parsing runs in two phases. The field table reads every field on its own and collects what
 * is wrong with each; only when all are well formed does the second phase fit them together
 * (ranks, channels, geometry, bias length), since those checks need every field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

struct corr2d_spec {
    struct cv__tensor_json x, k;
    struct cv__bias_json bias;
    struct cv__geom_json geom;
    struct cv__out_form out_form;
    struct cv_api_job_meta meta;
};

static void field_kernel(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                         void *dst) {
    if (cv__kernel_is_named(v))
        cv__kernel_named_parse(p, v, ptr, dst);
    else
        cv__tensor_parse(p, v, ptr, (int)f->lo, (int)f->hi, dst);
}

static const struct cv__field corr2d_fields[] = {
    {"input", cv__field_tensor, offsetof(struct corr2d_spec, x), 2, 4, CV__FIELD_REQUIRED},
    {"kernel", field_kernel, offsetof(struct corr2d_spec, k), 2, 4, CV__FIELD_REQUIRED},
    {"bias", cv__field_bias, offsetof(struct corr2d_spec, bias), 0, 0, 0},
    CV__GEOM_FIELDS(struct corr2d_spec, geom),
    {"output_format", cv__field_out_form, offsetof(struct corr2d_spec, out_form), 0, 0, 0},
    {"kind", cv__field_kind, 0, CV_API_JOB_KIND_CORR2D, 0, 0},
    {"name", cv__field_name, offsetof(struct corr2d_spec, meta), 0, 0, 0},
    {"labels", cv__field_labels, offsetof(struct corr2d_spec, meta), 0, 0, 0},
};

static void spec_free(struct corr2d_spec *s) {
    cv__tensor_json_free(&s->x);
    cv__tensor_json_free(&s->k);
    cv__bias_json_free(&s->bias);
    cv_api_job_meta_free(&s->meta);
}

static void spec_free_any(void *s) {
    spec_free(s);
}

/* A 2-D kernel on C channels filters each channel on its own: a (C, C, kh, kw) kernel that is
 * k on its diagonal and zero elsewhere. */
static void expand_per_channel(struct cv__parse *p, struct cv_tensor *k, int64_t c) {
    int64_t kk = k->h * k->w;
    const int64_t dims[4] = {c, c, k->h, k->w};
    if (c == 1 || !cv__check_numel(p, cv__dims_numel(dims, 4), "/kernel", "the per-channel kernel"))
        return;
    struct cv_tensor e;
    if (cv_tensor_init(&e, c, c, k->h, k->w) != CV_OK) {
        cv__fail_nomem(p);
        return;
    }
    for (int64_t o = 0; o < c; o++)
        memcpy(e.data + (o * c + o) * kk, k->data, (size_t)kk * sizeof(float));
    cv_tensor_free(k);
    *k = e;
}

/* Fits the fields together and fills req; the spec's tensors move into req. */
static void build(struct cv__parse *p, struct corr2d_spec *s, struct cv_corr2d_request *req) {
    const struct cv_tensor *x = &s->x.t;
    int64_t n = x->n, c = x->c;
    bool batched = s->x.rank == 4;
    int64_t cout = 1;
    int out_rank;
    switch (s->k.rank) {
    case 2:
        cout = c;
        out_rank = s->x.rank;
        break;
    case 3:
        out_rank = batched ? 4 : 2;
        break;
    default:
        cout = s->k.t.n;
        out_rank = batched ? 4 : 3;
        break;
    }
    if (s->k.rank > 2 && s->k.t.c != c) {
        cv__fail(p, 422, "shape_mismatch", "/kernel",
                 "the kernel has %lld input channels, the input has %lld", (long long)s->k.t.c,
                 (long long)c);
        return;
    }
    int64_t oh = 0, ow = 0;
    cv__geom_resolve(p, &s->geom, x->h, x->w, s->k.t.h, s->k.t.w, "/kernel", &req->geom, &oh, &ow);
    if (s->bias.present)
        cv__bias_expand(p, &s->bias, cout, "/bias", &req->bias);
    if (p->status != CV_OK)
        return;
    if (s->k.rank == 2)
        expand_per_channel(p, &s->k.t, c);
    const int64_t out_dims[4] = {n, cout, oh, ow};
    if (p->status != CV_OK || !cv__check_numel(p, cv__dims_numel(out_dims, 4), NULL, "the output"))
        return;
    if (cv_tensor_init(&req->y, n, cout, oh, ow) != CV_OK) {
        cv__fail_nomem(p);
        return;
    }
    req->x = s->x.t;
    req->k = s->k.t;
    s->x.t = s->k.t = (struct cv_tensor){0};
    req->out_rank = out_rank;
    req->out_form = cv__out_form_pick(&s->out_form, s->x.form);
    req->meta = s->meta;
    s->meta = (struct cv_api_job_meta){0};
}

int cv_api_corr2d_parse(const char *body, size_t len, const struct cv_api_limits *lim,
                        struct cv_corr2d_request *req, struct cv_api_error *err) {
    CV_ASSERT(lim != NULL && req != NULL && err != NULL);
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    struct cv__parse p = {.lim = lim, .err = err};
    struct corr2d_spec s = {.geom = cv__geom_json_default()};
    if (cv__body_parse_fast(&p, body, len, corr2d_fields,
                            sizeof corr2d_fields / sizeof corr2d_fields[0], &s, sizeof s,
                            spec_free_any) == CV_OK)
        build(&p, &s, req);
    spec_free(&s);
    if (p.status != CV_OK)
        cv_api_corr2d_request_free(req);
    return p.status;
}

void cv_api_corr2d_request_free(struct cv_corr2d_request *req) {
    if (req == NULL)
        return;
    cv_tensor_free(&req->x);
    cv_tensor_free(&req->k);
    cv_tensor_free(&req->y);
    free(req->bias);
    cv_api_job_meta_free(&req->meta);
    memset(req, 0, sizeof *req);
}

char *cv_api_corr2d_reply_dump(const struct cv_corr2d_request *req, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"output\":");
    cv__tensor_write(&b, &req->y, req->out_rank, req->out_form);
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}
