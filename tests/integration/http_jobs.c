/* The Jobs API: POST /jobs (train and corr2d), the job resource, the list with its filters,
 * cancelling running and queued jobs, the event log replayed from the start or after a cursor
 * (NDJSON and SSE) and followed live by several readers, /train as a job, the history limit and
 * the bounded queue (503 with Retry-After, accepted jobs still complete). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_suite.h"

/* The textbook's edge run (see http_train.c) as a job: 20 steps, deterministic. */
static char *seed_job(const char *kind_member, int steps) {
    return cv_strdupf("{%s\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"bias\":false,"
                      "\"lr\":0.012,\"steps\":%d,\"init\":{\"weight\":[[0.5,0.5]]}}",
                      kind_member, cv_seed_x, cv_seed_y, steps);
}

/* The PyTorch numbers of that run (http_train.c). */
#define TORCH_LOSS_1    34.5
#define TORCH_LOSS_20   0.3507310
#define TORCH_FINAL     0.30204397
#define TORCH_WEIGHT    0.77563274
#define REL             1e-4
#define CORR2D_SEED_JOB "{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}"

/* A job that runs until it is cancelled (about 0.2 ms a step for 10^6 steps), reporting every
 * 100th step so its log stays small. */
static char *endless_job(void) {
    return cv_big_train_body(128, 128, 5, 1000000, ",\"kind\":\"train\",\"report_every\":100");
}

/* A job of about steps * 42 us that reports every 100th step. */
static char *short_job(long steps) {
    return cv_big_train_body(64, 64, 5, steps, ",\"kind\":\"train\",\"report_every\":100");
}

static void fixture_jobs(void) {
    /* Long jobs need more than the default 100000 steps; a 1 s drain keeps a test that fails
     * with a job still running from hanging the teardown. */
    cv_fixture_start((const char *const[]){"--max-steps", "1000000", "--drain-timeout", "1", NULL},
                     NULL);
}

/* RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS, optional fraction, Z. */
static void check_time(json_t *job, const char *key) {
    const char *t = json_string_value(json_object_get(job, key));
    ck_assert_msg(t != NULL, "\"%s\" is not a string", key);
    const char *shape = "dddd-dd-ddTdd:dd:dd";
    size_t i = 0;
    for (; shape[i]; i++)
        ck_assert_msg(shape[i] == 'd' ? (t[i] >= '0' && t[i] <= '9') : t[i] == shape[i],
                      "\"%s\" is \"%s\", not RFC 3339", key, t);
    if (t[i] == '.')
        for (i++; t[i] >= '0' && t[i] <= '9'; i++)
            ;
    ck_assert_msg(strcmp(t + i, "Z") == 0, "\"%s\" is \"%s\", not UTC (Z)", key, t);
}

/* GET /jobs/{id}?include=losses: the whole resource. */
static json_t *get_job(const char *id) {
    char *path = cv_strdupf("/jobs/%s?include=losses", id);
    json_t *j = cv_get_ok(path, NULL);
    free(path);
    return j;
}

/* method path must give 404 not_found. */
static void expect_404(const char *method, const char *path) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, method, path, NULL, NULL, 0, 0, &r), 0);
    json_decref(cv_check_problem(&r, 404, "not_found", NULL));
    cv_reply_free(&r);
}

static void expect_problem(const char *path, const char *body, int status, const char *code,
                           const char *pointer) {
    struct cv_reply r;
    ck_assert_int_eq(cv_post_json(&cv_d, path, body, &r), 0);
    json_decref(cv_check_problem(&r, status, code, pointer));
    cv_reply_free(&r);
}

/* The events of a finished or live job as NDJSON, with extra headers and a query. */
static json_t *job_events(const char *id, const char *query, const char *const *headers,
                          struct cv_stream *s) {
    char *path = cv_strdupf("/jobs/%s/events%s", id, query ? query : "");
    ck_assert_msg(cv_stream_get(&cv_d, path, headers, 30, s) == 0, "GET %s: curl error %d", path,
                  s->curl_code);
    ck_assert_msg(s->status == 200, "GET %s -> %ld", path, s->status);
    ck_assert_msg(s->partial_len == 0, "GET %s ended in the middle of a line", path);
    free(path);
    return cv_ndjson_events(s);
}

static const char *ev_name(json_t *events, size_t i) {
    return cv_str(json_array_get(events, i), "event");
}

static const char *last_status(json_t *events) {
    return cv_str(json_array_get(events, json_array_size(events) - 1), "status");
}

/* ---- lifecycle -------------------------------------------------------------------------- */

