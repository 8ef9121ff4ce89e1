/* Log lines on stderr: JSON by default (one object per line, for machines), text for people.
 * Each line is formatted in a local buffer and written with one write(2), so lines from
 * different threads never interleave. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

static enum cv_log_format log_format = CV_LOG_FORMAT_JSON;

void cv_log_init(enum cv_log_format format) {
    log_format = format;
}

size_t cv_log_json_escape(char *out, size_t cap, size_t len, const char *s) {
    static const char hex[] = "0123456789abcdef";
    for (; s != NULL && *s != '\0' && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[len++] = '\\';
            out[len++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            len += (size_t)snprintf(out + len, cap - len, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
        } else {
            out[len++] = (char)c;
        }
    }
    if (len < cap)
        out[len] = '\0';
    return len;
}

void cv_log_format_time(double unix_ms, char *out, size_t cap) {
    time_t sec = (time_t)(unix_ms / 1000.0);
    long ms = (long)(unix_ms - (double)sec * 1000.0);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03ldZ", ms < 0 ? 0 : ms > 999 ? 999 : ms);
}

double cv_now_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)(ts.tv_nsec / 1000000);
}

static void now_iso(char *out, size_t cap) {
    cv_log_format_time(cv_now_unix_ms(), out, cap);
}

static void write_line(char *line, size_t len, size_t cap) {
    if (len >= cap - 1)
        len = cap - 2;
    line[len++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, len);
    (void)rc; /* nothing sensible to do when stderr is gone */
}

void cv_log_msg(const char *level, const char *msg, const char *extra_json) {
    char ts[40], line[2048];
    now_iso(ts, sizeof ts);
    size_t n;
    if (log_format == CV_LOG_FORMAT_TEXT) {
        n = (size_t)snprintf(line, sizeof line, "%s %s %s %s", ts, level, msg,
                             extra_json ? extra_json : "");
    } else {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                             level);
        n = cv_log_json_escape(line, sizeof line, n, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"%s%s}", extra_json ? "," : "",
                              extra_json ? extra_json : "");
    }
    write_line(line, n < sizeof line ? n : sizeof line - 1, sizeof line);
}

void cv_log_request(const struct cv_log_request *r) {
    char ts[40], line[1024];
    now_iso(ts, sizeof ts);
    size_t n;
    if (log_format == CV_LOG_FORMAT_TEXT) {
        n = (size_t)snprintf(line, sizeof line, "%s %s %s %d %lluB %.3fms%s%s", ts, r->method,
                             r->path, r->status, (unsigned long long)r->bytes_out, r->duration_ms,
                             r->job_id ? " job=" : "", r->job_id ? r->job_id : "");
    } else {
        n = (size_t)snprintf(line, sizeof line,
                             "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"",
                             ts);
        n = cv_log_json_escape(line, sizeof line, n, r->method);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"path\":\"");
        n = cv_log_json_escape(line, sizeof line, n, r->path);
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                              "\"duration_ms\":%.3f,\"request_id\":\"",
                              r->status, (unsigned long long)r->bytes_in,
                              (unsigned long long)r->bytes_out, r->duration_ms);
        n = cv_log_json_escape(line, sizeof line, n, r->request_id);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"");
        if (r->job_id != NULL && n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, ",\"job\":\"%s\"", r->job_id);
        if (n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "}");
    }
    write_line(line, n < sizeof line ? n : sizeof line - 1, sizeof line);
}
