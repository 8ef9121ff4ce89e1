/* Winograd F(4x4, 3x3) for corr ops with 3x3 kernels, stride 1 and dilation 1 (the forward pass
 * and the input gradient of many-channel 3x3 layers). Included by the ISA units after
 * corr2d_wino.h.
 *
 * Each 4x4 output tile is Y = A^T [sum_c U[o][c] . V[c]] A with U = G g G^T (6x6, the kernel)
 * and V = B^T d B (6x6, the tile's input window d): 36 products per tile and channel pair
 * instead of 144, 4x fewer multiply-adds than direct (F(2x2, 3x3): 2.25x). The points are
 * 0, +-1, +-2 and infinity (Lavin & Gray's matrices).
 *
 * Data stay blocked inside one call: corr2d.c allocates a workspace, the kernel transform
 * (w4_kernel) writes every U once into it, laid out for the GEMM ([output group][channel chunk]
 * [point][channel][W4_NO outputs]), and each thread then walks its own tile blocks (VL tiles
 * along a tile row, in the vector lanes) with its own V buffer in the workspace: for each
 * channel chunk it transforms the input of W4_Q tile blocks once, runs the 36 small GEMMs per
 * output group with W4_NO x W4_Q accumulators, and transforms the products straight into the
 * output rows (the first chunk writes bias + Y, later chunks add). The output of a tile block is
 * finished before the next starts, so it is written while still in cache, and with one chunk
 * (<= W4_CB input channels) it is written exactly once.
 *
 * Accuracy: the transforms multiply by up to 5 (B) and 8 (A), so rounding grows to a few times
 * F(2x2, 3x3)'s; U is computed in double. The unit tests hold this path to the same tolerance
 * as the others (1e-5 of the sum of |terms|), and w4_fits leaves shapes it has not been measured
 * on to F(2x2, 3x3). */
#ifndef CV__KERN_ISA
#error "corr2d_wino4.h is included by corr2d_<isa>.c only"
#endif

#define W4_NO 8  /* output channels per register group */
#define W4_CB 64 /* input channels per chunk (V buffer) */
#if CV__KERN_ISA == CV__AVX512
#define W4_Q 2 /* tile blocks per register group: 8 x 2 accumulators, 10 loads per 16 FMAs */
#else
#define W4_Q 1
#endif
#define W4_RW (4 * VL + 2) /* floats of one input row of a tile block */
#define W4_RS (5 * VL)     /* the stride of its padded copy: whole vectors */

/* Even and odd lanes of the 2*VL floats a, b (a first). */
ALWAYS_INLINE void v_deint2(vf a, vf b, vf *even, vf *odd) {
#if CV__KERN_ISA == CV__AVX512
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *even = _mm512_permutex2var_ps(a, ie, b);
    *odd = _mm512_permutex2var_ps(a, io, b);
#elif CV__KERN_ISA == CV__AVX2
    const vf e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const vf o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
#else
    vf e, o;
    for (int l = 0; l < VL / 2; l++) {
        e[l] = a[2 * l], o[l] = a[2 * l + 1];
        e[VL / 2 + l] = b[2 * l], o[VL / 2 + l] = b[2 * l + 1];
    }
    *even = e, *odd = o;
#endif
}

/* Lanes 1..VL-1 of d, then x. */
ALWAYS_INLINE vf v_shift_in(vf d, float x) {
#if CV__KERN_ISA == CV__AVX512
    const __m512i ix = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    return _mm512_permutex2var_ps(d, ix, _mm512_set1_ps(x));
#elif CV__KERN_ISA == CV__AVX2
    const vf s = _mm256_permutevar8x32_ps(d, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7));
    return _mm256_blend_ps(s, _mm256_set1_ps(x), 0x80);
#else
    vf r;
    for (int l = 0; l < VL - 1; l++)
        r[l] = d[l + 1];
    r[VL - 1] = x;
    return r;
#endif
}

