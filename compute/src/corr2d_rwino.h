/* Row Winograd F(4, 5) for corr ops with kernel rows 5 wide (stride 1, dilation 1). Included
 * by the ISA units after corr2d_vec.h (once per instruction set).
 *
 * Along each output row, 4 outputs y[j..j+4) of one kernel row g[0..5) over source d[j..j+8)
 * are A^T [(G g) . (B^T d)]: 8 multiplies instead of 20 (points 0, +-1, +-2, +-1/2 and
 * infinity, the 1-D transforms of Winograd F(6x6, 3x3) but for a 5-tap row). Rows and channels
 * are summed directly, so the elementwise products form a small GEMM per output row:
 *
 *   M[o][xi][t] = sum_{c, a} U[o][c][a][xi] * V[src row i+a][c][xi][t],  y = A^T M
 *
 * with tiles t in vectors (lane l = tile l, 4*VL output columns per vector). A thread walks a
 * strip of RW_Q vectors of tiles down its block of rows; V of the last kh source rows stays in
 * a ring, so each source row is transformed once per strip, and the kernel is transformed once
 * per work item. 2.5x fewer multiply-adds than the direct kernels; the transforms cost rounding
 * of a few ulps of the sums' scale (the unit tests check it against a double reference).
 *
 * The bias enters through xi = 1 (A^T's column for the point 1 is all ones): that accumulator
 * starts at the bias. */

#define RW_M 4 /* outputs per tile */
#define RW_N 8 /* transformed points per tile */
#if CV__KERN_ISA == CV__AVX512
/* Register tile: RW_P output channels x RW_Q tile vectors x RW_X points, 16 accumulators and 4
 * loaded vectors; per (channel, kernel row) 4 vector loads and 8 broadcasts feed 16 FMAs. */
#define RW_P 4
#define RW_Q 2
#define RW_X 2
#else
#define RW_P 2
#define RW_Q 2
#define RW_X 2
#endif
#define RW_STRIP (RW_M * RW_Q * VL) /* output columns of a strip */
#define RW_SRC_W (RW_STRIP + 4)     /* source columns a strip reads */
#define RW_ROW   (RW_STRIP + VL)    /* floats of the padded copy of a strip's source row */
#define RW_V_C   (RW_N * RW_Q * VL) /* floats of V per (source row, channel) */
#define RW_RING  CV__SLAB_FLOATS    /* floats of the V ring: kh x channels x RW_V_C */
#define RW_U     8192               /* floats of U: output channels x channels x kh x RW_N */
#define RW_ROWS  16                 /* output rows per work item, when there are enough */
#define RW_ITEMS 32                 /* work items to aim for (a few per thread) */
#define RW_TAPS  64                 /* (channel, kernel row) pairs: the V ring's bound */

/* Whether the kernels can run op (its V ring and U fit their scratch) and should: with fewer
 * than 4 output channels the register tile's channel block would be mostly padding, and the
 * direct kernels win. */
static bool rw_fits(const struct cv__corr_op *op) {
    if (op->kw != 5 || op->dil_w != 1 || op->stride_h != 1 || op->dil_h != 1 || op->dc < 4)
        return false;
    const int64_t nct = op->sc * op->kh;
    return nct <= RW_TAPS && nct * RW_V_C <= RW_RING && round_up(op->dc, RW_P) * nct * RW_N <= RW_U;
}

/* Output rows per work item: RW_ROWS, fewer when that leaves too few items, never below 8
 * (each item transforms kh - 1 source rows more than it has output rows). */
static int64_t rw_rows(const struct cv__corr_op *op) {
    const int64_t per_image = (RW_ITEMS + op->n - 1) / op->n;
    const int64_t rb = (op->dst_h + per_image - 1) / per_image;
    return min64(op->dst_h, max64(8, min64(RW_ROWS, rb)));
}

static int64_t rw_items(const struct cv__corr_op *op) {
    const int64_t rb = rw_rows(op);
    return op->n * ((op->dst_h + rb - 1) / rb);
}

