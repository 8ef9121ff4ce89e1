/* The vectorised corr2d kernels (see corr2d_impl.h), written once for three instruction sets.
 *
 * Included only by corr2d_avx512.c, corr2d_avx2.c and corr2d_portable.c, each of which defines
 * CV__KERN_ISA (AVX512, AVX2 or PORTABLE) and, for the x86 variants, sets the target with
 * `#pragma GCC target` first. Everything here is static; the only export is the table at the end.
 *
 * Shape of the code:
 *  - a small vector layer (vf, VL, v_load, v_fma, v_load_n/v_store_n for the first n lanes);
 *  - micro-kernels that keep a block of outputs in registers: mk_rows (R rows x NJ vectors of
 *    one output channel: every source vector loaded serves the up to kh rows that use it),
 *    mk_chans (NO output channels x NJ vectors of one row: every source vector serves NO
 *    channels) and mk_bk (NO output channels x G kernel taps of dK, reduced over a row piece);
 *    each is always_inline and instantiated for constant block sizes through a switch, so the
 *    accumulators live in registers;
 *  - drivers that walk work items, point the micro-kernels at the source directly when the
 *    window they read is inside the tensor, and otherwise at a zero-padded copy of the window
 *    in a stack slab (padding, edges, the last rows of a buffer). Loads never leave the source
 *    buffer or the slab; partial vectors use v_load_n/v_store_n. */
#ifndef CV__KERN_ISA
#error "corr2d_kern.h is included by corr2d_<isa>.c only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "corr2d_impl.h"

#define CV__AVX512   1
#define CV__AVX2     2
#define CV__PORTABLE 3

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- vector layer ------------------------------------------------------------------------- */

#if CV__KERN_ISA == CV__AVX512
#include <immintrin.h>
typedef __m512 vf;
#define VL       16
#define ROWS_R   4 /* 16 accumulators + 4 loaded vectors + 1 broadcast of 32 zmm */
#define ROWS_NJ  4
#define CHANS_NO 4
#define CHANS_NJ 4
#define BK_NO    4  /* output channels per bk unit */
#define BK_ACC   20 /* bk accumulators: 4 channels x 5 taps, or 1 x 16 (+ NO + 1 loaded) */
/* CHANS on short reductions (see corr_chans_item): 8 channels x 3 vectors, 24 accumulators + 3
 * loaded + 1 broadcast, 11 loads per 24 FMAs instead of 8 per 16. */
