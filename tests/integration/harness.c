/* See harness.h. The daemon is a child of the test process in the same process group, so
 * check's timeout (which kills the test's process group) and PR_SET_PDEATHSIG both take it
 * down if a test dies before its teardown. */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CONVD_BIN
#error "CONVD_BIN must be the path of the convd binary (set by CMake)"
#endif

double cv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cv_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const char *cv_convd_bin(void) {
    /* CONVD_TEST_BIN runs the suite against another build (e.g. an older one, to see a
     * regression test fail before its fix). */
    const char *other = getenv("CONVD_TEST_BIN");
    return other != NULL && *other != '\0' ? other : CONVD_BIN;
}

char *cv_strdupf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ---- the daemon ------------------------------------------------------------------------ */

char *cv_daemon_log(const struct cv_daemon *d) {
    FILE *f = fopen(d->log_path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* The port of a text-format listening line ("... info listening ...\"port\":N..."), or 0. */
static int text_port(const char *line, size_t len) {
    char buf[1024];
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, line, len);
    buf[len] = '\0';
    const char *p = strstr(buf, "listening") ? strstr(buf, "\"port\":") : NULL;
    return p ? atoi(p + 7) : 0;
}

/* The port of the first JSON line with "msg":"listening", or 0. Other lines are skipped, so a
 * daemon that prints a config line first still works. With --log-format text the line is not
 * JSON: then the "port" member it carries is used. */
static int find_port(const char *log) {
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            return 0; /* a partly written line: wait for the rest */
        json_t *j = json_loadb(line, (size_t)(end - line), 0, NULL);
        int port = 0;
        if (json_is_object(j) && json_is_string(json_object_get(j, "msg")) &&
            strcmp(json_string_value(json_object_get(j, "msg")), "listening") == 0 &&
            json_is_integer(json_object_get(j, "port")))
            port = (int)json_integer_value(json_object_get(j, "port"));
        if (!j)
            port = text_port(line, (size_t)(end - line));
        json_decref(j);
        if (port > 0)
            return port;
        line = end + 1;
    }
    return 0;
}

static void dump_log(const struct cv_daemon *d) {
    char *log = cv_daemon_log(d);
    fprintf(stderr, "--- convd log (%s) ---\n%s--- end of log ---\n", d->log_path,
            log ? log : "(unreadable)\n");
    free(log);
}

