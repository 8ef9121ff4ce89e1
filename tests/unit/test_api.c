/* Unit tests of the api layer (api/): tensors in their three forms, /corr2d and /train bodies
 * with every default and every error, named kernels, events and problem+json.
 *
 * Replies are read back with jansson to check their fields. Compute functions run only inside
 * test cases (check forks each one), never from main(): libgomp is not fork-safe. */
#include <check.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"
#include "convd/api.h"
#include "convd/base64.h"

static const struct cv_api_limits lim = {.max_elements = 1 << 20, .max_steps = 1000};

/* ---- helpers ----------------------------------------------------------------------------- */

static bool has_pointer(const struct cv_api_error *err, const char *pointer) {
    for (int i = 0; i < err->n_errors; i++)
        if (strcmp(err->errors[i].pointer, pointer) == 0)
            return true;
    return false;
}

static void check_err(int rc, const struct cv_api_error *err, const char *body, int status,
                      const char *code, const char *pointer) {
    ck_assert_msg(rc != CV_OK, "accepted: %s", body);
    ck_assert_msg(err->status == status, "%s: status %d, expected %d (%s)", body, err->status,
                  status, err->detail);
    ck_assert_msg(strcmp(err->code, code) == 0, "%s: code %s, expected %s (%s)", body, err->code,
                  code, err->detail);
    if (pointer != NULL)
        ck_assert_msg(has_pointer(err, pointer), "%s: no error at %s (first: %s, %s)", body,
                      pointer, err->n_errors ? err->errors[0].pointer : "-", err->detail);
}

static void corr2d_err(const char *body, int status, const char *code, const char *pointer) {
    struct cv_corr2d_request req;
    struct cv_api_error err;
    int rc = cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    check_err(rc, &err, body, status, code, pointer);
    ck_assert(req.x.data == NULL && req.k.data == NULL && req.y.data == NULL && req.bias == NULL);
}

static void train_err(const char *body, int status, const char *code, const char *pointer) {
    struct cv_train_request req;
    struct cv_api_error err;
    int rc = cv_api_train_parse(body, strlen(body), &lim, &req, &err);
    check_err(rc, &err, body, status, code, pointer);
    ck_assert(req.x.data == NULL && req.weight.data == NULL && req.bias == NULL);
}

static void corr2d_ok(const char *body, struct cv_corr2d_request *req) {
    struct cv_api_error err;
    int rc = cv_api_corr2d_parse(body, strlen(body), &lim, req, &err);
    ck_assert_msg(rc == CV_OK, "%s: %d %s %s", body, err.status, err.code, err.detail);
}

static void train_ok(const char *body, struct cv_train_request *req) {
    struct cv_api_error err;
    int rc = cv_api_train_parse(body, strlen(body), &lim, req, &err);
    ck_assert_msg(rc == CV_OK, "%s: %d %s %s", body, err.status, err.code, err.detail);
}

static void check_shape(const struct cv_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w) {
    ck_assert_msg(t->n == n && t->c == c && t->h == h && t->w == w,
                  "shape (%lld,%lld,%lld,%lld), expected (%lld,%lld,%lld,%lld)", (long long)t->n,
                  (long long)t->c, (long long)t->h, (long long)t->w, (long long)n, (long long)c,
                  (long long)h, (long long)w);
}

/* Checks every field of a geometry: padding top, bottom, left, right; stride; dilation. */
static void check_geom(const struct cv_conv2d_geom *g, int64_t top, int64_t bottom, int64_t left,
                       int64_t right, int64_t sh, int64_t sw, int64_t dh, int64_t dw) {
    ck_assert_msg(g->pad_top == top && g->pad_bottom == bottom && g->pad_left == left &&
                      g->pad_right == right && g->stride_h == sh && g->stride_w == sw &&
                      g->dil_h == dh && g->dil_w == dw,
                  "geometry pad %lld,%lld,%lld,%lld stride %lld,%lld dilation %lld,%lld",
                  (long long)g->pad_top, (long long)g->pad_bottom, (long long)g->pad_left,
                  (long long)g->pad_right, (long long)g->stride_h, (long long)g->stride_w,
                  (long long)g->dil_h, (long long)g->dil_w);
}