START_TEST(test_train_job_lifecycle) {
    char *body = seed_job("\"kind\":\"train\",", 20);
    char id[64];
    json_t *posted = cv_post_job(body, id);
    ck_assert_str_eq(cv_str(posted, "kind"), "train");
    check_time(posted, "created_at");
    json_decref(posted);

    json_t *j = cv_wait_job(id, NULL, 20);
    ck_assert_msg(strcmp(cv_str(j, "status"), "succeeded") == 0, "job ended %s",
                  cv_str(j, "status"));
    ck_assert_str_eq(cv_str(j, "id"), id);
    ck_assert_str_eq(cv_str(j, "kind"), "train");
    check_time(j, "created_at");
    check_time(j, "started_at");
    check_time(j, "finished_at");
    ck_assert_msg(strcmp(cv_str(j, "created_at"), cv_str(j, "started_at")) <= 0 &&
                      strcmp(cv_str(j, "started_at"), cv_str(j, "finished_at")) <= 0,
                  "times out of order: %s %s %s", cv_str(j, "created_at"), cv_str(j, "started_at"),
                  cv_str(j, "finished_at"));
    json_t *progress = json_object_get(j, "progress");
    ck_assert_int_eq(json_integer_value(json_object_get(progress, "step")), 20);
    ck_assert_int_eq(json_integer_value(json_object_get(progress, "steps")), 20);
    cv_check_rel(cv_num(j, "loss"), TORCH_LOSS_20, REL, "the last step's loss");
    ck_assert_msg(cv_num(j, "elapsed_ms") >= 0, "negative elapsed_ms");
    ck_assert_msg(json_is_null(json_object_get(j, "error")), "a succeeded job has an error");

    json_t *res = json_object_get(j, "result");
    ck_assert_msg(json_is_object(res), "no result object on a finished job");
    ck_assert_str_eq(cv_str(res, "status"), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(res, "steps")), 20);
    /* The losses are left out unless asked for (?include=losses, get_job). */
    ck_assert_msg(json_object_get(res, "losses") == NULL, "GET /jobs/{id} has losses unasked");
    json_t *full = get_job(id);
    json_t *losses = json_object_get(json_object_get(full, "result"), "losses");
    ck_assert_int_eq(json_array_size(losses), 20);
    cv_check_rel(json_number_value(json_array_get(losses, 0)), TORCH_LOSS_1, REL, "losses[0]");
    cv_check_rel(cv_num(res, "final_loss"), TORCH_FINAL, REL, "final_loss");
    cv_check_nested(json_object_get(res, "weight"), 2, (int[]){1, 2},
                    (double[]){TORCH_WEIGHT, -TORCH_WEIGHT}, REL * TORCH_WEIGHT);
    ck_assert_msg(json_is_null(json_object_get(res, "bias")), "bias:false must give bias null");
    ck_assert_msg(json_is_number(json_object_get(res, "elapsed_ms")), "no result elapsed_ms");

    /* The result is the "stream": false reply of the same run. */
    char *sync_body = seed_job("\"stream\":false,", 20);
    json_t *sync = cv_post_ok("/train", sync_body);
    ck_assert_msg(json_equal(json_object_get(sync, "losses"), losses),
                  "the job's losses differ from /train's for the same body");
    json_decref(sync);
    json_decref(full);
    free(sync_body);

    /* Ids are unguessable, not a counter: a second job's id shares no long prefix. */
    char id2[64];
    json_decref(cv_post_job(body, id2));
    ck_assert_msg(strncmp(id, id2, 10) != 0, "ids %s and %s look sequential", id, id2);
    json_decref(cv_wait_job(id2, NULL, 20));
    json_decref(j);
    free(body);
}
END_TEST

START_TEST(test_post_reply_queued) {
    /* API.md: 202 with {"id", "status":"queued"}: the reply describes the job as accepted, even
     * when a worker is free and may finish it before the reply is written. */
    char *body = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x);
    for (int i = 0; i < 3; i++) {
        char id[64];
        json_t *posted = cv_post_job(body, id);
        ck_assert_msg(strcmp(cv_str(posted, "status"), "queued") == 0,
                      "POST /jobs answered status \"%s\", not \"queued\"",
                      cv_str(posted, "status"));
        json_decref(posted);
        json_decref(cv_wait_job(id, NULL, 20));
    }
    free(body);
}
END_TEST

START_TEST(test_corr2d_job) {
    char *body = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x);
    char id[64];
    json_t *posted = cv_post_job(body, id);
    ck_assert_str_eq(cv_str(posted, "kind"), "corr2d");
    json_decref(posted);
    json_t *j = cv_wait_job(id, "succeeded", 20);
    ck_assert_str_eq(cv_str(j, "kind"), "corr2d");
    json_t *res = json_object_get(j, "result");
    ck_assert_msg(json_is_object(res), "no result on a finished corr2d job");
    cv_check_nested(json_object_get(res, "output"), 2, (int[]){6, 7}, cv_seed_y_values, 1e-6);
    ck_assert_msg(json_is_null(json_object_get(j, "error")), "a succeeded job has an error");
    json_decref(j);
    free(body);
}
END_TEST

START_TEST(test_failed_job) {
    /* lr 10 on the seed run blows up within a few steps: the job fails with code diverged. */
    char *body = cv_strdupf("{\"kind\":\"train\",\"input\":%s,\"target\":%s,\"kernel_size\":"
                            "[1,2],\"lr\":10,\"steps\":50,\"seed\":1}",
                            cv_seed_x, cv_seed_y);
    char id[64];
    json_decref(cv_post_job(body, id));
    json_t *j = cv_wait_job(id, "failed", 20);
    json_t *err = json_object_get(j, "error");
    ck_assert_msg(json_is_object(err), "a failed job has no error object");
    ck_assert_str_eq(cv_str(err, "code"), "diverged");
    ck_assert_msg(*cv_str(err, "detail"), "the error has no detail");
    ck_assert_msg(json_is_null(json_object_get(j, "result")), "a failed job has a result");
    check_time(j, "finished_at");
    json_int_t step = json_integer_value(json_object_get(json_object_get(j, "progress"), "step"));
    ck_assert_msg(step < 50, "a diverged run reports step %lld of 50", (long long)step);
    json_decref(j);
    struct cv_stream s = {0};
    json_t *ev = job_events(id, NULL, NULL, &s);
    json_t *last = cv_last_event(ev, "error");
    ck_assert_str_eq(cv_str(last, "status"), "failed");
    ck_assert_str_eq(cv_str(last, "code"), "diverged");
    json_decref(ev);
    cv_stream_free(&s);
    free(body);
}
END_TEST

