/* libFuzzer target: the request-line parsers of server/reqparse.c, as libmicrohttpd hands their
 * input over (decoded strings): the request target's origin form, the route matcher, the events
 * cursor (?after= and Last-Event-ID), integer query values, the Accept header, and GET /jobs's
 * query arguments.
 *
 * Input: byte 0 holds flags, the rest is split at NUL bytes into method, target, ?after=,
 * Last-Event-ID, then query arguments "key=value" ("key" alone: no value). With flag 1 the
 * first three arguments are instead route templates (GET, POST, DELETE) added to the table.
 * Each result is checked against what the parser promises; a broken promise aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reqparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_request: broken promise: %s (line %d)\n", #cond, __LINE__);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_PARTS 24

static int h_stub(struct MHD_Connection *conn, struct cv_req *req) {
    (void)conn;
    (void)req;
    return 0;
}

/* server/routes.c's templates (the shapes matter, not the handlers). */
static const struct cv_route fixed[] = {
    {"POST", "/corr2d", h_stub, 0},
    {"POST", "/train", h_stub, 0},
    {"POST", "/jobs", h_stub, 0},
    {"GET", "/jobs", h_stub, 0},
    {"GET", "/jobs/{id}", h_stub, 0},
    {"DELETE", "/jobs/{id}", h_stub, 0},
    {"GET", "/jobs/{id}/events", h_stub, 0},
    {"GET", "/kernels", h_stub, 0},
    {"POST", "/kernels", h_stub, 0},
    {"GET", "/kernels/{id}", h_stub, 0},
    {"DELETE", "/kernels/{id}", h_stub, 0},
    {"GET", "/openapi.json", h_stub, 0},
    {"GET", "/", h_stub, 0},
    {"GET", "/app.js", h_stub, 0},
    {"GET", "/app.css", h_stub, 0},
    {"GET", "/healthz", h_stub, 0},
    {"GET", "/livez", h_stub, 0},
    {"GET", "/readyz", h_stub, 0},
    {"GET", "/metrics", h_stub, 0},
};
#define N_FIXED (sizeof fixed / sizeof fixed[0])

/* A reference for cv_reqparse_int, written differently: strtoll on text already known to be
 * '-'? digit{1,18}. */
