/* POST /train: the body -> struct cv_train_request, in two phases like /corr2d (fields on
 * their own, then how they fit together), ending with the initial weight and bias. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "api_impl.h"

struct init_spec {
    struct cv__tensor_json w;
    struct cv__bias_json b;
};

/* Numbers left NAN were not given: the optimizer's defaults (cv_optim_params_default) stand. */
struct train_spec {
    struct cv__tensor_json x, y;
    int64_t ksize[2]; /* 0 when absent */
    bool use_bias;
    struct cv__geom_json geom;
    struct init_spec init;
    bool has_seed;
    uint64_t seed;
    enum cv_loss_kind loss;
    enum cv_optim_kind optim;
    float lr, momentum, beta1, beta2, eps;
    int64_t steps, report_every;
    double stop_loss;
    bool stream;
    struct cv__out_form out_form;
    struct cv_api_job_meta meta;
};

static const struct cv__field init_fields[] = {
    {"weight", cv__field_tensor, offsetof(struct init_spec, w), 2, 4, 0},
    {"bias", cv__field_bias, offsetof(struct init_spec, b), 0, 0, 0},
};

static void field_steps(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                        void *dst) {
    int64_t steps = 0;
    int failures = p->failures;
    cv__field_int(p, f, v, ptr, &steps);
    if (p->failures != failures)
        return;
    if (steps > p->lim->max_steps) {
        cv__fail(p, 422, "invalid_field", ptr, "must be at most %lld, the daemon's --max-steps",
                 (long long)p->lim->max_steps);
        return;
    }
    *(int64_t *)dst = steps;
}

static void field_init(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                       void *dst) {
    if (json_is_string(v)) { /* "init": "my_edge": a named kernel is the starting weight */
        cv__kernel_named_parse(p, v, ptr, &((struct init_spec *)dst)->w);
        return;
    }
    if (!json_is_object(v)) {
        cv__fail(p, 422, "invalid_field", ptr,
                 "must be a kernel name or an object {\"weight\", \"bias\"}, not %s",
                 cv__json_type_name(v));
        return;
    }
    cv__fields_parse(p, init_fields, sizeof init_fields / sizeof init_fields[0], v, ptr, dst);
}

static void field_seed(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                       void *dst) {
    struct train_spec *s = dst;
    /* jansson holds integers up to INT64_MAX: that is the range a body can spell. */
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        cv__fail(p, 422, "invalid_field", ptr, "must be an integer >= 0");
        return;
    }
    s->seed = (uint64_t)json_integer_value(v);
    s->has_seed = true;
}

/* "a", "b" or "c" from a name table, for messages. */
static void names_str(char *out, size_t cap, const char *(*name_of)(int)) {
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; name_of(i) != NULL && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", i == 0 ? "" : ", ", name_of(i));
}

static const char *loss_name(int i) {
    return cv_loss_kind_name((enum cv_loss_kind)i);
}

static const char *optim_name(int i) {
    return cv_optim_kind_name((enum cv_optim_kind)i);
}

static void field_loss(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                       void *dst) {
    if (json_is_string(v) && cv_loss_kind_parse(json_string_value(v), dst) == CV_OK)
        return;
    char names[128];
    names_str(names, sizeof names, loss_name);
    cv__fail(p, 422, "invalid_field", ptr, "must be one of %s", names);
}

static void field_optim(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                        void *dst) {
    if (json_is_string(v) && cv_optim_kind_parse(json_string_value(v), dst) == CV_OK)
        return;
    char names[128];
    names_str(names, sizeof names, optim_name);
    cv__fail(p, 422, "invalid_field", ptr, "must be one of %s", names);
}

#define SPEC(member) offsetof(struct train_spec, member)
static const struct cv__field train_fields[] = {
    {"input", cv__field_tensor, SPEC(x), 2, 4, CV__FIELD_REQUIRED},
    {"target", cv__field_tensor, SPEC(y), 2, 4, CV__FIELD_REQUIRED},
    {"kernel_size", cv__field_pair, SPEC(ksize), 1, INT32_MAX, 0},
    {"bias", cv__field_bool, SPEC(use_bias), 0, 0, 0},
    CV__GEOM_FIELDS(struct train_spec, geom),
    {"init", field_init, SPEC(init), 0, 0, 0},
    {"seed", field_seed, 0, 0, 0, 0},
    {"loss", field_loss, SPEC(loss), 0, 0, 0},
    {"optimizer", field_optim, SPEC(optim), 0, 0, 0},
    {"lr", cv__field_f32, SPEC(lr), 0, INFINITY, CV__FIELD_LO_OPEN},
    {"momentum", cv__field_f32, SPEC(momentum), 0, 1, CV__FIELD_HI_OPEN},
    {"beta1", cv__field_f32, SPEC(beta1), 0, 1, CV__FIELD_HI_OPEN},
    {"beta2", cv__field_f32, SPEC(beta2), 0, 1, CV__FIELD_HI_OPEN},
    {"eps", cv__field_f32, SPEC(eps), 0, INFINITY, 0},
    {"steps", field_steps, SPEC(steps), 1, INT32_MAX, 0},
    {"report_every", cv__field_int, SPEC(report_every), 1, INT32_MAX, 0},
    {"stop_loss", cv__field_f64, SPEC(stop_loss), -INFINITY, INFINITY, 0},
    {"stream", cv__field_bool, SPEC(stream), 0, 0, 0},
    {"output_format", cv__field_out_form, SPEC(out_form), 0, 0, 0},
    {"kind", cv__field_kind, 0, CV_API_JOB_KIND_TRAIN, 0, 0},
    {"name", cv__field_name, SPEC(meta), 0, 0, 0},
    {"labels", cv__field_labels, SPEC(meta), 0, 0, 0},
};
#undef SPEC

