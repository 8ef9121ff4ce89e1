/* Unit tests of the store layer (store/): one suite of the cv_store.h contract, run against
 * every back end, plus the blob codec and what only SQLite has (lock, schema version, corrupt
 * files, persistence).
 *
 * Usage: test_store [URL...]. Without arguments it runs the contract on "memory" and on a fresh
 * "sqlite:" file per test (in a mkdtemp directory). With URLs (e.g. a postgres:// one), it runs
 * the contract on each; every test starts by deleting every job and kernel through the public
 * API, so any back end can be tested with no back-end-specific reset. */
#include <check.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cv_store.h"
#include "cv_store_codec.h"

/* ---- fixture: a fresh, empty store per test ------------------------------------------------- */

static const char *g_url; /* "memory", "sqlite" (a fresh file per test) or a full URL */
static char g_dir[256];
static struct cv_store *S;

static void wipe(struct cv_store *s) {
    for (int round = 0; round < 1000; round++) {
        struct cv_store_job *jobs;
        size_t n;
        struct cv_store_query q = {.status = -1, .limit = 500};
        ck_assert_int_eq(cv_store_job_list(s, &q, &jobs, &n), CV_STORE_OK);
        for (size_t i = 0; i < n; i++)
            cv_store_job_delete(s, jobs[i].id);
        cv_store_jobs_free(jobs, n);
        if (n == 0)
            break;
    }
    struct cv_store_kernel *k;
    size_t nk;
    ck_assert_int_eq(cv_store_kernel_list(s, &k, &nk), CV_STORE_OK);
    for (size_t i = 0; i < nk; i++)
        cv_store_kernel_delete(s, k[i].name);
    cv_store_kernels_free(k, nk);
}

static struct cv_store *open_url(const char *url, const struct cv_store_options *o) {
    struct cv_store *s = NULL;
    int st = cv_store_open(url, o, &s);
    ck_assert_msg(st == CV_STORE_OK, "open %s: %s (%s)", url, cv_store_status_str(st),
                  cv_store_errmsg());
    return s;
}

static void db_url(char *url, size_t cap) {
    snprintf(url, cap, "sqlite:%s/t.db", g_dir);
}

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "%s/cv-store-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert(mkdtemp(g_dir) != NULL);
    char url[400];
    if (strcmp(g_url, "sqlite") == 0)
        db_url(url, sizeof url);
    else
        snprintf(url, sizeof url, "%s", g_url);
    S = open_url(url, NULL);
    wipe(S);
}

static void teardown(void) {
    cv_store_close(S);
    S = NULL;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static void new_id(char *id) {
    unsigned char r[16];
    ck_assert(getrandom(r, sizeof r, 0) == (ssize_t)sizeof r);
    strcpy(id, "j-");
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 + 2 * i, 3, "%02x", r[i]);
}

/* Inserts a queued (or running, owned by owner) job; returns its id in id. */
static void insert(char *id, enum cv_store_job_status st, const char *owner, int64_t created) {
    struct cv_store_job j = {0};
    new_id(j.id);
    j.kind = CV_STORE_KIND_TRAIN;
    j.status = st;
    j.resumable = true;
    j.steps = 10;
    j.loss = NAN;
    j.elapsed_ms = NAN;
    j.created_ms = created;
    if (owner)
        snprintf(j.owner, sizeof j.owner, "%s", owner);
    static const unsigned char req[] = {1, 2, 3, 0, 5};
    j.request = (unsigned char *)req;
    j.request_len = sizeof req;
    j.params_json = "{\"lr\":0.1}";
    j.labels_json = "{\"team\":\"a\",\"x\":\"1\"}";
    j.name = "my-job";
    int rc = cv_store_job_insert(S, &j, NULL, 0, 5000);
    ck_assert_msg(rc == CV_STORE_OK, "insert: %s", cv_store_errmsg());
    strcpy(id, j.id);
}

/* Inserts a queued job (its id into id) and claims it as runner "r1" for lease_ms: attempt 1
 * runs. The store is fresh, so the claim takes this job. */
static void insert_claimed(char *id, int64_t lease_ms) {
    insert(id, CV_STORE_JOB_QUEUED, NULL, 0);
    struct cv_store_job c;
    ck_assert_int_eq(cv_store_job_claim(S, "r1", lease_ms, &c), CV_STORE_OK);
    ck_assert_str_eq(c.id, id);
    cv_store_job_free(&c);
}

static struct cv_store_event ev(int64_t seq, const char *body) {
    return (struct cv_store_event){seq, 0, (char *)body, strlen(body)};
}

static struct cv_store_finish fin(enum cv_store_job_status st, const struct cv_store_event *e,
                                  size_t n) {
    return (struct cv_store_finish){.status = st,
                                    .result = "{\"ok\":true}",
                                    .result_len = 11,
                                    .events = e,
                                    .n_events = n,
                                    .step = 10,
                                    .loss = 0.5,
                                    .elapsed_ms = 12.5};
}

static int append1(const char *id, int32_t attempt, const struct cv_store_event *e, size_t n) {
    struct cv_store_append a = {.job_id = id, .attempt = attempt, .events = e, .n_events = n};
    int st = cv_store_append(S, &a, 1);
    return st == CV_STORE_OK ? a.status : st;
}

/* ---- the contract ------------------------------------------------------------------------------
 */

