/* convd's job store: the one narrow interface between the server and durable state.
 *
 * Everything convd must not lose lives here: the jobs (request, status, result), their event
 * logs, training checkpoints and user-named kernels. The server never writes SQL; the back ends
 * behind this interface do, each in its own file:
 *
 *   "memory"                    in-process, lost at exit, bounded by bytes (not by job count)
 *   "sqlite:PATH"               one file, one process (a lock refuses a second one), WAL mode
 *   "postgres://..." / "postgresql://..."  (issue 11) shared by a fleet of replicas
 *
 * The model is a job queue as River, Oban or graphile-worker build it, so that one process or a
 * fleet run the same code:
 *
 * - A job is inserted QUEUED (POST /jobs) or directly RUNNING with its owner (POST /train, whose
 *   client is attached to this process). A runner CLAIMS a queued job, or a running one whose
 *   lease expired: the claim sets it RUNNING, stamps the owner, adds 1 to `attempt` and sets
 *   lease_until = now + lease, atomically (one runner wins).
 * - The runner RENEWS the lease while it works (heartbeat); renew also reports a cancel that
 *   was requested anywhere (DELETE on another replica).
 * - Every write of a runner carries the attempt it claimed (the fencing token): events,
 *   progress, checkpoints and the final result are rejected with CV_STORE_FENCED when the job's
 *   attempt has moved on (another runner took it over) or the job is already terminal. A
 *   runner that sees FENCED stops at once and writes nothing more.
 * - FINISH writes the terminal status, the result and the last events in one transaction.
 *   RELEASE hands a running job back to the queue (drain), keeping its checkpoint, so the next
 *   claim resumes it.
 * - Leases use the store's clock (PostgreSQL: now(); sqlite/memory: this process's wall clock).
 *
 * Events are append-only: (job_id, seq) is unique, seq starts at 0 and has no gaps; body is the
 * event's JSON text exactly as streamed. A resumed job continues the sequence (never rewrites).
 *
 * Blobs (the request, checkpoints, kernels) are opaque bytes here; their format is the
 * versioned codec of cv_store_codec.h. Results are JSON text.
 *
 * Errors: every function returns a enum cv_store_status. CV_STORE_UNAVAILABLE means "try again
 * later" (disk full, database locked past the busy timeout, connection lost): the server answers
 * 503 store_unavailable with Retry-After and nothing was written (transactions are atomic).
 * CV_STORE_CORRUPT, CV_STORE_TOO_NEW and CV_STORE_LOCKED come from cv_store_open only and mean
 * "refuse to start". A human-readable reason for the last failure of the calling thread is in
 * cv_store_errmsg().
 *
 * Threads: a struct cv_store is safe to use from any number of threads at once. Functions
 * block on I/O (sqlite: at most the busy timeout); the compute loop must not call them (the
 * server's writer thread does, in batches).
 *
 * Ownership: strings and blobs passed in are borrowed for the call only. Records returned in
 * out-parameters own their memory; release them with the matching _free function. On failure
 * out-parameters are left empty (nothing to free). */
#ifndef CV_STORE_H
#define CV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- statuses ---------------------------------------------------------------------------- */

enum cv_store_status {
    CV_STORE_OK = 0,
    CV_STORE_NOT_FOUND = 1,   /* no such job / kernel / checkpoint; claim: nothing to claim */
    CV_STORE_FENCED = 2,      /* attempt (or owner) no longer matches, or the job is terminal */
    CV_STORE_EXISTS = 3,      /* a kernel of that name exists and replace was false */
    CV_STORE_UNAVAILABLE = 4, /* transient: disk full, busy past the timeout, connection lost */
    CV_STORE_CORRUPT = 5,     /* the database is not a convd store or is damaged (open) */
    CV_STORE_TOO_NEW = 6,     /* the schema was written by a newer convd (open) */
    CV_STORE_LOCKED = 7,      /* another live process holds this sqlite database (open) */
    CV_STORE_INVALID = 8,     /* bad URL, option or argument (a caller bug or a bad flag) */
    CV_STORE_NOMEM = 9,       /* out of memory; the memory back end: over its byte budget */
};

/* Short English name of a status ("ok", "not found", "fenced", ...); never NULL. */
const char *cv_store_status_str(int status);

/* The reason for the calling thread's last non-OK status from any cv_store_* function, e.g.
 * "sqlite: database or disk is full (INSERT events)"; "" when there is none. The text is
 * thread-local and valid until this thread's next store call. Never contains a password. */
