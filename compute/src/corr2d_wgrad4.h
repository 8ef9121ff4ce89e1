/* Winograd F(4x4, 3x3) kernel gradient for bk ops with 3x3 kernels, stride 1 and dilation 1.
 * Included by the ISA units after corr2d_wino4.h (its input transform) and corr2d_wgrad.h (its
 * transpose):
 *
 *   dK[o][c] = G^T Z[o][c] G,   Z[pos][o][c] = sum over 4x4 tiles t of W[pos][o][t] . V[pos][t][c]
 *
 * with V = B^T d B the forward transform of the tile's 6x6 input window and W = A dY A^T the
 * transform of its 4x4 output gradient: 36 products per tile and channel pair instead of 144,
 * 4x fewer multiply-adds than the direct kernels.
 *
 * The sum over tiles is 36 GEMMs (one per point pos) with the tiles as their reduction. A work
 * item is (a block of up to WK4_CB input and WK4_OB output channels, a slot: a fixed range of
 * tile chunks). It walks its chunks (up to VL tiles along one tile row) and per chunk:
 *  - transforms the input of VL channels at a time (tiles in the lanes, w4_input) and transposes
 *    it into V[pos][t][c] (channels in the lanes);
 *  - transforms dY of every output channel into W[pos][o][t] (tiles in the lanes: the GEMM
 *    broadcasts its scalars, so it needs no transpose);
 *  - runs the GEMMs with register tiles of WK4_RO output channels x WK4_RV channel vectors over
 *    the chunk's valid tiles only (the padding lanes of a short row cost nothing): per tile
 *    WK4_RV loads and WK4_RO broadcasts feed WK4_RO x WK4_RV FMAs, Z[pos] (16 KiB for 64 x 64
 *    channels) stays in L1 across them.
 * Z is summed in float over at most WK4_FLUSH tiles, then transformed (G^T Z G, in float over the
 * channel lanes) and added to double sums. The slots are fixed by the shape, never by the thread
 * count: with one slot an item writes its block of dK; with several, its double sums go to
 * op->part (slot-major, dK's layout), which corr2d.c adds in slot order. So dK does not depend on
 * the thread count. The scratch of an item (wk4_scratch_floats) lives in a workspace corr2d.c
 * owns, one block per thread. */
#ifndef CV__KERN_ISA
#error "corr2d_wgrad4.h is included by corr2d_<isa>.c only"
#endif

#define WK4_CB    64  /* input channels per block */
#define WK4_OB    64  /* output channels per block */
#define WK4_FLUSH 256 /* tiles summed in float before the double sums take them */
#define WK4_ITEMS 4   /* slots are added until there are this many items (or one per chunk) */
/* Floats added to the stride between points of T, V, W and Z: without them the 36 points of a
 * channel lie 4 KiB apart (64 x 16 floats) and fall into one set of the L1 cache. */
#define WK4_SKEW 16
#if CV__KERN_ISA == CV__AVX512
#define WK4_RO 6 /* register tile: 6 x 4 accumulators + 4 loaded vectors of 32 zmm */
#define WK4_RV 4
#else
#define WK4_RO 6 /* 6 x 2 accumulators + 2 loaded vectors of 16 registers */
#define WK4_RV 2
#endif

static bool wk4_fits(const struct cv__bk_op *op) {
    const int64_t tw = (op->ow + 3) / 4;
    return op->kh == 3 && op->kw == 3 && op->stride_h == 1 && op->dil_h == 1 && op->dil_w == 1 &&
           op->c >= 16 && op->co >= 16 && op->oh >= 8 && op->ow >= 8 &&
           tw * 2 >= (tw + VL - 1) / VL * VL;
}

/* Channel blocks (input x output) of op. */
static int64_t wk4_blocks(const struct cv__bk_op *op) {
    return (op->c + WK4_CB - 1) / WK4_CB * ((op->co + WK4_OB - 1) / WK4_OB);
}

/* Tile chunks of op: VL tiles (fewer at a row's end) of one tile row. */
static int64_t wk4_chunks(const struct cv__bk_op *op) {
    const int64_t th = (op->oh + 3) / 4, tw = (op->ow + 3) / 4;
    return op->n * th * ((tw + VL - 1) / VL);
}

