/* The vector layer of the corr2d kernels (see corr2d_impl.h): vf, VL, loads, stores and FMAs
 * for the instruction set of the including unit, the register-tile sizes each kernel family uses
 * on it, and small helpers shared by every kernel file.
 *
 * The kernels are written once and compiled three times: corr2d_avx512.c, corr2d_avx2.c and
 * corr2d_portable.c each define CV__KERN_ISA (AVX512, AVX2 or PORTABLE), set the target with
 * `#pragma GCC target` for the x86 variants, then include, in order, this file, corr2d_direct.h,
 * corr2d_stream.h, corr2d_bk.h, corr2d_sum.h, corr2d_wino.h, corr2d_wino4.h, corr2d_rwino.h,
 * corr2d_wgrad.h, corr2d_wgrad4.h and corr2d_table.h. Everything is static; the only export is the
 * table corr2d_table.h defines. */
#ifndef CV__KERN_ISA
#error "corr2d_vec.h is included by corr2d_<isa>.c only"
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
