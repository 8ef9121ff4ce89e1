/* Winograd F(4x4, 3x3) kernel gradient for bk ops with 3x3 kernels, stride 1 and dilation 1.
 * Included by the ISA units after corr2d_wino4.h (its input transform) and corr2d_wgrad.h (its
 * transpose), like corr2d_wgrad.h for F(2x2, 3x3):
 *
 *   dK[o][c] = G^T Z[o][c] G,   Z[o][c] = sum over 4x4 tiles of (A dY A^T)[o] . V[c]
 *
 * with V = B^T d B the forward transform of the tile's 6x6 input window: 36 products per tile
 * and channel pair instead of 144, 4x fewer multiply-adds than the direct kernels (F(2x2, 3x3):
 * 2.25x). The sum over tiles is a GEMM per point with the input channels in the vector lanes
 * (V transposed, a VL x VL block per point) and W = A dY A^T broadcast.
 *
 * Units are (a block of VL input channels, a block of WK4_O output channels), each covering
 * every image and tile, so dK does not depend on the thread count. Z is summed in float over at
 * most WK4_FLUSH tiles, then transformed (in double) and added to double sums. The scratch of a
 * unit (V, W, Z and the double sums, wk4_scratch_floats) is too large for a thread's stack: it
 * lives in a workspace corr2d.c allocates per call, one block per thread. */
#ifndef CV__KERN_ISA
#error "corr2d_wgrad4.h is included by corr2d_<isa>.c only"
#endif

#define WK4_O     32  /* output channels per unit */
#define WK4_FLUSH 256 /* tiles summed in float before the double sums take them */
#define WK4_NB    4   /* tile blocks whose V and W are gathered before one pass of the GEMM */

static bool wk4_fits(const struct cv__bk_op *op) {
    const int64_t tw = (op->ow + 3) / 4;
    return op->kh == 3 && op->kw == 3 && op->stride_h == 1 && op->dil_h == 1 && op->dil_w == 1 &&
           op->c >= 16 && op->co >= 16 && op->oh >= 8 && op->ow >= 8 &&
           tw * 2 >= (tw + VL - 1) / VL * VL;
}

static int64_t wk4_units(const struct cv__bk_op *op) {
    return (op->c + VL - 1) / VL * ((op->co + WK4_O - 1) / WK4_O);
}

/* Floats of one thread's scratch: V, W and Z (36 points each) and the double sums. */
static int64_t wk4_scratch_floats(const struct cv__bk_op *op) {
    return WK4_NB * 36 * VL * VL + (WK4_NB + 1) * 36 * WK4_O * VL + 2 * WK4_O * VL * 9;
}

/* w[pos * ws + t] = (A dY A^T)[pos] for output channel o and the VL tiles from (tr, tc0) of
 * image n; dY reads as zero past the output's last row and column. */
