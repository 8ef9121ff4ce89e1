/* The PostgreSQL back end: one database shared by a fleet of convd replicas (issue 11).
 *
 * - Tables are prefixed cv_ (cv_jobs, cv_events, cv_checkpoints, cv_kernels, cv_schema_version)
 *   so convd can share a database with other applications. The schema is migrated at open in
 *   one transaction under pg_advisory_xact_lock, so replicas starting together do not race.
 * - A pool of connections, each with every statement prepared once (PQprepare) and bound with
 *   parameters: nothing from a request is ever pasted into SQL.
 * - Every lease, start and finish time comes from the database's clock (clock_timestamp()), so
 *   replicas with skewed clocks agree on who holds a lease.
 * - Claims: UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1): two replicas never take
 *   the same row and never wait for each other. Queued jobs first, then expired leases.
 * - Fencing: every write of a runner is one UPDATE of the job row guarded by `attempt = $n AND
 *   status < 2` (and the log's last seq) whose RETURNING drives the event and checkpoint inserts
 *   of the same statement; a runner whose lease was taken over writes nothing.
 * - Notifications: each write calls pg_notify('cv_jobs', '<kind>:<job id>:<seq>') inside its
 *   transaction (delivered at commit, in commit order). A dedicated listener connection
 *   (LISTEN, poll on its socket) turns the notifications of OTHER replicas into listener calls;
 *   this process's own writes notify its listener directly after commit. After a reconnect the
 *   listener sends a QUEUED note with no id, so the server re-reads what it may have missed
 *   (the server also polls slowly: notifications are a hint, the tables are the truth).
 * - Connection loss: the failing call returns CV_STORE_UNAVAILABLE (the server answers 503
 *   store_unavailable); later calls reconnect with exponential backoff (100 ms .. 2 s) and fail
 *   fast in between, so a dead server never piles up blocked threads.
 * - Group commit of step events: the writer thread's batch goes out as one pipeline (BEGIN,
 *   one statement per job, COMMIT) in a single round trip.
 * - The password: from the URL, PGPASSFILE (libpq) or options.password_file; it is never put in
 *   an error message or a log line (libpq's messages do not contain it). */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_impl.h"

#define N_CONNS         8     /* pool size: HTTP threads, writer, dispatcher, renewals */
#define BACKOFF_MIN_MS  100   /* first reconnect delay after a loss */
#define BACKOFF_MAX_MS  2000  /* reconnect at least this often while the server is down */
#define LISTEN_POLL_MS  200   /* the listener's poll: bounds how fast close() returns */
#define OPEN_RETRY_MS   10000 /* open keeps trying to connect this long (server starting) */
#define NOTIFY_CHANNEL  "cv_jobs"
#define SCHEMA_LOCK_KEY "7311105711851" /* pg_advisory_xact_lock key: "convd" schema */

#define NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

/* ---- statements ---------------------------------------------------------------------------- */

#define JOB_COLS                                                                                   \
    "j.id,j.kind,j.status,j.resumable,j.attempt,j.owner,j.lease_until,j.cancel_requested,"         \
    "j.created,j.started,j.finished,j.step,j.steps,j.loss,j.elapsed_ms,j.last_seq,j.name,"         \
    "j.labels,j.params,j.error_code,j.error_detail"
enum { COL_REQUEST = 21, COL_RESULT = 22 };

enum stmt_id {
    P_PING,
    P_JOB_INSERT,
    P_JOB_GET,
    P_JOB_STATE,
    P_JOB_LIST,
    P_JOB_COUNT,
    P_CLAIM,
    P_RENEW,
    P_ORPHAN,
    P_RELEASE,
    P_FINISH,
    P_CANCEL_FLAG,
    P_JOB_DELETE,
    P_APPEND,
    P_EV_READ,
    P_CKPT_GET,
    P_RETAIN,
    P_K_PUT,
    P_K_INSERT,
    P_K_GET,
    P_K_LIST,
    P_K_DELETE,
    P_COUNT
};

/* Claim of up to $3 jobs in one statement: queued ones first, then running ones whose lease
 * lapsed (the second branch of the UNION ALL runs only when the first did not fill the
 * limit). Rows are locked by the sub-selects (SKIP LOCKED: never wait for another replica),
 * then updated; RETURNING sends the STATE notification in the same transaction. */
#define CLAIM_FROM(where)                                                                          \
    "SELECT id FROM (SELECT id FROM cv_jobs WHERE " where " ORDER BY seqno LIMIT $3::int FOR "     \
    "UPDATE SKIP LOCKED)"
#define CLAIM                                                                                      \
    "UPDATE cv_jobs j SET status = 1, owner = $1, attempt = j.attempt + 1, lease_until = " NOW_MS  \
    " + $2::bigint, started = CASE WHEN j.started = 0 THEN " NOW_MS " ELSE j.started END "         \
    "FROM (SELECT id FROM (" CLAIM_FROM("status = 0") " q UNION ALL " CLAIM_FROM(                  \
        "status = 1 AND lease_until < " NOW_MS) " x) u LIMIT $3::int) p WHERE j.id = p.id "        \
                                                "RETURNING " JOB_COLS ", j.request, NULL::text, "  \
                                                "pg_notify('" NOTIFY_CHANNEL "', 's:' || "         \
                                                "j.id || ':-1')"