/* d[j] lane l = p[4l + j] for j < 6; reads p[0 .. 4*VL + 2). */
ALWAYS_INLINE void w4_gather(const float *p, vf d[6]) {
    vf e01, o01, e23, o23;
    v_deint2(v_load(p), v_load(p + VL), &e01, &o01);
    v_deint2(v_load(p + 2 * VL), v_load(p + 3 * VL), &e23, &o23);
    v_deint2(e01, e23, &d[0], &d[2]);
    v_deint2(o01, o23, &d[1], &d[3]);
    d[4] = v_shift_in(d[0], p[4 * VL]);
    d[5] = v_shift_in(d[1], p[4 * VL + 1]);
}

#if CV__KERN_ISA == CV__AVX512
/* w4_gather of a window whose floats outside [lo, hi) read as zero, without copying it: the
 * masked-off lanes are never accessed, so p may point before its row. m[s] masks vector s. */
ALWAYS_INLINE void w4_gather_masked(const float *p, const __mmask16 m[4], int64_t lo, int64_t hi,
                                    vf d[6]) {
    vf e01, o01, e23, o23;
    v_deint2(_mm512_maskz_loadu_ps(m[0], p), _mm512_maskz_loadu_ps(m[1], p + VL), &e01, &o01);
    v_deint2(_mm512_maskz_loadu_ps(m[2], p + 2 * VL), _mm512_maskz_loadu_ps(m[3], p + 3 * VL), &e23,
             &o23);
    v_deint2(e01, e23, &d[0], &d[2]);
    v_deint2(o01, o23, &d[1], &d[3]);
    d[4] = v_shift_in(d[0], 4 * VL >= lo && 4 * VL < hi ? p[4 * VL] : 0.0f);
    d[5] = v_shift_in(d[1], 4 * VL + 1 >= lo && 4 * VL + 1 < hi ? p[4 * VL + 1] : 0.0f);
}
#endif

/* r = B^T d over six vectors (one 1-D input transform per lane). */
ALWAYS_INLINE void w4_bt(const vf d[6], vf r[6]) {
    const vf four = v_set1(4.0f), five = v_set1(5.0f), two = v_set1(2.0f);
    const vf a = d[4] - four * d[2], b = d[3] - four * d[1];
    const vf c = d[4] - d[2], e = two * (d[3] - d[1]);
    r[0] = v_fma(four, d[0], d[4]) - five * d[2];
    r[1] = a + b;
    r[2] = a - b;
    r[3] = c + e;
    r[4] = c - e;
    r[5] = v_fma(four, d[1], d[5]) - five * d[3];
}

/* y = A^T m over six vectors (one 1-D output transform per lane). */
ALWAYS_INLINE void w4_at(const vf m[6], vf y[4]) {
    const vf s = m[1] + m[2], t = m[1] - m[2], u = m[3] + m[4], w = m[3] - m[4];
    y[0] = m[0] + s + u;
    y[1] = v_fma(v_set1(2.0f), w, t);
    y[2] = v_fma(v_set1(4.0f), u, s);
    y[3] = v_fma(v_set1(8.0f), w, t) + m[5];
}

static int64_t w4_groups(const struct cv__corr_op *op) {
    return (op->dc + W4_NO - 1) / W4_NO;
}

static int64_t w4_chunks(const struct cv__corr_op *op) {
    return (op->sc + W4_CB - 1) / W4_CB;
}

/* Tile blocks per image: tile rows x blocks of VL tiles along a row. */
static int64_t w4_blocks(const struct cv__corr_op *op) {
    const int64_t th = (op->dst_h + 3) / 4, tw = (op->dst_w + 3) / 4;
    return th * ((tw + VL - 1) / VL);
}

