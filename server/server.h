/* convd server internals: configuration, logging, the worker pool, jobs and their event logs,
 * HTTP glue and route handlers. Private to server/: nothing outside includes this header.
 *
 * Threads (see notes/style.md §2.4):
 * - libmicrohttpd runs one thread per connection; handlers parse JSON and may block waiting
 *   for a job, but never compute.
 * - One fixed pool of worker threads (pool.c) runs every compute job; each job may use
 *   config.threads OpenMP threads, and workers * threads never exceeds the cores.
 * - Jobs (job.c) carry their own mutex and condition variable; the worker appends events,
 *   stream readers (stream.c) wait for them. */
#ifndef CONVD_SERVER_H
#define CONVD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "convd/api.h"
#include "cv_store.h"
#include "reqparse.h"

#define CV_VERSION "0.1.0"

/* TLS 1.2 and 1.3 only; key exchange by (EC)DHE alone, so every session is forward secret;
 * AEAD ciphers only (no CBC, no SHA-1 MACs, no static RSA such as AES128-SHA). */
#define CV_TLS_PRIORITIES_DEFAULT                                                                  \
    "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"         \
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"

/* ---- config.c: flags and CONVD_* environment variables ----------------------------------- */

enum cv_log_format {
    CV_LOG_FORMAT_JSON = 0,
    CV_LOG_FORMAT_TEXT = 1,
};

struct cv_config {
    char listen[300];           /* "host:port" as given; host may be an IPv6 literal in [] */
    int workers;                /* worker threads in the pool, >= 1 */
    int threads;                /* OpenMP threads per job, >= 1 */
    int queue;                  /* jobs waiting beyond the running ones, >= 1 */
    int64_t max_body;           /* bytes of a request body */
    int64_t max_elements;       /* elements of one tensor */
    int32_t max_steps;          /* steps of one training */
    int64_t max_macs;           /* multiply-adds of one /corr2d, or of one training step */
    int64_t memory_budget;      /* bytes of request bodies and replies held at once */
    int job_history;            /* finished jobs kept */
    double drain_timeout;       /* seconds running jobs get to finish on SIGTERM */
    double heartbeat;           /* seconds between SSE keep-alive comments */
    int max_connections;        /* concurrent connections served in full */
    int max_connections_per_ip; /* of them from one client address (0: max_connections / 4) */
    double header_timeout;      /* seconds a client has to send its request headers */
    int64_t min_rate;           /* bytes a second a request body must at least arrive at */
    double idle_timeout;        /* seconds a connection may stay quiet (MHD's timeout) */
    enum cv_log_format log_format;
    char probe_url[300];      /* --probe URL */
    char token_file[300];     /* --token-file: its first line is the bearer token */
    char token[300];          /* the bearer token ("" = no auth), from the file or CONVD_TOKEN */
    char tls_cert[300];       /* --tls-cert PEM file ("" = plain HTTP) */
    char tls_key[300];        /* --tls-key PEM file */
    char store[300];          /* --store URL: memory, sqlite:PATH, postgres://... */
    char store_sync[300];     /* --store-sync normal|full */
    int64_t store_memory_max; /* bytes the memory store may hold */
    double checkpoint_every;  /* seconds between training checkpoints; 0 = none */
    int max_attempts;         /* runs of one job before it fails too_many_attempts */
    double job_ttl;           /* seconds a finished job is kept; 0 = no age limit */
    double lease;             /* seconds a claimed job's lease lasts between renewals */
    char tls_priorities[300]; /* --tls-priorities: a GnuTLS priority string */
};

/* Outcome of cv_config_load besides success. */
enum cv_config_outcome {
    CV_CONFIG_OUTCOME_RUN = 0,   /* start the daemon */
    CV_CONFIG_OUTCOME_EXIT = 1,  /* --help or --version printed; exit 0 */
    CV_CONFIG_OUTCOME_PROBE = 2, /* --probe URL: run cv_probe_run and exit with its result */
};

/* `convd --probe URL`: GETs URL ("http://host:port/path") and returns 0 when it answers 2xx,
 * 1 otherwise (for container health checks; the runtime image has no curl). */
int cv_probe_run(const char *url);

