/* Unit tests of the api layer (api/): tensors in their three forms, /corr2d and /train bodies
 * with every default and every error, named kernels, events and problem+json.
 *
 * Replies are read back with jansson to check their fields. Compute functions run only inside
 * test cases (check forks each one), never from main(): libgomp is not fork-safe. */
#include <check.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
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

/* Fills y with corr2d(x, k) + bias and returns the reply text (caller frees). */
static char *corr2d_run(struct cv_corr2d_request *req) {
    ck_assert_int_eq(cv_corr2d_forward(&req->x, &req->k, req->bias, &req->geom, &req->y, 1), CV_OK);
    char *s = cv_api_corr2d_reply_dump(req, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
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
    char *reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[19,25],[37,43]]}");
    free(reply);
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
        char *reply = corr2d_run(&req);
        ck_assert_str_eq(reply, want);
        free(reply);
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
        char *reply = corr2d_run(&req);
        ck_assert_str_eq(reply, want);
        free(reply);
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
    ck_assert_int_eq(req.geom.pad_top, 0);
    ck_assert_int_eq(req.geom.pad_bottom, 0);
    ck_assert_int_eq(req.geom.pad_left, 0);
    ck_assert_int_eq(req.geom.pad_right, 0);
    ck_assert_int_eq(req.geom.stride_h, 1);
    ck_assert_int_eq(req.geom.stride_w, 1);
    ck_assert_int_eq(req.geom.dil_h, 1);
    ck_assert_int_eq(req.geom.dil_w, 1);
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
    ck_assert_int_eq(req.geom.pad_top, 0);
    ck_assert_int_eq(req.geom.pad_bottom, 1);
    ck_assert_int_eq(req.geom.pad_left, 0);
    ck_assert_int_eq(req.geom.pad_right, 1);
    check_shape(&req.y, 1, 1, 2, 3);
    char *reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[12,16,9],[9,11,6]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);
    /* "same" with dilation 2 on a 3x3 kernel: 4 zeros each way, split 2/2 */
    corr2d_ok("{\"input\":[[1,2,3],[4,5,6],[7,8,9]],\"kernel\":\"identity\",\"padding\":\"same\","
              "\"dilation\":2}",
              &req);
    ck_assert_int_eq(req.geom.pad_top, 2);
    ck_assert_int_eq(req.geom.pad_bottom, 2);
    check_shape(&req.y, 1, 1, 3, 3);
    cv_api_corr2d_request_free(&req);
    /* explicit padding, stride and dilation pairs */
    corr2d_ok(
        "{\"input\":{\"shape\":[5,7],\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
        "0,0,0,0,0,0,0,0,0,0,0,0]},\"kernel\":[[1,1],[1,1]],\"padding\":[1,2],\"stride\":[2,3],"
        "\"dilation\":[1,2]}",
        &req);
    ck_assert_int_eq(req.geom.pad_top, 1);
    ck_assert_int_eq(req.geom.pad_left, 2);
    ck_assert_int_eq(req.geom.stride_h, 2);
    ck_assert_int_eq(req.geom.stride_w, 3);
    ck_assert_int_eq(req.geom.dil_h, 1);
    ck_assert_int_eq(req.geom.dil_w, 2);
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
    char *reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[20,26],[38,44]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);
    /* A number is repeated over the output channels; an array gives one each. */
    corr2d_ok("{\"input\":[[1]],\"kernel\":[[[[2]]],[[[3]]]],\"bias\":0.5}", &req);
    ck_assert(req.bias[0] == 0.5f && req.bias[1] == 0.5f);
    cv_api_corr2d_request_free(&req);
    corr2d_ok("{\"input\":[[1]],\"kernel\":[[[[2]]],[[[3]]]],\"bias\":[10,20]}", &req);
    ck_assert(req.bias[0] == 10.0f && req.bias[1] == 20.0f);
    reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[[12]],[[23]]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);
}
END_TEST