static bool ref_int(const char *s, long long lo, long long hi, long long *out) {
    const char *p = s + (s[0] == '-');
    size_t n = 0;
    while (p[n] >= '0' && p[n] <= '9')
        n++;
    if (n == 0 || n > 18 || p[n] != '\0')
        return false;
    long long v = strtoll(s, NULL, 10);
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void check_int(const char *s, long long lo, long long hi) {
    long long a = 7, b = 7;
    bool ok = cv_reqparse_int(s, lo, hi, &a);
    CHECK(ok == ref_int(s, lo, hi, &b));
    CHECK(a == (ok ? b : 7));
}

static void check_route(const struct cv_route *routes, const char *method, const char *target) {
    const char *path = cv_reqparse_origin_form(target);
    CHECK(path != NULL);
    CHECK(path == target || path[0] == '/');
    struct cv_route_match m;
    const struct cv_route *r = cv_reqparse_route_find(routes, method, path, &m);
    CHECK(memchr(m.allow, '\0', sizeof m.allow) != NULL);
    CHECK(memchr(m.id, '\0', sizeof m.id) != NULL);
    if (!m.path_known)
        CHECK(r == NULL && m.allow[0] == '\0');
    if (r == NULL) {
        CHECK(m.id[0] == '\0');
        return;
    }
    CHECK(m.path_known && strcmp(r->method, method) == 0);
    CHECK(strstr(m.allow, method) != NULL ||
          strlen(m.allow) + strlen(method) + 2 >= sizeof m.allow);
    /* The id is one non-empty segment, present exactly when the template has "{id}". */
    CHECK(strchr(m.id, '/') == NULL);
    CHECK((m.id[0] != '\0') == (strstr(r->path, "{id}") != NULL));
    char id[CV_REQPARSE_ID_CAP] = "";
    CHECK(cv_reqparse_path_match(r->path, path, id, sizeof id));
    CHECK(strcmp(id, m.id) == 0);
    /* The first route of that method and path wins. */
    for (const struct cv_route *e = routes; e != r; e++)
        CHECK(strcmp(e->method, method) != 0 ||
              !cv_reqparse_path_match(e->path, path, id, sizeof id));
}

static void check_events(const char *after_q, const char *last) {
    struct cv_api_error err;
    long long after = 99;
    int st = cv_reqparse_events_after(after_q, last, &after, &err);
    if (st == 0) {
        CHECK(after >= -1 && after <= CV_REQPARSE_EVENT_ID_MAX);
        long long want;
        if (after_q != NULL)
            CHECK(ref_int(after_q, -1, CV_REQPARSE_EVENT_ID_MAX, &want) && want == after);
        else if (last != NULL && last[0] != '\0')
            CHECK(ref_int(last, -1, CV_REQPARSE_EVENT_ID_MAX, &want) && want == after);
        else
            CHECK(after == -1);
        CHECK(after + 1 > after); /* the cursor arithmetic after it cannot overflow */
    } else {
        CHECK(err.status == 400);
        CHECK(strcmp(err.code, after_q ? "invalid_query" : "invalid_header") == 0);
        CHECK(memchr(err.detail, '\0', sizeof err.detail) != NULL);
    }
}

static void check_jobs_query(char *const *args, size_t n) {
    struct cv_reqparse_jobs_query q;
    struct cv_api_error err;
    cv_reqparse_jobs_query_init(&q);
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(args[i], '=');
        if (eq != NULL)
            *eq = '\0';
        cv_reqparse_jobs_query_add(&q, args[i], eq ? eq + 1 : NULL);
        if (eq != NULL)
            *eq = '=';
    }
    CHECK(q.n_labels >= 0 && q.n_labels <= CV_REQPARSE_LABELS_MAX);
    if (cv_reqparse_jobs_query_finish(&q, &err) == 0) {
        CHECK(q.limit >= 1 && q.limit <= CV_REQPARSE_JOBS_MAX);
        for (int i = 0; i < q.n_labels; i++) {
            CHECK(cv_api_label_selector_ok(q.labels[i]));
            /* The selector against labels as the store keeps them. */
            (void)cv_api_labels_match("{\"team\":\"vision\",\"k\":\"v=w\"}", q.labels[i]);
            (void)cv_api_labels_match(NULL, q.labels[i]);
        }
    } else {
        CHECK(err.status == 400 && strcmp(err.code, "invalid_query") == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    char *part[MAX_PARTS];
    size_t n = 0;
    for (char *p = s, *end = s + size - 1; n < MAX_PARTS;) {
        part[n++] = p;
        p += strlen(p);
        if (p >= end)
            break;
        p++;
    }
    static char empty[] = "";
    while (n < 4)
        part[n++] = empty;
    const char *method = part[0], *target = part[1];

    struct cv_route table[N_FIXED + 4];
    memcpy(table, fixed, sizeof fixed);
    size_t t = N_FIXED, first_arg = 4;
    if (flags & 1) {
        static const char *const methods[] = {"GET", "POST", "DELETE"};
        for (size_t i = 0; i < 3 && first_arg < n; i++, first_arg++)
            table[t++] = (struct cv_route){methods[i], part[first_arg], h_stub, 0};
    }
    table[t] = (struct cv_route){NULL, NULL, NULL, 0};
    check_route(table, method, target);

    const char *after_q = (flags & 2) ? NULL : part[2];
    const char *last = (flags & 4) ? NULL : part[3];
    check_events(after_q, last);
    check_int(part[2], -1, CV_REQPARSE_EVENT_ID_MAX);
    check_int(part[3], (flags & 8) ? -1000000000000000000LL : 1, (long long)(flags >> 4) * 100);
    (void)cv_reqparse_wants_sse(part[3]);
    check_jobs_query(part + first_arg, n - first_arg);
    free(s);
    return 0;
}
