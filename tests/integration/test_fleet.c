/* A fleet of convd replicas on one PostgreSQL (issue 11): real convd processes and a private
 * PostgreSQL cluster per test (tests/support/pgtest.h), driven over HTTP and checked in the
 * database itself.
 *
 * - cross-replica: a job posted to A is found, followed and cancelled through B;
 * - kill -9 of the runner: the other replica resumes from the checkpoint, same final weights;
 * - SIGSTOP of the runner past its lease, then SIGCONT: the new owner's events alone survive;
 * - 300 small jobs posted alternately to both: each runs exactly once;
 * - SIGTERM of the runner (a rolling update): its waiting job is handed back at once, its
 *   training is checkpointed and released at the drain timeout; the other replica runs both;
 * - PostgreSQL stopped and started under load: 503 store_unavailable while down, no crash, no
 *   accepted job lost.
 *
 * Every wait is bounded and polls a condition (no timing assertions); a test that cannot start
 * PostgreSQL fails. */
#include <check.h>
#include <curl/curl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pgtest.h"

#define LEASE   "2" /* seconds: short, so takeovers happen quickly in tests */
#define WAIT_S  120 /* bound of every wait for a state (a loaded CI machine) */
#define N_SMALL 300

static struct cv_pgtest pg;
static struct cv_daemon rep[2];

/* The textbook's edge example (tests/integration/http_suite.c). */
static const char seed_x[] = "[[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],"
                             "[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1]]";

/* Starts replica i with `workers` workers and the given --drain-timeout (seconds, as text). */
static void start_replica_with(int i, const char *workers, const char *drain_timeout) {
    /* --job-history: retention must not delete the jobs a test counts */
    const char *args[] = {
        "--store",       pg.conninfo, "--lease",         LEASE,         "--checkpoint-every",
        "0.2",           "--workers", workers,           "--threads",   "1",
        "--job-history", "100000",    "--drain-timeout", drain_timeout, NULL};
    ck_assert_msg(cv_daemon_start(&rep[i], args, NULL) == 0, "replica %d did not start", i);
}

static void start_replica(int i) {
    start_replica_with(i, "2", "25");
}

static void pg_up(void) {
    memset(rep, 0, sizeof rep);
    ck_assert_msg(cv_pgtest_start(&pg, NULL) == 0, "cannot start PostgreSQL: FAIL (not a skip)");
}

static void fleet_up(void) {
    pg_up();
    start_replica(0);
    start_replica(1);
}

static void fleet_down(void) {
    for (int i = 0; i < 2; i++)
        if (rep[i].pid > 0) {
            kill(rep[i].pid, SIGCONT);
            cv_daemon_stop(&rep[i]);
        }
    cv_pgtest_free(&pg);
}

/* A deterministic training of `steps` steps on an h x h input with a 3x3 kernel. */
static char *train_body_sized(int h, long steps, int report_every) {
    int w = h, k = 3;
    size_t cap = (size_t)h * w * 8 + 256, len = 0;
    char *x = malloc(cap), *y = malloc(cap);
    ck_assert(x && y);
    x[len++] = '[';
    for (int i = 0; i < h; i++) {
        x[len++] = '[';
        for (int j = 0; j < w; j++)
            len += (size_t)snprintf(x + len, cap - len, "%s%.1f", j ? "," : "",
                                    (double)((i * 7 + j * 3) % 11) / 10.0);
        len += (size_t)snprintf(x + len, cap - len, "]%s", i + 1 < h ? "," : "]");
    }
    len = 0;
    y[len++] = '[';
    for (int i = 0; i < h - k + 1; i++) {
        y[len++] = '[';
        for (int j = 0; j < w - k + 1; j++)
            len += (size_t)snprintf(y + len, cap - len, "%s%.1f", j ? "," : "",
                                    (double)((i * 5 + j) % 7) / 10.0);
        len += (size_t)snprintf(y + len, cap - len, "]%s", i + 1 < h - k + 1 ? "," : "]");
    }
    char *body = cv_strdupf("{\"kind\":\"train\",\"input\":%s,\"target\":%s,\"kernel_size\":[3,3],"
                            "\"loss\":\"mse\",\"lr\":0.001,\"steps\":%ld,\"seed\":7,"
                            "\"report_every\":%d}",
                            x, y, steps, report_every);
    free(x);
    free(y);
    return body;
}

