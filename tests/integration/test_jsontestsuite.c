/* Every JSONTestSuite parsing case (tests/data/jsontestsuite/test_parsing, vendored with its MIT
 * licence) as the body
 * of POST /corr2d and POST /train. None of them is a valid request, so the daemon must answer
 * each with a JSON error and keep serving:
 *   n_ (a parser must reject)  -> 400
 *   y_ (a parser must accept)  -> 4xx (400 when it is no object, else 422)
 *   i_ (either)                -> 2xx or 4xx
 * and after every file /healthz still answers 200 and the process is alive.
 *
 * A plain program rather than a check suite: it reports every offending file, not the first.
 * The data is part of the repository: when it is missing the test fails, it never skips. */
#include <curl/curl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "harness.h"

#ifndef CV_TESTDATA_DIR
#error "CV_TESTDATA_DIR must be tests/data (set by CMake)"
#endif

#define CASES_DIR   CV_TESTDATA_DIR "/jsontestsuite/test_parsing"
#define MAX_RESTART 5 /* crashes to survive before giving up: each is reported */

static int failures;
static int replies[6]; /* by status class, 1xx..5xx, so the summary shows what was exercised */

static void fail(const char *file, const char *path, const struct cv_reply *r, const char *why) {
    failures++;
    fprintf(stderr,
            "FAIL %s -> POST %s: %s (status %ld, curl %d, Content-Type \"%s\", body %.200s)\n",
            file, path, why, r->status, r->curl_code, r->content_type, r->body ? r->body : "");
}

static bool media_type_is(const char *content_type, const char *type) {
    size_t n = strlen(type);
    return strncasecmp(content_type, type, n) == 0 &&
           (content_type[n] == '\0' || content_type[n] == ';');
}

/* Every non-blank line of an NDJSON body is JSON. */
static bool ndjson_ok(const char *body) {
    for (const char *line = body; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        json_t *j = n ? json_loadb(line, n, 0, NULL) : NULL;
        if (n && !j)
            return false;
        json_decref(j);
        line += n + (end ? 1 : 0);
    }
    return true;
}

/* Checks one reply against the rules in the header comment. */
static void check_reply(const char *file, const char *path, const struct cv_reply *r) {
    if (r->curl_code != CURLE_OK) {
        fail(file, path, r, "no complete reply");
        return;
    }
    replies[r->status / 100 % 6]++;
    bool ok2xx = r->status >= 200 && r->status < 300, ok4xx = r->status >= 400 && r->status < 500;
    if (!ok2xx && !ok4xx) {
        fail(file, path, r, "status is neither 2xx nor 4xx");
        return;
    }
    if (ok4xx) {
        json_t *j = cv_reply_json(r);
        if (!media_type_is(r->content_type, "application/problem+json") || !json_is_object(j) ||
            json_integer_value(json_object_get(j, "status")) != r->status)
            fail(file, path, r, "an error reply that is not problem+json");
        json_decref(j);
    } else if (media_type_is(r->content_type, "application/x-ndjson")) {
        if (!ndjson_ok(r->body))
            fail(file, path, r, "a 2xx stream with a line that is not JSON");
    } else {
        json_t *j = cv_reply_json(r);
        if (!j)
            fail(file, path, r, "a 2xx reply that is not JSON");
        json_decref(j);
    }
    if (file[0] == 'n' && r->status != 400)
        fail(file, path, r, "invalid JSON must get 400");
    if (file[0] == 'y' && !ok4xx)
        fail(file, path, r, "no JSONTestSuite document is a valid request: expected 4xx");
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (cap - *len < 4096) {
            char *grown = realloc(buf, cap + 65536);
            if (!grown)
                break;
            buf = grown;
            cap += 65536;
        }
        size_t got = fread(buf + *len, 1, cap - *len, f);
        if (got == 0)
            break;
        *len += got;
    }
    fclose(f);
    return buf;
}

static int is_case(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".json") == 0 && strchr("nyi", e->d_name[0]) &&
           e->d_name[1] == '_';
}

int main(void) {
    struct dirent **names = NULL;
    int n = scandir(CASES_DIR, &names, is_case, alphasort);
    if (n <= 0) {
        printf("FAILED: no JSONTestSuite cases in %s\n", CASES_DIR);
        return EXIT_FAILURE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return EXIT_FAILURE;
    struct cv_daemon d;
    if (cv_daemon_start(&d, NULL, NULL) != 0)
        return EXIT_FAILURE;
    static const char *const json_ct[] = {"Content-Type: application/json", NULL};
    static const char *const paths[] = {"/corr2d", "/train"};
    int restarts = 0;
    for (int i = 0; i < n; i++) {
        const char *file = names[i]->d_name;
        char full[1024];
        snprintf(full, sizeof full, "%s/%s", CASES_DIR, file);
        size_t len = 0;
        char *body = read_file(full, &len);
        if (!body) {
            fprintf(stderr, "FAIL %s: cannot read it\n", file);
            failures++;
            continue;
        }
        for (int p = 0; p < 2; p++) {
            struct cv_reply r;
            cv_request(&d, "POST", paths[p], json_ct, body, len, 10, &r);
            check_reply(file, paths[p], &r);
            cv_reply_free(&r);
        }
        free(body);

        struct cv_reply h;
        cv_request(&d, "GET", "/healthz", NULL, NULL, 0, 5, &h);
        bool alive = cv_daemon_alive(&d);
        if (!alive || h.status != 200) {
            fail(file, "(then GET /healthz)", &h,
                 alive ? "the daemon stopped serving" : "the daemon died");
            cv_daemon_stop(&d);
            if (++restarts > MAX_RESTART || cv_daemon_start(&d, NULL, NULL) != 0) {
                cv_reply_free(&h);
                fprintf(stderr, "giving up after file %d of %d\n", i + 1, n);
                return EXIT_FAILURE;
            }
        }
        cv_reply_free(&h);
    }
    int st = cv_daemon_stop(&d);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "FAIL: convd did not exit 0 on SIGTERM (wait status %d)\n", st);
        failures++;
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    curl_global_cleanup();
    printf("%d JSONTestSuite files x 2 routes: %d 2xx, %d 4xx, %d other replies; %d failures\n", n,
           replies[2], replies[4], replies[0] + replies[1] + replies[3] + replies[5], failures);
    return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