static bool w4_fits(const struct cv__corr_op *op) {
    if (op->kh != 3 || op->kw != 3 || op->stride_h != 1 || op->dil_h != 1 || op->dil_w != 1 ||
        op->sc < 16 || op->dc < 16 || op->dst_h < 8 || op->dst_w < 8)
        return false;
    /* At most 1 row or column of padding on each side: an output near a wider zero border sums
     * few terms, and the tile's rounding (of the scale of its whole window) can exceed 1e-5 of
     * them (measured 1.5e-5 with padding 2 and 3); F(2x2, 3x3) takes those. */
    if (op->off_h < -1 || op->off_w < -1 || op->dst_h + 1 + op->off_h > op->src_h ||
        op->dst_w + 1 + op->off_w > op->src_w)
        return false;
    /* Tiles run in vectors along a tile row: at least half the lanes must be used. */
    const int64_t tw = (op->dst_w + 3) / 4;
    return tw * 2 >= (tw + VL - 1) / VL * VL;
}

static int64_t w4_u_floats(const struct cv__corr_op *op) {
    return w4_groups(op) * w4_chunks(op) * 36 * W4_CB * W4_NO;
}

static int64_t w4_v_floats(const struct cv__corr_op *op) {
    return 36 * W4_CB * W4_Q * VL;
}

/* Work items: groups of W4_Q tile blocks of one image. */
static int64_t w4_items(const struct cv__corr_op *op) {
    return op->n * ((w4_blocks(op) + W4_Q - 1) / W4_Q);
}

/* U for output groups [lo, hi): u[((og * chunks + ch) * 36 + pos) * W4_CB * W4_NO + cc * W4_NO
 * + k] = (G g G^T)[pos] of output og * W4_NO + k and input channel ch * W4_CB + cc (zero past
 * dc and sc), computed in double with the W4_NO outputs of a group side by side (the loops
 * over k vectorise). */
static void w4_kernel(const struct cv__corr_op *op, float *u, int64_t lo, int64_t hi) {
    const int64_t nch = w4_chunks(op);
    for (int64_t og = lo; og < hi; og++) {
        for (int64_t ch = 0; ch < nch; ch++) {
            float *ub = u + (og * nch + ch) * 36 * W4_CB * W4_NO;
            for (int cc = 0; cc < W4_CB; cc++) {
                const int64_t c = ch * W4_CB + cc;
                double g[3][3][W4_NO];
                for (int k = 0; k < W4_NO; k++) {
                    const int64_t o = og * W4_NO + k;
                    const bool in = o < op->dc && c < op->sc;
                    const float *gp = in ? op->w + o * op->w_os + c * op->w_cs : NULL;
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++)
                            g[a][b][k] = in ? gp[a * op->w_as + b * op->w_bs] : 0.0;
                }
                double gg[6][3][W4_NO]; /* G g: rows 0, +-1, +-2, infinity */
                for (int b = 0; b < 3; b++)
                    for (int k = 0; k < W4_NO; k++) {
                        const double g0 = g[0][b][k], g1 = g[1][b][k], g2 = g[2][b][k];
                        gg[0][b][k] = 0.25 * g0;
                        gg[1][b][k] = -(g0 + g1 + g2) / 6.0;
                        gg[2][b][k] = -(g0 - g1 + g2) / 6.0;
                        gg[3][b][k] = (0.25 * g0 + 0.5 * g1 + g2) / 6.0;
                        gg[4][b][k] = (0.25 * g0 - 0.5 * g1 + g2) / 6.0;
                        gg[5][b][k] = g2;
                    }
                for (int r = 0; r < 6; r++) {
                    float *up = ub + (r * 6 * W4_CB + cc) * W4_NO; /* pos = r * 6 + q */
                    for (int k = 0; k < W4_NO; k++) {
                        const double g0 = gg[r][0][k], g1 = gg[r][1][k], g2 = gg[r][2][k];
                        up[0 * W4_CB * W4_NO + k] = (float)(0.25 * g0);
                        up[1 * W4_CB * W4_NO + k] = (float)(-(g0 + g1 + g2) / 6.0);
                        up[2 * W4_CB * W4_NO + k] = (float)(-(g0 - g1 + g2) / 6.0);
                        up[3 * W4_CB * W4_NO + k] = (float)((0.25 * g0 + 0.5 * g1 + g2) / 6.0);
                        up[4 * W4_CB * W4_NO + k] = (float)((0.25 * g0 - 0.5 * g1 + g2) / 6.0);
                        up[5 * W4_CB * W4_NO + k] = (float)g2;
                    }
                }
            }
        }
    }
}

