/* The check suite of test_http: one TCase constructor per file (http_<topic>.c), a daemon per
 * test (started by a checked fixture or by the test itself, stopped by the teardown) and the
 * assertions the files share. */
#ifndef CV_HTTP_SUITE_H
#define CV_HTTP_SUITE_H

#include <check.h>
#include <jansson.h>

#include "harness.h"

#define CV_TCASE_TIMEOUT_S 60 /* check's default of 4 s is too short for a daemon + training */

/* The daemon of the running test. */
extern struct cv_daemon cv_d;

/* The textbook's edge example as nested JSON: X = ones(6,8) with X[1:4,2:6] = 0 and
 * Y = corr2d(X, [[1,-1]]), 6x7, 1 at column 1 and -1 at column 5 in rows 1..3. */
extern const char cv_seed_x[];
extern const char cv_seed_y[];
extern const double cv_seed_y_values[6 * 7];

/* Starts cv_d with extra flags and environment (both NULL-terminated, may be NULL); fails the
 * test when it does not come up. */
void cv_fixture_start(const char *const *args, const char *const *env);

/* Checked fixtures: start cv_d with no flags / stop it, failing unless it exits 0 on SIGTERM
 * (so every test also checks that the daemon survived it). */
void cv_fixture_default(void);
void cv_fixture_stop(void);

/* Asserts that st, a wait status from cv_daemon_stop or cv_daemon_wait, is an exit with status
 * 0; when names the moment for the message ("on SIGTERM"). */
void cv_check_exit_ok(int st, const char *when);

/* A TCase with the generous timeout and the stop teardown; with_default also starts the default
 * daemon before each test. */
TCase *cv_tcase(const char *name, bool with_default);

/* Asserts that a Content-Type is type, optionally followed by parameters (";charset=..."). */
void cv_check_media_type(const char *content_type, const char *type);

/* POSTs body as JSON to path, asserts 200 application/json and returns the parsed reply. */
json_t *cv_post_ok(const char *path, const char *body);

/* Asserts a problem+json reply: the status, the stable code, "status" in the body equal to the
 * HTTP status, a "title" and "detail", and (when pointer is not NULL) an entry of "errors" with
 * that JSON pointer. Returns the parsed body (json_decref it). */
json_t *cv_check_problem(const struct cv_reply *r, int status, const char *code,
                         const char *pointer);

/* Asserts that t is a nested array of the given shape holding expect[] (row-major) within
 * tol (absolute). */
void cv_check_nested(json_t *t, int rank, const int *shape, const double *expect, double tol);

/* Asserts |actual - expect| <= rel * |expect| with a message naming what. */
void cv_check_rel(double actual, double expect, double rel, const char *what);

/* The non-blank lines of an NDJSON stream as a JSON array of objects; fails the test when a
 * line is not a JSON object with a string "event". */
json_t *cv_ndjson_events(const struct cv_stream *s);

/* POSTs body to /train on cv_d as a stream read into s (whose on_line and arg the caller may set)
 * within timeout_s (<= 0: the default), asserts that it completed with 200 and whole lines, and
 * returns its events (cv_ndjson_events; json_decref them, and cv_stream_free s). */
json_t *cv_train_stream(const char *body, struct cv_stream *s, long timeout_s);

/* The last event of events (an array from cv_ndjson_events; borrowed), asserted to be named
 * event ("done", "error"). */
json_t *cv_last_event(json_t *events, const char *event);

/* One SSE event as the reader sees it. */
struct cv_sse_event {
    long id;
    char name[32];
    json_t *data;
};
/* Parses SSE lines into events: "field: value" lines (one optional space after the colon),
 * ":" comments (heartbeats) and "retry:" skipped, a blank line ending each event. Fails the
 * test on anything else, or on an event left unterminated. Returns the number of events
 * (json_decref each data). */
int cv_parse_sse(const struct cv_stream *s, struct cv_sse_event *ev, int cap);

/* The number member key of obj
 (integer or real); fails the test when absent. */
double cv_num(json_t *obj, const char *key);

/* A training body on an h x w input with values in [0,1] and a zero target (mse, lr 0.01,
 * seed 7), with extra members (",\"report_every\":100" ...) spliced in before the end. About
 * 42 us a step at 64x64 with k = 5, 0.2 ms at 128x128. malloc'd. */
char *cv_big_train_body(int h, int w, int k, long steps, const char *extra);

/* GETs path (with the extra headers, may be NULL), asserts 200 application/json and returns the
 * parsed reply. */
json_t *cv_get_ok(const char *path, const char *const *headers);

/* POSTs body (JSON) to /jobs, asserts 202 with Location: /jobs/{id} and a job resource whose
 * id is "j-" and 32 hex digits; copies the id into id (64 bytes) and returns the body. */
json_t *cv_post_job(const char *body, char *id);

/* Polls GET /jobs/{id} until its status is one of the terminal ones (or want, when not NULL),
 * for at most timeout_s; fails the test on a timeout. Returns the last resource. */
json_t *cv_wait_job(const char *id, const char *want, double timeout_s);

/* The string member key of obj, or "" when absent. */
const char *cv_str(json_t *obj, const char *key);

TCase *cv_tcase_corr2d(void);
TCase *cv_tcase_ops(void);
TCase *cv_tcase_train(void);
TCase *cv_tcase_stream(void);
TCase *cv_tcase_errors(void);
TCase *cv_tcase_limits(void);
TCase *cv_tcase_lifecycle(void);
TCase *cv_tcase_jobs(void);
TCase *cv_tcase_jobs_queue(void);
TCase *cv_tcase_operations(void);
TCase *cv_tcase_drain(void);
TCase *cv_tcase_security(void);
TCase *cv_tcase_reliability(void);
TCase *cv_tcase_reliability_own(void);

#endif