static const char *const sql_text[P_COUNT] = {
    [P_PING] = "SELECT version FROM cv_schema_version",
    /* $1 id $2 kind $3 status $4 resumable $5 owner $6 lease_ms $7 created $8 started $9 step
       $10 steps $11 loss $12 elapsed $13 name $14 labels $15 params $16 request $17 seqs
       $18 bodies $19 last seq */
    [P_JOB_INSERT] =
        "WITH j AS (INSERT INTO cv_jobs(id,kind,status,resumable,attempt,owner,lease_until,"
        "created,started,step,steps,loss,elapsed_ms,last_seq,name,labels,params,request) VALUES("
        "$1::text,$2::int,$3::int,$4::bool,CASE WHEN $3::int = 1 THEN 1 ELSE 0 END,$5::text,"
        "CASE WHEN $3::int = 1 THEN " NOW_MS " + $6::bigint ELSE 0 END,"
        "COALESCE(NULLIF($7::bigint, 0), " NOW_MS "),"
        "CASE WHEN $3::int = 1 THEN COALESCE(NULLIF($8::bigint, 0), " NOW_MS ") ELSE 0 END,"
        "$9::int,$10::int,$11::float8,$12::float8,$19::bigint,$13::text,$14::text,$15::text,"
        "$16::bytea) RETURNING id, attempt),"
        " ev AS (INSERT INTO cv_events(job_id, seq, attempt, body) SELECT j.id, u.s, j.attempt, "
        "u.b FROM j, unnest($17::bigint[], $18::text[]) AS u(s, b))"
        " SELECT CASE WHEN $3::int = 0 THEN pg_notify('" NOTIFY_CHANNEL "', 'q:' || id || ':-1') "
        "END FROM j",
    /* $1 id $2 load request $3 load result */
    [P_JOB_GET] = "SELECT " JOB_COLS ", CASE WHEN $2::bool THEN j.request END, "
                  "CASE WHEN $3::bool THEN j.result END FROM cv_jobs j WHERE j.id = $1::text",
    [P_JOB_STATE] = "SELECT attempt, status, last_seq FROM cv_jobs WHERE id = $1::text",
    /* $1 status $2 name $3 label key $4 label value $5 before id $6 limit */
    [P_JOB_LIST] = "SELECT " JOB_COLS ", NULL::bytea, NULL::text FROM cv_jobs j WHERE "
                   "($1::int < 0 OR j.status = $1::int) AND ($2::text IS NULL OR j.name = $2) "
                   "AND ($3::text IS NULL OR (j.labels::jsonb ->> $3::text) = $4::text) "
                   "AND ($5::text IS NULL OR j.seqno < (SELECT seqno FROM cv_jobs WHERE id = $5)) "
                   "ORDER BY j.seqno DESC LIMIT $6::bigint",
    [P_JOB_COUNT] = "SELECT count(*) FROM cv_jobs WHERE $1::int < 0 OR status = $1::int",
    /* $1 owner $2 lease ms $3 most jobs */
    [P_CLAIM] = CLAIM,
    /* $1 id $2 attempt $3 owner $4 lease_ms */
    [P_RENEW] = "UPDATE cv_jobs SET lease_until = " NOW_MS " + $4::bigint WHERE id = $1::text "
                "AND attempt = $2::int AND owner = $3::text AND status = 1 "
                "RETURNING cancel_requested",
    [P_ORPHAN] = "UPDATE cv_jobs SET lease_until = 0 WHERE status = 1 AND ($1::text IS NULL OR "
                 "owner = $1::text) RETURNING pg_notify('" NOTIFY_CHANNEL "', 'q::-1')",
    [P_RELEASE] = "UPDATE cv_jobs SET status = 0, owner = '', lease_until = 0 WHERE id = $1::text "
                  "AND attempt = $2::int AND status = 1 "
                  "RETURNING pg_notify('" NOTIFY_CHANNEL "', 'q:' || id || ':-1')",
    /* $1 id $2 attempt (-1: only while queued) $3 status $4 result $5 code $6 detail $7 step
       $8 loss $9 elapsed $10 seq before the first event (NULL: no events) $11 seqs $12 bodies
       $13 last seq */
    [P_FINISH] =
        "WITH j AS (UPDATE cv_jobs SET status = $3::int, finished = " NOW_MS ", result = $4::text, "
        "error_code = $5::text, error_detail = $6::text, step = $7::int, loss = $8::float8, "
        "elapsed_ms = $9::float8, lease_until = 0, last_seq = COALESCE($13::bigint, last_seq) "
        "WHERE id = $1::text AND (($2::int >= 0 AND attempt = $2::int AND status < 2) OR "
        "($2::int < 0 AND status = 0)) AND ($10::bigint IS NULL OR last_seq = $10::bigint) "
        "RETURNING id, attempt),"
        " ev AS (INSERT INTO cv_events(job_id, seq, attempt, body) SELECT j.id, u.s, j.attempt, "
        "u.b FROM j, unnest($11::bigint[], $12::text[]) AS u(s, b)),"
        " ck AS (DELETE FROM cv_checkpoints c USING j WHERE c.job_id = j.id)"
        " SELECT pg_notify('" NOTIFY_CHANNEL "', 's:' || id || ':-1') FROM j",
    [P_CANCEL_FLAG] = "UPDATE cv_jobs SET cancel_requested = true WHERE id = $1::text AND "
                      "status = 1 RETURNING pg_notify('" NOTIFY_CHANNEL "', 'c:' || id || ':-1')",
    [P_JOB_DELETE] = "WITH j AS (DELETE FROM cv_jobs WHERE id = $1::text RETURNING id),"
                     " e AS (DELETE FROM cv_events WHERE job_id = $1::text),"
                     " c AS (DELETE FROM cv_checkpoints WHERE job_id = $1::text)"
                     " SELECT count(*) FROM j",
    /* $1 id $2 attempt $3 seq before the first event (NULL: no events) $4 last seq (NULL)
       $5 has progress $6 step $7 loss $8 elapsed $9 seqs $10 bodies $11 checkpoint step
       $12 checkpoint blob (NULL: none) */
    [P_APPEND] =
        "WITH j AS (UPDATE cv_jobs SET last_seq = COALESCE($4::bigint, last_seq), "
        "step = CASE WHEN $5::bool THEN $6::int ELSE step END, "
        "loss = CASE WHEN $5::bool THEN $7::float8 ELSE loss END, "
        "elapsed_ms = CASE WHEN $5::bool THEN $8::float8 ELSE elapsed_ms END "
        "WHERE id = $1::text AND attempt = $2::int AND status < 2 AND "
        "($3::bigint IS NULL OR last_seq = $3::bigint) RETURNING id),"
        " ev AS (INSERT INTO cv_events(job_id, seq, attempt, body) SELECT j.id, u.s, $2::int, u.b "
        "FROM j, unnest($9::bigint[], $10::text[]) AS u(s, b)),"
        " ck AS (INSERT INTO cv_checkpoints(job_id, step, attempt, blob) SELECT j.id, $11::int, "
        "$2::int, $12::bytea FROM j WHERE $12::bytea IS NOT NULL ON CONFLICT (job_id) DO UPDATE "
        "SET step = excluded.step, attempt = excluded.attempt, blob = excluded.blob)"
        " SELECT CASE WHEN $4::bigint IS NOT NULL THEN pg_notify('" NOTIFY_CHANNEL "', 'e:' || "
        "id || ':' || $4::bigint) END FROM j",
    /* No row: no such job; one row of NULLs: the job has no events after $2. */
    [P_EV_READ] = "SELECT e.seq, e.attempt, e.body FROM cv_jobs j LEFT JOIN LATERAL (SELECT seq, "
                  "attempt, body FROM cv_events WHERE job_id = j.id AND seq > $2::bigint ORDER BY "
                  "seq LIMIT $3::bigint) e ON true WHERE j.id = $1::text",
    [P_CKPT_GET] = "SELECT step, attempt, blob FROM cv_checkpoints WHERE job_id = $1::text",
    /* $1 max age ms $2 keep $3 batch */
    [P_RETAIN] = "WITH v AS (SELECT id FROM cv_jobs WHERE status >= 2 AND (($1::bigint > 0 AND "
                 "finished < " NOW_MS
                 " - $1::bigint) OR ($2::bigint >= 0 AND seqno <= (SELECT seqno FROM cv_jobs WHERE "
                 "status >= 2 ORDER BY seqno DESC LIMIT 1 OFFSET $2::bigint))) ORDER BY seqno "
                 "LIMIT $3::int FOR UPDATE SKIP LOCKED),"
                 " j AS (DELETE FROM cv_jobs WHERE id IN (SELECT id FROM v) RETURNING id),"
                 " e AS (DELETE FROM cv_events WHERE job_id IN (SELECT id FROM j)),"
                 " c AS (DELETE FROM cv_checkpoints WHERE job_id IN (SELECT id FROM j))"
                 " SELECT count(*) FROM j",
    [P_K_PUT] =
        "INSERT INTO cv_kernels(name, created, meta, blob) VALUES($1::text, " NOW_MS
        ", $2::text, $3::bytea) ON CONFLICT (name) DO UPDATE SET created = excluded.created,"
        " meta = excluded.meta, blob = excluded.blob RETURNING name",
    [P_K_INSERT] = "INSERT INTO cv_kernels(name, created, meta, blob) VALUES($1::text, " NOW_MS
                   ", $2::text, $3::bytea) ON CONFLICT (name) DO NOTHING RETURNING name",
    [P_K_GET] = "SELECT name, created, meta, blob FROM cv_kernels WHERE name = $1::text",
    [P_K_LIST] = "SELECT name, created, meta FROM cv_kernels ORDER BY name",
    [P_K_DELETE] = "DELETE FROM cv_kernels WHERE name = $1::text RETURNING name",
};

/* migrations[v] takes the schema from version v to v + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE cv_jobs("
    " seqno bigint GENERATED ALWAYS AS IDENTITY,"
    " id text PRIMARY KEY, kind int NOT NULL, status int NOT NULL, resumable bool NOT NULL,"
    " attempt int NOT NULL DEFAULT 0, owner text NOT NULL DEFAULT '',"
    " lease_until bigint NOT NULL DEFAULT 0, cancel_requested bool NOT NULL DEFAULT false,"
    " created bigint NOT NULL, started bigint NOT NULL DEFAULT 0,"
    " finished bigint NOT NULL DEFAULT 0, step int NOT NULL DEFAULT 0,"
    " steps int NOT NULL DEFAULT 0, loss float8, elapsed_ms float8,"
    " last_seq bigint NOT NULL DEFAULT -1, name text, labels text, params text,"
    " error_code text NOT NULL DEFAULT '', error_detail text NOT NULL DEFAULT '',"
    " request bytea, result text);"
    "CREATE UNIQUE INDEX cv_jobs_seqno ON cv_jobs(seqno);"
    "CREATE INDEX cv_jobs_queued ON cv_jobs(seqno) WHERE status = 0;"
    "CREATE INDEX cv_jobs_running ON cv_jobs(lease_until) WHERE status = 1;"
    "CREATE INDEX cv_jobs_finished ON cv_jobs(finished) WHERE status >= 2;"
    "CREATE TABLE cv_events(job_id text NOT NULL, seq bigint NOT NULL, attempt int NOT NULL,"
    " body text NOT NULL, PRIMARY KEY(job_id, seq));"
    "CREATE TABLE cv_checkpoints(job_id text PRIMARY KEY, step int NOT NULL,"
    " attempt int NOT NULL, blob bytea NOT NULL);"
    "CREATE TABLE cv_kernels(name text PRIMARY KEY, created bigint NOT NULL, meta text,"
    " blob bytea NOT NULL);",
};
#define N_MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

/* ---- the store and its connections ----------------------------------------------------------- */