/* Fills *cfg from defaults, then CONVD_* environment variables, then argv (flags win).
 * Returns CV_OK with *outcome set, or CV_EINVAL after printing a one-line reason to stderr
 * (unknown flag, bad number, workers*threads above the cores). */
int cv_config_load(struct cv_config *cfg, int argc, char **argv, enum cv_config_outcome *outcome);

/* ---- log.c: one line per event on stderr ------------------------------------------------- */

/* Sets the format of later lines (JSON by default). Call before any thread logs. */
void cv_log_init(enum cv_log_format format);

/* What an access-log line carries. Strings are borrowed; job_id may be NULL. */
struct cv_log_request {
    const char *method, *path, *request_id, *job_id;
    int status;
    uint64_t bytes_in, bytes_out;
    double duration_ms;
};

/* Writes one access-log line (one write(2), so lines from many threads never interleave). */
void cv_log_request(const struct cv_log_request *r);

/* Writes one line {"ts","level","msg", ...extra} where extra_json is either NULL or a
 * comma-separated list of already-encoded JSON members, e.g. "\"port\":8080". */
void cv_log_msg(const char *level, const char *msg, const char *extra_json);

/* Writes a wall-clock time (Unix milliseconds) as RFC 3339 UTC with milliseconds,
 * "2026-11-25T14:30:05.123Z", into out (at least 32 bytes). */
void cv_log_format_time(double unix_ms, char *out, size_t cap);

/* Wall-clock milliseconds since the Unix epoch. */
double cv_now_unix_ms(void);

/* Appends s to out (capacity cap, NUL-terminated) as the body of a JSON string (escaped).
 * Returns the new length; truncates rather than overflow. */
size_t cv_log_json_escape(char *out, size_t cap, size_t len, const char *s);

/* ---- pool.c: the one bounded worker pool ------------------------------------------------- */

struct cv_pool;

/* Work item: fn(arg, n_threads) runs on a worker thread. */
typedef void (*cv_pool_fn)(void *arg, int n_threads);

/* Starts `workers` threads sharing a FIFO of at most `queue` waiting items; each item may use
 * `threads` OpenMP threads. Returns CV_OK with *out set, or CV_ENOMEM/CV_EINVAL. Free with
 * cv_pool_free. */
int cv_pool_new(int workers, int threads, int queue, struct cv_pool **out);

/* Queues fn(arg). Returns CV_OK, or CV_EAGAIN when the queue is full (nothing queued; never
 * blocks), or CV_ECANCELED when the pool is stopping. arg stays the caller's. */
int cv_pool_submit(struct cv_pool *pool, cv_pool_fn fn, void *arg);

/* Items queued and items running right now (for drain and metrics). */
void cv_pool_counts(struct cv_pool *pool, int *queued, int *running);

/* True when a cv_pool_submit now would be accepted: the pool is not stopping and its queue has
 * room. Callers that run tiny work themselves use it to refuse work as the pool would. */
bool cv_pool_admits(struct cv_pool *pool);

/* Stops taking work, lets the workers finish what is queued, joins them and frees the pool.
 * NULL-safe. */
void cv_pool_free(struct cv_pool *pool);

/* ---- job.c: a unit of compute with an append-only event log ------------------------------ */

enum cv_job_kind {
    CV_JOB_KIND_CORR2D = 0,
    CV_JOB_KIND_TRAIN = 1,
};

enum cv_job_state {
    CV_JOB_STATE_QUEUED = 0,
    CV_JOB_STATE_RUNNING = 1,
    CV_JOB_STATE_SUCCEEDED = 2,
    CV_JOB_STATE_FAILED = 3,
    CV_JOB_STATE_CANCELLING = 4,
    CV_JOB_STATE_CANCELLED = 5,
};

/* One event of a job: its seq is job->base_seq + its index in job->events. */
struct cv_job_event {
    const char *type; /* "start", "step", "resumed", "done", "error" (static strings) */
    char *json;       /* owned; one JSON object, no newline */
    size_t len;
};

struct cv_persist_ckpt;

/* A job this process knows live: a synchronous /corr2d, or a registered job (POST /jobs,
 * /train) between its insert or claim and the commit of its end. A registered job's durable
 * state is in the store (cv_srv.store); the memory here holds only what is not written yet
 * (events are trimmed once the writer thread has committed them) and what running needs. A
 * finished job keeps nothing in memory: it is read from the store. */