static void wk4_grad_transform(const struct cv__bk_op *op, int64_t n, int64_t o, int64_t tr,
                               int64_t tc0, float *w, int64_t ws) {
    const float *plane = op->dy + (n * op->co + o) * op->oh * op->ow;
    const int64_t col = 4 * tc0, cnt = min64(W4_RW, op->ow - col);
    vf e[4][4]; /* [row of the tile][column of the tile] */
    for (int r = 0; r < 4; r++) {
        const int64_t i = 4 * tr + r;
        if (i >= op->oh) {
            e[r][0] = e[r][1] = e[r][2] = e[r][3] = v_zero();
            continue;
        }
        const float *p = plane + i * op->ow + col;
        vf d[6];
        if (cnt < W4_RW) { /* the row's end */
#if CV__KERN_ISA == CV__AVX512
            __mmask16 mk[4];
            for (int s = 0; s < 4; s++)
                mk[s] = (__mmask16)(cnt >= (s + 1) * VL ? 0xffff
                                    : cnt <= s * VL     ? 0
                                                        : (1u << (cnt - s * VL)) - 1);
            w4_gather_masked(p, mk, 0, cnt, d);
#else
            float pad[W4_RS];
            vec_pad_row(pad, p, 0, cnt, W4_RS);
            w4_gather(pad, d);
#endif
        } else {
            w4_gather(p, d);
        }
        e[r][0] = d[0], e[r][1] = d[1], e[r][2] = d[2], e[r][3] = d[3];
    }
    /* A (6x4) along the tile's rows, then along its columns: rows e0, e0 + e1 + e2 + e3,
     * e0 - e1 + e2 - e3, e0 + 2 e1 + 4 e2 + 8 e3, e0 - 2 e1 + 4 e2 - 8 e3, e3. */
    const vf two = v_set1(2.0f), four = v_set1(4.0f), eight = v_set1(8.0f);
    vf a[6][4];
    for (int j = 0; j < 4; j++) {
        const vf e0 = e[0][j], e1 = e[1][j], e2 = e[2][j], e3 = e[3][j];
        const vf s02 = e0 + e2, s13 = e1 + e3;
        const vf t02 = v_fma(four, e2, e0), t13 = v_fma(eight, e3, two * e1);
        a[0][j] = e0;
        a[1][j] = s02 + s13;
        a[2][j] = s02 - s13;
        a[3][j] = t02 + t13;
        a[4][j] = t02 - t13;
        a[5][j] = e3;
    }
    for (int i = 0; i < 6; i++) {
        const vf e0 = a[i][0], e1 = a[i][1], e2 = a[i][2], e3 = a[i][3];
        const vf s02 = e0 + e2, s13 = e1 + e3;
        const vf t02 = v_fma(four, e2, e0), t13 = v_fma(eight, e3, two * e1);
        v_store(w + (i * 6 + 0) * ws, e0);
        v_store(w + (i * 6 + 1) * ws, s02 + s13);
        v_store(w + (i * 6 + 2) * ws, s02 - s13);
        v_store(w + (i * 6 + 3) * ws, t02 + t13);
        v_store(w + (i * 6 + 4) * ws, t02 - t13);
        v_store(w + (i * 6 + 5) * ws, e3);
    }
}

/* Adds G^T Z G of every (output, input channel) of the unit to dkd (double) and clears z; the
 * transform runs in float vectors over the input channels (Z is a float sum already). */
static void wk4_flush(float *z, double *dkd, int no, int nc) {
    const vf q4 = v_set1(0.25f), q6 = v_set1(1.0f / 6), q12 = v_set1(1.0f / 12),
             q24 = v_set1(1.0f / 24);
    for (int ol = 0; ol < no; ol++) {
        vf t[3][6]; /* G^T Z: G^T rows (1/4, -1/6, -1/6, 1/24, 1/24, 0), (0, -1/6, 1/6, 1/12,
                       -1/12, 0), (0, -1/6, -1/6, 1/6, 1/6, 1) */
        for (int q = 0; q < 6; q++) {
            vf m[6];
            for (int p = 0; p < 6; p++)
                m[p] = v_load(z + ((p * 6 + q) * WK4_O + ol) * VL);
            t[0][q] = q4 * m[0] - q6 * (m[1] + m[2]) + q24 * (m[3] + m[4]);
            t[1][q] = q6 * (m[2] - m[1]) + q12 * (m[3] - m[4]);
            t[2][q] = q6 * (m[3] + m[4] - m[1] - m[2]) + m[5];
        }
        float d[9][VL];
        for (int a = 0; a < 3; a++) {
            const vf *m = t[a];
            v_store(d[a * 3 + 0], q4 * m[0] - q6 * (m[1] + m[2]) + q24 * (m[3] + m[4]));
            v_store(d[a * 3 + 1], q6 * (m[2] - m[1]) + q12 * (m[3] - m[4]));
            v_store(d[a * 3 + 2], q6 * (m[3] + m[4] - m[1] - m[2]) + m[5]);
        }
        for (int cc = 0; cc < nc; cc++)
            for (int e = 0; e < 9; e++)
                dkd[(ol * VL + cc) * 9 + e] += d[e][cc];
    }
    for (int64_t q = 0; q < 36 * WK4_O * VL; q += VL)
        v_store(z + q, v_zero());
}

/* z[o][c] += sum over the VL tiles of w[o][t] * x[t][c] for output channels [0, no) (whole
 * register groups of WK_NO), input channels in the lanes: the transposed tiles stay in
 * registers. */
