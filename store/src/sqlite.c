/* The SQLite back end: one database file for one process.
 *
 * - A lock file PATH.lock held with flock(LOCK_EX|LOCK_NB) for the life of the store: a second
 *   convd on the same database gets CV_STORE_LOCKED (like Prometheus' data directory lock), so it
 *   can never take the first one's running jobs for orphans. The kernel drops the lock when the
 *   process dies, even by kill -9.
 * - WAL mode: readers never block the writer. One writer connection (writes serialize in SQLite
 *   anyway) guarded by wmu; a small pool of reader connections for the HTTP threads.
 * - synchronous=NORMAL (a commit survives a process crash) or FULL (--store-sync full: also
 *   power loss); busy_timeout on every connection.
 * - Every statement is a constant string prepared once per connection (SQLITE_PREPARE_PERSISTENT)
 *   and bound with sqlite3_bind_*: nothing from a request is ever pasted into SQL.
 * - schema_version holds the schema; open migrates older ones in one transaction and refuses
 *   a newer one.
 * - Disk full, I/O errors and busy past the timeout map to CV_STORE_UNAVAILABLE; a transaction
 *   that fails is rolled back, so nothing is half-written. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_impl.h"

/* ---- statements ---------------------------------------------------------------------------- */

#define JOB_COLS                                                                                   \
    "id,kind,status,resumable,attempt,owner,lease_until,cancel_requested,created,started,"         \
    "finished,step,steps,loss,elapsed_ms,last_seq,name,labels,params,error_code,error_detail,"     \
    "request,result"
enum { COL_REQUEST = 21, COL_RESULT = 22 };

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_PING,
    S_JOB_INSERT,
    S_JOB_GET,
    S_JOB_STATE, /* attempt, status, last_seq for fencing */
    S_JOB_LIST,
    S_JOB_COUNT,
    S_CLAIM,
    S_RENEW,
    S_ORPHAN,
    S_RELEASE,
    S_FINISH,
    S_CANCEL_FLAG,
    S_JOB_DELETE,
    S_EV_INSERT,
    S_EV_DELETE,
    S_EV_READ,
    S_LAST_SEQ,
    S_PROGRESS,
    S_CKPT_PUT,
    S_CKPT_GET,
    S_CKPT_DELETE,
    S_RETAIN_PICK,
    S_K_PUT,
    S_K_INSERT,
    S_K_GET,
    S_K_LIST,
    S_K_DELETE,
    S_TOUCH,
    S_COUNT
};

static const char *const sql_text[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_PING] = "SELECT version FROM schema_version",
    [S_JOB_INSERT] =
        "INSERT INTO jobs(id,kind,status,resumable,attempt,owner,lease_until,"
        "created,started,step,steps,loss,elapsed_ms,last_seq,name,labels,params,"
        "request) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,-1,?14,?15,?16,?17)",
    [S_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [S_JOB_STATE] = "SELECT attempt, status, last_seq FROM jobs WHERE id = ?1",
    [S_JOB_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE (?1 < 0 OR status = ?1) "
                   "AND (?2 IS NULL OR name = ?2) "
                   "AND (?3 IS NULL OR json_extract(labels, '$.\"' || ?3 || '\"') = ?4) "
                   "AND (?5 IS NULL OR rowid < (SELECT rowid FROM jobs WHERE id = ?5)) "
                   "ORDER BY rowid DESC LIMIT ?6",
    [S_JOB_COUNT] = "SELECT count(*) FROM jobs WHERE ?1 < 0 OR status = ?1",
    /* One statement: pick the oldest queued job (else the oldest running one whose lease
     * expired), take it, and return it. */
    [S_CLAIM] = "UPDATE jobs SET status = 1, owner = ?2, attempt = attempt + 1, lease_until = ?3, "
                "started = CASE WHEN started = 0 THEN ?1 ELSE started END "
                "WHERE rowid = (SELECT rowid FROM jobs WHERE status = 0 OR "
                "(status = 1 AND lease_until < ?1) ORDER BY status, rowid LIMIT 1) "
                "RETURNING " JOB_COLS,
    [S_RENEW] = "UPDATE jobs SET lease_until = ?4 WHERE id = ?1 AND attempt = ?2 AND owner = ?3 "
                "AND status = 1 RETURNING cancel_requested",
    [S_ORPHAN] = "UPDATE jobs SET lease_until = 0 WHERE status = 1 AND (?1 IS NULL OR owner = ?1)",
    [S_RELEASE] = "UPDATE jobs SET status = 0, owner = '', lease_until = 0 "
                  "WHERE id = ?1 AND attempt = ?2 AND status = 1",
    [S_FINISH] = "UPDATE jobs SET status = ?2, finished = ?3, result = ?4, error_code = ?5, "
                 "error_detail = ?6, step = ?7, loss = ?8, elapsed_ms = ?9, lease_until = 0 "
                 "WHERE id = ?1",
    [S_CANCEL_FLAG] = "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 1",
    [S_JOB_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [S_EV_INSERT] = "INSERT INTO events(job_id, seq, attempt, body) VALUES(?1, ?2, ?3, ?4)",
    [S_EV_DELETE] = "DELETE FROM events WHERE job_id = ?1",
    [S_EV_READ] = "SELECT seq, attempt, body FROM events WHERE job_id = ?1 AND seq > ?2 "
                  "ORDER BY seq LIMIT ?3",
    [S_LAST_SEQ] = "UPDATE jobs SET last_seq = ?2 WHERE id = ?1",
    [S_PROGRESS] = "UPDATE jobs SET step = ?2, loss = ?3, elapsed_ms = ?4 WHERE id = ?1",
    [S_CKPT_PUT] = "INSERT INTO checkpoints(job_id, step, attempt, blob) VALUES(?1, ?2, ?3, ?4) "
                   "ON CONFLICT(job_id) DO UPDATE SET step = excluded.step, "
                   "attempt = excluded.attempt, blob = excluded.blob",
    [S_CKPT_GET] = "SELECT step, attempt, blob FROM checkpoints WHERE job_id = ?1",
    [S_CKPT_DELETE] = "DELETE FROM checkpoints WHERE job_id = ?1",
    [S_RETAIN_PICK] =
        "SELECT id FROM jobs WHERE status >= 2 AND ((?1 > 0 AND finished < ?2) OR (?3 >= 0 AND "
        "rowid <= (SELECT rowid FROM jobs WHERE status >= 2 ORDER BY rowid DESC LIMIT 1 "
        "OFFSET ?3))) ORDER BY rowid LIMIT ?4",
    [S_K_PUT] = "INSERT INTO kernels(name, created, meta, blob) VALUES(?1, ?2, ?3, ?4) "
                "ON CONFLICT(name) DO UPDATE SET created = excluded.created, "
                "meta = excluded.meta, blob = excluded.blob",
    [S_K_INSERT] = "INSERT INTO kernels(name, created, meta, blob) VALUES(?1, ?2, ?3, ?4) "
                   "ON CONFLICT(name) DO NOTHING",
    [S_K_GET] = "SELECT name, created, meta, blob FROM kernels WHERE name = ?1",
    [S_K_LIST] = "SELECT name, created, meta FROM kernels ORDER BY name",
    [S_K_DELETE] = "DELETE FROM kernels WHERE name = ?1",
    [S_TOUCH] = "UPDATE schema_version SET version = version",
};

/* Schema migrations: migrations[v] takes a database from version v to v + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE jobs("
    " id TEXT NOT NULL UNIQUE, kind INTEGER NOT NULL, status INTEGER NOT NULL,"
    " resumable INTEGER NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,"
    " owner TEXT NOT NULL DEFAULT '', lease_until INTEGER NOT NULL DEFAULT 0,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
    " started INTEGER NOT NULL DEFAULT 0, finished INTEGER NOT NULL DEFAULT 0,"
    " step INTEGER NOT NULL DEFAULT 0, steps INTEGER NOT NULL DEFAULT 0, loss REAL,"
    " elapsed_ms REAL, last_seq INTEGER NOT NULL DEFAULT -1, name TEXT, labels TEXT,"
    " params TEXT, error_code TEXT NOT NULL DEFAULT '', error_detail TEXT NOT NULL DEFAULT '',"
    " request BLOB, result TEXT);"
    "CREATE INDEX jobs_status ON jobs(status);"
    "CREATE INDEX jobs_finished ON jobs(finished) WHERE status >= 2;"
    "CREATE TABLE events(job_id TEXT NOT NULL, seq INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    " body TEXT NOT NULL, PRIMARY KEY(job_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE checkpoints(job_id TEXT PRIMARY KEY, step INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL, blob BLOB NOT NULL);"
    "CREATE TABLE kernels(name TEXT PRIMARY KEY, created INTEGER NOT NULL, meta TEXT,"
    " blob BLOB NOT NULL);",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

/* ---- connections --------------------------------------------------------------------------- */

struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT]; /* prepared lazily, kept for the connection's life */
    bool busy;                 /* a reader in use (guarded by the pool's mutex) */
};

