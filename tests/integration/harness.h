/* Integration-test harness: runs the real convd binary on 127.0.0.1 (port 0) and talks to it
 * with libcurl. Everything here is bounded: the daemon must announce its port within
 * CV_START_TIMEOUT_S, every transfer has a timeout, and stopping escalates to SIGKILL.
 *
 * Not thread-safe; meant for one test process (a check fork or a plain program) at a time.
 * Call curl_global_init(CURL_GLOBAL_DEFAULT) once in main() before anything here. */
#ifndef CV_HARNESS_H
#define CV_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CV_START_TIMEOUT_S 10 /* the daemon must print its listening line by then */
#define CV_STOP_TIMEOUT_S  15 /* SIGTERM drains streams; after this we SIGKILL */
#define CV_HTTP_TIMEOUT_S  30 /* default per-request bound (CURLOPT_TIMEOUT) */

/* ---- the daemon ------------------------------------------------------------------------ */

struct cv_daemon {
    pid_t pid;           /* 0 when not running */
    int port;            /* from the "listening" log line */
    char log_path[256];  /* the daemon's stderr: listening line, then one access-log line a
                            request */
    char store_dir[256]; /* a fresh directory for the daemon's SQLite store, removed when it
                            has exited; "" when the store is the test's own or memory */
};

/* Starts CONVD_BIN --listen 127.0.0.1:0 followed by args (NULL-terminated, may be NULL), with
 * env ("NAME=value", NULL-terminated, may be NULL) added to the environment. Waits for the
 * listening line. Returns 0, or -1 with the reason and the log printed to stderr.
 * Unless args or env name a store (--store, CONVD_STORE), the daemon gets one of its own: a
 * fresh SQLite file in a mkdtemp directory when CV_TEST_STORE=sqlite, else "memory", so that
 * the whole suite runs against either store and no two daemons share a database. */
int cv_daemon_start(struct cv_daemon *d, const char *const *args, const char *const *env);

/* Sends SIGTERM and waits up to CV_STOP_TIMEOUT_S, then SIGKILLs. Returns the raw wait status
 * (use WIFEXITED/WEXITSTATUS), or -1 when the daemon had already gone or could not be reaped.
 * Removes the log file; a test that fails before it stops the daemon (check ends a failed test's
 * process at once) leaves the log in TMPDIR to read. */
int cv_daemon_stop(struct cv_daemon *d);

/* Waits up to timeout_s for the daemon to exit by itself (after a signal the test sent).
 * Returns the raw wait status, or -1 when it is still running (then it is left running) or
 * was not running. Removes the log file once it has exited. */
int cv_daemon_wait(struct cv_daemon *d, double timeout_s);

/* True while the process exists and has not exited (reaps it if it has). */
bool cv_daemon_alive(struct cv_daemon *d);

/* The daemon's log so far, malloc'd and NUL-terminated (free() it); NULL on error. */
char *cv_daemon_log(const struct cv_daemon *d);

/* ---- plain requests --------------------------------------------------------------------- */

struct cv_reply {
    long status; /* HTTP status; 0 when the transfer failed */
    int curl_code;
    char content_type[128]; /* the headers tests look at, "" when absent */
    char allow[128];
    char retry_after[32];
    char location[256];
    char www_authenticate[128];
    char job_id[64];   /* X-Job-Id */
    long num_connects; /* new connections the transfer opened (0: it reused a kept one) */
    char *body;        /* NUL-terminated (the body itself may contain NULs) */
    size_t body_len;
};

/* One request with its own connection. headers is a NULL-terminated list of "Name: value" (may
 * be NULL); body may be NULL (no body). timeout_s <= 0 means CV_HTTP_TIMEOUT_S. Returns 0 when
 * an HTTP reply arrived, -1 otherwise (r->curl_code says why). Free r with cv_reply_free. */
int cv_request(const struct cv_daemon *d, const char *method, const char *path,
               const char *const *headers, const char *body, size_t body_len, long timeout_s,
               struct cv_reply *r);

/* A connection kept open between requests (HTTP keep-alive), for what must be asked on a
 * connection that already exists (e.g. /readyz while draining, when new ones are refused). */
struct cv_conn;
struct cv_conn *cv_conn_new(void);
void cv_conn_free(struct cv_conn *c); /* closes the connection; NULL-safe */

/* What a request may need beyond plain http on a fresh connection. */
struct cv_opts {
    bool https;           /* https://127.0.0.1:port instead of http:// */
    const char *ca_file;  /* CURLOPT_CAINFO: the certificate (PEM) to trust */
    bool insecure;        /* do not verify the peer's certificate */
    struct cv_conn *conn; /* send on this kept connection; NULL: a connection of its own */
};

/* cv_request with options (o may be NULL: the same as cv_request). */
int cv_request_opt(const struct cv_daemon *d, const struct cv_opts *o, const char *method,
                   const char *path, const char *const *headers, const char *body, size_t body_len,
                   long timeout_s, struct cv_reply *r);

/* POST body with Content-Type: application/json and the default timeout. */
int cv_post_json(const struct cv_daemon *d, const char *path, const char *body, struct cv_reply *r);

void cv_reply_free(struct cv_reply *r);

/* The reply body parsed by jansson (json_decref it); NULL when it is not JSON. */
json_t *cv_reply_json(const struct cv_reply *r);

/* ---- streamed requests ------------------------------------------------------------------ */

struct cv_line {
    char *text; /* without the line end; "" for a blank line */
    double t;   /* seconds from the start of the request to its arrival */
};

struct cv_stream {
    /* set by the caller before cv_stream_post */
    int stop_after;                    /* abort the transfer once this many non-blank lines
                                          have arrived (the write callback returns 0); 0: never */
    void (*on_line)(void *arg, int n); /* called after each non-blank line, n counting from 1 */
    void *arg;
    /* results */
    long status;
    int curl_code;
    char content_type[128];
    char job_id[64];       /* X-Job-Id */
    struct cv_line *lines; /* every line, blank ones included (SSE needs them) */
    int n_lines;
    int cap_lines;
    int n_nonblank;
    double t_end;  /* seconds until the transfer ended */
    char *partial; /* bytes after the last line end */
    size_t partial_len;
};

/* POSTs a JSON body with the extra headers and records the reply line by line as it arrives.
 * timeout_s <= 0 means CV_HTTP_TIMEOUT_S. Returns 0 when the transfer completed, or ended because
 * stop_after was reached; -1 otherwise. Free with cv_stream_free. */
int cv_stream_post(const struct cv_daemon *d, const char *path, const char *const *headers,
                   const char *body, long timeout_s, struct cv_stream *s);

/* The same for a GET (no body): the job event streams. */
int cv_stream_get(const struct cv_daemon *d, const char *path, const char *const *headers,
                  long timeout_s, struct cv_stream *s);

void cv_stream_free(struct cv_stream *s);

/* ---- small helpers ---------------------------------------------------------------------- */

double cv_now(void); /* CLOCK_MONOTONIC seconds */

void cv_sleep_ms(long ms);

/* The path of the convd binary under test (for --help, --version). */
const char *cv_convd_bin(void);

/* Standard padded base64 of n bytes (malloc'd), and its inverse (returns the decoded length or
 * -1 for bad input; out must hold 3 * strlen(s) / 4 bytes). Independent of the daemon's own. */
char *cv_b64_encode(const uint8_t *src, size_t n);
long cv_b64_decode(const char *s, uint8_t *out);

/* malloc'd printf. */
char *cv_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