const char *cv_store_errmsg(void);

/* ---- opening ----------------------------------------------------------------------------- */

enum cv_store_sync {
    CV_STORE_SYNC_NORMAL = 0, /* sqlite: synchronous=NORMAL in WAL: survives a process crash */
    CV_STORE_SYNC_FULL = 1,   /* sqlite: synchronous=FULL: also survives power loss */
};

struct cv_store_options {
    enum cv_store_sync sync;   /* --store-sync */
    int busy_timeout_ms;       /* sqlite busy_timeout / pg statement timeout; 0 = default 5000 */
    int64_t memory_max_bytes;  /* memory back end: bytes of jobs, events, blobs it may hold
                                  (0 = default 256 MiB); over it, the oldest finished jobs are
                                  dropped, and when nothing can be dropped writes get NOMEM */
    const char *password_file; /* postgres: file whose first line is the password, or NULL */
};

/* Default options: NORMAL, 5000 ms, 256 MiB, no password file. */
struct cv_store_options cv_store_options_default(void);

struct cv_store;

/* Opens the store named by url ("memory", "sqlite:PATH", "postgres://..."). sqlite creates the
 * file (and not its directory) when missing, takes an exclusive lock (a second process gets
 * CV_STORE_LOCKED with the path in cv_store_errmsg), switches to WAL and migrates the schema.
 * Any back end refuses a schema newer than its own (CV_STORE_TOO_NEW) and a file that is not a
 * convd store (CV_STORE_CORRUPT). o may be NULL for the defaults.
 * Returns CV_STORE_OK with *out set (close with cv_store_close), or an error with *out NULL. */
int cv_store_open(const char *url, const struct cv_store_options *o, struct cv_store **out);

/* Closes the store: finishes pending work, releases the lock. NULL-safe. */
void cv_store_close(struct cv_store *s);

/* Name of the back end: "memory", "sqlite" or "postgres". */
const char *cv_store_backend(const struct cv_store *s);

/* Checks that the store answers (a trivial read; sqlite: also that the last write did not fail
 * for lack of space). Returns CV_STORE_OK or CV_STORE_UNAVAILABLE. For /readyz. */
int cv_store_ping(struct cv_store *s);

/* The schema version this build writes (the value kept in the schema_version table). */
int cv_store_schema_version(void);

/* ---- jobs -------------------------------------------------------------------------------- */

enum cv_store_kind {
    CV_STORE_KIND_CORR2D = 0,
    CV_STORE_KIND_TRAIN = 1,
};

enum cv_store_job_status {
    CV_STORE_JOB_QUEUED = 0,
    CV_STORE_JOB_RUNNING = 1,
    CV_STORE_JOB_SUCCEEDED = 2,
    CV_STORE_JOB_FAILED = 3,
    CV_STORE_JOB_CANCELLED = 4,
};

/* Name of a job status ("queued", "running", "succeeded", "failed", "cancelled"). */
const char *cv_store_job_status_name(enum cv_store_job_status st);

/* True for SUCCEEDED, FAILED and CANCELLED. */
bool cv_store_job_status_terminal(enum cv_store_job_status st);

/* One job row. Times are Unix milliseconds (0 = not yet). Pointers are owned by the record
 * when it was filled by the store (free with cv_store_job_free) and borrowed from the caller
 * when it is passed to cv_store_job_insert. */
struct cv_store_job {
    char id[40]; /* "j-" + 32 hex digits */
    enum cv_store_kind kind;
    enum cv_store_job_status status;
    bool resumable;         /* true: POST /jobs (another attempt resumes it);
                               false: POST /train (its client was attached to the
                               process that died: the next claim ends it) */
    int32_t attempt;        /* claims so far (1 while the first runner runs) */
    char owner[64];         /* replica id of the runner, "" when none */
    int64_t lease_until_ms; /* the runner's lease; 0 when not running */
    bool cancel_requested;  /* DELETE seen; the runner stops at its next renew/step */
    int64_t created_ms, started_ms, finished_ms;
    int32_t step, steps;    /* progress: last step written, steps planned */
    double loss;            /* last reported loss, NaN when none */
    double elapsed_ms;      /* compute time so far (all attempts), NaN when none */
    int64_t last_seq;       /* seq of the last event, -1 when the log is empty */
    char *name;             /* optional user name, NULL when none */
    char *labels_json;      /* optional JSON object of string labels, NULL when none */
    char *params_json;      /* JSON object of the job's settings, NULL when none */
    unsigned char *request; /* the request blob (codec); NULL unless loaded */
    size_t request_len;
    char *result; /* JSON text of the result; NULL unless loaded or none */
    size_t result_len;
    char error_code[32]; /* "" unless FAILED (or CANCELLED with a reason) */
    char error_detail[256];
};