START_TEST(insert_get_roundtrip) {
    char id[40];
    insert(id, CV_STORE_JOB_QUEUED, NULL, 0);
    struct cv_store_job j;
    ck_assert_int_eq(cv_store_job_get(S, id, CV_STORE_LOAD_REQUEST, &j), CV_STORE_OK);
    ck_assert_str_eq(j.id, id);
    ck_assert_int_eq(j.kind, CV_STORE_KIND_TRAIN);
    ck_assert_int_eq(j.status, CV_STORE_JOB_QUEUED);
    ck_assert(j.resumable);
    ck_assert_int_eq(j.attempt, 0);
    ck_assert_int_eq(j.steps, 10);
    ck_assert(isnan(j.loss));
    ck_assert_int_eq(j.last_seq, -1);
    ck_assert(j.created_ms > 0);
    ck_assert_int_eq(j.request_len, 5);
    ck_assert_int_eq(j.request[3], 0);
    ck_assert_int_eq(j.request[4], 5);
    ck_assert_str_eq(j.name, "my-job");
    ck_assert_str_eq(j.params_json, "{\"lr\":0.1}");
    ck_assert(j.result == NULL);
    cv_store_job_free(&j);
    ck_assert_int_eq(cv_store_job_get(S, "j-nope", 0, &j), CV_STORE_NOT_FOUND);
    /* a duplicate id is refused */
    struct cv_store_job d = {.status = CV_STORE_JOB_QUEUED, .loss = NAN, .elapsed_ms = NAN};
    strcpy(d.id, id);
    ck_assert_int_eq(cv_store_job_insert(S, &d, NULL, 0, 1000), CV_STORE_INVALID);
}
END_TEST