struct cv_job {
    char id[40]; /* "j-" + 32 hex digits from getrandom: unguessable */
    enum cv_job_kind kind;
    bool registered; /* stored and listed (async jobs and /train); fixed at creation */
    bool resumable;  /* POST /jobs: another attempt resumes it; /train: it cannot */
    atomic_int refs;
    atomic_bool cancel;  /* set by cv_job_cancel; read by the worker after every step */
    atomic_bool suspend; /* drain: checkpoint, hand back to the store, stop (resumable jobs) */
    atomic_bool fenced;  /* the store says another attempt owns it: write nothing more */
    atomic_bool noted;   /* a state note named it while it waited here: look it up in the store */
    double created_ms;   /* monotonic clock */
    double started_ms;   /* monotonic clock when a worker took it */

    pthread_mutex_t mu;  /* guards every field below */
    pthread_cond_t cond; /* broadcast on each new event, each commit and on state changes */
    enum cv_job_state state;
    int32_t attempt;             /* the store's fencing token; 0 until claimed */
    struct cv_job_event *events; /* events not yet trimmed: seqs base_seq .. next_seq-1 */
    char *params_json;           /* the settings as JSON ("params"), owned; set at creation */
    double first_loss;           /* worker only: the first step's loss */
    bool warned_rising;          /* worker only: the loss_rising warning was sent */
    size_t n_events, cap_events;
    int64_t base_seq;    /* seq of events[0] */
    int64_t written_seq; /* last seq committed to the store (-1: none); readers send only up to
                            it, so an id a client saw survives a crash */
    bool terminal;       /* the last event (done/error) has been appended (and committed) */
    bool listed;         /* in the registry */
    bool ending;         /* an end without running is being committed (cancel while queued), or the
                            drain is handing the claimed, unstarted job back to the store */
    double created_unix_ms, started_unix_ms, finished_unix_ms; /* wall clock; 0 = not yet */
    int32_t step;                                              /* last step done (train) */
    double last_loss;       /* its loss; NaN before the first step */
    char *result_json;      /* registered jobs: the rendered result once terminal */
    const char *error_code; /* static string when failed, else NULL */
    char error_detail[200];
    unsigned char *ckpt; /* a checkpoint blob for the writer to commit, or NULL */
    size_t ckpt_len;
    int32_t ckpt_step;
    double elapsed_before; /* compute ms of earlier attempts (a resumed job) */
    bool progress_dirty;   /* step/loss changed since the writer last looked */

    /* Kind-specific work, owned by the job, touched only by the worker while running and by
     * others after `terminal` is seen. */
    struct cv_corr2d_request corr2d;
    struct cv_train_request train;
    struct cv_persist_ckpt *resume; /* where a resumed attempt starts (owned), or NULL */
    int status;                     /* compute status of a finished job (CV_OK, ...) */
    struct cv_train_result result;
    double *losses; /* train: every step's loss, params.steps entries */
    double elapsed_ms;
    double last_ckpt_ms; /* worker only */
};

/* Creates a job of `kind` with one reference, taking ownership of *req (a struct
 * cv_corr2d_request or cv_train_request, which is left empty). Nothing is stored or listed yet:
 * registered jobs go through cv_job_register. Returns CV_OK or CV_ENOMEM (then *req is
 * untouched). */
int cv_job_new(enum cv_job_kind kind, void *req, bool registered, struct cv_job **out);

/* Stores a new registered job and lists it: POST /jobs (queued: the dispatcher claims it) or
 * POST /train (running, owned by this process, attempt 1; submit it to the pool next). Its
 * events so far (the start event) are written with it. Returns CV_OK, or CV_EAGAIN when the
 * store is unavailable (reply 503 store_unavailable; nothing was stored). */
int cv_job_register(struct cv_job *job, bool queued);

/* Forgets a registered job whose submission failed after cv_job_register(queued = false):
 * deletes it from the store and the registry. */
void cv_job_unregister(struct cv_job *job);

/* Adds a reference and returns job. */
struct cv_job *cv_job_ref(struct cv_job *job);

/* Drops a reference; the last one frees the job and all it owns. NULL-safe. */
void cv_job_unref(struct cv_job *job);

/* Asks a running job to stop (it ends within one step, cancelled). Idempotent. */
void cv_job_cancel(struct cv_job *job);

