/* The text buffer replies are written into, and the JSON number and string writers.
 *
 * Numbers go through printf and strtof/strtod, which follow the C locale: the daemon never
 * calls setlocale, so the decimal point is always '.'. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

void cv__buf_reserve(struct cv__buf *b, size_t extra) {
    if (b->failed)
        return;
    if (extra > SIZE_MAX - b->len - 1) {
        b->failed = true;
        return;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = true;
        return;
    }
    b->data = p;
    b->cap = cap;
}

void cv__buf_put(struct cv__buf *b, const char *s, size_t n) {
    cv__buf_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void cv__buf_puts(struct cv__buf *b, const char *s) {
    cv__buf_put(b, s, strlen(s));
}

void cv__buf_putc(struct cv__buf *b, char c) {
    cv__buf_put(b, &c, 1);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one
 * (overlong forms, surrogates and code points above U+10FFFF included, per RFC 3629). */
static size_t utf8_seq_len(const unsigned char *s) {
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

void cv__buf_put_str_or_null(struct cv__buf *b, const char *s) {
    if (s != NULL)
        cv__buf_put_str(b, s);
    else
        cv__buf_puts(b, "null");
}

void cv__buf_put_str(struct cv__buf *b, const char *str) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    cv__buf_putc(b, '"');
    while (*s != '\0') {
        /* Copy the longest run that needs no escaping in one go. */
        const unsigned char *run = s;
        while (*s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
            s++;
        cv__buf_put(b, (const char *)run, (size_t)(s - run));
        if (*s == '\0')
            break;
        if (*s >= 0x80) {
            /* A NUL ends the string before any sequence runs past it: utf8_seq_len stops at
             * the first byte outside 0x80..0xbf. */
            size_t n = utf8_seq_len(s);
            if (n == 0) {
                cv__buf_puts(b, "\\ufffd");
                s++;
            } else {
                cv__buf_put(b, (const char *)s, n);
                s += n;
            }
            continue;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (*s) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*s >> 4];
            esc[5] = hex[*s & 15];
            n = 6;
        }
        cv__buf_put(b, esc, n);
        s++;
    }
    cv__buf_putc(b, '"');
}

/* Writes |v| in decimal, with a '-' when neg, and a NUL; returns the length. */
static size_t fmt_u64(char *out, uint64_t v, bool neg) {
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    o += cv__fmt_u64(out + o, v);
    out[o] = '\0';
    return o;
}

void cv__buf_put_i64(struct cv__buf *b, int64_t v) {
    char s[CV__NUM_MAX];
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    cv__buf_put(b, s, fmt_u64(s, mag, v < 0));
}

void cv__buf_put_u64(struct cv__buf *b, uint64_t v) {
    char s[CV__NUM_MAX];
    cv__buf_put(b, s, fmt_u64(s, v, false));
}

/* Rewrites printf's exponent "e-07"/"e+38" as "e-7"/"e38" in place; returns the new length. */
static size_t tidy_exponent(char *s, size_t n) {
    char *e = memchr(s, 'e', n);
    if (e == NULL)
        return n;
    char *src = e + 1, *dst = e + 1;
    if (*src == '-')
        *dst++ = *src++;
    else if (*src == '+')
        src++;
    while (*src == '0' && src[1] != '\0')
        src++;
    while (*src != '\0')
        *dst++ = *src++;
    *dst = '\0';
    return (size_t)(dst - s);
}

/* Integral values print as integers up to 2^53, where doubles stop holding every integer. */
static bool fmt_integral(char *out, double v, size_t *n) {
    if (v != trunc(v) || fabs(v) > 0x1p53)
        return false;
    if (v == 0) { /* -0 too */
        memcpy(out, "0", 2);
        *n = 1;
        return true;
    }
    *n = fmt_u64(out, (uint64_t)fabs(v), v < 0);
    return true;
}

/* cv__fmt_f32 is in numbers.c. */

size_t cv__fmt_f64(char out[CV__NUM_MAX], double v) {
    size_t n;
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (fmt_integral(out, v, &n))
        return n;
    for (int prec = 15;; prec++) {
        int len = snprintf(out, CV__NUM_MAX, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            return tidy_exponent(out, (size_t)len);
    }
}

void cv__buf_put_f32(struct cv__buf *b, float v) {
    char s[CV__NUM_MAX];
    cv__buf_put(b, s, cv__fmt_f32(s, v));
}

void cv__buf_put_f64(struct cv__buf *b, double v) {
    char s[CV__NUM_MAX];
    cv__buf_put(b, s, cv__fmt_f64(s, v));
}

void cv__buf_put_ms(struct cv__buf *b, double ms) {
    /* Microseconds are the resolution worth reporting; the digits below are clock noise. */
    cv__buf_put_f64(b, round(ms * 1000.0) / 1000.0);
}

char *cv__buf_finish(struct cv__buf *b, size_t *len) {
    cv__buf_reserve(b, 0);
    if (b->failed) {
        free(b->data);
        *b = (struct cv__buf){0};
        return NULL;
    }
    b->data[b->len] = '\0';
    if (len != NULL)
        *len = b->len;
    char *s = b->data;
    *b = (struct cv__buf){0};
    return s;
}