int cv_daemon_start(struct cv_daemon *d, const char *const *args, const char *const *env) {
    memset(d, 0, sizeof *d);
    const char *tmp = getenv("TMPDIR");
    snprintf(d->log_path, sizeof d->log_path, "%s/convd-itest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int log_fd = mkstemp(d->log_path);
    if (log_fd < 0) {
        perror("mkstemp");
        return -1;
    }
    const char *argv[64] = {cv_convd_bin(), "--listen", "127.0.0.1:0"};
    int argc = 3;
    bool has_store = false;
    for (int i = 0; args && args[i] && argc < 61; i++) {
        argv[argc++] = args[i];
        has_store |= strncmp(args[i], "--store", 7) == 0 && strncmp(args[i], "--store-", 8) != 0;
    }
    for (int i = 0; env && env[i]; i++)
        has_store |= strncmp(env[i], "CONVD_STORE=", 12) == 0;
    char store_url[300];
    if (!has_store) {
        const char *mode = getenv("CV_TEST_STORE");
        if (mode != NULL && strcmp(mode, "sqlite") == 0) {
            snprintf(d->store_dir, sizeof d->store_dir, "%s/convd-itest-db-XXXXXX",
                     tmp && *tmp ? tmp : "/tmp");
            if (mkdtemp(d->store_dir) == NULL) {
                perror("mkdtemp");
                close(log_fd);
                unlink(d->log_path);
                return -1;
            }
            snprintf(store_url, sizeof store_url, "sqlite:%s/convd.db", d->store_dir);
        } else {
            snprintf(store_url, sizeof store_url, "memory");
        }
        argv[argc++] = "--store";
        argv[argc++] = store_url;
    }
    argv[argc] = NULL;

    fflush(NULL); /* or buffered test output would be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        close(log_fd);
        return -1;
    }
    if (pid == 0) {
        /* The daemon must not outlive a test that crashed before its teardown. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        /* In a sanitizer build, undefined behaviour must end the daemon (which the tests see)
         * rather than scroll by in a log that is deleted. */
        setenv("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1", 0);
        for (int i = 0; env && env[i]; i++) {
            char name[128];
            const char *eq = strchr(env[i], '=');
            if (eq && (size_t)(eq - env[i]) < sizeof name) {
                memcpy(name, env[i], (size_t)(eq - env[i]));
                name[eq - env[i]] = '\0';
                setenv(name, eq + 1, 1);
            }
        }
        execv(argv[0], (char *const *)argv);
        dprintf(STDERR_FILENO, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(log_fd);
    d->pid = pid;

    double deadline = cv_now() + CV_START_TIMEOUT_S;
    while (cv_now() < deadline) {
        char *log = cv_daemon_log(d);
        d->port = log ? find_port(log) : 0;
        free(log);
        if (d->port > 0)
            return 0;
        if (!cv_daemon_alive(d)) {
            fprintf(stderr, "convd exited before listening\n");
            dump_log(d);
            return -1;
        }
        cv_sleep_ms(20);
    }
    fprintf(stderr, "convd printed no listening line within %d s\n", CV_START_TIMEOUT_S);
    dump_log(d);
    cv_daemon_stop(d);
    return -1;
}

bool cv_daemon_alive(struct cv_daemon *d) {
    if (d->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == 0)
        return true;
    if (r == d->pid) {
        fprintf(stderr, "convd (pid %d) is gone: %s %d\n", (int)d->pid,
                WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        d->pid = 0;
    }
    return false;
}

/* Removes the daemon's own store directory (after it exited). */
static void remove_store(struct cv_daemon *d) {
    if (d->store_dir[0] == '\0')
        return;
    static const char *const names[] = {"convd.db", "convd.db-wal", "convd.db-shm",
                                        "convd.db.lock"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", d->store_dir, names[i]);
        unlink(path);
    }
    rmdir(d->store_dir);
    d->store_dir[0] = '\0';
}

int cv_daemon_wait(struct cv_daemon *d, double timeout_s) {
    if (d->pid <= 0)
        return -1;
    double deadline = cv_now() + timeout_s;
    do {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid || r < 0) {
            d->pid = 0;
            /* A daemon that did not exit 0 (a sanitizer's report, a crash) said why on its
             * stderr: show it before the log goes. */
            if (r == d->pid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
                !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
                dump_log(d);
            unlink(d->log_path);
            remove_store(d);
            return r < 0 ? -1 : st;
        }
        cv_sleep_ms(10);
    } while (cv_now() < deadline);
    return -1;
}

int cv_daemon_stop(struct cv_daemon *d) {
    if (d->pid <= 0 || kill(d->pid, SIGTERM) != 0) {
        d->pid = 0;
        unlink(d->log_path);
        remove_store(d);
        return -1;
    }
    int st = cv_daemon_wait(d, CV_STOP_TIMEOUT_S);
    if (st == -1 && d->pid > 0) {
        fprintf(stderr, "convd did not exit within %d s of SIGTERM; killing it\n",
                CV_STOP_TIMEOUT_S);
        dump_log(d);
        kill(d->pid, SIGKILL);
        cv_daemon_wait(d, 5);
    }
    return st;
}

/* ---- plain requests --------------------------------------------------------------------- */

struct buf {
    char *data;
    size_t len;
};

static int buf_append(struct buf *b, const char *p, size_t n) {
    char *grown = realloc(b->data, b->len + n + 1);
    if (!grown)
        return -1;
    memcpy(grown + b->len, p, n);
    b->data = grown;
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static size_t write_body(char *p, size_t size, size_t n, void *userdata) {
    return buf_append(userdata, p, size * n) == 0 ? size * n : 0;
}

/* Copies the value of header "name:" from a header line into out, trimmed. */
static void copy_header(const char *line, size_t len, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static size_t write_header(char *p, size_t size, size_t n, void *userdata) {
    struct cv_reply *r = userdata;
    copy_header(p, size * n, "Content-Type", r->content_type, sizeof r->content_type);
    copy_header(p, size * n, "Allow", r->allow, sizeof r->allow);
    copy_header(p, size * n, "Retry-After", r->retry_after, sizeof r->retry_after);
    copy_header(p, size * n, "Location", r->location, sizeof r->location);
    copy_header(p, size * n, "WWW-Authenticate", r->www_authenticate, sizeof r->www_authenticate);
    copy_header(p, size * n, "X-Job-Id", r->job_id, sizeof r->job_id);
    return size * n;
}

static char *url_of(const struct cv_daemon *d, const char *path) {
    return cv_strdupf("http://127.0.0.1:%d%s", d->port, path);
}

struct cv_conn {
    CURL *c;
};

struct cv_conn *cv_conn_new(void) {
    struct cv_conn *k = calloc(1, sizeof *k);
    if (k && !(k->c = curl_easy_init())) {
        free(k);
        k = NULL;
    }
    return k;
}

void cv_conn_free(struct cv_conn *k) {
    if (k) {
        curl_easy_cleanup(k->c);
        free(k);
    }
}

static struct curl_slist *slist_of(const char *const *headers) {
    struct curl_slist *list = NULL;
    for (int i = 0; headers && headers[i]; i++)
        list = curl_slist_append(list, headers[i]);
    return list;
}

/* The options every transfer shares: loopback only, no proxy from the environment, bounded. */
static void set_common(CURL *c, const char *url, long timeout_s) {
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s > 0 ? timeout_s : (long)CV_HTTP_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
}

int cv_request(const struct cv_daemon *d, const char *method, const char *path,
               const char *const *headers, const char *body, size_t body_len, long timeout_s,
               struct cv_reply *r) {
    return cv_request_opt(d, NULL, method, path, headers, body, body_len, timeout_s, r);
}

int cv_request_opt(const struct cv_daemon *d, const struct cv_opts *o, const char *method,
                   const char *path, const char *const *headers, const char *body, size_t body_len,
                   long timeout_s, struct cv_reply *r) {
    static const struct cv_opts plain_opts = {0};
    if (!o)
        o = &plain_opts;
    memset(r, 0, sizeof *r);
    struct buf b = {0};
    buf_append(&b, "", 0); /* so body is never NULL */
    CURL *c = o->conn ? o->conn->c : curl_easy_init();
    if (o->conn)
        curl_easy_reset(c); /* keeps the connection itself for the next request */
    char *url = cv_strdupf("%s://127.0.0.1:%d%s", o->https ? "https" : "http", d->port, path);
    struct curl_slist *list = slist_of(headers);
    if (!c || !url) {
        r->curl_code = CURLE_OUT_OF_MEMORY;
        goto done;
    }
    set_common(c, url, timeout_s);
    if (o->conn)
        curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 0L);
    if (o->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (o->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, write_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    /* curl picks POST for a body and GET without one; anything else is named explicitly. */
    bool plain = body ? strcmp(method, "POST") == 0 : strcmp(method, "GET") == 0;
    if (!plain)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    r->curl_code = curl_easy_perform(c);
    if (r->curl_code == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->num_connects);
    if (o->conn) /* the kept handle must not point at this call's header list */
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
done:
    r->body = b.data;
    r->body_len = b.len;
    curl_slist_free_all(list);
    if (!o->conn)
        curl_easy_cleanup(c);
    free(url);
    return r->curl_code == CURLE_OK ? 0 : -1;
}

int cv_post_json(const struct cv_daemon *d, const char *path, const char *body,
                 struct cv_reply *r) {
    static const char *const json[] = {"Content-Type: application/json", NULL};
    return cv_request(d, "POST", path, json, body, strlen(body), 0, r);
}

void cv_reply_free(struct cv_reply *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

json_t *cv_reply_json(const struct cv_reply *r) {
    return r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

/* ---- streamed requests ------------------------------------------------------------------ */

struct stream_ctx {
    struct cv_stream *s;
    double t0;
};

static int add_line(struct cv_stream *s, const char *p, size_t n, double t) {
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (s->n_lines == s->cap_lines) {
        int cap = s->cap_lines ? 2 * s->cap_lines : 64;
        struct cv_line *grown = realloc(s->lines, (size_t)cap * sizeof *grown);
        if (!grown)
            return -1;
        s->lines = grown;
        s->cap_lines = cap;
    }
    char *text = malloc(n + 1);
    if (!text)
        return -1;
    memcpy(text, p, n);
    text[n] = '\0';
    s->lines[s->n_lines++] = (struct cv_line){text, t};
    return 0;
}

/* Splits what arrives into lines, stamping each with the time its last byte came in. */
static size_t write_stream(char *p, size_t size, size_t n, void *userdata) {
    struct stream_ctx *ctx = userdata;
    struct cv_stream *s = ctx->s;
    double t = cv_now() - ctx->t0;
    struct buf b = {s->partial, s->partial_len};
    if (buf_append(&b, p, size * n) != 0)
        return 0;
    size_t start = 0;
    for (size_t i = 0; i < b.len; i++) {
        if (b.data[i] != '\n')
            continue;
        if (add_line(s, b.data + start, i - start, t) != 0)
            return 0;
        start = i + 1;
        if (s->lines[s->n_lines - 1].text[0] == '\0')
            continue;
        s->n_nonblank++;
        if (s->on_line)
            s->on_line(s->arg, s->n_nonblank);
        if (s->stop_after > 0 && s->n_nonblank >= s->stop_after) {
            memmove(b.data, b.data + start, b.len - start);
            s->partial = b.data;
            s->partial_len = b.len - start;
            return 0; /* aborts the transfer: the test's way to disconnect mid-stream */
        }
    }
    memmove(b.data, b.data + start, b.len - start);
    s->partial = b.data;
    s->partial_len = b.len - start;
    return size * n;
}

static size_t write_stream_header(char *p, size_t size, size_t n, void *userdata) {
    struct stream_ctx *ctx = userdata;
    copy_header(p, size * n, "Content-Type", ctx->s->content_type, sizeof ctx->s->content_type);
    copy_header(p, size * n, "X-Job-Id", ctx->s->job_id, sizeof ctx->s->job_id);
    return size * n;
}

/* A POST of body (JSON) or, when body is NULL, a GET, recorded line by line. */
static int stream_request(const struct cv_daemon *d, const char *path, const char *const *headers,
                          const char *body, long timeout_s, struct cv_stream *s) {
    s->status = 0;
    s->curl_code = CURLE_OK;
    s->content_type[0] = '\0';
    s->job_id[0] = '\0';
    struct stream_ctx ctx = {s, cv_now()};
    CURL *c = curl_easy_init();
    char *url = url_of(d, path);
    struct curl_slist *list = slist_of(headers);
    if (body)
        list = curl_slist_append(list, "Content-Type: application/json");
    if (!c || !url || (body && !list)) {
        s->curl_code = CURLE_OUT_OF_MEMORY;
    } else {
        set_common(c, url, timeout_s);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
        if (body) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        }
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_stream);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, write_stream_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &ctx);
        s->curl_code = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
    }
    /* Cleaning up closes the socket at once, which is what the daemon sees as a disconnect. */
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    free(url);
    s->t_end = cv_now() - ctx.t0;
    bool stopped =
        s->curl_code == CURLE_WRITE_ERROR && s->stop_after > 0 && s->n_nonblank >= s->stop_after;
    return s->curl_code == CURLE_OK || stopped ? 0 : -1;
}

int cv_stream_post(const struct cv_daemon *d, const char *path, const char *const *headers,
                   const char *body, long timeout_s, struct cv_stream *s) {
    return stream_request(d, path, headers, body, timeout_s, s);
}

int cv_stream_get(const struct cv_daemon *d, const char *path, const char *const *headers,
                  long timeout_s, struct cv_stream *s) {
    return stream_request(d, path, headers, NULL, timeout_s, s);
}

void cv_stream_free(struct cv_stream *s) {
    for (int i = 0; i < s->n_lines; i++)
        free(s->lines[i].text);
    free(s->lines);
    free(s->partial);
    s->lines = NULL;
    s->partial = NULL;
    s->n_lines = s->cap_lines = s->n_nonblank = 0;
    s->partial_len = 0;
}

/* ---- base64 ----------------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cv_b64_encode(const uint8_t *src, size_t n) {
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)src[i + 1] << 8;
        if (i + 2 < n)
            v |= src[i + 2];
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

long cv_b64_decode(const char *s, uint8_t *out) {
    size_t len = strlen(s);
    if (len % 4 != 0)
        return -1;
    long n = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *hit = s[i + k] == '=' ? NULL : strchr(b64_alphabet, s[i + k]);
            if (s[i + k] == '=' && i + 4 == len && k >= 2)
                pad++;
            else if (!hit || !s[i + k] || pad)
                return -1;
            v = v << 6 | (hit ? (uint32_t)(hit - b64_alphabet) : 0);
        }
        out[n++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[n++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[n++] = (uint8_t)v;
    }
    return n;
}