START_TEST(test_job_validation) {
    char *no_kind = seed_job("", 20);
    expect_problem("/jobs", no_kind, 422, "missing_field", "/kind");
    char *bad_kind = seed_job("\"kind\":\"conv3d\",", 20);
    expect_problem("/jobs", bad_kind, 422, "invalid_field", "/kind");
    char *num_kind = seed_job("\"kind\":5,", 20);
    expect_problem("/jobs", num_kind, 422, "invalid_field", "/kind");
    /* The /train and /corr2d rules apply to their kinds. */
    expect_problem("/jobs", "{\"kind\":\"train\",\"input\":[[1,2]],\"kernel_size\":[1,1]}", 422,
                   "missing_field", "/target");
    char *bad_lr = cv_strdupf("{\"kind\":\"train\",\"input\":%s,\"target\":%s,\"kernel_size\":"
                              "[1,2],\"lr\":-1}",
                              cv_seed_x, cv_seed_y);
    expect_problem("/jobs", bad_lr, 422, "invalid_field", "/lr");
    expect_problem("/jobs", "{\"kind\":\"corr2d\",\"input\":[[1]]}", 422, "missing_field",
                   "/kernel");
    expect_problem("/jobs", "{\"kind\":\"corr2d\",\"input\":[[1,2]],\"kernel\":[[1]],\"steps\":3}",
                   422, "unknown_field", "/steps");
    expect_problem("/jobs", "{\"kind\":\"corr2d\",\"input\":[[1,2]],\"kernel\":[[1]],}", 400,
                   "invalid_json", NULL);
    expect_problem("/jobs", "[\"train\"]", 400, "not_an_object", NULL);
    static const char *const plain[] = {"Content-Type: text/plain", NULL};
    struct cv_reply r;
    const char *ok = "{\"kind\":\"corr2d\",\"input\":[[1,2]],\"kernel\":[[1]]}";
    ck_assert_int_eq(cv_request(&cv_d, "POST", "/jobs", plain, ok, strlen(ok), 0, &r), 0);
    json_decref(cv_check_problem(&r, 415, "unsupported_media_type", NULL));
    cv_reply_free(&r);
    /* Nothing was queued by the rejected requests. */
    json_t *list = cv_get_ok("/jobs", NULL);
    ck_assert_msg(json_array_size(json_object_get(list, "jobs")) == 0,
                  "rejected requests left jobs behind");
    json_decref(list);
    free(no_kind);
    free(bad_kind);
    free(num_kind);
    free(bad_lr);
}
END_TEST

START_TEST(test_unknown_job) {
    static const char zeros[] = "j-00000000000000000000000000000000";
    char *p = cv_strdupf("/jobs/%s", zeros);
    expect_404("GET", p);
    expect_404("DELETE", p);
    free(p);
    p = cv_strdupf("/jobs/%s/events", zeros);
    expect_404("GET", p);
    free(p);
    expect_404("GET", "/jobs/not-a-job");
}
END_TEST

/* ---- the list ----------------------------------------------------------------------------- */

static void expect_invalid_query(const char *path) {
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "GET", path, NULL, NULL, 0, 0, &r), 0);
    json_decref(cv_check_problem(&r, 400, "invalid_query", NULL));
    cv_reply_free(&r);
}

/* GET path's "jobs" list; asserts no entry carries a result. */
static json_t *list_jobs(const char *path) {
    json_t *j = cv_get_ok(path, NULL);
    json_t *jobs = json_incref(json_object_get(j, "jobs"));
    ck_assert_msg(json_is_array(jobs), "GET %s has no \"jobs\" array", path);
    for (size_t i = 0; i < json_array_size(jobs); i++) {
        json_t *e = json_array_get(jobs, i);
        ck_assert_msg(json_object_get(e, "result") == NULL, "GET %s: entry %zu has a result", path,
                      i);
        ck_assert_msg(*cv_str(e, "id") && *cv_str(e, "kind") && *cv_str(e, "status"),
                      "GET %s: entry %zu lacks id, kind or status", path, i);
    }
    json_decref(j);
    return jobs;
}

