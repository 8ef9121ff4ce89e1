/* libmicrohttpd glue: the access handler, body collection with its size cap, the generic checks
 * that run before any handler (route, method, Content-Type, size), and reply helpers.
 *
 * MHD runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so handlers and stream
 * readers may block on a job's condition variable; see notes/api.md §5 for why. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

struct cv_server cv_srv;

static const char problem_type[] = "application/problem+json";

/* ---- replies ------------------------------------------------------------------------------- */

static void add_common_headers(struct MHD_Response *resp, struct cv_req *req) {
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    MHD_add_response_header(resp, "Server", "convd/" CV_VERSION);
    if (req->job_id[0] != '\0')
        MHD_add_response_header(resp, "X-Job-Id", req->job_id);
}

/* Queues resp with the usual headers; destroys our handle on it. */
static int queue_reply(struct MHD_Connection *conn, struct cv_req *req, int status,
                       const char *content_type, struct MHD_Response *resp, size_t len) {
    add_common_headers(resp, req);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (req->server_timing[0] != '\0')
        MHD_add_response_header(resp, "Server-Timing", req->server_timing);
    if (req->location[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, req->location);
    for (const char *const *h = req->extra_headers; h != NULL && h[0] != NULL; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    int ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->status = status;
    req->bytes_out = len;
    req->replied = true;
    return ret;
}

/* True for the JSON types, whose replies end with a newline (so a terminal prompt after curl
 * starts on its own line, and replies are lines like the NDJSON streams). */
static bool is_json_reply(const char *content_type) {
    return strncmp(content_type, "application/json", 16) == 0 ||
           strncmp(content_type, problem_type, sizeof problem_type - 1) == 0;
}

int cv_http_reply_take(struct MHD_Connection *conn, struct cv_req *req, int status,
                       const char *content_type, char *body, size_t len) {
    if (len > 0 && body[len - 1] != '\n' && is_json_reply(content_type)) {
        char *grown = realloc(body, len + 2);
        if (grown == NULL) {
            free(body);
            return MHD_NO;
        }
        body = grown;
        body[len++] = '\n';
        body[len] = '\0';
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    return queue_reply(conn, req, status, content_type, resp, len);
}

int cv_http_reply(struct MHD_Connection *conn, struct cv_req *req, int status,
                  const char *content_type, const char *body, size_t len) {
    if (len > 0 && body[len - 1] != '\n' && is_json_reply(content_type)) {
        char *copy = malloc(len + 1);
        if (copy == NULL)
            return MHD_NO;
        memcpy(copy, body, len);
        return cv_http_reply_take(conn, req, status, content_type, copy, len);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    return queue_reply(conn, req, status, content_type, resp, len);
}

/* Queues a problem reply with extra headers (name/value pairs, NULL-terminated). */
static int reply_problem_headers(struct MHD_Connection *conn, struct cv_req *req,
                                 const struct cv_api_error *err, const char *const *headers) {
    size_t len = 0;
    char *body = cv_api_problem_dump(err, req->path, &len);
    static const char fallback[] = "{\"type\":\"about:blank\",\"title\":\"Internal Server "
                                   "Error\",\"status\":500,\"detail\":\"out of memory\"}";
    if (body != NULL) { /* replies end with a newline */
        char *grown = realloc(body, len + 2);
        if (grown != NULL) {
            body = grown;
            body[len++] = '\n';
            body[len] = '\0';
        }
    }
    const char *text = body ? body : fallback;
    len = body ? len : strlen(fallback);
    int status = body ? err->status : 500;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    free(body);
    if (resp == NULL)
        return MHD_NO;
    add_common_headers(resp, req);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, problem_type);
    for (; headers != NULL && headers[0] != NULL; headers += 2)
        MHD_add_response_header(resp, headers[0], headers[1]);
    int ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->status = status;
    req->bytes_out = len;
    req->replied = true;
    return ret;
}

int cv_http_reply_problem(struct MHD_Connection *conn, struct cv_req *req,
                          const struct cv_api_error *err) {
    return reply_problem_headers(conn, req, err, NULL);
}

/* How a non-OK status of the pool or compute layer becomes HTTP: one table. */
static const struct {
    int status;
    int http;
    const char *code;
    const char *detail;
    const char *retry_after;
} status_map[] = {
    {CV_EAGAIN, 503, "queue_full", "the job queue is full; retry later", "1"},
    {CV_ECANCELED, 503, "shutting_down", "the daemon is shutting down", "5"},
    {CV_ENOMEM, 503, "out_of_memory", "the daemon is out of memory; retry later", "5"},
    {CV_ESHAPE, 422, "invalid_shape", "the shapes of the request do not fit together", NULL},
    {CV_EINVAL, 422, "invalid_field", "a parameter is out of range", NULL},
};

int cv_http_reply_status(struct MHD_Connection *conn, struct cv_req *req, int status) {
    struct cv_api_error err;
    for (size_t i = 0; i < sizeof status_map / sizeof status_map[0]; i++) {
        if (status_map[i].status != status)
            continue;
        cv_api_error_set(&err, status_map[i].http, status_map[i].code, NULL, "%s",
                         status_map[i].detail);
        const char *headers[] = {"Retry-After", status_map[i].retry_after, NULL};
        return reply_problem_headers(conn, req, &err, status_map[i].retry_after ? headers : NULL);
    }
    cv_api_error_set(&err, 500, "internal", NULL, "internal error: %s", cv_status_str(status));
    return cv_http_reply_problem(conn, req, &err);
}

int cv_http_reply_store_error(struct MHD_Connection *conn, struct cv_req *req, int store_status) {
    struct cv_api_error err;
    cv_api_error_set(&err, 503, "store_unavailable", NULL,
                     "the job store is unavailable (%s); retry later",
                     cv_store_status_str(store_status));
    char extra[700];
    size_t n = (size_t)snprintf(extra, sizeof extra, "\"request_id\":\"%s\",\"reason\":\"",
                                req->request_id);
    n = cv_log_json_escape(extra, sizeof extra, n, cv_store_errmsg());
    snprintf(extra + n, sizeof extra - n, "\"");
    cv_log_msg("error", "store unavailable", extra);
    static const char *const headers[] = {"Retry-After", "2", NULL};
    return reply_problem_headers(conn, req, &err, headers);
}

bool cv_http_client_gone(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL)
        return false;
    struct pollfd pfd = {.fd = info->connect_fd, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) <= 0)
        return false;
    return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* ---- the access handler -------------------------------------------------------------------- */

/* Compares a presented token with the configured one in time that depends only on the
 * configured token's length, so response times do not reveal how much of a guess matched. */
static bool token_equal(const char *given, const char *want) {
    size_t want_len = strlen(want);
    size_t given_len = strnlen(given, want_len + 1);
    unsigned char diff = given_len != want_len;
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned char)(want[i] ^ (i < given_len ? given[i] : 0));
    return diff == 0;
}

/* True when the request may pass: no token configured, a public route, or the right token. */
static bool authorized(struct MHD_Connection *conn, const struct cv_route *route) {
    if (cv_srv.cfg.token[0] == '\0' || (route != NULL && (route->flags & CV_ROUTE_FLAGS_PUBLIC)))
        return true;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return token_equal(auth, cv_srv.cfg.token);
}

static bool is_json_type(const char *ct) {
    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    static const char json[] = "application/json";
    if (strncasecmp(ct, json, sizeof json - 1) != 0)
        return false;
    char next = ct[sizeof json - 1];
    return next == '\0' || next == ';' || next == ' ';
}

static void set_request_id(struct MHD_Connection *conn, struct cv_req *req) {
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = given ? strlen(given) : 0;
    bool ok = n > 0 && n < sizeof req->request_id;
    for (size_t i = 0; ok && i < n; i++)
        ok = given[i] > 0x20 && given[i] < 0x7f && given[i] != '"' && given[i] != '\\';
    if (ok) {
        memcpy(req->request_id, given, n + 1);
        return;
    }
    unsigned char rnd[8] = {0};
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    snprintf(req->request_id, sizeof req->request_id, "r-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
}

/* First call for a request: checks that need only the headers. Returns true when a reply was
 * queued (an error), false to go on. */
static bool check_headers(struct MHD_Connection *conn, struct cv_req *req, const char *method,
                          int *ret) {
    struct cv_api_error err;
    struct cv_route_match m;
    req->route = cv_reqparse_route_find(cv_routes, method, req->path, &m);
    memcpy(req->path_id, m.id, sizeof req->path_id);
    bool path_known = m.path_known;
    const char *allow = m.allow;
    if (!authorized(conn, req->route)) {
        cv_api_error_set(&err, 401, "unauthorized", NULL,
                         "this daemon needs a bearer token: send Authorization: Bearer <token>");
        const char *headers[] = {"WWW-Authenticate", "Bearer realm=\"convd\"", NULL};
        *ret = reply_problem_headers(conn, req, &err, headers);
        return true;
    }
    if (req->route == NULL && path_known) {
        cv_api_error_set(&err, 405, "method_not_allowed", NULL, "%s is not allowed on %s; use %s",
                         method, req->path, allow);
        const char *headers[] = {"Allow", allow, NULL};
        *ret = reply_problem_headers(conn, req, &err, headers);
        return true;
    }
    if (req->route == NULL) {
        cv_api_error_set(&err, 404, "not_found", NULL, "no route %s %s", method, req->path);
        *ret = cv_http_reply_problem(conn, req, &err);
        return true;
    }
    if (!(req->route->flags & CV_ROUTE_FLAGS_JSON_BODY))
        return false;
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!is_json_type(ct)) {
        cv_api_error_set(&err, 415, "unsupported_media_type", "/",
                         "Content-Type must be application/json (got %s); with curl use --json",
                         ct ? ct : "none");
        err.n_errors = 0;
        *ret = cv_http_reply_problem(conn, req, &err);
        return true;
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    long long content_length = cl != NULL ? strtoll(cl, NULL, 10) : 0;
    if (content_length > 0 && content_length <= cv_srv.cfg.max_body)
        req->content_length = (size_t)content_length;
    if (content_length > cv_srv.cfg.max_body) {
        cv_api_error_set(&err, 413, "body_too_large", NULL,
                         "the body has %s bytes; this daemon takes at most %lld (--max-body)", cl,
                         (long long)cv_srv.cfg.max_body);
        *ret = cv_http_reply_problem(conn, req, &err);
        return true;
    }
    return false;
}

/* Bytes of request bodies and replies held by all connections at once. Each body is capped by
 * --max-body, but hundreds of connections uploading at once (or asking for large outputs) could
 * still exhaust memory: past this budget (--memory-budget) new work is refused with 503 (retry
 * later) instead. */
static atomic_int_fast64_t bodies_held;

static int64_t bodies_budget(void) {
    return cv_srv.cfg.memory_budget;
}

bool cv_http_reserve(struct cv_req *req, int64_t bytes) {
    if (atomic_fetch_add(&bodies_held, bytes) + bytes > bodies_budget()) {
        atomic_fetch_sub(&bodies_held, bytes);
        return false;
    }
    req->reserved += bytes;
    return true;
}

/* Releases a request's body and its share of the budget. */
static void drop_body(struct cv_req *req) {
    atomic_fetch_sub(&bodies_held, (int_fast64_t)req->body_cap);
    free(req->body);
    req->body = NULL;
    req->body_len = req->body_cap = 0;
}

/* Appends a piece of the body, or marks it too large or over budget (the rest is then
 * discarded). */
static void take_body(struct cv_req *req, const char *data, size_t size) {
    if (req->body_too_large || req->over_budget)
        return;
    if ((int64_t)(req->body_len + size) > cv_srv.cfg.max_body) {
        req->body_too_large = true;
        drop_body(req);
        return;
    }
    if (req->body_len + size + 1 > req->body_cap) {
        /* The first piece sizes the buffer from Content-Length (checked against --max-body
         * already), so a large upload is not copied by repeated doubling. */
        size_t cap = req->body_cap ? req->body_cap
                                   : (req->content_length > 0 ? req->content_length + 1 : 4096);
        while (cap < req->body_len + size + 1)
            cap *= 2;
        int64_t grow = (int64_t)(cap - req->body_cap);
        if (atomic_fetch_add(&bodies_held, grow) + grow > bodies_budget()) {
            atomic_fetch_sub(&bodies_held, grow);
            req->over_budget = true;
            drop_body(req);
            return;
        }
        char *body = realloc(req->body, cap);
        if (body == NULL) {
            atomic_fetch_sub(&bodies_held, grow);
            req->over_budget = true; /* answered as 503: we cannot hold it now */
            drop_body(req);
            return;
        }
        req->body = body;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, size);
    req->body_len += size;
    req->body[req->body_len] = '\0';
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls) {
    struct cv_req *req = *req_cls;
    int ret = MHD_YES;
    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO;
        *req_cls = req;
        req->t0_ms = cv_now_ms();
        snprintf(req->method, sizeof req->method, "%s", method);
        snprintf(req->path, sizeof req->path, "%s", cv_reqparse_origin_form(url));
        set_request_id(conn, req);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        long long expect = cl != NULL ? strtoll(cl, NULL, 10) : 0;
        if (expect < 0 || expect > cv_srv.cfg.max_body)
            expect = cv_srv.cfg.max_body;
        bool over = cv_guard_request_begin(conn, expect);
        if (check_headers(conn, req, method, &ret))
            return (enum MHD_Result)ret;
        if (over && !(req->route->flags & CV_ROUTE_FLAGS_PROBE)) {
            /* Admitted past --max-connections or --max-connections-per-ip: only the probes are
             * served, everyone else hears when to come back. */
            struct cv_api_error err;
            cv_api_error_set(&err, 503, "too_many_connections", NULL,
                             "this daemon serves at most %d connections (%d per client address); "
                             "retry later",
                             cv_srv.cfg.max_connections, cv_srv.cfg.max_connections_per_ip);
            const char *headers[] = {"Retry-After", "1", "Connection", "close", NULL};
            return (enum MHD_Result)reply_problem_headers(conn, req, &err, headers);
        }
        return MHD_YES;
    }
    if (req->replied) {
        *upload_data_size = 0; /* an early error reply: discard what still arrives */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        take_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    cv_guard_request_ready(conn); /* the whole request is in */
    if (req->over_budget)
        return (enum MHD_Result)cv_http_reply_status(conn, req, CV_ENOMEM);
    if (req->body_too_large) {
        struct cv_api_error err;
        cv_api_error_set(&err, 413, "body_too_large", NULL,
                         "the body is larger than %lld bytes (--max-body)",
                         (long long)cv_srv.cfg.max_body);
        return (enum MHD_Result)cv_http_reply_problem(conn, req, &err);
    }
    return (enum MHD_Result)req->route->handler(conn, req);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe) {
    struct cv_req *req = *req_cls;
    cv_guard_request_done(conn);
    if (req == NULL)
        return;
    uint64_t streamed = atomic_load(&req->stream_bytes);
    struct cv_log_request line = {
        .method = req->method,
        .path = req->path,
        .request_id = req->request_id,
        .job_id = req->job_id[0] ? req->job_id : NULL,
        .status = req->status,
        .bytes_in = req->body_len,
        .bytes_out = streamed ? streamed : req->bytes_out,
        .duration_ms = cv_now_ms() - req->t0_ms,
    };
    cv_log_request(&line);
    cv_metrics_request(req->route != NULL ? req->route->path : "unmatched", req->status,
                       line.duration_ms / 1000.0);
    drop_body(req);
    atomic_fetch_sub(&bodies_held, req->reserved);
    free(req);
    *req_cls = NULL;
}

/* Parses "host:port", "[v6]:port", ":port" or a bare "port" (loopback, 127.0.0.1) into a
 * socket address. */
static bool parse_listen(const char *text, struct sockaddr_storage *out, bool *v6) {
    char host[256];
    if (text[0] != '\0' && strspn(text, "0123456789") == strlen(text)) {
        char with_host[300];
        snprintf(with_host, sizeof with_host, "127.0.0.1:%s", text);
        return strlen(text) <= 5 && parse_listen(with_host, out, v6);
    }
    const char *colon = strrchr(text, ':');
    if (colon == NULL)
        return false;
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof host)
        return false;
    memcpy(host, text, hl);
    host[hl] = '\0';
    char *h = host;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return false;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(*h ? h : "0.0.0.0", colon + 1, &hints, &ai) != 0 || ai == NULL)
        return false;
    memset(out, 0, sizeof *out);
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    return true;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    cv_log_msg("warn", msg, "\"source\":\"libmicrohttpd\"");
}