struct pconn {
    PGconn *c;  /* NULL or bad: must reconnect */
    bool busy;  /* guarded by the pool mutex */
    int be_pid; /* backend pid, to ignore our own notifications; 0 when none */
};

struct pstore {
    struct cv_store base;
    char *url;          /* the libpq URI (may hold a password: never printed) */
    char *password;     /* from options.password_file, or NULL */
    int timeout_ms;     /* statement_timeout */
    pthread_mutex_t mu; /* guards conns[].busy, backoff */
    pthread_cond_t cond;
    struct pconn conns[N_CONNS];
    int64_t next_try_ms; /* monotonic ms before which a reconnect is not tried */
    int backoff_ms;
    _Atomic int pids[N_CONNS]; /* backend pids of the pool (read by the listener) */
    pthread_t listener;
    bool listener_started;
    atomic_bool stop;
};

#define P(s) ((struct pstore *)(s))

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first line of a libpq message (they end with a newline and may have a hint after). */
static const char *first_line(const char *msg, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", msg ? msg : "");
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* Opens one connection: libpq URI plus our settings; statement_timeout bounds every call. */
static PGconn *connect_one(struct pstore *ps, const char *appname) {
    char timeout[32];
    snprintf(timeout, sizeof timeout, "-c statement_timeout=%d", ps->timeout_ms);
    const char *keys[] = {"dbname",           "connect_timeout", "application_name",
                          "options",          "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "password",        NULL};
    const char *vals[] = {ps->url, "3", appname, timeout, "10", "3", "3", ps->password, NULL};
    if (ps->password == NULL)
        keys[7] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c != NULL && PQstatus(c) != CONNECTION_OK) {
        char buf[300];
        cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: cannot connect: %s",
                       first_line(PQerrorMessage(c), buf, sizeof buf));
        PQfinish(c);
        return NULL;
    }
    if (c == NULL)
        cv__store_fail(CV_STORE_NOMEM, "postgres: out of memory connecting");
    return c;
}

static int prepare_all(PGconn *c) {
    for (int i = 0; i < P_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "cv%d", i);
        PGresult *r = PQprepare(c, name, sql_text[i], 0, NULL);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK) {
            char buf[300];
            cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: prepare %d: %s", i,
                           first_line(PQresultErrorMessage(r), buf, sizeof buf));
            PQclear(r);
            return CV_STORE_UNAVAILABLE;
        }
        PQclear(r);
    }
    return CV_STORE_OK;
}

/* Takes a pool connection, (re)connecting it when needed. Fails fast with UNAVAILABLE while the
 * backoff after a failed connect runs. */
static int conn_take(struct pstore *ps, struct pconn **out) {
    pthread_mutex_lock(&ps->mu);
    int idx = -1;
    while (idx < 0) {
        for (int i = 0; i < N_CONNS; i++)
            if (!ps->conns[i].busy && ps->conns[i].c != NULL) {
                idx = i;
                break;
            }
        if (idx < 0)
            for (int i = 0; i < N_CONNS; i++)
                if (!ps->conns[i].busy) {
                    idx = i;
                    break;
                }
        if (idx < 0)
            pthread_cond_wait(&ps->cond, &ps->mu);
    }
    struct pconn *pc = &ps->conns[idx];
    pc->busy = true;
    bool need = pc->c == NULL;
    if (need && mono_ms() < ps->next_try_ms) {
        pc->busy = false;
        pthread_cond_signal(&ps->cond);
        pthread_mutex_unlock(&ps->mu);
        return cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: server unreachable (reconnecting)");
    }
    pthread_mutex_unlock(&ps->mu);
    if (need) {
        PGconn *c = connect_one(ps, "convd");
        int st = c ? prepare_all(c) : CV_STORE_UNAVAILABLE;
        pthread_mutex_lock(&ps->mu);
        if (st != CV_STORE_OK) {
            if (c)
                PQfinish(c);
            ps->backoff_ms = ps->backoff_ms ? ps->backoff_ms * 2 : BACKOFF_MIN_MS;
            if (ps->backoff_ms > BACKOFF_MAX_MS)
                ps->backoff_ms = BACKOFF_MAX_MS;
            ps->next_try_ms = mono_ms() + ps->backoff_ms;
            pc->busy = false;
            pthread_cond_signal(&ps->cond);
            pthread_mutex_unlock(&ps->mu);
            return CV_STORE_UNAVAILABLE;
        }
        ps->backoff_ms = 0;
        ps->next_try_ms = 0;
        pc->c = c;
        pc->be_pid = PQbackendPID(c);
        atomic_store(&ps->pids[idx], pc->be_pid);
        pthread_mutex_unlock(&ps->mu);
    }
    *out = pc;
    return CV_STORE_OK;
}

static void conn_give(struct pstore *ps, struct pconn *pc) {
    pthread_mutex_lock(&ps->mu);
    if (pc->c != NULL && PQstatus(pc->c) != CONNECTION_OK) {
        PQfinish(pc->c);
        pc->c = NULL;
        pc->be_pid = 0;
        atomic_store(&ps->pids[pc - ps->conns], 0);
        if (ps->backoff_ms == 0) /* first loss: retry soon, then back off */
            ps->next_try_ms = mono_ms() + BACKOFF_MIN_MS;
    } else if (pc->c != NULL && PQtransactionStatus(pc->c) != PQTRANS_IDLE) {
        /* a failed call left a transaction open: roll it back before reuse */
        PGresult *r = PQexec(pc->c, "ROLLBACK");
        PQclear(r);
    }
    pc->busy = false;
    pthread_cond_signal(&ps->cond);
    pthread_mutex_unlock(&ps->mu);
}

/* Maps a failed result to a store status and records the reason (never the password). */
static int fail_res(PGconn *c, const PGresult *r, const char *what) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char buf[300];
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(c);
    int st = CV_STORE_UNAVAILABLE;
    if (state && strncmp(state, "23", 2) == 0) /* integrity: duplicate id and the like */
        st = CV_STORE_INVALID;
    else if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "42", 2) == 0))
        st = CV_STORE_INVALID; /* bad data or a schema problem: not worth retrying */
    return cv__store_fail(st, "postgres: %s (%s)", first_line(msg, buf, sizeof buf), what);
}

/* ---- parameters ------------------------------------------------------------------------------ */

#define MAX_PARAMS 20

struct params {
    int n;
    const char *v[MAX_PARAMS];
    int len[MAX_PARAMS];
    int fmt[MAX_PARAMS];
    char num[MAX_PARAMS][32];
};

