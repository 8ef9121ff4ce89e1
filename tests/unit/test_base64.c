/* Unit tests of api/src/base64.c: RFC 4648 vectors, round trips and strict rejection. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "convd/base64.h"
#include "convd/status.h"

static const struct {
    const char *plain, *coded;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

START_TEST(test_rfc4648_vectors) {
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        const char *plain = rfc4648[i].plain, *coded = rfc4648[i].coded;
        size_t n = strlen(plain);
        char enc[16];
        ck_assert_uint_eq(cv_base64_encoded_len(n), strlen(coded));
        cv_base64_encode((const uint8_t *)plain, n, enc);
        ck_assert_str_eq(enc, coded);

        uint8_t dec[16];
        size_t got = 99;
        ck_assert_int_eq(cv_base64_decode(coded, strlen(coded), dec, sizeof dec, &got, NULL),
                         CV_OK);
        ck_assert_uint_eq(got, n);
        ck_assert(memcmp(dec, plain, n) == 0);
        ck_assert_uint_ge(cv_base64_decoded_max(strlen(coded)), n);
    }
}
END_TEST

START_TEST(test_round_trip_random) {
    srand(12345);
    uint8_t src[300], dec[300];
    char enc[401];
    for (int rep = 0; rep < 20; rep++) {
        for (size_t n = 0; n <= 300; n++) {
            for (size_t i = 0; i < n; i++)
                src[i] = (uint8_t)rand();
            cv_base64_encode(src, n, enc);
            size_t len = strlen(enc);
            ck_assert_uint_eq(len, cv_base64_encoded_len(n));
            ck_assert_uint_le(n, cv_base64_decoded_max(len));
            size_t got = 0;
            ck_assert_int_eq(cv_base64_decode(enc, len, dec, n, &got, NULL), CV_OK);
            ck_assert_uint_eq(got, n);
            ck_assert(n == 0 || memcmp(src, dec, n) == 0);
        }
    }
}
END_TEST

static const struct {
    const char *coded;
    size_t bad_at;
} rejects[] = {
    {"Zg", 0},       /* length not a multiple of 4 */
    {"Zg=", 0},      /* ditto */
    {"Zm9vY", 4},    /* ditto: the incomplete quad starts at 4 */
    {"Zm9v\n", 4},   /* whitespace makes the length wrong */
    {"Zm9 ", 3},     /* a space is not base64 */
    {"Zm-v", 2},     /* base64url's '-' is not standard base64 */
    {"Zm_v", 2},     /* nor is '_' */
    {"=Zm9", 0},     /* padding first */
    {"Z===", 1},     /* three '=' */
    {"Zg==Zm9v", 2}, /* padding before the end */
    {"Zh==", 1},     /* non-canonical: spare bits set */
    {"Zm9=", 2},     /* ditto */
    {"Zm9v\x80xyz", 4},
};

START_TEST(test_rejects) {
    for (size_t i = 0; i < sizeof rejects / sizeof rejects[0]; i++) {
        uint8_t dec[16];
        size_t got = 99, bad_at = 99;
        const char *s = rejects[i].coded;
        ck_assert_msg(cv_base64_decode(s, strlen(s), dec, sizeof dec, &got, &bad_at) == CV_EINVAL,
                      "accepted \"%s\"", s);
        ck_assert_msg(bad_at == rejects[i].bad_at, "\"%s\": bad_at %zu, expected %zu", s, bad_at,
                      rejects[i].bad_at);
        ck_assert_uint_eq(got, 0);
    }
    /* bad_at may be NULL. */
    uint8_t dec[4];
    size_t got;
    ck_assert_int_eq(cv_base64_decode("Z===", 4, dec, sizeof dec, &got, NULL), CV_EINVAL);
}
END_TEST

START_TEST(test_capacity) {
    uint8_t dec[6];
    size_t got = 99;
    ck_assert_int_eq(cv_base64_decode("Zm9vYmFy", 8, dec, 5, &got, NULL), CV_ETOOBIG);
    ck_assert_int_eq(cv_base64_decode("Zm9vYmE=", 8, dec, 5, &got, NULL), CV_OK);
    ck_assert_uint_eq(got, 5);
    ck_assert(memcmp(dec, "fooba", 5) == 0);
}
END_TEST

static Suite *base64_suite(void) {
    Suite *s = suite_create("base64");
    TCase *tc = tcase_create("base64");
    tcase_add_test(tc, test_rfc4648_vectors);
    tcase_add_test(tc, test_round_trip_random);
    tcase_add_test(tc, test_rejects);
    tcase_add_test(tc, test_capacity);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(base64_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