#define N_READERS 4

struct sstore {
    struct cv_store base;
    char path[4096];
    int lock_fd;
    pthread_mutex_t wmu; /* guards writer and write_failed */
    struct conn writer;
    bool write_failed;   /* the last write failed for lack of space / I/O: ping retries one */
    pthread_mutex_t rmu; /* guards readers[].busy */
    pthread_cond_t rcond;
    struct conn readers[N_READERS];
};

#define S(s) ((struct sstore *)(s))

/* Maps an SQLite result code to a store status, recording the reason. */
static int fail_db(sqlite3 *db, int rc, const char *what) {
    int st;
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        st = CV_STORE_NOMEM;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        st = CV_STORE_CORRUPT;
        break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        st = CV_STORE_INVALID;
        break;
    default: /* FULL, IOERR, BUSY, LOCKED, CANTOPEN, READONLY, PROTOCOL, ... */
        st = CV_STORE_UNAVAILABLE;
        break;
    }
    return cv__store_fail(st, "sqlite: %s (%s)", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                          what);
}

static sqlite3_stmt *get_stmt(struct conn *c, enum stmt_id id, int *rc) {
    if (c->st[id] == NULL) {
        *rc = sqlite3_prepare_v3(c->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
                                 NULL);
        if (*rc != SQLITE_OK)
            return NULL;
    }
    sqlite3_reset(c->st[id]);
    sqlite3_clear_bindings(c->st[id]);
    *rc = SQLITE_OK;
    return c->st[id];
}

/* Prepares (once) and resets statement id on c. Returns a store status; *q is the statement on
 * success (borrowed from c). */
static int prepare(struct conn *c, enum stmt_id id, sqlite3_stmt **q) {
    int rc;
    *q = get_stmt(c, id, &rc);
    return *q != NULL ? CV_STORE_OK : fail_db(c->db, rc, "prepare");
}

static void conn_close(struct conn *c) {
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close_v2(c->db);
    memset(c, 0, sizeof *c);
}

static int conn_open(struct conn *c, const char *path, const struct cv_store_options *o,
                     bool writer) {
    memset(c, 0, sizeof *c);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int st = fail_db(c->db, rc, "open");
        conn_close(c);
        return st;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, o->busy_timeout_ms);
    const char *pragmas = o->sync == CV_STORE_SYNC_FULL
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                " PRAGMA journal_size_limit=8388608;"
                                " PRAGMA foreign_keys=OFF;"
                              : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                " PRAGMA journal_size_limit=8388608;"
                                " PRAGMA foreign_keys=OFF;";
    rc = sqlite3_exec(c->db, pragmas, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int st = fail_db(c->db, rc, "pragmas");
        conn_close(c);
        return st;
    }
    return CV_STORE_OK;
}

static struct conn *reader_take(struct sstore *ss) {
    pthread_mutex_lock(&ss->rmu);
    for (;;) {
        for (int i = 0; i < N_READERS; i++) {
            if (!ss->readers[i].busy) {
                ss->readers[i].busy = true;
                pthread_mutex_unlock(&ss->rmu);
                return &ss->readers[i];
            }
        }
        pthread_cond_wait(&ss->rcond, &ss->rmu);
    }
}

static void reader_give(struct sstore *ss, struct conn *c) {
    pthread_mutex_lock(&ss->rmu);
    c->busy = false;
    pthread_cond_signal(&ss->rcond);
    pthread_mutex_unlock(&ss->rmu);
}

/* Takes a reader connection and prepares statement id on it. On success the caller binds and
 * steps *q, then calls reader_end; on failure the reader is already given back. */
