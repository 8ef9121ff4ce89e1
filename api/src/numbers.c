/* Numbers as text, both ways, at the speed large tensors need.
 *
 * Writing: cv__fmt_f32 finds the shortest decimal that reads back as the same float32 with
 * Ryu (Ulf Adams, "Ryu: fast float-to-string conversion", PLDI 2018): the float's rounding
 * interval is scaled by a power of ten with one 32x64-bit multiplication, and digits are
 * removed while the interval still holds a shorter decimal. This is a compact rewrite of the
 * algorithm for float32 only; the two tables of 64-bit multipliers (floor(2^k / 5^q) + 1 and
 * 5^i scaled to 61 bits) were generated from their definitions and are checked by
 * tests/unit/test_api.c, which also compares every result with strtof. Debian ships Ryu only
 * as Rust and double-conversion / fast_float only as C++, hence this file.
 *
 * Reading: cv__scan_f32 reads one JSON number token to the float32 that the jansson path
 * makes of it: jansson reads an integer with strtoll and a real with strtod, and the api casts
 * the double to float. A token whose digits make an integer below 2^53 and whose power of
 * ten is within 1e22 - every float32 from 1e-14 to 1e30 printed in 9 digits or fewer - takes
 * Clinger's fast path (an exact integer times or divided by an exact power of ten is one
 * correctly rounded double operation); the others go to strtoll or strtod, so the results
 * are the same bits as the jansson path's, always. Like jansson and buf.c, this assumes the
 * C locale (the daemon never calls setlocale). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

/* ---- float32 -> shortest decimal (Ryu) --------------------------------------------------- */

#define POW5_INV_BITS 59
#define POW5_BITS     61

/* floor(2^(bits(5^q) - 1 + 59) / 5^q) + 1 for q = 0..30. */
static const uint64_t pow5_inv[31] = {
    0x0800000000000001, 0x0666666666666667, 0x051eb851eb851eb9, 0x04189374bc6a7efa,
    0x068db8bac710cb2a, 0x053e2d6238da3c22, 0x0431bde82d7b634e, 0x06b5fca6af2bd216,
    0x055e63b88c230e78, 0x044b82fa09b5a52d, 0x06df37f675ef6eae, 0x057f5ff85e592558,
    0x0465e6604b7a8447, 0x0709709a125da071, 0x05a126e1a84ae6c1, 0x0480ebe7b9d58567,
    0x0734aca5f6226f0b, 0x05c3bd5191b525a3, 0x049c97747490eae9, 0x0760f253edb4ab0e,
    0x05e72843249088d8, 0x04b8ed0283a6d3e0, 0x078e480405d7b966, 0x060b6cd004ac9452,
    0x04d5f0a66a23a9db, 0x07bcb43d769f762b, 0x063090312bb2c4ef, 0x04f3a68dbc8f03f3,
    0x07ec3daf94180651, 0x065697bfa9acd1da, 0x051212ffbaf0a7e2,
};

/* 5^i shifted to exactly 61 bits (truncated) for i = 0..46. */
static const uint64_t pow5[47] = {
    0x1000000000000000, 0x1400000000000000, 0x1900000000000000, 0x1f40000000000000,
    0x1388000000000000, 0x186a000000000000, 0x1e84800000000000, 0x1312d00000000000,
    0x17d7840000000000, 0x1dcd650000000000, 0x12a05f2000000000, 0x174876e800000000,
    0x1d1a94a200000000, 0x12309ce540000000, 0x16bcc41e90000000, 0x1c6bf52634000000,
    0x11c37937e0800000, 0x16345785d8a00000, 0x1bc16d674ec80000, 0x1158e460913d0000,
    0x15af1d78b58c4000, 0x1b1ae4d6e2ef5000, 0x10f0cf064dd59200, 0x152d02c7e14af680,
    0x1a784379d99db420, 0x108b2a2c28029094, 0x14adf4b7320334b9, 0x19d971e4fe8401e7,
    0x1027e72f1f128130, 0x1431e0fae6d7217c, 0x193e5939a08ce9db, 0x1f8def8808b02452,
    0x13b8b5b5056e16b3, 0x18a6e32246c99c60, 0x1ed09bead87c0378, 0x13426172c74d822b,
    0x1812f9cf7920e2b6, 0x1e17b84357691b64, 0x12ced32a16a1b11e, 0x178287f49c4a1d66,
    0x1d6329f1c35ca4bf, 0x125dfa371a19e6f7, 0x16f578c4e0a060b5, 0x1cb2d6f618c878e3,
    0x11efc659cf7d4b8d, 0x166bb7f0435c9e71, 0x1c06a5ec5433c60d,
};