ALWAYS_INLINE void wk4_gemm(const vf x[VL], const float *w, int no, float *z) {
    for (int og = 0; og < no; og += WK_NO) {
        vf acc[WK_NO];
#pragma GCC unroll 16
        for (int k = 0; k < WK_NO; k++)
            acc[k] = v_load(z + (og + k) * VL);
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

/* Units [lo, hi) (unit = input-channel block + blocks * output-channel block) with the
 * thread's scratch (wk4_scratch_floats floats, 64-byte aligned). */
static void wk4_run(const struct cv__bk_op *op, float *scratch, int64_t lo, int64_t hi) {
    /* V and W of WK4_NB blocks, Z, the double sums. */
    float *v = scratch, *w = v + WK4_NB * 36 * VL * VL, *z = w + WK4_NB * 36 * WK4_O * VL;
    double *dkd = (double *)(z + 36 * WK4_O * VL);
    const int64_t vb = 36 * VL * VL, wb = 36 * WK4_O * VL; /* per block */
    float rows[6 * W4_RS];
    /* The forward input transform reads the input through a corr op view of it. */
    const struct cv__corr_op xop = {.src = op->x,
                                    .n = op->n,
                                    .sc = op->c,
                                    .src_h = op->h,
                                    .src_w = op->w,
                                    .off_h = -op->pad_top,
                                    .off_w = -op->pad_left};
    const int64_t ncb = (op->c + VL - 1) / VL;
    const int64_t th = (op->oh + 3) / 4, tw = (op->ow + 3) / 4;
    for (int64_t u = lo; u < hi; u++) {
        const int64_t c0 = u % ncb * VL, o0 = u / ncb * WK4_O;
        const int nc = (int)min64(VL, op->c - c0), no = (int)min64(WK4_O, op->co - o0);
        const int nog = (no + WK_NO - 1) / WK_NO * WK_NO; /* whole register groups */
        for (int64_t q = 0; q < 36 * WK4_O * VL; q += VL)
            v_store(z + q, v_zero());
        for (int64_t q = 0; q < WK4_NB * wb; q += VL)
            v_store(w + q, v_zero()); /* rows of channels [no, nog) stay zero */
        for (int64_t q = 0; q < WK4_O * VL * 9; q++)
            dkd[q] = 0.0;
        /* Tile blocks in order (image, tile row, block along the row), gathered WK4_NB at a
         * time; Z is flushed before it would hold more than WK4_FLUSH tiles. */
        const int64_t bw = (tw + VL - 1) / VL, nblk = op->n * th * bw;
        int64_t pending = 0; /* tiles summed in z since the last flush */
        for (int64_t b0 = 0; b0 < nblk; b0 += WK4_NB) {
            const int nb = (int)min64(WK4_NB, nblk - b0);
            if (pending + nb * VL > WK4_FLUSH) {
                wk4_flush(z, dkd, no, nc);
                pending = 0;
            }
            for (int b = 0; b < nb; b++) {
                const int64_t blk = b0 + b, n = blk / (th * bw), tr = blk / bw % th;
                const int64_t tc0 = blk % bw * VL;
                w4_input(&xop, n, c0, nc, tr, tc0, rows, v + b * vb, VL * VL, VL);
                for (int ol = 0; ol < no; ol++)
                    wk4_grad_transform(op, n, o0 + ol, tr, tc0, w + b * wb + ol * VL, WK4_O * VL);
            }
            /* Point by point, the blocks inner: Z of a point stays in L1 across them. */
            for (int pos = 0; pos < 36; pos++) {
                for (int b = 0; b < nb; b++) {
                    vf x[VL];
                    wk_transpose(v + b * vb + pos * VL * VL, nc, x);
                    wk4_gemm(x, w + b * wb + pos * WK4_O * VL, nog, z + pos * WK4_O * VL);
                }
            }
            pending += nb * VL;
        }
        wk4_flush(z, dkd, no, nc);
        for (int ol = 0; ol < no; ol++)
            for (int cc = 0; cc < nc; cc++)
                for (int e = 0; e < 9; e++)
                    op->dk[((o0 + ol) * op->c + c0 + cc) * 9 + e] =
                        (float)dkd[(ol * VL + cc) * 9 + e];
    }
}