static int reader_begin(struct sstore *ss, enum stmt_id id, struct conn **c, sqlite3_stmt **q) {
    *c = reader_take(ss);
    int st = prepare(*c, id, q);
    if (st != CV_STORE_OK)
        reader_give(ss, *c);
    return st;
}

/* Resets q and gives its reader connection c back. */
static void reader_end(struct sstore *ss, struct conn *c, sqlite3_stmt *q) {
    sqlite3_reset(q);
    reader_give(ss, c);
}

/* ---- transactions on the writer ------------------------------------------------------------- */

static int exec_stmt(struct conn *c, enum stmt_id id) {
    int rc;
    sqlite3_stmt *st = get_stmt(c, id, &rc);
    if (st == NULL)
        return rc;
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Takes wmu and begins a write transaction. Returns a store status; on failure wmu is
 * released. */
static int wbegin(struct sstore *ss) {
    pthread_mutex_lock(&ss->wmu);
    int rc = exec_stmt(&ss->writer, S_BEGIN);
    if (rc != SQLITE_OK) {
        int st = fail_db(ss->writer.db, rc, "BEGIN");
        pthread_mutex_unlock(&ss->wmu);
        return st;
    }
    return CV_STORE_OK;
}

/* Commits (st == OK) or rolls back, and releases wmu. Returns the final status. */
static int wend(struct sstore *ss, int st) {
    if (st == CV_STORE_OK) {
        int rc = exec_stmt(&ss->writer, S_COMMIT);
        if (rc != SQLITE_OK)
            st = fail_db(ss->writer.db, rc, "COMMIT");
    }
    if (st != CV_STORE_OK && !sqlite3_get_autocommit(ss->writer.db))
        exec_stmt(&ss->writer, S_ROLLBACK);
    if (st == CV_STORE_UNAVAILABLE)
        ss->write_failed = true;
    else if (st == CV_STORE_OK)
        ss->write_failed = false;
    pthread_mutex_unlock(&ss->wmu);
    return st;
}

/* wbegin, then prepares statement id on the writer. On failure the transaction is rolled back
 * and wmu released; on success the caller binds and steps *q and ends with wend. */
static int wbegin_stmt(struct sstore *ss, enum stmt_id id, sqlite3_stmt **q) {
    int st = wbegin(ss);
    if (st == CV_STORE_OK && (st = prepare(&ss->writer, id, q)) != CV_STORE_OK)
        st = wend(ss, st);
    return st;
}

/* Steps q to its first row. Returns OK on a row (its columns are readable until q is reset);
 * NOT_FOUND with the message not_found when there is none (with not_found NULL, no row is a
 * database error); else the mapped error, with what in the message. */
static int step_row(struct conn *c, sqlite3_stmt *q, const char *not_found, const char *what) {
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        return CV_STORE_OK;
    if (rc == SQLITE_DONE && not_found != NULL)
        return cv__store_fail(CV_STORE_NOT_FOUND, "%s", not_found);
    return fail_db(c->db, rc, what);
}

/* Runs a prepared write statement to completion. */
static int step_done(struct conn *c, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int s = fail_db(c->db, rc, what);
        sqlite3_reset(st);
        return s;
    }
    sqlite3_reset(st);
    return CV_STORE_OK;
}