const uint64_t *cv__ryu_table(int which, size_t *n) {
    *n = which == 0 ? sizeof pow5_inv / sizeof pow5_inv[0] : sizeof pow5 / sizeof pow5[0];
    return which == 0 ? pow5_inv : pow5;
}

/* Bits of 5^e (ceil(log2(5^e)), and 1 for e = 0); exact for 0 <= e <= 3528. */
static inline int32_t pow5_bits(int32_t e) {
    return (int32_t)(((uint32_t)e * 1217359u) >> 19) + 1;
}

/* floor(e * log10(2)) and floor(e * log10(5)) for the exponents of float32. */
static inline uint32_t log10_pow2(int32_t e) {
    return ((uint32_t)e * 78913u) >> 18;
}

static inline uint32_t log10_pow5(int32_t e) {
    return ((uint32_t)e * 732923u) >> 20;
}

/* (m * factor) >> shift, for shift > 32, without a 128-bit product. */
static inline uint32_t mul_shift(uint32_t m, uint64_t factor, int32_t shift) {
    uint64_t lo = (uint64_t)m * (uint32_t)factor;
    uint64_t hi = (uint64_t)m * (uint32_t)(factor >> 32);
    return (uint32_t)(((lo >> 32) + hi) >> (shift - 32));
}

static inline bool multiple_of_pow5(uint32_t v, uint32_t p) {
    uint32_t count = 0;
    while (v != 0 && v % 5 == 0) {
        v /= 5;
        count++;
    }
    return count >= p;
}

/* The shortest decimal digits * 10^exp10 in the rounding interval of the finite, nonzero
 * float |bits|, the closest to it when several are as short. */
