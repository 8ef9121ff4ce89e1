/* POST /corr2d over real HTTP: the textbook numbers, bias, named kernels, the three tensor forms,
 * padding/stride/dilation and channels. Expected values are worked out by hand in the comments
 * (and were cross-checked with torch.nn.functional.conv2d). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_suite.h"

#define SEED_BODY "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]]"

/* Runs a /corr2d body and checks the nested "output" against expect. */
static void check_corr2d(const char *body, int rank, const int *shape, const double *expect) {
    json_t *j = cv_post_ok("/corr2d", body);
    cv_check_nested(json_object_get(j, "output"), rank, shape, expect, 1e-5);
    json_decref(j);
}

START_TEST(test_seed_exact) {
    /* The contract pins the bytes, not just the values: integral floats print without ".0". */
    struct cv_reply r;
    ck_assert_int_eq(cv_post_json(&cv_d, "/corr2d", SEED_BODY "}", &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_check_media_type(r.content_type, "application/json");
    size_t n = r.body_len;
    while (n > 0 && (r.body[n - 1] == '\n' || r.body[n - 1] == '\r'))
        n--;
    r.body[n] = '\0';
    ck_assert_str_eq(r.body, "{\"output\":[[19,25],[37,43]]}");
    cv_reply_free(&r);
}
END_TEST

START_TEST(test_bias) {
    /* The Conv2D layer: corr2d + bias on every element. */
    check_corr2d(SEED_BODY ",\"bias\":1.5}", 2, (int[]){2, 2}, (double[]){20.5, 26.5, 38.5, 44.5});
}
END_TEST

START_TEST(test_edge_explicit) {
    char *body = cv_strdupf("{\"input\":%s,\"kernel\":[[1,-1]]}", cv_seed_x);
    check_corr2d(body, 2, (int[]){6, 7}, cv_seed_y_values);
    free(body);
}
END_TEST

START_TEST(test_edge_named) {
    char *body = cv_strdupf("{\"input\":%s,\"kernel\":\"edge\"}", cv_seed_x);
    check_corr2d(body, 2, (int[]){6, 7}, cv_seed_y_values);
    free(body);
}
END_TEST

START_TEST(test_flat_round_trip) {
    /* Flat in, flat out (the reply mirrors the input's form). */
    json_t *j = cv_post_ok("/corr2d", "{\"input\":{\"shape\":[3,3],\"data\":[0,1,2,3,4,5,6,7,8]},"
                                      "\"kernel\":[[0,1],[2,3]]}");
    json_t *out = json_object_get(j, "output");
    cv_check_nested(json_object_get(out, "shape"), 1, (int[]){2}, (double[]){2, 2}, 0);
    cv_check_nested(json_object_get(out, "data"), 1, (int[]){4}, (double[]){19, 25, 37, 43}, 0);
    json_decref(j);
}
END_TEST

START_TEST(test_flat_output_format_nested) {
    check_corr2d("{\"input\":{\"shape\":[3,3],\"data\":[0,1,2,3,4,5,6,7,8]},"
                 "\"kernel\":[[0,1],[2,3]],\"output_format\":\"nested\"}",
                 2, (int[]){2, 2}, (double[]){19, 25, 37, 43});
}
END_TEST

START_TEST(test_b64_round_trip) {
    /* base64 of little-endian float32: encoded here independently of the daemon's codec. */
    float x[9];
    uint8_t bytes[9 * 4];
    for (int i = 0; i < 9; i++) {
        x[i] = (float)i;
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int b = 0; b < 4; b++)
            bytes[4 * i + b] = (uint8_t)(u >> (8 * b));
    }
    char *b64 = cv_b64_encode(bytes, sizeof bytes);
    char *body = cv_strdupf("{\"input\":{\"shape\":[3,3],\"dtype\":\"float32\",\"b64\":\"%s\"},"
                            "\"kernel\":[[0,1],[2,3]]}",
                            b64);
    json_t *j = cv_post_ok("/corr2d", body);
    json_t *out = json_object_get(j, "output");
    cv_check_nested(json_object_get(out, "shape"), 1, (int[]){2}, (double[]){2, 2}, 0);
    ck_assert_str_eq(json_string_value(json_object_get(out, "dtype")), "float32");
    const char *got = json_string_value(json_object_get(out, "b64"));
    ck_assert_msg(got != NULL, "no b64 member in the output");
    uint8_t dec[64];
    ck_assert_msg(strlen(got) <= 64 && cv_b64_decode(got, dec) == 16, "b64 output %s", got);
    const float want[4] = {19, 25, 37, 43};
    for (int i = 0; i < 4; i++) {
        uint32_t u = (uint32_t)dec[4 * i] | (uint32_t)dec[4 * i + 1] << 8 |
                     (uint32_t)dec[4 * i + 2] << 16 | (uint32_t)dec[4 * i + 3] << 24;
        float v;
        memcpy(&v, &u, 4);
        ck_assert_msg(v == want[i], "b64 element %d is %g, expected %g", i, v, want[i]);
    }
    json_decref(j);
    free(body);
    free(b64);
}
END_TEST

START_TEST(test_padding_same_odd) {
    /* 3x3 box on 1..9 with one zero all round: each output is the sum of its neighbourhood. */
    check_corr2d("{\"input\":[[1,2,3],[4,5,6],[7,8,9]],\"kernel\":[[1,1,1],[1,1,1],[1,1,1]],"
                 "\"padding\":\"same\"}",
                 2, (int[]){3, 3}, (double[]){12, 21, 16, 27, 45, 33, 24, 39, 28});
}
END_TEST

START_TEST(test_padding_same_even) {
    /* A 1x2 kernel needs one zero in all; PyTorch puts it on the right: [1,2,3,0] * [1,2]. */
    check_corr2d("{\"input\":[[1,2,3]],\"kernel\":[[1,2]],\"padding\":\"same\"}", 2, (int[]){1, 3},
                 (double[]){5, 8, 3});
}
END_TEST

START_TEST(test_padding_int_and_pair) {
    /* padding 1 around [[1]] with a 2x2 ones kernel: every window holds the single 1. */
    check_corr2d("{\"input\":[[1]],\"kernel\":[[1,1],[1,1]],\"padding\":1}", 2, (int[]){2, 2},
                 (double[]){1, 1, 1, 1});
    /* [0,1] pads only the columns: [0,1,2,0] * [1,1] = 1, 3, 2. */
    check_corr2d("{\"input\":[[1,2]],\"kernel\":[[1,1]],\"padding\":[0,1]}", 2, (int[]){1, 3},
                 (double[]){1, 3, 2});
}
END_TEST

START_TEST(test_stride) {
    /* 0..15 as 4x4, the 2x2 diagonal kernel at (0,0),(0,2),(2,0),(2,2): 0+5, 2+7, 8+13, 10+15. */
    check_corr2d("{\"input\":[[0,1,2,3],[4,5,6,7],[8,9,10,11],[12,13,14,15]],"
                 "\"kernel\":[[1,0],[0,1]],\"stride\":2}",
                 2, (int[]){2, 2}, (double[]){5, 9, 21, 25});
}
END_TEST

START_TEST(test_dilation) {
    /* A 2x2 ones kernel dilated by 2 reads X[i,j]+X[i,j+2]+X[i+2,j]+X[i+2,j+2]: 0+2+8+10, ... */
    check_corr2d("{\"input\":[[0,1,2,3],[4,5,6,7],[8,9,10,11],[12,13,14,15]],"
                 "\"kernel\":[[1,1],[1,1]],\"dilation\":2}",
                 2, (int[]){2, 2}, (double[]){20, 24, 36, 40});
}
END_TEST

START_TEST(test_channels_sum) {
    /* A (C,kh,kw) kernel sums over channels: 1*ch0 + 10*ch1. */
    check_corr2d("{\"input\":[[[1,2],[3,4]],[[5,6],[7,8]]],\"kernel\":[[[1]],[[10]]]}", 2,
                 (int[]){2, 2}, (double[]){51, 62, 73, 84});
}
END_TEST

START_TEST(test_channels_out) {
    /* (Cout=2,C=2,2,2) on (2,3,3) holding 0..17, bias [1,-1]: output 0 is the 2x2 box over
     * channel 0 (0+1+3+4 = 8, ...) + 1; output 1 is column 0 minus column 1 of channel 1
     * (always -2) - 1. */
    check_corr2d("{\"input\":[[[0,1,2],[3,4,5],[6,7,8]],[[9,10,11],[12,13,14],[15,16,17]]],"
                 "\"kernel\":[[[[1,1],[1,1]],[[0,0],[0,0]]],[[[0,0],[0,0]],[[1,-1],[1,-1]]]],"
                 "\"bias\":[1,-1]}",
                 3, (int[]){2, 2, 2}, (double[]){9, 13, 21, 25, -3, -3, -3, -3});
}
END_TEST

START_TEST(test_batch) {
    /* (N=2,C=1,2,2) with a (1,1,1,1) kernel of 2: each image doubled, the batch kept. */
    check_corr2d("{\"input\":[[[[1,2],[3,4]]],[[[5,6],[7,8]]]],\"kernel\":[[[[2]]]]}", 4,
                 (int[]){2, 1, 2, 2}, (double[]){2, 4, 6, 8, 10, 12, 14, 16});
}
END_TEST

/* The ramp x[i][j] = ((7i + 3j) % 11) - 5 as a nested n x n array, and its corr2d with
 * k = [[1,2,0],[-1,0,3],[2,-2,1]] at (i, j): integers, so exact in float32. */
static char *ramp_body(int n) {
    size_t cap = (size_t)n * n * 4 + 128, len = 0;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    len += (size_t)snprintf(b + len, cap - len, "{\"input\":[");
    for (int i = 0; i < n; i++) {
        b[len++] = i ? ',' : '[';
        if (i)
            b[len++] = '[';
        for (int j = 0; j < n; j++)
            len += (size_t)snprintf(b + len, cap - len, "%s%d", j ? "," : "",
                                    (7 * i + 3 * j) % 11 - 5);
        b[len++] = ']';
    }
    snprintf(b + len, cap - len, "],\"kernel\":[[1,2,0],[-1,0,3],[2,-2,1]]}");
    return b;
}

static double ramp_out(int i, int j) {
    static const int k[3][3] = {{1, 2, 0}, {-1, 0, 3}, {2, -2, 1}};
    double s = 0;
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            s += k[a][c] * ((7 * (i + a) + 3 * (j + c)) % 11 - 5);
    return s;
}

START_TEST(test_inline_and_pool_agree) {
    /* A tiny /corr2d runs on the connection's thread, a larger one on the worker pool
     * (routes.c, CV_INLINE_MACS_MAX = 65536 multiply-adds): both give the exact answer. */
    const int sizes[] = {40, 130}; /* 38*38*9 = 12996 and 128*128*9 = 147456 multiply-adds */
    for (int q = 0; q < 2; q++) {
        const int n = sizes[q], m = n - 2;
        char *body = ramp_body(n);
        double *want = malloc((size_t)m * m * sizeof(double));
        ck_assert_ptr_nonnull(want);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++)
                want[i * m + j] = ramp_out(i, j);
        json_t *j = cv_post_ok("/corr2d", body);
        cv_check_nested(json_object_get(j, "output"), 2, (int[]){m, m}, want, 0);
        json_decref(j);
        free(want);
        free(body);
    }
}
END_TEST