/* u[((o * sc + c) * kh + a) * RW_N + xi] = (G g)[xi] for kernel row g = w(o, c, a, 0..5), in
 * double and rounded once; zeros for o in [dc, round_up(dc, RW_P)). */
static void rw_kernel_transform(const struct cv__corr_op *op, float *u) {
    const int64_t dcp = round_up(op->dc, RW_P);
    for (int64_t o = 0; o < dcp; o++) {
        for (int64_t c = 0; c < op->sc; c++) {
            for (int64_t a = 0; a < op->kh; a++) {
                float *d = u + ((o * op->sc + c) * op->kh + a) * RW_N;
                if (o >= op->dc) {
                    for (int x = 0; x < RW_N; x++)
                        d[x] = 0.0f;
                    continue;
                }
                const float *w = op->w + o * op->w_os + c * op->w_cs + a * op->w_as;
                const double g0 = w[0], g1 = w[op->w_bs], g2 = w[2 * op->w_bs],
                             g3 = w[3 * op->w_bs], g4 = w[4 * op->w_bs];
                d[0] = (float)(g0 / 4.0);
                d[1] = (float)((g0 + g1 + g2 + g3 + g4) / 18.0);
                d[2] = (float)((g0 - g1 + g2 - g3 + g4) / 18.0);
                d[3] = (float)((g0 + 2.0 * g1 + 4.0 * g2 + 8.0 * g3 + 16.0 * g4) / 360.0);
                d[4] = (float)((g0 - 2.0 * g1 + 4.0 * g2 - 8.0 * g3 + 16.0 * g4) / 360.0);
                d[5] = (float)((16.0 * g0 + 8.0 * g1 + 4.0 * g2 + 2.0 * g3 + g4) / 45.0);
                d[6] = (float)((16.0 * g0 - 8.0 * g1 + 4.0 * g2 - 2.0 * g3 + g4) / 45.0);
                d[7] = (float)(g4 / 4.0);
            }
        }
    }
}

/* d[k] lane l = p[4*l + k] for k in 0..8: the 8 source values of VL consecutive tiles; reads
 * p[0 .. 4*VL + 4). */
ALWAYS_INLINE void rw_deinterleave(const float *p, vf d[RW_N]) {
#if CV__KERN_ISA == CV__AVX512
    /* Two 16x4 -> 4x16 transposes, of p[0..64) and of p[4..68): tile t's k-th value is
     * element 4t + k. Step 1 gathers values {0, 1} and {2, 3} of 8 tiles per register pair,
     * step 2 joins the two halves of the tiles. */
    const __m512i i01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i i23 =
        _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    for (int h = 0; h < 2; h++) {
        const float *s = p + 4 * h;
        const vf a = v_load(s), b = v_load(s + VL), c = v_load(s + 2 * VL), e = v_load(s + 3 * VL);
        const vf lo0 = _mm512_permutex2var_ps(a, i01, b), lo1 = _mm512_permutex2var_ps(c, i01, e);
        const vf hi0 = _mm512_permutex2var_ps(a, i23, b), hi1 = _mm512_permutex2var_ps(c, i23, e);
        d[4 * h + 0] = _mm512_shuffle_f32x4(lo0, lo1, _MM_SHUFFLE(1, 0, 1, 0));
        d[4 * h + 1] = _mm512_shuffle_f32x4(lo0, lo1, _MM_SHUFFLE(3, 2, 3, 2));
        d[4 * h + 2] = _mm512_shuffle_f32x4(hi0, hi1, _MM_SHUFFLE(1, 0, 1, 0));
        d[4 * h + 3] = _mm512_shuffle_f32x4(hi0, hi1, _MM_SHUFFLE(3, 2, 3, 2));
    }
#else
    float t[RW_N][VL];
    for (int k = 0; k < RW_N; k++)
        for (int l = 0; l < VL; l++)
            t[k][l] = p[4 * l + k];
    for (int k = 0; k < RW_N; k++)
        d[k] = v_load(t[k]);
#endif
}

