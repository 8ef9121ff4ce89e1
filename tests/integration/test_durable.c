/* Durable jobs: real convd processes on real SQLite files (one mkdtemp directory per test),
 * killed and restarted. Restart keeps finished jobs and saved kernels; kill -9 mid-training
 * resumes from the checkpoint and ends equal to an uninterrupted run (once and twice);
 * --max-attempts; SIGTERM past the drain timeout; an orphaned /train ends process_lost; a full
 * disk (a small tmpfs) gives 503 and no crash; retention; the memory that 100k-step jobs leave
 * behind.
 *
 * No test waits on a clock to decide what happened: a kill waits until the database itself
 * holds a checkpoint (read with SQLite, as convd writes it), and every wait is bounded. */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_suite.h"

static char g_dir[256];   /* this test's directory */
static char g_store[420]; /* --store sqlite:g_dir/convd.db */
static char g_db[400];    /* the database file */
static bool g_mounted;    /* g_dir is a tmpfs of the test's own */

static void setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/convd-durable-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert(mkdtemp(g_dir) != NULL);
    snprintf(g_db, sizeof g_db, "%s/data/convd.db", g_dir);
    snprintf(g_store, sizeof g_store, "sqlite:%s", g_db);
    g_mounted = false;
}

static void teardown(void) {
    if (cv_d.pid > 0) {
        kill(cv_d.pid, SIGKILL);
        cv_daemon_wait(&cv_d, 10);
    }
    if (g_mounted)
        umount2(g_dir, MNT_DETACH);
    char *cmd = cv_strdupf("rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

/* Starts cv_d on this test's database with extra flags (NULL-terminated, may be NULL). */
static void start(const char *const *extra) {
    const char *args[32] = {"--store", g_store, "--max-steps", "1000000", "--checkpoint-every",
                            "0.05"};
    int n = 6;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    cv_fixture_start(args, NULL);
}

static void kill9(void) {
    ck_assert(cv_d.pid > 0);
    kill(cv_d.pid, SIGKILL);
    int st = cv_daemon_wait(&cv_d, 10);
    ck_assert_msg(st != -1 && WIFSIGNALED(st), "convd did not die of SIGKILL");
}

static void stop_ok(void) {
    cv_check_exit_ok(cv_daemon_stop(&cv_d), "on SIGTERM");
}

/* The latest checkpoint of a job as the database holds it: its step and the attempt that wrote
 * it; 0 and 0 when there is none yet. Read-only, so convd may go on writing. */
static void db_checkpoint(const char *id, int *step, int *attempt) {
    *step = *attempt = 0;
    sqlite3 *db;
    if (sqlite3_open_v2(g_db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT step, attempt FROM checkpoints WHERE job_id = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *step = sqlite3_column_int(st, 0);
            *attempt = sqlite3_column_int(st, 1);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

/* Waits (bounded) until the database holds a checkpoint of the job written by attempt with a
 * step past min_step. Returns that step. */
static int wait_checkpoint(const char *id, int attempt, int min_step) {
    double deadline = cv_now() + 60;
    for (;;) {
        int step, a;
        db_checkpoint(id, &step, &a);
        if (a == attempt && step > min_step)
            return step;
        ck_assert_msg(cv_now() < deadline, "no checkpoint of %s (attempt %d) past step %d in 60 s",
                      id, attempt, min_step);
        cv_sleep_ms(20);
    }
}

/* ~60000 steps of a 64x64 5x5 adam training (a few seconds): long enough to be killed in the
 * middle, with optimizer state that a resume must restore exactly. */
static char *long_job(void) {
    return cv_big_train_body(64, 64, 5, 60000,
                             ",\"kind\":\"train\",\"report_every\":1000,\"optimizer\":\"adam\"");
}

/* The job's events, replayed from the start (NDJSON). */
static json_t *events(const char *id) {
    struct cv_stream s = {0};
    char *path = cv_strdupf("/jobs/%s/events", id);
    ck_assert_int_eq(cv_stream_get(&cv_d, path, NULL, 60, &s), 0);
    ck_assert_int_eq(s.status, 200);
    json_t *ev = cv_ndjson_events(&s);
    cv_stream_free(&s);
    free(path);
    return ev;
}

static int count_events(json_t *ev, const char *name) {
    int n = 0;
    for (size_t i = 0; i < json_array_size(ev); i++)
        n += strcmp(cv_str(json_array_get(ev, i), "event"), name) == 0;
    return n;
}

/* Asserts that two learned weights (nested arrays of any rank) agree to rel 1e-6. */
static void check_same_weights(json_t *a, json_t *b, const char *what) {
    if (json_is_array(a)) {
        ck_assert_msg(json_is_array(b) && json_array_size(a) == json_array_size(b),
                      "%s: shapes differ", what);
        for (size_t i = 0; i < json_array_size(a); i++)
            check_same_weights(json_array_get(a, i), json_array_get(b, i), what);
        return;
    }
    ck_assert_msg(json_is_number(a) && json_is_number(b), "%s: not numbers", what);
    double x = json_number_value(a), y = json_number_value(b);
    ck_assert_msg(fabs(x - y) <= 1e-6 * fmax(fabs(y), 1e-30), "%s: %.9g vs %.9g", what, x, y);
}

/* The learned weight of a finished job's result (json_decref it). */
static json_t *result_weight(const char *id) {
    char *path = cv_strdupf("/jobs/%s", id);
    json_t *j = cv_get_ok(path, NULL);
    free(path);
    ck_assert_str_eq(cv_str(j, "status"), "succeeded");
    json_t *w = json_object_get(json_object_get(j, "result"), "weight");
    ck_assert_msg(w != NULL, "no result.weight");
    json_incref(w);
    json_decref(j);
    return w;
}

/* The reference: the same job, uninterrupted, on a memory store. */
static json_t *reference_weight(const char *body) {
    struct cv_daemon keep = cv_d;
    cv_fixture_start((const char *const[]){"--store", "memory", "--max-steps", "1000000", NULL},
                     NULL);
    char id[64];
    json_decref(cv_post_job(body, id));
    json_decref(cv_wait_job(id, NULL, 240));
    json_t *w = result_weight(id);
    stop_ok();
    cv_d = keep;
    return w;
}

/* ---- tests --------------------------------------------------------------------------------- */

START_TEST(restart_keeps_finished_jobs) {
    start(NULL);
    char *train = cv_big_train_body(8, 8, 3, 50, ",\"kind\":\"train\",\"report_every\":10");
    char *corr = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", cv_seed_x);
    char a[64], b[64];
    json_decref(cv_post_job(train, a));
    json_decref(cv_post_job(corr, b));
    json_t *ja = cv_wait_job(a, NULL, 60);
    json_t *jb = cv_wait_job(b, NULL, 60);
    json_t *ea = events(a);
    stop_ok();
    start(NULL);
    json_t *ja2 = cv_wait_job(a, NULL, 5);
    json_t *jb2 = cv_wait_job(b, NULL, 5);
    ck_assert_str_eq(cv_str(ja2, "status"), "succeeded");
    ck_assert_str_eq(cv_str(jb2, "status"), "succeeded");
    ck_assert_msg(json_equal(json_object_get(ja, "result"), json_object_get(ja2, "result")),
                  "the training's result changed across the restart");
    ck_assert_msg(json_equal(json_object_get(jb, "result"), json_object_get(jb2, "result")),
                  "the corr2d result changed across the restart");
    json_t *ea2 = events(a);
    ck_assert_msg(json_equal(ea, ea2), "the event log changed across the restart");
    ck_assert_int_eq(count_events(ea2, "step"), 5);
    json_t *list = cv_get_ok("/jobs", NULL);
    ck_assert_int_eq(json_array_size(json_object_get(list, "jobs")), 2);
    /* Last-Event-ID from before the restart still means the same place */
    static const char *const hdr[] = {"Last-Event-ID: 3", "Accept: text/event-stream", NULL};
    struct cv_stream s = {0};
    char *path = cv_strdupf("/jobs/%s/events", a);
    ck_assert_int_eq(cv_stream_get(&cv_d, path, hdr, 30, &s), 0);
    struct cv_sse_event ev[16];
    int n = cv_parse_sse(&s, ev, 16);
    ck_assert_int_eq(n, (int)json_array_size(ea) - 4);
    ck_assert_int_eq(ev[0].id, 4);
    for (int i = 0; i < n; i++)
        json_decref(ev[i].data);
    cv_stream_free(&s);
    free(path);
    json_decref(list);
    json_decref(ea);
    json_decref(ea2);
    json_decref(ja);
    json_decref(jb);
    json_decref(ja2);
    json_decref(jb2);
    free(train);
    free(corr);
    stop_ok();
}
END_TEST

/* kill -9 during a training, `kills` times, each after a checkpoint of the current attempt;
 * then it must end equal to the uninterrupted run, with one resumed event per kill. */
static void kill_and_resume(int kills) {
    char *body = long_job();
    json_t *ref = reference_weight(body);
    start(NULL);
    char id[64];
    json_decref(cv_post_job(body, id));
    int last_step = 0;
    for (int k = 1; k <= kills; k++) {
        last_step = wait_checkpoint(id, k, last_step);
        kill9();
        start(NULL);
    }
    json_t *j = cv_wait_job(id, "succeeded", 240);
    ck_assert_int_eq((int)cv_num(j, "attempt"), kills + 1);
    json_t *ev = events(id);
    ck_assert_int_eq(count_events(ev, "resumed"), kills);
    ck_assert_int_eq(count_events(ev, "done"), 1);
    ck_assert_int_eq(count_events(ev, "start"), 1);
    /* The resumed events name their attempt and a step a checkpoint held. */
    int seen = 0;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *e = json_array_get(ev, i);
        if (strcmp(cv_str(e, "event"), "resumed") != 0)
            continue;
        seen++;
        ck_assert_int_eq((int)cv_num(e, "attempt"), seen + 1);
        ck_assert_msg(cv_num(e, "step") > 0, "resumed from step 0: the checkpoint was not used");
    }
    json_t *last = cv_last_event(ev, "done");
    ck_assert_int_eq((int)cv_num(last, "steps"), 60000);
    json_t *w = result_weight(id);
    check_same_weights(w, ref, "resumed vs uninterrupted weight");
    char *lpath = cv_strdupf("/jobs/%s?include=losses", id); /* the resource leaves them out */
    json_t *full = cv_get_ok(lpath, NULL);
    free(lpath);
    json_t *losses = json_object_get(json_object_get(full, "result"), "losses");
    ck_assert_int_eq(json_array_size(losses), 60000);
    json_decref(full);
    json_decref(w);
    json_decref(ref);
    json_decref(ev);
    json_decref(j);
    free(body);
    stop_ok();
}

START_TEST(kill9_resumes_equal) {
    kill_and_resume(1);
}
END_TEST

START_TEST(kill9_twice_resumes_equal) {
    kill_and_resume(2);
}
END_TEST

START_TEST(max_attempts_fails_job) {
    char *body = long_job();
    start((const char *const[]){"--max-attempts", "1", NULL});
    char id[64];
    json_decref(cv_post_job(body, id));
    wait_checkpoint(id, 1, 0);
    kill9();
    start((const char *const[]){"--max-attempts", "1", NULL});
    json_t *j = cv_wait_job(id, "failed", 60);
    ck_assert_str_eq(cv_str(json_object_get(j, "error"), "code"), "too_many_attempts");
    json_t *ev = events(id);
    json_t *last = cv_last_event(ev, "error");
    ck_assert_str_eq(cv_str(last, "code"), "too_many_attempts");
    json_decref(ev);
    json_decref(j);
    free(body);
    stop_ok();
}
END_TEST

START_TEST(sigterm_past_drain_resumes) {
    char *body = long_job();
    json_t *ref = reference_weight(body);
    start((const char *const[]){"--drain-timeout", "0.1", NULL});
    char id[64];
    json_decref(cv_post_job(body, id));
    wait_checkpoint(id, 1, 0);
    stop_ok(); /* drain times out: the job is checkpointed and handed back */
    json_t *j = NULL;
    start(NULL);
    j = cv_wait_job(id, "succeeded", 240);
    ck_assert_int_eq((int)cv_num(j, "attempt"), 2);
    json_t *ev = events(id);
    ck_assert_int_eq(count_events(ev, "resumed"), 1);
    json_t *w = result_weight(id);
    check_same_weights(w, ref, "resumed after SIGTERM vs uninterrupted weight");
    json_decref(w);
    json_decref(ref);
    json_decref(ev);
    json_decref(j);
    free(body);
    stop_ok();
}
END_TEST

struct train_client {
    char *body;
    struct cv_stream s;
};

static void *train_thread(void *arg) {
    struct train_client *c = arg;
    cv_stream_post(&cv_d, "/train", NULL, c->body, 120, &c->s);
    return NULL;
}

START_TEST(orphaned_train_is_process_lost) {
    start(NULL);
    struct train_client c = {
        .body = cv_big_train_body(64, 64, 5, 1000000, ",\"stream\":true,\"report_every\":100")};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, train_thread, &c), 0);
    /* Wait until the /train job runs (it is listed), then kill the daemon under it. */
    char id[64] = "";
    double deadline = cv_now() + 60;
    while (id[0] == '\0') {
        json_t *l = cv_get_ok("/jobs?status=running", NULL);
        json_t *jobs = json_object_get(l, "jobs");
        if (json_array_size(jobs) > 0)
            snprintf(id, sizeof id, "%s", cv_str(json_array_get(jobs, 0), "id"));
        json_decref(l);
        ck_assert_msg(cv_now() < deadline, "the /train job never ran");
        if (id[0] == '\0')
            cv_sleep_ms(20);
    }
    kill9();
    pthread_join(th, NULL);
    cv_stream_free(&c.s);
    free(c.body);
    start(NULL);
    json_t *j = cv_wait_job(id, "cancelled", 60);
    ck_assert_str_eq(cv_str(json_object_get(j, "error"), "code"), "process_lost");
    json_decref(j);
    stop_ok();
}
END_TEST

START_TEST(retention_by_history_and_ttl) {
    start((const char *const[]){"--job-history", "3", NULL});
    char *corr = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", cv_seed_x);
    char ids[5][64];
    for (int i = 0; i < 5; i++) {
        json_decref(cv_post_job(corr, ids[i]));
        json_decref(cv_wait_job(ids[i], NULL, 30));
    }
    json_t *l = cv_get_ok("/jobs", NULL);
    ck_assert_int_eq(json_array_size(json_object_get(l, "jobs")), 3);
    json_decref(l);
    stop_ok();
    /* a restart keeps exactly those; then an age limit removes finished jobs, not live ones */
    start((const char *const[]){"--job-history", "3", "--job-ttl", "0.5", "--drain-timeout", "0.5",
                                NULL});
    char *endless = cv_big_train_body(64, 64, 5, 1000000, ",\"kind\":\"train\"");
    char run[64];
    json_decref(cv_post_job(endless, run));
    json_decref(cv_wait_job(run, "running", 30));
    double deadline = cv_now() + 60;
    for (;;) {
        l = cv_get_ok("/jobs", NULL);
        size_t n = json_array_size(json_object_get(l, "jobs"));
        json_decref(l);
        if (n == 1)
            break;
        ck_assert_msg(cv_now() < deadline, "--job-ttl 0.5 left %zu jobs after 60 s", n);
        cv_sleep_ms(100);
    }
    for (int i = 0; i < 5; i++) {
        struct cv_reply r;
        char *p = cv_strdupf("/jobs/%s", ids[i]);
        ck_assert_int_eq(cv_request(&cv_d, "GET", p, NULL, NULL, 0, 0, &r), 0);
        ck_assert_int_eq(r.status, 404);
        cv_reply_free(&r);
        free(p);
    }
    json_t *j = cv_wait_job(run, "running", 5);
    json_decref(j);
    free(corr);
    free(endless);
    stop_ok();
}
END_TEST

/* Saved kernels live in the store: one saved by weight (and one with the longest name the API
 * allows) is listed and used by name after a restart on the same database, with the exact
 * reply, and a DELETE after the restart removes it. */
START_TEST(restart_keeps_saved_kernels) {
    static const char long_name[] =
        "k123456789012345678901234567890123456789012345678901234567890123";
    ck_assert_int_eq((int)strlen(long_name), 64);
    start(NULL);
    struct cv_reply r;
    ck_assert_int_eq(
        cv_post_json(&cv_d, "/kernels", "{\"name\":\"my_k\",\"weight\":[[0,1],[2,3]]}", &r), 0);
    ck_assert_int_eq(r.status, 201);
    ck_assert_str_eq(r.location, "/kernels/my_k");
    cv_reply_free(&r);
    char *body = cv_strdupf("{\"name\":\"%s\",\"weight\":[[[1,-1]]]}", long_name);
    ck_assert_int_eq(cv_post_json(&cv_d, "/kernels", body, &r), 0);
    ck_assert_int_eq(r.status, 201);
    cv_reply_free(&r);
    free(body);
    stop_ok();
    start(NULL);
    static const char corr[] = "{\"input\":[[0,1,2],[3,4,5],[6,7,8]],\"kernel\":\"my_k\"}";
    ck_assert_int_eq(cv_post_json(&cv_d, "/corr2d", corr, &r), 0);
    ck_assert_int_eq(r.status, 200);
    size_t n = r.body_len; /* the reply ends with a newline */
    while (n > 0 && (r.body[n - 1] == '\n' || r.body[n - 1] == '\r'))
        n--;
    r.body[n] = '\0';
    ck_assert_str_eq(r.body, "{\"output\":[[19,25],[37,43]]}");
    cv_reply_free(&r);
    json_t *list = cv_get_ok("/kernels", NULL);
    json_t *ks = json_object_get(list, "kernels");
    json_t *mine = NULL, *longk = NULL;
    for (size_t i = 0; i < json_array_size(ks); i++) {
        json_t *k = json_array_get(ks, i);
        const char *name = json_string_value(json_object_get(k, "name"));
        if (name && strcmp(name, "my_k") == 0)
            mine = k;
        if (name && strcmp(name, long_name) == 0)
            longk = k;
    }
    ck_assert_msg(mine != NULL, "GET /kernels lost my_k across the restart");
    ck_assert_msg(longk != NULL, "GET /kernels lost the 64-byte name across the restart");
    ck_assert(json_is_false(json_object_get(mine, "builtin")));
    json_t *want = json_loads("[[0,1],[2,3]]", 0, NULL);
    ck_assert_msg(json_equal(json_object_get(mine, "kernel"), want), "my_k's values changed");
    json_decref(want);
    want = json_loads("[[[1,-1]]]", 0, NULL);
    ck_assert_msg(json_equal(json_object_get(longk, "kernel"), want), "the rank-3 kernel changed");
    json_decref(want);
    json_decref(list);
    ck_assert_int_eq(cv_request(&cv_d, "DELETE", "/kernels/my_k", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 204);
    cv_reply_free(&r);
    stop_ok();
    start(NULL);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/kernels/my_k", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 404);
    cv_reply_free(&r);
    stop_ok();
}
END_TEST

/* Writes zeros to path until the file system is full. */
static void fill_disk(const char *path) {
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    static char block[65536];
    for (int i = 0; i < 100000; i++)
        if (fwrite(block, 1, sizeof block, f) != sizeof block)
            break;
    fflush(f);
    fclose(f);
}

START_TEST(full_disk_gives_503) {
    /* A small tmpfs of our own (CI runs as root; no skipping: a failure to mount fails). */
    ck_assert_msg(mount("tmpfs", g_dir, "tmpfs", 0, "size=16m,mode=0700") == 0,
                  "cannot mount a tmpfs on %s: %s (this test needs root)", g_dir, strerror(errno));
    g_mounted = true;
    start(NULL);
    char *small = cv_strdupf("{\"kind\":\"corr2d\",\"input\":%s,\"kernel\":[[1,-1]]}", cv_seed_x);
    char before[64];
    json_decref(cv_post_job(small, before));
    json_decref(cv_wait_job(before, NULL, 30));
    char *filler = cv_strdupf("%s/filler", g_dir);
    fill_disk(filler);
    /* A job with a 0.5 MB request cannot be stored now. */
    char *big = cv_big_train_body(256, 256, 3, 10, ",\"kind\":\"train\"");
    struct cv_reply r;
    ck_assert_int_eq(cv_post_json(&cv_d, "/jobs", big, &r), 0);
    json_decref(cv_check_problem(&r, 503, "store_unavailable", NULL));
    ck_assert_msg(r.retry_after[0] != '\0', "503 without Retry-After");
    cv_reply_free(&r);
    ck_assert_int_eq(cv_request(&cv_d, "GET", "/readyz", NULL, NULL, 0, 0, &r), 0);
    ck_assert_int_eq(r.status, 503);
    cv_reply_free(&r);
    /* /corr2d does not need the store */
    json_t *c = cv_post_ok("/corr2d", "{\"input\":[[1,2],[3,4]],\"kernel\":[[1]]}");
    json_decref(c);
    /* what was stored is still served */
    json_decref(cv_wait_job(before, NULL, 5));
    ck_assert(cv_daemon_alive(&cv_d));
    /* room again: ready again, and jobs are taken */
    unlink(filler);
    double deadline = cv_now() + 30;
    for (;;) {
        ck_assert_int_eq(cv_request(&cv_d, "GET", "/readyz", NULL, NULL, 0, 0, &r), 0);
        long st = r.status;
        cv_reply_free(&r);
        if (st == 200)
            break;
        ck_assert_msg(cv_now() < deadline, "/readyz still %ld 30 s after the disk had room", st);
        cv_sleep_ms(100);
    }
    char after[64];
    json_decref(cv_post_job(big, after));
    json_t *j = cv_wait_job(after, "succeeded", 60);
    json_decref(j);
    free(filler);
    free(small);
    free(big);
    stop_ok();
}
END_TEST

/* The RSS of a process in kB, from /proc. */
static long rss_kb(pid_t pid) {
    char *path = cv_strdupf("/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    free(path);
    ck_assert(f != NULL);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

START_TEST(finished_jobs_leave_memory_flat) {
    start((const char *const[]){"--checkpoint-every", "1", NULL});
    /* The case: a 3x3 input, 100000 steps, every step reported. */
    static const char body[] = "{\"kind\":\"train\",\"input\":[[1,2,3],[4,5,6],[7,8,9]],"
                               "\"target\":[[1,2],[3,4]],\"kernel_size\":[2,2],\"lr\":0.001,"
                               "\"steps\":100000,\"report_every\":1}";
    enum { JOBS = 10 };
    char ids[JOBS][64];
    for (int i = 0; i < JOBS; i++)
        json_decref(cv_post_job(body, ids[i]));
    for (int i = 0; i < JOBS; i++) {
        json_t *j = cv_wait_job(ids[i], "succeeded", 600);
        json_decref(j);
    }
    long kb = rss_kb(cv_d.pid);
    ck_assert_msg(kb > 0 && kb < 100 * 1024, "RSS %ld kB after %d finished 100k-step jobs", kb,
                  JOBS);
    /* and the logs are whole, from the store */
    json_t *ev = events(ids[JOBS - 1]);
    ck_assert_int_eq(json_array_size(ev), 100002);
    json_decref(ev);
    stop_ok();
}
END_TEST

int main(void) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return EXIT_FAILURE;
    Suite *s = suite_create("durable");
    TCase *tc = tcase_create("restart");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, restart_keeps_finished_jobs);
    tcase_add_test(tc, restart_keeps_saved_kernels);
    tcase_add_test(tc, kill9_resumes_equal);
    tcase_add_test(tc, kill9_twice_resumes_equal);
    tcase_add_test(tc, max_attempts_fails_job);
    tcase_add_test(tc, sigterm_past_drain_resumes);
    tcase_add_test(tc, orphaned_train_is_process_lost);
    tcase_add_test(tc, retention_by_history_and_ttl);
    tcase_add_test(tc, full_disk_gives_503);
    tcase_add_test(tc, finished_jobs_leave_memory_flat);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
