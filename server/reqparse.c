/* Pure parsers of request targets, routes, query values and the events cursor (reqparse.h).
 * Kept apart from http.c and routes.c so the fuzzer reaches them without a connection. */
#include "reqparse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "convd/status.h"

const char *cv_reqparse_origin_form(const char *url) {
    size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
                    : strncasecmp(url, "https://", 8) == 0 ? 8
                                                           : 0;
    if (scheme == 0)
        return url;
    const char *path = strchr(url + scheme, '/');
    return path != NULL ? path : "/";
}

bool cv_reqparse_path_match(const char *tmpl, const char *path, char *id, size_t id_cap) {
    while (*tmpl != '\0' && *path != '\0') {
        if (strncmp(tmpl, "{id}", 4) == 0) {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= id_cap)
                return false;
            memcpy(id, path, n);
            id[n] = '\0';
            tmpl += 4;
            path += n;
        } else if (*tmpl++ != *path++) {
            return false;
        }
    }
    return *tmpl == '\0' && *path == '\0';
}

/* Appends ", method" (or the first method) to allow while it fits; never writes past cap. */
static void allow_append(char *allow, size_t cap, const char *method) {
    size_t n = strlen(allow);
    size_t need = (n ? 2 : 0) + strlen(method);
    if (n + need >= cap)
        return; /* a table with that many methods on one path is cut short, never overflowed */
    snprintf(allow + n, cap - n, "%s%s", n ? ", " : "", method);
}

const struct cv_route *cv_reqparse_route_find(const struct cv_route *routes, const char *method,
                                              const char *path, struct cv_route_match *m) {
    const struct cv_route *hit = NULL;
    char id[sizeof m->id];
    m->path_known = false;
    m->allow[0] = '\0';
    m->id[0] = '\0';
    for (const struct cv_route *r = routes; r->method != NULL; r++) {
        id[0] = '\0';
        if (!cv_reqparse_path_match(r->path, path, id, sizeof id))
            continue;
        m->path_known = true;
        allow_append(m->allow, sizeof m->allow, r->method);
        if (hit == NULL && strcmp(r->method, method) == 0) {
            hit = r;
            memcpy(m->id, id, sizeof id);
        }
    }
    return hit;
}

bool cv_reqparse_int(const char *text, long long lo, long long hi, long long *out) {
    if (text == NULL)
        return false;
    bool neg = text[0] == '-';
    const char *p = text + neg;
    /* 18 digits always fit a long long; more are past any range a request takes, and
     * accumulating them could overflow (Last-Event-ID: 9223372036854775808 once did). */
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || digits > 18 || p[digits] != '\0')
        return false;
    long long v = 0;
    for (size_t i = 0; i < digits; i++)
        v = v * 10 + (p[i] - '0');
    if (neg)
        v = -v;
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int cv_reqparse_events_after(const char *query_after, const char *last_event_id, long long *after,
                             struct cv_api_error *err) {
    *after = -1;
    if (query_after != NULL) {
        if (!cv_reqparse_int(query_after, -1, CV_REQPARSE_EVENT_ID_MAX, after)) {
            cv_api_error_set(err, 400, "invalid_query", "?after",
                             "after must be an event id (an integer >= 0)");
            return CV_EINVAL;
        }
        return CV_OK; /* ?after= wins over the header */
    }
    if (last_event_id == NULL || last_event_id[0] == '\0')
        return CV_OK;
    if (!cv_reqparse_int(last_event_id, -1, CV_REQPARSE_EVENT_ID_MAX, after)) {
        cv_api_error_set(err, 400, "invalid_header", NULL,
                         "Last-Event-ID must be an event id (an integer from 0 to %lld)",
                         CV_REQPARSE_EVENT_ID_MAX);
        return CV_EINVAL;
    }
    return CV_OK;
}

bool cv_reqparse_wants_sse(const char *accept) {
    return accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
}

void cv_reqparse_jobs_query_init(struct cv_reqparse_jobs_query *q) {
    memset(q, 0, sizeof *q);
    q->limit = CV_REQPARSE_JOBS_DEFAULT;
}

void cv_reqparse_jobs_query_add(struct cv_reqparse_jobs_query *q, const char *key,
                                const char *value) {
    if (key == NULL)
        return;
    if (strcmp(key, "limit") == 0) {
        if (q->limit_text == NULL)
            q->limit_text = value ? value : "";
    } else if (strcmp(key, "status") == 0) {
        if (q->status == NULL)
            q->status = value ? value : "";
    } else if (strcmp(key, "label") == 0) {
        if (value == NULL || !cv_api_label_selector_ok(value))
            q->bad_label = true;
        else if (q->n_labels == CV_REQPARSE_LABELS_MAX)
            q->too_many_labels = true;
        else
            q->labels[q->n_labels++] = value;
    }
}

int cv_reqparse_jobs_query_finish(struct cv_reqparse_jobs_query *q, struct cv_api_error *err) {
    if (q->limit_text != NULL &&
        !cv_reqparse_int(q->limit_text, 1, CV_REQPARSE_JOBS_MAX, &q->limit)) {
        cv_api_error_set(err, 400, "invalid_query", "?limit",
                         "limit must be an integer from 1 to %d", CV_REQPARSE_JOBS_MAX);
        return CV_EINVAL;
    }
    if (q->bad_label || q->too_many_labels) {
        cv_api_error_set(err, 400, "invalid_query", "?label",
                         "label must be key=value (a label key and a non-empty value), at most %d "
                         "of them",
                         CV_REQPARSE_LABELS_MAX);
        return CV_EINVAL;
    }
    return CV_OK;
}