/* prepare, returning its failure from the calling function. */
#define PREP(c, id, out)                                                                           \
    do {                                                                                           \
        int st_ = prepare((c), (id), &(out));                                                      \
        if (st_ != CV_STORE_OK)                                                                    \
            return st_;                                                                            \
    } while (0)

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
    if (s == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void bind_real_or_null(sqlite3_stmt *st, int i, double v) {
    if (isnan(v))
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_double(st, i, v);
}

static double column_real_or_nan(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* Makes room for element count in the array a of *cap elements of size bytes, doubling the
 * capacity from first. Returns the array (a, or its reallocation, *cap updated), or NULL when out
 * of memory: a is then unchanged and still the caller's. */
static void *grow(void *a, size_t *cap, size_t count, size_t size, size_t first) {
    if (count < *cap)
        return a;
    size_t ncap = *cap ? 2 * *cap : first;
    void *b = realloc(a, ncap * size);
    if (b != NULL)
        *cap = ncap;
    return b;
}

/* ---- row decoding ---------------------------------------------------------------------------- */

static bool dup_col_text(sqlite3_stmt *st, int i, char **dst) {
    *dst = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return true;
    const unsigned char *t = sqlite3_column_text(st, i);
    if (t == NULL)
        return false;
    *dst = strdup((const char *)t);
    return *dst != NULL;
}

static bool dup_col_blob(sqlite3_stmt *st, int i, unsigned char **dst, size_t *len) {
    *dst = NULL;
    *len = 0;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return true;
    const void *b = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (n == 0)
        return true;
    bool ok = true;
    *dst = cv__store_memdup(b, (size_t)n, &ok);
    *len = ok ? (size_t)n : 0;
    return ok;
}

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static int read_job(sqlite3_stmt *st, unsigned flags, struct cv_store_job *j) {
    memset(j, 0, sizeof *j);
    copy_col(st, 0, j->id, sizeof j->id);
    j->kind = sqlite3_column_int(st, 1);
    j->status = sqlite3_column_int(st, 2);
    j->resumable = sqlite3_column_int(st, 3) != 0;
    j->attempt = sqlite3_column_int(st, 4);
    copy_col(st, 5, j->owner, sizeof j->owner);
    j->lease_until_ms = sqlite3_column_int64(st, 6);
    j->cancel_requested = sqlite3_column_int(st, 7) != 0;
    j->created_ms = sqlite3_column_int64(st, 8);
    j->started_ms = sqlite3_column_int64(st, 9);
    j->finished_ms = sqlite3_column_int64(st, 10);
    j->step = sqlite3_column_int(st, 11);
    j->steps = sqlite3_column_int(st, 12);
    j->loss = column_real_or_nan(st, 13);
    j->elapsed_ms = column_real_or_nan(st, 14);
    j->last_seq = sqlite3_column_int64(st, 15);
    bool ok = dup_col_text(st, 16, &j->name) && dup_col_text(st, 17, &j->labels_json) &&
              dup_col_text(st, 18, &j->params_json);
    copy_col(st, 19, j->error_code, sizeof j->error_code);
    copy_col(st, 20, j->error_detail, sizeof j->error_detail);
    if (ok && (flags & CV_STORE_LOAD_REQUEST))
        ok = dup_col_blob(st, COL_REQUEST, &j->request, &j->request_len);
    if (ok && (flags & CV_STORE_LOAD_RESULT)) {
        unsigned char *r;
        ok = dup_col_blob(st, COL_RESULT, &r, &j->result_len);
        j->result = (char *)r;
    }
    if (!ok) {
        cv_store_job_free(j);
        return cv__store_fail(CV_STORE_NOMEM, "out of memory reading a job");
    }
    return CV_STORE_OK;
}

/* ---- helpers inside a write transaction (wmu held) ------------------------------------------ */

/* The fencing read: attempt, status and last_seq of a job. */
static int job_state(struct conn *c, const char *id, int32_t *attempt, int *status,
                     int64_t *last_seq) {
    sqlite3_stmt *st;
    PREP(c, S_JOB_STATE, st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int s = step_row(c, st, "no such job", "job state");
    if (s == CV_STORE_OK) {
        *attempt = sqlite3_column_int(st, 0);
        *status = sqlite3_column_int(st, 1);
        *last_seq = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return s;
}

/* OK when job id exists, NOT_FOUND ("no such job") when it does not. */
static int job_exists(struct conn *c, const char *id) {
    int32_t attempt;
    int status;
    int64_t last_seq;
    return job_state(c, id, &attempt, &status, &last_seq);
}

static int insert_events(struct conn *c, const char *id, int64_t last_seq,
                         const struct cv_store_event *ev, size_t n, int32_t attempt) {
    if (n == 0)
        return CV_STORE_OK;
    if (ev[0].seq != last_seq + 1)
        return cv__store_fail(CV_STORE_INVALID, "event seq %lld does not follow %lld",
                              (long long)ev[0].seq, (long long)last_seq);
    sqlite3_stmt *st;
    PREP(c, S_EV_INSERT, st);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, ev[i].seq);
        sqlite3_bind_int(st, 3, attempt);
        sqlite3_bind_text(st, 4, ev[i].body, (int)ev[i].len, SQLITE_STATIC);
        int s = step_done(c, st, "INSERT events");
        if (s != CV_STORE_OK)
            return s;
    }
    sqlite3_stmt *ls;
    PREP(c, S_LAST_SEQ, ls);
    sqlite3_bind_text(ls, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ls, 2, ev[n - 1].seq);
    return step_done(c, ls, "UPDATE last_seq");
}

/* Runs a write statement whose only parameter is a job id or kernel name. */
static int run_by_id(struct conn *c, enum stmt_id id_stmt, const char *id, const char *what) {
    sqlite3_stmt *st;
    PREP(c, id_stmt, st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    return step_done(c, st, what);
}

/* Deletes job id with its events and checkpoint; NOT_FOUND when there is no such job. */
static int delete_job(struct conn *c, const char *id) {
    int st = run_by_id(c, S_JOB_DELETE, id, "DELETE job");
    if (st == CV_STORE_OK && sqlite3_changes(c->db) == 0)
        st = cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
    if (st == CV_STORE_OK)
        st = run_by_id(c, S_EV_DELETE, id, "DELETE events");
    if (st == CV_STORE_OK)
        st = run_by_id(c, S_CKPT_DELETE, id, "DELETE checkpoint");
    return st;
}

static int finish_tx(struct conn *c, const char *id, int64_t last_seq, int32_t attempt,
                     const struct cv_store_finish *f) {
    int s = insert_events(c, id, last_seq, f->events, f->n_events, attempt);
    if (s != CV_STORE_OK)
        return s;
    sqlite3_stmt *st;
    PREP(c, S_FINISH, st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, f->status);
    sqlite3_bind_int64(st, 3, cv__store_now_ms());
    if (f->result != NULL)
        sqlite3_bind_text(st, 4, f->result, (int)f->result_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_text(st, 5, f->error_code ? f->error_code : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, f->error_detail ? f->error_detail : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, f->step);
    bind_real_or_null(st, 8, f->loss);
    bind_real_or_null(st, 9, f->elapsed_ms);
    s = step_done(c, st, "UPDATE jobs (finish)");
    if (s != CV_STORE_OK)
        return s;
    return run_by_id(c, S_CKPT_DELETE, id, "DELETE checkpoint");
}

/* ---- ops ------------------------------------------------------------------------------------ */

static void s_close(struct cv_store *s) {
    struct sstore *ss = S(s);
    for (int i = 0; i < N_READERS; i++)
        conn_close(&ss->readers[i]);
    conn_close(&ss->writer);
    if (ss->lock_fd >= 0)
        close(ss->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&ss->wmu);
    pthread_mutex_destroy(&ss->rmu);
    pthread_cond_destroy(&ss->rcond);
    free(ss);
}

static int s_ping(struct cv_store *s) {
    struct sstore *ss = S(s);
    pthread_mutex_lock(&ss->wmu);
    bool failed = ss->write_failed;
    pthread_mutex_unlock(&ss->wmu);
    if (failed) {
        /* The last write failed. A tiny write may still fit in the WAL's old pages while the
         * disk is full, so look at the free space first: under 1 MiB is still full. */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", ss->path);
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        struct statvfs vfs;
        if (statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (1u << 20))
            return cv__store_fail(CV_STORE_UNAVAILABLE, "sqlite: the disk of %s is full", dir);
        int st = wbegin(ss);
        if (st != CV_STORE_OK)
            return st;
        int rc = exec_stmt(&ss->writer, S_TOUCH);
        st = wend(ss, rc == SQLITE_OK ? CV_STORE_OK : fail_db(ss->writer.db, rc, "ping write"));
        return st == CV_STORE_OK ? CV_STORE_OK : CV_STORE_UNAVAILABLE;
    }
    struct conn *c = reader_take(ss);
    int rc = exec_stmt(c, S_PING);
    int st = rc == SQLITE_OK ? CV_STORE_OK : fail_db(c->db, rc, "ping");
    reader_give(ss, c);
    return st == CV_STORE_OK ? CV_STORE_OK : CV_STORE_UNAVAILABLE;
}

static int s_job_insert(struct cv_store *s, const struct cv_store_job *j,
                        const struct cv_store_event *ev, size_t n, int64_t lease_ms) {
    struct sstore *ss = S(s);
    int64_t now = cv__store_now_ms();
    bool running = j->status == CV_STORE_JOB_RUNNING;
    sqlite3_stmt *q;
    int st = wbegin_stmt(ss, S_JOB_INSERT, &q);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    sqlite3_bind_text(q, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, j->kind);
    sqlite3_bind_int(q, 3, j->status);
    sqlite3_bind_int(q, 4, j->resumable);
    sqlite3_bind_int(q, 5, running ? 1 : 0);
    sqlite3_bind_text(q, 6, running ? j->owner : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, running ? now + lease_ms : 0);
    sqlite3_bind_int64(q, 8, j->created_ms ? j->created_ms : now);
    sqlite3_bind_int64(q, 9, running ? (j->started_ms ? j->started_ms : now) : 0);
    sqlite3_bind_int(q, 10, j->step);
    sqlite3_bind_int(q, 11, j->steps);
    bind_real_or_null(q, 12, j->loss);
    bind_real_or_null(q, 13, j->elapsed_ms);
    bind_text_or_null(q, 14, j->name);
    bind_text_or_null(q, 15, j->labels_json);
    bind_text_or_null(q, 16, j->params_json);
    if (j->request != NULL && j->request_len > 0)
        sqlite3_bind_blob(q, 17, j->request, (int)j->request_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 17);
    st = step_done(c, q, "INSERT jobs");
    if (st == CV_STORE_OK)
        st = insert_events(c, j->id, -1, ev, n, running ? 1 : 0);
    st = wend(ss, st);
    if (st == CV_STORE_OK && !running)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, j->id, -1);
    return st;
}

static int s_job_get(struct cv_store *s, const char *id, unsigned flags, struct cv_store_job *out) {
    struct sstore *ss = S(s);
    struct conn *c;
    sqlite3_stmt *q;
    int st = reader_begin(ss, S_JOB_GET, &c, &q);
    if (st != CV_STORE_OK)
        return st;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    st = step_row(c, q, "no such job", "SELECT job");
    if (st == CV_STORE_OK)
        st = read_job(q, flags, out);
    reader_end(ss, c, q);
    return st;
}

static int s_job_list(struct cv_store *s, const struct cv_store_query *qq,
                      struct cv_store_job **out, size_t *n) {
    struct sstore *ss = S(s);
    struct cv_store_job *a = calloc(qq->limit, sizeof *a);
    if (a == NULL)
        return CV_STORE_NOMEM;
    struct conn *c;
    sqlite3_stmt *q;
    size_t count = 0;
    int rc = SQLITE_DONE, st = reader_begin(ss, S_JOB_LIST, &c, &q);
    if (st != CV_STORE_OK) {
        free(a);
        return st;
    }
    sqlite3_bind_int(q, 1, qq->status);
    bind_text_or_null(q, 2, qq->name);
    bind_text_or_null(q, 3, qq->label_key);
    bind_text_or_null(q, 4, qq->label_value);
    bind_text_or_null(q, 5, qq->before_id);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)qq->limit);
    while (st == CV_STORE_OK && count < qq->limit && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        st = read_job(q, CV_STORE_LOAD_ROW, &a[count]);
        if (st == CV_STORE_OK)
            count++;
    }
    if (st == CV_STORE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        st = fail_db(c->db, rc, "SELECT jobs");
    reader_end(ss, c, q);
    if (st != CV_STORE_OK || count == 0) {
        cv_store_jobs_free(a, count);
        return st;
    }
    *out = a;
    *n = count;
    return CV_STORE_OK;
}

static int s_job_count(struct cv_store *s, int status, int64_t *n) {
    struct sstore *ss = S(s);
    struct conn *c;
    sqlite3_stmt *q;
    int st = reader_begin(ss, S_JOB_COUNT, &c, &q);
    if (st != CV_STORE_OK)
        return st;
    sqlite3_bind_int(q, 1, status);
    st = step_row(c, q, NULL, "count");
    if (st == CV_STORE_OK)
        *n = sqlite3_column_int64(q, 0);
    reader_end(ss, c, q);
    return st;
}

/* The claim inside the write transaction. */
static int claim_tx(struct conn *c, const char *owner, int64_t lease_ms, struct cv_store_job *out) {
    int64_t now = cv__store_now_ms();
    sqlite3_stmt *q;
    PREP(c, S_CLAIM, q);
    sqlite3_bind_int64(q, 1, now);
    sqlite3_bind_text(q, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, now + lease_ms);
    int rc = sqlite3_step(q);
    int st;
    if (rc == SQLITE_ROW) {
        st = read_job(q, CV_STORE_LOAD_REQUEST, out);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE && st == CV_STORE_OK) {
            cv_store_job_free(out);
            st = fail_db(c->db, rc, "claim");
        }
    } else if (rc == SQLITE_DONE) {
        st = CV_STORE_NOT_FOUND;
    } else {
        st = fail_db(c->db, rc, "claim");
    }
    sqlite3_reset(q);
    return st;
}

static int s_job_claim(struct cv_store *s, const char *owner, int64_t lease_ms,
                       struct cv_store_job *out) {
    struct sstore *ss = S(s);
    int st = wbegin(ss);
    if (st != CV_STORE_OK)
        return st;
    st = claim_tx(&ss->writer, owner, lease_ms, out);
    if (st == CV_STORE_NOT_FOUND) {
        wend(ss, CV_STORE_OK); /* nothing written; ends the transaction */
        return CV_STORE_NOT_FOUND;
    }
    st = wend(ss, st);
    if (st != CV_STORE_OK)
        cv_store_job_free(out);
    else
        cv__store_notify(s, CV_STORE_NOTE_STATE, out->id, -1);
    return st;
}

static int s_job_renew(struct cv_store *s, const char *id, int32_t attempt, const char *owner,
                       int64_t lease_ms, bool *cancel_requested) {
    struct sstore *ss = S(s);
    sqlite3_stmt *q;
    int st = wbegin_stmt(ss, S_RENEW, &q);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, attempt);
    sqlite3_bind_text(q, 3, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, cv__store_now_ms() + lease_ms);
    int rc = sqlite3_step(q);
    bool hit = rc == SQLITE_ROW;
    if (hit)
        *cancel_requested = sqlite3_column_int(q, 0) != 0;
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE)
        return wend(ss, fail_db(c->db, rc, "renew"));
    if (!hit) {
        st = job_exists(c, id);
        wend(ss, CV_STORE_OK);
        return st == CV_STORE_OK ? CV_STORE_FENCED : st;
    }
    return wend(ss, CV_STORE_OK);
}

