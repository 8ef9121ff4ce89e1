/* Winograd F(2x2, 3x3) forward kernels (see corr2d_impl.h). Included by the ISA units after
 * corr2d_vec.h; corr2d_wgrad.h shares its input transform. */
#ifndef CV__KERN_ISA
#error "corr2d_wino.h is included by corr2d_<isa>.c only"
#endif

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
