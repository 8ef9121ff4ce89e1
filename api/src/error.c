/* struct cv_api_error and its RFC 9457 problem+json form. Filling an error never allocates, so
 * the out-of-memory path can still describe itself; only the dump allocates. */
#include <stdio.h>
#include <string.h>

#include "api_impl.h"

static const struct {
    int status;
    const char *title;
} status_titles[] = {
    {200, "OK"},
    {202, "Accepted"},
    {204, "No Content"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {409, "Conflict"},
    {413, "Content Too Large"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {500, "Internal Server Error"},
    {503, "Service Unavailable"},
};

const char *cv_api_status_title(int status) {
    for (size_t i = 0; i < sizeof status_titles / sizeof status_titles[0]; i++)
        if (status_titles[i].status == status)
            return status_titles[i].title;
    return "Unknown Status";
}

void cv__utf8_trim(char *s, size_t cap) {
    size_t n = strlen(s);
    if (n + 1 < cap)
        return; /* not truncated */
    size_t i = n;
    while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (n - (i - 1) < want)
        s[i - 1] = '\0';
}

static void copy_text(char *dst, size_t cap, const char *src) {
    if ((size_t)snprintf(dst, cap, "%s", src) >= cap)
        cv__utf8_trim(dst, cap);
}

void cv__error_vadd(struct cv_api_error *err, const char *pointer, const char *fmt, va_list ap) {
    if (err->n_errors >= CV_API_MAX_FIELD_ERRORS)
        return;
    struct cv_api_field_error *fe = &err->errors[err->n_errors++];
    copy_text(fe->pointer, sizeof fe->pointer, pointer != NULL ? pointer : "");
    vsnprintf(fe->detail, sizeof fe->detail, fmt, ap);
    cv__utf8_trim(fe->detail, sizeof fe->detail);
}

void cv__error_vset(struct cv_api_error *err, int status, const char *code, const char *pointer,
                    const char *fmt, va_list ap) {
    memset(err, 0, sizeof *err);
    err->status = status;
    copy_text(err->code, sizeof err->code, code != NULL ? code : "");
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    cv__utf8_trim(err->detail, sizeof err->detail);
    if (pointer != NULL) {
        struct cv_api_field_error *fe = &err->errors[err->n_errors++];
        copy_text(fe->pointer, sizeof fe->pointer, pointer);
        copy_text(fe->detail, sizeof fe->detail, err->detail);
    }
}

void cv_api_error_set(struct cv_api_error *err, int status, const char *code, const char *pointer,
                      const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cv__error_vset(err, status, code, pointer, fmt, ap);
    va_end(ap);
}

void cv_api_error_add(struct cv_api_error *err, const char *pointer, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cv__error_vadd(err, pointer, fmt, ap);
    va_end(ap);
}

static void put_member(struct cv__buf *b, const char *name) {
    cv__buf_putc(b, ',');
    cv__buf_put_str(b, name);
    cv__buf_putc(b, ':');
}

char *cv_api_problem_dump(const struct cv_api_error *err, const char *instance, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"type\":\"about:blank\",\"title\":");
    cv__buf_put_str(&b, cv_api_status_title(err->status));
    put_member(&b, "status");
    cv__buf_put_i64(&b, err->status);
    if (err->detail[0] != '\0') {
        put_member(&b, "detail");
        cv__buf_put_str(&b, err->detail);
    }
    if (err->code[0] != '\0') {
        put_member(&b, "code");
        cv__buf_put_str(&b, err->code);
    }
    if (err->n_errors > 0) {
        put_member(&b, "errors");
        cv__buf_putc(&b, '[');
        for (int i = 0; i < err->n_errors && i < CV_API_MAX_FIELD_ERRORS; i++) {
            cv__buf_puts(&b, i == 0 ? "{\"pointer\":" : ",{\"pointer\":");
            cv__buf_put_str(&b, err->errors[i].pointer);
            put_member(&b, "detail");
            cv__buf_put_str(&b, err->errors[i].detail);
            cv__buf_putc(&b, '}');
        }
        cv__buf_putc(&b, ']');
    }
    /* jansson counts lines from 1, so a syntax error always has line >= 1. */
    if (err->line > 0) {
        put_member(&b, "line");
        cv__buf_put_i64(&b, err->line);
        put_member(&b, "column");
        cv__buf_put_i64(&b, err->column);
        put_member(&b, "position");
        cv__buf_put_i64(&b, err->position);
    }
    if (instance != NULL) {
        put_member(&b, "instance");
        cv__buf_put_str(&b, instance);
    }
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}