static void p_null(struct params *p) {
    p->v[p->n] = NULL;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_text(struct params *p, const char *s) {
    if (s == NULL) {
        p_null(p);
        return;
    }
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

/* Bytes sent in binary format: raw bytes for bytea, and for text (no NUL needed). */
static void p_bytes(struct params *p, const void *b, size_t n) {
    if (b == NULL) {
        p_null(p);
        return;
    }
    p->v[p->n] = b;
    p->len[p->n] = (int)n;
    p->fmt[p->n] = 1;
    p->n++;
}

static void p_i64(struct params *p, int64_t v) {
    snprintf(p->num[p->n], sizeof p->num[0], "%" PRId64, v);
    p_text(p, p->num[p->n]);
}

static void p_dbl(struct params *p, double v) {
    if (isnan(v)) {
        p_null(p);
        return;
    }
    snprintf(p->num[p->n], sizeof p->num[0], "%.17g", v);
    p_text(p, p->num[p->n]);
}

static void p_bool(struct params *p, bool v) {
    p_text(p, v ? "t" : "f");
}

/* Two array literals, '{0,1,2}' and '{"body","body"}', for unnest(): bodies are quoted with
 * backslash escapes (the array input syntax), never pasted into SQL. Returns false on ENOMEM. */
static bool events_arrays(const struct cv_store_event *ev, size_t n, char **seqs, char **bodies) {
    size_t blen = 3, slen = 3;
    for (size_t i = 0; i < n; i++) {
        blen += 2 * ev[i].len + 3;
        slen += 21;
    }
    *seqs = malloc(slen);
    *bodies = malloc(blen);
    if (*seqs == NULL || *bodies == NULL) {
        free(*seqs);
        free(*bodies);
        return false;
    }
    char *s = *seqs, *b = *bodies;
    *s++ = '{';
    *b++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            *s++ = ',';
            *b++ = ',';
        }
        s += sprintf(s, "%" PRId64, ev[i].seq);
        *b++ = '"';
        for (size_t k = 0; k < ev[i].len; k++) {
            char ch = ev[i].body[k];
            if (ch == '"' || ch == '\\')
                *b++ = '\\';
            *b++ = ch;
        }
        *b++ = '"';
    }
    *s++ = '}';
    *b++ = '}';
    *s = '\0';
    *b = '\0';
    return true;
}

static PGresult *exec_p(struct pconn *pc, enum stmt_id id, const struct params *p) {
    char name[16];
    snprintf(name, sizeof name, "cv%d", id);
    return PQexecPrepared(pc->c, name, p->n, p->v, p->len, p->fmt, 0);
}

/* Runs a prepared statement on a pool connection; *res gets the result on success (PQclear
 * it). Returns OK or a failure status. */
static int run(struct pstore *ps, enum stmt_id id, const struct params *p, PGresult **res,
               const char *what) {
    struct pconn *pc;
    int st = conn_take(ps, &pc);
    if (st != CV_STORE_OK)
        return st;
    PGresult *r = exec_p(pc, id, p);
    ExecStatusType es = PQresultStatus(r);
    if (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK) {
        *res = r;
        st = CV_STORE_OK;
    } else {
        st = fail_res(pc->c, r, what);
        PQclear(r);
    }
    conn_give(ps, pc);
    return st;
}

/* run() for a statement whose rows only count (a guarded write's RETURNING): *rows. */
static int run_count(struct pstore *ps, enum stmt_id id, const struct params *p, const char *what,
                     int64_t *rows) {
    PGresult *r = NULL;
    int st = run(ps, id, p, &r, what);
    *rows = st == CV_STORE_OK ? PQntuples(r) : 0;
    PQclear(r);
    return st;
}

/* run() for a statement that must return a row: NOT_FOUND (with `missing` as the message)
 * when it returns none. *res is the result on OK (PQclear it). */
static int run_one(struct pstore *ps, enum stmt_id id, const struct params *p, const char *what,
                   const char *missing, PGresult **res) {
    int st = run(ps, id, p, res, what);
    if (st == CV_STORE_OK && PQntuples(*res) == 0) {
        PQclear(*res);
        *res = NULL;
        st = cv__store_fail(CV_STORE_NOT_FOUND, "%s", missing);
    }
    return st;
}

/* run() for a statement whose first row holds one number: *v. */
static int run_i64(struct pstore *ps, enum stmt_id id, const struct params *p, const char *what,
                   int64_t *v) {
    PGresult *r = NULL;
    int st = run_one(ps, id, p, what, "no result", &r);
    if (st == CV_STORE_OK)
        *v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return st;
}

/* A zeroed array of one `size`-byte element per row of *res for a list (NULL when it has no
 * rows) in *arr, its length in *rows. On ENOMEM *res is cleared. */
static int rows_array(PGresult *res, size_t size, void **arr, int *rows) {
    *rows = PQntuples(res);
    *arr = *rows > 0 ? calloc((size_t)*rows, size) : NULL;
    if (*rows > 0 && *arr == NULL) {
        PQclear(res);
        return CV_STORE_NOMEM;
    }
    return CV_STORE_OK;
}

/* run() for a list: the result in *res (PQclear it) and rows_array() on OK. */
static int run_list(struct pstore *ps, enum stmt_id id, const struct params *p, const char *what,
                    PGresult **res, size_t size, void **arr, int *rows) {
    int st = run(ps, id, p, res, what);
    return st == CV_STORE_OK ? rows_array(*res, size, arr, rows) : st;
}

/* ---- row decoding ---------------------------------------------------------------------------- */