/* The same on 256x256: about 0.07 ms a step on one thread of the development machine, so
 * 100,000 steps (the --max-steps default) take ~7 s, and 20,000 steps ~1.4 s. */
static char *train_body(long steps, int report_every) {
    return train_body_sized(256, steps, report_every);
}

/* POST /jobs to replica i; returns the job id (malloc'd). A 503 queue_full (this replica holds
 * --queue jobs not yet claimed) is retried, as a client should after Retry-After. */
static char *post_job(int i, const char *body) {
    struct cv_reply r;
    double end = cv_now() + WAIT_S;
    for (;;) {
        ck_assert_int_eq(cv_post_json(&rep[i], "/jobs", body, &r), 0);
        if (r.status != 503 || strstr(r.body, "queue_full") == NULL || cv_now() > end)
            break;
        cv_reply_free(&r);
        cv_sleep_ms(50);
    }
    ck_assert_msg(r.status == 202, "POST /jobs -> %ld %s", r.status, r.body);
    json_t *j = cv_reply_json(&r);
    ck_assert(j != NULL);
    char *id = strdup(json_string_value(json_object_get(j, "id")));
    json_decref(j);
    cv_reply_free(&r);
    return id;
}

/* GET /jobs/{id} on replica i, parsed (json_decref it). */
static json_t *get_job(int i, const char *id) {
    char *path = cv_strdupf("/jobs/%s", id);
    struct cv_reply r;
    ck_assert_int_eq(cv_request(&rep[i], "GET", path, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 200, "GET %s on replica %d -> %ld %s", path, i, r.status, r.body);
    json_t *j = cv_reply_json(&r);
    ck_assert(j != NULL);
    cv_reply_free(&r);
    free(path);
    return j;
}

static bool terminal(const char *status) {
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

/* Waits until the job is terminal (asked of replica i); returns the job resource. */
static json_t *wait_terminal(int i, const char *id) {
    double end = cv_now() + WAIT_S;
    for (;;) {
        json_t *j = get_job(i, id);
        if (terminal(json_string_value(json_object_get(j, "status"))))
            return j;
        json_decref(j);
        ck_assert_msg(cv_now() < end, "job %s did not end within %d s", id, WAIT_S);
        cv_sleep_ms(50);
    }
}

/* A number from the database about job id: the SQL has one %s for the id (ids are ours:
 * "j-" + hex). */
static long long db_ll(const char *fmt, const char *id) {
    char *sql = cv_strdupf(fmt, id);
    long long v = cv_pgtest_query_ll(&pg, sql);
    free(sql);
    return v;
}

/* Waits until the SQL (one %s for the id) gives a number >= min. */
static long long wait_db(const char *fmt, const char *id, long long min, const char *what) {
    double end = cv_now() + WAIT_S;
    long long v;
    while ((v = db_ll(fmt, id)) < min) {
        ck_assert_msg(cv_now() < end, "%s: still %lld after %d s", what, v, WAIT_S);
        cv_sleep_ms(20);
    }
    return v;
}

/* Which replica (0 or 1) owns the job now, by the pid in its owner ("host:pid:random"). */
static int runner_of(const char *id) {
    char *sql = cv_strdupf("SELECT split_part(owner, ':', 2) FROM cv_jobs WHERE id = '%s'", id);
    char *pid = cv_pgtest_query(&pg, sql);
    free(sql);
    ck_assert(pid != NULL);
    long p = atol(pid);
    free(pid);
    for (int i = 0; i < 2; i++)
        if (rep[i].pid == p)
            return i;
    ck_abort_msg("job %s is owned by no replica (pid %ld)", id, p);
    return -1;
}

/* The final weights of a finished training, as text (exact comparison of the JSON numbers). */
static char *result_weights(json_t *job) {
    json_t *res = json_object_get(job, "result");
    ck_assert_msg(json_is_object(res), "no result");
    char *w = json_dumps(json_object_get(res, "weight"), JSON_COMPACT);
    char *b = json_dumps(json_object_get(res, "bias"), JSON_COMPACT);
    char *out = cv_strdupf("%s %s", w ? w : "?", b ? b : "?");
    free(w);
    free(b);
    return out;
}

/* The weights of an uninterrupted run of the same body (posted again, run to the end). */
static char *uninterrupted(int i, const char *body) {
    char *id = post_job(i, body);
    json_t *j = wait_terminal(i, id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    char *w = result_weights(j);
    json_decref(j);
    free(id);
    return w;
}

/* Events of a job are one gap-free log: 0..last_seq, one done event, as the last. */
static void check_log(const char *id) {
    long long last = db_ll("SELECT last_seq FROM cv_jobs WHERE id = '%s'", id);
    ck_assert_int_eq(db_ll("SELECT count(*) FROM cv_events WHERE job_id = '%s'", id), last + 1);
    ck_assert_int_eq(db_ll("SELECT max(seq) FROM cv_events WHERE job_id = '%s'", id), last);
    ck_assert_int_eq(db_ll("SELECT count(*) FROM cv_events WHERE job_id = '%s' AND "
                           "body LIKE '{\"event\":\"done\"%%'",
                           id),
                     1);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(cross_replica_get_events_delete) {
    /* a small job posted to A: B finds it, its result and its whole log */
    char *body = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", seed_x);
    char *id = post_job(0, body);
    json_t *j = wait_terminal(1, id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    json_decref(j);
    struct cv_stream s = {0};
    char *path = cv_strdupf("/jobs/%s/events", id);
    ck_assert_int_eq(cv_stream_get(&rep[1], path, NULL, 30, &s), 0);
    ck_assert_int_eq(s.status, 200);
    ck_assert_msg(s.n_nonblank >= 1 && strstr(s.lines[s.n_lines - 1].text, "\"done\""),
                  "the replay on B ends with done");
    cv_stream_free(&s);
    free(path);
    free(id);
    free(body);

    /* a long training: followed live on the replica that does NOT run it, then cancelled there */
    char *tb = train_body(100000, 50);
    id = post_job(0, tb);
    wait_db("SELECT count(*) FROM cv_jobs WHERE id = '%s' AND status = 1", id, 1, "running");
    int other = 1 - runner_of(id);
    struct cv_stream f = {.stop_after = 5};
    path = cv_strdupf("/jobs/%s/events", id);
    ck_assert_int_eq(cv_stream_get(&rep[other], path, NULL, 60, &f), 0);
    ck_assert_int_eq(f.status, 200);
    ck_assert_msg(f.n_nonblank >= 5, "5 live events followed on the other replica (got %d)",
                  f.n_nonblank);
    cv_stream_free(&f);
    struct cv_reply r;
    char *jpath = cv_strdupf("/jobs/%s", id);
    ck_assert_int_eq(cv_request(&rep[other], "DELETE", jpath, NULL, NULL, 0, 0, &r), 0);
    ck_assert_msg(r.status == 202, "DELETE on the other replica -> %ld %s", r.status, r.body);
    cv_reply_free(&r);
    j = wait_terminal(other, id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "cancelled");
    json_decref(j);
    check_log(id);
    free(jpath);
    free(path);
    free(id);
    free(tb);
}
END_TEST

START_TEST(kill9_runner_resumes_elsewhere) {
    char *tb = train_body(20000, 500);
    char *id = post_job(0, tb);
    /* a checkpoint exists: the runner is in the middle of the training */
    wait_db("SELECT count(*) FROM cv_checkpoints WHERE job_id = '%s'", id, 1, "a checkpoint");
    int runner = runner_of(id);
    int other = 1 - runner;
    kill(rep[runner].pid, SIGKILL);
    cv_daemon_wait(&rep[runner], 10);
    rep[runner].pid = 0;
    json_t *j = wait_terminal(other, id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "attempt")), 2);
    ck_assert_int_eq(db_ll("SELECT count(*) FROM cv_events WHERE job_id = '%s' AND "
                           "body LIKE '{\"event\":\"resumed\"%%'",
                           id),
                     1);
    check_log(id);
    char *resumed = result_weights(j);
    json_decref(j);
    char *clean = uninterrupted(other, tb);
    ck_assert_str_eq(resumed, clean);
    free(resumed);
    free(clean);
    free(id);
    free(tb);
}
END_TEST

START_TEST(paused_runner_is_fenced) {
    char *tb = train_body(20000, 100);
    char *id = post_job(0, tb);
    wait_db("SELECT count(*) FROM cv_checkpoints WHERE job_id = '%s'", id, 1, "a checkpoint");
    int runner = runner_of(id);
    ck_assert_int_eq(kill(rep[runner].pid, SIGSTOP), 0);
    /* the lease lapses; the other replica takes the job over and writes events of its own */
    wait_db("SELECT attempt FROM cv_jobs WHERE id = '%s'", id, 2, "takeover");
    wait_db("SELECT count(*) FROM cv_events WHERE job_id = '%s' AND attempt = 2", id, 2,
            "events of the new owner");
    ck_assert_int_eq(kill(rep[runner].pid, SIGCONT), 0);
    json_t *j = wait_terminal(1 - runner, id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    json_decref(j);
    /* after the first event of attempt 2, nothing of attempt 1 */
    char *sql = cv_strdupf("SELECT count(*) FROM cv_events WHERE job_id = '%s' AND attempt = 1 "
                           "AND seq > (SELECT min(seq) FROM cv_events WHERE job_id = '%s' "
                           "AND attempt = 2)",
                           id, id);
    ck_assert_int_eq(cv_pgtest_query_ll(&pg, sql), 0);
    free(sql);
    check_log(id);
    ck_assert_msg(cv_daemon_alive(&rep[runner]), "the paused replica survived its takeover");
    /* and it still serves the job from the store */
    j = get_job(runner, id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    json_decref(j);
    free(id);
    free(tb);
}
END_TEST

START_TEST(small_jobs_run_exactly_once) {
    char *body = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", seed_x);
    for (int n = 0; n < N_SMALL; n++) {
        char *id = post_job(n % 2, body);
        free(id);
    }
    double end = cv_now() + WAIT_S;
    while (cv_pgtest_query_ll(&pg, "SELECT count(*) FROM cv_jobs WHERE status >= 2") < N_SMALL) {
        ck_assert_msg(cv_now() < end, "300 jobs did not all end within %d s", WAIT_S);
        cv_sleep_ms(50);
    }
    ck_assert_int_eq(cv_pgtest_query_ll(&pg, "SELECT count(*) FROM cv_jobs WHERE status = 2"),
                     N_SMALL);
    ck_assert_int_eq(cv_pgtest_query_ll(&pg, "SELECT count(*) FROM cv_jobs WHERE attempt = 1"),
                     N_SMALL);
    ck_assert_int_eq(cv_pgtest_query_ll(&pg, "SELECT count(*) FROM cv_events WHERE "
                                             "body LIKE '{\"event\":\"done\"%'"),
                     N_SMALL);
    ck_assert_int_eq(cv_pgtest_query_ll(
                         &pg, "SELECT count(*) FROM (SELECT job_id FROM cv_events WHERE body "
                              "LIKE '{\"event\":\"done\"%' GROUP BY job_id HAVING count(*) > 1) d"),
                     0);
    long long owners = cv_pgtest_query_ll(&pg, "SELECT count(DISTINCT owner) FROM cv_jobs");
    fprintf(stderr, "small jobs: %d ran on %lld replica(s)\n", N_SMALL, owners);
    free(body);
}
END_TEST

START_TEST(postgres_restart_under_load) {
    char *body = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", seed_x);
    char *corr = cv_strdupf("{\"input\":%s,\"kernel\":[[1,-1]]}", seed_x);
    int accepted = 0, refused = 0;
    for (int n = 0; n < 40; n++) {
        free(post_job(n % 2, body));
        accepted++;
    }
    ck_assert_int_eq(cv_pgtest_stop(&pg, 'f'), 0);
    /* while it is down: POST /jobs 503 store_unavailable with Retry-After, /readyz 503,
       /corr2d still answers */
    bool saw_ready_503 = false;
    for (int n = 0; n < 20; n++) {
        struct cv_reply r;
        ck_assert_int_eq(cv_post_json(&rep[n % 2], "/jobs", body, &r), 0);
        ck_assert_msg(r.status == 503 || r.status == 202, "POST while down -> %ld", r.status);
        if (r.status == 503) {
            ck_assert_msg(strstr(r.body, "store_unavailable") != NULL, "%s", r.body);
            ck_assert_msg(r.retry_after[0] != '\0', "Retry-After on 503");
            refused++;
        } else {
            accepted++; /* cannot happen while it is down, but if it did, it must not be lost */
        }
        cv_reply_free(&r);
        struct cv_reply c;
        ck_assert_int_eq(cv_post_json(&rep[n % 2], "/corr2d", corr, &c), 0);
        ck_assert_int_eq(c.status, 200);
        cv_reply_free(&c);
        struct cv_reply q;
        ck_assert_int_eq(cv_request(&rep[n % 2], "GET", "/readyz", NULL, NULL, 0, 0, &q), 0);
        saw_ready_503 |= q.status == 503;
        cv_reply_free(&q);
        cv_sleep_ms(50);
    }
    ck_assert_msg(refused > 0, "no 503 while PostgreSQL was down");
    ck_assert_msg(saw_ready_503, "/readyz said ready while PostgreSQL was down");
    ck_assert_int_eq(cv_pgtest_restart(&pg), 0);
    /* back: new jobs are accepted again (after the reconnect backoff) */
    double end = cv_now() + WAIT_S;
    for (int i = 0; i < 2; i++) {
        for (;;) {
            struct cv_reply r;
            ck_assert_int_eq(cv_post_json(&rep[i], "/jobs", body, &r), 0);
            bool ok = r.status == 202;
            cv_reply_free(&r);
            if (ok) {
                accepted++;
                break;
            }
            ck_assert_msg(cv_now() < end, "replica %d still refuses jobs after the restart", i);
            cv_sleep_ms(100);
        }
    }
    /* nothing accepted is lost: every one ends succeeded */
    while (cv_pgtest_query_ll(&pg, "SELECT count(*) FROM cv_jobs WHERE status = 2") < accepted) {
        ck_assert_msg(cv_now() < end, "accepted jobs did not all succeed");
        cv_sleep_ms(50);
    }
    ck_assert_int_eq(cv_pgtest_query_ll(&pg, "SELECT count(*) FROM cv_jobs"), accepted);
    ck_assert(cv_daemon_alive(&rep[0]) && cv_daemon_alive(&rep[1]));
    free(body);
    free(corr);
}
END_TEST

/* Waits (bounded) until the daemon has exited, without reaping it, so its log can still be
 * read. False when it is still running after timeout_s. */
static bool wait_exited(const struct cv_daemon *d, double timeout_s) {
    double end = cv_now() + timeout_s;
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)d->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == d->pid)
            return true;
        if (cv_now() > end)
            return false;
        cv_sleep_ms(20);
    }
}

/* Where the log has a line with msg and the job's id (NULL: nowhere). */
static const char *log_find(const char *log, const char *msg, const char *id) {
    char *needle = cv_strdupf("\"msg\":\"%s\",\"job\":\"%s\"", msg, id);
    const char *hit = log != NULL ? strstr(log, needle) : NULL;
    free(needle);
    return hit;
}

/* A rolling update: SIGTERM to the replica that runs a long training, holds a claimed job that
 * waits for a worker and has accepted a job still queued. Nothing is cancelled: the waiting job
 * is handed back at once, the training is checkpointed and released when --drain-timeout
 * passes, the replica exits, and the other replica runs all three; the training resumes from
 * its checkpoint (attempt 2) and ends with the weights of an uninterrupted run. */
START_TEST(sigterm_hands_jobs_to_the_fleet) {
    /* A alone first, so that it and no other replica claims: one worker, drain timeout 1 s */
    start_replica_with(0, "1", "1");
    char *tb = train_body(100000, 1000); /* ~7 s here: cannot end within the 1 s drain */
    char *small = train_body_sized(16, 200, 50);
    char *t1 = post_job(0, tb);
    wait_db("SELECT count(*) FROM cv_jobs WHERE id = '%s' AND status = 1", t1, 1, "t1 running");
    char *t2 = post_job(0, small); /* claimed by A's dispatcher, waits for A's one worker */
    wait_db("SELECT count(*) FROM cv_jobs WHERE id = '%s' AND status = 1", t2, 1, "t2 claimed");
    char *t3 = post_job(0, small); /* A claims one waiting job per worker: this one stays queued */
    ck_assert_int_eq(runner_of(t1), 0);
    ck_assert_int_eq(runner_of(t2), 0);
    ck_assert_int_eq(db_ll("SELECT status FROM cv_jobs WHERE id = '%s'", t1), 1);
    ck_assert_int_eq(db_ll("SELECT status FROM cv_jobs WHERE id = '%s'", t3), 0);

    /* the update: A gets SIGTERM, B (the new replica) starts meanwhile */
    ck_assert_int_eq(kill(rep[0].pid, SIGTERM), 0);
    start_replica_with(1, "2", "25");
    /* A exits by itself: the drain timeout plus its 1.5 s grace, with a generous bound */
    ck_assert_msg(wait_exited(&rep[0], 60), "the drained replica did not exit");
    char *log = cv_daemon_log(&rep[0]);
    ck_assert(log != NULL);
    const char *timeout = strstr(log, "\"msg\":\"drain timeout");
    const char *rel1 = log_find(log, "job released to the queue", t1);
    const char *rel2 = log_find(log, "job released to the queue", t2);
    ck_assert_msg(timeout != NULL && rel1 != NULL && rel2 != NULL,
                  "the drain timed out and released both claimed jobs: %s", log);
    /* the waiting job went back at once; the running one kept its drain timeout */
    ck_assert_msg(rel2 < timeout && timeout < rel1, "release order: %s", log);
    ck_assert_msg(strstr(log, "left running") == NULL, "no job left to its lease: %s", log);
    free(log);
    int st = cv_daemon_wait(&rep[0], 10);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "A exited 0 (%d)", st);

    /* B runs everything: the training resumed at the step A checkpointed, the others once */
    json_t *j = wait_terminal(1, t1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "attempt")), 2);
    ck_assert_int_eq(runner_of(t1), 1);
    ck_assert_int_eq(db_ll("SELECT count(*) FROM cv_events WHERE job_id = '%s' AND attempt = 2 "
                           "AND body LIKE '{\"event\":\"resumed\",\"step\":%%' AND body NOT "
                           "LIKE '{\"event\":\"resumed\",\"step\":0,%%'",
                           t1),
                     1);
    check_log(t1);
    char *resumed = result_weights(j);
    json_decref(j);
    const char *const rest[] = {t2, t3};
    for (int k = 0; k < 2; k++) {
        j = wait_terminal(1, rest[k]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
        json_decref(j);
        ck_assert_int_eq(runner_of(rest[k]), 1);
        check_log(rest[k]);
    }
    char *clean = uninterrupted(1, tb);
    ck_assert_str_eq(resumed, clean);
    free(resumed);
    free(clean);
    free(t1);
    free(t2);
    free(t3);
    free(tb);
    free(small);
}
END_TEST

static Suite *fleet_suite(void) {
    Suite *s = suite_create("fleet");
    TCase *tc = tcase_create("fleet");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, fleet_up, fleet_down);
    tcase_add_test(tc, cross_replica_get_events_delete);
    tcase_add_test(tc, kill9_runner_resumes_elsewhere);
    tcase_add_test(tc, paused_runner_is_fenced);
    tcase_add_test(tc, small_jobs_run_exactly_once);
    tcase_add_test(tc, postgres_restart_under_load);
    suite_add_tcase(s, tc);
    /* replicas started by the test itself, with flags of their own */
    TCase *tu = tcase_create("rolling_update");
    tcase_set_timeout(tu, 600);
    tcase_add_checked_fixture(tu, pg_up, fleet_down);
    tcase_add_test(tu, sigterm_hands_jobs_to_the_fleet);
    suite_add_tcase(s, tu);
    return s;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(fleet_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? 0 : 1;
}
