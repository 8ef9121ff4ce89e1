/* Winograd F(2x2, 3x3) kernel gradient for bk ops with 3x3 kernels, stride 1 and dilation 1.
 * Included by the ISA units after corr2d_wino.h, whose input transform it shares.
 *
 * The forward pass computes each 2x2 output tile as Y = A^T [sum_c U[o][c] . V[c]] A with
 * U = G g G^T and V = B^T d B (d: the tile's 4x4 input window). Its kernel gradient is
 *
 *   dK[o][c] = G^T Z[o][c] G,   Z[o][c] = sum over tiles of (A dY A^T)[o] . V[c]
 *
 * (dY: the tile's 2x2 output gradient, zero past the output's edge): 16 products per tile
 * instead of 36, 2.25x fewer multiply-adds than the direct bk kernels. The sum over tiles is a
 * GEMM per point pos with the tiles as its long dimension; here it runs with input channels in
 * the vector lanes (V is transposed, a VL x VL block per point) and W = A dY A^T broadcast, so
 * no horizontal sums are needed.
 *
 * Work is cut into units (a block of VL input channels, a block of WK_O output channels) that
 * each cover every image and tile, so dK does not depend on the thread count. Z is summed in
 * float over at most WK_FLUSH tiles, then transformed and added to double sums. */

#define WK_O     32  /* output channels per unit */
#define WK_NO    16  /* output channels per register group (16 accumulators of VL channels) */
#define WK_FLUSH 256 /* tiles summed in float before the double sums take them */

/* Whether the kernels take op: besides the shape, a row's tiles must fill more than 30% of a
 * vector of them (7x7 outputs, 4 tiles in 16 lanes: the direct kernels were faster, 10 ms
 * against 14 for 8x256 channels; from 10x10 on this path wins). */
static bool wk_fits(const struct cv__bk_op *op) {
    const int64_t tw = (op->ow + 1) / 2;
    return op->kh == 3 && op->kw == 3 && op->stride_h == 1 && op->dil_h == 1 && op->dil_w == 1 &&
           op->c >= 16 && op->co >= 16 && op->oh >= 8 && op->ow >= 8 && tw * 10 > VL * 3;
}

static int64_t wk_units(const struct cv__bk_op *op) {
    return (op->c + VL - 1) / VL * ((op->co + WK_O - 1) / WK_O);
}

/* r[l] lane k = in[k * VL + l] for k < rows (rows of in past `rows` read as zero): a VL x VL
 * transpose into registers, which the GEMM uses as they are. AVX-512: four stages of two-source
 * permutes; stage b swaps, within each pair of rows (i, i + b), the b-wide column blocks that lie
 * across the diagonal. */