START_TEST(test_inline_box5_per_channel) {
    /* A 5x5 box on 4 channels is a block-diagonal (4, 4, 5, 5) kernel: the row Winograd path
     * (corr2d_rwino.h), here small enough to run on the connection's thread (25,600
     * multiply-adds), whose stack holds the kernel's ~100 KiB of scratch. */
    const int c = 4, n = 12, m = n - 4;
    size_t cap = 4096, len = 0;
    char *body = malloc(cap);
    ck_assert_ptr_nonnull(body);
    len += (size_t)snprintf(body + len, cap - len, "{\"input\":[");
    for (int ch = 0; ch < c; ch++) {
        len += (size_t)snprintf(body + len, cap - len, "%s[", ch ? "," : "");
        for (int i = 0; i < n; i++) {
            len += (size_t)snprintf(body + len, cap - len, "%s[", i ? "," : "");
            for (int j = 0; j < n; j++)
                len += (size_t)snprintf(body + len, cap - len, "%s%d", j ? "," : "",
                                        (7 * i + 3 * j + 5 * ch) % 11 - 5);
            len += (size_t)snprintf(body + len, cap - len, "]");
        }
        len += (size_t)snprintf(body + len, cap - len, "]");
    }
    snprintf(body + len, cap - len, "],\"kernel\":{\"name\":\"box\",\"size\":5}}");
    double want[4 * 8 * 8];
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                double s = 0;
                for (int a = 0; a < 5; a++)
                    for (int b = 0; b < 5; b++)
                        s += (7 * (i + a) + 3 * (j + b) + 5 * ch) % 11 - 5;
                want[(ch * m + i) * m + j] = s / 25.0;
            }
    json_t *j = cv_post_ok("/corr2d", body);
    cv_check_nested(json_object_get(j, "output"), 3, (int[]){c, m, m}, want, 1e-5);
    json_decref(j);
    free(body);
}
END_TEST

TCase *cv_tcase_corr2d(void) {
    TCase *tc = cv_tcase("corr2d", true);
    tcase_add_test(tc, test_seed_exact);
    tcase_add_test(tc, test_inline_and_pool_agree);
    tcase_add_test(tc, test_inline_box5_per_channel);
    tcase_add_test(tc, test_bias);
    tcase_add_test(tc, test_edge_explicit);
    tcase_add_test(tc, test_edge_named);
    tcase_add_test(tc, test_flat_round_trip);
    tcase_add_test(tc, test_flat_output_format_nested);
    tcase_add_test(tc, test_b64_round_trip);
    tcase_add_test(tc, test_padding_same_odd);
    tcase_add_test(tc, test_padding_same_even);
    tcase_add_test(tc, test_padding_int_and_pair);
    tcase_add_test(tc, test_stride);
    tcase_add_test(tc, test_dilation);
    tcase_add_test(tc, test_channels_sum);
    tcase_add_test(tc, test_channels_out);
    tcase_add_test(tc, test_batch);
    return tc;
}