/* Appends an event (takes ownership of json, which may be NULL when memory ran out: then a
 * fixed error text is used) and wakes the writer. Not for terminal events (see job.c). */
void cv_job_push_event(struct cv_job *job, const char *type, char *json, size_t len);

/* Submits the job to the pool (the pool holds a reference until the worker is done).
 * Returns CV_OK, CV_EAGAIN (queue full) or CV_ECANCELED (stopping). */
int cv_job_submit(struct cv_job *job, struct cv_pool *pool);

/* Waits until the job is terminal or `timeout_ms` passes. Returns true when terminal. */
bool cv_job_wait_terminal(struct cv_job *job, int timeout_ms);

/* Name of a state ("queued", "running", ...). */
const char *cv_job_state_name(enum cv_job_state state);

/* The SSE event type of a stored event body ("step", "done", ...; "message" when unknown),
 * copied into out (at least 16 bytes). */
void cv_job_event_type(const char *json, char *out, size_t cap);

/* Builds a live job from a claimed store row (its request blob): for a job this process did
 * not create (inserted before a restart, or by another replica). Returns CV_OK or CV_EINVAL
 * (a damaged request). */
int cv_job_from_row(const struct cv_store_job *row, struct cv_job **out);

/* Ends a claimed job without running it (process_lost, too_many_attempts): writes its terminal
 * event and state to the store. */
void cv_job_end_unrun(const struct cv_store_job *row, const char *status, const char *code,
                      const char *detail);

/* A live job that the store just ended cancelled while it was queued (DELETE): shows the same
 * end here (done_json, already committed) and leaves the registry. */
void cv_job_retire_cancelled(struct cv_job *job, const char *done_json);

/* ---- jobs registry (job.c): live registered jobs ------------------------------------------ */

/* Finds a live registered job by id. Returns it with a new reference (cv_job_unref it), or NULL
 * (not live: look in the store). */
struct cv_job *cv_jobs_find(const char *id);

/* Fills out[0..max) with references to every live registered job; returns how many. */
size_t cv_jobs_snapshot(struct cv_job **out, size_t max);

/* Number of live registered jobs still QUEUED in this process (for --queue admission). */
int cv_jobs_queued(void);

/* Drain: cancels unlisted work (synchronous /corr2d) and live /train jobs and asks claimed
 * resumable jobs to suspend (checkpoint and hand back to the store for the next start). */
void cv_jobs_stop_all(void);

/* Drain of a fleet replica: hands the jobs this process claimed but has not started (waiting
 * for a worker) back to the store's queue at once, so another replica starts them now rather
 * than after --drain-timeout. Jobs a worker already runs are left to the drain. Does store
 * writes (call it from the main thread). */
void cv_jobs_release_waiting(void);

/* Fleet: drops from the registry the jobs this process accepted (POST /jobs) that another
 * replica claimed or ended meanwhile, so they count against neither --queue nor memory, and
 * requests for them read the store. all: looks up every waiting job; else only those a state
 * note named (job->noted): one store read per job another replica took, not per waiting job.
 * Called by the writer thread (does store reads). */
void cv_jobs_forget_taken(bool all);

/* Drops one job accepted here and still waiting (attempt 0) from the registry, as
 * cv_jobs_forget_taken does, without asking the store: for a state note another replica sent
 * about it (it claimed or ended the job). Does nothing when the job was claimed here meanwhile. */
void cv_jobs_forget(struct cv_job *job);

/* Number of jobs not yet done here: registered ones this process runs or has claimed, and
 * unregistered ones submitted to the pool and not finished (drain waits for 0). */
int cv_jobs_active(void);

/* Fills a view of the job for the api layer's dumps, using the caller's buffers for the
 * times; the view borrows from the job, which must stay referenced and whose mu the caller
 * must hold while the view is used. with_losses: the result keeps every step's loss. */
void cv_job_view_locked(struct cv_job *job, struct cv_api_job_view *v, char times[3][40],
                        bool with_losses);

/* The job's "name" and "labels" (JSON text) as given at submission; NULL when none. */
const struct cv_api_job_meta *cv_job_meta(const struct cv_job *job);

/* ---- kreg.c: users' named kernels, kept in the store's kernels table ---------------------- */