static void spec_free(struct train_spec *s) {
    cv__tensor_json_free(&s->x);
    cv__tensor_json_free(&s->y);
    cv__tensor_json_free(&s->init.w);
    cv__bias_json_free(&s->init.b);
    cv_api_job_meta_free(&s->meta);
}

static void spec_free_any(void *s) {
    spec_free(s);
}

/* A seed for a request that gave none. It stays below 2^53 so that the seed echoed in the
 * start event reads back exactly in JavaScript and in jansson (whose integers are signed). */
static uint64_t seed_draw(void) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uint64_t)ts.tv_sec ^
               (uint64_t)(uintptr_t)&ts;
    }
    return seed & ((UINT64_C(1) << 53) - 1);
}

/* The target's layout: whether it has a channel dimension, which sets Cout. Ranks: (H',W') or
 * (Cout,H',W') for an unbatched input; (N,H',W') or (N,Cout,H',W') for a batch. Leaves the
 * target as (N, Cout, H', W'). */
static bool target_layout(struct cv__parse *p, struct train_spec *s, bool *has_channel) {
    bool batched = s->x.rank == 4;
    int lo = batched ? 3 : 2;
    if (s->y.rank != lo && s->y.rank != lo + 1) {
        cv__fail(p, 422, "shape_mismatch", "/target",
                 "has rank %d; for an input of rank %d the target has rank %d or %d", s->y.rank,
                 s->x.rank, lo, lo + 1);
        return false;
    }
    *has_channel = s->y.rank == lo + 1;
    if (batched && !*has_channel) { /* (N,H',W') came in right-aligned as (1,N,H',W') */
        s->y.t.n = s->y.t.c;
        s->y.t.c = 1;
    }
    return true;
}

/* The kernel's size, from init.weight or kernel_size (which must agree when both are given);
 * *kptr is the pointer to blame when the kernel does not fit the input. */
static bool kernel_dims(struct cv__parse *p, const struct train_spec *s, int64_t cout, int64_t c,
                        int weight_rank, int64_t *kh, int64_t *kw, const char **kptr) {
    const struct cv__tensor_json *w = &s->init.w;
    *kptr = "/kernel_size";
    if (w->rank == 0) {
        if (s->ksize[0] == 0) {
            cv__fail(p, 422, "missing_field", "/kernel_size",
                     "a required field is missing (unless init.weight is given)");
            return false;
        }
        *kh = s->ksize[0];
        *kw = s->ksize[1];
        return true;
    }
    /* The weight is (Cout, C, kh, kw); init.weight may leave out the leading dimensions the
     * replies leave out, or give all four. */
    if ((w->rank != weight_rank && w->rank != 4) || w->t.n != cout || w->t.c != c) {
        char got[64], want[64];
        const int64_t full[4] = {cout, c, w->t.h, w->t.w};
        cv__shape_str(got, sizeof got, w->dims, w->rank);
        cv__shape_str(want, sizeof want, full + 4 - weight_rank, weight_rank);
        cv__fail(p, 422, "shape_mismatch", "/init/weight",
                 "has shape %s; for this input and target the weight is %s", got, want);
        return false;
    }
    *kh = w->t.h;
    *kw = w->t.w;
    *kptr = "/init/weight";
    if (s->ksize[0] != 0 && (s->ksize[0] != *kh || s->ksize[1] != *kw)) {
        cv__fail(p, 422, "shape_mismatch", "/kernel_size",
                 "is [%lld,%lld], init.weight is %lldx%lld", (long long)s->ksize[0],
                 (long long)s->ksize[1], (long long)*kh, (long long)*kw);
        return false;
    }
    return true;
}

/* The target must have the output's shape, in the target's own rank. */
static void check_target(struct cv__parse *p, const struct train_spec *s, bool has_channel,
                         int64_t oh, int64_t ow) {
    int64_t want[4];
    int r = 0;
    if (s->x.rank == 4)
        want[r++] = s->x.t.n;
    if (has_channel)
        want[r++] = s->y.t.c;
    want[r++] = oh;
    want[r++] = ow;
    if (memcmp(want, s->y.dims, sizeof(int64_t) * (size_t)r) == 0)
        return;
    char got[64], out[64];
    cv__shape_str(got, sizeof got, s->y.dims, s->y.rank);
    cv__shape_str(out, sizeof out, want, r);
    cv__fail(p, 422, "shape_mismatch", "/target", "has shape %s, the output has shape %s", got,
             out);
}