/* v[pos * xs + cc * cs + lane] = (B^T d B)[pos] of tile (tr, tc0 + lane), channel c0 + cc of
 * image n, for cc < cb. */
static void w4_input(const struct cv__corr_op *op, int64_t n, int64_t c0, int cb, int64_t tr,
                     int64_t tc0, float *rows, float *v, int64_t xs, int64_t cs) {
    static const float zero_row[W4_RS];
    const int64_t col0 = 4 * tc0 + op->off_w;
    int64_t lo = -col0, hi = op->src_w - col0;
    lo = lo < 0 ? 0 : lo > W4_RW ? W4_RW : lo;
    hi = hi > W4_RW ? W4_RW : hi < lo ? lo : hi;
    const bool inside = lo == 0 && hi == W4_RW;
#if CV__KERN_ISA == CV__AVX512
    __mmask16 mk[4];
    for (int s = 0; s < 4; s++) {
        uint32_t bits = 0;
        for (int l = 0; l < VL; l++)
            bits |= (uint32_t)(s * VL + l >= lo && s * VL + l < hi) << l;
        mk[s] = (__mmask16)bits;
    }
#endif
    for (int cc = 0; cc < cb; cc++) {
        const float *plane = op->src + (n * op->sc + c0 + cc) * op->src_h * op->src_w;
        vf h[6][6]; /* h[r] = B^T applied along row r */
        for (int r = 0; r < 6; r++) {
            const int64_t xr = 4 * tr + op->off_h + r;
            const float *p = zero_row;
            vf d[6];
            if (xr >= 0 && xr < op->src_h && hi > lo) {
                const float *src = plane + xr * op->src_w + col0;
                if (inside) {
                    p = src;
                } else {
#if CV__KERN_ISA == CV__AVX512
                    w4_gather_masked(src, mk, lo, hi, d);
                    w4_bt(d, h[r]);
                    continue;
#else
                    float *dr = rows + r * W4_RS;
                    vec_pad_row(dr, src + lo, lo, hi, W4_RS);
                    p = dr;
#endif
                }
            }
            w4_gather(p, d);
            w4_bt(d, h[r]);
        }
        for (int j = 0; j < 6; j++) {
            const vf col[6] = {h[0][j], h[1][j], h[2][j], h[3][j], h[4][j], h[5][j]};
            vf t[6];
            w4_bt(col, t);
            for (int i = 0; i < 6; i++)
                v_store(v + (i * 6 + j) * xs + cc * cs, t[i]);
        }
    }
}

/* m[(pos * W4_NO + k) * W4_Q * VL + q * VL + lane] = sum_cc U[pos][cc][k] * V[pos][cc][q]. */
ALWAYS_INLINE void w4_gemm(const float *ub, const float *v, int cb, float *m) {
    for (int pos = 0; pos < 36; pos++) {
        vf acc[W4_NO][W4_Q];
#pragma GCC unroll 8
        for (int k = 0; k < W4_NO; k++)
#pragma GCC unroll 2
            for (int q = 0; q < W4_Q; q++)
                acc[k][q] = v_zero();
        const float *up = ub + pos * W4_CB * W4_NO;
        const float *vp = v + pos * W4_CB * W4_Q * VL;
        for (int cc = 0; cc < cb; cc++) {
            vf x[W4_Q];
#pragma GCC unroll 2
            for (int q = 0; q < W4_Q; q++)
                x[q] = v_load(vp + (cc * W4_Q + q) * VL);
#pragma GCC unroll 8
            for (int k = 0; k < W4_NO; k++) {
                const vf w = v_set1(up[cc * W4_NO + k]);
#pragma GCC unroll 2
                for (int q = 0; q < W4_Q; q++)
                    acc[k][q] = v_fma(w, x[q], acc[k][q]);
            }
        }
        float *mp = m + pos * W4_NO * W4_Q * VL;
#pragma GCC unroll 8
        for (int k = 0; k < W4_NO; k++)
#pragma GCC unroll 2
            for (int q = 0; q < W4_Q; q++)
                v_store(mp + (k * W4_Q + q) * VL, acc[k][q]);
    }
}