START_TEST(test_list_jobs) {
    char ids[3][64];
    char *body = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x);
    for (int i = 0; i < 3; i++) {
        json_decref(cv_post_job(body, ids[i]));
        json_decref(cv_wait_job(ids[i], NULL, 20));
    }
    json_t *jobs = list_jobs("/jobs");
    ck_assert_int_eq(json_array_size(jobs), 3);
    for (int i = 0; i < 3; i++) /* newest first */
        ck_assert_str_eq(cv_str(json_array_get(jobs, (size_t)i), "id"), ids[2 - i]);
    json_decref(jobs);

    jobs = list_jobs("/jobs?limit=2");
    ck_assert_int_eq(json_array_size(jobs), 2);
    ck_assert_str_eq(cv_str(json_array_get(jobs, 0), "id"), ids[2]);
    ck_assert_str_eq(cv_str(json_array_get(jobs, 1), "id"), ids[1]);
    json_decref(jobs);
    jobs = list_jobs("/jobs?limit=1000");
    ck_assert_int_eq(json_array_size(jobs), 3);
    json_decref(jobs);
    jobs = list_jobs("/jobs?status=succeeded");
    ck_assert_int_eq(json_array_size(jobs), 3);
    json_decref(jobs);
    jobs = list_jobs("/jobs?status=queued");
    ck_assert_int_eq(json_array_size(jobs), 0);
    json_decref(jobs);

    /* A running job shows under ?status=running, and only it. */
    char *endless = endless_job();
    char run[64];
    json_decref(cv_post_job(endless, run));
    json_decref(cv_wait_job(run, "running", 10));
    jobs = list_jobs("/jobs?status=running");
    ck_assert_int_eq(json_array_size(jobs), 1);
    ck_assert_str_eq(cv_str(json_array_get(jobs, 0), "id"), run);
    ck_assert_str_eq(cv_str(json_array_get(jobs, 0), "status"), "running");
    json_decref(jobs);
    jobs = list_jobs("/jobs?status=succeeded&limit=1");
    ck_assert_int_eq(json_array_size(jobs), 1);
    ck_assert_str_eq(cv_str(json_array_get(jobs, 0), "id"), ids[2]);
    json_decref(jobs);
    jobs = list_jobs("/jobs");
    ck_assert_int_eq(json_array_size(jobs), 4);
    ck_assert_str_eq(cv_str(json_array_get(jobs, 0), "id"), run);
    json_decref(jobs);

    expect_invalid_query("/jobs?status=bogus");
    expect_invalid_query("/jobs?limit=0");
    expect_invalid_query("/jobs?limit=1001");
    expect_invalid_query("/jobs?limit=-1");
    expect_invalid_query("/jobs?limit=ten");
    expect_invalid_query("/jobs?limit=5x");

    char *p = cv_strdupf("/jobs/%s", run);
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", p, NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 202);
    cv_reply_free(&r);
    json_decref(cv_wait_job(run, "cancelled", 10));
    free(p);
    free(endless);
    free(body);
}
END_TEST

/* ---- events ------------------------------------------------------------------------------- */

START_TEST(test_events_replay) {
    char *body = seed_job("\"kind\":\"train\",", 20);
    char id[64];
    json_decref(cv_post_job(body, id));
    json_decref(cv_wait_job(id, NULL, 20));

    /* Everything from the start, NDJSON by default. */
    struct cv_stream s = {0};
    json_t *ev = job_events(id, NULL, NULL, &s);
    cv_check_media_type(s.content_type, "application/x-ndjson");
    ck_assert_int_eq(json_array_size(ev), 22);
    ck_assert_str_eq(ev_name(ev, 0), "start");
    ck_assert_str_eq(cv_str(json_array_get(ev, 0), "job"), id);
    for (size_t i = 1; i <= 20; i++) {
        ck_assert_str_eq(ev_name(ev, i), "step");
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(ev, i), "step")), i);
    }
    cv_check_rel(cv_num(json_array_get(ev, 1), "loss"), TORCH_LOSS_1, REL, "loss of step 1");
    ck_assert_str_eq(ev_name(ev, 21), "done");
    ck_assert_str_eq(last_status(ev), "succeeded");
    cv_check_rel(cv_num(json_array_get(ev, 21), "final_loss"), TORCH_FINAL, REL, "final_loss");
    json_t *all = ev;
    cv_stream_free(&s);

    /* After a cursor: Last-Event-ID and ?after= give the events with seq > N. */
    static const char *const last10[] = {"Last-Event-ID: 10", NULL};
    const char *cursors[][2] = {{NULL, "Last-Event-ID: 10"}, {"?after=10", NULL}};
    for (int k = 0; k < 2; k++) {
        struct cv_stream t = {0};
        ev = job_events(id, cursors[k][0], cursors[k][1] ? last10 : NULL, &t);
        ck_assert_msg(json_array_size(ev) == 11, "%s: %zu events after seq 10, expected 11",
                      cursors[k][0] ? cursors[k][0] : cursors[k][1], json_array_size(ev));
        for (size_t i = 0; i < 11; i++)
            ck_assert_msg(json_equal(json_array_get(ev, i), json_array_get(all, 11 + i)),
                          "event %zu after the cursor is not event %zu of the log", i, 11 + i);
        json_decref(ev);
        cv_stream_free(&t);
    }

    /* SSE: id is the seq, from 0; with Last-Event-ID the ids go on from there. */
    static const char *const sse[] = {"Accept: text/event-stream", NULL};
    static const char *const sse15[] = {"Accept: text/event-stream", "Last-Event-ID: 15", NULL};
    struct cv_sse_event e[32];
    struct cv_stream t = {0};
    char *path = cv_strdupf("/jobs/%s/events", id);
    ck_assert_int_eq(cv_stream_get(&cv_d, path, sse, 30, &t), 0);
    ck_assert_int_eq(t.status, 200);
    cv_check_media_type(t.content_type, "text/event-stream");
    int n = cv_parse_sse(&t, e, 32);
    ck_assert_int_eq(n, 22);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(e[i].id == i, "SSE event %d has id %ld", i, e[i].id);
        ck_assert_str_eq(e[i].name, ev_name(all, (size_t)i));
        ck_assert_msg(json_equal(e[i].data, json_array_get(all, (size_t)i)),
                      "SSE event %d's data differs from the NDJSON line", i);
        json_decref(e[i].data);
    }
    cv_stream_free(&t);
    ck_assert_int_eq(cv_stream_get(&cv_d, path, sse15, 30, &t), 0);
    ck_assert_int_eq(t.status, 200);
    n = cv_parse_sse(&t, e, 32);
    ck_assert_int_eq(n, 6);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(e[i].id == 16 + i, "SSE event %d after 15 has id %ld", i, e[i].id);
        json_decref(e[i].data);
    }
    ck_assert_str_eq(e[n - 1].name, "done");
    cv_stream_free(&t);

    /* A finished job with nothing newer than the cursor: 204. */
    static const char *const last21[] = {"Last-Event-ID: 21", NULL};
    static const char *const sse21[] = {"Accept: text/event-stream", "Last-Event-ID: 21", NULL};
    const char *const *hdrs[] = {last21, sse21, NULL};
    for (int k = 0; k < 3; k++) {
        struct cv_reply r;
        char *q = k < 2 ? cv_strdupf("%s", path) : cv_strdupf("%s?after=21", path);
        ck_assert_int_eq(cv_request(&cv_d, "GET", q, hdrs[k], NULL, 0, 10, &r), 0);
        ck_assert_msg(r.status == 204, "GET %s (%s) -> %ld, expected 204: %s", q,
                      k == 0   ? "Last-Event-ID 21"
                      : k == 1 ? "SSE, Last-Event-ID 21"
                               : "query",
                      r.status, r.body);
        ck_assert_int_eq(r.body_len, 0);
        cv_reply_free(&r);
        free(q);
    }
    json_decref(all);
    free(path);
    free(body);
}
END_TEST