/* Fills y with corr2d(x, k) + bias and returns the reply text (caller frees). */
static char *corr2d_run(struct cv_corr2d_request *req) {
    ck_assert_int_eq(cv_corr2d_forward(&req->x, &req->k, req->bias, &req->geom, &req->y, 1), CV_OK);
    char *s = cv_api_corr2d_reply_dump(req, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Runs req (corr2d_run) and checks that its reply text is want. */
static void corr2d_expect(struct cv_corr2d_request *req, const char *want) {
    char *reply = corr2d_run(req);
    ck_assert_str_eq(reply, want);
    free(reply);
}

static json_t *load(const char *text) {
    json_error_t je;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(v != NULL, "not JSON (%s): %s", je.text, text);
    return v;
}

static const char *seed_body = "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]]}";

/* ---- base: the seed's example, tensor forms, numbers -------------------------------------- */

START_TEST(test_seed_example) {
    struct cv_corr2d_request req;
    corr2d_ok(seed_body, &req);
    check_shape(&req.x, 1, 1, 3, 3);
    check_shape(&req.k, 1, 1, 2, 2);
    check_shape(&req.y, 1, 1, 2, 2);
    for (int i = 0; i < 9; i++)
        ck_assert(req.x.data[i] == (float)i);
    for (int i = 0; i < 4; i++)
        ck_assert(req.k.data[i] == (float)i);
    ck_assert_ptr_null(req.bias);
    ck_assert_int_eq(req.out_rank, 2);
    ck_assert_int_eq(req.out_form, CV_TENSOR_FORM_NESTED);
    corr2d_expect(&req, "{\"output\":[[19,25],[37,43]]}");
    cv_api_corr2d_request_free(&req);
    cv_api_corr2d_request_free(&req); /* idempotent */
    cv_api_corr2d_request_free(NULL);
}
END_TEST

/* Each input form, identity kernel: the reply repeats the input in its own form. */
START_TEST(test_tensor_forms) {
    static const struct {
        const char *input, *output;
    } cases[] = {
        {"[[0,1.5,2],[3,4,-5]]", "[[0,1.5,2],[3,4,-5]]"},
        {"{\"shape\":[2,3],\"data\":[0,1.5,2,3,4,-5]}",
         "{\"shape\":[2,3],\"data\":[0,1.5,2,3,4,-5]}"},
        /* [0, 1.5, 2, 3, 4, -5] as little-endian float32 */
        {"{\"shape\":[2,3],\"dtype\":\"float32\",\"b64\":\"AAAAAAAAwD8AAABAAABAQAAAgEAAAKDA\"}",
         "{\"shape\":[2,3],\"dtype\":\"float32\",\"b64\":\"AAAAAAAAwD8AAABAAABAQAAAgEAAAKDA\"}"},
        {"{\"shape\":[2,3],\"b64\":\"AAAAAAAAwD8AAABAAABAQAAAgEAAAKDA\"}",
         "{\"shape\":[2,3],\"dtype\":\"float32\",\"b64\":\"AAAAAAAAwD8AAABAAABAQAAAgEAAAKDA\"}"},
        {"[[[1,2]],[[3,4]]]", "[[[1,2]],[[3,4]]]"},
        {"{\"shape\":[1,2,1,2],\"data\":[1,2,3,4]}", "{\"shape\":[1,2,1,2],\"data\":[1,2,3,4]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512], want[512];
        snprintf(body, sizeof body, "{\"input\":%s,\"kernel\":[[1]]}", cases[i].input);
        snprintf(want, sizeof want, "{\"output\":%s}", cases[i].output);
        struct cv_corr2d_request req;
        corr2d_ok(body, &req);
        corr2d_expect(&req, want);
        cv_api_corr2d_request_free(&req);
    }
}
END_TEST

START_TEST(test_output_format) {
    static const struct {
        const char *format, *output;
    } cases[] = {
        {"nested", "[[19,25],[37,43]]"},
        {"flat", "{\"shape\":[2,2],\"data\":[19,25,37,43]}"},
        {"b64", "{\"shape\":[2,2],\"dtype\":\"float32\",\"b64\":\"AACYQQAAyEEAABRCAAAsQg==\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512], want[512];
        snprintf(
            body, sizeof body,
            "{\"input\":{\"shape\":[3,3],\"data\":[0,1,2,3,4,5,6,7,8]},\"kernel\":[[0,1],[2,3]],"
            "\"output_format\":\"%s\"}",
            cases[i].format);
        snprintf(want, sizeof want, "{\"output\":%s}", cases[i].output);
        struct cv_corr2d_request req;
        corr2d_ok(body, &req);
        corr2d_expect(&req, want);
        cv_api_corr2d_request_free(&req);
    }
    corr2d_err("{\"input\":[[1]],\"kernel\":[[1]],\"output_format\":\"csv\"}", 422, "invalid_field",
               "/output_format");
}
END_TEST

START_TEST(test_b64_large_round_trip) {
    /* 1000 floats through base64 and back, bit for bit. */
    enum { N = 1000 };
    float v[N];
    for (int i = 0; i < N; i++)
        v[i] = sinf((float)i) * 1000.0f;
    char *b64 = malloc(cv_base64_encoded_len(sizeof v) + 1);
    cv_base64_encode((const uint8_t *)v, sizeof v, b64);
    size_t cap = strlen(b64) + 200;
    char *body = malloc(cap);
    snprintf(body, cap, "{\"input\":{\"shape\":[10,100],\"b64\":\"%s\"},\"kernel\":[[1]]}", b64);
    struct cv_corr2d_request req;
    corr2d_ok(body, &req);
    ck_assert(memcmp(req.x.data, v, sizeof v) == 0);
    char *reply = corr2d_run(&req);
    ck_assert_ptr_nonnull(strstr(reply, b64));
    free(reply);
    cv_api_corr2d_request_free(&req);
    free(body);
    free(b64);
}
END_TEST

START_TEST(test_number_format) {
    static const struct {
        float v;
        const char *text;
    } cases[] = {
        {0.1f, "0.1"},
        {19.0f, "19"},
        {-19.0f, "-19"},
        {0.0f, "0"},
        {-0.0f, "0"},
        {1e-7f, "1e-7"},
        {0.5f, "0.5"},
        {-2.75f, "-2.75"},
        {1.0f / 3, "0.33333334"},
        {FLT_MAX, "3.4028235e38"},
        {16777216.0f, "16777216"},
        {1e20f, "1e20"},
        {0.001f, "0.001"},
        {123456.7f, "123456.7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char s[CV__NUM_MAX];
        cv__fmt_f32(s, cases[i].v);
        ck_assert_str_eq(s, cases[i].text);
        ck_assert(strtof(s, NULL) == cases[i].v);
    }
    char s[CV__NUM_MAX];
    cv__fmt_f32(s, NAN);
    ck_assert_str_eq(s, "null");
    cv__fmt_f32(s, -INFINITY);
    ck_assert_str_eq(s, "null");
    cv__fmt_f64(s, 0.1);
    ck_assert_str_eq(s, "0.1");
    cv__fmt_f64(s, 34.5);
    ck_assert_str_eq(s, "34.5");

    /* Every finite float32 bit pattern sampled reads back as itself, in at most 9 digits. */
    srand(7);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)rand() << 16 ^ (uint32_t)rand();
        float v;
        memcpy(&v, &u, sizeof v);
        if (!isfinite(v))
            continue;
        size_t n = cv__fmt_f32(s, v);
        ck_assert_uint_eq(n, strlen(s));
        ck_assert_msg(strtof(s, NULL) == v || (v == 0 && strtof(s, NULL) == 0), "%a -> %s", v, s);
        ck_assert_uint_le(n, 17); /* "-9007199254740992": integral up to 2^53 */
    }
}
END_TEST

/* The same numbers through a whole request and reply, read back with jansson. */
START_TEST(test_numbers_round_trip) {
    const char *body = "{\"input\":[[0.1,19,1e-7,3.4028235e38,-1.17549435e-38]],\"kernel\":[[1]]}";
    struct cv_corr2d_request req;
    corr2d_ok(body, &req);
    ck_assert(req.x.data[3] == FLT_MAX);
    char *reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[0.1,19,1e-7,3.4028235e38,-1.1754944e-38]]}");
    json_t *v = load(reply);
    json_t *row = json_array_get(json_object_get(v, "output"), 0);
    for (size_t i = 0; i < 5; i++)
        ck_assert((float)json_number_value(json_array_get(row, i)) == req.x.data[i]);
    json_decref(v);
    free(reply);
    cv_api_corr2d_request_free(&req);
}
END_TEST

/* ---- /corr2d ----------------------------------------------------------------------------- */

START_TEST(test_corr2d_defaults) {
    struct cv_corr2d_request req;
    corr2d_ok("{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}", &req);
    ck_assert_ptr_null(req.bias);
    check_geom(&req.geom, 0, 0, 0, 0, 1, 1, 1, 1);
    ck_assert_int_eq(req.out_form, CV_TENSOR_FORM_NESTED);
    ck_assert_int_eq(req.out_rank, 2);
    check_shape(&req.y, 1, 1, 2, 2);
    for (int i = 0; i < 4; i++)
        ck_assert(req.y.data[i] == 0);
    cv_api_corr2d_request_free(&req);
    /* null counts as absent */
    corr2d_ok("{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"bias\":null,\"padding\":null}", &req);
    ck_assert_ptr_null(req.bias);
    cv_api_corr2d_request_free(&req);
}
END_TEST

START_TEST(test_corr2d_geometry) {
    struct cv_corr2d_request req;
    /* "same", even kernel: the extra zero goes bottom/right, as PyTorch. */
    corr2d_ok("{\"input\":[[1,2,3],[4,5,6]],\"kernel\":[[1,1],[1,1]],\"padding\":\"same\"}", &req);
    check_geom(&req.geom, 0, 1, 0, 1, 1, 1, 1, 1);
    check_shape(&req.y, 1, 1, 2, 3);
    corr2d_expect(&req, "{\"output\":[[12,16,9],[9,11,6]]}");
    cv_api_corr2d_request_free(&req);
    /* "same" with dilation 2 on a 3x3 kernel: 4 zeros each way, split 2/2 */
    corr2d_ok("{\"input\":[[1,2,3],[4,5,6],[7,8,9]],\"kernel\":\"identity\",\"padding\":\"same\","
              "\"dilation\":2}",
              &req);
    check_geom(&req.geom, 2, 2, 2, 2, 1, 1, 2, 2);
    check_shape(&req.y, 1, 1, 3, 3);
    cv_api_corr2d_request_free(&req);
    /* explicit padding, stride and dilation pairs */
    corr2d_ok(
        "{\"input\":{\"shape\":[5,7],\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
        "0,0,0,0,0,0,0,0,0,0,0,0]},\"kernel\":[[1,1],[1,1]],\"padding\":[1,2],\"stride\":[2,3],"
        "\"dilation\":[1,2]}",
        &req);
    check_geom(&req.geom, 1, 1, 2, 2, 2, 3, 1, 2);
    /* H' = (5+2-1-1)/2+1 = 3, W' = (7+4-2-1)/3+1 = 3 */
    check_shape(&req.y, 1, 1, 3, 3);
    ck_assert_int_eq(req.out_form, CV_TENSOR_FORM_FLAT);
    cv_api_corr2d_request_free(&req);
    corr2d_ok("{\"input\":[[1,2],[3,4]],\"kernel\":[[1,1],[1,1]],\"padding\":\"valid\"}", &req);
    check_shape(&req.y, 1, 1, 1, 1);
    cv_api_corr2d_request_free(&req);
}
END_TEST

START_TEST(test_corr2d_bias) {
    struct cv_corr2d_request req;
    corr2d_ok("{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]],\"bias\":1}", &req);
    ck_assert_ptr_nonnull(req.bias);
    ck_assert(req.bias[0] == 1.0f);
    corr2d_expect(&req, "{\"output\":[[20,26],[38,44]]}");
    cv_api_corr2d_request_free(&req);
    /* A number is repeated over the output channels; an array gives one each. */
    corr2d_ok("{\"input\":[[1]],\"kernel\":[[[[2]]],[[[3]]]],\"bias\":0.5}", &req);
    ck_assert(req.bias[0] == 0.5f && req.bias[1] == 0.5f);
    cv_api_corr2d_request_free(&req);
    corr2d_ok("{\"input\":[[1]],\"kernel\":[[[[2]]],[[[3]]]],\"bias\":[10,20]}", &req);
    ck_assert(req.bias[0] == 10.0f && req.bias[1] == 20.0f);
    corr2d_expect(&req, "{\"output\":[[[12]],[[23]]]}");
    cv_api_corr2d_request_free(&req);
}
END_TEST

START_TEST(test_corr2d_ranks) {
    /* Each kernel rank on each input rank: the kernel as the parser widens it to (Cout,C,kh,kw)
     * (all 0: not checked), the output's shape and rank, and the reply (NULL: not run). */
    static const struct {
        const char *body;
        int64_t k[4], y[4];
        int out_rank;
        const char *output;
    } cases[] = {
        /* 2-D kernel on a 3-channel input: each channel on its own, the input's rank kept. */
        {"{\"input\":[[[1,2],[3,4]],[[5,6],[7,8]],[[9,10],[11,12]]],\"kernel\":[[1,-1]]}",
         {3, 3, 1, 2},
         {1, 3, 2, 1},
         3,
         "{\"output\":[[[-1],[-1]],[[-1],[-1]],[[-1],[-1]]]}"},
        /* ... and on a batch. */
        {"{\"input\":[[[[1,2]],[[3,5]]],[[[0,0]],[[1,0]]]],\"kernel\":[[1,-1]]}",
         {0},
         {2, 2, 1, 1},
         4,
         "{\"output\":[[[[-1]],[[-2]]],[[[0]],[[1]]]]}"},
        /* (C,kh,kw) sums over the channels: (H',W') unbatched, (N,1,H',W') for a batch. */
        {"{\"input\":[[[1,2]],[[3,4]]],\"kernel\":[[[1]],[[10]]]}",
         {1, 2, 1, 1},
         {1, 1, 1, 2},
         2,
         "{\"output\":[[31,42]]}"},
        {"{\"input\":[[[[1,2]],[[3,4]]]],\"kernel\":[[[1]],[[10]]]}",
         {0},
         {1, 1, 1, 2},
         4,
         "{\"output\":[[[[31,42]]]]}"},
        /* (C,kh,kw) on a (H,W) input: C must be 1. */
        {"{\"input\":[[1,2]],\"kernel\":[[[3]]]}", {0}, {1, 1, 1, 2}, 2, NULL},
        /* (Cout,C,kh,kw): (Cout,H',W') unbatched, (N,Cout,H',W') for a batch. */
        {"{\"input\":[[[1,2]],[[3,4]]],\"kernel\":[[[[1]],[[0]]],[[[0]],[[1]]],[[[1]],[[1]]]]}",
         {0},
         {1, 3, 1, 2},
         3,
         "{\"output\":[[[1,2]],[[3,4]],[[4,6]]]}"},
        {"{\"input\":[[[[1,2]]],[[[3,4]]]],\"kernel\":[[[[1]]],[[[2]]]]}",
         {0},
         {2, 2, 1, 2},
         4,
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cv_corr2d_request req;
        corr2d_ok(cases[i].body, &req);
        const int64_t *k = cases[i].k, *y = cases[i].y;
        if (k[0] != 0)
            check_shape(&req.k, k[0], k[1], k[2], k[3]);
        check_shape(&req.y, y[0], y[1], y[2], y[3]);
        ck_assert_int_eq(req.out_rank, cases[i].out_rank);
        if (i == 0) /* the 2-D kernel is put on the diagonal: output channel o reads channel o */
            for (int o = 0; o < 3; o++)
                for (int c = 0; c < 3; c++) {
                    const float *kd = req.k.data + (o * 3 + c) * 2;
                    ck_assert(kd[0] == (o == c ? 1.0f : 0.0f) && kd[1] == (o == c ? -1.0f : 0.0f));
                }
        if (cases[i].output != NULL)
            corr2d_expect(&req, cases[i].output);
        cv_api_corr2d_request_free(&req);
    }

    /* Channel mismatches. */
    corr2d_err("{\"input\":[[[1,2]],[[3,4]]],\"kernel\":[[[1]],[[1]],[[1]]]}", 422,
               "shape_mismatch", "/kernel");
    corr2d_err("{\"input\":[[1,2]],\"kernel\":[[[[1]],[[1]]]]}", 422, "shape_mismatch", "/kernel");
}
END_TEST

START_TEST(test_named_kernels) {
    static const struct {
        const char *kernel;
        int64_t kh, kw;
        float values[9];
    } cases[] = {
        {"\"edge\"", 1, 2, {1, -1}},
        {"\"identity\"", 3, 3, {0, 0, 0, 0, 1, 0, 0, 0, 0}},
        {"\"sobel_x\"", 3, 3, {-1, 0, 1, -2, 0, 2, -1, 0, 1}},
        {"\"sobel_y\"", 3, 3, {-1, -2, -1, 0, 0, 0, 1, 2, 1}},
        {"\"laplacian\"", 3, 3, {0, 1, 0, 1, -4, 1, 0, 1, 0}},
        {"\"sharpen\"", 3, 3, {0, -1, 0, -1, 5, -1, 0, -1, 0}},
        {"{\"name\":\"sobel_x\"}", 3, 3, {-1, 0, 1, -2, 0, 2, -1, 0, 1}},
        {"\"box\"",
         3,
         3,
         {1 / 9.f, 1 / 9.f, 1 / 9.f, 1 / 9.f, 1 / 9.f, 1 / 9.f, 1 / 9.f, 1 / 9.f, 1 / 9.f}},
        {"{\"name\":\"box\",\"size\":1}", 1, 1, {1}},
    };
    const uint8_t zeros[100] = {0}; /* a 5x5 float32 input, as base64 */
    char zeros64[140];
    cv_base64_encode(zeros, sizeof zeros, zeros64);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"input\":{\"shape\":[5,5],\"b64\":\"%s\"},\"kernel\":%s}",
                 zeros64, cases[i].kernel);
        struct cv_corr2d_request req;
        corr2d_ok(body, &req);
        check_shape(&req.k, 1, 1, cases[i].kh, cases[i].kw);
        for (int64_t j = 0; j < cases[i].kh * cases[i].kw; j++)
            ck_assert_msg(req.k.data[j] == cases[i].values[j], "%s[%lld]", cases[i].kernel,
                          (long long)j);
        ck_assert_int_eq(req.out_form, CV_TENSOR_FORM_B64);
        cv_api_corr2d_request_free(&req);
    }

    /* Box of 5 and Gaussians: normalised, symmetric, peaked at the centre. */
    const char *norm[] = {"{\"name\":\"box\",\"size\":5}", "\"gaussian\"",
                          "{\"name\":\"gaussian\",\"size\":7,\"sigma\":2.5}"};
    const int64_t sizes[] = {5, 5, 7};
    for (size_t i = 0; i < 3; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"input\":[[1]],\"kernel\":%s,\"padding\":\"same\"}",
                 norm[i]);
        struct cv_corr2d_request req;
        corr2d_ok(body, &req);
        int64_t s = sizes[i];
        check_shape(&req.k, 1, 1, s, s);
        double sum = 0;
        for (int64_t j = 0; j < s * s; j++) {
            sum += req.k.data[j];
            ck_assert(req.k.data[j] == req.k.data[s * s - 1 - j]);
            ck_assert(req.k.data[j] <= req.k.data[s * s / 2]);
        }
        ck_assert_double_eq_tol(sum, 1.0, 1e-5);
        cv_api_corr2d_request_free(&req);
    }

    const char *in = "{\"input\":[[1,2,3],[4,5,6],[7,8,9]],\"kernel\":";
    static const struct {
        const char *kernel, *code, *pointer;
    } bad[] = {
        {"\"blur\"}", "invalid_field", "/kernel"},
        {"{\"name\":\"blur\"}}", "invalid_field", "/kernel"},
        {"{\"name\":\"box\",\"size\":4}}", "invalid_field", "/kernel/size"},
        {"{\"name\":\"box\",\"size\":33}}", "invalid_field", "/kernel/size"},
        {"{\"name\":\"gaussian\",\"sigma\":0}}", "invalid_field", "/kernel/sigma"},
        {"{\"name\":\"box\",\"sigma\":1}}", "invalid_field", "/kernel/sigma"},
        {"{\"name\":\"edge\",\"size\":3}}", "invalid_field", "/kernel/size"},
        {"{\"name\":\"box\",\"colour\":3}}", "unknown_field", "/kernel/colour"},
        {"{\"name\":7}}", "invalid_field", "/kernel"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "%s%s", in, bad[i].kernel);
        corr2d_err(body, 422, bad[i].code, bad[i].pointer);
    }
    /* An unknown name lists the valid ones. */
    struct cv_corr2d_request req;
    struct cv_api_error err;
    const char *body = "{\"input\":[[1]],\"kernel\":\"blur\"}";
    cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    ck_assert_ptr_nonnull(strstr(err.errors[0].detail, "sobel_x"));
    ck_assert_ptr_nonnull(strstr(err.errors[0].detail, "gaussian"));
}
END_TEST