/* Releases what a record owns and leaves it zeroed; NULL-safe. Only for records the store
 * filled. */
void cv_store_job_free(struct cv_store_job *j);

/* Releases n records and the array itself; NULL-safe. */
void cv_store_jobs_free(struct cv_store_job *jobs, size_t n);

/* One event of a job's log. In cv_store_job_insert, cv_store_append and cv_store_job_finish
 * the body is borrowed and seq must continue the job's log (last_seq + 1, + 2, ...; the store
 * checks and answers CV_STORE_INVALID otherwise). Filled by cv_store_events_read, the body is
 * owned (free with cv_store_events_free). */
struct cv_store_event {
    int64_t seq;
    int32_t attempt; /* the attempt that wrote it (set by the store on write) */
    char *body;      /* the JSON text as streamed, no newline */
    size_t len;
};

/* Releases n events and the array; NULL-safe. */
void cv_store_events_free(struct cv_store_event *ev, size_t n);

/* Inserts a new job with its first events (n may be 0). j->status must be QUEUED, or RUNNING
 * with j->owner set (attempt becomes 1, lease_until = now + lease_ms). The store sets
 * created_ms when it is 0; request, name, labels and params are copied. A QUEUED insert
 * notifies CV_STORE_NOTE_QUEUED after commit.
 * Returns OK, INVALID (bad fields, duplicate id), UNAVAILABLE or NOMEM. */
int cv_store_job_insert(struct cv_store *s, const struct cv_store_job *j,
                        const struct cv_store_event *events, size_t n, int64_t lease_ms);

/* What cv_store_job_get loads besides the row. */
enum cv_store_load {
    CV_STORE_LOAD_ROW = 0,     /* the row only: request and result stay NULL */
    CV_STORE_LOAD_REQUEST = 1, /* also the request blob */
    CV_STORE_LOAD_RESULT = 2,  /* also the result text */
};

/* Reads one job into *out (flags: a mask of cv_store_load). Returns OK, NOT_FOUND or
 * UNAVAILABLE. Free *out with cv_store_job_free. */
int cv_store_job_get(struct cv_store *s, const char *id, unsigned flags, struct cv_store_job *out);

/* A filter for cv_store_job_list. Unused fields are zero / NULL. */
struct cv_store_query {
    int status;            /* a cv_store_job_status, or -1 for any */
    const char *name;      /* exact name, or NULL */
    const char *label_key; /* only jobs whose labels[label_key] == label_value, or NULL */
    const char *label_value;
    const char *before_id; /* paging: only jobs listed after this one (newest first), or NULL */
    size_t limit;          /* at most this many (0 = 100) */
};

/* Lists jobs newest first (by created_ms, then id) without request or result. Returns OK with
 * *out (an array of *n records; free with cv_store_jobs_free; NULL when *n is 0), or
 * UNAVAILABLE / NOMEM. */
int cv_store_job_list(struct cv_store *s, const struct cv_store_query *q, struct cv_store_job **out,
                      size_t *n);

/* Counts jobs in `status` (-1: all jobs) into *n, e.g. the fleet's queue depth for metrics. */
int cv_store_job_count(struct cv_store *s, int status, int64_t *n);

/* Claims one job for owner: the oldest QUEUED job, or else the oldest RUNNING job whose lease
 * expired (its runner died). Atomically sets RUNNING, owner, attempt + 1, started_ms (first
 * claim only), lease_until = now + lease_ms, and fills *out with the row and its request blob.
 * The caller decides what an attempt > 1 means (resume, process_lost, too_many_attempts).
 * Returns OK, NOT_FOUND (nothing claimable), UNAVAILABLE. */
int cv_store_job_claim(struct cv_store *s, const char *owner, int64_t lease_ms,
                       struct cv_store_job *out);

/* Claims up to max (>= 1) jobs as cv_store_job_claim does, oldest first, into out[0..*n-1]
 * (the caller's array; free each with cv_store_job_free). PostgreSQL claims them in one
 * statement; the other back ends claim one at a time. Returns OK with *n >= 1, NOT_FOUND
 * (nothing claimable, *n = 0), or UNAVAILABLE (then *n jobs may still have been claimed and
 * must be handled). */
