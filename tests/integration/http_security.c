/* Access control and transport: a bearer token from --token-file or CONVD_TOKEN guards every
 * route but the probes and /metrics (401 with WWW-Authenticate: Bearer otherwise), no token
 * means no auth, a non-loopback bind without a token warns; --tls-cert/--tls-key (or
 * CONVD_TLS_CERT/CONVD_TLS_KEY) serve HTTPS with a self-signed certificate made here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http_suite.h"

#define TOKEN        "itest-Token_0123456789abcdef"
#define SMALL_CORR2D "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":[[0,1],[2,3]]}"

static const char *const good[] = {"Authorization: Bearer " TOKEN, NULL};
static const char *const good_json[] = {"Authorization: Bearer " TOKEN,
                                        "Content-Type: application/json", NULL};

/* A file in TMPDIR holding text; returns its malloc'd path. */
static char *temp_file(const char *text) {
    const char *tmp = getenv("TMPDIR");
    char *path = cv_strdupf("%s/convd-itest-token-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp failed");
    ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* method path (with headers; a JSON body for POST) must be refused with 401. */
static void expect_401(const char *method, const char *path, const char *const *headers) {
    static const char *const json_only[] = {"Content-Type: application/json", NULL};
    bool post = strcmp(method, "POST") == 0;
    const char *body = post ? SMALL_CORR2D : NULL;
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, method, path,
                                headers ? headers
                                : post  ? json_only
                                        : NULL,
                                body, body ? strlen(body) : 0, 0, &r),
                     0);
    ck_assert_msg(r.status == 401, "%s %s (%s) -> %ld, expected 401: %s", method, path,
                  headers ? headers[0] : "no token", r.status, r.body);
    cv_check_media_type(r.content_type, "application/problem+json");
    ck_assert_msg(strncasecmp(r.www_authenticate, "Bearer", 6) == 0,
                  "401 without WWW-Authenticate: Bearer (got \"%s\")", r.www_authenticate);
    json_t *j = cv_reply_json(&r);
    ck_assert_msg(json_integer_value(json_object_get(j, "status")) == 401 && *cv_str(j, "code") &&
                      *cv_str(j, "title"),
                  "401 body is not a problem with status, code and title: %s", r.body);
    ck_assert_msg(strstr(r.body, TOKEN) == NULL, "the 401 body gives the token away");
    json_decref(j);
    cv_reply_free(&r);
}

static long status_of(const char *method, const char *path, const char *const *headers,
                      const char *body) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, method, path, headers, body, body ? strlen(body) : 0, 0, &r),
                     0);
    long st = r.status;
    cv_reply_free(&r);
    return st;
}

/* The checks shared by both ways of setting the token. */
static void check_token_guard(void) {
    /* The probes and /metrics stay open. */
    static const char *const open_routes[] = {"/healthz", "/livez", "/readyz", "/metrics"};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(status_of("GET", open_routes[i], NULL, NULL) == 200,
                      "GET %s needs no token but did not answer 200", open_routes[i]);

    /* Everything else needs it. */
    static const char *const zeros = "/jobs/j-00000000000000000000000000000000";
    expect_401("GET", "/kernels", NULL);
    expect_401("POST", "/corr2d", NULL);
    expect_401("POST", "/train", NULL);
    expect_401("POST", "/jobs", NULL);
    expect_401("GET", "/jobs", NULL);
    expect_401("GET", zeros, NULL);
    expect_401("DELETE", zeros, NULL);
    expect_401("GET", "/jobs/j-00000000000000000000000000000000/events", NULL);
    expect_401("GET", "/openapi.json", NULL);

    /* Wrong tokens, of every kind. */
    static const char *const wrong[][2] = {
        {"Authorization: Bearer wrong", NULL},
        {"Authorization: Bearer " TOKEN "x", NULL},
        {"Authorization: Bearer itest-Token_0123456789abcdeX", NULL}, /* same length */
        {"Authorization: Bearer itest", NULL},                        /* a prefix */
        {"Authorization: Bearer ", NULL},
        {"Authorization: Basic aXRlc3Q6dG9rZW4=", NULL},
        {"Authorization: " TOKEN, NULL},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        expect_401("GET", "/kernels", wrong[i]);

    /* The right one works, on each kind of route. */
    ck_assert_int_eq(status_of("GET", "/kernels", good, NULL), 200);
    ck_assert_int_eq(status_of("GET", "/openapi.json", good, NULL), 200);
    ck_assert_int_eq(status_of("POST", "/corr2d", good_json, SMALL_CORR2D), 200);
    ck_assert_int_eq(status_of("GET", "/jobs", good, NULL), 200);
    char *job = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", cv_seed_x);
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "POST", "/jobs", good_json, job, strlen(job), 0, &r), 0);
    ck_assert_msg(r.status == 202, "POST /jobs with the token -> %ld %s", r.status, r.body);
    json_t *j = cv_reply_json(&r);
    char *path = cv_strdupf("/jobs/%s", cv_str(j, "id"));
    json_decref(j);
    cv_reply_free(&r);
    ck_assert_int_eq(status_of("GET", path, good, NULL), 200);
    char *train = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"steps\":3,"
                             "\"seed\":1}",
                             cv_seed_x, cv_seed_y);
    struct cv_stream s = {0};
    ck_assert_int_eq(cv_stream_post(&cv_d, "/train", good, train, 0, &s), 0);
    ck_assert_msg(s.status == 200, "streamed /train with the token -> %ld", s.status);
    json_t *ev = cv_ndjson_events(&s);
    cv_last_event(ev, "done");
    json_decref(ev);
    cv_stream_free(&s);
    free(train);
    free(path);
    free(job);
}