/* The inverse for the 4 outputs of VL tiles: writes y[k] lane l to q[4*l + k] for the first n
 * (1 .. 4*VL) columns. */
ALWAYS_INLINE void rw_interleave_store(float *q, const vf y[RW_M], int64_t n) {
#if CV__KERN_ISA == CV__AVX512
    const __m512i ilo = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    const __m512i ihi =
        _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
    /* y01 = y0 tiles 0..7 | y1 tiles 0..7 (and y23 likewise): then tile t's 4 outputs are
     * lanes t, 8 + t of y01 and t, 8 + t of y23. */
    const vf y01a = _mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(1, 0, 1, 0));
    const vf y01b = _mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(3, 2, 3, 2));
    const vf y23a = _mm512_shuffle_f32x4(y[2], y[3], _MM_SHUFFLE(1, 0, 1, 0));
    const vf y23b = _mm512_shuffle_f32x4(y[2], y[3], _MM_SHUFFLE(3, 2, 3, 2));
    const vf o[4] = {
        _mm512_permutex2var_ps(y01a, ilo, y23a), _mm512_permutex2var_ps(y01a, ihi, y23a),
        _mm512_permutex2var_ps(y01b, ilo, y23b), _mm512_permutex2var_ps(y01b, ihi, y23b)};
    for (int v = 0; v < 4; v++) {
        const int64_t left = n - (int64_t)v * VL;
        if (left <= 0)
            break;
        v_store_tail(q + v * VL, o[v], (int)min64(left, VL));
    }
#else
    float t[RW_M][VL];
    for (int k = 0; k < RW_M; k++)
        v_store(t[k], y[k]);
    for (int64_t j = 0; j < n; j++)
        q[j] = t[j % 4][j / 4];
#endif
}

/* V of source row xr of image n for one strip: v[(c * RW_N + xi) * RW_Q * VL + q * VL + l] =
 * (B^T d)[xi] of the tile starting at source column x0 + 4 * (q * VL + l); zero outside the
 * source. row is scratch for one padded row. */
static void rw_input_row(const struct cv__corr_op *op, int64_t n, int64_t xr, int64_t x0,
                         float *row, float *v) {
    if (xr < 0 || xr >= op->src_h) {
        for (int64_t e = 0; e < op->sc * RW_V_C; e += VL)
            v_store(v + e, v_zero());
        return;
    }
    const bool direct = x0 >= 0 && x0 + RW_SRC_W <= op->src_w;
    const int64_t lo = min64(max64(0, -x0), RW_SRC_W);
    const int64_t hi = max64(lo, min64(RW_SRC_W, op->src_w - x0));
    const vf k2 = v_set1(2.0f), k4 = v_set1(4.0f), k5 = v_set1(5.0f), k17 = v_set1(17.0f),
             k21 = v_set1(21.0f);
    for (int64_t c = 0; c < op->sc; c++) {
        const float *src = op->src + ((n * op->sc + c) * op->src_h + xr) * op->src_w + x0;
        /* Columns [lo, hi) of the strip lie inside the source; vec_pad_row copies in vectors (a
         * libc call per row would cost as much as the transform). */
        if (!direct)
            vec_pad_row(row, src + lo, lo, hi, RW_ROW);
        const float *p = direct ? src : row;
        float *vc = v + c * RW_V_C;
        for (int q = 0; q < RW_Q; q++) {
            vf d[RW_N];
            rw_deinterleave(p + q * RW_M * VL, d);
            /* B^T d, grouped by the symmetric pairs of points (+-1, +-2, +-1/2). */
            const vf s15 = d[1] + d[5], s26 = d[2] + d[6];
            const vf e2 = d[2] - k5 * d[4] + k4 * d[6];        /* point 2: even part */
            const vf f2 = k2 * (d[1] - k5 * d[3] + k4 * d[5]); /* odd part */
            const vf e3 = k2 * (k4 * d[2] - k5 * d[4] + d[6]); /* point 1/2 */
            const vf f3 = k4 * d[1] - k5 * d[3] + d[5];
            const vf x[RW_N] = {
                k4 * (d[0] - d[6]) + k21 * (d[4] - d[2]),
                k17 * (d[3] + d[4]) - k4 * (s15 + s26),
                k4 * (s15 - s26) - k17 * (d[3] - d[4]),
                e2 + f2,
                e2 - f2,
                e3 + f3,
                e3 - f3,
                k4 * (d[7] - d[1]) + k21 * (d[3] - d[5]),
            };
            for (int xi = 0; xi < RW_N; xi++)
                v_store(vc + (xi * RW_Q + q) * VL, x[xi]);
        }
    }
}