static void f32_shortest(uint32_t bits, uint32_t *digits, int32_t *exp10) {
    uint32_t ieee_m = bits & 0x7fffff, ieee_e = (bits >> 23) & 0xff;
    int32_t e2;
    uint32_t m2;
    /* Two extra bits so that the interval's bounds are integers too. */
    if (ieee_e == 0) {
        e2 = 1 - 127 - 23 - 2;
        m2 = ieee_m;
    } else {
        e2 = (int32_t)ieee_e - 127 - 23 - 2;
        m2 = (1u << 23) | ieee_m;
    }
    bool accept_bounds = (m2 & 1) == 0; /* ties to even: an even float owns its bounds */
    uint32_t mv = 4 * m2, mp = 4 * m2 + 2;
    uint32_t mm_shift = ieee_m != 0 || ieee_e <= 1; /* the gap below a power of 2 is half */
    uint32_t mm = 4 * m2 - 1 - mm_shift;

    uint32_t vr, vp, vm;
    int32_t e10;
    bool vm_zeros = false, vr_zeros = false;
    uint32_t last_removed = 0;
    if (e2 >= 0) {
        uint32_t q = log10_pow2(e2);
        e10 = (int32_t)q;
        int32_t k = POW5_INV_BITS + pow5_bits((int32_t)q) - 1;
        int32_t i = -e2 + (int32_t)q + k;
        vr = mul_shift(mv, pow5_inv[q], i);
        vp = mul_shift(mp, pow5_inv[q], i);
        vm = mul_shift(mm, pow5_inv[q], i);
        if (q != 0 && (vp - 1) / 10 <= vm / 10) {
            /* The loop below removes no digit: compute the one that the scaling dropped. */
            int32_t l = POW5_INV_BITS + pow5_bits((int32_t)q - 1) - 1;
            last_removed = mul_shift(mv, pow5_inv[q - 1], -e2 + (int32_t)q - 1 + l) % 10;
        }
        if (q <= 9) {
            /* At most one of mp, mv, mm is a multiple of 5. */
            if (mv % 5 == 0)
                vr_zeros = multiple_of_pow5(mv, q);
            else if (accept_bounds)
                vm_zeros = multiple_of_pow5(mm, q);
            else
                vp -= multiple_of_pow5(mp, q);
        }
    } else {
        uint32_t q = log10_pow5(-e2);
        e10 = (int32_t)q + e2;
        int32_t i = -e2 - (int32_t)q;
        int32_t k = pow5_bits(i) - POW5_BITS;
        int32_t j = (int32_t)q - k;
        vr = mul_shift(mv, pow5[i], j);
        vp = mul_shift(mp, pow5[i], j);
        vm = mul_shift(mm, pow5[i], j);
        if (q != 0 && (vp - 1) / 10 <= vm / 10) {
            j = (int32_t)q - 1 - (pow5_bits(i + 1) - POW5_BITS);
            last_removed = mul_shift(mv, pow5[i + 1], j) % 10;
        }
        if (q <= 1) {
            /* mv = 4 * m2 has two trailing zero bits; mm has one when mm_shift is 1. */
            vr_zeros = true;
            if (accept_bounds)
                vm_zeros = mm_shift == 1;
            else
                vp--;
        } else if (q < 31) {
            vr_zeros = (mv & ((1u << (q - 1)) - 1)) == 0;
        }
    }

    int32_t removed = 0;
    uint32_t out;
    if (vm_zeros || vr_zeros) {
        /* The rare case: the exact value or the lower bound ends in zeros. */
        while (vp / 10 > vm / 10) {
            vm_zeros &= vm % 10 == 0;
            vr_zeros &= last_removed == 0;
            last_removed = vr % 10;
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        if (vm_zeros) {
            while (vm % 10 == 0) {
                vr_zeros &= last_removed == 0;
                last_removed = vr % 10;
                vr /= 10;
                vp /= 10;
                vm /= 10;
                removed++;
            }
        }
        if (vr_zeros && last_removed == 5 && vr % 2 == 0)
            last_removed = 4; /* exactly halfway: round to even */
        out = vr + ((vr == vm && (!accept_bounds || !vm_zeros)) || last_removed >= 5);
    } else {
        while (vp / 10 > vm / 10) {
            last_removed = vr % 10;
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        out = vr + (vr == vm || last_removed >= 5);
    }
    int32_t e = e10 + removed;
    while (out % 10 == 0) { /* never in practice; keeps the text free of trailing zeros */
        out /= 10;
        e++;
    }
    *digits = out;
    *exp10 = e;
}

static const char digit_pairs[200] =
    "00010203040506070809101112131415161718192021222324252627282930"
    "31323334353637383940414243444546474849505152535455565758596061"
    "62636465666768697071727374757677787980818283848586878889909192"
    "93949596979899";

/* Writes the n decimal digits of v (n >= number of digits of v) ending at out + n. */
static inline void put_digits(char *out, uint32_t v, int n) {
    char *p = out + n;
    while (v >= 100) {
        uint32_t r = v % 100;
        v /= 100;
        p -= 2;
        memcpy(p, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, digit_pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    while (p > out)
        *--p = '0';
}

static inline int n_digits(uint32_t v) {
    return v >= 100000000 ? 9 + (v >= 1000000000)
           : v >= 10000   ? 5 + (v >= 100000) + (v >= 1000000) + (v >= 10000000)
                          : 1 + (v >= 10) + (v >= 100) + (v >= 1000);
}

size_t cv__fmt_u64(char *out, uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t cv__fmt_f32(char out[CV__NUM_MAX], float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t mag = bits & 0x7fffffff;
    if (mag >= 0x7f800000) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (mag == 0) { /* -0 too */
        memcpy(out, "0", 2);
        return 1;
    }
    size_t o = 0;
    if (bits >> 31)
        out[o++] = '-';
    float a = fabsf(v);
    /* Integral values print as integers up to 2^53, where doubles stop holding every
     * integer (for a float32, every integral value up to 2^53 is exact). */
    if (a <= 0x1p53f && a == truncf(a)) {
        o += cv__fmt_u64(out + o, (uint64_t)a);
        out[o] = '\0';
        return o;
    }
    uint32_t digits;
    int32_t e;
    f32_shortest(mag, &digits, &e);
    int nd = n_digits(digits);
    int32_t x = e + nd - 1; /* the exponent of the leading digit */
    if (x >= -4 && a < 0x1p23f) {
        /* Fixed notation, as %g writes values from 1e-4 up: "0.00123", "12.5". Only values
         * that are not integral get here below 2^23 (above it every float32 is). */
        if (x < 0) {
            memcpy(out + o, "0.", 2);
            o += 2;
            for (int32_t i = -1; i > x; i--)
                out[o++] = '0';
            put_digits(out + o, digits, nd);
            o += (size_t)nd;
        } else {
            /* x < nd - 1: no integer lies in the rounding interval of a float that is not
             * integral (its half-width is at most 1/4 below 2^23), so a fraction digit is
             * left. */
            int int_len = x + 1;
            char tmp[16];
            put_digits(tmp, digits, nd);
            memcpy(out + o, tmp, (size_t)int_len);
            o += (size_t)int_len;
            out[o++] = '.';
            memcpy(out + o, tmp + int_len, (size_t)(nd - int_len));
            o += (size_t)(nd - int_len);
        }
    } else {
        /* Scientific: "1.17549435e-38", "3.4028235e38", "1e-7". */
        char tmp[16];
        put_digits(tmp, digits, nd);
        out[o++] = tmp[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, tmp + 1, (size_t)(nd - 1));
            o += (size_t)(nd - 1);
        }
        out[o++] = 'e';
        if (x < 0) {
            out[o++] = '-';
            x = -x;
        }
        o += cv__fmt_u64(out + o, (uint64_t)x);
    }
    out[o] = '\0';
    return o;
}

/* ---- JSON number token -> float32 -------------------------------------------------------- */

static const double exact_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline bool is_digit(char c) {
    return (unsigned char)(c - '0') < 10;
}

/* The float32 value of a scanned JSON number token at start, as jansson and the api make it:
 * an integer goes through int64 (strtoll when small_int says w may not hold it, refusing what
 * overflows), a real through Clinger's fast path when w is exact (not `lost`) and 10^e10 is,
 * else strtod (refusing infinity). Returns false where jansson refuses the token or the value
 * does not fit float32. */
static bool token_to_f32(const char *start, bool neg, bool integer, bool small_int, uint64_t w,
                         bool lost, int32_t e10, float *out) {
    double d;
    if (integer) {
        if (small_int) {
            int64_t i = (int64_t)w;
            d = (double)(neg ? -i : i); /* "-0" is the integer 0 for jansson */
        } else {
            errno = 0;
            long long i = strtoll(start, NULL, 10);
            if (errno == ERANGE)
                return false;
            d = (double)i;
        }
    } else if (w == 0 && !lost) {
        d = neg ? -0.0 : 0.0;
    } else if (!lost && w <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        /* Clinger: both exact, so one correctly rounded operation. */
        d = (double)w;
        d = e10 < 0 ? d / exact_pow10[-e10] : d * exact_pow10[e10];
        if (neg)
            d = -d;
    } else {
        d = strtod(start, NULL);
        if (isinf(d)) /* jansson: "real number overflow" */
            return false;
    }
    if (!(fabs(d) < CV__F32_LIMIT))
        return false;
    *out = (float)d;
    return true;
}

/* Ends a JSON number token at p: reads its optional exponent ("e" or "E", a sign, digits) into
 * *ex, clamped at +-100000 (far past where every float is 0 or infinite), and clears *integer
 * when there is one. Returns the position after the token, or NULL for an "e" without digits or
 * a token that reaches end: something that is not part of it must follow inside the buffer
 * (strtod and strtoll stop there). */
static const char *scan_exponent(const char *p, const char *end, int32_t *ex, bool *integer) {
    *ex = 0;
    if (p >= end || (*p != 'e' && *p != 'E'))
        return p < end ? p : NULL;
    *integer = false;
    p++;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        p++;
    }
    if (p >= end || !is_digit(*p))
        return NULL;
    while (p < end && is_digit(*p)) {
        if (*ex < 100000)
            *ex = *ex * 10 + (*p - '0');
        p++;
    }
    if (neg)
        *ex = -*ex;
    return p < end ? p : NULL;
}

/* The general reader, for tokens of more than 19 digits. */
static const char *scan_f32_long(const char *p, const char *end, float *out) {
    const char *start = p;
    bool neg = false;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || !is_digit(*p))
        return NULL;
    /* The significant digits, at most 19 of them in w; the ones beyond only count. */
    uint64_t w = 0;
    int sig = 0;       /* significant digits seen (leading zeros are not) */
    int32_t drop = 0;  /* digits of the integer part not kept in w */
    bool lost = false; /* a nonzero digit was not kept */
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p)) {
            if (sig < 19) {
                w = w * 10 + (uint64_t)(*p - '0');
                sig++;
            } else {
                drop++;
                lost |= *p != '0';
            }
            p++;
        }
    }
    bool integer = true;
    int32_t frac = 0; /* fraction digits kept in w */
    if (p < end && *p == '.') {
        integer = false;
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p)) {
            if (sig < 19) {
                if (w != 0 || *p != '0')
                    sig++;
                w = w * 10 + (uint64_t)(*p - '0');
                frac++;
            } else {
                lost |= *p != '0';
            }
            p++;
        }
    }
    int32_t ex;
    p = scan_exponent(p, end, &ex, &integer);
    if (p == NULL)
        return NULL;
    return token_to_f32(start, neg, integer, sig + drop <= 18, w, lost, ex + drop - frac, out)
               ? p
               : NULL;
}