static int s_job_orphan(struct cv_store *s, const char *owner, int64_t *n) {
    struct sstore *ss = S(s);
    sqlite3_stmt *q;
    int st = wbegin_stmt(ss, S_ORPHAN, &q);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    bind_text_or_null(q, 1, owner);
    st = step_done(c, q, "orphan");
    *n = st == CV_STORE_OK ? sqlite3_changes(c->db) : 0;
    st = wend(ss, st);
    if (st == CV_STORE_OK && *n > 0)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, NULL, -1);
    return st;
}

static int s_job_release(struct cv_store *s, const char *id, int32_t attempt) {
    struct sstore *ss = S(s);
    sqlite3_stmt *q;
    int st = wbegin_stmt(ss, S_RELEASE, &q);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, attempt);
    st = step_done(c, q, "release");
    if (st == CV_STORE_OK && sqlite3_changes(c->db) == 0) {
        st = job_exists(c, id);
        if (st == CV_STORE_OK)
            st = CV_STORE_FENCED;
    }
    st = wend(ss, st);
    if (st == CV_STORE_OK)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, id, -1);
    return st;
}

static int s_job_finish(struct cv_store *s, const char *id, int32_t attempt,
                        const struct cv_store_finish *f) {
    struct sstore *ss = S(s);
    int st = wbegin(ss);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    int32_t cur;
    int status;
    int64_t last_seq = -1;
    st = job_state(c, id, &cur, &status, &last_seq);
    if (st == CV_STORE_OK && (cur != attempt || cv_store_job_status_terminal(status)))
        st = cv__store_fail(CV_STORE_FENCED, "job %s: attempt %d is not current (%d)", id,
                            (int)attempt, (int)cur);
    if (st == CV_STORE_OK)
        st = finish_tx(c, id, last_seq, attempt, f);
    st = wend(ss, st);
    if (st == CV_STORE_OK) {
        if (f->n_events > 0)
            cv__store_notify(s, CV_STORE_NOTE_EVENTS, id, f->events[f->n_events - 1].seq);
        cv__store_notify(s, CV_STORE_NOTE_STATE, id, -1);
    }
    return st;
}