START_TEST(test_kernels_dump) {
    size_t len = 0;
    char *s = cv_api_kernels_dump(&len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, strlen(s));
    json_t *v = load(s);
    json_t *ks = json_object_get(v, "kernels");
    ck_assert_uint_eq(json_array_size(ks), 8);
    const char *names[] = {"edge",      "identity", "sobel_x", "sobel_y",
                           "laplacian", "sharpen",  "box",     "gaussian"};
    for (size_t i = 0; i < 8; i++) {
        json_t *k = json_array_get(ks, i);
        ck_assert_str_eq(json_string_value(json_object_get(k, "name")), names[i]);
        ck_assert(json_is_string(json_object_get(k, "description")));
        bool fixed = i < 6;
        ck_assert(json_is_array(json_object_get(k, fixed ? "kernel" : "example")));
        ck_assert(fixed || json_is_object(json_object_get(k, "parameters")));
    }
    ck_assert_ptr_nonnull(strstr(s, "\"kernel\":[[1,-1]]"));
    json_decref(v);
    free(s);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */

START_TEST(test_syntax_errors) {
    struct cv_corr2d_request req;
    struct cv_api_error err;
    const char *body = "{\"input\": [[1,2]],\n \"kernel\": [[1,,2]]}";
    int rc = cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    check_err(rc, &err, body, 400, "invalid_json", NULL);
    ck_assert_int_eq(err.line, 2);
    ck_assert_int_gt(err.column, 0);
    ck_assert_int_gt(err.position, 18);
    ck_assert_ptr_nonnull(strstr(err.detail, "unexpected token"));
    ck_assert_int_eq(err.n_errors, 0);

    corr2d_err("{\"input\": NaN}", 400, "invalid_json", NULL);
    corr2d_err("{\"input\": [[1e999]]}", 400, "invalid_json", NULL);
    corr2d_err("", 400, "invalid_json", NULL);
    corr2d_err("{\"input\":[[1]],\"kernel\":[[1]]} x", 400, "invalid_json", NULL);
    corr2d_err("{\"input\":[[1]],\"input\":[[2]],\"kernel\":[[1]]}", 400, "duplicate_key", NULL);
    corr2d_err("[1,2]", 400, "not_an_object", NULL);
    corr2d_err("3", 400, "not_an_object", NULL);
    corr2d_err("\"x\"", 400, "not_an_object", NULL);
    train_err("{\"input\":", 400, "invalid_json", NULL);
    train_err("null", 400, "not_an_object", NULL);
    /* NULL body */
    rc = cv_api_corr2d_parse(NULL, 0, &lim, &req, &err);
    ck_assert_int_eq(err.status, 400);
}
END_TEST

START_TEST(test_field_errors) {
    static const struct {
        const char *body;
        int status;
        const char *code, *pointer;
    } cases[] = {
        {"{\"kernel\":[[1]]}", 422, "missing_field", "/input"},
        {"{\"input\":[[1]]}", 422, "missing_field", "/kernel"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"colour\":1}", 422, "unknown_field", "/colour"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"a/b~c\":1}", 422, "unknown_field", "/a~1b~0c"},
        {"{\"input\":\"x\",\"kernel\":[[1]]}", 422, "invalid_field", "/input"},
        {"{\"input\":5,\"kernel\":[[1]]}", 422, "invalid_field", "/input"},
        /* ragged, with the offending row */
        {"{\"input\":[[1,2],[3,4],[5]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/2"},
        {"{\"input\":[[1,2],[3,4,5]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/1"},
        {"{\"input\":[[1,2],3],\"kernel\":[[1]]}", 422, "invalid_field", "/input/1"},
        {"{\"input\":[[[1],[2]],[[3],[4,5]]],\"kernel\":[[1]]}", 422, "invalid_field",
         "/input/1/1"},
        /* bad elements, with their path */
        {"{\"input\":[[1,2,3],[4,5,\"6\"]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/1/2"},
        {"{\"input\":[[1,null]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/1"},
        {"{\"input\":[[true,1]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/0"},
        {"{\"input\":[[1,[2]]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/1"},
        {"{\"input\":[[\"NaN\",1]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/0"},
        {"{\"input\":[[1,1e39]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/1"},
        {"{\"input\":[[1,-3.5e38]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/1"},
        {"{\"input\":[[1]],\"kernel\":[[1e39]]}", 422, "invalid_field", "/kernel/0/0"},
        /* empty, too shallow, too deep */
        {"{\"input\":[],\"kernel\":[[1]]}", 422, "invalid_field", "/input"},
        {"{\"input\":[[]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0"},
        {"{\"input\":[1,2,3],\"kernel\":[[1]]}", 422, "invalid_field", "/input"},
        {"{\"input\":[[[[[1]]]]],\"kernel\":[[1]]}", 422, "invalid_field", "/input/0/0/0/0"},
        /* object forms */
        {"{\"input\":{\"shape\":[2,2],\"data\":[1,2,3]},\"kernel\":[[1]]}", 422, "invalid_field",
         "/input/data"},
        {"{\"input\":{\"shape\":[2,2],\"data\":[1,2,3,\"x\"]},\"kernel\":[[1]]}", 422,
         "invalid_field", "/input/data/3"},
        {"{\"input\":{\"shape\":[2,0],\"data\":[]},\"kernel\":[[1]]}", 422, "invalid_field",
         "/input/shape/1"},
        {"{\"input\":{\"shape\":[4],\"data\":[1,2,3,4]},\"kernel\":[[1]]}", 422, "invalid_field",
         "/input"},
        {"{\"input\":{\"shape\":[1,1,1,1,1],\"data\":[1]},\"kernel\":[[1]]}", 422, "invalid_field",
         "/input/shape"},
        {"{\"input\":{\"data\":[1]},\"kernel\":[[1]]}", 422, "missing_field", "/input/shape"},
        {"{\"input\":{\"shape\":[1,1]},\"kernel\":[[1]]}", 422, "missing_field", "/input"},
        {"{\"input\":{\"shape\":[1,1],\"data\":[1],\"b64\":\"AACAPw==\"},\"kernel\":[[1]]}", 422,
         "invalid_field", "/input"},
        {"{\"input\":{\"shape\":[1,1],\"data\":[1],\"extra\":1},\"kernel\":[[1]]}", 422,
         "unknown_field", "/input/extra"},
        {"{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPw==\"},\"kernel\":[[1]]}", 422,
         "invalid_field", "/input/b64"},
        {"{\"input\":{\"shape\":[1,1],\"b64\":\"AACAPwAAgD8=\"},\"kernel\":[[1]]}", 422,
         "invalid_field", "/input/b64"},
        {"{\"input\":{\"shape\":[1,1],\"b64\":\"AACA!w==\"},\"kernel\":[[1]]}", 422,
         "invalid_field", "/input/b64"},
        {"{\"input\":{\"shape\":[1,1],\"b64\":\"AADAfw==\"},\"kernel\":[[1]]}", 422,
         "invalid_field", "/input/b64"}, /* a NaN's bits */
        {"{\"input\":{\"shape\":[1,1],\"dtype\":\"float64\",\"b64\":\"AACAPw==\"},\"kernel\":[[1]]"
         "}",
         422, "invalid_field", "/input/dtype"},
        /* geometry */
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":-1}", 422, "invalid_field", "/padding"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":\"full\"}", 422, "invalid_field",
         "/padding"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":[1,2,3]}", 422, "invalid_field",
         "/padding"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":[1,-2]}", 422, "invalid_field",
         "/padding/1"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":1.5}", 422, "invalid_field", "/padding"},
        /* padding as large as the kernel: 45 bytes asking for a 4095x4095 reply (issue 12) */
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":2047}", 422, "invalid_field", "/padding"},
        {"{\"input\":[[1,2]],\"kernel\":[[1,1]],\"padding\":[0,2]}", 422, "invalid_field",
         "/padding"},
        {"{\"input\":[[1,2]],\"kernel\":[[1],[1]],\"padding\":[2,0]}", 422, "invalid_field",
         "/padding"},
        {"{\"input\":[[1,2]],\"kernel\":[[1,1]],\"dilation\":2,\"padding\":[0,3]}", 422,
         "invalid_field", "/padding"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"stride\":0}", 422, "invalid_field", "/stride"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"stride\":[1,0]}", 422, "invalid_field", "/stride/1"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"stride\":\"2\"}", 422, "invalid_field", "/stride"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"dilation\":0}", 422, "invalid_field", "/dilation"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"dilation\":true}", 422, "invalid_field", "/dilation"},
        {"{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"padding\":\"same\",\"stride\":2}", 422,
         "invalid_field", "/padding"},
        {"{\"input\":[[1,2],[3,4]],\"kernel\":[[1,2],[3,4]],\"dilation\":2}", 422, "shape_mismatch",
         "/kernel"},
        /* bias */
        {"{\"input\":[[1]],\"kernel\":[[[[1]]],[[[2]]]],\"bias\":[1,2,3]}", 422, "shape_mismatch",
         "/bias"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"bias\":[1,2]}", 422, "shape_mismatch", "/bias"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"bias\":\"1\"}", 422, "invalid_field", "/bias"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"bias\":[]}", 422, "invalid_field", "/bias"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"bias\":[\"a\"]}", 422, "invalid_field", "/bias/0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        corr2d_err(cases[i].body, cases[i].status, cases[i].code, cases[i].pointer);
}
END_TEST

START_TEST(test_kernel_too_large) {
    struct cv_corr2d_request req;
    struct cv_api_error err;
    const char *body = "{\"input\":[[1,2],[3,4]],\"kernel\":\"identity\"}";
    int rc = cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    check_err(rc, &err, body, 422, "shape_mismatch", "/kernel");
    ck_assert_str_eq(err.detail, "kernel is larger than the padded input");
    ck_assert_int_eq(err.n_errors, 1);
    ck_assert_str_eq(err.errors[0].detail, "3x3 kernel on a 2x2 input");
    /* With padding it fits. */
    body = "{\"input\":[[1,2],[3,4]],\"kernel\":\"identity\",\"padding\":1}";
    corr2d_ok(body, &req);
    check_shape(&req.y, 1, 1, 2, 2);
    cv_api_corr2d_request_free(&req);
}
END_TEST

START_TEST(test_collects_errors) {
    struct cv_corr2d_request req;
    struct cv_api_error err;
    const char *body = "{\"input\":[[1,\"a\"],[null,2]],\"kernel\":5,\"stride\":0,\"zz\":1}";
    int rc = cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    check_err(rc, &err, body, 422, "unknown_field", "/zz");
    ck_assert_int_eq(err.n_errors, 5);
    ck_assert(has_pointer(&err, "/input/0/1") && has_pointer(&err, "/input/1/0"));
    ck_assert(has_pointer(&err, "/kernel") && has_pointer(&err, "/stride"));
    /* The list stops at CV_API_MAX_FIELD_ERRORS. */
    char big[1024] = "{\"input\":[[";
    for (int i = 0; i < 40; i++)
        strcat(big, i ? ",\"x\"" : "\"x\"");
    strcat(big, "]],\"kernel\":[[1]]}");
    rc = cv_api_corr2d_parse(big, strlen(big), &lim, &req, &err);
    check_err(rc, &err, big, 422, "invalid_field", "/input/0/0");
    ck_assert_int_eq(err.n_errors, CV_API_MAX_FIELD_ERRORS);
    ck_assert_str_eq(err.detail, "/input/0/0: must be a number, not a string");
}
END_TEST

START_TEST(test_too_large) {
    const struct cv_api_limits small = {.max_elements = 16, .max_steps = 10};
    static const struct {
        const char *body, *pointer;
    } cases[] = {
        {"{\"input\":[[1,2,3,4,5,6,7,8,9],[1,2,3,4,5,6,7,8,9]],\"kernel\":[[1]]}", "/input"},
        {"{\"input\":{\"shape\":[1000000,1000000],\"data\":[]},\"kernel\":[[1]]}", "/input"},
        {"{\"input\":{\"shape\":[4294967296,1],\"b64\":\"\"},\"kernel\":[[1]]}", "/input"},
        {"{\"input\":[[1]],\"kernel\":{\"shape\":[5,5],\"data\":[]}}", "/kernel"},
        {"{\"input\":[[1]],\"kernel\":[[1]],\"bias\":[1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8]}",
         "/bias"},
        /* output over the limit through padding (4x5 = 20 elements) */
        {"{\"input\":[[1,1,1],[1,1,1]],\"kernel\":[[1,1,1],[1,1,1],[1,1,1]],\"padding\":2}", NULL},
        /* per-channel expansion of a 2-D kernel: 3*3*2*2 = 36 */
        {"{\"input\":[[[1,1]],[[1,1]],[[1,1]]],\"kernel\":[[1],[1]],\"padding\":[1,0]}", "/kernel"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cv_corr2d_request req;
        struct cv_api_error err;
        const char *body = cases[i].body;
        int rc = cv_api_corr2d_parse(body, strlen(body), &small, &req, &err);
        ck_assert_int_eq(rc, CV_ETOOBIG);
        check_err(rc, &err, body, 413, "too_large", cases[i].pointer);
    }
    /* The limit itself is fine. */
    struct cv_corr2d_request req;
    struct cv_api_error err;
    const char *body = "{\"input\":[[1,2,3,4],[1,2,3,4],[1,2,3,4],[1,2,3,4]],\"kernel\":[[1]]}";
    ck_assert_int_eq(cv_api_corr2d_parse(body, strlen(body), &small, &req, &err), CV_OK);
    cv_api_corr2d_request_free(&req);
    /* /train too */
    struct cv_train_request treq;
    body =
        "{\"input\":[[1,2,3,4,5,6,7,8,9],[1,2,3,4,5,6,7,8,9]],\"target\":[[1]],\"kernel_size\":1}";
    int rc = cv_api_train_parse(body, strlen(body), &small, &treq, &err);
    check_err(rc, &err, body, 413, "too_large", "/input");
}
END_TEST

/* ---- /train ------------------------------------------------------------------------------ */

static const char *edge_x = "[[1,1,1,1,1,1,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],"
                            "[1,1,0,0,0,0,1,1],[1,1,1,1,1,1,1,1],[1,1,1,1,1,1,1,1]]";
static const char *edge_y = "[[0,0,0,0,0,0,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],"
                            "[0,1,0,0,0,-1,0],[0,0,0,0,0,0,0],[0,0,0,0,0,0,0]]";

static char *train_body(const char *extra) {
    static char body[2048];
    snprintf(body, sizeof body, "{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2]%s}", edge_x,
             edge_y, extra);
    return body;
}

START_TEST(test_train_defaults) {
    struct cv_train_request req;
    train_ok(train_body(""), &req);
    check_shape(&req.x, 1, 1, 6, 8);
    check_shape(&req.y, 1, 1, 6, 7);
    check_shape(&req.weight, 1, 1, 1, 2);
    ck_assert_int_eq(req.weight_rank, 2);
    ck_assert(req.params.use_bias);
    ck_assert_ptr_nonnull(req.bias);
    ck_assert_int_eq(req.params.loss, CV_LOSS_KIND_SSE);
    ck_assert_int_eq(req.params.optim.kind, CV_OPTIM_KIND_SGD);
    ck_assert(req.params.optim.lr == 0.01f);
    ck_assert(req.params.optim.momentum == 0.9f);
    ck_assert(req.params.optim.beta1 == 0.9f);
    ck_assert(req.params.optim.beta2 == 0.999f);
    ck_assert(req.params.optim.eps == 1e-8f);
    ck_assert_int_eq(req.params.steps, 20);
    ck_assert_int_eq(req.report_every, 1);
    ck_assert(!req.params.has_stop_loss);
    ck_assert(req.stream);
    ck_assert_int_eq(req.params.n_threads, 1);
    check_geom(&req.params.geom, 0, 0, 0, 0, 1, 1, 1, 1);
    ck_assert_int_eq(req.out_form, CV_TENSOR_FORM_NESTED);
    ck_assert_uint_lt(req.seed, UINT64_C(1) << 53);
    /* PyTorch's start: uniform within 1/sqrt(fan_in) */
    float bound = 1.0f / sqrtf(2.0f);
    for (int i = 0; i < 2; i++)
        ck_assert(fabsf(req.weight.data[i]) <= bound);
    ck_assert(fabsf(req.bias[0]) <= bound);
    cv_api_train_request_free(&req);
    cv_api_train_request_free(&req);
    cv_api_train_request_free(NULL);
}
END_TEST

START_TEST(test_train_fields) {
    struct cv_train_request req;
    train_ok(train_body(",\"bias\":false,\"seed\":42,\"loss\":\"mse\",\"optimizer\":\"adam\","
                        "\"lr\":0.5,\"beta1\":0.8,\"beta2\":0.99,\"eps\":1e-6,\"momentum\":0.5,"
                        "\"steps\":7,\"report_every\":3,\"stop_loss\":0.25,\"stream\":false,"
                        "\"output_format\":\"flat\""),
             &req);
    ck_assert(!req.params.use_bias);
    ck_assert_ptr_null(req.bias);
    ck_assert_uint_eq(req.seed, 42);
    ck_assert_int_eq(req.params.loss, CV_LOSS_KIND_MSE);
    ck_assert_int_eq(req.params.optim.kind, CV_OPTIM_KIND_ADAM);
    ck_assert(req.params.optim.lr == 0.5f);
    ck_assert(req.params.optim.beta1 == 0.8f);
    ck_assert(req.params.optim.beta2 == 0.99f);
    ck_assert(req.params.optim.eps == 1e-6f);
    ck_assert(req.params.optim.momentum == 0.5f);
    ck_assert_int_eq(req.params.steps, 7);
    ck_assert_int_eq(req.report_every, 3);
    ck_assert(req.params.has_stop_loss && req.params.stop_loss == 0.25);
    ck_assert(!req.stream);
    ck_assert_int_eq(req.out_form, CV_TENSOR_FORM_FLAT);
    float w0 = req.weight.data[0], w1 = req.weight.data[1];
    cv_api_train_request_free(&req);
    /* The same seed gives the same start, whatever the data. */
    train_ok("{\"input\":[[1,2,3]],\"target\":[[1,2,3,4]],\"kernel_size\":[1,2],\"padding\":[0,1],"
             "\"seed\":42,\"bias\":false}",
             &req);
    ck_assert(req.weight.data[0] == w0 && req.weight.data[1] == w1);
    check_geom(&req.params.geom, 0, 0, 1, 1, 1, 1, 1, 1);
    cv_api_train_request_free(&req);

    /* A daemon whose --max-steps is below the default trains that many by default. */
    const struct cv_api_limits few = {.max_elements = 1 << 20, .max_steps = 5};
    struct cv_api_error err;
    ck_assert_int_eq(cv_api_train_parse(train_body(""), strlen(train_body("")), &few, &req, &err),
                     CV_OK);
    ck_assert_int_eq(req.params.steps, 5);
    cv_api_train_request_free(&req);
    const char *body = train_body(",\"steps\":6");
    check_err(cv_api_train_parse(body, strlen(body), &few, &req, &err), &err, body, 422,
              "invalid_field", "/steps");

    train_ok(train_body(",\"optimizer\":\"momentum\""), &req);
    ck_assert_int_eq(req.params.optim.kind, CV_OPTIM_KIND_MOMENTUM);
    ck_assert(req.params.optim.momentum == 0.9f);
    cv_api_train_request_free(&req);
}
END_TEST

START_TEST(test_train_init) {
    struct cv_train_request req;
    train_ok(train_body(",\"init\":{\"weight\":[[0.5,-0.25]],\"bias\":0.125}"), &req);
    ck_assert(req.weight.data[0] == 0.5f && req.weight.data[1] == -0.25f);
    ck_assert(req.bias[0] == 0.125f);
    cv_api_train_request_free(&req);
    /* init.weight alone sets the size; rank 4 is accepted too. */
    char body[2048];
    snprintf(body, sizeof body, "{\"input\":%s,\"target\":%s,\"init\":{\"weight\":[[[[1,-1]]]]}}",
             edge_x, edge_y);
    train_ok(body, &req);
    check_shape(&req.weight, 1, 1, 1, 2);
    ck_assert_int_eq(req.weight_rank, 2);
    ck_assert(req.weight.data[0] == 1.0f && req.weight.data[1] == -1.0f);
    ck_assert_ptr_nonnull(req.bias); /* drawn from the seed */
    cv_api_train_request_free(&req);

    train_err(train_body(",\"init\":{\"weight\":[[1,2,3]]}"), 422, "shape_mismatch",
              "/kernel_size");
    train_err(train_body(",\"init\":{\"weight\":[[[1,2]],[[3,4]]]}"), 422, "shape_mismatch",
              "/init/weight");
    train_err(train_body(",\"bias\":false,\"init\":{\"bias\":1}"), 422, "invalid_field",
              "/init/bias");
    train_err(train_body(",\"init\":{\"bias\":[1,2]}"), 422, "shape_mismatch", "/init/bias");
    train_err(train_body(",\"init\":{\"scale\":1}"), 422, "unknown_field", "/init/scale");
    train_err(train_body(",\"init\":[1]"), 422, "invalid_field", "/init");
    train_err(train_body(",\"init\":{\"weight\":[[1,\"x\"]]}"), 422, "invalid_field",
              "/init/weight/0/1");
}
END_TEST

START_TEST(test_train_ranks) {
    /* Each input and target rank: the weight's (Cout,C,kh,kw) and the rank it is written at, the
     * target's shape, and the last bias (NaN: random). */
    static const struct {
        const char *body;
        int64_t weight[4], y[4];
        int weight_rank;
        float bias_last;
    } cases[] = {
        /* d2l's reshape: (1,1,6,8) in, (1,1,6,7) out: the weight is (1,1,1,2), written at rank 4.
         */
        {"{\"input\":[[[[1,1,0,1]]]],\"target\":[[[[0,1,-1]]]],\"kernel_size\":[1,2]}",
         {1, 1, 1, 2},
         {1, 1, 1, 3},
         4,
         NAN},
        /* (C,H,W) in, (H',W') out: one output channel over C inputs, weight (C,kh,kw). */
        {"{\"input\":[[[1,2]],[[3,4]],[[5,6]]],\"target\":[[1]],\"kernel_size\":[1,2]}",
         {1, 3, 1, 2},
         {1, 1, 1, 1},
         3,
         NAN},
        /* (C,H,W) in, (Cout,H',W') out */
        {"{\"input\":[[[1,2]],[[3,4]]],\"target\":[[[1]],[[2]],[[3]]],\"kernel_size\":[1,2],"
         "\"init\":{\"bias\":[1,2,3]}}",
         {3, 2, 1, 2},
         {1, 3, 1, 1},
         4,
         3.0f},
        /* batched (N,C,H,W) in, (N,H',W') out: Cout 1 */
        {"{\"input\":[[[[1,2]]],[[[3,4]]]],\"target\":[[[1]],[[2]]],\"kernel_size\":[1,2]}",
         {1, 1, 1, 2},
         {2, 1, 1, 1},
         2,
         NAN},
        /* batched, with a channel dim */
        {"{\"input\":[[[[1,2]]],[[[3,4]]]],\"target\":[[[[1]],[[1]]],[[[2]],[[2]]]],"
         "\"kernel_size\":[1,2]}",
         {2, 1, 1, 2},
         {2, 2, 1, 1},
         4,
         NAN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cv_train_request req;
        train_ok(cases[i].body, &req);
        const int64_t *w = cases[i].weight, *y = cases[i].y;
        check_shape(&req.weight, w[0], w[1], w[2], w[3]);
        check_shape(&req.y, y[0], y[1], y[2], y[3]);
        ck_assert_int_eq(req.weight_rank, cases[i].weight_rank);
        ck_assert_ptr_nonnull(req.bias);
        if (!isnan(cases[i].bias_last))
            ck_assert(req.bias[w[0] - 1] == cases[i].bias_last);
        cv_api_train_request_free(&req);
    }

    train_err("{\"input\":[[1,2]],\"target\":[[[[1]]]],\"kernel_size\":[1,2]}", 422,
              "shape_mismatch", "/target");
    train_err("{\"input\":[[[[1,2]]],[[[3,4]]]],\"target\":[[1]],\"kernel_size\":[1,2]}", 422,
              "shape_mismatch", "/target");
    /* batch sizes differ */
    train_err("{\"input\":[[[[1,2]]],[[[3,4]]]],\"target\":[[[1]]],\"kernel_size\":[1,2]}", 422,
              "shape_mismatch", "/target");
}
END_TEST

START_TEST(test_train_errors) {
    struct cv_train_request req;
    struct cv_api_error err;
    char body[2048];
    snprintf(body, sizeof body, "{\"input\":%s,\"target\":%s,\"kernel_size\":[2,2]}", edge_x,
             edge_y);
    int rc = cv_api_train_parse(body, strlen(body), &lim, &req, &err);
    check_err(rc, &err, body, 422, "shape_mismatch", "/target");
    ck_assert_ptr_nonnull(strstr(err.detail, "[6,7]"));
    ck_assert_ptr_nonnull(strstr(err.detail, "[5,7]"));

    snprintf(body, sizeof body, "{\"input\":%s,\"target\":%s}", edge_x, edge_y);
    train_err(body, 422, "missing_field", "/kernel_size");
    train_err("{\"target\":[[1]],\"kernel_size\":1}", 422, "missing_field", "/input");
    train_err("{\"input\":[[1]],\"kernel_size\":1}", 422, "missing_field", "/target");
    train_err("{\"input\":[[1]],\"target\":[[1]],\"kernel_size\":2}", 422, "shape_mismatch",
              "/kernel_size");

    static const struct {
        const char *extra, *code, *pointer;
    } cases[] = {
        {",\"steps\":1001", "invalid_field", "/steps"},
        {",\"steps\":0", "invalid_field", "/steps"},
        {",\"steps\":2.5", "invalid_field", "/steps"},
        {",\"report_every\":0", "invalid_field", "/report_every"},
        {",\"lr\":0", "invalid_field", "/lr"},
        {",\"lr\":-1", "invalid_field", "/lr"},
        {",\"lr\":1e-50", "invalid_field", "/lr"},
        {",\"lr\":\"fast\"", "invalid_field", "/lr"},
        {",\"momentum\":1", "invalid_field", "/momentum"},
        {",\"beta1\":-0.1", "invalid_field", "/beta1"},
        {",\"beta2\":1.5", "invalid_field", "/beta2"},
        {",\"eps\":-1", "invalid_field", "/eps"},
        {",\"loss\":\"l1\"", "invalid_field", "/loss"},
        {",\"optimizer\":\"rmsprop\"", "invalid_field", "/optimizer"},
        {",\"optimizer\":3", "invalid_field", "/optimizer"},
        {",\"seed\":-1", "invalid_field", "/seed"},
        {",\"seed\":\"42\"", "invalid_field", "/seed"},
        {",\"bias\":1", "invalid_field", "/bias"},
        {",\"stream\":\"yes\"", "invalid_field", "/stream"},
        {",\"stop_loss\":\"low\"", "invalid_field", "/stop_loss"},
        {",\"kernel\":[[1]]", "unknown_field", "/kernel"},
        {",\"padding\":\"same\",\"stride\":2", "invalid_field", "/padding"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        train_err(train_body(cases[i].extra), 422, cases[i].code, cases[i].pointer);

    train_err("{\"input\":[[1,2]],\"target\":[[1]],\"kernel_size\":[3,3]}", 422, "shape_mismatch",
              "/kernel_size");
    train_err("{\"input\":[[1,2]],\"target\":[[1]],\"kernel_size\":[1,2,3]}", 422, "invalid_field",
              "/kernel_size");
    train_err("{\"input\":[[1,2]],\"target\":[[1]],\"kernel_size\":[1,0]}", 422, "invalid_field",
              "/kernel_size/1");
}
END_TEST

/* ---- events, replies, problems ----------------------------------------------------------- */

START_TEST(test_events) {
    struct cv_train_request req;
    train_ok(train_body(",\"seed\":7,\"init\":{\"weight\":[[0.75,-0.5]],\"bias\":0.25}"), &req);
    size_t len;
    char *s = cv_api_event_start_dump(&req, "j-7f3a", &len);
    ck_assert_uint_eq(len, strlen(s));
    ck_assert_str_eq(s, "{\"event\":\"start\",\"job\":\"j-7f3a\",\"steps\":20,\"parameters\":3,"
                        "\"seed\":7}");
    free(s);

    struct cv_train_step st = {.step = 1, .steps = 20, .loss = 34.5, .weight = &req.weight};
    s = cv_api_event_step_dump(&st, 0.0204, NULL);
    ck_assert_str_eq(s, "{\"event\":\"step\",\"step\":1,\"loss\":34.5,\"elapsed_ms\":0.02}");
    free(s);
    st.loss = NAN;
    s = cv_api_event_step_dump(&st, INFINITY, NULL);
    ck_assert_str_eq(s, "{\"event\":\"step\",\"step\":1,\"loss\":null,\"elapsed_ms\":null}");
    free(s);

    struct cv_train_result res = {.steps_done = 20, .last_loss = 0.3507, .final_loss = 0.302};
    s = cv_api_event_done_dump(&req, "succeeded", &res, 0.4, NULL);
    ck_assert_str_eq(s, "{\"event\":\"done\",\"status\":\"succeeded\",\"steps\":20,\"loss\":0.3507,"
                        "\"final_loss\":0.302,\"weight\":[[0.75,-0.5]],\"bias\":0.25,"
                        "\"elapsed_ms\":0.4}");
    free(s);

    double losses[3] = {4.63, 2.424, NAN};
    res.final_loss = INFINITY;
    s = cv_api_train_reply_dump(&req, "succeeded", &res, losses, 3, 12.5, NULL);
    json_t *v = load(s);
    ck_assert_str_eq(json_string_value(json_object_get(v, "status")), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "steps")), 20);
    json_t *l = json_object_get(v, "losses");
    ck_assert_uint_eq(json_array_size(l), 3);
    ck_assert_double_eq_tol(json_number_value(json_array_get(l, 0)), 4.63, 1e-6);
    ck_assert(json_is_null(json_array_get(l, 2)));
    ck_assert(json_is_null(json_object_get(v, "final_loss")));
    ck_assert(json_is_array(json_object_get(v, "weight")));
    ck_assert_double_eq(json_number_value(json_object_get(v, "bias")), 0.25);
    ck_assert_double_eq(json_number_value(json_object_get(v, "elapsed_ms")), 12.5);
    json_decref(v);
    free(s);
    cv_api_train_request_free(&req);

    /* No bias -> null; several output channels -> an array; the weight in the asked form. */
    train_ok("{\"input\":[[[1,2]],[[3,4]]],\"target\":[[[1]],[[2]]],\"kernel_size\":[1,2],"
             "\"init\":{\"bias\":[1,2]},\"output_format\":\"b64\"}",
             &req);
    s = cv_api_event_done_dump(&req, "cancelled", &res, 1, NULL);
    v = load(s);
    ck_assert_str_eq(json_string_value(json_object_get(v, "event")), "done");
    ck_assert_str_eq(json_string_value(json_object_get(v, "status")), "cancelled");
    json_t *b = json_object_get(v, "bias");
    ck_assert_uint_eq(json_array_size(b), 2);
    ck_assert_double_eq(json_number_value(json_array_get(b, 1)), 2);
    json_t *w = json_object_get(v, "weight");
    ck_assert_str_eq(json_string_value(json_object_get(w, "dtype")), "float32");
    ck_assert_uint_eq(json_array_size(json_object_get(w, "shape")), 4);
    json_decref(v);
    free(s);
    cv_api_train_request_free(&req);
    train_ok(train_body(",\"bias\":false"), &req);
    s = cv_api_event_done_dump(&req, "succeeded", &res, 1, NULL);
    v = load(s);
    ck_assert(json_is_null(json_object_get(v, "bias")));
    json_decref(v);
    free(s);
    cv_api_train_request_free(&req);

    s = cv_api_event_error_dump("diverged", "loss became \"NaN\"\n", NULL);
    ck_assert_str_eq(s, "{\"event\":\"error\",\"status\":\"failed\",\"code\":\"diverged\","
                        "\"detail\":\"loss became \\\"NaN\\\"\\n\"}");
    free(s);
}
END_TEST

START_TEST(test_problem_dump) {
    struct cv_corr2d_request req;
    struct cv_api_error err;
    const char *body = "{\"input\":\n[[1,2],[3]],\"kernel\":[[1]]}";
    cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    size_t len;
    char *s = cv_api_problem_dump(&err, "/corr2d", &len);
    ck_assert_uint_eq(len, strlen(s));
    json_t *v = load(s);
    ck_assert_str_eq(json_string_value(json_object_get(v, "type")), "about:blank");
    ck_assert_str_eq(json_string_value(json_object_get(v, "title")), "Unprocessable Content");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "status")), 422);
    ck_assert_str_eq(json_string_value(json_object_get(v, "code")), "invalid_field");
    ck_assert_str_eq(json_string_value(json_object_get(v, "instance")), "/corr2d");
    json_t *e = json_array_get(json_object_get(v, "errors"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "pointer")), "/input/1");
    ck_assert(json_is_string(json_object_get(e, "detail")));
    ck_assert_ptr_null(json_object_get(v, "line"));
    json_decref(v);
    free(s);

    body = "{\"input\":\n[[1,2],[3]],,}";
    cv_api_corr2d_parse(body, strlen(body), &lim, &req, &err);
    s = cv_api_problem_dump(&err, NULL, NULL);
    v = load(s);
    ck_assert_str_eq(json_string_value(json_object_get(v, "title")), "Bad Request");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "line")), 2);
    ck_assert(json_is_integer(json_object_get(v, "column")));
    ck_assert(json_is_integer(json_object_get(v, "position")));
    ck_assert_ptr_null(json_object_get(v, "errors"));
    ck_assert_ptr_null(json_object_get(v, "instance"));
    json_decref(v);
    free(s);

    /* Text that is not UTF-8 or needs escaping still gives JSON; long text is cut whole. */
    cv_api_error_set(&err, 413, "too_large", "/a\"b", "bad \xff byte \x01 and \"quotes\"");
    cv_api_error_add(&err, "/c", "%s", "second");
    ck_assert_int_eq(err.n_errors, 2);
    s = cv_api_problem_dump(&err, NULL, NULL);
    v = load(s);
    ck_assert_str_eq(json_string_value(json_object_get(v, "title")), "Content Too Large");
    ck_assert_str_eq(json_string_value(json_object_get(v, "detail")),
                     "bad \xef\xbf\xbd byte \x01 and \"quotes\"");
    json_decref(v);
    free(s);
    char longtext[600];
    memset(longtext, 'a', sizeof longtext);
    memcpy(longtext + 250, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9); /* euros across the cut */
    longtext[599] = '\0';
    cv_api_error_set(&err, 500, "internal", NULL, "%s", longtext);
    ck_assert_uint_le(strlen(err.detail), 255);
    ck_assert_uint_eq(strlen(err.detail) % 3, 250 % 3); /* no half euro left */
    for (int i = 0; i < CV_API_MAX_FIELD_ERRORS + 3; i++)
        cv_api_error_add(&err, "/x", "e%d", i);
    ck_assert_int_eq(err.n_errors, CV_API_MAX_FIELD_ERRORS);

    static const struct {
        int status;
        const char *title;
    } titles[] = {
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {413, "Content Too Large"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Content"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
    };
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
        ck_assert_str_eq(cv_api_status_title(titles[i].status), titles[i].title);
    ck_assert_ptr_nonnull(cv_api_status_title(299));
}
END_TEST