START_TEST(test_corr2d_ranks) {
    struct cv_corr2d_request req;
    char *reply;
    /* 2-D kernel on a 3-channel input: each channel on its own, the input's rank kept. */
    corr2d_ok("{\"input\":[[[1,2],[3,4]],[[5,6],[7,8]],[[9,10],[11,12]]],\"kernel\":[[1,-1]]}",
              &req);
    check_shape(&req.k, 3, 3, 1, 2);
    for (int o = 0; o < 3; o++)
        for (int c = 0; c < 3; c++) {
            const float *k = req.k.data + (o * 3 + c) * 2;
            ck_assert(k[0] == (o == c ? 1.0f : 0.0f) && k[1] == (o == c ? -1.0f : 0.0f));
        }
    check_shape(&req.y, 1, 3, 2, 1);
    ck_assert_int_eq(req.out_rank, 3);
    reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[[-1],[-1]],[[-1],[-1]],[[-1],[-1]]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);

    /* ... and on a batch. */
    corr2d_ok("{\"input\":[[[[1,2]],[[3,5]]],[[[0,0]],[[1,0]]]],\"kernel\":[[1,-1]]}", &req);
    check_shape(&req.y, 2, 2, 1, 1);
    ck_assert_int_eq(req.out_rank, 4);
    reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[[[-1]],[[-2]]],[[[0]],[[1]]]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);

    /* (C,kh,kw) sums over the channels: (H',W') unbatched, (N,1,H',W') for a batch. */
    corr2d_ok("{\"input\":[[[1,2]],[[3,4]]],\"kernel\":[[[1]],[[10]]]}", &req);
    check_shape(&req.k, 1, 2, 1, 1);
    check_shape(&req.y, 1, 1, 1, 2);
    ck_assert_int_eq(req.out_rank, 2);
    reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[31,42]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);
    corr2d_ok("{\"input\":[[[[1,2]],[[3,4]]]],\"kernel\":[[[1]],[[10]]]}", &req);
    check_shape(&req.y, 1, 1, 1, 2);
    ck_assert_int_eq(req.out_rank, 4);
    reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[[[31,42]]]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);
    /* (C,kh,kw) on a (H,W) input: C must be 1. */
    corr2d_ok("{\"input\":[[1,2]],\"kernel\":[[[3]]]}", &req);
    ck_assert_int_eq(req.out_rank, 2);
    cv_api_corr2d_request_free(&req);

    /* (Cout,C,kh,kw): (Cout,H',W') unbatched, (N,Cout,H',W') for a batch. */
    corr2d_ok(
        "{\"input\":[[[1,2]],[[3,4]]],\"kernel\":[[[[1]],[[0]]],[[[0]],[[1]]],[[[1]],[[1]]]]}",
        &req);
    check_shape(&req.y, 1, 3, 1, 2);
    ck_assert_int_eq(req.out_rank, 3);
    reply = corr2d_run(&req);
    ck_assert_str_eq(reply, "{\"output\":[[[1,2]],[[3,4]],[[4,6]]]}");
    free(reply);
    cv_api_corr2d_request_free(&req);
    corr2d_ok("{\"input\":[[[[1,2]]],[[[3,4]]]],\"kernel\":[[[[1]]],[[[2]]]]}", &req);
    check_shape(&req.y, 2, 2, 1, 2);
    ck_assert_int_eq(req.out_rank, 4);
    cv_api_corr2d_request_free(&req);

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
        /* output over the limit through padding */
        {"{\"input\":[[1]],\"kernel\":[[1]],\"padding\":2}", NULL},
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
    ck_assert_int_eq(req.params.geom.pad_top, 0);
    ck_assert_int_eq(req.params.geom.pad_right, 0);
    ck_assert_int_eq(req.params.geom.stride_h, 1);
    ck_assert_int_eq(req.params.geom.dil_w, 1);
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
    ck_assert_int_eq(req.params.geom.pad_left, 1);
    ck_assert_int_eq(req.params.geom.pad_right, 1);
    ck_assert_int_eq(req.params.geom.pad_top, 0);
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
    struct cv_train_request req;
    /* d2l's reshape: (1,1,6,8) in, (1,1,6,7) out: the weight is (1,1,1,2), written at rank 4. */
    train_ok("{\"input\":[[[[1,1,0,1]]]],\"target\":[[[[0,1,-1]]]],\"kernel_size\":[1,2]}", &req);
    check_shape(&req.weight, 1, 1, 1, 2);
    ck_assert_int_eq(req.weight_rank, 4);
    cv_api_train_request_free(&req);
    /* (C,H,W) in, (H',W') out: one output channel over C inputs, weight (C,kh,kw). */
    train_ok("{\"input\":[[[1,2]],[[3,4]],[[5,6]]],\"target\":[[1]],\"kernel_size\":[1,2]}", &req);
    check_shape(&req.weight, 1, 3, 1, 2);
    check_shape(&req.y, 1, 1, 1, 1);
    ck_assert_int_eq(req.weight_rank, 3);
    ck_assert_ptr_nonnull(req.bias);
    cv_api_train_request_free(&req);
    /* (C,H,W) in, (Cout,H',W') out */
    train_ok("{\"input\":[[[1,2]],[[3,4]]],\"target\":[[[1]],[[2]],[[3]]],\"kernel_size\":[1,2],"
             "\"init\":{\"bias\":[1,2,3]}}",
             &req);
    check_shape(&req.weight, 3, 2, 1, 2);
    check_shape(&req.y, 1, 3, 1, 1);
    ck_assert_int_eq(req.weight_rank, 4);
    ck_assert(req.bias[2] == 3.0f);
    cv_api_train_request_free(&req);
    /* batched (N,C,H,W) in, (N,H',W') out: Cout 1 */
    train_ok("{\"input\":[[[[1,2]]],[[[3,4]]]],\"target\":[[[1]],[[2]]],\"kernel_size\":[1,2]}",
             &req);
    check_shape(&req.y, 2, 1, 1, 1);
    check_shape(&req.weight, 1, 1, 1, 2);
    ck_assert_int_eq(req.weight_rank, 2);
    cv_api_train_request_free(&req);
    /* batched, with a channel dim */
    train_ok("{\"input\":[[[[1,2]]],[[[3,4]]]],\"target\":[[[[1]],[[1]]],[[[2]],[[2]]]],"
             "\"kernel_size\":[1,2]}",
             &req);
    check_shape(&req.y, 2, 2, 1, 1);
    check_shape(&req.weight, 2, 1, 1, 2);
    ck_assert_int_eq(req.weight_rank, 4);
    cv_api_train_request_free(&req);

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

static Suite *api_suite(void) {
    Suite *s = suite_create("api");
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
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
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
    SRunner *sr = srunner_create(api_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