int cv_store_job_claim_many(struct cv_store *s, const char *owner, int64_t lease_ms, size_t max,
                            struct cv_store_job *out, size_t *n);

/* Extends the lease of a running job to now + lease_ms when attempt and owner still match,
 * and reports whether a cancel was requested. Returns OK, FENCED (taken over or terminal:
 * stop), NOT_FOUND (deleted), UNAVAILABLE. */
int cv_store_job_renew(struct cv_store *s, const char *id, int32_t attempt, const char *owner,
                       int64_t lease_ms, bool *cancel_requested);

/* Expires at once the leases of the running jobs of owner (every running job when owner is
 * NULL), so the next claim takes them. For a process that holds the store alone (sqlite,
 * memory) at start, and for a replica restarting under the same id. Sets *n to how many. */
int cv_store_job_orphan(struct cv_store *s, const char *owner, int64_t *n);

/* Hands a running job back to the queue (QUEUED, no owner, lease 0) when attempt matches,
 * keeping its events and checkpoint: the next claim resumes it. Notifies QUEUED.
 * Returns OK, FENCED, NOT_FOUND, UNAVAILABLE. */
int cv_store_job_release(struct cv_store *s, const char *id, int32_t attempt);

/* How a job ends. Pointers are borrowed. */
struct cv_store_finish {
    enum cv_store_job_status status; /* SUCCEEDED, FAILED or CANCELLED */
    const char *result;              /* JSON text, or NULL */
    size_t result_len;
    const char *error_code;              /* or NULL */
    const char *error_detail;            /* or NULL */
    const struct cv_store_event *events; /* the last events, the terminal one last */
    size_t n_events;
    int32_t step; /* final progress */
    double loss;
    double elapsed_ms;
};

/* Ends a running job in one transaction (status, finished_ms, result, error, progress, events,
 * lease cleared, checkpoint deleted) when attempt matches and it is not terminal. Notifies
 * STATE and EVENTS after commit. Returns OK, FENCED, NOT_FOUND, INVALID (bad seq),
 * UNAVAILABLE: on UNAVAILABLE nothing was written and the caller may retry. */
int cv_store_job_finish(struct cv_store *s, const char *id, int32_t attempt,
                        const struct cv_store_finish *f);

/* Requests a cancel. A QUEUED job is ended at once with *if_queued (the caller renders its
 * cancelled result and done event; if_queued->status must be CANCELLED); a RUNNING job gets
 * cancel_requested (its runner sees it at the next renew, or at once through the CANCEL
 * notification on the same process); a terminal job is left alone. *status_after receives the
 * job's status after the call. Returns OK, NOT_FOUND, UNAVAILABLE. */
int cv_store_job_cancel(struct cv_store *s, const char *id, const struct cv_store_finish *if_queued,
                        enum cv_store_job_status *status_after);

/* Deletes a job with its events and checkpoint (any status; the caller should cancel a running
 * one first). Returns OK, NOT_FOUND, UNAVAILABLE. */
int cv_store_job_delete(struct cv_store *s, const char *id);

/* ---- the runner's writes: events, progress, checkpoints (group commit) ------------------- */

/* One job's share of a group commit. Pointers are borrowed. */
struct cv_store_append {
    const char *job_id;
    int32_t attempt;                     /* fencing token from the claim (or the insert) */
    const struct cv_store_event *events; /* n_events new events, seqs continuing the log */
    size_t n_events;
    bool has_progress; /* also set step / loss / elapsed_ms */
    int32_t step;
    double loss;
    double elapsed_ms;
    const unsigned char *checkpoint; /* replaces the job's checkpoint, or NULL */
    size_t checkpoint_len;
    int32_t checkpoint_step;
    int status; /* out: OK, FENCED, NOT_FOUND or INVALID per item */
};

/* Writes n items in ONE transaction (the writer thread's group commit). An item whose attempt
 * does not match or whose job is terminal is skipped with status FENCED (the others are still
 * written). Notifies EVENTS for each written item after commit.
 * Returns OK when the transaction committed (see each item's status), or UNAVAILABLE / NOMEM
 * when nothing was written (every item's status is then set to that value). */
int cv_store_append(struct cv_store *s, struct cv_store_append *items, size_t n);