static const char *val(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t v_i64(const PGresult *r, int row, int col) {
    const char *s = val(r, row, col);
    return s ? strtoll(s, NULL, 10) : 0;
}

static double v_dbl(const PGresult *r, int row, int col) {
    const char *s = val(r, row, col);
    return s ? strtod(s, NULL) : NAN;
}

static bool v_bool(const PGresult *r, int row, int col) {
    const char *s = val(r, row, col);
    return s && s[0] == 't';
}

static bool v_dup(const PGresult *r, int row, int col, char **dst) {
    const char *s = val(r, row, col);
    *dst = NULL;
    if (s == NULL)
        return true;
    *dst = strdup(s);
    return *dst != NULL;
}

/* A bytea column in text (hex) format into a malloc'd buffer with one extra NUL. */
static bool v_bytea(const PGresult *r, int row, int col, unsigned char **dst, size_t *len) {
    const char *s = val(r, row, col);
    *dst = NULL;
    *len = 0;
    if (s == NULL)
        return true;
    size_t n = 0;
    unsigned char *u = PQunescapeBytea((const unsigned char *)s, &n);
    if (u == NULL)
        return false;
    bool ok = true;
    if (n > 0)
        *dst = cv__store_memdup(u, n, &ok);
    *len = ok ? n : 0;
    PQfreemem(u);
    return ok;
}

static int read_job(const PGresult *r, int row, unsigned flags, struct cv_store_job *j) {
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", PQgetvalue(r, row, 0));
    j->kind = (enum cv_store_kind)v_i64(r, row, 1);
    j->status = (enum cv_store_job_status)v_i64(r, row, 2);
    j->resumable = v_bool(r, row, 3);
    j->attempt = (int32_t)v_i64(r, row, 4);
    snprintf(j->owner, sizeof j->owner, "%s", PQgetvalue(r, row, 5));
    j->lease_until_ms = v_i64(r, row, 6);
    j->cancel_requested = v_bool(r, row, 7);
    j->created_ms = v_i64(r, row, 8);
    j->started_ms = v_i64(r, row, 9);
    j->finished_ms = v_i64(r, row, 10);
    j->step = (int32_t)v_i64(r, row, 11);
    j->steps = (int32_t)v_i64(r, row, 12);
    j->loss = v_dbl(r, row, 13);
    j->elapsed_ms = v_dbl(r, row, 14);
    j->last_seq = v_i64(r, row, 15);
    bool ok = v_dup(r, row, 16, &j->name) && v_dup(r, row, 17, &j->labels_json) &&
              v_dup(r, row, 18, &j->params_json);
    snprintf(j->error_code, sizeof j->error_code, "%s", PQgetvalue(r, row, 19));
    snprintf(j->error_detail, sizeof j->error_detail, "%s", PQgetvalue(r, row, 20));
    if (ok && (flags & CV_STORE_LOAD_REQUEST))
        ok = v_bytea(r, row, COL_REQUEST, &j->request, &j->request_len);
    if (ok && (flags & CV_STORE_LOAD_RESULT) && !PQgetisnull(r, row, COL_RESULT)) {
        bool mok = true;
        size_t n = (size_t)PQgetlength(r, row, COL_RESULT);
        j->result = cv__store_memdup(PQgetvalue(r, row, COL_RESULT), n, &mok);
        j->result_len = mok ? n : 0;
        ok = mok;
    }
    if (!ok) {
        cv_store_job_free(j);
        return cv__store_fail(CV_STORE_NOMEM, "out of memory reading a job");
    }
    return CV_STORE_OK;
}

/* Why a guarded write touched no row: NOT_FOUND, FENCED, or INVALID (the seq did not follow). */
static int why_not(struct pstore *ps, const char *id, int32_t attempt, int64_t seq_before) {
    struct params p = {0};
    p_text(&p, id);
    PGresult *r = NULL;
    int st = run_one(ps, P_JOB_STATE, &p, "job state", "no such job", &r);
    if (st != CV_STORE_OK)
        return st;
    int32_t cur = (int32_t)v_i64(r, 0, 0);
    int status = (int)v_i64(r, 0, 1);
    int64_t last = v_i64(r, 0, 2);
    PQclear(r);
    if ((attempt >= 0 && cur != attempt) || cv_store_job_status_terminal(status) ||
        (attempt < 0 && status != CV_STORE_JOB_QUEUED))
        return cv__store_fail(CV_STORE_FENCED, "job %s: attempt %d is not current (%d)", id,
                              (int)attempt, (int)cur);
    if (seq_before >= -1 && last != seq_before)
        return cv__store_fail(CV_STORE_INVALID, "event seq %lld does not follow %lld",
                              (long long)seq_before + 1, (long long)last);
    return cv__store_fail(CV_STORE_FENCED, "job %s changed meanwhile", id);
}

/* ---- ops ---------------------------------------------------------------------------------- */

static void pg_close(struct cv_store *s) {
    struct pstore *ps = P(s);
    atomic_store(&ps->stop, true);
    if (ps->listener_started)
        pthread_join(ps->listener, NULL);
    for (int i = 0; i < N_CONNS; i++)
        if (ps->conns[i].c)
            PQfinish(ps->conns[i].c);
    pthread_mutex_destroy(&ps->mu);
    pthread_cond_destroy(&ps->cond);
    if (ps->password) {
        memset(ps->password, 0, strlen(ps->password));
        free(ps->password);
    }
    if (ps->url) {
        memset(ps->url, 0, strlen(ps->url));
        free(ps->url);
    }
    free(ps);
}

static int pg_ping(struct cv_store *s) {
    struct params p = {0};
    int64_t rows;
    int st = run_count(P(s), P_PING, &p, "ping", &rows);
    return st == CV_STORE_OK ? CV_STORE_OK : CV_STORE_UNAVAILABLE;
}

static int pg_job_insert(struct cv_store *s, const struct cv_store_job *j,
                         const struct cv_store_event *ev, size_t n, int64_t lease_ms) {
    char *seqs, *bodies;
    if (!events_arrays(ev, n, &seqs, &bodies))
        return CV_STORE_NOMEM;
    bool running = j->status == CV_STORE_JOB_RUNNING;
    struct params p = {0};
    p_text(&p, j->id);
    p_i64(&p, j->kind);
    p_i64(&p, j->status);
    p_bool(&p, j->resumable);
    p_text(&p, running ? j->owner : "");
    p_i64(&p, lease_ms);
    p_i64(&p, j->created_ms);
    p_i64(&p, j->started_ms);
    p_i64(&p, j->step);
    p_i64(&p, j->steps);
    p_dbl(&p, j->loss);
    p_dbl(&p, j->elapsed_ms);
    p_text(&p, j->name);
    p_text(&p, j->labels_json);
    p_text(&p, j->params_json);
    if (j->request != NULL && j->request_len > 0)
        p_bytes(&p, j->request, j->request_len);
    else
        p_null(&p);
    p_text(&p, seqs);
    p_text(&p, bodies);
    p_i64(&p, n > 0 ? ev[n - 1].seq : -1);
    int64_t rows;
    int st = run_count(P(s), P_JOB_INSERT, &p, "INSERT job", &rows);
    free(seqs);
    free(bodies);
    if (st == CV_STORE_OK && !running)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, j->id, -1);
    return st;
}

static int pg_job_get(struct cv_store *s, const char *id, unsigned flags,
                      struct cv_store_job *out) {
    struct params p = {0};
    p_text(&p, id);
    p_bool(&p, (flags & CV_STORE_LOAD_REQUEST) != 0);
    p_bool(&p, (flags & CV_STORE_LOAD_RESULT) != 0);
    PGresult *r = NULL;
    int st = run_one(P(s), P_JOB_GET, &p, "SELECT job", "no such job", &r);
    if (st == CV_STORE_OK)
        st = read_job(r, 0, flags, out);
    PQclear(r);
    return st;
}

static int pg_job_list(struct cv_store *s, const struct cv_store_query *q,
                       struct cv_store_job **out, size_t *n) {
    struct params p = {0};
    p_i64(&p, q->status);
    p_text(&p, q->name);
    p_text(&p, q->label_key);
    p_text(&p, q->label_value);
    p_text(&p, q->before_id);
    p_i64(&p, (int64_t)q->limit);
    PGresult *r = NULL;
    struct cv_store_job *a;
    int rows;
    int st = run_list(P(s), P_JOB_LIST, &p, "SELECT jobs", &r, sizeof *a, (void **)&a, &rows);
    if (st != CV_STORE_OK)
        return st;
    for (int i = 0; i < rows && st == CV_STORE_OK; i++)
        st = read_job(r, i, CV_STORE_LOAD_ROW, &a[i]);
    PQclear(r);
    if (st != CV_STORE_OK) {
        cv_store_jobs_free(a, (size_t)rows);
        return st;
    }
    *out = a;
    *n = (size_t)rows;
    return CV_STORE_OK;
}

static int pg_job_count(struct cv_store *s, int status, int64_t *n) {
    struct params p = {0};
    p_i64(&p, status);
    return run_i64(P(s), P_JOB_COUNT, &p, "count", n);
}

static int pg_job_claim_many(struct cv_store *s, const char *owner, int64_t lease_ms, size_t max,
                             struct cv_store_job *out, size_t *n) {
    struct params p = {0};
    p_text(&p, owner);
    p_i64(&p, lease_ms);
    p_i64(&p, (int64_t)max);
    PGresult *r = NULL;
    int st = run(P(s), P_CLAIM, &p, &r, "claim");
    if (st != CV_STORE_OK)
        return st;
    int rows = PQntuples(r);
    for (int i = 0; i < rows && (size_t)i < max; i++) {
        /* claimed rows are ours whatever happens: a row we cannot read (out of memory) is
           left to its lease, like the job of a replica that died */
        if (read_job(r, i, CV_STORE_LOAD_REQUEST, &out[*n]) == CV_STORE_OK)
            (*n)++;
    }
    PQclear(r);
    for (size_t i = 0; i < *n; i++)
        cv__store_notify(s, CV_STORE_NOTE_STATE, out[i].id, -1);
    if (*n > 0)
        return CV_STORE_OK;
    return rows > 0 ? CV_STORE_NOMEM : CV_STORE_NOT_FOUND;
}

static int pg_job_claim(struct cv_store *s, const char *owner, int64_t lease_ms,
                        struct cv_store_job *out) {
    size_t n = 0;
    return pg_job_claim_many(s, owner, lease_ms, 1, out, &n);
}

/* Why a runner's renew or release of (id, attempt) touched no row: NOT_FOUND, UNAVAILABLE, or
 * FENCED (another attempt owns the job, or it ended). */
static int lost_lease(struct pstore *ps, const char *id, int32_t attempt) {
    int st = why_not(ps, id, attempt, -2);
    return st == CV_STORE_NOT_FOUND || st == CV_STORE_UNAVAILABLE ? st : CV_STORE_FENCED;
}

static int pg_job_renew(struct cv_store *s, const char *id, int32_t attempt, const char *owner,
                        int64_t lease_ms, bool *cancel_requested) {
    struct params p = {0};
    p_text(&p, id);
    p_i64(&p, attempt);
    p_text(&p, owner);
    p_i64(&p, lease_ms);
    PGresult *r = NULL;
    int st = run(P(s), P_RENEW, &p, &r, "renew");
    if (st != CV_STORE_OK)
        return st;
    bool hit = PQntuples(r) > 0;
    if (hit)
        *cancel_requested = v_bool(r, 0, 0);
    PQclear(r);
    return hit ? CV_STORE_OK : lost_lease(P(s), id, attempt);
}