/* A 1000x1000 tensor in and out in reasonable time (the unit-test timeout is the bound). */
START_TEST(test_large_tensor) {
    enum { N = 1000 };
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"input\":{\"shape\":[1000,1000],\"data\":[");
    for (int i = 0; i < N * N; i++) {
        if (i)
            cv__buf_putc(&b, ',');
        cv__buf_put_f32(&b, (float)i / 7.0f);
    }
    cv__buf_puts(&b, "]},\"kernel\":[[1]],\"output_format\":\"nested\"}");
    size_t len;
    char *body = cv__buf_finish(&b, &len);
    struct cv_corr2d_request req;
    struct cv_api_error err;
    ck_assert_int_eq(cv_api_corr2d_parse(body, len, &lim, &req, &err), CV_OK);
    ck_assert(req.x.data[N * N - 1] == (float)(N * N - 1) / 7.0f);
    memcpy(req.y.data, req.x.data, sizeof(float) * N * N);
    char *reply = cv_api_corr2d_reply_dump(&req, &len);
    ck_assert_ptr_nonnull(reply);
    ck_assert_uint_gt(len, (size_t)N * N);
    free(reply);
    free(body);
    cv_api_corr2d_request_free(&req);
}
END_TEST

/* ---- the fast path: numbers, the pre-pass, parity with the jansson path ------------------- */