/* Installs the registry as the api layer's kernel resolver. Call once before serving (after
 * cv_srv.store is open). Every function below reads or writes cv_srv.store; a failed store call
 * is logged and returns CV_EAGAIN (answer 503 store_unavailable) or CV_ENOMEM. */
void cv_kreg_init(void);

/* Saves a copy of weight (rank as written) under name, replacing a saved kernel of that name
 * (*replaced). source is the job id it came from, or NULL. Returns CV_OK, CV_ENOMEM, CV_EAGAIN
 * (store unavailable), or CV_ETOOBIG when 256 kernels are saved already. */
int cv_kreg_put(const char *name, const struct cv_tensor *weight, int rank, const char *source,
                bool *replaced);

/* Copies the kernel named name into *out (caller frees) with its rank. False when none, or when
 * the store failed (logged). */
bool cv_kreg_get(const char *name, struct cv_tensor *out, int *rank);

/* Deletes a saved kernel (*found false when there was none). Returns CV_OK or CV_EAGAIN. */
int cv_kreg_delete(const char *name, bool *found);

/* GET /kernels: built-in and saved kernels into *body (caller free()s). Returns CV_OK,
 * CV_ENOMEM or CV_EAGAIN (then *body is NULL). */
int cv_kreg_list_dump(char **body, size_t *len);

/* One saved kernel into *body (caller free()s); *found false (and *body NULL) when there is
 * none. Returns CV_OK, CV_ENOMEM or CV_EAGAIN. */
int cv_kreg_dump(const char *name, char **body, size_t *len, bool *found);

/* Fills a view of a stored job row (borrowed: the row must outlive the view). */
/* with_losses: the result keeps every step's loss (?include=losses). */
void cv_job_view_row(const struct cv_store_job *row, struct cv_api_job_view *v, char times[3][40],
                     bool with_losses);

/* ---- persist.c: request and checkpoint blobs --------------------------------------------- */

/* A training's state after `step` steps: everything a resumed run needs. Owns its arrays. */
struct cv_persist_ckpt {
    int32_t step;
    struct cv_tensor weight;
    float *bias; /* n_bias entries or NULL */
    int64_t n_bias;
    int64_t optim_t;
    float *buf1, *buf2; /* n_optim entries each, or NULL */
    int64_t n_optim;
    double *losses; /* n_losses (== step) entries */
    int64_t n_losses;
    double elapsed_ms; /* compute time up to this step, all attempts */
};

/* Encoders return a malloc'd blob (length in *len), or NULL when out of memory. The
 * checkpoint's arrays are borrowed. */
unsigned char *cv_persist_train_request(const struct cv_train_request *t, size_t *len);
unsigned char *cv_persist_corr2d_request(const struct cv_corr2d_request *c, size_t *len);
unsigned char *cv_persist_checkpoint(const struct cv_persist_ckpt *c, size_t *len);

/* Decoders fill *out (free with cv_api_*_request_free / cv_persist_ckpt_free). Return CV_OK
 * or CV_EINVAL for a damaged or inconsistent blob (then *out is empty). */
int cv_persist_train_decode(const void *blob, size_t len, struct cv_train_request *out);
int cv_persist_corr2d_decode(const void *blob, size_t len, struct cv_corr2d_request *out);
int cv_persist_checkpoint_decode(const void *blob, size_t len, struct cv_persist_ckpt *out);
void cv_persist_ckpt_free(struct cv_persist_ckpt *c);

/* ---- writer.c: the store's writer thread and the claim loop ------------------------------- */

/* Starts the writer thread (group commit of events, progress and checkpoints; lease renewal;
 * retention) and the dispatcher thread (claims queued jobs into the pool). */
int cv_writer_start(void);

/* Stops both threads after a last flush. */
void cv_writer_stop(void);

/* Wakes the writer (new events or a checkpoint) / the dispatcher (a job queued, a worker free). */
void cv_writer_kick(void);
void cv_dispatch_kick(void);

/* Store notifications for a reader of a job that is not live here (queued, or run by another
 * replica): a watch counts the store's notes that name its job (pg: LISTEN/NOTIFY from the
 * whole fleet), and every note that names no job (notes may have been missed). So a reader
 * wakes for its own job only, not for every job of the fleet. Add before the first store
 * read, remove before freeing; cv_store_watch_wait waits up to ms for the count to pass gen
 * and returns true when it did (false: the slow poll's timeout; notes are hints, the store is
 * the truth). */