static int pg_job_orphan(struct cv_store *s, const char *owner, int64_t *n) {
    struct params p = {0};
    p_text(&p, owner);
    int st = run_count(P(s), P_ORPHAN, &p, "orphan", n);
    if (st != CV_STORE_OK)
        return st;
    if (*n > 0)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, NULL, -1);
    return CV_STORE_OK;
}

static int pg_job_release(struct cv_store *s, const char *id, int32_t attempt) {
    struct params p = {0};
    p_text(&p, id);
    p_i64(&p, attempt);
    int64_t hit;
    int st = run_count(P(s), P_RELEASE, &p, "release", &hit);
    if (st != CV_STORE_OK)
        return st;
    if (hit == 0)
        return lost_lease(P(s), id, attempt);
    cv__store_notify(s, CV_STORE_NOTE_QUEUED, id, -1);
    return CV_STORE_OK;
}

/* The finish statement; attempt < 0 finishes a job only while it is queued (cancel). */
static int finish_stmt(struct cv_store *s, const char *id, int32_t attempt,
                       const struct cv_store_finish *f, bool *hit) {
    char *seqs, *bodies;
    if (!events_arrays(f->events, f->n_events, &seqs, &bodies))
        return CV_STORE_NOMEM;
    struct params p = {0};
    p_text(&p, id);
    p_i64(&p, attempt);
    p_i64(&p, f->status);
    p_bytes(&p, f->result, f->result_len);
    p_text(&p, f->error_code ? f->error_code : "");
    p_text(&p, f->error_detail ? f->error_detail : "");
    p_i64(&p, f->step);
    p_dbl(&p, f->loss);
    p_dbl(&p, f->elapsed_ms);
    if (f->n_events > 0)
        p_i64(&p, f->events[0].seq - 1);
    else
        p_null(&p);
    p_text(&p, seqs);
    p_text(&p, bodies);
    if (f->n_events > 0)
        p_i64(&p, f->events[f->n_events - 1].seq);
    else
        p_null(&p);
    int64_t rows;
    int st = run_count(P(s), P_FINISH, &p, "finish", &rows);
    free(seqs);
    free(bodies);
    *hit = rows > 0;
    return st;
}

static int pg_job_finish(struct cv_store *s, const char *id, int32_t attempt,
                         const struct cv_store_finish *f) {
    bool hit = false;
    int st = finish_stmt(s, id, attempt, f, &hit);
    if (st != CV_STORE_OK)
        return st;
    if (!hit)
        return why_not(P(s), id, attempt, f->n_events > 0 ? f->events[0].seq - 1 : -2);
    if (f->n_events > 0)
        cv__store_notify(s, CV_STORE_NOTE_EVENTS, id, f->events[f->n_events - 1].seq);
    cv__store_notify(s, CV_STORE_NOTE_STATE, id, -1);
    return CV_STORE_OK;
}

static int pg_job_cancel(struct cv_store *s, const char *id,
                         const struct cv_store_finish *if_queued,
                         enum cv_store_job_status *status_after) {
    /* A job moves queued -> running -> terminal only; three rounds cover every interleaving. */
    for (int round = 0; round < 3; round++) {
        bool hit = false;
        int st = finish_stmt(s, id, -1, if_queued, &hit);
        if (st != CV_STORE_OK && st != CV_STORE_INVALID)
            return st;
        if (hit) {
            *status_after = CV_STORE_JOB_CANCELLED;
            if (if_queued->n_events > 0)
                cv__store_notify(s, CV_STORE_NOTE_EVENTS, id,
                                 if_queued->events[if_queued->n_events - 1].seq);
            cv__store_notify(s, CV_STORE_NOTE_STATE, id, -1);
            return CV_STORE_OK;
        }
        struct params p = {0};
        p_text(&p, id);
        int64_t flagged;
        st = run_count(P(s), P_CANCEL_FLAG, &p, "cancel", &flagged);
        if (st != CV_STORE_OK)
            return st;
        if (flagged > 0) {
            *status_after = CV_STORE_JOB_RUNNING;
            cv__store_notify(s, CV_STORE_NOTE_CANCEL, id, -1);
            return CV_STORE_OK;
        }
        PGresult *r = NULL;
        st = run_one(P(s), P_JOB_STATE, &p, "job state", "no such job", &r);
        if (st != CV_STORE_OK)
            return st;
        int status = (int)v_i64(r, 0, 1);
        PQclear(r);
        if (cv_store_job_status_terminal(status)) {
            *status_after = status;
            return CV_STORE_OK;
        }
    }
    return cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: cancel raced with claims");
}

static int pg_job_delete(struct cv_store *s, const char *id) {
    struct params p = {0};
    p_text(&p, id);
    int64_t n = 0;
    int st = run_i64(P(s), P_JOB_DELETE, &p, "DELETE job", &n);
    if (st != CV_STORE_OK)
        return st;
    return n > 0 ? CV_STORE_OK : cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
}

/* The parameters of one group-commit item; *seqs and *bodies are malloc'd (free them). */
static bool append_params(const struct cv_store_append *it, struct params *p, char **seqs,
                          char **bodies) {
    if (!events_arrays(it->events, it->n_events, seqs, bodies))
        return false;
    memset(p, 0, sizeof *p);
    p_text(p, it->job_id);
    p_i64(p, it->attempt);
    if (it->n_events > 0) {
        p_i64(p, it->events[0].seq - 1);
        p_i64(p, it->events[it->n_events - 1].seq);
    } else {
        p_null(p);
        p_null(p);
    }
    p_bool(p, it->has_progress);
    p_i64(p, it->step);
    p_dbl(p, it->loss);
    p_dbl(p, it->elapsed_ms);
    p_text(p, *seqs);
    p_text(p, *bodies);
    p_i64(p, it->checkpoint_step);
    if (it->checkpoint != NULL)
        p_bytes(p, it->checkpoint, it->checkpoint_len);
    else
        p_null(p);
    return true;
}

/* Sends BEGIN, one P_APPEND per item and COMMIT as one pipeline and reads the results: one
 * round trip for the whole batch. hit[i] tells whether item i's guard matched. */
static int append_pipeline(struct pconn *pc, struct cv_store_append *items, size_t n, bool *hit) {
    PGconn *c = pc->c;
    if (PQenterPipelineMode(c) != 1)
        return cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: cannot enter pipeline mode");
    int st = CV_STORE_OK;
    size_t sent = 0;
    bool ok = PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
    for (size_t i = 0; ok && i < n; i++) {
        struct params p;
        char *seqs, *bodies;
        if (!append_params(&items[i], &p, &seqs, &bodies)) {
            st = CV_STORE_NOMEM;
            break;
        }
        char name[16];
        snprintf(name, sizeof name, "cv%d", P_APPEND);
        ok = PQsendQueryPrepared(c, name, p.n, p.v, p.len, p.fmt, 0) == 1;
        free(seqs);
        free(bodies);
        if (ok)
            sent++;
    }
    if (ok && st == CV_STORE_OK)
        ok = PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    bool synced = PQpipelineSync(c) == 1;
    if (!ok || !synced) {
        char buf[300];
        if (st == CV_STORE_OK)
            st = cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: %s (append send)",
                                first_line(PQerrorMessage(c), buf, sizeof buf));
    }
    /* Read: BEGIN, the items, COMMIT (when sent), then the sync. Each query's results end
       with a NULL from PQgetResult. */
    size_t queries = 1 + sent + (ok && st == CV_STORE_OK ? 1 : 0);
    for (size_t q = 0; synced && q < queries; q++) {
        PGresult *r;
        bool first = true;
        while ((r = PQgetResult(c)) != NULL) {
            ExecStatusType es = PQresultStatus(r);
            if (first && q >= 1 && q <= sent)
                hit[q - 1] = es == PGRES_TUPLES_OK && PQntuples(r) > 0;
            if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK && st == CV_STORE_OK)
                st = es == PGRES_PIPELINE_ABORTED
                         ? cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: append aborted")
                         : fail_res(c, r, "append");
            first = false;
            PQclear(r);
        }
        if (PQstatus(c) != CONNECTION_OK)
            break;
    }
    if (synced && PQstatus(c) == CONNECTION_OK) { /* the sync's own result */
        PGresult *r = PQgetResult(c);
        if (PQresultStatus(r) != PGRES_PIPELINE_SYNC && st == CV_STORE_OK)
            st = cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: append: no pipeline sync");
        PQclear(r);
    }
    if (PQstatus(c) != CONNECTION_OK && st == CV_STORE_OK)
        st = cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: connection lost (append)");
    PQexitPipelineMode(c);
    if (st == CV_STORE_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        st = cv__store_fail(CV_STORE_UNAVAILABLE, "postgres: append did not commit");
    return st;
}

