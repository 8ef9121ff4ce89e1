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

/* The number member key of obj (integer or real); fails the test when absent. */
double cv_num(json_t *obj, const char *key);

TCase *cv_tcase_corr2d(void);
TCase *cv_tcase_ops(void);
TCase *cv_tcase_train(void);
TCase *cv_tcase_stream(void);
TCase *cv_tcase_errors(void);
TCase *cv_tcase_limits(void);
TCase *cv_tcase_lifecycle(void);

#endif