/* Ryu's tables, recomputed: floor(2^(bits(5^q) - 1 + 59) / 5^q) + 1 and 5^i cut to 61 bits. */
START_TEST(test_ryu_tables) {
    size_t n;
    const uint64_t *inv = cv__ryu_table(0, &n);
    ck_assert_uint_eq(n, 31);
    unsigned __int128 p5 = 1;
    for (size_t q = 0; q < n; q++, p5 *= 5) {
        int bits = 128 - (int)(p5 >> 64 ? __builtin_clzll((uint64_t)(p5 >> 64))
                                        : 64 + __builtin_clzll((uint64_t)p5));
        int j = bits - 1 + 59;
        /* 2^128 itself does not fit; 5^q never divides it, so (2^128 - 1) / 5^q is the same. */
        unsigned __int128 num = j == 128 ? ~(unsigned __int128)0 : (unsigned __int128)1 << j;
        ck_assert_msg(inv[q] == (uint64_t)(num / p5 + 1), "pow5_inv[%zu]", q);
    }
    const uint64_t *pow5 = cv__ryu_table(1, &n);
    ck_assert_uint_eq(n, 47);
    p5 = 1;
    for (size_t i = 0; i < n; i++, p5 *= 5) {
        int bits = 128 - (int)(p5 >> 64 ? __builtin_clzll((uint64_t)(p5 >> 64))
                                        : 64 + __builtin_clzll((uint64_t)p5));
        uint64_t want = bits >= 61 ? (uint64_t)(p5 >> (bits - 61)) : (uint64_t)(p5 << (61 - bits));
        ck_assert_msg(pow5[i] == want, "pow5[%zu]", i);
    }
}
END_TEST