static int s_job_cancel(struct cv_store *s, const char *id, const struct cv_store_finish *if_queued,
                        enum cv_store_job_status *status_after) {
    struct sstore *ss = S(s);
    int st = wbegin(ss);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    int32_t attempt;
    int status;
    int64_t last_seq;
    enum cv_store_note note = CV_STORE_NOTE_CANCEL;
    st = job_state(c, id, &attempt, &status, &last_seq);
    if (st == CV_STORE_OK && status == CV_STORE_JOB_QUEUED) {
        st = finish_tx(c, id, last_seq, attempt, if_queued);
        status = CV_STORE_JOB_CANCELLED;
        note = CV_STORE_NOTE_STATE;
    } else if (st == CV_STORE_OK && status == CV_STORE_JOB_RUNNING) {
        st = run_by_id(c, S_CANCEL_FLAG, id, "cancel");
    }
    st = wend(ss, st);
    if (st == CV_STORE_OK) {
        *status_after = status;
        cv__store_notify(s, note, id, -1);
    }
    return st;
}

static int s_job_delete(struct cv_store *s, const char *id) {
    struct sstore *ss = S(s);
    int st = wbegin(ss);
    if (st != CV_STORE_OK)
        return st;
    return wend(ss, delete_job(&ss->writer, id));
}

/* One item of a group commit. A failed item that is the store's fault fails the whole
 * transaction; fencing skips the item only. */
static int append_item(struct conn *c, struct cv_store_append *it) {
    int32_t attempt;
    int status;
    int64_t last_seq;
    int st = job_state(c, it->job_id, &attempt, &status, &last_seq);
    if (st == CV_STORE_NOT_FOUND) {
        it->status = st;
        return CV_STORE_OK;
    }
    if (st != CV_STORE_OK)
        return st;
    if (attempt != it->attempt || cv_store_job_status_terminal(status)) {
        it->status = CV_STORE_FENCED;
        return CV_STORE_OK;
    }
    if (it->n_events > 0 && it->events[0].seq != last_seq + 1) {
        it->status = cv__store_fail(CV_STORE_INVALID, "event seq does not follow the log");
        return CV_STORE_OK;
    }
    st = insert_events(c, it->job_id, last_seq, it->events, it->n_events, it->attempt);
    if (st == CV_STORE_OK && it->has_progress) {
        sqlite3_stmt *q;
        PREP(c, S_PROGRESS, q);
        sqlite3_bind_text(q, 1, it->job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 2, it->step);
        bind_real_or_null(q, 3, it->loss);
        bind_real_or_null(q, 4, it->elapsed_ms);
        st = step_done(c, q, "UPDATE progress");
    }
    if (st == CV_STORE_OK && it->checkpoint != NULL) {
        sqlite3_stmt *q;
        PREP(c, S_CKPT_PUT, q);
        sqlite3_bind_text(q, 1, it->job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 2, it->checkpoint_step);
        sqlite3_bind_int(q, 3, it->attempt);
        sqlite3_bind_blob(q, 4, it->checkpoint, (int)it->checkpoint_len, SQLITE_STATIC);
        st = step_done(c, q, "checkpoint");
    }
    it->status = st;
    return st;
}

static int s_append(struct cv_store *s, struct cv_store_append *items, size_t n) {
    struct sstore *ss = S(s);
    int st = wbegin(ss);
    if (st == CV_STORE_OK) {
        for (size_t i = 0; st == CV_STORE_OK && i < n; i++)
            st = append_item(&ss->writer, &items[i]);
        st = wend(ss, st);
    }
    if (st != CV_STORE_OK) {
        for (size_t i = 0; i < n; i++)
            items[i].status = st;
        return st;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CV_STORE_OK && items[i].n_events > 0)
            cv__store_notify(s, CV_STORE_NOTE_EVENTS, items[i].job_id,
                             items[i].events[items[i].n_events - 1].seq);
    return CV_STORE_OK;
}

