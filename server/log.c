/* Log lines on stderr: JSON by default (one object per line, for machines), text for people.
 * Each line is formatted in a local buffer and written with one write(2), so lines from
 * different threads never interleave.
 *
 * Every line goes through one bounded builder (struct line): each append clamps to the
 * buffer, and a string field is cut at a whole escape and at its own share of the line, so no
 * input (a path of 250 escaped bytes, a megabyte header) can pass the buffer or leave the JSON
 * unterminated. Client-controlled text is escaped in both formats: a control character never
 * reaches the log raw, so a %0a in a path cannot forge a line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* Longest line written; the final newline always fits. */
#define LINE_CAP 2048

/* The most a single client-controlled string may take of a line (after escaping), so the
 * members that follow it still fit. */
#define FIELD_MAX 768

static enum cv_log_format log_format = CV_LOG_FORMAT_JSON;

void cv_log_init(enum cv_log_format format) {
    log_format = format;
}

/* A line being built: buf[0..len) is written, len < LINE_CAP always. */
struct line {
    char buf[LINE_CAP];
    size_t len;
};

/* Appends at most `max` bytes of s verbatim (never past the buffer; one byte stays free for
 * the newline). */
static void line_raw(struct line *l, const char *s, size_t n) {
    size_t room = LINE_CAP - 1 - l->len;
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void line_str(struct line *l, const char *s) {
    line_raw(l, s, strlen(s));
}

/* printf into the line, clamped: output beyond the buffer is dropped. */
__attribute__((format(printf, 2, 3))) static void line_printf(struct line *l, const char *fmt,
                                                              ...) {
    char tmp[LINE_CAP];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        line_raw(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* How a string is escaped: in a JSON string; in a text line (\xNN for control bytes and
 * backslash, so a line stays one line); or as a text token (spaces too, so a path stays one
 * field). */
enum esc_mode {
    ESC_MODE_JSON = 0,
    ESC_MODE_TEXT = 1,
    ESC_MODE_TOKEN = 2,
};

/* Escapes one byte into esc (at least 7 bytes); returns its length. */
static size_t escape_byte(unsigned char c, enum esc_mode mode, char *esc) {
    const bool json = mode == ESC_MODE_JSON;
    static const char hex[] = "0123456789abcdef";
    if (c < 0x20 || c == 0x7f) {
        if (json) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            return 6;
        }
        esc[0] = '\\';
        esc[1] = 'x';
        esc[2] = hex[c >> 4];
        esc[3] = hex[c & 15];
        return 4;
    }
    if ((json && c == '"') || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        return 2;
    }
    if (mode == ESC_MODE_TOKEN &&
        c == ' ') { /* text fields are space-separated: keep one field one token */
        memcpy(esc, "\\x20", 4);
        return 4;
    }
    esc[0] = (char)c;
    return 1;
}

/* Appends s escaped, using at most max bytes of the line; stops at a whole escape. A cut string
 * ends in "..." so readers see it was cut. */
static void line_escaped(struct line *l, const char *s, size_t max, enum esc_mode mode) {
    size_t used = 0;
    for (; s != NULL && *s != '\0'; s++) {
        char esc[8];
        size_t n = escape_byte((unsigned char)*s, mode, esc);
        if (used + n + 3 > max || l->len + n + 3 >= LINE_CAP - 1) {
            line_str(l, "...");
            return;
        }
        line_raw(l, esc, n);
        used += n;
    }
}

size_t cv_log_json_escape(char *out, size_t cap, size_t len, const char *s) {
    if (cap == 0)
        return 0;
    if (len >= cap)
        len = cap - 1;
    for (; s != NULL && *s != '\0'; s++) {
        char esc[8];
        size_t n = escape_byte((unsigned char)*s, ESC_MODE_JSON, esc);
        if (len + n + 1 > cap)
            break;
        memcpy(out + len, esc, n);
        len += n;
    }
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

/* Ends the line with a newline (room for it is always kept) and writes it. */
static void line_write(struct line *l) {
    l->buf[l->len++] = '\n';
    ssize_t rc = write(STDERR_FILENO, l->buf, l->len);
    (void)rc; /* nothing sensible to do when stderr is gone */
}

/* The field maxima keep every JSON line below LINE_CAP: a request line is at most ~70 (time,
 * names) + 40 + FIELD_MAX + ~120 (numbers) + 140 + 74 bytes, so its closing brace always fits. */
_Static_assert(70 + 40 + FIELD_MAX + 120 + 140 + 74 < LINE_CAP, "log fields outgrow the line");

void cv_log_msg(const char *level, const char *msg, const char *extra_json) {
    char ts[40];
    now_iso(ts, sizeof ts);
    struct line l = {.len = 0};
    if (log_format == CV_LOG_FORMAT_TEXT) {
        line_printf(&l, "%s %s ", ts, level);
        line_escaped(&l, msg, FIELD_MAX, ESC_MODE_TEXT);
        if (extra_json != NULL) {
            line_str(&l, " ");
            line_escaped(&l, extra_json, LINE_CAP, ESC_MODE_TEXT);
        }
    } else {
        line_printf(&l, "{\"ts\":\"%s\",\"level\":\"", ts);
        line_escaped(&l, level, 16, ESC_MODE_JSON);
        line_str(&l, "\",\"msg\":\"");
        line_escaped(&l, msg, FIELD_MAX, ESC_MODE_JSON);
        line_str(&l, "\"");
        /* extra_json is made by our own code from escaped members; it is kept only when it
         * fits whole, as a cut one would break the object. */
        if (extra_json != NULL && l.len + strlen(extra_json) + 3 < LINE_CAP - 1) {
            line_str(&l, ",");
            line_str(&l, extra_json);
        }
        line_str(&l, "}");
    }
    line_write(&l);
}

void cv_log_request(const struct cv_log_request *r) {
    /* Numbers have bounded widths too: a duration is printed below 1e12 ms (~30 years). */
    const double ms = r->duration_ms >= 0 && r->duration_ms < 1e12 ? r->duration_ms : 0;
    char ts[40];
    now_iso(ts, sizeof ts);
    struct line l = {.len = 0};
    if (log_format == CV_LOG_FORMAT_TEXT) {
        line_printf(&l, "%s ", ts);
        line_escaped(&l, r->method, 40, ESC_MODE_TOKEN);
        line_str(&l, " ");
        line_escaped(&l, r->path, FIELD_MAX, ESC_MODE_TOKEN);
        line_printf(&l, " %d %lluB %.3fms", r->status, (unsigned long long)r->bytes_out, ms);
        if (r->job_id != NULL) {
            line_str(&l, " job=");
            line_escaped(&l, r->job_id, 64, ESC_MODE_TOKEN);
        }
    } else {
        line_printf(&l, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"", ts);
        line_escaped(&l, r->method, 40, ESC_MODE_JSON);
        line_str(&l, "\",\"path\":\"");
        line_escaped(&l, r->path, FIELD_MAX, ESC_MODE_JSON);
        line_printf(&l,
                    "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                    "\"duration_ms\":%.3f,\"request_id\":\"",
                    r->status, (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                    ms);
        line_escaped(&l, r->request_id, 140, ESC_MODE_JSON);
        line_str(&l, "\"");
        if (r->job_id != NULL) {
            line_str(&l, ",\"job\":\"");
            line_escaped(&l, r->job_id, 64, ESC_MODE_JSON);
            line_str(&l, "\"");
        }
        line_str(&l, "}");
    }
    line_write(&l);
}