static void build(struct cv__parse *p, struct train_spec *s, struct cv_train_request *req) {
    bool has_channel;
    if (!target_layout(p, s, &has_channel))
        return;
    int64_t c = s->x.t.c, cout = s->y.t.c; /* the target's channel dim, or 1 */
    int weight_rank = has_channel ? 4 : c == 1 ? 2 : 3;
    int64_t kh, kw, oh = 0, ow = 0;
    const char *kptr;
    if (!kernel_dims(p, s, cout, c, weight_rank, &kh, &kw, &kptr))
        return;
    cv__geom_resolve(p, &s->geom, s->x.t.h, s->x.t.w, kh, kw, kptr, &req->params.geom, &oh, &ow);
    if (p->status == CV_OK)
        check_target(p, s, has_channel, oh, ow);
    if (!s->use_bias && s->init.b.present)
        cv__fail(p, 422, "invalid_field", "/init/bias", "is given, but \"bias\" is false");
    const int64_t wdims[4] = {cout, c, kh, kw};
    if (p->status != CV_OK || !cv__check_numel(p, cv__dims_numel(wdims, 4), kptr, "the kernel"))
        return;

    if (cv_tensor_init(&req->weight, cout, c, kh, kw) != CV_OK) {
        cv__fail_nomem(p);
        return;
    }
    if (s->use_bias) {
        req->bias = calloc((size_t)cout, sizeof(float));
        if (req->bias == NULL) {
            cv__fail_nomem(p);
            return;
        }
    }
    req->seed = s->has_seed ? s->seed : seed_draw();
    /* The random start covers whatever init leaves out (a given weight, no given bias). */
    cv_train_init_uniform(&req->weight, req->bias, req->seed);
    if (s->init.w.rank != 0)
        memcpy(req->weight.data, s->init.w.t.data,
               (size_t)cv_tensor_numel(&req->weight) * sizeof(float));
    if (s->init.b.present) {
        float *b;
        cv__bias_expand(p, &s->init.b, cout, "/init/bias", &b);
        if (b == NULL)
            return;
        free(req->bias);
        req->bias = b;
    }

    struct cv_train_params *tp = &req->params;
    tp->loss = s->loss;
    tp->optim = cv_optim_params_default(s->optim);
    const struct {
        float given;
        float *param;
    } overrides[] = {
        {s->lr, &tp->optim.lr},       {s->momentum, &tp->optim.momentum},
        {s->beta1, &tp->optim.beta1}, {s->beta2, &tp->optim.beta2},
        {s->eps, &tp->optim.eps},
    };
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
        if (!isnan(overrides[i].given))
            *overrides[i].param = overrides[i].given;
    tp->steps = (int32_t)s->steps;
    tp->use_bias = s->use_bias;
    tp->has_stop_loss = !isnan(s->stop_loss);
    tp->stop_loss = tp->has_stop_loss ? s->stop_loss : 0;
    tp->n_threads = 1;

    req->x = s->x.t;
    req->y = s->y.t;
    s->x.t = s->y.t = (struct cv_tensor){0};
    req->report_every = (int32_t)s->report_every;
    req->stream = s->stream;
    req->weight_rank = weight_rank;
    req->out_form = cv__out_form_pick(&s->out_form, s->x.form);
    req->meta = s->meta;
    s->meta = (struct cv_api_job_meta){0};
}

int cv_api_train_parse(const char *body, size_t len, const struct cv_api_limits *lim,
                       struct cv_train_request *req, struct cv_api_error *err) {
    CV_ASSERT(lim != NULL && req != NULL && err != NULL);
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    struct cv__parse p = {.lim = lim, .err = err};
    struct train_spec s = {
        .use_bias = true,
        .geom = cv__geom_json_default(),
        .loss = CV_LOSS_KIND_SSE,
        .optim = CV_OPTIM_KIND_SGD,
        .lr = NAN,
        .momentum = NAN,
        .beta1 = NAN,
        .beta2 = NAN,
        .eps = NAN,
        .steps = 20,
        .report_every = 1,
        .stop_loss = NAN,
        .stream = true,
    };
    /* A daemon whose --max-steps is below the default trains that many by default rather than
     * refusing requests that never asked for a number of steps. */
    if (s.steps > lim->max_steps && lim->max_steps >= 1)
        s.steps = lim->max_steps;
    if (cv__body_parse_fast(&p, body, len, train_fields,
                            sizeof train_fields / sizeof train_fields[0], &s, sizeof s,
                            spec_free_any) == CV_OK)
        build(&p, &s, req);
    spec_free(&s);
    if (p.status != CV_OK)
        cv_api_train_request_free(req);
    return p.status;
}

void cv_api_train_request_free(struct cv_train_request *req) {
    if (req == NULL)
        return;
    cv_tensor_free(&req->x);
    cv_tensor_free(&req->y);
    cv_tensor_free(&req->weight);
    free(req->bias);
    cv_api_job_meta_free(&req->meta);
    memset(req, 0, sizeof *req);
}