/* Y = A^T M A of output channel o (register row k, block q) into its 4 output rows of tile
 * row tr from tile tc0 on; the first chunk writes bias + Y, later chunks add Y. */
static void w4_output(const struct cv__corr_op *op, int64_t n, int64_t o, int k, int q,
                      const float *m, int64_t tr, int64_t tc0, bool first) {
    vf t[4][6]; /* A^T along the point rows */
    for (int j = 0; j < 6; j++) {
        vf col[6], y[4];
        for (int i = 0; i < 6; i++)
            col[i] = v_load(m + ((i * 6 + j) * W4_NO + k) * W4_Q * VL + q * VL);
        w4_at(col, y);
        for (int r = 0; r < 4; r++)
            t[r][j] = y[r];
    }
    const vf b = v_set1(first && op->bias != NULL ? op->bias[o] : 0.0f);
    const int64_t c0 = 4 * tc0;
    const int64_t ncol = min64(4 * VL, op->dst_w - c0);
    for (int r = 0; r < 4; r++) {
        const int64_t i = 4 * tr + r;
        if (i >= op->dst_h)
            break;
        vf y[4];
        w4_at(t[r], y);
        /* Lane l of y[c] is column 4l + c: interleave back into 4 row vectors. */
        vf a0, a1, b0, b1, out[4];
        v_interleave(y[0], y[2], &a0, &a1);
        v_interleave(y[1], y[3], &b0, &b1);
        v_interleave(a0, b0, &out[0], &out[1]);
        v_interleave(a1, b1, &out[2], &out[3]);
        float *d = op->dst + ((n * op->dc + o) * op->dst_h + i) * op->dst_w + c0;
        for (int s = 0; s < 4 && s * VL < ncol; s++) {
            const int nl = (int)min64(VL, ncol - s * VL);
            vf val = out[s] + b;
            if (!first)
                val = val + v_load_tail(d + s * VL, nl);
            v_store_tail(d + s * VL, val, nl);
        }
    }
}

/* Computes items [lo, hi) (w4_items) with U from w4_kernel in u and the thread's V buffer v
 * (w4_v_floats floats). */
static void w4_run(const struct cv__corr_op *op, const float *u, float *v, int64_t lo, int64_t hi) {
    float m[36 * W4_NO * W4_Q * VL];
    float rows[6 * W4_RS];
    const int64_t nb = w4_blocks(op), ng = (nb + W4_Q - 1) / W4_Q;
    const int64_t tw = (op->dst_w + 3) / 4, bw = (tw + VL - 1) / VL;
    const int64_t nog = w4_groups(op), nch = w4_chunks(op);
    for (int64_t item = lo; item < hi; item++) {
        const int64_t n = item / ng, g0 = item % ng * W4_Q;
        const int nq = (int)min64(W4_Q, nb - g0);
        for (int64_t ch = 0; ch < nch; ch++) {
            const int64_t c0 = ch * W4_CB;
            const int cb = (int)min64(W4_CB, op->sc - c0);
            for (int q = 0; q < W4_Q; q++) {
                /* A missing last block transforms its neighbour's tiles and is not written. */
                const int64_t blk = g0 + (q < nq ? q : 0);
                w4_input(op, n, c0, cb, blk / bw, blk % bw * VL, rows, v + q * VL,
                         W4_CB * W4_Q * VL, W4_Q * VL);
            }
            for (int64_t og = 0; og < nog; og++) {
                w4_gemm(u + (og * nch + ch) * 36 * W4_CB * W4_NO, v, cb, m);
                for (int k = 0; k < W4_NO && og * W4_NO + k < op->dc; k++)
                    for (int q = 0; q < nq; q++) {
                        const int64_t blk = g0 + q;
                        w4_output(op, n, og * W4_NO + k, k, q, m, blk / bw, blk % bw * VL, ch == 0);
                    }
            }
        }
    }
}