/* Slots per channel block: enough for WK4_ITEMS items, at most one per chunk. */
static int64_t wk4_slots(const struct cv__bk_op *op) {
    const int64_t b = wk4_blocks(op), want = (WK4_ITEMS + b - 1) / b;
    return min64(want, wk4_chunks(op));
}

/* Work items: slot + slots * channel block. */
static int64_t wk4_items(const struct cv__bk_op *op) {
    return wk4_blocks(op) * wk4_slots(op);
}

/* Floats of one thread's scratch: the input transform of VL channels, V, W, Z and the double
 * sums (two floats each). */
static int64_t wk4_scratch_floats(const struct cv__bk_op *op) {
    (void)op;
    return 36 * (VL * VL + VL * WK4_CB + WK4_OB * VL + WK4_OB * WK4_CB + 4 * WK4_SKEW) +
           2 * 9 * WK4_OB * WK4_CB;
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

/* Adds G^T Z G of the block's no x nc channel pairs to dkd[e][o][c] (ldc columns) and clears z
 * (z[pos][o][c], rows of ldc floats); the transform runs in float vectors over the channels. */
static void wk4_flush(float *z, int64_t ps, double *dkd, int no, int nc, int ldc) {
    const vf q4 = v_set1(0.25f), q6 = v_set1(1.0f / 6), q12 = v_set1(1.0f / 12),
             q24 = v_set1(1.0f / 24);
    for (int ol = 0; ol < no; ol++) {
        for (int cv = 0; cv < nc; cv += VL) {
            vf t[3][6]; /* G^T Z: G^T rows (1/4, -1/6, -1/6, 1/24, 1/24, 0), (0, -1/6, 1/6,
                           1/12, -1/12, 0), (0, -1/6, -1/6, 1/6, 1/6, 1) */
            for (int q = 0; q < 6; q++) {
                vf m[6];
                for (int p = 0; p < 6; p++)
                    m[p] = v_load(z + (p * 6 + q) * ps + ol * ldc + cv);
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
            const int cn = (int)min64(VL, nc - cv);
            for (int e = 0; e < 9; e++) {
                double *row = dkd + ((int64_t)e * WK4_OB + ol) * WK4_CB + cv;
                for (int l = 0; l < cn; l++)
                    row[l] += d[e][l];
            }
        }
    }
    for (int64_t q = 0; q < 36 * ps; q += VL)
        v_store(z + q, v_zero());
}

/* z[i][j] += sum over tiles t < nt of w[i * VL + t] * v[t * ldv + j] for RO rows i and RV
 * vectors of columns j (z rows of ldz floats): the register tile of the GEMM. */
ALWAYS_INLINE void wk4_tile(const float *w, const float *v, int64_t ldv, int nt, float *z,
                            int64_t ldz, const int RO, const int RV) {
    vf acc[WK4_RO][WK4_RV];
#pragma GCC unroll 8
    for (int i = 0; i < RO; i++)
#pragma GCC unroll 4
        for (int j = 0; j < RV; j++)
            acc[i][j] = v_load(z + i * ldz + j * VL);
    for (int t = 0; t < nt; t++) {
        vf x[WK4_RV];
#pragma GCC unroll 4
        for (int j = 0; j < RV; j++)
            x[j] = v_load(v + t * ldv + j * VL);
#pragma GCC unroll 8
        for (int i = 0; i < RO; i++) {
            const vf b = v_set1(w[i * VL + t]);
#pragma GCC unroll 4
            for (int j = 0; j < RV; j++)
                acc[i][j] = v_fma(b, x[j], acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < RO; i++)
#pragma GCC unroll 4
        for (int j = 0; j < RV; j++)
            v_store(z + i * ldz + j * VL, acc[i][j]);
}

/* wk4_tile for ro (1..WK4_RO) rows: the compiler gets every count as a constant. */
#define WK4_ROWS(RV)                                                                               \
    static void wk4_rows_##RV(const float *w, const float *v, int64_t ldv, int nt, float *z,       \
                              int64_t ldz, int ro) {                                               \
        switch (ro) {                                                                              \
        case 1:                                                                                    \
            wk4_tile(w, v, ldv, nt, z, ldz, 1, RV);                                                \
            break;                                                                                 \
        case 2:                                                                                    \
            wk4_tile(w, v, ldv, nt, z, ldz, 2, RV);                                                \
            break;                                                                                 \
        case 3:                                                                                    \
            wk4_tile(w, v, ldv, nt, z, ldz, 3, RV);                                                \
            break;                                                                                 \
        case 4:                                                                                    \
            wk4_tile(w, v, ldv, nt, z, ldz, 4, RV);                                                \
            break;                                                                                 \
        case 5:                                                                                    \
            wk4_tile(w, v, ldv, nt, z, ldz, 5, RV);                                                \
            break;                                                                                 \
        default:                                                                                   \
            wk4_tile(w, v, ldv, nt, z, ldz, WK4_RO, RV);                                           \
            break;                                                                                 \
        }                                                                                          \
    }
WK4_ROWS(1)
WK4_ROWS(2)
#if WK4_RV == 4
WK4_ROWS(3)
WK4_ROWS(4)
#endif
#undef WK4_ROWS

/* z[pos][o][c] += sum over the chunk's nt tiles of w[pos][o][t] * v[pos][t][c] for no output
 * channels and ldc (a whole number of vectors) input channels; wps, vps and zps floats from one
 * point to the next. */
static void wk4_gemm(const float *w, int64_t wps, const float *v, int64_t vps, int nt, int no,
                     int ldc, float *z, int64_t zps) {
    for (int pos = 0; pos < 36; pos++) {
        const float *wp = w + pos * wps, *vp = v + pos * vps;
        float *zp = z + pos * zps;
        for (int o = 0; o < no; o += WK4_RO) {
            const int ro = (int)min64(WK4_RO, no - o);
            for (int c = 0; c < ldc; c += WK4_RV * VL) {
                const int rv = (int)min64(WK4_RV, (ldc - c) / VL);
                const float *wo = wp + (int64_t)o * VL, *vc = vp + c;
                float *zo = zp + (int64_t)o * ldc + c;
                switch (rv) {
                case 1:
                    wk4_rows_1(wo, vc, ldc, nt, zo, ldc, ro);
                    break;
#if WK4_RV == 4
                case 2:
                    wk4_rows_2(wo, vc, ldc, nt, zo, ldc, ro);
                    break;
                case 3:
                    wk4_rows_3(wo, vc, ldc, nt, zo, ldc, ro);
                    break;
                default:
                    wk4_rows_4(wo, vc, ldc, nt, zo, ldc, ro);
                    break;
#else
                default:
                    wk4_rows_2(wo, vc, ldc, nt, zo, ldc, ro);
                    break;
#endif
                }
            }
        }
    }
}

/* Asks for the rows chunk (n, tr, tc0) will read, nc input channels from c0 and no output
 * channels from o0, to be brought into L2 while the current chunk computes: they are many short
 * rows (6 and 4 of each channel) that the hardware prefetchers do not follow. */
static void wk4_prefetch(const struct cv__bk_op *op, int64_t n, int64_t tr, int64_t tc0, int64_t c0,
                         int nc, int64_t o0, int no) {
    const int64_t xc0 = max64(0, 4 * tc0 - op->pad_left);
    const int64_t xc1 = min64(op->w, 4 * tc0 - op->pad_left + W4_RW);
    const int64_t xr0 = max64(0, 4 * tr - op->pad_top),
                  xr1 = min64(op->h, 4 * tr - op->pad_top + 6);
    for (int cc = 0; cc < nc && xc1 > xc0; cc++)
        for (int64_t r = xr0; r < xr1; r++) {
            const char *p = (const char *)(op->x + ((n * op->c + c0 + cc) * op->h + r) * op->w);
            for (int64_t b = xc0 * 4 / 64 * 64; b < xc1 * 4; b += 64)
                __builtin_prefetch(p + b, 0, 2);
        }
    const int64_t yc0 = 4 * tc0, yc1 = min64(op->ow, 4 * tc0 + 4 * VL);
    const int64_t yr1 = min64(op->oh, 4 * tr + 4);
    for (int ol = 0; ol < no; ol++)
        for (int64_t r = 4 * tr; r < yr1; r++) {
            const char *p = (const char *)(op->dy + ((n * op->co + o0 + ol) * op->oh + r) * op->ow);
            for (int64_t b = yc0 * 4 / 64 * 64; b < yc1 * 4; b += 64)
                __builtin_prefetch(p + b, 0, 2);
        }
}

/* Items [lo, hi) (item = slot + slots * channel block) with the thread's scratch
 * (wk4_scratch_floats floats, 64-byte aligned). */
static void wk4_run(const struct cv__bk_op *op, float *scratch, int64_t lo, int64_t hi) {
    const int64_t tps = VL * VL + WK4_SKEW; /* floats per point of T */
    float *tin = scratch, *v = tin + 36 * tps, *w = v + 36 * (VL * WK4_CB + WK4_SKEW);
    float *z = w + 36 * (WK4_OB * VL + WK4_SKEW);
    double *dkd = (double *)(z + 36 * (WK4_OB * WK4_CB + WK4_SKEW));
    float rows[6 * W4_RS];
    /* The forward input transform reads the input through a corr op view of it. */
    const struct cv__corr_op xop = {.src = op->x,
                                    .n = op->n,
                                    .sc = op->c,
                                    .src_h = op->h,
                                    .src_w = op->w,
                                    .off_h = -op->pad_top,
                                    .off_w = -op->pad_left};
    const int64_t ncb = (op->c + WK4_CB - 1) / WK4_CB, slots = wk4_slots(op);
    const int64_t th = (op->oh + 3) / 4, tw = (op->ow + 3) / 4, cpr = (tw + VL - 1) / VL;
    const int64_t chunks = wk4_chunks(op), ndk = op->co * op->c * 9;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t slot = it % slots, blk = it / slots;
        const int64_t c0 = blk % ncb * WK4_CB, o0 = blk / ncb * WK4_OB;
        const int nc = (int)min64(WK4_CB, op->c - c0), no = (int)min64(WK4_OB, op->co - o0);
        const int ldc = (int)round_up(nc, VL);
        const int64_t vps = (int64_t)VL * ldc + WK4_SKEW, wps = (int64_t)no * VL + WK4_SKEW;
        const int64_t zps = (int64_t)no * ldc + WK4_SKEW;
        for (int64_t q = 0; q < 36 * zps; q += VL)
            v_store(z + q, v_zero());
        for (int64_t q = 0; q < 9 * WK4_OB * WK4_CB; q++)
            dkd[q] = 0.0;
        const int64_t q0 = chunks * slot / slots, q1 = chunks * (slot + 1) / slots;
        int64_t pending = 0; /* tiles summed in z since the last flush */
        for (int64_t q = q0; q < q1; q++) {
            const int64_t row = q / cpr, n = row / th, tr = row % th, tc0 = q % cpr * VL;
            const int nt = (int)min64(VL, tw - tc0);
            if (q + 1 < q1) {
                const int64_t row1 = (q + 1) / cpr;
                wk4_prefetch(op, row1 / th, row1 % th, (q + 1) % cpr * VL, c0, nc, o0, no);
            }
            if (pending + nt > WK4_FLUSH) {
                wk4_flush(z, zps, dkd, no, nc, ldc);
                pending = 0;
            }
            /* V[pos][t][c]: VL channels at a time, transformed with the tiles in the lanes,
             * then transposed (channels past nc read as zero). */
            for (int cv = 0; cv < ldc; cv += VL) {
                const int cn = (int)min64(VL, nc - cv);
                w4_input(&xop, n, c0 + cv, cn, tr, tc0, rows, tin, tps, VL);
                for (int pos = 0; pos < 36; pos++) {
                    vf x[VL];
                    wk_transpose(tin + pos * tps, cn, x);
                    float *vp = v + pos * vps + cv;
                    for (int t = 0; t < nt; t++)
                        v_store(vp + (int64_t)t * ldc, x[t]);
                }
            }
            for (int ol = 0; ol < no; ol++)
                wk4_grad_transform(op, n, o0 + ol, tr, tc0, w + ol * VL, wps);
            wk4_gemm(w, wps, v, vps, nt, no, ldc, z, zps);
            pending += nt;
        }
        wk4_flush(z, zps, dkd, no, nc, ldc);
        /* One slot: the result; several: this slot's partial sums in dK's layout. */
        float *dk = slots == 1 ? op->dk : NULL;
        double *part = slots == 1 ? NULL : op->part + slot * ndk;
        for (int ol = 0; ol < no; ol++)
            for (int cc = 0; cc < nc; cc++)
                for (int e = 0; e < 9; e++) {
                    const int64_t d = ((o0 + ol) * op->c + c0 + cc) * 9 + e;
                    const double s = dkd[((int64_t)e * WK4_OB + ol) * WK4_CB + cc];
                    if (dk != NULL)
                        dk[d] = (float)s;
                    else
                        part[d] = s;
                }
    }
}
