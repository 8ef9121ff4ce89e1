/* Unit tests of server/log.c: whatever a client puts in a path, method or request id, every
 * access-log line stays within its buffer, ends with a newline, is one line, and (JSON format)
 * parses as one JSON object that names the path. Regression for issue 12 rows 1 and 7: a path of
 * 254 escaped control bytes overflowed the 1024-byte line (ASan stack-buffer-overflow; with
 * _FORTIFY_SOURCE the old code aborts), and --log-format text wrote a %0a raw. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

/* Redirects stderr to a fresh temp file; returns the saved stderr. */
static int capture_begin(char *path, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/convd-test-log-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    close(fd);
    return saved;
}

/* Restores stderr and returns what was written (malloc'd), removing the file. */
static char *capture_end(int saved, const char *path) {
    dup2(saved, STDERR_FILENO);
    close(saved);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 8 << 20);
    size_t n = fread(buf, 1, (8 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    return buf;
}

/* A string of n copies of byte c (malloc'd). */
static char *repeat(char c, size_t n) {
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void log_one(const char *method, const char *path, const char *rid) {
    struct cv_log_request r = {.method = method,
                               .path = path,
                               .request_id = rid,
                               .job_id = "j-0123",
                               .status = 404,
                               .bytes_in = 9223372036854775807ULL, /* jansson's largest */
                               .bytes_out = 9223372036854775807ULL,
                               .duration_ms = 1e300};
    cv_log_request(&r);
}

START_TEST(test_json_lines_always_valid) {
    cv_log_init(CV_LOG_FORMAT_JSON);
    static const char fill[] = {'\x01', '"', '\\', 'a', '\x7f', '\n'};
    char path[256];
    int saved = capture_begin(path, sizeof path);
    int n_lines = 0;
    for (size_t f = 0; f < sizeof fill; f++) {
        for (size_t len = 0; len <= 4000; len += (len < 300 ? 1 : 97)) {
            char *s = repeat(fill[f], len);
            log_one(f == 0 ? s : "GET", s, f == 1 ? s : "r-1");
            free(s);
            n_lines++;
        }
    }
    cv_log_msg("warn", "a \x01 message\n", "\"source\":\"test\"");
    n_lines++;
    char *out = capture_end(saved, path);
    int seen = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        ck_assert_msg(strlen(line) < 2048, "a log line of %zu bytes", strlen(line));
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        ck_assert_msg(j != NULL && json_is_object(j), "line %d is not a JSON object (%s): %.200s",
                      seen, err.text, line);
        ck_assert(json_is_string(json_object_get(j, "msg")));
        if (seen + 1 < n_lines) {
            ck_assert_msg(json_is_string(json_object_get(j, "path")), "no path: %.200s", line);
            ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), 404);
            ck_assert_str_eq(json_string_value(json_object_get(j, "job")), "j-0123");
        }
        json_decref(j);
        seen++;
    }
    ck_assert_int_eq(seen, n_lines);
    free(out);
}
END_TEST

START_TEST(test_text_lines_escape_controls) {
    cv_log_init(CV_LOG_FORMAT_TEXT);
    char path[256];
    int saved = capture_begin(path, sizeof path);
    log_one("GET", "/x\n2026-01-01T00:00:00.000Z GET /forged 200 0B 0.1ms\r\x1b[31m", "r-1");
    char *big = repeat('\n', 5000);
    log_one(big, big, "r-2");
    free(big);
    cv_log_msg("info", "two\nlines", NULL);
    char *out = capture_end(saved, path);
    int lines = 0;
    for (const char *p = out; *p; p++) {
        lines += *p == '\n';
        ck_assert_msg(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f),
                      "a raw control byte 0x%02x in a text log line", (unsigned char)*p);
    }
    ck_assert_msg(lines == 3, "3 log calls wrote %d lines:\n%s", lines, out);
    ck_assert_ptr_nonnull(strstr(out, "/x\\x0a2026-01-01T00:00:00.000Z\\x20GET"));
    free(out);
}
END_TEST

START_TEST(test_json_escape_helper_bounded) {
    char buf[16];
    memset(buf, 'z', sizeof buf);
    size_t n = cv_log_json_escape(buf, sizeof buf, 0, "\x01\x02\x03\"\"");
    ck_assert_uint_lt(n, sizeof buf);
    ck_assert_uint_eq(n, 12); /* two \u00XX escapes fit, the third would not */
    ck_assert_uint_eq(strlen(buf), n);
    n = cv_log_json_escape(buf, sizeof buf, 40, "abc"); /* len past cap is clamped */
    ck_assert_uint_lt(n, sizeof buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_json_lines_always_valid);
    tcase_add_test(tc, test_text_lines_escape_controls);
    tcase_add_test(tc, test_json_escape_helper_bounded);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