static int pg_append(struct cv_store *s, struct cv_store_append *items, size_t n) {
    struct pstore *ps = P(s);
    bool *hit = calloc(n ? n : 1, sizeof *hit);
    if (hit == NULL)
        return CV_STORE_NOMEM;
    struct pconn *pc;
    int st = conn_take(ps, &pc);
    if (st == CV_STORE_OK) {
        st = append_pipeline(pc, items, n, hit);
        conn_give(ps, pc); /* rolls back a transaction left open by a failure */
    }
    if (st != CV_STORE_OK) {
        for (size_t i = 0; i < n; i++)
            items[i].status = st;
        free(hit);
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        struct cv_store_append *it = &items[i];
        if (hit[i]) {
            it->status = CV_STORE_OK;
            if (it->n_events > 0)
                cv__store_notify(s, CV_STORE_NOTE_EVENTS, it->job_id,
                                 it->events[it->n_events - 1].seq);
        } else {
            int w =
                why_not(ps, it->job_id, it->attempt, it->n_events > 0 ? it->events[0].seq - 1 : -2);
            it->status = w == CV_STORE_UNAVAILABLE ? CV_STORE_FENCED : w;
        }
    }
    free(hit);
    return CV_STORE_OK;
}

static int pg_events_read(struct cv_store *s, const char *id, int64_t after_seq, size_t max,
                          struct cv_store_event **out, size_t *n) {
    struct params p = {0};
    p_text(&p, id);
    p_i64(&p, after_seq);
    if (max > 0)
        p_i64(&p, (int64_t)max);
    else
        p_null(&p);
    PGresult *r = NULL;
    struct cv_store_event *a = NULL;
    int st = run_one(P(s), P_EV_READ, &p, "SELECT events", "no such job", &r);
    if (st == CV_STORE_OK && PQgetisnull(r, 0, 0)) { /* the job, with no events after_seq */
        PQclear(r);
        return CV_STORE_OK;
    }
    int rows;
    if (st != CV_STORE_OK || (st = rows_array(r, sizeof *a, (void **)&a, &rows)) != CV_STORE_OK)
        return st;
    for (int i = 0; i < rows; i++) {
        a[i].seq = v_i64(r, i, 0);
        a[i].attempt = (int32_t)v_i64(r, i, 1);
        a[i].len = (size_t)PQgetlength(r, i, 2);
        bool ok = true;
        a[i].body = cv__store_memdup(PQgetvalue(r, i, 2), a[i].len, &ok);
        if (ok && a[i].body == NULL)
            a[i].body = strdup("");
        if (a[i].body == NULL) {
            cv_store_events_free(a, (size_t)i);
            PQclear(r);
            return CV_STORE_NOMEM;
        }
    }
    PQclear(r);
    *out = a;
    *n = (size_t)rows;
    return CV_STORE_OK;
}

static int pg_checkpoint_get(struct cv_store *s, const char *id, int32_t *step, int32_t *attempt,
                             unsigned char **blob, size_t *len) {
    struct params p = {0};
    p_text(&p, id);
    PGresult *r = NULL;
    int st = run_one(P(s), P_CKPT_GET, &p, "SELECT checkpoint", "no checkpoint", &r);
    if (st != CV_STORE_OK)
        return st;
    *step = (int32_t)v_i64(r, 0, 0);
    *attempt = (int32_t)v_i64(r, 0, 1);
    st = v_bytea(r, 0, 2, blob, len) ? CV_STORE_OK : CV_STORE_NOMEM;
    PQclear(r);
    if (st == CV_STORE_OK && *blob == NULL)
        st = cv__store_fail(CV_STORE_NOT_FOUND, "empty checkpoint");
    return st;
}

static int pg_retain(struct cv_store *s, int64_t keep, int64_t max_age_ms, int batch,
                     int *deleted) {
    struct params p = {0};
    p_i64(&p, max_age_ms);
    p_i64(&p, keep);
    p_i64(&p, batch);
    int64_t n = 0;
    int st = run_i64(P(s), P_RETAIN, &p, "retention", &n);
    *deleted = (int)n;
    return st;
}

static int pg_kernel_put(struct cv_store *s, const char *name, const unsigned char *blob,
                         size_t len, const char *meta_json, bool replace) {
    struct params p = {0};
    p_text(&p, name);
    p_text(&p, meta_json);
    p_bytes(&p, blob, len);
    int64_t rows;
    int st = run_count(P(s), replace ? P_K_PUT : P_K_INSERT, &p, "put kernel", &rows);
    return st == CV_STORE_OK && rows == 0 ? CV_STORE_EXISTS : st;
}

static int pg_kernel_get(struct cv_store *s, const char *name, struct cv_store_kernel *out) {
    struct params p = {0};
    p_text(&p, name);
    PGresult *r = NULL;
    int st = run_one(P(s), P_K_GET, &p, "SELECT kernel", "no such kernel", &r);
    if (st != CV_STORE_OK)
        return st;
    snprintf(out->name, sizeof out->name, "%s", PQgetvalue(r, 0, 0));
    out->created_ms = v_i64(r, 0, 1);
    st = v_dup(r, 0, 2, &out->meta_json) && v_bytea(r, 0, 3, &out->blob, &out->len)
             ? CV_STORE_OK
             : CV_STORE_NOMEM;
    PQclear(r);
    if (st != CV_STORE_OK)
        cv_store_kernel_free(out);
    return st;
}

static int pg_kernel_list(struct cv_store *s, struct cv_store_kernel **out, size_t *n) {
    struct params p = {0};
    PGresult *r = NULL;
    struct cv_store_kernel *a;
    int rows;
    int st = run_list(P(s), P_K_LIST, &p, "SELECT kernels", &r, sizeof *a, (void **)&a, &rows);
    if (st != CV_STORE_OK)
        return st;
    for (int i = 0; i < rows; i++) {
        snprintf(a[i].name, sizeof a[i].name, "%s", PQgetvalue(r, i, 0));
        a[i].created_ms = v_i64(r, i, 1);
        if (!v_dup(r, i, 2, &a[i].meta_json)) {
            cv_store_kernels_free(a, (size_t)rows);
            PQclear(r);
            return CV_STORE_NOMEM;
        }
    }
    PQclear(r);
    *out = a;
    *n = (size_t)rows;
    return CV_STORE_OK;
}

static int pg_kernel_delete(struct cv_store *s, const char *name) {
    struct params p = {0};
    p_text(&p, name);
    int64_t rows;
    int st = run_count(P(s), P_K_DELETE, &p, "DELETE kernel", &rows);
    return st == CV_STORE_OK && rows == 0 ? cv__store_fail(CV_STORE_NOT_FOUND, "no such kernel")
                                          : st;
}

static const struct cv_store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .ping = pg_ping,
    .job_insert = pg_job_insert,
    .job_get = pg_job_get,
    .job_list = pg_job_list,
    .job_count = pg_job_count,
    .job_claim = pg_job_claim,
    .job_claim_many = pg_job_claim_many,
    .job_renew = pg_job_renew,
    .job_orphan = pg_job_orphan,
    .job_release = pg_job_release,
    .job_finish = pg_job_finish,
    .job_cancel = pg_job_cancel,
    .job_delete = pg_job_delete,
    .append = pg_append,
    .events_read = pg_events_read,
    .checkpoint_get = pg_checkpoint_get,
    .retain = pg_retain,
    .kernel_put = pg_kernel_put,
    .kernel_get = pg_kernel_get,
    .kernel_list = pg_kernel_list,
    .kernel_delete = pg_kernel_delete,
};