/* The value of the 8 digit characters at p, or false when they are not all digits (two
 * multiplications instead of eight steps; the bytes are read little-endian). */
static inline bool eight_digits(const char *p, uint32_t *v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t x;
    memcpy(&x, p, 8);
    if (((x & 0xf0f0f0f0f0f0f0f0) | (((x + 0x0606060606060606) & 0xf0f0f0f0f0f0f0f0) >> 4)) !=
        0x3333333333333333)
        return false;
    x -= 0x3030303030303030;
    x = x * 10 + (x >> 8); /* pairs of digits */
    x = ((x & 0x000000ff000000ff) * (100 + (UINT64_C(1000000) << 32)) +
         ((x >> 16) & 0x000000ff000000ff) * (1 + (UINT64_C(10000) << 32))) >>
        32;
    *v = (uint32_t)x;
    return true;
#else
    (void)p;
    (void)v;
    return false;
#endif
}

const char *cv__scan_f32(const char *p, const char *end, float *out) {
    const char *start = p;
    bool neg = p < end && *p == '-';
    p += neg;
    if (p >= end || !is_digit(*p))
        return NULL;
    /* All digits into w while there are at most 19 of them; longer tokens are read again by
     * scan_f32_long. */
    uint64_t w = 0;
    const char *digits = p;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p))
            w = w * 10 + (uint64_t)(*p++ - '0');
    }
    size_t n_int = (size_t)(p - digits), n_frac = 0;
    bool integer = true;
    if (p < end && *p == '.') {
        integer = false;
        const char *frac = ++p;
        uint32_t v8;
        while (end - p >= 8 && eight_digits(p, &v8)) {
            w = w * 100000000 + v8;
            p += 8;
        }
        while (p < end && is_digit(*p))
            w = w * 10 + (uint64_t)(*p++ - '0');
        n_frac = (size_t)(p - frac);
        if (n_frac == 0)
            return NULL;
    }
    int32_t ex;
    p = scan_exponent(p, end, &ex, &integer);
    if (p == NULL)
        return NULL;
    if (n_int + n_frac > 19)
        return scan_f32_long(start, end, out);
    return token_to_f32(start, neg, integer, n_int <= 18, w, false, ex - (int32_t)n_frac, out)
               ? p
               : NULL;
}