START_TEST(test_token_file) {
    /* Only the first line is the token. */
    char *file = temp_file(TOKEN "\nnot part of the token\n");
    cv_fixture_start((const char *const[]){"--token-file", file, NULL}, NULL);
    check_token_guard();
    char *log = cv_daemon_log(&cv_d);
    ck_assert_msg(log && strstr(log, TOKEN) == NULL, "the daemon logged its token");
    free(log);
    unlink(file);
    free(file);
}
END_TEST

START_TEST(test_token_env) {
    cv_fixture_start(NULL, (const char *const[]){"CONVD_TOKEN=" TOKEN, NULL});
    check_token_guard();
}
END_TEST

START_TEST(test_no_token_no_auth) {
    cv_fixture_start(NULL, NULL);
    ck_assert_int_eq(status_of("GET", "/kernels", NULL, NULL), 200);
    ck_assert_int_eq(status_of("GET", "/jobs", NULL, NULL), 200);
    static const char *const json_ct[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(status_of("POST", "/corr2d", json_ct, SMALL_CORR2D), 200);
    /* A token sent to a daemon without one is simply ignored. */
    ck_assert_int_eq(status_of("GET", "/kernels", good, NULL), 200);
}
END_TEST

/* True when the log has a warning line that mentions the token. */
static bool token_warning(void) {
    char *log = cv_daemon_log(&cv_d);
    ck_assert(log != NULL);
    bool found = false;
    for (const char *line = log; *line && !found;) {
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        json_t *j = json_loadb(line, (size_t)(end - line), 0, NULL);
        const char *level = cv_str(j, "level");
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)(end - line), line);
        found = (strcmp(level, "warn") == 0 || strcmp(level, "warning") == 0) &&
                (strstr(buf, "token") || strstr(buf, "Token") || strstr(buf, "TOKEN"));
        json_decref(j);
        line = end + 1;
    }
    free(log);
    return found;
}

START_TEST(test_public_bind_warns) {
    /* Bind every address (the later --listen wins over the harness's loopback one) but send
     * nothing there: the warning is all this test looks at. */
    cv_fixture_start((const char *const[]){"--listen", "0.0.0.0:0", NULL}, NULL);
    ck_assert_msg(token_warning(), "binding 0.0.0.0 without a token logged no warning about it");
    cv_fixture_stop();
    char *file = temp_file(TOKEN "\n");
    cv_fixture_start((const char *const[]){"--listen", "0.0.0.0:0", "--token-file", file, NULL},
                     NULL);
    ck_assert_msg(!token_warning(), "a token is set, yet the daemon warns about a missing one");
    cv_fixture_stop();
    cv_fixture_start(NULL, NULL);
    ck_assert_msg(!token_warning(), "a loopback bind warns about a missing token");
    unlink(file);
    free(file);
}
END_TEST

/* ---- TLS ---------------------------------------------------------------------------------- */

struct certs {
    char dir[256];
    char cert[300];
    char key[300];
};

/* A self-signed certificate for 127.0.0.1, made with openssl in a fresh directory. */
static void make_certs(struct certs *c) {
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/convd-itest-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_msg(mkdtemp(c->dir) != NULL, "mkdtemp failed");
    snprintf(c->cert, sizeof c->cert, "%s/c.pem", c->dir);
    snprintf(c->key, sizeof c->key, "%s/k.pem", c->dir);
    char *cmd = cv_strdupf("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' "
                           "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                           ">/dev/null 2>&1",
                           c->key, c->cert);
    int rc = system(cmd);
    free(cmd);
    ck_assert_msg(rc == 0,
                  "openssl req failed (status %d): is the openssl package installed "
                  "(tools/test-packages.txt)?",
                  rc);
    ck_assert(access(c->cert, R_OK) == 0 && access(c->key, R_OK) == 0);
}