/* M for output channels [o0, o0 + RW_P) of one output row: m[((p * RW_Q + q) * RW_N + xi) *
 * VL] = sum over (c, a) of U[o0 + p][c][a][xi] * V(taps[c * kh + a])[xi][q], plus the bias at
 * xi = 1. Not inlined, like rw_output: inlined together, the constants of one stay in
 * registers through the other's loops and the accumulators spill. The tile loops are unrolled
 * in full (GCC -O2 leaves larger tiles as loops over accumulators in memory). */
__attribute__((noinline)) static void rw_gemm(const struct cv__corr_op *op, int64_t o0,
                                              const float *u, const float *const *taps, float *m) {
    const int64_t nct = op->sc * op->kh;
    float b[RW_P];
    for (int p = 0; p < RW_P; p++)
        b[p] = op->bias != NULL && o0 + p < op->dc ? op->bias[o0 + p] : 0.0f;
    for (int xb = 0; xb < RW_N; xb += RW_X) {
        vf acc[RW_P][RW_Q][RW_X];
#pragma GCC unroll 16
        for (int p = 0; p < RW_P; p++)
#pragma GCC unroll 16
            for (int q = 0; q < RW_Q; q++)
#pragma GCC unroll 16
                for (int x = 0; x < RW_X; x++)
                    acc[p][q][x] = xb + x == 1 ? v_set1(b[p]) : v_zero();
        const float *up = u + o0 * nct * RW_N + xb;
        /* One flat loop over (c, a): short nested loops cost a mispredicted exit each. */
        for (int64_t t = 0; t < nct; t++, up += RW_N) {
            const float *vp = taps[t] + xb * RW_Q * VL;
            vf v[RW_X][RW_Q];
#pragma GCC unroll 16
            for (int x = 0; x < RW_X; x++)
#pragma GCC unroll 16
                for (int q = 0; q < RW_Q; q++)
                    v[x][q] = v_load(vp + (x * RW_Q + q) * VL);
#pragma GCC unroll 16
            for (int p = 0; p < RW_P; p++) {
#pragma GCC unroll 16
                for (int x = 0; x < RW_X; x++) {
                    const vf w = v_set1(up[p * nct * RW_N + x]);
#pragma GCC unroll 16
                    for (int q = 0; q < RW_Q; q++)
                        acc[p][q][x] = v_fma(w, v[x][q], acc[p][q][x]);
                }
            }
        }
#pragma GCC unroll 16
        for (int p = 0; p < RW_P; p++)
#pragma GCC unroll 16
            for (int q = 0; q < RW_Q; q++)
#pragma GCC unroll 16
                for (int x = 0; x < RW_X; x++)
                    v_store(m + ((p * RW_Q + q) * RW_N + xb + x) * VL, acc[p][q][x]);
    }
}

/* y = A^T M for output channels [o0, o0 + RW_P) (those below dc) of output row i, strip
 * columns [j0, j0 + RW_STRIP) (those below dst_w). */