#define WIDE_NO 8
#define WIDE_NJ 3
ALWAYS_INLINE vf v_zero(void) {
    return _mm512_setzero_ps();
}
ALWAYS_INLINE vf v_set1(float s) {
    return _mm512_set1_ps(s);
}
ALWAYS_INLINE vf v_load(const float *p) {
    return _mm512_loadu_ps(p);
}
ALWAYS_INLINE void v_store(float *p, vf v) {
    _mm512_storeu_ps(p, v);
}
ALWAYS_INLINE vf v_fma(vf a, vf b, vf c) {
    return _mm512_fmadd_ps(a, b, c);
}
/* The first n (0..VL) lanes. */
ALWAYS_INLINE __mmask16 lanes(int n) {
    return (__mmask16)((1u << n) - 1u);
}
/* The first n (1..VL) lanes from p, the others zero; reads only p[0..n). */
ALWAYS_INLINE vf v_load_n(const float *p, int n) {
    return _mm512_maskz_loadu_ps(lanes(n), p);
}
/* Writes only p[0..n). */
ALWAYS_INLINE void v_store_n(float *p, vf v, int n) {
    _mm512_mask_storeu_ps(p, lanes(n), v);
}
ALWAYS_INLINE float v_hsum(vf v) {
    return _mm512_reduce_add_ps(v);
}
ALWAYS_INLINE __m512i v_iota(void) {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
/* Writes lanes [l, l + n) of v to p[0..n); reads and writes nothing else. */
ALWAYS_INLINE void v_store_lanes(float *p, vf v, int l, int n) {
    const vf s = _mm512_permutexvar_ps(_mm512_add_epi32(v_iota(), _mm512_set1_epi32(l)), v);
    _mm512_mask_storeu_ps(p, lanes(n), s);
}
/* p[0..n) in lanes [l, l + n), zero elsewhere; reads only p[0..n). */
ALWAYS_INLINE vf v_load_lanes(const float *p, int l, int n) {
    const vf v = _mm512_maskz_loadu_ps(lanes(n), p);
    const __mmask16 m = (__mmask16)(lanes(l + n) & ~lanes(l));
    return _mm512_maskz_permutexvar_ps(m, _mm512_sub_epi32(v_iota(), _mm512_set1_epi32(l)), v);
}
#elif CV__KERN_ISA == CV__AVX2
#include <immintrin.h>
typedef __m256 vf;
#define VL       8
#define ROWS_R   4 /* 8 accumulators + 2 + 1 of 16 ymm */
#define ROWS_NJ  2
#define CHANS_NO 4
#define CHANS_NJ 2
#define WIDE_NO  4 /* no wider tile: corr_chans_item keeps CHANS_NO x CHANS_NJ */
#define WIDE_NJ  2
#define BK_NO    2
#define BK_ACC   12 /* 2 x 6 or 1 x 12 accumulators + NO + 1 of 16 ymm */
static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
ALWAYS_INLINE vf v_zero(void) {
    return _mm256_setzero_ps();
}
ALWAYS_INLINE vf v_set1(float s) {
    return _mm256_set1_ps(s);
}
ALWAYS_INLINE vf v_load(const float *p) {
    return _mm256_loadu_ps(p);
}
ALWAYS_INLINE void v_store(float *p, vf v) {
    _mm256_storeu_ps(p, v);
}
ALWAYS_INLINE vf v_fma(vf a, vf b, vf c) {
    return _mm256_fmadd_ps(a, b, c);
}
ALWAYS_INLINE __m256i lanes(int n) {
    return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - n));
}
ALWAYS_INLINE vf v_load_n(const float *p, int n) {
    return _mm256_maskload_ps(p, lanes(n));
}
ALWAYS_INLINE void v_store_n(float *p, vf v, int n) {
    _mm256_maskstore_ps(p, lanes(n), v);
}
ALWAYS_INLINE float v_hsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
ALWAYS_INLINE __m256i v_iota(void) {
    return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
}
ALWAYS_INLINE void v_store_lanes(float *p, vf v, int l, int n) {
    const vf s = _mm256_permutevar8x32_ps(v, _mm256_add_epi32(v_iota(), _mm256_set1_epi32(l)));
    _mm256_maskstore_ps(p, lanes(n), s);
}
ALWAYS_INLINE vf v_load_lanes(const float *p, int l, int n) {
    const vf v = _mm256_maskload_ps(p, lanes(n));
    const __m256i i = v_iota();
    const vf s = _mm256_permutevar8x32_ps(v, _mm256_sub_epi32(i, _mm256_set1_epi32(l)));
    const __m256i keep = _mm256_and_si256(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(l - 1)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(l + n), i));
    return _mm256_and_ps(s, _mm256_castsi256_ps(keep));
}
#else
/* GCC vector extensions: SSE2 on a baseline x86-64 build, whatever the target has elsewhere. */
typedef float vf __attribute__((vector_size(16)));
#define VL       4
#define ROWS_R   4
#define ROWS_NJ  2
#define CHANS_NO 4
#define CHANS_NJ 2
#define WIDE_NO  4 /* no wider tile: corr_chans_item keeps CHANS_NO x CHANS_NJ */
#define WIDE_NJ  2
#define BK_NO    2
#define BK_ACC   12
ALWAYS_INLINE vf v_zero(void) {
    return (vf){0.0f, 0.0f, 0.0f, 0.0f};
}
ALWAYS_INLINE vf v_set1(float s) {
    return (vf){s, s, s, s};
}
ALWAYS_INLINE vf v_load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
ALWAYS_INLINE void v_store(float *p, vf v) {
    memcpy(p, &v, sizeof v);
}
ALWAYS_INLINE vf v_fma(vf a, vf b, vf c) {
    return a * b + c;
}
ALWAYS_INLINE vf v_load_n(const float *p, int n) {
    vf v = v_zero();
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
ALWAYS_INLINE void v_store_n(float *p, vf v, int n) {
    memcpy(p, &v, (size_t)n * sizeof(float));
}
ALWAYS_INLINE float v_hsum(vf v) {
    return (v[0] + v[1]) + (v[2] + v[3]);
}
ALWAYS_INLINE void v_store_lanes(float *p, vf v, int l, int n) {
    float t[VL];
    memcpy(t, &v, sizeof t);
    memcpy(p, t + l, (size_t)n * sizeof(float));
}
ALWAYS_INLINE vf v_load_lanes(const float *p, int l, int n) {
    float t[VL] = {0.0f};
    memcpy(t + l, p, (size_t)n * sizeof(float));
    vf v;
    memcpy(&v, t, sizeof v);
    return v;
}
#endif

/* The most output channels a bk unit takes (a multiple of every BK_NO). */
#define BK_UNIT_CO 32

/* The largest tap group any variant uses (one output channel). */
#define BK_G_MAX 16

/* Loads/stores the last vector of a block, which holds `tail` (1..VL) valid lanes. */
ALWAYS_INLINE vf v_load_tail(const float *p, int tail) {
    return tail == VL ? v_load(p) : v_load_n(p, tail);
}
ALWAYS_INLINE void v_store_tail(float *p, vf v, int tail) {
    if (tail == VL)
        v_store(p, v);
    else
        v_store_n(p, v, tail);
}

static int64_t round_up(int64_t v, int64_t m) {
    return (v + m - 1) / m * m;
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* ---- corr: micro-kernels ------------------------------------------------------------------ */

/* Arguments of one micro-kernel call. The source window is a set of rows: `rs` floats from one
 * needed row to the next, `cs` from one channel to the next; column 0 of the window is the
 * source column of output column 0 for tap b = 0. */
struct mk_args {
    const float *src;
    int64_t rs, cs, nc;
    int64_t kh, kw, dw;
    const float *w; /* weights of output channel o0, input channel 0 of the window */
    int64_t w_os, w_cs, w_as, w_bs;
    bool accumulate;   /* add to dst (a later channel chunk) rather than start from the bias */
    const float *bias; /* bias of output channel o0, or NULL */
    float *dst;        /* output (o0, first row, first column of the block; FLAT: of the item) */
    int64_t d_rs, d_os;
    int tail; /* valid lanes of the last vector (1..VL); FLAT uses f_* instead */
    /* FLAT: vector lane l of vector jj is flattened index q = f_q0 + jj * VL + l, output row
     * q / f_wp and column q % f_wp of the item, an output when that column is < f_ow and
     * q < f_len. (f_r0, f_j0) is the row and column of f_q0. */
    int64_t f_wp, f_ow, f_len, f_q0, f_r0, f_j0;
};

/* R output rows x NJ vectors of one output channel; stride and dilation 1 along rows, so source
 * row ir feeds output row r through kernel row a = ir - r. */
ALWAYS_INLINE void mk_rows(const int R, const int NJ, const struct mk_args *m) {
    vf acc[ROWS_R][ROWS_NJ]; /* fixed sizes (not VLAs), so that they can live in registers */
    const float *const src = m->src, *const w = m->w;
    const int64_t rs = m->rs, cs = m->cs, nc = m->nc, kh = m->kh, kw = m->kw, dw = m->dw;
    const int64_t w_cs = m->w_cs, w_as = m->w_as, w_bs = m->w_bs;
    const float b0 = m->bias != NULL ? m->bias[0] : 0.0f;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 8
        for (int jj = 0; jj < NJ; jj++) {
            float *d = m->dst + r * m->d_rs + jj * VL;
            if (m->accumulate)
                acc[r][jj] = jj == NJ - 1 ? v_load_tail(d, m->tail) : v_load(d);
            else
                acc[r][jj] = v_set1(b0);
        }
    }
    const int64_t nsr = R + kh - 1;
    for (int64_t c = 0; c < nc; c++) {
        const float *sc = src + c * cs;
        const float *wc = w + c * w_cs;
        for (int64_t ir = 0; ir < nsr; ir++) {
            const float *row = sc + ir * rs;
            for (int64_t b = 0; b < kw; b++) {
                vf xv[ROWS_NJ];
#pragma GCC unroll 8
                for (int jj = 0; jj < NJ; jj++)
                    xv[jj] = v_load(row + b * dw + jj * VL);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const int64_t a = ir - r;
                    if (a < 0 || a >= kh)
                        continue;
                    const vf kv = v_set1(wc[a * w_as + b * w_bs]);
#pragma GCC unroll 8
                    for (int jj = 0; jj < NJ; jj++)
                        acc[r][jj] = v_fma(kv, xv[jj], acc[r][jj]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 8
        for (int jj = 0; jj < NJ; jj++) {
            float *d = m->dst + r * m->d_rs + jj * VL;
            if (jj == NJ - 1)
                v_store_tail(d, acc[r][jj], m->tail);
            else
                v_store(d, acc[r][jj]);
        }
    }
}

/* FLAT: flattened index q of vector jj's lane 0, and its output row and column. */
ALWAYS_INLINE void flat_pos(const struct mk_args *m, int jj, int64_t *q, int64_t *r, int64_t *j) {
    *q = m->f_q0 + jj * VL;
    *r = m->f_r0;
    *j = m->f_j0 + jj * VL;
    while (*j >= m->f_wp)
        *j -= m->f_wp, ++*r;
}

/* FLAT: the outputs of vector jj; d is the item's first output row. A vector inside one row's
 * outputs is one (masked) access; one that crosses a row end is split, skipping the gap columns. */
ALWAYS_INLINE vf flat_load(const float *d, const struct mk_args *m, int jj) {
    int64_t q, r, j;
    flat_pos(m, jj, &q, &r, &j);
    const int n = (int)min64(VL, m->f_len - q);
    if (j + n <= m->f_ow)
        return n == VL ? v_load(d + r * m->d_rs + j) : v_load_n(d + r * m->d_rs + j, n);
    vf v = v_zero();
    for (int l = 0; l < n;) {
        if (j >= m->f_ow) { /* the gap after a row's outputs */
            l += (int)(m->f_wp - j);
            r++, j = 0;
            continue;
        }
        const int seg = (int)min64(n - l, m->f_ow - j);
        v += v_load_lanes(d + r * m->d_rs + j, l, seg);
        l += seg, j += seg;
    }
    return v;
}

ALWAYS_INLINE void flat_store(float *d, const struct mk_args *m, int jj, vf v) {
    int64_t q, r, j;
    flat_pos(m, jj, &q, &r, &j);
    const int n = (int)min64(VL, m->f_len - q);
    if (j + n <= m->f_ow) {
        if (n == VL)
            v_store(d + r * m->d_rs + j, v);
        else
            v_store_n(d + r * m->d_rs + j, v, n);
        return;
    }
    for (int l = 0; l < n;) {
        if (j >= m->f_ow) {
            l += (int)(m->f_wp - j);
            r++, j = 0;
            continue;
        }
        const int seg = (int)min64(n - l, m->f_ow - j);
        v_store_lanes(d + r * m->d_rs + j, v, l, seg);
        l += seg, j += seg;
    }
}

/* NO output channels x NJ vectors; rs steps from kernel row a to a + 1. Without FLAT the
 * vectors are columns of one output row (the last one `tail` lanes wide); with FLAT they are
 * flattened indices of several rows (see mk_args). */
ALWAYS_INLINE void mk_chans(const int NO, const int NJ, const bool FLAT, const struct mk_args *m) {
    vf acc[CHANS_NO][CHANS_NJ];
    const float *const src = m->src, *const w = m->w;
    const int64_t rs = m->rs, cs = m->cs, nc = m->nc, kh = m->kh, kw = m->kw, dw = m->dw;
    const int64_t w_os = m->w_os, w_cs = m->w_cs, w_as = m->w_as, w_bs = m->w_bs;
#pragma GCC unroll 8
    for (int o = 0; o < NO; o++) {
        const float b0 = m->bias != NULL ? m->bias[o] : 0.0f;
#pragma GCC unroll 8
        for (int jj = 0; jj < NJ; jj++) {
            float *d = m->dst + o * m->d_os + jj * VL;
            if (!m->accumulate)
                acc[o][jj] = v_set1(b0);
            else if (FLAT)
                acc[o][jj] = flat_load(m->dst + o * m->d_os, m, jj);
            else
                acc[o][jj] = jj == NJ - 1 ? v_load_tail(d, m->tail) : v_load(d);
        }
    }
    for (int64_t c = 0; c < nc; c++) {
        for (int64_t a = 0; a < kh; a++) {
            const float *row = src + c * cs + a * rs;
            const float *wa = w + c * w_cs + a * w_as;
            for (int64_t b = 0; b < kw; b++) {
                vf xv[CHANS_NJ];
#pragma GCC unroll 8
                for (int jj = 0; jj < NJ; jj++)
                    xv[jj] = v_load(row + b * dw + jj * VL);
                const float *wb = wa + b * w_bs;
#pragma GCC unroll 8
                for (int o = 0; o < NO; o++) {
                    const vf kv = v_set1(wb[o * w_os]);
#pragma GCC unroll 8
                    for (int jj = 0; jj < NJ; jj++)
                        acc[o][jj] = v_fma(kv, xv[jj], acc[o][jj]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < NO; o++) {
#pragma GCC unroll 8
        for (int jj = 0; jj < NJ; jj++) {
            float *d = m->dst + o * m->d_os + jj * VL;
            if (FLAT)
                flat_store(m->dst + o * m->d_os, m, jj, acc[o][jj]);
            else if (jj == NJ - 1)
                v_store_tail(d, acc[o][jj], m->tail);
            else
                v_store(d, acc[o][jj]);
        }
    }
}

/* mk_chans without FLAT for the WIDE_NO x WIDE_NJ tile. A separate function so that its larger
 * accumulator array does not change the register allocation of the CHANS tiles (a shared
 * [8][4] array measured 4% slower on 64x3x3 with identical inner loops). */
ALWAYS_INLINE void mk_chans_wide(const int NO, const int NJ, const struct mk_args *m) {
    vf acc[WIDE_NO][WIDE_NJ];
    const float *const src = m->src, *const w = m->w;
    const int64_t rs = m->rs, cs = m->cs, nc = m->nc, kh = m->kh, kw = m->kw, dw = m->dw;
    const int64_t w_os = m->w_os, w_cs = m->w_cs, w_as = m->w_as, w_bs = m->w_bs;
#pragma GCC unroll 8
    for (int o = 0; o < NO; o++) {
        const float b0 = m->bias != NULL ? m->bias[o] : 0.0f;
#pragma GCC unroll 8
        for (int jj = 0; jj < NJ; jj++) {
            float *d = m->dst + o * m->d_os + jj * VL;
            if (!m->accumulate)
                acc[o][jj] = v_set1(b0);
            else
                acc[o][jj] = jj == NJ - 1 ? v_load_tail(d, m->tail) : v_load(d);
        }
    }
    for (int64_t c = 0; c < nc; c++) {
        for (int64_t a = 0; a < kh; a++) {
            const float *row = src + c * cs + a * rs;
            const float *wa = w + c * w_cs + a * w_as;
            for (int64_t b = 0; b < kw; b++) {
                vf xv[WIDE_NJ];
#pragma GCC unroll 8
                for (int jj = 0; jj < NJ; jj++)
                    xv[jj] = v_load(row + b * dw + jj * VL);
                const float *wb = wa + b * w_bs;
#pragma GCC unroll 8
                for (int o = 0; o < NO; o++) {
                    const vf kv = v_set1(wb[o * w_os]);
#pragma GCC unroll 8
                    for (int jj = 0; jj < NJ; jj++)
                        acc[o][jj] = v_fma(kv, xv[jj], acc[o][jj]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < NO; o++) {
#pragma GCC unroll 8
        for (int jj = 0; jj < NJ; jj++) {
            float *d = m->dst + o * m->d_os + jj * VL;
            if (jj == NJ - 1)
                v_store_tail(d, acc[o][jj], m->tail);
            else
                v_store(d, acc[o][jj]);
        }
    }
}

ALWAYS_INLINE void mk_chans_cols(const int NO, const int NJ, const struct mk_args *m) {
    mk_chans(NO, NJ, false, m);
}

ALWAYS_INLINE void mk_chans_flat(const int NO, const int NJ, const struct mk_args *m) {
    mk_chans(NO, NJ, true, m);
}

/* Instantiates a micro-kernel for block sizes (p, q) in 1..8 x 1..4 and calls the one that
 * matches; combinations beyond the ISA's limits are never reached and compile to nothing. */
#define MK_CASE(fn, pmax, qmax, p, q, m)                                                           \
    case (p)*8 + (q):                                                                              \
        if ((p) <= (pmax) && (q) <= (qmax))                                                        \
            fn(p, q, m);                                                                           \
        break;
#define MK_CASES_Q(fn, pmax, qmax, p, m)                                                           \
    MK_CASE(fn, pmax, qmax, p, 1, m)                                                               \
    MK_CASE(fn, pmax, qmax, p, 2, m)                                                               \
    MK_CASE(fn, pmax, qmax, p, 3, m) MK_CASE(fn, pmax, qmax, p, 4, m)
#define MK_SWITCH(fn, pmax, qmax, p, q, m)                                                         \
    switch ((p)*8 + (q)) {                                                                         \
        MK_CASES_Q(fn, pmax, qmax, 1, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 2, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 3, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 4, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 5, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 6, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 7, m)                                                           \
        MK_CASES_Q(fn, pmax, qmax, 8, m)                                                           \
    default:                                                                                       \
        break;                                                                                     \
    }

__attribute__((noinline)) static void call_rows(int r, int nj, const struct mk_args *m) {
    MK_SWITCH(mk_rows, ROWS_R, ROWS_NJ, r, nj, m)
}

__attribute__((noinline)) static void call_chans(int no, int nj, const struct mk_args *m) {
    MK_SWITCH(mk_chans_cols, CHANS_NO, CHANS_NJ, no, nj, m)
}

__attribute__((noinline)) static void call_chans_wide(int no, int nj, const struct mk_args *m) {
    MK_SWITCH(mk_chans_wide, WIDE_NO, WIDE_NJ, no, nj, m)
}

__attribute__((noinline)) static void call_chans_flat(int no, int nj, const struct mk_args *m) {
    MK_SWITCH(mk_chans_flat, CHANS_NO, CHANS_NJ, no, nj, m)
}

/* ---- corr: source windows ----------------------------------------------------------------- */

/* A window: nr source rows r0, r0 + rstep, ... and columns [c0, c0 + read_w) of every channel
 * of image n, of which columns [c0, c0 + valid_w) feed valid outputs. */
struct window {
    int64_t n, r0, rstep, nr, c0, valid_w, read_w;
};

/* True when the window can be read in place: its valid part lies inside the source and the
 * over-read of the last vector (lanes past the valid outputs) stays inside the buffer. */
static bool window_direct(const struct cv__corr_op *op, const struct window *win) {
    const int64_t r_last = win->r0 + (win->nr - 1) * win->rstep;
    if (win->r0 < 0 || r_last >= op->src_h || win->c0 < 0 || win->c0 + win->valid_w > op->src_w)
        return false;
    const int64_t end =
        ((win->n * op->sc + op->sc - 1) * op->src_h + r_last) * op->src_w + win->c0 + win->read_w;
    return end <= op->n * op->sc * op->src_h * op->src_w;
}

/* Writes d[0..width): zeros, except d[lo..hi) = src[0..hi-lo). */
static void pad_row(float *d, const float *src, int64_t lo, int64_t hi, int64_t width) {
    memset(d, 0, (size_t)lo * sizeof(float));
    if (hi > lo)
        memcpy(d + lo, src, (size_t)(hi - lo) * sizeof(float));
    memset(d + hi, 0, (size_t)(width - hi) * sizeof(float));
}

/* Copies channels [cc0, cc0 + ncc) of the window into slab: row q of channel cc at
 * slab + cc * slab_cs + q * slab_w, zero where the window leaves the source, and zeros from the
 * end of the last row to slab_cs. */
static void window_fill(const struct cv__corr_op *op, const struct window *win, int64_t cc0,
                        int64_t ncc, float *slab, int64_t slab_w, int64_t slab_cs) {
    const int64_t lo = min64(max64(0, -win->c0), win->read_w);
    const int64_t hi = max64(lo, min64(win->read_w, op->src_w - win->c0));
    for (int64_t cc = 0; cc < ncc; cc++) {
        const float *plane = op->src + (win->n * op->sc + cc0 + cc) * op->src_h * op->src_w;
        float *sc = slab + cc * slab_cs;
        for (int64_t q = 0; q < win->nr; q++) {
            float *d = sc + q * slab_w;
            const int64_t r = win->r0 + q * win->rstep;
            if (r < 0 || r >= op->src_h || hi == lo) {
                memset(d, 0, (size_t)win->read_w * sizeof(float));
                continue;
            }
            pad_row(d, plane + r * op->src_w + win->c0 + lo, lo, hi, win->read_w);
        }
        const int64_t used = (win->nr - 1) * slab_w + win->read_w;
        memset(sc + used, 0, (size_t)(slab_cs - used) * sizeof(float));
    }
}

/* ---- corr: plans and drivers -------------------------------------------------------------- */

/* Floats of slab one channel of a FLAT window of rb output rows takes (the last vector of the
 * window reads up to VL - 1 floats past its last row). */
static int64_t flat_channel_floats(const struct cv__corr_op *op, int64_t rb) {
    const int64_t wp = op->dst_w + (op->kw - 1) * op->dil_w;
    return round_up((rb + (op->kh - 1) * op->dil_h) * wp + VL, VL);
}

/* FLAT: output rows per item (>= 2), or 1 when FLAT does not apply or does not pay. Items aim
 * at about 512 flattened outputs, but shrink (to no fewer than 2 rows) until the window of every
 * input channel fits the slab at once: accumulating channel chunks costs more than the lanes it
 * saves. */
static int64_t flat_rows(const struct cv__corr_op *op) {
    const int64_t wp = op->dst_w + (op->kw - 1) * op->dil_w;
    if (op->stride_h != 1 || wp > 256)
        return 1;
    int64_t rb = min64(op->dst_h, max64(1, 512 / wp));
    while (rb > 1 && flat_channel_floats(op, rb) > CV__SLAB_FLOATS)
        rb--;
    if (rb > 2 && op->sc * flat_channel_floats(op, 2) <= CV__SLAB_FLOATS)
        while (op->sc * flat_channel_floats(op, rb) > CV__SLAB_FLOATS)
            rb--;
    /* Worth it only if it saves a tenth of the vectors of CHANS mode (dst_w in whole vectors
     * per row); at equal counts the split stores make it a little slower. */
    const int64_t flat_vecs = ((rb - 1) * wp + op->dst_w + VL - 1) / VL;
    const int64_t chans_vecs = rb * ((op->dst_w + VL - 1) / VL);
    return 10 * flat_vecs <= 9 * chans_vecs ? rb : 1;
}

static bool corr_plan(struct cv__corr_op *op) {
    if (op->dc < CHANS_NO && op->stride_h == 1 && op->dil_h == 1) {
        op->mode = CV__CORR_MODE_ROWS;
        op->rb = ROWS_R;
        const int64_t read_w = round_up(ROWS_NJ * VL + (op->kw - 1) * op->dil_w, VL);
        return (ROWS_R + op->kh - 1) * read_w <= CV__SLAB_FLOATS;
    }
    op->rb = flat_rows(op);
    if (op->rb >= 2) {
        op->mode = CV__CORR_MODE_FLAT;
        return true;
    }
    op->mode = CV__CORR_MODE_CHANS;
    const int64_t read_w = round_up(CHANS_NJ * VL + (op->kw - 1) * op->dil_w, VL);
    return op->kh * read_w <= CV__SLAB_FLOATS;
}

static int64_t corr_items(const struct cv__corr_op *op) {
    return op->n * ((op->dst_h + op->rb - 1) / op->rb);
}

static void mk_args_init(const struct cv__corr_op *op, struct mk_args *m) {
    memset(m, 0, sizeof *m);
    m->kh = op->kh;
    m->kw = op->kw;
    m->dw = op->dil_w;
    m->w_os = op->w_os;
    m->w_cs = op->w_cs;
    m->w_as = op->w_as;
    m->w_bs = op->w_bs;
    m->d_rs = op->dst_w;
    m->d_os = op->dst_h * op->dst_w;
}

/* Asks for the cache lines of the part of window win that lies inside the source, for every
 * channel. Called one block ahead: a window spans a row stream per channel and row, too many
 * for the hardware prefetcher, so without it each of them starts with a miss. */
static void window_prefetch(const struct cv__corr_op *op, const struct window *win) {
    const int64_t c_lo = max64(0, win->c0), c_hi = min64(op->src_w, win->c0 + win->read_w);
    if (c_lo >= c_hi)
        return;
    for (int64_t c = 0; c < op->sc; c++) {
        const float *plane = op->src + (win->n * op->sc + c) * op->src_h * op->src_w;
        for (int64_t q = 0; q < win->nr; q++) {
            const int64_t r = win->r0 + q * win->rstep;
            if (r < 0 || r >= op->src_h)
                continue;
            const float *row = plane + r * op->src_w;
            for (int64_t col = c_lo; col < c_hi; col += 16)
                __builtin_prefetch(row + col);
            __builtin_prefetch(row + c_hi - 1);
        }
    }
}

/* Item (n, row block) of ROWS mode: every output channel of rows [i0, i0 + rb), in column
 * blocks. Each block's window is read in place when possible (the next one prefetched), else
 * through the slab in channel chunks (the first chunk starts from the bias, later ones add);
 * either way it serves every output channel while it is in cache. */
static void corr_rows_item(const struct cv__corr_op *op, int64_t item, float *slab) {
    const int64_t nrb = (op->dst_h + ROWS_R - 1) / ROWS_R;
    const int64_t rb = item % nrb, n = item / nrb;
    const int64_t i0 = rb * ROWS_R;
    const int nr = (int)min64(ROWS_R, op->dst_h - i0);
    struct mk_args m;
    mk_args_init(op, &m);
    const int64_t bw = ROWS_NJ * VL;
    for (int64_t j0 = 0; j0 < op->dst_w; j0 += bw) {
        const int64_t nw = min64(bw, op->dst_w - j0);
        const int nj = (int)((nw + VL - 1) / VL);
        const struct window win = {.n = n,
                                   .r0 = i0 + op->off_h,
                                   .rstep = 1,
                                   .nr = nr + op->kh - 1,
                                   .c0 = j0 + op->off_w,
                                   .valid_w = nw + (op->kw - 1) * op->dil_w,
                                   .read_w = nj * VL + (op->kw - 1) * op->dil_w};
        m.tail = (int)(nw - (nj - 1) * VL);
        if (op->sc > 1 && j0 + bw < op->dst_w) {
            struct window next = win;
            next.c0 += bw;
            window_prefetch(op, &next);
        }
        const bool direct = window_direct(op, &win);
        const int64_t slab_w = round_up(win.read_w, VL), slab_cs = win.nr * slab_w;
        const int64_t chunk = direct ? op->sc : CV__SLAB_FLOATS / slab_cs; /* >= 1: corr_plan */
        for (int64_t cc0 = 0; cc0 < op->sc; cc0 += chunk) {
            const int64_t ncc = min64(chunk, op->sc - cc0);
            if (direct) {
                m.src = op->src + ((n * op->sc) * op->src_h + win.r0) * op->src_w + win.c0;
                m.rs = op->src_w;
                m.cs = op->src_h * op->src_w;
            } else {
                window_fill(op, &win, cc0, ncc, slab, slab_w, slab_cs);
                m.src = slab;
                m.rs = slab_w;
                m.cs = slab_cs;
            }
            m.nc = ncc;
            m.accumulate = cc0 > 0;
            for (int64_t o = 0; o < op->dc; o++) {
                m.w = op->w + o * op->w_os + cc0 * op->w_cs;
                m.bias = op->bias != NULL ? op->bias + o : NULL;
                m.dst = op->dst + ((n * op->dc + o) * op->dst_h + i0) * op->dst_w + j0;
                call_rows(nr, nj, &m);
            }
        }
    }
}

/* Item (n, output row) of CHANS mode: every output channel of that row, in column blocks. A
 * padded window is filled once per channel chunk and serves every output channel. */
static void corr_chans_item(const struct cv__corr_op *op, int64_t item, float *slab) {
    const int64_t i = item % op->dst_h, n = item / op->dst_h;
    struct mk_args m;
    mk_args_init(op, &m);
    /* The wide tile pays only while the taps of one output channel are few (3x5x5: 4-6% faster);
     * on long reductions (64x3x3) it measured 5-25% slower than 4 x 4 (6 x 4, 8 x 3, 8 x 2). */
    const bool wide = WIDE_NO * WIDE_NJ > CHANS_NO * CHANS_NJ && op->sc * op->kh * op->kw <= 128;
    const int64_t bw = (wide ? WIDE_NJ : CHANS_NJ) * VL, ob = wide ? WIDE_NO : CHANS_NO;
    for (int64_t j0 = 0; j0 < op->dst_w; j0 += bw) {
        const int64_t nw = min64(bw, op->dst_w - j0);
        const int nj = (int)((nw + VL - 1) / VL);
        const struct window win = {.n = n,
                                   .r0 = i * op->stride_h + op->off_h,
                                   .rstep = op->dil_h,
                                   .nr = op->kh,
                                   .c0 = j0 + op->off_w,
                                   .valid_w = nw + (op->kw - 1) * op->dil_w,
                                   .read_w = nj * VL + (op->kw - 1) * op->dil_w};
        m.tail = (int)(nw - (nj - 1) * VL);
        if (j0 + bw < op->dst_w) {
            struct window next = win;
            next.c0 += bw;
            window_prefetch(op, &next);
        }
        const bool direct = window_direct(op, &win);
        const int64_t slab_w = round_up(win.read_w, VL), slab_cs = win.nr * slab_w;
        const int64_t chunk = direct ? op->sc : CV__SLAB_FLOATS / slab_cs;
        for (int64_t cc0 = 0; cc0 < op->sc; cc0 += chunk) {
            const int64_t ncc = min64(chunk, op->sc - cc0);
            if (direct) {
                m.src = op->src + ((n * op->sc) * op->src_h + win.r0) * op->src_w + win.c0;
                m.rs = win.rstep * op->src_w;
                m.cs = op->src_h * op->src_w;
            } else {
                window_fill(op, &win, cc0, ncc, slab, slab_w, slab_cs);
                m.src = slab;
                m.rs = slab_w;
                m.cs = slab_cs;
            }
            m.nc = ncc;
            m.accumulate = cc0 > 0;
            for (int64_t o0 = 0; o0 < op->dc; o0 += ob) {
                const int no = (int)min64(ob, op->dc - o0);
                m.w = op->w + o0 * op->w_os + cc0 * op->w_cs;
                m.bias = op->bias != NULL ? op->bias + o0 : NULL;
                m.dst = op->dst + ((n * op->dc + o0) * op->dst_h + i) * op->dst_w + j0;
                if (wide)
                    call_chans_wide(no, nj, &m);
                else
                    call_chans(no, nj, &m);
            }
        }
    }
}

/* Item (n, block of rb output rows) of FLAT mode. The window is every source row the block
 * reads, wp = dst_w + (kw-1)*dil_w columns each, stored back to back (in place when the source
 * rows are exactly wp wide, i.e. there is no column padding): output (r, j) and tap (a, b) then
 * read flattened index r*wp + j + a*dil_h*wp + b*dil_w, so one vector serves several rows. */
static void corr_flat_item(const struct cv__corr_op *op, int64_t item, float *slab) {
    const int64_t nblk = (op->dst_h + op->rb - 1) / op->rb;
    const int64_t blk = item % nblk, n = item / nblk;
    const int64_t i0 = blk * op->rb, nr = min64(op->rb, op->dst_h - i0);
    const int64_t wp = op->dst_w + (op->kw - 1) * op->dil_w;
    const int64_t len = (nr - 1) * wp + op->dst_w;
    const int64_t nsr = nr + (op->kh - 1) * op->dil_h;
    const int64_t read =
        round_up(len, VL) + (op->kh - 1) * op->dil_h * wp + (op->kw - 1) * op->dil_w;
    const struct window win = {.n = n,
                               .r0 = i0 + op->off_h,
                               .rstep = 1,
                               .nr = nsr,
                               .c0 = op->off_w,
                               .valid_w = wp,
                               .read_w = wp};
    bool direct = wp == op->src_w && window_direct(op, &win);
    if (direct) { /* the over-read of the last vectors, from the last channel's window */
        const int64_t base = ((n * op->sc + op->sc - 1) * op->src_h + win.r0) * op->src_w;
        direct = base + read <= op->n * op->sc * op->src_h * op->src_w;
    }
    const int64_t slab_cs = flat_channel_floats(op, nr);               /* >= read */
    const int64_t chunk = direct ? op->sc : CV__SLAB_FLOATS / slab_cs; /* >= 1: flat_rows */
    if (i0 + nr < op->dst_h) { /* the rows the next block adds */
        const struct window next = {.n = n,
                                    .r0 = win.r0 + nsr,
                                    .rstep = 1,
                                    .nr = min64(op->rb, op->dst_h - i0 - nr),
                                    .c0 = win.c0,
                                    .valid_w = wp,
                                    .read_w = wp};
        window_prefetch(op, &next);
    }
    struct mk_args m;
    mk_args_init(op, &m);
    m.f_wp = wp;
    m.f_ow = op->dst_w;
    m.f_len = len;
    const int64_t bw = CHANS_NJ * VL;
    for (int64_t cc0 = 0; cc0 < op->sc; cc0 += chunk) {
        const int64_t ncc = min64(chunk, op->sc - cc0);
        const float *base;
        if (direct) {
            base = op->src + ((n * op->sc) * op->src_h + win.r0) * op->src_w;
            m.cs = op->src_h * op->src_w;
        } else {
            window_fill(op, &win, cc0, ncc, slab, wp, slab_cs);
            base = slab;
            m.cs = slab_cs;
        }
        m.rs = op->dil_h * wp;
        m.nc = ncc;
        m.accumulate = cc0 > 0;
        for (int64_t o0 = 0; o0 < op->dc; o0 += CHANS_NO) {
            const int no = (int)min64(CHANS_NO, op->dc - o0);
            m.w = op->w + o0 * op->w_os + cc0 * op->w_cs;
            m.bias = op->bias != NULL ? op->bias + o0 : NULL;
            m.dst = op->dst + ((n * op->dc + o0) * op->dst_h + i0) * op->dst_w;
            for (int64_t q0 = 0; q0 < len; q0 += bw) {
                const int nj = (int)((min64(bw, len - q0) + VL - 1) / VL);
                m.src = base + q0;
                m.f_q0 = q0;
                m.f_r0 = q0 / wp;
                m.f_j0 = q0 - m.f_r0 * wp;
                call_chans_flat(no, nj, &m);
            }
        }
    }
}

static void corr_run(const struct cv__corr_op *op, int64_t lo, int64_t hi) {
    float slab[CV__SLAB_FLOATS] __attribute__((aligned(64)));
    for (int64_t item = lo; item < hi; item++) {
        if (op->mode == CV__CORR_MODE_ROWS)
            corr_rows_item(op, item, slab);
        else if (op->mode == CV__CORR_MODE_FLAT)
            corr_flat_item(op, item, slab);
        else
            corr_chans_item(op, item, slab);
    }
}

/* ---- bk: micro-kernel --------------------------------------------------------------------- */

/* Sums, over np rows p of a piece and tw columns j, dy[o][p][j] * xrow(p, g)[j] for NO output
 * channels and G taps, and adds them to acc[o * t_stride + g]. Row p of tap g is
 * rowp[p * sh + tq[g]] + tb[g]. */
struct mk_bk_args {
    int64_t np, tw;
    const float *dy; /* output channel o0, first row and column of the piece */
    int64_t dy_rs, dy_os;
    const float *const *rowp;
    int64_t sh;
    const int64_t *tq, *tb;
    double *acc;
    int64_t t_stride;
    double *bacc; /* with SB: sums of dy per output channel, added to bacc[o] */
};

/* SB (sum bias): also sum dy itself, which the pass loads anyway, for the bias gradient. */
ALWAYS_INLINE void mk_bk(const int NO, const int G, const bool SB, const struct mk_bk_args *m) {
    vf s[BK_NO][BK_G_MAX], sb[BK_NO];
#pragma GCC unroll 16
    for (int o = 0; o < NO; o++) {
        sb[o] = v_zero();
#pragma GCC unroll 16
        for (int g = 0; g < G; g++)
            s[o][g] = v_zero();
    }
    const int64_t full = m->tw / VL * VL;
    const int tail = (int)(m->tw - full);
    for (int64_t p = 0; p < m->np; p++) {
        const float *d = m->dy + p * m->dy_rs;
        const float *xp[BK_G_MAX];
#pragma GCC unroll 16
        for (int g = 0; g < G; g++)
            xp[g] = m->rowp[p * m->sh + m->tq[g]] + m->tb[g];
        for (int64_t j = 0; j < full; j += VL) {
            vf dv[BK_NO];
#pragma GCC unroll 16
            for (int o = 0; o < NO; o++) {
                dv[o] = v_load(d + o * m->dy_os + j);
                if (SB)
                    sb[o] += dv[o];
            }
#pragma GCC unroll 16
            for (int g = 0; g < G; g++) {
                const vf xv = v_load(xp[g] + j);
#pragma GCC unroll 16
                for (int o = 0; o < NO; o++)
                    s[o][g] = v_fma(dv[o], xv, s[o][g]);
            }
        }
        if (tail > 0) {
            vf dv[BK_NO];
#pragma GCC unroll 16
            for (int o = 0; o < NO; o++) {
                dv[o] = v_load_n(d + o * m->dy_os + full, tail);
                if (SB)
                    sb[o] += dv[o];
            }
#pragma GCC unroll 16
            for (int g = 0; g < G; g++) {
                const vf xv = v_load_n(xp[g] + full, tail);
#pragma GCC unroll 16
                for (int o = 0; o < NO; o++)
                    s[o][g] = v_fma(dv[o], xv, s[o][g]);
            }
        }
    }
#pragma GCC unroll 16
    for (int o = 0; o < NO; o++) {
#pragma GCC unroll 16
        for (int g = 0; g < G; g++)
            m->acc[o * m->t_stride + g] += (double)v_hsum(s[o][g]);
        if (SB)
            m->bacc[o] += (double)v_hsum(sb[o]);
    }
}

/* Taps per group for a block of no output channels: as many as fit the accumulators. */
static int64_t bk_group_max(int no) {
    const int64_t g = BK_ACC / no;
    return g < BK_G_MAX ? g : BK_G_MAX;
}

#define BK_CASE(no, g, m)                                                                          \
    case (no)*32 + (g):                                                                            \
        if ((no) <= BK_NO && (no) * (g) <= BK_ACC && (g) <= BK_G_MAX)                              \
            mk_bk(no, g, SB, m);                                                                   \
        break;
#define BK_CASES_G(no, m)                                                                          \
    BK_CASE(no, 1, m)                                                                              \
    BK_CASE(no, 2, m)                                                                              \
    BK_CASE(no, 3, m)                                                                              \
    BK_CASE(no, 4, m)                                                                              \
    BK_CASE(no, 5, m)                                                                              \
    BK_CASE(no, 6, m)                                                                              \
    BK_CASE(no, 7, m)                                                                              \
    BK_CASE(no, 8, m)                                                                              \
    BK_CASE(no, 9, m)                                                                              \
    BK_CASE(no, 10, m)                                                                             \
    BK_CASE(no, 11, m)                                                                             \
    BK_CASE(no, 12, m)                                                                             \
    BK_CASE(no, 13, m) BK_CASE(no, 14, m) BK_CASE(no, 15, m) BK_CASE(no, 16, m)

#define BK_SWITCH(no, g, m)                                                                        \
    switch ((no)*32 + (g)) {                                                                       \
        BK_CASES_G(1, m)                                                                           \
        BK_CASES_G(2, m)                                                                           \
        BK_CASES_G(3, m)                                                                           \
        BK_CASES_G(4, m)                                                                           \
    default:                                                                                       \
        break;                                                                                     \
    }

__attribute__((noinline)) static void call_bk(int no, int g, const struct mk_bk_args *m) {
    const bool SB = false;
    BK_SWITCH(no, g, m)
}

__attribute__((noinline)) static void call_bk_sb(int no, int g, const struct mk_bk_args *m) {
    const bool SB = true;
    BK_SWITCH(no, g, m)
}

/* ---- bk: driver --------------------------------------------------------------------------- */

/* How a bk op is cut: column tiles of tw, row pieces of at most pr rows (short enough that each
 * float lane sums a few hundred products), and slab rows of slab_w floats. */
struct bk_plan {
    int64_t tw, pr, slab_w, max_rows;
};

static int64_t bk_rows_needed(const struct cv__bk_op *op, int64_t pr) {
    return (pr - 1) * op->stride_h + (op->kh - 1) * op->dil_h + 1;
}

static bool bk_plan_make(const struct cv__bk_op *op, struct bk_plan *pl) {
    if (op->kh * op->kw > CV__BK_TAPS_MAX)
        return false;
    int64_t tw = min64(op->ow, 512);
    for (;;) {
        const int64_t slab_w = round_up(tw + (op->kw - 1) * op->dil_w, VL);
        int64_t pr = min64(64, max64(1, 4096 / tw));
        /* + 1 row: the zero row that stands for rows outside the input */
        while (pr > 1 && ((bk_rows_needed(op, pr) + 1) * slab_w > CV__SLAB_FLOATS ||
                          bk_rows_needed(op, pr) > CV__BK_ROWS_MAX))
            pr /= 2;
        if ((bk_rows_needed(op, pr) + 1) * slab_w <= CV__SLAB_FLOATS &&
            bk_rows_needed(op, pr) <= CV__BK_ROWS_MAX) {
            *pl = (struct bk_plan){tw, pr, slab_w, bk_rows_needed(op, pr)};
            return true;
        }
        if (tw <= VL)
            return false;
        tw = max64(VL, round_up(tw / 2, VL));
    }
}

static bool bk_fits(const struct cv__bk_op *op) {
    struct bk_plan pl;
    return bk_plan_make(op, &pl);
}

/* Output channels per bk unit: whole blocks of BK_NO, up to BK_UNIT_CO, while their double
 * sums stay within CV__BK_UNIT_DOUBLES. A unit's padded input rows are prepared once for all
 * of them. */
static int64_t bk_unit_channels(const struct cv__bk_op *op) {
    const int64_t blocks = CV__BK_UNIT_DOUBLES / (op->kh * op->kw) / BK_NO;
    return BK_NO * max64(1, min64(blocks, BK_UNIT_CO / BK_NO));
}

/* Input channels per bk unit. A unit with one input channel streams the dY of its output
 * channels over every row once per input channel, and with many channels that stream (the
 * whole of dY per channel, far beyond L2) is what limits the pass. Several input channels per
 * unit, taken inside each row piece, reuse the piece's dY rows from cache for all of them, so
 * dY is read from memory once per group. Groups are as large as the double sums allow, of
 * nearly equal size, but leave at least 16 units (when there are that many (group of output
 * channels, input channel) pairs) so the threads still get even blocks without row chunks. */
static int64_t bk_unit_inputs(const struct cv__bk_op *op) {
    const int64_t T = op->kh * op->kw, uc = bk_unit_channels(op);
    const int64_t ogroups = (op->co + uc - 1) / uc;
    const int64_t cmax = max64(1, CV__BK_UNIT_DOUBLES / (uc * T));
    const int64_t cg = min64(cmax, max64(1, ogroups * op->c / 16));
    const int64_t ngroups = (op->c + cg - 1) / cg;
    return (op->c + ngroups - 1) / ngroups;
}

static int64_t bk_units(const struct cv__bk_op *op) {
    const int64_t uc = bk_unit_channels(op), cg = bk_unit_inputs(op);
    return (op->co + uc - 1) / uc * ((op->c + cg - 1) / cg);
}

/* Points rowp[0 .. nq) at the nq input rows from xr0 of plane (input channel cc of image n),
 * columns [xc0, xc0 + width): in place when cols_direct, else zero-padded copies in the slab
 * (row q at slab + (q + 1) * slab_w); rows outside the input point at the zero row slab[0..),
 * which *zero_ready says is already cleared. */
static void bk_rows(const struct cv__bk_op *op, const struct bk_plan *pl, const float *plane,
                    int64_t xr0, int64_t nq, int64_t xc0, int64_t width, bool cols_direct,
                    int64_t lo, int64_t hi, float *slab, bool *zero_ready, const float **rowp) {
    for (int64_t q = 0; q < nq; q++) {
        const int64_t xr = xr0 + q;
        if (xr < 0 || xr >= op->h) {
            if (!*zero_ready) {
                memset(slab, 0, (size_t)pl->slab_w * sizeof(float));
                *zero_ready = true;
            }
            rowp[q] = slab;
        } else if (cols_direct) {
            rowp[q] = plane + xr * op->w + xc0;
        } else {
            float *d = slab + (q + 1) * pl->slab_w;
            pad_row(d, plane + xr * op->w + xc0 + lo, lo, hi, width);
            rowp[q] = d;
        }
    }
}

/* Output rows per piece of the flattened bk layout, or 0 when it does not apply. When each
 * output row is one column tile whose width is not a whole number of vectors (56, 28, ...),
 * the per-row loop wastes part of a vector on every row and pays its setup on a few vectors.
 * Instead, for each tap column b the piece's input rows are copied, shifted by b, into rows
 * exactly ow wide: then dY rows (contiguous, ow wide) and the copy of tap (a, b) line up as two
 * flat arrays of np * ow floats, and one long vector loop covers the whole piece. Needs
 * stride_h 1; the kw copies must fit the slab with at least 2 rows per piece. */
static int64_t bk_flat_rows(const struct cv__bk_op *op, const struct bk_plan *pl) {
    if (op->stride_h != 1 || pl->tw != op->ow || op->ow % VL == 0)
        return 0;
    const int64_t halo = (op->kh - 1) * op->dil_h;
    int64_t np = min64(op->oh, max64(1, 4096 / op->ow));
    while (np >= 2 && op->kw * (np + halo) * op->ow > CV__SLAB_FLOATS)
        np--;
    return np >= 2 ? np : 0;
}

/* d[0..n) = s[0..n), or zeros when s is NULL. Rows here are a few vectors long, where the
 * calls of memcpy/memset cost more than the copy. */
static void vec_copy(float *d, const float *s, int64_t n) {
    int64_t j = 0;
    for (; j + VL <= n; j += VL)
        v_store(d + j, s != NULL ? v_load(s + j) : v_zero());
    if (j < n)
        v_store_n(d + j, s != NULL ? v_load_n(s + j, (int)(n - j)) : v_zero(), (int)(n - j));
}

/* pad_row with vec_copy. */
static void vec_pad_row(float *d, const float *src, int64_t lo, int64_t hi, int64_t width) {
    vec_copy(d, NULL, lo);
    if (hi > lo)
        vec_copy(d + lo, src, hi - lo);
    vec_copy(d + hi, NULL, width - hi);
}

/* Asks for the cache lines of input rows [xr0, xr0 + nq) of plane (those inside the input).
 * bk_item calls it for the next plane bk_flat_fill will copy, a channel's worth of compute
 * ahead: the rows come from L3 or memory, and each copy is too short for the hardware
 * prefetcher to catch up, so without it the copy waits on every line. */
static void bk_flat_prefetch(const struct cv__bk_op *op, const float *plane, int64_t xr0,
                             int64_t nq) {
    const int64_t r0 = max64(0, xr0), r1 = min64(op->h, xr0 + nq);
    if (r0 >= r1)
        return;
    const float *p = plane + r0 * op->w, *end = plane + r1 * op->w;
    for (; p < end; p += 16)
        __builtin_prefetch(p);
    __builtin_prefetch(end - 1);
}

/* Flattened layout (bk_flat_rows): copy b of input rows [xr0, xr0 + nq) of plane at
 * slab + b * cs, row q at q * ow, holding columns b*dil_w - pad_left + [0, ow), zero outside
 * the input. */
static void bk_flat_fill(const struct cv__bk_op *op, const float *plane, int64_t xr0, int64_t nq,
                         int64_t cs, float *slab) {
    for (int64_t b = 0; b < op->kw; b++) {
        const int64_t xc0 = b * op->dil_w - op->pad_left;
        const int64_t lo = min64(max64(0, -xc0), op->ow);
        const int64_t hi = max64(lo, min64(op->ow, op->w - xc0));
        for (int64_t q = 0; q < nq; q++) {
            float *d = slab + b * cs + q * op->ow;
            const int64_t xr = xr0 + q;
            if (xr < 0 || xr >= op->h)
                vec_copy(d, NULL, op->ow);
            else
                vec_pad_row(d, plane + xr * op->w + xc0 + lo, lo, hi, op->ow);
        }
    }
}

/* Item (chunk, unit): the chunk's rows of dK[o_lo .. o_hi, c_lo .. c_hi] for the unit's output
 * channels (in blocks of BK_NO) and input channels. Row pieces are the outer loop and input
 * channels the inner one, so a piece's dY rows stay in cache for every input channel; each sum
 * still adds its pieces in row order, whatever the grouping. */
static void bk_item(const struct cv__bk_op *op, const struct bk_plan *pl, int64_t item, float *slab,
                    const float **rowp) {
    const int64_t T = op->kh * op->kw, uc = bk_unit_channels(op), cg = bk_unit_inputs(op);
    const int64_t ncg = (op->c + cg - 1) / cg;
    const int64_t chunk = item % op->chunks, unit = item / op->chunks;
    const int64_t c_lo = unit % ncg * cg, c_hi = min64(op->c, c_lo + cg), nc = c_hi - c_lo;
    const int64_t o_lo = unit / ncg * uc, o_hi = min64(op->co, o_lo + uc);
    /* acc[((o - o_lo) * nc + (c - c_lo)) * T + t] */
    double acc[CV__BK_UNIT_DOUBLES], bacc[BK_UNIT_CO] = {0.0};
    for (int64_t q = 0; q < (o_hi - o_lo) * nc * T; q++)
        acc[q] = 0.0;
    /* The bias gradient rides along with the first tap group of input channel 0. */
    const bool want_bias = op->dbias != NULL && c_lo == 0;
    const int64_t rows = op->n * op->oh;
    const int64_t rlo = rows * chunk / op->chunks, rhi = rows * (chunk + 1) / op->chunks;
    const int64_t flat = bk_flat_rows(op, pl);
    /* Row and column of each tap in its piece's rows; flattened, one "row" per piece (tq 0)
     * and tap (a, b) reads copy b from row a*dil_h on. */
    const int64_t cs = (flat + (op->kh - 1) * op->dil_h) * op->ow;
    int64_t tq[CV__BK_TAPS_MAX], tb[CV__BK_TAPS_MAX];
    for (int64_t t = 0; t < T; t++) {
        tq[t] = flat > 0 ? 0 : t / op->kw * op->dil_h;
        tb[t] =
            flat > 0 ? t % op->kw * cs + t / op->kw * op->dil_h * op->ow : t % op->kw * op->dil_w;
    }
    if (flat > 0) {
        const float *base[1] = {slab};
        for (int64_t r = rlo; r < rhi;) {
            const int64_t n = r / op->oh, i = r % op->oh;
            const int64_t np = min64(flat, min64(op->oh - i, rhi - r));
            for (int64_t cc = c_lo; cc < c_hi; cc++) {
                bk_flat_fill(op, op->x + (n * op->c + cc) * op->h * op->w, i - op->pad_top,
                             np + (op->kh - 1) * op->dil_h, cs, slab);
                if (cc + 1 < c_hi) {
                    bk_flat_prefetch(op, op->x + (n * op->c + cc + 1) * op->h * op->w,
                                     i - op->pad_top, np + (op->kh - 1) * op->dil_h);
                } else if (r + np < rhi) { /* the next piece's first channel */
                    const int64_t n1 = (r + np) / op->oh, i1 = (r + np) % op->oh;
                    bk_flat_prefetch(op, op->x + (n1 * op->c + c_lo) * op->h * op->w,
                                     i1 - op->pad_top,
                                     min64(flat, op->oh - i1) + (op->kh - 1) * op->dil_h);
                }
                for (int64_t o0 = o_lo; o0 < o_hi; o0 += BK_NO) {
                    const int no = (int)min64(BK_NO, o_hi - o0);
                    const int64_t gmax = bk_group_max(no), ngroups = (T + gmax - 1) / gmax;
                    struct mk_bk_args m = {.np = 1,
                                           .tw = np * op->ow,
                                           .dy = op->dy + ((n * op->co + o0) * op->oh + i) * op->ow,
                                           .dy_rs = op->ow,
                                           .dy_os = op->oh * op->ow,
                                           .rowp = base,
                                           .sh = 0,
                                           .t_stride = nc * T,
                                           .bacc = bacc + (o0 - o_lo)};
                    for (int64_t gq = 0; gq < ngroups; gq++) {
                        const int64_t t0 = T * gq / ngroups, t1 = T * (gq + 1) / ngroups;
                        m.tq = tq + t0;
                        m.tb = tb + t0;
                        m.acc = acc + ((o0 - o_lo) * nc + (cc - c_lo)) * T + t0;
                        if (want_bias && cc == 0 && gq == 0)
                            call_bk_sb(no, (int)(t1 - t0), &m);
                        else
                            call_bk(no, (int)(t1 - t0), &m);
                    }
                }
            }
            r += np;
        }
    }
    bool zero_ready = false;
    for (int64_t j0 = 0; flat == 0 && j0 < op->ow; j0 += pl->tw) {
        const int64_t tw = min64(pl->tw, op->ow - j0);
        const int64_t xc0 = j0 - op->pad_left, width = tw + (op->kw - 1) * op->dil_w;
        const bool cols_direct = xc0 >= 0 && xc0 + width <= op->w;
        const int64_t lo = min64(max64(0, -xc0), width);
        const int64_t hi = max64(lo, min64(width, op->w - xc0));
        for (int64_t r = rlo; r < rhi;) {
            const int64_t n = r / op->oh, i = r % op->oh;
            const int64_t np = min64(pl->pr, min64(op->oh - i, rhi - r));
            const int64_t nq = bk_rows_needed(op, np);
            for (int64_t cc = c_lo; cc < c_hi; cc++) {
                const float *plane = op->x + (n * op->c + cc) * op->h * op->w;
                bk_rows(op, pl, plane, i * op->stride_h - op->pad_top, nq, xc0, width, cols_direct,
                        lo, hi, slab, &zero_ready, rowp);
                for (int64_t o0 = o_lo; o0 < o_hi; o0 += BK_NO) {
                    const int no = (int)min64(BK_NO, o_hi - o0);
                    /* Taps in groups of nearly equal size, as large as the accumulators allow. */
                    const int64_t gmax = bk_group_max(no), ngroups = (T + gmax - 1) / gmax;
                    struct mk_bk_args m = {.np = np,
                                           .tw = tw,
                                           .dy = op->dy +
                                                 ((n * op->co + o0) * op->oh + i) * op->ow + j0,
                                           .dy_rs = op->ow,
                                           .dy_os = op->oh * op->ow,
                                           .rowp = rowp,
                                           .sh = op->stride_h,
                                           .t_stride = nc * T,
                                           .bacc = bacc + (o0 - o_lo)};
                    for (int64_t gq = 0; gq < ngroups; gq++) {
                        const int64_t t0 = T * gq / ngroups, t1 = T * (gq + 1) / ngroups;
                        m.tq = tq + t0;
                        m.tb = tb + t0;
                        m.acc = acc + ((o0 - o_lo) * nc + (cc - c_lo)) * T + t0;
                        if (want_bias && cc == 0 && gq == 0)
                            call_bk_sb(no, (int)(t1 - t0), &m);
                        else
                            call_bk(no, (int)(t1 - t0), &m);
                    }
                }
            }
            r += np;
        }
    }
    /* One chunk: the sums are the result. Several: this chunk's slots of the partial sums. */
    const int64_t per_chunk = op->co * op->c * T + (op->dbias != NULL ? op->co : 0);
    double *part = op->chunks > 1 ? op->part + chunk * per_chunk : NULL;
    for (int64_t o = o_lo; o < o_hi; o++) {
        for (int64_t cc = c_lo; cc < c_hi; cc++) {
            const int64_t e0 = (o * op->c + cc) * T;
            const double *a = acc + ((o - o_lo) * nc + (cc - c_lo)) * T;
            for (int64_t t = 0; t < T; t++) {
                if (part == NULL)
                    op->dk[e0 + t] = (float)a[t];
                else
                    part[e0 + t] = a[t];
            }
        }
        if (want_bias && part == NULL)
            op->dbias[o] = (float)bacc[o - o_lo];
        else if (want_bias)
            part[op->co * op->c * T + o] = bacc[o - o_lo];
    }
}

static void bk_run(const struct cv__bk_op *op, int64_t lo, int64_t hi) {
    float slab[CV__SLAB_FLOATS] __attribute__((aligned(64)));
    const float *rowp[CV__BK_ROWS_MAX];
    struct bk_plan pl;
    if (!bk_plan_make(op, &pl))
        return; /* the caller checked bk_fits */
    for (int64_t item = lo; item < hi; item++)
        bk_item(op, &pl, item, slab, rowp);
}

/* ---- sums --------------------------------------------------------------------------------- */

/* Blocks of 4096 floats are summed in VL float lanes (1024..256 terms each) and added in
 * double. */
static double sum(const float *p, int64_t n) {
    double total = 0.0;
    for (int64_t b0 = 0; b0 < n; b0 += 4096) {
        const int64_t bn = min64(4096, n - b0);
        const float *q = p + b0;
        vf s0 = v_zero(), s1 = v_zero();
        int64_t j = 0;
        for (; j + 2 * VL <= bn; j += 2 * VL) {
            s0 += v_load(q + j);
            s1 += v_load(q + j + VL);
        }
        for (; j + VL <= bn; j += VL)
            s0 += v_load(q + j);
        if (j < bn)
            s1 += v_load_n(q + j, (int)(bn - j));
        total += (double)v_hsum(s0 + s1);
    }
    return total;
}

/* Squared errors of [0, n) summed in double, and their gradient into g when g != NULL:
 * scale * (2 * (yh - y)) when mean, else 2 * (yh - y), in float (what PyTorch computes). The
 * difference is formed in float and its square is exact in double, so the only rounding is in
 * the double additions (eight lanes, added in a fixed order). */
typedef float sq_vf __attribute__((vector_size(32)));
typedef double sq_vd __attribute__((vector_size(64)));

static double sqerr(const float *yh, const float *y, float *g, float scale, bool mean, int64_t n) {
    sq_vd acc0 = {0.0}, acc1 = {0.0};
    int64_t q = 0;
    for (; q + 16 <= n; q += 16) {
        sq_vf a0, a1, b0, b1;
        memcpy(&a0, yh + q, sizeof a0);
        memcpy(&a1, yh + q + 8, sizeof a1);
        memcpy(&b0, y + q, sizeof b0);
        memcpy(&b1, y + q + 8, sizeof b1);
        const sq_vf d0 = a0 - b0, d1 = a1 - b1;
        const sq_vd e0 = __builtin_convertvector(d0, sq_vd);
        const sq_vd e1 = __builtin_convertvector(d1, sq_vd);
        acc0 += e0 * e0;
        acc1 += e1 * e1;
        if (g != NULL) {
            const sq_vf g0 = mean ? scale * (2.0f * d0) : 2.0f * d0;
            const sq_vf g1 = mean ? scale * (2.0f * d1) : 2.0f * d1;
            memcpy(g + q, &g0, sizeof g0);
            memcpy(g + q + 8, &g1, sizeof g1);
        }
    }
    const sq_vd acc = acc0 + acc1;
    double total =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; q < n; q++) {
        const float d = yh[q] - y[q];
        total += (double)d * (double)d;
        if (g != NULL)
            g[q] = mean ? scale * (2.0f * d) : 2.0f * d;
    }
    return total;
}

/* ---- Winograd F(2x2, 3x3) forward (stride 1, dilation 1, 3x3 kernels) -------------------- */

/* Tiles per block (one vector of tiles along a tile row), output channels per item and per
 * register group, tile blocks per register group, input channels per chunk. The GEMM keeps
 * WG_NO x WG_Q accumulators: per input channel WG_Q vector loads and WG_NO broadcasts feed
 * WG_NO * WG_Q FMAs (8 x 2 on AVX-512: 10 loads per 16 FMAs, where 16 x 1 took 17). Scratch:
 * U 16*WG_CB*WG_OB + V 16*WG_CB*WG_Q*VL + M 16*WG_NO*WG_Q*VL + 4 padded rows, at most 82 KiB
 * (AVX-512). */
#define WG_OB 32
#define WG_CB 16
#define WG_NO 8
#if CV__KERN_ISA == CV__AVX512
#define WG_Q 2
#else
#define WG_Q 1
#endif
#define WG_RW        (2 * VL + 2) /* floats of one padded input row of a tile block */
#define WG_RS        (3 * VL)     /* their stride: whole vectors */
#define WG_TILES_MAX 1024

/* Lanes p[0], p[2], ..., p[2*VL-2] (even) or p[1], ..., p[2*VL-1] (odd); reads p[0..2*VL). */
ALWAYS_INLINE vf v_load_stride2(const float *p, int odd) {
#if CV__KERN_ISA == CV__AVX512
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(v_load(p), odd ? io : ie, v_load(p + VL));
#elif CV__KERN_ISA == CV__AVX2
    const vf a = v_load(p), b = v_load(p + VL);
    const vf s = odd ? _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))
                     : _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
#else
    vf v;
    for (int l = 0; l < VL; l++)
        v[l] = p[2 * l + odd];
    return v;
#endif
}

/* Interleaves a and b: lo = a0 b0 a1 b1 ... (first VL floats), hi = the next VL. */
ALWAYS_INLINE void v_interleave(vf a, vf b, vf *lo, vf *hi) {
#if CV__KERN_ISA == CV__AVX512
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    *lo = _mm512_permutex2var_ps(a, il, b);
    *hi = _mm512_permutex2var_ps(a, ih, b);
#elif CV__KERN_ISA == CV__AVX2
    const vf l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);
    *lo = _mm256_permute2f128_ps(l, h, 0x20);
    *hi = _mm256_permute2f128_ps(l, h, 0x31);
#else
    vf l, h;
    for (int q = 0; q < VL; q++) {
        l[q] = (q & 1) ? b[q / 2] : a[q / 2];
        h[q] = (q & 1) ? b[VL / 2 + q / 2] : a[VL / 2 + q / 2];
    }
    *lo = l;
    *hi = h;
#endif
}

static int64_t wino_tiles_h(const struct cv__corr_op *op) {
    return (op->dst_h + 1) / 2;
}

/* Groups of tile rows per (n, output-channel block): enough items to share among threads. */
static int64_t wino_row_groups(const struct cv__corr_op *op) {
    const int64_t nob = (op->dc + WG_OB - 1) / WG_OB;
    const int64_t base = op->n * nob;
    const int64_t th = wino_tiles_h(op);
    const int64_t tw = (op->dst_w + 1) / 2;
    const int64_t gmax = max64(1, th / ((128 + tw - 1) / tw)); /* >= 128 tiles per item */
    const int64_t g_thr = min64(base >= 8 ? 1 : (8 + base - 1) / base, gmax);
    /* At most WG_TILES_MAX tiles per item: its outputs, added to once per input-channel
     * chunk, stay in L2. */
    const int64_t rows_cap = max64(1, WG_TILES_MAX / tw);
    const int64_t g_cache = (th + rows_cap - 1) / rows_cap;
    return min64(max64(g_thr, g_cache), th);
}

static int64_t wino_items(const struct cv__corr_op *op) {
    return op->n * ((op->dc + WG_OB - 1) / WG_OB) * wino_row_groups(op);
}

/* U[pos][cc][ol] = (G g G^T)[pos] for channels [c0, c0+cb) and outputs [o0, o0+WG_OB); zero
 * for outputs past dc. */
static void wino_kernel_transform(const struct cv__corr_op *op, int64_t o0, int64_t c0, int cb,
                                  float *u) {
    for (int ol = 0; ol < WG_OB; ol++) {
        const int64_t o = o0 + ol;
        for (int cc = 0; cc < cb; cc++) {
            float t[16];
            if (o >= op->dc) {
                for (int p = 0; p < 16; p++)
                    t[p] = 0.0f;
            } else {
                const float *g = op->w + o * op->w_os + (c0 + cc) * op->w_cs;
                float gg[4][3]; /* G g */
                for (int b = 0; b < 3; b++) {
                    const float *gb = g + b * op->w_bs;
                    const float g0 = gb[0], g1 = gb[op->w_as], g2 = gb[2 * op->w_as];
                    gg[0][b] = g0;
                    gg[1][b] = 0.5f * (g0 + g1 + g2);
                    gg[2][b] = 0.5f * (g0 - g1 + g2);
                    gg[3][b] = g2;
                }
                for (int r = 0; r < 4; r++) {
                    const float g0 = gg[r][0], g1 = gg[r][1], g2 = gg[r][2];
                    t[r * 4 + 0] = g0;
                    t[r * 4 + 1] = 0.5f * (g0 + g1 + g2);
                    t[r * 4 + 2] = 0.5f * (g0 - g1 + g2);
                    t[r * 4 + 3] = g2;
                }
            }
            for (int p = 0; p < 16; p++)
                u[(p * WG_CB + cc) * WG_OB + ol] = t[p];
        }
    }
}

/* v[pos * xs + cc * cs + t] = (B^T d B)[pos] for the VL tiles starting at tile (tr, tc0) of
 * image n, channels c0 + cc for cc < cb. */
static void wino_input_transform(const struct cv__corr_op *op, int64_t n, int64_t c0, int cb,
                                 int64_t tr, int64_t tc0, float *rows, float *v, int64_t xs,
                                 int64_t cs) {
    const int64_t col0 = 2 * tc0 + op->off_w;
    int64_t lo = -col0, hi = op->src_w - col0;
    lo = lo < 0 ? 0 : lo > WG_RW ? WG_RW : lo;
    hi = hi > WG_RW ? WG_RW : hi < lo ? lo : hi;
    /* Rows are read in place when the window lies inside them; only edge windows are copied
     * (reading a just-stored copy at an offset of 2 floats cannot be store-forwarded, a stall
     * per load), and rows outside the source read a constant zero row. */
    static const float zero_row[WG_RS];
    const bool inside = lo == 0 && hi == WG_RW;
    for (int cc = 0; cc < cb; cc++) {
        const float *plane = op->src + (n * op->sc + c0 + cc) * op->src_h * op->src_w;
        const float *pr[4];
        for (int r = 0; r < 4; r++) {
            const int64_t xr = 2 * tr + op->off_h + r;
            if (xr < 0 || xr >= op->src_h || hi == lo) {
                pr[r] = zero_row;
                continue;
            }
            const float *src = plane + xr * op->src_w + col0;
            if (inside) {
                pr[r] = src;
                continue;
            }
            float *d = rows + r * WG_RS;
            vec_pad_row(d, src + lo, lo, hi, WG_RS);
            pr[r] = d;
        }
        vf t[4][4];
        for (int j = 0; j < 4; j++) {
            const vf d0 = v_load_stride2(pr[0] + (j & 2), j & 1);
            const vf d1 = v_load_stride2(pr[1] + (j & 2), j & 1);
            const vf d2 = v_load_stride2(pr[2] + (j & 2), j & 1);
            const vf d3 = v_load_stride2(pr[3] + (j & 2), j & 1);
            t[0][j] = d0 - d2;
            t[1][j] = d1 + d2;
            t[2][j] = d2 - d1;
            t[3][j] = d1 - d3;
        }
        for (int r = 0; r < 4; r++) {
            float *vp = v + r * 4 * xs + cc * cs;
            v_store(vp + 0 * xs, t[r][0] - t[r][2]);
            v_store(vp + 1 * xs, t[r][1] + t[r][2]);
            v_store(vp + 2 * xs, t[r][2] - t[r][1]);
            v_store(vp + 3 * xs, t[r][1] - t[r][3]);
        }
    }
}

/* M[pos][k][q][t] = sum_cc U[pos][cc][og*WG_NO + k] * V[pos][cc][q][t] for output group og. */
ALWAYS_INLINE void wino_gemm(const float *u, const float *v, int cb, int og, float *m) {
    for (int p = 0; p < 16; p++) {
        vf acc[WG_NO][WG_Q];
#pragma GCC unroll 16
        for (int k = 0; k < WG_NO; k++)
#pragma GCC unroll 4
            for (int q = 0; q < WG_Q; q++)
                acc[k][q] = v_zero();
        const float *up = u + p * WG_CB * WG_OB + og * WG_NO;
        const float *vp = v + p * WG_CB * WG_Q * VL;
        for (int cc = 0; cc < cb; cc++) {
            vf x[WG_Q];
#pragma GCC unroll 4
            for (int q = 0; q < WG_Q; q++)
                x[q] = v_load(vp + (cc * WG_Q + q) * VL);
#pragma GCC unroll 16
            for (int k = 0; k < WG_NO; k++) {
                const vf w = v_set1(up[cc * WG_OB + k]);
#pragma GCC unroll 4
                for (int q = 0; q < WG_Q; q++)
                    acc[k][q] = v_fma(w, x[q], acc[k][q]);
            }
        }
        float *mp = m + p * WG_NO * WG_Q * VL;
#pragma GCC unroll 16
        for (int k = 0; k < WG_NO; k++)
#pragma GCC unroll 4
            for (int q = 0; q < WG_Q; q++)
                v_store(mp + (k * WG_Q + q) * VL, acc[k][q]);
    }
}

/* Y = A^T M A for output channel o0+ol of the tile block; the first chunk writes bias + Y,
 * later chunks add Y. */
static void wino_output(const struct cv__corr_op *op, int64_t n, int64_t o, int k, const float *m,
                        int64_t tr, int64_t tc0, bool first) {
    vf s0[4], s1[4];
    for (int j = 0; j < 4; j++) {
        const vf m0 = v_load(m + ((0 * 4 + j) * WG_NO + k) * WG_Q * VL);
        const vf m1 = v_load(m + ((1 * 4 + j) * WG_NO + k) * WG_Q * VL);
        const vf m2 = v_load(m + ((2 * 4 + j) * WG_NO + k) * WG_Q * VL);
        const vf m3 = v_load(m + ((3 * 4 + j) * WG_NO + k) * WG_Q * VL);
        s0[j] = m0 + m1 + m2;
        s1[j] = m1 - m2 - m3;
    }
    const vf b = v_set1(first && op->bias != NULL ? op->bias[o] : 0.0f);
    const vf y[2][2] = {{s0[0] + s0[1] + s0[2] + b, s0[1] - s0[2] - s0[3] + b},
                        {s1[0] + s1[1] + s1[2] + b, s1[1] - s1[2] - s1[3] + b}};
    const int64_t c0 = 2 * tc0;
    const int64_t ncol = min64(2 * VL, op->dst_w - c0);
    for (int r = 0; r < 2; r++) {
        const int64_t i = 2 * tr + r;
        if (i >= op->dst_h)
            break;
        float *d = op->dst + ((n * op->dc + o) * op->dst_h + i) * op->dst_w + c0;
        vf lo, hi;
        v_interleave(y[r][0], y[r][1], &lo, &hi);
        const int n0 = (int)min64(VL, ncol), n1 = (int)(ncol - n0);
        if (!first) {
            lo = lo + v_load_tail(d, n0);
            if (n1 > 0)
                hi = hi + v_load_tail(d + VL, n1);
        }
        v_store_tail(d, lo, n0);
        if (n1 > 0)
            v_store_tail(d + VL, hi, n1);
    }
}

static void wino_run(const struct cv__corr_op *op, int64_t lo, int64_t hi) {
    float u[16 * WG_CB * WG_OB];
    float v[16 * WG_CB * WG_Q * VL];
    float m[16 * WG_NO * WG_Q * VL];
    float rows[4 * WG_RS];
    const int64_t nob = (op->dc + WG_OB - 1) / WG_OB;
    const int64_t nrg = wino_row_groups(op);
    const int64_t th = wino_tiles_h(op), tw = (op->dst_w + 1) / 2;
    for (int64_t item = lo; item < hi; item++) {
        /* Output-channel blocks vary fastest: consecutive items read the same input rows. */
        const int64_t ob = item % nob;
        const int64_t rg = (item / nob) % nrg;
        const int64_t n = item / (nrg * nob);
        const int64_t o0 = ob * WG_OB;
        const int nog = (int)((min64(WG_OB, op->dc - o0) + WG_NO - 1) / WG_NO);
        const int64_t tr0 = th * rg / nrg, tr1 = th * (rg + 1) / nrg;
        for (int64_t c0 = 0; c0 < op->sc; c0 += WG_CB) {
            const int cb = (int)min64(WG_CB, op->sc - c0);
            wino_kernel_transform(op, o0, c0, cb, u);
            for (int64_t tr = tr0; tr < tr1; tr++) {
                for (int64_t tc0 = 0; tc0 < tw; tc0 += WG_Q * VL) {
                    /* Tile blocks past the row's end transform zeros and are not written. */
                    const int nq = (int)min64(WG_Q, (tw - tc0 + VL - 1) / VL);
                    for (int q = 0; q < WG_Q; q++)
                        wino_input_transform(op, n, c0, cb, tr, tc0 + q * VL, rows, v + q * VL,
                                             WG_CB * WG_Q * VL, WG_Q * VL);
                    for (int og = 0; og < nog; og++) {
                        wino_gemm(u, v, cb, og, m);
                        const int64_t og0 = o0 + og * WG_NO;
                        for (int k = 0; k < WG_NO && og0 + k < op->dc; k++)
                            for (int q = 0; q < nq; q++)
                                wino_output(op, n, og0 + k, k, m + q * VL, tr, tc0 + q * VL,
                                            c0 == 0);
                    }
                }
            }
        }
    }
}

#include "corr2d_rwino.h"
#include "corr2d_wgrad.h"

/* ---- the table ---------------------------------------------------------------------------- */

#define CV__CAT2(a, b) a##b
#define CV__CAT(a, b)  CV__CAT2(a, b)

const struct cv__isa CV__CAT(cv__isa_, CV__KERN_NAME) = {
    .name = CV__KERN_NAME_STR,
    .vl = VL,
    .corr_plan = corr_plan,
    .corr_items = corr_items,
    .corr_run = corr_run,
    .wino_items = wino_items,
    .wino_run = wino_run,
    .rw_fits = rw_fits,
    .rw_items = rw_items,
    .rw_run = rw_run,
    .wk_fits = wk_fits,
    .wk_units = wk_units,
    .wk_run = wk_run,
    .bk_fits = bk_fits,
    .bk_units = bk_units,
    .bk_run = bk_run,
    .sum = sum,
    .sqerr = sqerr,
};
