/* Direct corr kernels (see corr2d_impl.h): every kernel size, padding, dilation and row stride.
 * Included by the ISA units after corr2d_vec.h.
 *
 * Micro-kernels keep a block of outputs in registers: mk_rows (R rows x NJ vectors of one output
 * channel: every source vector loaded serves the up to kh rows that use it) and mk_chans (NO
 * output channels x NJ vectors of one row: every source vector serves NO channels); each is
 * always_inline and instantiated for constant block sizes through a switch, so the accumulators
 * live in registers. The drivers walk work items, point the micro-kernels at the source
 * directly when the window they read is inside the tensor, and otherwise at a zero-padded copy
 * of the window in a stack slab (padding, edges, the last rows of a buffer). Loads never leave
 * the source buffer or the slab; partial vectors use v_load_n/v_store_n. */
#ifndef CV__KERN_ISA
#error "corr2d_direct.h is included by corr2d_<isa>.c only"
#endif

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