struct reader {
    char path[128];
    const char *const *headers;
    int stop_after;
    struct cv_stream s;
    int rc;
};

static void *read_events(void *arg) {
    struct reader *rd = arg;
    rd->s.stop_after = rd->stop_after;
    rd->rc = cv_stream_get(&cv_d, rd->path, rd->headers, 40, &rd->s);
    return NULL;
}

START_TEST(test_events_live_readers) {
    /* About 1.3 s of training; three readers follow it live, one in SSE, and one leaves early:
     * its leaving must not cancel the job. */
    char *body = short_job(30000);
    char id[64];
    json_decref(cv_post_job(body, id));
    static const char *const sse[] = {"Accept: text/event-stream", NULL};
    struct reader rd[5] = {0};
    pthread_t th[5];
    for (int i = 0; i < 5; i++) {
        snprintf(rd[i].path, sizeof rd[i].path, "/jobs/%s/events", id);
        rd[i].headers = i == 3 ? sse : NULL;
        rd[i].stop_after = i == 4 ? 3 : 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_events, &rd[i]), 0);
    }
    for (int i = 0; i < 5; i++)
        pthread_join(th[i], NULL);

    json_t *first = NULL;
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(rd[i].rc == 0 && rd[i].s.status == 200,
                      "reader %d: curl error %d, status %ld", i, rd[i].s.curl_code, rd[i].s.status);
        ck_assert_msg(rd[i].s.partial_len == 0, "reader %d's stream ended mid-line", i);
        json_t *ev = cv_ndjson_events(&rd[i].s);
        ck_assert_msg(json_array_size(ev) == 302, "reader %d got %zu events, expected 302", i,
                      json_array_size(ev));
        ck_assert_str_eq(ev_name(ev, 0), "start");
        ck_assert_str_eq(ev_name(ev, 301), "done");
        ck_assert_str_eq(last_status(ev), "succeeded");
        for (size_t k = 1; k <= 300; k++)
            ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(ev, k), "step")),
                             (json_int_t)k * 100);
        if (!first)
            first = ev;
        else {
            ck_assert_msg(json_equal(first, ev), "readers 0 and %d saw different events", i);
            json_decref(ev);
        }
        /* Live: the first step arrived well before the end, not all at once on completion. */
        double t_first = -1, t_last = 0;
        for (int k = 0, m = 0; k < rd[i].s.n_lines; k++) {
            if (!rd[i].s.lines[k].text[0])
                continue;
            if (m++ == 1)
                t_first = rd[i].s.lines[k].t;
            t_last = rd[i].s.lines[k].t;
        }
        ck_assert_msg(t_last - t_first > 0.2,
                      "reader %d: step lines arrived within %.3f s of the end: not followed live",
                      i, t_last - t_first);
    }
    struct cv_sse_event e[400];
    ck_assert_int_eq(rd[3].s.status, 200);
    ck_assert_int_eq(rd[3].rc, 0);
    int n = cv_parse_sse(&rd[3].s, e, 400);
    ck_assert_int_eq(n, 302);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(e[i].id == i, "SSE event %d has id %ld", i, e[i].id);
        ck_assert_msg(json_equal(e[i].data, json_array_get(first, (size_t)i)),
                      "SSE event %d differs from NDJSON", i);
        json_decref(e[i].data);
    }
    ck_assert_int_eq(rd[4].s.n_nonblank, 3);

    json_t *j = cv_wait_job(id, NULL, 20);
    ck_assert_msg(strcmp(cv_str(j, "status"), "succeeded") == 0,
                  "a reader leaving early changed the job: %s", cv_str(j, "status"));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")),
                     30000);
    json_decref(j);
    json_decref(first);
    for (int i = 0; i < 5; i++)
        cv_stream_free(&rd[i].s);
    free(body);
}
END_TEST