struct cv_note_watch {
    char id[40];
    uint64_t gen; /* guarded by the notes' mutex */
    struct cv_note_watch *next;
};
void cv_store_watch_add(struct cv_note_watch *w, const char *id);
void cv_store_watch_remove(struct cv_note_watch *w);
uint64_t cv_store_watch_gen(struct cv_note_watch *w);
bool cv_store_watch_wait(struct cv_note_watch *w, uint64_t gen, int ms);

/* The writer lock: held while a batch is collected and committed, and by a worker while it
 * commits its job's end, so the two never interleave one job's events. */
void cv_writer_lock(void);
void cv_writer_unlock(void);

/* Commits everything the job has not written yet (writer lock NOT held). Returns a store
 * status. */
int cv_writer_flush_job(struct cv_job *job);

/* Marks the store healthy / failing (for /readyz), logging each change once. */
void cv_store_health(int status);

/* Retention after a job ended: deletes finished jobs beyond --job-history at once, so the
 * count is exact when the next client looks. */
void cv_writer_retain_now(void);

/* ---- guard.c: connection admission and request deadlines ---------------------------------- */

struct MHD_Connection;
enum MHD_ConnectionNotificationCode;

/* libmicrohttpd's connection limit to configure: --max-connections plus a reserve for probes
 * and for the replies that tell surplus clients to come back later. */
int cv_guard_hard_limit(const struct cv_config *cfg);

/* Starts the reaper thread that answers 408 to connections past their request deadline (with
 * use_tls, it only shuts them down). Returns CV_OK or CV_ENOMEM. Call once before serving. */
int cv_guard_start(bool use_tls);

/* The MHD_OPTION_NOTIFY_CONNECTION callback: tracks each connection (socket_context holds the
 * guard's entry, owned by the guard) from its start to its close. */
void cv_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);

/* The headers of a request on conn are in; its body of body_bytes (the most expected) now has
 * until --header-timeout + body_bytes / --min-rate seconds. Returns true when the connection
 * was admitted over a limit: then only probes may be served on it. */
bool cv_guard_request_begin(struct MHD_Connection *conn, int64_t body_bytes);

/* The whole request on conn is in: no deadline while it is served. */
void cv_guard_request_ready(struct MHD_Connection *conn);

/* The request on conn is complete: the next one on the connection gets a fresh deadline. */
void cv_guard_request_done(struct MHD_Connection *conn);

/* ---- metrics.c: counters for GET /metrics (Prometheus text format) ---------------------- */

/* Counts one finished request: route is the route template ("/jobs/{id}"), or "unmatched". */
void cv_metrics_request(const char *route, int code, double seconds);

/* Counts a job that reached a terminal state. */
void cv_metrics_job_done(enum cv_job_kind kind, enum cv_job_state state);

/* Counts one training step. */
void cv_metrics_train_step(void);

/* Store figures: a claim that took a job and how long it took; a failed store call; a job
 * resumed from a checkpoint. */
void cv_metrics_store_claim(double seconds);
void cv_metrics_store_error(void);
void cv_metrics_store_resume(void);

/* The exposition text (caller free()s), with the pool's gauges; NULL when out of memory. */
char *cv_metrics_render(struct cv_pool *pool, size_t *len);

/* ---- http.c / routes.c / stream.c --------------------------------------------------------- */

struct MHD_Connection;
struct MHD_Daemon;

/* Everything handlers share: the configuration, the pool, and the draining flag. */
struct cv_server {
    struct cv_config cfg;
    struct cv_pool *pool;
    struct MHD_Daemon *daemon;
    atomic_bool draining;    /* SIGTERM seen: new work gets 503 */
    atomic_int open_streams; /* stream responses not yet finished */
    struct cv_store *store;  /* jobs, events, checkpoints (cv_store.h) */
    char owner[64];          /* this process's replica id in the store's leases */
    atomic_bool store_ok;    /* false after a failed write, until one succeeds */
};

extern struct cv_server cv_srv;