static void remove_certs(struct certs *c) {
    unlink(c->cert);
    unlink(c->key);
    rmdir(c->dir);
}

/* The HTTPS checks: verified against the certificate, refused without it, and plain http to
 * the TLS port gets no HTTP reply. */
static void check_tls(const struct certs *c) {
    struct cv_reply r;
    struct cv_opts verified = {.https = true, .ca_file = c->cert};
    ck_assert_msg(cv_request_opt(&cv_d, &verified, "GET", "/healthz", NULL, NULL, 0, 10, &r) == 0,
                  "https GET /healthz with the CA failed: curl error %d", r.curl_code);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);

    static const char *const json_ct[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(cv_request_opt(&cv_d, &verified, "POST", "/corr2d", json_ct, SMALL_CORR2D,
                                    strlen(SMALL_CORR2D), 10, &r),
                     0);
    ck_assert_msg(r.status == 200, "https POST /corr2d -> %ld %s", r.status, r.body);
    json_t *j = cv_reply_json(&r);
    cv_check_nested(json_object_get(j, "output"), 2, (int[]){2, 2}, (double[]){19, 25, 37, 43},
                    1e-6);
    json_decref(j);
    cv_reply_free(&r);

    struct cv_opts insecure = {.https = true, .insecure = true};
    ck_assert_int_eq(cv_request_opt(&cv_d, &insecure, "GET", "/readyz", NULL, NULL, 0, 10, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);

    /* Without the certificate as CA, the self-signed peer is not trusted. */
    struct cv_opts untrusted = {.https = true, .ca_file = "/dev/null"};
    cv_request_opt(&cv_d, &untrusted, "GET", "/healthz", NULL, NULL, 0, 10, &r);
    ck_assert_msg(r.curl_code != 0, "an unverified self-signed certificate was accepted");
    cv_reply_free(&r);

    /* Plain http to the TLS port: no HTTP reply. */
    cv_request(&cv_d, "GET", "/healthz", NULL, NULL, 0, 5, &r);
    ck_assert_msg(r.status != 200, "plain http to the TLS port answered 200");
    cv_reply_free(&r);

    /* The daemon survives both and still serves. */
    ck_assert_int_eq(cv_request_opt(&cv_d, &verified, "GET", "/livez", NULL, NULL, 0, 10, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
}

START_TEST(test_tls_flags) {
    struct certs c;
    make_certs(&c);
    cv_fixture_start((const char *const[]){"--tls-cert", c.cert, "--tls-key", c.key, NULL}, NULL);
    check_tls(&c);
    remove_certs(&c);
}
END_TEST

START_TEST(test_tls_env) {
    struct certs c;
    make_certs(&c);
    char *cert = cv_strdupf("CONVD_TLS_CERT=%s", c.cert);
    char *key = cv_strdupf("CONVD_TLS_KEY=%s", c.key);
    cv_fixture_start(NULL, (const char *const[]){cert, key, NULL});
    check_tls(&c);
    remove_certs(&c);
    free(cert);
    free(key);
}
END_TEST

START_TEST(test_tls_and_token) {
    struct certs c;
    make_certs(&c);
    char *file = temp_file(TOKEN "\n");
    cv_fixture_start(
        (const char *const[]){"--tls-cert", c.cert, "--tls-key", c.key, "--token-file", file, NULL},
        NULL);
    struct cv_opts verified = {.https = true, .ca_file = c.cert};
    struct cv_reply r;
    ck_assert_int_eq(cv_request_opt(&cv_d, &verified, "GET", "/kernels", NULL, NULL, 0, 10, &r), 0);
    ck_assert_int_eq(r.status, 401);
    cv_reply_free(&r);
    ck_assert_int_eq(cv_request_opt(&cv_d, &verified, "GET", "/kernels", good, NULL, 0, 10, &r), 0);
    ck_assert_int_eq(r.status, 200);
    cv_reply_free(&r);
    unlink(file);
    free(file);
    remove_certs(&c);
}
END_TEST

TCase *cv_tcase_security(void) {
    TCase *tc = cv_tcase("security", false); /* each test starts the daemon it needs */
    tcase_add_test(tc, test_token_file);
    tcase_add_test(tc, test_token_env);
    tcase_add_test(tc, test_no_token_no_auth);
    tcase_add_test(tc, test_public_bind_warns);
    tcase_add_test(tc, test_tls_flags);
    tcase_add_test(tc, test_tls_env);
    tcase_add_test(tc, test_tls_and_token);
    return tc;
}