/* The formatter this layer used before Ryu: %.6g to %.9g checked with strtof. */
static size_t ref_fmt_f32(char out[CV__NUM_MAX], float v) {
    if (v == truncf(v) && fabsf(v) <= 0x1p53f) {
        if (v == 0)
            return (size_t)snprintf(out, CV__NUM_MAX, "0");
        return (size_t)snprintf(out, CV__NUM_MAX, "%.0f", (double)v);
    }
    int prec = 6;
    for (; prec < 9; prec++) {
        snprintf(out, CV__NUM_MAX, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v)
            break;
    }
    /* Of 6 and 7 the old code preferred 6 when 7 read back; a shorter one beyond that. */
    snprintf(out, CV__NUM_MAX, "%.*g", prec, (double)v);
    /* printf's exponent "e-07" / "e+38" as "e-7" / "e38" */
    char *e = strchr(out, 'e');
    if (e != NULL) {
        char *src = e + 1, *dst = e + 1;
        if (*src == '-')
            *dst++ = *src++;
        else if (*src == '+')
            src++;
        while (*src == '0' && src[1] != '\0')
            src++;
        memmove(dst, src, strlen(src) + 1);
    }
    return strlen(out);
}

/* Significant digits of a number's text. */
static int sig_digits(const char *s) {
    int n = 0, lead = 1;
    for (; *s != '\0' && *s != 'e'; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (lead && *s == '0')
            continue;
        lead = 0;
        n++;
    }
    return n;
}

static void check_f32_text(float v) {
    char s[CV__NUM_MAX], ref[CV__NUM_MAX];
    size_t n = cv__fmt_f32(s, v);
    ck_assert_uint_eq(n, strlen(s));
    ck_assert_uint_le(n, 17);
    ck_assert_msg(strtof(s, NULL) == v || (v == 0 && strtof(s, NULL) == 0), "%a -> %s", (double)v,
                  s);
    /* The same float through the reader of the fast path. */
    char tok[CV__NUM_MAX + 1];
    snprintf(tok, sizeof tok, "%s]", s);
    float back;
    ck_assert_ptr_eq(cv__scan_f32(tok, tok + n + 1, &back), tok + n);
    ck_assert_msg(back == v || (v == 0 && back == 0), "%s read as %a", s, (double)back);
    /* The old formatter's text, or a shorter one where it was not the shortest. */
    ref_fmt_f32(ref, v);
    if (strcmp(s, ref) != 0)
        ck_assert_msg(sig_digits(s) < sig_digits(ref), "%a: %s, before %s", (double)v, s, ref);
    /* Shortest: one digit fewer does not read back. */
    int nd = sig_digits(s);
    if (nd > 1 && !(v == truncf(v) && fabsf(v) <= 0x1p53f)) {
        char shorter[400];
        snprintf(shorter, sizeof shorter, "%.*g", nd - 1, (double)v);
        ck_assert_msg(strtof(shorter, NULL) != v, "%a: %s but %s reads back", (double)v, s,
                      shorter);
    }
}