static bool is_loopback(const struct sockaddr_storage *a) {
    if (a->ss_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24 == 127;
    if (a->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
    return false;
}

/* Reads a whole (small, <= 1 MiB) file into a NUL-terminated malloc'd string; NULL on failure.
 * Read with read(2) straight into one buffer sized from fstat, so no copy of a private key is
 * left behind in stdio buffers or in blocks a realloc freed: the caller wipes this one. */
static char *read_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && st.st_size >= 0 && st.st_size <= (1 << 20))
        data = malloc((size_t)st.st_size + 1);
    size_t len = 0;
    while (data != NULL && len < (size_t)st.st_size) {
        ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (data != NULL)
        data[len] = '\0';
    return data;
}

/* Wipes and frees a PEM string read by read_file; NULL-safe. */
static void free_secret(char *s) {
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* Logs an error line naming a file or address. */
static void log_error_with(const char *msg, const char *key, const char *value) {
    char extra[400];
    size_t n = (size_t)snprintf(extra, sizeof extra, "\"%s\":\"", key);
    n = cv_log_json_escape(extra, sizeof extra, n, value);
    snprintf(extra + n, sizeof extra - n, "\"");
    cv_log_msg("error", msg, extra);
}

/* Closes fd when it is still the socket fstat described as *was. After a failed
 * MHD_start_daemon the listening socket passed with MHD_OPTION_LISTEN_SOCKET may be closed
 * already: libmicrohttpd 0.9.75 closes it on its later failure paths (a bad TLS key among them)
 * but not on the early ones, and another thread may have been given the same number since.
 * Closing it blindly closed it twice, or closed someone else's descriptor. fd < 0 is a no-op. */
static void close_if_same(int fd, const struct stat *was) {
    struct stat now;
    if (fd >= 0 && fstat(fd, &now) == 0 && now.st_dev == was->st_dev && now.st_ino == was->st_ino)
        close(fd);
}

/* Makes the listening socket for addr. Returns it, or -1 after printing why on stderr (a
 * person reads this one: "convd: cannot listen on X: address already in use") and logging. */
static int listen_socket(const struct sockaddr_storage *addr, bool v6, const char *listen_text) {
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t alen = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (fd < 0 || bind(fd, (const struct sockaddr *)addr, alen) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        char reason[128];
        snprintf(reason, sizeof reason, "%s", strerror(e));
        if (e == EADDRINUSE)
            snprintf(reason, sizeof reason, "address already in use");
        fprintf(stderr, "convd: cannot listen on %s: %s\n", listen_text, reason);
        char extra[400];
        size_t n = (size_t)snprintf(extra, sizeof extra, "\"listen\":\"");
        n = cv_log_json_escape(extra, sizeof extra, n, listen_text);
        n += (size_t)snprintf(extra + n, sizeof extra - n, "\",\"reason\":\"");
        n = cv_log_json_escape(extra, sizeof extra, n, reason);
        snprintf(extra + n, sizeof extra - n, "\"");
        cv_log_msg("error", "cannot listen", extra);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int cv_http_start(struct cv_server *srv, int *port) {
    struct sockaddr_storage addr;
    bool v6 = false;
    if (!parse_listen(srv->cfg.listen, &addr, &v6)) {
        log_error_with("cannot parse --listen; expected HOST:PORT", "listen", srv->cfg.listen);
        return CV_EINVAL;
    }
    if (!is_loopback(&addr) && srv->cfg.token[0] == '\0')
        cv_log_msg("warn",
                   "listening beyond loopback without a token: anyone who can reach this address "
                   "can run jobs; set --token-file or CONVD_TOKEN",
                   NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (v6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls[4] = {{MHD_OPTION_END, 0, NULL}};
    char *cert = NULL, *key = NULL;
    if (srv->cfg.tls_cert[0] != '\0') {
        /* libmicrohttpd reads these PEM strings only while MHD_start_daemon loads them into
         * GnuTLS (MHD_init_daemon_certificate); they are wiped and freed right after. */
        cert = read_file(srv->cfg.tls_cert);
        key = read_file(srv->cfg.tls_key);
        if (cert == NULL || key == NULL) {
            log_error_with("cannot read the TLS certificate or key", "file",
                           cert == NULL ? srv->cfg.tls_cert : srv->cfg.tls_key);
            free_secret(cert);
            free_secret(key);
            return CV_EINVAL;
        }
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, cert};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, key};
        tls[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, srv->cfg.tls_priorities};
    }
    /* The socket is ours, so a port in use fails here with the reason (SO_REUSEADDR only
     * skips TIME_WAIT; no SO_REUSEPORT, which let two daemons split one port's requests). */
    int fd = listen_socket(&addr, v6, srv->cfg.listen);
    if (fd < 0)
        return CV_EINVAL;
    struct stat fd_was;
    if (fstat(fd, &fd_was) != 0) {
        close(fd);
        return CV_EINVAL;
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, cv_guard_notify, srv, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cv_guard_hard_limit(&srv->cfg), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)srv->cfg.idle_timeout, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
        MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    free_secret(key);
    free_secret(cert);
    if (srv->daemon != NULL && cv_guard_start(srv->cfg.tls_cert[0] != '\0') != CV_OK) {
        MHD_stop_daemon(srv->daemon); /* closes fd: it was the daemon's */
        srv->daemon = NULL;
        fd = -1;
    }
    if (srv->daemon == NULL) {
        close_if_same(fd, &fd_was);
        log_error_with("cannot start serving (a bad TLS certificate or key?)", "listen",
                       srv->cfg.listen);
        return CV_EINVAL;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    *port = 0;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    return CV_OK;
}