/* ---- cancel ------------------------------------------------------------------------------- */

START_TEST(test_cancel_running) {
    char *body = endless_job();
    char id[64];
    json_decref(cv_post_job(body, id));
    json_t *j = cv_wait_job(id, "running", 10);
    json_decref(j);
    /* Wait for a step or two, so the job is really at work. */
    for (double until = cv_now() + 10;; cv_sleep_ms(20)) {
        j = get_job(id);
        json_int_t step =
            json_integer_value(json_object_get(json_object_get(j, "progress"), "step"));
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(j, "progress"), "steps")), 1000000);
        json_decref(j);
        if (step > 0)
            break;
        ck_assert_msg(cv_now() < until, "the running job made no step in 10 s");
    }
    /* A live reader, which must see the job end as cancelled. */
    struct reader rd = {0};
    snprintf(rd.path, sizeof rd.path, "/jobs/%s/events", id);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, read_events, &rd), 0);
    cv_sleep_ms(200);

    char *path = cv_strdupf("/jobs/%s", id);
    struct cv_reply r;
    double t0 = cv_now();
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 202, "DELETE a running job -> %ld %s", r.status, r.body);
    j = cv_reply_json(&r);
    ck_assert_str_eq(cv_str(j, "id"), id);
    ck_assert_msg(strcmp(cv_str(j, "status"), "cancelling") == 0 ||
                      strcmp(cv_str(j, "status"), "cancelled") == 0,
                  "DELETE a running job answered status %s", cv_str(j, "status"));
    json_decref(j);
    cv_reply_free(&r);

    j = cv_wait_job(id, "cancelled", 5);
    ck_assert_msg(cv_now() - t0 < 2, "cancelling took %.2f s (should stop within a step)",
                  cv_now() - t0);
    json_int_t step = json_integer_value(json_object_get(json_object_get(j, "progress"), "step"));
    ck_assert_msg(step > 0 && step < 1000000, "a cancelled job's progress is at step %lld",
                  (long long)step);
    check_time(j, "finished_at");
    json_decref(j);

    pthread_join(th, NULL);
    ck_assert_msg(rd.rc == 0 && rd.s.status == 200, "live reader: curl %d status %ld",
                  rd.s.curl_code, rd.s.status);
    json_t *ev = cv_ndjson_events(&rd.s);
    ck_assert_str_eq(ev_name(ev, 0), "start");
    ck_assert_str_eq(cv_str(cv_last_event(ev, "done"), "status"), "cancelled");
    json_decref(ev);
    cv_stream_free(&rd.s);

    /* Replay after the end says the same. */
    struct cv_stream s = {0};
    ev = job_events(id, NULL, NULL, &s);
    ck_assert_str_eq(cv_str(cv_last_event(ev, "done"), "status"), "cancelled");
    json_decref(ev);
    cv_stream_free(&s);

    /* DELETE on a finished job: 200, unchanged. */
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 200, "DELETE a cancelled job -> %ld %s", r.status, r.body);
    j = cv_reply_json(&r);
    ck_assert_str_eq(cv_str(j, "status"), "cancelled");
    json_decref(j);
    cv_reply_free(&r);
    free(path);
    free(body);
}
END_TEST

START_TEST(test_delete_finished) {
    char *body = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x);
    char id[64];
    json_decref(cv_post_job(body, id));
    json_t *before = cv_wait_job(id, NULL, 20);
    char *path = cv_strdupf("/jobs/%s", id);
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 200, "DELETE a succeeded job -> %ld %s", r.status, r.body);
    json_t *j = cv_reply_json(&r);
    ck_assert_str_eq(cv_str(j, "status"), "succeeded");
    json_decref(j);
    cv_reply_free(&r);
    json_t *after = get_job(id);
    ck_assert_msg(json_equal(before, after), "DELETE changed a finished job");
    json_decref(before);
    json_decref(after);
    free(path);
    free(body);
}
END_TEST

/* ---- /train is a job ---------------------------------------------------------------------- */

struct peek {
    struct cv_stream *s;
    json_t *seen; /* GET /jobs/{id} while the stream runs */
};

/* on_line of the streamed /train: at the third line, GET the job its start line names. */
static void peek_job(void *arg, int n) {
    struct peek *p = arg;
    if (n != 3)
        return;
    const char *first = NULL;
    for (int i = 0; i < p->s->n_lines && !first; i++)
        if (p->s->lines[i].text[0])
            first = p->s->lines[i].text;
    json_t *start = first ? json_loads(first, 0, NULL) : NULL;
    char *path = cv_strdupf("/jobs/%s", cv_str(start, "job"));
    struct cv_reply r;
    if (cv_request(&cv_d, "GET", path, NULL, NULL, 0, 10, &r) == 0 && r.status == 200)
        p->seen = cv_reply_json(&r);
    cv_reply_free(&r);
    free(path);
    json_decref(start);
}