START_TEST(test_f32_format_many) {
    /* Edges: powers of two (their gap below is half the gap above), subnormals, limits. */
    for (int e = -149; e <= 127; e++) {
        float v = ldexpf(1.0f, e);
        check_f32_text(v);
        check_f32_text(-v);
        check_f32_text(nextafterf(v, 0));
        check_f32_text(nextafterf(v, INFINITY));
    }
    const float edges[] = {FLT_MAX, FLT_MIN,        FLT_TRUE_MIN, 16777215.0f,   16777217.0f,
                           0x1p53f, 0x1.000002p53f, 1e-5f,        9.9999997e-5f, 1e-4f,
                           0.3f,    2.5f,           1e10f,        7e22f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        check_f32_text(edges[i]);
    /* A stride through every bit pattern, and random ones. */
    for (uint64_t u = 0; u < (UINT64_C(1) << 32); u += 16411) {
        uint32_t b = (uint32_t)u;
        float v;
        memcpy(&v, &b, sizeof v);
        if (isfinite(v))
            check_f32_text(v);
    }
    uint64_t r = 88172645463325252u;
    for (int i = 0; i < 150000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        uint32_t b = (uint32_t)r;
        float v;
        memcpy(&v, &b, sizeof v);
        if (isfinite(v))
            check_f32_text(v);
        /* and typical tensor values */
        check_f32_text((float)((double)(r >> 40) / (double)(1 << 24) * 2.0 - 1.0));
    }
}
END_TEST

/* A random JSON number token (or something near one). */
static void random_number_text(uint64_t *r, char *out, size_t cap) {
    *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
    uint64_t x = *r;
    size_t o = 0;
    if (x & 1)
        out[o++] = '-';
    int int_digits = (int)((x >> 1) % 22), frac_digits = (int)((x >> 6) % 24);
    if ((x >> 11) % 4 == 0)
        int_digits = 1; /* often a single (maybe zero) integer digit */
    for (int i = 0; i < int_digits + (int_digits == 0); i++) {
        *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
        int d = (int)(*r % 10);
        if (i == 0 && int_digits > 1 && d == 0)
            d = 1 + (int)(*r % 9);
        if ((x >> 13) % 5 == 0 && i > 0)
            d = 0; /* runs of zeros */
        out[o++] = (char)('0' + d);
    }
    if ((x >> 16) % 3 != 0 && frac_digits > 0) {
        out[o++] = '.';
        for (int i = 0; i < frac_digits; i++) {
            *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
            out[o++] = (char)('0' + ((x >> 18) % 4 == 0 && i < frac_digits - 1 ? 0 : *r % 10));
        }
    }
    if ((x >> 20) % 3 == 0) {
        out[o++] = (x >> 22) & 1 ? 'e' : 'E';
        if ((x >> 23) % 3 == 1)
            out[o++] = '-';
        else if ((x >> 23) % 3 == 2)
            out[o++] = '+';
        int e = (int)((x >> 25) % ((x >> 35) % 4 == 0 ? 400 : 50));
        o += (size_t)snprintf(out + o, cap - o, "%s%d", (x >> 40) % 8 == 0 ? "00" : "", e);
    }
    out[o] = '\0';
}

/* Every token against jansson plus the api's cast: the same bits, refused where the jansson
 * path refuses (a syntax error, an overflow, outside float32). */
static void check_number_token(const char *tok) {
    char doc[200], buf[200];
    snprintf(doc, sizeof doc, "[%s]", tok);
    json_error_t je;
    json_t *a = json_loads(doc, 0, &je);
    json_t *e = json_array_get(a, 0);
    bool ok = a != NULL && json_array_size(a) == 1 && json_is_number(e) &&
              fabs(json_number_value(e)) < CV__F32_LIMIT;
    size_t n = strlen(tok);
    snprintf(buf, sizeof buf, "%s]", tok);
    float f;
    const char *end = cv__scan_f32(buf, buf + n + 1, &f);
    bool took = end == buf + n;
    ck_assert_msg(took == ok, "%s: fast %s, jansson %s", tok, took ? "takes it" : "refuses",
                  ok ? "takes it" : "refuses");
    if (ok) {
        float want = (float)json_number_value(e);
        ck_assert_msg(memcmp(&f, &want, sizeof f) == 0, "%s: %a, jansson path %a", tok, (double)f,
                      (double)want);
    }
    json_decref(a);
}

START_TEST(test_scan_f32_many) {
    static const char *const fixed[] = {"0",
                                        "-0",
                                        "0.0",
                                        "-0.0",
                                        "-0.0e-0",
                                        "1",
                                        "-1",
                                        "0.1",
                                        "1e5",
                                        "1E+5",
                                        "1e-5",
                                        "12.5e1",
                                        "3.4028235e38",
                                        "3.4028236e38",
                                        "3.40282357e38",
                                        "-3.4028235677973366e38",
                                        "340282356779733661637539395458142568448",
                                        "1e39",
                                        "1e308",
                                        "1e309",
                                        "-1e309",
                                        "1e-45",
                                        "7e-46",
                                        "1e-400",
                                        "9223372036854775807",
                                        "9223372036854775808",
                                        "-9223372036854775808",
                                        "-9223372036854775809",
                                        "123456789012345678",
                                        "1234567890123456789",
                                        "0.30000001192092896",
                                        "1.00000005960464477539062500001",
                                        "1.000000059604644775390625",
                                        "16777217",
                                        "01",
                                        "1.",
                                        ".5",
                                        "1e",
                                        "1e+",
                                        "+1",
                                        "-",
                                        "1.e5",
                                        "0x10",
                                        "Infinity",
                                        "NaN",
                                        "- 1",
                                        "00",
                                        "-01",
                                        "1ee5",
                                        "1.5.5",
                                        "0.000000000000000000000000000000000000000000000123456",
                                        "123456789012345678901234567890e-20",
                                        "4.9406564584124654e-324"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_number_token(fixed[i]);
    uint64_t r = 0x2545f4914f6cdd1du;
    char tok[160];
    for (int i = 0; i < 250000; i++) {
        random_number_text(&r, tok, sizeof tok);
        check_number_token(tok);
    }
    /* Decimals of 9 significant digits read as strtof reads them (no double rounding). */
    for (int i = 0; i < 200000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        snprintf(tok, sizeof tok, "%.8e]",
                 (double)(r % 1000000000) * pow(10, (int)(r >> 50) % 60 - 40));
        float f;
        ck_assert_ptr_nonnull(cv__scan_f32(tok, tok + strlen(tok), &f));
        if (fabsf(strtof(tok, NULL)) <= FLT_MAX)
            ck_assert_msg(f == strtof(tok, NULL), "%s: %a, strtof %a", tok, (double)f,
                          (double)strtof(tok, NULL));
    }
}
END_TEST

/* ---- parity of the fast path and the jansson path ---------------------------------------- */

struct rng {
    uint64_t s;
};

static uint64_t next(struct rng *r) {
    r->s ^= r->s << 13, r->s ^= r->s >> 7, r->s ^= r->s << 17;
    return r->s;
}

static float random_float(struct rng *r) {
    uint64_t x = next(r);
    switch (x % 8) {
    case 0: {
        uint32_t b = (uint32_t)(x >> 16);
        float v;
        memcpy(&v, &b, sizeof v);
        return isfinite(v) ? v : 1.5f;
    }
    case 1:
        return (float)((int)(x >> 20) % 200 - 100);
    case 2:
        return x & 8 ? 0.0f : -0.0f;
    case 3:
        return ldexpf((float)(x >> 40) / 16777216.0f, (int)(x >> 8) % 250 - 140);
    default:
        return (float)((double)(x >> 40) / 16777216.0 * 2.0 - 1.0);
    }
}

/* Random whitespace between tokens, now and then. */
static void put_ws(struct cv__buf *b, struct rng *r) {
    static const char ws[] = " \t\n\r";
    uint64_t x = next(r);
    if (x % 6 != 0)
        return;
    for (uint64_t i = 0; i < 1 + (x >> 3) % 3; i++)
        cv__buf_putc(b, ws[(x >> (8 + 2 * i)) % 4]);
}

static void put_number(struct cv__buf *b, struct rng *r, float v) {
    char s[64];
    switch (next(r) % 7) {
    case 0:
        snprintf(s, sizeof s, "%.9g", (double)v);
        break;
    case 1:
        snprintf(s, sizeof s, "%.17g", (double)v); /* numpy's tolist() through json.dumps */
        break;
    case 2:
        snprintf(s, sizeof s, "%.3E", (double)v);
        break;
    case 3:
        snprintf(s, sizeof s, "%.12f", (double)v);
        if (strlen(s) > 40)
            snprintf(s, sizeof s, "%.9g", (double)v);
        break;
    default:
        cv__fmt_f32(s, v);
    }
    cv__buf_puts(b, s);
}

static void put_floats_nested(struct cv__buf *b, struct rng *r, const int64_t *dims, int rank) {
    cv__buf_putc(b, '[');
    for (int64_t i = 0; i < dims[0]; i++) {
        if (i > 0)
            cv__buf_putc(b, ',');
        put_ws(b, r);
        if (rank == 1)
            put_number(b, r, random_float(r));
        else
            put_floats_nested(b, r, dims + 1, rank - 1);
        put_ws(b, r);
    }
    cv__buf_putc(b, ']');
}

/* A random tensor of the given shape in a random form (0 nested, 1 flat, 2 b64). */
static void put_tensor(struct cv__buf *b, struct rng *r, const int64_t *dims, int rank, int form) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    if (form == 0) {
        put_floats_nested(b, r, dims, rank);
        return;
    }
    cv__buf_puts(b, "{\"shape\":[");
    for (int i = 0; i < rank; i++) {
        if (i > 0)
            cv__buf_putc(b, ',');
        cv__buf_put_i64(b, dims[i]);
    }
    cv__buf_puts(b, "],");
    put_ws(b, r);
    if (form == 1) {
        cv__buf_puts(b, "\"data\":");
        put_ws(b, r);
        put_floats_nested(b, r, &n, 1);
    } else {
        float *v = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            v[i] = random_float(r);
        char *s = malloc(cv_base64_encoded_len((size_t)n * 4) + 1);
        cv_base64_encode((const uint8_t *)v, (size_t)n * 4, s);
        cv__buf_puts(b, next(r) % 2 ? "\"dtype\":\"float32\",\"b64\":\"" : "\"b64\":\"");
        cv__buf_puts(b, s);
        cv__buf_putc(b, '"');
        free(s);
        free(v);
    }
    cv__buf_putc(b, '}');
}

/* A random, mostly valid /corr2d body. */
static char *random_corr2d_body(struct rng *r, size_t *len) {
    struct cv__buf b = {0};
    int rank = 2 + (int)(next(r) % 3);
    int64_t dims[4];
    for (int i = 0; i < rank; i++)
        dims[i] = 1 + (int64_t)(next(r) % (i + 2 >= rank ? 6 : 3));
    int64_t c = rank >= 3 ? dims[rank - 3] : 1;
    cv__buf_putc(&b, '{');
    put_ws(&b, r);
    cv__buf_puts(&b, "\"input\":");
    put_tensor(&b, r, dims, rank, (int)(next(r) % 3));
    cv__buf_puts(&b, ",\"kernel\":");
    int64_t cout = c;
    if (next(r) % 3 == 0 && rank >= 3) {
        cout = 1 + (int64_t)(next(r) % 2);
        int64_t kd[4] = {cout, c, 1, 1};
        put_tensor(&b, r, kd, 4, (int)(next(r) % 3));
    } else {
        int64_t kd[2] = {1 + (int64_t)(next(r) % 2), 1 + (int64_t)(next(r) % 2)};
        put_tensor(&b, r, kd, 2, (int)(next(r) % 3));
    }
    uint64_t x = next(r);
    if (x % 4 == 1) {
        cv__buf_puts(&b, ",\"bias\":");
        put_number(&b, r, random_float(r));
    } else if (x % 4 == 2) {
        cv__buf_puts(&b, ",\"bias\":");
        put_floats_nested(&b, r, &cout, 1);
    }
    if ((x >> 4) % 3 == 0)
        cv__buf_puts(&b, ",\"padding\":[1,0]");
    if ((x >> 6) % 3 == 0) {
        static const char *forms[] = {"nested", "flat", "b64"};
        cv__buf_puts(&b, ",\"output_format\":\"");
        cv__buf_puts(&b, forms[(x >> 8) % 3]);
        cv__buf_putc(&b, '"');
    }
    put_ws(&b, r);
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}

/* A random, mostly valid /train body (input, target, init). */
static char *random_train_body(struct rng *r, size_t *len) {
    struct cv__buf b = {0};
    int64_t h = 2 + (int64_t)(next(r) % 4), w = 2 + (int64_t)(next(r) % 4);
    int64_t xd[2] = {h, w}, yd[2] = {h - 1, w - 1}, kd[2] = {2, 2}, one = 1;
    cv__buf_puts(&b, "{\"input\":");
    put_tensor(&b, r, xd, 2, (int)(next(r) % 3));
    cv__buf_puts(&b, ",");
    put_ws(&b, r);
    cv__buf_puts(&b, "\"target\":");
    put_tensor(&b, r, yd, 2, (int)(next(r) % 3));
    uint64_t x = next(r);
    if (x % 2) {
        cv__buf_puts(&b, ",\"init\":{\"weight\":");
        put_tensor(&b, r, kd, 2, (int)(next(r) % 3));
        if ((x >> 1) % 2) {
            cv__buf_puts(&b, ",\"bias\":");
            if ((x >> 2) % 2)
                put_floats_nested(&b, r, &one, 1);
            else
                put_number(&b, r, random_float(r));
        }
        cv__buf_puts(&b, "}");
    } else {
        cv__buf_puts(&b, ",\"kernel_size\":2");
    }
    cv__buf_puts(&b, ",\"steps\":3,\"seed\":7,\"lr\":0.001,\"stream\":false}");
    return cv__buf_finish(&b, len);
}

static void tensors_same(const struct cv_tensor *a, const struct cv_tensor *b, const char *what) {
    ck_assert_msg(a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w, "%s: shapes", what);
    ck_assert_msg((a->data == NULL) == (b->data == NULL), "%s: data", what);
    if (a->data != NULL)
        ck_assert_msg(memcmp(a->data, b->data, (size_t)cv_tensor_numel(a) * sizeof(float)) == 0,
                      "%s: values differ", what);
}

static void errors_same(int rc_fast, const struct cv_api_error *fast, int rc_plain,
                        const struct cv_api_error *plain, const char *body, size_t len) {
    ck_assert_msg(rc_fast == rc_plain, "status %d vs %d (%s / %s) for %.*s", rc_fast, rc_plain,
                  fast->detail, plain->detail, (int)(len < 300 ? len : 300), body);
    ck_assert_msg(memcmp(fast, plain, sizeof *fast) == 0,
                  "errors differ: \"%s\" vs \"%s\" for %.*s", fast->detail, plain->detail,
                  (int)(len < 300 ? len : 300), body);
}

/* Parses body both ways and checks that everything agrees; returns the fast path's status. */
static int corr2d_parity(const char *body, size_t len, const struct cv_api_limits *l) {
    struct cv_corr2d_request a, b;
    struct cv_api_error ea, eb;
    size_t mode = cv__fast_min_body;
    cv__fast_min_body = 0;
    int ra = cv_api_corr2d_parse(body, len, l, &a, &ea);
    cv__fast_min_body = SIZE_MAX;
    int rb = cv_api_corr2d_parse(body, len, l, &b, &eb);
    cv__fast_min_body = mode;
    errors_same(ra, &ea, rb, &eb, body, len);
    tensors_same(&a.x, &b.x, "x");
    tensors_same(&a.k, &b.k, "k");
    tensors_same(&a.y, &b.y, "y");
    ck_assert((a.bias == NULL) == (b.bias == NULL));
    if (a.bias != NULL)
        ck_assert(memcmp(a.bias, b.bias, (size_t)a.k.n * sizeof(float)) == 0);
    ck_assert(memcmp(&a.geom, &b.geom, sizeof a.geom) == 0);
    ck_assert(a.out_rank == b.out_rank && a.out_form == b.out_form);
    cv_api_corr2d_request_free(&a);
    cv_api_corr2d_request_free(&b);
    return ra;
}

static int train_parity(const char *body, size_t len, const struct cv_api_limits *l) {
    struct cv_train_request a, b;
    struct cv_api_error ea, eb;
    size_t mode = cv__fast_min_body;
    cv__fast_min_body = 0;
    int ra = cv_api_train_parse(body, len, l, &a, &ea);
    cv__fast_min_body = SIZE_MAX;
    int rb = cv_api_train_parse(body, len, l, &b, &eb);
    cv__fast_min_body = mode;
    errors_same(ra, &ea, rb, &eb, body, len);
    tensors_same(&a.x, &b.x, "x");
    tensors_same(&a.y, &b.y, "y");
    if (ra == CV_OK && strstr(body, "\"seed\"") != NULL) /* else each draws its own */
        tensors_same(&a.weight, &b.weight, "weight");
    ck_assert((a.bias == NULL) == (b.bias == NULL));
    if (a.bias != NULL && a.seed == b.seed)
        ck_assert(memcmp(a.bias, b.bias, (size_t)a.weight.n * sizeof(float)) == 0);
    ck_assert(memcmp(&a.params.geom, &b.params.geom, sizeof a.params.geom) == 0);
    ck_assert(a.params.optim.lr == b.params.optim.lr && a.params.steps == b.params.steps &&
              a.params.use_bias == b.params.use_bias && a.params.loss == b.params.loss);
    ck_assert(a.report_every == b.report_every && a.stream == b.stream &&
              a.weight_rank == b.weight_rank && a.out_form == b.out_form);
    cv_api_train_request_free(&a);
    cv_api_train_request_free(&b);
    return ra;
}

/* Random valid bodies of every form: both paths give the same tensors, and the fast one
 * stands (it does not start again the plain way). */
START_TEST(test_fast_path_parity) {
    struct rng r = {0x9e3779b97f4a7c15u};
    unsigned long stood = cv__fast_stood, fell = cv__fast_fallbacks;
    int ok = 0;
    for (int i = 0; i < 3000; i++) {
        size_t len;
        char *body = random_corr2d_body(&r, &len);
        ok += corr2d_parity(body, len, &lim) == CV_OK;
        free(body);
        body = random_train_body(&r, &len);
        ok += train_parity(body, len, &lim) == CV_OK;
        free(body);
    }
    ck_assert_int_gt(ok, 5000); /* most are valid */
    ck_assert_uint_ge(cv__fast_stood - stood, 5000);
    ck_assert_uint_eq(cv__fast_fallbacks - fell, 0);
}
END_TEST

/* Broken bodies: the same status, code, detail, pointers, line and column either way. */
START_TEST(test_fast_path_error_parity) {
    const struct cv_api_limits small = {.max_elements = 20, .max_steps = 10};
    static const char *const bodies[] = {
        "{\"input\":[[1,2],[3]],\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,\"x\"]],\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,null]],\"kernel\":[[1,true]]}",
        "{\"input\":[[1,1e39],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":[[1,1e400],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":[[1,99999999999999999999],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":[[1,-0],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":[[[[[1]]]]],\"kernel\":[[1]]}",
        "{\"input\":[[]],\"kernel\":[[1]]}",
        "{\"input\":[],\"kernel\":[[1]]}",
        "{\"input\":[1,2,3],\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}",
        "{\"\\u0069nput\":[[1,2],[3,4]],\"kernel\":[[1]]}",
        "{\"in\\/put\":[[1,2],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPwAAAEA=\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPwAAAEA\\/\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPwAA*EA=\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPwAAAEAAAEBA\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPw==\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAfwAAAEA=\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPwAAAEA=\",\"b64\":\"\"},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"b64\":\"AACAPwAAAEA=\",\"data\":[1,2]},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"data\":[[1,2]]},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"data\":[1,2,3]},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,0],\"data\":[1,2]},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2.0],\"data\":[1,2]},\"kernel\":[[1]]}",
        "{\"input\":{\"data\":[1,2]},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,2],\"data\":[1,2],\"extra\":[1,2]},\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"bias\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"bias\":[1,2]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"bias\":[1]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"padding\":[[1,2],[3,4]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"data\":[[1,2],[3,4]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"b64\":\"AAAA\"}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":{\"name\":\"box\",\"size\":[1,2,3]}}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1,2,3]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]} x",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],}",
        "{\"input\":[[1,2],[3,4]] \"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]",
        "{\"input\":[[1,2],[3,4],],\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]]],\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"x\":\"\xff\"}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"x\":\"\x01\"}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"x\":\"\\q\"}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"x\":\"\\u0000\"}",
        "{\"input\":[[1.,2],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":[[01,2],[3,4]],\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"output_format\":[1,2,3]}",
        "{\"input\":[[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6]],\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[5,5],\"data\":[1,2]},\"kernel\":[[1]]}",
        "{\"input\":{\"shape\":[1,21],\"data\":[1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9,0,1]},"
        "\"kernel\":[[1]]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"bias\":[1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,"
        "9,0,1]}",
        "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"bias\":[1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,"
        "\"9\",0,1]}",
        "{\"input\":[[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6]],\"kernel\":[[1]],"
        "\"stride\":[[1]]}",
        "{\"input\":[[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6,7]],\"kernel\":[[1]]}",
        "{\"input\":[[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6],[1,2,3,4,5,6]],\"kernel\":[[1e40]]}",
        " \n{\"input\" : [ [ 1 , 2 ] , [ 3 , 4 ] ] , \"kernel\" : [ [ 1 ] ] } \n",
        "[[1,2],[3,4]]",
        "",
        "{}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        corr2d_parity(bodies[i], strlen(bodies[i]), &lim);
        corr2d_parity(bodies[i], strlen(bodies[i]), &small);
        /* the same tensors under /train's names */
        char t[1024];
        snprintf(t, sizeof t, "%s", bodies[i]);
        char *k = strstr(t, "\"kernel\":[[1]]");
        if (k != NULL) {
            memcpy(k, "\"target\":[[1]]", 14);
            train_parity(t, strlen(t), &lim);
            train_parity(t, strlen(t), &small);
        }
    }
    /* A NUL inside the body. */
    static const char nul_body[] = "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]],\"x\":\"a\0b\"}";
    corr2d_parity(nul_body, sizeof nul_body - 1, &lim);
    static const char nul_body2[] = "{\"input\":[[1,2],[3\0,4]],\"kernel\":[[1]]}";
    corr2d_parity(nul_body2, sizeof nul_body2 - 1, &lim);

    /* Mutations of random bodies: a byte replaced, dropped or added, a tail cut off. */
    static const char nasty[] = "[]{},:\"\\-+.eE0159 \tx\xff\x01";
    struct rng r = {0x123456789abcdefu};
    for (int i = 0; i < 6000; i++) {
        size_t len;
        char *body = i % 3 == 2 ? random_train_body(&r, &len) : random_corr2d_body(&r, &len);
        char *m = malloc(len + 2);
        memcpy(m, body, len);
        size_t at = (size_t)(next(&r) % len);
        char c = nasty[next(&r) % (sizeof nasty - 1)];
        switch (next(&r) % 4) {
        case 0:
            m[at] = c;
            break;
        case 1:
            memmove(m + at, m + at + 1, len - at - 1);
            len--;
            break;
        case 2:
            memmove(m + at + 1, m + at, len - at);
            m[at] = c;
            len++;
            break;
        default:
            len = at;
        }
        if (i % 3 == 2) {
            train_parity(m, len, &lim);
            train_parity(m, len, &small);
        } else {
            corr2d_parity(m, len, &lim);
            corr2d_parity(m, len, &small);
        }
        free(m);
        free(body);
    }
}
END_TEST

/* The pre-pass on its own: what it takes out and what the rest looks like. */
START_TEST(test_body_scan) {
    const char *body = "{\"input\":{\"shape\":[2,2],\"b64\":\"AAAAAAAAAAAAAAAAAAAAAA==\"},"
                       "\"kernel\":[[1,2],[3,4]],\"bias\":[0.5],\"padding\":[1,1],"
                       "\"init\":{\"weight\":[1.5,-2e-3]},\"other\":{\"input\":[[1]]},"
                       "\"list\":[{\"input\":[[1]]}],\"b64\":7}";
    struct cv__scan sc;
    ck_assert(cv__scan_body(body, strlen(body), 100, &sc));
    ck_assert_str_eq(sc.rest, "{\"input\":{\"shape\":[2,2],\"b64\":\"\"},\"kernel\":[],\"bias\":[],"
                              "\"padding\":[1,1],\"init\":{\"weight\":[]},\"other\":{\"input\":[]},"
                              "\"list\":[{\"input\":[[1]]}],\"b64\":7}");
    ck_assert_uint_eq(sc.n, 5);
    ck_assert_str_eq(sc.slots[0].ptr, "/input/b64");
    ck_assert(sc.slots[0].b64 && sc.slots[0].text_len == 24);
    ck_assert_str_eq(sc.slots[1].ptr, "/kernel");
    ck_assert_int_eq(sc.slots[1].rank, 2);
    ck_assert(sc.slots[1].dims[0] == 2 && sc.slots[1].dims[1] == 2);
    ck_assert(sc.slots[1].data[3] == 4.0f);
    ck_assert_str_eq(sc.slots[3].ptr, "/init/weight");
    ck_assert(sc.slots[3].data[1] == -2e-3f);
    ck_assert_str_eq(sc.slots[4].ptr, "/other/input");
    cv__scan_free(&sc);
    /* Over the limit: the shape is kept, not the numbers. */
    body = "{\"input\":[[1,2,3],[4,5,6]]}";
    ck_assert(cv__scan_body(body, strlen(body), 5, &sc));
    ck_assert(sc.slots[0].over && sc.slots[0].data == NULL && sc.slots[0].dims[1] == 3);
    cv__scan_free(&sc);
    /* Nothing to take, or not an object. */
    body = "{\"input\":[[1,\"2\"]],\"kernel\":\"edge\"}";
    ck_assert(!cv__scan_body(body, strlen(body), 100, &sc));
    ck_assert(!cv__scan_body("[1,2]", 5, 100, &sc));
    ck_assert(!cv__scan_body("", 0, 100, &sc));
}
END_TEST

/* cv__body_load_skim: the errors of cv__body_load, and the same small members. */
static void skim_parity(const char *body, size_t len) {
    struct cv_api_limits l = {0, 0};
    struct cv_api_error ea, eb;
    memset(&ea, 0, sizeof ea);
    memset(&eb, 0, sizeof eb);
    struct cv__parse pa = {.lim = &l, .err = &ea}, pb = {.lim = &l, .err = &eb};
    json_t *ra, *rb;
    size_t mode = cv__fast_min_body;
    cv__fast_min_body = 0;
    int sa = cv__body_load_skim(&pa, body, len, &ra);
    cv__fast_min_body = mode;
    int sb = cv__body_load(&pb, body, len, &rb);
    errors_same(sa, &ea, sb, &eb, body, len);
    ck_assert((ra == NULL) == (rb == NULL));
    if (ra != NULL) {
        ck_assert_uint_eq(json_object_size(ra), json_object_size(rb));
        json_t *ka = json_object_get(ra, "kind"), *kb = json_object_get(rb, "kind");
        ck_assert(json_equal(ka, kb) || (ka == NULL && kb == NULL));
    }
    json_decref(ra);
    json_decref(rb);
}

START_TEST(test_body_load_skim) {
    struct rng r = {0xfeedfacecafebeefu};
    for (int i = 0; i < 3000; i++) {
        size_t len;
        char *body = i % 2 ? random_train_body(&r, &len) : random_corr2d_body(&r, &len);
        /* "kind" first, as POST /jobs bodies have it, then now and then a broken byte */
        char *m = malloc(len + 32);
        int n = snprintf(m, 32, "{\"kind\":\"%s\",", i % 2 ? "train" : "corr2d");
        memcpy(m + n, body + 1, len - 1);
        size_t mlen = (size_t)n + len - 1;
        if (i % 3 == 0)
            m[next(&r) % mlen] = "[]{},:\"x0"[next(&r) % 9];
        skim_parity(m, mlen);
        free(m);
        free(body);
    }
}
END_TEST

/* A large b64 and a large nested body take the fast path under the default threshold. */
START_TEST(test_fast_path_large) {
    enum { N = 300 };
    struct rng r = {42};
    int64_t dims[2] = {N, N};
    for (int form = 0; form < 3; form++) {
        struct cv__buf b = {0};
        cv__buf_puts(&b, "{\"input\":");
        put_tensor(&b, &r, dims, 2, form);
        cv__buf_puts(&b, ",\"kernel\":[[1,2],[3,4]]}");
        size_t len;
        char *body = cv__buf_finish(&b, &len);
        unsigned long stood = cv__fast_stood;
        size_t mode = cv__fast_min_body;
        cv__fast_min_body = 4096;
        struct cv_corr2d_request req;
        struct cv_api_error err;
        ck_assert_int_eq(cv_api_corr2d_parse(body, len, &lim, &req, &err), CV_OK);
        ck_assert_uint_eq(cv__fast_stood, stood + 1);
        cv__fast_min_body = mode;
        cv_api_corr2d_request_free(&req);
        corr2d_parity(body, len, &lim);
        free(body);
    }
}
END_TEST

/* The suite. The tests of bodies run twice: once with every body through the fast path
 * (cv__fast_min_body 0) and once through jansson alone; the fast path's own tests once. */
static Suite *api_suite(const char *name, bool with_fast_tests) {
    Suite *s = suite_create(name);
    struct {
        const char *name;
        const TTest *tests[16];
    } groups[] = {
        {"tensors",
         {test_seed_example, test_tensor_forms, test_output_format, test_b64_large_round_trip,
          test_number_format, test_numbers_round_trip, test_large_tensor}},
        {"corr2d",
         {test_corr2d_defaults, test_corr2d_geometry, test_corr2d_bias, test_corr2d_ranks,
          test_named_kernels, test_kernels_dump}},
        {"errors",
         {test_syntax_errors, test_field_errors, test_kernel_too_large, test_collects_errors,
          test_too_large}},
        {"train",
         {test_train_defaults, test_train_fields, test_train_init, test_train_ranks,
          test_train_errors}},
        {"dumps", {test_events, test_problem_dump}},
        {"fast",
         {test_ryu_tables, test_f32_format_many, test_scan_f32_many, test_body_scan,
          test_fast_path_parity, test_fast_path_error_parity, test_body_load_skim,
          test_fast_path_large}},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        if (strcmp(groups[g].name, "fast") == 0 && !with_fast_tests)
            continue;
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, 30);
        for (size_t i = 0; groups[g].tests[i] != NULL; i++)
            tcase_add_test(tc, groups[g].tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) {
    cv_api_init();
    int failed = 0;
    const struct {
        const char *name;
        size_t fast_min_body;
        bool with_fast_tests;
    } passes[] = {{"api (fast path for every body)", 0, true},
                  {"api (jansson path alone)", SIZE_MAX, false}};
    for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++) {
        cv__fast_min_body = passes[i].fast_min_body;
        SRunner *sr = srunner_create(api_suite(passes[i].name, passes[i].with_fast_tests));
        srunner_run_all(sr, CK_NORMAL);
        failed += srunner_ntests_failed(sr);
        srunner_free(sr);
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