ALWAYS_INLINE void wk_transpose(const float *in, int rows, vf r[VL]) {
#if CV__KERN_ISA == CV__AVX512
    for (int k = 0; k < 16; k++)
        r[k] = k < rows ? _mm512_loadu_ps(in + k * 16) : _mm512_setzero_ps();
    /* Stage s (b = 1 << s): row i takes its own b-blocks of even rank and row i + b's; row
     * i + b the rest (lo[s][j] = j or j - b + 16, hi[s][j] = j + b or j + 16). Constant tables:
     * indices built on the stack would be a store-forwarding stall per stage. */
    static const int32_t lo[4][16] = {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
                                      {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
                                      {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
                                      {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}};
    static const int32_t hi[4][16] = {
        {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31},
        {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
        {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
        {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}};
    for (int s = 0; s < 4; s++) {
        const int b = 1 << s;
        const __m512i ilo = _mm512_loadu_si512(lo[s]), ihi = _mm512_loadu_si512(hi[s]);
        for (int i = 0; i < 16; i++) {
            if ((i & b) != 0)
                continue;
            const __m512 x = r[i], y = r[i + b];
            r[i] = _mm512_permutex2var_ps(x, ilo, y);
            r[i + b] = _mm512_permutex2var_ps(x, ihi, y);
        }
    }
#else
    float t[VL][VL];
    for (int l = 0; l < VL; l++)
        for (int k = 0; k < VL; k++)
            t[l][k] = k < rows ? in[k * VL + l] : 0.0f;
    for (int l = 0; l < VL; l++)
        r[l] = v_load(t[l]);
#endif
}

/* w[pos * ws + t] = (A dY A^T)[pos] for output channel o and the VL tiles from (tr, tc0) of
 * image n; dY reads as zero past the output's last row and column. */
static void wk_grad_transform(const struct cv__bk_op *op, int64_t n, int64_t o, int64_t tr,
                              int64_t tc0, float *w, int64_t ws) {
    const float *plane = op->dy + (n * op->co + o) * op->oh * op->ow;
    const int64_t col = 2 * tc0, cnt = min64(2 * VL, op->ow - col);
    vf e[2][2]; /* [row of the tile][even/odd column] */
    for (int r = 0; r < 2; r++) {
        const int64_t i = 2 * tr + r;
        if (i >= op->oh) {
            e[r][0] = e[r][1] = v_zero();
            continue;
        }
        const float *p = plane + i * op->ow + col;
        float pad[2 * VL];
        if (cnt < 2 * VL) { /* the row's end: a zero-padded copy */
            vec_pad_row(pad, p, 0, cnt, 2 * VL);
            p = pad;
        }
        e[r][0] = v_load_stride2(p, 0);
        e[r][1] = v_load_stride2(p, 1);
    }
    /* A dY: rows dY0, dY0 + dY1, dY0 - dY1, -dY1; then each row (x0, x1) times A^T:
     * x0, x0 + x1, x0 - x1, -x1. */
    const vf zero = v_zero();
    const vf a[4][2] = {{e[0][0], e[0][1]},
                        {e[0][0] + e[1][0], e[0][1] + e[1][1]},
                        {e[0][0] - e[1][0], e[0][1] - e[1][1]},
                        {zero - e[1][0], zero - e[1][1]}};
    for (int r = 0; r < 4; r++) {
        v_store(w + (4 * r + 0) * ws, a[r][0]);
        v_store(w + (4 * r + 1) * ws, a[r][0] + a[r][1]);
        v_store(w + (4 * r + 2) * ws, a[r][0] - a[r][1]);
        v_store(w + (4 * r + 3) * ws, zero - a[r][1]);
    }
}

/* Adds G^T Z G of every (output, input channel) of the unit to dkd (double) and clears z. */
static void wk_flush(float *z, double *dkd, int no, int nc) {
    for (int ol = 0; ol < no; ol++) {
        for (int cc = 0; cc < nc; cc++) {
            double m[4][4];
            for (int pos = 0; pos < 16; pos++)
                m[pos / 4][pos % 4] = z[(pos * WK_O + ol) * VL + cc];
            double t[3][4]; /* G^T Z: rows Z0 + (Z1 + Z2)/2, (Z1 - Z2)/2, (Z1 + Z2)/2 + Z3 */
            for (int j = 0; j < 4; j++) {
                t[0][j] = m[0][j] + 0.5 * (m[1][j] + m[2][j]);
                t[1][j] = 0.5 * (m[1][j] - m[2][j]);
                t[2][j] = 0.5 * (m[1][j] + m[2][j]) + m[3][j];
            }
            double *d = dkd + (ol * VL + cc) * 9;
            for (int r = 0; r < 3; r++) {
                d[r * 3 + 0] += t[r][0] + 0.5 * (t[r][1] + t[r][2]);
                d[r * 3 + 1] += 0.5 * (t[r][1] - t[r][2]);
                d[r * 3 + 2] += 0.5 * (t[r][1] + t[r][2]) + t[r][3];
            }
        }
    }
    for (int64_t q = 0; q < 16 * WK_O * VL; q += VL)
        v_store(z + q, v_zero());
}

/* z[pos][o][c] += sum over the VL tiles of w[pos][o][t] * x[t][c] for the unit's output
 * channels [0, no), in groups of WK_NO with the input channels in the lanes. */
ALWAYS_INLINE void wk_gemm(const vf x[VL], const float *w, int no, float *z) {
    for (int og = 0; og < no; og += WK_NO) {
        vf acc[WK_NO];
#pragma GCC unroll 16
        for (int k = 0; k < WK_NO; k++)
            acc[k] = v_load(z + (og + k) * VL);
        /* One base pointer stepping along the tiles, the channels at constant offsets: with a
         * pointer per channel the 16 addresses spill. */
        const float *wt = w + og * VL;
#pragma GCC unroll 16
        for (int t = 0; t < VL; t++, wt++) {
#pragma GCC unroll 16
            for (int k = 0; k < WK_NO; k++)
                acc[k] = v_fma(v_set1(wt[k * VL]), x[t], acc[k]);
        }
#pragma GCC unroll 16
        for (int k = 0; k < WK_NO; k++)
            v_store(z + (og + k) * VL, acc[k]);
    }
}

/* Units [lo, hi): unit = input-channel block + blocks * output-channel block. */
static void wk_run(const struct cv__bk_op *op, int64_t lo, int64_t hi) {
    float v[16 * VL * VL], w[16 * WK_O * VL], z[16 * WK_O * VL];
    float rows[4 * WG_RS];
    double dkd[WK_O * VL * 9];
    /* The forward input transform reads the input through a corr op view of it. */
    const struct cv__corr_op xop = {.src = op->x,
                                    .n = op->n,
                                    .sc = op->c,
                                    .src_h = op->h,
                                    .src_w = op->w,
                                    .off_h = -op->pad_top,
                                    .off_w = -op->pad_left};
    const int64_t ncb = (op->c + VL - 1) / VL;
    const int64_t th = (op->oh + 1) / 2, tw = (op->ow + 1) / 2;
    for (int64_t u = lo; u < hi; u++) {
        const int64_t c0 = u % ncb * VL, o0 = u / ncb * WK_O;
        const int nc = (int)min64(VL, op->c - c0), no = (int)min64(WK_O, op->co - o0);
        const int nog = (no + WK_NO - 1) / WK_NO * WK_NO; /* whole register groups */
        for (int64_t q = 0; q < 16 * WK_O * VL; q += VL)
            v_store(z + q, v_zero());
        for (int64_t q = 0; q < WK_O * VL * 9; q++)
            dkd[q] = 0.0;
        /* Gradient rows of channels [no, nog) stay zero: their z is added to and dropped. */
        for (int64_t q = 0; q < 16 * WK_O * VL; q += VL)
            v_store(w + q, v_zero());
        int64_t pending = 0; /* tiles summed in z since the last flush */
        for (int64_t n = 0; n < op->n; n++) {
            for (int64_t tr = 0; tr < th; tr++) {
                for (int64_t tc0 = 0; tc0 < tw; tc0 += VL) {
                    const int64_t nt = min64(VL, tw - tc0);
                    if (pending + nt > WK_FLUSH) {
                        wk_flush(z, dkd, no, nc);
                        pending = 0;
                    }
                    wino_input_transform(&xop, n, c0, nc, tr, tc0, rows, v, VL * VL, VL);
                    for (int ol = 0; ol < no; ol++)
                        wk_grad_transform(op, n, o0 + ol, tr, tc0, w + ol * VL, WK_O * VL);
                    for (int pos = 0; pos < 16; pos++) {
                        vf x[VL];
                        wk_transpose(v + pos * VL * VL, nc, x);
                        wk_gemm(x, w + pos * WK_O * VL, nog, z + pos * WK_O * VL);
                    }
                    pending += nt;
                }
            }
        }
        wk_flush(z, dkd, no, nc);
        for (int ol = 0; ol < no; ol++)
            for (int cc = 0; cc < nc; cc++)
                for (int e = 0; e < 9; e++)
                    op->dk[((o0 + ol) * op->c + c0 + cc) * 9 + e] =
                        (float)dkd[(ol * VL + cc) * 9 + e];
    }
}