START_TEST(test_train_is_a_job) {
    /* Non-streamed: X-Job-Id names a job that holds the same result. */
    char *body = seed_job("\"stream\":false,", 20);
    struct cv_reply r;
    ck_assert_int_eq(cv_post_json(&cv_d, "/train", body, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strncmp(r.job_id, "j-", 2) == 0, "no X-Job-Id on /train: \"%s\"", r.job_id);
    json_t *reply = cv_reply_json(&r);
    json_t *j = get_job(r.job_id);
    ck_assert_str_eq(cv_str(j, "kind"), "train");
    ck_assert_str_eq(cv_str(j, "status"), "succeeded");
    ck_assert_msg(json_equal(json_object_get(json_object_get(j, "result"), "losses"),
                             json_object_get(reply, "losses")),
                  "the job's result differs from the /train reply");
    json_decref(j);
    json_decref(reply);
    cv_reply_free(&r);
    free(body);
}
END_TEST

START_TEST(test_train_stream_is_a_job) {
    /* Streamed: the start event's job is the X-Job-Id, and GET /jobs/{id} sees it running. */
    char *body = cv_big_train_body(64, 64, 5, 30000, ",\"report_every\":100");
    struct cv_stream s = {0};
    struct peek p = {&s, NULL};
    s.on_line = peek_job;
    s.arg = &p;
    ck_assert_int_eq(cv_stream_post(&cv_d, "/train", NULL, body, 40, &s), 0);
    ck_assert_int_eq(s.status, 200);
    json_t *ev = cv_ndjson_events(&s);
    const char *id = cv_str(json_array_get(ev, 0), "job");
    ck_assert_msg(strcmp(id, s.job_id) == 0, "start event's job %s, X-Job-Id %s", id, s.job_id);
    ck_assert_msg(p.seen != NULL, "GET /jobs/%s failed while its /train stream ran", id);
    ck_assert_msg(strcmp(cv_str(p.seen, "status"), "running") == 0,
                  "a job whose stream is mid-run is %s", cv_str(p.seen, "status"));
    json_t *after = cv_wait_job(id, "succeeded", 10);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(after, "progress"), "step")), 30000);
    /* Its replay is what the stream carried. */
    struct cv_stream t = {0};
    json_t *replay = job_events(id, NULL, NULL, &t);
    ck_assert_msg(json_equal(ev, replay), "the replay of a /train job differs from its stream");
    json_decref(replay);
    cv_stream_free(&t);
    json_decref(after);
    json_decref(p.seen);
    json_decref(ev);
    cv_stream_free(&s);
    free(body);
}
END_TEST

TCase *cv_tcase_jobs(void) {
    TCase *tc = cv_tcase("jobs", false);
    tcase_add_checked_fixture(tc, fixture_jobs, NULL);
    tcase_add_test(tc, test_train_job_lifecycle);
    tcase_add_test(tc, test_post_reply_queued);
    tcase_add_test(tc, test_corr2d_job);
    tcase_add_test(tc, test_failed_job);
    tcase_add_test(tc, test_job_validation);
    tcase_add_test(tc, test_unknown_job);
    tcase_add_test(tc, test_list_jobs);
    tcase_add_test(tc, test_events_replay);
    tcase_add_test(tc, test_events_live_readers);
    tcase_add_test(tc, test_cancel_running);
    tcase_add_test(tc, test_delete_finished);
    tcase_add_test(tc, test_train_is_a_job);
    tcase_add_test(tc, test_train_stream_is_a_job);
    return tc;
}

/* ---- flags: history, queue, limits ------------------------------------------------------- */

START_TEST(test_job_history) {
    cv_fixture_start((const char *const[]){"--job-history", "2", NULL}, NULL);
    char *body = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x);
    char ids[3][64];
    for (int i = 0; i < 3; i++) {
        json_decref(cv_post_job(body, ids[i]));
        json_decref(cv_wait_job(ids[i], NULL, 20));
    }
    char *p = cv_strdupf("/jobs/%s", ids[0]);
    expect_404("GET", p);
    free(p);
    p = cv_strdupf("/jobs/%s/events", ids[0]);
    expect_404("GET", p);
    free(p);
    json_decref(get_job(ids[1]));
    json_decref(get_job(ids[2]));
    json_t *jobs = list_jobs("/jobs");
    ck_assert_int_eq(json_array_size(jobs), 2);
    json_decref(jobs);
    free(body);
}
END_TEST

/* POST path must be 503 with Retry-After. */
static void expect_503(const char *path, const char *body) {
    struct cv_reply r;
    ck_assert_int_eq(cv_post_json(&cv_d, path, body, &r), 0);
    ck_assert_msg(r.status == 503, "POST %s with a full queue -> %ld %s", path, r.status, r.body);
    cv_check_media_type(r.content_type, "application/problem+json");
    ck_assert_msg(r.retry_after[0] && strspn(r.retry_after, "0123456789") == strlen(r.retry_after),
                  "503 without a Retry-After in seconds: \"%s\"", r.retry_after);
    cv_reply_free(&r);
}

/* True once /metrics reads convd_queue_depth == want (the pool's queue, which /train and
 * /corr2d are admitted against), polling for at most timeout_s. */
