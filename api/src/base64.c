/* Standard base64 (RFC 4648 section 4). Decoding is strict on purpose: a tensor's bytes must
 * have exactly one spelling, so a truncated or corrupted upload is an error, not a shorter or
 * silently different tensor. */
#include "convd/base64.h"

#include "convd/status.h"

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of each base64 character, -1 for the others ('=' included: callers handle
 * padding). */
static const int8_t sextets[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int sextet(unsigned char c) {
    return sextets[c];
}

size_t cv_base64_encoded_len(size_t n) {
    return (n / 3 + (n % 3 != 0)) * 4;
}

void cv_base64_encode(const uint8_t *src, size_t n, char *dst) {
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        *dst++ = alphabet[v >> 18];
        *dst++ = alphabet[(v >> 12) & 63];
        *dst++ = alphabet[(v >> 6) & 63];
        *dst++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        *dst++ = alphabet[v >> 18];
        *dst++ = alphabet[(v >> 12) & 63];
        *dst++ = '=';
        *dst++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        *dst++ = alphabet[v >> 18];
        *dst++ = alphabet[(v >> 12) & 63];
        *dst++ = alphabet[(v >> 6) & 63];
        *dst++ = '=';
    }
    *dst = '\0';
}

size_t cv_base64_decoded_max(size_t len) {
    return len / 4 * 3 + (len % 4 != 0 ? 3 : 0);
}

static int fail_at(size_t *bad_at, size_t at) {
    if (bad_at != NULL)
        *bad_at = at;
    return CV_EINVAL;
}

int cv_base64_decode(const char *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len,
                     size_t *bad_at) {
    *out_len = 0;
    if (len % 4 != 0)
        return fail_at(bad_at, len - len % 4);
    size_t pad = 0;
    if (len > 0 && src[len - 1] == '=')
        pad = (src[len - 2] == '=') ? 2 : 1;
    size_t n = len / 4 * 3 - pad;
    if (n > cap)
        return CV_ETOOBIG;

    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0, i = 0;
    /* Every quad but the last has no padding: one table look-up per character, and one test
     * per quad (a -1 anywhere makes the OR negative). */
    for (; i + 4 < len; i += 4) {
        int32_t a = sextets[s[i]], b = sextets[s[i + 1]], c = sextets[s[i + 2]],
                d = sextets[s[i + 3]];
        if ((a | b | c | d) < 0) {
            size_t j = 0;
            while (sextets[s[i + j]] >= 0)
                j++;
            return fail_at(bad_at, i + j);
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        dst[o] = (uint8_t)(v >> 16);
        dst[o + 1] = (uint8_t)(v >> 8);
        dst[o + 2] = (uint8_t)v;
        o += 3;
    }
    for (; i < len; i += 4) {
        /* Only the last quad may hold padding, as "xx==" or "xxx=". */
        size_t data_chars = 4 - pad;
        uint32_t v = 0;
        for (size_t j = 0; j < data_chars; j++) {
            int x = sextet(s[i + j]);
            if (x < 0)
                return fail_at(bad_at, i + j);
            v = v << 6 | (uint32_t)x;
        }
        v <<= 6 * (4 - data_chars);
        if (data_chars == 4) {
            dst[o++] = (uint8_t)(v >> 16);
            dst[o++] = (uint8_t)(v >> 8);
            dst[o++] = (uint8_t)v;
        } else {
            /* Canonical: the bits below the last whole byte must be zero ("QQ==", not "QR=="). */
            uint32_t spare = data_chars == 2 ? (v >> 12) & 0xf : (v >> 6) & 0x3;
            if (spare != 0)
                return fail_at(bad_at, i + data_chars - 1);
            dst[o++] = (uint8_t)(v >> 16);
            if (data_chars == 3)
                dst[o++] = (uint8_t)(v >> 8);
        }
    }
    *out_len = o;
    return CV_OK;
}