__attribute__((noinline)) static void rw_output(const struct cv__corr_op *op, int64_t n, int64_t o0,
                                                int64_t i, int64_t j0, const float *m) {
    const vf k2 = v_set1(2.0f), k4 = v_set1(4.0f), k8 = v_set1(8.0f), h1 = v_set1(0.5f),
             h2 = v_set1(0.25f), h3 = v_set1(0.125f);
    for (int p = 0; p < RW_P && o0 + p < op->dc; p++) {
        float *drow = op->dst + ((n * op->dc + o0 + p) * op->dst_h + i) * op->dst_w;
        for (int q = 0; q < RW_Q; q++) {
            const int64_t j = j0 + (int64_t)q * RW_M * VL;
            if (j >= op->dst_w)
                break;
            const float *mp = m + (p * RW_Q + q) * RW_N * VL;
            vf x[RW_N];
            for (int xi = 0; xi < RW_N; xi++)
                x[xi] = v_load(mp + xi * VL);
            const vf s1 = x[1] + x[2], d1 = x[1] - x[2], s2 = x[3] + x[4], d2 = x[3] - x[4],
                     s3 = x[5] + x[6], d3 = x[5] - x[6];
            const vf y[RW_M] = {x[0] + s1 + s2 + s3, d1 + k2 * d2 + h1 * d3, s1 + k4 * s2 + h2 * s3,
                                d1 + k8 * d2 + h3 * d3 + x[7]};
            rw_interleave_store(drow + j, y, min64(RW_M * VL, op->dst_w - j));
        }
    }
}

static void rw_run(const struct cv__corr_op *op, int64_t lo, int64_t hi) {
    float u[RW_U];
    float ring[RW_RING];
    float m[RW_P * RW_Q * RW_N * VL];
    float row[RW_ROW];
    const float *taps[RW_TAPS];
    rw_kernel_transform(op, u);
    const int64_t kh = op->kh, per = op->sc * RW_V_C; /* V floats of one (row, strip) */
    const int64_t rb = rw_rows(op), nblk = (op->dst_h + rb - 1) / rb;
    const int64_t dcp = round_up(op->dc, RW_P);
    const int64_t nstrips = (op->dst_w + RW_STRIP - 1) / RW_STRIP;
    /* The ring holds as many strips of a row as fit (whole rows when they do), so each output
     * row of a channel is written in one left-to-right pass: writing rows piecewise, a strip
     * at a time down the image, costs far more than the arithmetic on large outputs. */
    const int64_t chunk = max64(1, min64(nstrips, RW_RING / (kh * per)));
    for (int64_t item = lo; item < hi; item++) {
        const int64_t n = item / nblk;
        const int64_t i0 = item % nblk * rb, i1 = min64(i0 + rb, op->dst_h);
        for (int64_t s0 = 0; s0 < nstrips; s0 += chunk) {
            const int64_t ns = min64(chunk, nstrips - s0), slot = ns * per;
            /* Ring slot of source row i + a + off_h: (i - i0 + a) % kh. */
            for (int64_t a = 0; a + 1 < kh; a++)
                for (int64_t s = 0; s < ns; s++)
                    rw_input_row(op, n, i0 + a + op->off_h, (s0 + s) * RW_STRIP + op->off_w, row,
                                 ring + a * slot + s * per);
            for (int64_t i = i0; i < i1; i++) {
                float *fresh = ring + (i - i0 + kh - 1) % kh * slot;
                for (int64_t s = 0; s < ns; s++)
                    rw_input_row(op, n, i + kh - 1 + op->off_h, (s0 + s) * RW_STRIP + op->off_w,
                                 row, fresh + s * per);
                for (int64_t s = 0; s < ns; s++) {
                    for (int64_t a = 0; a < kh; a++)
                        for (int64_t c = 0; c < op->sc; c++)
                            taps[c * kh + a] =
                                ring + (i - i0 + a) % kh * slot + s * per + c * RW_V_C;
                    for (int64_t o0 = 0; o0 < dcp; o0 += RW_P) {
                        rw_gemm(op, o0, u, taps, m);
                        rw_output(op, n, o0, i, (s0 + s) * RW_STRIP, m);
                    }
                }
            }
        }
    }
}