static int s_events_read(struct cv_store *s, const char *id, int64_t after_seq, size_t max,
                         struct cv_store_event **out, size_t *n) {
    struct sstore *ss = S(s);
    struct conn *c;
    sqlite3_stmt *q;
    size_t count = 0, cap = 0;
    struct cv_store_event *a = NULL;
    int rc = SQLITE_OK, st = reader_begin(ss, S_EV_READ, &c, &q);
    if (st != CV_STORE_OK)
        return st;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, after_seq);
    sqlite3_bind_int64(q, 3, max > 0 ? (sqlite3_int64)max : -1);
    while (st == CV_STORE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct cv_store_event *b = grow(a, &cap, count, sizeof *a, 64);
        if (b == NULL) {
            st = CV_STORE_NOMEM;
            break;
        }
        a = b;
        struct cv_store_event *e = &a[count];
        e->seq = sqlite3_column_int64(q, 0);
        e->attempt = sqlite3_column_int(q, 1);
        const void *body = sqlite3_column_text(q, 2);
        e->len = (size_t)sqlite3_column_bytes(q, 2);
        bool ok = true;
        e->body = cv__store_memdup(body, e->len, &ok);
        if (ok && e->body == NULL)
            e->body = strdup("");
        if (e->body == NULL)
            st = CV_STORE_NOMEM;
        else
            count++;
    }
    if (st == CV_STORE_OK && rc != SQLITE_DONE)
        st = fail_db(c->db, rc, "SELECT events");
    sqlite3_reset(q);
    if (st == CV_STORE_OK && count == 0) /* no newer events, or no such job? */
        st = job_exists(c, id);
    reader_give(ss, c);
    if (st != CV_STORE_OK || count == 0) {
        cv_store_events_free(a, count);
        return st;
    }
    *out = a;
    *n = count;
    return CV_STORE_OK;
}

static int s_checkpoint_get(struct cv_store *s, const char *id, int32_t *step, int32_t *attempt,
                            unsigned char **blob, size_t *len) {
    struct sstore *ss = S(s);
    struct conn *c;
    sqlite3_stmt *q;
    int st = reader_begin(ss, S_CKPT_GET, &c, &q);
    if (st != CV_STORE_OK)
        return st;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    st = step_row(c, q, "no checkpoint", "SELECT checkpoint");
    if (st == CV_STORE_OK) {
        *step = sqlite3_column_int(q, 0);
        *attempt = sqlite3_column_int(q, 1);
        st = dup_col_blob(q, 2, blob, len) ? CV_STORE_OK : CV_STORE_NOMEM;
        if (st == CV_STORE_OK && *blob == NULL)
            st = cv__store_fail(CV_STORE_NOT_FOUND, "empty checkpoint");
    }
    reader_end(ss, c, q);
    return st;
}

static int s_retain(struct cv_store *s, int64_t keep, int64_t max_age_ms, int batch, int *deleted) {
    struct sstore *ss = S(s);
    sqlite3_stmt *q;
    int st = wbegin_stmt(ss, S_RETAIN_PICK, &q);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    char(*ids)[40] = calloc((size_t)batch, sizeof *ids);
    int count = 0, rc = SQLITE_OK;
    if (ids == NULL)
        return wend(ss, CV_STORE_NOMEM);
    sqlite3_bind_int64(q, 1, max_age_ms);
    sqlite3_bind_int64(q, 2, cv__store_now_ms() - max_age_ms);
    sqlite3_bind_int64(q, 3, keep);
    sqlite3_bind_int(q, 4, batch);
    while (count < batch && (rc = sqlite3_step(q)) == SQLITE_ROW)
        copy_col(q, 0, ids[count++], sizeof ids[0]);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        st = fail_db(c->db, rc, "retention pick");
    sqlite3_reset(q);
    for (int i = 0; st == CV_STORE_OK && i < count; i++)
        st = delete_job(c, ids[i]);
    free(ids);
    st = wend(ss, st);
    if (st == CV_STORE_OK)
        *deleted = count;
    return st;
}

static int s_kernel_put(struct cv_store *s, const char *name, const unsigned char *blob, size_t len,
                        const char *meta_json, bool replace) {
    struct sstore *ss = S(s);
    sqlite3_stmt *q;
    int st = wbegin_stmt(ss, replace ? S_K_PUT : S_K_INSERT, &q);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, cv__store_now_ms());
    bind_text_or_null(q, 3, meta_json);
    sqlite3_bind_blob(q, 4, blob, (int)len, SQLITE_STATIC);
    st = step_done(c, q, "put kernel");
    if (st == CV_STORE_OK && !replace && sqlite3_changes(c->db) == 0)
        st = CV_STORE_EXISTS;
    if (st == CV_STORE_EXISTS) {
        wend(ss, CV_STORE_OK);
        return CV_STORE_EXISTS;
    }
    return wend(ss, st);
}

static int s_kernel_get(struct cv_store *s, const char *name, struct cv_store_kernel *out) {
    struct sstore *ss = S(s);
    struct conn *c;
    sqlite3_stmt *q;
    int st = reader_begin(ss, S_K_GET, &c, &q);
    if (st != CV_STORE_OK)
        return st;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    st = step_row(c, q, "no such kernel", "SELECT kernel");
    if (st == CV_STORE_OK) {
        copy_col(q, 0, out->name, sizeof out->name);
        out->created_ms = sqlite3_column_int64(q, 1);
        if (!dup_col_text(q, 2, &out->meta_json) || !dup_col_blob(q, 3, &out->blob, &out->len)) {
            cv_store_kernel_free(out);
            st = CV_STORE_NOMEM;
        }
    }
    reader_end(ss, c, q);
    return st;
}

static int s_kernel_list(struct cv_store *s, struct cv_store_kernel **out, size_t *n) {
    struct sstore *ss = S(s);
    struct conn *c;
    sqlite3_stmt *q;
    size_t count = 0, cap = 0;
    struct cv_store_kernel *a = NULL;
    int rc = SQLITE_OK, st = reader_begin(ss, S_K_LIST, &c, &q);
    if (st != CV_STORE_OK)
        return st;
    while (st == CV_STORE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct cv_store_kernel *b = grow(a, &cap, count, sizeof *a, 16);
        if (b == NULL) {
            st = CV_STORE_NOMEM;
            break;
        }
        a = b;
        memset(&a[count], 0, sizeof a[count]);
        copy_col(q, 0, a[count].name, sizeof a[count].name);
        a[count].created_ms = sqlite3_column_int64(q, 1);
        if (!dup_col_text(q, 2, &a[count].meta_json))
            st = CV_STORE_NOMEM;
        else
            count++;
    }
    if (st == CV_STORE_OK && rc != SQLITE_DONE)
        st = fail_db(c->db, rc, "SELECT kernels");
    reader_end(ss, c, q);
    if (st != CV_STORE_OK || count == 0) {
        cv_store_kernels_free(a, count);
        return st;
    }
    *out = a;
    *n = count;
    return CV_STORE_OK;
}