/* ---- the listener thread ------------------------------------------------------------------- */

static bool own_pid(struct pstore *ps, int pid) {
    for (int i = 0; i < N_CONNS; i++)
        if (atomic_load(&ps->pids[i]) == pid)
            return true;
    return false;
}

/* "k:<id>:<seq>" -> a listener call. Ignores what it does not understand. */
static void deliver(struct pstore *ps, const char *payload) {
    char kind = payload[0];
    if (payload[1] != ':')
        return;
    const char *id = payload + 2;
    const char *colon = strrchr(id, ':');
    if (colon == NULL)
        return;
    char idbuf[40];
    size_t idlen = (size_t)(colon - id);
    if (idlen >= sizeof idbuf)
        return;
    memcpy(idbuf, id, idlen);
    idbuf[idlen] = '\0';
    int64_t seq = strtoll(colon + 1, NULL, 10);
    enum cv_store_note note = kind == 'q'   ? CV_STORE_NOTE_QUEUED
                              : kind == 'e' ? CV_STORE_NOTE_EVENTS
                              : kind == 's' ? CV_STORE_NOTE_STATE
                              : kind == 'c' ? CV_STORE_NOTE_CANCEL
                                            : 0;
    if (note == 0)
        return;
    /* own notes were filtered out (own_pid) and go to the listener directly */
    cv__store_notify(&ps->base, note, idlen ? idbuf : NULL,
                     note == CV_STORE_NOTE_EVENTS ? seq : CV_STORE_SEQ_ELSEWHERE);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *listener_main(void *arg) {
    struct pstore *ps = arg;
    int backoff = 0;
    while (!atomic_load(&ps->stop)) {
        PGconn *c = connect_one(ps, "convd-listen");
        PGresult *r = c ? PQexec(c, "LISTEN " NOTIFY_CHANNEL) : NULL;
        if (c == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
            PQclear(r);
            if (c)
                PQfinish(c);
            backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
            if (backoff > BACKOFF_MAX_MS)
                backoff = BACKOFF_MAX_MS;
            for (int t = 0; t < backoff && !atomic_load(&ps->stop); t += 50)
                sleep_ms(50);
            continue;
        }
        PQclear(r);
        backoff = 0;
        /* we may have missed notifications while disconnected: tell the server to look */
        cv__store_notify(&ps->base, CV_STORE_NOTE_QUEUED, NULL, -1);
        while (!atomic_load(&ps->stop)) {
            struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
            int pr = poll(&pfd, 1, LISTEN_POLL_MS);
            if (pr < 0 && errno != EINTR)
                break;
            if (pr > 0 && PQconsumeInput(c) != 1)
                break;
            PGnotify *nt;
            while ((nt = PQnotifies(c)) != NULL) {
                if (!own_pid(ps, nt->be_pid))
                    deliver(ps, nt->extra);
                PQfreemem(nt);
            }
            if (PQstatus(c) != CONNECTION_OK)
                break;
        }
        PQfinish(c);
    }
    return NULL;
}

/* ---- open: connect, migrate, start the listener --------------------------------------------- */

static int read_password_file(const char *path, char **out) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return cv__store_fail(CV_STORE_INVALID, "postgres: cannot read the password file %s", path);
    char line[1024];
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!got)
        return cv__store_fail(CV_STORE_INVALID, "postgres: the password file %s is empty", path);
    line[strcspn(line, "\r\n")] = '\0';
    *out = strdup(line);
    memset(line, 0, sizeof line);
    return *out ? CV_STORE_OK : CV_STORE_NOMEM;
}

static int simple(PGconn *c, const char *sql, PGresult **keep) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        int st = fail_res(c, r, "migration");
        PQclear(r);
        return st == CV_STORE_INVALID ? CV_STORE_CORRUPT : st;
    }
    if (keep)
        *keep = r;
    else
        PQclear(r);
    return CV_STORE_OK;
}

static int migrate(PGconn *c) {
    int st = simple(c, "BEGIN", NULL);
    if (st != CV_STORE_OK)
        return st;
    PGresult *r = NULL;
    st = simple(c, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", NULL);
    if (st == CV_STORE_OK)
        st = simple(c,
                    "SELECT to_regclass('cv_schema_version') IS NOT NULL, "
                    "to_regclass('cv_jobs') IS NOT NULL",
                    &r);
    int version = 0;
    if (st == CV_STORE_OK) {
        bool has_version = v_bool(r, 0, 0), has_jobs = v_bool(r, 0, 1);
        PQclear(r);
        r = NULL;
        if (has_version) {
            st = simple(c, "SELECT version FROM cv_schema_version", &r);
            if (st == CV_STORE_OK) {
                if (PQntuples(r) != 1 || (version = (int)v_i64(r, 0, 0)) < 1)
                    st = cv__store_fail(CV_STORE_CORRUPT,
                                        "postgres: cv_schema_version is empty or invalid");
                PQclear(r);
            }
        } else if (has_jobs) {
            st = cv__store_fail(CV_STORE_CORRUPT,
                                "postgres: a cv_jobs table exists without cv_schema_version: "
                                "not a convd store");
        }
    }
    if (st == CV_STORE_OK && version > N_MIGRATIONS)
        st = cv__store_fail(CV_STORE_TOO_NEW,
                            "postgres: the database has convd schema version %d, newer than "
                            "this convd's %d: use a newer convd (refusing to touch it)",
                            version, N_MIGRATIONS);
    if (st == CV_STORE_OK && version == 0)
        st = simple(c,
                    "CREATE TABLE cv_schema_version(version int NOT NULL);"
                    "INSERT INTO cv_schema_version VALUES(0)",
                    NULL);
    for (int v = version; st == CV_STORE_OK && v < N_MIGRATIONS; v++) {
        st = simple(c, migrations[v], NULL);
        if (st == CV_STORE_OK) {
            char sql[80];
            snprintf(sql, sizeof sql, "UPDATE cv_schema_version SET version = %d", v + 1);
            st = simple(c, sql, NULL);
        }
    }
    if (st == CV_STORE_OK)
        st = simple(c, "COMMIT", NULL);
    if (st != CV_STORE_OK) {
        r = PQexec(c, "ROLLBACK");
        PQclear(r);
    }
    return st;
}

int cv__store_postgres_open(const char *url, const struct cv_store_options *o,
                            struct cv_store **out) {
    struct pstore *ps = calloc(1, sizeof *ps);
    if (ps == NULL)
        return CV_STORE_NOMEM;
    ps->base.ops = &pg_ops;
    ps->timeout_ms = o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 5000;
    pthread_mutex_init(&ps->mu, NULL);
    pthread_cond_init(&ps->cond, NULL);
    ps->url = strdup(url);
    int st = ps->url ? CV_STORE_OK : CV_STORE_NOMEM;
    if (st == CV_STORE_OK && o->password_file != NULL && o->password_file[0] != '\0')
        st = read_password_file(o->password_file, &ps->password);
    PGconn *c = NULL;
    int64_t deadline = mono_ms() + OPEN_RETRY_MS;
    while (st == CV_STORE_OK && (c = connect_one(ps, "convd")) == NULL) {
        if (mono_ms() >= deadline) {
            st = CV_STORE_UNAVAILABLE; /* cv_store_errmsg has libpq's reason */
            break;
        }
        sleep_ms(250);
    }
    if (st == CV_STORE_OK)
        st = migrate(c);
    if (st == CV_STORE_OK)
        st = prepare_all(c);
    if (st == CV_STORE_OK) {
        ps->conns[0].c = c;
        ps->conns[0].be_pid = PQbackendPID(c);
        atomic_store(&ps->pids[0], ps->conns[0].be_pid);
        c = NULL;
        if (pthread_create(&ps->listener, NULL, listener_main, ps) == 0)
            ps->listener_started = true;
        else
            st = cv__store_fail(CV_STORE_NOMEM, "postgres: cannot start the listener thread");
    }
    if (c)
        PQfinish(c);
    if (st != CV_STORE_OK) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s", cv_store_errmsg());
        pg_close(&ps->base);
        cv__store_fail(st, "%s", keep);
        return st;
    }
    *out = &ps->base;
    return CV_STORE_OK;
}