/* Per-request state, allocated on the first MHD call and freed when the request completes. */
struct cv_req {
    const struct cv_route *route;
    char method[16];
    char path[256];
    char request_id[64];
    double t0_ms;
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    size_t content_length; /* from the header when known and within --max-body, else 0 */
    bool over_budget;      /* all bodies together would pass the memory budget: 503 */
    int64_t reserved;      /* bytes of the memory budget held for this request's reply */
    bool replied;
    int status; /* HTTP status of the reply */
    uint64_t bytes_out;
    atomic_uint_fast64_t stream_bytes; /* bytes written by a stream reader */
    char job_id[40];
    char path_id[CV_REQPARSE_ID_CAP]; /* the segment a "{id}" of the route matched */
    char server_timing[160];          /* Server-Timing header value, \"\" for none */
    char location[112];               /* Location header value, \"\" for none */
    const char *query_after;          /* borrowed from MHD for the request: ?after= */
    const char *const *extra_headers; /* name/value pairs, NULL-terminated; static; or NULL */
};

/* The route table (routes.c), ended by a {NULL} entry. */
extern const struct cv_route cv_routes[];

/* Starts libmicrohttpd on cfg.listen. Returns CV_OK with the bound port in *port, or CV_EINVAL
 * after logging why. */
int cv_http_start(struct cv_server *srv, int *port);

/* Queues a complete reply with `body` (copied) and the usual headers. Returns an MHD_Result. */
int cv_http_reply(struct MHD_Connection *conn, struct cv_req *req, int status,
                  const char *content_type, const char *body, size_t len);

/* Like cv_http_reply, but takes ownership of a malloc'd body (no copy; freed by
 * libmicrohttpd when sent). */
int cv_http_reply_take(struct MHD_Connection *conn, struct cv_req *req, int status,
                       const char *content_type, char *body, size_t len);

/* Queues the problem+json reply of *err (the one place errors become HTTP). */
int cv_http_reply_problem(struct MHD_Connection *conn, struct cv_req *req,
                          const struct cv_api_error *err);

/* 503 store_unavailable with Retry-After, logged with the store's reason. */
int cv_http_reply_store_error(struct MHD_Connection *conn, struct cv_req *req, int store_status);

/* Maps a non-OK status from the pool or compute to a reply: CV_EAGAIN -> 503 queue_full with
 * Retry-After, CV_ECANCELED while draining -> 503 shutting_down, others -> 500. */
int cv_http_reply_status(struct MHD_Connection *conn, struct cv_req *req, int status);

/* Reserves `bytes` of the daemon's memory budget (--memory-budget, shared with request
 * bodies) for req's reply: its output tensor and rendered text. Returns true, or false when
 * the budget would be passed (nothing reserved; answer 503). Released when req completes. */
bool cv_http_reserve(struct cv_req *req, int64_t bytes);

/* True when the client of conn has closed its side (checked without blocking). */
bool cv_http_client_gone(struct MHD_Connection *conn);

/* Queues the streamed reply of job `id` from event seq `from` on (NDJSON, or SSE when sse).
 * job is the live job (a reference is taken) or NULL for one only in the store; events are
 * read from memory while live and from the store otherwise. When cancel_on_close, a client
 * that leaves before the end cancels the job. */
int cv_stream_reply(struct MHD_Connection *conn, struct cv_req *req, const char *id,
                    struct cv_job *job, int64_t from, bool sse, bool cancel_on_close);

/* For a job not live here: reads the first page of its stored log from `from` on and, when it
 * has events, queues the streamed reply starting with them and returns true (*ret is MHD's
 * answer). False when the store has no such event (no job, nothing new yet, or a store error):
 * the caller looks the job up instead. One store read for a finished job's log, not two. */
bool cv_stream_reply_stored(struct MHD_Connection *conn, struct cv_req *req, const char *id,
                            int64_t from, bool sse, int *ret);

/* The web page (clients/web/index.html, app.js and app.css, built in); length in *len. */
const char *cv_page_html(size_t *len);
const char *cv_page_js(size_t *len);
const char *cv_page_css(size_t *len);

/* Monotonic milliseconds. */
double cv_now_ms(void);

/* The CLOCK_MONOTONIC time ms (>= 0) milliseconds from now, as pthread_cond_timedwait takes it
 * for a condition variable made with pthread_condattr_setclock(CLOCK_MONOTONIC). */
struct timespec cv_deadline_ms(double ms);

#endif