static bool wait_queue_depth(int want, double timeout_s) {
    char line[64];
    snprintf(line, sizeof line, "\nconvd_queue_depth %d\n", want);
    for (double t0 = cv_now(); cv_now() - t0 < timeout_s; usleep(20000)) {
        struct cv_reply r;
        ck_assert_int_eq(cv_request(&cv_d, "GET", "/metrics", NULL, NULL, 0, 0, &r), 0);
        bool seen = r.status == 200 && strstr(r.body, line) != NULL;
        cv_reply_free(&r);
        if (seen)
            return true;
    }
    return false;
}

START_TEST(test_queue_full) {
    cv_fixture_start(
        (const char *const[]){"--workers", "1", "--queue", "1", "--max-steps", "1000000", NULL},
        NULL);
    /* A holds the only worker until it is cancelled, whatever the machine's speed. */
    char *a_body = endless_job();
    char *b_body = short_job(2000);
    char a[64], b[64];
    json_decref(cv_post_job(a_body, a));
    json_decref(cv_wait_job(a, "running", 30));
    json_decref(cv_post_job(b_body, b)); /* waits for the worker */
    /* /jobs counts B at once; /train and /corr2d see it once the dispatcher has handed it to
     * the pool (asynchronously, from the store): wait for that, not for a guessed time. */
    ck_assert_msg(wait_queue_depth(1, 30), "B never reached the pool's queue");
    double t0 = cv_now();
    expect_503("/jobs", b_body);
    char *train = seed_job("\"stream\":false,", 20);
    expect_503("/train", train);
    expect_503("/corr2d", "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}");
    /* A full queue answers at once; blocking would mean waiting for A, which never ends. */
    ck_assert_msg(cv_now() - t0 < 20.0, "the 503s took %.2f s: a full queue must not block",
                  cv_now() - t0);
    /* Cancel A: B gets the worker and both accepted jobs reach their end. */
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s", a);
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 202 || r.status == 200, "DELETE A -> %ld %s", r.status, r.body);
    cv_reply_free(&r);
    json_decref(cv_wait_job(a, "cancelled", 60));
    json_decref(cv_wait_job(b, "succeeded", 60));
    /* And with the queue free again, work is taken. */
    json_decref(cv_post_ok("/train", train));
    free(train);
    free(a_body);
    free(b_body);
}
END_TEST

START_TEST(test_cancel_queued) {
    cv_fixture_start((const char *const[]){"--workers", "1", "--max-steps", "1000000", NULL}, NULL);
    char *body = endless_job();
    char a[64], b[64];
    json_decref(cv_post_job(body, a));
    json_decref(cv_wait_job(a, "running", 10));
    json_decref(cv_post_job(body, b));
    json_t *jb = get_job(b);
    ck_assert_str_eq(cv_str(jb, "status"), "queued");
    ck_assert_msg(json_is_null(json_object_get(jb, "started_at")), "a queued job has started_at");
    json_decref(jb);

    char *path = cv_strdupf("/jobs/%s", b);
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 202, "DELETE a queued job -> %ld %s", r.status, r.body);
    jb = cv_reply_json(&r);
    ck_assert_msg(strcmp(cv_str(jb, "status"), "cancelled") == 0,
                  "a queued job is cancelled at once, not %s", cv_str(jb, "status"));
    json_decref(jb);
    cv_reply_free(&r);
    jb = get_job(b);
    ck_assert_str_eq(cv_str(jb, "status"), "cancelled");
    json_decref(jb);
    struct cv_stream s = {0};
    json_t *ev = job_events(b, NULL, NULL, &s);
    ck_assert_msg(json_array_size(ev) >= 1, "a cancelled queued job has no events");
    ck_assert_str_eq(cv_str(cv_last_event(ev, "done"), "status"), "cancelled");
    json_decref(ev);
    cv_stream_free(&s);
    free(path);

    path = cv_strdupf("/jobs/%s", a);
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 202);
    cv_reply_free(&r);
    json_decref(cv_wait_job(a, "cancelled", 5));
    /* The one worker is free: a corr2d job runs. */
    char *c_body = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x);
    char c[64];
    json_decref(cv_post_job(c_body, c));
    json_t *jc = cv_wait_job(c, "succeeded", 10);
    json_decref(jc);
    free(c_body);
    free(path);
    free(body);
}
END_TEST

START_TEST(test_job_limits) {
    cv_fixture_start((const char *const[]){"--max-body", "2000", "--max-elements", "40", NULL},
                     NULL);
    char *big = cv_big_train_body(20, 20, 3, 5, ",\"kind\":\"train\"");
    expect_problem("/jobs", big, 413, "body_too_large", NULL);
    char *c = cv_strdupf(CORR2D_SEED_JOB, cv_seed_x); /* 48 elements */
    expect_problem("/jobs", c, 413, "too_large", NULL);
    free(big);
    free(c);
}
END_TEST

TCase *cv_tcase_jobs_queue(void) {
    TCase *tc = cv_tcase("jobs_flags", false); /* each test starts the daemon it needs */
    tcase_add_test(tc, test_job_history);
    tcase_add_test(tc, test_queue_full);
    tcase_add_test(tc, test_cancel_queued);
    tcase_add_test(tc, test_job_limits);
    return tc;
}