static int s_kernel_delete(struct cv_store *s, const char *name) {
    struct sstore *ss = S(s);
    int st = wbegin(ss);
    if (st != CV_STORE_OK)
        return st;
    struct conn *c = &ss->writer;
    st = run_by_id(c, S_K_DELETE, name, "DELETE kernel");
    if (st == CV_STORE_OK && sqlite3_changes(c->db) == 0) {
        wend(ss, CV_STORE_OK);
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such kernel");
    }
    return wend(ss, st);
}

static const struct cv_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = s_close,
    .ping = s_ping,
    .job_insert = s_job_insert,
    .job_get = s_job_get,
    .job_list = s_job_list,
    .job_count = s_job_count,
    .job_claim = s_job_claim,
    .job_renew = s_job_renew,
    .job_orphan = s_job_orphan,
    .job_release = s_job_release,
    .job_finish = s_job_finish,
    .job_cancel = s_job_cancel,
    .job_delete = s_job_delete,
    .append = s_append,
    .events_read = s_events_read,
    .checkpoint_get = s_checkpoint_get,
    .retain = s_retain,
    .kernel_put = s_kernel_put,
    .kernel_get = s_kernel_get,
    .kernel_list = s_kernel_list,
    .kernel_delete = s_kernel_delete,
};

/* ---- open: lock, connections, schema ------------------------------------------------------- */

/* Takes PATH.lock exclusively (and writes our pid into it for the message of the next one). */
static int take_lock(struct sstore *ss) {
    char lock_path[4200];
    snprintf(lock_path, sizeof lock_path, "%s.lock", ss->path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return cv__store_fail(CV_STORE_UNAVAILABLE, "sqlite: cannot open lock file %s: %s",
                              lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t r = pread(fd, pid, sizeof pid - 1, 0);
        pid[r > 0 ? r : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            return cv__store_fail(CV_STORE_LOCKED,
                                  "sqlite database %s is in use by another convd (pid %s; lock "
                                  "file %s): one process per database",
                                  ss->path, pid[0] ? pid : "unknown", lock_path);
        return cv__store_fail(CV_STORE_UNAVAILABLE, "sqlite: cannot lock %s: %s", lock_path,
                              strerror(e));
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)len, 0) < 0) {
        /* the pid is only for the message; the lock is what counts */
    }
    ss->lock_fd = fd;
    return CV_STORE_OK;
}

/* Reads the schema version: 0 for an empty database; CORRUPT for tables but no version. */
static int read_version(struct conn *c, int *version) {
    *version = 0;
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail_db(c->db, rc, "read schema");
    rc = sqlite3_step(st);
    int tables = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (tables < 0)
        return fail_db(c->db, rc, "read schema");
    if (tables == 0)
        return CV_STORE_OK;
    rc = sqlite3_prepare_v2(c->db, "SELECT version FROM schema_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cv__store_fail(CV_STORE_CORRUPT,
                              "sqlite: the database has tables but no schema_version: not a "
                              "convd store");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW || *version < 1)
        return cv__store_fail(CV_STORE_CORRUPT, "sqlite: schema_version is empty or invalid");
    return CV_STORE_OK;
}

static int migrate(struct sstore *ss) {
    struct conn *c = &ss->writer;
    int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail_db(c->db, rc, "BEGIN migration");
    int version;
    int st = read_version(c, &version);
    if (st == CV_STORE_OK && version > N_MIGRATIONS)
        st = cv__store_fail(CV_STORE_TOO_NEW,
                            "sqlite database %s has schema version %d, newer than this convd's "
                            "%d: use a newer convd (refusing to touch it)",
                            ss->path, version, N_MIGRATIONS);
    if (st == CV_STORE_OK && version == 0) {
        rc = sqlite3_exec(c->db,
                          "CREATE TABLE schema_version(version INTEGER NOT NULL);"
                          "INSERT INTO schema_version VALUES(0)",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            st = fail_db(c->db, rc, "create schema_version");
    }
    for (int v = version; st == CV_STORE_OK && v < N_MIGRATIONS; v++) {
        rc = sqlite3_exec(c->db, migrations[v], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            st = fail_db(c->db, rc, "migration");
            break;
        }
        sqlite3_stmt *q;
        rc = sqlite3_prepare_v2(c->db, "UPDATE schema_version SET version = ?1", -1, &q, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int(q, 1, v + 1);
            rc = sqlite3_step(q);
            sqlite3_finalize(q);
        }
        if (rc != SQLITE_DONE && rc != SQLITE_OK)
            st = fail_db(c->db, rc, "set schema_version");
    }
    if (st == CV_STORE_OK) {
        rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            st = fail_db(c->db, rc, "COMMIT migration");
    }
    if (st != CV_STORE_OK)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

int cv__store_sqlite_open(const char *path, const struct cv_store_options *o,
                          struct cv_store **out) {
    if (strlen(path) >= sizeof((struct sstore *)0)->path)
        return cv__store_fail(CV_STORE_INVALID, "sqlite: path too long");
    struct sstore *ss = calloc(1, sizeof *ss);
    if (ss == NULL)
        return CV_STORE_NOMEM;
    ss->base.ops = &sqlite_ops;
    ss->lock_fd = -1;
    snprintf(ss->path, sizeof ss->path, "%s", path);
    pthread_mutex_init(&ss->wmu, NULL);
    pthread_mutex_init(&ss->rmu, NULL);
    pthread_cond_init(&ss->rcond, NULL);
    int st = take_lock(ss);
    if (st == CV_STORE_OK)
        st = conn_open(&ss->writer, path, o, true);
    if (st == CV_STORE_OK)
        st = migrate(ss);
    for (int i = 0; st == CV_STORE_OK && i < N_READERS; i++)
        st = conn_open(&ss->readers[i], path, o, false);
    if (st != CV_STORE_OK) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s", cv_store_errmsg());
        s_close(&ss->base);
        cv__store_fail(st, "%s", keep);
        return st;
    }
    *out = &ss->base;
    return CV_STORE_OK;
}