START_TEST(claim_order_and_leases) {
    struct cv_store_job c;
    ck_assert_int_eq(cv_store_job_claim(S, "r1", 60000, &c), CV_STORE_NOT_FOUND);
    char a[40], b[40], r[40];
    insert(r, CV_STORE_JOB_RUNNING, "r0", 0);
    insert(a, CV_STORE_JOB_QUEUED, NULL, 0);
    insert(b, CV_STORE_JOB_QUEUED, NULL, 0);
    ck_assert_int_eq(cv_store_job_claim(S, "r1", 60000, &c), CV_STORE_OK);
    ck_assert_str_eq(c.id, a); /* oldest queued first; a running job with a lease is not taken */
    ck_assert_int_eq(c.status, CV_STORE_JOB_RUNNING);
    ck_assert_int_eq(c.attempt, 1);
    ck_assert_str_eq(c.owner, "r1");
    ck_assert(c.request != NULL && c.request_len == 5);
    ck_assert(c.started_ms > 0);
    cv_store_job_free(&c);
    ck_assert_int_eq(cv_store_job_claim(S, "r1", 60000, &c), CV_STORE_OK);
    ck_assert_str_eq(c.id, b);
    cv_store_job_free(&c);
    ck_assert_int_eq(cv_store_job_claim(S, "r1", 60000, &c), CV_STORE_NOT_FOUND);
    /* r0 dies: its lease is expired, the next claim takes its job as attempt 2 */
    int64_t n;
    ck_assert_int_eq(cv_store_job_orphan(S, "r0", &n), CV_STORE_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(cv_store_job_claim(S, "r2", 60000, &c), CV_STORE_OK);
    ck_assert_str_eq(c.id, r);
    ck_assert_int_eq(c.attempt, 2);
    ck_assert_str_eq(c.owner, "r2");
    cv_store_job_free(&c);
    int64_t count;
    ck_assert_int_eq(cv_store_job_count(S, CV_STORE_JOB_RUNNING, &count), CV_STORE_OK);
    ck_assert_int_eq(count, 3);
    ck_assert_int_eq(cv_store_job_count(S, -1, &count), CV_STORE_OK);
    ck_assert_int_eq(count, 3);
}
END_TEST

START_TEST(claim_many_queued_then_lapsed) {
    struct cv_store_job c[5];
    size_t n = 9;
    ck_assert_int_eq(cv_store_job_claim_many(S, "r1", 60000, 3, c, &n), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(cv_store_job_claim_many(S, "r1", 60000, 0, c, &n), CV_STORE_INVALID);
    char r[40], a[40], b[40], d[40];
    insert(r, CV_STORE_JOB_RUNNING, "r0", 0);
    insert(a, CV_STORE_JOB_QUEUED, NULL, 0);
    insert(b, CV_STORE_JOB_QUEUED, NULL, 0);
    insert(d, CV_STORE_JOB_QUEUED, NULL, 0);
    /* two of three queued, oldest first */
    ck_assert_int_eq(cv_store_job_claim_many(S, "r1", 60000, 2, c, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(c[0].id, a);
    ck_assert_str_eq(c[1].id, b);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(c[i].status, CV_STORE_JOB_RUNNING);
        ck_assert_int_eq(c[i].attempt, 1);
        ck_assert_str_eq(c[i].owner, "r1");
        ck_assert(c[i].request != NULL && c[i].request_len == 5);
        cv_store_job_free(&c[i]);
    }
    /* r0 dies: the last queued job first, then its lapsed one as attempt 2; room to spare */
    int64_t orphans;
    ck_assert_int_eq(cv_store_job_orphan(S, "r0", &orphans), CV_STORE_OK);
    ck_assert_int_eq(cv_store_job_claim_many(S, "r2", 60000, 5, c, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(c[0].id, d);
    ck_assert_int_eq(c[0].attempt, 1);
    ck_assert_str_eq(c[1].id, r);
    ck_assert_int_eq(c[1].attempt, 2);
    ck_assert_str_eq(c[1].owner, "r2");
    cv_store_job_free(&c[0]);
    cv_store_job_free(&c[1]);
    ck_assert_int_eq(cv_store_job_claim_many(S, "r1", 60000, 5, c, &n), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(short_lease_expires) {
    char id[40];
    insert_claimed(id, 1);
    struct cv_store_job c;
    usleep(20000); /* the 1 ms lease is long gone */
    ck_assert_int_eq(cv_store_job_claim(S, "r2", 60000, &c), CV_STORE_OK);
    ck_assert_int_eq(c.attempt, 2);
    cv_store_job_free(&c);
    bool cancel;
    ck_assert_int_eq(cv_store_job_renew(S, id, 1, "r1", 1000, &cancel), CV_STORE_FENCED);
    ck_assert_int_eq(cv_store_job_renew(S, id, 2, "r2", 1000, &cancel), CV_STORE_OK);
    ck_assert(!cancel);
    ck_assert_int_eq(cv_store_job_renew(S, "j-nope", 2, "r2", 1000, &cancel), CV_STORE_NOT_FOUND);
}
END_TEST

START_TEST(events_fencing) {
    char id[40];
    insert_claimed(id, 60000);
    struct cv_store_job c;
    struct cv_store_event e1[2] = {ev(0, "{\"event\":\"start\"}"), ev(1, "{\"step\":1}")};
    ck_assert_int_eq(append1(id, 1, e1, 2), CV_STORE_OK);
    struct cv_store_event gap = ev(5, "{}");
    ck_assert_int_eq(append1(id, 1, &gap, 1), CV_STORE_INVALID);
    /* taken over: the old runner's writes are fenced, the new one's continue the log */
    int64_t n;
    ck_assert_int_eq(cv_store_job_orphan(S, NULL, &n), CV_STORE_OK);
    ck_assert_int_eq(cv_store_job_claim(S, "r2", 60000, &c), CV_STORE_OK);
    ck_assert_int_eq(c.attempt, 2);
    ck_assert_int_eq(c.last_seq, 1);
    cv_store_job_free(&c);
    struct cv_store_event old = ev(2, "{\"step\":2,\"old\":true}");
    ck_assert_int_eq(append1(id, 1, &old, 1), CV_STORE_FENCED);
    struct cv_store_event e2 = ev(2, "{\"event\":\"resumed\"}");
    ck_assert_int_eq(append1(id, 2, &e2, 1), CV_STORE_OK);
    struct cv_store_finish f = fin(CV_STORE_JOB_SUCCEEDED, NULL, 0);
    ck_assert_int_eq(cv_store_job_finish(S, id, 1, &f), CV_STORE_FENCED);
    struct cv_store_event done = ev(3, "{\"event\":\"done\"}");
    f = fin(CV_STORE_JOB_SUCCEEDED, &done, 1);
    ck_assert_int_eq(cv_store_job_finish(S, id, 2, &f), CV_STORE_OK);
    ck_assert_int_eq(cv_store_job_finish(S, id, 2, &f), CV_STORE_FENCED); /* terminal */
    struct cv_store_event late = ev(4, "{}");
    ck_assert_int_eq(append1(id, 2, &late, 1), CV_STORE_FENCED);
    /* the log: 4 events, each with the attempt that wrote it */
    struct cv_store_event *out;
    size_t cnt;
    ck_assert_int_eq(cv_store_events_read(S, id, -1, 0, &out, &cnt), CV_STORE_OK);
    ck_assert_int_eq(cnt, 4);
    ck_assert_str_eq(out[0].body, "{\"event\":\"start\"}");
    ck_assert_int_eq(out[1].attempt, 1);
    ck_assert_str_eq(out[2].body, "{\"event\":\"resumed\"}");
    ck_assert_int_eq(out[2].attempt, 2);
    ck_assert_int_eq(out[3].seq, 3);
    ck_assert_int_eq(out[3].len, strlen("{\"event\":\"done\"}"));
    cv_store_events_free(out, cnt);
    ck_assert_int_eq(cv_store_events_read(S, id, 1, 1, &out, &cnt), CV_STORE_OK);
    ck_assert_int_eq(cnt, 1);
    ck_assert_int_eq(out[0].seq, 2);
    cv_store_events_free(out, cnt);
    ck_assert_int_eq(cv_store_events_read(S, id, 3, 0, &out, &cnt), CV_STORE_OK);
    ck_assert_int_eq(cnt, 0);
    ck_assert_int_eq(cv_store_events_read(S, "j-nope", -1, 0, &out, &cnt), CV_STORE_NOT_FOUND);
    struct cv_store_job j;
    ck_assert_int_eq(cv_store_job_get(S, id, CV_STORE_LOAD_RESULT, &j), CV_STORE_OK);
    ck_assert_int_eq(j.status, CV_STORE_JOB_SUCCEEDED);
    ck_assert_str_eq(j.result, "{\"ok\":true}");
    ck_assert_int_eq(j.result_len, 11);
    ck_assert_int_eq(j.last_seq, 3);
    ck_assert_int_eq(j.step, 10);
    ck_assert(fabs(j.loss - 0.5) < 1e-12 && fabs(j.elapsed_ms - 12.5) < 1e-9);
    ck_assert(j.finished_ms > 0 && j.lease_until_ms == 0);
    cv_store_job_free(&j);
}
END_TEST

START_TEST(group_commit_items) {
    char a[40], b[40];
    insert(a, CV_STORE_JOB_RUNNING, "r1", 0);
    insert(b, CV_STORE_JOB_RUNNING, "r1", 0);
    struct cv_store_event ea = ev(0, "{\"a\":0}"), eb = ev(0, "{\"b\":0}");
    static const unsigned char ck[] = {9, 8, 7};
    struct cv_store_append items[3] = {
        {.job_id = a,
         .attempt = 1,
         .events = &ea,
         .n_events = 1,
         .has_progress = true,
         .step = 4,
         .loss = 0.25,
         .elapsed_ms = 3,
         .checkpoint = ck,
         .checkpoint_len = 3,
         .checkpoint_step = 4},
        {.job_id = b, .attempt = 7, .events = &eb, .n_events = 1}, /* wrong attempt */
        {.job_id = "j-nope", .attempt = 1},
    };
    ck_assert_int_eq(cv_store_append(S, items, 3), CV_STORE_OK);
    ck_assert_int_eq(items[0].status, CV_STORE_OK);
    ck_assert_int_eq(items[1].status, CV_STORE_FENCED);
    ck_assert_int_eq(items[2].status, CV_STORE_NOT_FOUND);
    struct cv_store_job j;
    ck_assert_int_eq(cv_store_job_get(S, a, 0, &j), CV_STORE_OK);
    ck_assert_int_eq(j.step, 4);
    ck_assert(fabs(j.loss - 0.25) < 1e-12);
    ck_assert_int_eq(j.last_seq, 0);
    cv_store_job_free(&j);
    ck_assert_int_eq(cv_store_job_get(S, b, 0, &j), CV_STORE_OK);
    ck_assert_int_eq(j.last_seq, -1);
    cv_store_job_free(&j);
    int32_t step, attempt;
    unsigned char *blob;
    size_t len;
    ck_assert_int_eq(cv_store_checkpoint_get(S, a, &step, &attempt, &blob, &len), CV_STORE_OK);
    ck_assert_int_eq(step, 4);
    ck_assert_int_eq(attempt, 1);
    ck_assert_int_eq(len, 3);
    ck_assert_int_eq(blob[2], 7);
    free(blob);
    ck_assert_int_eq(cv_store_checkpoint_get(S, b, &step, &attempt, &blob, &len),
                     CV_STORE_NOT_FOUND);
    /* a newer checkpoint replaces the old one; finish deletes it */
    static const unsigned char ck2[] = {1, 1, 1, 1};
    struct cv_store_append upd = {
        .job_id = a, .attempt = 1, .checkpoint = ck2, .checkpoint_len = 4, .checkpoint_step = 9};
    ck_assert_int_eq(cv_store_append(S, &upd, 1), CV_STORE_OK);
    ck_assert_int_eq(cv_store_checkpoint_get(S, a, &step, &attempt, &blob, &len), CV_STORE_OK);
    ck_assert_int_eq(step, 9);
    ck_assert_int_eq(len, 4);
    free(blob);
    struct cv_store_finish f = fin(CV_STORE_JOB_FAILED, NULL, 0);
    f.result = NULL;
    f.result_len = 0;
    f.error_code = "diverged";
    f.error_detail = "loss became NaN";
    ck_assert_int_eq(cv_store_job_finish(S, a, 1, &f), CV_STORE_OK);
    ck_assert_int_eq(cv_store_checkpoint_get(S, a, &step, &attempt, &blob, &len),
                     CV_STORE_NOT_FOUND);
    ck_assert_int_eq(cv_store_job_get(S, a, CV_STORE_LOAD_RESULT, &j), CV_STORE_OK);
    ck_assert_str_eq(j.error_code, "diverged");
    ck_assert_str_eq(j.error_detail, "loss became NaN");
    ck_assert(j.result == NULL);
    cv_store_job_free(&j);
}
END_TEST

START_TEST(release_keeps_checkpoint) {
    char id[40];
    insert_claimed(id, 60000);
    struct cv_store_job c;
    static const unsigned char ck[] = {42};
    struct cv_store_append a = {
        .job_id = id, .attempt = 1, .checkpoint = ck, .checkpoint_len = 1, .checkpoint_step = 3};
    ck_assert_int_eq(cv_store_append(S, &a, 1), CV_STORE_OK);
    ck_assert_int_eq(cv_store_job_release(S, id, 2), CV_STORE_FENCED);
    ck_assert_int_eq(cv_store_job_release(S, id, 1), CV_STORE_OK);
    ck_assert_int_eq(cv_store_job_get(S, id, 0, &c), CV_STORE_OK);
    ck_assert_int_eq(c.status, CV_STORE_JOB_QUEUED);
    ck_assert_str_eq(c.owner, "");
    cv_store_job_free(&c);
    ck_assert_int_eq(cv_store_job_claim(S, "r2", 60000, &c), CV_STORE_OK);
    ck_assert_int_eq(c.attempt, 2);
    cv_store_job_free(&c);
    int32_t step, attempt;
    unsigned char *blob;
    size_t len;
    ck_assert_int_eq(cv_store_checkpoint_get(S, id, &step, &attempt, &blob, &len), CV_STORE_OK);
    ck_assert_int_eq(step, 3);
    ck_assert_int_eq(blob[0], 42);
    free(blob);
}
END_TEST

START_TEST(cancel_paths) {
    char q[40], r[40];
    insert(q, CV_STORE_JOB_QUEUED, NULL, 0);
    insert(r, CV_STORE_JOB_RUNNING, "r1", 0);
    struct cv_store_event done = ev(0, "{\"event\":\"done\",\"status\":\"cancelled\"}");
    struct cv_store_finish f = fin(CV_STORE_JOB_CANCELLED, &done, 1);
    enum cv_store_job_status after;
    ck_assert_int_eq(cv_store_job_cancel(S, q, &f, &after), CV_STORE_OK);
    ck_assert_int_eq(after, CV_STORE_JOB_CANCELLED);
    struct cv_store_job j;
    ck_assert_int_eq(cv_store_job_get(S, q, CV_STORE_LOAD_RESULT, &j), CV_STORE_OK);
    ck_assert_int_eq(j.status, CV_STORE_JOB_CANCELLED);
    ck_assert_int_eq(j.last_seq, 0);
    ck_assert(j.result != NULL);
    cv_store_job_free(&j);
    /* a cancelled queued job is never claimed */
    struct cv_store_job c;
    ck_assert_int_eq(cv_store_job_claim(S, "r9", 60000, &c), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(cv_store_job_cancel(S, r, &f, &after), CV_STORE_OK);
    ck_assert_int_eq(after, CV_STORE_JOB_RUNNING);
    bool cancel = false;
    ck_assert_int_eq(cv_store_job_renew(S, r, 1, "r1", 60000, &cancel), CV_STORE_OK);
    ck_assert(cancel);
    ck_assert_int_eq(cv_store_job_cancel(S, q, &f, &after), CV_STORE_OK); /* terminal: no-op */
    ck_assert_int_eq(after, CV_STORE_JOB_CANCELLED);
    ck_assert_int_eq(cv_store_job_cancel(S, "j-nope", &f, &after), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(cv_store_job_delete(S, q), CV_STORE_OK);
    ck_assert_int_eq(cv_store_job_delete(S, q), CV_STORE_NOT_FOUND);
    struct cv_store_event *out;
    size_t n;
    ck_assert_int_eq(cv_store_events_read(S, q, -1, 0, &out, &n), CV_STORE_NOT_FOUND);
}
END_TEST

START_TEST(list_filters_and_paging) {
    char ids[5][40];
    for (int i = 0; i < 5; i++)
        insert(ids[i], CV_STORE_JOB_QUEUED, NULL, 1000 + i);
    struct cv_store_job c;
    ck_assert_int_eq(cv_store_job_claim(S, "r1", 60000, &c), CV_STORE_OK);
    ck_assert_str_eq(c.id, ids[0]);
    cv_store_job_free(&c);
    struct cv_store_job *jobs;
    size_t n;
    struct cv_store_query q = {.status = -1};
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_str_eq(jobs[0].id, ids[4]); /* newest first */
    ck_assert_str_eq(jobs[4].id, ids[0]);
    ck_assert(jobs[0].request == NULL);
    cv_store_jobs_free(jobs, n);
    q.status = CV_STORE_JOB_RUNNING;
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(jobs[0].id, ids[0]);
    cv_store_jobs_free(jobs, n);
    q = (struct cv_store_query){.status = -1, .limit = 2};
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(jobs[1].id, ids[3]);
    cv_store_jobs_free(jobs, n);
    q.before_id = ids[3];
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(jobs[0].id, ids[2]);
    ck_assert_str_eq(jobs[1].id, ids[1]);
    cv_store_jobs_free(jobs, n);
    q = (struct cv_store_query){.status = -1, .label_key = "team", .label_value = "a"};
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 5);
    cv_store_jobs_free(jobs, n);
    q.label_value = "b";
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 0);
    ck_assert(jobs == NULL);
    q = (struct cv_store_query){.status = -1, .name = "my-job"};
    ck_assert_int_eq(cv_store_job_list(S, &q, &jobs, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 5);
    cv_store_jobs_free(jobs, n);
}
END_TEST

/* Runs a queued job to the end at once (claim + finish) and returns its id. */
static void finished_job(char *id) {
    insert(id, CV_STORE_JOB_RUNNING, "r1", 0);
    struct cv_store_event done = ev(0, "{\"event\":\"done\"}");
    struct cv_store_finish f = fin(CV_STORE_JOB_SUCCEEDED, &done, 1);
    ck_assert_int_eq(cv_store_job_finish(S, id, 1, &f), CV_STORE_OK);
}

START_TEST(retention_by_count_and_age) {
    char ids[7][40], live[40];
    for (int i = 0; i < 7; i++)
        finished_job(ids[i]);
    insert(live, CV_STORE_JOB_QUEUED, NULL, 0);
    int deleted, total = 0;
    do { /* keep the newest 3 finished, in batches of 2 */
        ck_assert_int_eq(cv_store_retain(S, 3, 0, 2, &deleted), CV_STORE_OK);
        total += deleted;
    } while (deleted == 2);
    ck_assert_int_eq(total, 4);
    struct cv_store_job j;
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(cv_store_job_get(S, ids[i], 0, &j) == CV_STORE_OK, i >= 4);
        cv_store_job_free(&j);
    }
    ck_assert_int_eq(cv_store_job_get(S, live, 0, &j), CV_STORE_OK);
    cv_store_job_free(&j);
    for (int i = 4; i < 7; i++) {
        ck_assert_int_eq(cv_store_job_get(S, ids[i], 0, &j), CV_STORE_OK);
        cv_store_job_free(&j);
    }
    /* by age: nothing is a minute old; everything finished is older than 0 ms after a pause */
    ck_assert_int_eq(cv_store_retain(S, -1, 60000, 100, &deleted), CV_STORE_OK);
    ck_assert_int_eq(deleted, 0);
    usleep(20000);
    ck_assert_int_eq(cv_store_retain(S, -1, 5, 100, &deleted), CV_STORE_OK);
    ck_assert_int_eq(deleted, 3);
    ck_assert_int_eq(cv_store_job_get(S, live, 0, &j), CV_STORE_OK);
    cv_store_job_free(&j);
    struct cv_store_event *out;
    size_t n;
    ck_assert_int_eq(cv_store_events_read(S, ids[6], -1, 0, &out, &n), CV_STORE_NOT_FOUND);
}
END_TEST

START_TEST(kernels_crud) {
    static const unsigned char b1[] = {1, 2, 3}, b2[] = {4, 5};
    ck_assert_int_eq(cv_store_kernel_put(S, "edge2", b1, 3, "{\"from_job\":\"j-1\"}", false),
                     CV_STORE_OK);
    ck_assert_int_eq(cv_store_kernel_put(S, "edge2", b2, 2, NULL, false), CV_STORE_EXISTS);
    ck_assert_int_eq(cv_store_kernel_put(S, "blur", b2, 2, NULL, false), CV_STORE_OK);
    struct cv_store_kernel k;
    ck_assert_int_eq(cv_store_kernel_get(S, "edge2", &k), CV_STORE_OK);
    ck_assert_int_eq(k.len, 3);
    ck_assert_int_eq(k.blob[2], 3);
    ck_assert_str_eq(k.meta_json, "{\"from_job\":\"j-1\"}");
    ck_assert(k.created_ms > 0);
    cv_store_kernel_free(&k);
    ck_assert_int_eq(cv_store_kernel_put(S, "edge2", b2, 2, NULL, true), CV_STORE_OK);
    ck_assert_int_eq(cv_store_kernel_get(S, "edge2", &k), CV_STORE_OK);
    ck_assert_int_eq(k.len, 2);
    ck_assert(k.meta_json == NULL);
    cv_store_kernel_free(&k);
    struct cv_store_kernel *list;
    size_t n;
    ck_assert_int_eq(cv_store_kernel_list(S, &list, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(list[0].name, "blur");
    ck_assert_str_eq(list[1].name, "edge2");
    ck_assert(list[0].blob == NULL);
    cv_store_kernels_free(list, n);
    ck_assert_int_eq(cv_store_kernel_delete(S, "blur"), CV_STORE_OK);
    ck_assert_int_eq(cv_store_kernel_delete(S, "blur"), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(cv_store_kernel_get(S, "blur", &k), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(cv_store_kernel_put(S, "", b1, 3, NULL, false), CV_STORE_INVALID);
}
END_TEST

struct notes {
    int queued, events, state, cancel;
    int64_t last_seq;
};

static void on_note(void *user, enum cv_store_note note, const char *job_id, int64_t seq) {
    struct notes *n = user;
    switch (note) {
    case CV_STORE_NOTE_QUEUED:
        n->queued++;
        break;
    case CV_STORE_NOTE_EVENTS:
        n->events++;
        n->last_seq = seq;
        break;
    case CV_STORE_NOTE_STATE:
        n->state++;
        break;
    case CV_STORE_NOTE_CANCEL:
        n->cancel++;
        break;
    }
}

/* In-process back ends notify synchronously; a remote one (pg) may fold or delay notes, so
 * this test checks only what every back end promises once the call has returned, with a bounded
 * wait for asynchronous listeners. */
START_TEST(notifications) {
    struct notes n = {0};
    cv_store_set_listener(S, on_note, &n);
    char id[40];
    insert_claimed(id, 60000);
    struct cv_store_event e[2] = {ev(0, "{}"), ev(1, "{}")};
    ck_assert_int_eq(append1(id, 1, e, 2), CV_STORE_OK);
    enum cv_store_job_status after;
    struct cv_store_event d = ev(2, "{}");
    struct cv_store_finish f = fin(CV_STORE_JOB_CANCELLED, &d, 1);
    ck_assert_int_eq(cv_store_job_cancel(S, id, &f, &after), CV_STORE_OK);
    for (int i = 0; i < 500 && (n.queued < 1 || n.events < 1 || n.cancel < 1); i++)
        usleep(10000);
    ck_assert_int_ge(n.queued, 1);
    ck_assert_int_ge(n.events, 1);
    ck_assert_int_eq(n.last_seq, 1);
    ck_assert_int_ge(n.cancel, 1);
    cv_store_set_listener(S, NULL, NULL);
}
END_TEST

/* ---- memory back end: bounded by bytes ------------------------------------------------------- */

START_TEST(memory_bounded_by_bytes) {
    struct cv_store_options o = cv_store_options_default();
    o.memory_max_bytes = 64 * 1024;
    struct cv_store *m = open_url("memory", &o);
    struct cv_store *keep = S;
    S = m;
    char first[40], id[40];
    finished_job(first);
    static char body[2000];
    memset(body, 'x', sizeof body - 1);
    for (int i = 0; i < 20; i++) /* 20 small finished jobs fit in the budget */
        finished_job(id);
    struct cv_store_job j;
    ck_assert_int_eq(cv_store_job_get(S, first, 0, &j), CV_STORE_OK);
    cv_store_job_free(&j);
    /* a running job's events fill the budget: finished jobs go first, then NOMEM */
    char live[40];
    insert(live, CV_STORE_JOB_RUNNING, "r1", 0);
    int st = CV_STORE_OK;
    int64_t seq = 0;
    for (int i = 0; i < 1000 && st == CV_STORE_OK; i++) {
        struct cv_store_event e = {seq, 0, body, sizeof body - 1};
        st = append1(live, 1, &e, 1);
        if (st == CV_STORE_OK)
            seq++;
    }
    ck_assert_int_eq(st, CV_STORE_NOMEM);
    ck_assert(seq > 10 && seq < 40);
    ck_assert_int_eq(cv_store_job_get(S, first, 0, &j), CV_STORE_NOT_FOUND);
    S = keep;
    cv_store_close(m);
}
END_TEST

/* ---- sqlite only ------------------------------------------------------------------------------
 */

START_TEST(sqlite_persists_and_locks) {
    char url[400];
    snprintf(url, sizeof url, "sqlite:%s/p.db", g_dir);
    struct cv_store *a = open_url(url, NULL);
    struct cv_store *keep = S;
    S = a;
    char id[40];
    finished_job(id);
    struct cv_store *b = NULL;
    ck_assert_int_eq(cv_store_open(url, NULL, &b), CV_STORE_LOCKED);
    ck_assert(b == NULL);
    ck_assert_msg(strstr(cv_store_errmsg(), "in use by another convd") != NULL, "%s",
                  cv_store_errmsg());
    cv_store_close(a);
    a = open_url(url, NULL); /* the lock went with the close */
    S = a;
    struct cv_store_job j;
    ck_assert_int_eq(cv_store_job_get(S, id, CV_STORE_LOAD_RESULT, &j), CV_STORE_OK);
    ck_assert_int_eq(j.status, CV_STORE_JOB_SUCCEEDED);
    ck_assert_str_eq(j.result, "{\"ok\":true}");
    cv_store_job_free(&j);
    S = keep;
    cv_store_close(a);
}
END_TEST

START_TEST(sqlite_refuses_newer_and_foreign) {
    char path[400], url[420];
    snprintf(path, sizeof path, "%s/n.db", g_dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    cv_store_close(open_url(url, NULL));
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "UPDATE schema_version SET version = 99", 0, 0, 0),
                     SQLITE_OK);
    sqlite3_close(db);
    struct cv_store *s = NULL;
    ck_assert_int_eq(cv_store_open(url, NULL, &s), CV_STORE_TOO_NEW);
    ck_assert(strstr(cv_store_errmsg(), "newer") != NULL);
    /* a database of someone else's */
    snprintf(path, sizeof path, "%s/other.db", g_dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE t(x)", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(cv_store_open(url, NULL, &s), CV_STORE_CORRUPT);
    /* not a database at all */
    snprintf(path, sizeof path, "%s/garbage.db", g_dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 4096; i++)
        fputc((i * 7919) & 0xff, f);
    fclose(f);
    ck_assert_int_eq(cv_store_open(url, NULL, &s), CV_STORE_CORRUPT);
    ck_assert(s == NULL);
    ck_assert_int_eq(cv_store_open("sqlite:", NULL, &s), CV_STORE_INVALID);
    ck_assert_int_eq(cv_store_open("bogus:x", NULL, &s), CV_STORE_INVALID);
}
END_TEST

/* ---- codec ------------------------------------------------------------------------------------
 */

static unsigned char *sample_blob(size_t *len) {
    struct cv_store_rec *r;
    ck_assert_int_eq(cv_store_rec_new(&r), CV_STORE_OK);
    struct cv_tensor t;
    ck_assert_int_eq(cv_tensor_init(&t, 1, 2, 3, 4), 0);
    for (int i = 0; i < 24; i++)
        t.data[i] = (float)i * 0.5f - 3;
    const double d[3] = {1.5, NAN, -2};
    ck_assert_int_eq(cv_store_rec_put_i64(r, 1, -42), CV_STORE_OK);
    ck_assert_int_eq(cv_store_rec_put_f64(r, 2, 0.1), CV_STORE_OK);
    ck_assert_int_eq(cv_store_rec_put_tensor(r, 3, &t), CV_STORE_OK);
    ck_assert_int_eq(cv_store_rec_put_f64s(r, 4, d, 3), CV_STORE_OK);
    ck_assert_int_eq(cv_store_rec_put_bytes(r, 5, "spec", 4), CV_STORE_OK);
    const float b[2] = {7, 8};
    ck_assert_int_eq(cv_store_rec_put_f32s(r, 6, b, 2), CV_STORE_OK);
    ck_assert_int_eq(cv_store_rec_put_f64s(r, 7, NULL, 0), CV_STORE_OK);
    cv_tensor_free(&t);
    size_t n;
    const unsigned char *p = cv_store_rec_bytes(r, &n);
    unsigned char *copy = malloc(n);
    memcpy(copy, p, n);
    *len = n;
    cv_store_rec_free(r);
    return copy;
}

START_TEST(codec_roundtrip) {
    size_t len;
    unsigned char *blob = sample_blob(&len);
    ck_assert_int_eq(blob[0], 'C');
    ck_assert_int_eq(blob[3], CV_STORE_CODEC_VERSION);
    struct cv_store_rec *r;
    ck_assert_int_eq(cv_store_rec_decode(blob, len, &r), CV_STORE_OK);
    int64_t i;
    double d;
    ck_assert_int_eq(cv_store_rec_get_i64(r, 1, &i), CV_STORE_OK);
    ck_assert_int_eq(i, -42);
    ck_assert_int_eq(cv_store_rec_get_f64(r, 2, &d), CV_STORE_OK);
    ck_assert(d == 0.1);
    struct cv_tensor t;
    ck_assert_int_eq(cv_store_rec_get_tensor(r, 3, &t), CV_STORE_OK);
    ck_assert(t.n == 1 && t.c == 2 && t.h == 3 && t.w == 4);
    ck_assert(t.data[23] == 23 * 0.5f - 3);
    cv_tensor_free(&t);
    double *a;
    int64_t n;
    ck_assert_int_eq(cv_store_rec_get_f64s(r, 4, &a, &n), CV_STORE_OK);
    ck_assert_int_eq(n, 3);
    ck_assert(a[0] == 1.5 && isnan(a[1]) && a[2] == -2);
    free(a);
    const void *p;
    size_t pn;
    ck_assert_int_eq(cv_store_rec_get_bytes(r, 5, &p, &pn), CV_STORE_OK);
    ck_assert(pn == 4 && memcmp(p, "spec", 4) == 0);
    float *f;
    ck_assert_int_eq(cv_store_rec_get_f32s(r, 6, &f, &n), CV_STORE_OK);
    ck_assert(n == 2 && f[1] == 8);
    free(f);
    ck_assert_int_eq(cv_store_rec_get_f64s(r, 7, &a, &n), CV_STORE_OK);
    ck_assert(n == 0 && a == NULL);
    ck_assert_int_eq(cv_store_rec_get_i64(r, 99, &i), CV_STORE_NOT_FOUND);
    ck_assert_int_eq(cv_store_rec_get_i64(r, 2, &i), CV_STORE_CORRUPT); /* wrong type */
    ck_assert_int_eq(cv_store_rec_put_i64(r, 9, 1), CV_STORE_INVALID);  /* read-only */
    cv_store_rec_free(r);
    free(blob);
}
END_TEST

static void put_u64le(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The fuzzer's find of last time: a header promising 1 GiB. It must be refused before any
 * allocation; RLIMIT_AS-free check: the decode must fail, fast, for every forged length. */
START_TEST(codec_forged_lengths_refused) {
    unsigned char b[8 + 13 + 32 + 4];
    memcpy(b, "CVR\x01", 4);
    b[4] = 1, b[5] = b[6] = b[7] = 0; /* one field */
    b[8] = 3, b[9] = b[10] = b[11] = 0;
    b[12] = CV_STORE_CODEC_TYPE_F32S;
    put_u64le(b + 13, 36);
    put_u64le(b + 21, 1 << 15); /* dims 32768 x 32768 x 1 x 1 = 4 GiB of floats */
    put_u64le(b + 29, 1 << 15);
    put_u64le(b + 37, 1);
    put_u64le(b + 45, 1);
    struct cv_store_rec *r = NULL;
    ck_assert_int_eq(cv_store_rec_decode(b, sizeof b, &r), CV_STORE_CORRUPT);
    ck_assert(r == NULL);
    put_u64le(b + 13, (uint64_t)1 << 30); /* payload length past the end */
    ck_assert_int_eq(cv_store_rec_decode(b, sizeof b, &r), CV_STORE_CORRUPT);
    put_u64le(b + 13, UINT64_MAX); /* overflow on off + n */
    ck_assert_int_eq(cv_store_rec_decode(b, sizeof b, &r), CV_STORE_CORRUPT);
    b[4] = 0xff, b[5] = 0xff, b[6] = 0xff, b[7] = 0x7f; /* 2^31 fields in 57 bytes */
    ck_assert_int_eq(cv_store_rec_decode(b, sizeof b, &r), CV_STORE_CORRUPT);
    /* f64s whose count promises more than its payload */
    unsigned char c[8 + 13 + 8];
    memcpy(c, "CVR\x01\x01\x00\x00\x00", 8);
    c[8] = 1, c[9] = c[10] = c[11] = 0;
    c[12] = CV_STORE_CODEC_TYPE_F64S;
    put_u64le(c + 13, 8);
    put_u64le(c + 21, (uint64_t)1 << 27);
    ck_assert_int_eq(cv_store_rec_decode(c, sizeof c, &r), CV_STORE_CORRUPT);
    ck_assert_int_eq(cv_store_rec_decode("CVR\x02\0\0\0\0", 8, &r), CV_STORE_CORRUPT);
    ck_assert_int_eq(cv_store_rec_decode("XXXX", 4, &r), CV_STORE_CORRUPT);
}
END_TEST

/* Every truncation and every single-byte change of a valid blob: decode either refuses it or
 * gives a record whose getters stay within what the blob holds. Deterministic (no RNG). */
START_TEST(codec_mutations_never_crash) {
    size_t len;
    unsigned char *blob = sample_blob(&len);
    unsigned char *m = malloc(len);
    for (size_t cut = 0; cut < len; cut++) {
        struct cv_store_rec *r = NULL;
        ck_assert_int_eq(cv_store_rec_decode(blob, cut, &r), CV_STORE_CORRUPT);
    }
    static const unsigned char vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    for (size_t pos = 0; pos < len; pos++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(m, blob, len);
            m[pos] = vals[v];
            struct cv_store_rec *r = NULL;
            if (cv_store_rec_decode(m, len, &r) != CV_STORE_OK)
                continue;
            struct cv_tensor t;
            if (cv_store_rec_get_tensor(r, 3, &t) == CV_STORE_OK) {
                ck_assert(cv_tensor_numel(&t) * 4 <= (int64_t)len);
                cv_tensor_free(&t);
            }
            double *a;
            int64_t n;
            if (cv_store_rec_get_f64s(r, 4, &a, &n) == CV_STORE_OK) {
                ck_assert(n * 8 <= (int64_t)len);
                free(a);
            }
            cv_store_rec_free(r);
        }
    }
    free(m);
    free(blob);
}
END_TEST

/* ---- suites ---------------------------------------------------------------------------------- */

static Suite *contract_suite(const char *name) {
    Suite *s = suite_create(name);
    TCase *tc = tcase_create("contract");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, insert_get_roundtrip);
    tcase_add_test(tc, claim_order_and_leases);
    tcase_add_test(tc, claim_many_queued_then_lapsed);
    tcase_add_test(tc, short_lease_expires);
    tcase_add_test(tc, events_fencing);
    tcase_add_test(tc, group_commit_items);
    tcase_add_test(tc, release_keeps_checkpoint);
    tcase_add_test(tc, cancel_paths);
    tcase_add_test(tc, list_filters_and_paging);
    tcase_add_test(tc, retention_by_count_and_age);
    tcase_add_test(tc, kernels_crud);
    tcase_add_test(tc, notifications);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *local_suite(void) {
    Suite *s = suite_create("store-local");
    TCase *tc = tcase_create("backends");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, memory_bounded_by_bytes);
    tcase_add_test(tc, sqlite_persists_and_locks);
    tcase_add_test(tc, sqlite_refuses_newer_and_foreign);
    suite_add_tcase(s, tc);
    TCase *codec = tcase_create("codec");
    tcase_set_timeout(codec, 60);
    tcase_add_test(codec, codec_roundtrip);
    tcase_add_test(codec, codec_forged_lengths_refused);
    tcase_add_test(codec, codec_mutations_never_crash);
    suite_add_tcase(s, codec);
    return s;
}

static int run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

int main(int argc, char **argv) {
    int failed = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            g_url = argv[i];
            failed += run(contract_suite(argv[i]));
        }
        return failed ? 1 : 0;
    }
    g_url = "memory";
    failed += run(contract_suite("store-memory"));
    g_url = "sqlite";
    failed += run(contract_suite("store-sqlite"));
    g_url = "memory";
    failed += run(local_suite());
    return failed ? 1 : 0;
}