/* Reads up to max (0 = all) events of a job with seq > after_seq (after_seq = -1: from the
 * start), in order, into *out (free with cv_store_events_free; NULL when *n is 0).
 * Returns OK (also for a job with no newer events), NOT_FOUND (no such job), UNAVAILABLE. */
int cv_store_events_read(struct cv_store *s, const char *id, int64_t after_seq, size_t max,
                         struct cv_store_event **out, size_t *n);

/* Reads the latest checkpoint of a job: its step, the attempt that wrote it and the blob
 * (caller free()s *blob). Returns OK, NOT_FOUND (no checkpoint), UNAVAILABLE. */
int cv_store_checkpoint_get(struct cv_store *s, const char *id, int32_t *step, int32_t *attempt,
                            unsigned char **blob, size_t *len);

/* ---- retention --------------------------------------------------------------------------- */

/* Deletes at most `batch` finished jobs (with their events and checkpoints) that are beyond the
 * newest `keep` finished jobs (keep < 0: no count limit) or finished more than max_age_ms ago
 * (max_age_ms <= 0: no age limit), oldest first, in one short transaction. *deleted receives
 * how many; call again while it equals batch. Never touches queued or running jobs. */
int cv_store_retain(struct cv_store *s, int64_t keep, int64_t max_age_ms, int batch, int *deleted);

/* ---- named kernels (issue 13) ------------------------------------------------------------ */

struct cv_store_kernel {
    char name[65]; /* 1..64 bytes, as the HTTP API allows */
    int64_t created_ms;
    char *meta_json;     /* JSON object (e.g. {"from_job":"j-..."}), or NULL */
    unsigned char *blob; /* the tensor(s), codec-encoded; NULL in lists */
    size_t len;
};

/* Releases what a kernel record owns and leaves it zeroed; NULL-safe. */
void cv_store_kernel_free(struct cv_store_kernel *k);

/* Releases n kernel records and the array; NULL-safe. */
void cv_store_kernels_free(struct cv_store_kernel *k, size_t n);

/* Saves blob under name (1..64 bytes). When the name exists: replaced if replace, else EXISTS.
 * Returns OK, EXISTS, INVALID, UNAVAILABLE, NOMEM. */
int cv_store_kernel_put(struct cv_store *s, const char *name, const unsigned char *blob, size_t len,
                        const char *meta_json, bool replace);

/* Reads one kernel with its blob. Returns OK, NOT_FOUND, UNAVAILABLE. */
int cv_store_kernel_get(struct cv_store *s, const char *name, struct cv_store_kernel *out);

/* Lists every kernel by name, without blobs (*out: free with cv_store_kernels_free). */
int cv_store_kernel_list(struct cv_store *s, struct cv_store_kernel **out, size_t *n);

/* Deletes a kernel. Returns OK, NOT_FOUND, UNAVAILABLE. */
int cv_store_kernel_delete(struct cv_store *s, const char *name);

/* ---- notifications ----------------------------------------------------------------------- */

enum cv_store_note {
    CV_STORE_NOTE_QUEUED = 1, /* a job became claimable (inserted QUEUED, released); id may be
                                 NULL when the back end does not know which */
    CV_STORE_NOTE_EVENTS = 2, /* job id got events up to seq */
    CV_STORE_NOTE_STATE = 3,  /* job id changed status (finished, claimed) */
    CV_STORE_NOTE_CANCEL = 4, /* job id got a cancel request */
};

/* The seq of a note other than EVENTS that another process's write sent (pg: another
 * replica); -1 for this process's own. */
enum { CV_STORE_SEQ_ELSEWHERE = -2 };

/* A listener: called after the change committed, at most once per change (pg folds
 * duplicates; a listener must tolerate missed and repeated notes, and the server keeps a slow
 * poll besides). job_id is borrowed for the call; seq is the last event's seq for EVENTS and -1
 * (this process's write) or CV_STORE_SEQ_ELSEWHERE (another process's) otherwise. It runs on the
 * writing thread (memory, sqlite) or the back end's listener thread (pg); it must be quick and must
 * not call any cv_store_* function. */
typedef void (*cv_store_listener_fn)(void *user, enum cv_store_note note, const char *job_id,
                                     int64_t seq);

/* Sets the one listener (NULL to remove). Call before other threads use the store. */
void cv_store_set_listener(struct cv_store *s, cv_store_listener_fn fn, void *user);

#endif
