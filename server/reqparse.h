/* Pure parsers of the request parts libmicrohttpd hands over as strings: the request target
 * (absolute form), the route matcher, integer query values, the events cursor (?after= and
 * Last-Event-ID), the Accept header's SSE choice, and GET /jobs's query arguments.
 *
 * Bytes in, a parsed value or a problem (struct cv_api_error) out: nothing here touches an
 * MHD_Connection, a lock or the heap, so tests/fuzz/fuzz_request.c and tests/unit/test_reqparse.c
 * drive them directly. libmicrohttpd has already split the query string at '&' and '=' and
 * percent-decoded the path, keys and values before these see them. */
#ifndef CONVD_REQPARSE_H
#define CONVD_REQPARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "convd/api.h"

struct MHD_Connection;
struct cv_req;

/* A route handler: runs on the final MHD call with the whole body in req. Returns the
 * MHD_Result of queueing its reply. */
typedef int (*cv_route_handler)(struct MHD_Connection *conn, struct cv_req *req);

enum cv_route_flags {
    CV_ROUTE_FLAGS_JSON_BODY = 1, /* POST with an application/json body */
    CV_ROUTE_FLAGS_PUBLIC = 2,    /* served without the bearer token (probes, metrics) */
    CV_ROUTE_FLAGS_PROBE = 4,     /* a health probe: served even past the connection limits */
};

struct cv_route {
    const char *method;
    const char *path; /* a template: a "{id}" segment matches any one non-empty segment */
    cv_route_handler handler;
    unsigned flags;
};

/* Bytes of the "{id}" segment a match keeps, with its NUL (a longer segment does not match). */
#define CV_REQPARSE_ID_CAP 64

/* What cv_reqparse_route_find learned about a path besides the route. */
struct cv_route_match {
    bool path_known;             /* some route has this path (so a miss is 405, not 404) */
    char allow[128];             /* "GET, DELETE": the methods of that path, for Allow; cut short */
    char id[CV_REQPARSE_ID_CAP]; /* the segment "{id}" matched in the route found, else "" */
};

/* The path of a request target: an absolute-form target ("http://host:port/path?q", which
 * RFC 9112 §3.2.2 says a server must accept) is routed like its origin form "/path"; any other
 * target is returned as is. Returns a pointer into url (or to a static "/"); never NULL. */
const char *cv_reqparse_origin_form(const char *url);

/* True when path matches a route template, where "{id}" matches one non-empty segment shorter
 * than id_cap, copied NUL-terminated into id (id_cap >= 1). */
bool cv_reqparse_path_match(const char *tmpl, const char *path, char *id, size_t id_cap);

/* Finds the route of routes (ended by a NULL method) with this method and path; fills *m.
 * Returns NULL when none: m->path_known then tells 405 from 404. */
const struct cv_route *cv_reqparse_route_find(const struct cv_route *routes, const char *method,
                                              const char *path, struct cv_route_match *m);

/* Parses a decimal integer in [lo, hi] into *out: an optional '-' and 1 to 18 ASCII digits,
 * nothing else (no space, '+', hex or trailing bytes). Returns false, leaving *out alone, for
 * anything else (so no value can overflow a long long). */
bool cv_reqparse_int(const char *text, long long lo, long long hi, long long *out);

/* The largest event id a cursor takes: the same range for ?after= and Last-Event-ID, so that
 * "after + 1" can never overflow. */
#define CV_REQPARSE_EVENT_ID_MAX 2147483647LL

/* The cursor of GET /jobs/{id}/events: ?after= (query_after) wins over Last-Event-ID; both
 * take -1 to CV_REQPARSE_EVENT_ID_MAX; either may be NULL (absent). An empty Last-Event-ID is
 * no cursor (EventSource sends none once an id field reset it). *after is -1 (from the start)
 * unless a cursor is given. Returns CV_OK, or CV_EINVAL with a 400 in *err: invalid_query
 * (pointer "?after") or invalid_header. */
int cv_reqparse_events_after(const char *query_after, const char *last_event_id, long long *after,
                             struct cv_api_error *err);

/* True when an Accept header (or NULL) asks for Server-Sent Events. */
bool cv_reqparse_wants_sse(const char *accept);

#define CV_REQPARSE_LABELS_MAX   8
#define CV_REQPARSE_JOBS_MAX     1000
#define CV_REQPARSE_JOBS_DEFAULT 100

/* The query of GET /jobs, fed one decoded argument at a time (libmicrohttpd's iterator). The
 * first limit and status count, as MHD_lookup_connection_value would pick; every label counts.
 * Strings are borrowed from the caller for the request's lifetime. */
struct cv_reqparse_jobs_query {
    long long limit;                            /* 1..CV_REQPARSE_JOBS_MAX after finish */
    const char *status;                         /* NULL: any; the caller checks the name */
    const char *labels[CV_REQPARSE_LABELS_MAX]; /* "key=value" selectors, each well formed */
    int n_labels;
    const char *limit_text; /* the first ?limit= as given, or NULL */
    bool bad_label, too_many_labels;
};

/* Resets q to no arguments. */
void cv_reqparse_jobs_query_init(struct cv_reqparse_jobs_query *q);

/* Takes one argument (value may be NULL for "?key" without '='); unknown keys are ignored. */
void cv_reqparse_jobs_query_add(struct cv_reqparse_jobs_query *q, const char *key,
                                const char *value);

/* Checks what was added: CV_OK with q->limit set, or CV_EINVAL with a 400 invalid_query in *err
 * naming the first bad argument (limit, then label). */
int cv_reqparse_jobs_query_finish(struct cv_reqparse_jobs_query *q, struct cv_api_error *err);

#endif
